/* CPU timing: a monotonic clock, summary statistics over repeated
 * measurements, and pinning the calling thread to one core so that a
 * measurement is not migrated mid-flight (a migration costs a cold cache). */
#ifndef PS_PROFILE_TIMER_H
#define PS_PROFILE_TIMER_H

#include <stddef.h>

#include "common/err.h"

/* Summary of repeated measurements of one op (all in seconds). */
typedef struct ps_stats {
    int repeats;
    double median_s, p10_s, p90_s, min_s, mean_s;
} ps_stats;

/* CLOCK_MONOTONIC_RAW when available (no NTP slewing inside a
 * measurement), else CLOCK_MONOTONIC. */
double ps_timer_now_s(void);
/* CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): it stops while
 * the thread waits for a core, so wall minus CPU time is what another
 * process took from a measurement. */
double ps_timer_thread_cpu_s(void);
/* Smallest non-zero step the clock shows, measured. */
double ps_timer_resolution_s(void);

/* Statistics of n samples (sorted in place).  Percentiles by linear
 * interpolation between order statistics (p10 of 1 sample = the sample). */
void ps_stats_compute(double *samples, int n, ps_stats *out);
/* Percentile q in [0,1] of sorted samples. */
double ps_stats_percentile(const double *sorted, int n, double q);

/* Pin the calling thread to `core` (sched_setaffinity); core < 0 does
 * nothing.  PS_EINPUT when the core does not exist or is not allowed. */
int ps_timer_pin(int core, ps_err *e);
/* Restore the affinity mask saved by the last successful ps_timer_pin. */
void ps_timer_unpin(void);
/* Online CPU count. */
int ps_timer_ncpus(void);

#endif
