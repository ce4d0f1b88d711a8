/* profile/: op descriptors (parsing, validation messages, closed forms),
 * suites (grids, ties, sampling, errors), the CPU backend end to end into a
 * database that reads back identically, database reader errors, and the
 * `plansim profile run` CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/json.h"
#include "common/table.h"
#include "common/util.h"
#include "profile/cpu_backend.h"
#include "profile/db.h"
#include "profile/opdesc.h"
#include "profile/suite.h"
#include "profile/timer.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/plansim_test_profile_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

#define EQ(a, b) eq_d((a), (b), #a, __LINE__)
static void eq_d(double a, double b, const char *what, int line)
{
    double tol = 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}

static int parse_op(const char *text, ps_op *op, ps_err *e)
{
    json_t *j = ps_json_load_str(text, "--op", e);
    if (!j)
        return e->code;
    int rc = ps_op_from_json(j, "--op", op, e);
    json_decref(j);
    return rc;
}

/* Parsing must fail with PS_EINPUT and a message containing `needle`. */
static void op_err(const char *text, const char *needle)
{
    ps_op op;
    ps_err e = {0};
    int rc = parse_op(text, &op, &e);
    if (rc != PS_EINPUT)
        fail_msg("%s: rc %d, expected PS_EINPUT", text, rc);
    if (!strstr(e.msg, needle))
        fail_msg("%s: message '%s' lacks '%s'", text, e.msg, needle);
}

/* ------------------------------------------------------------ opdesc */

static void test_op_parse(void **state)
{
    (void)state;
    ps_op op;
    ps_err e = {0};
    assert_int_equal(parse_op("{\"kind\":\"gemm\",\"m\":512,\"n\":256,\"k\":128}", &op, &e), 0);
    assert_string_equal(op.kind, "gemm");
    assert_string_equal(op.dtype, "fp32");
    assert_string_equal(op.variant, "nn");
    assert_int_equal(op.d[0], 512);
    assert_int_equal(op.d[1], 256);
    assert_int_equal(op.d[2], 128);
    assert_int_equal(ps_op_dim(&op, "k"), 128);
    char s[128];
    ps_op_shape_str(&op, s, sizeof s);
    assert_string_equal(s, "m=512,n=256,k=128");

    /* conv2d defaults: stride 1, pad 0 */
    assert_int_equal(parse_op("{\"kind\":\"conv2d\",\"n\":1,\"c\":3,\"h\":8,\"w\":8,\"k\":4,"
                              "\"r\":3,\"s\":3}",
                              &op, &e),
                     0);
    assert_int_equal(op.d[7], 1);
    assert_int_equal(op.d[8], 0);
    assert_string_equal(op.variant, "fwd");

    /* round trip through JSON */
    assert_int_equal(parse_op("{\"kind\":\"attention\",\"b\":2,\"h\":4,\"sq\":1,\"skv\":99,"
                              "\"d\":64,\"variant\":\"tree\",\"dtype\":\"bf16\"}",
                              &op, &e),
                     0);
    json_t *j = ps_op_to_json(&op);
    ps_op back;
    assert_int_equal(ps_op_from_json(j, "$", &back, &e), 0);
    assert_true(ps_op_equal(&op, &back));
    json_decref(j);

    /* extra keys only where the caller allows them */
    op_err("{\"kind\":\"gemm\",\"m\":1,\"n\":1,\"k\":1,\"phase\":\"fwd\"}", "--op.phase");
    json_t *jp = ps_json_load_str("{\"kind\":\"gemm\",\"m\":1,\"n\":1,\"k\":1,\"phase\":\"x\"}",
                                  "t", &e);
    const char *extra[] = {"phase", NULL};
    assert_int_equal(ps_op_from_json_ex(jp, "$", extra, &op, &e), 0);
    json_decref(jp);
}

static void test_op_errors(void **state)
{
    (void)state;
    op_err("{\"kind\":\"gemmm\",\"m\":1,\"n\":1,\"k\":1}", "--op.kind: unknown op kind 'gemmm'");
    op_err("{\"m\":1}", "--op.kind: missing");
    op_err("{\"kind\":\"gemm\",\"m\":0,\"n\":1,\"k\":1}", "--op.m: must be an integer >= 1, got 0");
    op_err("{\"kind\":\"gemm\",\"m\":4,\"n\":-3,\"k\":1}", "--op.n: must be an integer >= 1, got -3");
    op_err("{\"kind\":\"gemm\",\"m\":4,\"n\":3}", "--op.k: missing");
    op_err("{\"kind\":\"gemm\",\"m\":4,\"n\":3,\"k\":2.5}", "--op.k: expected an integer");
    op_err("{\"kind\":\"gemm\",\"m\":4,\"n\":3,\"k\":2,\"dtype\":\"fp33\"}", "--op.dtype");
    op_err("{\"kind\":\"attention\",\"b\":1,\"h\":1,\"sq\":1,\"skv\":1,\"d\":1,\"variant\":\"x\"}",
           "--op.variant");
    op_err("{\"kind\":\"attention\",\"b\":1,\"h\":1,\"sq\":9,\"skv\":4,\"d\":1}", "--op.sq");
    op_err("{\"kind\":\"conv2d\",\"n\":1,\"c\":1,\"h\":2,\"w\":8,\"k\":1,\"r\":5,\"s\":1}",
           "--op.r");
    op_err("{\"kind\":\"conv2d\",\"n\":1,\"c\":1,\"h\":8,\"w\":8,\"k\":1,\"r\":3,\"s\":3,"
           "\"pad\":-1}",
           "--op.pad: must be an integer >= 0");
    op_err("{\"kind\":\"memcpy\",\"bytes\":0}", "--op.bytes");
    op_err("[1,2]", "expected an op object");
    assert_false(ps_op_kind_valid("conv3d"));
    assert_true(ps_op_kind_valid("embedding_bag"));
}

static ps_op mk(const char *kind, const char *dtype, const char *variant, int64_t a, int64_t b,
                int64_t c, int64_t d, int64_t f)
{
    ps_op op;
    ps_err e = {0};
    int64_t dims[5] = {a, b, c, d, f};
    int nd = ps_op_ndims(kind);
    if (ps_op_make(&op, kind, dtype, variant, dims, nd < 5 ? nd : 5, &e))
        fail_msg("ps_op_make %s: %s", kind, e.msg);
    return op;
}

static void test_op_closed_forms(void **state)
{
    (void)state;
    ps_op g = mk("gemm", "fp32", NULL, 512, 256, 128, 0, 0);
    EQ(ps_op_flops(&g), 2.0 * 512 * 256 * 128);
    EQ(ps_op_bytes(&g), 4.0 * (512 * 128 + 128 * 256 + 512 * 256));
    ps_op g64 = mk("gemm", "fp64", NULL, 3, 5, 7, 0, 0);
    EQ(ps_op_bytes(&g64), 8.0 * (21 + 35 + 15));
    ps_op g4 = mk("gemm", "int4", NULL, 4, 4, 4, 0, 0);
    EQ(ps_op_bytes(&g4), 0.5 * 48);
    ps_op bg = mk("batched_gemm", "fp16", NULL, 3, 4, 5, 6, 0);
    EQ(ps_op_flops(&bg), 2.0 * 3 * 4 * 5 * 6);
    EQ(ps_op_bytes(&bg), 2.0 * 3 * (4 * 6 + 6 * 5 + 4 * 5));

    /* attention: causal prefill counts L(L+1)/2 pairs, decode skv pairs */
    ps_op an = mk("attention", "fp32", "none", 2, 4, 16, 16, 64);
    EQ(ps_op_flops(&an), 4.0 * 2 * 4 * 16 * 16 * 64);
    ps_op ac = mk("attention", "fp32", "causal", 2, 4, 16, 16, 64);
    EQ(ps_op_flops(&ac), 4.0 * 2 * 4 * (16 * 17 / 2) * 64);
    ps_op ad = mk("attention", "fp32", "causal", 1, 1, 1, 100, 8);
    EQ(ps_op_flops(&ad), 4.0 * 100 * 8);
    EQ(ps_op_bytes(&ad), 4.0 * (2 * 1 * 8 + 2 * 100 * 8));
    ps_op at = mk("attention", "fp32", "tree", 1, 2, 10, 30, 8);
    EQ(ps_op_flops(&at), 4.0 * 2 * 10 * 30 * 8);
    EQ(ps_op_bytes(&at), 4.0 * 2 * (2 * 10 * 8 + 2 * 30 * 8) + 10 * 30);

    /* conv2d: out 28x28 with same padding, stride 2 → 14x14 */
    ps_op cv;
    ps_err e = {0};
    int64_t cd[9] = {2, 16, 28, 28, 32, 3, 3, 2, 1};
    assert_int_equal(ps_op_make(&cv, "conv2d", NULL, NULL, cd, 9, &e), 0);
    assert_int_equal(ps_op_conv_out_h(&cv), 14);
    EQ(ps_op_flops(&cv), 2.0 * 2 * 32 * 14 * 14 * 16 * 9);
    EQ(ps_op_bytes(&cv), 4.0 * (2 * 16 * 28 * 28 + 32 * 16 * 9 + 2 * 32 * 14 * 14));

    ps_op ew = mk("elementwise", "fp32", "add", 1000, 0, 0, 0, 0);
    EQ(ps_op_flops(&ew), 1000);
    EQ(ps_op_bytes(&ew), 12000);
    ps_op eg = mk("elementwise", "fp16", "gelu", 1000, 0, 0, 0, 0);
    EQ(ps_op_flops(&eg), 8000);
    EQ(ps_op_bytes(&eg), 4000);

    ps_op rs = mk("reduction", "fp32", "softmax", 10, 100, 0, 0, 0);
    EQ(ps_op_flops(&rs), 5000);
    EQ(ps_op_bytes(&rs), 8000);
    ps_op rl = mk("reduction", "fp32", "layernorm", 10, 100, 0, 0, 0);
    EQ(ps_op_bytes(&rl), 8000 + 800);
    ps_op rsum = mk("reduction", "fp32", "sum", 10, 100, 0, 0, 0);
    EQ(ps_op_bytes(&rsum), 4000 + 40);

    ps_op eb = mk("embedding_bag", "fp32", NULL, 1000, 64, 8, 32, 0);
    EQ(ps_op_flops(&eb), 32.0 * 8 * 64);
    EQ(ps_op_bytes(&eb), 4.0 * 32 * 8 * 64 + 8.0 * 32 * 8 + 4.0 * 32 * 64);

    ps_op mh = mk("memcpy", NULL, "host", 1 << 20, 0, 0, 0, 0);
    EQ(ps_op_flops(&mh), 0);
    EQ(ps_op_bytes(&mh), 2.0 * (1 << 20));
    ps_op mp = mk("memcpy", NULL, "h2d", 1 << 20, 0, 0, 0, 0);
    EQ(ps_op_bytes(&mp), 1 << 20);
}

/* ------------------------------------------------------------ suite */

static ps_suite *suite_ok(const char *text)
{
    ps_err e = {0};
    ps_suite *s = ps_suite_load_str(text, "suite", &e);
    if (!s)
        fail_msg("suite rejected: %s", e.msg);
    return s;
}

static void suite_err(const char *text, const char *needle)
{
    ps_err e = {0};
    ps_suite *s = ps_suite_load_str(text, "suite.json", &e);
    if (s) {
        ps_suite_free(s);
        fail_msg("suite accepted, expected an error with '%s'", needle);
    }
    assert_int_equal(e.code, PS_EINPUT);
    if (!strstr(e.msg, needle))
        fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_suite_grid(void **state)
{
    (void)state;
    ps_suite *s = suite_ok(
        "{\"name\":\"t\",\"repeats\":3,\"min_time_s\":0.001,\"ops\":["
        "{\"kind\":\"gemm\",\"dtype\":[\"fp32\",\"fp64\"],\"grid\":{\"m\":[8,16],\"n\":4,"
        "\"k\":{\"log\":[2,32,3]}}},"
        "{\"kind\":\"attention\",\"variant\":[\"causal\",\"none\"],\"repeats\":7,"
        "\"grid\":{\"b\":1,\"h\":2,\"sq\":[4,8],\"skv\":\"sq\",\"d\":16}},"
        "{\"kind\":\"gemm\",\"grid\":{\"m\":8,\"n\":4,\"k\":2}},"
        "{\"kind\":\"conv2d\",\"points\":[{\"n\":1,\"c\":2,\"h\":5,\"w\":5,\"k\":3,\"r\":3,"
        "\"s\":3,\"pad\":1}]}]}");
    /* 2 dtypes x 2 m x 3 k (2, 8, 32) + 2 variants x 2 sq; the third entry
     * repeats an op of the first and is measured once. */
    assert_int_equal(s->n, 12 + 4 + 1);
    assert_string_equal(s->name, "t");
    assert_int_equal(s->items[0].repeats, 3);
    /* shape-major order, dtypes within a shape */
    assert_int_equal(s->items[0].op.d[2], 2);
    assert_string_equal(s->items[0].op.dtype, "fp32");
    assert_string_equal(s->items[1].op.dtype, "fp64");
    assert_int_equal(s->items[2].op.d[2], 8);
    assert_int_equal(s->items[4].op.d[2], 32);
    const ps_suite_item *at = &s->items[12];
    assert_string_equal(at->op.kind, "attention");
    assert_int_equal(at->repeats, 7);
    assert_int_equal(at->op.d[2], at->op.d[3]); /* tie */
    assert_string_equal(s->items[16].op.kind, "conv2d");
    assert_int_equal(s->items[16].op.d[8], 1);
    assert_int_equal(s->items[16].op.d[7], 1);
    assert_true(ps_suite_estimate_s(s, 1e10, 1e10, 1e-6) > 0);
    ps_suite_free(s);

    /* cross-dim constraints drop points; max_flops too */
    s = suite_ok("{\"ops\":[{\"kind\":\"attention\",\"grid\":{\"b\":1,\"h\":1,\"sq\":[1,64],"
                 "\"skv\":[32,128],\"d\":8}},"
                 "{\"kind\":\"gemm\",\"grid\":{\"m\":[1,1000],\"n\":1000,\"k\":1000},"
                 "\"max_flops\":1e8}]}");
    assert_int_equal(s->n, 3 + 1);
    ps_suite_free(s);

    /* sampling: count points, reproducible, inside the range, multiples */
    const char *smp = "{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":{\"log\":[16,1024]},"
                      "\"n\":[32,64],\"k\":{\"lin\":[8,200,2]}},"
                      "\"sample\":{\"count\":25,\"seed\":3,\"multiple\":8}}]}";
    ps_suite *a = suite_ok(smp), *b = suite_ok(smp);
    assert_int_equal(a->n, 25);
    for (size_t i = 0; i < a->n; i++) {
        assert_true(ps_op_equal(&a->items[i].op, &b->items[i].op));
        const int64_t *d = a->items[i].op.d;
        assert_true(d[0] >= 16 && d[0] <= 1024 && d[0] % 8 == 0);
        assert_true(d[1] == 32 || d[1] == 64);
        assert_true(d[2] >= 8 && d[2] <= 200 && d[2] % 8 == 0);
    }
    ps_suite_free(a);
    ps_suite_free(b);
}

static void test_suite_errors(void **state)
{
    (void)state;
    suite_err("{\"ops\":[{\"kind\":\"gemmm\",\"grid\":{\"m\":1}}]}",
              "$.ops[0].kind: unknown op kind 'gemmm'");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":[4,0],\"n\":1,\"k\":1}}]}",
              "$.ops[0].grid.m[1]: must be an integer >= 1, got 0");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":-2,\"n\":1,\"k\":1}}]}",
              "$.ops[0].grid.m: must be an integer >= 1, got -2");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":2,\"n\":1}}]}",
              "$.ops[0].grid.k: missing");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":2,\"n\":1,\"k\":1,\"q\":3}}]}",
              "$.ops[0].grid.q: gemm has no dim 'q'");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":2,\"n\":\"zz\",\"k\":1}}]}",
              "$.ops[0].grid.n");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"dtype\":\"fp99\",\"grid\":{\"m\":2,\"n\":1,"
              "\"k\":1}}]}",
              "$.ops[0].dtype[0]: not a valid dtype");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"points\":[{\"m\":1,\"n\":0,\"k\":1}]}]}",
              "$.ops[0].points[0].n: must be an integer >= 1, got 0");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":1,\"n\":1,\"k\":1},"
              "\"points\":[]}]}",
              "exactly one of");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":1000,\"n\":1000,\"k\":1000},"
              "\"max_flops\":10}]}",
              "no valid op point");
    suite_err("{\"opz\":[]}", "$.opz: unknown field");
    suite_err("{\"ops\":[]}", "the suite has no ops");
    suite_err("{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":1,\"n\":1,\"k\":1}}],"
              "\"repeats\":0}",
              "$.repeats");
    suite_err("{\"ops\": [", "suite.json:1:");
    ps_err e = {0};
    assert_null(ps_suite_load_file("/nonexistent/suite.json", &e));
    assert_int_equal(e.code, PS_EINPUT);
}

/* ------------------------------------------------------------ timer */

static void test_stats_and_timer(void **state)
{
    (void)state;
    double v[5] = {5, 1, 4, 2, 3};
    ps_stats st;
    ps_stats_compute(v, 5, &st);
    assert_int_equal(st.repeats, 5);
    EQ(st.median_s, 3);
    EQ(st.min_s, 1);
    EQ(st.mean_s, 3);
    EQ(st.p10_s, 1.4);
    EQ(st.p90_s, 4.6);
    double one = 7;
    ps_stats_compute(&one, 1, &st);
    EQ(st.p10_s, 7);
    EQ(st.p90_s, 7);
    double t0 = ps_timer_now_s();
    assert_true(ps_timer_now_s() >= t0);
    assert_true(ps_timer_resolution_s() < 1e-3);
    ps_err e = {0};
    assert_int_equal(ps_timer_pin(0, &e), 0);
    ps_timer_unpin();
    assert_int_equal(ps_timer_pin(100000, &e), PS_EINPUT);
    assert_int_equal(ps_timer_pin(-1, &e), 0);
}

/* ------------------------------------------------------------ backend + DB */

static const char *TINY =
    "{\"name\":\"tiny\",\"warmup\":1,\"repeats\":3,\"min_time_s\":0.0002,"
    "\"peaks\":{\"gemm_n\":64,\"memcpy_bytes\":65536},\"ops\":["
    "{\"kind\":\"gemm\",\"dtype\":[\"fp32\",\"fp64\"],\"variant\":[\"nn\",\"tn\"],"
    "\"grid\":{\"m\":[8,24],\"n\":16,\"k\":8}},"
    "{\"kind\":\"batched_gemm\",\"grid\":{\"b\":3,\"m\":8,\"n\":8,\"k\":8}},"
    "{\"kind\":\"attention\",\"variant\":[\"causal\",\"none\",\"tree\"],"
    "\"grid\":{\"b\":1,\"h\":2,\"sq\":[1,16],\"skv\":16,\"d\":8}},"
    "{\"kind\":\"conv2d\",\"variant\":[\"fwd\",\"bwd_input\",\"bwd_weight\"],"
    "\"grid\":{\"n\":1,\"c\":2,\"h\":6,\"w\":6,\"k\":3,\"r\":3,\"s\":3,\"pad\":1}},"
    "{\"kind\":\"elementwise\",\"variant\":[\"relu\",\"gelu\",\"add\",\"mul\",\"tanh\","
    "\"sigmoid\"],\"grid\":{\"n\":100}},"
    "{\"kind\":\"reduction\",\"variant\":[\"softmax\",\"layernorm\",\"sum\"],"
    "\"grid\":{\"rows\":4,\"cols\":32}},"
    "{\"kind\":\"embedding_bag\",\"variant\":[\"sum\",\"mean\"],"
    "\"grid\":{\"rows\":50,\"dim\":8,\"bag\":3,\"batch\":4}},"
    "{\"kind\":\"memcpy\",\"variant\":\"host\",\"grid\":{\"bytes\":[64,4096]}}]}";

static void test_measure_op(void **state)
{
    (void)state;
    ps_op op = mk("gemm", "fp32", NULL, 32, 32, 32, 0, 0);
    ps_stats st;
    ps_err e = {0};
    assert_int_equal(ps_cpu_measure_op(&op, 1, 5, 0.0005, &st, &e), 0);
    assert_int_equal(st.repeats, 5);
    assert_true(st.min_s > 0 && st.min_s <= st.p10_s && st.p10_s <= st.median_s &&
                st.median_s <= st.p90_s);
    assert_string_equal(ps_cpu_op_backend(&op), "openblas");

    /* what the CPU backend cannot run is an input error naming the op */
    ps_op h = mk("gemm", "fp16", NULL, 8, 8, 8, 0, 0);
    assert_int_equal(ps_cpu_op_supported(&h, "op 3", &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "fp16"));
    ps_op d2d = mk("memcpy", NULL, "d2d", 64, 0, 0, 0, 0);
    assert_int_equal(ps_cpu_measure_op(&d2d, 0, 1, 0, &st, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "CUDA"));
    ps_op huge = mk("memcpy", NULL, "host", (int64_t)1 << 40, 0, 0, 0, 0);
    assert_int_equal(ps_cpu_op_supported(&huge, "op", &e), PS_EINPUT);
}

static void test_run_and_read_back(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "tiny.h5");
    ps_err e = {0};
    ps_suite *s = ps_suite_load_str(TINY, "tiny", &e);
    assert_non_null(s);
    ps_db_meta m = {"cpu", "test cpu", s->text, 1, -1};
    ps_db_writer *w = ps_db_writer_open(path, &m, 0, &e);
    assert_non_null(w);
    ps_cpu_profile_opts o = {.threads = 1, .pin_core = -1};
    int rc = ps_profile_run_cpu(s, &o, w, &e);
    if (rc)
        fail_msg("run: %s", e.msg);
    assert_int_equal(ps_db_writer_nops(w), s->n);
    assert_int_equal(ps_db_writer_commit(w, &e), 0);
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", path);
    assert_false(ps_file_exists(partial));

    ps_db *db = NULL;
    rc = ps_db_open(path, &db, &e);
    if (rc)
        fail_msg("open: %s", e.msg);
    assert_int_equal(ps_db_nops(db), s->n);
    for (size_t i = 0; i < s->n; i++) {
        const ps_db_row *r = ps_db_op_at(db, i);
        assert_int_equal(r->id, (int64_t)i);
        assert_true(ps_op_equal(&r->op, &s->items[i].op));
        EQ(r->flops, ps_op_flops(&s->items[i].op));
        EQ(r->bytes, ps_op_bytes(&s->items[i].op));
        assert_int_equal(r->repeats, 3);
        assert_true(r->median_s > 0 && r->p10_s <= r->median_s && r->median_s <= r->p90_s);
        assert_true(r->min_s <= r->p10_s && r->mean_s > 0);
        assert_string_equal(r->timer, "clock");
        assert_string_equal(r->backend, ps_cpu_op_backend(&r->op));
        assert_true(isnan(r->event_median_s));
        assert_ptr_equal(ps_db_find(db, &s->items[i].op), r);
    }
    ps_op absent = mk("gemm", "fp32", NULL, 999, 1, 1, 0, 0);
    assert_null(ps_db_find(db, &absent));
    double v;
    assert_int_equal(ps_db_peak_get(db, PS_PEAK_GEMM_FP32, &v), 0);
    assert_true(v > 1e6);
    assert_int_equal(ps_db_peak_get(db, PS_PEAK_MEMCPY, &v), 0);
    assert_true(v > 1e6);
    assert_int_equal(ps_db_peak_get(db, PS_PEAK_CORES, &v), 0);
    assert_int_equal((int)v, ps_timer_ncpus());
    assert_int_equal(ps_db_peak_get(db, "no_such_peak", &v), -1);
    assert_string_equal(ps_db_attr(db, "format"), PS_DB_FORMAT);
    assert_string_equal(ps_db_attr(db, "device_kind"), "cpu");
    assert_string_equal(ps_db_attr(db, "device_name"), "test cpu");
    assert_string_equal(ps_db_attr(db, "suite"), s->text);
    assert_int_equal(ps_db_threads(db), 1);
    assert_int_equal(ps_db_pinned_core(db), -1);
    assert_int_equal(ps_db_nkernels(db), 0);
    ps_db_close(db);

    /* units and columns as documented, through the generic table reader */
    hid_t f = ps_h5_open_read(path, &e);
    assert_true(f >= 0);
    ps_table *t = NULL;
    assert_int_equal(ps_h5_table_read(f, "/ops", &t, &e), 0);
    assert_int_equal(t->nrows, s->n);
    const char *cols[] = {"op",     "kind",     "dtype", "variant", "d0",    "d9",
                          "shape",  "flops",    "bytes", "backend", "repeats",
                          "median_s", "p10_s",  "p90_s", "min_s",   "mean_s", "timer"};
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++)
        if (ps_table_col(t, cols[i]) < 0)
            fail_msg("/ops lacks column %s", cols[i]);
    assert_string_equal(t->cols[ps_table_col(t, "median_s")].units, "s");
    assert_string_equal(t->cols[ps_table_col(t, "flops")].units, "flop");
    assert_string_equal(t->cols[ps_table_col(t, "bytes")].units, "B");
    assert_int_equal(ps_table_col(t, "event_median_s"), -1);
    ps_table_free(t);
    assert_int_equal(ps_h5_table_read(f, "/device/peaks", &t, &e), 0);
    assert_true(t->nrows >= 8);
    ps_table_free(t);
    H5Fclose(f);

    /* no silent overwrite */
    assert_null(ps_db_writer_open(path, &m, 0, &e));
    assert_int_equal(e.code, PS_EINPUT);
    ps_suite_free(s);
}

static void test_db_cuda_tables(void **state)
{
    (void)state;
    /* The GPU backend's tables, written and read without a GPU. */
    char path[512];
    tmp_path(path, sizeof path, "gpu.h5");
    ps_err e = {0};
    ps_db_meta m = {"cuda", "Fake GPU", "{}", 0, -1};
    ps_db_writer *w = ps_db_writer_open(path, &m, 0, &e);
    assert_non_null(w);
    ps_op op = mk("gemm", "fp16", NULL, 64, 64, 64, 0, 0);
    ps_stats st = {5, 1e-5, 0.9e-5, 1.2e-5, 0.8e-5, 1.05e-5};
    int64_t id = ps_db_writer_add_op(w, &op, "cublas", "cupti", &st, 1.1e-5, &e);
    assert_int_equal(id, 0);
    ps_db_kernel k = {0, 17, "sm90_xmma_gemm_f16f16_f32_long_kernel_name_exceeding_48_chars",
                      {4, 2, 1}, {128, 1, 1}, 96, 49152, 1000, 11000, 7};
    assert_int_equal(ps_db_writer_add_kernel(w, &k, &e), 0);
    k.correlation = 18;
    k.name = "elementwise";
    assert_int_equal(ps_db_writer_add_kernel(w, &k, &e), 0);
    assert_int_equal(ps_db_writer_add_tracer_overhead(w, 0, 1.1e-5, 1e-5, &e), 0);
    assert_int_equal(ps_db_writer_add_peak(w, PS_PEAK_SMS, 132, "", &e), 0);
    assert_int_equal(ps_db_writer_add_peak(w, PS_PEAK_SMS, 114, "", &e), 0); /* replaces */
    assert_int_equal(ps_db_writer_set_attr_int(w, "device_index", 0, &e), 0);
    assert_int_equal(ps_db_writer_commit(w, &e), 0);

    ps_db *db = NULL;
    if (ps_db_open(path, &db, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(ps_db_nops(db), 1);
    EQ(ps_db_op_at(db, 0)->event_median_s, 1.1e-5);
    assert_string_equal(ps_db_op_at(db, 0)->timer, "cupti");
    assert_int_equal(ps_db_nkernels(db), 2);
    ps_db_kernel r;
    assert_int_equal(ps_db_kernel_at(db, 0, &r), 0);
    assert_string_equal(r.name, k.name == NULL ? "" : "sm90_xmma_gemm_f16f16_f32_long_kernel_name_exceeding_48_chars");
    assert_int_equal(r.grid[0], 4);
    assert_int_equal(r.block[0], 128);
    assert_int_equal(r.shared_bytes, 49152);
    assert_int_equal(r.end_ns - r.start_ns, 10000);
    assert_int_equal(ps_db_kernel_at(db, 1, &r), 0);
    assert_string_equal(r.name, "elementwise");
    assert_int_equal(r.correlation, 18);
    double v;
    assert_int_equal(ps_db_peak_get(db, PS_PEAK_SMS, &v), 0);
    EQ(v, 114);
    assert_int_equal(ps_db_npeaks(db), 1);
    ps_db_close(db);
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void expect_db_error(const char *path, const char *needle)
{
    ps_db *db = NULL;
    ps_err e = {0};
    int rc = ps_db_open(path, &db, &e);
    assert_null(db);
    if (rc != PS_EINPUT)
        fail_msg("%s: rc %d (%s), expected PS_EINPUT", path, rc, e.msg);
    if (!strstr(e.msg, needle))
        fail_msg("%s: message '%s' lacks '%s'", path, e.msg, needle);
}

/* A small valid database for the error tests. */
static void make_db(const char *path)
{
    ps_err e = {0};
    ps_db_meta m = {"cpu", "x", "{}", 1, -1};
    ps_db_writer *w = ps_db_writer_open(path, &m, 1, &e);
    assert_non_null(w);
    ps_stats st = {1, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6};
    for (int i = 1; i <= 200; i++) {
        ps_op op = mk("gemm", "fp32", NULL, i, i, i, 0, 0);
        assert_true(ps_db_writer_add_op(w, &op, "openblas", "clock", &st, NAN, &e) >= 0);
    }
    assert_int_equal(ps_db_writer_commit(w, &e), 0);
}

static void test_db_reader_errors(void **state)
{
    (void)state;
    char good[512], trunc[512], foreign[512], text[512];
    tmp_path(good, sizeof good, "good.h5");
    tmp_path(trunc, sizeof trunc, "trunc.h5");
    tmp_path(foreign, sizeof foreign, "foreign.h5");
    tmp_path(text, sizeof text, "text.h5");
    make_db(good);

    expect_db_error("/nonexistent/x.h5", "no such file");
    write_file(text, "hello, not hdf5\n", 16);
    expect_db_error(text, "not an HDF5 file");

    size_t len;
    ps_err e = {0};
    char *data = ps_file_read(good, &len, &e);
    assert_non_null(data);
    for (size_t cut = len / 2; cut >= 1024; cut /= 2) {
        write_file(trunc, data, cut);
        ps_db *db = NULL;
        assert_int_equal(ps_db_open(trunc, &db, &e), PS_EINPUT);
        assert_null(db);
    }
    free(data);

    /* a valid HDF5 file that is something else */
    hid_t f = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    ps_table *t = ps_table_new();
    ps_table_add_col(t, "x", PS_COL_DOUBLE, "m");
    ps_table_set_d(t, ps_table_add_row(t), 0, 1.5);
    assert_int_equal(ps_h5_table_write(f, "/ops", t, &e), 0);
    ps_table_free(t);
    H5Fclose(f);
    expect_db_error(foreign, "not a plansim profile database");

    /* right format attribute, wrong version / no table */
    f = H5Fopen(foreign, H5F_ACC_RDWR, H5P_DEFAULT);
    ps_h5_attr_set_str(f, "/", "format", PS_DB_FORMAT, &e);
    ps_h5_attr_set_int(f, "/", "format_version", 99, &e);
    H5Fclose(f);
    expect_db_error(foreign, "newer");
    f = H5Fopen(foreign, H5F_ACC_RDWR, H5P_DEFAULT);
    ps_h5_attr_set_int(f, "/", "format_version", 1, &e);
    H5Fclose(f);
    expect_db_error(foreign, "no column 'op'");
}

/* ------------------------------------------------------------ CLI */

static const char *plansim_bin(void)
{
    const char *b = getenv("PLANSIM_BIN");
    return b && *b ? b : "build/plansim";
}

static int run_cmd(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    if (access(plansim_bin(), X_OK) != 0)
        skip();
    char suite[512], db[512], out[512], cmd[4096];
    tmp_path(suite, sizeof suite, "tiny.json");
    tmp_path(db, sizeof db, "cli.h5");
    tmp_path(out, sizeof out, "cli.json");
    const char *small = "{\"name\":\"clitiny\",\"repeats\":2,\"min_time_s\":0.0001,"
                        "\"peaks\":{\"gemm_n\":32,\"memcpy_bytes\":65536},\"ops\":["
                        "{\"kind\":\"gemm\",\"grid\":{\"m\":[4,8],\"n\":4,\"k\":4}},"
                        "{\"kind\":\"memcpy\",\"variant\":\"host\",\"grid\":{\"bytes\":256}}]}";
    write_file(suite, small, strlen(small));
    snprintf(cmd, sizeof cmd, "%s profile run --device cpu --suite %s -o %s --json > %s",
             plansim_bin(), suite, db, out);
    assert_int_equal(run_cmd(cmd), 0);
    ps_err e = {0};
    json_t *j = ps_json_load_file(out, &e);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "ops")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "db")), db);
    assert_true(json_real_value(json_object_get(json_object_get(j, "peaks"),
                                                PS_PEAK_GEMM_FP32)) > 0);
    json_decref(j);
    ps_db *d = NULL;
    assert_int_equal(ps_db_open(db, &d, &e), 0);
    assert_int_equal(ps_db_nops(d), 3);
    ps_db_close(d);

    /* existing output without --force: exit 2; with --force: replaced */
    snprintf(cmd, sizeof cmd, "%s profile run --suite %s -o %s 2>/dev/null", plansim_bin(),
             suite, db);
    assert_int_equal(run_cmd(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s profile run --suite %s -o %s --force >/dev/null 2>&1",
             plansim_bin(), suite, db);
    assert_int_equal(run_cmd(cmd), 0);

    /* bad input: exit 2 */
    const char *bad[] = {"--device tpu", "--threads 0", "--quick --suite x.json", "",
                         "--pin 0 --threads 2", "--suite /nonexistent.json"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "%s profile run %s %s %s/bad.h5 2>/dev/null", plansim_bin(),
                 bad[i], i == 3 ? "" : "-o", tmpdir);
        if (run_cmd(cmd) != 2)
            fail_msg("'%s' did not exit 2", cmd);
    }
    const char *badsuite = "{\"ops\":[{\"kind\":\"gemm\",\"grid\":{\"m\":0,\"n\":1,\"k\":1}}]}";
    write_file(suite, badsuite, strlen(badsuite));
    snprintf(cmd, sizeof cmd, "%s profile run --suite %s -o %s/bad.h5 2>%s", plansim_bin(),
             suite, tmpdir, out);
    assert_int_equal(run_cmd(cmd), 2);
    size_t len;
    char *msg = ps_file_read(out, &len, &e);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "$.ops[0].grid.m: must be an integer >= 1, got 0"));
    free(msg);
    const char *fp16 = "{\"ops\":[{\"kind\":\"gemm\",\"dtype\":\"fp16\","
                       "\"grid\":{\"m\":1,\"n\":1,\"k\":1}}]}";
    write_file(suite, fp16, strlen(fp16));
    snprintf(cmd, sizeof cmd, "%s profile run --suite %s -o %s/bad.h5 2>/dev/null",
             plansim_bin(), suite, tmpdir);
    assert_int_equal(run_cmd(cmd), 2);
    char badh5[600];
    snprintf(badh5, sizeof badh5, "%s/bad.h5", tmpdir);
    assert_false(ps_file_exists(badh5));

#ifndef PS_HAVE_CUDA
    snprintf(cmd, sizeof cmd, "%s profile run --device cuda --suite %s -o %s/g.h5 2>%s",
             plansim_bin(), suite, tmpdir, out);
    assert_int_equal(run_cmd(cmd), 2);
    msg = ps_file_read(out, &len, &e);
    assert_non_null(strstr(msg, "without CUDA support"));
    free(msg);
#endif
    snprintf(cmd, sizeof cmd, "%s profile run --help >/dev/null", plansim_bin());
    assert_int_equal(run_cmd(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_parse),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_op_closed_forms),
        cmocka_unit_test(test_suite_grid),
        cmocka_unit_test(test_suite_errors),
        cmocka_unit_test(test_stats_and_timer),
        cmocka_unit_test(test_measure_op),
        cmocka_unit_test(test_run_and_read_back),
        cmocka_unit_test(test_db_cuda_tables),
        cmocka_unit_test(test_db_reader_errors),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
