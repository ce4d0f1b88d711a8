/* sim/quant/quantizer.h: the deployment quantizer (symmetric uniform weights,
 * unsigned post-ReLU activations) used for Ω, sizes and fake-quant PTQ.
 *
 * Weights.  A tensor is viewed as n_ch rows ("output channels") of `per`
 * contiguous values (n = n_ch·per; for a conv weight [Cout, Cin, kh, kw]
 * n_ch = Cout, per = Cin·kh·kw; for a row-major linear weight [out, in]
 * n_ch = out, per = in).  Granularity PSQ_PER_TENSOR uses one scale for all
 * n values, PSQ_PER_CHANNEL one scale per row.
 *   qmax = 2^{b−1} − 1                      (b in 2..8: 1, 3, 7, 31, 127 ...)
 *   s    = max|w| / qmax   over the group   (s = 0 when the group is all 0)
 *   q    = clamp(round_half_away(w·qmax / max|w|), −qmax, qmax)   (= w/s)
 *   Q(w) = s·q                                (dequantized; exactly 0 if s = 0)
 * The range is symmetric and −2^{b−1} is never used, so with max-scaling no
 * value is ever clamped and |Q(w) − w| ≤ s/2 for every element.  Rounding
 * is half away from zero (C's round()); the quotient w·qmax/max|w| is
 * computed in double (so exact half-way cases round as written); the scale
 * s is stored as float and Q(w) = s·q is computed in float.  Idempotent: Q(Q(w)) = Q(w) (the max element maps to ±qmax·s).
 *
 * Size.  Bits are packed densely: ceil(n·b / 8) bytes of integer codes per
 * tensor, plus one scale per group of `scale_bytes` bytes (4 = fp32,
 * 2 = fp16; the default PSQ_SCALE_BYTES is 4).  Biases are not quantized
 * and not counted here (the caller adds them at fp32 if it wants).
 *
 * Activations (after ReLU, so ≥ 0).  Unsigned b-bit, zero point 0:
 *   qmax_a = 2^b − 1,   s_a = range / qmax_a,
 *   Q(x) = s_a · clamp(round(x / s_a), 0, qmax_a)   (negatives → 0).
 * `range` is calibrated on a calibration set: PSQ_CAL_MAX takes the maximum
 * value seen; PSQ_CAL_PERCENTILE takes the p-th percentile (p in (0,100],
 * nearest-rank on the sorted values, so p = 100 equals the max).  Values
 * above the range are clamped to qmax_a·s_a. */
#ifndef PS_QUANT_QUANTIZER_H
#define PS_QUANT_QUANTIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define PSQ_BITS_MIN 2
#define PSQ_BITS_MAX 8
#define PSQ_SCALE_BYTES 4

typedef enum { PSQ_PER_TENSOR = 0, PSQ_PER_CHANNEL = 1 } psq_gran;

typedef struct psq_wspec {
    int bits;         /* 2..8 */
    psq_gran gran;    /* per tensor or per output channel */
    int scale_bytes;  /* 4 (fp32) or 2 (fp16); 0 means PSQ_SCALE_BYTES */
} psq_wspec;

/* qmax = 2^{bits-1} − 1 for signed symmetric weights (bits 2..8). */
int psq_qmax_signed(int bits);
/* 2^bits − 1 for unsigned activations. */
int psq_qmax_unsigned(int bits);

/* Scales for w (n_ch rows of `per` values): writes 1 scale (per tensor) or
 * n_ch scales (per channel) to scales[] (which must hold n_ch).  Returns the
 * number of scales written, or −1 with e set (bad bits / sizes). */
int psq_weight_scales(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                      float *scales, ps_err *e);

/* Quantize to integer codes (int8 holds every b ≤ 8) and the scales.  codes
 * has n_ch·per entries; scales as psq_weight_scales.  0 or PS_EINPUT. */
int psq_quantize_weights(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                         int8_t *codes, float *scales, ps_err *e);

/* Fake-quant: out = Q(w) (dequantized), out may equal w (in place).  If
 * err2 is not NULL it receives ‖Q(w) − w‖² (accumulated in double). */
int psq_fake_quant_weights(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                           float *out, double *err2, ps_err *e);

/* ‖Q_b(W) − W‖² without writing anything; < 0 on bad input (e set). */
double psq_weight_err2(const float *w, size_t n_ch, size_t per, const psq_wspec *spec,
                       ps_err *e);

/* Bytes of the deployed tensor: ceil(n_ch·per·bits / 8) + n_scales·scale_bytes,
 * n_scales = 1 (per tensor) or n_ch (per channel). */
double psq_weight_bytes(size_t n_ch, size_t per, const psq_wspec *spec);

/* Pack / unpack b-bit two's-complement codes densely, little-endian bit
 * order (code i occupies bits [i·b, i·b + b) of the byte stream).  packed
 * must hold ceil(n·b/8) bytes.  Round trip is exact for codes in range. */
void psq_pack_codes(const int8_t *codes, size_t n, int bits, uint8_t *packed);
void psq_unpack_codes(const uint8_t *packed, size_t n, int bits, int8_t *codes);

/* ---- activations ---- */

typedef enum { PSQ_CAL_MAX = 0, PSQ_CAL_PERCENTILE = 1 } psq_calib;

/* Range from calibration values x[0..n): max, or the p-th percentile
 * (nearest rank: sorted[ceil(p/100·n) − 1]) of the values (negatives count
 * as they are; after ReLU they are 0).  Returns the range (≥ 0) or −1 with e
 * set.  Percentile sorts a private copy. */
double psq_act_range(const float *x, size_t n, psq_calib mode, double pct, ps_err *e);

/* Fake-quant activations in place (or out-of-place, out may equal x):
 * unsigned `bits` (2..8), zero point 0, given range (≥ 0; range 0 maps
 * everything to 0).  err2 (optional) receives ‖Q(x) − x‖². */
int psq_fake_quant_act(const float *x, size_t n, int bits, double range, float *out,
                       double *err2, ps_err *e);

#endif
