/* The pipeline replay (real/replay.h): plans executed for real on worker
 * threads in the simulator's per-device order.
 *   - every task runs exactly once, in the simulator's order per worker, and
 *     each stage's own tasks follow the schedule's order (pp_stage_order);
 *   - every task starts after its producers ended (measured stamps);
 *   - pipelining does not change the math: the weights after one step equal
 *     one SGD step of the same model on the whole mini-batch at once
 *     (ps_replay_sequential), f32 tolerance; the loss goes down;
 *   - errors: missing plan, unsupported kind, a plan too long to replay. */
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

#include "replay_testutil.h"

static ps_replay_opts quick(int iterations)
{
    ps_replay_opts o = {.iterations = iterations, .warmup = 0, .warmup_set = 1, .workers = 2,
                        .exact_iterations = 1,
                        .calib_reps = 2, .no_pin = 1, .keep_weights = 1, .quiet = 1,
                        .lr = 0.1, .seed = 7};
    return o;
}

static void check_run(const pp_plan *p, const pp_model *m, const ps_replay_result *r)
{
    assert_int_equal(r->workers, 2);
    check_exec_order(p, r);
    check_stage_order(p, r);
    /* producers end before their consumers start; data edges are there */
    int cross = 0;
    for (int i = 0; i < r->ntasks; i++)
        for (int d = r->dep_off[i]; d < r->dep_off[i + 1]; d++) {
            int j = r->deps[d];
            assert_true(r->tasks[j].meas_end_s <= r->tasks[i].meas_start_s);
            cross += r->tasks[j].stage != r->tasks[i].stage;
        }
    assert_true(cross >= 2 * p->nedges);
    /* the same from the plan alone: across every stage edge u -> v, F(v, k)
     * starts after F(u, j) ends and B(u, j) after B(v, k), for overlapping
     * sample ranges; W after B of the same micro-batch */
    for (int q = 0; q < p->nedges; q++) {
        int u = p->edges[q].from, v = p->edges[q].to;
        int bu = p->stages[u].microbatch, bv = p->stages[v].microbatch;
        for (int i = 0; i < r->ntasks; i++)
            for (int j = 0; j < r->ntasks; j++) {
                const ps_replay_task *a = &r->tasks[i], *c = &r->tasks[j];
                if (a->kind != c->kind || a->kind == PP_OP_WGRAD)
                    continue;
                int fw = a->kind == PP_OP_FWD;
                if (a->stage != (fw ? u : v) || c->stage != (fw ? v : u))
                    continue;
                int ba = fw ? bu : bv, bc = fw ? bv : bu;
                int lo = a->mb * ba > c->mb * bc ? a->mb * ba : c->mb * bc;
                int hi = (a->mb + 1) * ba < (c->mb + 1) * bc ? (a->mb + 1) * ba : (c->mb + 1) * bc;
                if (lo < hi)
                    assert_true(a->meas_end_s <= c->meas_start_s);
            }
    }
    for (int i = 0; i < r->ntasks; i++)
        for (int j = 0; j < r->ntasks; j++)
            if (r->tasks[i].stage == r->tasks[j].stage && r->tasks[i].mb == r->tasks[j].mb &&
                r->tasks[j].kind == r->tasks[i].kind + 1)
                assert_true(r->tasks[i].meas_end_s <= r->tasks[j].meas_start_s);
    assert_true(r->measured_iteration_s > 0 && r->predicted_iteration_s > 0);
    assert_true(isfinite(r->rel_err));
    (void)m;
}

static void check_same_math(const pp_plan *p, const pp_model *m)
{
    ps_replay_opts o = quick(1);
    ps_replay_result r;
    ps_err e = {0};
    int rc = ps_replay_run(p, m, &o, &r, &e);
    if (rc)
        fail_msg("replay: %s", e.msg);
    check_run(p, m, &r);
    float *w;
    size_t n;
    double loss;
    assert_int_equal(ps_replay_sequential(m, p->minibatch, 1, &o, &w, &n, &loss, &e), 0);
    assert_int_equal(n, r.nweights);
    assert_true(n > 0);
    double maxd = 0, maxw = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        maxd = fmax(maxd, fabs((double)w[i] - r.weights[i]));
        maxw = fmax(maxw, fabs(w[i]));
    }
    /* the step moved the weights, and both agree to f32 rounding */
    float *w0;
    ps_replay_opts o0 = o;
    o0.lr = 1e-30;
    assert_int_equal(ps_replay_sequential(m, p->minibatch, 1, &o0, &w0, &n, NULL, &e), 0);
    for (size_t i = 0; i < n; i++)
        moved = fmax(moved, fabs((double)w0[i] - w[i]));
    assert_true(moved > 1e-4);
    if (!(maxd <= 2e-6 * (1 + maxw)))
        fail_msg("replayed weights differ from the sequential step by %g (step %g)", maxd, moved);
    assert_true(fabs(loss - r.loss_first) <= 1e-5 * loss);
    free(w);
    free(w0);
    ps_replay_result_free(&r);
}

static void test_chain(void **st)
{
    (void)st;
    pp_model *m = chain_model();
    const char *s0[] = {"x", "l0", "l1", NULL}, *s1[] = {"l2", "l3", NULL};
    const char *const *so[] = {s0, s1};
    int b[2] = {2, 2}, dev[2] = {0, 1};
    pp_schedule sc[3] = {PP_1F1B, PP_GPIPE, PP_ZB_H1};
    for (int k = 0; k < 3; k++) {
        pp_plan *p = make_plan(m, 2, so, b, dev, 8, sc[k]);
        check_same_math(p, m);
        pp_plan_free(p);
    }
    /* training: the loss goes down */
    pp_plan *p = make_plan(m, 2, so, b, dev, 8, PP_1F1B);
    ps_replay_opts o = quick(6);
    ps_replay_result r;
    ps_err e = {0};
    assert_int_equal(ps_replay_run(p, m, &o, &r, &e), 0);
    assert_true(r.loss_last < 0.95 * r.loss_first);
    ps_replay_result_free(&r);
    pp_plan_free(p);
    pp_model_free(m);
}

/* Three stages on two workers: the fork's two branches and the join (on
 * branch b's device), the join with twice the micro-batch. */
static void test_fork_join(void **st)
{
    (void)st;
    pp_model *m = fj_model();
    const char *s0[] = {"a", "a0", "a1", NULL}, *s1[] = {"b", "b0", NULL},
               *s2[] = {"cat", "f", "g", NULL};
    const char *const *so[] = {s0, s1, s2};
    int b[3] = {2, 2, 4}, dev[3] = {0, 1, 1};
    pp_plan *p = make_plan(m, 3, so, b, dev, 8, PP_1F1B);
    check_same_math(p, m);
    pp_plan_free(p);
    int b2[3] = {2, 2, 2};
    p = make_plan(m, 3, so, b2, dev, 8, PP_ZB_H1);
    check_same_math(p, m);
    pp_plan_free(p);
    pp_model_free(m);
}

static void test_errors(void **st)
{
    (void)st;
    ps_replay_opts o = quick(1);
    ps_replay_result r;
    ps_err e = {0};
    assert_int_equal(ps_replay_plan_file("/nonexistent/plan.json", &o, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/plan.json"));

    /* an attention op */
    pp_model *m = pp_model_new("att", &e);
    add(m, "x", "input", NULL, NULL, 0, 4.0 * 4 * 8);
    ps_op a;
    int64_t d[5] = {1, 1, 4, 4, 8};
    assert_int_equal(ps_op_make(&a, "attention", NULL, "none", d, 5, &e), 0);
    add(m, "att", "attention", &a, NULL, 0, -1);
    assert_int_equal(pp_model_add_input(m, 1, 0, &e), 0);
    assert_int_equal(pp_model_finish(m, &e), 0);
    const char *s0[] = {"x", NULL}, *s1[] = {"att", NULL};
    const char *const *so[] = {s0, s1};
    int b[2] = {1, 1}, dev[2] = {0, 1};
    pp_plan *p = make_plan(m, 2, so, b, dev, 2, PP_1F1B);
    ps_err_clear(&e);
    assert_int_equal(ps_replay_run(p, m, &o, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "\"att\""));
    assert_non_null(strstr(e.msg, "attention"));
    pp_plan_free(p);
    pp_model_free(m);

    /* too long: 2 x 8192^2 x 8192 x 3 flop x 1024 samples */
    m = pp_model_new("big", &e);
    add(m, "x", "input", NULL, NULL, 0, 4.0 * 8192);
    ps_op g = gemm(1, 8192, 8192);
    add(m, "l0", "gemm", &g, NULL, 0, -1);
    add(m, "l1", "gemm", &g, NULL, 0, -1);
    assert_int_equal(pp_model_add_input(m, 1, 0, &e), 0);
    assert_int_equal(pp_model_add_input(m, 2, 1, &e), 0);
    assert_int_equal(pp_model_finish(m, &e), 0);
    const char *t0[] = {"x", "l0", NULL}, *t1[] = {"l1", NULL};
    const char *const *to[] = {t0, t1};
    int bb[2] = {64, 64};
    p = make_plan(m, 2, to, bb, dev, 1024, PP_1F1B);
    o.max_seconds = 1; /* the pre-check alone must refuse it (about 8 s at 200 GFLOP/s) */
    ps_err_clear(&e);
    assert_int_equal(ps_replay_run(p, m, &o, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "max-seconds"));
    pp_plan_free(p);
    pp_model_free(m);

    /* an unknown device is refused; cuda without a usable GPU too (the
     * CUDA replay itself: tests/test_replay_cuda.c) */
    ps_replay_opts oc = quick(1);
    oc.device = "tpu";
    m = chain_model();
    const char *c0[] = {"x", "l0", "l1", NULL}, *c1[] = {"l2", "l3", NULL};
    const char *const *co[] = {c0, c1};
    int cb[2] = {2, 2};
    p = make_plan(m, 2, co, cb, dev, 4, PP_1F1B);
    ps_err_clear(&e);
    assert_int_equal(ps_replay_run(p, m, &oc, &r, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "tpu"));
    char why[256];
    if (ps_gpu_count(why, sizeof why) <= 0) {
        oc.device = "cuda";
        ps_err_clear(&e);
        assert_int_equal(ps_replay_run(p, m, &oc, &r, &e), PS_ERUN);
        assert_non_null(strstr(e.msg, "cuda"));
    }
    pp_plan_free(p);
    pp_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_fork_join),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
