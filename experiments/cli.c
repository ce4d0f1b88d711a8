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
