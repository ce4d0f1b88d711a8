/* sim/specdec/verify: token-tree verifiers and drafting samplers.
 *
 *  - greedy: hand trees, and random trees against a brute-force incremental
 *    greedy walk (the verdict is the greedy sequence up to the longest tree
 *    path that matches it, plus the next greedy token);
 *  - exactness: synthetic context models (p and q from seeded hashes of the
 *    path, q deliberately different), three tree shapes, MSS over iid drafts,
 *    SWOR over without-replacement drafts, naive over top-k drafts.  Each draw
 *    emits the verified tokens and continues with incremental sampling from p
 *    up to L = depth + 1 tokens; the per-position marginals of the L tokens
 *    must match the exact marginals of incremental sampling (enumeration):
 *    TV < 0.005 over 10^6 draws (sanitizer builds: fewer draws, bound = 3x the
 *    computed expected TV of sampling noise, see noise_tv);
 *  - bias: MSS over deterministic top-k drafts, its exact (biased) output law
 *    by enumeration of the verifier's branches, the empirical law matching it
 *    and its TV from p asserted well above the noise;
 *  - Thm 4.3: P(reject all | MSS) <= P(reject all | naive) in closed form for
 *    one node with k iid children, on random instances, and both closed forms
 *    against the verifiers' Monte Carlo;
 *  - errors name the node and the row. */
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

#include "sim/specdec/verify.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int quiet(void) { return getenv("PLANSIM_QUIET") != NULL; }

/* Draws per exactness configuration: 10^6 (the number); sanitizer
 * builds 10^5; SD_VERIFY_DRAWS overrides (valgrind). */
static long n_draws(void)
{
    const char *s = getenv("SD_VERIFY_DRAWS");
    if (s && atol(s) > 0)
        return atol(s);
    return SANITIZED ? 100000 : 1000000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sd_tree *tree_par(const int *par, int n)
{
    ps_err e = {0};
    sd_tree *t = sd_tree_from_parents(par, NULL, n, "test", &e);
    if (!t)
        fail_msg("tree: %s", e.msg);
    return t;
}

/* ---- path-indexed row tables ----------------------------------------------------------
 * Every path of length 0..D over V tokens has a row: index off[len] + base-V number. */
typedef struct table {
    int V, D;
    long off[8];
    long rows;
    double *p, *q; /* [rows * V] target and draft rows (normalised) */
} table;

static void table_init(table *tb, const sd_synth *m, int D, uint64_t ctx)
{
    tb->V = m->V;
    tb->D = D;
    long c = 1, off = 0;
    for (int len = 0; len <= D; len++) {
        tb->off[len] = off;
        off += c;
        c *= m->V;
    }
    tb->rows = off;
    tb->p = malloc(sizeof(double) * (size_t)off * (size_t)m->V);
    tb->q = malloc(sizeof(double) * (size_t)off * (size_t)m->V);
    assert_non_null(tb->p);
    assert_non_null(tb->q);
    int32_t path[8];
    for (int len = 0; len <= D; len++) {
        long cnt = len == D ? off - tb->off[len] : tb->off[len + 1] - tb->off[len];
        for (long i = 0; i < cnt; i++) {
            long x = i;
            for (int j = len - 1; j >= 0; j--) {
                path[j] = (int32_t)(x % m->V);
                x /= m->V;
            }
            long row = tb->off[len] + i;
            sd_synth_row(m, 0, ctx, path, len, tb->p + row * m->V);
            sd_synth_row(m, 1, ctx, path, len, tb->q + row * m->V);
        }
    }
}

static void table_free(table *tb)
{
    free(tb->p);
    free(tb->q);
}

/* Exact per-position marginals of incremental sampling from p: marg[k * V + a] = P(x_{k+1} =
 * a), k = 0..L-1, by enumeration (prob of every prefix). */
static double *exact_marginals(const table *tb, int L)
{
    int V = tb->V;
    double *marg = calloc((size_t)L * (size_t)V, sizeof(double));
    double *pre = malloc(sizeof(double)), *nxt;
    assert_non_null(marg);
    pre[0] = 1;
    long cnt = 1;
    for (int k = 0; k < L; k++) {
        nxt = k + 1 < L ? malloc(sizeof(double) * (size_t)(cnt * V)) : NULL;
        for (long i = 0; i < cnt; i++) {
            const double *row = tb->p + (tb->off[k] + i) * V;
            for (int a = 0; a < V; a++) {
                double w = pre[i] * row[a];
                marg[k * V + a] += w;
                if (nxt)
                    nxt[i * V + a] = w;
            }
        }
        free(pre);
        pre = nxt;
        cnt *= V;
    }
    free(pre);
    return marg;
}

/* Expected TV of an N-draw empirical law from p: 0.5 sum_a E|p^_a - p_a| with the normal
 * approximation E|.| = sqrt(2 p_a (1 - p_a) / (pi N)). */
static double noise_tv(const double *p, int V, long N)
{
    double s = 0;
    for (int a = 0; a < V; a++)
        s += sqrt(2 * p[a] * (1 - p[a]) / (M_PI * (double)N));
    return 0.5 * s;
}

static double tv(const double *a, const double *b, int V)
{
    double s = 0;
    for (int i = 0; i < V; i++)
        s += fabs(a[i] - b[i]);
    return 0.5 * s;
}

/* ---- one exactness run ------------------------------------------------------------------ */

typedef struct draw_ctx {
    const table *tb;
    long *idx; /* [n] path row index of each node (filled while drafting) */
} draw_ctx;

static long child_row(const table *tb, const sd_tree *t, const long *idx, int c)
{
    int d = t->ndepth[c];
    long ploc = idx[t->parent[c]] - tb->off[d - 1];
    return tb->off[d] + ploc * tb->V + t->token[c];
}

static int dist_cached(void *user, const sd_tree *t, int u, double *row, ps_err *e)
{
    (void)e;
    draw_ctx *dc = user;
    if (u > 0)
        dc->idx[u] = child_row(dc->tb, t, dc->idx, u);
    memcpy(row, dc->tb->q + dc->idx[u] * dc->tb->V, sizeof(double) * (size_t)dc->tb->V);
    return 0;
}

typedef enum { V_MSS, V_SWOR, V_NAIVE } vkind;
static const char *vname[] = {"MSS", "SWOR", "naive"};
static const char *dname[] = {"iid", "swor", "topk"};

/* Runs N draws; returns the max over positions of TV(empirical, exact) in *tvmax and the
 * max expected noise TV in *noise; cnt gets [L * V] counts. */
static void run_exact(const sd_tree *shape, const table *tb, vkind vk, sd_draft_kind dk, long N,
                      uint64_t seed, double *cnt)
{
    int V = tb->V, n = shape->n, L = shape->depth + 1;
    assert_true(L - 1 <= tb->D);
    ps_err e = {0};
    sd_tree *t = sd_tree_from_parents(shape->parent, NULL, n, "shape", &e);
    assert_non_null(t);
    long *idx = calloc((size_t)n, sizeof(long));
    const double **prow = calloc((size_t)n, sizeof(*prow));
    const double **qrow = calloc((size_t)n, sizeof(*qrow));
    sd_verdict *vd = malloc(sizeof(*vd));
    assert_true(idx && prow && qrow && vd);
    draw_ctx dc = {tb, idx};
    sd_rng r;
    sd_rng_seed(&r, seed);
    int32_t seq[16];
    memset(cnt, 0, sizeof(double) * (size_t)L * (size_t)V);
    for (long it = 0; it < N; it++) {
        idx[0] = 0;
        if (sd_draft_tree(t, V, dk, dist_cached, &dc, &r, NULL, &e))
            fail_msg("draft: %s", e.msg);
        for (int u = 1; u < n; u++)
            if (t->nchild[u] == 0)
                idx[u] = child_row(tb, t, idx, u);
        for (int u = 0; u < n; u++) {
            prow[u] = tb->p + idx[u] * V;
            qrow[u] = u ? tb->q + idx[t->parent[u]] * V : NULL;
        }
        int rc = vk == V_MSS    ? sd_verify_mss_rows(t, V, prow, qrow, &r, vd, &e)
                 : vk == V_SWOR ? sd_verify_swor_rows(t, V, prow, qrow, &r, vd, &e)
                                : sd_verify_naive_rows(t, V, prow, &r, vd, &e);
        if (rc)
            fail_msg("verify: %s", e.msg);
        int m = vd->accepted + 1;
        assert_true(m <= L);
        memcpy(seq, vd->token, sizeof(int32_t) * (size_t)m);
        /* row of the emitted prefix, then incremental sampling from p up to L tokens */
        long loc = 0;
        for (int k = 0; k < m; k++)
            loc = loc * V + seq[k];
        for (int k = m; k < L; k++) {
            const double *row = tb->p + (tb->off[k] + loc) * V;
            int x = sd_rng_pick(&r, row, V, 1.0);
            seq[k] = x;
            loc = loc * V + x;
        }
        for (int k = 0; k < L; k++)
            cnt[k * V + seq[k]] += 1;
    }
    for (int i = 0; i < L * V; i++)
        cnt[i] /= (double)N;
    sd_tree_free(t);
    free(idx);
    free(prow);
    free(qrow);
    free(vd);
}

static void check_exact(const char *tname, const sd_tree *shape, const sd_synth *m, uint64_t seed)
{
    table tb;
    table_init(&tb, m, shape->depth, 7);
    int L = shape->depth + 1, V = m->V;
    double *ex = exact_marginals(&tb, L);
    double *emp = malloc(sizeof(double) * (size_t)L * (size_t)V);
    long N = n_draws();
    static const vkind vks[3] = {V_MSS, V_SWOR, V_NAIVE};
    static const sd_draft_kind dks[3] = {SD_DRAFT_IID, SD_DRAFT_SWOR, SD_DRAFT_TOPK};
    for (int c = 0; c < 3; c++) {
        double t0 = now_s();
        run_exact(shape, &tb, vks[c], dks[c], N, seed + (uint64_t)c, emp);
        double tvmax = 0, nz = 0;
        for (int k = 0; k < L; k++) {
            double d = tv(emp + k * V, ex + k * V, V), z = noise_tv(ex + k * V, V, N);
            if (d > tvmax)
                tvmax = d;
            if (z > nz)
                nz = z;
        }
        /* 10^6 draws: the 0.005.  Fewer draws (sanitizers): 3x the expected noise. */
        double bound = N >= 1000000 ? 0.005 : 3 * nz;
        if (!quiet())
            printf("  exact %-10s V=%-2d %-5s/%-4s N=%ld: max TV over %d positions %.5f "
                   "(expected noise %.5f, bound %.5f) %.2f s\n",
                   tname, V, vname[vks[c]], dname[dks[c]], N, L, tvmax, nz, bound, now_s() - t0);
        if (!(tvmax < bound))
            fail_msg("%s %s/%s: TV %.5f >= %.5f", tname, vname[vks[c]], dname[dks[c]], tvmax,
                     bound);
    }
    free(ex);
    free(emp);
    table_free(&tb);
}

/* q deliberately different from p: half its logits are independent noise, other scale. */
static sd_synth model(int V, uint64_t seed)
{
    sd_synth m = {V, seed, 1.6, seed * 31 + 5, 0.6, 2.2};
    return m;
}

static void test_exact_chain3(void **st)
{
    (void)st;
    /* <1,1,3,1,1,1,1,1> truncated to depth 3 = <1,1,3> */
    static const int par[] = {-1, 0, 1, 2, 2, 2};
    sd_tree *t = tree_par(par, 6);
    sd_synth m = model(16, 11);
    check_exact("<1,1,3>", t, &m, 101);
    sd_tree_free(t);
}

static void test_exact_wide(void **st)
{
    (void)st;
    static const int k[] = {4, 4};
    ps_err e = {0};
    sd_tree *t = sd_tree_from_expansion(k, 2, &e);
    assert_non_null(t);
    sd_synth m = model(32, 12);
    check_exact("<4,4>", t, &m, 202);
    sd_tree_free(t);
}

static void test_exact_medusa(void **st)
{
    (void)st;
    /* Medusa-like irregular choices: (0) (0,0) (0,0,0) (0,0,1) (0,1) (0,2) (1) (1,0) (2)
     * (3) (3,0): widths 4 at the root, then 3, 2, 1, 0, 1; depth 3 */
    static const int par[] = {-1, 0, 1, 2, 2, 1, 1, 0, 7, 0, 0, 10};
    sd_tree *t = tree_par(par, 12);
    assert_int_equal(t->depth, 3);
    sd_synth m = model(16, 13);
    check_exact("medusa", t, &m, 303);
    sd_tree_free(t);
}

/* MSS with per-child q rows (a merged tree: each child drafted by its own model): exact when
 * each child is drawn independently from its own row.  One node, three children, V = 12. */
static void test_exact_mss_per_child(void **st)
{
    (void)st;
    static const int par[] = {-1, 0, 0, 0};
    sd_tree *t = tree_par(par, 4);
    enum { V = 12 };
    double p[4 * V], q[4 * V];
    sd_synth m = model(V, 21);
    sd_synth_row(&m, 0, 0, NULL, 0, p);
    for (int c = 1; c < 4; c++) {
        sd_synth mc = model(V, 21);
        mc.draft_seed = 1000 + (uint64_t)c;
        mc.draft_noise = 0.3 * c;
        sd_synth_row(&mc, 1, 0, NULL, 0, q + c * V);
        sd_synth_row(&m, 0, 99 + (uint64_t)c, NULL, 0, p + c * V); /* leaves: any rows */
    }
    long N = n_draws() / 4;
    sd_rng r;
    sd_rng_seed(&r, 5);
    double emp[V] = {0};
    sd_verdict vd;
    ps_err e = {0};
    for (long it = 0; it < N; it++) {
        for (int c = 1; c < 4; c++)
            t->token[c] = sd_rng_pick(&r, q + c * V, V, 0);
        if (sd_verify_mss(t, V, p, q, &r, &vd, &e))
            fail_msg("%s", e.msg);
        emp[vd.token[0]] += 1.0 / (double)N;
    }
    double d = tv(emp, p, V), z = noise_tv(p, V, N);
    if (!quiet())
        printf("  MSS per-child q rows, N=%ld: first-token TV %.5f (noise %.5f)\n", N, d, z);
    assert_true(d < 3 * z);
    sd_tree_free(t);
}

/* ---- bias of MSS over deterministic top-k drafts --------------------------------------- */

typedef struct bias_ctx {
    const table *tb;
    const sd_tree *t;
    double *joint; /* [V^L] */
    int L;
} bias_ctx;

/* Add mass w of the output prefix seq[0..m) continued by incremental sampling from p. */
static void extend(const bias_ctx *bc, int32_t *seq, int m, double w)
{
    int V = bc->tb->V;
    long loc = 0;
    for (int k = 0; k < m; k++)
        loc = loc * V + seq[k];
    if (m == bc->L) {
        bc->joint[loc] += w;
        return;
    }
    const double *row = bc->tb->p + (bc->tb->off[m] + loc) * V;
    for (int a = 0; a < V; a++) {
        seq[m] = a;
        extend(bc, seq, m + 1, w * row[a]);
    }
}

/* MSS at node u (path seq[0..m)) with residual pr and untried children kids[0..k) (tried in
 * uniformly random order), probability mass w. */
static void mss_enum(const bias_ctx *bc, int u, int32_t *seq, int m, const double *pr,
                     const int *kids, int k, double w)
{
    int V = bc->tb->V;
    if (k == 0) {
        for (int a = 0; a < V; a++) {
            seq[m] = a;
            extend(bc, seq, m + 1, w * pr[a]);
        }
        return;
    }
    long loc = 0;
    for (int i = 0; i < m; i++)
        loc = loc * V + seq[i];
    const double *q = bc->tb->q + (bc->tb->off[m] + loc) * V;
    for (int j = 0; j < k; j++) {
        int s = kids[j], x = bc->t->token[s];
        double a = pr[x] >= q[x] ? 1.0 : pr[x] / q[x];
        double wj = w / k;
        /* accept */
        if (a > 0) {
            seq[m] = x;
            const double *np = bc->tb->p + (bc->tb->off[m + 1] + loc * V + x) * V;
            int nk = 0, nkids[64];
            for (int c = bc->t->first_child[s]; c >= 0; c = bc->t->next_sib[c])
                nkids[nk++] = c;
            mss_enum(bc, s, seq, m + 1, np, nkids, nk, wj * a);
        }
        if (a < 1) {
            double res[64], sum = 0;
            for (int b = 0; b < V; b++) {
                res[b] = pr[b] > q[b] ? pr[b] - q[b] : 0;
                sum += res[b];
            }
            for (int b = 0; b < V; b++)
                res[b] /= sum;
            int rk[64], nr = 0;
            for (int i = 0; i < k; i++)
                if (i != j)
                    rk[nr++] = kids[i];
            mss_enum(bc, u, seq, m, res, rk, nr, wj * (1 - a));
        }
    }
}

static void test_mss_topk_bias(void **st)
{
    (void)st;
    /* <3,2>, V = 8: deterministic top-3 then top-2 drafts from a peaky drafter */
    enum { V = 8 };
    static const int k[] = {3, 2};
    ps_err e = {0};
    sd_tree *shape = sd_tree_from_expansion(k, 2, &e);
    assert_non_null(shape);
    sd_synth m = {V, 41, 1.0, 77, 0.5, 3.0};
    table tb;
    table_init(&tb, &m, 2, 3);
    int L = 3;
    double *ex = exact_marginals(&tb, L);

    /* exact law of MSS over the top-k tree: the tree is fixed by the context */
    sd_tree *t = sd_tree_from_parents(shape->parent, NULL, shape->n, "bias", &e);
    long idx[16] = {0};
    draw_ctx dc = {&tb, idx};
    if (sd_draft_tree(t, V, SD_DRAFT_TOPK, dist_cached, &dc, NULL, NULL, &e))
        fail_msg("%s", e.msg);
    double *joint = calloc(V * V * V, sizeof(double));
    bias_ctx bc = {&tb, t, joint, L};
    int32_t seq[8];
    int kids[8], nk = 0;
    for (int c = t->first_child[0]; c >= 0; c = t->next_sib[c])
        kids[nk++] = c;
    mss_enum(&bc, 0, seq, 0, tb.p, kids, nk, 1.0);
    double biased[3 * V] = {0}, tot = 0;
    for (int i = 0; i < V * V * V; i++) {
        biased[0 * V + i / (V * V)] += joint[i];
        biased[1 * V + (i / V) % V] += joint[i];
        biased[2 * V + i % V] += joint[i];
        tot += joint[i];
    }
    assert_true(fabs(tot - 1) < 1e-12);
    double bias_tv = 0;
    for (int kk = 0; kk < L; kk++)
        bias_tv = fmax(bias_tv, tv(biased + kk * V, ex + kk * V, V));

    long N = n_draws();
    double *emp = malloc(sizeof(double) * 3 * V);
    run_exact(shape, &tb, V_MSS, SD_DRAFT_TOPK, N, 9, emp);
    double d_exact = 0, d_biased = 0, nz = 0;
    for (int kk = 0; kk < L; kk++) {
        d_exact = fmax(d_exact, tv(emp + kk * V, ex + kk * V, V));
        d_biased = fmax(d_biased, tv(emp + kk * V, biased + kk * V, V));
        nz = fmax(nz, noise_tv(biased + kk * V, V, N));
    }
    if (!quiet())
        printf("  MSS over top-k drafts (<3,2>, V=8): exact biased law is TV %.4f from p; "
               "empirical: TV %.4f from p, %.5f from the biased law (noise %.5f)\n",
               bias_tv, d_exact, d_biased, nz);
    /* the bias is real and large ... */
    assert_true(bias_tv > 0.02);
    assert_true(d_exact > bias_tv - 3 * nz);
    /* ... and the verifier reproduces exactly the enumerated biased law */
    assert_true(d_biased < 3 * nz);
    free(emp);
    free(joint);
    free(ex);
    table_free(&tb);
    sd_tree_free(t);
    sd_tree_free(shape);
}

/* ---- Thm 4.3 ----------------------------------------------------------------------------- */

static void rand_dist(sd_rng *r, double *x, int V, double sharp)
{
    double s = 0;
    for (int a = 0; a < V; a++) {
        x[a] = pow(sd_rng_u01(r), sharp);
        if (sd_rng_u01(r) < 0.15)
            x[a] = 0;
        s += x[a];
    }
    if (!(s > 0)) {
        x[0] = 1;
        s = 1;
    }
    for (int a = 0; a < V; a++)
        x[a] /= s;
}

/* P(reject all) for one node with k children drafted iid from q. MSS: the residual does not
 * depend on the drafted token, so P = prod_j r_j, r_j = sum max(0, p_{j-1} - q) and
 * p_j = norm(max(0, p_{j-1} - q)).  NS: sum_y p(y) (1 - q(y))^k. */
static double rej_mss(const double *p, const double *q, int V, int k)
{
    double pr[64], P = 1;
    memcpy(pr, p, sizeof(double) * (size_t)V);
    for (int j = 0; j < k; j++) {
        double r = 0;
        for (int a = 0; a < V; a++) {
            pr[a] = pr[a] > q[a] ? pr[a] - q[a] : 0;
            r += pr[a];
        }
        P *= r;
        if (!(r > 0))
            return 0;
        for (int a = 0; a < V; a++)
            pr[a] /= r;
    }
    return P;
}

static double rej_ns(const double *p, const double *q, int V, int k)
{
    double s = 0;
    for (int a = 0; a < V; a++)
        s += p[a] * pow(1 - q[a], k);
    return s;
}

static void test_thm43(void **st)
{
    (void)st;
    sd_rng r;
    sd_rng_seed(&r, 4343);
    double p[64], q[64], worst = -1;
    int n_strict = 0;
    for (int it = 0; it < 20000; it++) {
        int V = 2 + (int)(sd_rng_u01(&r) * 30), k = 1 + (int)(sd_rng_u01(&r) * 6);
        rand_dist(&r, p, V, 1 + 4 * sd_rng_u01(&r));
        rand_dist(&r, q, V, 1 + 4 * sd_rng_u01(&r));
        double a = rej_mss(p, q, V, k), b = rej_ns(p, q, V, k);
        if (a - b > worst)
            worst = a - b;
        n_strict += a < b - 1e-12;
        if (!(a <= b + 1e-12))
            fail_msg("Thm 4.3 violated: V=%d k=%d MSS %.15g > NS %.15g", V, k, a, b);
    }
    if (!quiet())
        printf("  Thm 4.3: 20000 random (p, q, k): max P_rej(MSS) - P_rej(NS) = %.3g, strict in "
               "%d\n",
               worst, n_strict);
    assert_true(n_strict > 15000);

    /* the closed forms are what the verifiers do: one node, k iid children */
    for (int inst = 0; inst < 3; inst++) {
        int V = 10, k = 2 + inst;
        rand_dist(&r, p, V, 2);
        rand_dist(&r, q, V, 3);
        int par[8] = {-1, 0, 0, 0, 0, 0, 0, 0};
        sd_tree *t = tree_par(par, k + 1);
        double P[8 * 10], Q[8 * 10];
        for (int u = 0; u <= k; u++) {
            memcpy(P + u * V, p, sizeof(double) * V);
            memcpy(Q + u * V, q, sizeof(double) * V);
        }
        long N = SANITIZED ? 50000 : 400000, rm = 0, rn = 0;
        sd_verdict vd;
        ps_err e = {0};
        for (long i = 0; i < N; i++) {
            for (int c = 1; c <= k; c++)
                t->token[c] = sd_rng_pick(&r, q, V, 1.0);
            if (sd_verify_mss(t, V, P, Q, &r, &vd, &e))
                fail_msg("%s", e.msg);
            rm += vd.accepted == 0;
            if (sd_verify_naive(t, V, P, &r, &vd, &e))
                fail_msg("%s", e.msg);
            rn += vd.accepted == 0;
        }
        double a = rej_mss(p, q, V, k), b = rej_ns(p, q, V, k);
        double fa = (double)rm / N, fb = (double)rn / N;
        double sa = sqrt(a * (1 - a) / N), sb = sqrt(b * (1 - b) / N);
        if (!quiet())
            printf("  k=%d: P_rej MSS %.4f (MC %.4f), NS %.4f (MC %.4f)\n", k, a, fa, b, fb);
        assert_true(fabs(fa - a) < 4 * sa + 1e-9);
        assert_true(fabs(fb - b) < 4 * sb + 1e-9);
        sd_tree_free(t);
    }
}

/* ---- greedy -------------------------------------------------------------------------------- */

static void test_greedy_hand(void **st)
{
    (void)st;
    static const int par[] = {-1, 0, 1, 0, 3, 3};
    static const int tok[] = {0, 5, 7, 6, 2, 9};
    ps_err e = {0};
    sd_tree *t = sd_tree_from_parents(par, tok, 6, "hand", &e);
    assert_non_null(t);
    int32_t am[6] = {6, 0, 0, 9, 0, 4};
    sd_verdict v;
    sd_verify_greedy(t, am, &v);
    assert_int_equal(v.accepted, 2);
    assert_int_equal(v.node[0], 3);
    assert_int_equal(v.node[1], 5);
    assert_int_equal(v.token[0], 6);
    assert_int_equal(v.token[1], 9);
    assert_int_equal(v.token[2], 4);
    assert_int_equal(v.bonus, 4);
    /* nothing matches at the root: one token, the root's argmax */
    am[0] = 3;
    sd_verify_greedy(t, am, &v);
    assert_int_equal(v.accepted, 0);
    assert_int_equal(v.bonus, 3);
    assert_int_equal(v.token[0], 3);
    sd_tree_free(t);
    /* duplicate sibling tokens: the first in rank order wins */
    static const int par2[] = {-1, 0, 0, 2};
    static const int tok2[] = {0, 4, 4, 1};
    t = sd_tree_from_parents(par2, tok2, 4, "dup", &e);
    int32_t am2[4] = {4, 8, 1, 2};
    sd_verify_greedy(t, am2, &v);
    assert_int_equal(v.accepted, 1);
    assert_int_equal(v.node[0], 1);
    assert_int_equal(v.bonus, 8);
    sd_tree_free(t);
}

static int argmax_row(const double *row, int V)
{
    int b = 0;
    for (int a = 1; a < V; a++)
        if (row[a] > row[b])
            b = a;
    return b;
}

static void test_greedy_random(void **st)
{
    (void)st;
    enum { V = 6, NMAX = 40 };
    sd_synth m = {V, 5, 1.0, 0, 0, 1.0};
    sd_rng r;
    sd_rng_seed(&r, 77);
    double row[V];
    int total_acc = 0, maxacc = 0;
    for (int it = 0; it < 2000; it++) {
        uint64_t ctx = sd_rng_next(&r);
        int n = 2 + (int)(sd_rng_u01(&r) * (NMAX - 1));
        int par[NMAX], tok[NMAX], stack[NMAX], sp = 0;
        int32_t path[NMAX];
        par[0] = -1;
        tok[0] = 0;
        stack[sp++] = 0;
        /* random DFS order: the parent of the next node lies on the current root path */
        int depth_of[NMAX];
        depth_of[0] = 0;
        for (int i = 1; i < n; i++) {
            int j = (int)(sd_rng_u01(&r) * sp);
            if (sd_rng_u01(&r) < 0.6)
                j = sp - 1; /* deepen often */
            sp = j + 1;
            par[i] = stack[j];
            depth_of[i] = depth_of[par[i]] + 1;
            stack[sp++] = i;
            /* token: the greedy choice at the parent half the time, else random */
            int len = depth_of[par[i]];
            for (int v = par[i], k = len - 1; v > 0; v = par[v], k--)
                path[k] = tok[v];
            sd_synth_row(&m, 0, ctx, path, len, row);
            tok[i] = sd_rng_u01(&r) < 0.5 ? argmax_row(row, V) : (int)(sd_rng_u01(&r) * V);
        }
        ps_err e = {0};
        sd_tree *t = sd_tree_from_parents(par, tok, n, "rand", &e);
        if (!t)
            fail_msg("%s", e.msg);
        int32_t am[NMAX];
        for (int u = 0; u < n; u++) {
            int len = t->ndepth[u];
            for (int v = u, k = len - 1; v > 0; v = t->parent[v], k--)
                path[k] = t->token[v];
            sd_synth_row(&m, 0, ctx, path, len, row);
            am[u] = argmax_row(row, V);
        }
        sd_verdict vd;
        sd_verify_greedy(t, am, &vd);
        /* brute force: incremental greedy decoding, and the deepest tree node whose path is a
         * prefix of the greedy sequence */
        int32_t g[NMAX + 1];
        for (int k = 0; k <= t->depth; k++) {
            sd_synth_row(&m, 0, ctx, g, k, row);
            g[k] = argmax_row(row, V);
        }
        /* (among siblings with equal tokens only the first in rank order counts) */
        int best = 0;
        for (int u = 1; u < n; u++) {
            int len = t->ndepth[u], ok = 1;
            for (int v = u, k = len - 1; v > 0; v = t->parent[v], k--) {
                ok &= t->token[v] == g[k];
                for (int s = t->first_child[t->parent[v]]; s != v; s = t->next_sib[s])
                    ok &= t->token[s] != t->token[v];
            }
            if (ok && len > best)
                best = len;
        }
        assert_int_equal(vd.accepted, best);
        for (int k = 0; k <= vd.accepted; k++)
            assert_int_equal(vd.token[k], g[k]);
        assert_int_equal(vd.bonus, g[vd.accepted]);
        for (int k = 0; k < vd.accepted; k++) {
            assert_int_equal(t->ndepth[vd.node[k]], k + 1);
            assert_int_equal(t->parent[vd.node[k]], k ? vd.node[k - 1] : 0);
        }
        total_acc += vd.accepted;
        if (vd.accepted > maxacc)
            maxacc = vd.accepted;
        sd_tree_free(t);
    }
    if (!quiet())
        printf("  greedy: 2000 random trees, mean accepted %.2f, max %d\n", total_acc / 2000.0,
               maxacc);
    assert_true(maxacc >= 4); /* the comparison saw deep paths, not just root misses */
}

/* ---- drafting ----------------------------------------------------------------------------- */

static void test_draft(void **st)
{
    (void)st;
    static const int k[] = {5};
    ps_err e = {0};
    sd_tree *t = sd_tree_from_expansion(k, 1, &e);
    double q[6] = {0.1, 0.3, 0, 0.3, 0.2, 0.1};
    /* top-k: 1, 3 (tie: lower id), 4, 0, 5 */
    assert_int_equal(sd_draft_children(t, 0, 6, SD_DRAFT_TOPK, q, NULL, &e), 0);
    static const int want[] = {1, 3, 4, 0, 5};
    for (int i = 0; i < 5; i++)
        assert_int_equal(t->token[1 + i], want[i]);
    /* without replacement: distinct, never the zero-mass token; the first child ~ q and the
     * pair law matches q(a) q(b) / (1 - q(a)) */
    sd_rng r;
    sd_rng_seed(&r, 3);
    double first[6] = {0}, pair01 = 0;
    long N = 200000;
    for (long i = 0; i < N; i++) {
        assert_int_equal(sd_draft_children(t, 0, 6, SD_DRAFT_SWOR, q, &r, &e), 0);
        for (int a = 1; a <= 5; a++) {
            assert_int_not_equal(t->token[a], 2);
            for (int b = 1; b < a; b++)
                assert_int_not_equal(t->token[a], t->token[b]);
        }
        first[t->token[1]] += 1.0 / N;
        pair01 += (t->token[1] == 1 && t->token[2] == 3) / (double)N;
    }
    double want01 = 0.3 * 0.3 / 0.7;
    assert_true(tv(first, q, 6) < 0.01);
    assert_true(fabs(pair01 - want01) < 4 * sqrt(want01 * (1 - want01) / N));
    sd_tree_free(t);
    /* SWOR with more children than positive-mass tokens: placeholders, skipped by SWOR */
    static const int k3[] = {3};
    t = sd_tree_from_expansion(k3, 1, &e);
    double q2[4] = {0, 1, 0, 0};
    assert_int_equal(sd_draft_children(t, 0, 4, SD_DRAFT_SWOR, q2, &r, &e), 0);
    assert_int_equal(t->token[1], 1);
    assert_int_equal(t->token[2], 0);
    assert_int_equal(t->token[3], 2);
    double P[4 * 4], Q[4 * 4];
    for (int u = 0; u < 4; u++)
        for (int a = 0; a < 4; a++) {
            P[u * 4 + a] = 0.25;
            Q[u * 4 + a] = q2[a];
        }
    /* p uniform, q = delta(1): child 1 accepted w.p. 1/4; else the residual is uniform on
     * {0, 2, 3} and the placeholders 0, 2 must NOT be accepted: tokens 0/2/3 as the bonus with
     * 1/4 each */
    double cnt[4] = {0};
    sd_verdict vd;
    for (long i = 0; i < 100000; i++) {
        assert_int_equal(sd_verify_swor(t, 4, P, Q, &r, &vd, &e), 0);
        if (vd.token[0] != 1)
            assert_int_equal(vd.accepted, 0);
        cnt[vd.token[0]] += 1e-5;
    }
    for (int a = 0; a < 4; a++)
        assert_true(fabs(cnt[a] - 0.25) < 0.006);
    /* more children than tokens without replacement: error */
    assert_int_equal(sd_draft_children(t, 0, 2, SD_DRAFT_TOPK, q2, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "node 0"));
    sd_tree_free(t);
}

/* ---- tokens-per-step Monte Carlo ----------------------------------------------------------- */

static void test_mc_tokens(void **st)
{
    (void)st;
    ps_err e = {0};
    static const int chain[] = {1, 1, 1, 1};
    sd_tree *c = sd_tree_from_expansion(chain, 4, &e);
    /* q = p: greedy over top-k and MSS accept every draft: depth + 1 tokens exactly */
    sd_synth same = {16, 9, 2.0, 0, 0.0, 2.0};
    double mean, se;
    assert_int_equal(
        sd_verify_mc_tokens(c, &same, SD_VERIFY_GREEDY, SD_DRAFT_TOPK, 200, 1, &mean, &se, &e),
        0);
    assert_true(mean == 5.0 && se == 0.0);
    assert_int_equal(
        sd_verify_mc_tokens(c, &same, SD_VERIFY_MSS, SD_DRAFT_IID, 200, 1, &mean, &se, &e), 0);
    assert_true(mean == 5.0);
    /* width pays: MSS beats naive on a width-4 tree (Table 3's direction) */
    static const int w[] = {4, 1, 1};
    sd_tree *t = sd_tree_from_expansion(w, 3, &e);
    sd_synth m = model(32, 3);
    double mss, ns, se1, se2;
    assert_int_equal(
        sd_verify_mc_tokens(t, &m, SD_VERIFY_MSS, SD_DRAFT_IID, 20000, 2, &mss, &se1, &e), 0);
    assert_int_equal(
        sd_verify_mc_tokens(t, &m, SD_VERIFY_NAIVE, SD_DRAFT_TOPK, 20000, 2, &ns, &se2, &e), 0);
    if (!quiet())
        printf("  MC tokens/step <4,1,1>, V=32: MSS %.3f +- %.3f, naive(top-k) %.3f +- %.3f\n", mss,
               se1, ns, se2);
    assert_true(mss > 1 && mss < 4 && ns > 1 && ns < 4);
    assert_int_equal(sd_verify_mc_tokens(t, &m, (sd_verify_kind)7, SD_DRAFT_IID, 10, 1, &mean,
                                         NULL, &e),
                     PS_EINPUT);
    sd_tree_free(t);
    sd_tree_free(c);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_errors(void **st)
{
    (void)st;
    static const int par[] = {-1, 0, 1};
    static const int tok[] = {0, 1, 2};
    ps_err e = {0};
    sd_tree *t = sd_tree_from_parents(par, tok, 3, "err", &e);
    enum { V = 4 };
    double p[3 * V], q[3 * V];
    for (int i = 0; i < 3 * V; i++)
        p[i] = q[i] = 0.25;
    sd_rng r;
    sd_rng_seed(&r, 1);
    sd_verdict vd;
    assert_int_equal(sd_verify_mss(t, 0, p, q, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "V = 0"));
    assert_int_equal(sd_verify_naive(t, -3, p, &r, &vd, &e), PS_EINPUT);
    /* NaN in the p row of node 2 (reached: q = p accepts every draft) */
    p[2 * V + 3] = NAN;
    assert_int_equal(sd_verify_mss(t, V, p, q, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "p row of node 2"));
    assert_non_null(strstr(e.msg, "p[2*V+3]"));
    assert_int_equal(sd_verify_swor(t, V, p, q, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "node 2"));
    p[2 * V + 3] = 0.25;
    /* negative q entry of node 1 */
    q[1 * V + 2] = -0.5;
    assert_int_equal(sd_verify_swor(t, V, p, q, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "q row of node 1"));
    assert_non_null(strstr(e.msg, "q[1*V+2]"));
    assert_int_equal(sd_verify_mss(t, V, p, q, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "q row of node 1"));
    q[1 * V + 2] = 0.25;
    /* an all-zero p row, an infinite one */
    for (int a = 0; a < V; a++)
        p[a] = 0;
    assert_int_equal(sd_verify_naive(t, V, p, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "p row of node 0"));
    p[0] = INFINITY;
    assert_int_equal(sd_verify_naive(t, V, p, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "p[0*V+0]"));
    p[0] = 1;
    /* a token outside the vocabulary */
    t->token[1] = 9;
    assert_int_equal(sd_verify_mss(t, V, p, q, &r, &vd, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "token of node 1"));
    t->token[1] = 1;
    /* a drafter row with a NaN */
    double bad[V] = {0.5, NAN, 0.25, 0.25};
    assert_int_equal(sd_draft_children(t, 1, V, SD_DRAFT_IID, bad, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "draft row of node 1"));
    sd_tree_free(t);
}

/* A chain deeper than SD_MAX_PATH: every verifier stops at depth SD_MAX_PATH, bonus there. */
static void test_max_path(void **st)
{
    (void)st;
    enum { N = SD_MAX_PATH + 77 };
    int *par = malloc(sizeof(int) * N);
    double *p = malloc(sizeof(double) * 2 * N);
    int32_t *am = calloc(N, sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        par[i] = i - 1;
        p[2 * i] = 1;
        p[2 * i + 1] = 0;
    }
    sd_tree *t = tree_par(par, N); /* tokens all 0 = the argmax / the only token of p */
    sd_verdict *vd = malloc(sizeof(*vd));
    sd_rng r;
    sd_rng_seed(&r, 2);
    ps_err e = {0};
    sd_verify_greedy(t, am, vd);
    assert_int_equal(vd->accepted, SD_MAX_PATH);
    assert_int_equal(vd->node[SD_MAX_PATH - 1], SD_MAX_PATH);
    assert_int_equal(sd_verify_mss(t, 2, p, p, &r, vd, &e), 0);
    assert_int_equal(vd->accepted, SD_MAX_PATH);
    assert_int_equal(vd->token[SD_MAX_PATH], 0);
    assert_int_equal(sd_verify_swor(t, 2, p, p, &r, vd, &e), 0);
    assert_int_equal(vd->accepted, SD_MAX_PATH);
    assert_int_equal(sd_verify_naive(t, 2, p, &r, vd, &e), 0);
    assert_int_equal(vd->accepted, SD_MAX_PATH);
    assert_int_equal(vd->bonus, 0);
    sd_tree_free(t);
    free(vd);
    free(par);
    free(p);
    free(am);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_hand),      cmocka_unit_test(test_greedy_random),
        cmocka_unit_test(test_draft),            cmocka_unit_test(test_errors),
        cmocka_unit_test(test_thm43),            cmocka_unit_test(test_mc_tokens),
        cmocka_unit_test(test_exact_chain3),     cmocka_unit_test(test_exact_wide),
        cmocka_unit_test(test_exact_medusa),     cmocka_unit_test(test_exact_mss_per_child),
        cmocka_unit_test(test_mss_topk_bias),    cmocka_unit_test(test_max_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
