/* End-to-end tests of `plansim quant allocate`: the HAWQ ResNet18 golden
 * optimum through the binary (JSON output, frontier), exit codes and
 * messages for bad input and infeasible budgets.  Run from the repository
 * root (PLANSIM_BIN names the binary, default build/plansim). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "tests/cli_testutil.h"

#define R18 "tests/fixtures/hawq_resnet18.json"

static void test_help(void **state)
{
    (void)state;
    assert_int_equal(cli_sh("%s quant --help", cli_bin), 0);
    assert_true(cli_contains(cli_out, "allocate"));
    assert_int_equal(cli_sh("%s quant allocate --help", cli_bin), 0);
    assert_true(cli_contains(cli_out, "trace_per_param"));
    assert_true(cli_contains(cli_out, "--budget-latency"));
    assert_int_equal(cli_sh("%s quant allocate --omega %s", cli_bin, R18), 2);
    assert_true(cli_contains(cli_err, "give a budget"));
    assert_int_equal(cli_sh("%s quant allocate --budget-bytes 1", cli_bin), 2);
    assert_int_equal(cli_sh("%s quant allocate --omega %s --budget-bytes 12x", cli_bin, R18), 2);
    assert_int_equal(cli_sh("%s quant allocate --omega %s --size-frac .5 --method nope", cli_bin, R18), 2);
}

/* Golden ResNet18 optimum at half-way between all-4 and all-8 bits
 * (8368128 bytes = 7.98046875 MiB, the notebook's limit). */
static void test_golden_json(void **state)
{
    (void)state;
    assert_int_equal(cli_sh("%s quant allocate --omega %s --budget-bytes 8368128 --json --frontier",
                        cli_bin, R18),
                     0);
    json_error_t je;
    json_t *j = json_load_file(cli_out, 0, &je);
    assert_non_null(j);
    json_t *bits = json_object_get(j, "bits");
    assert_int_equal(json_array_size(bits), 19);
    const char *want = "8888888888888884844";
    for (size_t i = 0; i < 19; i++)
        assert_int_equal(json_integer_value(json_array_get(bits, i)), want[i] - '0');
    assert_true(fabs(json_number_value(json_object_get(j, "omega_sum")) - 0.0745) < 5e-5);
    assert_true(json_number_value(json_object_get(j, "size_bytes")) == 7618560.0);
    assert_true(json_number_value(json_object_get(j, "latency_s")) > 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "layers"), 18)),
                        "u18");
    json_t *f = json_object_get(j, "frontier");
    assert_true(json_array_size(f) > 10);
    double prev_s = -1, prev_o = INFINITY;
    int hit = 0;
    size_t i;
    json_t *pt;
    json_array_foreach(f, i, pt) {
        double s = json_number_value(json_object_get(pt, "size_bytes"));
        double o = json_number_value(json_object_get(pt, "omega_sum"));
        assert_true(s > prev_s);
        assert_true(o < prev_o);
        hit |= s == 7618560.0;
        prev_s = s;
        prev_o = o;
    }
    assert_true(hit);
    json_decref(j);
    /* the same through --size-frac, and the text form */
    assert_int_equal(cli_sh("%s quant allocate --omega %s --size-frac 0.25", cli_bin, R18), 0);
    assert_true(cli_contains(cli_out, "8888888888888844444"));
    /* two budgets at once */
    assert_int_equal(
        cli_sh("%s quant allocate --omega %s --size-frac 0.5 --latency-frac 0.5 --json", cli_bin, R18), 0);
    j = json_load_file(cli_out, 0, &je);
    assert_non_null(j);
    double lat = json_number_value(json_object_get(j, "latency_s"));
    double lb = json_number_value(json_object_get(json_object_get(j, "budget"), "latency_s"));
    assert_true(lat <= lb * (1 + 1e-12));
    json_decref(j);
}

static void test_errors(void **state)
{
    (void)state;
    assert_int_equal(cli_sh("%s quant allocate --omega %s --budget-bytes 1000", cli_bin, R18), 2);
    assert_true(cli_contains(cli_err, "smallest achievable size, 5578752 bytes"));
    char path[400];
    snprintf(path, sizeof path, "%s/bad.json", cli_tmp);
    cli_write(path, "{\"layers\":[{\"name\":\"a\",\"options\":[{\"bits\":4,\"omega\":1,"
                     "\"bytes\":10}]},{\"name\":\"b\",\"options\":[{\"bits\":4,\"omega\":1,"
                     "\"bytes\":10},{\"bits\":8,\"omega\":[],\"bytes\":20}]}]}");
    assert_int_equal(cli_sh("%s quant allocate --omega %s --budget-bytes 100", cli_bin, path), 2);
    char want[500];
    snprintf(want, sizeof want, "%s: layers[1].options[1].omega: expected a number", path);
    assert_true(cli_contains(cli_err, want));
    cli_write(path, "{\"layers\":[{\"name\":\"a\",\"options\":[{\"bits\":4,\"omega\":1,"
                     "\"bytes\":10,\"bytez\":3}]}]}");
    assert_int_equal(cli_sh("%s quant allocate --omega %s --budget-bytes 100", cli_bin, path), 2);
    assert_true(cli_contains(cli_err, "layers[0].options[0].bytez: unknown field"));
    cli_write(path, "{\"layers\": [");
    assert_int_equal(cli_sh("%s quant allocate --omega %s --budget-bytes 100", cli_bin, path), 2);
    assert_true(cli_contains(cli_err, "invalid JSON"));
    assert_int_equal(cli_sh("%s quant allocate --omega %s/none.json --budget-bytes 100", cli_bin, cli_tmp),
                     2);
    /* frontier cap → exit 1 */
    assert_int_equal(cli_sh("%s quant allocate --omega %s --size-frac .5 --max-states 2", cli_bin, R18), 1);
    assert_true(cli_contains(cli_err, "frontier too large"));
}

static void test_baseline_methods(void **state)
{
    (void)state;
    double om[4];
    static const char *const m[4] = {"exact", "greedy", "uniform", "random"};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(cli_sh("%s quant allocate --omega %s --size-frac 0.5 --method %s --json "
                            "--draws 200 --seed 3",
                            cli_bin, R18, m[k]),
                         0);
        json_error_t je;
        json_t *j = json_load_file(cli_out, 0, &je);
        assert_non_null(j);
        om[k] = json_number_value(json_object_get(j, "omega_sum"));
        assert_true(json_number_value(json_object_get(j, "size_bytes")) <= 8368128.0);
        json_decref(j);
    }
    for (int k = 1; k < 4; k++)
        assert_true(om[0] <= om[k]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_golden_json),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_baseline_methods),
    };
    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
