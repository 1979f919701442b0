#include "ops/cross_entropy.h"

#include <math.h>
#include <stddef.h>

#include "core/error.h"

float cross_entropy_forward(float *probs, const float *logits, const int *labels, int N, int K)
{
    double total = 0;
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * K;
        float *p = probs + (size_t)n * K;
        if (labels[n] < 0 || labels[n] >= K)
            die("cross_entropy: label %d of row %d is outside [0, %d)", labels[n], n, K);
        double mx = l[0];
        for (int k = 1; k < K; k++)
            mx = l[k] > mx ? l[k] : mx;
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp(l[k] - mx);
        for (int k = 0; k < K; k++)
            p[k] = (float)(exp(l[k] - mx) / s);
        total += mx + log(s) - l[labels[n]];
    }
    return N > 0 ? (float)(total / N) : 0.0f;
}

void cross_entropy_backward(float *dlogits, float dloss, const float *probs, const int *labels, int N, int K)
{
    if (!dlogits || N <= 0)
        return;
    double g = (double)dloss / N;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * K;
        float *d = dlogits + (size_t)n * K;
        for (int k = 0; k < K; k++)
            d[k] += (float)(g * ((double)p[k] - (k == labels[n] ? 1.0 : 0.0)));
    }
}

int count_correct(const float *logits, const int *labels, int N, int K)
{
    int correct = 0;
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (l[k] > l[best])
                best = k;
        correct += best == labels[n];
    }
    return correct;
}
