/* `plansim info`: describe a result file.  Everything is gathered into one
 * JSON document first and printed at the end, so the text and --json views
 * cannot disagree and a file that fails half-way prints nothing. */
#include "experiments/info.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/h5io.h"
#include "common/table.h"

#define POINTS_SHOWN_MAX 60

/* Root attributes in the order a reader wants them; others follow by name. */
static const char *const root_order[] = {"plansim_version", "git_commit", "study", "name",
                                         "config_path", "host", "device", "seed", "quick",
                                         "started", "finished", "config", NULL};

/* jansson rejects invalid UTF-8; a foreign file may hold Latin-1. */
static json_t *json_str_safe(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = strdup(s);
    if (!c)
        return json_null();
    for (unsigned char *p = (unsigned char *)c; *p; p++)
        if (*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    return j ? j : json_null();
}

static json_t *json_num(double d)
{
    return isfinite(d) ? json_real(d) : json_null();
}

/* Any scalar or 1-D attribute of integers, floats or strings as JSON. */
static json_t *attr_json(hid_t loc, const char *obj, const char *name)
{
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        return json_null();
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    int scalar = H5Sget_simple_extent_type(sp) == H5S_SCALAR;
    json_t *arr = json_array();
    size_t n = np > 0 && np < (1 << 20) ? (size_t)np : 0;
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: {
        int64_t *v = calloc(n ? n : 1, sizeof *v);
        if (v && n && H5Aread(a, H5T_NATIVE_INT64, v) >= 0)
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_integer(v[i]));
        free(v);
        break;
    }
    case H5T_FLOAT: {
        double *v = calloc(n ? n : 1, sizeof *v);
        if (v && n && H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0)
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_num(v[i]));
        free(v);
        break;
    }
    case H5T_STRING: {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Tis_variable_str(t) > 0) {
            H5Tset_size(mt, H5T_VARIABLE);
            char **v = calloc(n ? n : 1, sizeof *v);
            if (v && n && H5Aread(a, mt, v) >= 0) {
                for (size_t i = 0; i < n; i++)
                    json_array_append_new(arr, json_str_safe(v[i] ? v[i] : ""));
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v);
            }
            free(v);
        } else {
            size_t sz = H5Tget_size(t) + 1;
            H5Tset_size(mt, sz);
            char *v = calloc(n ? n : 1, sz);
            if (v && n && H5Aread(a, mt, v) >= 0)
                for (size_t i = 0; i < n; i++) {
                    v[i * sz + sz - 1] = '\0';
                    json_array_append_new(arr, json_str_safe(v + i * sz));
                }
            free(v);
        }
        H5Tclose(mt);
        break;
    }
    default:
        json_array_append_new(arr, json_string("(unsupported type)"));
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    if (!scalar)
        return arr;
    json_t *v = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return v ? v : json_null();
}

typedef struct names {
    char **v;
    size_t n;
} names;

static herr_t collect_name(hid_t loc, const char *name, const H5A_info_t *info, void *op)
{
    (void)loc;
    (void)info;
    names *l = op;
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    if (!(v[l->n] = strdup(name)))
        return -1;
    l->n++;
    return 0;
}

static void names_free(names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* All attributes of obj except `skip`, known names first. */
static json_t *attrs_json(hid_t loc, const char *obj, const char *const *order, const char *skip)
{
    json_t *o = json_object();
    names l = {0};
    H5Aiterate_by_name(loc, obj, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_name, &l,
                       H5P_DEFAULT);
    for (const char *const *k = order; k && *k; k++)
        for (size_t i = 0; i < l.n; i++)
            if (strcmp(l.v[i], *k) == 0)
                json_object_set_new(o, *k, attr_json(loc, obj, *k));
    for (size_t i = 0; i < l.n; i++)
        if (!json_object_get(o, l.v[i]) && !(skip && strcmp(l.v[i], skip) == 0))
            json_object_set_new(o, l.v[i], attr_json(loc, obj, l.v[i]));
    names_free(&l);
    return o;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "int";
    case H5T_FLOAT: return "double";
    case H5T_STRING: return "string";
    default: return "other";
    }
}

/* Shape, columns and units of a dataset, read from its metadata only: a
 * timeline of millions of rows is described without being loaded. */
static json_t *dataset_json(hid_t file, const char *path)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0)
        return o;
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    if (rank > 0 && rank <= 8)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    json_object_set_new(o, "rows", json_integer(rank <= 0 ? 1 : (json_int_t)dims[0]));
    if (rank > 1) {
        json_t *shape = json_array();
        for (int i = 0; i < rank && i < 8; i++)
            json_array_append_new(shape, json_integer((json_int_t)dims[i]));
        json_object_set_new(o, "shape", shape);
    }
    json_t *units = H5Aexists(d, "units") > 0 ? attr_json(d, ".", "units") : json_array();
    json_t *cols = json_array();
    if (H5Tget_class(t) == H5T_COMPOUND) {
        int nm = H5Tget_nmembers(t);
        for (int c = 0; c < nm; c++) {
            char *name = H5Tget_member_name(t, (unsigned)c);
            const json_t *u = json_array_get(units, (size_t)c);
            json_array_append_new(
                cols, json_pack("{s:s, s:s, s:s}", "name", name ? name : "?", "type",
                                class_name(H5Tget_member_class(t, (unsigned)c)), "units",
                                json_is_string(u) ? json_string_value(u) : ""));
            H5free_memory(name);
        }
    } else {
        json_object_set_new(o, "type", json_string(class_name(H5Tget_class(t))));
    }
    json_decref(units);
    json_object_set_new(o, "columns", cols);
    json_object_set_new(o, "attributes", attrs_json(d, ".", NULL, "units"));
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return o;
}

typedef struct walk {
    json_t *groups, *datasets;
    hid_t file;
} walk;

static int visit(hid_t file, const char *path, int is_dataset, void *user)
{
    walk *w = user;
    if (is_dataset)
        json_array_append_new(w->datasets, dataset_json(file, path));
    else
        json_array_append_new(w->groups, json_string(path));
    return 0;
}

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static json_t *cell_json(const ps_table *t, size_t r, int c)
{
    switch (t->cols[c].type) {
    case PS_COL_INT: return json_integer(ps_table_get_i(t, r, c));
    case PS_COL_DOUBLE: return json_num(ps_table_get_d(t, r, c));
    default: return json_str_safe(ps_table_get_s(t, r, c));
    }
}

/* name → value, or name → {method: value} when rows name a method. */
static void summary_merge(json_t *sum, const ps_table *t)
{
    int cn = ps_table_col(t, "name"), cm = ps_table_col(t, "method"), cv = ps_table_col(t, "value");
    if (cn < 0 || cv < 0)
        return;
    for (size_t r = 0; r < t->nrows; r++) {
        const char *name = ps_table_get_s(t, r, cn);
        const char *method = cm >= 0 ? ps_table_get_s(t, r, cm) : "";
        json_t *v = cell_json(t, r, cv);
        if (!*method) {
            json_t *old = json_object_get(sum, name);
            if (json_is_object(old))
                json_object_set_new(old, "", v);
            else
                json_object_set_new(sum, name, v);
            continue;
        }
        json_t *old = json_object_get(sum, name);
        if (!json_is_object(old)) {
            json_t *o = json_object();
            if (old)
                json_object_set(o, "", old);
            json_object_set_new(sum, name, o);
            old = o;
        }
        json_object_set_new(old, method, v);
    }
}

static json_t *rows_json(const ps_table *t)
{
    json_t *a = json_array();
    for (size_t r = 0; r < t->nrows; r++) {
        json_t *o = json_object();
        for (size_t c = 0; c < t->ncols; c++)
            json_object_set_new(o, t->cols[c].name, cell_json(t, r, (int)c));
        json_array_append_new(a, o);
    }
    return a;
}

/* ---- text view ---------------------------------------------------------- */

static void cell_text(const ps_table *t, size_t r, int c, char *buf, size_t n)
{
    switch (t->cols[c].type) {
    case PS_COL_INT: snprintf(buf, n, "%lld", (long long)ps_table_get_i(t, r, c)); break;
    case PS_COL_DOUBLE: snprintf(buf, n, "%.6g", ps_table_get_d(t, r, c)); break;
    default: snprintf(buf, n, "%s", ps_table_get_s(t, r, c)); break;
    }
}

/* Aligned columns: numbers to the right, strings to the left, units in a
 * second header line when any column has them. */
static void print_table(FILE *out, const ps_table *t)
{
    size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof *w);
    if (!w)
        return;
    int any_units = 0;
    char buf[128];
    for (size_t c = 0; c < t->ncols; c++) {
        w[c] = strlen(t->cols[c].name);
        if (*t->cols[c].units) {
            any_units = 1;
            size_t u = strlen(t->cols[c].units) + 2;
            w[c] = u > w[c] ? u : w[c];
        }
        for (size_t r = 0; r < t->nrows; r++) {
            cell_text(t, r, (int)c, buf, sizeof buf);
            w[c] = strlen(buf) > w[c] ? strlen(buf) : w[c];
        }
    }
    char line[8192];
    for (int l = 0; l < 2 + (int)t->nrows; l++) {
        if (l == 1 && !any_units)
            continue;
        size_t used = 0;
        for (size_t c = 0; c < t->ncols && used < sizeof line; c++) {
            int right = t->cols[c].type != PS_COL_STR;
            if (l == 0)
                snprintf(buf, sizeof buf, "%s", t->cols[c].name);
            else if (l == 1)
                snprintf(buf, sizeof buf, *t->cols[c].units ? "[%s]" : "%s", t->cols[c].units);
            else
                cell_text(t, (size_t)l - 2, (int)c, buf, sizeof buf);
            int width = right ? (int)w[c] : -(int)w[c];
            int k = snprintf(line + used, sizeof line - used, "  %*s", width, buf);
            used += k > 0 ? (size_t)k : 0;
        }
        used = used < sizeof line ? used : sizeof line - 1;
        while (used > 0 && line[used - 1] == ' ')
            used--;
        fprintf(out, "%.*s\n", (int)used, line);
    }
    free(w);
}

static void print_value(FILE *out, const char *key, const json_t *v, int width)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(key, "config") == 0) {
            size_t len = strlen(s), first = strcspn(s, "\n");
            fprintf(out, "  %-*s %.*s%s  (%zu bytes)\n", width, key, (int)(first > 72 ? 72 : first),
                    s, first > 72 || first < len ? " ..." : "", len);
            return;
        }
        fprintf(out, "  %-*s ", width, key);
        for (; *s; s++) {
            fputc(*s, out);
            if (*s == '\n')
                fprintf(out, "  %-*s ", width, "");
        }
        fputc('\n', out);
        return;
    }
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
    fprintf(out, "  %-*s %s\n", width, key, txt ? txt : "?");
    free(txt);
}

static void print_columns(FILE *out, const json_t *cols)
{
    size_t col = 6, i;
    const json_t *c;
    fputs("      ", out);
    json_array_foreach(cols, i, c) {
        const char *u = json_string_value(json_object_get(c, "units"));
        char item[200];
        snprintf(item, sizeof item, "%s%s%s%s%s", json_string_value(json_object_get(c, "name")),
                 u && *u ? " [" : "", u && *u ? u : "", u && *u ? "]" : "",
                 i + 1 < json_array_size(cols) ? "," : "");
        if (col + strlen(item) + 1 > 100 && col > 6) {
            fputs("\n      ", out);
            col = 6;
        }
        fprintf(out, "%s%s", col > 6 ? " " : "", item);
        col += strlen(item) + 1;
    }
    fputc('\n', out);
}

static void print_text(FILE *out, const json_t *doc, const ps_table *const *summaries,
                       const char *const *summary_paths, size_t nsum, const ps_table *points,
                       const char *points_path, long long points_rows)
{
    fprintf(out, "%s\n", json_string_value(json_object_get(doc, "file")));
    const json_t *attrs = json_object_get(doc, "attributes");
    const char *k;
    const json_t *v;
    int width = 0;
    json_object_foreach((json_t *)attrs, k, v) {
        if ((int)strlen(k) > width)
            width = (int)strlen(k);
    }
    fprintf(out, "\nattributes\n");
    json_object_foreach((json_t *)attrs, k, v) print_value(out, k, v, width);

    /* Groups and datasets interleaved by path, as h5ls would list them. */
    const json_t *groups = json_object_get(doc, "groups"), *ds = json_object_get(doc, "datasets");
    size_t pw = 0, i, j;
    const json_t *x;
    json_array_foreach(groups, i, x) {
        size_t l = strlen(json_string_value(x));
        pw = l > pw ? l : pw;
    }
    json_array_foreach(ds, i, x) {
        size_t l = strlen(json_string_value(json_object_get(x, "path")));
        pw = l > pw ? l : pw;
    }
    fprintf(out, "\ncontents\n");
    for (i = 0, j = 0; i < json_array_size(groups) || j < json_array_size(ds);) {
        const char *g =
            i < json_array_size(groups) ? json_string_value(json_array_get(groups, i)) : NULL;
        const json_t *d = json_array_get(ds, j);
        const char *dp = d ? json_string_value(json_object_get(d, "path")) : NULL;
        if (g && (!dp || strcmp(g, dp) < 0)) {
            fprintf(out, "  %-*s  group\n", (int)pw, g);
            i++;
            continue;
        }
        long long rows = (long long)json_integer_value(json_object_get(d, "rows"));
        const json_t *shape = json_object_get(d, "shape"), *ty = json_object_get(d, "type");
        fprintf(out, "  %-*s  ", (int)pw, dp);
        if (shape) {
            size_t k;
            const json_t *n;
            json_array_foreach(shape, k, n)
                fprintf(out, "%s%lld", k ? "x" : "", (long long)json_integer_value(n));
        } else {
            fprintf(out, "%lld row%s", rows, rows == 1 ? "" : "s");
        }
        if (ty)
            fprintf(out, " (%s)", json_string_value(ty));
        const json_t *da = json_object_get(d, "attributes");
        json_object_foreach((json_t *)da, k, v) {
            char *txt = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            fprintf(out, "   %s: %s", k, txt ? txt : json_string_value(v));
            free(txt);
        }
        fputc('\n', out);
        if (json_array_size(json_object_get(d, "columns")))
            print_columns(out, json_object_get(d, "columns"));
        j++;
    }
    for (size_t s = 0; s < nsum; s++) {
        fprintf(out, "\nsummary %s\n", summary_paths[s]);
        print_table(out, summaries[s]);
    }
    if (points_path) {
        fprintf(out, "\npoints %s (%lld row%s)\n", points_path, points_rows,
                points_rows == 1 ? "" : "s");
        if (points)
            print_table(out, points);
        else
            fprintf(out, "  more than %d rows: see plansim info --json, h5dump or h5py\n",
                    POINTS_SHOWN_MAX);
    }
}

int ps_info_fprint(FILE *out, const char *h5_path, int as_json, ps_err *e)
{
    hid_t f = ps_h5_open_read(h5_path, e);
    if (f < 0)
        return PS_EINPUT;
    int rc = 0;
    json_t *doc = json_object();
    walk w = {json_array(), json_array(), f};
    ps_table *sums[16] = {0}, *points = NULL;
    char sum_paths[16][512];
    const char *sum_ptrs[16];
    size_t nsum = 0;
    char points_path[512] = "";
    long long points_rows = 0;

    json_object_set_new(doc, "file", json_str_safe(h5_path));
    json_object_set_new(doc, "attributes", attrs_json(f, "/", root_order, NULL));
    if ((rc = ps_h5_walk(f, visit, &w, e))) {
        ps_err_prefix(e, "%s: ", h5_path);
        goto out;
    }
    json_object_set(doc, "groups", w.groups);
    json_object_set(doc, "datasets", w.datasets);

    /* The points table is /<study>/points; a file without a study
     * attribute falls back to the first dataset called points. */
    const json_t *study = json_object_get(json_object_get(doc, "attributes"), "study");
    if (json_is_string(study)) {
        snprintf(points_path, sizeof points_path, "/%s/points", json_string_value(study));
        if (!ps_h5_exists(f, points_path))
            points_path[0] = '\0';
    }
    json_t *summary = json_object();
    json_object_set_new(doc, "summary", summary);
    size_t i;
    const json_t *d;
    json_array_foreach(w.datasets, i, d) {
        const char *p = json_string_value(json_object_get(d, "path"));
        if (json_array_size(json_object_get(d, "columns")) == 0)
            continue;
        if (strcmp(basename_of(p), "points") == 0 && !points_path[0]) {
            snprintf(points_path, sizeof points_path, "%s", p);
        } else if (strcmp(basename_of(p), "summary") == 0 && nsum < 16) {
            if ((rc = ps_h5_table_read(f, p, &sums[nsum], e))) {
                ps_err_prefix(e, "%s: ", h5_path);
                goto out;
            }
            summary_merge(summary, sums[nsum]);
            snprintf(sum_paths[nsum], sizeof sum_paths[nsum], "%s", p);
            sum_ptrs[nsum] = sum_paths[nsum];
            nsum++;
        }
    }
    json_array_foreach(w.datasets, i, d) {
        const char *p = json_string_value(json_object_get(d, "path"));
        if (points_path[0] && strcmp(p, points_path) == 0)
            points_rows = (long long)json_integer_value(json_object_get(d, "rows"));
    }
    if (points_path[0] && (as_json || points_rows <= POINTS_SHOWN_MAX)) {
        if ((rc = ps_h5_table_read(f, points_path, &points, e))) {
            ps_err_prefix(e, "%s: ", h5_path);
            goto out;
        }
    }
    json_object_set_new(doc, "points", points ? rows_json(points) : json_array());

    if (as_json) {
        if (json_dumpf(doc, out, JSON_INDENT(2)) || fputc('\n', out) == EOF)
            rc = ps_errf(e, PS_ERUN, "cannot write the JSON output");
    } else {
        print_text(out, doc, (const ps_table *const *)sums, sum_ptrs, nsum, points,
                   points_path[0] ? points_path : NULL, points_rows);
    }
    fflush(out);
out:
    for (size_t s = 0; s < nsum; s++)
        ps_table_free(sums[s]);
    ps_table_free(points);
    json_decref(w.groups);
    json_decref(w.datasets);
    json_decref(doc);
    H5Fclose(f);
    return rc;
}

int ps_info_print(const char *h5_path, int as_json, ps_err *e)
{
    return ps_info_fprint(stdout, h5_path, as_json, e);
}
