/* The DCGAN generator and discriminator, their adversarial training, the
 * weights cache and the Fréchet distance; see gan.h. */
#include "real/gan.h"

#include <gsl/gsl_eigen.h>
#include <gsl/gsl_matrix.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

#define GAN_FORMAT_VERSION 1
#define GAN_MAXPARAMS 16

/* ------------------------------------------------------------------ config */

gan_config gan_config_default(int quick, uint64_t seed)
{
    /* The spec's widths (128 / 64) cost about 0.5 s a step on one shared
     * core; half of them train 3x more steps in the same ~5 minutes, which
     * gives better samples here (docs/real-gan.md). */
    gan_config c = {.zdim = 32,
                    .g_ch1 = 64,
                    .g_ch2 = 32,
                    .d_ch1 = 32,
                    .d_ch2 = 64,
                    .d_bn = 1,
                    .batch = 64,
                    .steps = 1500,
                    .ntrain = 0,
                    .lr = 2e-4,
                    .beta1 = 0.5,
                    .beta2 = 0.999,
                    .seed = seed};
    if (quick) {
        c.g_ch1 = 32;
        c.g_ch2 = 16;
        c.d_ch1 = 16;
        c.d_ch2 = 32;
        c.steps = 300;
        c.ntrain = 20000;
    }
    return c;
}

gan_config gan_config_test(uint64_t seed)
{
    gan_config c = gan_config_default(1, seed);
    c.zdim = 8;
    c.g_ch1 = 16;
    c.g_ch2 = 8;
    c.d_ch1 = 8;
    c.d_ch2 = 16;
    c.batch = 32;
    c.steps = 60;
    c.ntrain = 2000;
    return c;
}

int gan_config_check(const gan_config *c, ps_err *e)
{
    if (c->zdim < 1 || c->zdim > 4096)
        return ps_errf(e, PS_EINPUT, "gan: zdim %d outside [1, 4096]", c->zdim);
    if (c->g_ch1 < 1 || c->g_ch2 < 1 || c->d_ch1 < 1 || c->d_ch2 < 1)
        return ps_errf(e, PS_EINPUT, "gan: channels g %d,%d d %d,%d must be >= 1", c->g_ch1,
                       c->g_ch2, c->d_ch1, c->d_ch2);
    if (c->batch < 2)
        return ps_errf(e, PS_EINPUT, "gan: batch %lld must be >= 2 (batch norm)",
                       (long long)c->batch);
    if (c->steps < 0 || c->ntrain < 0)
        return ps_errf(e, PS_EINPUT, "gan: steps %lld / ntrain %lld must be >= 0",
                       (long long)c->steps, (long long)c->ntrain);
    if (!(c->lr > 0) || !(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return ps_errf(e, PS_EINPUT, "gan: lr %g must be > 0 and betas (%g, %g) in [0, 1)", c->lr,
                       c->beta1, c->beta2);
    return 0;
}

uint64_t gan_config_hash(const gan_config *c)
{
    uint64_t h = PS_FNV1A_OFFSET;
    h = ps_fnv1a_u64(h, GAN_FORMAT_VERSION);
    h = ps_fnv1a_u64(h, (uint64_t)c->zdim);
    h = ps_fnv1a_u64(h, (uint64_t)c->g_ch1);
    h = ps_fnv1a_u64(h, (uint64_t)c->g_ch2);
    h = ps_fnv1a_u64(h, (uint64_t)c->d_ch1);
    h = ps_fnv1a_u64(h, (uint64_t)c->d_ch2);
    h = ps_fnv1a_u64(h, (uint64_t)c->d_bn);
    h = ps_fnv1a_u64(h, (uint64_t)c->batch);
    h = ps_fnv1a_u64(h, (uint64_t)c->steps);
    h = ps_fnv1a_u64(h, (uint64_t)c->ntrain);
    h = ps_fnv1a_u64(h, ps_double_bits(c->lr));
    h = ps_fnv1a_u64(h, ps_double_bits(c->beta1));
    h = ps_fnv1a_u64(h, ps_double_bits(c->beta2));
    return ps_fnv1a_u64(h, c->seed);
}

json_t *gan_config_to_json(const gan_config *c)
{
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)gan_config_hash(c));
    return json_pack("{s:i, s:[i,i], s:[i,i], s:b, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:s}",
                     "zdim", c->zdim, "g_ch", c->g_ch1, c->g_ch2, "d_ch", c->d_ch1, c->d_ch2,
                     "d_bn", c->d_bn, "batch", (json_int_t)c->batch, "steps",
                     (json_int_t)c->steps, "ntrain", (json_int_t)c->ntrain, "lr", c->lr, "beta1",
                     c->beta1, "beta2", c->beta2, "seed", (json_int_t)c->seed, "hash", hash);
}

/* ------------------------------------------------------------------ shared helpers */

static rt_param *add_param(rt_param *ps, int *np, const char *name, rt_dev *d, rt_dtype dt,
                           int ndim, const int64_t *shape, ps_err *e)
{
    if (*np >= GAN_MAXPARAMS) {
        ps_errf(e, PS_ERUN, "gan: too many parameters");
        return NULL;
    }
    rt_param *p = &ps[*np];
    if (rt_param_init(p, name, d, dt, ndim, shape, e))
        return NULL;
    (*np)++;
    return p;
}

#define RC(x)                                                                                     \
    do {                                                                                          \
        if (x)                                                                                    \
            return e && e->code ? e->code : PS_ERUN;                                              \
    } while (0)

/* ------------------------------------------------------------------ generator */

int gan_gen_init(gan_gen *g, const gan_config *c, rt_dev *d, rt_dtype dt, int64_t max_batch,
                 uint64_t seed, ps_err *e)
{
    memset(g, 0, sizeof *g);
    if (gan_config_check(c, e))
        return e ? e->code : PS_EINPUT;
    if (max_batch < 1)
        return ps_errf(e, PS_EINPUT, "gan_gen_init: max_batch %lld must be >= 1",
                       (long long)max_batch);
    g->cfg = *c;
    g->dev = d;
    g->dt = dt;
    g->max_batch = max_batch;
    g->bn = (rt_bn){.eps = 1e-5, .momentum = 0.1, .training = 1};
    g->params = calloc(GAN_MAXPARAMS, sizeof(rt_param));
    if (!g->params)
        return ps_errf(e, PS_ERUN, "gan: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    const int64_t C1 = c->g_ch1, C2 = c->g_ch2, Z = c->zdim, B = max_batch;
    int64_t s_fc[2] = {C1 * 49, Z}, s_c1[1] = {C1}, s_ct1[4] = {C1, C2, 4, 4}, s_c2[1] = {C2},
            s_ct2[4] = {C2, 1, 4, 4}, s_1[1] = {1};
    int *np = &g->nparams;
    if (!(g->fc_w = add_param(g->params, np, "G.fc.w", d, dt, 2, s_fc, e)) ||
        rt_init_normal(&g->fc_w->w, &rng, 0, 0.02, e) ||
        !(g->bn0_g = add_param(g->params, np, "G.bn0.gamma", d, dt, 1, s_c1, e)) ||
        rt_init_normal(&g->bn0_g->w, &rng, 1, 0.02, e) ||
        !(g->bn0_b = add_param(g->params, np, "G.bn0.beta", d, dt, 1, s_c1, e)) ||
        !(g->ct1_w = add_param(g->params, np, "G.ct1.w", d, dt, 4, s_ct1, e)) ||
        rt_init_normal(&g->ct1_w->w, &rng, 0, 0.02, e) ||
        !(g->bn1_g = add_param(g->params, np, "G.bn1.gamma", d, dt, 1, s_c2, e)) ||
        rt_init_normal(&g->bn1_g->w, &rng, 1, 0.02, e) ||
        !(g->bn1_b = add_param(g->params, np, "G.bn1.beta", d, dt, 1, s_c2, e)) ||
        !(g->ct2_w = add_param(g->params, np, "G.ct2.w", d, dt, 4, s_ct2, e)) ||
        rt_init_normal(&g->ct2_w->w, &rng, 0, 0.02, e) ||
        !(g->ct2_b = add_param(g->params, np, "G.ct2.b", d, dt, 1, s_1, e)))
        goto fail;
    g->ntrain = g->nparams;
    if (!(g->bn0_rm = add_param(g->params, np, "G.bn0.running_mean", d, dt, 1, s_c1, e)) ||
        !(g->bn0_rv = add_param(g->params, np, "G.bn0.running_var", d, dt, 1, s_c1, e)) ||
        rt_tensor_fill(&g->bn0_rv->w, 1, e) ||
        !(g->bn1_rm = add_param(g->params, np, "G.bn1.running_mean", d, dt, 1, s_c2, e)) ||
        !(g->bn1_rv = add_param(g->params, np, "G.bn1.running_var", d, dt, 1, s_c2, e)) ||
        rt_tensor_fill(&g->bn1_rv->w, 1, e))
        goto fail;
    if (rt_tensor_new2(&g->h0, d, dt, B, C1 * 49, e) ||
        rt_tensor_new4(&g->b0, d, dt, B, C1, 7, 7, e) ||
        rt_tensor_new4(&g->a0, d, dt, B, C1, 7, 7, e) ||
        rt_tensor_new4(&g->h1, d, dt, B, C2, 14, 14, e) ||
        rt_tensor_new4(&g->b1, d, dt, B, C2, 14, 14, e) ||
        rt_tensor_new4(&g->a1, d, dt, B, C2, 14, 14, e) ||
        rt_tensor_new4(&g->h2, d, dt, B, 1, 28, 28, e) ||
        rt_tensor_new4(&g->out, d, dt, B, 1, 28, 28, e) || rt_tensor_new1(&g->m0, d, dt, C1, e) ||
        rt_tensor_new1(&g->r0, d, dt, C1, e) || rt_tensor_new1(&g->m1, d, dt, C2, e) ||
        rt_tensor_new1(&g->r1, d, dt, C2, e) || rt_tensor_new2(&g->dh0, d, dt, B, C1 * 49, e) ||
        rt_tensor_new4(&g->da0, d, dt, B, C1, 7, 7, e) ||
        rt_tensor_new4(&g->dh1, d, dt, B, C2, 14, 14, e) ||
        rt_tensor_new4(&g->da1, d, dt, B, C2, 14, 14, e) ||
        rt_tensor_new4(&g->dh2, d, dt, B, 1, 28, 28, e))
        goto fail;
    return 0;
fail:;
    int code = e && e->code ? e->code : PS_ERUN;
    gan_gen_free(g);
    return code;
}

void gan_gen_free(gan_gen *g)
{
    if (!g)
        return;
    rt_tensor *ts[] = {&g->h0, &g->b0, &g->a0, &g->h1,  &g->b1,  &g->a1,  &g->h2,  &g->out,
                       &g->m0, &g->r0, &g->m1, &g->r1,  &g->dh0, &g->da0, &g->dh1, &g->da1,
                       &g->dh2};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        rt_tensor_free(ts[i]);
    if (g->params)
        for (int i = 0; i < g->nparams; i++)
            rt_param_free(&g->params[i]);
    free(g->params);
    memset(g, 0, sizeof *g);
}

int gan_gen_forward(gan_gen *g, const rt_tensor *z, int training, ps_err *e)
{
    const gan_config *c = &g->cfg;
    int64_t n = z->shape[0];
    if (z->ndim != 2 || n > g->max_batch || n < 1 || z->shape[1] != c->zdim) {
        char buf[96];
        return ps_errf(e, PS_EINPUT, "gan_gen_forward: z is %s, expected [n <= %lld, %d]",
                       rt_tensor_desc(z, buf, sizeof buf), (long long)g->max_batch, c->zdim);
    }
    if (training && n < 2)
        return ps_errf(e, PS_EINPUT, "gan_gen_forward: training needs n >= 2 (batch norm)");
    g->cur_n = n;
    g->training = training;
    rt_bn bn = g->bn;
    bn.training = training;
    const int64_t C1 = c->g_ch1;
    rt_tensor h0 = rt_view_rows(&g->h0, n), h0v = rt_view4(&h0, n, C1, 7, 7),
              b0 = rt_view_rows(&g->b0, n), a0 = rt_view_rows(&g->a0, n),
              h1 = rt_view_rows(&g->h1, n), b1 = rt_view_rows(&g->b1, n),
              a1 = rt_view_rows(&g->a1, n), h2 = rt_view_rows(&g->h2, n),
              out = rt_view_rows(&g->out, n);
    rt_convt ct = {.stride = 2, .pad = 1, .out_pad = 0};
    RC(rt_linear_fwd(z, &g->fc_w->w, NULL, &h0, e));
    RC(rt_batchnorm_fwd(&bn, &h0v, &g->bn0_g->w, &g->bn0_b->w, &g->bn0_rm->w, &g->bn0_rv->w, &b0,
                        &g->m0, &g->r0, e));
    RC(rt_act_fwd(RT_RELU, 0, &b0, &a0, e));
    RC(rt_convt2d_fwd(&ct, &a0, &g->ct1_w->w, NULL, &h1, e));
    RC(rt_batchnorm_fwd(&bn, &h1, &g->bn1_g->w, &g->bn1_b->w, &g->bn1_rm->w, &g->bn1_rv->w, &b1,
                        &g->m1, &g->r1, e));
    RC(rt_act_fwd(RT_RELU, 0, &b1, &a1, e));
    RC(rt_convt2d_fwd(&ct, &a1, &g->ct2_w->w, &g->ct2_b->w, &h2, e));
    RC(rt_act_fwd(RT_TANH, 0, &h2, &out, e));
    return 0;
}

int gan_gen_output(const gan_gen *g, rt_tensor *view, ps_err *e)
{
    if (g->cur_n < 1)
        return ps_errf(e, PS_EINPUT, "gan_gen_output: no forward yet");
    return rt_tensor_rows(view, &g->out, 0, g->cur_n, e);
}

int gan_gen_backward(gan_gen *g, const rt_tensor *z, const rt_tensor *dout, rt_tensor *dz,
                     int param_grads, ps_err *e)
{
    const gan_config *c = &g->cfg;
    int64_t n = g->cur_n;
    if (n < 1 || z->ndim != 2 || z->shape[0] != n)
        return ps_errf(e, PS_EINPUT,
                       "gan_gen_backward: z must be the last forward's input (%lld rows)",
                       (long long)n);
    rt_bn bn = g->bn;
    bn.training = g->training;
    const int64_t C1 = c->g_ch1;
    const int pg = param_grads != 0;
    rt_tensor h0 = rt_view_rows(&g->h0, n), h0v = rt_view4(&h0, n, C1, 7, 7),
              b0 = rt_view_rows(&g->b0, n), a0 = rt_view_rows(&g->a0, n),
              h1 = rt_view_rows(&g->h1, n), b1 = rt_view_rows(&g->b1, n),
              a1 = rt_view_rows(&g->a1, n), h2 = rt_view_rows(&g->h2, n),
              out = rt_view_rows(&g->out, n);
    rt_tensor dh0 = rt_view_rows(&g->dh0, n), dh0v = rt_view4(&dh0, n, C1, 7, 7),
              da0 = rt_view_rows(&g->da0, n), dh1 = rt_view_rows(&g->dh1, n),
              da1 = rt_view_rows(&g->da1, n), dh2 = rt_view_rows(&g->dh2, n);
    rt_convt ct = {.stride = 2, .pad = 1, .out_pad = 0};
    RC(rt_act_bwd(RT_TANH, 0, &h2, &out, dout, &dh2, e));
    RC(rt_convt2d_bwd(&ct, &a1, &g->ct2_w->w, &dh2, &da1, pg ? &g->ct2_w->g : NULL,
                      pg ? &g->ct2_b->g : NULL, e));
    RC(rt_act_bwd(RT_RELU, 0, &b1, &a1, &da1, &da1, e));
    RC(rt_batchnorm_bwd(&bn, &h1, &g->bn1_g->w, &g->m1, &g->r1, &da1, &dh1,
                        pg ? &g->bn1_g->g : NULL, pg ? &g->bn1_b->g : NULL, e));
    RC(rt_convt2d_bwd(&ct, &a0, &g->ct1_w->w, &dh1, &da0, pg ? &g->ct1_w->g : NULL, NULL, e));
    RC(rt_act_bwd(RT_RELU, 0, &b0, &a0, &da0, &da0, e));
    RC(rt_batchnorm_bwd(&bn, &h0v, &g->bn0_g->w, &g->m0, &g->r0, &da0, &dh0v,
                        pg ? &g->bn0_g->g : NULL, pg ? &g->bn0_b->g : NULL, e));
    if (dz || pg)
        RC(rt_linear_bwd(z, &g->fc_w->w, &dh0, dz, pg ? &g->fc_w->g : NULL, NULL, e));
    return 0;
}

int gan_gen_backward_z(gan_gen *g, const rt_tensor *z, const rt_tensor *dout, rt_tensor *dz,
                       ps_err *e)
{
    if (g->training)
        return ps_errf(e, PS_EINPUT,
                       "gan_gen_backward_z: the last forward ran in training mode; the frozen "
                       "generator needs training 0");
    return gan_gen_backward(g, z, dout, dz, 0, e);
}

int gan_generate(gan_gen *g, const float *z, int64_t n, float *x, ps_err *e)
{
    if (g->dt != RT_F32)
        return ps_errf(e, PS_EINPUT, "gan_generate: the generator must be f32");
    rt_tensor zt = {0};
    RC(rt_tensor_new2(&zt, g->dev, RT_F32, g->max_batch, g->cfg.zdim, e));
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i += g->max_batch) {
        int64_t b = n - i < g->max_batch ? n - i : g->max_batch;
        rt_tensor zv = rt_view_rows(&zt, b), out;
        rc = rt_tensor_from_host(&zv, z + i * g->cfg.zdim, e) ||
             gan_gen_forward(g, &zv, 0, e) || gan_gen_output(g, &out, e) ||
             rt_tensor_to_host(&out, x + i * GAN_PIX, e);
    }
    rt_tensor_free(&zt);
    return rc ? (e && e->code ? e->code : PS_ERUN) : 0;
}

double gan_gen_flops_fwd(const gan_config *c, int64_t batch)
{
    double n = (double)batch;
    return 2.0 * n *
           ((double)c->zdim * c->g_ch1 * 49 + (double)c->g_ch1 * c->g_ch2 * 16 * 49 +
            (double)c->g_ch2 * 16 * 196);
}

/* ------------------------------------------------------------------ discriminator */

int gan_disc_init(gan_disc *d, const gan_config *c, rt_dev *dev, rt_dtype dt, int64_t max_batch,
                  uint64_t seed, ps_err *e)
{
    memset(d, 0, sizeof *d);
    if (gan_config_check(c, e))
        return e ? e->code : PS_EINPUT;
    if (max_batch < 1)
        return ps_errf(e, PS_EINPUT, "gan_disc_init: max_batch %lld must be >= 1",
                       (long long)max_batch);
    d->cfg = *c;
    d->dev = dev;
    d->dt = dt;
    d->max_batch = max_batch;
    d->bn = (rt_bn){.eps = 1e-5, .momentum = 0.1, .training = 1};
    d->params = calloc(GAN_MAXPARAMS, sizeof(rt_param));
    if (!d->params)
        return ps_errf(e, PS_ERUN, "gan: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    const int64_t C1 = c->d_ch1, C2 = c->d_ch2, B = max_batch;
    int64_t s_c1[4] = {C1, 1, 4, 4}, s_b1[1] = {C1}, s_c2[4] = {C2, C1, 4, 4}, s_b2[1] = {C2},
            s_fc[2] = {1, C2 * 49}, s_1[1] = {1};
    int *np = &d->nparams;
    if (!(d->c1_w = add_param(d->params, np, "D.c1.w", dev, dt, 4, s_c1, e)) ||
        rt_init_normal(&d->c1_w->w, &rng, 0, 0.02, e) ||
        !(d->c1_b = add_param(d->params, np, "D.c1.b", dev, dt, 1, s_b1, e)) ||
        !(d->c2_w = add_param(d->params, np, "D.c2.w", dev, dt, 4, s_c2, e)) ||
        rt_init_normal(&d->c2_w->w, &rng, 0, 0.02, e))
        goto fail;
    if (c->d_bn) {
        if (!(d->bn_g = add_param(d->params, np, "D.bn.gamma", dev, dt, 1, s_b2, e)) ||
            rt_init_normal(&d->bn_g->w, &rng, 1, 0.02, e) ||
            !(d->bn_b = add_param(d->params, np, "D.bn.beta", dev, dt, 1, s_b2, e)))
            goto fail;
    } else if (!(d->c2_b = add_param(d->params, np, "D.c2.b", dev, dt, 1, s_b2, e)))
        goto fail;
    if (!(d->fc_w = add_param(d->params, np, "D.fc.w", dev, dt, 2, s_fc, e)) ||
        rt_init_normal(&d->fc_w->w, &rng, 0, 0.02, e) ||
        !(d->fc_b = add_param(d->params, np, "D.fc.b", dev, dt, 1, s_1, e)))
        goto fail;
    d->ntrain = d->nparams;
    if (c->d_bn && (!(d->bn_rm = add_param(d->params, np, "D.bn.running_mean", dev, dt, 1, s_b2,
                                           e)) ||
                    !(d->bn_rv = add_param(d->params, np, "D.bn.running_var", dev, dt, 1, s_b2,
                                           e)) ||
                    rt_tensor_fill(&d->bn_rv->w, 1, e)))
        goto fail;
    if (rt_tensor_new4(&d->h1, dev, dt, B, C1, 14, 14, e) ||
        rt_tensor_new4(&d->a1, dev, dt, B, C1, 14, 14, e) ||
        rt_tensor_new4(&d->h2, dev, dt, B, C2, 7, 7, e) ||
        (c->d_bn && rt_tensor_new4(&d->b2, dev, dt, B, C2, 7, 7, e)) ||
        rt_tensor_new4(&d->a2, dev, dt, B, C2, 7, 7, e) ||
        rt_tensor_new2(&d->logit, dev, dt, B, 1, e) ||
        (c->d_bn && (rt_tensor_new1(&d->m2, dev, dt, C2, e) ||
                     rt_tensor_new1(&d->r2, dev, dt, C2, e))) ||
        rt_tensor_new4(&d->da1, dev, dt, B, C1, 14, 14, e) ||
        rt_tensor_new4(&d->dh2, dev, dt, B, C2, 7, 7, e) ||
        rt_tensor_new4(&d->da2, dev, dt, B, C2, 7, 7, e) ||
        rt_tensor_new2(&d->dlogit, dev, dt, B, 1, e))
        goto fail;
    return 0;
fail:;
    int code = e && e->code ? e->code : PS_ERUN;
    gan_disc_free(d);
    return code;
}

void gan_disc_free(gan_disc *d)
{
    if (!d)
        return;
    rt_tensor *ts[] = {&d->h1, &d->a1, &d->h2,  &d->b2,  &d->a2,  &d->logit, &d->m2,
                       &d->r2, &d->da1, &d->dh2, &d->da2, &d->dlogit};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        rt_tensor_free(ts[i]);
    if (d->params)
        for (int i = 0; i < d->nparams; i++)
            rt_param_free(&d->params[i]);
    free(d->params);
    memset(d, 0, sizeof *d);
}

int gan_disc_forward(gan_disc *d, const rt_tensor *x, int training, ps_err *e)
{
    const gan_config *c = &d->cfg;
    int64_t n = x->shape[0];
    if (x->ndim != 4 || n < 1 || n > d->max_batch || x->shape[1] != 1 || x->shape[2] != 28 ||
        x->shape[3] != 28) {
        char buf[96];
        return ps_errf(e, PS_EINPUT, "gan_disc_forward: x is %s, expected [n <= %lld, 1, 28, 28]",
                       rt_tensor_desc(x, buf, sizeof buf), (long long)d->max_batch);
    }
    d->cur_n = n;
    d->training = training;
    rt_bn bn = d->bn;
    bn.training = training;
    rt_conv cv = {.stride = 2, .pad = 1};
    rt_tensor h1 = rt_view_rows(&d->h1, n), a1 = rt_view_rows(&d->a1, n),
              h2 = rt_view_rows(&d->h2, n), a2 = rt_view_rows(&d->a2, n),
              lg = rt_view_rows(&d->logit, n);
    RC(rt_conv2d_fwd(&cv, x, &d->c1_w->w, &d->c1_b->w, &h1, e));
    RC(rt_act_fwd(RT_LEAKY_RELU, 0.2, &h1, &a1, e));
    RC(rt_conv2d_fwd(&cv, &a1, &d->c2_w->w, d->c2_b ? &d->c2_b->w : NULL, &h2, e));
    const rt_tensor *pre = &h2;
    rt_tensor b2;
    if (c->d_bn) {
        b2 = rt_view_rows(&d->b2, n);
        RC(rt_batchnorm_fwd(&bn, &h2, &d->bn_g->w, &d->bn_b->w, &d->bn_rm->w, &d->bn_rv->w, &b2,
                            &d->m2, &d->r2, e));
        pre = &b2;
    }
    RC(rt_act_fwd(RT_LEAKY_RELU, 0.2, pre, &a2, e));
    rt_tensor flat = rt_view2(&a2, n, (int64_t)c->d_ch2 * 49);
    RC(rt_linear_fwd(&flat, &d->fc_w->w, &d->fc_b->w, &lg, e));
    return 0;
}

int gan_disc_logits(const gan_disc *d, rt_tensor *view, ps_err *e)
{
    if (d->cur_n < 1)
        return ps_errf(e, PS_EINPUT, "gan_disc_logits: no forward yet");
    return rt_tensor_rows(view, &d->logit, 0, d->cur_n, e);
}

int gan_disc_backward(gan_disc *d, const rt_tensor *x, const rt_tensor *dlogit, rt_tensor *dx,
                      int param_grads, ps_err *e)
{
    const gan_config *c = &d->cfg;
    int64_t n = d->cur_n;
    if (n < 1 || x->ndim != 4 || x->shape[0] != n)
        return ps_errf(e, PS_EINPUT,
                       "gan_disc_backward: x must be the last forward's input (%lld rows)",
                       (long long)n);
    const int pg = param_grads != 0;
    rt_bn bn = d->bn;
    bn.training = d->training;
    rt_conv cv = {.stride = 2, .pad = 1};
    rt_tensor h1 = rt_view_rows(&d->h1, n), a1 = rt_view_rows(&d->a1, n),
              h2 = rt_view_rows(&d->h2, n), a2 = rt_view_rows(&d->a2, n),
              da1 = rt_view_rows(&d->da1, n), dh2 = rt_view_rows(&d->dh2, n),
              da2 = rt_view_rows(&d->da2, n);
    rt_tensor flat = rt_view2(&a2, n, (int64_t)c->d_ch2 * 49),
              dflat = rt_view2(&da2, n, (int64_t)c->d_ch2 * 49);
    RC(rt_linear_bwd(&flat, &d->fc_w->w, dlogit, &dflat, pg ? &d->fc_w->g : NULL,
                     pg ? &d->fc_b->g : NULL, e));
    if (c->d_bn) {
        rt_tensor b2 = rt_view_rows(&d->b2, n);
        RC(rt_act_bwd(RT_LEAKY_RELU, 0.2, &b2, &a2, &da2, &da2, e));
        RC(rt_batchnorm_bwd(&bn, &h2, &d->bn_g->w, &d->m2, &d->r2, &da2, &dh2,
                            pg ? &d->bn_g->g : NULL, pg ? &d->bn_b->g : NULL, e));
    } else
        RC(rt_act_bwd(RT_LEAKY_RELU, 0.2, &h2, &a2, &da2, &dh2, e));
    RC(rt_conv2d_bwd(&cv, &a1, &d->c2_w->w, &dh2, &da1, pg ? &d->c2_w->g : NULL,
                     pg && d->c2_b ? &d->c2_b->g : NULL, e));
    RC(rt_act_bwd(RT_LEAKY_RELU, 0.2, &h1, &a1, &da1, &da1, e));
    if (dx || pg)
        RC(rt_conv2d_bwd(&cv, x, &d->c1_w->w, &da1, dx, pg ? &d->c1_w->g : NULL,
                         pg ? &d->c1_b->g : NULL, e));
    return 0;
}

/* softplus(x) = log(1 + e^x), stable */
static double softplus(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double sigmoid(double x)
{
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

double gan_bce_logits(const float *l, int64_t n, int target, double scale, float *dl)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = l[i];
        s += target ? softplus(-x) : softplus(x);
        if (dl) /* d softplus(-x)/dx = sigmoid(x) - 1; d softplus(x)/dx = sigmoid(x) */
            dl[i] = (float)(scale / (double)n * (sigmoid(x) - (target ? 1 : 0)));
    }
    return n ? s / (double)n : 0;
}

/* ------------------------------------------------------------------ data helpers */

void gan_images_from_fmnist(const fmnist_set *s, const int64_t *idx, int64_t first, int64_t n,
                            float *x)
{
    const int64_t p = (int64_t)s->rows * s->cols;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *src = s->images + (idx ? idx[i] : first + i) * p;
        for (int64_t j = 0; j < p; j++)
            x[i * p + j] = (float)(src[j] / 127.5 - 1.0);
    }
}

void gan_sample_z(rt_rng *rng, int64_t n, int zdim, float *z)
{
    for (int64_t i = 0; i < n * zdim; i++)
        z[i] = (float)rt_rng_normal(rng);
}

/* ------------------------------------------------------------------ training */

static void shuffle(int64_t *a, int64_t n, rt_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rt_rng_next(r) % (uint64_t)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

typedef struct gan_train_ws {
    rt_tensor xr, z, dl, dfake;
    float *hx, *hz, *hl, *hdl;
    int64_t *perm;
} gan_train_ws;

static void ws_free(gan_train_ws *w)
{
    rt_tensor_free(&w->xr);
    rt_tensor_free(&w->z);
    rt_tensor_free(&w->dl);
    rt_tensor_free(&w->dfake);
    free(w->hx);
    free(w->hz);
    free(w->hl);
    free(w->hdl);
    free(w->perm);
}

/* D's logits of its last forward to host, the loss against target and the
 * gradient uploaded to w->dl (scale: 1). */
static int disc_loss(gan_disc *d, gan_train_ws *w, int64_t n, int target, double *loss,
                     double *prob, ps_err *e)
{
    rt_tensor lg, dl = rt_view_rows(&w->dl, n);
    RC(gan_disc_logits(d, &lg, e));
    RC(rt_tensor_to_host(&lg, w->hl, e));
    *loss = gan_bce_logits(w->hl, n, target, 1.0, w->hdl);
    if (prob) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += sigmoid(w->hl[i]);
        *prob = s / (double)n;
    }
    RC(rt_tensor_from_host(&dl, w->hdl, e));
    return 0;
}

/* Re-estimate G's BN running statistics: k = 1..nb batches of fresh z in
 * training mode with momentum 1/k (the cumulative mean of batch stats). */
static int recalibrate_bn(gan_gen *g, rt_tensor *z, float *hz, int64_t b, int nb, rt_rng *rng,
                          ps_err *e)
{
    double mom = g->bn.momentum;
    int rc = 0;
    for (int k = 1; k <= nb && !rc; k++) {
        g->bn.momentum = 1.0 / k;
        gan_sample_z(rng, b, g->cfg.zdim, hz);
        rt_tensor zv = rt_view_rows(z, b);
        rc = rt_tensor_from_host(&zv, hz, e) || gan_gen_forward(g, &zv, 1, e);
    }
    g->bn.momentum = mom;
    return rc ? (e && e->code ? e->code : PS_ERUN) : 0;
}

int gan_train(const gan_config *cfg, const fmnist_set *train, int verbose, gan_model *out,
              ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (gan_config_check(cfg, e))
        return e ? e->code : PS_EINPUT;
    if (!train || train->n < 1 || train->rows != 28 || train->cols != 28)
        return ps_errf(e, PS_EINPUT, "gan_train: need 28x28 training images");
    out->cfg = *cfg;
    const int64_t B = cfg->batch, GB = B > 256 ? B : 256;
    const int64_t N = cfg->ntrain && cfg->ntrain < train->n ? cfg->ntrain : train->n;
    gan_train_ws w;
    memset(&w, 0, sizeof w);
    int rc = 0;
    if (gan_gen_init(&out->g, cfg, rt_cpu(), RT_F32, GB, cfg->seed * 2 + 1, e) ||
        gan_disc_init(&out->d, cfg, rt_cpu(), RT_F32, B, cfg->seed * 2 + 2, e) ||
        rt_tensor_new4(&w.xr, rt_cpu(), RT_F32, B, 1, 28, 28, e) ||
        rt_tensor_new2(&w.z, rt_cpu(), RT_F32, GB, cfg->zdim, e) ||
        rt_tensor_new2(&w.dl, rt_cpu(), RT_F32, B, 1, e) ||
        rt_tensor_new4(&w.dfake, rt_cpu(), RT_F32, B, 1, 28, 28, e)) {
        rc = e && e->code ? e->code : PS_ERUN;
        goto done;
    }
    w.hx = malloc(sizeof(float) * (size_t)(B * GAN_PIX));
    w.hz = malloc(sizeof(float) * (size_t)(GB * cfg->zdim));
    w.hl = malloc(sizeof(float) * (size_t)B);
    w.hdl = malloc(sizeof(float) * (size_t)B);
    w.perm = malloc(sizeof(int64_t) * (size_t)N);
    if (!w.hx || !w.hz || !w.hl || !w.hdl || !w.perm) {
        rc = ps_errf(e, PS_ERUN, "gan_train: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < N; i++)
        w.perm[i] = i;
    rt_rng rng;
    rt_rng_seed(&rng, cfg->seed * 2 + 3);
    shuffle(w.perm, N, &rng);
    rt_opt og = {.kind = RT_OPT_ADAMW, .lr = cfg->lr, .beta1 = cfg->beta1, .beta2 = cfg->beta2,
                 .eps = 1e-8},
           od = og;
    gan_gen *G = &out->g;
    gan_disc *D = &out->d;
    out->rep.g_params = rt_params_numel(G->params, G->ntrain);
    out->rep.d_params = rt_params_numel(D->params, D->ntrain);
    const int64_t S = cfg->steps;
    const int64_t nfirst = S / 100 > 0 ? S / 100 : 1, nlast = S / 10 > 0 ? S / 10 : 1;
    double sdf = 0, sgf = 0, sdl = 0, sgl = 0, spr = 0, spf = 0;
    int64_t pos = 0;
    ps_progress pr;
    ps_progress_start(&pr, "gan", (size_t)S);
    if (!verbose)
        pr.enabled = 0;
    double t0 = ps_now_s();
    rt_tensor zv = rt_view_rows(&w.z, B), fake;
    for (int64_t s = 0; s < S; s++) {
        if (pos + B > N) {
            shuffle(w.perm, N, &rng);
            pos = 0;
        }
        gan_images_from_fmnist(train, w.perm + pos, 0, B < N ? B : N, w.hx);
        for (int64_t i = N; i < B; i++) /* tiny sets: repeat */
            memcpy(w.hx + i * GAN_PIX, w.hx + (i % N) * GAN_PIX, sizeof(float) * GAN_PIX);
        pos += B;
        gan_sample_z(&rng, B, cfg->zdim, w.hz);
        double lr_, lf, lg, pr_, pf;
        /* D step: real up, fake down */
        if (rt_tensor_from_host(&w.xr, w.hx, e) || rt_tensor_from_host(&zv, w.hz, e) ||
            gan_gen_forward(G, &zv, 1, e) || gan_gen_output(G, &fake, e) ||
            rt_params_zero_grad(D->params, D->ntrain, e) ||
            gan_disc_forward(D, &w.xr, 1, e) || disc_loss(D, &w, B, 1, &lr_, &pr_, e) ||
            gan_disc_backward(D, &w.xr, &w.dl, NULL, 1, e) || gan_disc_forward(D, &fake, 1, e) ||
            disc_loss(D, &w, B, 0, &lf, &pf, e) ||
            gan_disc_backward(D, &fake, &w.dl, NULL, 1, e) ||
            rt_opt_step(&od, D->params, D->ntrain, e)) {
            rc = e && e->code ? e->code : PS_ERUN;
            goto done;
        }
        /* G step: the non-saturating loss on the same fakes through the
         * updated D */
        if (rt_params_zero_grad(G->params, G->ntrain, e) || gan_disc_forward(D, &fake, 1, e) ||
            disc_loss(D, &w, B, 1, &lg, NULL, e) ||
            gan_disc_backward(D, &fake, &w.dl, &w.dfake, 0, e) ||
            gan_gen_backward(G, &zv, &w.dfake, NULL, 1, e) ||
            rt_opt_step(&og, G->params, G->ntrain, e)) {
            rc = e && e->code ? e->code : PS_ERUN;
            goto done;
        }
        double ld = lr_ + lf;
        if (!isfinite(ld) || !isfinite(lg)) {
            rc = ps_errf(e, PS_ERUN, "gan_train: step %lld: loss is not finite (D %g, G %g)",
                         (long long)s, ld, lg);
            goto done;
        }
        if (s < nfirst) {
            sdf += ld;
            sgf += lg;
        }
        if (s >= S - nlast) {
            sdl += ld;
            sgl += lg;
            spr += pr_;
            spf += pf;
        }
        if (pr.enabled && s % 10 == 0) {
            char det[96];
            snprintf(det, sizeof det, "D %.3f G %.3f", ld, lg);
            ps_progress_update(&pr, (size_t)s, det);
        }
    }
    ps_progress_end(&pr);
    if (S > 0) {
        out->rep.d_loss_first = sdf / (double)(nfirst < S ? nfirst : S);
        out->rep.g_loss_first = sgf / (double)(nfirst < S ? nfirst : S);
        int64_t nl = nlast < S ? nlast : S;
        out->rep.d_loss_last = sdl / (double)nl;
        out->rep.g_loss_last = sgl / (double)nl;
        out->rep.d_real_last = spr / (double)nl;
        out->rep.d_fake_last = spf / (double)nl;
    }
    if (recalibrate_bn(G, &w.z, w.hz, GB, 20, &rng, e)) {
        rc = e && e->code ? e->code : PS_ERUN;
        goto done;
    }
    out->rep.train_s = ps_now_s() - t0;
    out->rep.steps = S;
    if (verbose)
        fprintf(stderr, "gan: %lld steps in %.1f s: D %.3f -> %.3f, G %.3f -> %.3f\n",
                (long long)S, out->rep.train_s, out->rep.d_loss_first, out->rep.d_loss_last,
                out->rep.g_loss_first, out->rep.g_loss_last);
done:
    ws_free(&w);
    if (rc)
        gan_free(out);
    return rc;
}

/* ------------------------------------------------------------------ save / load / cache */

/* G's and D's params side by side (shallow copies: rt_save reads them,
 * rt_load writes through their data pointers). */
static rt_param *all_params(const gan_model *m, int *n)
{
    int k = m->g.nparams + m->d.nparams;
    rt_param *ps = calloc((size_t)k, sizeof *ps);
    if (!ps)
        return NULL;
    memcpy(ps, m->g.params, sizeof *ps * (size_t)m->g.nparams);
    memcpy(ps + m->g.nparams, m->d.params, sizeof *ps * (size_t)m->d.nparams);
    *n = k;
    return ps;
}

json_t *gan_report_to_json(const gan_model *m)
{
    const gan_report *r = &m->rep;
    return json_pack("{s:o, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:b}", "config",
                     gan_config_to_json(&m->cfg), "g_params", (json_int_t)r->g_params,
                     "d_params", (json_int_t)r->d_params, "d_loss_first", r->d_loss_first,
                     "g_loss_first", r->g_loss_first, "d_loss_last", r->d_loss_last,
                     "g_loss_last", r->g_loss_last, "d_real_last", r->d_real_last,
                     "d_fake_last", r->d_fake_last, "train_s", r->train_s, "steps",
                     (json_int_t)r->steps, "from_cache", m->from_cache);
}

int gan_save(const char *path, const gan_model *m, ps_err *e)
{
    int n = 0;
    rt_param *ps = all_params(m, &n);
    if (!ps)
        return ps_errf(e, PS_ERUN, "gan_save: out of memory");
    json_t *j = gan_report_to_json(m);
    char *meta = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int rc = rt_save(path, ps, n, meta ? meta : "{}", e);
    free(meta);
    free(ps);
    return rc;
}

int gan_load(const char *path, gan_model *m, ps_err *e)
{
    int n = 0;
    rt_param *ps = all_params(m, &n);
    if (!ps)
        return ps_errf(e, PS_ERUN, "gan_load: out of memory");
    char *meta = NULL;
    int rc = rt_load(path, ps, n, &meta, e);
    free(ps);
    if (rc) {
        free(meta);
        return rc;
    }
    json_t *j = meta ? json_loads(meta, 0, NULL) : NULL;
    free(meta);
    if (!j)
        return ps_errf(e, PS_EINPUT, "%s: the meta is not a GAN training report", path);
    json_t *cj = json_object_get(j, "config");
    json_t *h = cj ? json_object_get(cj, "hash") : NULL;
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)gan_config_hash(&m->cfg));
    if (!h || !json_is_string(h) || strcmp(json_string_value(h), want)) {
        ps_errf(e, PS_EINPUT, "%s: config hash %s in file, %s expected", path,
                h && json_is_string(h) ? json_string_value(h) : "(none)", want);
        json_decref(j);
        return PS_EINPUT;
    }
    gan_report *r = &m->rep;
    r->g_params = rt_params_numel(m->g.params, m->g.ntrain);
    r->d_params = rt_params_numel(m->d.params, m->d.ntrain);
    r->d_loss_first = ps_json_num_or_nan(j, "d_loss_first");
    r->g_loss_first = ps_json_num_or_nan(j, "g_loss_first");
    r->d_loss_last = ps_json_num_or_nan(j, "d_loss_last");
    r->g_loss_last = ps_json_num_or_nan(j, "g_loss_last");
    r->d_real_last = ps_json_num_or_nan(j, "d_real_last");
    r->d_fake_last = ps_json_num_or_nan(j, "d_fake_last");
    r->train_s = ps_json_num_or_nan(j, "train_s");
    r->steps = (int64_t)ps_json_num_or_nan(j, "steps");
    json_decref(j);
    return 0;
}

const char *gan_cache_dir(const char *dir)
{
    if (dir && *dir)
        return dir;
    const char *env = getenv("PLANSIM_PROJECTION_MODELS");
    return env && *env ? env : GAN_CACHE_DIR_DEFAULT;
}

void gan_cache_path(const char *dir, const gan_config *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "%s/gan-%016llx.bin", gan_cache_dir(dir),
             (unsigned long long)gan_config_hash(cfg));
}

int gan_load_or_train(const char *dir, const gan_config *cfg, const fmnist_set *train,
                      int verbose, gan_model *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (gan_config_check(cfg, e))
        return e ? e->code : PS_EINPUT;
    char path[1024];
    gan_cache_path(dir, cfg, path, sizeof path);
    if (ps_file_exists(path)) {
        ps_err le = {0};
        const int64_t GB = cfg->batch > 256 ? cfg->batch : 256;
        out->cfg = *cfg;
        if (!gan_gen_init(&out->g, cfg, rt_cpu(), RT_F32, GB, 1, &le) &&
            !gan_disc_init(&out->d, cfg, rt_cpu(), RT_F32, cfg->batch, 2, &le) &&
            !gan_load(path, out, &le)) {
            out->from_cache = 1;
            return 0;
        }
        gan_free(out);
        fprintf(stderr, "warning: gan cache unusable (%s): retraining\n", le.msg);
    }
    fmnist_set own;
    memset(&own, 0, sizeof own);
    if (!train) {
        if (fmnist_load(NULL, "train", cfg->ntrain, &own, e))
            return e ? e->code : PS_EINPUT;
        train = &own;
    }
    int rc = gan_train(cfg, train, verbose, out, e);
    if (train == &own)
        fmnist_free(&own);
    if (rc)
        return rc;
    if (ps_mkdir_p(gan_cache_dir(dir), e) || gan_save(path, out, e)) {
        ps_err_prefix(e, "gan: saving the trained model: ");
        gan_free(out);
        return e && e->code ? e->code : PS_ERUN;
    }
    return 0;
}

void gan_free(gan_model *m)
{
    if (!m)
        return;
    gan_gen_free(&m->g);
    gan_disc_free(&m->d);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ Fréchet distance */

int gan_feature_stats(const float *f, int64_t n, int d, double *mu, double *cov, ps_err *e)
{
    if (n < 2 || d < 1)
        return ps_errf(e, PS_EINPUT, "gan_feature_stats: need n >= 2 samples (got %lld), d >= 1",
                       (long long)n);
    for (int j = 0; j < d; j++)
        mu[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            mu[j] += f[i * d + j];
    for (int j = 0; j < d; j++)
        mu[j] /= (double)n;
    memset(cov, 0, sizeof(double) * (size_t)d * (size_t)d);
    double *c = malloc(sizeof(double) * (size_t)d);
    if (!c)
        return ps_errf(e, PS_ERUN, "gan_feature_stats: out of memory");
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++)
            c[j] = f[i * d + j] - mu[j];
        for (int a = 0; a < d; a++) {
            if (c[a] == 0)
                continue;
            double *row = cov + (size_t)a * d;
            for (int b = a; b < d; b++)
                row[b] += c[a] * c[b];
        }
    }
    free(c);
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) {
            double v = cov[(size_t)a * d + b] / (double)(n - 1);
            cov[(size_t)a * d + b] = v;
            cov[(size_t)b * d + a] = v;
        }
    return 0;
}

/* Symmetric eigen-decomposition of m (d x d, copied): eval[d], evec columns. */
static int sym_eigen(const double *m, int d, gsl_vector *eval, gsl_matrix *evec, ps_err *e)
{
    gsl_matrix *a = gsl_matrix_alloc((size_t)d, (size_t)d);
    gsl_eigen_symmv_workspace *w = gsl_eigen_symmv_alloc((size_t)d);
    if (!a || !w) {
        gsl_matrix_free(a);
        gsl_eigen_symmv_free(w);
        return ps_errf(e, PS_ERUN, "gan_frechet: out of memory");
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) /* symmetrise against rounding */
            gsl_matrix_set(a, (size_t)i, (size_t)j,
                           0.5 * (m[(size_t)i * d + j] + m[(size_t)j * d + i]));
    int rc = gsl_eigen_symmv(a, eval, evec, w);
    gsl_matrix_free(a);
    gsl_eigen_symmv_free(w);
    if (rc)
        return ps_errf(e, PS_ERUN, "gan_frechet: eigen-decomposition failed (GSL %d)", rc);
    return 0;
}

int gan_frechet(const double *mu1, const double *c1, const double *mu2, const double *c2, int d,
                double *fd, ps_err *e)
{
    if (d < 1)
        return ps_errf(e, PS_EINPUT, "gan_frechet: dimension %d must be >= 1", d);
    const size_t D = (size_t)d;
    gsl_vector *ev = gsl_vector_alloc(D);
    gsl_matrix *V = gsl_matrix_alloc(D, D);
    double *s = malloc(sizeof(double) * D * D), *t = malloc(sizeof(double) * D * D),
           *m = malloc(sizeof(double) * D * D);
    int rc = 0;
    if (!ev || !V || !s || !t || !m) {
        rc = ps_errf(e, PS_ERUN, "gan_frechet: out of memory");
        goto out;
    }
    /* S1^{1/2} = V diag(sqrt(max(l, 0))) V^T */
    if ((rc = sym_eigen(c1, d, ev, V, e)))
        goto out;
    for (size_t i = 0; i < D; i++)
        for (size_t j = 0; j < D; j++) {
            double v = 0;
            for (size_t k = 0; k < D; k++) {
                double l = gsl_vector_get(ev, k);
                v += gsl_matrix_get(V, i, k) * sqrt(l > 0 ? l : 0) * gsl_matrix_get(V, j, k);
            }
            s[i * D + j] = v;
        }
    /* M = S1^{1/2} S2 S1^{1/2} */
    for (size_t i = 0; i < D; i++)
        for (size_t j = 0; j < D; j++) {
            double v = 0;
            for (size_t k = 0; k < D; k++)
                v += s[i * D + k] * c2[k * D + j];
            t[i * D + j] = v;
        }
    for (size_t i = 0; i < D; i++)
        for (size_t j = 0; j < D; j++) {
            double v = 0;
            for (size_t k = 0; k < D; k++)
                v += t[i * D + k] * s[k * D + j];
            m[i * D + j] = v;
        }
    if ((rc = sym_eigen(m, d, ev, V, e)))
        goto out;
    double trsq = 0, tr1 = 0, tr2 = 0, dm = 0;
    for (size_t k = 0; k < D; k++) {
        double l = gsl_vector_get(ev, k);
        trsq += sqrt(l > 0 ? l : 0);
        tr1 += c1[k * D + k];
        tr2 += c2[k * D + k];
        dm += (mu1[k] - mu2[k]) * (mu1[k] - mu2[k]);
    }
    double v = dm + tr1 + tr2 - 2 * trsq;
    *fd = v > 0 ? v : 0; /* rounding can push ~0 below zero */
out:
    gsl_vector_free(ev);
    gsl_matrix_free(V);
    free(s);
    free(t);
    free(m);
    return rc;
}

int gan_frechet_features(const float *fa, int64_t na, const float *fb, int64_t nb, int d,
                         double *fd, ps_err *e)
{
    const size_t D = (size_t)d;
    double *mu1 = malloc(sizeof(double) * D), *mu2 = malloc(sizeof(double) * D),
           *c1 = malloc(sizeof(double) * D * D), *c2 = malloc(sizeof(double) * D * D);
    int rc = 0;
    if (!mu1 || !mu2 || !c1 || !c2)
        rc = ps_errf(e, PS_ERUN, "gan_frechet_features: out of memory");
    else if (!(rc = gan_feature_stats(fa, na, d, mu1, c1, e)) &&
             !(rc = gan_feature_stats(fb, nb, d, mu2, c2, e)))
        rc = gan_frechet(mu1, c1, mu2, c2, d, fd, e);
    free(mu1);
    free(mu2);
    free(c1);
    free(c2);
    return rc;
}

int gan_classifier_features(cnn *clf, const float *x, int64_t n, float *f, ps_err *e)
{
    const cnn_config *c = &clf->cfg;
    if (c->in_ch != 1 || c->in_h != 28 || c->in_w != 28)
        return ps_errf(e, PS_EINPUT, "gan_classifier_features: the classifier must take 1x28x28");
    if (clf->dt != RT_F32)
        return ps_errf(e, PS_EINPUT, "gan_classifier_features: the classifier must be f32");
    const int64_t B = clf->max_batch, dim = cnn_feature_dim(clf);
    rt_tensor xt = {0};
    float *h = malloc(sizeof(float) * (size_t)(B * GAN_PIX));
    if (!h)
        return ps_errf(e, PS_ERUN, "gan_classifier_features: out of memory");
    int rc = rt_tensor_new4(&xt, clf->dev, RT_F32, B, 1, 28, 28, e);
    for (int64_t i = 0; i < n && !rc; i += B) {
        int64_t b = n - i < B ? n - i : B;
        for (int64_t j = 0; j < b * GAN_PIX; j++)
            h[j] = (float)(((x[i * GAN_PIX + j] + 1.0) * 0.5 - FMNIST_MEAN) / FMNIST_STD);
        rt_tensor xv = rt_view_rows(&xt, b), fv;
        rc = rt_tensor_from_host(&xv, h, e) || cnn_forward(clf, &xv, 0, e) ||
             cnn_features(clf, &fv, e) || rt_tensor_to_host(&fv, f + i * dim, e);
    }
    rt_tensor_free(&xt);
    free(h);
    return rc ? (e && e->code ? e->code : PS_ERUN) : 0;
}

int gan_frechet_images(cnn *clf, const float *xa, int64_t na, const float *xb, int64_t nb,
                       double *fd, ps_err *e)
{
    const int64_t dim = cnn_feature_dim(clf);
    float *fa = malloc(sizeof(float) * (size_t)(na * dim)),
          *fb = malloc(sizeof(float) * (size_t)(nb * dim));
    int rc = 0;
    if (!fa || !fb)
        rc = ps_errf(e, PS_ERUN, "gan_frechet_images: out of memory");
    else if (!(rc = gan_classifier_features(clf, xa, na, fa, e)) &&
             !(rc = gan_classifier_features(clf, xb, nb, fb, e)))
        rc = gan_frechet_features(fa, na, fb, nb, (int)dim, fd, e);
    free(fa);
    free(fb);
    return rc;
}
