/* Kendall's tau-b and relative-error aggregates (common/stats.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

typedef struct pair {
    double x, y;
} pair;

static int by_x_then_y(const void *a, const void *b)
{
    const pair *p = a, *q = b;
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    if (p->y != q->y)
        return p->y < q->y ? -1 : 1;
    return 0;
}

/* Stable merge sort of v[0..n) by y; returns the number of inversions
 * (pairs i < j with v[i].y > v[j].y: equal y is not an inversion). */
static uint64_t sort_count(pair *v, pair *tmp, size_t n)
{
    if (n < 2)
        return 0;
    size_t h = n / 2;
    uint64_t s = sort_count(v, tmp, h) + sort_count(v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        if (v[j].y < v[i].y) {
            s += h - i; /* v[j] jumps ahead of every remaining left element */
            tmp[k++] = v[j++];
        } else {
            tmp[k++] = v[i++];
        }
    }
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
    return s;
}

/* Pairs tied in the run structure of a sorted sequence: sum t(t-1)/2. */
static uint64_t tied_pairs(const pair *v, size_t n, int on_x, int on_both)
{
    uint64_t s = 0;
    size_t run = 1;
    for (size_t i = 1; i <= n; i++) {
        int same = 0;
        if (i < n) {
            same = on_both ? v[i].x == v[i - 1].x && v[i].y == v[i - 1].y
                   : on_x  ? v[i].x == v[i - 1].x
                           : v[i].y == v[i - 1].y;
        }
        if (same) {
            run++;
        } else {
            s += (uint64_t)run * (run - 1) / 2;
            run = 1;
        }
    }
    return s;
}

int ps_kendall_tau_b(const double *x, const double *y, size_t n, double *tau, ps_err *e)
{
    *tau = NAN;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || !isfinite(y[i]))
            return ps_errf(e, PS_EINPUT, "kendall tau: value %zu is not finite (x %g, y %g)", i,
                           x[i], y[i]);
    if (n < 2)
        return 0;
    pair *v = malloc(n * sizeof *v), *tmp = malloc(n * sizeof *tmp);
    if (!v || !tmp) {
        free(v);
        free(tmp);
        return ps_errf(e, PS_ERUN, "kendall tau: out of memory for %zu pairs", n);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (pair){x[i], y[i]};
    qsort(v, n, sizeof *v, by_x_then_y);
    uint64_t n0 = (uint64_t)n * (n - 1) / 2;
    uint64_t n1 = tied_pairs(v, n, 1, 0), n3 = tied_pairs(v, n, 0, 1);
    /* Within a run of equal x the y are ascending, so the merge sort counts
     * only pairs with different x and strictly opposite y: the discordant. */
    uint64_t d = sort_count(v, tmp, n);
    uint64_t n2 = tied_pairs(v, n, 0, 0);
    free(v);
    free(tmp);
    if (n1 == n0 || n2 == n0)
        return 0;
    /* pairs tied in neither = n0 - n1 - n2 + n3 = C + D */
    double cd = (double)(n0 - n1 - n2 + n3) - 2.0 * (double)d;
    *tau = cd / sqrt((double)(n0 - n1) * (double)(n0 - n2));
    return 0;
}

void ps_abs_rel_err(const double *pred, const double *meas, size_t n, double *mean_abs,
                    double *max_abs, size_t *used)
{
    double sum = 0, mx = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(pred[i]) || !isfinite(meas[i]) || meas[i] == 0)
            continue;
        double r = fabs((pred[i] - meas[i]) / meas[i]);
        sum += r;
        mx = fmax(mx, r);
        k++;
    }
    *mean_abs = k ? sum / (double)k : NAN;
    *max_abs = k ? mx : NAN;
    if (used)
        *used = k;
}
