/* The pipeline validation experiment (issue 5): Kendall's tau-b against
 * brute-force pair counting and hand-computed values, the relative-error
 * aggregates, the replay-sized generators (every GEMM's k is its input's
 * width, so the replay trains the graph as written), and the study: its
 * config validates, and a tiny run writes the summary fields. */
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

#include <hdf5.h>

#include "common/h5io.h"
#include "common/json.h"
#include "common/stats.h"
#include "common/table.h"
#include "experiments/runner.h"
#include "sim/pipeline/model.h"

static char tmpdir[256];

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pp_validation.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ tau */

static double tau_of(const double *x, const double *y, size_t n)
{
    ps_err e = {0};
    double t = -99;
    if (ps_kendall_tau_b(x, y, n, &t, &e))
        fail_msg("%s", e.msg);
    return t;
}

/* The definition, pair by pair. */
static double tau_brute(const double *x, const double *y, size_t n)
{
    long long c = 0, d = 0, tx = 0, ty = 0, n0 = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            n0++;
            double a = x[i] - x[j], b = y[i] - y[j];
            tx += a == 0;
            ty += b == 0;
            if (a * b > 0)
                c++;
            else if (a * b < 0)
                d++;
        }
    if (n0 == tx || n0 == ty)
        return NAN;
    return (double)(c - d) / sqrt((double)(n0 - tx) * (double)(n0 - ty));
}

static void test_tau_known(void **st)
{
    (void)st;
    double a[6] = {0.1, 0.5, 0.7, 2, 3, 10}, r[6] = {9, 8, 7, 6, 5, 4};
    assert_float_equal(tau_of(a, a, 6), 1.0, 1e-15);
    assert_float_equal(tau_of(a, r, 6), -1.0, 1e-15);
    /* Hand count: pairs (0,1) (0,2) (0,3) (2,3) concordant, (1,2) tied in
     * x, (1,3) tied in y: (4 - 0) / sqrt((6 - 1)(6 - 1)) = 0.8. */
    double x1[4] = {1, 2, 2, 3}, y1[4] = {1, 3, 2, 3};
    assert_float_equal(tau_of(x1, y1, 4), 0.8, 1e-15);
    /* No ties: y has 3 inversions (3>1, 3>2, 5>4): (7 - 3) / 10. */
    double x2[5] = {1, 2, 3, 4, 5}, y2[5] = {3, 1, 2, 5, 4};
    assert_float_equal(tau_of(x2, y2, 5), 0.4, 1e-15);
    /* A pair tied in both: x {1,1,2}, y {5,5,6}: n0 3, n1 = n2 = 1, C 2:
     * 2 / sqrt(2 x 2) = 1. */
    double x3[3] = {1, 1, 2}, y3[3] = {5, 5, 6};
    assert_float_equal(tau_of(x3, y3, 3), 1.0, 1e-15);
    /* Undefined: fewer than two pairs, or a constant vector. */
    double k[3] = {2, 2, 2};
    assert_true(isnan(tau_of(a, r, 1)));
    assert_true(isnan(tau_of(a, r, 0)));
    assert_true(isnan(tau_of(k, a, 3)));
    assert_true(isnan(tau_of(a, k, 3)));
    /* Non-finite values are input errors naming the index. */
    double bad[3] = {1, NAN, 2};
    ps_err e = {0};
    double t = 0;
    assert_int_equal(ps_kendall_tau_b(a, bad, 3, &t, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "value 1"));
    assert_true(isnan(t));
}

static void test_tau_brute_force(void **st)
{
    (void)st;
    unsigned s = 12345;
    double x[200], y[200];
    for (int trial = 0; trial < 300; trial++) {
        size_t n = (size_t)(trial % 60) + 2;
        if (trial % 50 == 49)
            n = 200;
        int levels = 2 + trial % 7; /* few levels: many ties */
        for (size_t i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            x[i] = (double)((s >> 16) % (unsigned)levels);
            s = s * 1103515245u + 12345u;
            /* correlated with x half the time */
            y[i] = trial % 2 ? x[i] + (double)((s >> 16) % 3) : (double)((s >> 16) % (unsigned)levels);
        }
        double a = tau_of(x, y, n), b = tau_brute(x, y, n);
        if (isnan(b))
            assert_true(isnan(a));
        else if (fabs(a - b) > 1e-12)
            fail_msg("trial %d (n %zu): tau %.17g, brute force %.17g", trial, n, a, b);
    }
}

static void test_rel_err(void **st)
{
    (void)st;
    double p[5] = {1.1, 0.9, 2.0, NAN, 5}, m[5] = {1.0, 1.0, 2.5, 1.0, 0};
    double mean, max;
    size_t used;
    ps_abs_rel_err(p, m, 5, &mean, &max, &used);
    assert_int_equal(used, 3);
    assert_float_equal(mean, (0.1 + 0.1 + 0.2) / 3, 1e-12);
    assert_float_equal(max, 0.2, 1e-12);
    ps_abs_rel_err(p, m, 0, &mean, &max, NULL);
    assert_true(isnan(mean) && isnan(max));
}

/* ------------------------------------------------------------------ generators */

/* Width (columns per row) and rows per sample of what op i hands on; every
 * GEMM's k must equal its input's width and its m the input's rows; an
 * elementwise op keeps its input's size; a concat of inputs with equal rows
 * has the summed width. */
static void check_chain(const pp_model *m, const char *what)
{
    int n = pp_model_nops(m);
    long long *w = calloc((size_t)n, sizeof *w), *rows = calloc((size_t)n, sizeof *rows);
    int gemms = 0;
    for (int i = 0; i < n; i++) {
        const pp_model_op *op = pp_model_op_at(m, i);
        long long in_w = 0, in_rows = 0;
        for (int j = 0; j < op->ninputs; j++) {
            int p = op->inputs[j];
            if (j && rows[p] != in_rows)
                fail_msg("%s: op %s: inputs with %lld and %lld rows", what, op->id, in_rows,
                         rows[p]);
            in_rows = rows[p];
            in_w += w[p];
        }
        const ps_op *parts = op->cls == PP_K_BLOCK ? op->parts : &op->shape;
        int np = op->cls == PP_K_BLOCK ? op->nparts : 1;
        if (op->cls == PP_K_INPUT) {
            /* the first consumer (a GEMM) says how the bytes split into rows */
            assert_true(op->nconsumers >= 1);
            const pp_model_op *c = pp_model_op_at(m, op->consumers[0]);
            const ps_op *g = c->cls == PP_K_BLOCK ? &c->parts[0] : &c->shape;
            assert_string_equal(g->kind, "gemm");
            rows[i] = g->d[0];
            w[i] = (long long)(op->out_bytes / 4) / rows[i];
            assert_true((double)(rows[i] * w[i] * 4) == op->out_bytes);
            continue;
        }
        if (op->cls == PP_K_CONCAT) {
            rows[i] = in_rows;
            w[i] = in_w;
            assert_true(op->out_bytes == (double)(4 * in_w * in_rows));
            continue;
        }
        assert_int_equal(op->ninputs, 1);
        long long r = in_rows, c = in_w;
        for (int k = 0; k < np; k++) {
            const ps_op *s = &parts[k];
            if (!strcmp(s->kind, "gemm")) {
                if (s->d[0] != r || s->d[2] != c)
                    fail_msg("%s: op %s part %d: gemm m %lld k %lld, input %lld x %lld", what,
                             op->id, k, (long long)s->d[0], (long long)s->d[2], r, c);
                c = s->d[1];
                gemms++;
            } else if (!strcmp(s->kind, "elementwise")) {
                if (s->d[0] != r * c)
                    fail_msg("%s: op %s part %d: elementwise n %lld, input %lld x %lld", what,
                             op->id, k, (long long)s->d[0], r, c);
            } else {
                fail_msg("%s: op %s: unexpected kind %s", what, op->id, s->kind);
            }
        }
        rows[i] = r;
        w[i] = c;
        assert_true(op->out_bytes == (double)(4 * r * c));
    }
    assert_true(gemms > 0);
    free(w);
    free(rows);
}

static pp_model *build(const char *name, const char *knobs)
{
    json_error_t je;
    json_t *k = knobs ? json_loads(knobs, 0, &je) : NULL;
    ps_err e = {0};
    pp_model *m = pp_model_builtin(name, k, &e);
    json_decref(k);
    if (!m)
        fail_msg("%s %s: %s", name, knobs ? knobs : "", e.msg);
    return m;
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
    static const char *const cases[][2] = {
        {"candle-uno-small", NULL},
        {"candle-uno-small", "{\"branches\": 4, \"layer_step\": 1, \"width_step\": 64}"},
        {"candle-uno-small", "{\"branches\": 1, \"top_layers\": 0, \"outputs\": 3}"},
        {"candle-uno-small", "{\"granularity\": \"op\", \"width_step\": 32, \"outputs\": 0}"},
        {"mmt-small", NULL},
        {"mmt-small", "{\"branches\": 2, \"layer_step\": 2, \"seq\": 8, \"features\": 24}"},
        {"mmt-small", "{\"granularity\": \"op\", \"branches\": 1}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[256];
        snprintf(what, sizeof what, "%s %s", cases[i][0], cases[i][1] ? cases[i][1] : "{}");
        pp_model *m = build(cases[i][0], cases[i][1]);
        check_chain(m, what);
        pp_model_free(m);
    }
    /* Structure of the defaults: candle 3 branches x (input + 2 layers),
     * concat, 2 trunk layers, head = 13 ops; branch b of layer_step 1 has
     * b more layers. */
    pp_model *m = build("candle-uno-small", NULL);
    assert_int_equal(pp_model_nops(m), 13);
    assert_int_equal(count_kind(m, "input"), 3);
    assert_int_equal(count_kind(m, "concat"), 1);
    const pp_model_op *head = pp_model_op_at(m, pp_model_find(m, "head"));
    assert_int_equal(head->shape.d[0], 1);
    assert_int_equal(head->shape.d[1], 1);
    assert_int_equal(head->shape.d[2], 256);
    assert_int_equal(pp_model_op_at(m, pp_model_find(m, "top.l0"))->parts[0].d[2], 3 * 256);
    pp_model_free(m);
    m = build("candle-uno-small", "{\"layer_step\": 1, \"width_step\": 64}");
    assert_true(pp_model_find(m, "enc2.l3") >= 0 && pp_model_find(m, "enc2.l4") < 0);
    assert_true(pp_model_find(m, "enc0.l1") >= 0 && pp_model_find(m, "enc0.l2") < 0);
    assert_int_equal(pp_model_op_at(m, pp_model_find(m, "enc2.l0"))->parts[0].d[1], 256 + 128);
    assert_int_equal(pp_model_op_at(m, pp_model_find(m, "top.l0"))->parts[0].d[2],
                     256 + 320 + 384);
    pp_model_free(m);
    /* mmt-small: 3 x (input, projection, 2 blocks), concat, head = 14. */
    m = build("mmt-small", NULL);
    assert_int_equal(pp_model_nops(m), 14);
    const pp_model_op *blk = pp_model_op_at(m, pp_model_find(m, "b1.l1"));
    assert_int_equal(blk->nparts, 3);
    assert_int_equal(blk->parts[0].d[0], 16);
    assert_string_equal(blk->parts[1].variant, "gelu");
    head = pp_model_op_at(m, pp_model_find(m, "head"));
    assert_int_equal(head->shape.d[2], 3 * 128);
    pp_model_free(m);
    /* Bad knobs. */
    ps_err e = {0};
    json_t *k = json_pack("{s:i}", "branches", 0);
    assert_null(pp_model_builtin("mmt-small", k, &e));
    assert_non_null(strstr(e.msg, "branches"));
    json_decref(k);
    k = json_pack("{s:i}", "heads", 2);
    assert_null(pp_model_builtin("candle-uno-small", k, &e));
    assert_non_null(strstr(e.msg, "unknown parameter \"heads\""));
    json_decref(k);
}

/* ------------------------------------------------------------------ the study */

/* The shipped config validates (parameters, every point's plan, figures)
 * in both modes: ps_run gets as far as creating the output folder, which
 * the test makes impossible (a file stands where the folder would go). */
static void test_config_validates(void **st)
{
    (void)st;
    char blocker[512], out[600];
    snprintf(blocker, sizeof blocker, "%s/blocker", tmpdir);
    FILE *f = fopen(blocker, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(out, sizeof out, "%s/sub/out.h5", blocker);
    for (int quick = 0; quick < 2; quick++) {
        ps_run_opts o = {.config_path = "experiments/pipeline_validation.json",
                         .out_path = out, .quick = quick, .no_plot = 1};
        ps_err e = {0};
        int rc = ps_run(&o, &e);
        assert_int_not_equal(rc, 0);
        if (!strstr(e.msg, "blocker"))
            fail_msg("quick %d: expected the output-folder error, got: %s", quick, e.msg);
    }
    /* A plan naming no stage for an op, and an unknown plan, are bad input
     * before anything runs. */
    static const char *const bad[][2] = {
        {"{\"p\": {\"model\": \"candle-uno-small\", \"stages\": [[\"enc0.*\"]]}}",
         "op \"enc1.in\" (model candle-uno-small) matches no stage"},
        {"{\"p\": {\"model\": \"mmt-small\", \"planner\": \"piper\", \"devices\": 2}}",
         "planner: \"piper\" (expected hand, graphpipe or pipedream)"},
        {"{\"p\": {\"model\": \"nope\", \"stages\": [[\"*\"]]}}", "unknown builtin model"},
        {"{\"p\": {\"model\": \"mmt-small\", \"stages\": [[\"*\"]], \"microbatches\": 5}}",
         "microbatches 5 must divide minibatch 64"},
        {"{\"p\": {\"model\": \"mmt-small\", \"stages\": [[\"*\"], [\"in0\"]]}}",
         "stages[1]: no op of model mmt-small is left for it"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cfg[1024], path[512];
        snprintf(cfg, sizeof cfg,
                 "{\"study\": \"pipeline_validation\", \"name\": \"bad\", \"fixed\": "
                 "{\"plans\": %s}, \"sweep\": {\"plan\": [\"p\"]}}",
                 bad[i][0]);
        snprintf(path, sizeof path, "%s/bad%zu.json", tmpdir, i);
        f = fopen(path, "w");
        fputs(cfg, f);
        fclose(f);
        ps_run_opts o = {.config_path = path, .out_path = out, .no_plot = 1};
        ps_err e = {0};
        assert_int_equal(ps_run(&o, &e), PS_EINPUT);
        if (!strstr(e.msg, bad[i][1]))
            fail_msg("case %zu: expected \"%s\" in: %s", i, bad[i][1], e.msg);
    }
}

/* Three tiny plans (one stage, a two-stage chain, a three-stage fork-join
 * on two workers), one iteration each: the summary has finite errors >= 0
 * and a tau in [-1, 1]; the per-plan table and the replay's detail tables
 * are there. */
static void test_tiny_run(void **st)
{
    (void)st;
    char cfg[2048], path[512], out[512];
    snprintf(cfg, sizeof cfg,
             "{\"study\": \"pipeline_validation\", \"name\": \"tiny\", \"fixed\": {"
             "\"models\": {\"c\": {\"model\": \"candle-uno-small\", \"knobs\": {\"branches\": 2, "
             "\"features\": 32, \"width\": 32, \"top_width\": 32, \"top_layers\": 1}}},"
             "\"plans\": {"
             "\"one\": {\"model\": \"c\", \"stages\": [[\"*\"]], \"microbatches\": 1},"
             "\"two\": {\"model\": \"c\", \"stages\": [[\"enc*\"], [\"*\"]]},"
             "\"fork\": {\"model\": \"c\", \"stages\": [[\"enc0.*\"], [\"enc1.*\"], [\"*\"]], "
             "\"schedule\": \"gpipe\"}},"
             "\"minibatch\": 8, \"microbatches\": 2, \"iterations\": 1, \"warmup\": 0},"
             "\"sweep\": {\"plan\": [\"one\", \"two\", \"fork\"]}}");
    snprintf(path, sizeof path, "%s/tiny.json", tmpdir);
    snprintf(out, sizeof out, "%s/tiny.h5", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(cfg, f);
    fclose(f);
    ps_run_opts o = {.config_path = path, .out_path = out, .no_plot = 1};
    ps_err e = {0};
    if (ps_run(&o, &e))
        fail_msg("%s", e.msg);
    hid_t h = ps_h5_open_read(out, &e);
    assert_true(h >= 0);
    ps_table *s = NULL, *pp = NULL, *pts = NULL;
    assert_int_equal(ps_h5_table_read(h, "/pipeline_validation/summary", &s, &e), 0);
    assert_int_equal(ps_h5_table_read(h, "/pipeline_validation/per_plan", &pp, &e), 0);
    assert_int_equal(ps_h5_table_read(h, "/pipeline_validation/points", &pts, &e), 0);
    assert_true(ps_h5_exists(h, "/pipeline_validation/tasks"));
    assert_true(ps_h5_exists(h, "/pipeline_validation/stages"));
    H5Fclose(h);
    int cn = ps_table_col(s, "name"), cv = ps_table_col(s, "value");
    assert_true(cn >= 0 && cv >= 0);
    double mean = NAN, max = NAN, tau = NAN, n = NAN;
    for (size_t r = 0; r < s->nrows; r++) {
        const char *nm = ps_table_get_s(s, r, cn);
        double v = ps_table_get_d(s, r, cv);
        if (!strcmp(nm, "mean_abs_rel_err"))
            mean = v;
        else if (!strcmp(nm, "max_abs_rel_err"))
            max = v;
        else if (!strcmp(nm, "kendall_tau"))
            tau = v;
        else if (!strcmp(nm, "n_plans"))
            n = v;
    }
    assert_true(n == 3);
    assert_true(isfinite(mean) && mean >= 0);
    assert_true(isfinite(max) && max >= mean);
    assert_true(isfinite(tau) && tau >= -1 && tau <= 1);
    assert_int_equal(pp->nrows, 3);
    assert_int_equal(pts->nrows, 3);
    int cst = ps_table_col(pts, "num_stages"), cg = ps_table_col(pts, "graph_pipeline");
    int cm = ps_table_col(pts, "measured_iteration_s"), cp = ps_table_col(pts, "predicted_iteration_s");
    double want_st[3] = {1, 2, 3}, want_g[3] = {0, 0, 1};
    for (size_t r = 0; r < 3; r++) {
        assert_true(ps_table_get_d(pts, r, cst) == want_st[r]);
        assert_true(ps_table_get_d(pts, r, cg) == want_g[r]);
        assert_true(ps_table_get_d(pts, r, cm) > 0 && ps_table_get_d(pts, r, cp) > 0);
    }
    ps_table_free(s);
    ps_table_free(pp);
    ps_table_free(pts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tau_known),
        cmocka_unit_test(test_tau_brute_force),
        cmocka_unit_test(test_rel_err),
        cmocka_unit_test(test_generators),
        cmocka_unit_test(test_config_validates),
        cmocka_unit_test(test_tiny_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
