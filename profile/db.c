#include "db.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/util.h"

/* ------------------------------------------------------------ writer */

typedef struct attr_kv {
    char name[64];
    char *sval; /* NULL → ival */
    long long ival;
} attr_kv;

struct ps_db_writer {
    char path[4096];
    int force;
    int is_cuda;
    char device_kind[16];
    char *device_name, *suite_json;
    int threads, pinned_core;
    attr_kv *attrs;
    size_t nattrs;
    ps_table *ops, *peaks, *kernels, *overhead;
    char **knames;
    size_t nknames, capknames;
};

static ps_table *ops_layout(int is_cuda)
{
    ps_table *t = ps_table_new();
    if (!t)
        return NULL;
    ps_table_add_col(t, "op", PS_COL_INT, "");
    ps_table_add_col(t, "kind", PS_COL_STR, "");
    ps_table_add_col(t, "dtype", PS_COL_STR, "");
    ps_table_add_col(t, "variant", PS_COL_STR, "");
    for (int i = 0; i < PS_OP_MAXDIM; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "d%d", i);
        ps_table_add_col(t, nm, PS_COL_INT, "");
    }
    ps_table_add_col(t, "shape", PS_COL_STR, "");
    ps_table_add_col(t, "flops", PS_COL_DOUBLE, "flop");
    ps_table_add_col(t, "bytes", PS_COL_DOUBLE, "B");
    ps_table_add_col(t, "backend", PS_COL_STR, "");
    ps_table_add_col(t, "repeats", PS_COL_INT, "");
    ps_table_add_col(t, "median_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "p10_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "p90_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "min_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "mean_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "timer", PS_COL_STR, "");
    if (is_cuda)
        ps_table_add_col(t, "event_median_s", PS_COL_DOUBLE, "s");
    return t;
}

static ps_table *peaks_layout(void)
{
    ps_table *t = ps_table_new();
    if (!t)
        return NULL;
    ps_table_add_col(t, "name", PS_COL_STR, "");
    ps_table_add_col(t, "value", PS_COL_DOUBLE, "");
    ps_table_add_col(t, "units", PS_COL_STR, "");
    return t;
}

static ps_table *kernels_layout(void)
{
    static const char *cols[] = {"op",      "correlation", "name_idx",  "grid_x",
                                 "grid_y",  "grid_z",      "block_x",   "block_y",
                                 "block_z", "registers",   "shared_bytes", "start_ns",
                                 "end_ns",  "stream"};
    ps_table *t = ps_table_new();
    if (!t)
        return NULL;
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        const char *u = !strcmp(cols[i], "shared_bytes")                          ? "B"
                        : !strcmp(cols[i], "start_ns") || !strcmp(cols[i], "end_ns") ? "ns"
                                                                                      : "";
        ps_table_add_col(t, cols[i], PS_COL_INT, u);
    }
    return t;
}

static ps_table *overhead_layout(void)
{
    ps_table *t = ps_table_new();
    if (!t)
        return NULL;
    ps_table_add_col(t, "op", PS_COL_INT, "");
    ps_table_add_col(t, "traced_median_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "untraced_median_s", PS_COL_DOUBLE, "s");
    ps_table_add_col(t, "overhead_ratio", PS_COL_DOUBLE, "");
    return t;
}

static void writer_free(ps_db_writer *w)
{
    if (!w)
        return;
    free(w->device_name);
    free(w->suite_json);
    for (size_t i = 0; i < w->nattrs; i++)
        free(w->attrs[i].sval);
    free(w->attrs);
    ps_table_free(w->ops);
    ps_table_free(w->peaks);
    ps_table_free(w->kernels);
    ps_table_free(w->overhead);
    for (size_t i = 0; i < w->nknames; i++)
        free(w->knames[i]);
    free(w->knames);
    free(w);
}

ps_db_writer *ps_db_writer_open(const char *path, const ps_db_meta *m, int force, ps_err *e)
{
    if (!path || !*path) {
        ps_errf(e, PS_EINPUT, "no output database path (-o DB.h5)");
        return NULL;
    }
    if (!force && ps_file_exists(path)) {
        ps_errf(e, PS_EINPUT, "%s: already exists; pass --force to replace it", path);
        return NULL;
    }
    if (!m || !m->device_kind ||
        (strcmp(m->device_kind, "cpu") && strcmp(m->device_kind, "cuda"))) {
        ps_errf(e, PS_EINPUT, "profile database: device_kind must be \"cpu\" or \"cuda\"");
        return NULL;
    }
    ps_db_writer *w = calloc(1, sizeof *w);
    if (!w) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->force = force;
    w->is_cuda = !strcmp(m->device_kind, "cuda");
    snprintf(w->device_kind, sizeof w->device_kind, "%s", m->device_kind);
    w->device_name = strdup(m->device_name ? m->device_name : "");
    w->suite_json = strdup(m->suite_json ? m->suite_json : "");
    w->threads = m->threads;
    w->pinned_core = m->pinned_core;
    w->ops = ops_layout(w->is_cuda);
    w->peaks = peaks_layout();
    w->kernels = kernels_layout();
    w->overhead = overhead_layout();
    if (!w->device_name || !w->suite_json || !w->ops || !w->peaks || !w->kernels ||
        !w->overhead) {
        writer_free(w);
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    return w;
}

static attr_kv *attr_slot(ps_db_writer *w, const char *name, ps_err *e)
{
    for (size_t i = 0; i < w->nattrs; i++)
        if (!strcmp(w->attrs[i].name, name)) {
            free(w->attrs[i].sval);
            w->attrs[i].sval = NULL;
            return &w->attrs[i];
        }
    attr_kv *a = realloc(w->attrs, (w->nattrs + 1) * sizeof *a);
    if (!a) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    w->attrs = a;
    a = &w->attrs[w->nattrs++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    return a;
}

int ps_db_writer_set_attr_str(ps_db_writer *w, const char *name, const char *val, ps_err *e)
{
    if (!strcmp(name, "device_name")) {
        char *d = strdup(val ? val : "");
        if (!d)
            return ps_errf(e, PS_ERUN, "out of memory");
        free(w->device_name);
        w->device_name = d;
        return 0;
    }
    attr_kv *a = attr_slot(w, name, e);
    if (!a)
        return PS_ERUN;
    a->sval = strdup(val ? val : "");
    return a->sval ? 0 : ps_errf(e, PS_ERUN, "out of memory");
}

int ps_db_writer_set_attr_int(ps_db_writer *w, const char *name, long long val, ps_err *e)
{
    attr_kv *a = attr_slot(w, name, e);
    if (!a)
        return PS_ERUN;
    a->ival = val;
    return 0;
}

int ps_db_writer_add_peak(ps_db_writer *w, const char *name, double value, const char *units,
                          ps_err *e)
{
    size_t r = (size_t)-1;
    for (size_t i = 0; i < w->peaks->nrows; i++)
        if (!strcmp(ps_table_get_s(w->peaks, i, 0), name))
            r = i;
    if (r == (size_t)-1 && (r = ps_table_add_row(w->peaks)) == (size_t)-1)
        return ps_errf(e, PS_ERUN, "out of memory");
    ps_table_set_s(w->peaks, r, 0, name);
    ps_table_set_d(w->peaks, r, 1, value);
    ps_table_set_s(w->peaks, r, 2, units ? units : "");
    return 0;
}

int64_t ps_db_writer_add_op(ps_db_writer *w, const ps_op *op, const char *backend,
                            const char *timer, const ps_stats *st, double event_median_s,
                            ps_err *e)
{
    if (ps_op_validate(op, "op", e))
        return -1;
    ps_table *t = w->ops;
    size_t r = ps_table_add_row(t);
    if (r == (size_t)-1) {
        ps_errf(e, PS_ERUN, "out of memory");
        return -1;
    }
    int c = 0;
    ps_table_set_i(t, r, c++, (int64_t)r);
    ps_table_set_s(t, r, c++, op->kind);
    ps_table_set_s(t, r, c++, op->dtype);
    ps_table_set_s(t, r, c++, op->variant);
    for (int i = 0; i < PS_OP_MAXDIM; i++)
        ps_table_set_i(t, r, c++, op->d[i]);
    char shape[256];
    ps_op_shape_str(op, shape, sizeof shape);
    ps_table_set_s(t, r, c++, shape);
    ps_table_set_d(t, r, c++, ps_op_flops(op));
    ps_table_set_d(t, r, c++, ps_op_bytes(op));
    ps_table_set_s(t, r, c++, backend ? backend : "");
    ps_table_set_i(t, r, c++, st->repeats);
    ps_table_set_d(t, r, c++, st->median_s);
    ps_table_set_d(t, r, c++, st->p10_s);
    ps_table_set_d(t, r, c++, st->p90_s);
    ps_table_set_d(t, r, c++, st->min_s);
    ps_table_set_d(t, r, c++, st->mean_s);
    ps_table_set_s(t, r, c++, timer ? timer : "clock");
    if (w->is_cuda)
        ps_table_set_d(t, r, c++, event_median_s);
    return (int64_t)r;
}

static int64_t kname_idx(ps_db_writer *w, const char *name, ps_err *e)
{
    if (!name)
        name = "";
    /* Kernel records are many, distinct names few: search from the most
     * recent, which is usually the hit. */
    for (size_t i = w->nknames; i-- > 0;)
        if (!strcmp(w->knames[i], name))
            return (int64_t)i;
    if (w->nknames == w->capknames) {
        size_t cap = w->capknames ? 2 * w->capknames : 16;
        char **k = realloc(w->knames, cap * sizeof *k);
        if (!k) {
            ps_errf(e, PS_ERUN, "out of memory");
            return -1;
        }
        w->knames = k;
        w->capknames = cap;
    }
    if (!(w->knames[w->nknames] = strdup(name))) {
        ps_errf(e, PS_ERUN, "out of memory");
        return -1;
    }
    return (int64_t)w->nknames++;
}

int ps_db_writer_add_kernel(ps_db_writer *w, const ps_db_kernel *k, ps_err *e)
{
    int64_t idx = kname_idx(w, k->name, e);
    if (idx < 0)
        return PS_ERUN;
    size_t r = ps_table_add_row(w->kernels);
    if (r == (size_t)-1)
        return ps_errf(e, PS_ERUN, "out of memory");
    int64_t v[] = {k->op,       k->correlation, idx,          k->grid[0],   k->grid[1],
                   k->grid[2],  k->block[0],    k->block[1],  k->block[2],  k->registers,
                   k->shared_bytes, k->start_ns, k->end_ns,   k->stream};
    for (int c = 0; c < (int)(sizeof v / sizeof *v); c++)
        ps_table_set_i(w->kernels, r, c, v[c]);
    return 0;
}

int ps_db_writer_add_tracer_overhead(ps_db_writer *w, int64_t op, double traced_median_s,
                                     double untraced_median_s, ps_err *e)
{
    size_t r = ps_table_add_row(w->overhead);
    if (r == (size_t)-1)
        return ps_errf(e, PS_ERUN, "out of memory");
    ps_table_set_i(w->overhead, r, 0, op);
    ps_table_set_d(w->overhead, r, 1, traced_median_s);
    ps_table_set_d(w->overhead, r, 2, untraced_median_s);
    ps_table_set_d(w->overhead, r, 3,
                   untraced_median_s > 0 ? traced_median_s / untraced_median_s : NAN);
    return 0;
}

size_t ps_db_writer_nops(const ps_db_writer *w)
{
    return w->ops->nrows;
}

static int write_kernel_names(hid_t f, ps_db_writer *w, ps_err *e)
{
    hsize_t n = w->nknames;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "/kernel_names", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (d < 0 || (n && H5Dwrite(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->knames) < 0))
        rc = ps_errf(e, PS_ERUN, "%s: cannot write /kernel_names", w->path);
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(st);
    return rc;
}

int ps_db_writer_commit(ps_db_writer *w, ps_err *e)
{
    ps_h5 *h = ps_h5_open_result(w->path, w->force, 0, NULL, e);
    if (!h) {
        writer_free(w);
        return e ? e->code : PS_ERUN;
    }
    hid_t f = ps_h5_file(h);
    char created[64], host[256] = "unknown";
    ps_utc_iso(created, sizeof created);
    gethostname(host, sizeof host - 1);
    int rc = 0;
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "format", PS_DB_FORMAT, e);
    if (!rc) rc = ps_h5_attr_set_int(f, "/", "format_version", PS_DB_FORMAT_VERSION, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "plansim_version", ps_version, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "git_commit", ps_git_commit, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "created", created, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "host", host, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "device_kind", w->device_kind, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "device_name", w->device_name, e);
    if (!rc) rc = ps_h5_attr_set_str(f, "/", "suite", w->suite_json, e);
    if (!rc) rc = ps_h5_attr_set_int(f, "/", "threads", w->threads, e);
    if (!rc) rc = ps_h5_attr_set_int(f, "/", "pinned_core", w->pinned_core, e);
    for (size_t i = 0; !rc && i < w->nattrs; i++)
        rc = w->attrs[i].sval ? ps_h5_attr_set_str(f, "/", w->attrs[i].name, w->attrs[i].sval, e)
                              : ps_h5_attr_set_int(f, "/", w->attrs[i].name, w->attrs[i].ival, e);
    if (!rc) rc = ps_h5_table_write(f, "/device/peaks", w->peaks, e);
    if (!rc) rc = ps_h5_table_write(f, "/ops", w->ops, e);
    if (!rc && w->is_cuda) {
        rc = ps_h5_table_write(f, "/kernels", w->kernels, e);
        if (!rc) rc = write_kernel_names(f, w, e);
        if (!rc) rc = ps_h5_table_write(f, "/tracer_overhead", w->overhead, e);
    }
    if (rc) {
        char partial[4200];
        snprintf(partial, sizeof partial, "%s", ps_h5_partial_path(h));
        ps_h5_close_partial(h);
        unlink(partial);
    } else {
        rc = ps_h5_commit(h, e);
    }
    writer_free(w);
    return rc;
}

void ps_db_writer_abort(ps_db_writer *w)
{
    writer_free(w);
}

/* ------------------------------------------------------------ reader */

static const char *const STR_ATTRS[] = {"format",      "plansim_version", "git_commit",
                                        "created",     "host",            "device_kind",
                                        "device_name", "suite",           NULL};

struct ps_db {
    char path[4096];
    char *attrs[16];
    int threads, pinned_core;
    ps_db_row *rows;
    size_t nrows;
    ps_db_peak *peaks;
    size_t npeaks;
    ps_table *kernels;
    char **knames;
    size_t nknames;
};

void ps_db_close(ps_db *db)
{
    if (!db)
        return;
    for (int i = 0; STR_ATTRS[i]; i++)
        free(db->attrs[i]);
    free(db->rows);
    free(db->peaks);
    ps_table_free(db->kernels);
    for (size_t i = 0; i < db->nknames; i++)
        free(db->knames[i]);
    free(db->knames);
    free(db);
}

static int col_req(const ps_table *t, const char *name, const char *path, int *out, ps_err *e)
{
    *out = ps_table_col(t, name);
    if (*out < 0)
        return ps_errf(e, PS_EINPUT, "%s: /ops has no column '%s' (not a plansim profile database "
                                     "of this version?)",
                       path, name);
    return 0;
}

static int read_ops(ps_db *db, hid_t f, ps_err *e)
{
    ps_table *t = NULL;
    int rc = ps_h5_table_read(f, "/ops", &t, e);
    if (rc) {
        ps_err_prefix(e, "%s: ", db->path);
        return PS_EINPUT;
    }
    static const char *names[] = {"op",     "kind",  "dtype",  "variant", "flops",
                                  "bytes",  "backend", "repeats", "median_s", "p10_s",
                                  "p90_s",  "min_s", "mean_s", "timer"};
    enum { N = sizeof names / sizeof *names };
    int c[N];
    for (int i = 0; i < N && !rc; i++)
        rc = col_req(t, names[i], db->path, &c[i], e);
    int cd[PS_OP_MAXDIM];
    for (int i = 0; i < PS_OP_MAXDIM; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "d%d", i);
        cd[i] = ps_table_col(t, nm);
    }
    int cev = ps_table_col(t, "event_median_s");
    if (!rc && t->nrows) {
        db->rows = calloc(t->nrows, sizeof *db->rows);
        if (!db->rows)
            rc = ps_errf(e, PS_ERUN, "out of memory");
    }
    for (size_t r = 0; !rc && r < t->nrows; r++) {
        ps_db_row *row = &db->rows[r];
        row->id = ps_table_get_i(t, r, c[0]);
        snprintf(row->op.kind, sizeof row->op.kind, "%s", ps_table_get_s(t, r, c[1]));
        snprintf(row->op.dtype, sizeof row->op.dtype, "%s", ps_table_get_s(t, r, c[2]));
        snprintf(row->op.variant, sizeof row->op.variant, "%s", ps_table_get_s(t, r, c[3]));
        for (int i = 0; i < PS_OP_MAXDIM; i++)
            row->op.d[i] = cd[i] >= 0 ? ps_table_get_i(t, r, cd[i]) : 0;
        char where[64];
        snprintf(where, sizeof where, "/ops[%zu]", r);
        if (ps_op_validate(&row->op, where, e)) {
            ps_err_prefix(e, "%s: ", db->path);
            rc = PS_EINPUT;
            break;
        }
        row->flops = ps_table_get_d(t, r, c[4]);
        row->bytes = ps_table_get_d(t, r, c[5]);
        snprintf(row->backend, sizeof row->backend, "%s", ps_table_get_s(t, r, c[6]));
        row->repeats = (int)ps_table_get_i(t, r, c[7]);
        row->median_s = ps_table_get_d(t, r, c[8]);
        row->p10_s = ps_table_get_d(t, r, c[9]);
        row->p90_s = ps_table_get_d(t, r, c[10]);
        row->min_s = ps_table_get_d(t, r, c[11]);
        row->mean_s = ps_table_get_d(t, r, c[12]);
        snprintf(row->timer, sizeof row->timer, "%s", ps_table_get_s(t, r, c[13]));
        row->event_median_s = cev >= 0 ? ps_table_get_d(t, r, cev) : NAN;
    }
    if (!rc)
        db->nrows = t->nrows;
    ps_table_free(t);
    return rc;
}

static int read_peaks(ps_db *db, hid_t f, ps_err *e)
{
    if (!ps_h5_exists(f, "/device/peaks"))
        return 0;
    ps_table *t = NULL;
    if (ps_h5_table_read(f, "/device/peaks", &t, e)) {
        ps_err_prefix(e, "%s: ", db->path);
        return PS_EINPUT;
    }
    int cn = ps_table_col(t, "name"), cv = ps_table_col(t, "value"), cu = ps_table_col(t, "units");
    int rc = 0;
    if (cn < 0 || cv < 0)
        rc = ps_errf(e, PS_EINPUT, "%s: /device/peaks lacks name/value columns", db->path);
    if (!rc && t->nrows && !(db->peaks = calloc(t->nrows, sizeof *db->peaks)))
        rc = ps_errf(e, PS_ERUN, "out of memory");
    for (size_t r = 0; !rc && r < t->nrows; r++) {
        snprintf(db->peaks[r].name, PS_STR_LEN, "%s", ps_table_get_s(t, r, cn));
        db->peaks[r].value = ps_table_get_d(t, r, cv);
        snprintf(db->peaks[r].units, PS_STR_LEN, "%s", cu >= 0 ? ps_table_get_s(t, r, cu) : "");
    }
    if (!rc)
        db->npeaks = t->nrows;
    ps_table_free(t);
    return rc;
}

static int read_kernels(ps_db *db, hid_t f, ps_err *e)
{
    if (!ps_h5_exists(f, "/kernels"))
        return 0;
    if (ps_h5_table_read(f, "/kernels", &db->kernels, e)) {
        ps_err_prefix(e, "%s: ", db->path);
        return PS_EINPUT;
    }
    if (!ps_h5_exists(f, "/kernel_names"))
        return 0;
    hid_t d = H5Dopen2(f, "/kernel_names", H5P_DEFAULT);
    if (d < 0)
        return ps_errf(e, PS_EINPUT, "%s: /kernel_names unreadable", db->path);
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    int rc = 0;
    if (n) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        H5Tset_cset(st, H5T_CSET_UTF8);
        char **tmp = calloc(n, sizeof *tmp);
        db->knames = calloc(n, sizeof *db->knames);
        if (!tmp || !db->knames || H5Dread(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0) {
            rc = ps_errf(e, PS_EINPUT, "%s: cannot read /kernel_names", db->path);
        } else {
            for (hsize_t i = 0; i < n; i++)
                db->knames[i] = strdup(tmp[i] ? tmp[i] : "");
            db->nknames = n;
            H5Dvlen_reclaim(st, sp, H5P_DEFAULT, tmp);
        }
        free(tmp);
        H5Tclose(st);
    }
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static int read_int_attr(hid_t f, const char *name, int def)
{
    double v;
    ps_err e = {0};
    if (ps_h5_attr_get_double(f, "/", name, &v, &e))
        return def;
    return (int)v;
}

int ps_db_open(const char *path, ps_db **out, ps_err *e)
{
    *out = NULL;
    hid_t f = ps_h5_open_read(path, e);
    if (f < 0)
        return PS_EINPUT;
    ps_db *db = calloc(1, sizeof *db);
    if (!db) {
        H5Fclose(f);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    snprintf(db->path, sizeof db->path, "%s", path);
    int rc = 0;
    char *fmt = NULL;
    ps_err tmp = {0};
    if (ps_h5_attr_get_str(f, "/", "format", &fmt, &tmp) || strcmp(fmt, PS_DB_FORMAT) != 0) {
        rc = ps_errf(e, PS_EINPUT,
                     "%s: not a plansim profile database (root attribute format = \"%s\" "
                     "missing)",
                     path, PS_DB_FORMAT);
    }
    free(fmt);
    if (!rc) {
        double ver = 0;
        if (ps_h5_attr_get_double(f, "/", "format_version", &ver, &tmp))
            rc = ps_errf(e, PS_EINPUT, "%s: profile database without format_version", path);
        else if (ver > PS_DB_FORMAT_VERSION)
            rc = ps_errf(e, PS_EINPUT,
                         "%s: profile database format_version %g is newer than this plansim "
                         "reads (%d)",
                         path, ver, PS_DB_FORMAT_VERSION);
    }
    for (int i = 0; !rc && STR_ATTRS[i]; i++)
        ps_h5_attr_get_str(f, "/", STR_ATTRS[i], &db->attrs[i], &tmp);
    if (!rc) {
        db->threads = read_int_attr(f, "threads", 0);
        db->pinned_core = read_int_attr(f, "pinned_core", -1);
    }
    if (!rc && !ps_h5_exists(f, "/ops"))
        rc = ps_errf(e, PS_EINPUT, "%s: profile database has no /ops table (truncated?)", path);
    if (!rc)
        rc = read_ops(db, f, e);
    if (!rc)
        rc = read_peaks(db, f, e);
    if (!rc)
        rc = read_kernels(db, f, e);
    H5Fclose(f);
    if (rc) {
        ps_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

size_t ps_db_nops(const ps_db *db)
{
    return db->nrows;
}

const ps_db_row *ps_db_op_at(const ps_db *db, size_t i)
{
    return i < db->nrows ? &db->rows[i] : NULL;
}

const ps_db_row *ps_db_find(const ps_db *db, const ps_op *op)
{
    for (size_t i = 0; i < db->nrows; i++)
        if (ps_op_equal(&db->rows[i].op, op))
            return &db->rows[i];
    return NULL;
}

size_t ps_db_npeaks(const ps_db *db)
{
    return db->npeaks;
}

const ps_db_peak *ps_db_peak_at(const ps_db *db, size_t i)
{
    return i < db->npeaks ? &db->peaks[i] : NULL;
}

int ps_db_peak_get(const ps_db *db, const char *name, double *value)
{
    for (size_t i = 0; i < db->npeaks; i++)
        if (!strcmp(db->peaks[i].name, name)) {
            if (value)
                *value = db->peaks[i].value;
            return 0;
        }
    return -1;
}

const char *ps_db_attr(const ps_db *db, const char *name)
{
    for (int i = 0; STR_ATTRS[i]; i++)
        if (!strcmp(STR_ATTRS[i], name))
            return db->attrs[i];
    return NULL;
}

int ps_db_threads(const ps_db *db)
{
    return db->threads;
}

int ps_db_pinned_core(const ps_db *db)
{
    return db->pinned_core;
}

const char *ps_db_path(const ps_db *db)
{
    return db->path;
}

size_t ps_db_nkernels(const ps_db *db)
{
    return db->kernels ? db->kernels->nrows : 0;
}

int ps_db_kernel_at(const ps_db *db, size_t i, ps_db_kernel *k)
{
    if (!db->kernels || i >= db->kernels->nrows)
        return -1;
    const ps_table *t = db->kernels;
    static const char *cols[] = {"op",      "correlation", "name_idx",     "grid_x",
                                 "grid_y",  "grid_z",      "block_x",      "block_y",
                                 "block_z", "registers",   "shared_bytes", "start_ns",
                                 "end_ns",  "stream"};
    int64_t v[14];
    for (int c = 0; c < 14; c++) {
        int ci = ps_table_col(t, cols[c]);
        v[c] = ci >= 0 ? ps_table_get_i(t, i, ci) : 0;
    }
    memset(k, 0, sizeof *k);
    k->op = v[0];
    k->correlation = v[1];
    k->name = v[2] >= 0 && (size_t)v[2] < db->nknames ? db->knames[v[2]] : "";
    for (int j = 0; j < 3; j++) {
        k->grid[j] = v[3 + j];
        k->block[j] = v[6 + j];
    }
    k->registers = v[9];
    k->shared_bytes = v[10];
    k->start_ns = v[11];
    k->end_ns = v[12];
    k->stream = v[13];
    return 0;
}
