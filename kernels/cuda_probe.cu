// Asks the CUDA runtime, at run time, which GPUs are usable.  Linked into
// every CUDA build; on a machine without a driver the runtime reports
// cudaErrorInsufficientDriver or cudaErrorNoDevice and plansim carries on.
#include <cstdio>
#include <cuda_runtime.h>

extern "C" int ps_cuda_probe(char *desc, size_t n)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        std::snprintf(desc, n, "CUDA built (runtime %d), no usable GPU: %s", CUDART_VERSION,
                      cudaGetErrorString(err));
        return 0;
    }
    cudaDeviceProp prop;
    if (count > 0 && cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        std::snprintf(desc, n, "%d CUDA device(s); 0: %s (sm_%d%d, %d SMs, %.1f GiB)", count,
                      prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                      (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    else
        std::snprintf(desc, n, "CUDA built, no device");
    return count;
}
