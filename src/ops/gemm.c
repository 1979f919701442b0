#include "ops/gemm.h"

#include <stdatomic.h>
#include <strings.h>

#include <omp.h>

#include <cblas.h>

#include "ops/gemm_avx512.h"

bool blas_core_is_avx512(const char *core)
{
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; core && i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcasecmp(core, avx512_cores[i]))
            return true;
    return false;
}

/* gemm_avx512_supported() once (it asks cpuid). */
static bool gemm_avx512_supported_cached(void)
{
    static atomic_int supported; /* 0 unknown, 1 no, 2 yes */
    int c = atomic_load_explicit(&supported, memory_order_relaxed);
    if (!c) {
        c = gemm_avx512_supported() ? 2 : 1;
        atomic_store_explicit(&supported, c, memory_order_relaxed);
    }
    return c == 2;
}

bool gemm_uses_own_kernel(void)
{
    /* Decided once: 0 undecided, 1 OpenBLAS, 2 ours.  A race only computes
     * the same answer twice. */
    static atomic_int choice;
    int c = atomic_load_explicit(&choice, memory_order_relaxed);
    if (!c) {
        c = gemm_avx512_supported_cached() && !blas_core_is_avx512(openblas_get_corename()) ? 2 : 1;
        atomic_store_explicit(&choice, c, memory_order_relaxed);
    }
    return c == 2;
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* BLAS leaves C untouched for K = 0 only when beta = 1 */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    /* The rule is in gemm.h.  Inside an inactive parallel region (an `if`
     * clause that was false) OpenBLAS would start a nested team; ours then
     * runs on the calling thread (gemm_avx512). */
    bool own = gemm_uses_own_kernel() ||
               (!omp_in_parallel() && omp_get_max_threads() > 1 && gemm_avx512_supported_cached());
    if (own) {
        gemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                double a = trans_a ? A[(long)k * lda + i] : A[(long)i * lda + k];
                double b = trans_b ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                acc += a * b;
            }
            float *c = &C[(long)i * ldc + j];
            /* beta = 0 overwrites, so NaN garbage in C does not leak (BLAS semantics). */
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

void gemm_strided_batch(int items, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                        long stride_a, int lda, const float *B, long stride_b, int ldb, float beta, float *C,
                        long stride_c, int ldc)
{
    /* Not inside any region, active or not: a region there would be a nested team. */
    if (items > 1 && items >= omp_get_max_threads() && omp_get_level() == 0) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < items; i++)
            gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                 C + i * stride_c, ldc);
    } else {
        for (int i = 0; i < items; i++)
            gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                 C + i * stride_c, ldc);
    }
}
