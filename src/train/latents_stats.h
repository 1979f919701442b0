/* latents_stats.h — the per-channel latent normalisation of REPA-E, in one
 * place: the SiT's latent BatchNorm is initialised from (or, for an LDM,
 * fixed to) latents_bias = mean and latents_scale = 1/std of the VAE's
 * latents, per channel (spec §4.1, §6.5).
 *
 *   latents_stats_read("sdvae-f8d4-latents-stats.pt", C, bias, scale);    // any weights file, or a diffusers folder
 *   latents_stats_write("vae-latents-stats.safetensors", bias, scale, C, "how they were measured");
 *   latents_stats_from_bn(running_mean, running_var, C, bias, scale, "ckpt"); // save_vae_weights.py's rule
 *   latents_stats_estimate_vae(&ds, &vae, w, 1024, bias, scale);          // posterior samples of a dataset
 *   latents_stats_estimate_cache(&cache, bias, scale);                    // posterior samples of a latent cache
 *
 * A file holds latents_scale and latents_bias of shape [C] or [1, C, 1, 1]
 * (the release's -latents-stats.pt files, ours); every value is checked
 * (finite, scale > 0) and a problem names the file, the tensor and the
 * channel.  At most LATENTS_STATS_MAX_C channels.
 */
#ifndef REPAE_LATENTS_STATS_H
#define REPAE_LATENTS_STATS_H

#include "data/dataset.h"
#include "data/latent_cache.h"
#include "models/vae.h"

#define LATENTS_STATS_MAX_C 256
#define LATENTS_STATS_FORMAT "repae-latents-stats"

void latents_stats_read(const char *path, int C, float *bias, float *scale);
/* Atomic; shapes [1, C, 1, 1] as the release writes them. */
void latents_stats_write(const char *path, const float *bias, const float *scale, int C, const char *source);
/* bias = running_mean, scale = running_var^(-1/2) (eps ignored, as the
 * reference's extract_latents_stats); dies naming `what` on a non-positive or
 * non-finite variance. */
void latents_stats_from_bn(const float *running_mean, const float *running_var, int C, float *bias, float *scale,
                           const char *what);
/* Mean and 1/std per channel of posterior samples z = mean + std·ε of the
 * first max_images images (a fixed stream, so the result is reproducible). */
void latents_stats_estimate_vae(const dataset *ds, const vae *v, const float *vae_params, int max_images, float *bias,
                                float *scale);
/* The same over a latent cache (up to 10,000 latents). */
void latents_stats_estimate_cache(const latent_cache *c, float *bias, float *scale);

#endif
