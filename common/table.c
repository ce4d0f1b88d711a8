#include "table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ps_table *ps_table_new(void)
{
    return calloc(1, sizeof(ps_table));
}

void ps_table_free(ps_table *t)
{
    if (!t)
        return;
    for (size_t c = 0; c < t->ncols; c++)
        free(t->cols[c].v.d); /* every member of the union is one allocation */
    free(t->cols);
    free(t);
}

int ps_table_col(const ps_table *t, const char *name)
{
    for (size_t c = 0; c < t->ncols; c++)
        if (strcmp(t->cols[c].name, name) == 0)
            return (int)c;
    return -1;
}

int ps_table_add_col(ps_table *t, const char *name, ps_col_type type, const char *units)
{
    if (t->nrows || ps_table_col(t, name) >= 0 || strlen(name) >= PS_COL_NAME_MAX)
        return -1;
    ps_col *cols = realloc(t->cols, (t->ncols + 1) * sizeof *cols);
    if (!cols)
        return -1;
    t->cols = cols;
    ps_col *c = &cols[t->ncols];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->units, sizeof c->units, "%s", units ? units : "");
    c->type = type;
    if (t->cap) {
        size_t w = type == PS_COL_STR ? PS_STR_LEN : 8;
        c->v.d = calloc(t->cap, w);
        if (!c->v.d)
            return -1;
    }
    return (int)t->ncols++;
}

static size_t col_width(const ps_col *c)
{
    return c->type == PS_COL_STR ? PS_STR_LEN : 8;
}

size_t ps_table_add_row(ps_table *t)
{
    if (t->nrows == t->cap) {
        size_t ncap = t->cap ? 2 * t->cap : 16;
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = col_width(&t->cols[c]);
            void *p = realloc(t->cols[c].v.d, ncap * w);
            if (!p)
                return (size_t)-1;
            memset((char *)p + t->cap * w, 0, (ncap - t->cap) * w);
            t->cols[c].v.d = p;
        }
        t->cap = ncap;
    }
    return t->nrows++;
}

void ps_table_set_i(ps_table *t, size_t row, int col, int64_t v)
{
    ps_col *c = &t->cols[col];
    if (c->type == PS_COL_INT)
        c->v.i[row] = v;
    else if (c->type == PS_COL_DOUBLE)
        c->v.d[row] = (double)v;
}

void ps_table_set_d(ps_table *t, size_t row, int col, double v)
{
    ps_col *c = &t->cols[col];
    if (c->type == PS_COL_DOUBLE)
        c->v.d[row] = v;
    else if (c->type == PS_COL_INT)
        c->v.i[row] = (int64_t)v;
}

void ps_table_set_s(ps_table *t, size_t row, int col, const char *v)
{
    ps_col *c = &t->cols[col];
    if (c->type == PS_COL_STR)
        snprintf(c->v.s[row], PS_STR_LEN, "%s", v ? v : "");
}

int64_t ps_table_get_i(const ps_table *t, size_t row, int col)
{
    const ps_col *c = &t->cols[col];
    if (c->type == PS_COL_INT)
        return c->v.i[row];
    if (c->type == PS_COL_DOUBLE)
        return (int64_t)c->v.d[row];
    return 0;
}

double ps_table_get_d(const ps_table *t, size_t row, int col)
{
    const ps_col *c = &t->cols[col];
    if (c->type == PS_COL_INT)
        return (double)c->v.i[row];
    if (c->type == PS_COL_DOUBLE)
        return c->v.d[row];
    return NAN;
}

const char *ps_table_get_s(const ps_table *t, size_t row, int col)
{
    const ps_col *c = &t->cols[col];
    return c->type == PS_COL_STR ? c->v.s[row] : "";
}

void ps_table_format(const ps_table *t, size_t row, int col, char *buf, size_t n)
{
    const ps_col *c = &t->cols[col];
    switch (c->type) {
    case PS_COL_INT: snprintf(buf, n, "%lld", (long long)c->v.i[row]); break;
    case PS_COL_DOUBLE: snprintf(buf, n, "%.17g", c->v.d[row]); break;
    default: snprintf(buf, n, "%s", c->v.s[row]); break;
    }
}

ps_table *ps_table_clone_layout(const ps_table *src)
{
    ps_table *t = ps_table_new();
    if (!t)
        return NULL;
    for (size_t c = 0; c < src->ncols; c++)
        if (ps_table_add_col(t, src->cols[c].name, src->cols[c].type, src->cols[c].units) < 0) {
            ps_table_free(t);
            return NULL;
        }
    return t;
}
