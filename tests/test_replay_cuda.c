/* The pipeline replay on CUDA (real/replay_cuda.c; `--device cuda`): one
 * stream and one host thread per plan device, cross-stream dependencies
 * through CUDA events, task times from events.
 *   - every task runs exactly once, each worker in the simulator's order
 *     (its own prediction's start order), each stage's own tasks in the
 *     schedule's order;
 *   - the weights after one step equal the CPU replay's (same seed, same
 *     model): ‖w_cuda − w_cpu‖ / ‖w_cpu‖ <= 1e-4, and the step itself
 *     (w − w0) agrees to 1e-3 of its size; the first loss agrees;
 *   - predicted and measured iteration times are finite and positive; every
 *     task's measured interval is finite and ordered; producers end before
 *     their consumers start (event times; 5 us slack for the timer);
 *   - a few iterations lower the loss.
 * Plans: a 2-stage chain (1F1B, ZB-H1) and a 3-stage fork-join (three
 * streams; and two, the join sharing a stream with a branch).
 *
 * Without a usable GPU (no driver, no device, or a build without CUDA such
 * as build/san) every GPU test calls skip() and says why; the one test
 * that runs then checks that `--device cuda` is refused clearly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gpu.h"
#include "real/replay.h"
#include "real/rt.h"

#include "replay_testutil.h"

static int have_gpu;
static char no_gpu[512];

#define NEED_GPU()                                                                                \
    do {                                                                                          \
        if (!have_gpu) {                                                                          \
            print_message("no usable GPU (%s): skipping\n", no_gpu);                              \
            skip();                                                                               \
        }                                                                                         \
    } while (0)

static ps_replay_opts quick(const char *device, int iterations, int workers)
{
    ps_replay_opts o = {.device = device, .iterations = iterations, .warmup = 0,
                        .warmup_set = 1, .workers = workers, .calib_reps = 3, .no_pin = 1,
                        .keep_weights = 1, .quiet = 1, .exact_iterations = 1, .lr = 0.1,
                        .seed = 7};
    return o;
}

static void check_run(const pp_plan *p, const ps_replay_result *r, int workers)
{
    assert_int_equal(r->workers, workers);
    assert_non_null(strstr(r->device, "cuda"));
    check_exec_order(p, r);
    /* each (stage, kind, mb) exactly once */
    for (int i = 0; i < r->ntasks; i++)
        for (int j = i + 1; j < r->ntasks; j++)
            assert_false(r->tasks[i].stage == r->tasks[j].stage &&
                         r->tasks[i].kind == r->tasks[j].kind && r->tasks[i].mb == r->tasks[j].mb);
    check_stage_order(p, r);
    /* measured intervals: finite, ordered; producers before consumers */
    for (int i = 0; i < r->ntasks; i++) {
        const ps_replay_task *t = &r->tasks[i];
        assert_true(isfinite(t->meas_start_s) && isfinite(t->meas_end_s));
        assert_true(t->meas_start_s >= -1e-6);
        assert_true(t->meas_end_s >= t->meas_start_s);
        assert_true(t->meas_end_s <= r->measured_iteration_s * 1.000001 + 1e-9 ||
                    r->iterations > 1);
    }
    /* (on one GPU: several GPUs time each from its own start events) */
    int one_gpu = strstr(r->device, " on 1 GPU") != NULL, cross = 0;
    for (int i = 0; i < r->ntasks; i++)
        for (int d = r->dep_off[i]; d < r->dep_off[i + 1]; d++) {
            int j = r->deps[d];
            if (one_gpu && !(r->tasks[j].meas_end_s <= r->tasks[i].meas_start_s + 5e-6))
                fail_msg("task %d (stage %d) starts at %g s, before its producer %d (stage %d) "
                         "ends at %g s", i, r->tasks[i].stage, r->tasks[i].meas_start_s, j,
                         r->tasks[j].stage, r->tasks[j].meas_end_s);
            cross += r->tasks[j].stage != r->tasks[i].stage;
        }
    assert_true(cross >= 2 * p->nedges);
    assert_true(isfinite(r->measured_iteration_s) && r->measured_iteration_s > 0);
    assert_true(isfinite(r->predicted_iteration_s) && r->predicted_iteration_s > 0);
    assert_true(isfinite(r->rel_err));
    assert_true(isfinite(r->link_alpha_s) && r->link_alpha_s >= 0);
    for (int s = 0; s < r->nstages; s++)
        assert_true(r->stage_pred_busy_s[s] > 0 && r->stage_meas_busy_s[s] > 0);
    print_message("  %s: %d streams, predicted %.1f us, measured %.1f us (%+.1f%%), link %.2f us, "
                  "loss %.6g\n", r->device, r->workers, 1e6 * r->predicted_iteration_s,
                  1e6 * r->measured_iteration_s, 100 * r->rel_err, 1e6 * r->link_alpha_s,
                  r->loss_first);
}

static double norm2(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (b ? (double)b[i] : 0.0);
        s += d * d;
    }
    return sqrt(s);
}

/* One step on CUDA and on the CPU from the same seed: the same weights. */
static void check_same_as_cpu(const pp_plan *p, const pp_model *m, int workers)
{
    ps_err e = {0};
    ps_replay_opts oc = quick("cuda", 1, 0), oh = quick("cpu", 1, 2);
    ps_replay_result rg, rc;
    if (ps_replay_run(p, m, &oc, &rg, &e))
        fail_msg("cuda replay: %s", e.msg);
    check_run(p, &rg, workers);
    if (ps_replay_run(p, m, &oh, &rc, &e))
        fail_msg("cpu replay: %s", e.msg);
    assert_int_equal(rg.nweights, rc.nweights);
    assert_true(rg.nweights > 0);
    /* the initial weights: a step with a vanishing learning rate */
    float *w0;
    size_t n0;
    ps_replay_opts o0 = oh;
    o0.lr = 1e-30;
    assert_int_equal(ps_replay_sequential(m, p->minibatch, 1, &o0, &w0, &n0, NULL, &e), 0);
    assert_int_equal(n0, rc.nweights);
    size_t n = rc.nweights;
    float *dg = malloc(n * sizeof *dg), *dc = malloc(n * sizeof *dc);
    for (size_t i = 0; i < n; i++) {
        dg[i] = rg.weights[i] - w0[i];
        dc[i] = rc.weights[i] - w0[i];
    }
    double rel = norm2(rg.weights, rc.weights, n) / norm2(rc.weights, NULL, n);
    double step = norm2(dc, NULL, n), rel_step = norm2(dg, dc, n) / step;
    print_message("  weights: |cuda - cpu| / |cpu| = %.3g, step |d_cuda - d_cpu| / |d_cpu| = "
                  "%.3g (step %.3g); loss cuda %.9g cpu %.9g\n", rel, rel_step, step,
                  rg.loss_first, rc.loss_first);
    assert_true(step > 1e-4); /* the step moved the weights */
    if (!(rel <= 1e-4))
        fail_msg("CUDA weights differ from the CPU replay's by %g (relative)", rel);
    if (!(rel_step <= 1e-3))
        fail_msg("the CUDA step differs from the CPU replay's by %g (relative)", rel_step);
    assert_true(fabs(rg.loss_first - rc.loss_first) <= 1e-4 * rc.loss_first);
    free(dg);
    free(dc);
    free(w0);
    ps_replay_result_free(&rg);
    ps_replay_result_free(&rc);
}

static void test_chain(void **st)
{
    (void)st;
    NEED_GPU();
    pp_model *m = chain_model();
    const char *s0[] = {"x", "l0", "l1", NULL}, *s1[] = {"l2", "l3", NULL};
    const char *const *so[] = {s0, s1};
    int b[2] = {2, 2}, dev[2] = {0, 1};
    pp_schedule sc[2] = {PP_1F1B, PP_ZB_H1};
    for (int k = 0; k < 2; k++) {
        pp_plan *p = make_plan(m, 2, so, b, dev, 8, sc[k]);
        check_same_as_cpu(p, m, 2);
        pp_plan_free(p);
    }
    /* training: the loss goes down over a few iterations (after a warm-up) */
    pp_plan *p = make_plan(m, 2, so, b, dev, 8, PP_1F1B);
    ps_replay_opts o = quick("cuda", 6, 0);
    o.warmup = 1;
    ps_replay_result r;
    ps_err e = {0};
    if (ps_replay_run(p, m, &o, &r, &e))
        fail_msg("cuda replay: %s", e.msg);
    check_run(p, &r, 2);
    assert_int_equal(r.iterations, 6);
    for (int i = 0; i < r.iterations; i++)
        assert_true(isfinite(r.iteration_s[i]) && r.iteration_s[i] > 0);
    assert_true(r.loss_last < 0.95 * r.loss_first);
    ps_replay_result_free(&r);
    pp_plan_free(p);
    pp_model_free(m);
}

/* Three stages: the fork's two branches and the join; on three streams,
 * then with the join on branch b's stream (and twice the micro-batch). */
static void test_fork_join(void **st)
{
    (void)st;
    NEED_GPU();
    pp_model *m = fj_model();
    const char *s0[] = {"a", "a0", "a1", NULL}, *s1[] = {"b", "b0", NULL},
               *s2[] = {"cat", "f", "g", NULL};
    const char *const *so[] = {s0, s1, s2};
    int b[3] = {2, 2, 2}, dev3[3] = {0, 1, 2};
    pp_plan *p = make_plan(m, 3, so, b, dev3, 8, PP_1F1B);
    check_same_as_cpu(p, m, 3);
    pp_plan_free(p);
    int b2[3] = {2, 2, 4}, dev2[3] = {0, 1, 1};
    p = make_plan(m, 3, so, b2, dev2, 8, PP_1F1B);
    check_same_as_cpu(p, m, 2);
    pp_plan_free(p);
    pp_model_free(m);
}

/* Without a GPU: `--device cuda` is refused, saying why. */
static void test_refused_without_gpu(void **st)
{
    (void)st;
    if (have_gpu) {
        print_message("a GPU is usable: the refusal is not reachable\n");
        skip();
    }
    pp_model *m = chain_model();
    const char *s0[] = {"x", "l0", "l1", NULL}, *s1[] = {"l2", "l3", NULL};
    const char *const *so[] = {s0, s1};
    int b[2] = {2, 2}, dev[2] = {0, 1};
    pp_plan *p = make_plan(m, 2, so, b, dev, 4, PP_1F1B);
    ps_replay_opts o = quick("cuda", 1, 0);
    ps_replay_result r;
    ps_err e = {0};
    assert_int_equal(ps_replay_run(p, m, &o, &r, &e), PS_ERUN);
    assert_non_null(strstr(e.msg, "--device cuda"));
    assert_non_null(strstr(e.msg, "no usable GPU"));
    assert_null(r.tasks);
    pp_plan_free(p);
    pp_model_free(m);
}

static int group_setup(void **state)
{
    (void)state;
    if (ps_gpu_count(no_gpu, sizeof no_gpu) <= 0)
        return 0;
    ps_err e = {0};
    rt_dev *d = rt_cuda_new(0, &e);
    if (!d) {
        snprintf(no_gpu, sizeof no_gpu, "rt_cuda_new: %s", e.msg);
        return 0;
    }
    rt_dev_free(d);
    have_gpu = 1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_fork_join),
        cmocka_unit_test(test_refused_without_gpu),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
