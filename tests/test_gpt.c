/* real/gpt.c and real/data_text.c: the whole model's gradient against
 * central finite differences in float64 (sampled parameters, causal and
 * tree-masked batches); KV-cache decoding against the full forward (token by
 * token, token trees against their root-to-leaf paths, keep_rows
 * compaction); the text corpus reader on fixtures; a short deterministic
 * training run on the fortunes corpus whose validation loss must drop well
 * below ln(256) (skipped when the corpus is not installed). */
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

#include "kernels/cpu_attention.h"
#include "kernels/cpu_blas.h"
#include "real/data_text.h"
#include "real/gpt.h"

#include "tests/rt_testutil.h"

/* Parameters away from GPT-2's tiny initialisation, so that every path
 * (attention patterns, layer-norm gains, biases) matters. */
static void randomize(gpt *m, uint64_t seed)
{
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int i = 0; i < m->nparams; i++) {
        rt_param *p = &m->params[i];
        size_t n = strlen(p->name);
        if (p->w.ndim == 2)
            OK(rt_init_normal(&p->w, &r, 0.0, 0.4, &e_));
        else if (!strcmp(p->name + n - 2, ".g"))
            OK(rt_init_normal(&p->w, &r, 1.0, 0.2, &e_));
        else
            OK(rt_init_normal(&p->w, &r, 0.0, 0.2, &e_));
    }
}

/* ------------------------------------------------------------------ gradient check */

static double loss_of(gpt *m, const gpt_batch *b)
{
    double l = 0;
    OK(gpt_forward(m, b, &l, &e_));
    return l;
}

static void gradcheck(gpt *m, const gpt_batch *b, const char *what)
{
    OK(rt_params_zero_grad(m->params, m->nparams, &e_));
    double l0 = loss_of(m, b);
    assert_true(isfinite(l0));
    OK(gpt_backward(m, &e_));
    rt_rng r;
    rt_rng_seed(&r, 77);
    const double h = 1e-5;
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < m->nparams; i++) {
        rt_param *p = &m->params[i];
        double *w = rt_f64(&p->w), *g = rt_f64(&p->g);
        /* the largest gradient entry and four random ones */
        int64_t idx[5] = {0};
        for (int64_t j = 1; j < p->w.numel; j++)
            if (fabs(g[j]) > fabs(g[idx[0]]))
                idx[0] = j;
        for (int k = 1; k < 5; k++)
            idx[k] = (int64_t)(rt_rng_next(&r) % (uint64_t)p->w.numel);
        for (int k = 0; k < 5; k++) {
            double s = w[idx[k]];
            w[idx[k]] = s + h;
            double lp = loss_of(m, b);
            w[idx[k]] = s - h;
            double lm = loss_of(m, b);
            w[idx[k]] = s;
            double fd = (lp - lm) / (2 * h), err = fabs(g[idx[k]] - fd);
            if (!(err <= 1e-6 * fabs(fd) + 1e-9))
                fail_msg("%s: %s[%lld]: backward %.12g, finite difference %.12g", what, p->name,
                         (long long)idx[k], g[idx[k]], fd);
            if (err > worst)
                worst = err;
            checked++;
        }
        if (i == GPT_WTE || i == 2 + GPT_QKV_W) /* these must carry a signal */
            assert_true(fabs(g[idx[0]]) > 1e-4);
    }
    print_message("%s: %d sampled gradients, worst |backward - fd| %.2g\n", what, checked, worst);
}

static void test_gradcheck(void **st)
{
    (void)st;
    gpt_config c = {.vocab = 256, .ctx = 8, .dim = 8, .heads = 2, .layers = 2, .tied = 1};
    enum { B = 2, T = 6 };
    int32_t tok[B * T], tgt[B * T], pos[B * T];
    rt_rng r;
    rt_rng_seed(&r, 5);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rt_rng_next(&r) % 256);
        tgt[i] = (int32_t)(rt_rng_next(&r) % 256);
    }
    gpt m;
    OK(gpt_init(&m, &c, rt_cpu(), RT_F64, 1, &e_));
    randomize(&m, 2);
    gpt_batch b = {.B = B, .T = T, .tokens = tok, .targets = tgt};
    gradcheck(&m, &b, "tied, causal");
    gpt_free(&m);

    /* untied head; each sequence a token tree (its own mask and positions);
     * one ignored target */
    c.tied = 0;
    OK(gpt_init(&m, &c, rt_cpu(), RT_F64, 3, &e_));
    randomize(&m, 4);
    uint8_t mask[B * T * T];
    const int64_t par[B][T] = {{-1, 0, 0, 1, 2, 2}, {-1, 0, 1, 0, 3, 1}};
    for (int s = 0; s < B; s++) {
        ps_cpu_tree_mask(T, T, par[s], mask + s * T * T);
        for (int i = 0; i < T; i++)
            pos[s * T + i] = par[s][i] < 0 ? 0 : pos[s * T + par[s][i]] + 1;
    }
    tgt[3] = -1;
    gpt_batch bt = {.B = B, .T = T, .tokens = tok, .targets = tgt, .pos = pos, .mask = mask};
    gradcheck(&m, &bt, "untied, tree masks");
    gpt_free(&m);
}

/* ------------------------------------------------------------------ KV cache */

/* Every logit of a row within 1e-5 of the reference, relative to the row's
 * largest |logit| (f32 sums in another order: GEMM shapes differ). */
static void close_rows(const double *got, const float *ref, int64_t n, const char *what,
                       int64_t row)
{
    double scale = 1;
    for (int64_t j = 0; j < n; j++)
        scale = fmax(scale, fabs(ref[j]));
    for (int64_t j = 0; j < n; j++)
        if (!(fabs(got[j] - ref[j]) <= 1e-5 * scale))
            fail_msg("%s: row %lld, logit %lld: %.9g vs %.9g (row scale %.3g)", what,
                     (long long)row, (long long)j, got[j], (double)ref[j], scale);
}

/* Logits of a full forward over tokens[0..T) with optional positions and
 * mask (B = 1), copied out. */
static float *full_logits(gpt *m, const int32_t *tok, int64_t T, const int32_t *pos,
                          const uint8_t *mask)
{
    gpt_batch b = {.B = 1, .T = T, .tokens = tok, .pos = pos, .mask = mask};
    OK(gpt_forward(m, &b, NULL, &e_));
    size_t n = (size_t)(T * m->cfg.vocab);
    float *out = malloc(n * sizeof *out);
    memcpy(out, rt_f32(&m->a.logits), n * sizeof *out);
    return out;
}

/* The KV-cache tests' model: tiny, f32, ctx 24, built from seed and
 * randomized from seed + 1; r seeded with seed + 2 for the tokens. */
static void kv_model(gpt *m, rt_rng *r, uint64_t seed)
{
    gpt_config c = gpt_config_tiny();
    c.ctx = 24;
    OK(gpt_init(m, &c, rt_cpu(), RT_F32, seed, &e_));
    randomize(m, seed + 1);
    rt_rng_seed(r, seed + 2);
}

static void test_kv_decode(void **st)
{
    (void)st;
    gpt m;
    rt_rng r;
    kv_model(&m, &r, 11);
    const int64_t V = m.cfg.vocab;
    enum { T = 12 };
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (int32_t)(rt_rng_next(&r) % 256);
    float *ref = full_logits(&m, tok, T, NULL, NULL);

    /* prefill 3, then one token at a time */
    gpt_kv kv;
    OK(gpt_kv_init(&kv, &m, 20, 12, &e_));
    double *lg = malloc((size_t)(T * V) * sizeof *lg);
    OK(gpt_decode(&m, &kv, 3, tok, NULL, lg, &e_));
    for (int i = 3; i < T; i++)
        OK(gpt_decode(&m, &kv, 1, tok + i, NULL, lg + i * V, &e_));
    assert_int_equal(gpt_kv_len(&kv), T);
    for (int i = 0; i < T; i++)
        close_rows(lg + i * V, ref + i * V, V, "incremental vs full", i);
    /* the logits are not trivially equal across positions */
    assert_true(fabs(lg[0] - lg[V]) > 1e-3);

    /* capacity and argument errors leave the cache as it was */
    ps_err e = {0};
    int32_t many[12] = {0};
    assert_int_equal(gpt_decode(&m, &kv, 9, many, NULL, NULL, &e), PS_EINPUT);
    int32_t badp[2] = {-1, 1};
    assert_int_equal(gpt_decode(&m, &kv, 2, many, badp, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "parent[1]"));
    assert_int_equal(gpt_kv_len(&kv), T);
    free(ref);
    free(lg);
    gpt_kv_free(&kv);
    gpt_free(&m);
}

static void test_kv_tree(void **st)
{
    (void)st;
    gpt m;
    rt_rng r;
    kv_model(&m, &r, 21);
    const int64_t V = m.cfg.vocab;
    enum { P = 5, N = 8 };
    /* two roots (0 and 3); leaves 4, 6, 7 */
    const int32_t par[N] = {-1, 0, 0, -1, 1, 2, 5, 3};
    int32_t pre[P], tree[N];
    for (int i = 0; i < P; i++)
        pre[i] = (int32_t)(rt_rng_next(&r) % 256);
    for (int i = 0; i < N; i++)
        tree[i] = (int32_t)(rt_rng_next(&r) % 256);

    gpt_kv kv;
    OK(gpt_kv_init(&kv, &m, 20, 10, &e_));
    OK(gpt_decode(&m, &kv, P, pre, NULL, NULL, &e_));
    double *tl = malloc((size_t)(N * V) * sizeof *tl), *pl = malloc((size_t)(N * V) * sizeof *pl);
    OK(gpt_decode(&m, &kv, N, tree, par, tl, &e_));
    assert_int_equal(gpt_kv_len(&kv), P + N);

    /* every root-to-leaf path, decoded alone (causal) after the prefix */
    const int leaves[3] = {4, 6, 7};
    for (int li = 0; li < 3; li++) {
        int path[N], len = 0;
        for (int a = leaves[li]; a >= 0; a = par[a])
            path[len++] = a;
        int32_t ptok[N];
        for (int i = 0; i < len; i++) /* root first */
            ptok[i] = tree[path[len - 1 - i]];
        OK(gpt_kv_truncate(&kv, P, &e_));
        OK(gpt_decode(&m, &kv, len, ptok, NULL, pl, &e_));
        for (int i = 0; i < len; i++) {
            int node = path[len - 1 - i];
            float *ref = malloc((size_t)V * sizeof *ref);
            for (int64_t j = 0; j < V; j++)
                ref[j] = (float)pl[i * V + j];
            close_rows(tl + node * V, ref, V, "tree node vs its path", node);
            free(ref);
        }
    }

    /* the training forward with the same tree mask and positions agrees */
    enum { TT = P + N };
    int32_t all[TT], pos[TT];
    uint8_t mask[TT * TT];
    int64_t par64[N];
    memcpy(all, pre, sizeof pre);
    memcpy(all + P, tree, sizeof tree);
    for (int i = 0; i < N; i++)
        par64[i] = par[i];
    memset(mask, 0, sizeof mask);
    for (int i = 0; i < P; i++) {
        pos[i] = i;
        for (int j = 0; j <= i; j++)
            mask[i * TT + j] = 1;
    }
    uint8_t tm[N * TT];
    ps_cpu_tree_mask(N, TT, par64, tm);
    for (int i = 0; i < N; i++) {
        memcpy(mask + (P + i) * TT, tm + i * TT, TT);
        pos[P + i] = par[i] < 0 ? P : pos[P + par[i]] + 1;
    }
    float *fl = full_logits(&m, all, TT, pos, mask);
    for (int i = 0; i < N; i++)
        close_rows(tl + i * V, fl + (P + i) * V, V, "tree decode vs masked forward", i);
    free(fl);

    /* keep the path 0 -> 2 -> 5, then decode one more token: equals a fresh
     * forward over prefix + path + token */
    OK(gpt_kv_truncate(&kv, P, &e_));
    OK(gpt_decode(&m, &kv, N, tree, par, NULL, &e_));
    const int64_t rows[3] = {P + 0, P + 2, P + 5};
    OK(gpt_kv_keep(&kv, P, rows, 3, &e_));
    assert_int_equal(gpt_kv_len(&kv), P + 3);
    int32_t next = 42;
    OK(gpt_decode(&m, &kv, 1, &next, NULL, pl, &e_));
    int32_t seq[P + 4];
    memcpy(seq, pre, sizeof pre);
    seq[P] = tree[0], seq[P + 1] = tree[2], seq[P + 2] = tree[5], seq[P + 3] = next;
    float *ref = full_logits(&m, seq, P + 4, NULL, NULL);
    close_rows(pl, ref + (P + 3) * V, V, "after keep_rows vs fresh forward", P + 3);
    /* and without compaction it would differ (rows 1, 3, 4 ... in the way) */
    OK(gpt_kv_truncate(&kv, P, &e_));
    OK(gpt_decode(&m, &kv, N, tree, par, NULL, &e_));
    OK(gpt_kv_truncate(&kv, P + 3, &e_));
    OK(gpt_decode(&m, &kv, 1, &next, NULL, pl, &e_));
    double diff = 0;
    for (int64_t j = 0; j < V; j++)
        diff = fmax(diff, fabs(pl[j] - ref[(P + 3) * V + j]));
    assert_true(diff > 1e-3);
    free(ref);
    free(tl);
    free(pl);
    gpt_kv_free(&kv);
    gpt_free(&m);
}

static void test_config_and_flops(void **st)
{
    (void)st;
    ps_err e = {0};
    gpt_config c = gpt_config_tiny();
    c.dim = 30; /* not a multiple of 4 heads */
    gpt m;
    assert_int_equal(gpt_init(&m, &c, rt_cpu(), RT_F32, 1, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "dim 30"));
    c = gpt_config_tiny();
    OK(gpt_init(&m, &c, rt_cpu(), RT_F32, 1, &e_));
    /* V C + ctx C + L (12 C^2 + 13 C) + 2 C (tied) */
    const int64_t C = 64, L = 2;
    assert_int_equal(gpt_num_params(&m), 256 * C + 64 * C + L * (12 * C * C + 13 * C) + 2 * C);
    int32_t tok[3] = {1, 300, 2};
    gpt_batch b = {.B = 1, .T = 3, .tokens = tok};
    assert_int_equal(gpt_forward(&m, &b, NULL, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "tokens[1] = 300"));
    assert_int_equal(gpt_backward(&m, &e), PS_EINPUT);
    gpt_free(&m);
    /* forward FLOPs: 2 N (L (12 C^2 + 2 T C) + C V) */
    double f = gpt_fwd_flops(&c, 2, 16);
    assert_true(fabs(f - 2.0 * 32 * (2 * (12.0 * 64 * 64 + 2.0 * 16 * 64) + 64 * 256)) < 1);
    assert_true(fabs(gpt_step_flops(&c, 2, 16) - 3 * f) < 1);
    gpt_bench_result br;
    OK(gpt_bench_step(&c, rt_cpu(), 2, 16, 1, 2, 7, &br, &e_));
    assert_true(br.step_s_best > 0 && br.step_s_best <= br.step_s_mean * 1.000001);
    assert_true(fabs(br.flops_per_step - 3 * f) < 1 && br.gflops_best > 0);
    assert_true(isfinite(br.loss) && fabs(br.loss - log(256.0)) < 0.5);
}


/* ------------------------------------------------------------------ CUDA against the CPU */

static double rel_norm(const float *got, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double r = sqrt(num / (den > 0 ? den : 1));
    return isnan(r) ? INFINITY : r;
}

static float *host_copy(const rt_tensor *t)
{
    float *p = malloc((size_t)t->numel * sizeof *p);
    OK(rt_tensor_to_host(t, p, &e_));
    return p;
}

/* Gradients of the CUDA model against the CPU model's, every parameter. */
static void same_grads(gpt *mc, gpt *mg, double tol, const char *what)
{
    double worst = 0;
    for (int i = 0; i < mc->nparams; i++) {
        float *a = host_copy(&mg->params[i].g), *b = host_copy(&mc->params[i].g);
        double r = rel_norm(a, b, mc->params[i].g.numel);
        if (!(r <= tol))
            fail_msg("%s: gradient of %s: relative error %.3g > %.3g", what,
                     mc->params[i].name, r, tol);
        worst = fmax(worst, r);
        free(a), free(b);
    }
    print_message("%s: worst gradient relative error %.2g\n", what, worst);
}

static void same_logits(const double *g, const double *c, int64_t n, double tol, const char *what)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
        num += (g[i] - c[i]) * (g[i] - c[i]), den += c[i] * c[i];
    double r = sqrt(num / den);
    if (!(r <= tol))
        fail_msg("%s: logits relative error %.3g > %.3g", what, r, tol);
}

static void test_cuda_matches_cpu(void **st)
{
    (void)st;
    ps_err e = {0};
    rt_dev *g = rt_cuda_new(0, &e);
    if (!g) {
        print_message("no usable GPU (rt_cuda_new: %s): skipping\n", e.msg);
        skip();
    }
    gpt_config c = gpt_config_tiny();
    const int64_t V = c.vocab;
    gpt mc, mg;
    OK(gpt_init(&mc, &c, rt_cpu(), RT_F32, 31, &e_));
    OK(gpt_init(&mg, &c, g, RT_F32, 31, &e_));
    float *w0 = host_copy(&mg.params[2 + GPT_QKV_W].w);
    assert_memory_equal(w0, rt_f32(&mc.params[2 + GPT_QKV_W].w),
                        (size_t)mc.params[2 + GPT_QKV_W].w.numel * sizeof(float));
    free(w0);

    /* training: forward, backward, AdamW steps (causal) */
    enum { B = 4, T = 32 };
    int32_t tok[B * T], tgt[B * T];
    rt_rng r;
    rt_rng_seed(&r, 33);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)(rt_rng_next(&r) % 256), tgt[i] = (int32_t)(rt_rng_next(&r) % 256);
    gpt_batch b = {.B = B, .T = T, .tokens = tok, .targets = tgt};
    double lc = 0, lg = 0;
    OK(rt_params_zero_grad(mc.params, mc.nparams, &e_));
    OK(rt_params_zero_grad(mg.params, mg.nparams, &e_));
    OK(gpt_forward(&mc, &b, &lc, &e_));
    OK(gpt_forward(&mg, &b, &lg, &e_));
    assert_true(fabs(lc - lg) <= 1e-5 * lc);
    OK(gpt_backward(&mc, &e_));
    OK(gpt_backward(&mg, &e_));
    same_grads(&mc, &mg, 1e-3, "causal batch");
    rt_opt oc = {.kind = RT_OPT_ADAMW, .lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8};
    rt_opt og = oc;
    for (int s = 0; s < 5; s++) {
        OK(gpt_train_step(&mc, &b, &oc, &lc, &e_));
        OK(gpt_train_step(&mg, &b, &og, &lg, &e_));
        if (!(fabs(lc - lg) <= 1e-3 * lc))
            fail_msg("training step %d: loss %.7f on the CPU, %.7f on CUDA", s, lc, lg);
    }
    assert_true(lc < log(256.0) - 0.1); /* it learned the batch a little */

    /* tree-masked sequences with positions */
    enum { TB = 2, TT = 6 };
    const int64_t par[TB][TT] = {{-1, 0, 0, 1, 2, 2}, {-1, 0, 1, 0, 3, 1}};
    uint8_t mask[TB * TT * TT];
    int32_t pos[TB * TT];
    for (int s = 0; s < TB; s++) {
        ps_cpu_tree_mask(TT, TT, par[s], mask + s * TT * TT);
        for (int i = 0; i < TT; i++)
            pos[s * TT + i] = par[s][i] < 0 ? 0 : pos[s * TT + par[s][i]] + 1;
    }
    gpt_batch bt = {.B = TB, .T = TT, .tokens = tok, .targets = tgt, .pos = pos, .mask = mask};
    OK(rt_params_zero_grad(mc.params, mc.nparams, &e_));
    OK(rt_params_zero_grad(mg.params, mg.nparams, &e_));
    OK(gpt_forward(&mc, &bt, &lc, &e_));
    OK(gpt_forward(&mg, &bt, &lg, &e_));
    assert_true(fabs(lc - lg) <= 1e-5 * lc);
    OK(gpt_backward(&mc, &e_));
    OK(gpt_backward(&mg, &e_));
    same_grads(&mc, &mg, 1e-3, "tree-masked batch");

    /* KV-cache decoding: prefill, single tokens, a tree, keep, one more */
    randomize(&mc, 34);
    randomize(&mg, 34);
    gpt_kv kc, kg;
    OK(gpt_kv_init(&kc, &mc, 40, 10, &e_));
    OK(gpt_kv_init(&kg, &mg, 40, 10, &e_));
    double *a = malloc((size_t)(10 * V) * sizeof *a), *bb = malloc((size_t)(10 * V) * sizeof *bb);
    OK(gpt_decode(&mc, &kc, 5, tok, NULL, a, &e_));
    OK(gpt_decode(&mg, &kg, 5, tok, NULL, bb, &e_));
    same_logits(bb, a, 5 * V, 1e-4, "prefill");
    for (int i = 5; i < 8; i++) {
        OK(gpt_decode(&mc, &kc, 1, tok + i, NULL, a, &e_));
        OK(gpt_decode(&mg, &kg, 1, tok + i, NULL, bb, &e_));
        same_logits(bb, a, V, 1e-4, "one token");
    }
    const int32_t tp[8] = {-1, 0, 0, -1, 1, 2, 5, 3};
    OK(gpt_decode(&mc, &kc, 8, tok + 8, tp, a, &e_));
    OK(gpt_decode(&mg, &kg, 8, tok + 8, tp, bb, &e_));
    same_logits(bb, a, 8 * V, 1e-4, "tree");
    const int64_t rows[3] = {8, 10, 13};
    OK(gpt_kv_keep(&kc, 8, rows, 3, &e_));
    OK(gpt_kv_keep(&kg, 8, rows, 3, &e_));
    OK(gpt_decode(&mc, &kc, 1, tok + 20, NULL, a, &e_));
    OK(gpt_decode(&mg, &kg, 1, tok + 20, NULL, bb, &e_));
    same_logits(bb, a, V, 1e-4, "after keep_rows");
    free(a), free(bb);
    gpt_kv_free(&kc), gpt_kv_free(&kg);
    gpt_free(&mc), gpt_free(&mg);
    rt_dev_free(g);
}

/* ------------------------------------------------------------------ text corpus */

static void put(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_text_fixture(void **st)
{
    (void)st;
    char dir[] = "/tmp/plansim_text_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[4096] = "", rec[128];
    for (int i = 0; i < 20; i++) {
        snprintf(rec, sizeof rec, "record %02d: the quick brown fox\n%s", i, i < 19 ? "%\n" : "");
        strcat(a, rec);
    }
    put(dir, "a", a);
    put(dir, "b", "one\n%\ntwo\nlines\n%\nthree"); /* records 20, 21, 22 */
    put(dir, "a.dat", "\x01\x02junk");
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/a.u8", dir);
    assert_int_equal(symlink("a", p), 0);
    snprintf(q, sizeof q, "%s/zz-link", dir);
    assert_int_equal(symlink("b", q), 0);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/off", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    put(sub, "x", "not read\n");

    text_corpus c;
    OK(text_load(dir, &c, &e_));
    assert_int_equal(c.nfiles, 2);
    assert_int_equal(c.nrecords, 23);
    const char *tr = (const char *)c.data[TEXT_TRAIN], *va = (const char *)c.data[TEXT_VAL];
    assert_true(!strncmp(tr, "record 00: the quick brown fox\n\nrecord 01:", 42));
    assert_int_equal(c.n[TEXT_VAL], 2 * 32);
    assert_true(!strncmp(va, "record 09: the quick brown fox\n\nrecord 19:", 42));
    const char *tail = "one\n\ntwo\nlines\n\nthree\n\n";
    assert_true(!memcmp(tr + c.n[TEXT_TRAIN] - strlen(tail), tail, strlen(tail)));
    assert_null(memchr(tr, '%', c.n[TEXT_TRAIN]));

    /* windows: targets are tokens shifted by one, the same for a seed */
    int32_t t1[2 * 10], g1[2 * 10], t2[2 * 10], g2[2 * 10];
    rt_rng r1, r2;
    rt_rng_seed(&r1, 9), rt_rng_seed(&r2, 9);
    OK(text_batch(&c, TEXT_VAL, &r1, 2, 10, t1, g1, &e_));
    OK(text_batch(&c, TEXT_VAL, &r2, 2, 10, t2, g2, &e_));
    assert_memory_equal(t1, t2, sizeof t1);
    assert_memory_equal(g1, g2, sizeof g1);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t + 1 < 10; t++)
            assert_int_equal(t1[b * 10 + t + 1], g1[b * 10 + t]);
    ps_err e = {0};
    assert_int_equal(text_batch(&c, TEXT_VAL, &r1, 1, 64, t1, g1, &e), PS_EINPUT);
    text_free(&c);

    /* missing corpus: the package to install is named */
    char gone[600];
    snprintf(gone, sizeof gone, "%s/nothing", dir);
    assert_int_equal(text_load(gone, &c, &e), PS_EINPUT);
    assert_non_null(strstr(e.msg, "install the Debian package fortunes"));
    assert_int_equal(text_load(sub, &c, &e), PS_EINPUT); /* too little text */
    assert_non_null(strstr(e.msg, "install the Debian package fortunes"));

    unlink(p), unlink(q);
    snprintf(p, sizeof p, "%s/x", sub), unlink(p), rmdir(sub);
    const char *names[] = {"a", "b", "a.dat"};
    for (int i = 0; i < 3; i++)
        snprintf(p, sizeof p, "%s/%s", dir, names[i]), unlink(p);
    assert_int_equal(rmdir(dir), 0);
}

/* ------------------------------------------------------------------ training */

static void train_once(const text_corpus *tc, int64_t steps, gpt_train_result *res)
{
    gpt_config c = gpt_config_tiny();
    c.dim = 32, c.heads = 2, c.ctx = 32; /* about 35 k parameters */
    gpt m;
    OK(gpt_init(&m, &c, rt_cpu(), RT_F32, 1234, &e_));
    gpt_train_opts o = {.steps = steps, .B = 8, .T = 32, .lr = 1e-2, .eval_batches = 8, .seed = 99};
    OK(gpt_train_text(&m, tc, &o, res, &e_));
    gpt_free(&m);
}

static void test_train_fortunes(void **st)
{
    (void)st;
    text_corpus tc;
    ps_err e = {0};
    if (text_load(NULL, &tc, &e)) {
        print_message("skipping: %s\n", e.msg);
        skip();
    }
    ps_cpu_blas_set_threads(1); /* bit-identical runs */
    /* under `make valgrind` (VALGRIND=1, ~50x slower): a few steps, the
     * determinism check only */
    const int vg = getenv("VALGRIND") && !strcmp(getenv("VALGRIND"), "1");
    gpt_train_result r1, r2;
    train_once(&tc, vg ? 5 : 100, &r1);
    print_message("fortunes: %d files, %zu + %zu bytes; loss %.4f -> %.4f, val %.4f, %.2f s\n",
                  tc.nfiles, tc.n[0], tc.n[1], r1.first_loss, r1.last_loss, r1.val_loss,
                  r1.seconds);
    assert_true(fabs(r1.first_loss - log(256.0)) < 0.3); /* starts near uniform */
    if (!vg)
        assert_true(r1.val_loss < 3.5); /* measured 3.30 (ln 256 = 5.55) */
    train_once(&tc, vg ? 5 : 100, &r2);
    assert_memory_equal(&r1.last_loss, &r2.last_loss, sizeof(double));
    assert_memory_equal(&r1.val_loss, &r2.val_loss, sizeof(double));
    text_free(&tc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck),        cmocka_unit_test(test_kv_decode),
        cmocka_unit_test(test_kv_tree),          cmocka_unit_test(test_config_and_flops),
        cmocka_unit_test(test_text_fixture),     cmocka_unit_test(test_train_fortunes),
        cmocka_unit_test(test_cuda_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
