/* sim/specdec: serving simulator on the DES engine, the hardware-aware
 * optimizer and the single-request predictor (see serve.h). */
#include "sim/specdec/serve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/des/des.h"
#include "sim/specdec/build.h"

static const char *const method_names[] = {"incremental", "sequence", "specinfer", "optimized",
                                           "tree",        "merge"};
#define NMETHODS 6

const char *sd_method_name(sd_method m)
{
    return (unsigned)m < NMETHODS ? method_names[m] : "?";
}

int sd_method_from_name(const char *name)
{
    for (int i = 0; i < NMETHODS; i++)
        if (name && !strcmp(name, method_names[i]))
            return i;
    return -1;
}

int sd_accept_to_positional(const sd_accept *a, int m, double *p, ps_err *e)
{
    if (m < 1 || m > 64)
        return ps_errf(e, PS_EINPUT, "acceptance: %d ranks requested (1..64)", m);
    double topk[64];
    int rc = sd_accept_topk(a, m, topk, e);
    if (rc)
        return rc;
    double prev = 0;
    for (int k = 0; k < m; k++) {
        double v = topk[k] - prev;
        p[k] = v > 0 ? v : 0;
        prev = topk[k] > prev ? topk[k] : prev;
    }
    return 0;
}

/* ------------------------------------------------------------------ optimizer */

typedef struct opt_point {
    int n, max_depth;
    double value;
    sd_tree *tree;
} opt_point;

struct sd_optimizer {
    opt_point *pt;
    int npt;
};

void sd_optimizer_free(sd_optimizer *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->npt; i++)
        sd_tree_free(o->pt[i].tree);
    free(o->pt);
    free(o);
}

static int default_grid(int max_n, int *g)
{
    int n = 0;
    for (int b = 1; b <= SD_TREE_MAX_NODES; b *= 2) {
        if (b <= max_n)
            g[n++] = b;
        if (b >= 2 && b + b / 2 <= max_n)
            g[n++] = b + b / 2;
    }
    if (n == 0 || g[n - 1] != max_n)
        g[n++] = max_n;
    return n;
}

sd_optimizer *sd_optimizer_new(const double *p, int m, int max_n, const int *n_grid, int ngrid,
                               const int *depth_grid, int ndepth, ps_err *e)
{
    int dg_default = 0, gbuf[64];
    if (!n_grid) {
        if (max_n < 1 || max_n > SD_TREE_MAX_NODES) {
            ps_errf(e, PS_EINPUT, "optimizer: max_n %d outside 1..%d", max_n, SD_TREE_MAX_NODES);
            return NULL;
        }
        ngrid = default_grid(max_n, gbuf);
        n_grid = gbuf;
    }
    if (!depth_grid) {
        depth_grid = &dg_default;
        ndepth = 1;
    }
    if (ngrid < 1 || ndepth < 1) {
        ps_errf(e, PS_EINPUT, "optimizer: empty node or depth grid");
        return NULL;
    }
    for (int i = 0; i < ngrid; i++)
        if (n_grid[i] < 1 || n_grid[i] > SD_TREE_MAX_NODES) {
            ps_errf(e, PS_EINPUT, "optimizer: n_grid[%d] = %d outside 1..%d", i, n_grid[i],
                    SD_TREE_MAX_NODES);
            return NULL;
        }
    sd_optimizer *o = calloc(1, sizeof *o);
    if (o)
        o->pt = calloc((size_t)ngrid * (size_t)ndepth, sizeof *o->pt);
    if (!o || !o->pt) {
        free(o);
        ps_errf(e, PS_ERUN, "optimizer: out of memory");
        return NULL;
    }
    for (int di = 0; di < ndepth; di++)
        for (int i = 0; i < ngrid; i++) {
            opt_point *q = &o->pt[o->npt];
            q->n = n_grid[i];
            q->max_depth = depth_grid[di] > 0 ? depth_grid[di] : 0;
            q->tree = sd_sequoia_opt(p, m, q->n, q->max_depth, &q->value, NULL, e);
            if (!q->tree) {
                ps_err_prefix(e, "optimizer (n %d, depth %d): ", q->n, q->max_depth);
                sd_optimizer_free(o);
                return NULL;
            }
            o->npt++;
        }
    return o;
}

static void eval_point(const opt_point *q, const sd_cost *c, int batch, int ctx,
                       sd_opt_choice *ch)
{
    ch->n = q->n;
    ch->max_depth = q->max_depth;
    ch->depth = q->tree->depth;
    ch->tokens = q->value;
    ch->verify_s = sd_cost_verify(c, batch, q->n, ctx);
    ch->draft_s = q->tree->n > 1 ? sd_cost_draft_tree(c, batch, q->tree, 0, ctx) : 0;
    ch->step_s = ch->verify_s + ch->draft_s;
    ch->s_per_token = ch->step_s / ch->tokens;
}

int sd_optimizer_pick(sd_optimizer *o, const sd_cost *c, int batch, int ctx, sd_opt_choice *out,
                      ps_err *e)
{
    if (batch < 1 || ctx < 0)
        return ps_errf(e, PS_EINPUT, "optimizer: batch %d, ctx %d", batch, ctx);
    int best = -1;
    double bestobj = -1;
    sd_opt_choice ch, bestch;
    memset(&bestch, 0, sizeof bestch);
    for (int i = 0; i < o->npt; i++) {
        eval_point(&o->pt[i], c, batch, ctx, &ch);
        if (!(ch.step_s > 0) || !isfinite(ch.step_s))
            return ps_errf(e, PS_ERUN, "optimizer: step time %g at n %d", ch.step_s, ch.n);
        double obj = ch.tokens / ch.step_s;
        int better = best < 0 || obj > bestobj ||
                     (obj == bestobj && (ch.n < bestch.n ||
                                         (ch.n == bestch.n && ch.max_depth < bestch.max_depth)));
        if (better) {
            best = i;
            bestobj = obj;
            bestch = ch;
        }
    }
    *out = bestch;
    return 0;
}

sd_tree *sd_optimizer_tree(sd_optimizer *o, const sd_opt_choice *ch, ps_err *e)
{
    for (int i = 0; i < o->npt; i++)
        if (o->pt[i].n == ch->n && o->pt[i].max_depth == ch->max_depth) {
            const sd_tree *t = o->pt[i].tree;
            return sd_tree_from_parents(t->parent, t->token, t->n, "optimizer", e);
        }
    ps_errf(e, PS_EINPUT, "optimizer: (n %d, depth %d) is not on the grid", ch->n, ch->max_depth);
    return NULL;
}

double sd_optimizer_objective(sd_optimizer *o, const sd_cost *c, int batch, int ctx, int n,
                              int max_depth)
{
    for (int i = 0; i < o->npt; i++)
        if (o->pt[i].n == n && o->pt[i].max_depth == (max_depth > 0 ? max_depth : 0)) {
            sd_opt_choice ch;
            eval_point(&o->pt[i], c, batch, ctx, &ch);
            return ch.tokens / ch.step_s;
        }
    return -1;
}

static sd_tree *chain_tree(int k, ps_err *e)
{
    int ks[256];
    for (int i = 0; i < k; i++)
        ks[i] = 1;
    return sd_tree_from_expansion(ks, k, e);
}

int sd_best_chain(const sd_cost *c, const sd_accept *a, int batch, int ctx, int kmax,
                  int *k_out, double *s_per_token, ps_err *e)
{
    if (kmax < 1 || kmax > 256)
        return ps_errf(e, PS_EINPUT, "sequence: kmax %d outside 1..256", kmax);
    int bestk = 0;
    double best = INFINITY;
    for (int k = 1; k <= kmax; k++) {
        sd_tree *t = chain_tree(k, e);
        if (!t)
            return e ? e->code : PS_ERUN;
        double tok = 0, spt = INFINITY;
        int rc = sd_accept_expected(a, t, &tok, e);
        if (!rc)
            spt = (sd_cost_verify(c, batch, t->n, ctx) + sd_cost_draft_tree(c, batch, t, 0, ctx)) /
                  tok;
        sd_tree_free(t);
        if (rc)
            return rc;
        if (spt < best) {
            best = spt;
            bestk = k;
        }
    }
    *k_out = bestk;
    if (s_per_token)
        *s_per_token = best;
    return 0;
}

int sd_predict_time_per_token(const sd_cost *c, const sd_tree *t, const sd_accept *a,
                              int draft_levels, int ctx, double *tokens_per_step,
                              double *s_per_token, ps_err *e)
{
    if (!c || !t || !a)
        return ps_errf(e, PS_EINPUT, "predict: cost, tree and acceptance are required");
    if (ctx < 0)
        return ps_errf(e, PS_EINPUT, "predict: ctx %d < 0", ctx);
    double tok;
    int rc = sd_accept_expected(a, t, &tok, e);
    if (rc)
        return rc;
    double step = sd_cost_verify(c, 1, t->n, ctx);
    if (t->n > 1)
        step += sd_cost_draft_tree(c, 1, t, draft_levels, ctx);
    if (!(tok > 0) || !isfinite(step))
        return ps_errf(e, PS_ERUN, "predict: tokens per step %g, step time %g", tok, step);
    if (tokens_per_step)
        *tokens_per_step = tok;
    if (s_per_token)
        *s_per_token = step / tok;
    return 0;
}

/* ------------------------------------------------------------------ serving loop */

void sd_serve_cfg_default(sd_serve_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->method = SD_METHOD_INCREMENTAL;
    cfg->max_batch = 1;
    cfg->opt_max_n = 1024;
    cfg->opt_ranks = 8;
    cfg->merge_ssms = 3;
    cfg->merge_depth = 8;
    cfg->nreq = 1;
    cfg->prompt_default = 128;
    cfg->output_default = 128;
    cfg->prefill = 1;
    cfg->seed = 1;
}

void sd_serve_result_free(sd_serve_result *r)
{
    if (!r)
        return;
    free(r->req_latency_s);
    r->req_latency_s = NULL;
}

typedef struct req {
    double arrival, admit, finish;
    int prompt, out, emitted;
    sd_acc_state st;
} req;

typedef struct sim {
    const sd_cost *c;
    const sd_accept *a;
    const sd_serve_cfg *cfg;
    des *d;
    int llm, ssm;
    req *r;
    int *waiting, wq_head, wq_tail; /* FIFO of request ids */
    int *running, nrun;
    int *admitted, nadm;
    int busy, kick_pending;
    sd_step_plan *plan_by_b; /* [max_batch + 1] */
    sd_rng rng;
    /* stats */
    long steps, prefills, pairs, tokens_in_steps, batch_sum;
    double nodes_sum;
    int done;
    const sd_tree *cur_tree;
} sim;

static int start_iteration(sim *s, double now, ps_err *e);

static int kick_cb(des *d, int task, double now, void *user, ps_err *e)
{
    (void)d;
    (void)task;
    sim *s = user;
    s->kick_pending = 0;
    if (s->busy)
        return 0;
    return start_iteration(s, now, e);
}

static int arrive_cb(des *d, int task, double now, void *user, ps_err *e)
{
    (void)now;
    sim *s = user;
    des_task_info ti;
    if (des_task_get(d, task, &ti, e))
        return PS_ERUN;
    s->waiting[s->wq_tail++] = ti.tag0;
    if (s->busy || s->kick_pending)
        return 0;
    /* start once every arrival at this instant is queued: a zero-length
     * delay runs in a later round at the same time */
    int k = des_add_task(d, DES_NO_RESOURCE, 0, "kick", -1, -1, e);
    if (k < 0 || des_on_finish(d, k, kick_cb, s, e))
        return PS_ERUN;
    s->kick_pending = 1;
    return 0;
}

static double mean_ctx(const sim *s, const int *ids, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += s->r[ids[i]].prompt + s->r[ids[i]].emitted;
    return n ? sum / n : 0;
}

static void finish_req(sim *s, int id, double now)
{
    s->r[id].finish = now;
    s->done++;
}

static int step_cb(des *d, int task, double now, void *user, ps_err *e)
{
    (void)d;
    (void)task;
    sim *s = user;
    const sd_tree *t = s->cur_tree;
    int keep = 0;
    for (int i = 0; i < s->nrun; i++) {
        req *q = &s->r[s->running[i]];
        int k = t ? sd_accept_step(s->a, &q->st, t, &s->rng) : 1;
        if (k < 1)
            return ps_errf(e, PS_ERUN, "serve: acceptance step returned %d tokens", k);
        int rem = q->out - q->emitted;
        if (k > rem)
            k = rem;
        q->emitted += k;
        s->tokens_in_steps += k;
        s->pairs++;
        if (q->emitted >= q->out)
            finish_req(s, s->running[i], now);
        else
            s->running[keep++] = s->running[i];
    }
    s->nrun = keep;
    s->busy = 0;
    return start_iteration(s, now, e);
}

static int start_step(sim *s, ps_err *e)
{
    int B = s->nrun;
    int ctx = (int)lround(mean_ctx(s, s->running, B));
    const sd_step_plan *pl = &s->plan_by_b[B];
    const sd_tree *t = pl->tree;
    double vt, dt;
    sd_step_plan_cost(s->c, pl, B, ctx, &vt, &dt);
    if (!isfinite(vt) || !isfinite(dt))
        return ps_errf(e, PS_ERUN, "serve: step cost not finite (batch %d, ctx %d)", B, ctx);
    s->cur_tree = t;
    s->steps++;
    s->batch_sum += B;
    s->nodes_sum += (double)B * (t ? t->n : 1);
    int dtask = -1;
    if (dt > 0) {
        dtask = des_add_task(s->d, s->ssm, dt, "draft", (int32_t)s->steps, B, e);
        if (dtask < 0)
            return PS_ERUN;
    }
    int v = des_add_task(s->d, s->llm, vt, "verify", (int32_t)s->steps, B, e);
    if (v < 0 || (dtask >= 0 && des_add_dep(s->d, dtask, v, e)) ||
        des_on_finish(s->d, v, step_cb, s, e))
        return PS_ERUN;
    s->busy = 1;
    return 0;
}

static int prefill_cb(des *d, int task, double now, void *user, ps_err *e)
{
    (void)d;
    (void)task;
    sim *s = user;
    for (int i = 0; i < s->nadm; i++) {
        int id = s->admitted[i];
        s->r[id].emitted = 1; /* prefill emits the first output token */
        if (s->r[id].emitted >= s->r[id].out)
            finish_req(s, id, now);
        else
            s->running[s->nrun++] = id;
    }
    s->nadm = 0;
    s->busy = 0;
    return start_iteration(s, now, e);
}

static int start_iteration(sim *s, double now, ps_err *e)
{
    /* admit waiting requests up to the batch cap */
    s->nadm = 0;
    while (s->wq_head < s->wq_tail && s->nrun + s->nadm < s->cfg->max_batch) {
        s->r[s->waiting[s->wq_head]].admit = now;
        s->admitted[s->nadm++] = s->waiting[s->wq_head++];
    }
    if (s->nadm > 0) {
        if (s->cfg->prefill) {
            double psum = 0;
            for (int i = 0; i < s->nadm; i++)
                psum += s->r[s->admitted[i]].prompt;
            int pl = (int)lround(psum / s->nadm);
            double pt = sd_cost_prefill(s->c, s->nadm, pl > 0 ? pl : 1);
            if (!isfinite(pt))
                return ps_errf(e, PS_ERUN, "serve: prefill cost not finite");
            int k = des_add_task(s->d, s->llm, pt, "prefill", (int32_t)s->prefills, s->nadm, e);
            if (k < 0 || des_on_finish(s->d, k, prefill_cb, s, e))
                return PS_ERUN;
            s->prefills++;
            s->busy = 1;
            return 0;
        }
        for (int i = 0; i < s->nadm; i++) {
            int id = s->admitted[i];
            s->r[id].emitted = 1;
            if (s->r[id].emitted >= s->r[id].out)
                finish_req(s, id, now);
            else
                s->running[s->nrun++] = id;
        }
        s->nadm = 0;
    }
    if (s->nrun == 0) {
        s->busy = 0;
        return 0;
    }
    return start_step(s, e);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int n, double q)
{
    if (n == 1)
        return sorted[0];
    double h = q * (n - 1);
    int i = (int)floor(h);
    if (i >= n - 1)
        return sorted[n - 1];
    return sorted[i] + (h - i) * (sorted[i + 1] - sorted[i]);
}

void sd_step_plan_free(sd_step_plan *p)
{
    if (!p)
        return;
    sd_tree_free(p->tree);
    memset(p, 0, sizeof *p);
}

int sd_step_plan_make(const sd_serve_cfg *cfg, const sd_cost *c, const sd_accept *a,
                      sd_optimizer *o, int batch, int ctx, sd_step_plan *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    out->draft_rounds = 1;
    if (batch < 1 || ctx < 0)
        return ps_errf(e, PS_EINPUT, "step plan: batch %d, ctx %d", batch, ctx);
    sd_tree *t = NULL;
    const sd_tree *src = NULL;
    switch (cfg->method) {
    case SD_METHOD_INCREMENTAL:
        return 0;
    case SD_METHOD_SEQUENCE: {
        int k = cfg->seq_k;
        if (k <= 0) {
            int rc = sd_best_chain(c, a, batch, ctx, 16, &k, NULL, e);
            if (rc)
                return rc;
        }
        t = chain_tree(k, e);
        break;
    }
    case SD_METHOD_SPECINFER:
        if (cfg->tree)
            src = cfg->tree;
        else {
            static const int k[8] = {1, 1, 3, 1, 1, 1, 1, 1};
            t = sd_tree_from_expansion(k, 8, e);
        }
        break;
    case SD_METHOD_TREE:
        if (!cfg->tree)
            return ps_errf(e, PS_EINPUT, "serve: method \"tree\" needs a tree");
        src = cfg->tree;
        break;
    case SD_METHOD_OPTIMIZED: {
        if (!o)
            return ps_errf(e, PS_EINPUT, "step plan: method \"optimized\" needs an optimizer");
        sd_opt_choice ch;
        int rc = sd_optimizer_pick(o, c, batch, ctx, &ch, e);
        if (rc)
            return rc;
        t = sd_optimizer_tree(o, &ch, e);
        break;
    }
    case SD_METHOD_MERGE: {
        int k = cfg->merge_ssms > 0 ? cfg->merge_ssms : 3;
        int d = cfg->merge_depth > 0 ? cfg->merge_depth : 8;
        if (k > 64 || d > 256 || 1 + (long)k * d > SD_TREE_MAX_NODES)
            return ps_errf(e, PS_EINPUT, "merge: %d SSMs x %d tokens exceed the tree limits", k,
                           d);
        int ks[256];
        ks[0] = k;
        for (int i = 1; i < d; i++)
            ks[i] = 1;
        t = sd_tree_from_expansion(ks, d, e);
        int g = sd_cost_gpus(c);
        out->draft_depth = d;
        out->draft_rounds = (k + g - 1) / g;
        break;
    }
    default:
        return ps_errf(e, PS_EINPUT, "serve: unknown method %d", (int)cfg->method);
    }
    if (src)
        t = sd_tree_from_parents(src->parent, src->token, src->n, "serve tree", e);
    if (!t)
        return e && e->code ? e->code : PS_ERUN;
    out->tree = t;
    return 0;
}

double sd_step_plan_cost(const sd_cost *c, const sd_step_plan *p, int batch, int ctx,
                         double *verify_s, double *draft_s)
{
    double v, d = 0;
    if (!p->tree) {
        v = sd_cost_verify(c, batch, 1, ctx);
    } else {
        v = sd_cost_verify(c, batch, p->tree->n, ctx);
        if (p->draft_depth > 0) {
            for (int l = 0; l < p->draft_depth; l++)
                d += sd_cost_draft(c, batch, 1, 1, ctx + l);
            d *= p->draft_rounds;
        } else if (p->tree->n > 1) {
            d = sd_cost_draft_tree(c, batch, p->tree, 0, ctx);
        }
    }
    if (verify_s)
        *verify_s = v;
    if (draft_s)
        *draft_s = d;
    return v + d;
}

static int build_trees(sim *s, ps_err *e)
{
    const sd_serve_cfg *cfg = s->cfg;
    int B = cfg->max_batch;
    s->plan_by_b = calloc((size_t)B + 1, sizeof *s->plan_by_b);
    if (!s->plan_by_b)
        return ps_errf(e, PS_ERUN, "serve: out of memory");
    if (cfg->method == SD_METHOD_INCREMENTAL)
        return 0;
    int ctx = cfg->prompt_default + cfg->output_default / 2;
    sd_optimizer *o = NULL, *own = NULL;
    if (cfg->method == SD_METHOD_OPTIMIZED && cfg->optimizer)
        o = cfg->optimizer;
    else if (cfg->method == SD_METHOD_OPTIMIZED) {
        double p[64];
        int m = cfg->opt_ranks > 0 ? cfg->opt_ranks : 8;
        int rc = sd_accept_to_positional(s->a, m, p, e);
        if (rc)
            return rc;
        int maxn = cfg->opt_max_n > 0 ? cfg->opt_max_n : 1024;
        o = own = sd_optimizer_new(p, m, maxn, cfg->opt_n_grid, cfg->opt_n_grid_len,
                                   cfg->opt_depth_grid, cfg->opt_ndepth, e);
        if (!o)
            return e ? e->code : PS_ERUN;
    }
    int rc = 0;
    for (int b = 1; b <= B && !rc; b++)
        rc = sd_step_plan_make(cfg, s->c, s->a, o, b, ctx, &s->plan_by_b[b], e);
    sd_optimizer_free(own);
    return rc;
}

static void sim_free(sim *s)
{
    if (s->plan_by_b)
        for (int b = 0; b <= s->cfg->max_batch; b++)
            sd_step_plan_free(&s->plan_by_b[b]);
    free(s->plan_by_b);
    free(s->r);
    free(s->waiting);
    free(s->running);
    free(s->admitted);
    des_free(s->d);
}

int sd_serve_run(const sd_cost *c, const sd_accept *a, const sd_serve_cfg *cfg,
                 sd_serve_result *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (!c || !a || !cfg)
        return ps_errf(e, PS_EINPUT, "serve: cost, acceptance and config are required");
    if ((unsigned)cfg->method >= NMETHODS)
        return ps_errf(e, PS_EINPUT, "serve: unknown method %d", (int)cfg->method);
    if (cfg->max_batch < 1 || cfg->max_batch > 4096)
        return ps_errf(e, PS_EINPUT, "serve: max_batch %d outside 1..4096", cfg->max_batch);
    if (cfg->nreq < 1 || cfg->nreq > 10000000)
        return ps_errf(e, PS_EINPUT, "serve: requests %d outside 1..1e7", cfg->nreq);
    if (cfg->method == SD_METHOD_TREE && !cfg->tree)
        return ps_errf(e, PS_EINPUT, "serve: method \"tree\" needs a tree");
    if (cfg->method == SD_METHOD_SEQUENCE && cfg->seq_k > 256)
        return ps_errf(e, PS_EINPUT, "serve: sequence length %d > 256", cfg->seq_k);
    sim S;
    memset(&S, 0, sizeof S);
    sim *s = &S;
    s->c = c;
    s->a = a;
    s->cfg = cfg;
    int n = cfg->nreq;
    s->r = calloc((size_t)n, sizeof *s->r);
    s->waiting = malloc((size_t)n * sizeof *s->waiting);
    s->running = malloc((size_t)n * sizeof *s->running);
    s->admitted = malloc((size_t)n * sizeof *s->admitted);
    int rc = 0;
    if (!s->r || !s->waiting || !s->running || !s->admitted) {
        rc = ps_errf(e, PS_ERUN, "serve: out of memory");
        goto out;
    }
    sd_rng arr;
    sd_rng_seed(&arr, cfg->seed ^ 0xA5A5A5A5DEADBEEFull);
    sd_rng_seed(&s->rng, cfg->seed);
    double t = 0;
    for (int i = 0; i < n; i++) {
        req *q = &s->r[i];
        if (cfg->arrival_s) {
            q->arrival = cfg->arrival_s[i];
            if (!(q->arrival >= 0) || !isfinite(q->arrival) ||
                (i && q->arrival < cfg->arrival_s[i - 1])) {
                rc = ps_errf(e, PS_EINPUT, "serve: arrival_s[%d] = %g must be finite, >= 0 and "
                             "non-decreasing", i, q->arrival);
                goto out;
            }
        } else if (cfg->rate > 0) {
            t += -log(1 - sd_rng_u01(&arr)) / cfg->rate;
            q->arrival = t;
        }
        q->prompt = cfg->prompt_len ? cfg->prompt_len[i] : cfg->prompt_default;
        q->out = cfg->output_len ? cfg->output_len[i] : cfg->output_default;
        if (q->prompt < 1 || q->out < 1) {
            rc = ps_errf(e, PS_EINPUT, "serve: request %d: prompt %d and output %d must be >= 1",
                         i, q->prompt, q->out);
            goto out;
        }
        sd_accept_state_init(a, &q->st, &s->rng);
        q->finish = NAN;
    }
    if ((rc = build_trees(s, e)))
        goto out;
    s->d = des_new(e);
    if (!s->d) {
        rc = PS_ERUN;
        goto out;
    }
    s->llm = des_add_stream(s->d, "llm", DES_FIFO, e);
    s->ssm = des_add_stream(s->d, "ssm", DES_FIFO, e);
    if (s->llm < 0 || s->ssm < 0) {
        rc = PS_ERUN;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        int k = des_add_task(s->d, DES_NO_RESOURCE, s->r[i].arrival, "arrive", i, -1, e);
        if (k < 0 || des_on_finish(s->d, k, arrive_cb, s, e)) {
            rc = PS_ERUN;
            goto out;
        }
    }
    if ((rc = des_run(s->d, e)))
        goto out;
    if (s->done != n) {
        rc = ps_errf(e, PS_ERUN, "serve: %d of %d requests finished", s->done, n);
        goto out;
    }
    out->req_latency_s = malloc((size_t)n * sizeof *out->req_latency_s);
    double *sorted = malloc((size_t)n * sizeof *sorted);
    double *svc = malloc((size_t)n * sizeof *svc);
    if (!out->req_latency_s || !sorted || !svc) {
        free(sorted);
        free(svc);
        rc = ps_errf(e, PS_ERUN, "serve: out of memory");
        goto out;
    }
    double lat_sum = 0, rl_sum = 0, svc_sum = 0;
    long tokens = 0;
    for (int i = 0; i < n; i++) {
        double rl = s->r[i].finish - s->r[i].arrival;
        out->req_latency_s[i] = rl / s->r[i].out;
        sorted[i] = out->req_latency_s[i];
        lat_sum += sorted[i];
        rl_sum += rl;
        svc[i] = (s->r[i].finish - s->r[i].admit) / s->r[i].out;
        svc_sum += svc[i];
        tokens += s->r[i].out;
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    qsort(svc, (size_t)n, sizeof *svc, cmp_double);
    out->svc_lat_mean_s = svc_sum / n;
    out->svc_lat_p50_s = quantile(svc, n, 0.5);
    out->svc_lat_p99_s = quantile(svc, n, 0.99);
    free(svc);
    out->nreq = n;
    out->tokens = tokens;
    out->steps = s->steps;
    out->prefills = s->prefills;
    out->makespan_s = des_makespan_s(s->d);
    out->tokens_per_s = out->makespan_s > 0 ? tokens / out->makespan_s : NAN;
    out->tokens_per_step = s->pairs ? (double)s->tokens_in_steps / s->pairs : NAN;
    out->mean_batch = s->steps ? (double)s->batch_sum / s->steps : NAN;
    out->lat_mean_s = lat_sum / n;
    out->lat_p50_s = quantile(sorted, n, 0.5);
    out->lat_p99_s = quantile(sorted, n, 0.99);
    out->req_lat_mean_s = rl_sum / n;
    out->mean_tree_nodes = s->batch_sum ? s->nodes_sum / s->batch_sum : NAN;
    out->draft_busy_s = des_resource_busy_s(s->d, s->ssm);
    out->verify_busy_s = des_resource_busy_s(s->d, s->llm);
    out->des_events = des_event_count(s->d);
    free(sorted);
out:
    if (rc)
        sd_serve_result_free(out);
    sim_free(s);
    return rc;
}
