/* The CPU profiling backend: runs a suite's ops on this machine's CPU
 * (OpenBLAS for GEMM-shaped work, plain C for the rest; kernels/cpu_*.h)
 * and records one /ops row per op, plus the device peaks.
 *
 * Measurement (profile/README.md has the reasons):
 *  1. inputs get fresh random non-zero data (|x| in [1/16, 1], random sign:
 *     zeros would hide unwritten outputs and take fast paths real data does
 *     not);
 *  2. ops are measured in groups of consecutive suite ops (buffers up to
 *     2 GB, an eighth of the memory at most): each is run
 *     `warmup` times, then calibrated (1, 4, 16, ... back-to-back runs until
 *     they take a tenth of min_time_s → the iteration count that fills
 *     min_time_s);
 *  3. `repeats` rounds then take one sample of every op of the group in
 *     turn; a sample is the mean time per run over back-to-back runs filling
 *     min_time_s — the faster of two half-length windows when the op fits
 *     twice — after one untimed run for ops shorter than a tenth of
 *     min_time_s (their data was evicted by the ops in between);
 *  4. a sample during which another process held the core (wall minus
 *     thread CPU time > 3%) is retaken, up to 3 x repeats times;
 *  5. the row holds the samples' median, p10, p90, min and mean.
 * Buffers are reused across runs: an op whose working set fits in cache is
 * timed in cache, which is how a model runs its small ops back to back.
 * The exception is embedding_bag, which cycles through 16 random index sets,
 * since a model looks up different rows every batch. */
#ifndef PS_PROFILE_CPU_BACKEND_H
#define PS_PROFILE_CPU_BACKEND_H

#include <stddef.h>

#include "common/err.h"
#include "profile/db.h"
#include "profile/opdesc.h"
#include "profile/suite.h"
#include "profile/timer.h"

typedef void (*ps_profile_progress_fn)(void *user, size_t done, size_t total, const ps_op *op);
/* Called once the peaks are known, before the first op: the expected
 * duration of the op measurements (seconds) — the CLI prints it. */
typedef void (*ps_profile_estimate_fn)(void *user, size_t nops, double est_s);

typedef struct ps_cpu_profile_opts {
    int threads;   /* OpenBLAS threads (>= 1) */
    int pin_core;  /* -1: not pinned */
    int skip_peaks; /* tests: skip the (seconds-long) peak measurements */
    ps_profile_progress_fn progress;
    ps_profile_estimate_fn estimate;
    void *user; /* passed to progress and estimate */
} ps_cpu_profile_opts;

/* PS_EINPUT naming the op when the CPU backend cannot run it (GEMM: fp32,
 * fp64; other kinds: fp32; memcpy: "host"), or its buffers would not fit in
 * half the physical memory. */
int ps_cpu_op_supported(const ps_op *op, const char *where, ps_err *e);
/* Backend name recorded for the op ("openblas" or "c"). */
const char *ps_cpu_op_backend(const ps_op *op);

/* Measure one op as described above. */
int ps_cpu_measure_op(const ps_op *op, int warmup, int repeats, double min_time_s, ps_stats *out,
                      ps_err *e);

/* Device peaks into w: GEMM fp32/fp64 rates (square n = s->peak_gemm_n) at
 * the current thread count and with every core, memcpy bandwidth
 * (s->peak_memcpy_bytes; one thread and every core), launch overhead,
 * timer resolution, cores, clock, memory and cache sizes.  *est_* return
 * the rates for ps_suite_estimate_s. */
int ps_cpu_measure_peaks(const ps_suite *s, int threads, ps_db_writer *w, double *flops_per_s,
                         double *bytes_per_s, double *overhead_s, ps_err *e);

/* "Intel(R) Xeon(R) Processor (2 cores)" */
void ps_cpu_device_name(char *buf, size_t n);

/* Check every op, set threads, pin, measure peaks (unless skipped), then
 * every op of the suite in order; rows go to w. */
int ps_profile_run_cpu(const ps_suite *s, const ps_cpu_profile_opts *o, ps_db_writer *w,
                       ps_err *e);

#endif
