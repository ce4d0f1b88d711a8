/* The cost model: how long an op takes on a device, how long a transfer or
 * a collective takes over links, how much memory a training step holds, what
 * quantized ops and LLM decoding steps cost.  Every time it returns says
 * where it came from:
 *
 *   "db"        an exact profile-database hit (same kind, dtype, variant,
 *               dims): the measured median.
 *   "fit"       local regression over the measured grid of the same kind,
 *               dtype and variant: log time against log dims, weighted by
 *               nearness in log-shape space (costmodel/README.md, "Fit").
 *   "roofline"  launch + max(flops / (peak·eff_c), bytes / (bw·eff_m)),
 *               efficiencies fitted per kind from whatever was measured on
 *               the device, else defaults against catalog peaks.
 *
 * Data flows profile DB (profile/db.h) → cm_model (fits, built once) →
 * cm_op_time (cheap, thread-safe: the model is read-only after building). */
#ifndef PS_COSTMODEL_H
#define PS_COSTMODEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "costmodel/catalog.h"
#include "profile/db.h"
#include "profile/opdesc.h"

/* ------------------------------------------------------------------ ops */

typedef enum { CM_SRC_DB = 0, CM_SRC_FIT, CM_SRC_ROOFLINE } cm_source;
const char *cm_source_name(cm_source s); /* "db", "fit", "roofline" */

typedef enum { CM_PHASE_FWD = 0, CM_PHASE_BWD_INPUT, CM_PHASE_BWD_WEIGHT } cm_phase;
const char *cm_phase_name(cm_phase p); /* "fwd", "bwd_input", "bwd_weight" */
/* "fwd" | "bwd_input" | "bwd_weight" → phase; -1 if unknown. */
int cm_phase_from_name(const char *name);

typedef struct cm_pred {
    double time_s;
    double rel_uncertainty; /* relative spread: exact hits carry the
                               measurement's (p90-p10)/2/median, fits their
                               group's median leave-one-out error (or the
                               neighbourhood's residual spread if larger),
                               rooflines the median error of the fitted
                               roofline on that kind (at least 0.1), or 1.0
                               with default efficiencies */
    cm_source source;
    double flops, bytes; /* of the op actually timed (after phase mapping) */
    int npoints;         /* measurements behind a fit (0 otherwise) */
    char note[96];       /* e.g. "variant nn substituted", "bwd = 2.5 x fwd" */
} cm_pred;

typedef struct cm_model cm_model;

/* A model fitted on measured rows of one device.  dev gives the roofline
 * peaks for kinds and dtypes the rows do not cover (copied; may be NULL when
 * peaks hold the device's measured rates).  Rows are copied; peaks may be
 * NULL. */
cm_model *cm_model_from_rows(const cm_device *dev, const ps_db_row *rows, size_t nrows,
                             const ps_db_peak *peaks, size_t npeaks, ps_err *e);
/* A model fitted on every row of a profile database.  dev NULL: the
 * database's own device (a CPU database → the measured `cpu` from its
 * /device/peaks; a GPU database → the catalog entry whose name matches its
 * device_name, e.g. "NVIDIA H100 80GB HBM3" → h100-sxm, else its peaks). */
cm_model *cm_model_from_db(const ps_db *db, const cm_catalog *cat, const cm_device *dev,
                           ps_err *e);
/* The device a database was measured on: the catalog entry it matches
 * (CPU databases: `cpu`, if the catalog has one), with the database's own
 * measured peaks (same thread count as its rows) written over it. */
void cm_db_device(const ps_db *db, const cm_catalog *cat, cm_device *out);
/* Roofline only: no measurements, catalog peaks and default efficiencies. */
cm_model *cm_model_roofline(const cm_device *dev, ps_err *e);
void cm_model_free(cm_model *m);

const cm_device *cm_model_device(const cm_model *m);
/* Roofline efficiencies for a kind (fraction of peak FLOP/s and bandwidth);
 * set them explicitly (tests, what-if studies) or read the fitted ones. */
int cm_model_set_efficiency(cm_model *m, const char *kind, double eff_compute, double eff_mem,
                            ps_err *e);
int cm_model_efficiency(const cm_model *m, const char *kind, double *eff_compute,
                        double *eff_mem);
/* 0 disables exact hits (every measured op is then predicted by the fit
 * that excludes it, which is what validation must do); 1 is the default. */
void cm_model_set_exact_hits(cm_model *m, int on);

/* Forward time of op.  Errors (PS_EINPUT): an invalid op (unknown kind,
 * zero or negative dim, ...), named by ps_op_validate. */
int cm_op_time(const cm_model *m, const ps_op *op, cm_pred *out, ps_err *e);
/* Time of one training phase of op:
 *   gemm / batched_gemm  bwd_input = gemm(m, k, n), bwd_weight = gemm(k, n, m)
 *                        (forward GEMMs of the transposed shapes)
 *   conv2d               the measured bwd_input / bwd_weight variants (same
 *                        dims); roofline with the forward's FLOPs otherwise
 *   attention            bwd_input = 2.5 x forward (FlashAttention-2: five
 *                        matmuls backward, two forward); bwd_weight = 0
 *                        (attention has no weights: they are in the
 *                        projection GEMMs)
 *   embedding_bag        bwd_input = 0 (indices), bwd_weight = 2 x forward
 *                        (read-modify-write of the gathered rows)
 *   elementwise, reduction  bwd_input = 1.5 x forward (reads the upstream
 *                        gradient too), bwd_weight = 0
 *   memcpy               no backward: PS_EINPUT. */
int cm_op_time_phase(const cm_model *m, const ps_op *op, cm_phase phase, cm_pred *out,
                     ps_err *e);
/* The op a phase runs as (for gemm/batched_gemm/conv2d); the op itself for
 * other kinds.  PS_EINPUT for memcpy's backward. */
int cm_phase_op(const ps_op *op, cm_phase phase, ps_op *out, ps_err *e);

/* --------------------------------------------------------- validation */

typedef struct cm_validate_opts {
    double holdout;     /* fraction of measured points held out, (0, 1) */
    unsigned long seed; /* same seed, same split */
} cm_validate_opts;

typedef struct cm_validate_point {
    ps_op op;
    double measured_s, predicted_s, rel_err, noise; /* noise = (p90-p10)/median */
    cm_source source;
} cm_validate_point;

/* Hold out a seeded random fraction of the rows (stratified by kind, so
 * every measured kind is tested), fit on the rest (without exact hits, and
 * without any training row that duplicates a held-out op), predict the held
 * out ones.  *report: {"median_rel_err", "p90_rel_err", "n_train",
 * "n_test", "repeat_noise", "per_kind": {kind: {"median_rel_err",
 * "p90_rel_err", "n", "repeat_noise"}}, "sources": {...}, "holdout", "seed",
 * "method"}.  *points (optional) receives the held-out points (free()). */
int cm_validate(const ps_db_row *rows, size_t nrows, const cm_device *dev,
                const ps_db_peak *peaks, size_t npeaks, const cm_validate_opts *o,
                json_t **report, cm_validate_point **points, size_t *npoints, ps_err *e);

/* -------------------------------------------------------- communication */

/* A link as latency α and bandwidth β: time(S) = α + S/β. */
typedef struct cm_ab {
    double alpha_s;
    double beta_bytes_per_s;
} cm_ab;

static inline cm_ab cm_ab_of_link(const cm_link *l)
{
    cm_ab ab = {l->latency_s, l->bw_bytes_per_s};
    return ab;
}

/* α–β fitted to measured copies of one memcpy variant ("host", "d2d", "h2d",
 * "d2h", "peer") by weighted least squares on time = α + copied_bytes/β
 * (weights 1/time², i.e. relative error).  PS_EINPUT when the model holds
 * fewer than two sizes of that variant. */
int cm_model_copy_ab(const cm_model *m, const char *variant, cm_ab *out, ps_err *e);
/* The same fit on raw (bytes, seconds) pairs. */
int cm_fit_ab(const double *bytes, const double *time_s, size_t n, cm_ab *out, ps_err *e);

double cm_p2p_time(cm_ab link, double bytes);

typedef enum { CM_COLL_ALLREDUCE, CM_COLL_ALLGATHER, CM_COLL_REDUCESCATTER } cm_coll;
typedef enum {
    CM_ALG_RING,  /* flat ring over all devices, bottleneck link */
    CM_ALG_TREE,  /* binomial tree (reduce + broadcast): latency-optimal */
    CM_ALG_HIER   /* ring inside nodes, ring across nodes on 1/g of the data */
} cm_alg;
const char *cm_coll_name(cm_coll c);
const char *cm_alg_name(cm_alg a);
int cm_coll_from_name(const char *s);
int cm_alg_from_name(const char *s);

typedef struct cm_topology {
    int nodes;            /* >= 1 */
    int devices_per_node; /* >= 1 */
    cm_ab intra;          /* device <-> device within a node */
    cm_ab inter;          /* node <-> node (per device's share of the NIC) */
} cm_topology;

/* Time of a collective over every device of the topology.  bytes is the
 * full buffer: all-reduce in = out = S; all-gather's output S (each device
 * contributes S/n); reduce-scatter's input S (each keeps S/n).  With n
 * devices, α, β of the link used (intra when nodes == 1, else inter):
 *   ring all-reduce       2(n-1)α + 2(n-1)/n · S/β
 *   ring all-gather       (n-1)α + (n-1)/n · S/β
 *   ring reduce-scatter   (n-1)α + (n-1)/n · S/β
 *   tree all-reduce       2⌈log2 n⌉(α + S/β)
 *   tree all-gather / reduce-scatter (recursive doubling / halving)
 *                         ⌈log2 n⌉α + (n-1)/n · S/β
 *   hier (g = devices_per_node, N = nodes): intra reduce-scatter(S) +
 *        inter ring all-reduce(S/g over N) + intra all-gather(S), and the
 *        matching halves for all-gather / reduce-scatter.
 * One device: 0.  PS_EINPUT for a bad topology or negative bytes. */
int cm_collective_time(const cm_topology *t, cm_coll c, cm_alg a, double bytes, double *time_s,
                       ps_err *e);

/* ---------------------------------------------------------------- memory */

typedef enum { CM_OPT_SGD = 0, CM_OPT_MOMENTUM, CM_OPT_ADAM } cm_optimizer;
int cm_optimizer_from_name(const char *s); /* "sgd" | "momentum" | "adam"; -1 */

typedef struct cm_mem_spec {
    double params;                  /* parameters held by this device */
    double weight_bytes_per_param;  /* 4 fp32, 2 fp16/bf16, b/8 quantized */
    double grad_bytes_per_param;    /* usually = weights; 0 for inference */
    cm_optimizer optimizer;
    int master_fp32;                /* keep an fp32 master copy (mixed precision) */
    double activation_bytes_per_sample; /* stored for backward, per sample */
    double micro_batch;             /* samples per micro-batch */
    double micro_batches_in_flight; /* 1 plain; pipeline stages hold more */
} cm_mem_spec;

typedef struct cm_mem {
    double weights_bytes, grads_bytes, optimizer_bytes, activations_bytes, total_bytes;
} cm_mem;

/* weights = P·w, grads = P·g, optimizer = P·(0 SGD | 4 momentum | 8 Adam)
 * + P·4 for an fp32 master copy, activations = a·micro_batch·in_flight. */
int cm_memory(const cm_mem_spec *s, cm_mem *out, ps_err *e);
/* Activation bytes one transformer layer stores for backward, without
 * recomputation, 16-bit activations (Korthikanti et al. 2022, "Reducing
 * Activation Recomputation in Large Transformer Models", eq. 2):
 * s·b·h·(34 + 5·a·s/h). */
double cm_transformer_layer_activation_bytes(double seq, double batch, double hidden,
                                             double heads);

/* ------------------------------------------------------ quantized ops */

typedef struct cm_quant_pred {
    double time_s;
    double weight_bytes; /* k·n·bits/8 + scales */
    double scale_bytes;  /* fp16 scale per group of weights (0 when unquantized) */
    double act_bytes;    /* activations in and out */
    double total_bytes;
    double flops;
    cm_prec compute;     /* the precision the products run at */
    char path[48];       /* "int8 tensor", "dequant->fp16", ... */
    cm_source source;
} cm_quant_pred;

/* C[m,n] = A[m,k]·W[k,n] with weights at w_bits and activations at a_bits
 * (16 or 32 = floating point; 8 or 4 = integer), group_size weights per
 * fp16 scale (0 = one per output column).  Compute runs at the integer rate
 * when both operands are integer and the device has that rate; otherwise the
 * weights are dequantized (fused) and the product runs at fp16 (fp32 on
 * devices without fp16 rates).  Time from the measured GEMM of that dtype
 * when the model has one, else the roofline with the GEMM efficiencies. */
int cm_quant_gemm(const cm_model *m, int64_t M, int64_t N, int64_t K, int w_bits, int a_bits,
                  int64_t group_size, cm_quant_pred *out, ps_err *e);
/* Weight bytes of P parameters at b bits with one fp16 scale per group. */
double cm_quant_weight_bytes(double params, int bits, int64_t group_size);

/* ------------------------------------------------------ LLM step model */

typedef struct cm_llm {
    double params;     /* parameters read per step (all layers + LM head) */
    int layers;
    int d_model;
    int heads;
    int kv_heads;      /* = heads without GQA */
    int head_dim;      /* d_model / heads usually */
    int weight_bits;   /* 16 fp16, 8, 4 ... */
    int kv_bits;       /* 16 usually */
    int kernels_per_layer; /* launches per layer per step (0 → 8) */
} cm_llm;

typedef struct cm_llm_pred {
    double time_s;
    double flops, bytes;
    double weight_bytes, kv_bytes;
    double compute_s, memory_s, overhead_s;
    double knee_tokens; /* tokens per step where compute_s = memory_s */
    int compute_bound;
} cm_llm_pred;

/* Time to process `tokens` new tokens for each of `batch` sequences at
 * context length ctx (tokens already in the KV cache): one verification
 * step of speculative decoding (tokens = tree size), one decode step
 * (tokens = 1) or a prefill (ctx = 0).
 *   weights read once per step: params·weight_bits/8
 *   KV cache: batch·layers·2·kv_heads·head_dim·(ctx + tokens)·kv_bits/8
 *   FLOPs: 2·params·batch·tokens + 4·batch·layers·heads·head_dim·tokens·(ctx + tokens)
 *   time = overhead + max(FLOPs/(peak·eff_c), bytes/(bw·eff_m))
 * with peak at the weights' compute precision and the GEMM efficiencies of
 * the model: memory-bound until the knee, then compute-bound. */
int cm_llm_step(const cm_model *m, const cm_llm *llm, int64_t batch, int64_t tokens,
                int64_t ctx, cm_llm_pred *out, ps_err *e);

#endif
