/* Internal to real/: the device struct and the CUDA backend's table.
 *
 * The public rt_* functions (real/rt.h) validate operands (dtype, device,
 * shape) and then either run the CPU implementation or call the slot of the
 * same name in the device's backend table with the same (already validated)
 * arguments.  The CUDA table lives in real/rt_cuda.c (empty slots in a build
 * without CUDA); an empty slot makes the public function fail with
 * "<op>: not available on CUDA". */
#ifndef PS_REAL_BACKEND_H
#define PS_REAL_BACKEND_H

#include "real/rt.h"

typedef struct rt_backend {
    /* elementwise helpers */
    int (*fill)(rt_tensor *t, double value, ps_err *e);
    int (*add)(const rt_tensor *a, const rt_tensor *b, rt_tensor *y, ps_err *e);
    int (*axpy)(double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e);
    int (*scale)(rt_tensor *y, double alpha, ps_err *e);
    int (*sum)(const rt_tensor *x, double *out, ps_err *e);
    int (*concat_cols)(const rt_tensor *const *xs, int n, rt_tensor *y, ps_err *e);
    int (*split_cols)(const rt_tensor *dy, rt_tensor *const *dxs, int n, ps_err *e);
    int (*split_heads)(const rt_tensor *x, rt_tensor *y, ps_err *e);
    int (*merge_heads)(const rt_tensor *x, rt_tensor *y, ps_err *e);
    /* layers */
    int (*linear_fwd)(const rt_tensor *x, const rt_tensor *w, const rt_tensor *b, rt_tensor *y,
                      ps_err *e);
    int (*linear_bwd)(const rt_tensor *x, const rt_tensor *w, const rt_tensor *dy, rt_tensor *dx,
                      rt_tensor *dw, rt_tensor *db, ps_err *e);
    int (*conv2d_fwd)(const rt_conv *g, const rt_tensor *x, const rt_tensor *w,
                      const rt_tensor *b, rt_tensor *y, ps_err *e);
    int (*conv2d_bwd)(const rt_conv *g, const rt_tensor *x, const rt_tensor *w,
                      const rt_tensor *dy, rt_tensor *dx, rt_tensor *dw, rt_tensor *db,
                      ps_err *e);
    int (*convt2d_fwd)(const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                       const rt_tensor *b, rt_tensor *y, ps_err *e);
    int (*convt2d_bwd)(const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                       const rt_tensor *dy, rt_tensor *dx, rt_tensor *dw, rt_tensor *db,
                       ps_err *e);
    int (*maxpool2d_fwd)(int k, int s, const rt_tensor *x, rt_tensor *y, rt_tensor *argmax,
                         ps_err *e);
    int (*maxpool2d_bwd)(int k, int s, const rt_tensor *argmax, const rt_tensor *dy,
                         rt_tensor *dx, ps_err *e);
    int (*avgpool2d_fwd)(int k, int s, const rt_tensor *x, rt_tensor *y, ps_err *e);
    int (*avgpool2d_bwd)(int k, int s, const rt_tensor *dy, rt_tensor *dx, ps_err *e);
    int (*act_fwd)(rt_act a, double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e);
    int (*act_bwd)(rt_act a, double alpha, const rt_tensor *x, const rt_tensor *y,
                   const rt_tensor *dy, rt_tensor *dx, ps_err *e);
    int (*layernorm_fwd)(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *beta,
                         double eps, rt_tensor *y, rt_tensor *mean, rt_tensor *rstd, ps_err *e);
    int (*layernorm_bwd)(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *mean,
                         const rt_tensor *rstd, const rt_tensor *dy, rt_tensor *dx,
                         rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e);
    int (*batchnorm_fwd)(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                         const rt_tensor *beta, rt_tensor *running_mean, rt_tensor *running_var,
                         rt_tensor *y, rt_tensor *mean, rt_tensor *rstd, ps_err *e);
    int (*batchnorm_bwd)(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                         const rt_tensor *mean, const rt_tensor *rstd, const rt_tensor *dy,
                         rt_tensor *dx, rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e);
    int (*embedding_fwd)(const rt_tensor *ids, const rt_tensor *table, rt_tensor *y, ps_err *e);
    int (*embedding_bwd)(const rt_tensor *ids, const rt_tensor *dy, rt_tensor *dtable,
                         ps_err *e);
    int (*softmax_xent_fwd)(const rt_tensor *logits, const rt_tensor *labels, rt_tensor *probs,
                            double *loss, ps_err *e);
    int (*softmax_xent_bwd)(const rt_tensor *probs, const rt_tensor *labels, double scale,
                            rt_tensor *dlogits, ps_err *e);
    int (*softmax_fwd)(const rt_tensor *x, rt_tensor *y, ps_err *e);
    int (*mse_fwd)(const rt_tensor *x, const rt_tensor *target, double *loss, ps_err *e);
    int (*mse_bwd)(const rt_tensor *x, const rt_tensor *target, double scale, rt_tensor *dx,
                   ps_err *e);
    int (*attention_fwd)(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v,
                         int64_t tkv, rt_mask_kind mk, const rt_tensor *mask, rt_tensor *att,
                         rt_tensor *o, ps_err *e);
    int (*attention_bwd)(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v,
                         int64_t tkv, const rt_tensor *att, const rt_tensor *dout,
                         rt_tensor *dq, rt_tensor *dk, rt_tensor *dv, ps_err *e);
    /* optimizer updates of one parameter (m, v allocated by the caller) */
    int (*sgd_update)(const rt_opt *o, rt_param *p, ps_err *e);
    int (*adamw_update)(const rt_opt *o, rt_param *p, ps_err *e);
    /* fused ops (optional: a model checks rt_*_available and falls back) */
    int (*bn_relu_maxpool_fwd)(const rt_bn *g, int k, int s, const rt_tensor *x,
                               const rt_tensor *gamma, const rt_tensor *beta,
                               rt_tensor *running_mean, rt_tensor *running_var, rt_tensor *y,
                               rt_tensor *argmax, rt_tensor *mean, rt_tensor *rstd, ps_err *e);
    int (*bn_relu_maxpool_bwd)(const rt_bn *g, int k, int s, const rt_tensor *x,
                               const rt_tensor *gamma, const rt_tensor *mean,
                               const rt_tensor *rstd, const rt_tensor *y,
                               const rt_tensor *argmax, const rt_tensor *dy, rt_tensor *dx,
                               rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e);
} rt_backend;

struct rt_dev {
    rt_devkind kind;
    int ordinal;
    char name[16];
    struct ps_cuda_ctx *cu;  /* CUDA: stream + handles (kernels/cuda_ops.h) */
    const rt_backend *be;    /* CUDA: &rt_cuda_backend; CPU: NULL (direct calls) */
};

/* Filled in real/rt_cuda.c; every slot NULL in a build without CUDA. */
extern const rt_backend rt_cuda_backend;

/* For the public functions: call the CUDA slot, or fail naming the op.
 *   if (rt_on_cuda(x)) return RT_CUDA_CALL(linear_fwd, e, x, w, b, y, e); */
static inline int rt_on_cuda(const rt_tensor *t)
{
    return t && t->dev && t->dev->kind == RT_CUDA;
}
#define RT_CUDA_CALL(op, e, ...)                                                                  \
    (rt_cuda_backend.op ? rt_cuda_backend.op(__VA_ARGS__)                                         \
                        : ps_errf((e), PS_ERUN, "rt_" #op ": not available on CUDA"))

#endif
