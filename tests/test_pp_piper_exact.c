/* Piper's DP reproduced (sim/pipeline/piper_dp.c) and Piper's inputs
 * imported (sim/pipeline/import_piper.c):
 *   - the best time per micro-batch Piper reports on its three inputs
 *     (bert32a100 0.0977 s, resnet 46.24 "ms", 1 stage x 10; gnmt 53.49,
 *     2 stages: under PS_PIPER_SLOW=1, ~10 s of CPU);
 *   - the fast DP equals the reference form (Piper's literal per-pair costs
 *     and straightforward update) and both equal a brute force over every
 *     stage sequence on random small instances (tensor degrees, two TMPCs,
 *     tight memory, non-uniform TMPCs);
 *   - a two-node instance by hand; Piper's checks as errors with paths;
 *   - the import: ops, units (ms corrected / raw), the planner through
 *     pp_plan_point reporting Piper's number.
 * The peer inputs are read from $PS_PEERS_DIR (default ../shared/peers);
 * tests that need them skip when absent. */
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

#include <jansson.h>

#include "sim/pipeline/import.h"
#include "sim/pipeline/piper_dp.h"
#include "sim/pipeline/planner.h"

#define OK(call)                                                                                   \
    do {                                                                                           \
        ps_err e_ = {0};                                                                           \
        ps_err *e = &e_;                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            fail_msg("line %d: %s -> %d: %s", __LINE__, #call, rc_, e_.msg);                      \
    } while (0)

static void near_rel(double a, double b, double rel, const char *what, int line)
{
    double tol = rel * (fabs(b) > 1e-300 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol) && !(isinf(a) && isinf(b)))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}
#define REL(a, b, r) near_rel((a), (b), (r), #a, __LINE__)

static const char *peers_dir(void)
{
    const char *d = getenv("PS_PEERS_DIR");
    return d && *d ? d : "../shared/peers";
}

static pp_piper_inst *load_peer(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/piper-inputs/%s.json", peers_dir(), name);
    if (access(path, R_OK))
        return NULL;
    ps_err e = {0};
    pp_piper_inst *in = pp_piper_load(path, &e);
    if (!in)
        fail_msg("%s: %s", path, e.msg);
    return in;
}

/* Piper's printed numbers (README of the peers folder) */
static void check_peer(const char *name, double expect, double tol, int stages, int d0)
{
    pp_piper_inst *in = load_peer(name);
    if (!in) {
        skip();
        return;
    }
    pp_piper_result r;
    ps_err e = {0};
    if (pp_piper_solve(in, NULL, &r, &e))
        fail_msg("%s: %s", name, e.msg);
    assert_true(r.feasible);
    if (fabs(r.tps - expect) > tol)
        fail_msg("%s: best time per micro-batch %.10g, Piper reports %g", name, r.tps, expect);
    assert_int_equal(r.nstages, stages);
    if (d0 > 0)
        assert_int_equal(r.stages[0].d, d0);
    REL(pp_piper_eval(in, NULL, &r), r.tps, 1e-9);
    int devs = 0;
    for (int i = 0; i < r.nstages; i++)
        devs += r.stages[i].d * r.stages[i].t;
    assert_int_equal(devs, r.devices_used);
    assert_true(devs <= 10);
    printf("  %s: %.10g (%d stage(s)), %lld ideals, %lld pairs, %.3f s\n", name, r.tps,
           r.nstages, r.ideals, r.pairs, r.search_time_s);
    pp_piper_result_free(&r);
    pp_piper_free(in);
}

static void test_peer_bert(void **st)
{
    (void)st;
    check_peer("bert32a100", 0.0977, 0.00005, 1, 10);
}

static void test_peer_resnet(void **st)
{
    (void)st;
    check_peer("resnet", 46.24, 0.005, 1, 10);
}

static void test_peer_gnmt(void **st)
{
    (void)st;
    const char *s = getenv("PS_PIPER_SLOW");
    if (!s || strcmp(s, "1")) {
        skip();
        return;
    }
    check_peer("gnmt", 53.49, 0.005, 2, 0);
}

static void solve_both(pp_piper_inst *in, pp_piper_opts *o, double *fast, double *lit)
{
    pp_piper_result r;
    o->literal = 0;
    OK(pp_piper_solve(in, o, &r, e));
    *fast = r.feasible ? r.tps : INFINITY;
    if (r.feasible)
        REL(pp_piper_eval(in, o, &r), r.tps, 1e-9);
    pp_piper_result_free(&r);
    o->literal = 1;
    OK(pp_piper_solve(in, o, &r, e));
    *lit = r.feasible ? r.tps : INFINITY;
    if (r.feasible)
        REL(pp_piper_eval(in, o, &r), r.tps, 1e-9);
    pp_piper_result_free(&r);
    o->literal = 0;
}

/* fast == reference on the real inputs, also with tight memory (the
 * knapsack picks activation recomputation) and tensor parallelism */
static void test_fast_equals_literal_peers(void **st)
{
    (void)st;
    pp_piper_inst *bert = load_peer("bert32a100");
    if (!bert) {
        skip();
        return;
    }
    struct {
        int dev;
        double mem;
    } cases[] = {{10, 0}, {16, 8.0 * (1 << 30)}, {32, 2.0 * (1 << 30)}, {8, 1.0 * (1 << 30)}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pp_piper_opts o = {.devices = cases[i].dev, .mem_bytes = cases[i].mem};
        double f, l;
        solve_both(bert, &o, &f, &l);
        if (!(f == l || fabs(f - l) <= 1e-9 * fabs(l)))
            fail_msg("bert k=%d mem=%g: fast %.17g literal %.17g", cases[i].dev, cases[i].mem, f,
                     l);
    }
    pp_piper_free(bert);
    /* resnet with tight memory (many literal fallbacks): ~2 s, more under
     * ASan, so only with PS_PIPER_SLOW=1 */
    const char *slow = getenv("PS_PIPER_SLOW");
    pp_piper_inst *res = slow && !strcmp(slow, "1") ? load_peer("resnet") : NULL;
    if (res) {
        pp_piper_opts o = {.devices = 4, .mem_bytes = 8.0 * (1 << 30), .time_scale = 1e-3};
        double f, l;
        solve_both(res, &o, &f, &l);
        REL(f, l, 1e-9);
        pp_piper_free(res);
    }
}

/* ---- random small instances against the brute force ---- */

static unsigned rng_state = 12345;
static double urand(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return ((rng_state >> 8) & 0xffffff) / (double)0x1000000;
}

static json_t *random_instance(int n, int tmax, int nonuni, int *K, int *mbs)
{
    json_t *doc = json_object();
    static const int mbs_choices[] = {1, 2, 3, 4, 6, 8};
    *K = 1 + (int)(urand() * 5);
    *mbs = mbs_choices[(int)(urand() * 6)];
    json_object_set_new(doc, "maxDevices", json_integer(*K));
    json_object_set_new(doc, "mbsInBatch", json_integer(*mbs));
    json_object_set_new(doc, "bandwidth", json_real(1 + urand() * 9));
    /* edges: i -> j (i < j) with probability 0.45 */
    int adj[8][8] = {{0}};
    json_t *edges = json_array();
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (urand() < 0.45) {
                adj[i][j] = 1;
                json_t *ed = json_object();
                json_object_set_new(ed, "sourceId", json_integer(100 + i));
                json_object_set_new(ed, "destId", json_integer(100 + j));
                json_object_set_new(ed, "communicationCost", json_real(urand() * 3));
                json_array_append_new(edges, ed);
            }
    json_t *nodes = json_array();
    double memsum = 0;
    for (int v = 0; v < n; v++) {
        json_t *nd = json_object(), *T = json_object();
        json_object_set_new(nd, "id", json_integer(100 + v));
        for (int t = 1; t <= tmax; t *= 2) {
            if (t > 1 && urand() < 0.2)
                continue; /* this node lacks degree t */
            int nl = urand() < 0.6 ? 2 : 1;
            json_t *arr = json_array();
            double base = 0.5 + urand() * 4, par = urand() * 20, ma = urand() * 5,
                   mb = urand() * 5;
            double sf[8], sb[8];
            for (int u = 0; u < n; u++)
                sf[u] = sb[u] = urand() * 0.5;
            for (int l = 0; l < nl; l++) {
                json_t *tm = json_object();
                json_object_set_new(tm, "id", json_string(l ? "recomp" : "vanilla"));
                /* recomputation: slower, less A, a bit more B */
                json_object_set_new(tm, "timePerSample", json_real(base / t * (l ? 1.3 : 1)));
                double p2 = par / t + (nonuni && l ? urand() * 3 : 0);
                json_object_set_new(tm, "parameterSize", json_real(p2));
                json_object_set_new(tm, "memoryUsageA", json_real(ma / t * (l ? 0.2 : 1)));
                json_object_set_new(tm, "memoryUsageB", json_real(mb / t * (l ? 1.2 : 1)));
                json_t *fw = json_object(), *bw = json_object();
                for (int u = 0; u < n; u++) {
                    char k[16];
                    snprintf(k, sizeof k, "%d", 100 + u);
                    double extra = nonuni && l ? urand() : 0;
                    if (adj[u][v])
                        json_object_set_new(fw, k, json_real((t > 1 ? sf[u] : 0) + extra));
                    if (adj[v][u])
                        json_object_set_new(bw, k, json_real((t > 1 ? sb[u] : 0) + extra));
                }
                json_object_set_new(tm, "syncTimeFw", fw);
                json_object_set_new(tm, "syncTimeBw", bw);
                json_array_append_new(arr, tm);
            }
            if (t == 1)
                memsum += ma * 2 + mb;
            char key[8];
            snprintf(key, sizeof key, "%d", t);
            json_object_set_new(T, key, arr);
        }
        json_object_set_new(nd, "TMPCs", T);
        json_array_append_new(nodes, nd);
    }
    /* memory from generous to tight */
    double f = 0.15 + urand() * 1.2;
    json_object_set_new(doc, "maxMemoryPerDevice", json_real(memsum * f + 1e-6));
    json_object_set_new(doc, "nodes", nodes);
    json_object_set_new(doc, "edges", edges);
    return doc;
}

static void test_random_vs_brute(void **st)
{
    (void)st;
    int feasible = 0, multi = 0, tp = 0, knap = 0;
    for (int it = 0; it < 250; it++) {
        int n = 1 + it % 6, K, mbs;
        int tmax = it % 3 == 0 ? 1 : 4;
        json_t *doc = random_instance(n, tmax, it % 4 == 3, &K, &mbs);
        ps_err e = {0};
        pp_piper_inst *in = pp_piper_from_json(doc, "random", &e);
        if (!in)
            fail_msg("instance %d: %s", it, e.msg);
        pp_piper_opts o = {0};
        double f, l, b;
        solve_both(in, &o, &f, &l);
        OK(pp_piper_brute(in, &o, &b, e));
        if (!((isinf(f) && isinf(b)) || fabs(f - b) <= 1e-9 * fabs(b)) ||
            !((isinf(l) && isinf(b)) || fabs(l - b) <= 1e-9 * fabs(b)))
            fail_msg("instance %d (n=%d K=%d mbs=%d): fast %.17g literal %.17g brute %.17g", it,
                     n, K, mbs, f, l, b);
        if (isfinite(b)) {
            feasible++;
            pp_piper_result r;
            OK(pp_piper_solve(in, &o, &r, e));
            if (r.nstages > 1)
                multi++;
            for (int i = 0; i < r.nstages; i++) {
                if (r.stages[i].t > 1)
                    tp++;
                for (int q = 0; q < r.stages[i].nnodes; q++)
                    if (r.stages[i].tmpc[q] != 0)
                        knap++;
            }
            pp_piper_result_free(&r);
        }
        pp_piper_free(in);
        json_decref(doc);
    }
    /* the instances exercise what they should */
    assert_true(feasible > 100);
    assert_true(multi > 10);
    assert_true(tp > 5);
    assert_true(knap > 5);
}

/* two nodes a -> b, one TMPC each, by hand */
static void test_two_nodes_by_hand(void **st)
{
    (void)st;
    const char *txt =
        "{\"maxMemoryPerDevice\": 100, \"maxDevices\": 2, \"bandwidth\": 10, \"mbsInBatch\": 4,"
        " \"nodes\": ["
        "  {\"id\": 7, \"TMPCs\": {\"1\": [{\"id\": \"v\", \"timePerSample\": 4, "
        "    \"parameterSize\": 5, \"memoryUsageA\": 1, \"memoryUsageB\": 1,"
        "    \"syncTimeFw\": {}, \"syncTimeBw\": {\"9\": 0}}]}},"
        "  {\"id\": 9, \"TMPCs\": {\"1\": [{\"id\": \"v\", \"timePerSample\": 2, "
        "    \"parameterSize\": 0, \"memoryUsageA\": 1, \"memoryUsageB\": 1,"
        "    \"syncTimeFw\": {\"7\": 0}, \"syncTimeBw\": {}}]}}],"
        " \"edges\": [{\"sourceId\": 7, \"destId\": 9, \"communicationCost\": 3}]}";
    json_error_t je;
    json_t *doc = json_loads(txt, 0, &je);
    assert_non_null(doc);
    ps_err e = {0};
    pp_piper_inst *in = pp_piper_from_json(doc, "hand", &e);
    assert_non_null(in);
    /* candidates on 2 devices:
     *  one stage, d=1: 4+2 = 6;  d=2: 6/2 + 4*1*5/2/4/10 = 3 + 0.25 = 3.25
     *  two stages (d=1 each): a: 4 + 2*3/10 = 4.6, b: 2 + 0.6 = 2.6 -> 4.6
     * best 3.25 (one stage, both replicas) */
    pp_piper_result r;
    OK(pp_piper_solve(in, NULL, &r, e));
    REL(r.tps, 3.25, 1e-12);
    assert_int_equal(r.nstages, 1);
    assert_int_equal(r.stages[0].d, 2);
    pp_piper_result_free(&r);
    /* 1 device: 6 (one stage) */
    pp_piper_opts o = {.devices = 1};
    OK(pp_piper_solve(in, &o, &r, e));
    REL(r.tps, 6, 1e-12);
    pp_piper_result_free(&r);
    /* slow bandwidth 0.1: d=2 costs 3 + 25 -> two stages win? a: 4 + 60, so
     * one stage d=1 (6) is best */
    o = (pp_piper_opts){.bandwidth = 0.1};
    OK(pp_piper_solve(in, &o, &r, e));
    REL(r.tps, 6, 1e-12);
    pp_piper_result_free(&r);
    /* time_scale 1e-3 (ms -> s): d=2: 0.003 + 0.25 = 0.253; two stages:
     * a 0.004 + 0.6, so one stage on one device, 0.006, is best */
    o = (pp_piper_opts){.time_scale = 1e-3};
    OK(pp_piper_solve(in, &o, &r, e));
    REL(r.tps, 0.006, 1e-12);
    pp_piper_result_free(&r);
    /* memory 1.5 per device: y >= 1 needs 2 per node -> both nodes on one
     * device need 4: infeasible; two stages need 2 each: infeasible too */
    o = (pp_piper_opts){.mem_bytes = 3};
    OK(pp_piper_solve(in, &o, &r, e));
    /* one stage: A*y+B = 2y + 2 > 3 for y >= 1; two stages: 1*y+1 <= 3 for
     * y <= 2: stage a has y = 2 (both degrees), b has y = 1: 4.6 */
    REL(r.tps, 4.6, 1e-12);
    assert_int_equal(r.nstages, 2);
    pp_piper_result_free(&r);
    pp_piper_free(in);
    json_decref(doc);
}

static void expect_error(const char *txt, const char *needle)
{
    json_error_t je;
    json_t *doc = json_loads(txt, 0, &je);
    if (!doc)
        fail_msg("bad test json: %s", je.text);
    ps_err e = {0};
    pp_piper_inst *in = pp_piper_from_json(doc, "bad.json", &e);
    if (in)
        fail_msg("accepted: %s", txt);
    assert_int_equal(e.code, PS_EINPUT);
    if (!strstr(e.msg, needle) || !strstr(e.msg, "bad.json"))
        fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
    json_decref(doc);
}

#define HEAD "{\"maxMemoryPerDevice\": 100, \"maxDevices\": 2, \"bandwidth\": 10, \"mbsInBatch\": 4,"
#define TM(fw, bw)                                                                                 \
    "{\"1\": [{\"id\": \"v\", \"timePerSample\": 1, \"parameterSize\": 0, \"memoryUsageA\": 1, "   \
    "\"memoryUsageB\": 1, \"syncTimeFw\": " fw ", \"syncTimeBw\": " bw "}]}"

static void test_errors(void **st)
{
    (void)st;
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": " TM("{}", "{\"2\": 0}") "}],"
                      "\"edges\": [{\"sourceId\": 1, \"destId\": 2, \"communicationCost\": 1}]}",
                 "$.edges[0].destId: 2 is not a node id");
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": " TM("{\"2\": 0}", "{\"2\": 0}") "},"
                      "{\"id\": 2, \"TMPCs\": " TM("{\"1\": 0}", "{\"1\": 0}") "}],"
                      "\"edges\": [{\"sourceId\": 1, \"destId\": 2, \"communicationCost\": 1},"
                      "{\"sourceId\": 2, \"destId\": 1, \"communicationCost\": 1}]}",
                 "cycle");
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": " TM("{}", "{}") "}],"
                      "\"edges\": [{\"sourceId\": 1, \"destId\": 1, \"communicationCost\": -1}]}",
                 "$.edges[0].communicationCost: negative");
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": {\"1\": [{\"id\": \"v\", "
                      "\"timePerSample\": 1, \"parameterSize\": -4, \"memoryUsageA\": 1, "
                      "\"memoryUsageB\": 1, \"syncTimeFw\": {}, \"syncTimeBw\": {}}]}}],"
                      "\"edges\": []}",
                 "$.nodes[0].TMPCs[\"1\"][0].parameterSize: negative");
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": " TM("{}", "{}") "},"
                      "{\"id\": 2, \"TMPCs\": " TM("{\"1\": 0}", "{}") "}],"
                      "\"edges\": [{\"sourceId\": 1, \"destId\": 2, \"communicationCost\": 1}]}",
                 "$.nodes[0].TMPCs[\"1\"][0].syncTimeBw: no entry for the edge to node 2");
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": " TM("{}", "{}") "},"
                      "{\"id\": 1, \"TMPCs\": " TM("{}", "{}") "}], \"edges\": []}",
                 "duplicate node id 1");
    expect_error(HEAD "\"nodes\": [{\"id\": 1, \"TMPCs\": " TM("{}", "{}") "}], \"edges\": "
                      "[{\"sourceId\": 1}]}",
                 "$.edges[0].destId: missing");
}

/* the import: ops, units, and the planner through pp_plan_point */
static void test_import_and_plan(void **st)
{
    (void)st;
    char path[512];
    snprintf(path, sizeof path, "%s/piper-inputs/resnet.json", peers_dir());
    if (access(path, R_OK)) {
        skip();
        return;
    }
    ps_err e = {0};
    pp_model *m = pp_import_piper(path, NULL, &e);
    if (!m)
        fail_msg("%s", e.msg);
    assert_int_equal(pp_model_nops(m), 177);
    assert_int_equal(pp_model_nedges(m), 193);
    assert_non_null(pp_model_piper(m));
    /* node 0 ("node77"): vanilla 2.678 ms is the fastest TMPC */
    const pp_model_op *op = pp_model_op_at(m, pp_model_find(m, "n0"));
    assert_non_null(op);
    REL(op->measured.fwd_s + op->measured.bwd_input_s + op->measured.bwd_weight_s, 2.678e-3,
        1e-12);
    REL(op->param_bytes, 4096, 0);
    REL(op->act_bytes, 205520896.0, 0);
    pp_import_opts raw = {.piper_raw_units = 1};
    pp_model *mr = pp_import_piper(path, &raw, &e);
    assert_non_null(mr);
    op = pp_model_op_at(mr, pp_model_find(mr, "n0"));
    REL(op->measured.fwd_s + op->measured.bwd_input_s, 2.678, 1e-12);
    pp_model_free(mr);
    pp_model_free(m);
    /* save and plan (bert32a100: small): Piper's own DP, its number */
    snprintf(path, sizeof path, "%s/piper-inputs/bert32a100.json", peers_dir());
    m = pp_import_piper(path, NULL, &e);
    if (!m)
        fail_msg("%s", e.msg);
    char out[] = "/tmp/test_pp_piper_XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    OK(pp_model_save(m, out, e));
    pp_model_free(m);
    pp_popts po;
    pp_popts_default(&po, PP_PLANNER_PIPER, 16);
    pp_point_spec s = {.model_path = out,
                       .cluster = "dgx-h100",
                       .devices = 10,
                       .planner = PP_PLANNER_PIPER,
                       .minibatch = 16,
                       .select_by_sim = 1,
                       .optimizer = CM_OPT_ADAM,
                       .opts = &po};
    pp_point_result r;
    OK(pp_plan_point(&s, &r, e));
    assert_true(r.feasible);
    if (fabs(r.objective - 0.0977) > 0.00005)
        fail_msg("piper via plan_point: %.10g, Piper reports 0.0977", r.objective);
    assert_int_equal(r.num_stages, 1);
    assert_int_equal(r.devices_used, 10);
    /* corrected units on the cluster: a different cost model, a plan */
    po.piper_cost = PP_PIPER_COST_SECONDS;
    OK(pp_plan_point(&s, &r, e));
    assert_true(r.feasible);
    assert_true(r.objective > 0 && r.objective < 1); /* seconds now */
    /* plansim's own formula ignores the instance */
    po.piper_cost = PP_PIPER_COST_PLANSIM;
    OK(pp_plan_point(&s, &r, e));
    assert_true(r.feasible);
    unlink(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_nodes_by_hand),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_random_vs_brute),
        cmocka_unit_test(test_peer_bert),
        cmocka_unit_test(test_peer_resnet),
        cmocka_unit_test(test_peer_gnmt),
        cmocka_unit_test(test_fast_equals_literal_peers),
        cmocka_unit_test(test_import_and_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
