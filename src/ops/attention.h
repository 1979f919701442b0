/* attention.h — multi-head softmax attention (no mask), forward and backward.
 *
 *   out[b,t,h*HD + d] = Σ_s P[b,h,t,s] · v[b,s,h,d],
 *   P[b,h,t,:]        = softmax_s( scale · Σ_d q[b,t,h,d] · k[b,s,h,d] ),  scale = HD^(-1/2)
 *
 * Layout: q, k, v are token-major with row stride `ld` (floats between
 * consecutive tokens): head h of token t of sample b starts at
 *   q[(b*T + t)*ld + h*HD].
 * So they can point into a packed qkv [B,T,3D] (timm's [3][heads][head_dim]
 * layout: q = qkv, k = qkv + D, v = qkv + 2D, ld = 3D) or be separate
 * [B,T,D] buffers (ld = D).  `out` is [B,T,NH*HD] (heads concatenated, row
 * stride NH*HD).  `probs` [B,NH,T,T] keeps the softmax for the backward; it
 * may be NULL in forward-only use (inference), then the workspace holds it.
 *
 * The single-head VAE attention (spec §2.1) is NH = 1, HD = C over the
 * L = H·W positions of a [B, L, C] transposed feature map.
 *
 * Backward ADDS into dq, dk, dv (row stride ld_d, same layout as q/k/v, so a
 * packed dqkv [B,T,3D] works with ld_d = 3D), or with accumulate = false
 * stores into them as if they had been zeroed first (the slots of other
 * columns between rows are not touched); a NULL pointer skips that
 * gradient.  dq/dk/dv must not overlap each other's (b,t,h) slots (they do not
 * in the packed layout).
 *
 * Work is split over the B·NH (sample, head) pairs with OpenMP; each thread
 * uses its own T×T slice of the workspace.  Size the workspace with
 * attention_workspace_floats() under the same OpenMP thread count as the call
 * (it reserves one slice per thread, omp_get_max_threads()).
 */
#ifndef REPAE_ATTENTION_H
#define REPAE_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>

size_t attention_workspace_floats(int B, int T, int NH, int HD);

void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v, int ld,
                       int B, int T, int NH, int HD, float *workspace);

void attention_backward(float *dq, float *dk, float *dv, bool accumulate, int ld_d, const float *dout,
                        const float *probs, const float *q, const float *k, const float *v, int ld, int B, int T,
                        int NH, int HD, float *workspace);

/* Naive reference (double accumulation, no BLAS, no workspace), same
 * semantics; for tests. */
void attention_forward_ref(float *out, float *probs, const float *q, const float *k, const float *v, int ld,
                           int B, int T, int NH, int HD);
void attention_backward_ref(float *dq, float *dk, float *dv, int ld_d, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int ld, int B, int T, int NH, int HD);

#endif
