/* Stand-ins for kernels/cuda_sync.h in a build without CUDA (PS_HAVE_CUDA
 * undefined: no nvcc, PS_NO_CUDA=1, the sanitizer build): each fails with
 * PS_ERUN "built without CUDA support", like kernels/cuda_stubs.c, so the
 * CUDA replay (real/replay_cuda.c) links everywhere and refuses at run time. */
#ifndef PS_HAVE_CUDA

#include "kernels/cuda_sync.h"

#pragma GCC diagnostic ignored "-Wunused-parameter"

#define NO_CUDA "built without CUDA support"

int ps_cusync_device_count(int *n, ps_err *e)
{
    *n = 0;
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_set_device(int dev, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_enable_peer(int a, int b, int *ok, ps_err *e)
{
    *ok = 0;
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_event_new(void **ev, int timing, ps_err *e)
{
    *ev = NULL;
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

void ps_cusync_event_free(void *ev)
{
}

int ps_cusync_record(void *ev, void *stream, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_wait(void *stream, void *ev, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_elapsed(void *a, void *b, double *seconds, ps_err *e)
{
    *seconds = 0;
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_event_sync(void *ev, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_stream_sync(void *stream, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_block_copy(void *stream, int64_t rows, int64_t cols, const float *src, int64_t sld,
                         float *dst, int64_t dld, int accumulate, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_act_fwd(void *stream, int act, int64_t n, const float *x, float *y, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_act_bwd(void *stream, int act, int64_t n, const float *x, const float *y,
                      const float *dy, float *dx, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_mse(void *stream, int64_t n, const float *y, const float *t, double scale,
                  float *dy, double *loss, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

int ps_cusync_sumsq(void *stream, int64_t n, const float *x, double *acc, ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int ps_cuda_sync_stubs_unused;
#endif
