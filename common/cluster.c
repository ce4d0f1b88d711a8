/* k-means, NMI, purity (common/cluster.h has the definitions). */
#include "common/cluster.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

ps_kmeans_opts ps_kmeans_opts_default(void)
{
    ps_kmeans_opts o = {10, 4, 100, 1e-6, 1};
    return o;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) /* [0, 1) */
{
    return (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double sqdist(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t j = 0; j < d; j++) {
        double t = (double)a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* k-means++ seeding into c[k * d]; mind[n] scratch. */
static void seed_pp(const float *x, size_t n, size_t d, int k, uint64_t *rng, float *c,
                    double *mind)
{
    size_t first = (size_t)(unif(rng) * n);
    if (first >= n)
        first = n - 1;
    memcpy(c, x + first * d, d * sizeof(float));
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += (mind[i] = sqdist(x + i * d, c, d));
    for (int m = 1; m < k; m++) {
        size_t pick = n - 1;
        if (total > 0) {
            double r = unif(rng) * total, acc = 0;
            for (size_t i = 0; i < n; i++) {
                acc += mind[i];
                if (acc > r) {
                    pick = i;
                    break;
                }
            }
        } else {
            pick = (size_t)(unif(rng) * n);
            if (pick >= n)
                pick = n - 1;
        }
        float *cm = c + (size_t)m * d;
        memcpy(cm, x + pick * d, d * sizeof(float));
        total = 0;
        for (size_t i = 0; i < n; i++) {
            double t = sqdist(x + i * d, cm, d);
            if (t < mind[i])
                mind[i] = t;
            total += mind[i];
        }
    }
}

/* Assign every point to its nearest centre; returns the inertia and the
 * number of changed labels in *changed. */
static double assign(const float *x, size_t n, size_t d, int k, const float *c, int *lab,
                     double *dist, size_t *changed)
{
    double inertia = 0;
    size_t ch = 0;
    for (size_t i = 0; i < n; i++) {
        /* Ties keep the current cluster (so a refilled empty cluster keeps
         * its point when centres coincide), else go to the lowest index. */
        int best = lab[i] >= 0 ? lab[i] : 0;
        double bd = lab[i] >= 0 ? sqdist(x + i * d, c + (size_t)best * d, d) : DBL_MAX;
        for (int m = 0; m < k; m++) {
            double t = sqdist(x + i * d, c + (size_t)m * d, d);
            if (t < bd) {
                bd = t;
                best = m;
            }
        }
        if (lab[i] != best)
            ch++;
        lab[i] = best;
        dist[i] = bd;
        inertia += bd;
    }
    *changed = ch;
    return inertia;
}

/* Centres = means; empty clusters take the farthest point (of a cluster with
 * at least two points).  Returns the number of refilled clusters. */
static int update(const float *x, size_t n, size_t d, int k, float *c, int *lab, double *dist,
                  double *acc, size_t *cnt)
{
    memset(acc, 0, sizeof(double) * (size_t)k * d);
    memset(cnt, 0, sizeof(size_t) * (size_t)k);
    for (size_t i = 0; i < n; i++) {
        cnt[lab[i]]++;
        double *a = acc + (size_t)lab[i] * d;
        for (size_t j = 0; j < d; j++)
            a[j] += x[i * d + j];
    }
    int fixes = 0;
    for (int m = 0; m < k; m++) {
        if (cnt[m] > 0)
            continue;
        size_t far = n;
        double fd = -1;
        for (size_t i = 0; i < n; i++)
            if (cnt[lab[i]] > 1 && dist[i] > fd) {
                fd = dist[i];
                far = i;
            }
        if (far == n)
            break; /* n < k cannot happen (checked); all singletons */
        int old = lab[far];
        cnt[old]--;
        double *ao = acc + (size_t)old * d, *am = acc + (size_t)m * d;
        for (size_t j = 0; j < d; j++) {
            ao[j] -= x[far * d + j];
            am[j] = x[far * d + j];
        }
        cnt[m] = 1;
        lab[far] = m;
        dist[far] = 0;
        fixes++;
    }
    for (int m = 0; m < k; m++) {
        if (!cnt[m])
            continue;
        for (size_t j = 0; j < d; j++)
            c[(size_t)m * d + j] = (float)(acc[(size_t)m * d + j] / cnt[m]);
    }
    return fixes;
}

int ps_kmeans(const float *x, size_t n, size_t d, const ps_kmeans_opts *o, int *labels,
              float *centers, ps_kmeans_result *res, ps_err *e)
{
    if (!o)
        return ps_errf(e, PS_EINPUT, "kmeans: no options");
    if (n == 0 || d == 0)
        return ps_errf(e, PS_EINPUT, "kmeans: empty data (%zu points of dimension %zu)", n, d);
    if (o->k < 1 || (size_t)o->k > n)
        return ps_errf(e, PS_EINPUT, "kmeans.k: %d must be in [1, %zu] (the number of points)",
                       o->k, n);
    if (o->restarts < 1)
        return ps_errf(e, PS_EINPUT, "kmeans.restarts: %d must be >= 1", o->restarts);
    if (o->max_iter < 1)
        return ps_errf(e, PS_EINPUT, "kmeans.max_iter: %d must be >= 1", o->max_iter);
    if (!(o->tol >= 0))
        return ps_errf(e, PS_EINPUT, "kmeans.tol: %g must be >= 0", o->tol);
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(x[i]))
            return ps_errf(e, PS_EINPUT, "kmeans: point %zu, coordinate %zu is not finite",
                           i / d, i % d);
    int k = o->k;
    float *c = malloc(sizeof(float) * (size_t)k * d);
    float *bestc = malloc(sizeof(float) * (size_t)k * d);
    int *lab = malloc(sizeof(int) * n);
    double *dist = malloc(sizeof(double) * n);
    double *acc = malloc(sizeof(double) * (size_t)k * d);
    size_t *cnt = malloc(sizeof(size_t) * (size_t)k);
    int rc = 0;
    if (!c || !bestc || !lab || !dist || !acc || !cnt) {
        rc = ps_errf(e, PS_ERUN, "kmeans: out of memory (%zu x %zu points, k %d)", n, d, k);
        goto done;
    }
    double best = INFINITY;
    int best_iters = 0, best_r = 0, fixes = 0;
    for (int r = 0; r < o->restarts; r++) {
        uint64_t rng = o->seed + (uint64_t)r * 0x632BE59BD9B4E019ull;
        seed_pp(x, n, d, k, &rng, c, dist);
        for (size_t i = 0; i < n; i++)
            lab[i] = -1;
        size_t changed;
        double inertia = assign(x, n, d, k, c, lab, dist, &changed);
        int it = 0;
        for (; it < o->max_iter; it++) {
            fixes += update(x, n, d, k, c, lab, dist, acc, cnt);
            double prev = inertia;
            inertia = assign(x, n, d, k, c, lab, dist, &changed);
            if (changed == 0 || prev - inertia <= o->tol * prev) {
                it++;
                break;
            }
        }
        /* A cluster left empty by the last assignment: refill and reassign. */
        for (int guard = 0; guard < k; guard++) {
            memset(cnt, 0, sizeof(size_t) * (size_t)k);
            int empty = 0;
            for (size_t i = 0; i < n; i++)
                cnt[lab[i]]++;
            for (int m = 0; m < k; m++)
                empty += cnt[m] == 0;
            if (!empty)
                break;
            fixes += update(x, n, d, k, c, lab, dist, acc, cnt);
            inertia = assign(x, n, d, k, c, lab, dist, &changed);
        }
        if (inertia < best) {
            best = inertia;
            best_iters = it;
            best_r = r;
            memcpy(bestc, c, sizeof(float) * (size_t)k * d);
            memcpy(labels, lab, sizeof(int) * n);
        }
    }
    if (centers)
        memcpy(centers, bestc, sizeof(float) * (size_t)k * d);
    if (res) {
        res->inertia = best;
        res->iters = best_iters;
        res->best_restart = best_r;
        res->empty_fixes = fixes;
    }
done:
    free(c);
    free(bestc);
    free(lab);
    free(dist);
    free(acc);
    free(cnt);
    return rc;
}

/* Dense relabeling of non-negative labels to 0..m-1. */
static int relabel(const int *a, size_t n, int **out, int *m, const char *which, ps_err *e)
{
    int mx = -1;
    for (size_t i = 0; i < n; i++) {
        if (a[i] < 0)
            return ps_errf(e, PS_EINPUT, "%s: label %d at index %zu is negative", which, a[i], i);
        if (a[i] > mx)
            mx = a[i];
    }
    int *map = malloc(sizeof(int) * ((size_t)mx + 1));
    int *r = malloc(sizeof(int) * n);
    if (!map || !r) {
        free(map);
        free(r);
        return ps_errf(e, PS_ERUN, "%s: out of memory", which);
    }
    for (int i = 0; i <= mx; i++)
        map[i] = -1;
    int cnt = 0;
    for (size_t i = 0; i < n; i++) {
        if (map[a[i]] < 0)
            map[a[i]] = cnt++;
        r[i] = map[a[i]];
    }
    free(map);
    *out = r;
    *m = cnt;
    return 0;
}

static int contingency(const int *a, const int *b, size_t n, const char *which, int **ra,
                       int **rb, int *ma, int *mb, double **tab, ps_err *e)
{
    if (n == 0)
        return ps_errf(e, PS_EINPUT, "%s: no labels", which);
    int rc = relabel(a, n, ra, ma, which, e);
    if (rc)
        return rc;
    if ((rc = relabel(b, n, rb, mb, which, e))) {
        free(*ra);
        return rc;
    }
    *tab = calloc((size_t)*ma * *mb, sizeof(double));
    if (!*tab) {
        free(*ra);
        free(*rb);
        return ps_errf(e, PS_ERUN, "%s: out of memory", which);
    }
    for (size_t i = 0; i < n; i++)
        (*tab)[(size_t)(*ra)[i] * *mb + (*rb)[i]] += 1;
    return 0;
}

int ps_mutual_info(const int *a, const int *b, size_t n, double *mi, double *ha, double *hb,
                   ps_err *e)
{
    int *ra, *rb, ma, mb;
    double *tab;
    int rc = contingency(a, b, n, "nmi", &ra, &rb, &ma, &mb, &tab, e);
    if (rc)
        return rc;
    double *pa = calloc((size_t)ma, sizeof(double)), *pb = calloc((size_t)mb, sizeof(double));
    if (!pa || !pb) {
        rc = ps_errf(e, PS_ERUN, "nmi: out of memory");
        goto done;
    }
    for (int i = 0; i < ma; i++)
        for (int j = 0; j < mb; j++) {
            pa[i] += tab[(size_t)i * mb + j];
            pb[j] += tab[(size_t)i * mb + j];
        }
    double I = 0, Ha = 0, Hb = 0, N = (double)n;
    for (int i = 0; i < ma; i++)
        for (int j = 0; j < mb; j++) {
            double nij = tab[(size_t)i * mb + j];
            if (nij > 0)
                I += nij / N * log(N * nij / (pa[i] * pb[j]));
        }
    for (int i = 0; i < ma; i++)
        Ha -= pa[i] / N * log(pa[i] / N);
    for (int j = 0; j < mb; j++)
        Hb -= pb[j] / N * log(pb[j] / N);
    if (I < 0)
        I = 0; /* rounding */
    *mi = I;
    if (ha)
        *ha = Ha;
    if (hb)
        *hb = Hb;
done:
    free(pa);
    free(pb);
    free(ra);
    free(rb);
    free(tab);
    return rc;
}

int ps_nmi(const int *a, const int *b, size_t n, double *out, ps_err *e)
{
    double I, Ha, Hb;
    int rc = ps_mutual_info(a, b, n, &I, &Ha, &Hb, e);
    if (rc)
        return rc;
    if (Ha <= 0 && Hb <= 0)
        *out = 1.0;
    else {
        double v = I / ((Ha + Hb) / 2);
        *out = v > 1 ? 1 : v;
    }
    return 0;
}

int ps_purity(const int *clusters, const int *labels, size_t n, double *out, ps_err *e)
{
    int *ra, *rb, ma, mb;
    double *tab;
    int rc = contingency(clusters, labels, n, "purity", &ra, &rb, &ma, &mb, &tab, e);
    if (rc)
        return rc;
    double s = 0;
    for (int i = 0; i < ma; i++) {
        double mx = 0;
        for (int j = 0; j < mb; j++)
            if (tab[(size_t)i * mb + j] > mx)
                mx = tab[(size_t)i * mb + j];
        s += mx;
    }
    *out = s / (double)n;
    free(ra);
    free(rb);
    free(tab);
    return 0;
}
