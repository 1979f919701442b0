/* spatial_norm.c — iREPA's per-channel z-score over the tokens of each image. */
#include "ops/spatial_norm.h"

#include <math.h>
#include <stddef.h>

#include "core/error.h"

void spatial_norm_forward(float *out, const float *x, int N, int T, int D, float alpha, float eps)
{
    if (T < 2)
        die("spatial_norm: %d token(s); the unbiased std over tokens needs at least 2", T);
#pragma omp parallel for collapse(2) schedule(static) if ((long)N * T * D >= (1L << 15))
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            const float *xp = x + (size_t)n * T * D + d;
            float *op = out + (size_t)n * T * D + d;
            double s = 0, ss = 0;
            for (int t = 0; t < T; t++)
                s += xp[(size_t)t * D];
            double mean = s / T;
            for (int t = 0; t < T; t++) {
                double c = xp[(size_t)t * D] - mean;
                ss += c * c;
            }
            double inv = 1.0 / (sqrt(ss / (T - 1)) + (double)eps);
            double shift = (double)alpha * mean;
            for (int t = 0; t < T; t++)
                op[(size_t)t * D] = (float)((xp[(size_t)t * D] - shift) * inv);
        }
}
