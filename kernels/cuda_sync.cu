// CUDA events, stream dependencies, devices and the CUDA replay's small
// kernels (kernels/cuda_sync.h).  Every runtime call is checked; every
// launch is followed by cudaGetLastError().
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda_sync.h"

static int cs_fail(ps_err *e, cudaError_t r, const char *what)
{
    return ps_errf(e, PS_ERUN, "%s: %s (%s)", what, cudaGetErrorString(r), cudaGetErrorName(r));
}

#define CS_TRY(call)                                                                              \
    do {                                                                                          \
        cudaError_t cs_r_ = (call);                                                               \
        if (cs_r_ != cudaSuccess)                                                                 \
            return cs_fail(e, cs_r_, #call);                                                      \
    } while (0)

static int cs_launched(ps_err *e, const char *kernel)
{
    cudaError_t r = cudaGetLastError();
    return r == cudaSuccess ? 0 : cs_fail(e, r, kernel);
}

#define CS_NT 256

static unsigned cs_grid(int64_t n)
{
    int64_t g = (n + CS_NT - 1) / CS_NT;
    if (g < 1)
        g = 1;
    if (g > 4096)
        g = 4096;
    return (unsigned)g;
}

#define CS_STREAM(s) ((cudaStream_t)(s))
#define CS_EVENT(v) ((cudaEvent_t)(v))

// ------------------------------------------------------------------ devices

extern "C" int ps_cusync_device_count(int *n, ps_err *e)
{
    *n = 0;
    CS_TRY(cudaGetDeviceCount(n));
    return 0;
}

extern "C" int ps_cusync_set_device(int dev, ps_err *e)
{
    CS_TRY(cudaSetDevice(dev));
    return 0;
}

extern "C" int ps_cusync_enable_peer(int a, int b, int *ok, ps_err *e)
{
    *ok = 0;
    int can = 0;
    CS_TRY(cudaDeviceCanAccessPeer(&can, a, b));
    if (!can)
        return 0;
    CS_TRY(cudaSetDevice(a));
    cudaError_t r = cudaDeviceEnablePeerAccess(b, 0);
    if (r == cudaErrorPeerAccessAlreadyEnabled) {
        (void)cudaGetLastError(); // not an error here; clear it
        r = cudaSuccess;
    }
    if (r != cudaSuccess)
        return cs_fail(e, r, "cudaDeviceEnablePeerAccess");
    *ok = 1;
    return 0;
}

// ------------------------------------------------------------------ events, streams

extern "C" int ps_cusync_event_new(void **ev, int timing, ps_err *e)
{
    *ev = NULL;
    cudaEvent_t x;
    CS_TRY(cudaEventCreateWithFlags(&x, timing ? cudaEventDefault : cudaEventDisableTiming));
    *ev = (void *)x;
    return 0;
}

extern "C" void ps_cusync_event_free(void *ev)
{
    if (ev)
        cudaEventDestroy(CS_EVENT(ev));
}

extern "C" int ps_cusync_record(void *ev, void *stream, ps_err *e)
{
    CS_TRY(cudaEventRecord(CS_EVENT(ev), CS_STREAM(stream)));
    return 0;
}

extern "C" int ps_cusync_wait(void *stream, void *ev, ps_err *e)
{
    CS_TRY(cudaStreamWaitEvent(CS_STREAM(stream), CS_EVENT(ev), 0));
    return 0;
}

extern "C" int ps_cusync_elapsed(void *a, void *b, double *seconds, ps_err *e)
{
    float ms = 0;
    CS_TRY(cudaEventElapsedTime(&ms, CS_EVENT(a), CS_EVENT(b)));
    *seconds = 1e-3 * (double)ms;
    return 0;
}

extern "C" int ps_cusync_event_sync(void *ev, ps_err *e)
{
    CS_TRY(cudaEventSynchronize(CS_EVENT(ev)));
    return 0;
}

extern "C" int ps_cusync_stream_sync(void *stream, ps_err *e)
{
    CS_TRY(cudaStreamSynchronize(CS_STREAM(stream)));
    return 0;
}

// ------------------------------------------------------------------ kernels

__global__ void k_cs_block(int64_t rows, int64_t cols, const float *src, int64_t sld, float *dst,
                           int64_t dld, int acc)
{
    int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        float v = src[r * sld + c];
        float *d = dst + r * dld + c;
        *d = acc ? *d + v : v;
    }
}

extern "C" int ps_cusync_block_copy(void *stream, int64_t rows, int64_t cols, const float *src,
                                    int64_t sld, float *dst, int64_t dld, int accumulate,
                                    ps_err *e)
{
    if (rows < 0 || cols < 0)
        return ps_errf(e, PS_EINPUT, "block_copy: rows %lld, cols %lld", (long long)rows,
                       (long long)cols);
    if (rows == 0 || cols == 0)
        return 0;
    k_cs_block<<<cs_grid(rows * cols), CS_NT, 0, CS_STREAM(stream)>>>(rows, cols, src, sld, dst,
                                                                       dld, accumulate);
    return cs_launched(e, "k_cs_block");
}

__device__ __forceinline__ float cs_gelu_u(float v)
{
    return 0.7978845608f * (v + 0.044715f * v * v * v);
}

__global__ void k_cs_act_fwd(int act, int64_t n, const float *x, float *y)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i], r;
        switch (act) {
        case PS_CUSYNC_RELU: r = v > 0 ? v : 0; break;
        case PS_CUSYNC_GELU: r = 0.5f * v * (1 + tanhf(cs_gelu_u(v))); break;
        case PS_CUSYNC_TANH: r = tanhf(v); break;
        case PS_CUSYNC_SIGMOID: r = 1 / (1 + expf(-v)); break;
        default: r = v; break;
        }
        y[i] = r;
    }
}

__global__ void k_cs_act_bwd(int act, int64_t n, const float *x, const float *y, const float *dy,
                             float *dx)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = dy[i], r;
        switch (act) {
        case PS_CUSYNC_RELU: r = x[i] > 0 ? g : 0; break;
        case PS_CUSYNC_GELU: {
            float v = x[i], th = tanhf(cs_gelu_u(v));
            float du = 0.7978845608f * (1 + 3 * 0.044715f * v * v);
            r = g * (0.5f * (1 + th) + 0.5f * v * (1 - th * th) * du);
            break;
        }
        case PS_CUSYNC_TANH: r = g * (1 - y[i] * y[i]); break;
        case PS_CUSYNC_SIGMOID: r = g * y[i] * (1 - y[i]); break;
        default: r = g; break;
        }
        dx[i] = r;
    }
}

static int cs_act_ok(int act, ps_err *e)
{
    if (act < PS_CUSYNC_IDENT || act > PS_CUSYNC_SIGMOID)
        return ps_errf(e, PS_EINPUT, "replay activation: unknown code %d", act);
    return 0;
}

extern "C" int ps_cusync_act_fwd(void *stream, int act, int64_t n, const float *x, float *y,
                                 ps_err *e)
{
    if (cs_act_ok(act, e))
        return PS_EINPUT;
    if (n <= 0)
        return 0;
    k_cs_act_fwd<<<cs_grid(n), CS_NT, 0, CS_STREAM(stream)>>>(act, n, x, y);
    return cs_launched(e, "k_cs_act_fwd");
}

extern "C" int ps_cusync_act_bwd(void *stream, int act, int64_t n, const float *x, const float *y,
                                 const float *dy, float *dx, ps_err *e)
{
    if (cs_act_ok(act, e))
        return PS_EINPUT;
    if (n <= 0)
        return 0;
    k_cs_act_bwd<<<cs_grid(n), CS_NT, 0, CS_STREAM(stream)>>>(act, n, x, y, dy, dx);
    return cs_launched(e, "k_cs_act_bwd");
}

// Block sum of one double per thread (blockDim.x == CS_NT), added to *out
// times `scale` by thread 0.
__device__ void cs_block_add(double s, double scale, double *out)
{
    __shared__ double sh[CS_NT];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = CS_NT / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k)
            sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        atomicAdd(out, sh[0] * scale);
}

__global__ void k_cs_mse(int64_t n, const float *y, const float *t, double scale, float *dy,
                         double *loss)
{
    double s = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        double d = (double)y[i] - (double)t[i];
        s += d * d;
        dy[i] = (float)(2 * d * scale);
    }
    cs_block_add(s, scale, loss);
}

__global__ void k_cs_sumsq(int64_t n, const float *x, double *acc)
{
    double s = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        double v = x[i];
        s += v * v;
    }
    cs_block_add(s, 1.0, acc);
}

extern "C" int ps_cusync_mse(void *stream, int64_t n, const float *y, const float *t,
                             double scale, float *dy, double *loss, ps_err *e)
{
    if (n <= 0)
        return 0;
    k_cs_mse<<<cs_grid(n), CS_NT, 0, CS_STREAM(stream)>>>(n, y, t, scale, dy, loss);
    return cs_launched(e, "k_cs_mse");
}

extern "C" int ps_cusync_sumsq(void *stream, int64_t n, const float *x, double *acc, ps_err *e)
{
    if (n <= 0)
        return 0;
    k_cs_sumsq<<<cs_grid(n), CS_NT, 0, CS_STREAM(stream)>>>(n, x, acc);
    return cs_launched(e, "k_cs_sumsq");
}
