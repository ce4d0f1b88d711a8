/* real/specmodels.c: the tiny LLM + boost-tuned SSMs.  On a generated
 * fortune-style corpus (a temp folder, PLANSIM_TEXT_DIR-independent) with
 * sm_config_test sizes: boost masking (the mask function and the fraction of
 * pool positions SSM_2 trains on, recomputed from the pool), determinism for
 * a seed, the weight cache (round trip, corrupt file -> warning + retrain),
 * Table 1 against a brute force (full sorting, exact sums, tied logits, a
 * Monte Carlo check of the stochastic row), prompts and config checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "real/specmodels.h"

#include "tests/rt_testutil.h"

static char corpus_dir[64];
static text_corpus corp;

static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran",
                              "to", "it", "is", "not", "what", "you", "think", "of", "time"};

static int setup(void **st)
{
    (void)st;
    strcpy(corpus_dir, "/tmp/plansim_sm_XXXXXX");
    if (!mkdtemp(corpus_dir))
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/fort", corpus_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    rt_rng r;
    rt_rng_seed(&r, 5);
    const int nw = (int)(sizeof words / sizeof *words);
    for (int rec = 0; rec < 400; rec++) {
        int n = 6 + (int)(rt_rng_next(&r) % 10);
        for (int i = 0; i < n; i++) {
            /* a Markov chain over the words: mostly the next word in the list */
            int w = (rec + i + (rt_rng_next(&r) % 4 == 0 ? (int)(rt_rng_next(&r) % 5) : 0)) % nw;
            fprintf(f, "%s%s", i ? " " : "", words[w]);
            if (i % 7 == 6)
                fputc('\n', f);
        }
        fputs(".\n%\n", f);
    }
    fclose(f);
    ps_err e = {0};
    return text_load(corpus_dir, &corp, &e);
}

static int teardown(void **st)
{
    (void)st;
    text_free(&corp);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", corpus_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void same_params(const gpt *a, const gpt *b, int expect_equal, const char *what)
{
    assert_int_equal(a->nparams, b->nparams);
    int eq = 1;
    for (int i = 0; i < a->nparams && eq; i++)
        eq = !memcmp(a->params[i].w.data, b->params[i].w.data, rt_tensor_bytes(&a->params[i].w));
    if (eq != expect_equal)
        fail_msg("%s: parameters %s", what, eq ? "equal" : "differ");
}

/* ------------------------------------------------------------------ boost masking */

static void test_boost_mask(void **st)
{
    (void)st;
    const int32_t llm[] = {5, 6, 7, 8, 9, 10};
    const int32_t p0[] = {5, 0, 7, 0, 0, 1};
    const int32_t p1[] = {1, 6, 2, 0, 0, 10};
    const int32_t *prev[] = {p0, p1};
    int32_t out[6];
    sm_boost_mask(llm, prev, 0, 6, out);
    assert_memory_equal(out, llm, sizeof out);
    sm_boost_mask(llm, prev, 1, 6, out);
    const int32_t want1[] = {-1, 6, -1, 8, 9, 10};
    assert_memory_equal(out, want1, sizeof out);
    sm_boost_mask(llm, prev, 2, 6, out);
    const int32_t want2[] = {-1, -1, -1, 8, 9, -1};
    assert_memory_equal(out, want2, sizeof out);
}

/* Train the test config; recompute the pool (seed + 3, one window at a time
 * as sm_train draws it) and check that SSM_2 trained on exactly the
 * positions where SSM_1's argmax differs from the LLM's. */
static void test_boost_fraction_and_determinism(void **st)
{
    (void)st;
    sm_config cfg = sm_config_test(11);
    sm_set a, b;
    OK(sm_train(&cfg, &corp, &a, E));
    OK(sm_train(&cfg, &corp, &b, E));
    same_params(&a.llm, &b.llm, 1, "same seed: llm");
    for (int k = 0; k < cfg.nssm; k++)
        same_params(&a.ssm[k], &b.ssm[k], 1, "same seed: ssm");
    assert_true(a.rep.llm_val_loss == b.rep.llm_val_loss);
    assert_true(a.rep.ssm_agree[1] == b.rep.ssm_agree[1]);

    const int64_t T = cfg.T, P = cfg.pool, N = P * T;
    int32_t *pool = malloc((size_t)N * sizeof *pool), *junk = malloc((size_t)T * sizeof *junk);
    int32_t *pl = malloc((size_t)N * sizeof *pl), *p1 = malloc((size_t)N * sizeof *p1);
    int32_t *tg = malloc((size_t)N * sizeof *tg);
    rt_rng r;
    rt_rng_seed(&r, cfg.seed + 3);
    for (int64_t w = 0; w < P; w++)
        OK(text_batch(&corp, TEXT_TRAIN, &r, 1, T, pool + w * T, junk, E));
    /* SSM_1's weights at the time of masking are its final weights (SSM_2 is
     * a copy that is trained afterwards); batches of B windows as sm_train */
    for (int64_t w = 0; w < P; w += cfg.B) {
        gpt_batch in = {.B = cfg.B, .T = T, .tokens = pool + w * T};
        OK(gpt_forward(&a.llm, &in, NULL, E));
        OK(sm_argmax(&a.llm, &in, pl + w * T, E));
        OK(gpt_forward(&a.ssm[0], &in, NULL, E));
        OK(sm_argmax(&a.ssm[0], &in, p1 + w * T, E));
    }
    const int32_t *prev[] = {p1};
    sm_boost_mask(pl, prev, 1, N, tg);
    int64_t kept = 0, agree = 0;
    for (int64_t i = 0; i < N; i++) {
        kept += tg[i] >= 0;
        agree += p1[i] == pl[i];
        assert_true(tg[i] == (p1[i] == pl[i] ? -1 : pl[i]));
    }
    assert_true(a.rep.boost_frac[0] == 1.0);
    assert_true(fabs(a.rep.boost_frac[1] - (double)kept / (double)N) < 1e-12);
    /* union agreement is monotone and at least each SSM's own */
    assert_true(a.rep.union_agree[0] == a.rep.ssm_agree[0]);
    assert_true(a.rep.union_agree[1] >= a.rep.union_agree[0]);
    assert_true(a.rep.union_agree[1] >= a.rep.ssm_agree[1]);
    /* the LLM learned something: loss well below ln 256 */
    print_message("test models: llm val loss %.3f, ssm agree %.3f %.3f, union %.3f, "
                  "boost frac %.3f\n",
                  a.rep.llm_val_loss, a.rep.ssm_agree[0], a.rep.ssm_agree[1],
                  a.rep.union_agree[1], a.rep.boost_frac[1]);
    assert_true(a.rep.llm_val_loss < 0.8 * log(256.0));
    assert_true(agree > 0 && kept > 0);

    /* another seed: other weights */
    sm_config c2 = cfg;
    c2.seed = 12;
    assert_true(sm_config_hash(&c2) != sm_config_hash(&cfg));
    sm_set d;
    OK(sm_train(&c2, &corp, &d, E));
    same_params(&a.llm, &d.llm, 0, "other seed: llm");
    /* boost off: SSM_2 is trained like SSM_1 from its own seed */
    sm_config c3 = cfg;
    c3.boost = 0;
    sm_set f;
    OK(sm_train(&c3, &corp, &f, E));
    same_params(&a.llm, &f.llm, 1, "boost off: same llm");
    same_params(&a.ssm[0], &f.ssm[0], 1, "boost off: same ssm1");
    same_params(&a.ssm[1], &f.ssm[1], 0, "boost off: other ssm2");
    assert_true(f.rep.boost_frac[1] == 1.0);
    free(pool), free(junk), free(pl), free(p1), free(tg);
    sm_free(&a), sm_free(&b), sm_free(&d), sm_free(&f);
}

/* ------------------------------------------------------------------ cache */

static void test_cache(void **st)
{
    (void)st;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/models/sub", corpus_dir);
    sm_config cfg = sm_config_test(21);
    sm_set a, b, c, d;
    OK(sm_load_or_train(dir, &cfg, &corp, &a, E));
    assert_int_equal(a.from_cache, 0);
    OK(sm_load_or_train(dir, &cfg, &corp, &b, E));
    assert_int_equal(b.from_cache, 1);
    same_params(&a.llm, &b.llm, 1, "cache: llm");
    same_params(&a.ssm[0], &b.ssm[0], 1, "cache: ssm1");
    same_params(&a.ssm[1], &b.ssm[1], 1, "cache: ssm2");
    assert_true(a.rep.llm_val_loss == b.rep.llm_val_loss);
    assert_true(a.rep.ssm_agree[1] == b.rep.ssm_agree[1]);
    assert_true(a.rep.union_agree[1] == b.rep.union_agree[1]);
    assert_true(isfinite(a.rep.ssm1_pre_val_loss));
    assert_true(a.rep.ssm1_pre_val_loss == b.rep.ssm1_pre_val_loss);
    assert_true(a.rep.boost_frac[1] == b.rep.boost_frac[1]);
    assert_true(b.rep.llm_params == a.rep.llm_params);

    /* corrupt one byte near the end of ssm1's file: retrained, never used */
    char path[1024];
    sm_cache_path(dir, &cfg, 0, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -9, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -9, SEEK_END);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    OK(sm_load_or_train(dir, &cfg, &corp, &c, E));
    assert_int_equal(c.from_cache, 0);
    same_params(&a.ssm[0], &c.ssm[0], 1, "retrained ssm1");
    /* the retrained cache was saved again and loads */
    OK(sm_load_or_train(dir, &cfg, &corp, &d, E));
    assert_int_equal(d.from_cache, 1);
    same_params(&a.ssm[0], &d.ssm[0], 1, "reloaded ssm1");

    /* another config does not pick up these files */
    sm_config c2 = cfg;
    c2.ssm_steps++;
    char p2[1024];
    sm_cache_path(dir, &c2, -1, p2, sizeof p2);
    sm_cache_path(dir, &cfg, -1, path, sizeof path);
    assert_string_not_equal(p2, path);
    sm_free(&a), sm_free(&b), sm_free(&c), sm_free(&d);
}

/* ------------------------------------------------------------------ Table 1 */

static const float *sort_row;
static int cmp_desc(const void *x, const void *y)
{
    int i = *(const int *)x, j = *(const int *)y;
    if (sort_row[i] != sort_row[j])
        return sort_row[i] > sort_row[j] ? -1 : 1;
    return i - j;
}

static void randomize(gpt *m, uint64_t seed, double std)
{
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].w.ndim == 2)
            OK(rt_init_normal(&m->params[i].w, &r, 0.0, std, E));
}

static void test_table1_brute(void **st)
{
    (void)st;
    gpt_config lc = {.vocab = 256, .ctx = 16, .dim = 16, .heads = 2, .layers = 1, .tied = 1};
    gpt_config sc = {.vocab = 256, .ctx = 16, .dim = 8, .heads = 2, .layers = 1, .tied = 1};
    gpt llm, ssm;
    OK(gpt_init(&llm, &lc, rt_cpu(), RT_F32, 1, E));
    OK(gpt_init(&ssm, &sc, rt_cpu(), RT_F32, 2, E));
    randomize(&llm, 3, 0.5);
    randomize(&ssm, 4, 0.5);
    /* tied logits in the SSM: rows 40..47 of its (tied) embedding equal row
     * 39, so those tokens' logits are always equal (ties to the lower id) */
    float *wte = rt_f32(&ssm.params[GPT_WTE].w);
    for (int t = 40; t < 48; t++)
        memcpy(wte + t * sc.dim, wte + 39 * sc.dim, (size_t)sc.dim * sizeof *wte);
    /* and make token 39's logit large, so the tie group sits in the top ranks
     * at many positions */
    for (int i = 0; i < sc.dim; i++)
        wte[39 * sc.dim + i] *= 3.0f;
    for (int t = 40; t < 48; t++)
        memcpy(wte + t * sc.dim, wte + 39 * sc.dim, (size_t)sc.dim * sizeof *wte);
    enum { B = 3, T = 16, K = 6, V = 256 };
    int32_t tok[B * T];
    rt_rng r;
    rt_rng_seed(&r, 9);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)(rt_rng_next(&r) % 256);
    /* the LLM's argmax sometimes inside the tie group: force it to 41 at
     * some rows by checking below instead of forcing (counted) */
    double g[K], s[K];
    OK(sm_topk_windows(&llm, &ssm, tok, B, T, K, g, s, E));

    gpt_batch in = {.B = B, .T = T, .tokens = tok};
    OK(gpt_forward(&llm, &in, NULL, E));
    OK(gpt_forward(&ssm, &in, NULL, E));
    const float *pl = rt_f32(&llm.a.logits), *ql = rt_f32(&ssm.a.logits);
    double bg[K] = {0}, bs[K] = {0}, mc[K] = {0};
    int ties_in_top = 0;
    rt_rng mr;
    rt_rng_seed(&mr, 77);
    const int draws = 4000;
    for (int i = 0; i < B * T; i++) {
        const float *p = pl + i * V, *q = ql + i * V;
        int order[V];
        for (int j = 0; j < V; j++)
            order[j] = j;
        sort_row = q;
        qsort(order, V, sizeof *order, cmp_desc);
        for (int k = 0; k + 1 < K; k++)
            ties_in_top += q[order[k]] == q[order[k + 1]];
        int a = 0;
        for (int j = 1; j < V; j++)
            if (p[j] > p[a])
                a = j;
        double z = 0, pr[V];
        for (int j = 0; j < V; j++)
            z += exp((double)p[j]);
        for (int j = 0; j < V; j++)
            pr[j] = exp((double)p[j]) / z;
        for (int k = 1; k <= K; k++) {
            int in_g = 0;
            double mass = 0;
            for (int t = 0; t < k; t++) {
                in_g |= order[t] == a;
                mass += pr[order[t]];
            }
            bg[k - 1] += in_g;
            bs[k - 1] += mass;
        }
        /* Monte Carlo: sample the LLM's token at T = 1 */
        int rk[V];
        for (int t = 0; t < V; t++)
            rk[order[t]] = t + 1;
        for (int d = 0; d < draws; d++) {
            double u = rt_rng_uniform(&mr), c = 0;
            int x = V - 1;
            for (int j = 0; j < V; j++)
                if ((c += pr[j]) > u) {
                    x = j;
                    break;
                }
            for (int k = rk[x]; k <= K; k++)
                mc[k - 1] += 1.0 / draws;
        }
    }
    assert_true(ties_in_top > 0);
    const double n = B * T;
    for (int k = 0; k < K; k++) {
        assert_true(fabs(g[k] - bg[k] / n) < 1e-12);
        assert_true(fabs(s[k] - bs[k] / n) < 1e-9);
        /* Monte Carlo over n * draws samples: 5 sigma */
        double sd = sqrt(s[k] * (1 - s[k]) / (n * draws));
        if (!(fabs(mc[k] / n - s[k]) < 5 * sd + 1e-9))
            fail_msg("k %d: Monte Carlo %.5f vs exact %.5f (sd %.5f)", k + 1, mc[k] / n, s[k],
                     sd);
        if (k)
            assert_true(g[k] >= g[k - 1] && s[k] >= s[k - 1]);
    }
    /* the same model as the LLM and the SSM: greedy top-1 agreement is 1 */
    OK(sm_topk_windows(&llm, &llm, tok, B, T, 1, g, s, E));
    assert_true(g[0] == 1.0);
    gpt_free(&llm);
    gpt_free(&ssm);
}

static void test_table1_corpus(void **st)
{
    (void)st;
    sm_config cfg = sm_config_test(31);
    sm_set a;
    OK(sm_train(&cfg, &corp, &a, E));
    double g[5], s[5];
    OK(sm_topk(&a.llm, &a.ssm[0], &corp, cfg.B, cfg.T, cfg.eval_batches, cfg.seed + 7, 5, g, s,
               E));
    /* top-1 greedy is the agreement measured at training (same windows) */
    assert_true(fabs(g[0] - a.rep.ssm_agree[0]) < 1e-12);
    for (int k = 1; k < 5; k++)
        assert_true(g[k] >= g[k - 1] && s[k] >= s[k - 1] && s[k] <= 1.0);
    gpt *ss[] = {&a.ssm[0], &a.ssm[1]};
    double ag[2], un[2];
    OK(sm_agreement(&a.llm, ss, 2, &corp, cfg.B, cfg.T, cfg.eval_batches, cfg.seed + 7, ag, un,
                    E));
    assert_true(ag[1] == a.rep.ssm_agree[1] && un[1] == a.rep.union_agree[1]);
    ps_err e = {0};
    assert_int_not_equal(sm_topk(&a.llm, &a.ssm[0], &corp, cfg.B, cfg.T, 1, 1, 0, g, s, &e), 0);
    assert_non_null(strstr(e.msg, "kmax"));
    sm_free(&a);
}

/* ------------------------------------------------------------------ prompts, config */

static void test_prompts_and_config(void **st)
{
    (void)st;
    enum { N = 6, L = 20 };
    int32_t p[N * L], q[N * L];
    OK(sm_prompts(&corp, N, L, 3, p, E));
    OK(sm_prompts(&corp, N, L, 3, q, E));
    assert_memory_equal(p, q, sizeof p);
    for (int i = 0; i < N; i++) {
        /* the prompt's bytes occur in the validation split, in order */
        char s[L + 1];
        for (int t = 0; t < L; t++) {
            assert_true(p[i * L + t] >= 0 && p[i * L + t] < 256);
            s[t] = (char)p[i * L + t];
        }
        s[L] = 0;
        assert_non_null(memmem(corp.data[TEXT_VAL], corp.n[TEXT_VAL], s, L));
    }
    ps_err e = {0};
    sm_config c = sm_config_test(1);
    c.nssm = SM_MAX_SSM + 1;
    assert_int_not_equal(sm_config_check(&c, &e), 0);
    assert_non_null(strstr(e.msg, "nssm"));
    c = sm_config_test(1);
    c.T = c.llm.ctx + 1;
    assert_int_not_equal(sm_config_check(&c, &e), 0);
    assert_non_null(strstr(e.msg, "T "));
    c = sm_config_test(1);
    c.ssm.vocab = 128;
    assert_int_not_equal(sm_config_check(&c, &e), 0);
    assert_non_null(strstr(e.msg, "vocab"));
    sm_config d0 = sm_config_default(0, 1), d1 = sm_config_default(1, 1);
    OK(sm_config_check(&d0, E));
    OK(sm_config_check(&d1, E));
    assert_true(sm_config_hash(&d0) != sm_config_hash(&d1));
    /* the LLM is several times the SSMs' compute per token */
    double r0 = gpt_fwd_flops(&d0.llm, 1, d0.T) / gpt_fwd_flops(&d0.ssm, 1, d0.T);
    assert_true(r0 > 4);
    json_t *j = sm_config_to_json(&d0);
    assert_non_null(json_object_get(j, "hash"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boost_mask),
        cmocka_unit_test(test_boost_fraction_and_determinism),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_table1_brute),
        cmocka_unit_test(test_table1_corpus),
        cmocka_unit_test(test_prompts_and_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
