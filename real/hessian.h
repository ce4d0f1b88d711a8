/* Exact second-order machinery for small float64 networks (issue 7, HAWQ-V2).
 *
 * A sequential network of the layers the Fashion-MNIST CNN (real/cnn.h) uses
 * -- conv2d (k x k, pad k/2, stride 1, bias), a fixed per-channel affine
 * (batch norm in eval mode), ReLU, max-pool 2x2, linear (an implicit flatten
 * of [c, h, w] in NCHW order before it) -- and mean softmax cross-entropy.
 * Everything is float64 on the host (conv by im2col + OpenBLAS dgemm).
 *
 * Parameters live in one flat vector theta[nparam]; they are cut into
 * blocks, one per weight and one per bias of every conv / linear layer
 * ("conv1.w", "conv1.b", "fc1.w", ...).  Batch norm is NOT a parameter block:
 * hs_net_from_cnn either keeps it as a fixed per-channel affine after the
 * conv (fold_bn 0: the conv weight block is the raw conv weight, the tensor
 * a deployment quantizes when BN is folded only after quantization), or
 * folds it into the conv (fold_bn 1: W' = W*g/sqrt(rv+eps), b' = (b-rm)*
 * g/sqrt(rv+eps)+beta; the Hessian is then w.r.t. the folded weights, the
 * tensor quantized when folding happens before quantization).  The two
 * differ by the diagonal rescaling H_raw = S H_folded S, S = g/sqrt(rv+eps)
 * per output channel.
 *
 * "Quantized layers" are the conv / linear layers, in forward order:
 * net->quant[q] is the layer index of the q-th one.
 *
 * Hessian-vector products are exact: Pearlmutter's R-op (forward-over-
 * backward): the tangent R{.} is pushed forward through every layer
 * (R{z} = W R{x} + V x + V_b for conv/linear, ReLU and max-pool reuse the
 * forward masks / argmax, since their second derivative is zero away from
 * kinks), then R{dL/dlogits} = (diag(p) - p p^T) R{z} / n, then the
 * R-backward (R{dx} = W^T R{dz} + V^T dz, R{dW} = R{dz} x^T + dz R{x}^T).
 *
 * Exact block traces (Gauss-Newton identity): with ReLU / max-pool /
 * affine layers the logits are piecewise linear in any one layer's (W, b)
 * with everything else fixed, so d2z/dtheta_l^2 = 0 and the diagonal block
 * H_ll = mean_n J_l^T A J_l, A = diag(p) - p p^T.  We use
 * A = sum_c r_c r_c^T with r_c = sqrt(p_c) (e_c - p) (check:
 * sum_c p_c (e_c - p)(e_c - p)^T = diag(p) - p p^T since sum p_c = 1), so
 * Tr H_ll = mean_n sum_c || J_l^T r_c ||^2: one backward per class per
 * sample.  The same holds for activations above which the net is piecewise
 * linear (all of them here).
 *
 * Not thread-safe: a net owns its workspace.  Errors: PS_EINPUT for bad
 * arguments (naming the function and the field), PS_ERUN out of memory. */
#ifndef PS_REAL_HESSIAN_H
#define PS_REAL_HESSIAN_H

#include <stdint.h>

#include "common/err.h"
#include "real/cnn.h"

#define HS_MAXLAYERS 32

typedef enum {
    HS_CONV = 0, /* k x k, pad k/2, stride 1, weight [c_out, c_in, k, k] + bias [c_out] */
    HS_CHAFFINE, /* fixed y = x * scale[c] + shift[c] (eval batch norm); no parameters */
    HS_RELU,
    HS_MAXPOOL,  /* 2 x 2, stride 2, floor; ties go to the first in row-major order */
    HS_LINEAR,   /* weight [out, in] + bias [out]; flattens [c, h, w] first */
} hs_kind;

typedef struct hs_layer_spec {
    hs_kind kind;
    int out;   /* HS_CONV: output channels; HS_LINEAR: output features */
    int ksize;  /* HS_CONV: odd kernel size */
    int nobias; /* HS_CONV / HS_LINEAR: 1 = no bias block */
} hs_layer_spec;

typedef struct hs_layer {
    hs_kind kind;
    int c_in, h_in, w_in;    /* linear: c_in = in features, h_in = w_in = 1 */
    int c_out, h_out, w_out; /* linear: c_out = out features, 1, 1 */
    int k;
    int64_t in_numel, out_numel; /* per sample */
    int wblock, bblock;          /* parameter block indices, -1 when none */
    double *scale, *shift;       /* HS_CHAFFINE: [c_in] (owned) */
} hs_layer;

typedef struct hs_block {
    char name[48];  /* "conv1.w", "conv1.b", "fc2.w" */
    int layer;      /* index into layers[] */
    int is_bias;
    int64_t off, n; /* theta[off .. off + n) */
} hs_block;

struct hs_ws;

typedef struct hs_net {
    int in_c, in_h, in_w;
    int64_t in_dim; /* in_c * in_h * in_w: x rows are [in_dim] */
    int classes;    /* output width of the last layer */
    int nlayers;
    hs_layer layers[HS_MAXLAYERS];
    int nblocks;
    hs_block blocks[2 * HS_MAXLAYERS];
    int nquant;
    int quant[HS_MAXLAYERS]; /* layer index of the q-th conv / linear */
    int64_t nparam;
    double *theta;           /* [nparam] (owned) */
    int64_t batch;           /* rows per data pass chunk (default 32; any >= 1; set before use) */
    struct hs_ws *ws;        /* internal workspace */
} hs_net;

/* ------------------------------------------------------------ construction */

/* A net for inputs [in_c, in_h, in_w] from layer specs (the last layer must be
 * HS_LINEAR: its output width is the number of classes).  Weights and biases
 * initialised from seed with PyTorch's fan-in uniform U(-1/sqrt(fan_in), ..).
 * HS_CHAFFINE layers start as the identity (scale 1, shift 0). */
int hs_net_init(hs_net *net, int in_c, int in_h, int in_w, const hs_layer_spec *spec, int nspec,
                uint64_t seed, ps_err *e);
/* An MLP dims[0] -> dims[1] -> ... -> dims[nd-1] with ReLU between linears
 * (e.g. {64, 32, 10} for the digits: 2,410 parameters). */
int hs_net_mlp(hs_net *net, const int *dims, int nd, uint64_t seed, ps_err *e);
/* Copy a trained cnn (params on any device, f32 or f64) into a float64 net:
 * conv (+ bias or BN) -> ReLU -> pool blocks, then the head.  Block names
 * follow cnn's ("conv1.w", "fc1.w", ...; a folded or BN conv gets a bias
 * block "convI.b" only when fold_bn is 1 or the cnn has conv biases). */
int hs_net_from_cnn(hs_net *net, const cnn *src, int fold_bn, ps_err *e);
void hs_net_free(hs_net *net);

/* Index of the block named name, or -1. */
int hs_block_find(const hs_net *net, const char *name);

/* ------------------------------------------------------------ first order */

/* logits [n, classes] of x [n, in_dim]. */
int hs_forward(hs_net *net, const double *x, int64_t n, double *logits, ps_err *e);
/* Mean cross-entropy over the n samples (labels in [0, classes)), its
 * gradient grad[nparam] (may be NULL) and the number correct (may be NULL). */
int hs_loss_grad(hs_net *net, const double *x, const int32_t *y, int64_t n, double *loss,
                 double *grad, int64_t *correct, ps_err *e);
/* Plain mini-batch SGD (for tests and small demos): epochs passes over the
 * data in a seed-shuffled order, learning rate lr, batch bs. */
int hs_train_sgd(hs_net *net, const double *x, const int32_t *y, int64_t n, int epochs,
                 double lr, int64_t bs, uint64_t seed, ps_err *e);

/* ------------------------------------------------------------ second order */

/* hv[nparam] = H v, H the Hessian of the mean loss over the n samples, by the
 * exact R-op (chunks of net->batch, weighted by chunk size). */
int hs_hvp(hs_net *net, const double *x, const int32_t *y, int64_t n, const double *v, double *hv,
           ps_err *e);
/* The same by central finite differences of gradients, (g(t+hv) - g(t-hv))/2h
 * (a reference with O(h^2) error away from kinks, wrong across them). */
int hs_hvp_fd(hs_net *net, const double *x, const int32_t *y, int64_t n, const double *v,
              double h, double *hv, ps_err *e);
/* The dense Hessian H[nparam * nparam] (row-major, symmetrised) by nparam
 * HVPs with unit vectors; or one diagonal block Hb[nb * nb], nb =
 * blocks[block].n.  Only for small nets (the caller allocates). */
int hs_dense_hessian(hs_net *net, const double *x, const int32_t *y, int64_t n, double *H,
                     ps_err *e);
int hs_dense_block(hs_net *net, const double *x, const int32_t *y, int64_t n, int block,
                   double *Hb, ps_err *e);

/* An estimate with its standard error (sample std / sqrt(m)). */
typedef struct hs_est {
    double mean;      /* trace estimate */
    double se;        /* standard error of mean */
    double per_param; /* mean / numel of the block (or activation) */
    int m;            /* samples used */
} hs_est;

typedef struct hs_hutch_opts {
    int m_min;    /* at least this many probes (default 10 when 0) */
    int m_max;    /* at most (default 200 when 0) */
    double tol;   /* stop once every block has se/|mean| < tol; 0: fixed m_max */
    uint64_t seed;
} hs_hutch_opts;

/* Hutchinson per-block traces: Rademacher probes over all blocks at once (one
 * HVP gives every block's v_b^T (Hv)_b).  out[nblocks]; samples, when not
 * NULL, gets the per-probe values [m_max * nblocks] (row = probe), for
 * convergence plots; *m_used (may be NULL) the probes taken.  The stopping
 * rule is checked after every probe (probes are computed 8 at a time sharing
 * one forward/backward; the extra ones are discarded, so the result equals a
 * probe-by-probe run).  Variance of one probe's value for block b:
 * 2(||H_bb||_F^2 - sum_j (H_bb)_jj^2) + ||H_b,rest||_F^2 -- the second term
 * because the other blocks' probes leak in through the off-diagonal blocks
 * (zero mean, but not zero variance); for the whole-model trace it is the
 * textbook 2(||H||_F^2 - sum_j H_jj^2).  Cost: about one R-op pass (~2/3 of
 * an HVP) per probe and sample. */
int hs_hutchinson(hs_net *net, const double *x, const int32_t *y, int64_t n,
                  const hs_hutch_opts *o, hs_est *out, double *samples, int *m_used, ps_err *e);

/* Exact per-block traces tr[nblocks] (of the Hessian of the mean loss) by the
 * Gauss-Newton identity above (classes backward passes per sample; y is not
 * used: may be NULL).  Exact only for this layer set (piecewise-linear
 * above each block); the cross-block Hessian is NOT Gauss-Newton. */
int hs_gn_trace(hs_net *net, const double *x, const int32_t *y, int64_t n, double *tr,
                ps_err *e);

/* Largest-|.| eigenvalue of one diagonal block by power iteration on its HVP
 * (PyHessian's rule: stop when |l - l_prev| / (|l_prev| + 1e-6) < tol;
 * defaults max_iter 100, tol 1e-3 when 0).  *iters may be NULL. */
int hs_lambda_max(hs_net *net, const double *x, const int32_t *y, int64_t n, int block,
                  int max_iter, double tol, uint64_t seed, double *lambda, int *iters, ps_err *e);
/* The same for every block at once (lambda[nblocks], iters[nblocks] may be
 * NULL), sharing each forward/backward among the blocks still iterating;
 * block b's result equals hs_lambda_max(block b, seed + b). */
int hs_lambda_max_all(hs_net *net, const double *x, const int32_t *y, int64_t n, int max_iter,
                      double tol, uint64_t seed, double *lambda, int *iters, ps_err *e);

/* ------------------------------------------------------------ activations */

/* Activation a_q, q in [0, nquant]: the input of the q-th quantized layer, or
 * the logits for q == nquant.  Its per-sample size: */
int64_t hs_act_numel(const hs_net *net, int q);
/* Per-sample (batch of one) activation Hessian traces Tr d2L/da_q^2 averaged
 * over the n samples, for every q in [0, nquant] (out[nquant + 1]): exact by
 * the Gauss-Newton identity (out[q].se = standard error over samples, m = n),
 * or by Hutchinson with m Rademacher probes per sample (m >= 1; se over all
 * n*m values; rows of a chunk are probed at once: the Hessian of the summed
 * per-row losses is block diagonal over rows).  For the logits the exact
 * value is 1 - ||p||^2.  y is not used (may be NULL). */
int hs_act_trace_exact(hs_net *net, const double *x, const int32_t *y, int64_t n, hs_est *out,
                       ps_err *e);
int hs_act_trace_hutch(hs_net *net, const double *x, const int32_t *y, int64_t n, int m,
                       uint64_t seed, hs_est *out, ps_err *e);
/* Per-sample gradients of the loss w.r.t. the activation a_q:
 * g[n * numel], row s = d CE(x_s, y_s) / d a_q(x_s) (not divided by n). */
int hs_act_grad(hs_net *net, const double *x, const int32_t *y, int64_t n, int q, double *g,
                ps_err *e);
/* R-op w.r.t. the activation for one sample: hu[numel] = (d2L/da_q^2) u. */
int hs_act_hvp(hs_net *net, const double *x, int32_t y, int q, const double *u, double *hu,
               ps_err *e);

/* ------------------------------------------------------------ imatrix */

/* Columns of the q-th quantized layer's GEMM: c_in*k*k for a conv (column j =
 * (ci*k + ky)*k + kx, the weight's inner layout), in features for a linear. */
int64_t hs_imatrix_cols(const hs_net *net, int q);
/* ex2[cols] = E[x_j^2] over samples and output positions (zero padding
 * counts as 0) of the input of the q-th quantized layer. */
int hs_imatrix(hs_net *net, const double *x, int64_t n, int q, double *ex2, ps_err *e);
/* Omega_imatrix = sum_j ex2[j] * sum_o dW[o, j]^2 for dW laid out like the
 * weight ([rows, cols] row-major). */
double hs_imatrix_omega(const hs_net *net, int q, const double *ex2, const double *dw);

#endif
