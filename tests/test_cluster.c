/* common/cluster: NMI and purity against hand-computed values and limits;
 * k-means against planted blobs, a brute-force optimum, empty clusters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster.h"

static void test_nmi_limits(void **st)
{
    (void)st;
    ps_err e = {0};
    int a[300], b[300], c[300];
    for (int i = 0; i < 300; i++) {
        a[i] = i % 7;
        b[i] = (i % 7 + 3) % 7 * 5 + 2; /* a permuted and renamed */
        c[i] = (i / 7) % 3;             /* independent of a over 0..293 */
    }
    double v;
    assert_int_equal(ps_nmi(a, a, 300, &v, &e), 0);
    assert_true(fabs(v - 1) < 1e-12);
    assert_int_equal(ps_nmi(a, b, 300, &v, &e), 0);
    assert_true(fabs(v - 1) < 1e-12);
    /* Exactly independent on 294 = 7 * 42 points: MI 0. */
    assert_int_equal(ps_nmi(a, c, 294, &v, &e), 0);
    assert_true(fabs(v) < 1e-12);
    /* Random independent labelings: close to 0. */
    int *r1 = malloc(sizeof(int) * 20000), *r2 = malloc(sizeof(int) * 20000);
    uint64_t s = 7;
    for (int i = 0; i < 20000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        r1[i] = (int)((s >> 33) % 10);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        r2[i] = (int)((s >> 33) % 10);
    }
    assert_int_equal(ps_nmi(r1, r2, 20000, &v, &e), 0);
    assert_true(v >= 0 && v < 0.005);
    free(r1);
    free(r2);
    /* Single class on both sides: 1; on one side: 0. */
    int z[5] = {3, 3, 3, 3, 3}, y[5] = {0, 1, 0, 1, 2};
    assert_int_equal(ps_nmi(z, z, 5, &v, &e), 0);
    assert_true(v == 1.0);
    assert_int_equal(ps_nmi(z, y, 5, &v, &e), 0);
    assert_true(fabs(v) < 1e-15);
    /* Errors. */
    int neg[3] = {0, -1, 2};
    assert_int_equal(ps_nmi(neg, a, 3, &v, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "negative"));
    assert_int_equal(ps_nmi(a, a, 0, &v, &e), PS_EINPUT);
}

static void test_nmi_hand(void **st)
{
    (void)st;
    ps_err e = {0};
    /* a = [0 0 1 1], b = [0 0 0 1]: contingency {{2, 0}, {1, 1}}.
     * I = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2, H(a) = ln 2,
     * H(b) = -(3/4 ln 3/4 + 1/4 ln 1/4); NMI = I / ((H(a) + H(b)) / 2)
     * = 0.34371101848545... (scikit-learn's value for these labelings). */
    int a[4] = {0, 0, 1, 1}, b[4] = {0, 0, 0, 1};
    double I = 0.5 * log(4.0 / 3) + 0.25 * log(2.0 / 3) + 0.25 * log(2.0);
    double Ha = log(2.0), Hb = -(0.75 * log(0.75) + 0.25 * log(0.25));
    double mi, ha, hb, v;
    assert_int_equal(ps_mutual_info(a, b, 4, &mi, &ha, &hb, &e), 0);
    assert_true(fabs(mi - I) < 1e-14 && fabs(ha - Ha) < 1e-14 && fabs(hb - Hb) < 1e-14);
    assert_int_equal(ps_nmi(a, b, 4, &v, &e), 0);
    assert_true(fabs(v - I / ((Ha + Hb) / 2)) < 1e-14);
    assert_true(fabs(v - 0.3437110184854508) < 1e-12);
    /* Symmetric. */
    double w;
    assert_int_equal(ps_nmi(b, a, 4, &w, &e), 0);
    assert_true(fabs(v - w) < 1e-15);
}

static void test_purity(void **st)
{
    (void)st;
    ps_err e = {0};
    int cl[6] = {0, 0, 0, 1, 1, 1}, lab[6] = {0, 0, 1, 1, 1, 2};
    double v;
    assert_int_equal(ps_purity(cl, lab, 6, &v, &e), 0);
    assert_true(fabs(v - 4.0 / 6) < 1e-15);
    /* Each point its own cluster: purity 1; one cluster: the majority share. */
    int own[6] = {0, 1, 2, 3, 4, 5}, one[6] = {9, 9, 9, 9, 9, 9};
    assert_int_equal(ps_purity(own, lab, 6, &v, &e), 0);
    assert_true(v == 1.0);
    assert_int_equal(ps_purity(one, lab, 6, &v, &e), 0);
    assert_true(fabs(v - 3.0 / 6) < 1e-15);
}

static double gauss(uint64_t *s)
{
    double u1, u2;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    u1 = ((*s >> 11) + 0.5) / 9007199254740992.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    u2 = ((*s >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

static void test_kmeans_blobs(void **st)
{
    (void)st;
    ps_err e = {0};
    enum { K = 6, PER = 50, D = 5, N = K * PER };
    float *x = malloc(sizeof(float) * N * D);
    int truth[N], lab[N];
    uint64_t s = 99;
    /* Blob centres on a scaled simplex-like grid 40 apart; unit noise. */
    for (int i = 0; i < N; i++) {
        int b = i % K; /* interleaved so the order carries no information */
        truth[i] = b;
        for (int j = 0; j < D; j++)
            x[i * D + j] = (float)(40.0 * ((b >> (j % 3)) & 1) + 40.0 * (j == 3) * b +
                                   gauss(&s));
    }
    ps_kmeans_opts o = ps_kmeans_opts_default();
    o.k = K;
    o.restarts = 3;
    o.seed = 5;
    ps_kmeans_result r;
    float cen[K * D];
    assert_int_equal(ps_kmeans(x, N, D, &o, lab, cen, &r, &e), 0);
    double nmi, pur;
    assert_int_equal(ps_nmi(lab, truth, N, &nmi, &e), 0);
    assert_int_equal(ps_purity(lab, truth, N, &pur, &e), 0);
    assert_true(fabs(nmi - 1) < 1e-12);
    assert_true(pur == 1.0);
    /* Inertia = sum of squared distances to the returned centres, each
     * centre the mean of its points. */
    double in = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) {
            double t = x[i * D + j] - cen[lab[i] * D + j];
            in += t * t;
        }
    assert_true(fabs(in - r.inertia) < 1e-6 * in);
    /* About N * D unit-variance noise. */
    assert_true(r.inertia > 0.8 * N * D && r.inertia < 1.2 * N * D);
    /* Deterministic for a seed. */
    int lab2[N];
    assert_int_equal(ps_kmeans(x, N, D, &o, lab2, NULL, NULL, &e), 0);
    assert_memory_equal(lab, lab2, sizeof lab);
    free(x);
}

static void test_kmeans_bruteforce(void **st)
{
    (void)st;
    ps_err e = {0};
    /* 10 points on a line, k = 3: the optimal partition is contiguous;
     * brute force over all cut pairs. */
    float x[10] = {0.0f, 0.4f, 1.1f, 3.0f, 3.3f, 3.9f, 4.2f, 7.5f, 8.0f, 9.9f};
    double best = INFINITY;
    for (int c1 = 1; c1 < 9; c1++)
        for (int c2 = c1 + 1; c2 < 10; c2++) {
            int cut[4] = {0, c1, c2, 10};
            double tot = 0;
            for (int g = 0; g < 3; g++) {
                double m = 0;
                for (int i = cut[g]; i < cut[g + 1]; i++)
                    m += x[i];
                m /= cut[g + 1] - cut[g];
                for (int i = cut[g]; i < cut[g + 1]; i++)
                    tot += (x[i] - m) * (x[i] - m);
            }
            if (tot < best)
                best = tot;
        }
    ps_kmeans_opts o = {3, 10, 100, 0, 3};
    int lab[10];
    ps_kmeans_result r;
    assert_int_equal(ps_kmeans(x, 10, 1, &o, lab, NULL, &r, &e), 0);
    assert_true(fabs(r.inertia - best) < 1e-5);
}

static void test_kmeans_empty_and_errors(void **st)
{
    (void)st;
    ps_err e = {0};
    /* Many duplicates: k-means++ runs out of distinct points, so centres
     * coincide and clusters go empty; every cluster must end non-empty. */
    float x[8] = {0, 0, 0, 0, 0, 0, 5, 5};
    for (uint64_t seed = 1; seed <= 20; seed++) {
        ps_kmeans_opts o = {4, 1, 50, 0, seed};
        int lab[8], used[4] = {0};
        ps_kmeans_result r;
        assert_int_equal(ps_kmeans(x, 8, 1, &o, lab, NULL, &r, &e), 0);
        for (int i = 0; i < 8; i++) {
            assert_true(lab[i] >= 0 && lab[i] < 4);
            used[lab[i]] = 1;
        }
        assert_true(used[0] && used[1] && used[2] && used[3]);
        assert_true(r.inertia < 1e-12);
    }
    int lab[8];
    ps_kmeans_opts o = {9, 1, 10, 0, 1};
    assert_int_equal(ps_kmeans(x, 8, 1, &o, lab, NULL, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "kmeans.k"));
    o.k = 2;
    o.restarts = 0;
    assert_int_equal(ps_kmeans(x, 8, 1, &o, lab, NULL, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "kmeans.restarts"));
    float bad[2] = {0, NAN};
    o.restarts = 1;
    assert_int_equal(ps_kmeans(bad, 2, 1, &o, lab, NULL, NULL, &e), PS_EINPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nmi_limits),        cmocka_unit_test(test_nmi_hand),
        cmocka_unit_test(test_purity),            cmocka_unit_test(test_kmeans_blobs),
        cmocka_unit_test(test_kmeans_bruteforce), cmocka_unit_test(test_kmeans_empty_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
