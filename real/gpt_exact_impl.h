/* The row-independent CPU decode of real/gpt.c (gpt_decode on the CPU) as a
 * template over the float type: included twice by real/gpt.c, once with
 *   T float,  SFX(n) n##_f32, EXP expf, ERF erff  and once with
 *   T double, SFX(n) n##_f64, EXP exp,  ERF erf
 * (XK_HAVE_AVX2 and xk_width() from real/gpt.c).
 *
 * Exactness contract (docs/real-specgen.md): every value a token's row gets
 * (its embedding, layer norms, every linear output element, its attention
 * output, its K/V cache rows, its logits) is computed by code that depends
 * only on that row's own inputs, the weights and the cache rows it sees —
 * never on how many other rows are in the call or where they are:
 *  - linear layers: each output element is one dot product with
 *    2 x (W / sizeof T) independent lanes over chunks of the inner
 *    dimension, combined in a fixed order, then the tail in order, plus the
 *    bias (real/gpt_exact_kern.h: dot, or dot22 which performs the very same
 *    operations for a 2 x 2 block).  W = 16 bytes (SSE2, 8 f32 lanes) or,
 *    on x86-64 CPUs with AVX2, 32 bytes (16 lanes), chosen once per process
 *    (gpt_decode_simd): results are bitwise reproducible within a process
 *    and a machine, not across the two widths;
 *  - attention per query row: scores over the visible cache rows in
 *    ascending row order, max over the visible ones only, exp and the
 *    weighted value sum in ascending order; invisible rows are skipped
 *    (exactly what adding +0.0 would do);
 *  - layer norm, GELU, residual adds: per row, sequential or elementwise.
 * So a token decoded alone (n = 1, causal) and the same token inside a tree
 * pass (its ancestors at other rows, other nodes masked) get bitwise the same
 * logits and K/V rows.  No -ffast-math is used anywhere (no reassociation;
 * GCC vectorises the explicit vector-extension lanes only). */

#define KB 16
#define KSFX(n) SFX(n##_k16)
#define KATTR
#include "real/gpt_exact_kern.h"
#if XK_HAVE_AVX2
#define KB 32
#define KSFX(n) SFX(n##_k32)
#define KATTR __attribute__((target("avx2")))
#include "real/gpt_exact_kern.h"
#endif

/* The attention's q.k dot products: always the 16-byte kernel. */
static inline T SFX(xdot)(const T *x, const T *w, int64_t n) { return SFX(dot_k16)(x, w, n); }

/* Linear layers through the kernel width chosen for the process
 * (gpt_decode_simd): fixed for every call, so rows stay comparable. */
static void SFX(xlinear)(int64_t n, int64_t in, int64_t out, const T *x, const T *w, const T *b,
                         T *y)
{
#if XK_HAVE_AVX2
    if (xk_width() == 32) {
        SFX(linear_k32)(n, in, out, x, w, b, y);
        return;
    }
#endif
    SFX(linear_k16)(n, in, out, x, w, b, y);
}

static void SFX(xlayernorm)(int64_t n, int64_t C, const T *x, const T *g, const T *b, T *y)
{
    for (int64_t i = 0; i < n; i++) {
        const T *xr = x + i * C;
        T *yr = y + i * C;
        double s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++)
            s += xr[c];
        const double mu = s / (double)C;
        for (int64_t c = 0; c < C; c++) {
            double d = xr[c] - mu;
            ss += d * d;
        }
        const T m = (T)mu, rs = (T)(1.0 / sqrt(ss / (double)C + LN_EPS));
        for (int64_t c = 0; c < C; c++)
            yr[c] = (xr[c] - m) * rs * g[c] + b[c];
    }
}

/* The whole decode of n tokens after len cached rows: tokens, pos (host),
 * mask (host U8 [n, len + n]) or NULL (causal).  K/V rows written at
 * [len, len + n) of every layer's cache; logits (may be NULL) get n x V. */
static int SFX(xdecode)(gpt *m, gpt_kv *kv, int64_t n, const int32_t *tokens, const int32_t *pos,
                        const uint8_t *mask, double *logits, ps_err *e)
{
    const gpt_config *c = &m->cfg;
    const int64_t C = c->dim, H = c->heads, hd = C / H, V = c->vocab;
    const int64_t len = kv->cache[0].len, tkv = len + n, cap = kv->cap;
    const T scale = (T)(1.0 / sqrt((double)hd));
    T *x = (T *)kv->x.data, *ln = (T *)kv->ln.data, *qkv = (T *)kv->qkv.data;
    T *y = (T *)kv->y.data, *tmp = (T *)kv->tmp.data, *fch = (T *)kv->fch.data;
    T *out = (T *)kv->logits.data;
    T *sc = malloc((size_t)tkv * sizeof *sc);
    if (!sc)
        return ps_errf(e, PS_ERUN, "gpt_decode: out of memory");
    const rt_param *p = m->params;
    const T *wte = (const T *)p[GPT_WTE].w.data, *wpe = (const T *)p[GPT_WPE].w.data;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < C; k++)
            x[i * C + k] = wte[(int64_t)tokens[i] * C + k] + wpe[(int64_t)pos[i] * C + k];
    for (int l = 0; l < c->layers; l++) {
        const rt_param *w = gpt_layer_param(m, l, 0);
        rt_kvcache *kc = &kv->cache[l];
        T *K = (T *)kc->k.data, *Vc = (T *)kc->v.data;
#define PW(s) ((const T *)w[s].w.data)
        SFX(xlayernorm)(n, C, x, PW(GPT_LN1_G), PW(GPT_LN1_B), ln);
        SFX(xlinear)(n, C, 3 * C, ln, PW(GPT_QKV_W), PW(GPT_QKV_B), qkv);
        for (int64_t i = 0; i < n; i++) /* append this call's keys and values */
            for (int64_t h = 0; h < H; h++) {
                memcpy(K + (h * cap + len + i) * hd, qkv + i * 3 * C + C + h * hd,
                       (size_t)hd * sizeof(T));
                memcpy(Vc + (h * cap + len + i) * hd, qkv + i * 3 * C + 2 * C + h * hd,
                       (size_t)hd * sizeof(T));
            }
        kc->len = tkv;
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *mr = mask ? mask + i * tkv : NULL;
            const int64_t end = mask ? tkv : len + i + 1; /* causal: rows [0, len + i] */
            for (int64_t h = 0; h < H; h++) {
                const T *q = qkv + i * 3 * C + h * hd;
                const T *Kh = K + h * cap * hd, *Vh = Vc + h * cap * hd;
                T *o = y + i * C + h * hd;
                T mx = -INFINITY;
                for (int64_t j = 0; j < end; j++) {
                    if (mr && !mr[j])
                        continue;
                    T s = SFX(xdot)(q, Kh + j * hd, hd) * scale;
                    sc[j] = s;
                    if (s > mx)
                        mx = s;
                }
                for (int64_t d = 0; d < hd; d++)
                    o[d] = 0;
                if (mx == -INFINITY) /* sees nothing (cannot happen: a token sees itself) */
                    continue;
                T sum = 0;
                for (int64_t j = 0; j < end; j++) {
                    if (mr && !mr[j])
                        continue;
                    const T a = EXP(sc[j] - mx);
                    sum += a;
                    SFX(axpy_k16)(a, Vh + j * hd, o, hd);
                }
                const T inv = 1 / sum;
                for (int64_t d = 0; d < hd; d++)
                    o[d] *= inv;
            }
        }
        SFX(xlinear)(n, C, C, y, PW(GPT_PROJ_W), PW(GPT_PROJ_B), tmp);
        for (int64_t k = 0; k < n * C; k++)
            x[k] += tmp[k];
        SFX(xlayernorm)(n, C, x, PW(GPT_LN2_G), PW(GPT_LN2_B), ln);
        SFX(xlinear)(n, C, 4 * C, ln, PW(GPT_FC_W), PW(GPT_FC_B), fch);
        for (int64_t k = 0; k < n * 4 * C; k++)
            fch[k] = (T)0.5 * fch[k] * (1 + ERF(fch[k] * (T)M_SQRT1_2));
        SFX(xlinear)(n, 4 * C, C, fch, PW(GPT_FC2_W), PW(GPT_FC2_B), tmp);
        for (int64_t k = 0; k < n * C; k++)
            x[k] += tmp[k];
#undef PW
    }
    SFX(xlayernorm)(n, C, x, (const T *)gpt_lnf_g(m)->w.data, (const T *)gpt_lnf_b(m)->w.data,
                    ln);
    SFX(xlinear)(n, C, V, ln, (const T *)gpt_lm_head(m)->w.data, NULL, out);
    if (logits)
        for (int64_t k = 0; k < n * V; k++)
            logits[k] = out[k];
    free(sc);
    return 0;
}

#undef T
#undef SFX
#undef EXP
#undef ERF
