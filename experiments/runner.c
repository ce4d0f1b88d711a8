#define _POSIX_C_SOURCE 200809L
#include "runner.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/json.h"
#include "common/util.h"
#include "experiments/plot.h"
#include "experiments/study.h"
#include "kernels/gpu.h"

/* ---- points ------------------------------------------------------------ */

typedef struct emitted {
    char name[64];
    ps_table *t;
} emitted;

struct ps_point {
    const ps_study *study;
    json_t *values; /* parameter name -> value */
    int index, repeat;
    unsigned long seed;
    gsl_rng *rng;
    const char *config_path;
    const char *side_dir;
    emitted *em;
    size_t nem;
};

static const ps_param_spec *param_spec(const ps_study *s, const char *name)
{
    for (const ps_param_spec *p = s->params; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

long long ps_point_int(const ps_point *p, const char *name)
{
    const json_t *v = json_object_get(p->values, name);
    return json_is_integer(v) ? json_integer_value(v) : (long long)json_number_value(v);
}

double ps_point_num(const ps_point *p, const char *name)
{
    return json_number_value(json_object_get(p->values, name));
}

const char *ps_point_str(const ps_point *p, const char *name)
{
    const char *s = json_string_value(json_object_get(p->values, name));
    return s ? s : "";
}

int ps_point_bool(const ps_point *p, const char *name)
{
    return json_is_true(json_object_get(p->values, name));
}

const json_t *ps_point_json(const ps_point *p, const char *name)
{
    return json_object_get(p->values, name);
}

int ps_point_index(const ps_point *p) { return p->index; }
int ps_point_repeat(const ps_point *p) { return p->repeat; }
unsigned long ps_point_seed(const ps_point *p) { return p->seed; }
gsl_rng *ps_point_rng(const ps_point *p) { return p->rng; }

void ps_point_path(const ps_point *p, const char *rel, char *out, size_t n)
{
    ps_path_relative_to(p->config_path, rel, out, n);
}

int ps_point_side_dir(const ps_point *p, char *out, size_t n, ps_err *e)
{
    snprintf(out, n, "%s", p->side_dir);
    return ps_mkdir_p(out, e);
}

int ps_point_emit(const ps_point *p_const, const char *name, const ps_table *t, ps_err *e)
{
    ps_point *p = (ps_point *)p_const;
    emitted *slot = NULL;
    for (size_t i = 0; i < p->nem; i++)
        if (strcmp(p->em[i].name, name) == 0)
            slot = &p->em[i];
    if (!slot) {
        if (ps_table_col(t, "point") >= 0)
            return ps_errf(e, PS_ERUN, "detail table %s: column 'point' is reserved", name);
        emitted *em = realloc(p->em, (p->nem + 1) * sizeof *em);
        if (!em)
            return ps_errf(e, PS_ERUN, "out of memory");
        p->em = em;
        slot = &em[p->nem++];
        snprintf(slot->name, sizeof slot->name, "%s", name);
        slot->t = ps_table_new();
        ps_table_add_col(slot->t, "point", PS_COL_INT, "");
        for (size_t c = 0; c < t->ncols; c++)
            ps_table_add_col(slot->t, t->cols[c].name, t->cols[c].type, t->cols[c].units);
    }
    if (slot->t->ncols != t->ncols + 1)
        return ps_errf(e, PS_ERUN, "detail table %s: columns changed between emits", name);
    for (size_t r = 0; r < t->nrows; r++) {
        size_t row = ps_table_add_row(slot->t);
        if (row == (size_t)-1)
            return ps_errf(e, PS_ERUN, "out of memory");
        ps_table_set_i(slot->t, row, 0, p->index);
        for (size_t c = 0; c < t->ncols; c++) {
            const ps_col *col = &t->cols[c];
            if (col->type == PS_COL_INT)
                ps_table_set_i(slot->t, row, (int)c + 1, col->v.i[r]);
            else if (col->type == PS_COL_DOUBLE)
                ps_table_set_d(slot->t, row, (int)c + 1, col->v.d[r]);
            else
                ps_table_set_s(slot->t, row, (int)c + 1, col->v.s[r]);
        }
    }
    return 0;
}

static void point_clear_emitted(ps_point *p)
{
    for (size_t i = 0; i < p->nem; i++)
        ps_table_free(p->em[i].t);
    free(p->em);
    p->em = NULL;
    p->nem = 0;
}

ps_table *ps_summary_new(void)
{
    ps_table *t = ps_table_new();
    ps_table_add_col(t, "name", PS_COL_STR, "");
    ps_table_add_col(t, "method", PS_COL_STR, "");
    ps_table_add_col(t, "value", PS_COL_DOUBLE, "");
    ps_table_add_col(t, "units", PS_COL_STR, "");
    return t;
}

void ps_summary_add(ps_table *s, const char *name, const char *method, double value,
                    const char *units)
{
    size_t r = ps_table_add_row(s);
    if (r == (size_t)-1)
        return;
    ps_table_set_s(s, r, 0, name);
    ps_table_set_s(s, r, 1, method ? method : "");
    ps_table_set_d(s, r, 2, value);
    ps_table_set_s(s, r, 3, units ? units : "");
}

/* ---- config ------------------------------------------------------------ */

typedef struct sweep_dim {
    const char *name;
    const json_t *values; /* array */
} sweep_dim;

typedef struct plan {
    json_t *root;
    const ps_study *study;
    const char *name;
    long long seed, repeats;
    json_t *base;       /* defaults + fixed */
    sweep_dim *dims;    /* swept parameters, JSON order */
    size_t ndims;
    size_t npoints;     /* product of sweep lengths */
} plan;

static int check_value(const ps_param_spec *s, const json_t *v, const char *path, ps_err *e)
{
    switch (s->type) {
    case PS_PARAM_INT: {
        long long x;
        return ps_json_as_int(v, path, &x, e);
    }
    case PS_PARAM_NUM: {
        double x;
        return ps_json_as_num(v, path, &x, e);
    }
    case PS_PARAM_STR:
        return json_is_string(v) ? 0
                                 : ps_errf(e, PS_EINPUT, "%s: expected a string, got %s", path,
                                           ps_json_type_name(v));
    case PS_PARAM_BOOL:
        return json_is_boolean(v) ? 0
                                  : ps_errf(e, PS_EINPUT, "%s: expected a boolean, got %s",
                                            path, ps_json_type_name(v));
    case PS_PARAM_JSON: return 0;
    }
    return 0;
}

static int unknown_param(const ps_study *s, const char *path, ps_err *e)
{
    char list[1024] = "";
    for (const ps_param_spec *p = s->params; p->name; p++) {
        strncat(list, p->name, sizeof list - strlen(list) - 3);
        if (p[1].name)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return ps_errf(e, PS_EINPUT, "%s: unknown parameter for study %s (known: %s)", path, s->name,
                   list);
}

/* Apply a "fixed" object onto base. */
static int apply_fixed(plan *pl, const json_t *fixed, const char *where, ps_err *e)
{
    if (!fixed)
        return 0;
    if (!json_is_object(fixed))
        return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where,
                       ps_json_type_name(fixed));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)fixed, k, v) {
        char path[512];
        snprintf(path, sizeof path, "%s.%s", where, k);
        const ps_param_spec *s = param_spec(pl->study, k);
        if (!s)
            return unknown_param(pl->study, path, e);
        int rc = check_value(s, v, path, e);
        if (rc)
            return rc;
        json_object_set(pl->base, k, v);
    }
    return 0;
}

static int apply_sweep(plan *pl, const json_t *sweep, const char *where, ps_err *e)
{
    if (!sweep)
        return 0;
    if (!json_is_object(sweep))
        return ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where,
                       ps_json_type_name(sweep));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)sweep, k, v) {
        char path[512];
        snprintf(path, sizeof path, "%s.%s", where, k);
        const ps_param_spec *s = param_spec(pl->study, k);
        if (!s)
            return unknown_param(pl->study, path, e);
        if (!json_is_array(v) || json_array_size(v) == 0)
            return ps_errf(e, PS_EINPUT, "%s: expected a non-empty array of values, got %s",
                           path, json_is_array(v) ? "an empty array" : ps_json_type_name(v));
        for (size_t i = 0; i < json_array_size(v); i++) {
            char ip[600];
            snprintf(ip, sizeof ip, "%s[%zu]", path, i);
            int rc = check_value(s, json_array_get(v, i), ip, e);
            if (rc)
                return rc;
        }
        size_t d;
        for (d = 0; d < pl->ndims; d++)
            if (strcmp(pl->dims[d].name, k) == 0)
                break;
        if (d == pl->ndims) {
            sweep_dim *nd = realloc(pl->dims, (pl->ndims + 1) * sizeof *nd);
            if (!nd)
                return ps_errf(e, PS_ERUN, "out of memory");
            pl->dims = nd;
            pl->ndims++;
        }
        pl->dims[d].name = k;
        pl->dims[d].values = v;
    }
    return 0;
}

static void plan_free(plan *pl)
{
    json_decref(pl->base);
    json_decref(pl->root);
    free(pl->dims);
}

static int plan_load(plan *pl, const char *path, int quick, ps_err *e)
{
    memset(pl, 0, sizeof *pl);
    pl->root = ps_json_load_file(path, e);
    if (!pl->root)
        return PS_EINPUT;
    const json_t *r = pl->root;
    int rc;
    if (!json_is_object(r))
        return ps_errf(e, PS_EINPUT, "%s: $: expected an object, got %s", path,
                       ps_json_type_name(r));
    static const char *const top[] = {"study", "name", "description", "seed", "repeats",
                                      "fixed", "sweep", "quick", "figures", "paper",
                                      "notes", NULL};
    const char *study = NULL, *desc = NULL;
    pl->seed = 1;
    pl->repeats = 1;
    if ((rc = ps_json_check_keys(r, "$", top, e)) ||
        (rc = ps_json_get_str(r, "$", "study", 1, &study, e)) ||
        (rc = ps_json_get_str(r, "$", "name", 1, &pl->name, e)) ||
        (rc = ps_json_get_str(r, "$", "description", 0, &desc, e)) ||
        (rc = ps_json_get_int(r, "$", "seed", 0, &pl->seed, e)) ||
        (rc = ps_json_get_int(r, "$", "repeats", 0, &pl->repeats, e)))
        goto fail;
    if (!*pl->name || strspn(pl->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_-.") != strlen(pl->name)) {
        rc = ps_errf(e, PS_EINPUT, "$.name: \"%s\" must be non-empty letters, digits, _ - .",
                     pl->name);
        goto fail;
    }
    if (pl->repeats < 1 || pl->repeats > 100000) {
        rc = ps_errf(e, PS_EINPUT, "$.repeats: %lld out of range 1..100000", pl->repeats);
        goto fail;
    }
    pl->study = ps_study_find(study);
    if (!pl->study) {
        rc = ps_errf(e, PS_EINPUT, "$.study: unknown study \"%s\" (known: %s)", study,
                     ps_study_names());
        goto fail;
    }
    pl->base = json_object();
    for (const ps_param_spec *s = pl->study->params; s->name; s++)
        if (s->def) {
            json_t *d = json_loads(s->def, JSON_DECODE_ANY, NULL);
            json_object_set_new(pl->base, s->name, d ? d : json_null());
        }
    const json_t *q = json_object_get(r, "quick");
    if (q && !json_is_object(q)) {
        rc = ps_errf(e, PS_EINPUT, "$.quick: expected an object, got %s", ps_json_type_name(q));
        goto fail;
    }
    if (q) {
        static const char *const qk[] = {"fixed", "sweep", "repeats", NULL};
        if ((rc = ps_json_check_keys(q, "$.quick", qk, e)))
            goto fail;
    }
    if ((rc = apply_fixed(pl, json_object_get(r, "fixed"), "$.fixed", e)) ||
        (rc = apply_sweep(pl, json_object_get(r, "sweep"), "$.sweep", e)))
        goto fail;
    if (quick && q) {
        if ((rc = apply_fixed(pl, json_object_get(q, "fixed"), "$.quick.fixed", e)) ||
            (rc = apply_sweep(pl, json_object_get(q, "sweep"), "$.quick.sweep", e)) ||
            (rc = ps_json_get_int(q, "$.quick", "repeats", 0, &pl->repeats, e)))
            goto fail;
    }
    for (size_t d = 0; d < pl->ndims; d++)
        json_object_del(pl->base, pl->dims[d].name);
    for (const ps_param_spec *s = pl->study->params; s->name; s++) {
        int swept = 0;
        for (size_t d = 0; d < pl->ndims; d++)
            swept |= strcmp(pl->dims[d].name, s->name) == 0;
        if (!swept && !json_object_get(pl->base, s->name)) {
            rc = ps_errf(e, PS_EINPUT, "$.fixed.%s: missing (required by study %s: %s)",
                         s->name, pl->study->name, s->help ? s->help : "");
            goto fail;
        }
    }
    const json_t *figs = json_object_get(r, "figures");
    if (figs && !json_is_array(figs)) {
        rc = ps_errf(e, PS_EINPUT, "$.figures: expected an array, got %s",
                     ps_json_type_name(figs));
        goto fail;
    }
    pl->npoints = 1;
    for (size_t d = 0; d < pl->ndims; d++)
        pl->npoints *= json_array_size(pl->dims[d].values);
    if (pl->npoints * (size_t)pl->repeats > 10000000) {
        rc = ps_errf(e, PS_EINPUT, "$.sweep: %zu points x %lld repeats is too many",
                     pl->npoints, pl->repeats);
        goto fail;
    }
    return 0;
fail:
    ps_err_prefix(e, "%s: ", path);
    return rc;
}

/* Values of point i: the base plus one value per sweep dimension, the last
 * dimension varying fastest. */
static json_t *point_values(const plan *pl, size_t i)
{
    json_t *v = json_deep_copy(pl->base);
    for (size_t d = pl->ndims; d-- > 0;) {
        size_t n = json_array_size(pl->dims[d].values);
        json_object_set(v, pl->dims[d].name, json_array_get(pl->dims[d].values, i % n));
        i /= n;
    }
    return v;
}

/* ---- tables ------------------------------------------------------------ */

static ps_table *points_layout(const plan *pl)
{
    ps_table *t = ps_table_new();
    ps_table_add_col(t, "point", PS_COL_INT, "");
    ps_table_add_col(t, "repeat", PS_COL_INT, "");
    ps_table_add_col(t, "seed", PS_COL_INT, "");
    for (size_t d = 0; d < pl->ndims; d++) {
        const ps_param_spec *s = param_spec(pl->study, pl->dims[d].name);
        ps_col_type ty = s->type == PS_PARAM_NUM                              ? PS_COL_DOUBLE
                         : s->type == PS_PARAM_STR || s->type == PS_PARAM_JSON ? PS_COL_STR
                                                                              : PS_COL_INT;
        ps_table_add_col(t, s->name, ty, s->units ? s->units : "");
    }
    for (const ps_metric_spec *m = pl->study->metrics; m->name; m++)
        ps_table_add_col(t, m->name, PS_COL_DOUBLE, m->units ? m->units : "");
    ps_table_add_col(t, "run_time_s", PS_COL_DOUBLE, "s");
    return t;
}

static void fill_row(ps_table *t, const plan *pl, const ps_point *p, const double *metrics,
                     double run_s)
{
    t->nrows = 0;
    size_t r = ps_table_add_row(t);
    int c = 0;
    ps_table_set_i(t, r, c++, p->index);
    ps_table_set_i(t, r, c++, p->repeat);
    ps_table_set_i(t, r, c++, (int64_t)p->seed);
    for (size_t d = 0; d < pl->ndims; d++, c++) {
        const json_t *v = json_object_get(p->values, pl->dims[d].name);
        if (t->cols[c].type == PS_COL_STR && !json_is_string(v)) {
            char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
            ps_table_set_s(t, r, c, txt ? txt : "");
            free(txt);
        } else if (json_is_string(v))
            ps_table_set_s(t, r, c, json_string_value(v));
        else if (json_is_boolean(v))
            ps_table_set_i(t, r, c, json_is_true(v));
        else if (json_is_integer(v))
            ps_table_set_i(t, r, c, json_integer_value(v));
        else
            ps_table_set_d(t, r, c, json_number_value(v));
    }
    size_t nm = 0;
    for (const ps_metric_spec *m = pl->study->metrics; m->name; m++)
        ps_table_set_d(t, r, c++, metrics[nm++]);
    ps_table_set_d(t, r, c, run_s);
}

/* /paper/<name> tables from the config's "paper" array: published values
 * kept beside plansim's, each with its source. */
static int write_paper(hid_t f, const json_t *paper, ps_err *e)
{
    if (!paper)
        return 0;
    if (!json_is_array(paper))
        return ps_errf(e, PS_EINPUT, "$.paper: expected an array, got %s",
                       ps_json_type_name(paper));
    for (size_t i = 0; i < json_array_size(paper); i++) {
        const json_t *p = json_array_get(paper, i);
        char where[64];
        snprintf(where, sizeof where, "$.paper[%zu]", i);
        const char *name = NULL, *source = NULL;
        int rc;
        static const char *const keys[] = {"name", "source", "rows", "units", NULL};
        if ((rc = ps_json_check_keys(p, where, keys, e)) ||
            (rc = ps_json_get_str(p, where, "name", 1, &name, e)) ||
            (rc = ps_json_get_str(p, where, "source", 1, &source, e)))
            return rc;
        const json_t *rows = json_object_get(p, "rows"), *units = json_object_get(p, "units");
        if (!json_is_array(rows) || json_array_size(rows) == 0 ||
            !json_is_object(json_array_get(rows, 0)))
            return ps_errf(e, PS_EINPUT, "%s.rows: expected a non-empty array of objects",
                           where);
        ps_table *t = ps_table_new();
        const char *k;
        json_t *v;
        json_object_foreach(json_array_get(rows, 0), k, v) {
            const char *u = units ? json_string_value(json_object_get(units, k)) : NULL;
            ps_table_add_col(t, k, json_is_string(v) ? PS_COL_STR : PS_COL_DOUBLE, u ? u : "");
        }
        for (size_t r = 0; r < json_array_size(rows); r++) {
            const json_t *row = json_array_get(rows, r);
            size_t ri = ps_table_add_row(t);
            for (size_t c = 0; c < t->ncols; c++) {
                const json_t *cell = json_object_get(row, t->cols[c].name);
                if (t->cols[c].type == PS_COL_STR)
                    ps_table_set_s(t, ri, (int)c, json_string_value(cell));
                else
                    ps_table_set_d(t, ri, (int)c, json_is_number(cell) ? json_number_value(cell)
                                                                        : NAN);
            }
        }
        char path[256];
        snprintf(path, sizeof path, "/paper/%s", name);
        rc = ps_h5_table_write(f, path, t, e);
        if (!rc)
            rc = ps_h5_attr_set_str(f, path, "source", source, e);
        ps_table_free(t);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- output ------------------------------------------------------------ */

static json_t *cell_json(const ps_table *t, size_t r, int c)
{
    const ps_col *col = &t->cols[c];
    if (col->type == PS_COL_INT)
        return json_integer(col->v.i[r]);
    if (col->type == PS_COL_DOUBLE)
        return isfinite(col->v.d[r]) ? json_real(col->v.d[r]) : json_null();
    return json_string(col->v.s[r]);
}

json_t *ps_table_rows_json(const ps_table *t);
json_t *ps_table_rows_json(const ps_table *t)
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

/* Summary rows as JSON: a name alone is a scalar; names with methods become
 * an object keyed by method (DESIGN.md, "--json output"). */
static void summary_json(const ps_table *s, json_t *out)
{
    for (size_t r = 0; r < s->nrows; r++) {
        const char *name = ps_table_get_s(s, r, 0), *method = ps_table_get_s(s, r, 1);
        double v = ps_table_get_d(s, r, 2);
        json_t *jv = isfinite(v) ? json_real(v) : json_null();
        if (!*method) {
            json_object_set_new(out, name, jv);
        } else {
            json_t *o = json_object_get(out, name);
            if (!json_is_object(o)) {
                o = json_object();
                json_object_set_new(out, name, o);
            }
            json_object_set_new(o, method, jv);
        }
    }
}

static void print_text(const plan *pl, const char *out, const ps_table *pts,
                       const ps_table *sum, const json_t *figs, size_t ran, double wall_s)
{
    printf("%s: study %s, %zu point(s) x %lld repeat(s); ran %zu in %.2f s\n", pl->name,
           pl->study->name, pl->npoints, pl->repeats, ran, wall_s);
    printf("results: %s\n", out);
    size_t i;
    json_t *f;
    json_array_foreach(figs, i, f) {
        const char *png = json_string_value(json_object_get(f, "png"));
        if (png)
            printf("figure:  %s\n", png);
    }
    if (sum && sum->nrows) {
        printf("summary:\n");
        for (size_t r = 0; r < sum->nrows; r++) {
            const char *m = ps_table_get_s(sum, r, 1), *u = ps_table_get_s(sum, r, 3);
            char label[128];
            snprintf(label, sizeof label, "%s%s%s", ps_table_get_s(sum, r, 0), *m ? "." : "", m);
            printf("  %-40s %.6g%s%s\n", label, ps_table_get_d(sum, r, 2), *u ? " " : "", u);
        }
    }
    if (pts->nrows > 40) {
        printf("points: %zu rows (plansim info %s; h5dump or h5py for all)\n", pts->nrows, out);
        return;
    }
    /* As many columns as fit a wide terminal: parameters first, then
     * metrics in declaration order; the file has them all. */
    int show[256], nshow = 0, width = 0, hidden = 0;
    for (size_t c = 0; c < pts->ncols && c < 256; c++) {
        const char *n = pts->cols[c].name;
        if (!strcmp(n, "seed") || !strcmp(n, "run_time_s") ||
            (!strcmp(n, "repeat") && pl->repeats == 1))
            continue;
        if (width + 13 > 160) {
            hidden++;
            continue;
        }
        show[nshow++] = (int)c;
        width += 13;
    }
    printf("points:\n");
    for (int i = 0; i < nshow; i++)
        printf(" %12.12s", pts->cols[show[i]].name);
    printf("\n");
    for (size_t r = 0; r < pts->nrows; r++) {
        for (int i = 0; i < nshow; i++) {
            char b[64];
            if (pts->cols[show[i]].type == PS_COL_DOUBLE)
                snprintf(b, sizeof b, "%.6g", pts->cols[show[i]].v.d[r]);
            else
                ps_table_format(pts, r, show[i], b, sizeof b);
            printf(" %12.12s", b);
        }
        printf("\n");
    }
    if (hidden)
        printf("(%d more column(s) in %s: plansim info, h5dump or h5py)\n", hidden, out);
}

/* ---- run --------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL); /* a second signal stops at once */
}

static void device_desc(char *buf, size_t n)
{
    char cpu[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    c += 1 + (c[1] == ' ');
                    c[strcspn(c, "\n")] = '\0';
                    snprintf(cpu, sizeof cpu, "%s", c);
                }
                break;
            }
        fclose(f);
    }
    char gpu[256];
    ps_gpu_count(gpu, sizeof gpu);
    snprintf(buf, n, "cpu: %s (%ld cores); gpu: %s", cpu, sysconf(_SC_NPROCESSORS_ONLN), gpu);
}

static int write_root_attrs(hid_t f, const plan *pl, const char *config_text,
                            const char *config_path, int quick, ps_err *e)
{
    char host[256] = "", dev[600], now[64];
    gethostname(host, sizeof host - 1);
    device_desc(dev, sizeof dev);
    ps_utc_iso(now, sizeof now);
    int rc;
    if ((rc = ps_h5_attr_set_str(f, "/", "plansim_version", ps_version, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "git_commit", ps_git_commit, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "config", config_text, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "config_path", config_path, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "study", pl->study->name, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "name", pl->name, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "host", host, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "device", dev, e)) ||
        (rc = ps_h5_attr_set_int(f, "/", "seed", pl->seed, e)) ||
        (rc = ps_h5_attr_set_int(f, "/", "quick", quick, e)) ||
        (rc = ps_h5_attr_set_str(f, "/", "started", now, e)))
        return rc;
    return 0;
}

/* On --resume: the partial file must come from the same config; returns
 * the set of (point, repeat) already done and trims detail rows written by
 * a point that did not finish. */
static int resume_scan(hid_t f, const plan *pl, const char *config_text, int quick,
                       unsigned char *done, size_t *ndone, ps_err *e)
{
    char *old = NULL;
    int rc = ps_h5_attr_get_str(f, "/", "config", &old, e);
    if (rc)
        return rc;
    int same = strcmp(old, config_text) == 0;
    free(old);
    double q = -1;
    ps_h5_attr_get_double(f, "/", "quick", &q, NULL);
    if (!same || (int)q != quick)
        return ps_errf(e, PS_EINPUT,
                       "the partial file was written by a different config%s; rerun with "
                       "--force to start over",
                       same ? " (--quick differs)" : "");
    char path[256];
    snprintf(path, sizeof path, "/%s/points", pl->study->name);
    *ndone = 0;
    if (!ps_h5_exists(f, path))
        return 0;
    ps_table *t;
    if ((rc = ps_h5_table_read(f, path, &t, e)))
        return rc;
    size_t total = pl->npoints * (size_t)pl->repeats;
    for (size_t r = 0; r < t->nrows; r++) {
        int64_t p = ps_table_get_i(t, r, 0), rep = ps_table_get_i(t, r, 1);
        size_t k = (size_t)p * (size_t)pl->repeats + (size_t)rep;
        if (p >= 0 && rep >= 0 && k < total && !done[k]) {
            done[k] = 1;
            (*ndone)++;
        }
    }
    ps_table_free(t);
    /* Detail rows are appended point by point before the point's row, so a
     * cut-off point can only have left rows at the tail. */
    hid_t g = H5Gopen2(f, pl->study->name, H5P_DEFAULT);
    if (g < 0)
        return 0;
    H5G_info_t gi;
    H5Gget_info(g, &gi);
    for (hsize_t i = 0; i < gi.nlinks && !rc; i++) {
        char nm[128];
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nm, sizeof nm, H5P_DEFAULT);
        if (!strcmp(nm, "points") || !strcmp(nm, "summary"))
            continue;
        snprintf(path, sizeof path, "/%s/%s", pl->study->name, nm);
        ps_table *d;
        if (ps_h5_table_read(f, path, &d, NULL))
            continue;
        int pc = ps_table_col(d, "point");
        size_t keep = d->nrows;
        for (size_t r = 0; pc >= 0 && r < d->nrows; r++) {
            int64_t p = ps_table_get_i(d, r, pc);
            int any = 0;
            for (long long rep = 0; rep < pl->repeats; rep++)
                any |= p >= 0 && (size_t)p < pl->npoints &&
                       done[(size_t)p * (size_t)pl->repeats + (size_t)rep];
            if (!any) {
                keep = r;
                break;
            }
        }
        if (keep < d->nrows)
            rc = ps_h5_table_truncate(f, path, keep, e);
        ps_table_free(d);
    }
    H5Gclose(g);
    return rc;
}

int ps_run(const ps_run_opts *o, ps_err *e)
{
    plan pl;
    int rc = plan_load(&pl, o->config_path, o->quick, e);
    if (rc) {
        plan_free(&pl);
        return rc;
    }
    char *config_text = ps_file_read(o->config_path, NULL, e);
    if (!config_text) {
        plan_free(&pl);
        return PS_EINPUT;
    }
    const ps_study *st = pl.study;
    size_t total = pl.npoints * (size_t)pl.repeats;
    size_t nmetrics = 0;
    for (const ps_metric_spec *m = st->metrics; m->name; m++)
        nmetrics++;

    /* Reject bad figures and impossible points before any file is touched. */
    ps_table *row = points_layout(&pl);
    if ((rc = ps_plot_check_figures(json_object_get(pl.root, "figures"), row, e)))
        ps_err_prefix(e, "%s: ", o->config_path);
    for (size_t i = 0; i < pl.npoints && st->check_point && !rc; i++) {
        ps_point p = {.study = st, .values = point_values(&pl, i), .index = (int)i,
                      .config_path = o->config_path, .side_dir = ""};
        rc = st->check_point(&p, e);
        json_decref(p.values);
        if (rc)
            ps_err_prefix(e, "%s: point %zu: ", o->config_path, i);
    }
    char out[4096], side[4200];
    if (o->out_path)
        snprintf(out, sizeof out, "%s", o->out_path);
    else
        snprintf(out, sizeof out, "results/%s.h5", pl.name);
    size_t ol = strlen(out);
    snprintf(side, sizeof side, "%.*s", (int)(ol > 3 && !strcmp(out + ol - 3, ".h5") ? ol - 3 : ol),
             out);
    char dir[4096];
    ps_path_dir(out, dir, sizeof dir);
    if (!rc)
        rc = ps_mkdir_p(dir, e);
    int resumed = 0;
    ps_h5 *h = rc ? NULL : ps_h5_open_result(out, o->force, o->resume, &resumed, e);
    if (!rc && !h)
        rc = e->code ? e->code : PS_ERUN;
    unsigned char *done = calloc(total ? total : 1, 1);
    size_t ndone = 0;
    hid_t f = h ? ps_h5_file(h) : -1;
    if (!rc && resumed)
        rc = resume_scan(f, &pl, config_text, o->quick, done, &ndone, e);
    if (!rc && !resumed)
        rc = write_root_attrs(f, &pl, config_text, o->config_path, o->quick, e);
    if (!rc)
        rc = write_paper(f, json_object_get(pl.root, "paper"), e);

    char points_path[256];
    snprintf(points_path, sizeof points_path, "/%s/points", st->name);
    if (!rc && !ps_h5_exists(f, points_path))
        rc = ps_h5_table_append(f, points_path, row, 0, 0, e);

    interrupted = 0;
    void (*old_int)(int) = signal(SIGINT, on_signal);
    void (*old_term)(int) = signal(SIGTERM, on_signal);
    ps_progress prog;
    ps_progress_start(&prog, pl.name, total);
    double t0 = ps_now_s();
    double *metrics = calloc(nmetrics + 1, sizeof *metrics);
    size_t ran = 0;
    for (size_t k = 0; k < total && !rc; k++) {
        if (done[k])
            continue;
        if (interrupted) {
            rc = ps_errf(e, PS_ERUN, "interrupted: %zu of %zu point(s) saved in %s; continue "
                         "with --resume",
                         ndone, total, ps_h5_partial_path(h));
            break;
        }
        size_t i = k / (size_t)pl.repeats;
        ps_point p = {.study = st, .values = point_values(&pl, i), .index = (int)i,
                      .repeat = (int)(k % (size_t)pl.repeats), .config_path = o->config_path,
                      .side_dir = side};
        /* Seeds differ per point and repeat and do not depend on which
         * points ran before (so --resume gives the same numbers). */
        p.seed = (unsigned long)pl.seed * 1000003ul + (unsigned long)k;
        p.rng = gsl_rng_alloc(gsl_rng_mt19937);
        gsl_rng_set(p.rng, p.seed);
        for (size_t m = 0; m < nmetrics; m++)
            metrics[m] = NAN;
        char detail[128];
        snprintf(detail, sizeof detail, "point %zu", i);
        ps_progress_update(&prog, ndone, detail);
        double ts = ps_now_s();
        rc = st->run_point(&p, metrics, e);
        double run_s = ps_now_s() - ts;
        if (rc) {
            char ctx[256];
            snprintf(ctx, sizeof ctx, "%s: point %zu (", o->config_path, i);
            const char *key;
            json_t *v;
            int first = 1;
            json_object_foreach(p.values, key, v) {
                for (size_t d = 0; d < pl.ndims; d++)
                    if (!strcmp(pl.dims[d].name, key)) {
                        char *s = json_dumps(v, JSON_ENCODE_ANY);
                        size_t l = strlen(ctx);
                        snprintf(ctx + l, sizeof ctx - l, "%s%s=%s", first ? "" : ", ", key,
                                 s ? s : "?");
                        free(s);
                        first = 0;
                    }
            }
            size_t l = strlen(ctx);
            snprintf(ctx + l, sizeof ctx - l, "): ");
            ps_err_prefix(e, "%s", ctx);
        }
        for (size_t d = 0; d < p.nem && !rc; d++) {
            char path[256];
            snprintf(path, sizeof path, "/%s/%s", st->name, p.em[d].name);
            rc = ps_h5_table_append(f, path, p.em[d].t, 0, p.em[d].t->nrows, e);
        }
        if (!rc) {
            fill_row(row, &pl, &p, metrics, run_s);
            rc = ps_h5_table_append(f, points_path, row, 0, 1, e);
        }
        if (!rc && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
            rc = ps_errf(e, PS_ERUN, "%s: flush failed", ps_h5_partial_path(h));
        point_clear_emitted(&p);
        gsl_rng_free(p.rng);
        json_decref(p.values);
        if (!rc) {
            done[k] = 1;
            ndone++;
            ran++;
        }
    }
    ps_progress_update(&prog, ndone, "");
    ps_progress_end(&prog);
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);
    double wall_s = ps_now_s() - t0;

    ps_table *pts = NULL, *sum = NULL;
    if (!rc)
        rc = ps_h5_table_read(f, points_path, &pts, e);
    if (!rc && st->summarize) {
        sum = ps_summary_new();
        rc = st->summarize(pts, sum, e);
        char sp[256];
        snprintf(sp, sizeof sp, "/%s/summary", st->name);
        if (!rc)
            rc = ps_h5_table_write(f, sp, sum, e);
    }
    if (!rc && st->derive) {
        ps_derived der[16];
        size_t nder = 0;
        memset(der, 0, sizeof der);
        rc = st->derive(pts, der, 16, &nder, e);
        for (size_t d = 0; d < nder; d++) {
            char dp[256];
            snprintf(dp, sizeof dp, "/%s/%s", st->name, der[d].name);
            if (!rc && der[d].t)
                rc = ps_h5_table_write(f, dp, der[d].t, e);
            ps_table_free(der[d].t);
        }
    }
    if (!rc) {
        char now[64];
        ps_utc_iso(now, sizeof now);
        rc = ps_h5_attr_set_str(f, "/", "finished", now, e);
    }
    if (h) {
        if (!rc) {
            rc = ps_h5_commit(h, e);
        } else {
            /* Bad input found before any point ran leaves nothing behind;
             * a failed or interrupted run keeps its partial file. */
            int keep = ndone > 0 || resumed;
            char partial[4300];
            snprintf(partial, sizeof partial, "%s", ps_h5_partial_path(h));
            ps_h5_close_partial(h);
            if (!keep)
                remove(partial);
            else if (!interrupted)
                fprintf(stderr, "plansim: %zu point(s) kept in %s (--resume continues)\n",
                        ndone, partial);
        }
    }
    json_t *figs = json_array();
    if (!rc && !o->no_plot && json_array_size(json_object_get(pl.root, "figures"))) {
        ps_err pe = {0};
        if (ps_plot_results(out, NULL, figs, &pe))
            fprintf(stderr, "plansim: warning: figures not drawn: %s\n", pe.msg);
    }
    if (!rc) {
        if (o->json) {
            json_t *j = json_object();
            json_object_set_new(j, "study", json_string(st->name));
            json_object_set_new(j, "name", json_string(pl.name));
            json_object_set_new(j, "output", json_string(out));
            json_object_set_new(j, "quick", json_boolean(o->quick));
            json_object_set_new(j, "resumed", json_boolean(resumed));
            json_object_set_new(j, "points_total", json_integer((json_int_t)total));
            json_object_set_new(j, "points_run", json_integer((json_int_t)ran));
            json_object_set_new(j, "wall_time_s", json_real(wall_s));
            json_object_set(j, "figures", figs);
            if (sum)
                summary_json(sum, j);
            json_object_set_new(j, "points", ps_table_rows_json(pts));
            json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
            printf("\n");
            json_decref(j);
        } else {
            print_text(&pl, out, pts, sum, figs, ran, wall_s);
        }
    }
    json_decref(figs);
    ps_table_free(pts);
    ps_table_free(sum);
    ps_table_free(row);
    free(metrics);
    free(done);
    free(config_text);
    plan_free(&pl);
    return rc;
}
