/* Kernel timings from CUPTI's Activity API, attributed to benchmarked ops.
 *
 * Two halves:
 *
 *  1. ps_trace — plain C, built everywhere and unit-tested without a GPU:
 *     a container of kernel, API and external-correlation records, and the
 *     join that attributes each kernel to the op that launched it and turns
 *     an op's kernels into per-repeat times.
 *
 *  2. ps_tracer — the CUPTI side (real only when PS_HAVE_CUDA; otherwise its
 *     functions fail with PS_ERUN "built without CUDA support").  It enables
 *     CONCURRENT_KERNEL (never KERNEL: that one serializes kernels), MEMCPY,
 *     RUNTIME, DRIVER and EXTERNAL_CORRELATION activity, hands CUPTI 8 MiB
 *     buffers, and copies every completed buffer's records into a ps_trace.
 *     DRIVER is on as well as RUNTIME because cuBLAS and cuDNN launch some
 *     kernels through the driver API, and the external correlation that
 *     names the op comes with the API record of the launching call.
 *
 * Attribution: before running repeat r of op o the profiler pushes the
 * external id ps_trace_ext_id(o, r) (kind CUSTOM0) and pops it after; CUPTI
 * then emits, for every CUDA API call made in between, an
 * EXTERNAL_CORRELATION record (external id, correlation id), and each kernel
 * or copy carries the correlation id of the API call that launched it.
 * Kernels whose correlation id has no such record (warm-up, fills, the L2
 * flush) are left unattributed.
 *
 * Op time of one repeat = last end − first start over the repeat's kernels
 * (the span, idle gaps between the op's own kernels included: they are part
 * of the op's cost when its kernels are enqueued back to back).  The sum of
 * the kernels' durations ("busy") is reported beside it. */
#ifndef PS_PROFILE_CUPTI_TRACER_H
#define PS_PROFILE_CUPTI_TRACER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "profile/timer.h"

/* ------------------------------------------------------------ records */

/* External ids: the op's /ops row id in the high bits, the repeat in the low
 * 20 (so up to 2^20 - 1 repeats, 2^43 ops). */
#define PS_TRACE_REPEAT_BITS 20
#define PS_TRACE_NO_OP UINT64_MAX

static inline uint64_t ps_trace_ext_id(int64_t op, int repeat)
{
    return ((uint64_t)op << PS_TRACE_REPEAT_BITS) | (uint64_t)repeat;
}
static inline int64_t ps_trace_ext_op(uint64_t ext)
{
    return (int64_t)(ext >> PS_TRACE_REPEAT_BITS);
}
static inline int ps_trace_ext_repeat(uint64_t ext)
{
    return (int)(ext & ((1u << PS_TRACE_REPEAT_BITS) - 1));
}

typedef struct ps_trace_kernel {
    uint64_t start_ns, end_ns; /* CUPTI timestamps (ns) */
    uint32_t correlation;
    uint32_t stream, device;
    int32_t grid[3], block[3]; /* 0 for copies */
    int32_t registers;         /* per thread */
    int32_t shared_bytes;      /* static + dynamic per block */
    uint32_t name_idx;         /* set by ps_trace_add_kernel */
    int is_copy;               /* a MEMCPY record, named "memcpy HtoD" etc. */
} ps_trace_kernel;

typedef struct ps_trace_api {
    uint64_t start_ns, end_ns;
    uint32_t correlation, cbid, thread;
    int driver; /* 0 runtime API, 1 driver API */
} ps_trace_api;

typedef struct ps_trace_ext {
    uint64_t external_id;
    uint32_t correlation;
    uint32_t kind; /* CUpti_ExternalCorrelationKind; the profiler uses CUSTOM0 */
} ps_trace_ext;

#define PS_TRACE_EXT_KIND_CUSTOM0 3 /* CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0 (checked) */

typedef struct ps_trace ps_trace;

ps_trace *ps_trace_new(void);
void ps_trace_free(ps_trace *t);
void ps_trace_clear(ps_trace *t);

/* Append records; names are copied and interned (one copy per distinct
 * name).  0, or PS_ERUN on allocation failure. */
int ps_trace_add_kernel(ps_trace *t, const ps_trace_kernel *k, const char *name);
int ps_trace_add_api(ps_trace *t, const ps_trace_api *a);
int ps_trace_add_ext(ps_trace *t, const ps_trace_ext *x);
void ps_trace_add_dropped(ps_trace *t, size_t n);

size_t ps_trace_nkernels(const ps_trace *t);
const ps_trace_kernel *ps_trace_kernel_at(const ps_trace *t, size_t i);
size_t ps_trace_napis(const ps_trace *t);
size_t ps_trace_nexts(const ps_trace *t);
size_t ps_trace_nnames(const ps_trace *t);
const char *ps_trace_name(const ps_trace *t, uint32_t idx);
size_t ps_trace_dropped(const ps_trace *t);
/* Move every record of src to the end of dst (names re-interned); src is
 * left empty. */
int ps_trace_merge(ps_trace *dst, ps_trace *src);

/* ------------------------------------------------------------ join */

/* For every kernel i, ext[i] = the external id (of kind `kind`) whose
 * correlation id matches the kernel's, or PS_TRACE_NO_OP.  ext has
 * ps_trace_nkernels(t) entries.  Returns the number attributed, or -1 on
 * allocation failure. */
long ps_trace_attribute(const ps_trace *t, uint32_t kind, uint64_t *ext);

/* Per-repeat times of op `op` over repeats [0, repeats): span_s[r] = last
 * end − first start of repeat r's kernels, busy_s[r] = the sum of their
 * durations, nk[r] = their count (0: nothing attributed; span and busy are
 * then NaN).  Any output may be NULL.  Returns how many repeats had at
 * least one kernel. */
int ps_trace_op_times(const ps_trace *t, const uint64_t *ext, int64_t op, int repeats,
                      double *span_s, double *busy_s, int *nk);

/* Summary over the repeats that had kernels (their spans): what an /ops row
 * holds.  Returns how many repeats contributed (0: *out is zeroed, and the
 * caller falls back to another timer); -1 on allocation failure. */
int ps_trace_op_stats(const ps_trace *t, const uint64_t *ext, int64_t op, int repeats,
                      ps_stats *out);

/* ------------------------------------------------------------ tracer (CUPTI) */

/* Subscribe to CUPTI activity (process-wide: one tracer at a time).  Call
 * after the CUDA context exists.  Fails with PS_ERUN naming CUPTI's error —
 * e.g. another profiler (nsys, the PyTorch profiler) already subscribed. */
int ps_tracer_start(ps_err *e);
/* Attribute the CUDA calls made from now until the matching pop to `ext`. */
int ps_tracer_push(uint64_t ext, ps_err *e);
int ps_tracer_pop(ps_err *e);
/* Synchronize the device, force out every buffer (FLUSH_FORCED) and move the
 * records gathered so far into *out (a new trace the caller frees). */
int ps_tracer_collect(ps_trace **out, ps_err *e);
/* Collect nothing more: flush, disable the activity kinds, discard what is
 * left.  Safe to call when not started. */
void ps_tracer_stop(void);
/* Records CUPTI reported as dropped since start (buffers full). */
size_t ps_tracer_dropped(void);
/* 1 when this build has CUPTI (it may still fail to start at run time). */
int ps_tracer_built(void);

#endif
