#include "ops/pool.h"

#include <math.h>

/* Below this many output elements an OpenMP region costs more than it saves. */
#define POOL_PAR_MIN 16384L

/* Index (0..3, row-major in the window) of the maximum of a 2×2 window. */
static inline int argmax4(const float *r0, const float *r1)
{
    float v[4] = {r0[0], r0[1], r1[0], r1[1]};
    int best = 0;
    float m = v[0];
    /* PyTorch's CPU loop: `if (val > maxval || isnan(val))`, so a NaN wins (the last NaN if several). */
    for (int k = 1; k < 4; k++)
        if (v[k] > m || isnan(v[k])) {
            m = v[k];
            best = k;
        }
    return best;
}

void maxpool2x2_forward(float *out, const float *x, int B, int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * Ho * Wo > POOL_PAR_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *op = out + p * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++) {
            const float *r0 = xp + (long)(2 * oh) * W, *r1 = r0 + W;
            for (int ow = 0; ow < Wo; ow++) {
                int k = argmax4(r0 + 2 * ow, r1 + 2 * ow);
                op[(long)oh * Wo + ow] = (k < 2 ? r0 : r1)[2 * ow + (k & 1)];
            }
        }
    }
}

void maxpool2x2_backward(float *dx, const float *dout, const float *x, int B, int C, int H, int W)
{
    if (!dx)
        return;
    const int Ho = H / 2, Wo = W / 2;
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * Ho * Wo > POOL_PAR_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *dp = dx + p * H * W;
        const float *gp = dout + p * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++) {
            long o0 = (long)(2 * oh) * W;
            for (int ow = 0; ow < Wo; ow++) {
                int k = argmax4(xp + o0 + 2 * ow, xp + o0 + W + 2 * ow);
                dp[o0 + (k < 2 ? 0 : W) + 2 * ow + (k & 1)] += gp[(long)oh * Wo + ow];
            }
        }
    }
}
