/* denoising_objective.h — the SiT's training objective (spec §5): what the
 * reference's SiT.forward computes around the network.
 *
 *   xn  = BN(z)                        the SiT's latent BatchNorm (models/sit.h)
 *   t   ~ uniform or lognormal         unless given
 *   ε   ~ N(0, I)                      unless given
 *   x_t = α_t·xn + σ_t·ε,  v* = α'_t·xn + σ'_t·ε   (diffusion/interpolant.h)
 *   v̂, zs_tilde = SiT(x_t, t, y)       label dropout in train mode (models/sit.h)
 *   denoising_loss[n] = mean (v̂ − v*)²                        (ops/loss.h)
 *   proj_loss = mean_e repa_cosine_loss(zs_tilde[e], zs[e])   (ops/loss.h)
 *
 * The random draws come from one rng in this order: t, ε, label dropout.
 * The training step, the LDM step, `repae forward` and the tests all run
 * their SiT passes through here.  Activations are carved from an arena sized
 * by denoising_objective_plan_bytes():
 *
 *   arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &opts));
 *   denoising_pass a;
 *   denoising_objective_forward(&a, &m, w, &ar, &opts, &in, N);
 *   denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, grads, NULL);   // SiT pass
 *   arena_reset(&ar, 0);
 *
 * The REPA-E alignment pass is opts = {.train = false, .align_only = true}
 * and denoising_objective_backward(..., 0, 1.5f, NULL, dz): no parameter
 * gradient is computed at all and the gradient of 1.5·proj_loss flows through
 * the projector, blocks 1..encoder_depth, the patch embed and the eval-mode
 * BatchNorm (a per-channel scale) into dz.
 *
 * Conventions (docs/architecture.md): backward ADDS into dparams and dz; a
 * NULL gradient means "not needed".
 */
#ifndef REPAE_DENOISING_OBJECTIVE_H
#define REPAE_DENOISING_OBJECTIVE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "core/rng.h"
#include "diffusion/interpolant.h"
#include "models/sit.h"

/* How training times are drawn (spec §5.2). */
typedef enum time_weighting { TIME_WEIGHTING_UNIFORM, TIME_WEIGHTING_LOGNORMAL } time_weighting;

/* The names, as an OPT_CHOICE list for every option that takes a weighting. */
#define TIME_WEIGHTING_CHOICES "uniform|lognormal"

/* "uniform" | "lognormal"; anything else dies naming the value. */
time_weighting time_weighting_parse(const char *name);

/* Draws N training times from r: uniform t ~ U[0,1), or lognormal σ = exp(n),
 * n ~ N(0,1), t = σ/(1+σ) (linear path) or (2/π)·atan(σ) (cosine path). */
void denoising_draw_time(float *t, rng *r, int N, time_weighting weighting, path_type path);

typedef struct denoising_opts {
    bool train;      /* the SiT in train mode: BN batch statistics + running update, label dropout */
    bool align_only; /* stop after block encoder_depth: no final layer, no denoising loss */
    path_type path;
    time_weighting weighting;
} denoising_opts;

typedef struct denoising_inputs {
    const float *z;    /* [N,C,H,W] un-normalised latent (kept by pointer until backward) */
    const int *y;      /* [N] labels in [0, num_classes] */
    const float *zs[SIT_MAX_ENCODERS]; /* [N,T,z_dims[e]] REPA targets (kept until backward) */
    const float *time_input; /* [N] or NULL: drawn from rng */
    const float *noise;      /* [N,C,H,W] or NULL: drawn from rng */
    const int *force_drop;   /* [N] train mode: 1 = replace the label by the null class, instead of
                                the draw (the reference's drop_mask); ignored in eval mode */
    rng *rng;                /* draws, in this order: t (if NULL), ε (if NULL), label dropout (if drawn) */
} denoising_inputs;

/* One forward's results and what its backward needs (pointers into the arena). */
typedef struct denoising_pass {
    int N;
    denoising_opts opts;
    const float *z;
    const float *zs[SIT_MAX_ENCODERS];
    /* outputs */
    float *time_input;      /* [N] */
    float *noise;           /* [N,C,H,W] */
    const int *labels;      /* [N] labels after dropout */
    const float *model_output; /* [N,C,H,W] v̂ (NULL in align-only mode) */
    float *denoising_loss;  /* [N] (NULL in align-only mode) */
    const float *zs_tilde[SIT_MAX_ENCODERS];
    float proj_loss;        /* 0 when there are no encoders */
    /* saved for backward */
    float *bn_mean, *bn_rstd; /* [C] train mode */
    float *target;            /* [N,C,H,W] v* (NULL in align-only mode) */
    sit_acts net;             /* the network's activations */
} denoising_pass;

/* Bytes of arena that one denoising_objective_forward + _backward needs. */
size_t denoising_objective_plan_bytes(const sit *m, int N, const denoising_opts *opts);

/* Runs the forward with everything carved from `ar` (it stays there until
 * the caller resets the arena).  params is written only in train mode (BN
 * running stats and num_batches_tracked). */
void denoising_objective_forward(denoising_pass *a, const sit *m, float *params, arena *ar,
                                 const denoising_opts *opts, const denoising_inputs *in, int N);

/* Gradient of L = w_denoise·mean_n(denoising_loss) + w_proj·proj_loss
 * (w_denoise is ignored in align-only mode).  dparams: table layout, ADDED
 * into (trainable entries only), NULL = frozen model (no parameter gradient
 * is computed).  dz [N,C,H,W]: ADDED into, NULL = not needed.  Scratch comes
 * from `ar` above the activations and is released before returning. */
void denoising_objective_backward(const sit *m, const float *params, const denoising_pass *a, arena *ar,
                                  float w_denoise, float w_proj, float *dparams, float *dz);

#endif
