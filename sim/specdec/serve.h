/* sim/specdec: serving simulator for speculative decoding on the DES engine
 * (issue 6), the hardware-aware tree optimizer, and the single-request
 * predictor.
 *
 * Serving loop (sim/des/des.h): requests arrive (Poisson or a trace), wait,
 * and join the running batch at the next iteration (Orca continuous
 * batching: at each step the batch takes waiting requests up to max_batch).
 * Newly admitted requests are prefilled first (one LLM task over their
 * prompts; it emits each one's first output token).  A decode step is a
 * draft task on the "ssm" stream (skipped by incremental decoding) followed
 * by a verify task on the "llm" stream; the verify task's finish callback
 * draws each running request's emitted tokens from the acceptance model
 * (sd_accept_step with the request's own state, capped by its remaining
 * output), retires finished requests, admits waiting ones and adds the next
 * step's tasks.  Arrivals are delay tasks (no resource) whose finish
 * callbacks enqueue the request and wake an idle server.  The step costs
 * come from sd_cost with the batch's mean context (KV cost is linear in the
 * context, so the mean is exact for the sum).
 *
 * Methods:
 *  - incremental: one token per request per step, no drafting.
 *  - sequence: a chain of k drafts (k fixed, or, k <= 0, the k in 1..16
 *    maximising E[tokens](chain k) / step time for the current batch size).
 *  - specinfer: a fixed tree, by default the expansion <1,1,3,1,1,1,1,1>.
 *  - optimized: per batch size b, the Sequoia-optimal tree of n nodes and
 *    depth bound D, (n, D) maximising F(n, D) / (verify(b, n) + draft(b, tree))
 *    over n in a grid (up to 1024) and D in a grid (sd_optimize).
 *  - tree: a given tree for every step.
 *  - merge: SpecInfer's merge-based tree of k boost-tuned SSMs, each drafting
 *    a chain of d tokens; the SSMs run on separate GPUs in parallel (k SSMs
 *    on g GPUs take ceil(k / g) rounds of one chain's draft time).  Its
 *    acceptance is modelled as the expansion tree <k,1,...,1> (depth d): the
 *    k chains' first tokens stand for the collective's top-k candidates
 *    (boost-tuning makes each next SSM cover what the earlier ones miss),
 *    every later token the rank-1 continuation of its own chain; the tree
 *    verified has 1 + k d nodes (prefixes shared by several SSMs are not
 *    merged, an upper bound on the verify cost).
 *
 * Metrics: per-token latency of each request = (finish - arrival) / output
 * tokens (mean, p50, p99 over requests), the same from admission (service:
 * without the wait in the queue), tokens/s = output tokens / makespan,
 * tokens per step (mean emitted per request per decode step), steps. */
#ifndef PS_SPECDEC_SERVE_H
#define PS_SPECDEC_SERVE_H

#include <stdint.h>

#include "common/err.h"
#include "sim/specdec/accept.h"
#include "sim/specdec/cost.h"
#include "sim/specdec/tree.h"

typedef enum {
    SD_METHOD_INCREMENTAL = 0,
    SD_METHOD_SEQUENCE = 1,
    SD_METHOD_SPECINFER = 2,
    SD_METHOD_OPTIMIZED = 3,
    SD_METHOD_TREE = 4,
    SD_METHOD_MERGE = 5,
} sd_method;

const char *sd_method_name(sd_method m);     /* "incremental", ... */
int sd_method_from_name(const char *name);   /* -1 if unknown */

/* Positional vector implied by an acceptance model: p_k = topk(k) - topk(k-1),
 * k = 1..m (sd_accept_topk; exact for positional models). */
int sd_accept_to_positional(const sd_accept *a, int m, double *p, ps_err *e);

/* ---- hardware-aware optimizer ----
 * For batch size `batch` and context ctx: over n in n_grid (each 1..SD_TREE_MAX_NODES)
 * and depth bounds in depth_grid (<= 0: unbounded), F(n, D) = Sequoia-optimal
 * expected tokens (sd_sequoia_opt with the positional vector p[0..m)), the
 * step time t(n, D) = verify(batch, n, ctx) + draft of that tree (its depth
 * levels), and the objective F / t (tokens per second per request).  Ties:
 * the smaller n, then the smaller depth bound.  n_grid NULL: the default
 * grid 1,2,3,4,6,8,12,16,24,32,48,...,768,1024 (powers of 2 and 1.5 x powers
 * of 2) up to max_n, plus max_n itself; depth_grid NULL: {unbounded}.  One
 * Sequoia DP per (n, D) grid point builds the trees at creation (the draft
 * time depends on the tree's levels). */
typedef struct sd_opt_choice {
    int n;            /* nodes, root included */
    int max_depth;    /* depth bound used (0: unbounded) */
    int depth;        /* the chosen tree's depth (draft levels) */
    double tokens;    /* F(n, D) */
    double verify_s, draft_s, step_s;
    double s_per_token; /* step_s / tokens */
} sd_opt_choice;

/* Reusable optimizer: the DP curves depend only on p and the depth grid, so
 * they are computed once; sd_optimizer_pick then costs one cost evaluation
 * per grid point. */
typedef struct sd_optimizer sd_optimizer;
sd_optimizer *sd_optimizer_new(const double *p, int m, int max_n, const int *n_grid, int ngrid,
                               const int *depth_grid, int ndepth, ps_err *e);
void sd_optimizer_free(sd_optimizer *o);
int sd_optimizer_pick(sd_optimizer *o, const sd_cost *c, int batch, int ctx, sd_opt_choice *out,
                      ps_err *e);
/* The tree of a choice (new; caller frees). */
sd_tree *sd_optimizer_tree(sd_optimizer *o, const sd_opt_choice *ch, ps_err *e);
/* The objective at one grid point (for brute-force checks); -1 if out of grid. */
double sd_optimizer_objective(sd_optimizer *o, const sd_cost *c, int batch, int ctx, int n,
                              int max_depth);

/* Best chain length k in 1..kmax for the batch: argmax E[tokens](chain k) /
 * (verify(batch, k + 1) + sd_cost_draft_tree(chain k)); ties: smaller k. */
int sd_best_chain(const sd_cost *c, const sd_accept *a, int batch, int ctx, int kmax,
                  int *k_out, double *s_per_token, ps_err *e);

/* ---- single-request predictor ----
 * Expected time per token of one request: step = draft of tree t over
 * draft_levels passes (<= 0: t->depth; 0 passes when t has one node) +
 * verify(1, t->n, ctx); tokens_per_step = sd_accept_expected(a, t);
 * s_per_token = step / tokens_per_step.  Either output may be NULL. */
int sd_predict_time_per_token(const sd_cost *c, const sd_tree *t, const sd_accept *a,
                              int draft_levels, int ctx, double *tokens_per_step,
                              double *s_per_token, ps_err *e);

/* ---- serving simulation ---- */
typedef struct sd_serve_cfg {
    sd_method method;
    int max_batch;          /* running batch cap (>= 1) */
    int seq_k;              /* sequence: chain drafts; <= 0: best per batch size */
    const sd_tree *tree;    /* tree method (required) / specinfer override (NULL: default) */
    /* optimizer grid (optimized): nodes 1..opt_max_n (default 1024) sampled
     * on opt_n_grid when given; depth bounds opt_depth_grid (NULL: {0}). */
    int opt_max_n;
    const int *opt_n_grid;
    int opt_n_grid_len;
    const int *opt_depth_grid;
    int opt_ndepth;
    int opt_ranks;          /* m of the positional vector for the DP (default 8) */
    int merge_ssms;         /* merge: SSMs k (default 3) */
    int merge_depth;        /* merge: tokens per SSM chain d (default 8) */
    sd_optimizer *optimizer;/* optional, borrowed: a prebuilt optimizer (then the opt_* grid
                             * fields are ignored); lets callers reuse the DP across runs */
    /* workload */
    int nreq;               /* requests (>= 1) */
    double rate;            /* Poisson arrivals per second; <= 0: all at t = 0 */
    const double *arrival_s;/* trace (nreq entries, non-decreasing) or NULL */
    const int *prompt_len;  /* per request or NULL: prompt_default */
    const int *output_len;  /* per request or NULL: output_default */
    int prompt_default;     /* default 128 */
    int output_default;     /* default 128 (the paper's cap) */
    int prefill;            /* 1 (default): model prefill; 0: first token free at admission */
    uint64_t seed;
} sd_serve_cfg;

void sd_serve_cfg_default(sd_serve_cfg *cfg);

/* ---- the per-step plan of a method ----
 * What cfg->method verifies and drafts at batch size `batch` (the simulator
 * uses exactly this; studies use it to report the choices): tree = the tree
 * verified per request (NULL: incremental, one token), draft_depth = 0: the
 * SSM drafts `tree` level by level (sd_cost_draft_tree), > 0: one chain of
 * that many tokens per round (merge), draft_rounds = sequential rounds of
 * that chain (ceil(SSMs / GPUs)).  o: the optimizer for "optimized" (may be
 * NULL for the other methods); ctx: the context used for the choices. */
typedef struct sd_step_plan {
    sd_tree *tree;
    int draft_depth;
    int draft_rounds;
} sd_step_plan;
int sd_step_plan_make(const sd_serve_cfg *cfg, const sd_cost *c, const sd_accept *a,
                      sd_optimizer *o, int batch, int ctx, sd_step_plan *out, ps_err *e);
void sd_step_plan_free(sd_step_plan *p);
/* Verify and draft time of one step of the plan for `batch` requests at ctx. */
double sd_step_plan_cost(const sd_cost *c, const sd_step_plan *p, int batch, int ctx,
                         double *verify_s, double *draft_s);

typedef struct sd_serve_result {
    int nreq;
    long tokens;              /* output tokens */
    long steps;               /* decode steps (draft + verify) */
    long prefills;            /* prefill tasks */
    double makespan_s;
    double tokens_per_s;
    double tokens_per_step;   /* mean over (request, step) pairs */
    double mean_batch;        /* mean running batch over decode steps */
    double lat_mean_s, lat_p50_s, lat_p99_s; /* per-token latency over requests */
    double req_lat_mean_s;    /* mean request latency */
    double svc_lat_mean_s, svc_lat_p50_s, svc_lat_p99_s; /* per-token, from admission */
    double mean_tree_nodes;   /* mean tree nodes per request per step (1 for incremental) */
    double draft_busy_s, verify_busy_s;
    uint64_t des_events;
    double *req_latency_s;    /* malloc'd [nreq] per-token latency (sd_serve_result_free) */
} sd_serve_result;

int sd_serve_run(const sd_cost *c, const sd_accept *a, const sd_serve_cfg *cfg,
                 sd_serve_result *out, ps_err *e);
void sd_serve_result_free(sd_serve_result *r);

#endif
