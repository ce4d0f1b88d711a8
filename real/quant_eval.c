/* Post-training quantized evaluation of the Fashion-MNIST CNN: see
 * quant_eval.h. */
#include "real/quant_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu_blas.h"
#include "real/train.h"

/* ------------------------------------------------------------------ model */

static int param_host(const rt_param *p, float *dst, ps_err *e)
{
    if (p->w.dtype == RT_F32)
        return rt_tensor_to_host(&p->w, dst, e);
    if (p->w.dtype != RT_F64)
        return ps_errf(e, PS_EINPUT, "quant_eval: param %s has dtype %s (expected f32/f64)",
                       p->name, rt_dtype_name(p->w.dtype));
    double *tmp = malloc((size_t)p->w.numel * sizeof *tmp);
    if (!tmp)
        return ps_errf(e, PS_ERUN, "quant_eval: out of memory copying %s", p->name);
    int rc = rt_tensor_to_host(&p->w, tmp, e);
    for (int64_t i = 0; !rc && i < p->w.numel; i++)
        dst[i] = (float)tmp[i];
    free(tmp);
    return rc;
}

void qe_model_free(qe_model *m)
{
    if (!m)
        return;
    for (int q = 0; q < QE_MAXQ; q++) {
        free(m->l[q].w);
        free(m->l[q].b);
    }
    memset(m, 0, sizeof *m);
}

int64_t qe_layer_params(const qe_model *m, int q) { return m->l[q].rows * m->l[q].cols; }

int qe_model_from_cnn(qe_model *m, const cnn *net, ps_err *e)
{
    memset(m, 0, sizeof *m);
    const cnn_config *c = &net->cfg;
    m->cfg = *c;
    m->classes = c->classes;
    m->in_numel = (int64_t)c->in_ch * c->in_h * c->in_w;
    int q = 0;
    for (int i = 0; i < c->nblocks; i++, q++) {
        const cnn_block *b = &net->blk[i];
        qe_layer *L = &m->l[q];
        snprintf(L->name, sizeof L->name, "conv%d", i + 1);
        L->is_conv = 1;
        L->relu = 1;
        L->c_in = b->c_in;
        L->h_in = b->h_in;
        L->w_in = b->w_in;
        L->c_out = b->c_out;
        L->k = c->ksize;
        L->in_numel = (int64_t)b->c_in * b->h_in * b->w_in;
        L->out_numel = (int64_t)b->c_out * (b->h_in / 2) * (b->w_in / 2);
        L->rows = b->c_out;
        L->cols = (int64_t)b->c_in * L->k * L->k;
        L->w = malloc((size_t)(L->rows * L->cols) * sizeof(float));
        L->b = calloc((size_t)L->rows, sizeof(float));
        if (!L->w || !L->b)
            goto oom;
        if (param_host(b->conv_w, L->w, e))
            goto fail;
        if (b->conv_b && param_host(b->conv_b, L->b, e))
            goto fail;
        if (c->batchnorm) {
            int co = b->c_out;
            float *g = malloc(4 * (size_t)co * sizeof(float));
            if (!g)
                goto oom;
            float *be = g + co, *rm = g + 2 * co, *rv = g + 3 * co;
            if (param_host(b->bn_g, g, e) || param_host(b->bn_b, be, e) ||
                param_host(b->bn_rm, rm, e) || param_host(b->bn_rv, rv, e)) {
                free(g);
                goto fail;
            }
            double eps = net->bn.eps > 0 ? net->bn.eps : 1e-5;
            for (int o = 0; o < co; o++) {
                double s = g[o] / sqrt((double)rv[o] + eps);
                for (int64_t j = 0; j < L->cols; j++)
                    L->w[o * L->cols + j] = (float)(L->w[o * L->cols + j] * s);
                L->b[o] = (float)((L->b[o] - rm[o]) * s + be[o]);
            }
            free(g);
        }
    }
    const rt_param *fw[2] = {net->fc1_w, net->fc2_w}, *fb[2] = {net->fc1_b, net->fc2_b};
    int nfc = c->hidden ? 2 : 1;
    int64_t in = net->flat;
    for (int i = 0; i < nfc; i++, q++) {
        qe_layer *L = &m->l[q];
        snprintf(L->name, sizeof L->name, "fc%d", i + 1);
        L->relu = i + 1 < nfc;
        L->rows = fw[i]->w.shape[0];
        L->cols = fw[i]->w.shape[1];
        if (L->cols != in)
            return qe_model_free(m),
                   ps_errf(e, PS_EINPUT, "quant_eval: %s has %lld inputs, expected %lld", L->name,
                           (long long)L->cols, (long long)in);
        L->c_in = (int)in;
        L->h_in = L->w_in = 1;
        L->c_out = (int)L->rows;
        L->k = 1;
        L->in_numel = in;
        L->out_numel = L->rows;
        L->w = malloc((size_t)(L->rows * L->cols) * sizeof(float));
        L->b = malloc((size_t)L->rows * sizeof(float));
        if (!L->w || !L->b)
            goto oom;
        if (param_host(fw[i], L->w, e) || param_host(fb[i], L->b, e))
            goto fail;
        in = L->rows;
    }
    m->nq = q;
    return 0;
oom:
    ps_errf(e, PS_ERUN, "quant_eval: out of memory");
fail:
    qe_model_free(m);
    return e ? e->code : PS_ERUN;
}

/* ------------------------------------------------------------------ data */

int qe_data_from_fmnist(const fmnist_set *s, int64_t n, qe_data *d, ps_err *e)
{
    memset(d, 0, sizeof *d);
    if (n <= 0 || n > s->n)
        n = s->n;
    d->n = n;
    d->dim = (int64_t)s->rows * s->cols;
    d->x = malloc((size_t)(n * d->dim) * sizeof(float));
    d->y = malloc((size_t)n * sizeof(int32_t));
    if (!d->x || !d->y) {
        qe_data_free(d);
        return ps_errf(e, PS_ERUN, "quant_eval: out of memory for %lld images", (long long)n);
    }
    fmnist_batch_f32(s, NULL, 0, n, d->x, d->y);
    return 0;
}

void qe_data_free(qe_data *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------ layers */

/* conv (pad k/2) + bias + ReLU + 2x2 max-pool of one chunk.
 * x [B, cin, H, W] -> y [B, cout, H/2, W/2]; ws: cols [cin·k·k, H·W] and
 * out [cout, H·W]. */
static void conv_fwd(const qe_layer *L, const float *w, const float *x, int64_t B, float *y,
                     float *cols, float *out)
{
    int H = L->h_in, W = L->w_in, k = L->k, p = k / 2, ci = L->c_in, co = L->c_out;
    int64_t HW = (int64_t)H * W;
    int Ho = H / 2, Wo = W / 2;
    for (int64_t n = 0; n < B; n++) {
        const float *xn = x + n * L->in_numel;
        /* im2col: row (c·k + ky)·k + kx, column oy·W + ox */
        for (int c = 0; c < ci; c++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    float *r = cols + ((int64_t)(c * k + ky) * k + kx) * HW;
                    for (int oy = 0; oy < H; oy++) {
                        int iy = oy + ky - p;
                        float *ro = r + (int64_t)oy * W;
                        if (iy < 0 || iy >= H) {
                            memset(ro, 0, (size_t)W * sizeof(float));
                            continue;
                        }
                        const float *xr = xn + ((int64_t)c * H + iy) * W;
                        for (int ox = 0; ox < W; ox++) {
                            int ix = ox + kx - p;
                            ro[ox] = (ix >= 0 && ix < W) ? xr[ix] : 0.0f;
                        }
                    }
                }
        ps_cpu_sgemm(0, 0, co, HW, L->cols, 1.0f, w, L->cols, cols, HW, 0.0f, out, HW);
        float *yn = y + n * L->out_numel;
        for (int o = 0; o < co; o++) {
            const float *oc = out + (int64_t)o * HW;
            float bo = L->b[o];
            for (int py = 0; py < Ho; py++)
                for (int px = 0; px < Wo; px++) {
                    const float *a = oc + (int64_t)(2 * py) * W + 2 * px;
                    float m = a[0];
                    if (a[1] > m)
                        m = a[1];
                    if (a[W] > m)
                        m = a[W];
                    if (a[W + 1] > m)
                        m = a[W + 1];
                    m += bo;
                    yn[((int64_t)o * Ho + py) * Wo + px] = m > 0.0f ? m : 0.0f;
                }
        }
    }
}

static void linear_fwd(const qe_layer *L, const float *w, const float *x, int64_t B, float *y)
{
    ps_cpu_sgemm(0, 1, B, L->rows, L->cols, 1.0f, x, L->cols, w, L->cols, 0.0f, y, L->rows);
    for (int64_t n = 0; n < B; n++)
        for (int64_t o = 0; o < L->rows; o++) {
            float v = y[n * L->rows + o] + L->b[o];
            y[n * L->rows + o] = (L->relu && v < 0.0f) ? 0.0f : v;
        }
}

/* ------------------------------------------------------------------ tree */

/* What one option of one level does: the weights to use and the input
 * quantization (abits 0: none). */
typedef struct lvl_opt {
    const float *w;
    int abits;
} lvl_opt;

typedef struct tree {
    const qe_model *m;
    int nopt[QE_MAXQ];
    lvl_opt opt[QE_MAXQ][QE_MAXOPT];
    double range[QE_MAXQ];
    float *buf[QE_MAXQ + 1]; /* buf[0] = the chunk's input (a view) */
    float *qin;              /* quantized input of a level */
    float *cols, *out;       /* conv workspace */
    const int32_t *y;
    int64_t B;
    double *correct, *lsum; /* per configuration */
    long done;
    long total;
    ps_progress *prog;
} tree;

static void leaf(tree *t, long idx)
{
    const float *z = t->buf[t->m->nq];
    int C = t->m->classes;
    double corr = 0, ls = 0;
    for (int64_t n = 0; n < t->B; n++) {
        const float *r = z + n * C;
        int am = 0;
        float mx = r[0];
        for (int c = 1; c < C; c++)
            if (r[c] > mx) {
                mx = r[c];
                am = c;
            }
        double se = 0;
        for (int c = 0; c < C; c++)
            se += exp((double)r[c] - mx);
        ls += log(se) + mx - r[t->y[n]];
        corr += am == t->y[n];
    }
    t->correct[idx] += corr;
    t->lsum[idx] += ls;
}

static void quant_input(tree *t, int l, int abits, const float *in, float *dst)
{
    const qe_layer *L = &t->m->l[l];
    int64_t n = t->B * L->in_numel;
    if (l == 0) {
        /* pixel units: u = x·std + mean ∈ [0, 1], quantize, normalise back */
        int qmax = psq_qmax_unsigned(abits);
        double r = t->range[0], s = r / qmax;
        for (int64_t i = 0; i < n; i++) {
            double u = in[i] * FMNIST_STD + FMNIST_MEAN, q = 0;
            if (s > 0 && u > 0) {
                q = round(u / s);
                if (q > qmax)
                    q = qmax;
            }
            dst[i] = (float)((q * s - FMNIST_MEAN) / FMNIST_STD);
        }
    } else {
        psq_fake_quant_act(in, (size_t)n, abits, t->range[l], dst, NULL, NULL);
    }
}

static void descend(tree *t, int l, long prefix)
{
    const qe_model *m = t->m;
    if (l == m->nq) {
        leaf(t, prefix);
        return;
    }
    const qe_layer *L = &m->l[l];
    for (int k = 0; k < t->nopt[l]; k++) {
        const lvl_opt *o = &t->opt[l][k];
        const float *in = t->buf[l];
        if (o->abits > 0) {
            quant_input(t, l, o->abits, in, t->qin);
            in = t->qin;
        }
        if (L->is_conv)
            conv_fwd(L, o->w, in, t->B, t->buf[l + 1], t->cols, t->out);
        else
            linear_fwd(L, o->w, in, t->B, t->buf[l + 1]);
        descend(t, l + 1, prefix * t->nopt[l] + k);
        if (l == m->nq - 1) {
            t->done++;
            if (t->prog && (t->done & 63) == 0)
                ps_progress_update(t->prog, (size_t)t->done, NULL);
        }
    }
}

/* Run the tree over d; acc/loss get K^nq entries. */
static int run_tree(tree *t, const qe_data *d, int64_t chunk, const char *label, double *acc,
                    double *loss, ps_err *e)
{
    const qe_model *m = t->m;
    if (d->dim != m->in_numel)
        return ps_errf(e, PS_EINPUT, "quant_eval: data has %lld values per image, model %lld",
                       (long long)d->dim, (long long)m->in_numel);
    if (d->n < 1)
        return ps_errf(e, PS_EINPUT, "quant_eval: no images to evaluate");
    long ncfg = 1;
    for (int l = 0; l < m->nq; l++)
        ncfg *= t->nopt[l];
    if (chunk <= 0)
        chunk = 500;
    if (chunk > d->n)
        chunk = d->n;
    int64_t maxin = m->in_numel, maxcols = 1, maxout = 1;
    for (int l = 0; l < m->nq; l++) {
        const qe_layer *L = &m->l[l];
        if (L->in_numel > maxin)
            maxin = L->in_numel;
        if (L->is_conv) {
            int64_t hw = (int64_t)L->h_in * L->w_in;
            if (L->cols * hw > maxcols)
                maxcols = L->cols * hw;
            if ((int64_t)L->c_out * hw > maxout)
                maxout = (int64_t)L->c_out * hw;
        }
    }
    int rc = 0;
    t->correct = calloc((size_t)ncfg, sizeof(double));
    t->lsum = calloc((size_t)ncfg, sizeof(double));
    t->qin = malloc((size_t)(chunk * maxin) * sizeof(float));
    t->cols = malloc((size_t)maxcols * sizeof(float));
    t->out = malloc((size_t)maxout * sizeof(float));
    for (int l = 1; l <= m->nq; l++) {
        int64_t sz = l < m->nq ? m->l[l].in_numel : m->classes;
        t->buf[l] = malloc((size_t)(chunk * sz) * sizeof(float));
        if (!t->buf[l])
            rc = 1;
    }
    if (rc || !t->correct || !t->lsum || !t->qin || !t->cols || !t->out) {
        rc = ps_errf(e, PS_ERUN, "quant_eval: out of memory for the sweep");
        goto done;
    }
    ps_progress prog;
    long nchunks = (long)((d->n + chunk - 1) / chunk);
    t->total = ncfg * nchunks;
    t->done = 0;
    t->prog = NULL;
    if (label) {
        ps_progress_start(&prog, label, (size_t)t->total);
        t->prog = &prog;
    }
    for (int64_t s = 0; s < d->n; s += chunk) {
        t->B = d->n - s < chunk ? d->n - s : chunk;
        t->buf[0] = d->x + s * d->dim;
        t->y = d->y + s;
        descend(t, 0, 0);
    }
    if (t->prog)
        ps_progress_end(&prog);
    for (long i = 0; i < ncfg; i++) {
        if (acc)
            acc[i] = t->correct[i] / (double)d->n;
        if (loss)
            loss[i] = t->lsum[i] / (double)d->n;
    }
done:
    free(t->correct);
    free(t->lsum);
    free(t->qin);
    free(t->cols);
    free(t->out);
    for (int l = 1; l <= m->nq; l++)
        free(t->buf[l]);
    return rc;
}

long qe_nconfigs(int nopt, int nq)
{
    long n = 1;
    for (int i = 0; i < nq; i++) {
        if (n > (1L << 31) / (nopt > 0 ? nopt : 1))
            return -1;
        n *= nopt;
    }
    return n;
}

void qe_config_decode(long idx, int nopt, int nq, int *k)
{
    for (int l = nq - 1; l >= 0; l--) {
        k[l] = (int)(idx % nopt);
        idx /= nopt;
    }
}

static float *fq_copy(const qe_layer *L, int bits, psq_gran gran, ps_err *e)
{
    float *w = malloc((size_t)(L->rows * L->cols) * sizeof(float));
    if (!w) {
        ps_errf(e, PS_ERUN, "quant_eval: out of memory");
        return NULL;
    }
    psq_wspec sp = {.bits = bits, .gran = gran};
    if (psq_fake_quant_weights(L->w, (size_t)L->rows, (size_t)L->cols, &sp, w, NULL, e)) {
        ps_err_prefix(e, "%s: ", L->name);
        free(w);
        return NULL;
    }
    return w;
}

static int check_bits(int b, const char *what, int q, ps_err *e)
{
    if (b != 0 && (b < PSQ_BITS_MIN || b > PSQ_BITS_MAX))
        return ps_errf(e, PS_EINPUT, "quant_eval: %s[%d] = %d: expected 0 (float) or %d..%d",
                       what, q, b, PSQ_BITS_MIN, PSQ_BITS_MAX);
    return 0;
}

int qe_evaluate(const qe_model *m, const qe_config *c, const qe_data *d, double *acc,
                double *loss, ps_err *e)
{
    tree t;
    memset(&t, 0, sizeof t);
    t.m = m;
    float *owned[QE_MAXQ] = {0};
    int rc = 0;
    for (int l = 0; l < m->nq && !rc; l++) {
        if ((rc = check_bits(c->wbits[l], "wbits", l, e)) ||
            (rc = check_bits(c->abits[l], "abits", l, e)))
            break;
        if (c->abits[l] > 0 && !(c->range[l] >= 0 && isfinite(c->range[l]))) {
            rc = ps_errf(e, PS_EINPUT, "quant_eval: range[%d] = %g invalid", l, c->range[l]);
            break;
        }
        t.nopt[l] = 1;
        t.range[l] = c->range[l];
        t.opt[l][0].abits = c->abits[l];
        if (c->wbits[l] > 0) {
            if (!(owned[l] = fq_copy(&m->l[l], c->wbits[l], c->gran, e)))
                rc = e ? e->code : PS_ERUN;
            t.opt[l][0].w = owned[l];
        } else {
            t.opt[l][0].w = m->l[l].w;
        }
    }
    double a = 0, lo = 0;
    if (!rc)
        rc = run_tree(&t, d, 0, NULL, &a, &lo, e);
    for (int l = 0; l < QE_MAXQ; l++)
        free(owned[l]);
    if (!rc) {
        if (acc)
            *acc = a;
        if (loss)
            *loss = lo;
    }
    return rc;
}

int qe_exhaustive(const qe_model *m, const qe_sweep *s, const qe_data *d, double *acc,
                  double *loss, ps_err *e)
{
    if (s->nopt < 1 || s->nopt > QE_MAXOPT)
        return ps_errf(e, PS_EINPUT, "quant_eval: sweep nopt %d outside 1..%d", s->nopt,
                       QE_MAXOPT);
    for (int k = 0; k < s->nopt; k++)
        if (s->bits[k] < PSQ_BITS_MIN || s->bits[k] > PSQ_BITS_MAX)
            return ps_errf(e, PS_EINPUT, "quant_eval: sweep bits[%d] = %d outside %d..%d", k,
                           s->bits[k], PSQ_BITS_MIN, PSQ_BITS_MAX);
    if (s->mode == QE_SWEEP_ACTS && check_bits(s->fixed_wbits, "fixed_wbits", 0, e))
        return PS_EINPUT;
    if (qe_nconfigs(s->nopt, m->nq) < 0)
        return ps_errf(e, PS_EINPUT, "quant_eval: %d^%d configurations is too many", s->nopt,
                       m->nq);
    tree t;
    memset(&t, 0, sizeof t);
    t.m = m;
    float *owned[QE_MAXQ][QE_MAXOPT] = {{0}};
    int rc = 0;
    for (int l = 0; l < m->nq && !rc; l++) {
        t.nopt[l] = s->nopt;
        t.range[l] = s->range[l];
        float *w8 = NULL;
        if (s->mode == QE_SWEEP_ACTS) {
            if (!(s->range[l] >= 0 && isfinite(s->range[l]))) {
                rc = ps_errf(e, PS_EINPUT, "quant_eval: sweep range[%d] = %g invalid", l,
                             s->range[l]);
                break;
            }
            if (s->fixed_wbits > 0) {
                if (!(w8 = owned[l][0] = fq_copy(&m->l[l], s->fixed_wbits, s->gran, e))) {
                    rc = e ? e->code : PS_ERUN;
                    break;
                }
            }
        }
        for (int k = 0; k < s->nopt; k++) {
            lvl_opt *o = &t.opt[l][k];
            if (s->mode == QE_SWEEP_WEIGHTS) {
                if (!(owned[l][k] = fq_copy(&m->l[l], s->bits[k], s->gran, e))) {
                    rc = e ? e->code : PS_ERUN;
                    break;
                }
                o->w = owned[l][k];
                o->abits = 0;
            } else {
                o->w = w8 ? w8 : m->l[l].w;
                o->abits = s->bits[k];
            }
        }
    }
    if (!rc)
        rc = run_tree(&t, d, s->chunk, s->label ? s->label : "quant sweep", acc, loss, e);
    for (int l = 0; l < QE_MAXQ; l++)
        for (int k = 0; k < QE_MAXOPT; k++)
            free(owned[l][k]);
    return rc;
}

/* ------------------------------------------------------------------ calibration */

/* Float forward keeping every level's input: lv[0] pixel units, lv[l]
 * (l ≥ 1) the input of layer l.  mode < 0: compute act err2 instead of
 * ranges. */
static int levels(const qe_model *m, const qe_data *d, int mode_calib, psq_calib mode, double pct,
                  double *range, const int *bits, int nopt, double *err2, ps_err *e)
{
    if (d->n < 1)
        return ps_errf(e, PS_EINPUT, "quant_eval: empty calibration set");
    /* forward the float model once, keeping every level's input */
    float *lv[QE_MAXQ + 1] = {0};
    float *cols = NULL, *out = NULL;
    int rc = 0;
    int64_t B = d->n;
    int64_t maxcols = 1, maxout = 1;
    for (int l = 0; l < m->nq; l++) {
        const qe_layer *L = &m->l[l];
        int64_t hw = (int64_t)L->h_in * L->w_in;
        if (L->is_conv && L->cols * hw > maxcols)
            maxcols = L->cols * hw;
        if (L->is_conv && (int64_t)L->c_out * hw > maxout)
            maxout = (int64_t)L->c_out * hw;
        int64_t sz = l + 1 < m->nq ? m->l[l + 1].in_numel : m->classes;
        if (!(lv[l + 1] = malloc((size_t)(B * sz) * sizeof(float))))
            rc = 1;
    }
    lv[0] = malloc((size_t)(B * d->dim) * sizeof(float));
    cols = malloc((size_t)maxcols * sizeof(float));
    out = malloc((size_t)maxout * sizeof(float));
    if (rc || !lv[0] || !cols || !out) {
        rc = ps_errf(e, PS_ERUN, "quant_eval: out of memory calibrating");
        goto done;
    }
    for (int64_t i = 0; i < B * d->dim; i++)
        lv[0][i] = (float)(d->x[i] * FMNIST_STD + FMNIST_MEAN); /* pixel units */
    for (int l = 0; l < m->nq; l++) {
        const qe_layer *L = &m->l[l];
        const float *in = l == 0 ? d->x : lv[l];
        if (L->is_conv)
            conv_fwd(L, L->w, in, B, lv[l + 1], cols, out);
        else
            linear_fwd(L, L->w, in, B, lv[l + 1]);
    }
    for (int l = 0; l < m->nq && !rc && mode_calib; l++) {
        double r = psq_act_range(lv[l], (size_t)(B * m->l[l].in_numel), mode, pct, e);
        if (r < 0)
            rc = e ? e->code : PS_EINPUT;
        range[l] = r;
    }
    for (int l = 0; l < m->nq && !rc && !mode_calib; l++) {
        size_t n = (size_t)(B * m->l[l].in_numel);
        float *tmp = malloc(n * sizeof *tmp);
        if (!tmp) {
            rc = ps_errf(e, PS_ERUN, "quant_eval: out of memory");
            break;
        }
        for (int k = 0; k < nopt && !rc; k++) {
            double s2 = 0;
            rc = psq_fake_quant_act(lv[l], n, bits[k], range[l], tmp, &s2, e);
            if (l == 0)
                s2 /= FMNIST_STD * FMNIST_STD;
            err2[l * nopt + k] = s2 / (double)B;
        }
        free(tmp);
    }
done:
    for (int l = 0; l <= QE_MAXQ; l++)
        free(lv[l]);
    free(cols);
    free(out);
    return rc;
}

int qe_calibrate(const qe_model *m, const qe_data *d, psq_calib mode, double pct, double *range,
                 ps_err *e)
{
    return levels(m, d, 1, mode, pct, range, NULL, 0, NULL, e);
}

int qe_act_err2(const qe_model *m, const qe_data *d, const int *bits, int nopt,
                const double *range, double *err2, ps_err *e)
{
    return levels(m, d, 0, PSQ_CAL_MAX, 0, (double *)range, bits, nopt, err2, e);
}

/* ------------------------------------------------------------------ training */

cnn_config qe_config_balanced(void)
{
    cnn_config c = cnn_config_default();
    c.ksize = 5;
    c.ch[0] = 32;
    c.ch[1] = 16;
    c.hidden = 32;
    return c;
}

cnn_config qe_net_config(qe_net n)
{
    return n == QE_NET_SMALL      ? cnn_config_small()
           : n == QE_NET_BALANCED ? qe_config_balanced()
                                  : cnn_config_default();
}

const char *qe_net_name(qe_net n)
{
    return n == QE_NET_SMALL ? "small" : n == QE_NET_BALANCED ? "balanced" : "default";
}

int qe_net_parse(const char *s, qe_net *n, ps_err *e)
{
    for (int i = 0; i <= QE_NET_BALANCED; i++)
        if (s && !strcmp(s, qe_net_name((qe_net)i))) {
            *n = (qe_net)i;
            return 0;
        }
    return ps_errf(e, PS_EINPUT, "model: \"%s\" (expected default, small or balanced)",
                   s ? s : "(null)");
}

int64_t qe_layer_macs(const qe_model *m, int q)
{
    const qe_layer *L = &m->l[q];
    if (L->is_conv)
        return (int64_t)L->h_in * L->w_in * L->rows * L->cols;
    return L->rows * L->cols;
}

double qe_bops(const qe_model *m, const int *wbits, const int *abits)
{
    double s = 0;
    for (int q = 0; q < m->nq; q++)
        s += (double)qe_layer_macs(m, q) * wbits[q] * abits[q];
    return s;
}

int qe_train_or_load(const char *path, int quick, uint64_t seed, int64_t train_n, cnn *net,
                     int *trained, ps_err *e)
{
    return qe_train_or_load_net(path, quick ? QE_NET_SMALL : QE_NET_DEFAULT, seed, train_n, net,
                                trained, e);
}

int qe_train_or_load_net(const char *path, qe_net which, uint64_t seed, int64_t train_n,
                         cnn *net, int *trained, ps_err *e)
{
    int quick = which == QE_NET_SMALL;
    cnn_config c = qe_net_config(which);
    int64_t batch = quick ? 32 : 128;
    if (trained)
        *trained = 0;
    if (path && ps_file_exists(path)) {
        char *meta = NULL;
        if (rt_load(path, NULL, 0, &meta, e))
            return e ? e->code : PS_ERUN;
        cnn_config got;
        ps_err pe = {0};
        int bad = cnn_config_parse(meta, &got, &pe) || memcmp(&got, &c, sizeof c) != 0;
        free(meta);
        if (!bad) {
            if (cnn_init(net, &c, rt_cpu(), RT_F32, 500, seed, e))
                return e ? e->code : PS_ERUN;
            if (cnn_load(net, path, e)) {
                cnn_free(net);
                return e ? e->code : PS_ERUN;
            }
            return 0;
        }
        /* a different config: retrain over it */
    }
    fmnist_set tr;
    if (fmnist_load(NULL, "train", train_n > 0 ? train_n : quick ? 2000 : 0, &tr, e))
        return e ? e->code : PS_EINPUT;
    train_opts o = train_opts_default();
    o.epochs = quick ? 2 : 4;
    o.batch = batch;
    o.opt.lr = quick ? 3e-3 : 2e-3;
    o.seed = seed;
    o.label = "cnn";
    int rc = cnn_init(net, &c, rt_cpu(), RT_F32, batch, seed, e);
    if (!rc) {
        train_model m = train_model_cnn(net);
        train_data dtr = train_data_fmnist(&tr);
        train_result r;
        rc = train_classifier(&m, &dtr, NULL, &o, &r, e);
    }
    fmnist_free(&tr);
    if (!rc && path) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", path);
        char *sl = strrchr(dir, '/');
        if (sl) {
            *sl = '\0';
            rc = ps_mkdir_p(dir, e);
        }
        char meta[256];
        snprintf(meta, sizeof meta, "seed=%llu epochs=%d batch=%lld lr=%g train_n=%lld",
                 (unsigned long long)seed, o.epochs, (long long)o.batch, o.opt.lr,
                 (long long)tr.n);
        if (!rc)
            rc = cnn_save(net, path, meta, e);
    }
    if (rc) {
        cnn_free(net);
        return rc;
    }
    if (trained)
        *trained = 1;
    return 0;
}
