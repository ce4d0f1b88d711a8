/* Pipeline schedules -> sim/des task graphs.  See schedule.h. */
#include "sim/pipeline/schedule.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pp_schedule_name(pp_schedule s)
{
    switch (s) {
    case PP_GPIPE:
        return "gpipe";
    case PP_1F1B:
        return "1f1b";
    }
    return "unknown";
}

pp_schedule pp_schedule_parse(const char *name)
{
    if (!name)
        return 0;
    if (strcmp(name, "gpipe") == 0)
        return PP_GPIPE;
    if (strcmp(name, "1f1b") == 0 || strcmp(name, "pipedream-flush") == 0)
        return PP_1F1B;
    return 0;
}

size_t pp_stage_op_count(pp_schedule s, int microbatches)
{
    if (microbatches < 1 || (s != PP_GPIPE && s != PP_1F1B))
        return 0;
    return 2 * (size_t)microbatches;
}

int pp_stage_order(pp_schedule s, int m, int depth, pp_op *ops, ps_err *e)
{
    if (m < 1)
        return ps_errf(e, PS_EINPUT, "pipeline: %d micro-batches; need at least 1", m);
    if (depth < 1)
        return ps_errf(e, PS_EINPUT, "pipeline: stage depth %d; need at least 1", depth);
    size_t k = 0;
    switch (s) {
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
    }
    return ps_errf(e, PS_EINPUT, "pipeline: unknown schedule %d", (int)s);
}

/* ------------------------------------------------------------------ */
/* The compiler works on a stage graph (stages in topological order, edges
 * from < to); a chain is its first user, stage DAGs the next. */

typedef struct sg_edge {
    int from, to;
    double fwd_bytes, bwd_bytes;
} sg_edge;

typedef struct sgraph {
    int n, m;
    const double *fwd_s, *bwd_s, *act_bytes;
    const sg_edge *edges;
    int ne;
    double alpha_s, bps, cap;
} sgraph;

struct pp_sim {
    des *d;
    int p, m;
    int *fwd, *bwd;        /* [p*m] task ids */
    int *stream, *pool, *count_pool;
    pp_result r;
    int ran;
};

void pp_sim_free(pp_sim *s)
{
    if (!s)
        return;
    des_free(s->d);
    free(s->fwd);
    free(s->bwd);
    free(s->stream);
    free(s->pool);
    free(s->count_pool);
    free(s->r.busy_s);
    free(s->r.peak_mem_bytes);
    free(s->r.peak_inflight);
    free(s);
}

static int oom(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "pipeline: out of host memory");
}

static int compile(pp_sim *s, const sgraph *g, pp_schedule sched, ps_err *e)
{
    int p = g->n, m = g->m;
    size_t nops = pp_stage_op_count(sched, m);
    int *depth = calloc((size_t)p, sizeof *depth);
    pp_op *ops = malloc(nops * sizeof *ops);
    int rc = 0;
    if (!depth || !ops) {
        rc = oom(e);
        goto out;
    }
    /* Longest path to the sink, in stages, by a reverse sweep. */
    for (int i = p - 1; i >= 0; i--) {
        depth[i] = 1;
        for (int k = 0; k < g->ne; k++)
            if (g->edges[k].from == i && depth[g->edges[k].to] + 1 > depth[i])
                depth[i] = depth[g->edges[k].to] + 1;
    }
    des *d = s->d;
    char name[64];
    for (int i = 0; i < p; i++) {
        snprintf(name, sizeof name, "stage%d", i);
        s->stream[i] = des_add_stream(d, name, DES_FIFO, e);
        snprintf(name, sizeof name, "stage%d.act", i);
        s->pool[i] = des_add_pool(d, name, g->cap, e);
        snprintf(name, sizeof name, "stage%d.inflight", i);
        s->count_pool[i] = des_add_pool(d, name, INFINITY, e);
        if (s->stream[i] < 0 || s->pool[i] < 0 || s->count_pool[i] < 0) {
            rc = e ? e->code : PS_ERUN;
            goto out;
        }
    }
    for (int i = 0; i < p && !rc; i++) {
        if ((rc = pp_stage_order(sched, m, depth[i], ops, e)))
            break;
        double act = g->act_bytes ? g->act_bytes[i] : 0;
        int prev = -1;
        for (size_t k = 0; k < nops && !rc; k++) {
            int fw = ops[k].kind == PP_OP_FWD, mb = ops[k].mb;
            int x = des_add_task(d, s->stream[i], fw ? g->fwd_s[i] : g->bwd_s[i], fw ? "F" : "B", i, mb, e);
            if (x < 0) {
                rc = e ? e->code : PS_EINPUT;
                break;
            }
            (fw ? s->fwd : s->bwd)[(size_t)i * m + mb] = x;
            double sign = fw ? 1 : -1;
            des_when when = fw ? DES_AT_START : DES_AT_END;
            if ((prev >= 0 && (rc = des_add_dep(d, prev, x, e))) ||
                (act != 0 && (rc = des_add_mem(d, x, s->pool[i], sign * act, when, e))) ||
                (rc = des_add_mem(d, x, s->count_pool[i], sign, when, e)))
                break;
            prev = x;
        }
        /* Orders always put F before B, but the data dependency is stated
         * rather than left to the order. */
        for (int mb = 0; mb < m && !rc; mb++)
            rc = des_add_dep(d, s->fwd[(size_t)i * m + mb], s->bwd[(size_t)i * m + mb], e);
    }
    for (int k = 0; k < g->ne && !rc; k++) {
        const sg_edge *ed = &g->edges[k];
        int lf = -1, lb = -1;
        if (ed->fwd_bytes > 0) {
            snprintf(name, sizeof name, "link%d->%d", ed->from, ed->to);
            if ((lf = des_add_link(d, name, g->alpha_s, g->bps, e)) < 0) {
                rc = e ? e->code : PS_EINPUT;
                break;
            }
        }
        if (ed->bwd_bytes > 0) {
            snprintf(name, sizeof name, "link%d->%d", ed->to, ed->from);
            if ((lb = des_add_link(d, name, g->alpha_s, g->bps, e)) < 0) {
                rc = e ? e->code : PS_EINPUT;
                break;
            }
        }
        for (int mb = 0; mb < m && !rc; mb++) {
            int fu = s->fwd[(size_t)ed->from * m + mb], fv = s->fwd[(size_t)ed->to * m + mb];
            int bu = s->bwd[(size_t)ed->from * m + mb], bv = s->bwd[(size_t)ed->to * m + mb];
            if (lf >= 0) {
                int x = des_add_transfer(d, lf, ed->fwd_bytes, "send_act", ed->from, mb, e);
                if (x < 0 || des_add_dep(d, fu, x, e) || des_add_dep(d, x, fv, e))
                    rc = e ? e->code : PS_EINPUT;
            } else {
                rc = des_add_dep(d, fu, fv, e);
            }
            if (rc)
                break;
            if (lb >= 0) {
                int x = des_add_transfer(d, lb, ed->bwd_bytes, "send_grad", ed->to, mb, e);
                if (x < 0 || des_add_dep(d, bv, x, e) || des_add_dep(d, x, bu, e))
                    rc = e ? e->code : PS_EINPUT;
            } else {
                rc = des_add_dep(d, bv, bu, e);
            }
        }
    }
out:
    free(depth);
    free(ops);
    return rc;
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
    if (p < 1 || m < 1) {
        ps_errf(e, PS_EINPUT, "pipeline: %d stages x %d micro-batches; need at least 1 of each", p, m);
        return NULL;
    }
    if ((size_t)p * (size_t)m > ((size_t)1 << 28)) {
        ps_errf(e, PS_EINPUT, "pipeline: %d stages x %d micro-batches is too many tasks", p, m);
        return NULL;
    }
    if (!pp_stage_op_count(sched, m)) {
        ps_errf(e, PS_EINPUT, "pipeline: unknown schedule %d", (int)sched);
        return NULL;
    }
    if (check_vec(c->fwd_s, p, "fwd_s", 0, e) || check_vec(c->bwd_s, p, "bwd_s", 0, e) ||
        check_vec(c->act_bytes, p, "act_bytes", 1, e) ||
        check_vec(c->send_fwd_bytes, p - 1, "send_fwd_bytes", 1, e) ||
        check_vec(c->send_bwd_bytes, p - 1, "send_bwd_bytes", 1, e))
        return NULL;
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

    pp_sim *s = calloc(1, sizeof *s);
    sg_edge *edges = p > 1 ? malloc((size_t)(p - 1) * sizeof *edges) : NULL;
    if (!s || (p > 1 && !edges)) {
        free(s);
        free(edges);
        oom(e);
        return NULL;
    }
    s->p = p;
    s->m = m;
    size_t pm = (size_t)p * m;
    s->fwd = malloc(pm * sizeof *s->fwd);
    s->bwd = malloc(pm * sizeof *s->bwd);
    s->stream = malloc((size_t)p * sizeof *s->stream);
    s->pool = malloc((size_t)p * sizeof *s->pool);
    s->count_pool = malloc((size_t)p * sizeof *s->count_pool);
    s->r.busy_s = calloc((size_t)p, sizeof *s->r.busy_s);
    s->r.peak_mem_bytes = calloc((size_t)p, sizeof *s->r.peak_mem_bytes);
    s->r.peak_inflight = calloc((size_t)p, sizeof *s->r.peak_inflight);
    s->d = des_new(e);
    if (!s->fwd || !s->bwd || !s->stream || !s->pool || !s->count_pool || !s->r.busy_s ||
        !s->r.peak_mem_bytes || !s->r.peak_inflight || !s->d) {
        free(edges);
        pp_sim_free(s);
        oom(e);
        return NULL;
    }
    for (int i = 0; i + 1 < p; i++)
        edges[i] = (sg_edge){i, i + 1, c->send_fwd_bytes ? c->send_fwd_bytes[i] : 0,
                             c->send_bwd_bytes ? c->send_bwd_bytes[i] : 0};
    sgraph g = {.n = p, .m = m, .fwd_s = c->fwd_s, .bwd_s = c->bwd_s, .act_bytes = c->act_bytes,
                .edges = edges, .ne = p - 1, .alpha_s = c->link_alpha_s, .bps = c->link_bytes_per_s,
                .cap = c->mem_capacity_bytes > 0 ? c->mem_capacity_bytes : INFINITY};
    int rc = compile(s, &g, sched, e);
    free(edges);
    if (rc) {
        pp_sim_free(s);
        return NULL;
    }
    s->r.stages = p;
    s->r.microbatches = m;
    return s;
}

int pp_sim_run(pp_sim *s, ps_err *e)
{
    if (s->ran)
        return ps_errf(e, PS_EINPUT, "pipeline: pp_sim_run called twice");
    s->ran = 1;
    int rc = des_run(s->d, e);
    if (rc && rc != DES_OOM)
        return rc;
    pp_result *r = &s->r;
    r->makespan_s = des_makespan_s(s->d);
    double sum = 0, ideal = 0;
    for (int i = 0; i < s->p; i++) {
        r->busy_s[i] = des_resource_busy_s(s->d, s->stream[i]);
        r->peak_mem_bytes[i] = des_pool_peak_bytes(s->d, s->pool[i]);
        r->peak_inflight[i] = (int)llround(des_pool_peak_bytes(s->d, s->count_pool[i]));
        sum += r->busy_s[i];
        if (r->busy_s[i] > ideal)
            ideal = r->busy_s[i];
    }
    r->ideal_s = ideal;
    r->bubble_fraction = r->makespan_s > 0 ? 1 - sum / (s->p * r->makespan_s) : 0;
    r->bubble_ratio = ideal > 0 ? (r->makespan_s - ideal) / ideal : 0;
    return rc;
}

const pp_result *pp_sim_result(const pp_sim *s) { return &s->r; }
const des *pp_sim_des(const pp_sim *s) { return s->d; }

int pp_sim_task(const pp_sim *s, int stage, pp_op_kind kind, int mb)
{
    if (stage < 0 || stage >= s->p || mb < 0 || mb >= s->m)
        return -1;
    size_t k = (size_t)stage * s->m + mb;
    return kind == PP_OP_FWD ? s->fwd[k] : kind == PP_OP_BWD ? s->bwd[k] : -1;
}

int pp_sim_stage_stream(const pp_sim *s, int stage)
{
    return stage >= 0 && stage < s->p ? s->stream[stage] : -1;
}

int pp_sim_stage_pool(const pp_sim *s, int stage)
{
    return stage >= 0 && stage < s->p ? s->pool[stage] : -1;
}
