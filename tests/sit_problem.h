/* sit_problem.h — the tiny SiT training problem the SiT tests share
 * (test_sit, test_irepa): randomised weights, fixed inputs, and the scalar
 * loss whose finite differences check denoising_objective_backward.
 *
 *   sit_test_randomize(&m, w, 11, true);
 *   sit_problem p = sit_problem_make(&m, N, 100, 0.4f, -1.0f);
 *   sit_fd_ctx ctx = {&m, w, &ar, opts, sit_problem_inputs(&p, &m), N, wd, wp};
 *   fd_check_direction("...", sit_fd_loss, &ctx, p.z, dz, ...);
 *   sit_problem_free(&p);
 */
#ifndef REPAE_TEST_SIT_PROBLEM_H
#define REPAE_TEST_SIT_PROBLEM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "diffusion/denoising_objective.h"
#include "models/sit.h"

/* sit_init_weights, then every trainable tensor N(0, 1/fan_in) (adaLN 0.8×,
 * vectors 0.2) so no path is zero-initialised; with norms_near_one the
 * LayerNorm weights get +1; fixed latent statistics. */
void sit_test_randomize(const sit *m, float *params, uint64_t seed, bool norms_near_one);

typedef struct sit_problem {
    int N;
    float *z, *t, *eps, *zs[SIT_MAX_ENCODERS];
    int y[8], drop[8];
} sit_problem;

/* Inputs of a fixed training problem: z ~ N(0, 1.2²) + z_shift, t, ε, targets
 * (spatially z-scored with alpha when zscore_alpha >= 0), labels, a dropout mask. */
sit_problem sit_problem_make(const sit *m, int N, uint64_t seed, float z_shift, float zscore_alpha);
void sit_problem_free(sit_problem *p);
denoising_inputs sit_problem_inputs(const sit_problem *p, const sit *m);

typedef struct sit_fd_ctx {
    const sit *m;
    float *params;
    arena *ar;
    denoising_opts opts;
    denoising_inputs in;
    int N;
    float wd, wp;
} sit_fd_ctx;

/* wd·mean(denoising) + wp·proj (the denoising term not in align-only mode). */
double sit_loss_of(const denoising_pass *a, int N, bool align_only, float wd, float wp);
/* fd_loss_fn: a forward of ctx's problem, its loss. */
double sit_fd_loss(void *ctx);

#endif
