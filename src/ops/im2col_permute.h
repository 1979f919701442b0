/* im2col_permute.h — im2col for channel planes of at most 64 floats (8×8
 * maps and smaller), with register permutes instead of gathers.
 *
 * A whole plane fits in four zmm registers, so every column row of a tap is
 * a permutation of those registers (zeros where the tap reads padding):
 * two two-source permutes and a blend per 16 output positions, where the
 * table-driven loop of conv2d.c needs one gather, a slow instruction on
 * AMD cores (10 % of the PatchGAN's 8×8 → 4×4 layer went to it; this path
 * takes ~0.5 ms off each of that layer's two im2cols, one thread, Zen 5).
 * Pure data movement: the columns hold the same values.
 * Whole 16-float rows of the plane are loaded without masks where the plane
 * has them: a masked load cost ~2× the rest of the Winograd tile gather on
 * Zen 5 (its share of an 8×8 convolution 9–10 % → 5 %).
 * col2im the same way (inverse permutes and masked adds, tap by tap) was
 * tried and lost to conv2d.c's scalar loop (that layer's dx 4.3–5.4 ms
 * against 4.0), so it is not here.
 */
#ifndef REPAE_IM2COL_PERMUTE_H
#define REPAE_IM2COL_PERMUTE_H

#include <stdbool.h>
#include <stdint.h>

#define IM2COL_PERMUTE_PLANE_MAX 64
#define IM2COL_PERMUTE_ROWS_MAX 256 /* taps × 16-position chunks */

typedef struct im2col_permute_plan {
    int kk, HWo, plane, chunks; /* taps, output positions, plane floats, ceil(HWo / 16) */
    /* Gather, per (tap, chunk): the plane index of each lane (0..63) and
     * which lanes read the plane (the rest are padding: zero). */
    uint8_t idx[IM2COL_PERMUTE_ROWS_MAX][16];
    uint16_t valid[IM2COL_PERMUTE_ROWS_MAX];
} im2col_permute_plan;

/* Whether the permute path runs for these sizes on this CPU (AVX-512). */
bool im2col_permute_applies(int plane, int kk, long HWo);

/* The plan from conv2d.c's tap table: tap_src[t·HWo + n] = plane offset that
 * output position n reads through tap t, or −1 in the padding. */
void im2col_permute_make(im2col_permute_plan *p, const int *tap_src, int kk, long HWo, int plane);

/* cols[(c·kk + t)·ldc + n] = tap t of channel plane xc at position n. */
void im2col_permute_channel(float *cols, long ldc, const float *xc, int c, const im2col_permute_plan *p);

/* The same columns transposed, for plans of at most 16 taps and 16 output
 * positions (one 16 × 16 register transpose per channel):
 * colsT[n·ldk + c·kk + t] = tap t of channel plane xc at position n.  The
 * weight gradient then reads them as a plain (not transposed) GEMM operand,
 * which packs faster than cols transposed on the fly. */
bool im2col_permute_transposed_applies(int kk, long HWo);
void im2col_permute_channel_transposed(float *colsT, long ldk, const float *xc, int c, const im2col_permute_plan *p);

/* The same gather for any table (conv2d_winograd.c's input tiles of small
 * images and short rows use it): for rows r < rows and lanes l < n,
 * dst[r][l] = xc[idx[r][l]] where bit l of valid[r] is set, else +0;
 * xc holds `plane` (≤ 64) floats. */
void permute_gather_rows(float *const *dst, int rows, const float *xc, int plane, const uint8_t (*idx)[16],
                         const uint16_t *valid, int n);

#endif
