/* sim/specdec/build.c: tree builders (merge, Medusa choices, Sequoia DP,
 * top-m by path value) and the depth x rank expected tokens (see build.h). */
#include "sim/specdec/build.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

/* ---------------------------------------------------------------- trie ---- */

/* A growable trie of tokens (merge) or ranks (choices): children kept in a
 * singly linked list, in insertion order (merge) or sorted by key (choices). */
typedef struct trie {
    int n, cap;
    int32_t *key, *parent, *first, *last, *next;
    int32_t *tag; /* merge: unused; choices: listing path index or -1 */
    uint32_t *bits;
} trie;

static void trie_free(trie *t)
{
    free(t->key);
    free(t->parent);
    free(t->first);
    free(t->last);
    free(t->next);
    free(t->tag);
    free(t->bits);
}

static int trie_init(trie *t, int cap)
{
    memset(t, 0, sizeof *t);
    t->cap = cap;
    size_t sz = (size_t)cap * sizeof(int32_t);
    t->key = malloc(sz);
    t->parent = malloc(sz);
    t->first = malloc(sz);
    t->last = malloc(sz);
    t->next = malloc(sz);
    t->tag = malloc(sz);
    t->bits = calloc((size_t)cap, sizeof(uint32_t));
    if (!t->key || !t->parent || !t->first || !t->last || !t->next || !t->tag || !t->bits) {
        trie_free(t);
        return -1;
    }
    return 0;
}

/* New node under parent p (p < 0: the root), linked after `after` (-1: as
 * the first child). */
static int trie_add(trie *t, int p, int32_t key, int after)
{
    int v = t->n++;
    t->key[v] = key;
    t->parent[v] = p;
    t->first[v] = t->last[v] = t->next[v] = -1;
    t->tag[v] = -1;
    t->bits[v] = 0;
    if (p >= 0) {
        if (after < 0) {
            t->next[v] = t->first[p];
            t->first[p] = v;
        } else {
            t->next[v] = t->next[after];
            t->next[after] = v;
        }
        if (t->next[v] < 0)
            t->last[p] = v;
    }
    return v;
}

/* Pre-order walk of the trie into parent/token arrays (and the node order). */
static int trie_dfs(const trie *t, int *par, int *tok, int *order)
{
    int cnt = 0, v = 0;
    int *img = malloc((size_t)t->n * sizeof(int)); /* trie node -> output index */
    if (!img)
        return -1;
    for (;;) {
        img[v] = cnt;
        par[cnt] = t->parent[v] >= 0 ? img[t->parent[v]] : -1;
        tok[cnt] = t->key[v];
        if (order)
            order[cnt] = v;
        cnt++;
        if (t->first[v] >= 0) {
            v = t->first[v];
            continue;
        }
        while (v >= 0 && t->next[v] < 0)
            v = t->parent[v];
        if (v < 0)
            break;
        v = t->next[v];
    }
    free(img);
    return 0;
}

/* --------------------------------------------------------------- merge ---- */

sd_tree *sd_tree_merge(const sd_tree *const *trees, int k, uint32_t **origin, ps_err *e)
{
    if (origin)
        *origin = NULL;
    if (k < 1 || k > 32) {
        ps_errf(e, PS_EINPUT, "merge: %d trees, need 1..32", k);
        return NULL;
    }
    if (!trees) {
        ps_errf(e, PS_EINPUT, "merge: NULL tree list");
        return NULL;
    }
    int maxin = 0;
    for (int i = 0; i < k; i++) {
        if (!trees[i]) {
            ps_errf(e, PS_EINPUT, "merge: trees[%d] is NULL", i);
            return NULL;
        }
        if (trees[i]->n > maxin)
            maxin = trees[i]->n;
    }
    trie tr;
    int *map = malloc((size_t)maxin * sizeof(int));
    int *par = NULL, *tok = NULL, *order = NULL;
    sd_tree *out = NULL;
    if (trie_init(&tr, SD_TREE_MAX_NODES) || !map) {
        free(map);
        ps_errf(e, PS_ERUN, "merge: out of memory");
        return NULL;
    }
    trie_add(&tr, -1, trees[0]->token[0], -1);
    for (int i = 0; i < k; i++) {
        const sd_tree *t = trees[i];
        map[0] = 0;
        tr.bits[0] |= (uint32_t)1 << i;
        for (int v = 1; v < t->n; v++) {
            int p = map[t->parent[v]], c;
            for (c = tr.first[p]; c >= 0; c = tr.next[c])
                if (tr.key[c] == t->token[v])
                    break;
            if (c < 0) {
                if (tr.n >= tr.cap) {
                    ps_errf(e, PS_EINPUT, "merge: the union has more than %d nodes (at trees[%d] "
                            "node %d)", SD_TREE_MAX_NODES, i, v);
                    goto out;
                }
                c = trie_add(&tr, p, t->token[v], tr.last[p]);
            }
            tr.bits[c] |= (uint32_t)1 << i;
            map[v] = c;
        }
    }
    par = malloc((size_t)tr.n * sizeof(int));
    tok = malloc((size_t)tr.n * sizeof(int));
    order = malloc((size_t)tr.n * sizeof(int));
    if (!par || !tok || !order || trie_dfs(&tr, par, tok, order)) {
        ps_errf(e, PS_ERUN, "merge: out of memory");
        goto out;
    }
    out = sd_tree_from_parents(par, tok, tr.n, "merge", e);
    if (out && origin) {
        *origin = malloc((size_t)tr.n * sizeof(uint32_t));
        if (!*origin) {
            sd_tree_free(out);
            out = NULL;
            ps_errf(e, PS_ERUN, "merge: out of memory");
            goto out;
        }
        for (int i = 0; i < tr.n; i++)
            (*origin)[i] = tr.bits[order[i]];
    }
out:
    free(map);
    free(par);
    free(tok);
    free(order);
    trie_free(&tr);
    return out;
}

/* ------------------------------------------------------------- choices ---- */

static void fmt_path(char *buf, size_t sz, const int *path, int len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sz - o, "[");
    for (int j = 0; j < len && o < sz; j++)
        o += (size_t)snprintf(buf + o, sz - o, j ? ",%d" : "%d", path[j]);
    if (o < sz)
        snprintf(buf + o, sz - o, "]");
}

/* Child of v with key r in a key-sorted list; *after = the last child with a
 * smaller key (-1 if none). */
static int child_sorted(const trie *t, int v, int r, int *after)
{
    int prev = -1;
    for (int c = t->first[v]; c >= 0; c = t->next[c]) {
        if (t->key[c] == r)
            return c;
        if (t->key[c] > r)
            break;
        prev = c;
    }
    if (after)
        *after = prev;
    return -1;
}

sd_tree *sd_tree_from_choices(const int *const *paths, const int *lens, int npaths,
                              const char *where, ps_err *e)
{
    if (!where)
        where = "choices";
    if (npaths < 0 || npaths + 1 > SD_TREE_MAX_NODES) {
        ps_errf(e, PS_EINPUT, "%s: %d paths, need 0..%d", where, npaths, SD_TREE_MAX_NODES - 1);
        return NULL;
    }
    if (npaths > 0 && (!paths || !lens)) {
        ps_errf(e, PS_EINPUT, "%s: NULL path list", where);
        return NULL;
    }
    long total = 1;
    for (int i = 0; i < npaths; i++) {
        if (lens[i] < 1) {
            ps_errf(e, PS_EINPUT, "%s[%d]: empty path (the root is implicit)", where, i);
            return NULL;
        }
        if (!paths[i]) {
            ps_errf(e, PS_EINPUT, "%s[%d]: NULL path", where, i);
            return NULL;
        }
        for (int j = 0; j < lens[i]; j++)
            if (paths[i][j] < 0) {
                ps_errf(e, PS_EINPUT, "%s[%d][%d]: rank %d < 0 (ranks are 0-based)", where, i, j,
                        paths[i][j]);
                return NULL;
            }
        total += lens[i];
        if (total > 64L * SD_TREE_MAX_NODES) {
            ps_errf(e, PS_EINPUT, "%s[%d]: paths too long in total", where, i);
            return NULL;
        }
    }
    trie tr;
    sd_tree *out = NULL;
    int *par = NULL, *tok = NULL;
    if (trie_init(&tr, (int)total)) {
        ps_errf(e, PS_ERUN, "%s: out of memory", where);
        return NULL;
    }
    trie_add(&tr, -1, 0, -1);
    for (int i = 0; i < npaths; i++) {
        int v = 0;
        for (int j = 0; j < lens[i]; j++) {
            int after, c = child_sorted(&tr, v, paths[i][j], &after);
            if (c < 0)
                c = trie_add(&tr, v, paths[i][j], after);
            v = c;
        }
        if (tr.tag[v] >= 0) {
            ps_errf(e, PS_EINPUT, "%s[%d]: duplicate of %s[%d]", where, i, where, tr.tag[v]);
            goto out;
        }
        tr.tag[v] = i;
    }
    for (int i = 0; i < npaths; i++) {
        int v = 0;
        for (int j = 0; j < lens[i]; j++) {
            v = child_sorted(&tr, v, paths[i][j], NULL);
            if (j < lens[i] - 1 && tr.tag[v] < 0) {
                char a[256], b[256];
                fmt_path(a, sizeof a, paths[i], lens[i]);
                fmt_path(b, sizeof b, paths[i], j + 1);
                ps_errf(e, PS_EINPUT, "%s[%d]: path %s needs its prefix %s, which is not listed",
                        where, i, a, b);
                goto out;
            }
        }
        int r = paths[i][lens[i] - 1];
        if (r > 0) {
            int s = child_sorted(&tr, tr.parent[v], r - 1, NULL);
            if (s < 0 || tr.tag[s] < 0) {
                char a[256];
                fmt_path(a, sizeof a, paths[i], lens[i]);
                ps_errf(e, PS_EINPUT,
                        "%s[%d]: path %s has rank %d but no rank-%d sibling is listed (ranks "
                        "must be contiguous among siblings)",
                        where, i, a, r, r - 1);
                goto out;
            }
        }
    }
    par = malloc((size_t)tr.n * sizeof(int));
    tok = malloc((size_t)tr.n * sizeof(int));
    if (!par || !tok || trie_dfs(&tr, par, tok, NULL)) {
        ps_errf(e, PS_ERUN, "%s: out of memory", where);
        goto out;
    }
    out = sd_tree_from_parents(par, tok, tr.n, where, e);
out:
    free(par);
    free(tok);
    trie_free(&tr);
    return out;
}

sd_tree *sd_tree_from_choices_json(const json_t *j, const char *where, ps_err *e)
{
    if (!where)
        where = "choices";
    if (!json_is_array(j)) {
        ps_errf(e, PS_EINPUT, "%s: expected an array of paths ([[0],[0,0],...]), got %s", where,
                ps_json_type_name(j));
        return NULL;
    }
    size_t np = json_array_size(j);
    if (np + 1 > SD_TREE_MAX_NODES) {
        ps_errf(e, PS_EINPUT, "%s: %zu paths, need 0..%d", where, np, SD_TREE_MAX_NODES - 1);
        return NULL;
    }
    int **paths = calloc(np ? np : 1, sizeof(int *));
    int *lens = calloc(np ? np : 1, sizeof(int));
    sd_tree *t = NULL;
    if (!paths || !lens) {
        ps_errf(e, PS_ERUN, "%s: out of memory", where);
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        const json_t *a = json_array_get(j, i);
        if (!json_is_array(a)) {
            ps_errf(e, PS_EINPUT, "%s[%zu]: expected an array of ranks, got %s", where, i,
                    ps_json_type_name(a));
            goto out;
        }
        size_t len = json_array_size(a);
        if (len > SD_TREE_MAX_NODES) {
            ps_errf(e, PS_EINPUT, "%s[%zu]: path of %zu ranks is too long", where, i, len);
            goto out;
        }
        paths[i] = malloc((len ? len : 1) * sizeof(int));
        if (!paths[i]) {
            ps_errf(e, PS_ERUN, "%s: out of memory", where);
            goto out;
        }
        lens[i] = (int)len;
        for (size_t q = 0; q < len; q++) {
            char path[256];
            snprintf(path, sizeof path, "%s[%zu][%zu]", where, i, q);
            long long x;
            if (ps_json_as_int(json_array_get(a, q), path, &x, e))
                goto out;
            if (x < 0 || x > INT32_MAX) {
                ps_errf(e, PS_EINPUT, "%s: rank %lld out of range (ranks are 0-based)", path, x);
                goto out;
            }
            paths[i][q] = (int)x;
        }
    }
    t = sd_tree_from_choices((const int *const *)paths, lens, (int)np, where, e);
out:
    if (paths)
        for (size_t i = 0; i < np; i++)
            free(paths[i]);
    free(paths);
    free(lens);
    return t;
}

/* ------------------------------------------------------ matrix E[tokens] ---- */

static int check_matrix(const double *P, int depths, int m, ps_err *e)
{
    if (m < 0)
        return ps_errf(e, PS_EINPUT, "acceptance: %d ranks, need >= 0", m);
    if (depths < 1)
        return ps_errf(e, PS_EINPUT, "acceptance: %d depth rows, need >= 1", depths);
    if (m > 0 && !P)
        return ps_errf(e, PS_EINPUT, "acceptance: NULL matrix");
    for (int d = 0; d < depths; d++) {
        double s = 0;
        for (int k = 0; k < m; k++) {
            double x = P[(size_t)d * (size_t)m + (size_t)k];
            if (!(x >= 0 && x <= 1))
                return ps_errf(e, PS_EINPUT, "acceptance[%d][%d]: %g not in [0, 1]", d, k, x);
            s += x;
        }
        if (s > 1 + 1e-9)
            return ps_errf(e, PS_EINPUT,
                           "acceptance[%d]: row sum %g > 1 (at most one child is accepted under "
                           "greedy verification)",
                           d, s);
    }
    return 0;
}

static inline double pmat(const double *P, int depths, int m, int depth, int rank)
{
    if (rank < 1 || rank > m)
        return 0.0;
    int d = depth < depths ? depth : depths;
    return P[(size_t)(d - 1) * (size_t)m + (size_t)(rank - 1)];
}

int sd_tree_expected_tokens_matrix(const sd_tree *t, const double *P, int depths, int m,
                                   double *out, ps_err *e)
{
    if (check_matrix(P, depths, m, e))
        return PS_EINPUT;
    double *pa = malloc((size_t)t->n * sizeof(double));
    if (!pa)
        return ps_errf(e, PS_ERUN, "expected tokens: out of memory");
    double s = 1.0;
    pa[0] = 1.0;
    for (int i = 1; i < t->n; i++) {
        pa[i] = pa[t->parent[i]] * pmat(P, depths, m, t->ndepth[i], t->rank[i]);
        s += pa[i];
    }
    free(pa);
    *out = s;
    return 0;
}

/* ------------------------------------------------------------- Sequoia ---- */

typedef struct seq_dp {
    int n, meff, levels, leaf_level; /* leaf_level: -1 when unbounded */
    const double *P;
    int depths, m;
    double *F;  /* [levels][n + 1] */
    int16_t *ch;/* [levels][meff][n]: size of the rank-(k+1) subtree for r remaining nodes */
    int *par, *tok, cnt;
} seq_dp;

static int child_level(const seq_dp *d, int a)
{
    if (d->leaf_level >= 0)
        return a + 1;
    return a + 1 < d->levels ? a + 1 : d->levels - 1;
}

static void seq_build(seq_dp *d, int a, int s, int parent, int rank)
{
    int me = d->cnt++;
    d->par[me] = parent;
    d->tok[me] = rank > 0 ? rank - 1 : 0;
    int r = s - 1, ca = child_level(d, a), k;
    for (k = 1; k <= d->meff && r > 0; k++) {
        int sk = d->ch[((size_t)a * (size_t)d->meff + (size_t)(k - 1)) * (size_t)d->n + (size_t)r];
        seq_build(d, ca, sk, me, k);
        r -= sk;
    }
    for (; r > 0; r--, k++) { /* zero-value filler leaves beyond rank m */
        int c = d->cnt++;
        d->par[c] = me;
        d->tok[c] = k - 1;
    }
}

sd_tree *sd_sequoia_opt_matrix(const double *P, int depths, int m, int n, int max_depth,
                               double *value, double *curve, ps_err *e)
{
    if (n < 1 || n > SD_TREE_MAX_NODES) {
        ps_errf(e, PS_EINPUT, "sequoia: n = %d nodes, need 1..%d (root included)", n,
                SD_TREE_MAX_NODES);
        return NULL;
    }
    if (check_matrix(P, depths, m, e))
        return NULL;
    seq_dp d = {0};
    d.n = n;
    d.meff = m < n - 1 ? m : n - 1;
    d.P = P;
    d.depths = depths;
    d.m = m;
    if (max_depth > 0 && max_depth < n - 1) {
        d.levels = max_depth + 1;
        d.leaf_level = max_depth;
    } else {
        d.levels = depths < n ? depths : n;
        d.leaf_level = -1;
    }
    size_t chn = (size_t)d.levels * (size_t)d.meff * (size_t)n;
    if (chn * sizeof(int16_t) > ((size_t)512 << 20)) {
        ps_errf(e, PS_EINPUT,
                "sequoia: n = %d with max_depth %d and %d ranks needs more than 512 MiB of DP "
                "tables",
                n, max_depth, m);
        return NULL;
    }
    int M = d.meff;
    d.F = malloc((size_t)d.levels * (size_t)(n + 1) * sizeof(double));
    d.ch = malloc((chn ? chn : 1) * sizeof(int16_t));
    double *H = malloc((size_t)(M + 2) * (size_t)n * sizeof(double)); /* H[k][r], k = 1..M+1 */
    d.par = malloc((size_t)n * sizeof(int));
    d.tok = malloc((size_t)n * sizeof(int));
    sd_tree *out = NULL;
    if (!d.F || !d.ch || !H || !d.par || !d.tok) {
        ps_errf(e, PS_ERUN, "sequoia: out of memory");
        goto done;
    }
    for (int a = d.levels - 1; a >= 0; a--) {
        double *F = d.F + (size_t)a * (size_t)(n + 1);
        F[0] = -INFINITY;
        if (a == d.leaf_level) {
            F[1] = 1.0;
            for (int s = 2; s <= n; s++)
                F[s] = -INFINITY;
            continue;
        }
        int ca = child_level(&d, a);
        const double *Fc = d.F + (size_t)ca * (size_t)(n + 1); /* == F when stationary */
        int row = a < depths - 1 ? a : depths - 1;
        const double *pr = M > 0 ? P + (size_t)row * (size_t)m : NULL;
        for (int r = 0; r < n; r++) {
            H[(size_t)(M + 1) * (size_t)n + (size_t)r] = 0.0;
            for (int k = M; k >= 1; k--) {
                double *Hk = H + (size_t)k * (size_t)n;
                const double *Hk1 = H + (size_t)(k + 1) * (size_t)n;
                int16_t *chk = d.ch + ((size_t)a * (size_t)M + (size_t)(k - 1)) * (size_t)n;
                if (r == 0) {
                    Hk[0] = 0.0;
                    chk[0] = 0;
                    continue;
                }
                double best = -INFINITY, pk = pr[k - 1];
                int arg = 0;
                for (int s = r; s >= 1; s--) {
                    double f = Fc[s];
                    if (f == -INFINITY)
                        continue;
                    double v = pk * f + Hk1[r - s];
                    if (v > best) {
                        best = v;
                        arg = s;
                    }
                }
                Hk[r] = best;
                chk[r] = (int16_t)arg;
            }
            F[r + 1] = 1.0 + H[(size_t)1 * (size_t)n + (size_t)r];
        }
    }
    if (curve)
        for (int i = 0; i < n; i++)
            curve[i] = d.F[i + 1];
    d.cnt = 0;
    seq_build(&d, 0, n, -1, 0);
    out = sd_tree_from_parents(d.par, d.tok, n, "sequoia", e);
    if (out && value &&
        sd_tree_expected_tokens_matrix(out, P, depths, m, value, e)) {
        sd_tree_free(out);
        out = NULL;
    }
done:
    free(d.F);
    free(d.ch);
    free(H);
    free(d.par);
    free(d.tok);
    return out;
}

sd_tree *sd_sequoia_opt(const double *p, int m, int n, int max_depth, double *value,
                        double *curve, ps_err *e)
{
    return sd_sequoia_opt_matrix(p, 1, m, n, max_depth, value, curve, e);
}

/* ---------------------------------------------------------------- top-m ---- */

typedef struct cand {
    double val, prob;
    long seq;
    int parent; /* kept index */
    int depth;
    int32_t tok;
} cand;

static int cand_before(const cand *c, int a, int b)
{
    if (c[a].val != c[b].val)
        return c[a].val > c[b].val;
    return c[a].seq < c[b].seq;
}

static void heap_push(int *h, int *hn, const cand *c, int x)
{
    int i = (*hn)++;
    h[i] = x;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_before(c, h[i], h[p]))
            break;
        int t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static int heap_pop(int *h, int *hn, const cand *c)
{
    int top = h[0];
    h[0] = h[--(*hn)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, b = i;
        if (l < *hn && cand_before(c, h[l], h[b]))
            b = l;
        if (r < *hn && cand_before(c, h[r], h[b]))
            b = r;
        if (b == i)
            break;
        int t = h[i];
        h[i] = h[b];
        h[b] = t;
        i = b;
    }
    return top;
}

typedef struct sortkey {
    double prob;
    int idx;
} sortkey;

static int cmp_key(const void *a, const void *b)
{
    const sortkey *x = a, *y = b;
    if (x->prob != y->prob)
        return x->prob > y->prob ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

sd_tree *sd_tree_topm(int m, int max_depth, int topk, sd_expand_fn expand, void *user,
                      double **values, ps_err *e)
{
    if (values)
        *values = NULL;
    if (m < 1 || m > SD_TREE_MAX_NODES) {
        ps_errf(e, PS_EINPUT, "topm: m = %d nodes, need 1..%d (root included)", m,
                SD_TREE_MAX_NODES);
        return NULL;
    }
    if (topk < 1) {
        ps_errf(e, PS_EINPUT, "topm: topk = %d, need >= 1", topk);
        return NULL;
    }
    if (!expand) {
        ps_errf(e, PS_EINPUT, "topm: NULL expand callback");
        return NULL;
    }
    int ccap = 64, cn = 0, hn = 0, kept = 0;
    cand *c = malloc((size_t)ccap * sizeof *c);
    int *heap = malloc((size_t)ccap * sizeof(int));
    int *kc = malloc((size_t)m * sizeof(int)); /* kept -> candidate */
    int32_t *path = malloc((size_t)m * sizeof(int32_t));
    int32_t *tk = malloc((size_t)topk * sizeof(int32_t));
    double *pb = malloc((size_t)topk * sizeof(double));
    sortkey *sk = malloc((size_t)topk * sizeof(sortkey));
    trie tr = {0};
    int *par = NULL, *tok = NULL, *order = NULL;
    sd_tree *out = NULL;
    if (!c || !heap || !kc || !path || !tk || !pb || !sk || trie_init(&tr, m)) {
        ps_errf(e, PS_ERUN, "topm: out of memory");
        goto done;
    }
    c[0] = (cand){.val = 1.0, .prob = 1.0, .seq = 0, .parent = -1, .depth = 0, .tok = 0};
    cn = 1;
    heap_push(heap, &hn, c, 0);
    while (kept < m && hn > 0) {
        int x = heap_pop(heap, &hn, c);
        int me = kept++;
        kc[me] = x;
        trie_add(&tr, c[x].parent >= 0 ? c[x].parent : -1, c[x].tok,
                 c[x].parent >= 0 ? tr.last[c[x].parent] : -1);
        if (kept == m || (max_depth > 0 && c[x].depth >= max_depth))
            continue;
        int dep = c[x].depth;
        for (int v = me, q = dep; q > 0; q--) { /* token path root -> me */
            path[q - 1] = tr.key[v];
            v = tr.parent[v];
        }
        int had = e ? e->code : 0;
        int got = expand(user, path, dep, topk, tk, pb);
        if (got < 0) {
            if (!e || e->code == 0 || had)
                ps_errf(e, PS_ERUN, "topm: expand failed (returned %d) at a depth-%d node", got,
                        dep);
            else
                e->code = PS_ERUN;
            goto done;
        }
        if (got > topk) {
            ps_errf(e, PS_ERUN, "topm: expand returned %d children at depth %d, asked for at most "
                    "%d", got, dep, topk);
            goto done;
        }
        for (int j = 0; j < got; j++) {
            if (!(pb[j] >= 0 && pb[j] <= 1)) {
                ps_errf(e, PS_ERUN, "topm: expand at depth %d gave prob[%d] = %g, not in [0, 1]",
                        dep, j, pb[j]);
                goto done;
            }
            sk[j] = (sortkey){pb[j], j};
        }
        qsort(sk, (size_t)got, sizeof *sk, cmp_key);
        if (cn + got > ccap) {
            while (cn + got > ccap)
                ccap *= 2;
            cand *nc = realloc(c, (size_t)ccap * sizeof *c);
            if (nc)
                c = nc;
            int *nh = realloc(heap, (size_t)ccap * sizeof(int));
            if (nh)
                heap = nh;
            if (!nc || !nh) {
                ps_errf(e, PS_ERUN, "topm: out of memory");
                goto done;
            }
        }
        for (int j = 0; j < got; j++) {
            int y = cn++;
            c[y] = (cand){.val = c[x].val * sk[j].prob,
                          .prob = sk[j].prob,
                          .seq = y,
                          .parent = me,
                          .depth = dep + 1,
                          .tok = tk[sk[j].idx]};
            heap_push(heap, &hn, c, y);
        }
    }
    par = malloc((size_t)kept * sizeof(int));
    tok = malloc((size_t)kept * sizeof(int));
    order = malloc((size_t)kept * sizeof(int));
    if (!par || !tok || !order || trie_dfs(&tr, par, tok, order)) {
        ps_errf(e, PS_ERUN, "topm: out of memory");
        goto done;
    }
    out = sd_tree_from_parents(par, tok, kept, "topm", e);
    if (out && values) {
        *values = malloc((size_t)kept * sizeof(double));
        if (!*values) {
            sd_tree_free(out);
            out = NULL;
            ps_errf(e, PS_ERUN, "topm: out of memory");
            goto done;
        }
        for (int i = 0; i < kept; i++)
            (*values)[i] = c[kc[order[i]]].val;
    }
done:
    free(c);
    free(heap);
    free(kc);
    free(path);
    free(tk);
    free(pb);
    free(sk);
    free(par);
    free(tok);
    free(order);
    trie_free(&tr);
    return out;
}
