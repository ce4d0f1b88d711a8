/* Integer inference of the Fashion-MNIST CNN (real/cnn.h) at a per-layer
 * weight bit vector, on the CPU.
 *
 * Layers.  One quantizable layer per conv block (conv + folded batch norm +
 * ReLU + 2x2 max-pool) and per linear (fc1 + ReLU, fc2): the default config
 * has 4 (conv1, conv2, fc1, fc2).  Batch norm (eval mode, running stats) is
 * folded into the conv: w' = w·γ/√(var+ε), b' = β + (b − mean)·γ/√(var+ε).
 * Activations are kept NHWC (fc1's weight columns are permuted once to the
 * NHWC flatten order).
 *
 * A layer at bits b in 2..8: weights quantized per output channel by the
 * deployment quantizer (sim/quant/quantizer.h, symmetric, max scaling) of the
 * folded weights; b ≥ 5 stored int8, b ≤ 4 packed int4 (2/3-bit codes live in
 * the int4 container).  Its input is quantized to 8 bits: unsigned u8
 * (scale range/255) when the calibrated input is ≥ 0 (every post-ReLU
 * input), signed s8 (scale max|x|/127, codes −127..127) otherwise (the
 * normalised image of the first conv).  Conv = u8/s8 im2col (row per output
 * pixel, k = (ky·ks + kx)·c_in + c, zero-padded to a multiple of 32) +
 * ps_qgemm_s32 + dequant epilogue (scale, bias, ReLU) + max-pool in float.
 * A layer at bits 32 runs in f32 (im2col + ps_cpu_sgemm, input not
 * quantized).
 *
 * The fake-quant float reference (qcnn_forward_ref) computes the same
 * network in float: Q(w') dequantized, inputs fake-quantized with the same
 * scales, products by sgemm; the integer forward differs from it only by
 * float rounding of the accumulation order. */
#ifndef PS_REAL_QCNN_H
#define PS_REAL_QCNN_H

#include <stdint.h>

#include "common/err.h"
#include "kernels/cpu_qgemm.h"
#include "real/cnn.h"

#define QCNN_MAXL (CNN_MAXBLOCKS + 2)

typedef struct qcnn_layer {
    char name[16];
    int conv;                    /* 1 conv block, 0 linear */
    int64_t cin, h, w, ks, pad;  /* conv input cin x h x w (NHWC) */
    int64_t oh, ow;              /* conv output before pooling (1 x 1 for linear) */
    int64_t K, Kp, N;            /* reduction (cin·ks·ks or in), padded to 32, outputs */
    int relu, pool;
    float *wf;   /* folded float weights [N, K] */
    float *bias; /* [N] */
    /* current quantization */
    int bits;          /* 2..8, or 32 = float */
    ps_qwfmt fmt;
    uint8_t *wq;       /* [N, ldw] int8 or packed int4, k zero-padded to Kp */
    int64_t ldw;
    float *wscale;     /* [N] */
    float *wdq;        /* [N, K] dequantized Q(w') */
    /* (wq, wscale, wdq point into the per-bit-width cache below, filled on
     * the first qcnn_set_bits at that width: switching bits is then free) */
    uint8_t *vq[9];
    float *vscale[9], *vdq[9];
    double a_min, a_max; /* calibrated input range */
    int a_signed;
    float a_scale;
    /* timing of the last qcnn_layer_forward when q->timing: seconds */
    double t_gemm, t_other;
} qcnn_layer;

typedef struct qcnn {
    int nl;
    qcnn_layer L[QCNN_MAXL];
    int64_t max_batch, in_c, in_h, in_w, classes;
    ps_qpath path;
    int timing;
    int cpu_clock; /* timings (here and in sim/quant/latency): 0 wall clock
                      (CLOCK_MONOTONIC), 1 this thread's CPU time
                      (CLOCK_THREAD_CPUTIME_ID: excludes time the thread is
                      descheduled — a single-threaded forward's latency on a
                      machine shared with other processes) */
    int64_t cur_n;
    float *act[QCNN_MAXL + 1]; /* act[l]: input of layer l (NHWC); act[nl]: logits */
    uint8_t *colq;             /* [M, Kp] */
    float *colf;               /* [M, K] */
    int32_t *acc;              /* [M, N] */
    float *out;                /* [M, N] pre-pool */
    uint8_t *qin;              /* quantized layer input */
} qcnn;

/* Build from a CPU cnn (f32 or f64; eval mode weights).  Every layer starts
 * at bits 32 with no calibration (a_max 0: call qcnn_calibrate before
 * quantizing). */
int qcnn_init(qcnn *q, const cnn *net, int64_t max_batch, ps_err *e);
void qcnn_free(qcnn *q);

/* Input ranges of every layer from a float forward (all layers f32) of x
 * [n, in_c, in_h, in_w] (NCHW, n ≤ max_batch), taking the min / max. */
int qcnn_calibrate(qcnn *q, const float *x, int64_t n, ps_err *e);

/* Set the per-layer bits (each 2..8 or 32): quantizes the folded weights. */
int qcnn_set_bits(qcnn *q, const int *bits, ps_err *e);

/* Integer forward: logits [n, classes] into q->act[q->nl] (and `logits` when
 * not NULL).  x NCHW float. */
int qcnn_forward(qcnn *q, const float *x, int64_t n, float *logits, ps_err *e);
/* The fake-quant float reference of the same configuration. */
int qcnn_forward_ref(qcnn *q, const float *x, int64_t n, float *logits, ps_err *e);

/* Pieces of the forward, for the latency table: copy x into act[0] (the
 * only work outside the layers), and run layer l on act[l] -> act[l+1]
 * at batch n (ref = 1: the float reference path). */
void qcnn_load_input(qcnn *q, const float *x, int64_t n);
int qcnn_layer_forward(qcnn *q, int l, int64_t n, int ref, ps_err *e);

/* Seconds on q's clock (see cpu_clock). */
double qcnn_now(const qcnn *q);

/* Weight bytes of layer l at its current bits: codes (ceil(N·K·b/8)) plus
 * fp32 scales per channel, or 4·N·K at bits 32; bias not counted. */
double qcnn_layer_weight_bytes(const qcnn *q, int l);

#endif
