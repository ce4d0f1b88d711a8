// The tensor runtime's CUDA kernels (kernels/cuda_rt.h): simple, correct
// kernels first — grid-stride loops, int64 indexing, fp32 arithmetic (fp64
// for the loss and sum reductions), cuBLAS sgemm for every matrix product
// (default math mode: no TF32), im2col / col2im for convolutions.  Every
// launch and library call is checked; nothing here waits except the
// functions that return a host number.
#include "kernels/cuda_rt.h"

#include <climits>
#include <cmath>

#include "kernels/cuda_ctx_impl.h"

#define NT 256 // threads per block of the 1-D kernels

// Caps on grid sizes (grid-stride loops cover the rest) and on the column
// buffer of a convolution chunk; overridable so that a test build can force
// the multi-pass paths with tiny inputs.
#ifndef PS_RTC_GRID_CAP
#define PS_RTC_GRID_CAP (65535 * 8)
#endif
#ifndef PS_RTC_ROWS_CAP
#define PS_RTC_ROWS_CAP (1 << 20)
#endif
#ifndef PS_RTC_CHUNK_BYTES
#define PS_RTC_CHUNK_BYTES ((int64_t)64 << 20)
#endif

static unsigned grid1(int64_t n)
{
    int64_t g = (n + NT - 1) / NT;
    if (g < 1)
        g = 1;
    if (g > PS_RTC_GRID_CAP)
        g = PS_RTC_GRID_CAP;
    return (unsigned)g;
}

static unsigned grid_rows(int64_t rows)
{
    if (rows < 1)
        return 1;
    return (unsigned)(rows > PS_RTC_ROWS_CAP ? PS_RTC_ROWS_CAP : rows);
}

#define LAUNCHED(name)                                                                            \
    do {                                                                                          \
        int r_ = ps_cu_launched(e, name);                                                         \
        if (r_)                                                                                   \
            return r_;                                                                            \
    } while (0)

#define TRY(x)                                                                                    \
    do {                                                                                          \
        int r_ = (x);                                                                             \
        if (r_)                                                                                   \
            return r_;                                                                            \
    } while (0)

#define GSTRIDE(i, n)                                                                             \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                     \
         i += (int64_t)gridDim.x * blockDim.x)

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
// gets the result.  sh: 32 elements of shared memory.  Every thread of the
// block must call it.
template <typename T> __device__ T block_sum(T v, T *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads(); // sh may still be read from a previous call
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        int nw = (int)(blockDim.x >> 5);
        v = lane < nw ? sh[lane] : (T)0;
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0)
            sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        int nw = (int)(blockDim.x >> 5);
        v = lane < nw ? sh[lane] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1)
            v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0)
            sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

// ------------------------------------------------------------------ elementwise

__global__ void k_fill(float *y, int64_t n, float v)
{
    GSTRIDE(i, n) y[i] = v;
}

__global__ void k_add(int64_t n, const float *a, const float *b, float *y)
{
    GSTRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ void k_axpy(int64_t n, float alpha, const float *x, float *y)
{
    GSTRIDE(i, n) y[i] += alpha * x[i];
}

__global__ void k_scale(int64_t n, float *y, float alpha)
{
    GSTRIDE(i, n) y[i] *= alpha;
}

__global__ void k_sum(int64_t n, const float *x, double *acc)
{
    __shared__ double sh[32];
    double s = 0;
    GSTRIDE(i, n) s += (double)x[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
        atomicAdd(acc, s);
}

extern "C" int ps_rtc_fill(ps_cuda_ctx *c, float *y, int64_t n, float v, ps_err *e)
{
    k_fill<<<grid1(n), NT, 0, c->stream>>>(y, n, v);
    LAUNCHED("k_fill");
    return 0;
}

extern "C" int ps_rtc_add(ps_cuda_ctx *c, int64_t n, const float *a, const float *b, float *y,
                          ps_err *e)
{
    k_add<<<grid1(n), NT, 0, c->stream>>>(n, a, b, y);
    LAUNCHED("k_add");
    return 0;
}

extern "C" int ps_rtc_axpy(ps_cuda_ctx *c, int64_t n, float alpha, const float *x, float *y,
                           ps_err *e)
{
    k_axpy<<<grid1(n), NT, 0, c->stream>>>(n, alpha, x, y);
    LAUNCHED("k_axpy");
    return 0;
}

extern "C" int ps_rtc_scale(ps_cuda_ctx *c, int64_t n, float *y, float alpha, ps_err *e)
{
    k_scale<<<grid1(n), NT, 0, c->stream>>>(n, y, alpha);
    LAUNCHED("k_scale");
    return 0;
}

// Zeroed fp64 accumulators in the scratch, summed on the device, read back.
static double *acc_scratch(ps_cuda_ctx *c, int count, ps_err *e)
{
    double *acc = (double *)ps_cuda_ctx_scratch(c, sizeof(double) * count, e);
    if (!acc)
        return NULL;
    cudaError_t r = cudaMemsetAsync(acc, 0, sizeof(double) * count, c->stream);
    if (r != cudaSuccess) {
        ps_cu_fail(e, r, "cudaMemsetAsync(accumulators)");
        return NULL;
    }
    return acc;
}

static int acc_read(ps_cuda_ctx *c, const double *acc, double *host, int count, ps_err *e)
{
    PS_CU_TRY(cudaMemcpyAsync(host, acc, sizeof(double) * count, cudaMemcpyDeviceToHost,
                              c->stream),
              e);
    PS_CU_TRY(cudaStreamSynchronize(c->stream), e);
    return 0;
}

extern "C" int ps_rtc_sum(ps_cuda_ctx *c, int64_t n, const float *x, double *out, ps_err *e)
{
    double *acc = acc_scratch(c, 1, e);
    if (!acc)
        return PS_ERUN;
    k_sum<<<grid1(n) > 1024 ? 1024u : grid1(n), NT, 0, c->stream>>>(n, x, acc);
    LAUNCHED("k_sum");
    return acc_read(c, acc, out, 1, e);
}

extern "C" int ps_rtc_copy_cols(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *src,
                                int64_t src_ld, float *dst, int64_t dst_ld, ps_err *e)
{
    if (rows < 1 || cols < 1)
        return 0;
    PS_CU_TRY(cudaMemcpy2DAsync(dst, (size_t)dst_ld * sizeof(float), src,
                                (size_t)src_ld * sizeof(float), (size_t)cols * sizeof(float),
                                (size_t)rows, cudaMemcpyDeviceToDevice, c->stream),
              e);
    return 0;
}

// to_heads: y [B, H, T, D] from x [B, T, H, D]; else y [B, T, H, D] from x
// [B, H, T, D].  One thread per output element.
__global__ void k_heads(int to_heads, int64_t B, int64_t T, int64_t H, int64_t D, const float *x,
                        float *y)
{
    int64_t n = B * T * H * D;
    GSTRIDE(i, n)
    {
        int64_t d = i % D, r = i / D;
        if (to_heads) { // i = ((b H + h) T + t) D + d
            int64_t t = r % T;
            r /= T;
            int64_t h = r % H, b = r / H;
            y[i] = x[((b * T + t) * H + h) * D + d];
        } else { // i = ((b T + t) H + h) D + d
            int64_t h = r % H;
            r /= H;
            int64_t t = r % T, b = r / T;
            y[i] = x[((b * H + h) * T + t) * D + d];
        }
    }
}

extern "C" int ps_rtc_heads(ps_cuda_ctx *c, int to_heads, int64_t b, int64_t t, int64_t h,
                            int64_t d, const float *x, float *y, ps_err *e)
{
    k_heads<<<grid1(b * t * h * d), NT, 0, c->stream>>>(to_heads, b, t, h, d, x, y);
    LAUNCHED("k_heads");
    return 0;
}

// ------------------------------------------------------------------ GEMM

// Row-major C = alpha op(A) op(B) + beta C is the column-major C^T =
// op(B)^T op(A)^T: pass B first, swap m and n (see kernels/cuda_blas.cu).
extern "C" int ps_rtc_gemm(ps_cuda_ctx *c, int ta, int tb, int64_t batch, int64_t m, int64_t n,
                           int64_t k, float alpha, const float *a, int64_t lda, int64_t sa,
                           const float *b, int64_t ldb, int64_t sb, float beta, float *cm,
                           int64_t ldc, int64_t sc, ps_err *e)
{
    if (batch < 1 || m < 1 || n < 1 || k < 1)
        return ps_errf(e, PS_EINPUT, "gemm: empty dimension (batch %lld, m %lld, n %lld, k %lld)",
                       (long long)batch, (long long)m, (long long)n, (long long)k);
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX ||
        ldc > INT_MAX || batch > INT_MAX)
        return ps_errf(e, PS_EINPUT, "gemm: a dimension exceeds 2^31-1");
    cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1) {
        PS_CUBLAS_TRY(cublasSgemm(c->blas, opB, opA, (int)n, (int)m, (int)k, &alpha, b, (int)ldb,
                                  a, (int)lda, &beta, cm, (int)ldc),
                      e);
    } else {
        PS_CUBLAS_TRY(cublasSgemmStridedBatched(c->blas, opB, opA, (int)n, (int)m, (int)k, &alpha,
                                                b, (int)ldb, (long long)sb, a, (int)lda,
                                                (long long)sa, &beta, cm, (int)ldc, (long long)sc,
                                                (int)batch),
                      e);
    }
    LAUNCHED("cublasSgemm");
    return 0;
}

// y[i, j] += b[(i / inner) % ch] over y [outer, ch, inner] (inner 1: rows).
__global__ void k_bias(int64_t n, int64_t ch, int64_t inner, const float *b, float *y)
{
    GSTRIDE(i, n) y[i] += b[(i / inner) % ch];
}

static int add_bias(ps_cuda_ctx *c, int64_t n, int64_t ch, int64_t inner, const float *b, float *y,
                    ps_err *e)
{
    k_bias<<<grid1(n), NT, 0, c->stream>>>(n, ch, inner, b, y);
    LAUNCHED("k_bias");
    return 0;
}

// out[j] += sum_i x[i, j] over x [rows, cols]: 32 columns x 8 row stripes.
__global__ void k_colsum(int64_t rows, int64_t cols, const float *x, float *out)
{
    __shared__ float sh[8][33];
    int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    float s = 0;
    if (j < cols)
        for (int64_t i = threadIdx.y; i < rows; i += 8)
            s += x[i * cols + j];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        float t = 0;
        for (int y = 0; y < 8; y++)
            t += sh[y][threadIdx.x];
        out[j] += t;
    }
}

static int colsum_acc(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x, float *out,
                      ps_err *e)
{
    dim3 blk(32, 8);
    k_colsum<<<(unsigned)((cols + 31) / 32), blk, 0, c->stream>>>(rows, cols, x, out);
    LAUNCHED("k_colsum");
    return 0;
}

// out[k] += sum over n, p of x[n, k, p] (x [n, ch, inner]): one block per channel.
__global__ void k_chansum(int64_t n, int64_t ch, int64_t inner, const float *x, float *out)
{
    __shared__ float sh[32];
    for (int64_t k = blockIdx.x; k < ch; k += gridDim.x) {
        float s = 0;
        for (int64_t j = threadIdx.x; j < n * inner; j += blockDim.x) {
            int64_t nn = j / inner, p = j % inner;
            s += x[(nn * ch + k) * inner + p];
        }
        s = block_sum(s, sh);
        if (threadIdx.x == 0)
            out[k] += s;
    }
}

static int chansum_acc(ps_cuda_ctx *c, int64_t n, int64_t ch, int64_t inner, const float *x,
                       float *out, ps_err *e)
{
    k_chansum<<<grid_rows(ch), NT, 0, c->stream>>>(n, ch, inner, x, out);
    LAUNCHED("k_chansum");
    return 0;
}

extern "C" int ps_rtc_linear_fwd(ps_cuda_ctx *c, int64_t n, int64_t in, int64_t out,
                                 const float *x, const float *w, const float *b, float *y,
                                 ps_err *e)
{
    // y [n, out] = x [n, in] · w^T (w stored [out, in])
    TRY(ps_rtc_gemm(c, 0, 1, 1, n, out, in, 1.0f, x, in, 0, w, in, 0, 0.0f, y, out, 0, e));
    if (b)
        TRY(add_bias(c, n * out, out, 1, b, y, e));
    return 0;
}

extern "C" int ps_rtc_linear_bwd(ps_cuda_ctx *c, int64_t n, int64_t in, int64_t out,
                                 const float *x, const float *w, const float *dy, float *dx,
                                 float *dw, float *db, ps_err *e)
{
    if (dx) // dx [n, in] = dy [n, out] · w [out, in]
        TRY(ps_rtc_gemm(c, 0, 0, 1, n, in, out, 1.0f, dy, out, 0, w, in, 0, 0.0f, dx, in, 0, e));
    if (dw) // dw [out, in] += dy^T (dy stored [n, out]) · x [n, in]
        TRY(ps_rtc_gemm(c, 1, 0, 1, out, in, n, 1.0f, dy, out, 0, x, in, 0, 1.0f, dw, in, 0, e));
    if (db)
        TRY(colsum_acc(c, n, out, dy, db, e));
    return 0;
}

// ------------------------------------------------------------------ convolution

// col [C R S, cnt P] (P = OH OW; column nn P + p) from cnt images [cnt, C, H, W].
__global__ void k_im2col(ps_rtc_conv g, int64_t cnt, const float *img, float *col)
{
    int64_t P = g.oh * g.ow, L = cnt * P, n = g.c * g.r * g.s * L;
    GSTRIDE(i, n)
    {
        int64_t crs = i / L, rem = i % L;
        int64_t nn = rem / P, p = rem % P;
        int64_t cc = crs / (g.r * g.s), rs = crs % (g.r * g.s);
        int64_t r = rs / g.s, s = rs % g.s;
        int64_t oh = p / g.ow, ow = p % g.ow;
        int64_t ih = oh * g.stride - g.pad + r, iw = ow * g.stride - g.pad + s;
        float v = 0.0f;
        if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
            v = img[((nn * g.c + cc) * g.h + ih) * g.w + iw];
        col[i] = v;
    }
}

// The adjoint: img [cnt, C, H, W] = sum of the col entries that read each
// pixel (a gather: one thread per pixel, no atomics; overwrites img).
__global__ void k_col2im(ps_rtc_conv g, int64_t cnt, const float *col, float *img)
{
    int64_t P = g.oh * g.ow, L = cnt * P, n = cnt * g.c * g.h * g.w;
    GSTRIDE(i, n)
    {
        int64_t x = i % g.w, r0 = i / g.w;
        int64_t y = r0 % g.h;
        r0 /= g.h;
        int64_t cc = r0 % g.c, nn = r0 / g.c;
        float s = 0.0f;
        for (int64_t r = 0; r < g.r; r++) {
            int64_t th = y + g.pad - r;
            if (th < 0 || th % g.stride)
                continue;
            int64_t oh = th / g.stride;
            if (oh >= g.oh)
                continue;
            for (int64_t q = 0; q < g.s; q++) {
                int64_t tw = x + g.pad - q;
                if (tw < 0 || tw % g.stride)
                    continue;
                int64_t ow = tw / g.stride;
                if (ow >= g.ow)
                    continue;
                s += col[((cc * g.r + r) * g.s + q) * L + nn * P + oh * g.ow + ow];
            }
        }
        img[i] = s;
    }
}

// out [cnt, K, P] -> outT [K, cnt P].
__global__ void k_chan_major(int64_t cnt, int64_t K, int64_t P, const float *in, float *out)
{
    int64_t L = cnt * P, n = K * L;
    GSTRIDE(i, n)
    {
        int64_t kk = i / L, rem = i % L;
        int64_t nn = rem / P, p = rem % P;
        out[i] = in[(nn * K + kk) * P + p];
    }
}

// Images per chunk so that the chunk's buffers (per_image floats each) stay
// under 64 MiB (at least one image).
static int64_t chunk_of(int64_t n, int64_t per_image)
{
    int64_t lim = PS_RTC_CHUNK_BYTES / 4;
    int64_t nb = per_image > 0 ? lim / per_image : n;
    if (nb < 1)
        nb = 1;
    if (nb > n)
        nb = n;
    return nb;
}

// out [n, K, P] = W [K, C R S] · im2col(img_n).
static int conv_im2col_gemm(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *img,
                            const float *W, float *out, ps_err *e)
{
    int64_t P = g->oh * g->ow, CRS = g->c * g->r * g->s, img_sz = g->c * g->h * g->w;
    int64_t nb = chunk_of(g->n, CRS * P);
    float *col = (float *)ps_cuda_ctx_scratch(c, sizeof(float) * (size_t)(CRS * nb * P), e);
    if (!col)
        return PS_ERUN;
    for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
        int64_t cnt = g->n - n0 < nb ? g->n - n0 : nb;
        k_im2col<<<grid1(CRS * cnt * P), NT, 0, c->stream>>>(*g, cnt, img + n0 * img_sz, col);
        LAUNCHED("k_im2col");
        TRY(ps_rtc_gemm(c, 0, 0, cnt, g->k, P, CRS, 1.0f, W, CRS, 0, col, cnt * P, P, 0.0f,
                        out + n0 * g->k * P, P, g->k * P, e));
    }
    return 0;
}

// img = col2im(W^T · in_n), in [n, K, P], W [K, C R S]; img overwritten.
static int conv_gemm_col2im(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *in,
                            const float *W, float *img, ps_err *e)
{
    int64_t P = g->oh * g->ow, CRS = g->c * g->r * g->s, img_sz = g->c * g->h * g->w;
    int64_t nb = chunk_of(g->n, CRS * P);
    float *col = (float *)ps_cuda_ctx_scratch(c, sizeof(float) * (size_t)(CRS * nb * P), e);
    if (!col)
        return PS_ERUN;
    for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
        int64_t cnt = g->n - n0 < nb ? g->n - n0 : nb;
        // col[:, nn P + p] = W^T [CRS, K] · in_nn [K, P]
        TRY(ps_rtc_gemm(c, 1, 0, cnt, CRS, P, g->k, 1.0f, W, CRS, 0, in + n0 * g->k * P, P,
                        g->k * P, 0.0f, col, cnt * P, P, e));
        k_col2im<<<grid1(cnt * img_sz), NT, 0, c->stream>>>(*g, cnt, col, img + n0 * img_sz);
        LAUNCHED("k_col2im");
    }
    return 0;
}

// dW [K, C R S] += sum_n other_n [K, P] · im2col(img_n)^T.
static int conv_dw(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *img, const float *other,
                   float *dW, ps_err *e)
{
    int64_t P = g->oh * g->ow, CRS = g->c * g->r * g->s, img_sz = g->c * g->h * g->w;
    int64_t nb = chunk_of(g->n, (CRS + g->k) * P);
    size_t bytes = sizeof(float) * (size_t)((CRS + g->k) * nb * P);
    float *col = (float *)ps_cuda_ctx_scratch(c, bytes, e);
    if (!col)
        return PS_ERUN;
    float *oth = col + CRS * nb * P;
    for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
        int64_t cnt = g->n - n0 < nb ? g->n - n0 : nb;
        k_im2col<<<grid1(CRS * cnt * P), NT, 0, c->stream>>>(*g, cnt, img + n0 * img_sz, col);
        LAUNCHED("k_im2col");
        k_chan_major<<<grid1(g->k * cnt * P), NT, 0, c->stream>>>(cnt, g->k, P,
                                                                   other + n0 * g->k * P, oth);
        LAUNCHED("k_chan_major");
        // dW [K, CRS] += oth [K, cnt P] · col^T (col stored [CRS, cnt P])
        TRY(ps_rtc_gemm(c, 0, 1, 1, g->k, CRS, cnt * P, 1.0f, oth, cnt * P, 0, col, cnt * P, 0,
                        1.0f, dW, CRS, 0, e));
    }
    return 0;
}

extern "C" int ps_rtc_conv2d_fwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x,
                                 const float *w, const float *b, float *y, ps_err *e)
{
    TRY(conv_im2col_gemm(c, g, x, w, y, e));
    if (b)
        TRY(add_bias(c, g->n * g->k * g->oh * g->ow, g->k, g->oh * g->ow, b, y, e));
    return 0;
}

extern "C" int ps_rtc_conv2d_bwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x,
                                 const float *w, const float *dy, float *dx, float *dw, float *db,
                                 ps_err *e)
{
    if (dx)
        TRY(conv_gemm_col2im(c, g, dy, w, dx, e));
    if (dw)
        TRY(conv_dw(c, g, x, dy, dw, e));
    if (db)
        TRY(chansum_acc(c, g->n, g->k, g->oh * g->ow, dy, db, e));
    return 0;
}

extern "C" int ps_rtc_convt2d_fwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x,
                                  const float *w, const float *b, float *y, ps_err *e)
{
    TRY(conv_gemm_col2im(c, g, x, w, y, e));
    if (b)
        TRY(add_bias(c, g->n * g->c * g->h * g->w, g->c, g->h * g->w, b, y, e));
    return 0;
}

extern "C" int ps_rtc_convt2d_bwd(ps_cuda_ctx *c, const ps_rtc_conv *g, const float *x,
                                  const float *w, const float *dy, float *dx, float *dw,
                                  float *db, ps_err *e)
{
    if (dx)
        TRY(conv_im2col_gemm(c, g, dy, w, dx, e));
    if (dw)
        TRY(conv_dw(c, g, dy, x, dw, e));
    if (db)
        TRY(chansum_acc(c, g->n, g->c, g->h * g->w, dy, db, e));
    return 0;
}

// ------------------------------------------------------------------ pooling

__global__ void k_maxpool_fwd(int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                              int64_t ow, const float *x, float *y, int32_t *am)
{
    int64_t n = nc * oh * ow;
    GSTRIDE(i, n)
    {
        int64_t ox = i % ow, r0 = i / ow;
        int64_t oy = r0 % oh, pl = r0 / oh;
        const float *xp = x + pl * h * w;
        int64_t y0 = oy * s, x0 = ox * s;
        int64_t best_i = y0 * w + x0;
        float best = xp[best_i];
        for (int r = 0; r < k; r++)
            for (int q = 0; q < k; q++) {
                int64_t j = (y0 + r) * w + x0 + q;
                float v = xp[j];
                if (v > best) {
                    best = v;
                    best_i = j;
                }
            }
        y[i] = best;
        am[i] = (int32_t)best_i;
    }
}

// Along one axis (no outputs, window k, stride s): the outputs lo..hi
// (inclusive; none when lo > hi) whose windows contain input position p.
__device__ __forceinline__ void pool_windows(int64_t p, int k, int s, int64_t no, int64_t *lo,
                                             int64_t *hi)
{
    *lo = p - k + 1 > 0 ? (p - k + 1 + s - 1) / s : 0;
    *hi = p / s < no - 1 ? p / s : no - 1;
}

// dx[p] = sum of dy over the windows containing p whose arg-max is p (a gather).
__global__ void k_maxpool_bwd(int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                              int64_t ow, const int32_t *am, const float *dy, float *dx)
{
    int64_t n = nc * h * w;
    GSTRIDE(i, n)
    {
        int64_t xx = i % w, r0 = i / w;
        int64_t yy = r0 % h, pl = r0 / h;
        int64_t self = yy * w + xx;
        int64_t oy_lo, oy_hi, ox_lo, ox_hi;
        pool_windows(yy, k, s, oh, &oy_lo, &oy_hi);
        pool_windows(xx, k, s, ow, &ox_lo, &ox_hi);
        float acc = 0.0f;
        for (int64_t oy = oy_lo; oy <= oy_hi; oy++)
            for (int64_t ox = ox_lo; ox <= ox_hi; ox++) {
                int64_t o = (pl * oh + oy) * ow + ox;
                if (am[o] == self)
                    acc += dy[o];
            }
        dx[i] = acc;
    }
}

__global__ void k_avgpool_fwd(int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                              int64_t ow, const float *x, float *y)
{
    int64_t n = nc * oh * ow;
    float inv = 1.0f / (float)(k * k);
    GSTRIDE(i, n)
    {
        int64_t ox = i % ow, r0 = i / ow;
        int64_t oy = r0 % oh, pl = r0 / oh;
        const float *xp = x + pl * h * w;
        float acc = 0.0f;
        for (int r = 0; r < k; r++)
            for (int q = 0; q < k; q++)
                acc += xp[(oy * s + r) * w + ox * s + q];
        y[i] = acc * inv;
    }
}

__global__ void k_avgpool_bwd(int k, int s, int64_t nc, int64_t h, int64_t w, int64_t oh,
                              int64_t ow, const float *dy, float *dx)
{
    int64_t n = nc * h * w;
    float inv = 1.0f / (float)(k * k);
    GSTRIDE(i, n)
    {
        int64_t xx = i % w, r0 = i / w;
        int64_t yy = r0 % h, pl = r0 / h;
        int64_t oy_lo, oy_hi, ox_lo, ox_hi;
        pool_windows(yy, k, s, oh, &oy_lo, &oy_hi);
        pool_windows(xx, k, s, ow, &ox_lo, &ox_hi);
        float acc = 0.0f;
        for (int64_t oy = oy_lo; oy <= oy_hi; oy++)
            for (int64_t ox = ox_lo; ox <= ox_hi; ox++)
                acc += dy[(pl * oh + oy) * ow + ox];
        dx[i] = acc * inv;
    }
}

extern "C" int ps_rtc_maxpool_fwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                                  int64_t oh, int64_t ow, const float *x, float *y,
                                  int32_t *argmax, ps_err *e)
{
    k_maxpool_fwd<<<grid1(nc * oh * ow), NT, 0, c->stream>>>(k, s, nc, h, w, oh, ow, x, y,
                                                             argmax);
    LAUNCHED("k_maxpool_fwd");
    return 0;
}

extern "C" int ps_rtc_maxpool_bwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                                  int64_t oh, int64_t ow, const int32_t *argmax, const float *dy,
                                  float *dx, ps_err *e)
{
    k_maxpool_bwd<<<grid1(nc * h * w), NT, 0, c->stream>>>(k, s, nc, h, w, oh, ow, argmax, dy,
                                                           dx);
    LAUNCHED("k_maxpool_bwd");
    return 0;
}

extern "C" int ps_rtc_avgpool_fwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                                  int64_t oh, int64_t ow, const float *x, float *y, ps_err *e)
{
    k_avgpool_fwd<<<grid1(nc * oh * ow), NT, 0, c->stream>>>(k, s, nc, h, w, oh, ow, x, y);
    LAUNCHED("k_avgpool_fwd");
    return 0;
}

extern "C" int ps_rtc_avgpool_bwd(ps_cuda_ctx *c, int k, int s, int64_t nc, int64_t h, int64_t w,
                                  int64_t oh, int64_t ow, const float *dy, float *dx, ps_err *e)
{
    k_avgpool_bwd<<<grid1(nc * h * w), NT, 0, c->stream>>>(k, s, nc, h, w, oh, ow, dy, dx);
    LAUNCHED("k_avgpool_bwd");
    return 0;
}

// ------------------------------------------------------------------ activations

__global__ void k_act_fwd(int act, float alpha, int64_t n, const float *x, float *y)
{
    GSTRIDE(i, n)
    {
        float v = x[i], r;
        switch (act) {
        case 0: r = v > 0.0f ? v : 0.0f; break;
        case 1: r = v > 0.0f ? v : alpha * v; break;
        case 2: r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case 3: r = tanhf(v); break;
        default: r = 1.0f / (1.0f + expf(-v)); break;
        }
        y[i] = r;
    }
}

// No __restrict__: dx may alias dy.
__global__ void k_act_bwd(int act, float alpha, int64_t n, const float *x, const float *y,
                          const float *dy, float *dx)
{
    GSTRIDE(i, n)
    {
        float g = dy[i], d;
        switch (act) {
        case 0: d = x[i] > 0.0f ? g : 0.0f; break;
        case 1: d = x[i] > 0.0f ? g : alpha * g; break;
        case 2: {
            float v = x[i];
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
            d = g * (cdf + v * pdf);
            break;
        }
        case 3: d = g * (1.0f - y[i] * y[i]); break;
        default: d = g * y[i] * (1.0f - y[i]); break;
        }
        dx[i] = d;
    }
}

extern "C" int ps_rtc_act_fwd(ps_cuda_ctx *c, int act, float alpha, int64_t n, const float *x,
                              float *y, ps_err *e)
{
    if (act < 0 || act > 4)
        return ps_errf(e, PS_EINPUT, "act_fwd: unknown activation %d", act);
    k_act_fwd<<<grid1(n), NT, 0, c->stream>>>(act, alpha, n, x, y);
    LAUNCHED("k_act_fwd");
    return 0;
}

extern "C" int ps_rtc_act_bwd(ps_cuda_ctx *c, int act, float alpha, int64_t n, const float *x,
                              const float *y, const float *dy, float *dx, ps_err *e)
{
    if (act < 0 || act > 4)
        return ps_errf(e, PS_EINPUT, "act_bwd: unknown activation %d", act);
    k_act_bwd<<<grid1(n), NT, 0, c->stream>>>(act, alpha, n, x, y, dy, dx);
    LAUNCHED("k_act_bwd");
    return 0;
}

// ------------------------------------------------------------------ layer norm

// One block per row: two passes for mean and (biased) variance.
__global__ void k_ln_fwd(int64_t rows, int64_t cols, const float *x, const float *gamma,
                         const float *beta, float eps, float *y, float *mean, float *rstd)
{
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * cols;
        float s = 0;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            s += xr[j];
        float mu = block_sum(s, sh) / (float)cols;
        float v = 0;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
            float d = xr[j] - mu;
            v += d * d;
        }
        float var = block_sum(v, sh) / (float)cols;
        float rs = 1.0f / sqrtf(var + eps);
        float *yr = y + r * cols;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
            float t = (xr[j] - mu) * rs;
            if (gamma)
                t *= gamma[j];
            if (beta)
                t += beta[j];
            yr[j] = t;
        }
        if (threadIdx.x == 0) {
            if (mean)
                mean[r] = mu;
            if (rstd)
                rstd[r] = rs;
        }
    }
}

// dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gamma.
__global__ void k_ln_bwd_dx(int64_t rows, int64_t cols, const float *x, const float *gamma,
                            const float *mean, const float *rstd, const float *dy, float *dx)
{
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float mu = mean[r], rs = rstd[r];
        float a = 0, b = 0;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
            float dh = dyr[j] * (gamma ? gamma[j] : 1.0f);
            a += dh;
            b += dh * (xr[j] - mu) * rs;
        }
        a = block_sum(a, sh) / (float)cols;
        b = block_sum(b, sh) / (float)cols;
        float *dxr = dx + r * cols;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
            float dh = dyr[j] * (gamma ? gamma[j] : 1.0f);
            float xh = (xr[j] - mu) * rs;
            dxr[j] = rs * (dh - a - xh * b);
        }
    }
}

// dgamma[j] += sum_r dy xhat, dbeta[j] += sum_r dy: 32 columns x 8 row stripes.
__global__ void k_ln_bwd_dgb(int64_t rows, int64_t cols, const float *x, const float *mean,
                             const float *rstd, const float *dy, float *dgamma, float *dbeta)
{
    __shared__ float sg[8][33], sb[8][33];
    int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    float g = 0, b = 0;
    if (j < cols)
        for (int64_t r = threadIdx.y; r < rows; r += 8) {
            float d = dy[r * cols + j];
            g += d * (x[r * cols + j] - mean[r]) * rstd[r];
            b += d;
        }
    sg[threadIdx.y][threadIdx.x] = g;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        float tg = 0, tb = 0;
        for (int y = 0; y < 8; y++) {
            tg += sg[y][threadIdx.x];
            tb += sb[y][threadIdx.x];
        }
        if (dgamma)
            dgamma[j] += tg;
        if (dbeta)
            dbeta[j] += tb;
    }
}

extern "C" int ps_rtc_layernorm_fwd(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x,
                                    const float *gamma, const float *beta, float eps, float *y,
                                    float *mean, float *rstd, ps_err *e)
{
    k_ln_fwd<<<grid_rows(rows), NT, 0, c->stream>>>(rows, cols, x, gamma, beta, eps, y, mean,
                                                     rstd);
    LAUNCHED("k_ln_fwd");
    return 0;
}

extern "C" int ps_rtc_layernorm_bwd(ps_cuda_ctx *c, int64_t rows, int64_t cols, const float *x,
                                    const float *gamma, const float *mean, const float *rstd,
                                    const float *dy, float *dx, float *dgamma, float *dbeta,
                                    ps_err *e)
{
    if (dx) {
        k_ln_bwd_dx<<<grid_rows(rows), NT, 0, c->stream>>>(rows, cols, x, gamma, mean, rstd, dy,
                                                            dx);
        LAUNCHED("k_ln_bwd_dx");
    }
    if (dgamma || dbeta) {
        dim3 blk(32, 8);
        k_ln_bwd_dgb<<<(unsigned)((cols + 31) / 32), blk, 0, c->stream>>>(rows, cols, x, mean,
                                                                          rstd, dy, dgamma, dbeta);
        LAUNCHED("k_ln_bwd_dgb");
    }
    return 0;
}

// ------------------------------------------------------------------ batch norm

// x [n, ch, hw]; element j of channel k: x[(j / hw * ch + k) * hw + j % hw].
__device__ __forceinline__ int64_t bn_at(int64_t j, int64_t k, int64_t ch, int64_t hw)
{
    return ((j / hw) * ch + k) * hw + j % hw;
}

// Training statistics, one block per channel; running stats updated.
__global__ void k_bn_stats(int64_t n, int64_t ch, int64_t hw, const float *x, float eps,
                           float momentum, float *rmean, float *rvar, float *mean, float *rstd)
{
    __shared__ float sh[32];
    int64_t cnt = n * hw;
    for (int64_t k = blockIdx.x; k < ch; k += gridDim.x) {
        float s = 0;
        for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x)
            s += x[bn_at(j, k, ch, hw)];
        float mu = block_sum(s, sh) / (float)cnt;
        float v = 0;
        for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
            float d = x[bn_at(j, k, ch, hw)] - mu;
            v += d * d;
        }
        float ss = block_sum(v, sh);
        float var = ss / (float)cnt;
        if (threadIdx.x == 0) {
            mean[k] = mu;
            rstd[k] = 1.0f / sqrtf(var + eps);
            float unbiased = cnt > 1 ? ss / (float)(cnt - 1) : var;
            if (rmean)
                rmean[k] = (1.0f - momentum) * rmean[k] + momentum * mu;
            if (rvar)
                rvar[k] = (1.0f - momentum) * rvar[k] + momentum * unbiased;
        }
    }
}

__global__ void k_bn_eval_stats(int64_t ch, const float *rmean, const float *rvar, float eps,
                                float *mean, float *rstd)
{
    GSTRIDE(k, ch)
    {
        mean[k] = rmean[k];
        rstd[k] = 1.0f / sqrtf(rvar[k] + eps);
    }
}

__global__ void k_bn_norm(int64_t n, int64_t ch, int64_t hw, const float *x, const float *mean,
                          const float *rstd, const float *gamma, const float *beta, float *y)
{
    int64_t tot = n * ch * hw;
    GSTRIDE(i, tot)
    {
        int64_t k = (i / hw) % ch;
        float t = (x[i] - mean[k]) * rstd[k];
        if (gamma)
            t *= gamma[k];
        if (beta)
            t += beta[k];
        y[i] = t;
    }
}

// One block per channel: sums of dy and dy xhat, then dx (training: through
// the batch statistics; eval: statistics constant).
__global__ void k_bn_bwd(int training, int64_t n, int64_t ch, int64_t hw, const float *x,
                         const float *gamma, const float *mean, const float *rstd,
                         const float *dy, float *dx, float *dgamma, float *dbeta)
{
    __shared__ float sh[32];
    int64_t cnt = n * hw;
    for (int64_t k = blockIdx.x; k < ch; k += gridDim.x) {
        float mu = mean[k], rs = rstd[k];
        float a = 0, b = 0;
        for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
            int64_t at = bn_at(j, k, ch, hw);
            float d = dy[at];
            a += d;
            b += d * (x[at] - mu) * rs;
        }
        a = block_sum(a, sh);
        b = block_sum(b, sh);
        if (threadIdx.x == 0) {
            if (dgamma)
                dgamma[k] += b;
            if (dbeta)
                dbeta[k] += a;
        }
        if (dx) {
            float gr = (gamma ? gamma[k] : 1.0f) * rs;
            float ma = a / (float)cnt, mb = b / (float)cnt;
            for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
                int64_t at = bn_at(j, k, ch, hw);
                float d = dy[at];
                if (training)
                    d = d - ma - (x[at] - mu) * rs * mb;
                dx[at] = gr * d;
            }
        }
    }
}

extern "C" int ps_rtc_batchnorm_fwd(ps_cuda_ctx *c, int training, float eps, float momentum,
                                    int64_t n, int64_t ch, int64_t hw, const float *x,
                                    const float *gamma, const float *beta, float *running_mean,
                                    float *running_var, float *y, float *mean, float *rstd,
                                    ps_err *e)
{
    if (!mean || !rstd) { // not kept by the caller: scratch
        float *s = (float *)ps_cuda_ctx_scratch(c, sizeof(float) * 2 * (size_t)ch, e);
        if (!s)
            return PS_ERUN;
        if (!mean)
            mean = s;
        if (!rstd)
            rstd = s + ch;
    }
    if (training) {
        k_bn_stats<<<grid_rows(ch), NT, 0, c->stream>>>(n, ch, hw, x, eps, momentum, running_mean,
                                                         running_var, mean, rstd);
        LAUNCHED("k_bn_stats");
    } else {
        if (!running_mean || !running_var)
            return ps_errf(e, PS_EINPUT, "batchnorm_fwd: eval mode needs the running statistics");
        k_bn_eval_stats<<<grid1(ch), NT, 0, c->stream>>>(ch, running_mean, running_var, eps, mean,
                                                         rstd);
        LAUNCHED("k_bn_eval_stats");
    }
    k_bn_norm<<<grid1(n * ch * hw), NT, 0, c->stream>>>(n, ch, hw, x, mean, rstd, gamma, beta, y);
    LAUNCHED("k_bn_norm");
    return 0;
}

extern "C" int ps_rtc_batchnorm_bwd(ps_cuda_ctx *c, int training, int64_t n, int64_t ch,
                                    int64_t hw, const float *x, const float *gamma,
                                    const float *mean, const float *rstd, const float *dy,
                                    float *dx, float *dgamma, float *dbeta, ps_err *e)
{
    k_bn_bwd<<<grid_rows(ch), NT, 0, c->stream>>>(training, n, ch, hw, x, gamma, mean, rstd, dy,
                                                   dx, dgamma, dbeta);
    LAUNCHED("k_bn_bwd");
    return 0;
}

// ------------------------------------------------------------------ embedding

__global__ void k_emb_fwd(int64_t n, int64_t d, const int32_t *ids, const float *table, float *y)
{
    GSTRIDE(i, n * d) y[i] = table[(int64_t)ids[i / d] * d + i % d];
}

__global__ void k_emb_bwd(int64_t n, int64_t d, const int32_t *ids, const float *dy, float *dt)
{
    GSTRIDE(i, n * d) atomicAdd(&dt[(int64_t)ids[i / d] * d + i % d], dy[i]);
}

extern "C" int ps_rtc_embedding_fwd(ps_cuda_ctx *c, int64_t n, int64_t d, const int32_t *ids,
                                    const float *table, float *y, ps_err *e)
{
    k_emb_fwd<<<grid1(n * d), NT, 0, c->stream>>>(n, d, ids, table, y);
    LAUNCHED("k_emb_fwd");
    return 0;
}

extern "C" int ps_rtc_embedding_bwd(ps_cuda_ctx *c, int64_t n, int64_t d, const int32_t *ids,
                                    const float *dy, float *dtable, ps_err *e)
{
    k_emb_bwd<<<grid1(n * d), NT, 0, c->stream>>>(n, d, ids, dy, dtable);
    LAUNCHED("k_emb_bwd");
    return 0;
}

// ------------------------------------------------------------------ softmax, losses

// One block per row: y = softmax(x); with labels, acc[0] += -log p[label]
// (as logsumexp - x[label]) and acc[1] += 1 for each counted row.
__global__ void k_softmax_rows(int64_t rows, int64_t cols, const float *x, float *y,
                               const int32_t *labels, double *acc)
{
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * cols;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            m = fmaxf(m, xr[j]);
        m = block_max(m, sh);
        float s = 0;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            s += expf(xr[j] - m);
        s = block_sum(s, sh);
        float inv = 1.0f / s;
        float *yr = y + r * cols;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            yr[j] = expf(xr[j] - m) * inv;
        if (labels && threadIdx.x == 0) {
            int32_t l = labels[r];
            if (l >= 0 && l < cols) {
                atomicAdd(&acc[0], (double)logf(s) + (double)m - (double)xr[l]);
                atomicAdd(&acc[1], 1.0);
            }
        }
    }
}

__global__ void k_count_labels(int64_t n, int64_t cols, const int32_t *labels, float *count)
{
    __shared__ float sh[32];
    float s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        s += labels[i] >= 0 && labels[i] < cols ? 1.0f : 0.0f;
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
        *count = s;
}

__global__ void k_xent_bwd(int64_t rows, int64_t cols, const float *probs, const int32_t *labels,
                           float scale, const float *count, float *dl)
{
    float f = *count > 0 ? scale / *count : 0.0f;
    GSTRIDE(i, rows * cols)
    {
        int64_t r = i / cols, j = i % cols;
        int32_t l = labels[r];
        float v = 0.0f;
        if (l >= 0 && l < cols)
            v = (probs[i] - (j == l ? 1.0f : 0.0f)) * f;
        dl[i] = v;
    }
}

extern "C" int ps_rtc_softmax_xent_fwd(ps_cuda_ctx *c, int64_t n, int64_t cls,
                                       const float *logits, const int32_t *labels, float *probs,
                                       double *loss, ps_err *e)
{
    double *acc = acc_scratch(c, 2, e);
    if (!acc)
        return PS_ERUN;
    k_softmax_rows<<<grid_rows(n), NT, 0, c->stream>>>(n, cls, logits, probs, labels, acc);
    LAUNCHED("k_softmax_rows");
    double h[2];
    TRY(acc_read(c, acc, h, 2, e));
    *loss = h[1] > 0 ? h[0] / h[1] : 0.0;
    return 0;
}

extern "C" int ps_rtc_softmax_xent_bwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *probs,
                                       const int32_t *labels, float scale, float *dlogits,
                                       ps_err *e)
{
    float *count = (float *)ps_cuda_ctx_scratch(c, sizeof(float), e);
    if (!count)
        return PS_ERUN;
    k_count_labels<<<1, 1024, 0, c->stream>>>(n, cls, labels, count);
    LAUNCHED("k_count_labels");
    k_xent_bwd<<<grid1(n * cls), NT, 0, c->stream>>>(n, cls, probs, labels, scale, count,
                                                     dlogits);
    LAUNCHED("k_xent_bwd");
    return 0;
}

extern "C" int ps_rtc_softmax_fwd(ps_cuda_ctx *c, int64_t n, int64_t cls, const float *x,
                                  float *y, ps_err *e)
{
    k_softmax_rows<<<grid_rows(n), NT, 0, c->stream>>>(n, cls, x, y, NULL, NULL);
    LAUNCHED("k_softmax_rows");
    return 0;
}

__global__ void k_mse_fwd(int64_t n, const float *x, const float *t, double *acc)
{
    __shared__ double sh[32];
    double s = 0;
    GSTRIDE(i, n)
    {
        double d = (double)x[i] - (double)t[i];
        s += d * d;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
        atomicAdd(acc, s);
}

__global__ void k_mse_bwd(int64_t n, const float *x, const float *t, float f, float *dx)
{
    GSTRIDE(i, n) dx[i] = f * (x[i] - t[i]);
}

extern "C" int ps_rtc_mse_fwd(ps_cuda_ctx *c, int64_t n, const float *x, const float *t,
                              double *loss, ps_err *e)
{
    double *acc = acc_scratch(c, 1, e);
    if (!acc)
        return PS_ERUN;
    k_mse_fwd<<<grid1(n) > 1024 ? 1024u : grid1(n), NT, 0, c->stream>>>(n, x, t, acc);
    LAUNCHED("k_mse_fwd");
    double s;
    TRY(acc_read(c, acc, &s, 1, e));
    *loss = n > 0 ? s / (double)n : 0.0;
    return 0;
}

extern "C" int ps_rtc_mse_bwd(ps_cuda_ctx *c, int64_t n, const float *x, const float *t,
                              float scale, float *dx, ps_err *e)
{
    float f = n > 0 ? (float)(2.0 * (double)scale / (double)n) : 0.0f;
    k_mse_bwd<<<grid1(n), NT, 0, c->stream>>>(n, x, t, f, dx);
    LAUNCHED("k_mse_bwd");
    return 0;
}

// ------------------------------------------------------------------ attention

__device__ __forceinline__ bool att_sees(int mk, const uint8_t *mask, int64_t i, int64_t j,
                                         int64_t tq, int64_t tkv)
{
    if (mk == 1)
        return j <= tkv - tq + i;
    if (mk == 2)
        return mask[i * tkv + j] != 0;
    return true;
}

// In place over s [bh tq, tkv] (already scaled): masked softmax; a row that
// sees no key becomes zeros.
__global__ void k_att_softmax(int64_t rows, int64_t tq, int64_t tkv, int mk, const uint8_t *mask,
                              float *s)
{
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t i = r % tq;
        float *sr = s + r * tkv;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < tkv; j += blockDim.x)
            if (att_sees(mk, mask, i, j, tq, tkv))
                m = fmaxf(m, sr[j]);
        m = block_max(m, sh);
        if (m == -INFINITY) { // sees nothing (uniform across the block)
            for (int64_t j = threadIdx.x; j < tkv; j += blockDim.x)
                sr[j] = 0.0f;
            continue;
        }
        float sum = 0;
        for (int64_t j = threadIdx.x; j < tkv; j += blockDim.x)
            if (att_sees(mk, mask, i, j, tq, tkv))
                sum += expf(sr[j] - m);
        sum = block_sum(sum, sh);
        float inv = 1.0f / sum;
        for (int64_t j = threadIdx.x; j < tkv; j += blockDim.x)
            sr[j] = att_sees(mk, mask, i, j, tq, tkv) ? expf(sr[j] - m) * inv : 0.0f;
    }
}

// In place over ds [rows, tkv] holding datt: ds = att (datt - sum(att datt)) * scale.
__global__ void k_att_softmax_bwd(int64_t rows, int64_t tkv, const float *att, float *ds,
                                  float scale)
{
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *ar = att + r * tkv;
        float *dr = ds + r * tkv;
        float dot = 0;
        for (int64_t j = threadIdx.x; j < tkv; j += blockDim.x)
            dot += ar[j] * dr[j];
        dot = block_sum(dot, sh);
        for (int64_t j = threadIdx.x; j < tkv; j += blockDim.x)
            dr[j] = ar[j] * (dr[j] - dot) * scale;
    }
}

extern "C" int ps_rtc_attention_fwd(ps_cuda_ctx *c, int64_t bh, int64_t tq, int64_t tcap,
                                    int64_t tkv, int64_t d, const float *q, const float *k,
                                    const float *v, int mask_kind, const uint8_t *mask,
                                    float *att, float *o, ps_err *e)
{
    if (mask_kind == 2 && !mask)
        return ps_errf(e, PS_EINPUT, "attention_fwd: boolean mask without a mask tensor");
    float *s = att;
    if (!s) {
        s = (float *)ps_cuda_ctx_scratch(c, sizeof(float) * (size_t)(bh * tq * tkv), e);
        if (!s)
            return PS_ERUN;
    }
    float scale = (float)(1.0 / sqrt((double)d));
    // S [tq, tkv] = q [tq, d] · k^T (k stored [tkv.., d], batch stride tcap d)
    TRY(ps_rtc_gemm(c, 0, 1, bh, tq, tkv, d, scale, q, d, tq * d, k, d, tcap * d, 0.0f, s, tkv,
                    tq * tkv, e));
    k_att_softmax<<<grid_rows(bh * tq), NT, 0, c->stream>>>(bh * tq, tq, tkv, mask_kind, mask, s);
    LAUNCHED("k_att_softmax");
    // o [tq, d] = att [tq, tkv] · v [tkv, d]
    TRY(ps_rtc_gemm(c, 0, 0, bh, tq, d, tkv, 1.0f, s, tkv, tq * tkv, v, d, tcap * d, 0.0f, o, d,
                    tq * d, e));
    return 0;
}

extern "C" int ps_rtc_attention_bwd(ps_cuda_ctx *c, int64_t bh, int64_t tq, int64_t tcap,
                                    int64_t tkv, int64_t d, const float *q, const float *k,
                                    const float *v, const float *att, const float *dout,
                                    float *dq, float *dk, float *dv, ps_err *e)
{
    if (dv) // dv [tkv, d] = att^T (att stored [tq, tkv]) · dout [tq, d]
        TRY(ps_rtc_gemm(c, 1, 0, bh, tkv, d, tq, 1.0f, att, tkv, tq * tkv, dout, d, tq * d, 0.0f,
                        dv, d, tcap * d, e));
    if (!dq && !dk)
        return 0;
    float *ds = (float *)ps_cuda_ctx_scratch(c, sizeof(float) * (size_t)(bh * tq * tkv), e);
    if (!ds)
        return PS_ERUN;
    // datt [tq, tkv] = dout [tq, d] · v^T
    TRY(ps_rtc_gemm(c, 0, 1, bh, tq, tkv, d, 1.0f, dout, d, tq * d, v, d, tcap * d, 0.0f, ds, tkv,
                    tq * tkv, e));
    float scale = (float)(1.0 / sqrt((double)d));
    k_att_softmax_bwd<<<grid_rows(bh * tq), NT, 0, c->stream>>>(bh * tq, tkv, att, ds, scale);
    LAUNCHED("k_att_softmax_bwd");
    if (dq) // dq [tq, d] = dS [tq, tkv] · k [tkv, d]
        TRY(ps_rtc_gemm(c, 0, 0, bh, tq, d, tkv, 1.0f, ds, tkv, tq * tkv, k, d, tcap * d, 0.0f, dq,
                        d, tq * d, e));
    if (dk) // dk [tkv, d] = dS^T · q [tq, d]
        TRY(ps_rtc_gemm(c, 1, 0, bh, tkv, d, tq, 1.0f, ds, tkv, tq * tkv, q, d, tq * d, 0.0f, dk,
                        d, tcap * d, e));
    return 0;
}

// ------------------------------------------------------------------ optimizers

__global__ void k_sgd(int64_t n, float lr, float mu, float wd, float *w, const float *g, float *m)
{
    GSTRIDE(i, n)
    {
        float gi = g[i] + wd * w[i];
        if (m) {
            float mi = mu * m[i] + gi;
            m[i] = mi;
            gi = mi;
        }
        w[i] -= lr * gi;
    }
}

// As the CPU loop (real/tensor.c): w = w (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
__global__ void k_adamw(int64_t n, float b1, float b2, float eps, float decay, float step,
                        float rbc2, float *w, const float *g, float *m, float *v)
{
    GSTRIDE(i, n)
    {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

extern "C" int ps_rtc_sgd(ps_cuda_ctx *c, int64_t n, float lr, float momentum, float wd, float *w,
                          const float *g, float *m, ps_err *e)
{
    if (momentum != 0.0f && !m)
        return ps_errf(e, PS_EINPUT, "sgd: momentum without a momentum buffer");
    k_sgd<<<grid1(n), NT, 0, c->stream>>>(n, lr, momentum, wd, w, g, momentum != 0.0f ? m : NULL);
    LAUNCHED("k_sgd");
    return 0;
}

extern "C" int ps_rtc_adamw(ps_cuda_ctx *c, int64_t n, float lr, float beta1, float beta2,
                            float eps, float wd, int64_t t, float *w, const float *g, float *m,
                            float *v, ps_err *e)
{
    if (t < 1)
        t = 1;
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    float decay = (float)(1.0 - (double)lr * (double)wd), step = (float)((double)lr / bc1);
    float rbc2 = (float)(1.0 / sqrt(bc2));
    k_adamw<<<grid1(n), NT, 0, c->stream>>>(n, beta1, beta2, eps, decay, step, rbc2, w, g, m, v);
    LAUNCHED("k_adamw");
    return 0;
}
