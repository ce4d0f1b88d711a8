// cuBLAS / cuBLASLt wrappers (kernels/cuda_blas.h).  cuBLAS is column-major;
// a row-major C = op(A)·op(B) is the column-major C^T = op(B)^T·op(A)^T, so
// every call passes B first and swaps m and n — no data moves.
#include "kernels/cuda_blas.h"

#include <cstdlib>
#include <cstring>

#include "kernels/cuda_ctx_impl.h"

const char *ps_cublas_status_str(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized (no GPU or driver?)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "not supported on this architecture";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "license error";
    default: return "unknown cuBLAS status";
    }
}





struct prec_types {
    cudaDataType_t ab, c;
    cublasComputeType_t compute;
    cudaDataType_t scale;
};

static prec_types types_of(ps_gemm_prec p)
{
    switch (p) {
    case PS_GEMM_TF32: return {CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F};
    case PS_GEMM_FP64: return {CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    case PS_GEMM_FP16: return {CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case PS_GEMM_BF16: return {CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    default: return {CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    }
}

static int check_dims(const char *what, int64_t batch, int64_t m, int64_t n, int64_t k, ps_err *e)
{
    if (batch < 1 || m < 1 || n < 1 || k < 1)
        return ps_errf(e, PS_EINPUT, "%s: every dimension must be >= 1", what);
    const int64_t lim = 0x7fffffffLL; // cuBLAS takes int dimensions
    if (m > lim || n > lim || k > lim || batch > lim)
        return ps_errf(e, PS_EINPUT, "%s: a dimension exceeds 2^31-1", what);
    return 0;
}

// Column-major view of the row-major problem: C^T[n,m] = op(B)^T · op(A)^T.
// Row-major X stored [r, c] is column-major c x r with leading dimension c.
static int gemm_call(ps_cuda_ctx *c, ps_gemm_prec p, int ta, int tb, int64_t batch, int64_t m,
                     int64_t n, int64_t k, const void *a, const void *b, void *cm, ps_err *e)
{
    if ((unsigned)p >= PS_GEMM_PREC_COUNT)
        return ps_errf(e, PS_EINPUT, "gemm: bad precision %d", (int)p);
    prec_types ty = types_of(p);
    cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    int ldb = (int)(tb ? k : n); // B stored [k,n] → ld n; [n,k] → ld k
    int lda = (int)(ta ? m : k); // A stored [m,k] → ld k; [k,m] → ld m
    int ldc = (int)n;
    const double one_d = 1.0, zero_d = 0.0;
    const float one_f = 1.0f, zero_f = 0.0f;
    const void *alpha = ty.scale == CUDA_R_64F ? (const void *)&one_d : (const void *)&one_f;
    const void *beta = ty.scale == CUDA_R_64F ? (const void *)&zero_d : (const void *)&zero_f;
    // The compute type alone picks the arithmetic: the handle keeps
    // CUBLAS_DEFAULT_MATH, under which COMPUTE_32F never rounds to tf32
    // (unless the environment sets NVIDIA_TF32_OVERRIDE=1).
    if (batch == 1) {
        PS_CUBLAS_TRY(cublasGemmEx(c->blas, opB, opA, (int)n, (int)m, (int)k, alpha, b, ty.ab, ldb,
                                   a, ty.ab, lda, beta, cm, ty.c, ldc, ty.compute,
                                   CUBLAS_GEMM_DEFAULT),
                      e);
    } else {
        PS_CUBLAS_TRY(cublasGemmStridedBatchedEx(c->blas, opB, opA, (int)n, (int)m, (int)k, alpha,
                                                 b, ty.ab, ldb, k * n, a, ty.ab, lda, m * k, beta,
                                                 cm, ty.c, ldc, m * n, (int)batch, ty.compute,
                                                 CUBLAS_GEMM_DEFAULT),
                      e);
    }
    return ps_cu_launched(e, "cublasGemmEx");
}

extern "C" int ps_cuda_gemm(ps_cuda_ctx *c, ps_gemm_prec p, int ta, int tb, int64_t m, int64_t n,
                            int64_t k, const void *a, const void *b, void *cm, ps_err *e)
{
    if (check_dims("gemm", 1, m, n, k, e))
        return PS_EINPUT;
    return gemm_call(c, p, ta, tb, 1, m, n, k, a, b, cm, e);
}

extern "C" int ps_cuda_gemm_batched(ps_cuda_ctx *c, ps_gemm_prec p, int ta, int tb, int64_t batch,
                                    int64_t m, int64_t n, int64_t k, const void *a, const void *b,
                                    void *cm, ps_err *e)
{
    if (check_dims("batched_gemm", batch, m, n, k, e))
        return PS_EINPUT;
    return gemm_call(c, p, ta, tb, batch, m, n, k, a, b, cm, e);
}

// ------------------------------------------------------------------ int8 (cuBLASLt)

struct ps_cuda_i8gemm {
    ps_cuda_ctx *c;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc; // cuBLASLt's A (our B), B (our A), C
    cublasLtMatmulAlgo_t algo;
};

extern "C" void ps_cuda_i8gemm_free(ps_cuda_i8gemm *g)
{
    if (!g)
        return;
    if (g->lc)
        cublasLtMatrixLayoutDestroy(g->lc);
    if (g->lb)
        cublasLtMatrixLayoutDestroy(g->lb);
    if (g->la)
        cublasLtMatrixLayoutDestroy(g->la);
    if (g->op)
        cublasLtMatmulDescDestroy(g->op);
    free(g);
}

static int i8_plan(ps_cuda_i8gemm *g, int ta, int tb, int64_t m, int64_t n, int64_t k, ps_err *e)
{
    ps_cuda_ctx *c = g->c;
    PS_CUBLAS_TRY(cublasLtMatmulDescCreate(&g->op, CUBLAS_COMPUTE_32I, CUDA_R_32I), e);
    // Swapped operands (see the top of the file): Lt's A is our B.
    cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    PS_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSA, &opA,
                                                 sizeof opA),
                  e);
    PS_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSB, &opB,
                                                 sizeof opB),
                  e);
    // Stored (column-major) shapes: our B [k,n] row-major = n x k col-major
    // (ld n); [n,k] = k x n (ld k).  Our A [m,k] = k x m (ld k); [k,m] = m x k.
    uint64_t a_rows = tb ? k : n, a_cols = tb ? n : k;
    uint64_t b_rows = ta ? m : k, b_cols = ta ? k : m;
    PS_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g->la, CUDA_R_8I, a_rows, a_cols, (int64_t)a_rows),
                  e);
    PS_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g->lb, CUDA_R_8I, b_rows, b_cols, (int64_t)b_rows),
                  e);
    PS_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g->lc, CUDA_R_32I, (uint64_t)n, (uint64_t)m, n), e);
    cublasLtMatmulPreference_t pref = NULL;
    PS_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref), e);
    size_t ws = c->blas_ws_bytes;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(c->lt, g->op, g->la, g->lb, g->lc, g->lc, pref, 1, &res,
                                           &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || found < 1)
        return ps_errf(e, PS_ERUN,
                       "cuBLASLt has no int8 algorithm for m=%lld n=%lld k=%lld %c%c (%s); the "
                       "int8 kernels want k %% 4 == 0 and trans_a=0, trans_b=1",
                       (long long)m, (long long)n, (long long)k, ta ? 't' : 'n', tb ? 't' : 'n',
                       s != CUBLAS_STATUS_SUCCESS ? ps_cublas_status_str(s) : "none found");
    g->algo = res.algo;
    return 0;
}

extern "C" ps_cuda_i8gemm *ps_cuda_i8gemm_plan(ps_cuda_ctx *c, int ta, int tb, int64_t m,
                                               int64_t n, int64_t k, ps_err *e)
{
    if (check_dims("int8 gemm", 1, m, n, k, e))
        return NULL;
    ps_cuda_i8gemm *g = (ps_cuda_i8gemm *)calloc(1, sizeof *g);
    if (!g) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    g->c = c;
    if (i8_plan(g, ta, tb, m, n, k, e)) {
        ps_cuda_i8gemm_free(g);
        return NULL;
    }
    return g;
}

extern "C" int ps_cuda_i8gemm_run(ps_cuda_i8gemm *g, const int8_t *a, const int8_t *b, int32_t *cm,
                                  ps_err *e)
{
    const int32_t one = 1, zero = 0;
    ps_cuda_ctx *c = g->c;
    PS_CUBLAS_TRY(cublasLtMatmul(c->lt, g->op, &one, b, g->la, a, g->lb, &zero, cm, g->lc, cm,
                                 g->lc, &g->algo, c->blas_ws, c->blas_ws_bytes, c->stream),
                  e);
    return ps_cu_launched(e, "cublasLtMatmul");
}
