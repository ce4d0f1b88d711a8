/* The dynamic vectorizer cost model: see kernels/cpu_ops.c. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include "cpu_conv.h"

#include <stdlib.h>
#include <string.h>

#include "cpu_blas.h"

int64_t ps_cpu_conv_out_h(const ps_cpu_conv *g)
{
    if (g->stride < 1 || g->h + 2 * g->pad < g->r)
        return 0;
    return (g->h + 2 * g->pad - g->r) / g->stride + 1;
}

int64_t ps_cpu_conv_out_w(const ps_cpu_conv *g)
{
    if (g->stride < 1 || g->w + 2 * g->pad < g->s)
        return 0;
    return (g->w + 2 * g->pad - g->s) / g->stride + 1;
}

size_t ps_cpu_conv2d_work_floats(const ps_cpu_conv *g)
{
    return (size_t)(g->c * g->r * g->s * ps_cpu_conv_out_h(g) * ps_cpu_conv_out_w(g));
}

/* Row (ci, fy, fx) of col holds x[ci, oy·stride + fy - pad, ox·stride + fx - pad]
 * for every output pixel (oy, ox); outside the image it is the zero pad. */
void ps_cpu_im2col(const ps_cpu_conv *g, const float *x, float *col)
{
    const int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t fy = 0; fy < g->r; fy++)
            for (int64_t fx = 0; fx < g->s; fx++) {
                float *row = col + ((ci * g->r + fy) * g->s + fx) * oh * ow;
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * g->stride + fy - g->pad;
                    float *dst = row + oy * ow;
                    if (iy < 0 || iy >= g->h) {
                        memset(dst, 0, (size_t)ow * sizeof *dst);
                        continue;
                    }
                    const float *src = x + (ci * g->h + iy) * g->w;
                    if (g->stride == 1) {
                        /* Contiguous run: only the edges touch the pad. */
                        for (int64_t ox = 0; ox < ow; ox++) {
                            int64_t ix = ox + fx - g->pad;
                            dst[ox] = ix >= 0 && ix < g->w ? src[ix] : 0.0f;
                        }
                    } else {
                        for (int64_t ox = 0; ox < ow; ox++) {
                            int64_t ix = ox * g->stride + fx - g->pad;
                            dst[ox] = ix >= 0 && ix < g->w ? src[ix] : 0.0f;
                        }
                    }
                }
            }
}

void ps_cpu_col2im(const ps_cpu_conv *g, const float *col, float *x)
{
    const int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t fy = 0; fy < g->r; fy++)
            for (int64_t fx = 0; fx < g->s; fx++) {
                const float *row = col + ((ci * g->r + fy) * g->s + fx) * oh * ow;
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * g->stride + fy - g->pad;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    float *dst = x + (ci * g->h + iy) * g->w;
                    const float *src = row + oy * ow;
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t ix = ox * g->stride + fx - g->pad;
                        if (ix >= 0 && ix < g->w)
                            dst[ix] += src[ox];
                    }
                }
            }
}

static float *work_or_alloc(const ps_cpu_conv *g, float *work, float **own)
{
    *own = NULL;
    if (work)
        return work;
    *own = malloc(ps_cpu_conv2d_work_floats(g) * sizeof(float) + 1);
    return *own;
}

int ps_cpu_conv2d_fwd(const ps_cpu_conv *g, const float *x, const float *wt, float *y,
                      float *work)
{
    const int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    if (oh < 1 || ow < 1)
        return -1;
    float *own, *col = work_or_alloc(g, work, &own);
    if (!col)
        return -1;
    const int64_t crs = g->c * g->r * g->s, p = oh * ow;
    for (int64_t i = 0; i < g->n; i++) {
        ps_cpu_im2col(g, x + i * g->c * g->h * g->w, col);
        /* y[i] (k x p) = wt (k x crs) · col (crs x p) */
        ps_cpu_sgemm(0, 0, g->k, p, crs, 1.0f, wt, crs, col, p, 0.0f, y + i * g->k * p, p);
    }
    free(own);
    return 0;
}

int ps_cpu_conv2d_bwd_input(const ps_cpu_conv *g, const float *dy, const float *wt, float *dx,
                            float *work)
{
    const int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    if (oh < 1 || ow < 1)
        return -1;
    float *own, *col = work_or_alloc(g, work, &own);
    if (!col)
        return -1;
    const int64_t crs = g->c * g->r * g->s, p = oh * ow, img = g->c * g->h * g->w;
    memset(dx, 0, (size_t)(g->n * img) * sizeof *dx);
    for (int64_t i = 0; i < g->n; i++) {
        /* col (crs x p) = wt^T (crs x k) · dy[i] (k x p) */
        ps_cpu_sgemm(1, 0, crs, p, g->k, 1.0f, wt, crs, dy + i * g->k * p, p, 0.0f, col, p);
        ps_cpu_col2im(g, col, dx + i * img);
    }
    free(own);
    return 0;
}

int ps_cpu_conv2d_bwd_weight(const ps_cpu_conv *g, const float *x, const float *dy, float *dwt,
                             float *work)
{
    const int64_t oh = ps_cpu_conv_out_h(g), ow = ps_cpu_conv_out_w(g);
    if (oh < 1 || ow < 1)
        return -1;
    float *own, *col = work_or_alloc(g, work, &own);
    if (!col)
        return -1;
    const int64_t crs = g->c * g->r * g->s, p = oh * ow;
    for (int64_t i = 0; i < g->n; i++) {
        ps_cpu_im2col(g, x + i * g->c * g->h * g->w, col);
        /* dwt (k x crs) += dy[i] (k x p) · col^T (p x crs) */
        ps_cpu_sgemm(0, 1, g->k, crs, p, 1.0f, dy + i * g->k * p, p, col, p, i ? 1.0f : 0.0f,
                     dwt, crs);
    }
    free(own);
    return 0;
}
