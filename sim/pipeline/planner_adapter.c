/* From the study's types to the planners' and back: a pp_model and a
 * pp_cluster become a planning graph and an abstract cluster; a planner's
 * result becomes a pp_plan with device ids; pp_plan_point runs one
 * experiment point end to end (model, cluster, plan, simulation). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/planner_impl.h"
#include "sim/pipeline/piper_dp.h"

/* ---------------------------------------------------------- model side */

typedef struct model_ctx {
    const pp_model *m;
    const cm_model *cm;
    pp_op_cost *costs;
} model_ctx;

static int model_times(void *vctx, int samples, double *fwd_s, double *bwd_s, ps_err *e)
{
    model_ctx *c = vctx;
    int rc = pp_model_costs(c->m, c->cm, samples, c->costs, e);
    if (rc)
        return rc;
    int n = pp_model_nops(c->m);
    for (int v = 0; v < n; v++) {
        fwd_s[v] = c->costs[v].fwd_s;
        bwd_s[v] = c->costs[v].bwd_input_s + c->costs[v].bwd_weight_s;
    }
    return 0;
}

static void model_ctx_free(void *vctx)
{
    model_ctx *c = vctx;
    if (c)
        free(c->costs);
    free(c);
}

pp_pgraph *pp_pgraph_from_model(const pp_model *m, const cm_model *cm, ps_err *e)
{
    int n = pp_model_nops(m);
    pp_pgraph *g = pp_pgraph_new(n, e);
    if (!g)
        return NULL;
    model_ctx *c = calloc(1, sizeof *c);
    if (c)
        c->costs = malloc((size_t)n * sizeof *c->costs);
    if (!c || !c->costs) {
        model_ctx_free(c);
        pp_pgraph_free(g);
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    c->m = m;
    c->cm = cm;
    g->ctx_free = model_ctx_free;
    pp_pgraph_set_times_fn(g, model_times, c);
    int rc = 0;
    for (int v = 0; v < n && !rc; v++) {
        const pp_model_op *op = pp_model_op_at(m, v);
        rc = pp_pgraph_set_op(g, v, op->id, op->param_bytes, op->act_bytes, op->out_bytes, e);
        for (int k = 0; k < op->ninputs && !rc; k++)
            rc = pp_pgraph_add_edge(g, op->inputs[k], v, e);
    }
    if (!rc)
        rc = pp_pgraph_finish(g, e);
    if (rc) {
        pp_pgraph_free(g);
        return NULL;
    }
    return g;
}

/* -------------------------------------------------------- cluster side */

int pp_pcluster_from_cluster(const pp_cluster *c, int devices, cm_optimizer opt,
                             pp_pcluster *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    int cap = pp_cluster_capacity(c);
    if (devices < 1 || devices > cap)
        return ps_errf(e, PS_EINPUT, "devices: %d, but cluster %s has %d", devices, c->name, cap);
    if (devices > PP_PC_MAX_DEVICES)
        return ps_errf(e, PS_EINPUT, "devices: %d is more than the planners' limit of %d",
                       devices, PP_PC_MAX_DEVICES);
    out->devices = devices;
    out->devices_per_node = c->devices_per_node > 0 ? c->devices_per_node : 1;
    out->mem_bytes = c->mem_bytes;
    out->weight_mult = 2 + (opt == CM_OPT_ADAM ? 2 : opt == CM_OPT_MOMENTUM ? 1 : 0);
    out->p2p = devices <= out->devices_per_node ? c->intra : c->inter;
    int *devs = malloc((size_t)devices * sizeof *devs);
    if (!devs)
        return ps_errf(e, PS_ERUN, "out of memory");
    for (int i = 0; i < devices; i++)
        devs[i] = i;
    int rc = 0;
    /* the collectives are affine in bytes: two points give them exactly */
    const double S = 1e9;
    for (int r = 2; r <= devices && !rc; r++) {
        double t0, t1;
        rc = pp_cluster_allreduce_s(c, devs, r, 0, &t0, e);
        if (!rc)
            rc = pp_cluster_allreduce_s(c, devs, r, S, &t1, e);
        if (!rc) {
            out->ar_alpha_s[r] = t0;
            out->ar_s_per_byte[r] = (t1 - t0) / S;
        }
    }
    free(devs);
    return rc;
}

/* ----------------------------------------------------------- to a plan */

typedef struct rorder {
    int stage, replicas;
} rorder;

static int cmp_rorder(const void *a, const void *b)
{
    const rorder *x = a, *y = b;
    if (x->replicas != y->replicas)
        return y->replicas - x->replicas;
    return x->stage - y->stage;
}

pp_plan *pp_presult_to_plan(const pp_presult *r, const pp_model *m, const pp_cluster *c,
                            int minibatch, int devices, ps_err *e)
{
    if (!r->feasible || r->nstages < 1) {
        ps_errf(e, PS_ERUN, "%s: no plan to convert", pp_planner_name(r->planner));
        return NULL;
    }
    pp_plan *p = pp_plan_new(r->nstages, e);
    if (!p)
        return NULL;
    rorder *ro = malloc((size_t)r->nstages * sizeof *ro);
    int total = 0;
    for (int i = 0; i < r->nstages; i++)
        total += r->stages[i].replicas;
    int *devs = malloc((size_t)(total > 0 ? total : 1) * sizeof *devs);
    if (!ro || !devs) {
        free(ro);
        free(devs);
        pp_plan_free(p);
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    /* Placement, largest stages first: a stage of r >= g replicas (g devices
     * per node) takes whole free nodes and then first-fit for the rest; a
     * smaller one goes first-fit into one node with r free devices, so its
     * all-reduce stays on the node's links (what the planners' cost model
     * assumes); only if no node has room is it spread. */
    for (int i = 0; i < r->nstages; i++)
        ro[i] = (rorder){i, r->stages[i].replicas};
    qsort(ro, (size_t)r->nstages, sizeof *ro, cmp_rorder);
    int rc = 0, g = c->devices_per_node > 0 ? c->devices_per_node : 1;
    /* devices 0..devices-1 (at least the plan's total) */
    int cap = devices > total ? devices : total;
    if (pp_cluster_capacity(c) < cap)
        cap = pp_cluster_capacity(c);
    int nodes = (cap + g - 1) / g;
    char *used = calloc((size_t)nodes * g, 1);
    int *start = malloc((size_t)r->nstages * sizeof *start);
    int **sdev = calloc((size_t)r->nstages, sizeof *sdev);
    if (!used || !start || !sdev)
        rc = ps_errf(e, PS_ERUN, "out of memory");
    for (int i = 0; i < r->nstages && !rc; i++) {
        int s = ro[i].stage, need = ro[i].replicas, got = 0;
        int *d = sdev[s] = malloc((size_t)need * sizeof(int));
        if (!d) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            break;
        }
        /* whole free nodes */
        for (int nd = 0; nd < nodes && need - got >= g; nd++) {
            int fr = 1;
            for (int k = 0; k < g && fr; k++)
                fr = !used[nd * g + k] && nd * g + k < cap;
            if (!fr)
                continue;
            for (int k = 0; k < g; k++) {
                used[nd * g + k] = 1;
                d[got++] = nd * g + k;
            }
        }
        /* the rest inside one node, first fit */
        int rest = need - got;
        for (int nd = 0; nd < nodes && rest > 0; nd++) {
            int fr = 0;
            for (int k = 0; k < g; k++)
                fr += !used[nd * g + k] && nd * g + k < cap;
            if (fr < rest)
                continue;
            for (int k = 0; k < g && rest > 0; k++)
                if (!used[nd * g + k] && nd * g + k < cap) {
                    used[nd * g + k] = 1;
                    d[got++] = nd * g + k;
                    rest--;
                }
        }
        /* spread over whatever is free */
        for (int dv = 0; dv < nodes * g && rest > 0; dv++)
            if (!used[dv] && dv < cap) {
                used[dv] = 1;
                d[got++] = dv;
                rest--;
            }
        if (rest > 0)
            rc = ps_errf(e, PS_EINPUT, "%s: the plan needs %d devices, the cluster has %d",
                         pp_planner_name(r->planner), total, cap);
    }
    for (int i = 0; i < r->nstages && !rc; i++) {
        const pp_pstage *st = &r->stages[i];
        rc = pp_plan_set_stage(p, i, st->ops, st->nops, st->microbatch, sdev[i], st->replicas, 0,
                               e);
    }
    if (sdev)
        for (int i = 0; i < r->nstages; i++)
            free(sdev[i]);
    free(sdev);
    free(used);
    free(start);
    free(ro);
    free(devs);
    if (!rc) {
        p->sequential = r->sequential;
        p->minibatch = minibatch;
        snprintf(p->planner, sizeof p->planner, "%s", pp_planner_name(r->planner));
        p->predicted_tps_s = r->objective_tps_s;
        p->search_time_s = r->search_time_s;
        rc = pp_plan_finalize(p, m, c, e);
    }
    if (rc) {
        pp_plan_free(p);
        return NULL;
    }
    return p;
}

/* ------------------------------------------------------------- a point */

static void result_nan(pp_point_result *r)
{
    memset(r, 0, sizeof *r);
    r->throughput_samples_per_s = NAN;
    r->iteration_s = NAN;
    r->objective = NAN;
    r->objective_tps_s = NAN;
    r->predicted_tps_s = NAN;
    r->predicted_throughput_samples_per_s = NAN;
    r->search_time_s = NAN;
    r->sim_wall_s = 0;
    r->bubble_fraction = NAN;
    r->peak_device_bytes = NAN;
    r->mem_capacity_bytes = NAN;
    r->oom_shortfall_bytes = NAN;
}

static pp_model *point_model(const pp_point_spec *s, ps_err *e)
{
    if (s->model_path)
        return pp_model_load(s->model_path, e);
    if (!s->builtin) {
        ps_errf(e, PS_EINPUT, "model: give a model file or a built-in generator");
        return NULL;
    }
    json_t *k = s->knobs ? json_deep_copy(s->knobs) : json_object();
    if (!k || !json_is_object(k)) {
        json_decref(k);
        ps_errf(e, PS_EINPUT, "model knobs: expected a JSON object");
        return NULL;
    }
    if (s->branches > 0) {
        /* the branch knob of the generator: candle-uno and mmt "branches",
         * dlrm both kinds */
        if (!strcmp(s->builtin, "dlrm")) {
            json_object_set_new(k, "dense_branches", json_integer(s->branches));
            json_object_set_new(k, "emb_branches", json_integer(s->branches));
        } else if (!strcmp(s->builtin, "transformer")) {
            json_decref(k);
            ps_errf(e, PS_EINPUT, "branches: the transformer generator is a chain");
            return NULL;
        } else {
            json_object_set_new(k, "branches", json_integer(s->branches));
        }
    }
    pp_model *m = pp_model_builtin(s->builtin, k, e);
    json_decref(k);
    return m;
}

static void fill_from_sim(pp_point_result *out, const pp_plan_result *sr)
{
    out->throughput_samples_per_s = sr->throughput_samples_per_s;
    out->iteration_s = sr->oom ? NAN : sr->iteration_s;
    out->bubble_fraction = sr->bubble_fraction;
    out->peak_device_bytes = sr->peak_device_bytes;
    out->mem_capacity_bytes = sr->mem_capacity_bytes;
    out->oom = sr->oom;
    out->oom_shortfall_bytes = sr->oom ? sr->oom_shortfall_bytes : 0;
}

int pp_plan_point(const pp_point_spec *s, pp_point_result *out, ps_err *e)
{
    if (s->microbatch_from && s->microbatch == 0) {
        /* the other planner first, on the same inputs, for its b */
        pp_point_spec o = *s;
        o.planner = s->microbatch_from;
        o.microbatch_from = 0;
        o.plan_out = o.trace_out = NULL;
        o.sim_detail = NULL;
        o.plan_detail = NULL;
        pp_popts po;
        if (s->opts) {
            po = *s->opts;
            po.planner = o.planner;
            o.opts = &po;
        }
        pp_point_result br;
        int rc = pp_plan_point(&o, &br, e);
        if (rc)
            return rc;
        pp_point_spec me = *s;
        me.microbatch_from = 0;
        if (br.feasible)
            me.microbatch = br.microbatch;
        rc = pp_plan_point(&me, out, e);
        out->microbatch_from_value = br.feasible ? br.microbatch : 0;
        out->microbatch_from_throughput_samples_per_s = br.throughput_samples_per_s;
        return rc;
    }
    result_nan(out);
    out->microbatch_from_throughput_samples_per_s = NAN;
    if (!pp_planner_name(s->planner) || !strcmp(pp_planner_name(s->planner), "?"))
        return ps_errf(e, PS_EINPUT, "planner: unknown");
    if (s->minibatch < 1)
        return ps_errf(e, PS_EINPUT, "minibatch: %d must be >= 1", s->minibatch);
    if (s->microbatch < 0 || (s->microbatch > 0 && s->minibatch % s->microbatch))
        return ps_errf(e, PS_EINPUT, "microbatch: %d must divide the mini-batch %d",
                       s->microbatch, s->minibatch);
    pp_model *m = point_model(s, e);
    if (!m)
        return e && e->code ? e->code : PS_EINPUT;
    pp_cluster c;
    cm_model *cm = NULL;
    pp_pgraph *g = NULL;
    pp_plan *best_plan = NULL;
    pp_presult best_r;
    memset(&best_r, 0, sizeof best_r);
    int have = 0;
    int rc = pp_cluster_load(s->cluster ? s->cluster : "summit", NULL, &c, e);
    if (!rc && !(cm = pp_cluster_cost_model(&c, e)))
        rc = e->code ? e->code : PS_ERUN;
    if (!rc && !(g = pp_pgraph_from_model(m, cm, e)))
        rc = e->code ? e->code : PS_ERUN;
    pp_pcluster pc;
    if (!rc)
        rc = pp_pcluster_from_cluster(&c, s->devices, s->optimizer, &pc, e);
    if (rc)
        goto done;
    out->model_ops = pp_model_nops(m);
    out->model_edges = pp_model_nedges(m);
    pp_popts o;
    if (s->opts)
        o = *s->opts;
    else
        pp_popts_default(&o, s->planner, s->minibatch);
    o.planner = s->planner;
    o.minibatch = s->minibatch;
    o.microbatch = s->microbatch;
    pp_sim_opts so = {.cm = cm};
    int cand[32], nc = 1;
    /* a Piper-imported model under Piper's cost model: its DP does not
     * depend on b (one sample is one Piper micro-batch), so it runs once */
    int piper_exact = o.planner == PP_PLANNER_PIPER && pp_model_piper(m) &&
                      o.piper_cost != PP_PIPER_COST_PLANSIM;
    if (s->microbatch == 0 && s->select_by_sim && !piper_exact)
        nc = pp_microbatch_candidates(s->minibatch, 0, cand);
    else
        cand[0] = s->microbatch;
    double search = 0, simwall = 0, best_thr = -1;
    pp_plan_result best_sr;
    memset(&best_sr, 0, sizeof best_sr);
    char note[512] = "";
    /* the time limit bounds the whole point: every micro-batch candidate's
     * search and simulation share it */
    const double limit = o.time_limit_s, t_point = ps_now_s();
    int limit_hit = 0, tried = nc;
    for (int i = 0; i < nc && !rc; i++) {
        if (limit > 0) {
            double left = limit - (ps_now_s() - t_point);
            if (left <= 0) {
                limit_hit = 1;
                tried = i;
                break;
            }
            o.time_limit_s = left;
        }
        o.microbatch = cand[i];
        pp_presult r;
        rc = piper_exact ? pp_piper_plan_model(m, g, &pc, &o, &r, e)
                         : pp_planner_run(g, &pc, &o, &r, e);
        if (rc)
            break;
        search += r.search_time_s;
        out->states += r.states;
        /* what does not depend on b is decided once */
        if (o.planner == PP_PLANNER_PIPEDREAM && o.pd_states == PP_PD_STATES_AUTO &&
            r.pd_states_used == PP_PD_STATES_TOPO)
            o.pd_states = PP_PD_STATES_TOPO;
        if (!r.feasible) {
            snprintf(note, sizeof note, "%s", r.note);
            int stop = r.budget_exceeded;
            pp_presult_free(&r);
            if (stop)
                break; /* the state space is the same for every b */
            continue;
        }
        pp_plan *p = pp_presult_to_plan(&r, m, &c, s->minibatch, s->devices, e);
        if (!p) {
            rc = e->code ? e->code : PS_ERUN;
            pp_presult_free(&r);
            break;
        }
        if (s->schedule)
            p->schedule = s->schedule;
        p->optimizer = s->optimizer;
        pp_plan_result sr;
        memset(&sr, 0, sizeof sr);
        rc = pp_plan_simulate(p, m, &c, &so, &sr, e);
        simwall += sr.sim_wall_s;
        if (rc) {
            pp_plan_result_free(&sr);
            pp_plan_free(p);
            pp_presult_free(&r);
            break;
        }
        /* keep the best simulated throughput; among plans that all run out
         * of memory, the one the planner predicted best */
        double thr = sr.oom ? 0 : sr.throughput_samples_per_s;
        int better = !have || thr > best_thr ||
                     (thr == best_thr && r.predicted_iteration_s < best_r.predicted_iteration_s);
        if (better) {
            pp_plan_free(best_plan);
            pp_presult_free(&best_r);
            pp_plan_result_free(&best_sr);
            best_plan = p;
            best_r = r;
            best_sr = sr;
            best_thr = thr;
            have = 1;
        } else {
            pp_plan_free(p);
            pp_presult_free(&r);
            pp_plan_result_free(&sr);
        }
    }
    out->search_time_s = search;
    if (rc)
        goto done;
    if (limit_hit && !have)
        snprintf(note, sizeof note, "time limit %g s reached: %d of %d micro-batch sizes tried",
                 limit, tried, nc);
    if (!have) {
        out->feasible = 0;
        snprintf(out->note, sizeof out->note, "%s", note[0] ? note : "no plan");
        out->sim_wall_s = simwall;
        goto done;
    }
    out->feasible = 1;
    out->objective = best_r.objective;
    out->objective_name = best_r.objective_name;
    out->objective_tps_s = best_r.objective_tps_s;
    out->predicted_tps_s = best_r.tps_s;
    out->predicted_throughput_samples_per_s =
        best_r.predicted_iteration_s > 0 ? s->minibatch / best_r.predicted_iteration_s : NAN;
    out->num_stages = best_r.nstages;
    out->depth = best_r.depth;
    out->devices_used = best_r.devices_used;
    out->microbatch = best_r.microbatch;
    out->sp_rewrites = best_r.sp_rewrites;
    if (limit_hit && !best_r.note[0])
        snprintf(out->note, sizeof out->note,
                 "time limit %g s reached: %d of %d micro-batch sizes tried, the best kept",
                 limit, tried, nc);
    else
        snprintf(out->note, sizeof out->note, "%s", best_r.note);
    fill_from_sim(out, &best_sr);
    if (s->trace_out) {
        pp_sim_opts to = so;
        to.trace_path = s->trace_out;
        pp_plan_result tr;
        memset(&tr, 0, sizeof tr);
        rc = pp_plan_simulate(best_plan, m, &c, &to, &tr, e);
        simwall += tr.sim_wall_s;
        pp_plan_result_free(&tr);
    }
    out->sim_wall_s = simwall;
    best_plan->search_time_s = search;
    if (!rc && s->plan_out)
        rc = pp_plan_save(best_plan, m, &c, s->plan_out, e);
    if (!rc && s->sim_detail) {
        *s->sim_detail = best_sr;
        memset(&best_sr, 0, sizeof best_sr);
    }
    if (!rc && s->plan_detail) {
        *s->plan_detail = best_plan;
        best_plan = NULL;
    }
done:
    pp_plan_result_free(&best_sr);
    pp_plan_free(best_plan);
    pp_presult_free(&best_r);
    pp_pgraph_free(g);
    cm_model_free(cm);
    pp_model_free(m);
    return rc;
}
