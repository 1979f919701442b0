/* conv2d_dnnl.h — 2-D convolution through oneDNN (Debian's libdnnl, the
 * library PyTorch's CPU convolutions run on).  conv2d.c hands it the 4×4
 * kernels of the PatchGAN discriminator, where it beat im2col + gemm head to
 * head (BENCHMARKS.md, session 8).  Our Winograd F(4×4,3×3) keeps the 3×3
 * stride-1 maps of 16×16 and up (there it is 1.2–1.8× faster than oneDNN),
 * F(2×2,3×3) the smaller ones and im2col the strided 3×3 ones (conv2d.c
 * says why), and 1×1 kernels stay a plain gemm.  Not meant to be called
 * directly (see conv2d.h); CONV2D_DNNL forces it on any shape.
 *
 * Our tensors stay NCHW / OIHW.  oneDNN runs each pass in the layouts it
 * prefers (blocked channels); the reorders into and out of them are part of
 * every call.  Their buffers and oneDNN's scratch memory come from a buffer
 * of the calling thread (grown to its largest pass), not from the caller's
 * workspace: conv2d_workspace_floats is 0 for these shapes.
 * Gradients are added to dx and dweight (a reorder with a sum post-op), as
 * conv2d.h's conventions ask.  oneDNN compiles a kernel per shape, so its
 * primitives are made on a shape's first use and kept in a small table.
 * Several threads may run convolutions at once: memory objects are made per
 * call and each thread has its own stream and scratch buffer.
 *
 * Rounding: a direct convolution with float32 accumulation (oneDNN's jit
 * kernels; no reduced precision: its default fpmath mode is strict); the
 * sums run in another order than im2col + gemm, so results differ in the
 * last bits from CONV2D_IM2COL.  Threads: oneDNN's OpenMP build shares our
 * OpenMP pool (inside one of our parallel regions it runs on one thread).
 */
#ifndef REPAE_CONV2D_DNNL_H
#define REPAE_CONV2D_DNNL_H

#include <stddef.h>

#include "ops/conv2d.h"

/* Whether oneDNN takes this shape (it takes every shape with a non-empty
 * output in practice; the answer comes from oneDNN itself). */
int conv2d_dnnl_applies(const conv2d_shape *s);
/* out = conv(x, weight) + bias (bias may be NULL); overwrites out.
 * Returns 0, touching nothing, when oneDNN declines the shape. */
int conv2d_dnnl_forward(float *out, const float *x, const float *weight, const float *bias, const conv2d_shape *s);
/* dx += ∂/∂x, dweight += ∂/∂weight (either may be NULL); no bias gradient.
 * Returns 0, touching nothing, when oneDNN declines the shape. */
int conv2d_dnnl_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                         const conv2d_shape *s);

#endif
