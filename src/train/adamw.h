/* adamw.h — PyTorch's AdamW (decoupled weight decay), over a parameter table.
 *
 * The moments live in buffers with the table's layout, so one optimiser is
 * three arrays and a step counter.  Only PARAM_TRAINABLE entries are
 * updated; frozen tensors and running statistics are never touched.
 *
 *   m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
 *   θ ← θ(1 − lr·wd) − lr · (m / (1−β1^k)) / (sqrt(v)/sqrt(1−β2^k) + eps)
 */
#ifndef REPAE_ADAMW_H
#define REPAE_ADAMW_H

#include "models/params.h"

typedef struct adamw {
    float lr, eps, weight_decay;
    double beta1, beta2; /* doubles, as torch holds them; rounded to float per use */
    long long step; /* k: number of updates taken */
    float *m, *v;   /* table layout */
    const param_table *table;
} adamw;

/* Defaults of the reference: β = (0.9, 0.999), eps 1e-8, weight decay 0. */
adamw adamw_create(const param_table *t, float lr);
void adamw_free(adamw *o);
void adamw_step(adamw *o, float *params, const float *grads);

/* Global L2 norm of the trainable gradients (in double), and the reference's
 * clip: multiply all by min(1, max_norm / (norm + 1e-6)).  Returns the norm
 * before clipping (what the reference logs). */
double grad_global_norm(const param_table *t, const float *grads);
double grad_clip(const param_table *t, float *grads, double max_norm);

/* Zeroes the gradient buffer (the whole table layout). */
void grad_zero(const param_table *t, float *grads);

#endif
