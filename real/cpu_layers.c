/* The layers of real/rt.h: public wrappers that validate their operands
 * (dtype, device, shape; errors name the function and the operand) and then
 * run the CPU implementation (real/cpu_impl.h, instantiated here for f32
 * and f64) or the CUDA backend's slot (real/backend.h). */
/* The dynamic vectorizer cost model (see kernels/cpu_ops.c), and no
 * trapping math: FP exceptions are never inspected here, and without it GCC
 * refuses to if-convert float compares (leaky ReLU, the erf clamps), which
 * keeps those loops scalar.  Results are unchanged.  No loop-to-memset
 * rewriting either: the loops that zero one or two entries per image row
 * (im2col's pad) became a libc call each. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic", "no-trapping-math",                            \
                     "no-tree-loop-distribute-patterns")
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_blas.h"
#include "real/backend.h"
#include "real/rt_internal.h"

/* ------------------------------------------------------------------ scratch, geometry */


/* The im2col columns of one image: one growing buffer per thread, kept
 * between calls (a fresh large malloc per call would page-fault its way
 * through every step). */
static _Thread_local void *g_scr;
static _Thread_local size_t g_scr_n;

static void *cpu_scratch(size_t bytes)
{
    if (bytes <= g_scr_n && g_scr)
        return g_scr;
    free(g_scr);
    size_t al = (bytes + 63) & ~(size_t)63;
    g_scr = aligned_alloc(64, al ? al : 64);
    g_scr_n = g_scr ? al : 0;
    return g_scr;
}

/* Elementwise loops where an output may be the very same buffer as an input
 * (dx = dy, y = x): GCC's runtime alias check would send such calls to the
 * scalar loop; an exact alias is safe to vectorize (each element is read
 * before it is written), a partial overlap is not allowed by rt.h. */
#if defined(__GNUC__) && !defined(__clang__)
#define RT_IVDEP _Pragma("GCC ivdep")
#else
#define RT_IVDEP
#endif

/* Software prefetch of [p, p + bytes) for the channel-major loops over NCHW
 * tensors (batch norm): they visit one plane per image, a stream too short
 * (a few KB, a new page each) for the hardware prefetchers. */
#define RT_PF_AHEAD 2
static inline void rt_prefetch(const void *p, size_t bytes)
{
#if defined(__GNUC__)
    const char *c = p;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(c + o, 0, 3);
#else
    (void)p;
    (void)bytes;
#endif
}

/* -1, or the first i with am[i] outside [0, hw): one branch-free pass,
 * a second one only when there is an offender. */
static int64_t am_bad(const int32_t *am, int64_t n, int64_t hw)
{
    const uint32_t lim = hw > INT32_MAX ? (uint32_t)INT32_MAX + 1 : (uint32_t)hw;
    unsigned bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= (uint32_t)am[i] >= lim;
    if (bad)
        for (int64_t i = 0; i < n; i++)
            if (am[i] < 0 || am[i] >= hw)
                return i;
    return -1;
}

/* GCC's __builtin_shuffle for the vector paths of real/cpu_impl.h (the
 * 2x2 pooling fused with batch norm); other compilers take the scalar ones. */
#if defined(__GNUC__) && !defined(__clang__)
#define RT_VSHUFFLE 1
#else
#define RT_VSHUFFLE 0
#endif

/* Convolution geometry: x [n, c, h, w], w [k, c, r, s], y [n, k, oh, ow]. */
typedef struct cgeo {
    int64_t n, c, h, w, k, r, s, stride, pad, oh, ow;
} cgeo;

/* ------------------------------------------------------------------ the template, twice */

/* erf for the f32 instantiation: a rational approximation on [-4, 4] (the
 * one of Eigen's generic_fast_erf_float), max abs error 4.2e-7 against
 * erff (measured on a 1e-5 grid over [-6, 6]), and plain arithmetic, so the
 * GELU loops vectorize (erff is a scalar libm call: 9 ns per element vs ~1). */
static inline float erf_fast_f32(float x)
{
    x = x < -4.f ? -4.f : (x > 4.f ? 4.f : x);
    const float x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

/* expf for the f32 instantiation (softmax, sigmoid, GELU's density):
 * Cephes' expf (range reduction by ln 2, degree-5 polynomial, exponent
 * bits) in plain arithmetic so that loops vectorize; max relative error
 * 8.3e-8 against exp over [-87, 88] (measured on a 1e-4 grid).  Arguments
 * are clamped to [-87.34, 88]: exp(88) = 1.65e38 stands for overflow, never
 * inf (the layers only take exp of non-positive numbers or of -x for a
 * sigmoid). */
static inline float exp_fast_f32(float x)
{
    x = x < -87.33654f ? -87.33654f : (x > 88.0f ? 88.0f : x);
    const float fx = x * 1.44269504088896341f + 0.5f;
    float fl = (float)(int32_t)fx;
    fl = fl > fx ? fl - 1.f : fl; /* floor */
    const float r = x - fl * 0.693359375f - fl * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    const int32_t e = ((int32_t)fl + 127) * (1 << 23);
    float sc;
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}

/* tanhf for the f32 instantiation: odd Taylor series to x^13 below 0.4,
 * 1 - 2 / (exp(2|x|) + 1) with the sign above; max relative error 1.6e-7,
 * absolute 8.4e-8 against tanh (1e-5 grid over [-20, 20]).  tanhf costs
 * ~20 ns per element as a scalar libm call. */
static inline float tanh_fast_f32(float x)
{
    const float a = fabsf(x), x2 = x * x;
    const float big = copysignf(1.f - 2.f / (exp_fast_f32(2.f * a) + 1.f), x);
    float p = 21844.f / 6081075;
    p = p * x2 + -1382.f / 155925;
    p = p * x2 + 62.f / 2835;
    p = p * x2 + -17.f / 315;
    p = p * x2 + 2.f / 15;
    p = p * x2 + -1.f / 3;
    const float small = x + x * x2 * p;
    return a < 0.4f ? small : big;
}

/* Integer lanes of the f32 / f64 vectors (16 bytes) and the shuffle masks
 * of the 2x2 pooling paths: even / odd elements of two vectors, interleave
 * of their low / high halves, 2 x the lane index. */
#define T float
#define IT int32_t
#define VEC_EVEN {0, 2, 4, 6}
#define VEC_ODD {1, 3, 5, 7}
#define VEC_LO {0, 4, 1, 5}
#define VEC_HI {2, 6, 3, 7}
#define VEC_LANE2 {0, 2, 4, 6}
#define SFX(n) n##_f32
#define GEMM ps_cpu_sgemm
#define EXP exp_fast_f32
#define ERF erf_fast_f32
#define TANH tanh_fast_f32
#include "real/cpu_impl.h" /* #undefs its parameters at the end */

#define T double
#define IT int64_t
#define VEC_EVEN {0, 2}
#define VEC_ODD {1, 3}
#define VEC_LO {0, 2}
#define VEC_HI {1, 3}
#define VEC_LANE2 {0, 2}
#define SFX(n) n##_f64
#define GEMM ps_cpu_dgemm
#define EXP exp
#define ERF erf
#define TANH tanh
#include "real/cpu_impl.h" /* #undefs its parameters at the end */

/* fn_f32(...) or fn_f64(...) by the dtype (buffers are void *). */
#define CALL(fn, dt, ...) ((dt) == RT_F32 ? fn##_f32(__VA_ARGS__) : fn##_f64(__VA_ARGS__))

static void *dp(const rt_tensor *t)
{
    return t ? t->data : NULL;
}

/* ------------------------------------------------------------------ operand checks */

/* A float tensor (f32 or f64; f32 on CUDA). */
static int chk_f(const char *fn, const char *name, const rt_tensor *t, ps_err *e)
{
    if (chk_t(fn, name, t, e))
        return PS_EINPUT;
    char b[128];
    if (t->dtype != RT_F32 && t->dtype != RT_F64)
        return ps_errf(e, PS_EINPUT, "%s: %s: %s is not a float tensor (f32 or f64)", fn, name,
                       rt_tensor_desc(t, b, sizeof b));
    if (rt_on_cuda(t) && t->dtype != RT_F32)
        return ps_errf(e, PS_EINPUT, "%s: %s: %s (the CUDA backend is f32 only)", fn, name,
                       rt_tensor_desc(t, b, sizeof b));
    return 0;
}

static int shape_is(const rt_tensor *t, int ndim, const int64_t *dims)
{
    if (t->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != dims[i])
            return 0;
    return 1;
}

static int bad_shape(const char *fn, const char *name, const rt_tensor *t, int ndim,
                     const int64_t *dims, ps_err *e)
{
    char b1[128], b2[128];
    return ps_errf(e, PS_EINPUT, "%s: %s: shape %s, expected %s", fn, name,
                   rt_tensor_desc(t, b1, sizeof b1), dims_str(ndim, dims, b2, sizeof b2));
}

/* Same dtype and device as ref, and exactly this shape. */
static int chk_dims(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                    const char *refname, int ndim, const int64_t *dims, ps_err *e)
{
    if (chk_like(fn, name, t, ref, refname, e))
        return PS_EINPUT;
    if (!shape_is(t, ndim, dims))
        return bad_shape(fn, name, t, ndim, dims, e);
    return 0;
}

/* Same dtype, device and shape as ref. */
static int chk_same(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                    const char *refname, ps_err *e)
{
    return chk_dims(fn, name, t, ref, refname, ref->ndim, ref->shape, e);
}

/* Leading dims flattened: numel rows * last with last dim `last`. */
static int chk_rows(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                    const char *refname, int64_t rows, int64_t last, ps_err *e)
{
    if (chk_like(fn, name, t, ref, refname, e))
        return PS_EINPUT;
    if (t->shape[t->ndim - 1] != last || t->numel != rows * last) {
        int64_t d[2] = {rows, last};
        return bad_shape(fn, name, t, 2, d, e);
    }
    return 0;
}

static int chk_vec(const char *fn, const char *name, const rt_tensor *t, const rt_tensor *ref,
                   const char *refname, int64_t n, ps_err *e)
{
    int64_t d[1] = {n};
    return chk_dims(fn, name, t, ref, refname, 1, d, e);
}

static int chk_ndim(const char *fn, const char *name, const rt_tensor *t, int lo, int hi,
                    ps_err *e)
{
    if (t->ndim < lo || t->ndim > hi) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "%s: %s: %s has %d dims, expected %d..%d", fn, name,
                       rt_tensor_desc(t, b, sizeof b), t->ndim, lo, hi);
    }
    return 0;
}

/* x is 4-D [N, C, H, W]. */
static int chk_x4(const char *fn, const rt_tensor *x, ps_err *e)
{
    if (x->ndim != 4) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "%s: x: %s is not 4-D [N, C, H, W]", fn,
                       rt_tensor_desc(x, b, sizeof b));
    }
    return 0;
}

/* The optional gradients of a layer with weights: dx like x, dw like w,
 * db [nb] (the bias length). */
static int chk_dxdwdb(const char *fn, const rt_tensor *x, const rt_tensor *w, const rt_tensor *dx,
                      const rt_tensor *dw, const rt_tensor *db, int64_t nb, ps_err *e)
{
    if ((dx && chk_same(fn, "dx", dx, x, "x", e)) || (dw && chk_same(fn, "dw", dw, w, "w", e)) ||
        (db && chk_vec(fn, "db", db, x, "x", nb, e)))
        return PS_EINPUT;
    return 0;
}

/* argmax: i32, y's shape yd, ref's device. */
static int chk_argmax(const char *fn, const rt_tensor *argmax, const rt_tensor *ref,
                      const int64_t *yd, ps_err *e)
{
    if (chk_t(fn, "argmax", argmax, e))
        return PS_EINPUT;
    if (argmax->dtype != RT_I32 || argmax->dev != ref->dev || !shape_is(argmax, 4, yd)) {
        char b1[128], b2[64];
        return ps_errf(e, PS_EINPUT, "%s: argmax: %s, expected %s i32 %s", fn,
                       rt_tensor_desc(argmax, b1, sizeof b1), dims_str(4, yd, b2, sizeof b2),
                       rt_dev_name(ref->dev));
    }
    return 0;
}

/* argmax[i] is outside the hw-pixel plane. */
static int bad_argmax(const char *fn, const rt_tensor *argmax, int64_t i, int64_t hw, ps_err *e)
{
    return ps_errf(e, PS_EINPUT, "%s: argmax[%lld] = %d outside the %lld-pixel plane", fn,
                   (long long)i, ((const int32_t *)argmax->data)[i], (long long)hw);
}

static int oom(const char *fn, ps_err *e)
{
    return ps_errf(e, PS_ERUN, "%s: out of memory for the im2col scratch", fn);
}

/* ------------------------------------------------------------------ linear */

/* x [n, in] (leading dims flattened), w [out, in]. */
static int linear_geo(const char *fn, const rt_tensor *x, const rt_tensor *w, int64_t *n,
                      int64_t *in, int64_t *out, ps_err *e)
{
    if (chk_f(fn, "x", x, e) || chk_like(fn, "w", w, x, "x", e))
        return PS_EINPUT;
    *in = x->shape[x->ndim - 1];
    *n = x->numel / *in;
    if (w->ndim != 2 || w->shape[1] != *in) {
        int64_t d[2] = {w->shape[0], *in};
        return bad_shape(fn, "w", w, 2, d, e);
    }
    *out = w->shape[0];
    return 0;
}

int rt_linear_fwd(const rt_tensor *x, const rt_tensor *w, const rt_tensor *b, rt_tensor *y,
                  ps_err *e)
{
    const char *fn = "rt_linear_fwd";
    int64_t n, in, out;
    if (linear_geo(fn, x, w, &n, &in, &out, e))
        return PS_EINPUT;
    if ((b && chk_vec(fn, "b", b, x, "x", out, e)) || chk_rows(fn, "y", y, x, "x", n, out, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(linear_fwd, e, x, w, b, y, e);
    CALL(linear_fwd, x->dtype, n, in, out, x->data, w->data, dp(b), y->data);
    return 0;
}

int rt_linear_bwd(const rt_tensor *x, const rt_tensor *w, const rt_tensor *dy, rt_tensor *dx,
                  rt_tensor *dw, rt_tensor *db, ps_err *e)
{
    const char *fn = "rt_linear_bwd";
    int64_t n, in, out;
    if (linear_geo(fn, x, w, &n, &in, &out, e))
        return PS_EINPUT;
    if (chk_rows(fn, "dy", dy, x, "x", n, out, e) || chk_dxdwdb(fn, x, w, dx, dw, db, out, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(linear_bwd, e, x, w, dy, dx, dw, db, e);
    CALL(linear_bwd, x->dtype, n, in, out, x->data, w->data, dy->data, dp(dx), dp(dw), dp(db));
    return 0;
}

/* ------------------------------------------------------------------ conv2d */

/* The operands every conv / convT starts from: a geometry (have_g), a float
 * x and w like it. */
static int chk_geo_xw(const char *fn, int have_g, const rt_tensor *x, const rt_tensor *w,
                      ps_err *e)
{
    if (!have_g)
        return ps_errf(e, PS_EINPUT, "%s: geometry is NULL", fn);
    if (chk_f(fn, "x", x, e) || chk_like(fn, "w", w, x, "x", e))
        return PS_EINPUT;
    return 0;
}

static int conv_geo(const char *fn, const rt_conv *g, const rt_tensor *x, const rt_tensor *w,
                    cgeo *o, ps_err *e)
{
    if (chk_geo_xw(fn, g != NULL, x, w, e))
        return PS_EINPUT;
    if (g->stride < 1 || g->pad < 0)
        return ps_errf(e, PS_EINPUT, "%s: stride %d / pad %d (need stride >= 1, pad >= 0)", fn,
                       g->stride, g->pad);
    if (chk_x4(fn, x, e))
        return PS_EINPUT;
    if (w->ndim != 4 || w->shape[1] != x->shape[1]) {
        int64_t d[4] = {w->shape[0], x->shape[1], w->ndim == 4 ? w->shape[2] : 0,
                        w->ndim == 4 ? w->shape[3] : 0};
        return bad_shape(fn, "w", w, 4, d, e);
    }
    cgeo c = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2],
              w->shape[3], g->stride, g->pad, 0, 0};
    if (c.h + 2 * c.pad < c.r || c.w + 2 * c.pad < c.s)
        return ps_errf(e, PS_EINPUT, "%s: w: %lldx%lld filter larger than the padded %lldx%lld "
                       "input x",
                       fn, (long long)c.r, (long long)c.s, (long long)(c.h + 2 * c.pad),
                       (long long)(c.w + 2 * c.pad));
    c.oh = (c.h + 2 * c.pad - c.r) / c.stride + 1;
    c.ow = (c.w + 2 * c.pad - c.s) / c.stride + 1;
    *o = c;
    return 0;
}

int rt_conv2d_fwd(const rt_conv *g, const rt_tensor *x, const rt_tensor *w, const rt_tensor *b,
                  rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_conv2d_fwd";
    cgeo c;
    if (conv_geo(fn, g, x, w, &c, e))
        return PS_EINPUT;
    int64_t yd[4] = {c.n, c.k, c.oh, c.ow};
    if ((b && chk_vec(fn, "b", b, x, "x", c.k, e)) || chk_dims(fn, "y", y, x, "x", 4, yd, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(conv2d_fwd, e, g, x, w, b, y, e);
    if (CALL(conv2d_fwd, x->dtype, &c, x->data, w->data, dp(b), y->data))
        return oom(fn, e);
    return 0;
}

int rt_conv2d_bwd(const rt_conv *g, const rt_tensor *x, const rt_tensor *w, const rt_tensor *dy,
                  rt_tensor *dx, rt_tensor *dw, rt_tensor *db, ps_err *e)
{
    const char *fn = "rt_conv2d_bwd";
    cgeo c;
    if (conv_geo(fn, g, x, w, &c, e))
        return PS_EINPUT;
    int64_t yd[4] = {c.n, c.k, c.oh, c.ow};
    if (chk_dims(fn, "dy", dy, x, "x", 4, yd, e) || chk_dxdwdb(fn, x, w, dx, dw, db, c.k, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(conv2d_bwd, e, g, x, w, dy, dx, dw, db, e);
    if (CALL(conv2d_bwd, x->dtype, &c, x->data, w->data, dy->data, dp(dx), dp(dw), dp(db)))
        return oom(fn, e);
    return 0;
}

/* ------------------------------------------------------------------ convt2d */

/* The geometry of the adjoint conv (see cpu_impl.h): its input is y. */
static int convt_geo(const char *fn, const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                     cgeo *o, ps_err *e)
{
    if (chk_geo_xw(fn, g != NULL, x, w, e))
        return PS_EINPUT;
    if (g->stride < 1 || g->pad < 0 || g->out_pad < 0 || g->out_pad >= g->stride)
        return ps_errf(e, PS_EINPUT,
                       "%s: stride %d / pad %d / out_pad %d (need stride >= 1, pad >= 0, "
                       "0 <= out_pad < stride)",
                       fn, g->stride, g->pad, g->out_pad);
    if (chk_x4(fn, x, e))
        return PS_EINPUT;
    if (w->ndim != 4 || w->shape[0] != x->shape[1]) {
        int64_t d[4] = {x->shape[1], w->ndim >= 2 ? w->shape[1] : 0,
                        w->ndim == 4 ? w->shape[2] : 0, w->ndim == 4 ? w->shape[3] : 0};
        return bad_shape(fn, "w", w, 4, d, e);
    }
    const int64_t H = x->shape[2], W = x->shape[3], R = w->shape[2], S = w->shape[3];
    const int64_t OH = (H - 1) * g->stride - 2 * (int64_t)g->pad + R + g->out_pad;
    const int64_t OW = (W - 1) * g->stride - 2 * (int64_t)g->pad + S + g->out_pad;
    if (OH < 1 || OW < 1)
        return ps_errf(e, PS_EINPUT, "%s: output %lldx%lld is empty (pad %d too large)", fn,
                       (long long)OH, (long long)OW, g->pad);
    cgeo c = {x->shape[0], w->shape[1], OH, OW, x->shape[1], R, S, g->stride, g->pad, H, W};
    *o = c;
    return 0;
}

int rt_convt2d_fwd(const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                   const rt_tensor *b, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_convt2d_fwd";
    cgeo c;
    if (convt_geo(fn, g, x, w, &c, e))
        return PS_EINPUT;
    int64_t yd[4] = {c.n, c.c, c.h, c.w};
    if ((b && chk_vec(fn, "b", b, x, "x", c.c, e)) || chk_dims(fn, "y", y, x, "x", 4, yd, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(convt2d_fwd, e, g, x, w, b, y, e);
    if (CALL(convt2d_fwd, x->dtype, &c, x->data, w->data, dp(b), y->data))
        return oom(fn, e);
    return 0;
}

int rt_convt2d_bwd(const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                   const rt_tensor *dy, rt_tensor *dx, rt_tensor *dw, rt_tensor *db, ps_err *e)
{
    const char *fn = "rt_convt2d_bwd";
    cgeo c;
    if (convt_geo(fn, g, x, w, &c, e))
        return PS_EINPUT;
    int64_t yd[4] = {c.n, c.c, c.h, c.w};
    if (chk_dims(fn, "dy", dy, x, "x", 4, yd, e) || chk_dxdwdb(fn, x, w, dx, dw, db, c.c, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(convt2d_bwd, e, g, x, w, dy, dx, dw, db, e);
    if (CALL(convt2d_bwd, x->dtype, &c, x->data, w->data, dy->data, dp(dx), dp(dw), dp(db)))
        return oom(fn, e);
    return 0;
}

/* ------------------------------------------------------------------ pooling */

/* Every arg-max inside the hw-pixel plane (one branch-free pass; the
 * offender named only when there is one). */
static int chk_argmax_range(const char *fn, const rt_tensor *argmax, int64_t hw, ps_err *e)
{
    const int64_t i = am_bad(argmax->data, argmax->numel, hw);
    if (i < 0)
        return 0;
    return bad_argmax(fn, argmax, i, hw, e);
}

static int pool_geo(const char *fn, int k, int s, const rt_tensor *x, int64_t *oh, int64_t *ow,
                    ps_err *e)
{
    if (chk_f(fn, "x", x, e) || chk_x4(fn, x, e))
        return PS_EINPUT;
    char b[128];
    if (k < 1 || s < 1 || k > x->shape[2] || k > x->shape[3])
        return ps_errf(e, PS_EINPUT, "%s: window %d / stride %d does not fit x %s", fn, k, s,
                       rt_tensor_desc(x, b, sizeof b));
    *oh = (x->shape[2] - k) / s + 1;
    *ow = (x->shape[3] - k) / s + 1;
    return 0;
}

/* A pooling forward's x [N, C, H, W] and y [N, C, oh, ow] = yd. */
static int pool_chk_fwd(const char *fn, int k, int s, const rt_tensor *x, const rt_tensor *y,
                        int64_t yd[4], ps_err *e)
{
    int64_t oh, ow;
    if (pool_geo(fn, k, s, x, &oh, &ow, e))
        return PS_EINPUT;
    yd[0] = x->shape[0], yd[1] = x->shape[1], yd[2] = oh, yd[3] = ow;
    return chk_dims(fn, "y", y, x, "x", 4, yd, e);
}

/* A pooling backward's dx [N, C, H, W] and dy [N, C, oh, ow] = yd. */
static int pool_chk_bwd(const char *fn, int k, int s, const rt_tensor *dy, const rt_tensor *dx,
                        int64_t yd[4], ps_err *e)
{
    int64_t oh, ow;
    if (chk_f(fn, "dy", dy, e) || chk_like(fn, "dx", dx, dy, "dy", e) ||
        pool_geo(fn, k, s, dx, &oh, &ow, e))
        return PS_EINPUT;
    yd[0] = dx->shape[0], yd[1] = dx->shape[1], yd[2] = oh, yd[3] = ow;
    return chk_dims(fn, "dy", dy, dx, "dx", 4, yd, e);
}

int rt_maxpool2d_fwd(int k, int s, const rt_tensor *x, rt_tensor *y, rt_tensor *argmax,
                     ps_err *e)
{
    const char *fn = "rt_maxpool2d_fwd";
    int64_t yd[4];
    if (pool_chk_fwd(fn, k, s, x, y, yd, e) || (argmax && chk_argmax(fn, argmax, x, yd, e)))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(maxpool2d_fwd, e, k, s, x, y, argmax, e);
    CALL(maxpool_fwd, x->dtype, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], k, s, yd[2],
         yd[3], x->data, y->data, argmax ? (int32_t *)argmax->data : NULL);
    return 0;
}

int rt_maxpool2d_bwd(int k, int s, const rt_tensor *argmax, const rt_tensor *dy, rt_tensor *dx,
                     ps_err *e)
{
    const char *fn = "rt_maxpool2d_bwd";
    int64_t yd[4];
    if (pool_chk_bwd(fn, k, s, dy, dx, yd, e) || chk_argmax(fn, argmax, dy, yd, e))
        return PS_EINPUT;
    if (rt_on_cuda(dy))
        return RT_CUDA_CALL(maxpool2d_bwd, e, k, s, argmax, dy, dx, e);
    if (chk_argmax_range(fn, argmax, dx->shape[2] * dx->shape[3], e))
        return PS_EINPUT;
    CALL(maxpool_bwd, dy->dtype, dx->shape[0] * dx->shape[1], dx->shape[2], dx->shape[3], k, s,
         yd[2], yd[3], argmax->data, dy->data, dx->data);
    return 0;
}

int rt_avgpool2d_fwd(int k, int s, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_avgpool2d_fwd";
    int64_t yd[4];
    if (pool_chk_fwd(fn, k, s, x, y, yd, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(avgpool2d_fwd, e, k, s, x, y, e);
    CALL(avgpool_fwd, x->dtype, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], k, s, yd[2],
         yd[3], x->data, y->data);
    return 0;
}

int rt_avgpool2d_bwd(int k, int s, const rt_tensor *dy, rt_tensor *dx, ps_err *e)
{
    const char *fn = "rt_avgpool2d_bwd";
    int64_t yd[4];
    if (pool_chk_bwd(fn, k, s, dy, dx, yd, e))
        return PS_EINPUT;
    if (rt_on_cuda(dy))
        return RT_CUDA_CALL(avgpool2d_bwd, e, k, s, dy, dx, e);
    CALL(avgpool_bwd, dy->dtype, dx->shape[0] * dx->shape[1], dx->shape[2], dx->shape[3], k, s,
         yd[2], yd[3], dy->data, dx->data);
    return 0;
}

/* ------------------------------------------------------------------ activations */

static const char *const ACT_NAMES[RT_ACT_COUNT] = {"relu", "leaky_relu", "gelu", "tanh",
                                                    "sigmoid"};

const char *rt_act_name(rt_act a)
{
    return (unsigned)a < RT_ACT_COUNT ? ACT_NAMES[a] : "?";
}

int rt_act_parse(const char *s)
{
    for (int i = 0; s && i < RT_ACT_COUNT; i++)
        if (!strcmp(s, ACT_NAMES[i]))
            return i;
    if (s && (!strcmp(s, "leakyrelu") || !strcmp(s, "lrelu")))
        return RT_LEAKY_RELU;
    return -1;
}

int rt_act_fwd(rt_act a, double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_act_fwd";
    if ((unsigned)a >= RT_ACT_COUNT)
        return ps_errf(e, PS_EINPUT, "%s: unknown activation %d", fn, (int)a);
    if (chk_f(fn, "x", x, e) || chk_same(fn, "y", y, x, "x", e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(act_fwd, e, a, alpha, x, y, e);
    if (x->dtype == RT_F32)
        act_fwd_f32(a, (float)alpha, x->numel, x->data, y->data);
    else
        act_fwd_f64(a, alpha, x->numel, x->data, y->data);
    return 0;
}

int rt_act_bwd(rt_act a, double alpha, const rt_tensor *x, const rt_tensor *y,
               const rt_tensor *dy, rt_tensor *dx, ps_err *e)
{
    const char *fn = "rt_act_bwd";
    if ((unsigned)a >= RT_ACT_COUNT)
        return ps_errf(e, PS_EINPUT, "%s: unknown activation %d", fn, (int)a);
    if (chk_f(fn, "dy", dy, e) || chk_same(fn, "dx", dx, dy, "dy", e))
        return PS_EINPUT;
    const int need_y = a == RT_TANH || a == RT_SIGMOID;
    if (need_y) { /* x optional */
        if (chk_same(fn, "y", y, dy, "dy", e) || (x && chk_same(fn, "x", x, dy, "dy", e)))
            return PS_EINPUT;
    } else { /* y optional */
        if (chk_same(fn, "x", x, dy, "dy", e) || (y && chk_same(fn, "y", y, dy, "dy", e)))
            return PS_EINPUT;
    }
    if (rt_on_cuda(dy))
        return RT_CUDA_CALL(act_bwd, e, a, alpha, x, y, dy, dx, e);
    if (dy->dtype == RT_F32)
        act_bwd_f32(a, (float)alpha, dy->numel, dp(x), dp(y), dy->data, dx->data);
    else
        act_bwd_f64(a, alpha, dy->numel, dp(x), dp(y), dy->data, dx->data);
    return 0;
}

/* ------------------------------------------------------------------ batchnorm */

static int bn_geo(const char *fn, const rt_bn *g, const rt_tensor *x, int64_t *n, int64_t *c,
                  int64_t *hw, ps_err *e)
{
    if (!g)
        return ps_errf(e, PS_EINPUT, "%s: options are NULL", fn);
    if (chk_f(fn, "x", x, e))
        return PS_EINPUT;
    if (x->ndim != 2 && x->ndim != 4) {
        char b[128];
        return ps_errf(e, PS_EINPUT, "%s: x: %s is neither [N, C] nor [N, C, H, W]", fn,
                       rt_tensor_desc(x, b, sizeof b));
    }
    if (!(g->eps > 0) || !(g->momentum >= 0 && g->momentum <= 1))
        return ps_errf(e, PS_EINPUT, "%s: eps %g must be > 0 and momentum %g in [0, 1]", fn,
                       g->eps, g->momentum);
    *n = x->shape[0];
    *c = x->shape[1];
    *hw = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    return 0;
}

/* The forward's parameters: gamma, beta, running_mean, running_var [c],
 * each optional but the running statistics in eval mode. */
static int chk_bn_params(const char *fn, const rt_bn *g, const rt_tensor *x, int64_t c,
                         const rt_tensor *gamma, const rt_tensor *beta,
                         const rt_tensor *running_mean, const rt_tensor *running_var, ps_err *e)
{
    if (!g->training && (!running_mean || !running_var))
        return ps_errf(e, PS_EINPUT, "%s: running_mean / running_var are needed in eval mode",
                       fn);
    if ((gamma && chk_vec(fn, "gamma", gamma, x, "x", c, e)) ||
        (beta && chk_vec(fn, "beta", beta, x, "x", c, e)) ||
        (running_mean && chk_vec(fn, "running_mean", running_mean, x, "x", c, e)) ||
        (running_var && chk_vec(fn, "running_var", running_var, x, "x", c, e)))
        return PS_EINPUT;
    return 0;
}

/* The backward's inputs: gamma [c] (optional), the forward's mean, rstd [c]. */
static int chk_bn_saved(const char *fn, const rt_tensor *x, int64_t c, const rt_tensor *gamma,
                        const rt_tensor *mean, const rt_tensor *rstd, ps_err *e)
{
    if ((gamma && chk_vec(fn, "gamma", gamma, x, "x", c, e)) ||
        chk_vec(fn, "mean", mean, x, "x", c, e) || chk_vec(fn, "rstd", rstd, x, "x", c, e))
        return PS_EINPUT;
    return 0;
}

/* The backward's optional outputs: dx like x, dgamma, dbeta [c]. */
static int chk_bn_grads(const char *fn, const rt_tensor *x, int64_t c, const rt_tensor *dx,
                        const rt_tensor *dgamma, const rt_tensor *dbeta, ps_err *e)
{
    if ((dx && chk_same(fn, "dx", dx, x, "x", e)) ||
        (dgamma && chk_vec(fn, "dgamma", dgamma, x, "x", c, e)) ||
        (dbeta && chk_vec(fn, "dbeta", dbeta, x, "x", c, e)))
        return PS_EINPUT;
    return 0;
}

int rt_batchnorm_fwd(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                     const rt_tensor *beta, rt_tensor *running_mean, rt_tensor *running_var,
                     rt_tensor *y, rt_tensor *mean, rt_tensor *rstd, ps_err *e)
{
    const char *fn = "rt_batchnorm_fwd";
    int64_t n, c, hw;
    if (bn_geo(fn, g, x, &n, &c, &hw, e))
        return PS_EINPUT;
    if (chk_bn_params(fn, g, x, c, gamma, beta, running_mean, running_var, e) ||
        chk_same(fn, "y", y, x, "x", e) || (mean && chk_vec(fn, "mean", mean, x, "x", c, e)) ||
        (rstd && chk_vec(fn, "rstd", rstd, x, "x", c, e)))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(batchnorm_fwd, e, g, x, gamma, beta, running_mean, running_var, y,
                            mean, rstd, e);
    CALL(bn_fwd, x->dtype, n, c, hw, g, x->data, dp(gamma), dp(beta), dp(running_mean),
         dp(running_var), y->data, dp(mean), dp(rstd));
    return 0;
}

int rt_batchnorm_bwd(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                     const rt_tensor *mean, const rt_tensor *rstd, const rt_tensor *dy,
                     rt_tensor *dx, rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e)
{
    const char *fn = "rt_batchnorm_bwd";
    int64_t n, c, hw;
    if (bn_geo(fn, g, x, &n, &c, &hw, e))
        return PS_EINPUT;
    if (chk_bn_saved(fn, x, c, gamma, mean, rstd, e) ||
        chk_same(fn, "dy", dy, x, "x", e) || chk_bn_grads(fn, x, c, dx, dgamma, dbeta, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(batchnorm_bwd, e, g, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, e);
    CALL(bn_bwd, x->dtype, n, c, hw, g->training, x->data, dp(gamma), mean->data, rstd->data,
         dy->data, dp(dx), dp(dgamma), dp(dbeta));
    return 0;
}

/* ------------------------------------------------------------------ batchnorm + relu + maxpool */

int rt_bn_relu_maxpool_available(const rt_dev *d)
{
    return !d || d->kind != RT_CUDA || rt_cuda_backend.bn_relu_maxpool_fwd != NULL;
}

int rt_bn_relu_maxpool_fwd(const rt_bn *g, int k, int s, const rt_tensor *x,
                           const rt_tensor *gamma, const rt_tensor *beta,
                           rt_tensor *running_mean, rt_tensor *running_var, rt_tensor *y,
                           rt_tensor *argmax, rt_tensor *mean, rt_tensor *rstd, ps_err *e)
{
    const char *fn = "rt_bn_relu_maxpool_fwd";
    int64_t n, c, hw, oh, ow;
    if (bn_geo(fn, g, x, &n, &c, &hw, e) || pool_geo(fn, k, s, x, &oh, &ow, e))
        return PS_EINPUT;
    int64_t yd[4] = {n, c, oh, ow};
    if (chk_bn_params(fn, g, x, c, gamma, beta, running_mean, running_var, e) ||
        chk_dims(fn, "y", y, x, "x", 4, yd, e) || (argmax && chk_argmax(fn, argmax, x, yd, e)) ||
        (mean && chk_vec(fn, "mean", mean, x, "x", c, e)) ||
        (rstd && chk_vec(fn, "rstd", rstd, x, "x", c, e)))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(bn_relu_maxpool_fwd, e, g, k, s, x, gamma, beta, running_mean,
                            running_var, y, argmax, mean, rstd, e);
    void *t = cpu_scratch((size_t)hw * rt_dtype_size(x->dtype));
    if (!t)
        return oom(fn, e);
    CALL(bnrp_fwd, x->dtype, n, c, x->shape[2], x->shape[3], k, s, oh, ow, g, x->data,
         dp(gamma), dp(beta), dp(running_mean), dp(running_var), y->data,
         argmax ? (int32_t *)argmax->data : NULL, dp(mean), dp(rstd), t);
    return 0;
}

int rt_bn_relu_maxpool_bwd(const rt_bn *g, int k, int s, const rt_tensor *x,
                           const rt_tensor *gamma, const rt_tensor *mean, const rt_tensor *rstd,
                           const rt_tensor *y, const rt_tensor *argmax, const rt_tensor *dy,
                           rt_tensor *dx, rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e)
{
    const char *fn = "rt_bn_relu_maxpool_bwd";
    int64_t n, c, hw, oh, ow;
    if (bn_geo(fn, g, x, &n, &c, &hw, e) || pool_geo(fn, k, s, x, &oh, &ow, e))
        return PS_EINPUT;
    int64_t yd[4] = {n, c, oh, ow};
    if (chk_bn_saved(fn, x, c, gamma, mean, rstd, e) ||
        chk_dims(fn, "y", y, x, "x", 4, yd, e) || chk_argmax(fn, argmax, x, yd, e) ||
        chk_dims(fn, "dy", dy, x, "x", 4, yd, e) || chk_bn_grads(fn, x, c, dx, dgamma, dbeta, e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(bn_relu_maxpool_bwd, e, g, k, s, x, gamma, mean, rstd, y, argmax, dy,
                            dx, dgamma, dbeta, e);
    void *t = cpu_scratch((size_t)hw * rt_dtype_size(x->dtype));
    if (!t)
        return oom(fn, e);
    /* the arg-max range is checked plane by plane, before any use */
    const int64_t bad = CALL(bnrp_bwd, x->dtype, n, c, x->shape[2], x->shape[3], k, s, oh, ow,
                             g->training, x->data, dp(gamma), mean->data, rstd->data, y->data,
                             argmax->data, dy->data, dp(dx), dp(dgamma), dp(dbeta), t);
    if (bad >= 0)
        return bad_argmax(fn, argmax, bad, hw, e);
    return 0;
}

/* ------------------------------------------------------------------ softmax, losses */

/* logits [N, C] (leading dims flattened), labels I32 with N elements on the
 * same device; on the CPU every label in [0, C) or -1. */
static int xent_check(const char *fn, const char *lname, const rt_tensor *l,
                      const rt_tensor *labels, int64_t *n, int64_t *c, ps_err *e)
{
    if (chk_f(fn, lname, l, e) || chk_ndim(fn, lname, l, 2, RT_MAXDIM, e) ||
        chk_t(fn, "labels", labels, e))
        return PS_EINPUT;
    *c = l->shape[l->ndim - 1];
    *n = l->numel / *c;
    char b1[128], b2[128];
    if (labels->dtype != RT_I32 || labels->dev != l->dev || labels->numel != *n)
        return ps_errf(e, PS_EINPUT, "%s: labels: %s, expected %lld i32 elements on %s (the rows "
                       "of %s %s)",
                       fn, rt_tensor_desc(labels, b1, sizeof b1), (long long)*n,
                       rt_dev_name(l->dev), lname, rt_tensor_desc(l, b2, sizeof b2));
    if (!rt_on_cuda(labels)) {
        const int32_t *lab = labels->data;
        for (int64_t i = 0; i < *n; i++)
            if (lab[i] < -1 || lab[i] >= *c)
                return ps_errf(e, PS_EINPUT, "%s: labels[%lld] = %d outside [0, %lld) (or -1)",
                               fn, (long long)i, lab[i], (long long)*c);
    }
    return 0;
}

int rt_softmax_xent_fwd(const rt_tensor *logits, const rt_tensor *labels, rt_tensor *probs,
                        double *loss, ps_err *e)
{
    const char *fn = "rt_softmax_xent_fwd";
    int64_t n, c;
    if (xent_check(fn, "logits", logits, labels, &n, &c, e) ||
        chk_same(fn, "probs", probs, logits, "logits", e))
        return PS_EINPUT;
    if (!loss)
        return ps_errf(e, PS_EINPUT, "%s: loss is NULL", fn);
    if (rt_on_cuda(logits))
        return RT_CUDA_CALL(softmax_xent_fwd, e, logits, labels, probs, loss, e);
    *loss = CALL(xent_fwd, logits->dtype, n, c, logits->data, labels->data, probs->data);
    return 0;
}

int rt_softmax_xent_bwd(const rt_tensor *probs, const rt_tensor *labels, double scale,
                        rt_tensor *dlogits, ps_err *e)
{
    const char *fn = "rt_softmax_xent_bwd";
    int64_t n, c;
    if (xent_check(fn, "probs", probs, labels, &n, &c, e) ||
        chk_same(fn, "dlogits", dlogits, probs, "probs", e))
        return PS_EINPUT;
    if (!isfinite(scale))
        return ps_errf(e, PS_EINPUT, "%s: scale %g is not finite", fn, scale);
    if (rt_on_cuda(probs))
        return RT_CUDA_CALL(softmax_xent_bwd, e, probs, labels, scale, dlogits, e);
    CALL(xent_bwd, probs->dtype, n, c, probs->data, labels->data, scale, dlogits->data);
    return 0;
}

int rt_softmax_fwd(const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    const char *fn = "rt_softmax_fwd";
    if (chk_f(fn, "x", x, e) || chk_same(fn, "y", y, x, "x", e))
        return PS_EINPUT;
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(softmax_fwd, e, x, y, e);
    const int64_t c = x->shape[x->ndim - 1];
    CALL(softmax_rows, x->dtype, x->numel / c, c, x->data, y->data);
    return 0;
}

int rt_mse_fwd(const rt_tensor *x, const rt_tensor *target, double *loss, ps_err *e)
{
    const char *fn = "rt_mse_fwd";
    if (chk_f(fn, "x", x, e) || chk_same(fn, "target", target, x, "x", e))
        return PS_EINPUT;
    if (!loss)
        return ps_errf(e, PS_EINPUT, "%s: loss is NULL", fn);
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(mse_fwd, e, x, target, loss, e);
    *loss = CALL(mse_fwd, x->dtype, x->numel, x->data, target->data);
    return 0;
}

int rt_mse_bwd(const rt_tensor *x, const rt_tensor *target, double scale, rt_tensor *dx,
               ps_err *e)
{
    const char *fn = "rt_mse_bwd";
    if (chk_f(fn, "x", x, e) || chk_same(fn, "target", target, x, "x", e) ||
        chk_same(fn, "dx", dx, x, "x", e))
        return PS_EINPUT;
    if (!isfinite(scale))
        return ps_errf(e, PS_EINPUT, "%s: scale %g is not finite", fn, scale);
    if (rt_on_cuda(x))
        return RT_CUDA_CALL(mse_bwd, e, x, target, scale, dx, e);
    CALL(mse_bwd, x->dtype, x->numel, x->data, target->data, scale, dx->data);
    return 0;
}
