/* Internals shared by the planner files (planner*.c, sp.c).  Not part of
 * the public interface: planner.h is. */
#ifndef PS_PP_PLANNER_IMPL_H
#define PS_PP_PLANNER_IMPL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim/pipeline/planner.h"

/* ---- bitsets over ops ---- */
typedef uint64_t pp_word;
#define PP_BITS_WORDS(n) (((size_t)(n) + 63) / 64)

static inline void pp_bit_set(pp_word *b, int i) { b[i >> 6] |= (pp_word)1 << (i & 63); }
static inline void pp_bit_clr(pp_word *b, int i) { b[i >> 6] &= ~((pp_word)1 << (i & 63)); }
static inline int pp_bit_get(const pp_word *b, int i) { return (int)((b[i >> 6] >> (i & 63)) & 1); }

/* An open-addressing hash set of bitsets kept in the caller's array (all:
 * consecutive bitsets of `words` words each); a slot holds an index into it.
 * PipeDream's antichain states and Piper's downsets both use it. */
typedef struct pp_bitset_set {
    size_t cap, n;
    int *slot; /* index into all, or -1 */
} pp_bitset_set;
/* Index of the bitset equal to b, or -1. */
int pp_bitset_set_find(const pp_bitset_set *h, const pp_word *all, size_t words,
                       const pp_word *b);
/* Add bitset idx of all (not already present). */
int pp_bitset_set_insert(pp_bitset_set *h, const pp_word *all, size_t words, int idx,
                         const char *who, ps_err *e);
void pp_bitset_set_free(pp_bitset_set *h);

/* ---- ideals (the Piper DPs: planner_piper.c, piper_dp.c; ideals.c) ---- */
/* The successor-closed op sets of a DAG of nv ops given as CSR adjacency
 * (succ[succ_off[v] .. succ_off[v+1]) the ops after v, pred likewise),
 * grown by BFS from the empty set, so they come sorted by size; with their
 * immediate sub-ideals I - v (v in I with no predecessor in I) as CSR.
 * *over = 1, and no sub-ideals, when there are more than `limit`.  p is
 * overwritten; pp_ideals_free releases it in every case. */
typedef struct pp_ideals {
    size_t n, words;
    pp_word *bits; /* n bitsets of `words` words */
    int *size;     /* ops in each */
    int *sub_off, *sub;
} pp_ideals;
int pp_ideals_enum(int nv, const int *succ_off, const int *succ, const int *pred_off,
                   const int *pred, long limit, pp_ideals *p, int *over, ps_err *e);
void pp_ideals_free(pp_ideals *p);

typedef struct pp_times_entry {
    int q;
    double *fwd, *bwd;
} pp_times_entry;

struct pp_pgraph {
    int n;
    char **names;
    double *param, *act, *out;            /* bytes: per op, per sample, per sample */
    double *ffix, *fps, *bfix, *bps;      /* affine times */
    pp_pg_times_fn fn;
    void *ctx;
    void (*ctx_free)(void *); /* owned ctx (pp_pgraph_from_model) */
    int nedges, cap_edges;
    int *ef, *et;                         /* edges as added */
    int finished;
    /* after finish (CSR, sorted) */
    int *succ_off, *succ, *pred_off, *pred;
    int *topo;                            /* stable topological order */
    int *topo_pos;                        /* position of each op in topo */
    /* strict ancestors / descendants, lazily (pp_pg_closure) */
    pp_word *anc, *desc;
    size_t words;
    /* time cache */
    pp_times_entry *tc;
    int ntc, cap_tc;
    /* scratch for membership tests */
    int *stamp;
    int stamp_id;
};

/* Transitive closure bitsets (anc[v*words..], desc[v*words..]). */
int pp_pg_closure(pp_pgraph *g, ps_err *e);

/* Sum over ops of fwd+bwd at q, in ascending order of the given list. */
int pp_pg_compute_s(pp_pgraph *g, const int *ops, int nops, int q, double *out, ps_err *e);
/* in(S) + out(S) bytes per sample (see planner.h). */
double pp_pg_boundary_bytes(pp_pgraph *g, const int *ops, int nops);
/* Sum of param / act bytes over ops. */
double pp_pg_sum_param(const pp_pgraph *g, const int *ops, int nops);
double pp_pg_sum_act(const pp_pgraph *g, const int *ops, int nops);

/* The shared stage formula from precomputed sums (so the DP and the
 * evaluator agree): compute_s per micro-batch on one replica. */
double pp_tps_formula(const pp_pcluster *pc, double compute_s, double param_bytes,
                      double boundary_bytes, int microbatch, int replicas, int minibatch);
/* Largest in-flight count that fits in memory (INT32_MAX when act = 0, -1
 * when the weights alone overflow). */
int pp_maxinflight_formula(const pp_pcluster *pc, double param_bytes, double act_bytes_per_sample,
                           int q);
static inline int pp_ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Candidate micro-batch sizes for minibatch B: powers of two dividing B,
 * then B (if not a power of two).  Returns the count (<= 32). */
int pp_microbatch_candidates(int minibatch, int fixed, int *out);

/* A growable result builder. */
int pp_presult_add_stage(pp_presult *r, const int *ops, int nops, int microbatch, int replicas,
                         int inflight, ps_err *e);
void pp_presult_clear_stages(pp_presult *r);

/* Planner entry points (one microbatch each; pp_planner_run loops over b
 * and picks the best predicted iteration time). */
int pp_plan_graphpipe_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                        pp_presult *r, ps_err *e);
/* GraphPipe's DP on the model linearized into its topological op order: a
 * sequential pipeline's search space (PipeDream with plansim's cost model). */
int pp_plan_linear_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                     pp_presult *r, ps_err *e);
int pp_plan_pipedream_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                        pp_presult *r, ps_err *e);
int pp_plan_piper_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                    pp_presult *r, ps_err *e);
int pp_plan_exhaustive_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                         pp_presult *r, ps_err *e);

#endif
