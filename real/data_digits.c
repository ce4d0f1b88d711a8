/* The digits fixture reader: see real/data_digits.h. */
#include "real/data_digits.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void digits_free(digits_data *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* One line's 65 integers into v; 0 or a PS_EINPUT naming path:line. */
static int parse_line(const char *path, int64_t lineno, char *s, int v[DIGITS_FEATURES + 1],
                      ps_err *e)
{
    int k = 0;
    char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *end;
        long val = strtol(p, &end, 10);
        if (end == p)
            return ps_errf(e, PS_EINPUT, "%s:%lld: field %d: expected an integer, got '%.20s'",
                           path, (long long)lineno, k + 1, p);
        if (k >= DIGITS_FEATURES + 1)
            return ps_errf(e, PS_EINPUT, "%s:%lld: more than %d fields", path, (long long)lineno,
                           DIGITS_FEATURES + 1);
        int maxv = k < DIGITS_FEATURES ? 16 : DIGITS_CLASSES - 1;
        if (val < 0 || val > maxv)
            return ps_errf(e, PS_EINPUT, "%s:%lld: field %d: %ld out of range [0, %d] (%s)", path,
                           (long long)lineno, k + 1, val, maxv,
                           k < DIGITS_FEATURES ? "pixel" : "label");
        v[k++] = (int)val;
        p = end;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\n' || *p == '\0')
            break;
        return ps_errf(e, PS_EINPUT, "%s:%lld: field %d: unexpected character '%c'", path,
                       (long long)lineno, k, *p);
    }
    if (k != DIGITS_FEATURES + 1)
        return ps_errf(e, PS_EINPUT, "%s:%lld: %d fields, expected %d", path, (long long)lineno, k,
                       DIGITS_FEATURES + 1);
    return 0;
}

int digits_load(const char *path, digits_data *d, ps_err *e)
{
    memset(d, 0, sizeof *d);
    if (!path)
        path = DIGITS_FIXTURE;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ps_errf(e, PS_EINPUT, "%s: cannot open (the digits fixture, %s)", path,
                       DIGITS_FIXTURE);
    int64_t cap = 2048, n = 0, lineno = 0;
    double *x = malloc((size_t)cap * DIGITS_FEATURES * sizeof *x);
    int32_t *y = malloc((size_t)cap * sizeof *y);
    char line[1024];
    int rc = 0;
    if (!x || !y) {
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
        goto out;
    }
    while (gzgets(f, line, sizeof line)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = ps_errf(e, PS_EINPUT, "%s:%lld: line too long", path, (long long)lineno);
            goto out;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (*p == '\n' || *p == '\0')
            continue; /* blank line */
        int v[DIGITS_FEATURES + 1];
        if ((rc = parse_line(path, lineno, p, v, e)))
            goto out;
        if (n == cap) {
            cap *= 2;
            double *nx = realloc(x, (size_t)cap * DIGITS_FEATURES * sizeof *x);
            if (nx)
                x = nx;
            int32_t *ny = realloc(y, (size_t)cap * sizeof *y);
            if (ny)
                y = ny;
            if (!nx || !ny) {
                rc = ps_errf(e, PS_ERUN, "%s: out of memory", path);
                goto out;
            }
        }
        for (int j = 0; j < DIGITS_FEATURES; j++)
            x[n * DIGITS_FEATURES + j] = v[j] / 16.0;
        y[n++] = v[DIGITS_FEATURES];
    }
    int zerr;
    const char *zmsg = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        rc = ps_errf(e, PS_EINPUT, "%s: read error after line %lld: %s", path, (long long)lineno,
                     zmsg);
        goto out;
    }
    if (n == 0) {
        rc = ps_errf(e, PS_EINPUT, "%s: no data rows", path);
        goto out;
    }
    d->n = n;
    d->x = x;
    d->y = y;
    x = NULL;
    y = NULL;
out:
    gzclose(f);
    free(x);
    free(y);
    return rc;
}
