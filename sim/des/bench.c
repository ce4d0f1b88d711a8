/* des_bench: the workloads behind `plansim des bench`.  See bench.h. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mkstemp under -std=c17 */
#include "sim/des/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim/des/des.h"
#include "sim/des/evq.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The 1F1B task graph the pipeline study builds (sim/pipeline/schedule.c),
 * written against the engine alone so that sim/des does not depend on the
 * layer above it.  Stage times vary a little so that not every event ties. */
static des *build_1f1b(int p, int m, ps_err *e)
{
    des *d = des_new(e);
    int *fw = malloc((size_t)p * m * sizeof *fw), *bw = malloc((size_t)p * m * sizeof *bw);
    int *stream = malloc((size_t)p * sizeof *stream), *pool = malloc((size_t)p * sizeof *pool);
    int ok = d && fw && bw && stream && pool;
    char name[64];
    for (int i = 0; ok && i < p; i++) {
        snprintf(name, sizeof name, "stage%d", i);
        stream[i] = des_add_stream(d, name, DES_FIFO, e);
        snprintf(name, sizeof name, "stage%d.act", i);
        pool[i] = des_add_pool(d, name, INFINITY, e);
        ok = stream[i] >= 0 && pool[i] >= 0;
    }
    for (int i = 0; ok && i < p; i++) {
        double tf = 1e-3 * (1 + 0.1 * (i % 3)), tb = 2 * tf, act = 64e6;
        int w = p - i < m ? p - i : m, prev = -1;
        /* w warm-up forwards, then backward i / forward w+i, then drain */
        for (int k = 0, nf = 0, nb = 0; ok && k < 2 * m; k++) {
            int isf = nf < w ? 1 : nf == m ? 0 : nb == nf - w + 1;
            int mb = isf ? nf++ : nb++;
            int x = des_add_task(d, stream[i], isf ? tf : tb, isf ? "F" : "B", i, mb, e);
            ok = x >= 0 && (prev < 0 || !des_add_dep(d, prev, x, e)) &&
                 !des_add_mem(d, x, pool[i], isf ? act : -act, isf ? DES_AT_START : DES_AT_END, e);
            if (x >= 0)
                (isf ? fw : bw)[(size_t)i * m + mb] = x;
            prev = x;
        }
        for (int mb = 0; ok && mb < m; mb++)
            ok = !des_add_dep(d, fw[(size_t)i * m + mb], bw[(size_t)i * m + mb], e);
    }
    for (int i = 0; ok && i + 1 < p; i++) {
        snprintf(name, sizeof name, "link%d->%d", i, i + 1);
        int lf = des_add_link(d, name, 5e-6, 25e9, e);
        snprintf(name, sizeof name, "link%d->%d", i + 1, i);
        int lb = des_add_link(d, name, 5e-6, 25e9, e);
        ok = lf >= 0 && lb >= 0;
        for (int mb = 0; ok && mb < m; mb++) {
            size_t u = (size_t)i * m + mb, v = (size_t)(i + 1) * m + mb;
            int xf = des_add_transfer(d, lf, 1e6, "send_act", i, mb, e);
            int xb = des_add_transfer(d, lb, 1e6, "send_grad", i + 1, mb, e);
            ok = xf >= 0 && xb >= 0 && !des_add_dep(d, fw[u], xf, e) && !des_add_dep(d, xf, fw[v], e) &&
                 !des_add_dep(d, bw[v], xb, e) && !des_add_dep(d, xb, bw[u], e);
        }
    }
    free(fw);
    free(bw);
    free(stream);
    free(pool);
    if (!ok) {
        des_free(d);
        if (e && !e->code)
            ps_errf(e, PS_ERUN, "des bench: cannot build the pipeline graph");
        return NULL;
    }
    return d;
}

/* Build and run the pipeline `reps` times; fills the timing fields. */
static int bench_pipeline(int p, int m, int reps, des_bench_workload *w, ps_err *e)
{
    double *run = malloc((size_t)reps * sizeof *run), *build = malloc((size_t)reps * sizeof *build);
    if (!run || !build) {
        free(run);
        free(build);
        return ps_errf(e, PS_ERUN, "des bench: out of host memory");
    }
    int rc = 0;
    for (int r = 0; r < reps && !rc; r++) {
        double t0 = now_s();
        des *d = build_1f1b(p, m, e);
        if (!d) {
            rc = e ? e->code : PS_ERUN;
            break;
        }
        double t1 = now_s();
        rc = des_run(d, e);
        double t2 = now_s();
        build[r] = t1 - t0;
        run[r] = t2 - t1;
        w->events = des_event_count(d);
        w->tasks = (uint64_t)des_task_count(d);
        des_free(d);
    }
    if (!rc) {
        w->stages = p;
        w->microbatches = m;
        w->reps = reps;
        w->build_s = median(build, reps);
        w->seconds = median(run, reps);
        w->best_s = run[0]; /* sorted by median() */
        w->events_per_s = w->seconds > 0 ? (double)w->events / w->seconds : 0;
    }
    free(run);
    free(build);
    return rc;
}

static uint64_t xorshift64s(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Hold model on the bare queue.  Increments come from a table of 2^16
 * Exp(1) variates indexed by the RNG, so that log() does not dominate what
 * is meant to time the queue. */
static int bench_hold(uint64_t pending, uint64_t pops, int reps, uint64_t seed,
                      des_bench_workload *w, ps_err *e)
{
    enum { NTAB = 1 << 16 };
    double *tab = malloc(NTAB * sizeof *tab), *run = malloc((size_t)reps * sizeof *run);
    if (!tab || !run) {
        free(tab);
        free(run);
        return ps_errf(e, PS_ERUN, "des bench: out of host memory");
    }
    uint64_t s = seed ? seed : 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < NTAB; i++)
        tab[i] = -log(((double)(xorshift64s(&s) >> 11) + 0.5) / 9007199254740992.0);
    double sink = 0;
    int rc = 0;
    for (int r = 0; r < reps && !rc; r++) {
        evq q = {0};
        evq_vec spare = {0};
        for (uint64_t i = 0; i < pending && !rc; i++)
            if (evq_push(&q, tab[xorshift64s(&s) >> 48], (uint32_t)i))
                rc = -1;
        double t0 = now_s();
        for (uint64_t i = 0; i < pops && !rc; i++) {
            evq_ent ev;
            if (evq_pop(&q, &spare, &ev) ||
                evq_push(&q, evq_time_of(ev.key) + tab[xorshift64s(&s) >> 48], ev.payload))
                rc = -1;
        }
        run[r] = now_s() - t0;
        sink += evq_time_of(q.last);
        evq_free(&q);
        free(spare.v);
    }
    if (rc) {
        free(tab);
        free(run);
        return ps_errf(e, PS_ERUN, "des bench: out of host memory");
    }
    snprintf(w->name, sizeof w->name, "hold");
    w->tasks = pending;
    w->events = pops;
    w->reps = reps;
    w->seconds = median(run, reps);
    w->best_s = run[0];
    w->events_per_s = w->seconds > 0 ? (double)pops / w->seconds : 0;
    w->build_s = sink < 0 ? 1 : 0; /* keeps the loop from being optimised away */
    free(tab);
    free(run);
    return 0;
}

int des_bench(const des_bench_opts *opts, des_bench_result *out, ps_err *e)
{
    des_bench_opts o = opts ? *opts : (des_bench_opts){0};
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    int rc;
    snprintf(out->pipeline.name, sizeof out->pipeline.name, "pipeline_1f1b");
    if (o.quick)
        rc = bench_pipeline(16, 64, 3, &out->pipeline, e);
    else
        rc = bench_pipeline(64, 1024, 7, &out->pipeline, e);
    if (rc)
        return rc;
    if ((rc = bench_hold(o.quick ? 10000 : 100000, o.quick ? 1000000 : 10000000, 3, o.seed,
                         &out->hold, e)))
        return rc;
    /* ~6 events per (stage, micro-batch) at 64 stages: m = 26 .. 26000
     * gives 10^4 .. 10^7 events. */
    static const int ms[DES_BENCH_MAX_POINTS] = {26, 260, 2600, 26000};
    int npts = o.quick ? 3 : DES_BENCH_MAX_POINTS;
    for (int k = 0; k < npts; k++) {
        des_bench_workload w = {0};
        int m = o.quick ? ms[k] / 2 : ms[k];
        int reps = k == 0 ? 41 : k == 1 ? 11 : k == 2 ? 5 : 3;
        if ((rc = bench_pipeline(64, m, reps, &w, e)))
            return rc;
        des_bench_point *pt = &out->scaling[k];
        pt->stages = 64;
        pt->microbatches = m;
        pt->events = w.events;
        pt->seconds = w.seconds;
        pt->ns_per_event = 1e9 * w.seconds / (double)w.events;
        pt->ns_per_event_log2 = pt->ns_per_event / log2((double)w.events);
    }
    out->npoints = npts;
    out->total_s = now_s() - t0;
    return 0;
}
