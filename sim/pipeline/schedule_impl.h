/* The schedule compiler's input, shared by the chain front end
 * (schedule.c) and the plan front end (plan_sim.c).  Not a public API.
 *
 * A graph of virtual stages ("nodes") in topological order.  Each node runs
 * on one device group (one exclusive stream and one memory pool per group);
 * a group holds one node, except under interleaving, where it holds v
 * (chunk 0..v-1).  Node k runs `m` micro-batches of `b` samples; an edge
 * u -> v makes micro-batch j of u feed micro-batch k of v whenever their
 * sample ranges [j b_u, (j+1) b_u) and [k b_v, (k+1) b_v) overlap. */
#ifndef PS_PP_SCHEDULE_IMPL_H
#define PS_PP_SCHEDULE_IMPL_H

#include "sim/pipeline/schedule.h"

typedef struct pp_gnode {
    int group, chunk;
    int m, b;
    double f_s, b_s, w_s;  /* per micro-batch; w_s > 0 only under ZB-H1 (B = b_s) */
    double act_bytes;      /* per micro-batch, held from F start to the last backward op */
    double allreduce_s;    /* after the node's last backward op; 0 = none */
    int depth, lag;        /* order parameters (depth = warm-up forwards) */
} pp_gnode;

typedef struct pp_gedge {
    int from, to;
    double fwd_bytes_per_sample, bwd_bytes_per_sample;
    double alpha_s, bytes_per_s;
} pp_gedge;

typedef struct pp_ggroup {
    char name[48];
    double cap_bytes;    /* INFINITY = none */
    double static_bytes; /* allocated at time 0 (weights, grads, optimizer) */
    int nnodes;
} pp_ggroup;

typedef struct pp_graph {
    int nn, ne, ng;
    const pp_gnode *nodes;
    const pp_gedge *edges;
    const pp_ggroup *groups;
    pp_schedule sched;
    int chunks;          /* interleaved v (groups then hold v nodes each) */
    /* Shared devices: group -> device id (>= 0), NULL = one device per group.
     * Groups on one device share ONE exclusive stream and ONE memory pool
     * (its capacity: the first such group's cap_bytes); each group's op order
     * stays a chain of dependencies, the interleaving across groups on a
     * device is the engine's FIFO (ready time, then task id). */
    const int *group_device;
} pp_graph;

/* Build the task graph of g (not run).  The result's per-stage arrays are
 * per group; pp_sim_node_* give per-node numbers. */
pp_sim *pp_sim_graph(const pp_graph *g, ps_err *e);

int pp_sim_ngroups(const pp_sim *s);
int pp_sim_nnodes(const pp_sim *s);
/* Task ids of node k's ops (-1 if none), allreduce task (-1 if none). */
int pp_sim_node_task(const pp_sim *s, int node, pp_op_kind kind, int mb);
int pp_sim_node_allreduce(const pp_sim *s, int node);
int pp_sim_group_pool(const pp_sim *s, int group);
int pp_sim_group_stream(const pp_sim *s, int group);
/* Busy time of node k's compute ops (sum of durations of its tasks that ran). */
double pp_sim_node_busy_s(const pp_sim *s, int node);
/* Bytes sent between nodes per iteration. */
double pp_sim_p2p_bytes(const pp_sim *s);
/* Front-end data carried by the sim (freed by pp_sim_free with free_fn). */
void pp_sim_set_user(pp_sim *s, void *user, void (*free_fn)(void *));
void *pp_sim_user(const pp_sim *s);

#endif
