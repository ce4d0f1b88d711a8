/* Integer matrix products on the CPU for quantized inference.
 *
 *   C[m, n] (int32) = Σ_k A[m, k] · W[n, k]
 *
 * A: activations, row-major m x k (row stride lda bytes), unsigned 8-bit
 *    (0..255, post-ReLU codes) or signed 8-bit (-128..127).
 * W: weights, one row per output channel (n x k), either
 *    - int8, row stride ldw bytes, values in -127..127 (never -128: the
 *      symmetric quantizer does not produce it, and the signed-activation
 *      AVX2 path negates weights), or
 *    - packed int4: two codes per byte, low nibble first (code k of a row is
 *      the low nibble of byte k/2 when k is even, the high nibble when odd),
 *      4-bit two's complement (-8..7; the quantizer uses -7..7), each row
 *      ceil(k/2) bytes (ldw >= that).  2- and 3-bit weights are stored in this
 *      int4 container (their codes, -1..1 and -3..3, fit): there is no denser
 *      2/3-bit kernel, so 2/3-bit layers run at int4 speed.
 *
 * Paths.  A portable scalar loop, an AVX2 kernel and an AVX-VNNI kernel
 * (runtime dispatch by __builtin_cpu_supports("avx2") / ("avxvnni")).  All
 * are exact: integer equality with the plain reference, no saturation.
 *   - AVX-VNNI: _mm256_dpbusd_avx_epi32 adds four u8·s8 products straight
 *     into int32 (no 16-bit intermediate); signed activations by the sign
 *     trick below.  Register tile 3 x 4.
 *   - unsigned activations: codes are widened to int16 (vpmovzxbw /
 *     vpmovsxbw) and multiplied with _mm256_madd_epi16 into int32.  We do NOT
 *     use _mm256_maddubs_epi16 here: it adds two u8·s8 products into a
 *     saturating int16, and 2·255·127 = 64770 > 32767, so it would saturate.
 *   - signed activations: the sign trick, |a| (as u8, ≤ 128) times
 *     sign(a)·w (s8, |w| ≤ 127) with _mm256_maddubs_epi16: a pair sums to at
 *     most 2·128·127 = 32512 ≤ 32767, so it never saturates; then
 *     _mm256_madd_epi16 with ones widens to int32.
 * int32 accumulation overflows only for k > 2^31 / (255·127) ≈ 66 000 (k is
 * limited to 65 536 here).
 *
 * Blocking: the product runs over panels of 64 rows of A × 128 rows of W ×
 * 1024 of k (a panel of W then stays in L2), with a 4 x 2 register tile
 * (AVX2) or 3 x 4 (VNNI);
 * int4 codes are unpacked in registers inside the tile. */
#ifndef PS_KERNELS_CPU_QGEMM_H
#define PS_KERNELS_CPU_QGEMM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PS_QACT_U8 = 0, PS_QACT_S8 = 1 } ps_qact;
typedef enum { PS_QW_INT8 = 0, PS_QW_INT4 = 1 } ps_qwfmt;
typedef enum {
    PS_QPATH_AUTO = 0,
    PS_QPATH_SCALAR = 1,
    PS_QPATH_AVX2 = 2,
    PS_QPATH_VNNI = 3
} ps_qpath;

#define PS_QGEMM_MAX_K 65536

/* 1 when the CPU runs the AVX2 path / the AVX-VNNI path. */
int ps_qgemm_have_avx2(void);
int ps_qgemm_have_vnni(void);
/* The path p resolves to on this CPU ("avxvnni" / "avx2" / "scalar"); AUTO
 * takes the best available. */
const char *ps_qgemm_path_name(ps_qpath p);

/* C = A · W^T as above (C row stride ldc int32s; C is overwritten).  A path
 * the CPU lacks falls back to the next one (VNNI -> AVX2 -> scalar).  Returns 0,
 * or -1 on bad sizes (m, n, k < 1, k > PS_QGEMM_MAX_K, strides too small). */
int ps_qgemm_s32(ps_qpath path, int64_t m, int64_t n, int64_t k, const void *a, ps_qact at,
                 int64_t lda, const void *w, ps_qwfmt wf, int64_t ldw, int32_t *c, int64_t ldc);

/* The plain reference (triple loop, int64 accumulation checked to fit). */
void ps_qgemm_ref(int64_t m, int64_t n, int64_t k, const void *a, ps_qact at, int64_t lda,
                  const void *w, ps_qwfmt wf, int64_t ldw, int32_t *c, int64_t ldc);

/* Bytes of one packed-int4 row of k codes: ceil(k/2). */
int64_t ps_qint4_row_bytes(int64_t k);
/* Pack n rows of k int8 codes (each in -8..7; others are truncated to their
 * low nibble) to n rows of ps_qint4_row_bytes(k) bytes; the unused high
 * nibble of an odd row is 0.  And back (sign-extending). */
void ps_qpack_int4(const int8_t *codes, int64_t n, int64_t k, uint8_t *packed);
void ps_qunpack_int4(const uint8_t *packed, int64_t n, int64_t k, int8_t *codes);

/* Epilogue, dequantize: out[i, j] = c[i, j] · a_scale · w_scale[j] + bias[j]
 * (bias may be NULL), then max(0, ·) when relu.  w_scale has n entries (pass
 * a per-tensor scale repeated). */
void ps_qgemm_dequant(int64_t m, int64_t n, const int32_t *c, int64_t ldc, float a_scale,
                      const float *w_scale, const float *bias, int relu, float *out,
                      int64_t ldo);

/* Activation quantizer: q = clamp(round_half_up(x · (1/scale)), 0, 255)
 * (scale > 0; scale <= 0 gives all zeros). */
void ps_qquant_u8(const float *x, size_t n, float scale, uint8_t *q);

#endif
