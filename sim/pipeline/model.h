/* Model graphs for the pipeline study: a DAG of operators, each with a kind,
 * the shape the cost model needs, parameter bytes, activation bytes and its
 * inputs; built-in generators for the papers' models; per-op training costs
 * on a device at a micro-batch size.
 *
 * JSON format (sim/pipeline/README.md, "Model format", is the reference):
 *
 *   {"name": "mmt", "dtype": "fp32",
 *    "ops": [
 *      {"id": "x", "kind": "input", "out_bytes": 1048576},
 *      {"id": "l0", "kind": "gemm", "m": 256, "n": 1024, "k": 1024,
 *       "inputs": ["x"]},
 *      {"id": "blk", "kind": "block", "inputs": ["l0"],
 *       "parts": [{"kind": "gemm", "m": 256, "n": 4096, "k": 1024},
 *                 {"kind": "elementwise", "n": 1048576, "variant": "gelu"}]},
 *      {"id": "imp", "kind": "opaque", "inputs": ["blk"],
 *       "param_bytes": 4e6, "out_bytes": 4096, "act_bytes": 8192,
 *       "measured": {"batch": 32, "fwd_s": 1e-3, "bwd_s": 2e-3}}]}
 *
 * Shapes are PER SAMPLE: a micro-batch of b samples multiplies the kind's
 * batch dimension by b (gemm m, batched_gemm b, attention b, conv2d n,
 * elementwise n, reduction rows, embedding_bag batch, memcpy bytes).
 * Bytes (out_bytes, act_bytes) are per sample; param_bytes per op.  Absent
 * bytes default from the shape (README).  Measured times are for
 * measured.batch samples and scale linearly in the batch; they take
 * precedence over the cost model (imported PipeDream / Piper graphs).
 *
 * Kinds: the cost model's (profile/opdesc.h: gemm, batched_gemm, attention,
 * conv2d, elementwise, reduction, embedding_bag, memcpy), plus
 *   block    a sequence of cost-model ops ("parts") run as one graph node
 *            (a transformer layer, an MLP layer with its activation)
 *   concat   joins its inputs; costs a device copy of its output
 *   input    a source holding the model's input (no compute)
 *   opaque   no shape: only measured times (imports)
 *
 * After loading or building, ops are numbered 0..n-1 in a topological order
 * (stable: among ready ops the one listed first comes first), so every
 * input index is smaller than its consumer's.  Ids are kept. */
#ifndef PS_PP_MODEL_H
#define PS_PP_MODEL_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "costmodel/costmodel.h"
#include "profile/opdesc.h"

typedef struct pp_model pp_model;

typedef enum {
    PP_K_SHAPED = 0, /* one cost-model op: `shape` */
    PP_K_BLOCK,      /* parts[0..nparts) */
    PP_K_CONCAT,
    PP_K_INPUT,
    PP_K_OPAQUE,
} pp_kind_class;

typedef struct pp_measured {
    int has;             /* 0 = none; the cost model prices the op */
    double batch;        /* samples the times were measured at (> 0) */
    double fwd_s;
    double bwd_input_s;  /* input gradient */
    double bwd_weight_s; /* weight gradient */
} pp_measured;

typedef struct pp_model_op {
    const char *id;   /* owned by the model */
    char kind[PS_OP_KIND_LEN];
    pp_kind_class cls;
    ps_op shape;          /* PP_K_SHAPED: per-sample shape */
    int nparts;           /* PP_K_BLOCK */
    const ps_op *parts;   /* per-sample shapes, owned by the model */
    double param_bytes;   /* weights held by the op */
    double out_bytes;     /* per sample: output sent to consumers */
    double act_bytes;     /* per sample: stashed from forward to backward */
    pp_measured measured;
    int ninputs;
    const int *inputs;    /* producer op indices, all < this op's index */
    int nconsumers;
    const int *consumers; /* consumer op indices, ascending */
} pp_model_op;

/* ---- loading, saving ---- */

/* Parse and validate.  Errors (PS_EINPUT) name the file and the op:
 * "m.json: $.ops[4] (op \"b1.l2\"): input \"b1.l9\" is not an op id";
 * cycles name the ops on one cycle; duplicate ids, non-positive dims,
 * negative bytes, unknown kinds and unknown keys likewise. */
pp_model *pp_model_load(const char *path, ps_err *e);
/* The same from a parsed document; `what` names the source in messages. */
pp_model *pp_model_from_json(const json_t *doc, const char *what, ps_err *e);
json_t *pp_model_to_json(const pp_model *m);
/* Written atomically (path.tmp, rename). */
int pp_model_save(const pp_model *m, const char *path, ps_err *e);
void pp_model_free(pp_model *m);

/* ---- building (generators, importers) ----
 * pp_model_new, then pp_model_add_op / pp_model_add_input in any order
 * (edges may point forward), then pp_model_finish: validates like a load and
 * renumbers ops topologically.  Indices returned by add_op are build-time
 * indices, valid only until finish; look ops up by id after it. */
pp_model *pp_model_new(const char *name, ps_err *e);
typedef struct pp_op_spec {
    const char *id;
    const char *kind;       /* any kind above */
    const ps_op *shape;     /* shaped kinds */
    const ps_op *parts;     /* block */
    int nparts;
    double param_bytes;     /* < 0 = default from the shape */
    double out_bytes;       /* < 0 = default */
    double act_bytes;       /* < 0 = default */
    pp_measured measured;
} pp_op_spec;
int pp_model_add_op(pp_model *m, const pp_op_spec *s, ps_err *e);
int pp_model_add_input(pp_model *m, int consumer, int producer, ps_err *e);
int pp_model_finish(pp_model *m, ps_err *e);

/* ---- access (after load / finish) ---- */
const char *pp_model_name(const pp_model *m);
int pp_model_nops(const pp_model *m);
const pp_model_op *pp_model_op_at(const pp_model *m, int i);
/* Index of the op with this id, -1 if none. */
int pp_model_find(const pp_model *m, const char *id);
/* Number of edges (producer -> consumer pairs; walk them through each op's
 * inputs or consumers). */
int pp_model_nedges(const pp_model *m);
/* Sum of param_bytes over all ops. */
double pp_model_param_bytes(const pp_model *m);
/* The optional top-level "piper" extension of an imported Piper input (the
 * Piper instance: TMPCs per tensor-parallel degree, edge costs, its
 * bandwidth, memory and micro-batch count; sim/pipeline/piper_dp.h), kept
 * verbatim and saved back; NULL when absent.  Set copies it (NULL clears). */
const json_t *pp_model_piper(const pp_model *m);
int pp_model_set_piper(pp_model *m, const json_t *piper, ps_err *e);

/* ---- costs ---- */

/* What one device spends on one op for a micro-batch of `samples`. */
typedef struct pp_op_cost {
    double fwd_s, bwd_input_s, bwd_weight_s;
    double act_bytes;   /* stashed per micro-batch (act_bytes x samples) */
    double out_bytes;   /* sent per micro-batch (out_bytes x samples) */
    double param_bytes; /* weights (independent of samples) */
} pp_op_cost;

/* Costs of every op at `samples` (>= 1) samples per micro-batch: measured
 * times scaled by samples / measured.batch when present, else cm_op_time_phase
 * on `cm` summed over the op's parts with the batch dimension multiplied by
 * samples.  cm may be NULL only when every op is measured (or costless).
 * out has pp_model_nops entries. */
int pp_model_costs(const pp_model *m, const cm_model *cm, double samples, pp_op_cost *out,
                   ps_err *e);

/* ---- built-in generators ----
 * params: a JSON object of knob -> value (numbers, or strings for "dtype"
 * and "granularity"); NULL or {} = the papers' defaults.  Unknown knobs are
 * errors listing the known ones. */
typedef struct pp_knob {
    const char *name;
    const char *def; /* default as JSON text */
    const char *help;
} pp_knob;
/* NULL-terminated names: "mmt", "dlrm", "candle-uno", "transformer". */
const char *const *pp_builtin_names(void);
/* Knobs of a generator ({NULL}-terminated), NULL if the name is unknown. */
const pp_knob *pp_builtin_knobs(const char *name);
pp_model *pp_model_builtin(const char *name, const json_t *params, ps_err *e);

#endif
