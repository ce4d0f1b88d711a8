/* CLI plumbing: `plansim <noun> <verb> [options]`, with --help at every
 * level.  Each noun lives in its own experiments/cli_*.c and exports a
 * ps_noun; main.c lists them. */
#ifndef PS_CLI_H
#define PS_CLI_H

#include <getopt.h>
#include <jansson.h>

#include "common/err.h"

typedef struct ps_verb {
    const char *name;
    const char *summary;
    int (*fn)(int argc, char **argv); /* argv[0] is "plansim NOUN VERB" */
} ps_verb;

typedef struct ps_noun {
    const char *name;
    const char *summary;
    const ps_verb *verbs; /* terminated by {NULL}; a noun with one verb
                             named "" runs it directly (e.g. `plansim run`) */
} ps_noun;

/* Print one JSON object on stdout (indent 2, full double precision). */
void ps_cli_print_json(json_t *j);
/* Report an error on stderr as "plansim: message" and return its code
 * (PS_EINPUT → 2, anything else → 1). */
int ps_cli_fail(const ps_err *e);
/* getopt_long wrapper state reset between verbs. */
void ps_cli_reset_getopt(void);
/* Standard usage error: prints "plansim: MSG (see CMD --help)" and returns 2. */
int ps_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The options every bench verb takes: --json, --quick and --help (prints
 * `usage`).  Returns -1 to go on, else the exit code to return (0 after
 * --help, 2 on a bad option or a stray argument). */
int ps_cli_bench_opts(int argc, char **argv, const char *usage, int *json, int *quick);
/* Parse a double / long option value strictly ("12x" is an error). */
int ps_cli_double(const char *cmd, const char *opt, const char *s, double *out);
int ps_cli_long(const char *cmd, const char *opt, const char *s, long *out);

#endif
