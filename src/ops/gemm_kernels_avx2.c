/* gemm_kernels_avx2.c — the AVX2 + FMA kernels of our packed GEMM, for CPUs
 * without AVX-512 (gemm_packed.c runs the loops; gemm_kernels.h the
 * contract).
 *
 * The micro-kernel keeps a 6 × 16 tile of C in 12 ymm registers; each k
 * loads 16 floats of B (two ymm) and broadcasts 6 floats of A: 12 FMAs per
 * 8 loads, 15 of the 16 registers live (the usual Haswell-class shape).
 * Each element's sum is the same FMA chain as in the AVX-512 kernels, so the
 * two sets give the same bits.  Edges: panels are zero-padded when packed,
 * stores are masked, and the last panel of M runs a 2- or 4-row kernel
 * where it is that short.  Only a transposed B (N × K) is transposed while
 * packing (8 × 8 blocks in registers).
 */
#include "ops/gemm_kernels.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_CODE 1
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define HAVE_AVX2_CODE 0
#endif

enum {
    MR = 6,      /* rows of the C tile in registers */
    NR = 16,     /* columns: two ymm */
    KC = GEMM_KC /* a B micro-panel is KC × NR, 24 KiB */
};

static bool supported(void)
{
#if HAVE_AVX2_CODE
    /* libgcc's checks include the OS's support for the ymm state (XCR0). */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

#if HAVE_AVX2_CODE

/* Lanes j < n of a ymm set (n may be ≤ 0 or ≥ 8). */
TARGET_AVX2 static inline __m256i lanes_below(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* r[i] (row i) becomes column i. */
TARGET_AVX2 static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* rows (≤ 8) rows of src, each contiguous in k (row stride ld), kc values
 * each, into dst k-major: dst[k*NR + i] = src[i*ld + k] for i < 8 (values
 * of rows past `rows` are zero).  Only a transposed B needs this. */
TARGET_AVX2 static void pack_rows_k_major(const float *src, long ld, int rows, int kc, float *dst)
{
    for (int k0 = 0; k0 < kc; k0 += 8) {
        int kn = kc - k0 < 8 ? kc - k0 : 8;
        __m256i kmask = lanes_below(kn);
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i >= rows  ? _mm256_setzero_ps()
                   : kn == 8  ? _mm256_loadu_ps(src + (long)i * ld + k0)
                              : _mm256_maskload_ps(src + (long)i * ld + k0, kmask);
        transpose8(r);
        for (int k = 0; k < kn; k++)
            _mm256_store_ps(dst + (long)(k0 + k) * NR, r[k]);
    }
}

/* gemm_kernels.h's pack_a_kmajor: A stored K × M, the MR values of one k
 * adjacent. */
static void pack_a_kmajor(const float *A, long lda, int mc, int kc, float *dst)
{
    for (int i0 = 0; i0 < mc; i0 += MR) {
        int mr = mc - i0 < MR ? mc - i0 : MR;
        float *panel = dst + (long)i0 * kc;
        if (mr == MR) { /* a constant size, which the compiler inlines: no library call per 24 bytes */
            for (int k = 0; k < kc; k++)
                memcpy(panel + (long)k * MR, A + (long)k * lda + i0, MR * sizeof(float));
            continue;
        }
        for (int k = 0; k < kc; k++) { /* the last, short panel: zeros below its rows */
            memcpy(panel + (long)k * MR, A + (long)k * lda + i0, (size_t)mr * sizeof(float));
            memset(panel + (long)k * MR + mr, 0, (size_t)(MR - mr) * sizeof(float));
        }
    }
}

/* kc rows of NR floats of B (row stride ldb) into one k-major panel; an
 * edge panel (nr < NR) gets zeros past column nr. */
TARGET_AVX2 static void copy_panel(const float *B, long ldb, int kc, int nr, float *dst)
{
    if (nr == NR) {
        for (int k = 0; k < kc; k++) {
            const float *src = B + (long)k * ldb;
            _mm_prefetch((const char *)(src + 8 * ldb), _MM_HINT_T0); /* a row 8 on: a long stride */
            _mm256_store_ps(dst + (long)k * NR, _mm256_loadu_ps(src));
            _mm256_store_ps(dst + (long)k * NR + 8, _mm256_loadu_ps(src + 8));
        }
    } else {
        __m256i m0 = lanes_below(nr), m1 = lanes_below(nr - 8);
        for (int k = 0; k < kc; k++) {
            const float *src = B + (long)k * ldb;
            _mm256_store_ps(dst + (long)k * NR, _mm256_maskload_ps(src, m0));
            _mm256_store_ps(dst + (long)k * NR + 8, _mm256_maskload_ps(src + 8, m1));
        }
    }
}

/* gemm_kernels.h's pack_b. */
TARGET_AVX2 static void pack_b(bool trans, const float *B, long ldb, int kc, int nc, float *dst)
{
    for (int j0 = 0; j0 < nc; j0 += NR, dst += (long)NR * kc) {
        int nr = nc - j0 < NR ? nc - j0 : NR;
        if (!trans) { /* stored K × N: the NR values of one k are adjacent */
            copy_panel(B + j0, ldb, kc, nr, dst);
        } else { /* stored N × K: each column of op(B) contiguous in k */
            for (int h = 0; h < NR; h += 8) {
                int rows = nr - h < 0 ? 0 : nr - h > 8 ? 8 : nr - h;
                pack_rows_k_major(B + (long)(j0 + h) * ldb, ldb, rows, kc, dst + h);
            }
        }
    }
}

/* Whole vectors with plain loads and stores, or the edge of a matrix under
 * masks (`whole` a literal in each instantiation). */
TARGET_AVX2 static inline __attribute__((always_inline)) __m256 load_lanes(const bool whole, __m256i m, const float *p)
{
    return whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

TARGET_AVX2 static inline __attribute__((always_inline)) void store_lanes(const bool whole, float *p, __m256i m,
                                                                         __m256 v)
{
    if (whole)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m, v);
}

/* One row's two vectors of sum into C at `row` (columns under m0/m1). */
TARGET_AVX2 static inline __attribute__((always_inline)) void store_row(const bool whole, __m256 x0, __m256 x1,
                                                                       float *row, __m256i m0, __m256i m1,
                                                                       const gemm_epilogue *ep)
{
    if (ep->scale) {
        __m256 va = _mm256_set1_ps(ep->alpha);
        x0 = _mm256_mul_ps(va, x0);
        x1 = _mm256_mul_ps(va, x1);
    }
    if (ep->add) {
        x0 = _mm256_add_ps(load_lanes(whole, m0, row), x0);
        x1 = _mm256_add_ps(load_lanes(whole, m1, row + 8), x1);
    } else if (ep->blend) {
        __m256 vb = _mm256_set1_ps(ep->beta);
        x0 = _mm256_fmadd_ps(vb, load_lanes(whole, m0, row), x0);
        x1 = _mm256_fmadd_ps(vb, load_lanes(whole, m1, row + 8), x1);
    }
    store_lanes(whole, row, m0, x0);
    store_lanes(whole, row + 8, m1, x1);
}

/* kc steps of packed a times packed b (NR per k), summed from zero, for the
 * first `rows` rows of the panel (a constant in each instantiation below;
 * a_kmajor: which of the two layouts of A, gemm_kernels.h).  Out into a
 * `rows`-high tile of C (c_direct: through the epilogue, from the registers;
 * columns under m0/m1, all set for a whole tile) or, otherwise, the
 * rows × NR sum into `out`. */
TARGET_AVX2 static inline __attribute__((always_inline)) void kernel_rows(const int rows, const bool a_kmajor, int kc,
                                                                         const float *restrict a,
                                                                         const float *restrict b, float *out,
                                                                         long ldc, __m256i m0, __m256i m1,
                                                                         bool whole, bool c_direct,
                                                                         const gemm_epilogue *ep)
{
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    if (c_direct) {
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) {
            _mm_prefetch((const char *)(out + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(out + i * ldc + 15), _MM_HINT_T0);
        }
    }
    /* Unrolled: 2-7 % faster on a Zen 3 (BENCHMARKS.md, session 32); the
     * FMA chain of each element is the same. */
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) {
            __m256 ai = _mm256_broadcast_ss(a_kmajor ? a + i : a + (long)i * KC);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += a_kmajor ? MR : 1;
        b += NR;
    }
    if (c_direct && whole) {
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++)
            store_row(true, acc[i][0], acc[i][1], out + i * ldc, m0, m1, ep);
    } else if (c_direct) {
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++)
            store_row(false, acc[i][0], acc[i][1], out + i * ldc, m0, m1, ep);
    } else {
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) {
            _mm256_store_ps(out + i * NR, acc[i][0]);
            _mm256_store_ps(out + i * NR + 8, acc[i][1]);
        }
    }
}

/* The full-height kernel, and shorter ones for the last panel of M. */
#define KERNEL_VARIANT(name, R, KMAJOR)                                                                           \
    TARGET_AVX2 __attribute__((noinline)) static void name(int kc, const float *restrict a,                       \
                                                           const float *restrict b, float *out, long ldc,         \
                                                           __m256i m0, __m256i m1, bool whole, bool c_direct,     \
                                                           const gemm_epilogue *ep)                               \
    {                                                                                                             \
        kernel_rows(R, KMAJOR, kc, a, b, out, ldc, m0, m1, whole, c_direct, ep);                                  \
    }
KERNEL_VARIANT(micro_kernel, MR, true)
KERNEL_VARIANT(micro_kernel_4, 4, true)
KERNEL_VARIANT(micro_kernel_2, 2, true)
KERNEL_VARIANT(micro_kernel_rows, MR, false)
KERNEL_VARIANT(micro_kernel_rows_4, 4, false)
KERNEL_VARIANT(micro_kernel_rows_2, 2, false)

typedef void (*kernel_fn)(int, const float *restrict, const float *restrict, float *, long, __m256i, __m256i, bool,
                          bool, const gemm_epilogue *);

/* The shortest kernel that covers mr rows, and its height. */
static kernel_fn kernel_for(int mr, bool a_kmajor, int *height)
{
    if (mr <= 2)
        return *height = 2, a_kmajor ? micro_kernel_2 : micro_kernel_rows_2;
    if (mr <= 4)
        return *height = 4, a_kmajor ? micro_kernel_4 : micro_kernel_rows_4;
    return *height = MR, a_kmajor ? micro_kernel : micro_kernel_rows;
}

/* gemm_kernels.h's tile.  The epilogue (alpha, beta) runs on the registers,
 * so every full-height tile goes straight to C; a shorter one (the last
 * panel of M) runs a taller kernel into a buffer, and its mr rows go on from
 * there. */
TARGET_AVX2 static void tile(int mr, int nr, bool a_kmajor, int kc, const float *a, const float *b, float *c,
                             long ldc, float alpha, float beta, bool first)
{
    int height;
    kernel_fn kernel = kernel_for(mr, a_kmajor, &height);
    const gemm_epilogue ep = gemm_epilogue_for(alpha, beta, first);
    __m256i m0 = lanes_below(nr), m1 = lanes_below(nr - 8);
    if (mr == height) {
        kernel(kc, a, b, c, ldc, m0, m1, nr == NR, true, &ep);
    } else {
        _Alignas(32) float buf[MR * NR];
        kernel(kc, a, b, buf, NR, m0, m1, true, false, &ep);
        for (int i = 0; i < mr; i++)
            store_row(false, _mm256_load_ps(buf + i * NR), _mm256_load_ps(buf + i * NR + 8), c + (long)i * ldc, m0,
                      m1, &ep);
    }
}

#endif

const gemm_kernels gemm_kernels_avx2 = {
    .mr = MR,
    .nr = NR,
    .supported = supported,
#if HAVE_AVX2_CODE
    .pack_a_kmajor = pack_a_kmajor,
    .pack_b = pack_b,
    .tile = tile,
#endif
};
