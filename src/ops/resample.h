/* resample.h — nearest-neighbour ×2 upsampling (VAE Upsample, forward and
 * backward) and bicubic resizing (forward only), NCHW.
 *
 * upsample_nearest2x:  out [B, C, 2H, 2W],  out[.., y, x] = x[.., y/2, x/2]
 *   (F.interpolate(scale_factor=2, mode="nearest")); backward ADDS the sum of
 *   the four output gradients into each dx element.
 *
 * bicubic_resize_forward: F.interpolate(mode="bicubic", align_corners=False,
 *   antialias=False): cubic convolution with a = -0.75, source coordinate
 *   (dst + 0.5)·(in/out) − 0.5, 4 taps per axis with indices clamped to
 *   [0, in−1], no output clamping.
 *
 * bicubic_resize_antialias_forward: F.interpolate(mode="bicubic",
 *   antialias=True, align_corners=False) (PIL-style): per axis, s = in/out,
 *   support = 2·max(s, 1), centre c = s·(i + 0.5), taps
 *   j ∈ [max(⌊c − support + 0.5⌋, 0), min(⌊c + support + 0.5⌋, in)), raw weight
 *   W((j + 0.5 − c)/max(s, 1)) with W the a = −0.5 cubic kernel, normalised to
 *   sum 1.  Used once, to resample DINOv2's 37×37 position table to 16×16.
 *
 * Both bicubic resizers compute weights in float exactly as PyTorch's CPU
 * kernel does and evaluate out = Σ_i wy_i · (Σ_j wx_j · x[iy_i, ix_j]) (the
 * same products and order as PyTorch's separable W-then-H passes), so they
 * agree with PyTorch to a few ulps.  They need no workspace.
 */
#ifndef REPAE_RESAMPLE_H
#define REPAE_RESAMPLE_H

void upsample_nearest2x_forward(float *out, const float *x, int B, int C, int H, int W);
void upsample_nearest2x_backward(float *dx, const float *dout, int B, int C, int H, int W);

void bicubic_resize_forward(float *out, const float *x, int B, int C, int H, int W, int H_out, int W_out);
void bicubic_resize_antialias_forward(float *out, const float *x, int B, int C, int H, int W, int H_out,
                                      int W_out);

#endif
