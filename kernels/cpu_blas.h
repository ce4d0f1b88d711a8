/* Dense matrix products on the CPU through OpenBLAS (cblas), row-major.
 * Thin wrappers: they fix the layout convention of the whole project
 * (row-major, last index fastest) and give batched GEMM, which OpenBLAS
 * 0.3.21's cblas lacks, one call. */
#ifndef PS_KERNELS_CPU_BLAS_H
#define PS_KERNELS_CPU_BLAS_H

#include <stdint.h>

/* C[m,n] = alpha · op(A) · op(B) + beta · C, op(X) = X or X^T (ta/tb != 0).
 * op(A) is m x k, op(B) is k x n; lda/ldb/ldc are the row strides of the
 * matrices as stored (A stored m x k when !ta, k x m when ta). */
void ps_cpu_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void ps_cpu_dgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                  int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                  int64_t ldc);

/* `batch` independent products on densely packed matrices: matrix i of A
 * starts at a + i·stride_a (likewise B, C); leading dimensions are the
 * packed ones (k or m for A, n or k for B, n for C). */
void ps_cpu_sgemm_batched(int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t stride_a, const float *b,
                          int64_t stride_b, float beta, float *c, int64_t stride_c);
void ps_cpu_dgemm_batched(int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k,
                          double alpha, const double *a, int64_t stride_a, const double *b,
                          int64_t stride_b, double beta, double *c, int64_t stride_c);

/* OpenBLAS worker threads (process-wide). */
void ps_cpu_blas_set_threads(int n);
int ps_cpu_blas_threads(void);
/* "OpenBLAS 0.3.21 ... SAPPHIRERAPIDS" for the profile database. */
const char *ps_cpu_blas_config(void);
/* The kernel set OpenBLAS picked at load time ("SkylakeX", "Haswell", ...). */
const char *ps_cpu_blas_core(void);
/* OpenBLAS 0.3.21 falls back to its generic SSE3 "Prescott" kernels on CPUs
 * it does not recognise (e.g. newer Xeons under a hypervisor), 2-5x slower
 * at GEMM.  When that happened and the CPU has AVX-512 (AVX2+FMA), this
 * returns the core type to ask for ("SkylakeX", "Haswell"); else NULL.
 * The choice is made when the library loads, so the caller must set
 * OPENBLAS_CORETYPE and re-exec (experiments/main.c does, once). */
const char *ps_cpu_blas_better_core(void);
/* A quick correctness check of the loaded kernels: sgemm and dgemm on odd
 * sizes in every transpose combination against a float64 loop.  0 when they
 * agree (relative error < 1e-4 fp32, 1e-12 fp64), -1 otherwise (the caller
 * falls back to OpenBLAS's own choice: some older builds compute wrong
 * results with a forced core type). */
int ps_cpu_blas_selfcheck(void);

#endif
