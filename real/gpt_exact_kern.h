/* The dot-product kernels of real/gpt_exact_impl.h, a template over the
 * vector width: included by it with
 *   KB 16, KSFX(n) SFX(n##_k16), KATTR (nothing)          (SSE2 / any target)
 *   KB 32, KSFX(n) SFX(n##_k32), KATTR target("avx2")      (x86-64 with AVX2)
 * (T and SFX from the including template).  No FMA is enabled: every multiply
 * and add rounds on its own, so the same code gives the same bits. */

typedef T KSFX(v) __attribute__((vector_size(KB)));
#define XL ((int64_t)(KB / sizeof(T)))

KATTR static inline KSFX(v) KSFX(load)(const T *p)
{
    KSFX(v) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* y[i] += a x[i], elementwise (each element one multiply and one add,
 * whichever lane or tail computes it). */
KATTR static inline void KSFX(axpy)(T a, const T *x, T *y, int64_t n)
{
    int64_t i = 0;
    for (; i + XL <= n; i += XL) {
        KSFX(v) yv = KSFX(load)(y + i);
        yv += a * KSFX(load)(x + i);
        memcpy(y + i, &yv, sizeof yv);
    }
    for (; i < n; i++)
        y[i] += a * x[i];
}

/* The lanes of s added as a fixed pairwise tree: l[i] += l[i + h] for
 * h = XL/2, XL/4, .., 1 (unrolled). */
KATTR static inline T KSFX(hsum)(KSFX(v) s)
{
    T l[XL];
    memcpy(l, &s, sizeof l);
#pragma GCC unroll 8
    for (int64_t h = XL / 2; h > 0; h /= 2)
#pragma GCC unroll 8
        for (int64_t i = 0; i < h; i++)
            l[i] += l[i + h];
    return l[0];
}

/* sum_i x[i] w[i] in a fixed order: two vectors of partial sums (2 XL lanes,
 * XL = KB / sizeof T) over chunks of 2 XL elements, s = a0 + a1, the lanes of
 * s reduced by KSFX(hsum), then the tail elements added in order. */
KATTR static inline T KSFX(dot)(const T *x, const T *w, int64_t n)
{
    KSFX(v) a0 = {0}, a1 = {0};
    int64_t i = 0;
    for (; i + 2 * XL <= n; i += 2 * XL) {
        a0 += KSFX(load)(x + i) * KSFX(load)(w + i);
        a1 += KSFX(load)(x + i + XL) * KSFX(load)(w + i + XL);
    }
    T r = KSFX(hsum)(a0 + a1);
    for (; i < n; i++)
        r += x[i] * w[i];
    return r;
}

/* Four of those dot products at once, (x0, x1) x (w0, w1) -> r[0..3] =
 * x0.w0, x0.w1, x1.w0, x1.w1: every one goes through exactly the operations
 * of KSFX(dot) (the same lanes, the same order; each IEEE operation rounds
 * on its own and nothing is contracted), only interleaved so that each load
 * serves two products. */
KATTR static inline void KSFX(dot22)(const T *x0, const T *x1, const T *w0, const T *w1, int64_t n,
                               T *r)
{
    KSFX(v) a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, b00 = {0}, b01 = {0}, b10 = {0},
            b11 = {0};
    int64_t i = 0;
    for (; i + 2 * XL <= n; i += 2 * XL) {
        KSFX(v) p0 = KSFX(load)(x0 + i), p1 = KSFX(load)(x1 + i);
        KSFX(v) q0 = KSFX(load)(w0 + i), q1 = KSFX(load)(w1 + i);
        a00 += p0 * q0;
        a01 += p0 * q1;
        a10 += p1 * q0;
        a11 += p1 * q1;
        p0 = KSFX(load)(x0 + i + XL), p1 = KSFX(load)(x1 + i + XL);
        q0 = KSFX(load)(w0 + i + XL), q1 = KSFX(load)(w1 + i + XL);
        b00 += p0 * q0;
        b01 += p0 * q1;
        b10 += p1 * q0;
        b11 += p1 * q1;
    }
    r[0] = KSFX(hsum)(a00 + b00);
    r[1] = KSFX(hsum)(a01 + b01);
    r[2] = KSFX(hsum)(a10 + b10);
    r[3] = KSFX(hsum)(a11 + b11);
    for (; i < n; i++) { /* the tails, each in order */
        r[0] += x0[i] * w0[i];
        r[1] += x0[i] * w1[i];
        r[2] += x1[i] * w0[i];
        r[3] += x1[i] * w1[i];
    }
}

/* y [n, out] = x [n, in] w^T + b, every element one KSFX(dot) (computed two
 * rows by two outputs at a time where it can). */
KATTR static void KSFX(linear)(int64_t n, int64_t in, int64_t out, const T *x, const T *w, const T *b,
                         T *y)
{
    int64_t j = 0;
    for (; j + 2 <= out; j += 2) {
        const T *w0 = w + j * in, *w1 = w0 + in;
        int64_t i = 0;
        for (; i + 2 <= n; i += 2) {
            T r[4];
            KSFX(dot22)(x + i * in, x + (i + 1) * in, w0, w1, in, r);
            y[i * out + j] = r[0];
            y[i * out + j + 1] = r[1];
            y[(i + 1) * out + j] = r[2];
            y[(i + 1) * out + j + 1] = r[3];
        }
        for (; i < n; i++) {
            y[i * out + j] = KSFX(dot)(x + i * in, w0, in);
            y[i * out + j + 1] = KSFX(dot)(x + i * in, w1, in);
        }
    }
    for (; j < out; j++)
        for (int64_t i = 0; i < n; i++)
            y[i * out + j] = KSFX(dot)(x + i * in, w + j * in, in);
    if (b)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < out; k++)
                y[i * out + k] += b[k];
}

#undef XL
#undef KB
#undef KSFX
#undef KATTR
