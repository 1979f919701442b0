#include "ops/sync_batch_norm.h"

#include <math.h>
#include <stdlib.h>

#include "core/dist.h"
#include "core/error.h"
#include "ops/norm.h"

/* Σ over b, i of f(x[b, c, i]) for every channel, into acc[C]. */
static void channel_sums(double *acc, const float *x, const double *center, int B, int C, int HW)
{
    size_t cstride = (size_t)C * HW;
#pragma omp parallel for schedule(static) if ((long)B * C * HW >= (1L << 15))
    for (int c = 0; c < C; c++) {
        double s = 0, m = center ? center[c] : 0.0;
        for (int b = 0; b < B; b++) {
            const float *p = x + (size_t)b * cstride + (size_t)c * HW;
            if (center)
                for (int i = 0; i < HW; i++) {
                    double d = p[i] - m;
                    s += d * d;
                }
            else
                for (int i = 0; i < HW; i++)
                    s += p[i];
        }
        acc[c] = s;
    }
}

void sync_batch_norm_train_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                   const float *x, const float *weight, const float *bias, int B, int C, int HW,
                                   float eps, float momentum)
{
    double n = (double)B * HW * dist_world();
    if (n <= 1)
        die("sync_batch_norm_train_forward: need more than 1 value per channel in training (B=%d, HW=%d, %d "
            "processes)",
            B, HW, dist_world());
    double *m = xmalloc((size_t)C * sizeof(double)), *v = xmalloc((size_t)C * sizeof(double));
    channel_sums(m, x, NULL, B, C, HW);
    dist_allreduce_sum_f64(m, (size_t)C);
    for (int c = 0; c < C; c++)
        m[c] /= n;
    channel_sums(v, x, m, B, C, HW);
    dist_allreduce_sum_f64(v, (size_t)C);
    for (int c = 0; c < C; c++)
        batch_norm_forward_channel(out, mean, rstd, running_mean, running_var, x, weight, bias, m[c], v[c] / n, n, eps,
                                   momentum, c, B, C, HW);
    free(m), free(v);
}

void sync_batch_norm_train_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                                    const float *mean, const float *rstd, const float *weight, int B, int C, int HW)
{
    if (!dx && !dweight && !dbias)
        return;
    double n = (double)B * HW * dist_world();
    double *s = xmalloc(2 * (size_t)C * sizeof(double)); /* Σdy, Σdy·(x − mean) per channel */
    for (int c = 0; c < C; c++)
        batch_norm_channel_sums(&s[2 * c], &s[2 * c + 1], dout, x, mean[c], c, B, C, HW);
    dist_allreduce_sum_f64(s, 2 * (size_t)C);
    /* every rank holds the global sums: a 1/world share of the weight
     * gradients each, so the sum over ranks (what the data-parallel gradient
     * all-reduce forms) is the global gradient */
    for (int c = 0; c < C; c++)
        batch_norm_backward_channel(dx, dweight, dbias, dout, x, mean[c], rstd[c], weight ? weight[c] : 1.0f, s[2 * c],
                                    s[2 * c + 1], n, 1.0 / dist_world(), c, B, C, HW);
    free(s);
}
