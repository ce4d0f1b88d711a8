#include "timer.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double ps_timer_now_s(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_RAW
    if (clock_gettime(CLOCK_MONOTONIC_RAW, &ts) == 0)
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ps_timer_thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ps_timer_resolution_s(void)
{
    double best = 1.0;
    for (int i = 0; i < 64; i++) {
        double a = ps_timer_now_s(), b;
        while ((b = ps_timer_now_s()) == a)
            ;
        if (b - a < best)
            best = b - a;
    }
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ps_stats_percentile(const double *s, int n, double q)
{
    if (n <= 0)
        return 0;
    if (n == 1)
        return s[0];
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1)
        return s[n - 1];
    double f = pos - i;
    return s[i] + f * (s[i + 1] - s[i]);
}

void ps_stats_compute(double *samples, int n, ps_stats *out)
{
    memset(out, 0, sizeof *out);
    out->repeats = n;
    if (n <= 0)
        return;
    qsort(samples, (size_t)n, sizeof *samples, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += samples[i];
    out->min_s = samples[0];
    out->mean_s = sum / n;
    out->median_s = ps_stats_percentile(samples, n, 0.5);
    out->p10_s = ps_stats_percentile(samples, n, 0.1);
    out->p90_s = ps_stats_percentile(samples, n, 0.9);
}

int ps_timer_ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static cpu_set_t saved_mask;
static int have_saved;

int ps_timer_pin(int core, ps_err *e)
{
    if (core < 0)
        return 0;
    if (core >= CPU_SETSIZE)
        return ps_errf(e, PS_EINPUT, "--pin %d: no such core", core);
    cpu_set_t old;
    if (sched_getaffinity(0, sizeof old, &old) == 0 && !CPU_ISSET(core, &old))
        return ps_errf(e, PS_EINPUT, "--pin %d: core not available to this process (%d online)",
                       core, ps_timer_ncpus());
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    if (sched_setaffinity(0, sizeof set, &set))
        return ps_errf(e, PS_EINPUT, "--pin %d: sched_setaffinity: %s", core, strerror(errno));
    saved_mask = old;
    have_saved = 1;
    return 0;
}

void ps_timer_unpin(void)
{
    if (have_saved)
        sched_setaffinity(0, sizeof saved_mask, &saved_mask);
    have_saved = 0;
}
