/* The tensor runtime of real/: tensors on the CPU or a CUDA device behind one
 * interface, and the layers every study trains with, each an explicit
 * forward and backward function in the style of llm.c's train_gpt2.c (no
 * autograd: a model's forward calls the *_fwd functions in order and its
 * backward calls the *_bwd functions in reverse, keeping what they need).
 *
 * Conventions (every function below):
 *  - tensors are dense, row-major (last index fastest); images NCHW;
 *  - float tensors are F32, or F64 for numerical checks (CPU only); every
 *    float operand of one call has the same dtype and device; indices
 *    (labels, token ids, pooling arg-max) are I32; masks U8;
 *  - shapes are checked: a mismatch is PS_EINPUT naming the function, the
 *    operand and both shapes; device failures are PS_ERUN;
 *  - forward outputs and input gradients (dx) are OVERWRITTEN; parameter
 *    gradients (dw, db, dgamma, ...) are ACCUMULATED (+=), so gradients of
 *    several micro-batches add up until the optimizer step zeroes them;
 *  - a NULL gradient output means "not needed" (e.g. dx of the first layer);
 *  - on CUDA every call enqueues on the device's stream and returns; read a
 *    result with rt_tensor_to_host (which waits) or wait with rt_dev_sync.
 *    The CUDA backend implements F32 only.
 *
 * Dispatch: each rt_* function validates its operands, then runs the CPU
 * implementation (real/cpu_*.c; f32 and f64 from one template, GEMMs through
 * OpenBLAS) or calls the CUDA backend's slot (real/backend.h; cuBLAS, cuDNN
 * and the project's kernels in kernels/cuda_rt.cu).  A slot the CUDA backend
 * leaves empty fails with "<op>: not available on CUDA". */
#ifndef PS_REAL_RT_H
#define PS_REAL_RT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ------------------------------------------------------------------ devices */

typedef enum { RT_CPU = 0, RT_CUDA = 1 } rt_devkind;

typedef struct rt_dev rt_dev;

/* The process-wide CPU device (never freed; always succeeds). */
rt_dev *rt_cpu(void);
/* A CUDA device (its own stream and library handles); PS_ERUN when the build
 * has no CUDA or no usable GPU. */
rt_dev *rt_cuda_new(int ordinal, ps_err *e);
void rt_dev_free(rt_dev *d); /* no-op for rt_cpu() */
rt_devkind rt_dev_kind(const rt_dev *d);
/* "cpu" / "cuda:0". */
const char *rt_dev_name(const rt_dev *d);
/* Wait for the device's queued work; reports asynchronous errors. */
int rt_dev_sync(rt_dev *d, ps_err *e);
/* The kernels/cuda_ops.h context of a CUDA device (NULL on the CPU). */
struct ps_cuda_ctx *rt_dev_cuda_ctx(const rt_dev *d);

/* ------------------------------------------------------------------ tensors */

typedef enum { RT_F32 = 0, RT_F64, RT_I32, RT_U8, RT_DTYPE_COUNT } rt_dtype;

#define RT_MAXDIM 5

typedef struct rt_tensor {
    rt_dtype dtype;
    rt_dev *dev;
    int ndim;
    int64_t shape[RT_MAXDIM];
    int64_t numel;
    void *data;  /* host pointer (CPU) or device pointer (CUDA) */
    int owner;   /* 1: rt_tensor_free releases data; 0: a view */
} rt_tensor;

size_t rt_dtype_size(rt_dtype t);
const char *rt_dtype_name(rt_dtype t);

/* Allocate zero-filled storage; ndim 1..RT_MAXDIM, every dim >= 1. */
int rt_tensor_alloc(rt_tensor *t, rt_dev *d, rt_dtype dt, int ndim, const int64_t *shape,
                    ps_err *e);
/* Shorthands: rt_tensor_new2(&t, d, RT_F32, rows, cols, e) ... */
int rt_tensor_new1(rt_tensor *t, rt_dev *d, rt_dtype dt, int64_t d0, ps_err *e);
int rt_tensor_new2(rt_tensor *t, rt_dev *d, rt_dtype dt, int64_t d0, int64_t d1, ps_err *e);
int rt_tensor_new4(rt_tensor *t, rt_dev *d, rt_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                   int64_t d3, ps_err *e);
/* Free storage (when owner) and zero the struct; NULL and zeroed are fine. */
void rt_tensor_free(rt_tensor *t);
/* A non-owning view of the same storage with another shape (same numel), or
 * of rows [r0, r0 + rows) of the first dimension. */
int rt_tensor_reshape(rt_tensor *view, const rt_tensor *t, int ndim, const int64_t *shape,
                      ps_err *e);
int rt_tensor_rows(rt_tensor *view, const rt_tensor *t, int64_t r0, int64_t rows, ps_err *e);
/* The same views by value, for shapes the caller has already checked: the
 * first n rows, or [a, b] / [a, b, c, d] with the same numel.  A zeroed
 * tensor (numel 0, which every layer rejects) if the shape does not fit. */
rt_tensor rt_view_rows(const rt_tensor *t, int64_t n);
rt_tensor rt_view2(const rt_tensor *t, int64_t a, int64_t b);
rt_tensor rt_view4(const rt_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d);
size_t rt_tensor_bytes(const rt_tensor *t);
/* "[32, 1, 28, 28] f32 cpu" into buf. */
const char *rt_tensor_desc(const rt_tensor *t, char *buf, size_t n);

/* Host <-> tensor copies (numel elements of the tensor's dtype); waits. */
int rt_tensor_from_host(rt_tensor *t, const void *src, ps_err *e);
int rt_tensor_to_host(const rt_tensor *t, void *dst, ps_err *e);
/* dst = src (same shape and dtype; devices may differ: CPU <-> CUDA). */
int rt_tensor_copy(rt_tensor *dst, const rt_tensor *src, ps_err *e);
int rt_tensor_zero(rt_tensor *t, ps_err *e);
int rt_tensor_fill(rt_tensor *t, double value, ps_err *e);
/* Host data of a CPU tensor, NULL on a device tensor or another dtype. */
float *rt_f32(const rt_tensor *t);
double *rt_f64(const rt_tensor *t);
int32_t *rt_i32(const rt_tensor *t);

/* ------------------------------------------------------------------ randomness */

/* xoshiro256** seeded by splitmix64: the same seed gives the same numbers on
 * every machine (initialisation happens on the host, then is copied). */
typedef struct rt_rng {
    uint64_t s[4];
} rt_rng;

void rt_rng_seed(rt_rng *r, uint64_t seed);
uint64_t rt_rng_next(rt_rng *r);
double rt_rng_uniform(rt_rng *r); /* [0, 1) */
double rt_rng_normal(rt_rng *r);  /* N(0, 1), Box-Muller */
/* Fill t (F32/F64, any device) with U(lo, hi) or N(mean, std^2). */
int rt_init_uniform(rt_tensor *t, rt_rng *r, double lo, double hi, ps_err *e);
int rt_init_normal(rt_tensor *t, rt_rng *r, double mean, double std, ps_err *e);
/* Kaiming-uniform as PyTorch's default for Linear / Conv weights:
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike. */
int rt_init_fan_in(rt_tensor *t, rt_rng *r, int64_t fan_in, ps_err *e);

/* ------------------------------------------------------------------ elementwise helpers */

int rt_add(const rt_tensor *a, const rt_tensor *b, rt_tensor *y, ps_err *e); /* y = a + b */
int rt_axpy(double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e);     /* y += alpha x */
int rt_scale(rt_tensor *y, double alpha, ps_err *e);                        /* y *= alpha */
/* Sum of all elements (host double; waits). */
int rt_sum(const rt_tensor *x, double *out, ps_err *e);

/* Column concatenation of 2-D tensors with equal rows: y [N, sum c_i] =
 * [x_0 | x_1 | ...]; split is its adjoint (dx_i = the columns of dy). */
int rt_concat_cols(const rt_tensor *const *xs, int n, rt_tensor *y, ps_err *e);
int rt_split_cols(const rt_tensor *dy, rt_tensor *const *dxs, int n, ps_err *e);

/* [B, T, H, D] <-> [B, H, T, D] (attention heads); each is the other's
 * adjoint, so backward calls the opposite one. */
int rt_split_heads(const rt_tensor *x, rt_tensor *y, ps_err *e);
int rt_merge_heads(const rt_tensor *x, rt_tensor *y, ps_err *e);

/* ------------------------------------------------------------------ layers */

/* Linear: x [N, in], w [out, in] (PyTorch layout), b [out] or NULL,
 * y [N, out] = x w^T + b.  Any leading dims of x and y are flattened into N.
 * bwd: dx = dy w; dw += dy^T x; db += column sums of dy. */
int rt_linear_fwd(const rt_tensor *x, const rt_tensor *w, const rt_tensor *b, rt_tensor *y,
                  ps_err *e);
int rt_linear_bwd(const rt_tensor *x, const rt_tensor *w, const rt_tensor *dy, rt_tensor *dx,
                  rt_tensor *dw, rt_tensor *db, ps_err *e);

/* 2-D convolution (cross-correlation, zero padding): x [N, C, H, W],
 * w [K, C, R, S], b [K] or NULL, y [N, K, OH, OW],
 * OH = (H + 2 pad - R) / stride + 1.  The CPU path is im2col + GEMM. */
typedef struct rt_conv {
    int stride, pad;
} rt_conv;
int rt_conv2d_fwd(const rt_conv *g, const rt_tensor *x, const rt_tensor *w, const rt_tensor *b,
                  rt_tensor *y, ps_err *e);
int rt_conv2d_bwd(const rt_conv *g, const rt_tensor *x, const rt_tensor *w, const rt_tensor *dy,
                  rt_tensor *dx, rt_tensor *dw, rt_tensor *db, ps_err *e);

/* Transposed convolution (the adjoint of conv2d in x; DCGAN's up-sampling):
 * x [N, C, H, W], w [C, K, R, S] (PyTorch ConvTranspose2d layout), b [K] or
 * NULL, y [N, K, OH, OW], OH = (H - 1) stride - 2 pad + R + out_pad. */
typedef struct rt_convt {
    int stride, pad, out_pad;
} rt_convt;
int rt_convt2d_fwd(const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                   const rt_tensor *b, rt_tensor *y, ps_err *e);
int rt_convt2d_bwd(const rt_convt *g, const rt_tensor *x, const rt_tensor *w,
                   const rt_tensor *dy, rt_tensor *dx, rt_tensor *dw, rt_tensor *db, ps_err *e);

/* Pooling over NCHW, window k, stride s, no padding; y [N, C, OH, OW] with
 * OH = (H - k) / s + 1.  Max pooling records the arg-max (index into the
 * H*W plane, I32, y's shape) for its backward; ties go to the first. */
int rt_maxpool2d_fwd(int k, int s, const rt_tensor *x, rt_tensor *y, rt_tensor *argmax,
                     ps_err *e);
int rt_maxpool2d_bwd(int k, int s, const rt_tensor *argmax, const rt_tensor *dy, rt_tensor *dx,
                     ps_err *e);
int rt_avgpool2d_fwd(int k, int s, const rt_tensor *x, rt_tensor *y, ps_err *e);
int rt_avgpool2d_bwd(int k, int s, const rt_tensor *dy, rt_tensor *dx, ps_err *e);

/* Activations, elementwise: y = f(x).  bwd: dx = dy * f'(x) (dx may alias
 * dy); it takes both x and y so each uses the cheaper one. */
typedef enum {
    RT_RELU = 0,
    RT_LEAKY_RELU, /* alpha: the negative slope */
    RT_GELU,       /* exact: x/2 (1 + erf(x / sqrt 2)) */
    RT_TANH,
    RT_SIGMOID,
    RT_ACT_COUNT
} rt_act;
const char *rt_act_name(rt_act a);
int rt_act_parse(const char *s); /* -1 when unknown */
int rt_act_fwd(rt_act a, double alpha, const rt_tensor *x, rt_tensor *y, ps_err *e);
int rt_act_bwd(rt_act a, double alpha, const rt_tensor *x, const rt_tensor *y,
               const rt_tensor *dy, rt_tensor *dx, ps_err *e);

/* Layer norm over the last dim C of x [N, C] (leading dims flattened):
 * y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps), biased
 * variance.  mean, rstd [N] are saved for backward (either may be NULL in
 * inference).  dgamma, dbeta += . */
int rt_layernorm_fwd(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *beta,
                     double eps, rt_tensor *y, rt_tensor *mean, rt_tensor *rstd, ps_err *e);
int rt_layernorm_bwd(const rt_tensor *x, const rt_tensor *gamma, const rt_tensor *mean,
                     const rt_tensor *rstd, const rt_tensor *dy, rt_tensor *dx,
                     rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e);

/* Batch norm over channels: x [N, C] or [N, C, H, W]; statistics per channel
 * over N (and H, W).  training != 0: batch statistics (biased variance for
 * normalising), running stats updated as r = (1 - momentum) r + momentum
 * stat with the UNBIASED variance (PyTorch); mean / rstd [C] saved for
 * backward.  training == 0: running statistics, nothing updated; backward
 * then treats the statistics as constants. */
typedef struct rt_bn {
    double eps, momentum;
    int training;
} rt_bn;
int rt_batchnorm_fwd(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                     const rt_tensor *beta, rt_tensor *running_mean, rt_tensor *running_var,
                     rt_tensor *y, rt_tensor *mean, rt_tensor *rstd, ps_err *e);
int rt_batchnorm_bwd(const rt_bn *g, const rt_tensor *x, const rt_tensor *gamma,
                     const rt_tensor *mean, const rt_tensor *rstd, const rt_tensor *dy,
                     rt_tensor *dx, rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e);

/* Batch norm, ReLU and max pooling in one op (a CNN block's epilogue):
 *   y = maxpool_{k,s}(relu(batchnorm(x)))
 * x [N, C, H, W]; y, argmax [N, C, OH, OW] as rt_maxpool2d_fwd (argmax
 * indexes the H*W plane of relu(batchnorm(x)), ties to the first); gamma,
 * beta, running_mean, running_var, mean, rstd as rt_batchnorm_fwd (argmax,
 * mean, rstd may be NULL in inference).  The same results as the three ops
 * in turn, without storing the two full-size intermediates.  bwd: from y,
 * argmax and dy (y's shape), what rt_maxpool2d_bwd, rt_act_bwd(RT_RELU) and
 * rt_batchnorm_bwd give in turn: dx (x's shape) overwritten, dgamma, dbeta
 * accumulated; any of the three may be NULL; dx may be x itself (in place:
 * x's storage then holds dx).  The CPU implements both; on CUDA they fail
 * "not available" unless the backend fills the slots (check with
 * rt_bn_relu_maxpool_available and call the three ops instead). */
int rt_bn_relu_maxpool_fwd(const rt_bn *g, int k, int s, const rt_tensor *x,
                           const rt_tensor *gamma, const rt_tensor *beta,
                           rt_tensor *running_mean, rt_tensor *running_var, rt_tensor *y,
                           rt_tensor *argmax, rt_tensor *mean, rt_tensor *rstd, ps_err *e);
int rt_bn_relu_maxpool_bwd(const rt_bn *g, int k, int s, const rt_tensor *x,
                           const rt_tensor *gamma, const rt_tensor *mean, const rt_tensor *rstd,
                           const rt_tensor *y, const rt_tensor *argmax, const rt_tensor *dy,
                           rt_tensor *dx, rt_tensor *dgamma, rt_tensor *dbeta, ps_err *e);
/* Whether the op above runs on device d (always on the CPU). */
int rt_bn_relu_maxpool_available(const rt_dev *d);

/* Embedding: ids I32 [N] (any shape, flattened) in [0, V), table [V, D],
 * y [N, D].  bwd: dtable[ids[i]] += dy[i].  An id out of range is PS_EINPUT
 * naming it (checked on the CPU; on CUDA the ids are checked on the host
 * before upload by the caller's data loader). */
int rt_embedding_fwd(const rt_tensor *ids, const rt_tensor *table, rt_tensor *y, ps_err *e);
int rt_embedding_bwd(const rt_tensor *ids, const rt_tensor *dy, rt_tensor *dtable, ps_err *e);

/* Softmax cross-entropy: logits [N, C], labels I32 [N] in [0, C) (a label
 * of -1 is ignored: no loss, no gradient).  fwd writes probs [N, C] and the
 * mean loss over the counted rows into *loss (host; waits on CUDA).
 * bwd: dlogits = (probs - onehot(labels)) * scale / counted (scale 1 for the
 * mean loss's gradient). */
int rt_softmax_xent_fwd(const rt_tensor *logits, const rt_tensor *labels, rt_tensor *probs,
                        double *loss, ps_err *e);
int rt_softmax_xent_bwd(const rt_tensor *probs, const rt_tensor *labels, double scale,
                        rt_tensor *dlogits, ps_err *e);
/* Row softmax alone (inference, sampling): y [N, C] = softmax(x). */
int rt_softmax_fwd(const rt_tensor *x, rt_tensor *y, ps_err *e);

/* Mean squared error: loss = mean((x - target)^2) over all elements;
 * bwd: dx = 2 (x - target) * scale / numel. */
int rt_mse_fwd(const rt_tensor *x, const rt_tensor *target, double *loss, ps_err *e);
int rt_mse_bwd(const rt_tensor *x, const rt_tensor *target, double scale, rt_tensor *dx,
               ps_err *e);

/* Scaled dot-product attention with a boolean mask:
 *   att = softmax(q k^T / sqrt(D) + mask), o = att v
 * q [B, H, Tq, D]; k, v [B, H, Tcap, D] of which the first `tkv` positions
 * are used (tkv <= Tcap: a KV cache holds Tcap, fills tkv); o [B, H, Tq, D];
 * att [B, H, Tq, tkv] saved for backward (may be NULL in inference).
 * Query i sits at key position tkv - Tq + i.  Masks (as kernels/):
 *   RT_MASK_NONE    every query sees every key;
 *   RT_MASK_CAUSAL  query i sees keys j <= tkv - Tq + i;
 *   RT_MASK_BOOL    mask U8 [Tq, tkv] (same device): mask[i, j] != 0 says
 *                   query i sees key j — any boolean mask, e.g. a token tree
 *                   where a token sees the prefix, its ancestors and itself.
 * A query that sees no key gets a zero output row (and zero gradients).
 * bwd: dq = (datt ⊙ softmax') k / sqrt(D) etc.; dq, dk, dv overwritten
 * (dk, dv over the first tkv positions; the rest of Tcap untouched). */
typedef enum { RT_MASK_NONE = 0, RT_MASK_CAUSAL, RT_MASK_BOOL } rt_mask_kind;
int rt_attention_fwd(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v, int64_t tkv,
                     rt_mask_kind mk, const rt_tensor *mask, rt_tensor *att, rt_tensor *o,
                     ps_err *e);
int rt_attention_bwd(const rt_tensor *q, const rt_tensor *k, const rt_tensor *v, int64_t tkv,
                     const rt_tensor *att, const rt_tensor *dout, rt_tensor *dq, rt_tensor *dk,
                     rt_tensor *dv, ps_err *e);

/* KV cache for incremental decoding: k, v [B, H, cap, D], len filled.
 * append copies k_new, v_new [B, H, T, D] to positions [len, len + T) and
 * advances len (PS_EINPUT when it would pass cap); truncate sets len back
 * (rejecting a speculated branch); keep_rows compacts the positions listed
 * in rows[] (ascending, >= from) to from, from+1, ... and sets len (keeping
 * the accepted path of a token tree). */
typedef struct rt_kvcache {
    rt_tensor k, v;
    int64_t len;
} rt_kvcache;
int rt_kvcache_init(rt_kvcache *c, rt_dev *d, int64_t b, int64_t h, int64_t cap, int64_t dh,
                    ps_err *e);
void rt_kvcache_free(rt_kvcache *c);
int rt_kvcache_append(rt_kvcache *c, const rt_tensor *k_new, const rt_tensor *v_new, ps_err *e);
int rt_kvcache_truncate(rt_kvcache *c, int64_t len, ps_err *e);
int rt_kvcache_keep_rows(rt_kvcache *c, int64_t from, const int64_t *rows, int64_t n, ps_err *e);

/* ------------------------------------------------------------------ parameters, optimizers */

/* A trainable tensor with its gradient and optimizer state (m, v allocated
 * on first use).  name: "conv1.w" (saved with the weights). */
typedef struct rt_param {
    char name[48];
    rt_tensor w, g, m, v;
} rt_param;

/* w, g zero-filled with this shape on d. */
int rt_param_init(rt_param *p, const char *name, rt_dev *d, rt_dtype dt, int ndim,
                  const int64_t *shape, ps_err *e);
void rt_param_free(rt_param *p);
int rt_params_zero_grad(rt_param *ps, int n, ps_err *e);
/* Total element count. */
int64_t rt_params_numel(const rt_param *ps, int n);

typedef enum { RT_OPT_SGD = 0, RT_OPT_ADAMW } rt_opt_kind;
typedef struct rt_opt {
    rt_opt_kind kind;
    double lr;
    double momentum;     /* SGD: 0 = plain SGD; PyTorch's form v = mu v + g */
    double beta1, beta2; /* AdamW (0.9, 0.999) */
    double eps;          /* AdamW 1e-8 */
    double weight_decay; /* SGD: L2 added to g; AdamW: decoupled, w -= lr wd w */
    int64_t step;        /* AdamW bias correction: incremented by rt_opt_step */
} rt_opt;
/* Update every parameter from its gradient (does not zero the gradients). */
int rt_opt_step(rt_opt *o, rt_param *ps, int n, ps_err *e);

/* ------------------------------------------------------------------ weights on disk */

/* Save params (names, dtypes, shapes, data) to path atomically (path.tmp,
 * rename), with a 64-bit checksum of everything written and `meta` (free
 * text: model name, config, seed) in the header.  Load checks the magic, the
 * checksum (a mismatch is "PATH: checksum mismatch: file is corrupt"), and
 * that every expected param is present with the same shape ("PATH: param
 * conv1.w: shape [32,1,3,3] in file, [16,1,3,3] expected"); errors are
 * PS_EINPUT and leave the params untouched.  meta_out (may be NULL) gets the
 * stored meta (caller frees). */
int rt_save(const char *path, const rt_param *ps, int n, const char *meta, ps_err *e);
int rt_load(const char *path, rt_param *ps, int n, char **meta_out, ps_err *e);

#endif
