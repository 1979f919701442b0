/* cross_entropy.h — softmax cross-entropy over class logits, forward and
 * backward, as torch.nn.functional.cross_entropy(logits, labels) with
 * reduction "mean" (no weights, no label smoothing, no ignore_index).
 *
 *   loss = (1/N) Σ_n [ logsumexp_k logits[n,k] − logits[n, label[n]] ]
 *
 * Shapes: logits, probs [N, K] row-major; labels [N] in [0, K).
 * The forward keeps the softmax in `probs` (needed by the backward) and
 * returns the mean loss; log-sum-exp is taken around the row maximum in
 * double, so huge logits neither overflow nor lose the loss.  The backward
 * ADDS dloss·(probs − onehot)/N into dlogits (architecture.md).  A label
 * outside [0, K) dies naming the row.  Nothing here allocates.
 */
#ifndef REPAE_CROSS_ENTROPY_H
#define REPAE_CROSS_ENTROPY_H

float cross_entropy_forward(float *probs, const float *logits, const int *labels, int N, int K);
void cross_entropy_backward(float *dlogits, float dloss, const float *probs, const int *labels, int N, int K);

/* Rows whose arg-max logit is the label (first maximum on ties, as torch.argmax). */
int count_correct(const float *logits, const int *labels, int N, int K);

#endif
