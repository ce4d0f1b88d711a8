/* Stand-ins for kernels/cuda_rt.h in a build without CUDA (PS_HAVE_CUDA
 * undefined: no nvcc, PS_NO_CUDA=1, the sanitizer build): each fails with
 * PS_ERUN "built without CUDA support", like kernels/cuda_stubs.c.  (The
 * runtime's table in real/rt_cuda.c is empty in such a build and calls none
 * of them; they keep any other caller linking.) */
#ifndef PS_HAVE_CUDA

#include "kernels/cuda_rt.h"

#pragma GCC diagnostic ignored "-Wunused-parameter"

#define NO_CUDA "built without CUDA support"

/* STUB(signature): the function failing with NO_CUDA. */
#define STUB(...)                                                                                 \
    __VA_ARGS__                                                                                   \
    {                                                                                             \
        return ps_errf(e, PS_ERUN, NO_CUDA);                                                      \
    }

STUB(int ps_rtc_fill(ps_cuda_ctx *c, float *y, int64_t n, float v, ps_err *e))

STUB(int ps_rtc_add(ps_cuda_ctx *c, int64_t n, const float *a, const float *b, float *y, ps_err *e))

STUB(int ps_rtc_axpy(ps_cuda_ctx *c, int64_t n, float alpha, const float *x, float *y, ps_err *e))

STUB(int ps_rtc_scale(ps_cuda_ctx *c, int64_t n, float *y, float alpha, ps_err *e))

STUB(int ps_rtc_sum(ps_cuda_ctx *c, int64_t n, const float *x, double *out, ps_err *e))

STUB(int ps_rtc_copy_cols(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *src,
                          int64_t src_ld, float *dst, int64_t dst_ld, ps_err *e))

STUB(int ps_rtc_heads(ps_cuda_ctx *c, int to_heads, int64_t b, int64_t t, int64_t h, int64_t d,
                      const float *x, float *y, ps_err *e))

STUB(int ps_rtc_gemm(ps_cuda_ctx *c, int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, int64_t lda, int64_t sa, const float *b,
                     int64_t ldb, int64_t sb, float beta, float *cm, int64_t ldc, int64_t sc,
                     ps_err *e))

STUB(int ps_rtc_linear_fwd(ps_cuda_ctx *c, int64_t n, int64_t in, int64_t out, const float *x,
                           const float *w, const float *b, float *y, ps_err *e))

STUB(int ps_rtc_linear_bwd(ps_cuda_ctx *c, int64_t n, int64_t in, int64_t out, const float *x,
                           const float *w, const float *dy, float *dx, float *dw, float *db,
                           ps_err *e))

STUB(int ps_rtc_conv2d_fwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                           const float *b, float *y, ps_err *e))

STUB(int ps_rtc_conv2d_bwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, ps_err *e))

STUB(int ps_rtc_convt2d_fwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                            const float *b, float *y, ps_err *e))

STUB(int ps_rtc_convt2d_bwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, ps_err *e))

STUB(int ps_rtc_maxpool_fwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                            int64_t oh, int64_t ow, const float *x, float *y, int32_t *argmax,
                            ps_err *e))

STUB(int ps_rtc_maxpool_bwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                            int64_t oh, int64_t ow, const int32_t *argmax, const float *dy,
                            float *dx, ps_err *e))

STUB(int ps_rtc_avgpool_fwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                            int64_t oh, int64_t ow, const float *x, float *y, ps_err *e))

STUB(int ps_rtc_avgpool_bwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                            int64_t oh, int64_t ow, const float *dy, float *dx, ps_err *e))

STUB(int ps_rtc_act_fwd(ps_cuda_ctx *c, int act, float alpha, int64_t n, const float *x, float *y,
                        ps_err *e))

STUB(int ps_rtc_act_bwd(ps_cuda_ctx *c, int act, float alpha, int64_t n, const float *x,
                        const float *y, const float *dy, float *dx, ps_err *e))

STUB(int ps_rtc_layernorm_fwd(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x,
                              const float *gamma, const float *beta, float eps, float *y,
                              float *mean, float *rstd, ps_err *e))

STUB(int ps_rtc_layernorm_bwd(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x,
                              const float *gamma, const float *mean, const float *rstd,
                              const float *dy, float *dx, float *dgamma, float *dbeta, ps_err *e))

STUB(int ps_rtc_batchnorm_fwd(ps_cuda_ctx *c, int training, float eps, float momentum, int64_t n,
                              int64_t ch, int64_t hw, const float *x, const float *gamma,
                              const float *beta, float *running_mean, float *running_var, float *y,
                              float *mean, float *rstd, ps_err *e))

STUB(int ps_rtc_batchnorm_bwd(ps_cuda_ctx *c, int training, int64_t n, int64_t ch, int64_t hw,
                              const float *x, const float *gamma, const float *mean,
                              const float *rstd, const float *dy, float *dx, float *dgamma,
                              float *dbeta, ps_err *e))

STUB(int ps_rtc_embedding_fwd(ps_cuda_ctx *c, int64_t n, int64_t d, const int32_t *ids,
                              const float *table, float *y, ps_err *e))

STUB(int ps_rtc_embedding_bwd(ps_cuda_ctx *c, int64_t n, int64_t d, const int32_t *ids,
                              const float *dy, float *dtable, ps_err *e))

STUB(int ps_rtc_softmax_xent_fwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *logits,
                                 const int32_t *labels, float *probs, double *loss, ps_err *e))

STUB(int ps_rtc_softmax_xent_bwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *probs,
                                 const int32_t *labels, float scale, float *dlogits, ps_err *e))

STUB(int ps_rtc_softmax_fwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *x, float *y,
                            ps_err *e))

STUB(int ps_rtc_mse_fwd(ps_cuda_ctx *c, int64_t n, const float *x, const float *t, double *loss,
                        ps_err *e))

STUB(int ps_rtc_mse_bwd(ps_cuda_ctx *c, int64_t n, const float *x, const float *t, float scale,
                        float *dx, ps_err *e))

STUB(int ps_rtc_attention_fwd(ps_cuda_ctx *c, int64_t bh, int64_t tq, int64_t tcap, int64_t tkv,
                              int64_t d, const float *q, const float *k, const float *v,
                              int mask_kind, const uint8_t *mask, float *att, float *o, ps_err *e))

STUB(int ps_rtc_attention_bwd(ps_cuda_ctx *c, int64_t bh, int64_t tq, int64_t tcap, int64_t tkv,
                              int64_t d, const float *q, const float *k, const float *v,
                              const float *att, const float *dout, float *dq, float *dk, float *dv,
                              ps_err *e))

STUB(int ps_rtc_sgd(ps_cuda_ctx *c, int64_t n, float lr, float momentum, float wd, float *w,
                    const float *g, float *m, ps_err *e))

STUB(int ps_rtc_adamw(ps_cuda_ctx *c, int64_t n, float lr, float beta1, float beta2, float eps,
                      float wd, int64_t t, float *w, const float *g, float *m, float *v, ps_err *e))

#else
/* ISO C forbids an empty translation unit. */
typedef int ps_cuda_rt_stubs_unused;
#endif
