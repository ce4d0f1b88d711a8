#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

json_t *ps_json_load_file(const char *path, ps_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ps_errf(e, PS_EINPUT, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root)
        ps_errf(e, PS_EINPUT, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    return root;
}

json_t *ps_json_load_str(const char *text, const char *what, ps_err *e)
{
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        ps_errf(e, PS_EINPUT, "%s:%d:%d: invalid JSON: %s", what, je.line, je.column, je.text);
    return root;
}

const char *ps_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static const json_t *field(const json_t *obj, const char *where, const char *key, int required,
                           ps_err *e, int *rc)
{
    *rc = 0;
    if (!json_is_object(obj)) {
        *rc = ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where,
                      obj ? ps_json_type_name(obj) : "nothing");
        return NULL;
    }
    const json_t *v = json_object_get(obj, key);
    if (!v && required)
        *rc = ps_errf(e, PS_EINPUT, "%s.%s: missing (required)", where, key);
    return v;
}

int ps_json_as_int(const json_t *v, const char *path, long long *out, ps_err *e)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) {
            *out = (long long)d;
            return 0;
        }
    }
    return ps_errf(e, PS_EINPUT, "%s: expected an integer, got %s", path, ps_json_type_name(v));
}

int ps_json_as_num(const json_t *v, const char *path, double *out, ps_err *e)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    return ps_errf(e, PS_EINPUT, "%s: expected a number, got %s", path, ps_json_type_name(v));
}

int ps_json_get_int(const json_t *obj, const char *where, const char *key, int required,
                    long long *out, ps_err *e)
{
    int rc;
    const json_t *v = field(obj, where, key, required, e, &rc);
    if (rc || !v)
        return rc;
    char path[512];
    snprintf(path, sizeof path, "%s.%s", where, key);
    return ps_json_as_int(v, path, out, e);
}

int ps_json_get_num(const json_t *obj, const char *where, const char *key, int required,
                    double *out, ps_err *e)
{
    int rc;
    const json_t *v = field(obj, where, key, required, e, &rc);
    if (rc || !v)
        return rc;
    char path[512];
    snprintf(path, sizeof path, "%s.%s", where, key);
    return ps_json_as_num(v, path, out, e);
}

int ps_json_get_str(const json_t *obj, const char *where, const char *key, int required,
                    const char **out, ps_err *e)
{
    int rc;
    const json_t *v = field(obj, where, key, required, e, &rc);
    if (rc || !v)
        return rc;
    if (!json_is_string(v))
        return ps_errf(e, PS_EINPUT, "%s.%s: expected a string, got %s", where, key,
                       ps_json_type_name(v));
    *out = json_string_value(v);
    return 0;
}

int ps_json_get_bool(const json_t *obj, const char *where, const char *key, int required,
                     int *out, ps_err *e)
{
    int rc;
    const json_t *v = field(obj, where, key, required, e, &rc);
    if (rc || !v)
        return rc;
    if (!json_is_boolean(v))
        return ps_errf(e, PS_EINPUT, "%s.%s: expected a boolean, got %s", where, key,
                       ps_json_type_name(v));
    *out = json_is_true(v);
    return 0;
}

int ps_json_check_keys(const json_t *obj, const char *where, const char *const *allowed,
                       ps_err *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok) {
            char list[512] = "";
            for (const char *const *a = allowed; *a; a++) {
                strncat(list, *a, sizeof list - strlen(list) - 3);
                if (a[1])
                    strncat(list, ", ", sizeof list - strlen(list) - 1);
            }
            return ps_errf(e, PS_EINPUT, "%s.%s: unknown field (expected one of: %s)", where,
                           key, list);
        }
    }
    return 0;
}

double ps_json_num_or_nan(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v && json_is_number(v) ? json_number_value(v) : NAN;
}
