/* The deployment quantizer: see quantizer.h for the definitions. */
#include "sim/quant/quantizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int psq_qmax_signed(int bits)
{
    return (bits < 1 || bits > 31) ? 0 : (1 << (bits - 1)) - 1;
}

int psq_qmax_unsigned(int bits)
{
    return (bits < 1 || bits > 30) ? 0 : (1 << bits) - 1;
}

static int check_w(size_t n_ch, size_t per, const psq_wspec *spec, ps_err *e)
{
    if (!spec)
        return ps_errf(e, PS_EINPUT, "quantizer: spec is NULL");
    if (spec->bits < PSQ_BITS_MIN || spec->bits > PSQ_BITS_MAX)
        return ps_errf(e, PS_EINPUT, "quantizer: bits %d outside %d..%d", spec->bits,
                       PSQ_BITS_MIN, PSQ_BITS_MAX);
    if (spec->gran != PSQ_PER_TENSOR && spec->gran != PSQ_PER_CHANNEL)
        return ps_errf(e, PS_EINPUT, "quantizer: granularity %d unknown", (int)spec->gran);
    if (spec->scale_bytes != 0 && spec->scale_bytes != 2 && spec->scale_bytes != 4)
        return ps_errf(e, PS_EINPUT, "quantizer: scale_bytes %d (expected 2 or 4)",
                       spec->scale_bytes);
    if (n_ch == 0 || per == 0)
        return ps_errf(e, PS_EINPUT, "quantizer: empty tensor (%zu x %zu)", n_ch, per);
    return 0;
}

static float group_max(const float *w, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        if (a > m)
            m = a;
    }
    return m;
}

static float group_scale(const float *w, size_t n, int qmax)
{
    return group_max(w, n) / (float)qmax;
}

int psq_weight_scales(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                      float *scales, ps_err *e)
{
    if (check_w(n_ch, per, spec, e))
        return -1;
    int qmax = psq_qmax_signed(spec->bits);
    if (spec->gran == PSQ_PER_TENSOR) {
        scales[0] = group_scale(w, n_ch * per, qmax);
        return 1;
    }
    for (size_t c = 0; c < n_ch; c++)
        scales[c] = group_scale(w + c * per, per, qmax);
    return (int)n_ch;
}

/* q = round(w·qmax / m) with m = max|w| of the group, in double, so exact
 * half-way cases (w = m/2 at 2 bits ...) round as written, not as the float
 * scale's round-off decides. */
static inline int qcode(float w, float m, int qmax)
{
    if (m <= 0.0f)
        return 0;
    double q = round((double)w * qmax / (double)m);
    if (q > qmax)
        q = qmax;
    if (q < -qmax)
        q = -qmax;
    return (int)q;
}

/* Walk every element with its group's scale. */
static int walk(const float *w, size_t n_ch, size_t per, const psq_wspec *spec, int8_t *codes,
                float *scales_out, float *out, double *err2, ps_err *e)
{
    if (check_w(n_ch, per, spec, e))
        return PS_EINPUT;
    int qmax = psq_qmax_signed(spec->bits);
    double acc = 0.0;
    float m_tensor = spec->gran == PSQ_PER_TENSOR ? group_max(w, n_ch * per) : 0.0f;
    if (scales_out && spec->gran == PSQ_PER_TENSOR)
        scales_out[0] = m_tensor / (float)qmax;
    for (size_t c = 0; c < n_ch; c++) {
        float m = spec->gran == PSQ_PER_TENSOR ? m_tensor : group_max(w + c * per, per);
        float s = m / (float)qmax;
        if (scales_out && spec->gran == PSQ_PER_CHANNEL)
            scales_out[c] = s;
        for (size_t j = 0; j < per; j++) {
            size_t i = c * per + j;
            float x = w[i];
            int q = qcode(x, m, qmax);
            float d = s * (float)q;
            double diff = (double)d - (double)x;
            acc += diff * diff;
            if (codes)
                codes[i] = (int8_t)q;
            if (out)
                out[i] = d;
        }
    }
    if (err2)
        *err2 = acc;
    return 0;
}

int psq_quantize_weights(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                         int8_t *codes, float *scales, ps_err *e)
{
    return walk(w, n_ch, per, spec, codes, scales, NULL, NULL, e);
}

int psq_fake_quant_weights(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                           float *out, double *err2, ps_err *e)
{
    return walk(w, n_ch, per, spec, NULL, NULL, out, err2, e);
}

double psq_weight_err2(const float *w, size_t n_ch, size_t per, const psq_wspec *spec, ps_err *e)
{
    double r = 0.0;
    if (walk(w, n_ch, per, spec, NULL, NULL, NULL, &r, e))
        return -1.0;
    return r;
}

double psq_weight_bytes(size_t n_ch, size_t per, const psq_wspec *spec)
{
    int sb = spec->scale_bytes ? spec->scale_bytes : PSQ_SCALE_BYTES;
    double nsc = spec->gran == PSQ_PER_CHANNEL ? (double)n_ch : 1.0;
    unsigned long long bits = (unsigned long long)n_ch * per * (unsigned)spec->bits;
    return (double)((bits + 7) / 8) + nsc * sb;
}

void psq_pack_codes(const int8_t *codes, size_t n, int bits, uint8_t *packed)
{
    size_t nbytes = (n * (size_t)bits + 7) / 8;
    memset(packed, 0, nbytes);
    unsigned mask = (1u << bits) - 1u;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)(uint8_t)codes[i] & mask;
        size_t pos = i * (size_t)bits;
        for (int k = 0; k < bits; k++, pos++)
            if (v >> k & 1u)
                packed[pos >> 3] |= (uint8_t)(1u << (pos & 7));
    }
}

void psq_unpack_codes(const uint8_t *packed, size_t n, int bits, int8_t *codes)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        size_t pos = i * (size_t)bits;
        for (int k = 0; k < bits; k++, pos++)
            if (packed[pos >> 3] >> (pos & 7) & 1u)
                v |= 1u << k;
        if (v >> (bits - 1) & 1u) /* sign-extend */
            v |= ~((1u << bits) - 1u);
        codes[i] = (int8_t)(int)v;
    }
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double psq_act_range(const float *x, size_t n, psq_calib mode, double pct, ps_err *e)
{
    if (n == 0) {
        ps_errf(e, PS_EINPUT, "quantizer: activation calibration set is empty");
        return -1.0;
    }
    if (mode == PSQ_CAL_MAX) {
        float m = 0.0f;
        for (size_t i = 0; i < n; i++)
            if (x[i] > m)
                m = x[i];
        return m;
    }
    if (mode != PSQ_CAL_PERCENTILE || !(pct > 0.0 && pct <= 100.0)) {
        ps_errf(e, PS_EINPUT, "quantizer: calibration mode %d / percentile %g invalid",
                (int)mode, pct);
        return -1.0;
    }
    float *c = malloc(n * sizeof *c);
    if (!c) {
        ps_errf(e, PS_ERUN, "quantizer: out of memory (%zu values)", n);
        return -1.0;
    }
    memcpy(c, x, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_f);
    size_t k = (size_t)ceil(pct / 100.0 * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    double r = c[k - 1];
    free(c);
    return r < 0 ? 0.0 : r;
}

int psq_fake_quant_act(const float *x, size_t n, int bits, double range, float *out,
                       double *err2, ps_err *e)
{
    if (bits < PSQ_BITS_MIN || bits > PSQ_BITS_MAX)
        return ps_errf(e, PS_EINPUT, "quantizer: activation bits %d outside %d..%d", bits,
                       PSQ_BITS_MIN, PSQ_BITS_MAX);
    if (!(range >= 0.0) || !isfinite(range))
        return ps_errf(e, PS_EINPUT, "quantizer: activation range %g invalid", range);
    int qmax = psq_qmax_unsigned(bits);
    float s = (float)(range / qmax);
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i], d;
        if (s <= 0.0f || v <= 0.0f) {
            d = 0.0f;
        } else {
            double q = round((double)v / (double)s);
            if (q > qmax)
                q = qmax;
            d = s * (float)q;
        }
        double diff = (double)d - (double)v;
        acc += diff * diff;
        out[i] = d;
    }
    if (err2)
        *err2 = acc;
    return 0;
}
