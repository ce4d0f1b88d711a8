#include "cpu_blas.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
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

int ps_cpu_blas_selfcheck(void)
{
    enum { M = 37, N = 29, K = 53 };
    static float af[M * K], bf[K * N], cf[M * N];
    static double ad[M * K], bd[K * N], cd[M * N], ref[M * N];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < M * K; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ad[i] = (double)(int)((x >> 33) % 2001u - 1000u) / 1000.0;
        af[i] = (float)ad[i];
    }
    for (int i = 0; i < K * N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        bd[i] = (double)(int)((x >> 33) % 2001u - 1000u) / 1000.0;
        bf[i] = (float)bd[i];
    }
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* A stored m x k (or k x m when ta), B k x n (or n x k when tb):
             * the same numbers read through the transposition. */
            double num = 0, den = 0, numd = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (ta ? ad[k * M + i] : ad[i * K + k]) *
                             (tb ? bd[j * K + k] : bd[k * N + j]);
                    ref[i * N + j] = s;
                }
            ps_cpu_sgemm(ta, tb, M, N, K, 1.0f, af, ta ? M : K, bf, tb ? K : N, 0.0f, cf, N);
            ps_cpu_dgemm(ta, tb, M, N, K, 1.0, ad, ta ? M : K, bd, tb ? K : N, 0.0, cd, N);
            for (int i = 0; i < M * N; i++) {
                num += (cf[i] - ref[i]) * (cf[i] - ref[i]);
                numd += (cd[i] - ref[i]) * (cd[i] - ref[i]);
                den += ref[i] * ref[i];
            }
            if (!(den > 0) || !(sqrt(num / den) < 1e-4) || !(sqrt(numd / den) < 1e-12))
                return -1;
        }
    return 0;
}
