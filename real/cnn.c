/* The configurable CNN; see cnn.h.  Forward top to bottom, backward bottom
 * to top, the activations backward needs kept in the struct for the batch's
 * first n rows. */
#include "real/cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CNN_MAXPARAMS 32

cnn_config cnn_config_default(void)
{
    cnn_config c = {.in_ch = 1,
                    .in_h = 28,
                    .in_w = 28,
                    .nblocks = 2,
                    .ch = {32, 64},
                    .ksize = 3,
                    .batchnorm = 1,
                    .hidden = 128,
                    .classes = 10};
    return c;
}

cnn_config cnn_config_small(void)
{
    cnn_config c = cnn_config_default();
    c.ch[0] = 8;
    c.ch[1] = 16;
    c.hidden = 32;
    return c;
}

int cnn_config_check(const cnn_config *c, ps_err *e)
{
    if (c->in_ch < 1 || c->in_h < 1 || c->in_w < 1)
        return ps_errf(e, PS_EINPUT, "cnn: input %dx%dx%d: every size must be >= 1", c->in_ch,
                       c->in_h, c->in_w);
    if (c->nblocks < 1 || c->nblocks > CNN_MAXBLOCKS)
        return ps_errf(e, PS_EINPUT, "cnn: nblocks %d outside [1, %d]", c->nblocks,
                       CNN_MAXBLOCKS);
    if (c->ksize < 1 || c->ksize % 2 == 0)
        return ps_errf(e, PS_EINPUT, "cnn: ksize %d must be odd and >= 1", c->ksize);
    if (c->hidden < 0 || c->classes < 2)
        return ps_errf(e, PS_EINPUT, "cnn: hidden %d (>= 0) / classes %d (>= 2)", c->hidden,
                       c->classes);
    int h = c->in_h, w = c->in_w;
    for (int i = 0; i < c->nblocks; i++) {
        if (c->ch[i] < 1)
            return ps_errf(e, PS_EINPUT, "cnn: ch[%d] = %d must be >= 1", i, c->ch[i]);
        if (h < 2 || w < 2)
            return ps_errf(e, PS_EINPUT,
                           "cnn: block %d: input %dx%d is too small for 2x2 pooling", i + 1, h,
                           w);
        h /= 2;
        w /= 2;
    }
    return 0;
}

void cnn_config_str(const cnn_config *c, char *buf, size_t n)
{
    char ch[64] = "";
    size_t off = 0;
    for (int i = 0; i < c->nblocks; i++)
        off += (size_t)snprintf(ch + off, sizeof ch - off, "%s%d", i ? "," : "", c->ch[i]);
    snprintf(buf, n, "cnn in=%dx%dx%d ch=%s k=%d bn=%d hidden=%d classes=%d", c->in_ch, c->in_h,
             c->in_w, ch, c->ksize, c->batchnorm, c->hidden, c->classes);
}

int cnn_config_parse(const char *s, cnn_config *c, ps_err *e)
{
    cnn_config t = {0};
    char ch[64];
    int used = 0;
    if (!s || sscanf(s, "cnn in=%dx%dx%d ch=%63s k=%d bn=%d hidden=%d classes=%d%n", &t.in_ch,
                     &t.in_h, &t.in_w, ch, &t.ksize, &t.batchnorm, &t.hidden, &t.classes,
                     &used) != 8)
        return ps_errf(e, PS_EINPUT, "cnn: '%s' is not a CNN config string", s ? s : "(null)");
    char *p = ch;
    while (*p && t.nblocks < CNN_MAXBLOCKS) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1 << 16)
            return ps_errf(e, PS_EINPUT, "cnn: bad channel list '%s' in '%s'", ch, s);
        t.ch[t.nblocks++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return ps_errf(e, PS_EINPUT, "cnn: bad channel list '%s' in '%s'", ch, s);
    }
    if (*p)
        return ps_errf(e, PS_EINPUT, "cnn: more than %d blocks in '%s'", CNN_MAXBLOCKS, s);
    if (cnn_config_check(&t, e))
        return e ? e->code : PS_EINPUT;
    *c = t;
    return 0;
}

double cnn_flops_fwd(const cnn_config *c, int64_t batch)
{
    double f = 0, n = (double)batch;
    int cin = c->in_ch, h = c->in_h, w = c->in_w;
    for (int i = 0; i < c->nblocks; i++) {
        f += 2.0 * n * c->ch[i] * cin * c->ksize * c->ksize * h * w;
        cin = c->ch[i];
        h /= 2;
        w /= 2;
    }
    double flat = (double)cin * h * w;
    if (c->hidden)
        f += 2.0 * n * flat * c->hidden + 2.0 * n * c->hidden * c->classes;
    else
        f += 2.0 * n * flat * c->classes;
    return f;
}

double cnn_flops_step(const cnn_config *c, int64_t batch)
{
    double fwd = cnn_flops_fwd(c, batch);
    /* backward: weight and input gradients each cost a forward, except the
     * first conv's input gradient, which is not computed */
    double first = 2.0 * batch * c->ch[0] * c->in_ch * c->ksize * c->ksize * c->in_h * c->in_w;
    return fwd + 2.0 * fwd - first;
}

static rt_param *add_param(cnn *net, const char *name, int ndim, const int64_t *shape, ps_err *e)
{
    if (net->nparams >= CNN_MAXPARAMS) {
        ps_errf(e, PS_ERUN, "cnn: too many parameters");
        return NULL;
    }
    rt_param *p = &net->params[net->nparams];
    if (rt_param_init(p, name, net->dev, net->dt, ndim, shape, e))
        return NULL;
    net->nparams++;
    return p;
}

/* Batch norm, ReLU and pooling as one op (rt_bn_relu_maxpool_*: no
 * full-size intermediates) where the device has it; else the three ops. */
static int fused_block(const cnn *net)
{
    return net->cfg.batchnorm && rt_bn_relu_maxpool_available(net->dev);
}

static int alloc4(rt_tensor *t, const cnn *net, rt_dtype dt, int64_t c, int64_t h, int64_t w,
                  ps_err *e)
{
    return rt_tensor_new4(t, net->dev, dt, net->max_batch, c, h, w, e);
}

int cnn_init(cnn *net, const cnn_config *c, rt_dev *d, rt_dtype dt, int64_t max_batch,
             uint64_t seed, ps_err *e)
{
    memset(net, 0, sizeof *net);
    if (cnn_config_check(c, e))
        return e ? e->code : PS_EINPUT;
    if (max_batch < 1)
        return ps_errf(e, PS_EINPUT, "cnn: max_batch %lld must be >= 1", (long long)max_batch);
    net->cfg = *c;
    net->dev = d;
    net->dt = dt;
    net->max_batch = max_batch;
    net->bn = (rt_bn){.eps = 1e-5, .momentum = 0.1, .training = 1};
    net->params = calloc(CNN_MAXPARAMS, sizeof(rt_param));
    if (!net->params)
        return ps_errf(e, PS_ERUN, "cnn: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    char name[48];
    int k = c->ksize, cin = c->in_ch, h = c->in_h, w = c->in_w;
    /* trainable parameters, in forward order */
    for (int i = 0; i < c->nblocks; i++) {
        cnn_block *b = &net->blk[i];
        b->c_in = cin;
        b->h_in = h;
        b->w_in = w;
        b->c_out = c->ch[i];
        b->h = h;
        b->w = w;
        int64_t fan_in = (int64_t)cin * k * k;
        int64_t ws[4] = {c->ch[i], cin, k, k}, cs[1] = {c->ch[i]};
        snprintf(name, sizeof name, "conv%d.w", i + 1);
        if (!(b->conv_w = add_param(net, name, 4, ws, e)) ||
            rt_init_fan_in(&b->conv_w->w, &rng, fan_in, e))
            goto fail;
        if (!c->batchnorm) {
            snprintf(name, sizeof name, "conv%d.b", i + 1);
            if (!(b->conv_b = add_param(net, name, 1, cs, e)) ||
                rt_init_fan_in(&b->conv_b->w, &rng, fan_in, e))
                goto fail;
        } else {
            snprintf(name, sizeof name, "bn%d.gamma", i + 1);
            if (!(b->bn_g = add_param(net, name, 1, cs, e)) || rt_tensor_fill(&b->bn_g->w, 1, e))
                goto fail;
            snprintf(name, sizeof name, "bn%d.beta", i + 1);
            if (!(b->bn_b = add_param(net, name, 1, cs, e)))
                goto fail;
        }
        cin = c->ch[i];
        h /= 2;
        w /= 2;
    }
    net->flat = (int64_t)cin * h * w;
    int64_t out1 = c->hidden ? c->hidden : c->classes;
    int64_t s1[2] = {out1, net->flat}, b1[1] = {out1};
    if (!(net->fc1_w = add_param(net, "fc1.w", 2, s1, e)) ||
        rt_init_fan_in(&net->fc1_w->w, &rng, net->flat, e) ||
        !(net->fc1_b = add_param(net, "fc1.b", 1, b1, e)) ||
        rt_init_fan_in(&net->fc1_b->w, &rng, net->flat, e))
        goto fail;
    if (c->hidden) {
        int64_t s2[2] = {c->classes, c->hidden}, b2[1] = {c->classes};
        if (!(net->fc2_w = add_param(net, "fc2.w", 2, s2, e)) ||
            rt_init_fan_in(&net->fc2_w->w, &rng, c->hidden, e) ||
            !(net->fc2_b = add_param(net, "fc2.b", 1, b2, e)) ||
            rt_init_fan_in(&net->fc2_b->w, &rng, c->hidden, e))
            goto fail;
    }
    net->ntrain = net->nparams;
    /* buffers: batch-norm running statistics */
    for (int i = 0; i < c->nblocks && c->batchnorm; i++) {
        cnn_block *b = &net->blk[i];
        int64_t cs[1] = {b->c_out};
        snprintf(name, sizeof name, "bn%d.running_mean", i + 1);
        if (!(b->bn_rm = add_param(net, name, 1, cs, e)))
            goto fail;
        snprintf(name, sizeof name, "bn%d.running_var", i + 1);
        if (!(b->bn_rv = add_param(net, name, 1, cs, e)) || rt_tensor_fill(&b->bn_rv->w, 1, e))
            goto fail;
    }
    /* activations and their gradients (fused blocks keep neither the
     * normalised nor the activated tensor, nor their gradients: the conv
     * output's gradient overwrites it) */
    const int fu = fused_block(net);
    for (int i = 0; i < c->nblocks; i++) {
        cnn_block *b = &net->blk[i];
        if (alloc4(&b->conv, net, dt, b->c_out, b->h, b->w, e) ||
            (c->batchnorm && !fu && alloc4(&b->bn, net, dt, b->c_out, b->h, b->w, e)) ||
            (!fu && alloc4(&b->act, net, dt, b->c_out, b->h, b->w, e)) ||
            alloc4(&b->pool, net, dt, b->c_out, b->h / 2, b->w / 2, e) ||
            alloc4(&b->argmax, net, RT_I32, b->c_out, b->h / 2, b->w / 2, e) ||
            (c->batchnorm && !fu && alloc4(&b->dconv, net, dt, b->c_out, b->h, b->w, e)) ||
            (!fu && alloc4(&b->dact, net, dt, b->c_out, b->h, b->w, e)) ||
            alloc4(&b->dpool, net, dt, b->c_out, b->h / 2, b->w / 2, e))
            goto fail;
        if (c->batchnorm && (rt_tensor_new1(&b->mean, d, dt, b->c_out, e) ||
                             rt_tensor_new1(&b->rstd, d, dt, b->c_out, e)))
            goto fail;
    }
    if (c->hidden && (rt_tensor_new2(&net->h1, d, dt, max_batch, c->hidden, e) ||
                      rt_tensor_new2(&net->a1, d, dt, max_batch, c->hidden, e) ||
                      rt_tensor_new2(&net->dh1, d, dt, max_batch, c->hidden, e)))
        goto fail;
    if (rt_tensor_new2(&net->logits, d, dt, max_batch, c->classes, e) ||
        rt_tensor_new2(&net->probs, d, dt, max_batch, c->classes, e) ||
        rt_tensor_new2(&net->dlogits, d, dt, max_batch, c->classes, e))
        goto fail;
    return 0;
fail:;
    int code = e && e->code ? e->code : PS_ERUN;
    cnn_free(net);
    return code;
}

void cnn_free(cnn *net)
{
    if (!net)
        return;
    for (int i = 0; i < CNN_MAXBLOCKS; i++) {
        cnn_block *b = &net->blk[i];
        rt_tensor *ts[] = {&b->conv, &b->bn,    &b->act,  &b->pool,  &b->argmax,
                           &b->mean, &b->rstd,  &b->dconv, &b->dact, &b->dpool};
        for (size_t j = 0; j < sizeof ts / sizeof *ts; j++)
            rt_tensor_free(ts[j]);
    }
    rt_tensor *hs[] = {&net->h1, &net->a1, &net->logits, &net->probs, &net->dh1, &net->dlogits};
    for (size_t j = 0; j < sizeof hs / sizeof *hs; j++)
        rt_tensor_free(hs[j]);
    if (net->params)
        for (int i = 0; i < net->nparams; i++)
            rt_param_free(&net->params[i]);
    free(net->params);
    memset(net, 0, sizeof *net);
}

/* The flattened output of the last block, first n rows. */
static int flat_view(const cnn *net, int64_t n, rt_tensor *pool_flat, rt_tensor *dpool_flat,
                     ps_err *e)
{
    const cnn_block *b = &net->blk[net->cfg.nblocks - 1];
    int64_t shape[2] = {n, net->flat};
    rt_tensor p = rt_view_rows(&b->pool, n), dp = rt_view_rows(&b->dpool, n);
    if (pool_flat && rt_tensor_reshape(pool_flat, &p, 2, shape, e))
        return e ? e->code : PS_ERUN;
    if (dpool_flat && rt_tensor_reshape(dpool_flat, &dp, 2, shape, e))
        return e ? e->code : PS_ERUN;
    return 0;
}

int cnn_forward(cnn *net, const rt_tensor *x, int training, ps_err *e)
{
    const cnn_config *c = &net->cfg;
    int64_t n = x->shape[0];
    if (x->ndim != 4 || n > net->max_batch || x->shape[1] != c->in_ch ||
        x->shape[2] != c->in_h || x->shape[3] != c->in_w) {
        char buf[96];
        return ps_errf(e, PS_EINPUT,
                       "cnn_forward: x is %s, expected [n <= %lld, %d, %d, %d]",
                       rt_tensor_desc(x, buf, sizeof buf), (long long)net->max_batch, c->in_ch,
                       c->in_h, c->in_w);
    }
    net->cur_n = n;
    net->training = training;
    net->conv_spent = 0;
    rt_bn bn = net->bn;
    bn.training = training;
    rt_conv g = {.stride = 1, .pad = c->ksize / 2};
    const rt_tensor *in = x;
    rt_tensor in_view;
    const int fu = fused_block(net);
    for (int i = 0; i < c->nblocks; i++) {
        cnn_block *b = &net->blk[i];
        rt_tensor conv = rt_view_rows(&b->conv, n), pool = rt_view_rows(&b->pool, n),
                  am = rt_view_rows(&b->argmax, n);
        if (rt_conv2d_fwd(&g, in, &b->conv_w->w, b->conv_b ? &b->conv_b->w : NULL, &conv, e))
            return e ? e->code : PS_ERUN;
        if (fu) {
            if (rt_bn_relu_maxpool_fwd(&bn, 2, 2, &conv, &b->bn_g->w, &b->bn_b->w, &b->bn_rm->w,
                                       &b->bn_rv->w, &pool, &am, &b->mean, &b->rstd, e))
                return e ? e->code : PS_ERUN;
            in_view = pool;
            in = &in_view;
            continue;
        }
        rt_tensor act = rt_view_rows(&b->act, n);
        const rt_tensor *pre = &conv;
        rt_tensor bnv;
        if (c->batchnorm) {
            bnv = rt_view_rows(&b->bn, n);
            if (rt_batchnorm_fwd(&bn, &conv, &b->bn_g->w, &b->bn_b->w, &b->bn_rm->w,
                                 &b->bn_rv->w, &bnv, &b->mean, &b->rstd, e))
                return e ? e->code : PS_ERUN;
            pre = &bnv;
        }
        if (rt_act_fwd(RT_RELU, 0, pre, &act, e) || rt_maxpool2d_fwd(2, 2, &act, &pool, &am, e))
            return e ? e->code : PS_ERUN;
        in_view = pool;
        in = &in_view;
    }
    rt_tensor flat, logits = rt_view_rows(&net->logits, n);
    if (flat_view(net, n, &flat, NULL, e))
        return e->code;
    if (c->hidden) {
        rt_tensor h1 = rt_view_rows(&net->h1, n), a1 = rt_view_rows(&net->a1, n);
        if (rt_linear_fwd(&flat, &net->fc1_w->w, &net->fc1_b->w, &h1, e) ||
            rt_act_fwd(RT_RELU, 0, &h1, &a1, e) ||
            rt_linear_fwd(&a1, &net->fc2_w->w, &net->fc2_b->w, &logits, e))
            return e ? e->code : PS_ERUN;
    } else if (rt_linear_fwd(&flat, &net->fc1_w->w, &net->fc1_b->w, &logits, e))
        return e ? e->code : PS_ERUN;
    return 0;
}

int cnn_logits(const cnn *net, rt_tensor *view, ps_err *e)
{
    if (net->cur_n < 1)
        return ps_errf(e, PS_EINPUT, "cnn_logits: no forward yet");
    return rt_tensor_rows(view, &net->logits, 0, net->cur_n, e);
}

int64_t cnn_feature_dim(const cnn *net)
{
    return net->cfg.hidden ? net->cfg.hidden : net->flat;
}

int cnn_features(const cnn *net, rt_tensor *view, ps_err *e)
{
    if (net->cur_n < 1)
        return ps_errf(e, PS_EINPUT, "cnn_features: no forward yet");
    if (net->cfg.hidden)
        return rt_tensor_rows(view, &net->a1, 0, net->cur_n, e);
    return flat_view(net, net->cur_n, view, NULL, e);
}

int cnn_loss(cnn *net, const rt_tensor *labels, double *loss, ps_err *e)
{
    int64_t n = net->cur_n;
    if (n < 1)
        return ps_errf(e, PS_EINPUT, "cnn_loss: no forward yet");
    rt_tensor logits = rt_view_rows(&net->logits, n), probs = rt_view_rows(&net->probs, n);
    return rt_softmax_xent_fwd(&logits, labels, &probs, loss, e);
}

int cnn_backward(cnn *net, const rt_tensor *x, const rt_tensor *labels, ps_err *e)
{
    const cnn_config *c = &net->cfg;
    int64_t n = net->cur_n;
    if (n < 1 || x->ndim != 4 || x->shape[0] != n)
        return ps_errf(e, PS_EINPUT, "cnn_backward: x must be the last forward's input (%lld rows)",
                       (long long)n);
    const int fu = fused_block(net);
    if (fu && net->conv_spent)
        return ps_errf(e, PS_EINPUT, "cnn_backward: a second backward after one forward (the "
                                     "first overwrote the saved conv outputs)");
    rt_bn bn = net->bn;
    bn.training = net->training;
    rt_conv g = {.stride = 1, .pad = c->ksize / 2};
    rt_tensor probs = rt_view_rows(&net->probs, n), dlogits = rt_view_rows(&net->dlogits, n), flat,
              dflat;
    if (rt_softmax_xent_bwd(&probs, labels, 1.0, &dlogits, e) ||
        flat_view(net, n, &flat, &dflat, e))
        return e ? e->code : PS_ERUN;
    if (c->hidden) {
        rt_tensor h1 = rt_view_rows(&net->h1, n), a1 = rt_view_rows(&net->a1, n),
                  dh1 = rt_view_rows(&net->dh1, n);
        if (rt_linear_bwd(&a1, &net->fc2_w->w, &dlogits, &dh1, &net->fc2_w->g, &net->fc2_b->g,
                          e) ||
            rt_act_bwd(RT_RELU, 0, &h1, &a1, &dh1, &dh1, e) ||
            rt_linear_bwd(&flat, &net->fc1_w->w, &dh1, &dflat, &net->fc1_w->g, &net->fc1_b->g,
                          e))
            return e ? e->code : PS_ERUN;
    } else if (rt_linear_bwd(&flat, &net->fc1_w->w, &dlogits, &dflat, &net->fc1_w->g,
                             &net->fc1_b->g, e))
        return e ? e->code : PS_ERUN;
    net->conv_spent = fu;
    for (int i = c->nblocks - 1; i >= 0; i--) {
        cnn_block *b = &net->blk[i];
        rt_tensor conv = rt_view_rows(&b->conv, n), am = rt_view_rows(&b->argmax, n),
                  dpool = rt_view_rows(&b->dpool, n);
        rt_tensor dconv;
        if (fu) { /* in place: the conv output becomes its gradient */
            rt_tensor pool = rt_view_rows(&b->pool, n);
            dconv = conv;
            if (rt_bn_relu_maxpool_bwd(&bn, 2, 2, &conv, &b->bn_g->w, &b->mean, &b->rstd, &pool,
                                       &am, &dpool, &dconv, &b->bn_g->g, &b->bn_b->g, e))
                return e ? e->code : PS_ERUN;
        } else {
            rt_tensor act = rt_view_rows(&b->act, n), dact = rt_view_rows(&b->dact, n);
            rt_tensor pre = c->batchnorm ? rt_view_rows(&b->bn, n) : conv;
            if (rt_maxpool2d_bwd(2, 2, &am, &dpool, &dact, e) ||
                rt_act_bwd(RT_RELU, 0, &pre, &act, &dact, &dact, e))
                return e ? e->code : PS_ERUN;
            dconv = dact;
            if (c->batchnorm) {
                dconv = rt_view_rows(&b->dconv, n);
                if (rt_batchnorm_bwd(&bn, &conv, &b->bn_g->w, &b->mean, &b->rstd, &dact, &dconv,
                                     &b->bn_g->g, &b->bn_b->g, e))
                    return e ? e->code : PS_ERUN;
            }
        }
        rt_tensor in = i ? rt_view_rows(&net->blk[i - 1].pool, n) : *x;
        rt_tensor din = i ? rt_view_rows(&net->blk[i - 1].dpool, n) : (rt_tensor){0};
        if (rt_conv2d_bwd(&g, &in, &b->conv_w->w, &dconv, i ? &din : NULL, &b->conv_w->g,
                          b->conv_b ? &b->conv_b->g : NULL, e))
            return e ? e->code : PS_ERUN;
    }
    return 0;
}

int cnn_predict(const cnn *net, int32_t *pred, ps_err *e)
{
    int64_t n = net->cur_n, k = net->cfg.classes;
    if (n < 1)
        return ps_errf(e, PS_EINPUT, "cnn_predict: no forward yet");
    rt_tensor lg = rt_view_rows(&net->logits, n);
    size_t bytes = (size_t)(n * k) * rt_dtype_size(net->dt);
    void *h = malloc(bytes);
    if (!h)
        return ps_errf(e, PS_ERUN, "cnn_predict: out of memory");
    if (rt_tensor_to_host(&lg, h, e)) {
        free(h);
        return e ? e->code : PS_ERUN;
    }
    for (int64_t i = 0; i < n; i++) {
        int32_t best = 0;
        if (net->dt == RT_F64) {
            const double *r = (const double *)h + i * k;
            for (int64_t j = 1; j < k; j++)
                if (r[j] > r[best])
                    best = (int32_t)j;
        } else {
            const float *r = (const float *)h + i * k;
            for (int64_t j = 1; j < k; j++)
                if (r[j] > r[best])
                    best = (int32_t)j;
        }
        pred[i] = best;
    }
    free(h);
    return 0;
}

int cnn_save(const cnn *net, const char *path, const char *extra_meta, ps_err *e)
{
    char cfg[256], meta[512];
    cnn_config_str(&net->cfg, cfg, sizeof cfg);
    snprintf(meta, sizeof meta, "%s%s%s", cfg, extra_meta && *extra_meta ? "; " : "",
             extra_meta ? extra_meta : "");
    return rt_save(path, net->params, net->nparams, meta, e);
}

int cnn_load(cnn *net, const char *path, ps_err *e)
{
    return rt_load(path, net->params, net->nparams, NULL, e);
}
