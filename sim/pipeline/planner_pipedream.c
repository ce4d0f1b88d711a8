/* PipeDream's partitioner (Narayanan et al., SOSP'19), as its
 * optimizer/optimizer_graph_hierarchical.py computes it with one level
 * (final_level, i = 0), re-derived here in C.
 *
 * States.  The DAG is linearized into states, each a downset D of ops
 * (everything up to an antichain).  PipeDream starts from the first source
 * and moves from D to D ∪ down(y) for any op y outside D with a direct
 * predecessor in D (its next_antichains / augmented antichains come to
 * exactly that); the states are every downset reachable that way, ordered
 * by size.  On graphs with several sources (one input per branch) that
 * start leaves the other inputs to join only through a consumer, lumping
 * whole branches into one stage; unless pd_first_source_only asks for that
 * literal behaviour, every source is a start and a source may be added
 * like any op (as if one zero-cost input fed them all).  A stage is the difference of a state j and any state k that
 * reaches j (an ancestor in that state DAG).  PP_PD_STATES_TOPO keeps only
 * the prefixes of one topological order (a chain of n states), which is
 * what a sequential pipeline over a linearized model sees and what the
 * GraphPipe paper's complexity argument assumes ("one chain of b*n ops").
 *
 * Recurrence (m = machines - 1, 0-based like the Python):
 *   A[j][m]  = (C_j + 4 m W_j / (BW (m+1))) / (m+1)          all in one stage
 *   A[j][m]  = min over ancestors k, 1 <= m' <= m of
 *              max(A[k][m-m'], (C_kj + 4 (m'-1) W_kj / (BW m')) / m'
 *                  [, 2 a_k / (BW m'), 2 a_j / (BW m') when j is not last])
 * C = forward + backward compute of the ops at b samples (one replica takes
 * whole micro-batches; replicas take turns), W = parameter bytes, a = the
 * output activations of the state's augmented antichain.  The transfer
 * terms enter only with activation compression configured (PipeDream's
 * default leaves them out: pd_activation_comm = 0).  The memory check
 * (--use_memory_constraint) drops stages whose stash
 * ceil((M - (m+1)) / m') (act + W) exceeds the memory.  Ties keep the first
 * candidate found (strict <), as the Python does; the bottleneck value does
 * not depend on that.
 *
 * Beyond 20000 states (pd_window) the same optimum comes from the C-window
 * search below (pd_window_dp; docs/peer-graphs.md has the argument). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "sim/pipeline/planner_impl.h"

typedef struct pdst {
    size_t S, cap;
    size_t words;
    pp_word *bits;   /* S * words */
    double *comp, *par, *act, *oact;
    /* reverse transitions (predecessor states) in CSR after build */
    int *pred_off, *pred;
} pdst;

typedef struct pdentry {
    double v;     /* NAN = None */
    int k;        /* split state, -1 = none */
    short km;     /* machines index of the rest (m - m') */
    short used;   /* machines of the last stage (optimal_num_machines) */
} pdentry;

static void pdst_free(pdst *s)
{
    free(s->bits);
    free(s->comp);
    free(s->par);
    free(s->act);
    free(s->oact);
    free(s->pred_off);
    free(s->pred);
    memset(s, 0, sizeof *s);
}

static int pdst_grow(pdst *s, ps_err *e)
{
    if (s->S < s->cap)
        return 0;
    size_t nc = s->cap ? s->cap * 2 : 256;
    pp_word *b = realloc(s->bits, nc * s->words * sizeof *b);
    if (!b)
        return ps_errf(e, PS_ERUN, "pipedream: out of memory (states)");
    s->bits = b;
    double **arr[] = {&s->comp, &s->par, &s->act, &s->oact};
    for (int i = 0; i < 4; i++) {
        double *a = realloc(*arr[i], nc * sizeof(double));
        if (!a)
            return ps_errf(e, PS_ERUN, "pipedream: out of memory (states)");
        *arr[i] = a;
    }
    s->cap = nc;
    return 0;
}

/* PipeDream's augmented antichain of a downset: its maximal ops, plus every
 * ancestor p of a maximal op a that has an out-edge to an op outside
 * anc(a) ∪ {a}.  The state's output activation is the sum over it. */
static double aug_out_bytes(pp_pgraph *g, const pp_word *D, pp_word *mark)
{
    size_t w = g->words;
    memset(mark, 0, w * sizeof *mark);
    double bytes = 0;
    for (int a = 0; a < g->n; a++) {
        if (!pp_bit_get(D, a))
            continue;
        int maximal = 1;
        for (int k = g->succ_off[a]; k < g->succ_off[a + 1] && maximal; k++)
            maximal = !pp_bit_get(D, g->succ[k]);
        if (!maximal)
            continue;
        if (!pp_bit_get(mark, a)) {
            pp_bit_set(mark, a);
            bytes += g->out[a];
        }
        const pp_word *anc = g->anc + (size_t)a * w;
        for (int p = 0; p < g->n; p++) {
            if (!pp_bit_get(anc, p) || pp_bit_get(mark, p))
                continue;
            for (int k = g->succ_off[p]; k < g->succ_off[p + 1]; k++) {
                int o = g->succ[k];
                if (o != a && !pp_bit_get(anc, o)) {
                    pp_bit_set(mark, p);
                    bytes += g->out[p];
                    break;
                }
            }
        }
    }
    return bytes;
}

typedef struct edge2 {
    int from, to;
} edge2;

/* Enumerate the antichain states.  Returns 0 and *over = 1 when more than
 * `limit` states exist (nothing else built then). */
static int build_antichain(pp_pgraph *g, long limit, int first_only, pdst *s, int *over,
                           ps_err *e)
{
    size_t w = g->words;
    pp_bitset_set h = {0};
    edge2 *ed = NULL;
    size_t ned = 0, caped = 0;
    pp_word *nb = malloc(w * sizeof *nb);
    int rc = 0;
    *over = 0;
    if (!nb)
        return ps_errf(e, PS_ERUN, "pipedream: out of memory");
    /* seeds: the first source; or every source (a virtual input before them,
     * merged into the first stage) */
    for (int i = 0; i < g->n; i++) {
        int v = g->topo[i];
        if (g->pred_off[v + 1] != g->pred_off[v])
            continue;
        if (i > 0 && first_only)
            break;
        if ((rc = pdst_grow(s, e)))
            goto done;
        pp_word *d = s->bits + s->S * w;
        memset(d, 0, w * sizeof *d);
        pp_bit_set(d, v);
        if ((rc = pp_bitset_set_insert(&h, s->bits, s->words, (int)s->S++, "pipedream", e)))
            goto done;
        if (first_only)
            break;
    }
    for (size_t cur = 0; cur < s->S; cur++) {
        for (int y = 0; y < g->n; y++) {
            const pp_word *D = s->bits + cur * w;
            if (pp_bit_get(D, y))
                continue;
            int haspred = 0, npred = g->pred_off[y + 1] - g->pred_off[y];
            for (int k = g->pred_off[y]; k < g->pred_off[y + 1] && !haspred; k++)
                haspred = pp_bit_get(D, g->pred[k]);
            if (!haspred && (first_only || npred > 0))
                continue;
            const pp_word *an = g->anc + (size_t)y * w;
            for (size_t x = 0; x < w; x++)
                nb[x] = D[x] | an[x];
            pp_bit_set(nb, y);
            int idx = pp_bitset_set_find(&h, s->bits, s->words, nb);
            if (idx < 0) {
                if ((long)s->S >= limit) {
                    *over = 1;
                    goto done;
                }
                if ((rc = pdst_grow(s, e)))
                    goto done;
                idx = (int)s->S;
                memcpy(s->bits + (size_t)idx * w, nb, w * sizeof *nb);
                s->S++;
                if ((rc = pp_bitset_set_insert(&h, s->bits, s->words, idx, "pipedream", e)))
                    goto done;
            }
            if (ned == caped) {
                caped = caped ? caped * 2 : 1024;
                edge2 *ne = realloc(ed, caped * sizeof *ne);
                if (!ne) {
                    rc = ps_errf(e, PS_ERUN, "pipedream: out of memory (state edges)");
                    goto done;
                }
                ed = ne;
            }
            ed[ned++] = (edge2){(int)cur, idx};
        }
    }
    /* reverse CSR */
    s->pred_off = calloc(s->S + 1, sizeof(int));
    s->pred = malloc((ned + 1) * sizeof(int));
    if (!s->pred_off || !s->pred) {
        rc = ps_errf(e, PS_ERUN, "pipedream: out of memory (state edges)");
        goto done;
    }
    for (size_t i = 0; i < ned; i++)
        s->pred_off[ed[i].to + 1]++;
    for (size_t i = 0; i < s->S; i++)
        s->pred_off[i + 1] += s->pred_off[i];
    {
        int *fill = calloc(s->S, sizeof(int));
        if (!fill) {
            rc = ps_errf(e, PS_ERUN, "pipedream: out of memory");
            goto done;
        }
        for (size_t i = 0; i < ned; i++)
            s->pred[s->pred_off[ed[i].to] + fill[ed[i].to]++] = ed[i].from;
        free(fill);
    }
done:
    free(nb);
    pp_bitset_set_free(&h);
    free(ed);
    return rc;
}

/* State order for the DP: by size (transitions only add ops). */
typedef struct szkey {
    int size, idx;
} szkey;

static int cmp_sz(const void *a, const void *b)
{
    const szkey *x = a, *y = b;
    if (x->size != y->size)
        return (x->size > y->size) - (x->size < y->size);
    return (x->idx > y->idx) - (x->idx < y->idx);
}


/* ---- the C-window search (exact; PipeDream's default settings) ----
 *
 * Two facts make the O(S^2 M^2) recurrence above prunable without changing
 * its optimum:
 *  (1) the ancestors of a state in the state DAG are exactly the states that
 *      are proper subsets of it (from k, add a minimal op of j \ k with a
 *      predecessor in k — one exists on j's own path from the start — and
 *      repeat), so candidates can be drawn from all states by a subset test;
 *  (2) a stage on m' machines takes at least its compute / m' (the
 *      all-reduce term is >= 0), and A[k][x] >= C_k / (x+1) (the bottleneck
 *      is at least the average over the x+1 machines, every plan using all of
 *      them).  So for (j, m, m') only splits k with
 *          C_j - m' v < C_k < (x+1) v,   x = m - m',
 *      can beat the best value v found so far.
 * States are sorted by C once; each (j, m, m') starts at the balanced split
 * C_k = C_j (x+1)/(m+1) and scans down and up until those bounds (which
 * shrink as v falls) stop it.  Only strictly better candidates replace the
 * incumbent (the Python's rule); the minimum is the reference loops' (the
 * tests compare the two on every peer profile and on random DAGs). */
typedef struct cpair {
    double c;
    int pos;
} cpair;

static int cmp_cpair(const void *a, const void *b)
{
    const cpair *x = a, *y = b;
    if (x->c != y->c)
        return (x->c > y->c) - (x->c < y->c);
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static inline int bits_subset(const pp_word *a, const pp_word *b, size_t w)
{
    for (size_t i = 0; i < w; i++)
        if (a[i] & ~b[i])
            return 0;
    return 1;
}

/* First index i in [from, hi] whose leaf holds a value < v (a min segment
 * tree t over P leaves, root 1), or -1. */
static long seg_next_below(const double *t, size_t P, size_t from, size_t hi, double v)
{
    if (from > hi)
        return -1;
    size_t i = from + P;
    while (!(t[i] < v)) {
        while (i & 1)
            i >>= 1; /* a right child: up */
        if (i == 0)
            return -1;
        i++; /* the subtree to the right */
        size_t l = i;
        while (l < P)
            l <<= 1;
        if (l - P > hi)
            return -1;
    }
    while (i < P) {
        i <<= 1;
        if (!(t[i] < v))
            i++;
    }
    return i - P <= hi ? (long)(i - P) : -1;
}

/* Last index i in [lo, from] whose leaf holds a value < v, or -1. */
static long seg_prev_below(const double *t, size_t P, size_t lo, size_t from, double v)
{
    if (from < lo)
        return -1;
    size_t i = from + P;
    while (!(t[i] < v)) {
        while (i > 1 && !(i & 1))
            i >>= 1; /* a left child: up */
        if (i <= 1)
            return -1;
        i--; /* the subtree to the left */
        size_t r = i;
        while (r < P)
            r = 2 * r + 1;
        if (r - P < lo)
            return -1;
    }
    while (i < P) {
        i = 2 * i + 1;
        if (!(t[i] < v))
            i--;
    }
    return i - P >= lo ? (long)(i - P) : -1;
}

static void seg_set(double *t, size_t P, size_t i, double v)
{
    i += P;
    t[i] = v;
    for (i >>= 1; i; i >>= 1)
        t[i] = t[2 * i] < t[2 * i + 1] ? t[2 * i] : t[2 * i + 1];
}

static int pd_window_dp(const pdst *s, const szkey *ord, size_t S, int M, double bw,
                        pdentry *A, long long *work, double tlimit, size_t *done, ps_err *e)
{
    size_t w = s->words;
    size_t P = 1;
    while (P < S)
        P <<= 1;
    cpair *cp = malloc(S * sizeof *cp);
    int *cpos = malloc(S * sizeof *cpos); /* size position -> C position */
    double *tree = malloc((size_t)M * 2 * P * sizeof *tree);
    if (!cp || !cpos || !tree) {
        free(cp);
        free(cpos);
        free(tree);
        return ps_errf(e, PS_ERUN, "pipedream: out of memory (%zu states x %d machines)", S, M);
    }
    for (size_t i = 0; i < (size_t)M * 2 * P; i++)
        tree[i] = INFINITY;
    for (size_t i = 0; i < S; i++)
        cp[i] = (cpair){s->comp[ord[i].idx], (int)i};
    qsort(cp, S, sizeof *cp, cmp_cpair);
    for (size_t i = 0; i < S; i++)
        cpos[cp[i].pos] = (int)i;
    double t0 = ps_now_s();
    long long wk = 0;
    *done = S;
    for (size_t jj = 0; jj < S; jj++) {
        int j = ord[jj].idx;
        const pp_word *dj = s->bits + (size_t)j * w;
        double Cj = s->comp[j], Pj = s->par[j];
        pdentry *Aj = A + jj * (size_t)M;
        for (int m = 0; m < M; m++) {
            double dp = (4.0 * m * Pj) / (bw * (m + 1));
            Aj[m] = (pdentry){(Cj + dp) / (m + 1), -1, 0, (short)(m + 1)};
        }
        /* the window's top: the last state with C <= C_j */
        size_t lo = 0, hi = S;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cp[mid].c <= Cj)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t top = lo; /* states [0, top) have C <= C_j */
        for (int m = 1; m < M && top > 0; m++) {
            pdentry best = Aj[m];
            double v = best.v;
            for (int mp = 1; mp <= m; mp++) {
                int x = m - mp;
                const double *tx = tree + (size_t)x * 2 * P;
                /* from the balanced split C_j (x+1)/(m+1) up to C_j, then
                 * down from it while C_j - C_k < m' v */
                double target = Cj * (x + 1) / (m + 1);
                size_t a = 0, b2 = top;
                while (a < b2) {
                    size_t mid = (a + b2) / 2;
                    if (cp[mid].c < target)
                        a = mid + 1;
                    else
                        b2 = mid;
                }
                size_t mid0 = a;
                for (int dir = 1; dir >= 0; dir--) {
                    long i = dir ? (long)mid0 : (long)mid0 - 1;
                    for (;;) {
                        if (dir)
                            i = i < (long)top ? seg_next_below(tx, P, (size_t)i, top - 1, v) : -1;
                        else
                            i = i >= 0 ? seg_prev_below(tx, P, 0, (size_t)i, v) : -1;
                        if (i < 0)
                            break;
                        double ck = cp[i].c;
                        int kk = cp[i].pos;
                        int k = ord[kk].idx;
                        i += dir ? 1 : -1;
                        if ((Cj - ck) / mp >= v) {
                            if (dir)
                                continue;
                            break; /* going down the gap only grows */
                        }
                        if (!bits_subset(s->bits + (size_t)k * w, dj, w))
                            continue;
                        wk++;
                        double lc = Cj - s->comp[k], lp = Pj - s->par[k];
                        double last = (lc + (4.0 * (mp - 1) * lp) / (bw * mp)) / mp;
                        double prev = A[(size_t)kk * M + x].v;
                        double pt = prev > last ? prev : last;
                        if (pt < v) {
                            v = pt;
                            best = (pdentry){pt, kk, (short)x, (short)mp};
                        }
                    }
                }
            }
            Aj[m] = best;
        }
        for (int m = 0; m < M; m++)
            seg_set(tree + (size_t)m * 2 * P, P, (size_t)cpos[jj], Aj[m].v);
        if (tlimit > 0 && (jj & 255) == 0 && ps_now_s() - t0 > tlimit) {
            *done = jj + 1;
            break;
        }
    }
    *work = wk;
    free(cp);
    free(cpos);
    free(tree);
    return 0;
}

int pp_plan_pipedream_b(pp_pgraph *g, const pp_pcluster *pc, const pp_popts *o, int b,
                        pp_presult *r, ps_err *e)
{
    r->sequential = 1;
    if (o->pd_cost == PP_PD_COST_PLANSIM) {
        int rc = pp_plan_linear_b(g, pc, o, b, r, e);
        r->pd_states_used = PP_PD_STATES_TOPO;
        r->sequential = 1;
        return rc;
    }
    int rc = pp_pg_closure(g, e);
    if (rc)
        return rc;
    r->objective_name = "bottleneck_stage_time_s";
    size_t w = g->words;
    int n = g->n, M = pc->devices;
    if (M > 32767)
        return ps_errf(e, PS_EINPUT, "pipedream: %d machines is too many", M);
    double bw = o->pd_bandwidth_Bps > 0 ? o->pd_bandwidth_Bps : pc->p2p.beta_bytes_per_s;
    if (!(bw > 0))
        return ps_errf(e, PS_EINPUT, "pipedream: needs a bandwidth (cluster link or "
                                     "pd_bandwidth_Bps)");
    double memsz = o->pd_memory_bytes > 0 ? o->pd_memory_bytes : pc->mem_bytes;
    int memc = o->pd_memory_constraint && memsz > 0 && isfinite(memsz);
    long maxst = o->pd_max_states > 0 ? o->pd_max_states : 250000;
    long autost = o->pd_auto_states > 0 ? o->pd_auto_states : 20000;
    pdst s = {0};
    s.words = w;
    int mode = o->pd_states;
    if (mode == PP_PD_STATES_AUTO || mode == PP_PD_STATES_ANTICHAIN) {
        int over = 0;
        long lim = mode == PP_PD_STATES_AUTO ? (autost < maxst ? autost : maxst) : maxst;
        int first_only = o->pd_first_source_only;
        if (first_only) {
            /* PipeDream's start at the first source reaches every op only on
             * a connected graph; otherwise (an isolated node, a second
             * component) start from every source instead, and say so */
            pp_word *R = calloc(w, sizeof *R);
            if (!R)
                return ps_errf(e, PS_ERUN, "pipedream: out of memory");
            pp_bit_set(R, g->topo[0]);
            int grew = 1, cnt = 1;
            while (grew) {
                grew = 0;
                for (int y = 0; y < n; y++) {
                    if (pp_bit_get(R, y))
                        continue;
                    int hp = 0;
                    for (int k = g->pred_off[y]; k < g->pred_off[y + 1] && !hp; k++)
                        hp = pp_bit_get(R, g->pred[k]);
                    if (!hp)
                        continue;
                    const pp_word *an = g->anc + (size_t)y * w;
                    for (size_t x = 0; x < w; x++)
                        R[x] |= an[x];
                    pp_bit_set(R, y);
                    grew = 1;
                }
            }
            cnt = 0;
            for (int v = 0; v < n; v++)
                cnt += pp_bit_get(R, v);
            free(R);
            if (cnt < n) {
                first_only = 0;
                snprintf(r->note, sizeof r->note,
                         "pipedream: %d of %d ops are not reachable from the first source %s "
                         "(a disconnected graph); states start from every source",
                         n - cnt, n, pp_pgraph_op_name(g, g->topo[0]));
            }
        }
        if ((rc = build_antichain(g, lim, first_only, &s, &over, e))) {
            pdst_free(&s);
            return rc;
        }
        if (over) {
            pdst_free(&s);
            s.words = w;
            if (mode == PP_PD_STATES_ANTICHAIN) {
                r->feasible = 0;
                r->budget_exceeded = 1;
                r->states = lim;
                snprintf(r->note, sizeof r->note,
                         "pipedream: more than %ld antichain states (the number grows "
                         "exponentially with parallel branches); raise pd_max_states or use "
                         "the linearized states",
                         lim);
                return 0;
            }
            mode = PP_PD_STATES_TOPO;
            snprintf(r->note, sizeof r->note,
                     "pipedream: more than %ld antichain states; linearized to the op order "
                     "(%d states)",
                     lim, n);
        } else {
            mode = PP_PD_STATES_ANTICHAIN;
        }
    }
    if (mode == PP_PD_STATES_TOPO) {
        s.S = 0;
        for (int j = 0; j < n; j++) {
            if ((rc = pdst_grow(&s, e))) {
                pdst_free(&s);
                return rc;
            }
            pp_word *d = s.bits + (size_t)j * w;
            if (j)
                memcpy(d, d - w, w * sizeof *d);
            else
                memset(d, 0, w * sizeof *d);
            pp_bit_set(d, g->topo[j]);
            s.S++;
        }
    }
    r->pd_states_used = mode;
    size_t S = s.S;
    /* sums per state at b samples per replica */
    const double *f, *bwd;
    if ((rc = pp_pgraph_times(g, b, &f, &bwd, e))) {
        pdst_free(&s);
        return rc;
    }
    szkey *ord = malloc(S * sizeof *ord);
    int *pos = malloc(S * sizeof *pos);
    pp_word *mark = malloc(w * sizeof *mark);
    pdentry *A = malloc(S * (size_t)M * sizeof *A);
    int *stamp = calloc(S, sizeof(int)), *stack = malloc(S * sizeof(int));
    pdentry *cand = malloc((size_t)M * sizeof *cand);
    double *L = malloc(((size_t)M + 1) * sizeof *L);
    double *sufmax = malloc(((size_t)M + 2) * sizeof *sufmax);
    char *mono = malloc(S);
    if (!ord || !pos || !mark || !A || !stamp || !stack || !cand || !L || !mono || !sufmax) {
        rc = ps_errf(e, PS_ERUN, "pipedream: out of memory (%zu states x %d machines)", S, M);
        goto done;
    }
    for (size_t i = 0; i < S; i++) {
        const pp_word *d = s.bits + i * w;
        int cnt = 0;
        double c = 0, p = 0, a = 0;
        for (int v = 0; v < n; v++)
            if (pp_bit_get(d, v)) {
                cnt++;
                c += f[v] + bwd[v];
                p += g->param[v];
                a += g->act[v] * b;
            }
        s.comp[i] = c;
        s.par[i] = p;
        s.act[i] = a;
        s.oact[i] = o->pd_activation_comm ? aug_out_bytes(g, d, mark) * b : 0;
        ord[i] = (szkey){cnt, (int)i};
    }
    qsort(ord, S, sizeof *ord, cmp_sz);
    for (size_t i = 0; i < S; i++)
        pos[ord[i].idx] = (int)i;
    if (ord[S - 1].size != n) {
        int missing = -1;
        const pp_word *d = s.bits + (size_t)ord[S - 1].idx * w;
        for (int v = 0; v < n && missing < 0; v++)
            if (!pp_bit_get(d, v))
                missing = v;
        rc = ps_errf(e, PS_EINPUT,
                     "pipedream: op %s is never reached from the first source %s (PipeDream "
                     "starts its states there); connect it or drop it",
                     pp_pgraph_op_name(g, missing), pp_pgraph_op_name(g, g->topo[0]));
        goto done;
    }
    double t0 = ps_now_s();
    long long work = 0;
    int maxm_base = o->pd_straight ? 1 : M;
    int use_window = (o->pd_window > 0 || (o->pd_window == 0 && S > 20000)) && !memc &&
                     !o->pd_activation_comm && !o->pd_straight && !o->pd_use_fewer_machines &&
                     !o->pd_reference;
    if (use_window) {
        size_t done = S;
        if ((rc = pd_window_dp(&s, ord, S, M, bw, A, &work, o->time_limit_s, &done, e)))
            goto done;
        if (done < S) {
            r->feasible = 0;
            snprintf(r->note, sizeof r->note,
                     "pipedream: time limit %g s reached after %zu of %zu states",
                     o->time_limit_s, done, S);
            r->states = (long long)S;
            r->work = work;
            goto done;
        }
    }
    for (size_t jj = 0; jj < S && !rc && !use_window; jj++) {
        int j = ord[jj].idx;
        pdentry *Aj = A + (size_t)jj * M;
        /* base: the whole state in one stage on m+1 machines */
        for (int m = 0; m < M; m++) {
            Aj[m] = (pdentry){NAN, -1, 0, 0};
            if (m >= maxm_base)
                continue;
            if (memc) {
                double stash = ceil((double)(M - (m + 1)) / (m + 1)) * (s.act[j] + s.par[j]);
                if (stash > memsz)
                    continue;
            }
            double dp = (4.0 * m * s.par[j]) / (bw * (m + 1));
            Aj[m] = (pdentry){(s.comp[j] + dp) / (m + 1), -1, 0, (short)(m + 1)};
        }
        mono[jj] = 1;
        for (int m = 0; m < M && mono[jj]; m++)
            if (isnan(Aj[m].v) || (m > 0 && Aj[m].v > Aj[m - 1].v))
                mono[jj] = 0;
        if (jj == 0)
            continue;
        /* ancestors of j in the state DAG */
        int nanc = 0;
        if (mode == PP_PD_STATES_TOPO) {
            for (size_t k = 0; k < jj; k++)
                stack[nanc++] = (int)k; /* positions */
        } else {
            /* breadth first over the reverse transitions: nearer ancestors
             * (smaller last stages) come first, which sets low candidates
             * early for the pruning below */
            int head = 0, tail = 0;
            stamp[j] = (int)jj + 1;
            stack[tail++] = j;
            while (head < tail) {
                int x = stack[head++];
                for (int k = s.pred_off[x]; k < s.pred_off[x + 1]; k++) {
                    int p = s.pred[k];
                    if (stamp[p] != (int)jj + 1) {
                        stamp[p] = (int)jj + 1;
                        stack[tail++] = p;
                    }
                }
            }
            for (int q = 1; q < tail; q++)
                stack[nanc++] = pos[stack[q]];
        }
        int last_state = jj == S - 1;
        /* Candidates first (k outer, so a stage's terms are computed once per
         * ancestor rather than once per machine count), then each m settles
         * like the Python: base, the fewer-machines option, then a candidate
         * only if strictly better.  The minimum does not depend on the order
         * the candidates are met. */
        for (int m = 0; m < M; m++)
            cand[m] = (pdentry){INFINITY, -1, 0, 0};
        int maxmp_all = o->pd_straight ? 1 : M - 1;
        for (int a = 0; a < nanc; a++) {
            int kk = stack[a], k = ord[kk].idx;
            const pdentry *Ak = A + (size_t)kk * M;
            double lc = s.comp[j] - s.comp[k], lp = s.par[j] - s.par[k];
            double la = s.act[j] - s.act[k];
            int lmono = 1;
            for (int mp = 1; mp <= maxmp_all; mp++) {
                double last = (lc + (4.0 * (mp - 1) * lp) / (bw * mp)) / mp;
                if (o->pd_activation_comm) {
                    double tin = 2.0 * s.oact[k] / (bw * mp);
                    if (tin > last)
                        last = tin;
                    if (!last_state) {
                        double tout = 2.0 * s.oact[j] / (bw * mp);
                        if (tout > last)
                            last = tout;
                    }
                }
                L[mp] = last;
                if (mp > 1 && last > L[mp - 1])
                    lmono = 0;
            }
            if (!memc && !o->pd_straight && lmono && mono[kk] && !o->pd_reference) {
                /* A[k][m - m'] never falls and the last stage's time never
                 * rises as m' grows, so the best m' sits where they cross,
                 * and the crossing only moves right as m grows: one sweep
                 * gives the same minimum as trying every m'. */
                int c = 1;
                for (int m = 1; m < M; m++) {
                    while (c <= m && Ak[m - c].v < L[c])
                        c++;
                    for (int mp = c - 1; mp <= c; mp++) {
                        if (mp < 1 || mp > m)
                            continue;
                        work++;
                        double prev = Ak[m - mp].v;
                        double pt = prev > L[mp] ? prev : L[mp];
                        if (pt < cand[m].v)
                            cand[m] = (pdentry){pt, kk, (short)(m - mp), (short)mp};
                    }
                }
                continue;
            }
            /* suffix max of the current candidates: a last stage no
             * faster than every candidate from m = m' on cannot help */
            sufmax[M] = -INFINITY;
            for (int m = M - 1; m >= 1; m--)
                sufmax[m] = cand[m].v > sufmax[m + 1] ? cand[m].v : sufmax[m + 1];
            for (int mp = 1; mp <= maxmp_all; mp++) {
                double last = L[mp];
                if (last >= sufmax[mp] && !o->pd_reference)
                    continue;
                for (int m = mp; m < M; m++) {
                    work++;
                    if (last >= cand[m].v && !o->pd_reference)
                        continue; /* ties keep the first found */
                    if (memc) {
                        double stash = (la + lp) * ceil((double)(M - (m + 1)) / mp);
                        if (stash > memsz)
                            continue;
                    }
                    double prev = Ak[m - mp].v;
                    if (isnan(prev))
                        continue;
                    double pt = prev > last ? prev : last;
                    if (pt < cand[m].v)
                        cand[m] = (pdentry){pt, kk, (short)(m - mp), (short)mp};
                }
            }
        }
        for (int m = 1; m < M; m++) {
            pdentry best = Aj[m];
            if (o->pd_use_fewer_machines && (isnan(best.v) || Aj[m - 1].v < best.v))
                best = Aj[m - 1];
            if (cand[m].k >= 0 && (isnan(best.v) || best.v > cand[m].v))
                best = cand[m];
            Aj[m] = best;
        }
        mono[jj] = 1;
        for (int m = 0; m < M && mono[jj]; m++)
            if (isnan(Aj[m].v) || (m > 0 && Aj[m].v > Aj[m - 1].v))
                mono[jj] = 0;
        if (o->time_limit_s > 0 && ps_now_s() - t0 > o->time_limit_s) {
            r->feasible = 0;
            snprintf(r->note, sizeof r->note,
                     "pipedream: time limit %g s reached after %zu of %zu states",
                     o->time_limit_s, jj + 1, S);
            r->states = (long long)S;
            r->work = work;
            goto done;
        }
    }
    if (rc)
        goto done;
    r->states = (long long)S;
    r->work = work;
    {
        const pdentry *fin = &A[(S - 1) * (size_t)M + (M - 1)];
        if (isnan(fin->v)) {
            r->feasible = 0;
            snprintf(r->note, sizeof r->note,
                     "pipedream: no partition satisfies its memory constraint with b=%d", b);
            goto done;
        }
        r->feasible = 1;
        r->microbatch = b;
        r->objective = fin->v;
        r->objective_tps_s = fin->v / b;
        /* walk the splits back (analyze_partitioning) */
        int jj = (int)S - 1, m = M - 1;
        int *ops = malloc((size_t)n * sizeof(int));
        if (!ops) {
            rc = ps_errf(e, PS_ERUN, "pipedream: out of memory");
            goto done;
        }
        for (;;) {
            const pdentry *en = &A[(size_t)jj * M + m];
            const pp_word *dj = s.bits + (size_t)ord[jj].idx * w;
            const pp_word *dk = en->k >= 0 ? s.bits + (size_t)ord[en->k].idx * w : NULL;
            int no = 0;
            for (int v = 0; v < n; v++)
                if (pp_bit_get(dj, v) && !(dk && pp_bit_get(dk, v)))
                    ops[no++] = v;
            if ((rc = pp_presult_add_stage(r, ops, no, b, en->used, 0, e)))
                break;
            if (en->k < 0)
                break;
            int nk = en->k, nm = en->km;
            jj = nk;
            m = nm;
        }
        free(ops);
        /* stages were found last first: put them in pipeline order */
        for (int a = 0, z = r->nstages - 1; a < z; a++, z--) {
            pp_pstage t = r->stages[a];
            r->stages[a] = r->stages[z];
            r->stages[z] = t;
        }
    }
done:
    free(ord);
    free(pos);
    free(mark);
    free(A);
    free(stamp);
    free(stack);
    free(cand);
    free(L);
    free(sufmax);
    free(mono);
    pdst_free(&s);
    return rc;
}
