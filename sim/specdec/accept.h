/* sim/specdec: acceptance models for token-tree speculative decoding (issue 6)
 * and their calibration to the SpecInfer paper's tables.
 *
 * Every model answers one question: given a tree (sim/specdec/tree.h, rank-
 * ordered children), which root-to-node path does greedy verification accept
 * in one step?  The step then emits accepted + 1 tokens (the bonus token).
 *
 * Kinds:
 *  - positional: Sequoia's vector, p[k-1] = P(rank-k child accepted | parent
 *    accepted), independent across nodes (sum p <= 1).
 *  - matrix: depth x rank, P[d-1][k-1] for a child at depth d (rows beyond the
 *    last reuse the last row), independent across nodes.
 *  - correlated: a K-state hidden Markov chain over OUTPUT POSITIONS.  State
 *    z_i belongs to output position i; the draft for position i is accepted
 *    at rank k with probability p_{z_i}[k] (sum_k p_z[k] <= 1), and
 *    z_{i+1} ~ A[z_i, .].  Positions are consecutive within a step (depth d of
 *    a step is the step's d-th position) and across steps (the position after
 *    a step's bonus token is the next step's first position), so acceptance
 *    is correlated within a step and across steps.  Closed form: with
 *    D(r) = diag_z p_z[r] and Phi(root) = I, Phi(child of v, rank r) =
 *    Phi(v) D(r) A, tokens from start state z are t = sum_v Phi(v) 1, and the
 *    next step's start state follows M = sum_v Phi(v) diag(1 - s_v) A with
 *    s_v = sum_{k <= #children(v)} p_.[k]; the stationary step-start law pi_M
 *    (pi_M M = pi_M) gives E = pi_M t (renewal-reward: long-run tokens per
 *    step).  Table 1's quantity (every position counts) uses the position
 *    chain's stationary law pi_A.
 *    JSON: {"kind": "correlated", "A": [[..],..] (K x K, rows sum to 1),
 *           "p": [[..],..] (K rows of per-state positional vectors)}.
 *  - trace: replay of recorded greedy rank traces (see sd_accept_trace).
 *
 * JSON errors name WHERE.field (e.g. "acc.json.p[2]"). */
#ifndef PS_SPECDEC_ACCEPT_H
#define PS_SPECDEC_ACCEPT_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "sim/specdec/rng.h"
#include "sim/specdec/tree.h"

typedef enum {
    SD_ACC_POSITIONAL = 0,
    SD_ACC_MATRIX = 1,
    SD_ACC_CORRELATED = 2,
    SD_ACC_TRACE = 3
} sd_acc_kind;

#define SD_ACC_MAX_STATES 8

typedef struct sd_accept sd_accept; /* opaque */

/* From JSON, e.g. {"kind": "positional", "p": [0.68, 0.09, ...]},
 * {"kind": "matrix", "P": [[...], [...]]},
 * {"kind": "correlated", "A": [[...]], "p": [[...]]},
 * {"kind": "trace", "ranks": [[1,1,2,0,...], ...] (one array per sequence)};
 * errors name WHERE.field. */
sd_accept *sd_accept_from_json(const json_t *j, const char *where, ps_err *e);
sd_accept *sd_accept_positional(const double *p, int m, ps_err *e);
/* P[(d-1) * m + (k-1)], d = 1..depth, k = 1..m; each row sums to <= 1. */
sd_accept *sd_accept_matrix(const double *P, int depth, int m, ps_err *e);
/* K states (1..SD_ACC_MAX_STATES), A[K*K] row-stochastic, p[z * m + k-1]. */
sd_accept *sd_accept_correlated(int K, const double *A, const double *p, int m, ps_err *e);
/* Trace replay (greedy): `nseq` recorded sequences (one per prompt); ranks[off[i] + j], j <
 * len[i], is the 1-based rank of the LLM's greedy token at output position j of sequence i in
 * the drafter's ranking at that context (0 = not in the drafter's top list; ties by lower
 * token id).  A request's state holds (sequence, cursor).  A step on tree T at cursor c
 * accepts the path that follows ranks r_c, r_{c+1}, ... while T has a child of that rank
 * (stopping at a 0 or at the end of the sequence), emits accepted + 1 tokens and moves the
 * cursor by that; at the end of a sequence the step emits only the positions left (no bonus
 * token beyond the recorded length) and the state moves to the next sequence (cyclically).
 * This is exact replay of greedy speculative decoding of any tree built by top-k expansion
 * from the same single drafter, since the greedy output does not depend on the tree. */
sd_accept *sd_accept_trace(const int32_t *ranks, const int64_t *off, const int32_t *len,
                           int nseq, ps_err *e);
void sd_accept_free(sd_accept *a);
sd_acc_kind sd_accept_kind(const sd_accept *a);
const char *sd_acc_kind_name(sd_acc_kind k); /* "positional", ... */
json_t *sd_accept_to_json(const sd_accept *a);

/* Per-request state (latent easy/hard state of the correlated model, trace cursor). */
typedef struct sd_acc_state {
    int latent;
    int seq;
    long cursor;
} sd_acc_state;
/* Correlated: latent drawn from the position chain's stationary law; trace:
 * (seq 0, cursor 0); others: zeros.  r may be NULL for those kinds. */
void sd_accept_state_init(const sd_accept *a, sd_acc_state *s, sd_rng *r);
/* One verification step on tree t: returns the tokens emitted (accepted + 1 bonus) and
 * advances the state. */
int sd_accept_step(const sd_accept *a, sd_acc_state *s, const sd_tree *t, sd_rng *r);
/* Expected tokens per step on t in the model's stationary regime (closed form where there is
 * one: positional, matrix; correlated: exact over the latent state's stationary law; trace:
 * tokens emitted / steps when replaying every sequence once from its start, exact). */
int sd_accept_expected(const sd_accept *a, const sd_tree *t, double *out, ps_err *e);
/* Probabilities that the LLM's token is within the drafter's top-k, k = 1..kmax
 * (Table 1's quantity) implied by the model at depth 1 (stationary). */
int sd_accept_topk(const sd_accept *a, int kmax, double *out, ps_err *e);

/* ---- Calibration (Table 1 row + the w = 1 column of Table 2) ----
 * topk[0..kmax): cumulative P(top-k), k = 1..kmax (kmax <= 16); `chain` the
 * tree of the w = 1 measurement and `tokens` its measured tokens per step.
 * Fits `kind` (positional, matrix or correlated) by the documented procedure
 * in accept.c (positional: closed form from Table 1, tokens unused; matrix:
 * Table 1 at depth 1 with a geometric depth decay gamma fit by bisection;
 * correlated: the sticky two-state model, Table 1 matched exactly by
 * construction, persistence rho fit by bisection).  *objective (may be NULL)
 * receives sum_k ((T_k' - T_k)/T_k)^2 + ((E1' - E1)/E1)^2 of the fit. */
sd_accept *sd_accept_calibrate(sd_acc_kind kind, const double *topk, int kmax,
                               const sd_tree *chain, double tokens, double *objective,
                               ps_err *e);

/* The fitted scalar of a calibrated model: matrix gamma (P[1][0]/P[0][0]),
 * correlated two-state rho (A[0][0] - A[1][0]); NaN otherwise. */
double sd_accept_param(const sd_accept *a);

#endif
