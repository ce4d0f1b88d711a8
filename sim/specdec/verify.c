/* sim/specdec/verify.c: greedy, multi-step speculative sampling (MSS),
 * sampling without replacement (SWOR) and naive verification of a token
 * tree; drafting samplers (iid, without replacement, top-k); a synthetic
 * context model and a tokens-per-step Monte Carlo (see verify.h). */
#include "sim/specdec/verify.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- row checks --------------------------------------------------------------------- */

/* Sum of a row; PS_EINPUT naming the row (`what` of node u) on a negative, NaN or infinite
 * entry or a zero total. */
static int row_total(const double *row, int V, const char *what, char sym, int u, double *tot,
                     ps_err *e)
{
    if (!row)
        return ps_errf(e, PS_EINPUT, "%s of node %d: row is NULL", what, u);
    /* four partial sums (the additions are latency-bound); NaN and negatives fail x >= 0 */
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int ok = 1, a = 0;
    for (; a + 4 <= V; a += 4) {
        ok &= (row[a] >= 0) & (row[a + 1] >= 0) & (row[a + 2] >= 0) & (row[a + 3] >= 0);
        s0 += row[a];
        s1 += row[a + 1];
        s2 += row[a + 2];
        s3 += row[a + 3];
    }
    for (; a < V; a++) {
        ok &= row[a] >= 0;
        s0 += row[a];
    }
    double s = (s0 + s1) + (s2 + s3);
    int bad = -1;
    if (!ok || !isfinite(s)) /* find the first offending entry */
        for (a = 0; a < V && bad < 0; a++)
            if (!(row[a] >= 0) || !isfinite(row[a]))
                bad = a;
    if (bad >= 0)
        return ps_errf(e, PS_EINPUT, "%s of node %d: %c[%d*V+%d] = %g (must be >= 0, finite)",
                       what, u, sym, u, bad, row[bad]);
    if (!(s > 0) || !isfinite(s))
        return ps_errf(e, PS_EINPUT, "%s of node %d: %c row sums to %g (needs positive mass)",
                       what, u, sym, s);
    *tot = s;
    return 0;
}

static int check_common(const sd_tree *t, int V, sd_verdict *out, ps_err *e)
{
    if (!t || !out)
        return ps_errf(e, PS_EINPUT, "verify: tree and verdict must not be NULL");
    if (V < 1)
        return ps_errf(e, PS_EINPUT, "verify: vocabulary size V = %d (must be >= 1)", V);
    return 0;
}

static int check_token(const sd_tree *t, int v, int V, ps_err *e)
{
    int32_t x = t->token[v];
    if (x < 0 || x >= V)
        return ps_errf(e, PS_EINPUT, "verify: token of node %d = %d out of range [0, %d)", v,
                       (int)x, V);
    return 0;
}

/* p' <- row / total */
static void set_norm(double *dst, const double *row, int V, double tot)
{
    double inv = 1.0 / tot;
    for (int a = 0; a < V; a++)
        dst[a] = row[a] * inv;
}

/* Accept a draft x with probability min(1, px/qx) (1 if qx = 0 < px, 0 if px = 0). */
static int accept_ratio(double px, double qx, sd_rng *r)
{
    if (!(px > 0))
        return 0;
    if (px >= qx)
        return 1;
    return sd_rng_u01(r) * qx < px;
}

/* p' <- norm(max(0, p' - qn)) where qn[a] = q[a] * qscale except removed tokens (count as 0).
 * Keeps p' if the residual has no mass (a rejection then had probability 0 in exact
 * arithmetic; guards rounding). */
static void residual(double *pr, const double *q, double qscale, const unsigned char *removed,
                     int V, double *tmp)
{
    double s0 = 0, s1 = 0;
    int a = 0;
    if (!removed) {
        for (; a + 2 <= V; a += 2) {
            double d0 = pr[a] - q[a] * qscale, d1 = pr[a + 1] - q[a + 1] * qscale;
            tmp[a] = d0 > 0 ? d0 : 0;
            tmp[a + 1] = d1 > 0 ? d1 : 0;
            s0 += tmp[a];
            s1 += tmp[a + 1];
        }
    }
    for (; a < V; a++) {
        double qa = (removed && removed[a]) ? 0.0 : q[a] * qscale;
        double d = pr[a] - qa;
        tmp[a] = d > 0 ? d : 0;
        s0 += tmp[a];
    }
    double s = s0 + s1;
    if (!(s > 0))
        return;
    double inv = 1.0 / s;
    for (a = 0; a < V; a++)
        pr[a] = tmp[a] * inv;
}

static void finish(sd_verdict *out, int acc, int32_t bonus)
{
    out->accepted = acc;
    out->token[acc] = bonus;
    out->bonus = bonus;
}

/* ---- greedy ------------------------------------------------------------------------- */

void sd_verify_greedy(const sd_tree *t, const int32_t *target_argmax, sd_verdict *out)
{
    int u = 0, acc = 0;
    while (acc < SD_MAX_PATH) {
        int32_t want = target_argmax[u];
        int next = -1;
        for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c])
            if (t->token[c] == want) {
                next = c;
                break;
            }
        if (next < 0)
            break;
        out->node[acc] = next;
        out->token[acc] = t->token[next];
        acc++;
        u = next;
    }
    finish(out, acc, target_argmax[u]);
}

/* ---- stochastic verifiers over row pointers ---------------------------------------- */

/* Scratch: on the stack for small vocabularies and trees (the common case in the simulator
 * and the tests, where a verification costs about a microsecond), else on the heap. */
#define SMALL_V 256
#define SMALL_N 256
typedef struct work {
    double *pr, *tmp;
    int32_t *kids;
    unsigned char *removed;
    int heap;
    double sbuf[2 * SMALL_V];
    int32_t skids[SMALL_N];
    unsigned char srem[SMALL_V];
} work;

static int work_alloc(work *w, int V, int n, ps_err *e)
{
    if (V <= SMALL_V && n <= SMALL_N) {
        w->heap = 0;
        w->pr = w->sbuf;
        w->tmp = w->sbuf + V;
        w->kids = w->skids;
        w->removed = w->srem;
        memset(w->removed, 0, (size_t)V);
        return 0;
    }
    w->heap = 1;
    w->pr = malloc(sizeof(double) * (size_t)V * 2);
    w->tmp = w->pr ? w->pr + V : NULL;
    w->kids = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    w->removed = calloc((size_t)V, 1);
    if (!w->pr || !w->kids || !w->removed) {
        free(w->pr);
        free(w->kids);
        free(w->removed);
        return ps_errf(e, PS_ERUN, "verify: out of memory (V = %d)", V);
    }
    return 0;
}

static void work_free(work *w)
{
    if (!w->heap)
        return;
    free(w->pr);
    free(w->kids);
    free(w->removed);
}

/* Where the p rows come from: an array of row pointers, or a getter called once per node
 * the verification reaches (sd_verify_mc_tokens computes rows lazily). */
typedef struct psrc {
    const double *const *arr;
    const double *(*get)(void *ctx, int u);
    void *ctx;
} psrc;

static inline const double *prow_of(const psrc *ps, int u)
{
    return ps->arr ? ps->arr[u] : ps->get(ps->ctx, u);
}

/* Load p' = normalised p row of node u. */
static int load_p(const psrc *ps, int V, int u, double *pr, ps_err *e)
{
    double tot;
    const double *row = prow_of(ps, u);
    if (row_total(row, V, "p row", 'p', u, &tot, e))
        return PS_EINPUT;
    set_norm(pr, row, V, tot);
    return 0;
}

static int draw_bonus(const double *pr, int V, sd_rng *r)
{
    int x = sd_rng_pick(r, pr, V, 1.0);
    return x < 0 ? 0 : x;
}

static int mss_impl(const sd_tree *t, int V, const psrc *prow, const double *const *qrow,
                    sd_rng *r, sd_verdict *out, ps_err *e)
{
    if (check_common(t, V, out, e))
        return PS_EINPUT;
    if (!prow || !qrow || !r)
        return ps_errf(e, PS_EINPUT, "verify (MSS): p rows, q rows and rng must not be NULL");
    work w;
    if (work_alloc(&w, V, t->n, e))
        return PS_ERUN;
    int u = 0, acc = 0, rc = 0;
    for (;;) {
        if ((rc = load_p(prow, V, u, w.pr, e)))
            goto done;
        if (acc >= SD_MAX_PATH)
            break;
        int k = 0;
        for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c])
            w.kids[k++] = c;
        int next = -1;
        const double *qlast = NULL;
        double qt = 1;
        /* uniformly random order: pick a random remaining child each time */
        while (k > 0) {
            int j = k == 1 ? 0 : (int)(sd_rng_u01(r) * k);
            if (j >= k)
                j = k - 1;
            int s = w.kids[j];
            w.kids[j] = w.kids[--k];
            if ((rc = check_token(t, s, V, e)))
                goto done;
            if (qrow[s] != qlast) { /* siblings usually share one drafter row */
                if ((rc = row_total(qrow[s], V, "q row", 'q', s, &qt, e)))
                    goto done;
                qlast = qrow[s];
            }
            int32_t x = t->token[s];
            double qs = 1.0 / qt;
            if (accept_ratio(w.pr[x], qrow[s][x] * qs, r)) {
                next = s;
                break;
            }
            residual(w.pr, qrow[s], qs, NULL, V, w.tmp);
        }
        if (next < 0)
            break;
        out->node[acc] = next;
        out->token[acc] = t->token[next];
        acc++;
        u = next;
    }
    finish(out, acc, draw_bonus(w.pr, V, r));
done:
    work_free(&w);
    return rc;
}

static int swor_impl(const sd_tree *t, int V, const psrc *prow, const double *const *qrow,
                    sd_rng *r, sd_verdict *out, ps_err *e)
{
    if (check_common(t, V, out, e))
        return PS_EINPUT;
    if (!prow || !qrow || !r)
        return ps_errf(e, PS_EINPUT, "verify (SWOR): p rows, q rows and rng must not be NULL");
    work w;
    if (work_alloc(&w, V, t->n, e))
        return PS_ERUN;
    int u = 0, acc = 0, rc = 0;
    for (;;) {
        if ((rc = load_p(prow, V, u, w.pr, e)))
            goto done;
        if (acc >= SD_MAX_PATH)
            break;
        int next = -1, nrem = 0;
        const double *qlast = NULL;
        double qt = 1;
        for (int s = t->first_child[u]; s >= 0; s = t->next_sib[s]) {
            if ((rc = check_token(t, s, V, e)))
                goto done;
            if (qrow[s] != qlast) {
                if ((rc = row_total(qrow[s], V, "q row", 'q', s, &qt, e)))
                    goto done;
                qlast = qrow[s];
            }
            /* q' = q row with the earlier siblings' tokens removed */
            const double *q = qrow[s];
            double live = qt;
            if (nrem > 0) {
                double rem = 0;
                for (int j = 0; j < nrem; j++)
                    rem += q[w.kids[j]];
                live = qt - rem;
                if (!(live > 1e-9 * qt)) { /* near exhaustion: sum exactly */
                    live = 0;
                    for (int a = 0; a < V; a++)
                        live += w.removed[a] ? 0.0 : q[a];
                }
            }
            if (!(live > 0)) {
                /* support exhausted: this child cannot have been drawn */
                continue;
            }
            int32_t x = t->token[s];
            double qs = 1.0 / live;
            double qx = w.removed[x] ? 0.0 : q[x] * qs;
            if (accept_ratio(w.pr[x], qx, r)) {
                next = s;
                break;
            }
            /* q' zeroes the removed tokens, but p' is already 0 there (each was rejected,
             * which leaves max(0, p' - q') = 0 at it), so the plain residual is the same */
            residual(w.pr, q, qs, NULL, V, w.tmp);
            if (!w.removed[x]) {
                w.removed[x] = 1;
                w.kids[nrem++] = x;
            }
        }
        for (int j = 0; j < nrem; j++)
            w.removed[w.kids[j]] = 0;
        if (next < 0)
            break;
        out->node[acc] = next;
        out->token[acc] = t->token[next];
        acc++;
        u = next;
    }
    finish(out, acc, draw_bonus(w.pr, V, r));
done:
    work_free(&w);
    return rc;
}

static int naive_impl(const sd_tree *t, int V, const psrc *prow, sd_rng *r, sd_verdict *out,
                      ps_err *e)
{
    if (check_common(t, V, out, e))
        return PS_EINPUT;
    if (!prow || !r)
        return ps_errf(e, PS_EINPUT, "verify (naive): p rows and rng must not be NULL");
    int u = 0, acc = 0;
    for (;;) {
        double tot;
        const double *row = prow_of(prow, u);
        if (row_total(row, V, "p row", 'p', u, &tot, e))
            return PS_EINPUT;
        int x = sd_rng_pick(r, row, V, tot);
        if (x < 0)
            x = 0;
        int next = -1;
        if (acc < SD_MAX_PATH)
            for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c])
                if (t->token[c] == x) {
                    next = c;
                    break;
                }
        if (next < 0) {
            finish(out, acc, x);
            return 0;
        }
        out->node[acc] = next;
        out->token[acc] = x;
        acc++;
        u = next;
    }
}

int sd_verify_mss_rows(const sd_tree *t, int V, const double *const *prow,
                       const double *const *qrow, sd_rng *r, sd_verdict *out, ps_err *e)
{
    psrc ps = {prow, NULL, NULL};
    return mss_impl(t, V, prow ? &ps : NULL, qrow, r, out, e);
}

int sd_verify_swor_rows(const sd_tree *t, int V, const double *const *prow,
                        const double *const *qrow, sd_rng *r, sd_verdict *out, ps_err *e)
{
    psrc ps = {prow, NULL, NULL};
    return swor_impl(t, V, prow ? &ps : NULL, qrow, r, out, e);
}

int sd_verify_naive_rows(const sd_tree *t, int V, const double *const *prow, sd_rng *r,
                         sd_verdict *out, ps_err *e)
{
    psrc ps = {prow, NULL, NULL};
    return naive_impl(t, V, prow ? &ps : NULL, r, out, e);
}

/* ---- contiguous-array wrappers ------------------------------------------------------ */

static const double **row_ptrs(const sd_tree *t, int V, const double *a, ps_err *e)
{
    const double **rows = malloc(sizeof(*rows) * (size_t)t->n);
    if (!rows) {
        ps_errf(e, PS_ERUN, "verify: out of memory (%d nodes)", t->n);
        return NULL;
    }
    for (int u = 0; u < t->n; u++)
        rows[u] = a + (size_t)u * (size_t)V;
    return rows;
}

static int arrays_ok(const sd_tree *t, int V, const double *p, sd_verdict *out, ps_err *e)
{
    if (check_common(t, V, out, e))
        return PS_EINPUT;
    if (!p)
        return ps_errf(e, PS_EINPUT, "verify: p must not be NULL");
    return 0;
}

int sd_verify_mss(const sd_tree *t, int V, const double *p, const double *q, sd_rng *r,
                  sd_verdict *out, ps_err *e)
{
    if (arrays_ok(t, V, p, out, e))
        return PS_EINPUT;
    if (!q)
        return ps_errf(e, PS_EINPUT, "verify (MSS): q must not be NULL");
    const double **pr = row_ptrs(t, V, p, e), **qr = pr ? row_ptrs(t, V, q, e) : NULL;
    int rc = (pr && qr) ? sd_verify_mss_rows(t, V, pr, qr, r, out, e) : PS_ERUN;
    free(pr);
    free(qr);
    return rc;
}

int sd_verify_swor(const sd_tree *t, int V, const double *p, const double *q, sd_rng *r,
                   sd_verdict *out, ps_err *e)
{
    if (arrays_ok(t, V, p, out, e))
        return PS_EINPUT;
    if (!q)
        return ps_errf(e, PS_EINPUT, "verify (SWOR): q must not be NULL");
    const double **pr = row_ptrs(t, V, p, e), **qr = pr ? row_ptrs(t, V, q, e) : NULL;
    int rc = (pr && qr) ? sd_verify_swor_rows(t, V, pr, qr, r, out, e) : PS_ERUN;
    free(pr);
    free(qr);
    return rc;
}

int sd_verify_naive(const sd_tree *t, int V, const double *p, sd_rng *r, sd_verdict *out,
                    ps_err *e)
{
    if (arrays_ok(t, V, p, out, e))
        return PS_EINPUT;
    const double **pr = row_ptrs(t, V, p, e);
    int rc = pr ? sd_verify_naive_rows(t, V, pr, r, out, e) : PS_ERUN;
    free(pr);
    return rc;
}

/* ---- drafting ----------------------------------------------------------------------- */

typedef struct dscratch {
    double *cum;         /* [V] cumulative weights */
    int *top;            /* [V] top-k indices */
    unsigned char *used; /* [V] */
    double *row;         /* [V] drafter row (sd_draft_tree) */
    int heap;
    double scum[SMALL_V], srow[SMALL_V];
    int stop[SMALL_V];
    unsigned char sused[SMALL_V];
} dscratch;

static int dscratch_alloc(dscratch *d, int V, ps_err *e)
{
    if (V <= SMALL_V) {
        d->heap = 0;
        d->cum = d->scum;
        d->row = d->srow;
        d->top = d->stop;
        d->used = d->sused;
        memset(d->used, 0, (size_t)V);
        return 0;
    }
    d->heap = 1;
    d->cum = malloc(sizeof(double) * (size_t)V * 2);
    d->row = d->cum ? d->cum + V : NULL;
    d->top = malloc(sizeof(int) * (size_t)V);
    d->used = calloc((size_t)V, 1);
    if (!d->cum || !d->top || !d->used) {
        free(d->cum);
        free(d->top);
        free(d->used);
        return ps_errf(e, PS_ERUN, "draft: out of memory (V = %d)", V);
    }
    return 0;
}

static void dscratch_free(dscratch *d)
{
    if (!d->heap)
        return;
    free(d->cum);
    free(d->top);
    free(d->used);
}

/* Index with cum[i-1] <= x < cum[i] (a positive-weight index); rounding overrun: the last
 * positive-weight index. */
static int cum_search(const double *cum, int V, double x)
{
    int lo, hi = V - 1;
    if (!(x < cum[V - 1])) {
        while (hi > 0 && cum[hi - 1] == cum[hi])
            hi--;
        return hi;
    }
    /* branch-free lower bound: first i with cum[i] > x */
    const double *b = cum;
    int n = V;
    while (n > 1) {
        int half = n >> 1;
        b += (ptrdiff_t)(half & -(int)(b[half - 1] <= x)); /* no branch to mispredict */
        n -= half;
    }
    lo = (int)(b - cum) + (*b <= x);
    return lo;
}

static int draft_children_buf(sd_tree *t, int u, int V, sd_draft_kind kind, const double *q,
                              sd_rng *r, dscratch *d, ps_err *e)
{
    int k = t->nchild[u];
    if (k == 0)
        return 0;
    if (kind != SD_DRAFT_IID && kind != SD_DRAFT_SWOR && kind != SD_DRAFT_TOPK)
        return ps_errf(e, PS_EINPUT, "draft: unknown draft kind %d", (int)kind);
    if (kind != SD_DRAFT_IID && k > V)
        return ps_errf(e, PS_EINPUT,
                       "draft: node %d has %d children but only V = %d distinct tokens exist "
                       "(without replacement / top-k)",
                       u, k, V);
    /* cumulative weights and the row check in one pass (TOPK: the check only) */
    double cs = 0;
    int ok = 1;
    for (int a = 0; a < V; a++) {
        ok &= q[a] >= 0;
        cs += q[a];
        d->cum[a] = cs;
    }
    if (!ok || !(cs > 0) || !isfinite(cs)) {
        double tot;
        if (!row_total(q, V, "draft row", 'q', u, &tot, e)) /* names the entry */
            ps_errf(e, PS_EINPUT, "draft row of node %d: total %g not positive and finite", u,
                    cs);
        return PS_EINPUT;
    }
    if (kind == SD_DRAFT_TOPK) {
        /* one pass keeping the k best, sorted by weight desc then id asc */
        int cnt = 0;
        for (int a = 0; a < V; a++) {
            if (cnt == k && !(q[a] > q[d->top[k - 1]]))
                continue;
            int i = cnt < k ? cnt++ : k - 1;
            while (i > 0 && q[d->top[i - 1]] < q[a]) {
                d->top[i] = d->top[i - 1];
                i--;
            }
            d->top[i] = a;
        }
        int i = 0;
        for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c])
            t->token[c] = d->top[i++];
        return 0;
    }
    double s = cs;
    if (kind == SD_DRAFT_IID) {
        for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c])
            t->token[c] = cum_search(d->cum, V, sd_rng_u01(r) * s);
        return 0;
    }
    /* SWOR: a draw from q conditioned on "not used yet", by rejection from the full table
     * (exact: the accepted draw has exactly the conditional law); after 8 rejections, or once
     * most of the mass is used, a direct draw over the remaining weights. */
    double used_mass = 0;
    int nused = 0;
    for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c]) {
        int x = -1;
        if (used_mass < 0.5 * s)
            for (int tries = 0; tries < 8; tries++) {
                int y = cum_search(d->cum, V, sd_rng_u01(r) * s);
                if (!d->used[y]) {
                    x = y;
                    break;
                }
            }
        if (x < 0) {
            double rem = 0;
            for (int a = 0; a < V; a++)
                rem += d->used[a] ? 0.0 : q[a];
            if (rem > 0) {
                double v = sd_rng_u01(r) * rem, acc = 0;
                for (int a = 0; a < V; a++) {
                    if (d->used[a] || !(q[a] > 0))
                        continue;
                    acc += q[a];
                    x = a;
                    if (v < acc)
                        break;
                }
            }
        }
        if (x < 0) /* support exhausted: lowest unused id (skipped by SWOR verification) */
            for (x = 0; d->used[x]; x++)
                ;
        d->used[x] = 1;
        d->top[nused++] = x;
        used_mass += q[x];
        t->token[c] = x;
    }
    for (int i = 0; i < nused; i++)
        d->used[d->top[i]] = 0;
    return 0;
}

int sd_draft_children(sd_tree *t, int u, int V, sd_draft_kind kind, const double *q, sd_rng *r,
                      ps_err *e)
{
    if (!t || V < 1 || u < 0 || u >= (t ? t->n : 0))
        return ps_errf(e, PS_EINPUT, "draft: bad tree, node %d or V = %d", u, V);
    if (!r && kind != SD_DRAFT_TOPK)
        return ps_errf(e, PS_EINPUT, "draft: rng must not be NULL");
    dscratch d;
    if (dscratch_alloc(&d, V, e))
        return PS_ERUN;
    int rc = draft_children_buf(t, u, V, kind, q, r, &d, e);
    dscratch_free(&d);
    return rc;
}

int sd_draft_tree(sd_tree *t, int V, sd_draft_kind kind, sd_dist_fn dist, void *user,
                  sd_rng *r, double *q_out, ps_err *e)
{
    if (!t || !dist)
        return ps_errf(e, PS_EINPUT, "draft: tree and dist must not be NULL");
    if (V < 1)
        return ps_errf(e, PS_EINPUT, "draft: vocabulary size V = %d (must be >= 1)", V);
    if (!r && kind != SD_DRAFT_TOPK)
        return ps_errf(e, PS_EINPUT, "draft: rng must not be NULL");
    dscratch d;
    if (dscratch_alloc(&d, V, e))
        return PS_ERUN;
    double *row = d.row;
    int rc = 0;
    if (q_out)
        memset(q_out, 0, sizeof(double) * (size_t)V); /* root row: unused */
    for (int u = 0; u < t->n && !rc; u++) {
        if (t->nchild[u] == 0)
            continue;
        rc = dist(user, t, u, row, e);
        if (rc) {
            if (e)
                ps_err_prefix(e, "draft at node %d: ", u);
            break;
        }
        rc = draft_children_buf(t, u, V, kind, row, r, &d, e);
        if (!rc && q_out)
            for (int c = t->first_child[u]; c >= 0; c = t->next_sib[c])
                memcpy(q_out + (size_t)c * (size_t)V, row, sizeof(double) * (size_t)V);
    }
    dscratch_free(&d);
    return rc;
}

/* ---- synthetic context model -------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t path_hash(uint64_t seed, uint64_t ctx, const int32_t *path, int len)
{
    uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ (ctx + 0x632BE59BD9B4E019ull));
    for (int i = 0; i < len; i++)
        h = mix64(h + 0x9E3779B97F4A7C15ull * (uint64_t)((uint32_t)path[i] + 1u));
    return h;
}

/* Irwin-Hall(4), rescaled to mean 0, variance 1. */
static double gauss_of(uint64_t h, int a)
{
    uint64_t x = mix64(h ^ (0xD1B54A32D192ED03ull * (uint64_t)(a + 1)));
    double s = 0;
    for (int i = 0; i < 4; i++) {
        s += (double)((x >> (16 * i)) & 0xFFFF) * (1.0 / 65536.0);
    }
    return (s - 2.0) * 1.7320508075688772;
}

void sd_synth_row(const sd_synth *m, int which, uint64_t ctx, const int32_t *path, int len,
                  double *row)
{
    int V = m->V;
    uint64_t h = path_hash(m->seed, ctx, path, len);
    uint64_t h2 = which ? path_hash(m->draft_seed ^ 0xA5A5A5A5A5A5A5A5ull, ctx, path, len) : 0;
    double mx = -HUGE_VAL;
    for (int a = 0; a < V; a++) {
        double z = gauss_of(h, a), l;
        if (which)
            l = m->draft_scale * ((1 - m->draft_noise) * z + m->draft_noise * gauss_of(h2, a));
        else
            l = m->scale * z;
        row[a] = l;
        if (l > mx)
            mx = l;
    }
    double s = 0;
    for (int a = 0; a < V; a++) {
        row[a] = exp(row[a] - mx);
        s += row[a];
    }
    for (int a = 0; a < V; a++)
        row[a] /= s;
}

/* ---- tokens-per-step Monte Carlo ---------------------------------------------------- */

typedef struct mc_user {
    const sd_synth *m;
    uint64_t ctx;
    int32_t *path;
    const sd_tree *t;
    double *p; /* [n*V] target rows, filled on demand */
} mc_user;

/* path of node u: the tokens of its non-root ancestors and itself, root side first */
static int node_path(const sd_tree *t, int u, int32_t *path)
{
    int len = t->ndepth[u];
    for (int v = u, i = len - 1; v > 0; v = t->parent[v], i--)
        path[i] = t->token[v];
    return len;
}

static int mc_dist(void *user, const sd_tree *t, int u, double *row, ps_err *e)
{
    (void)e;
    mc_user *mu = user;
    int len = node_path(t, u, mu->path);
    sd_synth_row(mu->m, 1, mu->ctx, mu->path, len, row);
    return 0;
}

/* the target row of node u, computed when the verification reaches u */
static const double *mc_prow(void *user, int u)
{
    mc_user *mu = user;
    double *row = mu->p + (size_t)u * (size_t)mu->m->V;
    int len = node_path(mu->t, u, mu->path);
    sd_synth_row(mu->m, 0, mu->ctx, mu->path, len, row);
    return row;
}

static int argmax_of(const double *row, int V)
{
    int b = 0;
    for (int a = 1; a < V; a++)
        if (row[a] > row[b])
            b = a;
    return b;
}

int sd_verify_mc_tokens(const sd_tree *shape, const sd_synth *m, sd_verify_kind vk,
                        sd_draft_kind dk, long steps, uint64_t seed, double *mean,
                        double *stderr_out, ps_err *e)
{
    if (!shape || !m || !mean)
        return ps_errf(e, PS_EINPUT, "verify MC: shape, model and mean must not be NULL");
    if (m->V < 1)
        return ps_errf(e, PS_EINPUT, "verify MC: synthetic model V = %d (must be >= 1)", m->V);
    if (steps < 1)
        return ps_errf(e, PS_EINPUT, "verify MC: steps = %ld (must be >= 1)", steps);
    if ((int)vk < 0 || (int)vk > 3)
        return ps_errf(e, PS_EINPUT, "verify MC: unknown verifier %d", (int)vk);
    int n = shape->n, V = m->V;
    sd_tree *t = sd_tree_from_parents(shape->parent, NULL, n, "verify MC shape", e);
    double *p = malloc(sizeof(double) * (size_t)n * (size_t)V);
    double *q = malloc(sizeof(double) * (size_t)n * (size_t)V);
    int32_t *path = malloc(sizeof(int32_t) * (size_t)(shape->depth + 1));
    const double **qrow = malloc(sizeof(*qrow) * (size_t)n);
    sd_verdict *vd = malloc(sizeof(*vd));
    int rc = 0;
    if (!t || !p || !q || !path || !qrow || !vd) {
        rc = t ? ps_errf(e, PS_ERUN, "verify MC: out of memory") : PS_EINPUT;
        goto out;
    }
    for (int u = 0; u < n; u++)
        qrow[u] = q + (size_t)u * (size_t)V;
    sd_rng r;
    sd_rng_seed(&r, seed);
    mc_user mu = {m, 0, path, t, p};
    psrc ps = {NULL, mc_prow, &mu};
    double s1 = 0, s2 = 0;
    for (long it = 0; it < steps; it++) {
        mu.ctx = sd_rng_next(&r);
        t->token[0] = 0;
        if ((rc = sd_draft_tree(t, V, dk, mc_dist, &mu, &r, q, e)))
            goto out;
        switch (vk) {
        case SD_VERIFY_GREEDY: { /* sd_verify_greedy's walk, argmax only where it goes */
            int u = 0, acc = 0;
            for (;;) {
                int want = argmax_of(mc_prow(&mu, u), V), next = -1;
                for (int c = t->first_child[u]; c >= 0 && acc < SD_MAX_PATH; c = t->next_sib[c])
                    if (t->token[c] == want) {
                        next = c;
                        break;
                    }
                if (next < 0)
                    break;
                acc++;
                u = next;
            }
            vd->accepted = acc;
            break;
        }
        case SD_VERIFY_MSS:
            rc = mss_impl(t, V, &ps, qrow, &r, vd, e);
            break;
        case SD_VERIFY_SWOR:
            rc = swor_impl(t, V, &ps, qrow, &r, vd, e);
            break;
        case SD_VERIFY_NAIVE:
            rc = naive_impl(t, V, &ps, &r, vd, e);
            break;
        }
        if (rc)
            goto out;
        double x = vd->accepted + 1;
        s1 += x;
        s2 += x * x;
    }
    *mean = s1 / (double)steps;
    if (stderr_out) {
        double var = steps > 1 ? (s2 - s1 * s1 / (double)steps) / (double)(steps - 1) : 0;
        *stderr_out = sqrt(var > 0 ? var : 0) / sqrt((double)steps);
    }
out:
    sd_tree_free(t);
    free(p);
    free(q);
    free(path);
    free(qrow);
    free(vd);
    return rc;
}
