/* Clustering and clustering scores: k-means (Lloyd's algorithm with
 * k-means++ seeding), normalized mutual information and purity.
 *
 * k-means (ps_kmeans): points x[n, d] (float, row-major), squared Euclidean
 * distance.  Each restart seeds with k-means++ (Arthur & Vassilvitskii 2007:
 * the first centre uniformly, each next one with probability proportional to
 * the squared distance to the nearest centre already chosen), then runs
 * Lloyd iterations (assign to the nearest centre, a tie keeping the current
 * cluster, else the lowest index; move each centre to its points' mean)
 * until no assignment changes, the relative decrease of the inertia falls
 * below tol, or max_iter.  A cluster left without points takes the point
 * farthest from its assigned centre among the points not alone in their
 * cluster; the check runs after the last iteration too, so every cluster
 * ends non-empty when n >= k.  The restart with the lowest inertia (sum of
 * squared distances to the assigned centres) wins.  Deterministic for a seed
 * (a splitmix64 stream; restart r starts from seed + r * a fixed odd
 * constant).
 *
 * NMI (ps_nmi): I(U; V) / ((H(U) + H(V)) / 2), natural logarithms, from the
 * contingency table of two labelings — the "arithmetic" normalization,
 * scikit-learn's default for normalized_mutual_info_score (since 0.22).  When
 * both labelings are a single class (H(U) = H(V) = 0) it is 1 (as
 * scikit-learn); when exactly one is, it is 0.
 *
 * Purity (ps_purity): (1/n) sum over clusters of the count of the cluster's
 * most frequent label. */
#ifndef PS_COMMON_CLUSTER_H
#define PS_COMMON_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct ps_kmeans_opts {
    int k;             /* clusters, 1 <= k <= n */
    int restarts;      /* >= 1: k-means++ restarts, best inertia kept */
    int max_iter;      /* >= 1: Lloyd iterations per restart */
    double tol;        /* relative inertia decrease to stop (0: until stable) */
    uint64_t seed;
} ps_kmeans_opts;

/* Defaults: k 10, restarts 4, max_iter 100, tol 1e-6, seed 1. */
ps_kmeans_opts ps_kmeans_opts_default(void);

typedef struct ps_kmeans_result {
    double inertia;    /* of the kept restart */
    int iters;         /* Lloyd iterations of the kept restart */
    int best_restart;
    int empty_fixes;   /* empty clusters refilled (all restarts) */
} ps_kmeans_result;

/* labels[n] in [0, k); centers[k * d] (may be NULL); res may be NULL.
 * PS_EINPUT on bad options (naming the field) or non-finite input. */
int ps_kmeans(const float *x, size_t n, size_t d, const ps_kmeans_opts *o, int *labels,
              float *centers, ps_kmeans_result *res, ps_err *e);

/* Labels are any non-negative ints (PS_EINPUT otherwise, or n == 0). */
int ps_nmi(const int *a, const int *b, size_t n, double *out, ps_err *e);
/* Mutual information (nats) and entropies of the two labelings. */
int ps_mutual_info(const int *a, const int *b, size_t n, double *mi, double *ha, double *hb,
                   ps_err *e);
int ps_purity(const int *clusters, const int *labels, size_t n, double *out, ps_err *e);

#endif
