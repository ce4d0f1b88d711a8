/* Speculative generation with the real tiny models: see real/specgen.h and
 * docs/real-specgen.md.
 *
 * Cache discipline (every model, LLM and SSMs): the cache holds the context
 * minus its last token (the root of the next tree, never decoded before the
 * step that expands it).  A step:
 *  1. each SSM brings its cache up to date with one causal chain call over
 *     the tokens it has not seen yet (the root last: its logits start the
 *     tree), then grows its expansion tree level by level with
 *     gpt_decode_forest (rows base.. hold the tree in level order; leaves at
 *     the last level are never decoded);
 *  2. the LLM decodes the whole (merged) tree in one gpt_decode pass at rows
 *     [L - 1, L - 1 + n) (the root included, so the pass gives p at every
 *     node);
 *  3. the verifier accepts a path; the LLM keeps the rows of the root and the
 *     accepted nodes (gpt_kv_keep); each SSM keeps the rows of the longest
 *     prefix of the accepted path it decoded itself and re-decodes the rest
 *     in step 1 of the next step (one chain call, usually 1-2 tokens). */
#include "real/specgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "real/rt_internal.h" /* TRY */
#include "sim/specdec/build.h"
#include "sim/specdec/rng.h"
#include "sim/specdec/tree.h"
#include "sim/specdec/verify.h"

#define SG_TRY(x)                                                                               \
    do {                                                                                        \
        if ((rc = (x)) != 0)                                                                    \
            goto done;                                                                          \
    } while (0)

/* First maximum (lowest id on ties). */
static int32_t argmax_row(const double *l, int V)
{
    int32_t b = 0;
    for (int a = 1; a < V; a++)
        if (l[a] > l[b])
            b = a;
    return b;
}

/* row = softmax(l / temp), normalised. */
static void softmax_row(const double *l, int V, double temp, double *row)
{
    double mx = l[0];
    for (int a = 1; a < V; a++)
        if (l[a] > mx)
            mx = l[a];
    double s = 0;
    for (int a = 0; a < V; a++)
        s += row[a] = exp((l[a] - mx) / temp);
    for (int a = 0; a < V; a++)
        row[a] /= s;
}

/* ------------------------------------------------------------------ one SSM */

typedef struct ssm_state {
    gpt *m;
    gpt_kv kv;
    int64_t seen;     /* context tokens in the cache */
    sd_tree *t;       /* this step's tree */
    int64_t base;     /* cache row of the root */
    int32_t *row;     /* [n] row - base of node u, -1: not decoded (a leaf) */
    int32_t *ord;     /* decoded nodes in row order */
    int32_t *fpar;    /* forest parent array in row order */
    double *lg;       /* [n * V] logits of the decoded nodes (by node) */
    double *q;        /* [n * V] drafting rows of the decoded nodes (by node) */
    int cap_nodes;
} ssm_state;

static void ssm_free(ssm_state *s)
{
    gpt_kv_free(&s->kv);
    sd_tree_free(s->t);
    free(s->row);
    free(s->ord);
    free(s->fpar);
    free(s->lg);
    free(s->q);
    memset(s, 0, sizeof *s);
}

static int ssm_reserve(ssm_state *s, int n, int V, ps_err *e)
{
    if (n <= s->cap_nodes)
        return 0;
    free(s->row);
    free(s->ord);
    free(s->fpar);
    free(s->lg);
    free(s->q);
    s->row = malloc((size_t)n * sizeof *s->row);
    s->ord = malloc((size_t)n * sizeof *s->ord);
    s->fpar = malloc((size_t)n * sizeof *s->fpar);
    s->lg = malloc((size_t)n * (size_t)V * sizeof *s->lg);
    s->q = malloc((size_t)n * (size_t)V * sizeof *s->q);
    s->cap_nodes = n;
    if (!s->row || !s->ord || !s->fpar || !s->lg || !s->q) {
        s->cap_nodes = 0;
        return ps_errf(e, PS_ERUN, "sg_generate: out of memory");
    }
    return 0;
}

/* Draft this SSM's tree of expansion k[0..d) (d may be 0: the root alone)
 * after the context ctx[0..L). */
static int ssm_draft(ssm_state *s, const int *k, int d, sd_draft_kind kind, double temp,
                     const int32_t *ctx, int64_t L, sd_rng *r, ps_err *e)
{
    const int V = s->m->cfg.vocab;
    sd_tree_free(s->t);
    s->t = NULL;
    if (d > 0)
        s->t = sd_tree_from_expansion(k, d, e);
    else {
        int par0 = -1;
        s->t = sd_tree_from_parents(&par0, NULL, 1, "sg_generate", e);
    }
    if (!s->t)
        return e && e->code ? e->code : PS_ERUN;
    sd_tree *t = s->t;
    t->token[0] = ctx[L - 1];
    TRY(ssm_reserve(s, t->n, V, e));
    for (int u = 0; u < t->n; u++)
        s->row[u] = -1;
    /* catch up: the unseen context, root last */
    const int64_t nc = L - s->seen;
    double *clg = malloc((size_t)nc * (size_t)V * sizeof *clg);
    if (!clg)
        return ps_errf(e, PS_ERUN, "sg_generate: out of memory");
    int rc = gpt_decode(s->m, &s->kv, nc, ctx + s->seen, NULL, clg, e);
    if (!rc)
        memcpy(s->lg, clg + (nc - 1) * V, (size_t)V * sizeof *s->lg);
    free(clg);
    if (rc)
        return rc;
    s->seen = L;
    s->base = L - 1;
    s->row[0] = 0;
    s->ord[0] = 0;
    s->fpar[0] = -1;
    int nd = 1;        /* decoded nodes */
    int lo = 0, hi = 1; /* the current level: ord[lo, hi) */
    int32_t *tok = malloc((size_t)t->n * sizeof *tok);
    double *lg = malloc((size_t)t->n * (size_t)V * sizeof *lg);
    if (!tok || !lg) {
        free(tok);
        free(lg);
        return ps_errf(e, PS_ERUN, "sg_generate: out of memory");
    }
    for (int lev = 1; lev <= d && !rc; lev++) {
        /* children of every node of the level from its drafting row */
        for (int i = lo; i < hi && !rc; i++) {
            int u = s->ord[i];
            double *q = s->q + (size_t)u * V;
            softmax_row(s->lg + (size_t)u * V, V, temp, q);
            rc = sd_draft_children(t, u, V, kind, q, r, e);
        }
        if (rc || lev == d)
            break;
        /* decode the new level (not the leaves) */
        int nn = 0;
        for (int i = lo; i < hi; i++)
            for (int c = t->first_child[s->ord[i]]; c >= 0; c = t->next_sib[c]) {
                s->ord[nd + nn] = c;
                s->row[c] = nd + nn;
                s->fpar[nd + nn] = s->row[t->parent[c]];
                tok[nn++] = t->token[c];
            }
        rc = gpt_decode_forest(s->m, &s->kv, s->base, nn, tok, s->fpar, lg, e);
        for (int i = 0; i < nn && !rc; i++)
            memcpy(s->lg + (size_t)s->ord[nd + i] * V, lg + (size_t)i * V,
                   (size_t)V * sizeof *lg);
        lo = nd;
        hi = nd + nn;
        nd += nn;
    }
    free(tok);
    free(lg);
    return rc;
}

/* After a verdict accepting tokens acc[0..na): keep the rows of the root
 * and of the longest accepted prefix this SSM decoded; the rest is caught up
 * by the next step's chain call. */
static int ssm_accept(ssm_state *s, const int32_t *acc, int na, ps_err *e)
{
    const sd_tree *t = s->t;
    int64_t rows[SD_MAX_PATH + 1];
    int nk = 0, u = 0;
    rows[nk++] = s->base;
    for (int i = 0; i < na; i++) {
        int c = t->first_child[u];
        while (c >= 0 && t->token[c] != acc[i])
            c = t->next_sib[c];
        if (c < 0 || s->row[c] < 0)
            break;
        rows[nk++] = s->base + s->row[c];
        u = c;
    }
    TRY(gpt_kv_keep(&s->kv, s->base, rows, nk, e));
    s->seen = s->base + nk;
    return 0;
}

/* ------------------------------------------------------------------ generation */

static sd_draft_kind draft_kind(sg_verify v)
{
    return v == SG_MSS ? SD_DRAFT_IID : v == SG_SWOR ? SD_DRAFT_SWOR : SD_DRAFT_TOPK;
}

static int tree_size(const int *k, int d)
{
    long n = 1, w = 1;
    for (int i = 0; i < d; i++) {
        w *= k[i];
        n += w;
        if (n > SD_TREE_MAX_NODES)
            return SD_TREE_MAX_NODES + 1;
    }
    return (int)n;
}

int sg_generate(gpt *llm, gpt *const *ssms, int nssm_avail, const sg_opts *o,
                const int32_t *prompt, int plen, int32_t *out, int *nout, sg_stats *st,
                ps_err *e)
{
    const double t_all = ps_now_s();
    if (st)
        memset(st, 0, sizeof *st);
    if (nout)
        *nout = 0;
    if (!llm || !o || !prompt || (!out && o->max_new > 0))
        return ps_errf(e, PS_EINPUT, "sg_generate: llm, opts, prompt and out must be given");
    if (o->method < SG_INCREMENTAL || o->method > SG_MERGE)
        return ps_errf(e, PS_EINPUT, "sg_generate: method %d unknown", (int)o->method);
    if (o->verify < SG_GREEDY || o->verify > SG_NAIVE)
        return ps_errf(e, PS_EINPUT, "sg_generate: verify %d unknown", (int)o->verify);
    if (o->verify != SG_GREEDY && !(o->temperature > 0 && isfinite(o->temperature)))
        return ps_errf(e, PS_EINPUT,
                       "sg_generate: temperature %g must be > 0 for stochastic verification",
                       o->temperature);
    if (o->max_new < 0)
        return ps_errf(e, PS_EINPUT, "sg_generate: max_new %d < 0", o->max_new);
    const int V = llm->cfg.vocab;
    const int spec = o->method != SG_INCREMENTAL;
    const int nssm = !spec ? 0 : o->method == SG_MERGE ? o->nssm : 1;
    int limit = llm->cfg.ctx;
    if (spec) {
        if (o->depth < 1 || o->depth > 16)
            return ps_errf(e, PS_EINPUT, "sg_generate: depth %d outside [1, 16]", o->depth);
        if (o->method != SG_SEQUENCE)
            for (int i = 0; i < o->depth; i++)
                if (o->expansion[i] < 1)
                    return ps_errf(e, PS_EINPUT, "sg_generate: expansion[%d] = %d < 1", i,
                                   o->expansion[i]);
        if (nssm < 1 || nssm > 32 || nssm > nssm_avail || !ssms)
            return ps_errf(e, PS_EINPUT, "sg_generate: %d SSMs requested (nssm %d), %d available",
                           nssm, o->nssm, nssm_avail);
        for (int i = 0; i < nssm; i++) {
            if (!ssms[i])
                return ps_errf(e, PS_EINPUT, "sg_generate: ssms[%d] is NULL", i);
            if (ssms[i]->cfg.vocab != V)
                return ps_errf(e, PS_EINPUT, "sg_generate: ssms[%d] vocab %d != llm vocab %d", i,
                               ssms[i]->cfg.vocab, V);
            if (ssms[i]->cfg.ctx < limit)
                limit = ssms[i]->cfg.ctx;
        }
    }
    if (plen < 1 || plen > limit)
        return ps_errf(e, PS_EINPUT,
                       "sg_generate: prompt length %d outside [1, ctx %d] (the smallest ctx of "
                       "the models used)",
                       plen, limit);
    int kexp[16];
    for (int i = 0; i < 16; i++)
        kexp[i] = o->method == SG_SEQUENCE ? 1 : o->expansion[i];
    const int full = spec ? tree_size(kexp, o->depth) : 1;
    if (full > SD_TREE_MAX_NODES)
        return ps_errf(e, PS_EINPUT, "sg_generate: expansion tree of more than %d nodes",
                       SD_TREE_MAX_NODES);
    const int maxn = spec ? (full - 1) * nssm + 1 : 1; /* merged tree bound */

    int rc = 0, gen = 0;
    int64_t L = plen;
    sd_rng rng;
    sd_rng_seed(&rng, o->seed);
    gpt_kv lkv;
    memset(&lkv, 0, sizeof lkv);
    ssm_state ss[32];
    memset(ss, 0, sizeof ss);
    const sd_tree **tl = calloc(32, sizeof *tl);
    int32_t *ctx = malloc((size_t)(plen + o->max_new + 1) * sizeof *ctx);
    double *llg = malloc((size_t)maxn * (size_t)V * sizeof *llg);
    double *prow_buf = malloc((size_t)maxn * (size_t)V * sizeof *prow_buf);
    const double **prow = calloc((size_t)maxn, sizeof *prow);
    const double **qrow = calloc((size_t)maxn, sizeof *qrow);
    int32_t *amax = malloc((size_t)maxn * sizeof *amax);
    int32_t *own_s = malloc((size_t)maxn * sizeof *own_s), *own_u = malloc((size_t)maxn * sizeof *own_u);
    int32_t *img = malloc((size_t)(full + 1) * sizeof *img);
    sd_verdict *vd = malloc(sizeof *vd);
    sd_tree *merged = NULL;
    int64_t *keep = malloc((size_t)(maxn + 1) * sizeof *keep);
    if (!tl || !ctx || !llg || !prow_buf || !prow || !qrow || !amax || !own_s || !own_u ||
        !img || !vd || !keep) {
        rc = ps_errf(e, PS_ERUN, "sg_generate: out of memory");
        goto done;
    }
    memcpy(ctx, prompt, (size_t)plen * sizeof *ctx);
    SG_TRY(gpt_kv_init(&lkv, llm, limit, limit, e));
    for (int i = 0; i < nssm; i++) {
        ss[i].m = ssms[i];
        SG_TRY(gpt_kv_init(&ss[i].kv, ssms[i], limit, limit, e));
    }
    if (plen > 1) { /* the LLM's prefill: everything but the root */
        double t0 = ps_now_s();
        SG_TRY(gpt_decode(llm, &lkv, plen - 1, prompt, NULL, NULL, e));
        if (st)
            st->verify_s += ps_now_s() - t0;
    }
    const sd_draft_kind dk = draft_kind(o->verify);
    const double dtemp = o->verify == SG_GREEDY || o->verify == SG_NAIVE
                             ? (o->temperature > 0 ? o->temperature : 1.0)
                             : o->temperature;
    while (gen < o->max_new && L < limit) {
        /* depth that fits: positions L - 1 + depth < limit - 1 .. and rows */
        int d = spec ? o->depth : 0;
        if (d > limit - L - 1)
            d = (int)(limit - L - 1);
        while (d > 0 && L - 1 + (tree_size(kexp, d) - 1) * nssm + 1 > limit)
            d--;
        const sd_tree *t;
        double t0 = ps_now_s();
        if (!spec) {
            int32_t root = ctx[L - 1];
            SG_TRY(gpt_decode(llm, &lkv, 1, &root, NULL, llg, e));
            int32_t tok = argmax_row(llg, V);
            if (o->verify != SG_GREEDY) { /* a draw from softmax(logits / T) */
                softmax_row(llg, V, o->temperature, prow_buf);
                int x = sd_rng_pick(&rng, prow_buf, V, 0);
                tok = x >= 0 ? x : tok;
            }
            if (st) {
                st->verify_s += ps_now_s() - t0;
                st->steps++;
                st->tree_tokens++;
            }
            out[gen++] = tok;
            ctx[L++] = tok;
            continue;
        }
        /* 1. drafting */
        for (int i = 0; i < nssm; i++)
            SG_TRY(ssm_draft(&ss[i], kexp, d, dk, dtemp, ctx, L, &rng, e));
        if (nssm == 1) {
            t = ss[0].t;
            for (int v = 0; v < t->n; v++) {
                own_s[v] = 0;
                own_u[v] = v;
            }
        } else {
            for (int i = 0; i < nssm; i++)
                tl[i] = ss[i].t;
            sd_tree_free(merged);
            merged = sd_tree_merge(tl, nssm, NULL, e);
            if (!merged) {
                rc = e && e->code ? e->code : PS_ERUN;
                goto done;
            }
            t = merged;
            for (int v = 0; v < t->n; v++)
                own_s[v] = -1;
            /* each SSM's nodes onto the merged tree; q from the first SSM having the node */
            for (int i = 0; i < nssm; i++) {
                const sd_tree *a = ss[i].t;
                img[0] = 0;
                for (int u = 1; u < a->n; u++) {
                    int c = t->first_child[img[a->parent[u]]];
                    while (c >= 0 && t->token[c] != a->token[u])
                        c = t->next_sib[c];
                    if (c < 0) {
                        rc = ps_errf(e, PS_ERUN, "sg_generate: merged tree lacks a node of SSM %d",
                                     i);
                        goto done;
                    }
                    img[u] = c;
                    if (own_s[c] < 0) {
                        own_s[c] = i;
                        own_u[c] = u;
                    }
                }
            }
        }
        double t1 = ps_now_s();
        /* 2. one LLM pass over the tree */
        SG_TRY(gpt_decode(llm, &lkv, t->n, t->token, t->parent, llg, e));
        /* 3. verification */
        if (o->verify == SG_GREEDY) {
            for (int u = 0; u < t->n; u++)
                amax[u] = argmax_row(llg + (size_t)u * V, V);
            sd_verify_greedy(t, amax, vd);
        } else {
            for (int u = 0; u < t->n; u++) {
                softmax_row(llg + (size_t)u * V, V, o->temperature, prow_buf + (size_t)u * V);
                prow[u] = prow_buf + (size_t)u * V;
            }
            qrow[0] = NULL;
            for (int v = 1; v < t->n; v++) {
                const ssm_state *s = &ss[own_s[v]];
                qrow[v] = s->q + (size_t)s->t->parent[own_u[v]] * V;
            }
            if (o->verify == SG_MSS)
                rc = sd_verify_mss_rows(t, V, prow, qrow, &rng, vd, e);
            else if (o->verify == SG_SWOR)
                rc = sd_verify_swor_rows(t, V, prow, qrow, &rng, vd, e);
            else
                rc = sd_verify_naive_rows(t, V, prow, &rng, vd, e);
            if (rc)
                goto done;
        }
        /* keep the accepted path everywhere */
        const int64_t base = L - 1;
        int nk = 0;
        keep[nk++] = base;
        for (int i = 0; i < vd->accepted; i++)
            keep[nk++] = base + vd->node[i];
        SG_TRY(gpt_kv_keep(&lkv, base, keep, nk, e));
        double t2 = ps_now_s();
        for (int i = 0; i < nssm; i++)
            SG_TRY(ssm_accept(&ss[i], vd->token, vd->accepted, e));
        double t3 = ps_now_s();
        if (st) {
            st->draft_s += (t1 - t0) + (t3 - t2);
            st->verify_s += t2 - t1;
            st->steps++;
            st->tree_tokens += t->n;
        }
        for (int i = 0; i <= vd->accepted && gen < o->max_new; i++) {
            out[gen++] = vd->token[i];
            ctx[L++] = vd->token[i];
        }
    }
done:
    if (nout)
        *nout = gen;
    if (st) {
        st->tokens = gen;
        st->tokens_per_step = st->steps ? (double)gen / (double)st->steps : 0;
        st->total_s = ps_now_s() - t_all;
    }
    gpt_kv_free(&lkv);
    for (int i = 0; i < 32; i++)
        ssm_free(&ss[i]);
    sd_tree_free(merged);
    free(tl);
    free(ctx);
    free(llg);
    free(prow_buf);
    free(prow);
    free(qrow);
    free(amax);
    free(own_s);
    free(own_u);
    free(img);
    free(vd);
    free(keep);
    return rc;
}

/* ------------------------------------------------------------------ traces and timing */

int sg_rank_trace(gpt *ssm, const int32_t *prompt, int plen, const int32_t *seq, int n, int kmax,
                  int32_t *ranks, ps_err *e)
{
    if (!ssm || !prompt || !seq || !ranks)
        return ps_errf(e, PS_EINPUT, "sg_rank_trace: NULL argument");
    if (plen < 1 || n < 0 || plen + n - 1 > ssm->cfg.ctx)
        return ps_errf(e, PS_EINPUT,
                       "sg_rank_trace: prompt %d + continuation %d - 1 tokens must fit ctx %d "
                       "(prompt >= 1)",
                       plen, n, ssm->cfg.ctx);
    if (kmax < 1)
        return ps_errf(e, PS_EINPUT, "sg_rank_trace: kmax %d < 1", kmax);
    if (n == 0)
        return 0;
    const int V = ssm->cfg.vocab;
    const int64_t T = plen + n - 1;
    for (int j = 0; j < n; j++)
        if (seq[j] < 0 || seq[j] >= V)
            return ps_errf(e, PS_EINPUT, "sg_rank_trace: seq[%d] = %d outside [0, %d)", j, seq[j],
                           V);
    int32_t *all = malloc((size_t)T * sizeof *all);
    double *lg = malloc((size_t)T * (size_t)V * sizeof *lg);
    gpt_kv kv;
    memset(&kv, 0, sizeof kv);
    int rc = 0;
    if (!all || !lg)
        rc = ps_errf(e, PS_ERUN, "sg_rank_trace: out of memory");
    if (!rc) {
        memcpy(all, prompt, (size_t)plen * sizeof *all);
        memcpy(all + plen, seq, (size_t)(n - 1) * sizeof *all);
        rc = gpt_kv_init(&kv, ssm, T, T, e);
    }
    rc = rc ? rc : gpt_decode(ssm, &kv, T, all, NULL, lg, e);
    for (int j = 0; j < n && !rc; j++) {
        const double *l = lg + (size_t)(plen - 1 + j) * V;
        const int32_t s = seq[j];
        int rank = 1;
        for (int a = 0; a < V; a++)
            if (l[a] > l[s] || (l[a] == l[s] && a < s))
                rank++;
        ranks[j] = rank <= kmax ? rank : 0;
    }
    gpt_kv_free(&kv);
    free(all);
    free(lg);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int sg_time_verify(gpt *m, int ctx, int n, int reps, double *seconds, ps_err *e)
{
    if (!m || !seconds)
        return ps_errf(e, PS_EINPUT, "sg_time_verify: NULL argument");
    if (ctx < 0 || n < 1 || ctx + n > m->cfg.ctx || reps < 1)
        return ps_errf(e, PS_EINPUT,
                       "sg_time_verify: ctx %d + n %d must fit the model's ctx %d (n >= 1), "
                       "reps %d >= 1",
                       ctx, n, m->cfg.ctx, reps);
    const int V = m->cfg.vocab;
    gpt_kv kv;
    int64_t cap = ctx + n;
    TRY(gpt_kv_init(&kv, m, cap, cap, e));
    int32_t *tok = malloc((size_t)cap * sizeof *tok), *par = malloc((size_t)n * sizeof *par);
    double *lg = malloc((size_t)n * (size_t)V * sizeof *lg), *ts = malloc((size_t)reps * sizeof *ts);
    int rc = 0;
    if (!tok || !par || !lg || !ts)
        rc = ps_errf(e, PS_ERUN, "sg_time_verify: out of memory");
    sd_rng r;
    sd_rng_seed(&r, 12345);
    for (int64_t i = 0; i < cap && !rc; i++)
        tok[i] = (int32_t)(sd_rng_next(&r) % (uint64_t)V);
    for (int i = 0; i < n && !rc; i++) /* a binary tree in DFS-compatible order */
        par[i] = i == 0 ? -1 : (i - 1) / 2;
    if (!rc && ctx > 0)
        rc = gpt_decode(m, &kv, ctx, tok, NULL, NULL, e);
    for (int k = 0; k < reps && !rc; k++) {
        double t0 = ps_now_s();
        rc = gpt_decode(m, &kv, n, tok + ctx, par, lg, e);
        ts[k] = ps_now_s() - t0;
        rc = rc ? rc : gpt_kv_truncate(&kv, ctx, e);
    }
    if (!rc) {
        qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
        *seconds = reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]);
    }
    gpt_kv_free(&kv);
    free(tok);
    free(par);
    free(lg);
    free(ts);
    return rc;
}
