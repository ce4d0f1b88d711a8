/* Pipeline replay on CUDA (`plansim pipeline replay --device cuda`): the
 * same plan execution as the CPU replay (real/replay.c; the same model,
 * weights, data, ops and task order), on CUDA streams.  See real/replay.h
 * and docs/replay.md ("CUDA").
 *
 *  - Worker w is a CUDA device of its own (rt_cuda_new: its own stream and
 *    cuBLAS handle) on GPU w mod G (G = the GPUs present when every pair
 *    can use peer access, else 1) and one host thread, which enqueues the
 *    worker's tasks in EXACTLY the simulator's per-device order.
 *  - A task's start and end are CUDA events recorded on the worker's stream
 *    around its ops; a task whose producer runs on another worker first
 *    makes its stream wait for the producer's end event
 *    (cudaStreamWaitEvent).  The host only waits for the producer's host
 *    thread to have ENQUEUED that event (an atomic counter), never for the
 *    GPU.
 *  - Iteration start: every stream records a barrier event, every stream
 *    waits for all of them, then a short spin kernel lets the host threads
 *    enqueue the iteration ahead of the GPU, then the iteration-start event
 *    is recorded on every stream.  Task times are event times relative to
 *    the earliest iteration-start event on their GPU; the iteration time is
 *    the last end.
 *  - Ops: GEMMs with cuBLAS (ps_rtc_gemm, fp32, no TF32), activations,
 *    gathers / concat copies / gradient pulls as strided block copies, MSE
 *    at sinks (loss accumulated on the device) — kernels/cuda_sync.h; SGD
 *    (global norm clipped to 1, as the CPU) after the iteration, outside
 *    the timed region.
 *  - Calibration: every op of every worker timed alone on its worker's
 *    stream with events (2 warm-up + calib_reps repetitions, median), each
 *    repetition behind a spin kernel so that the host's launches do not
 *    show, less the gap ε of two back-to-back events; written as a profile DB
 *    (device "cuda", the GPU's name); the prediction simulates the plan with
 *    devices = streams, a task overhead of 2ε (its start and end events) and
 *    links = the measured event / stream-wait latency less ε. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_rt.h"
#include "kernels/cuda_sync.h"
#include "kernels/gpu.h"
#include "profile/timer.h"
#include "real/replay_impl.h"
#include "real/rt.h"

_Static_assert((int)A_IDENT == (int)PS_CUSYNC_IDENT && (int)A_RELU == (int)PS_CUSYNC_RELU &&
                   (int)A_GELU == (int)PS_CUSYNC_GELU && (int)A_TANH == (int)PS_CUSYNC_TANH &&
                   (int)A_SIGMOID == (int)PS_CUSYNC_SIGMOID,
               "the replay's activation codes are kernels/cuda_sync.h's");

#define TRY(call)                                                                                 \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_)                                                                                  \
            return rc_;                                                                           \
    } while (0)

static int nomem(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "replay (cuda): out of host memory");
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ------------------------------------------------------------ device model */

typedef struct cpart {
    float *w, *dw; /* gemm: [k, n] */
} cpart;

typedef struct cop {
    cpart *parts;  /* [nparts] */
    float **in;    /* [nmb] gathered input (NULL when direct / input / concat) */
    float ***po;   /* [nmb][nparts] part outputs */
    float ***dpo;  /* [nmb][nparts] their gradients */
    float **out;   /* [nmb] = po[j][nparts - 1] */
    float **din;   /* [nmb] gradient of the gathered input (concat: dpo[j][0]) */
    float *data;   /* input: [minibatch x out_len] */
    float *target; /* sink: [minibatch x out_len] */
    double *loss;  /* sink: [nmb] device doubles, accumulated */
} cop;

typedef struct cworker {
    rt_dev *dev;
    ps_cuda_ctx *cx;
    void *st; /* its stream */
    int gpu;
} cworker;

typedef struct dbuf {
    void *p;
    int gpu;
} dbuf;

typedef struct cmodel {
    rmodel *rm;
    cop *ops;        /* [nops] */
    cworker *wk;     /* [K] */
    int K;
    const int *stage_worker;
    dbuf *bufs;      /* every device allocation */
    int nbufs, capbufs;
    double dev_bytes;
} cmodel;

static cworker *worker_of(const cmodel *cm, const rop *o)
{
    return &cm->wk[cm->stage_worker[o->stage]];
}

/* Zero-filled device memory on worker w's GPU. */
static void *dalloc(cmodel *cm, int w, size_t bytes, ps_err *e)
{
    if (cm->nbufs == cm->capbufs) {
        int cap = cm->capbufs ? 2 * cm->capbufs : 256;
        dbuf *b = realloc(cm->bufs, (size_t)cap * sizeof *b);
        if (!b) {
            nomem(e);
            return NULL;
        }
        cm->bufs = b;
        cm->capbufs = cap;
    }
    cworker *k = &cm->wk[w];
    if (ps_cusync_set_device(k->gpu, e))
        return NULL;
    void *p = ps_cuda_alloc(bytes ? bytes : 4, e);
    if (!p)
        return NULL;
    cm->bufs[cm->nbufs++] = (dbuf){p, k->gpu};
    cm->dev_bytes += (double)bytes;
    if (ps_cuda_memset(k->cx, p, 0, bytes ? bytes : 4, e))
        return NULL;
    return p;
}

static float *falloc_d(cmodel *cm, int w, int64_t n, ps_err *e)
{
    return dalloc(cm, w, (size_t)n * sizeof(float), e);
}

static int upload(cmodel *cm, int w, void *dst, const void *src, size_t bytes, ps_err *e)
{
    TRY(ps_cusync_set_device(cm->wk[w].gpu, e));
    TRY(ps_cuda_copy(cm->wk[w].cx, dst, src, bytes, PS_CU_H2D, e));
    /* pageable source: wait before the host buffer can change */
    return ps_cuda_ctx_sync(cm->wk[w].cx, e);
}

static int sync_all(cmodel *cm, ps_err *e)
{
    for (int w = 0; w < cm->K; w++) {
        TRY(ps_cusync_set_device(cm->wk[w].gpu, e));
        TRY(ps_cuda_ctx_sync(cm->wk[w].cx, e));
    }
    return 0;
}

static void cmodel_free(cmodel *cm)
{
    if (cm->wk)
        for (int w = 0; w < cm->K; w++)
            if (cm->wk[w].cx) {
                ps_cusync_set_device(cm->wk[w].gpu, NULL);
                ps_cuda_ctx_sync(cm->wk[w].cx, NULL);
            }
    for (int i = 0; i < cm->nbufs; i++) {
        ps_cusync_set_device(cm->bufs[i].gpu, NULL);
        ps_cuda_free(cm->bufs[i].p);
    }
    free(cm->bufs);
    if (cm->ops && cm->rm)
        for (int i = 0; i < cm->rm->nops; i++) {
            cop *c = &cm->ops[i];
            const rop *o = &cm->rm->ops[i];
            for (int j = 0; j < o->nmb; j++) {
                if (c->po)
                    free(c->po[j]);
                if (c->dpo)
                    free(c->dpo[j]);
            }
            free(c->parts);
            free(c->in);
            free(c->po);
            free(c->dpo);
            free(c->out);
            free(c->din);
        }
    free(cm->ops);
    if (cm->wk)
        for (int w = 0; w < cm->K; w++)
            rt_dev_free(cm->wk[w].dev);
    free(cm->wk);
    memset(cm, 0, sizeof *cm);
}

/* Device buffers as the CPU replay's (rmodel_alloc), weights / data /
 * targets copied from the host model (same seed, same values). */
static int cmodel_build(cmodel *cm, ps_err *e)
{
    rmodel *rm = cm->rm;
    cm->ops = calloc((size_t)rm->nops, sizeof *cm->ops);
    if (!cm->ops)
        return nomem(e);
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        cop *c = &cm->ops[i];
        int w = cm->stage_worker[o->stage], nmb = o->nmb, np = o->nparts;
        c->parts = calloc((size_t)np, sizeof *c->parts);
        c->in = calloc((size_t)nmb, sizeof *c->in);
        c->po = calloc((size_t)nmb, sizeof *c->po);
        c->dpo = calloc((size_t)nmb, sizeof *c->dpo);
        c->out = calloc((size_t)nmb, sizeof *c->out);
        c->din = calloc((size_t)nmb, sizeof *c->din);
        if (!c->parts || !c->in || !c->po || !c->dpo || !c->out || !c->din)
            return nomem(e);
        for (int q = 0; q < np; q++) {
            rpart *pt = &o->parts[q];
            if (pt->type != PT_GEMM)
                continue;
            size_t n = (size_t)(pt->k * pt->n);
            if (!(c->parts[q].w = falloc_d(cm, w, (int64_t)n, e)) ||
                !(c->parts[q].dw = falloc_d(cm, w, (int64_t)n, e)))
                return e ? e->code : PS_ERUN;
            TRY(upload(cm, w, c->parts[q].w, pt->w, n * sizeof(float), e));
        }
        for (int j = 0; j < nmb; j++) {
            c->po[j] = calloc((size_t)np, sizeof **c->po);
            c->dpo[j] = calloc((size_t)np, sizeof **c->dpo);
            if (!c->po[j] || !c->dpo[j])
                return nomem(e);
            for (int q = 0; q < np; q++) {
                int64_t n = (int64_t)o->b * o->parts[q].out_len;
                if (!(c->po[j][q] = falloc_d(cm, w, n, e)) ||
                    !(c->dpo[j][q] = falloc_d(cm, w, n, e)))
                    return e ? e->code : PS_ERUN;
            }
            c->out[j] = c->po[j][np - 1];
            if (o->cls == OC_CONCAT) {
                c->din[j] = c->dpo[j][0];
            } else if (o->cls == OC_COMPUTE) {
                if (!o->direct && !(c->in[j] = falloc_d(cm, w, (int64_t)o->b * o->in_len, e)))
                    return e ? e->code : PS_ERUN;
                if (o->needs_din && !(c->din[j] = falloc_d(cm, w, (int64_t)o->b * o->in_len, e)))
                    return e ? e->code : PS_ERUN;
            }
        }
        int64_t full = (int64_t)rm->minibatch * o->out_len;
        if (o->cls == OC_INPUT) {
            if (!(c->data = falloc_d(cm, w, full, e)))
                return e ? e->code : PS_ERUN;
            TRY(upload(cm, w, c->data, o->data, (size_t)full * sizeof(float), e));
        }
        if (o->sink) {
            if (!(c->target = falloc_d(cm, w, full, e)) ||
                !(c->loss = dalloc(cm, w, (size_t)nmb * sizeof(double), e)))
                return e ? e->code : PS_ERUN;
            TRY(upload(cm, w, c->target, o->target, (size_t)full * sizeof(float), e));
        }
    }
    return sync_all(cm, e);
}

/* ------------------------------------------------------------ ops on a stream */

/* Rows [g0, g0 + b) of a tensor kept as micro-batch buffers bufs[j] of pb
 * rows of width L: columns [col0, col0 + cols) of each row go to (acc: are
 * added to) dst rows 0..b-1 (row stride dld) from column dcol — one block
 * copy per micro-batch buffer the rows span. */
static int rows_copy(void *st, float *const *bufs, int64_t pb, int64_t L, int64_t col0,
                     int64_t cols, int64_t g0, int64_t b, float *dst, int64_t dld, int64_t dcol,
                     int acc, ps_err *e)
{
    for (int64_t r = 0; r < b;) {
        int64_t g = g0 + r, jp = g / pb, rp = g % pb;
        int64_t cnt = b - r < pb - rp ? b - r : pb - rp;
        TRY(ps_cusync_block_copy(st, cnt, cols, bufs[jp] + rp * L + col0, L, dst + r * dld + dcol,
                                 dld, acc, e));
        r += cnt;
    }
    return 0;
}

static const float *c_input(const cmodel *cm, const rop *o, int j)
{
    if (o->direct)
        return cm->ops[o->mo->inputs[0]].out[j];
    return cm->ops[o->idx].in[j];
}

static int c_fwd(cmodel *cm, int i, int j, ps_err *e)
{
    rmodel *rm = cm->rm;
    rop *o = &rm->ops[i];
    cop *c = &cm->ops[i];
    const pp_model_op *mo = o->mo;
    cworker *k = worker_of(cm, o);
    void *st = k->st;
    int64_t b = o->b, g0 = (int64_t)j * b;
    if (o->cls == OC_INPUT)
        return ps_cuda_copy(k->cx, c->po[j][0], c->data + g0 * o->out_len,
                            (size_t)(b * o->out_len) * sizeof(float), PS_CU_D2D, e);
    if (o->cls == OC_CONCAT) {
        for (int q = 0; q < mo->ninputs; q++) {
            const rop *p = &rm->ops[mo->inputs[q]];
            TRY(rows_copy(st, cm->ops[p->idx].out, p->b, p->out_len, 0, p->out_len, g0, b,
                          c->po[j][0], o->out_len, o->col_off[q], 0, e));
        }
        return 0;
    }
    const float *x;
    if (o->direct) {
        x = cm->ops[mo->inputs[0]].out[j];
    } else {
        /* the sum of the inputs, each tiled / truncated per sample to in_len */
        float *in = c->in[j];
        for (int q = 0; q < mo->ninputs; q++) {
            const rop *p = &rm->ops[mo->inputs[q]];
            for (int64_t c0 = 0; c0 < o->in_len; c0 += p->out_len) {
                int64_t n = o->in_len - c0 < p->out_len ? o->in_len - c0 : p->out_len;
                TRY(rows_copy(st, cm->ops[p->idx].out, p->b, p->out_len, 0, n, g0, b, in,
                              o->in_len, c0, q > 0, e));
            }
        }
        x = in;
    }
    for (int q = 0; q < o->nparts; q++) {
        rpart *pt = &o->parts[q];
        float *y = c->po[j][q];
        if (pt->type == PT_GEMM)
            TRY(ps_rtc_gemm(k->cx, 0, 0, 1, b * pt->m, pt->n, pt->k, 1.f, x, pt->k, 0,
                            c->parts[q].w, pt->n, 0, 0.f, y, pt->n, 0, e));
        else
            TRY(ps_cusync_act_fwd(st, pt->act, b * pt->out_len, x, y, e));
        x = y;
    }
    return 0;
}

/* The gradient of o's output: the loss's (sinks) plus every consumer's
 * input gradient, pulled back through its gather (as op_pull_dout). */
static int c_pull(cmodel *cm, int i, int j, ps_err *e)
{
    rmodel *rm = cm->rm;
    rop *o = &rm->ops[i];
    cop *c = &cm->ops[i];
    const pp_model_op *mo = o->mo;
    cworker *k = worker_of(cm, o);
    void *st = k->st;
    int64_t b = o->b, g0 = (int64_t)j * b, L = o->out_len;
    float *dy = c->dpo[j][o->nparts - 1];
    if (o->sink) {
        double scale = 1.0 / ((double)rm->minibatch * (double)L);
        TRY(ps_cusync_mse(st, b * L, c->out[j], c->target + g0 * L, scale, dy, c->loss + j, e));
    } else {
        TRY(ps_cuda_memset(k->cx, dy, 0, (size_t)(b * L) * sizeof(float), e));
    }
    for (int cc = 0; cc < mo->nconsumers; cc++) {
        const rop *co = &rm->ops[mo->consumers[cc]];
        const pp_model_op *cmo = co->mo;
        if (co->cls == OC_COMPUTE && !co->needs_din)
            continue;
        int slot = 0;
        for (int q = 0; q < cmo->ninputs; q++)
            if (cmo->inputs[q] == o->idx)
                slot = q;
        float *const *cd = cm->ops[co->idx].din;
        if (co->cls == OC_CONCAT) {
            TRY(rows_copy(st, cd, co->b, co->out_len, co->col_off[slot], L, g0, b, dy, L, 0, 1,
                          e));
        } else if (co->direct) {
            TRY(rows_copy(st, cd, co->b, co->in_len, 0, L, g0, b, dy, L, 0, 1, e));
        } else {
            for (int64_t c0 = 0; c0 < co->in_len; c0 += L) {
                int64_t n = co->in_len - c0 < L ? co->in_len - c0 : L;
                TRY(rows_copy(st, cd, co->b, co->in_len, c0, n, g0, b, dy, L, 0, 1, e));
            }
        }
    }
    return 0;
}

static int c_bwd_input(cmodel *cm, int i, int j, ps_err *e)
{
    rop *o = &cm->rm->ops[i];
    cop *c = &cm->ops[i];
    if (o->cls == OC_INPUT)
        return 0;
    TRY(c_pull(cm, i, j, e));
    if (o->cls == OC_CONCAT)
        return 0; /* din aliases dout */
    cworker *k = worker_of(cm, o);
    int64_t b = o->b;
    for (int q = o->nparts - 1; q >= 0; q--) {
        rpart *pt = &o->parts[q];
        const float *x = q ? c->po[j][q - 1] : c_input(cm, o, j);
        const float *y = c->po[j][q];
        const float *dy = c->dpo[j][q];
        float *dx = q ? c->dpo[j][q - 1] : c->din[j];
        if (!dx)
            break; /* the first part's input gradient is not needed */
        if (pt->type == PT_GEMM)
            TRY(ps_rtc_gemm(k->cx, 0, 1, 1, b * pt->m, pt->k, pt->n, 1.f, dy, pt->n, 0,
                            c->parts[q].w, pt->n, 0, 0.f, dx, pt->k, 0, e));
        else
            TRY(ps_cusync_act_bwd(k->st, pt->act, b * pt->out_len, x, y, dy, dx, e));
    }
    return 0;
}

static int c_bwd_weight(cmodel *cm, int i, int j, ps_err *e)
{
    rop *o = &cm->rm->ops[i];
    cop *c = &cm->ops[i];
    if (o->cls != OC_COMPUTE)
        return 0;
    cworker *k = worker_of(cm, o);
    int64_t b = o->b;
    for (int q = 0; q < o->nparts; q++) {
        rpart *pt = &o->parts[q];
        if (pt->type != PT_GEMM)
            continue;
        const float *x = q ? c->po[j][q - 1] : c_input(cm, o, j);
        TRY(ps_rtc_gemm(k->cx, 1, 0, 1, pt->k, pt->n, b * pt->m, 1.f, x, pt->k, 0, c->dpo[j][q],
                        pt->n, 0, 1.f, c->parts[q].dw, pt->n, 0, e));
    }
    return 0;
}

/* One task, enqueued on its stage's worker stream (as run_task). */
static int c_task(cmodel *cm, int stage, int kind, int j, ps_err *e)
{
    rmodel *rm = cm->rm;
    const pp_stage *g = &rm->p->stages[stage];
    if (kind == PP_OP_FWD) {
        for (int k = 0; k < g->nops; k++)
            TRY(c_fwd(cm, g->ops[k], j, e));
    } else if (kind == PP_OP_BWD) {
        for (int k = g->nops - 1; k >= 0; k--) {
            TRY(c_bwd_input(cm, g->ops[k], j, e));
            if (!rm->zb)
                TRY(c_bwd_weight(cm, g->ops[k], j, e));
        }
    } else {
        for (int k = g->nops - 1; k >= 0; k--)
            TRY(c_bwd_weight(cm, g->ops[k], j, e));
    }
    return 0;
}

/* Gradients and losses to zero (after the calibration). */
static int c_zero(cmodel *cm, ps_err *e)
{
    rmodel *rm = cm->rm;
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        cop *c = &cm->ops[i];
        cworker *k = worker_of(cm, o);
        TRY(ps_cusync_set_device(k->gpu, e));
        for (int q = 0; q < o->nparts; q++)
            if (c->parts[q].dw)
                TRY(ps_cuda_memset(k->cx, c->parts[q].dw, 0,
                                   (size_t)(o->parts[q].k * o->parts[q].n) * sizeof(float), e));
        if (c->loss)
            TRY(ps_cuda_memset(k->cx, c->loss, 0, (size_t)o->nmb * sizeof(double), e));
    }
    return sync_all(cm, e);
}

/* SGD with the gradient's global norm clipped to 1 (as the CPU's
 * sgd_step), gradients and losses zeroed; *loss = the iteration's loss.
 * acc: one device double per worker. */
static int c_sgd(cmodel *cm, double **acc, double *loss, ps_err *e)
{
    rmodel *rm = cm->rm;
    TRY(sync_all(cm, e));
    for (int w = 0; w < cm->K; w++) {
        TRY(ps_cusync_set_device(cm->wk[w].gpu, e));
        TRY(ps_cuda_memset(cm->wk[w].cx, acc[w], 0, sizeof(double), e));
    }
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        int w = cm->stage_worker[o->stage];
        TRY(ps_cusync_set_device(cm->wk[w].gpu, e));
        for (int q = 0; q < o->nparts; q++)
            if (o->parts[q].type == PT_GEMM)
                TRY(ps_cusync_sumsq(cm->wk[w].st, o->parts[q].k * o->parts[q].n,
                                    cm->ops[i].parts[q].dw, acc[w], e));
    }
    double sq = 0, ls = 0;
    for (int w = 0; w < cm->K; w++) {
        double v = 0;
        TRY(ps_cusync_set_device(cm->wk[w].gpu, e));
        TRY(ps_cuda_copy(cm->wk[w].cx, &v, acc[w], sizeof v, PS_CU_D2H, e));
        TRY(ps_cuda_ctx_sync(cm->wk[w].cx, e));
        sq += v;
    }
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        if (!o->sink)
            continue;
        cworker *k = worker_of(cm, o);
        double v[64];
        for (int j0 = 0; j0 < o->nmb; j0 += 64) {
            int n = o->nmb - j0 < 64 ? o->nmb - j0 : 64;
            TRY(ps_cusync_set_device(k->gpu, e));
            TRY(ps_cuda_copy(k->cx, v, cm->ops[i].loss + j0, (size_t)n * sizeof(double),
                             PS_CU_D2H, e));
            TRY(ps_cuda_ctx_sync(k->cx, e));
            for (int t = 0; t < n; t++)
                ls += v[t];
        }
    }
    double norm = sqrt(sq), clip = norm > 1 ? 1 / norm : 1;
    float lr = (float)(rm->lr * clip);
    for (int i = 0; i < rm->nops; i++) {
        rop *o = &rm->ops[i];
        cop *c = &cm->ops[i];
        cworker *k = worker_of(cm, o);
        TRY(ps_cusync_set_device(k->gpu, e));
        for (int q = 0; q < o->nparts; q++) {
            if (o->parts[q].type != PT_GEMM)
                continue;
            int64_t n = o->parts[q].k * o->parts[q].n;
            TRY(ps_rtc_sgd(k->cx, n, lr, 0.f, 0.f, c->parts[q].w, c->parts[q].dw, NULL, e));
            TRY(ps_cuda_memset(k->cx, c->parts[q].dw, 0, (size_t)n * sizeof(float), e));
        }
        if (c->loss)
            TRY(ps_cuda_memset(k->cx, c->loss, 0, (size_t)o->nmb * sizeof(double), e));
    }
    *loss = ls;
    return sync_all(cm, e);
}

static float *c_weights(cmodel *cm, size_t *n, ps_err *e)
{
    rmodel *rm = cm->rm;
    size_t tot = 0;
    for (int i = 0; i < rm->nops; i++)
        for (int q = 0; q < rm->ops[i].nparts; q++)
            if (rm->ops[i].parts[q].type == PT_GEMM)
                tot += (size_t)(rm->ops[i].parts[q].k * rm->ops[i].parts[q].n);
    float *w = malloc((tot ? tot : 1) * sizeof *w);
    if (!w) {
        nomem(e);
        return NULL;
    }
    size_t off = 0;
    for (int i = 0; i < rm->nops; i++) {
        cworker *k = worker_of(cm, &rm->ops[i]);
        for (int q = 0; q < rm->ops[i].nparts; q++) {
            const rpart *pt = &rm->ops[i].parts[q];
            if (pt->type != PT_GEMM)
                continue;
            size_t cnt = (size_t)(pt->k * pt->n);
            if (ps_cusync_set_device(k->gpu, e) ||
                ps_cuda_copy(k->cx, w + off, cm->ops[i].parts[q].w, cnt * sizeof *w, PS_CU_D2H,
                             e) ||
                ps_cuda_ctx_sync(k->cx, e)) {
                free(w);
                return NULL;
            }
            off += cnt;
        }
    }
    *n = tot;
    return w;
}

/* ------------------------------------------------------------ calibration */

static void events_free(void **ev, size_t n)
{
    if (!ev)
        return;
    for (size_t i = 0; i < n; i++)
        ps_cusync_event_free(ev[i]);
    free(ev);
}

/* n timing events on the current device. */
static void **events_new(size_t n, int timing, ps_err *e)
{
    void **ev = calloc(n ? n : 1, sizeof *ev);
    if (!ev) {
        nomem(e);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (ps_cusync_event_new(&ev[i], timing, e)) {
            events_free(ev, i);
            return NULL;
        }
    return ev;
}

/* Latency from an event on one stream to the continuation of another
 * stream waiting for it (median of 64); 0 without two workers on one GPU. */
static int measure_wait(cmodel *cm, double *out, ps_err *e)
{
    *out = 0;
    int a = -1, b = -1;
    for (int x = 0; x < cm->K && a < 0; x++)
        for (int y = x + 1; y < cm->K; y++)
            if (cm->wk[x].gpu == cm->wk[y].gpu) {
                a = x;
                b = y;
                break;
            }
    if (a < 0)
        return 0;
    enum { N = 64, WARM = 4 };
    TRY(ps_cusync_set_device(cm->wk[a].gpu, e));
    void **ev = events_new(2 * (N + WARM), 1, e);
    if (!ev)
        return e ? e->code : PS_ERUN;
    double lat[N];
    int rc = 0;
    for (int r = 0; r < N + WARM && !rc; r++) {
        void *x = ev[2 * r], *y = ev[2 * r + 1];
        double s = 0;
        /* the spin keeps stream a busy until stream b's wait is enqueued */
        if ((rc = ps_cuda_spin(cm->wk[a].cx, 50e-6, e)) ||
            (rc = ps_cusync_record(x, cm->wk[a].st, e)) ||
            (rc = ps_cusync_wait(cm->wk[b].st, x, e)) ||
            (rc = ps_cusync_record(y, cm->wk[b].st, e)) || (rc = ps_cusync_event_sync(y, e)) ||
            (rc = ps_cusync_elapsed(x, y, &s, e)))
            break;
        if (r >= WARM)
            lat[r - WARM] = s > 0 ? s : 0;
    }
    if (!rc)
        rc = sync_all(cm, e);
    events_free(ev, 2 * (N + WARM));
    if (!rc)
        *out = ps_rp_median(lat, N);
    return rc;
}

/* The time between two events recorded back to back on a busy stream
 * (median of 64): what every event-bounded interval carries besides its
 * work (the spin keeps the host's records ahead of the GPU). */
static int measure_event_gap(cmodel *cm, double *out, ps_err *e)
{
    *out = 0;
    enum { N = 64 };
    cworker *k = &cm->wk[0];
    TRY(ps_cusync_set_device(k->gpu, e));
    void **ev = events_new(2 * N, 1, e);
    if (!ev)
        return e ? e->code : PS_ERUN;
    double v[N];
    int rc = ps_cuda_spin(k->cx, 1e-3, e);
    for (int r = 0; r < N && !rc; r++)
        if (!(rc = ps_cusync_record(ev[2 * r], k->st, e)))
            rc = ps_cusync_record(ev[2 * r + 1], k->st, e);
    if (!rc)
        rc = ps_cuda_ctx_sync(k->cx, e);
    for (int r = 0; r < N && !rc; r++) {
        rc = ps_cusync_elapsed(ev[2 * r], ev[2 * r + 1], &v[r], e);
        if (v[r] < 0)
            v[r] = 0;
    }
    events_free(ev, 2 * N);
    if (!rc)
        *out = ps_rp_median(v, N);
    return rc;
}

/* Device-to-device copy bandwidth (bytes copied per second) on worker 0. */
static int measure_copy(cmodel *cm, double *bps, ps_err *e)
{
    *bps = 0;
    size_t bytes = (size_t)32 << 20;
    cworker *k = &cm->wk[0];
    TRY(ps_cusync_set_device(k->gpu, e));
    void *a = ps_cuda_alloc(bytes, e), *b = a ? ps_cuda_alloc(bytes, e) : NULL;
    void **ev = b ? events_new(2 * 7, 1, e) : NULL;
    int rc = ev ? 0 : (e ? e->code : PS_ERUN);
    double v[5];
    if (!rc)
        rc = ps_cuda_memset(k->cx, a, 1, bytes, e);
    for (int r = 0; r < 7 && !rc; r++) {
        double s = 0;
        if ((rc = ps_cusync_record(ev[2 * r], k->st, e)) ||
            (rc = ps_cuda_copy(k->cx, b, a, bytes, PS_CU_D2D, e)) ||
            (rc = ps_cusync_record(ev[2 * r + 1], k->st, e)) ||
            (rc = ps_cusync_event_sync(ev[2 * r + 1], e)) ||
            (rc = ps_cusync_elapsed(ev[2 * r], ev[2 * r + 1], &s, e)))
            break;
        if (r >= 2)
            v[r - 2] = s;
    }
    if (!rc) {
        double med = ps_rp_median(v, 5);
        *bps = med > 0 ? (double)bytes / med : 0;
    }
    events_free(ev, 2 * 7);
    ps_cuda_free(a);
    ps_cuda_free(b);
    return rc;
}

/* Every op timed alone on its worker's stream (fwd; bwd_input = gradient
 * pull + input gradients; bwd_weight), median over the repetitions, less
 * the gap of an empty event pair (*gap: a task pays it once, as the
 * simulator's task_overhead_s). */
static int calibrate(cmodel *cm, const ropts *ro, calib *c, double *gap, ps_err *e)
{
    rmodel *rm = cm->rm;
    const pp_plan *p = rm->p;
    int nops = rm->nops;
    c->fwd = calloc((size_t)nops, sizeof(double));
    c->bi = calloc((size_t)nops, sizeof(double));
    c->bw = calloc((size_t)nops, sizeof(double));
    int *list = malloc((size_t)nops * sizeof *list);
    if (!c->fwd || !c->bi || !c->bw || !list) {
        free(list);
        return nomem(e);
    }
    /* One whole iteration first, task by task: every buffer written, every
     * stream's cuBLAS warmed up. */
    int rc = 0;
    for (int s = 0; s < p->nstages && !rc; s++)
        for (int j = 0; j < pp_plan_microbatches(p, s) && !rc; j++) {
            cworker *k = &cm->wk[cm->stage_worker[s]];
            if (!(rc = ps_cusync_set_device(k->gpu, e)) && !(rc = c_task(cm, s, PP_OP_FWD, j, e)))
                rc = ps_cuda_ctx_sync(k->cx, e);
        }
    for (int s = p->nstages - 1; s >= 0 && !rc; s--)
        for (int j = 0; j < pp_plan_microbatches(p, s) && !rc; j++) {
            cworker *k = &cm->wk[cm->stage_worker[s]];
            if (!(rc = ps_cusync_set_device(k->gpu, e)) && !(rc = c_task(cm, s, PP_OP_BWD, j, e)) &&
                !(rm->zb && (rc = c_task(cm, s, PP_OP_WGRAD, j, e))))
                rc = ps_cuda_ctx_sync(k->cx, e);
        }
    int reps = ro->reps > 64 ? 64 : ro->reps, warm = 2, R = warm + reps;
    double *v = malloc(3 * 64 * sizeof *v);
    if (!v && !rc)
        rc = nomem(e);
    ps_progress pr;
    if (!ro->quiet)
        ps_progress_start(&pr, "replay calibrate (cuda)", (size_t)cm->K);
    for (int w = 0; w < cm->K && !rc; w++) {
        cworker *k = &cm->wk[w];
        int n = 0;
        for (int i = 0; i < nops; i++)
            if (cm->stage_worker[rm->ops[i].stage] == w)
                list[n++] = i;
        if (!n)
            continue;
        if ((rc = ps_cusync_set_device(k->gpu, e)))
            break;
        /* events [op k][rep r][5]: fwd start, fwd end, bwd start, input done, weight done */
        size_t nev = (size_t)n * (size_t)R * 5;
        void **ev = events_new(nev, 1, e);
        if (!ev) {
            rc = e ? e->code : PS_ERUN;
            break;
        }
#define EV(kk, r, s) ev[((size_t)(kk) * (size_t)R + (size_t)(r)) * 5 + (s)]
        double host = 1e-3;
        for (int r = 0; r < R && !rc; r++) {
            /* the spin covers the host's launches of this repetition */
            rc = ps_cuda_spin(k->cx, clampd(1.5 * host + 50e-6, 100e-6, 50e-3), e);
            double t0 = ps_timer_now_s();
            for (int kk = 0; kk < n && !rc; kk++) {
                int i = list[kk], j = r % rm->ops[i].nmb;
                if (!(rc = ps_cusync_record(EV(kk, r, 0), k->st, e)) && !(rc = c_fwd(cm, i, j, e)))
                    rc = ps_cusync_record(EV(kk, r, 1), k->st, e);
            }
            for (int kk = n - 1; kk >= 0 && !rc; kk--) {
                int i = list[kk], j = r % rm->ops[i].nmb;
                if (!(rc = ps_cusync_record(EV(kk, r, 2), k->st, e)) &&
                    !(rc = c_bwd_input(cm, i, j, e)) &&
                    !(rc = ps_cusync_record(EV(kk, r, 3), k->st, e)) &&
                    !(rc = c_bwd_weight(cm, i, j, e)))
                    rc = ps_cusync_record(EV(kk, r, 4), k->st, e);
            }
            host = ps_timer_now_s() - t0;
        }
        if (!rc)
            rc = ps_cuda_ctx_sync(k->cx, e);
        for (int kk = 0; kk < n && !rc; kk++) {
            int i = list[kk];
            for (int r = warm; r < R && !rc; r++) {
                double *x = v + (r - warm);
                if ((rc = ps_cusync_elapsed(EV(kk, r, 0), EV(kk, r, 1), &x[0], e)) ||
                    (rc = ps_cusync_elapsed(EV(kk, r, 2), EV(kk, r, 3), &x[64], e)) ||
                    (rc = ps_cusync_elapsed(EV(kk, r, 3), EV(kk, r, 4), &x[128], e)))
                    break;
            }
            if (rc)
                break;
            const rop *o = &rm->ops[i];
            c->fwd[i] = ps_rp_median(v, reps);
            c->bi[i] = o->cls == OC_INPUT ? 0 : ps_rp_median(v + 64, reps);
            c->bw[i] = o->cls == OC_COMPUTE ? ps_rp_median(v + 128, reps) : 0;
        }
#undef EV
        events_free(ev, nev);
        if (!ro->quiet)
            ps_progress_update(&pr, (size_t)w + 1, "");
    }
    if (!ro->quiet)
        ps_progress_end(&pr);
    free(v);
    free(list);
    if (!rc)
        rc = c_zero(cm, e);
    if (!rc)
        rc = measure_event_gap(cm, gap, e);
    for (int i = 0; i < nops && !rc; i++) {
        const rop *o = &rm->ops[i];
        c->fwd[i] = c->fwd[i] > *gap ? c->fwd[i] - *gap : 0;
        if (o->cls != OC_INPUT)
            c->bi[i] = c->bi[i] > *gap ? c->bi[i] - *gap : 0;
        if (o->cls == OC_COMPUTE)
            c->bw[i] = c->bw[i] > *gap ? c->bw[i] - *gap : 0;
    }
    if (!rc)
        rc = measure_copy(cm, &c->copy_bps, e);
    if (!rc)
        rc = measure_wait(cm, &c->wake_s, e);
    return rc;
}

/* ------------------------------------------------------------ the run */

typedef struct crun {
    cmodel *cm;
    rsched *sc;
    int K, iters, N;
    _Atomic int *enq;   /* [N] iterations whose task i is enqueued */
    _Atomic int abort;
    void **ev_s, **ev_e; /* [iters][N] task start / end (on the task's worker's GPU) */
    void **ev_it;        /* [iters][K] iteration start */
    void **ev_bar;       /* [iters][K] cross-stream barrier (also the time reference:
                            every stream's work of the iteration comes after it) */
    double spin_s;       /* for the next iteration, set by the main thread */
    double *host_s;      /* [K] host time to enqueue the last iteration */
    int *exec;           /* [N] order of enqueueing, per worker (worker-major) */
    pthread_barrier_t bar;  /* K workers + the main thread */
    pthread_barrier_t wbar; /* K workers */
    pthread_mutex_t mu;
    ps_err err;
    int rc;
} crun;

typedef struct cwarg {
    crun *r;
    int w;
} cwarg;

static void run_fail(crun *r, int rc, const ps_err *e)
{
    pthread_mutex_lock(&r->mu);
    if (!r->rc) {
        r->rc = rc ? rc : PS_ERUN;
        r->err = *e;
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->abort, 1);
}

/* Enqueue worker w's tasks of iteration it in order. */
static int enqueue_iteration(crun *r, int w, int it, ps_err *e)
{
    rsched *sc = r->sc;
    cworker *k = &r->cm->wk[w];
    size_t base = (size_t)it * (size_t)r->N;
    int nexec = 0;
    for (int kk = 0; kk < sc->wcount[w]; kk++) {
        int i = sc->wstart[w] + kk;
        const rtask *t = &sc->t[i];
        for (int d = sc->dep_off[i]; d < sc->dep_off[i + 1]; d++) {
            int q = sc->deps[d];
            _Atomic int *f = &r->enq[q];
            if (sc->t[q].worker == w) {
                /* same stream: order suffices; the simulator's order puts
                 * the producer first */
                if (atomic_load_explicit(f, memory_order_acquire) <= it)
                    return ps_errf(e, PS_ERUN, "replay (cuda): worker %d: task %d comes before "
                                   "its producer %d in the order", w, i, q);
                continue;
            }
            for (long spin = 0; atomic_load_explicit(f, memory_order_acquire) <= it; spin++) {
                if (atomic_load_explicit(&r->abort, memory_order_relaxed))
                    return ps_errf(e, PS_ERUN, "replay (cuda): aborted");
                if (spin < 20000)
                    cpu_relax();
                else
                    sched_yield();
            }
            TRY(ps_cusync_wait(k->st, r->ev_e[base + (size_t)q], e));
        }
        TRY(ps_cusync_record(r->ev_s[base + (size_t)i], k->st, e));
        TRY(c_task(r->cm, t->stage, t->kind, t->mb, e));
        TRY(ps_cusync_record(r->ev_e[base + (size_t)i], k->st, e));
        atomic_store_explicit(&r->enq[i], it + 1, memory_order_release);
        r->exec[sc->wstart[w] + nexec++] = i;
    }
    return 0;
}

static void *cworker_main(void *arg)
{
    cwarg *a = arg;
    crun *r = a->r;
    int w = a->w;
    cworker *k = &r->cm->wk[w];
    ps_err e = {0};
    int rc = ps_cusync_set_device(k->gpu, &e);
    if (rc)
        run_fail(r, rc, &e);
    for (int it = 0; it < r->iters; it++) {
        pthread_barrier_wait(&r->bar); /* the main thread released iteration it */
        int ok = !atomic_load(&r->abort);
        if (ok && (rc = ps_cusync_record(r->ev_bar[(size_t)it * r->K + w], k->st, &e))) {
            run_fail(r, rc, &e);
            ok = 0;
        }
        pthread_barrier_wait(&r->wbar); /* every stream's barrier event is enqueued */
        ok = ok && !atomic_load(&r->abort);
        for (int v = 0; v < r->K && ok; v++)
            if (v != w && (rc = ps_cusync_wait(k->st, r->ev_bar[(size_t)it * r->K + v], &e))) {
                run_fail(r, rc, &e);
                ok = 0;
            }
        if (ok && ((rc = ps_cuda_spin(k->cx, r->spin_s, &e)) ||
                   (rc = ps_cusync_record(r->ev_it[(size_t)it * r->K + w], k->st, &e)))) {
            run_fail(r, rc, &e);
            ok = 0;
        }
        double t0 = ps_timer_now_s();
        if (ok && (rc = enqueue_iteration(r, w, it, &e)))
            run_fail(r, rc, &e);
        r->host_s[w] = ps_timer_now_s() - t0;
        pthread_barrier_wait(&r->bar); /* iteration it enqueued everywhere */
    }
    return NULL;
}

/* Task times of iteration it relative to the earliest iteration-start
 * event on the task's GPU.  Elapsed times are taken from the barrier event
 * of the GPU's first worker, which precedes every stream's work of the
 * iteration (each stream waited for it), so none is negative. */
static int iteration_times(const crun *r, int it, double *ts, double *te, ps_err *e)
{
    const cmodel *cm = r->cm;
    const rsched *sc = r->sc;
    size_t base = (size_t)it * (size_t)r->N;
    for (int w = 0; w < r->K; w++) {
        int ref = w; /* the first worker on w's GPU */
        for (int v = 0; v < w; v++)
            if (cm->wk[v].gpu == cm->wk[w].gpu) {
                ref = v;
                break;
            }
        void *S = r->ev_bar[(size_t)it * r->K + ref];
        double origin = INFINITY;
        for (int v = 0; v < r->K; v++) {
            if (cm->wk[v].gpu != cm->wk[w].gpu)
                continue;
            double o = 0;
            TRY(ps_cusync_elapsed(S, r->ev_it[(size_t)it * r->K + v], &o, e));
            if (o < origin)
                origin = o;
        }
        for (int kk = 0; kk < sc->wcount[w]; kk++) {
            int i = sc->wstart[w] + kk;
            double a = 0, b = 0;
            TRY(ps_cusync_elapsed(S, r->ev_s[base + (size_t)i], &a, e));
            TRY(ps_cusync_elapsed(S, r->ev_e[base + (size_t)i], &b, e));
            ts[i] = a - origin;
            te[i] = b - origin;
        }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Streams and GPUs: K workers on G GPUs (all pairs peer-enabled) or GPU 0. */
static int open_workers(cmodel *cm, int K, int ngpu, int *G, ps_err *e)
{
    int g = ngpu < K ? ngpu : K;
    if (g > 1) {
        for (int a = 0; a < g && g > 1; a++)
            for (int b = 0; b < g && g > 1; b++) {
                int ok = 0;
                if (a != b && (ps_cusync_enable_peer(a, b, &ok, e) || !ok)) {
                    ps_err_clear(e);
                    g = 1; /* no peer access: every stream on GPU 0 */
                }
            }
    }
    if (g < 1)
        g = 1;
    *G = g;
    cm->K = K;
    cm->wk = calloc((size_t)K, sizeof *cm->wk);
    if (!cm->wk)
        return nomem(e);
    for (int w = 0; w < K; w++) {
        cworker *k = &cm->wk[w];
        k->gpu = w % g;
        TRY(ps_cusync_set_device(k->gpu, e));
        if (!(k->dev = rt_cuda_new(k->gpu, e)))
            return e ? e->code : PS_ERUN;
        k->cx = rt_dev_cuda_ctx(k->dev);
        k->st = ps_cuda_ctx_stream(k->cx);
        if (!k->cx || !k->st)
            return ps_errf(e, PS_ERUN, "replay (cuda): worker %d has no CUDA stream", w);
    }
    return 0;
}

int ps_rp_cuda_run(const pp_plan *p, const pp_model *m, const ropts *ro, ps_replay_result *out,
                   ps_err *e)
{
    memset(out, 0, sizeof *out);
    char why[512] = "";
    int ngpu = ps_gpu_count(why, sizeof why);
    if (ngpu <= 0)
        return ps_errf(e, PS_ERUN, "replay: --device cuda: no usable GPU (%s)", why);
    int S = p->nstages, rc = 0, G = 1;
    rmodel rm;
    cmodel cm;
    rsched sc;
    calib cal;
    crun run;
    memset(&rm, 0, sizeof rm);
    memset(&cm, 0, sizeof cm);
    memset(&sc, 0, sizeof sc);
    memset(&cal, 0, sizeof cal);
    memset(&run, 0, sizeof run);
    pp_model *mm = NULL;
    pp_sim *sim = NULL;
    cm_model *cmm = NULL;
    ps_db *db = NULL;
    pthread_t *th = NULL;
    cwarg *wa = NULL;
    double **acc = NULL;
    double *ts = NULL, *te = NULL;
    int bar_init = 0, wbar_init = 0, mu_init = 0;
    char tmpdb[256] = "";
    ps_cuda_device_info info;
    memset(&info, 0, sizeof info);
    int *stage_worker = calloc((size_t)S, sizeof *stage_worker);
    if (!stage_worker)
        return nomem(e);
    if ((rc = ps_rp_model_shapes(&rm, p, m, e)))
        goto out;
    rm.lr = ro->lr;
    if ((rc = ps_cuda_device_info_get(0, &info, e)))
        goto out;
    /* Guards before anything expensive. */
    {
        double bytes = ps_rp_model_bytes(&rm);
        if (info.mem_bytes > 0 && bytes > 0.8 * info.mem_bytes) {
            rc = ps_errf(e, PS_EINPUT, "replay: the plan needs about %.3g GB of device buffers; "
                         "more than 80%% of the GPU's %.3g GB", bytes / 1e9, info.mem_bytes / 1e9);
            goto out;
        }
        /* an optimistic rate (10 TFLOP/s): refuses only clearly too long plans */
        double est = ps_rp_model_flops(&rm) / 1e13 * (ro->warmup + ro->iterations + ro->reps + 3);
        if (est > ro->max_s) {
            rc = ps_errf(e, PS_EINPUT, "replay: the plan would take at least %.3g s to calibrate "
                         "and replay on the GPU (%.3g GFLOP per iteration), over --max-seconds "
                         "%g; shrink the model or raise the limit", est,
                         ps_rp_model_flops(&rm) / 1e9, ro->max_s);
            goto out;
        }
    }
    int nd = ps_rp_worker_map(p, 0, NULL);
    int K = ro->workers > 0 ? ro->workers : nd;
    if (K < 1)
        K = 1;
    ps_rp_worker_map(p, K, stage_worker);
    cm.rm = &rm;
    cm.stage_worker = stage_worker;
    if ((rc = open_workers(&cm, K, ngpu, &G, e)))
        goto out;
    /* the host model gives the weights, data and targets (the CPU replay's) */
    if ((rc = ps_rp_model_alloc(&rm, ro->seed, e)) || (rc = cmodel_build(&cm, e)))
        goto out;
    double tc = ps_timer_now_s(), gap = 0;
    if ((rc = calibrate(&cm, ro, &cal, &gap, e)))
        goto out;
    out->calib_wall_s = ps_timer_now_s() - tc;
    /* The cluster: devices = streams, links = the event / stream-wait latency
     * (the copies run inside the consumer's calibrated task). */
    pp_cluster cl;
    memset(&cl, 0, sizeof cl);
    snprintf(cl.name, sizeof cl.name, "cuda-replay");
    cl.devices_per_node = 1 << 20;
    cl.nodes = 1;
    cl.mem_bytes = info.mem_bytes > 0 ? info.mem_bytes : 1e12;
    double alpha = cal.wake_s > gap ? cal.wake_s - gap : 0;
    cl.intra = cl.inter = (cm_ab){alpha, 1e15};
    cl.allreduce = CM_ALG_RING;
    out->link_alpha_s = alpha;
    out->link_bytes_per_s = 1e15;
    const char *dbw = ro->db_out;
    if (!dbw && !ro->db_path) {
        snprintf(tmpdb, sizeof tmpdb, "/tmp/plansim-replay-cuda-%d.h5", (int)getpid());
        dbw = tmpdb;
    }
    char dname[300];
    snprintf(dname, sizeof dname, "%s (replay calibration)", info.name[0] ? info.name : "GPU");
    ps_db_meta meta = {.device_kind = "cuda", .device_name = dname, .suite_json = "",
                       .threads = 0, .pinned_core = -1};
    if (dbw && (rc = ps_rp_write_db(&rm, &cal, dbw, &meta, "cublas", "cuda_event", e)))
        goto out;
    /* Each task pays two event gaps (its start and end events; its ops'
     * calibrated times are net of them); the link's wait latency includes
     * the consumer's start event, so it is net of one gap. */
    pp_sim_opts so = {.no_memory_limit = 1, .device_of_stage = stage_worker,
                      .task_overhead_s = ro->db_path ? 0 : 2 * gap};
    const pp_model *pm;
    if (ro->db_path) {
        if ((rc = ps_db_open(ro->db_path, &db, e)))
            goto out;
        if (!(cmm = cm_model_from_db(db, NULL, NULL, e))) {
            rc = e ? e->code : PS_ERUN;
            goto out;
        }
        so.cm = cmm;
        pm = m;
    } else {
        if (!(mm = ps_rp_measured_model(&rm, &cal, e))) {
            rc = e ? e->code : PS_ERUN;
            goto out;
        }
        pm = mm;
    }
    if (!(sim = pp_sim_plan(p, pm, &cl, &so, e))) {
        rc = e ? e->code : PS_ERUN;
        goto out;
    }
    if ((rc = pp_sim_run(sim, e)))
        goto out;
    pp_plan_result pres;
    if ((rc = pp_sim_plan_result(sim, &pres, e)))
        goto out;
    out->predicted_iteration_s = pres.iteration_s;
    out->stage_pred_busy_s = pres.stage_busy_s;
    pres.stage_busy_s = NULL;
    pp_plan_result_free(&pres);
    if (out->predicted_iteration_s * (ro->warmup + ro->iterations) > ro->max_s) {
        rc = ps_errf(e, PS_EINPUT, "replay: predicted %.3g s per iteration x %d iterations is "
                     "over --max-seconds %g", out->predicted_iteration_s,
                     ro->warmup + ro->iterations, ro->max_s);
        goto out;
    }
    /* Worker task lists in the simulator's per-device order (as the CPU path). */
    {
        int nsl = pp_sim_ndevices(sim), tot = 0, ntid = 0;
        sc.K = K;
        sc.wstart = calloc((size_t)K, sizeof(int));
        sc.wcount = calloc((size_t)K, sizeof(int));
        sc.tid_off = calloc((size_t)S, sizeof(int));
        if (!sc.wstart || !sc.wcount || !sc.tid_off) {
            rc = nomem(e);
            goto out;
        }
        for (int s = 0; s < S; s++) {
            sc.tid_off[s] = ntid;
            ntid += 3 * pp_plan_microbatches(p, s);
        }
        sc.tid = malloc((size_t)(ntid ? ntid : 1) * sizeof(int));
        pp_dev_task **lists = calloc((size_t)(nsl ? nsl : 1), sizeof *lists);
        int *lens = calloc((size_t)(nsl ? nsl : 1), sizeof *lens);
        if (!sc.tid || !lists || !lens) {
            free(lists);
            free(lens);
            rc = nomem(e);
            goto out;
        }
        for (int i = 0; i < ntid; i++)
            sc.tid[i] = -1;
        for (int k = 0; k < nsl && !rc; k++) {
            rc = pp_sim_device_order(sim, k, &lists[k], &lens[k], e);
            tot += lens[k];
        }
        if (!rc && !(sc.t = calloc((size_t)(tot ? tot : 1), sizeof *sc.t)))
            rc = nomem(e);
        int c = 0;
        for (int w = 0; w < K && !rc; w++) {
            sc.wstart[w] = c;
            for (int k = 0; k < nsl; k++) {
                if (pp_sim_device_id(sim, k) != w)
                    continue;
                for (int q = 0; q < lens[k]; q++) {
                    const pp_dev_task *d = &lists[k][q];
                    sc.t[c] = (rtask){w, d->node, d->kind, d->mb, c - sc.wstart[w], d->start_s,
                                      d->end_s};
                    sc.tid[sc.tid_off[d->node] + d->kind * pp_plan_microbatches(p, d->node) +
                           d->mb] = c;
                    c++;
                }
            }
            sc.wcount[w] = c - sc.wstart[w];
        }
        for (int k = 0; k < nsl; k++)
            free(lists[k]);
        free(lists);
        free(lens);
        sc.ntasks = c;
        if (rc)
            goto out;
        if ((rc = ps_rp_build_deps(&sc, p, e)))
            goto out;
        for (int i = 0; i < sc.dep_off[sc.ntasks]; i++)
            if (sc.deps[i] < 0 || sc.deps[i] >= sc.ntasks) {
                rc = ps_errf(e, PS_ERUN, "replay (cuda): a producer task is missing from the "
                             "simulator's device orders");
                goto out;
            }
    }
    /* Run. */
    int N = sc.ntasks;
    run.cm = &cm;
    run.sc = &sc;
    run.K = K;
    run.N = N;
    run.iters = ro->warmup + ro->iterations;
    run.enq = calloc((size_t)N + 1, sizeof *run.enq);
    run.host_s = calloc((size_t)K, sizeof *run.host_s);
    run.exec = malloc(((size_t)N + 1) * sizeof *run.exec);
    run.ev_s = calloc((size_t)run.iters * N + 1, sizeof *run.ev_s);
    run.ev_e = calloc((size_t)run.iters * N + 1, sizeof *run.ev_e);
    run.ev_it = calloc((size_t)run.iters * K, sizeof *run.ev_it);
    run.ev_bar = calloc((size_t)run.iters * K, sizeof *run.ev_bar);
    out->loss = calloc((size_t)run.iters, sizeof(double));
    out->iteration_s = calloc((size_t)ro->iterations, sizeof(double));
    th = calloc((size_t)K, sizeof *th);
    wa = calloc((size_t)K, sizeof *wa);
    acc = calloc((size_t)K, sizeof *acc);
    ts = malloc(((size_t)run.iters * N + 1) * sizeof *ts);
    te = malloc(((size_t)run.iters * N + 1) * sizeof *te);
    if (!run.enq || !run.host_s || !run.exec || !run.ev_s || !run.ev_e || !run.ev_it ||
        !run.ev_bar || !out->loss || !out->iteration_s || !th || !wa || !acc || !ts || !te) {
        rc = nomem(e);
        goto out;
    }
    /* events on the GPU of the stream that records them */
    for (int it = 0; it < run.iters && !rc; it++)
        for (int i = 0; i < N && !rc; i++) {
            size_t x = (size_t)it * N + i;
            if (!(rc = ps_cusync_set_device(cm.wk[sc.t[i].worker].gpu, e)) &&
                !(rc = ps_cusync_event_new(&run.ev_s[x], 1, e)))
                rc = ps_cusync_event_new(&run.ev_e[x], 1, e);
        }
    for (int w = 0; w < K && !rc; w++) {
        if ((rc = ps_cusync_set_device(cm.wk[w].gpu, e)))
            break;
        for (int it = 0; it < run.iters && !rc; it++)
            if (!(rc = ps_cusync_event_new(&run.ev_it[(size_t)it * K + w], 1, e)))
                rc = ps_cusync_event_new(&run.ev_bar[(size_t)it * K + w], 1, e);
        if (!rc && !(acc[w] = dalloc(&cm, w, sizeof(double), e)))
            rc = e ? e->code : PS_ERUN;
    }
    if (rc || (rc = sync_all(&cm, e)))
        goto out;
    if (pthread_mutex_init(&run.mu, NULL)) {
        rc = ps_errf(e, PS_ERUN, "replay (cuda): pthread_mutex_init failed");
        goto out;
    }
    mu_init = 1;
    if (pthread_barrier_init(&run.bar, NULL, (unsigned)K + 1)) {
        rc = ps_errf(e, PS_ERUN, "replay (cuda): pthread_barrier_init failed");
        goto out;
    }
    bar_init = 1;
    if (pthread_barrier_init(&run.wbar, NULL, (unsigned)K)) {
        rc = ps_errf(e, PS_ERUN, "replay (cuda): pthread_barrier_init failed");
        goto out;
    }
    wbar_init = 1;
    run.spin_s = 2e-3;
    double tr = ps_timer_now_s();
    int started = 0;
    for (int w = 0; w < K; w++) {
        wa[w] = (cwarg){&run, w};
        if (pthread_create(&th[w], NULL, cworker_main, &wa[w]))
            break;
        started++;
    }
    if (started < K) {
        rc = ps_errf(e, PS_ERUN, "replay (cuda): could not start %d host threads", K);
        for (int w = 0; w < started; w++)
            pthread_cancel(th[w]);
        for (int w = 0; w < started; w++)
            pthread_join(th[w], NULL);
        goto out;
    }
    ps_progress pr;
    if (!ro->quiet)
        ps_progress_start(&pr, "replay (cuda)", (size_t)run.iters);
    for (int it = 0; it < run.iters; it++) {
        pthread_barrier_wait(&run.bar); /* release iteration it */
        pthread_barrier_wait(&run.bar); /* every task of it enqueued */
        if (atomic_load(&run.abort))
            continue; /* the workers skip the rest; finish the barrier protocol */
        ps_err se = {0};
        int src = c_sgd(&cm, acc, &out->loss[it], &se);
        if (src) {
            run_fail(&run, src, &se);
            continue;
        }
        double host = 0;
        for (int w = 0; w < K; w++)
            host = run.host_s[w] > host ? run.host_s[w] : host;
        /* the next iteration's spin covers the host's enqueueing */
        run.spin_s = clampd(1.5 * host + 50e-6, 100e-6, 0.1);
        if (!ro->quiet) {
            char det[64];
            snprintf(det, sizeof det, "loss %.5g", out->loss[it]);
            ps_progress_update(&pr, (size_t)it + 1, det);
        }
    }
    if (!ro->quiet)
        ps_progress_end(&pr);
    for (int w = 0; w < K; w++)
        pthread_join(th[w], NULL);
    out->replay_wall_s = ps_timer_now_s() - tr;
    if (run.rc) {
        rc = run.rc;
        if (e)
            *e = run.err;
        goto out;
    }
    if ((rc = sync_all(&cm, e)))
        goto out;
    for (int it = 0; it < run.iters && !rc; it++)
        rc = iteration_times(&run, it, ts + (size_t)it * N, te + (size_t)it * N, e);
    if (rc)
        goto out;
    /* Results (as the CPU path). */
    int med_it = ro->warmup;
    {
        double *mk = malloc((size_t)ro->iterations * sizeof *mk);
        double *sorted = malloc((size_t)ro->iterations * sizeof *sorted);
        if (!mk || !sorted) {
            free(mk);
            free(sorted);
            rc = nomem(e);
            goto out;
        }
        for (int i = 0; i < ro->iterations; i++) {
            const double *x = te + (size_t)(ro->warmup + i) * N;
            double mx = 0;
            for (int t = 0; t < N; t++)
                if (x[t] > mx)
                    mx = x[t];
            mk[i] = sorted[i] = out->iteration_s[i] = mx;
        }
        qsort(sorted, (size_t)ro->iterations, sizeof *sorted, cmp_double);
        double med = sorted[(ro->iterations - 1) / 2];
        if (ro->iterations % 2 == 0)
            med = 0.5 * (sorted[ro->iterations / 2 - 1] + sorted[ro->iterations / 2]);
        out->measured_iteration_s = med;
        double best = INFINITY;
        for (int i = 0; i < ro->iterations; i++)
            if (fabs(mk[i] - med) < best) {
                best = fabs(mk[i] - med);
                med_it = ro->warmup + i;
            }
        free(mk);
        free(sorted);
    }
    snprintf(out->device, sizeof out->device, "cuda: %s, %d stream%s on %d GPU%s",
             info.name[0] ? info.name : "GPU", K, K == 1 ? "" : "s", G, G == 1 ? "" : "s");
    out->nstages = S;
    out->workers = K;
    out->minibatch = p->minibatch;
    out->iterations = ro->iterations;
    out->warmup = ro->warmup;
    out->stage_worker = stage_worker;
    stage_worker = NULL;
    out->rel_err = (out->predicted_iteration_s - out->measured_iteration_s) /
                   out->measured_iteration_s;
    out->throughput_measured = p->minibatch / out->measured_iteration_s;
    out->throughput_predicted = p->minibatch / out->predicted_iteration_s;
    out->loss_first = out->loss[0];
    out->loss_last = out->loss[run.iters - 1];
    out->cpu_fraction = NAN; /* not a CPU measurement */
    out->clean_iterations = ro->iterations;
    out->ntasks = N;
    out->tasks = calloc((size_t)N + 1, sizeof *out->tasks);
    out->stage_meas_busy_s = calloc((size_t)S, sizeof(double));
    out->exec_order = calloc((size_t)K, sizeof *out->exec_order);
    out->worker_ntasks = calloc((size_t)K, sizeof(int));
    if (!out->tasks || !out->stage_meas_busy_s || !out->exec_order || !out->worker_ntasks) {
        rc = nomem(e);
        goto out;
    }
    for (int i = 0; i < N; i++) {
        const rtask *t = &sc.t[i];
        double a = ts[(size_t)med_it * N + i], b = te[(size_t)med_it * N + i];
        out->tasks[i] = (ps_replay_task){t->worker, t->stage, t->kind, t->mb,
                                         p->schedule == PP_INTERLEAVED
                                             ? t->stage / (S / (p->chunks > 0 ? p->chunks : 1))
                                             : 0,
                                         t->seq, t->ps, t->pe, a, b};
        out->stage_meas_busy_s[t->stage] += b - a;
    }
    for (int w = 0; w < K; w++) {
        out->worker_ntasks[w] = sc.wcount[w];
        out->exec_order[w] = malloc(((size_t)sc.wcount[w] + 1) * sizeof(int));
        if (!out->exec_order[w]) {
            rc = nomem(e);
            goto out;
        }
        memcpy(out->exec_order[w], run.exec + sc.wstart[w], (size_t)sc.wcount[w] * sizeof(int));
    }
    out->dep_off = sc.dep_off;
    out->deps = sc.deps;
    sc.dep_off = sc.deps = NULL;
    if (ro->keep && !(out->weights = c_weights(&cm, &out->nweights, e)))
        rc = e ? e->code : PS_ERUN;
out:
    if (wbar_init)
        pthread_barrier_destroy(&run.wbar);
    if (bar_init)
        pthread_barrier_destroy(&run.bar);
    if (mu_init)
        pthread_mutex_destroy(&run.mu);
    if (cm.wk)
        for (int w = 0; w < cm.K; w++)
            if (cm.wk[w].cx) {
                ps_cusync_set_device(cm.wk[w].gpu, NULL);
                ps_cuda_ctx_sync(cm.wk[w].cx, NULL);
            }
    for (size_t x = 0; x < (size_t)run.iters * run.N; x++) {
        if (run.ev_s)
            ps_cusync_event_free(run.ev_s[x]);
        if (run.ev_e)
            ps_cusync_event_free(run.ev_e[x]);
    }
    for (size_t x = 0; x < (size_t)run.iters * run.K; x++) {
        if (run.ev_it)
            ps_cusync_event_free(run.ev_it[x]);
        if (run.ev_bar)
            ps_cusync_event_free(run.ev_bar[x]);
    }
    free(run.ev_s);
    free(run.ev_e);
    free(run.ev_it);
    free(run.ev_bar);
    free((void *)run.enq);
    free(run.host_s);
    free(run.exec);
    free(th);
    free(wa);
    free(acc); /* the doubles themselves are cmodel buffers */
    free(ts);
    free(te);
    if (tmpdb[0])
        unlink(tmpdb);
    pp_sim_free(sim);
    pp_model_free(mm);
    cm_model_free(cmm);
    ps_db_close(db);
    free(cal.fwd);
    free(cal.bi);
    free(cal.bw);
    ps_rp_sched_free(&sc);
    cmodel_free(&cm);
    ps_rp_model_free(&rm);
    free(stage_worker);
    if (rc)
        ps_replay_result_free(out);
    return rc;
}
