/* sim/pipeline planners on the abstract planning graph: series-parallel
 * decomposition, GraphPipe against the exhaustive oracle on random SP
 * graphs, GraphPipe and PipeDream on chains, Piper against the oracle,
 * PipeDream's recurrence by hand, budgets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sim/pipeline/planner.h"

static void near_rel(double a, double b, double rel, const char *what, int line)
{
    double tol = rel * (fabs(b) > 1e-300 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}
#define REL(a, b, r) near_rel((a), (b), (r), #a, __LINE__)

#define OK(call)                                                                                   \
    do {                                                                                           \
        ps_err e_ = {0};                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            fail_msg("line %d: %s -> %d: %s", __LINE__, #call, rc_, e_.msg);                       \
    } while (0)

/* ---- helpers ---- */

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

typedef struct gbuild {
    int n, ne;
    int ef[256], et[256];
} gbuild;

/* Random minimal vertex-series-parallel graph on `size` new ops: returns
 * its sources and sinks. */
static void gen_sp(gbuild *b, int size, int *src, int *nsrc, int *snk, int *nsnk)
{
    if (size == 1) {
        int v = b->n++;
        src[0] = snk[0] = v;
        *nsrc = *nsnk = 1;
        return;
    }
    int left = 1 + (int)(rnd() % (unsigned)(size - 1));
    int s1[64], n1, k1[64], m1, s2[64], n2, k2[64], m2;
    gen_sp(b, left, s1, &n1, k1, &m1);
    gen_sp(b, size - left, s2, &n2, k2, &m2);
    if (rnd() % 2) { /* series */
        for (int i = 0; i < m1; i++)
            for (int j = 0; j < n2; j++) {
                b->ef[b->ne] = k1[i];
                b->et[b->ne++] = s2[j];
            }
        memcpy(src, s1, (size_t)n1 * sizeof *src);
        *nsrc = n1;
        memcpy(snk, k2, (size_t)m2 * sizeof *snk);
        *nsnk = m2;
    } else {
        memcpy(src, s1, (size_t)n1 * sizeof *src);
        memcpy(src + n1, s2, (size_t)n2 * sizeof *src);
        *nsrc = n1 + n2;
        memcpy(snk, k1, (size_t)m1 * sizeof *snk);
        memcpy(snk + m1, k2, (size_t)m2 * sizeof *snk);
        *nsnk = m1 + m2;
    }
}

typedef struct gparams {
    double fix, param, out, act; /* scales; 0 turns a term off */
} gparams;

static pp_pgraph *make_graph(const gbuild *b, const gparams *p)
{
    ps_err e = {0};
    pp_pgraph *g = pp_pgraph_new(b->n, &e);
    assert_non_null(g);
    for (int v = 0; v < b->n; v++) {
        double tf = 0.5 + urand(), tb = 2 * tf * (0.5 + urand());
        OK(pp_pgraph_set_op(g, v, NULL, p->param * urand() * 1e6, p->act * urand() * 1e5,
                            p->out * urand() * 1e5, &e_));
        OK(pp_pgraph_set_op_times(g, v, p->fix * urand() * 1e-3, tf * 1e-3, p->fix * urand() * 1e-3,
                                  tb * 1e-3, &e_));
    }
    for (int k = 0; k < b->ne; k++)
        OK(pp_pgraph_add_edge(g, b->ef[k], b->et[k], &e_));
    OK(pp_pgraph_finish(g, &e_));
    return g;
}

static pp_pgraph *chain(int n, const gparams *p)
{
    gbuild b = {.n = n};
    for (int i = 0; i + 1 < n; i++) {
        b.ef[b.ne] = i;
        b.et[b.ne++] = i + 1;
    }
    return make_graph(&b, p);
}

static void run_planner(pp_pgraph *g, const pp_pcluster *pc, pp_planner_kind k, int B, int b,
                        pp_presult *r, void (*tweak)(pp_popts *))
{
    pp_popts o;
    pp_popts_default(&o, k, B);
    o.microbatch = b;
    if (tweak)
        tweak(&o);
    ps_err e = {0};
    int rc = pp_planner_run(g, pc, &o, r, &e);
    if (rc)
        fail_msg("%s: %d: %s", pp_planner_name(k), rc, e.msg);
}

/* ---- series-parallel decomposition ---- */

static void test_sp_chain_forkjoin(void **st)
{
    (void)st;
    gparams p = {0};
    pp_pgraph *g = chain(5, &p);
    pp_sp_tree t;
    OK(pp_sp_build(g, &t, &e_));
    assert_int_equal(t.nodes[t.root].kind, PP_SP_SERIES);
    assert_int_equal(t.nodes[t.root].nchildren, 5);
    assert_int_equal(t.rewrites, 0);
    int iv[3] = {1, 2, 3}, niv[2] = {1, 3};
    assert_true(pp_sp_is_interval(&t, iv, 3));
    assert_false(pp_sp_is_interval(&t, niv, 2));
    pp_sp_free(&t);
    pp_pgraph_free(g);

    /* fork-join with a residual edge 0 -> 5: src, two branches of two, join */
    gbuild b = {.n = 6};
    int E[][2] = {{0, 1}, {1, 2}, {0, 3}, {3, 4}, {2, 5}, {4, 5}, {0, 5}};
    for (int k = 0; k < 7; k++) {
        b.ef[b.ne] = E[k][0];
        b.et[b.ne++] = E[k][1];
    }
    g = make_graph(&b, &p);
    OK(pp_sp_build(g, &t, &e_));
    const pp_sp_node *r = &t.nodes[t.root];
    assert_int_equal(r->kind, PP_SP_SERIES);
    assert_int_equal(r->nchildren, 3);
    const pp_sp_node *par = &t.nodes[r->children[1]];
    assert_int_equal(par->kind, PP_SP_PARALLEL);
    assert_int_equal(par->nchildren, 2);
    assert_int_equal(t.rewrites, 0);
    int br[2] = {3, 4}, both[4] = {1, 2, 3, 4}, bad[2] = {2, 3};
    assert_true(pp_sp_is_interval(&t, br, 2));
    assert_true(pp_sp_is_interval(&t, both, 4));
    assert_false(pp_sp_is_interval(&t, bad, 2));
    pp_sp_free(&t);
    pp_pgraph_free(g);
}

static void test_sp_rewrite_n(void **st)
{
    (void)st;
    /* the N: a->c, b->c, b->d (plus a source and a sink) is not SP */
    gbuild b = {.n = 6};
    int E[][2] = {{0, 1}, {0, 2}, {1, 3}, {2, 3}, {2, 4}, {3, 5}, {4, 5}};
    for (int k = 0; k < 7; k++) {
        b.ef[b.ne] = E[k][0];
        b.et[b.ne++] = E[k][1];
    }
    gparams p = {.fix = 1, .param = 1, .out = 1, .act = 1};
    pp_pgraph *g = make_graph(&b, &p);
    pp_sp_tree t;
    OK(pp_sp_build(g, &t, &e_));
    assert_true(t.rewrites >= 1);
    assert_true(t.ordered_pairs >= 1);
    /* every op once in the order */
    int seen[6] = {0};
    for (int i = 0; i < 6; i++)
        seen[t.order[i]]++;
    for (int i = 0; i < 6; i++)
        assert_int_equal(seen[i], 1);
    pp_sp_free(&t);
    /* plans of the rewritten graph are valid: graphpipe = exhaustive over SP
     * intervals, and the result's stage graph is acyclic (finish checks) */
    pp_pcluster pc;
    pp_pcluster_uniform(&pc, 4, 0, 4, (cm_ab){1e-5, 1e10});
    pp_presult a, x;
    run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 16, 4, &a, NULL);
    assert_true(a.feasible);
    assert_true(a.sp_rewrites >= 1);
    pp_popts o;
    pp_popts_default(&o, PP_PLANNER_EXHAUSTIVE, 16);
    o.microbatch = 4;
    o.ex_sp_aligned = 1;
    OK(pp_planner_run(g, &pc, &o, &x, &e_));
    REL(a.objective, x.objective, 1e-12);
    pp_presult_free(&a);
    pp_presult_free(&x);
    pp_pgraph_free(g);
}

/* ---- GraphPipe = exhaustive on SP-aligned plans ---- */

static int no_joins;
static void sp_only(pp_popts *o)
{
    o->ex_sp_aligned = 1;
    o->gp_no_join_merge = no_joins;
}
static void gp_opts(pp_popts *o) { o->gp_no_join_merge = no_joins; }

static void test_graphpipe_vs_exhaustive(void **st)
{
    (void)st;
    rng_state = 12345;
    int cases = 0, mem_bound = 0;
    for (int it = 0; it < 60; it++) {
        gbuild b = {0};
        int src[64], ns, snk[64], nk;
        int size = 3 + (int)(rnd() % 7); /* 3..9 ops */
        gen_sp(&b, size, src, &ns, snk, &nk);
        gparams p = {.fix = (double)(rnd() % 2), .param = urand() < 0.7, .out = urand() < 0.7,
                     .act = 1};
        pp_pgraph *g = make_graph(&b, &p);
        int N = 1 + (int)(rnd() % 6);
        int mb = 1 << (rnd() % 4); /* 1..8 */
        int B = mb * (1 << (rnd() % 3));
        double mem = 0;
        if (rnd() % 2) /* a cap that binds sometimes */
            mem = (1 + urand() * 3) * 4e6 + urand() * 1e5 * mb * 3;
        pp_pcluster pc;
        pp_pcluster_uniform(&pc, N, mem, 4, (cm_ab){2e-6 * urand(), 1e9 + 1e10 * urand()});
        pp_presult a, x;
        no_joins = it % 3 == 0; /* both search spaces */
        run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, B, mb, &a, gp_opts);
        run_planner(g, &pc, PP_PLANNER_EXHAUSTIVE, B, mb, &x, sp_only);
        if (a.feasible != x.feasible)
            fail_msg("case %d: feasible graphpipe %d exhaustive %d (%s / %s)", it, a.feasible,
                     x.feasible, a.note, x.note);
        if (a.feasible) {
            REL(a.objective, x.objective, 1e-12);
            /* the reported plan meets the objective under the shared model */
            REL(a.tps_s, a.objective, 1e-12);
            assert_true(a.devices_used <= N);
            assert_int_equal(a.sp_rewrites, 0);
            cases++;
        } else {
            mem_bound++;
        }
        pp_presult_free(&a);
        pp_presult_free(&x);
        pp_pgraph_free(g);
    }
    assert_true(cases >= 30);
    assert_true(mem_bound >= 1); /* the memory check is exercised */
    fprintf(stderr, "    graphpipe = exhaustive on %d random SP graphs (%d infeasible in both)\n",
            cases, mem_bound);
}

/* Join absorption: two branches of three ops into a join and a small head
 * on 6 devices — the best plan puts the join and the head into the last
 * stage of a branch (as in the paper's case study): {1,2,join,head} on two
 * replicas, the other ops one device each: (2 + 0.02) ms / 2. */
static void test_join_absorption(void **st)
{
    (void)st;
    gbuild b = {.n = 8};
    int E[][2] = {{0, 1}, {1, 2}, {3, 4}, {4, 5}, {2, 6}, {5, 6}, {6, 7}};
    for (int k = 0; k < 7; k++) {
        b.ef[b.ne] = E[k][0];
        b.et[b.ne++] = E[k][1];
    }
    ps_err e = {0};
    pp_pgraph *g = pp_pgraph_new(8, &e);
    for (int v = 0; v < 8; v++) {
        double t = v < 6 ? 1e-3 : 1e-5; /* join and head: cheap */
        OK(pp_pgraph_set_op(g, v, NULL, 0, 1, 0, &e_));
        OK(pp_pgraph_set_op_times(g, v, 0, t / 3, 0, 2 * t / 3, &e_));
    }
    for (int k = 0; k < b.ne; k++)
        OK(pp_pgraph_add_edge(g, b.ef[k], b.et[k], &e_));
    OK(pp_pgraph_finish(g, &e_));
    pp_pcluster pc;
    pp_pcluster_uniform(&pc, 6, 0, 4, (cm_ab){0, 1e10});
    pp_presult a, nj, x;
    no_joins = 0;
    run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 8, 8, &a, gp_opts);
    no_joins = 1;
    run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 8, 8, &nj, gp_opts);
    no_joins = 0;
    run_planner(g, &pc, PP_PLANNER_EXHAUSTIVE, 8, 8, &x, sp_only);
    REL(a.objective, 1.01e-3, 1e-12);
    assert_true(nj.objective > 1.2e-3); /* the head needs a device of its own */
    REL(x.objective, a.objective, 1e-12);
    int merged = 0;
    for (int i = 0; i < a.nstages; i++)
        for (int k = 0; k < a.stages[i].nops; k++)
            if (a.stages[i].ops[k] == 6 && a.stages[i].ops[0] < 3)
                merged = 1; /* the join sits with ops of the first branch */
    assert_true(merged);
    assert_int_equal(a.depth, 3); /* the shallowest such plan: {3,4} x2 -> {5} -> M */
    pp_presult_free(&a);
    pp_presult_free(&nj);
    pp_presult_free(&x);
    pp_pgraph_free(g);
}

/* Over all convex partitions the oracle can only do better; it says by how
 * much (gap_vs_sp >= 0). */
static void test_exhaustive_gap(void **st)
{
    (void)st;
    rng_state = 777;
    int gaps = 0;
    for (int it = 0; it < 15; it++) {
        gbuild b = {0};
        int src[64], ns, snk[64], nk;
        gen_sp(&b, 4 + (int)(rnd() % 5), src, &ns, snk, &nk);
        gparams p = {.fix = 1, .param = 1, .out = 1, .act = 1};
        pp_pgraph *g = make_graph(&b, &p);
        pp_pcluster pc;
        pp_pcluster_uniform(&pc, 1 + (int)(rnd() % 4), 0, 4, (cm_ab){1e-6, 5e9});
        pp_presult a, x;
        run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 8, 4, &a, NULL);
        run_planner(g, &pc, PP_PLANNER_EXHAUSTIVE, 8, 4, &x, NULL);
        assert_true(a.feasible && x.feasible);
        assert_true(x.objective <= a.objective * (1 + 1e-12));
        assert_true(x.gap_vs_sp >= -1e-12);
        REL(x.objective * (1 + x.gap_vs_sp), a.objective, 1e-9);
        if (x.gap_vs_sp > 1e-9)
            gaps++;
        pp_presult_free(&a);
        pp_presult_free(&x);
        pp_pgraph_free(g);
    }
    fprintf(stderr, "    all convex partitions beat the SP-aligned best in %d of 15 graphs\n", gaps);
}

/* ---- chains: GraphPipe and PipeDream tie ---- */

static void faithful(pp_popts *o) { o->pd_cost = PP_PD_COST_PIPEDREAM; }
static void topo_states(pp_popts *o)
{
    o->pd_cost = PP_PD_COST_PIPEDREAM;
    o->pd_states = PP_PD_STATES_TOPO;
}

static void test_chain_parity(void **st)
{
    (void)st;
    rng_state = 99;
    /* Where the two cost models coincide: linear times, no weights (no
     * all-reduce), no transfers, b divisible by every replica count. */
    for (int it = 0; it < 20; it++) {
        int n = 2 + (int)(rnd() % 12), N = 1 + (int)(rnd() % 8);
        gparams p = {.fix = 0, .param = 0, .out = 0, .act = 1};
        pp_pgraph *g = chain(n, &p);
        pp_pcluster pc;
        pp_pcluster_uniform(&pc, N, 0, 4, (cm_ab){0, 1e10});
        pp_presult a, d, d2;
        run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 840, 840, &a, NULL);
        run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 840, 840, &d, faithful);
        run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 840, 840, &d2, topo_states);
        assert_true(a.feasible && d.feasible && d2.feasible);
        REL(d.objective_tps_s, a.objective, 1e-12);
        REL(d.tps_s, a.tps_s, 1e-12);
        REL(d2.objective, d.objective, 1e-15);
        assert_int_equal(d.pd_states_used, PP_PD_STATES_ANTICHAIN); /* a chain: n states */
        assert_int_equal(d.states, n);
        pp_presult_free(&a);
        pp_presult_free(&d);
        pp_presult_free(&d2);
        pp_pgraph_free(g);
    }
}

/* With plansim's cost model (the default), PipeDream's search space on a
 * chain is GraphPipe's: the same plans, whatever the costs. */
static void test_chain_parity_plansim_cost(void **st)
{
    (void)st;
    rng_state = 2024;
    for (int it = 0; it < 30; it++) {
        int n = 2 + (int)(rnd() % 14), N = 1 + (int)(rnd() % 12);
        gparams p = {.fix = 1, .param = 1, .out = 1, .act = 1};
        pp_pgraph *g = chain(n, &p);
        pp_pcluster pc;
        double mem = rnd() % 2 ? 0 : 2e7 + urand() * 1e7;
        pp_pcluster_uniform(&pc, N, mem, 4, (cm_ab){1e-5 * urand(), 1e9 + 1e10 * urand()});
        pp_presult a, d;
        int B = 1 << (rnd() % 6);
        run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, B, 0, &a, NULL);
        run_planner(g, &pc, PP_PLANNER_PIPEDREAM, B, 0, &d, NULL);
        assert_int_equal(a.feasible, d.feasible);
        if (a.feasible) {
            REL(d.objective, a.objective, 0);
            REL(d.tps_s, a.tps_s, 0);
            assert_int_equal(d.microbatch, a.microbatch);
            assert_int_equal(d.nstages, a.nstages);
            assert_true(d.sequential);
            assert_int_equal(d.depth, d.nstages); /* a sequential pipeline */
        }
        pp_presult_free(&a);
        pp_presult_free(&d);
        pp_pgraph_free(g);
    }
}

/* ---- PipeDream's recurrence by hand ---- */

static void test_pipedream_by_hand(void **st)
{
    (void)st;
    /* chain a -> b -> c, times per micro-batch (fixed, b=1): 3, 1, 2 s;
     * weights 0 except b: 1e9 B; bandwidth 1e9 B/s; 2 machines.
     * Options: one stage x2: (6 + 4*1*1e9/(1e9*2))/2 = 4;
     * split {a},{b,c}: max(3, 3) = 3; {a,b},{c}: max(4, 2) = 4.  -> 3. */
    ps_err e = {0};
    pp_pgraph *g = pp_pgraph_new(3, &e);
    double t[3] = {3, 1, 2}, w[3] = {0, 1e9, 0};
    for (int v = 0; v < 3; v++) {
        OK(pp_pgraph_set_op(g, v, NULL, w[v], 0, 0, &e_));
        OK(pp_pgraph_set_op_times(g, v, t[v] / 3, 0, 2 * t[v] / 3, 0, &e_));
    }
    OK(pp_pgraph_add_edge(g, 0, 1, &e_));
    OK(pp_pgraph_add_edge(g, 1, 2, &e_));
    OK(pp_pgraph_finish(g, &e_));
    pp_pcluster pc;
    pp_pcluster_uniform(&pc, 2, 0, 4, (cm_ab){0, 1e9});
    pp_presult d;
    run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 1, 1, &d, faithful);
    assert_true(d.feasible);
    REL(d.objective, 3.0, 1e-15);
    assert_int_equal(d.nstages, 2);
    assert_int_equal(d.stages[0].nops, 1);
    assert_int_equal(d.stages[0].ops[0], 0);
    pp_presult_free(&d);
    /* 4 machines: {a} x1 (3), {b,c} x3: (3 + 4*2*1e9/(1e9*3))/3 = 17/9;
     * {a} x2 = 1.5 and {b,c} x2: (3 + 4*1e9*1/(2e9))/2 = 2.5; {a}x2,{b}x1,{c}x1:
     * max(1.5, 1, 2) = 2; {a}x3 {b,c}x1: 3 ... best is {a}x2,{b}x1,{c}x1 = 2. */
    pp_pcluster_uniform(&pc, 4, 0, 4, (cm_ab){0, 1e9});
    run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 1, 1, &d, faithful);
    REL(d.objective, 2.0, 1e-15);
    pp_presult_free(&d);
    pp_pgraph_free(g);
}

/* ---- PipeDream: the fast loops give the reference loops' values ---- */

static int pd_mode;
static void pd_tweak(pp_popts *o)
{
    o->pd_cost = PP_PD_COST_PIPEDREAM;
    o->pd_states = PP_PD_STATES_ANTICHAIN;
    o->pd_reference = pd_mode & 1;
    o->pd_activation_comm = (pd_mode >> 1) & 1;
    o->pd_memory_constraint = (pd_mode >> 2) & 1;
    o->pd_use_fewer_machines = (pd_mode >> 3) & 1;
}

static void test_pipedream_fast_equals_reference(void **st)
{
    (void)st;
    rng_state = 31337;
    for (int it = 0; it < 40; it++) {
        gbuild b = {0};
        int src[64], ns, snk[64], nk;
        gen_sp(&b, 3 + (int)(rnd() % 10), src, &ns, snk, &nk);
        /* without weights A[k][.] falls with more machines (the crossing
         * sweep runs); with them it need not (the full loops run) */
        gparams p = {.fix = 1, .param = (double)(rnd() % 2), .out = 1, .act = 1};
        pp_pgraph *g = make_graph(&b, &p);
        pp_pcluster pc;
        pp_pcluster_uniform(&pc, 1 + (int)(rnd() % 16), 2e7, 4, (cm_ab){1e-6, 1e9});
        int flags = (int)(rnd() % 8) << 1;
        pp_presult f, r;
        pd_mode = flags;
        run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 16, 4, &f, pd_tweak);
        pd_mode = flags | 1;
        run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 16, 4, &r, pd_tweak);
        assert_int_equal(f.feasible, r.feasible);
        if (f.feasible)
            REL(f.objective, r.objective, 0); /* bit-identical: the same min */
        pp_presult_free(&f);
        pp_presult_free(&r);
        pp_pgraph_free(g);
    }
}

/* ---- Piper = exhaustive where the cost models coincide ---- */

static void test_piper_vs_exhaustive(void **st)
{
    (void)st;
    rng_state = 4242;
    for (int it = 0; it < 25; it++) {
        gbuild b = {0};
        int src[64], ns, snk[64], nk;
        gen_sp(&b, 3 + (int)(rnd() % 6), src, &ns, snk, &nk);
        gparams p = {.fix = 0, .param = 0, .out = 0, .act = 1};
        pp_pgraph *g = make_graph(&b, &p);
        int N = 1 + (int)(rnd() % 4);
        pp_pcluster pc;
        pp_pcluster_uniform(&pc, N, 0, 4, (cm_ab){0, 1e10});
        pp_presult x, q;
        run_planner(g, &pc, PP_PLANNER_EXHAUSTIVE, 144, 12, &x, NULL);
        run_planner(g, &pc, PP_PLANNER_PIPER, 144, 12, &q, NULL);
        assert_true(x.feasible && q.feasible);
        REL(q.objective_tps_s, x.objective, 1e-12);
        REL(q.tps_s, x.objective, 1e-12);
        pp_presult_free(&x);
        pp_presult_free(&q);
        pp_pgraph_free(g);
    }
}

/* ---- budgets ---- */

static void test_budgets(void **st)
{
    (void)st;
    /* 8 branches of 6 ops: 7^8 = 5.7M ideals */
    gbuild b = {.n = 1};
    for (int br = 0; br < 8; br++) {
        int prev = 0;
        for (int k = 0; k < 6; k++) {
            b.ef[b.ne] = prev;
            b.et[b.ne++] = b.n;
            prev = b.n++;
        }
        b.ef[b.ne] = prev;
        b.et[b.ne++] = 49;
    }
    b.n = 50;
    gparams p = {.fix = 1, .param = 1, .out = 1, .act = 1};
    pp_pgraph *g = make_graph(&b, &p);
    pp_pcluster pc;
    pp_pcluster_uniform(&pc, 8, 0, 4, (cm_ab){1e-6, 1e10});
    pp_presult r;
    run_planner(g, &pc, PP_PLANNER_PIPER, 32, 4, &r, NULL);
    assert_false(r.feasible);
    assert_non_null(strstr(r.note, "exponential"));
    pp_presult_free(&r);
    /* PipeDream: too many antichain states -> linearized in AUTO */
    run_planner(g, &pc, PP_PLANNER_PIPEDREAM, 32, 4, &r, faithful);
    assert_true(r.feasible);
    assert_int_equal(r.pd_states_used, PP_PD_STATES_TOPO);
    assert_non_null(strstr(r.note, "linearized"));
    pp_presult_free(&r);
    /* graphpipe is fine */
    run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 32, 0, &r, NULL);
    assert_true(r.feasible);
    assert_true(r.devices_used <= 8);
    pp_presult_free(&r);
    /* exhaustive refuses */
    pp_popts o;
    pp_popts_default(&o, PP_PLANNER_EXHAUSTIVE, 32);
    ps_err e = {0};
    assert_int_equal(pp_planner_run(g, &pc, &o, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "limit"));
    pp_pgraph_free(g);
}

/* ---- the shared cost model by hand ---- */

static void test_stage_eval(void **st)
{
    (void)st;
    /* a -> b -> c; stage {b}: in = out(a), out = out(b) */
    ps_err e = {0};
    pp_pgraph *g = pp_pgraph_new(3, &e);
    OK(pp_pgraph_set_op(g, 0, "a", 0, 0, 100, &e_));
    OK(pp_pgraph_set_op(g, 1, "b", 1000, 10, 200, &e_));
    OK(pp_pgraph_set_op(g, 2, "c", 0, 0, 0, &e_));
    for (int v = 0; v < 3; v++)
        OK(pp_pgraph_set_op_times(g, v, 1e-3, 1e-4, 2e-3, 2e-4, &e_));
    OK(pp_pgraph_add_edge(g, 0, 1, &e_));
    OK(pp_pgraph_add_edge(g, 1, 2, &e_));
    OK(pp_pgraph_finish(g, &e_));
    pp_pcluster pc;
    pp_pcluster_uniform(&pc, 4, 1e6, 4, (cm_ab){1e-5, 1e6});
    int s[1] = {1};
    double tps, mem;
    /* b = 8 on 2 replicas: q = 4; compute = 3e-3 + 4*3e-4 = 4.2e-3;
     * all-reduce 2(1)1e-5 + 2*1/2*1000/1e6 = 1.02e-3 over B = 32;
     * link (2e-5 + 8*300/1e6)/8; memory 1000*4 + 10*4*min(4, 3) */
    OK(pp_pg_stage_eval(g, &pc, s, 1, 8, 2, 32, 3, &tps, &mem, &e_));
    double comp = 4.2e-3 / 8 + 1.02e-3 / 32, link = (2e-5 + 8 * 300 / 1e6) / 8;
    REL(tps, comp > link ? comp : link, 1e-12);
    REL(mem, 4000 + 120, 1e-15);
    pp_pgraph_free(g);
}

/* ---- time limits ---- */

static void tiny_limit(pp_popts *o) { o->time_limit_s = 1e-9; }

static void test_time_limits(void **st)
{
    (void)st;
    /* graphpipe at its deadline keeps the least stage time it has proven
     * feasible: a plan, not the optimum */
    gparams p = {.fix = 1, .param = 1, .out = 1, .act = 1};
    pp_pgraph *g = chain(24, &p);
    pp_pcluster pc;
    pp_pcluster_uniform(&pc, 8, 0, 4, (cm_ab){1e-6, 1e10});
    pp_presult full, cut;
    run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 32, 2, &full, NULL);
    run_planner(g, &pc, PP_PLANNER_GRAPHPIPE, 32, 2, &cut, tiny_limit);
    assert_true(full.feasible && cut.feasible);
    assert_null(strstr(full.note, "time limit"));
    assert_non_null(strstr(cut.note, "not proven optimal"));
    /* the first feasible value is the largest candidate: strictly worse than
     * the optimum on a 24-op chain over 8 devices */
    assert_true(cut.objective_tps_s > full.objective_tps_s * (1 + 1e-9));
    pp_presult_free(&full);
    pp_presult_free(&cut);
    /* piper's DP gives up with a note, no plan */
    run_planner(g, &pc, PP_PLANNER_PIPER, 32, 2, &cut, tiny_limit);
    assert_false(cut.feasible);
    assert_non_null(strstr(cut.note, "time limit"));
    pp_presult_free(&cut);
    /* one limit for every micro-batch size of a planner run */
    run_planner(g, &pc, PP_PLANNER_PIPER, 32, 0, &cut, tiny_limit);
    assert_false(cut.feasible);
    assert_non_null(strstr(cut.note, "time limit"));
    pp_presult_free(&cut);
    pp_pgraph_free(g);
    /* ... and for every micro-batch size of a point (search + simulation) */
    json_t *kn = json_pack("{s:i, s:i, s:i}", "branches", 3, "branch_layers", 2, "top_layers", 2);
    pp_popts o;
    pp_popts_default(&o, PP_PLANNER_PIPER, 64);
    o.time_limit_s = 1e-9;
    pp_point_spec s = {.builtin = "candle-uno", .knobs = kn, .cluster = "summit",
                       .devices = 4, .planner = PP_PLANNER_PIPER, .minibatch = 64,
                       .select_by_sim = 1, .optimizer = CM_OPT_ADAM, .opts = &o};
    pp_point_result r;
    OK(pp_plan_point(&s, &r, &e_));
    assert_false(r.feasible);
    assert_non_null(strstr(r.note, "time limit"));
    json_decref(kn);
}

/* ---- end to end: model + cluster + plan + simulation (pp_plan_point) ---- */

static void point(const char *builtin, const json_t *knobs, pp_planner_kind k, int devices,
                  int minibatch, pp_point_result *r)
{
    pp_point_spec s = {.builtin = builtin, .knobs = knobs, .cluster = "summit",
                       .devices = devices, .planner = k, .minibatch = minibatch,
                       .select_by_sim = 1, .optimizer = CM_OPT_ADAM};
    ps_err e = {0};
    int rc = pp_plan_point(&s, r, &e);
    if (rc)
        fail_msg("pp_plan_point(%s, %s): %d: %s", builtin, pp_planner_name(k), rc, e.msg);
}

static void test_point_end_to_end(void **st)
{
    (void)st;
    json_t *kn = json_pack("{s:i, s:i, s:i}", "branches", 3, "branch_layers", 2, "top_layers", 2);
    pp_point_result g, d, q;
    point("candle-uno", kn, PP_PLANNER_GRAPHPIPE, 4, 64, &g);
    point("candle-uno", kn, PP_PLANNER_PIPEDREAM, 4, 64, &d);
    point("candle-uno", kn, PP_PLANNER_PIPER, 4, 64, &q);
    json_decref(kn);
    const pp_point_result *all[] = {&g, &d, &q};
    for (int i = 0; i < 3; i++) {
        assert_true(all[i]->feasible);
        assert_true(all[i]->throughput_samples_per_s > 0);
        assert_true(all[i]->search_time_s >= 0);
        assert_true(all[i]->num_stages >= 1 && all[i]->devices_used <= 4);
        assert_false(all[i]->oom);
    }
    assert_int_equal(d.depth, d.num_stages); /* a sequential pipeline */
    /* the planner's estimate is a model of the simulation: same ballpark */
    assert_true(g.predicted_throughput_samples_per_s > 0.5 * g.throughput_samples_per_s &&
                g.predicted_throughput_samples_per_s < 2 * g.throughput_samples_per_s);
    /* chain parity: a transformer chain, graphpipe and pipedream tie */
    json_t *tk = json_pack("{s:i, s:i, s:i}", "layers", 6, "seq", 128, "hidden", 512);
    pp_point_result a, b;
    point("transformer", tk, PP_PLANNER_GRAPHPIPE, 4, 32, &a);
    point("transformer", tk, PP_PLANNER_PIPEDREAM, 4, 32, &b);
    json_decref(tk);
    assert_true(a.feasible && b.feasible);
    REL(a.throughput_samples_per_s, b.throughput_samples_per_s, 1e-12);
    assert_int_equal(a.num_stages, b.num_stages);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_eval),
        cmocka_unit_test(test_sp_chain_forkjoin),
        cmocka_unit_test(test_sp_rewrite_n),
        cmocka_unit_test(test_graphpipe_vs_exhaustive),
        cmocka_unit_test(test_join_absorption),
        cmocka_unit_test(test_exhaustive_gap),
        cmocka_unit_test(test_chain_parity),
        cmocka_unit_test(test_chain_parity_plansim_cost),
        cmocka_unit_test(test_pipedream_by_hand),
        cmocka_unit_test(test_pipedream_fast_equals_reference),
        cmocka_unit_test(test_piper_vs_exhaustive),
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_point_end_to_end),
        cmocka_unit_test(test_time_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
