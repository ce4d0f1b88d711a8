/* JSON access for configs and graphs (jansson).  Parse errors name the file,
 * line and column; type errors name the JSON path of the bad field
 * ("$.sweep.stages[2]"), so a user can find it without reading code. */
#ifndef PS_JSON_H
#define PS_JSON_H

#include <jansson.h>

#include "err.h"

/* Parse a file; on failure "FILE:LINE:COL: message" (or a missing-file
 * message) with PS_EINPUT. */
json_t *ps_json_load_file(const char *path, ps_err *e);
/* Parse text; `what` names the source in messages (e.g. "--op"). */
json_t *ps_json_load_str(const char *text, const char *what, ps_err *e);

/* "an integer", "a string", ... for messages. */
const char *ps_json_type_name(const json_t *v);

/* Typed field access.  `where` is the JSON path of obj ("$", "$.fixed").
 * If the key is absent: required → error "WHERE.KEY: missing", else *out
 * keeps its value (set the default first) and 0 is returned.  Type and range
 * errors name WHERE.KEY. */
int ps_json_get_int(const json_t *obj, const char *where, const char *key, int required,
                    long long *out, ps_err *e);
int ps_json_get_num(const json_t *obj, const char *where, const char *key, int required,
                    double *out, ps_err *e);
int ps_json_get_str(const json_t *obj, const char *where, const char *key, int required,
                    const char **out, ps_err *e);
int ps_json_get_bool(const json_t *obj, const char *where, const char *key, int required,
                     int *out, ps_err *e);

/* obj[key] as a number, NaN when it is missing or not a number (for
 * optional report fields read back from a file's own metadata). */
double ps_json_num_or_nan(const json_t *obj, const char *key);

/* Typed checks on a value already in hand (path given in full). */
int ps_json_as_int(const json_t *v, const char *path, long long *out, ps_err *e);
int ps_json_as_num(const json_t *v, const char *path, double *out, ps_err *e);

/* Reject keys of obj not in the NULL-terminated list: catches typos such as
 * "sweeep" instead of silently ignoring them. */
int ps_json_check_keys(const json_t *obj, const char *where, const char *const *allowed,
                       ps_err *e);

#endif
