/* The CUDA profiling backend (cuda_backend.h says how an op is measured). */
#include "cuda_backend.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cuda_blas.h"
#include "kernels/cuda_dnn.h"
#include "kernels/cuda_ops.h"
#include "kernels/gpu.h"
#include "profile/cupti_tracer.h"
#include "profile/timer.h"

/* ------------------------------------------------------------ what runs where */

static int dtype_in(const char *dt, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(dt, *list))
            return 1;
    return 0;
}

int ps_cuda_op_supported(const ps_op *op, ps_err *e)
{
    static const char *const blas[] = {"fp32", "tf32", "fp64", "fp16", "bf16", NULL};
    static const char *const own[] = {"fp32", "fp64", "fp16", "bf16", NULL};
    static const char *const half[] = {"fp32", "fp16", "bf16", NULL};
    static const char *const dnn[] = {"fp32", "tf32", "fp16", "bf16", NULL};
    char d[320];
    ps_op_describe(op, d, sizeof d);
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM:
        if (dtype_in(op->dtype, blas) || !strcmp(op->dtype, "int8"))
            return 0;
        return ps_errf(e, PS_EINPUT, "%s: no GPU path for dtype %s (cuBLAS: fp32, tf32, fp64, "
                       "fp16, bf16; cuBLASLt: int8)", d, op->dtype);
    case PS_OPK_BATCHED_GEMM:
        if (dtype_in(op->dtype, blas))
            return 0;
        return ps_errf(e, PS_EINPUT, "%s: no GPU path for dtype %s (fp32, tf32, fp64, fp16, "
                       "bf16)", d, op->dtype);
    case PS_OPK_ATTENTION:
        if (!dtype_in(op->dtype, half))
            return ps_errf(e, PS_EINPUT, "%s: attention runs fp32, fp16, bf16", d);
        if (op->d[4] > 256)
            return ps_errf(e, PS_EINPUT, "%s: head dim > 256 not supported", d);
        return 0;
    case PS_OPK_CONV2D:
        if (dtype_in(op->dtype, dnn))
            return 0;
        return ps_errf(e, PS_EINPUT, "%s: cuDNN path for fp32, tf32, fp16, bf16 only", d);
    case PS_OPK_ELEMENTWISE:
    case PS_OPK_REDUCTION:
        if (dtype_in(op->dtype, own))
            return 0;
        return ps_errf(e, PS_EINPUT, "%s: fp32, fp64, fp16, bf16 only", d);
    case PS_OPK_EMBEDDING_BAG:
        if (dtype_in(op->dtype, half))
            return 0;
        return ps_errf(e, PS_EINPUT, "%s: fp32, fp16, bf16 only", d);
    case PS_OPK_MEMCPY:
        if (!strcmp(op->variant, "d2d") || !strcmp(op->variant, "h2d") ||
            !strcmp(op->variant, "d2h"))
            return 0;
        if (!strcmp(op->variant, "peer"))
            return ps_errf(e, PS_EINPUT, "%s: peer copies need a second GPU (not measured)", d);
        return ps_errf(e, PS_EINPUT, "%s: a host copy is a CPU op (profile it with --device cpu)",
                       d);
    default:
        return ps_errf(e, PS_EINPUT, "%s: unknown kind", d);
    }
}

const char *ps_cuda_op_backend(const ps_op *op)
{
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM: return strcmp(op->dtype, "int8") ? "cublas" : "cublaslt";
    case PS_OPK_BATCHED_GEMM: return "cublas";
    case PS_OPK_CONV2D: return "cudnn";
    case PS_OPK_MEMCPY: return "cudart";
    default: return "plansim";
    }
}

long ps_cuda_store_kernels(ps_db_writer *w, const ps_trace *t, const uint64_t *ext, int64_t op,
                           ps_err *e)
{
    long n = 0;
    for (size_t i = 0; i < ps_trace_nkernels(t); i++) {
        if (ext[i] == PS_TRACE_NO_OP || ps_trace_ext_op(ext[i]) != op)
            continue;
        const ps_trace_kernel *k = ps_trace_kernel_at(t, i);
        ps_db_kernel dk = {.op = op,
                           .correlation = k->correlation,
                           .name = ps_trace_name(t, k->name_idx),
                           .grid = {k->grid[0], k->grid[1], k->grid[2]},
                           .block = {k->block[0], k->block[1], k->block[2]},
                           .registers = k->registers,
                           .shared_bytes = k->shared_bytes,
                           .start_ns = (int64_t)k->start_ns,
                           .end_ns = (int64_t)k->end_ns,
                           .stream = k->stream};
        if (ps_db_writer_add_kernel(w, &dk, e))
            return -1;
        n++;
    }
    return n;
}

#ifdef PS_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <cupti_version.h>

#define CU(call)                                                                                  \
    do {                                                                                          \
        cudaError_t r_ = (call);                                                                  \
        if (r_ != cudaSuccess)                                                                    \
            return ps_errf(e, PS_ERUN, "%s: %s", #call, cudaGetErrorString(r_));                 \
    } while (0)

/* ------------------------------------------------------------ one op's buffers */

#define MAXBUF 5
#define MAXSETS 16

typedef struct op_run {
    const ps_op *op;
    int kind;
    ps_cuda_ctx *c;
    int nsets, nbuf;
    size_t bytes[MAXBUF];
    ps_cu_dtype bdt[MAXBUF]; /* fill type per buffer */
    double bscale[MAXBUF];   /* fill scale (index range for integers) */
    void *buf[MAXSETS][MAXBUF];
    void *slab;       /* every set's buffers: one allocation per op */
    size_t footprint; /* device bytes of one set */
    void *host;       /* pinned host side of h2d / d2h */
    uint8_t *mask;    /* tree mask, shared by the sets (read-only, small) */
    ps_cuda_i8gemm *i8;
    ps_cuda_conv *conv;
    ps_gemm_prec prec;
    ps_cu_dtype dt;
    int ta, tb, sub, mean;
} op_run;

static void run_release(op_run *r)
{
    ps_cuda_free(r->slab);
    ps_cuda_host_free(r->host);
    ps_cuda_free(r->mask);
    ps_cuda_i8gemm_free(r->i8);
    ps_cuda_conv2d_free(r->conv);
    memset(r, 0, sizeof *r);
}

static void add_buf(op_run *r, double elems, ps_cu_dtype t, double scale)
{
    r->bytes[r->nbuf] = (size_t)elems * ps_cu_dtype_size(t);
    r->bdt[r->nbuf] = t;
    r->bscale[r->nbuf] = scale;
    r->footprint += r->bytes[r->nbuf];
    r->nbuf++;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Buffers, fills and plans for one op.  PS_EINPUT: the op cannot run here
 * (skip it); PS_ERUN: the device failed. */
static int run_prepare(ps_cuda_ctx *c, const ps_op *op, double l2_bytes, int rotate,
                       uint64_t seed, op_run *r, ps_err *e)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->c = c;
    r->kind = ps_op_kind_id_of(op->kind);
    if (ps_cuda_op_supported(op, e))
        return PS_EINPUT;
    const int64_t *d = op->d;
    int is_i8 = !strcmp(op->dtype, "int8");
    if (r->kind != PS_OPK_MEMCPY && !is_i8 && ps_cu_dtype_parse(op->dtype, &r->dt, e))
        return PS_EINPUT;
    switch (r->kind) {
    case PS_OPK_GEMM:
    case PS_OPK_BATCHED_GEMM: {
        int b = r->kind == PS_OPK_BATCHED_GEMM;
        double nb = b ? (double)d[0] : 1, m = (double)d[b], n = (double)d[b + 1],
               k = (double)d[b + 2];
        if (ps_gemm_variant_parse(op->variant, &r->ta, &r->tb, e))
            return PS_EINPUT;
        if (is_i8) {
            add_buf(r, m * k, PS_CU_I8, 1);
            add_buf(r, k * n, PS_CU_I8, 1);
            add_buf(r, m * n, PS_CU_I32, 1);
        } else {
            if (ps_gemm_prec_parse(op->dtype, &r->prec, e))
                return PS_EINPUT;
            r->dt = ps_gemm_prec_dtype(r->prec);
            add_buf(r, nb * m * k, r->dt, 1);
            add_buf(r, nb * k * n, r->dt, 1);
            add_buf(r, nb * m * n, r->dt, 1);
        }
        break;
    }
    case PS_OPK_ATTENTION: {
        double bh = (double)d[0] * d[1], sq = (double)d[2], skv = (double)d[3], hd = (double)d[4];
        if (ps_cuda_mask_parse(op->variant, (ps_mask_kind *)&r->sub, e))
            return PS_EINPUT;
        add_buf(r, bh * sq * hd, r->dt, 1);
        add_buf(r, bh * skv * hd, r->dt, 1);
        add_buf(r, bh * skv * hd, r->dt, 1);
        add_buf(r, bh * sq * hd, r->dt, 1);
        break;
    }
    case PS_OPK_CONV2D: {
        ps_conv_dir dir;
        if (ps_conv_dir_parse(op->variant, &dir, e))
            return PS_EINPUT;
        if (ps_gemm_prec_parse(op->dtype, &r->prec, e))
            return PS_EINPUT;
        r->dt = ps_gemm_prec_dtype(r->prec);
        double x = (double)d[0] * d[1] * d[2] * d[3], wt = (double)d[4] * d[1] * d[5] * d[6];
        double y = (double)d[0] * d[4] * ps_op_conv_out_h(op) * ps_op_conv_out_w(op);
        double in0 = dir == PS_CONV_BWD_INPUT ? y : x;
        double in1 = dir == PS_CONV_BWD_WEIGHT ? y : wt;
        double out = dir == PS_CONV_FWD ? y : dir == PS_CONV_BWD_INPUT ? x : wt;
        add_buf(r, in0, r->dt, 1);
        add_buf(r, in1, r->dt, 1);
        add_buf(r, out, r->dt, 1);
        r->sub = (int)dir;
        break;
    }
    case PS_OPK_ELEMENTWISE: {
        if (ps_cuda_ew_parse(op->variant, (ps_ew_op *)&r->sub, e))
            return PS_EINPUT;
        add_buf(r, (double)d[0], r->dt, 1);
        add_buf(r, ps_cuda_ew_is_binary((ps_ew_op)r->sub) ? (double)d[0] : 0, r->dt, 1);
        add_buf(r, (double)d[0], r->dt, 1);
        break;
    }
    case PS_OPK_REDUCTION: {
        if (ps_cuda_red_parse(op->variant, (ps_red_op *)&r->sub, e))
            return PS_EINPUT;
        int ln = r->sub == PS_RED_LAYERNORM, sum = r->sub == PS_RED_SUM;
        add_buf(r, (double)d[0] * d[1], r->dt, 1);
        add_buf(r, ln ? (double)d[1] : 0, r->dt, 1);
        add_buf(r, ln ? (double)d[1] : 0, r->dt, 1);
        add_buf(r, sum ? (double)d[0] : (double)d[0] * d[1], r->dt, 1);
        break;
    }
    case PS_OPK_EMBEDDING_BAG:
        r->mean = !strcmp(op->variant, "mean");
        add_buf(r, (double)d[0] * d[1], r->dt, 1);
        add_buf(r, (double)d[3] * d[2], PS_CU_I64, (double)d[0]);
        add_buf(r, (double)d[3] * d[1], r->dt, 1);
        break;
    case PS_OPK_MEMCPY:
        r->sub = !strcmp(op->variant, "d2d") ? PS_CU_D2D
                 : !strcmp(op->variant, "h2d") ? PS_CU_H2D
                                               : PS_CU_D2H;
        add_buf(r, (double)d[0], PS_CU_I8, 1); /* non-zero bytes */
        if (r->sub == PS_CU_D2D)
            add_buf(r, (double)d[0], PS_CU_I8, 1);
        break;
    default: return ps_errf(e, PS_EINPUT, "unknown kind %s", op->kind);
    }

    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b));
    if ((double)r->footprint > 0.8 * (double)free_b)
        return ps_errf(e, PS_EINPUT, "needs %.2f GB of device memory, %.2f GB free",
                       r->footprint / 1e9, free_b / 1e9);
    r->nsets = 1;
    if (rotate && r->kind != PS_OPK_MEMCPY && (double)r->footprint < 2 * l2_bytes) {
        double want = ceil(2 * l2_bytes / (double)(r->footprint ? r->footprint : 1));
        r->nsets = want > MAXSETS ? MAXSETS : (int)want;
        while (r->nsets > 1 && (double)r->nsets * r->footprint > 0.5 * (double)free_b)
            r->nsets--;
    }
    /* One allocation carved into 256-byte-aligned buffers: an op with 16
     * sets would otherwise cost ~50 cudaMalloc/cudaFree pairs. */
    size_t set_bytes = 0;
    for (int b = 0; b < r->nbuf; b++)
        set_bytes += (r->bytes[b] + 255) / 256 * 256;
    if (!(r->slab = ps_cuda_alloc(set_bytes * (size_t)r->nsets, e)))
        return PS_ERUN;
    char *p = r->slab;
    for (int s = 0; s < r->nsets; s++)
        for (int b = 0; b < r->nbuf; b++) {
            if (!r->bytes[b])
                continue;
            r->buf[s][b] = p;
            p += (r->bytes[b] + 255) / 256 * 256;
            size_t n = r->bytes[b] / ps_cu_dtype_size(r->bdt[b]);
            if (ps_cuda_fill_random(c, r->buf[s][b], n, r->bdt[b], mix(seed + 131 * s + b),
                                    r->bscale[b], e))
                return PS_ERUN;
        }
    if (r->kind == PS_OPK_MEMCPY && r->sub != PS_CU_D2D) {
        if (!(r->host = ps_cuda_host_alloc((size_t)d[0], e)))
            return PS_ERUN;
        if (r->sub == PS_CU_H2D) {
            /* Non-zero source bytes: 64 KiB of random words with every byte's
             * low bit set, repeated (a copy's speed does not depend on the
             * pattern; filling a GiB word by word would take seconds). */
            uint8_t *h = r->host;
            size_t n = (size_t)d[0], blk = n < 65536 ? n : 65536;
            for (size_t i = 0; i < blk; i += 8) {
                uint64_t w = mix(seed + i) | 0x0101010101010101ull;
                memcpy(h + i, &w, blk - i < 8 ? blk - i : 8);
            }
            for (size_t i = blk; i < n; i += blk)
                memcpy(h + i, h, n - i < blk ? n - i : blk);
        }
    }
    if (r->kind == PS_OPK_ATTENTION && r->sub == PS_MASK_TREE) {
        /* A random token tree: node i's parent is an earlier node. */
        int64_t sq = d[2], skv = d[3];
        int64_t *parent = malloc((size_t)sq * sizeof *parent);
        uint8_t *hm = malloc((size_t)(sq * skv));
        int rc = 0;
        if (!parent || !hm) {
            rc = ps_errf(e, PS_ERUN, "out of memory (tree mask)");
        } else {
            for (int64_t i = 0; i < sq; i++)
                parent[i] = i == 0 ? -1 : (int64_t)(mix(seed ^ (uint64_t)i) % (uint64_t)i);
            ps_attention_tree_mask(sq, skv, parent, hm);
            if (!(r->mask = ps_cuda_alloc((size_t)(sq * skv), e)) ||
                ps_cuda_copy(c, r->mask, hm, (size_t)(sq * skv), PS_CU_H2D, e) ||
                ps_cuda_ctx_sync(c, e))
                rc = PS_ERUN;
        }
        free(parent);
        free(hm);
        if (rc)
            return rc;
    }
    if (r->kind == PS_OPK_GEMM && is_i8) {
        if (!(r->i8 = ps_cuda_i8gemm_plan(c, r->ta, r->tb, d[0], d[1], d[2], e)))
            return PS_EINPUT; /* no algorithm for this layout: not runnable here */
    }
    if (r->kind == PS_OPK_CONV2D) {
        r->conv = ps_cuda_conv2d_plan(c, (ps_conv_dir)r->sub, r->prec, d[0], d[1], d[2], d[3],
                                      d[4], d[5], d[6], d[7], d[8], e);
        if (!r->conv)
            return PS_EINPUT; /* cuDNN missing or no algorithm: skip */
    }
    return ps_cuda_ctx_sync(c, e);
}

static int run_exec(op_run *r, int set, ps_err *e)
{
    void **b = r->buf[set % r->nsets];
    const int64_t *d = r->op->d;
    ps_cuda_ctx *c = r->c;
    switch (r->kind) {
    case PS_OPK_GEMM:
        if (r->i8)
            return ps_cuda_i8gemm_run(r->i8, b[0], b[1], b[2], e);
        return ps_cuda_gemm(c, r->prec, r->ta, r->tb, d[0], d[1], d[2], b[0], b[1], b[2], e);
    case PS_OPK_BATCHED_GEMM:
        return ps_cuda_gemm_batched(c, r->prec, r->ta, r->tb, d[0], d[1], d[2], d[3], b[0], b[1],
                                    b[2], e);
    case PS_OPK_ATTENTION:
        return ps_cuda_attention(c, r->dt, d[0], d[1], d[2], d[3], d[4], b[0], b[1], b[2],
                                 (ps_mask_kind)r->sub, r->mask, b[3], e);
    case PS_OPK_CONV2D: return ps_cuda_conv2d_run(r->conv, b[0], b[1], b[2], e);
    case PS_OPK_ELEMENTWISE:
        return ps_cuda_elementwise(c, (ps_ew_op)r->sub, r->dt, (size_t)d[0], b[0], b[1], b[2], e);
    case PS_OPK_REDUCTION:
        return ps_cuda_reduction(c, (ps_red_op)r->sub, r->dt, d[0], d[1], b[0], b[1], b[2], b[3],
                                 e);
    case PS_OPK_EMBEDDING_BAG:
        return ps_cuda_embedding_bag(c, r->dt, d[0], d[1], d[2], d[3], b[0], b[1], r->mean, b[2],
                                     e);
    case PS_OPK_MEMCPY:
        if (r->sub == PS_CU_D2D)
            return ps_cuda_copy(c, b[1], b[0], (size_t)d[0], PS_CU_D2D, e);
        if (r->sub == PS_CU_H2D)
            return ps_cuda_copy(c, b[0], r->host, (size_t)d[0], PS_CU_H2D, e);
        return ps_cuda_copy(c, r->host, b[0], (size_t)d[0], PS_CU_D2H, e);
    default: return ps_errf(e, PS_ERUN, "unknown kind");
    }
}

/* ------------------------------------------------------------ timing */

typedef struct gpu {
    ps_cuda_ctx *c;
    cudaEvent_t *ev; /* 2 per repeat */
    int nev;
    double l2_bytes;
    int rotate;
} gpu;

static int events_reserve(gpu *g, int repeats, ps_err *e)
{
    if (2 * repeats <= g->nev)
        return 0;
    cudaEvent_t *ev = realloc(g->ev, (size_t)(2 * repeats) * sizeof *ev);
    if (!ev)
        return ps_errf(e, PS_ERUN, "out of memory");
    g->ev = ev;
    for (; g->nev < 2 * repeats; g->nev++)
        CU(cudaEventCreate(&g->ev[g->nev]));
    return 0;
}

/* Warm up, then `repeats` single executions bracketed by events (and, when
 * ext_op >= 0, by the CUPTI external id (ext_op, repeat)).  ev_s: repeats. */
static int run_timed(gpu *g, op_run *r, int warmup, int repeats, int64_t ext_op, double *ev_s,
                     ps_err *e)
{
    if (events_reserve(g, repeats, e))
        return PS_ERUN;
    cudaStream_t st = (cudaStream_t)ps_cuda_ctx_stream(g->c);
    for (int i = 0; i < warmup; i++)
        if (run_exec(r, i, e))
            return PS_ERUN;
    if (ps_cuda_ctx_sync(g->c, e))
        return PS_ERUN;
    /* Long enough for the host to enqueue every repeat (~30 µs each, CUPTI
     * calls included) before the device reaches the first. */
    double spin = 1e-3 + 30e-6 * repeats;
    if (ps_cuda_spin(g->c, spin < 0.05 ? spin : 0.05, e))
        return PS_ERUN;
    for (int i = 0; i < repeats; i++) {
        CU(cudaEventRecord(g->ev[2 * i], st));
        if (ext_op >= 0 && ps_tracer_push(ps_trace_ext_id(ext_op, i), e))
            return PS_ERUN;
        int rc = run_exec(r, warmup + i, e);
        if (ext_op >= 0) {
            ps_err e2 = {0};
            if (ps_tracer_pop(&e2) && !rc)
                rc = ps_errf(e, PS_ERUN, "%s", e2.msg);
        }
        if (rc)
            return PS_ERUN;
        CU(cudaEventRecord(g->ev[2 * i + 1], st));
    }
    if (ps_cuda_ctx_sync(g->c, e))
        return PS_ERUN;
    for (int i = 0; i < repeats; i++) {
        float ms = 0;
        CU(cudaEventElapsedTime(&ms, g->ev[2 * i], g->ev[2 * i + 1]));
        ev_s[i] = ms * 1e-3;
    }
    return 0;
}

static double median_of(const double *x, int n)
{
    double *t = malloc((size_t)(n > 0 ? n : 1) * sizeof *t);
    if (!t || n <= 0) {
        free(t);
        return NAN;
    }
    memcpy(t, x, (size_t)n * sizeof *t);
    ps_stats st;
    ps_stats_compute(t, n, &st);
    free(t);
    return st.median_s;
}

/* Event median of one op (no tracing): the peaks. */
static int time_op(gpu *g, const ps_op *op, int warmup, int repeats, int rotate, double *med_s,
                   ps_err *e)
{
    op_run r;
    double ev[64];
    if (repeats > 64)
        repeats = 64;
    int rc = run_prepare(g->c, op, g->l2_bytes, rotate, 0x9ea5, &r, e);
    if (!rc)
        rc = run_timed(g, &r, warmup, repeats, -1, ev, e);
    run_release(&r);
    if (!rc)
        *med_s = median_of(ev, repeats);
    return rc;
}

/* ------------------------------------------------------------ peaks */

static int peak_gemm(gpu *g, ps_db_writer *w, const char *dtype, int64_t n, const char *name,
                     FILE *log, double *rate, ps_err *e)
{
    *rate = NAN;
    ps_op op;
    int64_t dims[3] = {n, n, n};
    int i8 = !strcmp(dtype, "int8");
    if (ps_op_make(&op, "gemm", dtype, i8 ? "nt" : "nn", dims, 3, e))
        return PS_ERUN;
    double t;
    ps_err e2 = {0};
    int rc = time_op(g, &op, 2, 5, 0, &t, &e2);
    if (rc == PS_EINPUT) { /* not runnable here: no peak, not an error */
        if (log)
            fprintf(log, "plansim: cuda: no %s peak: %s\n", dtype, e2.msg);
        return 0;
    }
    if (rc)
        return ps_errf(e, rc, "%s peak: %s", dtype, e2.msg);
    *rate = 2.0 * n * n * n / t;
    return ps_db_writer_add_peak(w, name, *rate, i8 ? "op/s" : "flop/s", e);
}

static int peak_copy(gpu *g, ps_db_writer *w, const char *variant, int64_t bytes,
                     const char *name, double *rate, ps_err *e)
{
    ps_op op;
    if (ps_op_make(&op, "memcpy", NULL, variant, &bytes, 1, e))
        return PS_ERUN;
    double t;
    if (time_op(g, &op, 2, 7, 0, &t, e))
        return PS_ERUN;
    *rate = ps_op_bytes(&op) / t;
    return ps_db_writer_add_peak(w, name, *rate, "B/s", e);
}

/* *flops (fp32 GEMM), *bw (d2d) and *launch feed the duration estimate. */
static int measure_peaks(gpu *g, const ps_suite *s, ps_db_writer *w, FILE *log, double *flops,
                         double *bw, double *launch, ps_err *e)
{
    int64_t n = s->peak_gemm_n > 8192 ? s->peak_gemm_n : 8192;
    static const struct {
        const char *dtype, *name;
    } G[] = {{"fp32", PS_PEAK_GEMM_FP32},        {"fp64", PS_PEAK_GEMM_FP64},
             {"tf32", "gemm_tf32_flops_per_s"}, {"fp16", "gemm_fp16_flops_per_s"},
             {"bf16", "gemm_bf16_flops_per_s"}, {"int8", "gemm_int8_ops_per_s"}};
    double rate;
    for (size_t i = 0; i < sizeof G / sizeof G[0]; i++) {
        if (peak_gemm(g, w, G[i].dtype, n, G[i].name, log, &rate, e))
            return PS_ERUN;
        if (i == 0)
            *flops = rate;
    }
    int64_t cb = s->peak_memcpy_bytes > ((int64_t)1 << 30) ? s->peak_memcpy_bytes
                                                             : (int64_t)1 << 30;
    if (peak_copy(g, w, "d2d", cb, PS_PEAK_MEMCPY, bw, e) ||
        peak_copy(g, w, "h2d", (int64_t)256 << 20, "memcpy_h2d_bytes_per_s", &rate, e) ||
        peak_copy(g, w, "d2h", (int64_t)256 << 20, "memcpy_d2h_bytes_per_s", &rate, e))
        return PS_ERUN;
    ps_op tiny;
    int64_t one = 1;
    if (ps_op_make(&tiny, "elementwise", "fp32", "relu", &one, 1, e) ||
        time_op(g, &tiny, 3, 50, 0, launch, e) ||
        ps_db_writer_add_peak(w, PS_PEAK_LAUNCH, *launch, "s", e))
        return PS_ERUN;
    return 0;
}

static int device_facts(int device, ps_db_writer *w, gpu *g, ps_err *e)
{
    ps_cuda_device_info di;
    if (ps_cuda_device_info_get(device, &di, e))
        return PS_ERUN;
    g->l2_bytes = di.l2_bytes;
    char cc[16], dnn[256];
    snprintf(cc, sizeof cc, "%d.%d", di.cc_major, di.cc_minor);
    ps_cudnn_available(dnn, sizeof dnn);
    int rc = ps_db_writer_set_attr_str(w, "device_name", di.name, e);
    if (!rc) rc = ps_db_writer_set_attr_int(w, "device_index", device, e);
    if (!rc) rc = ps_db_writer_set_attr_str(w, "compute_capability", cc, e);
    if (!rc) rc = ps_db_writer_set_attr_str(w, "pci_bus_id", di.pci_bus_id, e);
    if (!rc) rc = ps_db_writer_set_attr_int(w, "cuda_runtime_version", di.runtime_version, e);
    if (!rc) rc = ps_db_writer_set_attr_int(w, "cuda_driver_version", di.driver_version, e);
    if (!rc) rc = ps_db_writer_set_attr_int(w, "cupti_api_version", CUPTI_API_VERSION, e);
    if (!rc) rc = ps_db_writer_set_attr_str(w, "cudnn", dnn, e);
    if (!rc)
        rc = ps_db_writer_set_attr_str(
            w, "op_time", "CUPTI span: first kernel start to last kernel end of one execution", e);
    if (!rc)
        rc = ps_db_writer_set_attr_str(w, "l2_rotation",
                                       g->rotate ? "up to 16 buffer sets, ~2x L2" : "off", e);
    if (!rc) rc = ps_db_writer_add_peak(w, PS_PEAK_SMS, di.sm_count, "", e);
    if (!rc) rc = ps_db_writer_add_peak(w, PS_PEAK_CLOCK, di.sm_clock_hz, "Hz", e);
    if (!rc) rc = ps_db_writer_add_peak(w, "mem_clock_hz", di.mem_clock_hz, "Hz", e);
    if (!rc) rc = ps_db_writer_add_peak(w, "mem_bus_bits", di.mem_bus_bits, "bit", e);
    if (!rc) rc = ps_db_writer_add_peak(w, PS_PEAK_MEM, di.mem_bytes, "B", e);
    if (!rc) rc = ps_db_writer_add_peak(w, PS_PEAK_L2, di.l2_bytes, "B", e);
    /* Double data rate: two transfers per memory clock. */
    if (!rc)
        rc = ps_db_writer_add_peak(w, "mem_bw_theoretical_bytes_per_s",
                                   2.0 * di.mem_clock_hz * di.mem_bus_bits / 8.0, "B/s", e);
    return rc;
}

/* ------------------------------------------------------------ the run */

typedef struct pass1 {
    int ok;              /* measured untraced */
    double untraced_med; /* event median */
} pass1;

static int gpu_repeats(const ps_suite_item *it)
{
    int r = it->repeats > 10 ? it->repeats : 10;
    return r > 1000 ? 1000 : r;
}

static int gpu_warmup(const ps_suite_item *it)
{
    return it->warmup > 2 ? it->warmup : 2;
}

/* Pass 2 for one op: traced (or events only), one /ops row. */
static int measure_traced(gpu *g, const ps_suite_item *it, const pass1 *p1, int traced,
                          uint64_t seed, ps_db_writer *w, size_t *nkernels, int *fallback,
                          ps_err *e)
{
    const ps_op *op = &it->op;
    int repeats = gpu_repeats(it);
    double *ev = malloc((size_t)repeats * sizeof *ev);
    double *span = malloc((size_t)repeats * sizeof *span);
    uint64_t *ext = NULL;
    ps_trace *t = NULL;
    op_run r;
    memset(&r, 0, sizeof r);
    int rc = 0;
    int64_t row = (int64_t)ps_db_writer_nops(w);
    if (!ev || !span) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto out;
    }
    if ((rc = run_prepare(g->c, op, g->l2_bytes, g->rotate, seed, &r, e)))
        goto out;
    if ((rc = run_timed(g, &r, gpu_warmup(it), repeats, traced ? row : -1, ev, e)))
        goto out;
    ps_stats st, evst;
    int ns = 0;
    if (traced) {
        if ((rc = ps_tracer_collect(&t, e)))
            goto out;
        ext = malloc((ps_trace_nkernels(t) ? ps_trace_nkernels(t) : 1) * sizeof *ext);
        if (!ext || ps_trace_attribute(t, PS_TRACE_EXT_KIND_CUSTOM0, ext) < 0 ||
            (ns = ps_trace_op_stats(t, ext, row, repeats, &st)) < 0) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto out;
        }
    }
    const char *timer = "cupti";
    memcpy(span, ev, (size_t)repeats * sizeof *ev); /* ps_stats_compute sorts in place */
    ps_stats_compute(span, repeats, &evst);
    if (ns == 0) {
        st = evst;
        timer = "cuda_event";
        if (traced)
            (*fallback)++;
    }
    int64_t id = ps_db_writer_add_op(w, op, ps_cuda_op_backend(op), timer, &st, evst.median_s, e);
    if (id < 0) {
        rc = PS_ERUN;
        goto out;
    }
    if (id != row) {
        rc = ps_errf(e, PS_ERUN, "profile DB row id %lld, expected %lld", (long long)id,
                     (long long)row);
        goto out;
    }
    if (traced) {
        long nkr = ps_cuda_store_kernels(w, t, ext, row, e);
        if (nkr < 0) {
            rc = PS_ERUN;
            goto out;
        }
        *nkernels += (size_t)nkr;
    }
    if (p1->ok && (rc = ps_db_writer_add_tracer_overhead(w, row, evst.median_s, p1->untraced_med,
                                                         e)))
        goto out;
out:
    run_release(&r);
    ps_trace_free(t);
    free(ext);
    free(ev);
    free(span);
    return rc;
}

/* Two passes of (warmup + repeats) executions per op at the fp32 GEMM rate
 * (conservative for the tensor-core precisions) or the copy bandwidth, plus
 * ~4 ms of allocation, fills, plans and the CUPTI flush. */
static double estimate_s(const ps_suite *s, double flops, double bw, double launch)
{
    double t = 0;
    for (size_t i = 0; i < s->n; i++) {
        const ps_suite_item *it = &s->items[i];
        double one = launch > 0 ? launch : 5e-6;
        if (flops > 0 && ps_op_flops(&it->op) / flops > one)
            one = ps_op_flops(&it->op) / flops;
        if (bw > 0 && ps_op_bytes(&it->op) / bw > one)
            one = ps_op_bytes(&it->op) / bw;
        t += 2 * ((gpu_warmup(it) + gpu_repeats(it)) * one + 4e-3);
    }
    return t;
}

static void say(const ps_cuda_profile_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const ps_cuda_profile_opts *o, const char *fmt, ...)
{
    if (o->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("plansim: cuda: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* After an op failed: a library's refusal (cuBLAS "not supported", no
 * memory for a workspace) leaves the device usable and skips the op; a
 * fault in a kernel poisons the context, and the run must stop. */
static int device_still_usable(void)
{
    return cudaDeviceSynchronize() == cudaSuccess && cudaGetLastError() == cudaSuccess;
}

/* Skip reasons, printed after the progress line. */
static void note_skip(char **why, const ps_op *op, const char *kind, const char *msg)
{
    char d[320];
    ps_op_describe(op, d, sizeof d);
    size_t n = strlen(d) + strlen(kind) + strlen(msg) + 8;
    if ((*why = malloc(n)))
        snprintf(*why, n, "%s %s: %s", kind, d, msg);
}

int ps_profile_run_cuda_ex(const ps_suite *s, const ps_cuda_profile_opts *o, ps_db_writer *w,
                           ps_err *e)
{
    char desc[512];
    int ndev = ps_gpu_count(desc, sizeof desc);
    if (ndev <= 0)
        return ps_errf(e, PS_ERUN, "no usable CUDA GPU: %s", desc);
    if (o->device < 0 || o->device >= ndev)
        return ps_errf(e, PS_EINPUT, "--device cuda:%d: this machine has %d CUDA device(s)",
                       o->device, ndev);
    gpu g = {.rotate = !o->no_rotate};
    size_t n = s->n;
    pass1 *p1 = calloc(n ? n : 1, sizeof *p1);
    char **why = calloc(n ? n : 1, sizeof *why); /* non-NULL: skipped */
    int rc = 0, traced = 0, fallback = 0;
    size_t nkernels = 0, nskip = 0, nfail = 0;
    ps_progress prog;
    memset(&prog, 0, sizeof prog);
    double t0 = ps_now_s();
    if (!p1 || !why) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto out;
    }
    if (!(g.c = ps_cuda_ctx_new(o->device, e))) {
        rc = PS_ERUN;
        goto out;
    }
    if ((rc = device_facts(o->device, w, &g, e)))
        goto out;
    if (!o->skip_peaks) {
        double fl = NAN, bw = NAN, la = NAN;
        say(o, "measuring peaks (GEMM per precision, copies, launch)");
        if ((rc = measure_peaks(&g, s, w, o->quiet ? NULL : stderr, &fl, &bw, &la, e)))
            goto out;
        double est = estimate_s(s, fl, bw, la);
        say(o, "suite %s: %zu ops, expected duration about %.0f s (fp32 GEMM %.1f TFLOP/s, "
            "d2d %.2f TB/s)", s->name, n, est, fl / 1e12, bw / 1e12);
    }
    if (!o->quiet)
        ps_progress_start(&prog, "profile cuda", 2 * n);

    /* Pass 1: untraced (CUPTI not subscribed): the overhead baseline, and
     * the ops this device cannot run. */
    for (size_t i = 0; i < n; i++) {
        const ps_suite_item *it = &s->items[i];
        int repeats = gpu_repeats(it);
        double *ev = malloc((size_t)repeats * sizeof *ev);
        op_run r;
        ps_err e1 = {0};
        if (!ev) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto out;
        }
        int rr = run_prepare(g.c, &it->op, g.l2_bytes, g.rotate, 0x1000 + i, &r, &e1);
        if (!rr)
            rr = run_timed(&g, &r, gpu_warmup(it), repeats, -1, ev, &e1);
        run_release(&r);
        if (!rr) {
            p1[i].ok = 1;
            p1[i].untraced_med = median_of(ev, repeats);
        } else if (rr == PS_EINPUT) {
            note_skip(&why[i], &it->op, "skip", e1.msg);
            nskip++;
        } else if (device_still_usable()) {
            note_skip(&why[i], &it->op, "FAILED", e1.msg);
            nfail++;
        } else {
            char d[320];
            ps_op_describe(&it->op, d, sizeof d);
            free(ev);
            rc = ps_errf(e, PS_ERUN, "%s: %s (the device is no longer usable)", d, e1.msg);
            goto out;
        }
        free(ev);
        if (!o->quiet)
            ps_progress_update(&prog, i + 1, NULL);
    }

    /* Pass 2: traced. */
    const char *no = getenv("PLANSIM_NO_CUPTI");
    char cupti_msg[sizeof e->msg] = "";
    if (!o->no_trace && !(no && *no && strcmp(no, "0"))) {
        ps_err et = {0};
        if (ps_tracer_start(&et))
            snprintf(cupti_msg, sizeof cupti_msg, "%s", et.msg);
        else
            traced = 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (why[i])
            continue;
        ps_err e2 = {0};
        int rr = measure_traced(&g, &s->items[i], &p1[i], traced, 0x2000 + i, w, &nkernels,
                                &fallback, &e2);
        if (rr && traced) {
            /* The failed op's records carry the row id the next op reuses. */
            ps_trace *junk = NULL;
            ps_err ej = {0};
            if (!ps_tracer_collect(&junk, &ej))
                ps_trace_free(junk);
        }
        if (rr == PS_EINPUT) {
            note_skip(&why[i], &s->items[i].op, "skip", e2.msg);
            nskip++;
        } else if (rr && device_still_usable()) {
            note_skip(&why[i], &s->items[i].op, "FAILED", e2.msg);
            nfail++;
        } else if (rr) {
            char d[320];
            ps_op_describe(&s->items[i].op, d, sizeof d);
            rc = ps_errf(e, PS_ERUN, "%s: %s (the device is no longer usable)", d, e2.msg);
            goto out;
        }
        if (!o->quiet)
            ps_progress_update(&prog, n + i + 1, NULL);
    }
    ps_progress_end(&prog);
    for (size_t i = 0; i < n; i++)
        if (why[i])
            say(o, "%s", why[i]);
    if (cupti_msg[0])
        say(o, "CUPTI unavailable, every op timed with CUDA events: %s", cupti_msg);
    if (traced) {
        size_t dropped = ps_tracer_dropped();
        rc = ps_db_writer_set_attr_int(w, "cupti_dropped_records", (long long)dropped, e);
        if (!rc && dropped)
            say(o, "warning: CUPTI dropped %zu records; ops that lost theirs fell back to CUDA "
                "events", dropped);
        if (rc)
            goto out;
    }
    if (nfail)
        say(o, "warning: %zu op(s) FAILED and have no row (see above)", nfail);
    if (!(rc = ps_db_writer_set_attr_str(w, "timer_source", traced ? "cupti" : "cuda_event", e)))
        say(o, "%zu ops measured, %zu skipped, %zu failed, %zu kernels attributed%s, %d op(s) "
            "on event timing, %.1f s", ps_db_writer_nops(w), nskip, nfail, nkernels,
            traced ? " (CUPTI)" : " (no CUPTI)", traced ? fallback : (int)ps_db_writer_nops(w),
            ps_now_s() - t0);
out:
    ps_progress_end(&prog);
    if (traced)
        ps_tracer_stop();
    for (int i = 0; i < g.nev; i++)
        cudaEventDestroy(g.ev[i]);
    free(g.ev);
    ps_cuda_ctx_free(g.c);
    if (why)
        for (size_t i = 0; i < n; i++)
            free(why[i]);
    free(why);
    free(p1);
    return rc;
}

#else /* !PS_HAVE_CUDA */

int ps_profile_run_cuda_ex(const ps_suite *s, const ps_cuda_profile_opts *o, ps_db_writer *w,
                           ps_err *e)
{
    (void)s, (void)o, (void)w;
    return ps_errf(e, PS_ERUN, "built without CUDA support");
}

#endif

int ps_profile_run_cuda(const ps_suite *s, int device, ps_db_writer *w, ps_err *e)
{
    const char *q = getenv("PLANSIM_QUIET");
    ps_cuda_profile_opts o = {.device = device, .quiet = q && *q && strcmp(q, "0")};
    return ps_profile_run_cuda_ex(s, &o, w, e);
}
