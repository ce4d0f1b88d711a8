/* Integer GEMM (int8 / packed int4 weights x u8 / s8 activations): see
 * kernels/cpu_qgemm.h for the layout, the exactness argument and blocking. */
#include "kernels/cpu_qgemm.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PS_QX86 1
#else
#define PS_QX86 0
#endif

#define MB 64  /* rows of A per panel */
#define NB 128 /* rows of W per panel */
/* codes of k per panel (a multiple of 32: int4 panels start on a byte) */
#define KB 1024
#ifndef VM /* VNNI register tile: 12 accumulators + 3 weights + 1 activation = 16 ymm */
#define VM 4
#endif
#ifndef VN
#define VN 3
#endif

int64_t ps_qint4_row_bytes(int64_t k)
{
    return (k + 1) / 2;
}

static inline int wcode(const uint8_t *row, ps_qwfmt wf, int64_t k)
{
    if (wf == PS_QW_INT8)
        return (int8_t)row[k];
    int nib = (row[k >> 1] >> ((k & 1) * 4)) & 0xF;
    return (nib ^ 8) - 8;
}

static inline int acode(const uint8_t *row, ps_qact at, int64_t k)
{
    return at == PS_QACT_U8 ? row[k] : (int8_t)row[k];
}

void ps_qpack_int4(const int8_t *codes, int64_t n, int64_t k, uint8_t *packed)
{
    int64_t rb = ps_qint4_row_bytes(k);
    for (int64_t i = 0; i < n; i++) {
        uint8_t *dst = packed + i * rb;
        memset(dst, 0, (size_t)rb);
        for (int64_t j = 0; j < k; j++)
            dst[j >> 1] |= (uint8_t)((codes[i * k + j] & 0xF) << ((j & 1) * 4));
    }
}

void ps_qunpack_int4(const uint8_t *packed, int64_t n, int64_t k, int8_t *codes)
{
    int64_t rb = ps_qint4_row_bytes(k);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++)
            codes[i * k + j] = (int8_t)wcode(packed + i * rb, PS_QW_INT4, j);
}

void ps_qgemm_ref(int64_t m, int64_t n, int64_t k, const void *a, ps_qact at, int64_t lda,
                  const void *w, ps_qwfmt wf, int64_t ldw, int32_t *c, int64_t ldc)
{
    const uint8_t *A = a, *W = w;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            int64_t s = 0;
            for (int64_t t = 0; t < k; t++)
                s += (int64_t)acode(A + i * lda, at, t) * wcode(W + j * ldw, wf, t);
            c[i * ldc + j] = (int32_t)s;
        }
}

/* ------------------------------------------------------------ scalar path */

static void tile_scalar(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t k0, int64_t k1,
                        const uint8_t *A, ps_qact at, int64_t lda, const uint8_t *W, ps_qwfmt wf,
                        int64_t ldw, int32_t *C, int64_t ldc)
{
    for (int64_t i = m0; i < m1; i++) {
        const uint8_t *ar = A + i * lda;
        for (int64_t j = n0; j < n1; j++) {
            const uint8_t *wr = W + j * ldw;
            int32_t s = 0;
            if (wf == PS_QW_INT8) {
                const int8_t *w8 = (const int8_t *)wr;
                if (at == PS_QACT_U8)
                    for (int64_t t = k0; t < k1; t++)
                        s += (int32_t)ar[t] * w8[t];
                else
                    for (int64_t t = k0; t < k1; t++)
                        s += (int32_t)(int8_t)ar[t] * w8[t];
            } else {
                for (int64_t t = k0; t < k1; t++)
                    s += acode(ar, at, t) * wcode(wr, wf, t);
            }
            C[i * ldc + j] += s;
        }
    }
}

/* -------------------------------------------------------------- AVX2 path */

#if PS_QX86
/* 32 weight codes starting at code kk (kk even) as 32 int8 lanes. */
__attribute__((target("avx2"), always_inline)) static inline __m256i wload(const uint8_t *row,
                                                                           ps_qwfmt wf, int64_t kk)
{
    if (wf == PS_QW_INT8)
        return _mm256_loadu_si256((const __m256i *)(row + kk));
    __m128i b = _mm_loadu_si128((const __m128i *)(row + (kk >> 1)));
    const __m128i m4 = _mm_set1_epi8(0x0F), s8 = _mm_set1_epi8(8);
    __m128i lo = _mm_and_si128(b, m4);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    lo = _mm_sub_epi8(_mm_xor_si128(lo, s8), s8); /* sign-extend the nibble */
    hi = _mm_sub_epi8(_mm_xor_si128(hi, s8), s8);
    __m128i v0 = _mm_unpacklo_epi8(lo, hi); /* codes kk .. kk+15 */
    __m128i v1 = _mm_unpackhi_epi8(lo, hi); /* codes kk+16 .. kk+31 */
    return _mm256_set_m128i(v1, v0);
}

__attribute__((target("avx2"), always_inline)) static inline int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* An MR x NR tile of C over codes [k0, k1) (k0 a multiple of 32).  MR, NR
 * are compile-time constants at every call (the loops unroll). */
__attribute__((target("avx2"), always_inline)) static inline void
tile_avx2(const int MR, const int NR, const uint8_t *A, ps_qact at, int64_t lda, const uint8_t *W,
          ps_qwfmt wf, int64_t ldw, int64_t k0, int64_t k1, int32_t *C, int64_t ldc)
{
    __m256i acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++)
            acc[r][q] = _mm256_setzero_si256();
    int64_t kv = k0 + ((k1 - k0) & ~(int64_t)31);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t kk = k0; kk < kv; kk += 32) {
        __m256i w8[2];
#pragma GCC unroll 4
        for (int q = 0; q < NR; q++)
            w8[q] = wload(W + q * ldw, wf, kk);
        if (at == PS_QACT_U8) {
            __m256i wl[2], wh[2];
            for (int q = 0; q < NR; q++) {
                wl[q] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w8[q]));
                wh[q] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w8[q], 1));
            }
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                __m256i a8 = _mm256_loadu_si256((const __m256i *)(A + r * lda + kk));
                __m256i al = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(a8));
                __m256i ah = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(a8, 1));
                for (int q = 0; q < NR; q++) {
                    acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(al, wl[q]));
                    acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(ah, wh[q]));
                }
            }
        } else {
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                __m256i a8 = _mm256_loadu_si256((const __m256i *)(A + r * lda + kk));
                __m256i aa = _mm256_abs_epi8(a8); /* |a| ≤ 128 read as u8 */
                for (int q = 0; q < NR; q++) {
                    __m256i sw = _mm256_sign_epi8(w8[q], a8);   /* sign(a)·w, |w| ≤ 127 */
                    __m256i p16 = _mm256_maddubs_epi16(aa, sw); /* ≤ 2·128·127: exact */
                    acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(p16, ones));
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++) {
            int32_t s = hsum8(acc[r][q]);
            const uint8_t *ar = A + r * lda, *wr = W + q * ldw;
            for (int64_t t = kv; t < k1; t++)
                s += acode(ar, at, t) * wcode(wr, wf, t);
            C[r * ldc + q] += s;
        }
}

__attribute__((target("avx2"))) static void panel_avx2(int64_t m0, int64_t m1, int64_t n0,
                                                       int64_t n1, int64_t k0, int64_t k1,
                                                       const uint8_t *A, ps_qact at, int64_t lda,
                                                       const uint8_t *W, ps_qwfmt wf, int64_t ldw,
                                                       int32_t *C, int64_t ldc)
{
    int64_t i = m0;
    for (; i + 4 <= m1; i += 4) {
        int64_t j = n0;
        for (; j + 2 <= n1; j += 2)
            tile_avx2(4, 2, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
        for (; j < n1; j++)
            tile_avx2(4, 1, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
    }
    for (; i < m1; i++) {
        int64_t j = n0;
        for (; j + 2 <= n1; j += 2)
            tile_avx2(1, 2, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
        for (; j < n1; j++)
            tile_avx2(1, 1, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
    }
}

/* AVX-VNNI: vpdpbusd adds four u8·s8 products straight into int32 lanes
 * (no 16-bit intermediate, so no saturation; the non-saturating form).
 * Unsigned activations go in as they are; signed ones by the same sign trick
 * (|a| ≤ 128 as u8, sign(a)·w). */
__attribute__((target("avx2,avxvnni"), always_inline)) static inline void
tile_vnni(const int MR, const int NR, const uint8_t *A, ps_qact at, int64_t lda, const uint8_t *W,
          ps_qwfmt wf, int64_t ldw, int64_t k0, int64_t k1, int32_t *C, int64_t ldc)
{
    __m256i acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++)
            acc[r][q] = _mm256_setzero_si256();
    int64_t kv = k0 + ((k1 - k0) & ~(int64_t)31);
    for (int64_t kk = k0; kk < kv; kk += 32) {
        __m256i w8[4];
#pragma GCC unroll 4
        for (int q = 0; q < NR; q++)
            w8[q] = wload(W + q * ldw, wf, kk);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256i a8 = _mm256_loadu_si256((const __m256i *)(A + r * lda + kk));
            if (at == PS_QACT_U8) {
#pragma GCC unroll 4
                for (int q = 0; q < NR; q++)
                    acc[r][q] = _mm256_dpbusd_avx_epi32(acc[r][q], a8, w8[q]);
            } else {
                __m256i aa = _mm256_abs_epi8(a8);
#pragma GCC unroll 4
                for (int q = 0; q < NR; q++)
                    acc[r][q] = _mm256_dpbusd_avx_epi32(acc[r][q], aa, _mm256_sign_epi8(w8[q], a8));
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++) {
            int32_t s = hsum8(acc[r][q]);
            const uint8_t *ar = A + r * lda, *wr = W + q * ldw;
            for (int64_t t = kv; t < k1; t++)
                s += acode(ar, at, t) * wcode(wr, wf, t);
            C[r * ldc + q] += s;
        }
}

__attribute__((target("avx2,avxvnni"))) static void
panel_vnni(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t k0, int64_t k1, const uint8_t *A,
           ps_qact at, int64_t lda, const uint8_t *W, ps_qwfmt wf, int64_t ldw, int32_t *C,
           int64_t ldc)
{
    int64_t i = m0;
    for (; i + VM <= m1; i += VM) {
        int64_t j = n0;
        for (; j + VN <= n1; j += VN)
            tile_vnni(VM, VN, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
        for (; j < n1; j++)
            tile_vnni(VM, 1, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
    }
    for (; i < m1; i++) {
        int64_t j = n0;
        for (; j + VN <= n1; j += VN)
            tile_vnni(1, VN, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
        for (; j < n1; j++)
            tile_vnni(1, 1, A + i * lda, at, lda, W + j * ldw, wf, ldw, k0, k1, C + i * ldc + j,
                      ldc);
    }
}
#endif

int ps_qgemm_have_avx2(void)
{
#if PS_QX86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int ps_qgemm_have_vnni(void)
{
#if PS_QX86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni") ? 1 : 0;
#else
    return 0;
#endif
}

static ps_qpath resolve(ps_qpath p)
{
    if (p == PS_QPATH_SCALAR)
        return p;
    if (p == PS_QPATH_VNNI && ps_qgemm_have_vnni())
        return p;
    if (p == PS_QPATH_AUTO && ps_qgemm_have_vnni())
        return PS_QPATH_VNNI;
    return ps_qgemm_have_avx2() ? PS_QPATH_AVX2 : PS_QPATH_SCALAR;
}

const char *ps_qgemm_path_name(ps_qpath p)
{
    switch (resolve(p)) {
    case PS_QPATH_VNNI:
        return "avxvnni";
    case PS_QPATH_AVX2:
        return "avx2";
    default:
        return "scalar";
    }
}

int ps_qgemm_s32(ps_qpath path, int64_t m, int64_t n, int64_t k, const void *a, ps_qact at,
                 int64_t lda, const void *w, ps_qwfmt wf, int64_t ldw, int32_t *c, int64_t ldc)
{
    if (m < 1 || n < 1 || k < 1 || k > PS_QGEMM_MAX_K || lda < k || ldc < n ||
        ldw < (wf == PS_QW_INT8 ? k : ps_qint4_row_bytes(k)))
        return -1;
    ps_qpath rp = resolve(path);
    for (int64_t i = 0; i < m; i++)
        memset(c + i * ldc, 0, (size_t)n * sizeof *c);
    const uint8_t *A = a, *W = w;
    for (int64_t k0 = 0; k0 < k; k0 += KB) {
        int64_t k1 = k0 + KB < k ? k0 + KB : k;
        for (int64_t n0 = 0; n0 < n; n0 += NB) {
            int64_t n1 = n0 + NB < n ? n0 + NB : n;
            for (int64_t m0 = 0; m0 < m; m0 += MB) {
                int64_t m1 = m0 + MB < m ? m0 + MB : m;
#if PS_QX86
                if (rp == PS_QPATH_VNNI) {
                    panel_vnni(m0, m1, n0, n1, k0, k1, A, at, lda, W, wf, ldw, c, ldc);
                    continue;
                }
                if (rp == PS_QPATH_AVX2) {
                    panel_avx2(m0, m1, n0, n1, k0, k1, A, at, lda, W, wf, ldw, c, ldc);
                    continue;
                }
#endif
                tile_scalar(m0, m1, n0, n1, k0, k1, A, at, lda, W, wf, ldw, c, ldc);
            }
        }
    }
    return 0;
}

void ps_qgemm_dequant(int64_t m, int64_t n, const int32_t *c, int64_t ldc, float a_scale,
                      const float *w_scale, const float *bias, int relu, float *out, int64_t ldo)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float v = (float)c[i * ldc + j] * (a_scale * w_scale[j]);
            if (bias)
                v += bias[j];
            if (relu && v < 0)
                v = 0;
            out[i * ldo + j] = v;
        }
}

void ps_qquant_u8(const float *x, size_t n, float scale, uint8_t *q)
{
    if (!(scale > 0)) {
        memset(q, 0, n);
        return;
    }
    float inv = 1.0f / scale;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        v = v < 0 ? 0 : (v > 255 ? 255 : v);
        q[i] = (uint8_t)(v + 0.5f);
    }
}
