/* sim/pipeline plans and clusters: structure checks (partition, convexity,
 * stage cycles, devices, micro-batch sizes, interleaving), stage edges and
 * topological order, the in-flight rule, JSON round trips, the shipped
 * cluster files, memory accounting. */
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

#include "common/json.h"
#include "sim/pipeline/plan.h"

static char tmpdir[256];

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pp_plan.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A diamond with a tail:   a -> b -> d -> e
 *                           \-> c -/
 * ops in topological order a b c d e (indices 0..4). */
static pp_model *diamond(void)
{
    static const char *txt =
        "{\"name\": \"diamond\", \"ops\": ["
        "{\"id\": \"a\", \"kind\": \"opaque\", \"param_bytes\": 100, \"act_bytes\": 10,"
        " \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 2}},"
        "{\"id\": \"b\", \"kind\": \"opaque\", \"inputs\": [\"a\"], \"param_bytes\": 100,"
        " \"act_bytes\": 10, \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 2}},"
        "{\"id\": \"c\", \"kind\": \"opaque\", \"inputs\": [\"a\"], \"param_bytes\": 100,"
        " \"act_bytes\": 10, \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 2}},"
        "{\"id\": \"d\", \"kind\": \"opaque\", \"inputs\": [\"b\", \"c\"], \"param_bytes\": 100,"
        " \"act_bytes\": 10, \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 2}},"
        "{\"id\": \"e\", \"kind\": \"opaque\", \"inputs\": [\"d\"], \"param_bytes\": 100,"
        " \"act_bytes\": 10, \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 2}}]}";
    ps_err e = {0};
    json_t *j = ps_json_load_str(txt, "diamond", &e);
    assert_non_null(j);
    pp_model *m = pp_model_from_json(j, "diamond", &e);
    json_decref(j);
    if (!m)
        fail_msg("%s", e.msg);
    return m;
}

static pp_cluster cluster4(void)
{
    pp_cluster c;
    ps_err e = {0};
    json_t *j = ps_json_load_str(
        "{\"name\": \"t\", \"device\": \"v100-16g\", \"devices_per_node\": 2, \"nodes\": 4,"
        " \"intra_link\": {\"latency_s\": 1e-6, \"bw_bytes_per_s\": 1e11},"
        " \"inter_link\": {\"latency_s\": 5e-6, \"bw_bytes_per_s\": 1e10}}", "c", &e);
    assert_non_null(j);
    if (pp_cluster_from_json(j, "c", NULL, &c, &e))
        fail_msg("%s", e.msg);
    json_decref(j);
    return c;
}

typedef struct sdef {
    int ops[5], nops, mb, devs[4], ndevs, inflight;
} sdef;

static pp_plan *mk(const sdef *s, int n, int minibatch)
{
    ps_err e = {0};
    pp_plan *p = pp_plan_new(n, &e);
    assert_non_null(p);
    p->minibatch = minibatch;
    for (int i = 0; i < n; i++)
        assert_int_equal(pp_plan_set_stage(p, i, s[i].ops, s[i].nops, s[i].mb, s[i].devs,
                                           s[i].ndevs, s[i].inflight, &e), 0);
    return p;
}

static void expect_bad(const sdef *s, int n, int minibatch, pp_schedule sched, int chunks,
                       const char *n1, const char *n2)
{
    pp_model *m = diamond();
    pp_cluster c = cluster4();
    pp_plan *p = mk(s, n, minibatch);
    p->schedule = sched;
    p->chunks = chunks;
    ps_err e = {0};
    int rc = pp_plan_finalize(p, m, &c, &e);
    if (rc != PS_EINPUT)
        fail_msg("accepted a bad plan (rc %d), wanted '%s'", rc, n1);
    if (n1 && !strstr(e.msg, n1))
        fail_msg("message lacks '%s': %s", n1, e.msg);
    if (n2 && !strstr(e.msg, n2))
        fail_msg("message lacks '%s': %s", n2, e.msg);
    pp_plan_free(p);
    pp_model_free(m);
}

static void test_structure_errors(void **st)
{
    (void)st;
    /* op in two stages / in none */
    sdef two[2] = {{{0, 1, 2}, 3, 1, {0}, 1, 0}, {{2, 3, 4}, 3, 1, {1}, 1, 0}};
    expect_bad(two, 2, 4, PP_1F1B, 1, "\"c\"", "stage 1");
    sdef none[2] = {{{0, 1}, 2, 1, {0}, 1, 0}, {{3, 4}, 2, 1, {1}, 1, 0}};
    expect_bad(none, 2, 4, PP_1F1B, 1, "\"c\"", "no stage");
    /* non-convex: {a, d} leaves through b and comes back */
    sdef nc[3] = {{{0, 3}, 2, 1, {0}, 1, 0}, {{1, 2}, 2, 1, {1}, 1, 0}, {{4}, 1, 1, {2}, 1, 0}};
    expect_bad(nc, 3, 4, PP_1F1B, 1, "not convex", "\"d\"");
    /* (in this graph every stage cycle breaks convexity; test_stage_cycle has
     * convex stages on a cycle) */
    /* devices: overlap, outside the cluster, none, twice */
    sdef ov[2] = {{{0, 1, 2}, 3, 1, {0, 1}, 2, 0}, {{3, 4}, 2, 1, {1}, 1, 0}};
    expect_bad(ov, 2, 4, PP_1F1B, 1, "device 1", "stage");
    sdef out[2] = {{{0, 1, 2}, 3, 1, {0}, 1, 0}, {{3, 4}, 2, 1, {8}, 1, 0}};
    expect_bad(out, 2, 4, PP_1F1B, 1, "device 8", "not in the cluster");
    sdef nod[2] = {{{0, 1, 2}, 3, 1, {0}, 1, 0}, {{3, 4}, 2, 1, {0}, 0, 0}};
    expect_bad(nod, 2, 4, PP_1F1B, 1, "no devices", NULL);
    /* micro-batch sizes: must divide the minibatch, and each other */
    sdef bdiv[2] = {{{0, 1, 2}, 3, 3, {0}, 1, 0}, {{3, 4}, 2, 1, {1}, 1, 0}};
    expect_bad(bdiv, 2, 4, PP_1F1B, 1, "microbatch 3", "minibatch 4");
    sdef brat[2] = {{{0, 1, 2}, 3, 2, {0}, 1, 0}, {{3, 4}, 2, 3, {1}, 1, 0}};
    expect_bad(brat, 2, 6, PP_1F1B, 1, "one must divide the other", NULL);
    sdef bzb[2] = {{{0, 1, 2}, 3, 2, {0}, 1, 0}, {{3, 4}, 2, 4, {1}, 1, 0}};
    expect_bad(bzb, 2, 8, PP_ZB_H1, 1, "zb-h1", "one micro-batch size");
    /* interleaved: chain, devices repeating, m multiple of the groups */
    sdef il[4] = {{{0, 1, 2}, 3, 1, {0}, 1, 0}, {{3}, 1, 1, {1}, 1, 0},
                  {{4}, 1, 1, {0}, 1, 0}};
    expect_bad(il, 3, 4, PP_INTERLEAVED, 2, "multiple of 2", NULL);
    sdef ilb[4] = {{{0}, 1, 1, {0}, 1, 0}, {{1, 2}, 2, 1, {1}, 1, 0}, {{3}, 1, 1, {1}, 1, 0},
                   {{4}, 1, 1, {0}, 1, 0}};
    expect_bad(ilb, 4, 4, PP_INTERLEAVED, 2, "stage 2 must run on stage 0", NULL);
    sdef ild[4] = {{{0}, 1, 1, {0}, 1, 0}, {{1}, 1, 1, {1}, 1, 0}, {{2, 3}, 2, 1, {0}, 1, 0},
                   {{4}, 1, 1, {1}, 1, 0}};
    expect_bad(ild, 4, 4, PP_INTERLEAVED, 2, "chain", NULL);
}

/* Two convex stages that feed each other: ops x1 -> y1, y0 -> x0... built
 * as a model where {p, s} and {q, r} are convex but p->q and r->s. */
static void test_stage_cycle(void **st)
{
    (void)st;
    static const char *txt =
        "{\"ops\": ["
        "{\"id\": \"p\", \"kind\": \"opaque\", \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 1}},"
        "{\"id\": \"r\", \"kind\": \"opaque\", \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 1}},"
        "{\"id\": \"q\", \"kind\": \"opaque\", \"inputs\": [\"p\"], \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 1}},"
        "{\"id\": \"s\", \"kind\": \"opaque\", \"inputs\": [\"r\"], \"measured\": {\"batch\": 1, \"fwd_s\": 1, \"bwd_s\": 1}}]}";
    ps_err e = {0};
    json_t *j = ps_json_load_str(txt, "x", &e);
    pp_model *m = pp_model_from_json(j, "x", &e);
    json_decref(j);
    assert_non_null(m);
    int a[2] = {pp_model_find(m, "p"), pp_model_find(m, "s")};
    int b[2] = {pp_model_find(m, "q"), pp_model_find(m, "r")};
    int d0 = 0, d1 = 1;
    pp_plan *p = pp_plan_new(2, &e);
    p->minibatch = 2;
    pp_plan_set_stage(p, 0, a, 2, 1, &d0, 1, 0, &e);
    pp_plan_set_stage(p, 1, b, 2, 1, &d1, 1, 0, &e);
    assert_int_equal(pp_plan_finalize(p, m, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "cycle"));
    pp_plan_free(p);
    pp_model_free(m);
}

static void test_edges_order_inflight(void **st)
{
    (void)st;
    pp_model *m = diamond();
    pp_cluster c = cluster4();
    /* given out of order: {e}, {b}, {a}, {c}, {d} */
    sdef s[5] = {{{4}, 1, 1, {4}, 1, 0}, {{1}, 1, 1, {1}, 1, 0}, {{0}, 1, 1, {0}, 1, 0},
                 {{2}, 1, 1, {2}, 1, 0}, {{3}, 1, 1, {3}, 1, 0}};
    pp_plan *p = mk(s, 5, 8);
    ps_err e = {0};
    if (pp_plan_finalize(p, m, &c, &e))
        fail_msg("%s", e.msg);
    /* topological and stable: a, b, c, d, e */
    const char *want[5] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(pp_model_op_at(m, p->stages[i].ops[0])->id, want[i]);
    pp_stage_edge we[5] = {{0, 1}, {0, 2}, {1, 3}, {2, 3}, {3, 4}};
    assert_int_equal(p->nedges, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p->edges[i].from, we[i].from);
        assert_int_equal(p->edges[i].to, we[i].to);
    }
    /* GraphPipe's rule: longest path to the sink, in stages */
    int wi[5] = {4, 3, 3, 2, 1};
    for (int i = 0; i < 5; i++)
        assert_int_equal(pp_plan_inflight(p, i), wi[i]);
    /* a given inflight wins and propagates upstream */
    p->stages[3].inflight = 5;
    assert_int_equal(pp_plan_inflight(p, 1), 6);
    assert_int_equal(pp_plan_inflight(p, 0), 7);
    p->stages[3].inflight = 0;
    /* micro-batch ratios: a stage of b=2 above one of b=4 holding 1 needs
     * ceil(1*4/2) + 1 = 3 */
    for (int i = 0; i < 5; i++)
        p->stages[i].microbatch = i == 4 ? 4 : 2;
    assert_int_equal(pp_plan_inflight(p, 3), 3);
    assert_int_equal(pp_plan_inflight(p, 0), 5);
    assert_int_equal(pp_plan_microbatches(p, 4), 2);
    assert_int_equal(pp_plan_microbatches(p, 0), 4);
    p->stages[0].ndevices = 1;
    p->stages[0].microbatch = 3;
    assert_int_equal(pp_plan_replica_samples(p, 0), 3);
    pp_plan_free(p);
    /* merged stages: {a,b,c} -> {d,e}; a DP-2 stage */
    sdef s2[2] = {{{0, 1, 2}, 3, 4, {0, 1}, 2, 0}, {{3, 4}, 2, 4, {2}, 1, 0}};
    p = mk(s2, 2, 8);
    assert_int_equal(pp_plan_finalize(p, m, &c, &e), 0);
    assert_int_equal(p->nedges, 1);
    assert_int_equal(pp_plan_replica_samples(p, 0), 2);
    assert_int_equal(pp_plan_inflight(p, 0), 2);
    pp_plan_free(p);
    pp_model_free(m);
}

static void test_json_roundtrip(void **st)
{
    (void)st;
    pp_model *m = diamond();
    pp_cluster c = cluster4();
    sdef s[3] = {{{0}, 1, 2, {0, 1}, 2, 0}, {{1, 2, 3}, 3, 2, {2}, 1, 3}, {{4}, 1, 4, {3}, 1, 0}};
    pp_plan *p = mk(s, 3, 8);
    p->schedule = PP_GPIPE;
    p->optimizer = CM_OPT_MOMENTUM;
    snprintf(p->planner, sizeof p->planner, "hand");
    p->predicted_tps_s = 0.125;
    ps_err e = {0};
    assert_int_equal(pp_plan_finalize(p, m, &c, &e), 0);
    /* inline model and cluster */
    char path[512];
    snprintf(path, sizeof path, "%s/plan.json", tmpdir);
    assert_int_equal(pp_plan_save(p, m, &c, path, &e), 0);
    pp_model *m2 = NULL;
    pp_cluster c2;
    pp_plan *q = pp_plan_load(path, &m2, &c2, &e);
    if (!q)
        fail_msg("%s", e.msg);
    assert_int_equal(q->nstages, 3);
    assert_int_equal(q->schedule, PP_GPIPE);
    assert_int_equal(q->optimizer, CM_OPT_MOMENTUM);
    assert_string_equal(q->planner, "hand");
    assert_true(q->predicted_tps_s == 0.125);
    assert_int_equal(q->stages[1].inflight, 3);
    assert_int_equal(q->stages[0].ndevices, 2);
    assert_int_equal(q->stages[2].microbatch, 4);
    assert_int_equal(c2.devices_per_node, 2);
    assert_true(c2.inter.beta_bytes_per_s == 1e10);
    json_t *a = pp_plan_to_json(p, m, &c), *b = pp_plan_to_json(q, m2, &c2);
    char *sa = json_dumps(a, JSON_SORT_KEYS), *sb = json_dumps(b, JSON_SORT_KEYS);
    assert_string_equal(sa, sb);
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);
    pp_plan_free(q);
    pp_model_free(m2);
    /* by reference: a model file beside the plan, a built-in cluster */
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s/diamond.json", tmpdir);
    assert_int_equal(pp_model_save(m, mpath, &e), 0);
    p->model_ref = strdup("diamond.json");
    p->cluster_ref = strdup("summit");
    assert_int_equal(pp_plan_save(p, m, &c, path, &e), 0);
    q = pp_plan_load(path, &m2, &c2, &e);
    if (!q)
        fail_msg("%s", e.msg);
    assert_string_equal(c2.name, "summit");
    assert_string_equal(q->model_ref, "diamond.json");
    pp_plan_free(q);
    pp_model_free(m2);
    /* errors name the file and the field */
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"model\": \"diamond.json\", \"cluster\": \"summit\", \"minibatch\": 8,"
               " \"stages\": [{\"ops\": [\"a\", \"zz\"], \"microbatch\": 1, \"devices\": [0]}]}");
    fclose(f);
    assert_null(pp_plan_load(path, &m2, &c2, &e));
    assert_non_null(strstr(e.msg, "plan.json"));
    assert_non_null(strstr(e.msg, "\"zz\""));
    f = fopen(path, "w");
    fprintf(f, "{\"model\": \"diamond.json\", \"cluster\": \"summit\", \"minibatch\": 8,"
               " \"stages\": [{\"ops\": [\"a\", \"b\", \"c\", \"d\"], \"microbatch\": 1, "
               "\"devices\": [0]}]}");
    fclose(f);
    assert_null(pp_plan_load(path, &m2, &c2, &e));
    assert_non_null(strstr(e.msg, "\"e\" is in no stage"));
    f = fopen(path, "w");
    fprintf(f, "{\"model\": \"diamond.json\", \"cluster\": \"summit\", \"minibatch\": 8,"
               " \"schedule\": \"zb-h2\", \"stages\": [{\"ops\": [\"a\"], \"microbatch\": 1, "
               "\"devices\": [0]}]}");
    fclose(f);
    assert_null(pp_plan_load(path, &m2, &c2, &e));
    assert_non_null(strstr(e.msg, "$.schedule"));
    pp_plan_free(p);
    pp_model_free(m);
}

static void test_clusters(void **st)
{
    (void)st;
    ps_err e = {0};
    /* the shipped files say what the built-ins say */
    const char *names[2] = {"summit", "dgx-h100"};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "experiments/clusters/%s.json", names[i]);
        if (access(path, R_OK) != 0)
            snprintf(path, sizeof path, "../experiments/clusters/%s.json", names[i]);
        pp_cluster a, b;
        assert_int_equal(pp_cluster_load(names[i], NULL, &a, &e), 0);
        if (pp_cluster_load(path, NULL, &b, &e))
            fail_msg("%s", e.msg);
        json_t *ja = pp_cluster_to_json(&a), *jb = pp_cluster_to_json(&b);
        assert_true(json_equal(ja, jb));
        json_decref(ja);
        json_decref(jb);
    }
    pp_cluster s;
    assert_int_equal(pp_cluster_load("summit", NULL, &s, &e), 0);
    assert_string_equal(s.device.name, "v100-16g");
    assert_int_equal(s.devices_per_node, 4);
    assert_true(s.mem_bytes > 15e9 && s.mem_bytes <= 17.2e9);
    assert_true(s.inter.beta_bytes_per_s == 12.5e9); /* EDR 100 Gb/s */
    assert_int_equal(pp_cluster_node_of(&s, 5), 1);
    cm_ab l = pp_cluster_link(&s, 1, 3);
    assert_true(l.beta_bytes_per_s == s.intra.beta_bytes_per_s);
    l = pp_cluster_link(&s, 3, 4);
    assert_true(l.beta_bytes_per_s == s.inter.beta_bytes_per_s);
    /* ring all-reduce inside a node: 2(n-1) alpha + 2(n-1)/n S / beta */
    int d4[4] = {0, 1, 2, 3}, d2[2] = {3, 4};
    double t;
    assert_int_equal(pp_cluster_allreduce_s(&s, d4, 4, 1e9, &t, &e), 0);
    double want = 6 * s.intra.alpha_s + 1.5 * 1e9 / s.intra.beta_bytes_per_s;
    assert_true(fabs(t - want) <= 1e-12 * want);
    assert_int_equal(pp_cluster_allreduce_s(&s, d2, 2, 1e9, &t, &e), 0);
    want = 2 * s.inter.alpha_s + 1e9 / s.inter.beta_bytes_per_s;
    assert_true(fabs(t - want) <= 1e-12 * want);
    assert_int_equal(pp_cluster_allreduce_s(&s, d2, 1, 1e9, &t, &e), 0);
    assert_true(t == 0);
    /* errors */
    json_t *j = ps_json_load_str("{\"device\": \"v100-16g\", \"devices_per_node\": 4, "
                                 "\"intra_link\": \"nvlink9\", \"inter_link\": \"ib_edr\"}", "x", &e);
    assert_int_equal(pp_cluster_from_json(j, "c.json", NULL, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "c.json"));
    assert_non_null(strstr(e.msg, "intra_link"));
    json_decref(j);
    j = ps_json_load_str("{\"device\": \"v100-16g\", \"devices_per_node\": 4, \"nodes\": 1,"
                         "\"intra_link\": \"nvlink2\", \"inter_link\": \"ib_edr\", \"colour\": 1}",
                         "x", &e);
    assert_int_equal(pp_cluster_from_json(j, "c.json", NULL, &s, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "colour"));
    json_decref(j);
    assert_int_equal(pp_cluster_load("no-such-cluster", NULL, &s, &e), PS_EINPUT);
}

static void test_memory(void **st)
{
    (void)st;
    pp_model *m = diamond();
    pp_cluster c = cluster4();
    sdef s[3] = {{{0, 1}, 2, 1, {0}, 1, 0}, {{2}, 1, 1, {1}, 1, 0}, {{3, 4}, 2, 1, {2}, 1, 0}};
    ps_err e = {0};
    pp_op_cost cost[5];
    assert_int_equal(pp_model_costs(m, NULL, 1, cost, &e), 0);
    pp_schedule sch[2] = {PP_GPIPE, PP_1F1B};
    for (int k = 0; k < 2; k++) {
        pp_plan *p = mk(s, 3, 8);
        p->schedule = sch[k];
        assert_int_equal(pp_plan_finalize(p, m, &c, &e), 0);
        pp_stage_mem mem;
        assert_int_equal(pp_stage_memory(p, 0, cost, &mem), 0);
        /* two ops of 100 B: weights 200, grads 200, Adam 400; 10 B of
         * activations per op per sample */
        assert_true(mem.weights_bytes == 200 && mem.grads_bytes == 200 &&
                    mem.optimizer_bytes == 400);
        int want = sch[k] == PP_GPIPE ? 8 : 3; /* a -> c -> d: 3 stages deep */
        assert_int_equal(mem.inflight, want);
        assert_true(mem.activations_bytes == 20.0 * want);
        assert_true(mem.total_bytes == 800 + 20.0 * want);
        p->optimizer = CM_OPT_SGD;
        assert_int_equal(pp_stage_memory(p, 0, cost, &mem), 0);
        assert_true(mem.optimizer_bytes == 0);
        pp_plan_free(p);
    }
    pp_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure_errors), cmocka_unit_test(test_stage_cycle),
        cmocka_unit_test(test_edges_order_inflight), cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_clusters),         cmocka_unit_test(test_memory),
    };
    return cmocka_run_group_tests_name("pp_plan", tests, setup, teardown);
}
