/* sim/specdec/cost + serve: step-cost closed forms (memory-bound weight
 * read, compute-bound GEMMs, the knee, KV and TP terms, offload streaming,
 * measured tables), the serving loop against exact analytic schedules with
 * deterministic acceptance, Poisson arrival rate, the optimizer against
 * brute force over its grid, and the monotone optimal tree size in batch. */
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

#include "sim/specdec/build.h"
#include "sim/specdec/cost.h"
#include "sim/specdec/serve.h"

#define EQ(a, b) eq_d((a), (b), 1e-12, #a, __LINE__)
#define NEAR(a, b, rel) eq_d((a), (b), (rel), #a, __LINE__)
static void eq_d(double a, double b, double rel, const char *what, int line)
{
    double tol = rel * (fabs(b) > 1e-300 ? fabs(b) : 1);
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g", line, what, a, b);
}

static sd_cost *analytic(const char *llm, const char *cluster, int offload, double launch)
{
    sd_cost_cfg cfg;
    sd_cost_cfg_default(&cfg);
    cfg.llm = llm;
    cfg.cluster = cluster;
    cfg.offload = offload;
    cfg.launch_s = launch;
    ps_err e = {0};
    sd_cost *c = sd_cost_analytic(&cfg, &e);
    if (!c)
        fail_msg("cost %s/%s: %s", llm, cluster, e.msg);
    return c;
}

static void test_models(void **st)
{
    (void)st;
    assert_int_equal(sd_model_count(), 6);
    for (int i = 0; i < sd_model_count(); i++) {
        const sd_model_desc *m = sd_model_at(i);
        /* shapes reproduce the published parameter counts within 2% */
        if (fabs(m->params / m->params_pub - 1) > 0.02)
            fail_msg("%s: %.4g params from the shape vs %.4g published", m->name, m->params,
                     m->params_pub);
    }
    /* hand count, LLaMA-7B: 32 (4 h^2 + 3 h f + 2 h) + 2 V h + h */
    const sd_model_desc *m = sd_model_find("llama-7b", NULL);
    EQ(m->params, 32.0 * (4.0 * 4096 * 4096 + 3.0 * 4096 * 11008 + 2 * 4096) +
                      2.0 * 32000 * 4096 + 4096);
    ps_err e = {0};
    assert_null(sd_model_find("gpt-9", &e));
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, "llama-65b"));
}

static void test_memory_and_compute_bound(void **st)
{
    (void)st;
    sd_cost *c = analytic("llama-7b", "a10x1", 0, 0);
    const sd_model_desc *m = sd_model_find("llama-7b", NULL);
    double W = sd_cost_llm_weight_bytes(c);
    /* weights read: everything but the gathered input embedding, FP16 */
    EQ(W, 2 * (m->params - 32000.0 * 4096));
    /* one token, no KV, no launches: exactly weight bytes / datasheet BW */
    EQ(sd_cost_verify(c, 1, 1, 0), W / 600e9);
    /* knee = FLOPS / BW for FP16 on the A10: 125e12 / 600e9 */
    EQ(sd_cost_knee(c), 125e12 / 600e9);
    double knee = sd_cost_knee(c);
    /* memory-bound up to the knee: flat */
    EQ(sd_cost_verify(c, 1, (int)floor(knee), 0), W / 600e9);
    EQ(sd_cost_verify(c, 2, 100, 0), W / 600e9);
    /* compute-bound beyond: 2 P T / FLOPS exactly */
    double P = W / 2;
    EQ(sd_cost_verify(c, 4, 1024, 0), 2 * P * 4096 / 125e12);
    assert_true(sd_cost_verify(c, 1, (int)ceil(knee) + 1, 0) > W / 600e9);
    /* KV read and attention FLOPs, linear in the context */
    double ctx = 500, L = 32, h = 4096;
    EQ(sd_cost_verify(c, 3, 1, 500) - sd_cost_verify(c, 3, 1, 0),
       2 * L * h * 2 * ctx * 3 / 600e9 + 4 * L * h * ctx * 3 / 125e12);
    sd_cost_parts pt;
    assert_int_equal(sd_cost_verify_parts(c, 3, 1, 500, &pt), 0);
    EQ(pt.kv_s, 2 * L * h * 2 * ctx * 3 / 600e9);
    sd_cost_free(c);
    /* H100 SXM knee 989.5e12 / 3.35e12 ~ 295 (the notes' [calc]) */
    c = analytic("llama-7b", "h100x1", 0, 0);
    EQ(sd_cost_knee(c), 989.5e12 / 3.35e12);
    assert_true(fabs(sd_cost_knee(c) - 295) < 1);
    sd_cost_free(c);
    /* efficiencies move the knee: flops_eff 0.5 halves it */
    sd_cost_cfg cfg;
    sd_cost_cfg_default(&cfg);
    cfg.llm = "llama-7b";
    cfg.cluster = "h100x1";
    cfg.flops_eff = 0.5;
    c = sd_cost_analytic(&cfg, NULL);
    assert_non_null(c);
    EQ(sd_cost_knee(c), 0.5 * 989.5e12 / 3.35e12);
    sd_cost_free(c);
    /* launches: L kernels_per_layer launch_s on top */
    c = analytic("llama-7b", "a10x1", 0, 5e-6);
    EQ(sd_cost_verify(c, 1, 1, 0), W / 600e9 + 32 * 12 * 5e-6);
    sd_cost_free(c);
}

static void test_parallel_and_offload(void **st)
{
    (void)st;
    /* OPT-30B on 4 A10 (TP 4 over PCIe4: alpha 3 us, beta 31.5 GB/s) */
    sd_cost *c = analytic("opt-30b", "a10x4", 0, 0);
    double W = sd_cost_llm_weight_bytes(c), L = 48, h = 7168, T = 2 * 5;
    sd_cost_parts pt;
    assert_int_equal(sd_cost_verify_parts(c, 2, 5, 0, &pt), 0);
    EQ(pt.weights_s, W / (4 * 600e9));
    double ar = 2 * 3 * 3e-6 + 2.0 * 3 / 4 * T * h * 2 / 31.5e9;
    EQ(pt.comm_s, L * 2 * ar);
    EQ(pt.total_s, W / (4 * 600e9) + L * 2 * ar);
    assert_int_equal(sd_cost_gpus(c), 4);
    sd_cost_free(c);
    /* LLaMA-65B on 8 A10: TP 4 x PP 2 by default; hand-off over 100 Gbps */
    c = analytic("llama-65b", "a10x8", 0, 0);
    json_t *j = sd_cost_to_json(c);
    assert_int_equal(json_integer_value(json_object_get(j, "tp")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "pp")), 2);
    json_decref(j);
    assert_int_equal(sd_cost_verify_parts(c, 1, 1, 0, &pt), 0);
    L = 80;
    h = 8192;
    ar = 2 * 3 * 3e-6 + 2.0 * 3 / 4 * 1 * h * 2 / 31.5e9;
    EQ(pt.comm_s, L * 2 * ar + 30e-6 + h * 2 / 12.5e9);
    sd_cost_free(c);
    /* not enough memory without offloading: the message says what to do */
    ps_err e = {0};
    sd_cost_cfg cfg;
    sd_cost_cfg_default(&cfg);
    cfg.llm = "llama-65b";
    cfg.cluster = "a10x4";
    assert_null(sd_cost_analytic(&cfg, &e));
    assert_int_equal(e.code, PS_EINPUT);
    assert_non_null(strstr(e.msg, "offload"));
    /* OPT-13B offloaded on one A10: the part beyond 24 GiB - 4 GiB - SSM streams over PCIe4
     * every step and hides the GPU work */
    c = analytic("opt-13b", "a10x1", 1, 0);
    W = sd_cost_llm_weight_bytes(c);
    double ssm = 2 * sd_model_find("opt-125m", NULL)->params;
    double streamed = W - (24 * 1073741824.0 - 4 * 1073741824.0 - ssm);
    EQ(sd_cost_verify(c, 1, 1, 0), 3e-6 + streamed / 31.5e9);
    /* flat in the tree size until the GPU work exceeds the streaming */
    EQ(sd_cost_verify(c, 1, 512, 0), 3e-6 + streamed / 31.5e9);
    sd_cost_free(c);
    /* JSON errors name the field */
    json_t *bad = json_pack("{s:s,s:s,s:i}", "llm", "llama-7b", "cluster", "a10x1", "tpp", 2);
    assert_null(sd_cost_from_json(bad, "cost.json", &e));
    assert_non_null(strstr(e.msg, "cost.json"));
    assert_non_null(strstr(e.msg, "tpp"));
    json_decref(bad);
    bad = json_pack("{s:s,s:s}", "llm", "llama-7b", "cluster", "a10x9");
    assert_null(sd_cost_from_json(bad, "cost.json", &e));
    assert_non_null(strstr(e.msg, "cost.json.cluster"));
    json_decref(bad);
}

static void test_table(void **st)
{
    (void)st;
    const double n[] = {1, 8, 64}, s[] = {0.010, 0.012, 0.040};
    ps_err e = {0};
    sd_cost *c = sd_cost_from_table(n, s, 3, 0.001, &e);
    assert_non_null(c);
    EQ(sd_cost_verify(c, 1, 1, 0), 0.010);
    EQ(sd_cost_verify(c, 1, 4, 999), 0.010 + 0.002 * 3 / 7);
    EQ(sd_cost_verify(c, 2, 16, 0), 0.012 + 0.028 * 24 / 56);
    EQ(sd_cost_verify(c, 4, 16, 0), 0.040);
    EQ(sd_cost_verify(c, 4, 32, 0), 0.040 + 0.028 * 64 / 56); /* extrapolated */
    EQ(sd_cost_draft(c, 2, 3, 4, 0), 0.001 * 24);
    EQ(sd_cost_prefill(c, 2, 4), 0.012);
    EQ(sd_cost_knee(c), 0);
    sd_cost_free(c);
    const double n2[] = {1, 1};
    assert_null(sd_cost_from_table(n2, s, 2, 0, &e));
    assert_non_null(strstr(e.msg, "n_tokens[1]"));
    json_t *j = json_pack("{s:{s:[i,i],s:[f]},s:f}", "table", "n_tokens", 1, 2, "verify_s", 0.1,
                          "draft_s_per_token", 0.0);
    assert_null(sd_cost_from_json(j, "m.json", &e));
    assert_non_null(strstr(e.msg, "m.json.table"));
    json_decref(j);
}

static sd_accept *certain(void)
{
    const double p[1] = {1.0};
    ps_err e = {0};
    sd_accept *a = sd_accept_positional(p, 1, &e);
    if (!a)
        fail_msg("accept: %s", e.msg);
    return a;
}

static const double TN[] = {1, 4, 16, 64}, TS[] = {0.02, 0.021, 0.025, 0.05};
#define DPS 0.0005

static void test_serve_deterministic(void **st)
{
    (void)st;
    sd_cost *c = sd_cost_from_table(TN, TS, 4, DPS, NULL);
    sd_accept *a = certain();
    ps_err e = {0};
    sd_serve_cfg cfg;
    sd_serve_result r;
    /* one request, chain of 3 drafts, p1 = 1: every step emits 4 tokens */
    sd_serve_cfg_default(&cfg);
    cfg.method = SD_METHOD_SEQUENCE;
    cfg.seq_k = 3;
    cfg.prompt_default = 16;
    cfg.output_default = 20;
    assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
    double step = sd_cost_verify(c, 1, 4, 0) + DPS * 3;
    double pre = sd_cost_prefill(c, 1, 16);
    EQ(pre, 0.025);
    assert_int_equal(r.steps, 5); /* ceil(19 / 4) */
    EQ(r.tokens_per_step, 19.0 / 5);
    EQ(r.makespan_s, pre + 5 * step);
    EQ(r.lat_mean_s, (pre + 5 * step) / 20);
    EQ(r.lat_p99_s, r.lat_mean_s);
    sd_serve_result_free(&r);
    /* predictor: step / E[tokens] with E = 4 */
    double tps, spt;
    sd_tree *chain = sd_tree_from_expansion((const int[]){1, 1, 1}, 3, NULL);
    assert_int_equal(sd_predict_time_per_token(c, chain, a, 0, 0, &tps, &spt, &e), 0);
    EQ(tps, 4);
    EQ(spt, step / 4);
    sd_tree_free(chain);
    /* four requests at t = 0, batch 4, specinfer tree <1,1,3,1,1,1,1,1>: with p1 = 1 the
     * accepted path is the rank-1 chain of depth 8, so 9 tokens per step */
    cfg.method = SD_METHOD_SPECINFER;
    cfg.nreq = 4;
    cfg.max_batch = 4;
    cfg.output_default = 128;
    assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
    int steps = (127 + 8) / 9;
    assert_int_equal(r.steps, steps);
    assert_int_equal(r.prefills, 1);
    EQ(r.tokens_per_step, 127.0 / steps);
    EQ(r.mean_batch, 4);
    /* draft: 8 levels over the nodes with children (1,1,1,3,3,3,3,3 = 18) x 4 requests */
    double s4 = sd_cost_verify(c, 4, 21, 0) + DPS * 18 * 4;
    EQ(r.makespan_s, sd_cost_prefill(c, 4, 16) + steps * s4);
    EQ(r.lat_p50_s, r.makespan_s / 128);
    EQ(r.tokens_per_s, 4 * 128 / r.makespan_s);
    EQ(r.mean_tree_nodes, 21);
    EQ(r.draft_busy_s, steps * DPS * 18 * 4);
    sd_serve_result_free(&r);
    /* merge of 3 SSM chains of 8 on one "GPU" (the table's): 3 sequential chain drafts of
     * 8 levels, a 25-node tree <3,1,...,1>; p1 = 1 follows the rank-1 chain: 9 tokens */
    cfg.method = SD_METHOD_MERGE;
    assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
    assert_int_equal(r.steps, steps);
    EQ(r.mean_tree_nodes, 25);
    EQ(r.makespan_s, sd_cost_prefill(c, 4, 16) +
                         steps * (sd_cost_verify(c, 4, 25, 0) + 3 * 8 * DPS * 4));
    sd_serve_result_free(&r);
    /* incremental, batch 2 of 3 requests: the third joins when the first two finish */
    cfg.method = SD_METHOD_INCREMENTAL;
    cfg.nreq = 3;
    cfg.max_batch = 2;
    cfg.output_default = 10;
    assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
    double t1 = sd_cost_prefill(c, 2, 16) + 9 * sd_cost_verify(c, 2, 1, 0);
    double t2 = t1 + sd_cost_prefill(c, 1, 16) + 9 * sd_cost_verify(c, 1, 1, 0);
    assert_int_equal(r.steps, 18);
    EQ(r.tokens_per_step, 1);
    EQ(r.makespan_s, t2);
    EQ(r.req_latency_s[0], t1 / 10);
    EQ(r.req_latency_s[2], t2 / 10);
    EQ(r.lat_mean_s, (2 * t1 + t2) / 30);
    /* from admission: the third waited t1 in the queue */
    EQ(r.svc_lat_mean_s, (2 * t1 + (t2 - t1)) / 30);
    sd_serve_result_free(&r);
    /* a late arrival (trace) waits for the idle server to wake up */
    const double arr[2] = {0, 10};
    cfg.arrival_s = arr;
    cfg.nreq = 2;
    assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
    double one = sd_cost_prefill(c, 1, 16) + 9 * sd_cost_verify(c, 1, 1, 0);
    EQ(r.makespan_s, 10 + one);
    EQ(r.req_latency_s[1], one / 10);
    sd_serve_result_free(&r);
    sd_accept_free(a);
    sd_cost_free(c);
}

static const double PAPER_P[5] = {0.68, 0.09, 0.04, 0.03, 0.01};

/* random acceptance: long requests (the cap at the end of a request is negligible), the
 * simulated tokens per step agree with the closed form; sd of a step ~ 2.3 tokens, 3e4
 * steps: 2% is > 4 sigma */
static void test_serve_tokens_per_step(void **st)
{
    (void)st;
    sd_cost *c = sd_cost_from_table(TN, TS, 4, DPS, NULL);
    ps_err e = {0};
    sd_accept *a = sd_accept_positional(PAPER_P, 5, &e);
    assert_non_null(a);
    const sd_method ms[3] = {SD_METHOD_SPECINFER, SD_METHOD_SEQUENCE, SD_METHOD_MERGE};
    for (int i = 0; i < 3; i++) {
        sd_serve_cfg cfg;
        sd_serve_cfg_default(&cfg);
        cfg.method = ms[i];
        cfg.seq_k = 6;
        cfg.nreq = 20;
        cfg.max_batch = 4;
        cfg.output_default = 5000;
        sd_step_plan pl;
        assert_int_equal(sd_step_plan_make(&cfg, c, a, NULL, 4, 0, &pl, &e), 0);
        double want;
        assert_int_equal(sd_accept_expected(a, pl.tree, &want, &e), 0);
        sd_step_plan_free(&pl);
        sd_serve_result r;
        assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
        if (fabs(r.tokens_per_step / want - 1) > 0.02)
            fail_msg("%s: %.4f tokens per step simulated, %.4f closed form",
                     sd_method_name(ms[i]), r.tokens_per_step, want);
        sd_serve_result_free(&r);
    }
    sd_accept_free(a);
    sd_cost_free(c);
}

static void test_serve_poisson(void **st)
{
    (void)st;
    /* negligible service: the makespan is the last arrival; n / rate ~ Gamma(n, rate) with
     * sd sqrt(n) / rate: 4 sigma */
    const double n[] = {1}, s[] = {1e-7};
    sd_cost *c = sd_cost_from_table(n, s, 1, 0, NULL);
    sd_accept *a = certain();
    sd_serve_cfg cfg;
    sd_serve_cfg_default(&cfg);
    cfg.nreq = 4000;
    cfg.rate = 50;
    cfg.output_default = 2;
    cfg.max_batch = 8;
    sd_serve_result r;
    ps_err e = {0};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        cfg.seed = seed;
        assert_int_equal(sd_serve_run(c, a, &cfg, &r, &e), 0);
        double want = 4000 / 50.0, sd = sqrt(4000.0) / 50;
        if (fabs(r.makespan_s - want) > 4 * sd)
            fail_msg("seed %d: makespan %g, expected %g +- %g", (int)seed, r.makespan_s, want,
                     4 * sd);
        assert_int_equal(r.tokens, 8000);
        sd_serve_result_free(&r);
    }
    sd_accept_free(a);
    sd_cost_free(c);
}

static void test_optimizer_bruteforce(void **st)
{
    (void)st;
    sd_cost *c = analytic("llama-7b", "a10x1", 0, -1);
    int grid[40], ng = 0;
    for (int i = 1; i <= 40; i++)
        grid[ng++] = i;
    const int dg[3] = {0, 3, 6};
    ps_err e = {0};
    sd_optimizer *o = sd_optimizer_new(PAPER_P, 5, 0, grid, ng, dg, 3, &e);
    assert_non_null(o);
    const int batches[4] = {1, 4, 16, 64};
    for (int bi = 0; bi < 4; bi++) {
        int b = batches[bi];
        sd_opt_choice ch;
        assert_int_equal(sd_optimizer_pick(o, c, b, 200, &ch, &e), 0);
        /* brute force, independently: DP tree per grid point, costed here */
        double best = -1;
        int bn = 0, bd = 0;
        for (int di = 0; di < 3; di++)
            for (int i = 0; i < ng; i++) {
                double v;
                sd_tree *t = sd_sequoia_opt(PAPER_P, 5, grid[i], dg[di], &v, NULL, &e);
                assert_non_null(t);
                double step = sd_cost_verify(c, b, t->n, 200) +
                              (t->n > 1 ? sd_cost_draft_tree(c, b, t, 0, 200) : 0);
                double obj = v / step;
                NEAR(sd_optimizer_objective(o, c, b, 200, grid[i], dg[di]), obj, 1e-12);
                if (obj > best) {
                    best = obj;
                    bn = grid[i];
                    bd = dg[di];
                }
                sd_tree_free(t);
            }
        NEAR(ch.tokens / ch.step_s, best, 1e-12);
        assert_int_equal(ch.n, bn);
        assert_int_equal(ch.max_depth, bd);
        sd_tree *t = sd_optimizer_tree(o, &ch, &e);
        assert_non_null(t);
        assert_int_equal(t->n, ch.n);
        double v;
        assert_int_equal(sd_tree_expected_tokens(t, PAPER_P, 5, &v, &e), 0);
        NEAR(v, ch.tokens, 1e-12);
        sd_tree_free(t);
    }
    sd_optimizer_free(o);
    sd_cost_free(c);
}

static void test_optimizer_monotone(void **st)
{
    (void)st;
    /* larger batch -> the knee is reached with fewer nodes per request -> smaller optimum */
    const char *llms[2] = {"llama-7b", "llama-7b"}, *cls[2] = {"a10x1", "h100x1"};
    ps_err e = {0};
    sd_optimizer *o = sd_optimizer_new(PAPER_P, 5, 512, NULL, 0, NULL, 0, &e);
    assert_non_null(o);
    for (int k = 0; k < 2; k++) {
        sd_cost *c = analytic(llms[k], cls[k], 0, -1);
        int prev = 1 << 30, first = 0, last = 0;
        for (int b = 1; b <= 64; b *= 2) {
            sd_opt_choice ch;
            assert_int_equal(sd_optimizer_pick(o, c, b, 256, &ch, &e), 0);
            if (ch.n > prev)
                fail_msg("%s: optimal n %d at batch %d > %d at batch %d", cls[k], ch.n, b, prev,
                         b / 2);
            if (b == 1)
                first = ch.n;
            last = ch.n;
            prev = ch.n;
        }
        assert_true(last < first);
        sd_cost_free(c);
    }
    sd_optimizer_free(o);
    /* best chain: brute force over k */
    sd_cost *c = analytic("llama-7b", "a10x1", 0, -1);
    sd_accept *a = sd_accept_positional(PAPER_P, 5, &e);
    int k;
    double spt;
    assert_int_equal(sd_best_chain(c, a, 2, 100, 12, &k, &spt, &e), 0);
    double best = INFINITY;
    int bk = 0;
    for (int j = 1; j <= 12; j++) {
        int ks[12];
        for (int i = 0; i < j; i++)
            ks[i] = 1;
        sd_tree *t = sd_tree_from_expansion(ks, j, NULL);
        double v;
        sd_tree_expected_tokens(t, PAPER_P, 5, &v, NULL);
        double s = (sd_cost_verify(c, 2, j + 1, 100) + sd_cost_draft_tree(c, 2, t, 0, 100)) / v;
        if (s < best) {
            best = s;
            bk = j;
        }
        sd_tree_free(t);
    }
    assert_int_equal(k, bk);
    NEAR(spt, best, 1e-12);
    sd_accept_free(a);
    sd_cost_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_memory_and_compute_bound),
        cmocka_unit_test(test_parallel_and_offload),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_serve_deterministic),
        cmocka_unit_test(test_serve_tokens_per_step),
        cmocka_unit_test(test_serve_poisson),
        cmocka_unit_test(test_optimizer_bruteforce),
        cmocka_unit_test(test_optimizer_monotone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
