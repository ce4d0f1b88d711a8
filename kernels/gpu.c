#include "gpu.h"

#include <stdio.h>

#ifdef PS_HAVE_CUDA
int ps_cuda_probe(char *desc, size_t n); /* kernels/cuda_probe.cu */
#endif

int ps_gpu_built(void)
{
#ifdef PS_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int ps_gpu_count(char *desc, size_t n)
{
#ifdef PS_HAVE_CUDA
    return ps_cuda_probe(desc, n);
#else
    snprintf(desc, n, "built without CUDA");
    return 0;
#endif
}
