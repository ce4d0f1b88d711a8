/* `plansim pipeline model` and `plansim pipeline sim` end to end: the
 * issue's acceptance commands, their JSON fields, traces, and usage errors
 * (exit status 2).  Runs $PLANSIM_BIN (tests/run.sh sets it) or
 * build/plansim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json.h"

static const char *bin;
static char tmpdir[256], out_txt[300], err_txt[300];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >%s 2>%s", out_txt, err_txt);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *out_json(void)
{
    json_error_t je;
    json_t *j = json_load_file(out_txt, 0, &je);
    if (!j)
        fail_msg("stdout is not JSON: %s", je.text);
    return j;
}

static int err_has(const char *needle)
{
    FILE *f = fopen(err_txt, "r");
    char buf[8192] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static int setup(void **st)
{
    (void)st;
    bin = getenv("PLANSIM_BIN");
    if (!bin)
        bin = "build/plansim";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pp_cli.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(out_txt, sizeof out_txt, "%s/stdout.txt", tmpdir);
    snprintf(err_txt, sizeof err_txt, "%s/stderr.txt", tmpdir);
    setenv("PLANSIM_QUIET", "1", 1);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static double num(const json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    if (!json_is_number(v))
        fail_msg("field %s missing or not a number", k);
    return json_number_value(v);
}

static void rel(double a, double b, const char *what)
{
    if (!(fabs(a - b) <= 1e-9 * fmax(fabs(b), 1e-300)))
        fail_msg("%s = %.17g, expected %.17g", what, a, b);
}

/* plansim pipeline sim --uniform ... --schedule gpipe|1f1b --json */
static void test_uniform_acceptance(void **st)
{
    (void)st;
    const char *sched[2] = {"gpipe", "1f1b"};
    int ps[3] = {1, 4, 8}, ms[3] = {1, 3, 16};
    for (int s = 0; s < 2; s++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                int p = ps[a], m = ms[b];
                double tf = 0.013, tb = 0.029;
                assert_int_equal(sh("%s pipeline sim --uniform --stages %d --microbatches %d "
                                    "--t-fwd %.17g --t-bwd %.17g --schedule %s --json",
                                    bin, p, m, tf, tb, sched[s]), 0);
                json_t *j = out_json();
                rel(num(j, "makespan_s"), (m + p - 1) * (tf + tb), "makespan_s");
                rel(num(j, "bubble_fraction"), (double)(p - 1) / (m + p - 1), "bubble_fraction");
                if (p > 1)
                    rel(num(j, "bubble_ratio"), (double)(p - 1) / m, "bubble_ratio");
                json_t *pk = json_object_get(j, "peak_inflight");
                assert_int_equal(json_array_size(pk), p);
                for (int i = 1; i <= p; i++) {
                    int want = s == 0 ? m : (m < p - i + 1 ? m : p - i + 1);
                    assert_int_equal(json_integer_value(json_array_get(pk, i - 1)), want);
                }
                json_decref(j);
            }
    /* interleaved and ZB-H1 beside their closed forms */
    assert_int_equal(sh("%s pipeline sim --uniform --stages 4 --microbatches 8 --t-fwd 1 "
                        "--t-bwd 2 --schedule interleaved --chunks 2 --json", bin), 0);
    json_t *j = out_json();
    rel(num(j, "bubble_ratio"), 3.0 / 16, "interleaved bubble_ratio");
    rel(num(j, "makespan_s"), num(json_object_get(j, "closed_form"), "makespan_s"), "interleaved");
    json_decref(j);
    assert_int_equal(sh("%s pipeline sim --uniform --stages 4 --microbatches 8 --t-fwd 1 "
                        "--t-bwd 2 --schedule zb-h1 --json", bin), 0);
    j = out_json();
    rel(num(j, "bubble_ratio"), 3.0 / 24, "zb-h1 bubble_ratio");
    json_t *pk = json_object_get(j, "peak_inflight");
    for (int i = 0; i < 4; i++)
        assert_int_equal(json_integer_value(json_array_get(pk, i)), 4);
    json_decref(j);
    /* usage errors */
    assert_int_equal(sh("%s pipeline sim --uniform --stages 4 --t-fwd 1 --t-bwd 2", bin), 2);
    assert_true(err_has("--microbatches"));
    assert_int_equal(sh("%s pipeline sim --uniform --stages 4 --microbatches 4 --t-fwd 1 "
                        "--t-bwd 2 --schedule zb-h2", bin), 2);
    assert_int_equal(sh("%s pipeline sim --uniform --stages x --microbatches 4 --t-fwd 1 "
                        "--t-bwd 2", bin), 2);
    assert_int_equal(sh("%s pipeline sim --stages 4", bin), 2);
    assert_int_equal(sh("%s pipeline sim --help", bin), 0);
}

static void test_model_and_plan(void **st)
{
    (void)st;
    char m[400], plan[400], trace[400];
    snprintf(m, sizeof m, "%s/mmt.json", tmpdir);
    snprintf(plan, sizeof plan, "%s/plan.json", tmpdir);
    snprintf(trace, sizeof trace, "%s/trace.json", tmpdir);
    assert_int_equal(sh("%s pipeline model --builtin mmt --branches 2 --layers 2 -o %s", bin, m), 0);
    assert_int_equal(sh("%s pipeline model %s --json --cluster summit --microbatch 2", bin, m), 0);
    json_t *j = out_json();
    assert_int_equal((int)num(j, "num_ops"), 2 + 4 + 2);
    assert_int_equal((int)num(j, "num_sources"), 2);
    assert_true(num(j, "fwd_s") > 0 && num(j, "bwd_weight_s") > 0);
    json_decref(j);
    /* a plan: each branch a stage (2 devices each), the join a stage */
    FILE *f = fopen(plan, "w");
    fprintf(f, "{\"model\": \"mmt.json\", \"cluster\": \"summit\", \"minibatch\": 16,"
               " \"stages\": ["
               "{\"ops\": [\"in0\", \"b0.l0\", \"b0.l1\"], \"microbatch\": 4, \"devices\": [0, 1]},"
               "{\"ops\": [\"in1\", \"b1.l0\", \"b1.l1\"], \"microbatch\": 4, \"devices\": [2, 3]},"
               "{\"ops\": [\"concat\", \"fuse\"], \"microbatch\": 4, \"devices\": [4]}]}");
    fclose(f);
    assert_int_equal(sh("%s pipeline sim --plan %s --trace %s --json", bin, plan, trace), 0);
    j = out_json();
    double it = num(j, "iteration_s");
    rel(num(j, "throughput_samples_per_s"), 16 / it, "throughput");
    assert_int_equal((int)num(j, "num_stages"), 3);
    assert_int_equal((int)num(j, "num_devices"), 5);
    assert_true(json_is_false(json_object_get(j, "oom")));
    json_t *pk = json_object_get(j, "peak_inflight");
    assert_int_equal(json_integer_value(json_array_get(pk, 0)), 2); /* branch: depth 2 */
    assert_int_equal(json_integer_value(json_array_get(pk, 2)), 1);
    assert_true(num(j, "allreduce_s") > 0); /* the DP-2 branches */
    json_decref(j);
    json_error_t je;
    json_t *tr = json_load_file(trace, 0, &je);
    assert_non_null(tr);
    assert_true(json_array_size(json_object_get(tr, "traceEvents")) > 10);
    json_decref(tr);
    /* text output and a bad plan: an op in no stage */
    assert_int_equal(sh("%s pipeline sim --plan %s", bin, plan), 0);
    f = fopen(plan, "w");
    fprintf(f, "{\"model\": \"mmt.json\", \"cluster\": \"summit\", \"minibatch\": 16,"
               " \"stages\": [{\"ops\": [\"in0\"], \"microbatch\": 4, \"devices\": [0]}]}");
    fclose(f);
    assert_int_equal(sh("%s pipeline sim --plan %s", bin, plan), 2);
    assert_true(err_has("plan.json"));
    assert_true(err_has("in no stage"));
    /* model errors name the file and the op */
    f = fopen(m, "w");
    fprintf(f, "{\"ops\": [{\"id\": \"a\", \"kind\": \"input\"}, "
               "{\"id\": \"b\", \"kind\": \"gemm\", \"m\": 1, \"n\": 2, \"k\": 3, "
               "\"inputs\": [\"q\"]}]}");
    fclose(f);
    assert_int_equal(sh("%s pipeline model %s", bin, m), 2);
    assert_true(err_has("mmt.json"));
    assert_true(err_has("op \"b\""));
    assert_int_equal(sh("%s pipeline model --builtin mmt --brunches 3", bin), 2);
    assert_true(err_has("brunches"));
    assert_int_equal(sh("%s pipeline model --list --json", bin), 0);
    j = out_json();
    assert_non_null(json_object_get(json_object_get(j, "dlrm"), "emb_rows"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_acceptance),
        cmocka_unit_test(test_model_and_plan),
    };
    return cmocka_run_group_tests_name("pp_cli", tests, setup, teardown);
}
