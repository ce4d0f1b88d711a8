/* Speculative generation (SpecInfer) with the real tiny models of real/gpt.h.
 *
 * An LLM (gpt) and one or more small speculative models (SSMs, gpt with the
 * same vocabulary) generate together: per step the SSM(s) draft a token tree
 * (sim/specdec/tree.h) level by level on their own KV caches, the LLM decodes
 * the whole tree in one gpt_decode pass (tree parents, topology-aware mask),
 * a verifier (sim/specdec/verify.h) picks the accepted path plus a bonus
 * token, and every cache keeps exactly the accepted path.
 *
 * Exactness: on the CPU gpt_decode is row-independent (docs/real-specgen.md):
 * a token's logits are bitwise the same whether it is decoded alone or inside
 * a tree, so greedy speculative generation reproduces incremental greedy
 * generation token for token, and the stochastic verifiers sample exactly
 * from the LLM's distribution (up to the verifiers' own exactness). */
#ifndef PS_REAL_SPECGEN_H
#define PS_REAL_SPECGEN_H

#include <stdint.h>

#include "common/err.h"
#include "real/gpt.h"

typedef enum { SG_INCREMENTAL = 0, SG_SEQUENCE = 1, SG_TREE = 2, SG_MERGE = 3 } sg_method;
typedef enum { SG_GREEDY = 0, SG_MSS = 1, SG_SWOR = 2, SG_NAIVE = 3 } sg_verify;

typedef struct sg_opts {
    sg_method method;
    sg_verify verify;
    int expansion[16];  /* SG_TREE / SG_MERGE: per-SSM expansion <k1..kd>; SG_SEQUENCE: d ones */
    int depth;          /* d */
    int nssm;           /* SSMs used (SG_MERGE: all of them, each its own expansion tree,
                           merged by prefix union; else the first) */
    double temperature; /* stochastic verifiers: p = softmax(logits / T) for LLM and SSMs */
    int max_new;        /* tokens to generate after the prompt */
    uint64_t seed;
} sg_opts;

typedef struct sg_stats {
    long steps;          /* LLM verification passes (incremental: one per token) */
    long tokens;         /* generated tokens */
    long tree_tokens;    /* tokens verified in all LLM passes */
    double draft_s, verify_s, total_s; /* wall time: SSM drafting, LLM passes, all */
    double tokens_per_step;            /* tokens / steps */
} sg_stats;

/* Generate opts->max_new tokens after prompt[0..plen) into out[0..max_new) (stops early only
 * at the model's ctx limit; *nout gets the count).  llm and ssms share vocab; ctx limits are
 * checked with a clear error.  Allocates its KV caches per call.
 *
 * SG_INCREMENTAL: one LLM decode per token (greedy: argmax, ties to the lower id; stochastic
 * verifiers: a draw from softmax(logits / T)); no SSM needed (ssms may be NULL).
 * SG_SEQUENCE: a chain of `depth` tokens (the expansion is ignored).  SG_TREE: the first
 * SSM's expansion tree expansion[0..depth).  SG_MERGE: opts->nssm SSMs, each its own expansion
 * tree (the same expansion), merged by sd_tree_merge.
 * Drafting: SG_GREEDY / SG_NAIVE deterministic top-k (ties to the lower id); SG_MSS k iid
 * draws from the SSM's softmax(logits / T); SG_SWOR k draws without replacement.
 * Context limit: the smallest ctx of the models used (LLM and the SSMs in use); generation
 * stops when prompt + output reach it.  Near the limit a step's tree is cut to a smaller depth
 * so that its rows and positions fit (down to the root alone: a plain incremental step); then
 * tree_tokens is less than steps x tree size.  A step's accepted tokens beyond max_new are
 * dropped (the tree is not shrunk for max_new).
 * Greedy output equals SG_INCREMENTAL's token for token on the CPU (bitwise-exact decode);
 * stochastic verifiers draw from opts->seed's sd_rng stream (same seed, same output).
 * Wall times: draft_s = SSM decoding, drafting and cache upkeep; verify_s = the LLM's passes
 * (prefill included), verification and its cache keep. */
int sg_generate(gpt *llm, gpt *const *ssms, int nssm_avail, const sg_opts *o,
                const int32_t *prompt, int plen, int32_t *out, int *nout, sg_stats *st,
                ps_err *e);

/* Acceptance trace for the simulator: for the LLM's greedy continuation `seq` (len n after
 * prompt), the 1-based rank of seq[j] in the SSM's ranking at that context (descending
 * probability, ties by lower token id), 0 when beyond top `kmax`.  One SSM pass over
 * prompt+seq (causal, no tree) is enough. */
int sg_rank_trace(gpt *ssm, const int32_t *prompt, int plen, const int32_t *seq, int n, int kmax,
                  int32_t *ranks, ps_err *e);

/* Measured LLM pass time on this machine for verifying n tree tokens after a context of ctx
 * (median of reps), for the cost table the simulator takes. */
int sg_time_verify(gpt *m, int ctx, int n, int reps, double *seconds, ps_err *e);

#endif
