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
#include <stddef.h>

bool gemm_avx512_supported(void);
bool gemm_avx2_supported(void);

void gemm_avx512(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void gemm_avx2(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- B packed once, for many products that share it (weights at
 * sampling time: packing them on every call was ~9 % of sampling) ----
 *
 *   float *Bp = aligned_alloc(64, ...gemm_prepacked_floats(K, N) floats...);  // 64-byte aligned
 *   gemm_prepack_b(trans_b, B, ldb, K, N, Bp);
 *   gemm_prepacked(trans_a, M, N, K, alpha, A, lda, Bp, beta, C, ldc);  // any M, A, C
 *
 * The layout is the kernels' own, of the set this CPU runs (AVX-512, else
 * AVX2): per block of GEMM_KC rows of op(B), ceil(N / width) panels of
 * kc × width, zero-padded, so it lives only in memory, never in a file.
 * gemm_prepacked gives the same bits as gemm_avx512 / gemm_avx2 on the
 * unpacked B, with the same thread split.  Width 0: no set of ours on this
 * CPU (then the other two die). */
int gemm_prepacked_width(void);
/* K × N rounded up to whole panels. */
size_t gemm_prepacked_floats(int K, int N);
void gemm_prepack_b(bool trans_b, const float *B, int ldb, int K, int N, float *packed);
void gemm_prepacked(bool trans_a, int M, int N, int K, float alpha, const float *A, int lda, const float *packed,
                    float beta, float *C, int ldc);

#endif
