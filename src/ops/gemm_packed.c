/* gemm_packed.c — our own single-precision GEMM: the loops of a packed GEMM
 * and the split over threads, shared by the instruction sets' kernels
 * (gemm_kernels.h; gemm.h says where gemm() uses it).
 *
 * The structure is the usual one of packed GEMMs (Goto / BLIS): C is
 * computed in mr × nr tiles by a register-blocked micro-kernel that reads A
 * and B from small "packed" copies laid out in the order it consumes them:
 *
 *   for each block of NC columns          (B block, KC × NC, lives in L3)
 *     for each block of KC inner indices
 *       pack B's block into nr-wide panels, k-major
 *       for each block of MC rows         (A block, MC × KC, lives in L2)
 *         pack A's block into mr-tall panels (k-major, or row-major where A
 *         is stored row-major: a copy either way, never a transpose)
 *         for each nr panel, for each mr panel: micro-kernel (KC FMAs deep)
 *
 * Summation order: every element of C is the sum over k in increasing order,
 * one FMA at a time from zero, in blocks of KC that are added to C in order
 * (a two-level sum: continuing one FMA chain across blocks instead put two
 * long-K weight gradients of the tests past their tolerances).  It does not
 * depend on M, N, the thread split, where a tile starts or the instruction
 * set, so a row of C is bit-identical whatever batch it was computed in
 * (OpenBLAS does not promise that).
 *
 * Threads: outside a parallel region the output is split into one stripe
 * per thread (columns when N is the larger side, else rows), each stripe a
 * GEMM of its own with its own packed copies (no thread waits on another's
 * packing); inside a parallel region, even an inactive one, it runs on the
 * calling thread only.
 */
#include "ops/gemm_packed.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/error.h"
#include "core/thread_scratch.h"
#include "ops/gemm_kernels.h"

bool gemm_avx512_supported(void) { return gemm_kernels_avx512.supported(); }
bool gemm_avx2_supported(void) { return gemm_kernels_avx2.supported(); }

/* Each thread's packing buffers, grown to the largest call it has made. */
static _Thread_local thread_scratch pack_a_buf, pack_b_buf;

static float *grow(thread_scratch *buf, size_t n)
{
    return thread_scratch_reserve(buf, n * sizeof(float), 64, "the GEMM's packed operands");
}

static int round_up(int n, int unit) { return (n + unit - 1) / unit * unit; }

/* A[mc × kc] of op(A), A stored M × K, into panels of mr rows, each row
 * copied as it is with a row stride of GEMM_KC (rows past mc zero): the
 * micro-kernels broadcast from mr rows at constant offsets, and packing
 * needs no transpose. */
static void pack_a_rows(const float *A, long lda, int mc, int kc, int mr_panel, float *dst)
{
    for (int i = 0; i < round_up(mc, mr_panel); i++) {
        if (i < mc)
            memcpy(dst + (long)i * GEMM_KC, A + (long)i * lda, (size_t)kc * sizeof(float));
        else
            memset(dst + (long)i * GEMM_KC, 0, (size_t)kc * sizeof(float));
    }
}

/* B packed once by gemm_prepack_b: its panels, the padded width of the
 * whole op(B) and the column where this call's C starts in it. */
typedef struct prepacked_b {
    const float *panels;
    long width;
    int col0;
} prepacked_b;

/* One thread's GEMM on a stripe of C; B packed here, or already (pre). */
static void gemm_serial(const gemm_kernels *ks, bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                        long lda, const float *B, long ldb, const prepacked_b *pre, float beta, float *C, long ldc)
{
    const int MR = ks->mr, NR = ks->nr, KC = GEMM_KC, MC = GEMM_MC, NC = GEMM_NC;
    int kc_max = K < KC ? K : KC;
    int nc_max = N < NC ? N : NC;
    int mc_max = M < MC ? M : MC;
    float *pb = pre ? NULL : grow(&pack_b_buf, (size_t)kc_max * round_up(nc_max, NR));
    /* row-major panels keep a row stride of KC whatever kc is */
    float *pa = grow(&pack_a_buf, (size_t)(ta ? kc_max : KC) * round_up(mc_max, MR));
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            bool first = pc == 0;
            /* A block of the prepacked layout holds kc rows of every panel. */
            const float *block = pre ? pre->panels + (long)pc * pre->width + (long)(pre->col0 + jc) * kc : pb;
            if (!pre)
                ks->pack_b(tb, tb ? B + (long)jc * ldb + pc : B + (long)pc * ldb + jc, ldb, kc, nc, pb);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = M - ic < MC ? M - ic : MC;
                if (ta)
                    ks->pack_a_kmajor(A + (long)pc * lda + ic, lda, mc, kc, pa);
                else
                    pack_a_rows(A + (long)ic * lda + pc, lda, mc, kc, MR, pa);
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    const float *bp = block + (long)jr * kc;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        ks->tile(mr, nr, ta, kc, pa + (long)ir * (ta ? kc : KC), bp,
                                 C + (long)(ic + ir) * ldc + jc + jr, ldc, alpha, beta, first);
                    }
                }
            }
        }
    }
}

/* B is either B (ldb, tb) or, where panels is not NULL, packed once
 * (gemm_prepack_b) for an op(B) whose padded width is `width`. */
static void gemm_packed(const gemm_kernels *ks, bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, const float *panels, long width, float beta, float *C,
                        int ldc)
{
    if (!ks->tile)
        die("our GEMM kernels are not built for this architecture");
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    /* Inside any parallel region, active or not, the calling thread only: a
     * fork there would start a nested team, new threads on every call. */
    int threads = omp_get_level() > 0 ? 1 : omp_get_max_threads();
    /* Below ~1 MFLOP a fork costs more than the second thread saves. */
    if ((double)M * N * K < 5e5)
        threads = 1;
    /* Stripes along the longer side of C, each a whole number of tiles. */
    bool by_cols = N >= M;
    int unit = by_cols ? ks->nr : ks->mr, len = by_cols ? N : M;
    int units = (len + unit - 1) / unit;
    if (threads > units)
        threads = units;
    prepacked_b pre = {panels, width, 0};
    if (threads <= 1) {
        gemm_serial(ks, ta, tb, M, N, K, alpha, A, lda, B, ldb, panels ? &pre : NULL, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int u0 = (int)((long)units * t / nt), u1 = (int)((long)units * (t + 1) / nt);
        int s0 = u0 * unit, s1 = u1 * unit < len ? u1 * unit : len;
        prepacked_b mine = {panels, width, by_cols ? s0 : 0}; /* a column stripe starts at a panel */
        if (s1 > s0) {
            if (by_cols)
                gemm_serial(ks, ta, tb, M, s1 - s0, K, alpha, A, lda, panels ? NULL : tb ? B + (long)s0 * ldb : B + s0,
                            ldb, panels ? &mine : NULL, beta, C + s0, ldc);
            else
                gemm_serial(ks, ta, tb, s1 - s0, N, K, alpha, ta ? A + s0 : A + (long)s0 * lda, lda, B, ldb,
                            panels ? &mine : NULL, beta, C + (long)s0 * ldc, ldc);
        }
    }
}

void gemm_avx512(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc)
{
    gemm_packed(&gemm_kernels_avx512, ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, 0, beta, C, ldc);
}

void gemm_avx2(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc)
{
    gemm_packed(&gemm_kernels_avx2, ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, 0, beta, C, ldc);
}

/* ---- B packed once ---- */

/* The set gemm() runs where it runs ours (gemm.c): AVX-512, else AVX2. */
static const gemm_kernels *prepack_set(void)
{
    return gemm_avx512_supported() ? &gemm_kernels_avx512 : gemm_avx2_supported() ? &gemm_kernels_avx2 : NULL;
}

int gemm_prepacked_width(void)
{
    const gemm_kernels *ks = prepack_set();
    return ks ? ks->nr : 0;
}

size_t gemm_prepacked_floats(int K, int N)
{
    const int nr = gemm_prepacked_width();
    if (nr == 0)
        die("gemm_prepacked_floats: no GEMM kernels of ours on this CPU");
    return (size_t)K * (size_t)round_up(N, nr);
}

/* Block by block of GEMM_KC rows of op(B), each block's panels split among
 * the threads (each packs whole panels: pack_b's own layout, so a block is
 * exactly what gemm_serial would have packed for it). */
void gemm_prepack_b(bool trans_b, const float *B, int ldb, int K, int N, float *packed)
{
    const gemm_kernels *ks = prepack_set();
    if (!ks)
        die("gemm_prepack_b: no GEMM kernels of ours on this CPU");
    if ((uintptr_t)packed % 64)
        die("gemm_prepack_b: the packed buffer must be 64-byte aligned (the kernels load it aligned)");
    const int nr = ks->nr, panels = (N + nr - 1) / nr;
    const long width = round_up(N, nr);
    /* threads only outside every region: inside an inactive one a region
     * would start a nested team */
    const bool top = omp_get_level() == 0;
    for (int pc = 0; pc < K; pc += GEMM_KC) {
        const int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
        float *block = packed + (long)pc * width;
#pragma omp parallel for schedule(static) if (top && (long)kc * N >= (1L << 16))
        for (int j = 0; j < panels; j++) {
            const int c0 = j * nr, nc = N - c0 < nr ? N - c0 : nr;
            ks->pack_b(trans_b, trans_b ? B + (long)c0 * ldb + pc : B + (long)pc * ldb + c0, ldb, kc, nc,
                       block + (long)c0 * kc);
        }
    }
}

void gemm_prepacked(bool trans_a, int M, int N, int K, float alpha, const float *A, int lda, const float *packed,
                    float beta, float *C, int ldc)
{
    const gemm_kernels *ks = prepack_set();
    if (!ks)
        die("gemm_prepacked: no GEMM kernels of ours on this CPU");
    gemm_packed(ks, trans_a, false, M, N, K, alpha, A, lda, NULL, 0, packed, round_up(N, ks->nr), beta, C, ldc);
}
