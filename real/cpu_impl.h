/* The CPU layers of real/rt.h as a template over the float type: included
 * twice by real/cpu_layers.c, once with
 *   T float,  SFX(n) n##_f32, GEMM ps_cpu_sgemm, EXP expf, ... and once with
 *   T double, SFX(n) n##_f64, GEMM ps_cpu_dgemm, EXP exp, ...
 * Every function works on raw, already validated, dense row-major buffers
 * (the public wrappers in cpu_layers.c check dtype, device and shapes).
 * Hot loops are plain loops over arrays (no calls through pointers) so that
 * GCC vectorizes them; reductions accumulate in double.
 *
 * Conventions as in rt.h: forward outputs and dx are overwritten, parameter
 * gradients accumulated; a NULL gradient pointer means "not needed".
 * Functions that need scratch memory return -1 when it cannot be had.
 * The parameters (T, IT, VEC_*, SFX, GEMM, EXP, ERF, TANH) are #undef'd at
 * the end, ready for the next instantiation. */

/* ------------------------------------------------------------------ linear */

/* y [n, out] = x [n, in] w^T + b. */
static void SFX(linear_fwd)(int64_t n, int64_t in, int64_t out, const T *x, const T *w,
                            const T *b, T *y)
{
    GEMM(0, 1, n, out, in, 1, x, in, w, in, 0, y, out);
    if (b)
        for (int64_t i = 0; i < n; i++) {
            T *yr = y + i * out;
            for (int64_t j = 0; j < out; j++)
                yr[j] += b[j];
        }
}

/* db[j] += sum_i dy[i, j] over dy [n, cols]. */
static void SFX(colsum_acc)(int64_t n, int64_t cols, const T *dy, T *db)
{
    for (int64_t i = 0; i < n; i++) {
        const T *r = dy + i * cols;
        for (int64_t j = 0; j < cols; j++)
            db[j] += r[j];
    }
}

static void SFX(linear_bwd)(int64_t n, int64_t in, int64_t out, const T *x, const T *w,
                            const T *dy, T *dx, T *dw, T *db)
{
    if (dx) /* dx [n, in] = dy [n, out] w [out, in] */
        GEMM(0, 0, n, in, out, 1, dy, out, w, in, 0, dx, in);
    if (dw) /* dw [out, in] += dy^T x */
        GEMM(1, 0, out, in, n, 1, dy, out, x, in, 1, dw, in);
    if (db)
        SFX(colsum_acc)(n, out, dy, db);
}

/* Row reductions in two 16-byte vectors of partial sums (GCC's vector
 * extension, SSE2 at least: plain loops with an array of partial sums were
 * left in memory by GCC 12), combined in double at the end: sum p; the
 * shifted sums and squares; sum d (p - mu). */
typedef T SFX(vec) __attribute__((vector_size(16)));
#define SFX_VL ((int64_t)(16 / sizeof(T)))

static inline SFX(vec) SFX(vload)(const T *p)
{
    SFX(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline double SFX(hsum)(SFX(vec) a)
{
    double s = 0;
    for (int64_t j = 0; j < SFX_VL; j++)
        s += a[j];
    return s;
}

static double SFX(rsum)(const T *p, int64_t n)
{
    SFX(vec) a0 = {0}, a1 = {0};
    int64_t i = 0;
    for (; i + 2 * SFX_VL <= n; i += 2 * SFX_VL) {
        a0 += SFX(vload)(p + i);
        a1 += SFX(vload)(p + i + SFX_VL);
    }
    double s = SFX(hsum)(a0) + SFX(hsum)(a1);
    for (; i < n; i++)
        s += p[i];
    return s;
}

/* One pass: s1 += sum (p - k), s2 += sum (p - k)^2. */
static void SFX(rsum12)(const T *p, int64_t n, T k, double *s1, double *s2)
{
    SFX(vec) a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    int64_t i = 0;
    for (; i + 2 * SFX_VL <= n; i += 2 * SFX_VL) {
        SFX(vec) d0 = SFX(vload)(p + i) - k, d1 = SFX(vload)(p + i + SFX_VL) - k;
        a0 += d0;
        a1 += d1;
        b0 += d0 * d0;
        b1 += d1 * d1;
    }
    double u = SFX(hsum)(a0) + SFX(hsum)(a1), v = SFX(hsum)(b0) + SFX(hsum)(b1);
    for (; i < n; i++) {
        double d = (double)p[i] - k;
        u += d;
        v += d * d;
    }
    *s1 += u;
    *s2 += v;
}

static double SFX(rdot)(const T *d, const T *p, int64_t n, T mu)
{
    SFX(vec) a0 = {0}, a1 = {0};
    int64_t i = 0;
    for (; i + 2 * SFX_VL <= n; i += 2 * SFX_VL) {
        a0 += SFX(vload)(d + i) * (SFX(vload)(p + i) - mu);
        a1 += SFX(vload)(d + i + SFX_VL) * (SFX(vload)(p + i + SFX_VL) - mu);
    }
    double s = SFX(hsum)(a0) + SFX(hsum)(a1);
    for (; i < n; i++)
        s += (double)d[i] * ((double)p[i] - mu);
    return s;
}
#undef SFX_VL

/* ------------------------------------------------------------------ im2col */

/* First and one-past-last output column ox whose input column
 * ix = ox * stride + f - pad lies inside [0, w). */
static inline void SFX(valid_range)(int64_t f, int64_t pad, int64_t stride, int64_t w,
                                    int64_t ow, int64_t *lo, int64_t *hi)
{
    int64_t a = pad - f;
    int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int64_t top = w - 1 + pad - f;
    int64_t h = top < 0 ? 0 : top / stride + 1;
    if (h > ow)
        h = ow;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

/* Rows [lo, hi) of the output where the input row iy = oy + f - pad (stride 1)
 * lies inside [0, h). */
static inline void SFX(rows1)(int64_t f, int64_t pad, int64_t h, int64_t oh, int64_t *lo,
                              int64_t *hi)
{
    int64_t l = pad - f > 0 ? pad - f : 0, u = h + pad - f < oh ? h + pad - f : oh;
    *lo = l;
    *hi = u > l ? u : l;
}

/* Rows ylo..yhi-1 of the [*, ow] plane d: columns [0, lo) and [hi, ow)
 * zeroed (the outputs of the stride-1 "same" case that read the pad). */
static inline void SFX(zero_edges)(T *d, int64_t ow, int64_t ylo, int64_t yhi, int64_t lo,
                                   int64_t hi)
{
    for (int64_t oy = ylo; oy < yhi; oy++) {
        T *r = d + oy * ow;
        for (int64_t ox = 0; ox < lo; ox++)
            r[ox] = 0;
        for (int64_t ox = hi; ox < ow; ox++)
            r[ox] = 0;
    }
}

/* col [c r s, m P] (P = oh ow; image i's pixels in columns [i P, (i+1) P))
 * from m images x [m, c, h, w]; the pad reads as zero.  kept != 0: col holds
 * the previous im2col of the same geometry, so the entries that only ever
 * read the pad are zero already (the stride-1 "same" case skips them; a
 * call per row of col that wrote a few of them costs more than the copy). */
static void SFX(im2col)(const cgeo *g, int64_t m, const T *x, T *col, int kept)
{
    const int64_t P = g->oh * g->ow, ld = m * P, hw = g->h * g->w;
    /* stride 1, width kept ("same" padding): output pixel j reads input
     * pixel j + const, so the valid rows are one contiguous copy; the
     * columns that wrapped around a row edge are zeroed after it. */
    const int same = g->stride == 1 && g->ow == g->w;
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t fy = 0; fy < g->r; fy++)
            for (int64_t fx = 0; fx < g->s; fx++) {
                T *row = col + ((ci * g->r + fy) * g->s + fx) * ld;
                int64_t lo, hi;
                SFX(valid_range)(fx, g->pad, g->stride, g->w, g->ow, &lo, &hi);
                for (int64_t i = 0; i < m; i++) {
                    const T *xi = x + (i * g->c + ci) * hw;
                    T *d = row + i * P;
                    if (same) {
                        int64_t ylo, yhi;
                        SFX(rows1)(fy, g->pad, g->h, g->oh, &ylo, &yhi);
                        if (ylo == yhi || lo == hi) {
                            if (!kept)
                                memset(d, 0, (size_t)P * sizeof *d);
                            continue;
                        }
                        const int64_t a = ylo * g->ow + lo, b = (yhi - 1) * g->ow + hi;
                        const int64_t shift = (fy - g->pad) * g->w + (fx - g->pad);
                        if (!kept)
                            memset(d, 0, (size_t)a * sizeof *d);
                        memcpy(d + a, xi + a + shift, (size_t)(b - a) * sizeof *d);
                        if (!kept)
                            memset(d + b, 0, (size_t)(P - b) * sizeof *d);
                        if (lo > 0 || hi < g->ow)
                            SFX(zero_edges)(d, g->ow, ylo, yhi, lo, hi);
                        continue;
                    }
                    for (int64_t oy = 0; oy < g->oh; oy++) {
                        T *dst = d + oy * g->ow;
                        int64_t iy = oy * g->stride + fy - g->pad;
                        if (iy < 0 || iy >= g->h) {
                            memset(dst, 0, (size_t)g->ow * sizeof *dst);
                            continue;
                        }
                        const T *src = xi + iy * g->w + fx - g->pad;
                        for (int64_t ox = 0; ox < lo; ox++)
                            dst[ox] = 0;
                        if (g->stride == 1)
                            memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
                        else
                            for (int64_t ox = lo; ox < hi; ox++)
                                dst[ox] = src[ox * g->stride];
                        for (int64_t ox = hi; ox < g->ow; ox++)
                            dst[ox] = 0;
                    }
                }
            }
}

/* The adjoint: x [m, c, h, w] += col scattered back (x zeroed by the
 * caller).  col is scratch and is clobbered: in the stride-1 "same" case the
 * entries of the padding are zeroed so that one contiguous add per row of
 * col can run across row edges (adding zeros there). */
static void SFX(col2im)(const cgeo *g, int64_t m, T *col, T *x)
{
    const int64_t P = g->oh * g->ow, ld = m * P, hw = g->h * g->w;
    const int same = g->stride == 1 && g->ow == g->w;
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t fy = 0; fy < g->r; fy++)
            for (int64_t fx = 0; fx < g->s; fx++) {
                T *row = col + ((ci * g->r + fy) * g->s + fx) * ld;
                int64_t lo, hi;
                SFX(valid_range)(fx, g->pad, g->stride, g->w, g->ow, &lo, &hi);
                for (int64_t i = 0; i < m; i++) {
                    T *xi = x + (i * g->c + ci) * hw;
                    T *d = row + i * P;
                    if (same) {
                        int64_t ylo, yhi;
                        SFX(rows1)(fy, g->pad, g->h, g->oh, &ylo, &yhi);
                        if (ylo == yhi || lo == hi)
                            continue;
                        const int64_t a = ylo * g->ow + lo, b = (yhi - 1) * g->ow + hi;
                        const int64_t shift = (fy - g->pad) * g->w + (fx - g->pad);
                        if (lo > 0 || hi < g->ow)
                            SFX(zero_edges)(d, g->ow, ylo, yhi, lo, hi);
                        T *dst = xi + shift;
                        for (int64_t j = a; j < b; j++)
                            dst[j] += d[j];
                        continue;
                    }
                    for (int64_t oy = 0; oy < g->oh; oy++) {
                        int64_t iy = oy * g->stride + fy - g->pad;
                        if (iy < 0 || iy >= g->h)
                            continue;
                        const T *src = d + oy * g->ow;
                        T *dst = xi + iy * g->w + fx - g->pad;
                        if (g->stride == 1)
                            for (int64_t ox = lo; ox < hi; ox++)
                                dst[ox] += src[ox];
                        else
                            for (int64_t ox = lo; ox < hi; ox++)
                                dst[ox * g->stride] += src[ox];
                    }
                }
            }
}

/* db[c] += sum over images and pixels of dy [m, C, P]. */
static void SFX(chansum_acc)(int64_t m, int64_t C, int64_t P, const T *dy, T *db)
{
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t i = 0; i < m; i++)
            s += SFX(rsum)(dy + (i * C + c) * P, P);
        db[c] += (T)s;
    }
}

/* y [C, P] (one image) += b[c] on every pixel of channel c. */
static inline void SFX(add_bias)(int64_t C, int64_t P, const T *b, T *y)
{
    for (int64_t kk = 0; kk < C; kk++) {
        T *r = y + kk * P;
        const T bk = b[kk];
        for (int64_t p = 0; p < P; p++)
            r[p] += bk;
    }
}

/* ------------------------------------------------------------------ conv2d */

/* One image at a time: im2col into columns that stay in L2 (a 32->64 3x3
 * conv on 14x14 needs 225 KB), then GEMMs that read and write the NCHW
 * tensors in place.  Measured on one Sapphire Rapids core (OpenBLAS 0.3.21,
 * SkylakeX kernels), these per-image GEMMs (64x196x288 and its transposes)
 * run at 100-130 GFLOP/s; one GEMM over the whole batch's columns ran at
 * ~90 and needed a permutation of the output besides. */

/* g: x [n, c, h, w], w [k, c, r, s], y [n, k, oh, ow]. */
static int SFX(conv2d_fwd)(const cgeo *g, const T *x, const T *w, const T *b, T *y)
{
    const int64_t crs = g->c * g->r * g->s, P = g->oh * g->ow, img = g->c * g->h * g->w;
    T *col = cpu_scratch((size_t)(crs * P) * sizeof(T));
    if (!col)
        return -1;
    for (int64_t i = 0; i < g->n; i++) {
        T *yi = y + i * g->k * P;
        SFX(im2col)(g, 1, x + i * img, col, i > 0);
        /* y_i [k, P] = w [k, crs] col [crs, P] */
        GEMM(0, 0, g->k, P, crs, 1, w, crs, col, P, 0, yi, P);
        if (b)
            SFX(add_bias)(g->k, P, b, yi);
    }
    return 0;
}

static int SFX(conv2d_bwd)(const cgeo *g, const T *x, const T *w, const T *dy, T *dx, T *dw,
                           T *db)
{
    const int64_t crs = g->c * g->r * g->s, P = g->oh * g->ow, img = g->c * g->h * g->w;
    if (db)
        SFX(chansum_acc)(g->n, g->k, P, dy, db);
    if (!dx && !dw)
        return 0;
    /* two column buffers: the im2col of x (its pad zeros kept from image to
     * image) and the GEMM's columns of dx; and dw transposed: the GEMM
     * col dy_i^T [crs, k] ran at 125-155 GFLOP/s where dy_i col^T [k, crs]
     * ran at 105-125 (one Sapphire Rapids core, OpenBLAS 0.3.21 SkylakeX) */
    const int64_t ncol = (dw ? 1 : 0) + (dx ? 1 : 0);
    T *colx = cpu_scratch((size_t)(ncol * crs * P + (dw ? crs * g->k : 0)) * sizeof(T));
    if (!colx)
        return -1;
    T *col = dw ? colx + crs * P : colx, *dwt = colx + ncol * crs * P;
    if (dw)
        memset(dwt, 0, (size_t)(crs * g->k) * sizeof *dwt);
    for (int64_t i = 0; i < g->n; i++) {
        const T *dyi = dy + i * g->k * P;
        if (dw) { /* dw^T [crs, k] += col [crs, P] dy_i^T */
            SFX(im2col)(g, 1, x + i * img, colx, i > 0);
            GEMM(0, 1, crs, g->k, P, 1, colx, P, dyi, P, 1, dwt, g->k);
        }
        if (dx) { /* col [crs, P] = w^T dy_i, scattered back */
            GEMM(1, 0, crs, P, g->k, 1, w, crs, dyi, P, 0, col, P);
            T *dxi = dx + i * img;
            memset(dxi, 0, (size_t)img * sizeof *dxi);
            SFX(col2im)(g, 1, col, dxi);
        }
    }
    if (dw)
        for (int64_t kk = 0; kk < g->k; kk++)
            for (int64_t j = 0; j < crs; j++)
                dw[kk * crs + j] += dwt[j * g->k + kk];
    return 0;
}

/* ------------------------------------------------------------------ convt2d */

/* Transposed convolution through the conv geometry g of its adjoint: g's
 * input is convt's output y [n, g->c = K, g->h = OH, g->w = OW], g's output
 * is convt's input x [n, g->k = C, g->oh = H, g->ow = W]; w [C, K, R, S]. */
static int SFX(convt2d_fwd)(const cgeo *g, const T *x, const T *w, const T *b, T *y)
{
    const int64_t krs = g->c * g->r * g->s, Px = g->oh * g->ow, C = g->k;
    const int64_t yimg = g->c * g->h * g->w, Py = g->h * g->w;
    T *col = cpu_scratch((size_t)(krs * Px) * sizeof(T));
    if (!col)
        return -1;
    for (int64_t i = 0; i < g->n; i++) {
        /* col [krs, Px] = w^T [krs, C] x_i [C, Px] */
        GEMM(1, 0, krs, Px, C, 1, w, krs, x + i * C * Px, Px, 0, col, Px);
        T *yi = y + i * yimg;
        memset(yi, 0, (size_t)yimg * sizeof *yi);
        SFX(col2im)(g, 1, col, yi);
        if (b)
            SFX(add_bias)(g->c, Py, b, yi);
    }
    return 0;
}

static int SFX(convt2d_bwd)(const cgeo *g, const T *x, const T *w, const T *dy, T *dx, T *dw,
                            T *db)
{
    const int64_t krs = g->c * g->r * g->s, Px = g->oh * g->ow, C = g->k;
    const int64_t yimg = g->c * g->h * g->w, Py = g->h * g->w;
    if (db)
        SFX(chansum_acc)(g->n, g->c, Py, dy, db);
    if (!dx && !dw)
        return 0;
    T *col = cpu_scratch((size_t)(krs * Px) * sizeof(T));
    if (!col)
        return -1;
    for (int64_t i = 0; i < g->n; i++) {
        SFX(im2col)(g, 1, dy + i * yimg, col, i > 0);
        if (dx) /* dx_i [C, Px] = w [C, krs] col */
            GEMM(0, 0, C, Px, krs, 1, w, krs, col, Px, 0, dx + i * C * Px, Px);
        if (dw) /* dw [C, krs] += x_i [C, Px] col^T */
            GEMM(0, 1, C, krs, Px, 1, x + i * C * Px, Px, col, Px, 1, dw, krs);
    }
    return 0;
}

/* ------------------------------------------------------------------ pooling */

/* x [nc, h, w] planes -> y [nc, oh, ow]; argmax: index into the h w plane,
 * ties to the first (row-major) position. */
static void SFX(maxpool_fwd)(int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t oh,
                             int64_t ow, const T *x, T *y, int32_t *am)
{
    if (k == 2 && s == 2) { /* the common case: branch-free selects */
        for (int64_t q = 0; q < nc; q++) {
            const T *xp = x + q * h * w;
            T *yq = y + q * oh * ow;
            int32_t *aq = am ? am + q * oh * ow : NULL;
            for (int64_t oy = 0; oy < oh; oy++) {
                const T *r0 = xp + 2 * oy * w, *r1 = r0 + w;
                const int32_t base = (int32_t)(2 * oy * w);
                for (int64_t ox = 0; ox < ow; ox++) {
                    const T a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox],
                            d = r1[2 * ox + 1];
                    const int32_t ia = base + (int32_t)(2 * ox);
                    const T ab = b > a ? b : a, cd = d > c ? d : c;
                    yq[oy * ow + ox] = cd > ab ? cd : ab;
                    if (aq) { /* masks, not branches: the data are random */
                        const int32_t gab = b > a, gcd = d > c, g = -(int32_t)(cd > ab);
                        aq[oy * ow + ox] = ia + gab + (g & ((int32_t)w + gcd - gab));
                    }
                }
            }
        }
        return;
    }
    for (int64_t q = 0; q < nc; q++) {
        const T *xp = x + q * h * w;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t best = oy * s * w + ox * s;
                T bv = xp[best];
                for (int64_t dy = 0; dy < k; dy++)
                    for (int64_t dx = 0; dx < k; dx++) {
                        int64_t idx = (oy * s + dy) * w + ox * s + dx;
                        if (xp[idx] > bv) {
                            bv = xp[idx];
                            best = idx;
                        }
                    }
                y[(q * oh + oy) * ow + ox] = bv;
                if (am)
                    am[(q * oh + oy) * ow + ox] = (int32_t)best;
            }
    }
}

static void SFX(maxpool_bwd)(int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t oh,
                             int64_t ow, const int32_t *am, const T *dy, T *dx)
{
    const int64_t hw = h * w, ohw = oh * ow;
    if (k == 2 && s == 2 && h == 2 * oh && w == 2 * ow) {
        /* windows tile the plane: write every dx element once (no memset) */
        for (int64_t q = 0; q < nc; q++) {
            const int32_t *aq = am + q * ohw;
            const T *dq = dy + q * ohw;
            T *xq = dx + q * hw;
            for (int64_t oy = 0; oy < oh; oy++) {
                T *r0 = xq + 2 * oy * w, *r1 = r0 + w;
                const int32_t base = (int32_t)(2 * oy * w);
                for (int64_t ox = 0; ox < ow; ox++) {
                    const int32_t a = aq[oy * ow + ox] - base - (int32_t)(2 * ox);
                    const T d = dq[oy * ow + ox];
                    r0[2 * ox] = a == 0 ? d : 0;
                    r0[2 * ox + 1] = a == 1 ? d : 0;
                    r1[2 * ox] = a == (int32_t)w ? d : 0;
                    r1[2 * ox + 1] = a == (int32_t)w + 1 ? d : 0;
                }
            }
        }
        return;
    }
    memset(dx, 0, (size_t)(nc * hw) * sizeof *dx);
    for (int64_t q = 0; q < nc; q++)
        for (int64_t j = 0; j < ohw; j++)
            dx[q * hw + am[q * ohw + j]] += dy[q * ohw + j];
}

static void SFX(avgpool_fwd)(int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t oh,
                             int64_t ow, const T *x, T *y)
{
    const T inv = (T)1 / (T)(k * k);
    for (int64_t q = 0; q < nc; q++) {
        const T *xp = x + q * h * w;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                T a = 0;
                for (int64_t dy = 0; dy < k; dy++)
                    for (int64_t dx = 0; dx < k; dx++)
                        a += xp[(oy * s + dy) * w + ox * s + dx];
                y[(q * oh + oy) * ow + ox] = a * inv;
            }
    }
}

static void SFX(avgpool_bwd)(int64_t nc, int64_t h, int64_t w, int64_t k, int64_t s, int64_t oh,
                             int64_t ow, const T *dy, T *dx)
{
    const T inv = (T)1 / (T)(k * k);
    memset(dx, 0, (size_t)(nc * h * w) * sizeof *dx);
    for (int64_t q = 0; q < nc; q++) {
        T *xp = dx + q * h * w;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                T g = dy[(q * oh + oy) * ow + ox] * inv;
                for (int64_t ddy = 0; ddy < k; ddy++)
                    for (int64_t ddx = 0; ddx < k; ddx++)
                        xp[(oy * s + ddy) * w + ox * s + ddx] += g;
            }
    }
}

/* ------------------------------------------------------------------ activations */

static void SFX(act_fwd)(rt_act a, T alpha, int64_t n, const T *x, T *y)
{
    switch (a) {
    case RT_RELU:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++) {
            T v = x[i];
            y[i] = v > 0 ? v : 0;
        }
        break;
    case RT_LEAKY_RELU: /* select the factor, not the product (trapping math) */
        RT_IVDEP
        for (int64_t i = 0; i < n; i++) {
            T v = x[i];
            y[i] = v * (v > 0 ? (T)1 : alpha);
        }
        break;
    case RT_GELU:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++)
            y[i] = (T)0.5 * x[i] * (1 + ERF(x[i] * (T)M_SQRT1_2));
        break;
    case RT_TANH:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++)
            y[i] = TANH(x[i]);
        break;
    case RT_SIGMOID:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++)
            y[i] = 1 / (1 + EXP(-x[i]));
        break;
    default:
        break;
    }
}

static void SFX(act_bwd)(rt_act a, T alpha, int64_t n, const T *x, const T *y, const T *dy,
                         T *dx)
{
    switch (a) {
    case RT_RELU: /* loads outside the select: if-converted and vectorized */
        RT_IVDEP
        for (int64_t i = 0; i < n; i++) {
            T d = dy[i], v = x[i];
            dx[i] = v > 0 ? d : 0;
        }
        break;
    case RT_LEAKY_RELU:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++) {
            T d = dy[i], v = x[i];
            dx[i] = d * (v > 0 ? (T)1 : alpha);
        }
        break;
    case RT_GELU: {
        const T c = (T)0.3989422804014327; /* 1 / sqrt(2 pi) */
        RT_IVDEP
        for (int64_t i = 0; i < n; i++) {
            T cdf = (T)0.5 * (1 + ERF(x[i] * (T)M_SQRT1_2));
            dx[i] = dy[i] * (cdf + x[i] * c * EXP((T)-0.5 * x[i] * x[i]));
        }
        break;
    }
    case RT_TANH:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++)
            dx[i] = dy[i] * (1 - y[i] * y[i]);
        break;
    case RT_SIGMOID:
        RT_IVDEP
        for (int64_t i = 0; i < n; i++)
            dx[i] = dy[i] * y[i] * (1 - y[i]);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------ batchnorm */

/* Channel ch's statistics: the batch's (training; running stats updated)
 * or the running ones; mean / rstd saved when asked for. */
static void SFX(bn_stats)(int64_t n, int64_t c, int64_t hw, const rt_bn *g, const T *x,
                          int64_t ch, T *rmean, T *rvar, T *mean_out, T *rstd_out, double *mu_out,
                          double *rs_out)
{
    const int64_t M = n * hw;
    double mu, rs;
    if (g->training) {
        /* one pass over x: sums shifted by the channel's first value
         * (close to the mean, so the squares do not cancel badly) */
        const T k0 = x[ch * hw];
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) {
            if (i + RT_PF_AHEAD < n)
                rt_prefetch(x + ((i + RT_PF_AHEAD) * c + ch) * hw, (size_t)hw * sizeof(T));
            SFX(rsum12)(x + (i * c + ch) * hw, hw, k0, &s1, &s2);
        }
        mu = (double)k0 + s1 / (double)M;
        double v = s2 - s1 * s1 / (double)M; /* sum (x - mu)^2 */
        if (v < 0)
            v = 0;
        double var = v / (double)M;
        rs = 1.0 / sqrt(var + g->eps);
        if (rmean)
            rmean[ch] = (T)((1 - g->momentum) * (double)rmean[ch] + g->momentum * mu);
        if (rvar) {
            double unb = M > 1 ? v / (double)(M - 1) : var;
            rvar[ch] = (T)((1 - g->momentum) * (double)rvar[ch] + g->momentum * unb);
        }
    } else {
        mu = (double)rmean[ch];
        rs = 1.0 / sqrt((double)rvar[ch] + g->eps);
    }
    if (mean_out)
        mean_out[ch] = (T)mu;
    if (rstd_out)
        rstd_out[ch] = (T)rs;
    *mu_out = mu;
    *rs_out = rs;
}

/* Channel ch's statistics (bn_stats) and its forward map y = (x - m0) sc + sh. */
static inline void SFX(bn_affine)(int64_t n, int64_t c, int64_t hw, const rt_bn *g, const T *x,
                                  int64_t ch, const T *gamma, const T *beta, T *rmean, T *rvar,
                                  T *mean_out, T *rstd_out, T *m0, T *sc, T *sh)
{
    double mu, rs;
    SFX(bn_stats)(n, c, hw, g, x, ch, rmean, rvar, mean_out, rstd_out, &mu, &rs);
    *sc = (T)(rs * (gamma ? (double)gamma[ch] : 1.0));
    *sh = beta ? beta[ch] : 0;
    *m0 = (T)mu;
}

static void SFX(bn_fwd)(int64_t n, int64_t c, int64_t hw, const rt_bn *g, const T *x,
                        const T *gamma, const T *beta, T *rmean, T *rvar, T *y, T *mean_out,
                        T *rstd_out)
{
    for (int64_t ch = 0; ch < c; ch++) {
        T m0, sc, sh;
        SFX(bn_affine)(n, c, hw, g, x, ch, gamma, beta, rmean, rvar, mean_out, rstd_out, &m0, &sc,
                       &sh);
        for (int64_t i = 0; i < n; i++) {
            const T *r = x + (i * c + ch) * hw;
            T *o = y + (i * c + ch) * hw;
            for (int64_t p = 0; p < hw; p++)
                o[p] = (r[p] - m0) * sc + sh;
        }
    }
}

/* One channel of the batch-norm backward, from sdy = sum dy and sdyx =
 * sum dy (x - m0) over its M = n hw elements, m0 = (T)mu the rounded mean
 * the sums used: dgamma += sum dy xhat, dbeta += sum dy (each when not
 * NULL), and dx = a dy - bmean - cx (x - m0), i.e. train:
 * g rs (dy - mean(dy) - xhat mean(dy xhat)); eval: g rs dy. */
static inline void SFX(bn_dcoefs)(double mu, double rs, double sdy, double sdyx, double gam,
                                  int training, int64_t M, T *dgamma, T *dbeta, T *a, T *bmean,
                                  T *cx)
{
    sdyx += sdy * ((double)(T)mu - mu); /* add sum dy (m0 - mu) */
    sdyx *= rs;
    if (dgamma)
        *dgamma += (T)sdyx;
    if (dbeta)
        *dbeta += (T)sdy;
    const double gs = gam * rs;
    *a = (T)gs;
    *bmean = training ? (T)(gs * sdy / (double)M) : 0;
    *cx = training ? (T)(gs * sdyx * rs / (double)M) : 0;
}

static void SFX(bn_bwd)(int64_t n, int64_t c, int64_t hw, int training, const T *x,
                        const T *gamma, const T *mean, const T *rstd, const T *dy, T *dx,
                        T *dgamma, T *dbeta)
{
    const int64_t M = n * hw;
    for (int64_t ch = 0; ch < c; ch++) {
        const double mu = (double)mean[ch], rs = (double)rstd[ch];
        double sdy = 0, sdyx = 0; /* sum dy, sum dy xhat */
        for (int64_t i = 0; i < n; i++) {
            const T *r = x + (i * c + ch) * hw, *d = dy + (i * c + ch) * hw;
            sdy += SFX(rsum)(d, hw);
            sdyx += SFX(rdot)(d, r, hw, (T)mu);
        }
        T a, bmean, cx;
        SFX(bn_dcoefs)(mu, rs, sdy, sdyx, gamma ? (double)gamma[ch] : 1.0, training, M,
                       dgamma ? dgamma + ch : NULL, dbeta ? dbeta + ch : NULL, &a, &bmean, &cx);
        if (!dx)
            continue;
        const T m0 = (T)mu;
        for (int64_t i = 0; i < n; i++) {
            const T *r = x + (i * c + ch) * hw, *d = dy + (i * c + ch) * hw;
            T *o = dx + (i * c + ch) * hw;
            for (int64_t p = 0; p < hw; p++)
                o[p] = a * d[p] - bmean - cx * (r[p] - m0);
        }
    }
}

/* ------------------------------------------------------------------ batchnorm + relu + maxpool */

/* 2x2 windows with stride 2 tiling the plane, VL windows per step with
 * GCC's vector extension (16 bytes, SSE2): the even and odd columns of two
 * rows by shuffles, maxima and arg-maxima by compare masks, the same
 * selections as maxpool_fwd's scalar path (ties to the first).  A row of
 * ow >= VL windows ends with a step that overlaps the one before (the same
 * values written twice), so there is no scalar tail.  GCC only
 * (__builtin_shuffle); elsewhere the plane-by-plane path below runs. */
#define SFX_VL ((int64_t)(16 / sizeof(T)))
typedef IT SFX(ivec) __attribute__((vector_size(16)));
#if RT_VSHUFFLE

static inline SFX(vec) SFX(vsel)(SFX(ivec) m, SFX(vec) a, SFX(vec) b)
{
    return (SFX(vec))(((SFX(ivec))a & m) | ((SFX(ivec))b & ~m));
}

static inline SFX(vec) SFX(vrelu)(SFX(vec) v)
{
    return (SFX(vec))((SFX(ivec))v & (v > 0));
}

/* Windows ox = 0..ow-1 of the row pair r0, r1 of relu((x - m0) sc + sh)
 * (x's rows given): y and arg-max (plane index, row r0 at base). */
static void SFX(bnrp_fwd_rows)(int64_t ow, const T *r0, const T *r1, T m0, T sc, T sh,
                               int32_t base, int32_t w, T *yo, int32_t *ao)
{
    const SFX(ivec) lane2 = VEC_LANE2;
    for (int64_t ox = 0; ox < ow; ox += SFX_VL) {
        const int64_t o = ox + SFX_VL <= ow ? ox : ow - SFX_VL;
        const SFX(vec) p0 = SFX(vload)(r0 + 2 * o), p1 = SFX(vload)(r0 + 2 * o + SFX_VL),
                       q0 = SFX(vload)(r1 + 2 * o), q1 = SFX(vload)(r1 + 2 * o + SFX_VL);
        const SFX(ivec) ev = VEC_EVEN, od = VEC_ODD;
        const SFX(vec) a = SFX(vrelu)((__builtin_shuffle(p0, p1, ev) - m0) * sc + sh),
                       b = SFX(vrelu)((__builtin_shuffle(p0, p1, od) - m0) * sc + sh),
                       c = SFX(vrelu)((__builtin_shuffle(q0, q1, ev) - m0) * sc + sh),
                       d = SFX(vrelu)((__builtin_shuffle(q0, q1, od) - m0) * sc + sh);
        const SFX(ivec) gab = b > a, gcd = d > c; /* -1 / 0 */
        const SFX(vec) ab = SFX(vsel)(gab, b, a), cd = SFX(vsel)(gcd, d, c);
        const SFX(ivec) g = cd > ab;
        const SFX(vec) v = SFX(vsel)(g, cd, ab);
        memcpy(yo + o, &v, sizeof v);
        if (ao) {
            const SFX(ivec) ia = (IT)base + 2 * (IT)o + lane2 - gab + (g & ((IT)w - gcd + gab));
            for (int64_t l = 0; l < SFX_VL; l++)
                ao[o + l] = (int32_t)ia[l];
        }
    }
}

/* The adjoint for one row pair, through batch norm: with e the gradient at
 * relu(bn(x)) (dy where the arg-max is and y > 0, else 0), the rows o0, o1
 * of dx get a e - bm - cx (x - m0) (x's rows x0, x1; every element written).
 * o0, o1 may be x0, x1 themselves: the overlapping last step is computed
 * first and stored last. */
static inline void SFX(bnrp_dx_step)(int64_t o, const T *yq, const T *dq, const int32_t *aq,
                                     int32_t base, int32_t w, const T *x0, const T *x1, T a,
                                     T bm, T cx, T m0, SFX(vec) out[4])
{
    const SFX(ivec) lane2 = VEC_LANE2;
    const SFX(vec) yv = SFX(vload)(yq + o);
    SFX(vec) d = SFX(vload)(dq + o);
    d = (SFX(vec))((SFX(ivec))d & (yv > 0));
    SFX(ivec) code;
    for (int64_t l = 0; l < SFX_VL; l++)
        code[l] = (IT)aq[o + l];
    code -= (IT)base + 2 * (IT)o + lane2;
    const SFX(ivec) di = (SFX(ivec))d;
    const SFX(vec) e00 = (SFX(vec))(di & (code == 0)), e01 = (SFX(vec))(di & (code == 1)),
                   e10 = (SFX(vec))(di & (code == (IT)w)),
                   e11 = (SFX(vec))(di & (code == (IT)w + 1));
    const SFX(ivec) lo = VEC_LO, hi = VEC_HI;
    const T *p0 = x0 + 2 * o, *p1 = x1 + 2 * o;
    out[0] = a * __builtin_shuffle(e00, e01, lo) - bm - cx * (SFX(vload)(p0) - m0);
    out[1] = a * __builtin_shuffle(e00, e01, hi) - bm - cx * (SFX(vload)(p0 + SFX_VL) - m0);
    out[2] = a * __builtin_shuffle(e10, e11, lo) - bm - cx * (SFX(vload)(p1) - m0);
    out[3] = a * __builtin_shuffle(e10, e11, hi) - bm - cx * (SFX(vload)(p1 + SFX_VL) - m0);
}

static inline void SFX(bnrp_dx_store)(int64_t o, const SFX(vec) v[4], T *o0, T *o1)
{
    memcpy(o0 + 2 * o, &v[0], sizeof v[0]);
    memcpy(o0 + 2 * o + SFX_VL, &v[1], sizeof v[1]);
    memcpy(o1 + 2 * o, &v[2], sizeof v[2]);
    memcpy(o1 + 2 * o + SFX_VL, &v[3], sizeof v[3]);
}

static void SFX(bnrp_dx_rows)(int64_t ow, const T *yq, const T *dq, const int32_t *aq,
                              int32_t base, int32_t w, const T *x0, const T *x1, T a, T bm,
                              T cx, T m0, T *o0, T *o1)
{
    SFX(vec) v[4], tail[4];
    const int64_t last = ow - SFX_VL, full = ow / SFX_VL * SFX_VL;
    if (full < ow)
        SFX(bnrp_dx_step)(last, yq, dq, aq, base, w, x0, x1, a, bm, cx, m0, tail);
    for (int64_t o = 0; o < full; o += SFX_VL) {
        SFX(bnrp_dx_step)(o, yq, dq, aq, base, w, x0, x1, a, bm, cx, m0, v);
        SFX(bnrp_dx_store)(o, v, o0, o1);
    }
    if (full < ow)
        SFX(bnrp_dx_store)(last, tail, o0, o1);
}
#endif

/* The vector paths' condition: 2x2 windows, stride 2, tiling, ow >= VL. */
static inline int SFX(bnrp_tiles)(int64_t k, int64_t s, int64_t h, int64_t w, int64_t oh,
                                  int64_t ow)
{
    return RT_VSHUFFLE && k == 2 && s == 2 && h == 2 * oh && w == 2 * ow && ow >= SFX_VL &&
           h * w <= INT32_MAX;
}

/* One plane's share of the batch-norm sums: sum e, sum e (x - m0) over the
 * windows, e = dy [y > 0] the gradient at the arg-max (x gathered there:
 * the sums are linear in the scattered gradient). */
static void SFX(bnrp_sums)(int64_t ohw, const T *yq, const T *dq, const int32_t *aq,
                           const T *r, T m0, double *sdy, double *sdyx)
{
    SFX(vec) a0 = {0}, b0 = {0};
    int64_t j = 0;
    for (; j + SFX_VL <= ohw; j += SFX_VL) {
        const SFX(vec) yv = SFX(vload)(yq + j);
        SFX(vec) d = SFX(vload)(dq + j), xg;
        for (int64_t l = 0; l < SFX_VL; l++)
            xg[l] = r[aq[j + l]];
        d = (SFX(vec))((SFX(ivec))d & (yv > 0));
        a0 += d;
        b0 += d * (xg - m0);
    }
    double u = SFX(hsum)(a0), v = SFX(hsum)(b0);
    for (; j < ohw; j++) {
        const T dd = dq[j], yv = yq[j];
        const T e = yv > 0 ? dd : 0;
        u += e;
        v += (double)(e * (r[aq[j]] - m0));
    }
    *sdy += u;
    *sdyx += v;
}
#undef SFX_VL

/* y = maxpool(relu(bn(x))) plane by plane, each after its channel's
 * statistics (one pass over the channel; the second, here, finds the
 * channel's planes in L2): the 2x2 vector path above, or relu(bn(x)) of
 * one plane into the L1-sized scratch t (the same expressions as bn_fwd and
 * act_fwd, so the same values), which maxpool_fwd reads.  x [n, c, h, w]. */
static void SFX(bnrp_fwd)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s,
                          int64_t oh, int64_t ow, const rt_bn *g, const T *x, const T *gamma,
                          const T *beta, T *rmean, T *rvar, T *y, int32_t *am, T *mean_out,
                          T *rstd_out, T *restrict t)
{
    const int64_t hw = h * w, ohw = oh * ow;
    const int tiles = SFX(bnrp_tiles)(k, s, h, w, oh, ow);
    (void)tiles; /* unused without RT_VSHUFFLE */
    for (int64_t ch = 0; ch < c; ch++) {
        T m0, sc, sh;
        SFX(bn_affine)(n, c, hw, g, x, ch, gamma, beta, rmean, rvar, mean_out, rstd_out, &m0, &sc,
                       &sh);
        for (int64_t i = 0; i < n; i++) {
            const int64_t q = i * c + ch;
            const T *restrict r = x + q * hw;
            T *yq = y + q * ohw;
            int32_t *aq = am ? am + q * ohw : NULL;
#if RT_VSHUFFLE
            if (tiles) {
                for (int64_t oy = 0; oy < oh; oy++)
                    SFX(bnrp_fwd_rows)(ow, r + 2 * oy * w, r + (2 * oy + 1) * w, m0, sc, sh,
                                       (int32_t)(2 * oy * w), (int32_t)w, yq + oy * ow,
                                       aq ? aq + oy * ow : NULL);
                continue;
            }
#endif
            for (int64_t p = 0; p < hw; p++) {
                const T v = (r[p] - m0) * sc + sh;
                t[p] = v > 0 ? v : 0;
            }
            SFX(maxpool_fwd)(1, h, w, k, s, oh, ow, t, yq, aq);
        }
    }
}

/* The adjoint of bnrp_fwd.  The ReLU's derivative at a window's arg-max is
 * [y > 0], so the gradient at relu(bn(x)) is dy masked at the pooled size
 * and scattered to the arg-max (what maxpool_bwd and act_bwd give).  Per
 * channel: the two batch-norm sums from the pooled tensors and x gathered
 * (bnrp_sums), then one pass writing dx (the channel's planes are in L2
 * by then): the 2x2 vector path, or the scatter into the zeroed L1 plane t
 * and the batch-norm formula over it.  dx may be x itself (each element of
 * x is read before the same element of dx is written).  Returns -1, or the
 * index of an arg-max outside the plane (each plane's checked before use;
 * the channels before it are done then). */
static int64_t SFX(bnrp_bwd)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                             int64_t s, int64_t oh, int64_t ow, int training, const T *x,
                             const T *gamma, const T *mean, const T *rstd, const T *y,
                             const int32_t *am, const T *dy, T *dx, T *dgamma, T *dbeta,
                             T *restrict t)
{
    const int64_t hw = h * w, ohw = oh * ow, M = n * hw;
    const int tiles = SFX(bnrp_tiles)(k, s, h, w, oh, ow);
    (void)tiles; /* unused without RT_VSHUFFLE */
    for (int64_t ch = 0; ch < c; ch++) {
        const double mu = (double)mean[ch], rs = (double)rstd[ch];
        const T m0 = (T)mu;
        double sdy = 0, sdyx = 0; /* sum dy, sum dy (x - m0) over the batch */
        for (int64_t i = 0; i < n; i++) {
            const int64_t q = i * c + ch;
            if (i + RT_PF_AHEAD < n) {
                const int64_t qn = q + RT_PF_AHEAD * c;
                rt_prefetch(y + qn * ohw, (size_t)ohw * sizeof(T));
                rt_prefetch(dy + qn * ohw, (size_t)ohw * sizeof(T));
                rt_prefetch(am + qn * ohw, (size_t)ohw * sizeof(int32_t));
                rt_prefetch(x + qn * hw, (size_t)hw * sizeof(T));
            }
            const int64_t bad = am_bad(am + q * ohw, ohw, hw);
            if (bad >= 0)
                return q * ohw + bad;
            SFX(bnrp_sums)(ohw, y + q * ohw, dy + q * ohw, am + q * ohw, x + q * hw, m0, &sdy,
                           &sdyx);
        }
        /* e: the gradient at bn's output (dy scattered, masked by the ReLU) */
        T a, bmean, cx;
        SFX(bn_dcoefs)(mu, rs, sdy, sdyx, gamma ? (double)gamma[ch] : 1.0, training, M,
                       dgamma ? dgamma + ch : NULL, dbeta ? dbeta + ch : NULL, &a, &bmean, &cx);
        if (!dx)
            continue;
        for (int64_t i = 0; i < n; i++) {
            const int64_t q = i * c + ch;
            const T *yq = y + q * ohw, *dq = dy + q * ohw;
            const int32_t *aq = am + q * ohw;
            const T *r = x + q * hw;
            T *o = dx + q * hw;
#if RT_VSHUFFLE
            if (tiles) {
                for (int64_t oy = 0; oy < oh; oy++)
                    SFX(bnrp_dx_rows)(ow, yq + oy * ow, dq + oy * ow, aq + oy * ow,
                                      (int32_t)(2 * oy * w), (int32_t)w, r + 2 * oy * w,
                                      r + (2 * oy + 1) * w, a, bmean, cx, m0, o + 2 * oy * w,
                                      o + (2 * oy + 1) * w);
                continue;
            }
#endif
            memset(t, 0, (size_t)hw * sizeof *t);
            for (int64_t j = 0; j < ohw; j++) {
                const T d = dq[j], v = yq[j];
                t[aq[j]] += v > 0 ? d : 0;
            }
            for (int64_t p = 0; p < hw; p++)
                o[p] = a * t[p] - bmean - cx * (r[p] - m0);
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ softmax, losses */

/* o = exp(r - max r) / sum: the exps in one loop (vectorized), the sum in
 * another. Returns the sum (before normalising) and the max. */
static double SFX(softmax_row)(int64_t c, const T *r, T *o, T *max_out)
{
    T mx = r[0];
    for (int64_t j = 1; j < c; j++)
        mx = r[j] > mx ? r[j] : mx;
    for (int64_t j = 0; j < c; j++)
        o[j] = EXP(r[j] - mx);
    const double s = SFX(rsum)(o, c);
    const T inv = (T)(1.0 / s);
    for (int64_t j = 0; j < c; j++)
        o[j] *= inv;
    *max_out = mx;
    return s;
}

static void SFX(softmax_rows)(int64_t n, int64_t c, const T *x, T *y)
{
    T mx;
    for (int64_t i = 0; i < n; i++)
        SFX(softmax_row)(c, x + i * c, y + i * c, &mx);
}

/* Mean cross-entropy over rows whose label is not -1 (labels validated). */
static double SFX(xent_fwd)(int64_t n, int64_t c, const T *x, const int32_t *lab, T *probs)
{
    double tot = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        const T *r = x + i * c;
        T mx;
        const double s = SFX(softmax_row)(c, r, probs + i * c, &mx);
        if (lab[i] >= 0) {
            tot += log(s) - ((double)r[lab[i]] - (double)mx);
            cnt++;
        }
    }
    return cnt ? tot / (double)cnt : 0.0;
}

static void SFX(xent_bwd)(int64_t n, int64_t c, const T *probs, const int32_t *lab, double scale,
                          T *dl)
{
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++)
        cnt += lab[i] >= 0;
    const T f = cnt ? (T)(scale / (double)cnt) : 0;
    for (int64_t i = 0; i < n; i++) {
        const T *p = probs + i * c;
        T *o = dl + i * c;
        if (lab[i] < 0) {
            memset(o, 0, (size_t)c * sizeof *o);
            continue;
        }
        for (int64_t j = 0; j < c; j++)
            o[j] = p[j] * f;
        o[lab[i]] -= f;
    }
}

static double SFX(mse_fwd)(int64_t n, const T *x, const T *t)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)t[i];
        s += d * d;
    }
    return s / (double)n;
}

static void SFX(mse_bwd)(int64_t n, const T *x, const T *t, double scale, T *dx)
{
    const T f = (T)(2.0 * scale / (double)n);
    for (int64_t i = 0; i < n; i++)
        dx[i] = f * (x[i] - t[i]);
}

#undef T
#undef IT
#undef VEC_EVEN
#undef VEC_ODD
#undef VEC_LO
#undef VEC_HI
#undef VEC_LANE2
#undef SFX
#undef GEMM
#undef EXP
#undef ERF
#undef TANH
