/* finite_check.h — one cheap pass that finds NaN or Inf in a float array.
 *
 * Loaders call it on everything they read (weights, noise, statistics), so
 * a corrupt or diverged file is refused by name before it turns into black
 * images or a NaN loss far from its cause:
 *
 *   size_t bad = finite_check_f32(w, n);
 *   if (bad < n) die("'%s': tensor '%s' holds %g at index %zu", path, name, w[bad], bad);
 *
 * It tests the exponent bits with an integer OR-reduction, which the
 * compiler vectorises (a float reduction it may not reorder without
 * -ffast-math), so a 675 M-parameter SiT costs a fraction of a second. */
#ifndef REPAE_FINITE_CHECK_H
#define REPAE_FINITE_CHECK_H

#include <stddef.h>

/* Index of the first NaN or ±Inf in x[0, n), or n when all are finite. */
size_t finite_check_f32(const float *x, size_t n);

#endif
