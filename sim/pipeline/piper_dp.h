/* Piper's planner, exactly (Tarnawski et al., NeurIPS'21; the algorithm of
 * msr-fiddle/piper @d7fc8cf, algo.cpp), on Piper's own input: an instance of
 * nodes with TMPCs (tensor-parallel configurations) per tensor-parallel
 * degree t, edges with a communication cost in bytes, a bandwidth, a memory
 * per device, a device count and a number of micro-batches per batch.
 *
 * The cost model (Piper's, reproduced term by term).  A stage is a
 * contiguous set S = I \ J of two successor-closed sets ("ideals" in
 * Piper's code; J inside I), run with tensor-parallel degree t on t*d
 * devices (data-parallel degree d, d dividing mbsInBatch), one TMPC chosen
 * per node.  Its time per sample (a sample is one micro-batch) is
 *   sum_{v in S} [ (E_v(S) / d + 4 (d-1) w_v / (d mbs)) / bandwidth + p_v / d ]
 *   E_v(S) = sum_{edges (u,v), u not in S} 2 (c_uv + sfw_v(u))
 *          + sum_{edges (v,w), w not in S} 2 (c_vw + sbw_v(w))
 * and its memory sum_v (A_v y + B_v) <= maxMemoryPerDevice with
 * y = ceil(s / d), s the sum of the data-parallel degrees of this stage and
 * all later ones (in-flight micro-batches).  The TMPC choice per y is
 * Piper's knapsack heuristic (KNAPSACK_FAST_HEURISTIC: all-fastest if it
 * fits; infeasible if the all-least-memory choice does not; else swaps in
 * increasing order of time gained per byte saved until it fits).  The
 * answer minimises the largest stage time over k <= devices and
 * s <= min(mbs, devices); a sequential pipeline.
 *
 * The DP is Piper's: dp[I][k][s] over ideals I (processed by size), every
 * sub-ideal J, every (t, d), with its FASTER_DP_IMPLEMENTATION update (only
 * the drops of dp[J][k-td][.] are tried) and the monotone pass.  What this
 * file does faster, without changing any value:
 *   - stage sums from per-ideal prefix sums: for a node whose TMPCs at t
 *     share parameter and sync sizes (all of Piper's inputs) the fastest
 *     TMPC does not depend on S or d, so compute, parameters, memory A and
 *     B of S are differences of sums over I and J; the cut term is
 *     X(I) + Y(J) - (edges from outside I straight into J), the last found
 *     by AND-ing two edge bitsets.  Nodes with differing TMPCs, and y
 *     where the all-fastest choice overflows memory, take the literal path
 *     (Piper's loops over S and its knapsack).
 *   - pruning that cannot change a cell: a stage time no better than the
 *     largest cell of a row cannot lower that row; a row of dp[J] equal to
 *     the one with one device fewer gives the same updates one row lower,
 *     which the monotone pass carries up.
 *   - bitset ideals in a hash set, sub-ideals by DFS with stamps (no
 *     per-ideal vectors of all pairs).
 * literal = 1 runs the reference form instead: Piper's per-pair literal
 * getAllTPSsForIdealPair and the straightforward update of every s (the
 * tests compare both, and a brute force over all stage sequences).
 *
 * Units: Piper adds timePerSample to bytes / bandwidth.  In Piper's
 * converted resnet.json and gnmt.json timePerSample is in milliseconds and
 * bytes / bandwidth in seconds, so communication weighs ~1000x too little.
 * time_scale multiplies timePerSample: 1 reproduces Piper (its numbers,
 * in its mixed unit), 1e-3 corrects those two inputs to seconds. */
#ifndef PS_PP_PIPER_DP_H
#define PS_PP_PIPER_DP_H

#include <jansson.h>

#include "common/err.h"
#include "sim/pipeline/planner.h"

typedef struct pp_piper_inst pp_piper_inst;

/* Parse and validate a Piper input document (Piper's checks: ids, edges
 * to known nodes, no duplicate edges, acyclic, non-negative costs, sizes
 * and times, sync entries exactly for the node's edges, distinct TMPC ids;
 * more than 2 TMPCs per (node, t) is refused as Piper's fast knapsack
 * does).  Errors name `what` and the JSON path.  An optional top-level
 * "timeUnit" ("s" or "ms": the unit of timePerSample; plansim's import
 * writes it) is read; other extra keys are ignored, as Piper does. */
pp_piper_inst *pp_piper_from_json(const json_t *doc, const char *what, ps_err *e);
pp_piper_inst *pp_piper_load(const char *path, ps_err *e);
void pp_piper_free(pp_piper_inst *in);

int pp_piper_nnodes(const pp_piper_inst *in);
int pp_piper_nedges(const pp_piper_inst *in);
/* Node i (file order, Piper's renumbering): its id in the file, its name
 * ("" if none). */
int pp_piper_node_id(const pp_piper_inst *in, int i);
const char *pp_piper_node_name(const pp_piper_inst *in, int i);
/* Edge k: renumbered endpoints and bytes per micro-batch. */
void pp_piper_edge(const pp_piper_inst *in, int k, int *src, int *dst, double *bytes);
/* The instance's own settings. */
double pp_piper_bandwidth(const pp_piper_inst *in);
double pp_piper_max_memory(const pp_piper_inst *in);
int pp_piper_max_devices(const pp_piper_inst *in);
int pp_piper_mbs(const pp_piper_inst *in);
/* 1e-3 when "timeUnit" is "ms", else 1. */
double pp_piper_time_unit_s(const pp_piper_inst *in);
/* TMPC l of node i at tensor-parallel degree t (NULL when absent). */
typedef struct pp_piper_tmpc_info {
    const char *id;
    double time_per_sample, parameter_size, memory_a, memory_b;
} pp_piper_tmpc_info;
int pp_piper_ntmpcs(const pp_piper_inst *in, int i, int t);
int pp_piper_tmpc(const pp_piper_inst *in, int i, int t, int l, pp_piper_tmpc_info *out);

typedef struct pp_piper_opts {
    int devices;        /* 0 = the instance's maxDevices */
    double bandwidth;   /* bytes/s; 0 = the instance's */
    double mem_bytes;   /* per device; 0 = the instance's maxMemoryPerDevice */
    int mbs;            /* micro-batches per batch; 0 = the instance's */
    double time_scale;  /* multiplies timePerSample; 0 = 1 (Piper's units) */
    int literal;        /* 1: the reference form (see above) */
    int max_tensor;     /* 0 = any; 1 = no tensor parallelism */
    long max_ideals;    /* 0 = 40,000 (Piper's IDEALS_LIMIT) */
    double time_limit_s; /* 0 = none */
} pp_piper_opts;

typedef struct pp_piper_stage {
    int nnodes;
    int *nodes;   /* renumbered node indices, ascending (owned) */
    int *tmpc;    /* chosen TMPC index per node (owned) */
    int d, t;     /* data- and tensor-parallel degrees (t*d devices) */
    int y;        /* in-flight micro-batches per replica */
    double tps;   /* this stage's time per sample (Piper's unit) */
    double mem_bytes;
} pp_piper_stage;

typedef struct pp_piper_result {
    int feasible;        /* 0: no partition fits (note says why) */
    double tps;          /* the optimum: max stage time per sample */
    int devices_used;    /* k of the plan (least k attaining the optimum) */
    int sum_d;           /* s of the plan */
    int nstages;
    pp_piper_stage *stages; /* in pipeline order (owned) */
    long long ideals, pairs; /* ideals and (ideal, sub-ideal) pairs */
    long long literal_calls; /* pair evaluations that took the literal path */
    double search_time_s;
    char note[256];
} pp_piper_result;

/* Run the DP.  0 with feasible = 0 when nothing fits or a budget is hit;
 * PS_EINPUT for bad options; PS_ERUN when out of memory. */
int pp_piper_solve(const pp_piper_inst *in, const pp_piper_opts *o, pp_piper_result *r,
                   ps_err *e);
void pp_piper_result_free(pp_piper_result *r);

/* Piper's getTPSForResult: re-evaluates a result (stages, TMPC choices)
 * from scratch; INFINITY when out of memory, NaN when not a valid
 * contiguous sequential partition. */
double pp_piper_eval(const pp_piper_inst *in, const pp_piper_opts *o, const pp_piper_result *r);

/* Test oracle: the least max stage time over EVERY sequence of contiguous
 * stages and degrees (t, d), each stage's TMPCs by Piper's knapsack at its
 * exact in-flight count.  Exponential: refuses more than 12 nodes.
 * *best = INFINITY when nothing fits. */
int pp_piper_brute(const pp_piper_inst *in, const pp_piper_opts *o, double *best, ps_err *e);

/* The `piper` planner on a model that carries a Piper instance
 * (pp_model_piper), under o->piper_cost (planner.h): the DP above, its
 * stages turned into a pp_presult over the model's ops (op id "n<id>" for
 * Piper node <id>; a stage of degrees (t, d) gets t*d replicas: plansim's
 * simulator has no tensor parallelism, so the t-way split is simulated as
 * data parallelism), micro-batch o->microbatch (0: the least divisor
 * of the mini-batch that is a multiple of every stage's replica count, else
 * the mini-batch: plansim splits a micro-batch's samples among replicas,
 * Piper deals whole micro-batches (one model sample each) to them), then
 * pp_presult_finish.  objective: Piper's
 * optimum (AUTO: in the file's units, objective_name
 * "piper_time_per_microbatch"; SECONDS: "time_per_microbatch_s").
 * pc gives the devices (and, for SECONDS, the link and memory). */
int pp_piper_plan_model(const pp_model *m, pp_pgraph *g, const pp_pcluster *pc,
                        const pp_popts *o, pp_presult *r, ps_err *e);

#endif
