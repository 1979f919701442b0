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
 * or two gemm() calls, so threading comes from OpenBLAS.
 */
#ifndef REPAE_LINEAR_H
#define REPAE_LINEAR_H

#include <stdbool.h>

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int IN, int OUT);

void linear_backward(float *dinp, bool accumulate, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int IN, int OUT);

#endif
