/* The tensor runtime's CUDA kernels (kernels/cuda_rt.cu): raw device
 * pointers and plain C types, called by real/rt_cuda.c, which unpacks the
 * validated rt_tensors of real/rt.h.  Semantics are those of real/rt.h
 * (forward outputs and dx overwritten, parameter gradients accumulated, a
 * NULL gradient pointer means "not needed").
 *
 * Conventions: fp32 data, fp32 arithmetic (loss and sum reductions in fp64);
 * row-major; every function enqueues on the context's stream and returns
 * (except the ones returning a host number, which wait); every launch and
 * library call is checked.  GEMMs are cuBLAS sgemm under the handle's
 * default math mode (no TF32).  Functions that need temporary buffers take
 * them from the context's scratch (kernels/cuda_ops.h), which may grow
 * (synchronizing) on first use.  A build without CUDA links the stubs in
 * kernels/cuda_rt_stubs.c (PS_ERUN "built without CUDA support"). */
#ifndef PS_KERNELS_CUDA_RT_H
#define PS_KERNELS_CUDA_RT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------- elementwise */

int ps_rtc_fill(ps_cuda_ctx *c, float *y, int64_t n, float v, ps_err *e);
/* y = a + b (y may alias a or b). */
int ps_rtc_add(ps_cuda_ctx *c, int64_t n, const float *a, const float *b, float *y, ps_err *e);
/* y += alpha x */
int ps_rtc_axpy(ps_cuda_ctx *c, int64_t n, float alpha, const float *x, float *y, ps_err *e);
/* y *= alpha */
int ps_rtc_scale(ps_cuda_ctx *c, int64_t n, float *y, float alpha, ps_err *e);
/* *out = sum x (fp64 accumulation; waits). */
int ps_rtc_sum(ps_cuda_ctx *c, int64_t n, const float *x, double *out, ps_err *e);
/* Copy a [rows, cols] block between row-major matrices with row strides
 * (in elements) src_ld and dst_ld (column concat / split). */
int ps_rtc_copy_cols(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *src,
                     int64_t src_ld, float *dst, int64_t dst_ld, ps_err *e);
/* [B, T, H, D] -> [B, H, T, D] (to_heads = 1) or back (to_heads = 0);
 * b, t, h, d are always the dims of the [B, T, H, D] side. */
int ps_rtc_heads(ps_cuda_ctx *c, int to_heads, int64_t b, int64_t t, int64_t h, int64_t d,
                 const float *x, float *y, ps_err *e);

/* ----------------------------------------------------------- linear */

/* Row-major C[m, n] = alpha op(A) op(B) + beta C with row strides lda, ldb,
 * ldc; ta: A stored [k, m]; tb: B stored [n, k].  batch > 1: strided
 * (element strides sa, sb, sc; 0 = the same matrix for every batch). */
int ps_rtc_gemm(ps_cuda_ctx *c, int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k,
                float alpha, const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb,
                int64_t sb, float beta, float *cm, int64_t ldc, int64_t sc, ps_err *e);
/* y [n, out] = x [n, in] w^T + b (b may be NULL). */
int ps_rtc_linear_fwd(ps_cuda_ctx *c, int64_t n, int64_t in, int64_t out, const float *x,
                      const float *w, const float *b, float *y, ps_err *e);
/* dx = dy w; dw += dy^T x; db += column sums of dy (each may be NULL). */
int ps_rtc_linear_bwd(ps_cuda_ctx *c, int64_t n, int64_t in, int64_t out, const float *x,
                      const float *w, const float *dy, float *dx, float *dw, float *db,
                      ps_err *e);

/* ----------------------------------------------------------- convolution */

/* Geometry of a convolution as im2col sees it: the image side [n, c, h, w],
 * kernel r x s, stride, pad, and the output positions oh x ow.  For conv2d
 * the image is x and k the output channels; for convt2d the image is y and
 * c, k swap roles (k: the channels of x). */
typedef struct ps_rtc_conv {
    int64_t n, c, h, w; /* image */
    int64_t k;          /* channels on the other side */
    int64_t r, s, stride, pad;
    int64_t oh, ow;     /* positions on the other side */
} ps_rtc_conv;

/* conv2d: x [n, c, h, w], w [k, c, r, s], b [k] or NULL, y [n, k, oh, ow]. */
int ps_rtc_conv2d_fwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                      const float *b, float *y, ps_err *e);
int ps_rtc_conv2d_bwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                      const float *dy, float *dx, float *dw, float *db, ps_err *e);
/* convt2d, in the geometry of the conv2d it is the adjoint of: g->(c, h, w)
 * are y's dims [K_y, OH, OW], g->k the channels of x, g->(oh, ow) x's H, W.
 * x [n, g->k, g->oh, g->ow], w [g->k, g->c, r, s], b [g->c] or NULL,
 * y [n, g->c, g->h, g->w]. */
int ps_rtc_convt2d_fwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                       const float *b, float *y, ps_err *e);
int ps_rtc_convt2d_bwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                       const float *dy, float *dx, float *dw, float *db, ps_err *e);

/* ----------------------------------------------------------- pooling */

/* x [nc, h, w] planes, y / argmax [nc, oh, ow]. */
int ps_rtc_maxpool_fwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                       int64_t ow, const float *x, float *y, int32_t *argmax, ps_err *e);
int ps_rtc_maxpool_bwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                       int64_t ow, const int32_t *argmax, const float *dy, float *dx, ps_err *e);
int ps_rtc_avgpool_fwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                       int64_t ow, const float *x, float *y, ps_err *e);
int ps_rtc_avgpool_bwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                       int64_t ow, const float *dy, float *dx, ps_err *e);

/* ----------------------------------------------------------- activations */

/* act: the rt_act values (0 relu, 1 leaky relu, 2 gelu, 3 tanh, 4 sigmoid). */
int ps_rtc_act_fwd(ps_cuda_ctx *c, int act, float alpha, int64_t n, const float *x, float *y,
                   ps_err *e);
/* dx may alias dy. */
int ps_rtc_act_bwd(ps_cuda_ctx *c, int act, float alpha, int64_t n, const float *x,
                   const float *y, const float *dy, float *dx, ps_err *e);

/* ----------------------------------------------------------- normalisation */

/* x [rows, cols]; gamma, beta [cols] (NULL: 1, 0); mean, rstd [rows]. */
int ps_rtc_layernorm_fwd(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x,
                         const float *gamma, const float *beta, float eps, float *y, float *mean,
                         float *rstd, ps_err *e);
int ps_rtc_layernorm_bwd(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x,
                         const float *gamma, const float *mean, const float *rstd,
                         const float *dy, float *dx, float *dgamma, float *dbeta, ps_err *e);
/* x [n, ch, hw]; statistics per channel.  training: batch statistics into
 * mean / rstd, running stats (may be NULL) updated with the unbiased
 * variance; otherwise mean / rstd computed from the running stats. */
int ps_rtc_batchnorm_fwd(ps_cuda_ctx *c, int training, float eps, float momentum, int64_t n,
                         int64_t ch, int64_t hw, const float *x, const float *gamma,
                         const float *beta, float *running_mean, float *running_var, float *y,
                         float *mean, float *rstd, ps_err *e);
int ps_rtc_batchnorm_bwd(ps_cuda_ctx *c, int training, int64_t n, int64_t ch, int64_t hw,
                         const float *x, const float *gamma, const float *mean, const float *rstd,
                         const float *dy, float *dx, float *dgamma, float *dbeta, ps_err *e);

/* ----------------------------------------------------------- embedding, losses */

/* ids [n] in [0, v) (not checked here), table [v, d], y [n, d]. */
int ps_rtc_embedding_fwd(ps_cuda_ctx *c, int64_t n, int64_t d, const int32_t *ids,
                         const float *table, float *y, ps_err *e);
int ps_rtc_embedding_bwd(ps_cuda_ctx *c, int64_t n, int64_t d, const int32_t *ids,
                         const float *dy, float *dtable, ps_err *e);
/* logits [n, cls], labels [n] (-1 ignored); probs written; *loss = mean
 * over counted rows (0 when none; waits). */
int ps_rtc_softmax_xent_fwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *logits,
                            const int32_t *labels, float *probs, double *loss, ps_err *e);
int ps_rtc_softmax_xent_bwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *probs,
                            const int32_t *labels, float scale, float *dlogits, ps_err *e);
int ps_rtc_softmax_fwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *x, float *y,
                       ps_err *e);
/* *loss = mean (x - t)^2 (waits); dx = 2 (x - t) scale / n. */
int ps_rtc_mse_fwd(ps_cuda_ctx *c, int64_t n, const float *x, const float *t, double *loss,
                   ps_err *e);
int ps_rtc_mse_bwd(ps_cuda_ctx *c, int64_t n, const float *x, const float *t, float scale,
                   float *dx, ps_err *e);

/* ----------------------------------------------------------- attention */

/* mask_kind: 0 none, 1 causal, 2 boolean (mask U8 [tq, tkv]).  q, o
 * [bh, tq, d]; k, v [bh, tcap, d]; att [bh, tq, tkv] (NULL: scratch). */
int ps_rtc_attention_fwd(ps_cuda_ctx *c, int64_t bh, int64_t tq, int64_t tcap, int64_t tkv,
                         int64_t d, const float *q, const float *k, const float *v, int mask_kind,
                         const uint8_t *mask, float *att, float *o, ps_err *e);
/* dq [bh, tq, d], dk, dv [bh, tcap, d] (first tkv rows overwritten); each
 * may be NULL. */
int ps_rtc_attention_bwd(ps_cuda_ctx *c, int64_t bh, int64_t tq, int64_t tcap, int64_t tkv,
                         int64_t d, const float *q, const float *k, const float *v,
                         const float *att, const float *dout, float *dq, float *dk, float *dv,
                         ps_err *e);

/* ----------------------------------------------------------- optimizers */

/* g' = g + wd w; momentum != 0: m = momentum m + g', w -= lr m; else
 * w -= lr g'.  m may be NULL when momentum == 0. */
int ps_rtc_sgd(ps_cuda_ctx *c, int64_t n, float lr, float momentum, float wd, float *w,
               const float *g, float *m, ps_err *e);
/* AdamW step t (>= 1): w -= lr wd w; m, v moments; w -= lr mhat / (sqrt(vhat) + eps). */
int ps_rtc_adamw(ps_cuda_ctx *c, int64_t n, float lr, float beta1, float beta2, float eps,
                 float wd, int64_t t, float *w, const float *g, float *m, float *v, ps_err *e);

#ifdef __cplusplus
}
#endif

#endif
