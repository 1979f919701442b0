/* norm.h — GroupNorm, LayerNorm and BatchNorm2d, forward and backward.
 *
 * All three normalise a set S of elements by its own mean and (biased)
 * variance and then apply an optional per-feature affine map:
 *
 *   x̂ = (x − μ_S) · rstd,   rstd = 1/√(σ²_S + eps),   y = x̂·w + b
 *
 * and share one backward (means taken over S, n = |S|):
 *
 *   dx += rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂)),   dx̂ = dy·w
 *   dw += Σ dy·x̂,   db += Σ dy      (summed over every element sharing w, b)
 *
 * They differ only in what S is:
 *   GroupNorm  x [B,C,HW] (NCHW), S = one sample's C/G channels of one group;
 *              w, b per channel [C]; saves mean/rstd [B·G].  VAE: G = 32, eps 1e-6.
 *   LayerNorm  x [N,D], S = one row; w, b per feature [D]; saves mean/rstd [N].
 *              SiT: no affine, eps 1e-6; DINOv2: affine, eps 1e-6; qk-norm: eps 1e-5.
 *   BatchNorm  x [B,C,HW], S = one channel over the whole batch (n = B·HW);
 *              w, b per channel [C]; saves mean/rstd [C].  SiT latents: no affine,
 *              eps 1e-4; PatchGAN: affine, eps 1e-5; both momentum 0.1.
 *
 * weight/bias NULL = no affine (w = 1, b = 0).  Saved mean/rstd may be NULL
 * in a forward that no backward will follow.  Forward may run in place
 * (out == x), though backward then needs x from elsewhere.  Backward adds
 * (+=) into dx, dweight, dbias; each may be NULL when not needed.
 * Statistics are accumulated in double (two passes: mean, then squared
 * deviations), so large offsets or large sets do not lose the variance.
 */
#ifndef REPAE_NORM_H
#define REPAE_NORM_H

#include <stdbool.h>

void group_norm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                        const float *bias, int B, int C, int HW, int G, float eps);
/* SiLU(GroupNorm(x)) in one pass over x (out may equal x).  Bit-identical to
 * group_norm_forward followed by silu_forward.  The pre-activation is not
 * kept: the backward recomputes it from x and the statistics. */
void group_norm_silu_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                             const float *bias, int B, int C, int HW, int G, float eps);
void group_norm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                         const float *mean, const float *rstd, const float *weight, int B, int C, int HW, int G);
/* SiLU(GroupNorm(x)) again, for a backward that did not keep it, from the
 * statistics group_norm_silu_forward saved (no pass over x to make them):
 * bit-identical to that forward's out. */
void group_norm_silu_recompute(float *out, const float *x, const float *mean, const float *rstd, const float *weight,
                               const float *bias, int B, int C, int HW, int G);
/* The backward of SiLU(GroupNorm(x)) in one parallel pass: dout is the
 * gradient at the SiLU's output; the SiLU's input GroupNorm(x) is
 * recomputed on the way from x, the saved statistics, weight and bias (the
 * same floats as group_norm_forward's output, so nothing need be kept).
 * Bit-identical to silu_backward into a zeroed buffer followed by
 * group_norm_backward, without writing that buffer.
 * accumulate = false stores into dx instead of adding (as if dx had been
 * zeroed first). */
void group_norm_silu_backward(float *dx, bool accumulate, float *dweight, float *dbias, const float *dout,
                              const float *x, const float *mean, const float *rstd, const float *weight,
                              const float *bias, int B, int C, int HW, int G);

void layer_norm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                        const float *bias, int N, int D, float eps);
void layer_norm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                         const float *mean, const float *rstd, const float *weight, int N, int D);

/* Train mode: normalise by the batch statistics, save mean/rstd [C], and
 * (unless running_mean / running_var are NULL) update the running stats in
 * place as PyTorch does:
 *   running_mean ← (1 − momentum)·running_mean + momentum·μ
 *   running_var  ← (1 − momentum)·running_var  + momentum·σ²·n/(n − 1)
 * (unbiased variance for the running stat, biased for normalising).
 * PyTorch's momentum=None (cumulative average) is not supported: the caller
 * can pass momentum = 1/(num_batches_tracked + 1) for that.  Needs n > 1. */
void batch_norm_train_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                              const float *x, const float *weight, const float *bias, int B, int C, int HW,
                              float eps, float momentum);
/* Only the running-statistics update of batch_norm_train_forward on x (that
 * forward with out = NULL): the same floats it leaves in running_mean /
 * running_var (the discriminator replays a pass whose activations it
 * reuses). */
void batch_norm_running_update(float *running_mean, float *running_var, const float *x, int B, int C, int HW,
                               float momentum);
/* The full train-mode backward, including the dependence of μ and σ² on x
 * (the GAN generator loss needs it through the discriminator's BatchNorms). */
void batch_norm_train_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                               const float *mean, const float *rstd, const float *weight, int B, int C, int HW);

/* Eval mode: a fixed per-channel affine map from the running stats,
 *   y = (x − running_mean) / √(running_var + eps) · w + b,
 * so dx = dy · w / √(running_var + eps).  Running stats get no gradient. */
void batch_norm_eval_forward(float *out, const float *x, const float *running_mean, const float *running_var,
                             const float *weight, const float *bias, int B, int C, int HW, float eps);
void batch_norm_eval_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                              const float *running_mean, const float *running_var, const float *weight, int B,
                              int C, int HW, float eps);

/* The training forward's second half for channel c, from its batch mean m
 * and biased variance v over n values (shared with sync_batch_norm, whose
 * statistics are the global batch's): update the running statistics
 * (unbiased variance), then normalise, scale, shift (not when out is NULL). */
void batch_norm_forward_channel(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                const float *x, const float *weight, const float *bias, double m, double v, double n,
                                float eps, float momentum, int c, int B, int C, int HW);
/* The pieces of the training backward, per channel c (shared with
 * sync_batch_norm, which all-reduces the sums between them): the sums
 * Σdy and Σdy·(x − mean) over this process's values, then dweight/dbias
 * (times share) and dx from sums over n values. */
void batch_norm_channel_sums(double *s_dy, double *s_dy_xc, const float *dout, const float *x, float mean, int c, int B,
                             int C, int HW);
void batch_norm_backward_channel(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                                 float mean, float rstd, float w, double s_dy, double s_dy_xc, double n, double share,
                                 int c, int B, int C, int HW);

#endif
