/* spatial_norm.h — iREPA's spatial normalisation of REPA targets (arXiv
 * 2512.10794; End2End-Diffusion/iREPA, ldm/utils.py spatial_zscore).
 *
 * The encoder's patch tokens x [N, T, D] are standardised per image and per
 * channel over the T token positions (the "spatial" axis, dim 1):
 *
 *   out[n,t,d] = (x[n,t,d] − alpha·mean_t x[n,·,d]) / (std_t x[n,·,d] + eps)
 *
 * with the unbiased standard deviation (torch's x.std(dim=1), T − 1 in the
 * denominator) and eps = 1e-6 added OUTSIDE the square root.  alpha scales
 * the mean subtraction (iREPA's --zscore-alpha: 0.6 in its LDM trainer).  No
 * class or register token takes part.  This removes the component shared by
 * every token of an image (the global information) and keeps the spatial
 * contrast, which iREPA shows is what REPA transfers.
 *
 *   spatial_norm_forward(zs, zs, N, T, D, 0.6f, SPATIAL_NORM_EPS);  // in place
 *
 * Forward only: the targets come from a frozen encoder and carry no gradient.
 * Moments are accumulated in double; T must be at least 2.
 */
#ifndef REPAE_SPATIAL_NORM_H
#define REPAE_SPATIAL_NORM_H

#define SPATIAL_NORM_EPS 1e-6f

/* out may equal x (in place). */
void spatial_norm_forward(float *out, const float *x, int N, int T, int D, float alpha, float eps);

#endif
