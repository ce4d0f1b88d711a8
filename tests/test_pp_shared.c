/* Stages sharing a device (plan "shared_devices", pp_sim_opts.device_of_stage):
 * the tasks of every stage on one device run on ONE exclusive stream, each
 * stage's order stays a chain, and the per-device task order is exposed.
 *
 * Hand-computed fork-join (F = 1, B = 2 per micro-batch, GPipe, m = 2, no
 * transfers): A (device 0) and B (device 1) feed C (device 1).  Device 1's
 * FIFO (ready time, then task id; stages A, B, C in that id order):
 *   B.F0 [0,1]  B.F1 [1,2]  C.F0 [2,3]  C.F1 [3,4]  C.B0 [4,6]
 *   B.B0 [6,8] (ready at 6 with C.B1, lower id)  C.B1 [8,10]  B.B1 [10,12]
 * device 0: A.F0 [0,1] A.F1 [1,2] A.B0 [6,8] A.B1 [10,12]; makespan 12.
 * On three devices: C.F0 [1,2] C.F1 [2,3] C.B0 [3,5] C.B1 [5,7], A/B.B1
 * [7,9]; makespan 9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "sim/pipeline/plan.h"
#include "sim/pipeline/schedule_impl.h"

#define NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) <= 1e-9 * (1 + fabs((double)(b))))

/* n opaque ops measured at batch 1: F = tf, B = bi + bw per sample. */
static pp_model *dag(int n, const int (*edges)[2], int ne, double tf, double bi, double bw)
{
    ps_err e = {0};
    pp_model *m = pp_model_new("dag", &e);
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "o%d", i);
        pp_op_spec s = {.id = id, .kind = "opaque", .param_bytes = 0, .out_bytes = 0,
                        .act_bytes = 0, .measured = {1, 1, tf, bi, bw}};
        assert_int_equal(pp_model_add_op(m, &s, &e), i);
    }
    for (int k = 0; k < ne; k++)
        assert_int_equal(pp_model_add_input(m, edges[k][1], edges[k][0], &e), 0);
    if (pp_model_finish(m, &e))
        fail_msg("%s", e.msg);
    return m;
}

static pp_plan *per_stage(const pp_model *m, const int *dev, int minibatch, int b,
                          pp_schedule sched, int shared)
{
    ps_err e = {0};
    int n = pp_model_nops(m);
    pp_plan *pl = pp_plan_new(n, &e);
    pl->minibatch = minibatch;
    pl->schedule = sched;
    pl->shared_devices = shared;
    for (int s = 0; s < n; s++)
        assert_int_equal(pp_plan_set_stage(pl, s, &s, 1, b, &dev[s], 1, 0, &e), 0);
    if (pp_plan_finalize(pl, m, NULL, &e))
        fail_msg("finalize: %s", e.msg);
    return pl;
}

static pp_cluster summit(void)
{
    pp_cluster c;
    ps_err e = {0};
    if (pp_cluster_load("summit", NULL, &c, &e))
        fail_msg("%s", e.msg);
    return c;
}

static const int fj_edges[2][2] = {{0, 2}, {1, 2}};

static void test_fork_join_hand(void **st)
{
    (void)st;
    pp_model *m = dag(3, fj_edges, 2, 1, 1, 1);
    pp_cluster c = summit();
    int shared_dev[3] = {0, 1, 1}, own[3] = {0, 1, 2};
    ps_err e = {0};
    /* C3 holds without the option */
    pp_plan *bad = pp_plan_new(3, &e);
    bad->minibatch = 2;
    bad->schedule = PP_GPIPE;
    for (int s = 0; s < 3; s++)
        pp_plan_set_stage(bad, s, &s, 1, 1, &shared_dev[s], 1, 0, &e);
    assert_int_equal(pp_plan_finalize(bad, m, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "device 1 is in stage"));
    pp_plan_free(bad);

    pp_plan *p = per_stage(m, shared_dev, 2, 1, PP_GPIPE, 1);
    pp_plan_result r;
    assert_int_equal(pp_plan_simulate(p, m, &c, NULL, &r, &e), 0);
    NEAR(r.iteration_s, 12);
    assert_int_equal(r.ndevices, 2);
    NEAR(r.stage_busy_s[1], 6);
    NEAR(r.stage_busy_s[2], 6);
    NEAR(r.ideal_s, 12); /* device 1: two stages' work */
    pp_plan_result_free(&r);

    /* the per-device order and times */
    pp_sim *s = pp_sim_plan(p, m, &c, NULL, &e);
    assert_non_null(s);
    assert_int_equal(pp_sim_run(s, &e), 0);
    assert_int_equal(pp_sim_ndevices(s), 2);
    assert_int_equal(pp_sim_device_id(s, 1), 1);
    assert_int_equal(pp_sim_group_device(s, 2), 1);
    pp_dev_task *t;
    int n;
    assert_int_equal(pp_sim_device_order(s, 1, &t, &n, &e), 0);
    assert_int_equal(n, 8);
    const int want[8][3] = {{1, PP_OP_FWD, 0}, {1, PP_OP_FWD, 1}, {2, PP_OP_FWD, 0},
                            {2, PP_OP_FWD, 1}, {2, PP_OP_BWD, 0}, {1, PP_OP_BWD, 0},
                            {2, PP_OP_BWD, 1}, {1, PP_OP_BWD, 1}};
    const double ws[8] = {0, 1, 2, 3, 4, 6, 8, 10};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(t[i].node, want[i][0]);
        assert_int_equal(t[i].kind, want[i][1]);
        assert_int_equal(t[i].mb, want[i][2]);
        NEAR(t[i].start_s, ws[i]);
        NEAR(t[i].end_s, ws[i] + (want[i][1] == PP_OP_FWD ? 1 : 2));
    }
    free(t);
    assert_int_equal(pp_sim_device_order(s, 0, &t, &n, &e), 0);
    assert_int_equal(n, 4);
    NEAR(t[2].start_s, 6);
    NEAR(t[3].start_s, 10);
    free(t);
    assert_int_equal(pp_sim_device_order(s, 2, &t, &n, &e), PS_EINPUT);
    pp_sim_free(s);

    /* the same stages mapped through device_of_stage on a disjoint plan */
    pp_plan *q = per_stage(m, own, 2, 1, PP_GPIPE, 0);
    assert_int_equal(pp_plan_simulate(q, m, &c, NULL, &r, &e), 0);
    NEAR(r.iteration_s, 9);
    assert_int_equal(r.ndevices, 3);
    pp_plan_result_free(&r);
    pp_sim_opts o = {.device_of_stage = shared_dev};
    assert_int_equal(pp_plan_simulate(q, m, &c, &o, &r, &e), 0);
    NEAR(r.iteration_s, 12);
    assert_int_equal(r.ndevices, 2);
    pp_plan_result_free(&r);
    /* task overhead adds to every F and B */
    pp_sim_opts o2 = {.task_overhead_s = 0.5};
    assert_int_equal(pp_plan_simulate(q, m, &c, &o2, &r, &e), 0);
    NEAR(r.iteration_s, 3 * 1.5 + 3 * 2.5); /* 3F + 3B as without it */
    pp_plan_result_free(&r);
    pp_plan_free(q);
    pp_plan_free(p);
    pp_model_free(m);
}

/* One device holding every stage of a chain serialises all the work:
 * makespan = stages x m x (F + B), under every schedule. */
static void test_one_device_serialises(void **st)
{
    (void)st;
    const int ed[3][2] = {{0, 1}, {1, 2}, {2, 3}};
    pp_model *m = dag(4, ed, 3, 0.5, 0.75, 0.25);
    pp_cluster c = summit();
    int dev[4] = {0, 0, 0, 0};
    pp_schedule sc[3] = {PP_GPIPE, PP_1F1B, PP_ZB_H1};
    for (int k = 0; k < 3; k++) {
        pp_plan *p = per_stage(m, dev, 8, 1, sc[k], 1);
        pp_plan_result r;
        ps_err e = {0};
        assert_int_equal(pp_plan_simulate(p, m, &c, NULL, &r, &e), 0);
        NEAR(r.iteration_s, 4 * 8 * 1.5);
        NEAR(r.bubble_fraction, 0);
        pp_plan_result_free(&r);
        pp_plan_free(p);
    }
    pp_model_free(m);
}

/* Disjoint plans: device_of_stage as the identity changes nothing. */
static void test_disjoint_unchanged(void **st)
{
    (void)st;
    const int ed[3][2] = {{0, 1}, {1, 2}, {2, 3}};
    pp_model *m = dag(4, ed, 3, 0.3, 0.4, 0.2);
    pp_cluster c = summit();
    int dev[4] = {0, 1, 2, 3};
    pp_schedule sc[3] = {PP_GPIPE, PP_1F1B, PP_ZB_H1};
    for (int k = 0; k < 3; k++) {
        pp_plan *p = per_stage(m, dev, 16, 2, sc[k], 0);
        pp_plan_result a, b;
        ps_err e = {0};
        pp_sim_opts o = {.device_of_stage = dev};
        assert_int_equal(pp_plan_simulate(p, m, &c, NULL, &a, &e), 0);
        assert_int_equal(pp_plan_simulate(p, m, &c, &o, &b, &e), 0);
        NEAR(a.iteration_s, b.iteration_s);
        NEAR(a.bubble_fraction, b.bubble_fraction);
        for (int s = 0; s < 4; s++)
            NEAR(a.stage_busy_s[s], b.stage_busy_s[s]);
        /* closed form (m + p - 1)(F + B) for 1F1B / GPipe */
        if (sc[k] != PP_ZB_H1)
            NEAR(a.iteration_s, (8 + 3) * 2 * (0.3 + 0.6));
        pp_plan_result_free(&a);
        pp_plan_result_free(&b);
        pp_plan_free(p);
    }
    pp_model_free(m);
}

/* JSON round trip of "shared_devices". */
static void test_json(void **st)
{
    (void)st;
    pp_model *m = dag(3, fj_edges, 2, 1, 1, 1);
    ps_err e = {0};
    json_t *doc = json_loads("{\"minibatch\": 2, \"schedule\": \"gpipe\", \"shared_devices\": true,"
                             " \"stages\": [{\"ops\": [\"o0\"], \"microbatch\": 1, \"devices\": [0]},"
                             " {\"ops\": [\"o1\"], \"microbatch\": 1, \"devices\": [1]},"
                             " {\"ops\": [\"o2\"], \"microbatch\": 1, \"devices\": [1]}]}",
                             0, NULL);
    assert_non_null(doc);
    pp_plan *p = pp_plan_from_json(doc, "t.json", m, &e);
    if (!p)
        fail_msg("%s", e.msg);
    assert_int_equal(p->shared_devices, 1);
    assert_int_equal(pp_plan_finalize(p, m, NULL, &e), 0);
    json_t *back = pp_plan_to_json(p, m, NULL);
    assert_true(json_is_true(json_object_get(back, "shared_devices")));
    pp_cluster c = summit();
    pp_plan_result r;
    assert_int_equal(pp_plan_simulate(p, m, &c, NULL, &r, &e), 0);
    NEAR(r.iteration_s, 12);
    pp_plan_result_free(&r);
    json_decref(back);
    json_object_set_new(doc, "shared_devices", json_false());
    pp_plan *q = pp_plan_from_json(doc, "t.json", m, &e);
    assert_non_null(q);
    assert_int_equal(pp_plan_finalize(q, m, NULL, &e), PS_EINPUT);
    pp_plan_free(q);
    json_decref(doc);
    pp_plan_free(p);
    pp_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_join_hand),
        cmocka_unit_test(test_one_device_serialises),
        cmocka_unit_test(test_disjoint_unchanged),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
