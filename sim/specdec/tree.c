/* sim/specdec/tree.c: token trees in DFS order, builders, JSON, and the
 * expected-tokens closed form with its Monte Carlo check (see tree.h). */
#include "sim/specdec/tree.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

void sd_tree_free(sd_tree *t)
{
    if (!t)
        return;
    free(t->token);
    free(t->parent);
    free(t->ndepth);
    free(t->rank);
    free(t->nchild);
    free(t->first_child);
    free(t->next_sib);
    free(t->mask);
    free(t);
}

static int check_parents(const int *par, int n, const char *where, ps_err *e)
{
    if (par[0] != -1)
        return ps_errf(e, PS_EINPUT, "%s.parents[0]: the root must have parent -1, got %d", where,
                       par[0]);
    for (int i = 1; i < n; i++) {
        int p = par[i];
        if (p == -1)
            return ps_errf(e, PS_EINPUT,
                           "%s.parents[%d]: -1 marks the root, which must be node 0 only", where, i);
        if (p < -1 || p >= n)
            return ps_errf(e, PS_EINPUT, "%s.parents[%d]: %d out of range [0, %d)", where, i, p, n);
        if (p == i)
            return ps_errf(e, PS_EINPUT, "%s.parents[%d]: cycle (node %d is its own parent)", where,
                           i, i);
        if (p > i) {
            /* Follow the chain: a return to i is a cycle, otherwise the
             * parent simply comes after its child. */
            int q = p, steps = 0;
            while (q > 0 && q < n && q != i && steps <= n) {
                q = par[q];
                steps++;
            }
            if (q == i)
                return ps_errf(e, PS_EINPUT, "%s.parents[%d]: cycle through node %d", where, i, p);
            return ps_errf(e, PS_EINPUT,
                           "%s.parents[%d]: parent %d not before its child (nodes must be in "
                           "depth-first order)",
                           where, i, p);
        }
    }
    return 0;
}

sd_tree *sd_tree_from_parents(const int *parents, const int *tokens, int n, const char *where,
                              ps_err *e)
{
    if (!where)
        where = "tree";
    if (n < 1 || n > SD_TREE_MAX_NODES) {
        ps_errf(e, PS_EINPUT, "%s.parents: %d nodes, need 1..%d (root included)", where, n,
                SD_TREE_MAX_NODES);
        return NULL;
    }
    if (check_parents(parents, n, where, e))
        return NULL;
    sd_tree *t = calloc(1, sizeof *t);
    if (!t) {
        ps_errf(e, PS_ERUN, "%s: out of memory", where);
        return NULL;
    }
    t->n = n;
    t->words = (n + 63) / 64;
    size_t sz = (size_t)n * sizeof(int32_t);
    t->token = malloc(sz);
    t->parent = malloc(sz);
    t->ndepth = malloc(sz);
    t->rank = malloc(sz);
    t->nchild = calloc((size_t)n, sizeof(int32_t));
    t->first_child = malloc(sz);
    t->next_sib = malloc(sz);
    t->mask = calloc((size_t)n * (size_t)t->words, sizeof(uint64_t));
    int32_t *last_child = malloc(sz);
    if (!t->token || !t->parent || !t->ndepth || !t->rank || !t->nchild || !t->first_child ||
        !t->next_sib || !t->mask || !last_child) {
        free(last_child);
        sd_tree_free(t);
        ps_errf(e, PS_ERUN, "%s: out of memory", where);
        return NULL;
    }
    size_t w = (size_t)t->words;
    for (int i = 0; i < n; i++) {
        int p = parents[i];
        /* Depth-first order: the parent must be on the path of node i-1
         * (node i-1 itself or one of its ancestors). */
        if (i > 0 && !sd_tree_sees(t, i - 1, p)) {
            free(last_child);
            sd_tree_free(t);
            ps_errf(e, PS_EINPUT,
                    "%s.parents[%d]: parent %d is not on the path of node %d (nodes must be in "
                    "depth-first order)",
                    where, i, p, i - 1);
            return NULL;
        }
        t->token[i] = tokens ? tokens[i] : 0;
        t->parent[i] = p;
        t->first_child[i] = -1;
        t->next_sib[i] = -1;
        last_child[i] = -1;
        uint64_t *row = t->mask + (size_t)i * w;
        if (p >= 0) {
            memcpy(row, t->mask + (size_t)p * w, w * sizeof(uint64_t));
            t->ndepth[i] = t->ndepth[p] + 1;
            t->rank[i] = ++t->nchild[p];
            if (last_child[p] < 0)
                t->first_child[p] = i;
            else
                t->next_sib[last_child[p]] = i;
            last_child[p] = i;
        } else {
            t->ndepth[i] = 0;
            t->rank[i] = 0;
        }
        row[i >> 6] |= (uint64_t)1 << (i & 63);
        if (t->ndepth[i] > t->depth)
            t->depth = t->ndepth[i];
    }
    free(last_child);
    return t;
}

static void expand(const int *k, int d, int level, int parent, int rank, int *par, int *tok,
                   int *cnt)
{
    int me = (*cnt)++;
    par[me] = parent;
    tok[me] = rank > 0 ? rank - 1 : 0;
    if (level == d)
        return;
    for (int r = 1; r <= k[level]; r++)
        expand(k, d, level + 1, me, r, par, tok, cnt);
}

sd_tree *sd_tree_from_expansion(const int *k, int d, ps_err *e)
{
    if (d < 0) {
        ps_errf(e, PS_EINPUT, "expansion: negative depth %d", d);
        return NULL;
    }
    long total = 1, level = 1;
    for (int i = 0; i < d; i++) {
        if (k[i] < 1) {
            ps_errf(e, PS_EINPUT, "expansion[%d]: %d, each width must be >= 1", i, k[i]);
            return NULL;
        }
        level *= k[i];
        total += level;
        if (total > SD_TREE_MAX_NODES) {
            ps_errf(e, PS_EINPUT, "expansion: more than %d nodes (at expansion[%d])",
                    SD_TREE_MAX_NODES, i);
            return NULL;
        }
    }
    int *par = malloc((size_t)total * sizeof(int));
    int *tok = malloc((size_t)total * sizeof(int));
    if (!par || !tok) {
        free(par);
        free(tok);
        ps_errf(e, PS_ERUN, "expansion: out of memory");
        return NULL;
    }
    int cnt = 0;
    expand(k, d, 0, -1, 0, par, tok, &cnt);
    sd_tree *t = sd_tree_from_parents(par, tok, cnt, "expansion", e);
    free(par);
    free(tok);
    return t;
}

json_t *sd_tree_to_json(const sd_tree *t)
{
    json_t *par = json_array(), *tok = json_array();
    for (int i = 0; i < t->n; i++) {
        json_array_append_new(par, json_integer(t->parent[i]));
        json_array_append_new(tok, json_integer(t->token[i]));
    }
    json_t *o = json_object();
    json_object_set_new(o, "num_nodes", json_integer(t->n));
    json_object_set_new(o, "depth", json_integer(t->depth));
    json_object_set_new(o, "parents", par);
    json_object_set_new(o, "tokens", tok);
    return o;
}

static int int_array(const json_t *a, const char *where, const char *key, int *out, ps_err *e)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        char path[256];
        snprintf(path, sizeof path, "%s.%s[%zu]", where, key, i);
        long long x;
        if (ps_json_as_int(v, path, &x, e))
            return PS_EINPUT;
        if (x < INT32_MIN || x > INT32_MAX)
            return ps_errf(e, PS_EINPUT, "%s: %lld out of range", path, x);
        out[i] = (int)x;
    }
    return 0;
}

sd_tree *sd_tree_from_json(const json_t *j, const char *where, ps_err *e)
{
    static const char *const keys[] = {"num_nodes", "depth", "parents", "tokens", NULL};
    if (!where)
        where = "$";
    if (!json_is_object(j)) {
        ps_errf(e, PS_EINPUT, "%s: expected an object, got %s", where, ps_json_type_name(j));
        return NULL;
    }
    if (ps_json_check_keys(j, where, keys, e))
        return NULL;
    const json_t *par = json_object_get(j, "parents");
    if (!par) {
        ps_errf(e, PS_EINPUT, "%s.parents: missing", where);
        return NULL;
    }
    if (!json_is_array(par)) {
        ps_errf(e, PS_EINPUT, "%s.parents: expected an array, got %s", where,
                ps_json_type_name(par));
        return NULL;
    }
    size_t n = json_array_size(par);
    if (n < 1 || n > SD_TREE_MAX_NODES) {
        ps_errf(e, PS_EINPUT, "%s.parents: %zu nodes, need 1..%d (root included)", where, n,
                SD_TREE_MAX_NODES);
        return NULL;
    }
    const json_t *tok = json_object_get(j, "tokens");
    if (tok && (!json_is_array(tok) || json_array_size(tok) != n)) {
        ps_errf(e, PS_EINPUT, "%s.tokens: expected an array of %zu integers", where, n);
        return NULL;
    }
    int *p = malloc(n * sizeof(int)), *tk = malloc(n * sizeof(int));
    sd_tree *t = NULL;
    if (!p || !tk) {
        ps_errf(e, PS_ERUN, "%s: out of memory", where);
        goto out;
    }
    if (int_array(par, where, "parents", p, e) || (tok && int_array(tok, where, "tokens", tk, e)))
        goto out;
    t = sd_tree_from_parents(p, tok ? tk : NULL, (int)n, where, e);
    if (!t)
        goto out;
    long long nn = t->n, dd = t->depth;
    if (ps_json_get_int(j, where, "num_nodes", 0, &nn, e) ||
        ps_json_get_int(j, where, "depth", 0, &dd, e))
        goto bad;
    if (nn != t->n) {
        ps_errf(e, PS_EINPUT, "%s.num_nodes: %lld, but parents has %d entries", where, nn, t->n);
        goto bad;
    }
    if (dd != t->depth) {
        ps_errf(e, PS_EINPUT, "%s.depth: %lld, but the parent array gives depth %d", where, dd,
                t->depth);
        goto bad;
    }
    goto out;
bad:
    sd_tree_free(t);
    t = NULL;
out:
    free(p);
    free(tk);
    return t;
}

static int check_acc(const double *p, int m, ps_err *e)
{
    if (m < 0 || (m > 0 && !p))
        return ps_errf(e, PS_EINPUT, "acceptance: bad length %d", m);
    double s = 0;
    for (int k = 0; k < m; k++) {
        if (!(p[k] >= 0 && p[k] <= 1))
            return ps_errf(e, PS_EINPUT, "acceptance[%d]: %g not in [0, 1]", k, p[k]);
        s += p[k];
    }
    if (s > 1 + 1e-9)
        return ps_errf(e, PS_EINPUT,
                       "acceptance: sum %g > 1 (at most one child is accepted under greedy "
                       "verification)",
                       s);
    return 0;
}

static double pk(const double *p, int m, int rank)
{
    return rank >= 1 && rank <= m ? p[rank - 1] : 0.0;
}

int sd_tree_expected_tokens(const sd_tree *t, const double *p, int m, double *out, ps_err *e)
{
    if (check_acc(p, m, e))
        return PS_EINPUT;
    double *pa = malloc((size_t)t->n * sizeof(double));
    if (!pa)
        return ps_errf(e, PS_ERUN, "expected tokens: out of memory");
    double s = 1.0; /* the bonus token */
    pa[0] = 1.0;
    for (int i = 1; i < t->n; i++) { /* DFS order: parent already done */
        pa[i] = pa[t->parent[i]] * pk(p, m, t->rank[i]);
        s += pa[i];
    }
    free(pa);
    *out = s;
    return 0;
}

/* splitmix64: small, seedable, good enough for Monte Carlo checks. */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int sd_tree_mc_tokens(const sd_tree *t, const double *p, int m, long samples, uint64_t seed,
                      double *mean, double *stderr_out, ps_err *e)
{
    if (check_acc(p, m, e))
        return PS_EINPUT;
    if (samples < 1)
        return ps_errf(e, PS_EINPUT, "samples: %ld, need >= 1", samples);
    uint64_t s = seed;
    double sum = 0, sum2 = 0;
    for (long it = 0; it < samples; it++) {
        int v = 0, tokens = 1;
        for (;;) {
            double u = (double)(sm64(&s) >> 11) * 0x1.0p-53, c = 0;
            int next = -1;
            for (int ch = t->first_child[v]; ch >= 0; ch = t->next_sib[ch]) {
                c += pk(p, m, t->rank[ch]);
                if (u < c) {
                    next = ch;
                    break;
                }
            }
            if (next < 0)
                break;
            v = next;
            tokens++;
        }
        sum += tokens;
        sum2 += (double)tokens * tokens;
    }
    double mu = sum / (double)samples;
    *mean = mu;
    if (stderr_out) {
        double var = sum2 / (double)samples - mu * mu;
        *stderr_out = sqrt((var > 0 ? var : 0) / (double)samples);
    }
    return 0;
}
