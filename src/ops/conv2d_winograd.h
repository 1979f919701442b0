/* conv2d_winograd.h — 3×3 stride-1 convolution by Winograd's minimal
 * filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", 2016).  Used by conv2d.c for the VAE's and LPIPS's 3×3
 * convolutions; not meant to be called directly (conv2d_forward/backward pick
 * it, see conv2d.h).
 *
 * Each 2×2 block of outputs is computed from a 4×4 input tile d as
 *     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
 * so over channels the work is 16 independent GEMMs (one per tile element ξ):
 *     M[ξ] (C_out × T) = U[ξ] (C_out × C_in) · V[ξ] (C_in × T),
 * U = transformed weights, V = transformed input tiles, T = tiles.  That is
 * 16 multiply-adds per 4 outputs instead of 36: 2.25× fewer than im2col.
 * The backward passes are the adjoints of the same three linear maps:
 *     P[ξ]  = (A dY Aᵀ)[ξ]           (output adjoint, per tile)
 *     dU[ξ] = P[ξ] · V[ξ]ᵀ,   dg = Gᵀ dU G
 *     dV[ξ] = U[ξ]ᵀ · P[ξ],   dx += B dV Bᵀ  (overlap-added: tiles overlap by 2)
 * Tiles are processed in chunks whose buffers stay around WINO_CHUNK_FLOATS,
 * so the workspace is bounded whatever the image size.  The 16 GEMMs of a
 * chunk run as one OpenMP loop (OpenBLAS runs single-threaded inside it).
 *
 * Rounding: F(2×2,3×3)'s transforms only use ±1 and ½, and the results
 * match the direct convolution to ~1e-6 relative (tests/test_conv2d.c).
 */
#ifndef REPAE_CONV2D_WINOGRAD_H
#define REPAE_CONV2D_WINOGRAD_H

#include <stddef.h>

#include "ops/conv2d.h"

/* 3×3 kernel, stride 1 (any zero padding). */
int conv2d_winograd_applies(const conv2d_shape *s);
size_t conv2d_winograd_workspace_floats(const conv2d_shape *s);
/* out = conv(x, weight) + bias (bias may be NULL); overwrites out. */
void conv2d_winograd_forward(float *out, const float *x, const float *weight, const float *bias,
                             const conv2d_shape *s, float *workspace);
/* dx += ∂/∂x, dweight += ∂/∂weight (either may be NULL); no bias gradient. */
void conv2d_winograd_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                              const conv2d_shape *s, float *workspace);

#endif
