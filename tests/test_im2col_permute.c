/* im2col_permute: the permute-based im2col for planes of at most 64 floats
 * writes bit for bit the columns the geometry defines (the value each tap
 * reads, +0 in the padding), for the stride, padding and plane sizes the
 * models use and the edges of the path (a plane of exactly 64 floats,
 * several 16-position chunks with a short last one, one output position);
 * special values (−0, NaN, ±inf) are copied as they are.  The transposed
 * form (the weight gradient's operand) holds the same values.  conv2d's PyTorch
 * parity tests run this path too on AVX-512 machines (their 4×4 and small
 * 3×3 cases have planes under 64 floats). */
#include <math.h>
#include <string.h>

#include "ops/conv2d.h"
#include "ops/gemm_packed.h"
#include "ops/im2col_permute.h"
#include "test.h"

/* The tap table of conv2d.c, from the geometry. */
static void tap_table(int *tap, const conv2d_shape *s)
{
    int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    for (int ki = 0; ki < s->kh; ki++)
        for (int kj = 0; kj < s->kw; kj++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    int ih = oh * s->stride - s->pad_top + ki, iw = ow * s->stride - s->pad_left + kj;
                    *tap++ = ih < 0 || ih >= s->H || iw < 0 || iw >= s->W ? -1 : ih * s->W + iw;
                }
}

static void check_shape(const char *name, conv2d_shape s)
{
    const int kk = s.kh * s.kw, plane = s.H * s.W;
    const long HWo = (long)conv2d_out_h(&s) * conv2d_out_w(&s);
    if (!im2col_permute_applies(plane, kk, HWo)) {
        CHECK(0, "%s: the permute path should apply (plane %d, %d taps, %ld positions)", name, plane, kk, HWo);
        return;
    }
    const int C = s.C_in;
    const long ldc = HWo + 5; /* a row stride past the row: nothing may be written between rows */
    /* the input and the tap table end at a page no access is allowed to */
    float *x = alloc_normal_guarded((size_t)C * plane, 1.0f, 7);
    int *tap = alloc_guarded(sizeof(int) * kk * HWo);
    x[0] = -0.0f, x[1] = NAN, x[plane - 1] = INFINITY, x[plane] = -INFINITY;
    tap_table(tap, &s);
    im2col_permute_plan p;
    im2col_permute_make(&p, tap, kk, HWo, plane);
    size_t n = (size_t)C * kk * ldc;
    float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        got[i] = want[i] = 12345.0f; /* sentinel between rows */
    for (int c = 0; c < C; c++) {
        im2col_permute_channel(got, ldc, x + (long)c * plane, c, &p);
        for (int t = 0; t < kk; t++)
            for (long q = 0; q < HWo; q++) {
                int src = tap[t * HWo + q];
                want[((long)c * kk + t) * ldc + q] = src < 0 ? 0.0f : x[(long)c * plane + src];
            }
    }
    CHECK(memcmp(got, want, n * sizeof(float)) == 0, "%s: columns differ from the geometry's", name);
    if (im2col_permute_transposed_applies(kk, HWo)) { /* the transposed form: the same values, [n][c·kk + t] */
        const long ldk = (long)C * kk + 3;
        size_t nt = (size_t)HWo * ldk;
        float *gotT = malloc(nt * sizeof(float)), *wantT = malloc(nt * sizeof(float));
        for (size_t i = 0; i < nt; i++)
            gotT[i] = wantT[i] = 12345.0f;
        for (int c = 0; c < C; c++) {
            im2col_permute_channel_transposed(gotT, ldk, x + (long)c * plane, c, &p);
            for (int t = 0; t < kk; t++)
                for (long q = 0; q < HWo; q++)
                    wantT[q * ldk + (long)c * kk + t] = want[((long)c * kk + t) * ldc + q];
        }
        CHECK(memcmp(gotT, wantT, nt * sizeof(float)) == 0, "%s: transposed columns differ", name);
        free(gotT), free(wantT);
    } else {
        CHECK(kk > 16 || HWo > 16, "%s: the transposed form should apply (%d taps, %ld positions)", name, kk, HWo);
    }
    free_guarded(x, sizeof(float) * C * plane), free_guarded(tap, sizeof(int) * kk * HWo);
    free(got), free(want);
}

/* Whether this CPU runs the permute path: the product's own test of the
 * CPU (gemm_packed.h), not im2col_permute_applies, so that a path that
 * wrongly turns itself off on an AVX-512 CPU fails here instead of being
 * skipped. */
static bool cpu_has_path(void)
{
    if (!gemm_avx512_supported())
        printf("     (no AVX-512 on this CPU: the permute path does not run; nothing to test)\n");
    return gemm_avx512_supported();
}

static void test_columns_bit_exact(void)
{
    if (!cpu_has_path())
        return;
    /* PatchGAN: 4×4 stride 2 on 8×8 → 4×4, stride 1 on 4×4 → 3×3 and 3×3 → 2×2 */
    check_shape("4x4 s2 8x8", conv2d_make(1, 3, 8, 8, 1, 4, 2, 1));
    check_shape("4x4 s1 4x4", conv2d_make(1, 2, 4, 4, 1, 4, 1, 1));
    check_shape("4x4 s1 3x3", conv2d_make(1, 2, 3, 3, 1, 4, 1, 1));
    /* VAE downsample: 3×3 stride 2, padding (0, 0, 1, 1) */
    check_shape("3x3 s2 asym 8x8", conv2d_make_pad(1, 2, 8, 8, 1, 3, 2, 0, 0, 1, 1));
    /* several chunks, short last one; non-square; a plane under 16 floats */
    check_shape("3x3 s1 8x8", conv2d_make(1, 2, 8, 8, 1, 3, 1, 1));
    check_shape("3x3 s1 7x9", conv2d_make(1, 2, 7, 9, 1, 3, 1, 1));
    check_shape("3x3 s1 3x5", conv2d_make(1, 2, 3, 5, 1, 3, 1, 1));
    check_shape("2x2 s2 2x2 (one position)", conv2d_make(1, 2, 2, 2, 1, 2, 2, 0));
}

static void test_applies_only_to_small_planes(void)
{
    if (!gemm_avx512_supported()) {
        CHECK(!im2col_permute_applies(64, 16, 16), "the permute path applies on a CPU without AVX-512");
        return;
    }
    CHECK(im2col_permute_applies(64, 16, 16), "a 64-float plane fits four registers");
    CHECK(im2col_permute_applies(1, 1, 1), "one float, one tap, one position");
    CHECK(!im2col_permute_applies(65, 9, 16), "a 65-float plane does not fit four registers");
    CHECK(!im2col_permute_applies(0, 9, 16), "an empty plane");
    CHECK(!im2col_permute_applies(16, 9, 0), "no output position");
    CHECK(!im2col_permute_applies(64, 49, 81), "49 taps × 6 chunks exceed the plan's rows");
    CHECK(im2col_permute_applies(64, 16, 64), "16 taps × 4 chunks fit");
    /* the plan's rows to the row: 16 taps × 16 chunks of 16 positions */
    CHECK(im2col_permute_applies(64, 16, 256), "16 taps × 16 chunks fill the plan's %d rows", IM2COL_PERMUTE_ROWS_MAX);
    CHECK(!im2col_permute_applies(64, 16, 257), "16 taps × 17 chunks exceed the plan's rows");
    CHECK(im2col_permute_applies(64, 256, 16), "256 taps × 1 chunk fill the plan's rows");
    CHECK(!im2col_permute_applies(64, 257, 1), "257 taps exceed the plan's rows");
}

/* permute_gather_rows (the Winograd input gather of small maps) against its
 * definition: dst[r][l] = xc[idx[r][l]] where bit l of valid[r] is set, else
 * +0, lanes l < n only; planes of every size up to 64 floats (whole and
 * partial 16-float loads), special values copied as they are. */
static void test_gather_rows_bit_exact(void)
{
    if (!cpu_has_path())
        return;
    enum { ROWS = 5, LD = 20 };
    const int planes[] = {1, 7, 16, 17, 33, 48, 63, 64}, lanes[] = {16, 11, 1};
    uint64_t state = 99;
    int differ = 0, cases = 0;
    for (size_t pi = 0; pi < sizeof planes / sizeof planes[0]; pi++)
        for (size_t ni = 0; ni < sizeof lanes / sizeof lanes[0]; ni++) {
            const int plane = planes[pi], n = lanes[ni];
            float *xc = alloc_normal_guarded((size_t)plane, 1.0f, 5 + pi); /* nothing past it may be read */
            xc[0] = -0.0f, xc[plane - 1] = plane > 1 ? NAN : xc[0];
            uint8_t idx[ROWS][16];
            uint16_t valid[ROWS];
            float out[ROWS * LD], want[ROWS * LD];
            float *dst[ROWS];
            for (int r = 0; r < ROWS; r++) {
                dst[r] = out + r * LD;
                valid[r] = r == 0 ? 0xffff : r == 1 ? 0 : (uint16_t)((state = state * 6364136223846793005u + 1) >> 48);
                for (int l = 0; l < 16; l++) {
                    state = state * 6364136223846793005u + 1442695040888963407u;
                    idx[r][l] = (uint8_t)((state >> 33) % (uint64_t)plane);
                }
            }
            for (int i = 0; i < ROWS * LD; i++)
                out[i] = want[i] = 12345.0f; /* past lane n, and between rows: untouched */
            for (int r = 0; r < ROWS; r++)
                for (int l = 0; l < n; l++)
                    want[r * LD + l] = valid[r] >> l & 1 ? xc[idx[r][l]] : 0.0f;
            permute_gather_rows(dst, ROWS, xc, plane, (const uint8_t (*)[16])idx, valid, n);
            differ += memcmp(out, want, sizeof out) != 0;
            cases++;
            free_guarded(xc, sizeof(float) * plane);
        }
    CHECK(differ == 0, "permute_gather_rows differs from its definition in %d of %d cases", differ, cases);
}

int main(void)
{
    RUN(test_columns_bit_exact);
    RUN(test_applies_only_to_small_planes);
    RUN(test_gather_rows_bit_exact);
    return test_summary();
}
