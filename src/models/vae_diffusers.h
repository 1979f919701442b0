/* vae_diffusers.h — diffusers AutoencoderKL folders: read one into our VAE,
 * write ours as one.
 *
 * A diffusers VAE is a directory
 *
 *   config.json                           {"_class_name": "AutoencoderKL", "block_out_channels": [...], ...}
 *   diffusion_pytorch_model.safetensors   the state dict in diffusers' names (any float dtype;
 *                                         the .fp16.safetensors variant if only that is there)
 *   latents_stats.safetensors             ours only (see below), optional
 *
 * The network is the same AutoencoderKL as the CompVis/LDM one (spec §2); only
 * names and the attention weights' shapes differ.  The map, for n levels:
 *
 *   CompVis (ours)                         diffusers
 *   encoder.down.{l}.block.{b}.*           encoder.down_blocks.{l}.resnets.{b}.*
 *   encoder.down.{l}.attn.{b}.*            encoder.down_blocks.{l}.attentions.{b}.*
 *   encoder.down.{l}.downsample.conv       encoder.down_blocks.{l}.downsamplers.0.conv
 *   decoder.up.{l}.block.{b}.*             decoder.up_blocks.{n-1-l}.resnets.{b}.*   (reversed)
 *   decoder.up.{l}.attn.{b}.*              decoder.up_blocks.{n-1-l}.attentions.{b}.*
 *   decoder.up.{l}.upsample.conv           decoder.up_blocks.{n-1-l}.upsamplers.0.conv
 *   {en,de}coder.mid.block_1 / block_2     {en,de}coder.mid_block.resnets.0 / 1
 *   {en,de}coder.mid.attn_1                {en,de}coder.mid_block.attentions.0
 *   {en,de}coder.norm_out                  {en,de}coder.conv_norm_out
 *   nin_shortcut                           conv_shortcut
 *   attn norm, q, k, v, proj_out           group_norm, to_q, to_k, to_v, to_out.0
 *                                          (older files: query, key, value, proj_attn)
 *   conv_in, conv_out, quant_conv, post_quant_conv: the same names
 *
 * Attention q/k/v/proj_out weights are 1×1 convs [C, C, 1, 1] in CompVis and
 * linear layers [C, C] in diffusers (the same numbers).  config.json gives
 * the configuration (block_out_channels = ch·ch_mult, layers_per_block =
 * num_res_blocks, latent_channels = z, norm_num_groups, Attn* block types =
 * attention at that level, use_quant_conv / use_post_quant_conv = false for
 * the Flux / SD3.5 VAEs).
 *
 * Latent statistics.  diffusers scales latents by scalars, (z − shift_factor)
 * · scaling_factor (some pipelines also read per-channel latents_mean /
 * latents_std: (z − mean)·scaling_factor / std); REPA-E's SiT normalises per
 * channel, (z − latents_bias)·latents_scale.  Reading a folder gives, first
 * found: latents_stats.safetensors (ours, exact); latents_mean/latents_std
 * (bias = mean, scale = scaling_factor / std); shift_factor (0 if null) and
 * scaling_factor for every channel.  Writing stores the per-channel numbers
 * in all three forms: the sidecar, latents_mean/std (exact but for rounding),
 * and as scalars the pooled statistics of all channels (shift_factor = the
 * mean of latents_bias, scaling_factor = 1/std of the channel mixture), the
 * best a scalar-only pipeline can use.
 *
 *   if (vae_diffusers_is_folder(path)) {
 *       vae m;
 *       vae_diffusers_load(&m, path);                  // dies naming file and field/key on bad input
 *       vae_diffusers_latents_stats(path, m.cfg.z_channels, bias, scale, NULL);
 *   }
 *   vae_diffusers_save(&m, "out_dir", bias, scale);     // bias/scale may be NULL
 *
 * diffusers itself cannot be installed here: compatibility with its
 * from_pretrained is checked against its documented naming (the fixtures of
 * dev/ref/diffusers_vae_ref.py build the names from diffusers' module layout).
 */
#ifndef REPAE_VAE_DIFFUSERS_H
#define REPAE_VAE_DIFFUSERS_H

#include <stddef.h>

#include "models/vae.h"

#define VAE_DIFFUSERS_CONFIG "config.json"
#define VAE_DIFFUSERS_WEIGHTS "diffusion_pytorch_model.safetensors"
#define VAE_DIFFUSERS_WEIGHTS_FP16 "diffusion_pytorch_model.fp16.safetensors" /* read when the above is absent */
#define VAE_DIFFUSERS_STATS "latents_stats.safetensors"
/* diffusers' default when config.json has no scaling_factor (SD-VAE's). */
#define VAE_DIFFUSERS_DEFAULT_SCALING 0.18215

/* True if path is a directory holding config.json (the recognition rule). */
int vae_diffusers_is_folder(const char *path);
/* True if path is a directory: where a VAE file or a folder is accepted, a
 * directory goes to vae_diffusers_load, which says what it lacks. */
int vae_diffusers_is_dir(const char *path);

/* The diffusers name of one of our (CompVis) parameter names, for a VAE of
 * configuration cfg; old_attn selects query/key/value/proj_attn.  *linear
 * (may be NULL) is set when the tensor is an attention weight stored [C, C]
 * by diffusers.  Returns 0, or -1 if the name is not an AutoencoderKL name. */
int vae_diffusers_name(const vae_config *cfg, const char *compvis, int old_attn, char *out, size_t size,
                       int *linear);

/* Reads and validates DIR/config.json into a configuration; dies naming the
 * file and the field on anything out of place (unknown act_fn or block type,
 * wrong types, mismatched lengths, unsupported options). */
void vae_diffusers_read_config(const char *dir, vae_config *cfg);

/* Builds the VAE from config.json and loads diffusion_pytorch_model.safetensors
 * strictly into a new weights buffer, which it returns (the caller frees it):
 * a missing tensor, an unexpected one or a wrong shape dies naming the tensor
 * (both names) and the shapes. */
float *vae_diffusers_load(vae *m, const char *dir);

/* Per-channel latent statistics bias[C], scale[C] of the folder (see the top
 * of this file for the order of sources); *source (may be NULL) says which.
 * Dies naming the file on a count other than C or a non-positive scale. */
void vae_diffusers_latents_stats(const char *dir, int C, float *bias, float *scale, const char **source);

/* Writes the folder (created if needed): the weights, the sidecar when
 * bias/scale are given (else any old sidecar is removed), config.json last,
 * each file atomically, so a folder with config.json is complete. */
void vae_diffusers_save(const vae *m, const float *params, const char *dir, const float *bias, const float *scale);

#endif
