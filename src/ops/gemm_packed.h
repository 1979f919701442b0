/* gemm_packed.h — our own packed, register-blocked sgemm, for CPUs with
 * AVX-512 (12 × 32 tiles) or with AVX2 and FMA (6 × 16 tiles).
 *
 * Same contract as gemm() (gemm.h): row-major, C = alpha op(A) op(B) + beta C,
 * C not read when beta = 0.  Each element of C is summed over k in order,
 * whatever M, N or the thread split, and both instruction sets give the same
 * bits (gemm_kernels.h).  Call gemm_avx512 only where gemm_avx512_supported()
 * says the CPU and OS run AVX-512, gemm_avx2 where gemm_avx2_supported().  A
 * build with -DREPAE_WITHOUT_AVX512 runs as on a CPU without AVX-512
 * (docs/testing.md: testing and benchmarking that path on any machine).
 */
#ifndef REPAE_GEMM_PACKED_H
#define REPAE_GEMM_PACKED_H

#include <stdbool.h>

bool gemm_avx512_supported(void);
bool gemm_avx2_supported(void);

void gemm_avx512(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void gemm_avx2(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
