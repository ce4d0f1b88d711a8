/* Internals of sim/des shared by des.c (build and run) and des_out.c
 * (timeline table and trace).  Not part of the API. */
#ifndef PS_DES_IMPL_H
#define PS_DES_IMPL_H

#include <stdint.h>

#include "sim/des/des.h"
#include "sim/des/evq.h"

#define DES_NIL UINT32_MAX
/* Payload bit that marks an event (or dispatch entry) as a resource's. */
#define DES_RESBIT 0x80000000u
#define DES_MAX_TASKS 0x7fffff00

enum { ST_NEW, ST_PENDING, ST_READY, ST_RUN, ST_TRANSIT, ST_DONE };
/* Resource kind cached in the task so the hot loop needs no resource lookup
 * for delays; K_NONE = no resource. */
enum { K_NONE = 0, K_STREAM = DES_RES_STREAM, K_LINK = DES_RES_LINK, K_SHARED = DES_RES_SHARED_LINK };
/* Which attachment kinds a task has, so the loop walks lists only when needed. */
enum { TF_MEM_START = 1, TF_MEM_END = 2, TF_SUCC = 4, TF_CB = 8 };
enum { ATT_MEM_START, ATT_MEM_END, ATT_SUCC, ATT_CB };

/* The fields the event loop touches for every task, in half a cache line;
 * timeline and naming fields live in separate arrays (cold).  The CSR
 * offset sits here rather than in an array of its own so that finding a
 * task's successors costs no extra cache miss (its end is the next task's
 * offset, usually on the same line). */
typedef struct dtask {
    double work;      /* seconds, or bytes for transfers */
    int32_t res;      /* -1 = none */
    int32_t npend;    /* unsatisfied dependencies */
    uint32_t att;     /* head of the attachment list, DES_NIL if none */
    uint32_t succ;    /* first successor in succ[] (tasks below ncsr) */
    uint8_t state, kind, flags, pad[5];
} dtask;

/* Rare per-task extras (memory records, dependencies added during a run,
 * callbacks) as singly linked nodes, newest first: most tasks have none, so
 * one index per task is all they cost. */
typedef struct datt {
    uint32_t next;
    uint32_t kind;
    uint32_t idx;     /* pool, successor task, or callback slot */
    double delta;
} datt;

typedef struct dcb {
    des_finish_fn fn;
    void *user;
} dcb;

typedef struct dflow {
    double tag;       /* virtual finish time: bytes of service at which it ends */
    uint32_t task;
} dflow;

typedef struct dres {
    char *name;
    uint8_t kind, order, busy, dirty;
    double alpha_s, bps;
    double busy_s;
    pq q;             /* ready queue of exclusive resources */
    /* shared links: processor sharing in virtual time (service per flow) */
    dflow *fl;
    uint32_t nfl, flcap;
    double vt, last_s, busy_since_s, armed_s;
} dres;

typedef struct dpool {
    char *name;
    double cap, used, peak;
    double pre;       /* scratch: use before the current task's records */
    int mark;
} dpool;

struct des {
    /* tasks */
    dtask *t;
    double *start_s, *end_s, *rel_s;
    uint32_t *label;
    int32_t *tag0, *tag1;
    int64_t *prio;    /* NULL until a priority is set */
    uint32_t nt, tcap;

    /* dependencies before the run (edge list), then CSR */
    uint32_t *e_from, *e_to;
    size_t ne, ecap;
    uint32_t *succ;   /* CSR successor lists of the tasks created before the run */
    uint32_t ncsr, nsucc;

    datt *att;
    uint32_t natt, attcap;
    dcb *cb;
    uint32_t ncb, cbcap;

    dres *res;
    int nres, rescap;
    dpool *pool;
    int npool, poolcap;

    /* interned labels */
    char **lab;
    uint32_t nlab, labcap;
    uint32_t *labhash;
    uint32_t labhcap, lastlab;

    /* run state */
    int phase;        /* 0 building, 1 running, 2 finished */
    evq q;
    evq_vec wave;     /* the events being handled now */
    uint32_t *disp;   /* dispatch list of this round: task ids, or DES_RESBIT|resource */
    size_t ndisp, dispcap;
    uint32_t *scratch; /* callback slots of the task completing */
    size_t scratchcap;
    uint32_t watermark; /* tasks below it have been activated */
    uint32_t ndone;
    uint64_t events;
    double now, makespan;
    int has_oom;
    des_oom oom;
};

/* "task 12 'fwd 3.0'" into buf. */
void des_fmt_task(const des *d, uint32_t x, char *buf, size_t n);
/* "fwd 3.0" into buf. */
void des_fmt_name(const des *d, uint32_t x, char *buf, size_t n);

#endif
