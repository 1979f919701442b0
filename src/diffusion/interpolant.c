#include "diffusion/interpolant.h"

#include <math.h>
#include <string.h>

#include "core/error.h"

bool path_type_lookup(const char *name, path_type *p)
{
    if (name && strcmp(name, "linear") == 0)
        *p = PATH_LINEAR;
    else if (name && strcmp(name, "cosine") == 0)
        *p = PATH_COSINE;
    else
        return false;
    return true;
}

path_type path_type_parse(const char *name)
{
    path_type p;
    if (path_type_lookup(name, &p))
        return p;
    die("unknown path type '%s' (expected 'linear' or 'cosine')", name ? name : "(null)");
}

const char *path_type_name(path_type p) { return p == PATH_COSINE ? "cosine" : "linear"; }

interp_coeffs interpolant_coeffs(path_type p, double t)
{
    interp_coeffs k;
    if (p == PATH_COSINE) {
        double a = t * M_PI / 2;
        k.alpha = cos(a);
        k.sigma = sin(a);
        k.d_alpha = -M_PI / 2 * sin(a);
        k.d_sigma = M_PI / 2 * cos(a);
    } else {
        k.alpha = 1 - t;
        k.sigma = t;
        k.d_alpha = -1;
        k.d_sigma = 1;
    }
    return k;
}

interp_coeffs_f32 interpolant_coeffs_f32(path_type p, float t)
{
    interp_coeffs_f32 k;
    if (p == PATH_COSINE) {
        const float half_pi = (float)(M_PI / 2.0);
        const float a = t * (float)M_PI / 2.0f; /* as torch: t * np.pi / 2 in float32 */
        k.alpha = cosf(a);
        k.sigma = sinf(a);
        k.d_alpha = -half_pi * sinf(a);
        k.d_sigma = half_pi * cosf(a);
    } else {
        k.alpha = 1.0f - t;
        k.sigma = t;
        k.d_alpha = -1.0f;
        k.d_sigma = 1.0f;
    }
    return k;
}

void interpolant_forward(path_type p, float *xt, float *vt, const float *x0, const float *eps, const float *t, int B,
                         size_t n)
{
    for (int b = 0; b < B; b++) {
        const interp_coeffs_f32 k = interpolant_coeffs_f32(p, t[b]);
        const float *xb = x0 + (size_t)b * n, *eb = eps + (size_t)b * n;
        if (xt)
            for (size_t i = 0; i < n; i++)
                xt[(size_t)b * n + i] = k.alpha * xb[i] + k.sigma * eb[i];
        if (vt)
            for (size_t i = 0; i < n; i++)
                vt[(size_t)b * n + i] = k.d_alpha * xb[i] + k.d_sigma * eb[i];
    }
}
