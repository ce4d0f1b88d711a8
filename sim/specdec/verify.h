/* sim/specdec: token-level verification of a token tree (sim/specdec/tree.h)
 * against the target model's (LLM's) distributions, and the drafting samplers
 * that fill a tree shape from a draft model (issue 6).
 *
 * Verifiers (each returns the accepted root-to-node path plus the bonus
 * token; a step emits accepted + 1 tokens):
 *  - greedy: follow the child whose token is the LLM's argmax;
 *  - MSS (SpecInfer Alg. 2, multi-step speculative sampling): exact when each
 *    child's token was drawn independently from its q row (SD_DRAFT_IID);
 *  - SWOR (Sequoia, sampling without replacement): exact when the children
 *    were drawn from q without replacement in rank order (SD_DRAFT_SWOR);
 *  - naive (NS): x ~ p, descend if a child carries x: exact for any tree,
 *    deterministic ones (SD_DRAFT_TOPK) included.
 * MSS over deterministic top-k drafts is NOT exact: tests/test_specdec_verify.c
 * enumerates its output law on a <3,2> tree (V = 8), TV 0.26 from the target,
 * and the sampler matches that biased law.
 *
 * Rows: p rows and q rows hold V non-negative finite weights; they need not
 * sum to 1 (they are renormalised).  Only the rows a verification touches are
 * checked; errors are PS_EINPUT and name the node and the row ("p row of node
 * 3: p[3*V+7] = nan").
 *
 * Zero draft probability: MSS/SWOR accept a child x with probability
 * min(1, p'(x)/q'(x)), read as 1 when q'(x) = 0 < p'(x) and 0 when
 * p'(x) = 0.  SWOR: once the earlier siblings' tokens exhaust the support of
 * q (q' has no mass left), the remaining children are skipped (they cannot
 * have been drawn; SD_DRAFT_SWOR gives them placeholder tokens).
 *
 * Paths longer than SD_MAX_PATH are cut there: the verdict then stops at
 * depth SD_MAX_PATH and the bonus is drawn at that node (sd_verify_* with
 * sampling) / is its argmax (greedy). */
#ifndef PS_SPECDEC_VERIFY_H
#define PS_SPECDEC_VERIFY_H

#include <stdint.h>

#include "common/err.h"
#include "sim/specdec/rng.h"
#include "sim/specdec/tree.h"

#define SD_MAX_PATH 1024
typedef struct sd_verdict {
    int accepted;                   /* accepted non-root nodes (path length) */
    int32_t node[SD_MAX_PATH];      /* accepted node indices, root excluded, in order */
    int32_t token[SD_MAX_PATH + 1]; /* their tokens, then the bonus token at [accepted] */
    int32_t bonus;                  /* the token the LLM emits after the path */
} sd_verdict;                       /* tokens per step = accepted + 1 */

/* Greedy: target_argmax[u] = argmax of the LLM at node u (after S_u).  Follows the child whose
 * token equals it (first in rank order if several), bonus = target_argmax[last]. */
void sd_verify_greedy(const sd_tree *t, const int32_t *target_argmax, sd_verdict *out);

/* Distributions: p[u * V .. +V) = the LLM's next-token distribution at node u (for every node,
 * leaves too: the bonus is drawn from it).  q[v * V .. +V) = for every NON-root node v, the
 * distribution v's token was drafted from (at v's parent; the row of the root is unused).  A
 * single drafter gives all children of u the same q row; merged trees may differ per child.
 * Rows need not be normalised exactly (they are renormalised), must be >= 0, finite.
 * Each verifier reproduces p exactly (in distribution) when its drafting assumption holds. */

/* Multi-step speculative sampling (SpecInfer Alg. 2): children tried in uniformly random order;
 * accept x with prob min(1, p'(x)/q(x)), else p' <- norm(max(0, p' - q)); bonus from p' at the
 * stopping node.  Exact when each child's token was drawn INDEPENDENTLY from its q row. */
int sd_verify_mss(const sd_tree *t, int V, const double *p, const double *q, sd_rng *r,
                  sd_verdict *out, ps_err *e);
/* Sampling without replacement (Sequoia): children tried in rank order; accept x with prob
 * min(1, p'(x)/q'(x)); on rejection p' <- norm(max(0, p' - q')), q' <- q' with q'(x) = 0,
 * renormalised.  Exact when the children were drawn from q without replacement (in order).
 * (With per-child q rows, q' for a child is its own row with the earlier siblings' tokens
 * zeroed.) */
int sd_verify_swor(const sd_tree *t, int V, const double *p, const double *q, sd_rng *r,
                   sd_verdict *out, ps_err *e);
/* Naive sampling: x ~ p at the node; if a child has token x descend, else x is the bonus.
 * Exact for any (even deterministic) tree.  q is not needed. */
int sd_verify_naive(const sd_tree *t, int V, const double *p, sd_rng *r, sd_verdict *out,
                    ps_err *e);

/* The same three verifiers over per-node row POINTERS instead of contiguous [n*V] arrays:
 * prow[u] = p row of node u (every node that can be reached), qrow[v] = q row of non-root node
 * v (qrow[0] unused, may be NULL).  Lets callers point into a cache of rows without copying;
 * rows are read only where the verification goes.  Semantics as above. */
int sd_verify_mss_rows(const sd_tree *t, int V, const double *const *prow,
                       const double *const *qrow, sd_rng *r, sd_verdict *out, ps_err *e);
int sd_verify_swor_rows(const sd_tree *t, int V, const double *const *prow,
                        const double *const *qrow, sd_rng *r, sd_verdict *out, ps_err *e);
int sd_verify_naive_rows(const sd_tree *t, int V, const double *const *prow, sd_rng *r,
                         sd_verdict *out, ps_err *e);

/* Drafting helpers for a fixed tree SHAPE: fill t->token of every non-root node from the
 * drafter's distribution at its parent, qnode[u * V ..] (u = the parent; computed once per
 * node, e.g. by a callback — provide the variant that suits the real models too):
 *   SD_DRAFT_IID    each child drawn independently from q (duplicates allowed) — MSS
 *   SD_DRAFT_SWOR   children drawn without replacement, in rank order — SWOR
 *   SD_DRAFT_TOPK   deterministic: rank-k child = k-th most likely token (ties: lower id)
 * SWOR / TOPK with more children than tokens of positive mass: the extra children get the
 * lowest-id tokens not yet used among their siblings (SWOR verification skips them; TOPK
 * simply ranks zero-mass tokens by id).  More children than V tokens: PS_EINPUT. */
typedef enum { SD_DRAFT_IID = 0, SD_DRAFT_SWOR = 1, SD_DRAFT_TOPK = 2 } sd_draft_kind;
/* dist(user, t, u, row): fills row[0..V) with the drafter's distribution at node u, given that
 * the tokens of u and its ancestors are already set (the callback lets a real model or a
 * synthetic context model compute it).  Nodes are processed in DFS order; dist is called once
 * for every node with children (t->token[0], the root's token, is the caller's).  Rows are
 * checked (>= 0, finite, positive total): errors name the node. */
typedef int (*sd_dist_fn)(void *user, const sd_tree *t, int u, double *row, ps_err *e);
int sd_draft_tree(sd_tree *t, int V, sd_draft_kind kind, sd_dist_fn dist, void *user,
                  sd_rng *r, double *q_out /* [n*V] per-child q rows as verify wants, or NULL */,
                  ps_err *e);

/* Fill the children of ONE node u from its drafter row q[0..V) (the building block of
 * sd_draft_tree, for callers that draft level by level, e.g. batched real models). */
int sd_draft_children(sd_tree *t, int u, int V, sd_draft_kind kind, const double *q, sd_rng *r,
                      ps_err *e);

/* ---- Synthetic context models (tests, simulator) ---------------------------------------
 * p(.|ctx, path) = softmax(scale * z) with z[a] ~ N(0,1)-like values from a seeded hash of
 * (seed, ctx, path, a); the draft model mixes the target's z with an independent one:
 * q = softmax(draft_scale * ((1 - draft_noise) * z + draft_noise * z')), z' from draft_seed.
 * draft_noise = 0 and draft_scale = scale give q = p; 1 gives an unrelated drafter. */
typedef struct sd_synth {
    int V;
    uint64_t seed;       /* target */
    double scale;        /* target logit scale (larger = peakier) */
    uint64_t draft_seed; /* drafter's own noise */
    double draft_noise;  /* in [0, 1] */
    double draft_scale;
} sd_synth;

/* which = 0: target row, 1: draft row, for the path[0..len) after context ctx. */
void sd_synth_row(const sd_synth *m, int which, uint64_t ctx, const int32_t *path, int len,
                  double *row);

typedef enum {
    SD_VERIFY_GREEDY = 0,
    SD_VERIFY_MSS = 1,
    SD_VERIFY_SWOR = 2,
    SD_VERIFY_NAIVE = 3
} sd_verify_kind;

/* Monte Carlo tokens per step (accepted + 1) of verifier vk over trees of the given SHAPE
 * drafted with dk from the synthetic model (greedy: p's argmax with ties to the lower id).
 * Each step uses a fresh random context (nodes' rows: sd_synth_row of the node's path after
 * it); the draft rows of every internal node are computed (drafting needs them), target rows
 * only where the verifier goes.  Mean over `steps`, standard error (may be NULL). */
int sd_verify_mc_tokens(const sd_tree *shape, const sd_synth *m, sd_verify_kind vk,
                        sd_draft_kind dk, long steps, uint64_t seed, double *mean,
                        double *stderr_out, ps_err *e);

#endif
