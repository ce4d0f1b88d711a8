// Internal to the kernels/cuda_*.cu translation units (C++ only): the layout
// of ps_cuda_ctx and the error-check helpers they share.  C code sees
// ps_cuda_ctx as opaque (kernels/cuda_ops.h).
#ifndef PS_KERNELS_CUDA_CTX_IMPL_H
#define PS_KERNELS_CUDA_CTX_IMPL_H

#ifndef __cplusplus
#error "kernels/cuda_ctx_impl.h is for the .cu files only"
#endif

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda_ops.h"

struct ps_cuda_ctx {
    int device;
    int sm_count;
    size_t smem_optin;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *blas_ws; // shared by cuBLAS and cuBLASLt: both run on `stream`, in order
    size_t blas_ws_bytes;
    void *scratch;
    size_t scratch_bytes;
    void *dnn;               // cuDNN handle (kernels/cuda_dnn.cu), created on first use
    void (*dnn_free)(void *); // how to destroy it without this file knowing cuDNN
};

// Turn a runtime error into a ps_err naming the call; returns PS_ERUN.
static inline int ps_cu_fail(ps_err *e, cudaError_t r, const char *what)
{
    return ps_errf(e, PS_ERUN, "%s: %s (%s)", what, cudaGetErrorString(r), cudaGetErrorName(r));
}

#define PS_CU_TRY(call, e)                                                                        \
    do {                                                                                          \
        cudaError_t ps_r_ = (call);                                                               \
        if (ps_r_ != cudaSuccess)                                                                 \
            return ps_cu_fail((e), ps_r_, #call);                                                 \
    } while (0)

// After every launch: a bad configuration (too many threads, too much shared
// memory, no kernel image for this device) shows up here, not later.
static inline int ps_cu_launched(ps_err *e, const char *kernel)
{
    cudaError_t r = cudaGetLastError();
    if (r != cudaSuccess)
        return ps_cu_fail(e, r, kernel);
    return 0;
}

const char *ps_cublas_status_str(cublasStatus_t s);

#define PS_CUBLAS_TRY(call, e)                                                                    \
    do {                                                                                          \
        cublasStatus_t ps_s_ = (call);                                                            \
        if (ps_s_ != CUBLAS_STATUS_SUCCESS)                                                       \
            return ps_errf((e), PS_ERUN, "%s: %s", #call, ps_cublas_status_str(ps_s_));          \
    } while (0)

#endif
