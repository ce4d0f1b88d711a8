/* Shared harness for end-to-end tests of the plansim binary: run a command
 * line with stdout and stderr captured in files under a temporary folder,
 * parse stdout as JSON, look for text in stderr.  Runs $PLANSIM_BIN
 * (tests/run.sh sets it to the build under test) or build/plansim.
 * Include once per test file, after cmocka.h. */
#ifndef PS_TESTS_CLI_TESTUTIL_H
#define PS_TESTS_CLI_TESTUTIL_H

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *cli_bin;
static char cli_tmp[256], cli_out[300], cli_err[300];

static int cli_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int cli_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >%s 2>%s", cli_out, cli_err);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* stdout as JSON (fails the test when it is not). */
static __attribute__((unused)) json_t *cli_json(void)
{
    json_error_t je;
    json_t *j = json_load_file(cli_out, 0, &je);
    if (!j)
        fail_msg("stdout is not JSON: %s", je.text);
    return j;
}

static __attribute__((unused)) int cli_err_has(const char *needle)
{
    FILE *f = fopen(cli_err, "r");
    char buf[8192] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    if (!strstr(buf, needle)) {
        fprintf(stderr, "--- stderr lacks \"%s\"; it holds:\n%s\n", needle, buf);
        return 0;
    }
    return 1;
}

/* 1 iff the file holds needle (prints the file when it does not). */
static __attribute__((unused)) int cli_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    static char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    if (!strstr(buf, needle)) {
        fprintf(stderr, "--- %s lacks \"%s\"; it holds:\n%s\n", path, needle, buf);
        return 0;
    }
    return 1;
}

static __attribute__((unused)) void cli_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static __attribute__((unused)) int cli_setup(void **st)
{
    (void)st;
    cli_bin = getenv("PLANSIM_BIN");
    if (!cli_bin)
        cli_bin = "build/plansim";
    snprintf(cli_tmp, sizeof cli_tmp, "/tmp/plansim-cli-test.XXXXXX");
    if (!mkdtemp(cli_tmp))
        return -1;
    snprintf(cli_out, sizeof cli_out, "%s/stdout.txt", cli_tmp);
    snprintf(cli_err, sizeof cli_err, "%s/stderr.txt", cli_tmp);
    setenv("PLANSIM_QUIET", "1", 1);
    return 0;
}

static __attribute__((unused)) int cli_teardown(void **st)
{
    (void)st;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cli_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
