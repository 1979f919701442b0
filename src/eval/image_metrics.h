/* image_metrics.h — PSNR and SSIM of one reconstructed image against its
 * original (VAE reconstruction quality).  Images are CHW (repae's layout,
 * io/image.h); every function handles one image, in double precision.
 *
 * PSNR = 10·log10(R² / MSE), MSE over all C·H·W values, R the data range:
 *   psnr_u8:  uint8 images, R = 255 (the usual choice: compare the PNGs,
 *             i.e. after the reference's truncating uint8 conversion);
 *   psnr_f32: float images, R given (2 for model-range images in [−1, 1]);
 *             no clamping or quantisation is applied.
 * Identical images give +inf (skimage's peak_signal_noise_ratio does too).
 *
 * SSIM matches skimage.metrics.structural_similarity(a, b, channel_axis=0,
 *   gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
 *   data_range=R) — Wang et al.'s setting — which is the same number as
 * pytorch_msssim.ssim(win_size=11, win_sigma=1.5, K=(0.01, 0.03)) (that one
 * in float32):
 *   window: 11×11 separable Gaussian, σ = 1.5, weights exp(−x²/2σ²)/Σ for
 *           x = −5…5 (skimage: truncate 3.5 → radius int(3.5·1.5 + 0.5) = 5);
 *   μ, E[x²], E[xy] by the window; σ² = E[x²] − μ² (population weights);
 *   C1 = (0.01 R)², C2 = (0.03 R)²;
 *   S = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2));
 *   mean of S over the "valid" positions (skimage filters the whole image
 *   with reflect padding and then crops 5 pixels on every side, so the
 *   padding never reaches the mean; pytorch-msssim convolves without
 *   padding: the same positions), then the mean over channels.
 * H and W must be at least 11.
 */
#ifndef REPAE_IMAGE_METRICS_H
#define REPAE_IMAGE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define SSIM_WIN 11
#define SSIM_SIGMA 1.5
#define SSIM_K1 0.01
#define SSIM_K2 0.03

double psnr_u8(const uint8_t *a, const uint8_t *b, size_t n);
double psnr_f32(const float *a, const float *b, size_t n, double data_range);

/* a, b: [C, H, W]. */
double ssim_u8(const uint8_t *a, const uint8_t *b, int C, int H, int W);
double ssim_f32(const float *a, const float *b, int C, int H, int W, double data_range);

#endif
