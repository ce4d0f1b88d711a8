/* CUDA events, stream dependencies and devices behind a plain C API
 * (kernels/cuda_sync.cu), plus the few small kernels the CUDA pipeline
 * replay (real/replay_cuda.c) needs beyond kernels/cuda_rt.h: a strided
 * block copy / add, the replay's activations (GELU in the tanh form, as the
 * CPU replay), an MSE gradient that accumulates its loss on the device (no
 * host wait inside a timed region) and a sum of squares.
 *
 * Streams and events are `void *` (cudaStream_t / cudaEvent_t) so C needs
 * no CUDA header; a stream comes from ps_cuda_ctx_stream (kernels/cuda_ops.h).
 * Every call is checked: a CUDA error is PS_ERUN naming the call and the
 * runtime's message; kernel launches are followed by cudaGetLastError().
 * Kernels and records enqueue on the given stream and return.  An event is
 * created on the CURRENT device (ps_cusync_set_device first) and may only
 * be recorded on a stream of that device; any stream may wait on it.
 *
 * A build without CUDA (PS_HAVE_CUDA undefined, e.g. the sanitizer build)
 * links kernels/cuda_sync_stubs.c: every function fails with PS_ERUN "built
 * without CUDA support" (ps_cusync_event_free does nothing). */
#ifndef PS_KERNELS_CUDA_SYNC_H
#define PS_KERNELS_CUDA_SYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/err.h"

/* ----------------------------------------------------------- devices */

int ps_cusync_device_count(int *n, ps_err *e);
/* cudaSetDevice for the calling host thread. */
int ps_cusync_set_device(int dev, ps_err *e);
/* Let kernels on device a read / write memory of device b: *ok = 1 when
 * peer access is possible and enabled (already enabled counts), 0 when the
 * pair cannot (no error).  Leaves device a current. */
int ps_cusync_enable_peer(int a, int b, int *ok, ps_err *e);

/* ----------------------------------------------------------- events, streams */

/* timing != 0: an event usable with ps_cusync_elapsed; 0: cudaEventDisableTiming. */
int ps_cusync_event_new(void **ev, int timing, ps_err *e);
void ps_cusync_event_free(void *ev); /* NULL is fine */
int ps_cusync_record(void *ev, void *stream, ps_err *e);
/* Work enqueued on `stream` after this call waits for the event's latest
 * record (as of this call; an event never recorded does not wait at all). */
int ps_cusync_wait(void *stream, void *ev, ps_err *e);
/* Seconds from event a to event b (both recorded, completed, on one device,
 * created with timing). */
int ps_cusync_elapsed(void *a, void *b, double *seconds, ps_err *e);
int ps_cusync_event_sync(void *ev, ps_err *e);
int ps_cusync_stream_sync(void *stream, ps_err *e);

/* ----------------------------------------------------------- kernels (fp32) */

/* dst[r * dld + c] (+)= src[r * sld + c] for r < rows, c < cols
 * (accumulate != 0: add, else copy).  rows, cols >= 0 (0: nothing). */
int ps_cusync_block_copy(void *stream, int64_t rows, int64_t cols, const float *src, int64_t sld,
                         float *dst, int64_t dld, int accumulate, ps_err *e);

/* The replay's activations, with the CPU replay's formulas (real/replay.c):
 * 0 identity, 1 relu, 2 gelu (tanh form), 3 tanh, 4 sigmoid.  y = f(x);
 * dx = dy f'(x) (relu, gelu from x; tanh, sigmoid from y). */
enum { PS_CUSYNC_IDENT = 0, PS_CUSYNC_RELU, PS_CUSYNC_GELU, PS_CUSYNC_TANH, PS_CUSYNC_SIGMOID };
int ps_cusync_act_fwd(void *stream, int act, int64_t n, const float *x, float *y, ps_err *e);
int ps_cusync_act_bwd(void *stream, int act, int64_t n, const float *x, const float *y,
                      const float *dy, float *dx, ps_err *e);

/* MSE against t, as the CPU replay: d = (double) y - t, dy = (float)(2 d
 * scale), *loss += scale * sum d^2 (device double, accumulated: zero it
 * before).  n >= 0. */
int ps_cusync_mse(void *stream, int64_t n, const float *y, const float *t, double scale,
                  float *dy, double *loss, ps_err *e);
/* *acc += sum x^2 (device double, fp64 accumulation). */
int ps_cusync_sumsq(void *stream, int64_t n, const float *x, double *acc, ps_err *e);

#ifdef __cplusplus
}
#endif

#endif
