/* Internals of the cost model shared by its .c files (not for callers). */
#ifndef PS_CM_MODEL_IMPL_H
#define PS_CM_MODEL_IMPL_H

#include "costmodel/costmodel.h"

#define CM_MAXFEAT PS_OP_MAXDIM

/* Measured points of one (kind, dtype, variant), as features (log2 of the
 * dims that vary within the group) and targets (log median seconds). */
typedef struct cm_group {
    char kind[PS_OP_KIND_LEN], dtype[PS_OP_DTYPE_LEN], variant[PS_OP_VARIANT_LEN];
    int kind_id;
    size_t *idx; /* rows of the model */
    size_t n;
    int nfeat;
    int featdim[CM_MAXFEAT];
    double *x; /* n x nfeat */
    double *y; /* n */
    double *rw; /* n: reliability weight from the point's repeat noise */
    double gslope[CM_MAXFEAT];
    double scale[CM_MAXFEAT]; /* per-feature weight in the neighbour distance */
    double loo_med; /* median leave-one-out relative error; NaN if n < 3 */
    /* Base mode: predict as a sibling group's fit (same kind, another
     * variant or dtype) scaled by the work ratio, plus a local fit of this
     * group's residuals against it — chosen when its leave-one-out error
     * beats the group's own fit (sparse grids next to dense ones). */
    int base;     /* index of the sibling group, -1 = own fit */
    double *ry;   /* n: y - base prediction */
    double rgslope[CM_MAXFEAT];
} cm_group;

struct cm_model {
    cm_device dev;
    double launch_s;
    ps_db_row *rows;
    size_t nrows;
    cm_group *groups;
    size_t ngroups;
    double eff_c[PS_OPK_COUNT], eff_m[PS_OPK_COUNT];
    int eff_fitted[PS_OPK_COUNT];
    double roof_err[PS_OPK_COUNT]; /* median |rel err| of the fitted roofline */
    int exact;
    /* fit tuning (costmodel/README.md, "Fit") */
    double knn_mult, bw_mult, ridge, noise_ref;
    int robust_iters;
    int use_base;      /* let groups fit on top of a sibling group */
    int metric_rounds; /* coordinate-search rounds over the distance weights */
};

/* Percentile q in [0,1] with linear interpolation; sorts v in place. */
double cm_percentile(double *v, size_t n, double q);
/* Roofline time with the model's efficiencies for kind. */
double cm_roofline_time(const cm_model *m, int kind, const char *dtype, double flops,
                        double bytes);
/* Peak FLOP/s of the model's device for a dtype name (fallbacks applied). */
double cm_row_peak(const cm_model *m, const char *dtype);
/* Experiments with the fit (validation sweeps). */
void cm_model_set_tuning(cm_model *m, double knn_mult, double bw_mult, double ridge);
/* The tuning every new model starts with (not thread-safe: experiments). */
void cm_fit_set_defaults(double knn_mult, double bw_mult, double ridge, double noise_ref,
                         int robust_iters, int use_base, int metric_rounds);

#endif
