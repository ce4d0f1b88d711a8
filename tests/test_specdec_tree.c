/* sim/specdec/tree: token trees — expansion builder against a hand-written
 * parent array, the ancestor bitmask against a parent walk, JSON round trip
 * and field-naming errors, expected tokens per step against a hand closed
 * form and against Monte Carlo of the same acceptance model. */
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

#include "sim/specdec/tree.h"

#define EQ(a, b) eq_d((a), (b), #a, __LINE__)
static void eq_d(double a, double b, const char *what, int line)
{
    double tol = 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}

static sd_tree *expansion(const int *k, int d)
{
    ps_err e = {0};
    sd_tree *t = sd_tree_from_expansion(k, d, &e);
    if (!t)
        fail_msg("expansion: %s", e.msg);
    return t;
}

static void test_expansion_specinfer(void **st)
{
    (void)st;
    static const int k[] = {1, 1, 3, 1, 1, 1, 1, 1};
    static const int want[21] = {-1, 0, 1, 2, 3,  4,  5,  6,  7,  2, 9,
                                 10, 11, 12, 13, 2, 15, 16, 17, 18, 19};
    sd_tree *t = expansion(k, 8);
    assert_int_equal(t->n, 21);
    assert_int_equal(t->depth, 8);
    for (int i = 0; i < 21; i++)
        assert_int_equal(t->parent[i], want[i]);
    assert_int_equal(t->nchild[2], 3);
    assert_int_equal(t->rank[3], 1);
    assert_int_equal(t->rank[9], 2);
    assert_int_equal(t->rank[15], 3);
    assert_int_equal(t->ndepth[20], 8);
    int leaves = 0;
    for (int i = 0; i < t->n; i++)
        leaves += t->nchild[i] == 0;
    assert_int_equal(leaves, 3);
    sd_tree_free(t);

    /* node count 1 + k1 + k1k2 + ...: <2,3,2> = 1+2+6+12 */
    static const int k2[] = {2, 3, 2};
    t = expansion(k2, 3);
    assert_int_equal(t->n, 21);
    assert_int_equal(t->depth, 3);
    sd_tree_free(t);
    t = expansion(NULL, 0); /* the root alone */
    assert_int_equal(t->n, 1);
    assert_int_equal(t->depth, 0);
    sd_tree_free(t);

    ps_err e = {0};
    static const int bad[] = {1, 0, 2};
    assert_null(sd_tree_from_expansion(bad, 3, &e));
    assert_non_null(strstr(e.msg, "expansion[1]"));
    static const int huge[] = {16, 16, 16, 16};
    assert_null(sd_tree_from_expansion(huge, 4, &e));
}

/* Row i of the mask holds exactly i and its ancestors: every ancestor bit
 * is set and the row's popcount is depth+1. */
static void check_mask(const sd_tree *t)
{
    for (int i = 0; i < t->n; i++) {
        int pc = 0;
        for (int w = 0; w < t->words; w++)
            pc += __builtin_popcountll(t->mask[(size_t)i * (size_t)t->words + (size_t)w]);
        int d = 0;
        for (int a = i; a >= 0; a = t->parent[a], d++)
            if (!sd_tree_sees(t, i, a))
                fail_msg("node %d does not see its ancestor %d", i, a);
        if (pc != d)
            fail_msg("node %d: mask has %d bits, expected %d", i, pc, d);
        assert_int_equal(d, t->ndepth[i] + 1);
    }
}

static void test_mask(void **st)
{
    (void)st;
    static const int k[] = {1, 1, 3, 1, 1, 1, 1, 1};
    sd_tree *t = expansion(k, 8);
    check_mask(t);
    /* explicit: node 12 (depth 6 on the rank-2 branch) sees 0,1,2,9,10,11,12 */
    static const int anc[] = {0, 1, 2, 9, 10, 11, 12};
    for (int j = 0; j < t->n; j++) {
        int want = 0;
        for (size_t a = 0; a < sizeof anc / sizeof anc[0]; a++)
            want |= anc[a] == j;
        assert_int_equal(sd_tree_sees(t, 12, j), want);
    }
    assert_false(sd_tree_sees(t, 3, 9)); /* siblings' subtrees are invisible */
    assert_false(sd_tree_sees(t, 2, 3)); /* no look-ahead to descendants */
    sd_tree_free(t);

    /* > 1024 nodes, several mask words: <2 x 10> = 2047 nodes */
    static const int k2[] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    t = expansion(k2, 10);
    assert_int_equal(t->n, 2047);
    assert_int_equal(t->words, 32);
    check_mask(t);
    sd_tree_free(t);
}

static void test_json(void **st)
{
    (void)st;
    static const int k[] = {2, 1, 3};
    sd_tree *t = expansion(k, 3);
    json_t *j = sd_tree_to_json(t);
    assert_int_equal(json_integer_value(json_object_get(j, "num_nodes")), t->n);
    assert_int_equal(json_integer_value(json_object_get(j, "depth")), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "parents"), 0)), -1);
    char *s = json_dumps(j, 0);
    ps_err e = {0};
    json_t *j2 = json_loads(s, 0, NULL);
    sd_tree *u = sd_tree_from_json(j2, "t.json", &e);
    if (!u)
        fail_msg("%s", e.msg);
    assert_int_equal(u->n, t->n);
    assert_int_equal(u->depth, t->depth);
    for (int i = 0; i < t->n; i++) {
        assert_int_equal(u->parent[i], t->parent[i]);
        assert_int_equal(u->token[i], t->token[i]);
        assert_int_equal(u->rank[i], t->rank[i]);
    }
    assert_memory_equal(u->mask, t->mask, (size_t)t->n * (size_t)t->words * sizeof(uint64_t));
    free(s);
    json_decref(j);
    json_decref(j2);
    sd_tree_free(t);
    sd_tree_free(u);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"parents\":[-1,0,3,1]}", "t.json.parents[2]: parent 3 not before"},
        {"{\"parents\":[-1,2,1]}", "t.json.parents[1]: cycle"},
        {"{\"parents\":[-1,0,2]}", "t.json.parents[2]: cycle"},
        {"{\"parents\":[-1,0,7]}", "t.json.parents[2]: 7 out of range"},
        {"{\"parents\":[-1,-4]}", "t.json.parents[1]: -4 out of range"},
        {"{\"parents\":[-1,0,-1]}", "t.json.parents[2]: -1 marks the root"},
        {"{\"parents\":[0,0]}", "t.json.parents[0]"},
        {"{\"parents\":[-1,0,1,0,2]}", "t.json.parents[4]: parent 2 is not on the path"},
        {"{\"parents\":[-1,0,\"x\"]}", "t.json.parents[2]"},
        {"{\"parents\":[]}", "t.json.parents"},
        {"{\"nodes\":[-1]}", "nodes"},
        {"{\"parents\":[-1,0],\"num_nodes\":3}", "t.json.num_nodes"},
        {"{\"parents\":[-1,0],\"depth\":2}", "t.json.depth"},
        {"{\"parents\":[-1,0],\"tokens\":[1]}", "t.json.tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *b = json_loads(bad[i].text, 0, NULL);
        assert_non_null(b);
        ps_err e2 = {0};
        sd_tree *x = sd_tree_from_json(b, "t.json", &e2);
        if (x || !strstr(e2.msg, bad[i].want))
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].text, e2.msg, bad[i].want);
        assert_int_equal(e2.code, PS_EINPUT);
        json_decref(b);
    }
}

static void test_expected_closed_form(void **st)
{
    (void)st;
    static const int k[] = {1, 1, 3, 1, 1, 1, 1, 1};
    static const double p[] = {0.68, 0.09, 0.04, 0.03, 0.01};
    sd_tree *t = expansion(k, 8);
    ps_err e = {0};
    double E;
    assert_int_equal(sd_tree_expected_tokens(t, p, 5, &E, &e), 0);
    /* root, two chain nodes, then a 3-way fork: each branch continues as a
     * rank-1 chain of length 6 (depths 3..8). */
    double a = p[0], chain = 0, pw = 1;
    for (int i = 0; i < 6; i++) {
        chain += pw;
        pw *= a;
    }
    double want = 1 + a + a * a + a * a * (p[0] + p[1] + p[2]) * chain;
    EQ(E, want);
    /* a pure chain <1,1,1,1> with p1: 1 + p + p^2 + p^3 + p^4 */
    sd_tree_free(t);
    static const int c[] = {1, 1, 1, 1};
    t = expansion(c, 4);
    assert_int_equal(sd_tree_expected_tokens(t, p, 1, &E, &e), 0);
    EQ(E, 1 + a + a * a + a * a * a + a * a * a * a);
    /* ranks beyond the vector get p = 0: only the rank-1 path counts */
    sd_tree_free(t);
    static const int w[] = {4};
    t = expansion(w, 1);
    assert_int_equal(sd_tree_expected_tokens(t, p, 2, &E, &e), 0);
    EQ(E, 1 + p[0] + p[1]);

    static const double over[] = {0.7, 0.4};
    assert_int_not_equal(sd_tree_expected_tokens(t, over, 2, &E, &e), 0);
    assert_non_null(strstr(e.msg, "sum"));
    static const double neg[] = {0.7, -0.1};
    assert_int_not_equal(sd_tree_expected_tokens(t, neg, 2, &E, &e), 0);
    assert_non_null(strstr(e.msg, "acceptance[1]"));
    double mu;
    assert_int_not_equal(sd_tree_mc_tokens(t, neg, 2, 10, 1, &mu, NULL, &e), 0);
    sd_tree_free(t);
}

static void test_expected_monte_carlo(void **st)
{
    (void)st;
    static const struct {
        int k[10], d;
        double p[5];
        int m;
    } cases[] = {
        {{1, 1, 3, 1, 1, 1, 1, 1}, 8, {0.68, 0.09, 0.04, 0.03, 0.01}, 5},
        {{3, 2, 2, 1}, 4, {0.5, 0.2, 0.1}, 3},
        {{4, 1, 1, 1, 1}, 5, {0.35, 0.25, 0.2, 0.15}, 4},
        {{2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, 10, {0.8, 0.15}, 2},
        {{1, 1, 1, 1, 1, 1}, 6, {0.9}, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sd_tree *t = expansion(cases[c].k, cases[c].d);
        ps_err e = {0};
        double E, mu, se;
        assert_int_equal(sd_tree_expected_tokens(t, cases[c].p, cases[c].m, &E, &e), 0);
        assert_int_equal(
            sd_tree_mc_tokens(t, cases[c].p, cases[c].m, 200000, 12345 + c, &mu, &se, &e), 0);
        if (!(fabs(mu - E) <= 0.01 * E) || !(fabs(mu - E) <= 5 * se))
            fail_msg("case %zu: Monte Carlo %.6f (se %.6f), closed form %.6f", c, mu, se, E);
        /* a different model must be distinguishable: p1 lowered by 0.1 */
        double q[5];
        memcpy(q, cases[c].p, sizeof q);
        q[0] -= 0.1;
        double Eq;
        assert_int_equal(sd_tree_expected_tokens(t, q, cases[c].m, &Eq, &e), 0);
        assert_true(fabs(mu - Eq) > 0.01 * Eq);
        sd_tree_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion_specinfer), cmocka_unit_test(test_mask),
        cmocka_unit_test(test_json),                cmocka_unit_test(test_expected_closed_form),
        cmocka_unit_test(test_expected_monte_carlo),
    };
    return cmocka_run_group_tests_name("specdec_tree", tests, NULL, NULL);
}
