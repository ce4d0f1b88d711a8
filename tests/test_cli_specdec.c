/* `plansim specdec tree|expected|optimize` end to end: the issue's
 * acceptance commands, their JSON fields checked against closed forms
 * computed here by hand and against the library, the atomic -o output, and
 * bad input (exit 2, a message naming the file and field, no file left). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sys/stat.h>

#include "sim/specdec/build.h"
#include "sim/specdec/tree.h"
#include "tests/cli_testutil.h"

static const double P5[5] = {0.68, 0.09, 0.04, 0.03, 0.01};
#define P5S "0.68,0.09,0.04,0.03,0.01"

static double num(const json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    if (!json_is_number(v))
        fail_msg("field %s missing or not a number", k);
    return json_number_value(v);
}

/* <1,1,3,1,1,1,1,1> under positional p, by hand: depth 1-2 chain (p1, p1^2),
 * then three branches of ranks 1..3, each followed by a rank-1 chain of 5. */
static double spec_tree_by_hand(const double *p)
{
    double e = 1 + p[0] + p[0] * p[0];
    for (int r = 0; r < 3; r++) {
        double v = p[0] * p[0] * p[r];
        for (int d = 0; d < 6; d++) {
            e += v;
            v *= p[0];
        }
    }
    return e;
}

static void test_tree_expansion(void **st)
{
    (void)st;
    assert_int_equal(cli_sh("%s specdec tree --expansion 1,1,3,1,1,1,1,1 --json", cli_bin), 0);
    json_t *j = cli_json();
    assert_int_equal((int)num(j, "num_nodes"), 21);
    assert_int_equal((int)num(j, "depth"), 8);
    json_t *par = json_object_get(j, "parents");
    assert_true(json_is_array(par));
    assert_int_equal(json_array_size(par), 21);
    /* DFS order: 0 -> 1 -> 2, then three chains of 6 hanging from node 2 */
    static const int want[21] = {-1, 0, 1, 2, 3, 4, 5, 6, 7, 2, 9,
                                 10, 11, 12, 13, 2, 15, 16, 17, 18, 19};
    for (int i = 0; i < 21; i++)
        assert_int_equal(json_integer_value(json_array_get(par, (size_t)i)), want[i]);
    json_decref(j);
}

static void test_expected_matches_hand(void **st)
{
    (void)st;
    char tree[400];
    snprintf(tree, sizeof tree, "%s/T.json", cli_tmp);
    assert_int_equal(cli_sh("%s specdec tree --expansion 1,1,3,1,1,1,1,1 -o %s", cli_bin, tree), 0);
    assert_int_equal(cli_sh("%s specdec expected --tree %s --acceptance " P5S " --json --mc 100000",
                            cli_bin, tree),
                     0);
    json_t *j = cli_json();
    double e = num(j, "tokens_per_step");
    double hand = spec_tree_by_hand(P5);
    assert_true(fabs(e - hand) < 1e-12);
    assert_true(fabs(e - 3.1971305549627398) < 1e-9); /* the value docs/specdec.md quotes */
    double mc = num(j, "mc_tokens_per_step"), se = num(j, "mc_stderr");
    assert_true(se > 0 && se < 0.02);
    assert_true(fabs(mc - e) < 5 * se);
    json_decref(j);
}

static void test_optimize_matches_library(void **st)
{
    (void)st;
    for (int n = 1; n <= 40; n += 13) {
        assert_int_equal(cli_sh("%s specdec optimize --nodes %d --acceptance " P5S " --json --curve",
                                cli_bin, n),
                         0);
        json_t *j = cli_json();
        ps_err e = {0};
        double v = 0;
        sd_tree *t = sd_sequoia_opt(P5, 5, n, 0, &v, NULL, &e);
        assert_non_null(t);
        assert_int_equal((int)num(j, "num_nodes"), n);
        assert_true(fabs(num(j, "tokens_per_step") - v) < 1e-12);
        /* the printed tree really has that value */
        json_t *tj = json_pack("{sO}", "parents", json_object_get(j, "parents"));
        sd_tree *back = sd_tree_from_json(tj, "stdout", &e);
        json_decref(tj);
        if (!back)
            fail_msg("%s", e.msg);
        assert_non_null(back);
        double ev = 0;
        assert_int_equal(sd_tree_expected_tokens(back, P5, 5, &ev, &e), 0);
        assert_true(fabs(ev - v) < 1e-12);
        json_t *curve = json_object_get(j, "curve");
        assert_int_equal(json_array_size(curve), n);
        assert_true(fabs(json_real_value(json_array_get(curve, 0)) - 1.0) < 1e-15);
        /* more nodes never hurt */
        for (size_t i = 1; i < json_array_size(curve); i++)
            assert_true(json_real_value(json_array_get(curve, i)) >=
                        json_real_value(json_array_get(curve, i - 1)) - 1e-12);
        sd_tree_free(back);
        sd_tree_free(t);
        json_decref(j);
    }
    /* 21 nodes: the optimum beats SpecInfer's hand-picked 21-node tree */
    assert_int_equal(cli_sh("%s specdec optimize --nodes 21 --acceptance " P5S " --json", cli_bin),
                     0);
    json_t *j = cli_json();
    assert_true(num(j, "tokens_per_step") > spec_tree_by_hand(P5) + 0.3);
    json_decref(j);
}

static void test_choices_and_merge(void **st)
{
    (void)st;
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/a.json", cli_tmp);
    snprintf(b, sizeof b, "%s/b.json", cli_tmp);
    FILE *f = fopen(a, "w");
    fputs("{\"parents\": [-1, 0, 1], \"tokens\": [0, 5, 7]}\n", f);
    fclose(f);
    f = fopen(b, "w");
    fputs("{\"parents\": [-1, 0, 1, 0], \"tokens\": [0, 5, 8, 9]}\n", f);
    fclose(f);
    assert_int_equal(cli_sh("%s specdec tree --merge %s,%s --json", cli_bin, a, b), 0);
    json_t *j = cli_json();
    /* root, 5, 5->7, 5->8, 9 */
    assert_int_equal((int)num(j, "num_nodes"), 5);
    assert_int_equal((int)num(j, "depth"), 2);
    json_decref(j);
    assert_int_equal(cli_sh("%s specdec tree --choices '[[0],[0,0],[1],[0,1]]' --acceptance 0.5,0.25 "
                            "--json",
                            cli_bin),
                     0);
    j = cli_json();
    assert_int_equal((int)num(j, "num_nodes"), 5);
    /* 1 + (.5 + .25) + .5 * (.5 + .25) */
    assert_true(fabs(num(j, "tokens_per_step") - 2.125) < 1e-12);
    json_decref(j);
}

static void test_bad_input(void **st)
{
    (void)st;
    char bad[400], out[400];
    snprintf(bad, sizeof bad, "%s/bad.json", cli_tmp);
    snprintf(out, sizeof out, "%s/never.json", cli_tmp);
    FILE *f = fopen(bad, "w");
    fputs("{\"parents\": [-1, 0, 5]}\n", f);
    fclose(f);
    assert_int_equal(cli_sh("%s specdec expected --tree %s --acceptance 0.5", cli_bin, bad), 2);
    assert_true(cli_err_has("bad.json.parents[2]"));
    assert_int_equal(cli_sh("%s specdec expected --expansion 1,2 --acceptance 0.7,0.4", cli_bin), 2);
    assert_true(cli_err_has("sum"));
    assert_int_equal(cli_sh("%s specdec tree --expansion 1,0,2", cli_bin), 2);
    assert_true(cli_err_has("--expansion"));
    assert_int_equal(cli_sh("%s specdec tree --sequoia 5 --acceptance 0.9,0.3 -o %s", cli_bin, out),
                     2);
    struct stat sb;
    assert_true(stat(out, &sb) != 0); /* nothing written under the final name */
    assert_int_equal(cli_sh("%s specdec optimize --nodes 0 --acceptance 0.5", cli_bin), 2);
    assert_int_equal(cli_sh("%s specdec expected --expansion 2 --matrix '[[0.5, \"x\"]]'", cli_bin),
                     2);
    assert_true(cli_err_has("--matrix[0][1]"));
    assert_int_equal(cli_sh("%s specdec tree --expansion 1 --tree %s", cli_bin, bad), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_expansion),
        cmocka_unit_test(test_expected_matches_hand),
        cmocka_unit_test(test_optimize_matches_library),
        cmocka_unit_test(test_choices_and_merge),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
