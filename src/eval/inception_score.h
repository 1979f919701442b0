/* inception_score.h — Inception Score as the ADM evaluator computes it.
 *
 * ADM (Evaluator.compute_inception_score): p(y|x) = softmax(pool3 · W) over
 * the 1008 logits (no bias); the samples are cut in consecutive splits of
 * 5000 (the last one may be shorter and counts as a full split); per split
 *     IS_s = exp( mean_n Σ_y p(y|x_n) (log p(y|x_n) − log p̄(y)) ),  p̄ = mean_n p(y|x_n)
 * and the score is the plain mean of IS_s over the splits.
 *
 * Differences from the evaluator, all at rounding level:
 *  * numpy does this in float32 on TF's float32 softmax; we work in double
 *    from the logits, with log p = logit − logsumexp (never log of a rounded
 *    probability).  The results agree to ~1e-6 relative (float32 rounding).
 *  * a probability that underflows to exactly 0 makes numpy's 0·log 0 a NaN
 *    and the whole score NaN; we use 0·log 0 = 0 (the limit).  With real
 *    Inception logits no probability underflows, so this never differs.
 *
 *   double splits[10];
 *   double is = inception_score_logits(logits, 50000, 1008, IS_SPLIT_SIZE, splits);
 */
#ifndef REPAE_INCEPTION_SCORE_H
#define REPAE_INCEPTION_SCORE_H

#include <stdint.h>

#define IS_SPLIT_SIZE 5000
#define IS_NUM_CLASSES 1008

/* Number of splits for N samples: ceil(N / split_size). */
int64_t inception_score_num_splits(int64_t N, int64_t split_size);

/* logits: [N, C] float (pool3 · W).  split_scores (NULL or [num_splits])
 * gets each split's score.  Returns the mean over splits. */
double inception_score_logits(const float *logits, int64_t N, int C, int64_t split_size, double *split_scores);

/* The same from probabilities [N, C] (rows summing to 1, as TF's softmax
 * output that the evaluator stores). */
double inception_score_probs(const float *probs, int64_t N, int C, int64_t split_size, double *split_scores);

#endif
