/* real/cpu_seq.c: layer norm, embedding, masked attention and the KV cache.
 * Every backward against central finite differences in float64 (loss =
 * <w, y> for a fixed random w, so dy = w); attention's forward against
 * kernels/cpu_attention.c in float32; the KV cache's row bookkeeping on
 * hand-checked values; operand errors name the operand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_attention.h"
#include "real/rt.h"

#include "tests/rt_testutil.h"

static rt_rng R;

static void rnd(rt_tensor *t, double lo, double hi)
{
    OK(rt_init_uniform(t, &R, lo, hi, &e_));
}

static rt_tensor f64_4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    rt_tensor t;
    OK(rt_tensor_new4(&t, rt_cpu(), RT_F64, a, b, c, d, &e_));
    return t;
}

static rt_tensor f64_2(int64_t a, int64_t b)
{
    rt_tensor t;
    OK(rt_tensor_new2(&t, rt_cpu(), RT_F64, a, b, &e_));
    return t;
}

static rt_tensor f64_1(int64_t a)
{
    rt_tensor t;
    OK(rt_tensor_new1(&t, rt_cpu(), RT_F64, a, &e_));
    return t;
}

static double dot(const rt_tensor *a, const rt_tensor *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += rt_f64(a)[i] * rt_f64(b)[i];
    return s;
}

/* |analytic - numeric| <= tol * max(1, |numeric|) */
static void near(double got, double ref, double tol, const char *what, int64_t i)
{
    if (!(fabs(got - ref) <= tol * fmax(1.0, fabs(ref))))
        fail_msg("%s[%lld]: analytic %.12g, finite difference %.12g", what, (long long)i, got,
                 ref);
}

#define FD_H 1e-6
#define FD_TOL 1e-7

/* ------------------------------------------------------------------ layer norm */

static double ln_loss(const rt_tensor *x, const rt_tensor *g, const rt_tensor *b, rt_tensor *y,
                      const rt_tensor *w)
{
    OK(rt_layernorm_fwd(x, g, b, 1e-5, y, NULL, NULL, &e_));
    return dot(y, w, y->numel);
}

static void test_layernorm_grad(void **st)
{
    (void)st;
    const int64_t N = 4, C = 7;
    rt_tensor x = f64_2(N, C), g = f64_1(C), b = f64_1(C), y = f64_2(N, C), w = f64_2(N, C);
    rt_tensor mean = f64_1(N), rstd = f64_1(N), dx = f64_2(N, C), dg = f64_1(C), db = f64_1(C);
    rnd(&x, -2, 2), rnd(&g, 0.5, 1.5), rnd(&b, -1, 1), rnd(&w, -1, 1);
    OK(rt_layernorm_fwd(&x, &g, &b, 1e-5, &y, &mean, &rstd, &e_));
    /* the forward against its definition */
    for (int64_t i = 0; i < N; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < C; j++)
            m += rt_f64(&x)[i * C + j] / C;
        for (int64_t j = 0; j < C; j++)
            v += pow(rt_f64(&x)[i * C + j] - m, 2) / C;
        assert_true(fabs(rt_f64(&mean)[i] - m) < 1e-14);
        assert_true(fabs(rt_f64(&rstd)[i] - 1 / sqrt(v + 1e-5)) < 1e-12);
        for (int64_t j = 0; j < C; j++) {
            double ref = (rt_f64(&x)[i * C + j] - m) / sqrt(v + 1e-5) * rt_f64(&g)[j] +
                         rt_f64(&b)[j];
            assert_true(fabs(rt_f64(&y)[i * C + j] - ref) < 1e-12);
        }
    }
    OK(rt_tensor_fill(&dx, NAN, &e_)); /* overwritten */
    OK(rt_layernorm_bwd(&x, &g, &mean, &rstd, &w, &dx, &dg, &db, &e_));
    rt_tensor *ins[3] = {&x, &g, &b}, *grads[3] = {&dx, &dg, &db};
    const char *names[3] = {"dx", "dgamma", "dbeta"};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < ins[k]->numel; i++) {
            double *p = rt_f64(ins[k]) + i, s = *p;
            *p = s + FD_H;
            double lp = ln_loss(&x, &g, &b, &y, &w);
            *p = s - FD_H;
            double lm = ln_loss(&x, &g, &b, &y, &w);
            *p = s;
            near(rt_f64(grads[k])[i], (lp - lm) / (2 * FD_H), FD_TOL, names[k], i);
        }
    /* parameter gradients accumulate; dx is overwritten */
    double g0 = rt_f64(&dg)[3], b0 = rt_f64(&db)[2], x0 = rt_f64(&dx)[5];
    OK(rt_layernorm_bwd(&x, &g, &mean, &rstd, &w, &dx, &dg, &db, &e_));
    assert_true(fabs(rt_f64(&dg)[3] - 2 * g0) < 1e-12);
    assert_true(fabs(rt_f64(&db)[2] - 2 * b0) < 1e-12);
    assert_true(fabs(rt_f64(&dx)[5] - x0) < 1e-15);

    /* f32 agrees with f64 */
    rt_tensor x32, g32, b32, y32;
    OK(rt_tensor_new2(&x32, rt_cpu(), RT_F32, N, C, &e_));
    OK(rt_tensor_new1(&g32, rt_cpu(), RT_F32, C, &e_));
    OK(rt_tensor_new1(&b32, rt_cpu(), RT_F32, C, &e_));
    OK(rt_tensor_new2(&y32, rt_cpu(), RT_F32, N, C, &e_));
    for (int64_t i = 0; i < N * C; i++)
        rt_f32(&x32)[i] = (float)rt_f64(&x)[i];
    for (int64_t i = 0; i < C; i++)
        rt_f32(&g32)[i] = (float)rt_f64(&g)[i], rt_f32(&b32)[i] = (float)rt_f64(&b)[i];
    OK(rt_layernorm_fwd(&x32, &g32, &b32, 1e-5, &y32, NULL, NULL, &e_));
    OK(rt_layernorm_fwd(&x, &g, &b, 1e-5, &y, NULL, NULL, &e_));
    for (int64_t i = 0; i < N * C; i++)
        assert_true(fabs(rt_f32(&y32)[i] - rt_f64(&y)[i]) < 1e-5);

    /* a wrong operand is named */
    ps_err e = {0};
    rt_tensor bad = f64_1(C + 1);
    assert_int_equal(rt_layernorm_fwd(&x, &bad, &b, 1e-5, &y, NULL, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "gamma"));
    assert_int_equal(rt_layernorm_fwd(&x, &g, &b, 1e-5, &y, &mean, &x32, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rstd"));
    FREE_TENSORS(&x, &g, &b, &y, &w, &mean, &rstd, &dx, &dg, &db, &x32, &g32, &b32, &y32, &bad);
}

/* ------------------------------------------------------------------ embedding */

static void test_embedding_grad(void **st)
{
    (void)st;
    const int64_t V = 5, D = 3, N = 7;
    rt_tensor ids, tab = f64_2(V, D), y, w, dt = f64_2(V, D);
    OK(rt_tensor_new1(&ids, rt_cpu(), RT_I32, N, &e_));
    int64_t ys[3] = {1, N, D};
    OK(rt_tensor_alloc(&y, rt_cpu(), RT_F64, 3, ys, &e_));
    OK(rt_tensor_alloc(&w, rt_cpu(), RT_F64, 3, ys, &e_));
    const int32_t id[7] = {2, 0, 2, 4, 2, 0, 1}; /* 2 three times, 0 twice, 3 never */
    memcpy(rt_i32(&ids), id, sizeof id);
    rnd(&tab, -1, 1), rnd(&w, -1, 1);
    OK(rt_embedding_fwd(&ids, &tab, &y, &e_));
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++)
            assert_true(rt_f64(&y)[i * D + j] == rt_f64(&tab)[id[i] * D + j]);
    rnd(&dt, -1, 1); /* accumulates onto what is there */
    double *before = malloc(V * D * sizeof *before);
    memcpy(before, rt_f64(&dt), V * D * sizeof *before);
    OK(rt_embedding_bwd(&ids, &w, &dt, &e_));
    for (int64_t i = 0; i < V * D; i++) {
        double *p = rt_f64(&tab) + i, s = *p;
        *p = s + FD_H;
        OK(rt_embedding_fwd(&ids, &tab, &y, &e_));
        double lp = dot(&y, &w, N * D);
        *p = s - FD_H;
        OK(rt_embedding_fwd(&ids, &tab, &y, &e_));
        double lm = dot(&y, &w, N * D);
        *p = s;
        near(rt_f64(&dt)[i] - before[i], (lp - lm) / (2 * FD_H), FD_TOL, "dtable", i);
    }
    for (int64_t j = 0; j < D; j++) /* id 3 unused: untouched */
        assert_true(rt_f64(&dt)[3 * D + j] == before[3 * D + j]);
    free(before);
    /* an id out of range is named */
    ps_err e = {0};
    rt_i32(&ids)[4] = 5;
    assert_int_equal(rt_embedding_fwd(&ids, &tab, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "ids[4] = 5"));
    rt_i32(&ids)[4] = -1;
    assert_int_equal(rt_embedding_bwd(&ids, &w, &dt, &e), PS_EINPUT);
    rt_tensor_free(&ids), rt_tensor_free(&tab), rt_tensor_free(&y), rt_tensor_free(&w);
    rt_tensor_free(&dt);
}

/* ------------------------------------------------------------------ attention */

typedef struct att_case {
    const char *name;
    int64_t b, h, tq, cap, tkv, d;
    rt_mask_kind mk;
    const uint8_t *mask; /* tq x tkv for RT_MASK_BOOL */
} att_case;

static double att_loss(const att_case *c, const rt_tensor *q, const rt_tensor *k,
                       const rt_tensor *v, const rt_tensor *m, rt_tensor *o, const rt_tensor *w)
{
    OK(rt_attention_fwd(q, k, v, c->tkv, c->mk, m, NULL, o, &e_));
    return dot(o, w, o->numel);
}

static void att_gradcheck(const att_case *c)
{
    rt_tensor q = f64_4(c->b, c->h, c->tq, c->d), k = f64_4(c->b, c->h, c->cap, c->d),
              v = f64_4(c->b, c->h, c->cap, c->d), o = f64_4(c->b, c->h, c->tq, c->d),
              w = f64_4(c->b, c->h, c->tq, c->d), att = f64_4(c->b, c->h, c->tq, c->tkv),
              dq = f64_4(c->b, c->h, c->tq, c->d), dk = f64_4(c->b, c->h, c->cap, c->d),
              dv = f64_4(c->b, c->h, c->cap, c->d), m = {0};
    if (c->mk == RT_MASK_BOOL) {
        OK(rt_tensor_new2(&m, rt_cpu(), RT_U8, c->tq, c->tkv, &e_));
        memcpy(m.data, c->mask, (size_t)(c->tq * c->tkv));
    }
    rnd(&q, -1.5, 1.5), rnd(&k, -1.5, 1.5), rnd(&v, -1, 1), rnd(&w, -1, 1);
    OK(rt_attention_fwd(&q, &k, &v, c->tkv, c->mk, c->mk == RT_MASK_BOOL ? &m : NULL, &att, &o,
                        &e_));
    /* probabilities: rows sum to 1 over visible keys, 0 elsewhere */
    const int64_t off = c->tkv - c->tq;
    for (int64_t bh = 0; bh < c->b * c->h; bh++)
        for (int64_t i = 0; i < c->tq; i++) {
            double s = 0;
            int any = 0;
            for (int64_t j = 0; j < c->tkv; j++) {
                int sees = c->mk == RT_MASK_NONE     ? 1
                           : c->mk == RT_MASK_CAUSAL ? j <= off + i
                                                     : c->mask[i * c->tkv + j] != 0;
                double p = rt_f64(&att)[(bh * c->tq + i) * c->tkv + j];
                if (!sees)
                    assert_true(p == 0.0);
                any |= sees;
                s += p;
            }
            if (any)
                assert_true(fabs(s - 1) < 1e-12);
            else {
                assert_true(s == 0.0);
                for (int64_t j = 0; j < c->d; j++)
                    assert_true(rt_f64(&o)[(bh * c->tq + i) * c->d + j] == 0.0);
            }
        }
    /* dk, dv beyond tkv stay as they were; dq, dk, dv below are overwritten */
    OK(rt_tensor_fill(&dq, NAN, &e_));
    OK(rt_tensor_fill(&dk, 7.0, &e_));
    OK(rt_tensor_fill(&dv, 7.0, &e_));
    for (int64_t i = 0; i < dk.numel; i++)
        if ((i / c->d) % c->cap < c->tkv)
            rt_f64(&dk)[i] = rt_f64(&dv)[i] = NAN;
    OK(rt_attention_bwd(&q, &k, &v, c->tkv, &att, &w, &dq, &dk, &dv, &e_));
    rt_tensor *ins[3] = {&q, &k, &v}, *grads[3] = {&dq, &dk, &dv};
    const char *names[3] = {"dq", "dk", "dv"};
    const rt_tensor *mp = c->mk == RT_MASK_BOOL ? &m : NULL;
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < ins[t]->numel; i++) {
            double *g = rt_f64(grads[t]) + i;
            if (t > 0 && (i / c->d) % c->cap >= c->tkv) {
                if (*g != 7.0)
                    fail_msg("%s: %s[%lld] beyond tkv was written", c->name, names[t],
                             (long long)i);
                continue;
            }
            double *p = rt_f64(ins[t]) + i, s = *p;
            *p = s + FD_H;
            double lp = att_loss(c, &q, &k, &v, mp, &o, &w);
            *p = s - FD_H;
            double lm = att_loss(c, &q, &k, &v, mp, &o, &w);
            *p = s;
            char what[64];
            snprintf(what, sizeof what, "%s %s", c->name, names[t]);
            near(*g, (lp - lm) / (2 * FD_H), FD_TOL, what, i);
        }
    FREE_TENSORS(&q, &k, &v, &o, &w, &att, &dq, &dk, &dv, &m);
}

/* A random token tree of n nodes after a prefix: mask [n, prefix + n]. */
static void tree_mask(int64_t n, int64_t tkv, uint8_t *mask, int64_t *parent)
{
    for (int64_t i = 0; i < n; i++)
        parent[i] = i == 0 ? -1 : (int64_t)(rt_rng_next(&R) % (uint64_t)i);
    ps_cpu_tree_mask(n, tkv, parent, mask);
}

static void test_attention_grad(void **st)
{
    (void)st;
    int64_t parent[8];
    uint8_t tree[6 * 6], tree_kv[4 * 9], holey[5 * 5];
    tree_mask(6, 6, tree, parent);
    tree_mask(4, 9, tree_kv, parent);
    for (int i = 0; i < 25; i++) /* random, then query 2 sees nothing */
        holey[i] = rt_rng_next(&R) % 3 != 0;
    memset(holey + 2 * 5, 0, 5);
    att_case cases[] = {
        {"none", 2, 2, 5, 5, 5, 4, RT_MASK_NONE, NULL},
        {"causal", 1, 3, 6, 6, 6, 4, RT_MASK_CAUSAL, NULL},
        {"tree", 1, 2, 6, 6, 6, 3, RT_MASK_BOOL, tree},
        {"causal tq<tkv<cap", 2, 2, 3, 11, 8, 4, RT_MASK_CAUSAL, NULL},
        {"none tq<tkv<cap", 1, 2, 2, 7, 5, 3, RT_MASK_NONE, NULL},
        {"tree tq<tkv<cap", 1, 2, 4, 12, 9, 4, RT_MASK_BOOL, tree_kv},
        {"masked row", 1, 2, 5, 5, 5, 4, RT_MASK_BOOL, holey},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        att_gradcheck(&cases[i]);
}

/* f32 forward against kernels/cpu_attention.c. */
static void test_attention_vs_kernel(void **st)
{
    (void)st;
    const int64_t b = 2, h = 3, tq = 70, tkv = 90, d = 16; /* tq > PS_CPU_ATTN_BLOCK */
    int64_t *parent = malloc(tq * sizeof *parent);
    uint8_t *mask = malloc(tq * tkv);
    tree_mask(tq, tkv, mask, parent);
    mask[5 * tkv + 3] = 0; /* some prefix holes too */
    for (int kind = 0; kind < 3; kind++) {
        rt_tensor q, k, v, o, att, m = {0};
        OK(rt_tensor_new4(&q, rt_cpu(), RT_F32, b, h, tq, d, &e_));
        OK(rt_tensor_new4(&k, rt_cpu(), RT_F32, b, h, tkv, d, &e_));
        OK(rt_tensor_new4(&v, rt_cpu(), RT_F32, b, h, tkv, d, &e_));
        OK(rt_tensor_new4(&o, rt_cpu(), RT_F32, b, h, tq, d, &e_));
        OK(rt_tensor_new4(&att, rt_cpu(), RT_F32, b, h, tq, tkv, &e_));
        OK(rt_tensor_new2(&m, rt_cpu(), RT_U8, tq, tkv, &e_));
        memcpy(m.data, mask, (size_t)(tq * tkv));
        rnd(&q, -2, 2), rnd(&k, -2, 2), rnd(&v, -1, 1);
        rt_mask_kind mk = kind == 0 ? RT_MASK_NONE : kind == 1 ? RT_MASK_CAUSAL : RT_MASK_BOOL;
        ps_cpu_mask_kind pk = kind == 0   ? PS_CPU_MASK_NONE
                              : kind == 1 ? PS_CPU_MASK_CAUSAL
                                          : PS_CPU_MASK_TREE;
        float *ref = malloc((size_t)o.numel * sizeof *ref);
        assert_int_equal(ps_cpu_attention(b, h, tq, tkv, d, rt_f32(&q), rt_f32(&k), rt_f32(&v),
                                          pk, mask, ref, NULL),
                         0);
        for (int with_att = 0; with_att < 2; with_att++) {
            OK(rt_tensor_fill(&o, NAN, &e_));
            OK(rt_attention_fwd(&q, &k, &v, tkv, mk, &m, with_att ? &att : NULL, &o, &e_));
            double num = 0, den = 0;
            for (int64_t i = 0; i < o.numel; i++) {
                double df = (double)rt_f32(&o)[i] - ref[i];
                num += df * df;
                den += (double)ref[i] * ref[i];
            }
            if (!(sqrt(num / den) < 1e-6))
                fail_msg("mask %d: relative error %.3g vs ps_cpu_attention", kind,
                         sqrt(num / den));
        }
        free(ref);
        FREE_TENSORS(&q, &k, &v, &o, &att, &m);
    }
    free(parent);
    free(mask);
}

static void test_attention_errors(void **st)
{
    (void)st;
    rt_tensor q = f64_4(1, 2, 3, 4), k = f64_4(1, 2, 5, 4), v = f64_4(1, 2, 5, 4),
              o = f64_4(1, 2, 3, 4), att = f64_4(1, 2, 3, 4), m;
    OK(rt_tensor_new2(&m, rt_cpu(), RT_U8, 3, 3, &e_));
    ps_err e = {0};
    assert_int_equal(rt_attention_fwd(&q, &k, &v, 6, RT_MASK_NONE, NULL, NULL, &o, &e),
                     PS_EINPUT);
    assert_non_null(strstr(e.msg, "tkv 6"));
    assert_int_equal(rt_attention_fwd(&q, &k, &v, 2, RT_MASK_NONE, NULL, NULL, &o, &e),
                     PS_EINPUT);
    assert_int_equal(rt_attention_fwd(&q, &k, &v, 4, RT_MASK_BOOL, &m, NULL, &o, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "mask"));
    assert_int_equal(rt_attention_fwd(&q, &k, &v, 5, RT_MASK_CAUSAL, NULL, &att, &o, &e),
                     PS_EINPUT);
    assert_non_null(strstr(e.msg, "att"));
    assert_int_equal(rt_attention_fwd(&q, &k, &v, 4, RT_MASK_CAUSAL, NULL, NULL, &k, &e),
                     PS_EINPUT);
    assert_non_null(strstr(e.msg, "o:"));
    assert_int_equal(rt_attention_bwd(&q, &k, &v, 4, &att, &o, &q, &k, &o, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "dv"));
    FREE_TENSORS(&q, &k, &v, &o, &att, &m);
}

/* ------------------------------------------------------------------ KV cache */

/* k_new [1, 2, t, 2] with value 100 * head + position-tag + column / 10. */
static void fill_new(rt_tensor *t, const float *tags)
{
    for (int64_t hh = 0; hh < 2; hh++)
        for (int64_t p = 0; p < t->shape[2]; p++)
            for (int64_t j = 0; j < 2; j++)
                rt_f32(t)[(hh * t->shape[2] + p) * 2 + j] = 100.0f * hh + tags[p] + 0.1f * j;
}

static void expect_cache(const rt_kvcache *c, const float *tags, int64_t n, float vsign)
{
    assert_int_equal(c->len, n);
    for (int64_t hh = 0; hh < 2; hh++)
        for (int64_t p = 0; p < n; p++)
            for (int64_t j = 0; j < 2; j++) {
                int64_t i = (hh * c->k.shape[2] + p) * 2 + j;
                float want = 100.0f * hh + tags[p] + 0.1f * j;
                if (rt_f32(&c->k)[i] != want || rt_f32(&c->v)[i] != vsign * want)
                    fail_msg("cache head %lld pos %lld col %lld: k %g v %g, expected %g",
                             (long long)hh, (long long)p, (long long)j, rt_f32(&c->k)[i],
                             rt_f32(&c->v)[i], want);
            }
}

static void test_kvcache(void **st)
{
    (void)st;
    rt_kvcache c;
    OK(rt_kvcache_init(&c, rt_cpu(), 1, 2, 8, 2, &e_));
    assert_int_equal(c.len, 0);
    assert_int_equal(c.k.dtype, RT_F32);
    rt_tensor k3, v3, k4, v4;
    OK(rt_tensor_new4(&k3, rt_cpu(), RT_F32, 1, 2, 3, 2, &e_));
    OK(rt_tensor_new4(&v3, rt_cpu(), RT_F32, 1, 2, 3, 2, &e_));
    OK(rt_tensor_new4(&k4, rt_cpu(), RT_F32, 1, 2, 4, 2, &e_));
    OK(rt_tensor_new4(&v4, rt_cpu(), RT_F32, 1, 2, 4, 2, &e_));
    const float a[3] = {1, 2, 3}, b[4] = {11, 12, 13, 14};
    fill_new(&k3, a), fill_new(&v3, a), rt_scale(&v3, -1, NULL);
    fill_new(&k4, b), fill_new(&v4, b), rt_scale(&v4, -1, NULL);
    OK(rt_kvcache_append(&c, &k3, &v3, &e_));
    OK(rt_kvcache_append(&c, &k4, &v4, &e_));
    const float ab[7] = {1, 2, 3, 11, 12, 13, 14};
    expect_cache(&c, ab, 7, -1);
    ps_err e = {0};
    assert_int_equal(rt_kvcache_append(&c, &k3, &v3, &e), PS_EINPUT); /* 7 + 3 > 8 */
    assert_non_null(strstr(e.msg, "capacity 8"));
    assert_int_equal(c.len, 7);
    /* keep positions 4 and 6 of the tree appended at 3 */
    const int64_t rows[2] = {4, 6};
    OK(rt_kvcache_keep_rows(&c, 3, rows, 2, &e_));
    const float kept[5] = {1, 2, 3, 12, 14};
    expect_cache(&c, kept, 5, -1);
    const int64_t bad[2] = {4, 4};
    assert_int_equal(rt_kvcache_keep_rows(&c, 3, bad, 2, &e), PS_EINPUT);
    const int64_t beyond[1] = {5};
    assert_int_equal(rt_kvcache_keep_rows(&c, 3, beyond, 1, &e), PS_EINPUT);
    assert_int_equal(rt_kvcache_truncate(&c, 6, &e), PS_EINPUT);
    OK(rt_kvcache_truncate(&c, 2, &e_));
    OK(rt_kvcache_append(&c, &k3, &v3, &e_));
    const float again[5] = {1, 2, 1, 2, 3};
    expect_cache(&c, again, 5, -1);
    /* a shape mismatch is named */
    assert_int_equal(rt_kvcache_append(&c, &k3, &v4, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "v_new"));
    rt_kvcache_free(&c);
    rt_tensor_free(&k3), rt_tensor_free(&v3), rt_tensor_free(&k4), rt_tensor_free(&v4);
}

int main(void)
{
    rt_rng_seed(&R, 20261126);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_grad),   cmocka_unit_test(test_embedding_grad),
        cmocka_unit_test(test_attention_grad),   cmocka_unit_test(test_attention_vs_kernel),
        cmocka_unit_test(test_attention_errors), cmocka_unit_test(test_kvcache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
