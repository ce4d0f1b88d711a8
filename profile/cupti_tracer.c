/* CUPTI activity tracing (see cupti_tracer.h).  The record container and the
 * join are plain C and built everywhere; only the part between the
 * PS_HAVE_CUDA guards talks to CUPTI. */
#include "cupti_tracer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ container */

struct ps_trace {
    ps_trace_kernel *k;
    size_t nk, capk;
    ps_trace_api *a;
    size_t na, capa;
    ps_trace_ext *x;
    size_t nx, capx;
    char **names;
    size_t nnames, capnames;
    uint32_t *hash; /* open addressing: name index + 1, 0 = empty */
    size_t hcap;
    size_t dropped;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

ps_trace *ps_trace_new(void)
{
    return calloc(1, sizeof(ps_trace));
}

void ps_trace_clear(ps_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i]);
    t->nk = t->na = t->nx = t->nnames = 0;
    if (t->hash)
        memset(t->hash, 0, t->hcap * sizeof *t->hash);
    t->dropped = 0;
}

void ps_trace_free(ps_trace *t)
{
    if (!t)
        return;
    ps_trace_clear(t);
    free(t->k);
    free(t->a);
    free(t->x);
    free(t->names);
    free(t->hash);
    free(t);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int rehash(ps_trace *t, size_t cap)
{
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h)
        return -1;
    for (size_t i = 0; i < t->nnames; i++) {
        size_t j = fnv1a(t->names[i]) & (cap - 1);
        while (h[j])
            j = (j + 1) & (cap - 1);
        h[j] = (uint32_t)i + 1;
    }
    free(t->hash);
    t->hash = h;
    t->hcap = cap;
    return 0;
}

/* Index of `name` in the table, adding it if new; -1 on OOM. */
static long intern(ps_trace *t, const char *name)
{
    if (!name)
        name = "(unnamed)";
    if ((t->nnames + 1) * 2 > t->hcap && rehash(t, t->hcap ? t->hcap * 2 : 256))
        return -1;
    size_t j = fnv1a(name) & (t->hcap - 1);
    while (t->hash[j]) {
        uint32_t i = t->hash[j] - 1;
        if (strcmp(t->names[i], name) == 0)
            return i;
        j = (j + 1) & (t->hcap - 1);
    }
    if (grow((void **)&t->names, &t->capnames, t->nnames + 1, sizeof *t->names))
        return -1;
    char *c = strdup(name);
    if (!c)
        return -1;
    t->names[t->nnames] = c;
    t->hash[j] = (uint32_t)t->nnames + 1;
    return (long)t->nnames++;
}

int ps_trace_add_kernel(ps_trace *t, const ps_trace_kernel *k, const char *name)
{
    long idx = intern(t, name);
    if (idx < 0 || grow((void **)&t->k, &t->capk, t->nk + 1, sizeof *t->k))
        return PS_ERUN;
    t->k[t->nk] = *k;
    t->k[t->nk].name_idx = (uint32_t)idx;
    t->nk++;
    return 0;
}

int ps_trace_add_api(ps_trace *t, const ps_trace_api *a)
{
    if (grow((void **)&t->a, &t->capa, t->na + 1, sizeof *t->a))
        return PS_ERUN;
    t->a[t->na++] = *a;
    return 0;
}

int ps_trace_add_ext(ps_trace *t, const ps_trace_ext *x)
{
    if (grow((void **)&t->x, &t->capx, t->nx + 1, sizeof *t->x))
        return PS_ERUN;
    t->x[t->nx++] = *x;
    return 0;
}

void ps_trace_add_dropped(ps_trace *t, size_t n)
{
    t->dropped += n;
}

size_t ps_trace_nkernels(const ps_trace *t)
{
    return t->nk;
}
const ps_trace_kernel *ps_trace_kernel_at(const ps_trace *t, size_t i)
{
    return i < t->nk ? &t->k[i] : NULL;
}
size_t ps_trace_napis(const ps_trace *t)
{
    return t->na;
}
size_t ps_trace_nexts(const ps_trace *t)
{
    return t->nx;
}
size_t ps_trace_nnames(const ps_trace *t)
{
    return t->nnames;
}
const char *ps_trace_name(const ps_trace *t, uint32_t idx)
{
    return idx < t->nnames ? t->names[idx] : NULL;
}
size_t ps_trace_dropped(const ps_trace *t)
{
    return t->dropped;
}

int ps_trace_merge(ps_trace *dst, ps_trace *src)
{
    for (size_t i = 0; i < src->nk; i++)
        if (ps_trace_add_kernel(dst, &src->k[i], src->names[src->k[i].name_idx]))
            return PS_ERUN;
    for (size_t i = 0; i < src->na; i++)
        if (ps_trace_add_api(dst, &src->a[i]))
            return PS_ERUN;
    for (size_t i = 0; i < src->nx; i++)
        if (ps_trace_add_ext(dst, &src->x[i]))
            return PS_ERUN;
    dst->dropped += src->dropped;
    ps_trace_clear(src);
    return 0;
}

/* ------------------------------------------------------------ join */

typedef struct corr_ext {
    uint32_t corr;
    uint32_t order; /* record order: the later record wins a tie */
    uint64_t ext;
} corr_ext;

static int cmp_corr(const void *a, const void *b)
{
    const corr_ext *x = a, *y = b;
    if (x->corr != y->corr)
        return x->corr < y->corr ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

long ps_trace_attribute(const ps_trace *t, uint32_t kind, uint64_t *ext)
{
    corr_ext *m = malloc((t->nx ? t->nx : 1) * sizeof *m);
    if (!m)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < t->nx; i++)
        if (t->x[i].kind == kind)
            m[n++] = (corr_ext){t->x[i].correlation, (uint32_t)i, t->x[i].external_id};
    qsort(m, n, sizeof *m, cmp_corr);
    long hits = 0;
    for (size_t i = 0; i < t->nk; i++) {
        uint32_t c = t->k[i].correlation;
        /* Last entry with corr == c (binary search for the upper bound). */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (m[mid].corr <= c)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo > 0 && m[lo - 1].corr == c) {
            ext[i] = m[lo - 1].ext;
            hits++;
        } else {
            ext[i] = PS_TRACE_NO_OP;
        }
    }
    free(m);
    return hits;
}

int ps_trace_op_times(const ps_trace *t, const uint64_t *ext, int64_t op, int repeats,
                      double *span_s, double *busy_s, int *nk)
{
    if (repeats <= 0)
        return 0;
    uint64_t *first = malloc((size_t)repeats * sizeof *first);
    uint64_t *last = malloc((size_t)repeats * sizeof *last);
    uint64_t *busy = malloc((size_t)repeats * sizeof *busy);
    int *cnt = calloc((size_t)repeats, sizeof *cnt);
    int filled = 0;
    if (!first || !last || !busy || !cnt)
        goto out;
    for (size_t i = 0; i < t->nk; i++) {
        if (ext[i] == PS_TRACE_NO_OP || ps_trace_ext_op(ext[i]) != op)
            continue;
        int r = ps_trace_ext_repeat(ext[i]);
        if (r >= repeats)
            continue;
        const ps_trace_kernel *k = &t->k[i];
        uint64_t d = k->end_ns > k->start_ns ? k->end_ns - k->start_ns : 0;
        if (!cnt[r]) {
            first[r] = k->start_ns;
            last[r] = k->end_ns;
            busy[r] = 0;
        }
        if (k->start_ns < first[r])
            first[r] = k->start_ns;
        if (k->end_ns > last[r])
            last[r] = k->end_ns;
        busy[r] += d;
        cnt[r]++;
    }
    for (int r = 0; r < repeats; r++) {
        if (cnt[r])
            filled++;
        if (span_s)
            span_s[r] = cnt[r] ? (double)(last[r] - first[r]) * 1e-9 : NAN;
        if (busy_s)
            busy_s[r] = cnt[r] ? (double)busy[r] * 1e-9 : NAN;
        if (nk)
            nk[r] = cnt[r];
    }
out:
    free(first);
    free(last);
    free(busy);
    free(cnt);
    return filled;
}

int ps_trace_op_stats(const ps_trace *t, const uint64_t *ext, int64_t op, int repeats,
                      ps_stats *out)
{
    memset(out, 0, sizeof *out);
    if (repeats <= 0)
        return 0;
    double *span = malloc((size_t)repeats * sizeof *span);
    int *nk = malloc((size_t)repeats * sizeof *nk);
    if (!span || !nk) {
        free(span);
        free(nk);
        return -1;
    }
    ps_trace_op_times(t, ext, op, repeats, span, NULL, nk);
    int ns = 0;
    for (int r = 0; r < repeats; r++)
        if (nk[r] > 0)
            span[ns++] = span[r];
    if (ns > 0)
        ps_stats_compute(span, ns, out);
    free(span);
    free(nk);
    return ns;
}

/* ------------------------------------------------------------ CUPTI */

#ifdef PS_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <cupti.h>

#if CUPTI_API_VERSION >= 130000
/* CUDA 13.0/13.1.  13.2 adds CUpti_ActivityKernel11 by appending fields, so
 * the ones read here keep their offsets. */
typedef CUpti_ActivityKernel10 ps_cupti_kernel;
typedef CUpti_ActivityMemcpy6 ps_cupti_memcpy;
#elif CUPTI_API_VERSION >= 18
typedef CUpti_ActivityKernel9 ps_cupti_kernel;
typedef CUpti_ActivityMemcpy5 ps_cupti_memcpy;
#else
#error "plansim's tracer needs CUPTI from CUDA 12 or later"
#endif

_Static_assert(PS_TRACE_EXT_KIND_CUSTOM0 == CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
               "external correlation kind");

/* 8 MiB: Kineto uses 4, CUPTI's guidance is 1-10; one buffer holds ~50k
 * kernel records, more than one op's repeats produce. */
#define PS_CUPTI_BUF_BYTES ((size_t)8 << 20)

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static ps_trace *g_trace;   /* guarded by g_mu: the completion callback runs on CUPTI's thread */
static size_t g_dropped;    /* guarded by g_mu: since the last collect */
static size_t g_dropped_total; /* guarded by g_mu: since start */
static int g_oom;           /* a record could not be stored (guarded by g_mu) */
static int g_started;

static const CUpti_ActivityKind KINDS[] = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_RUNTIME,
    CUPTI_ACTIVITY_KIND_DRIVER, CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION};

static int cupti_fail(ps_err *e, CUptiResult r, const char *what)
{
    const char *s = NULL;
    if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || !s)
        s = "unknown CUPTI error";
    return ps_errf(e, PS_ERUN, "%s: %s (CUPTI %d)", what, s, (int)r);
}

static void CUPTIAPI buf_requested(uint8_t **buf, size_t *size, size_t *max_records)
{
    /* NULL tells CUPTI to drop records (counted as dropped). */
    *buf = aligned_alloc(8, PS_CUPTI_BUF_BYTES);
    *size = *buf ? PS_CUPTI_BUF_BYTES : 0;
    *max_records = 0;
}

static const char *copy_kind_name(int k)
{
    switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "memcpy DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "memcpy HtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "memcpy PtoP";
    default: return "memcpy other";
    }
}

static void store(const CUpti_Activity *r)
{
    int rc = 0;
    switch (r->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const ps_cupti_kernel *k = (const ps_cupti_kernel *)r;
        ps_trace_kernel o = {
            .start_ns = k->start,
            .end_ns = k->end,
            .correlation = k->correlationId,
            .stream = k->streamId,
            .device = k->deviceId,
            .grid = {k->gridX, k->gridY, k->gridZ},
            .block = {k->blockX, k->blockY, k->blockZ},
            .registers = k->registersPerThread,
            .shared_bytes = k->staticSharedMemory + k->dynamicSharedMemory,
        };
        rc = ps_trace_add_kernel(g_trace, &o, k->name); /* name: valid only now, copied */
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const ps_cupti_memcpy *m = (const ps_cupti_memcpy *)r;
        ps_trace_kernel o = {.start_ns = m->start,
                             .end_ns = m->end,
                             .correlation = m->correlationId,
                             .stream = m->streamId,
                             .device = m->deviceId,
                             .is_copy = 1};
        rc = ps_trace_add_kernel(g_trace, &o, copy_kind_name(m->copyKind));
        break;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME:
    case CUPTI_ACTIVITY_KIND_DRIVER: {
        const CUpti_ActivityAPI *a = (const CUpti_ActivityAPI *)r;
        ps_trace_api o = {.start_ns = a->start,
                          .end_ns = a->end,
                          .correlation = a->correlationId,
                          .cbid = a->cbid,
                          .thread = a->threadId,
                          .driver = r->kind == CUPTI_ACTIVITY_KIND_DRIVER};
        rc = ps_trace_add_api(g_trace, &o);
        break;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const CUpti_ActivityExternalCorrelation *x = (const CUpti_ActivityExternalCorrelation *)r;
        ps_trace_ext o = {.external_id = x->externalId,
                          .correlation = x->correlationId,
                          .kind = (uint32_t)x->externalKind};
        rc = ps_trace_add_ext(g_trace, &o);
        break;
    }
    default:
        break;
    }
    if (rc)
        g_oom = 1;
}

static void CUPTIAPI buf_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
                                   size_t valid)
{
    (void)size;
    pthread_mutex_lock(&g_mu);
    if (g_trace) {
        CUpti_Activity *r = NULL;
        /* Ends with CUPTI_ERROR_MAX_LIMIT_REACHED at the end of the valid
         * bytes; any other error also ends this buffer. */
        while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS)
            store(r);
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS) {
        g_dropped += dropped;
        g_dropped_total += dropped;
    }
    pthread_mutex_unlock(&g_mu);
    free(buf);
}

int ps_tracer_built(void)
{
    return 1;
}

int ps_tracer_start(ps_err *e)
{
    if (g_started)
        return ps_errf(e, PS_ERUN, "CUPTI tracer already started");
    pthread_mutex_lock(&g_mu);
    if (!g_trace)
        g_trace = ps_trace_new();
    g_dropped = g_dropped_total = 0;
    g_oom = 0;
    int ok = g_trace != NULL;
    pthread_mutex_unlock(&g_mu);
    if (!ok)
        return ps_errf(e, PS_ERUN, "out of memory");
    CUptiResult r = cuptiActivityRegisterCallbacks(buf_requested, buf_completed);
    if (r != CUPTI_SUCCESS)
        return cupti_fail(e, r, "cuptiActivityRegisterCallbacks");
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++) {
        r = cuptiActivityEnable(KINDS[i]);
        if (r != CUPTI_SUCCESS) {
            for (size_t j = 0; j < i; j++)
                cuptiActivityDisable(KINDS[j]);
            char what[64];
            snprintf(what, sizeof what, "cuptiActivityEnable(kind %d)", (int)KINDS[i]);
            return cupti_fail(e, r, what);
        }
    }
    g_started = 1;
    return 0;
}

int ps_tracer_push(uint64_t ext, ps_err *e)
{
    CUptiResult r = cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                           ext);
    return r == CUPTI_SUCCESS ? 0 : cupti_fail(e, r, "cuptiActivityPushExternalCorrelationId");
}

int ps_tracer_pop(ps_err *e)
{
    uint64_t last = 0;
    CUptiResult r = cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                          &last);
    return r == CUPTI_SUCCESS ? 0 : cupti_fail(e, r, "cuptiActivityPopExternalCorrelationId");
}

static int flush(ps_err *e)
{
    /* FlushAll does not synchronize: records of unfinished work would be
     * delivered incomplete. */
    cudaError_t ce = cudaDeviceSynchronize();
    if (ce != cudaSuccess)
        return ps_errf(e, PS_ERUN, "cudaDeviceSynchronize before the CUPTI flush: %s",
                       cudaGetErrorString(ce));
    CUptiResult r = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    return r == CUPTI_SUCCESS ? 0 : cupti_fail(e, r, "cuptiActivityFlushAll(FORCED)");
}

int ps_tracer_collect(ps_trace **out, ps_err *e)
{
    *out = NULL;
    if (!g_started)
        return ps_errf(e, PS_ERUN, "CUPTI tracer not started");
    if (flush(e))
        return PS_ERUN;
    ps_trace *fresh = ps_trace_new();
    if (!fresh)
        return ps_errf(e, PS_ERUN, "out of memory");
    pthread_mutex_lock(&g_mu);
    ps_trace *t = g_trace;
    g_trace = fresh;
    int oom = g_oom;
    g_oom = 0;
    if (t)
        ps_trace_add_dropped(t, g_dropped);
    g_dropped = 0;
    pthread_mutex_unlock(&g_mu);
    if (oom) {
        ps_trace_free(t);
        return ps_errf(e, PS_ERUN, "out of memory storing CUPTI records");
    }
    *out = t;
    return 0;
}

void ps_tracer_stop(void)
{
    if (!g_started)
        return;
    ps_err e = {0};
    (void)flush(&e); /* best effort: stopping must not fail */
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        cuptiActivityDisable(KINDS[i]);
    (void)cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    pthread_mutex_lock(&g_mu);
    ps_trace_free(g_trace);
    g_trace = NULL;
    pthread_mutex_unlock(&g_mu);
    g_started = 0;
}

size_t ps_tracer_dropped(void)
{
    pthread_mutex_lock(&g_mu);
    size_t d = g_dropped_total;
    pthread_mutex_unlock(&g_mu);
    return d;
}

#else /* !PS_HAVE_CUDA */

int ps_tracer_built(void)
{
    return 0;
}
int ps_tracer_start(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "built without CUDA support");
}
int ps_tracer_push(uint64_t ext, ps_err *e)
{
    (void)ext;
    return ps_errf(e, PS_ERUN, "built without CUDA support");
}
int ps_tracer_pop(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "built without CUDA support");
}
int ps_tracer_collect(ps_trace **out, ps_err *e)
{
    *out = NULL;
    return ps_errf(e, PS_ERUN, "built without CUDA support");
}
void ps_tracer_stop(void)
{
}
size_t ps_tracer_dropped(void)
{
    return 0;
}

#endif
