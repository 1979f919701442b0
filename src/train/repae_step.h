/* repae_step.h — one end-to-end REPA-E training step (spec §6.2), in the
 * release's exact order:
 *
 *   1  encoder targets zs = ViT(preprocess(images))              (no grad)
 *   3  VAE forward: x = u8/127.5 − 1, (posterior, z, recon) = vae(x)
 *   4  SiT frozen and in eval mode (BN on running stats, no label dropout)
 *   5  L_vae = L1 + LPIPS + kl_weight·KL + disc_weight·factor·(−mean D(recon))
 *   6  alignment pass: align-only SiT on z, fresh t and ε;  L_vae += 1.5·proj
 *   7  backward into the VAE only (through the frozen SiT and BN-eval into z),
 *      clip 1.0, AdamW
 *   8  discriminator: hinge on D(x) and D(recon of the pre-update VAE), clip, AdamW
 *   9  SiT unfrozen, train mode
 *  10  SiT pass on z (detached, pre-update) with the SAME t and ε, batch-stat BN,
 *      label dropout;  L_sit = mean(denoise) + 0.5·proj
 *  11  clip 1.0, AdamW
 *  12  EMA of the SiT, BN buffers included
 *
 * With e2e_diffusion_loss the VAE pass through the frozen SiT runs the full
 * network and its gradient is w_denoise·mean(denoise) + vae_align_proj_coeff·proj:
 * the naive end-to-end training the paper shows to collapse the latent space
 * (set vae_align_proj_coeff 0 for "diffusion loss only").
 *
 * Every random draw can be given explicitly (tests compare whole steps with a
 * PyTorch reference that way); otherwise each comes from its own stream of
 * the trainer's seeded generator, keyed by the step number, so a resumed run
 * draws exactly what an uninterrupted one would.
 */
#ifndef REPAE_REPAE_STEP_H
#define REPAE_REPAE_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "diffusion/denoising_objective.h"
#include "models/discriminator.h"
#include "models/encoder_preprocess.h"
#include "models/lpips.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vit.h"
#include "train/adamw.h"

typedef struct repae_config {
    int batch;
    float learning_rate, vae_learning_rate, disc_learning_rate; /* AdamW, constant (1e-4 each) */
    float proj_coeff;           /* REPA weight in the SiT update (0.5) */
    float vae_align_proj_coeff; /* REPA weight in the VAE update (1.5) */
    float reconstruction_weight, perceptual_weight, kl_weight;
    float disc_weight, disc_factor; /* GAN term = disc_weight·disc_factor·gan (0.1, 1.0) */
    long long disc_start;       /* GAN terms active from this step on (0) */
    float lecam_weight;         /* 0: off */
    float max_grad_norm;        /* 1.0 */
    float ema_decay;            /* 0.9999 */
    path_type path;
    time_weighting weighting;
    bool e2e_diffusion_loss;    /* naive E2E: the diffusion loss reaches the VAE */
    bool train_pos_embed;       /* the release re-enables grad on pos_embed (true) */
    /* Encoder preprocessing: ImageNet mean/std and bicubic resize to the
     * encoder's size for 3-channel images; (u/255 − mean)/std per channel
     * for 1-channel ones (our Fashion-MNIST encoders). */
    float enc_mean[3], enc_std[3];
    encoder_preprocess_kind enc_pre; /* 3-channel images: the encoder family's preprocessing (spec §1.3) */
    /* iREPA's spatial normalisation of the targets (ops/spatial_norm.h), which
     * then feed both the VAE-alignment pass and the SiT pass (off; alpha 0.6). */
    bool spatial_norm;
    float zscore_alpha;
    uint64_t seed;
} repae_config;

/* The spec's defaults (§6.1, §7). */
repae_config repae_config_default(void);

/* Models, their parameter/gradient buffers and optimisers.  The caller
 * builds and loads the models and owns their weight buffers
 * (models/params.h); repae_trainer_init allocates the rest (EMA, gradients,
 * moments). */
typedef struct repae_trainer {
    repae_config cfg;
    vae *vae;
    sit *sit;
    vit *enc;              /* NULL: no REPA targets (proj coefficients must be 0) */
    discriminator *disc;   /* NULL: no GAN terms */
    lpips *lp;             /* NULL: no perceptual term */
    float *vae_params, *sit_params, *ema_params, *disc_params, *lpips_params;
    const float *enc_params;
    float *vae_grads, *sit_grads, *disc_grads;
    adamw opt_vae, opt_sit, opt_disc;
    float lecam_ema_real, lecam_ema_fake;
    long long step;        /* steps taken */
    int H, W, C, h, w;     /* image and latent sizes */
    arena ar;
} repae_trainer;

/* Optional explicit randomness for one step (any field may be NULL). */
typedef struct repae_step_random {
    const float *eps;   /* [B,C,h,w] posterior sample noise */
    const float *time;  /* [B] */
    const float *noise; /* [B,C,h,w] */
    const int *drop;    /* [B] label dropout mask (1 = null class) */
} repae_step_random;

/* Every scalar the reference logs (already weighted where it says so). */
typedef struct repae_logs {
    double sit_loss, denoising_loss, proj_loss, grad_norm_sit;
    double vae_loss, reconstruction_loss, perceptual_loss, kl_loss, weighted_gan_loss;
    double discriminator_factor, gan_loss, d_weight, grad_norm_vae, vae_align_loss;
    double d_loss, grad_norm_disc, logits_real, logits_fake, lecam_loss;
} repae_logs;

/* The log names, in the order repae_logs_values() returns them. */
#define REPAE_N_LOGS 19
extern const char *const repae_log_names[REPAE_N_LOGS];
void repae_logs_values(const repae_logs *l, double *out);

void repae_trainer_init(repae_trainer *t, const repae_config *cfg, vae *v, float *vae_params, sit *s,
                        float *sit_params, vit *enc, const float *enc_params, discriminator *d, float *disc_params,
                        lpips *lp, float *lpips_params, int H, int W, int C);
void repae_trainer_free(repae_trainer *t);
/* One step on images [B,C,H,W] uint8 and labels [B]. */
void repae_step(repae_trainer *t, const uint8_t *images, const int *labels, const repae_step_random *given,
                repae_logs *logs);

#endif
