/* sim/quant/alloc: the exact bit-allocation solver against brute force on
 * random problems (one and two constraints, ties, fixed layers), the
 * frontier's shape, the HAWQ ResNet18 golden optima from the ILP notebook's
 * arrays (tests/fixtures/hawq_resnet18.json), the baselines and the
 * OMEGA.json loader's messages.  Run from the repository root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/quant/alloc.h"
#include "sim/specdec/rng.h"

#define R18 "tests/fixtures/hawq_resnet18.json"
#define R50 "tests/fixtures/hawq_resnet50.json"

/* |a - b| <= tol, with both values in the failure message. */
#define assert_double_equal(a, b, tol)                                                        \
    do {                                                                                      \
        double a_ = (a), b_ = (b), t_ = (tol);                                                \
        if (!(fabs(a_ - b_) <= t_))                                                           \
            fail_msg("%s = %.17g, %s = %.17g (tol %g)", #a, a_, #b, b_, t_);                  \
    } while (0)

static const int all_bits[5] = {2, 3, 4, 6, 8};

/* A random problem: L layers, each with a random non-empty subset of
 * {2,3,4,6,8}; bytes ∝ params·bits (+ a random scale overhead), latency
 * non-linear in bits, Ω = t·Δ with Δ decreasing in bits.  Optional ties and
 * fixed layers. */
static void random_problem(sd_rng *r, psq_problem *p, int L, int with_ties)
{
    ps_err e = {0};
    assert_int_equal(psq_problem_init(p, L, &e), 0);
    for (int i = 0; i < L; i++) {
        psq_layer *l = &p->layers[i];
        double params = 100 + 1000 * sd_rng_u01(r), t = 0.01 + sd_rng_u01(r);
        double lat0 = 1e-4 * (0.5 + sd_rng_u01(r));
        for (int k = 0; k < 5; k++) {
            if (sd_rng_u01(r) < 0.3 && !(k == 4 && l->n_opt == 0))
                continue;
            psq_option *o = &l->opt[l->n_opt++];
            int b = all_bits[k];
            o->bits = b;
            o->omega = t * params * pow(4.0, -b) * (0.8 + 0.4 * sd_rng_u01(r));
            o->bytes = params * b / 8.0 + 4 * sd_rng_u01(r);
            o->latency_s = lat0 * (1 + b * (0.05 + 0.2 * sd_rng_u01(r)));
            o->bops = params * b * 8.0;
        }
    }
    if (with_ties && L >= 3) {
        /* tie two layers that offer the same set, make them share it */
        int a = (int)(sd_rng_u01(r) * L), c = (a + 1 + (int)(sd_rng_u01(r) * (L - 1))) % L;
        psq_layer *la = &p->layers[a], *lc = &p->layers[c];
        lc->n_opt = la->n_opt;
        for (int k = 0; k < la->n_opt; k++) {
            lc->opt[k].bits = la->opt[k].bits;
            lc->opt[k].omega = la->opt[k].omega * (0.5 + sd_rng_u01(r));
        }
        snprintf(la->tie, PSQ_NAME_MAX, "g");
        snprintf(lc->tie, PSQ_NAME_MAX, "g");
        int f = (int)(sd_rng_u01(r) * L);
        if (f != a && f != c)
            p->layers[f].fixed_bits = p->layers[f].opt[p->layers[f].n_opt - 1].bits;
    }
    assert_int_equal(psq_problem_check(p, &e), 0);
}

/* Compare solver and brute force: both fail, or both give the same Ω. */
static int compare_one(const psq_problem *p, const psq_budget *b)
{
    ps_err e1 = {0}, e2 = {0};
    psq_solution s1, s2;
    int r1 = psq_solve(p, b, NULL, &s1, &e1);
    int r2 = psq_brute_force(p, b, &s2, &e2);
    if (r1 || r2) {
        if (r1 != r2)
            fprintf(stderr, "solve rc %d (%s) vs brute rc %d (%s)\n", r1, e1.msg, r2, e2.msg);
        assert_int_equal(r1, r2);
        assert_int_equal(r1, PS_EINPUT);
        assert_non_null(strstr(e1.msg, "infeasible"));
        return 0;
    }
    assert_true(psq_fits(&s1, b));
    assert_true(psq_fits(&s2, b));
    assert_double_equal(s1.omega_sum, s2.omega_sum, 1e-15 * (1 + s2.omega_sum));
    /* generic random values: the optimum is unique */
    assert_memory_equal(s1.bits, s2.bits, (size_t)p->n_layers * sizeof(int));
    psq_solution_free(&s1);
    psq_solution_free(&s2);
    return 1;
}

static void test_random_vs_brute_force(void **state)
{
    (void)state;
    sd_rng r;
    sd_rng_seed(&r, 7);
    int n = getenv("PSQ_TEST_BIG") ? 3000 : 400, solved = 0, cases = 0;
    for (int t = 0; t < n; t++) {
        psq_problem p;
        int L = 1 + (int)(sd_rng_u01(&r) * 8);
        random_problem(&r, &p, L, t % 3 == 0);
        ps_err e = {0};
        double mn[PSQ_NCOST], mx[PSQ_NCOST];
        assert_int_equal(psq_cost_range(&p, mn, mx, &e), 0);
        double f1 = -0.05 + 1.1 * sd_rng_u01(&r), f2 = -0.05 + 1.1 * sd_rng_u01(&r);
        psq_budget bs[4];
        bs[0] = psq_budget_none();
        bs[0].bytes = mn[0] + f1 * (mx[0] - mn[0]);
        bs[1] = psq_budget_none();
        bs[1].latency_s = mn[1] + f1 * (mx[1] - mn[1]);
        bs[2] = psq_budget_none();
        bs[2].bytes = mn[0] + f1 * (mx[0] - mn[0]);
        bs[2].latency_s = mn[1] + f2 * (mx[1] - mn[1]);
        bs[3] = bs[2];
        bs[3].bops = mn[2] + 0.7 * (mx[2] - mn[2]);
        for (int k = 0; k < 4; k++) {
            solved += compare_one(&p, &bs[k]);
            cases++;
        }
        psq_problem_free(&p);
    }
    /* most cases must be feasible, some infeasible: both paths exercised */
    assert_true(solved > cases / 2);
    assert_true(solved < cases);
}

/* Brute-force Pareto set (bytes, Ω) equals the frontier, which is strictly
 * monotone; each point is the optimum at its own size. */
static void test_frontier_shape(void **state)
{
    (void)state;
    sd_rng r;
    sd_rng_seed(&r, 11);
    for (int t = 0; t < 20; t++) {
        psq_problem p;
        random_problem(&r, &p, 2 + t % 5, t % 2);
        ps_err e = {0};
        psq_frontier f;
        assert_int_equal(psq_frontier_compute(&p, NULL, NULL, &f, &e), 0);
        assert_true(f.n_points >= 1);
        for (int i = 1; i < f.n_points; i++) {
            assert_true(f.bytes[i] > f.bytes[i - 1]);
            assert_true(f.omega[i] < f.omega[i - 1]);
        }
        /* brute-force count of non-dominated configurations */
        int L = p.n_layers, idx[8] = {0}, count = 0;
        for (;;) {
            int bits[8];
            int ok = 1;
            for (int i = 0; i < L; i++)
                bits[i] = p.layers[i].opt[idx[i]].bits;
            psq_solution s;
            if (psq_evaluate(&p, bits, &s, &e) == 0) {
                /* dominated by some frontier point? */
                for (int j = 0; j < f.n_points && ok; j++)
                    if (f.bytes[j] <= s.bytes * (1 + 1e-12) && f.omega[j] <= s.omega_sum &&
                        (f.bytes[j] < s.bytes * (1 - 1e-12) || f.omega[j] < s.omega_sum))
                        ok = 0;
                count += ok;
                psq_solution_free(&s);
            }
            int i = 0;
            while (i < L && ++idx[i] == p.layers[i].n_opt)
                idx[i++] = 0;
            if (i == L)
                break;
        }
        assert_int_equal(count, f.n_points);
        for (int j = 0; j < f.n_points; j++) {
            psq_budget b = psq_budget_none();
            b.bytes = f.bytes[j];
            psq_solution s;
            assert_int_equal(psq_brute_force(&p, &b, &s, &e), 0);
            assert_double_equal(s.omega_sum, f.omega[j], 1e-15);
            psq_solution_free(&s);
        }
        psq_frontier_free(&f);
        psq_problem_free(&p);
    }
}

/* Two-dimensional frontier (bytes, latency, Ω): exactly the configurations
 * no other configuration dominates (brute force). */
static void test_frontier_2d(void **state)
{
    (void)state;
    sd_rng r;
    sd_rng_seed(&r, 13);
    for (int t = 0; t < 20; t++) {
        psq_problem p;
        random_problem(&r, &p, 2 + t % 5, t % 2);
        ps_err e = {0};
        psq_frontier f;
        psq_opts o = {.dims = (1u << PSQ_COST_BYTES) | (1u << PSQ_COST_LATENCY)};
        assert_int_equal(psq_frontier_compute(&p, NULL, &o, &f, &e), 0);
        /* all valid configurations */
        int L = p.n_layers, idx[8] = {0}, n = 0;
        double (*cfg)[3] = malloc(sizeof *cfg * 40000);
        assert_non_null(cfg);
        for (;;) {
            int bits[8];
            for (int i = 0; i < L; i++)
                bits[i] = p.layers[i].opt[idx[i]].bits;
            psq_solution s;
            if (psq_evaluate(&p, bits, &s, &e) == 0) {
                assert_true(n < 40000);
                cfg[n][0] = s.bytes;
                cfg[n][1] = s.latency_s;
                cfg[n][2] = s.omega_sum;
                n++;
                psq_solution_free(&s);
            }
            int i = 0;
            while (i < L && ++idx[i] == p.layers[i].n_opt)
                idx[i++] = 0;
            if (i == L)
                break;
        }
        int nd = 0;
        for (int a = 0; a < n; a++) {
            int dom = 0;
            for (int b = 0; b < n && !dom; b++)
                dom = b != a && cfg[b][0] <= cfg[a][0] && cfg[b][1] <= cfg[a][1] &&
                      cfg[b][2] <= cfg[a][2] &&
                      (cfg[b][0] < cfg[a][0] || cfg[b][1] < cfg[a][1] || cfg[b][2] < cfg[a][2]);
            nd += !dom;
        }
        assert_int_equal(f.n_points, nd);
        for (int j = 0; j < f.n_points; j++)
            for (int b = 0; b < n; b++)
                assert_false(cfg[b][0] < f.bytes[j] && cfg[b][1] < f.latency_s[j] &&
                             cfg[b][2] < f.omega[j]);
        free(cfg);
        psq_frontier_free(&f);
        psq_problem_free(&p);
    }
}

static void test_infeasible_and_cap(void **state)
{
    (void)state;
    psq_problem p;
    ps_err e = {0};
    const int bits[2] = {4, 8};
    const double t[3] = {1, 2, 3}, d[6] = {10, 1, 20, 2, 30, 3};
    const double by[6] = {50, 100, 50, 100, 50, 100};
    assert_int_equal(psq_problem_from_deltas(&p, 3, 2, bits, t, d, by, NULL, NULL, NULL, &e), 0);
    assert_double_equal(p.layers[2].opt[0].omega, 90, 0);
    psq_budget b = psq_budget_none();
    b.bytes = 149;
    psq_solution s;
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "smallest achievable size, 150 bytes"));
    b.bytes = 150; /* exactly all-4-bit */
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
    assert_double_equal(s.omega_sum, 140, 0);
    psq_solution_free(&s);
    b.bytes = 200; /* one layer at 8 bits: the one saving most (layer 2: 90-9=81) */
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
    assert_int_equal(s.bits[0], 4);
    assert_int_equal(s.bits[2], 8);
    assert_double_equal(s.omega_sum, 10 + 40 + 9, 1e-12);
    psq_solution_free(&s);
    /* cap: 3 units × 2 options → 8 candidates at the last step */
    psq_opts o = {.max_states = 1};
    psq_frontier f;
    assert_int_equal(psq_frontier_compute(&p, NULL, &o, &f, &e), PS_ERUN);
    assert_non_null(strstr(e.msg, "frontier too large"));
    psq_problem_free(&p);
}

static void test_ties_and_fixed(void **state)
{
    (void)state;
    psq_problem p;
    ps_err e = {0};
    const int bits[2] = {4, 8};
    const double t[3] = {1, 1, 1}, d[6] = {10, 1, 10, 1, 10, 1};
    const double by[6] = {50, 100, 50, 100, 50, 100};
    assert_int_equal(psq_problem_from_deltas(&p, 3, 2, bits, t, d, by, NULL, NULL, NULL, &e), 0);
    snprintf(p.layers[0].tie, PSQ_NAME_MAX, "a");
    snprintf(p.layers[2].tie, PSQ_NAME_MAX, "a");
    /* 200 bytes: untied, two layers could go to 8 bits; tied, layer 1 only */
    psq_budget b = psq_budget_none();
    b.bytes = 200;
    psq_solution s;
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
    assert_int_equal(s.bits[0], 4);
    assert_int_equal(s.bits[1], 8);
    assert_int_equal(s.bits[2], 4);
    psq_solution_free(&s);
    const int bad[3] = {8, 4, 4};
    assert_int_equal(psq_evaluate(&p, bad, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "tied"));
    p.layers[0].fixed_bits = 8;
    b.bytes = 250;
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
    assert_int_equal(s.bits[0], 8);
    assert_int_equal(s.bits[2], 8);
    assert_int_equal(s.bits[1], 4);
    psq_solution_free(&s);
    p.layers[2].fixed_bits = 4;
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "conflicts"));
    psq_problem_free(&p);
}

/* ---- HAWQ ResNet18 (ILP.ipynb arrays) ---- */

/* The notebook's limit: v4 + frac·(v8 − v4) with v_b the all-b-bit total. */
static double hawq_limit(const psq_problem *p, int dim, double frac)
{
    double v4 = 0, v8 = 0;
    for (int i = 0; i < p->n_layers; i++)
        for (int k = 0; k < p->layers[i].n_opt; k++) {
            const psq_option *o = &p->layers[i].opt[k];
            double c = dim == PSQ_COST_BYTES ? o->bytes
                       : dim == PSQ_COST_LATENCY ? o->latency_s
                                                 : o->bops;
            if (o->bits == 4)
                v4 += c;
            else if (o->bits == 8)
                v8 += c;
        }
    return v4 + frac * (v8 - v4);
}

static void test_hawq_resnet18_golden(void **state)
{
    (void)state;
    psq_problem p;
    ps_err e = {0};
    if (psq_problem_load_json(&p, R18, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(p.n_layers, 19);
    static const double frac[3] = {0.25, 0.5, 0.75};
    static const char *const golden[3] = {"8888888888888844444", "8888888888888884844",
                                          "8888888888888488884"};
    static const double omega[3] = {0.1183, 0.0745, 0.0334}, mib[3] = {6.641, 7.266, 9.234},
                        lim_mib[3] = {6.650, 7.980, 9.311};
    for (int j = 0; j < 3; j++) {
        psq_budget b = psq_budget_none();
        b.bytes = hawq_limit(&p, PSQ_COST_BYTES, frac[j]);
        assert_double_equal(b.bytes / 1048576.0, lim_mib[j], 6e-4);
        psq_solution s, bf;
        assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
        char str[64];
        psq_bits_str(s.bits, s.n_layers, str, sizeof str);
        assert_string_equal(str, golden[j]);
        assert_double_equal(s.omega_sum, omega[j], 5e-5);
        assert_double_equal(s.bytes / 1048576.0, mib[j], 5e-4);
        assert_int_equal(psq_brute_force(&p, &b, &bf, &e), 0);
        assert_memory_equal(s.bits, bf.bits, 19 * sizeof(int));
        psq_solution_free(&bf);
        psq_solution_free(&s);
        /* latency- and BOPS-constrained variants: solver == brute force over 2^16 */
        for (int dim = PSQ_COST_LATENCY; dim <= PSQ_COST_BOPS; dim++) {
            psq_budget c = psq_budget_none();
            if (dim == PSQ_COST_LATENCY)
                c.latency_s = hawq_limit(&p, dim, frac[j]);
            else
                c.bops = hawq_limit(&p, dim, frac[j]);
            assert_int_equal(psq_solve(&p, &c, NULL, &s, &e), 0);
            assert_int_equal(psq_brute_force(&p, &c, &bf, &e), 0);
            assert_memory_equal(s.bits, bf.bits, 19 * sizeof(int));
            assert_double_equal(s.omega_sum, bf.omega_sum, 1e-15);
            psq_solution_free(&bf);
            psq_solution_free(&s);
        }
        /* both size and latency at the same fraction */
        psq_budget c = b;
        c.latency_s = hawq_limit(&p, PSQ_COST_LATENCY, frac[j]);
        assert_int_equal(psq_solve(&p, &c, NULL, &s, &e), 0);
        assert_int_equal(psq_brute_force(&p, &c, &bf, &e), 0);
        assert_memory_equal(s.bits, bf.bits, 19 * sizeof(int));
        psq_solution_free(&bf);
        psq_solution_free(&s);
    }
    psq_problem_free(&p);
}

/* First and last layers (conv1 7×7×3×64 = 9408, fc 512×1000+1000 = 513000
 * parameters) added fixed at 8 bits with the budget raised by their size:
 * the same optima. */
static void test_hawq_first_last_fixed(void **state)
{
    (void)state;
    psq_problem q, p;
    ps_err e = {0};
    if (psq_problem_load_json(&q, R18, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(psq_problem_init(&p, 21, &e), 0);
    memcpy(p.layers + 1, q.layers, 19 * sizeof *q.layers);
    const double P[2] = {9408, 513000};
    for (int j = 0; j < 2; j++) {
        psq_layer *l = &p.layers[j ? 20 : 0];
        snprintf(l->name, PSQ_NAME_MAX, "%s", j ? "fc" : "conv1");
        l->n_opt = 2;
        l->opt[0] = (psq_option){4, 1.0, P[j] / 2, 0, 0};
        l->opt[1] = (psq_option){8, 0.0, P[j], 0, 0};
        l->fixed_bits = 8;
    }
    static const char *const golden[3] = {"8888888888888844444", "8888888888888884844",
                                          "8888888888888488884"};
    const double frac[3] = {0.25, 0.5, 0.75};
    for (int j = 0; j < 3; j++) {
        psq_budget b = psq_budget_none();
        b.bytes = hawq_limit(&q, PSQ_COST_BYTES, frac[j]) + P[0] + P[1];
        psq_solution s;
        assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
        char str[64], want[64];
        psq_bits_str(s.bits, s.n_layers, str, sizeof str);
        snprintf(want, sizeof want, "8%s8", golden[j]);
        assert_string_equal(str, want);
        psq_solution_free(&s);
    }
    psq_problem_free(&p);
    psq_problem_free(&q);
}

/* The whole (bytes, Ω) frontier of ResNet18: monotone, its ends all-4 and
 * all-8 bits, and every golden optimum is the frontier point at its budget. */
static void test_hawq_frontier(void **state)
{
    (void)state;
    psq_problem p;
    ps_err e = {0};
    if (psq_problem_load_json(&p, R18, &e))
        fail_msg("%s", e.msg);
    psq_frontier f;
    psq_opts o = {.dims = 1u << PSQ_COST_BYTES};
    assert_int_equal(psq_frontier_compute(&p, NULL, &o, &f, &e), 0);
    assert_true(f.n_points > 10);
    for (int i = 1; i < f.n_points; i++) {
        assert_true(f.bytes[i] > f.bytes[i - 1]);
        assert_true(f.omega[i] < f.omega[i - 1]);
    }
    for (int i = 0; i < 19; i++) {
        assert_int_equal(f.bits[i], 4);
        assert_int_equal(f.bits[(size_t)(f.n_points - 1) * 19 + (size_t)i], 8);
    }
    psq_frontier_free(&f);
    psq_problem_free(&p);
}

static void test_hawq_resnet50(void **state)
{
    (void)state;
    psq_problem p;
    ps_err e = {0};
    if (psq_problem_load_json(&p, R50, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(p.n_layers, 52);
    const double frac[3] = {0.25, 0.5, 0.75};
    for (int j = 0; j < 3; j++)
        for (int dim = 0; dim < PSQ_NCOST; dim++) {
            psq_budget b = psq_budget_none();
            double lim = hawq_limit(&p, dim, frac[j]);
            if (dim == PSQ_COST_BYTES)
                b.bytes = lim;
            else if (dim == PSQ_COST_LATENCY)
                b.latency_s = lim;
            else
                b.bops = lim;
            psq_solution s, g, u;
            assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
            assert_true(psq_fits(&s, &b));
            /* exact ≤ greedy; uniform is all-4 (8 does not fit below frac 1) */
            assert_int_equal(psq_greedy(&p, &b, &g, &e), 0);
            assert_true(psq_fits(&g, &b));
            assert_true(s.omega_sum <= g.omega_sum * (1 + 1e-12));
            assert_int_equal(psq_uniform(&p, &b, &u, &e), 0);
            for (int i = 0; i < 52; i++)
                assert_int_equal(u.bits[i], 4);
            assert_true(s.omega_sum <= u.omega_sum);
            if (getenv("PSQ_TEST_VERBOSE")) {
                char str[64];
                psq_bits_str(s.bits, 52, str, sizeof str);
                fprintf(stderr, "R50 dim %d frac %.2f: %s omega %.6f size %.4f MiB lat %.4f ms "
                        "(greedy %.6f)\n",
                        dim, frac[j], str, s.omega_sum, s.bytes / 1048576.0, s.latency_s * 1e3,
                        g.omega_sum);
            }
            psq_solution_free(&s);
            psq_solution_free(&g);
            psq_solution_free(&u);
        }
    psq_problem_free(&p);
}

/* Greedy is not exact: Ω(4)/Ω(8) per layer with sizes chosen so the best
 * ratio step is wrong.  Random is seeded, feasible, never better than exact. */
static void test_baselines(void **state)
{
    (void)state;
    psq_problem p;
    ps_err e = {0};
    const int bits[2] = {4, 8};
    /* all-8 is 300 bytes; the budget 200 needs 100 saved.  Steps to 4 bits
     * save 45 / 50 / 50 bytes for ΔΩ 6 / 10 / 10.  Exact: layers 1 and 2
     * (Ω 1+11+11 = 23); greedy takes layer 0 first (6/45 < 10/50), then
     * still needs both others (Ω 7+11+11 = 29). */
    const double t[3] = {1, 1, 1}, d[6] = {7, 1, 11, 1, 11, 1};
    const double by[6] = {55, 100, 50, 100, 50, 100};
    assert_int_equal(psq_problem_from_deltas(&p, 3, 2, bits, t, d, by, NULL, NULL, NULL, &e), 0);
    psq_budget b = psq_budget_none();
    b.bytes = 200; /* need 100 saved: {1,2} (ΔΩ 20) is the only pair; {0,1} saves 95 */
    psq_solution s, g, bf, r1, r2;
    assert_int_equal(psq_solve(&p, &b, NULL, &s, &e), 0);
    assert_int_equal(psq_brute_force(&p, &b, &bf, &e), 0);
    assert_double_equal(s.omega_sum, bf.omega_sum, 0);
    assert_double_equal(s.omega_sum, 1 + 11 + 11, 1e-12);
    assert_int_equal(psq_greedy(&p, &b, &g, &e), 0);
    /* greedy lowers layer 0 first (ratio 6/45 < 10/50), then one more, then the last */
    assert_true(g.omega_sum > s.omega_sum);
    assert_double_equal(g.omega_sum, 7 + 11 + 11, 1e-12);
    assert_int_equal(psq_random(&p, &b, 42, 50, &r1, &e), 0);
    assert_int_equal(psq_random(&p, &b, 42, 50, &r2, &e), 0);
    assert_memory_equal(r1.bits, r2.bits, 3 * sizeof(int));
    psq_solution_free(&r2);
    assert_true(psq_fits(&r1, &b));
    assert_true(r1.omega_sum >= s.omega_sum);
    psq_solution u;
    assert_int_equal(psq_uniform(&p, &b, &u, &e), 0);
    assert_int_equal(u.bits[0] + u.bits[1] + u.bits[2], 12);
    b.bytes = 100;
    assert_int_equal(psq_random(&p, &b, 42, 50, &r2, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "smallest achievable size, 155 bytes"));
    psq_solution_free(&s);
    psq_solution_free(&g);
    psq_solution_free(&bf);
    psq_solution_free(&r1);
    psq_solution_free(&u);
    psq_problem_free(&p);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_json_loader(void **state)
{
    (void)state;
    char dir[] = "/tmp/psq-json-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/o.json", dir);
    psq_problem p;
    ps_err e = {0};
    write_text(path, "{\"layers\":[{\"name\":\"a\",\"options\":[{\"bits\":4,\"omega\":2,"
                     "\"bytes\":10},{\"bits\":8,\"omega\":1,\"bytes\":20}]},"
                     "{\"name\":\"b\",\"options\":[{\"bits\":4,\"omega\":1,\"bytes\":10},"
                     "{\"bits\":8,\"omega\":\"x\",\"bytes\":20}]}]}");
    assert_int_equal(psq_problem_load_json(&p, path, &e), PS_EINPUT);
    char want[256];
    snprintf(want, sizeof want, "%s: layers[1].options[1].omega: expected a number", path);
    assert_non_null(strstr(e.msg, want));
    write_text(path, "{\"layers\":[{\"name\":\"a\",\"trace_per_param\":0.5,"
                     "\"delta\":{\"2\":8,\"4\":2},\"bytes\":{\"2\":5,\"4\":10},"
                     "\"fixed_bits\":4,\"tie\":\"t\"}]}");
    assert_int_equal(psq_problem_load_json(&p, path, &e), 0);
    assert_int_equal(p.layers[0].n_opt, 2);
    assert_int_equal(p.layers[0].fixed_bits, 4);
    assert_string_equal(p.layers[0].tie, "t");
    int k = p.layers[0].opt[0].bits == 2 ? 0 : 1;
    assert_double_equal(p.layers[0].opt[k].omega, 4, 0);
    assert_double_equal(p.layers[0].opt[k].bytes, 5, 0);
    psq_problem_free(&p);
    write_text(path, "{\"layers\":[{\"trace_per_param\":0.5,\"delta\":{\"2\":8},"
                     "\"bytes\":{\"3\":5}}]}");
    assert_int_equal(psq_problem_load_json(&p, path, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "layers[0].bytes.3: bit width 3 has no"));
    write_text(path, "{\"layerz\":[]}");
    assert_int_equal(psq_problem_load_json(&p, path, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "layerz: unknown field"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_vs_brute_force), cmocka_unit_test(test_frontier_shape),
        cmocka_unit_test(test_frontier_2d),
        cmocka_unit_test(test_infeasible_and_cap),    cmocka_unit_test(test_ties_and_fixed),
        cmocka_unit_test(test_hawq_resnet18_golden),  cmocka_unit_test(test_hawq_first_last_fixed),
        cmocka_unit_test(test_hawq_frontier),         cmocka_unit_test(test_hawq_resnet50),
        cmocka_unit_test(test_baselines),             cmocka_unit_test(test_json_loader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
