/* Figures: HDF5 table → .dat blocks → generated .gp (variables + a template
 * from plots/) → gnuplot → PNG and SVG.
 *
 * The data handling lives here, the drawing in the plots/ templates: C
 * decides which rows go into which gnuplot `index` block and writes one plot
 * command per panel; the template sets up terminals, axes and the multiplot
 * layout and `eval`s those commands.  The generated script carries the template's text,
 * so it reruns without plansim or the checkout. */
#include "experiments/plot.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/h5io.h"
#include "common/json.h"
#include "common/util.h"

#define MAX_Y 16

enum { ST_LINESPOINTS, ST_LINES, ST_POINTS };

/* ---- growable text ------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_vprintf(sbuf *b, const char *fmt, va_list ap)
{
    if (b->oom)
        return;
    va_list ap2;
    va_copy(ap2, ap);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap2);
    va_end(ap2);
    if (k < 0) {
        b->oom = 1;
        return;
    }
    if (!b->p || b->n + (size_t)k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + (size_t)k + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
        vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    }
    b->n += (size_t)k;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

static void sb_putc(sbuf *b, char c)
{
    sb_printf(b, "%c", c);
}

/* A gnuplot single-quoted literal: '' is its only escape. Control characters
 * would end the command, so they become spaces. */
static void sb_gp_squote(sbuf *b, const char *s)
{
    sb_putc(b, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            sb_printf(b, "''");
        else
            sb_putc(b, iscntrl((unsigned char)*s) ? ' ' : *s);
    }
    sb_putc(b, '\'');
}

/* A gnuplot double-quoted literal (backslash escapes). */
static void sb_gp_dquote(sbuf *b, const char *s)
{
    sb_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_putc(b, '\\');
        sb_putc(b, iscntrl((unsigned char)*s) ? ' ' : *s);
    }
    sb_putc(b, '"');
}

/* ---- figure specs -------------------------------------------------------- */

typedef struct figspec {
    char at[40]; /* "$.figures[3]" */
    const char *name, *title, *xlabel, *ylabel, *table, *x, *series, *facet, *paper;
    const char *y[MAX_Y];
    int style[MAX_Y];
    int ny, y_is_array, logx, logy, bars;
    const json_t *where;
} figspec;

static int name_ok(const char *s, const char *extra)
{
    if (!*s || strlen(s) > 120)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && !(extra && strchr(extra, *s)))
            return 0;
    return 1;
}

static int parse_style(const json_t *v, const char *path, int *out, ps_err *e)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s && strcmp(s, "linespoints") == 0)
        *out = ST_LINESPOINTS;
    else if (s && strcmp(s, "lines") == 0)
        *out = ST_LINES;
    else if (s && strcmp(s, "points") == 0)
        *out = ST_POINTS;
    else if (s)
        return ps_errf(e, PS_EINPUT,
                       "%s: unknown style \"%s\" (expected points, lines or linespoints)", path, s);
    else
        return ps_errf(e, PS_EINPUT,
                       "%s: expected a style name (points, lines, linespoints), got %s", path,
                       ps_json_type_name(v));
    return 0;
}

static int where_scalar_ok(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

static int parse_spec(const json_t *f, int i, figspec *s, ps_err *e)
{
    static const char *const keys[] = {"name",  "title",  "xlabel", "ylabel", "table",
                                       "x",     "y",      "style",  "series", "facet",
                                       "where", "logx",   "logy",   "kind",   "paper",
                                       NULL};
    memset(s, 0, sizeof *s);
    snprintf(s->at, sizeof s->at, "$.figures[%d]", i);
    const char *at = s->at;
    if (!json_is_object(f))
        return ps_errf(e, PS_EINPUT, "%s: expected a figure object, got %s", at,
                       ps_json_type_name(f));
    int rc;
    if ((rc = ps_json_check_keys(f, at, keys, e)) ||
        (rc = ps_json_get_str(f, at, "name", 1, &s->name, e)))
        return rc;
    if (!name_ok(s->name, NULL))
        return ps_errf(e, PS_EINPUT,
                       "%s.name: \"%s\" must be 1-120 letters, digits, '_' or '-' (it names files)",
                       at, s->name);
    s->table = "points";
    if ((rc = ps_json_get_str(f, at, "title", 0, &s->title, e)) ||
        (rc = ps_json_get_str(f, at, "xlabel", 0, &s->xlabel, e)) ||
        (rc = ps_json_get_str(f, at, "ylabel", 0, &s->ylabel, e)) ||
        (rc = ps_json_get_str(f, at, "table", 0, &s->table, e)) ||
        (rc = ps_json_get_str(f, at, "x", 1, &s->x, e)) ||
        (rc = ps_json_get_str(f, at, "series", 0, &s->series, e)) ||
        (rc = ps_json_get_str(f, at, "facet", 0, &s->facet, e)) ||
        (rc = ps_json_get_str(f, at, "paper", 0, &s->paper, e)) ||
        (rc = ps_json_get_bool(f, at, "logx", 0, &s->logx, e)) ||
        (rc = ps_json_get_bool(f, at, "logy", 0, &s->logy, e)))
        return rc;
    if (!name_ok(s->table, "/."))
        return ps_errf(e, PS_EINPUT, "%s.table: \"%s\" is not a dataset name", at, s->table);
    if (s->paper && !name_ok(s->paper, NULL))
        return ps_errf(e, PS_EINPUT, "%s.paper: \"%s\" is not a /paper table name", at, s->paper);
    const char *kind = "lines";
    if ((rc = ps_json_get_str(f, at, "kind", 0, &kind, e)))
        return rc;
    if (strcmp(kind, "bars") == 0)
        s->bars = 1;
    else if (strcmp(kind, "lines") != 0)
        return ps_errf(e, PS_EINPUT, "%s.kind: unknown kind \"%s\" (expected lines or bars)", at,
                       kind);
    if (s->bars && s->logx)
        return ps_errf(e, PS_EINPUT, "%s.logx: a bar chart's x axis is categorical", at);

    const json_t *y = json_object_get(f, "y");
    if (!y)
        return ps_errf(e, PS_EINPUT, "%s.y: missing (required)", at);
    if (json_is_string(y)) {
        s->y[s->ny++] = json_string_value(y);
    } else if (json_is_array(y)) {
        s->y_is_array = 1;
        if (json_array_size(y) == 0)
            return ps_errf(e, PS_EINPUT, "%s.y: empty; name at least one column", at);
        if (json_array_size(y) > MAX_Y)
            return ps_errf(e, PS_EINPUT, "%s.y: %zu columns; at most %d per figure", at,
                           json_array_size(y), MAX_Y);
        for (size_t j = 0; j < json_array_size(y); j++) {
            const json_t *v = json_array_get(y, j);
            if (!json_is_string(v))
                return ps_errf(e, PS_EINPUT, "%s.y[%zu]: expected a column name, got %s", at, j,
                               ps_json_type_name(v));
            s->y[s->ny++] = json_string_value(v);
        }
    } else {
        return ps_errf(e, PS_EINPUT, "%s.y: expected a column name or an array of them, got %s",
                       at, ps_json_type_name(y));
    }

    const json_t *st = json_object_get(f, "style");
    char path[96];
    if (!st) {
        for (int j = 0; j < s->ny; j++)
            s->style[j] = ST_LINESPOINTS;
    } else if (json_is_array(st)) {
        if ((int)json_array_size(st) != s->ny)
            return ps_errf(e, PS_EINPUT, "%s.style: %zu styles for %d y columns", at,
                           json_array_size(st), s->ny);
        for (int j = 0; j < s->ny; j++) {
            snprintf(path, sizeof path, "%s.style[%d]", at, j);
            if ((rc = parse_style(json_array_get(st, (size_t)j), path, &s->style[j], e)))
                return rc;
        }
    } else {
        snprintf(path, sizeof path, "%s.style", at);
        if ((rc = parse_style(st, path, &s->style[0], e)))
            return rc;
        for (int j = 1; j < s->ny; j++)
            s->style[j] = s->style[0];
    }

    s->where = json_object_get(f, "where");
    if (s->where) {
        if (!json_is_object(s->where))
            return ps_errf(e, PS_EINPUT, "%s.where: expected an object {column: value}, got %s",
                           at, ps_json_type_name(s->where));
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)s->where, k, v) {
            int ok = where_scalar_ok(v);
            if (json_is_array(v)) {
                ok = json_array_size(v) > 0;
                for (size_t j = 0; j < json_array_size(v); j++)
                    ok &= where_scalar_ok(json_array_get(v, j));
            }
            if (!ok)
                return ps_errf(e, PS_EINPUT,
                               "%s.where.%s: expected a string, number or boolean (or a "
                               "non-empty array of them), got %s",
                               at, k, ps_json_type_name(v));
        }
    }
    return 0;
}

static void col_list(const ps_table *t, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t c = 0; c < t->ncols; c++) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s%s", c ? ", " : "", t->cols[c].name);
    }
}

static int need_col(const ps_table *t, const char *tpath, const char *col, const char *field,
                    int numeric, ps_err *e)
{
    int c = ps_table_col(t, col);
    if (c < 0) {
        char list[1200];
        col_list(t, list, sizeof list);
        return ps_errf(e, PS_EINPUT, "%s: no column \"%s\" in %s (columns: %s)", field, col,
                       tpath, list);
    }
    if (numeric && t->cols[c].type == PS_COL_STR)
        return ps_errf(e, PS_EINPUT, "%s: column \"%s\" holds strings; a y column must be numeric",
                       field, col);
    return 0;
}

/* Whole-string number parse (a where value given as "8" for a numeric column). */
static int parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return *s && !*end && !errno;
}

static int check_where_value(const json_t *v, const ps_col *col, const char *path, ps_err *e)
{
    if (json_is_array(v)) {
        char p[160];
        for (size_t j = 0; j < json_array_size(v); j++) {
            snprintf(p, sizeof p, "%s[%zu]", path, j);
            int rc = check_where_value(json_array_get(v, j), col, p, e);
            if (rc)
                return rc;
        }
        return 0;
    }
    double d;
    if (col->type == PS_COL_STR && !json_is_string(v))
        return ps_errf(e, PS_EINPUT, "%s: column \"%s\" holds strings; write the value in quotes",
                       path, col->name);
    if (col->type != PS_COL_STR && json_is_string(v) && !parse_num(json_string_value(v), &d))
        return ps_errf(e, PS_EINPUT, "%s: column \"%s\" is numeric, got \"%s\"", path, col->name,
                       json_string_value(v));
    return 0;
}

static int check_columns(const figspec *s, const ps_table *t, const char *tpath, ps_err *e)
{
    char field[160];
    int rc;
    snprintf(field, sizeof field, "%s.x", s->at);
    if ((rc = need_col(t, tpath, s->x, field, 0, e)))
        return rc;
    for (int j = 0; j < s->ny; j++) {
        if (s->y_is_array)
            snprintf(field, sizeof field, "%s.y[%d]", s->at, j);
        else
            snprintf(field, sizeof field, "%s.y", s->at);
        if ((rc = need_col(t, tpath, s->y[j], field, 1, e)))
            return rc;
    }
    snprintf(field, sizeof field, "%s.series", s->at);
    if (s->series && (rc = need_col(t, tpath, s->series, field, 0, e)))
        return rc;
    snprintf(field, sizeof field, "%s.facet", s->at);
    if (s->facet && (rc = need_col(t, tpath, s->facet, field, 0, e)))
        return rc;
    if (s->logx && t->cols[ps_table_col(t, s->x)].type == PS_COL_STR)
        return ps_errf(e, PS_EINPUT, "%s.logx: x column \"%s\" holds strings", s->at, s->x);
    if (s->where) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)s->where, k, v) {
            snprintf(field, sizeof field, "%s.where.%s", s->at, k);
            if ((rc = need_col(t, tpath, k, field, 0, e)) ||
                (rc = check_where_value(v, &t->cols[ps_table_col(t, k)], field, e)))
                return rc;
        }
    }
    return 0;
}

static int check_names_unique(const figspec *specs, size_t n, ps_err *e)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[i].name, specs[j].name) == 0)
                return ps_errf(e, PS_EINPUT, "%s.name: \"%s\" is already the name of %s",
                               specs[i].at, specs[i].name, specs[j].at);
    return 0;
}

int ps_plot_check_figures(const json_t *figures, const ps_table *points, ps_err *e)
{
    if (!figures)
        return 0;
    if (!json_is_array(figures))
        return ps_errf(e, PS_EINPUT, "$.figures: expected an array of figure objects, got %s",
                       ps_json_type_name(figures));
    size_t n = json_array_size(figures);
    figspec *specs = calloc(n ? n : 1, sizeof *specs);
    if (!specs)
        return ps_errf(e, PS_ERUN, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = parse_spec(json_array_get(figures, i), (int)i, &specs[i], e);
        if (!rc && points && strcmp(specs[i].table, "points") == 0)
            rc = check_columns(&specs[i], points, "the points table", e);
    }
    if (!rc)
        rc = check_names_unique(specs, n, e);
    free(specs);
    return rc;
}

/* ---- distinct values of a column ---------------------------------------- */

/* Numbers are compared with a relative tolerance so that a where value typed
 * as 0.1 matches a parameter stored from the same text. */
static int num_eq(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b || fabs(a - b) <= 1e-12 * fmax(fabs(a), fabs(b));
}

typedef struct valset {
    int is_str;
    size_t n, cap;
    double *d;
    const char **s; /* point into table storage, which outlives the set */
} valset;

static void valset_free(valset *v)
{
    free(v->d);
    free(v->s);
    memset(v, 0, sizeof *v);
}

/* Index of row r's value of column c (of any table) in v, or -1; a string
 * never matches a number. */
static int valset_find(const valset *v, const ps_table *t, size_t r, int c)
{
    int col_str = t->cols[c].type == PS_COL_STR;
    if (col_str != v->is_str)
        return -1;
    if (col_str) {
        const char *s = ps_table_get_s(t, r, c);
        for (size_t k = 0; k < v->n; k++)
            if (strcmp(v->s[k], s) == 0)
                return (int)k;
    } else {
        double d = ps_table_get_d(t, r, c);
        for (size_t k = 0; k < v->n; k++)
            if (num_eq(v->d[k], d))
                return (int)k;
    }
    return -1;
}

static int valset_add(valset *v, const ps_table *t, size_t r, int c)
{
    if (valset_find(v, t, r, c) >= 0 || (t->cols[c].type == PS_COL_STR) != v->is_str)
        return 0;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 16;
        double *d = realloc(v->d, cap * sizeof *d);
        if (!d)
            return -1;
        v->d = d;
        const char **s = realloc(v->s, cap * sizeof *s);
        if (!s)
            return -1;
        v->s = s;
        v->cap = cap;
    }
    v->s[v->n] = v->is_str ? ps_table_get_s(t, r, c) : NULL;
    v->d[v->n] = v->is_str ? 0 : ps_table_get_d(t, r, c);
    v->n++;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Numbers ascend; strings keep their first-appearance order (a sweep lists
 * them in the order the author thought meaningful). */
static void valset_sort(valset *v)
{
    if (!v->is_str && v->n > 1)
        qsort(v->d, v->n, sizeof *v->d, cmp_double);
}

static void valset_label(const valset *v, size_t k, char *buf, size_t n)
{
    if (v->is_str)
        snprintf(buf, n, "%s", v->s[k]);
    else
        snprintf(buf, n, "%.8g", v->d[k]);
}

/* ---- row selection ------------------------------------------------------- */

static int where_value_match(const ps_table *t, size_t r, int c, const json_t *v)
{
    if (json_is_array(v)) {
        for (size_t j = 0; j < json_array_size(v); j++)
            if (where_value_match(t, r, c, json_array_get(v, j)))
                return 1;
        return 0;
    }
    if (t->cols[c].type == PS_COL_STR)
        return json_is_string(v) && strcmp(ps_table_get_s(t, r, c), json_string_value(v)) == 0;
    double want;
    if (json_is_string(v)) {
        if (!parse_num(json_string_value(v), &want))
            return 0;
    } else if (json_is_boolean(v)) {
        want = json_is_true(v);
    } else {
        want = json_number_value(v);
    }
    return num_eq(ps_table_get_d(t, r, c), want);
}

/* Keys naming no column of t are ignored: a /paper table need not carry
 * every column the figure filters on. */
static int where_match(const ps_table *t, size_t r, const json_t *where)
{
    if (!where)
        return 1;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)where, k, v) {
        int c = ps_table_col(t, k);
        if (c >= 0 && !where_value_match(t, r, c, v))
            return 0;
    }
    return 1;
}

static void where_text(const json_t *where, char *buf, size_t n)
{
    buf[0] = '\0';
    if (!where)
        return;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)where, k, v) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s%s=", used ? ", " : "", k);
        size_t m = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t j = 0; j < m; j++) {
            const json_t *x = json_is_array(v) ? json_array_get(v, j) : v;
            used = strlen(buf);
            const char *sep = j ? "|" : "";
            if (json_is_string(x))
                snprintf(buf + used, n - used, "%s%s", sep, json_string_value(x));
            else if (json_is_integer(x))
                snprintf(buf + used, n - used, "%s%lld", sep, (long long)json_integer_value(x));
            else if (json_is_real(x))
                snprintf(buf + used, n - used, "%s%g", sep, json_real_value(x));
            else
                snprintf(buf + used, n - used, "%s%s", sep, json_is_true(x) ? "true" : "false");
        }
    }
}

/* ---- one figure ---------------------------------------------------------- */

typedef struct tcache {
    char path[512];
    ps_table *t; /* NULL: no such dataset */
} tcache;

typedef struct ctx {
    const char *h5;
    hid_t file;
    const char *study;
    const char *config_path; /* may be NULL */
    tcache *tabs;
    size_t ntabs;
    char dir[4096];
    char gnuplot[4096]; /* "" when not installed */
    char *tmpl[2];      /* lines.gp, bars.gp */
} ctx;

static int get_table(ctx *c, const char *path, ps_table **out, ps_err *e)
{
    for (size_t i = 0; i < c->ntabs; i++)
        if (strcmp(c->tabs[i].path, path) == 0) {
            *out = c->tabs[i].t;
            return 0;
        }
    tcache *tabs = realloc(c->tabs, (c->ntabs + 1) * sizeof *tabs);
    if (!tabs)
        return ps_errf(e, PS_ERUN, "out of memory");
    c->tabs = tabs;
    tcache *tc = &tabs[c->ntabs++];
    snprintf(tc->path, sizeof tc->path, "%s", path);
    tc->t = NULL;
    if (ps_h5_exists(c->file, path)) {
        int rc = ps_h5_table_read(c->file, path, &tc->t, e);
        if (rc)
            return rc;
    }
    *out = tc->t;
    return 0;
}

static void table_path(const ctx *c, const figspec *s, char *out, size_t n)
{
    if (s->table[0] == '/')
        snprintf(out, n, "%s", s->table);
    else
        snprintf(out, n, "/%s/%s", c->study, s->table);
}

/* One data source of a figure: the sim table, or its /paper overlay. */
typedef struct source {
    const ps_table *t;
    size_t *rows;
    size_t nrows;
    int paper;
    int xcol, fcol, scol;
    int ycol[MAX_Y]; /* -1: the paper has no such column (written as NaN) */
    valset series;   /* distinct values of scol over rows */
} source;

typedef struct block {
    int facet;        /* index into the facet set (0 without facets) */
    int series;       /* index of the sim series (color); -1: none matches */
    int paper_series; /* index among the paper's own series */
    int paper;
    size_t finite[MAX_Y]; /* plottable values per y; 0 → no curve */
    char label[200];      /* legend part: "stages=4", "paper", "paper stages=4" */
} block;

typedef struct item {
    size_t g, row;
    double key;
} item;

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->g != y->g)
        return x->g < y->g ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row ? 1 : 0;
}

typedef struct figure {
    const figspec *s;
    source sim, paper;
    int have_paper;
    valset facets, cats;
    int categorical;
    int nseries; /* sim series count, 1 without a series column */
    block *blocks;
    size_t nblocks;
} figure;

static void source_free(source *src)
{
    free(src->rows);
    valset_free(&src->series);
}

static void figure_free(figure *f)
{
    source_free(&f->sim);
    source_free(&f->paper);
    valset_free(&f->facets);
    valset_free(&f->cats);
    free(f->blocks);
}

static double x_key(const figure *f, const source *src, size_t r)
{
    if (f->categorical)
        return (double)valset_find(&f->cats, src->t, r, src->xcol);
    return ps_table_get_d(src->t, r, src->xcol);
}

/* Rows of t passing the figure's filter, with a usable x (and, for the
 * paper, a panel to go in). */
static int select_rows(figure *f, source *src, ps_err *e)
{
    const ps_table *t = src->t;
    src->rows = malloc((t->nrows ? t->nrows : 1) * sizeof *src->rows);
    if (!src->rows)
        return ps_errf(e, PS_ERUN, "out of memory");
    for (size_t r = 0; r < t->nrows; r++) {
        if (!where_match(t, r, f->s->where))
            continue;
        if (t->cols[src->xcol].type != PS_COL_STR && !isfinite(ps_table_get_d(t, r, src->xcol)))
            continue;
        if (src->paper && f->s->facet && valset_find(&f->facets, t, r, src->fcol) < 0)
            continue;
        src->rows[src->nrows++] = r;
    }
    return 0;
}

static void series_label(const figure *f, const source *src, int k, char *buf, size_t n)
{
    char v[128];
    if (src->scol < 0 || k < 0) {
        snprintf(buf, n, "%s", src->paper ? "paper" : "");
        return;
    }
    valset_label(&src->series, (size_t)k, v, sizeof v);
    snprintf(buf, n, "%s%s=%s", src->paper ? "paper " : "", f->s->series, v);
}

/* Append src's blocks: rows grouped by (facet, series), sorted by x, repeats
 * (equal x) averaged over their finite values. */
static int write_blocks(figure *f, source *src, sbuf *dat, ps_err *e)
{
    const figspec *s = f->s;
    const ps_table *t = src->t;
    size_t ns = src->scol >= 0 ? src->series.n : 1;
    item *it = malloc((src->nrows ? src->nrows : 1) * sizeof *it);
    if (!it)
        return ps_errf(e, PS_ERUN, "out of memory");
    for (size_t i = 0; i < src->nrows; i++) {
        size_t r = src->rows[i];
        int fi = s->facet ? valset_find(&f->facets, t, r, src->fcol) : 0;
        int si = src->scol >= 0 ? valset_find(&src->series, t, r, src->scol) : 0;
        it[i] = (item){(size_t)fi * ns + (size_t)si, r, x_key(f, src, r)};
    }
    qsort(it, src->nrows, sizeof *it, cmp_item);

    size_t i = 0;
    while (i < src->nrows) {
        size_t g = it[i].g;
        block *nb = realloc(f->blocks, (f->nblocks + 1) * sizeof *nb);
        if (!nb) {
            free(it);
            return ps_errf(e, PS_ERUN, "out of memory");
        }
        f->blocks = nb;
        block *b = &nb[f->nblocks];
        memset(b, 0, sizeof *b);
        b->facet = (int)(g / ns);
        b->paper = src->paper;
        int si = src->scol >= 0 ? (int)(g % ns) : -1;
        b->paper_series = si < 0 ? 0 : si;
        series_label(f, src, si, b->label, sizeof b->label);
        if (!src->paper)
            b->series = si < 0 ? 0 : si;
        else if (si >= 0 && f->sim.scol >= 0)
            b->series = valset_find(&f->sim.series, t, it[i].row, src->scol);
        else
            b->series = -1;

        char fl[160] = "";
        if (s->facet) {
            char v[128];
            valset_label(&f->facets, (size_t)b->facet, v, sizeof v);
            snprintf(fl, sizeof fl, "%s=%s", s->facet, v);
        }
        char hdr[400];
        if (*fl && *b->label)
            snprintf(hdr, sizeof hdr, "%s, %s", fl, b->label);
        else
            snprintf(hdr, sizeof hdr, "%s", *fl ? fl : *b->label ? b->label : "all rows");
        sb_printf(dat, "%s# index %zu: %s\n", f->nblocks ? "\n\n" : "", f->nblocks, hdr);

        while (i < src->nrows && it[i].g == g) {
            size_t j = i;
            while (j < src->nrows && it[j].g == g && num_eq(it[j].key, it[i].key))
                j++;
            /* x exactly (sweeps of byte sizes exceed 10 digits); y to 10. */
            sb_printf(dat, "%.15g", it[i].key);
            for (int y = 0; y < s->ny; y++) {
                double sum = 0;
                size_t cnt = 0;
                for (size_t k = i; k < j && src->ycol[y] >= 0; k++) {
                    double v = ps_table_get_d(t, it[k].row, src->ycol[y]);
                    if (isfinite(v))
                        sum += v, cnt++;
                }
                if (cnt) {
                    sb_printf(dat, " %.10g", sum / (double)cnt);
                    b->finite[y]++;
                } else {
                    sb_printf(dat, " NaN");
                }
            }
            if (f->categorical) {
                char lab[128];
                valset_label(&f->cats, (size_t)it[i].key, lab, sizeof lab);
                /* gnuplot data files have no escape for '"'. */
                for (char *p = lab; *p; p++)
                    if (*p == '"')
                        *p = '\'';
                sb_printf(dat, " \"%s\"", lab);
            }
            sb_putc(dat, '\n');
            i = j;
        }
        f->nblocks++;
    }
    free(it);
    return 0;
}

static void axis_label(const ps_table *t, const char *col, char *buf, size_t n)
{
    int c = ps_table_col(t, col);
    const char *u = c >= 0 ? t->cols[c].units : "";
    if (*u)
        snprintf(buf, n, "%s [%s]", col, u);
    else
        snprintf(buf, n, "%s", col);
}

static void default_ylabel(const figspec *s, const ps_table *t, char *buf, size_t n)
{
    if (s->ny == 1) {
        axis_label(t, s->y[0], buf, n);
        return;
    }
    const char *u = t->cols[ps_table_col(t, s->y[0])].units;
    buf[0] = '\0';
    for (int j = 0; j < s->ny; j++) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s%s", j ? ", " : "", s->y[j]);
        if (strcmp(t->cols[ps_table_col(t, s->y[j])].units, u) != 0)
            u = "";
    }
    if (*u) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, " [%s]", u);
    }
}

/* Curve title: paper/series part, plus the y column when there are several. */
static void curve_title(const figure *f, const block *b, int j, char *buf, size_t n)
{
    const figspec *s = f->s;
    if (s->ny > 1 && *b->label)
        snprintf(buf, n, "%s, %s", b->label, s->y[j]);
    else if (s->ny > 1 || !*b->label)
        snprintf(buf, n, "%s", s->y[j]);
    else
        snprintf(buf, n, "%s", b->label);
}

static const int filled_pt[] = {7, 5, 9, 13, 11, 15};
static const int open_pt[] = {6, 4, 8, 12, 10, 14};
static const double bar_density[] = {0.85, 0.55, 0.3, 0.15};

/* One plot clause (gnuplot syntax) for curve (block b, y j). */
static void plot_clause(const figure *f, size_t bi, int j, int nslots, sbuf *c)
{
    const figspec *s = f->s;
    const block *b = &f->blocks[bi];
    int ycol = 2 + j;
    char lc[32], title[400];
    if (b->paper && b->series < 0)
        snprintf(lc, sizeof lc, "rgb 'black'");
    else if (s->series)
        snprintf(lc, sizeof lc, "%d", b->series + 1);
    else
        snprintf(lc, sizeof lc, "%d", j + 1);
    curve_title(f, b, j, title, sizeof title);
    int npt = (int)(sizeof filled_pt / sizeof *filled_pt);

    if (s->bars) {
        int slot = (s->series ? b->series : 0) * s->ny + j;
        if (b->paper) {
            int npy = 0, pj = 0;
            for (int k = 0; k < s->ny; k++)
                if (f->paper.ycol[k] >= 0)
                    pj += k < j, npy++;
            slot = f->nseries * s->ny + b->paper_series * npy + pj;
        }
        double bw = 0.8 / nslots, off = (slot - (nslots - 1) / 2.0) * bw;
        sb_printf(c, "datafile index %zu using ($1%+.4f):%d with boxes lc %s ", bi, off, ycol, lc);
        if (b->paper)
            sb_printf(c, "fs pattern 4 border");
        else
            sb_printf(c, "fs solid %.2f border", s->series ? bar_density[j % 4] : 0.85);
    } else if (b->paper) {
        sb_printf(c, "datafile index %zu using 1:%d with points pt %d ps 1.6 lw 2 lc %s", bi,
                  ycol, open_pt[j % npt], lc);
    } else {
        int dt = s->series ? j + 1 : 1;
        switch (s->style[j]) {
        case ST_LINES:
            sb_printf(c, "datafile index %zu using 1:%d with lines lw 2 dt %d lc %s", bi, ycol, dt,
                      lc);
            break;
        case ST_POINTS:
            sb_printf(c, "datafile index %zu using 1:%d with points pt %d ps 1.4 lc %s", bi, ycol,
                      filled_pt[j % npt], lc);
            break;
        default:
            sb_printf(c,
                      "datafile index %zu using 1:%d with linespoints lw 2 dt %d pt %d ps 1.2 "
                      "lc %s",
                      bi, ycol, dt, filled_pt[j % npt], lc);
        }
    }
    sb_printf(c, " title ");
    sb_gp_squote(c, title);
}

/* The generated script: how to rerun it, the variables, then the template. */
static void write_script(const ctx *cx, const figure *f, const char *tpath, const char *tmpl,
                         sbuf *gp)
{
    const figspec *s = f->s;
    const ps_table *t = f->sim.t;
    size_t nf = s->facet ? f->facets.n : 1;
    char buf[1024], wh[600];

    sb_printf(gp, "# %s: plansim figure %s of %s, drawn from %s in %s.\n", s->name, s->at,
              cx->config_path ? cx->config_path : "the run's config", tpath, cx->h5);
    sb_printf(gp, "# Generated by plansim %s: the variables below feed the template\n"
                  "# plots/%s.gp, copied after them.  Rerun from anywhere with\n"
                  "#   gnuplot %s.gp                      (writes %s.png and %s.svg)\n"
                  "#   gnuplot -e 'formats=\"svg\"' %s.gp\n\n",
              ps_version, s->bars ? "bars" : "lines", s->name, s->name, s->name, s->name);
    sb_printf(gp, "# Paths are relative to this script's folder.\n"
                  "if (exists(\"ARG0\") && strstrt(ARG0, \"/\") > 0) {\n"
                  "    _i = strlen(ARG0)\n"
                  "    while (ARG0[_i:_i] ne \"/\") { _i = _i - 1 }\n"
                  "    cd ARG0[1:_i]\n"
                  "}\n");
    sb_printf(gp, "datafile = \"%s.dat\"\n", s->name);
    sb_printf(gp, "if (!exists(\"outbase\")) { outbase = \"%s\" }\n", s->name);
    int cols = (int)ceil(sqrt((double)nf)), rows = (int)((nf + (size_t)cols - 1) / (size_t)cols);
    /* 640x480 per panel, never smaller than one 1200x800 figure. */
    int width = cols * 640 > 1200 ? cols * 640 : 1200, height = rows * 480 > 800 ? rows * 480 : 800;
    sb_printf(gp, "width = %d\nheight = %d\n", width, height);

    where_text(s->where, wh, sizeof wh);
    if (s->title)
        snprintf(buf, sizeof buf, "%s", s->title);
    else if (*wh)
        snprintf(buf, sizeof buf, "%s (%s)", s->name, wh);
    else
        snprintf(buf, sizeof buf, "%s", s->name);
    sb_printf(gp, "fig_title = ");
    sb_gp_squote(gp, buf);
    if (s->xlabel)
        snprintf(buf, sizeof buf, "%s", s->xlabel);
    else
        axis_label(t, s->x, buf, sizeof buf);
    sb_printf(gp, "\nfig_xlabel = ");
    sb_gp_squote(gp, buf);
    if (s->ylabel)
        snprintf(buf, sizeof buf, "%s", s->ylabel);
    else
        default_ylabel(s, t, buf, sizeof buf);
    sb_printf(gp, "\nfig_ylabel = ");
    sb_gp_squote(gp, buf);
    sb_printf(gp, "\nlogx = %d\nlogy = %d\n", s->logx, s->logy);

    /* Categorical x: positions 0..n-1 on the axis, labelled by xtics. */
    sbuf xt = {0};
    if (f->categorical) {
        size_t maxlen = 0;
        for (size_t k = 0; k < f->cats.n; k++) {
            valset_label(&f->cats, k, buf, sizeof buf);
            maxlen = strlen(buf) > maxlen ? strlen(buf) : maxlen;
        }
        sb_printf(&xt, "set xtics %s(", f->cats.n > 8 || maxlen > 12 ? "rotate by -30 left " : "");
        for (size_t k = 0; k < f->cats.n; k++) {
            valset_label(&f->cats, k, buf, sizeof buf);
            sb_printf(&xt, "%s", k ? ", " : "");
            sb_gp_squote(&xt, buf);
            sb_printf(&xt, " %zu", k);
        }
        sb_putc(&xt, ')');
    }
    sb_printf(gp, "ncats = %zu\nxtics_cmd = ", f->categorical ? f->cats.n : 0);
    sb_gp_dquote(gp, xt.p ? xt.p : "");
    free(xt.p);

    /* Bars per cluster: every sim series × y, then the paper's series × the
     * y columns it publishes. */
    int nslots = f->nseries * s->ny;
    if (f->have_paper) {
        int npy = 0;
        for (int j = 0; j < s->ny; j++)
            npy += f->paper.ycol[j] >= 0;
        nslots += (int)(f->paper.scol >= 0 ? f->paper.series.n : 1) * npy;
    }
    sb_printf(gp, "\nboxwidth = %.4f\n", 0.8 / nslots);

    sb_printf(gp, "nfacets = %zu\narray facet_title[%zu]\narray plotcmd[%zu]\n", nf, nf, nf);
    for (size_t fi = 0; fi < nf; fi++) {
        if (s->facet) {
            char v[128];
            valset_label(&f->facets, fi, v, sizeof v);
            snprintf(buf, sizeof buf, "%s=%s", s->facet, v);
        } else {
            buf[0] = '\0';
        }
        sb_printf(gp, "facet_title[%zu] = ", fi + 1);
        sb_gp_squote(gp, buf);
        sb_putc(gp, '\n');
        int first = 1;
        for (size_t bi = 0; bi < f->nblocks; bi++) {
            if (f->blocks[bi].facet != (int)fi)
                continue;
            for (int j = 0; j < s->ny; j++) {
                if (!f->blocks[bi].finite[j])
                    continue;
                sbuf cl = {0};
                sb_printf(&cl, "%s", first ? "plot " : ", ");
                plot_clause(f, bi, j, nslots, &cl);
                if (first)
                    sb_printf(gp, "plotcmd[%zu] = ", fi + 1);
                else
                    sb_printf(gp, "plotcmd[%zu] = plotcmd[%zu] . ", fi + 1, fi + 1);
                sb_gp_dquote(gp, cl.p ? cl.p : "");
                sb_putc(gp, '\n');
                gp->oom |= cl.oom;
                free(cl.p);
                first = 0;
            }
        }
        /* A panel with nothing finite still gets drawn, saying so, rather
         * than failing the whole figure. */
        if (first)
            sb_printf(gp, "plotcmd[%zu] = \"set label 99 'no data' at graph 0.5,0.5 center; "
                          "plot [1:2][1:2] 3 notitle; unset label 99\"\n",
                      fi + 1);
    }
    sb_printf(gp, "\n# ---- plots/%s.gp ----\n%s", s->bars ? "bars" : "lines", tmpl);
}

/* ---- running gnuplot ----------------------------------------------------- */

int ps_plot_find_gnuplot(char *out, size_t n)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0) {
            snprintf(out, n, "%.*s/gnuplot", (int)len, path);
            if (access(out, X_OK) == 0)
                return 1;
        }
        path += len + (end ? 1 : 0);
    }
    out[0] = '\0';
    return 0;
}

/* Run `gnuplot -d -e "outbase='<outbase>'" <script>` inside dir; -d skips
 * the user's ~/.gnuplot so figures do not depend on who draws them.  On
 * failure, errline holds the first error line gnuplot printed. */
int ps_plot_run_gnuplot(const char *gnuplot, const char *dir, const char *script,
                        const char *outbase, char *errline, size_t n)
{
    char expr[300];
    snprintf(expr, sizeof expr, "outbase='%s'", outbase);
    errline[0] = '\0';
    int pfd[2];
    if (pipe(pfd)) {
        snprintf(errline, n, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errline, n, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (chdir(dir) != 0)
            _exit(126);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execl(gnuplot, "gnuplot", "-d", "-e", expr, script, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char out[8192];
    size_t got = 0;
    for (;;) {
        char tmp[4096];
        ssize_t k = read(pfd[0], tmp, sizeof tmp);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        size_t keep = (size_t)k < sizeof out - 1 - got ? (size_t)k : sizeof out - 1 - got;
        memcpy(out + got, tmp, keep);
        got += keep;
    }
    out[got] = '\0';
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            snprintf(errline, n, "waitpid: %s", strerror(errno));
            return -1;
        }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (code == 0)
        return 0;
    if (code == 126)
        snprintf(errline, n, "cannot enter %s", dir);
    /* gnuplot echoes the offending command and a caret before the message;
     * the first line that is neither blank, a warning nor that echo is the
     * one worth showing. */
    const char *pick = NULL, *first = NULL;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '^')
            continue;
        if (!first)
            first = line;
        if (!pick && strstr(line, " line ") && !strstr(line, "warning:"))
            pick = line;
    }
    if (!errline[0])
        snprintf(errline, n, "%s", pick ? pick : first ? first : "(no message)");
    return code;
}

static json_t *path_json(const char *dir, const char *name, const char *ext)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s.%s", dir, name, ext);
    return json_string(p);
}

/* Gather, group and write one figure; returns 0, or a run error (input was
 * validated before). */
static int draw_figure(ctx *cx, const figspec *s, json_t *report, int *gnuplot_missing, ps_err *e)
{
    char tpath[600];
    table_path(cx, s, tpath, sizeof tpath);
    ps_table *t = NULL;
    int rc = get_table(cx, tpath, &t, e);
    if (rc)
        return rc;
    figure f;
    memset(&f, 0, sizeof f);
    f.s = s;
    f.sim.t = t;
    f.sim.xcol = ps_table_col(t, s->x);
    f.sim.fcol = s->facet ? ps_table_col(t, s->facet) : -1;
    f.sim.scol = s->series ? ps_table_col(t, s->series) : -1;
    f.sim.series.is_str = f.sim.scol >= 0 && t->cols[f.sim.scol].type == PS_COL_STR;
    for (int j = 0; j < s->ny; j++)
        f.sim.ycol[j] = ps_table_col(t, s->y[j]);
    f.facets.is_str = f.sim.fcol >= 0 && t->cols[f.sim.fcol].type == PS_COL_STR;
    f.categorical = s->bars || t->cols[f.sim.xcol].type == PS_COL_STR;
    f.cats.is_str = t->cols[f.sim.xcol].type == PS_COL_STR;

    sbuf dat = {0}, gp = {0};
    if ((rc = select_rows(&f, &f.sim, e)))
        goto done;
    if (f.sim.nrows == 0) {
        char wh[600];
        where_text(s->where, wh, sizeof wh);
        if (report) {
            char why[800];
            snprintf(why, sizeof why, "no rows of %s%s%s", tpath, *wh ? " match " : "", wh);
            json_array_append_new(report,
                                  json_pack("{s:s, s:s}", "figure", s->name, "skipped", why));
        }
        goto done;
    }
    for (size_t i = 0; i < f.sim.nrows; i++) {
        size_t r = f.sim.rows[i];
        if ((f.sim.fcol >= 0 && valset_add(&f.facets, t, r, f.sim.fcol)) ||
            (f.sim.scol >= 0 && valset_add(&f.sim.series, t, r, f.sim.scol)) ||
            (f.categorical && valset_add(&f.cats, t, r, f.sim.xcol))) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto done;
        }
    }
    valset_sort(&f.facets);
    valset_sort(&f.sim.series);
    f.nseries = f.sim.scol >= 0 ? (int)f.sim.series.n : 1;

    /* The published values, when the file has them in a compatible shape. */
    if (s->paper) {
        char ppath[300];
        snprintf(ppath, sizeof ppath, "/paper/%s", s->paper);
        ps_table *pt = NULL;
        if ((rc = get_table(cx, ppath, &pt, e)))
            goto done;
        int ok = pt && ps_table_col(pt, s->x) >= 0;
        if (ok) {
            source *p = &f.paper;
            p->t = pt;
            p->paper = 1;
            p->xcol = ps_table_col(pt, s->x);
            ok = (pt->cols[p->xcol].type == PS_COL_STR) == (t->cols[f.sim.xcol].type == PS_COL_STR);
            p->fcol = s->facet ? ps_table_col(pt, s->facet) : -1;
            if (s->facet && p->fcol < 0)
                ok = 0;
            p->scol = s->series ? ps_table_col(pt, s->series) : -1;
            p->series.is_str = p->scol >= 0 && pt->cols[p->scol].type == PS_COL_STR;
            int any_y = 0;
            for (int j = 0; j < s->ny; j++) {
                int c = ps_table_col(pt, s->y[j]);
                p->ycol[j] = c >= 0 && pt->cols[c].type != PS_COL_STR ? c : -1;
                any_y |= p->ycol[j] >= 0;
            }
            ok &= any_y;
            if (ok && (rc = select_rows(&f, p, e)))
                goto done;
            ok &= p->nrows > 0;
            for (size_t i = 0; ok && i < p->nrows; i++) {
                size_t r = p->rows[i];
                if ((p->scol >= 0 && valset_add(&p->series, pt, r, p->scol)) ||
                    (f.categorical && valset_add(&f.cats, pt, r, p->xcol))) {
                    rc = ps_errf(e, PS_ERUN, "out of memory");
                    goto done;
                }
            }
            valset_sort(&p->series);
        }
        f.have_paper = ok;
    }
    valset_sort(&f.cats);

    /* The .dat: a header saying what is in it, then one block per group. */
    sb_printf(&dat, "# %s: plansim figure %s, from %s in %s\n", s->name, s->at, tpath, cx->h5);
    char wh[600];
    where_text(s->where, wh, sizeof wh);
    if (*wh)
        sb_printf(&dat, "# where %s\n", wh);
    sb_printf(&dat, "# rows with equal x in a block (repeats) are averaged\n");
    char lab[200];
    if (f.categorical)
        sb_printf(&dat, "# column 1: position of %s on the x axis (its value is the last column)\n",
                  s->x);
    else
        axis_label(t, s->x, lab, sizeof lab), sb_printf(&dat, "# column 1: %s\n", lab);
    for (int j = 0; j < s->ny; j++) {
        axis_label(t, s->y[j], lab, sizeof lab);
        sb_printf(&dat, "# column %d: %s\n", j + 2, lab);
    }
    if (f.categorical)
        sb_printf(&dat, "# column %d: %s\n", s->ny + 2, s->x);
    if (f.have_paper)
        sb_printf(&dat, "# blocks labelled paper: /paper/%s (NaN: not published)\n", s->paper);
    if ((rc = write_blocks(&f, &f.sim, &dat, e)) ||
        (f.have_paper && (rc = write_blocks(&f, &f.paper, &dat, e))))
        goto done;

    write_script(cx, &f, tpath, cx->tmpl[s->bars], &gp);
    if (dat.oom || gp.oom) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto done;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/%s.dat", cx->dir, s->name);
    if ((rc = ps_file_write_atomic(path, dat.p, dat.n, e)))
        goto done;
    snprintf(path, sizeof path, "%s/%s.gp", cx->dir, s->name);
    if ((rc = ps_file_write_atomic(path, gp.p, gp.n, e)))
        goto done;

    int drawn = 0;
    if (!cx->gnuplot[0]) {
        *gnuplot_missing = 1;
    } else {
        char script[300], outbase[300], errline[512];
        snprintf(script, sizeof script, "%s.gp", s->name);
        snprintf(outbase, sizeof outbase, "%s.tmp", s->name);
        int st = ps_plot_run_gnuplot(cx->gnuplot, cx->dir, script, outbase, errline, sizeof errline);
        char tmp_png[4400], tmp_svg[4400], png[4400], svg[4400];
        snprintf(tmp_png, sizeof tmp_png, "%s/%s.png", cx->dir, outbase);
        snprintf(tmp_svg, sizeof tmp_svg, "%s/%s.svg", cx->dir, outbase);
        snprintf(png, sizeof png, "%s/%s.png", cx->dir, s->name);
        snprintf(svg, sizeof svg, "%s/%s.svg", cx->dir, s->name);
        if (st != 0) {
            rc = ps_errf(e, PS_ERUN, "%s/%s: gnuplot failed (exit %d): %s", cx->dir, script, st,
                         errline);
        } else if (!ps_file_exists(tmp_png) || !ps_file_exists(tmp_svg)) {
            rc = ps_errf(e, PS_ERUN, "%s/%s: gnuplot wrote no %s", cx->dir, script,
                         ps_file_exists(tmp_png) ? tmp_svg : tmp_png);
        } else if (rename(tmp_png, png) || rename(tmp_svg, svg)) {
            rc = ps_errf(e, PS_ERUN, "%s: cannot rename gnuplot output: %s", cx->dir,
                         strerror(errno));
        } else {
            drawn = 1;
        }
        if (!drawn) {
            remove(tmp_png);
            remove(tmp_svg);
        }
    }
    if (report) {
        const char *dir_name = cx->dir;
        json_t *o = json_object();
        json_object_set_new(o, "figure", json_string(s->name));
        json_object_set_new(o, "dat", path_json(dir_name, s->name, "dat"));
        json_object_set_new(o, "gp", path_json(dir_name, s->name, "gp"));
        json_object_set_new(o, "png", drawn ? path_json(dir_name, s->name, "png") : json_null());
        json_object_set_new(o, "svg", drawn ? path_json(dir_name, s->name, "svg") : json_null());
        json_object_set_new(o, "paper", json_boolean(f.have_paper));
        json_array_append_new(report, o);
    }
done:
    free(dat.p);
    free(gp.p);
    figure_free(&f);
    return rc;
}

/* ---- entry points -------------------------------------------------------- */

int ps_plot_scripts_dir(char *out, size_t n, ps_err *e)
{
    const char *env = getenv("PLANSIM_PLOTS");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return 0;
    }
    char exe[4096], dir[4096], probe[4300];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        ps_path_dir(exe, dir, sizeof dir);
        static const char *const rel[] = {"../plots", "../../plots", "../share/plansim/plots"};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            snprintf(probe, sizeof probe, "%s/%s/lines.gp", dir, rel[i]);
            if (ps_file_exists(probe)) {
                snprintf(out, n, "%s/%s", dir, rel[i]);
                return 0;
            }
        }
    }
    if (ps_file_exists("plots/lines.gp")) {
        snprintf(out, n, "plots");
        return 0;
    }
    return ps_errf(e, PS_ERUN,
                   "cannot find the gnuplot templates (lines.gp): set PLANSIM_PLOTS to the "
                   "plots/ folder of the plansim checkout or installation");
}

static void default_out_dir(const char *h5, char *out, size_t n)
{
    size_t len = strlen(h5);
    if (len > 3 && strcmp(h5 + len - 3, ".h5") == 0)
        snprintf(out, n, "%.*s", (int)(len - 3), h5);
    else
        snprintf(out, n, "%s_plots", h5);
}

int ps_plot_results(const char *h5_path, const char *out_dir, json_t *report, ps_err *e)
{
    ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.h5 = h5_path;
    cx.file = ps_h5_open_read(h5_path, e);
    if (cx.file < 0)
        return PS_EINPUT;
    char *config = NULL, *study = NULL, *config_path = NULL;
    json_t *cfg = NULL;
    figspec *specs = NULL;
    size_t n = 0;
    int rc = 0;
    if ((rc = ps_h5_attr_get_str(cx.file, "/", "config", &config, e)) ||
        (rc = ps_h5_attr_get_str(cx.file, "/", "study", &study, e))) {
        ps_err_prefix(e, "%s: not a plansim result file: ", h5_path);
        goto out;
    }
    cx.study = study;
    if (ps_h5_attr_get_str(cx.file, "/", "config_path", &config_path, NULL) == 0)
        cx.config_path = config_path;
    char what[4400];
    if (config_path)
        snprintf(what, sizeof what, "%s (as stored in %s)", config_path, h5_path);
    else
        snprintf(what, sizeof what, "%s (config attribute)", h5_path);
    if (!(cfg = ps_json_load_str(config, what, e))) {
        rc = PS_EINPUT;
        goto out;
    }
    const json_t *figs = json_object_get(cfg, "figures");
    if (!figs)
        goto out;
    if (!json_is_array(figs)) {
        rc = ps_errf(e, PS_EINPUT, "%s: $.figures: expected an array of figure objects, got %s",
                     what, ps_json_type_name(figs));
        goto out;
    }
    n = json_array_size(figs);
    if (n == 0)
        goto out;
    if (!(specs = calloc(n, sizeof *specs))) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto out;
    }
    /* Everything is checked before anything is written: a typo in the last
     * figure should not leave the first ones redrawn and the rest stale. */
    for (size_t i = 0; i < n && !rc; i++)
        rc = parse_spec(json_array_get(figs, i), (int)i, &specs[i], e);
    if (!rc)
        rc = check_names_unique(specs, n, e);
    for (size_t i = 0; i < n && !rc; i++) {
        char tpath[600];
        table_path(&cx, &specs[i], tpath, sizeof tpath);
        ps_table *t = NULL;
        rc = get_table(&cx, tpath, &t, e);
        if (!rc && !t)
            rc = ps_errf(e, PS_EINPUT, "%s.table: no dataset %s in the file", specs[i].at, tpath);
        if (!rc)
            rc = check_columns(&specs[i], t, tpath, e);
    }
    if (rc) {
        ps_err_prefix(e, "%s: ", what);
        goto out;
    }

    char scripts[4096], tp[4300];
    if ((rc = ps_plot_scripts_dir(scripts, sizeof scripts, e)))
        goto out;
    for (int k = 0; k < 2; k++) {
        snprintf(tp, sizeof tp, "%s/%s", scripts, k ? "bars.gp" : "lines.gp");
        if (!(cx.tmpl[k] = ps_file_read(tp, NULL, e))) {
            rc = PS_ERUN;
            ps_err_prefix(e, "gnuplot template: ");
            goto out;
        }
    }
    if (out_dir)
        snprintf(cx.dir, sizeof cx.dir, "%s", out_dir);
    else
        default_out_dir(h5_path, cx.dir, sizeof cx.dir);
    if ((rc = ps_mkdir_p(cx.dir, e)))
        goto out;
    ps_plot_find_gnuplot(cx.gnuplot, sizeof cx.gnuplot);

    int missing = 0;
    ps_err first = {0};
    for (size_t i = 0; i < n; i++) {
        ps_err fe = {0};
        int frc = draw_figure(&cx, &specs[i], report, &missing, &fe);
        if (frc && !rc) {
            rc = frc;
            first = fe;
        }
    }
    if (rc)
        ps_errf(e, rc, "%s", first.msg);
    else if (missing)
        rc = ps_errf(e, PS_ERUN,
                     "gnuplot not found: install gnuplot-nox (apt-get install gnuplot-nox) to draw "
                     "the figures; the .dat and .gp files are in %s",
                     cx.dir);
out:
    for (size_t i = 0; i < cx.ntabs; i++)
        ps_table_free(cx.tabs[i].t);
    free(cx.tabs);
    free(cx.tmpl[0]);
    free(cx.tmpl[1]);
    free(specs);
    json_decref(cfg);
    free(config);
    free(study);
    free(config_path);
    H5Fclose(cx.file);
    return rc;
}
