/* ldm_step.h — one step of traditional latent diffusion training on cached
 * latents (spec §6.4, train_ldm_only.py), with or without REPA.
 *
 *   z = mean + std·ε_z            (fresh posterior sample from the cache)
 *   SiT in train mode, but its BatchNorm forced to eval: the fixed
 *   normalisation from the latents statistics, never updated
 *   fresh t, noise and label dropout (p = cfg_prob → null class)
 *   L = mean(denoise) + proj_coeff·proj;  clip;  AdamW;  EMA
 *
 * The VAE is frozen and not used here (the latents were cached); the
 * encoder targets are computed from the images when REPA is on.
 */
#ifndef REPAE_LDM_STEP_H
#define REPAE_LDM_STEP_H

#include <stdint.h>

#include "core/arena.h"
#include "diffusion/denoising_objective.h"
#include "models/encoder_preprocess.h"
#include "models/sit.h"
#include "models/vit.h"
#include "train/adamw.h"

typedef struct ldm_config {
    int batch;
    float learning_rate, proj_coeff, cfg_prob, max_grad_norm, ema_decay;
    path_type path;
    time_weighting weighting;
    float enc_mean[3], enc_std[3]; /* 1-channel encoder input normalisation */
    encoder_preprocess_kind enc_pre; /* 3-channel images: the encoder family's preprocessing (spec §1.3) */
    bool spatial_norm;             /* iREPA's spatial z-score of the targets (off) */
    float zscore_alpha;            /* its mean-subtraction scale (0.6) */
    uint64_t seed;
} ldm_config;

ldm_config ldm_config_default(void);

/* The random streams of step k (the steps taken before it) under cfg.seed:
 * rng_new(seed, STREAM + k) — part of what makes a seed reproduce a run. */
#define STREAM_LDM_Z 0x4c444d5a00000000ull    /* "LDMZ": posterior samples */
#define STREAM_LDM_DROP 0x4c444d4400000000ull /* "LDMD": label dropout */
#define STREAM_LDM_SIT 0x4c444d5300000000ull  /* "LDMS": t and ε */

typedef struct ldm_trainer {
    ldm_config cfg;
    sit *sit;
    float *sit_params, *ema_params, *grads;
    adamw opt;
    vit *enc; /* NULL: no REPA (proj_coeff must be 0) */
    const float *enc_params;
    int C, H, W; /* images (for the encoder) */
    long long step;
    arena ar;
} ldm_trainer;

typedef struct ldm_step_random {
    const float *eps_z; /* [B,C,h,w] posterior-sample noise */
    const float *time;  /* [B] */
    const float *noise; /* [B,C,h,w] */
    const int *drop;    /* [B] 1 = null class */
} ldm_step_random;

typedef struct ldm_logs {
    double loss, denoising_loss, proj_loss, grad_norm;
} ldm_logs;

void ldm_trainer_init(ldm_trainer *t, const ldm_config *cfg, sit *s, float *sit_params, vit *enc,
                      const float *enc_params, int C, int H, int W);
void ldm_trainer_free(ldm_trainer *t);
/* images [B,C,H,W] (only read when there is an encoder), cached posterior
 * moments mean/std [B,C,h,w], labels [B]. */
void ldm_step(ldm_trainer *t, const uint8_t *images, const float *lat_mean, const float *lat_std, const int *labels,
              const ldm_step_random *given, ldm_logs *logs);

#endif
