/* -O2 vectorizes only loops whose trip count needs no epilogue (GCC 12's
 * "very cheap" cost model); these memory-bound loops run 2-4x faster with
 * the dynamic model.  Clang ignores the pragma and vectorizes anyway. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include "cpu_ops.h"

#include <math.h>
#include <string.h>

static const char *const EW_NAMES[] = {"relu", "gelu", "tanh", "sigmoid", "add", "mul", NULL};

int ps_cpu_ew_parse(const char *s)
{
    for (int i = 0; s && EW_NAMES[i]; i++)
        if (!strcmp(EW_NAMES[i], s))
            return i;
    return -1;
}

int ps_cpu_ew_is_binary(ps_cpu_ew_op op)
{
    return op == PS_CPU_EW_ADD || op == PS_CPU_EW_MUL;
}

void ps_cpu_elementwise(ps_cpu_ew_op op, size_t n, const float *a, const float *b, float *y)
{
    /* One loop per op so that each vectorizes on its own. */
    switch (op) {
    case PS_CPU_EW_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = a[i] > 0.0f ? a[i] : 0.0f;
        break;
    case PS_CPU_EW_GELU:
        for (size_t i = 0; i < n; i++)
            y[i] = 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f));
        break;
    case PS_CPU_EW_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(a[i]);
        break;
    case PS_CPU_EW_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-a[i]));
        break;
    case PS_CPU_EW_ADD:
        for (size_t i = 0; i < n; i++)
            y[i] = a[i] + b[i];
        break;
    case PS_CPU_EW_MUL:
        for (size_t i = 0; i < n; i++)
            y[i] = a[i] * b[i];
        break;
    }
}

int ps_cpu_red_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "softmax"))
        return PS_CPU_RED_SOFTMAX;
    if (!strcmp(s, "layernorm"))
        return PS_CPU_RED_LAYERNORM;
    if (!strcmp(s, "sum"))
        return PS_CPU_RED_SUM;
    return -1;
}

static void softmax_row(int64_t cols, const float *x, float *y)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < cols; j++)
        mx = x[j] > mx ? x[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < cols; j++) {
        float v = expf(x[j] - mx);
        y[j] = v;
        sum += v;
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < cols; j++)
        y[j] *= inv;
}

static void layernorm_row(int64_t cols, const float *x, const float *gamma, const float *beta,
                          float *y)
{
    double s = 0, s2 = 0;
    for (int64_t j = 0; j < cols; j++) {
        s += x[j];
        s2 += (double)x[j] * x[j];
    }
    double mean = s / cols, var = s2 / cols - mean * mean;
    if (var < 0)
        var = 0;
    float m = (float)mean, inv = (float)(1.0 / sqrt(var + PS_CPU_LAYERNORM_EPS));
    for (int64_t j = 0; j < cols; j++) {
        float v = (x[j] - m) * inv;
        y[j] = v * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
    }
}

void ps_cpu_reduction(ps_cpu_red_op op, int64_t rows, int64_t cols, const float *x,
                      const float *gamma, const float *beta, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        switch (op) {
        case PS_CPU_RED_SOFTMAX: softmax_row(cols, xr, y + r * cols); break;
        case PS_CPU_RED_LAYERNORM: layernorm_row(cols, xr, gamma, beta, y + r * cols); break;
        case PS_CPU_RED_SUM: {
            double s = 0;
            for (int64_t j = 0; j < cols; j++)
                s += xr[j];
            y[r] = (float)s;
            break;
        }
        }
    }
}

int ps_cpu_embedding_bag(int64_t rows, int64_t dim, int64_t bag, int64_t batch,
                         const float *table, const int64_t *idx, int mean, float *out)
{
    for (int64_t i = 0; i < batch; i++) {
        /* restrict: the output row never aliases the table, so the row sums
         * vectorize. */
        float *restrict o = out + i * dim;
        memset(o, 0, (size_t)dim * sizeof *o);
        for (int64_t j = 0; j < bag; j++) {
            int64_t t = idx[i * bag + j];
            if (t < 0 || t >= rows)
                return -1;
            const float *restrict src = table + t * dim;
            for (int64_t c = 0; c < dim; c++)
                o[c] += src[c];
        }
        if (mean && bag > 0) {
            float inv = 1.0f / (float)bag;
            for (int64_t c = 0; c < dim; c++)
                o[c] *= inv;
        }
    }
    return 0;
}

void ps_cpu_memcpy(void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
}
