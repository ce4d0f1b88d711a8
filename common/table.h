/* A small column-oriented table: the unit of every result plansim writes.
 * Columns are int64, double or short fixed-length strings; numeric columns
 * carry units.  common/h5io writes a table as one HDF5 compound dataset and
 * reads it back; the runner, the DES timeline and every study use it. */
#ifndef PS_TABLE_H
#define PS_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define PS_COL_NAME_MAX 64
#define PS_UNITS_MAX 24
#define PS_STR_LEN 48 /* fixed string width in HDF5, NUL included */

typedef enum { PS_COL_INT = 1, PS_COL_DOUBLE = 2, PS_COL_STR = 3 } ps_col_type;

typedef struct ps_col {
    char name[PS_COL_NAME_MAX];
    ps_col_type type;
    char units[PS_UNITS_MAX]; /* "" for strings and dimensionless counts */
    union {
        int64_t *i;
        double *d;
        char (*s)[PS_STR_LEN];
    } v;
} ps_col;

typedef struct ps_table {
    ps_col *cols;
    size_t ncols;
    size_t nrows, cap;
} ps_table;

ps_table *ps_table_new(void);
void ps_table_free(ps_table *t);

/* Add a column (only while the table has no rows).  Returns its index, or -1
 * on a duplicate name or allocation failure. */
int ps_table_add_col(ps_table *t, const char *name, ps_col_type type, const char *units);
/* Index of a column by name, or -1. */
int ps_table_col(const ps_table *t, const char *name);

/* Append one zero-filled row; returns its index, or (size_t)-1 on OOM. */
size_t ps_table_add_row(ps_table *t);
void ps_table_set_i(ps_table *t, size_t row, int col, int64_t v);
void ps_table_set_d(ps_table *t, size_t row, int col, double v);
void ps_table_set_s(ps_table *t, size_t row, int col, const char *v); /* truncated to PS_STR_LEN-1 */
int64_t ps_table_get_i(const ps_table *t, size_t row, int col);
/* Numeric value of any numeric column as double (NaN for strings). */
double ps_table_get_d(const ps_table *t, size_t row, int col);
const char *ps_table_get_s(const ps_table *t, size_t row, int col);
/* Cell formatted as text ("%.17g" for doubles) into buf. */
void ps_table_format(const ps_table *t, size_t row, int col, char *buf, size_t n);

/* Copy the column layout (no rows) of src. */
ps_table *ps_table_clone_layout(const ps_table *src);

#endif
