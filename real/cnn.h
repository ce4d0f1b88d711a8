/* A configurable CNN for small images (Fashion-MNIST's 1 x 28 x 28), written
 * llm.c style: an explicit forward that keeps its activations and an
 * explicit backward that walks them in reverse.
 *
 *   block i (i < nblocks): conv kxk (pad k/2, stride 1, ch[i] channels)
 *                          [-> batchnorm] -> ReLU -> maxpool 2x2
 *   head:                  flatten -> linear(hidden) -> ReLU -> linear(classes)
 *                          (hidden 0: one linear straight to the classes)
 *
 * With batch norm the convolution has no bias (BN's beta does its job), and
 * batchnorm -> ReLU -> maxpool is one op (rt_bn_relu_maxpool_*) where the
 * device has it: the normalised and activated tensors are never stored and
 * the backward overwrites the conv output with its gradient.
 * The penultimate features (the hidden layer after ReLU, or the flattened
 * last block when hidden is 0) are exposed for a Fréchet distance.
 *
 * Parameters: params[0 .. ntrain) are trainable (give these to the
 * optimizer); params[ntrain .. nparams) are batch-norm running statistics
 * (saved with the weights, never stepped). */
#ifndef PS_REAL_CNN_H
#define PS_REAL_CNN_H

#include "real/rt.h"

#define CNN_MAXBLOCKS 4

typedef struct cnn_config {
    int in_ch, in_h, in_w; /* 1, 28, 28 */
    int nblocks;           /* 1..CNN_MAXBLOCKS */
    int ch[CNN_MAXBLOCKS]; /* output channels of each conv */
    int ksize;             /* odd: 3, 5 */
    int batchnorm;         /* 0 / 1 */
    int hidden;            /* 0: no hidden layer */
    int classes;           /* 10 */
} cnn_config;

/* The full-size model: conv3x3(32)-BN-ReLU-pool, conv3x3(64)-BN-ReLU-pool,
 * linear(3136 -> 128)-ReLU-linear(10). */
cnn_config cnn_config_default(void);
/* A small one for tests and --quick: conv3x3(8), conv3x3(16), hidden 32. */
cnn_config cnn_config_small(void);
/* Checks the config (positive sizes, pooling fits); PS_EINPUT naming the field. */
int cnn_config_check(const cnn_config *c, ps_err *e);
/* "cnn in=1x28x28 ch=32,64 k=3 bn=1 hidden=128 classes=10" (the weights'
 * meta) and back; parse fails with PS_EINPUT on anything else. */
void cnn_config_str(const cnn_config *c, char *buf, size_t n);
int cnn_config_parse(const char *s, cnn_config *c, ps_err *e);

/* Floating-point operations of one training step (forward + backward incl.
 * every weight gradient; the first conv's input gradient is not computed) on
 * a batch: convolutions and linears count 2 per multiply-add; elementwise
 * work (BN, ReLU, pooling, softmax) is not counted.  Forward alone:
 * cnn_flops_fwd. */
double cnn_flops_fwd(const cnn_config *c, int64_t batch);
double cnn_flops_step(const cnn_config *c, int64_t batch);

typedef struct cnn_block {
    int c_in, h_in, w_in, c_out, h, w; /* conv output c_out x h x w; pool h/2 x w/2 */
    rt_param *conv_w, *conv_b, *bn_g, *bn_b, *bn_rm, *bn_rv; /* into params[] */
    rt_tensor conv, bn, act, pool, argmax;                  /* activations [B, ...] */
    rt_tensor mean, rstd;                                    /* BN batch stats [c_out] */
    rt_tensor dconv, dact, dpool;                            /* gradients [B, ...] */
    /* (bn, act, dconv, dact unallocated with the fused op: see above) */
} cnn_block;

typedef struct cnn {
    cnn_config cfg;
    rt_dev *dev;
    rt_dtype dt;
    int64_t max_batch;
    rt_param *params;
    int nparams, ntrain;
    cnn_block blk[CNN_MAXBLOCKS];
    int64_t flat; /* features entering the head */
    rt_param *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    rt_tensor h1, a1, logits, probs; /* [B, hidden] x2, [B, classes] x2 */
    rt_tensor dh1, dflat, dlogits;
    rt_bn bn;       /* eps 1e-5, momentum 0.1 */
    int64_t cur_n;  /* batch size of the last forward */
    int training;   /* mode of the last forward */
    int conv_spent; /* a backward overwrote the conv outputs (fused blocks) */
} cnn;

/* Allocate parameters (initialised from seed: PyTorch's default fan-in
 * uniform for convs and linears, BN gamma 1 beta 0, running var 1) and the
 * activations for batches of up to max_batch, on d in dtype dt. */
int cnn_init(cnn *net, const cnn_config *c, rt_dev *d, rt_dtype dt, int64_t max_batch,
             uint64_t seed, ps_err *e);
void cnn_free(cnn *net);

/* x [n, in_ch, in_h, in_w], n <= max_batch.  training: batch statistics
 * (running ones updated); else running statistics.  The logits of the
 * first n rows are then in cnn_logits(). */
int cnn_forward(cnn *net, const rt_tensor *x, int training, ps_err *e);
/* Views of the last forward's first cur_n rows. */
int cnn_logits(const cnn *net, rt_tensor *view, ps_err *e);
int cnn_features(const cnn *net, rt_tensor *view, ps_err *e);
int64_t cnn_feature_dim(const cnn *net);
/* Mean softmax cross-entropy of the last forward against labels (I32 [n]). */
int cnn_loss(cnn *net, const rt_tensor *labels, double *loss, ps_err *e);
/* After cnn_loss: accumulate every trainable gradient (+=); x is the
 * forward's input.  Once per forward: with batch norm the blocks' backward
 * runs in place over the saved conv outputs (a second call is PS_EINPUT). */
int cnn_backward(cnn *net, const rt_tensor *x, const rt_tensor *labels, ps_err *e);

/* Arg-max of the logits of the last forward into pred[cur_n] (host). */
int cnn_predict(const cnn *net, int32_t *pred, ps_err *e);

/* Weights: rt_save / rt_load of every param with the config as meta. */
int cnn_save(const cnn *net, const char *path, const char *extra_meta, ps_err *e);
int cnn_load(cnn *net, const char *path, ps_err *e);

#endif
