/* sit_velocity.h — the glue between the SiT, the samplers and the VAE
 * decoder (spec §9.3 steps 2–4), shared by `repae sample` and the training
 * previews so there is one copy:
 *
 *   sit_velocity_ctx ctx = {&sit, params, &ar, chunk};   // ar: sit_velocity_arena_bytes
 *   sampler_run(&cfg, sit_velocity_fn, &ctx, x, y, B, n, &noise, ws);
 *   float bias[C], scale[C];  sit_get_latent_stats(&sit, params, bias, scale);
 *   decode_latents(&vae, vae_w, x, bias, scale, img, B, h, w, chunk, &dec);   // dec: decode_latents_arena_bytes
 *   image_from_model_range(u8, img, B * out_ch * H * W);
 *
 * The sampler state is the NORMALISED latent (the SiT never sees its
 * BatchNorm at sampling time); decode_latents maps it back with the eps-free
 * statistics, z = x / scale + bias, then runs the VAE decoder.
 *
 * Chunks: with chunk > 0 the networks always run on exactly `chunk` images
 * (the SiT on `chunk` rows of the possibly doubled CFG batch), the last
 * chunk padded with copies of its last image.  A row's result then does not
 * depend on how many images the caller passes: OpenBLAS picks other kernels
 * (with other rounding) for small matrices, and the convolutions group
 * images by batch size, so without chunks a sample would change in its last
 * bits with the batch size.  chunk 0 runs the whole batch at once.
 */
#ifndef REPAE_SIT_VELOCITY_H
#define REPAE_SIT_VELOCITY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "diffusion/sampler.h"
#include "models/sit.h"
#include "models/vae.h"

/* velocity_fn context: the SiT, its weights (eval mode), a scratch arena,
 * the chunk size (0: none) and whether the weights are packed
 * (sit_pack_for_sampling returned true). */
typedef struct sit_velocity_ctx {
    const sit *s;
    const float *params;
    arena *ar;
    int chunk;
    bool packed;
} sit_velocity_ctx;

/* A velocity_fn (sampler.h) calling sit_velocity. */
void sit_velocity_fn(void *ctx, float *v, const float *x, const float *t, const int *y, int B);
/* Arena bytes for sit_velocity_fn with sampler batches of B images under cfg
 * (the batch doubles when guidance can be active), in chunks of `chunk`
 * rows (0: none). */
size_t sit_velocity_arena_bytes(const sit *s, const sampler_config *cfg, int B, int chunk);

/* z = x / scale[c] + bias[c] in place, x [N, C, hw]. */
void latents_denormalize(float *x, int N, int C, size_t hw, const float *bias, const float *scale);
/* Arena bytes for decode_latents of N latents h×w in chunks of `chunk` (0: none). */
size_t decode_latents_arena_bytes(const vae *v, int N, int h, int w, int chunk);
/* Denormalises x [N, C, h, w] in place (bias/scale [C]; both NULL: x is
 * already a VAE latent) and decodes it into img [N, out_ch, H, W] in the
 * model's [-1, 1] range, `chunk` images at a time (0: all at once). */
void decode_latents(const vae *v, const float *vae_params, float *x, const float *bias, const float *scale, float *img,
                    int N, int h, int w, int chunk, arena *ar);

#endif
