/* gemm.h — the one matrix multiply everything else is built on.
 *
 * Row-major, BLAS-shaped:  C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
 * where op(X) is X or its transpose.  lda/ldb/ldc are row strides of the
 * stored matrices (the stored A is M×K, or K×M when transposed).
 *
 * gemm() calls OpenBLAS (the OpenMP build, so it shares our OpenMP thread
 * pool; inside one of our own parallel regions it runs single-threaded).
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

void gemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
