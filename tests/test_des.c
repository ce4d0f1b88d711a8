/* sim/des: exact answers on graphs whose timelines can be worked out by hand
 * or by an independent longest-path computation. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mkstemp under -std=c17 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/table.h"
#include "sim/des/bench.h"
#include "sim/des/des.h"

/* cmocka 1.1 compares only floats; doubles to 1e-12 relative here. */
#define EQ(a, b) eq_d((a), (b), #a, __LINE__)
static void eq_d(double a, double b, const char *what, int line)
{
    double tol = 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}

static des *mk(void)
{
    ps_err e = {0};
    des *d = des_new(&e);
    assert_non_null(d);
    return d;
}

static int task(des *d, int res, double dur, const char *label, int t0, int t1)
{
    ps_err e = {0};
    int x = des_add_task(d, res, dur, label, t0, t1, &e);
    if (x < 0)
        fail_msg("des_add_task: %s", e.msg);
    return x;
}

static int xfer(des *d, int link, double bytes, const char *label, int t0)
{
    ps_err e = {0};
    int x = des_add_transfer(d, link, bytes, label, t0, DES_NO_TAG, &e);
    if (x < 0)
        fail_msg("des_add_transfer: %s", e.msg);
    return x;
}

static void dep(des *d, int a, int b)
{
    ps_err e = {0};
    if (des_add_dep(d, a, b, &e))
        fail_msg("des_add_dep: %s", e.msg);
}

static void run_ok(des *d)
{
    ps_err e = {0};
    int rc = des_run(d, &e);
    if (rc)
        fail_msg("des_run -> %d: %s", rc, e.msg);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rnd_unit(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* ------------------------------------------------------------------ */

static void test_chain(void **st)
{
    (void)st;
    des *d = mk();
    int a = task(d, DES_NO_RESOURCE, 1, "a", 0, 0);
    int b = task(d, DES_NO_RESOURCE, 2, "b", 0, 0);
    int c = task(d, DES_NO_RESOURCE, 3, "c", 0, 0);
    dep(d, a, b);
    dep(d, b, c);
    run_ok(d);
    EQ(des_makespan_s(d), 6);
    EQ(des_task_start_s(d, b), 1);
    EQ(des_task_start_s(d, c), 3);
    EQ(des_task_end_s(d, c), 6);
    assert_int_equal(des_event_count(d), 3);
    des_free(d);
}

static void test_fork_join(void **st)
{
    (void)st;
    des *d = mk();
    int a = task(d, DES_NO_RESOURCE, 1, "a", 0, 0);
    int b = task(d, DES_NO_RESOURCE, 2, "b", 0, 0);
    int c = task(d, DES_NO_RESOURCE, 5, "c", 0, 0);
    int j = task(d, DES_NO_RESOURCE, 1, "join", 0, 0);
    dep(d, a, b);
    dep(d, a, c);
    dep(d, b, j);
    dep(d, c, j);
    run_ok(d);
    EQ(des_task_start_s(d, b), 1);
    EQ(des_task_start_s(d, c), 1);
    EQ(des_task_start_s(d, j), 6);
    EQ(des_makespan_s(d), 7);
    /* The same fork-join with b and c on one stream: they serialise. */
    des *d2 = mk();
    ps_err e = {0};
    int s = des_add_stream(d2, "gpu0", DES_FIFO, &e);
    a = task(d2, DES_NO_RESOURCE, 1, "a", 0, 0);
    b = task(d2, s, 2, "b", 0, 0);
    c = task(d2, s, 5, "c", 0, 0);
    j = task(d2, DES_NO_RESOURCE, 1, "join", 0, 0);
    dep(d2, a, b);
    dep(d2, a, c);
    dep(d2, b, j);
    dep(d2, c, j);
    run_ok(d2);
    EQ(des_task_start_s(d2, c), 3);
    EQ(des_makespan_s(d2), 9);
    EQ(des_resource_busy_s(d2, s), 7);
    EQ(des_resource_utilization(d2, s), 7.0 / 9.0);
    des_free(d);
    des_free(d2);
}

/* Unlimited resources: makespan = the longest path, computed independently
 * in topological order on random DAGs whose task ids are shuffled. */
static void test_critical_path_random(void **st)
{
    (void)st;
    for (int trial = 0; trial < 20; trial++) {
        int n = 50 + (int)(rnd() % 300);
        double *dur = malloc(n * sizeof *dur), *fin = malloc(n * sizeof *fin);
        int *perm = malloc(n * sizeof *perm), *id = malloc(n * sizeof *id);
        for (int i = 0; i < n; i++)
            perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(rnd() % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        des *d = mk();
        /* Node i (topological index) gets engine id id[i]; creation order is perm. */
        for (int k = 0; k < n; k++) {
            int i = perm[k];
            dur[i] = trial % 4 == 0 ? (double)(rnd() % 4) : rnd_unit() * 10;
            id[i] = task(d, DES_NO_RESOURCE, dur[i], "n", i, 0);
        }
        double p = 3.0 / n;
        for (int i = 0; i < n; i++)
            fin[i] = 0;
        for (int j = 0; j < n; j++) {
            double ready = 0;
            for (int i = 0; i < j; i++)
                if (rnd_unit() < p) {
                    dep(d, id[i], id[j]);
                    if (fin[i] > ready)
                        ready = fin[i];
                }
            fin[j] = ready + dur[j];
        }
        double cp = 0;
        for (int i = 0; i < n; i++)
            if (fin[i] > cp)
                cp = fin[i];
        run_ok(d);
        assert_true(des_makespan_s(d) == cp);
        for (int i = 0; i < n; i++)
            assert_true(des_task_end_s(d, id[i]) == fin[i]);
        des_free(d);
        free(dur);
        free(fin);
        free(perm);
        free(id);
    }
}

static void test_one_resource_sum(void **st)
{
    (void)st;
    des *d = mk();
    ps_err e = {0};
    int s = des_add_stream(d, "cpu", DES_FIFO, &e);
    double sum = 0;
    for (int i = 0; i < 1000; i++) {
        double t = rnd_unit();
        task(d, s, t, "t", i, 0);
        sum += t;
    }
    run_ok(d);
    assert_true(des_makespan_s(d) == sum);
    assert_true(des_resource_busy_s(d, s) == sum);
    EQ(des_resource_utilization(d, s), 1);
    des_free(d);
}

static void test_fifo_priority_order(void **st)
{
    (void)st;
    ps_err e = {0};
    /* All ready at 0: FIFO runs in id order, priority by (priority, id). */
    des *d = mk();
    int f = des_add_stream(d, "fifo", DES_FIFO, &e);
    int p = des_add_stream(d, "prio", DES_PRIORITY, &e);
    int fx[5], px[5];
    int64_t pr[5] = {5, 1, 3, 1, -2};
    for (int i = 0; i < 5; i++) {
        fx[i] = task(d, f, 1, "f", i, 0);
        px[i] = task(d, p, 1, "p", i, 0);
        assert_int_equal(des_set_priority(d, px[i], pr[i], &e), 0);
    }
    run_ok(d);
    for (int i = 0; i < 5; i++)
        EQ(des_task_start_s(d, fx[i]), i);
    int order[5] = {4, 1, 3, 2, 0};
    for (int k = 0; k < 5; k++)
        EQ(des_task_start_s(d, px[order[k]]), k);
    des_free(d);

    /* FIFO is by ready time first: b becomes ready before a although a has
     * the lower id; the priority stream prefers a. */
    for (int prio = 0; prio < 2; prio++) {
        d = mk();
        int s = des_add_stream(d, "s", prio ? DES_PRIORITY : DES_FIFO, &e);
        int lng = task(d, s, 5, "long", 0, 0);
        int d1 = task(d, DES_NO_RESOURCE, 2, "d1", 0, 0);
        int d2 = task(d, DES_NO_RESOURCE, 1, "d2", 0, 0);
        int a = task(d, s, 1, "a", 0, 0);
        int b = task(d, s, 1, "b", 0, 0);
        dep(d, d1, a);
        dep(d, d2, b);
        des_set_priority(d, a, 0, &e);
        des_set_priority(d, b, 1, &e);
        des_set_priority(d, lng, -1, &e);
        run_ok(d);
        EQ(des_task_start_s(d, lng), 0);
        EQ(des_task_start_s(d, prio ? a : b), 5);
        EQ(des_task_start_s(d, prio ? b : a), 6);
        des_free(d);
    }
}

static void test_link_alpha_beta(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int l = des_add_link(d, "l01", 1e-3, 1e9, &e);
    int r = des_add_link(d, "l10", 1e-3, 1e9, &e);
    assert_true(l >= 0 && r >= 0);
    int x1 = xfer(d, l, 1e6, "x", 1);
    int x2 = xfer(d, l, 2e6, "x", 2);
    int y = xfer(d, r, 1e6, "y", 1); /* other direction: parallel */
    int c = task(d, DES_NO_RESOURCE, 1e-3, "c", 0, 0);
    dep(d, x2, c);
    run_ok(d);
    EQ(des_task_start_s(d, x1), 0);
    EQ(des_task_end_s(d, x1), 2e-3);  /* b/β + α */
    EQ(des_task_start_s(d, x2), 1e-3); /* link released after b/β */
    EQ(des_task_end_s(d, x2), 4e-3);
    EQ(des_task_start_s(d, y), 0);
    EQ(des_task_end_s(d, y), 2e-3);
    EQ(des_task_start_s(d, c), 4e-3);
    EQ(des_makespan_s(d), 5e-3);
    EQ(des_resource_busy_s(d, l), 3e-3);
    EQ(des_resource_busy_s(d, r), 1e-3);
    des_task_info ti;
    assert_int_equal(des_task_get(d, x2, &ti, &e), 0);
    EQ(ti.release_s, 3e-3);
    EQ(ti.work, 2e6);
    assert_string_equal(ti.label, "x");
    des_free(d);
}

static void test_shared_link_two_flows(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int l = des_add_shared_link(d, "net", 0.1, 100, &e);
    int a = xfer(d, l, 100, "a", 0);
    int w = task(d, DES_NO_RESOURCE, 0.5, "wait", 0, 0);
    int b = xfer(d, l, 100, "b", 0);
    dep(d, w, b);
    run_ok(d);
    /* a alone for 0.5 s (50 B), then 50 B/s each: a's last 50 B by 1.5,
     * b's remaining 50 B alone by 2.0; each lands α = 0.1 s later. */
    des_task_info ia, ib;
    des_task_get(d, a, &ia, &e);
    des_task_get(d, b, &ib, &e);
    EQ(ia.release_s, 1.5);
    EQ(ia.end_s, 1.6);
    EQ(ib.start_s, 0.5);
    EQ(ib.release_s, 2.0);
    EQ(ib.end_s, 2.1);
    EQ(des_makespan_s(d), 2.1);
    EQ(des_resource_busy_s(d, l), 2.0);
    des_free(d);
}

static void test_shared_link_three_flows(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int l = des_add_shared_link(d, "net", 0, 300, &e);
    int a = xfer(d, l, 300, "a", 0);
    int b = xfer(d, l, 300, "b", 0);
    int w = task(d, DES_NO_RESOURCE, 0.5, "wait", 0, 0);
    int c = xfer(d, l, 150, "c", 0);
    dep(d, w, c);
    /* A flow joining when a third leaves: at 2.0 c ends, a zero-byte flow
     * joins at 2.0 and ends at once. */
    int z = xfer(d, l, 0, "z", 0);
    dep(d, c, z);
    run_ok(d);
    /* 0-0.5: a, b at 150 B/s (75 B each).  Then 100 B/s each: c's 150 B by
     * 2.0, a and b have 75 B left, then 150 B/s each: done at 2.5. */
    EQ(des_task_end_s(d, c), 2.0);
    EQ(des_task_end_s(d, a), 2.5);
    EQ(des_task_end_s(d, b), 2.5);
    EQ(des_task_start_s(d, z), 2.0);
    EQ(des_task_end_s(d, z), 2.0);
    EQ(des_resource_busy_s(d, l), 2.5);
    des_free(d);
}

static void mem(des *d, int t, int pool, double delta, des_when w)
{
    ps_err e = {0};
    if (des_add_mem(d, t, pool, delta, w, &e))
        fail_msg("des_add_mem: %s", e.msg);
}

static void test_memory_peak_and_frees_first(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int pool = des_add_pool(d, "hbm", 100, &e);
    int s1 = des_add_stream(d, "s1", DES_FIFO, &e);
    int s2 = des_add_stream(d, "s2", DES_FIFO, &e);
    /* b (lower id) allocates at t=1 exactly when a frees: no overflow. */
    int w = task(d, DES_NO_RESOURCE, 1, "wait", 0, 0);
    int b = task(d, s2, 1, "b", 0, 0);
    int a = task(d, s1, 1, "a", 0, 0);
    dep(d, w, b);
    mem(d, a, pool, 100, DES_AT_START);
    mem(d, a, pool, -100, DES_AT_END);
    mem(d, b, pool, 100, DES_AT_START);
    mem(d, b, pool, -60, DES_AT_END);
    /* c runs after b, on top of the 40 bytes b keeps. */
    int c = task(d, s1, 1, "c", 0, 0);
    dep(d, b, c);
    mem(d, c, pool, 30, DES_AT_START);
    mem(d, c, pool, -30, DES_AT_END);
    run_ok(d);
    assert_false(des_oom_get(d, NULL));
    EQ(des_pool_peak_bytes(d, pool), 100);
    EQ(des_pool_used_bytes(d, pool), 40);
    EQ(des_task_start_s(d, b), 1);
    des_free(d);

    /* Overlapping allocations: peak = the sum at the busiest instant. */
    d = mk();
    pool = des_add_pool(d, "p", INFINITY, &e);
    int x = task(d, DES_NO_RESOURCE, 3, "x", 0, 0);
    int y = task(d, DES_NO_RESOURCE, 1, "y", 0, 0);
    int z = task(d, DES_NO_RESOURCE, 1, "z", 0, 0);
    dep(d, y, z);
    mem(d, x, pool, 30, DES_AT_START);
    mem(d, x, pool, -30, DES_AT_END);
    mem(d, y, pool, 50, DES_AT_START);
    mem(d, y, pool, -50, DES_AT_END);
    mem(d, z, pool, 45, DES_AT_START);
    mem(d, z, pool, 10, DES_AT_START); /* two records, one instant: 55 */
    mem(d, z, pool, -55, DES_AT_END);
    run_ok(d);
    EQ(des_pool_peak_bytes(d, pool), 85);
    EQ(des_pool_used_bytes(d, pool), 0);
    des_free(d);
}

static void test_oom(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int pool = des_add_pool(d, "gpu3", 100, &e);
    int a = task(d, DES_NO_RESOURCE, 2, "a", 0, 0);
    int w = task(d, DES_NO_RESOURCE, 1, "w", 0, 0);
    int b = task(d, DES_NO_RESOURCE, 1, "bigact", 7, 3);
    dep(d, w, b);
    mem(d, a, pool, 60, DES_AT_START);
    mem(d, b, pool, 50, DES_AT_START);
    int rc = des_run(d, &e);
    assert_int_equal(rc, DES_OOM);
    assert_int_equal(e.code, PS_ERUN);
    assert_non_null(strstr(e.msg, "gpu3"));
    assert_non_null(strstr(e.msg, "bigact 7.3"));
    assert_non_null(strstr(e.msg, "short by 10"));
    des_oom o;
    assert_true(des_oom_get(d, &o));
    assert_int_equal(o.pool, pool);
    assert_int_equal(o.task, b);
    EQ(o.time_s, 1);
    EQ(o.requested_bytes, 50);
    EQ(o.in_use_bytes, 60);
    EQ(o.capacity_bytes, 100);
    EQ(o.shortfall_bytes, 10);
    des_free(d);
}

static void test_errors(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int s = des_add_stream(d, "s", DES_FIFO, &e);
    assert_int_equal(des_add_task(d, s + 5, 1, "x", 0, 0, &e), -1);
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, "unknown resource"));
    assert_int_equal(des_add_task(d, s, -1, "neg", 0, 0, &e), -1);
    assert_non_null(strstr(e.msg, "duration"));
    assert_int_equal(des_add_task(d, s, NAN, "nan", 0, 0, &e), -1);
    assert_int_equal(e.code, PS_EINPUT);
    assert_int_equal(des_add_transfer(d, s, 10, "x", 0, 0, &e), -1); /* a stream */
    int l = des_add_link(d, "l", 0, 1, &e);
    assert_int_equal(des_add_task(d, l, 1, "x", 0, 0, &e), -1); /* a link */
    assert_int_equal(des_add_link(d, "bad", 0, 0, &e), -1);
    int a = task(d, s, 1, "a", 0, 0);
    assert_int_equal(des_add_dep(d, a, 99, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "unknown task 99"));
    assert_int_equal(des_add_dep(d, -1, a, &e), PS_EINPUT);
    assert_int_equal(des_add_mem(d, a, 0, 1, DES_AT_START, &e), PS_EINPUT); /* no pool */
    des_free(d);

    /* A cycle behind a healthy prefix; the message names a task on it. */
    d = mk();
    int h = task(d, DES_NO_RESOURCE, 1, "head", 0, 0);
    int c1 = task(d, DES_NO_RESOURCE, 1, "cyc", 1, 0);
    int c2 = task(d, DES_NO_RESOURCE, 1, "cyc", 2, 0);
    int c3 = task(d, DES_NO_RESOURCE, 1, "cyc", 3, 0);
    int tail = task(d, DES_NO_RESOURCE, 1, "tail", 0, 0);
    dep(d, h, c1);
    dep(d, c1, c2);
    dep(d, c2, c3);
    dep(d, c3, c1);
    dep(d, c3, tail);
    assert_int_equal(des_run(d, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "cycle"));
    assert_non_null(strstr(e.msg, "'cyc 1.0'"));
    assert_non_null(strstr(e.msg, "'cyc 2.0'"));
    assert_null(strstr(e.msg, "tail"));
    assert_int_equal(des_run(d, &e), PS_EINPUT); /* not twice */
    des_free(d);

    d = mk();
    a = task(d, DES_NO_RESOURCE, 1, "self", 0, 0);
    dep(d, a, a);
    assert_int_equal(des_run(d, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "'self 0.0'"));
    des_free(d);
}

/* A serving loop: each step's end creates the next step. */
typedef struct loop_ctx {
    int stream, steps, made, blocker;
    int ids[16];
} loop_ctx;

static int on_step(des *d, int t, double now, void *user, ps_err *e)
{
    loop_ctx *c = user;
    (void)now;
    if (c->made == c->steps)
        return 0;
    int x = des_add_task(d, c->stream, 1, "step", c->made, 0, e);
    if (x < 0)
        return e->code;
    c->ids[c->made++] = x;
    if (des_add_dep(d, t, x, e)) /* t has finished: satisfied at once */
        return e->code;
    if (c->made == 6 && des_add_dep(d, c->blocker, x, e)) /* still running */
        return e->code;
    return des_on_finish(d, x, on_step, c, e);
}

static int on_fail(des *d, int t, double now, void *user, ps_err *e)
{
    (void)d;
    (void)t;
    (void)now;
    (void)user;
    return ps_errf(e, PS_ERUN, "callback says no");
}

static void test_dynamic_loop(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    loop_ctx c = {.steps = 10};
    c.stream = des_add_stream(d, "gpu", DES_FIFO, &e);
    c.blocker = task(d, DES_NO_RESOURCE, 7, "blocker", 0, 0);
    c.ids[0] = task(d, c.stream, 1, "step", 0, 0);
    c.made = 1;
    assert_int_equal(des_on_finish(d, c.ids[0], on_step, &c, &e), 0);
    run_ok(d);
    assert_int_equal(c.made, 10);
    assert_int_equal(des_task_count(d), 11);
    for (int k = 0; k < 5; k++)
        EQ(des_task_start_s(d, c.ids[k]), k);
    for (int k = 5; k < 10; k++)
        EQ(des_task_start_s(d, c.ids[k]), k + 2); /* step 5 waited for the blocker */
    EQ(des_makespan_s(d), 12);
    des_free(d);

    d = mk();
    int a = task(d, DES_NO_RESOURCE, 1, "a", 0, 0);
    des_on_finish(d, a, on_fail, NULL, &e);
    assert_int_equal(des_run(d, &e), PS_ERUN);
    assert_string_equal(e.msg, "callback says no");
    des_free(d);
}

/* A callback that closes a cycle among the tasks it creates. */
static int on_make_cycle(des *d, int t, double now, void *user, ps_err *e)
{
    (void)t;
    (void)now;
    (void)user;
    int x = des_add_task(d, DES_NO_RESOURCE, 1, "loopy", 1, 0, e);
    int y = des_add_task(d, DES_NO_RESOURCE, 1, "loopy", 2, 0, e);
    if (x < 0 || y < 0 || des_add_dep(d, x, y, e) || des_add_dep(d, y, x, e))
        return PS_ERUN;
    return 0;
}

static void test_dynamic_cycle(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int a = task(d, DES_NO_RESOURCE, 1, "a", 0, 0);
    des_on_finish(d, a, on_make_cycle, NULL, &e);
    assert_int_equal(des_run(d, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "cycle"));
    assert_non_null(strstr(e.msg, "loopy"));
    des_free(d);
}

/* A random mixed workload: streams of both orders, links, shared links,
 * delays, pools, zero durations. */
static des *random_workload(uint64_t seed, int n)
{
    rng_state = seed;
    ps_err e = {0};
    des *d = mk();
    int res[6];
    res[0] = des_add_stream(d, "s0", DES_FIFO, &e);
    res[1] = des_add_stream(d, "s1", DES_PRIORITY, &e);
    res[2] = des_add_link(d, "l0", 1e-6, 1e9, &e);
    res[3] = des_add_shared_link(d, "sh0", 2e-6, 1e9, &e);
    res[4] = DES_NO_RESOURCE;
    res[5] = des_add_stream(d, "s2", DES_FIFO, &e);
    int pool = des_add_pool(d, "mem", INFINITY, &e);
    for (int i = 0; i < n; i++) {
        int k = (int)(rnd() % 6), x;
        double w = (rnd() % 8 == 0) ? 0 : (double)(rnd() % 100) * 1e-6;
        if (k == 2 || k == 3)
            x = xfer(d, res[k], w * 1e9, "x", i);
        else
            x = task(d, res[k], w, "t", i, (int)(rnd() % 3));
        if (k == 1)
            des_set_priority(d, x, (int64_t)(rnd() % 5), &e);
        if (rnd() % 4 == 0) {
            mem(d, x, pool, 10, DES_AT_START);
            mem(d, x, pool, -10, DES_AT_END);
        }
        for (int j = 0; j < 2 && i > 0; j++)
            if (rnd() % 2)
                dep(d, (int)(rnd() % (uint64_t)i), x);
    }
    return d;
}

static void test_determinism(void **st)
{
    (void)st;
    int n = 3000;
    des *a = random_workload(7, n), *b = random_workload(7, n);
    run_ok(a);
    run_ok(b);
    assert_int_equal(des_event_count(a), des_event_count(b));
    assert_true(des_makespan_s(a) == des_makespan_s(b));
    for (int i = 0; i < n; i++) {
        double s1 = des_task_start_s(a, i), s2 = des_task_start_s(b, i);
        double e1 = des_task_end_s(a, i), e2 = des_task_end_s(b, i);
        assert_memory_equal(&s1, &s2, sizeof s1);
        assert_memory_equal(&e1, &e2, sizeof e1);
    }
    /* Dependencies hold in the timeline. */
    des_free(a);
    des_free(b);
}

static void test_timeline_table(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int s = des_add_stream(d, "gpu0", DES_FIFO, &e);
    int a = task(d, s, 1.5, "fwd", 2, 7);
    int b = task(d, DES_NO_RESOURCE, 0.5, "wait", -1, -1);
    dep(d, a, b);
    run_ok(d);
    ps_table *t = NULL;
    assert_int_equal(des_timeline_table(d, &t, &e), 0);
    assert_int_equal(t->nrows, 2);
    int cn = ps_table_col(t, "name"), cr = ps_table_col(t, "resource");
    int cs = ps_table_col(t, "start_s"), ce = ps_table_col(t, "end_s");
    assert_true(cn >= 0 && cr >= 0 && cs >= 0 && ce >= 0);
    assert_string_equal(t->cols[cs].units, "s");
    assert_string_equal(ps_table_get_s(t, 0, cn), "fwd");
    assert_string_equal(ps_table_get_s(t, 0, cr), "gpu0");
    assert_int_equal(ps_table_get_i(t, 0, ps_table_col(t, "tag0")), 2);
    assert_int_equal(ps_table_get_i(t, 0, ps_table_col(t, "tag1")), 7);
    EQ(ps_table_get_d(t, 1, cs), 1.5);
    EQ(ps_table_get_d(t, 1, ce), 2.0);
    assert_int_equal(ps_table_get_i(t, 1, ps_table_col(t, "task")), b);
    ps_table_free(t);
    des_free(d);
}

static void test_trace_json(void **st)
{
    (void)st;
    int n = 400;
    des *d = random_workload(11, n);
    run_ok(d);
    char path[] = "/tmp/test_des_traceXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    ps_err e = {0};
    if (des_write_trace(d, path, &e))
        fail_msg("des_write_trace: %s", e.msg);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        fail_msg("trace does not parse: %s line %d", je.text, je.line);
    json_t *ev = json_object_get(root, "traceEvents");
    assert_true(json_is_array(ev));
    size_t nx = 0, nthread = 0, i;
    json_t *v;
    /* Per tid, X slices must not overlap (Perfetto needs nesting). */
    typedef struct { int tid; double ts, dur; } sl;
    sl *sls = malloc(json_array_size(ev) * sizeof *sls);
    json_array_foreach(ev, i, v) {
        const char *ph = json_string_value(json_object_get(v, "ph"));
        assert_non_null(ph);
        if (strcmp(ph, "X") == 0) {
            json_t *args = json_object_get(v, "args");
            assert_true(json_is_integer(json_object_get(args, "task")));
            assert_true(json_is_integer(json_object_get(args, "tag0")));
            sls[nx].tid = (int)json_integer_value(json_object_get(v, "tid"));
            sls[nx].ts = json_number_value(json_object_get(v, "ts"));
            sls[nx].dur = json_number_value(json_object_get(v, "dur"));
            assert_true(sls[nx].dur >= 0);
            nx++;
        } else if (strcmp(ph, "M") == 0 &&
                   strcmp(json_string_value(json_object_get(v, "name")), "thread_name") == 0) {
            nthread++;
        }
    }
    for (size_t p = 1; p < nx; p++) /* insertion sort by (tid, ts, dur) */
        for (size_t q = p; q > 0 && (sls[q - 1].tid > sls[q].tid ||
                                     (sls[q - 1].tid == sls[q].tid && sls[q - 1].ts > sls[q].ts) ||
                                     (sls[q - 1].tid == sls[q].tid && sls[q - 1].ts == sls[q].ts &&
                                      sls[q - 1].dur > sls[q].dur)); q--) {
            sl tmp = sls[q];
            sls[q] = sls[q - 1];
            sls[q - 1] = tmp;
        }
    for (size_t p = 1; p < nx; p++)
        if (sls[p].tid == sls[p - 1].tid)
            if (!(sls[p].ts >= sls[p - 1].ts + sls[p - 1].dur - 1e-5))
                fail_msg("tid %d: slice at %.6f overlaps [%.6f, +%.6f]", sls[p].tid, sls[p].ts, sls[p - 1].ts, sls[p - 1].dur);
    free(sls);
    assert_int_equal(nx, (size_t)n);
    assert_true(nthread >= (size_t)des_resource_count(d));
    json_decref(root);
    des_free(d);

    /* Exact values on a known task; the file replaced atomically. */
    d = mk();
    int s = des_add_stream(d, "gpu \"0\"", DES_FIFO, &e);
    int w = task(d, DES_NO_RESOURCE, 1e-3, "wait", -1, -1);
    int a = task(d, s, 2.5e-3, "fwd", 3, 4);
    dep(d, w, a);
    run_ok(d);
    assert_int_equal(des_write_trace(d, path, &e), 0);
    root = json_load_file(path, 0, &je);
    assert_non_null(root);
    ev = json_object_get(root, "traceEvents");
    int found = 0, named = 0;
    json_array_foreach(ev, i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *ph = json_string_value(json_object_get(v, "ph"));
        if (strcmp(ph, "X") == 0 && strcmp(name, "fwd 3.4") == 0) {
            found = 1;
            EQ(json_number_value(json_object_get(v, "ts")), 1000);
            EQ(json_number_value(json_object_get(v, "dur")), 2500);
            assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "args"), "task")), a);
        }
        if (strcmp(ph, "M") == 0 && strcmp(name, "thread_name") == 0 &&
            strcmp(json_string_value(json_object_get(json_object_get(v, "args"), "name")), "gpu \"0\"") == 0)
            named = 1;
    }
    assert_true(found && named);
    json_decref(root);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    unlink(path);
    des_free(d);
}

/* Frees at a timestamp are seen before allocations even across zero-length
 * rounds: a zero-duration task freeing at t lets a task start at t. */
static void test_zero_duration_rounds(void **st)
{
    (void)st;
    ps_err e = {0};
    des *d = mk();
    int pool = des_add_pool(d, "p", 10, &e);
    int a = task(d, DES_NO_RESOURCE, 1, "a", 0, 0);
    int z = task(d, DES_NO_RESOURCE, 0, "z", 0, 0);
    int b = task(d, DES_NO_RESOURCE, 1, "b", 0, 0);
    dep(d, a, z);
    dep(d, z, b);
    mem(d, a, pool, 10, DES_AT_START);
    mem(d, z, pool, -10, DES_AT_END);
    mem(d, b, pool, 10, DES_AT_START);
    run_ok(d);
    EQ(des_task_start_s(d, z), 1);
    EQ(des_task_start_s(d, b), 1);
    EQ(des_makespan_s(d), 2);
    EQ(des_pool_peak_bytes(d, pool), 10);
    des_free(d);
}

/* The quick bench: exact event counts (one per compute task, two per
 * transfer: link release, then arrival), positive rates. */
static void test_bench_quick(void **st)
{
    (void)st;
    des_bench_opts o = {.quick = 1};
    des_bench_result r;
    ps_err e = {0};
    if (des_bench(&o, &r, &e))
        fail_msg("des_bench: %s", e.msg);
    int p = r.pipeline.stages, m = r.pipeline.microbatches;
    assert_int_equal(r.pipeline.events, (uint64_t)(2 * p * m + 4 * (p - 1) * m));
    assert_int_equal(r.pipeline.tasks, (uint64_t)(2 * p * m + 2 * (p - 1) * m));
    assert_true(r.pipeline.events_per_s > 0);
    assert_int_equal(r.hold.events, 1000000);
    assert_true(r.hold.events_per_s > 0);
    assert_int_equal(r.npoints, 3);
    for (int k = 0; k < r.npoints; k++) {
        const des_bench_point *pt = &r.scaling[k];
        assert_int_equal(pt->events, (uint64_t)(2 * 64 * pt->microbatches + 4 * 63 * pt->microbatches));
        assert_true(pt->ns_per_event > 0 && pt->ns_per_event_log2 > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_fork_join),
        cmocka_unit_test(test_critical_path_random),
        cmocka_unit_test(test_one_resource_sum),
        cmocka_unit_test(test_fifo_priority_order),
        cmocka_unit_test(test_link_alpha_beta),
        cmocka_unit_test(test_shared_link_two_flows),
        cmocka_unit_test(test_shared_link_three_flows),
        cmocka_unit_test(test_memory_peak_and_frees_first),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_dynamic_loop),
        cmocka_unit_test(test_dynamic_cycle),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_timeline_table),
        cmocka_unit_test(test_trace_json),
        cmocka_unit_test(test_zero_duration_rounds),
        cmocka_unit_test(test_bench_quick),
    };
    return cmocka_run_group_tests_name("des", tests, NULL, NULL);
}
