/* sim/specdec/build: tree builders — prefix-union merge against hand trees,
 * Medusa choice lists and their field-naming errors, the depth x rank
 * expected tokens against the vector form, a hand value and Monte Carlo,
 * the Sequoia DP against brute force over every ordered rooted tree of up to
 * 12 nodes (vector and matrix, with and without depth bound) plus the paper
 * notes' [calc] numbers, and top-m by path value against brute-force top-m. */
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

#include "sim/specdec/build.h"
#include "sim/specdec/rng.h"

#define EQ(a, b) eq_d((a), (b), 1e-12, #a, __LINE__)
#define NEAR(a, b, tol) eq_d((a), (b), (tol), #a, __LINE__)
static void eq_d(double a, double b, double rel, const char *what, int line)
{
    double tol = rel * (fabs(b) > 1 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}

static sd_tree *from_parents(const int *par, const int *tok, int n)
{
    ps_err e = {0};
    sd_tree *t = sd_tree_from_parents(par, tok, n, "test", &e);
    if (!t)
        fail_msg("from_parents: %s", e.msg);
    return t;
}

static void check_tree(const sd_tree *t, const int *par, const int *tok, int n)
{
    assert_int_equal(t->n, n);
    for (int i = 0; i < n; i++) {
        if (t->parent[i] != par[i])
            fail_msg("node %d: parent %d, expected %d", i, t->parent[i], par[i]);
        if (tok && t->token[i] != tok[i])
            fail_msg("node %d: token %d, expected %d", i, t->token[i], tok[i]);
    }
}

/* ---------------------------------------------------------------- merge ---- */

static void test_merge(void **st)
{
    (void)st;
    ps_err e = {0};
    /* A: root(5) -> 1 -> 2, root -> 3;  B: root(9) -> 1 -> {2, 4} */
    static const int pa[] = {-1, 0, 1, 0}, ta[] = {5, 1, 2, 3};
    static const int pb[] = {-1, 0, 1, 1}, tb[] = {9, 1, 2, 4};
    sd_tree *A = from_parents(pa, ta, 4), *B = from_parents(pb, tb, 4);
    const sd_tree *ab[] = {A, B};
    uint32_t *org = NULL;
    sd_tree *M = sd_tree_merge(ab, 2, &org, &e);
    assert_non_null(M);
    static const int pm[] = {-1, 0, 1, 1, 0}, tm[] = {5, 1, 2, 4, 3};
    static const uint32_t om[] = {3, 3, 3, 2, 1};
    check_tree(M, pm, tm, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(org[i], om[i]);
    assert_int_equal(M->depth, 2);
    free(org);
    sd_tree_free(M);

    /* order B, A: B's children first, then A's new ones; root token is B's */
    const sd_tree *ba[] = {B, A};
    M = sd_tree_merge(ba, 2, &org, &e);
    assert_non_null(M);
    static const int pm2[] = {-1, 0, 1, 1, 0}, tm2[] = {9, 1, 2, 4, 3};
    static const uint32_t om2[] = {3, 3, 3, 1, 2};
    check_tree(M, pm2, tm2, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(org[i], om2[i]);
    free(org);
    sd_tree_free(M);

    /* first-seen order across trees: C adds root children 7 then 1 (known) */
    static const int pc[] = {-1, 0, 0, 2}, tc[] = {0, 7, 1, 8};
    sd_tree *C = from_parents(pc, tc, 4);
    const sd_tree *abc[] = {A, B, C};
    M = sd_tree_merge(abc, 3, &org, &e);
    assert_non_null(M);
    /* root, 1, 1-2, 1-4, 1-8, 3, 7 */
    static const int pm3[] = {-1, 0, 1, 1, 1, 0, 0}, tm3[] = {5, 1, 2, 4, 8, 3, 7};
    static const uint32_t om3[] = {7, 7, 3, 2, 4, 1, 4};
    check_tree(M, pm3, tm3, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(org[i], om3[i]);
    assert_int_equal(M->rank[4], 3);
    assert_int_equal(M->rank[6], 3);
    free(org);
    sd_tree_free(M);
    sd_tree_free(C);

    /* merge with itself is itself */
    static const int k[] = {1, 1, 3, 1, 1, 1, 1, 1};
    sd_tree *X = sd_tree_from_expansion(k, 8, &e);
    const sd_tree *xx[] = {X, X, X};
    M = sd_tree_merge(xx, 3, &org, &e);
    assert_non_null(M);
    check_tree(M, X->parent, X->token, X->n);
    for (int i = 0; i < X->n; i++)
        assert_int_equal(org[i], 7);
    free(org);
    sd_tree_free(M);

    /* distinct tokens: n = sum - (k - 1) */
    static const int k2[] = {2, 3}, k3[] = {3, 1, 2};
    sd_tree *Y = sd_tree_from_expansion(k2, 2, &e), *Z = sd_tree_from_expansion(k3, 3, &e);
    for (int i = 1; i < Y->n; i++)
        Y->token[i] += 1000;
    for (int i = 1; i < Z->n; i++)
        Z->token[i] += 2000;
    const sd_tree *xyz[] = {X, Y, Z};
    M = sd_tree_merge(xyz, 3, &org, &e);
    assert_non_null(M);
    assert_int_equal(M->n, X->n + Y->n + Z->n - 2);
    assert_int_equal(M->nchild[0], 1 + 2 + 3);
    assert_int_equal(M->depth, 8);
    int cnt[3] = {0, 0, 0};
    for (int i = 1; i < M->n; i++) {
        assert_true(org[i] == 1 || org[i] == 2 || org[i] == 4);
        cnt[org[i] == 1 ? 0 : org[i] == 2 ? 1 : 2]++;
    }
    assert_int_equal(cnt[0], X->n - 1);
    assert_int_equal(cnt[1], Y->n - 1);
    assert_int_equal(cnt[2], Z->n - 1);
    free(org);
    /* origin NULL works, and k = 1 copies */
    sd_tree *M1 = sd_tree_merge(xyz + 1, 1, NULL, &e);
    check_tree(M1, Y->parent, Y->token, Y->n);
    sd_tree_free(M1);
    sd_tree_free(M);

    /* errors */
    assert_null(sd_tree_merge(xyz, 0, NULL, &e));
    assert_int_equal(e.code, PS_EINPUT);
    const sd_tree *bad[] = {X, NULL};
    assert_null(sd_tree_merge(bad, 2, NULL, &e));
    assert_non_null(strstr(e.msg, "trees[1]"));
    sd_tree_free(X);
    sd_tree_free(Y);
    sd_tree_free(Z);
    sd_tree_free(A);
    sd_tree_free(B);
}

/* -------------------------------------------------------------- choices ---- */

static void test_choices(void **st)
{
    (void)st;
    ps_err e = {0};
    /* Medusa-like list, not in DFS order */
    static const int c0[] = {0}, c1[] = {0, 0}, c2[] = {1}, c3[] = {0, 1}, c4[] = {2},
                     c5[] = {0, 0, 0}, c6[] = {1, 0};
    const int *paths[] = {c0, c1, c2, c3, c4, c5, c6};
    const int lens[] = {1, 2, 1, 2, 1, 3, 2};
    sd_tree *t = sd_tree_from_choices(paths, lens, 7, "medusa", &e);
    assert_non_null(t);
    /* root, [0], [0,0], [0,0,0], [0,1], [1], [1,0], [2] */
    static const int par[] = {-1, 0, 1, 2, 1, 0, 5, 0}, tok[] = {0, 0, 0, 0, 1, 1, 0, 2};
    check_tree(t, par, tok, 8);
    assert_int_equal(t->depth, 3);
    assert_int_equal(t->rank[7], 3);
    assert_int_equal(t->rank[4], 2);
    sd_tree_free(t);

    /* same as the expansion <1,1,3,1,...> when listed that way */
    const char *js = "[[0],[0,0],[0,0,0],[0,0,1],[0,0,2],[0,0,0,0],[0,0,1,0],[0,0,2,0]]";
    json_t *j = json_loads(js, 0, NULL);
    t = sd_tree_from_choices_json(j, "cfg.choices", &e);
    json_decref(j);
    assert_non_null(t);
    static const int kx[] = {1, 1, 3, 1};
    sd_tree *x = sd_tree_from_expansion(kx, 4, &e);
    check_tree(t, x->parent, x->token, x->n);
    sd_tree_free(x);
    sd_tree_free(t);

    /* empty list: the root alone */
    j = json_loads("[]", 0, NULL);
    t = sd_tree_from_choices_json(j, NULL, &e);
    json_decref(j);
    assert_non_null(t);
    assert_int_equal(t->n, 1);
    sd_tree_free(t);

    static const struct {
        const char *json, *want;
    } bad[] = {
        {"[[0],[1,0]]", "ch[1]: path [1,0] needs its prefix [1]"},
        {"[[0],[0,0,1],[0,0,0]]", "ch[1]: path [0,0,1] needs its prefix [0,0]"},
        {"[[0],[1],[0]]", "ch[2]: duplicate of ch[0]"},
        {"[[0],[2]]", "ch[1]: path [2] has rank 2 but no rank-1 sibling"},
        {"[[0],[0,0],[0,2],[1]]", "ch[2]: path [0,2] has rank 2"},
        {"[[0],[]]", "ch[1]: empty path"},
        {"[[0],[0,-1]]", "ch[1][1]"},
        {"[[0],[0,\"a\"]]", "ch[1][1]"},
        {"[[0],3]", "ch[1]: expected an array"},
        {"{\"a\":1}", "ch: expected an array"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ps_err e2 = {0};
        j = json_loads(bad[i].json, 0, NULL);
        assert_non_null(j);
        t = sd_tree_from_choices_json(j, "ch", &e2);
        json_decref(j);
        if (t || e2.code != PS_EINPUT || !strstr(e2.msg, bad[i].want))
            fail_msg("%s: got '%s', want '%s'", bad[i].json, e2.msg, bad[i].want);
    }
}

/* ------------------------------------------------------- matrix E[tokens] ---- */

/* Monte Carlo of the depth x rank model, written independently of the library. */
static double mc_matrix(const sd_tree *t, const double *P, int depths, int m, long samples,
                        uint64_t seed, double *se)
{
    sd_rng r;
    sd_rng_seed(&r, seed);
    double s = 0, s2 = 0;
    for (long it = 0; it < samples; it++) {
        int v = 0, tokens = 1;
        for (;;) {
            int d = t->ndepth[v] + 1;
            const double *row = P + (size_t)((d < depths ? d : depths) - 1) * (size_t)m;
            double u = sd_rng_u01(&r), c = 0;
            int next = -1;
            for (int ch = t->first_child[v]; ch >= 0; ch = t->next_sib[ch]) {
                if (t->rank[ch] <= m)
                    c += row[t->rank[ch] - 1];
                if (u < c) {
                    next = ch;
                    break;
                }
            }
            if (next < 0)
                break;
            v = next;
            tokens++;
        }
        s += tokens;
        s2 += (double)tokens * tokens;
    }
    double mu = s / (double)samples;
    *se = sqrt((s2 / (double)samples - mu * mu) / (double)samples);
    return mu;
}

static void test_matrix(void **st)
{
    (void)st;
    ps_err e = {0};
    static const int k[] = {1, 1, 3, 1, 1, 1, 1, 1};
    sd_tree *t = sd_tree_from_expansion(k, 8, &e);
    static const double p[] = {.68, .09, .04, .03, .01};
    double P[3 * 5], Ev, Em;
    for (int d = 0; d < 3; d++)
        memcpy(P + d * 5, p, sizeof p);
    assert_int_equal(sd_tree_expected_tokens(t, p, 5, &Ev, &e), 0);
    assert_int_equal(sd_tree_expected_tokens_matrix(t, P, 3, 5, &Em, &e), 0);
    EQ(Em, Ev);
    sd_tree_free(t);

    /* hand value: root -> {a, b}, a -> {c}, b -> {d, f} */
    static const int par[] = {-1, 0, 1, 0, 3, 3};
    t = from_parents(par, NULL, 6);
    static const double Q[] = {0.5, 0.3, /* depth 1 */ 0.6, 0.2, /* depth 2 */ 0.1, 0.1};
    assert_int_equal(sd_tree_expected_tokens_matrix(t, Q, 3, 2, &Em, &e), 0);
    /* 1 + a .5 + c .5*.6 + b .3 + d .3*.6 + f .3*.2 */
    EQ(Em, 1 + 0.5 + 0.3 + 0.3 + 0.18 + 0.06);
    /* with only 1 row, depth 2 reuses row 1 */
    assert_int_equal(sd_tree_expected_tokens_matrix(t, Q, 1, 2, &Em, &e), 0);
    EQ(Em, 1 + 0.5 + 0.25 + 0.3 + 0.15 + 0.09);
    sd_tree_free(t);

    /* Monte Carlo within 1% (and 5 se) on a Sequoia-shaped and an expansion tree */
    static const double R[] = {0.55, 0.15, 0.05, 0.02, /**/ 0.70, 0.10, 0.05, 0.0,
                               /**/ 0.80, 0.06, 0.0, 0.0};
    static const int k2[] = {3, 2, 1, 1, 1};
    sd_tree *trees[2];
    trees[0] = sd_sequoia_opt_matrix(R, 3, 4, 24, 0, NULL, NULL, &e);
    trees[1] = sd_tree_from_expansion(k2, 5, &e);
    for (int i = 0; i < 2; i++) {
        assert_non_null(trees[i]);
        double se, mu;
        assert_int_equal(sd_tree_expected_tokens_matrix(trees[i], R, 3, 4, &Em, &e), 0);
        mu = mc_matrix(trees[i], R, 3, 4, 100000, 77 + (uint64_t)i, &se);
        if (!(fabs(mu - Em) <= 0.01 * Em) || !(fabs(mu - Em) <= 5 * se))
            fail_msg("tree %d: MC %.5f (se %.5f) vs closed form %.5f", i, mu, se, Em);
        /* the vector model with row 1 only is clearly different */
        double Ev1;
        assert_int_equal(sd_tree_expected_tokens(trees[i], R, 4, &Ev1, &e), 0);
        assert_true(fabs(mu - Ev1) > 0.05 * Ev1);
        sd_tree_free(trees[i]);
    }

    /* validation names the entry */
    static const double B1[] = {0.5, 0.3, 0.9, 0.2};
    t = from_parents(par, NULL, 6);
    assert_int_equal(sd_tree_expected_tokens_matrix(t, B1, 2, 2, &Em, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "acceptance[1]: row sum"));
    static const double B2[] = {0.5, 0.3, -0.1, 0.2};
    assert_int_equal(sd_tree_expected_tokens_matrix(t, B2, 2, 2, &Em, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "acceptance[1][0]"));
    assert_int_equal(sd_tree_expected_tokens_matrix(t, B2, 0, 2, &Em, &e), PS_EINPUT);
    sd_tree_free(t);
}

/* ------------------------------------------------------------- Sequoia ---- */

#define BF_N 12
#define BF_D 13 /* max depth tracked: 0..BF_N-1, index BF_N-1 */

/* Brute force over every ordered rooted tree of up to BF_N nodes: preorder
 * depth sequences d_0 = 0, 1 <= d_i <= d_{i-1} + 1 (each is exactly one
 * ordered tree, and every prefix is one too).  best[n][D] = the best value
 * of an n-node tree whose depth is exactly D. */
typedef struct bf {
    const double *P;
    int depths, m;
    double best[BF_N + 1][BF_D];
    int cnt[BF_N + 1];   /* children so far of the current node at each depth */
    double prod[BF_N + 1];
    long trees;
} bf;

static double bf_p(const bf *b, int depth, int rank)
{
    if (rank > b->m)
        return 0.0;
    int d = depth < b->depths ? depth : b->depths;
    return b->P[(d - 1) * b->m + rank - 1];
}

static void bf_rec(bf *b, int n, int last_depth, int maxd, double val)
{
    b->trees++;
    if (val > b->best[n][maxd])
        b->best[n][maxd] = val;
    if (n == BF_N)
        return;
    for (int d = 1; d <= last_depth + 1; d++) {
        /* new node at depth d: child of the current depth-(d-1) node */
        int save_cnt = b->cnt[d - 1], save_next = b->cnt[d];
        double save_prod = b->prod[d];
        int rank = ++b->cnt[d - 1];
        b->cnt[d] = 0;
        b->prod[d] = b->prod[d - 1] * bf_p(b, d, rank);
        bf_rec(b, n + 1, d, d > maxd ? d : maxd, val + b->prod[d]);
        b->cnt[d - 1] = save_cnt;
        b->cnt[d] = save_next;
        b->prod[d] = save_prod;
    }
}

static void bf_run(bf *b, const double *P, int depths, int m)
{
    memset(b, 0, sizeof *b);
    b->P = P;
    b->depths = depths;
    b->m = m;
    for (int i = 0; i <= BF_N; i++)
        for (int d = 0; d < BF_D; d++)
            b->best[i][d] = -1;
    b->prod[0] = 1;
    bf_rec(b, 1, 0, 0, 1.0);
}

static double bf_best(const bf *b, int n, int bound)
{
    double x = -1;
    for (int d = 0; d < BF_D && (bound <= 0 || d <= bound); d++)
        if (b->best[n][d] > x)
            x = b->best[n][d];
    return x;
}

static void check_dp(const bf *b, const double *P, int depths, int m, int bound,
                     const char *what)
{
    for (int n = 1; n <= BF_N; n++) {
        ps_err e = {0};
        double v, curve[BF_N], ev;
        sd_tree *t = depths == 0 ? sd_sequoia_opt(P, m, n, bound, &v, curve, &e)
                                 : sd_sequoia_opt_matrix(P, depths, m, n, bound, &v, curve, &e);
        if (!t)
            fail_msg("%s n=%d: %s", what, n, e.msg);
        double want = bf_best(b, n, bound);
        if (!(fabs(v - want) <= 1e-12))
            fail_msg("%s n=%d bound=%d: DP %.17g, brute force %.17g", what, n, bound, v, want);
        assert_int_equal(t->n, n);
        if (bound > 0)
            assert_true(t->depth <= bound);
        if (depths == 0)
            assert_int_equal(sd_tree_expected_tokens(t, P, m, &ev, &e), 0);
        else
            assert_int_equal(sd_tree_expected_tokens_matrix(t, P, depths, m, &ev, &e), 0);
        if (!(fabs(ev - v) <= 1e-12))
            fail_msg("%s n=%d: tree value %.17g, *value %.17g", what, n, ev, v);
        for (int i = 0; i < n; i++) {
            if (!(fabs(curve[i] - bf_best(b, i + 1, bound)) <= 1e-12))
                fail_msg("%s n=%d: curve[%d] = %.17g, brute force %.17g", what, n, i, curve[i],
                         bf_best(b, i + 1, bound));
            if (i > 0)
                assert_true(curve[i] >= curve[i - 1]);
            /* tokens = rank - 1 */
        }
        EQ(curve[0], 1.0);
        for (int i = 1; i < n; i++)
            assert_int_equal(t->token[i], t->rank[i] - 1);
        sd_tree_free(t);
    }
}

static void test_sequoia_brute_force(void **st)
{
    (void)st;
    static const double vecs[][5] = {
        {.68, .09, .04, .03, .01}, /* Table 1 greedy Alpaca (paper notes) */
        {.30, .25, .20, .15, .10}, /* flat: wide trees */
        {.10, .40, 0.0, .30, .05}, /* non-monotone with a zero */
        {.95, .01, .01, .01, .01}, /* chain-like */
    };
    static const int ms[] = {5, 3, 5, 2};
    static const int bounds[] = {0, 1, 2, 3, 5};
    bf *b = malloc(sizeof *b);
    char what[64];
    for (int v = 0; v < 4; v++) {
        bf_run(b, vecs[v], 1, ms[v]);
        assert_int_equal(b->trees, 58786 + 16796 + 4862 + 1430 + 429 + 132 + 42 + 14 + 5 + 2 +
                                       1 + 1); /* Catalan(0..11) */
        for (size_t q = 0; q < sizeof bounds / sizeof bounds[0]; q++) {
            snprintf(what, sizeof what, "vec %d bound %d", v, bounds[q]);
            check_dp(b, vecs[v], 0, ms[v], bounds[q], what);
        }
    }
    /* depth x rank matrices: random rows (seeded), and a hand one */
    sd_rng r;
    sd_rng_seed(&r, 2024);
    for (int c = 0; c < 3; c++) {
        int depths = 2 + c, m = 3 + c % 2;
        double P[5 * 4];
        for (int d = 0; d < depths; d++) {
            double s = 0, w[4];
            for (int k = 0; k < m; k++)
                s += w[k] = sd_rng_u01(&r);
            double tot = 0.5 + 0.45 * sd_rng_u01(&r);
            for (int k = 0; k < m; k++)
                P[d * m + k] = w[k] / s * tot;
        }
        bf_run(b, P, depths, m);
        for (size_t q = 0; q < sizeof bounds / sizeof bounds[0]; q++) {
            snprintf(what, sizeof what, "matrix %d bound %d", c, bounds[q]);
            check_dp(b, P, depths, m, bounds[q], what);
        }
    }
    /* a matrix whose deep rows favour width: shape must differ from row 1's optimum */
    static const double H[] = {0.9, 0.05, /**/ 0.3, 0.3};
    bf_run(b, H, 2, 2);
    check_dp(b, H, 2, 2, 0, "hand matrix");
    check_dp(b, H, 2, 2, 2, "hand matrix bound 2");
    free(b);
}

static void test_sequoia_paper(void **st)
{
    (void)st;
    ps_err e = {0};
    static const double p[] = {.68, .09, .04, .03, .01};
    static const int k[] = {1, 1, 3, 1, 1, 1, 1, 1};
    double v, E, curve[128];
    sd_tree *x = sd_tree_from_expansion(k, 8, &e);
    assert_int_equal(sd_tree_expected_tokens(x, p, 5, &E, &e), 0);
    sd_tree_free(x);
    sd_tree *t = sd_sequoia_opt(p, 5, 128, 0, &v, curve, &e);
    assert_non_null(t);
    EQ(v, curve[127]);
    /* [calc] numbers of the paper notes, to the printed precision */
    NEAR(E, 3.20, 0.005 / 3.20);
    NEAR(curve[20], 3.55, 0.005 / 3.55);
    NEAR(curve[7], 3.00, 0.005 / 3.00);
    NEAR(curve[15], 3.41, 0.005 / 3.41);
    NEAR(curve[31], 3.79, 0.005 / 3.79);
    NEAR(curve[63], 4.17, 0.005 / 4.17);
    NEAR(curve[127], 4.50, 0.005 / 4.50);
    /* the chain bound 1/(1-p1) = 3.125 is beaten from 16 nodes on */
    assert_true(curve[15] > 1 / (1 - p[0]));
    /* the 21-node optimum itself */
    sd_tree *t21 = sd_sequoia_opt(p, 5, 21, 0, &v, NULL, &e);
    EQ(v, curve[20]);
    assert_int_equal(t21->n, 21);
    sd_tree_free(t21);
    sd_tree_free(t);
    /* depth bound 4 at 64 nodes is strictly worse than unbounded */
    t = sd_sequoia_opt(p, 5, 64, 4, &v, NULL, &e);
    assert_non_null(t);
    assert_true(t->depth <= 4);
    assert_true(v < curve[63] - 0.1);
    sd_tree_free(t);

    /* documented tie-break: p = (.5, .25), 3 nodes: the chain and the star
     * both give exactly 1.75; the rank-1 subtree takes the most nodes */
    static const double pt[] = {0.5, 0.25};
    static const int chain[] = {-1, 0, 1}, star[] = {-1, 0, 0};
    t = sd_sequoia_opt(pt, 2, 3, 0, &v, NULL, &e);
    check_tree(t, chain, NULL, 3);
    EQ(v, 1.75);
    sd_tree_free(t);
    t = sd_sequoia_opt(pt, 2, 3, 1, &v, NULL, &e);
    check_tree(t, star, NULL, 3);
    EQ(v, 1.75);
    sd_tree_free(t);

    /* m = 0: the root plus filler, value 1; errors */
    t = sd_sequoia_opt(NULL, 0, 5, 0, &v, NULL, &e);
    assert_non_null(t);
    EQ(v, 1.0);
    assert_int_equal(t->n, 5);
    sd_tree_free(t);
    assert_null(sd_sequoia_opt(p, 5, 0, 0, &v, NULL, &e));
    assert_non_null(strstr(e.msg, "n = 0"));
    static const double bad[] = {0.7, 0.4};
    assert_null(sd_sequoia_opt(bad, 2, 10, 0, &v, NULL, &e));
    assert_non_null(strstr(e.msg, "acceptance[0]"));
}

/* ---------------------------------------------------------------- top-m ---- */

#define TK 3
typedef struct drafter {
    double q[6][TK]; /* per-depth probabilities, in a scrambled order */
    int calls, fail_at;
    ps_err *e;
} drafter;

/* child j's prob at depth d also depends on the path (so values rarely tie):
 * q[d][j] * (1 - 0.01 * (sum of path tokens mod 7)) */
static double dprob(const drafter *dr, const int32_t *path, int depth, int j)
{
    int s = 0;
    for (int i = 0; i < depth; i++)
        s += path[i];
    return dr->q[depth][j] * (1 - 0.01 * (s % 7));
}

static int draft(void *user, const int32_t *path, int depth, int k, int32_t *tok, double *prob)
{
    drafter *dr = user;
    dr->calls++;
    if (dr->fail_at && dr->calls == dr->fail_at) {
        ps_errf(dr->e, PS_ERUN, "drafter exploded at depth %d", depth);
        return -1;
    }
    /* the drafter's top k, returned in index order (not sorted by prob) */
    double pr[TK];
    int keep[TK] = {0}, n = k < TK ? k : TK;
    for (int j = 0; j < TK; j++)
        pr[j] = dprob(dr, path, depth, j);
    for (int c = 0; c < n; c++) {
        int b = -1;
        for (int j = 0; j < TK; j++)
            if (!keep[j] && (b < 0 || pr[j] > pr[b]))
                b = j;
        keep[b] = 1;
    }
    int o = 0;
    for (int j = 0; j < TK; j++)
        if (keep[j]) {
            tok[o] = 10 * depth + j;
            prob[o++] = pr[j];
        }
    return o;
}

typedef struct bnode {
    double val;
    int32_t path[8];
    int depth;
} bnode;

static int cmp_bnode(const void *a, const void *b)
{
    const bnode *x = a, *y = b;
    return x->val > y->val ? -1 : x->val < y->val ? 1 : 0;
}

static void bf_enum(const drafter *dr, int32_t *path, int depth, double val, int maxd,
                    bnode *out, int *n)
{
    bnode *b = &out[(*n)++];
    b->val = val;
    b->depth = depth;
    memcpy(b->path, path, (size_t)depth * sizeof(int32_t));
    if (depth == maxd)
        return;
    for (int j = 0; j < TK; j++) {
        path[depth] = 10 * depth + j;
        bf_enum(dr, path, depth + 1, val * dprob(dr, path, depth, j), maxd, out, n);
    }
}

static void test_topm(void **st)
{
    (void)st;
    static const double q[6][TK] = {{0.2, 0.7, 0.1},   {0.5, 0.3, 0.15}, {0.1, 0.2, 0.6},
                                    {0.4, 0.45, 0.1}, {0.3, 0.31, 0.29}, {0.9, 0.05, 0.04}};
    drafter dr = {0};
    memcpy(dr.q, q, sizeof q);
    const int maxd = 5;
    int cap = 1 + 3 + 9 + 27 + 81 + 243, nb = 0;
    bnode *all = malloc((size_t)cap * sizeof *all);
    int32_t path[8];
    bf_enum(&dr, path, 0, 1.0, maxd, all, &nb);
    assert_int_equal(nb, cap);
    qsort(all, (size_t)nb, sizeof *all, cmp_bnode);
    static const int ms[] = {1, 2, 7, 20, 64, 200, 364};
    for (size_t c = 0; c < sizeof ms / sizeof ms[0]; c++) {
        int m = ms[c];
        /* no ties at the cut: the brute-force set is well defined */
        if (m < nb)
            assert_true(all[m - 1].val > all[m].val);
        ps_err e = {0};
        double *vals = NULL;
        dr.calls = 0;
        sd_tree *t = sd_tree_topm(m, maxd, TK, draft, &dr, &vals, &e);
        if (!t)
            fail_msg("topm m=%d: %s", m, e.msg);
        assert_int_equal(t->n, m);
        assert_true(t->depth <= maxd);
        assert_true(dr.calls <= m);
        /* every node: value = product along the path, matches brute force */
        for (int i = 0; i < m; i++) {
            int32_t pth[8];
            int d = t->ndepth[i];
            double val = 1;
            for (int v = i, j = d; j > 0; j--, v = t->parent[v])
                pth[j - 1] = t->token[v];
            for (int j = 0; j < d; j++)
                val *= dprob(&dr, pth, j, pth[j] - 10 * j);
            EQ(vals[i], val);
            /* the path is among the brute-force top m */
            int found = 0;
            for (int b = 0; b < m && !found; b++)
                found = all[b].depth == d &&
                        memcmp(all[b].path, pth, (size_t)d * sizeof(int32_t)) == 0;
            if (!found)
                fail_msg("m=%d: node %d (depth %d) not in the brute-force top m", m, i, d);
            /* children ranked by prob: values non-increasing along siblings */
            if (t->next_sib[i] >= 0)
                assert_true(vals[t->next_sib[i]] <= vals[i]);
            if (i > 0)
                assert_true(vals[i] <= vals[t->parent[i]]);
        }
        free(vals);
        sd_tree_free(t);
    }
    /* rank order on a hand case: depth 0 children by prob 0.7, 0.2, 0.1 */
    ps_err e = {0};
    sd_tree *t = sd_tree_topm(4, 1, TK, draft, &dr, NULL, &e);
    assert_non_null(t);
    static const int par[] = {-1, 0, 0, 0}, tok[] = {0, 1, 0, 2};
    check_tree(t, par, tok, 4);
    sd_tree_free(t);
    /* topk = 1: a chain along the most likely child */
    t = sd_tree_topm(4, 0, 1, draft, &dr, NULL, &e);
    assert_non_null(t);
    static const int parc[] = {-1, 0, 1, 2}, tokc[] = {0, 1, 10, 22};
    check_tree(t, parc, tokc, 4);
    sd_tree_free(t);
    /* frontier exhausted: fewer than m nodes */
    t = sd_tree_topm(100, 2, TK, draft, &dr, NULL, &e);
    assert_non_null(t);
    assert_int_equal(t->n, 13);
    sd_tree_free(t);

    /* callback error keeps its message; bad args */
    dr.fail_at = 3;
    dr.calls = 0;
    dr.e = &e;
    assert_null(sd_tree_topm(20, 0, TK, draft, &dr, NULL, &e));
    assert_int_equal(e.code, PS_ERUN);
    assert_non_null(strstr(e.msg, "drafter exploded"));
    ps_err_clear(&e);
    dr.e = NULL;
    dr.calls = 0;
    assert_null(sd_tree_topm(20, 0, TK, draft, &dr, NULL, &e));
    assert_non_null(strstr(e.msg, "expand failed"));
    assert_null(sd_tree_topm(0, 0, TK, draft, &dr, NULL, &e));
    assert_int_equal(e.code, PS_EINPUT);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge),  cmocka_unit_test(test_choices),
        cmocka_unit_test(test_matrix), cmocka_unit_test(test_sequoia_brute_force),
        cmocka_unit_test(test_sequoia_paper), cmocka_unit_test(test_topm),
    };
    return cmocka_run_group_tests_name("specdec_build", tests, NULL, NULL);
}
