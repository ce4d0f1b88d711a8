/* `plansim info FILE.h5`: what a result file holds, without h5dump or h5py.
 * Text: the root attributes (the config as its first line and size), every
 * group and dataset with its rows and columns (with units), every summary
 * table in full, and the points table when it is short (≤ 60 rows).
 * JSON (--json): one object
 *   {"file", "attributes": {name: value}, "groups": [path],
 *    "datasets": [{"path", "rows", "columns": [{"name", "type", "units"}],
 *                  "attributes": {...}}],
 *    "summary": {name: value, or {method: value}},
 *    "points": [{column: value}, ...]}   (every row; NaN → null). */
#ifndef PS_INFO_H
#define PS_INFO_H

#include <stdio.h>

#include "common/err.h"

/* Print to stdout.  A missing, truncated or foreign file is PS_EINPUT
 * naming the file; nothing is printed then. */
int ps_info_print(const char *h5_path, int as_json, ps_err *e);
/* The same, to any stream. */
int ps_info_fprint(FILE *out, const char *h5_path, int as_json, ps_err *e);

#endif
