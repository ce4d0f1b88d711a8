/* Matrix products on the GPU through cuBLAS and cuBLASLt (kernels/cuda_blas.cu),
 * row-major like the rest of plansim.  Every call enqueues on the context's
 * stream (kernels/cuda_ops.h) and uses its 32 MiB workspace.
 *
 * Precisions (ps_gemm_prec):
 *   FP32  fp32 in and out, fp32 arithmetic (cuBLAS default math: no TF32)
 *   TF32  fp32 in and out, tensor cores with inputs rounded to tf32
 *         (CUBLAS_COMPUTE_32F_FAST_TF32)
 *   FP64  fp64 throughout
 *   FP16  fp16 in and out, fp32 accumulation (tensor cores)
 *   BF16  bf16 in and out, fp32 accumulation (tensor cores)
 * int8 (cuBLASLt): int8 in, int32 out and accumulation, alpha = 1, beta = 0.
 *
 * Transposes: trans_a = 0 means A is stored [m, k], 1 means [k, m]; trans_b
 * = 0 means B is stored [k, n], 1 means [n, k] (a linear layer's weight).
 * The profile's variants "nn", "nt", "tn", "tt" are (trans_a, trans_b). */
#ifndef PS_KERNELS_CUDA_BLAS_H
#define PS_KERNELS_CUDA_BLAS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PS_GEMM_FP32 = 0,
    PS_GEMM_TF32,
    PS_GEMM_FP64,
    PS_GEMM_FP16,
    PS_GEMM_BF16,
    PS_GEMM_PREC_COUNT
} ps_gemm_prec;

/* "fp32", "tf32", "fp64", "fp16", "bf16"; PS_EINPUT otherwise. */
int ps_gemm_prec_parse(const char *s, ps_gemm_prec *out, ps_err *e);
const char *ps_gemm_prec_name(ps_gemm_prec p);
/* Storage type of A, B and C for a precision. */
ps_cu_dtype ps_gemm_prec_dtype(ps_gemm_prec p);
/* "nn" | "nt" | "tn" | "tt" → trans flags. */
int ps_gemm_variant_parse(const char *s, int *trans_a, int *trans_b, ps_err *e);

/* C[m, n] = op(A)[m, k] · op(B)[k, n] (cublasGemmEx). */
int ps_cuda_gemm(ps_cuda_ctx *c, ps_gemm_prec p, int trans_a, int trans_b, int64_t m, int64_t n,
                 int64_t k, const void *a, const void *b, void *cm, ps_err *e);
/* `batch` independent products over contiguous, densely strided operands
 * (cublasGemmStridedBatchedEx): A + i·m·k, B + i·k·n, C + i·m·n. */
int ps_cuda_gemm_batched(ps_cuda_ctx *c, ps_gemm_prec p, int trans_a, int trans_b, int64_t batch,
                         int64_t m, int64_t n, int64_t k, const void *a, const void *b, void *cm,
                         ps_err *e);

/* int8 GEMM through cuBLASLt.  The plan holds the layouts and the algorithm
 * the heuristic chose, so that a timed run is one cublasLtMatmul call.  The
 * int8 tensor-core kernels want k a multiple of 4 and, in cuBLASLt's
 * column-major terms, "TN" operands — row-major A [m, k] and B stored
 * transposed [n, k] (trans_a = 0, trans_b = 1); other layouts are tried and
 * rejected with PS_ERUN when no algorithm takes them. */
typedef struct ps_cuda_i8gemm ps_cuda_i8gemm;

ps_cuda_i8gemm *ps_cuda_i8gemm_plan(ps_cuda_ctx *c, int trans_a, int trans_b, int64_t m, int64_t n,
                                    int64_t k, ps_err *e);
int ps_cuda_i8gemm_run(ps_cuda_i8gemm *g, const int8_t *a, const int8_t *b, int32_t *cm,
                       ps_err *e);
void ps_cuda_i8gemm_free(ps_cuda_i8gemm *g);

#ifdef __cplusplus
}
#endif

#endif
