/* kernels/cpu_qgemm: exact integer equality of every dispatch path (scalar,
 * AVX2, AVX-VNNI) against the plain reference on random shapes including odd sizes and
 * k not a multiple of 32 / of 2, both weight formats and both activation
 * types; the saturation corner (a = 255 or -128 against w = ±127 over long
 * k, which a naive maddubs on u8 would get wrong); the int4 pack round trip;
 * the dequant epilogue on a hand case; the AVX-VNNI path likewise when the
 * CPU has it (else it falls back and the comparison is still made). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_qgemm.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 11);
}

/* Random problem, run both paths, compare to the reference exactly. */
static void check_case(int64_t m, int64_t n, int64_t k, ps_qact at, ps_qwfmt wf, int extreme)
{
    int64_t lda = k + (int64_t)(rnd() % 3), ldc = n + 1;
    int64_t ldw = wf == PS_QW_INT8 ? k + (int64_t)(rnd() % 2) : ps_qint4_row_bytes(k);
    uint8_t *a = malloc((size_t)(m * lda));
    int8_t *codes = malloc((size_t)(n * k));
    uint8_t *w = calloc((size_t)(n * ldw), 1);
    int32_t *c0 = malloc((size_t)(m * ldc) * 4), *c1 = malloc((size_t)(m * ldc) * 4),
            *c2 = malloc((size_t)(m * ldc) * 4), *c3 = malloc((size_t)(m * ldc) * 4);
    for (int64_t i = 0; i < m * lda; i++) {
        if (extreme)
            a[i] = at == PS_QACT_U8 ? 255 : 0x80; /* 255 or -128 */
        else
            a[i] = (uint8_t)rnd();
    }
    int lim = wf == PS_QW_INT8 ? 127 : 7;
    for (int64_t i = 0; i < n * k; i++)
        codes[i] = extreme ? (int8_t)((i & 1) ? lim : lim) * (((i / k) & 1) ? -1 : 1)
                           : (int8_t)((int)(rnd() % (2 * lim + 1)) - lim);
    if (wf == PS_QW_INT8) {
        for (int64_t i = 0; i < n; i++)
            memcpy(w + i * ldw, codes + i * k, (size_t)k);
    } else {
        ps_qpack_int4(codes, n, k, w);
    }
    ps_qgemm_ref(m, n, k, a, at, lda, w, wf, ldw, c0, ldc);
    assert_int_equal(ps_qgemm_s32(PS_QPATH_SCALAR, m, n, k, a, at, lda, w, wf, ldw, c1, ldc), 0);
    assert_int_equal(ps_qgemm_s32(PS_QPATH_AVX2, m, n, k, a, at, lda, w, wf, ldw, c2, ldc), 0);
    assert_int_equal(ps_qgemm_s32(PS_QPATH_VNNI, m, n, k, a, at, lda, w, wf, ldw, c3, ldc), 0);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            int32_t r = c0[i * ldc + j];
            if (c1[i * ldc + j] != r || c2[i * ldc + j] != r || c3[i * ldc + j] != r)
                fail_msg("m%lld n%lld k%lld at%d wf%d: C[%lld,%lld] ref %d scalar %d avx2 %d "
                         "vnni %d",
                         (long long)m, (long long)n, (long long)k, at, wf, (long long)i,
                         (long long)j, r, c1[i * ldc + j], c2[i * ldc + j], c3[i * ldc + j]);
        }
    if (extreme) { /* closed form: every product is ±|a|·lim */
        int64_t amag = at == PS_QACT_U8 ? 255 : -128;
        assert_int_equal(c0[0], (int32_t)(amag * lim * k));
    }
    free(a);
    free(codes);
    free(w);
    free(c0);
    free(c1);
    free(c2);
    free(c3);
}

static void test_random_shapes(void **st)
{
    (void)st;
    static const int64_t dims[][3] = {{1, 1, 1},    {1, 7, 31},   {3, 5, 32},  {4, 2, 33},
                                      {5, 3, 63},   {9, 11, 64},  {17, 13, 97}, {1, 130, 300},
                                      {66, 129, 45}, {7, 3, 1030}, {2, 2, 2049}, {64, 32, 9}};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int at = 0; at < 2; at++)
            for (int wf = 0; wf < 2; wf++)
                check_case(dims[d][0], dims[d][1], dims[d][2], (ps_qact)at, (ps_qwfmt)wf, 0);
}

static void test_saturation_corner(void **st)
{
    (void)st;
    /* u8 255 x s8 127: a maddubs pair would be 64770 > 32767. */
    for (int at = 0; at < 2; at++)
        for (int wf = 0; wf < 2; wf++) {
            check_case(5, 4, 96, (ps_qact)at, (ps_qwfmt)wf, 1);
            check_case(1, 3, 4099, (ps_qact)at, (ps_qwfmt)wf, 1);
        }
}

static void test_int4_pack(void **st)
{
    (void)st;
    int8_t c[2 * 5] = {-8, 7, -1, 0, 3, 1, -7, 2, -3, 5};
    uint8_t p[2 * 3];
    assert_int_equal(ps_qint4_row_bytes(5), 3);
    ps_qpack_int4(c, 2, 5, p);
    assert_int_equal(p[0], 0x78);        /* low nibble -8 = 0x8, high 7 */
    assert_int_equal(p[1], 0x0F);        /* -1 low, 0 high */
    assert_int_equal(p[2], 0x03);        /* odd tail: high nibble 0 */
    assert_int_equal(p[3], (0x9 << 4) | 1);
    int8_t back[10];
    ps_qunpack_int4(p, 2, 5, back);
    assert_memory_equal(back, c, 10);
}

static void test_dequant_and_quant(void **st)
{
    (void)st;
    int32_t c[4] = {10, -20, 3, 0};
    float ws[2] = {0.5f, 0.25f}, b[2] = {1.0f, -1.0f}, o[4];
    ps_qgemm_dequant(2, 2, c, 2, 0.1f, ws, b, 1, o, 2);
    assert_float_equal(o[0], 10 * 0.05f + 1, 1e-6);
    assert_float_equal(o[1], 0, 0); /* -20·0.025 − 1 < 0 → ReLU */
    assert_float_equal(o[2], 3 * 0.05f + 1, 1e-6);
    assert_float_equal(o[3], 0, 0);
    float x[5] = {-1, 0.26f, 0.24f, 100, 0.5f};
    uint8_t q[5];
    ps_qquant_u8(x, 5, 0.5f, q);
    assert_int_equal(q[0], 0);
    assert_int_equal(q[1], 1);
    assert_int_equal(q[2], 0);
    assert_int_equal(q[3], 200);
    assert_int_equal(q[4], 1);
    /* bad sizes */
    assert_int_equal(ps_qgemm_s32(PS_QPATH_AUTO, 1, 1, 0, x, PS_QACT_U8, 1, q, PS_QW_INT8, 1,
                                  c, 1),
                     -1);
}

static void test_paths(void **st)
{
    (void)st;
    /* what this CPU runs: print it, and check the fallbacks resolve */
    print_message("qgemm paths: auto=%s avx2=%d vnni=%d\n", ps_qgemm_path_name(PS_QPATH_AUTO),
                  ps_qgemm_have_avx2(), ps_qgemm_have_vnni());
    assert_string_equal(ps_qgemm_path_name(PS_QPATH_SCALAR), "scalar");
    if (ps_qgemm_have_vnni())
        assert_string_equal(ps_qgemm_path_name(PS_QPATH_AUTO), "avxvnni");
    else if (ps_qgemm_have_avx2())
        assert_string_equal(ps_qgemm_path_name(PS_QPATH_VNNI), "avx2");
}

int main(void)
{
    const struct CMUnitTest t[] = {cmocka_unit_test(test_random_shapes),
                                   cmocka_unit_test(test_saturation_corner),
                                   cmocka_unit_test(test_int4_pack),
                                   cmocka_unit_test(test_dequant_and_quant),
                                   cmocka_unit_test(test_paths)};
    return cmocka_run_group_tests(t, NULL, NULL);
}
