/* sim/quant/quantizer: the deployment quantizer — exact small cases by hand,
 * idempotence, the |Q(w) − w| ≤ s/2 bound, sizes with scales, bit packing
 * round trip, Δ4/Δ8 ≈ (127/7)² on Gaussian weights, activation calibration
 * (max, nearest-rank percentile) and unsigned fake-quant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/quant/quantizer.h"
#include "sim/specdec/rng.h"

static void near(double a, double b, double tol, const char *what, int line)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.9g, expected %.9g (tol %g)", line, what, a, b, tol);
}
#define NEAR(a, b, t) near((a), (b), (t), #a, __LINE__)

static double gauss(sd_rng *r)
{
    double u1 = sd_rng_u01(r), u2 = sd_rng_u01(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void test_qmax(void **st)
{
    (void)st;
    assert_int_equal(psq_qmax_signed(2), 1);
    assert_int_equal(psq_qmax_signed(3), 3);
    assert_int_equal(psq_qmax_signed(4), 7);
    assert_int_equal(psq_qmax_signed(8), 127);
    assert_int_equal(psq_qmax_unsigned(2), 3);
    assert_int_equal(psq_qmax_unsigned(8), 255);
}

/* By hand: w = {1.0, -0.5, 0.2, 0.0, -1.0, 0.3}, 3 bits per tensor:
 * s = 1/3; w/s = 3, -1.5, 0.6, 0, -3, 0.9 → q = 3, -2 (half away), 1, 0, -3, 1.
 * Q = 1, -2/3, 1/3, 0, -1, 1/3.  err² = (1/6)² + (2/15)² + (1/30)². */
static void test_hand_per_tensor(void **st)
{
    (void)st;
    const float w[6] = {1.0f, -0.5f, 0.2f, 0.0f, -1.0f, 0.3f};
    psq_wspec sp = {.bits = 3, .gran = PSQ_PER_TENSOR};
    int8_t q[6];
    float s[1];
    ps_err e = {0};
    assert_int_equal(psq_quantize_weights(w, 1, 6, &sp, q, s, &e), 0);
    const int8_t want[6] = {3, -2, 1, 0, -3, 1};
    for (int i = 0; i < 6; i++)
        assert_int_equal(q[i], want[i]);
    NEAR(s[0], 1.0 / 3.0, 1e-7);
    float out[6];
    double err2 = -1;
    assert_int_equal(psq_fake_quant_weights(w, 1, 6, &sp, out, &err2, &e), 0);
    const double wq[6] = {1.0, -2.0 / 3, 1.0 / 3, 0.0, -1.0, 1.0 / 3};
    double ref = 0;
    for (int i = 0; i < 6; i++) {
        NEAR(out[i], wq[i], 1e-6);
        ref += (wq[i] - w[i]) * (wq[i] - w[i]);
    }
    NEAR(err2, 1.0 / 36 + 4.0 / 225 + 1.0 / 900, 1e-6);
    NEAR(err2, ref, 1e-6);
    NEAR(psq_weight_err2(w, 1, 6, &sp, &e), err2, 0);
    /* 2 bits: qmax 1, s = 1 → q = 1, -1 (−0.5 rounds away), 0, 0, -1, 0 */
    sp.bits = 2;
    assert_int_equal(psq_quantize_weights(w, 1, 6, &sp, q, s, &e), 0);
    const int8_t want2[6] = {1, -1, 0, 0, -1, 0};
    for (int i = 0; i < 6; i++)
        assert_int_equal(q[i], want2[i]);
}

/* Per channel: rows {4, -2, 1} and {0.1, 0.05, -0.1} at 4 bits:
 * s0 = 4/7, q = 7, -3.5→-4, 1.75→2 ; s1 = 0.1/7, q = 7, 3.5→4, -7. */
static void test_hand_per_channel(void **st)
{
    (void)st;
    const float w[6] = {4.0f, -2.0f, 1.0f, 0.1f, 0.05f, -0.1f};
    psq_wspec sp = {.bits = 4, .gran = PSQ_PER_CHANNEL};
    int8_t q[6];
    float s[2];
    ps_err e = {0};
    assert_int_equal(psq_weight_scales(w, 2, 3, &sp, s, &e), 2);
    NEAR(s[0], 4.0 / 7, 1e-7);
    NEAR(s[1], 0.1 / 7, 1e-8);
    assert_int_equal(psq_quantize_weights(w, 2, 3, &sp, q, s, &e), 0);
    const int8_t want[6] = {7, -4, 2, 7, 4, -7};
    for (int i = 0; i < 6; i++)
        assert_int_equal(q[i], want[i]);
    /* per tensor the second row collapses: s = 4/7 → all 0 */
    sp.gran = PSQ_PER_TENSOR;
    assert_int_equal(psq_quantize_weights(w, 2, 3, &sp, q, s, &e), 0);
    assert_int_equal(q[3], 0);
    assert_int_equal(q[4], 0);
    assert_int_equal(q[5], 0);
    /* all-zero group: scale 0, codes 0, no NaN */
    const float z[4] = {0, 0, 0, 0};
    float out[4];
    double err2 = -1;
    sp.gran = PSQ_PER_CHANNEL;
    assert_int_equal(psq_fake_quant_weights(z, 2, 2, &sp, out, &err2, &e), 0);
    for (int i = 0; i < 4; i++)
        assert_true(out[i] == 0.0f);
    assert_true(err2 == 0.0);
}

static void test_bound_idempotent(void **st)
{
    (void)st;
    sd_rng r;
    sd_rng_seed(&r, 7);
    enum { C = 16, P = 75, N = C * P };
    float *w = malloc(N * sizeof *w), *q1 = malloc(N * sizeof *w), *q2 = malloc(N * sizeof *w);
    float s[C];
    for (int i = 0; i < N; i++)
        w[i] = (float)(gauss(&r) * (1 + i / P));
    ps_err e = {0};
    const int bits[5] = {2, 3, 4, 6, 8};
    for (int g = 0; g < 2; g++)
        for (int k = 0; k < 5; k++) {
            psq_wspec sp = {.bits = bits[k], .gran = g ? PSQ_PER_CHANNEL : PSQ_PER_TENSOR};
            int ns = psq_weight_scales(w, C, P, &sp, s, &e);
            assert_int_equal(ns, g ? C : 1);
            double err2 = 0;
            assert_int_equal(psq_fake_quant_weights(w, C, P, &sp, q1, &err2, &e), 0);
            double ref = 0;
            for (int i = 0; i < N; i++) {
                float sc = g ? s[i / P] : s[0];
                double d = fabs((double)q1[i] - w[i]);
                if (!(d <= sc / 2 * (1 + 1e-6)))
                    fail_msg("bits %d gran %d elem %d: |Q-w| %g > s/2 %g", bits[k], g, i, d,
                             sc / 2.0);
                ref += d * d;
            }
            NEAR(err2, ref, 1e-9 * ref + 1e-30);
            /* idempotent: Q(Q(w)) = Q(w) exactly */
            assert_int_equal(psq_fake_quant_weights(q1, C, P, &sp, q2, NULL, &e), 0);
            for (int i = 0; i < N; i++)
                if (q2[i] != q1[i])
                    fail_msg("bits %d gran %d: not idempotent at %d: %.9g vs %.9g", bits[k], g,
                             i, q2[i], q1[i]);
            /* in place equals out of place */
            memcpy(q2, w, N * sizeof *w);
            assert_int_equal(psq_fake_quant_weights(q2, C, P, &sp, q2, NULL, &e), 0);
            assert_memory_equal(q2, q1, N * sizeof *w);
        }
    free(w);
    free(q1);
    free(q2);
}

/* Gaussian weights, per tensor: ‖Q4 − W‖² / ‖Q8 − W‖² ≈ (127/7)² ≈ 329 (the
 * uniform-noise model s²/12 per element; both scales share max|w|). */
static void test_delta_ratio(void **st)
{
    (void)st;
    sd_rng r;
    sd_rng_seed(&r, 11);
    enum { N = 20000 };
    float *w = malloc(N * sizeof *w);
    for (int i = 0; i < N; i++)
        w[i] = (float)(0.05 * gauss(&r));
    ps_err e = {0};
    for (int g = 0; g < 2; g++) {
        psq_wspec s4 = {.bits = 4, .gran = g ? PSQ_PER_CHANNEL : PSQ_PER_TENSOR};
        psq_wspec s8 = {.bits = 8, .gran = s4.gran};
        double d4 = psq_weight_err2(w, g ? 100 : 1, g ? N / 100 : N, &s4, &e);
        double d8 = psq_weight_err2(w, g ? 100 : 1, g ? N / 100 : N, &s8, &e);
        double want = (127.0 / 7) * (127.0 / 7);
        double ratio = d4 / d8;
        if (!(fabs(ratio / want - 1) <= 0.15))
            fail_msg("gran %d: Δ4/Δ8 = %g, expected %g ±15%%", g, ratio, want);
        /* and the absolute level: N·s²/12 within 10% at 8 bits */
        float sc[100];
        psq_weight_scales(w, g ? 100 : 1, g ? N / 100 : N, &s8, sc, &e);
        double pred = 0;
        for (int c = 0; c < (g ? 100 : 1); c++)
            pred += (double)sc[c] * sc[c] / 12.0 * (g ? N / 100 : N);
        if (!(fabs(d8 / pred - 1) <= 0.1))
            fail_msg("gran %d: Δ8 %g vs s²/12·n %g", g, d8, pred);
    }
    free(w);
}

static void test_bytes(void **st)
{
    (void)st;
    psq_wspec sp = {.bits = 4, .gran = PSQ_PER_TENSOR};
    /* 3x3 = 9 values × 4 bits = 36 bits → 5 bytes + 4 */
    assert_true(psq_weight_bytes(3, 3, &sp) == 9.0);
    sp.gran = PSQ_PER_CHANNEL;
    assert_true(psq_weight_bytes(3, 3, &sp) == 5.0 + 12.0);
    sp.scale_bytes = 2;
    assert_true(psq_weight_bytes(3, 3, &sp) == 5.0 + 6.0);
    sp.bits = 3;
    sp.gran = PSQ_PER_TENSOR;
    sp.scale_bytes = 0;
    /* conv 32x1x3x3 at 3 bits: 288·3 = 864 bits = 108 bytes + 4 */
    assert_true(psq_weight_bytes(32, 9, &sp) == 112.0);
}

static void test_pack(void **st)
{
    (void)st;
    sd_rng r;
    sd_rng_seed(&r, 3);
    for (int b = 2; b <= 8; b++) {
        enum { N = 37 };
        int8_t c[N], back[N];
        uint8_t p[N];
        int qm = psq_qmax_signed(b);
        for (int i = 0; i < N; i++)
            c[i] = (int8_t)((int)(sd_rng_next(&r) % (uint64_t)(2 * qm + 1)) - qm);
        c[0] = (int8_t)qm;
        c[1] = (int8_t)-qm;
        psq_pack_codes(c, N, b, p);
        psq_unpack_codes(p, N, b, back);
        assert_memory_equal(c, back, N);
    }
    /* by hand: 4-bit codes {1, -1} → byte 0x01 | 0xF0 */
    int8_t c2[2] = {1, -1};
    uint8_t p2[1];
    psq_pack_codes(c2, 2, 4, p2);
    assert_int_equal(p2[0], 0xF1);
}

static void test_act(void **st)
{
    (void)st;
    ps_err e = {0};
    const float x[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 100};
    NEAR(psq_act_range(x, 10, PSQ_CAL_MAX, 0, &e), 100, 0);
    NEAR(psq_act_range(x, 10, PSQ_CAL_PERCENTILE, 90, &e), 8, 0);
    NEAR(psq_act_range(x, 10, PSQ_CAL_PERCENTILE, 100, &e), 100, 0);
    NEAR(psq_act_range(x, 10, PSQ_CAL_PERCENTILE, 1, &e), 0, 0);
    assert_true(psq_act_range(x, 10, PSQ_CAL_PERCENTILE, 0, &e) < 0);
    assert_int_equal(e.code, PS_EINPUT);
    /* 2 bits, range 3: s = 1, levels 0..3 */
    const float a[6] = {-1.0f, 0.4f, 0.5f, 1.6f, 2.5f, 7.0f};
    float out[6];
    double err2 = 0;
    assert_int_equal(psq_fake_quant_act(a, 6, 2, 3.0, out, &err2, &e), 0);
    const float want[6] = {0, 0, 1, 2, 3, 3};
    for (int i = 0; i < 6; i++)
        NEAR(out[i], want[i], 1e-7);
    NEAR(err2, 1 + 0.16 + 0.25 + 0.16 + 0.25 + 16, 1e-6);
    /* 8 bits: error ≤ s/2 inside the range */
    float y[256], q[256];
    for (int i = 0; i < 256; i++)
        y[i] = (float)i * 0.0123f;
    double rg = psq_act_range(y, 256, PSQ_CAL_MAX, 0, &e);
    assert_int_equal(psq_fake_quant_act(y, 256, 8, rg, q, NULL, &e), 0);
    for (int i = 0; i < 256; i++)
        assert_true(fabs(q[i] - y[i]) <= rg / 255 / 2 * (1 + 1e-5));
}

static void test_errors(void **st)
{
    (void)st;
    ps_err e = {0};
    float w[2] = {1, 2}, out[2];
    psq_wspec sp = {.bits = 9, .gran = PSQ_PER_TENSOR};
    assert_int_equal(psq_fake_quant_weights(w, 1, 2, &sp, out, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "bits 9"));
    sp.bits = 1;
    assert_true(psq_weight_err2(w, 1, 2, &sp, &e) < 0);
    sp.bits = 4;
    sp.scale_bytes = 3;
    assert_int_equal(psq_fake_quant_weights(w, 1, 2, &sp, out, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "scale_bytes"));
    assert_int_equal(psq_fake_quant_act(w, 2, 1, 1.0, out, NULL, &e), PS_EINPUT);
    assert_int_equal(psq_fake_quant_act(w, 2, 4, NAN, out, NULL, &e), PS_EINPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qmax),          cmocka_unit_test(test_hand_per_tensor),
        cmocka_unit_test(test_hand_per_channel), cmocka_unit_test(test_bound_idempotent),
        cmocka_unit_test(test_delta_ratio),   cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_pack),          cmocka_unit_test(test_act),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
