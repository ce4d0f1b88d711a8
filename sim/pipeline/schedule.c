/* Pipeline schedules -> sim/des task graphs.  See schedule.h and
 * schedule_impl.h. */
#include "sim/pipeline/schedule.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/pipeline/schedule_impl.h"

const char *pp_schedule_name(pp_schedule s)
{
    switch (s) {
    case PP_GPIPE:
        return "gpipe";
    case PP_1F1B:
        return "1f1b";
    case PP_INTERLEAVED:
        return "interleaved";
    case PP_ZB_H1:
        return "zb-h1";
    }
    return "unknown";
}

pp_schedule pp_schedule_parse(const char *name)
{
    if (!name)
        return 0;
    if (strcmp(name, "gpipe") == 0)
        return PP_GPIPE;
    if (strcmp(name, "1f1b") == 0 || strcmp(name, "pipedream-flush") == 0 ||
        strcmp(name, "graphpipe") == 0 || strcmp(name, "gpp-1f1b") == 0)
        return PP_1F1B;
    if (strcmp(name, "interleaved") == 0 || strcmp(name, "interleaved-1f1b") == 0)
        return PP_INTERLEAVED;
    if (strcmp(name, "zb-h1") == 0 || strcmp(name, "zbh1") == 0 || strcmp(name, "zb1p") == 0)
        return PP_ZB_H1;
    return 0;
}

size_t pp_stage_op_count_ex(pp_schedule s, int microbatches, int chunks)
{
    if (microbatches < 1)
        return 0;
    switch (s) {
    case PP_GPIPE:
    case PP_1F1B:
        return 2 * (size_t)microbatches;
    case PP_ZB_H1:
        return 3 * (size_t)microbatches;
    case PP_INTERLEAVED:
        return chunks >= 1 ? 2 * (size_t)microbatches * (size_t)chunks : 0;
    }
    return 0;
}

size_t pp_stage_op_count(pp_schedule s, int microbatches)
{
    return pp_stage_op_count_ex(s, microbatches, 1);
}

/* Megatron-LM's interleaved 1F1B (forward_backward_pipelining_with_
 * interleaving): the k-th forward of a device runs chunk (k mod pv) / p on
 * micro-batch (k / pv) p + k mod p; backwards visit the chunks in reverse.
 * Warm-up: 2(p - rank - 1) + (v - 1) p forwards (all of them when m = p),
 * then one forward and one backward per step, then the remaining
 * backwards. */
static void order_interleaved(int m, int p, int v, int rank, pp_op *ops)
{
    int total = m * v;
    int warm = (m == p) ? total : 2 * (p - rank - 1) + (v - 1) * p;
    if (warm > total)
        warm = total;
    size_t k = 0;
    int pv = p * v;
#define FWD_OP(i) ((pp_op){PP_OP_FWD, ((i) / pv) * p + (i) % p, ((i) % pv) / p})
#define BWD_OP(i) ((pp_op){PP_OP_BWD, ((i) / pv) * p + (i) % p, v - 1 - ((i) % pv) / p})
    for (int i = 0; i < warm; i++)
        ops[k++] = FWD_OP(i);
    for (int i = 0; i < total - warm; i++) {
        ops[k++] = FWD_OP(warm + i);
        ops[k++] = BWD_OP(i);
    }
    for (int i = total - warm; i < total; i++)
        ops[k++] = BWD_OP(i);
#undef FWD_OP
#undef BWD_OP
}

int pp_stage_order_ex(const pp_order_spec *o, pp_op *ops, ps_err *e)
{
    int m = o->microbatches, depth = o->depth;
    if (m < 1)
        return ps_errf(e, PS_EINPUT, "pipeline: %d micro-batches; need at least 1", m);
    if (o->schedule != PP_INTERLEAVED && depth < 1)
        return ps_errf(e, PS_EINPUT, "pipeline: stage depth %d; need at least 1", depth);
    size_t k = 0;
    switch (o->schedule) {
    case PP_GPIPE:
        for (int i = 0; i < m; i++)
            ops[k++] = (pp_op){PP_OP_FWD, i, 0};
        for (int i = 0; i < m; i++)
            ops[k++] = (pp_op){PP_OP_BWD, i, 0};
        return 0;
    case PP_1F1B: {
        /* Enough forwards in flight to keep the stages below busy (depth),
         * then each backward frees the slot the next forward takes. */
        int w = depth < m ? depth : m;
        for (int i = 0; i < w; i++)
            ops[k++] = (pp_op){PP_OP_FWD, i, 0};
        for (int i = 0; i < m; i++) {
            ops[k++] = (pp_op){PP_OP_BWD, i, 0};
            if (w + i < m)
                ops[k++] = (pp_op){PP_OP_FWD, w + i, 0};
        }
        return 0;
    }
    case PP_ZB_H1: {
        /* 1F1B's warm-up; in the steady state B(k), then W(k - lag), then
         * the next F.  A lag of i-1 on chain stage i lets the input
         * gradients run ahead to the first stage, and the deferred W fill
         * the later stages' drain instead of idling there. */
        int w = depth < m ? depth : m, lag = o->lag < 0 ? 0 : o->lag;
        if (lag > m)
            lag = m;
        for (int i = 0; i < w; i++)
            ops[k++] = (pp_op){PP_OP_FWD, i, 0};
        for (int i = 0; i < m; i++) {
            ops[k++] = (pp_op){PP_OP_BWD, i, 0};
            if (i - lag >= 0)
                ops[k++] = (pp_op){PP_OP_WGRAD, i - lag, 0};
            if (w + i < m)
                ops[k++] = (pp_op){PP_OP_FWD, w + i, 0};
        }
        for (int i = m - lag; i < m; i++)
            ops[k++] = (pp_op){PP_OP_WGRAD, i, 0};
        return 0;
    }
    case PP_INTERLEAVED:
        if (o->chunks < 1 || o->stages < 1 || o->rank < 0 || o->rank >= o->stages)
            return ps_errf(e, PS_EINPUT,
                           "pipeline: interleaved order needs chunks >= 1 (got %d) and rank %d "
                           "in 0..%d",
                           o->chunks, o->rank, o->stages - 1);
        if (m % o->stages != 0)
            return ps_errf(e, PS_EINPUT,
                           "pipeline: interleaved 1F1B needs the micro-batches (%d) to be a "
                           "multiple of the stages (%d)",
                           m, o->stages);
        if (o->chunks == 1) {
            /* Megatron runs v = 1 through its plain 1F1B; the interleaved
             * warm-up would hold p - rank - 1 more micro-batches for nothing. */
            pp_order_spec f = {.schedule = PP_1F1B, .microbatches = m,
                               .depth = o->stages - o->rank};
            return pp_stage_order_ex(&f, ops, e);
        }
        order_interleaved(m, o->stages, o->chunks, o->rank, ops);
        return 0;
    }
    return ps_errf(e, PS_EINPUT, "pipeline: unknown schedule %d", (int)o->schedule);
}

int pp_stage_order(pp_schedule s, int m, int depth, pp_op *ops, ps_err *e)
{
    if (s == PP_INTERLEAVED)
        return ps_errf(e, PS_EINPUT, "pipeline: interleaved orders need pp_stage_order_ex");
    pp_order_spec o = {.schedule = s, .microbatches = m, .depth = depth};
    return pp_stage_order_ex(&o, ops, e);
}

/* ------------------------------------------------------------------ */

struct pp_sim {
    des *d;
    int ng, nn;
    int *node_m;           /* [nn] */
    size_t *node_off;      /* [nn] offset of node k's micro-batches in the task arrays */
    int *fwd, *bwd, *wgt;  /* [sum m] task ids (wgt -1 unless ZB) */
    int *allreduce;        /* [nn] */
    int *node_group;       /* [nn] */
    int *stream, *pool;    /* [ng] */
    int *peak_count;       /* [ng] in-flight peak, from the order */
    int ndev;              /* device slots: ng, or distinct devices when shared */
    int *dev_id;           /* [ndev] device id of slot (shared), else the group */
    int *group_slot;       /* [ng] */
    int *dev_stream;       /* [ndev] */
    int shared;
    double p2p_bytes;
    pp_result r;           /* per group */
    int ran;
    void *user;
    void (*user_free)(void *);
};

void pp_sim_free(pp_sim *s)
{
    if (!s)
        return;
    if (s->user_free)
        s->user_free(s->user);
    des_free(s->d);
    free(s->node_m);
    free(s->node_off);
    free(s->fwd);
    free(s->bwd);
    free(s->wgt);
    free(s->allreduce);
    free(s->node_group);
    free(s->stream);
    free(s->pool);
    free(s->peak_count);
    free(s->dev_id);
    free(s->group_slot);
    free(s->dev_stream);
    free(s->r.busy_s);
    free(s->r.peak_mem_bytes);
    free(s->r.peak_inflight);
    free(s);
}

static int oom(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "pipeline: out of host memory");
}

static int fail(ps_err *e)
{
    return e && e->code ? e->code : PS_ERUN;
}

/* One link resource per ordered pair of groups that exchange data. */
typedef struct link_key {
    int from, to, id;
} link_key;

static int get_link(des *d, link_key **keys, int *nk, int *capk, int from, int to, double alpha,
                    double bps, ps_err *e)
{
    for (int i = 0; i < *nk; i++)
        if ((*keys)[i].from == from && (*keys)[i].to == to)
            return (*keys)[i].id;
    if (*nk == *capk) {
        int nc = *capk ? 2 * *capk : 16;
        link_key *t = realloc(*keys, (size_t)nc * sizeof *t);
        if (!t) {
            oom(e);
            return -1;
        }
        *keys = t;
        *capk = nc;
    }
    char name[64];
    snprintf(name, sizeof name, "link%d->%d", from, to);
    int id = des_add_link(d, name, alpha, bps, e);
    if (id < 0)
        return -1;
    (*keys)[(*nk)++] = (link_key){from, to, id};
    return id;
}

static int compile(pp_sim *s, const pp_graph *g, ps_err *e)
{
    des *d = s->d;
    int rc = 0, zb = g->sched == PP_ZB_H1;
    char name[64];
    int *group_nodes = NULL; /* [ng][chunks] node of chunk c */
    pp_op *ops = NULL;
    link_key *keys = NULL;
    int nk = 0, capk = 0;
    int maxc = g->sched == PP_INTERLEAVED ? g->chunks : 1;
    group_nodes = malloc((size_t)g->ng * maxc * sizeof *group_nodes);
    if (!group_nodes)
        return oom(e);
    for (int i = 0; i < g->ng * maxc; i++)
        group_nodes[i] = -1;
    for (int k = 0; k < g->nn; k++) {
        const pp_gnode *n = &g->nodes[k];
        if (n->chunk < 0 || n->chunk >= maxc || group_nodes[n->group * maxc + n->chunk] >= 0) {
            rc = ps_errf(e, PS_EINPUT, "pipeline: node %d: chunk %d of group %d is taken or "
                         "out of range", k, n->chunk, n->group);
            goto out;
        }
        group_nodes[n->group * maxc + n->chunk] = k;
    }
    for (int gi = 0; gi < g->ng; gi++) {
        const pp_ggroup *gr = &g->groups[gi];
        int slot = s->group_slot[gi];
        if (s->shared) {
            /* The first group on a device creates its stream and pool. */
            int first = 1;
            for (int q = 0; q < gi && first; q++)
                first = s->group_slot[q] != slot;
            if (first) {
                snprintf(name, sizeof name, "dev%d", s->dev_id[slot]);
                s->dev_stream[slot] = des_add_stream(d, name, DES_FIFO, e);
                snprintf(name, sizeof name, "dev%d.mem", s->dev_id[slot]);
                int pl = des_add_pool(d, name, gr->cap_bytes, e);
                if (s->dev_stream[slot] < 0 || pl < 0) {
                    rc = fail(e);
                    goto out;
                }
                s->stream[gi] = s->dev_stream[slot];
                s->pool[gi] = pl;
            } else {
                for (int q = 0; q < gi; q++)
                    if (s->group_slot[q] == slot) {
                        s->stream[gi] = s->stream[q];
                        s->pool[gi] = s->pool[q];
                        break;
                    }
            }
            continue;
        }
        s->stream[gi] = des_add_stream(d, gr->name, DES_FIFO, e);
        snprintf(name, sizeof name, "%s.mem", gr->name);
        s->pool[gi] = des_add_pool(d, name, gr->cap_bytes, e);
        if (s->stream[gi] < 0 || s->pool[gi] < 0) {
            rc = fail(e);
            goto out;
        }
        s->dev_stream[slot] = s->stream[gi];
    }
    size_t maxops = 0;
    for (int gi = 0; gi < g->ng; gi++) {
        int c0 = group_nodes[gi * maxc];
        if (c0 < 0) {
            rc = ps_errf(e, PS_EINPUT, "pipeline: group %d has no chunk 0", gi);
            goto out;
        }
        size_t n = pp_stage_op_count_ex(g->sched, g->nodes[c0].m, maxc);
        if (n > maxops)
            maxops = n;
    }
    ops = malloc((maxops ? maxops : 1) * sizeof *ops);
    if (!ops) {
        rc = oom(e);
        goto out;
    }
    for (int gi = 0; gi < g->ng && !rc; gi++) {
        const pp_ggroup *gr = &g->groups[gi];
        const pp_gnode *n0 = &g->nodes[group_nodes[gi * maxc]];
        pp_order_spec os = {.schedule = g->sched, .microbatches = n0->m, .depth = n0->depth,
                            .lag = n0->lag, .chunks = maxc, .stages = g->ng, .rank = gi};
        if ((rc = pp_stage_order_ex(&os, ops, e)))
            break;
        size_t nops = pp_stage_op_count_ex(g->sched, n0->m, maxc);
        int prev = -1, held = 0;
        if (gr->static_bytes > 0) {
            /* Weights, gradients and optimizer state live for the whole
             * iteration: allocate them before the group's first op. */
            snprintf(name, sizeof name, "static");
            prev = des_add_task(d, DES_NO_RESOURCE, 0, name, gi, DES_NO_TAG, e);
            if (prev < 0 || des_add_mem(d, prev, s->pool[gi], gr->static_bytes, DES_AT_START, e)) {
                rc = fail(e);
                break;
            }
        }
        for (size_t k = 0; k < nops && !rc; k++) {
            int node = group_nodes[gi * maxc + ops[k].chunk];
            if (node < 0) {
                rc = ps_errf(e, PS_EINPUT, "pipeline: group %d has no chunk %d", gi, ops[k].chunk);
                break;
            }
            const pp_gnode *n = &g->nodes[node];
            int kind = ops[k].kind, mb = ops[k].mb;
            if (mb >= n->m) {
                rc = ps_errf(e, PS_EINPUT, "pipeline: node %d runs %d micro-batches, order asks "
                             "for %d", node, n->m, mb);
                break;
            }
            double dur = kind == PP_OP_FWD ? n->f_s : kind == PP_OP_BWD ? n->b_s : n->w_s;
            const char *lab = kind == PP_OP_FWD ? "F" : kind == PP_OP_BWD ? "B" : "W";
            int x = des_add_task(d, s->stream[gi], dur, lab, node, mb, e);
            if (x < 0) {
                rc = fail(e);
                break;
            }
            size_t slot = s->node_off[node] + mb;
            int *arr = kind == PP_OP_FWD ? s->fwd : kind == PP_OP_BWD ? s->bwd : s->wgt;
            if (arr[slot] >= 0) {
                rc = ps_errf(e, PS_EINPUT, "pipeline: node %d micro-batch %d op %s twice", node,
                             mb, lab);
                break;
            }
            arr[slot] = x;
            if (prev >= 0 && (rc = des_add_dep(d, prev, x, e)))
                break;
            prev = x;
            /* Activations live from the forward's start to the last op that
             * reads them: the backward, or under ZB the weight gradient. */
            int frees = zb ? kind == PP_OP_WGRAD : kind == PP_OP_BWD;
            if (kind == PP_OP_FWD || frees) {
                double sign = kind == PP_OP_FWD ? 1 : -1;
                des_when when = kind == PP_OP_FWD ? DES_AT_START : DES_AT_END;
                if (n->act_bytes != 0 &&
                    (rc = des_add_mem(d, x, s->pool[gi], sign * n->act_bytes, when, e)))
                    break;
                /* One stream runs the order op by op, and the engine applies
                 * frees at t before allocations at t, so the micro-batches
                 * held at any time are a prefix count of the order: no
                 * counting pool needed. */
                held += kind == PP_OP_FWD ? 1 : -1;
                if (held > s->peak_count[gi])
                    s->peak_count[gi] = held;
            }
        }
        if (rc)
            break;
    }
    /* Per node: F -> B (-> W), and the all-reduce after the last backward op. */
    for (int k = 0; k < g->nn && !rc; k++) {
        const pp_gnode *n = &g->nodes[k];
        int last = -1;
        double last_start = -1;
        for (int mb = 0; mb < n->m && !rc; mb++) {
            size_t slot = s->node_off[k] + mb;
            if (s->fwd[slot] < 0 || s->bwd[slot] < 0 || (zb && s->wgt[slot] < 0)) {
                rc = ps_errf(e, PS_EINPUT, "pipeline: node %d micro-batch %d is missing an op in "
                             "the order", k, mb);
                break;
            }
            rc = des_add_dep(d, s->fwd[slot], s->bwd[slot], e);
            if (!rc && zb)
                rc = des_add_dep(d, s->bwd[slot], s->wgt[slot], e);
            int lastop = zb ? s->wgt[slot] : s->bwd[slot];
            /* Task ids grow along each stream's order: the largest is the last. */
            if (lastop > last_start) {
                last_start = lastop;
                last = lastop;
            }
        }
        if (!rc && n->allreduce_s > 0) {
            int x = des_add_task(d, DES_NO_RESOURCE, n->allreduce_s, "allreduce", k, DES_NO_TAG, e);
            if (x < 0 || des_add_dep(d, last, x, e)) {
                rc = fail(e);
                break;
            }
            s->allreduce[k] = x;
        }
    }
    /* Data dependencies along the edges, through transfers when bytes > 0. */
    for (int q = 0; q < g->ne && !rc; q++) {
        const pp_gedge *ed = &g->edges[q];
        const pp_gnode *u = &g->nodes[ed->from], *v = &g->nodes[ed->to];
        int lf = -1, lb = -1;
        if (ed->fwd_bytes_per_sample > 0 &&
            (lf = get_link(d, &keys, &nk, &capk, u->group, v->group, ed->alpha_s, ed->bytes_per_s,
                           e)) < 0) {
            rc = fail(e);
            break;
        }
        if (ed->bwd_bytes_per_sample > 0 &&
            (lb = get_link(d, &keys, &nk, &capk, v->group, u->group, ed->alpha_s, ed->bytes_per_s,
                           e)) < 0) {
            rc = fail(e);
            break;
        }
        /* Walk the overlapping (j, k) pairs of sample ranges in order. */
        long long bu = u->b, bv = v->b;
        int j = 0, kk = 0;
        while (j < u->m && kk < v->m && !rc) {
            long long lo = j * bu > kk * bv ? j * bu : kk * bv;
            long long hi = (j + 1) * bu < (kk + 1) * bv ? (j + 1) * bu : (kk + 1) * bv;
            double samples = (double)(hi - lo);
            int fu = s->fwd[s->node_off[ed->from] + j], fv = s->fwd[s->node_off[ed->to] + kk];
            int bku = s->bwd[s->node_off[ed->from] + j], bkv = s->bwd[s->node_off[ed->to] + kk];
            if (lf >= 0) {
                double bytes = ed->fwd_bytes_per_sample * samples;
                int x = des_add_transfer(d, lf, bytes, "send_act", ed->from, j, e);
                if (x < 0 || des_add_dep(d, fu, x, e) || des_add_dep(d, x, fv, e))
                    rc = fail(e);
                s->p2p_bytes += bytes;
            } else {
                rc = des_add_dep(d, fu, fv, e);
            }
            if (rc)
                break;
            if (lb >= 0) {
                double bytes = ed->bwd_bytes_per_sample * samples;
                int x = des_add_transfer(d, lb, bytes, "send_grad", ed->to, kk, e);
                if (x < 0 || des_add_dep(d, bkv, x, e) || des_add_dep(d, x, bku, e))
                    rc = fail(e);
                s->p2p_bytes += bytes;
            } else {
                rc = des_add_dep(d, bkv, bku, e);
            }
            if ((j + 1) * bu == hi)
                j++;
            if ((kk + 1) * bv == hi)
                kk++;
        }
    }
out:
    free(group_nodes);
    free(ops);
    free(keys);
    return rc;
}

pp_sim *pp_sim_graph(const pp_graph *g, ps_err *e)
{
    if (g->nn < 1 || g->ng < 1) {
        ps_errf(e, PS_EINPUT, "pipeline: a graph needs at least one stage");
        return NULL;
    }
    if (!pp_stage_op_count_ex(g->sched, 1, g->chunks > 0 ? g->chunks : 1)) {
        ps_errf(e, PS_EINPUT, "pipeline: unknown schedule %d", (int)g->sched);
        return NULL;
    }
    size_t total = 0;
    for (int k = 0; k < g->nn; k++) {
        const pp_gnode *n = &g->nodes[k];
        if (n->m < 1 || n->b < 1 || n->group < 0 || n->group >= g->ng) {
            ps_errf(e, PS_EINPUT, "pipeline: node %d: %d micro-batches of %d samples on group "
                    "%d; need >= 1, >= 1 and a group in 0..%d", k, n->m, n->b, n->group, g->ng - 1);
            return NULL;
        }
        double v[5] = {n->f_s, n->b_s, n->w_s, n->act_bytes, n->allreduce_s};
        for (int i = 0; i < 5; i++)
            if (!isfinite(v[i]) || v[i] < 0) {
                ps_errf(e, PS_EINPUT, "pipeline: node %d: a time or size is %g; must be finite "
                        "and >= 0", k, v[i]);
                return NULL;
            }
        total += (size_t)n->m;
    }
    if (total * 3 > ((size_t)1 << 29)) {
        ps_errf(e, PS_EINPUT, "pipeline: %zu micro-batch ops is too many tasks", total * 3);
        return NULL;
    }
    for (int q = 0; q < g->ne; q++) {
        const pp_gedge *ed = &g->edges[q];
        if (ed->from < 0 || ed->from >= g->nn || ed->to < 0 || ed->to >= g->nn) {
            ps_errf(e, PS_EINPUT, "pipeline: edge %d: %d -> %d out of range", q, ed->from, ed->to);
            return NULL;
        }
        if (!(ed->fwd_bytes_per_sample >= 0) || !(ed->bwd_bytes_per_sample >= 0)) {
            ps_errf(e, PS_EINPUT, "pipeline: edge %d: negative bytes", q);
            return NULL;
        }
        if ((ed->fwd_bytes_per_sample > 0 || ed->bwd_bytes_per_sample > 0) &&
            !(ed->bytes_per_s > 0 && isfinite(ed->alpha_s) && ed->alpha_s >= 0)) {
            ps_errf(e, PS_EINPUT, "pipeline: transfers need link_bytes_per_s > 0 (got %g) and "
                    "link_alpha_s >= 0 (got %g)", ed->bytes_per_s, ed->alpha_s);
            return NULL;
        }
    }
    pp_sim *s = calloc(1, sizeof *s);
    if (!s) {
        oom(e);
        return NULL;
    }
    s->ng = g->ng;
    s->nn = g->nn;
    s->node_m = malloc((size_t)g->nn * sizeof *s->node_m);
    s->node_off = malloc((size_t)g->nn * sizeof *s->node_off);
    s->node_group = malloc((size_t)g->nn * sizeof *s->node_group);
    s->allreduce = malloc((size_t)g->nn * sizeof *s->allreduce);
    s->fwd = malloc(total * sizeof *s->fwd);
    s->bwd = malloc(total * sizeof *s->bwd);
    s->wgt = malloc(total * sizeof *s->wgt);
    s->stream = malloc((size_t)g->ng * sizeof *s->stream);
    s->pool = malloc((size_t)g->ng * sizeof *s->pool);
    s->peak_count = calloc((size_t)g->ng, sizeof *s->peak_count);
    s->dev_id = malloc((size_t)g->ng * sizeof *s->dev_id);
    s->group_slot = malloc((size_t)g->ng * sizeof *s->group_slot);
    s->dev_stream = malloc((size_t)g->ng * sizeof *s->dev_stream);
    s->r.busy_s = calloc((size_t)g->ng, sizeof *s->r.busy_s);
    s->r.peak_mem_bytes = calloc((size_t)g->ng, sizeof *s->r.peak_mem_bytes);
    s->r.peak_inflight = calloc((size_t)g->ng, sizeof *s->r.peak_inflight);
    s->d = des_new(e);
    if (!s->node_m || !s->node_off || !s->node_group || !s->allreduce || !s->fwd || !s->bwd ||
        !s->wgt || !s->stream || !s->pool || !s->peak_count || !s->r.busy_s ||
        !s->r.peak_mem_bytes || !s->r.peak_inflight || !s->d || !s->dev_id || !s->group_slot ||
        !s->dev_stream) {
        pp_sim_free(s);
        oom(e);
        return NULL;
    }
    if (g->group_device) {
        /* Slots: distinct device ids, ascending. */
        s->shared = 1;
        for (int gi = 0; gi < g->ng; gi++) {
            int id = g->group_device[gi];
            if (id < 0) {
                ps_errf(e, PS_EINPUT, "pipeline: group %d on device %d; need >= 0", gi, id);
                pp_sim_free(s);
                return NULL;
            }
            int seen = 0;
            for (int k = 0; k < s->ndev && !seen; k++)
                seen = s->dev_id[k] == id;
            if (!seen)
                s->dev_id[s->ndev++] = id;
        }
        for (int a = 1; a < s->ndev; a++)
            for (int b = a; b > 0 && s->dev_id[b - 1] > s->dev_id[b]; b--) {
                int t = s->dev_id[b];
                s->dev_id[b] = s->dev_id[b - 1];
                s->dev_id[b - 1] = t;
            }
        for (int gi = 0; gi < g->ng; gi++)
            for (int k = 0; k < s->ndev; k++)
                if (s->dev_id[k] == g->group_device[gi])
                    s->group_slot[gi] = k;
    } else {
        s->ndev = g->ng;
        for (int gi = 0; gi < g->ng; gi++)
            s->dev_id[gi] = s->group_slot[gi] = gi;
    }
    size_t off = 0;
    for (int k = 0; k < g->nn; k++) {
        s->node_m[k] = g->nodes[k].m;
        s->node_off[k] = off;
        s->node_group[k] = g->nodes[k].group;
        s->allreduce[k] = -1;
        off += (size_t)g->nodes[k].m;
    }
    memset(s->fwd, 0xff, total * sizeof *s->fwd);
    memset(s->bwd, 0xff, total * sizeof *s->bwd);
    memset(s->wgt, 0xff, total * sizeof *s->wgt);
    if (compile(s, g, e)) {
        pp_sim_free(s);
        return NULL;
    }
    s->r.stages = g->ng;
    s->r.microbatches = g->nodes[0].m;
    return s;
}

static int check_vec(const double *v, int n, const char *what, int allow_null, ps_err *e)
{
    if (!v)
        return allow_null ? 0 : ps_errf(e, PS_EINPUT, "pipeline: %s is missing", what);
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return ps_errf(e, PS_EINPUT, "pipeline: %s[%d] = %g; must be finite and >= 0", what, i, v[i]);
    return 0;
}

pp_sim *pp_sim_chain(const pp_chain *c, pp_schedule sched, ps_err *e)
{
    int p = c->stages, m = c->microbatches;
    int v = sched == PP_INTERLEAVED ? (c->chunks > 0 ? c->chunks : 1) : 1;
    if (p < 1 || m < 1) {
        ps_errf(e, PS_EINPUT, "pipeline: %d stages x %d micro-batches; need at least 1 of each", p, m);
        return NULL;
    }
    if ((size_t)p * (size_t)m * (size_t)v > ((size_t)1 << 27)) {
        ps_errf(e, PS_EINPUT, "pipeline: %d stages x %d micro-batches is too many tasks", p, m);
        return NULL;
    }
    if (!pp_stage_op_count_ex(sched, m, v)) {
        ps_errf(e, PS_EINPUT, "pipeline: unknown schedule %d", (int)sched);
        return NULL;
    }
    if (sched == PP_INTERLEAVED && m % p != 0) {
        ps_errf(e, PS_EINPUT, "pipeline: interleaved 1F1B needs the micro-batches (%d) to be a "
                "multiple of the stages (%d)", m, p);
        return NULL;
    }
    if (check_vec(c->fwd_s, p, "fwd_s", 0, e) || check_vec(c->bwd_s, p, "bwd_s", 0, e) ||
        check_vec(c->act_bytes, p, "act_bytes", 1, e) ||
        check_vec(c->wgrad_s, p, "wgrad_s", 1, e) ||
        check_vec(c->send_fwd_bytes, p - 1, "send_fwd_bytes", 1, e) ||
        check_vec(c->send_bwd_bytes, p - 1, "send_bwd_bytes", 1, e))
        return NULL;
    if (c->wgrad_s)
        for (int i = 0; i < p; i++)
            if (c->wgrad_s[i] > c->bwd_s[i]) {
                ps_errf(e, PS_EINPUT, "pipeline: wgrad_s[%d] = %g exceeds bwd_s[%d] = %g", i,
                        c->wgrad_s[i], i, c->bwd_s[i]);
                return NULL;
            }
    int sends = 0;
    for (int i = 0; i + 1 < p; i++)
        sends |= (c->send_fwd_bytes && c->send_fwd_bytes[i] > 0) ||
                 (c->send_bwd_bytes && c->send_bwd_bytes[i] > 0);
    if (sends && !(c->link_bytes_per_s > 0 && isfinite(c->link_alpha_s) && c->link_alpha_s >= 0)) {
        ps_errf(e, PS_EINPUT, "pipeline: transfers need link_bytes_per_s > 0 (got %g) and "
                "link_alpha_s >= 0 (got %g)", c->link_bytes_per_s, c->link_alpha_s);
        return NULL;
    }
    if (!(c->mem_capacity_bytes >= 0)) {
        ps_errf(e, PS_EINPUT, "pipeline: mem_capacity_bytes %g must be >= 0", c->mem_capacity_bytes);
        return NULL;
    }
    int nn = p * v;
    pp_gnode *nodes = calloc((size_t)nn, sizeof *nodes);
    pp_gedge *edges = nn > 1 ? calloc((size_t)(nn - 1), sizeof *edges) : NULL;
    pp_ggroup *groups = calloc((size_t)p, sizeof *groups);
    if (!nodes || (nn > 1 && !edges) || !groups) {
        free(nodes);
        free(edges);
        free(groups);
        oom(e);
        return NULL;
    }
    double cap = c->mem_capacity_bytes > 0 ? c->mem_capacity_bytes : INFINITY;
    for (int i = 0; i < p; i++) {
        snprintf(groups[i].name, sizeof groups[i].name, "stage%d", i);
        groups[i].cap_bytes = cap;
        groups[i].nnodes = v;
    }
    /* Virtual stage j = chunk (j / p) on device (j mod p). */
    for (int j = 0; j < nn; j++) {
        int i = j % p;
        pp_gnode *n = &nodes[j];
        n->group = i;
        n->chunk = j / p;
        n->m = m;
        n->b = 1;
        n->f_s = c->fwd_s[i] / v;
        n->b_s = c->bwd_s[i] / v;
        if (sched == PP_ZB_H1) {
            double w = c->wgrad_s ? c->wgrad_s[i] : c->bwd_s[i] / 2;
            n->w_s = w;
            n->b_s = c->bwd_s[i] - w;
        }
        n->act_bytes = (c->act_bytes ? c->act_bytes[i] : 0) / v;
        n->depth = p - i;
        n->lag = i;
    }
    for (int j = 0; j + 1 < nn; j++) {
        int i = j % p;
        /* Boundary i's bytes; the wrap from the last device back to the
         * first (interleaving) takes boundary 0's. */
        int bi = i < p - 1 ? i : 0;
        edges[j] = (pp_gedge){j, j + 1, c->send_fwd_bytes && p > 1 ? c->send_fwd_bytes[bi] : 0,
                              c->send_bwd_bytes && p > 1 ? c->send_bwd_bytes[bi] : 0,
                              c->link_alpha_s, c->link_bytes_per_s};
    }
    pp_graph g = {.nn = nn, .ne = nn - 1, .ng = p, .nodes = nodes, .edges = edges,
                  .groups = groups, .sched = sched, .chunks = v};
    pp_sim *s = pp_sim_graph(&g, e);
    free(nodes);
    free(edges);
    free(groups);
    return s;
}

int pp_sim_run(pp_sim *s, ps_err *e)
{
    if (s->ran)
        return ps_errf(e, PS_EINPUT, "pipeline: pp_sim_run called twice");
    s->ran = 1;
    int rc = des_run(s->d, e);
    if (rc == PS_EINPUT)
        /* The task graph is acyclic except through the stage orders, so a
         * cycle means an op waits on one its stage runs later. */
        ps_err_prefix(e, "pipeline: the schedule deadlocks (a stage's order runs an op before "
                      "one it waits on): ");
    if (rc && rc != DES_OOM)
        return rc;
    pp_result *r = &s->r;
    r->makespan_s = des_makespan_s(s->d);
    double sum = 0, ideal = 0;
    for (int i = 0; i < s->ng; i++) {
        if (s->shared) {
            /* The stream is the device's: a group's busy time is its nodes'. */
            r->busy_s[i] = 0;
            for (int k = 0; k < s->nn; k++)
                if (s->node_group[k] == i)
                    r->busy_s[i] += pp_sim_node_busy_s(s, k);
        } else {
            r->busy_s[i] = des_resource_busy_s(s->d, s->stream[i]);
        }
        r->peak_mem_bytes[i] = des_pool_peak_bytes(s->d, s->pool[i]);
        r->peak_inflight[i] = s->peak_count[i];
        sum += r->busy_s[i];
        if (!s->shared && r->busy_s[i] > ideal)
            ideal = r->busy_s[i];
    }
    if (s->shared)
        for (int k = 0; k < s->ndev; k++) {
            double b = des_resource_busy_s(s->d, s->dev_stream[k]);
            if (b > ideal)
                ideal = b;
        }
    r->ideal_s = ideal;
    r->bubble_fraction = r->makespan_s > 0 ? 1 - sum / (s->ndev * r->makespan_s) : 0;
    r->bubble_ratio = ideal > 0 ? (r->makespan_s - ideal) / ideal : 0;
    return rc;
}

const pp_result *pp_sim_result(const pp_sim *s) { return &s->r; }
const des *pp_sim_des(const pp_sim *s) { return s->d; }

int pp_sim_node_task(const pp_sim *s, int node, pp_op_kind kind, int mb)
{
    if (node < 0 || node >= s->nn || mb < 0 || mb >= s->node_m[node])
        return -1;
    size_t k = s->node_off[node] + mb;
    return kind == PP_OP_FWD ? s->fwd[k] : kind == PP_OP_BWD ? s->bwd[k]
                                         : kind == PP_OP_WGRAD ? s->wgt[k] : -1;
}

int pp_sim_task_chunk(const pp_sim *s, int stage, int chunk, pp_op_kind kind, int mb)
{
    if (stage < 0 || stage >= s->ng || chunk < 0)
        return -1;
    /* Chains number virtual stages chunk-major: node = chunk * p + stage. */
    return pp_sim_node_task(s, chunk * s->ng + stage, kind, mb);
}

int pp_sim_task(const pp_sim *s, int stage, pp_op_kind kind, int mb)
{
    return pp_sim_task_chunk(s, stage, 0, kind, mb);
}

int pp_sim_stage_stream(const pp_sim *s, int stage)
{
    return stage >= 0 && stage < s->ng ? s->stream[stage] : -1;
}

int pp_sim_stage_pool(const pp_sim *s, int stage)
{
    return stage >= 0 && stage < s->ng ? s->pool[stage] : -1;
}

int pp_sim_ngroups(const pp_sim *s) { return s->ng; }
int pp_sim_nnodes(const pp_sim *s) { return s->nn; }
int pp_sim_node_allreduce(const pp_sim *s, int node)
{
    return node >= 0 && node < s->nn ? s->allreduce[node] : -1;
}
int pp_sim_group_pool(const pp_sim *s, int group) { return pp_sim_stage_pool(s, group); }
int pp_sim_group_stream(const pp_sim *s, int group) { return pp_sim_stage_stream(s, group); }
double pp_sim_p2p_bytes(const pp_sim *s) { return s->p2p_bytes; }

double pp_sim_node_busy_s(const pp_sim *s, int node)
{
    if (node < 0 || node >= s->nn)
        return 0;
    double sum = 0;
    for (int mb = 0; mb < s->node_m[node]; mb++) {
        size_t k = s->node_off[node] + mb;
        int ids[3] = {s->fwd[k], s->bwd[k], s->wgt[k]};
        for (int q = 0; q < 3; q++) {
            if (ids[q] < 0)
                continue;
            double a = des_task_start_s(s->d, ids[q]), b = des_task_end_s(s->d, ids[q]);
            if (isfinite(a) && isfinite(b))
                sum += b - a;
        }
    }
    return sum;
}

void pp_sim_set_user(pp_sim *s, void *user, void (*free_fn)(void *))
{
    s->user = user;
    s->user_free = free_fn;
}

void *pp_sim_user(const pp_sim *s) { return s->user; }

int pp_sim_ndevices(const pp_sim *s) { return s->ndev; }

int pp_sim_device_id(const pp_sim *s, int slot)
{
    return slot >= 0 && slot < s->ndev ? s->dev_id[slot] : -1;
}

int pp_sim_group_device(const pp_sim *s, int group)
{
    return group >= 0 && group < s->ng ? s->group_slot[group] : -1;
}

static int cmp_dev_task(const void *a, const void *b)
{
    const pp_dev_task *x = a, *y = b;
    if (x->start_s != y->start_s)
        return x->start_s < y->start_s ? -1 : 1;
    if (x->end_s != y->end_s)
        return x->end_s < y->end_s ? -1 : 1;
    return (x->task > y->task) - (x->task < y->task);
}

int pp_sim_device_order(const pp_sim *s, int slot, pp_dev_task **out, int *n, ps_err *e)
{
    *out = NULL;
    *n = 0;
    if (slot < 0 || slot >= s->ndev)
        return ps_errf(e, PS_EINPUT, "pipeline: device slot %d out of range 0..%d", slot,
                       s->ndev - 1);
    if (!s->ran)
        return ps_errf(e, PS_EINPUT, "pipeline: pp_sim_device_order before pp_sim_run");
    size_t cnt = 0;
    for (int k = 0; k < s->nn; k++)
        if (s->group_slot[s->node_group[k]] == slot)
            cnt += 3 * (size_t)s->node_m[k];
    pp_dev_task *t = malloc((cnt ? cnt : 1) * sizeof *t);
    if (!t)
        return oom(e);
    int c = 0;
    for (int k = 0; k < s->nn; k++) {
        int gi = s->node_group[k];
        if (s->group_slot[gi] != slot)
            continue;
        /* chunk = position of k among its group's nodes (node order) */
        int chunk = 0;
        for (int q = 0; q < k; q++)
            chunk += s->node_group[q] == gi;
        for (int mb = 0; mb < s->node_m[k]; mb++) {
            size_t x = s->node_off[k] + mb;
            int ids[3] = {s->fwd[x], s->bwd[x], s->wgt[x]};
            int kinds[3] = {PP_OP_FWD, PP_OP_BWD, PP_OP_WGRAD};
            for (int q = 0; q < 3; q++) {
                if (ids[q] < 0)
                    continue;
                double a = des_task_start_s(s->d, ids[q]), b = des_task_end_s(s->d, ids[q]);
                if (!isfinite(a) || !isfinite(b))
                    continue;
                t[c++] = (pp_dev_task){ids[q], k, gi, chunk, kinds[q], mb, a, b};
            }
        }
    }
    qsort(t, (size_t)c, sizeof *t, cmp_dev_task);
    *out = t;
    *n = c;
    return 0;
}
