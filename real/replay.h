/* Pipeline replay: a finalized plan executed FOR REAL (real GEMMs,
 * activations, copies between stages, a loss, backward, SGD) on worker
 * threads pinned to cores, in exactly the simulator's per-device task
 * order, measured beside the simulator's prediction for the same plan
 * costed from a profile database measured on the same device (docs/replay.md).
 *
 *   plan + model ──► calibration: every (op, micro-batch size, phase) the plan
 *                    runs, timed in isolation on one pinned worker (median)
 *                    ──► profile DB (profile/db.h format) + per-op measured times
 *                ──► pp_plan_simulate (devices = workers, stages share them,
 *                    links = the measured handoff α) ──► predicted timeline
 *                ──► per-worker task lists in the simulator's start order
 *                ──► workers execute them, waiting on producer tasks ──► measured
 *
 * Supported model kinds (fp32 only): input (synthetic data), gemm (x [b·m, k]
 * times a weight [k, n]), elementwise relu | gelu | tanh | sigmoid (unary;
 * `add` / `mul` sum or multiply their inputs), block of those parts in
 * sequence, concat (per-sample copy of its inputs).  Anything else
 * (conv2d, attention, reduction, embedding_bag, opaque, ...) is PS_EINPUT
 * naming the op and kind.  Ops with no consumers get an MSE loss against a
 * fixed target.  An input whose size per sample does not match what the
 * consumer expects is tiled / truncated cyclically (its gradient summed back).
 * Several inputs to a non-concat op are summed. */
#ifndef PS_REAL_REPLAY_H
#define PS_REAL_REPLAY_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "sim/pipeline/plan.h"

typedef struct ps_replay_opts {
    const char *device;   /* "cpu" (default; NULL = cpu) | "cuda" (real/replay_cuda.c: one
                             CUDA stream per worker; workers default to the plan devices) */
    int iterations;       /* measured iterations (0 = 5) */
    int warmup;           /* unmeasured iterations first (< 0 = 0; 0 = default 2 unless
                             warmup_set) */
    int warmup_set;       /* 1: take `warmup` literally (also 0) */
    int workers;          /* 0 = min(#distinct plan devices, online cores) */
    const char *db_path;  /* NULL = calibrate now; else cost from this profile DB
                             (cm_model_from_db) */
    const char *db_out;   /* write the calibration DB here (NULL = a temp file, removed) */
    double max_seconds;   /* refuse when warmup+iterations predicted time exceeds
                             (0 = 120) */
    int calib_reps;       /* repetitions per calibrated point (0 = 11), after 2 warm-ups */
    double lr;            /* SGD learning rate (0 = 0.03); the gradient's global norm is clipped to 1 */
    unsigned long seed;   /* weights, inputs, targets (0 = 1) */
    int no_pin;           /* 1: do not pin workers to cores (tests) */
    int keep_weights;     /* 1: copy the final weights into the result */
    int quiet;            /* 1: no progress lines */
    int exact_iterations; /* 1: run exactly warmup + iterations (tests that compare the
                             weights); 0: measure until `iterations` undisturbed ones,
                             at most 4x as many (docs/replay.md, "Noise") */
    int calib_corun;      /* 1: calibrate with a GEMM loop running on the next core
                             (env PLANSIM_REPLAY_CORUN=0|1 overrides) */
} ps_replay_opts;

/* One task of the replay: a stage's F, B (input+weight gradient, or input
 * only under ZB-H1) or W for a micro-batch.  Times relative to the start of
 * the iteration (predicted: the simulator's timeline; measured: the median
 * iteration's CLOCK_MONOTONIC stamps). */
typedef struct ps_replay_task {
    int worker, stage, kind, mb, chunk; /* kind: pp_op_kind (PP_OP_FWD, ...) */
    int seq;                            /* position in its worker's order */
    double pred_start_s, pred_end_s;
    double meas_start_s, meas_end_s;
} ps_replay_task;

typedef struct ps_replay_result {
    char device[96];          /* "cpu: <model name>, 1 BLAS thread per worker" */
    int nstages, workers, minibatch, iterations, warmup;
    int *stage_worker;        /* [nstages] */
    double predicted_iteration_s, measured_iteration_s; /* measured: median */
    double rel_err;           /* (predicted - measured) / measured */
    double throughput_predicted, throughput_measured;   /* samples / s */
    double *iteration_s;      /* [iterations] every measured iteration */
    double *loss;             /* [warmup + iterations] loss of each iteration */
    double loss_first, loss_last;
    double *stage_pred_busy_s, *stage_meas_busy_s;       /* [nstages] */
    int ntasks;
    ps_replay_task *tasks;    /* [ntasks] worker-major, each worker in its order */
    int *dep_off, *deps;      /* CSR: producers of task i are deps[dep_off[i] .. dep_off[i+1]) */
    int **exec_order;         /* [workers] task indices in the order the worker ran
                                 them (last iteration); lengths = tasks per worker */
    int *worker_ntasks;       /* [workers] */
    double link_alpha_s, link_bytes_per_s; /* the CPU cluster's link used for prediction */
    double calib_wall_s, replay_wall_s;
    int clean_iterations;     /* measured iterations in which every worker had its core
                                 (thread CPU >= 97% of wall); the median is over these
                                 (over all when none) */
    double cpu_fraction;      /* thread CPU time / wall time over the median iteration's
                                 tasks: < 1 when other processes took the cores */
    size_t nweights;
    float *weights;           /* keep_weights: every gemm weight, op order, row-major */
} ps_replay_result;

/* Replay a finalized plan of model m (pp_plan_load with model/cluster). */
int ps_replay_run(const pp_plan *p, const pp_model *m, const ps_replay_opts *o,
                  ps_replay_result *out, ps_err *e);
/* Load PLAN.json (model and cluster refs resolved) and replay it. */
int ps_replay_plan_file(const char *plan_path, const ps_replay_opts *o, ps_replay_result *out,
                        ps_err *e);
void ps_replay_result_free(ps_replay_result *r);

/* The reference: `steps` SGD steps of the same model on the whole
 * mini-batch at once, sequentially on one thread (same seed and data as
 * the replay).  *weights (malloc'd, *n floats) as in ps_replay_result. */
int ps_replay_sequential(const pp_model *m, int minibatch, int steps, const ps_replay_opts *o,
                         float **weights, size_t *n, double *loss_last, ps_err *e);

/* {"measured_iteration_s", "predicted_iteration_s", "rel_err",
 *  "throughput_measured", "throughput_predicted", "device", "workers",
 *  "stages", "minibatch", "iterations", "loss_first", "loss_last",
 *  "stage_predicted_busy_s", "stage_measured_busy_s", "link_alpha_s", ...} */
json_t *ps_replay_to_json(const ps_replay_result *r);
/* HDF5 (PATH.partial, renamed): root attrs plan, device, iterations;
 * /replay/tasks, /replay/stages, /replay/summary (docs/replay.md). */
int ps_replay_write_h5(const ps_replay_result *r, const char *plan_name, const char *path,
                       ps_err *e);
/* Chrome trace: one process "predicted", one "measured", a thread per worker. */
int ps_replay_write_trace(const ps_replay_result *r, const char *path, ps_err *e);

#endif
