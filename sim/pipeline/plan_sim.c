/* A plan compiled to the shared engine: per-stage times from the model's
 * per-op costs on the cluster's device, transfers on the cluster's links,
 * gradient all-reduce inside stages, memory pools at device capacity.
 * See plan.h ("simulation") and sim/pipeline/README.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/plan.h"
#include "sim/pipeline/schedule_impl.h"

static int nomem(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "plan: out of host memory");
}

/* The plan-side facts a result needs after the run. */
typedef struct plan_meta {
    int nstages, ngroups, minibatch, ndevices;
    int *group_first_device; /* [ngroups] */
    int *group_first_stage;  /* [ngroups] */
    int *stage_group;        /* [nstages] */
    double *stage_allreduce_s;
    double mem_capacity_bytes;
} plan_meta;

static void meta_free(plan_meta *m)
{
    free(m->group_first_device);
    free(m->group_first_stage);
    free(m->stage_group);
    free(m->stage_allreduce_s);
}

static void meta_free_fn(void *p)
{
    meta_free(p);
    free(p);
}

/* Costs at each distinct replica batch, computed once. */
typedef struct cost_cache {
    int n;
    int samples[64];
    pp_op_cost *costs[64];
} cost_cache;

static const pp_op_cost *costs_at(cost_cache *cc, const pp_model *m, const cm_model *cm,
                                  int samples, ps_err *e)
{
    for (int i = 0; i < cc->n; i++)
        if (cc->samples[i] == samples)
            return cc->costs[i];
    if (cc->n == 64) {
        ps_errf(e, PS_EINPUT, "plan: more than 64 distinct per-replica micro-batch sizes");
        return NULL;
    }
    pp_op_cost *c = malloc((size_t)pp_model_nops(m) * sizeof *c);
    if (!c) {
        nomem(e);
        return NULL;
    }
    if (pp_model_costs(m, cm, samples, c, e)) {
        free(c);
        return NULL;
    }
    cc->samples[cc->n] = samples;
    cc->costs[cc->n++] = c;
    return c;
}

static double state_factor(cm_optimizer o)
{
    return o == CM_OPT_SGD ? 0 : o == CM_OPT_MOMENTUM ? 1 : 2;
}

pp_sim *pp_sim_plan(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                    const pp_sim_opts *opts, ps_err *e)
{
    pp_sim_opts o0 = {0};
    if (!opts)
        opts = &o0;
    if (p->nstages < 1 || p->minibatch < 1)
        return ps_errf(e, PS_EINPUT, "plan: not finalized (pp_plan_finalize)"), NULL;
    int S = p->nstages, v = p->schedule == PP_INTERLEAVED ? p->chunks : 1;
    int G = S / v, nop = pp_model_nops(m);
    cm_model *own = NULL;
    const cm_model *cm = opts->cm;
    pp_sim *sim = NULL;
    cost_cache cc = {0};
    pp_gnode *nodes = calloc((size_t)S, sizeof *nodes);
    pp_gedge *edges = calloc((size_t)(p->nedges ? p->nedges : 1), sizeof *edges);
    pp_ggroup *groups = calloc((size_t)G, sizeof *groups);
    int *st = malloc((size_t)nop * sizeof *st), *depth = NULL, *gdev = NULL;
    plan_meta meta = {0};
    meta.nstages = S;
    meta.ngroups = G;
    meta.minibatch = p->minibatch;
    meta.group_first_device = malloc((size_t)G * sizeof(int));
    meta.group_first_stage = malloc((size_t)G * sizeof(int));
    meta.stage_group = malloc((size_t)S * sizeof(int));
    meta.stage_allreduce_s = calloc((size_t)S, sizeof(double));
    int rc = 0;
    if (!nodes || !edges || !groups || !st || !meta.group_first_device ||
        !meta.group_first_stage || !meta.stage_group || !meta.stage_allreduce_s) {
        rc = nomem(e);
        goto out;
    }
    if (!cm) {
        int any = 0;
        for (int i = 0; i < nop && !any; i++)
            any = !pp_model_op_at(m, i)->measured.has;
        if (any && !(cm = own = pp_cluster_cost_model(c, e))) {
            rc = e ? e->code : PS_ERUN;
            goto out;
        }
    }
    for (int i = 0; i < nop; i++)
        st[i] = -1;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < p->stages[s].nops; k++)
            st[p->stages[s].ops[k]] = s;
    double cap = opts->no_memory_limit ? INFINITY : c->mem_bytes;
    meta.mem_capacity_bytes = c->mem_bytes;
    int maxdepth = 1;
    if (!(depth = malloc((size_t)S * sizeof *depth))) {
        rc = nomem(e);
        goto out;
    }
    pp_plan_inflight_all(p, depth);
    for (int s = 0; s < S; s++)
        if (depth[s] > maxdepth)
            maxdepth = depth[s];
    for (int s = 0; s < S && !rc; s++) {
        const pp_stage *g = &p->stages[s];
        const pp_op_cost *cost = costs_at(&cc, m, cm, pp_plan_replica_samples(p, s), e);
        if (!cost) {
            rc = e ? e->code : PS_ERUN;
            break;
        }
        pp_gnode *n = &nodes[s];
        n->group = s % G;
        n->chunk = s / G;
        n->m = pp_plan_microbatches(p, s);
        n->b = g->microbatch;
        double f = 0, bi = 0, bw = 0, act = 0, params = 0;
        for (int k = 0; k < g->nops; k++) {
            const pp_op_cost *x = &cost[g->ops[k]];
            f += x->fwd_s;
            bi += x->bwd_input_s;
            bw += x->bwd_weight_s;
            act += x->act_bytes;
            params += x->param_bytes;
        }
        double ov = opts->task_overhead_s > 0 ? opts->task_overhead_s : 0;
        n->f_s = f + ov;
        if (p->schedule == PP_ZB_H1) {
            n->b_s = bi + ov;
            n->w_s = bw + ov;
        } else {
            n->b_s = bi + bw + ov;
        }
        n->act_bytes = act;
        n->depth = depth[s];
        n->lag = maxdepth - n->depth;
        /* Gradients have the weights' size; all-reduced once per iteration
         * across the stage's replicas after its last backward. */
        if ((rc = pp_cluster_allreduce_s(c, g->devices, g->ndevices, params, &n->allreduce_s, e)))
            break;
        meta.stage_allreduce_s[s] = n->allreduce_s;
        meta.stage_group[s] = n->group;
        pp_ggroup *gr = &groups[n->group];
        if (n->chunk == 0) {
            snprintf(gr->name, sizeof gr->name, v > 1 ? "group%d" : "stage%d", n->group);
            gr->cap_bytes = cap;
            meta.group_first_device[n->group] = g->devices[0];
            meta.group_first_stage[n->group] = s;
            meta.ndevices += g->ndevices;
        }
        gr->nnodes++;
        gr->static_bytes += params * (2 + state_factor(p->optimizer));
    }
    /* Edge bytes per sample: each producer op's output once per consumer
     * stage.  Replicas send their shards in parallel, so a DP pair moves
     * the micro-batch min(dp_u, dp_v) times as fast. */
    for (int q = 0; q < p->nedges && !rc; q++) {
        int u = p->edges[q].from, w = p->edges[q].to;
        const pp_stage *gu = &p->stages[u], *gw = &p->stages[w];
        double bytes = 0;
        if (p->sequential) {
            /* boundary u of a chain: everything produced up to stage u and
             * consumed after it passes here (forwarded stage by stage) */
            for (int i = 0; i < nop; i++) {
                if (st[i] > u)
                    continue;
                const pp_model_op *op = pp_model_op_at(m, i);
                for (int j = 0; j < op->nconsumers; j++)
                    if (st[op->consumers[j]] > u) {
                        bytes += op->out_bytes;
                        break;
                    }
            }
        } else {
            for (int k = 0; k < gu->nops; k++) {
                const pp_model_op *op = pp_model_op_at(m, gu->ops[k]);
                for (int j = 0; j < op->nconsumers; j++)
                    if (st[op->consumers[j]] == w) {
                        bytes += op->out_bytes;
                        break;
                    }
            }
        }
        cm_ab ab = pp_cluster_link_sets(c, gu->devices, gu->ndevices, gw->devices, gw->ndevices);
        int par = gu->ndevices < gw->ndevices ? gu->ndevices : gw->ndevices;
        edges[q] = (pp_gedge){u, w, bytes, bytes, ab.alpha_s, ab.beta_bytes_per_s * par};
    }
    if (rc)
        goto out;
    if (opts->device_of_stage || p->shared_devices) {
        /* Stages sharing a device share its stream and pool. */
        if (!(gdev = malloc((size_t)G * sizeof *gdev))) {
            rc = nomem(e);
            goto out;
        }
        for (int g = 0; g < G; g++) {
            int s0 = meta.group_first_stage[g];
            gdev[g] = opts->device_of_stage ? opts->device_of_stage[s0]
                                            : p->stages[s0].devices[0];
            if (gdev[g] < 0) {
                rc = ps_errf(e, PS_EINPUT, "plan: stage %d mapped to device %d; need >= 0", s0,
                             gdev[g]);
                goto out;
            }
        }
        /* Devices used: distinct ids. */
        meta.ndevices = 0;
        for (int g = 0; g < G; g++) {
            int seen = 0;
            for (int q = 0; q < g && !seen; q++)
                seen = gdev[q] == gdev[g];
            meta.ndevices += !seen;
        }
    }
    pp_graph gph = {.nn = S, .ne = p->nedges, .ng = G, .nodes = nodes, .edges = edges,
                    .groups = groups, .sched = p->schedule, .chunks = v, .group_device = gdev};
    sim = pp_sim_graph(&gph, e);
    if (!sim) {
        rc = e ? e->code : PS_ERUN;
        goto out;
    }
    plan_meta *mp = malloc(sizeof *mp);
    if (!mp) {
        pp_sim_free(sim);
        sim = NULL;
        rc = nomem(e);
        goto out;
    }
    *mp = meta;
    pp_sim_set_user(sim, mp, meta_free_fn);
    memset(&meta, 0, sizeof meta);
out:
    for (int i = 0; i < cc.n; i++)
        free(cc.costs[i]);
    cm_model_free(own);
    free(nodes);
    free(edges);
    free(groups);
    free(st);
    free(depth);
    free(gdev);
    meta_free(&meta);
    (void)rc;
    return sim;
}

void pp_plan_result_free(pp_plan_result *r)
{
    if (!r)
        return;
    free(r->stage_busy_s);
    free(r->stage_allreduce_s);
    free(r->stage_peak_inflight);
    free(r->stage_peak_bytes);
    memset(r, 0, sizeof *r);
}

int pp_sim_plan_result(const pp_sim *s, pp_plan_result *r, ps_err *e)
{
    const plan_meta *mt = pp_sim_user(s);
    if (!mt)
        return ps_errf(e, PS_EINPUT, "plan: this simulation was not built by pp_sim_plan");
    const pp_result *pr = pp_sim_result(s);
    const des *d = pp_sim_des(s);
    int S = mt->nstages;
    memset(r, 0, sizeof *r);
    r->stage_busy_s = calloc((size_t)S, sizeof *r->stage_busy_s);
    r->stage_allreduce_s = calloc((size_t)S, sizeof *r->stage_allreduce_s);
    r->stage_peak_inflight = calloc((size_t)S, sizeof *r->stage_peak_inflight);
    r->stage_peak_bytes = calloc((size_t)S, sizeof *r->stage_peak_bytes);
    if (!r->stage_busy_s || !r->stage_allreduce_s || !r->stage_peak_inflight ||
        !r->stage_peak_bytes) {
        pp_plan_result_free(r);
        return nomem(e);
    }
    r->nstages = S;
    r->ndevices = mt->ndevices;
    r->microbatches = pr->microbatches;
    r->iteration_s = pr->makespan_s;
    r->ideal_s = pr->ideal_s;
    r->bubble_fraction = pr->bubble_fraction;
    r->bubble_ratio = pr->bubble_ratio;
    r->p2p_bytes = pp_sim_p2p_bytes(s);
    r->mem_capacity_bytes = mt->mem_capacity_bytes;
    r->events = des_event_count(d);
    r->peak_device = -1;
    for (int k = 0; k < S; k++) {
        int g = mt->stage_group[k];
        r->stage_busy_s[k] = pp_sim_node_busy_s(s, k);
        r->stage_allreduce_s[k] = mt->stage_allreduce_s[k];
        if (r->stage_allreduce_s[k] > r->allreduce_s)
            r->allreduce_s = r->stage_allreduce_s[k];
        r->stage_peak_inflight[k] = pr->peak_inflight[g];
        r->stage_peak_bytes[k] = pr->peak_mem_bytes[g];
    }
    for (int g = 0; g < mt->ngroups; g++)
        if (pr->peak_mem_bytes[g] > r->peak_device_bytes || r->peak_device < 0) {
            r->peak_device_bytes = pr->peak_mem_bytes[g];
            r->peak_device = mt->group_first_device[g];
        }
    des_oom o;
    if (des_oom_get(d, &o)) {
        r->oom = 1;
        r->oom_device = -1;
        r->oom_stage = -1;
        for (int g = 0; g < mt->ngroups; g++)
            if (pp_sim_group_pool(s, g) == o.pool) {
                r->oom_device = mt->group_first_device[g];
                r->oom_stage = mt->group_first_stage[g];
            }
        r->oom_shortfall_bytes = o.shortfall_bytes;
        r->oom_time_s = o.time_s;
        r->throughput_samples_per_s = 0;
    } else {
        r->oom_device = r->oom_stage = -1;
        r->throughput_samples_per_s = r->iteration_s > 0 ? mt->minibatch / r->iteration_s : 0;
    }
    return 0;
}

int pp_plan_simulate(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                     const pp_sim_opts *opts, pp_plan_result *out, ps_err *e)
{
    double t0 = ps_now_s();
    memset(out, 0, sizeof *out);
    pp_sim *s = pp_sim_plan(p, m, c, opts, e);
    if (!s)
        return e && e->code ? e->code : PS_ERUN;
    int rc = pp_sim_run(s, e);
    if (rc == DES_OOM) {
        ps_err_clear(e);
        rc = 0;
    }
    if (!rc)
        rc = pp_sim_plan_result(s, out, e);
    if (!rc && opts && opts->trace_path)
        rc = des_write_trace(pp_sim_des(s), opts->trace_path, e);
    out->sim_wall_s = ps_now_s() - t0;
    pp_sim_free(s);
    return rc;
}
