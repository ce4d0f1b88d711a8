/* Error reporting for plansim: every fallible function returns an int status
 * (0 = success) or NULL, and fills a ps_err with one precise message that
 * names the file, the field and the value at fault.  No exit() below main. */
#ifndef PS_ERR_H
#define PS_ERR_H

#include <stddef.h>

/* Status codes double as process exit codes (README, "Exit codes"). */
enum {
    PS_OK = 0,
    PS_ERUN = 1,   /* a run failed (I/O, numerical, out of memory in a plan) */
    PS_EINPUT = 2, /* bad usage or bad input: config, graph, file, option */
};

typedef struct ps_err {
    int code;
    char msg[2048];
} ps_err;

/* Set the message (printf-style) and the code; returns the code so callers
 * can write `return ps_errf(e, PS_EINPUT, "...")`.  e may be NULL. */
int ps_errf(ps_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend context ("config.json: ") to an existing message. */
void ps_err_prefix(ps_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void ps_err_clear(ps_err *e);

#endif
