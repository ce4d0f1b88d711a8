#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ps_errf(ps_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void ps_err_prefix(ps_err *e, const char *fmt, ...)
{
    if (!e)
        return;
    char pre[1024], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s%s", pre, old);
}

void ps_err_clear(ps_err *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}
