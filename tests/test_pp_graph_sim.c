/* Schedules on the engine against their closed forms (to 1e-9 relative),
 * through both front ends: pp_sim_chain (uniform chains) and plans
 * (pp_plan_simulate: a model, a cluster, a stage DAG).
 *
 * Closed forms, uniform stages, no communication, p stages (devices), m
 * micro-batches, stage i 1-indexed:
 *   GPipe, 1F1B   makespan (m+p-1)(t_f+t_b); bubble ratio (p-1)/m;
 *                 peak in-flight m (GPipe), min(m, p-i+1) (1F1B)
 *   interleaved   v chunks per device, t_f/v and t_b/v per chunk, m a
 *                 multiple of p (Megatron's order, schedule.c):
 *                 makespan m(t_f+t_b) + (p-1)(t_f+t_b)/v; ratio (p-1)/(vm);
 *                 peak chunk activations min(mv, 2(p-i) + (v-1)p + 1), and
 *                 mv when m = p (all warm-up)
 *   ZB-H1         F, B (input gradient), W (weight gradient) all t, m >= p,
 *                 W of stage i lagging its B by i-1 micro-batches:
 *                 makespan 3mt + (p-1)t; ratio (p-1)/(3m); peak min(m, p) on
 *                 every stage (warm-up p-i+1 plus i-1 deferred W; activations
 *                 live until W)
 *   GraphPipe     1F1B on a stage DAG, equal stages, depth D = stages on the
 *                 longest path: makespan (m+D-1)(t_f+t_b); ratio (D-1)/m;
 *                 peak min(m, depth of the stage)
 *   ZB-H1 on a DAG  lag D - depth, F = B = W = t, m >= D: 3mt + (D-1)t, peak
 *                 min(m, D) on every stage (a chain of D stages' numbers) */
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
#include "common/util.h"
#include "sim/pipeline/plan.h"
#include "sim/pipeline/schedule_impl.h"

static void near_rel(double a, double b, double rel, const char *what, int line)
{
    double tol = rel * (fabs(b) > 1e-300 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}
#define REL(a, b) near_rel((a), (b), 1e-9, #a, __LINE__)

/* ------------------------------------------------------------ chains */

static pp_sim *chain(int p, int m, int v, double tf, double tb, double tw, double act,
                     pp_schedule s)
{
    double *f = malloc(p * sizeof *f), *b = malloc(p * sizeof *b), *w = malloc(p * sizeof *w);
    double *a = malloc(p * sizeof *a);
    for (int i = 0; i < p; i++) {
        f[i] = tf;
        b[i] = tb;
        w[i] = tw;
        a[i] = act;
    }
    pp_chain c = {.stages = p, .microbatches = m, .fwd_s = f, .bwd_s = b, .act_bytes = a,
                  .wgrad_s = w, .chunks = v};
    ps_err e = {0};
    pp_sim *sim = pp_sim_chain(&c, s, &e);
    if (!sim)
        fail_msg("pp_sim_chain: %s", e.msg);
    int rc = pp_sim_run(sim, &e);
    if (rc)
        fail_msg("pp_sim_run -> %d: %s", rc, e.msg);
    free(f);
    free(b);
    free(w);
    free(a);
    return sim;
}

static int il_peak(int p, int m, int v, int i)
{
    if (v == 1)
        return m < p - i + 1 ? m : p - i + 1;
    int w = m == p ? m * v : 2 * (p - i) + (v - 1) * p + 1;
    return w < m * v ? w : m * v;
}

static void test_interleaved_closed_form(void **st)
{
    (void)st;
    int ps[] = {1, 2, 3, 4, 8}, vs[] = {1, 2, 3, 4}, mult[] = {1, 2, 3, 8};
    double tf = 0.3, tb = 0.7, act = 12;
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 4; c++) {
                int p = ps[a], v = vs[b], m = p * mult[c];
                pp_sim *sim = chain(p, m, v, tf, tb, 0, act, PP_INTERLEAVED);
                const pp_result *r = pp_sim_result(sim);
                double t = tf + tb;
                REL(r->makespan_s, m * t + (p - 1) * t / v);
                REL(r->ideal_s, m * t);
                if (p > 1)
                    REL(r->bubble_ratio, (double)(p - 1) / (v * m));
                for (int i = 1; i <= p; i++) {
                    int want = il_peak(p, m, v, i);
                    if (r->peak_inflight[i - 1] != want)
                        fail_msg("interleaved p=%d m=%d v=%d stage %d: peak %d, expected %d", p,
                                 m, v, i, r->peak_inflight[i - 1], want);
                    REL(r->peak_mem_bytes[i - 1], want * act / v);
                }
                pp_sim_free(sim);
            }
    /* the first device holds p + (p-1)/v micro-batches' worth: 1F1B's p
     * times 1 + (p-1)/(p v) (Korthikanti et al.) */
    pp_sim *sim = chain(4, 16, 2, 1, 2, 0, 1, PP_INTERLEAVED);
    REL(pp_sim_result(sim)->peak_mem_bytes[0], 4 * (1 + 3.0 / 8));
    pp_sim_free(sim);
}

/* Megatron's order on device 0 of p=2, v=2, m=4: warm-up 2(p-1)+(v-1)p = 4
 * forwards F0c0 F1c0 F0c1 F1c1, then F2c0 B0c1, F3c0 B1c1, F2c1 B0c0, F3c1
 * B1c0, then B2c1 B3c1 B2c0 B3c0. */
static void test_interleaved_order(void **st)
{
    (void)st;
    pp_op ops[16];
    ps_err e = {0};
    pp_order_spec o = {.schedule = PP_INTERLEAVED, .microbatches = 4, .chunks = 2, .stages = 2,
                       .rank = 0};
    assert_int_equal(pp_stage_order_ex(&o, ops, &e), 0);
    int want[16][3] = {{0, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 1, 1}, {0, 2, 0}, {1, 0, 1},
                       {0, 3, 0}, {1, 1, 1}, {0, 2, 1}, {1, 0, 0}, {0, 3, 1}, {1, 1, 0},
                       {1, 2, 1}, {1, 3, 1}, {1, 2, 0}, {1, 3, 0}};
    for (int k = 0; k < 16; k++) {
        assert_int_equal(ops[k].kind, want[k][0]);
        assert_int_equal(ops[k].mb, want[k][1]);
        assert_int_equal(ops[k].chunk, want[k][2]);
    }
    o.microbatches = 3; /* not a multiple of p */
    assert_int_equal(pp_stage_order_ex(&o, ops, &e), PS_EINPUT);
}

static void test_zbh1_closed_form(void **st)
{
    (void)st;
    int ps[] = {1, 2, 3, 4, 5, 8};
    int ms[] = {1, 2, 3, 4, 7, 8, 16, 33};
    double t = 0.25, act = 3;
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 8; b++) {
            int p = ps[a], m = ms[b];
            if (m < p)
                continue;
            /* t_bwd = B + W = 2t, W = t */
            pp_sim *sim = chain(p, m, 1, t, 2 * t, t, act, PP_ZB_H1);
            const pp_result *r = pp_sim_result(sim);
            REL(r->makespan_s, 3 * m * t + (p - 1) * t);
            REL(r->ideal_s, 3 * m * t);
            if (p > 1)
                REL(r->bubble_ratio, (double)(p - 1) / (3 * m));
            int want = m < p ? m : p;
            for (int i = 0; i < p; i++) {
                if (r->peak_inflight[i] != want)
                    fail_msg("zb-h1 p=%d m=%d stage %d: peak %d, expected %d", p, m, i + 1,
                             r->peak_inflight[i], want);
                REL(r->peak_mem_bytes[i], want * act);
            }
            pp_sim_free(sim);
        }
    /* the order: stage 3 of p=3 (lag 2), m=4: F0 B0 F1 B1 F2 B2 W0 F3 B3 W1 W2 W3 */
    pp_op ops[12];
    ps_err e = {0};
    pp_order_spec o = {.schedule = PP_ZB_H1, .microbatches = 4, .depth = 1, .lag = 2};
    assert_int_equal(pp_stage_order_ex(&o, ops, &e), 0);
    int want[12][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}, {1, 2},
                       {2, 0}, {0, 3}, {1, 3}, {2, 1}, {2, 2}, {2, 3}};
    for (int k = 0; k < 12; k++) {
        assert_int_equal(ops[k].kind, want[k][0]);
        assert_int_equal(ops[k].mb, want[k][1]);
    }
    /* W of stage i runs after its own B */
    pp_sim *sim = chain(4, 8, 1, t, 2 * t, t, 1, PP_ZB_H1);
    const des *d = pp_sim_des(sim);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            assert_true(des_task_start_s(d, pp_sim_task(sim, i, PP_OP_WGRAD, k)) >=
                        des_task_end_s(d, pp_sim_task(sim, i, PP_OP_BWD, k)));
    pp_sim_free(sim);
}

/* ------------------------------------------------------------ plans */

static pp_cluster test_cluster(double mem, double alpha, double bw)
{
    char txt[512];
    snprintf(txt, sizeof txt,
             "{\"name\": \"t\", \"device\": \"h100-sxm\", \"devices_per_node\": 4, "
             "\"memory_bytes\": %.17g, \"intra_link\": {\"latency_s\": %.17g, "
             "\"bw_bytes_per_s\": %.17g}, \"inter_link\": {\"latency_s\": 1, "
             "\"bw_bytes_per_s\": 1}}", mem, alpha, bw);
    ps_err e = {0};
    json_t *j = ps_json_load_str(txt, "cluster", &e);
    assert_non_null(j);
    pp_cluster c;
    if (pp_cluster_from_json(j, "cluster", NULL, &c, &e))
        fail_msg("%s", e.msg);
    json_decref(j);
    return c;
}

/* n measured ops; edges given as pairs (from, to); every op t_f, B, W per
 * sample (measured at batch 1), act and out bytes per sample, params. */
static pp_model *dag(int n, const int (*edges)[2], int ne, double tf, double bi, double bw,
                     double act, double out, double params)
{
    ps_err e = {0};
    pp_model *m = pp_model_new("dag", &e);
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "o%d", i);
        pp_op_spec s = {.id = id, .kind = "opaque", .param_bytes = params, .out_bytes = out,
                        .act_bytes = act, .measured = {1, 1, tf, bi, bw}};
        assert_int_equal(pp_model_add_op(m, &s, &e), i);
    }
    for (int k = 0; k < ne; k++)
        assert_int_equal(pp_model_add_input(m, edges[k][1], edges[k][0], &e), 0);
    if (pp_model_finish(m, &e))
        fail_msg("%s", e.msg);
    return m;
}

static pp_model *chain_model(int n, double tf, double bi, double bw, double act, double out,
                             double params)
{
    int (*ed)[2] = malloc((size_t)(n > 1 ? n - 1 : 1) * sizeof *ed);
    for (int i = 0; i + 1 < n; i++) {
        ed[i][0] = i;
        ed[i][1] = i + 1;
    }
    pp_model *m = dag(n, (const int (*)[2])ed, n - 1, tf, bi, bw, act, out, params);
    free(ed);
    return m;
}

/* One op per stage; stage s on device s (or s mod p, interleaved). */
static pp_plan *one_per_stage(const pp_model *m, const pp_cluster *c, int p, int minibatch,
                              int b, pp_schedule sched, int chunks)
{
    ps_err e = {0};
    int n = pp_model_nops(m);
    pp_plan *pl = pp_plan_new(n, &e);
    pl->minibatch = minibatch;
    pl->schedule = sched;
    pl->chunks = chunks;
    for (int s = 0; s < n; s++) {
        int dev = s % p;
        assert_int_equal(pp_plan_set_stage(pl, s, &s, 1, b, &dev, 1, 0, &e), 0);
    }
    if (pp_plan_finalize(pl, m, c, &e))
        fail_msg("finalize: %s", e.msg);
    return pl;
}

static void simulate(const pp_plan *p, const pp_model *m, const pp_cluster *c,
                     pp_plan_result *r)
{
    ps_err e = {0};
    if (pp_plan_simulate(p, m, c, NULL, r, &e))
        fail_msg("simulate: %s", e.msg);
}

/* The plan front end reproduces every chain closed form. */
static void test_plan_chain_closed_forms(void **st)
{
    (void)st;
    pp_cluster c = test_cluster(80e9, 1e-6, 1e11);
    double t = 0.5;
    struct { pp_schedule s; int v; } cases[] = {
        {PP_GPIPE, 1}, {PP_1F1B, 1}, {PP_ZB_H1, 1}, {PP_INTERLEAVED, 2}, {PP_INTERLEAVED, 3}};
    int ps[] = {1, 2, 4, 6};
    for (size_t k = 0; k < 5; k++)
        for (size_t a = 0; a < 4; a++) {
            int p = ps[a], v = cases[k].v, m = 2 * p;
            pp_schedule s = cases[k].s;
            /* per-stage times t_f = t, B = W = t (interleaved: t/v per chunk,
             * so each device does the same work) */
            double per = s == PP_INTERLEAVED ? t / v : t;
            pp_model *md = chain_model(p * v, per, per, per, 8, 0, 0);
            pp_plan *pl = one_per_stage(md, &c, p, m, 1, s, v);
            pp_plan_result r;
            simulate(pl, md, &c, &r);
            double want = s == PP_ZB_H1 ? 3 * m * t + (p - 1) * t
                          : s == PP_INTERLEAVED ? 3 * m * t + (p - 1) * 3 * t / v
                                                : (m + p - 1) * 3 * t;
            REL(r.iteration_s, want);
            REL(r.throughput_samples_per_s, m / want);
            REL(r.ideal_s, 3 * m * t);
            assert_int_equal(r.oom, 0);
            for (int i = 1; i <= p; i++) {
                int pk = s == PP_GPIPE ? m : s == PP_1F1B ? (m < p - i + 1 ? m : p - i + 1)
                         : s == PP_ZB_H1 ? (m < p ? m : p) : il_peak(p, m, v, i);
                if (r.stage_peak_inflight[i - 1] != pk)
                    fail_msg("%s p=%d v=%d stage %d: peak %d, expected %d", pp_schedule_name(s),
                             p, v, i, r.stage_peak_inflight[i - 1], pk);
                /* act 8 B per sample and (chunk) micro-batch of 1 sample */
                REL(r.stage_peak_bytes[i - 1], pk * 8.0);
                REL(pp_stage_inflight_peak(pl, i - 1), pk);
            }
            pp_plan_result_free(&r);
            pp_plan_free(pl);
            pp_model_free(md);
        }
}

/* GraphPipe's schedule on a stage DAG: k parallel branches of L stages into
 * a join stage.  Depth D = L + 1 instead of the k L + 1 of the same stages
 * in a sequence. */
static void test_graphpipe_dag(void **st)
{
    (void)st;
    pp_cluster c = test_cluster(80e9, 1e-6, 1e11);
    int ks[] = {2, 3}, Ls[] = {1, 2, 3};
    double tf = 0.1, tb = 0.2; /* B = W = t_b / 2 = t_f */
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) {
            int k = ks[a], L = Ls[b], n = k * L + 1;
            int (*ed)[2] = malloc((size_t)n * sizeof *ed), ne = 0;
            for (int br = 0; br < k; br++) {
                for (int l = 0; l + 1 < L; l++) {
                    ed[ne][0] = br * L + l;
                    ed[ne++][1] = br * L + l + 1;
                }
                ed[ne][0] = br * L + L - 1;
                ed[ne++][1] = n - 1;
            }
            pp_model *md = dag(n, (const int (*)[2])ed, ne, tf, tb / 2, tb / 2, 1, 0, 0);
            free(ed);
            int ms[] = {1, 3, 8};
            for (int q = 0; q < 3; q++) {
                int m = ms[q], D = L + 1;
                pp_plan *pl = one_per_stage(md, &c, n, m, 1, PP_1F1B, 1);
                pp_plan_result r;
                simulate(pl, md, &c, &r);
                REL(r.iteration_s, (m + D - 1) * (tf + tb));
                if (D > 1)
                    REL(r.bubble_ratio, (double)(D - 1) / m);
                for (int s = 0; s < n; s++) {
                    int depth = pp_plan_inflight(pl, s);
                    int pk = m < depth ? m : depth;
                    assert_int_equal(r.stage_peak_inflight[s], pk);
                }
                assert_int_equal(pp_plan_inflight(pl, 0), D);
                pp_plan_result_free(&r);
                pp_plan_free(pl);
                /* ZB-H1 on the DAG (lag = D - depth): like a chain of D
                 * stages, 3mt + (D-1)t when F = B = W = t and m >= D */
                if (m >= D) {
                    pl = one_per_stage(md, &c, n, m, 1, PP_ZB_H1, 1);
                    simulate(pl, md, &c, &r);
                    REL(r.iteration_s, 3 * m * tf + (D - 1) * tf);
                    for (int s = 0; s < n; s++)
                        assert_int_equal(r.stage_peak_inflight[s], D);
                    pp_plan_result_free(&r);
                    pp_plan_free(pl);
                }
                /* the same stages in a sequence: depth n */
                pp_model *cm = chain_model(n, tf, tb / 2, tb / 2, 1, 0, 0);
                pl = one_per_stage(cm, &c, n, m, 1, PP_1F1B, 1);
                simulate(pl, cm, &c, &r);
                REL(r.iteration_s, (m + n - 1) * (tf + tb));
                assert_int_equal(r.stage_peak_inflight[0], m < n ? m : n);
                pp_plan_result_free(&r);
                pp_plan_free(pl);
                pp_model_free(cm);
            }
            pp_model_free(md);
        }
}

/* Transfers on the cluster's links, by hand (the chain test's numbers):
 * p=2, m=2, t_f=1, t_b=2, each transfer 0.25 s on the link + α 0.25 s.
 * With data parallelism 2 on both stages and b=2, each replica sends its
 * sample over its own link: same times.  Makespan 10; then stage 0's
 * all-reduce of 400 B over 2 devices on the intra link,
 * 2 α + 2 (1/2) 400/400 = 1.5 s, makes it 11.5. */
static void test_plan_transfers_allreduce(void **st)
{
    (void)st;
    pp_cluster c = test_cluster(80e9, 0.25, 400);
    ps_err e = {0};
    for (int dp = 1; dp <= 2; dp++) {
        for (int with_params = 0; with_params <= 1; with_params++) {
            pp_model *md = chain_model(2, 1, 1, 1, 0, 100, with_params ? 400 : 0);
            pp_plan *pl = pp_plan_new(2, &e);
            pl->minibatch = 2 * dp;
            for (int s = 0; s < 2; s++) {
                int devs[2] = {2 * s, 2 * s + 1};
                assert_int_equal(pp_plan_set_stage(pl, s, &s, 1, dp, devs, dp, 0, &e), 0);
            }
            assert_int_equal(pp_plan_finalize(pl, md, &c, &e), 0);
            pp_plan_result r;
            simulate(pl, md, &c, &r);
            double ar = dp == 2 && with_params ? 1.5 : 0;
            REL(r.iteration_s, 10 + ar);
            REL(r.stage_allreduce_s[0], ar);
            REL(r.p2p_bytes, 2 * 2 * 100.0 * dp);
            pp_plan_result_free(&r);
            pp_plan_free(pl);
            pp_model_free(md);
        }
    }
}

static void test_plan_oom(void **st)
{
    (void)st;
    ps_err e = {0};
    /* weights + grads + Adam = 4 x 400 = 1600 B on a 1000 B device */
    pp_cluster c = test_cluster(1000, 0, 1e9);
    pp_model *md = chain_model(2, 1, 1, 1, 0, 0, 400);
    pp_plan *pl = one_per_stage(md, &c, 2, 4, 1, PP_1F1B, 1);
    pp_plan_result r;
    simulate(pl, md, &c, &r);
    assert_int_equal(r.oom, 1);
    assert_int_equal(r.oom_device, 0);
    assert_int_equal(r.oom_stage, 0);
    REL(r.oom_shortfall_bytes, 600);
    assert_true(r.throughput_samples_per_s == 0);
    /* the static check agrees: 1600 + 1 in flight x 0 B of activations */
    int dev = -2;
    double sh = 0;
    assert_int_equal(pp_plan_check_memory(pl, md, &c, NULL, &dev, &sh, &e), PS_ERUN);
    assert_int_equal(dev, 0);
    REL(sh, 600);
    assert_non_null(strstr(e.msg, "device 0"));
    assert_non_null(strstr(e.msg, "short by 600"));
    pp_plan_result_free(&r);
    pp_plan_free(pl);
    pp_model_free(md);
    /* activations: 10 B per micro-batch, 8 micro-batches on 60 B: GPipe
     * overflows on stage 0 (device 2), 1F1B (2 in flight) fits */
    c = test_cluster(60, 0, 1e9);
    md = chain_model(2, 1, 1, 1, 10, 0, 0);
    pp_schedule sch[2] = {PP_GPIPE, PP_1F1B};
    for (int k = 0; k < 2; k++) {
        pl = pp_plan_new(2, &e);
        pl->minibatch = 8;
        pl->schedule = sch[k];
        for (int s = 0; s < 2; s++) {
            int dev = 2 - s; /* stage 0 on device 2 */
            pp_plan_set_stage(pl, s, &s, 1, 1, &dev, 1, 0, &e);
        }
        assert_int_equal(pp_plan_finalize(pl, md, &c, &e), 0);
        simulate(pl, md, &c, &r);
        assert_int_equal(r.oom, k == 0);
        if (k == 0) {
            assert_int_equal(r.oom_device, 2);
            REL(r.oom_shortfall_bytes, 10);
        } else {
            REL(r.peak_device_bytes, 20);
            assert_int_equal(r.peak_device, 2);
        }
        pp_plan_result_free(&r);
        /* without the limit the peaks are reported, and match the closed
         * form behind the static check */
        pp_sim_opts o = {.no_memory_limit = 1};
        assert_int_equal(pp_plan_simulate(pl, md, &c, &o, &r, &e), 0);
        assert_int_equal(r.oom, 0);
        REL(r.stage_peak_bytes[0], k == 0 ? 80 : 20);
        double sh = 0;
        assert_int_equal(pp_plan_check_memory(pl, md, &c, NULL, NULL, &sh, &e),
                         k == 0 ? PS_ERUN : 0);
        REL(sh, k == 0 ? 20 : 0);
        pp_plan_result_free(&r);
        pp_plan_free(pl);
    }
    pp_model_free(md);
}

/* Stage 0 at b=1 feeds stage 1 at b=2: F(1,k) waits for F(0,2k) and
 * F(0,2k+1); B(0,j) waits for B(1,j/2).  GraphPipe's in-flight rule gives
 * stage 0 ceil(1*2/1) + 1 = 3. */
static void test_mixed_microbatches(void **st)
{
    (void)st;
    pp_cluster c = test_cluster(80e9, 0, 1e9);
    pp_model *md = chain_model(2, 1, 1, 1, 1, 0, 0);
    ps_err e = {0};
    pp_plan *pl = pp_plan_new(2, &e);
    pl->minibatch = 8;
    for (int s = 0; s < 2; s++)
        pp_plan_set_stage(pl, s, &s, 1, s + 1, &s, 1, 0, &e);
    assert_int_equal(pp_plan_finalize(pl, md, &c, &e), 0);
    assert_int_equal(pp_plan_inflight(pl, 0), 3);
    pp_sim *sim = pp_sim_plan(pl, md, &c, NULL, &e);
    assert_non_null(sim);
    assert_int_equal(pp_sim_run(sim, &e), 0);
    const des *d = pp_sim_des(sim);
    for (int k = 0; k < 4; k++) {
        double f1 = des_task_start_s(d, pp_sim_node_task(sim, 1, PP_OP_FWD, k));
        assert_true(f1 >= des_task_end_s(d, pp_sim_node_task(sim, 0, PP_OP_FWD, 2 * k + 1)));
        for (int j = 2 * k; j <= 2 * k + 1; j++)
            assert_true(des_task_start_s(d, pp_sim_node_task(sim, 0, PP_OP_BWD, j)) >=
                        des_task_end_s(d, pp_sim_node_task(sim, 1, PP_OP_BWD, k)));
    }
    pp_plan_result r;
    assert_int_equal(pp_sim_plan_result(sim, &r, &e), 0);
    /* stage 1's ops take twice as long (2 samples at 1 s each) */
    REL(r.stage_busy_s[1], 4 * (2 + 4));
    REL(r.stage_busy_s[0], 8 * (1 + 2));
    pp_plan_result_free(&r);
    pp_sim_free(sim);
    /* a given in-flight of 1 on stage 0 deadlocks: F(1,0) needs F(0,1),
     * which stage 0 orders after B(0,0), which needs B(1,0) */
    pl->stages[0].inflight = 1;
    pp_plan_result r2;
    assert_int_equal(pp_plan_simulate(pl, md, &c, NULL, &r2, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "deadlock"));
    pp_plan_free(pl);
    pp_model_free(md);
}

/* The size: 64 stages x 1024 micro-batches through the plan front
 * end (make bench times it; here only a loose bound on a loaded machine). */
static void test_plan_scale(void **st)
{
    (void)st;
    pp_cluster c = test_cluster(80e9, 1e-6, 1e11);
    pp_model *md = chain_model(64, 1e-3, 1e-3, 1e-3, 1e6, 1e5, 1e6);
    pp_plan *pl = one_per_stage(md, &c, 64, 1024, 1, PP_1F1B, 1);
    pp_plan_result r;
    double t0 = ps_now_s();
    simulate(pl, md, &c, &r);
    double wall = ps_now_s() - t0;
    print_message("64 stages x 1024 micro-batches (with transfers): %.1f ms, %llu events\n",
                  wall * 1e3, (unsigned long long)r.events);
    assert_true(wall < 5);
    assert_int_equal(r.oom, 0);
    assert_true(r.iteration_s > (1024 + 63) * 3e-3);
    pp_plan_result_free(&r);
    pp_plan_free(pl);
    pp_model_free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interleaved_closed_form),
        cmocka_unit_test(test_interleaved_order),
        cmocka_unit_test(test_zbh1_closed_form),
        cmocka_unit_test(test_plan_chain_closed_forms),
        cmocka_unit_test(test_graphpipe_dag),
        cmocka_unit_test(test_plan_transfers_allreduce),
        cmocka_unit_test(test_plan_oom),
        cmocka_unit_test(test_mixed_microbatches),
        cmocka_unit_test(test_plan_scale),
    };
    return cmocka_run_group_tests_name("pp_graph_sim", tests, NULL, NULL);
}
