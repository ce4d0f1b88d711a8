/* The study interface: what the experiment runner needs from a study.
 * A study declares its parameters (typed, with defaults), the metric columns
 * of its points table, and a function that runs one sweep point.  The runner
 * owns everything else: config validation, the cartesian sweep, repeats and
 * seeds, HDF5 writing, resume, progress, --json, figures. */
#ifndef PS_STUDY_H
#define PS_STUDY_H

#include <gsl/gsl_rng.h>
#include <hdf5.h>
#include <jansson.h>

#include "common/err.h"
#include "common/table.h"

/* PS_PARAM_JSON takes any JSON value (e.g. generator knobs); swept JSON
 * values are stored in the points table as compact JSON text. */
typedef enum {
    PS_PARAM_INT = 1,
    PS_PARAM_NUM,
    PS_PARAM_STR,
    PS_PARAM_BOOL,
    PS_PARAM_JSON
} ps_param_type;

typedef struct ps_param_spec {
    const char *name;
    ps_param_type type;
    const char *def;   /* default as JSON text ("1f1b" quoted), NULL = required */
    const char *units; /* for numeric parameters; "" otherwise */
    const char *help;
} ps_param_spec;

typedef struct ps_metric_spec {
    const char *name;
    const char *units;
    const char *help;
} ps_metric_spec;

/* One sweep point as a study sees it. */
typedef struct ps_point ps_point;

long long ps_point_int(const ps_point *p, const char *name);
double ps_point_num(const ps_point *p, const char *name);
const char *ps_point_str(const ps_point *p, const char *name);
int ps_point_bool(const ps_point *p, const char *name);
/* The parameter's JSON value (borrowed; valid during run_point). */
const json_t *ps_point_json(const ps_point *p, const char *name);
int ps_point_index(const ps_point *p);
int ps_point_repeat(const ps_point *p);
unsigned long ps_point_seed(const ps_point *p);
/* A GSL RNG seeded with the point's seed (owned by the runner). */
gsl_rng *ps_point_rng(const ps_point *p);
/* Resolve a path parameter relative to the config file. */
void ps_point_path(const ps_point *p, const char *rel, char *out, size_t n);
/* A folder for side files of this run (traces), created on demand. */
int ps_point_side_dir(const ps_point *p, char *out, size_t n, ps_err *e);
/* Rows for a detail table /<study>/<name>.  The runner prepends a `point`
 * column; t's rows are copied, so the caller keeps ownership. */
int ps_point_emit(const ps_point *p, const char *name, const ps_table *t, ps_err *e);

/* A table computed from all points (e.g. speedups between methods),
 * written as /<study>/<name>; figures can draw it ("table": name). */
typedef struct ps_derived {
    char name[64];
    ps_table *t; /* the runner frees it */
} ps_derived;

typedef struct ps_study {
    const char *name;
    const char *summary;
    const ps_param_spec *params;   /* terminated by {NULL} */
    const ps_metric_spec *metrics; /* terminated by {NULL} */
    /* Optional: reject an impossible point before anything runs. */
    int (*check_point)(const ps_point *p, ps_err *e);
    /* Run one point; fill metrics[i] for every declared metric (NaN where
     * a metric does not apply).  PS_EINPUT aborts the run as bad input;
     * PS_ERUN as a failed run. */
    int (*run_point)(const ps_point *p, double *metrics, ps_err *e);
    /* Optional: scalar results over all points, appended as rows to `out`
     * (columns name, method, value, units; see ps_summary_add). */
    int (*summarize)(const ps_table *points, ps_table *out, ps_err *e);
    /* Optional: derived tables over all points; fill out[0..*n), *n <= max. */
    int (*derive)(const ps_table *points, ps_derived *out, size_t max, size_t *n, ps_err *e);
} ps_study;

/* Summary table helpers for summarize(). */
ps_table *ps_summary_new(void);
void ps_summary_add(ps_table *s, const char *name, const char *method, double value,
                    const char *units);

/* The registry (experiments/studies.c). */
const ps_study *ps_study_find(const char *name);
/* Comma-separated list of known study names (static buffer). */
const char *ps_study_names(void);

#endif
