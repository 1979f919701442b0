#include "eval/inception_score.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

int64_t inception_score_num_splits(int64_t N, int64_t split_size)
{
    if (split_size <= 0)
        die("inception score: split size %lld must be positive", (long long)split_size);
    return (N + split_size - 1) / split_size;
}

/* One split of n rows; logp [n, C] (log p, −inf allowed), p [n, C]. */
static double split_score(const double *logp, const double *p, int64_t n, int C)
{
    double *logbar = xmalloc((size_t)C * sizeof(double));
    double *kl = xmalloc((size_t)n * sizeof(double));
    /* p̄ over the split's rows; parallel over classes keeps the order fixed. */
#pragma omp parallel for schedule(static) if (n * C > 65536)
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += p[(size_t)i * C + c];
        logbar[c] = log(s / (double)n);
    }
#pragma omp parallel for schedule(static) if (n * C > 65536)
    for (int64_t i = 0; i < n; i++) {
        const double *lp = logp + (size_t)i * C, *pi = p + (size_t)i * C;
        double s = 0;
        for (int c = 0; c < C; c++)
            if (pi[c] > 0) /* 0·log 0 = 0 */
                s += pi[c] * (lp[c] - logbar[c]);
        kl[i] = s;
    }
    double mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += kl[i];
    mean /= (double)n;
    free(logbar);
    free(kl);
    return exp(mean);
}

static double score(const float *in, int is_logits, int64_t N, int C, int64_t split_size, double *split_scores)
{
    if (N <= 0 || C <= 0)
        die("inception score: %lld samples of %d classes", (long long)N, C);
    int64_t ns = inception_score_num_splits(N, split_size);
    int64_t rows = split_size < N ? split_size : N;
    double *logp = xmalloc((size_t)rows * C * sizeof(double));
    double *p = xmalloc((size_t)rows * C * sizeof(double));
    double total = 0;
    for (int64_t s = 0; s < ns; s++) {
        int64_t b = s * split_size, n = N - b < split_size ? N - b : split_size;
#pragma omp parallel for schedule(static) if (n * C > 65536)
        for (int64_t i = 0; i < n; i++) {
            const float *x = in + (size_t)(b + i) * C;
            double *lp = logp + (size_t)i * C, *pi = p + (size_t)i * C;
            if (is_logits) {
                double mx = -INFINITY;
                for (int c = 0; c < C; c++)
                    mx = x[c] > mx ? x[c] : mx;
                double z = 0;
                for (int c = 0; c < C; c++)
                    z += exp((double)x[c] - mx);
                double lse = mx + log(z);
                for (int c = 0; c < C; c++) {
                    lp[c] = (double)x[c] - lse;
                    pi[c] = exp(lp[c]);
                }
            } else {
                for (int c = 0; c < C; c++) {
                    pi[c] = x[c];
                    lp[c] = log((double)x[c]);
                }
            }
        }
        double v = split_score(logp, p, n, C);
        if (split_scores)
            split_scores[s] = v;
        total += v;
    }
    free(logp);
    free(p);
    return total / (double)ns;
}

double inception_score_logits(const float *logits, int64_t N, int C, int64_t split_size, double *split_scores)
{
    return score(logits, 1, N, C, split_size, split_scores);
}

double inception_score_probs(const float *probs, int64_t N, int C, int64_t split_size, double *split_scores)
{
    return score(probs, 0, N, C, split_size, split_scores);
}
