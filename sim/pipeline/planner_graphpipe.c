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

typedef struct mslot {
    uint64_t key; /* 0 = empty */
    ivl *v;
} mslot;

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
    fmemo *memo;      /* [nnodes * (N+1)]: F */
    fmemo *memo_r;    /* [nnodes * (N+1)]: FR */
    fmemo **memo_p;   /* per node [k * (N+1)]: FP */
    mslot *mh;        /* join-absorbing stages */
    size_t mh_cap, mh_n;
    int joins;        /* join absorption on */
    int probe;
    double T;
    long long work;
    long long nstates;
    ps_err *e;
    int failed;
    double deadline;  /* ps_now_s() after which the search stops (0 = none) */
    int timed_out;    /* the search stopped at the deadline: T is feasible, not least */
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

static ivl *ivl_alloc(gp *s)
{
    ivl *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
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
        return NULL;
    }
    v->probe = -1;
    return v;
}

static void ivl_free(ivl *v)
{
    if (!v)
        return;
    free(v->tps);
    free(v->maxinf);
    free(v->stair_r);
    free(v->stair_m);
    free(v);
}

/* Costs of the ops in slices [a, z) of the tree order. */
static ivl *ivl_of_slices(gp *s, const int *a, const int *z, int nsl)
{
    ivl *v = ivl_alloc(s);
    if (!v) {
        s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory (intervals)");
        return NULL;
    }
    double par = 0, act = 0, bnd;
    for (int k = 0; k < nsl; k++) {
        par += s->pre_param[z[k]] - s->pre_param[a[k]];
        act += s->pre_act[z[k]] - s->pre_act[a[k]];
    }
    if (nsl == 1) {
        bnd = pp_pg_boundary_bytes(s->g, s->t.order + a[0], z[0] - a[0]);
    } else {
        int tot = 0;
        for (int k = 0; k < nsl; k++)
            tot += z[k] - a[k];
        int *ops = malloc((size_t)tot * sizeof *ops);
        if (!ops) {
            ivl_free(v);
            s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
            return NULL;
        }
        tot = 0;
        for (int k = 0; k < nsl; k++)
            for (int p = a[k]; p < z[k]; p++)
                ops[tot++] = s->t.order[p];
        bnd = pp_pg_boundary_bytes(s->g, ops, tot);
        free(ops);
    }
    v->comp_lb = INFINITY;
    for (int r = 1; r <= s->rmax; r++) {
        int qi = s->q_of_r[r];
        double comp = 0;
        for (int k = 0; k < nsl; k++)
            comp += s->pre[qi][z[k]] - s->pre[qi][a[k]];
        v->tps[r] = pp_tps_formula(s->pc, comp, par, bnd, s->b, r, s->B);
        v->maxinf[r] = pp_maxinflight_formula(s->pc, par, act, s->qs[qi]);
        double lb = pp_tps_formula(s->pc, comp, par, 0, s->b, r, s->B);
        if (lb < v->comp_lb)
            v->comp_lb = lb;
    }
    return v;
}

static ivl *get_ivl(gp *s, int x, int i, int j)
{
    int k = node_k(s, x);
    if (!s->rng[x]) {
        s->rng[x] = calloc((size_t)k * k, sizeof(ivl *));
        if (!s->rng[x]) {
            s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory (intervals)");
            return NULL;
        }
    }
    ivl **slot = &s->rng[x][(size_t)i * k + j];
    if (!*slot) {
        int a = range_first(s, x, i), z = range_end(s, x, j);
        *slot = ivl_of_slices(s, &a, &z, 1);
    }
    return *slot;
}

/* The join-absorbing stage of series node x at child i (a parallel node P):
 * children sidx.. of P's first branch, plus x's children i+1..j. */
static void merged_slices(const gp *s, int x, int i, int j, int sidx, int *a, int *z)
{
    const pp_sp_node *P = &s->t.nodes[s->t.nodes[x].children[i]];
    const pp_sp_node *b0 = &s->t.nodes[P->children[0]];
    a[0] = b0->kind == PP_SP_LEAF ? b0->first : s->t.nodes[b0->children[sidx]].first;
    z[0] = b0->first + b0->count;
    a[1] = range_first(s, x, i + 1);
    z[1] = range_end(s, x, j);
}

static ivl *get_merged(gp *s, int x, int i, int j, int sidx)
{
    uint64_t key = ((uint64_t)x * 1048573u + (uint64_t)i) * 1048573u + (uint64_t)j;
    key = key * 65537u + (uint64_t)sidx + 1;
    if (2 * (s->mh_n + 1) > s->mh_cap) {
        size_t nc = s->mh_cap ? s->mh_cap * 2 : 1024;
        mslot *ns = calloc(nc, sizeof *ns);
        if (!ns) {
            s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
            return NULL;
        }
        for (size_t q = 0; q < s->mh_cap; q++)
            if (s->mh[q].key) {
                size_t h = (size_t)(s->mh[q].key * 0x9e3779b97f4a7c15ULL) & (nc - 1);
                while (ns[h].key)
                    h = (h + 1) & (nc - 1);
                ns[h] = s->mh[q];
            }
        free(s->mh);
        s->mh = ns;
        s->mh_cap = nc;
    }
    size_t h = (size_t)(key * 0x9e3779b97f4a7c15ULL) & (s->mh_cap - 1);
    while (s->mh[h].key && s->mh[h].key != key)
        h = (h + 1) & (s->mh_cap - 1);
    if (s->mh[h].key)
        return s->mh[h].v;
    int a[2], z[2];
    merged_slices(s, x, i, j, sidx, a, z);
    ivl *v = ivl_of_slices(s, a, z, 2);
    if (!v)
        return NULL;
    s->mh[h].key = key;
    s->mh[h].v = v;
    s->mh_n++;
    return v;
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
static const int *FR(gp *s, int x, int d);
static const int *FP(gp *s, int x, int sidx, int d);

/* Work arrays for one node evaluation: (k+1) rows of N+1 values. */
typedef struct rows {
    int k, N;
    int *a;            /* [(k+1)*(N+1)] */
    int *nbp;          /* [k+1] */
    int *bn, *bv;      /* [(k+1)*(N+1)] */
    int *tn, *tv;      /* [N+1] scratch: a child's breakpoints */
    int *on, *ov, *pn, *pv; /* [N+1] scratch: join absorption */
} rows;

static int rows_init(rows *w, int k, int N)
{
    memset(w, 0, sizeof *w);
    w->k = k;
    w->N = N;
    size_t sz = (size_t)(k + 1) * (N + 1), n1 = (size_t)N + 1;
    w->a = malloc(sz * sizeof(int));
    w->bn = malloc(sz * sizeof(int));
    w->bv = malloc(sz * sizeof(int));
    w->nbp = malloc(((size_t)k + 1) * sizeof(int));
    w->tn = malloc(6 * n1 * sizeof(int));
    if (w->tn) {
        w->tv = w->tn + n1;
        w->on = w->tn + 2 * n1;
        w->ov = w->tn + 3 * n1;
        w->pn = w->tn + 4 * n1;
        w->pv = w->tn + 5 * n1;
    }
    return w->a && w->bn && w->bv && w->nbp && w->tn ? 0 : -1;
}

static void rows_free(rows *w)
{
    free(w->a);
    free(w->bn);
    free(w->bv);
    free(w->nbp);
    free(w->tn);
}

#define ROW(w, i) ((w)->a + (size_t)(i) * ((w)->N + 1))
#define BN(w, i) ((w)->bn + (size_t)(i) * ((w)->N + 1))
#define BV(w, i) ((w)->bv + (size_t)(i) * ((w)->N + 1))

/* A join-absorption option: the stage M over P's first branch from child
 * sidx on plus x's children i+1..j, the other branches of P and the first
 * branch's prefix exiting into M.  Enumerated in one fixed order by
 * eval_rows_rng and by the reconstruction. */
typedef struct jopt {
    int j, q, sidx, r, po, pp; /* tail end, rest breakpoint, branch suffix, M's replicas,
                                  others' and prefix breakpoints */
    int tot, val;
} jopt;

/* Enumerate the join options of (x, i) with its rows; cb returns 1 to stop. */
static int join_options(gp *s, int x, int i, int hi, rows *w,
                        int (*cb)(gp *s, const jopt *o, void *ctx), void *ctx)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    const pp_sp_node *P = &s->t.nodes[nd->children[i]];
    const pp_sp_node *b0 = &s->t.nodes[P->children[0]];
    int kb = b0->kind == PP_SP_LEAF ? 1 : b0->nchildren, N = s->N;
    for (int j = i + 1; j <= hi; j++) {
        ivl *tail = get_ivl(s, x, i + 1, j);
        if (!tail)
            return -1;
        if (tail->comp_lb > s->T)
            break; /* M holds the tail: only worse for larger j */
        const int *bn2 = BN(w, j + 1), *bv2 = BV(w, j + 1);
        for (int q = 0; q < w->nbp[j + 1]; q++) {
            int v = bv2[q];
            if (v + 1 >= N)
                continue; /* M and the other branches' stages: > N on a path */
            int dM = 1 + v;
            const int *fo = FR(s, nd->children[i], dM);
            if (!fo)
                return -1;
            int no = breakpoints(fo, N, w->on, w->ov);
            for (int sidx = kb - 1; sidx >= 0; sidx--) {
                ivl *mv = get_merged(s, x, i, j, sidx);
                if (!mv)
                    return -1;
                if (mv->comp_lb > s->T)
                    break; /* a longer suffix only adds compute */
                s->work++;
                int r = rmin(s, mv, inflight_of(s, dM));
                if (!r)
                    continue;
                int np;
                if (sidx == 0) {
                    np = 1;
                    w->pn[0] = 0;
                    w->pv[0] = 0;
                } else {
                    const int *fp = FP(s, P->children[0], sidx, dM);
                    if (!fp)
                        return -1;
                    np = breakpoints(fp, N, w->pn, w->pv);
                }
                for (int a = 0; a < no; a++)
                    for (int b = 0; b < np; b++) {
                        int tot = w->on[a] + w->pn[b] + r + bn2[q];
                        s->work++;
                        if (tot > N)
                            break;
                        int val = w->ov[a] > w->pv[b] ? w->ov[a] : w->pv[b];
                        if (dM > val)
                            val = dM;
                        jopt op = {j, q, sidx, r, a, b, tot, val};
                        int st = cb(s, &op, ctx);
                        if (st)
                            return st;
                    }
            }
        }
    }
    return 0;
}

static int join_min_cb(gp *s, const jopt *o, void *ctx)
{
    (void)s;
    int *best = ctx;
    if (o->val < best[o->tot])
        best[o->tot] = o->val;
    return 0;
}

/* Fill rows[i] for i = hi+1 .. lo of node x's children lo..hi (a series node
 * chains them, a parallel node groups them) with exit count d. */
static int eval_rows_rng(gp *s, int x, int lo, int hi, int d, rows *w)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    int par = nd->kind == PP_SP_PARALLEL, N = s->N;
    for (int n = 0; n <= N; n++)
        ROW(w, hi + 1)[n] = par ? 0 : d;
    w->nbp[hi + 1] = breakpoints(ROW(w, hi + 1), N, BN(w, hi + 1), BV(w, hi + 1));
    int exit_inf = inflight_of(s, 1 + d);
    for (int i = hi; i >= lo; i--) {
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
        for (int j = i; j <= hi; j++) {
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
        /* (c) join absorption: a parallel child's join and what follows it,
         * up to child j, in one stage with the end of its first branch */
        if (!par && s->t.nodes[c].kind == PP_SP_PARALLEL && i < hi && s->joins &&
            join_options(s, x, i, hi, w, join_min_cb, best) < 0)
            return -1;
        for (int n = 1; n <= N; n++)
            if (best[n - 1] < best[n])
                best[n] = best[n - 1];
        w->nbp[i] = breakpoints(best, N, BN(w, i), BV(w, i));
    }
    return 0;
}

/* Memoized rows: F = all children of x; FR = children 1.. of parallel x (all
 * branches but the first); FP = children 0..sidx-1 of series x (a prefix). */
static const int *memo_rows(gp *s, fmemo *mm, int x, int lo, int hi, int d)
{
    if (s->failed)
        return NULL;
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
        /* every stage here would sit on a path of more than N stages */
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
        int rc = eval_rows_rng(s, x, lo, hi, d, &w);
        if (!rc)
            memcpy(mm->val, ROW(&w, lo), ((size_t)N + 1) * sizeof(int));
        rows_free(&w);
        if (rc)
            return NULL;
    }
    mm->probe = s->probe;
    return mm->val;
}

static const int *F(gp *s, int x, int d)
{
    return memo_rows(s, &s->memo[(size_t)x * (s->N + 1) + d], x, 0, node_k(s, x) - 1, d);
}

static const int *FR(gp *s, int x, int d)
{
    return memo_rows(s, &s->memo_r[(size_t)x * (s->N + 1) + d], x, 1, node_k(s, x) - 1, d);
}

static const int *FP(gp *s, int x, int sidx, int d)
{
    int k = node_k(s, x);
    if (!s->memo_p[x]) {
        s->memo_p[x] = calloc((size_t)k * (s->N + 1), sizeof(fmemo));
        if (!s->memo_p[x]) {
            s->failed = ps_errf(s->e, PS_ERUN, "graphpipe: out of memory (memo)");
            return NULL;
        }
    }
    return memo_rows(s, &s->memo_p[x][(size_t)sidx * (s->N + 1) + d], x, 0, sidx - 1, d);
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

static int add_slices_stage(gp *s, const int *a, const int *z, int nsl, int r)
{
    int tot = 0;
    for (int k = 0; k < nsl; k++)
        tot += z[k] - a[k];
    int *ops = malloc((size_t)tot * sizeof *ops);
    if (!ops)
        return ps_errf(s->e, PS_ERUN, "out of memory");
    tot = 0;
    for (int k = 0; k < nsl; k++)
        for (int p = a[k]; p < z[k]; p++)
            ops[tot++] = s->t.order[p];
    int rc = pp_presult_add_stage(s->out, ops, tot, s->b, r, 0, s->e);
    free(ops);
    return rc;
}

static int add_range_stage(gp *s, int x, int i, int j, int r)
{
    int a = range_first(s, x, i), z = range_end(s, x, j);
    return add_slices_stage(s, &a, &z, 1, r);
}

static int recon(gp *s, int x, int d, int n);
static int recon_rng(gp *s, int x, int lo, int hi, int d, int n);

typedef struct jfind {
    int budget, target;
    jopt hit;
    int found;
} jfind;

static int join_find_cb(gp *s, const jopt *o, void *ctx)
{
    (void)s;
    jfind *f = ctx;
    if (o->tot <= f->budget && o->val <= f->target) {
        f->hit = *o;
        f->found = 1;
        return 1;
    }
    return 0;
}

static int recon_rng(gp *s, int x, int lo, int hi, int d, int n)
{
    const pp_sp_node *nd = &s->t.nodes[x];
    int par = nd->kind == PP_SP_PARALLEL, N = s->N;
    rows w;
    if (rows_init(&w, nd->nchildren, N)) {
        rows_free(&w);
        return ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
    }
    int rc = eval_rows_rng(s, x, lo, hi, d, &w);
    if (rc)
        rc = s->failed ? s->failed : PS_ERUN;
    int exit_inf = inflight_of(s, 1 + d);
    int i = lo, budget = n, target = rc ? INF_D : ROW(&w, lo)[n];
    while (!rc && i <= hi) {
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
        for (int j = i; j <= hi && !found && !rc; j++) {
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
        if (!found && !rc && !par && s->t.nodes[c].kind == PP_SP_PARALLEL && i < hi && s->joins) {
            jfind jf = {.budget = budget, .target = target};
            int st = join_options(s, x, i, hi, &w, join_find_cb, &jf);
            if (st < 0)
                rc = s->failed ? s->failed : PS_ERUN;
            else if (jf.found) {
                const jopt *o = &jf.hit;
                const pp_sp_node *P = &s->t.nodes[c];
                int v = BV(&w, o->j + 1)[o->q], dM = 1 + v;
                /* the breakpoints are recomputed by the same calls */
                const int *fo = FR(s, c, dM);
                int no = fo ? breakpoints(fo, N, w.on, w.ov) : 0;
                (void)no;
                int n_o = w.on[o->po], n_p = 0;
                if (o->sidx > 0) {
                    const int *fp = FP(s, P->children[0], o->sidx, dM);
                    if (fp) {
                        breakpoints(fp, N, w.pn, w.pv);
                        n_p = w.pn[o->pp];
                    }
                }
                int a[2], z[2];
                merged_slices(s, x, i, o->j, o->sidx, a, z);
                found = 1;
                if (!fo || s->failed)
                    rc = s->failed ? s->failed : PS_ERUN;
                if (!rc)
                    rc = add_slices_stage(s, a, z, 2, o->r);
                if (!rc)
                    rc = recon_rng(s, c, 1, P->nchildren - 1, dM, n_o);
                if (!rc && o->sidx > 0) {
                    const pp_sp_node *b0 = &s->t.nodes[P->children[0]];
                    (void)b0;
                    rc = recon_rng(s, P->children[0], 0, o->sidx - 1, dM, n_p);
                }
                next_i = o->j + 1;
                next_budget = BN(&w, o->j + 1)[o->q];
                next_target = v;
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
    return recon_rng(s, x, 0, nd->nchildren - 1, d, n);
}

/* ------------------------------------------------------------- driver */

static void gp_free(gp *s)
{
    if (s->rng) {
        for (int x = 0; x < s->t.nnodes; x++) {
            if (!s->rng[x])
                continue;
            int k = node_k(s, x);
            for (int i = 0; i < k * k; i++)
                ivl_free(s->rng[x][i]);
            free(s->rng[x]);
        }
        free(s->rng);
    }
    size_t nm = (size_t)s->t.nnodes * (s->N + 1);
    if (s->memo)
        for (size_t i = 0; i < nm; i++)
            free(s->memo[i].val);
    free(s->memo);
    if (s->memo_r)
        for (size_t i = 0; i < nm; i++)
            free(s->memo_r[i].val);
    free(s->memo_r);
    if (s->memo_p) {
        for (int x = 0; x < s->t.nnodes; x++)
            if (s->memo_p[x]) {
                size_t k = (size_t)node_k(s, x) * (s->N + 1);
                for (size_t i = 0; i < k; i++)
                    free(s->memo_p[x][i].val);
                free(s->memo_p[x]);
            }
        free(s->memo_p);
    }
    for (size_t i = 0; i < s->mh_cap; i++)
        if (s->mh[i].key)
            ivl_free(s->mh[i].v);
    free(s->mh);
    if (s->pre)
        for (int i = 0; i < s->nq; i++)
            free(s->pre[i]);
    free(s->pre);
    free(s->qs);
    free(s->q_of_r);
    free(s->pre_param);
    pp_sp_free(&s->t);
}

/* Append the stage TPS of range v on every replica count that meets ub
 * and fits in memory; on allocation failure frees *c and reports. */
static int push_tps(gp *s, const ivl *v, double ub, double **c, size_t *n, size_t *cap)
{
    for (int r = 1; r <= s->rmax; r++) {
        if (v->tps[r] > ub || v->maxinf[r] < 1)
            continue;
        if (*n == *cap) {
            double *cc = realloc(*c, 2 * *cap * sizeof *cc);
            if (!cc) {
                free(*c);
                *c = NULL;
                return ps_errf(s->e, PS_ERUN, "graphpipe: out of memory");
            }
            *c = cc;
            *cap *= 2;
        }
        (*c)[(*n)++] = v->tps[r];
    }
    return 0;
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
                if (push_tps(s, v, ub, &c, &n, &cap))
                    return PS_ERUN;
            }
    }
    /* join-absorbing stages */
    for (int x = 0; x < s->t.nnodes && s->joins; x++) {
        const pp_sp_node *nd = &s->t.nodes[x];
        if (nd->kind != PP_SP_SERIES)
            continue;
        for (int i = 0; i + 1 < nd->nchildren; i++) {
            const pp_sp_node *P = &s->t.nodes[nd->children[i]];
            if (P->kind != PP_SP_PARALLEL)
                continue;
            const pp_sp_node *b0 = &s->t.nodes[P->children[0]];
            int kb = b0->kind == PP_SP_LEAF ? 1 : b0->nchildren;
            for (int j = i + 1; j < nd->nchildren; j++)
                for (int sidx = kb - 1; sidx >= 0; sidx--) {
                    ivl *v = get_merged(s, x, i, j, sidx);
                    if (!v) {
                        free(c);
                        return s->failed;
                    }
                    if (v->comp_lb > ub)
                        break;
                    if (push_tps(s, v, ub, &c, &n, &cap))
                        return PS_ERUN;
                }
        }
    }
    *out = c;
    *nout = n;
    return 0;
}

/* Put the k-th smallest of a[0..n) at a[k], smaller-or-equal before it,
 * larger-or-equal after (Hoare's selection, median-of-three pivots). */
static void select_kth(double *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) {
            double t = a[mid]; a[mid] = a[lo]; a[lo] = t;
        }
        if (a[hi] < a[lo]) {
            double t = a[hi]; a[hi] = a[lo]; a[lo] = t;
        }
        if (a[hi] < a[mid]) {
            double t = a[hi]; a[hi] = a[mid]; a[mid] = t;
        }
        double piv = a[mid];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < piv)
                i++;
            while (a[j] > piv)
                j--;
            if (i <= j) {
                double t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* The least candidate T that is feasible, given that the largest one is:
 * a binary search by selection (no sort): each probe tests the median of
 * the values still in play and keeps the half that holds the answer.
 * O(n) expected work besides the log2(n) probes. */
static int search_least_feasible(gp *s, double *c, size_t n, double *T_out)
{
    int depth;
    if (n == 0)
        return ps_errf(s->e, PS_ERUN, "graphpipe: no candidate stage");
    /* the least value known feasible: the largest candidate, until a probe
     * finds a smaller one.  At the deadline the search returns it (a
     * feasible plan, not the optimum) */
    double known = c[0];
    for (size_t i = 1; i < n; i++)
        known = c[i] > known ? c[i] : known;
    while (n > 1) {
        if (s->deadline > 0 && ps_now_s() > s->deadline) {
            s->timed_out = 1;
            *T_out = known;
            return 0;
        }
        /* the lower median: both outcomes keep fewer than n values */
        size_t k = (n - 1) / 2;
        select_kth(c, n, k);
        double v = c[k];
        int f = feasible(s, v, &depth);
        if (f < 0)
            return s->failed ? s->failed : PS_ERUN;
        if (f) {
            known = v;
            /* keep the values below v, and v itself */
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (c[i] < v)
                    c[m++] = c[i];
            if (m == 0) {
                c[0] = v;
                n = 1;
                break;
            }
            c[m++] = v;
            n = m;
        } else {
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (c[i] > v)
                    c[m++] = c[i];
            n = m;
        }
    }
    *T_out = c[0];
    return 0;
}

/* The tree of a sequential pipeline: one series node over the ops in the
 * graph's topological order (the model linearized into an operator
 * sequence).  Its intervals are the contiguous ranges of that order. */
static int linear_tree(pp_pgraph *g, pp_sp_tree *t, ps_err *e)
{
    memset(t, 0, sizeof *t);
    int n = g->n;
    t->nodes = calloc((size_t)n + 1, sizeof *t->nodes);
    t->order = malloc((size_t)n * sizeof *t->order);
    int *ch = malloc((size_t)n * sizeof *ch);
    if (!t->nodes || !t->order || !ch) {
        free(ch);
        pp_sp_free(t);
        return ps_errf(e, PS_ERUN, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        t->nodes[i] = (pp_sp_node){.kind = PP_SP_LEAF, .op = g->topo[i], .first = i, .count = 1};
        t->order[i] = g->topo[i];
        ch[i] = i;
    }
    t->nnodes = n;
    if (n == 1) {
        free(ch);
        t->root = 0;
    } else {
        t->nodes[n] = (pp_sp_node){.kind = PP_SP_SERIES, .nchildren = n, .children = ch,
                                   .first = 0, .count = n};
        t->nnodes = n + 1;
        t->root = n;
    }
    t->nops = n;
    return 0;
}

static int gp_run(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b, int linear,
                  pp_presult *r, ps_err *e);

int pp_plan_graphpipe_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                        pp_presult *r, ps_err *e)
{
    return gp_run(g, pc, o, b, 0, r, e);
}

int pp_plan_linear_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                     pp_presult *r, ps_err *e)
{
    return gp_run(g, pc, o, b, 1, r, e);
}

static int gp_run(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b, int linear,
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
    if (o->time_limit_s > 0)
        s.deadline = ps_now_s() + o->time_limit_s;
    r->objective_name = "time_per_sample_s";
    int rc = linear ? linear_tree(g, &s.t, e) : pp_sp_build(g, &s.t, e);
    if (rc)
        return rc;
    r->sp_rewrites = s.t.rewrites;
    int n = g->n;
    s.q_of_r = malloc(((size_t)s.rmax + 1) * sizeof(int));
    s.qs = malloc(((size_t)s.rmax + 1) * sizeof(int));
    s.pre_param = malloc(2 * ((size_t)n + 1) * sizeof(double));
    s.rng = calloc((size_t)s.t.nnodes, sizeof *s.rng);
    s.memo = calloc((size_t)s.t.nnodes * (s.N + 1), sizeof *s.memo);
    s.memo_r = calloc((size_t)s.t.nnodes * (s.N + 1), sizeof *s.memo_r);
    s.memo_p = calloc((size_t)s.t.nnodes, sizeof *s.memo_p);
    s.joins = !linear && !o->gp_no_join_merge;
    if (!s.q_of_r || !s.qs || !s.pre_param || !s.rng || !s.memo || !s.memo_r || !s.memo_p) {
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
    /* the least feasible candidate: the largest one is feasible (every stage
     * of the T = inf plan has one of these TPS values) */
    double T = INFINITY;
    rc = search_least_feasible(&s, cand, nc, &T);
    if (!rc) {
        int f = feasible(&s, T, &depth);
        if (f <= 0)
            rc = f < 0 ? (s.failed ? s.failed : PS_ERUN)
                       : ps_errf(e, PS_ERUN, "graphpipe: binary search lost feasibility");
        else {
            rc = recon(&s, s.t.root, 0, s.N);
            if (!rc && s.timed_out)
                snprintf(r->note, sizeof r->note,
                         "graphpipe: time limit %g s reached in the search over the stage "
                         "times: the plan is feasible, not proven optimal",
                         o->time_limit_s);
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
