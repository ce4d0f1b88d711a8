/* sim/des: building a task graph and running it.  See des.h for the model
 * and the tie-breaking rule; README.md for the data layout and its speed. */
#include "sim/des/des_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int grow(void **p, size_t elem, size_t need, size_t *cap)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}

/* grow() for the uint32/int capacity fields. */
#define GROW32(ptr, need, cap32)                                                 \
    __extension__({                                                              \
        size_t c_ = (cap32);                                                     \
        int r_ = grow((void **)&(ptr), sizeof *(ptr), (need), &c_);              \
        if (!r_)                                                                 \
            (cap32) = c_;                                                        \
        r_;                                                                      \
    })

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

static int bad_task(const des *d, int task)
{
    return task < 0 || (uint32_t)task >= d->nt;
}

static int oom_err(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "des: out of host memory");
}

void des_fmt_name(const des *d, uint32_t x, char *buf, size_t n)
{
    const char *l = d->lab[d->label[x]];
    int32_t a = d->tag0[x], b = d->tag1[x];
    if (a >= 0 && b >= 0)
        snprintf(buf, n, "%s %d.%d", l, a, b);
    else if (a >= 0)
        snprintf(buf, n, "%s %d", l, a);
    else if (b >= 0)
        snprintf(buf, n, "%s .%d", l, b);
    else
        snprintf(buf, n, "%s", l);
}

void des_fmt_task(const des *d, uint32_t x, char *buf, size_t n)
{
    char nm[160];
    des_fmt_name(d, x, nm, sizeof nm);
    snprintf(buf, n, "task %u '%s'", x, nm);
}

/* ------------------------------------------------------------------ */
/* labels                                                              */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Label id, interning it on first sight; DES_NIL on allocation failure.
 * Consecutive tasks usually share a label, so the last one is checked first
 * (by content: callers may reuse one buffer for different labels). */
static uint32_t intern(des *d, const char *s)
{
    if (!s)
        s = "task";
    if (d->nlab && strcmp(d->lab[d->lastlab], s) == 0)
        return d->lastlab;
    if (2 * (d->nlab + 1) > d->labhcap) {
        uint32_t nc = d->labhcap ? 2 * d->labhcap : 64;
        uint32_t *h = malloc(nc * sizeof *h);
        if (!h)
            return DES_NIL;
        for (uint32_t i = 0; i < nc; i++)
            h[i] = DES_NIL;
        for (uint32_t i = 0; i < d->nlab; i++) {
            uint32_t j = hash_str(d->lab[i]) & (nc - 1);
            while (h[j] != DES_NIL)
                j = (j + 1) & (nc - 1);
            h[j] = i;
        }
        free(d->labhash);
        d->labhash = h;
        d->labhcap = nc;
    }
    uint32_t m = d->labhcap - 1, j = hash_str(s) & m;
    while (d->labhash[j] != DES_NIL) {
        if (strcmp(d->lab[d->labhash[j]], s) == 0)
            return d->lastlab = d->labhash[j];
        j = (j + 1) & m;
    }
    if (GROW32(d->lab, d->nlab + 1, d->labcap))
        return DES_NIL;
    char *c = dup_str(s);
    if (!c)
        return DES_NIL;
    d->lab[d->nlab] = c;
    d->labhash[j] = d->nlab;
    return d->lastlab = d->nlab++;
}

/* ------------------------------------------------------------------ */
/* construction                                                        */

des *des_new(ps_err *e)
{
    des *d = calloc(1, sizeof *d);
    if (!d) {
        oom_err(e);
        return NULL;
    }
    return d;
}

void des_free(des *d)
{
    if (!d)
        return;
    free(d->t);
    free(d->start_s);
    free(d->end_s);
    free(d->rel_s);
    free(d->label);
    free(d->tag0);
    free(d->tag1);
    free(d->prio);
    free(d->e_from);
    free(d->e_to);
    free(d->succ);
    free(d->att);
    free(d->cb);
    for (int i = 0; i < d->nres; i++) {
        free(d->res[i].name);
        pq_free(&d->res[i].q);
        free(d->res[i].fl);
    }
    free(d->res);
    for (int i = 0; i < d->npool; i++)
        free(d->pool[i].name);
    free(d->pool);
    for (uint32_t i = 0; i < d->nlab; i++)
        free(d->lab[i]);
    free(d->lab);
    free(d->labhash);
    evq_free(&d->q);
    free(d->wave.v);
    free(d->disp);
    free(d->scratch);
    free(d);
}

static int add_res(des *d, const char *name, int kind, int order, double alpha_s,
                   double bps, ps_err *e)
{
    if (d->phase != 0)
        return ps_errf(e, PS_EINPUT, "des: resources cannot be added once the run has started"), -1;
    if (!name || !*name)
        return ps_errf(e, PS_EINPUT, "des: resource needs a name"), -1;
    if (kind != K_STREAM && !(isfinite(alpha_s) && alpha_s >= 0))
        return ps_errf(e, PS_EINPUT, "des: link '%s': latency %g s must be finite and >= 0", name, alpha_s), -1;
    if (kind != K_STREAM && !(bps > 0))
        return ps_errf(e, PS_EINPUT, "des: link '%s': bandwidth %g bytes/s must be > 0", name, bps), -1;
    if (kind == K_STREAM && order != DES_FIFO && order != DES_PRIORITY)
        return ps_errf(e, PS_EINPUT, "des: stream '%s': unknown order %d", name, order), -1;
    if (d->nres >= 0x7ffffff)
        return ps_errf(e, PS_EINPUT, "des: too many resources"), -1;
    if (GROW32(d->res, (size_t)d->nres + 1, d->rescap))
        return oom_err(e), -1;
    dres *r = &d->res[d->nres];
    memset(r, 0, sizeof *r);
    if (!(r->name = dup_str(name)))
        return oom_err(e), -1;
    r->kind = (uint8_t)kind;
    r->order = (uint8_t)order;
    r->alpha_s = alpha_s;
    r->bps = bps;
    r->armed_s = INFINITY;
    return d->nres++;
}

int des_add_stream(des *d, const char *name, des_order order, ps_err *e)
{
    return add_res(d, name, K_STREAM, order, 0, 0, e);
}

int des_add_link(des *d, const char *name, double alpha_s, double bytes_per_s, ps_err *e)
{
    return add_res(d, name, K_LINK, DES_FIFO, alpha_s, bytes_per_s, e);
}

int des_add_shared_link(des *d, const char *name, double alpha_s, double bytes_per_s, ps_err *e)
{
    return add_res(d, name, K_SHARED, DES_FIFO, alpha_s, bytes_per_s, e);
}

int des_add_pool(des *d, const char *name, double capacity_bytes, ps_err *e)
{
    if (d->phase != 0)
        return ps_errf(e, PS_EINPUT, "des: pools cannot be added once the run has started"), -1;
    if (!name || !*name)
        return ps_errf(e, PS_EINPUT, "des: pool needs a name"), -1;
    if (!(capacity_bytes >= 0))
        return ps_errf(e, PS_EINPUT, "des: pool '%s': capacity %g bytes must be >= 0", name, capacity_bytes), -1;
    if (GROW32(d->pool, (size_t)d->npool + 1, d->poolcap))
        return oom_err(e), -1;
    dpool *p = &d->pool[d->npool];
    memset(p, 0, sizeof *p);
    if (!(p->name = dup_str(name)))
        return oom_err(e), -1;
    p->cap = capacity_bytes;
    return d->npool++;
}

static int grow_tasks(des *d)
{
    if (d->nt < d->tcap)
        return 0;
    size_t nc = d->tcap ? 2 * (size_t)d->tcap : 1024;
    if (nc > DES_MAX_TASKS)
        nc = DES_MAX_TASKS;
    void *p;
#define RE(f)                                          \
    if (!(p = realloc(d->f, nc * sizeof *d->f)))       \
        return -1;                                     \
    d->f = p;
    RE(t) RE(start_s) RE(end_s) RE(rel_s) RE(label) RE(tag0) RE(tag1)
    if (d->prio) {
        RE(prio)
    }
#undef RE
    d->tcap = (uint32_t)nc;
    return 0;
}

static int new_task(des *d, int resource, int kind, double work, const char *label,
                    int32_t tag0, int32_t tag1, ps_err *e)
{
    if (d->phase == 2)
        return ps_errf(e, PS_EINPUT, "des: tasks cannot be added after the run"), -1;
    if (d->nt >= DES_MAX_TASKS)
        return ps_errf(e, PS_EINPUT, "des: more than %d tasks", DES_MAX_TASKS), -1;
    uint32_t lab = intern(d, label);
    if (lab == DES_NIL || grow_tasks(d))
        return oom_err(e), -1;
    uint32_t x = d->nt++;
    d->t[x] = (dtask){.work = work, .res = resource, .npend = 0, .att = DES_NIL,
                      .state = ST_NEW, .kind = (uint8_t)kind};
    d->start_s[x] = NAN;
    d->end_s[x] = NAN;
    d->rel_s[x] = NAN;
    d->label[x] = lab;
    d->tag0[x] = tag0;
    d->tag1[x] = tag1;
    if (d->prio)
        d->prio[x] = 0;
    return (int)x;
}

int des_add_task(des *d, int resource, double duration_s, const char *label,
                 int32_t tag0, int32_t tag1, ps_err *e)
{
    if (!isfinite(duration_s) || duration_s < 0)
        return ps_errf(e, PS_EINPUT, "des: task '%s' %d.%d: duration %g s must be finite and >= 0",
                       label ? label : "task", tag0, tag1, duration_s), -1;
    int kind = K_NONE;
    if (resource != DES_NO_RESOURCE) {
        if (resource < 0 || resource >= d->nres)
            return ps_errf(e, PS_EINPUT, "des: task '%s' %d.%d: unknown resource %d (%d defined)",
                           label ? label : "task", tag0, tag1, resource, d->nres), -1;
        kind = d->res[resource].kind;
        if (kind != K_STREAM)
            return ps_errf(e, PS_EINPUT, "des: task '%s' %d.%d: resource '%s' is a link; use des_add_transfer",
                           label ? label : "task", tag0, tag1, d->res[resource].name), -1;
    }
    return new_task(d, resource, kind, duration_s, label, tag0, tag1, e);
}

int des_add_transfer(des *d, int link, double bytes, const char *label,
                     int32_t tag0, int32_t tag1, ps_err *e)
{
    if (!isfinite(bytes) || bytes < 0)
        return ps_errf(e, PS_EINPUT, "des: transfer '%s' %d.%d: size %g bytes must be finite and >= 0",
                       label ? label : "task", tag0, tag1, bytes), -1;
    if (link < 0 || link >= d->nres)
        return ps_errf(e, PS_EINPUT, "des: transfer '%s' %d.%d: unknown resource %d (%d defined)",
                       label ? label : "task", tag0, tag1, link, d->nres), -1;
    int kind = d->res[link].kind;
    if (kind == K_STREAM)
        return ps_errf(e, PS_EINPUT, "des: transfer '%s' %d.%d: resource '%s' is a stream, not a link",
                       label ? label : "task", tag0, tag1, d->res[link].name), -1;
    return new_task(d, link, kind, bytes, label, tag0, tag1, e);
}

static int add_att(des *d, uint32_t task, uint32_t kind, uint32_t idx, double delta)
{
    if (d->natt == DES_NIL - 1 || GROW32(d->att, (size_t)d->natt + 1, d->attcap))
        return -1;
    datt *a = &d->att[d->natt];
    a->kind = kind;
    a->idx = idx;
    a->delta = delta;
    a->next = d->t[task].att;
    d->t[task].att = d->natt++;
    static const uint8_t flag[] = {[ATT_MEM_START] = TF_MEM_START, [ATT_MEM_END] = TF_MEM_END,
                                   [ATT_SUCC] = TF_SUCC, [ATT_CB] = TF_CB};
    d->t[task].flags |= flag[kind];
    return 0;
}

int des_add_dep(des *d, int before, int after, ps_err *e)
{
    if (bad_task(d, before) || bad_task(d, after))
        return ps_errf(e, PS_EINPUT, "des: dependency %d -> %d: unknown task %d (%u tasks)",
                       before, after, bad_task(d, before) ? before : after, d->nt);
    if (d->phase == 2)
        return ps_errf(e, PS_EINPUT, "des: dependencies cannot be added after the run");
    dtask *a = &d->t[after];
    if (a->state != ST_NEW && a->state != ST_PENDING) {
        char buf[200];
        des_fmt_task(d, (uint32_t)after, buf, sizeof buf);
        return ps_errf(e, PS_EINPUT, "des: dependency %d -> %d: %s is already ready or running",
                       before, after, buf);
    }
    if (d->phase == 0) {
        if (d->ne >= UINT32_MAX - 1)
            return ps_errf(e, PS_EINPUT, "des: more than %u dependencies", UINT32_MAX - 1);
        size_t c1 = d->ecap, c2 = d->ecap;
        if (grow((void **)&d->e_from, sizeof *d->e_from, d->ne + 1, &c1) ||
            grow((void **)&d->e_to, sizeof *d->e_to, d->ne + 1, &c2))
            return oom_err(e);
        d->ecap = c1 < c2 ? c1 : c2;
        d->e_from[d->ne] = (uint32_t)before;
        d->e_to[d->ne] = (uint32_t)after;
        d->ne++;
        a->npend++;
        return 0;
    }
    if (d->t[before].state == ST_DONE)
        return 0;
    if (add_att(d, (uint32_t)before, ATT_SUCC, (uint32_t)after, 0))
        return oom_err(e);
    d->t[after].npend++;
    return 0;
}

int des_set_priority(des *d, int task, int64_t priority, ps_err *e)
{
    if (bad_task(d, task))
        return ps_errf(e, PS_EINPUT, "des: priority: unknown task %d", task);
    if (d->t[task].state != ST_NEW && d->t[task].state != ST_PENDING)
        return ps_errf(e, PS_EINPUT, "des: priority: task %d is already ready", task);
    if (!d->prio) {
        d->prio = calloc(d->tcap, sizeof *d->prio);
        if (!d->prio)
            return oom_err(e);
    }
    d->prio[task] = priority;
    return 0;
}

int des_add_mem(des *d, int task, int pool, double delta_bytes, des_when when, ps_err *e)
{
    if (bad_task(d, task))
        return ps_errf(e, PS_EINPUT, "des: memory record: unknown task %d", task);
    if (pool < 0 || pool >= d->npool)
        return ps_errf(e, PS_EINPUT, "des: memory record on task %d: unknown pool %d (%d defined)",
                       task, pool, d->npool);
    if (!isfinite(delta_bytes))
        return ps_errf(e, PS_EINPUT, "des: memory record on task %d: delta %g bytes is not finite",
                       task, delta_bytes);
    if (when != DES_AT_START && when != DES_AT_END)
        return ps_errf(e, PS_EINPUT, "des: memory record on task %d: bad instant %d", task, when);
    int st = d->t[task].state;
    if (st == ST_DONE || (when == DES_AT_START && st >= ST_RUN))
        return ps_errf(e, PS_EINPUT, "des: memory record on task %d: that instant has passed", task);
    if (add_att(d, (uint32_t)task, when == DES_AT_START ? ATT_MEM_START : ATT_MEM_END,
                (uint32_t)pool, delta_bytes))
        return oom_err(e);
    return 0;
}

int des_on_finish(des *d, int task, des_finish_fn fn, void *user, ps_err *e)
{
    if (bad_task(d, task))
        return ps_errf(e, PS_EINPUT, "des: callback: unknown task %d", task);
    if (!fn)
        return ps_errf(e, PS_EINPUT, "des: callback on task %d: NULL function", task);
    if (d->t[task].state == ST_DONE)
        return ps_errf(e, PS_EINPUT, "des: callback on task %d: task has finished", task);
    if (GROW32(d->cb, (size_t)d->ncb + 1, d->cbcap) ||
        add_att(d, (uint32_t)task, ATT_CB, d->ncb, 0))
        return oom_err(e);
    d->cb[d->ncb++] = (dcb){fn, user};
    return 0;
}

/* ------------------------------------------------------------------ */
/* validation: CSR and cycles                                          */

static int build_csr(des *d)
{
    uint32_t n = d->nt;
    dtask *t = d->t;
    d->succ = malloc((d->ne ? d->ne : 1) * sizeof *d->succ);
    if (!d->succ)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        t[i].succ = 0;
    for (size_t i = 0; i < d->ne; i++)
        t[d->e_from[i]].succ++;
    uint32_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = t[i].succ;
        t[i].succ = sum;
        sum += c;
    }
    /* Stable fill using .succ as the cursor (it ends at the next task's
     * begin), then shift it back. */
    for (size_t i = 0; i < d->ne; i++)
        d->succ[t[d->e_from[i]].succ++] = d->e_to[i];
    for (uint32_t i = n; i > 1; i--)
        t[i - 1].succ = t[i - 2].succ;
    if (n)
        t[0].succ = 0;
    d->ncsr = n;
    d->nsucc = (uint32_t)d->ne;
    free(d->e_from);
    free(d->e_to);
    d->e_from = d->e_to = NULL;
    d->ne = d->ecap = 0;
    return 0;
}

static inline uint32_t succ_end(const des *d, uint32_t x)
{
    return x + 1 < d->ncsr ? d->t[x + 1].succ : d->nsucc;
}

/* Successors of x: CSR range, then the attachment list. */
typedef struct succ_it {
    uint32_t i, end, a;
} succ_it;

static void succ_begin(const des *d, uint32_t x, succ_it *it)
{
    it->i = x < d->ncsr ? d->t[x].succ : 0;
    it->end = x < d->ncsr ? succ_end(d, x) : 0;
    it->a = d->t[x].att;
}

static int succ_next(const des *d, succ_it *it, uint32_t *s)
{
    if (it->i < it->end) {
        *s = d->succ[it->i++];
        return 1;
    }
    while (it->a != DES_NIL) {
        const datt *a = &d->att[it->a];
        it->a = a->next;
        if (a->kind == ATT_SUCC) {
            *s = a->idx;
            return 1;
        }
    }
    return 0;
}

/* Depth-first search over the tasks with cand[x] != 0 for a cycle; writes
 * it into the error.  Returns 1 if one was found. */
static int report_cycle(des *d, uint8_t *cand, ps_err *e)
{
    /* color: cand 1 = white, 2 = on the stack, 3 = finished */
    uint32_t n = d->nt;
    succ_it *st = malloc((size_t)n * sizeof *st);
    uint32_t *node = malloc((size_t)n * sizeof *node);
    int found = 0;
    if (!st || !node) {
        free(st);
        free(node);
        oom_err(e);
        return 1;
    }
    for (uint32_t r = 0; r < n && !found; r++) {
        if (cand[r] != 1)
            continue;
        size_t sp = 0;
        node[sp] = r;
        succ_begin(d, r, &st[sp]);
        cand[r] = 2;
        sp++;
        while (sp && !found) {
            uint32_t s;
            if (!succ_next(d, &st[sp - 1], &s)) {
                cand[node[--sp]] = 3;
                continue;
            }
            if (cand[s] == 1) {
                node[sp] = s;
                succ_begin(d, s, &st[sp]);
                cand[s] = 2;
                sp++;
            } else if (cand[s] == 2) {
                size_t k = sp - 1;
                while (node[k] != s)
                    k--;
                char msg[1400];
                size_t len = 0;
                len += (size_t)snprintf(msg, sizeof msg, "des: dependency cycle: ");
                for (size_t j = k; j < sp && len < sizeof msg - 200; j++) {
                    char buf[200];
                    des_fmt_task(d, node[j], buf, sizeof buf);
                    len += (size_t)snprintf(msg + len, sizeof msg - len, "%s -> ", buf);
                }
                char buf[200];
                des_fmt_task(d, s, buf, sizeof buf);
                if (len < sizeof msg)
                    snprintf(msg + len, sizeof msg - len, "%s", buf);
                ps_errf(e, PS_EINPUT, "%s", msg);
                found = 1;
            }
        }
    }
    free(st);
    free(node);
    return found;
}

/* ------------------------------------------------------------------ */
/* the event loop                                                      */

/* The hot path is inlined into des_run's loop; rare work (memory records,
 * callbacks, shared links, growing arrays, errors) stays out of line so that
 * the loop stays small. */
#define HOT static inline __attribute__((always_inline))
#define COLD static __attribute__((noinline, cold))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

COLD int disp_grow(des *d)
{
    return grow((void **)&d->disp, sizeof *d->disp, d->ndisp + 1, &d->dispcap);
}

HOT int disp_push(des *d, uint32_t v)
{
    if (UNLIKELY(d->ndisp == d->dispcap) && disp_grow(d))
        return -1;
    d->disp[d->ndisp++] = v;
    return 0;
}

HOT int push_ev(des *d, double t, uint32_t payload)
{
    return evq_push(&d->q, t, payload);
}

HOT int res_wake(des *d, int32_t r)
{
    dres *R = &d->res[r];
    if (R->dirty)
        return 0;
    R->dirty = 1;
    return disp_push(d, DES_RESBIT | (uint32_t)r);
}

HOT int make_ready(des *d, uint32_t s, double now)
{
    dtask *S = &d->t[s];
    S->state = ST_READY;
    if (S->kind == K_STREAM || S->kind == K_LINK) {
        dres *R = &d->res[S->res];
        uint64_t key;
        if (R->order == DES_PRIORITY) {
            int64_t p = d->prio ? d->prio[s] : 0;
            key = (uint64_t)p ^ 0x8000000000000000ull; /* signed order as unsigned */
        } else {
            key = evq_bits(now);
        }
        if (pq_push(&R->q, pq_make(key, s)))
            return -1;
        if (!R->busy)
            return res_wake(d, S->res);
        return 0;
    }
    return disp_push(d, s);
}

COLD int oom_record(des *d, uint32_t x, int pool, ps_err *e)
{
    dpool *P = &d->pool[pool];
    des_oom *o = &d->oom;
    d->has_oom = 1;
    o->pool = pool;
    o->task = (int)x;
    o->time_s = d->now;
    o->in_use_bytes = P->pre;
    o->requested_bytes = P->used - P->pre;
    o->capacity_bytes = P->cap;
    o->shortfall_bytes = P->used - P->cap;
    char buf[200];
    des_fmt_task(d, x, buf, sizeof buf);
    ps_errf(e, PS_ERUN,
            "des: out of memory on pool '%s' at t=%.9g s: %s requests %.17g bytes with %.17g of "
            "%.17g in use (short by %.17g bytes)",
            P->name, d->now, buf, o->requested_bytes, o->in_use_bytes, o->capacity_bytes,
            o->shortfall_bytes);
    return DES_OOM;
}

COLD int pool_negative(des *d, uint32_t x, const dpool *P, uint32_t kind, ps_err *e)
{
    char buf[200];
    des_fmt_task(d, x, buf, sizeof buf);
    return ps_errf(e, PS_ERUN, "des: pool '%s' went negative (%.17g bytes) at t=%.9g s when %s %s",
                   P->name, P->used, d->now, buf, kind == ATT_MEM_START ? "started" : "ended");
}

/* Apply all of task x's memory records of one kind, then check each touched
 * pool once: the task's records at one instant are one atomic change.  Two
 * walks over the (short) list; the pool's mark says "first seen". */
static int apply_mem(des *d, uint32_t x, uint32_t kind, ps_err *e)
{
    const datt *att = d->att;
    uint32_t head = d->t[x].att;
    for (uint32_t a = head; a != DES_NIL; a = att[a].next) {
        if (att[a].kind != kind)
            continue;
        dpool *P = &d->pool[att[a].idx];
        if (!P->mark) {
            P->mark = 1;
            P->pre = P->used;
        }
        P->used += att[a].delta;
    }
    int rc = 0;
    for (uint32_t a = head; a != DES_NIL; a = att[a].next) {
        if (att[a].kind != kind)
            continue;
        dpool *P = &d->pool[att[a].idx];
        if (!P->mark)
            continue;
        P->mark = 0;
        if (rc)
            continue;
        if (P->used > P->peak) {
            if (UNLIKELY(P->used > P->cap))
                rc = oom_record(d, x, (int)att[a].idx, e);
            else
                P->peak = P->used;
        } else if (UNLIKELY(P->used < 0) && P->used < -1e-9 * (P->peak > 1 ? P->peak : 1)) {
            rc = pool_negative(d, x, P, kind, e);
        }
    }
    return rc;
}

/* Tasks created by a callback become ready only now, so that the callback
 * could give them dependencies first.  (Not COLD: des_run calls it on the
 * way into the loop, and GCC would treat all that follows as cold.) */
static __attribute__((noinline)) int activate_new(des *d, double now)
{
    for (; d->watermark < d->nt; d->watermark++) {
        uint32_t x = d->watermark;
        if (d->t[x].npend == 0) {
            if (make_ready(d, x, now))
                return -1;
        } else {
            d->t[x].state = ST_PENDING;
        }
    }
    return 0;
}

/* The rest of a completion for tasks with attachments: frees at the end,
 * dependencies added during the run, callbacks. */
COLD int complete_att(des *d, uint32_t x, double now, ps_err *e)
{
    if (d->t[x].flags & TF_MEM_END) {
        int rc = apply_mem(d, x, ATT_MEM_END, e);
        if (rc)
            return rc;
    }
    if (!(d->t[x].flags & (TF_SUCC | TF_CB)))
        return 0;
    /* Attachments are newest first; callbacks run in registration order. */
    size_t ncb = 0;
    for (uint32_t a = d->t[x].att; a != DES_NIL; a = d->att[a].next) {
        const datt *A = &d->att[a];
        if (A->kind == ATT_SUCC) {
            if (--d->t[A->idx].npend == 0 && make_ready(d, A->idx, now))
                return oom_err(e);
        } else if (A->kind == ATT_CB) {
            if (ncb == d->scratchcap &&
                grow((void **)&d->scratch, sizeof *d->scratch, ncb + 1, &d->scratchcap))
                return oom_err(e);
            d->scratch[ncb++] = A->idx;
        }
    }
    if (!ncb)
        return 0;
    /* The callbacks may grow every array, including scratch: copy the slots. */
    uint32_t one, *slots = ncb == 1 ? &one : malloc(ncb * sizeof *slots);
    if (!slots)
        return oom_err(e);
    for (size_t i = 0; i < ncb; i++)
        slots[i] = d->scratch[ncb - 1 - i];
    int rc = 0;
    for (size_t i = 0; i < ncb && !rc; i++) {
        dcb cb = d->cb[slots[i]];
        rc = cb.fn(d, (int)x, now, cb.user, e);
        if (rc && e && !e->code)
            ps_errf(e, rc, "des: callback of task %u failed with status %d", x, rc);
        if (!rc && activate_new(d, now))
            rc = oom_err(e);
    }
    if (slots != &one)
        free(slots);
    return rc;
}

HOT int complete(des *d, uint32_t x, double now, ps_err *e)
{
    dtask *t = d->t;
    t[x].state = ST_DONE;
    d->end_s[x] = now;
    d->makespan = now;
    d->ndone++;
    if (x < d->ncsr) {
        const uint32_t *sc = d->succ;
        for (uint32_t i = t[x].succ, end = succ_end(d, x); i < end; i++) {
            uint32_t s = sc[i];
            if (--t[s].npend == 0 && UNLIKELY(make_ready(d, s, now)))
                return oom_err(e);
        }
    }
    if (t[x].flags & (TF_MEM_END | TF_SUCC | TF_CB))
        return complete_att(d, x, now, e);
    return 0;
}

static int shared_rearm(des *d, uint32_t r, double now)
{
    dres *R = &d->res[r];
    double m = R->fl[0].tag;
    for (uint32_t i = 1; i < R->nfl; i++)
        if (R->fl[i].tag < m)
            m = R->fl[i].tag;
    double next = now + (m - R->vt) * (double)R->nfl / R->bps;
    if (next < now)
        next = now;
    if (next == R->armed_s)
        return 0;
    R->armed_s = next;
    return push_ev(d, next, DES_RESBIT | r);
}

COLD int shared_join(des *d, uint32_t x, double now)
{
    uint32_t r = (uint32_t)d->t[x].res;
    dres *R = &d->res[r];
    if (R->nfl == 0) {
        R->vt = 0; /* restart virtual time so it never grows large enough to lose bytes */
        R->busy_since_s = now;
    } else {
        R->vt += (now - R->last_s) * R->bps / (double)R->nfl;
    }
    R->last_s = now;
    if (R->nfl == R->flcap && GROW32(R->fl, (size_t)R->nfl + 1, R->flcap))
        return -1;
    R->fl[R->nfl++] = (dflow){R->vt + d->t[x].work, x};
    return shared_rearm(d, r, now);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The earliest flow(s) of a shared link finish.  Stale events (the finish
 * time moved since they were queued) are recognised by their time. */
COLD int shared_event(des *d, uint32_t r, double now, ps_err *e)
{
    dres *R = &d->res[r];
    if (R->nfl == 0 || now != R->armed_s)
        return 0;
    R->armed_s = INFINITY;
    double m = R->fl[0].tag;
    for (uint32_t i = 1; i < R->nfl; i++)
        if (R->fl[i].tag < m)
            m = R->fl[i].tag;
    /* Flows end exactly when virtual time reaches their tag, whatever
     * rounding the time arithmetic did. */
    R->vt = m;
    R->last_s = now;
    uint32_t *done = NULL;
    size_t nd = 0, cap = 0;
    for (uint32_t i = 0; i < R->nfl;) {
        if (R->fl[i].tag <= m) {
            if (grow((void **)&done, sizeof *done, nd + 1, &cap)) {
                free(done);
                return oom_err(e);
            }
            done[nd++] = R->fl[i].task;
            R->fl[i] = R->fl[--R->nfl];
        } else {
            i++;
        }
    }
    if (R->nfl == 0)
        R->busy_s += now - R->busy_since_s;
    else if (shared_rearm(d, r, now)) {
        free(done);
        return oom_err(e);
    }
    qsort(done, nd, sizeof *done, cmp_u32);
    double alpha = R->alpha_s;
    int rc = 0;
    for (size_t i = 0; i < nd && !rc; i++) {
        uint32_t x = done[i];
        d->rel_s[x] = now;
        if (alpha > 0) {
            d->t[x].state = ST_TRANSIT;
            if (push_ev(d, now + alpha, x))
                rc = oom_err(e);
        } else {
            rc = complete(d, x, now, e);
        }
    }
    free(done);
    return rc;
}

HOT int task_event(des *d, uint32_t x, double now, ps_err *e)
{
    dtask *T = &d->t[x];
    if (T->state == ST_RUN && T->kind != K_NONE) {
        dres *R = &d->res[T->res];
        R->busy = 0;
        if (T->kind == K_STREAM) {
            R->busy_s += T->work;
            if (R->q.n && UNLIKELY(res_wake(d, T->res)))
                return oom_err(e);
        } else { /* K_LINK: the link is released; the data arrives α later */
            R->busy_s += T->work / R->bps;
            d->rel_s[x] = now;
            if (R->q.n && UNLIKELY(res_wake(d, T->res)))
                return oom_err(e);
            if (R->alpha_s > 0) {
                T->state = ST_TRANSIT;
                return UNLIKELY(push_ev(d, now + R->alpha_s, x)) ? oom_err(e) : 0;
            }
        }
    }
    return complete(d, x, now, e);
}

HOT int start_task(des *d, uint32_t x, double now, ps_err *e)
{
    dtask *T = &d->t[x];
    d->start_s[x] = now;
    T->state = ST_RUN;
    if (T->flags & TF_MEM_START) {
        int rc = apply_mem(d, x, ATT_MEM_START, e);
        if (rc)
            return rc;
    }
    double end;
    switch (T->kind) {
    case K_STREAM:
        d->res[T->res].busy = 1;
        end = now + T->work;
        break;
    case K_LINK: {
        dres *R = &d->res[T->res];
        R->busy = 1;
        end = now + T->work / R->bps;
        break;
    }
    case K_SHARED:
        return shared_join(d, x, now) ? oom_err(e) : 0;
    default:
        end = now + T->work;
        break;
    }
    return UNLIKELY(push_ev(d, end, x)) ? oom_err(e) : 0;
}

/* Start what became startable in this round, in the order it did. */
HOT int dispatch(des *d, double now, ps_err *e)
{
    /* Starting a task never makes another one ready, so the list is fixed
     * while it is walked. */
    const uint32_t *disp = d->disp;
    for (size_t i = 0, n = d->ndisp; i < n; i++) {
        uint32_t v = disp[i];
        int rc;
        if (v & DES_RESBIT) {
            dres *R = &d->res[v & ~DES_RESBIT];
            R->dirty = 0;
            if (R->busy || !R->q.n)
                continue;
            rc = start_task(d, pq_id(pq_pop(&R->q)), now, e);
        } else {
            rc = start_task(d, v, now, e);
        }
        if (UNLIKELY(rc)) {
            d->ndisp = 0;
            return rc;
        }
    }
    d->ndisp = 0;
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    uint32_t x = ((const evq_ent *)a)->payload, y = ((const evq_ent *)b)->payload;
    return (x > y) - (x < y);
}

/* Ties at one instant are handled in ascending payload (task id; resource
 * events after tasks).  Waves are mostly a handful of events. */
HOT void sort_wave(evq_ent *w, uint32_t n)
{
    if (n < 2)
        return;
    if (n > 48) {
        qsort(w, n, sizeof *w, cmp_ent);
        return;
    }
    for (uint32_t i = 1; i < n; i++) {
        evq_ent x = w[i];
        uint32_t j = i;
        for (; j > 0 && w[j - 1].payload > x.payload; j--)
            w[j] = w[j - 1];
        w[j] = x;
    }
}

COLD int report_deadlock(des *d, ps_err *e)
{
    uint8_t *cand = malloc(d->nt);
    if (!cand)
        return oom_err(e);
    for (uint32_t i = 0; i < d->nt; i++)
        cand[i] = d->t[i].state != ST_DONE;
    if (!report_cycle(d, cand, e))
        ps_errf(e, PS_ERUN, "des: %u tasks never ran", d->nt - d->ndone);
    free(cand);
    return e ? e->code : PS_EINPUT;
}

int des_run(des *d, ps_err *e)
{
    if (d->phase != 0)
        return ps_errf(e, PS_EINPUT, "des: des_run called twice on one engine");
    if (build_csr(d))
        return oom_err(e);
    /* No separate cycle check: the run itself is Kahn's algorithm, and a
     * task on a cycle never becomes ready; report_deadlock names the cycle
     * when the queue runs dry with tasks left. */
    d->phase = 1;
    d->now = 0;
    d->watermark = 0;
    if (activate_new(d, 0))
        return oom_err(e);
    int rc = dispatch(d, 0, e);
    while (!rc && d->q.n) {
        if (UNLIKELY(evq_next_wave(&d->q, &d->wave))) {
            rc = oom_err(e);
            break;
        }
        double now = evq_min_time(&d->q);
        d->now = now;
        /* Events due now, in waves: those created while handling one wave
         * (zero latency, flows ending at once) form the next. */
        for (;;) {
            evq_ent *w = d->wave.v;
            uint32_t n = d->wave.n;
            sort_wave(w, n);
            d->events += n;
            for (uint32_t k = 0; k < n && !rc; k++) {
                uint32_t p = w[k].payload;
                rc = (p & DES_RESBIT) ? shared_event(d, p & ~DES_RESBIT, now, e)
                                      : task_event(d, p, now, e);
            }
            d->wave.n = 0;
            if (rc || !d->q.b[0].n)
                break;
            if (UNLIKELY(evq_next_wave(&d->q, &d->wave))) {
                rc = oom_err(e);
                break;
            }
        }
        if (!rc)
            rc = dispatch(d, now, e);
    }
    d->phase = 2;
    if (rc)
        return rc;
    if (d->ndone < d->nt)
        return report_deadlock(d, e);
    return 0;
}

/* ------------------------------------------------------------------ */
/* results                                                             */

double des_makespan_s(const des *d) { return d->makespan; }
uint64_t des_event_count(const des *d) { return d->events; }
int des_task_count(const des *d) { return (int)d->nt; }
int des_resource_count(const des *d) { return d->nres; }
int des_pool_count(const des *d) { return d->npool; }

const char *des_resource_name(const des *d, int r)
{
    return r >= 0 && r < d->nres ? d->res[r].name : NULL;
}

des_res_kind des_resource_kind(const des *d, int r)
{
    return r >= 0 && r < d->nres ? (des_res_kind)d->res[r].kind : (des_res_kind)0;
}

double des_resource_busy_s(const des *d, int r)
{
    if (r < 0 || r >= d->nres)
        return NAN;
    const dres *R = &d->res[r];
    /* A shared link still busy when the run stopped (OOM) counts until now. */
    if (R->kind == K_SHARED && R->nfl)
        return R->busy_s + d->now - R->busy_since_s;
    return R->busy_s;
}

double des_resource_utilization(const des *d, int r)
{
    double b = des_resource_busy_s(d, r);
    return d->makespan > 0 ? b / d->makespan : 0;
}

const char *des_pool_name(const des *d, int p)
{
    return p >= 0 && p < d->npool ? d->pool[p].name : NULL;
}
double des_pool_capacity_bytes(const des *d, int p)
{
    return p >= 0 && p < d->npool ? d->pool[p].cap : NAN;
}
double des_pool_used_bytes(const des *d, int p)
{
    return p >= 0 && p < d->npool ? d->pool[p].used : NAN;
}
double des_pool_peak_bytes(const des *d, int p)
{
    return p >= 0 && p < d->npool ? d->pool[p].peak : NAN;
}

double des_task_start_s(const des *d, int x) { return bad_task(d, x) ? NAN : d->start_s[x]; }
double des_task_end_s(const des *d, int x) { return bad_task(d, x) ? NAN : d->end_s[x]; }

int des_task_get(const des *d, int x, des_task_info *out, ps_err *e)
{
    if (bad_task(d, x))
        return ps_errf(e, PS_EINPUT, "des: unknown task %d (%u tasks)", x, d->nt);
    const dtask *T = &d->t[x];
    out->label = d->lab[d->label[x]];
    out->tag0 = d->tag0[x];
    out->tag1 = d->tag1[x];
    out->resource = T->res;
    out->work = T->work;
    out->start_s = d->start_s[x];
    out->end_s = d->end_s[x];
    if (T->kind == K_LINK || T->kind == K_SHARED)
        out->release_s = T->state >= ST_TRANSIT ? d->rel_s[x] : NAN;
    else
        out->release_s = d->end_s[x];
    return 0;
}

int des_oom_get(const des *d, des_oom *out)
{
    if (!d->has_oom)
        return 0;
    if (out)
        *out = d->oom;
    return 1;
}
