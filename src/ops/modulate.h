/* modulate.h — adaLN modulation and the gated residual of SiT blocks (spec §4.2).
 *
 * x, out, h: tokens [B,T,D] (row stride D).  The per-sample vectors shift,
 * scale, gate are rows of length D, one per sample b, read at
 * shift[b*ld + d]: they point into the adaLN output, e.g. c6 = [B,6D] split as
 * shift_msa = c6, scale_msa = c6 + D, gate_msa = c6 + 2D, shift_mlp = c6 + 3D,
 * scale_mlp = c6 + 4D, gate_mlp = c6 + 5D with ld = 6D (the final layer's
 * [B,2D] gives shift = c2, scale = c2 + D, ld = 2D).  Their gradients use the
 * same layout with row stride ld_d (e.g. into a d_c6 [B,6D] with ld_d = 6D).
 *
 *   modulate:          out = x ⊙ (1 + scale) + shift      (broadcast over tokens)
 *   gated residual:    x  += gate ⊙ h                     (in place)
 *
 * Backwards ADD (+=) into every gradient buffer; NULL skips one.
 * modulate_forward may run in place (out == x).
 */
#ifndef REPAE_MODULATE_H
#define REPAE_MODULATE_H

#include <stdbool.h>

void modulate_forward(float *out, const float *x, const float *shift, const float *scale, int ld, int B, int T,
                      int D);
/* dx += dout ⊙ (1 + scale);  dshift += Σ_t dout;  dscale += Σ_t dout ⊙ x.
 * accumulate = false stores dx instead (as if it had been zeroed first). */
void modulate_backward(float *dx, bool accumulate, float *dshift, float *dscale, int ld_d, const float *dout,
                       const float *x, const float *scale, int ld, int B, int T, int D);

void gated_residual_forward(float *x, const float *h, const float *gate, int ld, int B, int T, int D);
/* dh += dx ⊙ gate;  dgate += Σ_t dx ⊙ h.  The residual path's gradient is dx
 * itself (identity), which the caller keeps; dx is not modified.
 * accumulate = false stores dh instead (as if it had been zeroed first). */
void gated_residual_backward(float *dh, bool accumulate, float *dgate, int ld_d, const float *dx, const float *h,
                             const float *gate, int ld, int B, int T, int D);

#endif
