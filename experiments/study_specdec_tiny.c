/* The tiny-model speculative-decoding study (issue 6, experiments 1 and 6
 * and the measured part of Table 2): the tiny LLM and its boost-tuned SSMs
 * (real/specmodels.h) generate for real on this CPU (real/specgen.h), and
 * the simulator (sim/specdec/serve.h), fed this machine's measured costs and
 * the recorded acceptance traces, predicts the same runs.
 *
 * A point = one generation method of the config's `methods` object (the
 * swept `run` parameter names it) x one verifier (`verify`: greedy | mss |
 * naive), over the same N validation prompts:
 *
 *   "methods": {"incremental": {"method": "incremental"},
 *               "sequence":    {"method": "sequence", "depth": 8},
 *               "tree-w3":     {"method": "tree", "expansion": [1,1,3,1,1,1,1,1]},
 *               "merge":       {"method": "merge", "expansion": [1,1,1,1,1,1,1,1], "nssm": 2}}
 *
 * Shared, once per process (cached between points with the same settings):
 * the models (sm_load_or_train under `models_dir`, relative to the current
 * directory; `model_size` full | quick | test, `model_seed`), the prompts,
 * the LLM's incremental greedy outputs (the reference of
 * greedy_identical_fraction), Table 1 of every SSM, the cost table (CPU
 * time of one LLM pass over n = 1..cost_max_n tree tokens at context
 * plen + max_new / 2, and of the SSM's one-token pass as the draft cost per
 * token: sg_time_verify's measurement in CPU time, fastest of cost_reps
 * interleaved rounds) and SSM_1's greedy rank trace over the reference
 * outputs.  Measured times are CPU time too (the machine is shared); wall
 * time is reported beside.
 *
 * Predictions: greedy — sd_accept_trace over the rank traces (exact replay
 * of the greedy acceptance of any top-k expansion tree of SSM_1) and, for
 * comparison, the i.i.d. positional model p_k = top-k(k) - top-k(k-1) from
 * SSM_1's greedy Table 1; naive — the positional model from the stochastic
 * Table 1 row (P(LLM sample = SSM's k-th token)); MSS and merge: no
 * acceptance model here (NaN).  Time: sd_predict_time_per_token with the
 * measured table (sd_cost_from_table). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/util.h"
#include "experiments/study.h"
#include "kernels/cpu_blas.h"
#include "real/specgen.h"
#include "real/specmodels.h"
#include "sim/specdec/accept.h"
#include "sim/specdec/cost.h"
#include "sim/specdec/serve.h"
#include "sim/specdec/tree.h"

static const ps_param_spec params[] = {
    {"run", PS_PARAM_STR, NULL, "", "a key of `methods` (sweep it over the methods)"},
    {"methods", PS_PARAM_JSON, NULL, "",
     "label -> {method: incremental | sequence | tree | merge, depth (sequence), expansion "
     "(tree, merge: per SSM), nssm (merge)}"},
    {"verify", PS_PARAM_STR, "\"greedy\"", "", "greedy | mss | naive"},
    {"models_dir", PS_PARAM_STR, "\"results/specdec_models\"", "",
     "weight cache folder (relative to the current directory); trained when missing"},
    {"model_size", PS_PARAM_STR, "\"full\"", "", "full | quick | test (sm_config_default / _test)"},
    {"model_seed", PS_PARAM_INT, "1", "", "training seed of the models"},
    {"prompts", PS_PARAM_INT, "16", "", "validation prompts N"},
    {"prompt_len", PS_PARAM_INT, "32", "", "bytes per prompt"},
    {"max_new", PS_PARAM_INT, "64", "", "tokens generated per prompt"},
    {"temperature", PS_PARAM_NUM, "1.0", "", "stochastic verifiers: softmax(logits / T)"},
    {"cost_max_n", PS_PARAM_INT, "48", "", "cost table: verify times for n = 1 .. this"},
    {"cost_reps", PS_PARAM_INT, "5", "",
     "cost table: rounds over the grid (each entry: the fastest round's median of 3)"},
    {"prompt_seed", PS_PARAM_INT, "17", "", "seed of the prompt draw"},
    {"time_reps", PS_PARAM_INT, "3", "",
     "generations per prompt (same output); the fastest run (CPU time) is kept (this "
     "machine is shared: timings are noisy)"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_TPS,
    M_SPT,
    M_CPU_SPT,
    M_DRAFT_SPT,
    M_VERIFY_SPT,
    M_PRED_TPS,
    M_PRED_SPT,
    M_TPS_ERR,
    M_SPT_ERR,
    M_PRED_TPS_POS,
    M_TPS_POS_ERR,
    M_IDENT,
    M_WIDTH,
    M_NODES,
    M_TREE_TOK,
    M_STEPS,
    M_TOKENS,
    M_SPEEDUP,
    M_LLM_LOSS,
    M_SSM1_LOSS,
    M_FLOPS_RATIO,
    M_AGREE1,
    M_AGREE2,
    M_UNION2,
    M_T1G, /* 5 columns: greedy top-k of SSM_1, k = 1..5 */
    M_T1S = M_T1G + 5,
    M_T1G2 = M_T1S + 5, /* SSM_2 */
    M_T1S2 = M_T1G2 + 5,
    M_FROM_CACHE = M_T1S2 + 5,
    M_GEN_AGREE,
    M_COUNT
};

static ps_metric_spec metrics[M_COUNT + 1] = {
    [M_TPS] = {"tokens_per_step", "", "measured: generated tokens / LLM passes"},
    [M_SPT] = {"s_per_token", "s", "measured wall time per generated token"},
    [M_CPU_SPT] = {"cpu_s_per_token", "s",
                   "measured CPU time per generated token (robust to other processes)"},
    [M_DRAFT_SPT] = {"draft_s_per_token", "s", "measured SSM drafting time per token"},
    [M_VERIFY_SPT] = {"verify_s_per_token", "s", "measured LLM pass time per token"},
    [M_PRED_TPS] = {"predicted_tokens_per_step", "",
                    "simulator: greedy trace replay / naive positional (NaN: no model)"},
    [M_PRED_SPT] = {"predicted_s_per_token", "s",
                    "simulator with the measured (CPU time) cost table"},
    [M_TPS_ERR] = {"tps_rel_err", "", "(predicted - measured) / measured tokens per step"},
    [M_SPT_ERR] = {"spt_rel_err", "", "(predicted - cpu_s_per_token) / cpu_s_per_token"},
    [M_PRED_TPS_POS] = {"predicted_tokens_per_step_positional", "",
                        "greedy / naive: i.i.d. positional model from Table 1"},
    [M_TPS_POS_ERR] = {"tps_positional_rel_err", "", "its relative error"},
    [M_IDENT] = {"greedy_identical_fraction", "",
                 "greedy speculative runs: prompts whose output equals incremental greedy"},
    [M_WIDTH] = {"width", "", "k3 of <1,1,k3,...> trees (NaN otherwise)"},
    [M_NODES] = {"tree_nodes", "", "nodes of the tree (root included; merge: mean per step)"},
    [M_TREE_TOK] = {"tree_tokens_per_step", "", "tokens per LLM pass"},
    [M_STEPS] = {"steps", "", "LLM passes over all prompts"},
    [M_TOKENS] = {"tokens", "", "generated tokens over all prompts"},
    [M_SPEEDUP] = {"speedup_vs_incremental", "",
                   "measured incremental cpu_s_per_token (greedy or sampling) / this"},
    [M_LLM_LOSS] = {"llm_val_loss", "", "LLM next-byte validation loss (nats)"},
    [M_SSM1_LOSS] = {"ssm1_val_loss", "", "SSM_1 next-byte validation loss (nats)"},
    [M_FLOPS_RATIO] = {"flops_ratio", "", "LLM / SSM forward FLOPs per token"},
    [M_AGREE1] = {"ssm1_agree", "", "SSM_1 top-1 agreement with the LLM's argmax"},
    [M_AGREE2] = {"ssm2_agree", "", "SSM_2 top-1 agreement (NaN with one SSM)"},
    [M_UNION2] = {"union_agree", "", "LLM's argmax in the top-1 of any SSM"},
    [M_T1G + 0] = {"t1_greedy_ssm1_k1", "", "Table 1 greedy, SSM_1, k = 1"},
    [M_T1G + 1] = {"t1_greedy_ssm1_k2", "", ""},
    [M_T1G + 2] = {"t1_greedy_ssm1_k3", "", ""},
    [M_T1G + 3] = {"t1_greedy_ssm1_k4", "", ""},
    [M_T1G + 4] = {"t1_greedy_ssm1_k5", "", ""},
    [M_T1S + 0] = {"t1_stoch_ssm1_k1", "", "Table 1 stochastic (T = 1), SSM_1, k = 1"},
    [M_T1S + 1] = {"t1_stoch_ssm1_k2", "", ""},
    [M_T1S + 2] = {"t1_stoch_ssm1_k3", "", ""},
    [M_T1S + 3] = {"t1_stoch_ssm1_k4", "", ""},
    [M_T1S + 4] = {"t1_stoch_ssm1_k5", "", ""},
    [M_T1G2 + 0] = {"t1_greedy_ssm2_k1", "", "Table 1 greedy, SSM_2, k = 1"},
    [M_T1G2 + 1] = {"t1_greedy_ssm2_k2", "", ""},
    [M_T1G2 + 2] = {"t1_greedy_ssm2_k3", "", ""},
    [M_T1G2 + 3] = {"t1_greedy_ssm2_k4", "", ""},
    [M_T1G2 + 4] = {"t1_greedy_ssm2_k5", "", ""},
    [M_T1S2 + 0] = {"t1_stoch_ssm2_k1", "", "Table 1 stochastic, SSM_2, k = 1"},
    [M_T1S2 + 1] = {"t1_stoch_ssm2_k2", "", ""},
    [M_T1S2 + 2] = {"t1_stoch_ssm2_k3", "", ""},
    [M_T1S2 + 3] = {"t1_stoch_ssm2_k4", "", ""},
    [M_T1S2 + 4] = {"t1_stoch_ssm2_k5", "", ""},
    [M_FROM_CACHE] = {"models_from_cache", "", "1 when the weights came from models_dir"},
    [M_GEN_AGREE] = {"ssm1_agree_on_greedy_outputs", "",
                     "SSM_1 top-1 agreement on the LLM's own greedy continuations (rank trace)"},
    [M_COUNT] = {NULL, NULL, NULL}};

/* ------------------------------------------------------------------ shared context */

#define COST_MAX 64

typedef struct tiny_ctx {
    char key[1200];
    int ready;
    sm_set models;
    text_corpus corp;
    int np, plen, max_new;
    int32_t *prompts;  /* [np * plen] */
    int32_t *ref;      /* [np * max_new]: incremental greedy outputs */
    int *ref_n;        /* [np] */
    double t1g[SM_MAX_SSM][5], t1s[SM_MAX_SSM][5];
    int ncost;
    double cost_n[COST_MAX], cost_s[COST_MAX], draft_s;
    int cost_ctx;
    int emitted; /* the cost table went out with a point */
    sd_cost *cost;
    sd_accept *trace;      /* SSM_1's greedy rank trace */
    sd_accept *pos_greedy; /* positional from Table 1 greedy (SSM_1) */
    sd_accept *pos_stoch;  /* positional from Table 1 stochastic (SSM_1) */
    /* measured incremental s_per_token (greedy, stochastic), for speedups */
    double inc_spt[2];
    double gen_agree; /* rank-1 fraction of SSM_1's trace */
} tiny_ctx;

static tiny_ctx ctx_;

static void ctx_free(tiny_ctx *c)
{
    sm_free(&c->models);
    text_free(&c->corp);
    free(c->prompts);
    free(c->ref);
    free(c->ref_n);
    sd_cost_free(c->cost);
    sd_accept_free(c->trace);
    sd_accept_free(c->pos_greedy);
    sd_accept_free(c->pos_stoch);
    memset(c, 0, sizeof *c);
}

static void ctx_atexit(void)
{
    ctx_free(&ctx_);
}

static sd_accept *positional_from_topk(const double *topk, int m, ps_err *e)
{
    double p[8];
    for (int k = 0; k < m; k++)
        p[k] = fmax(0.0, topk[k] - (k ? topk[k - 1] : 0.0));
    return sd_accept_positional(p, m, e);
}

/* CPU time of this process: this machine is shared, so wall times of
 * microsecond-scale passes swing with the other processes' load; CPU time
 * does not (the decode path and BLAS run single-threaded here). */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* sg_time_verify in CPU time: median over reps of one gpt_decode of n tree
 * tokens (a binary tree) after a prefix of ctx tokens, then truncated. */
static int time_pass_cpu(gpt *m, int ctx, int n, int reps, double *out, ps_err *e)
{
    const int V = m->cfg.vocab;
    if (ctx < 1 || n < 1 || ctx + n > m->cfg.ctx || reps < 1 || reps > 64)
        return ps_errf(e, PS_EINPUT,
                       "cost table: context %d + %d tokens must fit the model's ctx %d", ctx, n,
                       m->cfg.ctx);
    gpt_kv kv;
    if (gpt_kv_init(&kv, m, ctx + n, ctx + n, e))
        return -1;
    int32_t *tok = malloc((size_t)(ctx + n) * sizeof *tok), *par = malloc((size_t)n * sizeof *par);
    double *lg = malloc((size_t)n * (size_t)V * sizeof *lg), ts[64];
    int rc = 0;
    if (!tok || !par || !lg)
        rc = ps_errf(e, PS_ERUN, "cost table: out of memory");
    for (int i = 0; i < ctx + n && !rc; i++)
        tok[i] = (int32_t)((i * 131 + 7) % V);
    for (int i = 0; i < n && !rc; i++)
        par[i] = i == 0 ? -1 : (i - 1) / 2;
    rc = rc ? rc : gpt_decode(m, &kv, ctx, tok, NULL, NULL, e);
    for (int k = 0; k < reps && !rc; k++) {
        double t0 = cpu_now_s();
        rc = gpt_decode(m, &kv, n, tok + ctx, par, lg, e);
        ts[k] = cpu_now_s() - t0;
        rc = rc ? rc : gpt_kv_truncate(&kv, ctx, e);
    }
    if (!rc) {
        qsort(ts, (size_t)reps, sizeof *ts, cmp_dbl);
        *out = reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]);
    }
    gpt_kv_free(&kv);
    free(tok);
    free(par);
    free(lg);
    return rc;
}

static int ctx_build(tiny_ctx *c, const ps_point *p, const char *key, ps_err *e)
{
    static int registered;
    if (!registered) {
        atexit(ctx_atexit);
        registered = 1;
    }
    ctx_free(c);
    snprintf(c->key, sizeof c->key, "%s", key);
    const char *size = ps_point_str(p, "model_size");
    uint64_t mseed = (uint64_t)ps_point_int(p, "model_seed");
    sm_config cfg;
    if (!strcmp(size, "full"))
        cfg = sm_config_default(0, mseed);
    else if (!strcmp(size, "quick"))
        cfg = sm_config_default(1, mseed);
    else if (!strcmp(size, "test"))
        cfg = sm_config_test(mseed);
    else
        return ps_errf(e, PS_EINPUT, "model_size \"%s\": expected full, quick or test", size);
    c->np = (int)ps_point_int(p, "prompts");
    c->plen = (int)ps_point_int(p, "prompt_len");
    c->max_new = (int)ps_point_int(p, "max_new");
    const int cmax = (int)ps_point_int(p, "cost_max_n"), reps = (int)ps_point_int(p, "cost_reps");
    if (c->np < 1 || c->plen < 1 || c->max_new < 1 || cmax < 1 || reps < 1)
        return ps_errf(e, PS_EINPUT,
                       "prompts %d, prompt_len %d, max_new %d, cost_max_n %d, cost_reps %d: "
                       "each must be >= 1",
                       c->np, c->plen, c->max_new, cmax, reps);
    if (c->plen + c->max_new / 2 + cmax > cfg.llm.ctx)
        return ps_errf(e, PS_EINPUT,
                       "cost table: prompt_len %d + max_new / 2 %d + cost_max_n %d exceeds the "
                       "LLM's context %d",
                       c->plen, c->max_new / 2, cmax, cfg.llm.ctx);
    if (c->plen + c->max_new + 16 > cfg.llm.ctx)
        return ps_errf(e, PS_EINPUT,
                       "prompt_len %d + max_new %d (+ 16 for the last tree) exceeds the LLM's "
                       "context %d",
                       c->plen, c->max_new, cfg.llm.ctx);
    if (text_load(NULL, &c->corp, e))
        return -1;
    if (sm_load_or_train(ps_point_str(p, "models_dir"), &cfg, &c->corp, &c->models, e))
        return -1;
    sm_set *s = &c->models;
    c->prompts = malloc((size_t)c->np * (size_t)c->plen * sizeof *c->prompts);
    c->ref = malloc((size_t)c->np * (size_t)c->max_new * sizeof *c->ref);
    c->ref_n = calloc((size_t)c->np, sizeof *c->ref_n);
    if (!c->prompts || !c->ref || !c->ref_n)
        return ps_errf(e, PS_ERUN, "specdec_tiny: out of memory");
    if (sm_prompts(&c->corp, c->np, c->plen, (uint64_t)ps_point_int(p, "prompt_seed"),
                   c->prompts, e))
        return -1;
    /* Table 1 */
    for (int k = 0; k < s->nssm && k < 2; k++)
        if (sm_topk(&s->llm, &s->ssm[k], &c->corp, cfg.B, cfg.T, cfg.eval_batches,
                    cfg.seed + 7, 5, c->t1g[k], c->t1s[k], e))
            return -1;
    /* reference outputs: incremental greedy */
    sg_opts o;
    memset(&o, 0, sizeof o);
    o.method = SG_INCREMENTAL;
    o.verify = SG_GREEDY;
    o.max_new = c->max_new;
    o.temperature = 1.0;
    o.nssm = 1;
    for (int i = 0; i < c->np; i++) {
        sg_stats st;
        if (sg_generate(&s->llm, NULL, 0, &o, c->prompts + (size_t)i * c->plen, c->plen,
                        c->ref + (size_t)i * c->max_new, &c->ref_n[i], &st, e))
            return -1;
    }
    /* rank trace of SSM_1 over the reference outputs */
    int32_t *ranks = malloc((size_t)c->np * (size_t)c->max_new * sizeof *ranks);
    int64_t *off = malloc((size_t)c->np * sizeof *off);
    int32_t *len = malloc((size_t)c->np * sizeof *len);
    int rc = 0;
    if (!ranks || !off || !len)
        rc = ps_errf(e, PS_ERUN, "specdec_tiny: out of memory");
    int64_t at = 0;
    for (int i = 0; i < c->np && !rc; i++) {
        off[i] = at;
        len[i] = c->ref_n[i];
        rc = sg_rank_trace(&s->ssm[0], c->prompts + (size_t)i * c->plen, c->plen,
                           c->ref + (size_t)i * c->max_new, c->ref_n[i], 8, ranks + at, e);
        at += c->ref_n[i];
    }
    int64_t ones = 0;
    for (int64_t i = 0; i < at && !rc; i++)
        ones += ranks[i] == 1;
    c->gen_agree = at ? (double)ones / (double)at : NAN;
    if (!rc && !(c->trace = sd_accept_trace(ranks, off, len, c->np, e)))
        rc = -1;
    free(ranks);
    free(off);
    free(len);
    if (rc)
        return rc;
    if (!(c->pos_greedy = positional_from_topk(c->t1g[0], 5, e)) ||
        !(c->pos_stoch = positional_from_topk(c->t1s[0], 5, e)))
        return -1;
    /* cost table: LLM verify of n tokens at the mean context, SSM one token */
    c->cost_ctx = c->plen + c->max_new / 2;
    /* `reps` rounds over the grid, interleaved in time; each entry keeps its
     * fastest round (the generation runs keep their fastest repetition too) */
    c->ncost = 0;
    for (int n = 1; n <= cmax && c->ncost < COST_MAX; n += n < 8 ? 1 : (n < 24 ? 2 : 4)) {
        c->cost_n[c->ncost] = n;
        c->cost_s[c->ncost++] = INFINITY;
    }
    c->draft_s = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t = 0;
        for (int i = 0; i < c->ncost; i++) {
            if (time_pass_cpu(&s->llm, c->cost_ctx, (int)c->cost_n[i], 3, &t, e))
                return -1;
            c->cost_s[i] = fmin(c->cost_s[i], t);
        }
        if (time_pass_cpu(&s->ssm[0], c->cost_ctx, 1, 3, &t, e))
            return -1;
        c->draft_s = fmin(c->draft_s, t);
    }
    if (!(c->cost = sd_cost_from_table(c->cost_n, c->cost_s, c->ncost, c->draft_s, e)))
        return -1;
    c->inc_spt[0] = c->inc_spt[1] = NAN;
    c->ready = 1;
    return 0;
}

static int ctx_get(const ps_point *p, tiny_ctx **out, ps_err *e)
{
    char key[1200];
    snprintf(key, sizeof key, "%s|%s|%lld|%lld|%lld|%lld|%lld|%lld|%lld",
             ps_point_str(p, "models_dir"), ps_point_str(p, "model_size"),
             ps_point_int(p, "model_seed"), ps_point_int(p, "prompts"),
             ps_point_int(p, "prompt_len"), ps_point_int(p, "max_new"),
             ps_point_int(p, "cost_max_n"), ps_point_int(p, "cost_reps"),
             ps_point_int(p, "prompt_seed"));
    if (!ctx_.ready || strcmp(ctx_.key, key)) {
        if (ctx_build(&ctx_, p, key, e)) {
            ctx_free(&ctx_);
            return -1;
        }
    }
    *out = &ctx_;
    return 0;
}

/* ------------------------------------------------------------------ methods */

typedef struct method_spec {
    sg_method method;
    int expansion[16];
    int depth, nssm;
} method_spec;

static int parse_method(const ps_point *p, method_spec *m, ps_err *e)
{
    memset(m, 0, sizeof *m);
    const char *run = ps_point_str(p, "run");
    const json_t *ms = ps_point_json(p, "methods");
    const json_t *j = json_object_get(ms, run);
    char at[160];
    snprintf(at, sizeof at, "$.methods.%s", run);
    if (!json_is_object(j))
        return ps_errf(e, PS_EINPUT, "run \"%s\": not a key of methods (an object per label)",
                       run);
    static const char *const keys[] = {"method", "depth", "expansion", "nssm", NULL};
    if (ps_json_check_keys(j, at, keys, e))
        return -1;
    const char *kind = NULL;
    if (ps_json_get_str(j, at, "method", 1, &kind, e))
        return -1;
    if (!strcmp(kind, "incremental"))
        m->method = SG_INCREMENTAL;
    else if (!strcmp(kind, "sequence"))
        m->method = SG_SEQUENCE;
    else if (!strcmp(kind, "tree"))
        m->method = SG_TREE;
    else if (!strcmp(kind, "merge"))
        m->method = SG_MERGE;
    else
        return ps_errf(e, PS_EINPUT,
                       "%s.method: \"%s\": expected incremental, sequence, tree or merge", at,
                       kind);
    long long d = 8, ns = 2;
    if (ps_json_get_int(j, at, "depth", 0, &d, e) || ps_json_get_int(j, at, "nssm", 0, &ns, e))
        return -1;
    m->nssm = (int)ns;
    if (m->method == SG_SEQUENCE) {
        if (d < 1 || d > 16)
            return ps_errf(e, PS_EINPUT, "%s.depth: %lld must be in [1, 16]", at, d);
        m->depth = (int)d;
        for (int i = 0; i < m->depth; i++)
            m->expansion[i] = 1;
    } else if (m->method == SG_TREE || m->method == SG_MERGE) {
        const json_t *x = json_object_get(j, "expansion");
        if (!json_is_array(x) || json_array_size(x) < 1 || json_array_size(x) > 16)
            return ps_errf(e, PS_EINPUT, "%s.expansion: expected an array of 1 to 16 widths",
                           at);
        m->depth = (int)json_array_size(x);
        for (int i = 0; i < m->depth; i++) {
            char path[200];
            long long v;
            snprintf(path, sizeof path, "%s.expansion[%d]", at, i);
            if (ps_json_as_int(json_array_get(x, (size_t)i), path, &v, e))
                return -1;
            if (v < 1 || v > 16)
                return ps_errf(e, PS_EINPUT, "%s: %lld must be in [1, 16]", path, v);
            m->expansion[i] = (int)v;
        }
    }
    return 0;
}

static int check_point(const ps_point *p, ps_err *e)
{
    method_spec m;
    if (parse_method(p, &m, e))
        return -1;
    const char *v = ps_point_str(p, "verify");
    if (strcmp(v, "greedy") && strcmp(v, "mss") && strcmp(v, "naive"))
        return ps_errf(e, PS_EINPUT, "verify \"%s\": expected greedy, mss or naive", v);
    const char *size = ps_point_str(p, "model_size");
    if (strcmp(size, "full") && strcmp(size, "quick") && strcmp(size, "test"))
        return ps_errf(e, PS_EINPUT, "model_size \"%s\": expected full, quick or test", size);
    if (m.method == SG_MERGE && (m.nssm < 1 || m.nssm > SM_MAX_SSM))
        return ps_errf(e, PS_EINPUT, "methods.%s.nssm: %d must be in [1, %d]",
                       ps_point_str(p, "run"), m.nssm, SM_MAX_SSM);
    return 0;
}

/* ------------------------------------------------------------------ one point */

static int run_point(const ps_point *p, double *mt, ps_err *e)
{
    for (int i = 0; i < M_COUNT; i++)
        mt[i] = NAN;
    method_spec m;
    if (parse_method(p, &m, e))
        return -1;
    tiny_ctx *c;
    int th = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(1);
    int rc = ctx_get(p, &c, e);
    ps_cpu_blas_set_threads(th);
    if (rc)
        return rc;
    sm_set *s = &c->models;
    if (m.method == SG_MERGE && m.nssm > s->nssm)
        return ps_errf(e, PS_EINPUT, "methods.%s.nssm: %d SSMs asked, the models have %d",
                       ps_point_str(p, "run"), m.nssm, s->nssm);
    const char *vs = ps_point_str(p, "verify");
    sg_verify ver = !strcmp(vs, "mss") ? SG_MSS : !strcmp(vs, "naive") ? SG_NAIVE : SG_GREEDY;

    /* models and Table 1 */
    mt[M_LLM_LOSS] = s->rep.llm_val_loss;
    mt[M_SSM1_LOSS] = s->rep.ssm_val_loss[0];
    mt[M_FLOPS_RATIO] = s->rep.llm_flops_per_token / s->rep.ssm_flops_per_token;
    mt[M_AGREE1] = s->rep.ssm_agree[0];
    mt[M_AGREE2] = s->nssm > 1 ? s->rep.ssm_agree[1] : NAN;
    mt[M_UNION2] = s->rep.union_agree[s->nssm - 1];
    for (int k = 0; k < 5; k++) {
        mt[M_T1G + k] = c->t1g[0][k];
        mt[M_T1S + k] = c->t1s[0][k];
        mt[M_T1G2 + k] = s->nssm > 1 ? c->t1g[1][k] : NAN;
        mt[M_T1S2 + k] = s->nssm > 1 ? c->t1s[1][k] : NAN;
    }
    mt[M_FROM_CACHE] = s->from_cache;
    mt[M_GEN_AGREE] = c->gen_agree;
    if (!c->emitted) { /* the measured cost table, once per process and settings */
        ps_table *ct = ps_table_new();
        int cn = ps_table_add_col(ct, "n", PS_COL_INT, "");
        int cv = ps_table_add_col(ct, "verify_ms", PS_COL_DOUBLE, "ms");
        int cpt = ps_table_add_col(ct, "verify_ms_per_token", PS_COL_DOUBLE, "ms");
        int cd = ps_table_add_col(ct, "ssm_ms_per_token", PS_COL_DOUBLE, "ms");
        int cx = ps_table_add_col(ct, "context", PS_COL_INT, "");
        for (int i = 0; i < c->ncost; i++) {
            size_t r = ps_table_add_row(ct);
            ps_table_set_i(ct, r, cn, (int64_t)c->cost_n[i]);
            ps_table_set_d(ct, r, cv, 1e3 * c->cost_s[i]);
            ps_table_set_d(ct, r, cpt, 1e3 * c->cost_s[i] / c->cost_n[i]);
            ps_table_set_d(ct, r, cd, 1e3 * c->draft_s);
            ps_table_set_i(ct, r, cx, c->cost_ctx);
        }
        rc = ps_point_emit(p, "cost_table", ct, e);
        ps_table_free(ct);
        if (rc)
            return rc;
        c->emitted = 1;
    }

    /* generation */
    sg_opts o;
    memset(&o, 0, sizeof o);
    o.method = m.method;
    o.verify = ver;
    memcpy(o.expansion, m.expansion, sizeof o.expansion);
    o.depth = m.depth;
    o.nssm = m.method == SG_MERGE ? m.nssm : 1;
    o.temperature = ps_point_num(p, "temperature");
    o.max_new = c->max_new;
    gpt *ssms[SM_MAX_SSM];
    for (int k = 0; k < s->nssm; k++)
        ssms[k] = &s->ssm[k];
    int32_t *out = malloc((size_t)c->max_new * sizeof *out);
    if (!out)
        return ps_errf(e, PS_ERUN, "specdec_tiny: out of memory");
    ps_table *t = ps_table_new();
    int c_pr = ps_table_add_col(t, "prompt", PS_COL_INT, "");
    int c_tok = ps_table_add_col(t, "tokens", PS_COL_INT, "");
    int c_st = ps_table_add_col(t, "steps", PS_COL_INT, "");
    int c_tps = ps_table_add_col(t, "tokens_per_step", PS_COL_DOUBLE, "");
    int c_spt = ps_table_add_col(t, "s_per_token", PS_COL_DOUBLE, "s");
    int c_id = ps_table_add_col(t, "identical", PS_COL_INT, "");
    long steps = 0, tokens = 0, tree_tokens = 0;
    double total_s = 0, draft_s = 0, verify_s = 0;
    int ident = 0;
    th = ps_cpu_blas_threads();
    ps_cpu_blas_set_threads(1);
    const int reps = (int)ps_point_int(p, "time_reps");
    if (reps < 1 || reps > 64) {
        free(out);
        ps_table_free(t);
        ps_cpu_blas_set_threads(th);
        return ps_errf(e, PS_EINPUT, "time_reps %d must be in [1, 64]", reps);
    }
    sg_stats *rs = malloc((size_t)reps * sizeof *rs);
    double cpu_total = 0;
    if (!rs)
        rc = ps_errf(e, PS_ERUN, "specdec_tiny: out of memory");
    for (int i = 0; i < c->np && !rc; i++) {
        sg_stats st;
        int nout = 0;
        o.seed = ps_point_seed(p) * 1000003ULL + (uint64_t)i;
        /* reps runs with the same seed give the same tokens; keep the fastest */
        double cpu[64];
        for (int k = 0; k < reps && !rc; k++) {
            double t0 = cpu_now_s();
            rc = sg_generate(&s->llm, ssms, s->nssm, &o, c->prompts + (size_t)i * c->plen,
                             c->plen, out, &nout, &rs[k], e);
            cpu[k] = cpu_now_s() - t0;
        }
        if (rc)
            break;
        for (int a = 1; a < reps; a++) /* insertion sort by CPU time */
            for (int b = a; b > 0 && cpu[b] < cpu[b - 1]; b--) {
                sg_stats x = rs[b];
                double y = cpu[b];
                rs[b] = rs[b - 1], cpu[b] = cpu[b - 1];
                rs[b - 1] = x, cpu[b - 1] = y;
            }
        st = rs[0];
        cpu_total += cpu[0];
        int same = nout == c->ref_n[i] &&
                   !memcmp(out, c->ref + (size_t)i * c->max_new, (size_t)nout * sizeof *out);
        ident += same;
        steps += st.steps;
        tokens += st.tokens;
        tree_tokens += st.tree_tokens;
        total_s += st.total_s;
        draft_s += st.draft_s;
        verify_s += st.verify_s;
        size_t r = ps_table_add_row(t);
        ps_table_set_i(t, r, c_pr, i);
        ps_table_set_i(t, r, c_tok, st.tokens);
        ps_table_set_i(t, r, c_st, st.steps);
        ps_table_set_d(t, r, c_tps, st.steps ? (double)st.tokens / (double)st.steps : NAN);
        ps_table_set_d(t, r, c_spt, st.tokens ? st.total_s / (double)st.tokens : NAN);
        ps_table_set_i(t, r, c_id, ver == SG_GREEDY ? same : -1);
    }
    ps_cpu_blas_set_threads(th);
    free(out);
    free(rs);
    rc = rc ? rc : ps_point_emit(p, "prompts", t, e);
    ps_table_free(t);
    if (rc)
        return rc;
    mt[M_TPS] = steps ? (double)tokens / (double)steps : NAN;
    mt[M_SPT] = tokens ? total_s / (double)tokens : NAN;
    mt[M_CPU_SPT] = tokens ? cpu_total / (double)tokens : NAN;
    mt[M_DRAFT_SPT] = tokens ? draft_s / (double)tokens : NAN;
    mt[M_VERIFY_SPT] = tokens ? verify_s / (double)tokens : NAN;
    mt[M_TREE_TOK] = steps ? (double)tree_tokens / (double)steps : NAN;
    mt[M_STEPS] = (double)steps;
    mt[M_TOKENS] = (double)tokens;
    if (ver == SG_GREEDY && m.method != SG_INCREMENTAL)
        mt[M_IDENT] = (double)ident / (double)c->np;
    if (m.method == SG_INCREMENTAL)
        c->inc_spt[ver == SG_GREEDY ? 0 : 1] = mt[M_CPU_SPT];
    double inc = c->inc_spt[ver == SG_GREEDY ? 0 : 1];
    mt[M_SPEEDUP] = isfinite(inc) ? inc / mt[M_CPU_SPT] : NAN;
    if (m.method == SG_TREE && m.depth >= 3) {
        int w = 1;
        for (int i = 0; i < m.depth; i++)
            if (i != 2 && m.expansion[i] != 1)
                w = 0;
        mt[M_WIDTH] = w ? m.expansion[2] : NAN;
    } else if (m.method == SG_SEQUENCE && m.depth == 8) {
        mt[M_WIDTH] = 1; /* <1,1,1,1,1,1,1,1>: Table 2's w = 1 */
    }

    /* prediction */
    sd_tree *tree = NULL;
    if (m.method == SG_INCREMENTAL) {
        int par[1] = {-1};
        tree = sd_tree_from_parents(par, NULL, 1, "incremental", e);
    } else if (m.method != SG_MERGE) {
        tree = sd_tree_from_expansion(m.expansion, m.depth, e);
    }
    if (m.method != SG_MERGE && !tree)
        return -1;
    mt[M_NODES] = tree ? tree->n : mt[M_TREE_TOK];
    const sd_accept *a = NULL, *apos = NULL;
    if (m.method != SG_MERGE) {
        if (ver == SG_GREEDY)
            a = c->trace, apos = c->pos_greedy;
        else if (ver == SG_NAIVE)
            a = apos = c->pos_stoch;
        else if (m.method == SG_INCREMENTAL)
            a = c->trace; /* a one-node tree emits 1 token per step under any model */
    }
    if (a) {
        double tps = NAN, spt = NAN;
        if (sd_predict_time_per_token(c->cost, tree, a, -1, c->cost_ctx, &tps, &spt, e)) {
            sd_tree_free(tree);
            return -1;
        }
        /* the measured runs include the prompt prefill of the LLM (and of the
         * SSMs when drafting): plen - 1 tokens each, spread over max_new */
        double pre = sd_cost_prefill(c->cost, 1, c->plen - 1);
        if (m.method != SG_INCREMENTAL)
            pre += c->draft_s * (c->plen - 1) * (m.method == SG_MERGE ? m.nssm : 1);
        spt += pre / c->max_new;
        mt[M_PRED_TPS] = tps;
        mt[M_PRED_SPT] = spt;
        mt[M_TPS_ERR] = (tps - mt[M_TPS]) / mt[M_TPS];
        mt[M_SPT_ERR] = (spt - mt[M_CPU_SPT]) / mt[M_CPU_SPT];
    }
    if (apos) {
        double tps = NAN;
        if (sd_accept_expected(apos, tree, &tps, e)) {
            sd_tree_free(tree);
            return -1;
        }
        mt[M_PRED_TPS_POS] = tps;
        mt[M_TPS_POS_ERR] = (tps - mt[M_TPS]) / mt[M_TPS];
    }
    sd_tree_free(tree);
    return 0;
}

/* ------------------------------------------------------------------ summary, derived */

typedef struct cols {
    int run, verify, m[M_COUNT];
} cols;

static void get_cols(const ps_table *pts, cols *c)
{
    c->run = ps_table_col(pts, "run");
    c->verify = ps_table_col(pts, "verify");
    for (int i = 0; i < M_COUNT; i++)
        c->m[i] = ps_table_col(pts, metrics[i].name);
}

static double val(const ps_table *pts, const cols *c, size_t r, int m)
{
    return c->m[m] >= 0 ? ps_table_get_d(pts, r, c->m[m]) : NAN;
}

static void method_label(const ps_table *pts, const cols *c, size_t r, char *buf, size_t n)
{
    const char *run = c->run >= 0 ? ps_table_get_s(pts, r, c->run) : "?";
    const char *v = c->verify >= 0 ? ps_table_get_s(pts, r, c->verify) : "greedy";
    if (!strcmp(v, "greedy"))
        snprintf(buf, n, "%s", run);
    else
        snprintf(buf, n, "%s/%s", run, v);
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    (void)e;
    cols c;
    get_cols(pts, &c);
    double idn = 0, idd = 0, worst_id = 1;
    double maxe = 0, maxs = 0;
    int ne = 0;
    for (size_t r = 0; r < pts->nrows; r++) {
        char lab[128];
        method_label(pts, &c, r, lab, sizeof lab);
        double f = val(pts, &c, r, M_IDENT);
        if (isfinite(f)) {
            idn += f, idd += 1;
            worst_id = fmin(worst_id, f);
        }
        ps_summary_add(out, "tokens_per_step", lab, val(pts, &c, r, M_TPS), "");
        ps_summary_add(out, "s_per_token", lab, val(pts, &c, r, M_SPT), "s");
        ps_summary_add(out, "cpu_s_per_token", lab, val(pts, &c, r, M_CPU_SPT), "s");
        ps_summary_add(out, "predicted_tokens_per_step", lab, val(pts, &c, r, M_PRED_TPS), "");
        ps_summary_add(out, "predicted_s_per_token", lab, val(pts, &c, r, M_PRED_SPT), "s");
        ps_summary_add(out, "speedup_vs_incremental", lab, val(pts, &c, r, M_SPEEDUP), "");
        double te = val(pts, &c, r, M_TPS_ERR), se = val(pts, &c, r, M_SPT_ERR);
        if (isfinite(te) && isfinite(se)) {
            maxe = fmax(maxe, fabs(te));
            maxs = fmax(maxs, fabs(se));
            ne++;
        }
    }
    /* the mean over greedy speculative runs (each a fraction over prompts) */
    ps_summary_add(out, "greedy_identical_fraction", NULL, idd > 0 ? idn / idd : NAN, "");
    ps_summary_add(out, "greedy_identical_fraction_worst", NULL, idd > 0 ? worst_id : NAN, "");
    ps_summary_add(out, "max_abs_tps_rel_err", NULL, ne ? maxe : NAN, "");
    ps_summary_add(out, "max_abs_spt_rel_err", NULL, ne ? maxs : NAN, "");
    if (pts->nrows) {
        static const char *names[] = {"llm_val_loss", "ssm1_val_loss", "flops_ratio"};
        const int mi[] = {M_LLM_LOSS, M_SSM1_LOSS, M_FLOPS_RATIO};
        for (int i = 0; i < 3; i++)
            ps_summary_add(out, names[i], NULL, val(pts, &c, 0, mi[i]), "");
        ps_summary_add(out, "top1_agreement", "ssm1", val(pts, &c, 0, M_AGREE1), "");
        ps_summary_add(out, "top1_agreement", "ssm2", val(pts, &c, 0, M_AGREE2), "");
        ps_summary_add(out, "top1_agreement", "union", val(pts, &c, 0, M_UNION2), "");
        ps_summary_add(out, "top1_agreement", "ssm1_on_greedy_outputs",
                       val(pts, &c, 0, M_GEN_AGREE), "");
        for (int k = 0; k < 5; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "table1_greedy_top%d", k + 1);
            ps_summary_add(out, nm, "ssm1", val(pts, &c, 0, M_T1G + k), "");
            snprintf(nm, sizeof nm, "table1_stochastic_top%d", k + 1);
            ps_summary_add(out, nm, "ssm1", val(pts, &c, 0, M_T1S + k), "");
        }
    }
    return 0;
}

/* Paper (SpecInfer Tables 1-3, Alpaca), for the derived tables. */
static const double paper_t1g[5] = {0.68, 0.77, 0.81, 0.84, 0.85};
static const double paper_t1s[5] = {0.54, 0.81, 0.91, 0.95, 0.97};
static const double paper_t2g[5] = {2.95, 3.07, 3.21, 3.33, 3.43};
static const double paper_t2s[5] = {1.79, 2.11, 2.26, 2.32, 2.38};

static int derive(const ps_table *pts, ps_derived *out, size_t max, size_t *n, ps_err *e)
{
    (void)e;
    *n = 0;
    if (max < 4 || !pts->nrows)
        return 0;
    cols c;
    get_cols(pts, &c);

    /* Table 1 (from the first point: every point carries the same values) */
    ps_table *t = ps_table_new();
    int ck = ps_table_add_col(t, "k", PS_COL_INT, "");
    int cg1 = ps_table_add_col(t, "greedy_ssm1", PS_COL_DOUBLE, "");
    int cs1 = ps_table_add_col(t, "stochastic_ssm1", PS_COL_DOUBLE, "");
    int cg2 = ps_table_add_col(t, "greedy_ssm2", PS_COL_DOUBLE, "");
    int cs2 = ps_table_add_col(t, "stochastic_ssm2", PS_COL_DOUBLE, "");
    int cpg = ps_table_add_col(t, "paper_greedy_alpaca", PS_COL_DOUBLE, "");
    int cps = ps_table_add_col(t, "paper_stochastic_alpaca", PS_COL_DOUBLE, "");
    for (int k = 0; k < 5; k++) {
        size_t r = ps_table_add_row(t);
        ps_table_set_i(t, r, ck, k + 1);
        ps_table_set_d(t, r, cg1, val(pts, &c, 0, M_T1G + k));
        ps_table_set_d(t, r, cs1, val(pts, &c, 0, M_T1S + k));
        ps_table_set_d(t, r, cg2, val(pts, &c, 0, M_T1G2 + k));
        ps_table_set_d(t, r, cs2, val(pts, &c, 0, M_T1S2 + k));
        ps_table_set_d(t, r, cpg, paper_t1g[k]);
        ps_table_set_d(t, r, cps, paper_t1s[k]);
    }
    snprintf(out[*n].name, sizeof out[*n].name, "table1");
    out[(*n)++].t = t;

    /* Table 2 measured: tokens per step vs width (tree <1,1,w,1,...>; w = 1
     * is the depth-8 sequence) per verifier, with the simulator's greedy
     * prediction */
    t = ps_table_new();
    int cw = ps_table_add_col(t, "w", PS_COL_INT, "");
    int cgr = ps_table_add_col(t, "greedy", PS_COL_DOUBLE, "");
    int cgp = ps_table_add_col(t, "greedy_predicted", PS_COL_DOUBLE, "");
    int cgq = ps_table_add_col(t, "greedy_positional", PS_COL_DOUBLE, "");
    int cms = ps_table_add_col(t, "mss", PS_COL_DOUBLE, "");
    int cnv = ps_table_add_col(t, "naive", PS_COL_DOUBLE, "");
    int cnp = ps_table_add_col(t, "naive_predicted", PS_COL_DOUBLE, "");
    int cpg2 = ps_table_add_col(t, "paper_greedy_alpaca", PS_COL_DOUBLE, "");
    int cps2 = ps_table_add_col(t, "paper_stochastic_alpaca", PS_COL_DOUBLE, "");
    for (int w = 1; w <= 5; w++) {
        double g = NAN, gp = NAN, gq = NAN, ms = NAN, nv = NAN, np = NAN;
        int any = 0;
        for (size_t r = 0; r < pts->nrows; r++) {
            if (val(pts, &c, r, M_WIDTH) != w)
                continue;
            /* prefer the tree row over the sequence row for w = 1 */
            const char *v = c.verify >= 0 ? ps_table_get_s(pts, r, c.verify) : "greedy";
            any = 1;
            if (!strcmp(v, "greedy")) {
                g = val(pts, &c, r, M_TPS);
                gp = val(pts, &c, r, M_PRED_TPS);
                gq = val(pts, &c, r, M_PRED_TPS_POS);
            } else if (!strcmp(v, "mss")) {
                ms = val(pts, &c, r, M_TPS);
            } else if (!strcmp(v, "naive")) {
                nv = val(pts, &c, r, M_TPS);
                np = val(pts, &c, r, M_PRED_TPS);
            }
        }
        if (!any)
            continue;
        size_t r = ps_table_add_row(t);
        ps_table_set_i(t, r, cw, w);
        ps_table_set_d(t, r, cgr, g);
        ps_table_set_d(t, r, cgp, gp);
        ps_table_set_d(t, r, cgq, gq);
        ps_table_set_d(t, r, cms, ms);
        ps_table_set_d(t, r, cnv, nv);
        ps_table_set_d(t, r, cnp, np);
        ps_table_set_d(t, r, cpg2, paper_t2g[w - 1]);
        ps_table_set_d(t, r, cps2, paper_t2s[w - 1]);
    }
    snprintf(out[*n].name, sizeof out[*n].name, "table2_measured");
    out[(*n)++].t = t;

    /* MSS vs naive per method (Table 3 analogue; paper 1.26-1.28x) */
    t = ps_table_new();
    int cl = ps_table_add_col(t, "run", PS_COL_STR, "");
    int cm = ps_table_add_col(t, "mss", PS_COL_DOUBLE, "");
    int cn = ps_table_add_col(t, "naive", PS_COL_DOUBLE, "");
    int cr = ps_table_add_col(t, "mss_over_naive", PS_COL_DOUBLE, "");
    for (size_t r = 0; r < pts->nrows && c.run >= 0 && c.verify >= 0; r++) {
        if (strcmp(ps_table_get_s(pts, r, c.verify), "mss"))
            continue;
        const char *run = ps_table_get_s(pts, r, c.run);
        for (size_t q = 0; q < pts->nrows; q++) {
            if (strcmp(ps_table_get_s(pts, q, c.verify), "naive") ||
                strcmp(ps_table_get_s(pts, q, c.run), run))
                continue;
            size_t o = ps_table_add_row(t);
            double a = val(pts, &c, r, M_TPS), b = val(pts, &c, q, M_TPS);
            ps_table_set_s(t, o, cl, run);
            ps_table_set_d(t, o, cm, a);
            ps_table_set_d(t, o, cn, b);
            ps_table_set_d(t, o, cr, a / b);
            break;
        }
    }
    snprintf(out[*n].name, sizeof out[*n].name, "mss_vs_naive");
    out[(*n)++].t = t;

    /* predicted vs measured per point */
    t = ps_table_new();
    int pl = ps_table_add_col(t, "label", PS_COL_STR, "");
    int pmt = ps_table_add_col(t, "measured_tokens_per_step", PS_COL_DOUBLE, "");
    int ppt = ps_table_add_col(t, "predicted_tokens_per_step", PS_COL_DOUBLE, "");
    int pms = ps_table_add_col(t, "measured_cpu_ms_per_token", PS_COL_DOUBLE, "ms");
    int pps = ps_table_add_col(t, "predicted_ms_per_token", PS_COL_DOUBLE, "ms");
    int pte = ps_table_add_col(t, "tps_rel_err_pct", PS_COL_DOUBLE, "%");
    int pse = ps_table_add_col(t, "spt_rel_err_pct", PS_COL_DOUBLE, "%");
    for (size_t r = 0; r < pts->nrows; r++) {
        char lab[128];
        method_label(pts, &c, r, lab, sizeof lab);
        size_t o = ps_table_add_row(t);
        ps_table_set_s(t, o, pl, lab);
        ps_table_set_d(t, o, pmt, val(pts, &c, r, M_TPS));
        ps_table_set_d(t, o, ppt, val(pts, &c, r, M_PRED_TPS));
        ps_table_set_d(t, o, pms, 1e3 * val(pts, &c, r, M_CPU_SPT));
        ps_table_set_d(t, o, pps, 1e3 * val(pts, &c, r, M_PRED_SPT));
        ps_table_set_d(t, o, pte, 100 * val(pts, &c, r, M_TPS_ERR));
        ps_table_set_d(t, o, pse, 100 * val(pts, &c, r, M_SPT_ERR));
    }
    snprintf(out[*n].name, sizeof out[*n].name, "predicted_vs_measured");
    out[(*n)++].t = t;
    return 0;
}

const ps_study ps_study_specdec_tiny = {
    .name = "specdec_tiny",
    .summary = "speculative decoding with real tiny models on this CPU: tokens per step and "
               "time per token measured, and predicted by the simulator from measured costs",
    .params = params,
    .metrics = metrics,
    .check_point = check_point,
    .run_point = run_point,
    .summarize = summarize,
    .derive = derive,
};
