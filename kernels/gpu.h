/* Whether a CUDA GPU is usable from this binary, asked at run time: the same
 * binary starts on machines with and without an NVIDIA driver. */
#ifndef PS_KERNELS_GPU_H
#define PS_KERNELS_GPU_H

#include <stddef.h>

/* Number of usable CUDA devices (0 when built without CUDA, without a
 * driver, or without a device); desc says which and why. */
int ps_gpu_count(char *desc, size_t n);
/* 1 if this binary was built with CUDA sources. */
int ps_gpu_built(void);

#endif
