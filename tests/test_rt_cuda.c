/* real/rt_cuda.c + kernels/cuda_rt.cu: every slot of the CUDA backend
 * against the CPU path of the same public rt_* function (F32 on rt_cpu()),
 * on fresh random inputs (a new seed per run and per test; printed on
 * failure; PLANSIM_TEST_SEED repeats a run).  CUDA outputs that the call
 * overwrites are poisoned first (0xFF bytes: NaN), so an unwritten element
 * fails; accumulated parameter gradients start from the same random values
 * on both sides.  Tolerance: ‖cuda − cpu‖ / ‖cpu‖ <= 1e-4 (fp32 on both
 * sides; cuBLAS runs in its default math mode, no TF32, which would land
 * near 3e-4); arg-max indices exact.  Last, a few SGD steps of a small MLP
 * give the same loss curve on both devices.
 *
 * Without a usable GPU every device test calls skip() and says why; the
 * backend table itself (all slots filled with CUDA, all empty without) is
 * checked everywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cuda_ops.h"
#include "kernels/gpu.h"
#include "real/backend.h"
#include "real/rt.h"
#include "tests/gpu_testutil.h"

static rt_dev *G; /* NULL without a usable GPU */

#define TOL 1e-4

#define NEED_GPU() GPU_NEED(G)

#define E (&e_)

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* rank and shape in one: DIMS(2, 3, 4) */
#define DIMS(...) ND(__VA_ARGS__), SH(__VA_ARGS__)

/* One operand on both devices: c on the CPU, g on the GPU. */
typedef struct {
    rt_tensor c, g;
} pair;

static rt_rng R; /* reseeded by every test */

static void begin(void)
{
    rt_rng_seed(&R, seed());
}

static void alloc_both(pair *p, rt_dtype dt, int nd, const int64_t *sh)
{
    memset(p, 0, sizeof *p);
    OK(rt_tensor_alloc(&p->c, rt_cpu(), dt, nd, sh, E));
    OK(rt_tensor_alloc(&p->g, G, dt, nd, sh, E));
}

/* Random U(lo, hi) on the CPU, the same values on the GPU. */
static void P_rand(pair *p, int nd, const int64_t *sh, double lo, double hi)
{
    alloc_both(p, RT_F32, nd, sh);
    OK(rt_init_uniform(&p->c, &R, lo, hi, E));
    OK(rt_tensor_copy(&p->g, &p->c, E));
}

/* An overwritten output: zeros on the CPU, NaN on the GPU. */
static void P_out(pair *p, rt_dtype dt, int nd, const int64_t *sh)
{
    alloc_both(p, dt, nd, sh);
    OK(ps_cuda_memset(rt_dev_cuda_ctx(G), p->g.data, 0xFF, rt_tensor_bytes(&p->g), E));
}

/* I32 values in [lo, hi) on both. */
static void P_ints(pair *p, int nd, const int64_t *sh, int lo, int hi)
{
    alloc_both(p, RT_I32, nd, sh);
    int32_t *h = rt_i32(&p->c);
    for (int64_t i = 0; i < p->c.numel; i++)
        h[i] = lo + (int32_t)(rt_rng_next(&R) % (uint64_t)(hi - lo));
    OK(rt_tensor_copy(&p->g, &p->c, E));
}

static void P_free(pair *p)
{
    rt_tensor_free(&p->c);
    rt_tensor_free(&p->g);
}

/* Every element of the GPU tensor finite and ‖g − c‖ / ‖c‖ <= tol (I32: equal). */
static void P_check(const char *what, const pair *p, double tol)
{
    size_t n = (size_t)p->c.numel;
    if (p->c.dtype == RT_I32) {
        int32_t *h = malloc(n * 4 + 4);
        assert_non_null(h);
        OK(rt_tensor_to_host(&p->g, h, E));
        const int32_t *r = rt_i32(&p->c);
        for (size_t i = 0; i < n; i++)
            if (h[i] != r[i])
                fail_msg("%s: element %zu is %d, expected %d (seed %llu)", what, i, h[i], r[i],
                         (unsigned long long)seed0);
        print_message("  %-44s exact (%zu elements)\n", what, n);
        free(h);
        return;
    }
    float *h = malloc(n * 4 + 4);
    assert_non_null(h);
    OK(rt_tensor_to_host(&p->g, h, E));
    const float *r = rt_f32(&p->c);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(h[i]))
            fail_msg("%s: element %zu is %g (unwritten or NaN; CPU %g; seed %llu)", what, i,
                     (double)h[i], (double)r[i], (unsigned long long)seed0);
        double d = (double)h[i] - (double)r[i];
        num += d * d;
        den += (double)r[i] * (double)r[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    print_message("  %-44s rel err %.2e (tol %.0e)\n", what, rel, tol);
    free(h);
    if (!(rel <= tol))
        fail_msg("%s: relative error %.3g > %.3g (seed %llu)", what, rel, tol,
                 (unsigned long long)seed0);
}

static void check_scalar(const char *what, double got, double ref, double tol)
{
    double rel = fabs(got - ref) / (fabs(ref) > 0 ? fabs(ref) : 1);
    print_message("  %-44s %.9g vs %.9g, rel err %.2e\n", what, got, ref, rel);
    if (!isfinite(got) || !(rel <= tol))
        fail_msg("%s: %.9g on CUDA, %.9g on the CPU (seed %llu)", what, got, ref,
                 (unsigned long long)seed0);
}

/* ------------------------------------------------------------ the table */

static void test_backend_table(void **state)
{
    (void)state;
    const void *slots[] = {
#define S(x) (const void *)(uintptr_t)rt_cuda_backend.x
        S(fill), S(add), S(axpy), S(scale), S(sum), S(concat_cols), S(split_cols),
        S(split_heads), S(merge_heads), S(linear_fwd), S(linear_bwd), S(conv2d_fwd),
        S(conv2d_bwd), S(convt2d_fwd), S(convt2d_bwd), S(maxpool2d_fwd), S(maxpool2d_bwd),
        S(avgpool2d_fwd), S(avgpool2d_bwd), S(act_fwd), S(act_bwd), S(layernorm_fwd),
        S(layernorm_bwd), S(batchnorm_fwd), S(batchnorm_bwd), S(embedding_fwd),
        S(embedding_bwd), S(softmax_xent_fwd), S(softmax_xent_bwd), S(softmax_fwd), S(mse_fwd),
        S(mse_bwd), S(attention_fwd), S(attention_bwd), S(sgd_update), S(adamw_update),
    };
    /* optional fused ops (a model checks rt_*_available and falls back) */
    const void *optional[] = {S(bn_relu_maxpool_fwd), S(bn_relu_maxpool_bwd)};
#undef S
    size_t n = sizeof slots / sizeof slots[0], nopt = sizeof optional / sizeof optional[0];
    assert_int_equal((n + nopt) * sizeof(void (*)(void)), sizeof(rt_backend)); /* none forgotten */
    assert_true(rt_bn_relu_maxpool_available(rt_cpu()));
    for (size_t i = 0; i < nopt; i++)
        if (!ps_gpu_built())
            assert_null(optional[i]);
    for (size_t i = 0; i < n; i++) {
        if (ps_gpu_built())
            assert_non_null(slots[i]);
        else
            assert_null(slots[i]);
    }
    print_message("%zu slots, all %s\n", n, ps_gpu_built() ? "filled (CUDA build)" : "empty");
}

/* ------------------------------------------------------------ elementwise helpers */

static void test_elementwise(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    pair a, b, y;
    P_rand(&a, DIMS(37, 29), -1, 1);
    P_rand(&b, DIMS(37, 29), -1, 1);
    P_out(&y, RT_F32, DIMS(37, 29));
    OK(rt_tensor_fill(&y.c, 0.37, E));
    OK(rt_tensor_fill(&y.g, 0.37, E));
    P_check("fill", &y, 0);
    OK(ps_cuda_memset(rt_dev_cuda_ctx(G), y.g.data, 0xFF, rt_tensor_bytes(&y.g), E));
    OK(rt_add(&a.c, &b.c, &y.c, E));
    OK(rt_add(&a.g, &b.g, &y.g, E));
    P_check("add", &y, TOL);
    OK(rt_axpy(-0.75, &a.c, &y.c, E));
    OK(rt_axpy(-0.75, &a.g, &y.g, E));
    P_check("axpy", &y, TOL);
    OK(rt_scale(&y.c, 1.7, E));
    OK(rt_scale(&y.g, 1.7, E));
    P_check("scale", &y, TOL);
    double sc = 0, sg = 0;
    OK(rt_sum(&a.c, &sc, E));
    OK(rt_sum(&a.g, &sg, E));
    check_scalar("sum", sg, sc, 1e-5);
    P_free(&a), P_free(&b), P_free(&y);

    /* a larger sum: many blocks, fp64 accumulation */
    pair big;
    P_rand(&big, DIMS(1 << 20), 0, 1);
    OK(rt_sum(&big.c, &sc, E));
    OK(rt_sum(&big.g, &sg, E));
    check_scalar("sum of 2^20", sg, sc, 1e-5);
    P_free(&big);
}

static void test_concat_split_heads(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    pair x[3], y;
    int64_t cols[3] = {5, 17, 3};
    for (int i = 0; i < 3; i++)
        P_rand(&x[i], DIMS(33, cols[i]), -1, 1);
    P_out(&y, RT_F32, DIMS(33, 25));
    const rt_tensor *xc[3] = {&x[0].c, &x[1].c, &x[2].c}, *xg[3] = {&x[0].g, &x[1].g, &x[2].g};
    OK(rt_concat_cols(xc, 3, &y.c, E));
    OK(rt_concat_cols(xg, 3, &y.g, E));
    P_check("concat_cols", &y, 0);

    pair dy, dx[3];
    P_rand(&dy, DIMS(33, 25), -1, 1);
    for (int i = 0; i < 3; i++)
        P_out(&dx[i], RT_F32, DIMS(33, cols[i]));
    rt_tensor *dc[3] = {&dx[0].c, &dx[1].c, &dx[2].c}, *dg[3] = {&dx[0].g, &dx[1].g, &dx[2].g};
    OK(rt_split_cols(&dy.c, dc, 3, E));
    OK(rt_split_cols(&dy.g, dg, 3, E));
    for (int i = 0; i < 3; i++)
        P_check("split_cols", &dx[i], 0);

    /* [B, T, H, D] = [2, 7, 3, 5] <-> [2, 3, 7, 5] */
    pair h, hh, back;
    P_rand(&h, DIMS(2, 7, 3, 5), -1, 1);
    P_out(&hh, RT_F32, DIMS(2, 3, 7, 5));
    P_out(&back, RT_F32, DIMS(2, 7, 3, 5));
    OK(rt_split_heads(&h.c, &hh.c, E));
    OK(rt_split_heads(&h.g, &hh.g, E));
    P_check("split_heads", &hh, 0);
    OK(rt_merge_heads(&hh.c, &back.c, E));
    OK(rt_merge_heads(&hh.g, &back.g, E));
    P_check("merge_heads", &back, 0);
    for (int i = 0; i < 3; i++)
        P_free(&x[i]), P_free(&dx[i]);
    P_free(&y), P_free(&dy), P_free(&h), P_free(&hh), P_free(&back);
}

/* ------------------------------------------------------------ linear */

static void test_linear(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    /* leading dims [3, 13] flattened into N = 39 */
    pair x, w, b, y, dy, dx, dw, db;
    P_rand(&x, DIMS(3, 13, 29), -1, 1);
    P_rand(&w, DIMS(19, 29), -0.5, 0.5);
    P_rand(&b, DIMS(19), -0.5, 0.5);
    P_out(&y, RT_F32, DIMS(3, 13, 19));
    OK(rt_linear_fwd(&x.c, &w.c, &b.c, &y.c, E));
    OK(rt_linear_fwd(&x.g, &w.g, &b.g, &y.g, E));
    P_check("linear_fwd", &y, TOL);
    OK(ps_cuda_memset(rt_dev_cuda_ctx(G), y.g.data, 0xFF, rt_tensor_bytes(&y.g), E));
    OK(rt_linear_fwd(&x.c, &w.c, NULL, &y.c, E));
    OK(rt_linear_fwd(&x.g, &w.g, NULL, &y.g, E));
    P_check("linear_fwd without bias", &y, TOL);

    P_rand(&dy, DIMS(3, 13, 19), -1, 1);
    P_out(&dx, RT_F32, DIMS(3, 13, 29));
    P_rand(&dw, DIMS(19, 29), -1, 1); /* accumulated into */
    P_rand(&db, DIMS(19), -1, 1);
    OK(rt_linear_bwd(&x.c, &w.c, &dy.c, &dx.c, &dw.c, &db.c, E));
    OK(rt_linear_bwd(&x.g, &w.g, &dy.g, &dx.g, &dw.g, &db.g, E));
    P_check("linear_bwd dx", &dx, TOL);
    P_check("linear_bwd dw (+=)", &dw, TOL);
    P_check("linear_bwd db (+=)", &db, TOL);
    /* dx not needed */
    OK(rt_linear_bwd(&x.c, &w.c, &dy.c, NULL, &dw.c, NULL, E));
    OK(rt_linear_bwd(&x.g, &w.g, &dy.g, NULL, &dw.g, NULL, E));
    P_check("linear_bwd dw twice", &dw, TOL);
    P_free(&x), P_free(&w), P_free(&b), P_free(&y), P_free(&dy), P_free(&dx), P_free(&dw),
        P_free(&db);
}

/* ------------------------------------------------------------ convolutions */

static void test_conv2d(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const struct {
        int n, c, h, w, k, r, s, stride, pad;
    } cases[] = {
        {3, 4, 11, 9, 5, 3, 3, 1, 1},
        {2, 3, 12, 10, 6, 3, 2, 2, 1}, /* non-square kernel, stride 2 */
        {2, 2, 9, 13, 3, 4, 4, 2, 0},
        {1, 1, 7, 7, 2, 1, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int N = cases[i].n, C = cases[i].c, H = cases[i].h, W = cases[i].w,
                  K = cases[i].k, Rr = cases[i].r, S = cases[i].s;
        rt_conv g = {.stride = cases[i].stride, .pad = cases[i].pad};
        const int OH = (H + 2 * g.pad - Rr) / g.stride + 1, OW = (W + 2 * g.pad - S) / g.stride + 1;
        print_message(" x [%d,%d,%d,%d] w [%d,%d,%d,%d] stride %d pad %d\n", N, C, H, W, K, C, Rr,
                      S, g.stride, g.pad);
        pair x, w, b, y, dy, dx, dw, db;
        P_rand(&x, DIMS(N, C, H, W), -1, 1);
        P_rand(&w, DIMS(K, C, Rr, S), -0.5, 0.5);
        P_rand(&b, DIMS(K), -0.5, 0.5);
        P_out(&y, RT_F32, DIMS(N, K, OH, OW));
        OK(rt_conv2d_fwd(&g, &x.c, &w.c, &b.c, &y.c, E));
        OK(rt_conv2d_fwd(&g, &x.g, &w.g, &b.g, &y.g, E));
        P_check("conv2d_fwd", &y, TOL);
        P_rand(&dy, DIMS(N, K, OH, OW), -1, 1);
        P_out(&dx, RT_F32, DIMS(N, C, H, W));
        P_rand(&dw, DIMS(K, C, Rr, S), -1, 1);
        P_rand(&db, DIMS(K), -1, 1);
        OK(rt_conv2d_bwd(&g, &x.c, &w.c, &dy.c, &dx.c, &dw.c, &db.c, E));
        OK(rt_conv2d_bwd(&g, &x.g, &w.g, &dy.g, &dx.g, &dw.g, &db.g, E));
        P_check("conv2d_bwd dx", &dx, TOL);
        P_check("conv2d_bwd dw (+=)", &dw, TOL);
        P_check("conv2d_bwd db (+=)", &db, TOL);
        P_free(&x), P_free(&w), P_free(&b), P_free(&y), P_free(&dy), P_free(&dx), P_free(&dw),
            P_free(&db);
    }
}

static void test_convt2d(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const struct {
        int n, c, h, w, k, r, s, stride, pad, out_pad;
    } cases[] = {
        {2, 4, 5, 6, 3, 4, 4, 2, 1, 0}, /* DCGAN's up-sampling */
        {2, 3, 4, 5, 2, 3, 3, 2, 1, 1}, /* output padding */
        {1, 2, 6, 4, 5, 3, 2, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int N = cases[i].n, C = cases[i].c, H = cases[i].h, W = cases[i].w,
                  K = cases[i].k, Rr = cases[i].r, S = cases[i].s;
        rt_convt g = {.stride = cases[i].stride, .pad = cases[i].pad, .out_pad = cases[i].out_pad};
        const int OH = (H - 1) * g.stride - 2 * g.pad + Rr + g.out_pad;
        const int OW = (W - 1) * g.stride - 2 * g.pad + S + g.out_pad;
        print_message(" x [%d,%d,%d,%d] w [%d,%d,%d,%d] stride %d pad %d out_pad %d\n", N, C, H, W,
                      C, K, Rr, S, g.stride, g.pad, g.out_pad);
        pair x, w, b, y, dy, dx, dw, db;
        P_rand(&x, DIMS(N, C, H, W), -1, 1);
        P_rand(&w, DIMS(C, K, Rr, S), -0.5, 0.5);
        P_rand(&b, DIMS(K), -0.5, 0.5);
        P_out(&y, RT_F32, DIMS(N, K, OH, OW));
        OK(rt_convt2d_fwd(&g, &x.c, &w.c, &b.c, &y.c, E));
        OK(rt_convt2d_fwd(&g, &x.g, &w.g, &b.g, &y.g, E));
        P_check("convt2d_fwd", &y, TOL);
        P_rand(&dy, DIMS(N, K, OH, OW), -1, 1);
        P_out(&dx, RT_F32, DIMS(N, C, H, W));
        P_rand(&dw, DIMS(C, K, Rr, S), -1, 1);
        P_rand(&db, DIMS(K), -1, 1);
        OK(rt_convt2d_bwd(&g, &x.c, &w.c, &dy.c, &dx.c, &dw.c, &db.c, E));
        OK(rt_convt2d_bwd(&g, &x.g, &w.g, &dy.g, &dx.g, &dw.g, &db.g, E));
        P_check("convt2d_bwd dx", &dx, TOL);
        P_check("convt2d_bwd dw (+=)", &dw, TOL);
        P_check("convt2d_bwd db (+=)", &db, TOL);
        P_free(&x), P_free(&w), P_free(&b), P_free(&y), P_free(&dy), P_free(&dx), P_free(&dw),
            P_free(&db);
    }
}

/* ------------------------------------------------------------ pooling */

static void test_pooling(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const int ks[][2] = {{2, 2}, {3, 2}, {3, 1}}; /* (k, s): overlapping windows too */
    for (size_t i = 0; i < 3; i++) {
        const int k = ks[i][0], s = ks[i][1], N = 2, C = 3, H = 9, W = 8;
        const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
        print_message(" k %d s %d on [%d,%d,%d,%d]\n", k, s, N, C, H, W);
        pair x, y, am, dy, dx;
        P_rand(&x, DIMS(N, C, H, W), -1, 1);
        P_out(&y, RT_F32, DIMS(N, C, OH, OW));
        P_out(&am, RT_I32, DIMS(N, C, OH, OW));
        OK(rt_maxpool2d_fwd(k, s, &x.c, &y.c, &am.c, E));
        OK(rt_maxpool2d_fwd(k, s, &x.g, &y.g, &am.g, E));
        P_check("maxpool2d_fwd", &y, 0);
        P_check("maxpool2d_fwd argmax", &am, 0);
        P_rand(&dy, DIMS(N, C, OH, OW), -1, 1);
        P_out(&dx, RT_F32, DIMS(N, C, H, W));
        OK(rt_maxpool2d_bwd(k, s, &am.c, &dy.c, &dx.c, E));
        OK(rt_maxpool2d_bwd(k, s, &am.g, &dy.g, &dx.g, E));
        P_check("maxpool2d_bwd", &dx, TOL);
        OK(ps_cuda_memset(rt_dev_cuda_ctx(G), y.g.data, 0xFF, rt_tensor_bytes(&y.g), E));
        OK(ps_cuda_memset(rt_dev_cuda_ctx(G), dx.g.data, 0xFF, rt_tensor_bytes(&dx.g), E));
        OK(rt_avgpool2d_fwd(k, s, &x.c, &y.c, E));
        OK(rt_avgpool2d_fwd(k, s, &x.g, &y.g, E));
        P_check("avgpool2d_fwd", &y, TOL);
        OK(rt_avgpool2d_bwd(k, s, &dy.c, &dx.c, E));
        OK(rt_avgpool2d_bwd(k, s, &dy.g, &dx.g, E));
        P_check("avgpool2d_bwd", &dx, TOL);
        P_free(&x), P_free(&y), P_free(&am), P_free(&dy), P_free(&dx);
    }
}

/* ------------------------------------------------------------ activations */

static void test_activations(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    for (int a = 0; a < RT_ACT_COUNT; a++) {
        char what[64];
        pair x, y, dy, dx;
        P_rand(&x, DIMS(7, 143), -3, 3);
        P_out(&y, RT_F32, DIMS(7, 143));
        P_rand(&dy, DIMS(7, 143), -1, 1);
        P_out(&dx, RT_F32, DIMS(7, 143));
        OK(rt_act_fwd((rt_act)a, 0.1, &x.c, &y.c, E));
        OK(rt_act_fwd((rt_act)a, 0.1, &x.g, &y.g, E));
        snprintf(what, sizeof what, "act_fwd %s", rt_act_name((rt_act)a));
        P_check(what, &y, TOL);
        OK(rt_act_bwd((rt_act)a, 0.1, &x.c, &y.c, &dy.c, &dx.c, E));
        OK(rt_act_bwd((rt_act)a, 0.1, &x.g, &y.g, &dy.g, &dx.g, E));
        snprintf(what, sizeof what, "act_bwd %s", rt_act_name((rt_act)a));
        P_check(what, &dx, TOL);
        /* in place: dx aliases dy */
        OK(rt_act_bwd((rt_act)a, 0.1, &x.c, &y.c, &dy.c, &dy.c, E));
        OK(rt_act_bwd((rt_act)a, 0.1, &x.g, &y.g, &dy.g, &dy.g, E));
        snprintf(what, sizeof what, "act_bwd %s in place", rt_act_name((rt_act)a));
        P_check(what, &dy, TOL);
        P_free(&x), P_free(&y), P_free(&dy), P_free(&dx);
    }
}

/* ------------------------------------------------------------ normalisation */

static void test_layernorm(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const int64_t cols[] = {45, 300}; /* one block pass; several per thread */
    for (int i = 0; i < 2; i++) {
        const int64_t C = cols[i];
        pair x, ga, be, y, mu, rs, dy, dx, dg, db;
        P_rand(&x, DIMS(3, 7, C), -2, 3);
        P_rand(&ga, DIMS(C), 0.5, 1.5);
        P_rand(&be, DIMS(C), -0.5, 0.5);
        P_out(&y, RT_F32, DIMS(3, 7, C));
        P_out(&mu, RT_F32, DIMS(21));
        P_out(&rs, RT_F32, DIMS(21));
        OK(rt_layernorm_fwd(&x.c, &ga.c, &be.c, 1e-5, &y.c, &mu.c, &rs.c, E));
        OK(rt_layernorm_fwd(&x.g, &ga.g, &be.g, 1e-5, &y.g, &mu.g, &rs.g, E));
        P_check("layernorm_fwd y", &y, TOL);
        P_check("layernorm_fwd mean", &mu, TOL);
        P_check("layernorm_fwd rstd", &rs, TOL);
        P_rand(&dy, DIMS(3, 7, C), -1, 1);
        P_out(&dx, RT_F32, DIMS(3, 7, C));
        P_rand(&dg, DIMS(C), -1, 1);
        P_rand(&db, DIMS(C), -1, 1);
        OK(rt_layernorm_bwd(&x.c, &ga.c, &mu.c, &rs.c, &dy.c, &dx.c, &dg.c, &db.c, E));
        OK(rt_layernorm_bwd(&x.g, &ga.g, &mu.g, &rs.g, &dy.g, &dx.g, &dg.g, &db.g, E));
        P_check("layernorm_bwd dx", &dx, TOL);
        P_check("layernorm_bwd dgamma (+=)", &dg, TOL);
        P_check("layernorm_bwd dbeta (+=)", &db, TOL);
        P_free(&x), P_free(&ga), P_free(&be), P_free(&y), P_free(&mu), P_free(&rs);
        P_free(&dy), P_free(&dx), P_free(&dg), P_free(&db);
    }
}

static void test_batchnorm(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    for (int four = 0; four < 2; four++)
        for (int training = 1; training >= 0; training--) {
            const int64_t N = 4, C = 3, H = 5, W = 6;
            int nd = four ? 4 : 2;
            const int64_t *xs = four ? SH(N, C, H, W) : SH(16, 7);
            const int64_t ch = xs[1];
            print_message(" %s, %s\n", four ? "[N, C, H, W]" : "[N, C]",
                          training ? "training" : "eval");
            rt_bn g = {.eps = 1e-5, .momentum = 0.1, .training = training};
            pair x, ga, be, rm, rv, y, mu, rs, dy, dx, dg, db;
            P_rand(&x, nd, xs, -2, 3);
            P_rand(&ga, DIMS(ch), 0.5, 1.5);
            P_rand(&be, DIMS(ch), -0.5, 0.5);
            P_rand(&rm, DIMS(ch), -0.5, 0.5);
            P_rand(&rv, DIMS(ch), 0.5, 2);
            P_out(&y, RT_F32, nd, xs);
            P_out(&mu, RT_F32, DIMS(ch));
            P_out(&rs, RT_F32, DIMS(ch));
            OK(rt_batchnorm_fwd(&g, &x.c, &ga.c, &be.c, &rm.c, &rv.c, &y.c, &mu.c, &rs.c, E));
            OK(rt_batchnorm_fwd(&g, &x.g, &ga.g, &be.g, &rm.g, &rv.g, &y.g, &mu.g, &rs.g, E));
            P_check("batchnorm_fwd y", &y, TOL);
            P_check("batchnorm_fwd mean", &mu, TOL);
            P_check("batchnorm_fwd rstd", &rs, TOL);
            P_check("batchnorm_fwd running mean", &rm, TOL);
            P_check("batchnorm_fwd running var", &rv, TOL);
            P_rand(&dy, nd, xs, -1, 1);
            P_out(&dx, RT_F32, nd, xs);
            P_rand(&dg, DIMS(ch), -1, 1);
            P_rand(&db, DIMS(ch), -1, 1);
            OK(rt_batchnorm_bwd(&g, &x.c, &ga.c, &mu.c, &rs.c, &dy.c, &dx.c, &dg.c, &db.c, E));
            OK(rt_batchnorm_bwd(&g, &x.g, &ga.g, &mu.g, &rs.g, &dy.g, &dx.g, &dg.g, &db.g, E));
            P_check("batchnorm_bwd dx", &dx, TOL);
            P_check("batchnorm_bwd dgamma (+=)", &dg, TOL);
            P_check("batchnorm_bwd dbeta (+=)", &db, TOL);
            P_free(&x), P_free(&ga), P_free(&be), P_free(&rm), P_free(&rv), P_free(&y);
            P_free(&mu), P_free(&rs), P_free(&dy), P_free(&dx), P_free(&dg), P_free(&db);
        }
}

/* ------------------------------------------------------------ embedding, losses */

static void test_embedding(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    pair ids, tab, y, dy, dt;
    P_ints(&ids, DIMS(4, 9), 0, 11); /* 36 ids over 11 rows: repeats */
    P_rand(&tab, DIMS(50, 13), -1, 1);
    P_out(&y, RT_F32, DIMS(4, 9, 13));
    OK(rt_embedding_fwd(&ids.c, &tab.c, &y.c, E));
    OK(rt_embedding_fwd(&ids.g, &tab.g, &y.g, E));
    P_check("embedding_fwd", &y, 0);
    P_rand(&dy, DIMS(4, 9, 13), -1, 1);
    P_rand(&dt, DIMS(50, 13), -1, 1);
    OK(rt_embedding_bwd(&ids.c, &dy.c, &dt.c, E));
    OK(rt_embedding_bwd(&ids.g, &dy.g, &dt.g, E));
    P_check("embedding_bwd (+=, repeated ids)", &dt, TOL);
    P_free(&ids), P_free(&tab), P_free(&y), P_free(&dy), P_free(&dt);
}

static void test_softmax_losses(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const int64_t classes[] = {11, 1000};
    for (int i = 0; i < 2; i++) {
        const int64_t N = 37, Cn = classes[i];
        pair lg, lab, pr, dl;
        P_rand(&lg, DIMS(N, Cn), -4, 4);
        P_ints(&lab, DIMS(N), 0, (int)Cn);
        int32_t *l = rt_i32(&lab.c);
        for (int j = 0; j < N; j += 5)
            l[j] = -1; /* ignored rows */
        OK(rt_tensor_copy(&lab.g, &lab.c, E));
        P_out(&pr, RT_F32, DIMS(N, Cn));
        double lc = 0, lgpu = 0;
        OK(rt_softmax_xent_fwd(&lg.c, &lab.c, &pr.c, &lc, E));
        OK(rt_softmax_xent_fwd(&lg.g, &lab.g, &pr.g, &lgpu, E));
        check_scalar("softmax_xent_fwd loss", lgpu, lc, 1e-5);
        P_check("softmax_xent_fwd probs", &pr, TOL);
        P_out(&dl, RT_F32, DIMS(N, Cn));
        OK(rt_softmax_xent_bwd(&pr.c, &lab.c, 0.7, &dl.c, E));
        OK(rt_softmax_xent_bwd(&pr.g, &lab.g, 0.7, &dl.g, E));
        P_check("softmax_xent_bwd", &dl, TOL);
        OK(ps_cuda_memset(rt_dev_cuda_ctx(G), pr.g.data, 0xFF, rt_tensor_bytes(&pr.g), E));
        OK(rt_softmax_fwd(&lg.c, &pr.c, E));
        OK(rt_softmax_fwd(&lg.g, &pr.g, E));
        P_check("softmax_fwd", &pr, TOL);
        P_free(&lg), P_free(&lab), P_free(&pr), P_free(&dl);
    }
    /* every label ignored: loss 0, gradient 0 */
    pair lg, lab, pr, dl;
    P_rand(&lg, DIMS(3, 4), -1, 1);
    P_ints(&lab, DIMS(3), -1, 0);
    P_out(&pr, RT_F32, DIMS(3, 4));
    P_out(&dl, RT_F32, DIMS(3, 4));
    double lgpu = 1;
    OK(rt_softmax_xent_fwd(&lg.g, &lab.g, &pr.g, &lgpu, E));
    assert_true(lgpu == 0.0);
    OK(rt_softmax_xent_bwd(&pr.g, &lab.g, 1.0, &dl.g, E));
    float h[12];
    OK(rt_tensor_to_host(&dl.g, h, E));
    for (int i = 0; i < 12; i++)
        assert_true(h[i] == 0.0f);
    P_free(&lg), P_free(&lab), P_free(&pr), P_free(&dl);

    /* MSE */
    pair x, t, dx;
    P_rand(&x, DIMS(5, 3, 17), -1, 1);
    P_rand(&t, DIMS(5, 3, 17), -1, 1);
    P_out(&dx, RT_F32, DIMS(5, 3, 17));
    double mc = 0, mg = 0;
    OK(rt_mse_fwd(&x.c, &t.c, &mc, E));
    OK(rt_mse_fwd(&x.g, &t.g, &mg, E));
    check_scalar("mse_fwd", mg, mc, 1e-5);
    OK(rt_mse_bwd(&x.c, &t.c, 0.5, &dx.c, E));
    OK(rt_mse_bwd(&x.g, &t.g, 0.5, &dx.g, E));
    P_check("mse_bwd", &dx, TOL);
    P_free(&x), P_free(&t), P_free(&dx);
}

/* ------------------------------------------------------------ attention */

/* dk / dv: NaN over the first tkv positions (must be written), the same
 * random values over the rest of Tcap (must stay) on both devices. */
static void P_kv_grad(pair *p, int64_t BH, int64_t tcap, int64_t tkv, int64_t D, int64_t B,
                      int64_t H)
{
    alloc_both(p, RT_F32, DIMS(B, H, tcap, D));
    float *h = rt_f32(&p->c), *g = malloc((size_t)p->c.numel * 4);
    assert_non_null(g);
    for (int64_t i = 0; i < p->c.numel; i++) {
        int64_t pos = (i / D) % tcap;
        h[i] = (float)(rt_rng_uniform(&R) * 2 - 1);
        g[i] = pos < tkv ? NAN : h[i];
    }
    (void)BH;
    OK(rt_tensor_from_host(&p->g, g, E));
    free(g);
}

static void test_attention(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const struct {
        int b, h, tq, tcap, tkv, d;
        rt_mask_kind mk;
    } cases[] = {
        {2, 3, 5, 12, 9, 8, RT_MASK_NONE},
        {2, 3, 5, 12, 9, 8, RT_MASK_CAUSAL},
        {1, 2, 7, 7, 7, 16, RT_MASK_CAUSAL}, /* prefill */
        {2, 2, 1, 40, 33, 32, RT_MASK_CAUSAL}, /* decode */
        {2, 3, 6, 10, 10, 8, RT_MASK_BOOL},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int64_t B = cases[ci].b, H = cases[ci].h, TQ = cases[ci].tq, TC = cases[ci].tcap,
                      TKV = cases[ci].tkv, D = cases[ci].d;
        const rt_mask_kind mk = cases[ci].mk;
        print_message(" B %lld H %lld Tq %lld Tcap %lld tkv %lld D %lld mask %d\n", (long long)B,
                      (long long)H, (long long)TQ, (long long)TC, (long long)TKV, (long long)D,
                      (int)mk);
        pair q, k, v, att, o, o2, dout, dq, dk, dv, mask;
        P_rand(&q, DIMS(B, H, TQ, D), -1, 1);
        P_rand(&k, DIMS(B, H, TC, D), -1, 1);
        P_rand(&v, DIMS(B, H, TC, D), -1, 1);
        memset(&mask, 0, sizeof mask);
        if (mk == RT_MASK_BOOL) {
            alloc_both(&mask, RT_U8, DIMS(TQ, TKV));
            uint8_t *m = mask.c.data;
            for (int64_t i = 0; i < TQ * TKV; i++)
                m[i] = rt_rng_uniform(&R) < 0.6;
            for (int64_t j = 0; j < TKV; j++)
                m[2 * TKV + j] = 0; /* query 2 sees nothing: a zero row */
            m[3 * TKV + 4] = 1;
            OK(rt_tensor_copy(&mask.g, &mask.c, E));
        }
        P_out(&att, RT_F32, DIMS(B, H, TQ, TKV));
        P_out(&o, RT_F32, DIMS(B, H, TQ, D));
        P_out(&o2, RT_F32, DIMS(B, H, TQ, D));
        const rt_tensor *mc = mk == RT_MASK_BOOL ? &mask.c : NULL;
        const rt_tensor *mg = mk == RT_MASK_BOOL ? &mask.g : NULL;
        OK(rt_attention_fwd(&q.c, &k.c, &v.c, TKV, mk, mc, &att.c, &o.c, E));
        OK(rt_attention_fwd(&q.g, &k.g, &v.g, TKV, mk, mg, &att.g, &o.g, E));
        P_check("attention_fwd att", &att, TOL);
        P_check("attention_fwd o", &o, TOL);
        OK(rt_attention_fwd(&q.c, &k.c, &v.c, TKV, mk, mc, NULL, &o2.c, E));
        OK(rt_attention_fwd(&q.g, &k.g, &v.g, TKV, mk, mg, NULL, &o2.g, E));
        P_check("attention_fwd o (no att kept)", &o2, TOL);
        P_rand(&dout, DIMS(B, H, TQ, D), -1, 1);
        P_out(&dq, RT_F32, DIMS(B, H, TQ, D));
        P_kv_grad(&dk, B * H, TC, TKV, D, B, H);
        P_kv_grad(&dv, B * H, TC, TKV, D, B, H);
        OK(rt_attention_bwd(&q.c, &k.c, &v.c, TKV, &att.c, &dout.c, &dq.c, &dk.c, &dv.c, E));
        OK(rt_attention_bwd(&q.g, &k.g, &v.g, TKV, &att.g, &dout.g, &dq.g, &dk.g, &dv.g, E));
        P_check("attention_bwd dq", &dq, TOL);
        P_check("attention_bwd dk (tail untouched)", &dk, TOL);
        P_check("attention_bwd dv (tail untouched)", &dv, TOL);
        P_free(&q), P_free(&k), P_free(&v), P_free(&att), P_free(&o), P_free(&o2);
        P_free(&dout), P_free(&dq), P_free(&dk), P_free(&dv);
        if (mk == RT_MASK_BOOL)
            P_free(&mask);
    }
}

/* ------------------------------------------------------------ optimizers */

static void test_optimizers(void **state)
{
    (void)state;
    NEED_GPU();
    begin();
    static const rt_opt opts[] = {
        {.kind = RT_OPT_SGD, .lr = 0.1},
        {.kind = RT_OPT_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01},
        {.kind = RT_OPT_ADAMW, .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
         .weight_decay = 0.1},
    };
    for (int oi = 0; oi < 3; oi++) {
        rt_opt oc = opts[oi], og = opts[oi];
        rt_param pc[2], pg[2];
        const int64_t shapes[2][2] = {{13, 7}, {300, 1}};
        for (int i = 0; i < 2; i++) {
            OK(rt_param_init(&pc[i], "p", rt_cpu(), RT_F32, 2, shapes[i], E));
            OK(rt_param_init(&pg[i], "p", G, RT_F32, 2, shapes[i], E));
            OK(rt_init_uniform(&pc[i].w, &R, -1, 1, E));
            OK(rt_tensor_copy(&pg[i].w, &pc[i].w, E));
        }
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < 2; i++) { /* fresh gradients every step */
                OK(rt_init_uniform(&pc[i].g, &R, -1, 1, E));
                OK(rt_tensor_copy(&pg[i].g, &pc[i].g, E));
            }
            OK(rt_opt_step(&oc, pc, 2, E));
            OK(rt_opt_step(&og, pg, 2, E));
        }
        assert_int_equal(oc.step, og.step);
        const char *name[] = {"sgd", "sgd momentum + wd", "adamw"};
        for (int i = 0; i < 2; i++) {
            char what[80];
            pair w = {.c = pc[i].w, .g = pg[i].w};
            snprintf(what, sizeof what, "%s: w after 3 steps", name[oi]);
            P_check(what, &w, TOL);
            if (oi > 0) {
                pair m = {.c = pc[i].m, .g = pg[i].m};
                snprintf(what, sizeof what, "%s: m", name[oi]);
                P_check(what, &m, TOL);
            }
            if (oi == 2) {
                pair v = {.c = pc[i].v, .g = pg[i].v};
                snprintf(what, sizeof what, "%s: v", name[oi]);
                P_check(what, &v, TOL);
            }
            rt_param_free(&pc[i]);
            rt_param_free(&pg[i]);
        }
    }
}

/* ------------------------------------------------------------ float64 rejected */

static void test_f64_rejected(void **state)
{
    (void)state;
    NEED_GPU();
    rt_tensor a = {0}, y = {0};
    ps_err e = {0};
    if (rt_tensor_new2(&a, G, RT_F64, 3, 4, &e) != 0) {
        /* the allocator already refuses: also fine */
        print_message("F64 on CUDA refused at allocation: %s\n", e.msg);
        assert_int_equal(e.code, PS_EINPUT);
        return;
    }
    OK(rt_tensor_new2(&y, G, RT_F64, 3, 4, E));
    /* through the public function (its validation or the slot) ... */
    int rc = rt_add(&a, &a, &y, &e);
    print_message("rt_add on f64 CUDA tensors: %s\n", e.msg);
    /* ... and the slot itself, whatever the wrapper checks first */
    ps_err e2 = {0};
    int rc2 = rt_cuda_backend.add(&a, &a, &y, &e2);
    print_message("the add slot on f64 CUDA tensors: %s\n", e2.msg);
    rt_tensor_free(&a);
    rt_tensor_free(&y);
    assert_int_equal(rc, PS_EINPUT);
    assert_true(strstr(e.msg, "f64") || strstr(e.msg, "float64"));
    assert_int_equal(rc2, PS_EINPUT);
    assert_non_null(strstr(e2.msg, "float64 tensors are CPU-only"));
}

/* ------------------------------------------------------------ end to end */

/* A 2-layer MLP, x [32, 20] -> 24 (GELU) -> 5, softmax cross-entropy, SGD
 * with momentum: the same loss curve and final weights on both devices. */
static void mlp_run(rt_dev *d, uint64_t s, double *losses, int steps, rt_param *ps)
{
    rt_rng r;
    rt_rng_seed(&r, s);
    const int64_t N = 32, IN = 20, HID = 24, OUT = 5;
    OK(rt_param_init(&ps[0], "fc1.w", d, RT_F32, 2, SH(HID, IN), E));
    OK(rt_param_init(&ps[1], "fc1.b", d, RT_F32, 1, SH(HID), E));
    OK(rt_param_init(&ps[2], "fc2.w", d, RT_F32, 2, SH(OUT, HID), E));
    OK(rt_param_init(&ps[3], "fc2.b", d, RT_F32, 1, SH(OUT), E));
    OK(rt_init_fan_in(&ps[0].w, &r, IN, E));
    OK(rt_init_fan_in(&ps[1].w, &r, IN, E));
    OK(rt_init_fan_in(&ps[2].w, &r, HID, E));
    OK(rt_init_fan_in(&ps[3].w, &r, HID, E));
    rt_tensor x, lab, h, a, lg, pr, dlg, da, dh;
    OK(rt_tensor_new2(&x, d, RT_F32, N, IN, E));
    OK(rt_init_normal(&x, &r, 0, 1, E));
    OK(rt_tensor_new1(&lab, d, RT_I32, N, E));
    int32_t lh[32];
    for (int i = 0; i < N; i++)
        lh[i] = (int32_t)(rt_rng_next(&r) % OUT);
    OK(rt_tensor_from_host(&lab, lh, E));
    OK(rt_tensor_new2(&h, d, RT_F32, N, HID, E));
    OK(rt_tensor_new2(&a, d, RT_F32, N, HID, E));
    OK(rt_tensor_new2(&lg, d, RT_F32, N, OUT, E));
    OK(rt_tensor_new2(&pr, d, RT_F32, N, OUT, E));
    OK(rt_tensor_new2(&dlg, d, RT_F32, N, OUT, E));
    OK(rt_tensor_new2(&da, d, RT_F32, N, HID, E));
    OK(rt_tensor_new2(&dh, d, RT_F32, N, HID, E));
    rt_opt o = {.kind = RT_OPT_SGD, .lr = 0.2, .momentum = 0.9};
    for (int st = 0; st < steps; st++) {
        OK(rt_params_zero_grad(ps, 4, E));
        OK(rt_linear_fwd(&x, &ps[0].w, &ps[1].w, &h, E));
        OK(rt_act_fwd(RT_GELU, 0, &h, &a, E));
        OK(rt_linear_fwd(&a, &ps[2].w, &ps[3].w, &lg, E));
        OK(rt_softmax_xent_fwd(&lg, &lab, &pr, &losses[st], E));
        OK(rt_softmax_xent_bwd(&pr, &lab, 1.0, &dlg, E));
        OK(rt_linear_bwd(&a, &ps[2].w, &dlg, &da, &ps[2].g, &ps[3].g, E));
        OK(rt_act_bwd(RT_GELU, 0, &h, &a, &da, &dh, E));
        OK(rt_linear_bwd(&x, &ps[0].w, &dh, NULL, &ps[0].g, &ps[1].g, E));
        OK(rt_opt_step(&o, ps, 4, E));
    }
    OK(rt_dev_sync(d, E));
    rt_tensor *ts[] = {&x, &lab, &h, &a, &lg, &pr, &dlg, &da, &dh};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        rt_tensor_free(ts[i]);
}

static void test_mlp_end_to_end(void **state)
{
    (void)state;
    NEED_GPU();
    uint64_t s = seed();
    enum { STEPS = 8 };
    double lc[STEPS], lg[STEPS];
    rt_param pc[4], pg[4];
    mlp_run(rt_cpu(), s, lc, STEPS, pc);
    mlp_run(G, s, lg, STEPS, pg);
    for (int i = 0; i < STEPS; i++) {
        char what[48];
        snprintf(what, sizeof what, "MLP loss, step %d", i);
        check_scalar(what, lg[i], lc[i], 1e-4);
    }
    assert_true(lc[STEPS - 1] < lc[0]); /* it learns */
    for (int i = 0; i < 4; i++) {
        pair w = {.c = pc[i].w, .g = pg[i].w};
        P_check(pc[i].name, &w, 1e-4);
        rt_param_free(&pc[i]);
        rt_param_free(&pg[i]);
    }
}

/* ------------------------------------------------------------ set-up */

static int group_setup(void **state)
{
    (void)state;
    if (!gpu_setup_seed())
        return 0;
    ps_err e = {0};
    G = rt_cuda_new(0, &e);
    if (!G) {
        snprintf(no_gpu, sizeof no_gpu, "rt_cuda_new: %s", e.msg);
        return 0;
    }
    gpu_setup_announce();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rt_dev_free(G);
    G = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_table),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_concat_split_heads),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_convt2d),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_softmax_losses),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_f64_rejected),
        cmocka_unit_test(test_mlp_end_to_end),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
