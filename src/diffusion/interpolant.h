/* interpolant.h — the stochastic interpolant x_t = α(t)·x0 + σ(t)·ε (spec §5).
 *
 * t = 0 is data, t = 1 is noise.  Two paths:
 *   linear:  α = 1 − t,        σ = t,          α' = −1,               σ' = 1
 *   cosine:  α = cos(πt/2),    σ = sin(πt/2),  α' = −(π/2)·sin(πt/2), σ' = (π/2)·cos(πt/2)
 * The model predicts the velocity v* = α'·x0 + σ'·ε (linear: ε − x0).
 *
 * The samplers (sampler.h) use the double-precision coefficients to turn a
 * velocity into a score; interpolant_forward is the float32 training-time
 * construction of x_t and v* (the denoising objective's, denoising_objective.h).
 * This is the one path-type enum and the one parser of a path name: every
 * option that takes a path type goes through path_type_parse.
 *
 *   path_type p = path_type_parse("cosine");          // dies on an unknown name
 *   interp_coeffs k = interpolant_coeffs(p, 0.3);     // α, σ, α', σ' at t = 0.3
 */
#ifndef REPAE_INTERPOLANT_H
#define REPAE_INTERPOLANT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum path_type { PATH_LINEAR, PATH_COSINE } path_type;

typedef struct interp_coeffs {
    double alpha, sigma, d_alpha, d_sigma;
} interp_coeffs;

/* The names, as an OPT_CHOICE list for every option that takes a path type. */
#define PATH_TYPE_CHOICES "linear|cosine"

/* "linear" | "cosine"; anything else dies naming the value. */
path_type path_type_parse(const char *name);
/* The same without dying: false (and *p untouched) for an unknown name. */
bool path_type_lookup(const char *name, path_type *p);
const char *path_type_name(path_type p);

interp_coeffs interpolant_coeffs(path_type p, double t);

/* The same coefficients in float32, as the float32 reference computes them
 * (cosine: t·π/2 in float32, then cosf/sinf). */
typedef struct interp_coeffs_f32 {
    float alpha, sigma, d_alpha, d_sigma;
} interp_coeffs_f32;
interp_coeffs_f32 interpolant_coeffs_f32(path_type p, float t);

/* x0, eps, xt, vt: [B, n] (n = C·H·W per sample), t: [B].
 * xt = α(t)·x0 + σ(t)·ε and vt = α'(t)·x0 + σ'(t)·ε with the float32
 * coefficients of interpolant_coeffs_f32.  xt or vt may be NULL when not
 * needed. */
void interpolant_forward(path_type p, float *xt, float *vt, const float *x0, const float *eps, const float *t, int B,
                         size_t n);

#endif
