#include "ops/im2col_permute.h"

#include <stdatomic.h>
#include <string.h>

#include "core/error.h"
#include "ops/gemm_packed.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "ops/avx512_transpose.h"
#define HAVE_AVX512_CODE 1
#define TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#else
#define HAVE_AVX512_CODE 0
#endif

bool im2col_permute_applies(int plane, int kk, long HWo)
{
    /* Decided once: 0 undecided, 1 no, 2 yes (a race computes the same answer twice). */
    static atomic_int cpu;
    int c = atomic_load_explicit(&cpu, memory_order_relaxed);
    if (!c) {
        c = HAVE_AVX512_CODE && gemm_avx512_supported() ? 2 : 1;
        atomic_store_explicit(&cpu, c, memory_order_relaxed);
    }
    return c == 2 && plane > 0 && plane <= IM2COL_PERMUTE_PLANE_MAX && HWo > 0 &&
           (long)kk * ((HWo + 15) / 16) <= IM2COL_PERMUTE_ROWS_MAX;
}

void im2col_permute_make(im2col_permute_plan *p, const int *tap_src, int kk, long HWo, int plane)
{
    memset(p, 0, sizeof *p);
    p->kk = kk, p->HWo = (int)HWo, p->plane = plane, p->chunks = (int)((HWo + 15) / 16);
    for (int t = 0; t < kk; t++)
        for (int ch = 0; ch < p->chunks; ch++) {
            int row = t * p->chunks + ch;
            for (int l = 0; l < 16 && ch * 16 + l < HWo; l++) {
                int src = tap_src[t * HWo + ch * 16 + l];
                if (src < 0)
                    continue;
                p->idx[row][l] = (uint8_t)src;
                p->valid[row] |= (uint16_t)(1u << l);
            }
        }
}

bool im2col_permute_transposed_applies(int kk, long HWo) { return kk <= 16 && HWo <= 16; }

#if HAVE_AVX512_CODE

static inline __mmask16 first_lanes(int n) { return n >= 16 ? 0xffff : (__mmask16)((1u << (n < 0 ? 0 : n)) - 1); }

/* The 16 lanes idx[l] of the plane in v (two two-source permutes and a
 * blend), +0 where bit l of valid is clear. */
TARGET_AVX512 static inline __attribute__((always_inline)) __m512 plane_lanes(const __m512 v[4], const uint8_t idx[16],
                                                                             uint16_t valid)
{
    __m512i ix = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)idx));
    __m512 lo = _mm512_permutex2var_ps(v[0], ix, v[1]); /* plane elements 0..31 */
    __m512 hi = _mm512_permutex2var_ps(v[2], ix, v[3]); /* 32..63 */
    return _mm512_maskz_mov_ps(valid, _mm512_mask_blend_ps(_mm512_test_epi32_mask(ix, _mm512_set1_epi32(32)), lo, hi));
}

TARGET_AVX512 static inline __attribute__((always_inline)) void load_plane(__m512 v[4], const float *xc, int plane)
{
    for (int j = 0; j < 4; j++)
        v[j] = 16 * j + 16 <= plane ? _mm512_loadu_ps(xc + 16 * j)
               : 16 * j < plane     ? _mm512_maskz_loadu_ps(first_lanes(plane - 16 * j), xc + 16 * j)
                                    : _mm512_setzero_ps();
}

TARGET_AVX512 void permute_gather_rows(float *const *dst, int rows, const float *xc, int plane,
                                       const uint8_t (*idx)[16], const uint16_t *valid, int n)
{
    __m512 v[4];
    load_plane(v, xc, plane);
    const __mmask16 lanes = first_lanes(n);
    for (int r = 0; r < rows; r++)
        _mm512_mask_storeu_ps(dst[r], lanes, plane_lanes(v, idx[r], valid[r]));
}

TARGET_AVX512 void im2col_permute_channel(float *cols, long ldc, const float *xc, int c, const im2col_permute_plan *p)
{
    __m512 v[4];
    load_plane(v, xc, p->plane);
    for (int t = 0; t < p->kk; t++) {
        float *d = cols + ((long)c * p->kk + t) * ldc;
        for (int ch = 0; ch < p->chunks; ch++) {
            int row = t * p->chunks + ch;
            _mm512_mask_storeu_ps(d + 16 * ch, first_lanes(p->HWo - 16 * ch), plane_lanes(v, p->idx[row], p->valid[row]));
        }
    }
}

TARGET_AVX512 void im2col_permute_channel_transposed(float *colsT, long ldk, const float *xc, int c,
                                                     const im2col_permute_plan *p)
{
    __m512 v[4], r[16];
    load_plane(v, xc, p->plane);
    for (int t = 0; t < 16; t++) /* one chunk: row t is tap t */
        r[t] = t < p->kk ? plane_lanes(v, p->idx[t], p->valid[t]) : _mm512_setzero_ps();
    avx512_transpose16(r); /* r[n]: the taps of position n */
    __mmask16 taps = first_lanes(p->kk);
    float *d = colsT + (long)c * p->kk;
    for (int n = 0; n < p->HWo; n++)
        _mm512_mask_storeu_ps(d + n * ldk, taps, r[n]);
}

#else

void im2col_permute_channel(float *cols, long ldc, const float *xc, int c, const im2col_permute_plan *p)
{
    die("im2col_permute: not built for this architecture");
}

void im2col_permute_channel_transposed(float *colsT, long ldk, const float *xc, int c, const im2col_permute_plan *p)
{
    die("im2col_permute: not built for this architecture");
}

void permute_gather_rows(float *const *dst, int rows, const float *xc, int plane, const uint8_t (*idx)[16],
                         const uint16_t *valid, int n)
{
    die("im2col_permute: not built for this architecture");
}

#endif
