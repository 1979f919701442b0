/* loss.h — the training losses, forward and backward.
 *
 * Conventions (docs/architecture.md): forwards return the loss (scalar
 * losses) or write it (per-sample losses); backwards take the upstream
 * gradient of that loss (`dloss`) and ADD (+=) into every gradient buffer;
 * a NULL gradient pointer means "not needed".  Sums are accumulated in
 * double in a fixed order (results do not depend on the thread count).
 * Nothing here allocates.
 *
 *   denoising (spec §5.6):   mse_per_sample_*      loss[n] = mean_m (pred - target)^2
 *   REPA (spec §5.7):        repa_cosine_loss_*    -(1/N) Σ_n (1/T) Σ_t cos(ẑ, z)
 *   reconstruction (§7.1):   l1_mean_*             mean |a - b|
 *   KL (§2.4, §7.1):         kl_diag_gaussian_*    (1/N) Σ_n 0.5 Σ_m (mean² + e^logvar - 1 - logvar)
 *   GAN (§7.1, §7.2):        hinge_d_loss_*, hinge_g_loss_*, lecam_* (+ lecam_ema_update)
 */
#ifndef REPAE_LOSS_H
#define REPAE_LOSS_H

#include <stddef.h>

/* Per-sample mean-flat MSE: loss[n] = mean_m (pred[n,m] - target[n,m])^2,
 * M elements per sample.  dloss is [N] (the trainer's batch .mean() gives
 * dloss[n] = 1/N). */
void mse_per_sample_forward(float *loss /*[N]*/, const float *pred, const float *target, int N, int M);
void mse_per_sample_backward(float *dpred, float *dtarget, const float *dloss /*[N]*/, const float *pred,
                             const float *target, int N, int M);

/* mean |a - b| over n elements (F.l1_loss, reduction "mean").  The backward
 * uses sign(0) = 0, as torch does. */
float l1_mean_forward(const float *a, const float *b, size_t n);
void l1_mean_backward(float *da, float *db, float dloss, const float *a, const float *b, size_t n);

/* REPA projection loss for ONE encoder: zs_tilde, zs are [N, T, Dz];
 * returns -(1/N) Σ_n (1/T) Σ_t <ẑ, z> with ẑ = x / max(‖x‖₂, 1e-12) along Dz
 * (F.normalize).  With E encoders call once per encoder with dloss/E and
 * divide the summed forwards by E.  A vector whose norm is below 1e-12 is
 * divided by 1e-12 (torch's clamp branch: no gradient through the norm). */
#define REPA_NORM_EPS 1e-12
float repa_cosine_loss_forward(const float *zs_tilde, const float *zs, int N, int T, int Dz);
void repa_cosine_loss_backward(float *dzs_tilde, float *dzs, float dloss, const float *zs_tilde, const float *zs,
                               int N, int T, int Dz);

/* KL(N(mean, exp(logvar)) || N(0, 1)) summed over the M elements of each
 * sample and averaged over the N samples.  (logvar is already clamped to
 * [-30, 20] by the posterior, spec §2.4; no clamp here.) */
float kl_diag_gaussian_forward(const float *mean, const float *logvar, int N, int M);
void kl_diag_gaussian_backward(float *dmean, float *dlogvar, float dloss, const float *mean, const float *logvar, int N,
                               int M);

/* Discriminator hinge loss 0.5 (mean relu(1 - real) + mean relu(1 + fake)).
 * At the kinks (real == 1, fake == -1) the gradient is 0, as torch's relu. */
float hinge_d_loss_forward(const float *logits_real, size_t n_real, const float *logits_fake, size_t n_fake);
void hinge_d_loss_backward(float *dreal, float *dfake, float dloss, const float *logits_real, size_t n_real,
                           const float *logits_fake, size_t n_fake);

/* Generator loss -mean(fake). */
float hinge_g_loss_forward(const float *logits_fake, size_t n);
void hinge_g_loss_backward(float *dfake, float dloss, size_t n);

/* LeCam regulariser in the reference's form (TiTok / 1d-tokenizer
 * compute_lecam_loss, called with the batch MEANS of the logits):
 *   relu(mean(real) - ema_fake)^2 + relu(ema_real - mean(fake))^2
 * ema_real / ema_fake are constants here (buffers, no gradient).  The
 * reference evaluates this BEFORE updating the EMAs with this step's means
 * (lecam_ema_update).  Weight 0 in the REPA-E config (the term is unused). */
float lecam_forward(const float *logits_real, size_t n_real, const float *logits_fake, size_t n_fake, float ema_real,
                    float ema_fake);
void lecam_backward(float *dreal, float *dfake, float dloss, const float *logits_real, size_t n_real,
                    const float *logits_fake, size_t n_fake, float ema_real, float ema_fake);
/* ema <- ema * decay + mean(logits) * (1 - decay) for both buffers (reference
 * decay 0.999, buffers start at 0). */
#define LECAM_EMA_DECAY 0.999
void lecam_ema_update(float *ema_real, float *ema_fake, const float *logits_real, size_t n_real,
                      const float *logits_fake, size_t n_fake, double decay);

/* Plain mean of n floats in double (used for the logged logits means). */
double mean_f64(const float *x, size_t n);

#endif
