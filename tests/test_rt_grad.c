/* real/ layers: every backward against central finite differences in
 * float64 (loss = <y, R> for a fixed random R, so dy = R), forward
 * references (conv vs a direct loop, convT as conv's adjoint, f32 vs f64),
 * accumulate semantics, the optimizers against hand-computed steps, weights
 * on disk (round trip, corruption, shape mismatch, truncation) and the
 * wrappers' shape errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "real/rt.h"

static rt_rng g_rng;

#include "tests/rt_testutil.h"

static rt_tensor mk(rt_dtype dt, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    rt_tensor t;
    int64_t s[4] = {a, b, c, d};
    OK(rt_tensor_alloc(&t, rt_cpu(), dt, ndim, s, E));
    return t;
}

static rt_tensor rnd(int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    rt_tensor t = mk(RT_F64, ndim, a, b, c, d);
    OK(rt_init_uniform(&t, &g_rng, -1, 1, E));
    return t;
}

static double dot(const rt_tensor *a, const rt_tensor *b)
{
    const double *p = rt_f64(a), *q = rt_f64(b);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal(a->numel, b->numel);
    double s = 0;
    for (int64_t i = 0; i < a->numel; i++)
        s += p[i] * q[i];
    return s;
}

/* max |a - b| / max |b| */
static double rel(const double *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= num))
            num = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return num / (den > 0 ? den : 1e-300);
}

typedef double (*lossfn)(void *ctx);

/* Central differences of L with respect to every element of p, against the
 * analytic gradient grad. */
static void fd_check(const char *what, lossfn L, void *ctx, rt_tensor *p, const rt_tensor *grad,
                     double tol)
{
    double *x = rt_f64(p);
    const double *g = rt_f64(grad);
    assert_non_null(x);
    assert_non_null(g);
    assert_int_equal(p->numel, grad->numel);
    double *fd = malloc((size_t)p->numel * sizeof *fd);
    assert_non_null(fd);
    const double h = 1e-6;
    for (int64_t i = 0; i < p->numel; i++) {
        double s = x[i];
        x[i] = s + h;
        double lp = L(ctx);
        x[i] = s - h;
        double lm = L(ctx);
        x[i] = s;
        fd[i] = (lp - lm) / (2 * h);
    }
    L(ctx); /* leave the outputs of the unperturbed inputs behind */
    double r = rel(g, fd, p->numel);
    free(fd);
    if (!(r <= tol))
        fail_msg("%s: analytic vs finite-difference gradient: relative error %.3g > %.3g", what, r,
                 tol);
}

/* ------------------------------------------------------------------ linear */

typedef struct lin_ctx {
    rt_tensor x, w, b, y, R;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    OK(rt_linear_fwd(&c->x, &c->w, &c->b, &c->y, E));
    return dot(&c->y, &c->R);
}

static void test_linear(void **state)
{
    (void)state;
    lin_ctx c;
    c.x = rnd(3, 2, 3, 4, 0); /* leading dims [2, 3] flattened */
    c.w = rnd(2, 5, 4, 0, 0);
    c.b = rnd(1, 5, 0, 0, 0);
    c.y = mk(RT_F64, 3, 2, 3, 5, 0);
    c.R = rnd(3, 2, 3, 5, 0);
    rt_tensor dx = mk(RT_F64, 3, 2, 3, 4, 0), dw = mk(RT_F64, 2, 5, 4, 0, 0),
              db = mk(RT_F64, 1, 5, 0, 0, 0);
    /* forward reference */
    lin_loss(&c);
    const double *x = rt_f64(&c.x), *w = rt_f64(&c.w), *b = rt_f64(&c.b), *y = rt_f64(&c.y);
    for (int i = 0; i < 6; i++)
        for (int o = 0; o < 5; o++) {
            double s = b[o];
            for (int k = 0; k < 4; k++)
                s += x[i * 4 + k] * w[o * 4 + k];
            assert_true(fabs(s - y[i * 5 + o]) < 1e-12);
        }
    OK(rt_linear_bwd(&c.x, &c.w, &c.R, &dx, &dw, &db, E));
    fd_check("linear dx", lin_loss, &c, &c.x, &dx, 1e-6);
    fd_check("linear dw", lin_loss, &c, &c.w, &dw, 1e-6);
    fd_check("linear db", lin_loss, &c, &c.b, &db, 1e-6);
    /* accumulate: a second call doubles dw and db, dx is overwritten */
    rt_tensor dw1 = mk(RT_F64, 2, 5, 4, 0, 0), dx1 = mk(RT_F64, 3, 2, 3, 4, 0);
    OK(rt_tensor_copy(&dw1, &dw, E));
    OK(rt_tensor_copy(&dx1, &dx, E));
    OK(rt_linear_bwd(&c.x, &c.w, &c.R, &dx, &dw, &db, E));
    OK(rt_scale(&dw1, 2.0, E));
    assert_true(rel(rt_f64(&dw), rt_f64(&dw1), dw.numel) < 1e-14);
    assert_true(rel(rt_f64(&dx), rt_f64(&dx1), dx.numel) < 1e-14);
    /* NULL gradients are skipped; no bias */
    OK(rt_linear_bwd(&c.x, &c.w, &c.R, NULL, NULL, NULL, E));
    OK(rt_linear_fwd(&c.x, &c.w, NULL, &c.y, E));
    FREE_TENSORS(&c.x, &c.w, &c.b, &c.y, &c.R, &dx, &dw, &db, &dw1, &dx1);
}

/* ------------------------------------------------------------------ conv2d */

typedef struct conv_ctx {
    rt_conv g;
    rt_tensor x, w, b, y, R;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    OK(rt_conv2d_fwd(&c->g, &c->x, &c->w, &c->b, &c->y, E));
    return dot(&c->y, &c->R);
}

/* Direct convolution. */
static void conv_ref(const rt_conv *g, const rt_tensor *xt, const rt_tensor *wt,
                     const rt_tensor *bt, double *y, int64_t oh, int64_t ow)
{
    const double *x = rt_f64(xt), *w = rt_f64(wt), *b = bt ? rt_f64(bt) : NULL;
    int64_t N = xt->shape[0], C = xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    int64_t K = wt->shape[0], R = wt->shape[2], S = wt->shape[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double s = b ? b[k] : 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t q = 0; q < S; q++) {
                                int64_t iy = oy * g->stride + r - g->pad;
                                int64_t ix = ox * g->stride + q - g->pad;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                    s += x[((n * C + c) * H + iy) * W + ix] *
                                         w[((k * C + c) * R + r) * S + q];
                            }
                    y[((n * K + k) * oh + oy) * ow + ox] = s;
                }
}

static void conv_case(int stride, int pad, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K,
                      int64_t R, int64_t S)
{
    conv_ctx c;
    c.g = (rt_conv){stride, pad};
    int64_t oh = (H + 2 * pad - R) / stride + 1, ow = (W + 2 * pad - S) / stride + 1;
    c.x = rnd(4, N, C, H, W);
    c.w = rnd(4, K, C, R, S);
    c.b = rnd(1, K, 0, 0, 0);
    c.y = mk(RT_F64, 4, N, K, oh, ow);
    c.R = rnd(4, N, K, oh, ow);
    rt_tensor dx = mk(RT_F64, 4, N, C, H, W), dw = mk(RT_F64, 4, K, C, R, S),
              db = mk(RT_F64, 1, K, 0, 0, 0);
    conv_loss(&c);
    double *ref = malloc((size_t)c.y.numel * sizeof *ref);
    assert_non_null(ref);
    conv_ref(&c.g, &c.x, &c.w, &c.b, ref, oh, ow);
    double r = rel(rt_f64(&c.y), ref, c.y.numel);
    if (!(r < 1e-13))
        fail_msg("conv2d stride %d pad %d: forward vs direct loop: %.3g", stride, pad, r);
    free(ref);
    OK(rt_conv2d_bwd(&c.g, &c.x, &c.w, &c.R, &dx, &dw, &db, E));
    fd_check("conv2d dx", conv_loss, &c, &c.x, &dx, 1e-6);
    fd_check("conv2d dw", conv_loss, &c, &c.w, &dw, 1e-6);
    fd_check("conv2d db", conv_loss, &c, &c.b, &db, 1e-6);
    /* accumulate */
    rt_tensor dw1 = mk(RT_F64, 4, K, C, R, S), db1 = mk(RT_F64, 1, K, 0, 0, 0);
    OK(rt_tensor_copy(&dw1, &dw, E));
    OK(rt_tensor_copy(&db1, &db, E));
    OK(rt_conv2d_bwd(&c.g, &c.x, &c.w, &c.R, NULL, &dw, &db, E));
    OK(rt_scale(&dw1, 2, E));
    OK(rt_scale(&db1, 2, E));
    assert_true(rel(rt_f64(&dw), rt_f64(&dw1), dw.numel) < 1e-13);
    assert_true(rel(rt_f64(&db), rt_f64(&db1), db.numel) < 1e-13);
    FREE_TENSORS(&c.x, &c.w, &c.b, &c.y, &c.R, &dx, &dw, &db, &dw1, &db1);
}

static void test_conv2d(void **state)
{
    (void)state;
    conv_case(2, 1, 2, 3, 7, 6, 4, 3, 3);
    conv_case(1, 0, 3, 2, 5, 6, 3, 2, 3);
    conv_case(1, 2, 2, 2, 4, 4, 2, 3, 3); /* pad wider than needed */
    conv_case(3, 1, 1, 2, 8, 7, 2, 3, 2); /* one image, stride 3 */
    /* stride 1 keeping the width (the contiguous im2col / col2im path) */
    conv_case(1, 1, 2, 3, 5, 6, 4, 3, 3);
    conv_case(1, 2, 2, 2, 6, 5, 3, 5, 5);
    conv_case(1, 1, 2, 2, 6, 5, 3, 5, 3); /* rows shrink, width kept */
    conv_case(1, 0, 2, 2, 3, 4, 2, 1, 1); /* 1x1 */
}

/* ------------------------------------------------------------------ convt2d */

typedef struct convt_ctx {
    rt_convt g;
    rt_tensor x, w, b, y, R;
} convt_ctx;

static double convt_loss(void *p)
{
    convt_ctx *c = p;
    OK(rt_convt2d_fwd(&c->g, &c->x, &c->w, &c->b, &c->y, E));
    return dot(&c->y, &c->R);
}

static void convt_case(int stride, int pad, int out_pad, int64_t N, int64_t C, int64_t H,
                       int64_t W, int64_t K, int64_t R, int64_t S)
{
    convt_ctx c;
    c.g = (rt_convt){stride, pad, out_pad};
    int64_t oh = (H - 1) * stride - 2 * pad + R + out_pad;
    int64_t ow = (W - 1) * stride - 2 * pad + S + out_pad;
    c.x = rnd(4, N, C, H, W);
    c.w = rnd(4, C, K, R, S);
    c.b = rnd(1, K, 0, 0, 0);
    c.y = mk(RT_F64, 4, N, K, oh, ow);
    c.R = rnd(4, N, K, oh, ow);
    rt_tensor dx = mk(RT_F64, 4, N, C, H, W), dw = mk(RT_F64, 4, C, K, R, S),
              db = mk(RT_F64, 1, K, 0, 0, 0);
    /* adjoint of conv2d: <conv(z), x> == <z, convT(x)> (no bias) */
    rt_tensor z = rnd(4, N, K, oh, ow), cz = mk(RT_F64, 4, N, C, H, W);
    rt_conv cg = {stride, pad};
    OK(rt_conv2d_fwd(&cg, &z, &c.w, NULL, &cz, E));
    OK(rt_convt2d_fwd(&c.g, &c.x, &c.w, NULL, &c.y, E));
    double lhs = dot(&cz, &c.x), rhs = dot(&z, &c.y);
    if (!(fabs(lhs - rhs) <= 1e-12 * (fabs(lhs) + 1)))
        fail_msg("convT is not conv's adjoint: %.17g vs %.17g", lhs, rhs);
    /* the bias adds b[k] to every output pixel */
    rt_tensor y0 = mk(RT_F64, 4, N, K, oh, ow);
    OK(rt_tensor_copy(&y0, &c.y, E));
    convt_loss(&c);
    const double *y = rt_f64(&c.y), *yb = rt_f64(&y0), *b = rt_f64(&c.b);
    for (int64_t i = 0; i < c.y.numel; i++)
        assert_true(fabs(y[i] - yb[i] - b[(i / (oh * ow)) % K]) < 1e-12);
    OK(rt_convt2d_bwd(&c.g, &c.x, &c.w, &c.R, &dx, &dw, &db, E));
    fd_check("convt2d dx", convt_loss, &c, &c.x, &dx, 1e-6);
    fd_check("convt2d dw", convt_loss, &c, &c.w, &dw, 1e-6);
    fd_check("convt2d db", convt_loss, &c, &c.b, &db, 1e-6);
    rt_tensor dw1 = mk(RT_F64, 4, C, K, R, S);
    OK(rt_tensor_copy(&dw1, &dw, E));
    OK(rt_convt2d_bwd(&c.g, &c.x, &c.w, &c.R, NULL, &dw, NULL, E));
    OK(rt_scale(&dw1, 2, E));
    assert_true(rel(rt_f64(&dw), rt_f64(&dw1), dw.numel) < 1e-13);
    FREE_TENSORS(&c.x, &c.w, &c.b, &c.y, &c.R, &dx, &dw, &db, &z, &cz, &y0, &dw1);
}

static void test_convt2d(void **state)
{
    (void)state;
    convt_case(2, 1, 1, 2, 3, 4, 3, 2, 3, 3); /* DCGAN-like: 4x3 -> 8x6 */
    convt_case(2, 0, 0, 2, 2, 3, 3, 3, 4, 4);
    convt_case(1, 1, 0, 1, 2, 4, 5, 2, 3, 2);
    convt_case(3, 1, 2, 2, 2, 3, 2, 2, 3, 3);
    convt_case(1, 1, 0, 2, 2, 4, 5, 3, 3, 3); /* width kept: contiguous path */
}

/* ------------------------------------------------------------------ pooling */

typedef struct pool_ctx {
    int max, k, s;
    rt_tensor x, y, am, R;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    if (c->max)
        OK(rt_maxpool2d_fwd(c->k, c->s, &c->x, &c->y, &c->am, E));
    else
        OK(rt_avgpool2d_fwd(c->k, c->s, &c->x, &c->y, E));
    return dot(&c->y, &c->R);
}

static void pool_case(int max, int k, int s, int64_t N, int64_t C, int64_t H, int64_t W)
{
    pool_ctx c = {.max = max, .k = k, .s = s};
    int64_t oh = (H - k) / s + 1, ow = (W - k) / s + 1;
    c.x = mk(RT_F64, 4, N, C, H, W);
    /* distinct values at least 1e-3 apart: no ties, far from kinks */
    double *x = rt_f64(&c.x);
    for (int64_t i = 0; i < c.x.numel; i++)
        x[i] = (double)((i * 7919) % c.x.numel) * 1e-2 - 0.3;
    c.y = mk(RT_F64, 4, N, C, oh, ow);
    c.am = mk(RT_I32, 4, N, C, oh, ow);
    c.R = rnd(4, N, C, oh, ow);
    rt_tensor dx = mk(RT_F64, 4, N, C, H, W);
    pool_loss(&c);
    /* forward reference */
    const double *y = rt_f64(&c.y);
    for (int64_t q = 0; q < N * C; q++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                double m = max ? -INFINITY : 0;
                for (int dy = 0; dy < k; dy++)
                    for (int dxx = 0; dxx < k; dxx++) {
                        double v = x[(q * H + oy * s + dy) * W + ox * s + dxx];
                        m = max ? fmax(m, v) : m + v / (k * k);
                    }
                assert_true(fabs(m - y[(q * oh + oy) * ow + ox]) < 1e-13);
            }
    if (max)
        OK(rt_maxpool2d_bwd(k, s, &c.am, &c.R, &dx, E));
    else
        OK(rt_avgpool2d_bwd(k, s, &c.R, &dx, E));
    fd_check(max ? "maxpool dx" : "avgpool dx", pool_loss, &c, &c.x, &dx, 1e-6);
    FREE_TENSORS(&c.x, &c.y, &c.am, &c.R, &dx);
}

static void test_pool(void **state)
{
    (void)state;
    pool_case(1, 2, 2, 2, 3, 6, 5);
    pool_case(1, 3, 2, 1, 2, 7, 7); /* overlapping windows */
    pool_case(1, 2, 2, 2, 2, 4, 6); /* windows tile the plane */
    pool_case(0, 2, 2, 2, 2, 4, 6);
    pool_case(0, 3, 1, 1, 2, 5, 4);
    /* ties go to the first position in the window */
    rt_tensor x = mk(RT_F32, 4, 1, 1, 2, 2), y = mk(RT_F32, 4, 1, 1, 1, 1),
              am = mk(RT_I32, 4, 1, 1, 1, 1);
    OK(rt_tensor_fill(&x, 3.0, E));
    OK(rt_maxpool2d_fwd(2, 2, &x, &y, &am, E));
    assert_int_equal(rt_i32(&am)[0], 0);
    rt_f32(&x)[3] = 4.0f;
    OK(rt_maxpool2d_fwd(2, 2, &x, &y, &am, E));
    assert_int_equal(rt_i32(&am)[0], 3);
    assert_true(rt_f32(&y)[0] == 4.0f);
    rt_tensor_free(&x);
    rt_tensor_free(&y);
    rt_tensor_free(&am);
}

/* ------------------------------------------------------------------ activations */

typedef struct act_ctx {
    rt_act a;
    double alpha;
    rt_tensor x, y, R;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    OK(rt_act_fwd(c->a, c->alpha, &c->x, &c->y, E));
    return dot(&c->y, &c->R);
}

static void test_act(void **state)
{
    (void)state;
    for (int a = 0; a < RT_ACT_COUNT; a++) {
        act_ctx c = {.a = (rt_act)a, .alpha = 0.1};
        c.x = rnd(2, 4, 9, 0, 0);
        double *x = rt_f64(&c.x);
        for (int64_t i = 0; i < c.x.numel; i++) /* away from 0 (relu's kink) */
            x[i] = 3 * x[i] + (x[i] >= 0 ? 0.1 : -0.1);
        c.y = mk(RT_F64, 2, 4, 9, 0, 0);
        c.R = rnd(2, 4, 9, 0, 0);
        rt_tensor dx = mk(RT_F64, 2, 4, 9, 0, 0);
        act_loss(&c);
        const double *y = rt_f64(&c.y);
        for (int64_t i = 0; i < c.x.numel; i++) {
            double v = x[i], ref = 0;
            switch (a) {
            case RT_RELU: ref = v > 0 ? v : 0; break;
            case RT_LEAKY_RELU: ref = v > 0 ? v : 0.1 * v; break;
            case RT_GELU: ref = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
            case RT_TANH: ref = tanh(v); break;
            default: ref = 1 / (1 + exp(-v)); break;
            }
            assert_true(fabs(ref - y[i]) < 1e-14);
        }
        OK(rt_act_bwd(c.a, c.alpha, &c.x, &c.y, &c.R, &dx, E));
        char what[64];
        snprintf(what, sizeof what, "act %s", rt_act_name(c.a));
        fd_check(what, act_loss, &c, &c.x, &dx, 1e-6);
        /* dx may alias dy */
        rt_tensor dd = mk(RT_F64, 2, 4, 9, 0, 0);
        OK(rt_tensor_copy(&dd, &c.R, E));
        OK(rt_act_bwd(c.a, c.alpha, &c.x, &c.y, &dd, &dd, E));
        assert_true(rel(rt_f64(&dd), rt_f64(&dx), dx.numel) < 1e-15);
        assert_int_equal(rt_act_parse(rt_act_name(c.a)), a);
        FREE_TENSORS(&c.x, &c.y, &c.R, &dx, &dd);
    }
    assert_int_equal(rt_act_parse("swish"), -1);
}

/* ------------------------------------------------------------------ batchnorm */

typedef struct bn_ctx {
    rt_bn g;
    rt_tensor x, gamma, beta, rm, rv, y, mean, rstd, R;
} bn_ctx;

static double bn_loss(void *p)
{
    bn_ctx *c = p;
    OK(rt_batchnorm_fwd(&c->g, &c->x, &c->gamma, &c->beta, &c->rm, &c->rv, &c->y, &c->mean,
                        &c->rstd, E));
    return dot(&c->y, &c->R);
}

static void bn_case(int training, int ndim, int64_t N, int64_t C, int64_t H, int64_t W)
{
    bn_ctx c;
    c.g = (rt_bn){1e-5, 0.1, training};
    c.x = rnd(ndim, N, C, H, W);
    c.gamma = rnd(1, C, 0, 0, 0);
    c.beta = rnd(1, C, 0, 0, 0);
    c.rm = rnd(1, C, 0, 0, 0);
    c.rv = mk(RT_F64, 1, C, 0, 0, 0);
    OK(rt_init_uniform(&c.rv, &g_rng, 0.5, 1.5, E));
    c.y = mk(RT_F64, ndim, N, C, H, W);
    c.mean = mk(RT_F64, 1, C, 0, 0, 0);
    c.rstd = mk(RT_F64, 1, C, 0, 0, 0);
    c.R = rnd(ndim, N, C, H, W);
    const int64_t hw = ndim == 4 ? H * W : 1, M = N * hw;
    double rm0[8], rv0[8];
    memcpy(rm0, rt_f64(&c.rm), (size_t)C * sizeof(double));
    memcpy(rv0, rt_f64(&c.rv), (size_t)C * sizeof(double));
    bn_loss(&c);
    /* statistics and running stats by hand */
    const double *x = rt_f64(&c.x), *y = rt_f64(&c.y), *ga = rt_f64(&c.gamma),
                 *be = rt_f64(&c.beta);
    for (int64_t ch = 0; ch < C; ch++) {
        double s = 0, ss = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t p = 0; p < hw; p++)
                s += x[(n * C + ch) * hw + p];
        double mu = s / M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t p = 0; p < hw; p++)
                ss += pow(x[(n * C + ch) * hw + p] - mu, 2);
        double var = ss / M, m_used = mu, v_used = var;
        if (training) {
            assert_true(fabs(rt_f64(&c.rm)[ch] - (0.9 * rm0[ch] + 0.1 * mu)) < 1e-14);
            assert_true(fabs(rt_f64(&c.rv)[ch] - (0.9 * rv0[ch] + 0.1 * ss / (M - 1))) < 1e-14);
        } else {
            assert_true(rt_f64(&c.rm)[ch] == rm0[ch] && rt_f64(&c.rv)[ch] == rv0[ch]);
            m_used = rm0[ch];
            v_used = rv0[ch];
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t i = (n * C + ch) * hw + p;
                double ref = (x[i] - m_used) / sqrt(v_used + 1e-5) * ga[ch] + be[ch];
                assert_true(fabs(ref - y[i]) < 1e-12);
            }
    }
    rt_tensor dx = mk(RT_F64, ndim, N, C, H, W), dg = mk(RT_F64, 1, C, 0, 0, 0),
              db = mk(RT_F64, 1, C, 0, 0, 0);
    OK(rt_batchnorm_bwd(&c.g, &c.x, &c.gamma, &c.mean, &c.rstd, &c.R, &dx, &dg, &db, E));
    const char *tag = training ? "batchnorm train" : "batchnorm eval";
    char what[64];
    snprintf(what, sizeof what, "%s %dD dx", tag, ndim);
    fd_check(what, bn_loss, &c, &c.x, &dx, 1e-6);
    snprintf(what, sizeof what, "%s %dD dgamma", tag, ndim);
    fd_check(what, bn_loss, &c, &c.gamma, &dg, 1e-6);
    snprintf(what, sizeof what, "%s %dD dbeta", tag, ndim);
    fd_check(what, bn_loss, &c, &c.beta, &db, 1e-6);
    /* dgamma, dbeta accumulate; dx is overwritten */
    rt_tensor dg1 = mk(RT_F64, 1, C, 0, 0, 0), dx1 = mk(RT_F64, ndim, N, C, H, W);
    OK(rt_tensor_copy(&dg1, &dg, E));
    OK(rt_tensor_copy(&dx1, &dx, E));
    OK(rt_batchnorm_bwd(&c.g, &c.x, &c.gamma, &c.mean, &c.rstd, &c.R, &dx, &dg, NULL, E));
    OK(rt_scale(&dg1, 2, E));
    assert_true(rel(rt_f64(&dg), rt_f64(&dg1), C) < 1e-14);
    assert_true(rel(rt_f64(&dx), rt_f64(&dx1), dx.numel) < 1e-14);
    rt_tensor_free(&dg1);
    rt_tensor_free(&dx1);
    FREE_TENSORS(&c.x, &c.gamma, &c.beta, &c.rm, &c.rv, &c.y, &c.mean, &c.rstd, &c.R, &dx, &dg,
                 &db);
}

static void test_batchnorm(void **state)
{
    (void)state;
    bn_case(1, 2, 6, 3, 0, 0);
    bn_case(1, 4, 3, 2, 3, 2);
    bn_case(0, 2, 5, 3, 0, 0);
    bn_case(0, 4, 2, 3, 2, 3);
}

/* ------------------------------------------------------------------ losses */

typedef struct xent_ctx {
    rt_tensor x, lab, probs;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    double l;
    OK(rt_softmax_xent_fwd(&c->x, &c->lab, &c->probs, &l, E));
    return l;
}

static void test_losses(void **state)
{
    (void)state;
    xent_ctx c;
    c.x = rnd(2, 5, 4, 0, 0);
    OK(rt_scale(&c.x, 3, E));
    c.lab = mk(RT_I32, 1, 5, 0, 0, 0);
    int32_t lab[5] = {2, -1, 0, 3, 3};
    OK(rt_tensor_from_host(&c.lab, lab, E));
    c.probs = mk(RT_F64, 2, 5, 4, 0, 0);
    double l = xent_loss(&c);
    /* closed form over the 4 counted rows */
    const double *x = rt_f64(&c.x);
    double ref = 0;
    for (int i = 0; i < 5; i++) {
        if (lab[i] < 0)
            continue;
        double s = 0;
        for (int j = 0; j < 4; j++)
            s += exp(x[i * 4 + j]);
        ref += log(s) - x[i * 4 + lab[i]];
    }
    assert_true(fabs(l - ref / 4) < 1e-13);
    rt_tensor sm = mk(RT_F64, 2, 5, 4, 0, 0);
    OK(rt_softmax_fwd(&c.x, &sm, E));
    assert_true(rel(rt_f64(&sm), rt_f64(&c.probs), sm.numel) < 1e-15);
    rt_tensor dl = mk(RT_F64, 2, 5, 4, 0, 0);
    OK(rt_softmax_xent_bwd(&c.probs, &c.lab, 1.0, &dl, E));
    fd_check("softmax_xent dlogits", xent_loss, &c, &c.x, &dl, 1e-6);
    for (int j = 0; j < 4; j++) /* the ignored row has no gradient */
        assert_true(rt_f64(&dl)[4 + j] == 0);
    rt_tensor dl2 = mk(RT_F64, 2, 5, 4, 0, 0);
    OK(rt_softmax_xent_bwd(&c.probs, &c.lab, 2.5, &dl2, E));
    OK(rt_scale(&dl, 2.5, E));
    assert_true(rel(rt_f64(&dl2), rt_f64(&dl), dl.numel) < 1e-14);
    /* a label out of range names it */
    ps_err e = {0};
    lab[3] = 4;
    OK(rt_tensor_from_host(&c.lab, lab, E));
    assert_int_equal(rt_softmax_xent_fwd(&c.x, &c.lab, &c.probs, &l, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "labels[3] = 4"));

    /* mse */
    rt_tensor a = rnd(2, 3, 4, 0, 0), t = rnd(2, 3, 4, 0, 0), da = mk(RT_F64, 2, 3, 4, 0, 0);
    double m;
    OK(rt_mse_fwd(&a, &t, &m, E));
    double mr = 0;
    for (int i = 0; i < 12; i++)
        mr += pow(rt_f64(&a)[i] - rt_f64(&t)[i], 2);
    assert_true(fabs(m - mr / 12) < 1e-15);
    OK(rt_mse_bwd(&a, &t, 3.0, &da, E));
    for (int i = 0; i < 12; i++)
        assert_true(fabs(rt_f64(&da)[i] - 3.0 * 2 * (rt_f64(&a)[i] - rt_f64(&t)[i]) / 12) <
                    1e-15);
    FREE_TENSORS(&c.x, &c.lab, &c.probs, &sm, &dl, &dl2, &a, &t, &da);
}

/* ------------------------------------------------------------------ f32 vs f64 */

static rt_tensor to32(const rt_tensor *t)
{
    rt_tensor o;
    OK(rt_tensor_alloc(&o, rt_cpu(), RT_F32, t->ndim, t->shape, E));
    for (int64_t i = 0; i < t->numel; i++)
        rt_f32(&o)[i] = (float)rt_f64(t)[i];
    return o;
}

static double rel32(const rt_tensor *a32, const rt_tensor *b64)
{
    double *d = malloc((size_t)a32->numel * sizeof *d);
    assert_non_null(d);
    for (int64_t i = 0; i < a32->numel; i++)
        d[i] = rt_f32(a32)[i];
    double r = rel(d, rt_f64(b64), a32->numel);
    free(d);
    return r;
}

static void test_f32_f64(void **state)
{
    (void)state;
    /* conv + bias, then batchnorm (train), relu, maxpool, convT, linear: each
     * layer in f32 on the f32-rounded inputs vs f64 */
    rt_conv g = {1, 1};
    rt_tensor x = rnd(4, 4, 3, 8, 8), w = rnd(4, 5, 3, 3, 3), b = rnd(1, 5, 0, 0, 0);
    rt_tensor y = mk(RT_F64, 4, 4, 5, 8, 8);
    rt_tensor x32 = to32(&x), w32 = to32(&w), b32 = to32(&b), y32 = mk(RT_F32, 4, 4, 5, 8, 8);
    /* f64 on the rounded values, so only the arithmetic differs */
    for (int64_t i = 0; i < x.numel; i++)
        rt_f64(&x)[i] = rt_f32(&x32)[i];
    for (int64_t i = 0; i < w.numel; i++)
        rt_f64(&w)[i] = rt_f32(&w32)[i];
    for (int64_t i = 0; i < b.numel; i++)
        rt_f64(&b)[i] = rt_f32(&b32)[i];
    OK(rt_conv2d_fwd(&g, &x, &w, &b, &y, E));
    OK(rt_conv2d_fwd(&g, &x32, &w32, &b32, &y32, E));
    assert_true(rel32(&y32, &y) < 1e-5);
    rt_tensor dx = mk(RT_F64, 4, 4, 3, 8, 8), dw = mk(RT_F64, 4, 5, 3, 3, 3),
              dx32 = mk(RT_F32, 4, 4, 3, 8, 8), dw32 = mk(RT_F32, 4, 5, 3, 3, 3);
    OK(rt_conv2d_bwd(&g, &x, &w, &y, &dx, &dw, NULL, E));
    OK(rt_conv2d_bwd(&g, &x32, &w32, &y32, &dx32, &dw32, NULL, E));
    assert_true(rel32(&dx32, &dx) < 1e-5);
    assert_true(rel32(&dw32, &dw) < 1e-5);
    rt_bn bn = {1e-5, 0.1, 1};
    rt_tensor z = mk(RT_F64, 4, 4, 5, 8, 8), z32 = mk(RT_F32, 4, 4, 5, 8, 8);
    rt_tensor mu = mk(RT_F64, 1, 5, 0, 0, 0), rs = mk(RT_F64, 1, 5, 0, 0, 0),
              mu32 = mk(RT_F32, 1, 5, 0, 0, 0), rs32 = mk(RT_F32, 1, 5, 0, 0, 0);
    OK(rt_batchnorm_fwd(&bn, &y, NULL, NULL, NULL, NULL, &z, &mu, &rs, E));
    OK(rt_batchnorm_fwd(&bn, &y32, NULL, NULL, NULL, NULL, &z32, &mu32, &rs32, E));
    assert_true(rel32(&z32, &z) < 1e-5);
    rt_convt gt = {2, 1, 1};
    rt_tensor wt = rnd(4, 5, 2, 3, 3), wt32 = to32(&wt);
    for (int64_t i = 0; i < wt.numel; i++)
        rt_f64(&wt)[i] = rt_f32(&wt32)[i];
    rt_tensor u = mk(RT_F64, 4, 4, 2, 16, 16), u32 = mk(RT_F32, 4, 4, 2, 16, 16);
    OK(rt_convt2d_fwd(&gt, &y, &wt, NULL, &u, E));
    OK(rt_convt2d_fwd(&gt, &y32, &wt32, NULL, &u32, E));
    assert_true(rel32(&u32, &u) < 1e-5);
    rt_tensor lw = rnd(2, 7, 64, 0, 0), lw32 = to32(&lw);
    for (int64_t i = 0; i < lw.numel; i++)
        rt_f64(&lw)[i] = rt_f32(&lw32)[i];
    rt_tensor yv, yv32, o = mk(RT_F64, 2, 20, 7, 0, 0), o32 = mk(RT_F32, 2, 20, 7, 0, 0);
    int64_t s2[2] = {20, 64};
    OK(rt_tensor_reshape(&yv, &y, 2, s2, E));
    OK(rt_tensor_reshape(&yv32, &y32, 2, s2, E));
    OK(rt_linear_fwd(&yv, &lw, NULL, &o, E));
    OK(rt_linear_fwd(&yv32, &lw32, NULL, &o32, E));
    assert_true(rel32(&o32, &o) < 1e-5);
    FREE_TENSORS(&x, &w, &b, &y, &x32, &w32, &b32, &y32, &dx, &dw, &dx32, &dw32, &z, &z32, &mu, &rs,
                 &mu32, &rs32, &wt, &wt32, &u, &u32, &lw, &lw32, &o, &o32);
}

/* The f32 instantiation uses its own vectorizable exp, erf and tanh:
 * activations, softmax and the xent loss in f32 against f64 on the same
 * (f32-representable) inputs over [-12, 12]. */
static void test_f32_math(void **state)
{
    (void)state;
    const int64_t n = 24001;
    rt_tensor x = mk(RT_F64, 1, n, 0, 0, 0), y = mk(RT_F64, 1, n, 0, 0, 0),
              d = mk(RT_F64, 1, n, 0, 0, 0), dx = mk(RT_F64, 1, n, 0, 0, 0);
    for (int64_t i = 0; i < n; i++) {
        rt_f64(&x)[i] = (double)(float)(-12.0 + 24.0 * (double)i / (double)(n - 1));
        rt_f64(&d)[i] = (double)(float)(1.0 - 0.5 * (double)(i % 3));
    }
    rt_tensor x32 = to32(&x), y32 = to32(&y), d32 = to32(&d), dx32 = to32(&dx);
    for (int a = 0; a < RT_ACT_COUNT; a++) {
        OK(rt_act_fwd((rt_act)a, 0.2, &x, &y, E));
        OK(rt_act_fwd((rt_act)a, 0.2, &x32, &y32, E));
        OK(rt_act_bwd((rt_act)a, 0.2, &x, &y, &d, &dx, E));
        OK(rt_act_bwd((rt_act)a, 0.2, &x32, &y32, &d32, &dx32, E));
        /* forward: relative per element (exp-based sigmoid and tanh), else
         * relative to max(1, |ref|) (GELU's tail is a cancellation 1 + erf,
         * and so are the derivatives 1 - y^2, y (1 - y) in f32) */
        const double floor_ = a == RT_GELU ? 1 : 1e-30, tol = a == RT_GELU ? 2e-6 : 1e-6;
        double ey = 0, ed = 0;
        for (int64_t i = 0; i < n; i++) {
            double r = rt_f64(&y)[i], g = rt_f64(&dx)[i];
            ey = fmax(ey, fabs(rt_f32(&y32)[i] - r) / fmax(floor_, fabs(r)));
            ed = fmax(ed, fabs(rt_f32(&dx32)[i] - g) / fmax(1, fabs(g)));
        }
        if (!(ey <= tol && ed <= tol))
            fail_msg("f32 %s: forward error %.3g, backward error %.3g (> %.3g)",
                     rt_act_name((rt_act)a), ey, ed, tol);
    }
    /* softmax + xent: logits spread over [-12, 12] in rows of 1000 */
    int64_t s2[2] = {24, 1000};
    rt_tensor lx, lx32, p = mk(RT_F64, 2, 24, 1000, 0, 0), p32 = mk(RT_F32, 2, 24, 1000, 0, 0);
    rt_tensor lab = mk(RT_I32, 1, 24, 0, 0, 0);
    for (int i = 0; i < 24; i++)
        rt_i32(&lab)[i] = (i * 37) % 1000;
    rt_tensor head, head32;
    OK(rt_tensor_rows(&head, &x, 0, 24000, E));
    OK(rt_tensor_rows(&head32, &x32, 0, 24000, E));
    OK(rt_tensor_reshape(&lx, &head, 2, s2, E));
    OK(rt_tensor_reshape(&lx32, &head32, 2, s2, E));
    double l64, l32;
    OK(rt_softmax_xent_fwd(&lx, &lab, &p, &l64, E));
    OK(rt_softmax_xent_fwd(&lx32, &lab, &p32, &l32, E));
    assert_true(fabs(l64 - l32) < 1e-6 * fabs(l64));
    double ep = 0;
    for (int64_t i = 0; i < p.numel; i++)
        if (rt_f64(&p)[i] > 1e-30)
            ep = fmax(ep, fabs(rt_f32(&p32)[i] - rt_f64(&p)[i]) / rt_f64(&p)[i]);
    if (!(ep <= 1e-6))
        fail_msg("f32 softmax: relative error %.3g > 1e-6", ep);
    FREE_TENSORS(&x, &y, &d, &dx, &x32, &y32, &d32, &dx32, &p, &p32, &lab);
}

/* ------------------------------------------------------------------ optimizers */

static void test_optimizers(void **state)
{
    (void)state;
    int64_t s[1] = {3};
    rt_param p;
    OK(rt_param_init(&p, "w", rt_cpu(), RT_F64, 1, s, E));
    double w0[3] = {0.5, -1.0, 2.0}, g1[3] = {0.1, -0.2, 0.3}, g2[3] = {-0.4, 0.5, 0.05};
    /* AdamW, two steps in closed form */
    rt_opt o = {.kind = RT_OPT_ADAMW, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                .weight_decay = 0.1};
    OK(rt_tensor_from_host(&p.w, w0, E));
    OK(rt_tensor_from_host(&p.g, g1, E));
    OK(rt_opt_step(&o, &p, 1, E));
    OK(rt_tensor_from_host(&p.g, g2, E));
    OK(rt_opt_step(&o, &p, 1, E));
    assert_int_equal(o.step, 2);
    for (int i = 0; i < 3; i++) {
        double w = w0[i], lr = 0.01, wd = 0.1;
        /* step 1: m = 0.1 g1, v = 0.001 g1^2, mhat = g1, vhat = g1^2 */
        w = w * (1 - lr * wd) - lr * g1[i] / (fabs(g1[i]) + 1e-8);
        double m = 0.9 * 0.1 * g1[i] + 0.1 * g2[i];
        double v = 0.999 * 0.001 * g1[i] * g1[i] + 0.001 * g2[i] * g2[i];
        double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
        w = w * (1 - lr * wd) - lr * mh / (sqrt(vh) + 1e-8);
        assert_true(fabs(rt_f64(&p.w)[i] - w) < 1e-15);
    }
    rt_param_free(&p);
    /* SGD with momentum and L2, two steps (PyTorch: buf = mu buf + g + wd w) */
    OK(rt_param_init(&p, "w", rt_cpu(), RT_F64, 1, s, E));
    rt_opt sg = {.kind = RT_OPT_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.01};
    OK(rt_tensor_from_host(&p.w, w0, E));
    OK(rt_tensor_from_host(&p.g, g1, E));
    OK(rt_opt_step(&sg, &p, 1, E));
    OK(rt_tensor_from_host(&p.g, g2, E));
    OK(rt_opt_step(&sg, &p, 1, E));
    for (int i = 0; i < 3; i++) {
        double w = w0[i];
        double b = g1[i] + 0.01 * w;
        w -= 0.1 * b;
        b = 0.9 * b + g2[i] + 0.01 * w;
        w -= 0.1 * b;
        assert_true(fabs(rt_f64(&p.w)[i] - w) < 1e-15);
    }
    /* plain SGD in f32; zero_grad */
    rt_param q;
    OK(rt_param_init(&q, "q", rt_cpu(), RT_F32, 1, s, E));
    OK(rt_tensor_fill(&q.w, 1.0, E));
    OK(rt_tensor_fill(&q.g, 0.5, E));
    rt_opt plain = {.kind = RT_OPT_SGD, .lr = 0.2};
    OK(rt_opt_step(&plain, &q, 1, E));
    assert_true(fabs(rt_f32(&q.w)[1] - 0.9f) < 1e-7);
    OK(rt_params_zero_grad(&q, 1, E));
    assert_true(rt_f32(&q.g)[2] == 0);
    assert_int_equal(rt_params_numel(&q, 1), 3);
    /* a bad setting is refused before any update */
    rt_opt bad = {.kind = RT_OPT_ADAMW, .lr = 0.1, .beta1 = 1.0, .beta2 = 0.9, .eps = 1e-8};
    ps_err e = {0};
    assert_int_equal(rt_opt_step(&bad, &q, 1, &e), PS_EINPUT);
    assert_true(fabs(rt_f32(&q.w)[1] - 0.9f) < 1e-7);
    rt_param_free(&p);
    rt_param_free(&q);
}

/* ------------------------------------------------------------------ weights on disk */

static void test_save_load(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "/tmp/test_rt_grad_%d.psrt", (int)getpid());
    rt_param ps[2], qs[2];
    int64_t s0[4] = {4, 1, 3, 3}, s1[1] = {4};
    OK(rt_param_init(&ps[0], "conv1.w", rt_cpu(), RT_F32, 4, s0, E));
    OK(rt_param_init(&ps[1], "conv1.b", rt_cpu(), RT_F64, 1, s1, E));
    OK(rt_init_normal(&ps[0].w, &g_rng, 0, 1, E));
    OK(rt_init_normal(&ps[1].w, &g_rng, 0, 1, E));
    OK(rt_save(path, ps, 2, "cnn seed=1", E));
    OK(rt_param_init(&qs[0], "conv1.b", rt_cpu(), RT_F64, 1, s1, E)); /* other order */
    OK(rt_param_init(&qs[1], "conv1.w", rt_cpu(), RT_F32, 4, s0, E));
    char *meta = NULL;
    OK(rt_load(path, qs, 2, &meta, E));
    assert_string_equal(meta, "cnn seed=1");
    free(meta);
    assert_memory_equal(qs[1].w.data, ps[0].w.data, rt_tensor_bytes(&ps[0].w));
    assert_memory_equal(qs[0].w.data, ps[1].w.data, rt_tensor_bytes(&ps[1].w));

    size_t len;
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, len, f), len);
    fclose(f);

    ps_err e = {0};
    OK(rt_tensor_zero(&qs[1].w, E));
    /* a flipped data byte */
    buf[len / 2] ^= 0x10;
    f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    assert_int_equal(rt_load(path, qs, 2, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "checksum mismatch: file is corrupt"));
    assert_non_null(strstr(e.msg, path));
    assert_true(rt_f32(&qs[1].w)[0] == 0); /* untouched */
    buf[len / 2] ^= 0x10;
    /* truncated */
    f = fopen(path, "wb");
    fwrite(buf, 1, len - 20, f);
    fclose(f);
    assert_int_equal(rt_load(path, qs, 2, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "truncated"));
    assert_true(rt_f32(&qs[1].w)[0] == 0);
    f = fopen(path, "wb");
    fwrite(buf, 1, 3, f);
    fclose(f);
    assert_int_equal(rt_load(path, qs, 2, NULL, &e), PS_EINPUT);
    /* shape mismatch names the param and both shapes */
    f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    rt_param r;
    int64_t s2[4] = {16, 1, 3, 3};
    OK(rt_param_init(&r, "conv1.w", rt_cpu(), RT_F32, 4, s2, E));
    assert_int_equal(rt_load(path, &r, 1, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "param conv1.w: shape [4,1,3,3] in file, [16,1,3,3] expected"));
    rt_param_free(&r);
    OK(rt_param_init(&r, "fc.w", rt_cpu(), RT_F32, 1, s1, E));
    assert_int_equal(rt_load(path, &r, 1, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "param fc.w: missing"));
    rt_param_free(&r);
    /* f32 in the file loads into an f64 param */
    OK(rt_param_init(&r, "conv1.w", rt_cpu(), RT_F64, 4, s0, E));
    OK(rt_load(path, &r, 1, NULL, E));
    assert_true(rt_f64(&r.w)[5] == (double)rt_f32(&ps[0].w)[5]);
    rt_param_free(&r);
    free(buf);
    assert_int_equal(rt_load("/nonexistent/x.psrt", qs, 2, NULL, &e), PS_EINPUT);
    unlink(path);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_true(access(tmp, F_OK) != 0);
    for (int i = 0; i < 2; i++) {
        rt_param_free(&ps[i]);
        rt_param_free(&qs[i]);
    }
}

/* ------------------------------------------------------------------ batchnorm + relu + maxpool */

/* rel() of two tensors of one dtype (f32 or f64), elementwise as doubles. */
static double rel_t(const rt_tensor *a, const rt_tensor *b)
{
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->numel, b->numel);
    double *p = malloc((size_t)a->numel * sizeof *p), *q = malloc((size_t)b->numel * sizeof *q);
    assert_non_null(p);
    assert_non_null(q);
    for (int64_t i = 0; i < a->numel; i++) {
        p[i] = a->dtype == RT_F64 ? rt_f64(a)[i] : rt_f32(a)[i];
        q[i] = b->dtype == RT_F64 ? rt_f64(b)[i] : rt_f32(b)[i];
    }
    double r = rel(p, q, a->numel);
    free(p);
    free(q);
    return r;
}

static rt_tensor mk_like(const rt_tensor *t)
{
    rt_tensor o;
    OK(rt_tensor_alloc(&o, rt_cpu(), t->dtype, t->ndim, t->shape, E));
    return o;
}

static rt_tensor rnd_dt(rt_dtype dt, int ndim, int64_t a, int64_t b, int64_t c, int64_t d,
                        double lo, double hi)
{
    rt_tensor t = mk(dt, ndim, a, b, c, d);
    OK(rt_init_uniform(&t, &g_rng, lo, hi, E));
    return t;
}

typedef struct bnrp_ctx {
    rt_bn g;
    int k, s;
    rt_tensor x, gamma, beta, rm, rv, y, am, mean, rstd, R;
} bnrp_ctx;

static double bnrp_loss(void *p)
{
    bnrp_ctx *c = p;
    OK(rt_bn_relu_maxpool_fwd(&c->g, c->k, c->s, &c->x, &c->gamma, &c->beta, &c->rm, &c->rv,
                              &c->y, &c->am, &c->mean, &c->rstd, E));
    return dot(&c->y, &c->R);
}

/* The fused op against rt_batchnorm_*, rt_act_*(RT_RELU) and rt_maxpool2d_*
 * in turn (dtype dt; the f32 vector path needs ow >= 4, the f64 one ow >= 2,
 * and 2x2 windows tiling the plane), and in f64 against finite differences
 * of <y, R> in x, gamma and beta. */
static void bnrp_case(rt_dtype dt, int training, int k, int s, int64_t N, int64_t C, int64_t H,
                      int64_t W)
{
    const int64_t oh = (H - k) / s + 1, ow = (W - k) / s + 1;
    bnrp_ctx c = {.g = {1e-5, 0.1, training}, .k = k, .s = s};
    c.x = rnd_dt(dt, 4, N, C, H, W, -1, 1);
    c.gamma = rnd_dt(dt, 1, C, 0, 0, 0, 0.5, 1.5);
    c.beta = rnd_dt(dt, 1, C, 0, 0, 0, -0.3, 0.3);
    /* a negative gamma flips which input of a window is the largest */
    if (dt == RT_F64)
        rt_f64(&c.gamma)[0] = -0.7;
    else
        rt_f32(&c.gamma)[0] = -0.7f;
    c.rm = rnd_dt(dt, 1, C, 0, 0, 0, -0.5, 0.5);
    c.rv = rnd_dt(dt, 1, C, 0, 0, 0, 0.5, 1.5);
    c.y = mk(dt, 4, N, C, oh, ow);
    c.am = mk(RT_I32, 4, N, C, oh, ow);
    c.mean = mk(dt, 1, C, 0, 0, 0);
    c.rstd = mk(dt, 1, C, 0, 0, 0);
    c.R = rnd_dt(dt, 4, N, C, oh, ow, -1, 1);
    /* the three ops on copies of the running statistics */
    rt_tensor rm2 = mk_like(&c.rm), rv2 = mk_like(&c.rv), z = mk_like(&c.x), a = mk_like(&c.x),
              y2 = mk_like(&c.y), am2 = mk_like(&c.am), mean2 = mk_like(&c.mean),
              rstd2 = mk_like(&c.rstd);
    OK(rt_tensor_copy(&rm2, &c.rm, E));
    OK(rt_tensor_copy(&rv2, &c.rv, E));
    OK(rt_batchnorm_fwd(&c.g, &c.x, &c.gamma, &c.beta, &rm2, &rv2, &z, &mean2, &rstd2, E));
    OK(rt_act_fwd(RT_RELU, 0, &z, &a, E));
    OK(rt_maxpool2d_fwd(k, s, &a, &y2, &am2, E));
    OK(rt_bn_relu_maxpool_fwd(&c.g, k, s, &c.x, &c.gamma, &c.beta, &c.rm, &c.rv, &c.y, &c.am,
                              &c.mean, &c.rstd, E));
    const double tol = dt == RT_F64 ? 1e-14 : 1e-6;
    char what[96];
    snprintf(what, sizeof what, "bn_relu_maxpool %s train %d k %d s %d %lldx%lldx%lldx%lld",
             rt_dtype_name(dt), training, k, s, (long long)N, (long long)C, (long long)H,
             (long long)W);
    assert_memory_equal(rt_i32(&c.am), rt_i32(&am2), (size_t)c.am.numel * sizeof(int32_t));
    if (!(rel_t(&c.y, &y2) <= tol) || !(rel_t(&c.mean, &mean2) <= tol) ||
        !(rel_t(&c.rstd, &rstd2) <= tol) || !(rel_t(&c.rm, &rm2) <= tol) ||
        !(rel_t(&c.rv, &rv2) <= tol))
        fail_msg("%s: forward differs from the three ops", what);
    /* backward: fused vs maxpool_bwd, act_bwd, batchnorm_bwd */
    rt_tensor dx = mk_like(&c.x), dg = mk_like(&c.gamma), db = mk_like(&c.beta);
    rt_tensor da = mk_like(&c.x), dx2 = mk_like(&c.x), dg2 = mk_like(&c.gamma),
              db2 = mk_like(&c.beta);
    OK(rt_tensor_fill(&dx, 7, E)); /* overwritten */
    OK(rt_bn_relu_maxpool_bwd(&c.g, k, s, &c.x, &c.gamma, &c.mean, &c.rstd, &c.y, &c.am, &c.R,
                              &dx, &dg, &db, E));
    OK(rt_maxpool2d_bwd(k, s, &am2, &c.R, &da, E));
    OK(rt_act_bwd(RT_RELU, 0, &z, &a, &da, &da, E));
    OK(rt_batchnorm_bwd(&c.g, &c.x, &c.gamma, &mean2, &rstd2, &da, &dx2, &dg2, &db2, E));
    const double btol = dt == RT_F64 ? 1e-12 : 1e-5;
    if (!(rel_t(&dx, &dx2) <= btol) || !(rel_t(&dg, &dg2) <= btol) ||
        !(rel_t(&db, &db2) <= btol))
        fail_msg("%s: backward differs from the three ops: dx %.3g dgamma %.3g dbeta %.3g", what,
                 rel_t(&dx, &dx2), rel_t(&dg, &dg2), rel_t(&db, &db2));
    /* in place: dx in x's storage, the same numbers */
    rt_tensor xin = mk_like(&c.x), dg3 = mk_like(&c.gamma);
    OK(rt_tensor_copy(&xin, &c.x, E));
    OK(rt_bn_relu_maxpool_bwd(&c.g, k, s, &xin, &c.gamma, &c.mean, &c.rstd, &c.y, &c.am, &c.R,
                              &xin, &dg3, NULL, E));
    assert_memory_equal(xin.data, dx.data, rt_tensor_bytes(&dx));
    assert_memory_equal(dg3.data, dg.data, rt_tensor_bytes(&dg));
    rt_tensor_free(&xin);
    rt_tensor_free(&dg3);
    if (dt == RT_F64) {
        char w2[128];
        snprintf(w2, sizeof w2, "%s dx", what);
        fd_check(w2, bnrp_loss, &c, &c.x, &dx, 1e-6);
        snprintf(w2, sizeof w2, "%s dgamma", what);
        fd_check(w2, bnrp_loss, &c, &c.gamma, &dg, 1e-6);
        snprintf(w2, sizeof w2, "%s dbeta", what);
        fd_check(w2, bnrp_loss, &c, &c.beta, &db, 1e-6);
    }
    /* dgamma, dbeta accumulate; without dx the same sums */
    OK(rt_tensor_copy(&dg2, &dg, E));
    OK(rt_tensor_copy(&db2, &db, E));
    OK(rt_bn_relu_maxpool_bwd(&c.g, k, s, &c.x, &c.gamma, &c.mean, &c.rstd, &c.y, &c.am, &c.R,
                              NULL, &dg, &db, E));
    OK(rt_scale(&dg2, 2, E));
    OK(rt_scale(&db2, 2, E));
    assert_true(rel_t(&dg, &dg2) <= btol);
    assert_true(rel_t(&db, &db2) <= btol);
    FREE_TENSORS(&c.x, &c.gamma, &c.beta, &c.rm, &c.rv, &c.y, &c.am, &c.mean, &c.rstd, &c.R, &rm2,
                 &rv2, &z, &a, &y2, &am2, &mean2, &rstd2, &dx, &dg, &db, &da, &dx2, &dg2, &db2);
}

static void test_bn_relu_maxpool(void **state)
{
    (void)state;
    bnrp_case(RT_F64, 1, 2, 2, 2, 3, 4, 6);  /* tiles, ow 3: the f64 vector path */
    bnrp_case(RT_F64, 0, 2, 2, 2, 3, 4, 6);  /* running statistics */
    bnrp_case(RT_F64, 1, 2, 2, 2, 2, 5, 7);  /* windows leave a row and a column out */
    bnrp_case(RT_F64, 1, 3, 1, 2, 2, 5, 5);  /* overlapping windows */
    bnrp_case(RT_F64, 1, 2, 2, 3, 2, 2, 2);  /* one window per plane */
    bnrp_case(RT_F32, 1, 2, 2, 3, 4, 28, 28); /* ow 14: vector steps and an overlap */
    bnrp_case(RT_F32, 1, 2, 2, 4, 3, 14, 14);
    bnrp_case(RT_F32, 0, 2, 2, 2, 3, 8, 8);   /* ow 4: one vector step */
    bnrp_case(RT_F32, 1, 2, 2, 2, 3, 8, 6);   /* ow 3: scalar */
    bnrp_case(RT_F32, 1, 3, 2, 2, 2, 9, 9);
    /* ties: a constant plane (every window ties, after the ReLU too) */
    rt_bn g = {1e-5, 0.1, 1};
    rt_tensor x = mk(RT_F32, 4, 2, 1, 4, 8), y = mk(RT_F32, 4, 2, 1, 2, 4),
              am = mk(RT_I32, 4, 2, 1, 2, 4);
    OK(rt_tensor_fill(&x, 0.25, E));
    OK(rt_bn_relu_maxpool_fwd(&g, 2, 2, &x, NULL, NULL, NULL, NULL, &y, &am, NULL, NULL, E));
    for (int64_t i = 0; i < am.numel; i++) {
        int64_t j = i % 8, oy = j / 4, ox = j % 4;
        assert_int_equal(rt_i32(&am)[i], (int32_t)(2 * oy * 8 + 2 * ox));
        assert_true(rt_f32(&y)[i] == 0.0f);
    }
    /* errors name the op and the operand */
    ps_err e = {0};
    rt_tensor ybad = mk(RT_F32, 4, 2, 1, 2, 3), am64 = mk(RT_F64, 4, 2, 1, 2, 4);
    assert_int_equal(
        rt_bn_relu_maxpool_fwd(&g, 2, 2, &x, NULL, NULL, NULL, NULL, &ybad, NULL, NULL, NULL, &e),
        PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_bn_relu_maxpool_fwd: y:"));
    assert_int_equal(
        rt_bn_relu_maxpool_fwd(&g, 2, 2, &x, NULL, NULL, NULL, NULL, &y, &am64, NULL, NULL, &e),
        PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_bn_relu_maxpool_fwd: argmax:"));
    rt_tensor mu = mk(RT_F32, 1, 1, 0, 0, 0), rs = mk(RT_F32, 1, 1, 0, 0, 0),
              dx = mk(RT_F32, 4, 2, 1, 4, 8);
    OK(rt_bn_relu_maxpool_fwd(&g, 2, 2, &x, NULL, NULL, NULL, NULL, &y, &am, &mu, &rs, E));
    rt_i32(&am)[5] = 32;
    assert_int_equal(rt_bn_relu_maxpool_bwd(&g, 2, 2, &x, NULL, &mu, &rs, &y, &am, &y, &dx, NULL,
                                            NULL, &e),
                     PS_EINPUT);
    assert_non_null(strstr(e.msg, "argmax[5] = 32"));
    rt_bn ge = {1e-5, 0.1, 0};
    assert_int_equal(
        rt_bn_relu_maxpool_fwd(&ge, 2, 2, &x, NULL, NULL, NULL, NULL, &y, &am, NULL, NULL, &e),
        PS_EINPUT);
    assert_non_null(strstr(e.msg, "running_mean"));
    FREE_TENSORS(&x, &y, &am, &ybad, &am64, &mu, &rs, &dx);
}

/* ------------------------------------------------------------------ shape errors */

static void test_shape_errors(void **state)
{
    (void)state;
    ps_err e = {0};
    rt_tensor x = mk(RT_F32, 2, 4, 3, 0, 0), w = mk(RT_F32, 2, 5, 3, 0, 0),
              y = mk(RT_F32, 2, 4, 6, 0, 0), b = mk(RT_F32, 1, 4, 0, 0, 0),
              x64 = mk(RT_F64, 2, 4, 3, 0, 0);
    assert_int_equal(rt_linear_fwd(&x, &w, NULL, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_linear_fwd: y:"));
    assert_non_null(strstr(e.msg, "[4, 6]"));
    assert_non_null(strstr(e.msg, "expected [4, 5]"));
    assert_int_equal(rt_linear_fwd(&x, &w, &b, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_linear_fwd: b:"));
    assert_int_equal(rt_linear_fwd(&x, &x, NULL, &y, &e), PS_EINPUT);
    assert_int_equal(rt_linear_fwd(&x64, &w, NULL, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_linear_fwd: w:"));
    rt_tensor xi = mk(RT_F32, 4, 2, 3, 5, 5), wc = mk(RT_F32, 4, 4, 2, 3, 3),
              yc = mk(RT_F32, 4, 2, 4, 3, 3);
    rt_conv g = {1, 0};
    assert_int_equal(rt_conv2d_fwd(&g, &xi, &wc, NULL, &yc, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_conv2d_fwd: w:"));
    rt_tensor wc2 = mk(RT_F32, 4, 4, 3, 3, 3);
    OK(rt_conv2d_fwd(&g, &xi, &wc2, NULL, &yc, E));
    rt_tensor dyc = mk(RT_F32, 4, 2, 4, 2, 2);
    assert_int_equal(rt_conv2d_bwd(&g, &xi, &wc2, &dyc, NULL, NULL, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_conv2d_bwd: dy:"));
    rt_convt gt = {2, 0, 2};
    assert_int_equal(rt_convt2d_fwd(&gt, &xi, &wc2, NULL, &yc, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "out_pad"));
    FREE_TENSORS(&x, &w, &y, &b, &x64, &xi, &wc, &yc, &wc2, &dyc);
}

int main(void)
{
    rt_rng_seed(&g_rng, 20261126);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),     cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_convt2d),    cmocka_unit_test(test_pool),
        cmocka_unit_test(test_act),        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_losses),     cmocka_unit_test(test_f32_f64),
        cmocka_unit_test(test_f32_math),   cmocka_unit_test(test_bn_relu_maxpool),
        cmocka_unit_test(test_optimizers), cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
