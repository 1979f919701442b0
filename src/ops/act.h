/* act.h — elementwise activations and their gradients.
 *
 *   silu        x·σ(x)                                   (VAE "swish", SiT adaLN/projector)
 *   gelu_tanh   0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))   (SiT MLP, GELU(approximate='tanh'))
 *   gelu_erf    0.5x(1 + erf(x/√2))                      (DINOv2 MLP, exact nn.GELU)
 *   relu        max(x, 0)                                (LPIPS VGG, hinge losses)
 *   leaky_relu  x > 0 ? x : slope·x                      (PatchGAN discriminator, slope 0.2)
 *
 * All work on n contiguous floats (any shape).  Forward may run in place
 * (out == in).  Backward takes the forward *input* and adds into din:
 * din[i] += dout[i] · f'(in[i]).  At the kinks relu'(0) = 0 and
 * leaky_relu'(0) = slope, as in PyTorch.
 */
#ifndef REPAE_ACT_H
#define REPAE_ACT_H

#include <stdbool.h>
#include <stddef.h>

#include "ops/fast_exp.h"

void silu_forward(float *out, const float *in, size_t n);
void silu_backward(float *din, const float *dout, const float *in, size_t n);
/* One element of silu_backward's term: dout·σ(x)·(1 + x·(1 − σ(x))).  Shared
 * with fused kernels (group_norm_silu_backward) so that their SiLU gradient
 * is the same arithmetic by construction. */
static inline float silu_grad(float dout, float x)
{
    float s = fast_sigmoidf(x);
    return dout * s * (1.0f + x * (1.0f - s));
}

void gelu_tanh_forward(float *out, const float *in, size_t n);
/* din += dout · GELU'(in); accumulate = false stores instead (as if din had
 * been zeroed first). */
void gelu_tanh_backward(float *din, bool accumulate, const float *dout, const float *in, size_t n);

void gelu_erf_forward(float *out, const float *in, size_t n);
void gelu_erf_backward(float *din, const float *dout, const float *in, size_t n);

void relu_forward(float *out, const float *in, size_t n);
void relu_backward(float *din, const float *dout, const float *in, size_t n);

void leaky_relu_forward(float *out, const float *in, size_t n, float slope);
void leaky_relu_backward(float *din, const float *dout, const float *in, size_t n, float slope);

#endif
