/* sim/specdec: the token tree shared by the speculative-decoding simulator
 * and the real tiny models (issue 6).
 *
 * Nodes are stored in depth-first (pre-)order.  Node 0 is the root: the last
 * verified token, counted as a node (parent -1, depth 0), so every node count
 * includes it.  Children of a node appear in rank order: the first child in
 * DFS order is the rank-1 (most likely) candidate, the next rank 2, and so on.
 * Each node carries an ancestor bitmask: row i has bit j set iff j is i or an
 * ancestor of i, which is exactly the topology-aware attention mask (token i
 * may attend to token j).  Rows are `words` 64-bit words long, so trees of up
 * to SD_TREE_MAX_NODES nodes are supported.
 *
 * JSON form: {"num_nodes": N, "depth": D, "parents": [-1, 0, ...],
 *             "tokens": [...]}  ("tokens" optional on input; "num_nodes" and
 * "depth", when given, must agree with the parent array). */
#ifndef PS_SPECDEC_TREE_H
#define PS_SPECDEC_TREE_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"

#define SD_TREE_MAX_NODES 4096

typedef struct sd_tree {
    int n;          /* nodes, root included */
    int depth;      /* max node depth (root has depth 0) */
    int words;      /* uint64 words per mask row: (n + 63) / 64 */
    int32_t *token; /* [n] token id (expansion builder: rank - 1; root 0) */
    int32_t *parent;/* [n] parent index, -1 for the root */
    int32_t *ndepth;/* [n] depth of each node */
    int32_t *rank;  /* [n] 1-based rank among siblings; 0 for the root */
    int32_t *nchild;/* [n] number of children */
    int32_t *first_child; /* [n] index of the rank-1 child, -1 if a leaf */
    int32_t *next_sib;    /* [n] next-ranked sibling, -1 if none */
    uint64_t *mask; /* [n * words] ancestor-or-self bitmask rows */
} sd_tree;

/* From a parent array in DFS order (tokens may be NULL → all 0).  `where`
 * names the source in messages ("tree.json").  Errors (PS_EINPUT) name the
 * field: WHERE.parents[i] out of range, a cycle, a parent not before its
 * child, a second root, or an order that is not depth-first. */
sd_tree *sd_tree_from_parents(const int *parents, const int *tokens, int n, const char *where,
                              ps_err *e);

/* Expansion config <k1,...,kd>: the root has k1 children, each node at depth
 * i-1 has k_i children.  <1,1,3,1,1,1,1,1> gives 21 nodes, depth 8.  Each k_i
 * must be >= 1. */
sd_tree *sd_tree_from_expansion(const int *k, int d, ps_err *e);

void sd_tree_free(sd_tree *t);

/* 1 iff node i may attend to node j (j is i or an ancestor of i). */
static inline int sd_tree_sees(const sd_tree *t, int i, int j)
{
    return (int)((t->mask[(size_t)i * (size_t)t->words + (size_t)(j >> 6)] >> (j & 63)) & 1u);
}

/* JSON in/out (see the file comment).  to_json returns a new reference. */
json_t *sd_tree_to_json(const sd_tree *t);
sd_tree *sd_tree_from_json(const json_t *j, const char *where, ps_err *e);

/* Acceptance model (Sequoia's positional acceptance, greedy verification):
 * p[k-1] = p_k is the probability that the rank-k child of a node is the
 * accepted one given that the node was accepted; the events "rank k is
 * accepted" for the different k are mutually exclusive (at most one child
 * matches the LLM's token), so sum p_k <= 1 and with probability
 * 1 - sum_{k <= #children} p_k no child is accepted and the step ends.
 * Draws are independent across nodes.  Ranks beyond m have p = 0.
 *
 * Expected tokens per step, closed form:
 *     E = 1 + sum_{v != root} prod_{u on path root->v, u != root} p_{rank(u)}
 * (the 1 is the bonus token the LLM always emits after the accepted path;
 * each product is P(v accepted), since v is accepted iff every node on its
 * path is the accepted child of its parent).  This is the Sequoia form: a
 * node's probability multiplies only p_rank terms because the mutually
 * exclusive events already mean "the earlier-ranked siblings were not it".
 * Validates p: each in [0,1], sum <= 1 (+1e-9); errors name acceptance[k]. */
int sd_tree_expected_tokens(const sd_tree *t, const double *p, int m, double *out, ps_err *e);

/* Monte Carlo of the same model: at each accepted node draw u ~ U[0,1);
 * rank k is accepted if sum_{j<k} p_j <= u < sum_{j<=k} p_j and k <= the
 * node's child count, else stop.  Mean of (accepted non-root nodes + 1) over
 * `samples` steps; standard error in *stderr_out (may be NULL). */
int sd_tree_mc_tokens(const sd_tree *t, const double *p, int m, long samples, uint64_t seed,
                      double *mean, double *stderr_out, ps_err *e);

#endif
