/* sim/projection: the cost at StyleGAN scale of projecting an image into a
 * generator's latent space (issue 8) — an encoder (one forward pass, pSp
 * style) against per-image optimization (hundreds to thousands of generator
 * forward + backward passes, Image2StyleGAN / PULSE style) — predicted per
 * image on a device of the catalog (H100 by default) by batch size, from the
 * cost model (costmodel/costmodel.h: cm_op_time / cm_op_time_phase).
 *
 * Networks are op lists (conv2d, gemm, elementwise, reduction ps_ops at a
 * batch size); sim/projection/README.md gives each shape with its source:
 *
 *  - StyleGAN2 config-f generator at 1024^2 (Karras et al. 2020, "Analyzing
 *    and Improving the Image Quality of StyleGAN", CVPR; official code
 *    stylegan2 / stylegan2-ada-pytorch): mapping network 8 FC 512 -> 512;
 *    synthesis from a 4x4x512 constant, at each resolution 8 .. 1024 a
 *    modulated 3x3 up-convolution (transposed, stride 2) and a modulated 3x3
 *    convolution, channels min(512, 32768 / res) (512 up to 64^2, then 256,
 *    128, 64, 32), a 1x1 toRGB per resolution, each modulated layer with an
 *    affine map 512 -> in channels.  Parameters: about 30.4 M (the count the
 *    official code prints for G at 1024^2, "30.0 M" class; as recalled).
 *  - the pSp encoder (Richardson et al. 2021, "Encoding in Style", CVPR;
 *    code eladrich/pixel2style2pixel, models/encoders/psp_encoders.py
 *    GradualStyleEncoder): the ResNet-IR-SE50 backbone (InsightFace's IR-SE
 *    units: BN, 3x3 conv, PReLU, 3x3 conv (stride on the second), BN, SE
 *    with reduction 16; blocks 3/4/14/3 units of 64/128/256/512 channels;
 *    about 31 M parameters without the face-recognition output layer, 43.8 M
 *    with it) on a 256^2 input, two lateral 1x1 convs of the feature
 *    pyramid, and 18 map2style blocks (log2(side) stride-2 3x3 convs 512 ->
 *    512 and one 512 x 512 linear each: 3 coarse on 16^2, 4 medium on 32^2,
 *    11 fine on 64^2).
 *  - the VGG-16 perceptual loss of Image2StyleGAN (Abdal et al. 2019):
 *    conv1_1 .. conv4_2 of VGG-16 (Simonyan & Zisserman 2015) on the
 *    generated image down-sampled to 256^2.
 *
 * Timing conventions (all per batch, then divided by the batch):
 *  - a layer's forward is cm_op_time of its op (a transposed convolution is
 *    the bwd_input phase of the strided convolution it transposes); its
 *    backward to the input is the bwd_input phase (a transposed conv: the
 *    forward of that convolution); weights are frozen, so no bwd_weight.
 *  - modulation is modeled in StyleGAN2's non-fused form (scale the input by
 *    the style, convolve, scale by the demodulation coefficients): the
 *    gradient to the styles (W+) then needs only input gradients and
 *    elementwise products, no per-sample weight gradients.
 *  - encoder method per image = (encoder forward + generator forward) / b;
 *    optimization per image = iters x (generator forward + backward to the
 *    latent [+ VGG forward + backward to its input] + the Adam update of the
 *    18 x 512 latents) / b, b images optimized together (independent
 *    problems batched).  The mapping network is not run by either (both
 *    work in W+), but its parameters are counted. */
#ifndef PS_SIM_PROJECTION_COST_H
#define PS_SIM_PROJECTION_COST_H

#include <stdint.h>

#include "common/err.h"
#include "costmodel/costmodel.h"
#include "profile/opdesc.h"

typedef struct pjs_layer {
    char name[40];
    ps_op op;        /* the forward-equivalent op */
    int transposed;  /* conv2d: the layer is op's transpose (fwd = op's bwd_input) */
    int trunk;       /* 1: runs in the forward pass; 0: counted (params) but not run */
    double params;
} pjs_layer;

typedef struct pjs_net {
    char name[40];
    pjs_layer *l;
    int n, cap;
    double params;   /* sum of layer params (trunk or not) */
    double params_pub; /* a published count to compare with (0: none) */
    char source[160];
} pjs_net;

void pjs_net_free(pjs_net *n);

/* Builders (batch >= 1, dtype an opdesc dtype, e.g. "fp32", "tf32", "fp16").
 * res: the generator's output side (a power of two >= 8; 1024 for FFHQ);
 * in_res: the encoder's input side (256 in pSp; a power of two >= 64). */
int pjs_build_stylegan2(pjs_net *n, int64_t batch, int res, const char *dtype, ps_err *e);
int pjs_build_psp(pjs_net *n, int64_t batch, int in_res, const char *dtype, ps_err *e);
int pjs_build_vgg16_perceptual(pjs_net *n, int64_t batch, int in_res, int gen_res,
                               const char *dtype, ps_err *e);
/* The small Fashion-MNIST models of real/gan.h and real/project.h (for the
 * predicted small-scale speed-up): DCGAN generator zdim -> 28^2 with channels
 * ch1 (7^2), ch2 (14^2); projector r^2 -> conv 3x3 s2 (pc1) -> conv 3x3 s2
 * (pc2) -> linear (hidden; 0 none) -> zdim. */
int pjs_build_fmnist_gen(pjs_net *n, int64_t batch, int zdim, int ch1, int ch2, const char *dtype,
                         ps_err *e);
int pjs_build_fmnist_proj(pjs_net *n, int64_t batch, int r, int pc1, int pc2, int hidden,
                          int zdim, const char *dtype, ps_err *e);

typedef struct pjs_time {
    double fwd_s, bwd_input_s; /* whole batch */
    double flops_fwd;
    int nops;                  /* ops run in the forward */
    int roofline_ops;          /* of which predicted by the roofline */
} pjs_time;

/* Forward and input-gradient time of a net's trunk layers. */
int pjs_net_time(const cm_model *m, const pjs_net *n, pjs_time *t, ps_err *e);

typedef struct pjs_setup {
    const char *scale;  /* "stylegan2" (default when NULL) or "fmnist" */
    int64_t batch;      /* images per batch, >= 1 */
    int64_t iters;      /* optimization iterations, >= 1 */
    int vgg;            /* stylegan2: add the VGG-16 perceptual loss */
    const char *dtype;  /* "tf32" when NULL */
    int res, enc_res;   /* stylegan2: 1024, 256 when 0 */
    int latent_vectors; /* optimized latent vectors per image: 18 (W+) when 0 */
    /* fmnist shapes (0: the defaults 32, 64, 32, 32, 64, 256, r 28) */
    int zdim, g_ch1, g_ch2, p_ch1, p_ch2, p_hidden, p_r;
} pjs_setup;

typedef struct pjs_pred {
    double gen_fwd_s, gen_bwd_s, enc_fwd_s, vgg_fwd_s, vgg_bwd_s, adam_s; /* per batch */
    double encoder_per_image_s;   /* (encoder + generator forward) / batch */
    double opt_iter_per_image_s;  /* one optimization iteration / batch */
    double opt_per_image_s;       /* iters x that */
    double speedup;               /* opt / encoder */
    double gen_params, enc_params, vgg_params;
    double gen_flops_fwd, enc_flops_fwd; /* per batch */
    int roofline_ops, nops;
} pjs_pred;

int pjs_predict(const cm_model *m, const pjs_setup *s, pjs_pred *out, ps_err *e);

#endif
