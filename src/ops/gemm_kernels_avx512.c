/* gemm_kernels_avx512.c — the AVX-512 kernels of our packed GEMM
 * (gemm_packed.c runs the loops; gemm_kernels.h the contract).
 *
 * The micro-kernel keeps a 12 × 32 tile of C in 24 zmm registers; each k
 * loads 32 floats of B (two zmm) and broadcasts 12 floats of A: 24 FMAs per
 * 14 loads; where it writes C directly it first prefetches the C tile, whose
 * rows are far apart in memory (6–8 % on 2-thread 1024×3072×768 GEMMs: the
 * tile's loads and stores no longer wait on memory at the end).  alpha and
 * beta are applied to the registers.  Edges: panels are zero-padded when
 * packed, stores are masked, and the last panel of M runs a 4- or 8-row
 * kernel where it is that short.
 * Only a transposed B (N × K) is transposed while packing.
 */
#include "ops/gemm_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "ops/avx512_transpose.h"
#define HAVE_AVX512_CODE 1
#define TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#else
#define HAVE_AVX512_CODE 0
#endif

enum {
    MR = 12,      /* rows of the C tile in registers */
    NR = 32,      /* columns: two zmm */
    KC = GEMM_KC, /* a B micro-panel is KC × NR, 48 KiB */
};

static bool supported(void)
{
    /* REPAE_WITHOUT_AVX512: a binary that runs as on a CPU without it. */
#if HAVE_AVX512_CODE && !defined(REPAE_WITHOUT_AVX512)
    /* libgcc's checks include the OS's support for the zmm state (XCR0). */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

#if HAVE_AVX512_CODE

/* The lanes of the first nr (≤ NR) columns of a tile, in its two zmm halves. */
static inline void column_masks(int nr, __mmask16 *m0, __mmask16 *m1)
{
    *m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    *m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
}

/* rows (≤ 16) rows of src, each contiguous in k (row stride ld), kc values
 * each, into dst k-major: dst[k*dst_ld + i] = src[i*ld + k] for i < 16
 * (values of rows past `rows` are zero).  Only a transposed B needs this. */
TARGET_AVX512 static void pack_rows_k_major(const float *src, long ld, int rows, int kc, float *dst, int dst_ld)
{
    for (int k0 = 0; k0 < kc; k0 += 16) {
        int kn = kc - k0 < 16 ? kc - k0 : 16;
        __mmask16 kmask = (__mmask16)((1u << kn) - 1);
        __m512 r[16];
        for (int i = 0; i < rows; i++) /* 16 row streams at once: more than the prefetchers follow */
            _mm_prefetch((const char *)(src + (long)i * ld + k0 + 64), _MM_HINT_T0);
        for (int i = 0; i < 16; i++)
            r[i] = i >= rows  ? _mm512_setzero_ps()
                   : kn == 16 ? _mm512_loadu_ps(src + (long)i * ld + k0)
                              : _mm512_maskz_loadu_ps(kmask, src + (long)i * ld + k0);
        avx512_transpose16(r);
        for (int k = 0; k < kn; k++)
            _mm512_storeu_ps(dst + (long)(k0 + k) * dst_ld, r[k]);
    }
}

/* gemm_kernels.h's pack_a_kmajor: A stored K × M, the MR values of one k
 * adjacent. */
TARGET_AVX512 static void pack_a_kmajor(const float *A, long lda, int mc, int kc, float *dst)
{
    for (int i0 = 0; i0 < mc; i0 += MR) {
        int mr = mc - i0 < MR ? mc - i0 : MR;
        float *panel = dst + (long)i0 * kc;
        __mmask16 m = (__mmask16)((1u << mr) - 1);
        if (mr == MR) /* 8 + 4 floats: no masked load or store (slow on AMD cores) */
            for (int k = 0; k < kc; k++) {
                const float *a = A + (long)k * lda + i0;
                _mm256_storeu_ps(panel + (long)k * MR, _mm256_loadu_ps(a));
                _mm_storeu_ps(panel + (long)k * MR + 8, _mm_loadu_ps(a + 8));
            }
        else
            for (int k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(panel + (long)k * MR, 0xfff, _mm512_maskz_loadu_ps(m, A + (long)k * lda + i0));
    }
}

/* Masked loads and stores are slow on AMD cores even with every lane set, so
 * the loops below come in two instantiations (`whole` a literal): whole
 * vectors with plain loads and stores, or the edge of a matrix under masks. */
TARGET_AVX512 static inline __attribute__((always_inline)) __m512 load_lanes(const bool whole, __mmask16 m,
                                                                            const float *p)
{
    return whole ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}

TARGET_AVX512 static inline __attribute__((always_inline)) void store_lanes(const bool whole, float *p, __mmask16 m,
                                                                           __m512 v)
{
    if (whole)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, m, v);
}

/* kc rows of NR floats of B (row stride ldb, lanes m0/m1) into one k-major
 * panel; past the edge the panel gets zeros. */
TARGET_AVX512 static inline __attribute__((always_inline)) void copy_panel(const float *B, long ldb, int kc,
                                                                          float *dst, __mmask16 m0, __mmask16 m1,
                                                                          const bool whole)
{
    for (int k = 0; k < kc; k++) {
        const float *src = B + (long)k * ldb;
        if (whole) { /* a row 8 on: a long stride (an edge panel is short, and follows a whole one) */
            _mm_prefetch((const char *)(src + 8 * ldb), _MM_HINT_T0);
            _mm_prefetch((const char *)(src + 8 * ldb + 16), _MM_HINT_T0);
        }
        _mm512_store_ps(dst + (long)k * NR, load_lanes(whole, m0, src));
        _mm512_store_ps(dst + (long)k * NR + 16, load_lanes(whole, m1, src + 16));
    }
}

/* B[pc.., jc..] (kc × nc of op(B)) into ceil(nc/NR) panels of kc × NR,
 * k-major (panel[k*NR + j]), columns past nc zero. */
TARGET_AVX512 static void pack_b(bool trans, const float *B, long ldb, int kc, int nc, float *dst)
{
    for (int j0 = 0; j0 < nc; j0 += NR, dst += (long)NR * kc) {
        int nr = nc - j0 < NR ? nc - j0 : NR;
        if (!trans) { /* stored K × N: the NR values of one k are adjacent */
            __mmask16 m0, m1;
            column_masks(nr, &m0, &m1);
            if (nr == NR)
                copy_panel(B + j0, ldb, kc, dst, m0, m1, true);
            else
                copy_panel(B + j0, ldb, kc, dst, m0, m1, false);
        } else { /* stored N × K: each column of op(B) contiguous in k */
            for (int h = 0; h < NR; h += 16) {
                int rows = nr - h < 0 ? 0 : nr - h > 16 ? 16 : nr - h;
                pack_rows_k_major(B + (long)(j0 + h) * ldb, ldb, rows, kc, dst + h, NR);
            }
        }
    }
}

/* One row's two vectors of sum into C at `row` (columns under m0/m1),
 * through the epilogue. */
TARGET_AVX512 static inline __attribute__((always_inline)) void store_row(const bool whole, __m512 x0, __m512 x1,
                                                                         float *row, __mmask16 m0, __mmask16 m1,
                                                                         const gemm_epilogue *ep)
{
    if (ep->scale) {
        __m512 va = _mm512_set1_ps(ep->alpha);
        x0 = _mm512_mul_ps(va, x0);
        x1 = _mm512_mul_ps(va, x1);
    }
    if (ep->add) {
        x0 = _mm512_add_ps(load_lanes(whole, m0, row), x0);
        x1 = _mm512_add_ps(load_lanes(whole, m1, row + 16), x1);
    } else if (ep->blend) {
        __m512 vb = _mm512_set1_ps(ep->beta);
        x0 = _mm512_fmadd_ps(vb, load_lanes(whole, m0, row), x0);
        x1 = _mm512_fmadd_ps(vb, load_lanes(whole, m1, row + 16), x1);
    }
    store_lanes(whole, row, m0, x0);
    store_lanes(whole, row + 16, m1, x1);
}

/* kc steps of packed a times packed b (NR per k), summed from zero, for the
 * first `rows` rows of the panel (a constant in each instantiation below;
 * a_kmajor: which of the two layouts of A, gemm_kernels.h).  Nothing else is live in the
 * loop, so the 24 accumulators, two B vectors and a broadcast fit in the 32
 * zmm registers.
 * Two ways out:
 * - c_direct: into a `rows`-high tile of C (row stride ldc, columns masked
 *   by m0/m1) through the epilogue, from the registers;
 * - otherwise the rows × NR sum goes to `out` (tile finishes it). */
TARGET_AVX512 static inline __attribute__((always_inline)) void kernel_rows(const int rows, const bool a_kmajor, int kc,
                                                                           const float *restrict a,
                                                                           const float *restrict b, float *out,
                                                                           long ldc, __mmask16 m0, __mmask16 m1,
                                                                           bool c_direct,
                                                                           const gemm_epilogue *ep)
{
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < rows; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    if (c_direct) {
#pragma GCC unroll 12
        for (int i = 0; i < rows; i++) {
            _mm_prefetch((const char *)(out + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(out + i * ldc + 16), _MM_HINT_T0);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < rows; i++) {
            __m512 ai = _mm512_set1_ps(a_kmajor ? a[i] : a[(long)i * KC]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += a_kmajor ? MR : 1;
        b += NR;
    }
    if (c_direct && (m0 & m1) == 0xffff) {
#pragma GCC unroll 12
        for (int i = 0; i < rows; i++)
            store_row(true, acc[i][0], acc[i][1], out + i * ldc, m0, m1, ep);
    } else if (c_direct) {
#pragma GCC unroll 12
        for (int i = 0; i < rows; i++)
            store_row(false, acc[i][0], acc[i][1], out + i * ldc, m0, m1, ep);
    } else {
#pragma GCC unroll 12
        for (int i = 0; i < rows; i++) {
            _mm512_store_ps(out + i * NR, acc[i][0]);
            _mm512_store_ps(out + i * NR + 16, acc[i][1]);
        }
    }
}

/* The full-height kernel, and shorter ones for the last panel of M (M = 64
 * is 5 panels of 12 and 4 rows: the 12-row kernel would do 72 rows' work).
 * Each element's sum is the same FMA chain in every variant. */
#define KERNEL_VARIANT(name, R, KMAJOR)                                                                            \
    TARGET_AVX512 __attribute__((noinline)) static void name(int kc, const float *restrict a,                      \
                                                             const float *restrict b, float *out, long ldc,        \
                                                             __mmask16 m0, __mmask16 m1, bool c_direct,            \
                                                             const gemm_epilogue *ep)                              \
    {                                                                                                              \
        kernel_rows(R, KMAJOR, kc, a, b, out, ldc, m0, m1, c_direct, ep);                                          \
    }
KERNEL_VARIANT(micro_kernel, MR, true)
KERNEL_VARIANT(micro_kernel_8, 8, true)
KERNEL_VARIANT(micro_kernel_4, 4, true)
KERNEL_VARIANT(micro_kernel_rows, MR, false)
KERNEL_VARIANT(micro_kernel_rows_8, 8, false)
KERNEL_VARIANT(micro_kernel_rows_4, 4, false)

typedef void (*kernel_fn)(int, const float *restrict, const float *restrict, float *, long, __mmask16, __mmask16,
                          bool, const gemm_epilogue *);

/* The shortest kernel that covers mr rows of A packed k-major (a_kmajor) or
 * row-major, and its height. */
static kernel_fn kernel_for(int mr, bool a_kmajor, int *height)
{
    if (mr <= 4)
        return *height = 4, a_kmajor ? micro_kernel_4 : micro_kernel_rows_4;
    if (mr <= 8)
        return *height = 8, a_kmajor ? micro_kernel_8 : micro_kernel_rows_8;
    return *height = MR, a_kmajor ? micro_kernel : micro_kernel_rows;
}

/* gemm_kernels.h's tile.  The epilogue (alpha, beta) runs on the registers,
 * so every full-height tile goes straight to C; a shorter one (the last
 * panel of M) runs a taller kernel into a buffer, and its mr rows go on from
 * there. */
TARGET_AVX512 static void tile(int mr, int nr, bool a_kmajor, int kc, const float *a, const float *b, float *c,
                               long ldc, float alpha, float beta, bool first)
{
    __mmask16 m0, m1;
    column_masks(nr, &m0, &m1);
    int height;
    kernel_fn kernel = kernel_for(mr, a_kmajor, &height);
    const gemm_epilogue ep = gemm_epilogue_for(alpha, beta, first);
    if (mr == height) {
        kernel(kc, a, b, c, ldc, m0, m1, true, &ep);
    } else {
        _Alignas(64) float buf[MR * NR];
        kernel(kc, a, b, buf, NR, 0, 0, false, &ep);
        for (int i = 0; i < mr; i++)
            store_row(false, _mm512_load_ps(buf + i * NR), _mm512_load_ps(buf + i * NR + 16), c + (long)i * ldc, m0,
                      m1, &ep);
    }
}

#endif

const gemm_kernels gemm_kernels_avx512 = {
    .mr = MR,
    .nr = NR,
    .supported = supported,
#if HAVE_AVX512_CODE
    .pack_a_kmajor = pack_a_kmajor,
    .pack_b = pack_b,
    .tile = tile,
#endif
};

