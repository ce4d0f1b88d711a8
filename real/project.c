/* Projection onto the frozen generator: the down-sampling operator, the
 * projector network and its unsupervised training, per-image optimization,
 * the batch API of the study; see project.h.  Host-side arithmetic (losses,
 * D, Adam on z) is in double; the networks run in their dtype (F32, or F64
 * for the gradient checks). */
#include "real/project.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

#define PJ_FORMAT_VERSION 1
#define PJ_MAXPARAMS 8

#define RC(x)                                                                                     \
    do {                                                                                          \
        if (x)                                                                                    \
            return e && e->code ? e->code : PS_ERUN;                                              \
    } while (0)

/* ------------------------------------------------------------------ down-sampling */

const char *pj_down_kind_name(pj_down_kind k)
{
    switch (k) {
    case PJ_DOWN_NONE:
        return "none";
    case PJ_DOWN_AREA:
        return "area";
    case PJ_DOWN_BICUBIC:
        return "bicubic";
    }
    return "?";
}

int pj_down_kind_parse(const char *s)
{
    if (!s)
        return -1;
    for (int k = PJ_DOWN_NONE; k <= PJ_DOWN_BICUBIC; k++)
        if (!strcmp(s, pj_down_kind_name((pj_down_kind)k)))
            return k;
    return -1;
}

/* Keys' cubic convolution kernel, a = -0.5. */
static double keys(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2)
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0;
}

int pj_down_init(pj_down *d, pj_down_kind kind, int factor, ps_err *e)
{
    memset(d, 0, sizeof *d);
    if (kind == PJ_DOWN_NONE) {
        if (factor != 1)
            return ps_errf(e, PS_EINPUT, "pj_down: kind none needs factor 1 (got %d)", factor);
    } else if (kind != PJ_DOWN_AREA && kind != PJ_DOWN_BICUBIC)
        return ps_errf(e, PS_EINPUT, "pj_down: unknown kind %d", (int)kind);
    else if (factor != 2 && factor != 4)
        return ps_errf(e, PS_EINPUT, "pj_down: factor %d must be 2 (28 -> 14) or 4 (28 -> 7)",
                       factor);
    d->kind = kind;
    d->factor = factor;
    d->r = GAN_IMG / factor;
    const int r = d->r, f = factor;
    for (int i = 0; i < r; i++) {
        double *row = d->A + i * GAN_IMG;
        if (kind == PJ_DOWN_NONE)
            row[i] = 1;
        else if (kind == PJ_DOWN_AREA)
            for (int j = i * f; j < (i + 1) * f; j++)
                row[j] = 1.0 / f;
        else { /* PIL-style antialiased bicubic: kernel stretched by f, taps
                * inside the image only, renormalised */
            double center = (i + 0.5) * f, s = 0;
            for (int j = 0; j < GAN_IMG; j++) {
                double w = keys((j + 0.5 - center) / f);
                row[j] = w;
                s += w;
            }
            for (int j = 0; j < GAN_IMG; j++)
                row[j] /= s;
        }
    }
    return 0;
}

int pj_down_npix(const pj_down *d)
{
    return d->r * d->r;
}

/* y = A x A^T (x: 28 x 28, y: r x r), in double. */
static void down_one(const pj_down *d, const double *x, double *y)
{
    const int r = d->r, N = GAN_IMG;
    double t[GAN_IMG * GAN_IMG]; /* [28, r]: t = x A^T */
    for (int j = 0; j < N; j++)
        for (int k = 0; k < r; k++) {
            double s = 0;
            const double *ak = d->A + k * N;
            for (int l = 0; l < N; l++)
                s += x[j * N + l] * ak[l];
            t[j * r + k] = s;
        }
    for (int i = 0; i < r; i++)
        for (int k = 0; k < r; k++) {
            double s = 0;
            const double *ai = d->A + i * N;
            for (int j = 0; j < N; j++)
                s += ai[j] * t[j * r + k];
            y[i * r + k] = s;
        }
}

/* x = A^T y A. */
static void up_one(const pj_down *d, const double *y, double *x)
{
    const int r = d->r, N = GAN_IMG;
    double t[GAN_IMG * GAN_IMG]; /* [r, 28]: t = y A */
    for (int i = 0; i < r; i++)
        for (int l = 0; l < N; l++) {
            double s = 0;
            for (int k = 0; k < r; k++)
                s += y[i * r + k] * d->A[k * N + l];
            t[i * N + l] = s;
        }
    for (int j = 0; j < N; j++)
        for (int l = 0; l < N; l++) {
            double s = 0;
            for (int i = 0; i < r; i++)
                s += d->A[i * N + j] * t[i * N + l];
            x[j * N + l] = s;
        }
}

void pj_down_apply(const pj_down *d, const float *x, int64_t n, float *y)
{
    const int np = pj_down_npix(d);
    double xi[GAN_PIX], yi[GAN_PIX];
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < GAN_PIX; j++)
            xi[j] = x[i * GAN_PIX + j];
        down_one(d, xi, yi);
        for (int j = 0; j < np; j++)
            y[i * np + j] = (float)yi[j];
    }
}

void pj_down_adjoint(const pj_down *d, const float *y, int64_t n, float *x)
{
    const int np = pj_down_npix(d);
    double xi[GAN_PIX], yi[GAN_PIX];
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < np; j++)
            yi[j] = y[i * np + j];
        up_one(d, yi, xi);
        for (int j = 0; j < GAN_PIX; j++)
            x[i * GAN_PIX + j] = (float)xi[j];
    }
}

/* ------------------------------------------------------------------ config */

pj_config pj_config_default(const gan_config *g, int quick, uint64_t seed)
{
    pj_config c = {.zdim = g->zdim,
                   .down = PJ_DOWN_NONE,
                   .factor = 1,
                   .ch1 = 32,
                   .ch2 = 64,
                   .hidden = 256,
                   .lambda_z = 1,
                   .lambda_x = 1,
                   .lambda_real = 1,
                   .batch = 64,
                   .steps = 1500,
                   .lr = 1e-3,
                   .nreal = 0,
                   .seed = seed};
    if (quick) {
        c.ch1 = 16;
        c.ch2 = 32;
        c.hidden = 128;
        c.steps = 200;
        c.nreal = 10000;
    }
    return c;
}

pj_config pj_config_test(const gan_config *g, uint64_t seed)
{
    pj_config c = pj_config_default(g, 1, seed);
    c.ch1 = 8;
    c.ch2 = 16;
    c.hidden = 32;
    c.batch = 32;
    c.steps = 100;
    c.nreal = 1000;
    return c;
}

int pj_config_check(const pj_config *c, ps_err *e)
{
    if (c->zdim < 1)
        return ps_errf(e, PS_EINPUT, "projector: zdim %d must be >= 1", c->zdim);
    pj_down d;
    if (pj_down_init(&d, c->down, c->factor, e))
        return e ? e->code : PS_EINPUT;
    if (c->ch1 < 1 || c->ch2 < 1 || c->hidden < 0)
        return ps_errf(e, PS_EINPUT, "projector: ch1 %d / ch2 %d (>= 1), hidden %d (>= 0)",
                       c->ch1, c->ch2, c->hidden);
    if (!(c->lambda_z >= 0) || !(c->lambda_x >= 0) || !(c->lambda_real >= 0) ||
        c->lambda_z + c->lambda_x + c->lambda_real <= 0)
        return ps_errf(e, PS_EINPUT,
                       "projector: lambdas z %g x %g real %g must be >= 0, not all 0",
                       c->lambda_z, c->lambda_x, c->lambda_real);
    if (c->batch < 1 || c->steps < 0 || c->nreal < 0 || !(c->lr > 0))
        return ps_errf(e, PS_EINPUT,
                       "projector: batch %lld (>= 1), steps %lld, nreal %lld (>= 0), lr %g (> 0)",
                       (long long)c->batch, (long long)c->steps, (long long)c->nreal, c->lr);
    return 0;
}

uint64_t pj_config_hash(const pj_config *c, uint64_t gan_hash)
{
    uint64_t h = PS_FNV1A_OFFSET;
    h = ps_fnv1a_u64(h, PJ_FORMAT_VERSION);
    h = ps_fnv1a_u64(h, gan_hash);
    h = ps_fnv1a_u64(h, (uint64_t)c->zdim);
    h = ps_fnv1a_u64(h, (uint64_t)c->down);
    h = ps_fnv1a_u64(h, (uint64_t)c->factor);
    h = ps_fnv1a_u64(h, (uint64_t)c->ch1);
    h = ps_fnv1a_u64(h, (uint64_t)c->ch2);
    h = ps_fnv1a_u64(h, (uint64_t)c->hidden);
    h = ps_fnv1a_u64(h, ps_double_bits(c->lambda_z));
    h = ps_fnv1a_u64(h, ps_double_bits(c->lambda_x));
    h = ps_fnv1a_u64(h, ps_double_bits(c->lambda_real));
    h = ps_fnv1a_u64(h, (uint64_t)c->batch);
    h = ps_fnv1a_u64(h, (uint64_t)c->steps);
    h = ps_fnv1a_u64(h, ps_double_bits(c->lr));
    h = ps_fnv1a_u64(h, (uint64_t)c->nreal);
    return ps_fnv1a_u64(h, c->seed);
}

json_t *pj_config_to_json(const pj_config *c)
{
    return json_pack("{s:i, s:s, s:i, s:[i,i], s:i, s:f, s:f, s:f, s:I, s:I, s:f, s:I, s:I}",
                     "zdim", c->zdim, "down", pj_down_kind_name(c->down), "factor", c->factor,
                     "ch", c->ch1, c->ch2, "hidden", c->hidden, "lambda_z", c->lambda_z,
                     "lambda_x", c->lambda_x, "lambda_real", c->lambda_real, "batch",
                     (json_int_t)c->batch, "steps", (json_int_t)c->steps, "lr", c->lr, "nreal",
                     (json_int_t)c->nreal, "seed", (json_int_t)c->seed);
}

/* ------------------------------------------------------------------ tensors <-> host doubles */

/* Upload / download a CPU or device tensor from / to host doubles. */
static int put_d(rt_tensor *t, const double *src, ps_err *e)
{
    if (t->dtype == RT_F64)
        return rt_tensor_from_host(t, src, e);
    float *h = malloc(sizeof(float) * (size_t)t->numel);
    if (!h)
        return ps_errf(e, PS_ERUN, "projector: out of memory");
    for (int64_t i = 0; i < t->numel; i++)
        h[i] = (float)src[i];
    int rc = rt_tensor_from_host(t, h, e);
    free(h);
    return rc;
}

static int get_d(const rt_tensor *t, double *dst, ps_err *e)
{
    if (t->dtype == RT_F64)
        return rt_tensor_to_host(t, dst, e);
    float *h = malloc(sizeof(float) * (size_t)t->numel);
    if (!h)
        return ps_errf(e, PS_ERUN, "projector: out of memory");
    int rc = rt_tensor_to_host(t, h, e);
    for (int64_t i = 0; !rc && i < t->numel; i++)
        dst[i] = h[i];
    free(h);
    return rc;
}

/* ------------------------------------------------------------------ the projector */

static int conv_out(int h)
{
    return (h + 2 - 3) / 2 + 1;
}

int pj_net_init(pj_net *p, const pj_config *c, rt_dev *d, rt_dtype dt, int64_t max_batch,
                uint64_t seed, ps_err *e)
{
    memset(p, 0, sizeof *p);
    if (pj_config_check(c, e))
        return e ? e->code : PS_EINPUT;
    if (max_batch < 1)
        return ps_errf(e, PS_EINPUT, "pj_net_init: max_batch %lld must be >= 1",
                       (long long)max_batch);
    p->cfg = *c;
    if (pj_down_init(&p->down, c->down, c->factor, e))
        return e ? e->code : PS_EINPUT;
    p->dev = d;
    p->dt = dt;
    p->max_batch = max_batch;
    p->r = p->down.r;
    p->h1 = conv_out(p->r);
    p->h2 = conv_out(p->h1);
    p->flat = (int64_t)c->ch2 * p->h2 * p->h2;
    p->params = calloc(PJ_MAXPARAMS, sizeof(rt_param));
    if (!p->params)
        return ps_errf(e, PS_ERUN, "projector: out of memory");
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    const int64_t B = max_batch, C1 = c->ch1, C2 = c->ch2, H = c->hidden, Z = c->zdim;
    const int64_t o1 = H ? H : Z;
    int64_t s_c1[4] = {C1, 1, 3, 3}, s_b1[1] = {C1}, s_c2[4] = {C2, C1, 3, 3}, s_b2[1] = {C2},
            s_f1[2] = {o1, p->flat}, s_fb1[1] = {o1}, s_f2[2] = {Z, H > 0 ? H : 1},
            s_fb2[1] = {Z};
    struct {
        rt_param **slot;
        const char *name;
        int ndim;
        int64_t *shape;
        int64_t fan_in;
    } spec[] = {{&p->c1_w, "P.c1.w", 4, s_c1, 9},
                {&p->c1_b, "P.c1.b", 1, s_b1, 9},
                {&p->c2_w, "P.c2.w", 4, s_c2, 9 * C1},
                {&p->c2_b, "P.c2.b", 1, s_b2, 9 * C1},
                {&p->f1_w, "P.f1.w", 2, s_f1, p->flat},
                {&p->f1_b, "P.f1.b", 1, s_fb1, p->flat},
                {&p->f2_w, "P.f2.w", 2, s_f2, H},
                {&p->f2_b, "P.f2.b", 1, s_fb2, H}};
    int nspec = H ? 8 : 6;
    for (int i = 0; i < nspec; i++) {
        rt_param *q = &p->params[p->nparams];
        if (rt_param_init(q, spec[i].name, d, dt, spec[i].ndim, spec[i].shape, e))
            goto fail;
        p->nparams++;
        *spec[i].slot = q;
        if (rt_init_fan_in(&q->w, &rng, spec[i].fan_in, e))
            goto fail;
    }
    if (rt_tensor_new4(&p->x1, d, dt, B, C1, p->h1, p->h1, e) ||
        rt_tensor_new4(&p->a1, d, dt, B, C1, p->h1, p->h1, e) ||
        rt_tensor_new4(&p->x2, d, dt, B, C2, p->h2, p->h2, e) ||
        rt_tensor_new4(&p->a2, d, dt, B, C2, p->h2, p->h2, e) ||
        (H && (rt_tensor_new2(&p->hh, d, dt, B, H, e) || rt_tensor_new2(&p->ha, d, dt, B, H, e) ||
               rt_tensor_new2(&p->dha, d, dt, B, H, e))) ||
        rt_tensor_new2(&p->z, d, dt, B, Z, e) ||
        rt_tensor_new4(&p->da1, d, dt, B, C1, p->h1, p->h1, e) ||
        rt_tensor_new4(&p->da2, d, dt, B, C2, p->h2, p->h2, e) ||
        rt_tensor_new2(&p->dz, d, dt, B, Z, e))
        goto fail;
    return 0;
fail:;
    int code = e && e->code ? e->code : PS_ERUN;
    pj_net_free(p);
    return code;
}

void pj_net_free(pj_net *p)
{
    if (!p)
        return;
    rt_tensor *ts[] = {&p->x1, &p->a1, &p->x2, &p->a2, &p->hh, &p->ha,
                       &p->z,  &p->da1, &p->da2, &p->dha, &p->dz};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        rt_tensor_free(ts[i]);
    if (p->params)
        for (int i = 0; i < p->nparams; i++)
            rt_param_free(&p->params[i]);
    free(p->params);
    memset(p, 0, sizeof *p);
}

int pj_net_forward(pj_net *p, const rt_tensor *x, ps_err *e)
{
    int64_t n = x->shape[0];
    if (x->ndim != 4 || n < 1 || n > p->max_batch || x->shape[1] != 1 || x->shape[2] != p->r ||
        x->shape[3] != p->r) {
        char buf[96];
        return ps_errf(e, PS_EINPUT, "pj_net_forward: x is %s, expected [n <= %lld, 1, %d, %d]",
                       rt_tensor_desc(x, buf, sizeof buf), (long long)p->max_batch, p->r, p->r);
    }
    p->cur_n = n;
    rt_conv cv = {.stride = 2, .pad = 1};
    rt_tensor x1 = rt_view_rows(&p->x1, n), a1 = rt_view_rows(&p->a1, n),
              x2 = rt_view_rows(&p->x2, n), a2 = rt_view_rows(&p->a2, n),
              z = rt_view_rows(&p->z, n), flat = rt_view2(&a2, n, p->flat);
    RC(rt_conv2d_fwd(&cv, x, &p->c1_w->w, &p->c1_b->w, &x1, e));
    RC(rt_act_fwd(RT_LEAKY_RELU, 0.2, &x1, &a1, e));
    RC(rt_conv2d_fwd(&cv, &a1, &p->c2_w->w, &p->c2_b->w, &x2, e));
    RC(rt_act_fwd(RT_LEAKY_RELU, 0.2, &x2, &a2, e));
    if (p->cfg.hidden) {
        rt_tensor hh = rt_view_rows(&p->hh, n), ha = rt_view_rows(&p->ha, n);
        RC(rt_linear_fwd(&flat, &p->f1_w->w, &p->f1_b->w, &hh, e));
        RC(rt_act_fwd(RT_LEAKY_RELU, 0.2, &hh, &ha, e));
        RC(rt_linear_fwd(&ha, &p->f2_w->w, &p->f2_b->w, &z, e));
    } else
        RC(rt_linear_fwd(&flat, &p->f1_w->w, &p->f1_b->w, &z, e));
    return 0;
}

int pj_net_output(const pj_net *p, rt_tensor *view, ps_err *e)
{
    if (p->cur_n < 1)
        return ps_errf(e, PS_EINPUT, "pj_net_output: no forward yet");
    return rt_tensor_rows(view, &p->z, 0, p->cur_n, e);
}

int pj_net_backward(pj_net *p, const rt_tensor *x, const rt_tensor *dz, ps_err *e)
{
    int64_t n = p->cur_n;
    if (n < 1 || x->ndim != 4 || x->shape[0] != n || dz->ndim != 2 || dz->shape[0] != n)
        return ps_errf(e, PS_EINPUT,
                       "pj_net_backward: x and dz must match the last forward (%lld rows)",
                       (long long)n);
    rt_conv cv = {.stride = 2, .pad = 1};
    rt_tensor x1 = rt_view_rows(&p->x1, n), a1 = rt_view_rows(&p->a1, n),
              x2 = rt_view_rows(&p->x2, n), a2 = rt_view_rows(&p->a2, n),
              da1 = rt_view_rows(&p->da1, n), da2 = rt_view_rows(&p->da2, n),
              flat = rt_view2(&a2, n, p->flat), dflat = rt_view2(&da2, n, p->flat);
    if (p->cfg.hidden) {
        rt_tensor hh = rt_view_rows(&p->hh, n), ha = rt_view_rows(&p->ha, n),
                  dha = rt_view_rows(&p->dha, n);
        RC(rt_linear_bwd(&ha, &p->f2_w->w, dz, &dha, &p->f2_w->g, &p->f2_b->g, e));
        RC(rt_act_bwd(RT_LEAKY_RELU, 0.2, &hh, &ha, &dha, &dha, e));
        RC(rt_linear_bwd(&flat, &p->f1_w->w, &dha, &dflat, &p->f1_w->g, &p->f1_b->g, e));
    } else
        RC(rt_linear_bwd(&flat, &p->f1_w->w, dz, &dflat, &p->f1_w->g, &p->f1_b->g, e));
    RC(rt_act_bwd(RT_LEAKY_RELU, 0.2, &x2, &a2, &da2, &da2, e));
    RC(rt_conv2d_bwd(&cv, &a1, &p->c2_w->w, &da2, &da1, &p->c2_w->g, &p->c2_b->g, e));
    RC(rt_act_bwd(RT_LEAKY_RELU, 0.2, &x1, &a1, &da1, &da1, e));
    RC(rt_conv2d_bwd(&cv, x, &p->c1_w->w, &da1, NULL, &p->c1_w->g, &p->c1_b->g, e));
    return 0;
}

double pj_net_flops_fwd(const pj_config *c, int64_t batch)
{
    pj_down d;
    if (pj_down_init(&d, c->down, c->factor, NULL))
        return 0;
    int h1 = conv_out(d.r), h2 = conv_out(h1);
    double flat = (double)c->ch2 * h2 * h2;
    double f = (double)c->ch1 * 9 * h1 * h1 + (double)c->ch2 * c->ch1 * 9 * h2 * h2;
    f += c->hidden ? flat * c->hidden + (double)c->hidden * c->zdim : flat * c->zdim;
    return 2.0 * (double)batch * f;
}

/* ------------------------------------------------------------------ loss and gradient */

/* Work space of one loss evaluation (host doubles, device tensors). */
typedef struct lg_ws {
    rt_tensor xin, zt, dz, dx; /* [n,1,r,r], [n,zdim] x2, [n,1,28,28] */
    double *x, *y, *zh, *yh, *g, *dzl, *dzp, *tmp;
} lg_ws;

static void lg_free(lg_ws *w)
{
    rt_tensor_free(&w->xin);
    rt_tensor_free(&w->zt);
    rt_tensor_free(&w->dz);
    rt_tensor_free(&w->dx);
    free(w->x);
    free(w->y);
    free(w->zh);
    free(w->yh);
    free(w->g);
    free(w->dzl);
    free(w->dzp);
    free(w->tmp);
}

static int lg_alloc(lg_ws *w, const pj_net *p, int64_t n, ps_err *e)
{
    memset(w, 0, sizeof *w);
    const int64_t Z = p->cfg.zdim, np = pj_down_npix(&p->down);
    if (rt_tensor_new4(&w->xin, p->dev, p->dt, n, 1, p->r, p->r, e) ||
        rt_tensor_new2(&w->zt, p->dev, p->dt, n, Z, e) ||
        rt_tensor_new2(&w->dz, p->dev, p->dt, n, Z, e) ||
        rt_tensor_new4(&w->dx, p->dev, p->dt, n, 1, 28, 28, e))
        return e && e->code ? e->code : PS_ERUN;
    w->x = malloc(sizeof(double) * (size_t)(n * GAN_PIX));
    w->y = malloc(sizeof(double) * (size_t)(n * np));
    w->zh = malloc(sizeof(double) * (size_t)(n * Z));
    w->yh = malloc(sizeof(double) * (size_t)(n * np));
    w->g = malloc(sizeof(double) * (size_t)(n * GAN_PIX));
    w->dzl = malloc(sizeof(double) * (size_t)(n * Z));
    w->dzp = malloc(sizeof(double) * (size_t)(n * Z));
    w->tmp = malloc(sizeof(double) * (size_t)(n * GAN_PIX));
    if (!w->x || !w->y || !w->zh || !w->yh || !w->g || !w->dzl || !w->dzp || !w->tmp)
        return ps_errf(e, PS_ERUN, "projector: out of memory");
    return 0;
}

static void down_many(const pj_down *d, const double *x, int64_t n, double *y)
{
    const int np = pj_down_npix(d);
    for (int64_t i = 0; i < n; i++) {
        if (d->kind == PJ_DOWN_NONE)
            memcpy(y + i * np, x + i * GAN_PIX, sizeof(double) * GAN_PIX);
        else
            down_one(d, x + i * GAN_PIX, y + i * np);
    }
}

static void up_many(const pj_down *d, const double *y, int64_t n, double *x)
{
    const int np = pj_down_npix(d);
    for (int64_t i = 0; i < n; i++) {
        if (d->kind == PJ_DOWN_NONE)
            memcpy(x + i * GAN_PIX, y + i * np, sizeof(double) * GAN_PIX);
        else
            up_one(d, y + i * np, x + i * GAN_PIX);
    }
}

/* x[n*784] = G(z) (frozen), z given as the tensor zt (n rows). */
static int gen_host(gan_gen *g, const rt_tensor *zt, double *x, ps_err *e)
{
    rt_tensor out;
    RC(gan_gen_forward(g, zt, 0, e));
    RC(gan_gen_output(g, &out, e));
    return get_d(&out, x, e);
}

/* Pixel term: given y (targets at D's resolution) and zt (P's output, on the
 * device), G(zt) -> D -> loss (mean over images of MSE); the gradient
 * w.r.t. z times lambda into dzp (host).  Uses w->x, w->yh, w->g, w->tmp. */
static int pixel_term(gan_gen *g, const pj_down *d, lg_ws *w, const rt_tensor *zt, int64_t n,
                      double lambda, double *loss, ps_err *e)
{
    const int np = pj_down_npix(d);
    RC(gen_host(g, zt, w->x, e));
    down_many(d, w->x, n, w->yh);
    double s = 0;
    const double sc = 2.0 * lambda / ((double)np * (double)n);
    for (int64_t i = 0; i < n * np; i++) {
        double r = w->yh[i] - w->y[i];
        s += r * r;
        w->yh[i] = sc * r; /* now dL/dyhat */
    }
    *loss = s / ((double)np * (double)n);
    up_many(d, w->yh, n, w->g);
    rt_tensor dx = rt_view_rows(&w->dx, n), dz = rt_view_rows(&w->dz, n);
    RC(put_d(&dx, w->g, e));
    RC(gan_gen_backward_z(g, zt, &dx, &dz, e));
    const int64_t Z = g->cfg.zdim;
    (void)Z;
    return get_d(&dz, w->dzp, e);
}

/* P forward on y (host, [n, np]) -> zh (host) and zt (device copy). */
static int proj_host(pj_net *p, lg_ws *w, int64_t n, ps_err *e)
{
    rt_tensor xin = rt_view_rows(&w->xin, n), zo, zt = rt_view_rows(&w->zt, n);
    RC(put_d(&xin, w->y, e));
    RC(pj_net_forward(p, &xin, e));
    RC(pj_net_output(p, &zo, e));
    RC(get_d(&zo, w->zh, e));
    return rt_tensor_copy(&zt, &zo, e);
}

int pj_loss_grad(pj_net *p, gan_gen *g, const float *zb, int64_t n, const float *xreal,
                 int64_t nr, double *loss, double *lz, double *lx, double *lr, ps_err *e)
{
    const pj_config *c = &p->cfg;
    const int64_t Z = c->zdim;
    if (g->cfg.zdim != Z)
        return ps_errf(e, PS_EINPUT, "pj_loss_grad: generator zdim %d, projector zdim %lld",
                       g->cfg.zdim, (long long)Z);
    if (g->dt != p->dt)
        return ps_errf(e, PS_EINPUT, "pj_loss_grad: generator and projector dtypes differ");
    int64_t nmax = n > nr ? n : nr;
    if (n < 1 || nr < 0 || nmax > p->max_batch || nmax > g->max_batch)
        return ps_errf(e, PS_EINPUT,
                       "pj_loss_grad: batch %lld / real %lld exceeds max_batch (P %lld, G %lld)",
                       (long long)n, (long long)nr, (long long)p->max_batch,
                       (long long)g->max_batch);
    lg_ws w;
    int rc = lg_alloc(&w, p, nmax, e);
    double vz = 0, vx = 0, vr = 0;
    if (rc)
        goto out;
    /* synthetic pairs: z -> G(z) -> D -> P -> zh */
    {
        rt_tensor zt = rt_view_rows(&w.zt, n);
        for (int64_t i = 0; i < n * Z; i++)
            w.dzl[i] = zb[i];
        if ((rc = put_d(&zt, w.dzl, e)) || (rc = gen_host(g, &zt, w.x, e)))
            goto out;
        down_many(&p->down, w.x, n, w.y);
        if ((rc = proj_host(p, &w, n, e)))
            goto out;
        const double sc = 2.0 * c->lambda_z / ((double)Z * (double)n);
        double s = 0;
        for (int64_t i = 0; i < n * Z; i++) {
            double r = w.zh[i] - zb[i];
            s += r * r;
            w.dzl[i] = sc * r;
        }
        vz = s / ((double)Z * (double)n);
        if (c->lambda_x > 0) {
            zt = rt_view_rows(&w.zt, n);
            if ((rc = pixel_term(g, &p->down, &w, &zt, n, c->lambda_x, &vx, e)))
                goto out;
            for (int64_t i = 0; i < n * Z; i++)
                w.dzl[i] += w.dzp[i];
        } else { /* still report the pixel loss */
            double s2 = 0;
            const int np = pj_down_npix(&p->down);
            zt = rt_view_rows(&w.zt, n);
            if ((rc = gen_host(g, &zt, w.x, e)))
                goto out;
            down_many(&p->down, w.x, n, w.yh);
            for (int64_t i = 0; i < n * np; i++)
                s2 += (w.yh[i] - w.y[i]) * (w.yh[i] - w.y[i]);
            vx = s2 / ((double)np * (double)n);
        }
        rt_tensor dz = rt_view_rows(&w.dz, n), xin = rt_view_rows(&w.xin, n);
        /* P's activations are still those of proj_host (G ran since, P not) */
        if ((rc = put_d(&dz, w.dzl, e)) || (rc = pj_net_backward(p, &xin, &dz, e)))
            goto out;
    }
    /* real images (no labels): D(x) -> P -> G -> D vs D(x) */
    if (xreal && nr > 0 && c->lambda_real > 0) {
        for (int64_t i = 0; i < nr * GAN_PIX; i++)
            w.tmp[i] = xreal[i];
        down_many(&p->down, w.tmp, nr, w.y);
        if ((rc = proj_host(p, &w, nr, e)))
            goto out;
        rt_tensor zt = rt_view_rows(&w.zt, nr);
        if ((rc = pixel_term(g, &p->down, &w, &zt, nr, c->lambda_real, &vr, e)))
            goto out;
        rt_tensor dz = rt_view_rows(&w.dz, nr), xin = rt_view_rows(&w.xin, nr);
        if ((rc = put_d(&dz, w.dzp, e)) || (rc = pj_net_backward(p, &xin, &dz, e)))
            goto out;
    }
    if (loss)
        *loss = c->lambda_z * vz + c->lambda_x * vx + c->lambda_real * vr;
    if (lz)
        *lz = vz;
    if (lx)
        *lx = vx;
    if (lr)
        *lr = vr;
out:
    lg_free(&w);
    return rc;
}

/* ------------------------------------------------------------------ batch API */

int pj_project(pj_net *p, const float *x_lr, int64_t n, float *z, double *seconds, ps_err *e)
{
    const int64_t B = p->max_batch, np = (int64_t)p->r * p->r, Z = p->cfg.zdim;
    if (p->dt != RT_F32)
        return ps_errf(e, PS_EINPUT, "pj_project: the projector must be f32");
    double t0 = ps_now_s();
    rt_tensor xt = {0};
    int rc = rt_tensor_new4(&xt, p->dev, RT_F32, B, 1, p->r, p->r, e);
    for (int64_t i = 0; i < n && !rc; i += B) {
        int64_t b = n - i < B ? n - i : B;
        rt_tensor xv = rt_view_rows(&xt, b), zo;
        rc = rt_tensor_from_host(&xv, x_lr + i * np, e) || pj_net_forward(p, &xv, e) ||
             pj_net_output(p, &zo, e) || rt_tensor_to_host(&zo, z + i * Z, e);
    }
    rt_tensor_free(&xt);
    if (seconds)
        *seconds = ps_now_s() - t0;
    return rc ? (e && e->code ? e->code : PS_ERUN) : 0;
}

int pj_reconstruct(pj_net *p, gan_gen *g, const float *x_lr, int64_t n, float *z_out,
                   float *x_out, double *seconds, ps_err *e)
{
    if (g->cfg.zdim != p->cfg.zdim)
        return ps_errf(e, PS_EINPUT, "pj_reconstruct: generator zdim %d, projector zdim %d",
                       g->cfg.zdim, p->cfg.zdim);
    float *z = z_out ? z_out : malloc(sizeof(float) * (size_t)(n * p->cfg.zdim));
    if (!z)
        return ps_errf(e, PS_ERUN, "pj_reconstruct: out of memory");
    double t0 = ps_now_s();
    int rc = pj_project(p, x_lr, n, z, NULL, e);
    if (!rc)
        rc = gan_generate(g, z, n, x_out, e);
    if (seconds)
        *seconds = ps_now_s() - t0;
    if (!z_out)
        free(z);
    return rc;
}

int pj_heldout_latent_mse(pj_net *p, gan_gen *g, int64_t n, uint64_t seed, double *mse,
                          ps_err *e)
{
    const int Z = p->cfg.zdim, np = pj_down_npix(&p->down);
    float *z = malloc(sizeof(float) * (size_t)(n * Z)),
          *zh = malloc(sizeof(float) * (size_t)(n * Z)),
          *x = malloc(sizeof(float) * (size_t)(n * GAN_PIX)),
          *y = malloc(sizeof(float) * (size_t)(n * np));
    int rc = 0;
    if (!z || !zh || !x || !y)
        rc = ps_errf(e, PS_ERUN, "pj_heldout_latent_mse: out of memory");
    if (!rc) {
        rt_rng rng;
        rt_rng_seed(&rng, seed);
        gan_sample_z(&rng, n, Z, z);
        rc = gan_generate(g, z, n, x, e);
    }
    if (!rc) {
        pj_down_apply(&p->down, x, n, y);
        rc = pj_project(p, y, n, zh, NULL, e);
    }
    if (!rc)
        *mse = pj_mse(zh, z, n, Z, NULL);
    free(z);
    free(zh);
    free(x);
    free(y);
    return rc;
}

double pj_mse(const float *a, const float *b, int64_t n, int npix, double *out)
{
    double tot = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < npix; j++) {
            double r = (double)a[i * npix + j] - b[i * npix + j];
            s += r * r;
        }
        s /= npix;
        if (out)
            out[i] = s;
        tot += s;
    }
    return n ? tot / (double)n : 0;
}

/* ------------------------------------------------------------------ per-image optimization */

pj_opt_opts pj_opt_opts_default(void)
{
    pj_opt_opts o = {.iters = 200,
                     .lr = 0.05,
                     .beta1 = 0.9,
                     .beta2 = 0.999,
                     .init = 0,
                     .restarts = 1,
                     .seed = 1,
                     .batch = 64};
    return o;
}

/* One run on a chunk of b images (targets in w->y): Adam on z from z0 for
 * o->iters steps; zf the final z, lk[(K+1) * b] the per-image loss before
 * step k (k = K: final), tk[K+1] the seconds since the start at that point. */
static int opt_chunk(gan_gen *g, const pj_down *d, lg_ws *w, int64_t b, const double *z0,
                     const pj_opt_opts *o, double *zf, double *lk, double *tk, ps_err *e)
{
    const int64_t Z = g->cfg.zdim, np = pj_down_npix(d), K = o->iters;
    double *m = calloc((size_t)(b * Z), sizeof(double)),
           *v = calloc((size_t)(b * Z), sizeof(double));
    if (!m || !v) {
        free(m);
        free(v);
        return ps_errf(e, PS_ERUN, "pj_optimize: out of memory");
    }
    memcpy(zf, z0, sizeof(double) * (size_t)(b * Z));
    rt_tensor zt = rt_view_rows(&w->zt, b), dx = rt_view_rows(&w->dx, b),
              dz = rt_view_rows(&w->dz, b);
    int rc = 0;
    double t0 = ps_now_s();
    for (int64_t k = 0; k <= K && !rc; k++) {
        /* the loss at the current z (and its gradient unless k == K) */
        if ((rc = put_d(&zt, zf, e)) || (rc = gen_host(g, &zt, w->x, e)))
            break;
        down_many(d, w->x, b, w->yh);
        for (int64_t i = 0; i < b; i++) {
            double li = 0;
            for (int64_t j = 0; j < np; j++) {
                double r = w->yh[i * np + j] - w->y[i * np + j];
                li += r * r;
                w->yh[i * np + j] = 2.0 * r / (double)np; /* per-image loss's gradient */
            }
            lk[k * b + i] = li / (double)np;
        }
        tk[k] = ps_now_s() - t0;
        if (k == K)
            break;
        up_many(d, w->yh, b, w->g);
        if ((rc = put_d(&dx, w->g, e)) || (rc = gan_gen_backward_z(g, &zt, &dx, &dz, e)) ||
            (rc = get_d(&dz, w->dzp, e)))
            break;
        const double b1 = o->beta1, b2 = o->beta2, c1 = 1 - pow(b1, (double)(k + 1)),
                     c2 = 1 - pow(b2, (double)(k + 1));
        for (int64_t i = 0; i < b * Z; i++) {
            double gi = w->dzp[i];
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            zf[i] -= o->lr * (m[i] / c1) / (sqrt(v[i] / c2) + 1e-8);
        }
    }
    free(m);
    free(v);
    return rc;
}

int pj_optimize(gan_gen *g, const pj_down *d, const float *y, int64_t n, const float *z_init,
                const pj_opt_opts *o, float *z_out, double *loss_out, pj_opt_result *res,
                ps_err *e)
{
    pj_down ident;
    if (!d) {
        pj_down_init(&ident, PJ_DOWN_NONE, 1, NULL);
        d = &ident;
    }
    if (n < 1 || o->iters < 0 || o->restarts < 1 || o->batch < 1 || !(o->lr > 0) ||
        o->init < 0 || o->init > 2)
        return ps_errf(e, PS_EINPUT,
                       "pj_optimize: n %lld (>= 1), iters %lld (>= 0), restarts %d (>= 1), "
                       "batch %lld (>= 1), lr %g (> 0), init %d (0, 1, 2)",
                       (long long)n, (long long)o->iters, o->restarts, (long long)o->batch, o->lr,
                       o->init);
    if (o->init == 2 && !z_init)
        return ps_errf(e, PS_EINPUT, "pj_optimize: init 2 needs z_init");
    const int R = o->init == 1 ? o->restarts : 1;
    const int64_t Z = g->cfg.zdim, np = pj_down_npix(d), K = o->iters;
    const int64_t B = o->batch < g->max_batch ? o->batch : g->max_batch;
    lg_ws w; /* only z / dz / dx and the host arrays x, y, yh, g, dzp */
    memset(&w, 0, sizeof w);
    int rc = 0;
    double *z0 = malloc(sizeof(double) * (size_t)(B * Z)),
           *zf = malloc(sizeof(double) * (size_t)(B * Z)),
           *lk = malloc(sizeof(double) * (size_t)((K + 1) * B)),
           *lbest = malloc(sizeof(double) * (size_t)((K + 1) * B)),
           *tk = malloc(sizeof(double) * (size_t)(K + 1)),
           *csum = calloc((size_t)(K + 1), sizeof(double)),
           *ct = calloc((size_t)(K + 1), sizeof(double));
    if (rt_tensor_new2(&w.zt, g->dev, g->dt, B, Z, e) ||
        rt_tensor_new2(&w.dz, g->dev, g->dt, B, Z, e) ||
        rt_tensor_new4(&w.dx, g->dev, g->dt, B, 1, 28, 28, e)) {
        rc = e && e->code ? e->code : PS_ERUN;
        goto out;
    }
    w.x = malloc(sizeof(double) * (size_t)(B * GAN_PIX));
    w.y = malloc(sizeof(double) * (size_t)(B * np));
    w.yh = malloc(sizeof(double) * (size_t)(B * np));
    w.g = malloc(sizeof(double) * (size_t)(B * GAN_PIX));
    w.dzp = malloc(sizeof(double) * (size_t)(B * Z));
    if (!z0 || !zf || !lk || !lbest || !tk || !csum || !ct || !w.x || !w.y || !w.yh || !w.g ||
        !w.dzp) {
        rc = ps_errf(e, PS_ERUN, "pj_optimize: out of memory");
        goto out;
    }
    rt_rng rng;
    rt_rng_seed(&rng, o->seed);
    double t_all = ps_now_s(), tot = 0;
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        const int64_t b = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < b * np; i++)
            w.y[i] = y[i0 * np + i];
        for (int64_t i = 0; i < (K + 1) * b; i++)
            lbest[i] = INFINITY;
        /* restarts run one after the other; at k steps the result is the
         * best of the R runs at k steps, its cost the R runs' time */
        for (int r = 0; r < R; r++) {
            for (int64_t i = 0; i < b * Z; i++)
                z0[i] = o->init == 0   ? 0.0
                        : o->init == 1 ? rt_rng_normal(&rng)
                                       : (double)z_init[i0 * Z + i];
            if ((rc = opt_chunk(g, d, &w, b, z0, o, zf, lk, tk, e)))
                goto out;
            for (int64_t k = 0; k <= K; k++)
                ct[k] += tk[k];
            for (int64_t i = 0; i < b; i++) {
                if (lk[K * b + i] < lbest[K * b + i])
                    for (int64_t j = 0; j < Z; j++)
                        z_out[(i0 + i) * Z + j] = (float)zf[i * Z + j];
                for (int64_t k = 0; k <= K; k++)
                    if (lk[k * b + i] < lbest[k * b + i])
                        lbest[k * b + i] = lk[k * b + i];
            }
        }
        for (int64_t k = 0; k <= K; k++)
            for (int64_t i = 0; i < b; i++)
                csum[k] += lbest[k * b + i];
        for (int64_t i = 0; i < b; i++) {
            tot += lbest[K * b + i];
            if (loss_out)
                loss_out[i0 + i] = lbest[K * b + i];
        }
    }
    if (res) {
        res->seconds = ps_now_s() - t_all;
        res->time_per_image_s = res->seconds / (double)n;
        res->final_loss = tot / (double)n;
        for (int64_t k = 0; k <= K; k++) {
            if (res->curve)
                res->curve[k] = csum[k] / (double)n;
            if (res->curve_s)
                res->curve_s[k] = ct[k];
        }
    }
out:
    free(z0);
    free(zf);
    free(lk);
    free(lbest);
    free(tk);
    free(csum);
    free(ct);
    lg_free(&w);
    return rc;
}

/* ------------------------------------------------------------------ training and cache */

int pj_train(const pj_config *cfg, gan_gen *g, const fmnist_set *train, int verbose,
             pj_model *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (pj_config_check(cfg, e))
        return e ? e->code : PS_EINPUT;
    if (g->cfg.zdim != cfg->zdim)
        return ps_errf(e, PS_EINPUT, "pj_train: generator zdim %d, projector zdim %d",
                       g->cfg.zdim, cfg->zdim);
    if (g->max_batch < cfg->batch)
        return ps_errf(e, PS_EINPUT, "pj_train: generator max_batch %lld < batch %lld",
                       (long long)g->max_batch, (long long)cfg->batch);
    const int use_real = cfg->lambda_real > 0;
    if (use_real && (!train || train->n < 1 || train->rows != 28 || train->cols != 28))
        return ps_errf(e, PS_EINPUT, "pj_train: lambda_real > 0 needs 28x28 training images");
    const int64_t B = cfg->batch, MB = B > 256 ? B : 256, Z = cfg->zdim;
    const int64_t NR = !use_real ? 0
                       : cfg->nreal && cfg->nreal < train->n ? cfg->nreal
                                                             : train->n;
    if (pj_net_init(&out->net, cfg, g->dev, g->dt, MB, cfg->seed * 2 + 11, e))
        return e && e->code ? e->code : PS_ERUN;
    pj_net *p = &out->net;
    pj_report *r = &out->rep;
    r->params = rt_params_numel(p->params, p->nparams);
    float *zb = malloc(sizeof(float) * (size_t)(B * Z)),
          *xr = malloc(sizeof(float) * (size_t)(B * GAN_PIX));
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)B);
    int rc = 0;
    if (!zb || !xr || !idx) {
        rc = ps_errf(e, PS_ERUN, "pj_train: out of memory");
        goto done;
    }
    const uint64_t hseed = cfg->seed + 99;
    if ((rc = pj_heldout_latent_mse(p, g, 256, hseed, &r->heldout_lz_init, e)))
        goto done;
    rt_rng rng;
    rt_rng_seed(&rng, cfg->seed * 2 + 12);
    rt_opt opt = {.kind = RT_OPT_ADAMW, .lr = cfg->lr, .beta1 = 0.9, .beta2 = 0.999,
                  .eps = 1e-8};
    const int64_t S = cfg->steps, nf = S / 10 > 0 ? S / 10 : 1;
    double a[8] = {0};
    ps_progress pr;
    ps_progress_start(&pr, "projector", (size_t)S);
    if (!verbose)
        pr.enabled = 0;
    double t0 = ps_now_s();
    for (int64_t s = 0; s < S; s++) {
        gan_sample_z(&rng, B, (int)Z, zb);
        if (use_real) {
            for (int64_t i = 0; i < B; i++)
                idx[i] = (int64_t)(rt_rng_next(&rng) % (uint64_t)NR);
            gan_images_from_fmnist(train, idx, 0, B, xr);
        }
        /* cosine from lr to lr / 10 */
        opt.lr = cfg->lr * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI * (double)s / (double)S)));
        double l, lz, lx, lr_;
        if ((rc = rt_params_zero_grad(p->params, p->nparams, e)) ||
            (rc = pj_loss_grad(p, g, zb, B, use_real ? xr : NULL, use_real ? B : 0, &l, &lz, &lx,
                               &lr_, e)) ||
            (rc = rt_opt_step(&opt, p->params, p->nparams, e)))
            goto done;
        if (!isfinite(l)) {
            rc = ps_errf(e, PS_ERUN, "pj_train: step %lld: loss is not finite", (long long)s);
            goto done;
        }
        if (s < nf) {
            a[0] += l;
            a[1] += lz;
            a[2] += lx;
            a[3] += lr_;
        }
        if (s >= S - nf) {
            a[4] += l;
            a[5] += lz;
            a[6] += lx;
            a[7] += lr_;
        }
        if (pr.enabled && s % 10 == 0) {
            char det[96];
            snprintf(det, sizeof det, "loss %.4f (z %.4f x %.4f real %.4f)", l, lz, lx, lr_);
            ps_progress_update(&pr, (size_t)s, det);
        }
    }
    ps_progress_end(&pr);
    r->train_s = ps_now_s() - t0;
    r->steps = S;
    if (S > 0) {
        double k = (double)(nf < S ? nf : S);
        r->loss_first = a[0] / k;
        r->lz_first = a[1] / k;
        r->lx_first = a[2] / k;
        r->lr_first = a[3] / k;
        r->loss_last = a[4] / k;
        r->lz_last = a[5] / k;
        r->lx_last = a[6] / k;
        r->lr_last = a[7] / k;
    }
    if ((rc = pj_heldout_latent_mse(p, g, 256, hseed, &r->heldout_lz, e)))
        goto done;
    if (verbose)
        fprintf(stderr,
                "projector (%s x%d): %lld steps in %.1f s: loss %.4f -> %.4f, held-out latent "
                "MSE %.4f -> %.4f\n",
                pj_down_kind_name(cfg->down), cfg->factor, (long long)S, r->train_s,
                r->loss_first, r->loss_last, r->heldout_lz_init, r->heldout_lz);
done:
    free(zb);
    free(xr);
    free(idx);
    if (rc)
        pj_free(out);
    return rc;
}

json_t *pj_report_to_json(const pj_model *m)
{
    const pj_report *r = &m->rep;
    return json_pack("{s:o, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, "
                     "s:b}",
                     "config", pj_config_to_json(&m->net.cfg), "params", (json_int_t)r->params,
                     "loss_first", r->loss_first, "loss_last", r->loss_last, "lz_first",
                     r->lz_first, "lz_last", r->lz_last, "lx_first", r->lx_first, "lx_last",
                     r->lx_last, "lr_first", r->lr_first, "lr_last", r->lr_last, "heldout_lz",
                     r->heldout_lz, "heldout_lz_init", r->heldout_lz_init, "train_s", r->train_s,
                     "steps", (json_int_t)r->steps, "from_cache", m->from_cache);
}

/* The projector's own config hash (generator part 0), stored in the meta and
 * checked on load. */
static void pj_hash_str(const pj_config *c, char *buf, size_t n)
{
    snprintf(buf, n, "%016llx", (unsigned long long)pj_config_hash(c, 0));
}

int pj_save(const char *path, const pj_model *m, ps_err *e)
{
    json_t *j = pj_report_to_json(m);
    char hash[32];
    pj_hash_str(&m->net.cfg, hash, sizeof hash);
    if (j)
        json_object_set_new(j, "config_hash", json_string(hash));
    char *meta = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int rc = rt_save(path, m->net.params, m->net.nparams, meta ? meta : "{}", e);
    free(meta);
    return rc;
}

int pj_load(const char *path, pj_model *m, ps_err *e)
{
    char *meta = NULL;
    int rc = rt_load(path, m->net.params, m->net.nparams, &meta, e);
    if (rc) {
        free(meta);
        return rc;
    }
    json_t *j = meta ? json_loads(meta, 0, NULL) : NULL;
    free(meta);
    if (!j)
        return ps_errf(e, PS_EINPUT, "%s: the meta is not a projector training report", path);
    char want[32];
    pj_hash_str(&m->net.cfg, want, sizeof want);
    json_t *h = json_object_get(j, "config_hash");
    if (!h || !json_is_string(h) || strcmp(json_string_value(h), want)) {
        ps_errf(e, PS_EINPUT, "%s: projector config hash %s in file, %s expected", path,
                h && json_is_string(h) ? json_string_value(h) : "(none)", want);
        json_decref(j);
        return PS_EINPUT;
    }
    pj_report *r = &m->rep;
    r->params = rt_params_numel(m->net.params, m->net.nparams);
    r->loss_first = ps_json_num_or_nan(j, "loss_first");
    r->loss_last = ps_json_num_or_nan(j, "loss_last");
    r->lz_first = ps_json_num_or_nan(j, "lz_first");
    r->lz_last = ps_json_num_or_nan(j, "lz_last");
    r->lx_first = ps_json_num_or_nan(j, "lx_first");
    r->lx_last = ps_json_num_or_nan(j, "lx_last");
    r->lr_first = ps_json_num_or_nan(j, "lr_first");
    r->lr_last = ps_json_num_or_nan(j, "lr_last");
    r->heldout_lz = ps_json_num_or_nan(j, "heldout_lz");
    r->heldout_lz_init = ps_json_num_or_nan(j, "heldout_lz_init");
    r->train_s = ps_json_num_or_nan(j, "train_s");
    r->steps = (int64_t)ps_json_num_or_nan(j, "steps");
    json_decref(j);
    return 0;
}

void pj_cache_path(const char *dir, const pj_config *cfg, uint64_t gan_hash, char *buf, size_t n)
{
    snprintf(buf, n, "%s/projector-%s%d-%016llx.bin", gan_cache_dir(dir),
             pj_down_kind_name(cfg->down), cfg->factor,
             (unsigned long long)pj_config_hash(cfg, gan_hash));
}

int pj_load_or_train(const char *dir, const pj_config *cfg, gan_model *gan,
                     const fmnist_set *train, int verbose, pj_model *out, ps_err *e)
{
    memset(out, 0, sizeof *out);
    if (pj_config_check(cfg, e))
        return e ? e->code : PS_EINPUT;
    char path[1024];
    pj_cache_path(dir, cfg, gan_config_hash(&gan->cfg), path, sizeof path);
    const int64_t MB = cfg->batch > 256 ? cfg->batch : 256;
    if (ps_file_exists(path)) {
        ps_err le = {0};
        if (!pj_net_init(&out->net, cfg, gan->g.dev, gan->g.dt, MB, 1, &le) &&
            !pj_load(path, out, &le)) {
            out->from_cache = 1;
            return 0;
        }
        pj_free(out);
        fprintf(stderr, "warning: projector cache unusable (%s): retraining\n", le.msg);
    }
    fmnist_set own;
    memset(&own, 0, sizeof own);
    if (!train && cfg->lambda_real > 0) {
        if (fmnist_load(NULL, "train", cfg->nreal, &own, e))
            return e ? e->code : PS_EINPUT;
        train = &own;
    }
    int rc = pj_train(cfg, &gan->g, train, verbose, out, e);
    if (train == &own)
        fmnist_free(&own);
    if (rc)
        return rc;
    if (ps_mkdir_p(gan_cache_dir(dir), e) || pj_save(path, out, e)) {
        ps_err_prefix(e, "projector: saving the trained model: ");
        pj_free(out);
        return e && e->code ? e->code : PS_ERUN;
    }
    return 0;
}

void pj_free(pj_model *m)
{
    if (!m)
        return;
    pj_net_free(&m->net);
    memset(m, 0, sizeof *m);
}
