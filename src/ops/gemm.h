/* gemm.h — the one matrix multiply everything else is built on.
 *
 * Row-major, BLAS-shaped:  C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
 * where op(X) is X or its transpose.  lda/ldb/ldc are row strides of the
 * stored matrices (the stored A is M×K, or K×M when transposed).
 *
 * Which kernel runs a call (our kernels: gemm_packed.h):
 * - AVX-512 CPUs where OpenBLAS runs kernels without AVX-512 (it does not
 *   know the CPU, or the environment says OPENBLAS_CORETYPE=Haswell): our
 *   AVX-512 kernel for every call, about twice as fast there (BENCHMARKS.md,
 *   session 11);
 * - other AVX-512 CPUs: ours where the call may use several threads
 *   (outside our parallel regions, more than one thread), OpenBLAS's kernel
 *   inside them, single-threaded.  Our kernel splits C into independent
 *   stripes, one per thread, and scales 1.7–2× on two threads where
 *   OpenBLAS's threads, which share packed panels, reach 1.3–1.7× on the
 *   small step's shapes; on one thread OpenBLAS's SkylakeX-family kernels
 *   are as fast or up to ~15 % faster (BENCHMARKS.md, session 19);
 * - CPUs with AVX2 and FMA but not AVX-512: our AVX2 kernel for every call.
 *   OpenBLAS's rows depend on the batch they are in, ours do not, so the
 *   guarantees that rest on it (a batch size or an MPI split does not change
 *   the results) hold there too; its speed is OpenBLAS's Haswell kernel's
 *   (0.90–1.03× on one thread, 0.95–1.58× on two; BENCHMARKS.md, session 21),
 *   and on a real Zen 3 that of its ZEN kernel (0.95–1.06× in total on
 *   SiT-B/2's shapes; session 32);
 * - older CPUs: OpenBLAS (without those guarantees).
 * OpenBLAS is the OpenMP build, so it shares our OpenMP thread pool.
 * Inside a parallel region, active or not, every kernel runs on the calling
 * thread alone: a GEMM never starts a nested team.
 * gemm_ref() is a plain triple loop in double precision, used only by tests.
 */
#ifndef REPAE_GEMM_H
#define REPAE_GEMM_H

#include <stdbool.h>

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* `items` independent GEMMs (one per image, say):
 *   C_i = alpha * op(A_i) @ op(B_i) + beta * C_i,  X_i = X + i * stride_x
 * (a stride of 0 shares that operand between the items).  One item per
 * thread in one parallel region when every thread gets one; otherwise one
 * after the other, each GEMM using every thread (then each item's result is
 * the one gemm() gives it alone).  A parallel loop with an `if` clause would
 * not do: inside the inactive region a GEMM that forks starts a nested team,
 * new threads on every call. */
void gemm_strided_batch(int items, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                        long stride_a, int lda, const float *B, long stride_b, int ldb, float beta, float *C,
                        long stride_c, int ldc);

/* Whether gemm() runs our kernels for every call: AVX-512 ones where
 * OpenBLAS's kernels lack AVX-512, AVX2 ones on CPUs without AVX-512
 * (decided at the first call, from the CPU and the core OpenBLAS chose). */
bool gemm_uses_own_kernel(void);
/* Whether it runs ours for a call made outside any parallel region now
 * (the rule above, under the current thread count): there a product on B
 * packed once (gemm_packed.h) gives gemm()'s bits. */
bool gemm_outside_regions_uses_own_kernel(void);

/* Tests and diagnostics only: gemm() runs every call on OpenBLAS, as on a
 * CPU without AVX-512 (all = true), or decides again from the CPU (false).
 * Call it where no other thread is in gemm(). */
void gemm_route_to_openblas(bool all);

/* Whether an OpenBLAS core name (openblas_get_corename()) is one of its
 * AVX-512 kernel sets. */
bool blas_core_is_avx512(const char *core);

void gemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
