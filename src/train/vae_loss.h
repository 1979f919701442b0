/* vae_loss.h — the VAE regularisation loss (spec §7, configs/l1_lpips_kl_gan.yaml),
 * shared by the REPA-E step (train/repae_step.h) and the VAE-only trainer
 * (train/vae_trainer.h), so the two cannot drift apart.
 *
 * Generator mode (§7.1), on x and recon in [−1, 1] and the posterior:
 *   L = w_rec·mean|x − recon| + w_p·mean_n LPIPS(x, recon) + w_kl·KL
 *       + disc_weight·factor·(−mean D(recon))
 * with D frozen but in TRAIN mode (batch statistics, running stats moved,
 * full BatchNorm backward into recon).  D runs whenever there is a
 * discriminator, also while the GAN term is off (factor 0: step < disc_start),
 * because the reference's forward does.
 *
 * Discriminator mode (§7.2) and its update: two separate train-mode passes
 * D(x), D(recon) (recon detached: the reconstruction of the pre-update VAE),
 *   L_d = factor·(0.5·(mean relu(1 − real) + mean relu(1 + fake)) + w_lecam·LeCam),
 * backward, clip to max_grad_norm, AdamW.
 *
 *   vae_loss L = {weights, disc, disc_params, lp, lpips_params, B, C, H, W};
 *   arena bytes: vae_loss_plan_bytes(&L) (each call releases what it takes)
 *                + vae_loss_fake_pass_bytes(&L) while a fake pass is kept
 *   vae_loss_fake_pass fake;
 *   double l = vae_generator_loss(&L, step, x, recon, mean, logvar, M, d_recon, d_mean, d_logvar, ar, &logs,
 *                                 &fake);
 *   ... VAE backward and update ...
 *   vae_discriminator_step(&L, step, x, recon, disc_grads, &opt_disc, 1.0, &ema_real, &ema_fake, ar, &logs,
 *                          &fake);
 *   ... arena_reset below the generator loss's allocations ...
 *
 * The kept fake pass: the generator loss's D(recon) and the update's D(recon)
 * see the same input (the pre-update reconstruction) and the same weights
 * (D is not updated in between), and train-mode BatchNorm normalises by the
 * batch's own statistics, so the two forwards give the same activations and
 * logits.  The update reuses the first one's and only replays its running-
 * statistics update (disc_replay_running_stats) after D(x), where the
 * reference's second D(recon) moves them: the same floats everywhere, one
 * of the three discriminator forwards fewer per step.
 *
 * Gradients ADD into d_recon, d_mean, d_logvar (architecture.md).  LPIPS
 * needs RGB: 1-channel images are replicated and the three gradients summed.
 */
#ifndef REPAE_VAE_LOSS_H
#define REPAE_VAE_LOSS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "models/discriminator.h"
#include "models/lpips.h"
#include "train/adamw.h"

typedef struct vae_loss_weights {
    float reconstruction; /* 1.0 */
    float perceptual;     /* 1.0 (only with an LPIPS network) */
    float kl;             /* 1e-6 */
    float disc;           /* 0.1: d_weight, constant (no adaptive weight) */
    float disc_factor;    /* 1.0 */
    long long disc_start; /* GAN terms from this step on (0) */
    float lecam;          /* 0: off */
} vae_loss_weights;

typedef struct vae_loss {
    vae_loss_weights w;
    discriminator *disc; /* NULL: no GAN terms */
    float *disc_params;  /* its parameters and BN running statistics */
    lpips *lp;           /* NULL: no perceptual term */
    const float *lpips_params;
    int B, C, H, W;      /* image batch [B, C, H, W] */
} vae_loss;

/* What the reference logs of the loss module (already weighted where the
 * name says so: reconstruction_loss, perceptual_loss, kl_loss,
 * weighted_gan_loss; gan_loss is the raw −mean D(recon)). */
typedef struct vae_loss_logs {
    double reconstruction_loss, perceptual_loss, kl_loss, gan_loss, weighted_gan_loss;
    double discriminator_factor, d_weight;
    double d_loss, grad_norm_disc, logits_real, logits_fake, lecam_loss;
} vae_loss_logs;

/* The generator loss's D(recon) pass, kept on the arena for the update. */
typedef struct vae_loss_fake_pass {
    bool kept;      /* false: no discriminator (the update then does nothing) */
    disc_acts acts; /* acts.input is the recon it ran on */
    float *logits;
} vae_loss_fake_pass;

/* disc_factor from disc_start on (with a discriminator), else 0. */
float vae_loss_factor(const vae_loss *L, long long step);

/* Arena bytes the two calls below need at their peak. */
size_t vae_loss_plan_bytes(const vae_loss *L);
/* Arena bytes a kept fake pass holds from the generator loss to the update. */
size_t vae_loss_fake_pass_bytes(const vae_loss *L);

/* Generator loss (§7.1): returns L_rec + L_p + L_kl + L_gan (weighted) and
 * fills the generator fields of logs; ADDS its gradient into d_recon
 * [B,C,H,W] and d_mean, d_logvar [B,M] (M = latent elements per sample;
 * logvar is the clamped one).  Moves the discriminator's running stats.
 * keep (may be NULL): the D(recon) pass stays on the arena for
 * vae_discriminator_step (the caller releases it with its own arena_reset). */
double vae_generator_loss(const vae_loss *L, long long step, const float *x, const float *recon, const float *mean,
                          const float *logvar, int M, float *d_recon, float *d_mean, float *d_logvar, arena *ar,
                          vae_loss_logs *logs, vae_loss_fake_pass *keep);

/* Discriminator update (§7.2) on x and recon; fills d_loss, grad_norm_disc,
 * logits_real/fake, lecam_loss.  disc_grads (table layout) is overwritten;
 * the LeCam EMAs are read and, while the GAN is on and lecam > 0, updated.
 * Does nothing without a discriminator.  fake (may be NULL): the generator
 * loss's kept pass on this same recon, with D unchanged since. */
void vae_discriminator_step(const vae_loss *L, long long step, const float *x, const float *recon, float *disc_grads,
                            adamw *opt, double max_grad_norm, float *lecam_ema_real, float *lecam_ema_fake,
                            arena *ar, vae_loss_logs *logs, const vae_loss_fake_pass *fake);

#endif
