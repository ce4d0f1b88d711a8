/* Pipeline planners: GraphPipe (series-parallel DP over stage graphs) and its
 * baselines PipeDream (chain DP over antichain states), Piper (DP over
 * downsets) and an exhaustive oracle.
 *
 * Two layers, kept apart so the algorithmic cores are testable on their own:
 *
 *   1. The core works on an abstract planning graph (pp_pgraph: ops with
 *      per-sample activation / output bytes, parameter bytes, forward and
 *      backward time at any per-replica sample count; edges) and an abstract
 *      cluster (pp_pcluster: device count, memory per device, the
 *      stage-boundary link, affine all-reduce times per device count).
 *      pp_planner_run returns a pp_presult: stages as op lists with a
 *      micro-batch size, a replica count and an in-flight count, the
 *      planner's objective and its search time.
 *   2. The adapter builds those from a pp_model and a pp_cluster
 *      (pp_pgraph_from_model, pp_pcluster_from_cluster), turns the result into
 *      a pp_plan with concrete device ids (pp_presult_to_plan), and
 *      pp_plan_point does a whole experiment point: model, cluster, plan,
 *      simulation on the engine, metrics.
 *
 * The shared cost model ("GraphPipe objective", pp_pg_stage_eval): a stage
 * with op set S, micro-batch b (samples), r replicas, mini-batch B:
 *   q          = ceil(b / r)                      samples per replica
 *   compute_s  = sum_{v in S} fwd(v, q) + bwd(v, q)  per micro-batch, one replica
 *   allreduce  = a_r + c_r * param(S)             once per iteration
 *   link_s     = 2 alpha + b (in(S) + out(S)) / beta  per micro-batch
 *                in(S): output bytes/sample of producers outside S feeding S
 *                (each producer once), out(S): of ops in S feeding outside
 *   TPS        = max(compute_s / b + allreduce / B, link_s / b)
 *   memory     = param(S) * weight_mult + act(S) * q * min(B/b, inflight)
 * Compute and transfers overlap (links are separate engine resources), so
 * the stage's time per sample is the larger of the two.  The bottleneck TPS
 * of a plan is the max over its stages; every planner here reports it
 * (pp_presult.tps_s) besides its own objective (pp_presult.objective).
 *
 * Names follow module_verb_object; everything returns int status + ps_err. */
#ifndef PS_PP_PLANNER_H
#define PS_PP_PLANNER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "costmodel/costmodel.h"
#include "sim/pipeline/cluster.h"
#include "sim/pipeline/model.h"
#include "sim/pipeline/plan.h"

/* ------------------------------------------------------------------ */
/* The abstract planning graph                                          */
/* ------------------------------------------------------------------ */

typedef struct pp_pgraph pp_pgraph;

/* Per-op times at `samples` samples on one replica, for all ops at once:
 * fwd_s[v], bwd_s[v] (bwd = input + weight gradient).  Called lazily, once
 * per distinct sample count (the graph caches the answer). */
typedef int (*pp_pg_times_fn)(void *ctx, int samples, double *fwd_s, double *bwd_s, ps_err *e);

pp_pgraph *pp_pgraph_new(int nops, ps_err *e);
void pp_pgraph_free(pp_pgraph *g);
/* Bytes of op v: parameters (held once per replica), activations stashed
 * per sample from forward to backward, output sent per sample to consumers
 * on other stages.  name may be NULL (kept for messages). */
int pp_pgraph_set_op(pp_pgraph *g, int v, const char *name, double param_bytes,
                     double act_bytes_per_sample, double out_bytes_per_sample, ps_err *e);
/* Affine times: fwd(v, q) = fwd_fixed_s + q * fwd_per_sample_s (same for
 * bwd).  Used unless a times callback is set. */
int pp_pgraph_set_op_times(pp_pgraph *g, int v, double fwd_fixed_s, double fwd_per_sample_s,
                           double bwd_fixed_s, double bwd_per_sample_s, ps_err *e);
void pp_pgraph_set_times_fn(pp_pgraph *g, pp_pg_times_fn fn, void *ctx);
int pp_pgraph_add_edge(pp_pgraph *g, int from, int to, ps_err *e);
/* Check (acyclic, no self or duplicate edges, finite non-negative bytes)
 * and build the adjacency; ops keep their indices.  Needed before use. */
int pp_pgraph_finish(pp_pgraph *g, ps_err *e);

int pp_pgraph_nops(const pp_pgraph *g);
int pp_pgraph_nedges(const pp_pgraph *g);
void pp_pgraph_edge(const pp_pgraph *g, int k, int *from, int *to);
const char *pp_pgraph_op_name(const pp_pgraph *g, int v); /* "op<v>" when unnamed */
/* Times of all ops at q samples per replica (cached; owned by g). */
int pp_pgraph_times(pp_pgraph *g, int q, const double **fwd_s, const double **bwd_s, ps_err *e);

/* From a model: bytes from the model's ops, times from pp_model_costs on
 * cm (measured times win).  The model must outlive the graph. */
pp_pgraph *pp_pgraph_from_model(const pp_model *m, const cm_model *cm, ps_err *e);

/* ------------------------------------------------------------------ */
/* The abstract cluster                                                 */
/* ------------------------------------------------------------------ */

#define PP_PC_MAX_DEVICES 1024

typedef struct pp_pcluster {
    int devices;            /* N: devices the plan may use */
    int devices_per_node;   /* for placement (>= 1) */
    double mem_bytes;       /* per device; 0 or INFINITY = unlimited */
    double weight_mult;     /* bytes held per parameter byte: weights + grads +
                               optimizer state (adam: 4, sgd: 2) */
    cm_ab p2p;              /* the stage-boundary link of the cost model */
    /* all-reduce over r devices (r = 1..devices): ar_alpha_s[r] +
     * ar_s_per_byte[r] * bytes; index 0 and 1 are 0. */
    double ar_alpha_s[PP_PC_MAX_DEVICES + 1];
    double ar_s_per_byte[PP_PC_MAX_DEVICES + 1];
} pp_pcluster;

/* Uniform cluster for tests: one link for everything, ring all-reduce
 * 2(r-1)alpha + 2(r-1)/r * bytes/beta. */
void pp_pcluster_uniform(pp_pcluster *pc, int devices, double mem_bytes, double weight_mult,
                         cm_ab link);
/* From a cluster file: `devices` of it (checked against its capacity);
 * p2p = intra-node link when devices fit one node, else inter-node;
 * all-reduce fitted (exactly: the collectives are affine in bytes) from
 * pp_cluster_allreduce_s over devices 0..r-1; weight_mult from the
 * optimizer (2 + state: sgd 2, momentum 3, adam 4). */
int pp_pcluster_from_cluster(const pp_cluster *c, int devices, cm_optimizer opt,
                             pp_pcluster *out, ps_err *e);

/* ------------------------------------------------------------------ */
/* Series-parallel decomposition (sp.c)                                 */
/* ------------------------------------------------------------------ */

typedef enum { PP_SP_LEAF = 0, PP_SP_SERIES = 1, PP_SP_PARALLEL = 2 } pp_sp_kind;

typedef struct pp_sp_node {
    pp_sp_kind kind;
    int op;          /* PP_SP_LEAF: the op */
    int nchildren;   /* series: in precedence order; parallel: by first op */
    int *children;   /* node indices */
    int first, count; /* the node's ops are order[first .. first+count) */
} pp_sp_node;

typedef struct pp_sp_tree {
    int nnodes, root;
    pp_sp_node *nodes;
    int *order;      /* ops in tree order: every node's ops are contiguous */
    int nops;
    /* SP-ization: how many series cuts were forced on non-SP parts (each
     * adds precedence between a downset and the rest of a component), and
     * how many op pairs that were independent became ordered. */
    int rewrites;
    long long ordered_pairs;
} pp_sp_tree;

/* Decompose the transitive reduction of g into a vertex series-parallel
 * tree.  A part that is neither series nor parallel (an "N" inside) is
 * rewritten: it is cut in series at the level downset that orders the
 * fewest independent pairs (ties: the most even op count), which keeps
 * every plan of the rewritten graph valid for the original.  Series nodes
 * are flattened (children are not series), parallel likewise. */
int pp_sp_build(const pp_pgraph *g, pp_sp_tree *t, ps_err *e);
void pp_sp_free(pp_sp_tree *t);
/* Is op set `ops` (n ops) one SP interval: a leaf, or the union of a
 * contiguous range of >= 1 children of one series or parallel node? */
int pp_sp_is_interval(const pp_sp_tree *t, const int *ops, int n);

/* ------------------------------------------------------------------ */
/* Planners                                                             */
/* ------------------------------------------------------------------ */

typedef enum {
    PP_PLANNER_GRAPHPIPE = 1,
    PP_PLANNER_PIPEDREAM = 2,
    PP_PLANNER_PIPER = 3,
    PP_PLANNER_EXHAUSTIVE = 4,
} pp_planner_kind;

const char *pp_planner_name(pp_planner_kind k);
pp_planner_kind pp_planner_parse(const char *s); /* 0 if unknown */

/* PipeDream's state space. */
enum { PP_PD_COST_PLANSIM = 0, PP_PD_COST_PIPEDREAM = 1 };

typedef enum {
    PP_PD_STATES_AUTO = 0,      /* antichain DAG when it has <= pd_auto_states
                                   states, else the linearized chain */
    PP_PD_STATES_ANTICHAIN = 1, /* optimizer_graph_hierarchical.py: every downset
                                   reachable from the first source */
    PP_PD_STATES_TOPO = 2,      /* prefixes of one topological order (the op
                                   order): a chain of n+1 states */
} pp_pd_states;

typedef struct pp_popts {
    pp_planner_kind planner;
    int minibatch;          /* B (samples per iteration), >= 1 */
    int microbatch;         /* b; 0 = every power of two dividing B (and B) */
    /* How a planner picks b when microbatch = 0: by its predicted iteration
     * time (m + depth - 1) * b * TPS, m = B/b.  (pp_plan_point can instead
     * simulate every candidate.) */

    /* graphpipe */
    int gp_max_stage_devices;   /* 0 = no cap on replicas per stage */
    int gp_no_join_merge;       /* 1: stages are SP intervals only (no join
                                   absorption, see the search space) */

    /* pipedream.  pd_cost selects the cost model:
     *   PP_PD_COST_PLANSIM (default): PipeDream's search space as the GraphPipe
     *     paper ran it — the model linearized into its operator sequence,
     *     every contiguous partition with replication, 1F1B — scored with the
     *     shared cost model and 1F1B memory (in-flight = stages after + 1),
     *     like GraphPipe: the difference between the two is then only the
     *     stage graph.  It is GraphPipe's DP on a one-series-node tree.
     *   PP_PD_COST_PIPEDREAM: optimizer_graph_hierarchical.py's own cost model
     *     and state space (below); its bottleneck stage time is the objective.
     * The remaining pd_ options apply to PP_PD_COST_PIPEDREAM. */
    int pd_cost;
    pp_pd_states pd_states;
    long pd_auto_states;        /* AUTO threshold; 0 = 20000 */
    long pd_max_states;         /* antichain enumeration budget; 0 = 2,000,000 */
    int pd_activation_comm;     /* 1: add 2*act/(BW*m') at stage inputs/outputs
                                   (PipeDream: only with --activation_compression_ratio) */
    int pd_memory_constraint;   /* 1: its stash check ceil((M-m)/m')*(act+w) <= mem */
    int pd_straight;            /* 1: no replication (--straight_pipeline) */
    double pd_bandwidth_Bps;    /* 0 = pcluster p2p beta */
    double pd_memory_bytes;     /* 0 = pcluster mem_bytes */
    int pd_use_fewer_machines;  /* --use_fewer_machines */
    int pd_reference;           /* 1: plain O(S^2 M^2) loops without the
                                   crossing sweep and pruning (tests compare) */
    int pd_first_source_only;   /* 1: PipeDream's literal start, the first source
                                   only: other sources join only through a
                                   consumer (its quirk on multi-input graphs);
                                   0: states start from every source, as if a
                                   zero-cost input fed them all */
    int pd_window;              /* PipeDream's own cost, default settings only (no
                                   memory, comm, straight, fewer-machines):
                                   0 = auto (the C-window search when there are
                                   more than 20000 states), 1 = always, -1 = never.
                                   The same optimum (planner_pipedream.c) */

    /* piper */
    long piper_max_ideals;      /* downsets budget; 0 = 40,000 (Piper's IDEALS_LIMIT) */
    long long piper_max_pairs;  /* (ideal, sub-ideal) pairs budget; 0 = 50,000,000 */
    double piper_bandwidth_Bps; /* 0 = pcluster p2p beta */
    int piper_cost;             /* PP_PIPER_COST_*: which cost model piper uses
                                   (sim/pipeline/piper_dp.h) */

    /* exhaustive */
    int ex_sp_aligned;          /* 1: only plans whose stages are SP intervals */
    int ex_max_ops;             /* 0 = 14 */
    double ex_time_limit_s;     /* 0 = 60 */

    /* any planner: give up after this (0 = none).  One limit for every
     * micro-batch size of pp_planner_run (and of a pp_plan_point, searches
     * and simulations together); at the limit graphpipe returns the least
     * stage time it has proven feasible (a plan, noted as not proven
     * optimal), the other planners no plan for the size being searched */
    double time_limit_s;
} pp_popts;

void pp_popts_default(pp_popts *o, pp_planner_kind k, int minibatch);

/* piper_cost: on a model imported from Piper's input (it carries the Piper
 * instance: pp_model_piper), AUTO runs Piper's own DP exactly as Piper does
 * (TMPCs, tensor and data parallelism, the file's bandwidth, memory and
 * micro-batch count, timePerSample in the file's unit: Piper's numbers);
 * SECONDS runs the same DP with timePerSample corrected to seconds and the
 * cluster's stage link and memory per device; PLANSIM ignores the instance
 * and uses plansim's shared formula (planner_piper.c).  Models without a
 * Piper instance always use PLANSIM. */
enum { PP_PIPER_COST_AUTO = 0, PP_PIPER_COST_PLANSIM = 1, PP_PIPER_COST_SECONDS = 2 };

typedef struct pp_pstage {
    int nops;
    int *ops;          /* ascending op indices (owned) */
    int microbatch;    /* samples per micro-batch, whole stage */
    int replicas;      /* data-parallel degree */
    int inflight;      /* the planner's in-flight count (memory) */
    double tps_s;      /* the shared cost model's TPS of this stage */
    double mem_bytes;  /* its per-device memory under that model */
} pp_pstage;

typedef struct pp_presult {
    pp_planner_kind planner;
    int feasible;            /* 0: no plan (note says why) */
    int microbatch;          /* b of the plan */
    int nstages;
    pp_pstage *stages;       /* topological order (owned) */
    int depth;               /* longest stage path, in stages */
    int devices_used;
    double tps_s;            /* bottleneck TPS under the shared cost model */
    double objective;        /* the planner's own objective, in its units: */
    const char *objective_name; /* graphpipe/exhaustive/piper: "time_per_sample_s"
                                   pipedream: "bottleneck_stage_time_s" (per
                                   micro-batch of b samples, after replication) */
    double objective_tps_s;  /* the objective converted to time per sample */
    double predicted_iteration_s; /* (m + depth - 1) * b * tps_s */
    double search_time_s;    /* wall time of the search (all candidate b) */
    long long states;        /* DP states / antichain states / ideals explored */
    long long work;          /* inner-loop evaluations (for scaling reports) */
    int sp_rewrites;         /* graphpipe: SP-ization cuts */
    int pd_states_used;      /* pipedream: PP_PD_STATES_ANTICHAIN or _TOPO */
    int sequential;          /* a sequential pipeline (pipedream, piper): the
                                stages form a chain in their order, in-flight
                                p - i + 1 (pp_presult_finish sets it) */
    int budget_exceeded;     /* the state space outgrew its budget (the same
                                for every micro-batch size) */
    double gap_vs_sp;        /* exhaustive (all convex): best SP-aligned TPS /
                                best TPS - 1; NaN otherwise */
    char note[512];          /* why infeasible / budget messages / fallbacks */
} pp_presult;

/* Run a planner.  Returns 0 with feasible = 0 when no plan fits (memory,
 * budget: the note says which); PS_EINPUT for bad options or a graph the
 * planner cannot take (exhaustive over its op limit), PS_ERUN for failures
 * (out of memory).  g is non-const only for its time cache. */
int pp_planner_run(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, pp_presult *r,
                   ps_err *e);
void pp_presult_free(pp_presult *r);

/* The shared cost model for one stage (see the top of this file).
 * inflight <= 0 means 1.  *mem_bytes may be NULL. */
int pp_pg_stage_eval(pp_pgraph *g, const pp_pcluster *pc, const int *ops, int nops,
                     int microbatch, int replicas, int minibatch, int inflight, double *tps_s,
                     double *mem_bytes, ps_err *e);
/* Fill each stage's tps_s, mem_bytes and (when 0) inflight by GraphPipe's
 * rule on the stage DAG implied by g's edges, then r->tps_s, depth,
 * devices_used, predicted_iteration_s.  Used by every planner. */
int pp_presult_finish(pp_pgraph *g, const pp_pcluster *pc, int minibatch, pp_presult *r,
                      ps_err *e);

/* ------------------------------------------------------------------ */
/* Adapter: model + cluster -> plan                                     */
/* ------------------------------------------------------------------ */

/* Turn a core result into a pp_plan over model m on devices 0..devices-1
 * of c: largest stages first, a stage of r >= g replicas (g per node) on
 * whole nodes, a smaller one inside one node when one has room (so its
 * all-reduce stays on the node's links, as the cost model assumes); the
 * planner name, objective and search time recorded; finalized. */
pp_plan *pp_presult_to_plan(const pp_presult *r, const pp_model *m, const pp_cluster *c,
                            int minibatch, int devices, ps_err *e);

/* ------------------------------------------------------------------ */
/* One experiment point (for experiments/study_pipeline.c)              */
/* ------------------------------------------------------------------ */

typedef struct pp_point_spec {
    /* model: a JSON file, or a built-in generator with knobs */
    const char *model_path;    /* non-NULL: load it (builtin ignored) */
    const char *builtin;       /* "mmt" | "dlrm" | "candle-uno" | "transformer" */
    const json_t *knobs;       /* generator knobs (NULL = paper defaults) */
    int branches;              /* > 0: overrides the generator's branch knob
                                  ("branches") — Exp 3 */
    const char *cluster;       /* built-in name or JSON path */
    int devices;               /* N */
    pp_planner_kind planner;
    int minibatch;             /* B */
    int microbatch;            /* 0 = choose (see select_by_sim) */
    pp_planner_kind microbatch_from; /* non-0 (with microbatch 0): first run that
                                  planner on the same inputs and plan with the
                                  micro-batch it chose (GraphPipe's ablation:
                                  "Parallel" = GraphPipe at SPP's b) */
    int select_by_sim;         /* microbatch 0: 1 = simulate every candidate
                                  b's plan, keep the best simulated throughput
                                  (the paper swept b and kept the best);
                                  0 = the planner's predicted iteration time */
    cm_optimizer optimizer;    /* memory: weights + grads + state */
    pp_schedule schedule;      /* simulated schedule; 0 = 1F1B */
    const pp_popts *opts;      /* planner knobs (NULL = defaults) */
    const char *plan_out;      /* non-NULL: save the plan there */
    const char *trace_out;     /* non-NULL: Chrome trace of the simulation */
    /* optional outputs for callers that want the details (the CLI): */
    pp_plan_result *sim_detail; /* the chosen plan's simulation (pp_plan_result_free) */
    pp_plan **plan_detail;      /* the chosen plan (pp_plan_free) */
} pp_point_spec;

typedef struct pp_point_result {
    int feasible;                 /* a plan was found (0: reason in note) */
    double throughput_samples_per_s; /* simulated on the engine (0 on OOM) */
    double iteration_s;           /* simulated */
    double objective;             /* the planner's own objective */
    const char *objective_name;   /* its unit (static string) */
    double objective_tps_s;       /* ... as time per sample */
    double predicted_tps_s;       /* bottleneck TPS, shared cost model */
    double predicted_throughput_samples_per_s; /* B / predicted_iteration_s */
    double search_time_s;         /* planner wall time (all candidate b) */
    double sim_wall_s;            /* simulation wall time (all simulations) */
    int num_stages, depth, devices_used, microbatch;
    int microbatch_from_value;    /* the other planner's b (microbatch_from) */
    double microbatch_from_throughput_samples_per_s; /* and its throughput */
    long long states;
    int sp_rewrites;
    double bubble_fraction;
    double peak_device_bytes, mem_capacity_bytes;
    int oom;
    double oom_shortfall_bytes;
    int model_ops, model_edges;
    char note[512];
} pp_point_result;

/* Build the model, load the cluster, plan, simulate; all metrics.  0 also
 * when no plan exists (feasible = 0, NaN metrics, note).  PS_EINPUT for bad
 * specs (unknown builtin, knob, cluster, too many devices). */
int pp_plan_point(const pp_point_spec *s, pp_point_result *r, ps_err *e);

#endif
