/* The speculative-decoding serving study (issue 6, SpecInfer Figs. 7-9):
 * per-token latency of incremental decoding, sequence (chain) speculation,
 * SpecInfer's expansion tree (width `width`), its merge-based tree of k SSM
 * chains and the hardware-aware optimized tree, served with
 * continuous batching on the DES engine (sim/specdec/serve.h) with analytic
 * step costs (sim/specdec/cost.h) for a named setup (LLM, SSM, cluster,
 * parallelism, offloading).
 *
 * A point names one setup of the config's `setups` object:
 *   "setups": {"llama-7b/1xA10": {"llm": "llama-7b", "cluster": "a10x1"},
 *              "opt-13b/offload": {"llm": "opt-13b", "cluster": "a10x1",
 *                                  "offload": true}}
 * (any sd_cost_from_json object, measured tables included).
 *
 * The workload: `requests` requests (0: max(256, 16 x batch)) of `prompt_len` prompt
 * and `output_len` output tokens, all at t = 0 (rate 0) or Poisson at
 * `rate`; the running batch is capped at `batch`, so with rate 0 it stays
 * full (a leaving request's slot is refilled at the next iteration, Orca
 * style) until the queue drains.  The headline metric is the per-token
 * latency from admission (the paper's per-token latency of a batch: no
 * queueing), the end-to-end one (from arrival) is beside it.  Acceptance: any sim/specdec/accept.h JSON (default the
 * positional vector from Table 1 greedy Alpaca).
 *
 * Detail table `choice` (per point): the tree each batch size 1..batch uses
 * (nodes, depth, expected tokens per step, step time, predicted time per
 * token).  Derived table `speedups`: per (setup, batch, ...) the latency of
 * each method and the speedups over incremental and over sequence.
 * Summary: per setup, the speedups at the smallest and largest batch and
 * their ranges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "experiments/study.h"
#include "sim/specdec/accept.h"
#include "sim/specdec/cost.h"
#include "sim/specdec/serve.h"

static const ps_param_spec params[] = {
    {"setup", PS_PARAM_STR, NULL, "", "a key of `setups` (sweep it over the setups to compare)"},
    {"setups", PS_PARAM_JSON, NULL, "",
     "setup name -> cost JSON {llm, ssm, cluster, tp, pp, offload, flops_eff, mem_eff, "
     "launch_s, kernels_per_layer, step_overhead_s, gpu_weight_bytes, n_ssm} or a measured "
     "{table: {n_tokens, verify_s}, draft_s_per_token}"},
    {"method", PS_PARAM_STR, "\"specinfer\"", "",
     "incremental | sequence | specinfer | optimized | merge"},
    {"batch", PS_PARAM_INT, "1", "", "max running batch (continuous batching)"},
    {"acceptance", PS_PARAM_JSON,
     "{\"kind\": \"positional\", \"p\": [0.68, 0.09, 0.04, 0.03, 0.01]}", "",
     "acceptance model JSON (sim/specdec/accept.h); default: Table 1 greedy Alpaca"},
    {"requests", PS_PARAM_INT, "0", "", "requests served (0: max(256, 16 x batch))"},
    {"rate", PS_PARAM_NUM, "0", "1/s", "Poisson arrival rate (0: all requests at t = 0)"},
    {"trace", PS_PARAM_JSON, "null", "",
     "request trace {\"arrival_s\": [...], \"prompt_len\": [...], \"output_len\": [...]} "
     "(equal lengths; prompt_len/output_len optional); replaces requests and rate"},
    {"prompt_len", PS_PARAM_INT, "128", "", "prompt tokens per request"},
    {"output_len", PS_PARAM_INT, "128", "", "output tokens per request (paper: <= 128)"},
    {"seq_k", PS_PARAM_INT, "0", "", "sequence: drafts per chain (0: best per batch size)"},
    {"tree", PS_PARAM_JSON, "null", "",
     "specinfer: a tree JSON ({\"parents\": [...]}) instead of <1,1,3,1,1,1,1,1>"},
    {"width", PS_PARAM_INT, "3", "", "specinfer: w of the expansion <1,1,w,1,1,1,1,1>"},
    {"merge_ssms", PS_PARAM_INT, "3", "", "merge: boost-tuned SSMs k (chains merged)"},
    {"merge_depth", PS_PARAM_INT, "8", "", "merge: tokens per SSM chain"},
    {"opt_max_n", PS_PARAM_INT, "1024", "", "optimized: largest tree (nodes, root included)"},
    {"opt_depths", PS_PARAM_JSON, "[0, 4, 8, 12, 16]", "",
     "optimized: depth bounds searched (0 = unbounded)"},
    {"opt_ranks", PS_PARAM_INT, "8", "", "optimized: ranks of the positional vector for the DP"},
    {NULL, 0, NULL, NULL, NULL}};

enum {
    M_LAT_MEAN,
    M_E2E_MEAN,
    M_E2E_P99,
    M_LAT_P50,
    M_LAT_P99,
    M_TOK_S,
    M_TOK_STEP,
    M_STEPS,
    M_MEAN_BATCH,
    M_NODES,
    M_CHOSEN_N,
    M_CHOSEN_DEPTH,
    M_PRED_TOK,
    M_PRED_SPT,
    M_STEP_S,
    M_KNEE,
    M_GPUS,
    M_VERIFY_UTIL,
    M_DRAFT_FRAC,
    M_EVENTS,
    M_COUNT
};

static const ps_metric_spec metrics[] = {
    [M_LAT_MEAN] = {"latency_per_token_s", "s",
                    "mean over requests of (finish - admission) / output tokens"},
    [M_E2E_MEAN] = {"e2e_latency_per_token_s", "s",
                    "mean over requests of (finish - arrival) / output tokens (with queueing)"},
    [M_E2E_P99] = {"e2e_latency_per_token_p99_s", "s", "its 99th percentile"},
    [M_LAT_P50] = {"latency_per_token_p50_s", "s", "median per-token latency (from admission)"},
    [M_LAT_P99] = {"latency_per_token_p99_s", "s", "99th percentile (from admission)"},
    [M_TOK_S] = {"tokens_per_s", "1/s", "output tokens / makespan"},
    [M_TOK_STEP] = {"tokens_per_step", "", "mean tokens emitted per request per decode step"},
    [M_STEPS] = {"steps", "", "decode steps (draft + verify)"},
    [M_MEAN_BATCH] = {"mean_batch", "", "mean running batch over decode steps"},
    [M_NODES] = {"mean_tree_nodes", "", "mean tree nodes per request per step (1: incremental)"},
    [M_CHOSEN_N] = {"tree_nodes_at_batch", "",
                    "nodes of the tree used at the full batch (root included)"},
    [M_CHOSEN_DEPTH] = {"tree_depth_at_batch", "", "its depth (draft levels)"},
    [M_PRED_TOK] = {"predicted_tokens_per_step", "",
                    "closed-form expected tokens per step of that tree"},
    [M_PRED_SPT] = {"predicted_latency_per_token_s", "s",
                    "analytic step time at the full batch / expected tokens (no queueing, "
                    "context prompt + output/2)"},
    [M_STEP_S] = {"step_s_at_batch", "s", "draft + verify time at the full batch"},
    [M_KNEE] = {"knee_tokens", "", "compute knee of the LLM step (tokens per step)"},
    [M_GPUS] = {"gpus", "", "GPUs of the LLM (tp x pp)"},
    [M_VERIFY_UTIL] = {"llm_utilization", "", "LLM stream busy / makespan"},
    [M_DRAFT_FRAC] = {"draft_share", "", "draft time / (draft + LLM time)"},
    [M_EVENTS] = {"des_events", "", "events the DES engine processed"},
    [M_COUNT] = {NULL, NULL, NULL}};

/* ------------------------------------------------------------------ a point's inputs */

typedef struct inputs {
    sd_cost *cost;
    sd_accept *acc;
    sd_tree *tree;
    int *depths;
    int ndepth;
    double *arrival;
    int *prompt, *output;
    sd_serve_cfg cfg;
} inputs;

static void inputs_free(inputs *in)
{
    sd_cost_free(in->cost);
    sd_accept_free(in->acc);
    sd_tree_free(in->tree);
    free(in->depths);
    free(in->arrival);
    free(in->prompt);
    free(in->output);
    memset(in, 0, sizeof *in);
}

static int inputs_get(const ps_point *p, inputs *in, ps_err *e)
{
    memset(in, 0, sizeof *in);
    const char *setup = ps_point_str(p, "setup");
    const json_t *setups = ps_point_json(p, "setups");
    if (!json_is_object(setups))
        return ps_errf(e, PS_EINPUT, "setups: expected an object of named setups, got %s",
                       ps_json_type_name(setups));
    const json_t *sj = json_object_get(setups, setup);
    if (!sj) {
        char list[512] = "";
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)setups, k, v) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", k);
        }
        (void)v;
        return ps_errf(e, PS_EINPUT, "setup: \"%s\" is not in setups (known: %s)", setup, list);
    }
    char at[200];
    snprintf(at, sizeof at, "setups.%s", setup);
    int rc = 0;
    if (!(in->cost = sd_cost_from_json(sj, at, e)))
        return e ? e->code : PS_EINPUT;
    if (!(in->acc = sd_accept_from_json(ps_point_json(p, "acceptance"), "acceptance", e))) {
        rc = e ? e->code : PS_EINPUT;
        goto fail;
    }
    sd_serve_cfg *c = &in->cfg;
    sd_serve_cfg_default(c);
    const char *m = ps_point_str(p, "method");
    int mi = sd_method_from_name(m);
    if (mi < 0 || mi == SD_METHOD_TREE) {
        rc = ps_errf(e, PS_EINPUT, "method: \"%s\" is not one of incremental, sequence, "
                     "specinfer, optimized, merge", m);
        goto fail;
    }
    c->method = (sd_method)mi;
    long long batch = ps_point_int(p, "batch"), req = ps_point_int(p, "requests");
    long long pl = ps_point_int(p, "prompt_len"), ol = ps_point_int(p, "output_len");
    long long k = ps_point_int(p, "seq_k"), maxn = ps_point_int(p, "opt_max_n");
    long long ranks = ps_point_int(p, "opt_ranks");
    double rate = ps_point_num(p, "rate");
    if (batch < 1 || batch > 4096) {
        rc = ps_errf(e, PS_EINPUT, "batch: %lld outside 1..4096", batch);
        goto fail;
    }
    if (req < 0 || req > 1000000) {
        rc = ps_errf(e, PS_EINPUT, "requests: %lld outside 0..1e6", req);
        goto fail;
    }
    if (pl < 1 || pl > 100000 || ol < 1 || ol > 100000) {
        rc = ps_errf(e, PS_EINPUT, "prompt_len, output_len: must be in 1..1e5 (got %lld, %lld)",
                     pl, ol);
        goto fail;
    }
    if (k < 0 || k > 64) {
        rc = ps_errf(e, PS_EINPUT, "seq_k: %lld outside 0..64", k);
        goto fail;
    }
    if (maxn < 1 || maxn > SD_TREE_MAX_NODES) {
        rc = ps_errf(e, PS_EINPUT, "opt_max_n: %lld outside 1..%d", maxn, SD_TREE_MAX_NODES);
        goto fail;
    }
    if (ranks < 1 || ranks > 64) {
        rc = ps_errf(e, PS_EINPUT, "opt_ranks: %lld outside 1..64", ranks);
        goto fail;
    }
    if (!(rate >= 0) || !isfinite(rate)) {
        rc = ps_errf(e, PS_EINPUT, "rate: %g must be finite and >= 0", rate);
        goto fail;
    }
    const json_t *dj = ps_point_json(p, "opt_depths");
    if (!json_is_array(dj) || json_array_size(dj) == 0 || json_array_size(dj) > 64) {
        rc = ps_errf(e, PS_EINPUT, "opt_depths: expected an array of 1..64 integers, got %s",
                     ps_json_type_name(dj));
        goto fail;
    }
    in->ndepth = (int)json_array_size(dj);
    in->depths = malloc((size_t)in->ndepth * sizeof *in->depths);
    if (!in->depths) {
        rc = ps_errf(e, PS_ERUN, "out of memory");
        goto fail;
    }
    for (int i = 0; i < in->ndepth; i++) {
        long long d;
        char path[64];
        snprintf(path, sizeof path, "opt_depths[%d]", i);
        if ((rc = ps_json_as_int(json_array_get(dj, (size_t)i), path, &d, e)))
            goto fail;
        if (d < 0 || d > 1024) {
            rc = ps_errf(e, PS_EINPUT, "%s: %lld outside 0..1024", path, d);
            goto fail;
        }
        in->depths[i] = (int)d;
    }
    long long w = ps_point_int(p, "width"), mk = ps_point_int(p, "merge_ssms");
    long long md = ps_point_int(p, "merge_depth");
    if (w < 1 || w > 64 || mk < 1 || mk > 64 || md < 1 || md > 64) {
        rc = ps_errf(e, PS_EINPUT, "width, merge_ssms, merge_depth: must be in 1..64 (got %lld, "
                     "%lld, %lld)", w, mk, md);
        goto fail;
    }
    const json_t *tj = ps_point_json(p, "tree");
    if (tj && !json_is_null(tj)) {
        if (!(in->tree = sd_tree_from_json(tj, "tree", e))) {
            rc = e ? e->code : PS_EINPUT;
            goto fail;
        }
    } else if (w != 3) {
        const int k[8] = {1, 1, (int)w, 1, 1, 1, 1, 1};
        if (!(in->tree = sd_tree_from_expansion(k, 8, e))) {
            rc = e ? e->code : PS_EINPUT;
            goto fail;
        }
    }
    c->merge_ssms = (int)mk;
    c->merge_depth = (int)md;
    c->max_batch = (int)batch;
    c->nreq = req ? (int)req : (batch > 16 ? 16 * (int)batch : 256);
    const json_t *tr = ps_point_json(p, "trace");
    if (tr && !json_is_null(tr)) {
        static const char *const tkeys[] = {"arrival_s", "prompt_len", "output_len", "note",
                                            NULL};
        if (!json_is_object(tr)) {
            rc = ps_errf(e, PS_EINPUT, "trace: expected an object, got %s",
                         ps_json_type_name(tr));
            goto fail;
        }
        if ((rc = ps_json_check_keys(tr, "trace", tkeys, e)))
            goto fail;
        const json_t *aj = json_object_get(tr, "arrival_s");
        const json_t *pj = json_object_get(tr, "prompt_len");
        const json_t *oj = json_object_get(tr, "output_len");
        size_t n = json_array_size(aj);
        if (!json_is_array(aj) || n == 0 || n > 1000000) {
            rc = ps_errf(e, PS_EINPUT, "trace.arrival_s: expected a non-empty array of times");
            goto fail;
        }
        if ((pj && json_array_size(pj) != n) || (oj && json_array_size(oj) != n)) {
            rc = ps_errf(e, PS_EINPUT, "trace: prompt_len and output_len need %zu entries like "
                         "arrival_s", n);
            goto fail;
        }
        in->arrival = malloc(n * sizeof *in->arrival);
        in->prompt = pj ? malloc(n * sizeof *in->prompt) : NULL;
        in->output = oj ? malloc(n * sizeof *in->output) : NULL;
        if (!in->arrival || (pj && !in->prompt) || (oj && !in->output)) {
            rc = ps_errf(e, PS_ERUN, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            char path[64];
            long long v;
            snprintf(path, sizeof path, "trace.arrival_s[%zu]", i);
            if ((rc = ps_json_as_num(json_array_get(aj, i), path, &in->arrival[i], e)))
                goto fail;
            if (!(in->arrival[i] >= 0) || (i && in->arrival[i] < in->arrival[i - 1])) {
                rc = ps_errf(e, PS_EINPUT, "%s: %g must be >= 0 and not below the previous",
                             path, in->arrival[i]);
                goto fail;
            }
            if (pj) {
                snprintf(path, sizeof path, "trace.prompt_len[%zu]", i);
                if ((rc = ps_json_as_int(json_array_get(pj, i), path, &v, e)))
                    goto fail;
                if (v < 1 || v > 100000) {
                    rc = ps_errf(e, PS_EINPUT, "%s: %lld outside 1..1e5", path, v);
                    goto fail;
                }
                in->prompt[i] = (int)v;
            }
            if (oj) {
                snprintf(path, sizeof path, "trace.output_len[%zu]", i);
                if ((rc = ps_json_as_int(json_array_get(oj, i), path, &v, e)))
                    goto fail;
                if (v < 1 || v > 100000) {
                    rc = ps_errf(e, PS_EINPUT, "%s: %lld outside 1..1e5", path, v);
                    goto fail;
                }
                in->output[i] = (int)v;
            }
        }
        c->nreq = (int)n;
        c->arrival_s = in->arrival;
        c->prompt_len = in->prompt;
        c->output_len = in->output;
    }
    c->rate = rate;
    c->prompt_default = (int)pl;
    c->output_default = (int)ol;
    c->seq_k = (int)k;
    c->tree = in->tree;
    c->opt_max_n = (int)maxn;
    c->opt_depth_grid = in->depths;
    c->opt_ndepth = in->ndepth;
    c->opt_ranks = (int)ranks;
    c->seed = ps_point_seed(p);
    return 0;
fail:
    inputs_free(in);
    return rc ? rc : PS_EINPUT;
}

static int check_point(const ps_point *p, ps_err *e)
{
    inputs in;
    int rc = inputs_get(p, &in, e);
    if (!rc)
        inputs_free(&in);
    return rc;
}

/* The optimizer's DP trees depend only on the acceptance vector and the
 * grid, not on the setup or batch: one cached optimizer serves every point
 * with the same key (the runner runs points one at a time).  It lives until
 * the process ends. */
static sd_optimizer *cached_opt;
static char *cached_key;

static sd_optimizer *optimizer_for(const inputs *in, ps_err *e)
{
    const sd_serve_cfg *c = &in->cfg;
    double pv[64];
    if (sd_accept_to_positional(in->acc, c->opt_ranks, pv, e))
        return NULL;
    size_t cap = 64 + 32 * (size_t)(c->opt_ranks + c->opt_ndepth);
    char *key = malloc(cap);
    if (!key) {
        ps_errf(e, PS_ERUN, "out of memory");
        return NULL;
    }
    size_t l = (size_t)snprintf(key, cap, "%d/%d:", c->opt_max_n, c->opt_ranks);
    for (int i = 0; i < c->opt_ranks; i++)
        l += (size_t)snprintf(key + l, cap - l, "%.17g,", pv[i]);
    for (int i = 0; i < c->opt_ndepth; i++)
        l += (size_t)snprintf(key + l, cap - l, "d%d,", c->opt_depth_grid[i]);
    if (cached_opt && !strcmp(cached_key, key)) {
        free(key);
        return cached_opt;
    }
    sd_optimizer *o = sd_optimizer_new(pv, c->opt_ranks, c->opt_max_n, NULL, 0,
                                       c->opt_depth_grid, c->opt_ndepth, e);
    if (!o) {
        free(key);
        return NULL;
    }
    sd_optimizer_free(cached_opt);
    free(cached_key);
    cached_opt = o;
    cached_key = key;
    return o;
}

static int run_point(const ps_point *p, double *mv, ps_err *e)
{
    inputs in;
    int rc = inputs_get(p, &in, e);
    if (rc)
        return rc;
    sd_serve_result r;
    memset(&r, 0, sizeof r);
    sd_optimizer *o = NULL;
    ps_table *t = NULL;
    if (in.cfg.method == SD_METHOD_OPTIMIZED) {
        if (!(o = optimizer_for(&in, e))) {
            rc = e ? e->code : PS_ERUN;
            goto out;
        }
        in.cfg.optimizer = o;
    }
    if ((rc = sd_serve_run(in.cost, in.acc, &in.cfg, &r, e)))
        goto out;
    for (int i = 0; i < M_COUNT; i++)
        mv[i] = NAN;
    mv[M_LAT_MEAN] = r.svc_lat_mean_s;
    mv[M_LAT_P50] = r.svc_lat_p50_s;
    mv[M_LAT_P99] = r.svc_lat_p99_s;
    mv[M_E2E_MEAN] = r.lat_mean_s;
    mv[M_E2E_P99] = r.lat_p99_s;
    mv[M_TOK_S] = r.tokens_per_s;
    mv[M_TOK_STEP] = r.tokens_per_step;
    mv[M_STEPS] = (double)r.steps;
    mv[M_MEAN_BATCH] = r.mean_batch;
    mv[M_NODES] = r.mean_tree_nodes;
    mv[M_KNEE] = sd_cost_knee(in.cost);
    mv[M_GPUS] = sd_cost_gpus(in.cost);
    mv[M_VERIFY_UTIL] = r.makespan_s > 0 ? r.verify_busy_s / r.makespan_s : NAN;
    mv[M_DRAFT_FRAC] = r.draft_busy_s / (r.draft_busy_s + r.verify_busy_s);
    mv[M_EVENTS] = (double)r.des_events;

    /* the per-batch-size choices, the same way the simulator made them */
    const sd_serve_cfg *c = &in.cfg;
    int ctx = c->prompt_default + c->output_default / 2;
    t = ps_table_new();
    int c_b = ps_table_add_col(t, "batch", PS_COL_INT, "");
    int c_n = ps_table_add_col(t, "tree_nodes", PS_COL_INT, "");
    int c_d = ps_table_add_col(t, "tree_depth", PS_COL_INT, "");
    int c_f = ps_table_add_col(t, "tokens_per_step", PS_COL_DOUBLE, "");
    int c_v = ps_table_add_col(t, "verify_s", PS_COL_DOUBLE, "s");
    int c_dr = ps_table_add_col(t, "draft_s", PS_COL_DOUBLE, "s");
    int c_spt = ps_table_add_col(t, "latency_per_token_s", PS_COL_DOUBLE, "s");
    for (int b = 1; b <= c->max_batch; b++) {
        sd_step_plan pl;
        if ((rc = sd_step_plan_make(c, in.cost, in.acc, o, b, ctx, &pl, e)))
            goto out;
        const sd_tree *tr = pl.tree;
        double f = 1, v, d;
        if (tr && (rc = sd_accept_expected(in.acc, tr, &f, e))) {
            sd_step_plan_free(&pl);
            goto out;
        }
        sd_step_plan_cost(in.cost, &pl, b, ctx, &v, &d);
        size_t row = ps_table_add_row(t);
        ps_table_set_i(t, row, c_b, b);
        ps_table_set_i(t, row, c_n, tr ? tr->n : 1);
        ps_table_set_i(t, row, c_d, tr ? tr->depth : 0);
        ps_table_set_d(t, row, c_f, f);
        ps_table_set_d(t, row, c_v, v);
        ps_table_set_d(t, row, c_dr, d);
        ps_table_set_d(t, row, c_spt, (v + d) / f);
        if (b == c->max_batch) {
            mv[M_CHOSEN_N] = tr ? tr->n : 1;
            mv[M_CHOSEN_DEPTH] = tr ? tr->depth : 0;
            mv[M_PRED_TOK] = f;
            mv[M_STEP_S] = v + d;
            mv[M_PRED_SPT] = (v + d) / f;
        }
        sd_step_plan_free(&pl);
    }
    rc = ps_point_emit(p, "choice", t, e);
out:
    ps_table_free(t);
    sd_serve_result_free(&r);
    inputs_free(&in);
    return rc;
}

/* ------------------------------------------------------------------ derived tables */

static const char *const methods[] = {"incremental", "sequence", "specinfer", "optimized",
                                      "merge"};
#define NMETH 5

static int is_param_col(const char *name)
{
    static const char *const skip[] = {"point", "repeat", "seed", "run_time_s", "method", NULL};
    for (const char *const *s = skip; *s; s++)
        if (!strcmp(*s, name))
            return 0;
    for (const ps_metric_spec *mm = metrics; mm->name; mm++)
        if (!strcmp(mm->name, name))
            return 0;
    return 1;
}

static void group_key(const ps_table *t, size_t r, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t c = 0; c < t->ncols; c++) {
        if (!is_param_col(t->cols[c].name))
            continue;
        char cell[128];
        ps_table_format(t, r, (int)c, cell, sizeof cell);
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", l ? "/" : "", cell);
    }
}

/* mean of column col over the rows of group key with the given method */
static double mean_of(const ps_table *t, int col, const char *key, int mc, const char *method)
{
    double sum = 0;
    int n = 0;
    char k[512];
    for (size_t r = 0; r < t->nrows; r++) {
        if (strcmp(ps_table_get_s(t, r, mc), method))
            continue;
        group_key(t, r, k, sizeof k);
        if (strcmp(k, key))
            continue;
        double v = ps_table_get_d(t, r, col);
        if (isfinite(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / n : NAN;
}

static int derive(const ps_table *pts, ps_derived *out, size_t max, size_t *n, ps_err *e)
{
    (void)e;
    *n = 0;
    int mc = ps_table_col(pts, "method"), lc = ps_table_col(pts, "latency_per_token_s");
    int nc = ps_table_col(pts, "tree_nodes_at_batch"), tc = ps_table_col(pts, "tokens_per_step");
    if (mc < 0 || lc < 0 || max < 1)
        return 0;
    ps_table *t = ps_table_new();
    int ncfg = 0;
    for (size_t c = 0; c < pts->ncols; c++)
        if (is_param_col(pts->cols[c].name)) {
            ps_table_add_col(t, pts->cols[c].name, pts->cols[c].type, pts->cols[c].units);
            ncfg++;
        }
    int lat[NMETH], tps[NMETH];
    for (int i = 0; i < NMETH; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_latency_per_token_s", methods[i]);
        lat[i] = ps_table_add_col(t, nm, PS_COL_DOUBLE, "s");
        snprintf(nm, sizeof nm, "%s_tokens_per_step", methods[i]);
        tps[i] = ps_table_add_col(t, nm, PS_COL_DOUBLE, "");
    }
    int c_si = ps_table_add_col(t, "specinfer_vs_incremental", PS_COL_DOUBLE, "");
    int c_oi = ps_table_add_col(t, "optimized_vs_incremental", PS_COL_DOUBLE, "");
    int c_qi = ps_table_add_col(t, "sequence_vs_incremental", PS_COL_DOUBLE, "");
    int c_ss = ps_table_add_col(t, "specinfer_vs_sequence", PS_COL_DOUBLE, "");
    int c_os = ps_table_add_col(t, "optimized_vs_sequence", PS_COL_DOUBLE, "");
    int c_mi = ps_table_add_col(t, "merge_vs_incremental", PS_COL_DOUBLE, "");
    int c_ms = ps_table_add_col(t, "merge_vs_sequence", PS_COL_DOUBLE, "");
    int c_on = ps_table_add_col(t, "optimized_tree_nodes", PS_COL_DOUBLE, "");
    char seen[512][512];
    int nseen = 0;
    for (size_t r = 0; r < pts->nrows; r++) {
        char k[512];
        group_key(pts, r, k, sizeof k);
        int dup = 0;
        for (int i = 0; i < nseen; i++)
            dup |= !strcmp(seen[i], k);
        if (dup || nseen == 512)
            continue;
        snprintf(seen[nseen++], sizeof seen[0], "%s", k);
        size_t row = ps_table_add_row(t);
        int oc = 0;
        for (size_t c = 0; c < pts->ncols; c++) {
            if (!is_param_col(pts->cols[c].name))
                continue;
            if (pts->cols[c].type == PS_COL_STR)
                ps_table_set_s(t, row, oc, ps_table_get_s(pts, r, (int)c));
            else if (pts->cols[c].type == PS_COL_INT)
                ps_table_set_i(t, row, oc, ps_table_get_i(pts, r, (int)c));
            else
                ps_table_set_d(t, row, oc, ps_table_get_d(pts, r, (int)c));
            oc++;
        }
        double L[NMETH];
        for (int i = 0; i < NMETH; i++) {
            L[i] = mean_of(pts, lc, k, mc, methods[i]);
            ps_table_set_d(t, row, lat[i], L[i]);
            ps_table_set_d(t, row, tps[i], tc >= 0 ? mean_of(pts, tc, k, mc, methods[i]) : NAN);
        }
        ps_table_set_d(t, row, c_si, L[0] / L[2]);
        ps_table_set_d(t, row, c_oi, L[0] / L[3]);
        ps_table_set_d(t, row, c_qi, L[0] / L[1]);
        ps_table_set_d(t, row, c_ss, L[1] / L[2]);
        ps_table_set_d(t, row, c_os, L[1] / L[3]);
        ps_table_set_d(t, row, c_mi, L[0] / L[4]);
        ps_table_set_d(t, row, c_ms, L[1] / L[4]);
        ps_table_set_d(t, row, c_on, nc >= 0 ? mean_of(pts, nc, k, mc, "optimized") : NAN);
    }
    (void)ncfg;
    snprintf(out[0].name, sizeof out[0].name, "speedups");
    out[0].t = t;
    *n = 1;
    return 0;
}

static int summarize(const ps_table *pts, ps_table *out, ps_err *e)
{
    ps_derived d[1];
    size_t nd = 0;
    int rc = derive(pts, d, 1, &nd, e);
    if (rc || !nd)
        return rc;
    ps_table *t = d[0].t;
    int sc = ps_table_col(t, "setup"), bc = ps_table_col(t, "batch");
    static const char *const cols[] = {"specinfer_vs_incremental", "optimized_vs_incremental",
                                       "sequence_vs_incremental", "specinfer_vs_sequence",
                                       "optimized_vs_sequence", "merge_vs_incremental",
                                       "merge_vs_sequence"};
    /* per setup: min / max over the other parameters (batch), and at the
     * smallest and largest batch */
    char seen[64][128];
    int nseen = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        const char *s = sc >= 0 ? ps_table_get_s(t, r, sc) : "all";
        int dup = 0;
        for (int i = 0; i < nseen; i++)
            dup |= !strcmp(seen[i], s);
        if (dup || nseen == 64)
            continue;
        snprintf(seen[nseen++], sizeof seen[0], "%s", s);
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            int cc = ps_table_col(t, cols[ci]);
            double lo = INFINITY, hi = -INFINITY, at_lo = NAN, at_hi = NAN;
            long long bmin = 1LL << 40, bmax = -1;
            for (size_t q = 0; q < t->nrows; q++) {
                if (sc >= 0 && strcmp(ps_table_get_s(t, q, sc), s))
                    continue;
                double v = ps_table_get_d(t, q, cc);
                if (!isfinite(v))
                    continue;
                lo = fmin(lo, v);
                hi = fmax(hi, v);
                long long b = bc >= 0 ? ps_table_get_i(t, q, bc) : 1;
                if (b < bmin) {
                    bmin = b;
                    at_lo = v;
                }
                if (b > bmax) {
                    bmax = b;
                    at_hi = v;
                }
            }
            if (!isfinite(lo))
                continue;
            char nm[256];
            snprintf(nm, sizeof nm, "%s min", cols[ci]);
            ps_summary_add(out, nm, s, lo, "x");
            snprintf(nm, sizeof nm, "%s max", cols[ci]);
            ps_summary_add(out, nm, s, hi, "x");
            if (bc < 0)
                continue;
            snprintf(nm, sizeof nm, "%s at batch %lld", cols[ci], bmin);
            ps_summary_add(out, nm, s, at_lo, "x");
            if (bmax != bmin) {
                snprintf(nm, sizeof nm, "%s at batch %lld", cols[ci], bmax);
                ps_summary_add(out, nm, s, at_hi, "x");
            }
        }
    }
    ps_table_free(t);
    return 0;
}

const ps_study ps_study_specdec_serve = {
    .name = "specdec_serve",
    .summary = "speculative decoding served with continuous batching: incremental vs sequence "
               "vs SpecInfer tree vs hardware-aware optimized tree (per-token latency)",
    .params = params,
    .metrics = metrics,
    .check_point = check_point,
    .run_point = run_point,
    .summarize = summarize,
    .derive = derive,
};
