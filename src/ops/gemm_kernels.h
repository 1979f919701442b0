/* gemm_kernels.h — what one instruction set brings to our packed GEMM
 * (gemm_packed.c runs the loops): its micro-tile, packing and tile kernel.
 *
 * Every set computes each element of C the same way: the sum over k in
 * increasing order, one FMA at a time from zero, in blocks of GEMM_KC that
 * are added to C in order (the first block: C = sum, C + sum, or
 * alpha*sum + beta*C as beta and alpha ask).  So the sets give the same bits
 * as each other, whatever M, N, the tile or the thread split.
 */
#ifndef REPAE_GEMM_KERNELS_H
#define REPAE_GEMM_KERNELS_H

#include <stdbool.h>

/* Block sizes (shared by the sets, so that their sums agree): KC 384 / MC
 * 144 beat 256 / 240 by ~5 % on SiT-B/2's shapes (Zen 5, 2026-12-04).  MC
 * is a multiple of every set's mr, NC of every nr. */
#ifndef GEMM_KC
#define GEMM_KC 384  /* inner block */
#define GEMM_MC 144  /* A block: MC × KC, in L2 */
#define GEMM_NC 3072 /* B block: KC × NC, in L3 */
#endif

typedef struct gemm_kernels {
    int mr, nr; /* the C tile in registers */
    bool (*supported)(void);
    /* A[mc × kc] of op(A), A stored K × M (trans), into ceil(mc/mr)
     * k-major panels, panel[k*mr + i], mr*kc apart, rows past mc zero.  A
     * stored M × K needs no kernel of its own: gemm_packed.c copies its rows
     * as they are, with a row stride of GEMM_KC, panels mr*GEMM_KC apart. */
    void (*pack_a_kmajor)(const float *A, long lda, int mc, int kc, float *dst);
    /* B[kc × nc] of op(B) into ceil(nc/nr) k-major panels of kc × nr
     * (panel[k*nr + j]), columns past nc zero. */
    void (*pack_b)(bool trans, const float *B, long ldb, int kc, int nc, float *dst);
    /* The mr × nr tile (mr ≤ .mr, nr ≤ .nr) of packed a (k-major when
     * a_kmajor) times packed b, kc deep, into C at c (row stride ldc);
     * first: the first KC block (then C = alpha*sum + beta*C, C not read
     * when beta = 0), later blocks add alpha*sum — exactly: alpha*sum
     * rounded, then C + that, or fmaf(beta, C, that) (gemm_epilogue below;
     * tests/test_gemm.c checks each set's bits against this in scalar code).
     * Both sets apply it to the tile in their registers, so every
     * full-height tile goes straight to C. */
    void (*tile)(int mr, int nr, bool a_kmajor, int kc, const float *a, const float *b, float *c, long ldc,
                 float alpha, float beta, bool first);
} gemm_kernels;

/* How a KC block's sum meets C (the tile's first, alpha and beta), in this
 * order: the sum scaled by alpha (scale), then C + that (add: a later block,
 * or beta = 1), or beta*C + that in one FMA (blend), or C = that (the first
 * block with beta = 0: C not read). */
typedef struct gemm_epilogue {
    bool scale, add, blend;
    float alpha, beta;
} gemm_epilogue;

static inline gemm_epilogue gemm_epilogue_for(float alpha, float beta, bool first)
{
    return (gemm_epilogue){.scale = alpha != 1.0f,
                           .add = !first || beta == 1.0f,
                           .blend = first && beta != 0.0f && beta != 1.0f,
                           .alpha = alpha,
                           .beta = beta};
}

extern const gemm_kernels gemm_kernels_avx512, gemm_kernels_avx2;

#endif
