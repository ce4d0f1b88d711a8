/* sim/quant: exact mixed-precision bit allocation (HAWQ-V2 / V3 form).
 *
 * A problem is L layers, each with K options (bits b, Ω ≥ 0, cost in bytes,
 * optionally latency in seconds and BOPS).  Pick one option per layer to
 * minimise ΣΩ subject to Σ bytes ≤ B and/or Σ latency ≤ S and/or Σ BOPS ≤ P.
 *
 * Ties and fixed layers.  Layers whose `tie` strings are equal (non-empty)
 * must take the same bits: they are merged into one *unit* whose option for
 * bits b sums Ω / bytes / latency / BOPS over the members (only bit widths
 * offered by every member survive).  A layer with fixed_bits > 0 keeps only
 * that option (a tie group whose members fix different bits is an error).
 * The solver works on units; results are reported per layer.
 *
 * Exact solver.  Multiple-choice knapsack by Pareto-frontier merging: for
 * each prefix of units keep the non-dominated set of partial states
 * (cost vector, ΣΩ) with back-pointers; merge the next unit's options;
 * prune dominated states.  Exact for real-valued costs (no discretisation).
 * With one active cost dimension this is the classic (cost, ΣΩ) frontier;
 * with two or three active dimensions (e.g. size AND latency) the same
 * merge runs with vector dominance (a dominates b iff every cost ≤ and
 * Ω ≤), which is still exact.  States whose partial cost plus the cheapest
 * completion already exceeds a budget are dropped.
 *
 * Tie-breaking (deterministic).  Units are processed in order of their
 * first layer.  Candidates of a merge step are generated in (parent state
 * index, option index) order, options being sorted by bits ascending; they
 * are stably sorted by (cost[0], cost[1], cost[2], Ω) ascending, and among
 * states with identical cost vector and Ω the first generated survives.
 * The answer at a budget is the feasible state with the smallest Ω; on an
 * exact Ω tie, the one with the smaller cost vector (lexicographic), then
 * the first in frontier order.  A cost c satisfies budget B iff
 * c ≤ B·(1 + 1e-12) (PSQ_BUDGET_RTOL) so that summation round-off never
 * turns the exact "all-4-bit" budget infeasible.  Costs are summed in unit
 * order in both the solver and psq_brute_force, so both see the same
 * floating-point sums; the brute force breaks Ω ties by the smaller cost
 * vector, then by the first configuration enumerated (only configurations
 * with identical Ω AND identical costs can then differ between the two).
 *
 * Frontier cap.  The number of states kept at any step is limited to
 * `max_states` (PSQ_DEFAULT_MAX_STATES when 0): beyond it the solver fails
 * with PS_ERUN and a message, never an out-of-memory crash.
 *
 * The solver is sensitivity-agnostic: HAWQ-V1 ("λ_max/n instead of trace/n")
 * is the same solver on a problem built with the other sensitivity. */
#ifndef PS_QUANT_ALLOC_H
#define PS_QUANT_ALLOC_H

#include <stdint.h>

#include "common/err.h"

#define PSQ_NAME_MAX 64
#define PSQ_MAX_OPTIONS 16
#define PSQ_DEFAULT_MAX_STATES (1 << 20)
#define PSQ_BUDGET_RTOL 1e-12

/* Cost dimensions. */
enum { PSQ_COST_BYTES = 0, PSQ_COST_LATENCY = 1, PSQ_COST_BOPS = 2, PSQ_NCOST = 3 };

typedef struct psq_option {
    int bits;         /* > 0; distinct within a layer */
    double omega;     /* ≥ 0 */
    double bytes;     /* ≥ 0 */
    double latency_s; /* ≥ 0; 0 when not known */
    double bops;      /* ≥ 0; 0 when not known */
} psq_option;

typedef struct psq_layer {
    char name[PSQ_NAME_MAX];
    double params;          /* informational (0 if unknown) */
    int fixed_bits;         /* 0 = free, else the only allowed bits */
    char tie[PSQ_NAME_MAX]; /* "" = untied; equal strings = same bits */
    int n_opt;              /* 1..PSQ_MAX_OPTIONS */
    psq_option opt[PSQ_MAX_OPTIONS];
} psq_layer;

typedef struct psq_problem {
    int n_layers;
    psq_layer *layers; /* owned (free with psq_problem_free) */
} psq_problem;

/* Budgets: a dimension is active iff its budget is finite (use INFINITY or
 * PSQ_NO_BUDGET for "unconstrained"). */
#define PSQ_NO_BUDGET (__builtin_inf())
typedef struct psq_budget {
    double bytes;
    double latency_s;
    double bops;
} psq_budget;

/* All three unconstrained. */
psq_budget psq_budget_none(void);

/* One configuration, evaluated. bits[] has n_layers entries (per layer). */
typedef struct psq_solution {
    int n_layers;
    int *bits; /* owned */
    double omega_sum;
    double bytes;
    double latency_s;
    double bops;
} psq_solution;

/* The Pareto frontier over the active dimensions (for the single-dimension
 * case: cost strictly increasing, Ω strictly decreasing).  Point i has
 * bits[i*n_layers .. +n_layers) (per layer). */
typedef struct psq_frontier {
    int n_points;
    int n_layers;
    double *omega;     /* [n_points] */
    double *bytes;     /* [n_points] */
    double *latency_s; /* [n_points] */
    double *bops;      /* [n_points] */
    int *bits;         /* [n_points * n_layers] */
} psq_frontier;

typedef struct psq_opts {
    long max_states; /* 0: PSQ_DEFAULT_MAX_STATES */
    unsigned dims;   /* psq_frontier_compute only: bit d (1u << PSQ_COST_*) puts
                        dimension d in the frontier even when its budget is
                        infinite; 0: the dimensions with a finite budget */
} psq_opts;

/* ---- problem construction ---- */

/* Allocate n_layers zeroed layers (names "L0", "L1", ...). */
int psq_problem_init(psq_problem *p, int n_layers, ps_err *e);
void psq_problem_free(psq_problem *p);
/* Validate: bits > 0 distinct, finite non-negative Ω and costs, fixed bits
 * offered, tie groups consistent.  Messages name the layer and option. */
int psq_problem_check(const psq_problem *p, ps_err *e);

/* The Ω helper: Ω(l, b) = trace_per_param[l] · delta[l*n_opt + k] where
 * delta is ‖Q_b(W) − W‖² for bits[k]; bytes[l*n_opt + k] is the size of
 * layer l at bits[k] (the caller counts scales).  names may be NULL.
 * latency / bops may be NULL (then 0).  Initialises p. */
int psq_problem_from_deltas(psq_problem *p, int n_layers, int n_opt, const int *bits,
                            const double *trace_per_param, const double *delta,
                            const double *bytes, const double *latency_s, const double *bops,
                            const char *const *names, ps_err *e);

/* Load OMEGA.json (format in sim/quant/README.md).  Errors name the file and
 * the JSON path ("f.json: layers[3].options[1].omega: expected a number"). */
int psq_problem_load_json(psq_problem *p, const char *path, ps_err *e);

/* ---- evaluation ---- */

void psq_solution_free(psq_solution *s);
void psq_frontier_free(psq_frontier *f);

/* Evaluate a per-layer bit vector (checks ties/fixed/offered bits). */
int psq_evaluate(const psq_problem *p, const int *bits, psq_solution *out, ps_err *e);
/* 1 iff the evaluated solution meets every active budget (with PSQ_BUDGET_RTOL). */
int psq_fits(const psq_solution *s, const psq_budget *b);

/* Smallest achievable cost per dimension (each minimised on its own) and the
 * largest (every unit at its most expensive option). */
int psq_cost_range(const psq_problem *p, double min_cost[PSQ_NCOST], double max_cost[PSQ_NCOST],
                   ps_err *e);

/* ---- exact solver ---- */

/* Minimise ΣΩ under the budget.  Infeasible → PS_EINPUT with a message
 * naming the smallest achievable cost of the violated dimension(s).  opts
 * may be NULL. */
int psq_solve(const psq_problem *p, const psq_budget *b, const psq_opts *o, psq_solution *out,
              ps_err *e);

/* The Pareto frontier over the active dimensions (those with a finite
 * budget in `b`, plus o->dims); states beyond a budget are dropped, so an
 * all-infinite budget with o->dims gives the whole frontier.  If no
 * dimension is active, the frontier is over bytes.  Points are sorted by the
 * active costs (lexicographic, in PSQ_COST_* order) ascending; with one
 * active dimension Ω strictly decreases along the list.  b may be NULL
 * (no budgets). */
int psq_frontier_compute(const psq_problem *p, const psq_budget *b, const psq_opts *o,
                         psq_frontier *out, ps_err *e);

/* Exhaustive enumeration over units (reference for tests; refuses more than
 * 2^26 configurations).  Tie-breaking: see the top of this file. */
int psq_brute_force(const psq_problem *p, const psq_budget *b, psq_solution *out, ps_err *e);

/* ---- baselines over the same problem ---- */

/* Uniform: the largest b such that every free unit at bits b (fixed units
 * at their bits) fits; units that do not offer b take their largest offered
 * bits ≤ b (else their smallest). */
int psq_uniform(const psq_problem *p, const psq_budget *b, psq_solution *out, ps_err *e);

/* Random: n_draws configurations, each unit's option uniform among its
 * options (seeded xoshiro256**); of the feasible draws keep the one with the
 * largest bytes (ties: smaller Ω, then earlier draw).  No feasible draw →
 * PS_EINPUT. */
int psq_random(const psq_problem *p, const psq_budget *b, uint64_t seed, int n_draws,
               psq_solution *out, ps_err *e);

/* Greedy: start with every unit at its largest bits; while a budget is
 * violated, move down one step (to its next lower bits) the unit with the
 * smallest ΔΩ / saving, where saving = Σ over the violated dimensions d of
 * Δcost_d / budget_d (steps saving nothing are skipped; ties → lower unit
 * index).  No step left while still infeasible → PS_EINPUT. */
int psq_greedy(const psq_problem *p, const psq_budget *b, psq_solution *out, ps_err *e);

/* Bits as a string of digits ("8888444") when every bits < 10, else
 * comma-separated.  Writes at most cap bytes (NUL-terminated). */
void psq_bits_str(const int *bits, int n, char *buf, int cap);

#endif
