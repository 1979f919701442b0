/* pool.h — 2×2 max-pooling, stride 2 (torch.nn.MaxPool2d(2, 2), as in VGG16).
 *
 *   x   [B, C, H, W]
 *   out [B, C, H/2, W/2]   (floor: an odd last row/column is dropped, as PyTorch)
 *
 * Backward recomputes the argmax from x (nothing is saved) and ADDS dout into
 * dx at the maximum of each window.  Ties go to the first maximum in window
 * order (row-major); a NaN counts as the maximum (the last NaN of the window),
 * as in PyTorch's CPU kernel (`val > max || isnan(val)`).
 */
#ifndef REPAE_POOL_H
#define REPAE_POOL_H

void maxpool2x2_forward(float *out, const float *x, int B, int C, int H, int W);
void maxpool2x2_backward(float *dx, const float *dout, const float *x, int B, int C, int H, int W);

#endif
