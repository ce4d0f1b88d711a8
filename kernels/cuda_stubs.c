/* Stand-ins for the CUDA kernels' device functions in a build without CUDA
 * (PS_HAVE_CUDA undefined: no nvcc, PS_NO_CUDA=1, the sanitizer build), so
 * that the C code calling them links and fails at run time with a clear
 * message instead.  The host-side helpers live in kernels/cuda_host.c. */
#ifndef PS_HAVE_CUDA

#include <stdio.h>

#include "kernels/cuda_blas.h"
#include "kernels/cuda_dnn.h"
#include "kernels/cuda_ops.h"

#define NO_CUDA "built without CUDA support"

static int no_cuda(ps_err *e)
{
    return ps_errf(e, PS_ERUN, NO_CUDA);
}

ps_cuda_ctx *ps_cuda_ctx_new(int device, ps_err *e)
{
    (void)device;
    no_cuda(e);
    return NULL;
}
void ps_cuda_ctx_free(ps_cuda_ctx *c) { (void)c; }
int ps_cuda_ctx_device(const ps_cuda_ctx *c) { (void)c; return -1; }
void *ps_cuda_ctx_stream(const ps_cuda_ctx *c) { (void)c; return NULL; }
int ps_cuda_ctx_sync(ps_cuda_ctx *c, ps_err *e) { (void)c; return no_cuda(e); }
void *ps_cuda_ctx_scratch(ps_cuda_ctx *c, size_t bytes, ps_err *e)
{
    (void)c, (void)bytes;
    no_cuda(e);
    return NULL;
}
int ps_cuda_device_info_get(int device, ps_cuda_device_info *out, ps_err *e)
{
    (void)device, (void)out;
    return no_cuda(e);
}
void *ps_cuda_alloc(size_t bytes, ps_err *e)
{
    (void)bytes;
    no_cuda(e);
    return NULL;
}
void ps_cuda_free(void *p) { (void)p; }
void *ps_cuda_host_alloc(size_t bytes, ps_err *e)
{
    (void)bytes;
    no_cuda(e);
    return NULL;
}
void ps_cuda_host_free(void *p) { (void)p; }
int ps_cuda_copy(ps_cuda_ctx *c, void *dst, const void *src, size_t bytes, ps_cu_copy_kind kind,
                 ps_err *e)
{
    (void)c, (void)dst, (void)src, (void)bytes, (void)kind;
    return no_cuda(e);
}
int ps_cuda_memset(ps_cuda_ctx *c, void *p, int byte, size_t bytes, ps_err *e)
{
    (void)c, (void)p, (void)byte, (void)bytes;
    return no_cuda(e);
}
int ps_cuda_fill_random(ps_cuda_ctx *c, void *p, size_t n, ps_cu_dtype t, uint64_t seed,
                        double scale, ps_err *e)
{
    (void)c, (void)p, (void)n, (void)t, (void)seed, (void)scale;
    return no_cuda(e);
}
int ps_cuda_convert(ps_cuda_ctx *c, const void *src, ps_cu_dtype st, void *dst, ps_cu_dtype dt,
                    size_t n, ps_err *e)
{
    (void)c, (void)src, (void)st, (void)dst, (void)dt, (void)n;
    return no_cuda(e);
}
int ps_cuda_spin(ps_cuda_ctx *c, double seconds, ps_err *e)
{
    (void)c, (void)seconds;
    return no_cuda(e);
}
int ps_cuda_elementwise(ps_cuda_ctx *c, ps_ew_op op, ps_cu_dtype t, size_t n, const void *a,
                        const void *b, void *y, ps_err *e)
{
    (void)c, (void)op, (void)t, (void)n, (void)a, (void)b, (void)y;
    return no_cuda(e);
}
int ps_cuda_reduction(ps_cuda_ctx *c, ps_red_op op, ps_cu_dtype t, int64_t rows, int64_t cols,
                      const void *x, const void *gamma, const void *beta, void *y, ps_err *e)
{
    (void)c, (void)op, (void)t, (void)rows, (void)cols, (void)x, (void)gamma, (void)beta, (void)y;
    return no_cuda(e);
}
int ps_cuda_attention(ps_cuda_ctx *c, ps_cu_dtype t, int64_t b, int64_t h, int64_t sq,
                      int64_t skv, int64_t d, const void *q, const void *k, const void *v,
                      ps_mask_kind mask_kind, const uint8_t *mask, void *o, ps_err *e)
{
    (void)c, (void)t, (void)b, (void)h, (void)sq, (void)skv, (void)d, (void)q, (void)k, (void)v,
        (void)mask_kind, (void)mask, (void)o;
    return no_cuda(e);
}
int ps_cuda_embedding_bag(ps_cuda_ctx *c, ps_cu_dtype t, int64_t rows, int64_t dim, int64_t bag,
                          int64_t batch, const void *table, const int64_t *idx, int mean,
                          void *out, ps_err *e)
{
    (void)c, (void)t, (void)rows, (void)dim, (void)bag, (void)batch, (void)table, (void)idx,
        (void)mean, (void)out;
    return no_cuda(e);
}

int ps_cuda_gemm(ps_cuda_ctx *c, ps_gemm_prec p, int ta, int tb, int64_t m, int64_t n, int64_t k,
                 const void *a, const void *b, void *cm, ps_err *e)
{
    (void)c, (void)p, (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)a, (void)b, (void)cm;
    return no_cuda(e);
}
int ps_cuda_gemm_batched(ps_cuda_ctx *c, ps_gemm_prec p, int ta, int tb, int64_t batch, int64_t m,
                         int64_t n, int64_t k, const void *a, const void *b, void *cm, ps_err *e)
{
    (void)c, (void)p, (void)ta, (void)tb, (void)batch, (void)m, (void)n, (void)k, (void)a,
        (void)b, (void)cm;
    return no_cuda(e);
}
ps_cuda_i8gemm *ps_cuda_i8gemm_plan(ps_cuda_ctx *c, int ta, int tb, int64_t m, int64_t n,
                                    int64_t k, ps_err *e)
{
    (void)c, (void)ta, (void)tb, (void)m, (void)n, (void)k;
    no_cuda(e);
    return NULL;
}
int ps_cuda_i8gemm_run(ps_cuda_i8gemm *g, const int8_t *a, const int8_t *b, int32_t *cm,
                       ps_err *e)
{
    (void)g, (void)a, (void)b, (void)cm;
    return no_cuda(e);
}
void ps_cuda_i8gemm_free(ps_cuda_i8gemm *g) { (void)g; }

int ps_cudnn_available(char *desc, size_t n)
{
    if (desc && n)
        snprintf(desc, n, NO_CUDA);
    return 0;
}
ps_cuda_conv *ps_cuda_conv2d_plan(ps_cuda_ctx *c, ps_conv_dir dir, ps_gemm_prec p, int64_t n,
                                  int64_t ch, int64_t h, int64_t w, int64_t k, int64_t r,
                                  int64_t s, int64_t stride, int64_t pad, ps_err *e)
{
    (void)c, (void)dir, (void)p, (void)n, (void)ch, (void)h, (void)w, (void)k, (void)r, (void)s,
        (void)stride, (void)pad;
    no_cuda(e);
    return NULL;
}
void ps_cuda_conv2d_out_hw(const ps_cuda_conv *cv, int64_t *oh, int64_t *ow)
{
    (void)cv;
    *oh = *ow = 0;
}
int ps_cuda_conv2d_algo(const ps_cuda_conv *cv) { (void)cv; return -1; }
int ps_cuda_conv2d_run(ps_cuda_conv *cv, const void *in0, const void *in1, void *out, ps_err *e)
{
    (void)cv, (void)in0, (void)in1, (void)out;
    return no_cuda(e);
}
void ps_cuda_conv2d_free(ps_cuda_conv *cv) { (void)cv; }

#else
/* ISO C forbids an empty translation unit. */
typedef int ps_cuda_stubs_unused;
#endif
