/* sim/quant/nets: the paper's networks at their scale, for the simulated
 * (cost-model) bit-allocation experiment.
 *
 * ResNet50 (torchvision v1.5: stride in the 3x3 of each bottleneck, 224x224
 * input) and Inception-V3 (torchvision, 299x299, without the auxiliary
 * classifier): every convolution and the final linear as one GEMM
 *   M = batch·H_out·W_out,  N = c_out,  K = c_in·k_h·k_w.
 * Parameters: the conv/linear weights, plus two batch-norm parameters per
 * conv output channel (γ, β; running statistics are buffers, not
 * parameters) and the classifier bias.  Totals: ResNet50 25 557 032,
 * Inception-V3 23 834 568 (torchvision's counts; "25.6 M" / "23.8 M").
 *
 * Layer order: ResNet50 is stem conv, then per bottleneck conv1, conv2,
 * conv3, downsample (first block of each stage), then fc — the order of the
 * HAWQ notebook's 52 arrays (which leave out stem and fc).  Inception-V3
 * follows torchvision's module order (branches in definition order). */
#ifndef PS_QUANT_NETS_H
#define PS_QUANT_NETS_H

#include <stdint.h>

#include "common/err.h"
#include "sim/quant/alloc.h"

typedef struct psq_net_layer {
    char name[PSQ_NAME_MAX];
    int fc;                      /* 1: the classifier */
    int64_t cin, cout, kh, kw, stride;
    int64_t h_in, w_in, h_out, w_out;
    double weights;              /* cin·cout·kh·kw */
} psq_net_layer;

typedef struct psq_net {
    char name[32];
    int n;
    psq_net_layer *L; /* owned */
    double other_params; /* batch-norm γ, β and the classifier bias */
} psq_net;

/* "resnet50" or "inceptionv3"; PS_EINPUT otherwise. */
int psq_net_build(const char *name, psq_net *net, ps_err *e);
void psq_net_free(psq_net *net);
/* Σ weights + other_params. */
double psq_net_params(const psq_net *net);
/* The GEMM of layer l at a batch. */
void psq_net_gemm(const psq_net *net, int l, int64_t batch, int64_t *M, int64_t *N, int64_t *K);

/* ‖Q_b(W) − W‖² (sim/quant/quantizer, per channel) for Gaussian weights of
 * layer l's shape with standard deviation std, deterministic in seed.  For
 * big layers a subset of output channels (at least 2^16 values) is drawn
 * and the result scaled by cout / drawn rows. */
double psq_net_gauss_delta(const psq_net *net, int l, int bits, double std, uint64_t seed);

/* Sensitivity inputs of every layer: trace/n and Δ_b for bits[0..nb).
 *   source "hawq": ResNet50 only; trace/n and Δ4, Δ8 of layers 1..52 from
 *     the HAWQ notebook fixture (tests/fixtures/hawq_resnet50.json, path
 *     given), the notebook's ties; Δ at other bits is Δ4 scaled by the
 *     Gaussian ratio Δ_b/Δ4 of the layer's shape (a proxy, said so).  Stem
 *     and fc are fixed at 8 bits (as in the notebook).
 *   source "proxy": every net; weights ~ N(0, 2/fan_in) (He init), trace/n
 *     = 1/fan_in (a PROXY: no published traces exist), Δ_b from the
 *     Gaussian weights.  Stem and classifier fixed at 8 bits.
 * Builds a psq_problem with options bits[], Ω = trace/n·Δ_b, bytes =
 * per-channel codes + fp32 scales, and latency from lat_s[l·nb + k] when
 * lat_s is not NULL. */
int psq_net_problem(const psq_net *net, const char *source, const char *fixture, const int *bits,
                    int nb, const double *lat_s, psq_problem *p, ps_err *e);

#endif
