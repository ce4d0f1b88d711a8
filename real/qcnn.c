/* Integer inference of the Fashion-MNIST CNN: see real/qcnn.h. */
#include "real/qcnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu_blas.h"
#include "sim/quant/quantizer.h"

double qcnn_now(const qcnn *q)
{
    struct timespec ts;
    clock_gettime(q->cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A parameter as doubles (f32 or f64 CPU tensor). */
static double *param_host(const rt_param *p, ps_err *e)
{
    if (!p)
        return NULL;
    const rt_tensor *t = &p->w;
    double *d = malloc((size_t)t->numel * sizeof *d);
    if (!d) {
        ps_errf(e, PS_ERUN, "qcnn: out of memory");
        return NULL;
    }
    if (t->dtype == RT_F64) {
        if (rt_tensor_to_host(t, d, e)) {
            free(d);
            return NULL;
        }
    } else if (t->dtype == RT_F32) {
        float *f = malloc((size_t)t->numel * sizeof *f);
        if (!f || rt_tensor_to_host(t, f, e)) {
            free(f);
            free(d);
            if (!f)
                ps_errf(e, PS_ERUN, "qcnn: out of memory");
            return NULL;
        }
        for (int64_t i = 0; i < t->numel; i++)
            d[i] = f[i];
        free(f);
    } else {
        free(d);
        ps_errf(e, PS_EINPUT, "qcnn: parameter %s has dtype %s (need f32 or f64)", p->name,
                rt_dtype_name(t->dtype));
        return NULL;
    }
    return d;
}

void qcnn_free(qcnn *q)
{
    if (!q)
        return;
    for (int l = 0; l < QCNN_MAXL; l++) {
        qcnn_layer *L = &q->L[l];
        free(L->wf);
        free(L->bias);
        for (int b = 0; b <= 8; b++) {
            free(L->vq[b]);
            free(L->vscale[b]);
            free(L->vdq[b]);
        }
    }
    for (int l = 0; l <= QCNN_MAXL; l++)
        free(q->act[l]);
    free(q->colq);
    free(q->colf);
    free(q->acc);
    free(q->out);
    free(q->qin);
    memset(q, 0, sizeof *q);
}

static int64_t rup32(int64_t k) { return (k + 31) & ~(int64_t)31; }

int qcnn_init(qcnn *q, const cnn *net, int64_t max_batch, ps_err *e)
{
    memset(q, 0, sizeof *q);
    const cnn_config *c = &net->cfg;
    if (max_batch < 1)
        return ps_errf(e, PS_EINPUT, "qcnn_init: max_batch must be >= 1 (got %lld)",
                       (long long)max_batch);
    q->max_batch = max_batch;
    q->in_c = c->in_ch;
    q->in_h = c->in_h;
    q->in_w = c->in_w;
    q->classes = c->classes;
    q->path = PS_QPATH_AUTO;
    int64_t h = c->in_h, w = c->in_w, ch = c->in_ch;
    int rc = 0;
    double *cw = NULL, *cb = NULL, *g = NULL, *bb = NULL, *rm = NULL, *rv = NULL;
    for (int i = 0; i < c->nblocks && !rc; i++) {
        const cnn_block *b = &net->blk[i];
        qcnn_layer *L = &q->L[q->nl++];
        snprintf(L->name, sizeof L->name, "conv%d", i + 1);
        L->conv = 1;
        L->cin = ch;
        L->h = h;
        L->w = w;
        L->ks = c->ksize;
        L->pad = c->ksize / 2;
        L->oh = h;
        L->ow = w;
        L->K = ch * L->ks * L->ks;
        L->N = b->c_out;
        L->relu = 1;
        L->pool = 1;
        L->bits = 32;
        L->wf = malloc((size_t)(L->N * L->K) * sizeof(float));
        L->bias = calloc((size_t)L->N, sizeof(float));
        if (!L->wf || !L->bias) {
            rc = ps_errf(e, PS_ERUN, "qcnn: out of memory");
            break;
        }
        cw = param_host(b->conv_w, e);
        cb = b->conv_b ? param_host(b->conv_b, e) : NULL;
        if (c->batchnorm) {
            g = param_host(b->bn_g, e);
            bb = param_host(b->bn_b, e);
            rm = param_host(b->bn_rm, e);
            rv = param_host(b->bn_rv, e);
        }
        if (!cw || (b->conv_b && !cb) || (c->batchnorm && (!g || !bb || !rm || !rv))) {
            rc = e && e->code ? e->code : ps_errf(e, PS_ERUN, "qcnn: reading weights failed");
            break;
        }
        for (int64_t n = 0; n < L->N; n++) {
            double sc = 1, sh = cb ? cb[n] : 0;
            if (c->batchnorm) {
                sc = g[n] / sqrt(rv[n] + net->bn.eps);
                sh = bb[n] + (sh - rm[n]) * sc;
            }
            L->bias[n] = (float)sh;
            for (int64_t ci = 0; ci < ch; ci++)
                for (int64_t ky = 0; ky < L->ks; ky++)
                    for (int64_t kx = 0; kx < L->ks; kx++)
                        L->wf[n * L->K + (ky * L->ks + kx) * ch + ci] =
                            (float)(cw[((n * ch + ci) * L->ks + ky) * L->ks + kx] * sc);
        }
        free(cw);
        free(cb);
        free(g);
        free(bb);
        free(rm);
        free(rv);
        cw = cb = g = bb = rm = rv = NULL;
        ch = b->c_out;
        h /= 2;
        w /= 2;
    }
    if (rc) {
        free(cw);
        free(cb);
        free(g);
        free(bb);
        free(rm);
        free(rv);
        qcnn_free(q);
        return rc;
    }
    /* linears: fc1 (columns permuted from NCHW to NHWC flatten), fc2 */
    const rt_param *fw[2] = {net->fc1_w, net->fc2_w}, *fb[2] = {net->fc1_b, net->fc2_b};
    int nfc = c->hidden > 0 ? 2 : 1;
    int64_t in = ch * h * w;
    for (int f = 0; f < nfc; f++) {
        qcnn_layer *L = &q->L[q->nl++];
        snprintf(L->name, sizeof L->name, "fc%d", f + 1);
        L->conv = 0;
        L->oh = L->ow = 1;
        L->K = in;
        L->N = f == nfc - 1 ? c->classes : c->hidden;
        L->cin = in;
        L->h = L->w = L->ks = 1;
        L->relu = f < nfc - 1;
        L->bits = 32;
        L->wf = malloc((size_t)(L->N * L->K) * sizeof(float));
        L->bias = calloc((size_t)L->N, sizeof(float));
        double *W = param_host(fw[f], e), *B = param_host(fb[f], e);
        if (!L->wf || !L->bias || !W || !B) {
            free(W);
            free(B);
            rc = e && e->code ? e->code : ps_errf(e, PS_ERUN, "qcnn: out of memory");
            qcnn_free(q);
            return rc;
        }
        for (int64_t n = 0; n < L->N; n++) {
            L->bias[n] = (float)B[n];
            for (int64_t k = 0; k < L->K; k++) {
                int64_t src = k;
                if (f == 0) { /* k is the NHWC index (y, x, c); the source is NCHW */
                    int64_t cc = k % ch, yx = k / ch;
                    src = cc * h * w + yx;
                }
                L->wf[n * L->K + k] = (float)W[n * L->K + src];
            }
        }
        free(W);
        free(B);
        in = L->N;
    }
    /* buffers */
    int64_t maxM = 0, maxMK = 0, maxMKp = 0, maxMN = 0, maxAct = 0;
    for (int l = 0; l < q->nl; l++) {
        qcnn_layer *L = &q->L[l];
        L->Kp = rup32(L->K);
        int64_t M = max_batch * L->oh * L->ow;
        maxM = M > maxM ? M : maxM;
        maxMK = M * L->K > maxMK ? M * L->K : maxMK;
        maxMKp = M * L->Kp > maxMKp ? M * L->Kp : maxMKp;
        maxMN = M * L->N > maxMN ? M * L->N : maxMN;
        int64_t ain = max_batch * (L->conv ? L->h * L->w * L->cin : L->K);
        maxAct = ain > maxAct ? ain : maxAct;
    }
    for (int l = 0; l <= q->nl; l++) {
        int64_t sz = l < q->nl ? max_batch * (q->L[l].conv ? q->L[l].h * q->L[l].w * q->L[l].cin
                                                           : q->L[l].K)
                               : max_batch * q->classes;
        q->act[l] = malloc((size_t)sz * sizeof(float));
        if (!q->act[l]) {
            qcnn_free(q);
            return ps_errf(e, PS_ERUN, "qcnn: out of memory");
        }
    }
    q->colq = calloc((size_t)maxMKp, 1);
    q->colf = malloc((size_t)maxMK * sizeof(float));
    q->acc = malloc((size_t)maxMN * sizeof(int32_t));
    q->out = malloc((size_t)maxMN * sizeof(float));
    q->qin = malloc((size_t)maxAct);
    (void)maxM;
    if (!q->colq || !q->colf || !q->acc || !q->out || !q->qin) {
        qcnn_free(q);
        return ps_errf(e, PS_ERUN, "qcnn: out of memory");
    }
    return 0;
}

double qcnn_layer_weight_bytes(const qcnn *q, int l)
{
    const qcnn_layer *L = &q->L[l];
    if (L->bits >= 32)
        return 4.0 * (double)L->N * (double)L->K;
    psq_wspec s = {.bits = L->bits, .gran = PSQ_PER_CHANNEL, .scale_bytes = 4};
    return psq_weight_bytes((size_t)L->N, (size_t)L->K, &s);
}

int qcnn_set_bits(qcnn *q, const int *bits, ps_err *e)
{
    for (int l = 0; l < q->nl; l++) {
        int b = bits[l];
        if (b != 32 && (b < 2 || b > 8))
            return ps_errf(e, PS_EINPUT, "qcnn_set_bits: bits[%d] = %d (expected 2..8 or 32)", l,
                           b);
        if (b != 32 && q->L[l].a_max <= 0 && q->L[l].a_min >= 0)
            return ps_errf(e, PS_EINPUT,
                           "qcnn_set_bits: layer %s has no calibrated input range (call "
                           "qcnn_calibrate first)",
                           q->L[l].name);
    }
    for (int l = 0; l < q->nl; l++) {
        qcnn_layer *L = &q->L[l];
        L->bits = bits[l];
        if (L->bits == 32)
            continue;
        int b = L->bits;
        L->fmt = b <= 4 ? PS_QW_INT4 : PS_QW_INT8;
        L->ldw = L->fmt == PS_QW_INT8 ? L->Kp : ps_qint4_row_bytes(L->Kp);
        if (!L->vq[b]) { /* quantize once per bit width, then switch pointers */
            L->vq[b] = calloc((size_t)(L->N * L->Kp), 1);
            L->vscale[b] = malloc((size_t)L->N * sizeof(float));
            L->vdq[b] = malloc((size_t)(L->N * L->K) * sizeof(float));
            int8_t *codes = calloc((size_t)(L->N * L->Kp), 1);
            int8_t *tmp = malloc((size_t)(L->N * L->K));
            psq_wspec s = {.bits = b, .gran = PSQ_PER_CHANNEL, .scale_bytes = 4};
            int rc = !L->vq[b] || !L->vscale[b] || !L->vdq[b] || !codes || !tmp
                         ? ps_errf(e, PS_ERUN, "qcnn: out of memory")
                         : psq_quantize_weights(L->wf, (size_t)L->N, (size_t)L->K, &s, tmp,
                                                L->vscale[b], e);
            if (!rc) {
                for (int64_t n = 0; n < L->N; n++)
                    for (int64_t k = 0; k < L->K; k++) {
                        codes[n * L->Kp + k] = tmp[n * L->K + k];
                        L->vdq[b][n * L->K + k] = L->vscale[b][n] * (float)tmp[n * L->K + k];
                    }
                if (L->fmt == PS_QW_INT8)
                    memcpy(L->vq[b], codes, (size_t)(L->N * L->Kp));
                else
                    ps_qpack_int4(codes, L->N, L->Kp, L->vq[b]);
            }
            free(codes);
            free(tmp);
            if (rc) {
                free(L->vq[b]);
                free(L->vscale[b]);
                free(L->vdq[b]);
                L->vq[b] = NULL;
                L->vscale[b] = NULL;
                L->vdq[b] = NULL;
                L->bits = 32;
                return rc;
            }
        }
        L->wq = L->vq[b];
        L->wscale = L->vscale[b];
        L->wdq = L->vdq[b];
        L->a_signed = L->a_min < 0;
        double r = L->a_signed ? fmax(fabs(L->a_min), fabs(L->a_max)) : L->a_max;
        L->a_scale = (float)(r / (L->a_signed ? 127.0 : 255.0));
    }
    return 0;
}

void qcnn_load_input(qcnn *q, const float *x, int64_t n)
{
    int64_t C = q->in_c, HW = q->in_h * q->in_w;
    float *d = q->act[0];
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < HW; p++)
            for (int64_t c = 0; c < C; c++)
                d[(i * HW + p) * C + c] = x[(i * C + c) * HW + p];
    q->cur_n = n;
}

/* round half away from zero, on the same float quotient as ps_qquant_u8 */
static void quant_s8_exact(const float *x, size_t n, float scale, uint8_t *q)
{
    if (!(scale > 0)) {
        memset(q, 0, n);
        return;
    }
    float inv = 1.0f / scale;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        v = v < -127 ? -127 : (v > 127 ? 127 : v);
        int c = (int)(v < 0 ? v - 0.5f : v + 0.5f);
        q[i] = (uint8_t)(int8_t)c;
    }
}

/* Row-per-pixel im2col of a NHWC image batch, element type T, rows of ld. */
#define IM2COL(T, src, dst, ld)                                                                   \
    do {                                                                                          \
        int64_t C = L->cin, H = L->h, W = L->w, ks = L->ks, pd = L->pad;                          \
        for (int64_t i = 0; i < n; i++)                                                           \
            for (int64_t oy = 0; oy < L->oh; oy++)                                                \
                for (int64_t ox = 0; ox < L->ow; ox++) {                                          \
                    T *row = (dst) + ((i * L->oh + oy) * L->ow + ox) * (ld);                      \
                    for (int64_t ky = 0; ky < ks; ky++) {                                         \
                        int64_t y = oy + ky - pd;                                                 \
                        for (int64_t kx = 0; kx < ks; kx++) {                                     \
                            int64_t xx = ox + kx - pd;                                            \
                            T *r = row + (ky * ks + kx) * C;                                      \
                            if (y < 0 || y >= H || xx < 0 || xx >= W)                             \
                                memset(r, 0, (size_t)C * sizeof(T));                              \
                            else if (C == 1)                                                      \
                                r[0] = (src)[(i * H + y) * W + xx];                               \
                            else                                                                  \
                                memcpy(r, (src) + ((i * H + y) * W + xx) * C,                     \
                                       (size_t)C * sizeof(T));                                    \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
    } while (0)

int qcnn_layer_forward(qcnn *q, int l, int64_t n, int ref, ps_err *e)
{
    qcnn_layer *L = &q->L[l];
    const float *in = q->act[l];
    int64_t M = n * L->oh * L->ow, N = L->N;
    float *out = L->pool ? q->out : q->act[l + 1];
    double t0 = q->timing ? qcnn_now(q) : 0, tg = 0;
    int64_t nin = n * (L->conv ? L->h * L->w * L->cin : L->K);
    if (L->bits == 32 || ref) {
        const float *A = in;
        if (L->bits != 32) { /* fake-quant the input with the deployed scale */
            if (L->a_signed)
                quant_s8_exact(in, (size_t)nin, L->a_scale, q->qin);
            else
                ps_qquant_u8(in, (size_t)nin, L->a_scale, q->qin);
        }
        if (L->conv && L->bits == 32) {
            IM2COL(float, in, q->colf, L->K);
            A = q->colf;
        } else if (L->bits != 32) {
            const uint8_t *qc = q->qin;
            if (L->conv) {
                IM2COL(uint8_t, q->qin, q->colq, L->K);
                qc = q->colq;
            }
            for (int64_t i = 0; i < M * L->K; i++)
                q->colf[i] = L->a_scale * (float)(L->a_signed ? (int8_t)qc[i] : qc[i]);
            A = q->colf;
        }
        double g0 = q->timing ? qcnn_now(q) : 0;
        ps_cpu_sgemm(0, 1, M, N, L->K, 1.0f, A, L->K, L->bits == 32 ? L->wf : L->wdq, L->K, 0.0f,
                     out, N);
        if (q->timing)
            tg = qcnn_now(q) - g0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float v = out[i * N + j] + L->bias[j];
                out[i * N + j] = L->relu && v < 0 ? 0 : v;
            }
    } else {
        if (L->a_signed)
            quant_s8_exact(in, (size_t)nin, L->a_scale, q->qin);
        else
            ps_qquant_u8(in, (size_t)nin, L->a_scale, q->qin);
        const uint8_t *A = q->qin;
        if (L->conv || L->Kp != L->K) {
            if (L->conv) {
                IM2COL(uint8_t, q->qin, q->colq, L->Kp);
            } else {
                for (int64_t i = 0; i < M; i++)
                    memcpy(q->colq + i * L->Kp, q->qin + i * L->K, (size_t)L->K);
            }
            if (L->Kp != L->K) /* zero the pad columns (the reference path reuses colq) */
                for (int64_t i = 0; i < M; i++)
                    memset(q->colq + i * L->Kp + L->K, 0, (size_t)(L->Kp - L->K));
            A = q->colq;
        }
        double g0 = q->timing ? qcnn_now(q) : 0;
        if (ps_qgemm_s32(q->path, M, N, L->Kp, A, L->a_signed ? PS_QACT_S8 : PS_QACT_U8, L->Kp,
                         L->wq, L->fmt, L->ldw, q->acc, N))
            return ps_errf(e, PS_ERUN, "qcnn: qgemm rejected layer %s", L->name);
        if (q->timing)
            tg = qcnn_now(q) - g0;
        ps_qgemm_dequant(M, N, q->acc, N, L->a_scale, L->wscale, L->bias, L->relu, out, N);
    }
    if (L->pool) {
        int64_t oh = L->oh / 2, ow = L->ow / 2;
        float *dst = q->act[l + 1];
        for (int64_t i = 0; i < n; i++)
            for (int64_t y = 0; y < oh; y++)
                for (int64_t x = 0; x < ow; x++) {
                    const float *p00 = out + ((i * L->oh + 2 * y) * L->ow + 2 * x) * N;
                    const float *p01 = p00 + N, *p10 = p00 + L->ow * N, *p11 = p10 + N;
                    float *d = dst + ((i * oh + y) * ow + x) * N;
                    for (int64_t j = 0; j < N; j++) {
                        float m = p00[j] > p01[j] ? p00[j] : p01[j];
                        float m2 = p10[j] > p11[j] ? p10[j] : p11[j];
                        d[j] = m > m2 ? m : m2;
                    }
                }
    }
    if (q->timing) {
        L->t_gemm = tg;
        L->t_other = qcnn_now(q) - t0 - tg;
    }
    return 0;
}

static int forward(qcnn *q, const float *x, int64_t n, float *logits, int ref, ps_err *e)
{
    if (n < 1 || n > q->max_batch)
        return ps_errf(e, PS_EINPUT, "qcnn_forward: n = %lld outside 1..%lld", (long long)n,
                       (long long)q->max_batch);
    qcnn_load_input(q, x, n);
    for (int l = 0; l < q->nl; l++)
        if (qcnn_layer_forward(q, l, n, ref, e))
            return e ? e->code : PS_ERUN;
    if (logits)
        memcpy(logits, q->act[q->nl], (size_t)(n * q->classes) * sizeof(float));
    return 0;
}

int qcnn_forward(qcnn *q, const float *x, int64_t n, float *logits, ps_err *e)
{
    return forward(q, x, n, logits, 0, e);
}

int qcnn_forward_ref(qcnn *q, const float *x, int64_t n, float *logits, ps_err *e)
{
    return forward(q, x, n, logits, 1, e);
}

int qcnn_calibrate(qcnn *q, const float *x, int64_t n, ps_err *e)
{
    int saved[QCNN_MAXL];
    for (int l = 0; l < q->nl; l++) {
        saved[l] = q->L[l].bits;
        q->L[l].bits = 32;
    }
    int rc = 0;
    if (n < 1 || n > q->max_batch)
        rc = ps_errf(e, PS_EINPUT, "qcnn_calibrate: n = %lld outside 1..%lld", (long long)n,
                     (long long)q->max_batch);
    else {
        qcnn_load_input(q, x, n);
        for (int l = 0; l < q->nl && !rc; l++) {
            qcnn_layer *L = &q->L[l];
            int64_t nin = n * (L->conv ? L->h * L->w * L->cin : L->K);
            double lo = INFINITY, hi = -INFINITY;
            for (int64_t i = 0; i < nin; i++) {
                lo = fmin(lo, q->act[l][i]);
                hi = fmax(hi, q->act[l][i]);
            }
            L->a_min = lo;
            L->a_max = hi;
            rc = qcnn_layer_forward(q, l, n, 0, e);
        }
    }
    for (int l = 0; l < q->nl; l++)
        q->L[l].bits = saved[l];
    return rc;
}
