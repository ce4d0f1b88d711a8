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
 * Today: chains of stages, GPipe and 1F1B.  Reserved for later issues: stage
 * DAGs (a pp_graph constructor beside pp_sim_chain), interleaved 1F1B (the
 * op's chunk field) and ZB-H1 (the PP_OP_WGRAD kind). */
#ifndef PS_PP_SCHEDULE_H
#define PS_PP_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "sim/des/des.h"

typedef enum {
    PP_GPIPE = 1, /* all forwards, then all backwards (micro-batch order) */
    PP_1F1B = 2,  /* PipeDream-Flush: min(m, depth) forwards, then 1B/1F, then drain */
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

/* "gpipe" / "1f1b" and back; pp_schedule_parse returns 0 if unknown. */
const char *pp_schedule_name(pp_schedule s);
pp_schedule pp_schedule_parse(const char *name);

/* Ops one stage runs per iteration (2m for GPipe and 1F1B), 0 if invalid. */
size_t pp_stage_op_count(pp_schedule s, int microbatches);
/* Write a stage's op order into ops[0 .. pp_stage_op_count). */
int pp_stage_order(pp_schedule s, int microbatches, int depth, pp_op *ops, ps_err *e);

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
    int *peak_inflight;      /* [p] most micro-batches between F start and B end */
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
/* Task id of an op on a stage, -1 if there is none. */
int pp_sim_task(const pp_sim *s, int stage, pp_op_kind kind, int mb);
/* Resource ids: the stage's stream and its pools. */
int pp_sim_stage_stream(const pp_sim *s, int stage);
int pp_sim_stage_pool(const pp_sim *s, int stage);
void pp_sim_free(pp_sim *s);

#endif
