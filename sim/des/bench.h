/* Speed of sim/des, in events per second (an event = one pop from the event
 * queue).  `plansim des bench` prints what des_bench returns.
 *
 *   pipeline  1F1B, 64 stages x 1024 micro-batches, activation and gradient
 *             sends on one α–β link per direction per stage pair, one
 *             activation pool per stage; des_run timed, graph building apart
 *   hold      the classic hold model on the bare event queue: 10^5 pending
 *             events, each pop pushes one at now + Exp(1)
 *   scaling   the pipeline workload at ~10^4 .. 10^7 events (64 stages, more
 *             micro-batches), to show cost per event stays ~flat, i.e. total
 *             cost grows no faster than E log E */
#ifndef PS_DES_BENCH_H
#define PS_DES_BENCH_H

#include <stdint.h>

#include "common/err.h"

typedef struct des_bench_opts {
    int quick;     /* small sizes (about a second in all), for tests and CI */
    uint64_t seed; /* hold-model RNG; 0 = the default seed */
} des_bench_opts;

typedef struct des_bench_workload {
    char name[32];
    int stages, microbatches;   /* pipeline shapes; 0 for hold */
    uint64_t tasks;             /* pipeline: tasks in the graph; hold: pending events */
    uint64_t events;            /* per repetition */
    int reps;
    double build_s;             /* median time to build the graph (not in events_per_s) */
    double seconds;             /* median time of one repetition */
    double best_s;              /* fastest repetition */
    double events_per_s;        /* events / seconds */
} des_bench_workload;

typedef struct des_bench_point {
    int stages, microbatches;
    uint64_t events;
    double seconds;             /* median des_run time */
    double ns_per_event;
    double ns_per_event_log2;   /* ns / (event * log2(events)) */
} des_bench_point;

#define DES_BENCH_MAX_POINTS 4

typedef struct des_bench_result {
    des_bench_workload pipeline, hold;
    int npoints;
    des_bench_point scaling[DES_BENCH_MAX_POINTS];
    double total_s;             /* wall time of the whole bench */
} des_bench_result;

/* Run all workloads.  0, or PS_ERUN with a message. */
int des_bench(const des_bench_opts *opts, des_bench_result *out, ps_err *e);

#endif
