/* Scaled dot-product attention on the CPU, fp32, with an arbitrary boolean
 * mask: O = softmax(Q K^T / sqrt(d) + mask) V.  Same semantics as the CUDA
 * kernel (kernels/cuda_ops.h), so each is the other's reference.
 *
 * Q, O: [b, h, sq, d]; K, V: [b, h, skv, d], row-major.  Query i sits at key
 * position skv - sq + i (prefill: sq = skv; decode: sq = 1).
 *  - PS_CPU_MASK_NONE:   every query sees every key;
 *  - PS_CPU_MASK_CAUSAL: query i sees keys j <= skv - sq + i;
 *  - PS_CPU_MASK_TREE:   mask[i * skv + j] != 0 says query i sees key j, one
 *    [sq, skv] mask shared by every batch and head — any boolean mask.
 * A query that sees no key gets a zero output row.
 *
 * Queries go in blocks of PS_CPU_ATTN_BLOCK rows: S = Q_blk K^T and O_blk =
 * P V are two cblas_sgemm calls per block, the mask and softmax plain C in
 * between.  A causal block only multiplies the keys its last query can
 * see, so causal prefill does about half the work of an unmasked one (what
 * ps_op_flops counts). */
#ifndef PS_KERNELS_CPU_ATTENTION_H
#define PS_KERNELS_CPU_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#define PS_CPU_ATTN_BLOCK 64

typedef enum { PS_CPU_MASK_NONE = 0, PS_CPU_MASK_CAUSAL, PS_CPU_MASK_TREE } ps_cpu_mask_kind;

/* "none" | "causal" | "tree" → kind; -1 when unknown. */
int ps_cpu_mask_parse(const char *s);

/* Floats of workspace ps_cpu_attention needs for these lengths. */
size_t ps_cpu_attention_work_floats(int64_t sq, int64_t skv);

/* work: ps_cpu_attention_work_floats() floats, or NULL to allocate per call.
 * Returns 0, or -1 when allocation fails or mask is NULL for a tree mask. */
int ps_cpu_attention(int64_t b, int64_t h, int64_t sq, int64_t skv, int64_t d, const float *q,
                     const float *k, const float *v, ps_cpu_mask_kind mask_kind,
                     const uint8_t *mask, float *o, float *work);

/* SpecInfer's tree mask for `sq` tree tokens after a shared prefix of
 * skv - sq keys: query i sees the prefix, itself and its ancestors;
 * parent[i] < i, parent[0] = -1 (the root).  mask: sq * skv bytes. */
void ps_cpu_tree_mask(int64_t sq, int64_t skv, const int64_t *parent, uint8_t *mask);

#endif
