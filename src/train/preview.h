/* preview.h — the training-time sample grid (spec §6.2, "Preview sampling").
 *
 * Fixed labels and initial noise drawn once from the run's seed; the
 * NON-EMA SiT in eval mode; Euler ODE, 50 steps, CFG 4.0 on the whole
 * interval; denormalise with the training model's BN running stats
 * (scale = running_var^(−1/2), eps-free); VAE decode; PNG grid.
 */
#ifndef REPAE_PREVIEW_H
#define REPAE_PREVIEW_H

#include <stdint.h>

#include "models/sit.h"
#include "models/vae.h"

typedef struct preview_config {
    int n_images, num_steps;
    float cfg_scale;
    uint64_t seed;
} preview_config;

/* Samples n_images with sit/params and decodes them with the VAE
 * (v/vae_params) into uint8 images [N, C, H, W]; also writes a PNG grid when
 * path is non-NULL. */
void preview_grid(const sit *s, const float *params, const vae *v, const float *vae_params, const preview_config *cfg,
                  int H, int W, uint8_t *images_out, const char *path);

#endif
