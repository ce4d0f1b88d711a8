/* sim/specdec/accept: acceptance models.  Closed forms against Monte Carlo
 * (within 1%) for each kind on several trees, against hand sums and against
 * tree.c's positional closed form; exact trace replay on a hand trace; JSON
 * round trip and field-naming errors; top-k consistency; calibration that
 * recovers a known ground truth (including from a rank trace sampled from a
 * known correlated model). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/specdec/accept.h"
#include "sim/specdec/tree.h"

static void near(double a, double b, double tol, const char *what, int line)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.12g, expected %.12g (tol %.3g)", line, what, a, b, tol);
}
#define NEAR(a, b, tol) near((a), (b), (tol), #a, __LINE__)

static sd_tree *expansion(const int *k, int d)
{
    ps_err e = {0};
    sd_tree *t = sd_tree_from_expansion(k, d, &e);
    if (!t)
        fail_msg("expansion: %s", e.msg);
    return t;
}

static double expected(const sd_accept *a, const sd_tree *t)
{
    ps_err e = {0};
    double E = -1;
    if (sd_accept_expected(a, t, &E, &e))
        fail_msg("expected: %s", e.msg);
    return E;
}

/* Mean tokens per step over `steps` consecutive steps of one request. */
static double mc(const sd_accept *a, const sd_tree *t, long steps, uint64_t seed)
{
    sd_rng r;
    sd_rng_seed(&r, seed);
    sd_acc_state s;
    sd_accept_state_init(a, &s, &r);
    double tot = 0;
    for (long i = 0; i < 2000; i++) /* burn-in to the stationary regime */
        sd_accept_step(a, &s, t, &r);
    for (long i = 0; i < steps; i++)
        tot += sd_accept_step(a, &s, t, &r);
    return tot / (double)steps;
}

static const int K_SPEC[8] = {1, 1, 3, 1, 1, 1, 1, 1};
static const int K_BUSH[3] = {2, 2, 1};
static const int K_CHAIN[8] = {1, 1, 1, 1, 1, 1, 1, 1};
static const int K_WIDE[4] = {4, 2, 2, 1};

static void test_positional(void **st)
{
    (void)st;
    const double p[5] = {0.68, 0.09, 0.04, 0.03, 0.01};
    ps_err e = {0};
    sd_accept *a = sd_accept_positional(p, 5, &e);
    assert_non_null(a);
    assert_int_equal(sd_accept_kind(a), SD_ACC_POSITIONAL);
    const int *ks[] = {K_SPEC, K_BUSH, K_CHAIN, K_WIDE};
    const int kd[] = {8, 3, 8, 4};
    for (int i = 0; i < 4; i++) {
        sd_tree *t = expansion(ks[i], kd[i]);
        double ref = 0;
        assert_int_equal(sd_tree_expected_tokens(t, p, 5, &ref, &e), 0);
        double E = expected(a, t);
        NEAR(E, ref, 1e-12);
        double m = mc(a, t, 200000, 11 + (uint64_t)i);
        NEAR(m, E, 0.01 * E);
        sd_tree_free(t);
    }
    /* <2,2,1> by hand: 1 + (p1 + p2)(1 + p1 + p2) + (p1+p2)^2 p1 */
    sd_tree *t = expansion(K_BUSH, 3);
    double s = p[0] + p[1];
    NEAR(expected(a, t), 1 + s + s * s + s * s * p[0], 1e-12);
    sd_tree_free(t);
    sd_accept_free(a);
}

static void test_matrix(void **st)
{
    (void)st;
    /* depth x rank: row 1, row 2, row 3 (reused below) */
    const double P[3 * 3] = {0.6, 0.2, 0.1, 0.5, 0.25, 0.05, 0.3, 0.3, 0.2};
    ps_err e = {0};
    sd_accept *a = sd_accept_matrix(P, 3, 3, &e);
    assert_non_null(a);
    /* <2,2,1>: depth 1 nodes ranks 1,2 ; depth 2 ranks 1,2 ; depth 3 rank 1 */
    sd_tree *t = expansion(K_BUSH, 3);
    double s1 = P[0] + P[1], s2 = P[3] + P[4];
    NEAR(expected(a, t), 1 + s1 + s1 * s2 + s1 * s2 * P[6], 1e-12);
    NEAR(mc(a, t, 200000, 3), expected(a, t), 0.01 * expected(a, t));
    sd_tree_free(t);
    /* chain of 8: rows beyond 3 reuse row 3 */
    t = expansion(K_CHAIN, 8);
    double E = 1, f = 1;
    for (int d = 1; d <= 8; d++) {
        f *= P[(d < 3 ? d - 1 : 2) * 3];
        E += f;
    }
    NEAR(expected(a, t), E, 1e-12);
    NEAR(mc(a, t, 200000, 4), E, 0.01 * E);
    sd_tree_free(t);
    t = expansion(K_SPEC, 8);
    NEAR(mc(a, t, 200000, 5), expected(a, t), 0.01 * expected(a, t));
    sd_tree_free(t);
    sd_accept_free(a);
}

/* A 3-state chain with distinct per-state vectors (persistent easy state,
 * hard state with mass on ranks 2-3, middle state). */
static sd_accept *corr3(void)
{
    const double A[9] = {0.85, 0.10, 0.05, 0.30, 0.50, 0.20, 0.40, 0.20, 0.40};
    const double p[3 * 4] = {0.95, 0.03, 0.01, 0.0, 0.55, 0.2, 0.1, 0.05, 0.05, 0.35, 0.25, 0.1};
    ps_err e = {0};
    sd_accept *a = sd_accept_correlated(3, A, p, 4, &e);
    if (!a)
        fail_msg("correlated: %s", e.msg);
    return a;
}

static void test_correlated_mc(void **st)
{
    (void)st;
    sd_accept *a = corr3();
    const int *ks[] = {K_SPEC, K_BUSH, K_CHAIN, K_WIDE};
    const int kd[] = {8, 3, 8, 4};
    for (int i = 0; i < 4; i++) {
        sd_tree *t = expansion(ks[i], kd[i]);
        double E = expected(a, t);
        double m = mc(a, t, 400000, 100 + (uint64_t)i);
        NEAR(m, E, 0.01 * E);
        sd_tree_free(t);
    }
    sd_accept_free(a);
    /* one state == positional, exactly */
    const double A1[1] = {1}, p[4] = {0.5, 0.2, 0.1, 0.05};
    ps_err e = {0};
    sd_accept *c = sd_accept_correlated(1, A1, p, 4, &e), *q = sd_accept_positional(p, 4, &e);
    assert_non_null(c);
    assert_non_null(q);
    sd_tree *t = expansion(K_SPEC, 8);
    NEAR(expected(c, t), expected(q, t), 1e-12);
    sd_tree_free(t);
    sd_accept_free(c);
    sd_accept_free(q);
}

/* Frozen-in-blocks check of the closed form without Monte Carlo: with
 * A = I (state never changes) and a start law pi, E = sum_z pi_z E_z(iid)
 * is NOT what a frozen chain gives over steps (reducible chain: the start
 * law stays pi); check that case exactly against per-state positional. */
static void test_correlated_frozen(void **st)
{
    (void)st;
    const double A[4] = {1, 0, 0, 1};
    const double p[2 * 3] = {0.8, 0.1, 0.05, 0.3, 0.3, 0.2};
    ps_err e = {0};
    sd_accept *a = sd_accept_correlated(2, A, p, 3, &e);
    assert_non_null(a);
    sd_accept *p0 = sd_accept_positional(p, 3, &e), *p1 = sd_accept_positional(p + 3, 3, &e);
    sd_tree *t = expansion(K_SPEC, 8);
    /* the power-iteration fallback starts from A's law: uniform here */
    NEAR(expected(a, t), 0.5 * expected(p0, t) + 0.5 * expected(p1, t), 1e-9);
    double tk[3];
    assert_int_equal(sd_accept_topk(a, 3, tk, &e), 0);
    NEAR(tk[0], 0.55, 1e-12);
    NEAR(tk[2], 0.5 * 0.95 + 0.5 * 0.8, 1e-12);
    sd_tree_free(t);
    sd_accept_free(a);
    sd_accept_free(p0);
    sd_accept_free(p1);
}

static void test_trace_hand(void **st)
{
    (void)st;
    /* tree <1,1,2,1>: depth 1 rank 1, depth 2 rank 1, depth 3 ranks 1-2, depth 4 rank 1 */
    const int k[4] = {1, 1, 2, 1};
    sd_tree *t = expansion(k, 4);
    /* seq 0: 1 1 2 1 | 1 0 | 3 | 1 1   seq 1: 1 1 1 1 1 1 */
    const int32_t ranks[] = {1, 1, 2, 1, 1, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    const int64_t off[] = {0, 9};
    const int32_t len[] = {9, 6};
    ps_err e = {0};
    sd_accept *a = sd_accept_trace(ranks, off, len, 2, &e);
    assert_non_null(a);
    sd_acc_state s;
    sd_accept_state_init(a, &s, NULL);
    /* step 1 at c=0: ranks 1,1,2,1 all fit (depth 4 max) -> 4 accepted, emits 5, cursor 5 */
    assert_int_equal(sd_accept_step(a, &s, t, NULL), 5);
    assert_int_equal(s.cursor, 5);
    /* c=5: rank 0 -> emits 1, cursor 6 */
    assert_int_equal(sd_accept_step(a, &s, t, NULL), 1);
    /* c=6: rank 3 at depth 1: no rank-3 child -> emits 1, cursor 7 */
    assert_int_equal(sd_accept_step(a, &s, t, NULL), 1);
    /* c=7: 1,1 then end of sequence -> 2 accepted; the bonus token would be
     * position 9, beyond the recorded length, so the step emits 2 */
    assert_int_equal(sd_accept_step(a, &s, t, NULL), 2);
    assert_int_equal(s.seq, 1);
    assert_int_equal(s.cursor, 0);
    /* seq 1: 1 1 1 1 -> depth 4 then leaf: emits 5, cursor 5; then rank 1 at the
     * last position -> emits 1 (capped at the length), wrap */
    assert_int_equal(sd_accept_step(a, &s, t, NULL), 5);
    assert_int_equal(sd_accept_step(a, &s, t, NULL), 1);
    assert_int_equal(s.seq, 0);
    assert_int_equal(s.cursor, 0);
    NEAR(expected(a, t), (5 + 1 + 1 + 2 + 5 + 1) / 6.0, 1e-12); /* = 15 / 6: every position once */
    double tk[3];
    assert_int_equal(sd_accept_topk(a, 3, tk, &e), 0);
    NEAR(tk[0], 12.0 / 15, 1e-12);
    NEAR(tk[1], 13.0 / 15, 1e-12);
    NEAR(tk[2], 14.0 / 15, 1e-12);
    /* a chain accepts only rank-1 runs: seq0 steps 1 1 -> c2 (rank 2) no ... */
    sd_tree *c = expansion(K_CHAIN, 2);
    sd_accept_state_init(a, &s, NULL);
    /* c=0: 1,1 (depth 2 leaf) emits 3 -> c=3: rank 1 then rank 1 (c4) -> emits 3 -> c=6 */
    assert_int_equal(sd_accept_step(a, &s, c, NULL), 3);
    assert_int_equal(sd_accept_step(a, &s, c, NULL), 3);
    assert_int_equal(s.cursor, 6);
    sd_tree_free(c);
    sd_tree_free(t);
    sd_accept_free(a);
}

static void test_json(void **st)
{
    (void)st;
    ps_err e = {0};
    const char *good[] = {
        "{\"kind\": \"positional\", \"p\": [0.68, 0.09, 0.04]}",
        "{\"kind\": \"matrix\", \"P\": [[0.6, 0.2], [0.5]]}",
        "{\"kind\": \"correlated\", \"A\": [[0.9, 0.1], [0.5, 0.5]], \"p\": [[0.9], [0.2, 0.3]]}",
        "{\"kind\": \"trace\", \"ranks\": [[1, 1, 2, 0], [3]]}",
    };
    sd_tree *t = expansion(K_SPEC, 8);
    for (int i = 0; i < 4; i++) {
        json_error_t je;
        json_t *j = json_loads(good[i], 0, &je);
        assert_non_null(j);
        sd_accept *a = sd_accept_from_json(j, "acc.json", &e);
        if (!a)
            fail_msg("good[%d]: %s", i, e.msg);
        assert_int_equal((int)sd_accept_kind(a), i);
        json_t *o = sd_accept_to_json(a);
        sd_accept *b = sd_accept_from_json(o, "round", &e);
        if (!b)
            fail_msg("round trip %d: %s", i, e.msg);
        NEAR(expected(b, t), expected(a, t), 1e-12);
        json_decref(o);
        json_decref(j);
        sd_accept_free(a);
        sd_accept_free(b);
    }
    sd_tree_free(t);
    struct {
        const char *text, *want;
    } bad[] = {
        {"[1]", "acc.json: expected an object"},
        {"{\"p\": [0.5]}", "acc.json.kind: missing"},
        {"{\"kind\": \"iid\"}", "acc.json.kind: unknown acceptance model"},
        {"{\"kind\": \"positional\", \"p\": [0.5, -0.1]}", "acc.json.p[1] = -0.1"},
        {"{\"kind\": \"positional\", \"p\": [0.7, 0.4]}", "acc.json.p: the probabilities sum"},
        {"{\"kind\": \"positional\", \"p\": [0.5, \"x\"]}", "acc.json.p[1]"},
        {"{\"kind\": \"positional\", \"q\": [0.5]}", "acc.json"},
        {"{\"kind\": \"matrix\", \"P\": [[0.5], 3]}", "acc.json.P[1]"},
        {"{\"kind\": \"matrix\", \"P\": [[0.5], [0.9, 0.2]]}", "acc.json.P[1]: the probabilities"},
        {"{\"kind\": \"correlated\", \"A\": [[0.9, 0.2], [0.5, 0.5]], \"p\": [[0.9], [0.2]]}",
         "acc.json.A[0]: the row sums"},
        {"{\"kind\": \"correlated\", \"A\": [[1, 0], [0, 1]], \"p\": [[0.9]]}",
         "acc.json.p: 1 rows"},
        {"{\"kind\": \"correlated\", \"A\": [[1, 0], [0]], \"p\": [[0.9], [0.1]]}",
         "acc.json.A[1]: expected 2 entries"},
        {"{\"kind\": \"correlated\", \"p\": [[0.9]]}", "acc.json.A: missing"},
        {"{\"kind\": \"trace\", \"ranks\": [[1, -1]]}", "acc.json.ranks[0][1]"},
        {"{\"kind\": \"trace\", \"ranks\": [[1], []]}", "acc.json.ranks[1]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_error_t je;
        json_t *j = json_loads(bad[i].text, JSON_DECODE_ANY, &je);
        assert_non_null(j);
        ps_err_clear(&e);
        sd_accept *a = sd_accept_from_json(j, "acc.json", &e);
        if (a)
            fail_msg("bad[%zu] accepted: %s", i, bad[i].text);
        assert_int_equal(e.code, PS_EINPUT);
        if (!strstr(e.msg, bad[i].want))
            fail_msg("bad[%zu]: message \"%s\" lacks \"%s\"", i, e.msg, bad[i].want);
        json_decref(j);
    }
}

/* top-k of each kind: closed form vs the definition (MC of depth-1 acceptance
 * on a star tree with kmax children under the stationary law). */
static void test_topk(void **st)
{
    (void)st;
    sd_accept *a = corr3();
    double tk[4];
    ps_err e = {0};
    assert_int_equal(sd_accept_topk(a, 4, tk, &e), 0);
    for (int k = 1; k <= 4; k++) {
        int kk[1] = {k};
        sd_tree *t = expansion(kk, 1);
        /* star of k children: E = 1 + P(LLM token in top-k) at a step start;
         * the step-start law differs from the position law, so compare with
         * A's law by re-initialising the state every step. */
        sd_rng r;
        sd_rng_seed(&r, 77 + (uint64_t)k);
        long n = 200000, hit = 0;
        for (long i = 0; i < n; i++) {
            sd_acc_state s;
            sd_accept_state_init(a, &s, &r);
            hit += sd_accept_step(a, &s, t, &r) - 1;
        }
        NEAR((double)hit / (double)n, tk[k - 1], 4 * sqrt(tk[k - 1] * (1 - tk[k - 1]) / n) + 1e-9);
        sd_tree_free(t);
    }
    assert_true(sd_accept_topk(a, 0, tk, &e) != 0);
    sd_accept_free(a);
}

static void test_calibrate_recover(void **st)
{
    (void)st;
    const double T[5] = {0.69, 0.79, 0.83, 0.86, 0.87};
    sd_tree *chain = expansion(K_CHAIN, 8), *spec = expansion(K_SPEC, 8);
    ps_err e = {0};
    double obj = -1;
    /* positional: Table 1 differences */
    sd_accept *p = sd_accept_calibrate(SD_ACC_POSITIONAL, T, 5, chain, 3.0, &obj, &e);
    assert_non_null(p);
    double tk[5];
    assert_int_equal(sd_accept_topk(p, 5, tk, &e), 0);
    for (int k = 0; k < 5; k++)
        NEAR(tk[k], T[k], 1e-12);
    sd_accept_free(p);
    /* correlated: ground truth rho = 0.55 -> its own targets -> fit recovers it */
    const double rho = 0.55;
    const double A[4] = {rho + (1 - rho) * 0.69, (1 - rho) * 0.31, (1 - rho) * 0.69,
                         rho + (1 - rho) * 0.31};
    double pv[2 * 5] = {1, 0, 0, 0, 0, 0, 0.10 / 0.31, 0.04 / 0.31, 0.03 / 0.31, 0.01 / 0.31};
    sd_accept *g = sd_accept_correlated(2, A, pv, 5, &e);
    assert_non_null(g);
    double Eg = expected(g, chain);
    sd_accept *f = sd_accept_calibrate(SD_ACC_CORRELATED, T, 5, chain, Eg, &obj, &e);
    if (!f)
        fail_msg("calibrate: %s", e.msg);
    NEAR(sd_accept_param(f), rho, 1e-7);
    NEAR(obj, 0, 1e-14);
    NEAR(expected(f, spec), expected(g, spec), 1e-6);
    assert_int_equal(sd_accept_topk(f, 5, tk, &e), 0);
    for (int k = 0; k < 5; k++)
        NEAR(tk[k], T[k], 1e-12);
    sd_accept_free(f);
    /* the same from DATA: a rank trace sampled from g (position chain), replayed
     * exactly: its Table 1 and its w=1 tokens/step are the targets */
    long npos = 300000;
    int32_t *ranks = malloc((size_t)npos * sizeof(int32_t));
    assert_non_null(ranks);
    sd_rng r;
    sd_rng_seed(&r, 2024);
    sd_acc_state s;
    sd_accept_state_init(g, &s, &r);
    int z = s.latent;
    for (long i = 0; i < npos; i++) {
        double u = sd_rng_u01(&r), c = 0;
        int k = 0;
        for (int j = 0; j < 5; j++) {
            c += pv[5 * z + j];
            if (u < c) {
                k = j + 1;
                break;
            }
        }
        ranks[i] = k;
        z = sd_rng_pick(&r, A + 2 * z, 2, 1.0);
    }
    int64_t off = 0;
    int32_t len = (int32_t)npos;
    sd_accept *tr = sd_accept_trace(ranks, &off, &len, 1, &e);
    assert_non_null(tr);
    free(ranks);
    double Td[5];
    assert_int_equal(sd_accept_topk(tr, 5, Td, &e), 0);
    for (int k = 0; k < 5; k++)
        NEAR(Td[k], T[k], 0.01);
    double Et = expected(tr, chain);
    NEAR(Et, Eg, 0.01 * Eg);
    f = sd_accept_calibrate(SD_ACC_CORRELATED, Td, 5, chain, Et, &obj, &e);
    assert_non_null(f);
    NEAR(sd_accept_param(f), rho, 0.05);
    NEAR(expected(f, spec), expected(tr, spec), 0.015 * expected(tr, spec));
    sd_accept_free(f);
    sd_accept_free(tr);
    sd_accept_free(g);
    /* matrix: ground truth gamma = 0.9 */
    double d[5] = {0.69, 0.10, 0.04, 0.03, 0.01}, P[8 * 5];
    for (int r8 = 0; r8 < 8; r8++)
        for (int k = 0; k < 5; k++)
            P[r8 * 5 + k] = d[k] * pow(0.9, r8);
    sd_accept *mg = sd_accept_matrix(P, 8, 5, &e);
    assert_non_null(mg);
    sd_accept *mf = sd_accept_calibrate(SD_ACC_MATRIX, T, 5, chain, expected(mg, chain), &obj, &e);
    assert_non_null(mf);
    NEAR(sd_accept_param(mf), 0.9, 1e-9);
    NEAR(expected(mf, spec), expected(mg, spec), 1e-9);
    sd_accept_free(mg);
    sd_accept_free(mf);
    /* bad targets */
    const double badT[2] = {0.7, 0.6};
    assert_null(sd_accept_calibrate(SD_ACC_MATRIX, badT, 2, chain, 2.0, NULL, &e));
    assert_int_equal(e.code, PS_EINPUT);
    assert_null(sd_accept_calibrate(SD_ACC_CORRELATED, T, 5, NULL, 2.0, NULL, &e));
    /* E(rho) is monotone (bisection is well posed): decreasing on a grid */
    double prev = INFINITY;
    for (int i = 0; i <= 20; i++) {
        double rr = -0.44 + 1.43 * i / 20.0;
        if (rr > 0.999)
            rr = 0.999;
        double Ag[4] = {rr + (1 - rr) * 0.69, (1 - rr) * 0.31, (1 - rr) * 0.69,
                        rr + (1 - rr) * 0.31};
        sd_accept *x = sd_accept_correlated(2, Ag, pv, 5, &e);
        assert_non_null(x);
        double E = expected(x, chain);
        assert_true(E < prev);
        prev = E;
        sd_accept_free(x);
    }
    sd_tree_free(chain);
    sd_tree_free(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positional),      cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_correlated_mc),   cmocka_unit_test(test_correlated_frozen),
        cmocka_unit_test(test_trace_hand),      cmocka_unit_test(test_json),
        cmocka_unit_test(test_topk),            cmocka_unit_test(test_calibrate_recover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
