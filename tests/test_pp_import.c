/* PipeDream profile import (sim/pipeline/import.h) and the
 * `plansim pipeline import` verb: the documented format read liberally,
 * units converted, PipeDream's bookkeeping nodes dropped, errors with the
 * file and the line, atomic output.  The peer profiles (../shared/peers, or
 * $PS_PEERS_DIR) are imported when present. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "sim/pipeline/import.h"
#include "tests/cli_testutil.h"

static char path_in[400];

static void write_in(const char *text)
{
    snprintf(path_in, sizeof path_in, "%s/in.graph.txt", cli_tmp);
    cli_write(path_in, text);
}

static pp_model *imp(const char *text, ps_err *e)
{
    write_in(text);
    memset(e, 0, sizeof *e);
    return pp_import_pipedream(path_in, NULL, e);
}

static const pp_model_op *op_of(const pp_model *m, const char *id)
{
    int i = pp_model_find(m, id);
    if (i < 0)
        fail_msg("no op %s", id);
    return pp_model_op_at(m, i);
}

/* The liberal side: CR LF, blank lines, spaces around separators, edges
 * before their nodes, " -- " inside a description, a stage_id segment, a
 * list of activation sizes with ";" or ",", a node without edges, a
 * repeated edge. */
static void test_liberal(void **st)
{
    (void)st;
    ps_err e;
    pp_model *m = imp(
        "\tnode1 -- node2\r\n"
        "\r\n"
        "node1 -- Input0 -- forward_compute_time=0.000, backward_compute_time=0.000, "
        "activation_size=1024.0, parameter_size=0.000\r\n"
        "node2 --  Conv2d(3, 64) -- a note --   forward_compute_time=2.000,"
        "backward_compute_time=4.5, activation_size=[256.0; 512.0], parameter_size=1000.0\r\n"
        "node3 -- ReLU -- forward_compute_time=1.25, backward_compute_time=0.75, "
        "activation_size=[128, 128], parameter_size=0 -- stage_id=3\n"
        "   node2 --node3  \n"
        "\tnode2 -- node3\n"
        "node9 -- Lonely -- forward_compute_time=3, backward_compute_time=1, "
        "activation_size=64, parameter_size=8\n"
        "node4 -- __getitem__(0) -- forward_compute_time=9, backward_compute_time=9, "
        "activation_size=64, parameter_size=0\n"
        "\tnode3 -- node4\n",
        &e);
    if (!m)
        fail_msg("%s", e.msg);
    /* Input0 (a source) and __getitem__ (a sink) are dropped */
    assert_int_equal(pp_model_nops(m), 3);
    assert_int_equal(pp_model_nedges(m), 1);
    assert_int_equal(pp_model_find(m, "node1"), -1);
    assert_int_equal(pp_model_find(m, "node4"), -1);
    const pp_model_op *a = op_of(m, "node2"), *b = op_of(m, "node3"), *c = op_of(m, "node9");
    assert_string_equal(a->kind, "opaque");
    assert_true(a->measured.has);
    assert_true(a->measured.batch == 128);
    assert_true(a->measured.fwd_s == 2.0 / 1000);
    assert_true(a->measured.bwd_input_s + a->measured.bwd_weight_s == 4.5 / 1000);
    assert_true(a->param_bytes == 1000);
    assert_true(a->act_bytes == 768.0 / 128 && a->out_bytes == 768.0 / 128);
    assert_true(b->act_bytes == 256.0 / 128);
    assert_true(b->measured.fwd_s == 1.25 / 1000);
    assert_int_equal(b->ninputs, 1);
    assert_int_equal(b->inputs[0], pp_model_find(m, "node2"));
    assert_int_equal(c->ninputs + c->nconsumers, 0);
    assert_true(c->param_bytes == 8);
    /* costs at the profiled batch are the profiled times */
    pp_op_cost cost[3];
    assert_int_equal(pp_model_costs(m, NULL, 128, cost, &e), 0);
    int ia = pp_model_find(m, "node2");
    assert_true(cost[ia].fwd_s == 0.002);
    assert_true(fabs(cost[ia].bwd_input_s + cost[ia].bwd_weight_s - 0.0045) < 1e-18);
    assert_true(cost[ia].act_bytes == 768);
    pp_model_free(m);

    /* keep_bookkeeping and batch */
    pp_import_opts o = {.keep_bookkeeping = 1, .batch = 32, .name = "x"};
    m = pp_import_pipedream(path_in, &o, &e);
    assert_non_null(m);
    assert_int_equal(pp_model_nops(m), 5);
    assert_string_equal(pp_model_name(m), "x");
    assert_true(op_of(m, "node2")->act_bytes == 768.0 / 32);
    assert_true(op_of(m, "node2")->measured.batch == 32);
    pp_model_free(m);
}

/* Only sinks left after dropping the Input sources, and only those whose
 * description starts with __getitem__, go (one pass, like PipeDream). */
static void test_drop_rules(void **st)
{
    (void)st;
    ps_err e;
    pp_model *m = imp("n0 -- Input -- forward_compute_time=0, backward_compute_time=0, "
                      "activation_size=0, parameter_size=0\n"
                      "n1 -- Linear -- forward_compute_time=1, backward_compute_time=1, "
                      "activation_size=0, parameter_size=0\n"
                      "n2 -- __getitem__ -- forward_compute_time=1, backward_compute_time=1, "
                      "activation_size=0, parameter_size=0\n"
                      "n3 -- __getitem__ -- forward_compute_time=1, backward_compute_time=1, "
                      "activation_size=0, parameter_size=0\n"
                      "n4 -- Input -- forward_compute_time=1, backward_compute_time=1, "
                      "activation_size=0, parameter_size=0\n"
                      "\tn0 -- n1\n\tn1 -- n2\n\tn2 -- n3\n\tn1 -- n4\n",
                      &e);
    if (!m)
        fail_msg("%s", e.msg);
    /* n0 dropped (Input source); n3 dropped (__getitem__ sink); n2 stays
     * (not a sink before the pass); n4 stays (Input but not a source) */
    assert_int_equal(pp_model_nops(m), 3);
    assert_true(pp_model_find(m, "n2") >= 0 && pp_model_find(m, "n4") >= 0);
    assert_int_equal(pp_model_find(m, "n3"), -1);
    pp_model_free(m);
}

static void expect_err(const char *text, const char *needle1, const char *needle2)
{
    ps_err e;
    pp_model *m = imp(text, &e);
    if (m) {
        pp_model_free(m);
        fail_msg("accepted a bad graph (expected \"%s\")", needle1);
    }
    assert_int_equal(e.code, PS_EINPUT);
    if (!strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", e.msg, needle1, needle2 ? needle2 : "");
    if (!strstr(e.msg, path_in))
        fail_msg("message \"%s\" does not name the file", e.msg);
}

#define NODE(id) id " -- Op -- forward_compute_time=1, backward_compute_time=1, " \
                 "activation_size=8, parameter_size=0\n"

static void test_errors(void **st)
{
    (void)st;
    char want[64];
    (void)want;
    expect_err(NODE("a") "b -- Op -- forward_compute_time=1\n", ":2:", "missing backward");
    expect_err(NODE("a") "b Op forward_compute_time=1\n", ":2:", "node line");
    expect_err(NODE("a") "b -- Op\n", ":2:", "metadata");
    expect_err(NODE("a") NODE("b") "\ta -- c\n", ":3:", "unknown node id 'c'");
    expect_err(NODE("a") NODE("b") "\ta b\n", ":3:", "edge line");
    expect_err(NODE("a") "\n" NODE("a"), ":3:", "duplicate node id 'a' (first defined on line 1)");
    expect_err(NODE("a") NODE("b") NODE("c") "\ta -- b\n\tb -- c\n\tc -- a\n", ":6:", "cycle");
    expect_err(NODE("a") "\ta -- a\n", ":2:", "self-loop");
    expect_err(NODE("a") "b -- Op -- forward_compute_time=1, backward_compute_time=1, "
                         "activation_size=-8, parameter_size=0\n",
               ":2:", "negative");
    expect_err(NODE("a") "b -- Op -- forward_compute_time=-1, backward_compute_time=1, "
                         "activation_size=8, parameter_size=0\n",
               ":2:", "negative");
    expect_err("b -- Op -- forward_compute_time=1, backward_compute_time=1, "
               "activation_size=[8; -1], parameter_size=0\n",
               ":1:", "negative");
    expect_err("b -- Op -- forward_compute_time=1, backward_compute_time=x, "
               "activation_size=8, parameter_size=0\n",
               ":1:", "not a number");
    expect_err("b -- Op -- forward_compute_time=1, backward_compute_time=nan, "
               "activation_size=8, parameter_size=0\n",
               ":1:", "not finite");
    expect_err("b -- Op -- forward_compute_time=1, backward_compute_time=1, "
               "activation_size=[8; 2, parameter_size=0\n",
               ":1:", "activation_size");
    expect_err("b -- Op -- forward_compute_time=1, backward_compute_time=1, "
               "activation_size=8, parameter_size=0, flops=3\n",
               ":1:", "unknown field 'flops'");
    expect_err("\n\n", "no node lines", NULL);
    ps_err e = {0};
    assert_null(pp_import_pipedream("/nonexistent/x.graph.txt", NULL, &e));
    assert_true(e.code != 0 && strstr(e.msg, "/nonexistent/x.graph.txt"));
}

/* Saved with a "source"; loads back the same; -o is atomic. */
static void test_save_roundtrip(void **st)
{
    (void)st;
    ps_err e;
    pp_model *m = imp(NODE("a") NODE("b") "\ta -- b\n", &e);
    assert_non_null(m);
    char out[400];
    snprintf(out, sizeof out, "%s/m.json", cli_tmp);
    assert_int_equal(pp_import_save(m, "pipedream", path_in, 128, out, &e), 0);
    pp_model *r = pp_model_load(out, &e);
    if (!r)
        fail_msg("%s", e.msg);
    assert_int_equal(pp_model_nops(r), 2);
    assert_true(op_of(r, "b")->measured.fwd_s == 0.001);
    assert_true(op_of(r, "b")->act_bytes == 8.0 / 128);
    pp_model_free(r);
    assert_true(cli_contains(out, "\"format\": \"pipedream\""));
    /* a failed write leaves no file and no .tmp */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/nodir/m.json", cli_tmp);
    assert_true(pp_import_save(m, "pipedream", path_in, 128, bad, &e) != 0);
    struct stat sb;
    assert_true(stat(bad, &sb) != 0);
    pp_model_free(m);
}

/* The verb: a bad input leaves an existing -o untouched. */
static void test_cli(void **st)
{
    (void)st;
    write_in(NODE("a") NODE("b") "\ta -- b\n");
    char out[400];
    snprintf(out, sizeof out, "%s/cli.json", cli_tmp);
    assert_int_equal(cli_sh("%s pipeline import --format pipedream %s -o %s --json", cli_bin,
                            path_in, out),
                     0);
    json_t *j = cli_json();
    assert_int_equal(json_integer_value(json_object_get(j, "ops")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "edges")), 1);
    json_decref(j);
    cli_write(out, "KEEP");
    write_in(NODE("a") "\ta -- zz\n");
    assert_int_equal(cli_sh("%s pipeline import --format pipedream %s -o %s", cli_bin, path_in,
                            out),
                     PS_EINPUT);
    assert_true(cli_err_has(":2:"));
    assert_true(cli_err_has("unknown node id 'zz'"));
    assert_true(cli_contains(out, "KEEP"));
    assert_int_equal(cli_sh("%s pipeline import %s -o %s", cli_bin, path_in, out), PS_EINPUT);
    assert_int_equal(cli_sh("%s pipeline import --format tf %s -o %s", cli_bin, path_in, out),
                     PS_EINPUT);
}

/* Every peer profile imports; its node count is the file's node lines
 * minus the dropped ones, its parameters the file's sum. */
static void test_peer_profiles(void **st)
{
    (void)st;
    const char *dir = getenv("PS_PEERS_DIR");
    if (!dir)
        dir = "../shared/peers";
    static const char *const names[] = {"alexnet", "vgg16", "resnet18", "resnet50", "resnet101",
                                        "resnext50", "squeezenet1_0", "inception_v3",
                                        "nasnetamobile", "gnmt", "gnmt_large"};
    int done = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/pipedream-profiles/%s.graph.txt", dir, names[i]);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        /* independent count: node lines, Input sources, parameter sum */
        static char line[1 << 16];
        int nodes = 0, inputs = 0, getitems = 0;
        double par = 0;
        while (fgets(line, sizeof line, f)) {
            if (line[0] == '\t' || line[0] == '\n')
                continue;
            nodes++;
            if (strstr(line, " -- Input"))
                inputs++;
            if (strstr(line, " -- __getitem__"))
                getitems++;
            const char *q = strstr(line, "parameter_size=");
            if (q && !strstr(line, " -- Input"))
                par += atof(q + 15);
        }
        fclose(f);
        ps_err e = {0};
        pp_model *m = pp_import_pipedream(p, NULL, &e);
        if (!m)
            fail_msg("%s", e.msg);
        assert_string_equal(pp_model_name(m), names[i]);
        int dropped_sinks = nodes - inputs - pp_model_nops(m);
        assert_true(dropped_sinks >= 0 && dropped_sinks <= getitems);
        if (!getitems)
            assert_int_equal(dropped_sinks, 0);
        double got = pp_model_param_bytes(m);
        assert_true(fabs(got - par) <= 1e-9 * par + 1);
        pp_model_free(m);
        done++;
    }
    if (!done)
        fprintf(stderr, "    (peer profiles not found under %s: skipped)\n", dir);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_liberal),    cmocka_unit_test(test_drop_rules),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_save_roundtrip),
        cmocka_unit_test(test_cli),        cmocka_unit_test(test_peer_profiles),
    };
    return cmocka_run_group_tests(t, cli_setup, cli_teardown);
}
