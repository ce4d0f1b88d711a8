/* Exact Hessian machinery: see real/hessian.h.
 *
 * Layout: a[l] is the input of layer l (a[0] = x, a[nlayers] = logits), for
 * `rows` rows; da[l] its gradient, ra[l] its R-op tangent R{a_l}, rda[l] the
 * R-op of its gradient R{da_l}.  Each layer has four linear primitives:
 * apply (forward), jvp (tangent forward: linear in the input), vjp (input
 * gradient) and, for conv / linear, wgrad (weight gradient). */
#include "real/hessian.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_blas.h"

typedef struct hs_ws {
    int64_t rows; /* capacity */
    double *a[HS_MAXLAYERS + 1], *da[HS_MAXLAYERS + 1];
    double *ra[HS_MAXLAYERS + 1], *rda[HS_MAXLAYERS + 1];
    int32_t *am[HS_MAXLAYERS];
    double *p;         /* [rows, classes] softmax */
    double *col, *dcol; /* one sample's im2col [K, P] */
    double *gw;        /* one conv weight gradient */
    int rzero[HS_MAXLAYERS + 1]; /* ra[l] is identically zero */
} hs_ws;

/* ------------------------------------------------------------ random */

static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(sm64(s) >> 11) * 0x1.0p-53; }
static double rademacher(uint64_t *s) { return (sm64(s) >> 63) ? 1.0 : -1.0; }
static double gauss(uint64_t *s)
{
    double u = unif(s), v = unif(s);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* ------------------------------------------------------------ construction */

static int is_param(const hs_layer *L) { return L->kind == HS_CONV || L->kind == HS_LINEAR; }

static int64_t conv_K(const hs_layer *L) { return (int64_t)L->c_in * L->k * L->k; }
static int64_t conv_P(const hs_layer *L) { return (int64_t)L->h_out * L->w_out; }

static void ws_free(hs_ws *w)
{
    if (!w)
        return;
    for (int l = 0; l <= HS_MAXLAYERS; l++) {
        free(w->a[l]);
        free(w->da[l]);
        free(w->ra[l]);
        free(w->rda[l]);
        if (l < HS_MAXLAYERS)
            free(w->am[l]);
    }
    free(w->p);
    free(w->col);
    free(w->dcol);
    free(w->gw);
    free(w);
}

static int64_t act_numel(const hs_net *net, int l)
{
    return l == 0 ? net->in_dim : net->layers[l - 1].out_numel;
}

static int ws_ensure(hs_net *net, int64_t rows, ps_err *e)
{
    if (net->ws && net->ws->rows >= rows)
        return 0;
    ws_free(net->ws);
    net->ws = NULL;
    hs_ws *w = calloc(1, sizeof *w);
    if (!w)
        return ps_errf(e, PS_ERUN, "hessian: out of memory");
    w->rows = rows;
    int ok = 1;
    for (int l = 0; l <= net->nlayers; l++) {
        size_t sz = (size_t)(rows * act_numel(net, l));
        ok &= (w->a[l] = malloc(sz * sizeof(double))) != NULL;
        ok &= (w->da[l] = malloc(sz * sizeof(double))) != NULL;
        ok &= (w->ra[l] = malloc(sz * sizeof(double))) != NULL;
        ok &= (w->rda[l] = malloc(sz * sizeof(double))) != NULL;
        if (l < net->nlayers && net->layers[l].kind == HS_MAXPOOL)
            ok &= (w->am[l] = malloc((size_t)(rows * net->layers[l].out_numel) *
                                     sizeof(int32_t))) != NULL;
    }
    int64_t kp = 1, gw = 1;
    for (int l = 0; l < net->nlayers; l++) {
        const hs_layer *L = &net->layers[l];
        if (L->kind == HS_CONV) {
            if (conv_K(L) * conv_P(L) > kp)
                kp = conv_K(L) * conv_P(L);
            if (conv_K(L) * L->c_out > gw)
                gw = conv_K(L) * L->c_out;
        }
    }
    ok &= (w->p = malloc((size_t)(rows * net->classes) * sizeof(double))) != NULL;
    ok &= (w->col = malloc((size_t)kp * sizeof(double))) != NULL;
    ok &= (w->dcol = malloc((size_t)kp * sizeof(double))) != NULL;
    ok &= (w->gw = malloc((size_t)gw * sizeof(double))) != NULL;
    if (!ok) {
        ws_free(w);
        return ps_errf(e, PS_ERUN, "hessian: out of memory (workspace for %lld rows)",
                       (long long)rows);
    }
    net->ws = w;
    return 0;
}

void hs_net_free(hs_net *net)
{
    if (!net)
        return;
    for (int l = 0; l < net->nlayers; l++) {
        free(net->layers[l].scale);
        free(net->layers[l].shift);
    }
    free(net->theta);
    ws_free(net->ws);
    memset(net, 0, sizeof *net);
}

int hs_net_init(hs_net *net, int in_c, int in_h, int in_w, const hs_layer_spec *spec, int nspec,
                uint64_t seed, ps_err *e)
{
    memset(net, 0, sizeof *net);
    if (in_c < 1 || in_h < 1 || in_w < 1)
        return ps_errf(e, PS_EINPUT, "hs_net_init: input %dx%dx%d: every size must be >= 1",
                       in_c, in_h, in_w);
    if (nspec < 1 || nspec > HS_MAXLAYERS)
        return ps_errf(e, PS_EINPUT, "hs_net_init: %d layers, expected 1..%d", nspec,
                       HS_MAXLAYERS);
    if (spec[nspec - 1].kind != HS_LINEAR)
        return ps_errf(e, PS_EINPUT, "hs_net_init: layer %d: the last layer must be linear",
                       nspec - 1);
    net->in_c = in_c;
    net->in_h = in_h;
    net->in_w = in_w;
    net->in_dim = (int64_t)in_c * in_h * in_w;
    net->batch = 32;
    int c = in_c, h = in_h, w = in_w, nconv = 0, nfc = 0;
    int64_t off = 0;
    for (int l = 0; l < nspec; l++) {
        const hs_layer_spec *s = &spec[l];
        hs_layer *L = &net->layers[l];
        L->kind = s->kind;
        L->c_in = c;
        L->h_in = h;
        L->w_in = w;
        L->wblock = L->bblock = -1;
        switch (s->kind) {
        case HS_CONV:
            if (s->out < 1 || s->ksize < 1 || s->ksize % 2 == 0)
                return ps_errf(e, PS_EINPUT,
                               "hs_net_init: layer %d (conv): out %d, ksize %d: need out >= 1 "
                               "and an odd ksize",
                               l, s->out, s->ksize);
            L->k = s->ksize;
            L->c_out = s->out;
            L->h_out = h;
            L->w_out = w;
            break;
        case HS_CHAFFINE:
        case HS_RELU:
            L->c_out = c;
            L->h_out = h;
            L->w_out = w;
            break;
        case HS_MAXPOOL:
            if (h < 2 || w < 2)
                return ps_errf(e, PS_EINPUT, "hs_net_init: layer %d (maxpool): input %dx%d < 2x2",
                               l, h, w);
            L->c_out = c;
            L->h_out = h / 2;
            L->w_out = w / 2;
            break;
        case HS_LINEAR:
            if (s->out < 1)
                return ps_errf(e, PS_EINPUT, "hs_net_init: layer %d (linear): out %d < 1", l,
                               s->out);
            L->c_in = c * h * w;
            L->h_in = L->w_in = 1;
            L->c_out = s->out;
            L->h_out = L->w_out = 1;
            break;
        default:
            return ps_errf(e, PS_EINPUT, "hs_net_init: layer %d: unknown kind %d", l,
                           (int)s->kind);
        }
        L->in_numel = (int64_t)L->c_in * L->h_in * L->w_in;
        L->out_numel = (int64_t)L->c_out * L->h_out * L->w_out;
        if (is_param(L)) {
            const char *pre = L->kind == HS_CONV ? "conv" : "fc";
            int idx = L->kind == HS_CONV ? ++nconv : ++nfc;
            hs_block *b = &net->blocks[net->nblocks];
            snprintf(b->name, sizeof b->name, "%s%d.w", pre, idx);
            b->layer = l;
            b->off = off;
            b->n = L->kind == HS_CONV ? (int64_t)L->c_out * conv_K(L) : (int64_t)L->c_out * L->c_in;
            off += b->n;
            L->wblock = net->nblocks++;
            if (!s->nobias) {
                b = &net->blocks[net->nblocks];
                snprintf(b->name, sizeof b->name, "%s%d.b", pre, idx);
                b->layer = l;
                b->is_bias = 1;
                b->off = off;
                b->n = L->c_out;
                off += b->n;
                L->bblock = net->nblocks++;
            }
            net->quant[net->nquant++] = l;
        }
        if (L->kind == HS_CHAFFINE) {
            L->scale = malloc((size_t)c * sizeof(double));
            L->shift = calloc((size_t)c, sizeof(double));
            if (!L->scale || !L->shift) {
                net->nlayers = l + 1;
                hs_net_free(net);
                return ps_errf(e, PS_ERUN, "hs_net_init: out of memory");
            }
            for (int i = 0; i < c; i++)
                L->scale[i] = 1;
        }
        c = L->c_out;
        h = L->h_out;
        w = L->w_out;
        net->nlayers = l + 1;
    }
    net->classes = c;
    net->nparam = off;
    net->theta = malloc((size_t)off * sizeof(double));
    if (!net->theta) {
        hs_net_free(net);
        return ps_errf(e, PS_ERUN, "hs_net_init: out of memory (%lld parameters)", (long long)off);
    }
    uint64_t s = seed ^ 0x5eed5eedull;
    for (int bi = 0; bi < net->nblocks; bi++) {
        const hs_block *b = &net->blocks[bi];
        const hs_layer *L = &net->layers[b->layer];
        double fan_in = L->kind == HS_CONV ? (double)conv_K(L) : (double)L->c_in;
        double bound = 1 / sqrt(fan_in);
        for (int64_t i = 0; i < b->n; i++)
            net->theta[b->off + i] = (2 * unif(&s) - 1) * bound;
    }
    return 0;
}

int hs_net_mlp(hs_net *net, const int *dims, int nd, uint64_t seed, ps_err *e)
{
    if (nd < 2 || 2 * (nd - 1) - 1 > HS_MAXLAYERS)
        return ps_errf(e, PS_EINPUT, "hs_net_mlp: %d dims, expected 2..%d", nd,
                       HS_MAXLAYERS / 2 + 1);
    hs_layer_spec sp[HS_MAXLAYERS];
    int ns = 0;
    for (int i = 1; i < nd; i++) {
        sp[ns++] = (hs_layer_spec){.kind = HS_LINEAR, .out = dims[i]};
        if (i + 1 < nd)
            sp[ns++] = (hs_layer_spec){.kind = HS_RELU};
    }
    if (dims[0] < 1)
        return ps_errf(e, PS_EINPUT, "hs_net_mlp: dims[0] = %d < 1", dims[0]);
    return hs_net_init(net, dims[0], 1, 1, sp, ns, seed, e);
}

/* A param's values as doubles (any device, F32 or F64). */
static int param_host(const rt_param *p, double *dst, int64_t n, ps_err *e)
{
    if (p->w.numel != n)
        return ps_errf(e, PS_EINPUT, "hs_net_from_cnn: param %s has %lld elements, expected %lld",
                       p->name, (long long)p->w.numel, (long long)n);
    if (p->w.dtype == RT_F64)
        return rt_tensor_to_host(&p->w, dst, e);
    if (p->w.dtype != RT_F32)
        return ps_errf(e, PS_EINPUT, "hs_net_from_cnn: param %s: dtype %s (F32 or F64 expected)",
                       p->name, rt_dtype_name(p->w.dtype));
    float *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp)
        return ps_errf(e, PS_ERUN, "hs_net_from_cnn: out of memory");
    int rc = rt_tensor_to_host(&p->w, tmp, e);
    for (int64_t i = 0; !rc && i < n; i++)
        dst[i] = tmp[i];
    free(tmp);
    return rc;
}

int hs_net_from_cnn(hs_net *net, const cnn *src, int fold_bn, ps_err *e)
{
    memset(net, 0, sizeof *net);
    const cnn_config *c = &src->cfg;
    if (!src->params)
        return ps_errf(e, PS_EINPUT, "hs_net_from_cnn: the cnn is not initialised");
    int bn = c->batchnorm;
    hs_layer_spec sp[HS_MAXLAYERS];
    int ns = 0;
    int convl[CNN_MAXBLOCKS], affl[CNN_MAXBLOCKS];
    for (int i = 0; i < c->nblocks; i++) {
        convl[i] = ns;
        sp[ns++] = (hs_layer_spec){
            .kind = HS_CONV, .out = c->ch[i], .ksize = c->ksize, .nobias = bn && !fold_bn};
        affl[i] = -1;
        if (bn && !fold_bn) {
            affl[i] = ns;
            sp[ns++] = (hs_layer_spec){.kind = HS_CHAFFINE};
        }
        sp[ns++] = (hs_layer_spec){.kind = HS_RELU};
        sp[ns++] = (hs_layer_spec){.kind = HS_MAXPOOL};
    }
    int fc1 = ns, fc2 = -1;
    sp[ns++] = (hs_layer_spec){.kind = HS_LINEAR, .out = c->hidden ? c->hidden : c->classes};
    if (c->hidden) {
        sp[ns++] = (hs_layer_spec){.kind = HS_RELU};
        fc2 = ns;
        sp[ns++] = (hs_layer_spec){.kind = HS_LINEAR, .out = c->classes};
    }
    int rc = hs_net_init(net, c->in_ch, c->in_h, c->in_w, sp, ns, 0, e);
    if (rc)
        return rc;
    double eps = src->bn.eps > 0 ? src->bn.eps : 1e-5;
    for (int i = 0; i < c->nblocks && !rc; i++) {
        const cnn_block *b = &src->blk[i];
        const hs_layer *L = &net->layers[convl[i]];
        const hs_block *wb = &net->blocks[L->wblock];
        double *W = net->theta + wb->off;
        if ((rc = param_host(b->conv_w, W, wb->n, e)))
            break;
        if (!bn) {
            rc = param_host(b->conv_b, net->theta + net->blocks[L->bblock].off, L->c_out, e);
            continue;
        }
        int co = L->c_out;
        double *g = malloc(4 * (size_t)co * sizeof(double));
        if (!g) {
            rc = ps_errf(e, PS_ERUN, "hs_net_from_cnn: out of memory");
            break;
        }
        double *be = g + co, *rm = g + 2 * co, *rv = g + 3 * co;
        if (!(rc = param_host(b->bn_g, g, co, e)) && !(rc = param_host(b->bn_b, be, co, e)) &&
            !(rc = param_host(b->bn_rm, rm, co, e)) && !(rc = param_host(b->bn_rv, rv, co, e))) {
            for (int o = 0; o < co; o++) {
                double s = g[o] / sqrt(rv[o] + eps), t = be[o] - rm[o] * s;
                if (fold_bn) {
                    int64_t K = wb->n / co;
                    for (int64_t j = 0; j < K; j++)
                        W[o * K + j] *= s;
                    net->theta[net->blocks[L->bblock].off + o] = t;
                } else {
                    net->layers[affl[i]].scale[o] = s;
                    net->layers[affl[i]].shift[o] = t;
                }
            }
        }
        free(g);
    }
    const rt_param *hp[2][2] = {{src->fc1_w, src->fc1_b}, {src->fc2_w, src->fc2_b}};
    int hl[2] = {fc1, fc2};
    for (int i = 0; i < 2 && !rc; i++) {
        if (hl[i] < 0)
            continue;
        const hs_layer *L = &net->layers[hl[i]];
        const hs_block *wb = &net->blocks[L->wblock], *bb = &net->blocks[L->bblock];
        if (!(rc = param_host(hp[i][0], net->theta + wb->off, wb->n, e)))
            rc = param_host(hp[i][1], net->theta + bb->off, bb->n, e);
    }
    if (rc)
        hs_net_free(net);
    return rc;
}

int hs_block_find(const hs_net *net, const char *name)
{
    for (int b = 0; b < net->nblocks; b++)
        if (!strcmp(net->blocks[b].name, name))
            return b;
    return -1;
}

/* ------------------------------------------------------------ primitives */

static void im2col(const hs_layer *L, const double *in, double *col)
{
    const int k = L->k, pad = k / 2, H = L->h_in, Wd = L->w_in;
    const int64_t P = conv_P(L);
    for (int ci = 0; ci < L->c_in; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                double *row = col + ((int64_t)(ci * k + ky) * k + kx) * P;
                const double *src = in + (int64_t)ci * H * Wd;
                for (int oy = 0; oy < L->h_out; oy++) {
                    int iy = oy + ky - pad;
                    double *r = row + (int64_t)oy * L->w_out;
                    if (iy < 0 || iy >= H) {
                        memset(r, 0, (size_t)L->w_out * sizeof *r);
                        continue;
                    }
                    for (int ox = 0; ox < L->w_out; ox++) {
                        int ix = ox + kx - pad;
                        r[ox] = (ix < 0 || ix >= Wd) ? 0 : src[(int64_t)iy * Wd + ix];
                    }
                }
            }
}

static void col2im_add(const hs_layer *L, const double *col, double *in)
{
    const int k = L->k, pad = k / 2, H = L->h_in, Wd = L->w_in;
    const int64_t P = conv_P(L);
    for (int ci = 0; ci < L->c_in; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const double *row = col + ((int64_t)(ci * k + ky) * k + kx) * P;
                double *dst = in + (int64_t)ci * H * Wd;
                for (int oy = 0; oy < L->h_out; oy++) {
                    int iy = oy + ky - pad;
                    if (iy < 0 || iy >= H)
                        continue;
                    const double *r = row + (int64_t)oy * L->w_out;
                    for (int ox = 0; ox < L->w_out; ox++) {
                        int ix = ox + kx - pad;
                        if (ix >= 0 && ix < Wd)
                            dst[(int64_t)iy * Wd + ix] += r[ox];
                    }
                }
            }
}

/* out = W in (+ b) (+ out when acc), B rows. */
static void lin_apply(hs_ws *ws, const hs_layer *L, const double *W, const double *b,
                      const double *in, double *out, int64_t B, int acc)
{
    const double beta = acc ? 1.0 : 0.0;
    if (L->kind == HS_LINEAR) {
        ps_cpu_dgemm(0, 1, B, L->c_out, L->c_in, 1.0, in, L->c_in, W, L->c_in, beta, out,
                     L->c_out);
        if (b)
            for (int64_t s = 0; s < B; s++)
                for (int o = 0; o < L->c_out; o++)
                    out[s * L->c_out + o] += b[o];
        return;
    }
    const int64_t K = conv_K(L), P = conv_P(L);
    for (int64_t s = 0; s < B; s++) {
        double *os = out + s * L->out_numel;
        im2col(L, in + s * L->in_numel, ws->col);
        ps_cpu_dgemm(0, 0, L->c_out, P, K, 1.0, W, K, ws->col, P, beta, os, P);
        if (b)
            for (int o = 0; o < L->c_out; o++)
                for (int64_t p = 0; p < P; p++)
                    os[o * P + p] += b[o];
    }
}

/* din = W^T dout (+ din when acc). */
static void lin_vjp(hs_ws *ws, const hs_layer *L, const double *W, const double *dout,
                    double *din, int64_t B, int acc)
{
    if (L->kind == HS_LINEAR) {
        ps_cpu_dgemm(0, 0, B, L->c_in, L->c_out, 1.0, dout, L->c_out, W, L->c_in,
                     acc ? 1.0 : 0.0, din, L->c_in);
        return;
    }
    const int64_t K = conv_K(L), P = conv_P(L);
    for (int64_t s = 0; s < B; s++) {
        double *ds = din + s * L->in_numel;
        ps_cpu_dgemm(1, 0, K, P, L->c_out, 1.0, W, K, dout + s * L->out_numel, P, 0.0, ws->dcol,
                     P);
        if (!acc)
            memset(ds, 0, (size_t)L->in_numel * sizeof *ds);
        col2im_add(L, ws->dcol, ds);
    }
}

/* dW += dout in^T (summed over rows), db += dout (db may be NULL). */
static void lin_wgrad(hs_ws *ws, const hs_layer *L, const double *dout, const double *in,
                      double *dW, double *db, int64_t B)
{
    if (L->kind == HS_LINEAR) {
        ps_cpu_dgemm(1, 0, L->c_out, L->c_in, B, 1.0, dout, L->c_out, in, L->c_in, 1.0, dW,
                     L->c_in);
        if (db)
            for (int64_t s = 0; s < B; s++)
                for (int o = 0; o < L->c_out; o++)
                    db[o] += dout[s * L->c_out + o];
        return;
    }
    const int64_t K = conv_K(L), P = conv_P(L);
    for (int64_t s = 0; s < B; s++) {
        const double *gs = dout + s * L->out_numel;
        im2col(L, in + s * L->in_numel, ws->col);
        ps_cpu_dgemm(0, 1, L->c_out, K, P, 1.0, gs, P, ws->col, P, 1.0, dW, K);
        if (db)
            for (int o = 0; o < L->c_out; o++)
                for (int64_t p = 0; p < P; p++)
                    db[o] += gs[o * P + p];
    }
}

/* Per-row squared norms of the weight / bias gradients, summed over rows. */
static void lin_wgrad_sq(hs_ws *ws, const hs_layer *L, const double *dout, const double *in,
                         double *sqw, double *sqb, int64_t B)
{
    for (int64_t s = 0; s < B; s++) {
        const double *gs = dout + s * L->out_numel;
        if (L->kind == HS_LINEAR) {
            double g2 = 0, x2 = 0;
            for (int o = 0; o < L->c_out; o++)
                g2 += gs[o] * gs[o];
            for (int i = 0; i < L->c_in; i++)
                x2 += in[s * L->c_in + i] * in[s * L->c_in + i];
            *sqw += g2 * x2; /* ||delta x^T||_F^2 = ||delta||^2 ||x||^2 */
            if (sqb)
                *sqb += g2;
            continue;
        }
        const int64_t K = conv_K(L), P = conv_P(L);
        im2col(L, in + s * L->in_numel, ws->col);
        ps_cpu_dgemm(0, 1, L->c_out, K, P, 1.0, gs, P, ws->col, P, 0.0, ws->gw, K);
        double acc = 0;
        for (int64_t i = 0; i < L->c_out * K; i++)
            acc += ws->gw[i] * ws->gw[i];
        *sqw += acc;
        if (sqb)
            for (int o = 0; o < L->c_out; o++) {
                double t = 0;
                for (int64_t p = 0; p < P; p++)
                    t += gs[o * P + p];
                *sqb += t * t;
            }
    }
}

/* Parameter-free layers: forward (records the pooling argmax). */
static void np_fwd(const hs_layer *L, const double *in, double *out, int32_t *am, int64_t B)
{
    const int64_t ni = L->in_numel, no = L->out_numel;
    if (L->kind == HS_RELU) {
        for (int64_t i = 0; i < B * ni; i++)
            out[i] = in[i] > 0 ? in[i] : 0;
    } else if (L->kind == HS_CHAFFINE) {
        const int64_t hw = (int64_t)L->h_in * L->w_in;
        for (int64_t s = 0; s < B; s++)
            for (int c = 0; c < L->c_in; c++)
                for (int64_t i = 0; i < hw; i++) {
                    int64_t j = s * ni + c * hw + i;
                    out[j] = in[j] * L->scale[c] + L->shift[c];
                }
    } else { /* HS_MAXPOOL */
        for (int64_t s = 0; s < B; s++)
            for (int c = 0; c < L->c_in; c++)
                for (int oy = 0; oy < L->h_out; oy++)
                    for (int ox = 0; ox < L->w_out; ox++) {
                        int32_t best = -1;
                        double bv = 0;
                        for (int dy = 0; dy < 2; dy++)
                            for (int dx = 0; dx < 2; dx++) {
                                int32_t idx = (int32_t)(((int64_t)c * L->h_in + 2 * oy + dy) *
                                                            L->w_in +
                                                        2 * ox + dx);
                                double v = in[s * ni + idx];
                                if (best < 0 || v > bv) {
                                    best = idx;
                                    bv = v;
                                }
                            }
                        int64_t o = s * no + ((int64_t)c * L->h_out + oy) * L->w_out + ox;
                        out[o] = bv;
                        am[o] = best;
                    }
    }
}

/* Tangent / gradient through a parameter-free layer (both linear maps with
 * the forward's masks); fwd 1: rin -> rout, 0: dout -> din. */
static void np_jvp(const hs_layer *L, const double *in, const int32_t *am, const double *rin,
                   double *rout, int64_t B)
{
    const int64_t ni = L->in_numel, no = L->out_numel;
    if (L->kind == HS_RELU) {
        for (int64_t i = 0; i < B * ni; i++)
            rout[i] = in[i] > 0 ? rin[i] : 0;
    } else if (L->kind == HS_CHAFFINE) {
        const int64_t hw = (int64_t)L->h_in * L->w_in;
        for (int64_t s = 0; s < B; s++)
            for (int c = 0; c < L->c_in; c++)
                for (int64_t i = 0; i < hw; i++) {
                    int64_t j = s * ni + c * hw + i;
                    rout[j] = rin[j] * L->scale[c];
                }
    } else {
        for (int64_t s = 0; s < B; s++)
            for (int64_t o = 0; o < no; o++)
                rout[s * no + o] = rin[s * ni + am[s * no + o]];
    }
}

static void np_vjp(const hs_layer *L, const double *in, const int32_t *am, const double *dout,
                   double *din, int64_t B)
{
    const int64_t ni = L->in_numel, no = L->out_numel;
    if (L->kind == HS_RELU || L->kind == HS_CHAFFINE) {
        np_jvp(L, in, am, dout, din, B); /* diagonal: its own transpose */
        return;
    }
    memset(din, 0, (size_t)(B * ni) * sizeof *din);
    for (int64_t s = 0; s < B; s++)
        for (int64_t o = 0; o < no; o++)
            din[s * ni + am[s * no + o]] += dout[s * no + o];
}

/* ------------------------------------------------------------ passes */

static double *blk_ptr(const hs_net *net, double *base, int b)
{
    return b < 0 || !base ? NULL : base + net->blocks[b].off;
}

/* Forward B rows of x (already in ws->a[0] when x is NULL) and the softmax. */
static void fwd_rows(hs_net *net, const double *x, int64_t B)
{
    hs_ws *ws = net->ws;
    if (x)
        memcpy(ws->a[0], x, (size_t)(B * net->in_dim) * sizeof(double));
    for (int l = 0; l < net->nlayers; l++) {
        const hs_layer *L = &net->layers[l];
        if (is_param(L))
            lin_apply(ws, L, blk_ptr(net, net->theta, L->wblock),
                      blk_ptr(net, net->theta, L->bblock), ws->a[l], ws->a[l + 1], B, 0);
        else
            np_fwd(L, ws->a[l], ws->a[l + 1], ws->am[l], B);
    }
    const int C = net->classes;
    const double *z = ws->a[net->nlayers];
    for (int64_t s = 0; s < B; s++) {
        double mx = z[s * C], sum = 0;
        for (int c = 1; c < C; c++)
            if (z[s * C + c] > mx)
                mx = z[s * C + c];
        for (int c = 0; c < C; c++)
            sum += (ws->p[s * C + c] = exp(z[s * C + c] - mx));
        for (int c = 0; c < C; c++)
            ws->p[s * C + c] /= sum;
    }
}

/* Backward from da[nlayers] (set by the caller): da[l] for l >= lo, weight
 * gradients += into grad (may be NULL), per-row squared gradient norms +=
 * into sq[nblocks] (may be NULL). */
static void bwd_rows(hs_net *net, int64_t B, int lo, double *grad, double *sq)
{
    hs_ws *ws = net->ws;
    for (int l = net->nlayers - 1; l >= 0; l--) {
        const hs_layer *L = &net->layers[l];
        if (is_param(L)) {
            if (grad)
                lin_wgrad(ws, L, ws->da[l + 1], ws->a[l], blk_ptr(net, grad, L->wblock),
                          blk_ptr(net, grad, L->bblock), B);
            if (sq)
                lin_wgrad_sq(ws, L, ws->da[l + 1], ws->a[l], &sq[L->wblock],
                             L->bblock >= 0 ? &sq[L->bblock] : NULL, B);
            if (l >= lo)
                lin_vjp(ws, L, blk_ptr(net, net->theta, L->wblock), ws->da[l + 1], ws->da[l], B,
                        0);
        } else if (l >= lo) {
            np_vjp(L, ws->a[l], ws->am[l], ws->da[l + 1], ws->da[l], B);
        }
        if (l <= lo && !grad && !sq)
            break;
    }
}

/* dz = wl (p - onehot(y)) into da[nlayers]; loss sum and correct count. */
static void loss_rows(hs_net *net, const int32_t *y, int64_t B, double wl, double *loss,
                      int64_t *correct)
{
    hs_ws *ws = net->ws;
    const int C = net->classes;
    double *dz = ws->da[net->nlayers];
    for (int64_t s = 0; s < B; s++) {
        const double *p = ws->p + s * C;
        int arg = 0;
        for (int c = 0; c < C; c++) {
            dz[s * C + c] = wl * (p[c] - (c == y[s]));
            if (p[c] > p[arg])
                arg = c;
        }
        if (loss)
            *loss -= log(p[y[s]] > 1e-300 ? p[y[s]] : 1e-300);
        if (correct)
            *correct += arg == y[s];
    }
}

/* R-op over B rows after fwd_rows (and bwd_rows with lo <= 1 when v): the
 * tangent starts at a[l0] (ws->ra[l0] filled, or zero when rin_zero) with
 * parameter tangent v (may be NULL); the loss weight is wl.  hv += R{grad}
 * (may be NULL); rda[l] computed for l >= lo. */
static void rop_rows(hs_net *net, int64_t B, int l0, int rin_zero, const double *v, double *hv,
                     double wl, int lo)
{
    hs_ws *ws = net->ws;
    const int nl = net->nlayers, C = net->classes;
    for (int l = 0; l <= nl; l++)
        ws->rzero[l] = 1;
    ws->rzero[l0] = rin_zero;
    for (int l = l0; l < nl; l++) {
        const hs_layer *L = &net->layers[l];
        const double *vW = is_param(L) ? blk_ptr(net, (double *)v, L->wblock) : NULL;
        const double *vb = is_param(L) ? blk_ptr(net, (double *)v, L->bblock) : NULL;
        int z = ws->rzero[l];
        if (is_param(L)) {
            if (!z)
                lin_apply(ws, L, blk_ptr(net, net->theta, L->wblock), NULL, ws->ra[l],
                          ws->ra[l + 1], B, 0);
            if (vW)
                lin_apply(ws, L, vW, vb, ws->a[l], ws->ra[l + 1], B, !z);
            ws->rzero[l + 1] = z && !vW;
        } else {
            if (!z)
                np_jvp(L, ws->a[l], ws->am[l], ws->ra[l], ws->ra[l + 1], B);
            ws->rzero[l + 1] = z;
        }
    }
    if (ws->rzero[nl])
        return; /* a zero tangent: R{grad} = 0 */
    const double *rz = ws->ra[nl];
    double *rdz = ws->rda[nl];
    for (int64_t s = 0; s < B; s++) {
        const double *p = ws->p + s * C;
        double pr = 0;
        for (int c = 0; c < C; c++)
            pr += p[c] * rz[s * C + c];
        for (int c = 0; c < C; c++)
            rdz[s * C + c] = wl * p[c] * (rz[s * C + c] - pr);
    }
    for (int l = nl - 1; l >= 0; l--) {
        const hs_layer *L = &net->layers[l];
        if (l < lo && !hv)
            break;
        if (is_param(L)) {
            const double *W = blk_ptr(net, net->theta, L->wblock);
            const double *vW = blk_ptr(net, (double *)v, L->wblock);
            if (hv) {
                lin_wgrad(ws, L, ws->rda[l + 1], ws->a[l], blk_ptr(net, hv, L->wblock),
                          blk_ptr(net, hv, L->bblock), B);
                if (l >= l0 && !ws->rzero[l])
                    lin_wgrad(ws, L, ws->da[l + 1], ws->ra[l], blk_ptr(net, hv, L->wblock), NULL,
                              B);
            }
            if (l >= lo) {
                lin_vjp(ws, L, W, ws->rda[l + 1], ws->rda[l], B, 0);
                if (vW)
                    lin_vjp(ws, L, vW, ws->da[l + 1], ws->rda[l], B, 1);
            }
        } else if (l >= lo) {
            np_vjp(L, ws->a[l], ws->am[l], ws->rda[l + 1], ws->rda[l], B);
        }
    }
}

static int check_data(const hs_net *net, const char *fn, const double *x, const int32_t *y,
                      int64_t n, ps_err *e)
{
    if (!x || n < 1)
        return ps_errf(e, PS_EINPUT, "%s: no data (n = %lld)", fn, (long long)n);
    if (net->batch < 1)
        return ps_errf(e, PS_EINPUT, "%s: net->batch = %lld < 1", fn, (long long)net->batch);
    for (int64_t i = 0; y && i < n; i++)
        if (y[i] < 0 || y[i] >= net->classes)
            return ps_errf(e, PS_EINPUT, "%s: label y[%lld] = %d out of range [0, %d)", fn,
                           (long long)i, y[i], net->classes);
    return 0;
}

/* ------------------------------------------------------------ first order */

int hs_forward(hs_net *net, const double *x, int64_t n, double *logits, ps_err *e)
{
    int rc = check_data(net, "hs_forward", x, NULL, n, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    for (int64_t s0 = 0; s0 < n; s0 += net->batch) {
        int64_t B = n - s0 < net->batch ? n - s0 : net->batch;
        fwd_rows(net, x + s0 * net->in_dim, B);
        memcpy(logits + s0 * net->classes, net->ws->a[net->nlayers],
               (size_t)(B * net->classes) * sizeof(double));
    }
    return 0;
}

int hs_loss_grad(hs_net *net, const double *x, const int32_t *y, int64_t n, double *loss,
                 double *grad, int64_t *correct, ps_err *e)
{
    int rc = check_data(net, "hs_loss_grad", x, y, n, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    if (grad)
        memset(grad, 0, (size_t)net->nparam * sizeof *grad);
    double ls = 0;
    int64_t cor = 0;
    for (int64_t s0 = 0; s0 < n; s0 += net->batch) {
        int64_t B = n - s0 < net->batch ? n - s0 : net->batch;
        fwd_rows(net, x + s0 * net->in_dim, B);
        loss_rows(net, y + s0, B, 1.0 / (double)n, &ls, &cor);
        if (grad)
            bwd_rows(net, B, 1, grad, NULL);
    }
    if (loss)
        *loss = ls / (double)n;
    if (correct)
        *correct = cor;
    return 0;
}

int hs_train_sgd(hs_net *net, const double *x, const int32_t *y, int64_t n, int epochs,
                 double lr, int64_t bs, uint64_t seed, ps_err *e)
{
    if (bs < 1 || epochs < 0 || !(lr > 0))
        return ps_errf(e, PS_EINPUT, "hs_train_sgd: bs %lld, epochs %d, lr %g: need bs >= 1, "
                       "epochs >= 0, lr > 0",
                       (long long)bs, epochs, lr);
    int rc = check_data(net, "hs_train_sgd", x, y, n, e);
    if (rc)
        return rc;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    double *bx = malloc((size_t)(bs * net->in_dim) * sizeof *bx);
    int32_t *by = malloc((size_t)bs * sizeof *by);
    double *g = malloc((size_t)net->nparam * sizeof *g);
    if (!idx || !bx || !by || !g) {
        rc = ps_errf(e, PS_ERUN, "hs_train_sgd: out of memory");
        goto out;
    }
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    for (int ep = 0; ep < epochs && !rc; ep++) {
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(sm64(&s) % (uint64_t)(i + 1)), t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        for (int64_t b0 = 0; b0 < n && !rc; b0 += bs) {
            int64_t B = n - b0 < bs ? n - b0 : bs;
            for (int64_t i = 0; i < B; i++) {
                memcpy(bx + i * net->in_dim, x + idx[b0 + i] * net->in_dim,
                       (size_t)net->in_dim * sizeof *bx);
                by[i] = y[idx[b0 + i]];
            }
            if (!(rc = hs_loss_grad(net, bx, by, B, NULL, g, NULL, e)))
                for (int64_t k = 0; k < net->nparam; k++)
                    net->theta[k] -= lr * g[k];
        }
    }
out:
    free(idx);
    free(bx);
    free(by);
    free(g);
    return rc;
}

/* ------------------------------------------------------------ HVPs */

/* HV[j] = H V[j] for k vectors (each [nparam]), one forward/backward per
 * chunk shared by all k. */
static int hvp_multi(hs_net *net, const double *x, const int32_t *y, int64_t n, int k,
                     const double *V, double *HV, ps_err *e)
{
    int rc = check_data(net, "hs_hvp", x, y, n, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    memset(HV, 0, (size_t)k * (size_t)net->nparam * sizeof *HV);
    const double wl = 1.0 / (double)n;
    for (int64_t s0 = 0; s0 < n; s0 += net->batch) {
        int64_t B = n - s0 < net->batch ? n - s0 : net->batch;
        fwd_rows(net, x + s0 * net->in_dim, B);
        loss_rows(net, y + s0, B, wl, NULL, NULL);
        bwd_rows(net, B, 1, NULL, NULL);
        for (int j = 0; j < k; j++)
            rop_rows(net, B, 0, 1, V + (size_t)j * (size_t)net->nparam,
                     HV + (size_t)j * (size_t)net->nparam, wl, 1);
    }
    return 0;
}

int hs_hvp(hs_net *net, const double *x, const int32_t *y, int64_t n, const double *v, double *hv,
           ps_err *e)
{
    return hvp_multi(net, x, y, n, 1, v, hv, e);
}

int hs_hvp_fd(hs_net *net, const double *x, const int32_t *y, int64_t n, const double *v,
              double h, double *hv, ps_err *e)
{
    if (!(h > 0))
        return ps_errf(e, PS_EINPUT, "hs_hvp_fd: step h = %g must be > 0", h);
    const int64_t np = net->nparam;
    double *save = malloc((size_t)np * sizeof *save), *gm = malloc((size_t)np * sizeof *gm);
    int rc = 0;
    if (!save || !gm) {
        rc = ps_errf(e, PS_ERUN, "hs_hvp_fd: out of memory");
        goto out;
    }
    memcpy(save, net->theta, (size_t)np * sizeof *save);
    for (int64_t i = 0; i < np; i++)
        net->theta[i] = save[i] + h * v[i];
    if ((rc = hs_loss_grad(net, x, y, n, NULL, hv, NULL, e)))
        goto restore;
    for (int64_t i = 0; i < np; i++)
        net->theta[i] = save[i] - h * v[i];
    if ((rc = hs_loss_grad(net, x, y, n, NULL, gm, NULL, e)))
        goto restore;
    for (int64_t i = 0; i < np; i++)
        hv[i] = (hv[i] - gm[i]) / (2 * h);
restore:
    memcpy(net->theta, save, (size_t)np * sizeof *save);
out:
    free(save);
    free(gm);
    return rc;
}

/* Columns [off, off + cnt) of H (H e_j for j in range) into out rows
 * [cnt, nparam]. */
static int hess_cols(hs_net *net, const double *x, const int32_t *y, int64_t n, int64_t off,
                     int64_t cnt, double *out, ps_err *e)
{
    const int G = 32;
    const int64_t np = net->nparam;
    double *V = calloc((size_t)G * (size_t)np, sizeof *V);
    if (!V)
        return ps_errf(e, PS_ERUN, "hessian: out of memory");
    int rc = 0;
    for (int64_t j0 = 0; j0 < cnt && !rc; j0 += G) {
        int k = cnt - j0 < G ? (int)(cnt - j0) : G;
        memset(V, 0, (size_t)G * (size_t)np * sizeof *V);
        for (int j = 0; j < k; j++)
            V[(size_t)j * (size_t)np + (size_t)(off + j0 + j)] = 1;
        rc = hvp_multi(net, x, y, n, k, V, out + (size_t)j0 * (size_t)np, e);
    }
    free(V);
    return rc;
}

int hs_dense_hessian(hs_net *net, const double *x, const int32_t *y, int64_t n, double *H,
                     ps_err *e)
{
    const int64_t np = net->nparam;
    int rc = hess_cols(net, x, y, n, 0, np, H, e);
    if (rc)
        return rc;
    for (int64_t i = 0; i < np; i++)
        for (int64_t j = i + 1; j < np; j++) {
            double m = 0.5 * (H[i * np + j] + H[j * np + i]);
            H[i * np + j] = H[j * np + i] = m;
        }
    return 0;
}

int hs_dense_block(hs_net *net, const double *x, const int32_t *y, int64_t n, int block,
                   double *Hb, ps_err *e)
{
    if (block < 0 || block >= net->nblocks)
        return ps_errf(e, PS_EINPUT, "hs_dense_block: block %d out of range [0, %d)", block,
                       net->nblocks);
    const hs_block *b = &net->blocks[block];
    const int64_t np = net->nparam, nb = b->n;
    double *cols = malloc((size_t)nb * (size_t)np * sizeof *cols);
    if (!cols)
        return ps_errf(e, PS_ERUN, "hs_dense_block: out of memory");
    int rc = hess_cols(net, x, y, n, b->off, nb, cols, e);
    if (!rc)
        for (int64_t i = 0; i < nb; i++)
            for (int64_t j = 0; j < nb; j++)
                Hb[i * nb + j] =
                    0.5 * (cols[i * np + b->off + j] + cols[j * np + b->off + i]);
    free(cols);
    return rc;
}

/* ------------------------------------------------------------ Hutchinson */

static void est_fill(hs_est *o, double s1, double s2, int m, int64_t numel)
{
    double mean = s1 / m;
    double var = m > 1 ? (s2 - m * mean * mean) / (m - 1) : 0;
    if (var < 0)
        var = 0;
    o->mean = mean;
    o->se = sqrt(var / m);
    o->per_param = numel > 0 ? mean / (double)numel : 0;
    o->m = m;
}

int hs_hutchinson(hs_net *net, const double *x, const int32_t *y, int64_t n,
                  const hs_hutch_opts *o, hs_est *out, double *samples, int *m_used, ps_err *e)
{
    int m_min = o && o->m_min > 0 ? o->m_min : 10;
    int m_max = o && o->m_max > 0 ? o->m_max : 200;
    double tol = o ? o->tol : 0;
    if (m_min < 2)
        m_min = 2;
    if (m_max < m_min)
        return ps_errf(e, PS_EINPUT, "hs_hutchinson: m_max %d < m_min %d", m_max, m_min);
    if (tol < 0)
        return ps_errf(e, PS_EINPUT, "hs_hutchinson: tol %g < 0", tol);
    const int G = 8, nb = net->nblocks;
    const int64_t np = net->nparam;
    double *V = malloc((size_t)G * (size_t)np * sizeof *V);
    double *HV = malloc((size_t)G * (size_t)np * sizeof *HV);
    double *s1 = calloc((size_t)nb, sizeof *s1), *s2 = calloc((size_t)nb, sizeof *s2);
    int rc = 0, m = 0, done = 0;
    if (!V || !HV || !s1 || !s2) {
        rc = ps_errf(e, PS_ERUN, "hs_hutchinson: out of memory");
        goto out;
    }
    uint64_t s = o ? o->seed : 0;
    while (!done && m < m_max) {
        int k = m_max - m < G ? m_max - m : G;
        for (size_t i = 0; i < (size_t)k * (size_t)np; i++)
            V[i] = rademacher(&s);
        if ((rc = hvp_multi(net, x, y, n, k, V, HV, e)))
            goto out;
        for (int j = 0; j < k && !done; j++) {
            const double *v = V + (size_t)j * (size_t)np, *hv = HV + (size_t)j * (size_t)np;
            for (int b = 0; b < nb; b++) {
                const hs_block *bl = &net->blocks[b];
                double t = 0;
                for (int64_t i = bl->off; i < bl->off + bl->n; i++)
                    t += v[i] * hv[i];
                s1[b] += t;
                s2[b] += t * t;
                if (samples)
                    samples[(size_t)m * (size_t)nb + (size_t)b] = t;
            }
            m++;
            if (tol > 0 && m >= m_min) {
                int all = 1;
                for (int b = 0; b < nb && all; b++) {
                    hs_est est;
                    est_fill(&est, s1[b], s2[b], m, 1);
                    all = est.se < tol * fabs(est.mean) || est.se == 0;
                }
                done = all;
            }
        }
    }
    for (int b = 0; b < nb; b++)
        est_fill(&out[b], s1[b], s2[b], m, net->blocks[b].n);
    if (m_used)
        *m_used = m;
out:
    free(V);
    free(HV);
    free(s1);
    free(s2);
    return rc;
}

/* ------------------------------------------------------------ Gauss-Newton */

/* One exact GN pass: per sample, one backward per class with dlogits =
 * sqrt(p_c)(e_c - p) (rows of the expanded batch: sample s, class c).
 * blk[nblocks] += sum over samples of sum_c ||J_b^T r_c||^2 (may be NULL);
 * act1/act2[nquant+1] += per-sample traces and their squares (may be NULL). */
static int gn_pass(hs_net *net, const double *x, int64_t n, double *blk, double *act1,
                   double *act2, ps_err *e)
{
    const int C = net->classes;
    int64_t per = net->batch / C;
    if (per < 1)
        per = 1;
    int rc = ws_ensure(net, per * C, e);
    if (rc)
        return rc;
    hs_ws *ws = net->ws;
    /* da[l+1] is needed down to the first layer for the weight norms */
    const int lo = act1 && net->quant[0] < 1 ? net->quant[0] : 1;
    for (int64_t s0 = 0; s0 < n; s0 += per) {
        int64_t S = n - s0 < per ? n - s0 : per, B = S * C;
        for (int64_t s = 0; s < S; s++)
            for (int c = 0; c < C; c++)
                memcpy(ws->a[0] + (s * C + c) * net->in_dim, x + (s0 + s) * net->in_dim,
                       (size_t)net->in_dim * sizeof(double));
        fwd_rows(net, NULL, B);
        double *dz = ws->da[net->nlayers];
        for (int64_t r = 0; r < B; r++) {
            const double *p = ws->p + r * C;
            int c = (int)(r % C);
            double sq = sqrt(p[c]);
            for (int j = 0; j < C; j++)
                dz[r * C + j] = sq * ((j == c) - p[j]);
        }
        bwd_rows(net, B, lo, NULL, blk);
        if (!act1)
            continue;
        for (int q = 0; q <= net->nquant; q++) {
            int l = q < net->nquant ? net->quant[q] : net->nlayers;
            int64_t ne = act_numel(net, l);
            for (int64_t s = 0; s < S; s++) {
                double t = 0;
                const double *g = ws->da[l] + s * C * ne;
                for (int64_t i = 0; i < C * ne; i++)
                    t += g[i] * g[i];
                act1[q] += t;
                act2[q] += t * t;
            }
        }
    }
    return 0;
}

int hs_gn_trace(hs_net *net, const double *x, const int32_t *y, int64_t n, double *tr, ps_err *e)
{
    int rc = check_data(net, "hs_gn_trace", x, y, n, e);
    if (rc)
        return rc;
    memset(tr, 0, (size_t)net->nblocks * sizeof *tr);
    if ((rc = gn_pass(net, x, n, tr, NULL, NULL, e)))
        return rc;
    for (int b = 0; b < net->nblocks; b++)
        tr[b] /= (double)n;
    return 0;
}

/* ------------------------------------------------------------ lambda_max */

/* Power iteration on k diagonal blocks at once (one forward/backward per
 * chunk shared by the k HVPs); block sel[j] starts from seeds[j]; each stops
 * on its own. */
static int power_blocks(hs_net *net, const double *x, const int32_t *y, int64_t n, int k,
                        const int *sel, const uint64_t *seeds, int max_iter, double tol,
                        double *lambda, int *iters, ps_err *e)
{
    if (max_iter <= 0)
        max_iter = 100;
    if (!(tol > 0))
        tol = 1e-3;
    const int64_t np = net->nparam;
    double *V = calloc((size_t)k * (size_t)np, sizeof *V);
    double *HV = malloc((size_t)k * (size_t)np * sizeof *HV);
    double *prev = calloc((size_t)k, sizeof *prev);
    int *act = malloc((size_t)k * sizeof *act), *map = malloc((size_t)k * sizeof *map);
    int rc = 0;
    if (!V || !HV || !prev || !act || !map) {
        rc = ps_errf(e, PS_ERUN, "hs_lambda_max: out of memory");
        goto out;
    }
    for (int j = 0; j < k; j++) {
        const hs_block *b = &net->blocks[sel[j]];
        double *v = V + (size_t)j * (size_t)np, nrm = 0;
        uint64_t s = seeds[j];
        for (int64_t i = 0; i < b->n; i++) {
            v[b->off + i] = gauss(&s);
            nrm += v[b->off + i] * v[b->off + i];
        }
        nrm = sqrt(nrm);
        for (int64_t i = 0; i < b->n; i++)
            v[b->off + i] /= nrm;
        act[j] = 1;
        lambda[j] = 0;
        iters[j] = 0;
    }
    for (int it = 1; it <= max_iter; it++) {
        /* pack the active vectors at the front */
        int na = 0;
        for (int j = 0; j < k; j++)
            if (act[j]) {
                if (na != j)
                    memcpy(V + (size_t)na * (size_t)np, V + (size_t)j * (size_t)np,
                           (size_t)np * sizeof *V);
                map[na++] = j;
            }
        if (na == 0)
            break;
        /* (V rows of inactive blocks are overwritten: keep state in place) */
        if ((rc = hvp_multi(net, x, y, n, na, V, HV, e)))
            goto out;
        for (int a = 0; a < na; a++) {
            int j = map[a];
            const hs_block *b = &net->blocks[sel[j]];
            double *v = V + (size_t)a * (size_t)np, *hv = HV + (size_t)a * (size_t)np;
            double lam = 0, nrm = 0;
            for (int64_t i = b->off; i < b->off + b->n; i++) {
                lam += v[i] * hv[i];
                nrm += hv[i] * hv[i];
            }
            nrm = sqrt(nrm);
            lambda[j] = lam;
            iters[j] = it;
            if (nrm == 0) {
                act[j] = 0;
                continue;
            }
            for (int64_t i = b->off; i < b->off + b->n; i++)
                v[i] = hv[i] / nrm;
            if (it > 1 && fabs(lam - prev[j]) / (fabs(prev[j]) + 1e-6) < tol)
                act[j] = 0;
            prev[j] = lam;
        }
        /* unpack: vector a belongs to map[a]; move back so index = block slot */
        for (int a = na - 1; a >= 0; a--)
            if (map[a] != a)
                memcpy(V + (size_t)map[a] * (size_t)np, V + (size_t)a * (size_t)np,
                       (size_t)np * sizeof *V);
    }
out:
    free(V);
    free(HV);
    free(prev);
    free(act);
    free(map);
    return rc;
}

int hs_lambda_max(hs_net *net, const double *x, const int32_t *y, int64_t n, int block,
                  int max_iter, double tol, uint64_t seed, double *lambda, int *iters, ps_err *e)
{
    if (block < 0 || block >= net->nblocks)
        return ps_errf(e, PS_EINPUT, "hs_lambda_max: block %d out of range [0, %d)", block,
                       net->nblocks);
    int it = 0;
    int rc = power_blocks(net, x, y, n, 1, &block, &seed, max_iter, tol, lambda, &it, e);
    if (!rc && iters)
        *iters = it;
    return rc;
}

int hs_lambda_max_all(hs_net *net, const double *x, const int32_t *y, int64_t n, int max_iter,
                      double tol, uint64_t seed, double *lambda, int *iters, ps_err *e)
{
    const int k = net->nblocks;
    int sel[2 * HS_MAXLAYERS], it[2 * HS_MAXLAYERS];
    uint64_t seeds[2 * HS_MAXLAYERS];
    for (int b = 0; b < k; b++) {
        sel[b] = b;
        seeds[b] = seed + (uint64_t)b;
    }
    int rc = power_blocks(net, x, y, n, k, sel, seeds, max_iter, tol, lambda, it, e);
    if (!rc && iters)
        memcpy(iters, it, (size_t)k * sizeof *iters);
    return rc;
}

/* ------------------------------------------------------------ activations */

static int act_layer(const hs_net *net, int q)
{
    return q < net->nquant ? net->quant[q] : net->nlayers;
}

int64_t hs_act_numel(const hs_net *net, int q)
{
    if (q < 0 || q > net->nquant)
        return 0;
    return act_numel(net, act_layer(net, q));
}

int hs_act_trace_exact(hs_net *net, const double *x, const int32_t *y, int64_t n, hs_est *out,
                       ps_err *e)
{
    int rc = check_data(net, "hs_act_trace_exact", x, y, n, e);
    if (rc)
        return rc;
    double a1[HS_MAXLAYERS + 1] = {0}, a2[HS_MAXLAYERS + 1] = {0};
    if ((rc = gn_pass(net, x, n, NULL, a1, a2, e)))
        return rc;
    for (int q = 0; q <= net->nquant; q++)
        est_fill(&out[q], a1[q], a2[q], (int)n, hs_act_numel(net, q));
    return 0;
}

int hs_act_trace_hutch(hs_net *net, const double *x, const int32_t *y, int64_t n, int m,
                       uint64_t seed, hs_est *out, ps_err *e)
{
    int rc = check_data(net, "hs_act_trace_hutch", x, y, n, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    if (m < 1)
        return ps_errf(e, PS_EINPUT, "hs_act_trace_hutch: m = %d < 1", m);
    hs_ws *ws = net->ws;
    uint64_t s = seed;
    for (int q = 0; q <= net->nquant; q++) {
        int l = act_layer(net, q);
        int64_t ne = act_numel(net, l);
        double s1 = 0, s2 = 0;
        for (int64_t s0 = 0; s0 < n; s0 += net->batch) {
            int64_t B = n - s0 < net->batch ? n - s0 : net->batch;
            fwd_rows(net, x + s0 * net->in_dim, B);
            for (int j = 0; j < m; j++) {
                for (int64_t i = 0; i < B * ne; i++)
                    ws->ra[l][i] = rademacher(&s);
                /* sum of per-row losses: H_a is block diagonal over rows */
                rop_rows(net, B, l, 0, NULL, NULL, 1.0, l);
                for (int64_t r = 0; r < B; r++) {
                    double t = 0;
                    for (int64_t i = r * ne; i < (r + 1) * ne; i++)
                        t += ws->ra[l][i] * ws->rda[l][i];
                    s1 += t;
                    s2 += t * t;
                }
            }
        }
        est_fill(&out[q], s1, s2, (int)(n * m), ne);
    }
    return 0;
}

int hs_act_grad(hs_net *net, const double *x, const int32_t *y, int64_t n, int q, double *g,
                ps_err *e)
{
    if (q < 0 || q > net->nquant)
        return ps_errf(e, PS_EINPUT, "hs_act_grad: q = %d out of range [0, %d]", q, net->nquant);
    int rc = check_data(net, "hs_act_grad", x, y, n, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    if (!y)
        return ps_errf(e, PS_EINPUT, "hs_act_grad: labels y are required");
    int l = act_layer(net, q);
    int64_t ne = act_numel(net, l);
    for (int64_t s0 = 0; s0 < n; s0 += net->batch) {
        int64_t B = n - s0 < net->batch ? n - s0 : net->batch;
        fwd_rows(net, x + s0 * net->in_dim, B);
        loss_rows(net, y + s0, B, 1.0, NULL, NULL);
        bwd_rows(net, B, l, NULL, NULL);
        memcpy(g + s0 * ne, net->ws->da[l], (size_t)(B * ne) * sizeof *g);
    }
    return 0;
}

int hs_act_hvp(hs_net *net, const double *x, int32_t y, int q, const double *u, double *hu,
               ps_err *e)
{
    if (q < 0 || q > net->nquant)
        return ps_errf(e, PS_EINPUT, "hs_act_hvp: q = %d out of range [0, %d]", q, net->nquant);
    int rc = check_data(net, "hs_act_hvp", x, &y, 1, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    int l = act_layer(net, q);
    int64_t ne = act_numel(net, l);
    fwd_rows(net, x, 1);
    memcpy(net->ws->ra[l], u, (size_t)ne * sizeof *u);
    rop_rows(net, 1, l, 0, NULL, NULL, 1.0, l);
    memcpy(hu, net->ws->rda[l], (size_t)ne * sizeof *hu);
    return 0;
}

/* ------------------------------------------------------------ imatrix */

int64_t hs_imatrix_cols(const hs_net *net, int q)
{
    if (q < 0 || q >= net->nquant)
        return 0;
    const hs_layer *L = &net->layers[net->quant[q]];
    return L->kind == HS_CONV ? conv_K(L) : L->c_in;
}

int hs_imatrix(hs_net *net, const double *x, int64_t n, int q, double *ex2, ps_err *e)
{
    if (q < 0 || q >= net->nquant)
        return ps_errf(e, PS_EINPUT, "hs_imatrix: q = %d out of range [0, %d)", q, net->nquant);
    int rc = check_data(net, "hs_imatrix", x, NULL, n, e);
    if (rc || (rc = ws_ensure(net, net->batch, e)))
        return rc;
    int l = net->quant[q];
    const hs_layer *L = &net->layers[l];
    int64_t cols = hs_imatrix_cols(net, q);
    memset(ex2, 0, (size_t)cols * sizeof *ex2);
    hs_ws *ws = net->ws;
    for (int64_t s0 = 0; s0 < n; s0 += net->batch) {
        int64_t B = n - s0 < net->batch ? n - s0 : net->batch;
        fwd_rows(net, x + s0 * net->in_dim, B);
        for (int64_t r = 0; r < B; r++) {
            const double *a = ws->a[l] + r * L->in_numel;
            if (L->kind == HS_LINEAR) {
                for (int64_t j = 0; j < cols; j++)
                    ex2[j] += a[j] * a[j];
                continue;
            }
            im2col(L, a, ws->col);
            const int64_t P = conv_P(L);
            for (int64_t j = 0; j < cols; j++)
                for (int64_t p = 0; p < P; p++)
                    ex2[j] += ws->col[j * P + p] * ws->col[j * P + p];
        }
    }
    double cnt = (double)n * (L->kind == HS_CONV ? (double)conv_P(L) : 1.0);
    for (int64_t j = 0; j < cols; j++)
        ex2[j] /= cnt;
    return 0;
}

double hs_imatrix_omega(const hs_net *net, int q, const double *ex2, const double *dw)
{
    int64_t cols = hs_imatrix_cols(net, q);
    if (cols == 0)
        return 0;
    const hs_layer *L = &net->layers[net->quant[q]];
    double om = 0;
    for (int o = 0; o < L->c_out; o++)
        for (int64_t j = 0; j < cols; j++)
            om += ex2[j] * dw[o * cols + j] * dw[o * cols + j];
    return om;
}
