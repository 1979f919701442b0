/* sampler.h — Euler/Heun ODE and Euler–Maruyama SDE samplers with
 * classifier-free guidance on an interval (spec §9).
 *
 * The samplers know nothing about models: they call a velocity callback
 * v = f(x, t, y) on float32 buffers, and keep their own state in float64
 * (the network sees float32 inputs, its output is widened back), as the
 * reference does.  Time runs from t = 1 (noise) to t = 0 (data).
 *
 * Guidance is active at a step iff cfg_scale > 1 and
 * guidance_low <= t_cur <= guidance_high (t_cur = the step's start time; the
 * bounds are doubles so that a grid point equal to a bound compares as in the
 * reference).  Then the callback gets the doubled batch [x; x] with labels
 * [y; null_class] and the sampler combines u + w·(c − u): on the velocity for
 * the ODE, on the drift (after the score conversion) for the SDE.  Heun's
 * second evaluation is guided iff its step's t_cur test passed.
 *
 * Randomness: image i of a run draws everything from its own Philox stream
 * rng_new(seed, SAMPLER_STREAM + image_index[i]), in disjoint counter
 * ranges: initial noise, label, SDE step 0, step 1, ...  So a seed gives the
 * same images whatever the batch size or the number of processes, as long as
 * every image keeps its global index.
 *
 *   sampler_config cfg = sampler_config_default();     // generate.py's defaults
 *   cfg.mode = SAMPLER_SDE; cfg.num_steps = 250; cfg.cfg_scale = 1.0;
 *   void *ws = xmalloc(sampler_workspace_bytes(&cfg, B, n));    // n = C·H·W
 *   sampler_initial_noise(x, B, n, seed, index);          // x [B, C, H, W]
 *   sampler_random_labels(y, B, 1000, seed, index);
 *   sampler_noise noise = {.seed = seed, .image_index = index};
 *   int nfe = sampler_run(&cfg, sit_velocity, sit, x, y, B, n, &noise, ws);
 *   // x now holds the samples; the callback may be called with up to 2·B rows.
 */
#ifndef REPAE_SAMPLER_H
#define REPAE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "diffusion/interpolant.h"

/* v, x: [B, n] float32 (n = C·H·W), t: [B], y: [B] class labels
 * (null_class for the unconditional half).  Must write every element of v. */
typedef void (*velocity_fn)(void *ctx, float *v, const float *x, const float *t, const int *y, int B);

typedef enum sampler_mode { SAMPLER_ODE, SAMPLER_SDE } sampler_mode;

typedef struct sampler_config {
    sampler_mode mode;
    int heun;             /* ODE only: Heun's second-order correction */
    int num_steps;        /* >= 1 */
    double cfg_scale;     /* guidance iff > 1 */
    double guidance_low;  /* guidance interval in t, inclusive */
    double guidance_high;
    path_type path;       /* used by the SDE's score conversion; the ODE ignores it */
    int null_class;       /* label of the unconditional branch (1000 for ImageNet) */
} sampler_config;

/* generate.py's defaults: ODE, 50 steps, no Heun, cfg 1.5 on [0, 1], linear, null 1000. */
sampler_config sampler_config_default(void);
/* "ode" | "sde"; anything else dies naming the value. */
sampler_mode sampler_mode_parse(const char *name);
const char *sampler_mode_name(sampler_mode m);
/* Dies with a message naming the bad field. */
void sampler_config_check(const sampler_config *cfg);

/* The num_steps + 1 times of the run, computed as torch.linspace does:
 * ODE linspace(1, 0, N+1); SDE linspace(1, 0.04, N) followed by 0. */
void sampler_time_grid(const sampler_config *cfg, double *t);
/* 1 iff guidance is active at a step starting at t_cur. */
int sampler_guided(const sampler_config *cfg, double t_cur);
/* Number of network calls of a run: N (Heun: 2N − 1). */
int sampler_nfe(const sampler_config *cfg);

/* Where the SDE's per-step noise comes from.  By default each image's own
 * stream (seed, image_index; image_index NULL means 0..B−1).  If fn is set,
 * it fills eps [B, n] for SDE step `step` (0 … num_steps−2) instead: tests
 * use it to feed the reference's noise. */
typedef void (*sampler_noise_fn)(void *ctx, float *eps, int step, int B, size_t n);
typedef struct sampler_noise {
    uint64_t seed;
    const int64_t *image_index; /* [B] */
    sampler_noise_fn fn;
    void *ctx;
} sampler_noise;

/* Initial noise x [B, n] ~ N(0, I) and labels y [B] uniform in [0, num_classes),
 * each image from its own stream (see above). */
void sampler_initial_noise(float *x, int B, size_t n, uint64_t seed, const int64_t *image_index);
void sampler_random_labels(int *y, int B, int num_classes, uint64_t seed, const int64_t *image_index);
/* The default source's noise eps [B, n] for SDE step `step`. */
void sampler_step_noise(float *eps, int step, int B, size_t n, uint64_t seed, const int64_t *image_index);

/* Bytes of scratch sampler_run needs for a batch of B images of n elements. */
size_t sampler_workspace_bytes(const sampler_config *cfg, int B, size_t n);

/* Integrates x [B, n] (initial noise in, samples out) from t = 1 to 0 with
 * labels y [B].  noise may be NULL for the ODE.  workspace: at least
 * sampler_workspace_bytes(cfg, B, n) bytes, 8-byte aligned.  Returns the
 * number of network calls (NFE). */
int sampler_run(const sampler_config *cfg, velocity_fn f, void *ctx, float *x, const int *y, int B, size_t n,
                const sampler_noise *noise, void *workspace);

#endif
