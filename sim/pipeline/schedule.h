/* Pipeline schedules compiled to a sim/des task graph.
 *
 * Two steps, kept apart so that later schedules and stage graphs plug in:
 *   1. order: a schedule kind says, for one stage, the exact sequence of its
 *      ops (forward / backward of micro-batch k).  It depends only on the
 *      number of micro-batches and on the stage's depth, the number of
 *      stages on its longest path to the sink, itself included (p - i + 1
 *      for stage i, 1-indexed, of a chain; GraphPipe's in-flight rule).
 *   2. compile: every stage becomes one exclusive stream that runs its ops
 *      in exactly that order (each op depends on the previous one on the
 *      stage, so the order is the schedule's, never greedy); data
 *      dependencies follow the stage graph, with an α–β link task per
 *      boundary and direction when bytes are given; one memory pool per
 *      stage holds activations from a forward's start to its backward's end.
 *
 * Schedules: GPipe, 1F1B (on stage DAGs: GraphPipe's schedule, warm-up =
 * in-flight count = longest path to the sink), interleaved 1F1B (Megatron's
 * order, v model chunks per device; chains) and ZB-H1 (backward split into
 * input gradient B and weight gradient W; W of stage i lags its B by i-1
 * micro-batches on a chain, by max_depth - depth on a DAG).  Chains come in
 * through pp_sim_chain below; stage DAGs from plans through pp_sim_plan
 * (plan.h). */
#ifndef PS_PP_SCHEDULE_H
#define PS_PP_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "sim/des/des.h"

typedef enum {
    PP_GPIPE = 1, /* all forwards, then all backwards (micro-batch order) */
    PP_1F1B = 2,  /* PipeDream-Flush: min(m, depth) forwards, then 1B/1F, then drain */
    PP_INTERLEAVED = 3, /* Megatron interleaved 1F1B over v chunks per device */
    PP_ZB_H1 = 4, /* zero-bubble H1: 1F1B with W split off and deferred */
} pp_schedule;

typedef enum {
    PP_OP_FWD = 0,
    PP_OP_BWD = 1, /* full backward; ZB splits it into input grad and PP_OP_WGRAD */
    PP_OP_WGRAD = 2,
} pp_op_kind;

typedef struct pp_op {
    int32_t kind;  /* pp_op_kind */
    int32_t mb;    /* micro-batch, 0-based */
    int32_t chunk; /* model chunk on this stage (interleaved schedules); 0 */
} pp_op;

/* "gpipe" / "1f1b" / "interleaved" / "zb-h1" and back; pp_schedule_parse
 * also takes "pipedream-flush", "graphpipe" (1F1B on DAGs), "zb1p", and
 * returns 0 if unknown. */
const char *pp_schedule_name(pp_schedule s);
pp_schedule pp_schedule_parse(const char *name);

/* Ops one stage runs per iteration (2m for GPipe and 1F1B, 3m for ZB-H1;
 * interleaved needs the chunk count: pp_stage_op_count_ex), 0 if invalid. */
size_t pp_stage_op_count(pp_schedule s, int microbatches);
size_t pp_stage_op_count_ex(pp_schedule s, int microbatches, int chunks);
/* Write a stage's op order into ops[0 .. pp_stage_op_count): GPipe, 1F1B,
 * and ZB-H1 with lag 0 (pp_stage_order_ex takes the lag and interleaving). */
int pp_stage_order(pp_schedule s, int microbatches, int depth, pp_op *ops, ps_err *e);

typedef struct pp_order_spec {
    pp_schedule schedule;
    int microbatches; /* m */
    int depth;        /* GPipe/1F1B/ZB: warm-up forwards (in-flight count) */
    int lag;          /* ZB-H1: W(k) runs after B(k + lag); i-1 on chain stage i */
    int chunks;       /* interleaved: v */
    int stages;       /* interleaved: p (devices in the chain) */
    int rank;         /* interleaved: this device, 0-based */
} pp_order_spec;
int pp_stage_order_ex(const pp_order_spec *o, pp_op *ops, ps_err *e);

/* A chain of p stages; arrays are indexed by stage (0-based), the transfer
 * arrays by boundary (i = between stage i and i+1). */
typedef struct pp_chain {
    int stages;                   /* p >= 1 */
    int microbatches;             /* m >= 1 */
    const double *fwd_s;          /* [p] forward time per micro-batch */
    const double *bwd_s;          /* [p] backward time per micro-batch */
    const double *act_bytes;      /* [p] activations kept from F to B; NULL = 0 */
    const double *send_fwd_bytes; /* [p-1] activations sent i -> i+1; NULL/0 = no transfer */
    const double *send_bwd_bytes; /* [p-1] gradients sent i+1 -> i; NULL/0 = no transfer */
    double link_alpha_s;          /* every boundary link: latency */
    double link_bytes_per_s;      /* and bandwidth (needed when any bytes > 0) */
    double mem_capacity_bytes;    /* per stage pool; 0 or INFINITY = no limit */
    /* ZB-H1: the weight-gradient share of bwd_s (B = bwd_s - W); NULL =
     * bwd_s / 2.  Ignored by the other schedules. */
    const double *wgrad_s;
    /* Interleaved: v model chunks per stage (0 = 1); each chunk's forward
     * and backward take fwd_s / v and bwd_s / v, its activations act_bytes
     * / v; a transfer runs between every pair of consecutive chunks (device
     * p-1 to device 0 included, on the boundary p-1 link). */
    int chunks;
} pp_chain;

typedef struct pp_result {
    int stages, microbatches;
    double makespan_s;
    /* Ideal time without bubbles: the busiest stage's compute time, max_i
     * busy_s[i] (= m (t_f + t_b) for uniform stages). */
    double ideal_s;
    double bubble_fraction;  /* idle share of wall time over stages: 1 - sum busy / (p makespan) */
    double bubble_ratio;     /* (makespan - ideal) / ideal */
    double *busy_s;          /* [p] compute time per stage */
    double *peak_mem_bytes;  /* [p] peak of the stage's activation pool */
    int *peak_inflight;      /* [p] most micro-batches between F start and B end
                                (ZB-H1: W end; interleaved: chunk activations,
                                each 1/v of a micro-batch's) */
} pp_result;

typedef struct pp_sim pp_sim;

/* Build the task graph (not run yet). */
pp_sim *pp_sim_chain(const pp_chain *c, pp_schedule s, ps_err *e);
/* Run it and fill the result.  0, DES_OOM when a stage's pool overflows
 * (the result then covers the run up to that point), or another status. */
int pp_sim_run(pp_sim *s, ps_err *e);
const pp_result *pp_sim_result(const pp_sim *s);
/* The engine, for timelines and traces (des_timeline_table,
 * des_write_trace).  Owned by s. */
const des *pp_sim_des(const pp_sim *s);
/* Task id of an op on a stage, -1 if there is none (chunk 0; PP_OP_BWD is
 * the input-gradient op under ZB-H1). */
int pp_sim_task(const pp_sim *s, int stage, pp_op_kind kind, int mb);
/* The same for chunk c of an interleaved stage (device). */
int pp_sim_task_chunk(const pp_sim *s, int stage, int chunk, pp_op_kind kind, int mb);
/* Resource ids: the stage's stream and its pools. */
int pp_sim_stage_stream(const pp_sim *s, int stage);
int pp_sim_stage_pool(const pp_sim *s, int stage);
void pp_sim_free(pp_sim *s);

/* Devices of a simulation: one per group (stage), or, when stages share
 * devices (pp_sim_opts.device_of_stage, plan "shared_devices"), one per
 * distinct device id, numbered 0.. in ascending id order. */
int pp_sim_ndevices(const pp_sim *s);
/* The device id (as given) of device slot k; the slot of a group. */
int pp_sim_device_id(const pp_sim *s, int slot);
int pp_sim_group_device(const pp_sim *s, int group);

/* One compute task on a device, as the run placed it. */
typedef struct pp_dev_task {
    int task;          /* des task id */
    int node;          /* virtual stage (a plan's stage index) */
    int group, chunk;
    int kind;          /* pp_op_kind */
    int mb;
    double start_s, end_s;
} pp_dev_task;
/* After pp_sim_run: the compute tasks of device slot `slot` in start order
 * (start, then end, then task id), *out malloc'd (free it), *n entries. */
int pp_sim_device_order(const pp_sim *s, int slot, pp_dev_task **out, int *n, ps_err *e);

#endif
