/* sim/specdec/build: token-tree builders beyond the expansion config of
 * tree.h (issue 6): prefix union of several drafters' trees (SpecInfer's
 * merge), Medusa-style static choice lists, Sequoia's optimal-tree dynamic
 * program (positional vector or depth x rank matrix, optional depth bound),
 * and best-first top-m growth by path value (EAGLE-2 / OPT-Tree / SpecExec).
 * Also the expected tokens per step under a depth x rank acceptance matrix.
 *
 * Every builder returns a tree in the tree.h layout (DFS order, children in
 * rank order, root = node 0 included in every node count) or NULL with e
 * filled (PS_EINPUT for bad arguments, PS_ERUN for out of memory or a failing
 * callback). */
#ifndef PS_SPECDEC_BUILD_H
#define PS_SPECDEC_BUILD_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "sim/specdec/tree.h"

/* Prefix union (SpecInfer Def. 3.2) of k trees whose nodes carry tokens: a node of the result
 * is a distinct token sequence root->v among the inputs (roots are identified with each other
 * whatever their token; the result's root token is trees[0]'s).  Children keep first-seen
 * order: all of trees[0]'s children in their rank order, then new ones from trees[1], ...
 * origin (may be NULL): *origin = malloc'd [n] bitmask (bit i: the node is in trees[i],
 * k <= 32).
 *
 * Algorithm: a trie walk.  Each input tree is scanned in DFS order and each node is mapped to
 * the child of its parent's image carrying the same token (created, appended after the
 * existing children, when missing); the trie is then written out depth-first.  Siblings of
 * one input tree that carry equal tokens are the same token sequence and merge into one node.
 * Errors: k < 1 or > 32, a NULL tree, more than SD_TREE_MAX_NODES result nodes. */
sd_tree *sd_tree_merge(const sd_tree *const *trees, int k, uint32_t **origin, ps_err *e);

/* Medusa-style static choice list: each path is a list of 0-based child ranks from the root,
 * e.g. [[0],[0,0],[1],[0,1]]; the tree holds the root plus one node per path, ordered DFS with
 * children by rank.  Every proper prefix of a path must itself be listed (else PS_EINPUT naming
 * WHERE[i]), duplicates are an error, ranks must be contiguous among siblings (a rank-2 child
 * needs a rank-1 sibling).  Tokens: rank - 1 as in the expansion builder.
 *
 * (Ranks here are 0-based, so a node's token is its 0-based rank, the last entry of its path;
 * tree rank = entry + 1.)  Errors, each naming the first offending index in list order:
 * an empty path or a negative entry (WHERE[i] / WHERE[i][j]), a duplicate (WHERE[i]:
 * duplicate of WHERE[j]), a missing proper prefix (WHERE[i]), a rank gap (WHERE[i]: rank r
 * without a rank r-1 sibling), npaths + 1 > SD_TREE_MAX_NODES. */
sd_tree *sd_tree_from_choices(const int *const *paths, const int *lens, int npaths,
                              const char *where, ps_err *e);
/* Same from JSON [[0],[0,0],...] (non-array entries or non-integers: PS_EINPUT naming
 * WHERE[i] or WHERE[i][j]). */
sd_tree *sd_tree_from_choices_json(const json_t *j, const char *where, ps_err *e);

/* Depth x rank acceptance: P[(d-1) * m + (k-1)] = probability that the rank-k child of an
 * accepted node at depth d-1 is accepted (d = 1..depths; deeper rows reuse the last row).
 * Expected tokens per step: 1 + sum_{v != root} prod over the path of P[depth(u)][rank(u)].
 * Validates each row like sd_tree_expected_tokens (entries in [0,1], row sums <= 1).
 * (Errors name acceptance[d-1][k-1]; depths >= 1, m >= 0; ranks beyond m have probability 0.) */
int sd_tree_expected_tokens_matrix(const sd_tree *t, const double *P, int depths, int m,
                                   double *out, ps_err *e);

/* Sequoia's dynamic program: the tree of exactly n nodes (root included) maximising expected
 * tokens per step under the positional vector p[0..m) (m ranks) or the depth x rank matrix,
 * with max_depth (<= 0: unbounded; the root has depth 0) bounding node depth.  Returns the
 * optimal tree (DFS, children by rank, tokens = rank - 1) and *value = its expected tokens
 * (equal to sd_tree_expected_tokens of the returned tree).  curve (may be NULL): curve[i] =
 * optimum value with i + 1 nodes, i = 0 .. n-1 (curve[0] = 1).  n up to SD_TREE_MAX_NODES but
 * must be fast for n <= 1024, depth <= 32, m <= 16 (seconds at most; O(n^2 m D) is fine).
 * Ties broken deterministically (document how).
 *
 * Algorithm.  The search space is every ordered rooted tree (a node's children have ranks
 * 1..c, any c) with n nodes and depth <= max_depth; ranks beyond m contribute 0 but still
 * count as nodes, so the optimum is non-decreasing in n.  With a = the depth of a node
 * (its children use acceptance row min(a, depths - 1)):
 *     F(s, a)    = best value of an s-node subtree rooted at a depth-a node, the root counting 1
 *                = 1 + H(s - 1, 1, a)
 *     H(r, k, a) = best value of r nodes hung below a depth-a node as its children of ranks
 *                  k, k+1, ... (with their subtrees):
 *                  H(0, k, a) = 0;  a = max_depth, r > 0: infeasible;
 *                  k > m (zero-value ranks): 0 (any r, as extra leaf children);
 *                  else max_{1 <= s <= r} P[a][k] * F(s, a + 1) + H(r - s, k + 1, a).
 * The answer is F(n, 0).  Levels a >= depths - 1 are identical when there is no depth bound
 * (or it cannot bind: max_depth >= n - 1), so the unbounded DP runs over min(depths, n) levels
 * (one for the vector form) and the bounded one over max_depth + 1 levels; each level costs
 * O(n^2 min(m, n - 1)): O(n^2 m D) time, O(n m D) memory (int16 choices; PS_EINPUT when that
 * would exceed 512 MiB, only possible with depth bounds in the thousands).  The tree is
 * rebuilt from the stored argmax choices.
 *
 * Ties (exact floating-point equality) are broken towards larger early-rank subtrees: in
 * H(r, k, a) the candidate s is scanned from r down to 1 and replaced only by a strictly
 * better one, so the rank-1 subtree gets the most nodes any optimal split allows, then rank
 * 2 given that, and so on recursively.  The result depends only on the inputs.
 * Errors (PS_EINPUT): n outside 1..SD_TREE_MAX_NODES, m < 0, depths < 1, invalid rows as in
 * sd_tree_expected_tokens_matrix. */
sd_tree *sd_sequoia_opt(const double *p, int m, int n, int max_depth, double *value,
                        double *curve, ps_err *e);
sd_tree *sd_sequoia_opt_matrix(const double *P, int depths, int m, int n, int max_depth,
                               double *value, double *curve, ps_err *e);

/* Top-m by path value (EAGLE-2 / OPT-Tree / SpecExec style): best-first growth from the root.
 * expand(user, path_tokens, depth, k, tok_out, prob_out) fills up to k children of the node
 * whose token path from the root (excluding the root token) is path_tokens[0..depth) and
 * returns how many it filled (< 0: error, e filled by the callback via user is fine; return
 * PS_ERUN then); prob_out are the drafter's probabilities (in [0,1]).  A node's value is the
 * product of probs on its path (root 1).  The tree keeps the m nodes (root included) of
 * highest value among all reachable nodes with depth <= max_depth, children ranked by prob
 * (descending), expanding each kept node's top-k.  Since values shrink along paths the
 * result is connected.  values (may be NULL): malloc'd [n] node values in the tree's order.
 * Tokens of the tree = the drafter's tokens.
 *
 * Algorithm: a max-heap of frontier candidates keyed by value.  Pop the best, keep it, and
 * (if its depth < max_depth) call expand on it once and push its children in prob-descending
 * order (a stable sort of what the drafter returned).  Stop after m kept nodes or an empty
 * frontier (then n < m).  Equal values are broken by push order (earlier first), so a parent
 * precedes an equal-valued child and the kept children of a node are a prefix of its sorted
 * children.  max_depth <= 0: unbounded.  The root's token is 0.  expand is called exactly
 * once per kept node of depth < max_depth (at most m times).  Errors: m outside
 * 1..SD_TREE_MAX_NODES, topk < 1, NULL expand (PS_EINPUT); a negative return (PS_ERUN; e
 * keeps the callback's message when it filled one), a count > k or a prob outside [0,1]
 * (PS_ERUN naming the node's depth). */
typedef int (*sd_expand_fn)(void *user, const int32_t *path_tokens, int depth, int k,
                            int32_t *tok_out, double *prob_out);
sd_tree *sd_tree_topm(int m, int max_depth, int topk, sd_expand_fn expand, void *user,
                      double **values, ps_err *e);

#endif
