/* Image operations and image-quality metrics for the projection study
 * (issue 8): area and bicubic resampling, PSNR, SSIM.
 *
 * Images are single-channel float arrays, row-major [h, w]; batched calls
 * take n images stored back to back.
 *
 * Resampling.  Pixel centres sit at half-integers: output pixel i of a
 * resize in -> out covers input coordinates [i s, (i + 1) s), s = in / out,
 * and its centre is (i + 0.5) s in input pixel units.
 *  - Area (img_down_area): the box average over f x f blocks, f an integer
 *    factor dividing both sides (28 -> 14: f = 2; 28 -> 7: f = 4).  It is
 *    what PIL's BOX filter and OpenCV's INTER_AREA compute for integer
 *    factors.
 *  - Bicubic (img_resize_bicubic): Keys' cubic convolution kernel with
 *    a = -0.5 (Keys 1981; the value PIL uses for BICUBIC),
 *        k(t) = (a+2)|t|^3 - (a+3)|t|^2 + 1        |t| < 1
 *             = a|t|^3 - 5a|t|^2 + 8a|t| - 4a      1 <= |t| < 2
 *             = 0                                  otherwise,
 *    separable (rows, then columns).  Down-sampling is ANTIALIASED as in
 *    PIL's Image.resize (ImagingResample) and PULSE's BicubicDownSample: the
 *    kernel is stretched by the scale s = in / out > 1 (support 2 s, weight
 *    of input pixel j for output i = k(((j + 0.5) - (i + 0.5) s) / s)).
 *    Up-sampling (s < 1) uses the kernel unstretched (support 2).  At the
 *    borders the window is cut to the image and the remaining weights are
 *    renormalised to sum 1 (PIL's convention; no padding).  Consequences the
 *    tests check: a constant image stays constant exactly; a linear ramp is
 *    reproduced exactly away from the borders (the weights are symmetric
 *    about the centre and sum to 1).
 *
 * Metrics (images compared must have the same shape):
 *  - PSNR = 10 log10(range^2 / MSE) dB, range = the data range (max - min
 *    of the representable values: 1 for [0, 1] images, 2 for [-1, 1]
 *    images, 255 for bytes).  MSE 0 gives +inf.
 *  - SSIM (Wang, Bovik, Sheikh, Simoncelli 2004, "Image quality assessment:
 *    from error visibility to structural similarity", IEEE TIP 13(4)):
 *    local statistics under a normalised Gaussian window (sigma 1.5; side
 *    11 in the paper, 7 recommended here for 28 x 28 images, which leaves
 *    22 x 22 window positions), weighted (biased) variances and covariance,
 *        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) /
 *               ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
 *    C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, L = range, averaged
 *    over the windows that lie entirely inside the image ("valid", as the
 *    authors' MATLAB ssim_index.m does; no padding). */
#ifndef PS_REAL_IMGOPS_H
#define PS_REAL_IMGOPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define IMG_BICUBIC_A (-0.5)
#define IMG_SSIM_K1 0.01
#define IMG_SSIM_K2 0.03
#define IMG_SSIM_SIGMA 1.5

/* Keys' cubic kernel k(t) with parameter a. */
double img_keys_cubic(double t, double a);

/* y[n, h/f, w/f] = box average of x[n, h, w] over f x f blocks.  PS_EINPUT
 * when f < 1 or f does not divide h and w. */
int img_down_area(const float *x, int64_t n, int h, int w, int f, float *y, ps_err *e);

/* y[n, oh, ow] = bicubic resize of x[n, h, w] (antialiased when shrinking;
 * see above).  PS_EINPUT on a side < 1. */
int img_resize_bicubic(const float *x, int64_t n, int h, int w, int oh, int ow, float *y,
                       ps_err *e);

/* The 1-D weights the bicubic resize uses along one axis: W[out * in],
 * row i = the weights of input pixels 0..in-1 for output i (rows sum to 1).
 * For tests and for building linear operators. */
int img_bicubic_weights(int in, int out, double *W, ps_err *e);

/* Mean squared error over n values. */
double img_mse(const float *a, const float *b, size_t n);
/* PSNR in dB of b against the reference a (n values) for a data range. */
double img_psnr(const float *a, const float *b, size_t n, double range);

/* SSIM of one image pair [h, w] with a win x win Gaussian window (win odd,
 * 1 <= win <= min(h, w)), sigma, data range L.  PS_EINPUT on bad sizes. */
int img_ssim(const float *a, const float *b, int h, int w, int win, double sigma, double range,
             double *out, ps_err *e);
/* Mean SSIM over n image pairs (per-image values into per[n] when non-NULL). */
int img_ssim_batch(const float *a, const float *b, int64_t n, int h, int w, int win,
                   double sigma, double range, double *mean, double *per, ps_err *e);

#endif
