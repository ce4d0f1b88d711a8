// cuDNN convolution through dlopen (kernels/cuda_dnn.h says why).  The
// header gives the types; each function is fetched by name into a pointer
// of the header's own type, so a signature change fails to compile.
#include "kernels/cuda_dnn.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cudnn.h>
#include <dlfcn.h>
#include <mutex>

#include "kernels/cuda_ctx_impl.h"

#define DNN_FUNCS(X)                                                                              \
    X(cudnnGetVersion)                                                                            \
    X(cudnnGetErrorString)                                                                        \
    X(cudnnCreate)                                                                                \
    X(cudnnDestroy)                                                                               \
    X(cudnnSetStream)                                                                             \
    X(cudnnCreateTensorDescriptor)                                                                \
    X(cudnnSetTensor4dDescriptor)                                                                 \
    X(cudnnDestroyTensorDescriptor)                                                               \
    X(cudnnCreateFilterDescriptor)                                                                \
    X(cudnnSetFilter4dDescriptor)                                                                 \
    X(cudnnDestroyFilterDescriptor)                                                               \
    X(cudnnCreateConvolutionDescriptor)                                                           \
    X(cudnnSetConvolution2dDescriptor)                                                            \
    X(cudnnSetConvolutionMathType)                                                                \
    X(cudnnDestroyConvolutionDescriptor)                                                          \
    X(cudnnGetConvolution2dForwardOutputDim)                                                      \
    X(cudnnGetConvolutionForwardAlgorithm_v7)                                                     \
    X(cudnnGetConvolutionForwardWorkspaceSize)                                                    \
    X(cudnnConvolutionForward)                                                                    \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                                \
    X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                               \
    X(cudnnConvolutionBackwardData)                                                               \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                              \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                             \
    X(cudnnConvolutionBackwardFilter)

static struct {
#define X(f) decltype(&::f) p_##f;
    DNN_FUNCS(X)
#undef X
} D;

static std::once_flag dnn_once;
static int dnn_ok;
static char dnn_desc[512];

static void dnn_load(void)
{
    const char *env = getenv("PLANSIM_CUDNN");
    const char *names[] = {env && *env ? env : NULL, "libcudnn.so.9", "libcudnn.so"};
    void *h = NULL;
    const char *why = "not found";
    for (const char *n : names) {
        if (!n)
            continue;
        h = dlopen(n, RTLD_NOW | RTLD_LOCAL);
        if (h)
            break;
        why = dlerror();
    }
    if (!h) {
        snprintf(dnn_desc, sizeof dnn_desc, "cuDNN not loadable (%s); set PLANSIM_CUDNN to "
                 "libcudnn.so.9's path", why ? why : "?");
        return;
    }
#define X(f)                                                                                      \
    if (!(D.p_##f = (decltype(&::f))dlsym(h, #f))) {                                              \
        snprintf(dnn_desc, sizeof dnn_desc, "cuDNN loaded but lacks %s", #f);                      \
        return;                                                                                   \
    }
    DNN_FUNCS(X)
#undef X
    size_t v = D.p_cudnnGetVersion();
    snprintf(dnn_desc, sizeof dnn_desc, "cuDNN %zu.%zu.%zu", v / 10000, (v / 100) % 100, v % 100);
    dnn_ok = 1;
}

extern "C" int ps_cudnn_available(char *desc, size_t n)
{
    std::call_once(dnn_once, dnn_load);
    if (desc && n)
        snprintf(desc, n, "%s", dnn_desc);
    return dnn_ok;
}


#define DNN_TRY(call, e)                                                                          \
    do {                                                                                          \
        cudnnStatus_t ps_d_ = (call);                                                             \
        if (ps_d_ != CUDNN_STATUS_SUCCESS)                                                        \
            return ps_errf((e), PS_ERUN, "%s: %s", #call, D.p_cudnnGetErrorString(ps_d_));         \
    } while (0)

struct ps_cuda_conv {
    ps_cuda_ctx *c;
    ps_conv_dir dir;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int algo;
    void *ws;
    size_t ws_bytes;
    int64_t oh, ow;
    cudnnDataType_t compute;
};

static void dnn_handle_free(void *h)
{
    D.p_cudnnDestroy((cudnnHandle_t)h);
}

extern "C" void ps_cuda_conv2d_free(ps_cuda_conv *cv)
{
    if (!cv)
        return;
    if (cv->cd)
        D.p_cudnnDestroyConvolutionDescriptor(cv->cd);
    if (cv->wd)
        D.p_cudnnDestroyFilterDescriptor(cv->wd);
    if (cv->yd)
        D.p_cudnnDestroyTensorDescriptor(cv->yd);
    if (cv->xd)
        D.p_cudnnDestroyTensorDescriptor(cv->xd);
    cudaFree(cv->ws);
    free(cv);
}

static const size_t WS_MAX = (size_t)256 << 20;

static int conv_plan(ps_cuda_conv *cv, ps_gemm_prec p, int n, int ch, int h, int w, int k, int r,
                     int s, int stride, int pad, ps_err *e)
{
    ps_cuda_ctx *c = cv->c;
    if (!c->dnn) {
        cudnnHandle_t hd;
        DNN_TRY(D.p_cudnnCreate(&hd), e);
        c->dnn = hd;
        c->dnn_free = dnn_handle_free;
    }
    cudnnHandle_t hd = (cudnnHandle_t)c->dnn;
    DNN_TRY(D.p_cudnnSetStream(hd, c->stream), e);
    cudnnDataType_t dt = p == PS_GEMM_FP16   ? CUDNN_DATA_HALF
                         : p == PS_GEMM_BF16 ? CUDNN_DATA_BFLOAT16
                                             : CUDNN_DATA_FLOAT;
    cudnnMathType_t math = p == PS_GEMM_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    DNN_TRY(D.p_cudnnCreateTensorDescriptor(&cv->xd), e);
    DNN_TRY(D.p_cudnnCreateTensorDescriptor(&cv->yd), e);
    DNN_TRY(D.p_cudnnCreateFilterDescriptor(&cv->wd), e);
    DNN_TRY(D.p_cudnnCreateConvolutionDescriptor(&cv->cd), e);
    DNN_TRY(D.p_cudnnSetTensor4dDescriptor(cv->xd, CUDNN_TENSOR_NCHW, dt, n, ch, h, w), e);
    DNN_TRY(D.p_cudnnSetFilter4dDescriptor(cv->wd, dt, CUDNN_TENSOR_NCHW, k, ch, r, s), e);
    DNN_TRY(D.p_cudnnSetConvolution2dDescriptor(cv->cd, pad, pad, stride, stride, 1, 1,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            e);
    DNN_TRY(D.p_cudnnSetConvolutionMathType(cv->cd, math), e);
    int on, oc, oh, ow;
    DNN_TRY(D.p_cudnnGetConvolution2dForwardOutputDim(cv->cd, cv->xd, cv->wd, &on, &oc, &oh, &ow),
            e);
    cv->oh = oh;
    cv->ow = ow;
    DNN_TRY(D.p_cudnnSetTensor4dDescriptor(cv->yd, CUDNN_TENSOR_NCHW, dt, on, oc, oh, ow), e);

    // First heuristic choice that succeeds and fits the workspace cap.
    enum { NALGO = 16 };
    int got = 0;
    cv->algo = -1;
    if (cv->dir == PS_CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t pr[NALGO];
        DNN_TRY(D.p_cudnnGetConvolutionForwardAlgorithm_v7(hd, cv->xd, cv->wd, cv->cd, cv->yd,
                                                           NALGO, &got, pr),
                e);
        for (int i = 0; i < got && cv->algo < 0; i++) {
            size_t ws = 0;
            if (pr[i].status == CUDNN_STATUS_SUCCESS &&
                D.p_cudnnGetConvolutionForwardWorkspaceSize(hd, cv->xd, cv->wd, cv->cd, cv->yd,
                                                          pr[i].algo, &ws) ==
                    CUDNN_STATUS_SUCCESS &&
                ws <= WS_MAX) {
                cv->algo = pr[i].algo;
                cv->ws_bytes = ws;
            }
        }
    } else if (cv->dir == PS_CONV_BWD_INPUT) {
        cudnnConvolutionBwdDataAlgoPerf_t pr[NALGO];
        DNN_TRY(D.p_cudnnGetConvolutionBackwardDataAlgorithm_v7(hd, cv->wd, cv->yd, cv->cd, cv->xd,
                                                              NALGO, &got, pr),
                e);
        for (int i = 0; i < got && cv->algo < 0; i++) {
            size_t ws = 0;
            if (pr[i].status == CUDNN_STATUS_SUCCESS &&
                D.p_cudnnGetConvolutionBackwardDataWorkspaceSize(hd, cv->wd, cv->yd, cv->cd, cv->xd,
                                                               pr[i].algo, &ws) ==
                    CUDNN_STATUS_SUCCESS &&
                ws <= WS_MAX) {
                cv->algo = pr[i].algo;
                cv->ws_bytes = ws;
            }
        }
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t pr[NALGO];
        DNN_TRY(D.p_cudnnGetConvolutionBackwardFilterAlgorithm_v7(hd, cv->xd, cv->yd, cv->cd,
                                                                  cv->wd, NALGO, &got, pr),
                e);
        for (int i = 0; i < got && cv->algo < 0; i++) {
            size_t ws = 0;
            if (pr[i].status == CUDNN_STATUS_SUCCESS &&
                D.p_cudnnGetConvolutionBackwardFilterWorkspaceSize(hd, cv->xd, cv->yd, cv->cd,
                                                                 cv->wd, pr[i].algo, &ws) ==
                    CUDNN_STATUS_SUCCESS &&
                ws <= WS_MAX) {
                cv->algo = pr[i].algo;
                cv->ws_bytes = ws;
            }
        }
    }
    if (cv->algo < 0)
        return ps_errf(e, PS_ERUN,
                       "cuDNN offers no %s algorithm for this convolution within %zu MiB",
                       cv->dir == PS_CONV_FWD         ? "forward"
                       : cv->dir == PS_CONV_BWD_INPUT ? "backward-data"
                                                      : "backward-filter",
                       WS_MAX >> 20);
    if (cv->ws_bytes)
        PS_CU_TRY(cudaMalloc(&cv->ws, cv->ws_bytes), e);
    return 0;
}

extern "C" ps_cuda_conv *ps_cuda_conv2d_plan(ps_cuda_ctx *c, ps_conv_dir dir, ps_gemm_prec p,
                                             int64_t n, int64_t ch, int64_t h, int64_t w,
                                             int64_t k, int64_t r, int64_t s, int64_t stride,
                                             int64_t pad, ps_err *e)
{
    char why[512];
    if (!ps_cudnn_available(why, sizeof why)) {
        ps_errf(e, PS_ERUN, "%s", why);
        return NULL;
    }
    if ((unsigned)dir > PS_CONV_BWD_WEIGHT || p == PS_GEMM_FP64 ||
        (unsigned)p >= PS_GEMM_PREC_COUNT) {
        ps_errf(e, PS_EINPUT, "conv2d: direction %d / precision %s not supported", (int)dir,
                ps_gemm_prec_name(p));
        return NULL;
    }
    const int64_t lim = 0x7fffffffLL;
    if (n < 1 || ch < 1 || h < 1 || w < 1 || k < 1 || r < 1 || s < 1 || stride < 1 || pad < 0 ||
        n > lim || ch > lim || h > lim || w > lim || k > lim || r > lim || s > lim ||
        stride > lim || pad > lim) {
        ps_errf(e, PS_EINPUT, "conv2d: dimensions out of range");
        return NULL;
    }
    if (h + 2 * pad < r || w + 2 * pad < s) {
        ps_errf(e, PS_EINPUT, "conv2d: the %lldx%lld filter does not fit the padded input",
                (long long)r, (long long)s);
        return NULL;
    }
    ps_cuda_conv *cv = (ps_cuda_conv *)calloc(1, sizeof *cv);
    if (!cv) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    cv->c = c;
    cv->dir = dir;
    if (conv_plan(cv, p, (int)n, (int)ch, (int)h, (int)w, (int)k, (int)r, (int)s, (int)stride,
                  (int)pad, e)) {
        ps_cuda_conv2d_free(cv);
        return NULL;
    }
    return cv;
}

extern "C" void ps_cuda_conv2d_out_hw(const ps_cuda_conv *cv, int64_t *oh, int64_t *ow)
{
    *oh = cv->oh;
    *ow = cv->ow;
}

extern "C" int ps_cuda_conv2d_algo(const ps_cuda_conv *cv)
{
    return cv->algo;
}

extern "C" int ps_cuda_conv2d_run(ps_cuda_conv *cv, const void *in0, const void *in1, void *out,
                                  ps_err *e)
{
    cudnnHandle_t hd = (cudnnHandle_t)cv->c->dnn;
    const float one = 1.f, zero = 0.f; // float scaling for every data type but double
    switch (cv->dir) {
    case PS_CONV_FWD:
        DNN_TRY(D.p_cudnnConvolutionForward(hd, &one, cv->xd, in0, cv->wd, in1, cv->cd,
                                          (cudnnConvolutionFwdAlgo_t)cv->algo, cv->ws,
                                          cv->ws_bytes, &zero, cv->yd, out),
                e);
        break;
    case PS_CONV_BWD_INPUT:
        DNN_TRY(D.p_cudnnConvolutionBackwardData(hd, &one, cv->wd, in1, cv->yd, in0, cv->cd,
                                               (cudnnConvolutionBwdDataAlgo_t)cv->algo, cv->ws,
                                               cv->ws_bytes, &zero, cv->xd, out),
                e);
        break;
    default:
        DNN_TRY(D.p_cudnnConvolutionBackwardFilter(hd, &one, cv->xd, in0, cv->yd, in1, cv->cd,
                                                 (cudnnConvolutionBwdFilterAlgo_t)cv->algo,
                                                 cv->ws, cv->ws_bytes, &zero, cv->wd, out),
                e);
        break;
    }
    return ps_cu_launched(e, "cuDNN convolution");
}
