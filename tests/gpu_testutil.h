/* Shared set-up of the CUDA test programs (include after <cmocka.h>): a
 * fresh seed per run (PLANSIM_TEST_SEED repeats one) and per test, and the
 * skip of the device tests without a usable GPU, saying why. */
#ifndef PS_TESTS_GPU_TESTUTIL_H
#define PS_TESTS_GPU_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "kernels/gpu.h"

static char no_gpu[512]; /* why there is no usable GPU */
static uint64_t seed0, nseed;

static inline uint64_t seed(void)
{
    return seed0 + 0x9E3779B97F4A7C15ull * ++nseed;
}

/* skip() the test, saying why, when dev (the program's device) is NULL. */
#define GPU_NEED(dev)                                                                             \
    do {                                                                                          \
        if (!(dev)) {                                                                             \
            print_message("no usable GPU (%s): skipping\n", no_gpu);                              \
            skip();                                                                               \
        }                                                                                         \
    } while (0)

#define OK(call)                                                                                  \
    do {                                                                                          \
        ps_err e_ = {0};                                                                          \
        (void)e_;                                                                                 \
        if ((call) != 0)                                                                          \
            fail_msg("%s: %s (seed %llu)", #call, e_.msg, (unsigned long long)seed0);           \
    } while (0)

/* Group set-up, first half: seed0 from the clock (or PLANSIM_TEST_SEED);
 * 1 when there is a GPU to open, else 0 with no_gpu saying why. */
static inline int gpu_setup_seed(void)
{
    seed0 = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    if (getenv("PLANSIM_TEST_SEED"))
        seed0 = strtoull(getenv("PLANSIM_TEST_SEED"), NULL, 0);
    return ps_gpu_count(no_gpu, sizeof no_gpu) > 0;
}

/* Second half, once the device is open: print the seed that repeats this
 * run. */
static inline void gpu_setup_announce(void)
{
    print_message("fresh inputs: seed %llu (PLANSIM_TEST_SEED=%llu repeats this run)\n",
                  (unsigned long long)seed0, (unsigned long long)seed0);
}

#endif
