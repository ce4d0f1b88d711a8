/* HDF5 results: one file per run, written under NAME.h5.partial and renamed
 * to NAME.h5 only when the run finishes, so a crash never leaves a truncated
 * file under the final name.  Tables (common/table.h) become compound
 * datasets, extendible so that a run can append one sweep point at a time
 * and --resume can continue a partial file.  Every dataset carries a `units`
 * attribute: an array of strings aligned with its fields ("" for strings). */
#ifndef PS_H5IO_H
#define PS_H5IO_H

#include <hdf5.h>

#include "err.h"
#include "table.h"

typedef struct ps_h5 ps_h5;

/* Open the result file `path` for writing.  Writes go to `path.partial`.
 * - `path` exists and !force → PS_EINPUT ("exists; use --force").
 * - `path.partial` exists: resume → open it for appending (*resumed = 1);
 *   force → discarded and a new file started; neither → PS_EINPUT (an
 *   unfinished run is never thrown away silently). */
ps_h5 *ps_h5_open_result(const char *path, int force, int resume, int *resumed, ps_err *e);
hid_t ps_h5_file(const ps_h5 *h);
const char *ps_h5_partial_path(const ps_h5 *h);
/* Flush, close and rename the partial file to its final name. Frees h. */
int ps_h5_commit(ps_h5 *h, ps_err *e);
/* Close and leave the partial file in place (an interrupted run). Frees h. */
void ps_h5_close_partial(ps_h5 *h);

/* Open an existing file read-only; a missing, truncated or foreign file is a
 * PS_EINPUT error naming the path. */
hid_t ps_h5_open_read(const char *path, ps_err *e);

/* Attributes on an object (file or group id) at `obj_path` ("/" for root). */
int ps_h5_attr_set_str(hid_t loc, const char *obj_path, const char *name, const char *val,
                       ps_err *e);
int ps_h5_attr_set_double(hid_t loc, const char *obj_path, const char *name, double val,
                          ps_err *e);
int ps_h5_attr_set_int(hid_t loc, const char *obj_path, const char *name, long long val,
                       ps_err *e);
/* Read a string attribute (fixed or variable length); caller frees *out.
 * Missing → PS_EINPUT naming the attribute. */
int ps_h5_attr_get_str(hid_t loc, const char *obj_path, const char *name, char **out, ps_err *e);
int ps_h5_attr_get_double(hid_t loc, const char *obj_path, const char *name, double *out,
                          ps_err *e);

int ps_h5_exists(hid_t loc, const char *path);

/* Append rows [from, from+n) of t to the compound dataset at `path`
 * (creating it, its parent groups and its `units` attribute if needed; an
 * existing dataset must have the same fields). */
int ps_h5_table_append(hid_t loc, const char *path, const ps_table *t, size_t from, size_t n,
                       ps_err *e);
/* Write t as the whole dataset at path, replacing any previous one. */
int ps_h5_table_write(hid_t loc, const char *path, const ps_table *t, ps_err *e);
/* Read a compound dataset into a new table (integers → INT, floats →
 * DOUBLE, strings → STR; units from the `units` attribute). */
int ps_h5_table_read(hid_t loc, const char *path, ps_table **out, ps_err *e);

/* Visit every group and dataset below "/" in name order. */
typedef int (*ps_h5_visit_fn)(hid_t file, const char *path, int is_dataset, void *user);
int ps_h5_walk(hid_t file, ps_h5_visit_fn fn, void *user, ps_err *e);



/* Shrink a 1-D dataset to its first n rows (resume drops the rows of a
 * point that was cut off mid-write). */
int ps_h5_table_truncate(hid_t loc, const char *path, size_t n, ps_err *e);
#endif
