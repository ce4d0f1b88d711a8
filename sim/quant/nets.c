/* ResNet50 / Inception-V3 layer shapes and their bit-allocation problems:
 * see sim/quant/nets.h. */
#include "sim/quant/nets.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "sim/quant/quantizer.h"
#include "sim/specdec/rng.h"

typedef struct builder {
    psq_net *net;
    int cap;
    int err;
} builder;

/* Add a conv (bias-free, followed by BN) or the fc; returns h_out. */
static void add(builder *b, const char *name, int fc, int64_t cin, int64_t cout, int64_t kh,
                int64_t kw, int64_t stride, int64_t ph, int64_t pw, int64_t h, int64_t w,
                int64_t *ho, int64_t *wo)
{
    psq_net *n = b->net;
    if (n->n == b->cap) {
        int nc = b->cap ? 2 * b->cap : 64;
        psq_net_layer *L = realloc(n->L, (size_t)nc * sizeof *L);
        if (!L) {
            b->err = 1;
            return;
        }
        n->L = L;
        b->cap = nc;
    }
    psq_net_layer *L = &n->L[n->n++];
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "%s", name);
    L->fc = fc;
    L->cin = cin;
    L->cout = cout;
    L->kh = kh;
    L->kw = kw;
    L->stride = stride;
    L->h_in = h;
    L->w_in = w;
    L->h_out = (h + 2 * ph - kh) / stride + 1;
    L->w_out = (w + 2 * pw - kw) / stride + 1;
    L->weights = (double)cin * (double)cout * (double)kh * (double)kw;
    n->other_params += fc ? (double)cout : 2.0 * (double)cout;
    if (ho)
        *ho = L->h_out;
    if (wo)
        *wo = L->w_out;
}

static void resnet50(builder *b)
{
    int64_t h, w;
    add(b, "conv1", 0, 3, 64, 7, 7, 2, 3, 3, 224, 224, &h, &w);
    h = (h + 2 - 3) / 2 + 1; /* maxpool 3x3 s2 p1: 112 -> 56 */
    w = (w + 2 - 3) / 2 + 1;
    static const int blocks[4] = {3, 4, 6, 3}, width[4] = {64, 128, 256, 512};
    int64_t cin = 64;
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < blocks[s]; k++) {
            int64_t wd = width[s], stride = (k == 0 && s > 0) ? 2 : 1, h2, w2;
            char nm[PSQ_NAME_MAX];
            snprintf(nm, sizeof nm, "layer%d.%d.conv1", s + 1, k);
            add(b, nm, 0, cin, wd, 1, 1, 1, 0, 0, h, w, NULL, NULL);
            snprintf(nm, sizeof nm, "layer%d.%d.conv2", s + 1, k);
            add(b, nm, 0, wd, wd, 3, 3, stride, 1, 1, h, w, &h2, &w2);
            snprintf(nm, sizeof nm, "layer%d.%d.conv3", s + 1, k);
            add(b, nm, 0, wd, 4 * wd, 1, 1, 1, 0, 0, h2, w2, NULL, NULL);
            if (k == 0) {
                snprintf(nm, sizeof nm, "layer%d.%d.downsample", s + 1, k);
                add(b, nm, 0, cin, 4 * wd, 1, 1, stride, 0, 0, h, w, NULL, NULL);
            }
            cin = 4 * wd;
            h = h2;
            w = w2;
        }
    add(b, "fc", 1, 2048, 1000, 1, 1, 1, 0, 0, 1, 1, NULL, NULL);
}

/* Inception-V3 building blocks (torchvision).  c(name, cin, cout, kh, kw,
 * stride, ph, pw) at the current h, w of the block. */
#define C(nm, ci, co, kh, kw, st, ph, pw)                                                         \
    do {                                                                                          \
        char full[PSQ_NAME_MAX];                                                                  \
        snprintf(full, sizeof full, "%s.%s", blk, nm);                                            \
        add(b, full, 0, ci, co, kh, kw, st, ph, pw, h, w, NULL, NULL);                            \
    } while (0)

static void incA(builder *b, const char *blk, int64_t in, int64_t pf, int64_t h, int64_t w)
{
    C("branch1x1", in, 64, 1, 1, 1, 0, 0);
    C("branch5x5_1", in, 48, 1, 1, 1, 0, 0);
    C("branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
    C("branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0);
    C("branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    C("branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
    C("branch_pool", in, pf, 1, 1, 1, 0, 0);
}

static void incB(builder *b, const char *blk, int64_t in, int64_t h, int64_t w)
{
    C("branch3x3", in, 384, 3, 3, 2, 0, 0);
    C("branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0);
    C("branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    C("branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0);
}

static void incC(builder *b, const char *blk, int64_t in, int64_t c7, int64_t h, int64_t w)
{
    C("branch1x1", in, 192, 1, 1, 1, 0, 0);
    C("branch7x7_1", in, c7, 1, 1, 1, 0, 0);
    C("branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
    C("branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
    C("branch7x7dbl_1", in, c7, 1, 1, 1, 0, 0);
    C("branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
    C("branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
    C("branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
    C("branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
    C("branch_pool", in, 192, 1, 1, 1, 0, 0);
}

static void incD(builder *b, const char *blk, int64_t in, int64_t h, int64_t w)
{
    C("branch3x3_1", in, 192, 1, 1, 1, 0, 0);
    C("branch3x3_2", 192, 320, 3, 3, 2, 0, 0);
    C("branch7x7x3_1", in, 192, 1, 1, 1, 0, 0);
    C("branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    C("branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    C("branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0);
}

static void incE(builder *b, const char *blk, int64_t in, int64_t h, int64_t w)
{
    C("branch1x1", in, 320, 1, 1, 1, 0, 0);
    C("branch3x3_1", in, 384, 1, 1, 1, 0, 0);
    C("branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
    C("branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
    C("branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0);
    C("branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
    C("branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
    C("branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
    C("branch_pool", in, 192, 1, 1, 1, 0, 0);
}
#undef C

static void inceptionv3(builder *b)
{
    int64_t h = 299, w = 299;
    add(b, "Conv2d_1a_3x3", 0, 3, 32, 3, 3, 2, 0, 0, h, w, &h, &w);  /* 149 */
    add(b, "Conv2d_2a_3x3", 0, 32, 32, 3, 3, 1, 0, 0, h, w, &h, &w); /* 147 */
    add(b, "Conv2d_2b_3x3", 0, 32, 64, 3, 3, 1, 1, 1, h, w, &h, &w); /* 147 */
    h = (h - 3) / 2 + 1;                                              /* maxpool: 73 */
    w = (w - 3) / 2 + 1;
    add(b, "Conv2d_3b_1x1", 0, 64, 80, 1, 1, 1, 0, 0, h, w, &h, &w);
    add(b, "Conv2d_4a_3x3", 0, 80, 192, 3, 3, 1, 0, 0, h, w, &h, &w); /* 71 */
    h = (h - 3) / 2 + 1;                                               /* maxpool: 35 */
    w = (w - 3) / 2 + 1;
    incA(b, "Mixed_5b", 192, 32, h, w);
    incA(b, "Mixed_5c", 256, 64, h, w);
    incA(b, "Mixed_5d", 288, 64, h, w);
    incB(b, "Mixed_6a", 288, h, w);
    h = (h - 3) / 2 + 1; /* 17 */
    w = (w - 3) / 2 + 1;
    incC(b, "Mixed_6b", 768, 128, h, w);
    incC(b, "Mixed_6c", 768, 160, h, w);
    incC(b, "Mixed_6d", 768, 160, h, w);
    incC(b, "Mixed_6e", 768, 192, h, w);
    incD(b, "Mixed_7a", 768, h, w);
    h = (h - 3) / 2 + 1; /* 8 */
    w = (w - 3) / 2 + 1;
    incE(b, "Mixed_7b", 1280, h, w);
    incE(b, "Mixed_7c", 2048, h, w);
    add(b, "fc", 1, 2048, 1000, 1, 1, 1, 0, 0, 1, 1, NULL, NULL);
}

int psq_net_build(const char *name, psq_net *net, ps_err *e)
{
    memset(net, 0, sizeof *net);
    builder b = {.net = net};
    if (!strcmp(name, "resnet50"))
        resnet50(&b);
    else if (!strcmp(name, "inceptionv3") || !strcmp(name, "inception_v3"))
        inceptionv3(&b);
    else
        return ps_errf(e, PS_EINPUT, "net: unknown \"%s\" (expected resnet50 or inceptionv3)",
                       name);
    if (b.err) {
        psq_net_free(net);
        return ps_errf(e, PS_ERUN, "net: out of memory");
    }
    snprintf(net->name, sizeof net->name, "%s", name);
    return 0;
}

void psq_net_free(psq_net *net)
{
    if (net)
        free(net->L);
    if (net)
        memset(net, 0, sizeof *net);
}

double psq_net_params(const psq_net *net)
{
    double s = net->other_params;
    for (int l = 0; l < net->n; l++)
        s += net->L[l].weights;
    return s;
}

void psq_net_gemm(const psq_net *net, int l, int64_t batch, int64_t *M, int64_t *N, int64_t *K)
{
    const psq_net_layer *L = &net->L[l];
    *M = batch * L->h_out * L->w_out;
    *N = L->cout;
    *K = L->cin * L->kh * L->kw;
}

static double gauss(sd_rng *r)
{
    double u1 = sd_rng_u01(r), u2 = sd_rng_u01(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double psq_net_gauss_delta(const psq_net *net, int l, int bits, double std, uint64_t seed)
{
    const psq_net_layer *L = &net->L[l];
    int64_t per = L->cin * L->kh * L->kw;
    int64_t rows = L->cout;
    int64_t want = (1 << 16) / per + 1;
    if (want < rows)
        rows = want;
    float *w = malloc((size_t)(rows * per) * sizeof *w);
    if (!w)
        return NAN;
    sd_rng r;
    sd_rng_seed(&r, seed ^ (uint64_t)(l + 1) * 0x9E3779B97F4A7C15ull);
    for (int64_t i = 0; i < rows * per; i++)
        w[i] = (float)(std * gauss(&r));
    psq_wspec s = {.bits = bits, .gran = PSQ_PER_CHANNEL, .scale_bytes = 4};
    double d = psq_weight_err2(w, (size_t)rows, (size_t)per, &s, NULL);
    free(w);
    return d * (double)L->cout / (double)rows;
}

typedef struct fx_layer {
    double tpp, d4, d8;
    char tie[PSQ_NAME_MAX];
} fx_layer;

static int load_fixture(const char *path, int n, fx_layer *out, ps_err *e)
{
    json_t *root = ps_json_load_file(path, e);
    if (!root)
        return PS_EINPUT;
    const json_t *layers = json_object_get(root, "layers");
    int rc = 0;
    if (!json_is_array(layers) || (int)json_array_size(layers) != n)
        rc = ps_errf(e, PS_EINPUT, "%s: layers: expected an array of %d layers", path, n);
    for (int i = 0; i < n && !rc; i++) {
        const json_t *o = json_array_get(layers, (size_t)i);
        char at[600];
        snprintf(at, sizeof at, "%s: $.layers[%d]", path, i);
        const json_t *d = json_object_get(o, "delta");
        rc = ps_json_get_num(o, at, "trace_per_param", 1, &out[i].tpp, e);
        if (!rc && !json_is_object(d))
            rc = ps_errf(e, PS_EINPUT, "%s.delta: expected an object", at);
        char at2[700];
        snprintf(at2, sizeof at2, "%s.delta", at);
        rc = rc ? rc : ps_json_get_num(d, at2, "4", 1, &out[i].d4, e);
        rc = rc ? rc : ps_json_get_num(d, at2, "8", 1, &out[i].d8, e);
        const char *tie = "";
        rc = rc ? rc : ps_json_get_str(o, at, "tie", 0, &tie, e);
        if (!rc)
            snprintf(out[i].tie, sizeof out[i].tie, "%s", tie);
    }
    json_decref(root);
    return rc;
}

int psq_net_problem(const psq_net *net, const char *source, const char *fixture, const int *bits,
                    int nb, const double *lat_s, psq_problem *p, ps_err *e)
{
    int hawq = !strcmp(source, "hawq");
    if (!hawq && strcmp(source, "proxy"))
        return ps_errf(e, PS_EINPUT, "sensitivity: unknown source \"%s\" (hawq or proxy)", source);
    if (hawq && strcmp(net->name, "resnet50"))
        return ps_errf(e, PS_EINPUT,
                       "sensitivity: source hawq has ResNet50 traces only (net is %s): use proxy",
                       net->name);
    if (nb < 1 || nb > PSQ_MAX_OPTIONS)
        return ps_errf(e, PS_EINPUT, "sensitivity: %d bit choices (1..%d)", nb, PSQ_MAX_OPTIONS);
    int has8 = 0;
    for (int k = 0; k < nb; k++) {
        if (bits[k] < PSQ_BITS_MIN || bits[k] > PSQ_BITS_MAX)
            return ps_errf(e, PS_EINPUT, "sensitivity: bits[%d] = %d outside %d..%d", k, bits[k],
                           PSQ_BITS_MIN, PSQ_BITS_MAX);
        has8 |= bits[k] == 8;
    }
    if (!has8)
        return ps_errf(e, PS_EINPUT, "sensitivity: the bit choices must include 8 (stem and "
                                     "classifier are fixed at 8 bits)");
    fx_layer *fx = NULL;
    if (hawq) {
        fx = calloc((size_t)net->n, sizeof *fx);
        if (!fx)
            return ps_errf(e, PS_ERUN, "out of memory");
        int rc = load_fixture(fixture, net->n - 2, fx + 1, e);
        if (rc) {
            free(fx);
            return rc;
        }
    }
    int rc = psq_problem_init(p, net->n, e);
    for (int l = 0; l < net->n && !rc; l++) {
        const psq_net_layer *L = &net->L[l];
        psq_layer *pl = &p->layers[l];
        snprintf(pl->name, sizeof pl->name, "%s", L->name);
        pl->params = L->weights;
        pl->fixed_bits = (l == 0 || l == net->n - 1) ? 8 : 0;
        double fan_in = (double)(L->cin * L->kh * L->kw);
        double std = sqrt(2.0 / fan_in), tpp = 1.0 / fan_in;
        double g4 = 0;
        if (hawq && !pl->fixed_bits) {
            tpp = fx[l].tpp;
            snprintf(pl->tie, sizeof pl->tie, "%s", fx[l].tie);
            g4 = psq_net_gauss_delta(net, l, 4, std, 1);
        }
        pl->n_opt = nb;
        for (int k = 0; k < nb; k++) {
            psq_option *o = &pl->opt[k];
            o->bits = bits[k];
            double d;
            if (hawq && !pl->fixed_bits) {
                if (bits[k] == 4)
                    d = fx[l].d4;
                else if (bits[k] == 8)
                    d = fx[l].d8;
                else
                    d = fx[l].d4 * psq_net_gauss_delta(net, l, bits[k], std, 1) / g4;
            } else {
                d = psq_net_gauss_delta(net, l, bits[k], std, 1);
            }
            if (!isfinite(d))
                rc = ps_errf(e, PS_ERUN, "sensitivity: layer %s: Δ not finite", L->name);
            o->omega = tpp * d;
            psq_wspec s = {.bits = bits[k], .gran = PSQ_PER_CHANNEL, .scale_bytes = 4};
            o->bytes = psq_weight_bytes((size_t)L->cout, (size_t)(L->cin * L->kh * L->kw), &s);
            o->latency_s = lat_s ? lat_s[l * nb + k] : 0;
        }
    }
    free(fx);
    if (!rc)
        rc = psq_problem_check(p, e);
    if (rc)
        psq_problem_free(p);
    return rc;
}
