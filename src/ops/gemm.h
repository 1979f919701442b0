/* gemm.h — the one matrix multiply everything else is built on.
 *
 * Row-major, BLAS-shaped:  C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
 * where op(X) is X or its transpose.  lda/ldb/ldc are row strides of the
 * stored matrices (the stored A is M×K, or K×M when transposed).
 *
 * gemm() calls OpenBLAS (the OpenMP build, so it shares our OpenMP thread
 * pool; inside one of our own parallel regions it runs single-threaded),
 * unless OpenBLAS runs kernels without AVX-512 on a CPU that has it: then
 * our own AVX-512 kernel (gemm_avx512.h), about twice as fast there.  That
 * happens where OpenBLAS does not know the CPU, or where the environment
 * says OPENBLAS_CORETYPE=Haswell (BENCHMARKS.md, session 11); where it runs
 * its SkylakeX-family kernels it is a little faster than ours and is kept.
 * gemm_ref() is a plain triple loop in double precision, used only by tests.
 */
#ifndef REPAE_GEMM_H
#define REPAE_GEMM_H

#include <stdbool.h>

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Whether `items` independent GEMMs (one per image, say) should run one per
 * thread, each single-threaded inside OpenBLAS, instead of one after the
 * other with OpenBLAS threading each (a fork per call): yes when every
 * thread gets at least one. */
int gemm_items_in_parallel(int items);

/* Whether gemm() runs our AVX-512 kernel rather than OpenBLAS's (decided at
 * the first call, from the CPU and the core OpenBLAS chose). */
bool gemm_uses_own_kernel(void);

/* Whether an OpenBLAS core name (openblas_get_corename()) is one of its
 * AVX-512 kernel sets. */
bool blas_core_is_avx512(const char *core);

void gemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
