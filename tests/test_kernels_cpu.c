/* kernels/cpu_*: every CPU kernel against a naive float64 reference on
 * random inputs, with relative error bounds fitted to fp32 accumulation. */
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
#include "kernels/cpu_blas.h"
#include "kernels/cpu_conv.h"
#include "kernels/cpu_ops.h"

static uint64_t rng = 0x1234567887654321ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static float *frand(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(2 * urand() - 1);
    return p;
}

static double *drand_(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = 2 * urand() - 1;
    return p;
}

/* max |got - ref| relative to max |ref| (1 if the reference is all zero). */
static double rel_err_f(const float *got, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= num)) /* also catches NaN */
            num = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > den)
            den = fabs(ref[i]);
    }
    return num / (den > 0 ? den : 1);
}

static double rel_err_d(const double *got, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]);
        if (!(d <= num))
            num = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > den)
            den = fabs(ref[i]);
    }
    return num / (den > 0 ? den : 1);
}

#define CHECK_ERR(err, bound, what)                                                             \
    do {                                                                                        \
        double e_ = (err);                                                                      \
        if (!(e_ <= (bound)))                                                                   \
            fail_msg("%s: relative error %.3g > %.3g", (what), e_, (double)(bound));            \
    } while (0)

/* C = op(A) op(B) in double; A stored m x k (or k x m if ta). */
static void ref_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const double *a,
                     const double *b, double *c)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
            c[i * n + j] = s;
        }
}

static double *to_d(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static void test_sgemm(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 1, 128}, {1, 96, 40}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++) {
            int ta = t & 1, tb = t >> 1;
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            float *a = frand((size_t)(m * k)), *b = frand((size_t)(k * n)),
                  *c = frand((size_t)(m * n));
            double *ad = to_d(a, (size_t)(m * k)), *bd = to_d(b, (size_t)(k * n)),
                   *cd = malloc((size_t)(m * n) * sizeof *cd);
            ps_cpu_sgemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.0f, c, n);
            ref_gemm(ta, tb, m, n, k, ad, bd, cd);
            char what[64];
            snprintf(what, sizeof what, "sgemm %ldx%ldx%ld t%d%d", (long)m, (long)n, (long)k, ta,
                     tb);
            CHECK_ERR(rel_err_f(c, cd, (size_t)(m * n)), 1e-5 * sqrt((double)k) + 1e-6, what);
            free(a), free(b), free(c), free(ad), free(bd), free(cd);
        }
}

/* The check plansim runs after forcing an OpenBLAS core type must pass on
 * the kernels OpenBLAS loads here. */
static void test_blas_selfcheck(void **state)
{
    (void)state;
    assert_int_equal(ps_cpu_blas_selfcheck(), 0);
}

static void test_dgemm_and_beta(void **state)
{
    (void)state;
    int64_t m = 19, n = 23, k = 31;
    double *a = drand_((size_t)(m * k)), *b = drand_((size_t)(k * n)), *c = drand_((size_t)(m * n));
    double *ref = malloc((size_t)(m * n) * sizeof *ref), *c0 = malloc((size_t)(m * n) * sizeof *c0);
    memcpy(c0, c, (size_t)(m * n) * sizeof *c);
    ref_gemm(0, 1, m, n, k, a, b, ref);
    /* C = 2 A B^T + 0.5 C */
    for (int64_t i = 0; i < m * n; i++)
        ref[i] = 2 * ref[i] + 0.5 * c0[i];
    ps_cpu_dgemm(0, 1, m, n, k, 2.0, a, k, b, k, 0.5, c, n);
    CHECK_ERR(rel_err_d(c, ref, (size_t)(m * n)), 1e-13, "dgemm alpha/beta");
    free(a), free(b), free(c), free(ref), free(c0);
}

static void test_batched_gemm(void **state)
{
    (void)state;
    int64_t bt = 5, m = 9, n = 13, k = 11;
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        float *a = frand((size_t)(bt * m * k)), *b = frand((size_t)(bt * k * n)),
              *c = frand((size_t)(bt * m * n));
        double *ad = to_d(a, (size_t)(bt * m * k)), *bd = to_d(b, (size_t)(bt * k * n));
        double *ref = malloc((size_t)(bt * m * n) * sizeof *ref);
        for (int64_t i = 0; i < bt; i++)
            ref_gemm(ta, tb, m, n, k, ad + i * m * k, bd + i * k * n, ref + i * m * n);
        ps_cpu_sgemm_batched(ta, tb, bt, m, n, k, 1.0f, a, m * k, b, k * n, 0.0f, c, m * n);
        CHECK_ERR(rel_err_f(c, ref, (size_t)(bt * m * n)), 1e-5, "sgemm batched");
        double *cd = drand_((size_t)(bt * m * n));
        ps_cpu_dgemm_batched(ta, tb, bt, m, n, k, 1.0, ad, m * k, bd, k * n, 0.0, cd, m * n);
        CHECK_ERR(rel_err_d(cd, ref, (size_t)(bt * m * n)), 1e-13, "dgemm batched");
        free(a), free(b), free(c), free(ad), free(bd), free(ref), free(cd);
    }
}

/* Attention reference in double with an explicit [sq, skv] allow-matrix. */
static void ref_attention(int64_t b, int64_t h, int64_t sq, int64_t skv, int64_t d,
                          const double *q, const double *k, const double *v,
                          const uint8_t *allow, double *o)
{
    double *s = malloc((size_t)skv * sizeof *s);
    for (int64_t bh = 0; bh < b * h; bh++)
        for (int64_t i = 0; i < sq; i++) {
            const double *qi = q + (bh * sq + i) * d;
            double mx = -INFINITY;
            for (int64_t j = 0; j < skv; j++) {
                if (!allow[i * skv + j])
                    continue;
                double dot = 0;
                for (int64_t x = 0; x < d; x++)
                    dot += qi[x] * k[(bh * skv + j) * d + x];
                s[j] = dot / sqrt((double)d);
                if (s[j] > mx)
                    mx = s[j];
            }
            double *oi = o + (bh * sq + i) * d;
            memset(oi, 0, (size_t)d * sizeof *oi);
            if (mx == -INFINITY)
                continue;
            double sum = 0;
            for (int64_t j = 0; j < skv; j++)
                if (allow[i * skv + j])
                    sum += (s[j] = exp(s[j] - mx));
            for (int64_t j = 0; j < skv; j++)
                if (allow[i * skv + j])
                    for (int64_t x = 0; x < d; x++)
                        oi[x] += s[j] / sum * v[(bh * skv + j) * d + x];
        }
    free(s);
}

static void check_attention(int64_t b, int64_t h, int64_t sq, int64_t skv, int64_t d,
                            ps_cpu_mask_kind kind, int use_work)
{
    size_t nq = (size_t)(b * h * sq * d), nk = (size_t)(b * h * skv * d);
    float *q = frand(nq), *k = frand(nk), *v = frand(nk), *o = frand(nq);
    /* Scale up the queries so the softmax is far from uniform. */
    for (size_t i = 0; i < nq; i++)
        q[i] *= 3;
    uint8_t *allow = malloc((size_t)(sq * skv)), *mask = NULL;
    if (kind == PS_CPU_MASK_TREE) {
        int64_t *parent = malloc((size_t)sq * sizeof *parent);
        parent[0] = -1;
        for (int64_t i = 1; i < sq; i++)
            parent[i] = (int64_t)(urand() * (double)i);
        mask = malloc((size_t)(sq * skv));
        ps_cpu_tree_mask(sq, skv, parent, mask);
        /* The tree mask's definition, checked independently. */
        for (int64_t i = 0; i < sq; i++)
            for (int64_t j = 0; j < skv; j++) {
                int want = j < skv - sq;
                if (!want) {
                    for (int64_t a = i; a >= 0; a = parent[a])
                        if (a == j - (skv - sq))
                            want = 1;
                }
                assert_int_equal(mask[i * skv + j], want);
            }
        memcpy(allow, mask, (size_t)(sq * skv));
        free(parent);
    } else {
        for (int64_t i = 0; i < sq; i++)
            for (int64_t j = 0; j < skv; j++)
                allow[i * skv + j] = kind == PS_CPU_MASK_NONE || j <= skv - sq + i;
    }
    double *qd = to_d(q, nq), *kd = to_d(k, nk), *vd = to_d(v, nk);
    double *ref = malloc(nq * sizeof *ref);
    ref_attention(b, h, sq, skv, d, qd, kd, vd, allow, ref);
    float *work = use_work ? malloc(ps_cpu_attention_work_floats(sq, skv) * sizeof(float)) : NULL;
    assert_int_equal(ps_cpu_attention(b, h, sq, skv, d, q, k, v, kind, mask, o, work), 0);
    char what[96];
    snprintf(what, sizeof what, "attention mask %d b%ld h%ld sq%ld skv%ld d%ld", (int)kind,
             (long)b, (long)h, (long)sq, (long)skv, (long)d);
    CHECK_ERR(rel_err_f(o, ref, nq), 2e-5, what);
    free(q), free(k), free(v), free(o), free(allow), free(mask), free(qd), free(kd), free(vd);
    free(ref), free(work);
}

static void test_attention_masks(void **state)
{
    (void)state;
    /* prefill, crossing the 64-row block boundary */
    check_attention(2, 3, 70, 70, 16, PS_CPU_MASK_CAUSAL, 1);
    check_attention(1, 2, 70, 70, 8, PS_CPU_MASK_NONE, 0);
    check_attention(1, 2, 40, 40, 32, PS_CPU_MASK_TREE, 1);
    /* decode: one query over a long history */
    check_attention(3, 2, 1, 129, 16, PS_CPU_MASK_CAUSAL, 1);
    check_attention(1, 1, 1, 50, 64, PS_CPU_MASK_NONE, 0);
    /* speculative verification: a tree of 12 tokens after a prefix of 30 */
    check_attention(2, 2, 12, 42, 16, PS_CPU_MASK_TREE, 0);
    /* chunked prefill: 80 queries at the end of 150 keys */
    check_attention(1, 1, 80, 150, 8, PS_CPU_MASK_CAUSAL, 0);
}

static void test_attention_empty_row(void **state)
{
    (void)state;
    /* A query that sees nothing gets zeros, not NaN. */
    int64_t sq = 3, skv = 3, d = 4;
    float *q = frand(12), *k = frand(12), *v = frand(12), o[12];
    uint8_t mask[9] = {1, 0, 0, 0, 0, 0, 1, 1, 1};
    assert_int_equal(ps_cpu_attention(1, 1, sq, skv, d, q, k, v, PS_CPU_MASK_TREE, mask, o, NULL),
                     0);
    for (int x = 0; x < 4; x++) {
        assert_true(o[4 + x] == 0.0f);
        assert_true(fabsf(o[x] - v[x]) < 1e-6f); /* only key 0: its value */
    }
    assert_int_equal(ps_cpu_attention(1, 1, sq, skv, d, q, k, v, PS_CPU_MASK_TREE, NULL, o, NULL),
                     -1);
    assert_int_equal(ps_cpu_mask_parse("tree"), PS_CPU_MASK_TREE);
    assert_int_equal(ps_cpu_mask_parse("bogus"), -1);
    free(q), free(k), free(v);
}

/* Direct convolution and its two gradients in double. */
static void ref_conv(const ps_cpu_conv *g, const double *x, const double *w, double *y)
{
    int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t k = 0; k < g->k; k++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double s = 0;
                    for (int64_t c = 0; c < g->c; c++)
                        for (int64_t fy = 0; fy < g->r; fy++)
                            for (int64_t fx = 0; fx < g->s; fx++) {
                                int64_t iy = oy * g->stride + fy - g->pad,
                                        ix = ox * g->stride + fx - g->pad;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                    continue;
                                s += x[((n * g->c + c) * g->h + iy) * g->w + ix] *
                                     w[((k * g->c + c) * g->r + fy) * g->s + fx];
                            }
                    y[((n * g->k + k) * oh + oy) * ow + ox] = s;
                }
}

/* Gradients by the adjoint loops of ref_conv. */
static void ref_conv_grads(const ps_cpu_conv *g, const double *x, const double *w,
                           const double *dy, double *dx, double *dw)
{
    int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    memset(dx, 0, (size_t)(g->n * g->c * g->h * g->w) * sizeof *dx);
    memset(dw, 0, (size_t)(g->k * g->c * g->r * g->s) * sizeof *dw);
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t k = 0; k < g->k; k++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double gy = dy[((n * g->k + k) * oh + oy) * ow + ox];
                    for (int64_t c = 0; c < g->c; c++)
                        for (int64_t fy = 0; fy < g->r; fy++)
                            for (int64_t fx = 0; fx < g->s; fx++) {
                                int64_t iy = oy * g->stride + fy - g->pad,
                                        ix = ox * g->stride + fx - g->pad;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                    continue;
                                size_t xi = (size_t)(((n * g->c + c) * g->h + iy) * g->w + ix);
                                size_t wi = (size_t)(((k * g->c + c) * g->r + fy) * g->s + fx);
                                dx[xi] += gy * w[wi];
                                dw[wi] += gy * x[xi];
                            }
                }
}

static void test_conv2d(void **state)
{
    (void)state;
    const ps_cpu_conv cases[] = {
        {2, 3, 9, 11, 4, 3, 3, 1, 1}, /* same padding */
        {1, 2, 10, 7, 3, 3, 2, 2, 0}, /* stride 2, rectangular filter */
        {3, 4, 6, 6, 5, 1, 1, 1, 0},  /* 1x1 */
        {1, 1, 5, 5, 2, 5, 5, 3, 2},  /* big pad and stride */
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        const ps_cpu_conv *g = &cases[t];
        int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
        size_t nx = (size_t)(g->n * g->c * g->h * g->w), nw = (size_t)(g->k * g->c * g->r * g->s),
               ny = (size_t)(g->n * g->k * oh * ow);
        float *x = frand(nx), *w = frand(nw), *y = frand(ny), *dy = frand(ny), *dx = frand(nx),
              *dw = frand(nw);
        double *xd = to_d(x, nx), *wd = to_d(w, nw), *dyd = to_d(dy, ny);
        double *yr = malloc(ny * sizeof *yr), *dxr = malloc(nx * sizeof *dxr),
               *dwr = malloc(nw * sizeof *dwr);
        ref_conv(g, xd, wd, yr);
        ref_conv_grads(g, xd, wd, dyd, dxr, dwr);
        float *work = malloc(ps_cpu_conv2d_work_floats(g) * sizeof *work);
        assert_int_equal(ps_cpu_conv2d_fwd(g, x, w, y, work), 0);
        CHECK_ERR(rel_err_f(y, yr, ny), 1e-5, "conv2d fwd");
        assert_int_equal(ps_cpu_conv2d_bwd_input(g, dy, w, dx, NULL), 0);
        CHECK_ERR(rel_err_f(dx, dxr, nx), 1e-5, "conv2d bwd_input");
        assert_int_equal(ps_cpu_conv2d_bwd_weight(g, x, dy, dw, work), 0);
        CHECK_ERR(rel_err_f(dw, dwr, nw), 1e-5, "conv2d bwd_weight");
        free(x), free(w), free(y), free(dy), free(dx), free(dw), free(xd), free(wd), free(dyd);
        free(yr), free(dxr), free(dwr), free(work);
    }
    ps_cpu_conv bad = {1, 1, 2, 2, 1, 3, 3, 1, 0};
    float z[4] = {1, 2, 3, 4}, wt[9] = {0}, out[4];
    assert_int_equal(ps_cpu_conv2d_fwd(&bad, z, wt, out, NULL), -1);
}

static void test_elementwise(void **state)
{
    (void)state;
    size_t n = 1003;
    float *a = frand(n), *b = frand(n), *y = frand(n);
    for (size_t i = 0; i < n; i++)
        a[i] *= 4;
    double *ref = malloc(n * sizeof *ref);
    const char *names[] = {"relu", "gelu", "tanh", "sigmoid", "add", "mul"};
    for (int op = 0; op < 6; op++) {
        assert_int_equal(ps_cpu_ew_parse(names[op]), op);
        for (size_t i = 0; i < n; i++) {
            double x = a[i], z = b[i];
            ref[i] = op == 0   ? (x > 0 ? x : 0)
                     : op == 1 ? 0.5 * x * (1 + erf(x / sqrt(2.0)))
                     : op == 2 ? tanh(x)
                     : op == 3 ? 1 / (1 + exp(-x))
                     : op == 4 ? x + z
                               : x * z;
        }
        ps_cpu_elementwise((ps_cpu_ew_op)op, n, a, b, y);
        CHECK_ERR(rel_err_f(y, ref, n), 1e-6, names[op]);
        assert_int_equal(ps_cpu_ew_is_binary((ps_cpu_ew_op)op), op >= 4);
    }
    /* in place */
    memcpy(y, a, n * sizeof *y);
    ps_cpu_elementwise(PS_CPU_EW_TANH, n, y, NULL, y);
    for (size_t i = 0; i < n; i++)
        ref[i] = tanh((double)a[i]);
    CHECK_ERR(rel_err_f(y, ref, n), 1e-6, "tanh in place");
    assert_int_equal(ps_cpu_ew_parse("swish"), -1);
    free(a), free(b), free(y), free(ref);
}

static void test_reductions(void **state)
{
    (void)state;
    int64_t rows = 7, cols = 300;
    size_t n = (size_t)(rows * cols);
    float *x = frand(n), *y = frand(n), *g = frand((size_t)cols), *bt = frand((size_t)cols);
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] * 5 + 3; /* offset: a naive one-pass variance would suffer */
    double *ref = malloc(n * sizeof *ref);
    /* softmax */
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, s = 0;
        for (int64_t c = 0; c < cols; c++)
            mx = fmax(mx, x[r * cols + c]);
        for (int64_t c = 0; c < cols; c++)
            s += exp(x[r * cols + c] - mx);
        for (int64_t c = 0; c < cols; c++)
            ref[r * cols + c] = exp(x[r * cols + c] - mx) / s;
    }
    ps_cpu_reduction(PS_CPU_RED_SOFTMAX, rows, cols, x, NULL, NULL, y);
    CHECK_ERR(rel_err_f(y, ref, n), 1e-5, "softmax");
    /* layernorm, with and without affine parameters */
    for (int affine = 0; affine < 2; affine++) {
        for (int64_t r = 0; r < rows; r++) {
            double m = 0, v = 0;
            for (int64_t c = 0; c < cols; c++)
                m += x[r * cols + c];
            m /= cols;
            for (int64_t c = 0; c < cols; c++)
                v += (x[r * cols + c] - m) * (x[r * cols + c] - m);
            v /= cols;
            for (int64_t c = 0; c < cols; c++) {
                double z = (x[r * cols + c] - m) / sqrt(v + 1e-5);
                ref[r * cols + c] = affine ? z * g[c] + bt[c] : z;
            }
        }
        ps_cpu_reduction(PS_CPU_RED_LAYERNORM, rows, cols, x, affine ? g : NULL,
                         affine ? bt : NULL, y);
        CHECK_ERR(rel_err_f(y, ref, n), 2e-5, "layernorm");
    }
    /* sum */
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < cols; c++)
            s += x[r * cols + c];
        ref[r] = s;
    }
    ps_cpu_reduction(PS_CPU_RED_SUM, rows, cols, x, NULL, NULL, y);
    CHECK_ERR(rel_err_f(y, ref, (size_t)rows), 1e-6, "sum");
    assert_int_equal(ps_cpu_red_parse("layernorm"), PS_CPU_RED_LAYERNORM);
    assert_int_equal(ps_cpu_red_parse("max"), -1);
    free(x), free(y), free(g), free(bt), free(ref);
}

static void test_embedding_bag(void **state)
{
    (void)state;
    int64_t rows = 50, dim = 17, bag = 6, batch = 9;
    float *table = frand((size_t)(rows * dim)), *out = frand((size_t)(batch * dim));
    int64_t *idx = malloc((size_t)(batch * bag) * sizeof *idx);
    for (int64_t i = 0; i < batch * bag; i++)
        idx[i] = (int64_t)(urand() * (double)rows);
    double *ref = malloc((size_t)(batch * dim) * sizeof *ref);
    for (int mean = 0; mean < 2; mean++) {
        for (int64_t i = 0; i < batch; i++)
            for (int64_t c = 0; c < dim; c++) {
                double s = 0;
                for (int64_t j = 0; j < bag; j++)
                    s += table[idx[i * bag + j] * dim + c];
                ref[i * dim + c] = mean ? s / bag : s;
            }
        assert_int_equal(ps_cpu_embedding_bag(rows, dim, bag, batch, table, idx, mean, out), 0);
        CHECK_ERR(rel_err_f(out, ref, (size_t)(batch * dim)), 1e-6, "embedding_bag");
    }
    idx[5] = rows; /* out of range */
    assert_int_equal(ps_cpu_embedding_bag(rows, dim, bag, batch, table, idx, 0, out), -1);
    free(table), free(out), free(idx), free(ref);
}

static void test_memcpy_threads(void **state)
{
    (void)state;
    char src[1000], dst[1000];
    for (int i = 0; i < 1000; i++)
        src[i] = (char)(i * 7);
    ps_cpu_memcpy(dst, src, sizeof src);
    assert_memory_equal(dst, src, sizeof src);
    int old = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(1);
    assert_int_equal(ps_cpu_blas_threads(), 1);
    ps_cpu_blas_set_threads(old);
    assert_non_null(ps_cpu_blas_config());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm),
        cmocka_unit_test(test_dgemm_and_beta),
        cmocka_unit_test(test_batched_gemm),
        cmocka_unit_test(test_attention_masks),
        cmocka_unit_test(test_attention_empty_row),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_embedding_bag),
        cmocka_unit_test(test_memcpy_threads),
        cmocka_unit_test(test_blas_selfcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
