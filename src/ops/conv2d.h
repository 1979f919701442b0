/* conv2d.h — 2-D convolution (cross-correlation, as torch.nn.Conv2d), forward
 * and backward, NCHW.
 *
 *   x      [B, C_in, H, W]
 *   weight [C_out, C_in, kh, kw]      (PyTorch layout)
 *   bias   [C_out] or NULL
 *   out    [B, C_out, H_out, W_out]   H_out = (H + pad_top + pad_bottom - kh) / stride + 1
 *
 * Padding is zero padding and may be asymmetric (the VAE Downsample pads only
 * right and bottom: conv2d_make_pad(..., 3, 2, 0, 0, 1, 1)).
 *
 * Implementation: 3×3 stride-1 convolutions with enough input channels and
 * outputs of 16×16 or more use Winograd F(4×4,3×3), smaller ones
 * F(2×2,3×3) (conv2d_winograd.h: 4× and 2.25× fewer multiply-adds); the
 * PatchGAN's 4×4 kernels go to oneDNN (conv2d_dnnl.h).  The rest, and every
 * shape when CONV2D_IM2COL is forced: im2col + gemm() on panels of output
 * positions.  A panel is
 * either a slice of one image's output positions (large images; the gemm
 * writes straight into `out`) or several whole images at once (small images,
 * so that the gemm has enough columns; output goes through a staging buffer).
 * The panel size is chosen so that the column buffer stays around 4M floats,
 * which bounds the workspace whatever the image size.  Whole-image panels of
 * small maps (kh·kw·H_out·W_out ≤ 4096, e.g. the PatchGAN discriminator's)
 * fill and scatter the columns through a per-call table of tap offsets.  A 1×1, stride-1,
 * unpadded conv skips im2col and needs no workspace.
 *
 * Backward follows the kernel conventions: it ADDS into dx, dweight, dbias;
 * a NULL gradient pointer means "not needed" (and skips that work).
 *   dweight += dout · colsᵀ,  dcols = Wᵀ · dout,  dx += col2im(dcols),
 *   dbias   += Σ_{b,h,w} dout.
 *
 * Workspace: conv2d_workspace_floats(s) floats, shared by forward and
 * backward (contents are scratch; nothing is kept between calls).  Shapes
 * that go to oneDNN need none: it keeps its own buffers (conv2d_dnnl.h).
 * Threads: gemm() uses OpenBLAS's OpenMP pool; im2col / col2im / bias loops
 * are our own OpenMP loops, never around a gemm call.
 */
#ifndef REPAE_CONV2D_H
#define REPAE_CONV2D_H

#include <stddef.h>

/* Which algorithm runs the convolution.  AUTO (0, what the constructors
 * give) picks Winograd (ops/conv2d_winograd.h) for 3×3 stride-1
 * convolutions with at least CONV2D_WINOGRAD_MIN_CIN input channels:
 * F(4×4,3×3) where the output is at least CONV2D_WINOGRAD_F4_MIN_OUT in both
 * directions, F(2×2,3×3) on smaller maps; oneDNN for the shapes named
 * below; im2col + gemm otherwise.  Tests and benchmarks force one:
 *   CONV2D_WINOGRAD     F(2×2,3×3) on 3×3 stride-1 kernels, F(2×2,2×2) on
 *                       4×4 kernels of stride 1 or 2 (ops/conv2d_winograd_4x4.h;
 *                       AUTO does not pick that one: slower so far);
 *   CONV2D_WINOGRAD_F4  F(4×4,3×3) on 3×3 stride-1 kernels of any size (on
 *                       8×8 maps its larger rounding error fails two tests,
 *                       see conv2d_winograd.h);
 *   CONV2D_DNNL         oneDNN (ops/conv2d_dnnl.h), on any shape it takes;
 * on any other shape they fall back to im2col.  AUTO gives oneDNN the 4×4
 * kernels (where it beat im2col head to head; conv2d.c says why not more)
 * and F(2×2,3×3) the 3×3 stride-1 ones on smaller maps; 1×1 kernels are
 * one gemm per image. */
typedef enum conv2d_algo { CONV2D_AUTO = 0, CONV2D_IM2COL, CONV2D_WINOGRAD, CONV2D_WINOGRAD_F4, CONV2D_DNNL } conv2d_algo;
#define CONV2D_WINOGRAD_MIN_CIN 8
#define CONV2D_WINOGRAD_F4_MIN_OUT 16

typedef struct conv2d_shape {
    int B, C_in, H, W, C_out, kh, kw, stride, pad_top, pad_left, pad_bottom, pad_right;
    conv2d_algo algo;
} conv2d_shape;

/* Square kernel k×k, symmetric padding `pad`. */
conv2d_shape conv2d_make(int B, int C_in, int H, int W, int C_out, int k, int stride, int pad);
/* Square kernel k×k, explicit (possibly asymmetric) padding. */
conv2d_shape conv2d_make_pad(int B, int C_in, int H, int W, int C_out, int k, int stride, int pad_top,
                             int pad_left, int pad_bottom, int pad_right);

int conv2d_out_h(const conv2d_shape *s);
int conv2d_out_w(const conv2d_shape *s);
/* Element counts of x, weight and out. */
size_t conv2d_x_numel(const conv2d_shape *s);
size_t conv2d_weight_numel(const conv2d_shape *s);
size_t conv2d_out_numel(const conv2d_shape *s);
/* Multiply-adds of the forward pass ×2 (FLOPs); backward is about twice that. */
double conv2d_flops(const conv2d_shape *s);

/* Scratch needed by forward and backward (im2col columns etc.); may be 0. */
size_t conv2d_workspace_floats(const conv2d_shape *s);

void conv2d_forward(float *out, const float *x, const float *weight, const float *bias, const conv2d_shape *s,
                    float *workspace);
void conv2d_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                     const float *weight, const conv2d_shape *s, float *workspace);

/* Naive direct convolution in double precision (tests only; slow).  Same
 * conventions: forward overwrites out, backward adds into non-NULL grads. */
void conv2d_forward_ref(float *out, const float *x, const float *weight, const float *bias, const conv2d_shape *s);
void conv2d_backward_ref(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                         const float *weight, const conv2d_shape *s);

#endif
