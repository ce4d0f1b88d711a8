/* real/imgops: resampling against hand-computed weights and exactness
 * properties, PSNR closed forms, SSIM against closed forms and an
 * independent straightforward implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "real/imgops.h"
#include "real/project.h"

static void test_keys_kernel(void **st)
{
    (void)st;
    double a = -0.5;
    assert_true(fabs(img_keys_cubic(0, a) - 1) < 1e-15);
    assert_true(fabs(img_keys_cubic(1, a)) < 1e-15);
    assert_true(fabs(img_keys_cubic(2, a)) < 1e-15);
    assert_true(fabs(img_keys_cubic(2.5, a)) < 1e-15);
    /* By hand: 1.5/8 - 2.5/4 + 1 = 0.5625; -0.5*3.375 + 2.5*2.25 - 6 + 2 = -0.0625. */
    assert_true(fabs(img_keys_cubic(0.5, a) - 0.5625) < 1e-15);
    assert_true(fabs(img_keys_cubic(-0.5, a) - 0.5625) < 1e-15);
    assert_true(fabs(img_keys_cubic(1.5, a) + 0.0625) < 1e-15);
    /* Partition of unity over integer shifts. */
    for (double t = 0; t < 1; t += 0.125) {
        double s = 0;
        for (int k = -3; k <= 3; k++)
            s += img_keys_cubic(t + k, a);
        assert_true(fabs(s - 1) < 1e-14);
    }
}

static void test_area_down(void **st)
{
    (void)st;
    ps_err e = {0};
    /* Hand example 4x4 -> 2x2. */
    float x[16], y[4];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    assert_int_equal(img_down_area(x, 1, 4, 4, 2, y, &e), 0);
    /* block (0,0) = {0,1,4,5} -> 2.5; (0,1) = {2,3,6,7} -> 4.5; (1,0) 10.5; (1,1) 12.5 */
    assert_true(fabs(y[0] - 2.5f) < 1e-6 && fabs(y[1] - 4.5f) < 1e-6);
    assert_true(fabs(y[2] - 10.5f) < 1e-6 && fabs(y[3] - 12.5f) < 1e-6);
    /* Constant and linear ramp, 28 -> 7 on a batch of two. */
    float *big = malloc(sizeof(float) * 2 * 784), small[2 * 49];
    for (int r = 0; r < 28; r++)
        for (int c = 0; c < 28; c++) {
            big[r * 28 + c] = 0.375f;
            big[784 + r * 28 + c] = (float)(3 * c + r);
        }
    assert_int_equal(img_down_area(big, 2, 28, 28, 4, small, &e), 0);
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 7; j++) {
            assert_true(small[i * 7 + j] == 0.375f);
            /* Mean of 3c + r over the block: centre c = 4j + 1.5, r = 4i + 1.5. */
            double want = 3 * (4 * j + 1.5) + (4 * i + 1.5);
            assert_true(fabs(small[49 + i * 7 + j] - want) < 1e-4);
        }
    /* Area down of a block-constant image is exact (its own preimage). */
    float up[784];
    for (int r = 0; r < 28; r++)
        for (int c = 0; c < 28; c++)
            up[r * 28 + c] = (float)((r / 2) * 14 + c / 2) * 0.01f;
    float d14[196];
    assert_int_equal(img_down_area(up, 1, 28, 28, 2, d14, &e), 0);
    for (int i = 0; i < 196; i++)
        assert_true(fabs(d14[i] - i * 0.01f) < 1e-6);
    /* Bad factor. */
    assert_int_equal(img_down_area(big, 1, 28, 28, 3, small, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "factor 3"));
    free(big);
}

static void test_bicubic_weights_hand(void **st)
{
    (void)st;
    ps_err e = {0};
    /* 4 -> 2 (scale 2, antialiased: support 4).  Output 0 centre 1.0; input
     * centres 0.5 .. 3.5; distances / 2 = 0.25, 0.25, 0.75, 1.25:
     *   k(0.25) = 0.8671875, k(0.75) = 0.2265625, k(1.25) = -0.0703125,
     * sum 1.890625 (the window is cut at the left border). */
    double W[8];
    assert_int_equal(img_bicubic_weights(4, 2, W, &e), 0);
    double s = 1.890625;
    double want0[4] = {0.8671875 / s, 0.8671875 / s, 0.2265625 / s, -0.0703125 / s};
    for (int j = 0; j < 4; j++) {
        assert_true(fabs(W[j] - want0[j]) < 1e-14);
        assert_true(fabs(W[4 + j] - want0[3 - j]) < 1e-14); /* mirror image */
    }
    /* Same size: the identity (k at integers is a delta). */
    double I[25];
    assert_int_equal(img_bicubic_weights(5, 5, I, &e), 0);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            assert_true(fabs(I[i * 5 + j] - (i == j)) < 1e-15);
    /* 2 -> 4 (up): output 0 centre 0.25: distances to inputs 0.5, 1.5 are
     * 0.25 and 1.25: k = 0.8671875, -0.0703125 (sum 0.796875). */
    double U[8];
    assert_int_equal(img_bicubic_weights(2, 4, U, &e), 0);
    assert_true(fabs(U[0] - 0.8671875 / 0.796875) < 1e-14);
    assert_true(fabs(U[1] + 0.0703125 / 0.796875) < 1e-14);
    /* Output 1 centre 0.75: distances 0.25, 0.75 -> 0.8671875, 0.2265625. */
    assert_true(fabs(U[2] - 0.8671875 / 1.09375) < 1e-14);
    assert_true(fabs(U[3] - 0.2265625 / 1.09375) < 1e-14);
}

/* Independent 2-D resize: y = Wr x Wc^T with weights computed here. */
static double kk(double t)
{
    t = fabs(t);
    if (t < 1)
        return 1.5 * t * t * t - 2.5 * t * t + 1;
    if (t < 2)
        return -0.5 * t * t * t + 2.5 * t * t - 4 * t + 2;
    return 0;
}

static void ref_weights(int in, int out, double *W)
{
    double s = (double)in / out, fs = s > 1 ? s : 1;
    for (int i = 0; i < out; i++) {
        double sum = 0;
        for (int j = 0; j < in; j++)
            sum += (W[i * in + j] = kk((j + 0.5 - (i + 0.5) * s) / fs));
        for (int j = 0; j < in; j++)
            W[i * in + j] /= sum;
    }
}

static void test_bicubic_resize(void **st)
{
    (void)st;
    ps_err e = {0};
    const int sizes[][4] = {{28, 28, 14, 14}, {28, 28, 7, 7}, {7, 7, 28, 28}, {14, 14, 28, 28},
                            {6, 10, 3, 4}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int h = sizes[t][0], w = sizes[t][1], oh = sizes[t][2], ow = sizes[t][3];
        float *x = malloc(sizeof(float) * h * w), *y = malloc(sizeof(float) * oh * ow);
        double *Wr = malloc(sizeof(double) * oh * h), *Wc = malloc(sizeof(double) * ow * w);
        for (int i = 0; i < h * w; i++)
            x[i] = (float)sin(0.37 * i) * 0.8f;
        ref_weights(h, oh, Wr);
        ref_weights(w, ow, Wc);
        assert_int_equal(img_resize_bicubic(x, 1, h, w, oh, ow, y, &e), 0);
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double s = 0;
                for (int u = 0; u < h; u++)
                    for (int v = 0; v < w; v++)
                        s += Wr[i * h + u] * x[u * w + v] * Wc[j * w + v];
                assert_true(fabs(y[i * ow + j] - s) < 1e-5);
            }
        free(x);
        free(y);
        free(Wr);
        free(Wc);
    }
}

static void test_bicubic_exactness(void **st)
{
    (void)st;
    ps_err e = {0};
    float x[784], y14[196], y7[49];
    /* Constant: exact everywhere (weights renormalised at the borders). */
    for (int i = 0; i < 784; i++)
        x[i] = -0.25f;
    assert_int_equal(img_resize_bicubic(x, 1, 28, 28, 14, 14, y14, &e), 0);
    for (int i = 0; i < 196; i++)
        assert_true(fabs(y14[i] + 0.25f) < 1e-6);
    /* Ramp in the column coordinate (pixel centre c + 0.5): exact where the
     * window is not cut: 28 -> 14 (support 4): outputs 2..11; 28 -> 7
     * (support 8): outputs 2..4. */
    for (int r = 0; r < 28; r++)
        for (int c = 0; c < 28; c++)
            x[r * 28 + c] = (float)(c + 0.5);
    assert_int_equal(img_resize_bicubic(x, 1, 28, 28, 14, 14, y14, &e), 0);
    assert_int_equal(img_resize_bicubic(x, 1, 28, 28, 7, 7, y7, &e), 0);
    for (int i = 0; i < 14; i++)
        for (int j = 2; j <= 11; j++)
            assert_true(fabs(y14[i * 14 + j] - (j + 0.5) * 2) < 1e-4);
    for (int i = 0; i < 7; i++)
        for (int j = 2; j <= 4; j++)
            assert_true(fabs(y7[i * 7 + j] - (j + 0.5) * 4) < 1e-4);
    /* The cut window at the border is NOT exact (documents the convention). */
    assert_true(fabs(y14[0] - 1.0) > 1e-3);
    /* Up 7 -> 28 of a ramp in the rows: output centre (i + 0.5) / 4 in input
     * pixels; value (i + 0.5) / 4 where the 4-tap window is whole (i 6..21). */
    float lo[49], up[784];
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 7; c++)
            lo[r * 7 + c] = (float)(r + 0.5);
    assert_int_equal(img_resize_bicubic(lo, 1, 7, 7, 28, 28, up, &e), 0);
    for (int i = 6; i <= 21; i++)
        for (int j = 0; j < 28; j++)
            assert_true(fabs(up[i * 28 + j] - (i + 0.5) / 4) < 1e-5);
    /* Errors. */
    assert_int_equal(img_resize_bicubic(x, 1, 28, 0, 7, 7, y7, &e), PS_EINPUT);
}

static void test_psnr(void **st)
{
    (void)st;
    float a[100], b[100];
    for (int i = 0; i < 100; i++) {
        a[i] = 0.3f;
        b[i] = 0.4f;
    }
    /* MSE = 0.01 (float rounding: 1e-6 relative). */
    assert_true(fabs(img_mse(a, b, 100) - 0.01) < 1e-7);
    assert_true(fabs(img_psnr(a, b, 100, 1.0) - 20.0) < 1e-4);
    assert_true(fabs(img_psnr(a, b, 100, 2.0) - 10 * log10(400.0)) < 1e-4);
    assert_true(isinf(img_psnr(a, a, 100, 1.0)));
    /* One pixel off by 1 in 100, range 255: MSE 0.01 -> 10 log10(255^2 / 0.01). */
    for (int i = 0; i < 100; i++)
        b[i] = a[i];
    b[7] += 1.0f;
    assert_true(fabs(img_psnr(a, b, 100, 255) - 10 * log10(255.0 * 255 / 0.01)) < 1e-4);
}

/* Straightforward SSIM: deviations about each window's mean. */
static double ref_ssim(const float *a, const float *b, int h, int w, int win, double L)
{
    int r = win / 2;
    double g[121], gs = 0;
    for (int u = 0; u < win; u++)
        for (int v = 0; v < win; v++)
            gs += (g[u * win + v] = exp(-((u - r) * (u - r) + (v - r) * (v - r)) / 4.5));
    double c1 = 0.0001 * L * L, c2 = 0.0009 * L * L, tot = 0;
    int cnt = 0;
    for (int i = 0; i <= h - win; i++)
        for (int j = 0; j <= w - win; j++) {
            double ma = 0, mb = 0;
            for (int u = 0; u < win; u++)
                for (int v = 0; v < win; v++) {
                    ma += g[u * win + v] / gs * a[(i + u) * w + j + v];
                    mb += g[u * win + v] / gs * b[(i + u) * w + j + v];
                }
            double va = 0, vb = 0, cv = 0;
            for (int u = 0; u < win; u++)
                for (int v = 0; v < win; v++) {
                    double da = a[(i + u) * w + j + v] - ma, db = b[(i + u) * w + j + v] - mb;
                    double wt = g[u * win + v] / gs;
                    va += wt * da * da;
                    vb += wt * db * db;
                    cv += wt * da * db;
                }
            double l = (2 * ma * mb + c1) / (ma * ma + mb * mb + c1);
            double cs = (2 * cv + c2) / (va + vb + c2);
            tot += l * cs;
            cnt++;
        }
    return tot / cnt;
}

static void test_ssim(void **st)
{
    (void)st;
    ps_err e = {0};
    float a[784], b[784];
    unsigned s = 12345;
    for (int i = 0; i < 784; i++) {
        s = s * 1103515245u + 12345u;
        a[i] = (float)((s >> 8) % 1000) / 500.0f - 1.0f;
        b[i] = 0.7f * a[i] + 0.2f * (float)sin(i * 0.1);
    }
    double v;
    /* Identity. */
    assert_int_equal(img_ssim(a, a, 28, 28, 7, 1.5, 2.0, &v, &e), 0);
    assert_true(fabs(v - 1) < 1e-12);
    /* Constants: (2ab + C1) / (a^2 + b^2 + C1), contrast term 1. */
    float ca[81], cb[81];
    for (int i = 0; i < 81; i++) {
        ca[i] = 0.5f;
        cb[i] = 0.25f;
    }
    double c1 = 0.0001;
    assert_int_equal(img_ssim(ca, cb, 9, 9, 7, 1.5, 1.0, &v, &e), 0);
    assert_true(fabs(v - (2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1)) < 1e-9);
    /* Against the straightforward implementation, 7x7 and 11x11. */
    assert_int_equal(img_ssim(a, b, 28, 28, 7, 1.5, 2.0, &v, &e), 0);
    double want = ref_ssim(a, b, 28, 28, 7, 2.0);
    assert_true(fabs(v - want) < 1e-9);
    assert_true(v < 0.99 && v > 0.0);
    assert_int_equal(img_ssim(a, b, 28, 28, 11, 1.5, 2.0, &v, &e), 0);
    assert_true(fabs(v - ref_ssim(a, b, 28, 28, 11, 2.0)) < 1e-9);
    /* A single window (9 x 9 image, window 9): one term. */
    assert_int_equal(img_ssim(a, b, 9, 9, 9, 1.5, 2.0, &v, &e), 0);
    assert_true(fabs(v - ref_ssim(a, b, 9, 9, 9, 2.0)) < 1e-9);
    /* Symmetric in its arguments. */
    double vba;
    assert_int_equal(img_ssim(b, a, 28, 28, 7, 1.5, 2.0, &vba, &e), 0);
    assert_true(fabs(vba - want) < 1e-12);
    /* Batch mean and per-image values. */
    float ab[2 * 784], bb[2 * 784];
    memcpy(ab, a, sizeof a);
    memcpy(ab + 784, a, sizeof a);
    memcpy(bb, a, sizeof a);
    memcpy(bb + 784, b, sizeof b);
    double per[2], mean;
    assert_int_equal(img_ssim_batch(ab, bb, 2, 28, 28, 7, 1.5, 2.0, &mean, per, &e), 0);
    assert_true(fabs(per[0] - 1) < 1e-12 && fabs(per[1] - want) < 1e-9);
    assert_true(fabs(mean - (1 + want) / 2) < 1e-9);
    /* Errors: even window, too big. */
    assert_int_equal(img_ssim(a, b, 28, 28, 8, 1.5, 2.0, &v, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "window 8"));
    assert_int_equal(img_ssim(a, b, 5, 5, 7, 1.5, 2.0, &v, &e), PS_EINPUT);
}

/* Cross-check with the projector's down-sampler (real/project.h, written
 * independently): area identical everywhere; bicubic identical where the
 * window is not cut (the two differ only in their border convention). */
static void test_matches_pj_down(void **st)
{
    (void)st;
    ps_err e = {0};
    float x[784], a[196], b[196];
    for (int i = 0; i < 784; i++)
        x[i] = (float)cos(0.11 * i) * 0.9f;
    pj_down d;
    assert_int_equal(pj_down_init(&d, PJ_DOWN_AREA, 2, &e), 0);
    pj_down_apply(&d, x, 1, a);
    assert_int_equal(img_down_area(x, 1, 28, 28, 2, b, &e), 0);
    for (int i = 0; i < 196; i++)
        assert_true(fabs(a[i] - b[i]) < 1e-5);
    const int fac[2] = {2, 4};
    for (int t = 0; t < 2; t++) {
        int f = fac[t], r = 28 / f;
        assert_int_equal(pj_down_init(&d, PJ_DOWN_BICUBIC, f, &e), 0);
        double W[28 * 28];
        assert_int_equal(img_bicubic_weights(28, r, W, &e), 0);
        /* interior rows: the support 2f around centre (i + 0.5) f fits */
        for (int i = 0; i < r; i++) {
            double c = (i + 0.5) * f;
            if (c - 2 * f < 0 || c + 2 * f > 28)
                continue;
            for (int j = 0; j < 28; j++)
                assert_true(fabs(d.A[i * 28 + j] - W[i * 28 + j]) < 1e-12);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_kernel),     cmocka_unit_test(test_area_down),
        cmocka_unit_test(test_bicubic_weights_hand), cmocka_unit_test(test_bicubic_resize),
        cmocka_unit_test(test_bicubic_exactness), cmocka_unit_test(test_psnr),
        cmocka_unit_test(test_ssim),           cmocka_unit_test(test_matches_pj_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
