/* The tiny LLM and its boost-tuned SSMs (real/specmodels.h). */
#include "real/specmodels.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "kernels/cpu_blas.h"

#define SM_FORMAT_VERSION 1

/* ------------------------------------------------------------------ configs */

sm_config sm_config_default(int quick, uint64_t seed)
{
    sm_config c;
    memset(&c, 0, sizeof c);
    c.seed = seed;
    c.boost = 1;
    c.nssm = 2;
    if (!quick) {
        /* LLM: gpt_config_small (0.84 M params, 1.9 MFLOP / token); SSMs:
         * dim 64, 1 layer (75 k params, 0.16 MFLOP / token): 11.6x. */
        c.llm = (gpt_config){
            .vocab = 256, .ctx = 128, .dim = 128, .heads = 4, .layers = 4, .tied = 1};
        c.ssm = (gpt_config){
            .vocab = 256, .ctx = 128, .dim = 64, .heads = 4, .layers = 1, .tied = 1};
        c.llm_steps = 600;
        c.ssm_pre_steps = 300;
        c.ssm_steps = 300;
        c.B = 16;
        c.T = 128;
        c.pool = 1024;
        c.llm_lr = 2e-3;
        c.ssm_lr = 3e-3;
        c.eval_batches = 8;
    } else {
        /* LLM dim 64, 2 layers (0.26 MFLOP / token); SSMs dim 32, 1 layer
         * (0.05 MFLOP / token): about 30 s on one core */
        c.llm = (gpt_config){
            .vocab = 256, .ctx = 128, .dim = 64, .heads = 4, .layers = 2, .tied = 1};
        c.ssm = (gpt_config){
            .vocab = 256, .ctx = 128, .dim = 32, .heads = 2, .layers = 1, .tied = 1};
        c.llm_steps = 400;
        c.ssm_pre_steps = 100;
        c.ssm_steps = 150;
        c.B = 16;
        c.T = 64;
        c.pool = 256;
        c.llm_lr = 3e-3;
        c.ssm_lr = 4e-3;
        c.eval_batches = 4;
    }
    return c;
}

sm_config sm_config_test(uint64_t seed)
{
    sm_config c;
    memset(&c, 0, sizeof c);
    c.seed = seed;
    c.boost = 1;
    c.nssm = 2;
    c.llm = (gpt_config){.vocab = 256, .ctx = 32, .dim = 32, .heads = 2, .layers = 1, .tied = 1};
    c.ssm = (gpt_config){.vocab = 256, .ctx = 32, .dim = 16, .heads = 2, .layers = 1, .tied = 1};
    c.llm_steps = 150;
    c.ssm_pre_steps = 10;
    c.ssm_steps = 20;
    c.B = 8;
    c.T = 16;
    c.pool = 16;
    c.llm_lr = 1e-2;
    c.ssm_lr = 1e-2;
    c.eval_batches = 2;
    return c;
}

int sm_config_check(const sm_config *c, ps_err *e)
{
    if (gpt_config_check(&c->llm, e)) {
        ps_err_prefix(e, "specmodels: llm: ");
        return -1;
    }
    if (gpt_config_check(&c->ssm, e)) {
        ps_err_prefix(e, "specmodels: ssm: ");
        return -1;
    }
    if (c->llm.vocab != c->ssm.vocab)
        return ps_errf(e, PS_EINPUT, "specmodels: ssm.vocab %d differs from llm.vocab %d",
                       c->ssm.vocab, c->llm.vocab);
    if (c->nssm < 1 || c->nssm > SM_MAX_SSM)
        return ps_errf(e, PS_EINPUT, "specmodels: nssm %d must be in [1, %d]", c->nssm,
                       SM_MAX_SSM);
    if (c->llm_steps < 1 || c->ssm_steps < 1 || c->ssm_pre_steps < 0)
        return ps_errf(e, PS_EINPUT,
                       "specmodels: llm_steps %lld and ssm_steps %lld must be >= 1, "
                       "ssm_pre_steps %lld >= 0",
                       (long long)c->llm_steps, (long long)c->ssm_steps,
                       (long long)c->ssm_pre_steps);
    if (c->B < 1 || c->T < 2 || c->T > c->llm.ctx || c->T > c->ssm.ctx)
        return ps_errf(e, PS_EINPUT,
                       "specmodels: B %lld must be >= 1 and T %lld in [2, min ctx %d, %d]",
                       (long long)c->B, (long long)c->T, c->llm.ctx, c->ssm.ctx);
    if (c->pool < 1)
        return ps_errf(e, PS_EINPUT, "specmodels: pool %lld must be >= 1", (long long)c->pool);
    if (!(c->llm_lr > 0) || !(c->ssm_lr > 0))
        return ps_errf(e, PS_EINPUT, "specmodels: llm_lr %g and ssm_lr %g must be positive",
                       c->llm_lr, c->ssm_lr);
    if (c->eval_batches < 1)
        return ps_errf(e, PS_EINPUT, "specmodels: eval_batches %d must be >= 1",
                       c->eval_batches);
    return 0;
}

static uint64_t fnv_gpt(uint64_t h, const gpt_config *g)
{
    h = ps_fnv1a_u64(h, (uint64_t)g->vocab);
    h = ps_fnv1a_u64(h, (uint64_t)g->ctx);
    h = ps_fnv1a_u64(h, (uint64_t)g->dim);
    h = ps_fnv1a_u64(h, (uint64_t)g->heads);
    h = ps_fnv1a_u64(h, (uint64_t)g->layers);
    return ps_fnv1a_u64(h, (uint64_t)g->tied);
}

uint64_t sm_config_hash(const sm_config *c)
{
    uint64_t h = PS_FNV1A_OFFSET;
    h = ps_fnv1a_u64(h, SM_FORMAT_VERSION);
    h = fnv_gpt(h, &c->llm);
    h = fnv_gpt(h, &c->ssm);
    h = ps_fnv1a_u64(h, (uint64_t)c->nssm);
    h = ps_fnv1a_u64(h, (uint64_t)c->llm_steps);
    h = ps_fnv1a_u64(h, (uint64_t)c->ssm_pre_steps);
    h = ps_fnv1a_u64(h, (uint64_t)c->ssm_steps);
    h = ps_fnv1a_u64(h, (uint64_t)c->B);
    h = ps_fnv1a_u64(h, (uint64_t)c->T);
    h = ps_fnv1a_u64(h, (uint64_t)c->pool);
    h = ps_fnv1a_u64(h, ps_double_bits(c->llm_lr));
    h = ps_fnv1a_u64(h, ps_double_bits(c->ssm_lr));
    h = ps_fnv1a_u64(h, (uint64_t)c->eval_batches);
    h = ps_fnv1a_u64(h, c->seed);
    return ps_fnv1a_u64(h, (uint64_t)c->boost);
}

static json_t *gpt_config_json(const gpt_config *g)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:b}", "vocab", g->vocab, "ctx", g->ctx, "dim",
                     g->dim, "heads", g->heads, "layers", g->layers, "tied", g->tied);
}

json_t *sm_config_to_json(const sm_config *c)
{
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)sm_config_hash(c));
    return json_pack("{s:o, s:o, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:i, s:I, s:b, "
                     "s:s}",
                     "llm", gpt_config_json(&c->llm), "ssm", gpt_config_json(&c->ssm), "nssm",
                     c->nssm, "llm_steps", (json_int_t)c->llm_steps, "ssm_pre_steps",
                     (json_int_t)c->ssm_pre_steps, "ssm_steps", (json_int_t)c->ssm_steps, "B",
                     (json_int_t)c->B, "T", (json_int_t)c->T, "pool", (json_int_t)c->pool,
                     "llm_lr", c->llm_lr, "ssm_lr", c->ssm_lr, "eval_batches", c->eval_batches,
                     "seed", (json_int_t)c->seed, "boost", c->boost, "hash", hash);
}

/* ------------------------------------------------------------------ helpers */

static int argmax_row_f32(const float *x, int V)
{
    int best = 0;
    for (int j = 1; j < V; j++)
        if (x[j] > x[best])
            best = j;
    return best;
}

int sm_argmax(gpt *m, const gpt_batch *in, int32_t *out, ps_err *e)
{
    const float *lg = rt_f32(&m->a.logits);
    if (!lg || m->a.B != in->B || m->a.T != in->T)
        return ps_errf(e, PS_EINPUT,
                       "sm_argmax: no f32 CPU logits of a %lld x %lld forward to read",
                       (long long)in->B, (long long)in->T);
    const int V = m->cfg.vocab;
    for (int64_t i = 0; i < in->B * in->T; i++)
        out[i] = argmax_row_f32(lg + i * V, V);
    return 0;
}

void sm_boost_mask(const int32_t *llm_pred, const int32_t *const *prev, int nprev, int64_t n,
                   int32_t *out)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t t = llm_pred[i];
        for (int j = 0; j < nprev; j++)
            if (prev[j][i] == t) {
                t = -1;
                break;
            }
        out[i] = t;
    }
}

/* Predictions (argmax) of m on every window of the pool. */
static int predict_pool(gpt *m, const int32_t *pool, int64_t P, int64_t B, int64_t T,
                        int32_t *out, ps_err *e)
{
    for (int64_t w = 0; w < P; w += B) {
        int64_t b = P - w < B ? P - w : B;
        gpt_batch in = {.B = b, .T = T, .tokens = pool + w * T};
        if (gpt_forward(m, &in, NULL, e) || sm_argmax(m, &in, out + w * T, e))
            return -1;
    }
    return 0;
}

/* lr schedule of gpt_train_text: linear warm-up over the first 10%, cosine
 * decay to lr / 10. */
static double sched_lr(double lr, int64_t s, int64_t steps)
{
    const int64_t warm = steps / 10 > 0 ? steps / 10 : 1;
    if (s < warm)
        return lr * (double)(s + 1) / (double)warm;
    double f = (double)(s - warm) / (double)(steps - warm > 1 ? steps - warm - 1 : 1);
    return lr * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI * f)));
}

/* Distillation: `steps` AdamW steps on batches of B windows drawn uniformly
 * from the pool (targets -1 ignored; a batch without any target is redrawn,
 * up to 100 times). */
static int distill(gpt *m, const int32_t *pool, const int32_t *targets, int64_t P, int64_t B,
                   int64_t T, int64_t steps, double lr, uint64_t seed, const char *label,
                   ps_err *e)
{
    int32_t *buf = malloc((size_t)(B * T) * 2 * sizeof *buf);
    if (!buf)
        return ps_errf(e, PS_ERUN, "%s: out of memory", label);
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    rt_opt opt = {.kind = RT_OPT_ADAMW, .lr = lr, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8};
    ps_progress pg;
    ps_progress_start(&pg, label, (size_t)steps);
    int rc = 0;
    for (int64_t s = 0; s < steps && !rc; s++) {
        opt.lr = sched_lr(lr, s, steps);
        int64_t counted = 0;
        for (int tries = 0; tries < 100 && !counted; tries++) {
            for (int64_t b = 0; b < B; b++) {
                int64_t w = (int64_t)(rt_rng_next(&rng) % (uint64_t)P);
                memcpy(buf + b * T, pool + w * T, (size_t)T * sizeof *buf);
                memcpy(buf + B * T + b * T, targets + w * T, (size_t)T * sizeof *buf);
                for (int64_t t = 0; t < T; t++)
                    counted += targets[w * T + t] >= 0;
            }
        }
        if (!counted)
            break; /* nothing left to learn (every position already covered) */
        gpt_batch in = {.B = B, .T = T, .tokens = buf, .targets = buf + B * T};
        double loss = 0;
        rc = gpt_train_step(m, &in, &opt, &loss, e);
        char det[64];
        snprintf(det, sizeof det, "loss %.3f", loss);
        ps_progress_update(&pg, (size_t)s + 1, det);
    }
    ps_progress_end(&pg);
    free(buf);
    return rc;
}

static int copy_params(gpt *dst, const gpt *src, ps_err *e)
{
    for (int i = 0; i < dst->nparams; i++)
        if (rt_tensor_copy(&dst->params[i].w, &src->params[i].w, e))
            return -1;
    return 0;
}

/* ------------------------------------------------------------------ training */

void sm_free(sm_set *s)
{
    if (!s)
        return;
    gpt_free(&s->llm);
    for (int k = 0; k < SM_MAX_SSM; k++)
        gpt_free(&s->ssm[k]);
    memset(s, 0, sizeof *s);
}

static int init_models(const sm_config *cfg, sm_set *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    out->cfg = *cfg;
    out->nssm = cfg->nssm;
    if (gpt_init(&out->llm, &cfg->llm, rt_cpu(), RT_F32, cfg->seed, e))
        return -1;
    for (int k = 0; k < cfg->nssm; k++)
        if (gpt_init(&out->ssm[k], &cfg->ssm, rt_cpu(), RT_F32, cfg->seed + 100 + (uint64_t)k,
                     e))
            return -1;
    sm_report *r = &out->rep;
    r->llm_params = gpt_num_params(&out->llm);
    r->ssm_params = gpt_num_params(&out->ssm[0]);
    r->llm_flops_per_token = gpt_fwd_flops(&cfg->llm, 1, cfg->T) / (double)cfg->T;
    r->ssm_flops_per_token = gpt_fwd_flops(&cfg->ssm, 1, cfg->T) / (double)cfg->T;
    r->ssm1_pre_val_loss = NAN;
    return 0;
}

static int evaluate(sm_set *s, const text_corpus *c, ps_err *e)
{
    const sm_config *cfg = &s->cfg;
    const uint64_t vs = cfg->seed + 7;
    if (gpt_eval_text(&s->llm, c, cfg->B, cfg->T, cfg->eval_batches, vs, &s->rep.llm_val_loss,
                      e))
        return -1;
    gpt *ssms[SM_MAX_SSM];
    for (int k = 0; k < s->nssm; k++) {
        ssms[k] = &s->ssm[k];
        if (gpt_eval_text(&s->ssm[k], c, cfg->B, cfg->T, cfg->eval_batches, vs,
                          &s->rep.ssm_val_loss[k], e))
            return -1;
    }
    return sm_agreement(&s->llm, ssms, s->nssm, c, cfg->B, cfg->T, cfg->eval_batches, vs,
                        s->rep.ssm_agree, s->rep.union_agree, e);
}

static int train_inner(const sm_config *cfg, const text_corpus *c, sm_set *out, ps_err *e)
{
    const double t0 = ps_now_s();
    if (sm_config_check(cfg, e) || init_models(cfg, out, e))
        return -1;
    const int64_t B = cfg->B, T = cfg->T, P = cfg->pool, N = P * T;
    sm_report *r = &out->rep;
    gpt_train_result tr;
    /* 1. the LLM */
    gpt_train_opts lo = {.steps = cfg->llm_steps, .B = B, .T = T, .lr = cfg->llm_lr,
                         .eval_batches = 0, .seed = cfg->seed + 1};
    if (gpt_train_text(&out->llm, c, &lo, &tr, e)) {
        ps_err_prefix(e, "specmodels: llm: ");
        return -1;
    }
    r->llm_train_s = tr.seconds;
    /* 2. the distillation pool and the LLM's greedy targets */
    double tp = ps_now_s();
    int32_t *pool = malloc((size_t)N * sizeof *pool);
    int32_t *llm_pred = malloc((size_t)N * sizeof *llm_pred);
    int32_t *tgt = malloc((size_t)N * sizeof *tgt);
    int32_t *junk = malloc((size_t)T * sizeof *junk);
    int32_t *pred[SM_MAX_SSM] = {0};
    int rc = 0;
    if (!pool || !llm_pred || !tgt || !junk)
        rc = ps_errf(e, PS_ERUN, "specmodels: out of memory for a pool of %lld windows",
                     (long long)P);
    rt_rng prng;
    rt_rng_seed(&prng, cfg->seed + 3);
    for (int64_t w = 0; w < P && !rc; w++)
        rc = text_batch(c, TEXT_TRAIN, &prng, 1, T, pool + w * T, junk, e);
    rc = rc ? rc : predict_pool(&out->llm, pool, P, B, T, llm_pred, e);
    r->pool_s = ps_now_s() - tp;
    /* 3. the SSMs */
    for (int k = 0; k < cfg->nssm && !rc; k++) {
        double ts = ps_now_s();
        gpt *m = &out->ssm[k];
        char label[32];
        if (k == 0 || !cfg->boost) {
            if (cfg->ssm_pre_steps > 0) {
                gpt_train_opts so = {.steps = cfg->ssm_pre_steps, .B = B, .T = T,
                                     .lr = cfg->ssm_lr, .eval_batches = 0,
                                     .seed = cfg->seed + 200 + (uint64_t)k};
                rc = gpt_train_text(m, c, &so, &tr, e);
                if (!rc && k == 0)
                    rc = gpt_eval_text(m, c, B, T, cfg->eval_batches, cfg->seed + 7,
                                       &r->ssm1_pre_val_loss, e);
            }
            memcpy(tgt, llm_pred, (size_t)N * sizeof *tgt);
        } else {
            rc = copy_params(m, &out->ssm[k - 1], e);
            sm_boost_mask(llm_pred, (const int32_t *const *)pred, k, N, tgt);
        }
        int64_t cnt = 0;
        for (int64_t i = 0; i < N; i++)
            cnt += tgt[i] >= 0;
        r->boost_frac[k] = (double)cnt / (double)N;
        snprintf(label, sizeof label, "ssm%d distill", k + 1);
        rc = rc ? rc
                : distill(m, pool, tgt, P, B, T, cfg->ssm_steps, cfg->ssm_lr,
                          cfg->seed + 300 + (uint64_t)k, label, e);
        if (!rc && k + 1 < cfg->nssm && cfg->boost) {
            if (!(pred[k] = malloc((size_t)N * sizeof *pred[k])))
                rc = ps_errf(e, PS_ERUN, "specmodels: out of memory");
            else
                rc = predict_pool(m, pool, P, B, T, pred[k], e);
        }
        r->ssm_train_s[k] = ps_now_s() - ts;
        if (rc)
            ps_err_prefix(e, "specmodels: ssm%d: ", k + 1);
    }
    for (int k = 0; k < SM_MAX_SSM; k++)
        free(pred[k]);
    free(pool);
    free(llm_pred);
    free(tgt);
    free(junk);
    rc = rc ? rc : evaluate(out, c, e);
    r->total_s = ps_now_s() - t0;
    return rc;
}

int sm_train(const sm_config *cfg, const text_corpus *c, sm_set *out, ps_err *e)
{
    /* One BLAS thread: the documented budget is one core, and results do not
     * depend on the thread count. */
    memset(out, 0, sizeof *out);
    int th = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(1);
    int rc = train_inner(cfg, c, out, e);
    ps_cpu_blas_set_threads(th);
    if (rc)
        sm_free(out);
    return rc;
}

/* ------------------------------------------------------------------ report JSON */

static json_t *darr(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
    return a;
}

static int rarr(const json_t *o, const char *key, double *v, int n)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return -1;
    for (int i = 0; i < n; i++) {
        json_t *x = json_array_get(a, (size_t)i);
        if (!json_is_number(x) && !json_is_null(x))
            return -1;
        v[i] = json_is_null(x) ? NAN : json_number_value(x);
    }
    return 0;
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *report_json(const sm_report *r, int nssm)
{
    json_t *j = json_object();
    json_object_set_new(j, "llm_params", json_integer((json_int_t)r->llm_params));
    json_object_set_new(j, "ssm_params", json_integer((json_int_t)r->ssm_params));
    json_object_set_new(j, "llm_flops_per_token", jnum(r->llm_flops_per_token));
    json_object_set_new(j, "ssm_flops_per_token", jnum(r->ssm_flops_per_token));
    json_object_set_new(j, "flops_ratio", jnum(r->llm_flops_per_token / r->ssm_flops_per_token));
    json_object_set_new(j, "llm_val_loss", jnum(r->llm_val_loss));
    json_object_set_new(j, "ssm1_pre_val_loss", jnum(r->ssm1_pre_val_loss));
    json_object_set_new(j, "ssm_val_loss", darr(r->ssm_val_loss, nssm));
    json_object_set_new(j, "ssm_agree", darr(r->ssm_agree, nssm));
    json_object_set_new(j, "union_agree", darr(r->union_agree, nssm));
    json_object_set_new(j, "boost_frac", darr(r->boost_frac, nssm));
    json_object_set_new(j, "llm_train_s", jnum(r->llm_train_s));
    json_object_set_new(j, "ssm_train_s", darr(r->ssm_train_s, nssm));
    json_object_set_new(j, "pool_s", jnum(r->pool_s));
    json_object_set_new(j, "total_s", jnum(r->total_s));
    return j;
}

static int report_from_json(const json_t *j, sm_report *r, int nssm)
{
    json_t *x;
    if (!json_is_object(j))
        return -1;
    double d[3];
    const char *k3[] = {"llm_val_loss", "llm_train_s", "pool_s"};
    for (int i = 0; i < 3; i++) {
        if (!json_is_number(x = json_object_get(j, k3[i])))
            return -1;
        d[i] = json_number_value(x);
    }
    r->llm_val_loss = d[0];
    r->llm_train_s = d[1];
    r->pool_s = d[2];
    if ((x = json_object_get(j, "total_s")) && json_is_number(x))
        r->total_s = json_number_value(x);
    x = json_object_get(j, "ssm1_pre_val_loss");
    r->ssm1_pre_val_loss = json_is_number(x) ? json_number_value(x) : NAN;
    return rarr(j, "ssm_val_loss", r->ssm_val_loss, nssm) ||
                   rarr(j, "ssm_agree", r->ssm_agree, nssm) ||
                   rarr(j, "union_agree", r->union_agree, nssm) ||
                   rarr(j, "boost_frac", r->boost_frac, nssm) ||
                   rarr(j, "ssm_train_s", r->ssm_train_s, nssm)
               ? -1
               : 0;
}

json_t *sm_report_to_json(const sm_set *s)
{
    json_t *j = json_object();
    json_object_set_new(j, "config", sm_config_to_json(&s->cfg));
    json_object_set_new(j, "from_cache", json_boolean(s->from_cache));
    json_t *r = report_json(&s->rep, s->nssm);
    json_object_update(j, r);
    json_decref(r);
    return j;
}

/* ------------------------------------------------------------------ cache */

void sm_cache_path(const char *dir, const sm_config *cfg, int which, char *buf, size_t n)
{
    unsigned long long h = (unsigned long long)sm_config_hash(cfg);
    if (which < 0)
        snprintf(buf, n, "%s/specmodels-%016llx.llm.bin", dir, h);
    else
        snprintf(buf, n, "%s/specmodels-%016llx.ssm%d.bin", dir, h, which + 1);
}

/* A fingerprint of the corpus (FNV-1a over both splits' sizes and bytes). */
static uint64_t corpus_hash(const text_corpus *c)
{
    uint64_t h = PS_FNV1A_OFFSET;
    for (int s = 0; s < 2; s++) {
        h = ps_fnv1a_u64(h, (uint64_t)c->n[s]);
        h = ps_fnv1a(h, c->data[s], c->n[s]);
    }
    return h;
}

static char *meta_text(const sm_set *s, const text_corpus *c, int which)
{
    char hash[32], ch[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)sm_config_hash(&s->cfg));
    snprintf(ch, sizeof ch, "%016llx", (unsigned long long)(c ? corpus_hash(c) : 0));
    json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "model", "plansim specmodels", "hash", hash,
                          "which", which, "corpus", ch);
    if (which < 0) {
        json_object_set_new(j, "config", sm_config_to_json(&s->cfg));
        json_object_set_new(j, "report", report_json(&s->rep, s->nssm));
    }
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(j);
    return t;
}

static int save_inner(const char *dir, const sm_set *s, const text_corpus *c, ps_err *e)
{
    if (ps_mkdir_p(dir, e))
        return -1;
    char path[1024];
    /* the SSMs first, the LLM (which holds the report) last */
    for (int k = s->nssm - 1; k >= -1; k--) {
        const gpt *m = k < 0 ? &s->llm : &s->ssm[k];
        sm_cache_path(dir, &s->cfg, k, path, sizeof path);
        char *meta = meta_text(s, c, k);
        int rc = rt_save(path, m->params, m->nparams, meta ? meta : "", e);
        free(meta);
        if (rc)
            return -1;
    }
    return 0;
}

int sm_save(const char *dir, const sm_set *s, ps_err *e)
{
    return save_inner(dir, s, NULL, e);
}

/* Load every file of cfg; -1 with the reason in e (missing files: *missing). */
static int load_inner(const char *dir, const sm_config *cfg, const text_corpus *c, sm_set *out,
                      int *missing, ps_err *e)
{
    *missing = 0;
    char path[1024];
    for (int k = -1; k < cfg->nssm; k++) {
        sm_cache_path(dir, cfg, k, path, sizeof path);
        if (access(path, F_OK)) {
            *missing = 1;
            return ps_errf(e, PS_EINPUT, "%s: missing", path);
        }
    }
    if (init_models(cfg, out, e))
        return -1;
    const uint64_t want = c ? corpus_hash(c) : 0;
    for (int k = -1; k < cfg->nssm; k++) {
        gpt *m = k < 0 ? &out->llm : &out->ssm[k];
        sm_cache_path(dir, cfg, k, path, sizeof path);
        char *meta = NULL;
        if (rt_load(path, m->params, m->nparams, &meta, e))
            return -1;
        json_t *j = meta ? json_loads(meta, 0, NULL) : NULL;
        free(meta);
        const char *h = json_string_value(json_object_get(j, "hash"));
        const char *ch = json_string_value(json_object_get(j, "corpus"));
        char want_h[32];
        snprintf(want_h, sizeof want_h, "%016llx", (unsigned long long)sm_config_hash(cfg));
        int bad = !h || strcmp(h, want_h);
        if (!bad && c && ch && strtoull(ch, NULL, 16) != want)
            bad = 2;
        if (!bad && k < 0 && report_from_json(json_object_get(j, "report"), &out->rep, cfg->nssm))
            bad = 3;
        json_decref(j);
        if (bad)
            return ps_errf(e, PS_EINPUT, "%s: %s", path,
                           bad == 2   ? "trained on another corpus"
                           : bad == 3 ? "no training report in the meta data"
                                      : "meta data does not match the config");
    }
    out->from_cache = 1;
    return 0;
}

int sm_load_or_train(const char *dir, const sm_config *cfg, const text_corpus *c, sm_set *out,
                     ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (sm_config_check(cfg, e))
        return -1;
    text_corpus own;
    memset(&own, 0, sizeof own);
    if (!c) {
        if (text_load(NULL, &own, e))
            return -1;
        c = &own;
    }
    int missing = 0;
    ps_err le = {0};
    int rc = load_inner(dir, cfg, c, out, &missing, &le);
    if (rc) {
        sm_free(out);
        if (!missing)
            fprintf(stderr, "warning: specmodels cache unusable (%s): retraining\n", le.msg);
        rc = sm_train(cfg, c, out, e);
        if (!rc && save_inner(dir, out, c, e)) {
            ps_err_prefix(e, "specmodels: saving the trained models: ");
            rc = -1;
        }
        if (rc)
            sm_free(out);
    }
    if (c == &own)
        text_free(&own);
    return rc;
}

/* ------------------------------------------------------------------ Table 1 */

/* Rank (1-based) of token a in row x: descending value, ties to the lower id. */
static int rank_of(const float *x, int V, int a)
{
    int r = 1;
    for (int j = 0; j < V; j++)
        if (x[j] > x[a] || (x[j] == x[a] && j < a))
            r++;
    return r;
}

/* The top-k ids of row x in ranking order (k <= SM_KMAX). */
static void topk_ids(const float *x, int V, int k, int *ids)
{
    int n = 0;
    for (int j = 0; j < V; j++) {
        int p = n < k ? n : k;
        if (n == k && !(x[j] > x[ids[k - 1]]))
            continue; /* ties keep the earlier (lower) id */
        while (p > 0 && x[j] > x[ids[p - 1]]) {
            if (p < k)
                ids[p] = ids[p - 1];
            p--;
        }
        ids[p] = j;
        if (n < k)
            n++;
    }
}

int sm_topk_windows(gpt *llm, gpt *ssm, const int32_t *tokens, int64_t B, int64_t T, int kmax,
                    double *greedy, double *stoch, ps_err *e)
{
    if (kmax < 1 || kmax > SM_KMAX)
        return ps_errf(e, PS_EINPUT, "sm_topk: kmax %d must be in [1, %d]", kmax, SM_KMAX);
    if (llm->cfg.vocab != ssm->cfg.vocab)
        return ps_errf(e, PS_EINPUT, "sm_topk: vocabularies differ (%d, %d)", llm->cfg.vocab,
                       ssm->cfg.vocab);
    gpt_batch in = {.B = B, .T = T, .tokens = tokens};
    if (gpt_forward(llm, &in, NULL, e) || gpt_forward(ssm, &in, NULL, e))
        return -1;
    const float *pl = rt_f32(&llm->a.logits), *ql = rt_f32(&ssm->a.logits);
    if (!pl || !ql)
        return ps_errf(e, PS_EINPUT, "sm_topk: the models must be f32 on the CPU");
    const int V = llm->cfg.vocab;
    double g[SM_KMAX] = {0}, s[SM_KMAX] = {0};
    const int64_t N = B * T;
    for (int64_t i = 0; i < N; i++) {
        const float *p = pl + i * V, *q = ql + i * V;
        int a = argmax_row_f32(p, V);
        int r = rank_of(q, V, a);
        for (int k = r; k <= kmax; k++)
            g[k - 1] += 1;
        double mx = p[a], z = 0;
        for (int j = 0; j < V; j++)
            z += exp((double)p[j] - mx);
        int ids[SM_KMAX];
        topk_ids(q, V, kmax, ids);
        double cum = 0;
        for (int k = 0; k < kmax; k++) {
            cum += exp((double)p[ids[k]] - mx) / z;
            s[k] += cum;
        }
    }
    for (int k = 0; k < kmax; k++) {
        if (greedy)
            greedy[k] = g[k] / (double)N;
        if (stoch)
            stoch[k] = s[k] / (double)N;
    }
    return 0;
}

int sm_topk(gpt *llm, gpt *ssm, const text_corpus *c, int64_t B, int64_t T, int n,
            uint64_t seed, int kmax, double *greedy, double *stoch, ps_err *e)
{
    if (n < 1)
        return ps_errf(e, PS_EINPUT, "sm_topk: %d batches: need at least 1", n);
    if (kmax < 1 || kmax > SM_KMAX)
        return ps_errf(e, PS_EINPUT, "sm_topk: kmax %d must be in [1, %d]", kmax, SM_KMAX);
    int32_t *buf = malloc((size_t)(B * T) * 2 * sizeof *buf);
    if (!buf)
        return ps_errf(e, PS_ERUN, "sm_topk: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    double g[SM_KMAX] = {0}, s[SM_KMAX] = {0}, gb[SM_KMAX], sb[SM_KMAX];
    int rc = 0;
    for (int b = 0; b < n && !rc; b++) {
        rc = text_batch(c, TEXT_VAL, &rng, B, T, buf, buf + B * T, e);
        rc = rc ? rc : sm_topk_windows(llm, ssm, buf, B, T, kmax, gb, sb, e);
        for (int k = 0; k < kmax && !rc; k++) {
            g[k] += gb[k] / n;
            s[k] += sb[k] / n;
        }
    }
    free(buf);
    for (int k = 0; k < kmax && !rc; k++) {
        if (greedy)
            greedy[k] = g[k];
        if (stoch)
            stoch[k] = s[k];
    }
    return rc;
}

int sm_agreement(gpt *llm, gpt *const *ssms, int nssm, const text_corpus *c, int64_t B,
                 int64_t T, int n, uint64_t seed, double *agree, double *union_agree,
                 ps_err *e)
{
    if (nssm < 1 || nssm > SM_MAX_SSM || n < 1)
        return ps_errf(e, PS_EINPUT, "sm_agreement: nssm %d in [1, %d] and n %d >= 1 needed",
                       nssm, SM_MAX_SSM, n);
    const int64_t N = B * T;
    int32_t *buf = malloc((size_t)N * 2 * sizeof *buf);
    int32_t *pl = malloc((size_t)N * sizeof *pl);
    int32_t *ps = malloc((size_t)N * nssm * sizeof *ps);
    int rc = 0;
    if (!buf || !pl || !ps)
        rc = ps_errf(e, PS_ERUN, "sm_agreement: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    double a[SM_MAX_SSM] = {0}, u[SM_MAX_SSM] = {0};
    for (int b = 0; b < n && !rc; b++) {
        rc = text_batch(c, TEXT_VAL, &rng, B, T, buf, buf + B * T, e);
        gpt_batch in = {.B = B, .T = T, .tokens = buf};
        rc = rc ? rc : gpt_forward(llm, &in, NULL, e);
        rc = rc ? rc : sm_argmax(llm, &in, pl, e);
        for (int k = 0; k < nssm && !rc; k++) {
            rc = gpt_forward(ssms[k], &in, NULL, e);
            rc = rc ? rc : sm_argmax(ssms[k], &in, ps + k * N, e);
        }
        for (int64_t i = 0; i < N && !rc; i++) {
            int any = 0;
            for (int k = 0; k < nssm; k++) {
                int hit = ps[k * N + i] == pl[i];
                any |= hit;
                a[k] += hit;
                u[k] += any;
            }
        }
    }
    for (int k = 0; k < nssm && !rc; k++) {
        agree[k] = a[k] / (double)(N * n);
        union_agree[k] = u[k] / (double)(N * n);
    }
    free(buf);
    free(pl);
    free(ps);
    return rc;
}

/* ------------------------------------------------------------------ prompts */

int sm_prompts(const text_corpus *c, int n, int plen, uint64_t seed, int32_t *out, ps_err *e)
{
    const size_t len = c->n[TEXT_VAL];
    if (n < 1 || plen < 1 || len < (size_t)plen + 65)
        return ps_errf(e, PS_EINPUT,
                       "sm_prompts: %d prompts of %d bytes from a validation split of %zu "
                       "bytes: need n, plen >= 1 and plen + 65 bytes",
                       n, plen, len);
    const uint8_t *d = c->data[TEXT_VAL];
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        size_t s = (size_t)(rt_rng_next(&rng) % (uint64_t)(len - (size_t)plen - 64));
        for (size_t j = 0; j < 64; j++)
            if (d[s + j] == '\n' && d[s + j + 1] != '\n') {
                s += j + 1;
                break;
            }
        for (int t = 0; t < plen; t++)
            out[(size_t)i * plen + t] = d[s + t];
    }
    return 0;
}

/* ------------------------------------------------------------------ CLI */

int sm_cli_train(const char *dir, int quick, uint64_t seed, json_t **report, ps_err *e)
{
    *report = NULL;
    sm_config cfg = sm_config_default(quick, seed);
    text_corpus c;
    if (text_load(NULL, &c, e))
        return -1;
    sm_set s;
    int rc = sm_train(&cfg, &c, &s, e);
    if (!rc && save_inner(dir, &s, &c, e))
        rc = -1;
    if (!rc) {
        json_t *j = sm_report_to_json(&s);
        json_t *files = json_array();
        char path[1024];
        for (int k = -1; k < s.nssm; k++) {
            sm_cache_path(dir, &cfg, k, path, sizeof path);
            json_array_append_new(files, json_string(path));
        }
        json_object_set_new(j, "files", files);
        json_t *t1 = json_array();
        for (int k = 0; k < s.nssm && !rc; k++) {
            double g[5], st[5];
            rc = sm_topk(&s.llm, &s.ssm[k], &c, cfg.B, cfg.T, cfg.eval_batches, cfg.seed + 7,
                         5, g, st, e);
            if (!rc) {
                char name[16];
                snprintf(name, sizeof name, "ssm%d", k + 1);
                json_array_append_new(t1, json_pack("{s:s, s:o, s:o}", "ssm", name, "greedy",
                                                    darr(g, 5), "stochastic", darr(st, 5)));
            }
        }
        json_object_set_new(j, "table1", t1);
        if (!rc)
            *report = j;
        else
            json_decref(j);
    }
    sm_free(&s);
    text_free(&c);
    return rc;
}
