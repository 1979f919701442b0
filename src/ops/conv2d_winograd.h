/* conv2d_winograd.h — 3×3 stride-1 convolution by Winograd's minimal
 * filtering F(2×2, 3×3) or F(4×4, 3×3) (Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2016).  Used by conv2d.c for the VAE's and LPIPS's 3×3
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
 * Tiles are processed in chunks whose buffers stay around WINO_CHUNK_FLOATS
 * (16 MB), or twice U's size where that is more (F(4×4,3×3) from ~240
 * channels in and out, F(2×2,3×3) from ~360; conv2d_winograd.c says why),
 * so the workspace is bounded whatever the image size.  The 16 GEMMs of a
 * chunk run as one OpenMP loop (OpenBLAS runs single-threaded inside it).
 *
 * F(4×4,3×3) is the same with 6×6 input tiles, 4×4 output blocks and 36
 * GEMMs: 36 multiply-adds per 16 outputs instead of 144 (4×; 1.78× fewer than
 * F(2×2,3×3)), and a quarter as many tiles to transform.
 *
 * Rounding: F(2×2,3×3)'s transforms only use ±1 and ½, and the results
 * match the direct convolution to ~1e-6 relative (tests/test_conv2d.c).
 * F(4×4,3×3)'s use constants up to 8 and amplify the GEMMs' float32 rounding:
 * its error is 5–10× F(2×2,3×3)'s, ~4e-6 of the output's largest magnitude
 * at 128 channels (tests/test_conv2d.c bounds it at 1e-5 of the largest
 * magnitude).  AUTO takes it on outputs of at least 16×16 and F(2×2,3×3)
 * on smaller ones (session 7; 7–11 % off the small REPA-E step):
 *  - on 8×8 maps its error fails the golden REPA-E steps against PyTorch
 *    (two decoder weight gradients, 3.7× over atol 2e-7) and the CNN's
 *    finite differences; with 16×16 and up only, every parity, golden and
 *    finite-difference test passes unchanged;
 *  - on 8×8 maps an image has 4 tiles, so a GEMM has 4·B columns, and
 *    OpenBLAS rounds a GEMM of fewer than ~12 columns differently from a wider
 *    one (image 0 of a 128-channel conv differs between B = 2 and B = 5); from
 *    16×16 an image has at least 16 tiles and the results do not depend on
 *    the batch or the thread count (checked for 8–256 channels, B = 1–8), so
 *    MPI ranks still agree with one process.
 * (BENCHMARKS.md, sessions 6 and 7.)
 */
#ifndef REPAE_CONV2D_WINOGRAD_H
#define REPAE_CONV2D_WINOGRAD_H

#include <stddef.h>

#include "ops/conv2d.h"

/* Output tile size m of F(m×m,3×3): 4 when s->algo forces
 * CONV2D_WINOGRAD_F4, or for AUTO on outputs of at least
 * CONV2D_WINOGRAD_F4_MIN_OUT in both directions; else 2. */
int conv2d_winograd_tile(const conv2d_shape *s);

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
