/* vae_trainer.h — pre-training a VAE with the regularisation loss alone
 * (spec §7), the starting point REPA-E needs when no pretrained SD-VAE is at
 * hand.  One step is the VAE half of the REPA-E step (§6.2 steps 3, 5, 7, 8)
 * without the SiT:
 *
 *   x = u8/127.5 − 1;  (posterior, z, recon) = vae(x)        z a posterior sample
 *   L = L1 + LPIPS + kl·KL + disc·factor·(−mean D(recon))    (train/vae_loss.h)
 *   backward into the VAE, clip max_grad_norm, AdamW
 *   discriminator: hinge on D(x), D(recon of the pre-update VAE), clip, AdamW
 *
 * The loss is the same code the REPA-E step runs, so with no encoder the two
 * update the VAE and the discriminator identically (tests/test_train_cmds.c
 * checks this bit for bit).  The posterior noise of step k comes from the
 * stream (seed, k), so a resumed run draws what an uninterrupted one would.
 *
 *   vae_trainer t;
 *   vae_trainer_init(&t, &cfg, &vae, vae_params, disc_or_NULL, disc_params, lpips_or_NULL, lpips_params, H, W, C,
 *                    64);
 *   vae_trainer_step(&t, images, NULL, &logs);               // images [B,C,H,W] uint8
 *   vae_trainer_reconstruct(&t, held_out, 64, recon_u8);     // posterior mean → decode
 *   vae_trainer_save(&t, "ckpt.safetensors", epoch, position, args_json);
 *
 * All activations live in one arena sized at init (training step and
 * evaluation batch); nothing is allocated inside a step.
 */
#ifndef REPAE_VAE_TRAINER_H
#define REPAE_VAE_TRAINER_H

#include <stdint.h>

#include "core/arena.h"
#include "data/dataset.h"
#include "models/discriminator.h"
#include "models/lpips.h"
#include "models/vae.h"
#include "train/adamw.h"
#include "train/vae_loss.h"

typedef struct vae_trainer_config {
    int batch;
    float learning_rate, disc_learning_rate; /* AdamW, constant (1e-4 each, β 0.9/0.999, wd 0) */
    float max_grad_norm;                     /* 1.0, the VAE and the discriminator separately */
    vae_loss_weights loss;                   /* §7: 1, 1, 1e-6, 0.1, 1.0, start 0, LeCam 0 */
    uint64_t seed;
} vae_trainer_config;

vae_trainer_config vae_trainer_config_default(void);

typedef struct vae_trainer {
    vae_trainer_config cfg;
    vae *vae;
    float *vae_params;  /* the caller's weights buffer, trained in place */
    vae_loss loss;      /* the discriminator and LPIPS (either NULL) */
    float *vae_grads, *disc_grads;
    adamw opt_vae, opt_disc;
    float lecam_ema_real, lecam_ema_fake;
    long long step;     /* steps taken */
    int H, W, C, h, w;  /* image and latent sizes */
    int eval_batch;     /* largest vae_trainer_reconstruct batch */
    arena ar;
} vae_trainer;

typedef struct vae_train_logs {
    double vae_loss, grad_norm_vae;
    vae_loss_logs loss;
} vae_train_logs;

#define VAE_TRAIN_N_LOGS 14
extern const char *const vae_train_log_names[VAE_TRAIN_N_LOGS];
void vae_train_logs_values(const vae_train_logs *l, double *out);

void vae_trainer_init(vae_trainer *t, const vae_trainer_config *cfg, vae *v, float *vae_params, discriminator *d,
                      float *disc_params, lpips *lp, const float *lpips_params, int H, int W, int C, int eval_batch);
void vae_trainer_free(vae_trainer *t);
/* One step on images [B,C,H,W] uint8; eps [B,C,h,w] may be given (tests). */
void vae_trainer_step(vae_trainer *t, const uint8_t *images, const float *eps, vae_train_logs *logs);
/* Reconstructs n ≤ eval_batch images through the posterior mean; writes
 * uint8 images (the reference's truncating conversion) into out.  Returns
 * how many values came out NaN or ±Inf (written as 0): a caller must not
 * score such images as if they were real. */
size_t vae_trainer_reconstruct(vae_trainer *t, const uint8_t *images, int n, uint8_t *out);

/* Checkpoint: one safetensors file (written atomically) with vae.*, disc.*,
 * opt.{m,v}.vae.*, opt.{m,v}.disc.*; metadata format "repae-vae-checkpoint",
 * version, step, epoch, position, the optimisers' step counts, the LeCam
 * EMAs, vae_config (JSON) and args.  Loading checks every tensor by name and
 * shape against the models built from the command line. */
#define VAE_CHECKPOINT_FORMAT "repae-vae-checkpoint"
#define VAE_CHECKPOINT_VERSION 1
void vae_trainer_save(const vae_trainer *t, const char *path, long long epoch, long long position,
                      const char *args_json);
void vae_trainer_load(vae_trainer *t, const char *path, long long *epoch, long long *position);


#endif
