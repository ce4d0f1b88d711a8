/* sim/pipeline model graphs: JSON round trips, validation messages that
 * name the file and the op, topological renumbering, generators and their
 * knobs, per-op costs (measured and cost model). */
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
#include "sim/pipeline/cluster.h"
#include "sim/pipeline/model.h"

static char tmpdir[256];

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pp_model.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text as a model file; expect failure with every needle in the message. */
static void expect_error(const char *text, const char *n1, const char *n2)
{
    const char *path = write_file("bad.json", text);
    ps_err e = {0};
    pp_model *m = pp_model_load(path, &e);
    if (m)
        fail_msg("loaded a bad model: %s", text);
    assert_int_equal(e.code, PS_EINPUT);
    if (!strstr(e.msg, "bad.json"))
        fail_msg("message does not name the file: %s", e.msg);
    if (n1 && !strstr(e.msg, n1))
        fail_msg("message lacks '%s': %s", n1, e.msg);
    if (n2 && !strstr(e.msg, n2))
        fail_msg("message lacks '%s': %s", n2, e.msg);
}

static void test_validation_errors(void **st)
{
    (void)st;
    /* cycle: named ops */
    expect_error("{\"ops\": [{\"id\": \"a\", \"kind\": \"input\", \"out_bytes\": 4},"
                 " {\"id\": \"b\", \"kind\": \"elementwise\", \"n\": 4, \"inputs\": [\"a\", \"c\"]},"
                 " {\"id\": \"c\", \"kind\": \"elementwise\", \"n\": 4, \"inputs\": [\"b\"]}]}",
                 "cycle", "\"b\"");
    expect_error("{\"ops\": [{\"id\": \"a\", \"kind\": \"elementwise\", \"n\": 4, \"inputs\": [\"a\"]}]}",
                 "\"a\"", "cycle");
    /* dangling input */
    expect_error("{\"ops\": [{\"id\": \"a\", \"kind\": \"input\"},"
                 " {\"id\": \"b\", \"kind\": \"gemm\", \"m\": 1, \"n\": 2, \"k\": 3, \"inputs\": [\"zz\"]}]}",
                 "op \"b\"", "\"zz\" is not an op id");
    /* duplicate id */
    expect_error("{\"ops\": [{\"id\": \"a\", \"kind\": \"input\"}, {\"id\": \"a\", \"kind\": \"input\"}]}",
                 "duplicate", "\"a\"");
    /* non-positive size */
    expect_error("{\"ops\": [{\"id\": \"mm\", \"kind\": \"gemm\", \"m\": 1, \"n\": 0, \"k\": 3}]}",
                 "op \"mm\"", ".n");
    expect_error("{\"ops\": [{\"id\": \"x\", \"kind\": \"input\", \"out_bytes\": -5}]}",
                 "op \"x\"", "out_bytes");
    expect_error("{\"ops\": [{\"id\": \"x\", \"kind\": \"opaque\", \"measured\": "
                 "{\"batch\": 0, \"fwd_s\": 1, \"bwd_s\": 1}}]}",
                 "op \"x\"", "batch");
    /* unknown kind and unknown key */
    expect_error("{\"ops\": [{\"id\": \"w\", \"kind\": \"warp\"}]}", "op \"w\"", "unknown kind");
    expect_error("{\"ops\": [{\"id\": \"g\", \"kind\": \"gemm\", \"m\": 1, \"n\": 2, \"k\": 3, "
                 "\"flops\": 9}]}", "op \"g\"", "flops");
    /* opaque without times, block without parts, parse error with line */
    expect_error("{\"ops\": [{\"id\": \"o\", \"kind\": \"opaque\"}]}", "op \"o\"", "measured");
    expect_error("{\"ops\": [{\"id\": \"b\", \"kind\": \"block\"}]}", "op \"b\"", "parts");
    expect_error("{\"ops\": [{\"id\": \"b\", \"kind\": \"block\", \"parts\": "
                 "[{\"kind\": \"gemm\", \"m\": 1, \"n\": -2, \"k\": 3}]}]}", "op \"b\"", "parts[0]");
    expect_error("{\"ops\": [\n{\"id\": \"a\",, }]}", ":2:", NULL);
    expect_error("{\"ops\": []}", "ops", NULL);
}

/* Ops listed consumer-first come out renumbered topologically, ids kept. */
static void test_topological_order(void **st)
{
    (void)st;
    const char *path = write_file(
        "order.json",
        "{\"name\": \"t\", \"ops\": ["
        " {\"id\": \"join\", \"kind\": \"concat\", \"inputs\": [\"l\", \"r\"]},"
        " {\"id\": \"r\", \"kind\": \"gemm\", \"m\": 2, \"n\": 8, \"k\": 4, \"inputs\": [\"x\"]},"
        " {\"id\": \"l\", \"kind\": \"gemm\", \"m\": 2, \"n\": 8, \"k\": 4, \"inputs\": [\"x\"]},"
        " {\"id\": \"x\", \"kind\": \"input\", \"out_bytes\": 32}]}");
    ps_err e = {0};
    pp_model *m = pp_model_load(path, &e);
    if (!m)
        fail_msg("%s", e.msg);
    assert_int_equal(pp_model_nops(m), 4);
    assert_int_equal(pp_model_nedges(m), 4);
    for (int i = 0; i < 4; i++) {
        const pp_model_op *o = pp_model_op_at(m, i);
        for (int k = 0; k < o->ninputs; k++)
            assert_true(o->inputs[k] < i);
        assert_int_equal(pp_model_find(m, o->id), i);
    }
    assert_string_equal(pp_model_op_at(m, 0)->id, "x");
    assert_string_equal(pp_model_op_at(m, 1)->id, "r"); /* listed before l */
    assert_string_equal(pp_model_op_at(m, 3)->id, "join");
    const pp_model_op *x = pp_model_op_at(m, 0), *j = pp_model_op_at(m, 3);
    assert_int_equal(x->nconsumers, 2);
    /* gemm out = m n w per sample; a concat forwards the sum of its inputs */
    assert_true(fabs(pp_model_op_at(m, 1)->out_bytes - 2 * 8 * 4) < 1e-9);
    assert_true(fabs(j->out_bytes - 2 * 64) < 1e-9);
    assert_true(fabs(pp_model_op_at(m, 1)->param_bytes - 4 * 8 * 4) < 1e-9);
    assert_int_equal(pp_model_find(m, "nope"), -1);
    pp_model_free(m);
}

static char *dump(const pp_model *m)
{
    json_t *j = pp_model_to_json(m);
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(j);
    return s;
}

static void test_roundtrip_builtins(void **st)
{
    (void)st;
    for (const char *const *n = pp_builtin_names(); *n; n++) {
        ps_err e = {0};
        pp_model *m = pp_model_builtin(*n, NULL, &e);
        if (!m)
            fail_msg("%s: %s", *n, e.msg);
        char path[512];
        snprintf(path, sizeof path, "%s/%s.json", tmpdir, *n);
        assert_int_equal(pp_model_save(m, path, &e), 0);
        pp_model *m2 = pp_model_load(path, &e);
        if (!m2)
            fail_msg("%s reload: %s", *n, e.msg);
        char *a = dump(m), *b = dump(m2);
        assert_string_equal(a, b);
        assert_int_equal(pp_model_nops(m), pp_model_nops(m2));
        for (int i = 0; i < pp_model_nops(m); i++) {
            const pp_model_op *x = pp_model_op_at(m, i), *y = pp_model_op_at(m2, i);
            assert_string_equal(x->id, y->id);
            assert_true(x->out_bytes == y->out_bytes && x->act_bytes == y->act_bytes &&
                        x->param_bytes == y->param_bytes);
        }
        free(a);
        free(b);
        pp_model_free(m);
        pp_model_free(m2);
    }
}

static int count_kind(const pp_model *m, const char *kind)
{
    int c = 0;
    for (int i = 0; i < pp_model_nops(m); i++)
        c += !strcmp(pp_model_op_at(m, i)->kind, kind);
    return c;
}

static void test_generators(void **st)
{
    (void)st;
    ps_err e = {0};
    /* MMT, App. A.2: 4 branches x 8 layers; one input per branch, a concat
     * and a fusion layer. */
    pp_model *m = pp_model_builtin("mmt", NULL, &e);
    assert_non_null(m);
    assert_int_equal(pp_model_nops(m), 4 + 32 + 2);
    assert_int_equal(count_kind(m, "block"), 32);
    /* a layer: 12 h^2 + 2 x layernorm (2h) parameters, fp32 */
    double h = 1024, f = 4096;
    const pp_model_op *l = pp_model_op_at(m, pp_model_find(m, "b2.l5"));
    assert_non_null(l);
    assert_true(fabs(l->param_bytes - 4 * (4 * h * h + 2 * h * f + 4 * h)) < 1);
    assert_int_equal(l->nparts, 10);
    pp_model_free(m);
    /* op granularity: 10 ops per layer, residual joins have two inputs */
    json_t *p = json_pack("{s:i, s:i, s:s}", "branches", 2, "layers", 3, "granularity", "op");
    m = pp_model_builtin("mmt", p, &e);
    json_decref(p);
    assert_non_null(m);
    assert_int_equal(pp_model_nops(m), 2 + 2 * 3 * 10 + 2);
    assert_int_equal(pp_model_op_at(m, pp_model_find(m, "b1.l2.add1"))->ninputs, 2);
    pp_model_free(m);
    /* DLRM: 7 dense (4 layers) + 7 embedding branches, concat, top MLP */
    m = pp_model_builtin("dlrm", NULL, &e);
    assert_non_null(m);
    assert_int_equal(count_kind(m, "embedding_bag"), 7);
    assert_int_equal(count_kind(m, "input"), 14);
    assert_int_equal(count_kind(m, "concat"), 1);
    const pp_model_op *eb = pp_model_op_at(m, pp_model_find(m, "emb3"));
    assert_true(fabs(eb->param_bytes - 4.0 * 1e6 * 64) < 1);
    assert_true(fabs(eb->out_bytes - 4.0 * 64) < 1e-9);
    pp_model_free(m);
    /* CANDLE-Uno branch knob */
    p = json_pack("{s:i}", "branches", 16);
    m = pp_model_builtin("candle-uno", p, &e);
    json_decref(p);
    assert_non_null(m);
    assert_int_equal(count_kind(m, "input"), 16);
    assert_int_equal(pp_model_op_at(m, pp_model_find(m, "concat"))->ninputs, 16);
    pp_model_free(m);
    /* transformer: a chain */
    m = pp_model_builtin("transformer", NULL, &e);
    assert_non_null(m);
    for (int i = 1; i < pp_model_nops(m); i++) {
        assert_int_equal(pp_model_op_at(m, i)->ninputs, 1);
        assert_int_equal(pp_model_op_at(m, i)->inputs[0], i - 1);
    }
    pp_model_free(m);
    /* knob errors */
    p = json_pack("{s:i}", "branchez", 2);
    assert_null(pp_model_builtin("mmt", p, &e));
    assert_non_null(strstr(e.msg, "branchez"));
    assert_non_null(strstr(e.msg, "branches"));
    json_decref(p);
    p = json_pack("{s:i}", "layers", 0);
    assert_null(pp_model_builtin("transformer", p, &e));
    json_decref(p);
    p = json_pack("{s:s}", "dtype", "fp7");
    assert_null(pp_model_builtin("dlrm", p, &e));
    json_decref(p);
    p = json_pack("{s:i, s:i}", "hidden", 100, "heads", 16);
    assert_null(pp_model_builtin("mmt", p, &e));
    json_decref(p);
    assert_null(pp_model_builtin("resnet", NULL, &e));
    assert_int_equal(e.code, PS_EINPUT);
}

static void test_costs(void **st)
{
    (void)st;
    const char *path = write_file(
        "costs.json",
        "{\"ops\": ["
        " {\"id\": \"x\", \"kind\": \"input\", \"out_bytes\": 100},"
        " {\"id\": \"mm\", \"kind\": \"gemm\", \"m\": 16, \"n\": 256, \"k\": 128, \"inputs\": [\"x\"]},"
        " {\"id\": \"blk\", \"kind\": \"block\", \"inputs\": [\"mm\"], \"parts\": ["
        "   {\"kind\": \"gemm\", \"m\": 16, \"n\": 256, \"k\": 128},"
        "   {\"kind\": \"elementwise\", \"n\": 4096, \"variant\": \"relu\"}]},"
        " {\"id\": \"me\", \"kind\": \"opaque\", \"inputs\": [\"blk\"], \"param_bytes\": 1000,"
        "  \"out_bytes\": 10, \"act_bytes\": 20,"
        "  \"measured\": {\"batch\": 4, \"fwd_s\": 0.004, \"bwd_s\": 0.008}},"
        " {\"id\": \"ms\", \"kind\": \"opaque\", \"inputs\": [\"me\"],"
        "  \"measured\": {\"batch\": 2, \"fwd_s\": 0.002, \"bwd_input_s\": 0.001, \"bwd_weight_s\": 0.003}},"
        " {\"id\": \"nw\", \"kind\": \"opaque\", \"inputs\": [\"ms\"],"
        "  \"measured\": {\"batch\": 1, \"fwd_s\": 0.5, \"bwd_s\": 0.25}}]}");
    ps_err e = {0};
    pp_model *m = pp_model_load(path, &e);
    if (!m)
        fail_msg("%s", e.msg);
    pp_cluster c;
    assert_int_equal(pp_cluster_load("summit", NULL, &c, &e), 0);
    cm_model *cm = pp_cluster_cost_model(&c, &e);
    assert_non_null(cm);
    pp_op_cost cost[6];
    assert_int_equal(pp_model_costs(m, cm, 8, cost, &e), 0);
    /* the gemm at 8 samples is gemm(m=128, n=256, k=128) */
    ps_op g;
    int64_t d[3] = {128, 256, 128};
    assert_int_equal(ps_op_make(&g, "gemm", NULL, NULL, d, 3, &e), 0);
    const char *ph[3] = {"fwd", "bwd_input", "bwd_weight"};
    double want[3];
    for (int q = 0; q < 3; q++) {
        cm_pred pr;
        assert_int_equal(cm_op_time_phase(cm, &g, (cm_phase)q, &pr, &e), 0);
        want[q] = pr.time_s;
        (void)ph;
    }
    int mm = pp_model_find(m, "mm"), blk = pp_model_find(m, "blk");
    assert_true(fabs(cost[mm].fwd_s - want[0]) <= 1e-15);
    assert_true(fabs(cost[mm].bwd_input_s - want[1]) <= 1e-15);
    assert_true(fabs(cost[mm].bwd_weight_s - want[2]) <= 1e-15);
    /* block = its parts summed */
    ps_op r;
    int64_t dr[1] = {4096 * 8};
    assert_int_equal(ps_op_make(&r, "elementwise", NULL, "relu", dr, 1, &e), 0);
    cm_pred pr;
    assert_int_equal(cm_op_time(cm, &r, &pr, &e), 0);
    assert_true(fabs(cost[blk].fwd_s - (want[0] + pr.time_s)) <= 1e-15);
    assert_true(cost[blk].bwd_weight_s == want[2]); /* relu has no weights */
    /* bytes scale with samples */
    assert_true(fabs(cost[mm].out_bytes - 8.0 * 16 * 256 * 4) < 1e-9);
    assert_true(fabs(cost[mm].act_bytes - 8.0 * 16 * 128 * 4) < 1e-9);
    assert_true(fabs(cost[mm].param_bytes - 128.0 * 256 * 4) < 1e-9);
    /* measured: linear in samples; a whole bwd splits evenly when the op has
     * weights, goes to the input gradient when it has none */
    int me = pp_model_find(m, "me"), ms = pp_model_find(m, "ms"), nw = pp_model_find(m, "nw");
    assert_true(fabs(cost[me].fwd_s - 0.008) < 1e-15);
    assert_true(fabs(cost[me].bwd_input_s - 0.008) < 1e-15);
    assert_true(fabs(cost[me].bwd_weight_s - 0.008) < 1e-15);
    assert_true(fabs(cost[me].act_bytes - 160) < 1e-12);
    assert_true(fabs(cost[ms].fwd_s - 0.008) < 1e-15);
    assert_true(fabs(cost[ms].bwd_input_s - 0.004) < 1e-15);
    assert_true(fabs(cost[ms].bwd_weight_s - 0.012) < 1e-15);
    assert_true(fabs(cost[nw].bwd_input_s - 2.0) < 1e-15 && cost[nw].bwd_weight_s == 0);
    assert_true(cost[pp_model_find(m, "x")].fwd_s == 0);
    /* measured-only models need no cost model; others do */
    assert_int_equal(pp_model_costs(m, NULL, 1, cost, &e), PS_EINPUT);
    assert_int_equal(pp_model_costs(m, cm, 0, cost, &e), PS_EINPUT);
    /* saving writes the bytes that were given, not the derived ones */
    json_t *j = pp_model_to_json(m);
    json_t *ops = json_object_get(j, "ops");
    json_t *jmm = json_array_get(ops, (size_t)mm), *jme = json_array_get(ops, (size_t)me);
    assert_null(json_object_get(jmm, "param_bytes"));
    assert_true(json_real_value(json_object_get(jme, "param_bytes")) == 1000);
    assert_true(json_real_value(json_object_get(json_object_get(jme, "measured"), "bwd_s")) == 0.008);
    json_decref(j);
    cm_model_free(cm);
    pp_model_free(m);
}

static void test_builder(void **st)
{
    (void)st;
    ps_err e = {0};
    pp_model *m = pp_model_new("b", &e);
    pp_op_spec s = {.id = "y", .kind = "opaque", .param_bytes = -1, .out_bytes = 8, .act_bytes = -1,
                    .measured = {1, 1, 1e-3, 1e-3, 1e-3}};
    int y = pp_model_add_op(m, &s, &e);
    s.id = "x";
    int x = pp_model_add_op(m, &s, &e);
    assert_true(x >= 0 && y >= 0);
    assert_int_equal(pp_model_add_input(m, y, x, &e), 0); /* forward reference */
    assert_int_equal(pp_model_add_input(m, y, x, &e), PS_EINPUT); /* twice */
    assert_true(pp_model_add_op(m, &s, &e) < 0); /* duplicate id */
    s.id = "z";
    s.kind = "gemm"; /* no shape */
    assert_true(pp_model_add_op(m, &s, &e) < 0);
    assert_int_equal(pp_model_finish(m, &e), 0);
    assert_string_equal(pp_model_op_at(m, 0)->id, "x");
    assert_int_equal(pp_model_op_at(m, 1)->inputs[0], 0);
    pp_model_free(m);
    /* a cycle through the builder names its ops */
    m = pp_model_new("c", &e);
    s = (pp_op_spec){.id = "p", .kind = "opaque", .param_bytes = -1, .out_bytes = -1,
                     .act_bytes = -1, .measured = {1, 1, 1, 1, 1}};
    int a = pp_model_add_op(m, &s, &e);
    s.id = "q";
    int b = pp_model_add_op(m, &s, &e);
    s.id = "r";
    int c = pp_model_add_op(m, &s, &e);
    pp_model_add_input(m, b, a, &e);
    pp_model_add_input(m, c, b, &e);
    pp_model_add_input(m, b, c, &e);
    assert_int_equal(pp_model_finish(m, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "\"q\""));
    assert_non_null(strstr(e.msg, "\"r\""));
    assert_null(strstr(e.msg, "\"p\""));
    pp_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_errors), cmocka_unit_test(test_topological_order),
        cmocka_unit_test(test_roundtrip_builtins), cmocka_unit_test(test_generators),
        cmocka_unit_test(test_costs),             cmocka_unit_test(test_builder),
    };
    return cmocka_run_group_tests_name("pp_model", tests, setup, teardown);
}
