/* The CUDA backend's table (real/backend.h): each slot unpacks the already
 * validated rt_tensors (data pointers, shapes) and calls the raw-pointer
 * kernels of kernels/cuda_rt.h on the device's context.  F32 only: a
 * float64 operand is PS_EINPUT "float64 tensors are CPU-only".  In a build
 * without CUDA every slot is NULL (the public functions then fail with
 * "<op>: not available on CUDA"). */
#include "real/backend.h"

#ifdef PS_HAVE_CUDA

#include "kernels/cuda_rt.h"

#define F(t) ((float *)(t)->data)
#define CF(t) ((const float *)(t)->data)
#define OPT(t) ((t) ? (float *)(t)->data : NULL)
#define COPT(t) ((t) ? (const float *)(t)->data : NULL)

static ps_cuda_ctx *ctx_of(const rt_tensor *t)
{
    return rt_dev_cuda_ctx(t->dev);
}

/* PS_EINPUT when the (validated: all floats share one dtype) operand is not F32. */
static int f32(const char *op, const rt_tensor *t, ps_err *e)
{
    if (t->dtype == RT_F64)
        return ps_errf(e, PS_EINPUT, "rt_%s: float64 tensors are CPU-only", op);
    if (t->dtype != RT_F32)
        return ps_errf(e, PS_EINPUT, "rt_%s: %s tensor where f32 was expected", op,
                       rt_dtype_name(t->dtype));
    return 0;
}

#define NEED_F32(op, t)                                                                           \
    do {                                                                                          \
        int r_ = f32(op, t, e);                                                                   \
        if (r_)                                                                                   \
            return r_;                                                                            \
    } while (0)

static int64_t last_dim(const rt_tensor *t)
{
    return t->shape[t->ndim - 1];
}

/* ------------------------------------------------------------------ elementwise */

static int cu_fill(rt_tensor *t, double value, ps_err *e)
{
    NEED_F32("fill", t);
    return ps_rtc_fill(ctx_of(t), F(t), t->numel, (float)value, e);
}

static int cu_add(const rt_tensor *a, const rt_tensor *b, rt_tensor *y, ps_err *e)
{
    NEED_F32("add", a);
    return ps_rtc_add(ctx_of(a), y->numel, CF(a), CF(b), F(y), e);
}

static int cu_axpy(double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    NEED_F32("axpy", x);
    return ps_rtc_axpy(ctx_of(x), y->numel, (float)alpha, CF(x), F(y), e);
}

static int cu_scale(rt_tensor *y, double alpha, ps_err *e)
{
    NEED_F32("scale", y);
    return ps_rtc_scale(ctx_of(y), y->numel, F(y), (float)alpha, e);
}

static int cu_sum(const rt_tensor *x, double *out, ps_err *e)
{
    NEED_F32("sum", x);
    return ps_rtc_sum(ctx_of(x), x->numel, CF(x), out, e);
}

static int cu_concat_cols(const rt_tensor *const *xs, int n, rt_tensor *y, ps_err *e)
{
    NEED_F32("concat_cols", y);
    int64_t rows = y->shape[0], ld = y->numel / rows, off = 0;
    for (int i = 0; i < n; i++) {
        int64_t cols = xs[i]->numel / rows;
        int r = ps_rtc_copy_cols(ctx_of(y), rows, cols, CF(xs[i]), cols, F(y) + off, ld, e);
        if (r)
            return r;
        off += cols;
    }
    return 0;
}

static int cu_split_cols(const rt_tensor *dy, rt_tensor *const *dxs, int n, ps_err *e)
{
    NEED_F32("split_cols", dy);
    int64_t rows = dy->shape[0], ld = dy->numel / rows, off = 0;
    for (int i = 0; i < n; i++) {
        if (!dxs[i] || !dxs[i]->data)
            continue; /* not needed; its width is unknown, so this must be the last */
        int64_t cols = dxs[i]->numel / rows;
        int r = ps_rtc_copy_cols(ctx_of(dy), rows, cols, CF(dy) + off, ld, F(dxs[i]), cols, e);
        if (r)
            return r;
        off += cols;
    }
    return 0;
}

static int cu_split_heads(const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    NEED_F32("split_heads", x);
    /* x [B, T, H, D] -> y [B, H, T, D] */
    return ps_rtc_heads(ctx_of(x), 1, x->shape[0], x->shape[1], x->shape[2], x->shape[3], CF(x),
                        F(y), e);
}

static int cu_merge_heads(const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    NEED_F32("merge_heads", x);
    /* x [B, H, T, D] -> y [B, T, H, D] */
    return ps_rtc_heads(ctx_of(x), 0, x->shape[0], x->shape[2], x->shape[1], x->shape[3], CF(x),
                        F(y), e);
}

/* ------------------------------------------------------------------ linear, conv */

static int cu_linear_fwd(const rt_tensor *x, const rt_tensor *w, const rt_tensor *b,
                         rt_tensor *y, ps_err *e)
{
    NEED_F32("linear_fwd", x);
    int64_t out = w->shape[0], in = w->shape[1], n = x->numel / in;
    return ps_rtc_linear_fwd(ctx_of(x), n, in, out, CF(x), CF(w), COPT(b), F(y), e);
}

static int cu_linear_bwd(const rt_tensor *x, const rt_tensor *w, const rt_tensor *dy,
                         rt_tensor *dx, rt_tensor *dw, rt_tensor *db, ps_err *e)
{
    NEED_F32("linear_bwd", x);
    int64_t out = w->shape[0], in = w->shape[1], n = x->numel / in;
    return ps_rtc_linear_bwd(ctx_of(x), n, in, out, CF(x), CF(w), CF(dy), OPT(dx), OPT(dw),
                             OPT(db), e);
}

/* conv2d: the image is x [N, C, H, W], w [K, C, R, S], positions y's OH, OW. */
static ps_rtc_conv conv_geom(int stride, int pad, const rt_tensor *x, const rt_tensor *w,
                             const rt_tensor *y)
{
    ps_rtc_conv g = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                     .k = w->shape[0], .r = w->shape[2], .s = w->shape[3], .stride = stride,
                     .pad = pad, .oh = y->shape[2], .ow = y->shape[3]};
    return g;
}

/* convt2d as the adjoint of a conv2d: the image is y [N, K, OH, OW], the
 * positions x's H, W, the "other" channels x's C; w [C, K, R, S]. */
static ps_rtc_conv convt_geom(int stride, int pad, const rt_tensor *x, const rt_tensor *w,
                              const rt_tensor *y)
{
    ps_rtc_conv g = {.n = x->shape[0], .c = y->shape[1], .h = y->shape[2], .w = y->shape[3],
                     .k = x->shape[1], .r = w->shape[2], .s = w->shape[3], .stride = stride,
                     .pad = pad, .oh = x->shape[2], .ow = x->shape[3]};
    return g;
}

static int cu_conv2d_fwd(const rt_conv *cg, const rt_tensor *x, const rt_tensor *w,
                         const rt_tensor *b, rt_tensor *y, ps_err *e)
{
    NEED_F32("conv2d_fwd", x);
    ps_rtc_conv g = conv_geom(cg->stride, cg->pad, x, w, y);
    return ps_rtc_conv2d_fwd(ctx_of(x), &g, CF(x), CF(w), COPT(b), F(y), e);
}

static int cu_conv2d_bwd(const rt_conv *cg, const rt_tensor *x, const rt_tensor *w,
                         const rt_tensor *dy, rt_tensor *dx, rt_tensor *dw, rt_tensor *db,
                         ps_err *e)
{
    NEED_F32("conv2d_bwd", x);
    ps_rtc_conv g = conv_geom(cg->stride, cg->pad, x, w, dy);
    return ps_rtc_conv2d_bwd(ctx_of(x), &g, CF(x), CF(w), CF(dy), OPT(dx), OPT(dw), OPT(db), e);
}

static int cu_convt2d_fwd(const rt_convt *cg, const rt_tensor *x, const rt_tensor *w,
                          const rt_tensor *b, rt_tensor *y, ps_err *e)
{
    NEED_F32("convt2d_fwd", x);
    ps_rtc_conv g = convt_geom(cg->stride, cg->pad, x, w, y);
    return ps_rtc_convt2d_fwd(ctx_of(x), &g, CF(x), CF(w), COPT(b), F(y), e);
}

static int cu_convt2d_bwd(const rt_convt *cg, const rt_tensor *x, const rt_tensor *w,
                          const rt_tensor *dy, rt_tensor *dx, rt_tensor *dw, rt_tensor *db,
                          ps_err *e)
{
    NEED_F32("convt2d_bwd", x);
    ps_rtc_conv g = convt_geom(cg->stride, cg->pad, x, w, dy);
    return ps_rtc_convt2d_bwd(ctx_of(x), &g, CF(x), CF(w), CF(dy), OPT(dx), OPT(dw), OPT(db), e);
}

/* ------------------------------------------------------------------ pooling */

static int cu_maxpool2d_fwd(int k, int s, const rt_tensor *x, rt_tensor *y, rt_tensor *argmax,
                            ps_err *e)
{
    NEED_F32("maxpool2d_fwd", x);
    return ps_rtc_maxpool_fwd(ctx_of(x), k, s, x->shape[0] * x->shape[1], x->shape[2],
                              x->shape[3], y->shape[2], y->shape[3], CF(x), F(y),
                              (int32_t *)argmax->data, e);
}

static int cu_maxpool2d_bwd(int k, int s, const rt_tensor *argmax, const rt_tensor *dy,
                            rt_tensor *dx, ps_err *e)
{
    NEED_F32("maxpool2d_bwd", dy);
    return ps_rtc_maxpool_bwd(ctx_of(dy), k, s, dx->shape[0] * dx->shape[1], dx->shape[2],
                              dx->shape[3], dy->shape[2], dy->shape[3],
                              (const int32_t *)argmax->data, CF(dy), F(dx), e);
}

static int cu_avgpool2d_fwd(int k, int s, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    NEED_F32("avgpool2d_fwd", x);
    return ps_rtc_avgpool_fwd(ctx_of(x), k, s, x->shape[0] * x->shape[1], x->shape[2],
                              x->shape[3], y->shape[2], y->shape[3], CF(x), F(y), e);
}

static int cu_avgpool2d_bwd(int k, int s, const rt_tensor *dy, rt_tensor *dx, ps_err *e)
{
    NEED_F32("avgpool2d_bwd", dy);
    return ps_rtc_avgpool_bwd(ctx_of(dy), k, s, dx->shape[0] * dx->shape[1], dx->shape[2],
                              dx->shape[3], dy->shape[2], dy->shape[3], CF(dy), F(dx), e);
}

/* ------------------------------------------------------------------ activations, norms */

static int cu_act_fwd(rt_act a, double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    NEED_F32("act_fwd", x);
    return ps_rtc_act_fwd(ctx_of(x), (int)a, (float)alpha, x->numel, CF(x), F(y), e);
}

static int cu_act_bwd(rt_act a, double alpha, const rt_tensor *x, const rt_tensor *y,
                      const rt_tensor *dy, rt_tensor *dx, ps_err *e)
{
    NEED_F32("act_bwd", dy);
    return ps_rtc_act_bwd(ctx_of(dy), (int)a, (float)alpha, dy->numel, COPT(x), COPT(y), CF(dy),
                          F(dx), e);
}

static int cu_layernorm_fwd(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *beta,
                            double eps, rt_tensor *y, rt_tensor *mean, rt_tensor *rstd,
                            ps_err *e)
{
    NEED_F32("layernorm_fwd", x);
    int64_t cols = last_dim(x), rows = x->numel / cols;
    return ps_rtc_layernorm_fwd(ctx_of(x), rows, cols, CF(x), COPT(gamma), COPT(beta),
                                (float)eps, F(y), OPT(mean), OPT(rstd), e);
}

static int cu_layernorm_bwd(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *mean,
                            const rt_tensor *rstd, const rt_tensor *dy, rt_tensor *dx,
                            rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e)
{
    NEED_F32("layernorm_bwd", x);
    int64_t cols = last_dim(x), rows = x->numel / cols;
    return ps_rtc_layernorm_bwd(ctx_of(x), rows, cols, CF(x), COPT(gamma), CF(mean), CF(rstd),
                                CF(dy), OPT(dx), OPT(dgamma), OPT(dbeta), e);
}

static int64_t bn_hw(const rt_tensor *x)
{
    int64_t hw = 1;
    for (int i = 2; i < x->ndim; i++)
        hw *= x->shape[i];
    return hw;
}

static int cu_batchnorm_fwd(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                            const rt_tensor *beta, rt_tensor *running_mean,
                            rt_tensor *running_var, rt_tensor *y, rt_tensor *mean,
                            rt_tensor *rstd, ps_err *e)
{
    NEED_F32("batchnorm_fwd", x);
    return ps_rtc_batchnorm_fwd(ctx_of(x), g->training, (float)g->eps, (float)g->momentum,
                                x->shape[0], x->shape[1], bn_hw(x), CF(x), COPT(gamma),
                                COPT(beta), OPT(running_mean), OPT(running_var), F(y), OPT(mean),
                                OPT(rstd), e);
}

static int cu_batchnorm_bwd(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                            const rt_tensor *mean, const rt_tensor *rstd, const rt_tensor *dy,
                            rt_tensor *dx, rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e)
{
    NEED_F32("batchnorm_bwd", x);
    return ps_rtc_batchnorm_bwd(ctx_of(x), g->training, x->shape[0], x->shape[1], bn_hw(x),
                                CF(x), COPT(gamma), CF(mean), CF(rstd), CF(dy), OPT(dx),
                                OPT(dgamma), OPT(dbeta), e);
}

/* ------------------------------------------------------------------ embedding, losses */

static int cu_embedding_fwd(const rt_tensor *ids, const rt_tensor *table, rt_tensor *y,
                            ps_err *e)
{
    NEED_F32("embedding_fwd", table);
    return ps_rtc_embedding_fwd(ctx_of(table), ids->numel, last_dim(table),
                                (const int32_t *)ids->data, CF(table), F(y), e);
}

static int cu_embedding_bwd(const rt_tensor *ids, const rt_tensor *dy, rt_tensor *dtable,
                            ps_err *e)
{
    NEED_F32("embedding_bwd", dy);
    return ps_rtc_embedding_bwd(ctx_of(dy), ids->numel, last_dim(dtable),
                                (const int32_t *)ids->data, CF(dy), F(dtable), e);
}

static int cu_softmax_xent_fwd(const rt_tensor *logits, const rt_tensor *labels,
                               rt_tensor *probs, double *loss, ps_err *e)
{
    NEED_F32("softmax_xent_fwd", logits);
    int64_t cls = last_dim(logits), n = logits->numel / cls;
    return ps_rtc_softmax_xent_fwd(ctx_of(logits), n, cls, CF(logits),
                                   (const int32_t *)labels->data, F(probs), loss, e);
}

static int cu_softmax_xent_bwd(const rt_tensor *probs, const rt_tensor *labels, double scale,
                               rt_tensor *dlogits, ps_err *e)
{
    NEED_F32("softmax_xent_bwd", probs);
    int64_t cls = last_dim(probs), n = probs->numel / cls;
    return ps_rtc_softmax_xent_bwd(ctx_of(probs), n, cls, CF(probs),
                                   (const int32_t *)labels->data, (float)scale, F(dlogits), e);
}

static int cu_softmax_fwd(const rt_tensor *x, rt_tensor *y, ps_err *e)
{
    NEED_F32("softmax_fwd", x);
    int64_t cls = last_dim(x), n = x->numel / cls;
    return ps_rtc_softmax_fwd(ctx_of(x), n, cls, CF(x), F(y), e);
}

static int cu_mse_fwd(const rt_tensor *x, const rt_tensor *target, double *loss, ps_err *e)
{
    NEED_F32("mse_fwd", x);
    return ps_rtc_mse_fwd(ctx_of(x), x->numel, CF(x), CF(target), loss, e);
}

static int cu_mse_bwd(const rt_tensor *x, const rt_tensor *target, double scale, rt_tensor *dx,
                      ps_err *e)
{
    NEED_F32("mse_bwd", x);
    return ps_rtc_mse_bwd(ctx_of(x), x->numel, CF(x), CF(target), (float)scale, F(dx), e);
}

/* ------------------------------------------------------------------ attention */

static int cu_attention_fwd(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v,
                            int64_t tkv, rt_mask_kind mk, const rt_tensor *mask, rt_tensor *att,
                            rt_tensor *o, ps_err *e)
{
    NEED_F32("attention_fwd", q);
    int kind = mk == RT_MASK_CAUSAL ? 1 : mk == RT_MASK_BOOL ? 2 : 0;
    const uint8_t *m = kind == 2 && mask ? (const uint8_t *)mask->data : NULL;
    return ps_rtc_attention_fwd(ctx_of(q), q->shape[0] * q->shape[1], q->shape[2], k->shape[2],
                                tkv, q->shape[3], CF(q), CF(k), CF(v), kind, m, OPT(att), F(o),
                                e);
}

static int cu_attention_bwd(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v,
                            int64_t tkv, const rt_tensor *att, const rt_tensor *dout,
                            rt_tensor *dq, rt_tensor *dk, rt_tensor *dv, ps_err *e)
{
    NEED_F32("attention_bwd", q);
    if (!att || !att->data)
        return ps_errf(e, PS_EINPUT, "rt_attention_bwd: att (saved by the forward) is required");
    return ps_rtc_attention_bwd(ctx_of(q), q->shape[0] * q->shape[1], q->shape[2], k->shape[2],
                                tkv, q->shape[3], CF(q), CF(k), CF(v), CF(att), CF(dout),
                                OPT(dq), OPT(dk), OPT(dv), e);
}

/* ------------------------------------------------------------------ optimizers */

static int cu_sgd_update(const rt_opt *o, rt_param *p, ps_err *e)
{
    NEED_F32("opt_step", &p->w);
    float *m = NULL;
    if (o->momentum != 0) {
        if (!p->m.data)
            return ps_errf(e, PS_EINPUT, "rt_opt_step: param %s: no momentum buffer", p->name);
        m = F(&p->m);
    }
    return ps_rtc_sgd(ctx_of(&p->w), p->w.numel, (float)o->lr, (float)o->momentum,
                      (float)o->weight_decay, F(&p->w), CF(&p->g), m, e);
}

static int cu_adamw_update(const rt_opt *o, rt_param *p, ps_err *e)
{
    NEED_F32("opt_step", &p->w);
    if (!p->m.data || !p->v.data)
        return ps_errf(e, PS_EINPUT, "rt_opt_step: param %s: no AdamW moment buffers", p->name);
    return ps_rtc_adamw(ctx_of(&p->w), p->w.numel, (float)o->lr, (float)o->beta1,
                        (float)o->beta2, (float)o->eps, (float)o->weight_decay, o->step, F(&p->w),
                        CF(&p->g), F(&p->m), F(&p->v), e);
}

const rt_backend rt_cuda_backend = {
    .fill = cu_fill,
    .add = cu_add,
    .axpy = cu_axpy,
    .scale = cu_scale,
    .sum = cu_sum,
    .concat_cols = cu_concat_cols,
    .split_cols = cu_split_cols,
    .split_heads = cu_split_heads,
    .merge_heads = cu_merge_heads,
    .linear_fwd = cu_linear_fwd,
    .linear_bwd = cu_linear_bwd,
    .conv2d_fwd = cu_conv2d_fwd,
    .conv2d_bwd = cu_conv2d_bwd,
    .convt2d_fwd = cu_convt2d_fwd,
    .convt2d_bwd = cu_convt2d_bwd,
    .maxpool2d_fwd = cu_maxpool2d_fwd,
    .maxpool2d_bwd = cu_maxpool2d_bwd,
    .avgpool2d_fwd = cu_avgpool2d_fwd,
    .avgpool2d_bwd = cu_avgpool2d_bwd,
    .act_fwd = cu_act_fwd,
    .act_bwd = cu_act_bwd,
    .layernorm_fwd = cu_layernorm_fwd,
    .layernorm_bwd = cu_layernorm_bwd,
    .batchnorm_fwd = cu_batchnorm_fwd,
    .batchnorm_bwd = cu_batchnorm_bwd,
    .embedding_fwd = cu_embedding_fwd,
    .embedding_bwd = cu_embedding_bwd,
    .softmax_xent_fwd = cu_softmax_xent_fwd,
    .softmax_xent_bwd = cu_softmax_xent_bwd,
    .softmax_fwd = cu_softmax_fwd,
    .mse_fwd = cu_mse_fwd,
    .mse_bwd = cu_mse_bwd,
    .attention_fwd = cu_attention_fwd,
    .attention_bwd = cu_attention_bwd,
    .sgd_update = cu_sgd_update,
    .adamw_update = cu_adamw_update,
    .bn_relu_maxpool_fwd = NULL, /* the CNN calls batchnorm, act, maxpool instead */
    .bn_relu_maxpool_bwd = NULL,
};

#else

const rt_backend rt_cuda_backend = {0};

#endif
