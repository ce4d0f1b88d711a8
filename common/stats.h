/* Small statistics shared by the studies' summaries: rank correlation of
 * predicted against measured values, and relative-error aggregates. */
#ifndef PS_STATS_H
#define PS_STATS_H

#include <stddef.h>

#include "err.h"

/* Kendall's tau-b of n paired samples (x[i], y[i]), ties allowed:
 *   tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))
 * with C / D the concordant / discordant pairs, n0 = n(n-1)/2, n1 the pairs
 * tied in x, n2 the pairs tied in y (pairs tied in both count in n1 and n2).
 * O(n log n) (Knight's algorithm: sort by x, count discordant pairs as the
 * swaps of a merge sort by y).  *tau is NaN when it is undefined (n < 2, or
 * every x or every y equal).  A non-finite value is PS_EINPUT naming its
 * index; PS_ERUN when out of memory. */
int ps_kendall_tau_b(const double *x, const double *y, size_t n, double *tau, ps_err *e);

/* Relative errors (pred - meas) / meas: mean and max of their absolute
 * values over the pairs whose both values are finite and meas != 0;
 * *used gets how many pairs counted (may be NULL).  NaN when none. */
void ps_abs_rel_err(const double *pred, const double *meas, size_t n, double *mean_abs,
                    double *max_abs, size_t *used);

#endif
