/* discriminator.h — the PatchGAN discriminator of the VAE loss (spec §7.4),
 * taming-transformers' NLayerDiscriminator with BatchNorm.
 *
 *   main.0  Conv in→ndf, k4 s2 p1, bias      LeakyReLU 0.2
 *   main.2  Conv ndf→2ndf, k4 s2 p1          BatchNorm  LeakyReLU     (n = 1 .. n_layers-1:
 *   ...                                                               width ndf·min(2^n, 8))
 *   main.k  Conv →ndf·min(2^L,8), k4 s1 p1   BatchNorm  LeakyReLU     (L = n_layers)
 *   main.last Conv →1, k4 s1 p1, bias        → logits [B, 1, h, w]
 *
 * REPA-E keeps it in train mode throughout: every forward normalises with
 * the batch's own statistics and moves the running stats (momentum 0.1), and
 * the generator's gradient into the reconstruction goes through that
 * train-mode BatchNorm (a full BN backward).
 *
 *   discriminator d;  disc_build(&d, &(disc_config){3, 64, 3});
 *   float *params = param_alloc(&d.table);  disc_init_weights(&d, params, seed);   // the caller's buffer
 *   arena a = arena_create(disc_acts_bytes(&d, B, H, W));
 *   disc_acts s;                                  // filled with pointers into the arena
 *   disc_forward(&d, params, &s, logits, x, B, H, W, &a);
 *   disc_backward(&d, params, &s, dlogits, dparams_or_NULL, dx_or_NULL);
 */
#ifndef REPAE_DISCRIMINATOR_H
#define REPAE_DISCRIMINATOR_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "models/params.h"
#include "ops/conv2d.h"

#define DISC_MAX_CONVS 10

typedef struct disc_config {
    int in_channels; /* 3 (RGB) or 1 (Fashion-MNIST) */
    int ndf;         /* 64 */
    int n_layers;    /* 3 */
} disc_config;

typedef struct disc_conv {
    int cin, cout, stride;
    bool has_bias, has_bn, has_act;
    size_t weight, bias;                          /* offsets; bias unused without bias */
    size_t bn_weight, bn_bias, bn_mean, bn_var, bn_count; /* offsets when has_bn */
} disc_conv;

typedef struct discriminator {
    disc_config cfg;
    param_table table;
    int n_convs;
    disc_conv convs[DISC_MAX_CONVS];
    float bn_eps, bn_momentum, slope;
} discriminator;

/* Saved activations of one forward. */
typedef struct disc_acts {
    int B;
    const float *input;                  /* the caller's x, kept alive until backward */
    conv2d_shape shape[DISC_MAX_CONVS];
    float *conv_out[DISC_MAX_CONVS];     /* pre-BN (or final logits) */
    float *bn_out[DISC_MAX_CONVS];       /* pre-activation when has_bn */
    float *act_out[DISC_MAX_CONVS];      /* the next conv's input */
    float *mean[DISC_MAX_CONVS], *rstd[DISC_MAX_CONVS];
    float *workspace;
    float *grad_a, *grad_b; /* backward scratch, largest activation each */
} disc_acts;

/* The parameter table only; the weights (and BN running statistics) are a
 * buffer laid out by it that the caller owns (models/params.h). */
void disc_build(discriminator *d, const disc_config *cfg);
void disc_free(discriminator *d);
/* From-scratch init (spec §7.4): conv weights N(0, 0.02²), BN weight
 * N(1, 0.02²), BN bias 0, the two conv biases PyTorch's default uniform. */
void disc_init_weights(const discriminator *d, float *params, uint64_t seed);
/* By state-dict name under prefix (main.0.weight, ...), and back. */
void disc_load(const discriminator *d, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
void disc_save(const discriminator *d, const float *params, st_writer *w, const char *prefix);
int disc_logits_h(const discriminator *d, int H);
int disc_logits_w(const discriminator *d, int W);
size_t disc_acts_bytes(const discriminator *d, int B, int H, int W);
/* Train-mode forward: writes logits [B,1,h,w], updates the BN running
 * statistics inside params, and fills `s` with the saved activations, carved
 * from the arena (disc_acts_bytes; valid until the caller resets it). */
void disc_forward(const discriminator *d, float *params, disc_acts *s, float *logits, const float *x, int B, int H,
                  int W, arena *a);
/* What disc_forward does to the BN running statistics in params (and
 * num_batches_tracked), the same floats, from the activations `s` of an
 * earlier forward on the same input with the same weights: a second forward
 * of that input then needs only this (the REPA-E step's D(recon) of the D
 * update, vae_loss.c).  Reads conv_out only; `s` stays valid. */
void disc_replay_running_stats(const discriminator *d, float *params, const disc_acts *s);
/* Adds into dparams (table layout) and dx; either may be NULL.  Reads `s`
 * without changing it, so one forward can serve several backwards. */
void disc_backward(const discriminator *d, const float *params, const disc_acts *s, const float *dlogits,
                   float *dparams, float *dx);

#endif
