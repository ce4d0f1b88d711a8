/* The discrete-event engine every plansim study runs its task graph through.
 *
 * A simulation is a graph of tasks.  Each task has a duration (or, on a link,
 * a byte count), dependencies on other tasks, and at most one resource:
 *
 *   stream       exclusive compute stream; ready tasks wait in FIFO order
 *                (ready time, then task id) or priority order (lowest
 *                priority value, then task id)
 *   link         α–β link, one direction: a transfer of b bytes holds the
 *                link for b/β (FIFO like a stream) and completes α after it
 *                releases the link
 *   shared link  processor-sharing link: k active flows each get β/k; a flow
 *                completes α after its last byte has been served
 *   none         DES_NO_RESOURCE: a pure delay, unlimited parallelism
 *
 * Memory pools (capacity in bytes) are charged by (pool, delta, at start |
 * at end) records attached to tasks; the engine tracks current and peak use.
 *
 * Tie-breaking (the determinism rule; same input, bit-identical timeline):
 *   1. Time advances in rounds.  A round at time t first handles every event
 *      due at t (task completions, link releases, shared-link flow ends) in
 *      ascending task id, shared-link events after task events; finish
 *      callbacks run inside this phase, in that order.  An event this phase
 *      creates at t itself is handled next, in a further wave in the same
 *      order, still before any start.
 *   2. Then it starts tasks.  Tasks that became ready during the round are
 *      started in the order they became ready; a task bound to an exclusive
 *      resource joins that resource's queue instead, and the resource is
 *      served (queue head started if it is idle) at the point in that order
 *      where it first received work or was released.
 *   3. A task that starts and ends at t (zero duration) opens another round
 *      at t.  So all completions (and their frees) at a timestamp are handled
 *      before any start (and its allocations) at that timestamp.
 *
 * Task ids are dense, 0, 1, 2, ... in creation order.  Labels are interned:
 * pass any string, the engine stores each distinct label once, so millions of
 * tasks cost no per-task string.  Two int32 tags (e.g. stage, micro-batch)
 * complete a task's name; the trace shows "label tag0.tag1" (negative tags
 * are omitted). */
#ifndef PS_DES_H
#define PS_DES_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/table.h"

typedef struct des des;

#define DES_NO_RESOURCE (-1)
#define DES_NO_TAG (-1)

/* des_run's status when a memory pool overflows: not an engine failure but a
 * result (the plan does not fit).  ps_err then holds the message with
 * code PS_ERUN; des_oom_get() says where and by how much. */
#define DES_OOM 3

typedef enum { DES_FIFO = 0, DES_PRIORITY = 1 } des_order;
typedef enum { DES_AT_START = 0, DES_AT_END = 1 } des_when;
typedef enum {
    DES_RES_STREAM = 1,
    DES_RES_LINK = 2,
    DES_RES_SHARED_LINK = 3,
} des_res_kind;

/* Called when `task` completes at now_s.  It may add tasks, dependencies,
 * memory records and callbacks; tasks it creates become ready once it
 * returns (after their dependencies), so it can wire them up first.  A
 * nonzero return aborts des_run with that status (fill e). */
typedef int (*des_finish_fn)(des *d, int task, double now_s, void *user, ps_err *e);

des *des_new(ps_err *e);
void des_free(des *d);

/* Resources and pools return a dense id (0, 1, ... per kind), or -1. */
int des_add_stream(des *d, const char *name, des_order order, ps_err *e);
int des_add_link(des *d, const char *name, double alpha_s, double bytes_per_s, ps_err *e);
int des_add_shared_link(des *d, const char *name, double alpha_s, double bytes_per_s, ps_err *e);
/* capacity_bytes may be INFINITY (no limit). */
int des_add_pool(des *d, const char *name, double capacity_bytes, ps_err *e);

/* A task on a stream or on no resource.  Returns the task id, or -1 (bad
 * resource, a link resource, negative/NaN/infinite duration). */
int des_add_task(des *d, int resource, double duration_s, const char *label,
                 int32_t tag0, int32_t tag1, ps_err *e);
/* A transfer of `bytes` on a link or shared link. */
int des_add_transfer(des *d, int link, double bytes, const char *label,
                     int32_t tag0, int32_t tag1, ps_err *e);
/* `after` starts only once `before` has completed.  Before des_run any pair
 * is accepted (cycles are reported by des_run); during a run (from a
 * callback) `after` must not be ready yet, and a finished `before` counts as
 * satisfied at once. */
int des_add_dep(des *d, int before, int after, ps_err *e);
/* Order key on DES_PRIORITY streams (default 0; lower runs first). */
int des_set_priority(des *d, int task, int64_t priority, ps_err *e);
/* Change pool use by delta_bytes (> 0 allocates, < 0 frees) when the task
 * starts or ends.  All records of one task at one instant apply together;
 * the capacity check and the peak see their sum. */
int des_add_mem(des *d, int task, int pool, double delta_bytes, des_when when, ps_err *e);
int des_on_finish(des *d, int task, des_finish_fn fn, void *user, ps_err *e);

/* Run to completion.  Returns 0; DES_OOM when a pool overflows (the run
 * stops at that instant, results cover what happened until then); PS_EINPUT
 * on a dependency cycle or a second call; PS_ERUN on an allocation failure
 * or a pool going negative; a callback's own status if it failed.
 * Cycles: the run is itself Kahn's algorithm, so no separate pass looks for
 * them; tasks on a cycle never become ready, and when the queue runs dry
 * with tasks left the message names the tasks of one cycle ("task 7 'fwd
 * 1.0' -> task 9 ... -> task 7").  The acyclic part has run by then. */
int des_run(des *d, ps_err *e);

/* ---- results (valid after des_run) ---- */

double des_makespan_s(const des *d);
uint64_t des_event_count(const des *d); /* pops from the event queue */
int des_task_count(const des *d);
int des_resource_count(const des *d);
int des_pool_count(const des *d);

const char *des_resource_name(const des *d, int resource);
des_res_kind des_resource_kind(const des *d, int resource);
/* Time the resource was held: streams and links, the sum of their tasks'
 * holding times; shared links, the time with at least one active flow. */
double des_resource_busy_s(const des *d, int resource);
double des_resource_utilization(const des *d, int resource); /* busy / makespan, 0 if makespan is 0 */

const char *des_pool_name(const des *d, int pool);
double des_pool_capacity_bytes(const des *d, int pool);
double des_pool_used_bytes(const des *d, int pool);
double des_pool_peak_bytes(const des *d, int pool);

typedef struct des_task_info {
    const char *label; /* owned by the engine, lives as long as d */
    int32_t tag0, tag1;
    int resource;      /* DES_NO_RESOURCE for delays */
    double work;       /* duration_s, or bytes for transfers */
    double start_s;    /* NaN if never started */
    double release_s;  /* when the resource was released (transfers: before α); NaN if not yet */
    double end_s;      /* completion; NaN if not completed */
} des_task_info;
int des_task_get(const des *d, int task, des_task_info *out, ps_err *e);
/* Fast accessors for loops over millions of tasks (NaN as above). */
double des_task_start_s(const des *d, int task);
double des_task_end_s(const des *d, int task);

typedef struct des_oom {
    int pool, task;
    double time_s;
    double requested_bytes; /* the task's net delta on the pool at that instant */
    double in_use_bytes;    /* before the request */
    double capacity_bytes;
    double shortfall_bytes; /* in_use + requested - capacity */
} des_oom;
/* 1 and fills *out if the run stopped on a pool overflow, else 0. */
int des_oom_get(const des *d, des_oom *out);

/* The timeline of every task that started, in task id order: columns
 * task(int), name(str: the label), resource(str), start_s(s), end_s(s),
 * tag0(int), tag1(int).  *out is new and owned by the caller. */
int des_timeline_table(const des *d, ps_table **out, ps_err *e);

/* Chrome trace JSON ({"traceEvents": [...]}, Perfetto opens it): one "X"
 * event per completed task (ts/dur in µs; link transfers show their holding
 * time, the arrival goes in args), one tid per resource with a thread_name
 * event; resources whose tasks overlap (delays, shared links) get one extra
 * lane (tid) per level of overlap.  Written to path.tmp, then renamed. */
int des_write_trace(const des *d, const char *path, ps_err *e);

#endif
