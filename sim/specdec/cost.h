/* sim/specdec: step costs of speculative decoding (issue 6): how long the
 * LLM takes to verify a batch of token trees, how long the small speculative
 * model (SSM) takes to draft them, on a cluster of GPUs (tensor parallel
 * inside a node, pipeline across nodes) or with the LLM's weights offloaded
 * to CPU memory (FlexGen-like: the part that does not fit is streamed over
 * PCIe every step).
 *
 * Analytic verify step (B requests, N tree tokens each, context c, T = B N):
 *
 *   t = sum over pipeline stages of
 *         max(W_s / (tp BW_eff),  2 P_s T / (tp FLOPS_eff))      weights vs GEMMs
 *       + 4 L_s h c T / (tp FLOPS_eff)                          attention FLOPs
 *       + KV_s(B c) / (tp BW_eff)                                 KV-cache read
 *       + L_s (2 allreduce(T h bytes) over the intra-node link)   TP comm (tp > 1)
 *       + L_s k_layer launch                                      kernel launches
 *   + (pp - 1) (alpha_inter + T h bytes / beta_inter)             stage hand-off
 *   + offload: max(0, bytes streamed / host BW - GPU time)  (overlapped)
 *
 * with W_s, P_s, L_s the stage's weight bytes, parameters and layers (the
 * model split evenly over pp stages, each stage over tp GPUs), h the hidden
 * size, KV bytes = 2 L h c bytes_per_elem per request (no GQA in these
 * models), allreduce = ring: 2 (tp-1) alpha + 2 (tp-1)/tp bytes / beta.
 * The step is memory-bound until the compute knee
 *     T* = FLOPS_eff * bytes_per_param / (2 BW_eff)   tokens (per GPU rate),
 * i.e. FP16 on the datasheets: H100 SXM 989.5e12/3.35e12 = 295, A100-80G
 * 312e12/2.039e12 = 153 (A100-40G 201), A10 125e12/600e9 = 208 (times
 * flops_eff / mem_eff when those are not 1).  sd_cost_knee returns it.
 *
 * Draft step of the SSM (one forward pass per tree level): the same formula
 * with the SSM's shapes on one GPU of the first node (tp = 1; tiny models are
 * latency-bound: weights / BW + launches).  Merge-based trees with k SSMs on
 * k separate GPUs run in parallel, so the draft time does not grow with k.
 *
 * Measured mode (sd_cost_from_table): verify(B, N, c) = piecewise-linear
 * interpolation of the table at T = B N (linear extrapolation beyond the
 * ends from the nearest segment, never below 0); draft = draft_s_per_token x
 * the tokens drafted.  No context dependence.
 *
 * JSON (analytic):
 *   {"llm": "llama-7b", "ssm": "llama-68m", "cluster": "a10x1", "tp": 1, "pp": 1,
 *    "offload": false, "flops_eff": 1.0, "mem_eff": 1.0, "launch_s": -1,
 *    "kernels_per_layer": 12, "step_overhead_s": 0, "gpu_weight_bytes": -1,
 *    "n_ssm": 1}
 * cluster presets: a10x1, a10x4 (one AWS g5.12xlarge: 4 A10 on PCIe4),
 * a10x8 (two g5.12xlarge, 100 Gbps between nodes, as in the SpecInfer paper),
 * h100x1, h100x4, h100x8 (one HGX H100 node, NVLink4), h100x16 (two nodes,
 * 400 Gb/s NDR per GPU pair).  tp x pp must equal the cluster's GPU count,
 * tp <= GPUs per node; tp/pp left out: tp = GPUs per node (capped by the
 * GPU count), pp = nodes.  Models: llama-7b, llama-65b, opt-13b, opt-30b,
 * llama-68m, opt-125m (FP16; shapes in cost.c with sources).
 * Measured JSON: {"table": {"n_tokens": [...], "verify_s": [...]},
 *                 "draft_s_per_token": x}.
 * Errors name WHERE.field. */
#ifndef PS_SPECDEC_COST_H
#define PS_SPECDEC_COST_H

#include <jansson.h>

#include "common/err.h"
#include "sim/specdec/tree.h"

/* A transformer's shape (decoder-only, FP16). */
typedef struct sd_model_desc {
    const char *name;   /* "llama-7b" */
    const char *family; /* "llama" (SwiGLU, untied embeddings) | "opt" (GELU MLP, tied) */
    int layers, hidden, heads, ffn, vocab, max_pos;
    double params;      /* computed from the shape (sd_model_params) */
    double params_pub;  /* the published count, for the check in tests */
    const char *source;
} sd_model_desc;

/* Built-in model by name; NULL with a PS_EINPUT error listing the names. */
const sd_model_desc *sd_model_find(const char *name, ps_err *e);
int sd_model_count(void);
const sd_model_desc *sd_model_at(int i);
/* Parameters from the shape: llama: L (4 h^2 + 3 h f) + 2 V h (+ norms);
 * opt: L (4 h^2 + 2 h f + biases) + V h + (max_pos + 2) h (+ norms). */
double sd_model_params(const sd_model_desc *m);

typedef struct sd_cost sd_cost; /* opaque */

/* Analytic cost from explicit options (strings are copied / looked up). */
typedef struct sd_cost_cfg {
    const char *llm;        /* model name (required) */
    const char *ssm;        /* drafter name; NULL: "llama-68m" for llama, "opt-125m" for opt */
    const char *cluster;    /* preset name (required) */
    int tp, pp;             /* <= 0: defaults above */
    int offload;            /* 1: weights beyond gpu_weight_bytes stream from CPU */
    double gpu_weight_bytes;/* offload: LLM weight bytes resident on the GPU; < 0: GPU memory
                             * minus a 4 GiB reserve for KV cache and activations */
    double flops_eff;       /* fraction of the datasheet FP16 rate (default 1) */
    double mem_eff;         /* fraction of the datasheet bandwidth (default 1) */
    double launch_s;        /* per kernel; < 0: the catalog's device launch_s */
    int kernels_per_layer;  /* <= 0: 12 */
    double step_overhead_s; /* fixed per forward pass (runtime/scheduling), default 0 */
    int n_ssm;              /* informational (reported); the serving simulator's merge_ssms
                             * sets how many SSMs draft a merge-based tree */
} sd_cost_cfg;

/* Fills defaults: everything 0/NULL except flops_eff = mem_eff = 1, launch_s = -1,
 * gpu_weight_bytes = -1, n_ssm = 1. */
void sd_cost_cfg_default(sd_cost_cfg *cfg);
sd_cost *sd_cost_analytic(const sd_cost_cfg *cfg, ps_err *e);
sd_cost *sd_cost_from_json(const json_t *j, const char *where, ps_err *e);
/* Measured: verify_s[i] at n_tokens[i] (strictly increasing, k >= 1; k == 1: constant). */
sd_cost *sd_cost_from_table(const double *n_tokens, const double *verify_s, int k,
                            double draft_s_per_token, ps_err *e);
void sd_cost_free(sd_cost *c);
json_t *sd_cost_to_json(const sd_cost *c); /* description (new reference) */
int sd_cost_is_measured(const sd_cost *c);

/* LLM step verifying `tokens_per_req` tokens for each of `batch` requests at
 * context ctx (tokens already in the KV cache).  Incremental decoding is
 * tokens_per_req = 1. */
double sd_cost_verify(const sd_cost *c, int batch, int tokens_per_req, int ctx);
/* SSM drafting: `levels` forward passes, each over tokens_per_req_per_level
 * tokens of each of `batch` requests. */
double sd_cost_draft(const sd_cost *c, int batch, int tokens_per_req_per_level, int levels,
                     int ctx);
/* Drafting tree t: one pass per level d = 0 .. levels-1 over the nodes at
 * depth d that have children (levels <= 0 or > t->depth: t->depth). */
double sd_cost_draft_tree(const sd_cost *c, int batch, const sd_tree *t, int levels, int ctx);
/* Prefill of prompts: batch requests of prompt_len tokens each. */
double sd_cost_prefill(const sd_cost *c, int batch, int prompt_len);

/* Compute knee of the LLM's weight GEMMs in tokens per step (B N): where
 * 2 P T / FLOPS_eff = W / BW_eff.  Measured mode: 0. */
double sd_cost_knee(const sd_cost *c);

/* Breakdown of one verify step (analytic mode; measured: total only). */
typedef struct sd_cost_parts {
    double weights_s;  /* sum over stages of W_s / (tp BW) */
    double gemm_s;     /* sum over stages of 2 P_s T / (tp FLOPS) */
    double attn_s;     /* attention FLOPs */
    double kv_s;       /* KV-cache read */
    double comm_s;     /* TP allreduces + PP hand-offs */
    double launch_s;   /* launches + step overhead */
    double offload_s;  /* PCIe streaming not hidden behind the GPU work */
    double total_s;
} sd_cost_parts;
int sd_cost_verify_parts(const sd_cost *c, int batch, int tokens_per_req, int ctx,
                         sd_cost_parts *out);

/* Accessors for reports. */
double sd_cost_llm_weight_bytes(const sd_cost *c); /* 0 in measured mode */
int sd_cost_gpus(const sd_cost *c);                /* tp * pp (1 measured) */

#endif
