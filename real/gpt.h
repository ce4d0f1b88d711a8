/* A tiny GPT-2-style decoder on the runtime (real/rt.h), in the style of
 * llm.c's train_gpt2.c: explicit forward and backward over activations kept
 * in a struct, no autograd.
 *
 *   x0 = wte[token] + wpe[pos]
 *   for each of L blocks (pre-LN):
 *     x = x + proj(attention(split_heads(qkv(ln1(x))), mask))
 *     x = x + fc2(gelu(fc1(ln2(x))))
 *   logits = lnf(x) wte^T        (tied head; untied: its own [V, C] weight)
 *
 * The mask is causal, or any boolean mask per sequence (token trees), with
 * explicit positions.  Bytes are tokens (vocab 256, real/data_text.h).
 *
 * Inference uses a KV cache (gpt_kv): gpt_decode appends n new tokens whose
 * parents are given (a chain, or a token tree for speculative decoding),
 * returns their next-token logits, and the caller then keeps the accepted
 * path (gpt_kv_keep) or drops them (gpt_kv_truncate).  docs/real-gpt.md. */
#ifndef PS_REAL_GPT_H
#define PS_REAL_GPT_H

#include <stdint.h>

#include "common/err.h"
#include "real/data_text.h"
#include "real/rt.h"

typedef struct gpt_config {
    int vocab;  /* 256: bytes */
    int ctx;    /* longest sequence: rows of the position table */
    int dim;    /* model width C, a multiple of heads */
    int heads;
    int layers;
    int tied;   /* 1: the LM head is wte (GPT-2); 0: its own [vocab, dim] */
} gpt_config;

/* Tests: ctx 64, dim 64, 4 heads, 2 layers, tied (about 0.12 M params). */
gpt_config gpt_config_tiny(void);
/* Bench and `make models`: ctx 128, dim 128, 4 heads, 4 layers, tied. */
gpt_config gpt_config_small(void);
/* PS_EINPUT naming the field when a config is unusable. */
int gpt_config_check(const gpt_config *c, ps_err *e);

/* Parameters in params[] (names as saved by rt_save):
 *   0 wte [V, C], 1 wpe [ctx, C], then per layer l, 12 each from
 *   2 + 12 l: h.l.ln1.g, ln1.b [C], attn.qkv.w [3C, C], attn.qkv.b [3C],
 *   attn.proj.w [C, C], attn.proj.b [C], ln2.g, ln2.b [C], mlp.fc.w [4C, C],
 *   mlp.fc.b [4C], mlp.proj.w [C, 4C], mlp.proj.b [C];
 *   then lnf.g, lnf.b [C] and, untied, lm_head.w [V, C]. */
enum {
    GPT_WTE = 0,
    GPT_WPE = 1,
    GPT_LAYER0 = 2,
    GPT_PER_LAYER = 12,
    GPT_LN1_G = 0, GPT_LN1_B, GPT_QKV_W, GPT_QKV_B, GPT_PROJ_W, GPT_PROJ_B,
    GPT_LN2_G, GPT_LN2_B, GPT_FC_W, GPT_FC_B, GPT_FC2_W, GPT_FC2_B,
};

/* The inputs of one forward: B sequences of T tokens (host arrays). */
typedef struct gpt_batch {
    int64_t B, T;            /* T <= ctx */
    const int32_t *tokens;   /* [B * T] in [0, vocab) */
    const int32_t *targets;  /* [B * T] next tokens (-1: no loss), or NULL: no loss */
    const int32_t *pos;      /* [B * T] positions in [0, ctx), or NULL: 0 .. T-1 */
    const uint8_t *mask;     /* [B, T, T]: mask[b][i][j] != 0 says token i of sequence b
                                sees token j; NULL: causal */
} gpt_batch;

/* Activations of the last forward (sized for B, T; reallocated when they
 * change).  res[0] is the embedding sum, res[2l+1] the stream after block
 * l's attention, res[2l+2] after its MLP.  Read only logits and probs. */
typedef struct gpt_layer_acts {
    rt_tensor ln1, ln1_mean, ln1_rstd; /* [N, C], [N], [N] */
    rt_tensor qh, kh, vh;              /* [B, H, T, hd] */
    rt_tensor att;                     /* [B, H, T, T] */
    rt_tensor y;                       /* [N, C]: merged heads, input of attn.proj */
    rt_tensor ln2, ln2_mean, ln2_rstd;
    rt_tensor fch, fchg;               /* [N, 4C]: before and after GELU */
} gpt_layer_acts;

typedef struct gpt_acts {
    int64_t B, T;
    int has_mask, has_targets;
    rt_tensor tokens, pos, targets, mask; /* I32 [B, T]; U8 [B, T, T] */
    rt_tensor *res;                       /* 2L + 1 of [N, C] */
    gpt_layer_acts *layer;
    rt_tensor lnf, lnf_mean, lnf_rstd;
    rt_tensor logits, probs;              /* [N, V] */
    /* scratch shared by the layers: forward and backward */
    rt_tensor qkv, q, k, v, yh, tmp;      /* [N, 3C]; [N, C] x3; [B, H, T, hd]; [N, C] */
    rt_tensor dres, dtmp, dln, dy, dqkv, dq, dk, dv, dyh, dqh, dkh, dvh, dfch, dfchg, dlogits;
} gpt_acts;

typedef struct gpt {
    gpt_config cfg;
    rt_dev *dev;
    rt_dtype dtype;   /* F32, or F64 for gradient checks (CPU) */
    rt_param *params;
    int nparams;
    gpt_acts a;
    double loss;      /* of the last forward with targets */
} gpt;

/* Parameters on d in dtype dt, initialised from seed as GPT-2 does:
 * weights N(0, 0.02), the residual projections (attn.proj.w, mlp.proj.w)
 * N(0, 0.02 / sqrt(2 L)), biases 0, layer norms gamma 1 beta 0. */
int gpt_init(gpt *m, const gpt_config *c, rt_dev *d, rt_dtype dt, uint64_t seed, ps_err *e);
void gpt_free(gpt *m);
/* The parameter of layer l (0-based), slot GPT_LN1_G ..; lnf / lm head: */
rt_param *gpt_layer_param(gpt *m, int l, int slot);
rt_param *gpt_lnf_g(gpt *m);
rt_param *gpt_lnf_b(gpt *m);
rt_param *gpt_lm_head(gpt *m); /* wte when tied */
int64_t gpt_num_params(const gpt *m);

/* Forward over a batch; with targets, *loss (may be NULL) gets the mean
 * cross-entropy over the counted targets (also m->loss).  Logits stay in
 * m->a.logits [B*T, V] (probs in m->a.probs when targets were given). */
int gpt_forward(gpt *m, const gpt_batch *in, double *loss, ps_err *e);
/* Backward of the last forward (which must have had targets): ACCUMULATES
 * the gradient of the mean loss into every params[i].g. */
int gpt_backward(gpt *m, ps_err *e);
/* Zero the gradients, forward, backward, one optimizer step. */
int gpt_train_step(gpt *m, const gpt_batch *in, rt_opt *opt, double *loss, ps_err *e);

/* FLOPs of one forward over B x T tokens: 2 per multiply-add of every GEMM
 * (qkv, attn.proj, fc, proj: 24 C^2 per token per layer; LM head 2 C V per
 * token; attention 4 T C per token per layer — full T x T score blocks, as
 * the CPU path computes them).  A training step (forward + backward) is 3x
 * the forward (backward: two GEMMs per forward GEMM); elementwise work
 * (layer norm, GELU, softmax) is not counted. */
double gpt_fwd_flops(const gpt_config *c, int64_t B, int64_t T);
double gpt_step_flops(const gpt_config *c, int64_t B, int64_t T);

/* A training-step benchmark on random tokens: `warmup` untimed steps, then
 * `steps` timed ones (AdamW, lr 1e-4).  For `plansim real bench`. */
typedef struct gpt_bench_result {
    double step_s_mean, step_s_best; /* seconds per training step */
    double flops_per_step;           /* gpt_step_flops */
    double gflops_best;              /* flops_per_step / step_s_best / 1e9 */
    double loss;                     /* of the last step */
    int64_t params;
} gpt_bench_result;
int gpt_bench_step(const gpt_config *c, rt_dev *d, int64_t B, int64_t T, int warmup, int steps,
                   uint64_t seed, gpt_bench_result *r, ps_err *e);

/* Training on the byte corpus: AdamW (beta 0.9, 0.95, wd 0.0), linear
 * warm-up over the first 10% of steps then cosine decay to lr / 10;
 * evaluation on `eval_batches` fixed validation batches (seed + 1) at the
 * end.  Progress line through common/util.h.  Deterministic for a seed on
 * the CPU. */
typedef struct gpt_train_opts {
    int64_t steps, B, T;
    double lr;
    int eval_batches;
    uint64_t seed;
} gpt_train_opts;
typedef struct gpt_train_result {
    double first_loss, last_loss; /* training loss of the first and last step */
    double val_loss;              /* mean over the eval batches */
    double seconds;               /* training time (without the evaluation) */
} gpt_train_result;
int gpt_train_text(gpt *m, const text_corpus *c, const gpt_train_opts *o, gpt_train_result *r,
                   ps_err *e);
/* Mean validation loss over n batches drawn from rng seed `seed`. */
int gpt_eval_text(gpt *m, const text_corpus *c, int64_t B, int64_t T, int n, uint64_t seed,
                  double *loss, ps_err *e);

/* ------------------------------------------------------------------ KV-cache inference */

/* One sequence (batch 1).  cache[l] holds layer l's keys and values for
 * positions [0, len); cache row r is position r of the sequence (trees are
 * compacted onto their accepted path, so rows stay positions). */
typedef struct gpt_kv {
    int layers;
    int64_t cap, max_new;
    rt_kvcache *cache;
    /* scratch for up to max_new tokens (views of a prefix are used) */
    rt_tensor ids, pos, mask, x, ln, mean, rstd, qkv, q, k, v, qh, kh, vh, yh, y, tmp, fch,
        fchg, logits;
    double *host; /* max_new * vocab logits in the model's dtype (converted) */
} gpt_kv;

/* cap: longest sequence kept (<= ctx); max_new: most tokens per gpt_decode
 * call (a prompt prefill included). */
int gpt_kv_init(gpt_kv *kv, const gpt *m, int64_t cap, int64_t max_new, ps_err *e);
void gpt_kv_free(gpt_kv *kv);
int64_t gpt_kv_len(const gpt_kv *kv);

/* Run n new tokens after the cached prefix of len positions and append their
 * keys and values at rows [len, len + n).  parent NULL: a chain (token i
 * follows token i - 1, the first follows the prefix; causal).  Else a token
 * tree: parent[i] = -1 hangs token i off the prefix, parent[i] = p (0 <= p <
 * i) under new token p; token i sees the prefix, its ancestors and itself,
 * and sits at position len + depth(i).  logits (may be NULL): n x vocab
 * next-token logits (host, double).
 * On the CPU the decode is row-independent (real/gpt_exact_impl.h, no BLAS):
 * a token's logits and K/V rows are bitwise the same whether it is decoded
 * alone, in a chain (prefill) or inside a tree, so speculative and
 * incremental decoding agree exactly (docs/real-specgen.md).  On CUDA the
 * decode runs on cuBLAS: close to the CPU's, not bitwise row-independent. */
int gpt_decode(gpt *m, gpt_kv *kv, int64_t n, const int32_t *tokens, const int32_t *parent,
               double *logits, ps_err *e);
/* Tree decoding spread over several calls (a draft model growing its tree
 * level by level): rows [base, len) of the cache already hold nodes of a
 * forest hanging off the prefix [0, base), decoded by earlier calls.
 * parent[0 .. len - base + n) describes all of them in row order:
 * parent[j] = -1 (a root: under the prefix) or the index j' < j of its
 * parent; the last n entries are the n new tokens (rows len, len + 1, ...).
 * Token j sees the prefix, its ancestors and itself, and sits at position
 * base + depth(j).  gpt_decode with a parent array is this with base = len.
 * On the CPU the result is bitwise what decoding the token's root-to-node
 * path alone after the prefix gives (docs/real-specgen.md). */
int gpt_decode_forest(gpt *m, gpt_kv *kv, int64_t base, int64_t n, const int32_t *tokens,
                      const int32_t *parent, double *logits, ps_err *e);
/* The vector width (bytes) of the CPU decode's linear-layer kernels: 16
 * (SSE2) or 32 (AVX2, x86-64 CPUs that have it; the default there).
 * width 16 or 32 requests one (32 falls back to 16 without AVX2), 0 the
 * default, -1 only queries; returns the width now in use.  Process-wide:
 * set it before decoding — logits are bitwise reproducible for one width,
 * not across widths. */
int gpt_decode_simd(int width);
/* Drop everything after position len (a rejected speculation). */
int gpt_kv_truncate(gpt_kv *kv, int64_t len, ps_err *e);
/* Keep the accepted path of a tree decoded from position `from`: rows
 * (absolute, ascending, >= from; e.g. from + the accepted tree indices)
 * move to from, from + 1, ... and the length becomes from + n. */
int gpt_kv_keep(gpt_kv *kv, int64_t from, const int64_t *rows, int64_t n, ps_err *e);

#endif
