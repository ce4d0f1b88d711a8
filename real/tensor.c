/* The runtime core (real/rt.h): devices, tensors, host <-> device copies,
 * the seeded RNG and initialisers, the elementwise helpers, column and head
 * shuffles, parameters and the optimizers.  Layers live in real/cpu_layers.c
 * (and real/cpu_seq.c); the CUDA work behind the backend table in
 * real/rt_cuda.c. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_ops.h"
#include "real/backend.h"
#include "real/rt_internal.h"

/* ------------------------------------------------------------------ devices */

static rt_dev g_cpu = {RT_CPU, 0, "cpu", NULL, NULL};

rt_dev *rt_cpu(void)
{
    return &g_cpu;
}

rt_dev *rt_cuda_new(int ordinal, ps_err *e)
{
    if (ordinal < 0) {
        ps_errf(e, PS_EINPUT, "rt_cuda_new: device ordinal %d is negative", ordinal);
        return NULL;
    }
    rt_dev *d = calloc(1, sizeof *d);
    if (!d) {
        ps_errf(e, PS_ERUN, "rt_cuda_new: out of memory");
        return NULL;
    }
    d->cu = ps_cuda_ctx_new(ordinal, e);
    if (!d->cu) {
        ps_err_prefix(e, "cuda:%d: ", ordinal);
        free(d);
        return NULL;
    }
    d->kind = RT_CUDA;
    d->ordinal = ordinal;
    snprintf(d->name, sizeof d->name, "cuda:%d", ordinal);
    d->be = &rt_cuda_backend;
    return d;
}

void rt_dev_free(rt_dev *d)
{
    if (!d || d == &g_cpu)
        return;
    ps_cuda_ctx_free(d->cu);
    free(d);
}

rt_devkind rt_dev_kind(const rt_dev *d)
{
    return d ? d->kind : RT_CPU;
}

const char *rt_dev_name(const rt_dev *d)
{
    return d ? d->name : "cpu";
}

int rt_dev_sync(rt_dev *d, ps_err *e)
{
    if (!d || d->kind == RT_CPU)
        return 0;
    if (ps_cuda_ctx_sync(d->cu, e)) {
        ps_err_prefix(e, "%s: ", d->name);
        return PS_ERUN;
    }
    return 0;
}

struct ps_cuda_ctx *rt_dev_cuda_ctx(const rt_dev *d)
{
    return d && d->kind == RT_CUDA ? d->cu : NULL;
}

/* ------------------------------------------------------------------ tensors */

static const size_t DT_SIZE[RT_DTYPE_COUNT] = {4, 8, 4, 1};
static const char *const DT_NAME[RT_DTYPE_COUNT] = {"f32", "f64", "i32", "u8"};

size_t rt_dtype_size(rt_dtype t)
{
    return (unsigned)t < RT_DTYPE_COUNT ? DT_SIZE[t] : 0;
}

const char *rt_dtype_name(rt_dtype t)
{
    return (unsigned)t < RT_DTYPE_COUNT ? DT_NAME[t] : "?";
}

size_t rt_tensor_bytes(const rt_tensor *t)
{
    return t ? (size_t)t->numel * rt_dtype_size(t->dtype) : 0;
}

const char *rt_tensor_desc(const rt_tensor *t, char *buf, size_t n)
{
    if (!n)
        return buf;
    if (!t || t->ndim < 1 || t->ndim > RT_MAXDIM) {
        snprintf(buf, n, "(no tensor)");
        return buf;
    }
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "[");
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    snprintf(buf + o, o < n ? n - o : 0, "] %s %s", rt_dtype_name(t->dtype),
             rt_dev_name(t->dev));
    return buf;
}

static int check_shape(const char *fn, int ndim, const int64_t *shape, int64_t *numel,
                       ps_err *e)
{
    if (ndim < 1 || ndim > RT_MAXDIM)
        return ps_errf(e, PS_EINPUT, "%s: ndim %d outside 1..%d", fn, ndim, RT_MAXDIM);
    if (!shape)
        return ps_errf(e, PS_EINPUT, "%s: shape is NULL", fn);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return ps_errf(e, PS_EINPUT, "%s: dim %d is %lld (must be >= 1)", fn, i,
                           (long long)shape[i]);
        if (n > INT64_MAX / 16 / shape[i])
            return ps_errf(e, PS_EINPUT, "%s: shape too large", fn);
        n *= shape[i];
    }
    *numel = n;
    return 0;
}

int rt_tensor_alloc(rt_tensor *t, rt_dev *d, rt_dtype dt, int ndim, const int64_t *shape,
                    ps_err *e)
{
    if (!t)
        return ps_errf(e, PS_EINPUT, "rt_tensor_alloc: tensor is NULL");
    memset(t, 0, sizeof *t);
    if ((unsigned)dt >= RT_DTYPE_COUNT)
        return ps_errf(e, PS_EINPUT, "rt_tensor_alloc: unknown dtype %d", (int)dt);
    int64_t numel;
    if (check_shape("rt_tensor_alloc", ndim, shape, &numel, e))
        return PS_EINPUT;
    if (!d)
        d = rt_cpu();
    size_t bytes = (size_t)numel * DT_SIZE[dt];
    void *p;
    if (d->kind == RT_CPU) {
        size_t al = (bytes + 63) & ~(size_t)63;
        p = aligned_alloc(64, al);
        if (!p)
            return ps_errf(e, PS_ERUN, "rt_tensor_alloc: out of memory (%zu bytes)", bytes);
        memset(p, 0, al);
    } else {
        p = ps_cuda_alloc(bytes, e);
        if (!p) {
            ps_err_prefix(e, "rt_tensor_alloc (%s, %zu bytes): ", d->name, bytes);
            return PS_ERUN;
        }
        if (ps_cuda_memset(d->cu, p, 0, bytes, e)) {
            ps_cuda_free(p);
            ps_err_prefix(e, "rt_tensor_alloc (%s): ", d->name);
            return PS_ERUN;
        }
    }
    t->dtype = dt;
    t->dev = d;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
    t->data = p;
    t->owner = 1;
    return 0;
}

int rt_tensor_new1(rt_tensor *t, rt_dev *d, rt_dtype dt, int64_t d0, ps_err *e)
{
    int64_t s[1] = {d0};
    return rt_tensor_alloc(t, d, dt, 1, s, e);
}

int rt_tensor_new2(rt_tensor *t, rt_dev *d, rt_dtype dt, int64_t d0, int64_t d1, ps_err *e)
{
    int64_t s[2] = {d0, d1};
    return rt_tensor_alloc(t, d, dt, 2, s, e);
}

int rt_tensor_new4(rt_tensor *t, rt_dev *d, rt_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                   int64_t d3, ps_err *e)
{
    int64_t s[4] = {d0, d1, d2, d3};
    return rt_tensor_alloc(t, d, dt, 4, s, e);
}

void rt_tensor_free(rt_tensor *t)
{
    if (!t)
        return;
    if (t->owner && t->data) {
        if (t->dev && t->dev->kind == RT_CUDA)
            ps_cuda_free(t->data);
        else
            free(t->data);
    }
    memset(t, 0, sizeof *t);
}

int rt_tensor_reshape(rt_tensor *view, const rt_tensor *t, int ndim, const int64_t *shape,
                      ps_err *e)
{
    if (!view || chk_t("rt_tensor_reshape", "t", t, e))
        return ps_errf(e, PS_EINPUT, "rt_tensor_reshape: no tensor");
    int64_t numel;
    if (check_shape("rt_tensor_reshape", ndim, shape, &numel, e))
        return PS_EINPUT;
    if (numel != t->numel) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "rt_tensor_reshape: %s has %lld elements, new shape %lld",
                       rt_tensor_desc(t, b, sizeof b), (long long)t->numel, (long long)numel);
    }
    rt_tensor v = *t;
    v.ndim = ndim;
    memset(v.shape, 0, sizeof v.shape);
    for (int i = 0; i < ndim; i++)
        v.shape[i] = shape[i];
    v.owner = 0;
    *view = v;
    return 0;
}

int rt_tensor_rows(rt_tensor *view, const rt_tensor *t, int64_t r0, int64_t rows, ps_err *e)
{
    if (!view || chk_t("rt_tensor_rows", "t", t, e))
        return ps_errf(e, PS_EINPUT, "rt_tensor_rows: no tensor");
    if (r0 < 0 || rows < 1 || r0 + rows > t->shape[0]) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "rt_tensor_rows: rows [%lld, %lld) outside %s",
                       (long long)r0, (long long)(r0 + rows), rt_tensor_desc(t, b, sizeof b));
    }
    int64_t per = t->numel / t->shape[0];
    rt_tensor v = *t;
    v.shape[0] = rows;
    v.numel = per * rows;
    v.data = (char *)t->data + (size_t)(r0 * per) * rt_dtype_size(t->dtype);
    v.owner = 0;
    *view = v;
    return 0;
}

static int on_cuda(const rt_tensor *t)
{
    return t->dev && t->dev->kind == RT_CUDA;
}

int rt_tensor_from_host(rt_tensor *t, const void *src, ps_err *e)
{
    if (chk_t("rt_tensor_from_host", "t", t, e))
        return PS_EINPUT;
    if (!src)
        return ps_errf(e, PS_EINPUT, "rt_tensor_from_host: src is NULL");
    size_t n = rt_tensor_bytes(t);
    if (!on_cuda(t)) {
        memmove(t->data, src, n);
        return 0;
    }
    if (ps_cuda_copy(t->dev->cu, t->data, src, n, PS_CU_H2D, e) ||
        ps_cuda_ctx_sync(t->dev->cu, e)) {
        ps_err_prefix(e, "rt_tensor_from_host (%s): ", t->dev->name);
        return PS_ERUN;
    }
    return 0;
}

int rt_tensor_to_host(const rt_tensor *t, void *dst, ps_err *e)
{
    if (chk_t("rt_tensor_to_host", "t", t, e))
        return PS_EINPUT;
    if (!dst)
        return ps_errf(e, PS_EINPUT, "rt_tensor_to_host: dst is NULL");
    size_t n = rt_tensor_bytes(t);
    if (!on_cuda(t)) {
        memmove(dst, t->data, n);
        return 0;
    }
    if (ps_cuda_copy(t->dev->cu, dst, t->data, n, PS_CU_D2H, e) ||
        ps_cuda_ctx_sync(t->dev->cu, e)) {
        ps_err_prefix(e, "rt_tensor_to_host (%s): ", t->dev->name);
        return PS_ERUN;
    }
    return 0;
}

static int same_shape(const rt_tensor *a, const rt_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

static int shape_err(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                     const char *refname, ps_err *e)
{
    char b1[128], b2[128];
    return ps_errf(e, PS_EINPUT, "%s: %s: %s does not match %s %s", fn, name,
                   rt_tensor_desc(t, b1, sizeof b1), refname, rt_tensor_desc(ref, b2, sizeof b2));
}

int rt_tensor_copy(rt_tensor *dst, const rt_tensor *src, ps_err *e)
{
    const char *fn = "rt_tensor_copy";
    if (chk_t(fn, "dst", dst, e) || chk_t(fn, "src", src, e))
        return PS_EINPUT;
    if (dst->dtype != src->dtype || dst->numel != src->numel || !same_shape(dst, src))
        return shape_err(fn, "dst", dst, src, "src", e);
    size_t n = rt_tensor_bytes(src);
    if (!on_cuda(dst) && !on_cuda(src)) {
        memmove(dst->data, src->data, n);
        return 0;
    }
    rt_dev *d = on_cuda(dst) ? dst->dev : src->dev;
    ps_cu_copy_kind k = on_cuda(dst) ? (on_cuda(src) ? PS_CU_D2D : PS_CU_H2D) : PS_CU_D2H;
    if (ps_cuda_copy(d->cu, dst->data, src->data, n, k, e) || ps_cuda_ctx_sync(d->cu, e)) {
        ps_err_prefix(e, "%s (%s): ", fn, d->name);
        return PS_ERUN;
    }
    return 0;
}

int rt_tensor_zero(rt_tensor *t, ps_err *e)
{
    if (chk_t("rt_tensor_zero", "t", t, e))
        return PS_EINPUT;
    if (!on_cuda(t)) {
        memset(t->data, 0, rt_tensor_bytes(t));
        return 0;
    }
    if (ps_cuda_memset(t->dev->cu, t->data, 0, rt_tensor_bytes(t), e)) {
        ps_err_prefix(e, "rt_tensor_zero (%s): ", t->dev->name);
        return PS_ERUN;
    }
    return 0;
}

static void host_fill(void *p, rt_dtype dt, int64_t n, double v)
{
    switch (dt) {
    case RT_F32: {
        float *q = p, f = (float)v;
        for (int64_t i = 0; i < n; i++)
            q[i] = f;
        break;
    }
    case RT_F64: {
        double *q = p;
        for (int64_t i = 0; i < n; i++)
            q[i] = v;
        break;
    }
    case RT_I32: {
        int32_t *q = p, f = (int32_t)v;
        for (int64_t i = 0; i < n; i++)
            q[i] = f;
        break;
    }
    default:
        memset(p, (int)(uint8_t)v, (size_t)n);
        break;
    }
}

/* Generate on the host, then upload (device tensors without a fill slot,
 * and the initialisers). */
static int upload_fill(rt_tensor *t, const char *fn, double v, ps_err *e)
{
    void *h = malloc(rt_tensor_bytes(t));
    if (!h)
        return ps_errf(e, PS_ERUN, "%s: out of memory", fn);
    host_fill(h, t->dtype, t->numel, v);
    int rc = rt_tensor_from_host(t, h, e);
    free(h);
    return rc;
}

int rt_tensor_fill(rt_tensor *t, double value, ps_err *e)
{
    const char *fn = "rt_tensor_fill";
    if (chk_t(fn, "t", t, e))
        return PS_EINPUT;
    if (!on_cuda(t)) {
        host_fill(t->data, t->dtype, t->numel, value);
        return 0;
    }
    if (value == 0.0)
        return rt_tensor_zero(t, e);
    if (rt_cuda_backend.fill && (t->dtype == RT_F32 || t->dtype == RT_F64))
        return rt_cuda_backend.fill(t, value, e);
    return upload_fill(t, fn, value, e);
}

float *rt_f32(const rt_tensor *t)
{
    return t && t->dtype == RT_F32 && !on_cuda(t) ? t->data : NULL;
}

double *rt_f64(const rt_tensor *t)
{
    return t && t->dtype == RT_F64 && !on_cuda(t) ? t->data : NULL;
}

int32_t *rt_i32(const rt_tensor *t)
{
    return t && t->dtype == RT_I32 && !on_cuda(t) ? t->data : NULL;
}

/* ------------------------------------------------------------------ randomness */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rt_rng_seed(rt_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rt_rng_next(rt_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double rt_rng_uniform(rt_rng *r)
{
    return (double)(rt_rng_next(r) >> 11) * 0x1.0p-53;
}

double rt_rng_normal(rt_rng *r)
{
    double u1 = 1.0 - rt_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = rt_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int init_common(rt_tensor *t, rt_rng *r, const char *fn, int normal, double a, double b,
                       ps_err *e)
{
    if (chk_t(fn, "t", t, e))
        return PS_EINPUT;
    if (!r)
        return ps_errf(e, PS_EINPUT, "%s: rng is NULL", fn);
    if (t->dtype != RT_F32 && t->dtype != RT_F64)
        return ps_errf(e, PS_EINPUT, "%s: t: dtype %s (f32 or f64 expected)", fn,
                       rt_dtype_name(t->dtype));
    if (!isfinite(a) || !isfinite(b))
        return ps_errf(e, PS_EINPUT, "%s: non-finite parameter", fn);
    int host = !on_cuda(t);
    void *h = host ? t->data : malloc(rt_tensor_bytes(t));
    if (!h)
        return ps_errf(e, PS_ERUN, "%s: out of memory", fn);
    for (int64_t i = 0; i < t->numel; i++) {
        double v = normal ? a + b * rt_rng_normal(r) : a + (b - a) * rt_rng_uniform(r);
        if (t->dtype == RT_F32)
            ((float *)h)[i] = (float)v;
        else
            ((double *)h)[i] = v;
    }
    int rc = 0;
    if (!host) {
        rc = rt_tensor_from_host(t, h, e);
        free(h);
    }
    return rc;
}

int rt_init_uniform(rt_tensor *t, rt_rng *r, double lo, double hi, ps_err *e)
{
    return init_common(t, r, "rt_init_uniform", 0, lo, hi, e);
}

int rt_init_normal(rt_tensor *t, rt_rng *r, double mean, double std, ps_err *e)
{
    return init_common(t, r, "rt_init_normal", 1, mean, std, e);
}

int rt_init_fan_in(rt_tensor *t, rt_rng *r, int64_t fan_in, ps_err *e)
{
    if (fan_in < 1)
        return ps_errf(e, PS_EINPUT, "rt_init_fan_in: fan_in %lld (must be >= 1)",
                       (long long)fan_in);
    double b = 1.0 / sqrt((double)fan_in);
    return init_common(t, r, "rt_init_fan_in", 0, -b, b, e);
}

/* ------------------------------------------------------------------ elementwise helpers */

/* Operand checks shared by the helpers: a float tensor on the device of `ref`. */
static int check_float(const char *fn, const char *name, const rt_tensor *t, ps_err *e)
{
    if (chk_t(fn, name, t, e))
        return PS_EINPUT;
    if (t->dtype != RT_F32 && t->dtype != RT_F64)
        return ps_errf(e, PS_EINPUT, "%s: %s: dtype %s (f32 or f64 expected)", fn, name,
                       rt_dtype_name(t->dtype));
    if (on_cuda(t) && t->dtype != RT_F32)
        return ps_errf(e, PS_EINPUT, "%s: %s: %s on %s (the CUDA backend is f32 only)", fn,
                       name, rt_dtype_name(t->dtype), t->dev->name);
    return 0;
}

static int check_same(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                      const char *refname, ps_err *e)
{
    if (chk_like(fn, name, t, ref, refname, e))
        return PS_EINPUT;
    if (!same_shape(t, ref))
        return shape_err(fn, name, t, ref, refname, e);
    return 0;
}

int rt_add(const rt_tensor *a, const rt_tensor *b, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_add";
    if (check_float(fn, "a", a, e) || check_same(fn, "b", b, a, "a", e) ||
        check_same(fn, "y", y, a, "a", e))
        return PS_EINPUT;
    if (on_cuda(a))
        return RT_CUDA_CALL(add, e, a, b, y, e);
    int64_t n = a->numel;
    if (a->dtype == RT_F32) {
        const float *p = a->data, *q = b->data;
        float *o = y->data;
        for (int64_t i = 0; i < n; i++)
            o[i] = p[i] + q[i];
    } else {
        const double *p = a->data, *q = b->data;
        double *o = y->data;
        for (int64_t i = 0; i < n; i++)
            o[i] = p[i] + q[i];
    }
    return 0;
}

int rt_axpy(double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_axpy";
    if (check_float(fn, "x", x, e) || check_same(fn, "y", y, x, "x", e))
        return PS_EINPUT;
    if (on_cuda(x))
        return RT_CUDA_CALL(axpy, e, alpha, x, y, e);
    int64_t n = x->numel;
    if (x->dtype == RT_F32) {
        const float *p = x->data;
        float *o = y->data, a = (float)alpha;
        for (int64_t i = 0; i < n; i++)
            o[i] += a * p[i];
    } else {
        const double *p = x->data;
        double *o = y->data;
        for (int64_t i = 0; i < n; i++)
            o[i] += alpha * p[i];
    }
    return 0;
}

int rt_scale(rt_tensor *y, double alpha, ps_err *e)
{
    if (check_float("rt_scale", "y", y, e))
        return PS_EINPUT;
    if (on_cuda(y))
        return RT_CUDA_CALL(scale, e, y, alpha, e);
    int64_t n = y->numel;
    if (y->dtype == RT_F32) {
        float *o = y->data, a = (float)alpha;
        for (int64_t i = 0; i < n; i++)
            o[i] *= a;
    } else {
        double *o = y->data;
        for (int64_t i = 0; i < n; i++)
            o[i] *= alpha;
    }
    return 0;
}

int rt_sum(const rt_tensor *x, double *out, ps_err *e)
{
    if (check_float("rt_sum", "x", x, e))
        return PS_EINPUT;
    if (!out)
        return ps_errf(e, PS_EINPUT, "rt_sum: out is NULL");
    if (on_cuda(x))
        return RT_CUDA_CALL(sum, e, x, out, e);
    double s = 0;
    if (x->dtype == RT_F32) {
        const float *p = x->data;
        for (int64_t i = 0; i < x->numel; i++)
            s += p[i];
    } else {
        const double *p = x->data;
        for (int64_t i = 0; i < x->numel; i++)
            s += p[i];
    }
    *out = s;
    return 0;
}

/* Shared checks of concat / split: n 2-D parts with the rows of y and
 * columns adding up to y's. */
static int check_cols(const char *fn, const char *pname, const rt_tensor *const *ps, int n,
                      const rt_tensor *y, const char *yname, ps_err *e)
{
    if (chk_t(fn, yname, y, e))
        return PS_EINPUT;
    if (y->ndim != 2) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "%s: %s: %s is not 2-D", fn, yname,
                       rt_tensor_desc(y, b, sizeof b));
    }
    if (n < 1 || !ps)
        return ps_errf(e, PS_EINPUT, "%s: %d parts (need >= 1)", fn, n);
    int64_t cols = 0;
    for (int i = 0; i < n; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "%s[%d]", pname, i);
        if (chk_like(fn, nm, ps[i], y, yname, e))
            return PS_EINPUT;
        if (ps[i]->ndim != 2 || ps[i]->shape[0] != y->shape[0]) {
            char b1[128], b2[128];
            return ps_errf(e, PS_EINPUT, "%s: %s: %s needs 2-D with the %lld rows of %s %s", fn,
                           nm, rt_tensor_desc(ps[i], b1, sizeof b1), (long long)y->shape[0],
                           yname, rt_tensor_desc(y, b2, sizeof b2));
        }
        cols += ps[i]->shape[1];
    }
    if (cols != y->shape[1]) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "%s: %s: %s has %lld columns, the parts add up to %lld",
                       fn, yname, rt_tensor_desc(y, b, sizeof b), (long long)y->shape[1],
                       (long long)cols);
    }
    return 0;
}

int rt_concat_cols(const rt_tensor *const *xs, int n, rt_tensor *y, ps_err *e)
{
    if (check_cols("rt_concat_cols", "xs", xs, n, y, "y", e))
        return PS_EINPUT;
    if (on_cuda(y))
        return RT_CUDA_CALL(concat_cols, e, xs, n, y, e);
    size_t es = rt_dtype_size(y->dtype), yrow = (size_t)y->shape[1] * es;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t w = (size_t)xs[i]->shape[1] * es;
        const char *src = xs[i]->data;
        char *dst = (char *)y->data + off;
        for (int64_t r = 0; r < y->shape[0]; r++)
            memcpy(dst + (size_t)r * yrow, src + (size_t)r * w, w);
        off += (int64_t)w;
    }
    return 0;
}

int rt_split_cols(const rt_tensor *dy, rt_tensor *const *dxs, int n, ps_err *e)
{
    if (check_cols("rt_split_cols", "dxs", (const rt_tensor *const *)dxs, n, dy, "dy", e))
        return PS_EINPUT;
    if (on_cuda(dy))
        return RT_CUDA_CALL(split_cols, e, dy, dxs, n, e);
    size_t es = rt_dtype_size(dy->dtype), yrow = (size_t)dy->shape[1] * es;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t w = (size_t)dxs[i]->shape[1] * es;
        const char *src = (const char *)dy->data + off;
        char *dst = dxs[i]->data;
        for (int64_t r = 0; r < dy->shape[0]; r++)
            memcpy(dst + (size_t)r * w, src + (size_t)r * yrow, w);
        off += (int64_t)w;
    }
    return 0;
}

/* [B, A1, A2, D] -> [B, A2, A1, D]: swap the two middle dims. */
static int swap_mid(const char *fn, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    if (chk_t(fn, "x", x, e) || chk_like(fn, "y", y, x, "x", e))
        return PS_EINPUT;
    char b1[128], b2[128];
    if (x->ndim != 4)
        return ps_errf(e, PS_EINPUT, "%s: x: %s is not 4-D", fn, rt_tensor_desc(x, b1, sizeof b1));
    if (y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2] ||
        y->shape[2] != x->shape[1] || y->shape[3] != x->shape[3])
        return ps_errf(e, PS_EINPUT, "%s: y: %s, expected [%lld, %lld, %lld, %lld] for x %s", fn,
                       rt_tensor_desc(y, b1, sizeof b1), (long long)x->shape[0],
                       (long long)x->shape[2], (long long)x->shape[1], (long long)x->shape[3],
                       rt_tensor_desc(x, b2, sizeof b2));
    return 0;
}

static void swap_mid_cpu(const rt_tensor *x, rt_tensor *y)
{
    int64_t B = x->shape[0], A1 = x->shape[1], A2 = x->shape[2];
    size_t row = (size_t)x->shape[3] * rt_dtype_size(x->dtype);
    const char *src = x->data;
    char *dst = y->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < A1; i++)
            for (int64_t j = 0; j < A2; j++)
                memcpy(dst + (size_t)((b * A2 + j) * A1 + i) * row,
                       src + (size_t)((b * A1 + i) * A2 + j) * row, row);
}

int rt_split_heads(const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    if (swap_mid("rt_split_heads", x, y, e))
        return PS_EINPUT;
    if (on_cuda(x))
        return RT_CUDA_CALL(split_heads, e, x, y, e);
    swap_mid_cpu(x, y);
    return 0;
}

int rt_merge_heads(const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    if (swap_mid("rt_merge_heads", x, y, e))
        return PS_EINPUT;
    if (on_cuda(x))
        return RT_CUDA_CALL(merge_heads, e, x, y, e);
    swap_mid_cpu(x, y);
    return 0;
}

/* ------------------------------------------------------------------ parameters */

int rt_param_init(rt_param *p, const char *name, rt_dev *d, rt_dtype dt, int ndim,
                  const int64_t *shape, ps_err *e)
{
    if (!p)
        return ps_errf(e, PS_EINPUT, "rt_param_init: param is NULL");
    memset(p, 0, sizeof *p);
    if (!name || !*name || strlen(name) >= sizeof p->name)
        return ps_errf(e, PS_EINPUT, "rt_param_init: name \"%s\" empty or longer than %zu",
                       name ? name : "(null)", sizeof p->name - 1);
    if (dt != RT_F32 && dt != RT_F64)
        return ps_errf(e, PS_EINPUT, "rt_param_init: %s: dtype %s (f32 or f64 expected)", name,
                       rt_dtype_name(dt));
    snprintf(p->name, sizeof p->name, "%s", name);
    if (rt_tensor_alloc(&p->w, d, dt, ndim, shape, e) ||
        rt_tensor_alloc(&p->g, d, dt, ndim, shape, e)) {
        ps_err_prefix(e, "param %s: ", name);
        rt_param_free(p);
        return e ? e->code : PS_EINPUT;
    }
    return 0;
}

void rt_param_free(rt_param *p)
{
    if (!p)
        return;
    rt_tensor_free(&p->w);
    rt_tensor_free(&p->g);
    rt_tensor_free(&p->m);
    rt_tensor_free(&p->v);
}

int rt_params_zero_grad(rt_param *ps, int n, ps_err *e)
{
    for (int i = 0; i < n; i++)
        if (rt_tensor_zero(&ps[i].g, e)) {
            ps_err_prefix(e, "param %s: ", ps[i].name);
            return e ? e->code : PS_EINPUT;
        }
    return 0;
}

int64_t rt_params_numel(const rt_param *ps, int n)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += ps[i].w.numel;
    return s;
}

/* ------------------------------------------------------------------ optimizers */

#define SGD_LOOP(T)                                                                               \
    do {                                                                                          \
        T *w = p->w.data, *g = p->g.data, *m = p->m.data;                                         \
        const T lr = (T)o->lr, wd = (T)o->weight_decay, mu = (T)o->momentum;                      \
        if (o->momentum != 0)                                                                     \
            for (int64_t i = 0; i < nel; i++) {                                                   \
                T gi = g[i] + wd * w[i];                                                          \
                m[i] = mu * m[i] + gi;                                                            \
                w[i] -= lr * m[i];                                                                \
            }                                                                                     \
        else                                                                                      \
            for (int64_t i = 0; i < nel; i++)                                                     \
                w[i] -= lr * (g[i] + wd * w[i]);                                                  \
    } while (0)

#define ADAMW_LOOP(T, SQRT)                                                                       \
    do {                                                                                          \
        T *w = p->w.data, *g = p->g.data, *m = p->m.data, *v = p->v.data;                         \
        const T b1 = (T)o->beta1, b2 = (T)o->beta2, eps = (T)o->eps;                              \
        const T decay = (T)(1.0 - o->lr * o->weight_decay), step = (T)(o->lr / bc1);              \
        const T rbc2 = (T)(1.0 / sqrt(bc2));                                                      \
        for (int64_t i = 0; i < nel; i++) {                                                       \
            T gi = g[i];                                                                          \
            m[i] = b1 * m[i] + (1 - b1) * gi;                                                     \
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;                                                \
            w[i] = w[i] * decay - step * m[i] / (SQRT(v[i]) * rbc2 + eps);                        \
        }                                                                                         \
    } while (0)

static int ensure_state(rt_tensor *s, const rt_tensor *w, ps_err *e)
{
    if (s->data)
        return 0;
    return rt_tensor_alloc(s, w->dev, w->dtype, w->ndim, w->shape, e);
}

int rt_opt_step(rt_opt *o, rt_param *ps, int n, ps_err *e)
{
    const char *fn = "rt_opt_step";
    if (!o)
        return ps_errf(e, PS_EINPUT, "%s: optimizer is NULL", fn);
    if (o->kind != RT_OPT_SGD && o->kind != RT_OPT_ADAMW)
        return ps_errf(e, PS_EINPUT, "%s: unknown optimizer kind %d", fn, (int)o->kind);
    if (!isfinite(o->lr) || o->lr < 0 || !isfinite(o->weight_decay) || o->weight_decay < 0)
        return ps_errf(e, PS_EINPUT, "%s: lr %g / weight_decay %g must be finite and >= 0", fn,
                       o->lr, o->weight_decay);
    if (o->kind == RT_OPT_SGD && (!isfinite(o->momentum) || o->momentum < 0))
        return ps_errf(e, PS_EINPUT, "%s: momentum %g must be finite and >= 0", fn, o->momentum);
    if (o->kind == RT_OPT_ADAMW &&
        (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0)))
        return ps_errf(e, PS_EINPUT,
                       "%s: AdamW needs 0 <= beta1, beta2 < 1 and eps > 0 (got %g, %g, %g)", fn,
                       o->beta1, o->beta2, o->eps);
    if (n > 0 && !ps)
        return ps_errf(e, PS_EINPUT, "%s: params is NULL", fn);
    /* Validate every parameter before changing any. */
    for (int i = 0; i < n; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "param %s: w", ps[i].name);
        if (check_float(fn, nm, &ps[i].w, e))
            return PS_EINPUT;
        snprintf(nm, sizeof nm, "param %s: g", ps[i].name);
        if (check_same(fn, nm, &ps[i].g, &ps[i].w, "w", e))
            return PS_EINPUT;
        if (ensure_state(&ps[i].m, &ps[i].w, e) ||
            (o->kind == RT_OPT_ADAMW && ensure_state(&ps[i].v, &ps[i].w, e))) {
            ps_err_prefix(e, "%s: param %s: ", fn, ps[i].name);
            return e ? e->code : PS_ERUN;
        }
        snprintf(nm, sizeof nm, "param %s: m", ps[i].name);
        if (check_same(fn, nm, &ps[i].m, &ps[i].w, "w", e))
            return PS_EINPUT;
        snprintf(nm, sizeof nm, "param %s: v", ps[i].name);
        if (o->kind == RT_OPT_ADAMW && check_same(fn, nm, &ps[i].v, &ps[i].w, "w", e))
            return PS_EINPUT;
    }
    if (o->kind == RT_OPT_ADAMW)
        o->step++;
    const double bc1 = 1.0 - pow(o->beta1, (double)o->step);
    const double bc2 = 1.0 - pow(o->beta2, (double)o->step);
    for (int i = 0; i < n; i++) {
        rt_param *p = &ps[i];
        const int64_t nel = p->w.numel;
        if (on_cuda(&p->w)) {
            int rc = o->kind == RT_OPT_SGD ? RT_CUDA_CALL(sgd_update, e, o, p, e)
                                           : RT_CUDA_CALL(adamw_update, e, o, p, e);
            if (rc)
                return rc;
            continue;
        }
        if (o->kind == RT_OPT_SGD) {
            if (p->w.dtype == RT_F32)
                SGD_LOOP(float);
            else
                SGD_LOOP(double);
        } else {
            if (p->w.dtype == RT_F32)
                ADAMW_LOOP(float, sqrtf);
            else
                ADAMW_LOOP(double, sqrt);
        }
    }
    return 0;
}

rt_tensor rt_view_rows(const rt_tensor *t, int64_t n)
{
    rt_tensor v;
    if (rt_tensor_rows(&v, t, 0, n, NULL))
        memset(&v, 0, sizeof v);
    return v;
}

rt_tensor rt_view2(const rt_tensor *t, int64_t a, int64_t b)
{
    rt_tensor v;
    int64_t s[2] = {a, b};
    if (rt_tensor_reshape(&v, t, 2, s, NULL))
        memset(&v, 0, sizeof v);
    return v;
}

rt_tensor rt_view4(const rt_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    rt_tensor v;
    int64_t s[4] = {a, b, c, d};
    if (rt_tensor_reshape(&v, t, 4, s, NULL))
        memset(&v, 0, sizeof v);
    return v;
}
