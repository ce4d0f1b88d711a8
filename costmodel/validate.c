/* Held-out validation: how wrong is the model on measurements it has not
 * seen?  The split is seeded and stratified by kind. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "costmodel/model_impl.h"

static double noise_of(const ps_db_row *r)
{
    return r->median_s > 0 && r->p90_s >= r->p10_s ? (r->p90_s - r->p10_s) / r->median_s : NAN;
}

static json_t *summary(double *err, size_t n, double *noise, size_t nn)
{
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer((json_int_t)n));
    json_object_set_new(o, "median_rel_err", n ? json_real(cm_percentile(err, n, 0.5)) : json_null());
    json_object_set_new(o, "p90_rel_err", n ? json_real(cm_percentile(err, n, 0.9)) : json_null());
    json_object_set_new(o, "repeat_noise", nn ? json_real(cm_percentile(noise, nn, 0.5)) : json_null());
    return o;
}

int cm_validate(const ps_db_row *rows, size_t nrows, const cm_device *dev,
                const ps_db_peak *peaks, size_t npeaks, const cm_validate_opts *o,
                json_t **report, cm_validate_point **points, size_t *npoints, ps_err *e)
{
    *report = NULL;
    if (points)
        *points = NULL;
    if (npoints)
        *npoints = 0;
    if (!(o->holdout > 0 && o->holdout < 1))
        return ps_errf(e, PS_EINPUT, "--holdout must be in (0, 1) (got %g)", o->holdout);
    if (nrows < 4)
        return ps_errf(e, PS_EINPUT, "validation needs at least 4 measured ops (got %zu)", nrows);
    int rc = PS_ERUN;
    char *test = calloc(nrows, 1), *train = calloc(nrows, 1);
    size_t *idx = malloc(nrows * sizeof *idx);
    ps_db_row *tr = malloc(nrows * sizeof *tr);
    cm_validate_point *pts = calloc(nrows, sizeof *pts);
    double *err = malloc(nrows * sizeof *err), *nz = malloc(nrows * sizeof *nz);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    cm_model *m = NULL;
    if (!test || !train || !idx || !tr || !pts || !err || !nz || !rng) {
        ps_errf(e, PS_ERUN, "validation: out of memory");
        goto done;
    }
    gsl_rng_set(rng, o->seed);
    for (int k = 0; k < PS_OPK_COUNT; k++) {
        size_t nk = 0;
        for (size_t i = 0; i < nrows; i++)
            if (ps_op_kind_id_of(rows[i].op.kind) == k)
                idx[nk++] = i;
        if (nk < 3)
            continue; /* too few to both fit and test */
        gsl_ran_shuffle(rng, idx, nk, sizeof *idx);
        size_t nt = (size_t)floor(o->holdout * (double)nk + 0.5);
        if (nt == 0)
            nt = 1;
        if (nt > nk - 2)
            nt = nk - 2;
        for (size_t i = 0; i < nt; i++)
            test[idx[i]] = 1;
    }
    /* A training row that measures the same op as a held-out one would be
     * an exact hit in disguise. */
    size_t ntr = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (test[i])
            continue;
        int dup = 0;
        for (size_t j = 0; j < nrows && !dup; j++)
            dup = test[j] && ps_op_equal(&rows[i].op, &rows[j].op);
        if (!dup)
            tr[ntr++] = rows[i];
    }
    m = cm_model_from_rows(dev, tr, ntr, peaks, npeaks, e);
    if (!m)
        goto done;
    cm_model_set_exact_hits(m, 0);
    size_t np = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (!test[i] || !(rows[i].median_s > 0))
            continue;
        cm_pred p;
        if (cm_op_time(m, &rows[i].op, &p, e)) {
            rc = e ? e->code : PS_ERUN;
            goto done;
        }
        cm_validate_point *q = &pts[np++];
        q->op = rows[i].op;
        q->measured_s = rows[i].median_s;
        q->predicted_s = p.time_s;
        q->rel_err = fabs(p.time_s - rows[i].median_s) / rows[i].median_s;
        q->noise = noise_of(&rows[i]);
        q->source = p.source;
    }
    json_t *r = json_object();
    size_t ne = 0, nn = 0;
    for (size_t i = 0; i < np; i++)
        err[ne++] = pts[i].rel_err;
    for (size_t i = 0; i < nrows; i++)
        if (isfinite(noise_of(&rows[i])))
            nz[nn++] = noise_of(&rows[i]);
    json_object_set_new(r, "median_rel_err", ne ? json_real(cm_percentile(err, ne, 0.5)) : json_null());
    json_object_set_new(r, "p90_rel_err", ne ? json_real(cm_percentile(err, ne, 0.9)) : json_null());
    json_object_set_new(r, "repeat_noise", nn ? json_real(cm_percentile(nz, nn, 0.5)) : json_null());
    json_object_set_new(r, "n_train", json_integer((json_int_t)ntr));
    json_object_set_new(r, "n_test", json_integer((json_int_t)np));
    json_object_set_new(r, "holdout", json_real(o->holdout));
    json_object_set_new(r, "seed", json_integer((json_int_t)o->seed));
    json_t *pk = json_object();
    for (int k = 0; k < PS_OPK_COUNT; k++) {
        size_t a = 0, b = 0;
        for (size_t i = 0; i < np; i++)
            if (ps_op_kind_id_of(pts[i].op.kind) == k)
                err[a++] = pts[i].rel_err;
        for (size_t i = 0; i < nrows; i++)
            if (ps_op_kind_id_of(rows[i].op.kind) == k && isfinite(noise_of(&rows[i])))
                nz[b++] = noise_of(&rows[i]);
        if (a)
            json_object_set_new(pk, ps_op_kind_name(k), summary(err, a, nz, b));
    }
    json_object_set_new(r, "per_kind", pk);
    json_t *src = json_object();
    for (int s = 0; s < 3; s++) {
        size_t c = 0;
        for (size_t i = 0; i < np; i++)
            c += pts[i].source == (cm_source)s;
        json_object_set_new(src, cm_source_name((cm_source)s), json_integer((json_int_t)c));
    }
    json_object_set_new(r, "sources", src);
    json_object_set_new(r, "method",
                        json_string("local linear regression of log time on log2 dims per "
                                    "(kind, dtype, variant): tricube-weighted nearest "
                                    "neighbours under per-feature distance weights, noise "
                                    "weights, one bisquare pass, ridge towards the group's "
                                    "global slopes; a sibling group as base where "
                                    "leave-one-out prefers it; roofline with fitted "
                                    "efficiencies where nothing was measured"));
    *report = r;
    if (points) {
        *points = pts;
        pts = NULL;
        if (npoints)
            *npoints = np;
    }
    rc = 0;
done:
    cm_model_free(m);
    gsl_rng_free(rng);
    free(test);
    free(train);
    free(idx);
    free(tr);
    free(pts);
    free(err);
    free(nz);
    return rc;
}
