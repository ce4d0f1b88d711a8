/* Shared set-up of the pipeline replay test programs (test_replay.c,
 * test_replay_cuda.c; include after <cmocka.h>): H, the hidden width;
 * add / gemm / ew build a model's operators; chain_model (x -> l0 .. l3) and
 * fj_model (a fork-join with a concat) are the two test models; make_plan
 * builds and finalizes an SGD plan with one device per stage;
 * check_exec_order / check_stage_order check a replay's executed order. */
#ifndef PS_TESTS_REPLAY_TESTUTIL_H
#define PS_TESTS_REPLAY_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "real/replay.h"

#define H 48

static void add(pp_model *m, const char *id, const char *kind, const ps_op *shape,
                const ps_op *parts, int nparts, double out_bytes)
{
    ps_err e = {0};
    pp_op_spec s = {.id = id, .kind = kind, .shape = shape, .parts = parts, .nparts = nparts,
                    .param_bytes = -1, .out_bytes = out_bytes, .act_bytes = -1};
    if (pp_model_add_op(m, &s, &e) < 0)
        fail_msg("%s", e.msg);
}

static ps_op gemm(int64_t m, int64_t n, int64_t k)
{
    ps_op o;
    int64_t d[3] = {m, n, k};
    ps_err e = {0};
    if (ps_op_make(&o, "gemm", NULL, NULL, d, 3, &e))
        fail_msg("%s", e.msg);
    return o;
}

static ps_op ew(int64_t n, const char *v)
{
    ps_op o;
    ps_err e = {0};
    if (ps_op_make(&o, "elementwise", NULL, v, &n, 1, &e))
        fail_msg("%s", e.msg);
    return o;
}

/* x -> l0 .. l3 (gemm + relu / tanh blocks, the last a plain gemm with m = 2). */
static pp_model *chain_model(void)
{
    ps_err e = {0};
    pp_model *m = pp_model_new("chain", &e);
    add(m, "x", "input", NULL, NULL, 0, 4.0 * 2 * H);
    for (int i = 0; i < 3; i++) {
        ps_op parts[2] = {gemm(2, H, H), ew(2 * H, i == 1 ? "tanh" : "relu")};
        char id[8];
        snprintf(id, sizeof id, "l%d", i);
        add(m, id, "block", NULL, parts, 2, -1);
    }
    ps_op g = gemm(2, 16, H);
    add(m, "l3", "gemm", &g, NULL, 0, -1);
    for (int i = 1; i < 5; i++)
        assert_int_equal(pp_model_add_input(m, i, i - 1, &e), 0);
    if (pp_model_finish(m, &e))
        fail_msg("%s", e.msg);
    return m;
}

/* a -> a0 -> a1, b -> b0 (gelu), then concat(a1, b0) -> f (gemm k = 2H) -> g
 * (sigmoid, the sink); b is half as wide (its consumer tiles it). */
static pp_model *fj_model(void)
{
    ps_err e = {0};
    pp_model *m = pp_model_new("fj", &e);
    ps_op pa[2] = {gemm(1, H, H), ew(H, "relu")}, pb[2] = {gemm(1, H, H), ew(H, "gelu")};
    ps_op g1 = gemm(1, H, H);
    ps_op f = gemm(1, H, 2 * H), s = ew(H, "sigmoid");
    add(m, "a", "input", NULL, NULL, 0, 4.0 * H);       /* 0 */
    add(m, "a0", "block", NULL, pa, 2, -1);             /* 1 */
    add(m, "a1", "gemm", &g1, NULL, 0, -1);             /* 2 */
    add(m, "b", "input", NULL, NULL, 0, 4.0 * H / 2);   /* 3 */
    add(m, "b0", "block", NULL, pb, 2, -1);             /* 4 */
    add(m, "cat", "concat", NULL, NULL, 0, -1);         /* 5 */
    add(m, "f", "gemm", &f, NULL, 0, -1);               /* 6 */
    add(m, "g", "elementwise", &s, NULL, 0, -1);        /* 7 */
    const int ed[][2] = {{0, 1}, {1, 2}, {3, 4}, {2, 5}, {4, 5}, {5, 6}, {6, 7}};
    for (size_t i = 0; i < sizeof ed / sizeof *ed; i++)
        assert_int_equal(pp_model_add_input(m, ed[i][1], ed[i][0], &e), 0);
    if (pp_model_finish(m, &e))
        fail_msg("%s", e.msg);
    return m;
}

static pp_plan *make_plan(const pp_model *m, int nst, const char *const *const *stage_ops,
                          const int *b, const int *dev, int minibatch, pp_schedule sc)
{
    ps_err e = {0};
    pp_plan *p = pp_plan_new(nst, &e);
    p->minibatch = minibatch;
    p->schedule = sc;
    p->optimizer = CM_OPT_SGD;
    p->shared_devices = 1;
    for (int s = 0; s < nst; s++) {
        int ops[16], n = 0;
        for (; stage_ops[s][n]; n++)
            ops[n] = pp_model_find(m, stage_ops[s][n]);
        assert_int_equal(pp_plan_set_stage(p, s, ops, n, b[s], &dev[s], 1, 0, &e), 0);
    }
    if (pp_plan_finalize(p, m, NULL, &e))
        fail_msg("finalize: %s", e.msg);
    return p;
}

/* Every task ran once: worker w's executed list is the simulator's tasks of
 * w in its start order (task ids run consecutively over the workers), and
 * there are 2 (3 with ZB-H1) tasks per stage and micro-batch. */
static void check_exec_order(const pp_plan *p, const ps_replay_result *r)
{
    int total = 0;
    for (int w = 0; w < r->workers; w++) {
        int n = r->worker_ntasks[w];
        for (int k = 0; k < n; k++) {
            int i = r->exec_order[w][k];
            assert_int_equal(i, total + k);
            assert_int_equal(r->tasks[i].worker, w);
            assert_int_equal(r->tasks[i].seq, k);
            if (k > 0) /* the simulator's start order */
                assert_true(r->tasks[i].pred_start_s >= r->tasks[i - 1].pred_end_s - 1e-12);
        }
        total += n;
    }
    int want = 0;
    for (int s = 0; s < p->nstages; s++)
        want += (p->schedule == PP_ZB_H1 ? 3 : 2) * pp_plan_microbatches(p, s);
    assert_int_equal(total, r->ntasks);
    assert_int_equal(total, want);
}

/* Each stage's own tasks, in executed order, follow the schedule's order
 * (pp_stage_order_ex with the plan's in-flight depths) on the stage's
 * worker. */
static void check_stage_order(const pp_plan *p, const ps_replay_result *r)
{
    int *depth = malloc(p->nstages * sizeof *depth);
    pp_plan_inflight_all(p, depth);
    int maxd = 0;
    for (int s = 0; s < p->nstages; s++)
        maxd = depth[s] > maxd ? depth[s] : maxd;
    for (int s = 0; s < p->nstages; s++) {
        int mb = pp_plan_microbatches(p, s);
        pp_op ops[256];
        pp_order_spec os = {.schedule = p->schedule, .microbatches = mb, .depth = depth[s],
                            .lag = maxd - depth[s]};
        ps_err e = {0};
        assert_int_equal(pp_stage_order_ex(&os, ops, &e), 0);
        int k = 0;
        for (int i = 0; i < r->ntasks; i++) {
            if (r->tasks[i].stage != s)
                continue;
            assert_int_equal(r->tasks[i].worker, r->stage_worker[s]);
            assert_int_equal(r->tasks[i].kind, (int)ops[k].kind);
            assert_int_equal(r->tasks[i].mb, ops[k].mb);
            k++;
        }
        assert_int_equal(k, (int)pp_stage_op_count(p->schedule, mb));
    }
    free(depth);
}

#endif
