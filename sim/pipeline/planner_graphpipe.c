/* GraphPipe's partitioner (Jeon et al., ASPLOS'25, Alg. 1), for one
 * micro-batch size b shared by all stages (the paper's default; per-stage b
 * and n_F/n_B variants are opt-in there, with "incremental" gains).
 *
 * Outer loop: binary search on the target time per sample T.  The optimum
 * is always the TPS of some stage (an SP interval on r replicas), so the
 * search runs over the sorted candidate values instead of a real interval:
 * exact, and no epsilon.
 *
 * Inner DP, for one T, over the series-parallel tree:
 *   F(X, d)[n] = the least in-flight count of X's entry stages (the longest
 *                path to the global sink, in stages) over plans of X's ops
 *                on at most n devices where every stage has TPS <= T and fits
 *                in memory, given that the stages right after X have
 *                in-flight count d (0 at the sink).
 * A plan of X is a sequence (series node) or a group (parallel node) of
 * pieces, each either one stage over a contiguous range of X's children or
 * one child planned on its own (recursively).  For a series node the pieces
 * are chained back to front: a piece's exit count is the next piece's entry
 * count; for a parallel node every piece exits into d and the entry count
 * is the max.  The entry count only grows with d, and a piece only cares
 * about the rest through that one number, so taking the minimum at each
 * step is exact — this is the paper's "boundary schedule configuration"
 * (with one b and 1F1B, the configuration is the in-flight count).
 *
 * Device counts: F is non-increasing in n.  A stage over a range with exit
 * count v needs the fewest replicas r with TPS(r) <= T and memory for
 * min(m, 1+v) micro-batches; more replicas never help the rest, so only that
 * r is tried, and only at the breakpoints of the rest's F (the smallest
 * device count for each value).  That keeps a series node of k children at
 * O(k^2 * breakpoints) per (T, d). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/planner_impl.h"

#define INF_D (INT_MAX / 4)

typedef struct ivl {
    double *tps;      /* [rmax+1] */
    int *maxinf;      /* [rmax+1] */
    double comp_lb;   /* min over r of the compute part of TPS (monotone in the range) */
    int probe;        /* stair valid for this probe */
    int nstair;
    int *stair_r, *stair_m; /* replicas, max in-flight, both increasing */
} ivl;

typedef struct fmemo {
    int probe;
    int *val; /* [N+1] */
} fmemo;

typedef struct gp {
    pp_pgraph *g;
    const pp_pcluster *pc;
    pp_sp_tree t;
    int b, B, m, N, rmax;
    /* per-q prefix sums over t.order */
    int nq;
    int *qs;          /* distinct q values */
    int *q_of_r;      /* [rmax+1] index into qs */
    double **pre;     /* [nq][n+1] compute prefix */
    double *pre_param, *pre_act;
    ivl ***rng;       /* per node: k*k (leaf: 1) */
    fmemo *memo;      /* [nnodes * (N+1)] */
    int probe;
    double T;
    long long work;
    long long nstates;
    ps_err *e;
    int failed;
    /* reconstruction */
    pp_presult *out;
} gp;

/* ---------------------------------------------------------- intervals */

static int node_k(const gp *s, int x)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    return nd->kind == PP_SP_LEAF ? 1 : nd->nchildren;
}

static int range_first(const gp *s, int x, int i)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    return nd->kind == PP_SP_LEAF ? nd->first : s->t.nodes[nd->children[i]].first;
}

static int range_end(const gp *s, int x, int j)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    if (nd->kind == PP_SP_LEAF)
        return nd->first + 1;
    const pp_sp_node *c = &s->t.nodes[nd->children[j]];
    return c->first + c->count;
}

static ivl *get_ivl(gp *s, int x, int i, int j)
{
    int k = node_k(s, x);
    if (!s->rng[x]) {
        s->rng[x] = calloc((size_t)k * k, sizeof(ivl *));
        if (!s->rng[x])
            goto oom;
    }
    ivl **slot = &s->rng[x][(size_t)i * k + j];
    if (*slot)
        return *slot;
    ivl *v = calloc(1, sizeof *v);
    if (!v)
        goto oom;
    int R = s->rmax;
    v->tps = malloc(((size_t)R + 1) * sizeof(double));
    v->maxinf = malloc(((size_t)R + 1) * sizeof(int));
    v->stair_r = malloc(((size_t)R + 1) * sizeof(int));
    v->stair_m = malloc(((size_t)R + 1) * sizeof(int));
    if (!v->tps || !v->maxinf || !v->stair_r || !v->stair_m) {
        free(v->tps);
        free(v->maxinf);
        free(v->stair_r);
        free(v->stair_m);
        free(v);
        goto oom;
    }
    int a = range_first(s, x, i), z = range_end(s, x, j);
    double par = s->pre_param[z] - s->pre_param[a], act = s->pre_act[z] - s->pre_act[a];
    double bnd = pp_pg_boundary_bytes(s->g, s->t.order + a, z - a);
    v->comp_lb = INFINITY;
    for (int r = 1; r <= R; r++) {
        int qi = s->q_of_r[r];
        double comp = s->pre[qi][z] - s->pre[qi][a];
        v->tps[r] = pp_tps_formula(s->pc, comp, par, bnd, s->b, r, s->B);
        v->maxinf[r] = pp_maxinflight_formula(s->pc, par, act, s->qs[qi]);
        double lb = pp_tps_formula(s->pc, comp, par, 0, s->b, r, s->B);
        if (lb < v->comp_lb)
            v->comp_lb = lb;
    }
    v->probe = -1;
    *slot = v;
    return v;
oom:
    s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory (intervals)");
    return NULL;
}

/* Fewest replicas with TPS <= T and room for x in-flight micro-batches; 0
 * if none. */
static int rmin(gp *s, ivl *v, int x)
{
    if (v->probe != s->probe) {
        v->nstair = 0;
        int cur = -1;
        for (int r = 1; r <= s->rmax; r++)
            if (v->tps[r] <= s->T && v->maxinf[r] > cur) {
                v->stair_r[v->nstair] = r;
                v->stair_m[v->nstair++] = v->maxinf[r];
                cur = v->maxinf[r];
            }
        v->probe = s->probe;
    }
    for (int k = 0; k < v->nstair; k++)
        if (v->stair_m[k] >= x)
            return v->stair_r[k];
    return 0;
}

static int inflight_of(const gp *s, int depth) { return depth < s->m ? depth : s->m; }

/* ---------------------------------------------------------------- DP */

/* Breakpoints of a non-increasing array a[0..N]: n where a drops. */
static int breakpoints(const int *a, int N, int *bn, int *bv)
{
    int k = 0, prev = INF_D;
    for (int n = 0; n <= N; n++)
        if (a[n] < prev) {
            bn[k] = n;
            bv[k++] = a[n];
            prev = a[n];
        }
    return k;
}

static const int *F(gp *s, int x, int d);

/* Work arrays for one node evaluation: (k+1) rows of N+1 values. */
typedef struct rows {
    int k, N;
    int *a;   /* [(k+1)*(N+1)] */
    int *nbp; /* [k+1] */
    int *bn, *bv; /* [(k+1)*(N+1)] */
    int *tn, *tv; /* [N+1] scratch: a child's breakpoints */
} rows;

static int rows_init(rows *w, int k, int N)
{
    w->k = k;
    w->N = N;
    size_t sz = (size_t)(k + 1) * (N + 1);
    w->a = malloc(sz * sizeof(int));
    w->bn = malloc(sz * sizeof(int));
    w->bv = malloc(sz * sizeof(int));
    w->nbp = malloc(((size_t)k + 1) * sizeof(int));
    w->tn = malloc(((size_t)N + 1) * sizeof(int));
    w->tv = malloc(((size_t)N + 1) * sizeof(int));
    return w->a && w->bn && w->bv && w->nbp && w->tn && w->tv ? 0 : -1;
}

static void rows_free(rows *w)
{
    free(w->a);
    free(w->bn);
    free(w->bv);
    free(w->nbp);
    free(w->tn);
    free(w->tv);
}

#define ROW(w, i) ((w)->a + (size_t)(i) * ((w)->N + 1))
#define BN(w, i) ((w)->bn + (size_t)(i) * ((w)->N + 1))
#define BV(w, i) ((w)->bv + (size_t)(i) * ((w)->N + 1))

/* Fill rows[i] for i = k..0 of a series (par = 0) or parallel (par = 1)
 * node with exit count d. */
static int eval_rows(gp *s, int x, int d, int par, rows *w)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    int k = nd->nchildren, N = s->N;
    for (int n = 0; n <= N; n++)
        ROW(w, k)[n] = par ? 0 : d;
    w->nbp[k] = breakpoints(ROW(w, k), N, BN(w, k), BV(w, k));
    int exit_inf = inflight_of(s, 1 + d);
    for (int i = k - 1; i >= 0; i--) {
        int *best = ROW(w, i);
        for (int n = 0; n <= N; n++)
            best[n] = INF_D;
        int c = nd->children[i];
        /* (a) child i planned on its own */
        if (s->t.nodes[c].kind != PP_SP_LEAF) {
            const int *bn2 = BN(w, i + 1), *bv2 = BV(w, i + 1);
            if (par) {
                const int *fc = F(s, c, d);
                if (!fc)
                    return -1;
                int *b1n = w->tn, *b1v = w->tv;
                int nb1 = breakpoints(fc, N, b1n, b1v);
                for (int p = 0; p < nb1; p++)
                    for (int q = 0; q < w->nbp[i + 1]; q++) {
                        int tot = b1n[p] + bn2[q];
                        s->work++;
                        if (tot > N)
                            break;
                        int v = b1v[p] > bv2[q] ? b1v[p] : bv2[q];
                        if (v < best[tot])
                            best[tot] = v;
                    }
            } else {
                for (int q = 0; q < w->nbp[i + 1]; q++) {
                    if (bv2[q] > N)
                        continue;
                    const int *fc = F(s, c, bv2[q]);
                    if (!fc)
                        return -1;
                    int *b1n = w->tn, *b1v = w->tv;
                    int nb1 = breakpoints(fc, N, b1n, b1v);
                    for (int p = 0; p < nb1; p++) {
                        int tot = b1n[p] + bn2[q];
                        s->work++;
                        if (tot > N)
                            break;
                        if (b1v[p] < best[tot])
                            best[tot] = b1v[p];
                    }
                }
            }
        }
        /* (b) one stage over children i..j */
        for (int j = i; j < k; j++) {
            ivl *v = get_ivl(s, x, i, j);
            if (!v)
                return -1;
            if (v->comp_lb > s->T)
                break;
            const int *bn2 = BN(w, j + 1), *bv2 = BV(w, j + 1);
            if (par) {
                int r = rmin(s, v, exit_inf);
                s->work++;
                if (!r)
                    continue;
                for (int q = 0; q < w->nbp[j + 1]; q++) {
                    int tot = r + bn2[q];
                    if (tot > N)
                        break;
                    int val = 1 + d > bv2[q] ? 1 + d : bv2[q];
                    if (val < best[tot])
                        best[tot] = val;
                }
            } else {
                for (int q = 0; q < w->nbp[j + 1]; q++) {
                    s->work++;
                    if (bv2[q] >= N)
                        continue;
                    int r = rmin(s, v, inflight_of(s, 1 + bv2[q]));
                    if (!r)
                        continue;
                    int tot = r + bn2[q];
                    if (tot > N)
                        continue;
                    if (1 + bv2[q] < best[tot])
                        best[tot] = 1 + bv2[q];
                }
            }
        }
        for (int n = 1; n <= N; n++)
            if (best[n - 1] < best[n])
                best[n] = best[n - 1];
        w->nbp[i] = breakpoints(best, N, BN(w, i), BV(w, i));
    }
    return 0;
}

static const int *F(gp *s, int x, int d)
{
    if (s->failed)
        return NULL;
    fmemo *mm = &s->memo[(size_t)x * (s->N + 1) + d];
    if (mm->probe == s->probe)
        return mm->val;
    if (!mm->val) {
        mm->val = malloc(((size_t)s->N + 1) * sizeof(int));
        if (!mm->val) {
            s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory (memo)");
            return NULL;
        }
    }
    s->nstates++;
    const pp_sp_node *nd = &s->t.nodes[x];
    int N = s->N;
    if (d >= N) {
        /* every stage of X would sit on a path of more than N stages */
        for (int n = 0; n <= N; n++)
            mm->val[n] = INF_D;
    } else if (nd->kind == PP_SP_LEAF) {
        ivl *v = get_ivl(s, x, 0, 0);
        if (!v)
            return NULL;
        int r = (v->comp_lb <= s->T) ? rmin(s, v, inflight_of(s, 1 + d)) : 0;
        s->work++;
        for (int n = 0; n <= N; n++)
            mm->val[n] = (r && n >= r) ? 1 + d : INF_D;
    } else {
        rows w;
        if (rows_init(&w, nd->nchildren, N)) {
            rows_free(&w);
            s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
            return NULL;
        }
        int rc = eval_rows(s, x, d, nd->kind == PP_SP_PARALLEL, &w);
        if (!rc)
            memcpy(mm->val, ROW(&w, 0), ((size_t)N + 1) * sizeof(int));
        rows_free(&w);
        if (rc)
            return NULL;
    }
    mm->probe = s->probe;
    return mm->val;
}

static int feasible(gp *s, double T, int *depth)
{
    s->probe++;
    s->T = T;
    const int *f = F(s, s->t.root, 0);
    if (!f)
        return -1;
    *depth = f[s->N];
    return f[s->N] < INF_D;
}

/* ------------------------------------------------------ reconstruction */

static int add_range_stage(gp *s, int x, int i, int j, int r)
{
    int a = range_first(s, x, i), z = range_end(s, x, j);
    return pp_presult_add_stage(s->out, s->t.order + a, z - a, s->b, r, 0, s->e);
}

static int recon(gp *s, int x, int d, int n);

static int recon_rows(gp *s, int x, int d, int n)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    int par = nd->kind == PP_SP_PARALLEL, k = nd->nchildren, N = s->N;
    rows w;
    if (rows_init(&w, k, N)) {
        rows_free(&w);
        return ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
    }
    int rc = eval_rows(s, x, d, par, &w);
    int exit_inf = inflight_of(s, 1 + d);
    int i = 0, budget = n, target = rc ? INF_D : ROW(&w, 0)[n];
    while (!rc && i < k) {
        int c = nd->children[i], found = 0, next_i = -1, next_budget = 0, next_target = 0;
        const int *bn2 = BN(&w, i + 1), *bv2 = BV(&w, i + 1);
        if (s->t.nodes[c].kind != PP_SP_LEAF) {
            for (int q = 0; q < w.nbp[i + 1] && !found; q++) {
                int dd = par ? d : bv2[q];
                if (dd > N)
                    continue;
                const int *fc = F(s, c, dd);
                if (!fc) {
                    rc = s->failed ? s->failed : PS_ERUN;
                    break;
                }
                for (int n1 = 0; n1 + bn2[q] <= budget && !found; n1++) {
                    int val = par ? (fc[n1] > bv2[q] ? fc[n1] : bv2[q]) : fc[n1];
                    if (fc[n1] < INF_D && val <= target) {
                        found = 1;
                        if ((rc = recon(s, c, dd, n1)))
                            break;
                        next_i = i + 1;
                        next_budget = bn2[q];
                        next_target = bv2[q];
                    }
                }
            }
        }
        for (int j = i; j < k && !found && !rc; j++) {
            ivl *v = get_ivl(s, x, i, j);
            if (!v) {
                rc = s->failed;
                break;
            }
            if (v->comp_lb > s->T)
                break;
            const int *bn3 = BN(&w, j + 1), *bv3 = BV(&w, j + 1);
            for (int q = 0; q < w.nbp[j + 1] && !found; q++) {
                int r, val;
                if (par) {
                    r = rmin(s, v, exit_inf);
                    val = 1 + d > bv3[q] ? 1 + d : bv3[q];
                } else {
                    if (bv3[q] >= N)
                        continue;
                    r = rmin(s, v, inflight_of(s, 1 + bv3[q]));
                    val = 1 + bv3[q];
                }
                if (r && r + bn3[q] <= budget && val <= target) {
                    found = 1;
                    if ((rc = add_range_stage(s, x, i, j, r)))
                        break;
                    next_i = j + 1;
                    next_budget = bn3[q];
                    next_target = bv3[q];
                }
            }
        }
        if (!rc && !found)
            rc = ps_errf(s->e, PS_ERUN, "graphpipe: reconstruction failed at node %d child %d", x,
                         i);
        i = next_i;
        budget = next_budget;
        target = next_target;
    }
    rows_free(&w);
    return rc;
}

static int recon(gp *s, int x, int d, int n)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    if (nd->kind == PP_SP_LEAF) {
        ivl *v = get_ivl(s, x, 0, 0);
        if (!v)
            return s->failed;
        int r = rmin(s, v, inflight_of(s, 1 + d));
        if (!r || r > n)
            return ps_errf(s->e, PS_ERUN, "graphpipe: reconstruction failed at leaf %d", x);
        return add_range_stage(s, x, 0, 0, r);
    }
    return recon_rows(s, x, d, n);
}

/* ------------------------------------------------------------- driver */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void gp_free(gp *s)
{
    if (s->rng) {
        for (int x = 0; x < s->t.nnodes; x++) {
            if (!s->rng[x])
                continue;
            int k = node_k(s, x);
            for (int i = 0; i < k * k; i++)
                if (s->rng[x][i]) {
                    free(s->rng[x][i]->tps);
                    free(s->rng[x][i]->maxinf);
                    free(s->rng[x][i]->stair_r);
                    free(s->rng[x][i]->stair_m);
                    free(s->rng[x][i]);
                }
            free(s->rng[x]);
        }
        free(s->rng);
    }
    if (s->memo) {
        for (size_t i = 0; i < (size_t)s->t.nnodes * (s->N + 1); i++)
            free(s->memo[i].val);
        free(s->memo);
    }
    if (s->pre)
        for (int i = 0; i < s->nq; i++)
            free(s->pre[i]);
    free(s->pre);
    free(s->qs);
    free(s->q_of_r);
    free(s->pre_param);
    pp_sp_free(&s->t);
}

/* Every stage TPS the DP can meet: all ranges of all nodes on all replica
 * counts (ranges whose compute bound already exceeds `ub` are skipped). */
static int collect_candidates(gp *s, double ub, double **out, size_t *nout)
{
    size_t cap = 1024, n = 0;
    double *c = malloc(cap * sizeof *c);
    if (!c)
        return ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
    for (int x = 0; x < s->t.nnodes; x++) {
        const pp_sp_node *nd = &s->t.nodes[x];
        if (nd->kind == PP_SP_LEAF && nd->op < 0)
            continue; /* spliced away */
        if (nd->kind != PP_SP_LEAF && nd->nchildren == 0)
            continue;
        int k = node_k(s, x);
        for (int i = 0; i < k; i++)
            for (int j = i; j < k; j++) {
                ivl *v = get_ivl(s, x, i, j);
                if (!v) {
                    free(c);
                    return s->failed;
                }
                if (v->comp_lb > ub)
                    break;
                for (int r = 1; r <= s->rmax; r++) {
                    if (v->tps[r] > ub || v->maxinf[r] < 1)
                        continue;
                    if (n == cap) {
                        cap *= 2;
                        double *cc = realloc(c, cap * sizeof *cc);
                        if (!cc) {
                            free(c);
                            return ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
                        }
                        c = cc;
                    }
                    c[n++] = v->tps[r];
                }
            }
    }
    qsort(c, n, sizeof *c, cmp_dbl);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || c[i] != c[u - 1])
            c[u++] = c[i];
    *out = c;
    *nout = u;
    return 0;
}

int pp_plan_graphpipe_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                        pp_presult *r, ps_err *e)
{
    gp s;
    memset(&s, 0, sizeof s);
    s.g = g;
    s.pc = pc;
    s.e = e;
    s.b = b;
    s.B = o->minibatch;
    s.m = o->minibatch / b;
    s.N = pc->devices;
    s.rmax = s.N < b ? s.N : b;
    if (o->gp_max_stage_devices > 0 && o->gp_max_stage_devices < s.rmax)
        s.rmax = o->gp_max_stage_devices;
    s.out = r;
    r->objective_name = "time_per_sample_s";
    int rc = pp_sp_build(g, &s.t, e);
    if (rc)
        return rc;
    r->sp_rewrites = s.t.rewrites;
    int n = g->n;
    s.q_of_r = malloc(((size_t)s.rmax + 1) * sizeof(int));
    s.qs = malloc(((size_t)s.rmax + 1) * sizeof(int));
    s.pre_param = malloc(2 * ((size_t)n + 1) * sizeof(double));
    s.rng = calloc((size_t)s.t.nnodes, sizeof *s.rng);
    s.memo = calloc((size_t)s.t.nnodes * (s.N + 1), sizeof *s.memo);
    if (!s.q_of_r || !s.qs || !s.pre_param || !s.rng || !s.memo) {
        gp_free(&s);
        return ps_errf(e, PS_ERUN, "graphpipe: out of memory");
    }
    s.pre_act = s.pre_param + n + 1;
    s.pre_param[0] = s.pre_act[0] = 0;
    for (int i = 0; i < n; i++) {
        s.pre_param[i + 1] = s.pre_param[i] + g->param[s.t.order[i]];
        s.pre_act[i + 1] = s.pre_act[i] + g->act[s.t.order[i]];
    }
    for (int rr = 1; rr <= s.rmax; rr++) {
        int q = pp_ceil_div(b, rr), qi = -1;
        for (int k = 0; k < s.nq; k++)
            if (s.qs[k] == q)
                qi = k;
        if (qi < 0) {
            qi = s.nq;
            s.qs[s.nq++] = q;
        }
        s.q_of_r[rr] = qi;
    }
    s.pre = calloc((size_t)s.nq, sizeof *s.pre);
    if (!s.pre) {
        gp_free(&s);
        return ps_errf(e, PS_ERUN, "graphpipe: out of memory");
    }
    for (int k = 0; k < s.nq; k++) {
        const double *f, *bw;
        s.pre[k] = malloc(((size_t)n + 1) * sizeof(double));
        if (!s.pre[k]) {
            gp_free(&s);
            return ps_errf(e, PS_ERUN, "graphpipe: out of memory");
        }
        if ((rc = pp_pgraph_times(g, s.qs[k], &f, &bw, e))) {
            gp_free(&s);
            return rc;
        }
        s.pre[k][0] = 0;
        for (int i = 0; i < n; i++)
            s.pre[k][i + 1] = s.pre[k][i] + f[s.t.order[i]] + bw[s.t.order[i]];
    }
    /* Is there any plan at all (memory)?  T = infinity. */
    int depth;
    int ok = feasible(&s, INFINITY, &depth);
    if (ok < 0) {
        rc = s.failed ? s.failed : PS_ERUN;
        gp_free(&s);
        return rc;
    }
    if (!ok) {
        r->feasible = 0;
        snprintf(r->note, sizeof r->note,
                 "graphpipe: no plan fits in memory with b=%d on %d devices", b, s.N);
        r->states = s.nstates;
        r->work = s.work;
        gp_free(&s);
        return 0;
    }
    double *cand = NULL;
    size_t nc = 0;
    if ((rc = collect_candidates(&s, INFINITY, &cand, &nc))) {
        gp_free(&s);
        return rc;
    }
    /* smallest feasible candidate: feasible(cand[nc-1]) holds (every stage
     * of the T = inf plan has one of these TPS values) */
    size_t lo = 0, hi = nc - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int f = feasible(&s, cand[mid], &depth);
        if (f < 0) {
            rc = s.failed ? s.failed : PS_ERUN;
            break;
        }
        if (f)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (!rc) {
        double T = cand[lo];
        int f = feasible(&s, T, &depth);
        if (f <= 0)
            rc = f < 0 ? (s.failed ? s.failed : PS_ERUN)
                       : ps_errf(e, PS_ERUN, "graphpipe: binary search lost feasibility");
        else {
            rc = recon(&s, s.t.root, 0, s.N);
            if (!rc) {
                r->feasible = 1;
                r->microbatch = b;
                r->objective = T;
                r->objective_tps_s = T;
            }
        }
    }
    free(cand);
    r->states = s.nstates;
    r->work = s.work;
    gp_free(&s);
    return rc;
}
