/* The planners' common ground: the abstract planning graph and cluster, the
 * shared stage cost model, result bookkeeping, and the dispatcher that runs
 * a planner over the candidate micro-batch sizes. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/planner_impl.h"

/* ---------------------------------------------------------------- graph */

pp_pgraph *pp_pgraph_new(int nops, ps_err *e)
{
    if (nops < 1 || nops > 10000000) {
        ps_errf(e, PS_EINPUT, "planning graph: %d ops (need 1..10^7)", nops);
        return NULL;
    }
    pp_pgraph *g = calloc(1, sizeof *g);
    if (!g)
        goto oom;
    g->n = nops;
    g->names = calloc((size_t)nops, sizeof *g->names);
    double *d = calloc(7 * (size_t)nops, sizeof *d);
    g->stamp = calloc((size_t)nops, sizeof *g->stamp);
    if (!g->names || !d || !g->stamp) {
        free(d);
        pp_pgraph_free(g);
        goto oom;
    }
    g->param = d;
    g->act = d + nops;
    g->out = d + 2 * (size_t)nops;
    g->ffix = d + 3 * (size_t)nops;
    g->fps = d + 4 * (size_t)nops;
    g->bfix = d + 5 * (size_t)nops;
    g->bps = d + 6 * (size_t)nops;
    return g;
oom:
    ps_errf(e, PS_ERUN, "planning graph: out of memory");
    return NULL;
}

void pp_pgraph_free(pp_pgraph *g)
{
    if (!g)
        return;
    if (g->names)
        for (int i = 0; i < g->n; i++)
            free(g->names[i]);
    free(g->names);
    free(g->param); /* the block of all seven arrays */
    free(g->ef);
    free(g->et);
    free(g->succ_off);
    free(g->succ);
    free(g->pred_off);
    free(g->pred);
    free(g->topo);
    free(g->topo_pos);
    free(g->anc);
    free(g->desc);
    for (int i = 0; i < g->ntc; i++) {
        free(g->tc[i].fwd);
        free(g->tc[i].bwd);
    }
    free(g->tc);
    free(g->stamp);
    if (g->ctx_free)
        g->ctx_free(g->ctx);
    free(g);
}

static int check_op(const pp_pgraph *g, int v, ps_err *e)
{
    if (v < 0 || v >= g->n)
        return ps_errf(e, PS_EINPUT, "planning graph: op %d out of range 0..%d", v, g->n - 1);
    return 0;
}

static int finite_nonneg(double x) { return isfinite(x) && x >= 0; }

int pp_pgraph_set_op(pp_pgraph *g, int v, const char *name, double param_bytes,
                     double act_bytes_per_sample, double out_bytes_per_sample, ps_err *e)
{
    int rc = check_op(g, v, e);
    if (rc)
        return rc;
    if (!finite_nonneg(param_bytes) || !finite_nonneg(act_bytes_per_sample) ||
        !finite_nonneg(out_bytes_per_sample))
        return ps_errf(e, PS_EINPUT, "planning graph: op %d (%s): bytes must be finite and >= 0",
                       v, name ? name : "?");
    g->param[v] = param_bytes;
    g->act[v] = act_bytes_per_sample;
    g->out[v] = out_bytes_per_sample;
    if (name) {
        free(g->names[v]);
        g->names[v] = strdup(name);
        if (!g->names[v])
            return ps_errf(e, PS_ERUN, "planning graph: out of memory");
    }
    return 0;
}

int pp_pgraph_set_op_times(pp_pgraph *g, int v, double fwd_fixed_s, double fwd_per_sample_s,
                           double bwd_fixed_s, double bwd_per_sample_s, ps_err *e)
{
    int rc = check_op(g, v, e);
    if (rc)
        return rc;
    if (!finite_nonneg(fwd_fixed_s) || !finite_nonneg(fwd_per_sample_s) ||
        !finite_nonneg(bwd_fixed_s) || !finite_nonneg(bwd_per_sample_s))
        return ps_errf(e, PS_EINPUT, "planning graph: op %d: times must be finite and >= 0", v);
    g->ffix[v] = fwd_fixed_s;
    g->fps[v] = fwd_per_sample_s;
    g->bfix[v] = bwd_fixed_s;
    g->bps[v] = bwd_per_sample_s;
    return 0;
}

void pp_pgraph_set_times_fn(pp_pgraph *g, pp_pg_times_fn fn, void *ctx)
{
    g->fn = fn;
    g->ctx = ctx;
}

int pp_pgraph_add_edge(pp_pgraph *g, int from, int to, ps_err *e)
{
    int rc;
    if ((rc = check_op(g, from, e)) || (rc = check_op(g, to, e)))
        return rc;
    if (g->finished)
        return ps_errf(e, PS_EINPUT, "planning graph: edge added after finish");
    if (from == to)
        return ps_errf(e, PS_EINPUT, "planning graph: self edge on op %d (%s)", from,
                       pp_pgraph_op_name(g, from));
    if (g->nedges == g->cap_edges) {
        int nc = g->cap_edges ? 2 * g->cap_edges : 64;
        int *a = realloc(g->ef, (size_t)nc * sizeof *a);
        if (!a)
            return ps_errf(e, PS_ERUN, "planning graph: out of memory");
        g->ef = a;
        int *b = realloc(g->et, (size_t)nc * sizeof *b);
        if (!b)
            return ps_errf(e, PS_ERUN, "planning graph: out of memory");
        g->et = b;
        g->cap_edges = nc;
    }
    g->ef[g->nedges] = from;
    g->et[g->nedges] = to;
    g->nedges++;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Min-heap of op indices: the stable topological order takes the smallest
 * ready index first, so an already topological numbering is kept. */
static void heap_push(int *h, int *n, int v)
{
    int i = (*n)++;
    h[i] = v;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int p = (i - 1) / 2, t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static int heap_pop(int *h, int *n)
{
    int top = h[0];
    h[0] = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, s = i;
        if (l < *n && h[l] < h[s])
            s = l;
        if (r < *n && h[r] < h[s])
            s = r;
        if (s == i)
            break;
        int t = h[s];
        h[s] = h[i];
        h[i] = t;
        i = s;
    }
    return top;
}

int pp_pgraph_finish(pp_pgraph *g, ps_err *e)
{
    if (g->finished)
        return 0;
    int n = g->n, m = g->nedges;
    g->succ_off = calloc((size_t)n + 1, sizeof(int));
    g->pred_off = calloc((size_t)n + 1, sizeof(int));
    g->succ = malloc(((size_t)m + 1) * sizeof(int));
    g->pred = malloc(((size_t)m + 1) * sizeof(int));
    g->topo = malloc((size_t)n * sizeof(int));
    g->topo_pos = malloc((size_t)n * sizeof(int));
    int *indeg = calloc((size_t)n, sizeof(int)), *heap = malloc((size_t)n * sizeof(int));
    int *fill = calloc((size_t)n, sizeof(int));
    int rc = 0;
    if (!g->succ_off || !g->pred_off || !g->succ || !g->pred || !g->topo || !g->topo_pos ||
        !indeg || !heap || !fill) {
        rc = ps_errf(e, PS_ERUN, "planning graph: out of memory");
        goto done;
    }
    for (int k = 0; k < m; k++) {
        g->succ_off[g->ef[k] + 1]++;
        g->pred_off[g->et[k] + 1]++;
    }
    for (int v = 0; v < n; v++) {
        g->succ_off[v + 1] += g->succ_off[v];
        g->pred_off[v + 1] += g->pred_off[v];
    }
    for (int k = 0; k < m; k++)
        g->succ[g->succ_off[g->ef[k]] + fill[g->ef[k]]++] = g->et[k];
    memset(fill, 0, (size_t)n * sizeof(int));
    for (int k = 0; k < m; k++)
        g->pred[g->pred_off[g->et[k]] + fill[g->et[k]]++] = g->ef[k];
    for (int v = 0; v < n; v++) {
        int *s = g->succ + g->succ_off[v], ns = g->succ_off[v + 1] - g->succ_off[v];
        qsort(s, (size_t)ns, sizeof(int), cmp_int);
        for (int i = 1; i < ns; i++)
            if (s[i] == s[i - 1]) {
                rc = ps_errf(e, PS_EINPUT, "planning graph: duplicate edge %s -> %s",
                             pp_pgraph_op_name(g, v), pp_pgraph_op_name(g, s[i]));
                goto done;
            }
        qsort(g->pred + g->pred_off[v], (size_t)(g->pred_off[v + 1] - g->pred_off[v]),
              sizeof(int), cmp_int);
        indeg[v] = g->pred_off[v + 1] - g->pred_off[v];
    }
    int nh = 0, nt = 0;
    for (int v = 0; v < n; v++)
        if (!indeg[v])
            heap_push(heap, &nh, v);
    while (nh) {
        int v = heap_pop(heap, &nh);
        g->topo_pos[v] = nt;
        g->topo[nt++] = v;
        for (int k = g->succ_off[v]; k < g->succ_off[v + 1]; k++)
            if (--indeg[g->succ[k]] == 0)
                heap_push(heap, &nh, g->succ[k]);
    }
    if (nt != n) {
        for (int v = 0; v < n; v++)
            if (indeg[v]) {
                rc = ps_errf(e, PS_EINPUT, "planning graph: cycle through op %s",
                             pp_pgraph_op_name(g, v));
                break;
            }
        goto done;
    }
    g->finished = 1;
done:
    free(indeg);
    free(heap);
    free(fill);
    return rc;
}

int pp_pgraph_nops(const pp_pgraph *g) { return g->n; }
int pp_pgraph_nedges(const pp_pgraph *g) { return g->nedges; }
void pp_pgraph_edge(const pp_pgraph *g, int k, int *from, int *to)
{
    *from = g->ef[k];
    *to = g->et[k];
}

const char *pp_pgraph_op_name(const pp_pgraph *g, int v)
{
    static __thread char buf[4][32];
    static __thread int slot;
    if (v >= 0 && v < g->n && g->names[v])
        return g->names[v];
    char *b = buf[slot++ & 3];
    snprintf(b, 32, "op%d", v);
    return b;
}

int pp_pgraph_times(pp_pgraph *g, int q, const double **fwd_s, const double **bwd_s, ps_err *e)
{
    if (q < 1)
        return ps_errf(e, PS_EINPUT, "planning graph: times at %d samples", q);
    for (int i = 0; i < g->ntc; i++)
        if (g->tc[i].q == q) {
            *fwd_s = g->tc[i].fwd;
            *bwd_s = g->tc[i].bwd;
            return 0;
        }
    if (g->ntc == g->cap_tc) {
        int nc = g->cap_tc ? 2 * g->cap_tc : 16;
        pp_times_entry *t = realloc(g->tc, (size_t)nc * sizeof *t);
        if (!t)
            return ps_errf(e, PS_ERUN, "planning graph: out of memory");
        g->tc = t;
        g->cap_tc = nc;
    }
    double *f = malloc((size_t)g->n * sizeof *f), *b = malloc((size_t)g->n * sizeof *b);
    if (!f || !b) {
        free(f);
        free(b);
        return ps_errf(e, PS_ERUN, "planning graph: out of memory");
    }
    if (g->fn) {
        int rc = g->fn(g->ctx, q, f, b, e);
        if (rc) {
            free(f);
            free(b);
            return rc;
        }
        for (int v = 0; v < g->n; v++)
            if (!finite_nonneg(f[v]) || !finite_nonneg(b[v])) {
                ps_errf(e, PS_EINPUT, "planning graph: op %s has time %g / %g at %d samples",
                        pp_pgraph_op_name(g, v), f[v], b[v], q);
                free(f);
                free(b);
                return PS_EINPUT;
            }
    } else {
        for (int v = 0; v < g->n; v++) {
            f[v] = g->ffix[v] + q * g->fps[v];
            b[v] = g->bfix[v] + q * g->bps[v];
        }
    }
    g->tc[g->ntc++] = (pp_times_entry){q, f, b};
    *fwd_s = f;
    *bwd_s = b;
    return 0;
}

int pp_pg_closure(pp_pgraph *g, ps_err *e)
{
    if (g->anc)
        return 0;
    if (!g->finished)
        return ps_errf(e, PS_EINPUT, "planning graph: not finished");
    size_t w = PP_BITS_WORDS(g->n);
    if ((double)w * 8 * g->n * 2 > 4e9)
        return ps_errf(e, PS_EINPUT, "planning graph: %d ops is too many for the closure", g->n);
    g->words = w;
    g->anc = calloc(w * (size_t)g->n, sizeof(pp_word));
    g->desc = calloc(w * (size_t)g->n, sizeof(pp_word));
    if (!g->anc || !g->desc) {
        free(g->anc);
        free(g->desc);
        g->anc = g->desc = NULL;
        return ps_errf(e, PS_ERUN, "planning graph: out of memory (closure)");
    }
    for (int i = 0; i < g->n; i++) {
        int v = g->topo[i];
        pp_word *a = g->anc + (size_t)v * w;
        for (int k = g->pred_off[v]; k < g->pred_off[v + 1]; k++) {
            int u = g->pred[k];
            const pp_word *au = g->anc + (size_t)u * w;
            for (size_t x = 0; x < w; x++)
                a[x] |= au[x];
            pp_bit_set(a, u);
        }
    }
    for (int i = g->n - 1; i >= 0; i--) {
        int v = g->topo[i];
        pp_word *d = g->desc + (size_t)v * w;
        for (int k = g->succ_off[v]; k < g->succ_off[v + 1]; k++) {
            int s = g->succ[k];
            const pp_word *ds = g->desc + (size_t)s * w;
            for (size_t x = 0; x < w; x++)
                d[x] |= ds[x];
            pp_bit_set(d, s);
        }
    }
    return 0;
}

/* ------------------------------------------------------------- cluster */

void pp_pcluster_uniform(pp_pcluster *pc, int devices, double mem_bytes, double weight_mult,
                         cm_ab link)
{
    memset(pc, 0, sizeof *pc);
    if (devices > PP_PC_MAX_DEVICES)
        devices = PP_PC_MAX_DEVICES;
    pc->devices = devices;
    pc->devices_per_node = devices > 0 ? devices : 1;
    pc->mem_bytes = mem_bytes;
    pc->weight_mult = weight_mult;
    pc->p2p = link;
    for (int r = 2; r <= devices; r++) {
        pc->ar_alpha_s[r] = 2.0 * (r - 1) * link.alpha_s;
        pc->ar_s_per_byte[r] =
            link.beta_bytes_per_s > 0 ? 2.0 * (r - 1) / r / link.beta_bytes_per_s : 0;
    }
}

/* ------------------------------------------------------ the cost model */

int pp_pg_compute_s(pp_pgraph *g, const int *ops, int nops, int q, double *out, ps_err *e)
{
    const double *f, *b;
    int rc = pp_pgraph_times(g, q, &f, &b, e);
    if (rc)
        return rc;
    double s = 0;
    for (int i = 0; i < nops; i++)
        s += f[ops[i]] + b[ops[i]];
    *out = s;
    return 0;
}

double pp_pg_boundary_bytes(pp_pgraph *g, const int *ops, int nops)
{
    if (g->stamp_id > INT_MAX - 4) {
        memset(g->stamp, 0, (size_t)g->n * sizeof(int));
        g->stamp_id = 0;
    }
    int in = g->stamp_id + 1, counted = g->stamp_id + 2;
    g->stamp_id += 2;
    for (int i = 0; i < nops; i++)
        g->stamp[ops[i]] = in;
    double bytes = 0;
    for (int i = 0; i < nops; i++) {
        int v = ops[i], leaves = 0;
        for (int k = g->pred_off[v]; k < g->pred_off[v + 1]; k++) {
            int u = g->pred[k];
            if (g->stamp[u] != in && g->stamp[u] != counted) {
                g->stamp[u] = counted;
                bytes += g->out[u];
            }
        }
        for (int k = g->succ_off[v]; k < g->succ_off[v + 1] && !leaves; k++)
            leaves = g->stamp[g->succ[k]] != in;
        if (leaves)
            bytes += g->out[v];
    }
    return bytes;
}

double pp_pg_sum_param(const pp_pgraph *g, const int *ops, int nops)
{
    double s = 0;
    for (int i = 0; i < nops; i++)
        s += g->param[ops[i]];
    return s;
}

double pp_pg_sum_act(const pp_pgraph *g, const int *ops, int nops)
{
    double s = 0;
    for (int i = 0; i < nops; i++)
        s += g->act[ops[i]];
    return s;
}

double pp_tps_formula(const pp_pcluster *pc, double compute_s, double param_bytes,
                      double boundary_bytes, int microbatch, int replicas, int minibatch)
{
    double ar = 0;
    if (replicas > 1 && replicas <= PP_PC_MAX_DEVICES)
        ar = pc->ar_alpha_s[replicas] + pc->ar_s_per_byte[replicas] * param_bytes;
    double comp = compute_s / microbatch + ar / minibatch;
    double link = 0;
    if (boundary_bytes > 0 && pc->p2p.beta_bytes_per_s > 0)
        link = (2 * pc->p2p.alpha_s + microbatch * boundary_bytes / pc->p2p.beta_bytes_per_s) /
               microbatch;
    return comp > link ? comp : link;
}

int pp_maxinflight_formula(const pp_pcluster *pc, double param_bytes, double act_bytes_per_sample,
                           int q)
{
    if (!(pc->mem_bytes > 0) || isinf(pc->mem_bytes))
        return INT32_MAX;
    double free_b = pc->mem_bytes - param_bytes * pc->weight_mult;
    if (free_b < 0)
        return -1;
    double per = act_bytes_per_sample * q;
    if (!(per > 0))
        return INT32_MAX;
    double k = floor(free_b / per);
    return k >= INT32_MAX ? INT32_MAX : (int)k;
}

int pp_pg_stage_eval(pp_pgraph *g, const pp_pcluster *pc, const int *ops, int nops,
                     int microbatch, int replicas, int minibatch, int inflight, double *tps_s,
                     double *mem_bytes, ps_err *e)
{
    if (!g->finished)
        return ps_errf(e, PS_EINPUT, "planning graph: not finished");
    if (nops < 1 || microbatch < 1 || replicas < 1 || minibatch < 1)
        return ps_errf(e, PS_EINPUT, "stage: %d ops, micro-batch %d, %d replicas, mini-batch %d",
                       nops, microbatch, replicas, minibatch);
    int *s = malloc((size_t)nops * sizeof *s);
    if (!s)
        return ps_errf(e, PS_ERUN, "out of memory");
    memcpy(s, ops, (size_t)nops * sizeof *s);
    qsort(s, (size_t)nops, sizeof *s, cmp_int);
    int q = pp_ceil_div(microbatch, replicas);
    double comp;
    int rc = pp_pg_compute_s(g, s, nops, q, &comp, e);
    if (!rc) {
        double par = pp_pg_sum_param(g, s, nops), act = pp_pg_sum_act(g, s, nops);
        double bnd = pp_pg_boundary_bytes(g, s, nops);
        *tps_s = pp_tps_formula(pc, comp, par, bnd, microbatch, replicas, minibatch);
        if (mem_bytes) {
            int m = minibatch / microbatch, inf = inflight > 0 ? inflight : 1;
            if (m < 1)
                m = 1;
            *mem_bytes = par * pc->weight_mult + act * q * (inf < m ? inf : m);
        }
    }
    free(s);
    return rc;
}

/* -------------------------------------------------------------- results */

int pp_presult_add_stage(pp_presult *r, const int *ops, int nops, int microbatch, int replicas,
                         int inflight, ps_err *e)
{
    pp_pstage *st = realloc(r->stages, ((size_t)r->nstages + 1) * sizeof *st);
    if (!st)
        return ps_errf(e, PS_ERUN, "out of memory");
    r->stages = st;
    pp_pstage *s = &st[r->nstages];
    memset(s, 0, sizeof *s);
    s->ops = malloc((size_t)(nops > 0 ? nops : 1) * sizeof(int));
    if (!s->ops)
        return ps_errf(e, PS_ERUN, "out of memory");
    memcpy(s->ops, ops, (size_t)nops * sizeof(int));
    qsort(s->ops, (size_t)nops, sizeof(int), cmp_int);
    s->nops = nops;
    s->microbatch = microbatch;
    s->replicas = replicas;
    s->inflight = inflight;
    r->nstages++;
    return 0;
}

void pp_presult_clear_stages(pp_presult *r)
{
    for (int i = 0; i < r->nstages; i++)
        free(r->stages[i].ops);
    free(r->stages);
    r->stages = NULL;
    r->nstages = 0;
}

void pp_presult_free(pp_presult *r)
{
    if (r)
        pp_presult_clear_stages(r);
}

int pp_presult_finish(pp_pgraph *g, const pp_pcluster *pc, int minibatch, pp_presult *r,
                      ps_err *e)
{
    int ns = r->nstages, n = g->n, rc = 0;
    if (ns < 1)
        return ps_errf(e, PS_ERUN, "%s: a plan without stages", pp_planner_name(r->planner));
    int *stage_of = malloc((size_t)n * sizeof(int));
    char *adj = calloc((size_t)ns * ns, 1);
    int *order = malloc((size_t)ns * sizeof(int)), *indeg = calloc((size_t)ns, sizeof(int));
    int *depth = calloc((size_t)ns, sizeof(int));
    if (!stage_of || !adj || !order || !indeg || !depth) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto done;
    }
    for (int v = 0; v < n; v++)
        stage_of[v] = -1;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < r->stages[s].nops; i++) {
            int v = r->stages[s].ops[i];
            if (v < 0 || v >= n || stage_of[v] >= 0) {
                rc = ps_errf(e, PS_ERUN, "%s: op %d is in two stages or out of range",
                             pp_planner_name(r->planner), v);
                goto done;
            }
            stage_of[v] = s;
        }
    for (int v = 0; v < n; v++)
        if (stage_of[v] < 0) {
            rc = ps_errf(e, PS_ERUN, "%s: op %s is in no stage", pp_planner_name(r->planner),
                         pp_pgraph_op_name(g, v));
            goto done;
        }
    for (int k = 0; k < g->nedges; k++) {
        int a = stage_of[g->ef[k]], b = stage_of[g->et[k]];
        if (a != b && !adj[(size_t)a * ns + b]) {
            adj[(size_t)a * ns + b] = 1;
            indeg[b]++;
        }
    }
    /* stable topological order of stages (smallest index first) */
    int no = 0;
    for (int it = 0; it < ns; it++) {
        int pick = -1;
        for (int s = 0; s < ns && pick < 0; s++)
            if (indeg[s] == 0)
                pick = s;
        if (pick < 0) {
            rc = ps_errf(e, PS_ERUN, "%s: the stage graph has a cycle",
                         pp_planner_name(r->planner));
            goto done;
        }
        indeg[pick] = -1;
        order[no++] = pick;
        for (int t = 0; t < ns; t++)
            if (adj[(size_t)pick * ns + t])
                indeg[t]--;
    }
    /* GraphPipe's in-flight rule, sinks first */
    for (int i = ns - 1; i >= 0; i--) {
        int s = order[i], best = 0;
        const pp_pstage *st = &r->stages[s];
        for (int t = 0; t < ns; t++)
            if (adj[(size_t)s * ns + t]) {
                const pp_pstage *tt = &r->stages[t];
                int need = pp_ceil_div(depth[t] * tt->microbatch, st->microbatch);
                if (need > best)
                    best = need;
            }
        depth[s] = 1 + best;
    }
    /* reorder stages topologically */
    pp_pstage *sorted = malloc((size_t)ns * sizeof *sorted);
    int *dsorted = malloc((size_t)ns * sizeof *dsorted);
    if (!sorted || !dsorted) {
        free(sorted);
        free(dsorted);
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto done;
    }
    for (int i = 0; i < ns; i++) {
        sorted[i] = r->stages[order[i]];
        dsorted[i] = depth[order[i]];
    }
    memcpy(r->stages, sorted, (size_t)ns * sizeof *sorted);
    free(sorted);
    r->tps_s = 0;
    r->depth = 0;
    r->devices_used = 0;
    if (r->sequential) /* the stages run as a chain in this order */
        for (int i = 0; i < ns; i++)
            dsorted[i] = ns - i;
    for (int i = 0; i < ns && !rc; i++) {
        pp_pstage *st = &r->stages[i];
        if (st->inflight <= 0 || r->sequential)
            st->inflight = dsorted[i];
        rc = pp_pg_stage_eval(g, pc, st->ops, st->nops, st->microbatch, st->replicas, minibatch,
                              st->inflight, &st->tps_s, &st->mem_bytes, e);
        if (st->tps_s > r->tps_s)
            r->tps_s = st->tps_s;
        if (dsorted[i] > r->depth)
            r->depth = dsorted[i];
        r->devices_used += st->replicas;
    }
    free(dsorted);
    if (!rc) {
        int b = r->microbatch > 0 ? r->microbatch : r->stages[0].microbatch;
        int m = minibatch / b;
        r->predicted_iteration_s = (double)(m + r->depth - 1) * b * r->tps_s;
    }
done:
    free(stage_of);
    free(adj);
    free(order);
    free(indeg);
    free(depth);
    return rc;
}

/* ----------------------------------------------------------- dispatcher */

const char *pp_planner_name(pp_planner_kind k)
{
    switch (k) {
    case PP_PLANNER_GRAPHPIPE: return "graphpipe";
    case PP_PLANNER_PIPEDREAM: return "pipedream";
    case PP_PLANNER_PIPER: return "piper";
    case PP_PLANNER_EXHAUSTIVE: return "exhaustive";
    }
    return "?";
}

pp_planner_kind pp_planner_parse(const char *s)
{
    if (!s)
        return 0;
    for (int k = PP_PLANNER_GRAPHPIPE; k <= PP_PLANNER_EXHAUSTIVE; k++)
        if (!strcmp(s, pp_planner_name((pp_planner_kind)k)))
            return (pp_planner_kind)k;
    return 0;
}

void pp_popts_default(pp_popts *o, pp_planner_kind k, int minibatch)
{
    memset(o, 0, sizeof *o);
    o->planner = k;
    o->minibatch = minibatch;
    o->pd_states = PP_PD_STATES_AUTO;
    o->ex_sp_aligned = 0;
}

int pp_microbatch_candidates(int minibatch, int fixed, int *out)
{
    int n = 0;
    if (fixed > 0) {
        out[n++] = fixed;
        return n;
    }
    for (int b = 1; b <= minibatch && n < 31; b *= 2)
        if (minibatch % b == 0)
            out[n++] = b;
    if (n == 0 || out[n - 1] != minibatch)
        out[n++] = minibatch;
    return n;
}

int pp_planner_run(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, pp_presult *r,
                   ps_err *e)
{
    memset(r, 0, sizeof *r);
    r->planner = o->planner;
    r->gap_vs_sp = NAN;
    r->objective = NAN;
    r->objective_tps_s = NAN;
    r->tps_s = NAN;
    r->predicted_iteration_s = NAN;
    if (!pp_planner_name(o->planner)[0] || !strcmp(pp_planner_name(o->planner), "?"))
        return ps_errf(e, PS_EINPUT, "planner: unknown kind %d", (int)o->planner);
    if (!g->finished) {
        int rc = pp_pgraph_finish(g, e);
        if (rc)
            return rc;
    }
    if (o->minibatch < 1)
        return ps_errf(e, PS_EINPUT, "minibatch: %d must be >= 1", o->minibatch);
    if (o->microbatch < 0 || o->microbatch > o->minibatch ||
        (o->microbatch > 0 && o->minibatch % o->microbatch))
        return ps_errf(e, PS_EINPUT, "microbatch: %d must divide the mini-batch %d",
                       o->microbatch, o->minibatch);
    if (pc->devices < 1 || pc->devices > PP_PC_MAX_DEVICES)
        return ps_errf(e, PS_EINPUT, "devices: %d out of range 1..%d", pc->devices,
                       PP_PC_MAX_DEVICES);
    int cand[32], nc = pp_microbatch_candidates(o->minibatch, o->microbatch, cand);
    pp_popts oo = *o; /* decisions that hold for every b are carried over */
    o = &oo;
    const double limit = oo.time_limit_s;
    double t0 = ps_now_s();
    pp_presult best = {0};
    int have = 0, rc = 0;
    char last_note[512] = "", carry_note[512] = "";
    int budget_hit = 0;
    for (int i = 0; i < nc && !rc; i++) {
        pp_presult cur;
        memset(&cur, 0, sizeof cur);
        cur.planner = o->planner;
        cur.microbatch = cand[i];
        cur.gap_vs_sp = NAN;
        if (limit > 0) /* one limit for all the candidates */
            oo.time_limit_s = fmax(limit - (ps_now_s() - t0), 1e-9);
        switch (o->planner) {
        case PP_PLANNER_GRAPHPIPE: rc = pp_plan_graphpipe_b(g, pc, o, cand[i], &cur, e); break;
        case PP_PLANNER_PIPEDREAM: rc = pp_plan_pipedream_b(g, pc, o, cand[i], &cur, e); break;
        case PP_PLANNER_PIPER: rc = pp_plan_piper_b(g, pc, o, cand[i], &cur, e); break;
        case PP_PLANNER_EXHAUSTIVE: rc = pp_plan_exhaustive_b(g, pc, o, cand[i], &cur, e); break;
        }
        r->states += cur.states;
        r->work += cur.work;
        int stop = !rc && cur.budget_exceeded; /* the state space is the same for every b */
        budget_hit |= stop;
        if (!rc && o->planner == PP_PLANNER_PIPEDREAM && o->pd_states == PP_PD_STATES_AUTO &&
            cur.pd_states_used == PP_PD_STATES_TOPO) {
            oo.pd_states = PP_PD_STATES_TOPO; /* the antichain count does not depend on b */
            snprintf(carry_note, sizeof carry_note, "%s", cur.note);
        }
        if (!cur.note[0] && carry_note[0])
            snprintf(cur.note, sizeof cur.note, "%s", carry_note);
        if (!rc && cur.feasible)
            rc = pp_presult_finish(g, pc, o->minibatch, &cur, e);
        if (!rc && cur.feasible &&
            (!have || cur.predicted_iteration_s < best.predicted_iteration_s)) {
            pp_presult_free(&best);
            best = cur;
            have = 1;
        } else {
            if (!cur.feasible && cur.note[0] && cur.budget_exceeded)
                snprintf(last_note, sizeof last_note, "%s", cur.note);
            else if (!cur.feasible && cur.note[0])
                snprintf(last_note, sizeof last_note, "b=%d: %s", cand[i], cur.note);
            pp_presult_free(&cur);
        }
        if (stop)
            break;
        if (!rc && limit > 0 && ps_now_s() - t0 > limit && i + 1 < nc) {
            snprintf(last_note, sizeof last_note,
                     "time limit %g s reached after %d of %d micro-batch sizes", limit, i + 1, nc);
            break;
        }
    }
    double wall = ps_now_s() - t0;
    long long states = r->states, work = r->work;
    if (rc) {
        pp_presult_free(&best);
        return rc;
    }
    if (have) {
        *r = best;
        r->feasible = 1;
        if (last_note[0] && !r->note[0])
            snprintf(r->note, sizeof r->note, "%s", last_note);
    } else {
        r->feasible = 0;
        snprintf(r->note, sizeof r->note, "%s",
                 last_note[0] ? last_note : "no plan fits (memory or budget)");
    }
    r->planner = o->planner;
    r->budget_exceeded = budget_hit;
    r->search_time_s = wall;
    r->states = states;
    r->work = work;
    return 0;
}

/* ---- hash set of bitsets (planner_impl.h) ---- */

static uint64_t bitset_hash(const pp_word *b, size_t w)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < w; i++) {
        h ^= b[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 1099511628211ULL;
    }
    /* finalizer (murmur3 fmix64): the table uses the low bits */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

int pp_bitset_set_find(const pp_bitset_set *h, const pp_word *all, size_t words,
                       const pp_word *b)
{
    if (!h->cap)
        return -1;
    size_t i = bitset_hash(b, words) & (h->cap - 1);
    while (h->slot[i] >= 0) {
        if (!memcmp(all + (size_t)h->slot[i] * words, b, words * sizeof *b))
            return h->slot[i];
        i = (i + 1) & (h->cap - 1);
    }
    return -1;
}

int pp_bitset_set_insert(pp_bitset_set *h, const pp_word *all, size_t words, int idx,
                         const char *who, ps_err *e)
{
    if (2 * (h->n + 1) > h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 1024;
        int *ns = malloc(nc * sizeof *ns);
        if (!ns)
            return ps_errf(e, PS_ERUN, "%s: out of memory (state hash)", who);
        for (size_t i = 0; i < nc; i++)
            ns[i] = -1;
        for (size_t i = 0; i < h->cap; i++)
            if (h->slot[i] >= 0) {
                size_t j = bitset_hash(all + (size_t)h->slot[i] * words, words) & (nc - 1);
                while (ns[j] >= 0)
                    j = (j + 1) & (nc - 1);
                ns[j] = h->slot[i];
            }
        free(h->slot);
        h->slot = ns;
        h->cap = nc;
    }
    size_t i = bitset_hash(all + (size_t)idx * words, words) & (h->cap - 1);
    while (h->slot[i] >= 0)
        i = (i + 1) & (h->cap - 1);
    h->slot[i] = idx;
    h->n++;
    return 0;
}

void pp_bitset_set_free(pp_bitset_set *h)
{
    free(h->slot);
    h->slot = NULL;
    h->cap = h->n = 0;
}
