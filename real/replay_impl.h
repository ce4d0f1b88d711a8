/* Internal to real/replay.c (the CPU replay) and real/replay_cuda.c (the
 * CUDA replay): the replay's model, options, task lists and calibration,
 * and the few functions of replay.c the CUDA path reuses (thin exported
 * wrappers at the end of replay.c).  Not a public API: see real/replay.h. */
#ifndef PS_REAL_REPLAY_IMPL_H
#define PS_REAL_REPLAY_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "profile/db.h"
#include "real/replay.h"
#include "sim/pipeline/schedule_impl.h"

/* ------------------------------------------------------------ the model */

enum { PT_GEMM = 1, PT_ACT, PT_COPY };
enum { A_IDENT = 0, A_RELU, A_GELU, A_TANH, A_SIGMOID };
enum { OC_INPUT = 1, OC_COMPUTE, OC_CONCAT };

typedef struct rpart {
    int type, act;
    int64_t m, n, k;          /* gemm, per sample m */
    int64_t in_len, out_len;  /* per sample, floats */
    float *w, *dw;            /* gemm: [k, n] */
} rpart;

typedef struct rop {
    const pp_model_op *mo;
    int idx, stage, cls;
    int nparts;
    rpart *parts;
    int64_t in_len, out_len;  /* per sample */
    int b, nmb;               /* the stage's micro-batch and count */
    int direct;               /* reads its single same-stage producer's output in place */
    int needs_din;            /* some producer takes a gradient */
    int sink;
    int64_t *col_off;         /* concat: column offset of input i */
    float **in;               /* [nmb] gathered input (b x in_len), NULL when direct/input */
    float ***po;              /* [nmb][nparts] part outputs */
    float ***dpo;             /* [nmb][nparts] gradients of part outputs */
    float **din;              /* [nmb] gradient of the gathered input (concat: = dout) */
    float *data, *target;     /* input data / sink target [minibatch x out_len] */
    double *loss_mb;          /* sink: [nmb] */
} rop;

typedef struct rmodel {
    const pp_model *m;
    const pp_plan *p;
    int nops, minibatch, zb;
    rop *ops;                 /* [nops] by model index */
    double lr;
    size_t bytes;             /* buffers allocated */
} rmodel;

/* ------------------------------------------------------------ options */

typedef struct ropts {
    int iterations, warmup, workers, reps, no_pin, quiet, keep, corun;
    double max_s, lr;
    unsigned long seed;
    const char *db_path, *db_out;
    int cuda;                 /* --device cuda: real/replay_cuda.c */
} ropts;

typedef struct rtask {
    int worker, stage, kind, mb, seq;
    double ps, pe; /* predicted */
} rtask;

typedef struct rsched {
    int ntasks, K;
    rtask *t;
    int *wstart, *wcount;  /* [K] offsets into t (worker-major) */
    int *dep_off, *deps;
    int *tid;              /* [stage][3][mb] -> task, via tid_off */
    int *tid_off;          /* [nstages] */
} rsched;

typedef struct calib {
    double *fwd, *bi, *bw; /* [nops] per micro-batch of the op's stage */
    double copy_bps, wake_s;
} calib;

/* ------------------------------------------------------------ shared by the CPU and CUDA paths */

/* Shapes and classes of every op (no buffers); PS_EINPUT for unsupported kinds. */
int ps_rp_model_shapes(rmodel *rm, const pp_plan *p, const pp_model *m, ps_err *e);
/* Host buffers, weights (Kaiming-uniform), synthetic inputs and sink targets from the seed. */
int ps_rp_model_alloc(rmodel *rm, unsigned long seed, ps_err *e);
void ps_rp_model_free(rmodel *rm);
/* FLOPs of one iteration (forward + both backward phases). */
double ps_rp_model_flops(const rmodel *rm);
/* Bytes of buffers (weights, gradients, activations) the replay allocates. */
double ps_rp_model_bytes(const rmodel *rm);
/* K <= 0: the number of distinct plan devices; else fills stage_worker
 * (the r-th distinct device, ascending id, -> worker r mod K). */
int ps_rp_worker_map(const pp_plan *p, int K, int *stage_worker);
/* The producers of every task (s->t, s->tid filled) into s->dep_off / s->deps. */
int ps_rp_build_deps(rsched *s, const pp_plan *p, ps_err *e);
void ps_rp_sched_free(rsched *s);
/* The calibration as a profile DB (profile/db.h): meta names the device;
 * backend / timer go into every /ops row (CUDA: event_median_s = the median). */
int ps_rp_write_db(const rmodel *rm, const calib *c, const char *path, const ps_db_meta *meta,
                   const char *backend, const char *timer, ps_err *e);
/* A copy of the model with every op's calibrated times as `measured`. */
pp_model *ps_rp_measured_model(const rmodel *rm, const calib *c, ps_err *e);
double ps_rp_median(double *v, int n);

/* real/replay_cuda.c: the whole replay on CUDA streams (ro->cuda). */
int ps_rp_cuda_run(const pp_plan *p, const pp_model *m, const ropts *ro, ps_replay_result *out,
                   ps_err *e);

#endif
