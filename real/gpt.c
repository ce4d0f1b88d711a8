/* A tiny GPT-2-style decoder: see real/gpt.h and docs/real-gpt.md. */
#include "real/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu_attention.h"
#include "real/rt_internal.h"

#define LN_EPS 1e-5

/* ------------------------------------------------------------------ config */

gpt_config gpt_config_tiny(void)
{
    return (gpt_config){.vocab = 256, .ctx = 64, .dim = 64, .heads = 4, .layers = 2, .tied = 1};
}

gpt_config gpt_config_small(void)
{
    return (gpt_config){.vocab = 256, .ctx = 128, .dim = 128, .heads = 4, .layers = 4, .tied = 1};
}

int gpt_config_check(const gpt_config *c, ps_err *e)
{
    if (c->vocab < 2)
        return ps_errf(e, PS_EINPUT, "gpt config: vocab %d must be >= 2", c->vocab);
    if (c->ctx < 1)
        return ps_errf(e, PS_EINPUT, "gpt config: ctx %d must be >= 1", c->ctx);
    if (c->heads < 1)
        return ps_errf(e, PS_EINPUT, "gpt config: heads %d must be >= 1", c->heads);
    if (c->dim < 1 || c->dim % c->heads)
        return ps_errf(e, PS_EINPUT, "gpt config: dim %d must be a positive multiple of heads %d",
                       c->dim, c->heads);
    if (c->layers < 1 || c->layers > 256)
        return ps_errf(e, PS_EINPUT, "gpt config: layers %d must be in [1, 256]", c->layers);
    if (c->tied != 0 && c->tied != 1)
        return ps_errf(e, PS_EINPUT, "gpt config: tied %d must be 0 or 1", c->tied);
    return 0;
}

/* ------------------------------------------------------------------ parameters */

static int lnf_index(const gpt_config *c)
{
    return GPT_LAYER0 + GPT_PER_LAYER * c->layers;
}

rt_param *gpt_layer_param(gpt *m, int l, int slot)
{
    return &m->params[GPT_LAYER0 + GPT_PER_LAYER * l + slot];
}
rt_param *gpt_lnf_g(gpt *m) { return &m->params[lnf_index(&m->cfg)]; }
rt_param *gpt_lnf_b(gpt *m) { return &m->params[lnf_index(&m->cfg) + 1]; }
rt_param *gpt_lm_head(gpt *m)
{
    return m->cfg.tied ? &m->params[GPT_WTE] : &m->params[lnf_index(&m->cfg) + 2];
}
int64_t gpt_num_params(const gpt *m) { return rt_params_numel(m->params, m->nparams); }

static int pinit(gpt *m, int i, const char *name, int64_t d0, int64_t d1, ps_err *e)
{
    int64_t s[2] = {d0, d1};
    return rt_param_init(&m->params[i], name, m->dev, m->dtype, d1 ? 2 : 1, s, e);
}

int gpt_init(gpt *m, const gpt_config *c, rt_dev *d, rt_dtype dt, uint64_t seed, ps_err *e)
{
    memset(m, 0, sizeof *m);
    TRY(gpt_config_check(c, e));
    if (dt != RT_F32 && dt != RT_F64)
        return ps_errf(e, PS_EINPUT, "gpt_init: dtype %s, expected f32 or f64", rt_dtype_name(dt));
    m->cfg = *c;
    m->dev = d;
    m->dtype = dt;
    const int64_t C = c->dim, V = c->vocab;
    m->nparams = lnf_index(c) + 2 + (c->tied ? 0 : 1);
    m->params = calloc((size_t)m->nparams, sizeof *m->params);
    if (!m->params)
        return ps_errf(e, PS_ERUN, "gpt_init: out of memory");
    int rc = pinit(m, GPT_WTE, "wte", V, C, e);
    rc = rc ? rc : pinit(m, GPT_WPE, "wpe", c->ctx, C, e);
    static const char *const nm[GPT_PER_LAYER] = {
        "ln1.g",       "ln1.b", "attn.qkv.w", "attn.qkv.b", "attn.proj.w", "attn.proj.b",
        "ln2.g",       "ln2.b", "mlp.fc.w",   "mlp.fc.b",   "mlp.proj.w",  "mlp.proj.b"};
    const int64_t sh[GPT_PER_LAYER][2] = {{C, 0},     {C, 0},     {3 * C, C}, {3 * C, 0},
                                          {C, C},     {C, 0},     {C, 0},     {C, 0},
                                          {4 * C, C}, {4 * C, 0}, {C, 4 * C}, {C, 0}};
    for (int l = 0; l < c->layers && !rc; l++)
        for (int s = 0; s < GPT_PER_LAYER && !rc; s++) {
            char name[48];
            snprintf(name, sizeof name, "h.%d.%s", l, nm[s]);
            rc = pinit(m, GPT_LAYER0 + GPT_PER_LAYER * l + s, name, sh[s][0], sh[s][1], e);
        }
    rc = rc ? rc : pinit(m, lnf_index(c), "lnf.g", C, 0, e);
    rc = rc ? rc : pinit(m, lnf_index(c) + 1, "lnf.b", C, 0, e);
    if (!rc && !c->tied)
        rc = pinit(m, lnf_index(c) + 2, "lm_head.w", V, C, e);
    /* GPT-2's initialisation, in parameter order from one stream. */
    rt_rng r;
    rt_rng_seed(&r, seed);
    const double std = 0.02, std_res = 0.02 / sqrt(2.0 * c->layers);
    for (int i = 0; i < m->nparams && !rc; i++) {
        rt_param *p = &m->params[i];
        const char *n = p->name;
        size_t len = strlen(n);
        if (len >= 2 && !strcmp(n + len - 2, ".g"))
            rc = rt_tensor_fill(&p->w, 1.0, e);
        else if (p->w.ndim == 2)
            rc = rt_init_normal(&p->w, &r, 0.0, strstr(n, "proj.w") ? std_res : std, e);
        /* biases and beta stay 0 */
    }
    if (rc)
        gpt_free(m);
    return rc;
}

static void acts_free(gpt *m);

void gpt_free(gpt *m)
{
    if (!m)
        return;
    acts_free(m);
    for (int i = 0; i < m->nparams; i++)
        rt_param_free(&m->params[i]);
    free(m->params);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ activations */

static int tn(rt_tensor *t, rt_dev *d, rt_dtype dt, int ndim, int64_t a, int64_t b, int64_t c,
              int64_t dd, ps_err *e)
{
    int64_t s[4] = {a, b, c, dd};
    return rt_tensor_alloc(t, d, dt, ndim, s, e);
}

/* A view of t with another shape of the same element count. */
static int as_shape(rt_tensor *v, const rt_tensor *t, int ndim, int64_t a, int64_t b, int64_t c,
                    int64_t d, ps_err *e)
{
    int64_t s[4] = {a, b, c, d};
    return rt_tensor_reshape(v, t, ndim, s, e);
}

/* A view of the first a*b*c*d elements of t's storage with that shape. */
static int prefix(rt_tensor *v, const rt_tensor *t, int ndim, int64_t a, int64_t b, int64_t c,
                  int64_t d, ps_err *e)
{
    int64_t s[4] = {a, b, c, d}, n = 1;
    for (int i = 0; i < ndim; i++)
        n *= s[i];
    rt_tensor flat, part;
    int64_t all = t->numel;
    TRY(rt_tensor_reshape(&flat, t, 1, &all, e));
    TRY(rt_tensor_rows(&part, &flat, 0, n, e));
    return rt_tensor_reshape(v, &part, ndim, s, e);
}

static void acts_free(gpt *m)
{
    gpt_acts *a = &m->a;
    rt_tensor *flat[] = {&a->tokens, &a->pos,  &a->targets, &a->mask,  &a->lnf,  &a->lnf_mean,
                         &a->lnf_rstd, &a->logits, &a->probs, &a->qkv, &a->q,    &a->k,
                         &a->v,      &a->yh,   &a->tmp,     &a->dres,  &a->dtmp, &a->dln,
                         &a->dy,     &a->dqkv, &a->dq,      &a->dk,    &a->dv,   &a->dyh,
                         &a->dqh,    &a->dkh,  &a->dvh,     &a->dfch,  &a->dfchg, &a->dlogits};
    for (size_t i = 0; i < sizeof flat / sizeof *flat; i++)
        rt_tensor_free(flat[i]);
    if (a->res)
        for (int i = 0; i < 2 * m->cfg.layers + 1; i++)
            rt_tensor_free(&a->res[i]);
    if (a->layer)
        for (int l = 0; l < m->cfg.layers; l++) {
            gpt_layer_acts *L = &a->layer[l];
            rt_tensor *lt[] = {&L->ln1, &L->ln1_mean, &L->ln1_rstd, &L->qh,       &L->kh,
                               &L->vh,  &L->att,      &L->y,        &L->ln2,      &L->ln2_mean,
                               &L->ln2_rstd, &L->fch, &L->fchg};
            for (size_t i = 0; i < sizeof lt / sizeof *lt; i++)
                rt_tensor_free(lt[i]);
        }
    free(a->res);
    free(a->layer);
    memset(a, 0, sizeof *a);
}

static int acts_alloc(gpt *m, int64_t B, int64_t T, ps_err *e)
{
    gpt_acts *a = &m->a;
    if (a->res && a->B == B && a->T == T)
        return 0;
    acts_free(m);
    const int64_t N = B * T, C = m->cfg.dim, H = m->cfg.heads, hd = C / H, V = m->cfg.vocab;
    const int L = m->cfg.layers;
    rt_dev *d = m->dev;
    rt_dtype f = m->dtype;
    a->res = calloc((size_t)(2 * L + 1), sizeof *a->res);
    a->layer = calloc((size_t)L, sizeof *a->layer);
    if (!a->res || !a->layer) {
        acts_free(m);
        return ps_errf(e, PS_ERUN, "gpt: out of memory for activations");
    }
    a->B = B, a->T = T;
    int rc = tn(&a->tokens, d, RT_I32, 2, B, T, 0, 0, e);
    rc = rc ? rc : tn(&a->pos, d, RT_I32, 2, B, T, 0, 0, e);
    rc = rc ? rc : tn(&a->targets, d, RT_I32, 2, B, T, 0, 0, e);
    rc = rc ? rc : tn(&a->mask, d, RT_U8, 3, B, T, T, 0, e);
    for (int i = 0; i < 2 * L + 1 && !rc; i++)
        rc = tn(&a->res[i], d, f, 2, N, C, 0, 0, e);
    for (int l = 0; l < L && !rc; l++) {
        gpt_layer_acts *y = &a->layer[l];
        rc = tn(&y->ln1, d, f, 2, N, C, 0, 0, e);
        rc = rc ? rc : tn(&y->ln1_mean, d, f, 1, N, 0, 0, 0, e);
        rc = rc ? rc : tn(&y->ln1_rstd, d, f, 1, N, 0, 0, 0, e);
        rc = rc ? rc : tn(&y->qh, d, f, 4, B, H, T, hd, e);
        rc = rc ? rc : tn(&y->kh, d, f, 4, B, H, T, hd, e);
        rc = rc ? rc : tn(&y->vh, d, f, 4, B, H, T, hd, e);
        rc = rc ? rc : tn(&y->att, d, f, 4, B, H, T, T, e);
        rc = rc ? rc : tn(&y->y, d, f, 2, N, C, 0, 0, e);
        rc = rc ? rc : tn(&y->ln2, d, f, 2, N, C, 0, 0, e);
        rc = rc ? rc : tn(&y->ln2_mean, d, f, 1, N, 0, 0, 0, e);
        rc = rc ? rc : tn(&y->ln2_rstd, d, f, 1, N, 0, 0, 0, e);
        rc = rc ? rc : tn(&y->fch, d, f, 2, N, 4 * C, 0, 0, e);
        rc = rc ? rc : tn(&y->fchg, d, f, 2, N, 4 * C, 0, 0, e);
    }
    rc = rc ? rc : tn(&a->lnf, d, f, 2, N, C, 0, 0, e);
    rc = rc ? rc : tn(&a->lnf_mean, d, f, 1, N, 0, 0, 0, e);
    rc = rc ? rc : tn(&a->lnf_rstd, d, f, 1, N, 0, 0, 0, e);
    rc = rc ? rc : tn(&a->logits, d, f, 2, N, V, 0, 0, e);
    rc = rc ? rc : tn(&a->probs, d, f, 2, N, V, 0, 0, e);
    rc = rc ? rc : tn(&a->qkv, d, f, 2, N, 3 * C, 0, 0, e);
    rt_tensor *nc[] = {&a->q, &a->k, &a->v, &a->tmp, &a->dres, &a->dtmp, &a->dln, &a->dy,
                       &a->dq, &a->dk, &a->dv};
    for (size_t i = 0; i < sizeof nc / sizeof *nc && !rc; i++)
        rc = tn(nc[i], d, f, 2, N, C, 0, 0, e);
    rt_tensor *hh[] = {&a->yh, &a->dyh, &a->dqh, &a->dkh, &a->dvh};
    for (size_t i = 0; i < sizeof hh / sizeof *hh && !rc; i++)
        rc = tn(hh[i], d, f, 4, B, H, T, hd, e);
    rc = rc ? rc : tn(&a->dqkv, d, f, 2, N, 3 * C, 0, 0, e);
    rc = rc ? rc : tn(&a->dfch, d, f, 2, N, 4 * C, 0, 0, e);
    rc = rc ? rc : tn(&a->dfchg, d, f, 2, N, 4 * C, 0, 0, e);
    rc = rc ? rc : tn(&a->dlogits, d, f, 2, N, V, 0, 0, e);
    if (rc)
        acts_free(m);
    return rc;
}

/* ------------------------------------------------------------------ forward */

static int check_batch(const gpt *m, const gpt_batch *in, ps_err *e)
{
    const gpt_config *c = &m->cfg;
    if (!in || !in->tokens)
        return ps_errf(e, PS_EINPUT, "gpt_forward: no tokens");
    if (in->B < 1 || in->T < 1 || in->T > c->ctx)
        return ps_errf(e, PS_EINPUT, "gpt_forward: B %lld, T %lld: need B >= 1, 1 <= T <= ctx %d",
                       (long long)in->B, (long long)in->T, c->ctx);
    const int64_t N = in->B * in->T;
    for (int64_t i = 0; i < N; i++) {
        if (in->tokens[i] < 0 || in->tokens[i] >= c->vocab)
            return ps_errf(e, PS_EINPUT, "gpt_forward: tokens[%lld] = %d outside [0, %d)",
                           (long long)i, in->tokens[i], c->vocab);
        if (in->targets && (in->targets[i] < -1 || in->targets[i] >= c->vocab))
            return ps_errf(e, PS_EINPUT, "gpt_forward: targets[%lld] = %d outside [-1, %d)",
                           (long long)i, in->targets[i], c->vocab);
        if (in->pos && (in->pos[i] < 0 || in->pos[i] >= c->ctx))
            return ps_errf(e, PS_EINPUT, "gpt_forward: pos[%lld] = %d outside [0, %d)",
                           (long long)i, in->pos[i], c->ctx);
    }
    return 0;
}

/* Attention of layer y over the batch: causal in one call, or one call per
 * sequence with its own mask. */
static int attn_fwd(gpt *m, gpt_layer_acts *y, ps_err *e)
{
    gpt_acts *a = &m->a;
    if (!a->has_mask)
        return rt_attention_fwd(&y->qh, &y->kh, &y->vh, a->T, RT_MASK_CAUSAL, NULL, &y->att,
                                &a->yh, e);
    for (int64_t b = 0; b < a->B; b++) {
        rt_tensor q, k, v, att, o, mk, mask;
        TRY(rt_tensor_rows(&q, &y->qh, b, 1, e));
        TRY(rt_tensor_rows(&k, &y->kh, b, 1, e));
        TRY(rt_tensor_rows(&v, &y->vh, b, 1, e));
        TRY(rt_tensor_rows(&att, &y->att, b, 1, e));
        TRY(rt_tensor_rows(&o, &a->yh, b, 1, e));
        TRY(rt_tensor_rows(&mk, &a->mask, b, 1, e));
        TRY(as_shape(&mask, &mk, 2, a->T, a->T, 0, 0, e));
        TRY(rt_attention_fwd(&q, &k, &v, a->T, RT_MASK_BOOL, &mask, &att, &o, e));
    }
    return 0;
}

static int attn_bwd(gpt *m, gpt_layer_acts *y, ps_err *e)
{
    gpt_acts *a = &m->a;
    if (!a->has_mask)
        return rt_attention_bwd(&y->qh, &y->kh, &y->vh, a->T, &y->att, &a->dyh, &a->dqh,
                                &a->dkh, &a->dvh, e);
    for (int64_t b = 0; b < a->B; b++) {
        rt_tensor q, k, v, att, dout, dq, dk, dv;
        TRY(rt_tensor_rows(&q, &y->qh, b, 1, e));
        TRY(rt_tensor_rows(&k, &y->kh, b, 1, e));
        TRY(rt_tensor_rows(&v, &y->vh, b, 1, e));
        TRY(rt_tensor_rows(&att, &y->att, b, 1, e));
        TRY(rt_tensor_rows(&dout, &a->dyh, b, 1, e));
        TRY(rt_tensor_rows(&dq, &a->dqh, b, 1, e));
        TRY(rt_tensor_rows(&dk, &a->dkh, b, 1, e));
        TRY(rt_tensor_rows(&dv, &a->dvh, b, 1, e));
        TRY(rt_attention_bwd(&q, &k, &v, a->T, &att, &dout, &dq, &dk, &dv, e));
    }
    return 0;
}

int gpt_forward(gpt *m, const gpt_batch *in, double *loss, ps_err *e)
{
    TRY(check_batch(m, in, e));
    const int64_t B = in->B, T = in->T, N = B * T, C = m->cfg.dim, H = m->cfg.heads,
                  hd = C / H;
    TRY(acts_alloc(m, B, T, e));
    gpt_acts *a = &m->a;
    TRY(rt_tensor_from_host(&a->tokens, in->tokens, e));
    if (in->pos) {
        TRY(rt_tensor_from_host(&a->pos, in->pos, e));
    } else {
        int32_t *p = malloc((size_t)N * sizeof *p);
        if (!p)
            return ps_errf(e, PS_ERUN, "gpt_forward: out of memory");
        for (int64_t i = 0; i < N; i++)
            p[i] = (int32_t)(i % T);
        int rc = rt_tensor_from_host(&a->pos, p, e);
        free(p);
        TRY(rc);
    }
    a->has_targets = in->targets != NULL;
    if (in->targets)
        TRY(rt_tensor_from_host(&a->targets, in->targets, e));
    a->has_mask = in->mask != NULL;
    if (in->mask)
        TRY(rt_tensor_from_host(&a->mask, in->mask, e));

    rt_param *p = m->params;
    TRY(rt_embedding_fwd(&a->tokens, &p[GPT_WTE].w, &a->res[0], e));
    TRY(rt_embedding_fwd(&a->pos, &p[GPT_WPE].w, &a->tmp, e));
    TRY(rt_axpy(1.0, &a->tmp, &a->res[0], e));
    for (int l = 0; l < m->cfg.layers; l++) {
        gpt_layer_acts *y = &a->layer[l];
        rt_param *w = gpt_layer_param(m, l, 0);
        rt_tensor *x = &a->res[2 * l], *x1 = &a->res[2 * l + 1], *x2 = &a->res[2 * l + 2];
        TRY(rt_layernorm_fwd(x, &w[GPT_LN1_G].w, &w[GPT_LN1_B].w, LN_EPS, &y->ln1, &y->ln1_mean,
                             &y->ln1_rstd, e));
        TRY(rt_linear_fwd(&y->ln1, &w[GPT_QKV_W].w, &w[GPT_QKV_B].w, &a->qkv, e));
        rt_tensor *qkv[3] = {&a->q, &a->k, &a->v};
        TRY(rt_split_cols(&a->qkv, qkv, 3, e));
        rt_tensor v4;
        TRY(as_shape(&v4, &a->q, 4, B, T, H, hd, e));
        TRY(rt_split_heads(&v4, &y->qh, e));
        TRY(as_shape(&v4, &a->k, 4, B, T, H, hd, e));
        TRY(rt_split_heads(&v4, &y->kh, e));
        TRY(as_shape(&v4, &a->v, 4, B, T, H, hd, e));
        TRY(rt_split_heads(&v4, &y->vh, e));
        TRY(attn_fwd(m, y, e));
        TRY(as_shape(&v4, &y->y, 4, B, T, H, hd, e));
        TRY(rt_merge_heads(&a->yh, &v4, e));
        TRY(rt_linear_fwd(&y->y, &w[GPT_PROJ_W].w, &w[GPT_PROJ_B].w, &a->tmp, e));
        TRY(rt_add(x, &a->tmp, x1, e));
        TRY(rt_layernorm_fwd(x1, &w[GPT_LN2_G].w, &w[GPT_LN2_B].w, LN_EPS, &y->ln2, &y->ln2_mean,
                             &y->ln2_rstd, e));
        TRY(rt_linear_fwd(&y->ln2, &w[GPT_FC_W].w, &w[GPT_FC_B].w, &y->fch, e));
        TRY(rt_act_fwd(RT_GELU, 0.0, &y->fch, &y->fchg, e));
        TRY(rt_linear_fwd(&y->fchg, &w[GPT_FC2_W].w, &w[GPT_FC2_B].w, &a->tmp, e));
        TRY(rt_add(x1, &a->tmp, x2, e));
    }
    TRY(rt_layernorm_fwd(&a->res[2 * m->cfg.layers], &gpt_lnf_g(m)->w, &gpt_lnf_b(m)->w, LN_EPS,
                         &a->lnf, &a->lnf_mean, &a->lnf_rstd, e));
    TRY(rt_linear_fwd(&a->lnf, &gpt_lm_head(m)->w, NULL, &a->logits, e));
    if (a->has_targets) {
        double l = 0;
        TRY(rt_softmax_xent_fwd(&a->logits, &a->targets, &a->probs, &l, e));
        m->loss = l;
        if (loss)
            *loss = l;
    }
    return 0;
}

/* ------------------------------------------------------------------ backward */

int gpt_backward(gpt *m, ps_err *e)
{
    gpt_acts *a = &m->a;
    if (!a->res || !a->has_targets)
        return ps_errf(e, PS_EINPUT, "gpt_backward: no forward with targets to differentiate");
    const int64_t B = a->B, T = a->T, C = m->cfg.dim, H = m->cfg.heads, hd = C / H;
    const int L = m->cfg.layers;
    rt_param *head = gpt_lm_head(m), *lg = gpt_lnf_g(m), *lb = gpt_lnf_b(m);
    TRY(rt_softmax_xent_bwd(&a->probs, &a->targets, 1.0, &a->dlogits, e));
    TRY(rt_linear_bwd(&a->lnf, &head->w, &a->dlogits, &a->dln, &head->g, NULL, e));
    TRY(rt_layernorm_bwd(&a->res[2 * L], &lg->w, &a->lnf_mean, &a->lnf_rstd, &a->dln, &a->dres,
                         &lg->g, &lb->g, e));
    for (int l = L - 1; l >= 0; l--) {
        gpt_layer_acts *y = &a->layer[l];
        rt_param *w = gpt_layer_param(m, l, 0);
        rt_tensor *x = &a->res[2 * l], *x1 = &a->res[2 * l + 1];
        /* MLP: x2 = x1 + fc2(gelu(fc(ln2(x1)))); dres holds d x2 */
        TRY(rt_linear_bwd(&y->fchg, &w[GPT_FC2_W].w, &a->dres, &a->dfchg, &w[GPT_FC2_W].g,
                          &w[GPT_FC2_B].g, e));
        TRY(rt_act_bwd(RT_GELU, 0.0, &y->fch, &y->fchg, &a->dfchg, &a->dfch, e));
        TRY(rt_linear_bwd(&y->ln2, &w[GPT_FC_W].w, &a->dfch, &a->dln, &w[GPT_FC_W].g,
                          &w[GPT_FC_B].g, e));
        TRY(rt_layernorm_bwd(x1, &w[GPT_LN2_G].w, &y->ln2_mean, &y->ln2_rstd, &a->dln, &a->dtmp,
                             &w[GPT_LN2_G].g, &w[GPT_LN2_B].g, e));
        TRY(rt_axpy(1.0, &a->dtmp, &a->dres, e)); /* dres = d x1 */
        /* attention: x1 = x + proj(merge(att(split(qkv(ln1(x)))))) */
        TRY(rt_linear_bwd(&y->y, &w[GPT_PROJ_W].w, &a->dres, &a->dy, &w[GPT_PROJ_W].g,
                          &w[GPT_PROJ_B].g, e));
        rt_tensor v4;
        TRY(as_shape(&v4, &a->dy, 4, B, T, H, hd, e));
        TRY(rt_split_heads(&v4, &a->dyh, e));
        TRY(attn_bwd(m, y, e));
        TRY(as_shape(&v4, &a->dq, 4, B, T, H, hd, e));
        TRY(rt_merge_heads(&a->dqh, &v4, e));
        TRY(as_shape(&v4, &a->dk, 4, B, T, H, hd, e));
        TRY(rt_merge_heads(&a->dkh, &v4, e));
        TRY(as_shape(&v4, &a->dv, 4, B, T, H, hd, e));
        TRY(rt_merge_heads(&a->dvh, &v4, e));
        const rt_tensor *dqkv[3] = {&a->dq, &a->dk, &a->dv};
        TRY(rt_concat_cols(dqkv, 3, &a->dqkv, e));
        TRY(rt_linear_bwd(&y->ln1, &w[GPT_QKV_W].w, &a->dqkv, &a->dln, &w[GPT_QKV_W].g,
                          &w[GPT_QKV_B].g, e));
        TRY(rt_layernorm_bwd(x, &w[GPT_LN1_G].w, &y->ln1_mean, &y->ln1_rstd, &a->dln, &a->dtmp,
                             &w[GPT_LN1_G].g, &w[GPT_LN1_B].g, e));
        TRY(rt_axpy(1.0, &a->dtmp, &a->dres, e)); /* dres = d x */
    }
    TRY(rt_embedding_bwd(&a->tokens, &a->dres, &m->params[GPT_WTE].g, e));
    TRY(rt_embedding_bwd(&a->pos, &a->dres, &m->params[GPT_WPE].g, e));
    return 0;
}

int gpt_train_step(gpt *m, const gpt_batch *in, rt_opt *opt, double *loss, ps_err *e)
{
    if (!in || !in->targets)
        return ps_errf(e, PS_EINPUT, "gpt_train_step: the batch has no targets");
    TRY(rt_params_zero_grad(m->params, m->nparams, e));
    TRY(gpt_forward(m, in, loss, e));
    TRY(gpt_backward(m, e));
    return rt_opt_step(opt, m->params, m->nparams, e);
}

/* ------------------------------------------------------------------ FLOPs, bench */

double gpt_fwd_flops(const gpt_config *c, int64_t B, int64_t T)
{
    const double N = (double)B * (double)T, C = c->dim, V = c->vocab;
    double per_tok = c->layers * (24.0 * C * C + 4.0 * (double)T * C) + 2.0 * C * V;
    return N * per_tok;
}

double gpt_step_flops(const gpt_config *c, int64_t B, int64_t T)
{
    return 3.0 * gpt_fwd_flops(c, B, T);
}

int gpt_bench_step(const gpt_config *c, rt_dev *d, int64_t B, int64_t T, int warmup, int steps,
                   uint64_t seed, gpt_bench_result *r, ps_err *e)
{
    memset(r, 0, sizeof *r);
    if (steps < 1 || warmup < 0)
        return ps_errf(e, PS_EINPUT, "gpt_bench_step: steps %d must be >= 1, warmup >= 0", steps);
    gpt m;
    TRY(gpt_init(&m, c, d, RT_F32, seed, e));
    int32_t *tok = malloc((size_t)(B * T) * 2 * sizeof *tok);
    if (!tok) {
        gpt_free(&m);
        return ps_errf(e, PS_ERUN, "gpt_bench_step: out of memory");
    }
    rt_rng rng;
    rt_rng_seed(&rng, seed + 1);
    for (int64_t i = 0; i < 2 * B * T; i++)
        tok[i] = (int32_t)(rt_rng_next(&rng) % (uint64_t)c->vocab);
    gpt_batch in = {.B = B, .T = T, .tokens = tok, .targets = tok + B * T};
    rt_opt opt = {.kind = RT_OPT_ADAMW, .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8};
    int rc = 0;
    double sum = 0, best = INFINITY;
    for (int s = 0; s < warmup + steps && !rc; s++) {
        double t0 = ps_now_s();
        rc = gpt_train_step(&m, &in, &opt, &r->loss, e);
        rc = rc ? rc : rt_dev_sync(d, e);
        double dt = ps_now_s() - t0;
        if (s >= warmup) {
            sum += dt;
            if (dt < best)
                best = dt;
        }
    }
    if (!rc) {
        r->step_s_mean = sum / steps;
        r->step_s_best = best;
        r->flops_per_step = gpt_step_flops(c, B, T);
        r->gflops_best = r->flops_per_step / best / 1e9;
        r->params = gpt_num_params(&m);
    }
    free(tok);
    gpt_free(&m);
    return rc;
}

/* ------------------------------------------------------------------ training on text */

int gpt_eval_text(gpt *m, const text_corpus *c, int64_t B, int64_t T, int n, uint64_t seed,
                  double *loss, ps_err *e)
{
    if (n < 1)
        return ps_errf(e, PS_EINPUT, "gpt_eval_text: %d batches", n);
    int32_t *buf = malloc((size_t)(B * T) * 2 * sizeof *buf);
    if (!buf)
        return ps_errf(e, PS_ERUN, "gpt_eval_text: out of memory");
    rt_rng r;
    rt_rng_seed(&r, seed);
    double sum = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        double l = 0;
        rc = text_batch(c, TEXT_VAL, &r, B, T, buf, buf + B * T, e);
        gpt_batch in = {.B = B, .T = T, .tokens = buf, .targets = buf + B * T};
        rc = rc ? rc : gpt_forward(m, &in, &l, e);
        sum += l;
    }
    free(buf);
    if (!rc)
        *loss = sum / n;
    return rc;
}

int gpt_train_text(gpt *m, const text_corpus *c, const gpt_train_opts *o, gpt_train_result *r,
                   ps_err *e)
{
    memset(r, 0, sizeof *r);
    if (o->steps < 1 || o->B < 1 || o->T < 1 || o->T > m->cfg.ctx || !(o->lr > 0))
        return ps_errf(e, PS_EINPUT,
                       "gpt_train_text: steps %lld, B %lld, T %lld (ctx %d), lr %g: need "
                       "positive values and T <= ctx",
                       (long long)o->steps, (long long)o->B, (long long)o->T, m->cfg.ctx, o->lr);
    const int64_t B = o->B, T = o->T;
    int32_t *buf = malloc((size_t)(B * T) * 2 * sizeof *buf);
    if (!buf)
        return ps_errf(e, PS_ERUN, "gpt_train_text: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, o->seed);
    rt_opt opt = {.kind = RT_OPT_ADAMW, .lr = o->lr, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8};
    const int64_t warm = o->steps / 10 > 0 ? o->steps / 10 : 1;
    ps_progress pg;
    ps_progress_start(&pg, "gpt train", (size_t)o->steps);
    double t0 = ps_now_s();
    int rc = 0;
    for (int64_t s = 0; s < o->steps && !rc; s++) {
        if (s < warm)
            opt.lr = o->lr * (double)(s + 1) / (double)warm;
        else {
            double f = (double)(s - warm) / (double)(o->steps - warm > 1 ? o->steps - warm - 1 : 1);
            opt.lr = o->lr * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI * f)));
        }
        rc = text_batch(c, TEXT_TRAIN, &rng, B, T, buf, buf + B * T, e);
        gpt_batch in = {.B = B, .T = T, .tokens = buf, .targets = buf + B * T};
        double loss = 0;
        rc = rc ? rc : gpt_train_step(m, &in, &opt, &loss, e);
        if (s == 0)
            r->first_loss = loss;
        r->last_loss = loss;
        char det[64];
        snprintf(det, sizeof det, "loss %.3f", loss);
        ps_progress_update(&pg, (size_t)s + 1, det);
    }
    rc = rc ? rc : rt_dev_sync(m->dev, e);
    r->seconds = ps_now_s() - t0;
    ps_progress_end(&pg);
    free(buf);
    if (!rc && o->eval_batches > 0)
        rc = gpt_eval_text(m, c, B, T, o->eval_batches, o->seed + 1, &r->val_loss, e);
    return rc;
}

/* ------------------------------------------------------------------ KV-cache inference */

int64_t gpt_kv_len(const gpt_kv *kv)
{
    return kv->cache ? kv->cache[0].len : 0;
}

void gpt_kv_free(gpt_kv *kv)
{
    if (!kv)
        return;
    if (kv->cache)
        for (int l = 0; l < kv->layers; l++)
            rt_kvcache_free(&kv->cache[l]);
    free(kv->cache);
    rt_tensor *t[] = {&kv->ids, &kv->pos, &kv->mask, &kv->x,  &kv->ln,  &kv->mean, &kv->rstd,
                      &kv->qkv, &kv->q,   &kv->k,    &kv->v,  &kv->qh,  &kv->kh,   &kv->vh,
                      &kv->yh,  &kv->y,   &kv->tmp,  &kv->fch, &kv->fchg, &kv->logits};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        rt_tensor_free(t[i]);
    free(kv->host);
    memset(kv, 0, sizeof *kv);
}

int gpt_kv_init(gpt_kv *kv, const gpt *m, int64_t cap, int64_t max_new, ps_err *e)
{
    memset(kv, 0, sizeof *kv);
    const gpt_config *c = &m->cfg;
    if (cap < 1 || cap > c->ctx || max_new < 1 || max_new > cap)
        return ps_errf(e, PS_EINPUT,
                       "gpt_kv_init: cap %lld must be in [1, ctx %d], max_new %lld in [1, cap]",
                       (long long)cap, c->ctx, (long long)max_new);
    const int64_t C = c->dim, H = c->heads, hd = C / H, V = c->vocab, n = max_new;
    kv->layers = c->layers;
    kv->cap = cap;
    kv->max_new = max_new;
    kv->cache = calloc((size_t)c->layers, sizeof *kv->cache);
    kv->host = malloc((size_t)(n * V) * sizeof *kv->host);
    if (!kv->cache || !kv->host) {
        gpt_kv_free(kv);
        return ps_errf(e, PS_ERUN, "gpt_kv_init: out of memory");
    }
    int rc = 0;
    for (int l = 0; l < c->layers && !rc; l++) {
        rt_kvcache *kc = &kv->cache[l];
        if (m->dtype == RT_F32)
            rc = rt_kvcache_init(kc, m->dev, 1, H, cap, hd, e);
        else { /* the same struct in f64 (CPU checks) */
            rc = tn(&kc->k, m->dev, m->dtype, 4, 1, H, cap, hd, e);
            rc = rc ? rc : tn(&kc->v, m->dev, m->dtype, 4, 1, H, cap, hd, e);
            kc->len = 0;
        }
    }
    rt_dev *d = m->dev;
    rt_dtype f = m->dtype;
    rc = rc ? rc : tn(&kv->ids, d, RT_I32, 1, n, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->pos, d, RT_I32, 1, n, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->mask, d, RT_U8, 1, n * cap, 0, 0, 0, e);
    rt_tensor *nc[] = {&kv->x, &kv->ln, &kv->q, &kv->k, &kv->v, &kv->qh, &kv->kh,
                       &kv->vh, &kv->yh, &kv->y, &kv->tmp};
    for (size_t i = 0; i < sizeof nc / sizeof *nc && !rc; i++)
        rc = tn(nc[i], d, f, 1, n * C, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->mean, d, f, 1, n, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->rstd, d, f, 1, n, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->qkv, d, f, 1, n * 3 * C, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->fch, d, f, 1, n * 4 * C, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->fchg, d, f, 1, n * 4 * C, 0, 0, 0, e);
    rc = rc ? rc : tn(&kv->logits, d, f, 1, n * V, 0, 0, 0, e);
    if (rc)
        gpt_kv_free(kv);
    return rc;
}

/* The row-independent CPU decode (f32 and f64 from one template).  Kernel
 * width of its linear layers: 16-byte vectors everywhere, 32-byte (AVX2,
 * no FMA) on x86-64 CPUs that have it; chosen once (gpt_decode_simd). */
#if defined(__x86_64__) && defined(__GNUC__)
#define XK_HAVE_AVX2 1
#else
#define XK_HAVE_AVX2 0
#endif
static int xk_mode = 0; /* gpt_decode_simd: 0 auto, 16, 32 */

static int xk_width(void)
{
    static int avx2 = -1;
    if (avx2 < 0) {
#if XK_HAVE_AVX2
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
#else
        avx2 = 0;
#endif
    }
    if (xk_mode == 16 || !avx2)
        return 16;
    return 32;
}

int gpt_decode_simd(int width)
{
    if (width == 0 || width == 16 || width == 32)
        xk_mode = width;
    return xk_width();
}

#define T float
#define SFX(n) n##_f32
#define EXP expf
#define ERF erff
#include "real/gpt_exact_impl.h"
#define T double
#define SFX(n) n##_f64
#define EXP exp
#define ERF erf
#include "real/gpt_exact_impl.h"

/* The layers over n new tokens; kv caches appended.  On failure the caller
 * truncates every cache back. */
static int decode_layers(gpt *m, gpt_kv *kv, int64_t n, int tree, ps_err *e)
{
    const gpt_config *c = &m->cfg;
    const int64_t C = c->dim, H = c->heads, hd = C / H, V = c->vocab;
    const int64_t len = kv->cache[0].len, tkv = len + n;
    rt_tensor ids, pos, mask, x, ln, mean, rstd, qkv, q, k, v, qh, kh, vh, yh, y, tmp, fch, fchg,
        logits, v4;
    TRY(prefix(&ids, &kv->ids, 1, n, 0, 0, 0, e));
    TRY(prefix(&pos, &kv->pos, 1, n, 0, 0, 0, e));
    TRY(prefix(&mask, &kv->mask, 2, n, tkv, 0, 0, e));
    TRY(prefix(&x, &kv->x, 2, n, C, 0, 0, e));
    TRY(prefix(&ln, &kv->ln, 2, n, C, 0, 0, e));
    TRY(prefix(&mean, &kv->mean, 1, n, 0, 0, 0, e));
    TRY(prefix(&rstd, &kv->rstd, 1, n, 0, 0, 0, e));
    TRY(prefix(&qkv, &kv->qkv, 2, n, 3 * C, 0, 0, e));
    TRY(prefix(&q, &kv->q, 2, n, C, 0, 0, e));
    TRY(prefix(&k, &kv->k, 2, n, C, 0, 0, e));
    TRY(prefix(&v, &kv->v, 2, n, C, 0, 0, e));
    TRY(prefix(&qh, &kv->qh, 4, 1, H, n, hd, e));
    TRY(prefix(&kh, &kv->kh, 4, 1, H, n, hd, e));
    TRY(prefix(&vh, &kv->vh, 4, 1, H, n, hd, e));
    TRY(prefix(&yh, &kv->yh, 4, 1, H, n, hd, e));
    TRY(prefix(&y, &kv->y, 2, n, C, 0, 0, e));
    TRY(prefix(&tmp, &kv->tmp, 2, n, C, 0, 0, e));
    TRY(prefix(&fch, &kv->fch, 2, n, 4 * C, 0, 0, e));
    TRY(prefix(&fchg, &kv->fchg, 2, n, 4 * C, 0, 0, e));
    TRY(prefix(&logits, &kv->logits, 2, n, V, 0, 0, e));

    rt_param *p = m->params;
    TRY(rt_embedding_fwd(&ids, &p[GPT_WTE].w, &x, e));
    TRY(rt_embedding_fwd(&pos, &p[GPT_WPE].w, &tmp, e));
    TRY(rt_axpy(1.0, &tmp, &x, e));
    for (int l = 0; l < c->layers; l++) {
        rt_param *w = gpt_layer_param(m, l, 0);
        rt_kvcache *kc = &kv->cache[l];
        TRY(rt_layernorm_fwd(&x, &w[GPT_LN1_G].w, &w[GPT_LN1_B].w, LN_EPS, &ln, &mean, &rstd, e));
        TRY(rt_linear_fwd(&ln, &w[GPT_QKV_W].w, &w[GPT_QKV_B].w, &qkv, e));
        rt_tensor *parts[3] = {&q, &k, &v};
        TRY(rt_split_cols(&qkv, parts, 3, e));
        TRY(as_shape(&v4, &q, 4, 1, n, H, hd, e));
        TRY(rt_split_heads(&v4, &qh, e));
        TRY(as_shape(&v4, &k, 4, 1, n, H, hd, e));
        TRY(rt_split_heads(&v4, &kh, e));
        TRY(as_shape(&v4, &v, 4, 1, n, H, hd, e));
        TRY(rt_split_heads(&v4, &vh, e));
        TRY(rt_kvcache_append(kc, &kh, &vh, e));
        TRY(rt_attention_fwd(&qh, &kc->k, &kc->v, tkv, tree ? RT_MASK_BOOL : RT_MASK_CAUSAL,
                             tree ? &mask : NULL, NULL, &yh, e));
        TRY(as_shape(&v4, &y, 4, 1, n, H, hd, e));
        TRY(rt_merge_heads(&yh, &v4, e));
        TRY(rt_linear_fwd(&y, &w[GPT_PROJ_W].w, &w[GPT_PROJ_B].w, &tmp, e));
        TRY(rt_axpy(1.0, &tmp, &x, e));
        TRY(rt_layernorm_fwd(&x, &w[GPT_LN2_G].w, &w[GPT_LN2_B].w, LN_EPS, &ln, &mean, &rstd, e));
        TRY(rt_linear_fwd(&ln, &w[GPT_FC_W].w, &w[GPT_FC_B].w, &fch, e));
        TRY(rt_act_fwd(RT_GELU, 0.0, &fch, &fchg, e));
        TRY(rt_linear_fwd(&fchg, &w[GPT_FC2_W].w, &w[GPT_FC2_B].w, &tmp, e));
        TRY(rt_axpy(1.0, &tmp, &x, e));
    }
    TRY(rt_layernorm_fwd(&x, &gpt_lnf_g(m)->w, &gpt_lnf_b(m)->w, LN_EPS, &ln, &mean, &rstd, e));
    return rt_linear_fwd(&ln, &gpt_lm_head(m)->w, NULL, &logits, e);
}

/* gpt_decode and gpt_decode_forest: n new tokens at rows [len, len + n);
 * parent NULL: a causal chain (base unused); else the forest of rows
 * [base, len + n) described by parent[0 .. len - base + n). */
static int decode_common(gpt *m, gpt_kv *kv, int64_t base, int64_t n, const int32_t *tokens,
                         const int32_t *parent, double *logits, const char *fn, ps_err *e)
{
    const gpt_config *c = &m->cfg;
    if (!kv->cache || kv->layers != c->layers)
        return ps_errf(e, PS_EINPUT, "%s: the KV cache was not made for this model", fn);
    const int64_t len = gpt_kv_len(kv), V = c->vocab, tkv = len + n;
    if (n < 1 || n > kv->max_new || len + n > kv->cap)
        return ps_errf(e, PS_EINPUT,
                       "%s: %lld new tokens after %lld: need 1 <= n <= max_new %lld and "
                       "len + n <= cap %lld",
                       fn, (long long)n, (long long)len, (long long)kv->max_new,
                       (long long)kv->cap);
    if (parent && (base < 0 || base > len))
        return ps_errf(e, PS_EINPUT, "%s: base %lld outside [0, len %lld]", fn, (long long)base,
                       (long long)len);
    const int64_t nf = parent ? len - base + n : 0; /* forest entries */
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    int64_t *par = malloc((size_t)(nf > 0 ? nf : 1) * sizeof *par);
    int32_t *dep = malloc((size_t)(nf > 0 ? nf : 1) * sizeof *dep);
    uint8_t *mask = parent ? malloc((size_t)(n * tkv)) : NULL;
    int rc = 0;
    if (!pos || !par || !dep || (parent && !mask))
        rc = ps_errf(e, PS_ERUN, "%s: out of memory", fn);
    for (int64_t i = 0; i < n && !rc; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            rc = ps_errf(e, PS_EINPUT, "%s: tokens[%lld] = %d outside [0, %d)", fn, (long long)i,
                         tokens[i], c->vocab);
    for (int64_t j = 0; j < nf && !rc; j++) {
        if (parent[j] < -1 || parent[j] >= j)
            rc = ps_errf(e, PS_EINPUT, "%s: parent[%lld] = %d outside [-1, %lld)", fn,
                         (long long)j, parent[j], (long long)j);
        else {
            par[j] = parent[j];
            dep[j] = par[j] < 0 ? 0 : dep[par[j]] + 1; /* positions follow the path */
        }
    }
    for (int64_t i = 0; i < n && !rc; i++)
        pos[i] = (int32_t)(parent ? base + dep[nf - n + i] : len + i);
    for (int64_t i = 0; i < n && !rc && parent; i++) {
        /* token i sees the prefix [0, base), its ancestors and itself */
        uint8_t *row = mask + i * tkv;
        memset(row, 0, (size_t)tkv);
        memset(row, 1, (size_t)base);
        for (int64_t a = nf - n + i; a >= 0; a = par[a])
            row[base + a] = 1;
    }
    for (int64_t i = 0; i < n && !rc; i++)
        if (pos[i] >= c->ctx)
            rc = ps_errf(e, PS_EINPUT, "%s: token %lld at position %d past ctx %d", fn,
                         (long long)i, pos[i], c->ctx);
    const int exact = rt_dev_kind(m->dev) == RT_CPU;
    if (!rc && !exact) {
        rt_tensor ids, pv, mv;
        rc = prefix(&ids, &kv->ids, 1, n, 0, 0, 0, e);
        rc = rc ? rc : rt_tensor_from_host(&ids, tokens, e);
        rc = rc ? rc : prefix(&pv, &kv->pos, 1, n, 0, 0, 0, e);
        rc = rc ? rc : rt_tensor_from_host(&pv, pos, e);
        if (!rc && parent) {
            rc = prefix(&mv, &kv->mask, 1, n * tkv, 0, 0, 0, e);
            rc = rc ? rc : rt_tensor_from_host(&mv, mask, e);
        }
    }
    if (!rc && exact) /* row-independent, no BLAS: real/gpt_exact_impl.h */
        rc = m->dtype == RT_F32 ? xdecode_f32(m, kv, n, tokens, pos, mask, logits, e)
                                : xdecode_f64(m, kv, n, tokens, pos, mask, logits, e);
    else if (!rc)
        rc = decode_layers(m, kv, n, parent != NULL, e);
    if (rc) { /* leave every layer's cache as it was */
        for (int l = 0; l < kv->layers; l++)
            if (kv->cache[l].len > len)
                kv->cache[l].len = len;
    } else if (logits && !exact) {
        rt_tensor lv;
        rc = prefix(&lv, &kv->logits, 1, n * V, 0, 0, 0, e);
        rc = rc ? rc : rt_tensor_to_host(&lv, kv->host, e);
        if (!rc && m->dtype == RT_F32) {
            const float *f = (const float *)kv->host;
            for (int64_t i = 0; i < n * V; i++)
                logits[i] = f[i];
        } else if (!rc)
            memcpy(logits, kv->host, (size_t)(n * V) * sizeof *logits);
    }
    free(pos);
    free(par);
    free(dep);
    free(mask);
    return rc;
}

int gpt_decode(gpt *m, gpt_kv *kv, int64_t n, const int32_t *tokens, const int32_t *parent,
               double *logits, ps_err *e)
{
    return decode_common(m, kv, gpt_kv_len(kv), n, tokens, parent, logits, "gpt_decode", e);
}

int gpt_decode_forest(gpt *m, gpt_kv *kv, int64_t base, int64_t n, const int32_t *tokens,
                      const int32_t *parent, double *logits, ps_err *e)
{
    if (!parent)
        return ps_errf(e, PS_EINPUT, "gpt_decode_forest: parent is NULL");
    return decode_common(m, kv, base, n, tokens, parent, logits, "gpt_decode_forest", e);
}

int gpt_kv_truncate(gpt_kv *kv, int64_t len, ps_err *e)
{
    for (int l = 0; l < kv->layers; l++)
        TRY(rt_kvcache_truncate(&kv->cache[l], len, e));
    return 0;
}

int gpt_kv_keep(gpt_kv *kv, int64_t from, const int64_t *rows, int64_t n, ps_err *e)
{
    for (int l = 0; l < kv->layers; l++)
        TRY(rt_kvcache_keep_rows(&kv->cache[l], from, rows, n, e));
    return 0;
}
