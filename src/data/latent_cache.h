/* latent_cache.h — a dataset encoded once by a frozen VAE (spec §6.4).
 *
 * Each image's posterior is stored as its mean and std ([N, C, h, w] each,
 * float32; std = exp(½·clamped logvar)), with the labels, in one safetensors
 * file: tensors `mean`, `std`, `labels` (I64) and metadata `vae` (the weights
 * it came from), `source` (the images).  Traditional latent diffusion
 * training (`repae train-ldm`) then samples z = mean + std·ε afresh each step
 * without running the encoder.  Index i matches image i of the dataset.
 */
#ifndef REPAE_LATENT_CACHE_H
#define REPAE_LATENT_CACHE_H

#include <stdint.h>

#include "data/dataset.h"
#include "models/vae.h"

typedef struct latent_cache {
    int n, C, h, w;
    float *mean, *std;
    int32_t *labels;
} latent_cache;

/* Encodes every image of d with v (batches of `batch`) and writes `path`. */
void latent_cache_build(const char *path, const vae *v, const float *vae_params, const dataset *d, int batch,
                        const char *vae_source);
latent_cache latent_cache_read(const char *path);
void latent_cache_free(latent_cache *c);

#endif
