/* real/ runtime core: tensors (allocation, views, copies, fill), the seeded
 * RNG and initialisers, the elementwise helpers, column concat/split and
 * head split/merge (values and adjointness), parameters, and the CUDA
 * device when there is one (else the error it must give). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "real/rt.h"

#include "tests/rt_testutil.h"

static rt_rng g_rng;

static double dotd(const rt_tensor *a, const rt_tensor *b)
{
    double s = 0;
    for (int64_t i = 0; i < a->numel; i++)
        s += rt_f64(a)[i] * rt_f64(b)[i];
    return s;
}

static void test_tensor_basics(void **state)
{
    (void)state;
    assert_int_equal(rt_dtype_size(RT_F32), 4);
    assert_int_equal(rt_dtype_size(RT_F64), 8);
    assert_int_equal(rt_dtype_size(RT_I32), 4);
    assert_int_equal(rt_dtype_size(RT_U8), 1);
    assert_string_equal(rt_dtype_name(RT_F64), "f64");
    assert_string_equal(rt_dev_name(rt_cpu()), "cpu");
    assert_int_equal(rt_dev_kind(rt_cpu()), RT_CPU);
    assert_null(rt_dev_cuda_ctx(rt_cpu()));
    OK(rt_dev_sync(rt_cpu(), E));

    rt_tensor t;
    OK(rt_tensor_new4(&t, rt_cpu(), RT_F32, 32, 1, 28, 28, E));
    char buf[64];
    assert_string_equal(rt_tensor_desc(&t, buf, sizeof buf), "[32, 1, 28, 28] f32 cpu");
    assert_int_equal(t.numel, 32 * 28 * 28);
    assert_int_equal(rt_tensor_bytes(&t), 4 * 32 * 28 * 28);
    assert_int_equal((uintptr_t)t.data % 64, 0);
    assert_int_equal(t.owner, 1);
    for (int64_t i = 0; i < t.numel; i++)
        assert_true(rt_f32(&t)[i] == 0.0f);
    assert_null(rt_f64(&t));
    assert_null(rt_i32(&t));

    /* views */
    rt_tensor v, r;
    int64_t s2[2] = {32, 784};
    OK(rt_tensor_reshape(&v, &t, 2, s2, E));
    assert_ptr_equal(v.data, t.data);
    assert_int_equal(v.owner, 0);
    assert_int_equal(v.shape[1], 784);
    OK(rt_tensor_rows(&r, &v, 4, 3, E));
    assert_ptr_equal(r.data, rt_f32(&t) + 4 * 784);
    assert_int_equal(r.numel, 3 * 784);
    rt_f32(&r)[0] = 7;
    assert_true(rt_f32(&t)[4 * 784] == 7);
    rt_tensor_free(&r); /* a view: frees nothing */
    rt_tensor_free(&v);
    ps_err e = {0};
    int64_t bad[2] = {31, 784};
    assert_int_equal(rt_tensor_reshape(&v, &t, 2, bad, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_tensor_reshape"));
    assert_int_equal(rt_tensor_rows(&r, &t, 30, 3, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rows [30, 33)"));

    /* bad shapes */
    rt_tensor u;
    int64_t z[2] = {3, 0};
    assert_int_equal(rt_tensor_alloc(&u, rt_cpu(), RT_F32, 2, z, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "dim 1 is 0"));
    assert_int_equal(rt_tensor_alloc(&u, rt_cpu(), RT_F32, 6, z, &e), PS_EINPUT);
    rt_tensor_free(&u); /* zeroed: fine */
    rt_tensor_free(NULL);

    /* copies, fill, zero */
    rt_tensor a, b, c;
    OK(rt_tensor_new2(&a, rt_cpu(), RT_F64, 3, 4, E));
    OK(rt_tensor_new2(&b, rt_cpu(), RT_F64, 3, 4, E));
    OK(rt_tensor_new1(&c, rt_cpu(), RT_I32, 5, E));
    double h[12], back[12];
    for (int i = 0; i < 12; i++)
        h[i] = i * 0.5 - 2;
    OK(rt_tensor_from_host(&a, h, E));
    OK(rt_tensor_copy(&b, &a, E));
    OK(rt_tensor_to_host(&b, back, E));
    assert_memory_equal(h, back, sizeof h);
    OK(rt_tensor_fill(&b, 2.25, E));
    assert_true(rt_f64(&b)[11] == 2.25);
    OK(rt_tensor_fill(&c, 3, E));
    assert_int_equal(rt_i32(&c)[4], 3);
    OK(rt_tensor_zero(&b, E));
    assert_true(rt_f64(&b)[5] == 0);
    assert_int_equal(rt_tensor_copy(&b, &t, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_tensor_copy: dst"));
    rt_tensor_free(&a);
    rt_tensor_free(&b);
    rt_tensor_free(&c);
    rt_tensor_free(&t);
    assert_null(t.data);
}

static void test_rng(void **state)
{
    (void)state;
    rt_rng a, b;
    rt_rng_seed(&a, 0);
    /* splitmix64's first output from 0 seeds the first state word */
    assert_true(a.s[0] == 0xe220a8397b1dcdafull);
    rt_rng_seed(&a, 42);
    rt_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(rt_rng_next(&a) == rt_rng_next(&b));
    rt_rng_seed(&b, 43);
    int same = 0;
    for (int i = 0; i < 100; i++)
        same += rt_rng_next(&a) == rt_rng_next(&b);
    assert_int_equal(same, 0);
    double s = 0, ss = 0, mn = 1, mx = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        double u = rt_rng_uniform(&a);
        assert_true(u >= 0 && u < 1);
        mn = fmin(mn, u);
        mx = fmax(mx, u);
        double g = rt_rng_normal(&a);
        assert_true(isfinite(g));
        s += g;
        ss += g * g;
    }
    assert_true(mn < 0.001 && mx > 0.999);
    assert_true(fabs(s / n) < 0.03);              /* 4 standard errors */
    assert_true(fabs(ss / n - 1) < 0.05);

    /* initialisers: same seed, same numbers in f32 and f64 */
    rt_tensor t32, t64;
    OK(rt_tensor_new2(&t32, rt_cpu(), RT_F32, 10, 20, E));
    OK(rt_tensor_new2(&t64, rt_cpu(), RT_F64, 10, 20, E));
    rt_rng_seed(&a, 7);
    rt_rng_seed(&b, 7);
    OK(rt_init_fan_in(&t32, &a, 25, E));
    OK(rt_init_fan_in(&t64, &b, 25, E));
    for (int i = 0; i < 200; i++) {
        assert_true(fabs(rt_f64(&t64)[i]) <= 0.2);
        assert_true(rt_f32(&t32)[i] == (float)rt_f64(&t64)[i]);
    }
    OK(rt_init_normal(&t64, &a, 5, 0.01, E));
    for (int i = 0; i < 200; i++)
        assert_true(fabs(rt_f64(&t64)[i] - 5) < 0.07);
    ps_err e = {0};
    assert_int_equal(rt_init_fan_in(&t64, &a, 0, &e), PS_EINPUT);
    rt_tensor ti;
    OK(rt_tensor_new1(&ti, rt_cpu(), RT_I32, 3, E));
    assert_int_equal(rt_init_uniform(&ti, &a, 0, 1, &e), PS_EINPUT);
    rt_tensor_free(&ti);
    rt_tensor_free(&t32);
    rt_tensor_free(&t64);
}

static void test_elementwise(void **state)
{
    (void)state;
    rt_tensor a, b, y;
    OK(rt_tensor_new2(&a, rt_cpu(), RT_F32, 5, 7, E));
    OK(rt_tensor_new2(&b, rt_cpu(), RT_F32, 5, 7, E));
    OK(rt_tensor_new2(&y, rt_cpu(), RT_F32, 5, 7, E));
    for (int i = 0; i < 35; i++) {
        rt_f32(&a)[i] = (float)i;
        rt_f32(&b)[i] = (float)(2 * i + 1);
    }
    OK(rt_add(&a, &b, &y, E));
    OK(rt_axpy(-0.5, &b, &y, E)); /* y = a + 0.5 b = 2i + 0.5 */
    OK(rt_scale(&y, 2, E));       /* 4i + 1 */
    double s;
    OK(rt_sum(&y, &s, E));
    assert_true(s == 4.0 * (34 * 35 / 2) + 35);
    for (int i = 0; i < 35; i++)
        assert_true(rt_f32(&y)[i] == 4.0f * i + 1);
    rt_tensor d;
    OK(rt_tensor_new2(&d, rt_cpu(), RT_F64, 5, 7, E));
    ps_err e = {0};
    assert_int_equal(rt_add(&a, &d, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_add: b:"));
    rt_tensor w;
    OK(rt_tensor_new2(&w, rt_cpu(), RT_F32, 7, 5, E));
    assert_int_equal(rt_axpy(1, &a, &w, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_axpy: y:"));
    rt_tensor_free(&a);
    rt_tensor_free(&b);
    rt_tensor_free(&y);
    rt_tensor_free(&d);
    rt_tensor_free(&w);
}

static void test_concat_split(void **state)
{
    (void)state;
    rt_tensor x0, x1, x2, y, r, d0, d1, d2;
    OK(rt_tensor_new2(&x0, rt_cpu(), RT_F64, 4, 2, E));
    OK(rt_tensor_new2(&x1, rt_cpu(), RT_F64, 4, 3, E));
    OK(rt_tensor_new2(&x2, rt_cpu(), RT_F64, 4, 1, E));
    OK(rt_tensor_new2(&y, rt_cpu(), RT_F64, 4, 6, E));
    OK(rt_tensor_new2(&r, rt_cpu(), RT_F64, 4, 6, E));
    OK(rt_tensor_new2(&d0, rt_cpu(), RT_F64, 4, 2, E));
    OK(rt_tensor_new2(&d1, rt_cpu(), RT_F64, 4, 3, E));
    OK(rt_tensor_new2(&d2, rt_cpu(), RT_F64, 4, 1, E));
    OK(rt_init_uniform(&x0, &g_rng, -1, 1, E));
    OK(rt_init_uniform(&x1, &g_rng, -1, 1, E));
    OK(rt_init_uniform(&x2, &g_rng, -1, 1, E));
    OK(rt_init_uniform(&r, &g_rng, -1, 1, E));
    const rt_tensor *xs[3] = {&x0, &x1, &x2};
    OK(rt_concat_cols(xs, 3, &y, E));
    for (int i = 0; i < 4; i++) {
        assert_true(rt_f64(&y)[i * 6 + 1] == rt_f64(&x0)[i * 2 + 1]);
        assert_true(rt_f64(&y)[i * 6 + 2] == rt_f64(&x1)[i * 3 + 0]);
        assert_true(rt_f64(&y)[i * 6 + 5] == rt_f64(&x2)[i]);
    }
    rt_tensor *ds[3] = {&d0, &d1, &d2};
    OK(rt_split_cols(&r, ds, 3, E));
    /* adjoint: <concat(xs), r> == sum <x_i, split(r)_i> */
    double lhs = dotd(&y, &r), rhs = dotd(&x0, &d0) + dotd(&x1, &d1) + dotd(&x2, &d2);
    assert_true(fabs(lhs - rhs) < 1e-14);
    /* split inverts concat */
    OK(rt_split_cols(&y, ds, 3, E));
    assert_memory_equal(d1.data, x1.data, rt_tensor_bytes(&x1));
    ps_err e = {0};
    assert_int_equal(rt_concat_cols(xs, 2, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "add up to 5"));
    rt_tensor bad;
    OK(rt_tensor_new2(&bad, rt_cpu(), RT_F64, 3, 3, E));
    const rt_tensor *xb[3] = {&x0, &bad, &x2};
    assert_int_equal(rt_concat_cols(xb, 3, &y, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "xs[1]"));
    FREE_TENSORS(&x0, &x1, &x2, &y, &r, &d0, &d1, &d2, &bad);
}

static void test_heads(void **state)
{
    (void)state;
    const int64_t B = 2, T = 3, H = 4, D = 5;
    rt_tensor x, y, z, m, back;
    OK(rt_tensor_new4(&x, rt_cpu(), RT_F64, B, T, H, D, E));
    OK(rt_tensor_new4(&y, rt_cpu(), RT_F64, B, H, T, D, E));
    OK(rt_tensor_new4(&z, rt_cpu(), RT_F64, B, H, T, D, E));
    OK(rt_tensor_new4(&m, rt_cpu(), RT_F64, B, T, H, D, E));
    OK(rt_tensor_new4(&back, rt_cpu(), RT_F64, B, T, H, D, E));
    OK(rt_init_uniform(&x, &g_rng, -1, 1, E));
    OK(rt_init_uniform(&z, &g_rng, -1, 1, E));
    OK(rt_split_heads(&x, &y, E));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++)
                    assert_true(rt_f64(&y)[((b * H + h) * T + t) * D + d] ==
                                rt_f64(&x)[((b * T + t) * H + h) * D + d]);
    OK(rt_merge_heads(&y, &back, E));
    assert_memory_equal(back.data, x.data, rt_tensor_bytes(&x));
    OK(rt_merge_heads(&z, &m, E));
    assert_true(fabs(dotd(&y, &z) - dotd(&x, &m)) < 1e-14); /* adjoint */
    ps_err e = {0};
    assert_int_equal(rt_split_heads(&x, &back, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "rt_split_heads: y:"));
    FREE_TENSORS(&x, &y, &z, &m, &back);
}

static void test_params(void **state)
{
    (void)state;
    rt_param ps[2];
    int64_t s0[2] = {3, 4}, s1[1] = {3};
    OK(rt_param_init(&ps[0], "fc.w", rt_cpu(), RT_F32, 2, s0, E));
    OK(rt_param_init(&ps[1], "fc.b", rt_cpu(), RT_F32, 1, s1, E));
    assert_string_equal(ps[0].name, "fc.w");
    assert_int_equal(rt_params_numel(ps, 2), 15);
    assert_null(ps[0].m.data);
    OK(rt_tensor_fill(&ps[1].g, 1, E));
    OK(rt_params_zero_grad(ps, 2, E));
    assert_true(rt_f32(&ps[1].g)[2] == 0);
    rt_opt o = {.kind = RT_OPT_ADAMW, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    OK(rt_opt_step(&o, ps, 2, E));
    assert_non_null(ps[0].m.data);
    assert_non_null(ps[0].v.data);
    ps_err e = {0};
    rt_param q;
    assert_int_equal(rt_param_init(&q, "a_name_much_longer_than_the_forty_seven_characters_allowed",
                                   rt_cpu(), RT_F32, 1, s1, &e),
                     PS_EINPUT);
    assert_int_equal(rt_param_init(&q, "i", rt_cpu(), RT_I32, 1, s1, &e), PS_EINPUT);
    rt_param_free(&ps[0]);
    rt_param_free(&ps[1]);
    assert_null(ps[0].w.data);
}

/* A GPU when there is one (tensors, copies, a layer against the CPU);
 * otherwise rt_cuda_new must fail with PS_ERUN. */
static void test_cuda(void **state)
{
    (void)state;
    ps_err e = {0};
    rt_dev *d = rt_cuda_new(0, &e);
    if (!d) {
        assert_int_equal(e.code, PS_ERUN);
        assert_true(strlen(e.msg) > 0);
        return;
    }
    assert_int_equal(rt_dev_kind(d), RT_CUDA);
    assert_string_equal(rt_dev_name(d), "cuda:0");
    assert_non_null(rt_dev_cuda_ctx(d));
    rt_tensor h, g, g2, back, v;
    OK(rt_tensor_new2(&h, rt_cpu(), RT_F32, 6, 5, E));
    OK(rt_tensor_new2(&g, d, RT_F32, 6, 5, E));
    OK(rt_tensor_new2(&g2, d, RT_F32, 6, 5, E));
    OK(rt_tensor_new2(&back, rt_cpu(), RT_F32, 6, 5, E));
    float z[30];
    OK(rt_tensor_to_host(&g, z, E)); /* zero-filled */
    for (int i = 0; i < 30; i++)
        assert_true(z[i] == 0);
    assert_null(rt_f32(&g));
    OK(rt_init_uniform(&h, &g_rng, -1, 1, E));
    OK(rt_tensor_copy(&g, &h, E));   /* H2D */
    OK(rt_tensor_copy(&g2, &g, E));  /* D2D */
    OK(rt_tensor_copy(&back, &g2, E)); /* D2H */
    assert_memory_equal(back.data, h.data, rt_tensor_bytes(&h));
    OK(rt_tensor_rows(&v, &g2, 2, 3, E));
    float rows[15];
    OK(rt_tensor_to_host(&v, rows, E));
    assert_memory_equal(rows, rt_f32(&h) + 10, sizeof rows);
    OK(rt_tensor_fill(&g2, 1.5, E));
    OK(rt_tensor_to_host(&g2, z, E));
    assert_true(z[29] == 1.5f);
    rt_rng r1, r2;
    rt_rng_seed(&r1, 9);
    rt_rng_seed(&r2, 9);
    OK(rt_init_normal(&g2, &r1, 0, 1, E));
    OK(rt_init_normal(&back, &r2, 0, 1, E));
    OK(rt_tensor_to_host(&g2, z, E));
    assert_memory_equal(z, back.data, sizeof z); /* same numbers on any device */
    /* mixing devices is refused */
    assert_int_equal(rt_add(&h, &g, &g2, &e), PS_EINPUT);
    OK(rt_dev_sync(d, E));
    rt_tensor_free(&h);
    rt_tensor_free(&g);
    rt_tensor_free(&g2);
    rt_tensor_free(&back);
    rt_dev_free(d);
}

int main(void)
{
    rt_rng_seed(&g_rng, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_basics), cmocka_unit_test(test_rng),
        cmocka_unit_test(test_elementwise),   cmocka_unit_test(test_concat_split),
        cmocka_unit_test(test_heads),         cmocka_unit_test(test_params),
        cmocka_unit_test(test_cuda),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
