#include "cpu_blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static CBLAS_TRANSPOSE tr(int t)
{
    return t ? CblasTrans : CblasNoTrans;
}

void ps_cpu_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void ps_cpu_dgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                  int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc)
{
    cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void ps_cpu_sgemm_batched(int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t stride_a, const float *b,
                          int64_t stride_b, float beta, float *c, int64_t stride_c)
{
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    for (int64_t i = 0; i < batch; i++)
        ps_cpu_sgemm(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                     c + i * stride_c, n);
}

void ps_cpu_dgemm_batched(int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k,
                          double alpha, const double *a, int64_t stride_a, const double *b,
                          int64_t stride_b, double beta, double *c, int64_t stride_c)
{
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    for (int64_t i = 0; i < batch; i++)
        ps_cpu_dgemm(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                     c + i * stride_c, n);
}

void ps_cpu_blas_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}

int ps_cpu_blas_threads(void)
{
    return openblas_get_num_threads();
}

const char *ps_cpu_blas_config(void)
{
    return openblas_get_config();
}

const char *ps_cpu_blas_core(void)
{
    return openblas_get_corename();
}

const char *ps_cpu_blas_better_core(void)
{
    const char *core = openblas_get_corename();
    if (!core || getenv("OPENBLAS_CORETYPE"))
        return NULL;
    if (strcasecmp(core, "Prescott") && strcasecmp(core, "Core2") && strcasecmp(core, "Nehalem") &&
        strcasecmp(core, "Sandybridge"))
        return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return strcasecmp(core, "Haswell") ? "Haswell" : NULL;
#endif
    return NULL;
}
