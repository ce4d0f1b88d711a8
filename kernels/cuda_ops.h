/* The project's own CUDA kernels and the small device runtime around them,
 * behind a C API (kernels/cuda_ops.cu).  Plain C types only, so C code
 * includes this with or without the CUDA headers; a build without CUDA
 * (PS_HAVE_CUDA undefined, e.g. the sanitizer build) links the stubs in
 * kernels/cuda_stubs.c, which fail with PS_ERUN "built without CUDA support".
 *
 * Conventions:
 *  - every tensor is dense and row-major (last index fastest);
 *  - every function enqueues on the context's stream and returns without
 *    waiting; ps_cuda_ctx_sync() waits and reports asynchronous errors;
 *  - every launch is followed by a cudaGetLastError() check, so a bad
 *    configuration is reported by the call that made it;
 *  - arithmetic is fp32 (fp64 for fp64 data); fp16/bf16 data are converted to
 *    fp32 on load and rounded once on store. */
#ifndef PS_KERNELS_CUDA_OPS_H
#define PS_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Inside the extern "C" block: common/err.h has no C++ guards of its own. */
#include "common/err.h"

/* Element types of device buffers.  tf32 is stored as F32. */
typedef enum {
    PS_CU_F32 = 0,
    PS_CU_F64,
    PS_CU_F16,
    PS_CU_BF16,
    PS_CU_I8,
    PS_CU_I32,
    PS_CU_I64,
    PS_CU_U8,
    PS_CU_DTYPE_COUNT
} ps_cu_dtype;

size_t ps_cu_dtype_size(ps_cu_dtype t);
const char *ps_cu_dtype_name(ps_cu_dtype t);
/* The profile vocabulary ("fp32", "tf32" → F32, "bf16", "int8", "int64",
 * ...); PS_EINPUT for a name with no device storage type here. */
int ps_cu_dtype_parse(const char *s, ps_cu_dtype *out, ps_err *e);

/* ------------------------------------------------------------- context */

/* One device, one stream, the library handles (cuBLAS, cuBLASLt) and a
 * scratch area that grows on demand (cuBLAS workspace, attention partials).
 * Not thread-safe: one context per host thread. */
typedef struct ps_cuda_ctx ps_cuda_ctx;

ps_cuda_ctx *ps_cuda_ctx_new(int device, ps_err *e);
void ps_cuda_ctx_free(ps_cuda_ctx *c);
int ps_cuda_ctx_device(const ps_cuda_ctx *c);
/* The cudaStream_t, as void* so C needs no CUDA header. */
void *ps_cuda_ctx_stream(const ps_cuda_ctx *c);
/* Wait for the stream; reports any asynchronous error of the work on it. */
int ps_cuda_ctx_sync(ps_cuda_ctx *c, ps_err *e);
/* Device scratch of at least `bytes`, kept by the context.  Growing it frees
 * and reallocates (synchronizing): grow during warm-up, not while timing. */
void *ps_cuda_ctx_scratch(ps_cuda_ctx *c, size_t bytes, ps_err *e);

typedef struct ps_cuda_device_info {
    char name[256];
    int cc_major, cc_minor;
    int sm_count;
    double sm_clock_hz;  /* peak SM clock the driver reports */
    double mem_clock_hz; /* peak memory clock */
    int mem_bus_bits;
    double mem_bytes;      /* total device memory */
    double l2_bytes;
    double smem_per_block_optin_bytes;
    int driver_version, runtime_version; /* 13000 = 13.0 */
    char pci_bus_id[32];
} ps_cuda_device_info;

int ps_cuda_device_info_get(int device, ps_cuda_device_info *out, ps_err *e);

/* ------------------------------------------------------------- memory */

void *ps_cuda_alloc(size_t bytes, ps_err *e);
void ps_cuda_free(void *p);
/* Pinned host memory (h2d/d2h copies at link speed). */
void *ps_cuda_host_alloc(size_t bytes, ps_err *e);
void ps_cuda_host_free(void *p);

typedef enum { PS_CU_H2D = 1, PS_CU_D2H = 2, PS_CU_D2D = 3 } ps_cu_copy_kind;
/* Asynchronous copy on the context's stream (cudaMemcpyAsync). */
int ps_cuda_copy(ps_cuda_ctx *c, void *dst, const void *src, size_t bytes, ps_cu_copy_kind kind,
                 ps_err *e);
/* Every byte of [p, p+bytes) set to `byte` (poisoning outputs: 0xFF is NaN
 * in every float type). */
int ps_cuda_memset(ps_cuda_ctx *c, void *p, int byte, size_t bytes, ps_err *e);

/* Fresh random data, never zero (zeros hide unwritten outputs and run faster
 * than real data on some units).  Floats: |x| uniform in [1/16, 1], random
 * sign, scaled by `scale`; I8: uniform in [-127, 127] without 0; I32/I64/U8:
 * uniform in [0, max(1, scale)) — indices, masks.  A counter-based hash of
 * (seed, index): the same seed gives the same data on any device. */
int ps_cuda_fill_random(ps_cuda_ctx *c, void *p, size_t n, ps_cu_dtype t, uint64_t seed,
                        double scale, ps_err *e);
/* dst[i] = (dst type) src[i]: tests upcast outputs for comparison. */
int ps_cuda_convert(ps_cuda_ctx *c, const void *src, ps_cu_dtype st, void *dst, ps_cu_dtype dt,
                    size_t n, ps_err *e);
/* Occupy the stream for about `seconds` of device time: enqueued before a
 * batch of timed launches it lets the host run ahead, so that the timed
 * kernels start back-to-back instead of waiting for the host's launches. */
int ps_cuda_spin(ps_cuda_ctx *c, double seconds, ps_err *e);

/* ------------------------------------------------------------- kernels */

typedef enum {
    PS_EW_RELU = 0,
    PS_EW_GELU, /* exact: x/2 (1 + erf(x/sqrt 2)) */
    PS_EW_TANH,
    PS_EW_SIGMOID,
    PS_EW_ADD, /* binary: y = a + b */
    PS_EW_MUL, /* binary: y = a * b */
    PS_EW_COUNT
} ps_ew_op;

int ps_cuda_ew_parse(const char *s, ps_ew_op *out, ps_err *e);
int ps_cuda_ew_is_binary(ps_ew_op op);
/* y[i] = f(a[i]) or a[i] op b[i], i < n.  F32, F64, F16, BF16.  y may alias a. */
int ps_cuda_elementwise(ps_cuda_ctx *c, ps_ew_op op, ps_cu_dtype t, size_t n, const void *a,
                        const void *b, void *y, ps_err *e);

typedef enum {
    PS_RED_SOFTMAX = 0, /* y[r,:] = softmax(x[r,:]), max-subtracted */
    PS_RED_LAYERNORM,   /* y[r,:] = (x - mean)/sqrt(var + 1e-5) * gamma + beta */
    PS_RED_SUM,         /* y[r] = sum_c x[r,c] */
    PS_RED_COUNT
} ps_red_op;

#define PS_LAYERNORM_EPS 1e-5

int ps_cuda_red_parse(const char *s, ps_red_op *out, ps_err *e);
/* Row-wise over x[rows, cols].  gamma/beta (layernorm only, length cols) may
 * be NULL: 1 and 0.  Output y[rows, cols] (softmax, layernorm) or y[rows]
 * (sum).  F32, F64, F16, BF16; accumulation in fp32 (fp64 for F64). */
int ps_cuda_reduction(ps_cuda_ctx *c, ps_red_op op, ps_cu_dtype t, int64_t rows, int64_t cols,
                      const void *x, const void *gamma, const void *beta, void *y, ps_err *e);

typedef enum { PS_MASK_NONE = 0, PS_MASK_CAUSAL, PS_MASK_TREE } ps_mask_kind;

int ps_cuda_mask_parse(const char *s, ps_mask_kind *out, ps_err *e);
/* Scaled dot-product attention, O = softmax(Q K^T / sqrt(d) + mask) V.
 * Q, O: [b, h, sq, d]; K, V: [b, h, skv, d].  Query i sits at key position
 * skv - sq + i (prefill: sq = skv; decode: sq = 1).
 *  - NONE: every query sees every key;
 *  - CAUSAL: query i sees keys j <= skv - sq + i;
 *  - TREE: mask[i * skv + j] != 0 says query i sees key j (device buffer,
 *    U8 [sq, skv], shared by every batch and head) — any boolean mask.
 * A query that sees no key gets a zero output row.  d <= 256.  F32, F16,
 * BF16 (fp32 accumulation).  Long key ranges with few queries (decode) are
 * split across blocks and merged (flash-decoding); the partials live in the
 * context's scratch. */
int ps_cuda_attention(ps_cuda_ctx *c, ps_cu_dtype t, int64_t b, int64_t h, int64_t sq,
                      int64_t skv, int64_t d, const void *q, const void *k, const void *v,
                      ps_mask_kind mask_kind, const uint8_t *mask, void *o, ps_err *e);
/* Host helper: SpecInfer's tree mask for `sq` tree tokens after a shared
 * prefix of skv - sq keys: query i sees the prefix, itself and its
 * ancestors; parent[i] < i (parent[0] = -1 is the root).  mask: sq * skv. */
void ps_attention_tree_mask(int64_t sq, int64_t skv, const int64_t *parent, uint8_t *mask);

/* out[i, :] = sum (or mean) over j < bag of table[idx[i * bag + j], :]:
 * table [rows, dim], idx I64 [batch, bag] (each in [0, rows)), out
 * [batch, dim].  F32, F16, BF16 (fp32 accumulation). */
int ps_cuda_embedding_bag(ps_cuda_ctx *c, ps_cu_dtype t, int64_t rows, int64_t dim, int64_t bag,
                          int64_t batch, const void *table, const int64_t *idx, int mean,
                          void *out, ps_err *e);

#ifdef __cplusplus
}
#endif

#endif
