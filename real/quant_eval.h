/* Post-training quantized evaluation of the Fashion-MNIST CNN (issue 7).
 *
 * The trained cnn (real/cnn.h) is copied to a float32 host model of its
 * quantized layers, in forward order: conv1 .. convN (each followed by
 * ReLU and 2x2 max-pool), fc1 (ReLU when there is a hidden layer), fc2.
 * Batch norm is folded into the conv BEFORE the weights are quantized
 * (deployment form): W' = W·g/√(rv+eps) per output channel,
 * b' = (b − rm)·g/√(rv+eps) + β; biases stay float32 (not quantized).
 *
 * Weight fake-quant: sim/quant/quantizer.h, symmetric, per tensor or per
 * output channel (rows of [c_out, c_in·k·k] or [out, in]).
 * Activation fake-quant ("the input of each quantized layer"): the inputs
 * of conv2.., fc1, fc2 are post-ReLU (and post-pool), quantized unsigned
 * b-bit with zero point 0 over a calibrated range.  conv1's input is the
 * image: it is quantized in pixel units x/255 ∈ [0, 1] (unsigned, range
 * calibrated the same way) and then normalised — the same as quantizing
 * the normalised input with zero point −mean/std.  Ranges come from
 * qe_calibrate (max or percentile of each input over a calibration set).
 *
 * Exhaustive evaluation as a tree: for a set of options per layer (bit
 * widths), the output of layer 0 is computed once per option, layer 1 once
 * per (option0, option1) pair, ..., the logits once per configuration; the
 * data goes through in chunks so only one buffer per level is alive.
 * Configuration index: idx = Σ_l k_l · K^(L−1−l) (layer 0 most significant,
 * k_l the option index of layer l). */
#ifndef PS_REAL_QUANT_EVAL_H
#define PS_REAL_QUANT_EVAL_H

#include <stdint.h>

#include "common/err.h"
#include "real/cnn.h"
#include "real/data_fmnist.h"
#include "sim/quant/quantizer.h"

#define QE_MAXQ (CNN_MAXBLOCKS + 2)
#define QE_MAXOPT 8

typedef struct qe_layer {
    char name[16];        /* "conv1", "fc1" */
    int is_conv;          /* conv kxk pad k/2 + ReLU + maxpool 2x2; else linear */
    int relu;             /* linear: ReLU after it (hidden layer) */
    int c_in, h_in, w_in; /* conv input geometry (linear: c_in = in, 1, 1) */
    int c_out, k;         /* conv output channels / linear out features */
    int64_t in_numel;     /* per sample */
    int64_t out_numel;    /* per sample, after ReLU / pool */
    int64_t rows, cols;   /* weight [rows, cols] = [c_out, c_in·k·k] or [out, in] */
    float *w, *b;         /* folded weight [rows·cols], bias [rows] (owned) */
} qe_layer;

typedef struct qe_model {
    cnn_config cfg;
    int nq;
    qe_layer l[QE_MAXQ];
    int64_t in_numel;
    int classes;
} qe_model;

/* Copy + fold a cnn (any device / dtype) into a host float32 model. */
int qe_model_from_cnn(qe_model *m, const cnn *net, ps_err *e);
void qe_model_free(qe_model *m);
/* Parameters of the quantized weights (rows·cols) of layer q. */
int64_t qe_layer_params(const qe_model *m, int q);

/* Normalised images (fmnist_batch_f32) and labels; n ≤ 0 or > s->n: all. */
typedef struct qe_data {
    int64_t n, dim;
    float *x;   /* [n, dim] */
    int32_t *y; /* [n] */
} qe_data;
int qe_data_from_fmnist(const fmnist_set *s, int64_t n, qe_data *d, ps_err *e);
void qe_data_free(qe_data *d);

/* Ranges of each quantized layer's input over d (float model): range[q]
 * for q < nq; range[0] in pixel units (x/255).  mode/pct as psq_act_range. */
int qe_calibrate(const qe_model *m, const qe_data *d, psq_calib mode, double pct, double *range,
                 ps_err *e);

/* Mean per-image ‖Q_b(a_q) − a_q‖² of each quantized layer's input over d
 * (float model), for each of bits[0..nopt): err2[q·nopt + k].  Layer 0 in
 * the normalised-input units the model sees (pixel error / FMNIST_STD),
 * quantized as in the sweeps with range[q]. */
int qe_act_err2(const qe_model *m, const qe_data *d, const int *bits, int nopt,
                const double *range, double *err2, ps_err *e);

/* One configuration: wbits[q] (0 = float weights), abits[q] (0 = float
 * input), gran for the weights, range[q] for the activations (needed only
 * where abits[q] > 0). */
typedef struct qe_config {
    int wbits[QE_MAXQ];
    int abits[QE_MAXQ];
    psq_gran gran;
    double range[QE_MAXQ];
} qe_config;

/* Accuracy (fraction correct) and mean cross-entropy over d. */
int qe_evaluate(const qe_model *m, const qe_config *c, const qe_data *d, double *acc,
                double *loss, ps_err *e);

typedef enum { QE_SWEEP_WEIGHTS = 0, QE_SWEEP_ACTS = 1 } qe_sweep_mode;

typedef struct qe_sweep {
    qe_sweep_mode mode;
    int nopt;               /* K: 1..QE_MAXOPT */
    int bits[QE_MAXOPT];    /* the options (2..8) */
    psq_gran gran;          /* weight granularity */
    int fixed_wbits;        /* QE_SWEEP_ACTS: weights of every layer at these bits (0 float) */
    double range[QE_MAXQ];  /* QE_SWEEP_ACTS: calibrated input ranges */
    int64_t chunk;          /* images per chunk (0: 500) */
    const char *label;      /* progress label (NULL: "quant sweep") */
} qe_sweep;

/* Every configuration: acc[K^nq], loss[K^nq] (index as above). */
int qe_exhaustive(const qe_model *m, const qe_sweep *s, const qe_data *d, double *acc,
                  double *loss, ps_err *e);
/* Number of configurations K^nq (−1 if it overflows 2^31). */
long qe_nconfigs(int nopt, int nq);
/* Decode idx into k[nq]. */
void qe_config_decode(long idx, int nopt, int nq, int *k);

/* The networks of the study.  default: cnn_config_default() (fc1 holds 95%
 * of the quantized weights); small: cnn_config_small() (quick);
 * balanced: qe_config_balanced(), conv5x5(32)-BN-ReLU-pool,
 * conv5x5(16)-BN-ReLU-pool, fc 784->32-ReLU, fc 32->10, whose quantized
 * layers hold 800 / 12,800 / 25,088 / 320 weights (the two middle layers
 * within 2x; the first and last are inevitably smaller).  cnn_config has
 * one kernel size for every block, hence 5x5 for both convs. */
typedef enum { QE_NET_DEFAULT = 0, QE_NET_SMALL = 1, QE_NET_BALANCED = 2 } qe_net;
cnn_config qe_config_balanced(void);
cnn_config qe_net_config(qe_net n);
const char *qe_net_name(qe_net n); /* "default", "small", "balanced" */
/* "default" | "small" | "balanced"; else PS_EINPUT naming the value. */
int qe_net_parse(const char *s, qe_net *n, ps_err *e);

/* Multiply-accumulates of quantized layer q per image: conv (stride 1,
 * pad k/2, before pooling) h_in·w_in·c_out·c_in·k², linear rows·cols. */
int64_t qe_layer_macs(const qe_model *m, int q);
/* Bit operations (HAWQ-V3): Σ_q MACs_q · wbits[q] · abits[q] per image. */
double qe_bops(const qe_model *m, const int *wbits, const int *abits);

/* Train the CNN from seed (full: cnn_config_default, 60000 images, 4 epochs,
 * batch 128, AdamW lr 2e-3 cosine — the settings of `plansim real train`;
 * quick: cnn_config_small, 2000 images, 2 epochs, batch 32, lr 3e-3;
 * train_n > 0 overrides the number of training images), or
 * load it from `path` when that file exists with the same config.  Trains
 * and saves (creating the folder) otherwise.  net is initialised on the
 * CPU in F32; *trained (may be NULL) tells which happened. */
int qe_train_or_load(const char *path, int quick, uint64_t seed, int64_t train_n, cnn *net,
                     int *trained, ps_err *e);
/* The same for any of the networks: small trains with the quick settings,
 * default and balanced with the full ones (4 epochs, batch 128, lr 2e-3;
 * train_n ≤ 0: 60000 images, 2000 for small).  qe_train_or_load(quick) is
 * qe_train_or_load_net(quick ? QE_NET_SMALL : QE_NET_DEFAULT). */
int qe_train_or_load_net(const char *path, qe_net which, uint64_t seed, int64_t train_n,
                         cnn *net, int *trained, ps_err *e);

#endif
