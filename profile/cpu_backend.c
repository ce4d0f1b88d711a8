#include "cpu_backend.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu_attention.h"
#include "kernels/cpu_blas.h"
#include "kernels/cpu_conv.h"
#include "kernels/cpu_ops.h"

/* ------------------------------------------------------------ buffers */

#define MAXBUF 6

typedef struct bench {
    ps_op op;
    int kind;
    void *buf[MAXBUF];
    int ta, tb, sub; /* gemm transposes; sub-kind (mask, ew op, reduction op) */
    int64_t turn;     /* embedding_bag: which index set the next run uses */
    ps_cpu_conv conv;
} bench;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* |x| uniform in [1/16, 1], random sign: never zero.  Large buffers repeat
 * a fresh random block of RAND_BLOCK elements: generating every element
 * runs at ~0.5 GB/s, which made filling a 1 GB embedding table cost more
 * than measuring it, and the values only have to be non-zero, not unique. */
#define RAND_BLOCK 65536

static void tile_block(void *p, size_t n, size_t elt)
{
    size_t blk = (n < RAND_BLOCK ? n : RAND_BLOCK) * elt, total = n * elt;
    for (size_t off = blk; off < total; off += blk)
        memcpy((char *)p + off, p, total - off < blk ? total - off : blk);
}

static void fill_f32(float *p, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    size_t m = n < RAND_BLOCK ? n : RAND_BLOCK;
    for (size_t i = 0; i < m; i++) {
        uint64_t r = splitmix(&s);
        float u = (float)(r >> 40) * (1.0f / 16777216.0f);
        float x = 0.0625f + 0.9375f * u;
        p[i] = (r & 1) ? -x : x;
    }
    tile_block(p, n, sizeof *p);
}

static void fill_f64(double *p, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    size_t m = n < RAND_BLOCK ? n : RAND_BLOCK;
    for (size_t i = 0; i < m; i++) {
        uint64_t r = splitmix(&s);
        double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
        double x = 0.0625 + 0.9375 * u;
        p[i] = (r & 1) ? -x : x;
    }
    tile_block(p, n, sizeof *p);
}

static uint64_t g_seed = 0x5eed;

static void *alloc_bytes(size_t bytes)
{
    /* 64-byte alignment: whole cache lines, AVX-512 loads. */
    size_t sz = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, sz ? sz : 64);
}

static void *alloc_rand(size_t n, int fp64)
{
    void *p = alloc_bytes(n * (fp64 ? 8 : 4));
    if (!p)
        return NULL;
    if (fp64)
        fill_f64(p, n, g_seed++);
    else
        fill_f32(p, n, g_seed++);
    return p;
}

static void bench_free(bench *b)
{
    for (int i = 0; i < MAXBUF; i++)
        free(b->buf[i]);
    memset(b->buf, 0, sizeof b->buf);
}

/* Bytes of buffers an op needs here (inputs, outputs, workspace). */
static double op_alloc_bytes(const ps_op *op)
{
    const int64_t *d = op->d;
    double w = ps_op_dtype_bytes(op->dtype);
    switch (ps_op_kind_id_of(op->kind)) {
    case PS_OPK_GEMM: return w * ((double)d[0] * d[2] + (double)d[2] * d[1] + (double)d[0] * d[1]);
    case PS_OPK_BATCHED_GEMM:
        return w * d[0] * ((double)d[1] * d[3] + (double)d[3] * d[2] + (double)d[1] * d[2]);
    case PS_OPK_ATTENTION:
        return 4.0 * d[0] * d[1] * (2.0 * d[2] * d[4] + 2.0 * d[3] * d[4]) +
               4.0 * (d[2] < PS_CPU_ATTN_BLOCK ? d[2] : PS_CPU_ATTN_BLOCK) * d[3] +
               (double)d[2] * d[3];
    case PS_OPK_CONV2D: {
        double oh = (double)ps_op_conv_out_h(op), ow = (double)ps_op_conv_out_w(op);
        return 4.0 * ((double)d[0] * d[1] * d[2] * d[3] + (double)d[4] * d[1] * d[5] * d[6] +
                      (double)d[0] * d[4] * oh * ow + (double)d[1] * d[5] * d[6] * oh * ow);
    }
    case PS_OPK_ELEMENTWISE: return 12.0 * d[0];
    case PS_OPK_REDUCTION: return 8.0 * d[0] * d[1] + 8.0 * d[1];
    case PS_OPK_EMBEDDING_BAG:
        return 4.0 * d[0] * d[1] + 8.0 * 16 * d[3] * d[2] + 4.0 * d[3] * d[1];
    case PS_OPK_MEMCPY: return 2.0 * d[0];
    default: return 0;
    }
}

static double phys_mem_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
}

const char *ps_cpu_op_backend(const ps_op *op)
{
    int k = ps_op_kind_id_of(op->kind);
    return k == PS_OPK_GEMM || k == PS_OPK_BATCHED_GEMM ? "openblas" : "c";
}

int ps_cpu_op_supported(const ps_op *op, const char *where, ps_err *e)
{
    int rc = ps_op_validate(op, where, e);
    if (rc)
        return rc;
    char desc[320];
    ps_op_describe(op, desc, sizeof desc);
    int k = ps_op_kind_id_of(op->kind);
    if (k == PS_OPK_GEMM || k == PS_OPK_BATCHED_GEMM) {
        if (strcmp(op->dtype, "fp32") && strcmp(op->dtype, "fp64"))
            return ps_errf(e, PS_EINPUT,
                           "%s (%s): the CPU backend runs %s in fp32 and fp64 only, not %s",
                           where, desc, op->kind, op->dtype);
    } else if (k == PS_OPK_MEMCPY) {
        if (strcmp(op->variant, "host"))
            return ps_errf(e, PS_EINPUT,
                           "%s (%s): memcpy variant '%s' needs a CUDA device; the CPU backend "
                           "measures \"host\"",
                           where, desc, op->variant);
    } else if (strcmp(op->dtype, "fp32")) {
        return ps_errf(e, PS_EINPUT, "%s (%s): the CPU backend runs %s in fp32 only, not %s",
                       where, desc, op->kind, op->dtype);
    }
    /* The largest dimension products go through BLAS's 32-bit ints. */
    if ((k == PS_OPK_GEMM || k == PS_OPK_BATCHED_GEMM) &&
        (op->d[k == PS_OPK_GEMM ? 0 : 1] > INT32_MAX || op->d[k == PS_OPK_GEMM ? 1 : 2] > INT32_MAX))
        return ps_errf(e, PS_EINPUT, "%s (%s): dimension too large for BLAS", where, desc);
    double need = op_alloc_bytes(op), mem = phys_mem_bytes();
    if (mem > 0 && need > 0.5 * mem)
        return ps_errf(e, PS_EINPUT,
                       "%s (%s): needs %.1f GB of buffers, more than half of this machine's %.1f "
                       "GB",
                       where, desc, need / 1e9, mem / 1e9);
    return 0;
}

/* embedding_bag cycles through this many random index sets: a model looks
 * up different rows every batch, and repeating one set would time the
 * cache hits of rows the previous run just fetched.  Tables that fit in the
 * caches still end up cached, as they do in a real run. */
#define EMB_SETS 16

static int bench_prepare(bench *b, const ps_op *op, ps_err *e)
{
    memset(b, 0, sizeof *b);
    b->op = *op;
    b->kind = ps_op_kind_id_of(op->kind);
    const int64_t *d = op->d;
    int fp64 = !strcmp(op->dtype, "fp64");
    int ok = 1;
    switch (b->kind) {
    case PS_OPK_GEMM:
    case PS_OPK_BATCHED_GEMM: {
        int64_t nb = b->kind == PS_OPK_GEMM ? 1 : d[0];
        const int64_t *mnk = b->kind == PS_OPK_GEMM ? d : d + 1;
        b->ta = op->variant[0] == 't';
        b->tb = op->variant[1] == 't';
        ok = (b->buf[0] = alloc_rand((size_t)(nb * mnk[0] * mnk[2]), fp64)) &&
             (b->buf[1] = alloc_rand((size_t)(nb * mnk[2] * mnk[1]), fp64)) &&
             (b->buf[2] = alloc_rand((size_t)(nb * mnk[0] * mnk[1]), fp64));
        break;
    }
    case PS_OPK_ATTENTION: {
        size_t nq = (size_t)(d[0] * d[1] * d[2] * d[4]), nk = (size_t)(d[0] * d[1] * d[3] * d[4]);
        b->sub = ps_cpu_mask_parse(op->variant);
        ok = (b->buf[0] = alloc_rand(nq, 0)) && (b->buf[1] = alloc_rand(nk, 0)) &&
             (b->buf[2] = alloc_rand(nk, 0)) && (b->buf[3] = alloc_rand(nq, 0)) &&
             (b->buf[4] = alloc_bytes(ps_cpu_attention_work_floats(d[2], d[3]) * 4));
        if (ok && b->sub == PS_CPU_MASK_TREE) {
            /* A random token tree: each token's parent is an earlier one. */
            int64_t *parent = malloc((size_t)d[2] * sizeof *parent);
            ok = parent && (b->buf[5] = alloc_bytes((size_t)(d[2] * d[3])));
            if (ok) {
                uint64_t s = g_seed++;
                parent[0] = -1;
                for (int64_t i = 1; i < d[2]; i++)
                    parent[i] = (int64_t)(splitmix(&s) % (uint64_t)i);
                ps_cpu_tree_mask(d[2], d[3], parent, b->buf[5]);
            }
            free(parent);
        }
        break;
    }
    case PS_OPK_CONV2D: {
        ps_cpu_conv g = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]};
        b->conv = g;
        size_t nx = (size_t)(d[0] * d[1] * d[2] * d[3]), nw = (size_t)(d[4] * d[1] * d[5] * d[6]);
        size_t ny = (size_t)(d[0] * d[4] * ps_cpu_conv_out_h(&g) * ps_cpu_conv_out_w(&g));
        b->sub = !strcmp(op->variant, "fwd") ? 0 : !strcmp(op->variant, "bwd_input") ? 1 : 2;
        /* buf0 = x (or dx), buf1 = wt (or dwt), buf2 = y (or dy). */
        ok = (b->buf[0] = alloc_rand(nx, 0)) && (b->buf[1] = alloc_rand(nw, 0)) &&
             (b->buf[2] = alloc_rand(ny, 0)) &&
             (b->buf[3] = alloc_bytes(ps_cpu_conv2d_work_floats(&g) * 4));
        break;
    }
    case PS_OPK_ELEMENTWISE:
        b->sub = ps_cpu_ew_parse(op->variant);
        ok = (b->buf[0] = alloc_rand((size_t)d[0], 0)) &&
             (b->buf[1] = alloc_rand((size_t)d[0], 0)) &&
             (b->buf[2] = alloc_rand((size_t)d[0], 0));
        break;
    case PS_OPK_REDUCTION:
        b->sub = ps_cpu_red_parse(op->variant);
        ok = (b->buf[0] = alloc_rand((size_t)(d[0] * d[1]), 0)) &&
             (b->buf[1] = alloc_rand((size_t)d[1], 0)) &&
             (b->buf[2] = alloc_rand((size_t)d[1], 0)) &&
             (b->buf[3] = alloc_rand((size_t)(d[0] * d[1]), 0));
        break;
    case PS_OPK_EMBEDDING_BAG: {
        ok = (b->buf[0] = alloc_rand((size_t)(d[0] * d[1]), 0)) &&
             (b->buf[1] = alloc_bytes((size_t)(EMB_SETS * d[3] * d[2]) * sizeof(int64_t))) &&
             (b->buf[2] = alloc_rand((size_t)(d[3] * d[1]), 0));
        if (ok) {
            int64_t *idx = b->buf[1];
            uint64_t s = g_seed++;
            for (int64_t i = 0; i < EMB_SETS * d[3] * d[2]; i++)
                idx[i] = (int64_t)(splitmix(&s) % (uint64_t)d[0]);
        }
        b->sub = !strcmp(op->variant, "mean");
        break;
    }
    case PS_OPK_MEMCPY:
        ok = (b->buf[0] = alloc_bytes((size_t)d[0])) && (b->buf[1] = alloc_bytes((size_t)d[0]));
        if (ok) {
            memset(b->buf[0], 0x5a, (size_t)d[0]);
            memset(b->buf[1], 0xa5, (size_t)d[0]);
        }
        break;
    default: ok = 0;
    }
    if (!ok) {
        bench_free(b);
        char desc[320];
        ps_op_describe(op, desc, sizeof desc);
        return ps_errf(e, PS_ERUN, "%s: cannot allocate %.1f MB of buffers", desc,
                       op_alloc_bytes(op) / 1e6);
    }
    return 0;
}

static int bench_run(bench *b)
{
    const int64_t *d = b->op.d;
    int fp64 = !strcmp(b->op.dtype, "fp64");
    switch (b->kind) {
    case PS_OPK_GEMM: {
        int64_t lda = b->ta ? d[0] : d[2], ldb = b->tb ? d[2] : d[1];
        if (fp64)
            ps_cpu_dgemm(b->ta, b->tb, d[0], d[1], d[2], 1.0, b->buf[0], lda, b->buf[1], ldb, 0.0,
                         b->buf[2], d[1]);
        else
            ps_cpu_sgemm(b->ta, b->tb, d[0], d[1], d[2], 1.0f, b->buf[0], lda, b->buf[1], ldb,
                         0.0f, b->buf[2], d[1]);
        return 0;
    }
    case PS_OPK_BATCHED_GEMM:
        if (fp64)
            ps_cpu_dgemm_batched(b->ta, b->tb, d[0], d[1], d[2], d[3], 1.0, b->buf[0], d[1] * d[3],
                                 b->buf[1], d[3] * d[2], 0.0, b->buf[2], d[1] * d[2]);
        else
            ps_cpu_sgemm_batched(b->ta, b->tb, d[0], d[1], d[2], d[3], 1.0f, b->buf[0],
                                 d[1] * d[3], b->buf[1], d[3] * d[2], 0.0f, b->buf[2],
                                 d[1] * d[2]);
        return 0;
    case PS_OPK_ATTENTION:
        return ps_cpu_attention(d[0], d[1], d[2], d[3], d[4], b->buf[0], b->buf[1], b->buf[2],
                                (ps_cpu_mask_kind)b->sub, b->buf[5], b->buf[3], b->buf[4]);
    case PS_OPK_CONV2D:
        if (b->sub == 0)
            return ps_cpu_conv2d_fwd(&b->conv, b->buf[0], b->buf[1], b->buf[2], b->buf[3]);
        if (b->sub == 1)
            return ps_cpu_conv2d_bwd_input(&b->conv, b->buf[2], b->buf[1], b->buf[0], b->buf[3]);
        return ps_cpu_conv2d_bwd_weight(&b->conv, b->buf[0], b->buf[2], b->buf[1], b->buf[3]);
    case PS_OPK_ELEMENTWISE:
        ps_cpu_elementwise((ps_cpu_ew_op)b->sub, (size_t)d[0], b->buf[0], b->buf[1], b->buf[2]);
        return 0;
    case PS_OPK_REDUCTION:
        ps_cpu_reduction((ps_cpu_red_op)b->sub, d[0], d[1], b->buf[0], b->buf[1], b->buf[2],
                         b->buf[3]);
        return 0;
    case PS_OPK_EMBEDDING_BAG: {
        const int64_t *idx = (const int64_t *)b->buf[1] + (b->turn++ % EMB_SETS) * d[3] * d[2];
        return ps_cpu_embedding_bag(d[0], d[1], d[2], d[3], b->buf[0], idx, b->sub, b->buf[2]);
    }
    case PS_OPK_MEMCPY: ps_cpu_memcpy(b->buf[1], b->buf[0], (size_t)d[0]); return 0;
    default: return -1;
    }
}

/* Time `iters` back-to-back runs; seconds per run, or -1 on a kernel error.
 * *stolen: the fraction of the wall time the thread spent off its core. */
static double time_runs(bench *b, long iters, double *stolen)
{
    double c0 = ps_timer_thread_cpu_s(), t0 = ps_timer_now_s();
    for (long i = 0; i < iters; i++)
        if (bench_run(b))
            return -1;
    double wall = ps_timer_now_s() - t0, cpu = ps_timer_thread_cpu_s() - c0;
    if (stolen)
        *stolen = wall > 0 ? (wall - cpu) / wall : 0;
    return wall / (double)iters;
}

/* A sample is retaken when another process held the core for more than 3%
 * of it: on a shared machine (a 2-core VM running builds) a few-ms window
 * is often cut by a scheduler time slice, which doubles it.  Only with one
 * BLAS thread: with more, the workers' time is not this thread's CPU time.
 * After 3 x repeats retakes the remaining samples are kept as they are. */
#define PS_STOLEN_MAX 0.03

/* One op being measured: its buffers, iterations per sample, samples. */
typedef struct slot {
    bench b;
    const ps_suite_item *it;
    long iters;
    int rewarm; /* one untimed run before each sample */
    int retakes;
    double *samples;
} slot;

static int slot_calibrate(slot *sl, ps_err *e)
{
    char desc[320];
    ps_op_describe(&sl->b.op, desc, sizeof desc);
    for (int i = 0; i < sl->it->warmup; i++)
        if (bench_run(&sl->b))
            return ps_errf(e, PS_ERUN, "%s: kernel failed", desc);
    double min_time_s = sl->it->min_time_s;
    sl->iters = 1;
    for (long n = 1;; n *= 4) {
        double t = time_runs(&sl->b, n, NULL);
        if (t < 0)
            return ps_errf(e, PS_ERUN, "%s: kernel failed", desc);
        if (t * (double)n >= 0.1 * min_time_s || n >= (1l << 24)) {
            double want = min_time_s / (t > 1e-9 ? t : 1e-9);
            sl->iters = want < 1 ? 1 : want > 1e8 ? 100000000l : (long)ceil(want);
            /* Between two samples of a short op other ops ran and evicted
             * its data; one untimed run restores the in-cache state it was
             * calibrated in, for at most a tenth more time.  Long ops'
             * working sets are past the caches anyway. */
            sl->rewarm = t < 0.1 * min_time_s;
            break;
        }
    }
    sl->retakes = 3 * sl->it->repeats;
    return 0;
}

/* One sample: the faster of two half-length windows when the op is short
 * enough to fill two, else one window.  A neighbour's burst on the shared
 * cache or memory bus rarely covers both halves, so the sample tracks the
 * op's own time at no extra cost; on a quiet machine the two halves agree
 * to within the noise. */
static int slot_sample(slot *sl, int r, int check, ps_err *e)
{
    int windows = sl->iters >= 2 ? 2 : 1;
    long per = (sl->iters + windows - 1) / windows;
    for (;;) {
        double best = INFINITY, stolen_max = 0;
        for (int w = 0; w < windows; w++) {
            double stolen = 0, t = sl->rewarm && bench_run(&sl->b) ? -1
                                                                    : time_runs(&sl->b, per, &stolen);
            if (t < 0) {
                char desc[320];
                ps_op_describe(&sl->b.op, desc, sizeof desc);
                return ps_errf(e, PS_ERUN, "%s: kernel failed", desc);
            }
            if (t < best)
                best = t;
            if (stolen > stolen_max)
                stolen_max = stolen;
        }
        sl->samples[r] = best;
        if (!check || stolen_max <= PS_STOLEN_MAX || sl->retakes <= 0)
            return 0;
        sl->retakes--;
    }
}

/* Progress inside a group: ops [base, base + n) of the suite, reported as
 * fractions of the group as rounds complete. */
typedef struct group_progress {
    const ps_cpu_profile_opts *o;
    size_t base, total;
} group_progress;

/* Measure n ops together: calibrate each, then `repeats` rounds that take
 * one sample of every op in turn.  Interleaving spreads a slow period (a
 * neighbour hammering the shared cache, memory bus or sibling hyper-thread,
 * which steals no CPU time and so escapes the retake check) over one
 * sample of many ops, where the median discards it, instead of over every
 * sample of one op.  Groups are large (a round of the quick suite takes
 * seconds) so that even a slow period of a second or two touches one round,
 * not all of them. */
static int measure_group(slot *sl, int n, ps_stats *out, const group_progress *gp, ps_err *e)
{
    int rc = 0, maxrep = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = slot_calibrate(&sl[i], e);
        if (sl[i].it->repeats > maxrep)
            maxrep = sl[i].it->repeats;
    }
    int check = ps_cpu_blas_threads() == 1;
    for (int r = 0; r < maxrep && !rc; r++) {
        for (int i = 0; i < n && !rc; i++)
            if (r < sl[i].it->repeats)
                rc = slot_sample(&sl[i], r, check, e);
        if (gp && gp->o && gp->o->progress)
            gp->o->progress(gp->o->user, gp->base + (size_t)n * (size_t)(r + 1) / (size_t)maxrep,
                            gp->total, &sl[0].it->op);
    }
    for (int i = 0; i < n && !rc; i++)
        ps_stats_compute(sl[i].samples, sl[i].it->repeats, &out[i]);
    return rc;
}

int ps_cpu_measure_op(const ps_op *op, int warmup, int repeats, double min_time_s, ps_stats *out,
                      ps_err *e)
{
    int rc = ps_cpu_op_supported(op, "op", e);
    if (rc)
        return rc;
    if (repeats < 1)
        return ps_errf(e, PS_EINPUT, "repeats must be >= 1");
    ps_suite_item it = {.op = *op, .warmup = warmup, .repeats = repeats, .min_time_s = min_time_s};
    slot sl = {.it = &it};
    if (!(sl.samples = calloc((size_t)repeats, sizeof *sl.samples)))
        return ps_errf(e, PS_ERUN, "out of memory");
    if (!(rc = bench_prepare(&sl.b, op, e))) {
        rc = measure_group(&sl, 1, out, NULL, e);
        bench_free(&sl.b);
    }
    free(sl.samples);
    return rc;
}

/* ------------------------------------------------------------ peaks */

static double gemm_rate(int64_t n, int fp64, ps_err *e)
{
    ps_op op;
    int64_t dims[3] = {n, n, n};
    ps_stats st;
    if (ps_op_make(&op, "gemm", fp64 ? "fp64" : "fp32", NULL, dims, 3, e) ||
        ps_cpu_measure_op(&op, 1, 3, 0.1, &st, e))
        return -1;
    return ps_op_flops(&op) / st.min_s;
}

typedef struct copy_job {
    char *dst;
    const char *src;
    size_t bytes;
    int reps;
} copy_job;

static void *copy_worker(void *arg)
{
    copy_job *j = arg;
    for (int r = 0; r < j->reps; r++)
        memcpy(j->dst, j->src, j->bytes);
    return NULL;
}

/* Copy `bytes` split over `nthreads` threads; ps_op_bytes (2 x size) per s. */
static double memcpy_rate(size_t bytes, int nthreads, ps_err *e)
{
    char *src = alloc_bytes(bytes), *dst = alloc_bytes(bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        ps_errf(e, PS_ERUN, "cannot allocate 2 x %.0f MB for the memcpy peak", bytes / 1e6);
        return -1;
    }
    memset(src, 0x5a, bytes);
    memset(dst, 0xa5, bytes); /* fault the pages in before timing */
    copy_job jobs[64];
    pthread_t th[64];
    if (nthreads > 64)
        nthreads = 64;
    size_t chunk = (bytes / (size_t)nthreads + 63) / 64 * 64;
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = ps_timer_now_s();
        int started = 0;
        for (int i = 0; i < nthreads; i++) {
            size_t off = (size_t)i * chunk;
            size_t len = off >= bytes ? 0 : (bytes - off < chunk ? bytes - off : chunk);
            jobs[i] = (copy_job){dst + off, src + off, len, 1};
            if (i == 0)
                continue;
            if (pthread_create(&th[i], NULL, copy_worker, &jobs[i]) == 0)
                started = i;
            else
                copy_worker(&jobs[i]);
        }
        copy_worker(&jobs[0]);
        for (int i = 1; i <= started; i++)
            pthread_join(th[i], NULL);
        double t = ps_timer_now_s() - t0;
        if (rep > 0 && t < best) /* rep 0 warms up the threads and TLB */
            best = t;
    }
    free(src);
    free(dst);
    return 2.0 * (double)bytes / best;
}

static double launch_overhead(ps_err *e)
{
    ps_op op;
    int64_t n = 1;
    ps_stats st;
    if (ps_op_make(&op, "elementwise", NULL, "relu", &n, 1, e) ||
        ps_cpu_measure_op(&op, 10, 5, 0.002, &st, e))
        return -1;
    return st.median_s;
}

static double read_clock_hz(void)
{
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    double khz = 0;
    if (f) {
        if (fscanf(f, "%lf", &khz) != 1)
            khz = 0;
        fclose(f);
        if (khz > 0)
            return khz * 1e3;
    }
    f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return 0;
    char line[512];
    double mhz = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu MHz", 7)) {
            const char *c = strchr(line, ':');
            if (c)
                mhz = atof(c + 1);
            break;
        }
    fclose(f);
    return mhz * 1e6;
}

void ps_cpu_device_name(char *buf, size_t n)
{
    char model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                const char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t')
                        c++;
                    snprintf(model, sizeof model, "%s", c);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        fclose(f);
    }
    snprintf(buf, n, "%s (%d cores)", model, ps_timer_ncpus());
}

int ps_cpu_measure_peaks(const ps_suite *s, int threads, ps_db_writer *w, double *flops_per_s,
                         double *bytes_per_s, double *overhead_s, ps_err *e)
{
    int ncpu = ps_timer_ncpus();
    double g32 = gemm_rate(s->peak_gemm_n, 0, e);
    double g64 = g32 > 0 ? gemm_rate(s->peak_gemm_n, 1, e) : -1;
    if (g32 < 0 || g64 < 0)
        return e ? e->code : PS_ERUN;
    double g32a = g32, g64a = g64;
    if (threads != ncpu) {
        ps_cpu_blas_set_threads(ncpu);
        g32a = gemm_rate(s->peak_gemm_n, 0, e);
        g64a = g32a > 0 ? gemm_rate(s->peak_gemm_n, 1, e) : -1;
        ps_cpu_blas_set_threads(threads);
        if (g32a < 0 || g64a < 0)
            return e ? e->code : PS_ERUN;
    }
    double bw = memcpy_rate((size_t)s->peak_memcpy_bytes, 1, e);
    double bwa = bw > 0 && ncpu > 1 ? memcpy_rate((size_t)s->peak_memcpy_bytes, ncpu, e) : bw;
    double lo = bwa > 0 ? launch_overhead(e) : -1;
    if (bw < 0 || bwa < 0 || lo < 0)
        return e ? e->code : PS_ERUN;
    struct {
        const char *name;
        double v;
        const char *units;
    } pk[] = {
        {PS_PEAK_GEMM_FP32, g32, "flop/s"},
        {PS_PEAK_GEMM_FP64, g64, "flop/s"},
        {PS_PEAK_MEMCPY, bw, "B/s"},
        {PS_PEAK_GEMM_FP32_ALL, g32a, "flop/s"},
        {PS_PEAK_GEMM_FP64_ALL, g64a, "flop/s"},
        {PS_PEAK_MEMCPY_ALL, bwa, "B/s"},
        {PS_PEAK_LAUNCH, lo, "s"},
        {PS_PEAK_TIMER_RES, ps_timer_resolution_s(), "s"},
        {PS_PEAK_CORES, ncpu, ""},
        {PS_PEAK_THREADS, threads, ""},
        {PS_PEAK_CLOCK, read_clock_hz(), "Hz"},
        {PS_PEAK_MEM, phys_mem_bytes(), "B"},
        {PS_PEAK_L2, (double)sysconf(_SC_LEVEL2_CACHE_SIZE), "B"},
        {PS_PEAK_L3, (double)sysconf(_SC_LEVEL3_CACHE_SIZE), "B"},
    };
    for (size_t i = 0; i < sizeof pk / sizeof *pk; i++) {
        if (!(pk[i].v > 0))
            continue; /* unknown on this system (e.g. no cache info) */
        int rc = ps_db_writer_add_peak(w, pk[i].name, pk[i].v, pk[i].units, e);
        if (rc)
            return rc;
    }
    if (flops_per_s)
        *flops_per_s = g32;
    if (bytes_per_s)
        *bytes_per_s = bw;
    if (overhead_s)
        *overhead_s = lo;
    return 0;
}

/* ------------------------------------------------------------ suite */

/* Expected duration of the op measurements: the roofline time of one run
 * from the measured peaks, times how far each kind stays from it here
 * (OpenBLAS GEMM and conv near it, the plain C memory-bound kernels an
 * order of magnitude slower: measured with the standard suite on a 2-core
 * Xeon VM), the runs a measurement takes, and filling the buffers. */
static double cpu_estimate_s(const ps_suite *s, double flops_per_s, double bytes_per_s,
                             double overhead_s)
{
    static const double slow[PS_OPK_COUNT] = {
        [PS_OPK_GEMM] = 1.2,         [PS_OPK_BATCHED_GEMM] = 1.2, [PS_OPK_ATTENTION] = 2.5,
        [PS_OPK_CONV2D] = 1.3,       [PS_OPK_ELEMENTWISE] = 10,   [PS_OPK_REDUCTION] = 8,
        [PS_OPK_EMBEDDING_BAG] = 3,  [PS_OPK_MEMCPY] = 1.5};
    double total = 0;
    for (size_t i = 0; i < s->n; i++) {
        const ps_suite_item *it = &s->items[i];
        int k = ps_op_kind_id_of(it->op.kind);
        double tf = ps_op_flops(&it->op) / flops_per_s, tb = ps_op_bytes(&it->op) / bytes_per_s;
        if (!strcmp(it->op.dtype, "fp64"))
            tf *= 2;
        double t = overhead_s + (tf > tb ? tf : tb) * (k >= 0 ? slow[k] : 1);
        double meas = t > it->min_time_s ? t : it->min_time_s;
        total += (it->warmup + 1) * t + 0.3 * meas + it->repeats * meas +
                 op_alloc_bytes(&it->op) / 2e9;
    }
    return total;
}

/* Ops measured together (interleaved rounds, see measure_group): as many as
 * fit in PS_GROUP_BYTES of buffers (at most an eighth of the memory). */
#define PS_GROUP_OPS 4096
#define PS_GROUP_BYTES (2048.0 * 1024 * 1024)

int ps_profile_run_cpu(const ps_suite *s, const ps_cpu_profile_opts *o, ps_db_writer *w,
                       ps_err *e)
{
    int rc = 0;
    for (size_t i = 0; i < s->n && !rc; i++) {
        char where[64];
        snprintf(where, sizeof where, "suite %s, op %zu", s->name, i);
        rc = ps_cpu_op_supported(&s->items[i].op, where, e);
    }
    if (rc)
        return rc;
    int threads = o && o->threads > 0 ? o->threads : 1;
    int pin = o ? o->pin_core : -1;
    if (pin >= 0 && threads > 1)
        return ps_errf(e, PS_EINPUT,
                       "--pin %d with --threads %d: pinning keeps one core, so it needs one "
                       "thread",
                       pin, threads);
    int old_threads = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(threads);
    ps_db_writer_set_attr_str(w, "blas_config", ps_cpu_blas_config(), NULL);
    ps_db_writer_set_attr_str(w, "blas_core", ps_cpu_blas_core(), NULL);

    /* Peaks before pinning: their all-cores half needs every core. */
    double fl = 5e10, bw = 1e10, ovh = 1e-7;
    if (!(o && o->skip_peaks))
        rc = ps_cpu_measure_peaks(s, threads, w, &fl, &bw, &ovh, e);
    if (!rc)
        rc = ps_timer_pin(pin, e);
    if (!rc && o && o->estimate)
        o->estimate(o->user, s->n, cpu_estimate_s(s, fl, bw, ovh));
    slot *sl = calloc(PS_GROUP_OPS, sizeof *sl);
    ps_stats *st = calloc(PS_GROUP_OPS, sizeof *st);
    if (!rc && (!sl || !st))
        rc = ps_errf(e, PS_ERUN, "out of memory");
    for (size_t i = 0; i < s->n && !rc;) {
        /* A group: consecutive ops up to PS_GROUP_OPS and PS_GROUP_BYTES of
         * buffers (always at least one op). */
        int n = 0;
        double bytes = 0, cap = PS_GROUP_BYTES, mem = phys_mem_bytes();
        if (mem > 0 && mem / 8 < cap)
            cap = mem / 8;
        while (i + (size_t)n < s->n && n < PS_GROUP_OPS) {
            double ob = op_alloc_bytes(&s->items[i + (size_t)n].op);
            if (n > 0 && bytes + ob > cap)
                break;
            bytes += ob;
            n++;
        }
        if (o && o->progress)
            o->progress(o->user, i, s->n, &s->items[i].op);
        int ready = 0;
        for (; ready < n && !rc; ready++) {
            sl[ready].it = &s->items[i + (size_t)ready];
            sl[ready].samples = calloc((size_t)sl[ready].it->repeats, sizeof(double));
            if (!sl[ready].samples)
                rc = ps_errf(e, PS_ERUN, "out of memory");
            else if ((rc = bench_prepare(&sl[ready].b, &sl[ready].it->op, e)))
                free(sl[ready].samples);
        }
        if (rc)
            ready--; /* the failed slot freed its own */
        group_progress gp = {o, i, s->n};
        if (!rc)
            rc = measure_group(sl, n, st, &gp, e);
        for (int j = 0; j < n && !rc; j++)
            if (ps_db_writer_add_op(w, &sl[j].it->op, ps_cpu_op_backend(&sl[j].it->op), "clock",
                                    &st[j], NAN, e) < 0)
                rc = e ? e->code : PS_ERUN;
        for (int j = 0; j < ready; j++) {
            bench_free(&sl[j].b);
            free(sl[j].samples);
        }
        memset(sl, 0, PS_GROUP_OPS * sizeof *sl);
        i += (size_t)n;
    }
    free(sl);
    free(st);
    if (!rc && o && o->progress)
        o->progress(o->user, s->n, s->n, NULL);
    ps_cpu_blas_set_threads(old_threads);
    ps_timer_unpin();
    return rc;
}
