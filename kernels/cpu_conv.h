/* 2-D convolution on the CPU, fp32, NCHW, through im2col + one GEMM per
 * image (OpenBLAS): the layout real/ uses and what the profiler measures.
 *
 * x [n, c, h, w], weights wt [k, c, r, s], y [n, k, oh, ow] with
 * oh = (h + 2 pad - r) / stride + 1 (likewise ow); zero padding;
 * cross-correlation (no filter flip), as every DL framework does.
 * Workspace: ps_cpu_conv2d_work_floats() floats (one image's columns). */
#ifndef PS_KERNELS_CPU_CONV_H
#define PS_KERNELS_CPU_CONV_H

#include <stddef.h>
#include <stdint.h>

typedef struct ps_cpu_conv {
    int64_t n, c, h, w, k, r, s, stride, pad;
} ps_cpu_conv;

int64_t ps_cpu_conv_out_h(const ps_cpu_conv *g);
int64_t ps_cpu_conv_out_w(const ps_cpu_conv *g);
size_t ps_cpu_conv2d_work_floats(const ps_cpu_conv *g);

/* work may be NULL (allocated per call).  Return 0, or -1 on allocation
 * failure or a filter that does not fit. */
/* y = conv(x, wt) */
int ps_cpu_conv2d_fwd(const ps_cpu_conv *g, const float *x, const float *wt, float *y,
                      float *work);
/* dx = dL/dx given dy (dx is overwritten) */
int ps_cpu_conv2d_bwd_input(const ps_cpu_conv *g, const float *dy, const float *wt, float *dx,
                            float *work);
/* dwt = dL/dwt given x and dy (dwt is overwritten) */
int ps_cpu_conv2d_bwd_weight(const ps_cpu_conv *g, const float *x, const float *dy, float *dwt,
                             float *work);

/* One image: col [c·r·s, oh·ow] from x [c, h, w], and the adjoint (adds). */
void ps_cpu_im2col(const ps_cpu_conv *g, const float *x, float *col);
void ps_cpu_col2im(const ps_cpu_conv *g, const float *col, float *x);

#endif
