/* The CUDA profiling backend: runs a suite's ops on one GPU — cuBLAS /
 * cuBLASLt for GEMMs, cuDNN for conv2d, the project's own kernels
 * (kernels/cuda_ops.h) for attention, elementwise, reductions and
 * embedding-bag, cudaMemcpyAsync for copies — and records one /ops row per
 * op, the raw kernel table, the tracer's overhead and the device peaks.
 *
 * Measurement of one op:
 *  1. inputs filled with fresh random non-zero data on the device (a new
 *     seed per op and per pass).  Ops whose buffers take less than twice the
 *     L2 get up to 16 copies of every buffer, used in turn, so that
 *     consecutive runs do not find their inputs in the L2 left by the
 *     previous run (copies × footprint ≈ 2 × L2).  The smallest ops (16
 *     copies still fit in the L2) stay L2-warm; they take a few µs, where
 *     launch and latency, not bandwidth, dominate.  Without the copies a
 *     memory-bound op of a few MB would be timed at L2 bandwidth, several
 *     times HBM's, and a weight-bound decode GEMM would look compute-bound;
 *  2. warm-up: max(suite warmup, 2) runs (module load, cuBLAS / cuDNN
 *     heuristics, scratch allocation stay out of the numbers);
 *  3. a spin kernel occupies the stream while the host enqueues every
 *     timed repeat, so that repeats start back to back, not each at the
 *     pace of the host's launches;
 *  4. repeats = max(suite repeats, 10) single executions, each bracketed by
 *     CUDA events and — in the traced pass — by a pushed CUPTI external
 *     correlation id (op row, repeat).
 * The op's time for one repeat is the CUPTI span of its kernels: the first
 * kernel's start to the last kernel's end (cupti_tracer.h); the row holds
 * median/p10/p90/min/mean over repeats, timer "cupti", and event_median_s,
 * the CUDA-event median of the same executions (includes the gap between the
 * event and the first kernel: a cross-check, an upper bound).
 *
 * Tracer overhead: every op is measured twice — first with CUPTI not
 * subscribed at all (pass 1), then traced (pass 2), both timed by events;
 * /tracer_overhead holds both event medians and their ratio.  Two passes
 * rather than toggling activity kinds per op: disabling CONCURRENT_KERNEL
 * mid-run could deadlock before CUDA 13.0 Update 1.
 *
 * Without CUPTI (it fails to start, e.g. another profiler is attached, or
 * PLANSIM_NO_CUPTI=1) the rows fall back to the event times, timer
 * "cuda_event", and the run says so; the same for a single op whose kernels
 * could not be attributed.  An op the backend cannot run (int4, fp8, batched
 * int8, peer copies on one GPU, host copies, conv2d without cuDNN, or too
 * big for the free memory) is skipped with its reason on stderr; it is not
 * an error.
 *
 * Peaks (/device/peaks): GEMM FLOP/s per precision (fp32, tf32, fp64,
 * fp16, bf16, int8 at n = max(suite peak_gemm_n, 8192)), d2d copy bandwidth
 * (read + write bytes, max(suite peak_memcpy_bytes, 1 GiB)), h2d and d2h
 * (pinned, 256 MiB), launch_overhead_s (event time of a one-element kernel
 * in a full queue), and the device's SM count, clocks, memory, L2. */
#ifndef PS_PROFILE_CUDA_BACKEND_H
#define PS_PROFILE_CUDA_BACKEND_H

#include <stddef.h>

#include "common/err.h"
#include "profile/cupti_tracer.h"
#include "profile/db.h"
#include "profile/suite.h"

typedef struct ps_cuda_profile_opts {
    int device;     /* CUDA device index */
    int skip_peaks; /* tests: leave /device/peaks to the static facts */
    int no_trace;   /* events only (no CUPTI): timer "cuda_event" */
    int no_rotate;  /* one buffer set per op (L2-warm timings) */
    int quiet;      /* no progress line or summary on stderr */
} ps_cuda_profile_opts;

/* The whole run into w (rows, kernels, overhead, peaks, device attributes).
 * PS_ERUN when no GPU is usable or the device fails. */
int ps_profile_run_cuda_ex(const ps_suite *s, const ps_cuda_profile_opts *o, ps_db_writer *w,
                           ps_err *e);
/* The CLI's entry: defaults, quiet when PLANSIM_QUIET is set. */
int ps_profile_run_cuda(const ps_suite *s, int device, ps_db_writer *w, ps_err *e);

/* Whether the backend can run op (0) or why not (PS_EINPUT, e says why);
 * backend name it records ("cublas", "cublaslt", "cudnn", "plansim",
 * "cudart"). */
int ps_cuda_op_supported(const ps_op *op, ps_err *e);
const char *ps_cuda_op_backend(const ps_op *op);

/* The /kernels rows of op `op`: every kernel of t whose external id (ext,
 * from ps_trace_attribute) names that op.  Plain C: unit-tested without a
 * GPU.  Returns the number of rows added, or -1 with e set. */
long ps_cuda_store_kernels(ps_db_writer *w, const ps_trace *t, const uint64_t *ext, int64_t op,
                           ps_err *e);

#endif
