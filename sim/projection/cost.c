/* Op lists of StyleGAN2, pSp, VGG-16 and the small Fashion-MNIST models, and
 * the per-image cost of encoder vs optimization (sim/projection/cost.h). */
#include "sim/projection/cost.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pjs_net_free(pjs_net *n)
{
    if (!n)
        return;
    free(n->l);
    memset(n, 0, sizeof *n);
}

static int net_start(pjs_net *n, const char *name, ps_err *e)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->cap = 64;
    n->l = calloc((size_t)n->cap, sizeof *n->l);
    if (!n->l)
        return ps_errf(e, PS_ERUN, "%s: out of memory", name);
    return 0;
}

static pjs_layer *push(pjs_net *n, ps_err *e)
{
    if (n->n == n->cap) {
        pjs_layer *l = realloc(n->l, sizeof *l * (size_t)n->cap * 2);
        if (!l) {
            ps_errf(e, PS_ERUN, "%s: out of memory", n->name);
            return NULL;
        }
        n->l = l;
        n->cap *= 2;
    }
    pjs_layer *l = &n->l[n->n++];
    memset(l, 0, sizeof *l);
    l->trunk = 1;
    return l;
}

static int add_op(pjs_net *n, const char *kind, const char *dtype, const char *variant,
                  const int64_t *dims, int nd, double params, int transposed, int trunk,
                  ps_err *e, const char *fmt, ...) __attribute__((format(printf, 11, 12)));

static int add_op(pjs_net *n, const char *kind, const char *dtype, const char *variant,
                  const int64_t *dims, int nd, double params, int transposed, int trunk,
                  ps_err *e, const char *fmt, ...)
{
    pjs_layer *l = push(n, e);
    if (!l)
        return PS_ERUN;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->name, sizeof l->name, fmt, ap);
    va_end(ap);
    int rc = ps_op_make(&l->op, kind, dtype, variant, dims, nd, e);
    if (rc) {
        ps_err_prefix(e, "%s layer %s: ", n->name, l->name);
        return rc;
    }
    l->transposed = transposed;
    l->trunk = trunk;
    l->params = params;
    n->params += params;
    return 0;
}

/* conv2d (n, c, h, w -> k, r x r, stride, pad), weights c k r r (+ bias k). */
static int conv(pjs_net *n, const char *dt, int64_t b, int64_t c, int64_t h, int64_t k, int r,
                int stride, int pad, int bias, ps_err *e, const char *name)
{
    int64_t d[9] = {b, c, h, h, k, r, r, stride, pad};
    return add_op(n, "conv2d", dt, "fwd", d, 9, (double)c * k * r * r + (bias ? k : 0), 0, 1, e,
                  "%s", name);
}

static int elt(pjs_net *n, const char *dt, const char *variant, int64_t count, ps_err *e,
               const char *name)
{
    int64_t d[1] = {count};
    return add_op(n, "elementwise", dt, variant, d, 1, 0, 0, 1, e, "%s", name);
}

static int gemm(pjs_net *n, const char *dt, int64_t m, int64_t nn, int64_t k, int bias, int trunk,
                ps_err *e, const char *name)
{
    int64_t d[3] = {m, nn, k};
    return add_op(n, "gemm", dt, "nn", d, 3, (double)k * nn + (bias ? nn : 0), 0, trunk, e, "%s",
                  name);
}

static int check_common(const char *who, int64_t batch, const char *dtype, ps_err *e)
{
    if (batch < 1)
        return ps_errf(e, PS_EINPUT, "%s: batch %lld must be >= 1", who, (long long)batch);
    if (!dtype || !ps_op_dtype_valid(dtype))
        return ps_errf(e, PS_EINPUT, "%s: unknown dtype \"%s\"", who, dtype ? dtype : "(null)");
    return 0;
}

static int is_pow2(int v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

/* One modulated layer of StyleGAN2: affine (512 -> c), input scaling,
 * conv (or transposed up-conv), demodulation scaling, and for the main
 * convolutions noise + bias + leaky ReLU. */
static int modconv(pjs_net *n, const char *dt, int64_t b, int64_t c, int64_t h_in, int64_t k,
                   int ksz, int up, int act, ps_err *e, const char *name)
{
    char nm[40];
    int rc;
    snprintf(nm, sizeof nm, "%s.affine", name);
    if ((rc = gemm(n, dt, b, c, 512, 1, 1, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.mod", name);
    if ((rc = elt(n, dt, "mul", b * c * h_in * h_in, e, nm)))
        return rc;
    int64_t h_out = up ? 2 * h_in : h_in;
    if (up) {
        /* Transposed 3x3 stride 2: the transpose of conv2d(2h -> h). */
        int64_t d[9] = {b, k, h_out, h_out, c, ksz, ksz, 2, ksz / 2};
        if ((rc = add_op(n, "conv2d", dt, "fwd", d, 9, (double)c * k * ksz * ksz, 1, 1, e,
                         "%s.upconv", name)))
            return rc;
        /* The 4x4 FIR blur after up-sampling: two separable passes. */
        snprintf(nm, sizeof nm, "%s.blur", name);
        if ((rc = elt(n, dt, "add", 2 * b * k * h_out * h_out, e, nm)))
            return rc;
    } else {
        snprintf(nm, sizeof nm, "%s.conv", name);
        if ((rc = conv(n, dt, b, c, h_in, k, ksz, 1, ksz / 2, 0, e, nm)))
            return rc;
    }
    snprintf(nm, sizeof nm, "%s.demod", name);
    if ((rc = elt(n, dt, "mul", b * k * h_out * h_out, e, nm)))
        return rc;
    if (act) {
        snprintf(nm, sizeof nm, "%s.noise", name);
        if ((rc = elt(n, dt, "add", b * k * h_out * h_out, e, nm)))
            return rc;
        snprintf(nm, sizeof nm, "%s.bias_lrelu", name);
        if ((rc = elt(n, dt, "relu", b * k * h_out * h_out, e, nm)))
            return rc;
        n->params += (double)k + 1; /* bias + noise strength */
    } else {
        n->params += (double)k; /* toRGB bias */
    }
    return 0;
}

static int sg2_channels(int res)
{
    int c = 32768 / res; /* config-f: fmap_base 16384 << 1 at stage log2(res) - 1 */
    return c > 512 ? 512 : c;
}

int pjs_build_stylegan2(pjs_net *n, int64_t batch, int res, const char *dtype, ps_err *e)
{
    int rc = check_common("stylegan2", batch, dtype, e);
    if (rc)
        return rc;
    if (!is_pow2(res) || res < 8 || res > 4096)
        return ps_errf(e, PS_EINPUT, "stylegan2.res: %d must be a power of two in [8, 4096]",
                       res);
    if ((rc = net_start(n, "stylegan2", e)))
        return rc;
    snprintf(n->source, sizeof n->source,
             "Karras et al. 2020 (StyleGAN2 config-f); ~30.4 M params for G at 1024^2 "
             "(official code's count, as recalled)");
    n->params_pub = res == 1024 ? 30.37e6 : 0;
    char nm[40];
    /* Mapping network: 8 FC 512 -> 512 (not run: both methods work in W+). */
    for (int i = 0; i < 8; i++) {
        snprintf(nm, sizeof nm, "mapping.fc%d", i);
        if ((rc = gemm(n, dtype, batch, 512, 512, 1, 0, e, nm)))
            goto fail;
    }
    n->params += 4.0 * 4 * 512; /* the learned constant */
    /* 4x4: one conv and toRGB. */
    if ((rc = modconv(n, dtype, batch, 512, 4, 512, 3, 0, 1, e, "b4.conv1")) ||
        (rc = modconv(n, dtype, batch, 512, 4, 3, 1, 0, 0, e, "b4.torgb")))
        goto fail;
    int cin = 512;
    for (int r = 8; r <= res; r *= 2) {
        int c = sg2_channels(r);
        char nb[16];
        snprintf(nb, sizeof nb, "b%d", r);
        snprintf(nm, sizeof nm, "%s.conv0", nb);
        if ((rc = modconv(n, dtype, batch, cin, r / 2, c, 3, 1, 1, e, nm)))
            goto fail;
        snprintf(nm, sizeof nm, "%s.conv1", nb);
        if ((rc = modconv(n, dtype, batch, c, r, c, 3, 0, 1, e, nm)))
            goto fail;
        snprintf(nm, sizeof nm, "%s.torgb", nb);
        if ((rc = modconv(n, dtype, batch, c, r, 3, 1, 0, 0, e, nm)))
            goto fail;
        /* Skip architecture: up-sample (FIR) the running RGB image and add. */
        snprintf(nm, sizeof nm, "%s.rgb_skip", nb);
        if ((rc = elt(n, dtype, "add", 3 * batch * (int64_t)r * r * 3, e, nm)))
            goto fail;
        cin = c;
    }
    return 0;
fail:
    pjs_net_free(n);
    return rc;
}

/* One IR-SE bottleneck unit (InsightFace / pSp model_irse.bottleneck_IR_SE). */
static int irse_unit(pjs_net *n, const char *dt, int64_t b, int64_t cin, int64_t h, int64_t depth,
                     int stride, ps_err *e, const char *name)
{
    char nm[40];
    int rc;
    int64_t ho = h / stride;
    /* shortcut: max-pool (cin == depth) or 1x1 conv stride + BN */
    if (cin != depth) {
        snprintf(nm, sizeof nm, "%s.short", name);
        if ((rc = conv(n, dt, b, cin, h, depth, 1, stride, 0, 0, e, nm)))
            return rc;
        n->params += 2.0 * depth; /* BN */
    }
    snprintf(nm, sizeof nm, "%s.bn1", name);
    if ((rc = elt(n, dt, "mul", b * cin * h * h, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.conv1", name);
    if ((rc = conv(n, dt, b, cin, h, depth, 3, 1, 1, 0, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.prelu", name);
    if ((rc = elt(n, dt, "relu", b * depth * h * h, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.conv2", name);
    if ((rc = conv(n, dt, b, depth, h, depth, 3, stride, 1, 0, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.bn2", name);
    if ((rc = elt(n, dt, "mul", b * depth * ho * ho, e, nm)))
        return rc;
    n->params += 2.0 * cin + depth + 2.0 * depth; /* BN1, PReLU, BN2 */
    /* SE: global average pool, FC depth -> depth/16 -> depth (1x1 convs, no
     * bias), ReLU, sigmoid, channel scaling. */
    int64_t rd[2] = {b * depth, ho * ho};
    if ((rc = add_op(n, "reduction", dt, "sum", rd, 2, 0, 0, 1, e, "%s.se_pool", name)))
        return rc;
    snprintf(nm, sizeof nm, "%s.se_fc1", name);
    if ((rc = gemm(n, dt, b, depth / 16, depth, 0, 1, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.se_fc2", name);
    if ((rc = gemm(n, dt, b, depth, depth / 16, 0, 1, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.se_scale", name);
    if ((rc = elt(n, dt, "mul", b * depth * ho * ho, e, nm)))
        return rc;
    snprintf(nm, sizeof nm, "%s.residual", name);
    return elt(n, dt, "add", b * depth * ho * ho, e, nm);
}

int pjs_build_psp(pjs_net *n, int64_t batch, int in_res, const char *dtype, ps_err *e)
{
    int rc = check_common("psp", batch, dtype, e);
    if (rc)
        return rc;
    if (!is_pow2(in_res) || in_res < 64 || in_res > 1024)
        return ps_errf(e, PS_EINPUT, "psp.enc_res: %d must be a power of two in [64, 1024]",
                       in_res);
    if ((rc = net_start(n, "psp", e)))
        return rc;
    snprintf(n->source, sizeof n->source,
             "Richardson et al. 2021 (pSp GradualStyleEncoder, IR-SE50 backbone: ~31 M without "
             "the ArcFace output layer, 43.8 M with it)");
    /* Input layer: conv 3x3 3 -> 64, BN, PReLU. */
    if ((rc = conv(n, dtype, batch, 3, in_res, 64, 3, 1, 1, 0, e, "input.conv")) ||
        (rc = elt(n, dtype, "relu", batch * 64LL * in_res * in_res, e, "input.bn_prelu")))
        goto fail;
    n->params += 3 * 64;
    static const int depth[4] = {64, 128, 256, 512}, units[4] = {3, 4, 14, 3};
    int64_t h = in_res, cin = 64;
    for (int bl = 0; bl < 4; bl++)
        for (int u = 0; u < units[bl]; u++) {
            char nm[40];
            snprintf(nm, sizeof nm, "body%d.%d", bl + 1, u);
            int stride = u == 0 ? 2 : 1;
            if ((rc = irse_unit(n, dtype, batch, cin, h, depth[bl], stride, e, nm)))
                goto fail;
            h /= stride;
            cin = depth[bl];
        }
    double backbone = n->params;
    /* Feature pyramid: c1 = body1-3 output (128 ch at in/8), c2 = 256 ch at
     * in/16, c3 = 512 ch at in/32.  Lateral 1x1 convs and up-sample-adds. */
    int64_t s3 = in_res / 16, s2 = in_res / 8, s1 = in_res / 4;
    if ((rc = conv(n, dtype, batch, 256, s2, 512, 1, 1, 0, 1, e, "latlayer1")) ||
        (rc = conv(n, dtype, batch, 128, s1, 512, 1, 1, 0, 1, e, "latlayer2")) ||
        (rc = elt(n, dtype, "add", batch * 512 * s2 * s2, e, "p2.upadd")) ||
        (rc = elt(n, dtype, "add", batch * 512 * s1 * s1, e, "p1.upadd")))
        goto fail;
    /* 18 map2style blocks: 3 coarse on s3, 4 medium on s2, 11 fine on s1. */
    for (int sidx = 0; sidx < 18; sidx++) {
        int64_t side = sidx < 3 ? s3 : sidx < 7 ? s2 : s1;
        int nconv = 0;
        for (int64_t t = side; t > 1; t /= 2)
            nconv++;
        int64_t hh = side;
        for (int c = 0; c < nconv; c++) {
            char nm[40];
            snprintf(nm, sizeof nm, "style%d.conv%d", sidx, c);
            if ((rc = conv(n, dtype, batch, 512, hh, 512, 3, 2, 1, 1, e, nm)))
                goto fail;
            hh /= 2;
            snprintf(nm, sizeof nm, "style%d.lrelu%d", sidx, c);
            if ((rc = elt(n, dtype, "relu", batch * 512 * hh * hh, e, nm)))
                goto fail;
        }
        char nm[40];
        snprintf(nm, sizeof nm, "style%d.linear", sidx);
        if ((rc = gemm(n, dtype, batch, 512, 512, 1, 1, e, nm)))
            goto fail;
    }
    n->params_pub = 0;
    (void)backbone;
    return 0;
fail:
    pjs_net_free(n);
    return rc;
}

int pjs_build_vgg16_perceptual(pjs_net *n, int64_t batch, int in_res, int gen_res,
                               const char *dtype, ps_err *e)
{
    int rc = check_common("vgg16", batch, dtype, e);
    if (rc)
        return rc;
    if (in_res < 32 || in_res % 8 || gen_res < in_res)
        return ps_errf(e, PS_EINPUT,
                       "vgg16: input side %d must be a multiple of 8 >= 32 and <= the generator's "
                       "%d", in_res, gen_res);
    if ((rc = net_start(n, "vgg16", e)))
        return rc;
    snprintf(n->source, sizeof n->source,
             "Simonyan & Zisserman 2015 (VGG-16), conv1_1..conv4_2 as in Image2StyleGAN "
             "(Abdal et al. 2019)");
    /* Down-sample the generated image to in_res (area: read the big image once). */
    if ((rc = elt(n, dtype, "add", batch * 3LL * gen_res * gen_res, e, "resize")))
        goto fail;
    static const struct {
        int cin, cout, pool_before;
    } L[] = {{3, 64, 0},    {64, 64, 0},   {64, 128, 1},  {128, 128, 0}, {128, 256, 1},
             {256, 256, 0}, {256, 256, 0}, {256, 512, 1}, {512, 512, 0}};
    static const char *names[] = {"conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1",
                                  "conv3_2", "conv3_3", "conv4_1", "conv4_2"};
    int64_t h = in_res;
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        char nm[40];
        if (L[i].pool_before) {
            snprintf(nm, sizeof nm, "pool_%s", names[i]);
            if ((rc = elt(n, dtype, "relu", batch * L[i].cin * h * h, e, nm)))
                goto fail;
            h /= 2;
        }
        if ((rc = conv(n, dtype, batch, L[i].cin, h, L[i].cout, 3, 1, 1, 1, e, names[i])))
            goto fail;
        snprintf(nm, sizeof nm, "relu_%s", names[i]);
        if ((rc = elt(n, dtype, "relu", batch * L[i].cout * h * h, e, nm)))
            goto fail;
    }
    return 0;
fail:
    pjs_net_free(n);
    return rc;
}

int pjs_build_fmnist_gen(pjs_net *n, int64_t batch, int zdim, int ch1, int ch2, const char *dtype,
                         ps_err *e)
{
    int rc = check_common("fmnist_gen", batch, dtype, e);
    if (rc)
        return rc;
    if (zdim < 1 || ch1 < 1 || ch2 < 1)
        return ps_errf(e, PS_EINPUT, "fmnist_gen: zdim %d, g_ch1 %d, g_ch2 %d must be >= 1", zdim,
                       ch1, ch2);
    if ((rc = net_start(n, "fmnist_gen", e)))
        return rc;
    snprintf(n->source, sizeof n->source, "real/gan.h (DCGAN-style, this repository)");
    int64_t d14[9] = {batch, ch1, 14, 14, ch2, 4, 4, 2, 1};
    int64_t d28[9] = {batch, ch2, 28, 28, 1, 4, 4, 2, 1};
    if ((rc = gemm(n, dtype, batch, (int64_t)ch1 * 49, zdim, 0, 1, e, "fc")) ||
        (rc = elt(n, dtype, "relu", batch * ch1 * 49LL * 2, e, "bn0_relu")) ||
        (rc = add_op(n, "conv2d", dtype, "fwd", d14, 9, (double)ch1 * ch2 * 16, 1, 1, e,
                     "convt1")) ||
        (rc = elt(n, dtype, "relu", batch * ch2 * 196LL * 2, e, "bn1_relu")) ||
        (rc = add_op(n, "conv2d", dtype, "fwd", d28, 9, (double)ch2 * 16 + 1, 1, 1, e,
                     "convt2")) ||
        (rc = elt(n, dtype, "tanh", batch * 784LL, e, "tanh"))) {
        pjs_net_free(n);
        return rc;
    }
    n->params += 2.0 * ch1 + 2.0 * ch2; /* BN gamma/beta per channel (running stats not counted) */
    return 0;
}

int pjs_build_fmnist_proj(pjs_net *n, int64_t batch, int r, int pc1, int pc2, int hidden,
                          int zdim, const char *dtype, ps_err *e)
{
    int rc = check_common("fmnist_proj", batch, dtype, e);
    if (rc)
        return rc;
    if (r < 4 || pc1 < 1 || pc2 < 1 || hidden < 0 || zdim < 1)
        return ps_errf(e, PS_EINPUT, "fmnist_proj: r %d >= 4, channels %d %d >= 1, hidden %d "
                       ">= 0, zdim %d >= 1 required", r, pc1, pc2, hidden, zdim);
    if ((rc = net_start(n, "fmnist_proj", e)))
        return rc;
    snprintf(n->source, sizeof n->source, "real/project.h (this repository)");
    int64_t h1 = (r + 2 - 3) / 2 + 1, h2 = (h1 + 2 - 3) / 2 + 1;
    int64_t flat = pc2 * h2 * h2;
    if ((rc = conv(n, dtype, batch, 1, r, pc1, 3, 2, 1, 1, e, "conv1")) ||
        (rc = elt(n, dtype, "relu", batch * pc1 * h1 * h1, e, "lrelu1")) ||
        (rc = conv(n, dtype, batch, pc1, h1, pc2, 3, 2, 1, 1, e, "conv2")) ||
        (rc = elt(n, dtype, "relu", batch * flat, e, "lrelu2")))
        goto fail;
    if (hidden > 0) {
        if ((rc = gemm(n, dtype, batch, hidden, flat, 1, 1, e, "fc1")) ||
            (rc = elt(n, dtype, "relu", batch * hidden, e, "lrelu3")) ||
            (rc = gemm(n, dtype, batch, zdim, hidden, 1, 1, e, "fc2")))
            goto fail;
    } else if ((rc = gemm(n, dtype, batch, zdim, flat, 1, 1, e, "fc"))) {
        goto fail;
    }
    return 0;
fail:
    pjs_net_free(n);
    return rc;
}

int pjs_net_time(const cm_model *m, const pjs_net *n, pjs_time *t, ps_err *e)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n->n; i++) {
        const pjs_layer *l = &n->l[i];
        if (!l->trunk)
            continue;
        cm_pred f, b;
        int rc;
        if (l->transposed) {
            rc = cm_op_time_phase(m, &l->op, CM_PHASE_BWD_INPUT, &f, e);
            if (!rc)
                rc = cm_op_time_phase(m, &l->op, CM_PHASE_FWD, &b, e);
        } else {
            rc = cm_op_time_phase(m, &l->op, CM_PHASE_FWD, &f, e);
            if (!rc)
                rc = cm_op_time_phase(m, &l->op, CM_PHASE_BWD_INPUT, &b, e);
        }
        if (rc) {
            ps_err_prefix(e, "%s layer %s: ", n->name, l->name);
            return rc;
        }
        t->fwd_s += f.time_s;
        t->bwd_input_s += b.time_s;
        t->flops_fwd += ps_op_flops(&l->op);
        t->nops++;
        t->roofline_ops += f.source == CM_SRC_ROOFLINE;
    }
    return 0;
}

int pjs_predict(const cm_model *m, const pjs_setup *s, pjs_pred *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    const char *scale = s->scale ? s->scale : "stylegan2";
    const char *dt = s->dtype ? s->dtype : "tf32";
    if (s->batch < 1)
        return ps_errf(e, PS_EINPUT, "batch: %lld must be >= 1", (long long)s->batch);
    if (s->iters < 1)
        return ps_errf(e, PS_EINPUT, "iters: %lld must be >= 1", (long long)s->iters);
    pjs_net gen = {0}, enc = {0}, vgg = {0};
    int rc, nvec;
    int64_t zdim;
    if (!strcmp(scale, "stylegan2")) {
        int res = s->res ? s->res : 1024, er = s->enc_res ? s->enc_res : 256;
        nvec = s->latent_vectors ? s->latent_vectors : 18;
        zdim = 512;
        if ((rc = pjs_build_stylegan2(&gen, s->batch, res, dt, e)) ||
            (rc = pjs_build_psp(&enc, s->batch, er, dt, e)) ||
            (s->vgg && (rc = pjs_build_vgg16_perceptual(&vgg, s->batch, er, res, dt, e))))
            goto done;
    } else if (!strcmp(scale, "fmnist")) {
        zdim = s->zdim ? s->zdim : 32;
        nvec = 1;
        int r = s->p_r ? s->p_r : 28;
        if ((rc = pjs_build_fmnist_gen(&gen, s->batch, (int)zdim, s->g_ch1 ? s->g_ch1 : 64,
                                       s->g_ch2 ? s->g_ch2 : 32, dt, e)) ||
            (rc = pjs_build_fmnist_proj(&enc, s->batch, r, s->p_ch1 ? s->p_ch1 : 32,
                                        s->p_ch2 ? s->p_ch2 : 64,
                                        s->p_hidden >= 0 ? (s->p_hidden ? s->p_hidden : 256) : 0,
                                        (int)zdim, dt, e)))
            goto done;
    } else {
        return ps_errf(e, PS_EINPUT, "scale: \"%s\" is not one of stylegan2, fmnist", scale);
    }
    pjs_time tg, te, tv = {0};
    if ((rc = pjs_net_time(m, &gen, &tg, e)) || (rc = pjs_net_time(m, &enc, &te, e)) ||
        (vgg.n && (rc = pjs_net_time(m, &vgg, &tv, e))))
        goto done;
    /* Adam on the latents: m, v, update: ~4 elementwise passes over them. */
    ps_op adam;
    int64_t na[1] = {s->batch * nvec * zdim};
    cm_pred pa;
    if ((rc = ps_op_make(&adam, "elementwise", "fp32", "mul", na, 1, e)) ||
        (rc = cm_op_time(m, &adam, &pa, e)))
        goto done;
    double b = (double)s->batch;
    out->gen_fwd_s = tg.fwd_s;
    out->gen_bwd_s = tg.bwd_input_s;
    out->enc_fwd_s = te.fwd_s;
    out->vgg_fwd_s = tv.fwd_s;
    out->vgg_bwd_s = tv.bwd_input_s;
    out->adam_s = 4 * pa.time_s;
    out->encoder_per_image_s = (te.fwd_s + tg.fwd_s) / b;
    out->opt_iter_per_image_s =
        (tg.fwd_s + tg.bwd_input_s + tv.fwd_s + tv.bwd_input_s + out->adam_s) / b;
    out->opt_per_image_s = out->opt_iter_per_image_s * (double)s->iters;
    out->speedup = out->opt_per_image_s / out->encoder_per_image_s;
    out->gen_params = gen.params;
    out->enc_params = enc.params;
    out->vgg_params = vgg.params;
    out->gen_flops_fwd = tg.flops_fwd;
    out->enc_flops_fwd = te.flops_fwd;
    out->nops = tg.nops + te.nops + tv.nops;
    out->roofline_ops = tg.roofline_ops + te.roofline_ops + tv.roofline_ops;
    rc = 0;
done:
    pjs_net_free(&gen);
    pjs_net_free(&enc);
    pjs_net_free(&vgg);
    return rc;
}
