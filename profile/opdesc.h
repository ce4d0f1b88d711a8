/* The op descriptor: one struct names an op instance — what the profiler
 * measures, what the profile database stores, what the cost model predicts.
 *
 * Kinds and their dimensions, in the order they occupy d[] (and the DB's
 * d0..d9 columns).  Every dimension is an integer >= 1 except conv2d's pad
 * (>= 0).  Unused trailing d[] entries are 0.
 *
 *   kind           dims (d[0], d[1], ...)               variants (first = default)
 *   gemm           m, n, k                              nn | nt | tn | tt
 *                  C[m,n] = op(A)[m,k] · op(B)[k,n]; "nt" = B stored transposed
 *   batched_gemm   b, m, n, k                           nn | nt | tn | tt
 *   attention      b, h, sq, skv, d                     causal | none | tree
 *                  batch, heads, query len, key len, head dim; prefill has
 *                  sq = skv, decode sq = 1.  Queries are the LAST sq positions
 *                  of the skv keys (query i sits at key position skv-sq+i).
 *                  tree: the first skv-sq keys are a shared prefix every
 *                  query sees; the sq queries form a token tree and each sees
 *                  its ancestors and itself (SpecInfer's tree attention).
 *   conv2d         n, c, h, w, k, r, s, stride, pad     fwd | bwd_input | bwd_weight
 *                  NCHW input, k output channels, r x s filter; stride
 *                  defaults to 1, pad to 0; out = (h + 2 pad - r)/stride + 1
 *   elementwise    n                                    relu | gelu | add | mul | tanh | sigmoid
 *   reduction      rows, cols  (reduce along cols)      softmax | layernorm | sum
 *   embedding_bag  rows, dim, bag, batch                sum | mean
 *                  batch bags of `bag` int64 indices into a rows x dim table
 *   memcpy         bytes                                d2d | h2d | d2h | peer | host
 *                  host = a CPU memcpy within RAM (what the CPU backend runs)
 *
 * dtype: fp32 (default) | fp64 | fp16 | bf16 | tf32 | fp8 | int8 | int4.
 * tf32 is stored as fp32 (4 bytes); int4 is packed (half a byte).  memcpy
 * ignores dtype (it stays "fp32" so that rows compare equal).
 *
 * JSON form: {"kind":"gemm","m":512,"n":512,"k":512,"dtype":"fp32"}; dims by
 * name, dtype and variant optional.  Unknown keys are errors (typos).
 *
 * Closed forms (ps_op_flops, ps_op_bytes) — the cost model's regressors, so
 * they are definitions, not estimates of any one kernel:
 *   gemm           flops 2mnk;  bytes w(mk + kn + mn)
 *   batched_gemm   b x gemm
 *   attention      flops 4·b·h·pairs·d, pairs = the (query, key) pairs the
 *                  mask allows for causal (sq(skv-sq) + sq(sq+1)/2), all
 *                  sq·skv for none and tree (tree kernels compute densely and
 *                  mask); bytes w·b·h·(2·sq·d + 2·skv·d) (+ sq·skv mask bytes
 *                  for tree)
 *   conv2d         flops 2·n·k·oh·ow·c·r·s (every variant);
 *                  bytes w(n·c·h·w + k·c·r·s + n·k·oh·ow) (every variant)
 *   elementwise    flops n·f, f = relu 1, add 1, mul 1, tanh 4, sigmoid 4,
 *                  gelu 8 (nominal); bytes w·n·(2 unary, 3 binary)
 *   reduction      softmax flops 5·rows·cols, bytes 2w·rows·cols;
 *                  layernorm 8·rows·cols, 2w·rows·cols + 2w·cols;
 *                  sum rows·cols, w·rows·cols + w·rows
 *   embedding_bag  flops batch·bag·dim; bytes w·batch·bag·dim (gathered rows)
 *                  + 8·batch·bag (indices) + w·batch·dim (output)
 *   memcpy         flops 0; bytes 2·bytes for host and d2d (each byte is read
 *                  and written in the same memory), bytes for h2d, d2h and
 *                  peer (each byte crosses the link once).  Bandwidth peaks
 *                  in a profile DB are ps_op_bytes per second, so a roofline
 *                  bytes/bw uses the same convention on both sides.
 *   (w = dtype bytes)
 *
 * Training phases (cost model): bwd_input of gemm(m,n,k) is gemm(m,k,n),
 * bwd_weight is gemm(k,n,m) — forward GEMMs of the transposed shapes. */
#ifndef PS_PROFILE_OPDESC_H
#define PS_PROFILE_OPDESC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* conv2d needs nine dims (n c h w k r s stride pad); one spare. */
#define PS_OP_MAXDIM 10
#define PS_OP_KIND_LEN 24
#define PS_OP_DTYPE_LEN 8
#define PS_OP_VARIANT_LEN 24

typedef struct ps_op {
    char kind[PS_OP_KIND_LEN];
    char dtype[PS_OP_DTYPE_LEN];
    int64_t d[PS_OP_MAXDIM];
    char variant[PS_OP_VARIANT_LEN];
} ps_op;

typedef enum {
    PS_OPK_GEMM = 0,
    PS_OPK_BATCHED_GEMM,
    PS_OPK_ATTENTION,
    PS_OPK_CONV2D,
    PS_OPK_ELEMENTWISE,
    PS_OPK_REDUCTION,
    PS_OPK_EMBEDDING_BAG,
    PS_OPK_MEMCPY,
    PS_OPK_COUNT
} ps_op_kind_id;

/* Kind name → id, or -1 when unknown. */
int ps_op_kind_id_of(const char *kind);
int ps_op_kind_valid(const char *kind);
const char *ps_op_kind_name(int kind_id);
/* "gemm, batched_gemm, ..." for messages. */
const char *ps_op_kind_list(void);

/* Dimensions of a kind: count, i-th name, index of a name (-1 if none). */
int ps_op_ndims(const char *kind);
const char *ps_op_dim_name(const char *kind, int i);
int ps_op_dim_index(const char *kind, const char *dim);
/* The value of a named dimension (0 if the kind has no such dim). */
int64_t ps_op_dim(const ps_op *op, const char *dim);

/* Allowed variants of a kind (NULL-terminated; [0] is the default). */
const char *const *ps_op_variants(const char *kind);

/* Bytes per element of a dtype (0.5 for int4); 0 when unknown. */
double ps_op_dtype_bytes(const char *dtype);
int ps_op_dtype_valid(const char *dtype);

/* Fill op: kind, default dtype/variant, default dims (conv2d stride 1). */
int ps_op_init(ps_op *op, const char *kind, ps_err *e);
/* Convenience for code and tests: dims in the kind's order; dtype/variant
 * NULL → defaults.  Validates. */
int ps_op_make(ps_op *op, const char *kind, const char *dtype, const char *variant,
               const int64_t *dims, int ndims, ps_err *e);

/* Check dims (>= 1, pad >= 0, conv output >= 1), dtype, variant.  Errors are
 * PS_EINPUT naming "WHERE.FIELD" (where may be NULL → "op"). */
int ps_op_validate(const ps_op *op, const char *where, ps_err *e);

/* Parse {"kind":...}; `where` is the JSON path of the object ("$", "--op")
 * used in messages.  Unknown kind, missing/zero/negative dim, unknown
 * dtype/variant or unknown key → PS_EINPUT naming the field. */
int ps_op_from_json(const json_t *j, const char *where, ps_op *op, ps_err *e);
/* The same, tolerating extra keys the caller handles itself (e.g. "phase");
 * extra is NULL-terminated or NULL. */
int ps_op_from_json_ex(const json_t *j, const char *where, const char *const *extra, ps_op *op,
                       ps_err *e);
/* New JSON object with kind, dims by name, dtype, variant. */
json_t *ps_op_to_json(const ps_op *op);

double ps_op_flops(const ps_op *op);
double ps_op_bytes(const ps_op *op);

/* Canonical shape "m=512,n=512,k=512" (all dims, kind order). */
void ps_op_shape_str(const ps_op *op, char *buf, size_t n);
/* "gemm fp32 nn m=512,n=512,k=512" for progress lines and messages. */
void ps_op_describe(const ps_op *op, char *buf, size_t n);
/* Same kind, dtype, variant and dims. */
int ps_op_equal(const ps_op *a, const ps_op *b);

/* conv2d output height/width (0 when the filter does not fit). */
int64_t ps_op_conv_out_h(const ps_op *op);
int64_t ps_op_conv_out_w(const ps_op *op);

#endif
