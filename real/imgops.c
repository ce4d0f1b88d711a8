/* Image resampling and quality metrics (real/imgops.h has the definitions). */
#include "real/imgops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double img_keys_cubic(double t, double a)
{
    t = fabs(t);
    if (t < 1.0)
        return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    if (t < 2.0)
        return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
    return 0.0;
}

int img_down_area(const float *x, int64_t n, int h, int w, int f, float *y, ps_err *e)
{
    if (f < 1 || h < 1 || w < 1 || h % f || w % f)
        return ps_errf(e, PS_EINPUT,
                       "img_down_area: factor %d must be >= 1 and divide the %d x %d image", f,
                       h, w);
    if (n < 0)
        return ps_errf(e, PS_EINPUT, "img_down_area: negative image count %lld", (long long)n);
    int oh = h / f, ow = w / f;
    double inv = 1.0 / ((double)f * f);
    for (int64_t b = 0; b < n; b++) {
        const float *xi = x + b * (int64_t)h * w;
        float *yi = y + b * (int64_t)oh * ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double s = 0;
                for (int u = 0; u < f; u++)
                    for (int v = 0; v < f; v++)
                        s += xi[(i * f + u) * w + j * f + v];
                yi[i * ow + j] = (float)(s * inv);
            }
    }
    return 0;
}

int img_bicubic_weights(int in, int out, double *W, ps_err *e)
{
    if (in < 1 || out < 1)
        return ps_errf(e, PS_EINPUT, "img_bicubic_weights: sides must be >= 1 (in %d, out %d)",
                       in, out);
    double s = (double)in / out;
    double fs = s > 1.0 ? s : 1.0; /* stretch only when shrinking (antialias) */
    for (int i = 0; i < out; i++) {
        double c = (i + 0.5) * s, sum = 0;
        double *row = W + (size_t)i * in;
        for (int j = 0; j < in; j++) {
            row[j] = img_keys_cubic(((j + 0.5) - c) / fs, IMG_BICUBIC_A);
            sum += row[j];
        }
        /* The window is cut at the borders: renormalise what is left. */
        for (int j = 0; j < in; j++)
            row[j] /= sum;
    }
    return 0;
}

int img_resize_bicubic(const float *x, int64_t n, int h, int w, int oh, int ow, float *y,
                       ps_err *e)
{
    if (h < 1 || w < 1 || oh < 1 || ow < 1)
        return ps_errf(e, PS_EINPUT, "img_resize_bicubic: sides must be >= 1 (%d x %d -> %d x %d)",
                       h, w, oh, ow);
    if (n < 0)
        return ps_errf(e, PS_EINPUT, "img_resize_bicubic: negative image count %lld",
                       (long long)n);
    double *Wr = malloc(sizeof(double) * (size_t)oh * h);
    double *Wc = malloc(sizeof(double) * (size_t)ow * w);
    double *tmp = malloc(sizeof(double) * (size_t)h * ow);
    int rc = 0;
    if (!Wr || !Wc || !tmp) {
        rc = ps_errf(e, PS_ERUN, "img_resize_bicubic: out of memory");
        goto done;
    }
    if ((rc = img_bicubic_weights(h, oh, Wr, e)) || (rc = img_bicubic_weights(w, ow, Wc, e)))
        goto done;
    for (int64_t b = 0; b < n; b++) {
        const float *xi = x + b * (int64_t)h * w;
        float *yi = y + b * (int64_t)oh * ow;
        /* Horizontal pass: tmp[h, ow]. */
        for (int r = 0; r < h; r++)
            for (int j = 0; j < ow; j++) {
                const double *wr = Wc + (size_t)j * w;
                double s = 0;
                for (int v = 0; v < w; v++)
                    if (wr[v] != 0.0)
                        s += wr[v] * xi[r * w + v];
                tmp[(size_t)r * ow + j] = s;
            }
        /* Vertical pass. */
        for (int i = 0; i < oh; i++) {
            const double *wr = Wr + (size_t)i * h;
            for (int j = 0; j < ow; j++) {
                double s = 0;
                for (int u = 0; u < h; u++)
                    if (wr[u] != 0.0)
                        s += wr[u] * tmp[(size_t)u * ow + j];
                yi[i * ow + j] = (float)s;
            }
        }
    }
done:
    free(Wr);
    free(Wc);
    free(tmp);
    return rc;
}

double img_mse(const float *a, const float *b, size_t n)
{
    if (n == 0)
        return 0.0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s / n;
}

double img_psnr(const float *a, const float *b, size_t n, double range)
{
    double mse = img_mse(a, b, n);
    if (mse <= 0)
        return INFINITY;
    return 10.0 * log10(range * range / mse);
}

static int ssim_check(int h, int w, int win, double sigma, double range, ps_err *e)
{
    if (h < 1 || w < 1)
        return ps_errf(e, PS_EINPUT, "img_ssim: image sides must be >= 1 (%d x %d)", h, w);
    if (win < 1 || win % 2 == 0 || win > h || win > w)
        return ps_errf(e, PS_EINPUT,
                       "img_ssim: window %d must be odd and fit the %d x %d image", win, h, w);
    if (!(sigma > 0) || !(range > 0))
        return ps_errf(e, PS_EINPUT, "img_ssim: sigma (%g) and range (%g) must be > 0", sigma,
                       range);
    return 0;
}

/* Normalised 2-D Gaussian window g[win * win]. */
static void gauss_window(int win, double sigma, double *g)
{
    int r = win / 2;
    double sum = 0;
    for (int u = -r; u <= r; u++)
        for (int v = -r; v <= r; v++) {
            double val = exp(-(u * u + v * v) / (2.0 * sigma * sigma));
            g[(u + r) * win + (v + r)] = val;
            sum += val;
        }
    for (int i = 0; i < win * win; i++)
        g[i] /= sum;
}

static double ssim_one(const float *a, const float *b, int h, int w, int win, const double *g,
                       double c1, double c2)
{
    double total = 0;
    int npos = 0;
    for (int i = 0; i + win <= h; i++)
        for (int j = 0; j + win <= w; j++) {
            double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
            for (int u = 0; u < win; u++)
                for (int v = 0; v < win; v++) {
                    double wt = g[u * win + v];
                    double xa = a[(i + u) * w + j + v], xb = b[(i + u) * w + j + v];
                    ma += wt * xa;
                    mb += wt * xb;
                    saa += wt * xa * xa;
                    sbb += wt * xb * xb;
                    sab += wt * xa * xb;
                }
            double va = saa - ma * ma, vb = sbb - mb * mb, cov = sab - ma * mb;
            total += (2 * ma * mb + c1) * (2 * cov + c2) /
                     ((ma * ma + mb * mb + c1) * (va + vb + c2));
            npos++;
        }
    return total / npos;
}

int img_ssim(const float *a, const float *b, int h, int w, int win, double sigma, double range,
             double *out, ps_err *e)
{
    return img_ssim_batch(a, b, 1, h, w, win, sigma, range, out, NULL, e);
}

int img_ssim_batch(const float *a, const float *b, int64_t n, int h, int w, int win,
                   double sigma, double range, double *mean, double *per, ps_err *e)
{
    int rc = ssim_check(h, w, win, sigma, range, e);
    if (rc)
        return rc;
    if (n < 1)
        return ps_errf(e, PS_EINPUT, "img_ssim: need at least one image pair (got %lld)",
                       (long long)n);
    double *g = malloc(sizeof(double) * (size_t)win * win);
    if (!g)
        return ps_errf(e, PS_ERUN, "img_ssim: out of memory");
    gauss_window(win, sigma, g);
    double c1 = (IMG_SSIM_K1 * range) * (IMG_SSIM_K1 * range);
    double c2 = (IMG_SSIM_K2 * range) * (IMG_SSIM_K2 * range);
    double s = 0;
    for (int64_t k = 0; k < n; k++) {
        double v = ssim_one(a + k * (int64_t)h * w, b + k * (int64_t)h * w, h, w, win, g, c1, c2);
        if (per)
            per[k] = v;
        s += v;
    }
    free(g);
    *mean = s / n;
    return 0;
}
