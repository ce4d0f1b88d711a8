/* Plans: building, validation, JSON, memory.  See plan.h; simulation is in
 * plan_sim.c. */
#include "sim/pipeline/plan.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

static int nomem(ps_err *e)
{
    return ps_errf(e, PS_ERUN, "plan: out of host memory");
}

pp_plan *pp_plan_new(int nstages, ps_err *e)
{
    if (nstages < 1 || nstages > 1000000) {
        ps_errf(e, PS_EINPUT, "plan: %d stages; need 1..1000000", nstages);
        return NULL;
    }
    pp_plan *p = calloc(1, sizeof *p);
    if (!p || !(p->stages = calloc((size_t)nstages, sizeof *p->stages))) {
        free(p);
        nomem(e);
        return NULL;
    }
    p->nstages = nstages;
    p->schedule = PP_1F1B;
    p->chunks = 1;
    p->optimizer = CM_OPT_ADAM;
    p->predicted_tps_s = NAN;
    p->search_time_s = NAN;
    return p;
}

void pp_plan_free(pp_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nstages; i++) {
        free(p->stages[i].ops);
        free(p->stages[i].devices);
    }
    free(p->stages);
    free(p->edges);
    free(p->model_ref);
    free(p->cluster_ref);
    free(p);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int pp_plan_set_stage(pp_plan *p, int i, const int *ops, int nops, int microbatch,
                      const int *devices, int ndevices, int inflight, ps_err *e)
{
    if (i < 0 || i >= p->nstages)
        return ps_errf(e, PS_EINPUT, "plan: stage %d out of range 0..%d", i, p->nstages - 1);
    if (nops < 0 || ndevices < 0)
        return ps_errf(e, PS_EINPUT, "plan: stage %d: negative counts", i);
    pp_stage *s = &p->stages[i];
    int *o = malloc((size_t)(nops ? nops : 1) * sizeof *o);
    int *d = malloc((size_t)(ndevices ? ndevices : 1) * sizeof *d);
    if (!o || !d) {
        free(o);
        free(d);
        return nomem(e);
    }
    if (nops)
        memcpy(o, ops, (size_t)nops * sizeof *o);
    if (ndevices)
        memcpy(d, devices, (size_t)ndevices * sizeof *d);
    qsort(o, (size_t)nops, sizeof *o, cmp_int);
    qsort(d, (size_t)ndevices, sizeof *d, cmp_int);
    free(s->ops);
    free(s->devices);
    s->ops = o;
    s->nops = nops;
    s->devices = d;
    s->ndevices = ndevices;
    s->microbatch = microbatch;
    s->inflight = inflight;
    return 0;
}

/* ---- finalize ---- */

static int same_devices(const pp_stage *a, const pp_stage *b)
{
    if (a->ndevices != b->ndevices)
        return 0;
    for (int i = 0; i < a->ndevices; i++)
        if (a->devices[i] != b->devices[i])
            return 0;
    return 1;
}

/* Stage of every op; -1 when none. */
static int op_stages(const pp_plan *p, const pp_model *m, int *st, ps_err *e)
{
    int n = pp_model_nops(m);
    for (int i = 0; i < n; i++)
        st[i] = -1;
    for (int s = 0; s < p->nstages; s++) {
        const pp_stage *g = &p->stages[s];
        if (g->nops < 1)
            return ps_errf(e, PS_EINPUT, "plan: stage %d has no ops", s);
        for (int k = 0; k < g->nops; k++) {
            int o = g->ops[k];
            if (o < 0 || o >= n)
                return ps_errf(e, PS_EINPUT, "plan: stage %d: op index %d out of range 0..%d", s,
                               o, n - 1);
            if (st[o] >= 0)
                return ps_errf(e, PS_EINPUT, "plan: op \"%s\" is in stage %d and in stage %d",
                               pp_model_op_at(m, o)->id, st[o], s);
            st[o] = s;
        }
    }
    for (int i = 0; i < n; i++)
        if (st[i] < 0)
            return ps_errf(e, PS_EINPUT, "plan: op \"%s\" is in no stage", pp_model_op_at(m, i)->id);
    return 0;
}

/* A stage is convex when no path leaves it and comes back.  Sweep the ops
 * in topological order between the stage's first and last op, marking the
 * outside ops reachable from it. */
static int check_convex(const pp_plan *p, const pp_model *m, const int *st, int s, char *mark,
                        ps_err *e)
{
    const pp_stage *g = &p->stages[s];
    int lo = g->ops[0], hi = g->ops[g->nops - 1];
    for (int i = lo; i <= hi; i++) {
        const pp_model_op *o = pp_model_op_at(m, i);
        mark[i] = 0;
        for (int k = 0; k < o->ninputs; k++) {
            int x = o->inputs[k];
            if (x < lo) /* every path out of the stage climbs from lo */
                continue;
            if (st[i] == s && st[x] != s && mark[x])
                return ps_errf(e, PS_EINPUT,
                               "plan: stage %d is not convex: its op \"%s\" depends on op \"%s\" "
                               "(stage %d), which depends on the stage's own ops",
                               s, o->id, pp_model_op_at(m, x)->id, st[x]);
            if (st[i] != s && (st[x] == s || mark[x]))
                mark[i] = 1;
        }
    }
    return 0;
}

static int add_edge(pp_plan *p, int *cap, int from, int to, ps_err *e)
{
    for (int i = 0; i < p->nedges; i++)
        if (p->edges[i].from == from && p->edges[i].to == to)
            return 0;
    if (p->nedges == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        pp_stage_edge *t = realloc(p->edges, (size_t)nc * sizeof *t);
        if (!t)
            return nomem(e);
        p->edges = t;
        *cap = nc;
    }
    p->edges[p->nedges++] = (pp_stage_edge){from, to};
    return 0;
}

static int cmp_edge(const void *a, const void *b)
{
    const pp_stage_edge *x = a, *y = b;
    if (x->from != y->from)
        return (x->from > y->from) - (x->from < y->from);
    return (x->to > y->to) - (x->to < y->to);
}

static int build_edges(pp_plan *p, const pp_model *m, const int *st, ps_err *e)
{
    free(p->edges);
    p->edges = NULL;
    p->nedges = 0;
    int cap = 0, n = pp_model_nops(m);
    /* Per-consumer dedupe keeps this linear for the usual sparse graphs. */
    for (int i = 0; i < n; i++) {
        const pp_model_op *o = pp_model_op_at(m, i);
        for (int k = 0; k < o->ninputs; k++) {
            int a = st[o->inputs[k]], b = st[i];
            if (a != b) {
                int rc = add_edge(p, &cap, a, b, e);
                if (rc)
                    return rc;
            }
        }
    }
    if (p->nedges)
        qsort(p->edges, (size_t)p->nedges, sizeof *p->edges, cmp_edge);
    return 0;
}

int pp_plan_finalize(pp_plan *p, const pp_model *m, const pp_cluster *c, ps_err *e)
{
    int n = pp_model_nops(m), S = p->nstages, rc = 0;
    int *st = malloc((size_t)n * sizeof *st);
    char *mark = calloc((size_t)n, 1);
    int *indeg = calloc((size_t)S, sizeof *indeg), *order = malloc((size_t)S * sizeof *order);
    int *newidx = malloc((size_t)S * sizeof *newidx);
    if (!st || !mark || !indeg || !order || !newidx) {
        rc = nomem(e);
        goto out;
    }
    if (p->minibatch < 1) {
        rc = ps_errf(e, PS_EINPUT, "plan: minibatch %d; need >= 1", p->minibatch);
        goto out;
    }
    if (!pp_stage_op_count_ex(p->schedule, 1, p->chunks > 0 ? p->chunks : 1)) {
        rc = ps_errf(e, PS_EINPUT, "plan: unknown schedule %d", (int)p->schedule);
        goto out;
    }
    if (p->schedule != PP_INTERLEAVED)
        p->chunks = 1;
    else if (p->chunks < 1) {
        rc = ps_errf(e, PS_EINPUT, "plan: interleaved needs chunks >= 1 (got %d)", p->chunks);
        goto out;
    }
    for (int s = 0; s < S; s++) {
        const pp_stage *g = &p->stages[s];
        if (g->microbatch < 1 || p->minibatch % g->microbatch) {
            rc = ps_errf(e, PS_EINPUT, "plan: stage %d: microbatch %d must be >= 1 and divide "
                         "the minibatch %d", s, g->microbatch, p->minibatch);
            goto out;
        }
        if (g->inflight < 0) {
            rc = ps_errf(e, PS_EINPUT, "plan: stage %d: inflight %d must be >= 0 (0 = derived)",
                         s, g->inflight);
            goto out;
        }
        if (g->ndevices < 1) {
            rc = ps_errf(e, PS_EINPUT, "plan: stage %d has no devices", s);
            goto out;
        }
        for (int k = 0; k < g->ndevices; k++) {
            int d = g->devices[k];
            if (d < 0 || (c && d >= pp_cluster_capacity(c))) {
                rc = ps_errf(e, PS_EINPUT, "plan: stage %d: device %d is not in the cluster "
                             "(devices 0..%d)", s, d, c ? pp_cluster_capacity(c) - 1 : INT_MAX);
                goto out;
            }
            if (k > 0 && g->devices[k - 1] == d) {
                rc = ps_errf(e, PS_EINPUT, "plan: stage %d lists device %d twice", s, d);
                goto out;
            }
        }
    }
    if ((rc = op_stages(p, m, st, e)))
        goto out;
    for (int s = 0; s < S && !rc; s++)
        rc = check_convex(p, m, st, s, mark, e);
    if (rc || (rc = build_edges(p, m, st, e)))
        goto out;
    /* Topological order of the stages, stable (Kahn, smallest index first;
     * S is small, so a linear scan for the next ready stage is fine). */
    for (int i = 0; i < p->nedges; i++)
        indeg[p->edges[i].to]++;
    int done = 0;
    char *used = calloc((size_t)S, 1);
    if (!used) {
        rc = nomem(e);
        goto out;
    }
    while (done < S) {
        int pick = -1;
        for (int s = 0; s < S && pick < 0; s++)
            if (!used[s] && indeg[s] == 0)
                pick = s;
        if (pick < 0)
            break;
        used[pick] = 1;
        order[done++] = pick;
        for (int i = 0; i < p->nedges; i++)
            if (p->edges[i].from == pick)
                indeg[p->edges[i].to]--;
    }
    if (done < S) {
        /* Convex stages with a cycle between them: name one edge on it. */
        int a = -1, b = -1;
        for (int i = 0; i < p->nedges && a < 0; i++)
            if (!used[p->edges[i].from] && !used[p->edges[i].to]) {
                a = p->edges[i].from;
                b = p->edges[i].to;
            }
        free(used);
        rc = ps_errf(e, PS_EINPUT, "plan: the stage graph has a cycle (through stage %d -> "
                     "stage %d): ops of one stage feed another and back", a, b);
        goto out;
    }
    free(used);
    /* Reorder the stages and renumber the edges. */
    pp_stage *sorted = malloc((size_t)S * sizeof *sorted);
    if (!sorted) {
        rc = nomem(e);
        goto out;
    }
    for (int i = 0; i < S; i++) {
        sorted[i] = p->stages[order[i]];
        newidx[order[i]] = i;
    }
    free(p->stages);
    p->stages = sorted;
    for (int i = 0; i < p->nedges; i++) {
        p->edges[i].from = newidx[p->edges[i].from];
        p->edges[i].to = newidx[p->edges[i].to];
    }
    if (p->nedges)
        qsort(p->edges, (size_t)p->nedges, sizeof *p->edges, cmp_edge);
    /* A sequential pipeline: the op edges only fixed the order (they all go
     * forward in it); the stages themselves form a chain. */
    if (p->sequential) {
        free(p->edges);
        p->edges = NULL;
        p->nedges = 0;
        int cap = 0;
        for (int i = 0; i + 1 < S && !rc; i++)
            rc = add_edge(p, &cap, i, i + 1, e);
        if (rc)
            goto out;
    }
    /* Micro-batch sizes across edges: one must divide the other, so that
     * micro-batches map onto each other. */
    for (int i = 0; i < p->nedges; i++) {
        int bu = p->stages[p->edges[i].from].microbatch, bv = p->stages[p->edges[i].to].microbatch;
        if (bu % bv && bv % bu) {
            rc = ps_errf(e, PS_EINPUT, "plan: stages %d and %d: micro-batches %d and %d; one "
                         "must divide the other", p->edges[i].from, p->edges[i].to, bu, bv);
            goto out;
        }
    }
    if (p->schedule == PP_ZB_H1 || p->schedule == PP_INTERLEAVED)
        for (int s = 1; s < S; s++)
            if (p->stages[s].microbatch != p->stages[0].microbatch) {
                rc = ps_errf(e, PS_EINPUT, "plan: %s needs one micro-batch size on every stage "
                             "(stage 0 has %d, stage %d has %d)", pp_schedule_name(p->schedule),
                             p->stages[0].microbatch, s, p->stages[s].microbatch);
                goto out;
            }
    if (p->schedule == PP_INTERLEAVED) {
        int v = p->chunks;
        if (S % v) {
            rc = ps_errf(e, PS_EINPUT, "plan: interleaved with %d chunks needs a multiple of %d "
                         "stages (got %d)", v, v, S);
            goto out;
        }
        int P = S / v;
        for (int i = 0; i < p->nedges; i++)
            if (p->edges[i].to != p->edges[i].from + 1) {
                rc = ps_errf(e, PS_EINPUT, "plan: interleaved needs a chain of stages; stage %d "
                             "feeds stage %d", p->edges[i].from, p->edges[i].to);
                goto out;
            }
        if (p->nedges != S - 1) {
            rc = ps_errf(e, PS_EINPUT, "plan: interleaved needs a chain of stages (%d edges for "
                         "%d stages)", p->nedges, S);
            goto out;
        }
        int m = p->minibatch / p->stages[0].microbatch;
        if (m % P) {
            rc = ps_errf(e, PS_EINPUT, "plan: interleaved needs the micro-batches (%d) to be a "
                         "multiple of the devices groups (%d)", m, P);
            goto out;
        }
        for (int s = P; s < S; s++)
            if (!same_devices(&p->stages[s], &p->stages[s % P])) {
                rc = ps_errf(e, PS_EINPUT, "plan: interleaved: stage %d must run on stage %d's "
                             "devices (chunk %d of that group)", s, s % P, s / P);
                goto out;
            }
        S = P; /* only the first p sets must be disjoint */
    }
    /* Device sets disjoint (C3): one owner per device; relaxed when the
     * plan lets stages share devices. */
    if (!p->shared_devices) {
        int maxd = 0;
        for (int s = 0; s < S; s++)
            for (int k = 0; k < p->stages[s].ndevices; k++)
                if (p->stages[s].devices[k] > maxd)
                    maxd = p->stages[s].devices[k];
        int *owner = malloc(((size_t)maxd + 1) * sizeof *owner);
        if (!owner) {
            rc = nomem(e);
            goto out;
        }
        for (int d = 0; d <= maxd; d++)
            owner[d] = -1;
        for (int s = 0; s < S && !rc; s++)
            for (int k = 0; k < p->stages[s].ndevices && !rc; k++) {
                int d = p->stages[s].devices[k];
                if (owner[d] >= 0)
                    rc = ps_errf(e, PS_EINPUT, "plan: device %d is in stage %d and in stage %d",
                                 d, owner[d], s);
                owner[d] = s;
            }
        free(owner);
    }
out:
    free(st);
    free(mark);
    free(indeg);
    free(order);
    free(newidx);
    return rc;
}

int pp_plan_microbatches(const pp_plan *p, int s)
{
    return p->minibatch / p->stages[s].microbatch;
}

int pp_plan_replica_samples(const pp_plan *p, int s)
{
    const pp_stage *g = &p->stages[s];
    return (g->microbatch + g->ndevices - 1) / g->ndevices;
}

/* Every stage's in-flight count in one backward sweep: stages are in
 * topological order and edges sorted by source, so each stage's successors
 * are settled and its out-edges contiguous.  O(stages + edges). */
int pp_plan_inflight_all(const pp_plan *p, int *f)
{
    int S = p->nstages, q = p->nedges - 1;
    for (int s = S - 1; s >= 0; s--) {
        long long best = 0, bs = p->stages[s].microbatch;
        for (; q >= 0 && p->edges[q].from > s; q--)
            ;
        for (int k = q; k >= 0 && p->edges[k].from == s; k--) {
            int t = p->edges[k].to;
            long long need = ((long long)f[t] * p->stages[t].microbatch + bs - 1) / bs;
            if (need > best)
                best = need;
        }
        f[s] = p->stages[s].inflight > 0 ? p->stages[s].inflight
                                         : (int)(best + 1 < 1000000000 ? best + 1 : 1000000000);
    }
    return 0;
}

int pp_plan_inflight(const pp_plan *p, int stage)
{
    if (p->stages[stage].inflight > 0)
        return p->stages[stage].inflight;
    int *f = malloc((size_t)p->nstages * sizeof *f);
    if (!f)
        return 1;
    pp_plan_inflight_all(p, f);
    int r = f[stage];
    free(f);
    return r;
}

/* ---- JSON ---- */

static const char *opt_name(cm_optimizer o)
{
    return o == CM_OPT_SGD ? "sgd" : o == CM_OPT_MOMENTUM ? "momentum" : "adam";
}

pp_plan *pp_plan_from_json(const json_t *doc, const char *what, const pp_model *m, ps_err *e)
{
    static const char *const keys[] = {"model", "cluster", "minibatch", "schedule", "chunks",
                                       "optimizer", "planner", "predicted_time_per_sample_s",
                                       "search_time_s", "stages", "description", "result",
                                       "sequential", "shared_devices", NULL};
    static const char *const skeys[] = {"ops", "microbatch", "devices", "inflight", "name", NULL};
    if (!what)
        what = "plan";
    if (!json_is_object(doc)) {
        ps_errf(e, PS_EINPUT, "%s: $: expected a plan object", what);
        return NULL;
    }
    json_t *js = json_object_get(doc, "stages");
    if (ps_json_check_keys(doc, "$", keys, e)) {
        ps_err_prefix(e, "%s: ", what);
        return NULL;
    }
    if (!json_is_array(js) || json_array_size(js) == 0) {
        ps_errf(e, PS_EINPUT, "%s: $.stages: expected a non-empty array of stages", what);
        return NULL;
    }
    pp_plan *p = pp_plan_new((int)json_array_size(js), e);
    if (!p)
        return NULL;
    long long mb = 0, chunks = 1;
    const char *sched = "1f1b", *opt = "adam", *planner = "";
    double tps = NAN, st = NAN;
    int rc = 0;
    if ((rc = ps_json_get_int(doc, "$", "minibatch", 1, &mb, e)) ||
        (rc = ps_json_get_str(doc, "$", "schedule", 0, &sched, e)) ||
        (rc = ps_json_get_int(doc, "$", "chunks", 0, &chunks, e)) ||
        (rc = ps_json_get_str(doc, "$", "optimizer", 0, &opt, e)) ||
        (rc = ps_json_get_str(doc, "$", "planner", 0, &planner, e)) ||
        (rc = ps_json_get_num(doc, "$", "predicted_time_per_sample_s", 0, &tps, e)) ||
        (rc = ps_json_get_num(doc, "$", "search_time_s", 0, &st, e)) ||
        (rc = ps_json_get_bool(doc, "$", "sequential", 0, &p->sequential, e)) ||
        (rc = ps_json_get_bool(doc, "$", "shared_devices", 0, &p->shared_devices, e)))
        goto bad;
    if (mb < 1 || mb > INT_MAX) {
        rc = ps_errf(e, PS_EINPUT, "$.minibatch: %lld; need >= 1", mb);
        goto bad;
    }
    p->minibatch = (int)mb;
    if (!(p->schedule = pp_schedule_parse(sched))) {
        rc = ps_errf(e, PS_EINPUT, "$.schedule: unknown \"%s\" (expected gpipe, 1f1b, "
                     "interleaved or zb-h1)", sched);
        goto bad;
    }
    if (chunks < 1 || chunks > 1024) {
        rc = ps_errf(e, PS_EINPUT, "$.chunks: %lld; need 1..1024", chunks);
        goto bad;
    }
    p->chunks = (int)chunks;
    int o = cm_optimizer_from_name(opt);
    if (o < 0) {
        rc = ps_errf(e, PS_EINPUT, "$.optimizer: unknown \"%s\" (expected sgd, momentum or adam)",
                     opt);
        goto bad;
    }
    p->optimizer = (cm_optimizer)o;
    snprintf(p->planner, sizeof p->planner, "%s", planner);
    p->predicted_tps_s = tps;
    p->search_time_s = st;
    json_t *jm = json_object_get(doc, "model"), *jc = json_object_get(doc, "cluster");
    if (json_is_string(jm) && !(p->model_ref = strdup(json_string_value(jm)))) {
        rc = nomem(e);
        goto bad;
    }
    if (json_is_string(jc) && !(p->cluster_ref = strdup(json_string_value(jc)))) {
        rc = nomem(e);
        goto bad;
    }
    int n = pp_model_nops(m);
    int *ops = malloc((size_t)(n ? n : 1) * sizeof *ops);
    if (!ops) {
        rc = nomem(e);
        goto bad;
    }
    for (size_t i = 0; i < json_array_size(js) && !rc; i++) {
        json_t *s = json_array_get(js, i);
        char where[64];
        snprintf(where, sizeof where, "$.stages[%zu]", i);
        if (!json_is_object(s)) {
            rc = ps_errf(e, PS_EINPUT, "%s: expected a stage object", where);
            break;
        }
        long long b = 0, inf = 0;
        if ((rc = ps_json_check_keys(s, where, skeys, e)) ||
            (rc = ps_json_get_int(s, where, "microbatch", 1, &b, e)) ||
            (rc = ps_json_get_int(s, where, "inflight", 0, &inf, e)))
            break;
        if (b < 1 || b > INT_MAX || inf < 0 || inf > INT_MAX) {
            rc = ps_errf(e, PS_EINPUT, "%s: microbatch %lld must be >= 1, inflight %lld >= 0",
                         where, b, inf);
            break;
        }
        json_t *jo = json_object_get(s, "ops"), *jd = json_object_get(s, "devices");
        if (!json_is_array(jo) || json_array_size(jo) == 0 || json_array_size(jo) > (size_t)n) {
            rc = ps_errf(e, PS_EINPUT, "%s.ops: expected a non-empty array of op ids", where);
            break;
        }
        if (!json_is_array(jd) || json_array_size(jd) == 0) {
            rc = ps_errf(e, PS_EINPUT, "%s.devices: expected a non-empty array of device ids",
                         where);
            break;
        }
        int no = (int)json_array_size(jo), nd = (int)json_array_size(jd);
        for (int k = 0; k < no && !rc; k++) {
            const char *id = json_string_value(json_array_get(jo, (size_t)k));
            int x = id ? pp_model_find(m, id) : -1;
            if (x < 0)
                rc = ps_errf(e, PS_EINPUT, "%s.ops[%d]: \"%s\" is not an op of model \"%s\"", where,
                             k, id ? id : "(not a string)", pp_model_name(m));
            ops[k] = x;
        }
        int *devs = malloc((size_t)nd * sizeof *devs);
        if (!devs && !rc)
            rc = nomem(e);
        for (int k = 0; k < nd && !rc; k++) {
            char path[96];
            long long d;
            snprintf(path, sizeof path, "%s.devices[%d]", where, k);
            if ((rc = ps_json_as_int(json_array_get(jd, (size_t)k), path, &d, e)))
                break;
            if (d < 0 || d > INT_MAX)
                rc = ps_errf(e, PS_EINPUT, "%s: device %lld; need >= 0", path, d);
            devs[k] = (int)d;
        }
        if (!rc)
            rc = pp_plan_set_stage(p, (int)i, ops, no, (int)b, devs, nd, (int)inf, e);
        free(devs);
    }
    free(ops);
    if (!rc)
        return p;
bad:
    ps_err_prefix(e, "%s: ", what);
    pp_plan_free(p);
    return NULL;
}

static pp_model *load_model_ref(const json_t *jm, const char *plan_path, char *resolved,
                                size_t n, ps_err *e)
{
    if (json_is_string(jm)) {
        ps_path_relative_to(plan_path, json_string_value(jm), resolved, n);
        return pp_model_load(resolved, e);
    }
    snprintf(resolved, n, "%s: $.model", plan_path);
    if (json_is_object(jm) && json_object_get(jm, "builtin")) {
        const char *name = json_string_value(json_object_get(jm, "builtin"));
        pp_model *m = pp_model_builtin(name, json_object_get(jm, "params"), e);
        if (!m)
            ps_err_prefix(e, "%s: ", resolved);
        return m;
    }
    if (json_is_object(jm))
        return pp_model_from_json(jm, resolved, e);
    ps_errf(e, PS_EINPUT, "%s: missing: a model file, {\"builtin\": NAME, \"params\": {...}}, or "
            "an inline model", resolved);
    return NULL;
}

pp_plan *pp_plan_load(const char *path, pp_model **model_out, pp_cluster *cluster_out, ps_err *e)
{
    json_t *doc = ps_json_load_file(path, e);
    if (!doc)
        return NULL;
    pp_model *m = NULL;
    pp_plan *p = NULL;
    char where[4200];
    m = load_model_ref(json_object_get(doc, "model"), path, where, sizeof where, e);
    if (!m)
        goto out;
    p = pp_plan_from_json(doc, path, m, e);
    if (!p)
        goto out;
    pp_cluster c, *cp = NULL;
    json_t *jc = json_object_get(doc, "cluster");
    if (cluster_out) {
        int rc;
        if (json_is_string(jc)) {
            const char *ref = json_string_value(jc);
            int builtin = 0;
            for (const char *const *b = pp_cluster_builtin_names(); *b; b++)
                builtin |= !strcmp(*b, ref);
            ps_path_relative_to(path, ref, where, sizeof where);
            rc = pp_cluster_load(builtin && !ps_file_exists(where) ? ref : where, NULL, &c, e);
        } else if (json_is_object(jc)) {
            snprintf(where, sizeof where, "%s: $.cluster", path);
            rc = pp_cluster_from_json(jc, where, NULL, &c, e);
        } else {
            rc = ps_errf(e, PS_EINPUT, "%s: $.cluster: missing (a built-in name, a file or an "
                         "inline cluster)", path);
        }
        if (rc) {
            pp_plan_free(p);
            p = NULL;
            goto out;
        }
        cp = &c;
        *cluster_out = c;
    }
    if (model_out) {
        if (pp_plan_finalize(p, m, cp, e)) {
            ps_err_prefix(e, "%s: ", path);
            pp_plan_free(p);
            p = NULL;
            goto out;
        }
        *model_out = m;
        m = NULL;
    }
out:
    pp_model_free(m);
    json_decref(doc);
    return p;
}

json_t *pp_plan_to_json(const pp_plan *p, const pp_model *m, const pp_cluster *c)
{
    json_t *o = json_object();
    if (p->model_ref)
        json_object_set_new(o, "model", json_string(p->model_ref));
    else if (m)
        json_object_set_new(o, "model", pp_model_to_json(m));
    if (p->cluster_ref)
        json_object_set_new(o, "cluster", json_string(p->cluster_ref));
    else if (c)
        json_object_set_new(o, "cluster", pp_cluster_to_json(c));
    json_object_set_new(o, "minibatch", json_integer(p->minibatch));
    json_object_set_new(o, "schedule", json_string(pp_schedule_name(p->schedule)));
    if (p->schedule == PP_INTERLEAVED)
        json_object_set_new(o, "chunks", json_integer(p->chunks));
    json_object_set_new(o, "optimizer", json_string(opt_name(p->optimizer)));
    if (p->sequential)
        json_object_set_new(o, "sequential", json_true());
    if (p->shared_devices)
        json_object_set_new(o, "shared_devices", json_true());
    if (p->planner[0])
        json_object_set_new(o, "planner", json_string(p->planner));
    if (isfinite(p->predicted_tps_s))
        json_object_set_new(o, "predicted_time_per_sample_s", json_real(p->predicted_tps_s));
    if (isfinite(p->search_time_s))
        json_object_set_new(o, "search_time_s", json_real(p->search_time_s));
    json_t *js = json_array();
    for (int s = 0; s < p->nstages; s++) {
        const pp_stage *g = &p->stages[s];
        json_t *j = json_object(), *ops = json_array(), *devs = json_array();
        for (int k = 0; k < g->nops; k++) {
            const pp_model_op *op = m ? pp_model_op_at(m, g->ops[k]) : NULL;
            json_array_append_new(ops, op ? json_string(op->id) : json_integer(g->ops[k]));
        }
        for (int k = 0; k < g->ndevices; k++)
            json_array_append_new(devs, json_integer(g->devices[k]));
        json_object_set_new(j, "ops", ops);
        json_object_set_new(j, "microbatch", json_integer(g->microbatch));
        json_object_set_new(j, "devices", devs);
        if (g->inflight > 0)
            json_object_set_new(j, "inflight", json_integer(g->inflight));
        json_array_append_new(js, j);
    }
    json_object_set_new(o, "stages", js);
    return o;
}

int pp_plan_save(const pp_plan *p, const pp_model *m, const pp_cluster *c, const char *path,
                 ps_err *e)
{
    json_t *j = pp_plan_to_json(p, m, c);
    char *txt = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!txt)
        return nomem(e);
    size_t len = strlen(txt);
    char *t2 = realloc(txt, len + 2);
    if (!t2) {
        free(txt);
        return nomem(e);
    }
    t2[len] = '\n';
    t2[len + 1] = 0;
    int rc = ps_file_write_atomic(path, t2, len + 1, e);
    free(t2);
    return rc;
}

/* ---- memory ---- */

static double state_factor(cm_optimizer o)
{
    return o == CM_OPT_SGD ? 0 : o == CM_OPT_MOMENTUM ? 1 : 2;
}

/* Deepest stage count from any stage to a sink (ZB-H1's lag reference). */
static int max_inflight(const pp_plan *p)
{
    int mx = 1, *f = malloc((size_t)p->nstages * sizeof *f);
    if (!f)
        return 1;
    pp_plan_inflight_all(p, f);
    for (int s = 0; s < p->nstages; s++)
        if (f[s] > mx)
            mx = f[s];
    free(f);
    return mx;
}

int pp_stage_inflight_peak(const pp_plan *p, int s)
{
    int m = pp_plan_microbatches(p, s);
    switch (p->schedule) {
    case PP_GPIPE:
        return m;
    case PP_1F1B: {
        int f = pp_plan_inflight(p, s);
        return f < m ? f : m;
    }
    case PP_ZB_H1: {
        /* Warm-up f = depth forwards, W lagging B by D - f: f + (D - f) = D
         * activations held once the lag has filled (D = deepest stage). */
        int d = max_inflight(p);
        return d < m ? d : m;
    }
    case PP_INTERLEAVED: {
        int v = p->chunks, P = p->nstages / v, r = s % P;
        if (v == 1)
            return P - r < m ? P - r : m;
        int w = m == P ? m * v : 2 * (P - r - 1) + (v - 1) * P + 1;
        return w < m * v ? w : m * v;
    }
    }
    return m;
}

int pp_stage_memory(const pp_plan *p, int s, const pp_op_cost *costs, pp_stage_mem *out)
{
    memset(out, 0, sizeof *out);
    if (s < 0 || s >= p->nstages)
        return PS_EINPUT;
    double params = 0, act = 0;
    int v = p->schedule == PP_INTERLEAVED ? p->chunks : 1, P = p->nstages / v;
    double chunk_act_max = 0;
    /* Under interleaving a device holds all its chunks (stages s mod P). */
    for (int c = 0; c < v; c++) {
        int st = v > 1 ? (s % P) + c * P : s;
        const pp_stage *g = &p->stages[st];
        double a = 0;
        for (int k = 0; k < g->nops; k++) {
            params += costs[g->ops[k]].param_bytes;
            a += costs[g->ops[k]].act_bytes;
        }
        if (a > chunk_act_max)
            chunk_act_max = a;
        act += a;
    }
    int peak = pp_stage_inflight_peak(p, s);
    out->inflight = peak;
    out->weights_bytes = params;
    out->grads_bytes = params;
    out->optimizer_bytes = params * state_factor(p->optimizer);
    /* Interleaved peaks count chunk activations; the largest chunk bounds
     * each (exact when chunks are uniform). */
    out->activations_bytes = v > 1 ? peak * chunk_act_max : peak * act;
    out->total_bytes = out->weights_bytes + out->grads_bytes + out->optimizer_bytes +
                       out->activations_bytes;
    return 0;
}

int pp_plan_check_memory(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                         const cm_model *cm_in, int *device, double *shortfall_bytes, ps_err *e)
{
    if (device)
        *device = -1;
    if (shortfall_bytes)
        *shortfall_bytes = 0;
    int n = pp_model_nops(m), rc = 0;
    cm_model *own = NULL;
    const cm_model *cm = cm_in;
    pp_op_cost *cost = malloc((size_t)n * sizeof *cost);
    if (!cost)
        return nomem(e);
    if (!cm) {
        int any = 0;
        for (int i = 0; i < n && !any; i++)
            any = !pp_model_op_at(m, i)->measured.has;
        if (any && !(cm = own = pp_cluster_cost_model(c, e))) {
            free(cost);
            return e ? e->code : PS_ERUN;
        }
    }
    int v = p->schedule == PP_INTERLEAVED ? p->chunks : 1, G = p->nstages / v;
    int worst = -1, last_samples = -1;
    double worst_short = 0;
    pp_stage_mem worst_mem = {0};
    for (int s = 0; s < G && !rc; s++) {
        int smp = pp_plan_replica_samples(p, s);
        if (smp != last_samples && (rc = pp_model_costs(m, cm, smp, cost, e)))
            break;
        last_samples = smp;
        pp_stage_mem mem;
        pp_stage_memory(p, s, cost, &mem);
        double sh = mem.total_bytes - c->mem_bytes;
        if (sh > worst_short) {
            worst_short = sh;
            worst = s;
            worst_mem = mem;
        }
    }
    if (!rc && worst >= 0) {
        int dev = p->stages[worst].devices[0];
        if (device)
            *device = dev;
        if (shortfall_bytes)
            *shortfall_bytes = worst_short;
        rc = ps_errf(e, PS_ERUN,
                     "plan: out of memory on device %d (stage %d): needs %.6g bytes (weights "
                     "%.6g, gradients %.6g, optimizer %.6g, activations %.6g for %d in flight), "
                     "has %.6g: short by %.6g bytes",
                     dev, worst, worst_mem.total_bytes, worst_mem.weights_bytes,
                     worst_mem.grads_bytes, worst_mem.optimizer_bytes,
                     worst_mem.activations_bytes, worst_mem.inflight, c->mem_bytes, worst_short);
    }
    cm_model_free(own);
    free(cost);
    return rc;
}
