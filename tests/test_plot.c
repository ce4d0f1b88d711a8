/* experiments/plot and experiments/info on a result file built by hand:
 * the exact .dat content (blocks, order, averaging, filters), validation
 * messages, the gnuplot run (when gnuplot is installed) and its failure
 * paths, and `plansim info` in text and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/util.h"
#include "experiments/info.h"
#include "experiments/plot.h"

static char dir[256];
static char good_h5[512]; /* the shared result file */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Every hid_t closed: a leaked handle keeps a file open behind our back. */
static void assert_no_open_hdf5(void)
{
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

static int have_gnuplot(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* 24 rows: schedule {gpipe, 1f1b} (first appearance ≠ alphabetical) ×
 * stages {8, 4} (stored descending) × microbatches {4, 1, 2} (unsorted) ×
 * 2 repeats.  Values are binary fractions so averages are exact:
 *   bubble_fraction = mb/8 + stages/16 + repeat/4   (mean: + 1/8)
 *   makespan_s      = mb*stages + 100*(gpipe) + 2*repeat   (mean: + 1)
 * except gpipe/stages=4/mb=1/repeat=1, whose makespan is NaN. */
static ps_table *points_table(void)
{
    ps_table *t = ps_table_new();
    ps_table_add_col(t, "point", PS_COL_INT, "");
    ps_table_add_col(t, "repeat", PS_COL_INT, "");
    ps_table_add_col(t, "seed", PS_COL_INT, "");
    ps_table_add_col(t, "schedule", PS_COL_STR, "");
    ps_table_add_col(t, "stages", PS_COL_INT, "");
    ps_table_add_col(t, "microbatches", PS_COL_INT, "");
    ps_table_add_col(t, "bubble_fraction", PS_COL_DOUBLE, "");
    ps_table_add_col(t, "makespan_s", PS_COL_DOUBLE, "s");
    const char *sched[] = {"gpipe", "1f1b"};
    const int stages[] = {8, 4}, mbs[] = {4, 1, 2};
    int point = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 3; c++, point++)
                for (int rep = 0; rep < 2; rep++) {
                    size_t r = ps_table_add_row(t);
                    int s = stages[b], mb = mbs[c];
                    ps_table_set_i(t, r, 0, point);
                    ps_table_set_i(t, r, 1, rep);
                    ps_table_set_i(t, r, 2, 1000 + point * 2 + rep);
                    ps_table_set_s(t, r, 3, sched[a]);
                    ps_table_set_i(t, r, 4, s);
                    ps_table_set_i(t, r, 5, mb);
                    ps_table_set_d(t, r, 6, mb / 8.0 + s / 16.0 + rep / 4.0);
                    double m = mb * s + (a == 0 ? 100 : 0) + 2 * rep;
                    if (a == 0 && s == 4 && mb == 1 && rep == 1)
                        m = NAN;
                    ps_table_set_d(t, r, 7, m);
                }
    return t;
}

/* Write a committed result file holding `figures_json` in its config. */
static void make_result(const char *path, const char *figures_json)
{
    ps_err e = {0};
    int resumed;
    ps_h5 *h = ps_h5_open_result(path, 1, 0, &resumed, &e);
    assert_non_null(h);
    hid_t f = ps_h5_file(h);
    char config[8192];
    snprintf(config, sizeof config,
             "{\n  \"study\": \"pipeline\",\n  \"name\": \"plot_test\",\n  \"figures\": %s\n}\n",
             figures_json);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "config", config, &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "config_path", "experiments/plot_test.json", &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "study", "pipeline", &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "name", "plot_test", &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/", "plansim_version", ps_version, &e), 0);
    assert_int_equal(ps_h5_attr_set_int(f, "/", "seed", 42, &e), 0);
    assert_int_equal(ps_h5_attr_set_int(f, "/", "quick", 1, &e), 0);
    ps_table *t = points_table();
    assert_int_equal(ps_h5_table_write(f, "/pipeline/points", t, &e), 0);
    ps_table_free(t);

    ps_table *s = ps_table_new();
    ps_table_add_col(s, "name", PS_COL_STR, "");
    ps_table_add_col(s, "method", PS_COL_STR, "");
    ps_table_add_col(s, "value", PS_COL_DOUBLE, "");
    ps_table_add_col(s, "units", PS_COL_STR, "");
    const char *names[] = {"speedup", "speedup", "best_makespan_s"};
    const char *methods[] = {"graphpipe", "pipedream", ""};
    const double vals[] = {1.5, 1.25, 5};
    for (int i = 0; i < 3; i++) {
        size_t r = ps_table_add_row(s);
        ps_table_set_s(s, r, 0, names[i]);
        ps_table_set_s(s, r, 1, methods[i]);
        ps_table_set_d(s, r, 2, vals[i]);
        ps_table_set_s(s, r, 3, i == 2 ? "s" : "");
    }
    assert_int_equal(ps_h5_table_write(f, "/pipeline/summary", s, &e), 0);
    ps_table_free(s);

    /* Published values: no schedule column (the figure's where on it does
     * not apply), stages as a double column (matched numerically). */
    ps_table *p = ps_table_new();
    ps_table_add_col(p, "stages", PS_COL_DOUBLE, "");
    ps_table_add_col(p, "microbatches", PS_COL_INT, "");
    ps_table_add_col(p, "bubble_fraction", PS_COL_DOUBLE, "");
    const double pv[][3] = {{8, 1, 0.7}, {4, 2, 0.6}, {4, 1, 0.4}};
    for (int i = 0; i < 3; i++) {
        size_t r = ps_table_add_row(p);
        ps_table_set_d(p, r, 0, pv[i][0]);
        ps_table_set_i(p, r, 1, (int64_t)pv[i][1]);
        ps_table_set_d(p, r, 2, pv[i][2]);
    }
    assert_int_equal(ps_h5_table_write(f, "/paper/fig6", p, &e), 0);
    assert_int_equal(ps_h5_attr_set_str(f, "/paper/fig6", "source", "GraphPipe Fig. 6, p. 9", &e),
                     0);
    ps_table_free(p);
    assert_int_equal(ps_h5_commit(h, &e), 0);
}

static const char *good_figures =
    "[\n"
    " {\"name\": \"bubble\", \"x\": \"microbatches\", \"y\": [\"bubble_fraction\", \"makespan_s\"],\n"
    "  \"style\": [\"points\", \"lines\"], \"series\": \"stages\", \"where\": {\"schedule\": \"1f1b\"}},\n"
    " {\"name\": \"facets\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"series\": \"stages\",\n"
    "  \"facet\": \"schedule\", \"logy\": true, \"title\": \"Makespan 'per' schedule\"},\n"
    " {\"name\": \"bars\", \"kind\": \"bars\", \"x\": \"schedule\", \"y\": \"makespan_s\",\n"
    "  \"where\": {\"stages\": 4}},\n"
    " {\"name\": \"paper\", \"x\": \"microbatches\", \"y\": \"bubble_fraction\", \"series\": \"stages\",\n"
    "  \"where\": {\"schedule\": \"1f1b\"}, \"paper\": \"fig6\"},\n"
    " {\"name\": \"in_list\", \"x\": \"microbatches\", \"y\": \"bubble_fraction\", \"series\": \"schedule\",\n"
    "  \"where\": {\"schedule\": [\"gpipe\", \"1f1b\"], \"stages\": \"8\"}, \"style\": \"lines\"},\n"
    " {\"name\": \"empty\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"where\": {\"stages\": 3}}\n"
    "]";

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ps_test_plot_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(good_h5, sizeof good_h5, "%s/run.h5", dir);
    make_result(good_h5, good_figures);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *slurp(const char *path)
{
    char *s = ps_file_read(path, NULL, NULL);
    assert_non_null(s);
    return s;
}

static void check_file_eq(const char *path, const char *want)
{
    char *got = slurp(path);
    if (strcmp(got, want) != 0)
        print_error("%s:\n--- got ---\n%s--- want ---\n%s", path, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* Everything below `# index 0` (the header names the temporary path). */
static void check_blocks_eq(const char *path, const char *want)
{
    char *got = slurp(path);
    const char *b = strstr(got, "# index 0");
    assert_non_null(b);
    if (strcmp(b, want) != 0)
        print_error("%s:\n--- got ---\n%s--- want ---\n%s", path, b, want);
    assert_string_equal(b, want);
    free(got);
}

static const json_t *report_entry(const json_t *report, const char *name)
{
    size_t i;
    const json_t *o;
    json_array_foreach(report, i, o)
        if (strcmp(json_string_value(json_object_get(o, "figure")), name) == 0)
            return o;
    fail_msg("no report entry for %s", name);
    return NULL;
}

static void check_png_svg(const char *base)
{
    char p[600];
    snprintf(p, sizeof p, "%s.png", base);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char sig[8];
    assert_int_equal(fread(sig, 1, 8, f), 8);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    fseek(f, 0, SEEK_END);
    assert_true(ftell(f) > 1024);
    fclose(f);
    snprintf(p, sizeof p, "%s.svg", base);
    char *svg = slurp(p);
    assert_non_null(strstr(svg, "<svg"));
    assert_true(strlen(svg) > 1024);
    free(svg);
    /* No temporary output left behind. */
    snprintf(p, sizeof p, "%s.tmp.png", base);
    assert_false(ps_file_exists(p));
}

static void test_dat_and_drawing(void **state)
{
    (void)state;
    ps_err e = {0};
    json_t *report = json_array();
    int gp = have_gnuplot();
    int rc = ps_plot_results(good_h5, NULL, report, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, gp ? 0 : PS_ERUN);
    assert_no_open_hdf5();

    char out[512], p[600];
    snprintf(out, sizeof out, "%s/run", dir); /* run.h5 → run/ */

    /* Header, then one block per series; x sorted; repeats averaged. */
    snprintf(p, sizeof p, "%s/bubble.dat", out);
    char want[4096];
    snprintf(want, sizeof want,
             "# bubble: plansim figure $.figures[0], from /pipeline/points in %s\n"
             "# where schedule=1f1b\n"
             "# rows with equal x in a block (repeats) are averaged\n"
             "# column 1: microbatches\n"
             "# column 2: bubble_fraction\n"
             "# column 3: makespan_s [s]\n"
             "# index 0: stages=4\n"
             "1 0.5 5\n"
             "2 0.625 9\n"
             "4 0.875 17\n"
             "\n\n"
             "# index 1: stages=8\n"
             "1 0.75 9\n"
             "2 0.875 17\n"
             "4 1.125 33\n",
             good_h5);
    check_file_eq(p, want);

    /* Facets in first-appearance order (gpipe first), series ascending; the
     * NaN repeat is left out of its mean. */
    snprintf(p, sizeof p, "%s/facets.dat", out);
    check_blocks_eq(p, "# index 0: schedule=gpipe, stages=4\n"
                       "1 104\n2 109\n4 117\n"
                       "\n\n# index 1: schedule=gpipe, stages=8\n"
                       "1 109\n2 117\n4 133\n"
                       "\n\n# index 2: schedule=1f1b, stages=4\n"
                       "1 5\n2 9\n4 17\n"
                       "\n\n# index 3: schedule=1f1b, stages=8\n"
                       "1 9\n2 17\n4 33\n");

    /* Bars: categorical x by position, label last; all rows of a category
     * (every microbatch count and repeat) averaged. */
    snprintf(p, sizeof p, "%s/bars.dat", out);
    check_blocks_eq(p, "# index 0: all rows\n"
                       "0 111.2 \"gpipe\"\n"
                       "1 10.33333333 \"1f1b\"\n");

    /* The paper overlay: its own blocks, grouped by the same series. */
    snprintf(p, sizeof p, "%s/paper.dat", out);
    check_blocks_eq(p, "# index 0: stages=4\n1 0.5\n2 0.625\n4 0.875\n"
                       "\n\n# index 1: stages=8\n1 0.75\n2 0.875\n4 1.125\n"
                       "\n\n# index 2: paper stages=4\n1 0.4\n2 0.6\n"
                       "\n\n# index 3: paper stages=8\n1 0.7\n");

    /* where with a list and a number written as a string. */
    snprintf(p, sizeof p, "%s/in_list.dat", out);
    check_blocks_eq(p, "# index 0: schedule=gpipe\n1 0.75\n2 0.875\n4 1.125\n"
                       "\n\n# index 1: schedule=1f1b\n1 0.75\n2 0.875\n4 1.125\n");

    /* The script is self-contained: variables, then the template. */
    snprintf(p, sizeof p, "%s/facets.gp", out);
    char *gps = slurp(p);
    assert_non_null(strstr(gps, "datafile = \"facets.dat\""));
    assert_non_null(strstr(gps, "nfacets = 2"));
    assert_non_null(strstr(gps, "facet_title[1] = 'schedule=gpipe'"));
    assert_non_null(strstr(gps, "fig_title = 'Makespan ''per'' schedule'"));
    assert_non_null(strstr(gps, "logy = 1"));
    assert_non_null(strstr(gps, "# ---- plots/lines.gp ----"));
    assert_non_null(strstr(gps, "set multiplot layout"));
    free(gps);
    snprintf(p, sizeof p, "%s/bars.gp", out);
    gps = slurp(p);
    assert_non_null(strstr(gps, "xtics_cmd = \"set xtics ('gpipe' 0, '1f1b' 1)\""));
    assert_non_null(strstr(gps, "with boxes"));
    free(gps);

    /* The report: one entry per figure; the filtered-out one says why. */
    assert_int_equal(json_array_size(report), 6);
    const json_t *emp = report_entry(report, "empty");
    assert_non_null(strstr(json_string_value(json_object_get(emp, "skipped")), "stages=3"));
    snprintf(p, sizeof p, "%s/empty.dat", out);
    assert_false(ps_file_exists(p));
    const json_t *pap = report_entry(report, "paper");
    assert_true(json_is_true(json_object_get(pap, "paper")));
    snprintf(p, sizeof p, "%s/bubble.dat", out);
    assert_string_equal(json_string_value(json_object_get(report_entry(report, "bubble"), "dat")), p);

    if (!gp) {
        assert_non_null(strstr(e.msg, "gnuplot-nox"));
        json_decref(report);
        skip(); /* gnuplot is not installed: the drawing is not checked */
    }
    const char *drawn[] = {"bubble", "facets", "bars", "paper", "in_list"};
    for (size_t i = 0; i < sizeof drawn / sizeof *drawn; i++) {
        snprintf(p, sizeof p, "%s/%s", out, drawn[i]);
        check_png_svg(p);
        const json_t *o = report_entry(report, drawn[i]);
        snprintf(p, sizeof p, "%s/%s.png", out, drawn[i]);
        assert_string_equal(json_string_value(json_object_get(o, "png")), p);
    }
    json_decref(report);

    /* The generated script reruns on its own, from another folder. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "cd / && gnuplot -e 'formats=\"svg\"; outbase=\"rerun\"' '%s/bubble.gp' 2>&1", out);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/rerun.svg", out);
    assert_true(ps_file_exists(p));
}

/* Each bad figure: PS_EINPUT naming the JSON path and the file, and nothing
 * written. */
static void test_validation(void **state)
{
    (void)state;
    static const struct {
        const char *figures, *field;
    } cases[] = {
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": [\"bubble_fraction\", \"nope\"]}]",
         "$.figures[0].y[1]: no column \"nope\""},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"nope\"}]", "$.figures[0].y: no column"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"schedule\"}]",
         "$.figures[0].y: column \"schedule\" holds strings"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"style\": \"dots\"}]",
         "$.figures[0].style: unknown style \"dots\""},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": [\"makespan_s\"], \"style\": [\"lines\", "
         "\"points\"]}]",
         "$.figures[0].style: 2 styles for 1 y columns"},
        {"[{\"name\": \"a\", \"y\": \"makespan_s\"}]", "$.figures[0].x: missing"},
        {"[{\"name\": \"a\", \"x\": \"mb\", \"y\": \"makespan_s\"}]", "$.figures[0].x: no column \"mb\""},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"colour\": 1}]",
         "$.figures[0].colour: unknown field"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"where\": {\"foo\": 1}}]",
         "$.figures[0].where.foo: no column"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"where\": {\"schedule\": "
         "3}}]",
         "$.figures[0].where.schedule: column \"schedule\" holds strings"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"where\": {\"stages\": "
         "\"four\"}}]",
         "$.figures[0].where.stages: column \"stages\" is numeric"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"series\": \"nope\"}]",
         "$.figures[0].series: no column"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"facet\": \"nope\"}]",
         "$.figures[0].facet: no column"},
        {"[{\"name\": \"a b\", \"x\": \"microbatches\", \"y\": \"makespan_s\"}]", "$.figures[0].name"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"kind\": \"pie\"}]",
         "$.figures[0].kind: unknown kind \"pie\""},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\", \"table\": \"timeline\"}]",
         "$.figures[0].table: no dataset /pipeline/timeline"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": \"makespan_s\"}, {\"name\": \"b\", "
         "\"x\": \"microbatches\", \"y\": \"makespan_s\"}, {\"name\": \"a\", \"x\": \"microbatches\", "
         "\"y\": \"bubble_fraction\"}]",
         "$.figures[2].name: \"a\" is already the name of $.figures[0]"},
        {"[{\"name\": \"a\", \"x\": \"schedule\", \"y\": \"makespan_s\", \"logx\": true}]",
         "$.figures[0].logx"},
        {"[{\"name\": \"a\", \"x\": \"microbatches\", \"y\": []}]", "$.figures[0].y: empty"},
        {"[3]", "$.figures[0]: expected a figure object"},
        {"{\"name\": \"a\"}", "$.figures: expected an array"},
    };
    char path[512], out[512];
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    snprintf(out, sizeof out, "%s/bad_out", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        make_result(path, cases[i].figures);
        ps_err e = {0};
        json_t *report = json_array();
        int rc = ps_plot_results(path, out, report, &e);
        if (rc != PS_EINPUT || !strstr(e.msg, cases[i].field) || !strstr(e.msg, path) ||
            !strstr(e.msg, "experiments/plot_test.json"))
            print_error("case %zu: rc %d, message: %s\n", i, rc, e.msg);
        assert_int_equal(rc, PS_EINPUT);
        assert_non_null(strstr(e.msg, cases[i].field));
        assert_non_null(strstr(e.msg, path));
        assert_non_null(strstr(e.msg, "experiments/plot_test.json"));
        assert_int_equal(json_array_size(report), 0);
        assert_false(ps_file_exists(out));
        assert_no_open_hdf5();
        json_decref(report);
    }

    /* The same checks before a run, against the points table's columns. */
    ps_table *layout = points_table();
    ps_err e = {0};
    json_t *figs = json_loads(cases[0].figures, 0, NULL);
    assert_int_equal(ps_plot_check_figures(figs, layout, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "$.figures[0].y[1]"));
    assert_int_equal(ps_plot_check_figures(figs, NULL, &e), 0); /* columns unknown: passes */
    json_decref(figs);
    figs = json_loads(good_figures, 0, NULL);
    assert_non_null(figs);
    assert_int_equal(ps_plot_check_figures(figs, layout, &e), 0);
    json_decref(figs);
    assert_int_equal(ps_plot_check_figures(NULL, layout, &e), 0);
    ps_table_free(layout);

    /* A file with no figures draws nothing and creates no folder. */
    make_result(path, "[]");
    assert_int_equal(ps_plot_results(path, out, NULL, &e), 0);
    assert_false(ps_file_exists(out));
    /* A file that is not a result file. */
    snprintf(path, sizeof path, "%s/notes.h5", dir);
    ps_file_write_atomic(path, "hello\n", 6, &e);
    assert_int_equal(ps_plot_results(path, out, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, path));
}

static void test_without_gnuplot(void **state)
{
    (void)state;
    char *old = strdup(getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", "/nonexistent", 1);
    char out[512], p[600];
    snprintf(out, sizeof out, "%s/nognuplot", dir);
    ps_err e = {0};
    json_t *report = json_array();
    int rc = ps_plot_results(good_h5, out, report, &e);
    setenv("PATH", old, 1);
    free(old);
    assert_int_equal(rc, PS_ERUN);
    assert_non_null(strstr(e.msg, "gnuplot-nox"));
    snprintf(p, sizeof p, "%s/bubble.dat", out);
    assert_true(ps_file_exists(p));
    snprintf(p, sizeof p, "%s/bubble.gp", out);
    assert_true(ps_file_exists(p));
    snprintf(p, sizeof p, "%s/bubble.png", out);
    assert_false(ps_file_exists(p));
    assert_true(json_is_null(json_object_get(report_entry(report, "bubble"), "png")));
    json_decref(report);
}

/* A template that makes gnuplot fail: the error names the script and quotes
 * gnuplot; no final or temporary image is left. */
static void test_gnuplot_failure(void **state)
{
    (void)state;
    if (!have_gnuplot())
        skip(); /* gnuplot is not installed */
    char tdir[512], p[600], out[512];
    snprintf(tdir, sizeof tdir, "%s/badplots", dir);
    ps_err e = {0};
    assert_int_equal(ps_mkdir_p(tdir, &e), 0);
    const char *bad = "set terminal pngcairo\nset output outbase.'.png'\nplot no_such_variable\n";
    snprintf(p, sizeof p, "%s/lines.gp", tdir);
    ps_file_write_atomic(p, bad, strlen(bad), &e);
    snprintf(p, sizeof p, "%s/bars.gp", tdir);
    ps_file_write_atomic(p, bad, strlen(bad), &e);
    char *old = getenv("PLANSIM_PLOTS") ? strdup(getenv("PLANSIM_PLOTS")) : NULL;
    setenv("PLANSIM_PLOTS", tdir, 1);
    snprintf(out, sizeof out, "%s/failed", dir);
    int rc = ps_plot_results(good_h5, out, NULL, &e);
    if (old) {
        setenv("PLANSIM_PLOTS", old, 1);
        free(old);
    } else {
        unsetenv("PLANSIM_PLOTS");
    }
    assert_int_equal(rc, PS_ERUN);
    assert_non_null(strstr(e.msg, "gnuplot failed"));
    assert_non_null(strstr(e.msg, "bubble.gp"));
    assert_non_null(strstr(e.msg, "undefined variable"));
    snprintf(p, sizeof p, "%s/bubble.png", out);
    assert_false(ps_file_exists(p));
    snprintf(p, sizeof p, "%s/bubble.tmp.png", out);
    assert_false(ps_file_exists(p));
    snprintf(p, sizeof p, "%s/bubble.dat", out);
    assert_true(ps_file_exists(p));

    /* Templates not found at all. */
    setenv("PLANSIM_PLOTS", "/nonexistent", 1);
    rc = ps_plot_results(good_h5, out, NULL, &e);
    unsetenv("PLANSIM_PLOTS");
    assert_int_equal(rc, PS_ERUN);
    assert_non_null(strstr(e.msg, "lines.gp"));
}

/* Run ps_info_print with stdout sent to a file; returns what it printed. */
static char *capture_info(const char *h5, int as_json, int *rc, ps_err *e)
{
    char cap[512];
    snprintf(cap, sizeof cap, "%s/info.out", dir);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    *rc = ps_info_print(h5, as_json, e);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return slurp(cap);
}

static void test_info(void **state)
{
    (void)state;
    ps_err e = {0};
    int rc;
    char *txt = capture_info(good_h5, 0, &rc, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(txt, good_h5));
    assert_non_null(strstr(txt, "plansim_version"));
    assert_non_null(strstr(txt, "config_path"));
    assert_non_null(strstr(txt, "experiments/plot_test.json"));
    assert_non_null(strstr(txt, "bytes)")); /* config: first line and size */
    assert_null(strstr(txt, "\"figures\""));  /* ... not the whole text */
    assert_non_null(strstr(txt, "/pipeline/points"));
    assert_non_null(strstr(txt, "24 rows"));
    assert_non_null(strstr(txt, "/pipeline/summary"));
    assert_non_null(strstr(txt, "3 rows"));
    assert_non_null(strstr(txt, "/paper/fig6"));
    assert_non_null(strstr(txt, "GraphPipe Fig. 6, p. 9"));
    assert_non_null(strstr(txt, "makespan_s [s]"));
    assert_non_null(strstr(txt, "summary /pipeline/summary"));
    assert_non_null(strstr(txt, "pipedream"));
    assert_non_null(strstr(txt, "points /pipeline/points (24 rows)"));
    assert_non_null(strstr(txt, "1f1b"));
    free(txt);

    txt = capture_info(good_h5, 1, &rc, &e);
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *doc = json_loads(txt, 0, &je);
    if (!doc)
        print_error("not JSON (%s): %s\n", je.text, txt);
    assert_non_null(doc);
    free(txt);
    assert_string_equal(json_string_value(json_object_get(doc, "file")), good_h5);
    const json_t *attrs = json_object_get(doc, "attributes");
    assert_int_equal(json_integer_value(json_object_get(attrs, "seed")), 42);
    assert_string_equal(json_string_value(json_object_get(attrs, "study")), "pipeline");
    assert_non_null(strstr(json_string_value(json_object_get(attrs, "config")), "\"figures\""));
    const json_t *ds = json_object_get(doc, "datasets");
    assert_int_equal(json_array_size(ds), 3);
    int seen = 0;
    size_t i;
    const json_t *d;
    json_array_foreach(ds, i, d) {
        if (strcmp(json_string_value(json_object_get(d, "path")), "/pipeline/points") != 0)
            continue;
        seen = 1;
        assert_int_equal(json_integer_value(json_object_get(d, "rows")), 24);
        const json_t *cols = json_object_get(d, "columns");
        assert_int_equal(json_array_size(cols), 8);
        const json_t *c7 = json_array_get(cols, 7);
        assert_string_equal(json_string_value(json_object_get(c7, "name")), "makespan_s");
        assert_string_equal(json_string_value(json_object_get(c7, "type")), "double");
        assert_string_equal(json_string_value(json_object_get(c7, "units")), "s");
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(cols, 3), "type")), "string");
    }
    assert_true(seen);
    const json_t *sum = json_object_get(doc, "summary");
    assert_true(json_real_value(json_object_get(json_object_get(sum, "speedup"), "graphpipe")) ==
                1.5);
    assert_true(json_real_value(json_object_get(sum, "best_makespan_s")) == 5.0);
    const json_t *pts = json_object_get(doc, "points");
    assert_int_equal(json_array_size(pts), 24);
    const json_t *r0 = json_array_get(pts, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "schedule")), "gpipe");
    assert_int_equal(json_integer_value(json_object_get(r0, "microbatches")), 4);
    /* The NaN makespan (row 9: gpipe, stages 4, mb 1, repeat 1) is null. */
    assert_true(json_is_null(json_object_get(json_array_get(pts, 9), "makespan_s")));
    json_decref(doc);
    assert_no_open_hdf5();

    /* A truncated copy: an input error naming the file, nothing printed. */
    char cut[512];
    snprintf(cut, sizeof cut, "%s/cut.h5", dir);
    size_t len = 0;
    char *data = ps_file_read(good_h5, &len, &e);
    assert_non_null(data);
    ps_file_write_atomic(cut, data, len / 2, &e);
    free(data);
    ps_err_clear(&e);
    txt = capture_info(cut, 0, &rc, &e);
    assert_int_equal(rc, 2);
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, cut));
    assert_string_equal(txt, "");
    free(txt);
    snprintf(cut, sizeof cut, "%s/absent.h5", dir);
    txt = capture_info(cut, 1, &rc, &e);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e.msg, cut));
    free(txt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dat_and_drawing), cmocka_unit_test(test_validation),
        cmocka_unit_test(test_without_gnuplot), cmocka_unit_test(test_gnuplot_failure),
        cmocka_unit_test(test_info),
    };
    return cmocka_run_group_tests_name("plot", tests, setup, teardown);
}
