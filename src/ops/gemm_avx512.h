/* gemm_avx512.h — our own packed, register-blocked sgemm for AVX-512 CPUs.
 *
 * Same contract as gemm() (gemm.h): row-major, C = alpha op(A) op(B) + beta C,
 * C not read when beta = 0.  Each element of C is summed over k in order,
 * whatever M, N or the thread split (gemm_avx512.c).  Call it only where
 * gemm_avx512_supported() says the CPU and OS run AVX-512.
 */
#ifndef REPAE_GEMM_AVX512_H
#define REPAE_GEMM_AVX512_H

#include <stdbool.h>

bool gemm_avx512_supported(void);

void gemm_avx512(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
