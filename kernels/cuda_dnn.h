/* 2-D convolution on the GPU through cuDNN (kernels/cuda_dnn.cu).
 *
 * cuDNN is loaded at run time (dlopen "libcudnn.so.9", or the file named by
 * $PLANSIM_CUDNN), not linked: the binary starts and everything else works
 * where cuDNN is missing, and conv2d then reports why.  The legacy
 * convolution API is used, with the algorithm chosen by cuDNN's heuristic
 * (cudnnGet*Algorithm_v7, first algorithm that succeeds within 256 MiB of
 * workspace) — no trial runs, so a plan is quick and the choice
 * deterministic.
 *
 * Layouts: NCHW input x [n, c, h, w], KCRS filter w [k, c, r, s], output y
 * [n, k, oh, ow] with oh = (h + 2 pad - r) / stride + 1 (same for ow).
 * Directions and the roles of run()'s arguments:
 *   FWD         in0 = x,  in1 = w,  out = y
 *   BWD_INPUT   in0 = dy, in1 = w,  out = dx   (gradient w.r.t. the input)
 *   BWD_WEIGHT  in0 = x,  in1 = dy, out = dw   (gradient w.r.t. the filter)
 * Precisions: FP32 (FMA math only: no tf32), TF32 (fp32 data, tensor cores
 * allowed), FP16 and BF16 (fp32 accumulation). */
#ifndef PS_KERNELS_CUDA_DNN_H
#define PS_KERNELS_CUDA_DNN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda_blas.h"
#include "kernels/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when cuDNN could be loaded (desc: its version), 0 otherwise (desc: why). */
int ps_cudnn_available(char *desc, size_t n);

typedef enum { PS_CONV_FWD = 0, PS_CONV_BWD_INPUT, PS_CONV_BWD_WEIGHT } ps_conv_dir;

/* "fwd" | "bwd_input" | "bwd_weight". */
int ps_conv_dir_parse(const char *s, ps_conv_dir *out, ps_err *e);

typedef struct ps_cuda_conv ps_cuda_conv;

ps_cuda_conv *ps_cuda_conv2d_plan(ps_cuda_ctx *c, ps_conv_dir dir, ps_gemm_prec p, int64_t n,
                                  int64_t ch, int64_t h, int64_t w, int64_t k, int64_t r,
                                  int64_t s, int64_t stride, int64_t pad, ps_err *e);
/* Output height and width of the plan's convolution. */
void ps_cuda_conv2d_out_hw(const ps_cuda_conv *cv, int64_t *oh, int64_t *ow);
/* The algorithm cuDNN's heuristic chose (its enum value, for the log). */
int ps_cuda_conv2d_algo(const ps_cuda_conv *cv);
int ps_cuda_conv2d_run(ps_cuda_conv *cv, const void *in0, const void *in1, void *out, ps_err *e);
void ps_cuda_conv2d_free(ps_cuda_conv *cv);

#ifdef __cplusplus
}
#endif

#endif
