// The project's own CUDA kernels (see kernels/cuda_ops.h for the contract):
// the context, memory helpers, random fill, elementwise, row reductions,
// masked attention and embedding-bag.  Written for clarity first; each is
// one pass over its data except where noted.
#include "kernels/cuda_ops.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda_ctx_impl.h"

// ------------------------------------------------------------------ dtypes





// Device load/store through fp32 (fp64 for double).
template <typename T> struct acc_of {
    typedef float type;
};
template <> struct acc_of<double> {
    typedef double type;
};

template <typename A, typename T> __device__ __forceinline__ A ld(const T *p, size_t i)
{
    return (A)p[i];
}
template <> __device__ __forceinline__ float ld<float, __half>(const __half *p, size_t i)
{
    return __half2float(p[i]);
}
template <> __device__ __forceinline__ float ld<float, __nv_bfloat16>(const __nv_bfloat16 *p,
                                                                      size_t i)
{
    return __bfloat162float(p[i]);
}
template <typename T, typename A> __device__ __forceinline__ void st(T *p, size_t i, A v)
{
    p[i] = (T)v;
}
template <> __device__ __forceinline__ void st<__half, float>(__half *p, size_t i, float v)
{
    p[i] = __float2half_rn(v);
}
template <>
__device__ __forceinline__ void st<__nv_bfloat16, float>(__nv_bfloat16 *p, size_t i, float v)
{
    p[i] = __float2bfloat16_rn(v);
}

static unsigned grid_for(size_t n, unsigned threads, unsigned cap)
{
    size_t g = (n + threads - 1) / threads;
    if (g < 1)
        g = 1;
    return g > cap ? cap : (unsigned)g;
}

// ------------------------------------------------------------------ context

extern "C" ps_cuda_ctx *ps_cuda_ctx_new(int device, ps_err *e)
{
    ps_cuda_ctx *c = (ps_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    c->device = device;
    cudaError_t r;
    int v = 0;
    const char *what = "cudaSetDevice";
    if ((r = cudaSetDevice(device)) != cudaSuccess)
        goto fail;
    what = "cudaDeviceGetAttribute(MultiProcessorCount)";
    if ((r = cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, device)) !=
        cudaSuccess)
        goto fail;
    what = "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)";
    if ((r = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) !=
        cudaSuccess)
        goto fail;
    c->smem_optin = (size_t)v;
    what = "cudaStreamCreateWithFlags";
    if ((r = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        goto fail;
    // 32 MiB: what NVIDIA recommends for cuBLAS on Hopper.
    c->blas_ws_bytes = (size_t)32 << 20;
    what = "cudaMalloc(blas workspace)";
    if ((r = cudaMalloc(&c->blas_ws, c->blas_ws_bytes)) != cudaSuccess)
        goto fail;
    {
        cublasStatus_t s = cublasCreate(&c->blas);
        if (s != CUBLAS_STATUS_SUCCESS) {
            c->blas = NULL;
            ps_errf(e, PS_ERUN, "cublasCreate: %s", ps_cublas_status_str(s));
            ps_cuda_ctx_free(c);
            return NULL;
        }
        if ((s = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS ||
            (s = cublasSetWorkspace(c->blas, c->blas_ws, c->blas_ws_bytes)) !=
                CUBLAS_STATUS_SUCCESS ||
            (s = cublasLtCreate(&c->lt)) != CUBLAS_STATUS_SUCCESS) {
            ps_errf(e, PS_ERUN, "cuBLAS set-up: %s", ps_cublas_status_str(s));
            ps_cuda_ctx_free(c);
            return NULL;
        }
    }
    return c;
fail:
    ps_cu_fail(e, r, what);
    ps_cuda_ctx_free(c);
    return NULL;
}

extern "C" void ps_cuda_ctx_free(ps_cuda_ctx *c)
{
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream); // errors here were reported by the work itself
    if (c->dnn && c->dnn_free)
        c->dnn_free(c->dnn);
    if (c->lt)
        cublasLtDestroy(c->lt);
    if (c->blas)
        cublasDestroy(c->blas);
    cudaFree(c->blas_ws);
    cudaFree(c->scratch);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" int ps_cuda_ctx_device(const ps_cuda_ctx *c)
{
    return c->device;
}

extern "C" void *ps_cuda_ctx_stream(const ps_cuda_ctx *c)
{
    return (void *)c->stream;
}

extern "C" int ps_cuda_ctx_sync(ps_cuda_ctx *c, ps_err *e)
{
    PS_CU_TRY(cudaStreamSynchronize(c->stream), e);
    PS_CU_TRY(cudaGetLastError(), e);
    return 0;
}

extern "C" void *ps_cuda_ctx_scratch(ps_cuda_ctx *c, size_t bytes, ps_err *e)
{
    if (bytes <= c->scratch_bytes && c->scratch)
        return c->scratch;
    cudaError_t r = cudaStreamSynchronize(c->stream);
    if (r != cudaSuccess) {
        ps_cu_fail(e, r, "cudaStreamSynchronize (growing scratch)");
        return NULL;
    }
    // Grow geometrically: a sweep of growing shapes reallocates O(log) times.
    size_t want = bytes < 2 * c->scratch_bytes ? 2 * c->scratch_bytes : bytes;
    cudaFree(c->scratch);
    c->scratch = NULL;
    c->scratch_bytes = 0;
    if ((r = cudaMalloc(&c->scratch, want)) != cudaSuccess) {
        c->scratch = NULL;
        ps_cu_fail(e, r, "cudaMalloc(scratch)");
        return NULL;
    }
    c->scratch_bytes = want;
    return c->scratch;
}

extern "C" int ps_cuda_device_info_get(int device, ps_cuda_device_info *o, ps_err *e)
{
    memset(o, 0, sizeof *o);
    cudaDeviceProp p;
    PS_CU_TRY(cudaGetDeviceProperties(&p, device), e);
    snprintf(o->name, sizeof o->name, "%s", p.name);
    o->mem_bytes = (double)p.totalGlobalMem;
    int v;
#define ATTR(field, a, scale)                                                                     \
    do {                                                                                          \
        PS_CU_TRY(cudaDeviceGetAttribute(&v, a, device), e);                                      \
        o->field = v * (scale);                                                                   \
    } while (0)
    ATTR(cc_major, cudaDevAttrComputeCapabilityMajor, 1);
    ATTR(cc_minor, cudaDevAttrComputeCapabilityMinor, 1);
    ATTR(sm_count, cudaDevAttrMultiProcessorCount, 1);
    ATTR(sm_clock_hz, cudaDevAttrClockRate, 1e3); // kHz
    ATTR(mem_clock_hz, cudaDevAttrMemoryClockRate, 1e3);
    ATTR(mem_bus_bits, cudaDevAttrGlobalMemoryBusWidth, 1);
    ATTR(l2_bytes, cudaDevAttrL2CacheSize, 1.0);
    ATTR(smem_per_block_optin_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, 1.0);
#undef ATTR
    PS_CU_TRY(cudaDriverGetVersion(&o->driver_version), e);
    PS_CU_TRY(cudaRuntimeGetVersion(&o->runtime_version), e);
    if (cudaDeviceGetPCIBusId(o->pci_bus_id, (int)sizeof o->pci_bus_id, device) != cudaSuccess)
        snprintf(o->pci_bus_id, sizeof o->pci_bus_id, "?");
    return 0;
}

// ------------------------------------------------------------------ memory

extern "C" void *ps_cuda_alloc(size_t bytes, ps_err *e)
{
    void *p = NULL;
    cudaError_t r = cudaMalloc(&p, bytes ? bytes : 1);
    if (r != cudaSuccess) {
        ps_errf(e, PS_ERUN, "cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(r));
        return NULL;
    }
    return p;
}

extern "C" void ps_cuda_free(void *p)
{
    if (p)
        cudaFree(p);
}

extern "C" void *ps_cuda_host_alloc(size_t bytes, ps_err *e)
{
    void *p = NULL;
    cudaError_t r = cudaMallocHost(&p, bytes ? bytes : 1);
    if (r != cudaSuccess) {
        ps_errf(e, PS_ERUN, "cudaMallocHost(%zu bytes): %s", bytes, cudaGetErrorString(r));
        return NULL;
    }
    return p;
}

extern "C" void ps_cuda_host_free(void *p)
{
    if (p)
        cudaFreeHost(p);
}

extern "C" int ps_cuda_copy(ps_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                            ps_cu_copy_kind kind, ps_err *e)
{
    cudaMemcpyKind k = kind == PS_CU_H2D   ? cudaMemcpyHostToDevice
                       : kind == PS_CU_D2H ? cudaMemcpyDeviceToHost
                                           : cudaMemcpyDeviceToDevice;
    PS_CU_TRY(cudaMemcpyAsync(dst, src, bytes, k, c->stream), e);
    return 0;
}

extern "C" int ps_cuda_memset(ps_cuda_ctx *c, void *p, int byte, size_t bytes, ps_err *e)
{
    PS_CU_TRY(cudaMemsetAsync(p, byte, bytes, c->stream), e);
    return 0;
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

__global__ void k_fill_random(void *p, size_t n, int t, uint64_t seed, double scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t r = splitmix64(seed * 0xD1B54A32D192ED03ull + i);
        double u = (double)(r >> 11) * (1.0 / 9007199254740992.0); // [0,1)
        double mag = (1.0 / 16.0 + (15.0 / 16.0) * u) * scale;
        double f = (r & 1) ? -mag : mag;
        uint64_t hi = scale >= 1 ? (uint64_t)scale : 1;
        switch (t) {
        case PS_CU_F32: ((float *)p)[i] = (float)f; break;
        case PS_CU_F64: ((double *)p)[i] = f; break;
        case PS_CU_F16: ((__half *)p)[i] = __double2half(f); break;
        case PS_CU_BF16: ((__nv_bfloat16 *)p)[i] = __double2bfloat16(f); break;
        case PS_CU_I8: {
            int v = 1 + (int)((r >> 33) % 127);
            ((int8_t *)p)[i] = (int8_t)((r & 1) ? -v : v);
            break;
        }
        case PS_CU_I32: ((int32_t *)p)[i] = (int32_t)((r >> 1) % hi); break;
        case PS_CU_I64: ((int64_t *)p)[i] = (int64_t)((r >> 1) % hi); break;
        case PS_CU_U8: ((uint8_t *)p)[i] = (uint8_t)((r >> 1) % hi); break;
        }
    }
}

extern "C" int ps_cuda_fill_random(ps_cuda_ctx *c, void *p, size_t n, ps_cu_dtype t,
                                   uint64_t seed, double scale, ps_err *e)
{
    if ((unsigned)t >= PS_CU_DTYPE_COUNT)
        return ps_errf(e, PS_EINPUT, "fill_random: bad dtype %d", (int)t);
    if (n == 0)
        return 0;
    k_fill_random<<<grid_for(n, 256, 65536), 256, 0, c->stream>>>(p, n, (int)t, seed, scale);
    return ps_cu_launched(e, "k_fill_random");
}

__device__ double ld_any(const void *p, int t, size_t i)
{
    switch (t) {
    case PS_CU_F32: return ((const float *)p)[i];
    case PS_CU_F64: return ((const double *)p)[i];
    case PS_CU_F16: return __half2float(((const __half *)p)[i]);
    case PS_CU_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case PS_CU_I8: return ((const int8_t *)p)[i];
    case PS_CU_I32: return ((const int32_t *)p)[i];
    case PS_CU_I64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

__global__ void k_convert(const void *s, int st_, void *d, int dt, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double v = ld_any(s, st_, i);
        switch (dt) {
        case PS_CU_F32: ((float *)d)[i] = (float)v; break;
        case PS_CU_F64: ((double *)d)[i] = v; break;
        case PS_CU_F16: ((__half *)d)[i] = __double2half(v); break;
        case PS_CU_BF16: ((__nv_bfloat16 *)d)[i] = __double2bfloat16(v); break;
        case PS_CU_I8: ((int8_t *)d)[i] = (int8_t)v; break;
        case PS_CU_I32: ((int32_t *)d)[i] = (int32_t)v; break;
        case PS_CU_I64: ((int64_t *)d)[i] = (int64_t)v; break;
        default: ((uint8_t *)d)[i] = (uint8_t)v; break;
        }
    }
}

extern "C" int ps_cuda_convert(ps_cuda_ctx *c, const void *src, ps_cu_dtype st_, void *dst,
                               ps_cu_dtype dt, size_t n, ps_err *e)
{
    if ((unsigned)st_ >= PS_CU_DTYPE_COUNT || (unsigned)dt >= PS_CU_DTYPE_COUNT)
        return ps_errf(e, PS_EINPUT, "convert: bad dtype");
    if (n == 0)
        return 0;
    k_convert<<<grid_for(n, 256, 65536), 256, 0, c->stream>>>(src, (int)st_, dst, (int)dt, n);
    return ps_cu_launched(e, "k_convert");
}

__global__ void k_spin(uint64_t ns)
{
    uint64_t t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}

extern "C" int ps_cuda_spin(ps_cuda_ctx *c, double seconds, ps_err *e)
{
    if (!(seconds > 0))
        return 0;
    k_spin<<<1, 1, 0, c->stream>>>((uint64_t)(seconds * 1e9));
    return ps_cu_launched(e, "k_spin");
}

// ------------------------------------------------------------------ elementwise

static const char *const EW_NAMES[PS_EW_COUNT] = {"relu", "gelu", "tanh", "sigmoid", "add", "mul"};



template <typename A> __device__ __forceinline__ A ew_apply(int op, A x, A y)
{
    switch (op) {
    case PS_EW_RELU: return x > A(0) ? x : A(0);
    case PS_EW_GELU: return A(0.5) * x * (A(1) + erf(x * A(0.70710678118654752440)));
    case PS_EW_TANH: return tanh(x);
    case PS_EW_SIGMOID: return A(1) / (A(1) + exp(-x));
    case PS_EW_ADD: return x + y;
    default: return x * y;
    }
}

// The op is a template parameter so the switch folds away; four elements per
// thread per iteration keep several loads in flight.
template <typename T, int OP> __global__ void k_ew(size_t n, const T *a, const T *b, T *y)
{
    typedef typename acc_of<T>::type A;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i0 = blockIdx.x * (size_t)blockDim.x * 4 + threadIdx.x; i0 < n; i0 += stride * 4) {
        A x[4], z[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            size_t i = i0 + (size_t)u * blockDim.x;
            x[u] = i < n ? ld<A>(a, i) : A(0);
            z[u] = (OP == PS_EW_ADD || OP == PS_EW_MUL) && i < n ? ld<A>(b, i) : A(0);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            size_t i = i0 + (size_t)u * blockDim.x;
            if (i < n)
                st(y, i, ew_apply<A>(OP, x[u], z[u]));
        }
    }
}

template <typename T>
static int ew_launch(ps_cuda_ctx *c, ps_ew_op op, size_t n, const void *a, const void *b, void *y,
                     ps_err *e)
{
    // Enough blocks to fill the device several times over, then grid-stride.
    unsigned grid = grid_for((n + 3) / 4, 256, (unsigned)c->sm_count * 16);
    const T *A_ = (const T *)a, *B_ = (const T *)b;
    T *Y = (T *)y;
    switch (op) {
    case PS_EW_RELU: k_ew<T, PS_EW_RELU><<<grid, 256, 0, c->stream>>>(n, A_, B_, Y); break;
    case PS_EW_GELU: k_ew<T, PS_EW_GELU><<<grid, 256, 0, c->stream>>>(n, A_, B_, Y); break;
    case PS_EW_TANH: k_ew<T, PS_EW_TANH><<<grid, 256, 0, c->stream>>>(n, A_, B_, Y); break;
    case PS_EW_SIGMOID: k_ew<T, PS_EW_SIGMOID><<<grid, 256, 0, c->stream>>>(n, A_, B_, Y); break;
    case PS_EW_ADD: k_ew<T, PS_EW_ADD><<<grid, 256, 0, c->stream>>>(n, A_, B_, Y); break;
    case PS_EW_MUL: k_ew<T, PS_EW_MUL><<<grid, 256, 0, c->stream>>>(n, A_, B_, Y); break;
    default: return ps_errf(e, PS_EINPUT, "elementwise: bad op %d", (int)op);
    }
    return ps_cu_launched(e, "k_ew");
}

extern "C" int ps_cuda_elementwise(ps_cuda_ctx *c, ps_ew_op op, ps_cu_dtype t, size_t n,
                                   const void *a, const void *b, void *y, ps_err *e)
{
    if ((unsigned)op >= PS_EW_COUNT)
        return ps_errf(e, PS_EINPUT, "elementwise: bad op %d", (int)op);
    if (ps_cuda_ew_is_binary(op) && !b)
        return ps_errf(e, PS_EINPUT, "elementwise %s needs a second input", EW_NAMES[op]);
    if (n == 0)
        return 0;
    switch (t) {
    case PS_CU_F32: return ew_launch<float>(c, op, n, a, b, y, e);
    case PS_CU_F64: return ew_launch<double>(c, op, n, a, b, y, e);
    case PS_CU_F16: return ew_launch<__half>(c, op, n, a, b, y, e);
    case PS_CU_BF16: return ew_launch<__nv_bfloat16>(c, op, n, a, b, y, e);
    default:
        return ps_errf(e, PS_EINPUT, "elementwise: dtype %s not supported", ps_cu_dtype_name(t));
    }
}

// ------------------------------------------------------------------ reductions


template <typename A> __device__ __forceinline__ A warp_sum(A v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename A> __device__ __forceinline__ A warp_max(A v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reduction; every thread gets the result.  `sh` holds 32 values.
template <typename A, bool MAX> __device__ A block_reduce(A v, A *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads(); // sh may still be read from the previous reduction
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    A r = lane < nw ? sh[lane] : (MAX ? -INFINITY : A(0));
    r = MAX ? warp_max(r) : warp_sum(r);
    return r;
}

// Short rows (cols <= 32 * PL): one warp per row, the row held in registers.
template <typename T, int OP, int PL>
__global__ void k_red_warp(int64_t rows, int cols, const T *x, const T *gamma, const T *beta,
                           T *y)
{
    typedef typename acc_of<T>::type A;
    int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const size_t base = (size_t)row * cols;
    A v[PL];
#pragma unroll
    for (int p = 0; p < PL; p++) {
        int cidx = lane + 32 * p;
        v[p] = cidx < cols ? ld<A>(x, base + cidx) : A(0);
    }
    if (OP == PS_RED_SUM) {
        A s = 0;
#pragma unroll
        for (int p = 0; p < PL; p++)
            s += v[p];
        s = warp_sum(s);
        if (lane == 0)
            st(y, (size_t)row, s);
        return;
    }
    if (OP == PS_RED_SOFTMAX) {
        A m = -INFINITY;
#pragma unroll
        for (int p = 0; p < PL; p++)
            if (lane + 32 * p < cols)
                m = max(m, v[p]);
        m = warp_max(m);
        A s = 0;
#pragma unroll
        for (int p = 0; p < PL; p++)
            if (lane + 32 * p < cols) {
                v[p] = exp(v[p] - m);
                s += v[p];
            }
        A inv = A(1) / warp_sum(s);
#pragma unroll
        for (int p = 0; p < PL; p++)
            if (lane + 32 * p < cols)
                st(y, base + lane + 32 * p, v[p] * inv);
        return;
    }
    // layernorm: two passes over registers (mean, then centred variance).
    A s = 0;
#pragma unroll
    for (int p = 0; p < PL; p++)
        s += v[p];
    A mean = warp_sum(s) / cols;
    A q = 0;
#pragma unroll
    for (int p = 0; p < PL; p++)
        if (lane + 32 * p < cols) {
            A dv = v[p] - mean;
            q += dv * dv;
        }
    A rstd = A(1) / sqrt(warp_sum(q) / cols + A(PS_LAYERNORM_EPS));
#pragma unroll
    for (int p = 0; p < PL; p++) {
        int cidx = lane + 32 * p;
        if (cidx < cols) {
            A g = gamma ? ld<A>(gamma, cidx) : A(1), bb = beta ? ld<A>(beta, cidx) : A(0);
            st(y, base + cidx, (v[p] - mean) * rstd * g + bb);
        }
    }
}

// Long rows: one block per row; later passes re-read the row (from L2).
template <typename T, int OP>
__global__ void k_red_block(int64_t rows, int64_t cols, const T *x, const T *gamma, const T *beta,
                            T *y)
{
    typedef typename acc_of<T>::type A;
    __shared__ A sh[32];
    int64_t row = blockIdx.x;
    if (row >= rows)
        return;
    const size_t base = (size_t)row * cols;
    if (OP == PS_RED_SUM) {
        A s = 0;
        for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
            s += ld<A>(x, base + i);
        s = block_reduce<A, false>(s, sh);
        if (threadIdx.x == 0)
            st(y, (size_t)row, s);
        return;
    }
    if (OP == PS_RED_SOFTMAX) {
        A m = -INFINITY;
        for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
            m = max(m, ld<A>(x, base + i));
        m = block_reduce<A, true>(m, sh);
        A s = 0;
        for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
            s += exp(ld<A>(x, base + i) - m);
        A inv = A(1) / block_reduce<A, false>(s, sh);
        for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
            st(y, base + i, exp(ld<A>(x, base + i) - m) * inv);
        return;
    }
    A s = 0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
        s += ld<A>(x, base + i);
    A mean = block_reduce<A, false>(s, sh) / (A)cols;
    A q = 0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        A dv = ld<A>(x, base + i) - mean;
        q += dv * dv;
    }
    A rstd = A(1) / sqrt(block_reduce<A, false>(q, sh) / (A)cols + A(PS_LAYERNORM_EPS));
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        A g = gamma ? ld<A>(gamma, i) : A(1), bb = beta ? ld<A>(beta, i) : A(0);
        st(y, base + i, (ld<A>(x, base + i) - mean) * rstd * g + bb);
    }
}

template <typename T, int OP>
static void red_launch_op(ps_cuda_ctx *c, int64_t rows, int64_t cols, const T *x, const T *g,
                          const T *b, T *y)
{
    if (cols <= 1024) {
        const int wpb = 8; // rows per 256-thread block
        unsigned grid = (unsigned)((rows + wpb - 1) / wpb);
        int ic = (int)cols;
        if (cols <= 32)
            k_red_warp<T, OP, 1><<<grid, 256, 0, c->stream>>>(rows, ic, x, g, b, y);
        else if (cols <= 128)
            k_red_warp<T, OP, 4><<<grid, 256, 0, c->stream>>>(rows, ic, x, g, b, y);
        else if (cols <= 512)
            k_red_warp<T, OP, 16><<<grid, 256, 0, c->stream>>>(rows, ic, x, g, b, y);
        else
            k_red_warp<T, OP, 32><<<grid, 256, 0, c->stream>>>(rows, ic, x, g, b, y);
    } else {
        k_red_block<T, OP><<<(unsigned)rows, 512, 0, c->stream>>>(rows, cols, x, g, b, y);
    }
}

template <typename T>
static int red_launch(ps_cuda_ctx *c, ps_red_op op, int64_t rows, int64_t cols, const void *x,
                      const void *g, const void *b, void *y, ps_err *e)
{
    const T *X = (const T *)x, *G = (const T *)g, *B = (const T *)b;
    T *Y = (T *)y;
    switch (op) {
    case PS_RED_SOFTMAX: red_launch_op<T, PS_RED_SOFTMAX>(c, rows, cols, X, G, B, Y); break;
    case PS_RED_LAYERNORM: red_launch_op<T, PS_RED_LAYERNORM>(c, rows, cols, X, G, B, Y); break;
    default: red_launch_op<T, PS_RED_SUM>(c, rows, cols, X, G, B, Y); break;
    }
    return ps_cu_launched(e, "k_red");
}

extern "C" int ps_cuda_reduction(ps_cuda_ctx *c, ps_red_op op, ps_cu_dtype t, int64_t rows,
                                 int64_t cols, const void *x, const void *gamma, const void *beta,
                                 void *y, ps_err *e)
{
    if ((unsigned)op >= PS_RED_COUNT)
        return ps_errf(e, PS_EINPUT, "reduction: bad op %d", (int)op);
    if (rows < 1 || cols < 1)
        return ps_errf(e, PS_EINPUT, "reduction: rows=%lld cols=%lld must be >= 1",
                       (long long)rows, (long long)cols);
    if (rows > 0x7fffffffLL)
        return ps_errf(e, PS_EINPUT, "reduction: rows=%lld too many", (long long)rows);
    switch (t) {
    case PS_CU_F32: return red_launch<float>(c, op, rows, cols, x, gamma, beta, y, e);
    case PS_CU_F64: return red_launch<double>(c, op, rows, cols, x, gamma, beta, y, e);
    case PS_CU_F16: return red_launch<__half>(c, op, rows, cols, x, gamma, beta, y, e);
    case PS_CU_BF16: return red_launch<__nv_bfloat16>(c, op, rows, cols, x, gamma, beta, y, e);
    default:
        return ps_errf(e, PS_EINPUT, "reduction: dtype %s not supported", ps_cu_dtype_name(t));
    }
}

// ------------------------------------------------------------------ attention
//
// One block = 8 warps = up to 8 consecutive queries of one (batch, head),
// and one range of keys (a split).  K and V are staged through shared
// memory 32 keys at a time, so every key read from device memory serves 8
// queries; each lane scores one key of the tile, then the warp folds the
// tile into its running (max, sum, output) — the online softmax of
// FlashAttention.  With few queries and many keys (decode) the keys are
// split over several blocks whose partial (max, sum, output) a second kernel
// merges.



enum { ATT_WARPS = 8, ATT_TK = 32 };

template <typename T, int DPL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    k_attn(const T *__restrict__ Q, const T *__restrict__ K, const T *__restrict__ V,
           T *__restrict__ O, float *__restrict__ part, const uint8_t *__restrict__ mask,
           int mask_kind, int64_t bh_count, int64_t sq, int64_t skv, int d, float scale,
           int qchunks, int nsplit, int64_t keys_per_split)
{
    extern __shared__ float sm[];
    float *Ks = sm;                    // [ATT_TK][d + 1]: +1 spreads the lanes' rows over banks
    float *Vs = Ks + ATT_TK * (d + 1); // [ATT_TK][d]
    float *qs = Vs + ATT_TK * d;       // [ATT_WARPS][d], pre-scaled
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t bh = blockIdx.x / qchunks;
    const int64_t q0 = (int64_t)(blockIdx.x % qchunks) * ATT_WARPS;
    const int split = blockIdx.y;
    if (bh >= bh_count)
        return;
    const int64_t qi = q0 + warp;
    const bool active = qi < sq;
    const size_t qbase = ((size_t)bh * sq) * d, kbase = ((size_t)bh * skv) * d;
    const int64_t offset = skv - sq; // query i sits at key position offset + i

    for (int t = lane; t < d; t += 32)
        qs[warp * d + t] = active ? (float)ld<float>(Q, qbase + (size_t)qi * d + t) * scale : 0.f;

    int64_t k0 = (int64_t)split * keys_per_split;
    int64_t k1 = k0 + keys_per_split < skv ? k0 + keys_per_split : skv;
    if (mask_kind == PS_MASK_CAUSAL) {
        int64_t qmax = q0 + ATT_WARPS - 1 < sq - 1 ? q0 + ATT_WARPS - 1 : sq - 1;
        if (offset + qmax + 1 < k1)
            k1 = offset + qmax + 1;
    }

    float m = -INFINITY, l = 0.f, acc[DPL];
#pragma unroll
    for (int r = 0; r < DPL; r++)
        acc[r] = 0.f;

    for (int64_t kt = k0; kt < k1; kt += ATT_TK) {
        __syncthreads(); // the previous tile is no longer read (and qs is written)
        for (int idx = threadIdx.x; idx < ATT_TK * d; idx += blockDim.x) {
            int jj = idx / d, t = idx - jj * d;
            int64_t j = kt + jj;
            float kv = 0.f, vv = 0.f;
            if (j < k1) {
                kv = ld<float>(K, kbase + (size_t)j * d + t);
                vv = ld<float>(V, kbase + (size_t)j * d + t);
            }
            Ks[jj * (d + 1) + t] = kv;
            Vs[jj * d + t] = vv;
        }
        __syncthreads();
        if (!active)
            continue;
        const int64_t j = kt + lane;
        bool ok = j < k1;
        if (ok && mask_kind == PS_MASK_CAUSAL)
            ok = j <= offset + qi;
        else if (ok && mask_kind == PS_MASK_TREE)
            ok = mask[(size_t)qi * skv + j] != 0;
        float s = -INFINITY;
        if (ok) {
            const float *kr = Ks + lane * (d + 1), *qr = qs + warp * d;
            float a0 = 0.f, a1 = 0.f;
            int t = 0;
            for (; t + 1 < d; t += 2) {
                a0 += qr[t] * kr[t];
                a1 += qr[t + 1] * kr[t + 1];
            }
            if (t < d)
                a0 += qr[t] * kr[t];
            s = a0 + a1;
        }
        float tm = warp_max(s);
        if (tm == -INFINITY)
            continue; // nothing visible in this tile (uniform across the warp)
        float mn = fmaxf(m, tm);
        float corr = expf(m - mn); // m = -inf → 0
        float p = ok ? expf(s - mn) : 0.f;
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int r = 0; r < DPL; r++)
            acc[r] *= corr;
        int nk = (int)(k1 - kt < ATT_TK ? k1 - kt : ATT_TK);
        for (int jj = 0; jj < nk; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
            if (pj == 0.f)
                continue; // uniform: pj is the same in every lane
            const float *vr = Vs + jj * d;
#pragma unroll
            for (int r = 0; r < DPL; r++) {
                int t = lane + 32 * r;
                if (t < d)
                    acc[r] += pj * vr[t];
            }
        }
        m = mn;
    }
    if (!active)
        return;
    if (nsplit == 1) {
        float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
        for (int r = 0; r < DPL; r++) {
            int t = lane + 32 * r;
            if (t < d)
                st(O, qbase + (size_t)qi * d + t, acc[r] * inv);
        }
    } else {
        float *pp = part + (((size_t)bh * sq + qi) * nsplit + split) * (size_t)(d + 2);
        if (lane == 0) {
            pp[0] = m;
            pp[1] = l;
        }
#pragma unroll
        for (int r = 0; r < DPL; r++) {
            int t = lane + 32 * r;
            if (t < d)
                pp[2 + t] = acc[r];
        }
    }
}

// One warp per (batch·head, query): merge the splits' partial softmaxes.
template <typename T>
__global__ void k_attn_merge(const float *__restrict__ part, T *__restrict__ O, int64_t rows,
                             int d, int nsplit)
{
    int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const float *pr = part + (size_t)row * nsplit * (d + 2);
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++)
        if (pr[s * (d + 2) + 1] > 0.f)
            M = fmaxf(M, pr[s * (d + 2)]);
    float L = 0.f;
    for (int s = 0; s < nsplit; s++) {
        float ls = pr[s * (d + 2) + 1];
        if (ls > 0.f)
            L += ls * expf(pr[s * (d + 2)] - M);
    }
    float inv = L > 0.f ? 1.f / L : 0.f;
    for (int t = lane; t < d; t += 32) {
        float o = 0.f;
        for (int s = 0; s < nsplit; s++) {
            const float *ps = pr + s * (d + 2);
            if (ps[1] > 0.f)
                o += ps[2 + t] * expf(ps[0] - M);
        }
        st(O, (size_t)row * d + t, o * inv);
    }
}

template <typename T, int DPL>
static int attn_launch(ps_cuda_ctx *c, int64_t bh, int64_t sq, int64_t skv, int d, const T *q,
                       const T *k, const T *v, int mk, const uint8_t *mask, T *o, ps_err *e)
{
    const int qchunks = (int)((sq + ATT_WARPS - 1) / ATT_WARPS);
    const int64_t base_blocks = bh * qchunks;
    if (base_blocks > 0x7fffffffLL)
        return ps_errf(e, PS_EINPUT, "attention: b*h*ceil(sq/8) = %lld blocks is too many",
                       (long long)base_blocks);
    // Split the keys when the grid would not fill the device twice over.
    int nsplit = 1;
    int64_t kps = skv;
    if (base_blocks < 2LL * c->sm_count && skv > 4 * ATT_TK) {
        int64_t want = (2LL * c->sm_count + base_blocks - 1) / base_blocks;
        int64_t most = (skv + 4 * ATT_TK - 1) / (4 * ATT_TK); // >= 128 keys per split
        if (want > most)
            want = most;
        if (want > 1) {
            kps = (skv + want - 1) / want;
            kps = (kps + ATT_TK - 1) / ATT_TK * ATT_TK;
            nsplit = (int)((skv + kps - 1) / kps);
        }
    }
    float *part = NULL;
    if (nsplit > 1) {
        part = (float *)ps_cuda_ctx_scratch(
            c, (size_t)bh * sq * nsplit * (size_t)(d + 2) * sizeof(float), e);
        if (!part)
            return PS_ERUN;
    }
    size_t smem = ((size_t)ATT_TK * (d + 1) + (size_t)ATT_TK * d + (size_t)ATT_WARPS * d) *
                  sizeof(float);
    if (smem > 48 * 1024) {
        if (smem > c->smem_optin)
            return ps_errf(e, PS_EINPUT, "attention: d=%d needs %zu B of shared memory (max %zu)",
                           d, smem, c->smem_optin);
        PS_CU_TRY(cudaFuncSetAttribute(k_attn<T, DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem),
                  e);
    }
    dim3 grid((unsigned)base_blocks, (unsigned)nsplit);
    float scale = 1.0f / sqrtf((float)d);
    k_attn<T, DPL><<<grid, ATT_WARPS * 32, smem, c->stream>>>(q, k, v, o, part, mask, mk, bh, sq,
                                                              skv, d, scale, qchunks, nsplit, kps);
    int rc = ps_cu_launched(e, "k_attn");
    if (rc || nsplit == 1)
        return rc;
    int64_t rows = bh * sq;
    k_attn_merge<T><<<(unsigned)((rows + 7) / 8), 256, 0, c->stream>>>(part, o, rows, d, nsplit);
    return ps_cu_launched(e, "k_attn_merge");
}

template <typename T>
static int attn_dispatch(ps_cuda_ctx *c, int64_t bh, int64_t sq, int64_t skv, int d,
                         const void *q, const void *k, const void *v, int mk, const uint8_t *mask,
                         void *o, ps_err *e)
{
    const T *Q = (const T *)q, *K = (const T *)k, *V = (const T *)v;
    T *O = (T *)o;
    if (d <= 32)
        return attn_launch<T, 1>(c, bh, sq, skv, d, Q, K, V, mk, mask, O, e);
    if (d <= 64)
        return attn_launch<T, 2>(c, bh, sq, skv, d, Q, K, V, mk, mask, O, e);
    if (d <= 128)
        return attn_launch<T, 4>(c, bh, sq, skv, d, Q, K, V, mk, mask, O, e);
    return attn_launch<T, 8>(c, bh, sq, skv, d, Q, K, V, mk, mask, O, e);
}

extern "C" int ps_cuda_attention(ps_cuda_ctx *c, ps_cu_dtype t, int64_t b, int64_t h, int64_t sq,
                                 int64_t skv, int64_t d, const void *q, const void *k,
                                 const void *v, ps_mask_kind mask_kind, const uint8_t *mask,
                                 void *o, ps_err *e)
{
    if (b < 1 || h < 1 || sq < 1 || skv < 1 || d < 1)
        return ps_errf(e, PS_EINPUT, "attention: every dimension must be >= 1");
    if (d > 256)
        return ps_errf(e, PS_EINPUT, "attention: head dim d=%lld > 256 is not supported",
                       (long long)d);
    if ((unsigned)mask_kind > PS_MASK_TREE)
        return ps_errf(e, PS_EINPUT, "attention: bad mask kind %d", (int)mask_kind);
    if (mask_kind == PS_MASK_TREE && !mask)
        return ps_errf(e, PS_EINPUT, "attention: a tree mask needs the mask buffer");
    int id = (int)d;
    switch (t) {
    case PS_CU_F32:
        return attn_dispatch<float>(c, b * h, sq, skv, id, q, k, v, mask_kind, mask, o, e);
    case PS_CU_F16:
        return attn_dispatch<__half>(c, b * h, sq, skv, id, q, k, v, mask_kind, mask, o, e);
    case PS_CU_BF16:
        return attn_dispatch<__nv_bfloat16>(c, b * h, sq, skv, id, q, k, v, mask_kind, mask, o, e);
    default:
        return ps_errf(e, PS_EINPUT, "attention: dtype %s not supported", ps_cu_dtype_name(t));
    }
}

// ------------------------------------------------------------------ embedding-bag

// One block per bag; threads across the embedding dimension, so each gathered
// row is read with coalesced loads.  An out-of-range index poisons its bag
// with NaN rather than reading outside the table.
template <typename T>
__global__ void k_embag(int64_t rows, int64_t dim, int64_t bag, const T *__restrict__ table,
                        const int64_t *__restrict__ idx, int mean, T *__restrict__ out)
{
    const int64_t i = blockIdx.x;
    const int64_t *bi = idx + (size_t)i * bag;
    for (int64_t t = threadIdx.x; t < dim; t += blockDim.x) {
        float s = 0.f;
        for (int64_t j = 0; j < bag; j++) {
            int64_t r = bi[j];
            s += (r >= 0 && r < rows) ? ld<float>(table, (size_t)r * dim + t) : NAN;
        }
        if (mean)
            s /= (float)bag;
        st(out, (size_t)i * dim + t, s);
    }
}

extern "C" int ps_cuda_embedding_bag(ps_cuda_ctx *c, ps_cu_dtype t, int64_t rows, int64_t dim,
                                     int64_t bag, int64_t batch, const void *table,
                                     const int64_t *idx, int mean, void *out, ps_err *e)
{
    if (rows < 1 || dim < 1 || bag < 1 || batch < 1)
        return ps_errf(e, PS_EINPUT, "embedding_bag: every dimension must be >= 1");
    if (batch > 0x7fffffffLL)
        return ps_errf(e, PS_EINPUT, "embedding_bag: batch=%lld too large", (long long)batch);
    unsigned threads = dim >= 256 ? 256 : (unsigned)((dim + 31) / 32 * 32);
    switch (t) {
    case PS_CU_F32:
        k_embag<float><<<(unsigned)batch, threads, 0, c->stream>>>(
            rows, dim, bag, (const float *)table, idx, mean, (float *)out);
        break;
    case PS_CU_F16:
        k_embag<__half><<<(unsigned)batch, threads, 0, c->stream>>>(
            rows, dim, bag, (const __half *)table, idx, mean, (__half *)out);
        break;
    case PS_CU_BF16:
        k_embag<__nv_bfloat16><<<(unsigned)batch, threads, 0, c->stream>>>(
            rows, dim, bag, (const __nv_bfloat16 *)table, idx, mean, (__nv_bfloat16 *)out);
        break;
    default:
        return ps_errf(e, PS_EINPUT, "embedding_bag: dtype %s not supported",
                       ps_cu_dtype_name(t));
    }
    return ps_cu_launched(e, "k_embag");
}
