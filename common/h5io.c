#define _POSIX_C_SOURCE 200809L
#include "h5io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct ps_h5 {
    hid_t file;
    char path[4096];
    char partial[4200];
};

/* HDF5 prints its own error stack to stderr by default; plansim reports one
 * precise message instead. */
static void quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static int path_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

ps_h5 *ps_h5_open_result(const char *path, int force, int resume, int *resumed, ps_err *e)
{
    quiet();
    if (resumed)
        *resumed = 0;
    if (path_exists(path) && !force && !resume) {
        ps_errf(e, PS_EINPUT, "%s: already exists; pass --force to replace it", path);
        return NULL;
    }
    ps_h5 *h = calloc(1, sizeof *h);
    if (!h) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    snprintf(h->path, sizeof h->path, "%s", path);
    snprintf(h->partial, sizeof h->partial, "%s.partial", path);
    if (resume && path_exists(h->partial)) {
        h->file = H5Fopen(h->partial, H5F_ACC_RDWR, H5P_DEFAULT);
        if (h->file < 0) {
            ps_errf(e, PS_EINPUT,
                    "%s: cannot resume: not a readable HDF5 file (truncated?); rerun without "
                    "--resume to start over",
                    h->partial);
            free(h);
            return NULL;
        }
        if (resumed)
            *resumed = 1;
        return h;
    }
    if (!resume && !force && path_exists(h->partial)) {
        ps_errf(e, PS_EINPUT,
                "%s: an unfinished run exists; pass --resume to continue it or --force to "
                "start over",
                h->partial);
        free(h);
        return NULL;
    }
    if (resume && path_exists(path) && !force) {
        ps_errf(e, PS_EINPUT, "%s: already complete (no %s to resume); pass --force to rerun",
                path, h->partial);
        free(h);
        return NULL;
    }
    h->file = H5Fcreate(h->partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (h->file < 0) {
        ps_errf(e, PS_ERUN, "%s: cannot create HDF5 file", h->partial);
        free(h);
        return NULL;
    }
    return h;
}

hid_t ps_h5_file(const ps_h5 *h)
{
    return h->file;
}

const char *ps_h5_partial_path(const ps_h5 *h)
{
    return h->partial;
}

int ps_h5_commit(ps_h5 *h, ps_err *e)
{
    int rc = 0;
    if (H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(h->file) < 0)
        rc = ps_errf(e, PS_ERUN, "%s: flush/close failed", h->partial);
    else if (rename(h->partial, h->path))
        rc = ps_errf(e, PS_ERUN, "%s: cannot rename to %s: %s", h->partial, h->path,
                     strerror(errno));
    free(h);
    return rc;
}

void ps_h5_close_partial(ps_h5 *h)
{
    if (!h)
        return;
    H5Fflush(h->file, H5F_SCOPE_GLOBAL);
    H5Fclose(h->file);
    free(h);
}

hid_t ps_h5_open_read(const char *path, ps_err *e)
{
    quiet();
    if (!path_exists(path)) {
        ps_errf(e, PS_EINPUT, "%s: no such file", path);
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        ps_errf(e, PS_EINPUT, "%s: not an HDF5 file", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        ps_errf(e, PS_EINPUT, "%s: cannot open as HDF5 (truncated or damaged?)", path);
    return f;
}

int ps_h5_exists(hid_t loc, const char *path)
{
    if (strcmp(path, "/") == 0)
        return 1;
    /* H5Lexists fails when an intermediate group is missing: check each. */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0)
                return 0;
            if (c == '\0')
                return 1;
            *p = c;
        }
    }
}

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* Create (or replace) attribute `name` on obj_path with type t and write buf. */
static int attr_write(hid_t loc, const char *obj_path, const char *name, hid_t t, hid_t space,
                      const void *buf, ps_err *e)
{
    if (H5Aexists_by_name(loc, obj_path, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(loc, obj_path, name, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(loc, obj_path, name, t, space, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, t, buf) < 0)
        rc = ps_errf(e, PS_ERUN, "HDF5: cannot write attribute %s on %s", name, obj_path);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

int ps_h5_attr_set_str(hid_t loc, const char *obj_path, const char *name, const char *val,
                       ps_err *e)
{
    hid_t t = vlen_str_type(), s = H5Screate(H5S_SCALAR);
    int rc = attr_write(loc, obj_path, name, t, s, &val, e);
    H5Sclose(s);
    H5Tclose(t);
    return rc;
}

int ps_h5_attr_set_double(hid_t loc, const char *obj_path, const char *name, double val,
                          ps_err *e)
{
    hid_t s = H5Screate(H5S_SCALAR);
    int rc = attr_write(loc, obj_path, name, H5T_NATIVE_DOUBLE, s, &val, e);
    H5Sclose(s);
    return rc;
}

int ps_h5_attr_set_int(hid_t loc, const char *obj_path, const char *name, long long val,
                       ps_err *e)
{
    hid_t s = H5Screate(H5S_SCALAR);
    int64_t v = val;
    int rc = attr_write(loc, obj_path, name, H5T_NATIVE_INT64, s, &v, e);
    H5Sclose(s);
    return rc;
}

/* H5Aread fills one value per element: reading an array attribute into a
 * single value would overrun the caller's buffer. */
static int attr_is_single(hid_t a)
{
    hid_t s = H5Aget_space(a);
    int ok = H5Sget_simple_extent_npoints(s) == 1;
    H5Sclose(s);
    return ok;
}

int ps_h5_attr_get_str(hid_t loc, const char *obj_path, const char *name, char **out, ps_err *e)
{
    *out = NULL;
    if (H5Aexists_by_name(loc, obj_path, name, H5P_DEFAULT) <= 0)
        return ps_errf(e, PS_EINPUT, "attribute %s missing on %s", name, obj_path);
    hid_t a = H5Aopen_by_name(loc, obj_path, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING || !attr_is_single(a)) {
        rc = ps_errf(e, PS_EINPUT, "attribute %s on %s is not a string", name, obj_path);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = vlen_str_type();
        /* HDF5 has no ASCII <-> UTF-8 conversion: read in the file's cset. */
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *v = NULL;
        if (H5Aread(a, mt, &v) < 0 || !v)
            rc = ps_errf(e, PS_EINPUT, "attribute %s on %s: read failed", name, obj_path);
        else
            *out = strdup(v);
        if (v) {
            hid_t s = H5Screate(H5S_SCALAR);
            H5Dvlen_reclaim(mt, s, H5P_DEFAULT, &v);
            H5Sclose(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(ft);
        char *v = calloc(1, n + 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n + 1);
        if (!v || H5Aread(a, mt, v) < 0) {
            free(v);
            rc = ps_errf(e, PS_EINPUT, "attribute %s on %s: read failed", name, obj_path);
        } else
            *out = v;
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

int ps_h5_attr_get_double(hid_t loc, const char *obj_path, const char *name, double *out,
                          ps_err *e)
{
    if (H5Aexists_by_name(loc, obj_path, name, H5P_DEFAULT) <= 0)
        return ps_errf(e, PS_EINPUT, "attribute %s missing on %s", name, obj_path);
    hid_t a = H5Aopen_by_name(loc, obj_path, name, H5P_DEFAULT, H5P_DEFAULT);
    int rc = !attr_is_single(a) || H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0
                 ? ps_errf(e, PS_EINPUT, "attribute %s on %s: not a number", name, obj_path)
                 : 0;
    H5Aclose(a);
    return rc;
}

/* The in-file row layout: fields packed in column order. */
static hid_t compound_type(const ps_table *t, size_t *row_bytes)
{
    size_t size = 0;
    for (size_t c = 0; c < t->ncols; c++)
        size += t->cols[c].type == PS_COL_STR ? PS_STR_LEN : 8;
    hid_t ct = H5Tcreate(H5T_COMPOUND, size);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, PS_STR_LEN);
    H5Tset_strpad(st, H5T_STR_NULLTERM);
    size_t off = 0;
    for (size_t c = 0; c < t->ncols; c++) {
        const ps_col *col = &t->cols[c];
        hid_t ft = col->type == PS_COL_INT      ? H5T_NATIVE_INT64
                   : col->type == PS_COL_DOUBLE ? H5T_NATIVE_DOUBLE
                                                : st;
        H5Tinsert(ct, col->name, off, ft);
        off += col->type == PS_COL_STR ? PS_STR_LEN : 8;
    }
    H5Tclose(st);
    *row_bytes = size;
    return ct;
}

static void pack_rows(const ps_table *t, size_t from, size_t n, char *buf, size_t row_bytes)
{
    for (size_t r = 0; r < n; r++) {
        char *p = buf + r * row_bytes;
        for (size_t c = 0; c < t->ncols; c++) {
            const ps_col *col = &t->cols[c];
            if (col->type == PS_COL_STR) {
                memcpy(p, col->v.s[from + r], PS_STR_LEN);
                p += PS_STR_LEN;
            } else {
                memcpy(p, col->type == PS_COL_INT ? (void *)&col->v.i[from + r]
                                                  : (void *)&col->v.d[from + r],
                       8);
                p += 8;
            }
        }
    }
}

static int write_units(hid_t loc, const char *path, const ps_table *t, ps_err *e)
{
    const char **units = calloc(t->ncols ? t->ncols : 1, sizeof *units);
    if (!units)
        return ps_errf(e, PS_ERUN, "out of memory");
    for (size_t c = 0; c < t->ncols; c++)
        units[c] = t->cols[c].units;
    hsize_t dim = t->ncols;
    hid_t s = H5Screate_simple(1, &dim, NULL), st = vlen_str_type();
    int rc = attr_write(loc, path, "units", st, s, units, e);
    H5Tclose(st);
    H5Sclose(s);
    free(units);
    return rc;
}

/* Does the dataset's compound type have exactly t's fields, in order? */
static int same_fields(hid_t dt, const ps_table *t)
{
    if (H5Tget_class(dt) != H5T_COMPOUND || (size_t)H5Tget_nmembers(dt) != t->ncols)
        return 0;
    for (size_t c = 0; c < t->ncols; c++) {
        char *nm = H5Tget_member_name(dt, (unsigned)c);
        int ok = nm && strcmp(nm, t->cols[c].name) == 0;
        H5free_memory(nm);
        if (!ok)
            return 0;
    }
    return 1;
}

int ps_h5_table_append(hid_t loc, const char *path, const ps_table *t, size_t from, size_t n,
                       ps_err *e)
{
    size_t row_bytes;
    hid_t ct = compound_type(t, &row_bytes);
    hid_t d;
    int rc = 0;
    if (ps_h5_exists(loc, path)) {
        d = H5Dopen2(loc, path, H5P_DEFAULT);
        hid_t dt = d >= 0 ? H5Dget_type(d) : -1;
        if (d < 0 || !same_fields(dt, t))
            rc = ps_errf(e, PS_EINPUT, "%s: existing table has different columns", path);
        if (dt >= 0)
            H5Tclose(dt);
        if (rc) {
            if (d >= 0)
                H5Dclose(d);
            H5Tclose(ct);
            return rc;
        }
    } else {
        hsize_t zero = 0, unlim = H5S_UNLIMITED, chunk = 256;
        hid_t sp = H5Screate_simple(1, &zero, &unlim);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 1, &chunk);
        H5Pset_deflate(dcpl, 4);
        d = H5Dcreate2(loc, path, ct, sp, lcpl, dcpl, H5P_DEFAULT);
        H5Pclose(dcpl);
        H5Pclose(lcpl);
        H5Sclose(sp);
        if (d < 0) {
            H5Tclose(ct);
            return ps_errf(e, PS_ERUN, "%s: cannot create dataset", path);
        }
        if ((rc = write_units(loc, path, t, e))) {
            H5Dclose(d);
            H5Tclose(ct);
            return rc;
        }
    }
    if (n > 0) {
        char *buf = malloc(n * row_bytes);
        hid_t fs = H5Dget_space(d);
        hsize_t old;
        H5Sget_simple_extent_dims(fs, &old, NULL);
        H5Sclose(fs);
        hsize_t nsize = old + n, start = old, count = n;
        if (!buf || H5Dset_extent(d, &nsize) < 0) {
            rc = ps_errf(e, PS_ERUN, "%s: cannot extend dataset", path);
        } else {
            pack_rows(t, from, n, buf, row_bytes);
            fs = H5Dget_space(d);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
            hid_t ms = H5Screate_simple(1, &count, NULL);
            if (H5Dwrite(d, ct, ms, fs, H5P_DEFAULT, buf) < 0)
                rc = ps_errf(e, PS_ERUN, "%s: write failed", path);
            H5Sclose(ms);
            H5Sclose(fs);
        }
        free(buf);
    }
    H5Dclose(d);
    H5Tclose(ct);
    return rc;
}

int ps_h5_table_write(hid_t loc, const char *path, const ps_table *t, ps_err *e)
{
    if (ps_h5_exists(loc, path) && H5Ldelete(loc, path, H5P_DEFAULT) < 0)
        return ps_errf(e, PS_ERUN, "%s: cannot replace dataset", path);
    return ps_h5_table_append(loc, path, t, 0, t->nrows, e);
}

int ps_h5_table_read(hid_t loc, const char *path, ps_table **out, ps_err *e)
{
    *out = NULL;
    if (!ps_h5_exists(loc, path))
        return ps_errf(e, PS_EINPUT, "dataset %s missing", path);
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    if (d < 0)
        return ps_errf(e, PS_EINPUT, "%s: not a dataset", path);
    hid_t dt = H5Dget_type(d);
    int rc = 0;
    ps_table *t = NULL;
    char **units = NULL;
    hsize_t nunits = 0;
    if (H5Tget_class(dt) != H5T_COMPOUND) {
        rc = ps_errf(e, PS_EINPUT, "%s: not a table (compound dataset)", path);
        goto done;
    }
    if (H5Aexists(d, "units") > 0) {
        hid_t a = H5Aopen(d, "units", H5P_DEFAULT);
        hid_t as = H5Aget_space(a);
        H5Sget_simple_extent_dims(as, &nunits, NULL);
        units = calloc(nunits ? nunits : 1, sizeof *units);
        hid_t st = vlen_str_type(), at = H5Aget_type(a);
        H5Tset_cset(st, H5Tget_cset(at)); /* no ASCII <-> UTF-8 conversion in HDF5 */
        H5Tclose(at);
        if (units && H5Aread(a, st, units) < 0)
            nunits = 0;
        H5Tclose(st);
        H5Sclose(as);
        H5Aclose(a);
    }
    t = ps_table_new();
    int nm = H5Tget_nmembers(dt);
    for (int c = 0; c < nm; c++) {
        char *name = H5Tget_member_name(dt, (unsigned)c);
        H5T_class_t cls = H5Tget_member_class(dt, (unsigned)c);
        ps_col_type ty = cls == H5T_INTEGER ? PS_COL_INT : cls == H5T_FLOAT ? PS_COL_DOUBLE
                                                                             : PS_COL_STR;
        const char *u = (hsize_t)c < nunits && units && units[c] ? units[c] : "";
        if (ps_table_add_col(t, name, ty, u) < 0)
            rc = ps_errf(e, PS_EINPUT, "%s: bad column %s", path, name);
        H5free_memory(name);
    }
    if (rc)
        goto done;
    hid_t fs = H5Dget_space(d);
    hsize_t n;
    H5Sget_simple_extent_dims(fs, &n, NULL);
    H5Sclose(fs);
    for (hsize_t r = 0; r < n && !rc; r++)
        if (ps_table_add_row(t) == (size_t)-1)
            rc = ps_errf(e, PS_ERUN, "%s: out of memory for %llu rows", path,
                         (unsigned long long)n);
    if (rc)
        goto done;
    /* Read column by column through single-member memory types: HDF5
     * converts integer and float widths for us. */
    for (size_t c = 0; c < t->ncols && n > 0; c++) {
        ps_col *col = &t->cols[c];
        hid_t ft = col->type == PS_COL_INT ? H5Tcopy(H5T_NATIVE_INT64)
                   : col->type == PS_COL_DOUBLE ? H5Tcopy(H5T_NATIVE_DOUBLE)
                                                : H5Tcopy(H5T_C_S1);
        if (col->type == PS_COL_STR)
            H5Tset_size(ft, PS_STR_LEN);
        size_t w = col->type == PS_COL_STR ? PS_STR_LEN : 8;
        hid_t mt = H5Tcreate(H5T_COMPOUND, w);
        H5Tinsert(mt, col->name, 0, ft);
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, col->v.d) < 0)
            rc = ps_errf(e, PS_EINPUT, "%s: cannot read column %s", path, col->name);
        if (col->type == PS_COL_STR)
            for (hsize_t r = 0; r < n; r++)
                col->v.s[r][PS_STR_LEN - 1] = '\0';
        H5Tclose(mt);
        H5Tclose(ft);
    }
done:
    if (units) {
        hid_t st = vlen_str_type();
        hid_t s = H5Screate_simple(1, &nunits, NULL);
        if (nunits)
            H5Dvlen_reclaim(st, s, H5P_DEFAULT, units);
        H5Sclose(s);
        H5Tclose(st);
        free(units);
    }
    H5Tclose(dt);
    H5Dclose(d);
    if (rc)
        ps_table_free(t);
    else
        *out = t;
    return rc;
}

struct walk_ctx {
    ps_h5_visit_fn fn;
    void *user;
    hid_t file;
    int rc;
};

static herr_t walk_cb(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    struct walk_ctx *w = op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0)
        return 0;
    H5I_type_t ty = H5Iget_type(o);
    H5Oclose(o);
    char path[1024];
    snprintf(path, sizeof path, "/%s", name);
    w->rc = w->fn(w->file, path, ty == H5I_DATASET, w->user);
    return w->rc ? 1 : 0;
}

int ps_h5_walk(hid_t file, ps_h5_visit_fn fn, void *user, ps_err *e)
{
    struct walk_ctx w = {fn, user, file, 0};
    if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, walk_cb, &w) < 0)
        return ps_errf(e, PS_EINPUT, "HDF5: cannot list the file's contents");
    return w.rc;
}

int ps_h5_table_truncate(hid_t loc, const char *path, size_t n, ps_err *e)
{
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    if (d < 0)
        return ps_errf(e, PS_EINPUT, "dataset %s missing", path);
    hsize_t sz = n;
    int rc = H5Dset_extent(d, &sz) < 0 ? ps_errf(e, PS_ERUN, "%s: cannot shrink", path) : 0;
    H5Dclose(d);
    return rc;
}
