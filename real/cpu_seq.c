/* Sequence ops of the runtime (real/rt.h): layer norm, embedding, masked
 * scaled dot-product attention and the KV cache.  The public functions
 * validate their operands and run the CPU template (real/cpu_seq_impl.h,
 * f32 and f64) or the CUDA backend's slot. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_blas.h"
#include "kernels/cuda_ops.h"
#include "real/backend.h"
#include "real/rt.h"
#include "real/rt_internal.h"

/* ------------------------------------------------------------------ the template, twice */

#define T float
#define SFX(name) name##_f32
#define GEMM ps_cpu_sgemm
#define EXP expf
#include "real/cpu_seq_impl.h" /* #undefs its parameters at the end */

#define T double
#define SFX(name) name##_f64
#define GEMM ps_cpu_dgemm
#define EXP exp
#include "real/cpu_seq_impl.h" /* #undefs its parameters at the end */

/* ------------------------------------------------------------------ validation */

static const char *desc(const rt_tensor *t, char *buf, size_t n)
{
    char s[96];
    snprintf(buf, n, "%s %s %s", dims_str(t->ndim, t->shape, s, sizeof s),
             rt_dtype_name(t->dtype), t->dev ? rt_dev_name(t->dev) : "?");
    return buf;
}

/* A float operand (F32/F64) with data. */
static int need_float(const char *fn, const char *name, const rt_tensor *t, ps_err *e)
{
    if (!t || !t->data)
        return ps_errf(e, PS_EINPUT, "%s: %s: missing tensor", fn, name);
    if (t->dtype != RT_F32 && t->dtype != RT_F64)
        return ps_errf(e, PS_EINPUT, "%s: %s: dtype %s, expected f32 or f64", fn, name,
                       rt_dtype_name(t->dtype));
    if (t->dtype == RT_F64 && rt_on_cuda(t))
        return ps_errf(e, PS_EINPUT, "%s: %s: float64 tensors are CPU-only", fn, name);
    return 0;
}

/* t has ref's dtype and device. */
static int same_kind(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                     ps_err *e)
{
    if (!t || !t->data)
        return ps_errf(e, PS_EINPUT, "%s: %s: missing tensor", fn, name);
    char b1[128], b2[128];
    if (t->dtype != ref->dtype || t->dev != ref->dev)
        return ps_errf(e, PS_EINPUT, "%s: %s: %s, expected dtype and device of %s", fn, name,
                       desc(t, b1, sizeof b1), desc(ref, b2, sizeof b2));
    return 0;
}

static int need_shape(const char *fn, const char *name, const rt_tensor *t, int ndim,
                      const int64_t *shape, ps_err *e)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char b1[128], b2[96];
        return ps_errf(e, PS_EINPUT, "%s: %s: shape %s, expected %s", fn, name,
                       desc(t, b1, sizeof b1), dims_str(ndim, shape, b2, sizeof b2));
    }
    return 0;
}

static int need_dtype(const char *fn, const char *name, const rt_tensor *t, rt_dtype dt,
                      const rt_dev *dev, ps_err *e)
{
    if (!t || !t->data)
        return ps_errf(e, PS_EINPUT, "%s: %s: missing tensor", fn, name);
    char b1[128];
    if (t->dtype != dt)
        return ps_errf(e, PS_EINPUT, "%s: %s: %s, expected dtype %s", fn, name,
                       desc(t, b1, sizeof b1), rt_dtype_name(dt));
    if (t->dev != dev)
        return ps_errf(e, PS_EINPUT, "%s: %s: %s, expected device %s", fn, name,
                       desc(t, b1, sizeof b1), rt_dev_name(dev));
    return 0;
}

/* ------------------------------------------------------------------ layer norm */

static int ln_rows(const char *fn, const rt_tensor *x, int64_t *n, int64_t *c, ps_err *e)
{
    *c = x->shape[x->ndim - 1];
    *n = *c ? x->numel / *c : 0;
    if (*c < 1)
        return ps_errf(e, PS_EINPUT, "%s: x: empty last dimension", fn);
    return 0;
}

int rt_layernorm_fwd(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *beta,
                     double eps, rt_tensor *y, rt_tensor *mean, rt_tensor *rstd, ps_err *e)
{
    const char *fn = "rt_layernorm_fwd";
    TRY(need_float(fn, "x", x, e));
    int64_t n, c;
    TRY(ln_rows(fn, x, &n, &c, e));
    TRY(same_kind(fn, "gamma", gamma, x, e));
    TRY(need_shape(fn, "gamma", gamma, 1, &c, e));
    TRY(same_kind(fn, "beta", beta, x, e));
    TRY(need_shape(fn, "beta", beta, 1, &c, e));
    TRY(same_kind(fn, "y", y, x, e));
    TRY(need_shape(fn, "y", y, x->ndim, x->shape, e));
    if (mean) {
        TRY(same_kind(fn, "mean", mean, x, e));
        if (mean->numel != n)
            return need_shape(fn, "mean", mean, 1, &n, e);
    }
    if (rstd) {
        TRY(same_kind(fn, "rstd", rstd, x, e));
        if (rstd->numel != n)
            return need_shape(fn, "rstd", rstd, 1, &n, e);
    }
    if (!(eps >= 0))
        return ps_errf(e, PS_EINPUT, "%s: eps %g must be >= 0", fn, eps);
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(layernorm_fwd, e, x, gamma, beta, eps, y, mean, rstd, e);
    if (x->dtype == RT_F32)
        layernorm_fwd_f32(n, c, x->data, gamma->data, beta->data, eps, y->data,
                          mean ? mean->data : NULL, rstd ? rstd->data : NULL);
    else
        layernorm_fwd_f64(n, c, x->data, gamma->data, beta->data, eps, y->data,
                          mean ? mean->data : NULL, rstd ? rstd->data : NULL);
    return 0;
}

int rt_layernorm_bwd(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *mean,
                     const rt_tensor *rstd, const rt_tensor *dy, rt_tensor *dx,
                     rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e)
{
    const char *fn = "rt_layernorm_bwd";
    TRY(need_float(fn, "x", x, e));
    int64_t n, c;
    TRY(ln_rows(fn, x, &n, &c, e));
    TRY(same_kind(fn, "gamma", gamma, x, e));
    TRY(need_shape(fn, "gamma", gamma, 1, &c, e));
    TRY(same_kind(fn, "mean", mean, x, e));
    if (mean->numel != n)
        return need_shape(fn, "mean", mean, 1, &n, e);
    TRY(same_kind(fn, "rstd", rstd, x, e));
    if (rstd->numel != n)
        return need_shape(fn, "rstd", rstd, 1, &n, e);
    TRY(same_kind(fn, "dy", dy, x, e));
    TRY(need_shape(fn, "dy", dy, x->ndim, x->shape, e));
    if (dx) {
        TRY(same_kind(fn, "dx", dx, x, e));
        TRY(need_shape(fn, "dx", dx, x->ndim, x->shape, e));
    }
    if (dgamma) {
        TRY(same_kind(fn, "dgamma", dgamma, x, e));
        TRY(need_shape(fn, "dgamma", dgamma, 1, &c, e));
    }
    if (dbeta) {
        TRY(same_kind(fn, "dbeta", dbeta, x, e));
        TRY(need_shape(fn, "dbeta", dbeta, 1, &c, e));
    }
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(layernorm_bwd, e, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, e);
#define P_(t) ((t) ? (t)->data : NULL)
    if (x->dtype == RT_F32)
        layernorm_bwd_f32(n, c, x->data, gamma->data, mean->data, rstd->data, dy->data, P_(dx),
                          P_(dgamma), P_(dbeta));
    else
        layernorm_bwd_f64(n, c, x->data, gamma->data, mean->data, rstd->data, dy->data, P_(dx),
                          P_(dgamma), P_(dbeta));
    return 0;
}

/* ------------------------------------------------------------------ embedding */

/* y (or dy) has numel n * d and last dim d. */
static int emb_out(const char *fn, const char *name, const rt_tensor *y, int64_t n, int64_t d,
                   ps_err *e)
{
    if (y->numel != n * d || y->shape[y->ndim - 1] != d) {
        int64_t s[2] = {n, d};
        return need_shape(fn, name, y, 2, s, e);
    }
    return 0;
}

static int check_ids(const char *fn, const rt_tensor *ids, int64_t v, ps_err *e)
{
    if (rt_on_cuda(ids))
        return 0; /* checked on the host by the data loader (real/rt.h) */
    const int32_t *p = ids->data;
    for (int64_t i = 0; i < ids->numel; i++)
        if (p[i] < 0 || p[i] >= v)
            return ps_errf(e, PS_EINPUT, "%s: ids[%lld] = %d out of range [0, %lld)", fn,
                           (long long)i, p[i], (long long)v);
    return 0;
}

int rt_embedding_fwd(const rt_tensor *ids, const rt_tensor *table, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_embedding_fwd";
    TRY(need_float(fn, "table", table, e));
    if (table->ndim != 2)
        return ps_errf(e, PS_EINPUT, "%s: table: %d dims, expected [V, D]", fn, table->ndim);
    TRY(need_dtype(fn, "ids", ids, RT_I32, table->dev, e));
    TRY(same_kind(fn, "y", y, table, e));
    TRY(emb_out(fn, "y", y, ids->numel, table->shape[1], e));
    TRY(check_ids(fn, ids, table->shape[0], e));
    if (rt_on_cuda(table))
        return RT_CUDA_CALL(embedding_fwd, e, ids, table, y, e);
    if (table->dtype == RT_F32)
        embedding_fwd_f32(ids->numel, table->shape[1], ids->data, table->data, y->data);
    else
        embedding_fwd_f64(ids->numel, table->shape[1], ids->data, table->data, y->data);
    return 0;
}

int rt_embedding_bwd(const rt_tensor *ids, const rt_tensor *dy, rt_tensor *dtable, ps_err *e)
{
    const char *fn = "rt_embedding_bwd";
    if (!dtable)
        return 0;
    TRY(need_float(fn, "dtable", dtable, e));
    if (dtable->ndim != 2)
        return ps_errf(e, PS_EINPUT, "%s: dtable: %d dims, expected [V, D]", fn, dtable->ndim);
    TRY(need_dtype(fn, "ids", ids, RT_I32, dtable->dev, e));
    TRY(same_kind(fn, "dy", dy, dtable, e));
    TRY(emb_out(fn, "dy", dy, ids->numel, dtable->shape[1], e));
    TRY(check_ids(fn, ids, dtable->shape[0], e));
    if (rt_on_cuda(dtable))
        return RT_CUDA_CALL(embedding_bwd, e, ids, dy, dtable, e);
    if (dtable->dtype == RT_F32)
        embedding_bwd_f32(ids->numel, dtable->shape[1], ids->data, dy->data, dtable->data);
    else
        embedding_bwd_f64(ids->numel, dtable->shape[1], ids->data, dy->data, dtable->data);
    return 0;
}

/* ------------------------------------------------------------------ attention */

/* q [B, H, Tq, D]; k, v [B, H, Tcap, D]; Tq <= tkv <= Tcap. */
static int att_shapes(const char *fn, const rt_tensor *q, const rt_tensor *k,
                      const rt_tensor *v, int64_t tkv, ps_err *e)
{
    TRY(need_float(fn, "q", q, e));
    if (q->ndim != 4)
        return ps_errf(e, PS_EINPUT, "%s: q: %d dims, expected [B, H, Tq, D]", fn, q->ndim);
    TRY(same_kind(fn, "k", k, q, e));
    TRY(same_kind(fn, "v", v, q, e));
    if (k->ndim != 4)
        return ps_errf(e, PS_EINPUT, "%s: k: %d dims, expected [B, H, Tcap, D]", fn, k->ndim);
    int64_t ks[4] = {q->shape[0], q->shape[1], k->shape[2], q->shape[3]};
    TRY(need_shape(fn, "k", k, 4, ks, e));
    TRY(need_shape(fn, "v", v, 4, ks, e));
    if (tkv < q->shape[2] || tkv > k->shape[2])
        return ps_errf(e, PS_EINPUT, "%s: tkv %lld outside [Tq, Tcap] = [%lld, %lld]", fn,
                       (long long)tkv, (long long)q->shape[2], (long long)k->shape[2]);
    return 0;
}

int rt_attention_fwd(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v, int64_t tkv,
                     rt_mask_kind mk, const rt_tensor *mask, rt_tensor *att, rt_tensor *o,
                     ps_err *e)
{
    const char *fn = "rt_attention_fwd";
    TRY(att_shapes(fn, q, k, v, tkv, e));
    const int64_t b = q->shape[0], h = q->shape[1], tq = q->shape[2], dh = q->shape[3];
    if (mk != RT_MASK_NONE && mk != RT_MASK_CAUSAL && mk != RT_MASK_BOOL)
        return ps_errf(e, PS_EINPUT, "%s: unknown mask kind %d", fn, (int)mk);
    if (mk == RT_MASK_BOOL) {
        TRY(need_dtype(fn, "mask", mask, RT_U8, q->dev, e));
        int64_t ms[2] = {tq, tkv};
        TRY(need_shape(fn, "mask", mask, 2, ms, e));
    }
    if (att) {
        TRY(same_kind(fn, "att", att, q, e));
        int64_t as[4] = {b, h, tq, tkv};
        TRY(need_shape(fn, "att", att, 4, as, e));
    }
    TRY(same_kind(fn, "o", o, q, e));
    TRY(need_shape(fn, "o", o, 4, q->shape, e));
    if (rt_on_cuda(q))
        return RT_CUDA_CALL(attention_fwd, e, q, k, v, tkv, mk, mask, att, o, e);
    void *work = NULL;
    if (!att) {
        work = malloc((size_t)(tq * tkv) * rt_dtype_size(q->dtype));
        if (!work)
            return ps_errf(e, PS_ERUN, "%s: out of memory (%lld x %lld scores)", fn,
                           (long long)tq, (long long)tkv);
    }
    const uint8_t *m = mk == RT_MASK_BOOL ? mask->data : NULL;
    if (q->dtype == RT_F32)
        attention_fwd_f32(b * h, tq, k->shape[2], tkv, dh, q->data, k->data, v->data, mk, m,
                          att ? att->data : NULL, o->data, work);
    else
        attention_fwd_f64(b * h, tq, k->shape[2], tkv, dh, q->data, k->data, v->data, mk, m,
                          att ? att->data : NULL, o->data, work);
    free(work);
    return 0;
}

int rt_attention_bwd(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v, int64_t tkv,
                     const rt_tensor *att, const rt_tensor *dout, rt_tensor *dq, rt_tensor *dk,
                     rt_tensor *dv, ps_err *e)
{
    const char *fn = "rt_attention_bwd";
    TRY(att_shapes(fn, q, k, v, tkv, e));
    const int64_t b = q->shape[0], h = q->shape[1], tq = q->shape[2], dh = q->shape[3];
    TRY(same_kind(fn, "att", att, q, e));
    int64_t as[4] = {b, h, tq, tkv};
    TRY(need_shape(fn, "att", att, 4, as, e));
    TRY(same_kind(fn, "dout", dout, q, e));
    TRY(need_shape(fn, "dout", dout, 4, q->shape, e));
    if (dq) {
        TRY(same_kind(fn, "dq", dq, q, e));
        TRY(need_shape(fn, "dq", dq, 4, q->shape, e));
    }
    if (dk) {
        TRY(same_kind(fn, "dk", dk, q, e));
        TRY(need_shape(fn, "dk", dk, 4, k->shape, e));
    }
    if (dv) {
        TRY(same_kind(fn, "dv", dv, q, e));
        TRY(need_shape(fn, "dv", dv, 4, v->shape, e));
    }
    if (rt_on_cuda(q))
        return RT_CUDA_CALL(attention_bwd, e, q, k, v, tkv, att, dout, dq, dk, dv, e);
    void *work = malloc((size_t)(tq * tkv) * rt_dtype_size(q->dtype));
    if (!work)
        return ps_errf(e, PS_ERUN, "%s: out of memory (%lld x %lld scores)", fn, (long long)tq,
                       (long long)tkv);
    if (q->dtype == RT_F32)
        attention_bwd_f32(b * h, tq, k->shape[2], tkv, dh, q->data, k->data, v->data, att->data,
                          dout->data, P_(dq), P_(dk), P_(dv), work);
    else
        attention_bwd_f64(b * h, tq, k->shape[2], tkv, dh, q->data, k->data, v->data, att->data,
                          dout->data, P_(dq), P_(dk), P_(dv), work);
    free(work);
    return 0;
}

/* ------------------------------------------------------------------ KV cache */

int rt_kvcache_init(rt_kvcache *c, rt_dev *d, int64_t b, int64_t h, int64_t cap, int64_t dh,
                    ps_err *e)
{
    memset(c, 0, sizeof *c);
    if (b < 1 || h < 1 || cap < 1 || dh < 1)
        return ps_errf(e, PS_EINPUT,
                       "rt_kvcache_init: every dim must be >= 1 (b %lld, h %lld, cap %lld, "
                       "dh %lld)",
                       (long long)b, (long long)h, (long long)cap, (long long)dh);
    if (rt_tensor_new4(&c->k, d, RT_F32, b, h, cap, dh, e) ||
        rt_tensor_new4(&c->v, d, RT_F32, b, h, cap, dh, e)) {
        rt_kvcache_free(c);
        return e ? e->code : PS_ERUN;
    }
    return 0;
}

void rt_kvcache_free(rt_kvcache *c)
{
    if (!c)
        return;
    rt_tensor_free(&c->k);
    rt_tensor_free(&c->v);
    c->len = 0;
}

/* Copy rows [s0, s0 + n) of src viewed as [bh * src_t, dh] (per bh block) to
 * rows [d0, d0 + n) of dst viewed as [bh * dst_t, dh]: one copy per block;
 * on CUDA asynchronous device-to-device copies on the device's stream. */
static int copy_rows(rt_tensor *dst, int64_t dst_t, int64_t d0, const rt_tensor *src,
                     int64_t src_t, int64_t s0, int64_t n, int64_t bh, int64_t dh, ps_err *e)
{
    const size_t es = rt_dtype_size(dst->dtype), bytes = (size_t)(n * dh) * es;
    struct ps_cuda_ctx *cu = rt_on_cuda(dst) ? rt_dev_cuda_ctx(dst->dev) : NULL;
    for (int64_t i = 0; i < bh; i++) {
        char *to = (char *)dst->data + (size_t)((i * dst_t + d0) * dh) * es;
        const char *from = (const char *)src->data + (size_t)((i * src_t + s0) * dh) * es;
        if (!cu)
            memmove(to, from, bytes);
        else if (ps_cuda_copy(cu, to, from, bytes, PS_CU_D2D, e)) {
            ps_err_prefix(e, "rt_kvcache (%s): ", rt_dev_name(dst->dev));
            return PS_ERUN;
        }
    }
    return 0;
}

int rt_kvcache_append(rt_kvcache *c, const rt_tensor *k_new, const rt_tensor *v_new, ps_err *e)
{
    const char *fn = "rt_kvcache_append";
    TRY(same_kind(fn, "k_new", k_new, &c->k, e));
    TRY(same_kind(fn, "v_new", v_new, &c->k, e));
    if (k_new->ndim != 4)
        return ps_errf(e, PS_EINPUT, "%s: k_new: %d dims, expected [B, H, T, D]", fn,
                       k_new->ndim);
    const int64_t b = c->k.shape[0], h = c->k.shape[1], cap = c->k.shape[2],
                  dh = c->k.shape[3], t = k_new->shape[2];
    int64_t s[4] = {b, h, t, dh};
    TRY(need_shape(fn, "k_new", k_new, 4, s, e));
    TRY(need_shape(fn, "v_new", v_new, 4, s, e));
    if (c->len + t > cap)
        return ps_errf(e, PS_EINPUT, "%s: %lld + %lld positions exceed the capacity %lld", fn,
                       (long long)c->len, (long long)t, (long long)cap);
    TRY(copy_rows(&c->k, cap, c->len, k_new, t, 0, t, b * h, dh, e));
    TRY(copy_rows(&c->v, cap, c->len, v_new, t, 0, t, b * h, dh, e));
    c->len += t;
    return 0;
}

int rt_kvcache_truncate(rt_kvcache *c, int64_t len, ps_err *e)
{
    if (len < 0 || len > c->len)
        return ps_errf(e, PS_EINPUT, "rt_kvcache_truncate: len %lld outside [0, %lld]",
                       (long long)len, (long long)c->len);
    c->len = len;
    return 0;
}

int rt_kvcache_keep_rows(rt_kvcache *c, int64_t from, const int64_t *rows, int64_t n, ps_err *e)
{
    const char *fn = "rt_kvcache_keep_rows";
    if (from < 0 || from > c->len || n < 0)
        return ps_errf(e, PS_EINPUT, "%s: from %lld outside [0, %lld] (n %lld)", fn,
                       (long long)from, (long long)c->len, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < from || rows[i] >= c->len)
            return ps_errf(e, PS_EINPUT, "%s: rows[%lld] = %lld outside [%lld, %lld)", fn,
                           (long long)i, (long long)rows[i], (long long)from,
                           (long long)c->len);
        if (i && rows[i] <= rows[i - 1])
            return ps_errf(e, PS_EINPUT, "%s: rows[%lld] = %lld not above rows[%lld] = %lld",
                           fn, (long long)i, (long long)rows[i], (long long)(i - 1),
                           (long long)rows[i - 1]);
    }
    const int64_t bh = c->k.shape[0] * c->k.shape[1], cap = c->k.shape[2], dh = c->k.shape[3];
    /* rows ascend, so rows[i] >= from + i: moving forward in order never
     * overwrites a row still to be moved. */
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] == from + i)
            continue;
        TRY(copy_rows(&c->k, cap, from + i, &c->k, cap, rows[i], 1, bh, dh, e));
        TRY(copy_rows(&c->v, cap, from + i, &c->v, cap, rows[i], 1, bh, dh, e));
    }
    c->len = from + n;
    return 0;
}
