#include "ops/gemm.h"

#include <stdatomic.h>
#include <strings.h>

#include <omp.h>

#include <cblas.h>

#include "ops/gemm_packed.h"

bool blas_core_is_avx512(const char *core)
{
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; core && i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcasecmp(core, avx512_cores[i]))
            return true;
    return false;
}

/* Which kernels gemm() may run (the rule is in gemm.h), decided once from
 * the CPU and the core OpenBLAS chose.  A race only computes the same answer
 * twice. */
enum { RULE_UNDECIDED, RULE_OPENBLAS, RULE_OURS_THREADED, RULE_OURS_ALWAYS, RULE_OURS_AVX2 };
static atomic_int rule;

static int kernel_rule(void)
{
    int r = atomic_load_explicit(&rule, memory_order_relaxed);
    if (r == RULE_UNDECIDED) {
        r = gemm_avx512_supported() ? (blas_core_is_avx512(openblas_get_corename()) ? RULE_OURS_THREADED
                                                                                   : RULE_OURS_ALWAYS)
            : gemm_avx2_supported() ? RULE_OURS_AVX2
                                    : RULE_OPENBLAS;
        atomic_store_explicit(&rule, r, memory_order_relaxed);
    }
    return r;
}

bool gemm_uses_own_kernel(void)
{
    const int r = kernel_rule();
    return r == RULE_OURS_ALWAYS || r == RULE_OURS_AVX2;
}

bool gemm_outside_regions_uses_own_kernel(void)
{
    const int r = kernel_rule();
    return r == RULE_OURS_ALWAYS || r == RULE_OURS_AVX2 || (r == RULE_OURS_THREADED && omp_get_max_threads() > 1);
}

void gemm_route_to_openblas(bool all)
{
    atomic_store_explicit(&rule, all ? RULE_OPENBLAS : RULE_UNDECIDED, memory_order_relaxed);
}

/* OpenBLAS's OpenMP build takes its thread count from omp_get_max_threads()
 * unless omp_in_parallel().  Inside a parallel region that is inactive (its
 * `if` clause false, and so are all the enclosing ones) it would therefore
 * fork a nested team: new threads on every call.  There the count is this
 * task's own setting, seen by no other thread, so it is set to one for the
 * call.  (OpenBLAS then also sets its global thread count to one; its next
 * call outside sets it back.  No other thread runs meanwhile.) */
static void openblas_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc)
{
    const bool inactive_region = omp_get_level() > 0 && !omp_in_parallel();
    const int threads = omp_get_max_threads();
    if (inactive_region)
        omp_set_num_threads(1);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
    if (inactive_region)
        omp_set_num_threads(threads);
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
     * clause that was false) ours runs on the calling thread (gemm_packed.c),
     * and so does OpenBLAS (openblas_sgemm). */
    const int rule = kernel_rule();
    if (rule == RULE_OURS_AVX2) {
        gemm_avx2(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    bool own = rule == RULE_OURS_ALWAYS ||
               (rule == RULE_OURS_THREADED && !omp_in_parallel() && omp_get_max_threads() > 1);
    if (own) {
        gemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    openblas_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
    /* One item per thread only outside any region, active or not: a region
     * inside an inactive one would be a nested team.  A branch, not an `if`
     * clause: inside the inactive region that a false clause leaves, each
     * GEMM would run on one thread. */
    const bool per_thread = items > 1 && items >= omp_get_max_threads() && omp_get_level() == 0;
#define ITEM(i) gemm(trans_a, trans_b, M, N, K, alpha, A + (i) * stride_a, lda, B + (i) * stride_b, ldb, beta, \
                     C + (i) * stride_c, ldc)
    if (per_thread) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < items; i++)
            ITEM(i);
    } else {
        for (int i = 0; i < items; i++)
            ITEM(i);
    }
#undef ITEM
}
