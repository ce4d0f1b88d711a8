/* The oracle: every partition of the ops into convex stages whose stage
 * graph is acyclic, every replica count per stage (sum <= devices, each <=
 * b), scored with the shared cost model (planner.h) under GraphPipe's
 * objective: the least bottleneck time per sample, memory checked with the
 * in-flight count of GraphPipe's rule (longest stage path to the sink, at
 * most m); ties go to the shallower plan.
 *
 * With ex_sp_aligned it keeps only partitions whose stages are all SP
 * intervals (pp_sp_is_interval): exactly the space GraphPipe's DP searches,
 * so the two must agree.  Without it, it searches all convex partitions and
 * also reports the best SP-aligned one, gap_vs_sp = best_sp / best - 1: the
 * price of the decomposition.
 *
 * Partitions are enumerated once each: the stage holding the lowest
 * unassigned op (in topological order) is chosen first, among the subsets
 * of the unassigned ops, and must be convex in the whole graph. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/planner_impl.h"

#define EX_MAX_OPS 16
#define EX_MAX_DEV 16

typedef struct exst {
    pp_pgraph *g;
    const pp_pcluster *pc;
    int n, N, b, B, m, rmax, sp_only;
    uint32_t anc[EX_MAX_OPS], desc[EX_MAX_OPS], succ[EX_MAX_OPS];
    int topo[EX_MAX_OPS];
    unsigned char *is_iv;     /* [1<<n]: 1 if an SP interval */
    double **tps;             /* [1<<n] -> [rmax+1], lazily */
    int **maxinf;
    uint32_t stages[EX_MAX_OPS];
    int nst;
    /* best overall and best SP-aligned */
    double best, best_sp;
    int best_depth, best_sp_depth;
    uint32_t best_st[EX_MAX_OPS];
    int best_r[EX_MAX_OPS], best_n;
    long long parts, work;
    double t0, limit;
    int timed_out;
    ps_err *e;
    int failed;
} exst;

static int stage_costs(exst *s, uint32_t mask)
{
    if (s->tps[mask])
        return 0;
    int ops[EX_MAX_OPS], k = 0;
    for (int v = 0; v < s->n; v++)
        if (mask >> v & 1)
            ops[k++] = v;
    double *t = malloc(((size_t)s->rmax + 1) * sizeof *t);
    int *mi = malloc(((size_t)s->rmax + 1) * sizeof *mi);
    if (!t || !mi) {
        free(t);
        free(mi);
        return s->failed = ps_errf(s->e, PS_ERUN, "exhaustive: out of memory");
    }
    double par = pp_pg_sum_param(s->g, ops, k), act = pp_pg_sum_act(s->g, ops, k);
    for (int r = 1; r <= s->rmax; r++) {
        int rc = pp_pg_stage_eval(s->g, s->pc, ops, k, s->b, r, s->B, 1, &t[r], NULL, s->e);
        if (rc) {
            free(t);
            free(mi);
            return s->failed = rc;
        }
        mi[r] = pp_maxinflight_formula(s->pc, par, act, pp_ceil_div(s->b, r));
    }
    s->tps[mask] = t;
    s->maxinf[mask] = mi;
    return 0;
}

/* Score the current complete partition. */
static void score(exst *s)
{
    int k = s->nst;
    s->parts++;
    /* stage DAG, acyclicity, depth (longest path to a sink, in stages) */
    int stage_of[EX_MAX_OPS];
    for (int i = 0; i < k; i++)
        for (int v = 0; v < s->n; v++)
            if (s->stages[i] >> v & 1)
                stage_of[v] = i;
    uint32_t adj[EX_MAX_OPS] = {0};
    for (int v = 0; v < s->n; v++)
        for (int u = 0; u < s->n; u++)
            if ((s->succ[v] >> u & 1) && stage_of[v] != stage_of[u])
                adj[stage_of[v]] |= 1u << stage_of[u];
    int depth[EX_MAX_OPS], done = 0;
    uint32_t fin = 0;
    while (done < k) {
        int progress = 0;
        for (int i = 0; i < k; i++) {
            if (fin >> i & 1)
                continue;
            if ((adj[i] & ~fin) != 0)
                continue;
            int d = 0;
            for (int j = 0; j < k; j++)
                if ((adj[i] >> j & 1) && depth[j] > d)
                    d = depth[j];
            depth[i] = d + 1;
            fin |= 1u << i;
            done++;
            progress = 1;
        }
        if (!progress)
            return; /* cyclic stage graph */
    }
    int sp = 1;
    for (int i = 0; i < k && sp; i++)
        sp = s->is_iv[s->stages[i]];
    if (s->sp_only && !sp)
        return;
    /* choose replicas: min over assignments of the max TPS, sum <= N */
    double f[EX_MAX_DEV + 1], nf[EX_MAX_DEV + 1];
    int choice[EX_MAX_OPS][EX_MAX_DEV + 1];
    for (int u = 0; u <= s->N; u++)
        f[u] = u == 0 ? 0 : INFINITY; /* exact device count used so far */
    for (int i = 0; i < k; i++) {
        if (stage_costs(s, s->stages[i]))
            return;
        int inf = depth[i] < s->m ? depth[i] : s->m;
        for (int u = 0; u <= s->N; u++) {
            nf[u] = INFINITY;
            choice[i][u] = 0;
        }
        for (int u = 0; u <= s->N; u++) {
            if (isinf(f[u]))
                continue;
            for (int r = 1; r <= s->rmax && u + r <= s->N; r++) {
                s->work++;
                if (s->maxinf[s->stages[i]][r] < inf)
                    continue;
                double v = f[u] > s->tps[s->stages[i]][r] ? f[u] : s->tps[s->stages[i]][r];
                if (v < nf[u + r]) {
                    nf[u + r] = v;
                    choice[i][u + r] = r;
                }
            }
        }
        memcpy(f, nf, sizeof f);
    }
    double bestv = INFINITY;
    int bu = -1;
    for (int u = 0; u <= s->N; u++)
        if (f[u] < bestv) {
            bestv = f[u];
            bu = u;
        }
    if (bu < 0)
        return;
    int dmax = 0;
    for (int i = 0; i < k; i++)
        if (depth[i] > dmax)
            dmax = depth[i];
    if (sp && (bestv < s->best_sp || (bestv == s->best_sp && dmax < s->best_sp_depth))) {
        s->best_sp = bestv;
        s->best_sp_depth = dmax;
    }
    if (bestv < s->best || (bestv == s->best && dmax < s->best_depth)) {
        s->best = bestv;
        s->best_depth = dmax;
        s->best_n = k;
        int u = bu;
        for (int i = k - 1; i >= 0; i--) {
            s->best_st[i] = s->stages[i];
            s->best_r[i] = choice[i][u];
            u -= choice[i][u];
        }
    }
}

static void rec(exst *s, uint32_t unassigned)
{
    if (s->failed || s->timed_out)
        return;
    if (!unassigned) {
        score(s);
        return;
    }
    if ((s->parts & 1023) == 0 && s->limit > 0 && ps_now_s() - s->t0 > s->limit) {
        s->timed_out = 1;
        return;
    }
    int v = -1;
    for (int i = 0; i < s->n && v < 0; i++)
        if (unassigned >> s->topo[i] & 1)
            v = s->topo[i];
    uint32_t rest = unassigned & ~(1u << v);
    /* every subset T of rest: stage {v} ∪ T */
    uint32_t T = 0;
    for (;;) {
        uint32_t S = T | (1u << v);
        uint32_t D = 0, U = 0;
        for (int x = 0; x < s->n; x++)
            if (S >> x & 1) {
                D |= s->desc[x];
                U |= s->anc[x];
            }
        if (((D & U) & ~S) == 0 && (!s->sp_only || s->is_iv[S])) {
            s->stages[s->nst++] = S;
            rec(s, unassigned & ~S);
            s->nst--;
        }
        if (T == rest)
            break;
        T = (T - rest) & rest; /* next subset of rest */
    }
}

static uint32_t node_mask(const pp_sp_tree *t, int x, int from_child)
{
    const pp_sp_node *nd = &t->nodes[x];
    if (nd->kind == PP_SP_LEAF)
        return 1u << nd->op;
    uint32_t m = 0;
    for (int c = from_child; c < nd->nchildren; c++) {
        const pp_sp_node *cn = &t->nodes[nd->children[c]];
        for (int p = cn->first; p < cn->first + cn->count; p++)
            m |= 1u << t->order[p];
    }
    return m;
}

/* GraphPipe's stage sets: SP intervals, and (joins) the join-absorbing sets:
 * a suffix of the first branch of a parallel child of a series node plus the
 * series node's following children up to some j. */
static void sp_intervals(const pp_sp_tree *t, int x, int joins, unsigned char *is_iv)
{
    const pp_sp_node *nd = &t->nodes[x];
    if (nd->kind == PP_SP_LEAF) {
        is_iv[1u << nd->op] = 1;
        return;
    }
    if (joins && nd->kind == PP_SP_SERIES)
        for (int i = 0; i + 1 < nd->nchildren; i++) {
            const pp_sp_node *P = &t->nodes[nd->children[i]];
            if (P->kind != PP_SP_PARALLEL)
                continue;
            int b0 = P->children[0];
            int kb = t->nodes[b0].kind == PP_SP_LEAF ? 1 : t->nodes[b0].nchildren;
            for (int sidx = 0; sidx < kb; sidx++) {
                uint32_t suf = node_mask(t, b0, sidx), tail = 0;
                for (int j = i + 1; j < nd->nchildren; j++) {
                    tail |= node_mask(t, nd->children[j], 0);
                    is_iv[suf | tail] = 1;
                }
            }
        }
    for (int i = 0; i < nd->nchildren; i++) {
        uint32_t m = 0;
        for (int j = i; j < nd->nchildren; j++) {
            const pp_sp_node *c = &t->nodes[nd->children[j]];
            for (int p = c->first; p < c->first + c->count; p++)
                m |= 1u << t->order[p];
            is_iv[m] = 1;
        }
        sp_intervals(t, nd->children[i], joins, is_iv);
    }
}

int pp_plan_exhaustive_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                         pp_presult *r, ps_err *e)
{
    int maxops = o->ex_max_ops > 0 ? o->ex_max_ops : 14;
    if (maxops > EX_MAX_OPS)
        maxops = EX_MAX_OPS;
    r->objective_name = "time_per_sample_s";
    if (g->n > maxops)
        return ps_errf(e, PS_EINPUT,
                       "exhaustive: %d ops is more than its limit of %d (it enumerates every "
                       "partition); use graphpipe, pipedream or piper",
                       g->n, maxops);
    if (pc->devices > EX_MAX_DEV)
        return ps_errf(e, PS_EINPUT, "exhaustive: %d devices is more than its limit of %d",
                       pc->devices, EX_MAX_DEV);
    int rc = pp_pg_closure(g, e);
    if (rc)
        return rc;
    exst s;
    memset(&s, 0, sizeof s);
    s.g = g;
    s.pc = pc;
    s.e = e;
    s.n = g->n;
    s.N = pc->devices;
    s.b = b;
    s.B = o->minibatch;
    s.m = o->minibatch / b;
    s.rmax = s.N < b ? s.N : b;
    s.sp_only = o->ex_sp_aligned;
    s.best = s.best_sp = INFINITY;
    s.best_depth = s.best_sp_depth = INT_MAX;
    s.t0 = ps_now_s();
    s.limit = o->ex_time_limit_s > 0 ? o->ex_time_limit_s : 60;
    for (int v = 0; v < s.n; v++) {
        s.topo[v] = g->topo[v];
        for (int u = 0; u < s.n; u++) {
            if (pp_bit_get(g->anc + (size_t)v * g->words, u))
                s.anc[v] |= 1u << u;
            if (pp_bit_get(g->desc + (size_t)v * g->words, u))
                s.desc[v] |= 1u << u;
        }
        for (int k = g->succ_off[v]; k < g->succ_off[v + 1]; k++)
            s.succ[v] |= 1u << g->succ[k];
    }
    size_t nm = (size_t)1 << s.n;
    s.is_iv = calloc(nm, 1);
    s.tps = calloc(nm, sizeof *s.tps);
    s.maxinf = calloc(nm, sizeof *s.maxinf);
    pp_sp_tree t;
    memset(&t, 0, sizeof t);
    if (!s.is_iv || !s.tps || !s.maxinf) {
        rc = ps_errf(e, PS_ERUN, "exhaustive: out of memory");
        goto done;
    }
    if ((rc = pp_sp_build(g, &t, e)))
        goto done;
    sp_intervals(&t, t.root, !o->gp_no_join_merge, s.is_iv);
    r->sp_rewrites = t.rewrites;
    rec(&s, (uint32_t)(nm - 1));
    rc = s.failed;
    r->states = s.parts;
    r->work = s.work;
    if (rc)
        goto done;
    if (s.timed_out) {
        r->feasible = 0;
        snprintf(r->note, sizeof r->note,
                 "exhaustive: time limit %g s reached after %lld partitions", s.limit, s.parts);
        goto done;
    }
    if (isinf(s.best)) {
        r->feasible = 0;
        snprintf(r->note, sizeof r->note, "exhaustive: no partition fits in memory with b=%d", b);
        goto done;
    }
    r->feasible = 1;
    r->microbatch = b;
    r->objective = s.best;
    r->objective_tps_s = s.best;
    r->gap_vs_sp = s.sp_only ? NAN : s.best_sp / s.best - 1;
    for (int i = 0; i < s.best_n && !rc; i++) {
        int ops[EX_MAX_OPS], k = 0;
        for (int v = 0; v < s.n; v++)
            if (s.best_st[i] >> v & 1)
                ops[k++] = v;
        rc = pp_presult_add_stage(r, ops, k, b, s.best_r[i], 0, e);
    }
done:
    if (s.tps)
        for (size_t i = 0; i < nm; i++) {
            free(s.tps[i]);
            free(s.maxinf[i]);
        }
    free(s.tps);
    free(s.maxinf);
    free(s.is_iv);
    pp_sp_free(&t);
    return rc;
}
