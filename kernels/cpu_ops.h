/* Memory-bound CPU kernels in plain C, fp32: elementwise maps, row
 * reductions (softmax, layernorm, sum), embedding-bag, memcpy.  Semantics
 * match the CUDA kernels (kernels/cuda_ops.h) so each checks the other. */
#ifndef PS_KERNELS_CPU_OPS_H
#define PS_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PS_CPU_EW_RELU = 0,
    PS_CPU_EW_GELU, /* exact: x/2 (1 + erf(x/sqrt 2)) */
    PS_CPU_EW_TANH,
    PS_CPU_EW_SIGMOID,
    PS_CPU_EW_ADD, /* binary: y = a + b */
    PS_CPU_EW_MUL, /* binary: y = a * b */
} ps_cpu_ew_op;

/* "relu" ... "mul" → op; -1 when unknown. */
int ps_cpu_ew_parse(const char *s);
int ps_cpu_ew_is_binary(ps_cpu_ew_op op);
/* y[i] = f(a[i]) or a[i] op b[i] for i < n; y may alias a. */
void ps_cpu_elementwise(ps_cpu_ew_op op, size_t n, const float *a, const float *b, float *y);

typedef enum { PS_CPU_RED_SOFTMAX = 0, PS_CPU_RED_LAYERNORM, PS_CPU_RED_SUM } ps_cpu_red_op;

#define PS_CPU_LAYERNORM_EPS 1e-5f

int ps_cpu_red_parse(const char *s);
/* Row-wise over x[rows, cols]: softmax (max-subtracted) and layernorm
 * ((x - mean)/sqrt(var + eps)·gamma + beta, biased variance; gamma/beta may
 * be NULL: 1 and 0) write y[rows, cols]; sum writes y[rows].  Accumulation
 * in double for the statistics, so long rows stay accurate. */
void ps_cpu_reduction(ps_cpu_red_op op, int64_t rows, int64_t cols, const float *x,
                      const float *gamma, const float *beta, float *y);

/* out[i, :] = sum (or mean) over j < bag of table[idx[i·bag + j], :];
 * table [rows, dim], idx [batch, bag], out [batch, dim].  Returns 0, or -1
 * (out untouched past the bad bag) when an index is outside [0, rows). */
int ps_cpu_embedding_bag(int64_t rows, int64_t dim, int64_t bag, int64_t batch,
                         const float *table, const int64_t *idx, int mean, float *out);

/* A plain memcpy, as a function the profiler can time like the others. */
void ps_cpu_memcpy(void *dst, const void *src, size_t bytes);

#endif
