/* Piper's planner (Tarnawski et al., NeurIPS'21; msr-fiddle/piper algo.cpp),
 * re-derived in C, data parallelism only (one configuration per op, no
 * tensor parallelism or recomputation: the models here give one).
 *
 * Ideals: op sets closed under successors (a suffix of the network), grown
 * from the empty set by adding any op whose successors are all in.  Their
 * number grows like the product of the branch lengths — exponential in the
 * number of parallel branches — so the enumeration stops at a budget
 * (piper_max_ideals, default Piper's own IDEALS_LIMIT of 40,000) with a
 * message instead of running for hours.
 *
 * DP: dp[I][k][s] = the least max stage load partitioning ideal I over at
 * most k devices with the data-parallel degrees of its stages summing to at
 * most s (s <= min(micro-batches, devices)).  A stage is I \ J for a
 * sub-ideal J, on d devices (d divides the micro-batch count):
 *   load = sum_v [ (2 sum_{cut edges of v} c_e / d + 4 (d-1) w_v / d / mbs) / BW
 *                  + t_v / d ]
 * with t_v the op's forward + backward time for one micro-batch of b
 * samples, c_e the bytes one micro-batch sends over edge e, w_v the
 * parameter bytes, mbs = B / b; memory sum_v (A_v y + B_v) with y =
 * ceil(s / d) in-flight micro-batches per replica, A_v = activations of one
 * micro-batch, B_v = weights, gradients and optimizer state.
 *   dp[I][k][s] = min over J, d of max(dp[J][k-d][s-d], load(I\J, d, s)),
 * then made monotone in k and s (the "at most" form).  The answer is the
 * least dp[all][k][s]; its unit is time per micro-batch. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/planner_impl.h"

#define PINF 1e30

typedef struct pideals {
    size_t n, words;
    pp_word *bits;
    int *size;
    double *comp, *par, *act;
    /* immediate sub-ideals: CSR built after enumeration */
    int *sub_off, *sub;
} pideals;

static void pideals_free(pideals *p)
{
    free(p->bits);
    free(p->size);
    free(p->comp);
    free(p->par);
    free(p->act);
    free(p->sub_off);
    free(p->sub);
    memset(p, 0, sizeof *p);
}


typedef struct pctx {
    pp_pgraph *g;
    const pp_pcluster *pc;
    const pideals *p;
    int b, mbs, N, Sb;
    double bw, cap;
    const double *f, *bw_t;
    int *members;
} pctx;

/* Stage load and memory of I \ J: fills tps_d[d] (per micro-batch, INF when
 * d does not divide mbs) and a = activations, bb = static bytes. */
static void stage_terms(pctx *c, int I, int J, double *comp, double *par, double *cut,
                        double *a, double *bb)
{
    const pideals *p = c->p;
    pp_pgraph *g = c->g;
    size_t w = p->words;
    const pp_word *bi = p->bits + (size_t)I * w, *bj = p->bits + (size_t)J * w;
    *comp = p->comp[I] - p->comp[J];
    *par = p->par[I] - p->par[J];
    *a = p->act[I] - p->act[J];
    *bb = *par * c->pc->weight_mult;
    double cb = 0;
    for (size_t x = 0; x < w; x++) {
        pp_word m = bi[x] & ~bj[x];
        while (m) {
            int v = (int)(x * 64 + (size_t)__builtin_ctzll(m));
            m &= m - 1;
            for (int k = g->pred_off[v]; k < g->pred_off[v + 1]; k++) {
                int u = g->pred[k];
                if (!(pp_bit_get(bi, u) && !pp_bit_get(bj, u)))
                    cb += 2 * g->out[u] * c->b;
            }
            for (int k = g->succ_off[v]; k < g->succ_off[v + 1]; k++) {
                int s = g->succ[k];
                if (!(pp_bit_get(bi, s) && !pp_bit_get(bj, s)))
                    cb += 2 * g->out[v] * c->b;
            }
        }
    }
    *cut = cb;
}

static double load_of(const pctx *c, double comp, double par, double cut, int d)
{
    double comm = cut / d + 4.0 * (d - 1) * par / d / c->mbs;
    return comm / c->bw + comp / d;
}

int pp_plan_piper_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                    pp_presult *r, ps_err *e)
{
    int rc = pp_pg_closure(g, e);
    if (rc)
        return rc;
    r->objective_name = "time_per_microbatch_s";
    r->sequential = 1;
    long maxi = o->piper_max_ideals > 0 ? o->piper_max_ideals : 40000;
    long long maxpairs = o->piper_max_pairs > 0 ? o->piper_max_pairs : 50000000LL;
    pideals p = {0};
    int over = 0;
    pp_ideals id;
    rc = pp_ideals_enum(g->n, g->succ_off, g->succ, g->pred_off, g->pred, maxi, &id, &over, e);
    p.n = id.n, p.words = id.words, p.bits = id.bits, p.size = id.size; /* pideals_free owns */
    p.sub_off = id.sub_off, p.sub = id.sub;
    if (rc) {
        pideals_free(&p);
        return rc;
    }
    if (over) {
        r->feasible = 0;
        r->budget_exceeded = 1;
        r->states = maxi;
        snprintf(r->note, sizeof r->note,
                 "piper: more than %ld ideals (downsets); their number is exponential in the "
                 "number of parallel branches, so Piper finds no strategy within its budget "
                 "(piper_max_ideals)",
                 maxi);
        pideals_free(&p);
        return 0;
    }
    size_t NI = p.n, w = p.words;
    int N = pc->devices, mbs = o->minibatch / b;
    int Sb = mbs < N ? mbs : N;
    pctx c = {.g = g, .pc = pc, .p = &p, .b = b, .mbs = mbs, .N = N, .Sb = Sb};
    c.bw = o->piper_bandwidth_Bps > 0 ? o->piper_bandwidth_Bps : pc->p2p.beta_bytes_per_s;
    c.cap = pc->mem_bytes > 0 && isfinite(pc->mem_bytes) ? pc->mem_bytes : INFINITY;
    if (!(c.bw > 0)) {
        pideals_free(&p);
        return ps_errf(e, PS_EINPUT, "piper: needs a bandwidth");
    }
    const double *f, *bt;
    if ((rc = pp_pgraph_times(g, b, &f, &bt, e))) {
        pideals_free(&p);
        return rc;
    }
    p.comp = malloc(NI * sizeof(double));
    p.par = malloc(NI * sizeof(double));
    p.act = malloc(NI * sizeof(double));
    size_t cells = NI * (size_t)(N + 1) * (size_t)(Sb + 1);
    double *dp = cells < (size_t)3e8 ? malloc(cells * sizeof(double)) : NULL;
    int *order = malloc(NI * sizeof(int)), *stamp = calloc(NI, sizeof(int));
    int *drops = malloc(NI * (size_t)(N + 1) * (size_t)(Sb + 2) * sizeof(int));
    char *rowchg = calloc(NI * (size_t)(N + 1), 1);
    double *rowmax = malloc(((size_t)N + 1) * sizeof *rowmax);
    int *stack = malloc(NI * sizeof(int));
    double *tps = malloc(((size_t)N + 1) * (Sb + 1) * sizeof(double));
    if (!p.comp || !p.par || !p.act || !dp || !order || !stamp || !stack || !tps || !drops || !rowchg || !rowmax) {
        rc = cells >= (size_t)3e8
                 ? ps_errf(e, PS_EINPUT, "piper: dp table of %zu cells is too large", cells)
                 : ps_errf(e, PS_ERUN, "piper: out of memory");
        goto done;
    }
    for (size_t i = 0; i < NI; i++) {
        const pp_word *I = p.bits + i * w;
        double cc = 0, pp = 0, aa = 0;
        for (int v = 0; v < g->n; v++)
            if (pp_bit_get(I, v)) {
                cc += f[v] + bt[v];
                pp += g->param[v];
                aa += g->act[v] * b;
            }
        p.comp[i] = cc;
        p.par[i] = pp;
        p.act[i] = aa;
        order[i] = (int)i; /* BFS order is by size already */
    }
#define DP(i, k, s) dp[((size_t)(i) * (N + 1) + (k)) * (Sb + 1) + (s)]
#define DROPS(i, k) (drops + ((size_t)(i) * (N + 1) + (k)) * (Sb + 2))
    for (size_t i = 0; i < cells; i++)
        dp[i] = PINF;
    for (int k = 0; k <= N; k++) {
        for (int s = 0; s <= Sb; s++)
            DP(0, k, s) = 0;
        DROPS(0, k)[0] = 1;
        DROPS(0, k)[1] = 0;
        rowchg[k] = k == 0;
    }
    long long pairs = 0, work = 0;
    double t0 = ps_now_s();
    for (size_t ii = 1; ii < NI && !rc; ii++) {
        int id = order[ii];
        /* all sub-ideals of id: DFS over immediate ones */
        int top = 0, nsub = 0;
        stack[top++] = id;
        stamp[id] = id + 1;
        int *subs = malloc(NI * sizeof(int));
        if (!subs) {
            rc = ps_errf(e, PS_ERUN, "piper: out of memory");
            break;
        }
        while (top) {
            int x = stack[--top];
            for (int k = p.sub_off[x]; k < p.sub_off[x + 1]; k++) {
                int y = p.sub[k];
                if (stamp[y] != id + 1) {
                    stamp[y] = id + 1;
                    stack[top++] = y;
                    subs[nsub++] = y;
                }
            }
        }
        pairs += nsub;
        if (pairs > maxpairs) {
            free(subs);
            r->feasible = 0;
            r->budget_exceeded = 1;
            r->states = (long long)NI;
            r->work = work;
            snprintf(r->note, sizeof r->note,
                     "piper: more than %lld (ideal, sub-ideal) pairs among %zu ideals "
                     "(exponential in branches); stopped at the budget (piper_max_pairs)",
                     maxpairs, NI);
            goto done;
        }
        /* rowmax[k]: an upper bound on max_s dp[id][k][s], refreshed now and
         * then (cells only fall).  A stage whose load is no better cannot
         * lower any cell of that row: every candidate is >= its load. */
        for (int k = 0; k <= N; k++)
            rowmax[k] = PINF;
        for (int q = 0; q < nsub; q++) {
            int sub = subs[q];
            if ((q & 31) == 31)
                for (int k = 0; k <= N; k++) {
                    double mx = 0;
                    for (int s2 = 1; s2 <= Sb; s2++)
                        if (DP(id, k, s2) > mx)
                            mx = DP(id, k, s2);
                    rowmax[k] = mx;
                }
            double comp, par, cut, a, bb;
            stage_terms(&c, id, sub, &comp, &par, &cut, &a, &bb);
            for (int d = 1; d <= N; d++) {
                if (mbs % d)
                    continue;
                double ld = load_of(&c, comp, par, cut, d);
                /* largest degree sum whose in-flight count still fits */
                int smax = Sb;
                while (smax >= d && a * pp_ceil_div(smax, d) + bb > c.cap)
                    smax--;
                if (smax < d)
                    continue;
                /* Piper's FASTER_DP_IMPLEMENTATION: dp[sub][k-d][.] only
                 * changes at its drops and the load does not fall with s, so
                 * only s = drop + d can set a new minimum; the monotone pass
                 * below carries it to the larger s. */
                for (int k = d; k <= N; k++) {
                    if (ld >= rowmax[k])
                        continue;
                    /* a row equal to the one with a device less gives the
                     * same updates one k lower; the monotone pass carries
                     * them up */
                    if (k > d && !rowchg[(size_t)sub * (N + 1) + (k - d)])
                        continue;
                    const int *L = DROPS(sub, k - d);
                    for (int t = 1; t <= L[0]; t++) {
                        int f = L[t];
                        work++;
                        if (f + d > smax)
                            break;
                        double prev = DP(sub, k - d, f);
                        if (prev >= PINF / 2)
                            continue;
                        double *cell = &DP(id, k, f + d);
                        if (prev > ld) {
                            if (prev < *cell)
                                *cell = prev;
                        } else {
                            if (ld < *cell)
                                *cell = ld;
                            break;
                        }
                    }
                }
            }
        }
        free(subs);
        for (int k = 0; k <= N; k++) {
            int *L = DROPS(id, k);
            L[0] = 1;
            L[1] = 0;
            int chg = k == 0;
            for (int s = 0; s <= Sb; s++) {
                if (k > 0 && DP(id, k - 1, s) < DP(id, k, s))
                    DP(id, k, s) = DP(id, k - 1, s);
                if (k > 0 && DP(id, k, s) != DP(id, k - 1, s))
                    chg = 1;
                if (s > 0 && DP(id, k, s - 1) < DP(id, k, s))
                    DP(id, k, s) = DP(id, k, s - 1);
                if (s > 0 && DP(id, k, s) + 1e-9 < DP(id, k, s - 1))
                    L[++L[0]] = s; /* a significant drop */
            }
            rowchg[(size_t)id * (N + 1) + k] = (char)chg;
        }
        if (o->time_limit_s > 0 && ps_now_s() - t0 > o->time_limit_s) {
            r->feasible = 0;
            r->states = (long long)NI;
            r->work = work;
            snprintf(r->note, sizeof r->note, "piper: time limit %g s reached (%zu ideals)",
                     o->time_limit_s, NI);
            goto done;
        }
    }
    if (rc)
        goto done;
    r->states = (long long)NI;
    r->work = work;
    {
        /* the full set is the last ideal (the only one of size n) */
        int full = -1;
        for (size_t i = 0; i < NI; i++)
            if (p.size[i] == g->n)
                full = (int)i;
        double best = PINF;
        int bk = -1, bs = -1;
        for (int k = 0; k <= N; k++)
            for (int s = 1; s <= Sb; s++)
                if (DP(full, k, s) + 1e-9 < best) {
                    best = DP(full, k, s);
                    bk = k;
                    bs = s;
                }
        if (best > PINF / 2) {
            r->feasible = 0;
            snprintf(r->note, sizeof r->note, "piper: no partition fits in memory with b=%d", b);
            goto done;
        }
        r->feasible = 1;
        r->microbatch = b;
        r->objective = best;
        r->objective_tps_s = best / b;
        /* reconstruction: find a (sub, d) that produced each value */
        int cur = full, ck = bk, cs = bs;
        int *ops = malloc((size_t)g->n * sizeof(int));
        if (!ops) {
            rc = ps_errf(e, PS_ERUN, "piper: out of memory");
            goto done;
        }
        while (cur != 0 && !rc) {
            double target = DP(cur, ck, cs);
            /* the value may have been carried over from fewer devices or a
             * smaller degree sum (the "at most" form); step down to where
             * a stage produced it */
            for (;;) {
                if (cs > 1 && DP(cur, ck, cs - 1) <= target)
                    cs--;
                else if (ck > 1 && DP(cur, ck - 1, cs) <= target)
                    ck--;
                else
                    break;
            }
            int found = 0;
            /* all sub-ideals again */
            int top = 0;
            stack[top++] = cur;
            stamp[cur] = -(cur + 1);
            while (top && !found) {
                int x = stack[--top];
                for (int k2 = p.sub_off[x]; k2 < p.sub_off[x + 1] && !found; k2++) {
                    int sub = p.sub[k2];
                    if (stamp[sub] == -(cur + 1))
                        continue;
                    stamp[sub] = -(cur + 1);
                    stack[top++] = sub;
                    double comp, par, cut, a, bb;
                    stage_terms(&c, cur, sub, &comp, &par, &cut, &a, &bb);
                    for (int d = 1; d <= ck && d <= cs && !found; d++) {
                        if (mbs % d)
                            continue;
                        int y = pp_ceil_div(cs, d);
                        if (a * y + bb > c.cap)
                            continue;
                        double ld = load_of(&c, comp, par, cut, d);
                        double v = DP(sub, ck - d, cs - d);
                        if (ld > v)
                            v = ld;
                        if (fabs(target - v) < 1e-9 * (1 + fabs(target))) {
                            found = 1;
                            int no = 0;
                            const pp_word *bi = p.bits + (size_t)cur * w,
                                          *bj = p.bits + (size_t)sub * w;
                            for (int op = 0; op < g->n; op++)
                                if (pp_bit_get(bi, op) && !pp_bit_get(bj, op))
                                    ops[no++] = op;
                            rc = pp_presult_add_stage(r, ops, no, b, d, 0, e);
                            cur = sub;
                            ck -= d;
                            cs -= d;
                        }
                    }
                }
            }
            if (!found && !rc)
                rc = ps_errf(e, PS_ERUN, "piper: reconstruction failed");
        }
        free(ops);
    }
#undef DP
#undef DROPS
done:
    free(dp);
    free(drops);
    free(rowchg);
    free(rowmax);
    free(order);
    free(stamp);
    free(stack);
    free(tps);
    pideals_free(&p);
    return rc;
}
