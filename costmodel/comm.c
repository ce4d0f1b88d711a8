/* Communication: α–β links fitted from measured copies, point-to-point, and
 * collectives in closed form over a two-level topology. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "costmodel/model_impl.h"

int cm_fit_ab(const double *bytes, const double *time_s, size_t n, cm_ab *out, ps_err *e)
{
    /* Weighted least squares of t = α + S·(1/β) with weights 1/t²: copies
     * span six orders of magnitude and relative error is what matters; an
     * unweighted fit would ignore every small copy. */
    double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
    size_t used = 0;
    double smin = INFINITY, smax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(time_s[i] > 0) || !(bytes[i] >= 0) || !isfinite(time_s[i]))
            continue;
        double w = 1 / (time_s[i] * time_s[i]);
        a11 += w;
        a12 += w * bytes[i];
        a22 += w * bytes[i] * bytes[i];
        b1 += w * time_s[i];
        b2 += w * bytes[i] * time_s[i];
        smin = fmin(smin, bytes[i]);
        smax = fmax(smax, bytes[i]);
        used++;
    }
    if (used < 2 || !(smax > smin))
        return ps_errf(e, PS_EINPUT, "alpha-beta fit needs copies of at least two sizes (got %zu)",
                       used);
    double det = a11 * a22 - a12 * a12;
    double alpha = (b1 * a22 - b2 * a12) / det;
    double inv_beta = (a11 * b2 - a12 * b1) / det;
    if (!(inv_beta > 0)) {
        return ps_errf(e, PS_EINPUT,
                       "alpha-beta fit: copy time does not grow with size (1/beta = %g)",
                       inv_beta);
    }
    if (alpha < 0) {
        /* A negative latency is noise at the small end: refit the slope alone
         * through the origin. */
        alpha = 0;
        inv_beta = b2 / a22;
    }
    out->alpha_s = alpha;
    out->beta_bytes_per_s = 1 / inv_beta;
    return 0;
}

int cm_model_copy_ab(const cm_model *m, const char *variant, cm_ab *out, ps_err *e)
{
    double *s = malloc((m->nrows ? m->nrows : 1) * sizeof *s);
    double *t = malloc((m->nrows ? m->nrows : 1) * sizeof *t);
    size_t n = 0;
    int rc;
    if (!s || !t) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < m->nrows; i++) {
        const ps_db_row *r = &m->rows[i];
        if (!strcmp(r->op.kind, "memcpy") && !strcmp(r->op.variant, variant)) {
            s[n] = (double)r->op.d[0];
            t[n++] = r->median_s;
        }
    }
    rc = cm_fit_ab(s, t, n, out, e);
    if (rc)
        ps_err_prefix(e, "memcpy %s on %s: ", variant, m->dev.name);
done:
    free(s);
    free(t);
    return rc;
}

double cm_p2p_time(cm_ab l, double bytes)
{
    return bytes > 0 ? l.alpha_s + bytes / l.beta_bytes_per_s : 0;
}

const char *cm_coll_name(cm_coll c)
{
    switch (c) {
    case CM_COLL_ALLGATHER: return "allgather";
    case CM_COLL_REDUCESCATTER: return "reducescatter";
    default: return "allreduce";
    }
}

const char *cm_alg_name(cm_alg a)
{
    switch (a) {
    case CM_ALG_TREE: return "tree";
    case CM_ALG_HIER: return "hier";
    default: return "ring";
    }
}

int cm_coll_from_name(const char *s)
{
    for (int c = 0; c < 3; c++)
        if (s && !strcmp(s, cm_coll_name((cm_coll)c)))
            return c;
    return -1;
}

int cm_alg_from_name(const char *s)
{
    for (int a = 0; a < 3; a++)
        if (s && !strcmp(s, cm_alg_name((cm_alg)a)))
            return a;
    return -1;
}

static double ceil_log2(int n)
{
    int k = 0;
    while ((1 << k) < n)
        k++;
    return k;
}

/* One flat collective over n devices on one kind of link. */
static double flat(cm_coll c, cm_alg a, int n, cm_ab l, double S)
{
    if (n <= 1 || S <= 0)
        return 0;
    double al = l.alpha_s, b = l.beta_bytes_per_s, nn = n;
    if (a == CM_ALG_TREE) {
        double L = ceil_log2(n);
        if (c == CM_COLL_ALLREDUCE)
            return 2 * L * (al + S / b);
        return L * al + (nn - 1) / nn * S / b;
    }
    if (c == CM_COLL_ALLREDUCE)
        return 2 * (nn - 1) * al + 2 * (nn - 1) / nn * S / b;
    return (nn - 1) * al + (nn - 1) / nn * S / b;
}

int cm_collective_time(const cm_topology *t, cm_coll c, cm_alg a, double bytes, double *time_s,
                       ps_err *e)
{
    if (t->nodes < 1 || t->devices_per_node < 1)
        return ps_errf(e, PS_EINPUT, "topology: nodes and devices_per_node must be >= 1 (got %d, %d)",
                       t->nodes, t->devices_per_node);
    if (!(bytes >= 0) || !isfinite(bytes))
        return ps_errf(e, PS_EINPUT, "collective: bytes must be >= 0 (got %g)", bytes);
    int g = t->devices_per_node, N = t->nodes, n = g * N;
    if ((g > 1 && !(t->intra.beta_bytes_per_s > 0)) || (N > 1 && !(t->inter.beta_bytes_per_s > 0)))
        return ps_errf(e, PS_EINPUT, "topology: link bandwidths must be > 0");
    cm_ab bottleneck = N > 1 ? t->inter : t->intra;
    if (N > 1 && g > 1) {
        /* A flat ring crossing nodes runs at the slower link's pace and
         * pays its latency at every step. */
        bottleneck.alpha_s = fmax(t->inter.alpha_s, t->intra.alpha_s);
        bottleneck.beta_bytes_per_s = fmin(t->inter.beta_bytes_per_s, t->intra.beta_bytes_per_s);
    }
    if (a != CM_ALG_HIER || N == 1 || g == 1) {
        *time_s = flat(c, a == CM_ALG_HIER ? CM_ALG_RING : a, n, bottleneck, bytes);
        return 0;
    }
    double rs_in = flat(CM_COLL_REDUCESCATTER, CM_ALG_RING, g, t->intra, bytes);
    double ag_in = flat(CM_COLL_ALLGATHER, CM_ALG_RING, g, t->intra, bytes);
    /* Each device owns 1/g of the buffer after the intra-node phase and
     * talks to its counterparts in the other nodes through its own share of
     * the node's network. */
    switch (c) {
    case CM_COLL_ALLREDUCE:
        *time_s = rs_in + flat(CM_COLL_ALLREDUCE, CM_ALG_RING, N, t->inter, bytes / g) + ag_in;
        break;
    case CM_COLL_ALLGATHER:
        *time_s = flat(CM_COLL_ALLGATHER, CM_ALG_RING, N, t->inter, bytes / g) + ag_in;
        break;
    default:
        *time_s = rs_in + flat(CM_COLL_REDUCESCATTER, CM_ALG_RING, N, t->inter, bytes / g);
        break;
    }
    return 0;
}
