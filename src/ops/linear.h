/* linear.h — fully connected layer, y = x Wᵀ + b, as torch.nn.Linear.
 *
 * Shapes: inp [N, IN] (N = any number of rows, e.g. B·T tokens),
 * weight [OUT, IN] (PyTorch layout), bias [OUT] or NULL, out [N, OUT].
 *
 *   linear_forward(y, x, W, b, N, IN, OUT);
 *   linear_backward(dx, true, dW, db, dy, x, W, N, IN, OUT);  // each d* += ...
 *
 * Backward adds into dinp, dweight, dbias (accumulate = false stores dinp
 * instead, as if it had been zeroed first: one pass over it fewer); any of
 * them may be NULL when that gradient is not needed (frozen weights,
 * stop-gradient input); inp is only read for dweight and weight only for
 * dinp (either may be NULL when that gradient is).  Both directions are one
 * or two gemm() calls, so threading comes from gemm().
 */
#ifndef REPAE_LINEAR_H
#define REPAE_LINEAR_H

#include <stdbool.h>

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int IN, int OUT);

void linear_backward(float *dinp, bool accumulate, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int IN, int OUT);

/* ---- weights packed once (sampling) ----
 * A weight whose OUT is a whole number of our GEMM kernels' panels
 * (gemm_packed.h) can be rearranged in place into their packed layout, so
 * that no product packs it again; it then serves linear_forward_prepacked
 * only (same bits as linear_forward where gemm() runs our kernels).
 * prepackable: whether this CPU and shape allow it (the CPU alone decides,
 * so the answer does not change while a program runs). */
bool linear_weight_prepackable(int IN, int OUT);
/* Packs weight [OUT, IN] (64-byte aligned, as every tensor of a parameter
 * table is) in place; dies unless prepackable. */
void linear_prepack_weight(float *weight, int IN, int OUT);
void linear_forward_prepacked(float *out, const float *inp, const float *packed_weight, const float *bias, int N,
                              int IN, int OUT);

#endif
