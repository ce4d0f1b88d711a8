#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void ps_cli_print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    fputc('\n', stdout);
}

int ps_cli_fail(const ps_err *e)
{
    fprintf(stderr, "plansim: %s\n", e->msg[0] ? e->msg : "failed");
    return e->code == PS_EINPUT ? 2 : 1;
}

void ps_cli_reset_getopt(void)
{
    optind = 0; /* glibc: 0 forces a full re-initialisation */
    opterr = 1;
}

int ps_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "plansim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see '%s --help')\n", cmd);
    va_end(ap);
    return 2;
}

int ps_cli_double(const char *cmd, const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return ps_cli_usage(cmd, "%s: '%s' is not a number", opt, s);
    *out = v;
    return 0;
}

int ps_cli_long(const char *cmd, const char *opt, const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return ps_cli_usage(cmd, "%s: '%s' is not an integer", opt, s);
    *out = v;
    return 0;
}

int ps_cli_bench_opts(int argc, char **argv, const char *usage, int *json, int *quick)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"quick", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    *json = *quick = 0;
    ps_cli_reset_getopt();
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'j': *json = 1; break;
        case 'q': *quick = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return ps_cli_usage(argv[0], "bad option");
        }
    }
    if (optind != argc)
        return ps_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
    return -1;
}
