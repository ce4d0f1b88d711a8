/* Plans: a DAG of pipeline stages, each a convex set of model ops with a
 * micro-batch size, a set of devices (data-parallel replicas inside the
 * stage) and an in-flight count; one schedule for the whole plan.  JSON in
 * and out, validation, memory accounting, and simulation on the shared
 * engine (the plan is compiled to a task graph by sim/pipeline/schedule.c).
 *
 * JSON (sim/pipeline/README.md, "Plan format"):
 *   {"model": "mmt.json" | {inline model},      paths relative to the plan
 *    "cluster": "summit" | "clusters/x.json" | {inline cluster},
 *    "minibatch": 128, "schedule": "1f1b", "chunks": 1, "optimizer": "adam",
 *    "planner": "graphpipe", "predicted_time_per_sample_s": 1e-3,
 *    "search_time_s": 0.01,                     informational, kept on save
 *    "stages": [{"ops": ["x", "l0", ...], "microbatch": 4,
 *                "devices": [0, 1], "inflight": 3}, ...]}
 * "inflight" is optional (0 / absent = derived, see pp_plan_inflight).
 * Stage edges are not written: they follow from the op edges (C2).  On load,
 * stages are put in a topological order of the stage DAG. */
#ifndef PS_PP_PLAN_H
#define PS_PP_PLAN_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "costmodel/costmodel.h"
#include "sim/pipeline/cluster.h"
#include "sim/pipeline/model.h"
#include "sim/pipeline/schedule.h"

typedef struct pp_stage {
    int nops;
    int *ops;        /* model op indices, ascending (owned) */
    int microbatch;  /* b_i: samples per micro-batch (whole stage, all replicas) */
    int ndevices;    /* data-parallel degree */
    int *devices;    /* cluster device ids, ascending (owned) */
    int inflight;    /* warm-up forwards / micro-batches in flight; 0 = derived */
} pp_stage;

typedef struct pp_stage_edge {
    int from, to;    /* stage indices */
} pp_stage_edge;

typedef struct pp_plan {
    int nstages;
    pp_stage *stages;        /* owned */
    int nedges;              /* filled by pp_plan_finalize */
    pp_stage_edge *edges;    /* ascending (from, to), owned */
    int minibatch;           /* samples per iteration B; m_i = B / b_i */
    pp_schedule schedule;
    int chunks;              /* v for PP_INTERLEAVED, else 1 */
    cm_optimizer optimizer;
    int sequential;          /* 1: a sequential pipeline (PipeDream, Piper
                                plans): the stages run as a chain in their
                                (topological) order, stage i -> i+1, and
                                boundary i carries every activation crossing
                                it; in-flight p - i + 1.  JSON "sequential" */
    int shared_devices;      /* 1: stages may share devices (C3 relaxed): the
                                stages on one device run on ONE stream (the
                                device's, keyed by each stage's first device)
                                and one memory pool; JSON "shared_devices" */
    char planner[32];        /* who made it ("" = by hand) */
    double predicted_tps_s;  /* the planner's objective: time per sample of the
                                bottleneck stage (NaN if none) */
    double search_time_s;    /* NaN if none */
    char *model_ref;         /* as written in the JSON (NULL = inline / none) */
    char *cluster_ref;
} pp_plan;

/* A plan with n zeroed stages; schedule 1F1B, chunks 1, optimizer adam. */
pp_plan *pp_plan_new(int nstages, ps_err *e);
void pp_plan_free(pp_plan *p);
/* Copy ops and devices into stage i (sorted on the way in). */
int pp_plan_set_stage(pp_plan *p, int i, const int *ops, int nops, int microbatch,
                      const int *devices, int ndevices, int inflight, ps_err *e);
/* Derive the stage edges from the model, put stages in topological order
 * (stable), and check the structure:
 *   - every op in exactly one stage (C1 partition); every stage non-empty
 *   - each stage convex: no path leaves it and comes back (C1)
 *   - the stage graph is acyclic (C2 holds by construction)
 *   - device sets disjoint, non-empty, within the cluster (C3); for
 *     PP_INTERLEAVED: a chain of p·v stages, stage j on stage (j mod p)'s
 *     devices, the p device sets disjoint
 *   - microbatch >= 1 and divides minibatch; b_i/b_j or b_j/b_i an integer
 *     across every stage edge; ZB-H1 and interleaved need one b everywhere
 * Errors name the stage and the op.  cluster may be NULL (device ids are
 * then only checked for disjointness). */
int pp_plan_finalize(pp_plan *p, const pp_model *m, const pp_cluster *c, ps_err *e);

/* In-flight micro-batches of stage i (its warm-up forwards): the stage's own
 * `inflight` when > 0, else GraphPipe's rule: 1 for a sink; otherwise
 * 1 + max over successors t of ceil(inflight_t · b_t / b_i) (micro-batches
 * of stage i that cover what t holds), i.e. the longest path to a sink in
 * stages when every b is equal.  After pp_plan_finalize. */
int pp_plan_inflight(const pp_plan *p, int stage);
/* All of them into f[nstages] at once (O(stages + edges)). */
int pp_plan_inflight_all(const pp_plan *p, int *f);
/* Micro-batches stage i runs per iteration: minibatch / b_i. */
int pp_plan_microbatches(const pp_plan *p, int stage);
/* Samples one replica of stage i processes per micro-batch: ceil(b_i / dp_i)
 * (the largest shard sets the time). */
int pp_plan_replica_samples(const pp_plan *p, int stage);

/* ---- JSON ---- */

/* Load a plan; when model_out / cluster_out are non-NULL, also load what it
 * references (paths relative to the plan's folder, or inline objects) and
 * finalize the plan against them.  The caller frees *model_out. */
pp_plan *pp_plan_load(const char *path, pp_model **model_out, pp_cluster *cluster_out,
                      ps_err *e);
/* Parse only (model needed to resolve op ids); not finalized. */
pp_plan *pp_plan_from_json(const json_t *doc, const char *what, const pp_model *m, ps_err *e);
/* model_ref / cluster_ref: written as references when non-NULL; otherwise
 * the model / cluster is embedded when given, else left out. */
json_t *pp_plan_to_json(const pp_plan *p, const pp_model *m, const pp_cluster *c);
int pp_plan_save(const pp_plan *p, const pp_model *m, const pp_cluster *c, const char *path,
                 ps_err *e);

/* ---- memory ---- */

/* What one device of a stage holds.  Optimizer state per fp32 parameter
 * byte: sgd 0, momentum 1, adam 2 (m and v); gradients 1; so weights +
 * grads + state = param_bytes x (2 + state). */
typedef struct pp_stage_mem {
    double weights_bytes, grads_bytes, optimizer_bytes;
    double activations_bytes; /* per micro-batch on one replica x in-flight */
    double total_bytes;
    int inflight;             /* micro-batches (or chunk activations / v) counted */
} pp_stage_mem;
/* The schedule's closed-form peak of micro-batches held by stage i:
 *   GPipe        m_i
 *   1F1B         min(m_i, inflight_i)  (chain stage i of p: min(m, p-i+1))
 *   ZB-H1        min(m, D), D = the largest inflight (chain: min(m, p) on
 *                every stage: warm-up p-i+1 plus the i-1 deferred W)
 *   interleaved  chunk activations on device r (0-based) of p, v > 1:
 *                min(m v, 2(p-r-1) + (v-1)p + 1); m v when m = p; v = 1 is
 *                1F1B.  In micro-batch units: p + (p-1)/v on the first
 *                device, i.e. 1F1B's p times 1 + (p-1)/(p v).
 * After pp_plan_finalize. */
int pp_stage_inflight_peak(const pp_plan *p, int stage);
/* Static memory and the schedule's activation peak for stage i, from the
 * per-op costs at pp_plan_replica_samples (costs[] indexed by op, for that
 * stage's replica batch).  The peak is the closed form of the schedule
 * (GPipe m_i, 1F1B min(m_i, inflight), interleaved and ZB-H1 as in
 * schedule.h); the simulation measures it. */
int pp_stage_memory(const pp_plan *p, int stage, const pp_op_cost *costs, pp_stage_mem *out);

/* Eq. 2 before simulating: every device's weights + gradients + optimizer
 * state + the schedule's closed-form activation peak (pp_stage_memory, at
 * each stage's replica batch) within the cluster's memory.  0 when all fit;
 * PS_ERUN naming the device with the largest shortfall, its stage, what it
 * needs and has (*device / *shortfall_bytes set when non-NULL; -1 / 0 when
 * all fit).  cm NULL = roofline of the cluster's device. */
int pp_plan_check_memory(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                         const cm_model *cm, int *device, double *shortfall_bytes, ps_err *e);

/* ---- simulation ---- */

typedef struct pp_plan_result {
    int nstages, ndevices;       /* ndevices: devices the plan uses */
    int microbatches;            /* of the first stage */
    double iteration_s;          /* makespan: first start to last end, incl. all-reduce */
    double throughput_samples_per_s; /* minibatch / iteration_s (0 on OOM) */
    double ideal_s;              /* busiest device group's compute time */
    double bubble_fraction;      /* 1 - sum busy / (stages x makespan) */
    double bubble_ratio;         /* (makespan - ideal) / ideal */
    double allreduce_s;          /* longest gradient all-reduce of a stage */
    double p2p_bytes;            /* bytes moved between stages per iteration */
    double *stage_busy_s;        /* [nstages] compute time per replica */
    double *stage_allreduce_s;   /* [nstages] */
    int *stage_peak_inflight;    /* [nstages] simulated */
    double *stage_peak_bytes;    /* [nstages] simulated per-device peak (static + activations) */
    double peak_device_bytes;    /* max over devices */
    int peak_device;             /* a device that reaches it */
    double mem_capacity_bytes;   /* per device */
    int oom;                     /* 1 when a device ran out of memory */
    int oom_device, oom_stage;   /* the first device that overflowed, its stage */
    double oom_shortfall_bytes, oom_time_s;
    uint64_t events;
    double sim_wall_s;           /* build + run */
} pp_plan_result;

void pp_plan_result_free(pp_plan_result *r);

typedef struct pp_sim_opts {
    const cm_model *cm;     /* NULL = roofline of the cluster's device */
    const char *trace_path; /* non-NULL: Chrome trace written there */
    int no_memory_limit;    /* 1: never stop on OOM (report peaks only) */
    /* [nstages] or NULL: stage -> device (worker) id >= 0.  Stages mapped to
     * one id share one exclusive stream and one memory pool (as under the
     * plan's shared_devices, which maps each stage to its first device);
     * interleaved chunks take their group's (stage s % p) entry. */
    const int *device_of_stage;
    double task_overhead_s; /* added to every F, B and W (per-task dispatch cost) */
} pp_sim_opts;

/* Compile the plan to the engine (finalized plan), run it, fill *out.
 * Returns 0 also when the plan runs out of memory (out->oom = 1, with the
 * device, its stage and the shortfall; out->throughput 0); PS_EINPUT for a
 * bad plan or a schedule that deadlocks (names the tasks); PS_ERUN
 * otherwise.  opts may be NULL. */
int pp_plan_simulate(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                     const pp_sim_opts *opts, pp_plan_result *out, ps_err *e);

/* The lower level for timelines: build (not run) the task graph of a plan;
 * then pp_sim_run / pp_sim_des (schedule.h) and pp_sim_plan_result. */
pp_sim *pp_sim_plan(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                    const pp_sim_opts *opts, ps_err *e);
int pp_sim_plan_result(const pp_sim *s, pp_plan_result *out, ps_err *e);

#endif
