/* sim/pipeline schedules against the closed forms for uniform stages and
 * hand-worked timelines with transfers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim/pipeline/schedule.h"

static void near_rel(double a, double b, double rel, const char *what, int line)
{
    double tol = rel * (fabs(b) > 1e-300 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}
#define REL(a, b) near_rel((a), (b), 1e-9, #a, __LINE__)

typedef struct uni {
    int p, m;
    double tf, tb, act;
} uni;

static pp_sim *run_uniform(const uni *u, pp_schedule s, const double *sf, const double *sb,
                           double alpha, double bps)
{
    double *f = malloc(u->p * sizeof *f), *b = malloc(u->p * sizeof *b), *a = malloc(u->p * sizeof *a);
    for (int i = 0; i < u->p; i++) {
        f[i] = u->tf;
        b[i] = u->tb;
        a[i] = u->act;
    }
    pp_chain c = {.stages = u->p, .microbatches = u->m, .fwd_s = f, .bwd_s = b, .act_bytes = a,
                  .send_fwd_bytes = sf, .send_bwd_bytes = sb, .link_alpha_s = alpha,
                  .link_bytes_per_s = bps};
    ps_err e = {0};
    pp_sim *sim = pp_sim_chain(&c, s, &e);
    if (!sim)
        fail_msg("pp_sim_chain: %s", e.msg);
    int rc = pp_sim_run(sim, &e);
    if (rc)
        fail_msg("pp_sim_run -> %d: %s", rc, e.msg);
    free(f);
    free(b);
    free(a);
    return sim;
}

static const uni cases[] = {
    {1, 1, 1.0, 2.0, 100}, {1, 5, 0.5, 1.0, 10},  {2, 1, 1.0, 2.0, 1e6},  {4, 8, 1.0, 2.0, 64},
    {4, 2, 0.3, 0.7, 1e9}, {8, 3, 1.5, 2.5, 7},   {8, 32, 0.01, 0.02, 3}, {5, 5, 1.0, 1.0, 1},
    {16, 4, 2e-3, 5e-3, 2}, {7, 100, 1e-4, 3e-4, 1e8},
};

static void check_uniform(pp_schedule s)
{
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uni *u = &cases[k];
        pp_sim *sim = run_uniform(u, s, NULL, NULL, 0, 0);
        const pp_result *r = pp_sim_result(sim);
        int p = u->p, m = u->m;
        REL(r->makespan_s, (m + p - 1) * (u->tf + u->tb));
        REL(r->ideal_s, m * (u->tf + u->tb));
        near_rel(r->bubble_fraction, (double)(p - 1) / (m + p - 1), 1e-9, "bubble_fraction", __LINE__);
        if (p > 1)
            REL(r->bubble_ratio, (double)(p - 1) / m);
        else
            assert_true(fabs(r->bubble_ratio) < 1e-12);
        for (int i = 1; i <= p; i++) {
            int want = s == PP_GPIPE ? m : (m < p - i + 1 ? m : p - i + 1);
            if (r->peak_inflight[i - 1] != want)
                fail_msg("%s p=%d m=%d stage %d: peak in-flight %d, expected %d", pp_schedule_name(s),
                         p, m, i, r->peak_inflight[i - 1], want);
            REL(r->peak_mem_bytes[i - 1], want * u->act);
            REL(r->busy_s[i - 1], m * (u->tf + u->tb));
        }
        pp_sim_free(sim);
    }
}

static void test_gpipe_uniform(void **st)
{
    (void)st;
    check_uniform(PP_GPIPE);
}

static void test_1f1b_uniform(void **st)
{
    (void)st;
    check_uniform(PP_1F1B);
}

/* The order on each stage is the schedule's: 1F1B on stage 0 of p=3, m=5
 * runs F0 F1 F2 B0 F3 B1 F4 B2 B3 B4. */
static void test_1f1b_order(void **st)
{
    (void)st;
    uni u = {3, 5, 1.0, 2.0, 1};
    pp_sim *sim = run_uniform(&u, PP_1F1B, NULL, NULL, 0, 0);
    const des *d = pp_sim_des(sim);
    struct { int kind, mb; } want[] = {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {0, 3},
                                       {1, 1}, {0, 4}, {1, 2}, {1, 3}, {1, 4}};
    double last = -1;
    for (int k = 0; k < 10; k++) {
        int x = pp_sim_task(sim, 0, want[k].kind ? PP_OP_BWD : PP_OP_FWD, want[k].mb);
        assert_true(x >= 0);
        double s0 = des_task_start_s(d, x);
        assert_true(s0 > last);
        last = s0;
    }
    pp_op ops[10];
    ps_err e = {0};
    assert_int_equal(pp_stage_order(PP_1F1B, 5, 3, ops, &e), 0);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(ops[k].kind, want[k].kind);
        assert_int_equal(ops[k].mb, want[k].mb);
    }
    pp_sim_free(sim);
}

/* p=2, m=2, t_f=1, t_b=2; every transfer holds its link 0.25 s (100 B at
 * 400 B/s) and lands α=0.25 s later, 0.5 s in all.  By hand, for both
 * schedules: S0 F0[0,1] F1[1,2]; acts land 1.5 and 2.5; S1 runs F0[1.5,2.5]
 * and (1F1B) B0[2.5,4.5] F1[4.5,5.5] B1[5.5,7.5] or (GPipe) F1[2.5,3.5]
 * B0[3.5,5.5] B1[5.5,7.5]; gradients land at 5.0/6.0 and 8.0; S0 B0 ends
 * by 7 or 8, B1 runs [8,10].  Makespan 10 instead of 9. */
static void test_transfers_by_hand(void **st)
{
    (void)st;
    uni u = {2, 2, 1.0, 2.0, 1};
    double bytes[1] = {100};
    pp_schedule sch[2] = {PP_1F1B, PP_GPIPE};
    for (int k = 0; k < 2; k++) {
        pp_sim *sim = run_uniform(&u, sch[k], bytes, bytes, 0.25, 400);
        const pp_result *r = pp_sim_result(sim);
        REL(r->makespan_s, 10);
        const des *d = pp_sim_des(sim);
        REL(des_task_start_s(d, pp_sim_task(sim, 1, PP_OP_FWD, 0)), 1.5);
        REL(des_task_start_s(d, pp_sim_task(sim, 0, PP_OP_BWD, 1)), 8);
        REL(r->bubble_fraction, 1 - 12.0 / 20.0);
        REL(r->bubble_ratio, (10 - 6.0) / 6.0);
        pp_sim_free(sim);
    }
    /* m=1: every boundary adds one transfer each way: +2 (α + b/β) each. */
    uni v = {4, 1, 1.0, 2.0, 1};
    double b3[3] = {100, 100, 100};
    pp_sim *sim = run_uniform(&v, PP_1F1B, b3, b3, 0.25, 400);
    REL(pp_sim_result(sim)->makespan_s, 4 * 3.0 + 3 * 2 * 0.5);
    pp_sim_free(sim);
    /* Forward transfers only. */
    sim = run_uniform(&v, PP_GPIPE, b3, NULL, 0.25, 400);
    REL(pp_sim_result(sim)->makespan_s, 4 * 3.0 + 3 * 0.5);
    pp_sim_free(sim);
}

static void test_memory_limit(void **st)
{
    (void)st;
    /* GPipe keeps m=8 activations of 10 B on stage 0: over a 50 B budget. */
    double f[2] = {1, 1}, b[2] = {1, 1}, a[2] = {10, 10};
    pp_chain c = {.stages = 2, .microbatches = 8, .fwd_s = f, .bwd_s = b, .act_bytes = a,
                  .mem_capacity_bytes = 50};
    ps_err e = {0};
    pp_sim *sim = pp_sim_chain(&c, PP_GPIPE, &e);
    assert_non_null(sim);
    assert_int_equal(pp_sim_run(sim, &e), DES_OOM);
    des_oom o;
    assert_true(des_oom_get(pp_sim_des(sim), &o));
    assert_int_equal(o.pool, pp_sim_stage_pool(sim, 0));
    assert_true(fabs(o.shortfall_bytes - 10) < 1e-9);
    pp_sim_free(sim);
    /* 1F1B needs only 2 in flight on stage 0: fits. */
    sim = pp_sim_chain(&c, PP_1F1B, &e);
    assert_int_equal(pp_sim_run(sim, &e), 0);
    assert_int_equal(pp_sim_result(sim)->peak_inflight[0], 2);
    pp_sim_free(sim);
}

static void test_bad_input(void **st)
{
    (void)st;
    double f[2] = {1, -1}, b[2] = {1, 1};
    pp_chain c = {.stages = 2, .microbatches = 2, .fwd_s = f, .bwd_s = b};
    ps_err e = {0};
    assert_null(pp_sim_chain(&c, PP_1F1B, &e));
    assert_int_equal(e.code, PS_EINPUT);
    f[1] = 1;
    c.microbatches = 0;
    assert_null(pp_sim_chain(&c, PP_1F1B, &e));
    c.microbatches = 2;
    assert_null(pp_sim_chain(&c, (pp_schedule)9, &e));
    double sb[1] = {5};
    c.send_fwd_bytes = sb; /* transfers without a bandwidth */
    assert_null(pp_sim_chain(&c, PP_1F1B, &e));
    assert_int_equal(pp_schedule_parse("1f1b"), PP_1F1B);
    assert_int_equal(pp_schedule_parse("gpipe"), PP_GPIPE);
    assert_int_equal(pp_schedule_parse("zb"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpipe_uniform),
        cmocka_unit_test(test_1f1b_uniform),
        cmocka_unit_test(test_1f1b_order),
        cmocka_unit_test(test_transfers_by_hand),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
