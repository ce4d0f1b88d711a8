/* End-to-end tests of the plansim binary: the commands the acceptance
 * checks run, their exit codes, messages and files. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/util.h"

static char tmpdir[256];
static char out_txt[300], err_txt[300];
static const char *bin;

/* Run the binary with a shell command line; stdout and stderr go to files.
 * Returns the exit status. */
static int sh(const char *fmt, ...)
{
    char cmd[4096], full[5000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s >%s 2>%s", cmd, out_txt, err_txt);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
    char *s = ps_file_read(path, NULL, NULL);
    return s ? s : strdup("");
}

static int contains(const char *path, const char *needle)
{
    char *s = slurp(path);
    int ok = strstr(s, needle) != NULL;
    if (!ok)
        fprintf(stderr, "--- %s lacks \"%s\"; it holds:\n%s\n", path, needle, s);
    free(s);
    return ok;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    bin = getenv("PLANSIM_BIN");
    if (!bin)
        bin = "build/plansim";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/plansim-cli-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(out_txt, sizeof out_txt, "%s/stdout.txt", tmpdir);
    snprintf(err_txt, sizeof err_txt, "%s/stderr.txt", tmpdir);
    setenv("PLANSIM_QUIET", "1", 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_help_and_version(void **state)
{
    (void)state;
    assert_int_equal(sh("%s --version", bin), 0);
    assert_true(contains(out_txt, "plansim"));
    assert_true(contains(out_txt, "gpu:"));
    assert_int_equal(sh("%s --help", bin), 0);
    assert_true(contains(out_txt, "run"));
    assert_int_equal(sh("%s run --help", bin), 0);
    assert_true(contains(out_txt, "--resume"));
    assert_int_equal(sh("%s plot --help", bin), 0);
    assert_int_equal(sh("%s info --help", bin), 0);
    assert_int_equal(sh("%s des --help", bin), 0);
    assert_int_equal(sh("%s des bench --help", bin), 0);
    assert_int_equal(sh("%s bogus", bin), 2);
    assert_true(contains(err_txt, "unknown command"));
    assert_int_equal(sh("%s run", bin), 2);
    assert_int_equal(sh("%s run a.json --no-such-option", bin), 2);
    assert_int_equal(sh("%s des nothing", bin), 2);
}

/* The quick quickstart, as JSON: results match the closed forms. */
static void test_run_quickstart_json(void **state)
{
    (void)state;
    char h5[400], part[420];
    snprintf(h5, sizeof h5, "%s/q.h5", tmpdir);
    snprintf(part, sizeof part, "%s.partial", h5);
    assert_int_equal(sh("%s run experiments/quickstart.json -o %s --quick --json", bin, h5), 0);
    json_error_t je;
    json_t *j = json_load_file(out_txt, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "study")), "schedule");
    json_t *pts = json_object_get(j, "points");
    assert_true(json_is_array(pts));
    /* quick sweep: 2 schedules x 3 stage counts x 4 micro-batch counts */
    assert_int_equal(json_array_size(pts), 24);
    assert_true(json_real_value(json_object_get(j, "matches_closed_forms")) == 1.0);
    assert_true(json_number_value(json_object_get(j, "max_rel_err_makespan")) <= 1e-9);
    /* Every row: makespan = (m+p-1)(tf+tb) with the config's 10 ms + 20 ms. */
    size_t i;
    json_t *row;
    json_array_foreach(pts, i, row) {
        double p = (double)json_integer_value(json_object_get(row, "stages"));
        double m = (double)json_integer_value(json_object_get(row, "microbatches"));
        double mk = json_real_value(json_object_get(row, "makespan_s"));
        assert_true(fabs(mk - (m + p - 1) * 0.03) <= 1e-9 * mk);
        double bf = json_real_value(json_object_get(row, "bubble_fraction"));
        assert_true(fabs(bf - (p - 1) / (m + p - 1)) <= 1e-9);
    }
    json_decref(j);
    assert_true(ps_file_exists(h5));
    assert_false(ps_file_exists(part));

    /* The file holds what DESIGN.md promises. */
    hid_t f = ps_h5_open_read(h5, NULL);
    assert_true(f >= 0);
    static const char *const attrs[] = {"plansim_version", "git_commit", "config", "host",
                                        "device", "started", "finished", NULL};
    for (const char *const *a = attrs; *a; a++) {
        char *v = NULL;
        assert_int_equal(ps_h5_attr_get_str(f, "/", *a, &v, NULL), 0);
        assert_true(strlen(v) > 0);
        free(v);
    }
    ps_table *t;
    assert_int_equal(ps_h5_table_read(f, "/schedule/points", &t, NULL), 0);
    assert_int_equal(t->nrows, 24);
    int c = ps_table_col(t, "makespan_s");
    assert_true(c >= 0);
    assert_string_equal(t->cols[c].units, "s");
    ps_table_free(t);
    assert_int_equal(ps_h5_table_read(f, "/schedule/per_stage", &t, NULL), 0);
    /* per-stage rows: 2 schedules x 4 micro-batch counts x (2+4+8) stages */
    assert_int_equal(t->nrows, 2 * 4 * 14);
    ps_table_free(t);
    assert_true(ps_h5_exists(f, "/schedule/summary"));
    assert_true(ps_h5_exists(f, "/schedule/timeline"));
    H5Fclose(f);

    /* h5dump reads it. */
    if (system("command -v h5dump >/dev/null 2>&1") == 0) {
        assert_int_equal(sh("h5dump -H %s", h5), 0);
        assert_true(contains(out_txt, "units"));
    }
    /* info prints the tables and the summary. */
    assert_int_equal(sh("%s info %s", bin, h5), 0);
    assert_true(contains(out_txt, "/schedule/points"));
    assert_true(contains(out_txt, "max_rel_err_makespan"));
    assert_int_equal(sh("%s info %s --json", bin, h5), 0);
    j = json_load_file(out_txt, 0, &je);
    assert_non_null(j);
    json_decref(j);

    /* Never overwritten without --force, and the file is left intact. */
    struct stat st0, st1;
    stat(h5, &st0);
    assert_int_equal(sh("%s run experiments/quickstart.json -o %s --quick", bin, h5), 2);
    assert_true(contains(err_txt, "--force"));
    stat(h5, &st1);
    assert_int_equal(st0.st_size, st1.st_size);
    assert_int_equal(st0.st_mtime, st1.st_mtime);
    assert_int_equal(sh("%s run experiments/quickstart.json -o %s --quick --force --no-plot", bin,
                        h5),
                     0);
}

static void test_bad_configs(void **state)
{
    (void)state;
    char p[400];
    snprintf(p, sizeof p, "%s/bad.json", tmpdir);
    write_file(p, "{\n  \"study\": \"pipeline\",\n  \"name\": \"x\"\n  \"sweep\": {}\n}\n");
    assert_int_equal(sh("%s run %s", bin, p), 2);
    assert_true(contains(err_txt, "bad.json:4:"));

    assert_int_equal(sh("%s run %s/missing.json", bin, tmpdir), 2);
    assert_true(contains(err_txt, "missing.json"));

    write_file(p, "{\"study\": \"nosuch\", \"name\": \"x\"}");
    assert_int_equal(sh("%s run %s", bin, p), 2);
    assert_true(contains(err_txt, "$.study"));
    assert_true(contains(err_txt, "nosuch"));

    write_file(p, "{\"study\": \"schedule\", \"name\": \"x\",\n"
                  " \"sweep\": {\"stages\": [2, \"four\"], \"microbatches\": [4]}}");
    assert_int_equal(sh("%s run %s", bin, p), 2);
    assert_true(contains(err_txt, "$.sweep.stages[1]"));
    assert_true(contains(err_txt, "bad.json"));

    write_file(p, "{\"study\": \"schedule\", \"name\": \"x\",\n"
                  " \"sweep\": {\"stages\": [2], \"microbatches\": [4], \"stagez\": [1]}}");
    assert_int_equal(sh("%s run %s", bin, p), 2);
    assert_true(contains(err_txt, "$.sweep.stagez"));

    write_file(p, "{\"study\": \"schedule\", \"name\": \"x\", \"sweep\": {\"stages\": [2]}}");
    assert_int_equal(sh("%s run %s", bin, p), 2);
    assert_true(contains(err_txt, "microbatches"));

    write_file(p, "{\"study\": \"schedule\", \"name\": \"x\",\n"
                  " \"fixed\": {\"stages\": 0, \"microbatches\": 4}}");
    assert_int_equal(sh("%s run %s -o %s/x.h5", bin, p, tmpdir), 2);
    assert_true(contains(err_txt, "stages"));

    write_file(p, "{\"study\": \"schedule\", \"name\": \"x\",\n"
                  " \"fixed\": {\"stages\": 2, \"microbatches\": 4},\n"
                  " \"figures\": [{\"name\": \"f\", \"x\": \"nosuchcol\", \"y\": \"makespan_s\"}]}");
    assert_int_equal(sh("%s run %s -o %s/x.h5", bin, p, tmpdir), 2);
    assert_true(contains(err_txt, "$.figures[0]"));
    /* Bad input leaves nothing behind. */
    char x[400];
    snprintf(x, sizeof x, "%s/x.h5", tmpdir);
    assert_false(ps_file_exists(x));
    snprintf(x, sizeof x, "%s/x.h5.partial", tmpdir);
    assert_false(ps_file_exists(x));

    assert_int_equal(sh("%s info %s/none.h5", bin, tmpdir), 2);
    assert_int_equal(sh("%s info %s", bin, p), 2);
    assert_true(contains(err_txt, "not an HDF5 file"));
}

/* A stale partial file is neither resumed nor discarded silently. */
static void test_stale_partial(void **state)
{
    (void)state;
    char h5[400], part[420];
    snprintf(h5, sizeof h5, "%s/stale.h5", tmpdir);
    snprintf(part, sizeof part, "%s.partial", h5);
    write_file(part, "half a run");
    assert_int_equal(sh("%s run experiments/quickstart.json --quick --no-plot -o %s", bin, h5), 2);
    assert_true(contains(err_txt, "--resume"));
    assert_true(ps_file_exists(part));
    /* --resume on a damaged partial: a clear error, nothing lost. */
    assert_int_equal(
        sh("%s run experiments/quickstart.json --quick --no-plot --resume -o %s", bin, h5), 2);
    assert_true(contains(err_txt, "partial"));
    /* --force starts over. */
    assert_int_equal(
        sh("%s run experiments/quickstart.json --quick --no-plot --force -o %s", bin, h5), 0);
    assert_false(ps_file_exists(part));
    assert_true(ps_file_exists(h5));
}

static void test_resume_continues(void **state)
{
    (void)state;
    char full[400], cut[400], part[420], cmd[1000];
    snprintf(full, sizeof full, "%s/full2.h5", tmpdir);
    snprintf(cut, sizeof cut, "%s/cut2.h5", tmpdir);
    snprintf(part, sizeof part, "%s.partial", cut);
    assert_int_equal(
        sh("%s run experiments/quickstart.json --quick --no-plot -o %s --json", bin, full), 0);
    json_t *jfull = json_load_file(out_txt, 0, NULL);
    assert_non_null(jfull);
    snprintf(cmd, sizeof cmd, "cp %s %s", full, part);
    assert_int_equal(system(cmd), 0);
    hid_t f = H5Fopen(part, H5F_ACC_RDWR, H5P_DEFAULT);
    ps_table *ps;
    assert_int_equal(ps_h5_table_read(f, "/schedule/per_stage", &ps, NULL), 0);
    size_t keep = 0;
    for (size_t r = 0; r < ps->nrows; r++)
        if (ps_table_get_i(ps, r, 0) < 7 || (ps_table_get_i(ps, r, 0) == 7 && r % 2 == 0))
            keep = r + 1;
    ps_table_free(ps);
    assert_int_equal(ps_h5_table_truncate(f, "/schedule/per_stage", keep, NULL), 0);
    assert_int_equal(ps_h5_table_truncate(f, "/schedule/points", 7, NULL), 0);
    H5Fclose(f);

    assert_int_equal(
        sh("%s run experiments/quickstart.json --quick --no-plot --resume -o %s --json", bin, cut),
        0);
    json_t *j = json_load_file(out_txt, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "points_run")), 24 - 7);
    assert_true(json_is_true(json_object_get(j, "resumed")));
    assert_false(ps_file_exists(part));
    /* Same rows as the uninterrupted run, except the timing column. */
    json_t *a = json_object_get(jfull, "points"), *b = json_object_get(j, "points");
    assert_int_equal(json_array_size(a), json_array_size(b));
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_object_del(json_array_get(a, i), "run_time_s");
        json_object_del(json_array_get(b, i), "run_time_s");
        json_object_del(json_array_get(a, i), "sim_wall_s");
        json_object_del(json_array_get(b, i), "sim_wall_s");
        assert_true(json_equal(json_array_get(a, i), json_array_get(b, i)));
    }
    /* Detail rows: the half-written point was trimmed, then rewritten. */
    hid_t g = ps_h5_open_read(cut, NULL);
    ps_table *t1, *t2;
    assert_int_equal(ps_h5_table_read(g, "/schedule/per_stage", &t1, NULL), 0);
    H5Fclose(g);
    g = ps_h5_open_read(full, NULL);
    assert_int_equal(ps_h5_table_read(g, "/schedule/per_stage", &t2, NULL), 0);
    H5Fclose(g);
    assert_int_equal(t1->nrows, t2->nrows);
    for (size_t r = 0; r < t1->nrows; r++)
        assert_int_equal(ps_table_get_i(t1, r, 0), ps_table_get_i(t2, r, 0));
    ps_table_free(t1);
    ps_table_free(t2);
    json_decref(j);
    json_decref(jfull);

    /* A partial from another config is refused. */
    snprintf(cmd, sizeof cmd, "cp %s %s", full, part);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sh("%s run experiments/quickstart.json --no-plot --resume -o %s", bin, cut),
                     2);
    assert_true(contains(err_txt, "different config"));
}

/* A point that fails at run time: exit 1, no result under the final name. */
static void test_run_failure(void **state)
{
    (void)state;
    char dir[400], blocker[420], cfg[420];
    snprintf(dir, sizeof dir, "%s/fail", tmpdir);
    ps_mkdir_p(dir, NULL);
    /* The trace folder would be fail/r/traces, but fail/r is a file. */
    snprintf(blocker, sizeof blocker, "%s/r", dir);
    write_file(blocker, "not a folder");
    snprintf(cfg, sizeof cfg, "%s/trace.json", tmpdir);
    write_file(cfg, "{\"study\": \"schedule\", \"name\": \"t\",\n"
                    " \"fixed\": {\"stages\": 2, \"trace\": true}, \"sweep\": {\"microbatches\": [1, 2]}}");
    assert_int_equal(sh("%s run %s -o %s/r.h5", bin, cfg, dir), 1);
    char x[500];
    snprintf(x, sizeof x, "%s/r.h5", dir);
    assert_false(ps_file_exists(x));
}

static void test_des_bench_json(void **state)
{
    (void)state;
    assert_int_equal(sh("%s des bench --quick --json", bin), 0);
    json_t *j = json_load_file(out_txt, 0, NULL);
    assert_non_null(j);
    assert_true(json_number_value(json_object_get(j, "events_per_s")) > 0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_version), cmocka_unit_test(test_run_quickstart_json),
        cmocka_unit_test(test_bad_configs),      cmocka_unit_test(test_stale_partial),
        cmocka_unit_test(test_resume_continues), cmocka_unit_test(test_run_failure),
        cmocka_unit_test(test_des_bench_json),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
