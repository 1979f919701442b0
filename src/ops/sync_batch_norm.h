/* sync_batch_norm.h — BatchNorm in training mode over the global batch of
 * several processes (torch's SyncBatchNorm, which the reference converts the
 * SiT's latent BatchNorm to under data parallelism).
 *
 * Same arguments and results as batch_norm_train_forward / _backward
 * (ops/norm.h) on the concatenation of every rank's x [B, C, HW]: the
 * statistics are the global batch's (two passes in double, like the
 * one-process kernel: the sum, then the squared deviations from the global
 * mean, each all-reduced), the running statistics get the global unbiased
 * variance, and the backward all-reduces Σdy and Σdy·(x − mean).  dx is the
 * global formula for this rank's rows; each rank adds 1/world of the global
 * dweight/dbias (their sum over ranks is the global gradient).
 */
#ifndef REPAE_SYNC_BATCH_NORM_H
#define REPAE_SYNC_BATCH_NORM_H

void sync_batch_norm_train_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                   const float *x, const float *weight, const float *bias, int B, int C, int HW,
                                   float eps, float momentum);
void sync_batch_norm_train_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                                    const float *mean, const float *rstd, const float *weight, int B, int C, int HW);

#endif
