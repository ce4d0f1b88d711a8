/* Op time prediction: exact hits, local regression in log-shape space, and
 * the roofline with fitted efficiencies.  See costmodel/README.md, "Fit",
 * for why the fit is local and linear in log dims. */
#include "costmodel/model_impl.h"

#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cm_source_name(cm_source s)
{
    switch (s) {
    case CM_SRC_DB: return "db";
    case CM_SRC_FIT: return "fit";
    default: return "roofline";
    }
}

const char *cm_phase_name(cm_phase p)
{
    switch (p) {
    case CM_PHASE_BWD_INPUT: return "bwd_input";
    case CM_PHASE_BWD_WEIGHT: return "bwd_weight";
    default: return "fwd";
    }
}

int cm_phase_from_name(const char *name)
{
    if (!name)
        return -1;
    if (!strcmp(name, "fwd"))
        return CM_PHASE_FWD;
    if (!strcmp(name, "bwd_input"))
        return CM_PHASE_BWD_INPUT;
    if (!strcmp(name, "bwd_weight"))
        return CM_PHASE_BWD_WEIGHT;
    return -1;
}

/* ------------------------------------------------------------ helpers */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double cm_percentile(double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double f = pos - (double)lo;
    return v[lo] * (1 - f) + v[hi] * f;
}

/* The k-th smallest (0-based) of v[0..n), reordering v (Hoare's
 * selection: linear on average, where sorting every distance was the
 * prediction's largest cost). */
static double kth_smallest(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* Solve (p x p) symmetric positive definite A x = b in place (x in b).
 * Falls back to SVD when Cholesky fails (near-singular neighbourhoods). */
static int solve_spd(double *A, double *b, int p)
{
    gsl_matrix_view Am = gsl_matrix_view_array(A, (size_t)p, (size_t)p);
    gsl_vector_view bv = gsl_vector_view_array(b, (size_t)p);
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    double Acopy[(CM_MAXFEAT + 1) * (CM_MAXFEAT + 1)];
    memcpy(Acopy, A, sizeof(double) * (size_t)(p * p));
    int rc = gsl_linalg_cholesky_decomp1(&Am.matrix);
    if (!rc)
        rc = gsl_linalg_cholesky_svx(&Am.matrix, &bv.vector);
    if (rc) {
        memcpy(A, Acopy, sizeof(double) * (size_t)(p * p));
        gsl_matrix *V = gsl_matrix_alloc((size_t)p, (size_t)p);
        gsl_vector *S = gsl_vector_alloc((size_t)p), *w = gsl_vector_alloc((size_t)p),
                   *x = gsl_vector_alloc((size_t)p);
        rc = !V || !S || !w || !x;
        if (!rc)
            rc = gsl_linalg_SV_decomp(&Am.matrix, V, S, w);
        if (!rc) {
            /* Drop directions the data does not determine. */
            double smax = gsl_vector_get(S, 0);
            for (int i = 0; i < p; i++)
                if (gsl_vector_get(S, (size_t)i) < 1e-10 * smax)
                    gsl_vector_set(S, (size_t)i, 0);
            rc = gsl_linalg_SV_solve(&Am.matrix, V, S, &bv.vector, x);
            if (!rc)
                memcpy(b, x->data, sizeof(double) * (size_t)p);
        }
        gsl_matrix_free(V);
        gsl_vector_free(S);
        gsl_vector_free(w);
        gsl_vector_free(x);
    }
    gsl_set_error_handler(old);
    return rc;
}

/* Weighted least squares of y on [1, x - q] with a ridge pulling the slopes
 * towards prior (NULL = 0) by lambda·Σw.  coef[0] is the value at q. */
static int wls_at(const double *x, const double *y, const double *w, size_t n, int p,
                  const double *q, const double *prior, double lambda, double *coef)
{
    int P = p + 1;
    double A[(CM_MAXFEAT + 1) * (CM_MAXFEAT + 1)] = {0}, b[CM_MAXFEAT + 1] = {0};
    double sw = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(w[i] > 0))
            continue;
        double z[CM_MAXFEAT + 1];
        z[0] = 1;
        for (int j = 0; j < p; j++)
            z[j + 1] = x[i * (size_t)p + (size_t)j] - (q ? q[j] : 0);
        for (int r = 0; r < P; r++) {
            b[r] += w[i] * z[r] * y[i];
            for (int c = 0; c < P; c++)
                A[r * P + c] += w[i] * z[r] * z[c];
        }
        sw += w[i];
    }
    if (!(sw > 0))
        return -1;
    double lam = lambda * sw;
    for (int j = 1; j < P; j++) {
        A[j * P + j] += lam;
        b[j] += lam * (prior ? prior[j - 1] : 0);
    }
    /* a vanishing ridge still needs the intercept well-posed */
    A[0] += 1e-12 * sw;
    if (solve_spd(A, b, P))
        return -1;
    memcpy(coef, b, sizeof(double) * (size_t)P);
    return 0;
}

/* ------------------------------------------------------------ groups */

static double feat_of(const cm_group *g, const ps_op *op, int j)
{
    int dim = g->featdim[j];
    double v = (double)op->d[dim];
    /* pad may be 0; every other dim is >= 1 */
    if (g->kind_id == PS_OPK_CONV2D && dim == 8)
        v += 1;
    return log2(v);
}

static cm_group *find_group(const cm_model *m, const char *kind, const char *dtype,
                            const char *variant)
{
    for (size_t i = 0; i < m->ngroups; i++) {
        cm_group *g = &m->groups[i];
        if (!strcmp(g->kind, kind) && !strcmp(g->dtype, dtype) && !strcmp(g->variant, variant))
            return g;
    }
    return NULL;
}

/* Local prediction (log seconds) at query features q from group g; `skip`
 * (or (size_t)-1) excludes one point (leave-one-out). rms: weighted local
 * residual spread in log space. */
static int group_predict_k(const cm_model *m, double knn_mult, const cm_group *g,
                           const double *y, const double *gslope, const double *q, size_t skip,
                           double *scratch, double *logt, double *rms)
{
    size_t n = g->n;
    int p = g->nfeat;
    size_t avail = n - (skip < n ? 1 : 0);
    if (avail == 0)
        return -1;
    if (p == 0) {
        double s = 0;
        for (size_t i = 0; i < n; i++)
            if (i != skip)
                s += y[i];
        *logt = s / (double)avail;
        *rms = 0;
        return 0;
    }
    double *d = scratch, *w = scratch + n, *dd = scratch + 2 * n;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < p; j++) {
            double t = (g->x[i * (size_t)p + (size_t)j] - q[j]) * g->scale[j];
            s += t * t;
        }
        d[i] = i == skip ? INFINITY : sqrt(s);
    }
    memcpy(dd, d, n * sizeof *dd);
    size_t K = (size_t)(knn_mult * (p + 1));
    if (K < (size_t)p + 2)
        K = (size_t)p + 2;
    if (K > avail)
        K = avail;
    double dk = kth_smallest(dd, n, K - 1);
    double h = dk * m->bw_mult + 1e-9;
    for (size_t i = 0; i < n; i++) {
        double u = d[i] / h;
        w[i] = u < 1 ? pow(1 - u * u * u, 3) * g->rw[i] : 0;
    }
    double coef[CM_MAXFEAT + 1];
    if (wls_at(g->x, y, w, n, p, q, gslope, m->ridge, coef))
        return -1;
    for (int it = 0; it < m->robust_iters; it++) {
        /* Bisquare reweighting (Cleveland's robust LOESS): a neighbour
         * measured while the machine was busy stops dragging the fit. */
        double *r = dd, s;
        size_t nr = 0;
        for (size_t i = 0; i < n; i++) {
            if (!(w[i] > 0))
                continue;
            double f = coef[0];
            for (int j = 0; j < p; j++)
                f += coef[j + 1] * (g->x[i * (size_t)p + (size_t)j] - q[j]);
            r[nr++] = fabs(y[i] - f);
        }
        s = cm_percentile(r, nr, 0.5);
        if (!(s > 1e-3))
            break;
        double *w2 = d; /* distances no longer needed */
        for (size_t i = 0; i < n; i++) {
            if (!(w[i] > 0)) {
                w2[i] = 0;
                continue;
            }
            double f = coef[0];
            for (int j = 0; j < p; j++)
                f += coef[j + 1] * (g->x[i * (size_t)p + (size_t)j] - q[j]);
            double u = fabs(y[i] - f) / (6 * s);
            w2[i] = u < 1 ? w[i] * (1 - u * u) * (1 - u * u) : 0;
        }
        double c2[CM_MAXFEAT + 1];
        if (wls_at(g->x, y, w2, n, p, q, gslope, m->ridge, c2))
            break;
        memcpy(coef, c2, sizeof coef);
        memcpy(w, w2, n * sizeof *w);
    }
    double sw = 0, sr = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(w[i] > 0))
            continue;
        double f = coef[0];
        for (int j = 0; j < p; j++)
            f += coef[j + 1] * (g->x[i * (size_t)p + (size_t)j] - q[j]);
        sr += w[i] * (y[i] - f) * (y[i] - f);
        sw += w[i];
    }
    *logt = coef[0];
    *rms = sw > 0 ? sqrt(sr / sw) : 0;
    return 0;
}

static int group_predict(const cm_model *m, const cm_group *g, const double *y,
                         const double *gslope, const double *q, size_t skip, double *scratch,
                         double *logt, double *rms)
{
    return group_predict_k(m, m->knn_mult, g, y, gslope, q, skip, scratch, logt, rms);
}

/* Mean absolute log error of leave-one-out predictions over the group (the
 * search objective: it weighs the tail more than a median would); *med gets
 * the median relative error.  errs: 4n doubles of scratch. */
static double loo_score(const cm_model *m, const cm_group *g, double *errs, double *med)
{
    size_t ne = 0;
    double s = 0;
    int p = g->nfeat;
    for (size_t i = 0; i < g->n; i++) {
        double lt, rms;
        if (!group_predict(m, g, g->y, g->gslope, g->x + i * (size_t)p, i, errs + g->n, &lt,
                           &rms)) {
            s += fabs(lt - g->y[i]);
            errs[ne++] = fabs(exp(lt - g->y[i]) - 1);
        }
    }
    *med = ne ? cm_percentile(errs, ne, 0.5) : NAN;
    return ne ? s / (double)ne : INFINITY;
}

static int build_group(cm_model *m, cm_group *g)
{
    int nd = ps_op_ndims(g->kind);
    const ps_db_row *r0 = &m->rows[g->idx[0]];
    g->nfeat = 0;
    for (int j = 0; j < nd; j++) {
        int varies = 0;
        for (size_t i = 1; i < g->n && !varies; i++)
            varies = m->rows[g->idx[i]].op.d[j] != r0->op.d[j];
        if (varies)
            g->featdim[g->nfeat++] = j;
    }
    int p = g->nfeat;
    g->x = malloc((g->n * (size_t)(p ? p : 1)) * sizeof *g->x);
    g->y = malloc(g->n * sizeof *g->y);
    g->rw = malloc(g->n * sizeof *g->rw);
    if (!g->x || !g->y || !g->rw)
        return -1;
    for (size_t i = 0; i < g->n; i++) {
        const ps_db_row *r = &m->rows[g->idx[i]];
        for (int j = 0; j < p; j++)
            g->x[i * (size_t)p + (size_t)j] = feat_of(g, &r->op, j);
        g->y[i] = log(r->median_s);
        /* A point whose repeats scatter widely is a poor witness. */
        double nz = r->p90_s > r->p10_s ? (r->p90_s - r->p10_s) / r->median_s : 0;
        g->rw[i] = m->noise_ref > 0 ? 1 / (1 + (nz / m->noise_ref) * (nz / m->noise_ref)) : 1;
    }
    /* Global slopes: the prior the local fits shrink towards where their
     * neighbourhood does not determine a direction. */
    memset(g->gslope, 0, sizeof g->gslope);
    if (p > 0) {
        double *w = malloc(g->n * sizeof *w), coef[CM_MAXFEAT + 1];
        if (!w)
            return -1;
        for (size_t i = 0; i < g->n; i++)
            w[i] = 1;
        if (!wls_at(g->x, g->y, w, g->n, p, NULL, NULL, 1e-3, coef))
            memcpy(g->gslope, coef + 1, sizeof(double) * (size_t)p);
        free(w);
    }
    /* Leave-one-out error: the group's honest uncertainty, and the
     * yardstick for the distance metric below. */
    g->loo_med = NAN;
    g->base = -1;
    for (int j = 0; j < CM_MAXFEAT; j++)
        g->scale[j] = 1;
    if (g->n >= 3) {
        double *errs = malloc(g->n * 4 * sizeof *errs);
        if (!errs)
            return -1;
        double score = loo_score(m, g, errs, &g->loo_med);
        /* Not every dimension matters equally for which neighbours are
         * alike (an embedding table's row count barely does until it
         * leaves the cache): a coordinate search over per-feature distance
         * weights, kept only where leave-one-out error drops. */
        for (int round = 0; round < m->metric_rounds && p > 1; round++) {
            int changed = 0;
            for (int j = 0; j < p; j++) {
                double keep = g->scale[j], best = keep;
                const double f[2] = {0.5, 2.0};
                for (int t = 0; t < 2; t++) {
                    double c = keep * f[t];
                    if (c < 0.25 || c > 4)
                        continue;
                    g->scale[j] = c;
                    double med, sc = loo_score(m, g, errs, &med);
                    if (sc < score * 0.99) {
                        score = sc;
                        best = c;
                        g->loo_med = med;
                    }
                }
                g->scale[j] = best;
                changed |= best != keep;
            }
            if (!changed)
                break;
        }
        free(errs);
    }
    return 0;
}

/* Log time of op (of group g's kind) predicted by group b's own fit: op
 * re-expressed in b's dtype and variant, scaled by the ratio of the work the
 * two do (FLOPs, else bytes). */
static int base_log_predict(const cm_model *m, const cm_group *b, const ps_op *op,
                            double *scratch, double *lt)
{
    ps_op alt = *op;
    snprintf(alt.dtype, sizeof alt.dtype, "%s", b->dtype);
    snprintf(alt.variant, sizeof alt.variant, "%s", b->variant);
    double q[CM_MAXFEAT], rms;
    for (int j = 0; j < b->nfeat; j++)
        q[j] = feat_of(b, &alt, j);
    if (group_predict(m, b, b->y, b->gslope, q, (size_t)-1, scratch, lt, &rms))
        return -1;
    double fo = ps_op_flops(op), fa = ps_op_flops(&alt);
    double bo = ps_op_bytes(op), ba = ps_op_bytes(&alt);
    if (fo > 0 && fa > 0)
        *lt += log(fo / fa);
    else if (bo > 0 && ba > 0)
        *lt += log(bo / ba);
    return 0;
}

static void residual_slopes(const cm_group *g, const double *ry, double *slope)
{
    int p = g->nfeat;
    memset(slope, 0, sizeof(double) * CM_MAXFEAT);
    if (p == 0)
        return;
    double *w = malloc(g->n * sizeof *w), coef[CM_MAXFEAT + 1];
    if (!w)
        return;
    for (size_t i = 0; i < g->n; i++)
        w[i] = 1;
    if (!wls_at(g->x, ry, w, g->n, p, NULL, NULL, 1e-3, coef))
        memcpy(slope, coef + 1, sizeof(double) * (size_t)p);
    free(w);
}

/* Try every sibling of g as a base; adopt the best if it beats g's own
 * leave-one-out error by a clear margin. */
static int choose_base(cm_model *m, size_t gi)
{
    cm_group *g = &m->groups[gi];
    size_t n = g->n, maxn = 0;
    int p = g->nfeat;
    for (size_t j = 0; j < m->ngroups; j++)
        if (m->groups[j].n > maxn)
            maxn = m->groups[j].n;
    double *ry = malloc(n * sizeof *ry), *best_ry = malloc(n * sizeof *best_ry);
    double *scratch = malloc(3 * (maxn + n) * sizeof *scratch);
    double *errs = malloc(n * sizeof *errs);
    if (!ry || !best_ry || !scratch || !errs) {
        free(ry), free(best_ry), free(scratch), free(errs);
        return -1;
    }
    double best = isfinite(g->loo_med) ? g->loo_med * 0.9 : INFINITY;
    if (!m->use_base)
        best = 0;
    int bi = -1;
    double best_slope[CM_MAXFEAT] = {0};
    for (size_t j = 0; j < m->ngroups; j++) {
        const cm_group *b = &m->groups[j];
        if (j == gi || b->kind_id != g->kind_id || b->n < 3 || b->base >= 0)
            continue;
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++) {
            double lt;
            ok = !base_log_predict(m, b, &m->rows[g->idx[i]].op, scratch, &lt);
            ry[i] = g->y[i] - lt;
        }
        if (!ok)
            continue;
        double slope[CM_MAXFEAT];
        residual_slopes(g, ry, slope);
        size_t ne = 0;
        for (size_t i = 0; i < n; i++) {
            double lr, rms;
            if (n < 3) {
                /* too few for a fit of the residuals: their mean */
                lr = 0;
                for (size_t k = 0; k < n; k++)
                    if (k != i)
                        lr += ry[k];
                lr = n > 1 ? lr / (double)(n - 1) : 0;
            } else if (group_predict(m, g, ry, slope, g->x + i * (size_t)p, i, scratch, &lr,
                                     &rms)) {
                continue;
            }
            errs[ne++] = fabs(exp(g->y[i] - ry[i] + lr - g->y[i]) - 1);
        }
        double med = ne ? cm_percentile(errs, ne, 0.5) : INFINITY;
        if (med < best) {
            best = med;
            bi = (int)j;
            memcpy(best_ry, ry, n * sizeof *ry);
            memcpy(best_slope, slope, sizeof best_slope);
        }
    }
    if (bi >= 0) {
        g->base = bi;
        g->ry = best_ry;
        best_ry = NULL;
        memcpy(g->rgslope, best_slope, sizeof g->rgslope);
        g->loo_med = best;
    }
    free(ry);
    free(best_ry);
    free(scratch);
    free(errs);
    return 0;
}

/* ------------------------------------------------------------ roofline */

/* Default efficiencies when nothing was measured: large GEMM-like kernels
 * reach most of the tensor-core peak, streaming kernels most of the memory
 * bandwidth.  Assumptions, not measurements; a profile DB replaces them. */
static void default_eff(int kind, double *ec, double *em)
{
    switch (kind) {
    case PS_OPK_GEMM:
    case PS_OPK_BATCHED_GEMM: *ec = 0.7, *em = 0.8; break;
    case PS_OPK_ATTENTION:
    case PS_OPK_CONV2D: *ec = 0.5, *em = 0.7; break;
    default: *ec = 0.5, *em = 0.8; break;
    }
}

double cm_row_peak(const cm_model *m, const char *dtype)
{
    int p = cm_prec_from_name(dtype);
    return cm_device_peak(&m->dev, p < 0 ? CM_FP32 : (cm_prec)p, NULL);
}

double cm_roofline_time(const cm_model *m, int kind, const char *dtype, double flops,
                        double bytes)
{
    double peak = cm_row_peak(m, dtype), bw = m->dev.mem_bw_bytes_per_s;
    double tc = flops > 0 && peak > 0 ? flops / (peak * m->eff_c[kind]) : 0;
    double tm = bytes > 0 && bw > 0 ? bytes / (bw * m->eff_m[kind]) : 0;
    return m->launch_s + (tc > tm ? tc : tm);
}

/* Fit (eff_c, eff_m) of one kind by a grid search on log error, then a
 * finer grid around the best cell: two parameters and a non-smooth max()
 * make a grid both simpler and more robust than a gradient method. */
static void fit_roofline_kind(cm_model *m, int kind)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nrows; i++)
        if (ps_op_kind_id_of(m->rows[i].op.kind) == kind)
            n++;
    if (n == 0)
        return;
    /* Per row: time at efficiency 1 for compute and memory, log measured. */
    double *tc = malloc(3 * n * sizeof *tc), *tm = tc + n, *ly = tc + 2 * n;
    if (!tc)
        return;
    double bw = m->dev.mem_bw_bytes_per_s;
    size_t k = 0;
    for (size_t i = 0; i < m->nrows; i++) {
        const ps_db_row *r = &m->rows[i];
        if (ps_op_kind_id_of(r->op.kind) != kind)
            continue;
        double peak = cm_row_peak(m, r->op.dtype);
        tc[k] = r->flops > 0 && peak > 0 ? r->flops / peak : 0;
        tm[k] = r->bytes > 0 && bw > 0 ? r->bytes / bw : 0;
        ly[k++] = log(r->median_s);
    }
    double best = INFINITY, bc = m->eff_c[kind], bm = m->eff_m[kind];
    double lc0 = log(1e-4), lc1 = log(2.0), lm0 = log(1e-4), lm1 = log(4.0);
    const int G = 32;
    for (int pass = 0; pass < 3; pass++) {
        double sc = (lc1 - lc0) / G, sm = (lm1 - lm0) / G;
        double blc = log(bc), blm = log(bm);
        for (int a = 0; a <= G; a++)
            for (int b = 0; b <= G; b++) {
                double ic = exp(-(lc0 + a * sc)), im = exp(-(lm0 + b * sm)), s = 0;
                for (size_t i = 0; i < n && s < best; i++) {
                    double x = tc[i] * ic, y = tm[i] * im;
                    double e = log(m->launch_s + (x > y ? x : y)) - ly[i];
                    s += e * e;
                }
                if (s < best) {
                    best = s;
                    blc = lc0 + a * sc;
                    blm = lm0 + b * sm;
                }
            }
        bc = exp(blc);
        bm = exp(blm);
        lc0 = blc - 2 * sc, lc1 = blc + 2 * sc;
        lm0 = blm - 2 * sm, lm1 = blm + 2 * sm;
    }
    m->eff_c[kind] = bc;
    m->eff_m[kind] = bm;
    m->eff_fitted[kind] = 1;
    for (size_t i = 0; i < n; i++) {
        double x = tc[i] / bc, y = tm[i] / bm;
        tc[i] = fabs((m->launch_s + (x > y ? x : y)) / exp(ly[i]) - 1);
    }
    m->roof_err[kind] = cm_percentile(tc, n, 0.5);
    free(tc);
}

/* ------------------------------------------------------------ building */

static int row_usable(const ps_db_row *r)
{
    return ps_op_kind_id_of(r->op.kind) >= 0 && isfinite(r->median_s) && r->median_s > 0 &&
           !ps_op_validate(&r->op, NULL, NULL);
}

/* Fit tuning: neighbours per parameter, bandwidth over the K-th neighbour's
 * distance, ridge weight.  Chosen by held-out validation on CPU databases
 * (docs/costmodel.md); settable for experiments. */
static double fit_defaults[7] = {1.5, 1.3, 0.1, 0.1, 1, 1, 2};

void cm_fit_set_defaults(double knn_mult, double bw_mult, double ridge, double noise_ref,
                         int robust_iters, int use_base, int metric_rounds)
{
    fit_defaults[0] = knn_mult;
    fit_defaults[1] = bw_mult;
    fit_defaults[2] = ridge;
    fit_defaults[3] = noise_ref;
    fit_defaults[4] = robust_iters;
    fit_defaults[5] = use_base;
    fit_defaults[6] = metric_rounds;
}

static cm_model *model_alloc(const cm_device *dev, ps_err *e)
{
    cm_model *m = calloc(1, sizeof *m);
    if (!m) {
        ps_errf(e, PS_ERUN, "cost model: out of memory");
        return NULL;
    }
    if (dev)
        m->dev = *dev;
    else
        snprintf(m->dev.name, sizeof m->dev.name, "unknown");
    m->launch_s = m->dev.launch_s;
    m->exact = 1;
    m->knn_mult = fit_defaults[0];
    m->bw_mult = fit_defaults[1];
    m->ridge = fit_defaults[2];
    m->noise_ref = fit_defaults[3];
    m->robust_iters = (int)fit_defaults[4];
    m->use_base = (int)fit_defaults[5];
    m->metric_rounds = (int)fit_defaults[6];
    for (int k = 0; k < PS_OPK_COUNT; k++) {
        default_eff(k, &m->eff_c[k], &m->eff_m[k]);
        m->roof_err[k] = NAN;
    }
    return m;
}

/* One measured peak into a device: "gemm_<dtype>_flops_per_s" (measured at
 * the rows' thread count; the *_all_cores variants are not), the memcpy
 * bandwidth, the launch overhead. */
static void peak_into(cm_device *d, double *launch_s, const char *name, double v)
{
    if (!isfinite(v) || v <= 0)
        return;
    char prec[16];
    size_t l = strlen(name);
    const char *suf = "_flops_per_s";
    size_t ls = strlen(suf);
    if (!strncmp(name, "gemm_", 5) && l > 5 + ls && !strcmp(name + l - ls, suf) &&
        l - 5 - ls < sizeof prec) {
        memcpy(prec, name + 5, l - 5 - ls);
        prec[l - 5 - ls] = '\0';
        int p = cm_prec_from_name(prec);
        if (p >= 0)
            d->peak_flops[p] = v;
    } else if (!strcmp(name, PS_PEAK_MEMCPY)) {
        d->mem_bw_bytes_per_s = v;
    } else if (!strcmp(name, PS_PEAK_LAUNCH)) {
        *launch_s = v;
    }
}

/* Peaks measured with the rows (same threads, same device) override the
 * device's: the roofline then speaks the rows' language. */
static void apply_peaks(cm_model *m, const ps_db_peak *pk, size_t np)
{
    for (size_t i = 0; i < np; i++)
        peak_into(&m->dev, &m->launch_s, pk[i].name, pk[i].value);
}

cm_model *cm_model_from_rows(const cm_device *dev, const ps_db_row *rows, size_t nrows,
                             const ps_db_peak *peaks, size_t npeaks, ps_err *e)
{
    cm_model *m = model_alloc(dev, e);
    if (!m)
        return NULL;
    apply_peaks(m, peaks, npeaks);
    m->rows = malloc((nrows ? nrows : 1) * sizeof *m->rows);
    m->groups = calloc(nrows ? nrows : 1, sizeof *m->groups);
    if (!m->rows || !m->groups)
        goto oom;
    for (size_t i = 0; i < nrows; i++)
        if (row_usable(&rows[i]))
            m->rows[m->nrows++] = rows[i];
    for (size_t i = 0; i < m->nrows; i++) {
        const ps_op *op = &m->rows[i].op;
        cm_group *g = find_group(m, op->kind, op->dtype, op->variant);
        if (!g) {
            g = &m->groups[m->ngroups++];
            snprintf(g->kind, sizeof g->kind, "%s", op->kind);
            snprintf(g->dtype, sizeof g->dtype, "%s", op->dtype);
            snprintf(g->variant, sizeof g->variant, "%s", op->variant);
            g->kind_id = ps_op_kind_id_of(op->kind);
            g->idx = malloc(m->nrows * sizeof *g->idx);
            if (!g->idx)
                goto oom;
        }
        g->idx[g->n++] = i;
    }
    for (size_t i = 0; i < m->ngroups; i++)
        if (build_group(m, &m->groups[i]))
            goto oom;
    /* Bases must be in their own mode while others consult them: decide
     * all first (on own fits), then switch. */
    {
        int *bases = malloc((m->ngroups ? m->ngroups : 1) * sizeof *bases);
        double **rys = malloc((m->ngroups ? m->ngroups : 1) * sizeof *rys);
        if (!bases || !rys) {
            free(bases), free(rys);
            goto oom;
        }
        for (size_t i = 0; i < m->ngroups; i++) {
            if (choose_base(m, i)) {
                free(bases), free(rys);
                goto oom;
            }
            bases[i] = m->groups[i].base;
            rys[i] = m->groups[i].ry;
            m->groups[i].base = -1; /* keep it a candidate for the next groups */
        }
        for (size_t i = 0; i < m->ngroups; i++) {
            m->groups[i].base = bases[i];
            m->groups[i].ry = rys[i];
        }
        free(bases);
        free(rys);
    }
    for (int k = 0; k < PS_OPK_COUNT; k++)
        fit_roofline_kind(m, k);
    return m;
oom:
    cm_model_free(m);
    ps_errf(e, PS_ERUN, "cost model: out of memory");
    return NULL;
}

cm_model *cm_model_roofline(const cm_device *dev, ps_err *e)
{
    return cm_model_from_rows(dev, NULL, 0, NULL, 0, e);
}

void cm_db_device(const ps_db *db, const cm_catalog *cat, cm_device *out)
{
    const char *kind = ps_db_attr(db, "device_kind");
    const char *name = ps_db_attr(db, "device_name");
    int gpu = kind && !strcmp(kind, "cuda");
    const cm_device *c = NULL;
    memset(out, 0, sizeof *out);
    if (cat) {
        const char *cn = gpu ? (name ? cm_catalog_match(name) : NULL) : "cpu";
        if (cn)
            c = cm_catalog_device(cat, cn, NULL);
    }
    if (c) {
        *out = *c;
    } else {
        snprintf(out->name, sizeof out->name, "%s", gpu ? "gpu" : "cpu");
        out->is_gpu = gpu;
        out->launch_s = gpu ? 4e-6 : 1e-7;
    }
    snprintf(out->desc, sizeof out->desc, "%s", name ? name : "measured device");
    snprintf(out->source, sizeof out->source, "profile DB %s", ps_db_path(db));
    /* The rows' own peaks (same threads) win over the catalog's. */
    for (size_t i = 0; i < ps_db_npeaks(db); i++) {
        const ps_db_peak *p = ps_db_peak_at(db, i);
        peak_into(out, &out->launch_s, p->name, p->value);
        if (!strcmp(p->name, PS_PEAK_MEM) && !gpu && p->value > 0)
            out->mem_bytes = p->value;
    }
}

cm_model *cm_model_from_db(const ps_db *db, const cm_catalog *cat, const cm_device *dev,
                           ps_err *e)
{
    size_t n = ps_db_nops(db), np = ps_db_npeaks(db);
    ps_db_row *rows = malloc((n ? n : 1) * sizeof *rows);
    ps_db_peak *pk = malloc((np ? np : 1) * sizeof *pk);
    cm_model *m = NULL;
    if (!rows || !pk) {
        ps_errf(e, PS_ERUN, "cost model: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        rows[i] = *ps_db_op_at(db, i);
    for (size_t i = 0; i < np; i++)
        pk[i] = *ps_db_peak_at(db, i);
    cm_device local;
    if (!dev) {
        cm_db_device(db, cat, &local);
        dev = &local;
    }
    m = cm_model_from_rows(dev, rows, n, pk, np, e);
    if (m && !(m->dev.peak_flops[CM_FP32] > 0) && !(m->dev.mem_bw_bytes_per_s > 0) && n == 0) {
        ps_errf(e, PS_EINPUT, "%s: no measured ops and no peaks", ps_db_path(db));
        cm_model_free(m);
        m = NULL;
    }
done:
    free(rows);
    free(pk);
    return m;
}

void cm_model_free(cm_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ngroups; i++) {
        free(m->groups[i].idx);
        free(m->groups[i].x);
        free(m->groups[i].y);
        free(m->groups[i].rw);
        free(m->groups[i].ry);
    }
    free(m->groups);
    free(m->rows);
    free(m);
}

const cm_device *cm_model_device(const cm_model *m) { return &m->dev; }

void cm_model_set_exact_hits(cm_model *m, int on) { m->exact = on; }

int cm_model_set_efficiency(cm_model *m, const char *kind, double ec, double em, ps_err *e)
{
    int k = ps_op_kind_id_of(kind);
    if (k < 0)
        return ps_errf(e, PS_EINPUT, "unknown op kind '%s' (known: %s)", kind ? kind : "",
                       ps_op_kind_list());
    if (!(ec > 0) || !(em > 0) || !isfinite(ec) || !isfinite(em))
        return ps_errf(e, PS_EINPUT, "efficiencies must be finite and > 0 (got %g, %g)", ec, em);
    m->eff_c[k] = ec;
    m->eff_m[k] = em;
    return 0;
}

int cm_model_efficiency(const cm_model *m, const char *kind, double *ec, double *em)
{
    int k = ps_op_kind_id_of(kind);
    if (k < 0)
        return -1;
    *ec = m->eff_c[k];
    *em = m->eff_m[k];
    return m->eff_fitted[k];
}

void cm_model_set_tuning(cm_model *m, double knn_mult, double bw_mult, double ridge)
{
    m->knn_mult = knn_mult;
    m->bw_mult = bw_mult;
    m->ridge = ridge;
}

/* ------------------------------------------------------------ predicting */

/* A group of the same kind and dtype to stand in for a missing variant: the
 * default variant if measured, else the largest. */
static const cm_group *substitute_group(const cm_model *m, const ps_op *op)
{
    const char *const *vs = ps_op_variants(op->kind);
    const cm_group *g = vs ? find_group(m, op->kind, op->dtype, vs[0]) : NULL;
    if (g && g->n >= 2)
        return g;
    const cm_group *best = NULL;
    for (size_t i = 0; i < m->ngroups; i++) {
        const cm_group *h = &m->groups[i];
        if (!strcmp(h->kind, op->kind) && !strcmp(h->dtype, op->dtype) && h->n >= 2 &&
            (!best || h->n > best->n))
            best = h;
    }
    return best;
}

static int fit_predict(const cm_model *m, const cm_group *g, const ps_op *op, cm_pred *out)
{
    double q[CM_MAXFEAT];
    for (int j = 0; j < g->nfeat; j++)
        q[j] = feat_of(g, op, j);
    /* Scratch per call keeps the model read-only, so threads may share it. */
    const cm_group *b = g->base >= 0 ? &m->groups[g->base] : NULL;
    size_t ns = g->n + (b ? b->n : 0);
    double *scratch = malloc(3 * ns * sizeof *scratch);
    double lt, rms;
    int rc;
    if (!scratch) {
        rc = -1;
    } else if (!b) {
        rc = group_predict(m, g, g->y, g->gslope, q, (size_t)-1, scratch, &lt, &rms);
    } else {
        double lb, lr = 0;
        rc = base_log_predict(m, b, op, scratch, &lb);
        rms = 0;
        if (!rc && g->n < 3) {
            for (size_t i = 0; i < g->n; i++)
                lr += g->ry[i] / (double)g->n;
        } else if (!rc) {
            rc = group_predict(m, g, g->ry, g->rgslope, q, (size_t)-1, scratch, &lr, &rms);
        }
        lt = lb + lr;
    }
    free(scratch);
    if (rc)
        return -1;
    out->time_s = exp(lt);
    double u = isfinite(g->loo_med) ? g->loo_med : 0.25;
    if (rms > u)
        u = rms;
    out->rel_uncertainty = u;
    out->source = CM_SRC_FIT;
    out->npoints = (int)g->n;
    return 0;
}

int cm_op_time(const cm_model *m, const ps_op *op, cm_pred *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (ps_op_validate(op, "op", e))
        return PS_EINPUT;
    int kind = ps_op_kind_id_of(op->kind);
    out->flops = ps_op_flops(op);
    out->bytes = ps_op_bytes(op);
    const cm_group *g = find_group(m, op->kind, op->dtype, op->variant);
    if (m->exact && g) {
        for (size_t k = 0; k < g->n; k++) {
            const ps_db_row *r = &m->rows[g->idx[k]];
            if (ps_op_equal(&r->op, op)) {
                out->time_s = r->median_s;
                out->source = CM_SRC_DB;
                out->rel_uncertainty =
                    r->p90_s > r->p10_s ? (r->p90_s - r->p10_s) / 2 / r->median_s : 0;
                out->npoints = 1;
                return 0;
            }
        }
    }
    if (g && (g->n >= 2 || g->base >= 0) && !fit_predict(m, g, op, out))
        return 0;
    const cm_group *s = substitute_group(m, op);
    if (s) {
        ps_op alt = *op;
        snprintf(alt.variant, sizeof alt.variant, "%s", s->variant);
        if (!ps_op_validate(&alt, NULL, NULL) && !fit_predict(m, s, &alt, out)) {
            /* Scale by the work the two variants do (causal vs none ...). */
            double fa = ps_op_flops(&alt), fo = out->flops;
            double ba = ps_op_bytes(&alt), bo = out->bytes;
            double ratio = fa > 0 && fo > 0 ? fo / fa : ba > 0 && bo > 0 ? bo / ba : 1;
            out->time_s *= ratio;
            out->rel_uncertainty = out->rel_uncertainty * 2 + 0.1;
            snprintf(out->note, sizeof out->note, "variant %s fitted from %s (scaled by work)",
                     op->variant, s->variant);
            return 0;
        }
    }
    out->time_s = cm_roofline_time(m, kind, op->dtype, out->flops, out->bytes);
    out->source = CM_SRC_ROOFLINE;
    out->rel_uncertainty =
        m->eff_fitted[kind] && isfinite(m->roof_err[kind]) ? fmax(m->roof_err[kind], 0.1) : 1.0;
    cm_prec used;
    int p = cm_prec_from_name(op->dtype);
    cm_device_peak(&m->dev, p < 0 ? CM_FP32 : (cm_prec)p, &used);
    if (p >= 0 && (int)used != p)
        snprintf(out->note, sizeof out->note, "%s runs at the %s rate on %s", op->dtype,
                 cm_prec_name(used), m->dev.name);
    return 0;
}

int cm_phase_op(const ps_op *op, cm_phase phase, ps_op *out, ps_err *e)
{
    *out = *op;
    if (ps_op_validate(op, "op", e))
        return PS_EINPUT;
    if (phase == CM_PHASE_FWD)
        return 0;
    int kind = ps_op_kind_id_of(op->kind);
    if (kind == PS_OPK_MEMCPY)
        return ps_errf(e, PS_EINPUT, "op: memcpy has no backward phase (asked for %s)",
                       cm_phase_name(phase));
    int o = kind == PS_OPK_BATCHED_GEMM ? 1 : 0;
    if (kind == PS_OPK_GEMM || kind == PS_OPK_BATCHED_GEMM) {
        int64_t M = op->d[o], N = op->d[o + 1], K = op->d[o + 2];
        if (phase == CM_PHASE_BWD_INPUT) { /* dX[m,k] = dY[m,n] · W^T */
            out->d[o] = M, out->d[o + 1] = K, out->d[o + 2] = N;
        } else { /* dW[k,n] = X^T[k,m] · dY[m,n] */
            out->d[o] = K, out->d[o + 1] = N, out->d[o + 2] = M;
        }
    } else if (kind == PS_OPK_CONV2D) {
        snprintf(out->variant, sizeof out->variant, "%s", cm_phase_name(phase));
    }
    return 0;
}

int cm_op_time_phase(const cm_model *m, const ps_op *op, cm_phase phase, cm_pred *out,
                     ps_err *e)
{
    ps_op ph;
    if (cm_phase_op(op, phase, &ph, e))
        return PS_EINPUT;
    int kind = ps_op_kind_id_of(op->kind);
    if (phase == CM_PHASE_FWD || kind == PS_OPK_GEMM || kind == PS_OPK_BATCHED_GEMM)
        return cm_op_time(m, &ph, out, e);
    if (kind == PS_OPK_CONV2D) {
        /* Measured backward variants are fitted directly; without them the
         * fit falls back to the forward variant scaled by work (equal FLOPs
         * by definition), which cm_op_time's substitution does. */
        return cm_op_time(m, &ph, out, e);
    }
    double factor = 1;
    const char *why = "";
    switch (kind) {
    case PS_OPK_ATTENTION:
        factor = phase == CM_PHASE_BWD_INPUT ? 2.5 : 0;
        why = phase == CM_PHASE_BWD_INPUT ? "bwd = 2.5 x fwd (5 vs 2 matmuls)"
                                          : "attention has no weights";
        break;
    case PS_OPK_EMBEDDING_BAG:
        factor = phase == CM_PHASE_BWD_WEIGHT ? 2 : 0;
        why = phase == CM_PHASE_BWD_WEIGHT ? "bwd_weight = 2 x fwd (read-modify-write)"
                                           : "indices have no gradient";
        break;
    default:
        factor = phase == CM_PHASE_BWD_INPUT ? 1.5 : 0;
        why = phase == CM_PHASE_BWD_INPUT ? "bwd_input = 1.5 x fwd (reads the gradient too)"
                                          : "no weights";
        break;
    }
    int rc = cm_op_time(m, op, out, e);
    if (rc)
        return rc;
    out->time_s *= factor;
    out->flops *= factor;
    out->bytes *= factor;
    snprintf(out->note, sizeof out->note, "%s", why);
    return 0;
}
