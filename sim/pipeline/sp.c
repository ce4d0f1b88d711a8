/* Series-parallel decomposition of an operator DAG (vertex series-parallel,
 * on the reachability order, so transitive edges such as residual
 * connections do not matter), with a rewrite for parts that are not
 * series-parallel.
 *
 * decompose(S), S convex:
 *   - one op: a leaf;
 *   - S splits into weakly connected components (of the edges inside S;
 *     for a convex S these are the components of the comparability graph):
 *     a parallel node;
 *   - S has series cuts: prefixes P of a topological order with every op of
 *     P before every op of S \ P: a series node over the parts between cuts;
 *   - otherwise S is "prime" (an N inside): cut it in series at a level
 *     downset X (longest-path level from S's sources, or from its sinks),
 *     the one that orders the fewest independent pairs, ties to the most
 *     even op count.  Adding "X before S \ X" only removes plans: a stage
 *     convex under more precedence is convex under less, and a stage graph
 *     acyclic under more is acyclic under less — so every plan of the
 *     rewritten graph is valid for the original and computes the same thing.
 * Every part handed down is convex (intervals of the order, components of a
 * convex set, downsets of one), which is what makes the component test
 * exact. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/pipeline/planner_impl.h"

typedef struct spb {
    pp_pgraph *g;
    pp_sp_tree *t;
    int cap;
    int *uf;      /* union-find over local indices */
    int *loc;     /* op -> local index in the current set */
    ps_err *e;
} spb;

static int new_node(spb *b, pp_sp_kind kind, int op)
{
    pp_sp_tree *t = b->t;
    if (t->nnodes == b->cap) {
        int nc = b->cap ? 2 * b->cap : 64;
        pp_sp_node *nn = realloc(t->nodes, (size_t)nc * sizeof *nn);
        if (!nn)
            return -1;
        t->nodes = nn;
        b->cap = nc;
    }
    pp_sp_node *x = &t->nodes[t->nnodes];
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->op = op;
    return t->nnodes++;
}

static int set_children(spb *b, int node, const int *ch, int n)
{
    int *c = malloc((size_t)n * sizeof *c);
    if (!c)
        return -1;
    memcpy(c, ch, (size_t)n * sizeof *c);
    b->t->nodes[node].children = c;
    b->t->nodes[node].nchildren = n;
    return 0;
}

static int uf_find(int *uf, int x)
{
    while (uf[x] != x) {
        uf[x] = uf[uf[x]];
        x = uf[x];
    }
    return x;
}

static int decompose(spb *b, const int *S, int n);

/* Children list helper: append child c to (ch, nch), splicing c's children
 * when c has the same kind as the parent being built. */
static int push_child(spb *b, int **ch, int *nch, int *cap, int c, pp_sp_kind kind)
{
    const pp_sp_node *x = &b->t->nodes[c];
    int add = x->kind == kind ? x->nchildren : 1;
    if (*nch + add > *cap) {
        int nc = (*nch + add) * 2;
        int *a = realloc(*ch, (size_t)nc * sizeof *a);
        if (!a)
            return -1;
        *ch = a;
        *cap = nc;
    }
    if (x->kind == kind) {
        memcpy(*ch + *nch, x->children, (size_t)x->nchildren * sizeof(int));
        *nch += x->nchildren;
        /* the spliced node stays in the array, unused (no children, no ops) */
        free(b->t->nodes[c].children);
        b->t->nodes[c].children = NULL;
        b->t->nodes[c].nchildren = 0;
        b->t->nodes[c].kind = PP_SP_LEAF;
        b->t->nodes[c].op = -1;
    } else {
        (*ch)[(*nch)++] = c;
    }
    return 0;
}

static int build_series(spb *b, int **parts, int *plen, int np)
{
    int *ch = NULL, nch = 0, cap = 0;
    for (int i = 0; i < np; i++) {
        int c = decompose(b, parts[i], plen[i]);
        if (c < 0 || push_child(b, &ch, &nch, &cap, c, PP_SP_SERIES)) {
            free(ch);
            return -1;
        }
    }
    int node = new_node(b, PP_SP_SERIES, -1);
    if (node < 0 || set_children(b, node, ch, nch)) {
        free(ch);
        return -1;
    }
    free(ch);
    return node;
}

static int decompose(spb *b, const int *S, int n)
{
    pp_pgraph *g = b->g;
    if (n == 1)
        return new_node(b, PP_SP_LEAF, S[0]);
    /* ---- parallel: weak components of the induced edges ---- */
    for (int i = 0; i < n; i++) {
        b->loc[S[i]] = i;
        b->uf[i] = i;
    }
    size_t w = g->words;
    pp_word *mask = calloc(w, sizeof *mask);
    if (!mask)
        return -1;
    for (int i = 0; i < n; i++)
        pp_bit_set(mask, S[i]);
    int ncomp = n;
    for (int i = 0; i < n; i++) {
        int v = S[i];
        for (int k = g->succ_off[v]; k < g->succ_off[v + 1]; k++) {
            int s = g->succ[k];
            if (!pp_bit_get(mask, s))
                continue;
            int ra = uf_find(b->uf, i), rb = uf_find(b->uf, b->loc[s]);
            if (ra != rb) {
                b->uf[ra] = rb;
                ncomp--;
            }
        }
    }
    if (ncomp > 1) {
        /* group by root, components ordered by their first op (S is in topo
         * order, so by first appearance) */
        int *root = malloc((size_t)n * sizeof *root), *cid = malloc((size_t)n * sizeof *cid);
        int *cnt = calloc((size_t)ncomp, sizeof *cnt), *buf = malloc((size_t)n * sizeof *buf);
        int *start = malloc(((size_t)ncomp + 1) * sizeof *start);
        int *rootcomp = malloc((size_t)n * sizeof *rootcomp);
        int rc = -1;
        if (!root || !cid || !cnt || !buf || !start || !rootcomp)
            goto par_done;
        for (int i = 0; i < n; i++)
            rootcomp[i] = -1;
        int nc = 0;
        for (int i = 0; i < n; i++) {
            root[i] = uf_find(b->uf, i);
            if (rootcomp[root[i]] < 0)
                rootcomp[root[i]] = nc++;
            cid[i] = rootcomp[root[i]];
            cnt[cid[i]]++;
        }
        start[0] = 0;
        for (int c = 0; c < nc; c++)
            start[c + 1] = start[c] + cnt[c];
        memset(cnt, 0, (size_t)nc * sizeof *cnt);
        for (int i = 0; i < n; i++)
            buf[start[cid[i]] + cnt[cid[i]]++] = S[i];
        int *ch = malloc((size_t)nc * sizeof *ch);
        if (!ch)
            goto par_done;
        int ok = 1;
        for (int c = 0; c < nc && ok; c++) {
            ch[c] = decompose(b, buf + start[c], start[c + 1] - start[c]);
            ok = ch[c] >= 0;
        }
        if (ok) {
            rc = new_node(b, PP_SP_PARALLEL, -1);
            if (rc >= 0 && set_children(b, rc, ch, nc))
                rc = -1;
        }
        free(ch);
    par_done:
        free(root);
        free(cid);
        free(cnt);
        free(buf);
        free(start);
        free(rootcomp);
        free(mask);
        return rc;
    }
    /* ---- series: prefixes P with every op of P before all of S \ P ---- */
    pp_word *common = malloc(w * sizeof *common), *rest = malloc(w * sizeof *rest);
    int *cuts = malloc(((size_t)n + 1) * sizeof *cuts);
    if (!common || !rest || !cuts) {
        free(common);
        free(rest);
        free(cuts);
        free(mask);
        return -1;
    }
    memcpy(rest, mask, w * sizeof *rest);
    for (size_t x = 0; x < w; x++)
        common[x] = ~(pp_word)0;
    int ncuts = 0;
    cuts[ncuts++] = 0;
    for (int t = 1; t < n; t++) {
        int p = S[t - 1];
        const pp_word *dp = g->desc + (size_t)p * w;
        pp_bit_clr(rest, p);
        int ok = 1;
        for (size_t x = 0; x < w; x++) {
            common[x] &= dp[x];
            if (rest[x] & ~common[x])
                ok = 0;
        }
        if (ok)
            cuts[ncuts++] = t;
    }
    cuts[ncuts++] = n;
    free(common);
    free(rest);
    int node;
    if (ncuts > 2) {
        int np = ncuts - 1;
        int **parts = malloc((size_t)np * sizeof *parts), *plen = malloc((size_t)np * sizeof *plen);
        if (!parts || !plen) {
            free(parts);
            free(plen);
            free(cuts);
            free(mask);
            return -1;
        }
        for (int i = 0; i < np; i++) {
            parts[i] = (int *)S + cuts[i];
            plen[i] = cuts[i + 1] - cuts[i];
        }
        node = build_series(b, parts, plen, np);
        free(parts);
        free(plen);
        free(cuts);
        free(mask);
        return node;
    }
    free(cuts);
    /* ---- prime: SP-ize with one series cut at a level downset ---- */
    int *lev = malloc((size_t)n * sizeof *lev), *rlev = malloc((size_t)n * sizeof *rlev);
    int *X = malloc((size_t)n * sizeof *X), *Q = malloc((size_t)n * sizeof *Q);
    if (!lev || !rlev || !X || !Q) {
        free(lev);
        free(rlev);
        free(X);
        free(Q);
        free(mask);
        return -1;
    }
    int maxl = 0, maxr = 0;
    for (int i = 0; i < n; i++) { /* S is topologically sorted */
        int v = S[i], l = 0;
        for (int k = g->pred_off[v]; k < g->pred_off[v + 1]; k++)
            if (pp_bit_get(mask, g->pred[k]) && lev[b->loc[g->pred[k]]] + 1 > l)
                l = lev[b->loc[g->pred[k]]] + 1;
        lev[i] = l;
        if (l > maxl)
            maxl = l;
    }
    for (int i = n - 1; i >= 0; i--) {
        int v = S[i], l = 0;
        for (int k = g->succ_off[v]; k < g->succ_off[v + 1]; k++)
            if (pp_bit_get(mask, g->succ[k]) && rlev[b->loc[g->succ[k]]] + 1 > l)
                l = rlev[b->loc[g->succ[k]]] + 1;
        rlev[i] = l;
        if (l > maxr)
            maxr = l;
    }
    long long best_score = LLONG_MAX;
    int best_kind = -1, best_L = -1, best_bal = INT_MAX;
    pp_word *qm = malloc(w * sizeof *qm);
    if (!qm) {
        free(lev);
        free(rlev);
        free(X);
        free(Q);
        free(mask);
        return -1;
    }
    for (int kind = 0; kind < 2; kind++) {
        int maxL = kind == 0 ? maxl : maxr;
        for (int L = 0; L < maxL; L++) {
            /* kind 0: X = {lev <= L}; kind 1: X = {rlev > L} (both downsets) */
            memcpy(qm, mask, w * sizeof *qm);
            long long nx = 0, cover = 0;
            for (int i = 0; i < n; i++)
                if (kind == 0 ? lev[i] <= L : rlev[i] > L) {
                    nx++;
                    pp_bit_clr(qm, S[i]);
                }
            if (nx == 0 || nx == n)
                continue;
            for (int i = 0; i < n; i++)
                if (kind == 0 ? lev[i] <= L : rlev[i] > L) {
                    const pp_word *d = g->desc + (size_t)S[i] * w;
                    for (size_t x = 0; x < w; x++)
                        cover += __builtin_popcountll(d[x] & qm[x]);
                }
            long long score = nx * (n - nx) - cover;
            int bal = (int)(nx > n - nx ? nx - (n - nx) : (n - nx) - nx);
            if (score < best_score || (score == best_score && bal < best_bal)) {
                best_score = score;
                best_kind = kind;
                best_L = L;
                best_bal = bal;
            }
        }
    }
    free(qm);
    free(mask);
    if (best_kind < 0) { /* cannot happen for a connected set of >= 2 ops */
        free(lev);
        free(rlev);
        free(X);
        free(Q);
        ps_errf(b->e, PS_ERUN, "series-parallel decomposition: no cut for a prime part");
        return -2;
    }
    int nx = 0, nq = 0;
    for (int i = 0; i < n; i++) {
        int inx = best_kind == 0 ? lev[i] <= best_L : rlev[i] > best_L;
        if (inx)
            X[nx++] = S[i];
        else
            Q[nq++] = S[i];
    }
    free(lev);
    free(rlev);
    b->t->rewrites++;
    b->t->ordered_pairs += best_score;
    int *parts[2] = {X, Q}, plen[2] = {nx, nq};
    node = build_series(b, parts, plen, 2);
    free(X);
    free(Q);
    return node;
}

/* Assign each node its contiguous slice of `order` (children in order). */
static void fill_order(pp_sp_tree *t, int node, int *pos)
{
    pp_sp_node *x = &t->nodes[node];
    x->first = *pos;
    if (x->kind == PP_SP_LEAF) {
        t->order[(*pos)++] = x->op;
        x->count = 1;
        return;
    }
    for (int i = 0; i < x->nchildren; i++)
        fill_order(t, x->children[i], pos);
    x->count = *pos - x->first;
}

int pp_sp_build(const pp_pgraph *gc, pp_sp_tree *t, ps_err *e)
{
    pp_pgraph *g = (pp_pgraph *)gc; /* only the lazily built closure is written */
    memset(t, 0, sizeof *t);
    int rc;
    if (!g->finished && (rc = pp_pgraph_finish(g, e)))
        return rc;
    if ((rc = pp_pg_closure(g, e)))
        return rc;
    spb b = {.g = g, .t = t};
    b.uf = malloc((size_t)g->n * sizeof(int));
    b.loc = malloc((size_t)g->n * sizeof(int));
    int *S = malloc((size_t)g->n * sizeof(int));
    t->order = malloc((size_t)g->n * sizeof(int));
    if (!b.uf || !b.loc || !S || !t->order) {
        free(b.uf);
        free(b.loc);
        free(S);
        pp_sp_free(t);
        return ps_errf(e, PS_ERUN, "series-parallel decomposition: out of memory");
    }
    memcpy(S, g->topo, (size_t)g->n * sizeof(int));
    ps_err local = {0};
    b.e = &local;
    int root = decompose(&b, S, g->n);
    free(b.uf);
    free(b.loc);
    free(S);
    if (root < 0) {
        pp_sp_free(t);
        if (local.code)
            return ps_errf(e, local.code, "%s", local.msg);
        return ps_errf(e, PS_ERUN, "series-parallel decomposition: out of memory");
    }
    t->root = root;
    t->nops = g->n;
    int pos = 0;
    fill_order(t, root, &pos);
    return 0;
}

void pp_sp_free(pp_sp_tree *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->nnodes; i++)
        free(t->nodes[i].children);
    free(t->nodes);
    free(t->order);
    memset(t, 0, sizeof *t);
}

static int cmp_i(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int slice_equals(const pp_sp_tree *t, int first, int count, const int *sorted, int *tmp)
{
    memcpy(tmp, t->order + first, (size_t)count * sizeof(int));
    qsort(tmp, (size_t)count, sizeof(int), cmp_i);
    return !memcmp(tmp, sorted, (size_t)count * sizeof(int));
}

static int interval_in(const pp_sp_tree *t, int node, const int *sorted, int n, int *tmp)
{
    const pp_sp_node *x = &t->nodes[node];
    if (x->kind == PP_SP_LEAF)
        return n == 1 && x->op == sorted[0];
    if (n > x->count)
        return 0;
    for (int i = 0; i < x->nchildren; i++) {
        int cnt = 0;
        for (int j = i; j < x->nchildren && cnt < n; j++) {
            cnt += t->nodes[x->children[j]].count;
            if (cnt == n && slice_equals(t, t->nodes[x->children[i]].first, n, sorted, tmp))
                return 1;
        }
    }
    for (int i = 0; i < x->nchildren; i++)
        if (interval_in(t, x->children[i], sorted, n, tmp))
            return 1;
    return 0;
}

int pp_sp_is_interval(const pp_sp_tree *t, const int *ops, int n)
{
    if (n < 1 || n > t->nops)
        return 0;
    int *s = malloc((size_t)n * sizeof *s), *tmp = malloc((size_t)n * sizeof *tmp);
    if (!s || !tmp) {
        free(s);
        free(tmp);
        return 0;
    }
    memcpy(s, ops, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_i);
    int r = interval_in(t, t->root, s, n, tmp);
    free(s);
    free(tmp);
    return r;
}
