/* conv2d_winograd_4x4.h — 4×4 convolutions of stride 1 or 2 (the PatchGAN
 * discriminator's) by Winograd's minimal filtering F(2×2, 2×2).  Used by
 * conv2d.c; not meant to be called directly (see conv2d.h).
 *
 * A 4×4 kernel is four 2×2 sub-kernels: at stride 1 each sees the input
 * shifted by 0 or 2 rows and columns, at stride 2 each sees one of the four
 * input phases (even/odd rows × even/odd columns).  Each 2×2 block of
 * outputs is, per sub-kernel q, Aᵀ [ (G g_q Gᵀ) ⊙ (Bᵀ d_q B) ] A with d_q a
 * 3×3 input patch, and the four sums share the output, so over channels the
 * work is 9 GEMMs (one per tile element ξ) with the sub-kernels stacked
 * along K:
 *     M[ξ] (C_out × T) = U[ξ] (C_out × 4·C_in) · V[ξ] (4·C_in × T).
 * That is 36 multiply-adds per 2×2 outputs and input channel instead of 64:
 * 1.78× fewer than im2col.  The backward passes are the adjoints, as in
 * conv2d_winograd.h.
 *
 * Rounding: F(2, 2) uses the points 0, 1 and ∞; its transforms only add
 * and subtract (no ½), and the results match the direct convolution to
 * ~1e-6 relative (tests/test_conv2d.c).  The summation order differs from
 * im2col + gemm, so results are not bit-identical to it.
 */
#ifndef REPAE_CONV2D_WINOGRAD_4X4_H
#define REPAE_CONV2D_WINOGRAD_4X4_H

#include <stddef.h>

#include "ops/conv2d.h"

/* 4×4 kernel, stride 1 or 2 (any zero padding). */
int conv2d_winograd_4x4_applies(const conv2d_shape *s);
size_t conv2d_winograd_4x4_workspace_floats(const conv2d_shape *s);
/* out = conv(x, weight) + bias (bias may be NULL); overwrites out. */
void conv2d_winograd_4x4_forward(float *out, const float *x, const float *weight, const float *bias,
                                 const conv2d_shape *s, float *workspace);
/* dx += ∂/∂x, dweight += ∂/∂weight (either may be NULL); no bias gradient. */
void conv2d_winograd_4x4_backward(float *dx, float *dweight, const float *dout, const float *x,
                                  const float *weight, const conv2d_shape *s, float *workspace);

#endif
