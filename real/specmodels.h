/* The tiny models of the speculative-decoding study (issue 6): one "LLM" and
 * up to SM_MAX_SSM small speculative models (SSMs), byte-level GPTs
 * (real/gpt.h) trained on the fortunes corpus (real/data_text.h).
 *
 * Training (sm_train), all on the CPU in f32, deterministic for a seed:
 *  1. the LLM: gpt_train_text on the corpus (next-byte cross-entropy);
 *  2. a distillation pool: `pool` fixed training windows of T bytes; the
 *     LLM's greedy prediction (argmax, ties to the lower id) at every
 *     position, teacher-forced on the corpus prefix, is its target;
 *  3. collective boost-tuning (SpecInfer sec. 1): SSM_1 is pre-trained on the
 *     corpus (`ssm_pre_steps`, language modelling) and then trained on the
 *     pool's LLM targets at every position (`ssm_steps`).  For SSM_k, k >= 2,
 *     every position where one of SSM_1..SSM_{k-1} already predicts the LLM's
 *     token (its argmax == the LLM's) is masked (target -1) and SSM_k, a copy
 *     of SSM_{k-1}'s weights, is fine-tuned on the rest (`ssm_steps`).  With
 *     boost off every SSM is trained like SSM_1 (pre-training + distillation
 *     on all positions) from its own seed: the ablation.
 *
 * Caching (sm_load_or_train): the weights live under DIR as
 * specmodels-HASH.llm.bin and specmodels-HASH.ssmK.bin (rt_save: atomic,
 * checksummed), HASH = sm_config_hash(cfg) in 16 hex digits; the meta text of
 * the LLM file holds the training report as JSON.  A missing cache trains and
 * saves; a corrupt or mismatching cache prints a warning to stderr, retrains
 * and overwrites — it is never used.
 *
 * Table 1 (sm_topk): on teacher-forced validation windows, at every
 * position, P(the LLM's token is in the SSM's top-k), k = 1..kmax:
 *  - greedy: the LLM's token is its argmax;
 *  - stochastic: the LLM's token is a sample from softmax(LLM logits) at
 *    T = 1; the probability is computed exactly (Rao-Blackwellised): the
 *    LLM's probability mass on the SSM's top-k tokens, averaged over
 *    positions (the expectation of the sampled indicator, without the
 *    sampling noise).
 * Rankings are by descending logit, ties to the lower token id (as
 * real/specgen.h's sg_rank_trace).  docs/real-specmodels.md. */
#ifndef PS_REAL_SPECMODELS_H
#define PS_REAL_SPECMODELS_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "real/data_text.h"
#include "real/gpt.h"

#define SM_MAX_SSM 4
#define SM_KMAX 8 /* Table 1 goes up to k = SM_KMAX */

typedef struct sm_config {
    gpt_config llm, ssm; /* every SSM shares the ssm config */
    int nssm;            /* 1 .. SM_MAX_SSM */
    int64_t llm_steps;     /* LLM training steps on the corpus */
    int64_t ssm_pre_steps; /* SSM_1 (every SSM when boost is off): LM pre-training */
    int64_t ssm_steps;     /* each SSM: distillation steps on the pool */
    int64_t B, T;          /* batch windows and window length (T <= both ctx) */
    int64_t pool;          /* distillation windows (of T bytes) */
    double llm_lr, ssm_lr;
    int eval_batches;      /* validation batches (B x T) for losses and agreement */
    uint64_t seed;
    int boost;             /* 1: collective boost-tuning; 0: independent SSMs */
} sm_config;

/* The full config (LLM dim 192, 4 layers, ctx 128; SSMs dim 64, 1 layer;
 * about 10 minutes on one core) or the quick one (quick != 0: a few tens of
 * seconds), both with seed `seed`. */
sm_config sm_config_default(int quick, uint64_t seed);
/* Tests: tiny sizes that train in about a second. */
sm_config sm_config_test(uint64_t seed);
/* PS_EINPUT naming the field when unusable. */
int sm_config_check(const sm_config *c, ps_err *e);
/* FNV-1a over every field that changes the weights (and a format version). */
uint64_t sm_config_hash(const sm_config *c);
json_t *sm_config_to_json(const sm_config *c);

/* What training measured (validation numbers on eval_batches windows of the
 * validation split, drawn from seed + 7). */
typedef struct sm_report {
    int64_t llm_params, ssm_params;
    double llm_flops_per_token, ssm_flops_per_token; /* gpt_fwd_flops(1 x T) / T */
    double llm_val_loss;                  /* next-byte cross-entropy (nats) */
    double ssm_val_loss[SM_MAX_SSM];      /* next-byte cross-entropy (nats) */
    double ssm1_pre_val_loss;             /* SSM_1 after LM pre-training (NaN: none) */
    double ssm_agree[SM_MAX_SSM];         /* top-1 agreement with the LLM's argmax */
    double union_agree[SM_MAX_SSM];       /* LLM's argmax in the top-1 of any of SSM_1..k */
    double boost_frac[SM_MAX_SSM];        /* fraction of pool positions SSM_k trained on */
    double llm_train_s, ssm_train_s[SM_MAX_SSM], pool_s, total_s;
} sm_report;

typedef struct sm_set {
    sm_config cfg;
    gpt llm;
    gpt ssm[SM_MAX_SSM];
    int nssm;
    sm_report rep;
    int from_cache; /* 1: loaded from the cache, 0: trained */
} sm_set;

/* Train everything (corpus c; progress lines on stderr).  out is
 * initialised here; sm_free it. */
int sm_train(const sm_config *cfg, const text_corpus *c, sm_set *out, ps_err *e);
/* Save into dir (created when missing) under the config's hash. */
int sm_save(const char *dir, const sm_set *s, ps_err *e);
/* Load the cached weights of cfg from dir, or train (c may be NULL: the
 * corpus is then loaded from text_dir()) and save.  A corrupt cache is
 * retrained with a warning. */
int sm_load_or_train(const char *dir, const sm_config *cfg, const text_corpus *c, sm_set *out,
                     ps_err *e);
void sm_free(sm_set *s);
/* Paths of the cache files: which = -1 the LLM, 0.. the SSMs. */
void sm_cache_path(const char *dir, const sm_config *cfg, int which, char *buf, size_t n);

/* Argmax (ties to the lower id) of every row of the last forward's logits,
 * after gpt_forward(m, in): out[B*T]. */
int sm_argmax(gpt *m, const gpt_batch *in, int32_t *out, ps_err *e);
/* Boost targets: out[i] = llm_pred[i], or -1 where any of the nprev earlier
 * SSMs' predictions prev[j][i] equals it. */
void sm_boost_mask(const int32_t *llm_pred, const int32_t *const *prev, int nprev, int64_t n,
                   int32_t *out);

/* Table 1 on given windows: tokens [B*T] (teacher-forced, causal, from
 * position 0); greedy[k-1], stoch[k-1] for k = 1..kmax (kmax <= SM_KMAX);
 * either output may be NULL. */
int sm_topk_windows(gpt *llm, gpt *ssm, const int32_t *tokens, int64_t B, int64_t T, int kmax,
                    double *greedy, double *stoch, ps_err *e);
/* The same over n batches of B x T validation windows drawn from seed. */
int sm_topk(gpt *llm, gpt *ssm, const text_corpus *c, int64_t B, int64_t T, int n,
            uint64_t seed, int kmax, double *greedy, double *stoch, ps_err *e);
/* Top-1 agreement of each SSM with the LLM's argmax and of the union of
 * SSM_1..k (per k), over n validation batches. */
int sm_agreement(gpt *llm, gpt *const *ssms, int nssm, const text_corpus *c, int64_t B,
                 int64_t T, int n, uint64_t seed, double *agree, double *union_agree,
                 ps_err *e);

/* n prompts of plen bytes from the validation split (each starts after a
 * newline when one is near, so prompts begin at a line), drawn from seed:
 * out[n * plen]. */
int sm_prompts(const text_corpus *c, int n, int plen, uint64_t seed, int32_t *out, ps_err *e);

/* `plansim specdec train [--quick] [--seed S] [--out DIR]`: train the
 * default (or quick) config from seed, save under dir, and return a JSON
 * report (config, hash, files, params, FLOPs per token and their ratio, val
 * losses, agreement, Table 1, seconds). */
json_t *sm_report_to_json(const sm_set *s);
int sm_cli_train(const char *dir, int quick, uint64_t seed, json_t **report, ps_err *e);

#endif
