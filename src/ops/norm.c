/* norm.c — GroupNorm, LayerNorm, BatchNorm2d (see norm.h for the math).
 *
 * Every normalised set S is a list of `nchunks` contiguous runs of `len`
 * floats, `stride` apart:
 *   GroupNorm: one run of (C/G)·HW floats per (sample, group),
 *   LayerNorm: one run of D floats per row,
 *   BatchNorm: B runs of HW floats per channel, C·HW apart.
 * Threads split the independent sets; reductions that cross sets (dweight,
 * dbias) are arranged so that each output element is owned by one thread,
 * which keeps results deterministic without atomics (the only scratch is
 * group_norm_silu_backward's one group per thread).
 *
 * Elementwise passes use the float mean/rstd (as PyTorch does); sums are in
 * double.
 */
#include "ops/norm.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/thread_scratch.h"
#include "ops/act.h"
#include "ops/fast_exp.h"

#define PAR_MIN (1L << 15) /* below this many elements threads cost more than they save */

/* Two-pass mean and biased variance in double over a strided set. */
static void moments(const float *x, int nchunks, size_t len, size_t stride, double *mean_out, double *var_out)
{
    double s = 0;
    for (int k = 0; k < nchunks; k++) {
        const float *p = x + (size_t)k * stride;
#pragma omp simd reduction(+ : s)
        for (size_t i = 0; i < len; i++)
            s += p[i];
    }
    double n = (double)nchunks * len, mean = s / n, ss = 0;
    for (int k = 0; k < nchunks; k++) {
        const float *p = x + (size_t)k * stride;
#pragma omp simd reduction(+ : ss)
        for (size_t i = 0; i < len; i++) {
            double d = p[i] - mean;
            ss += d * d;
        }
    }
    *mean_out = mean;
    *var_out = ss / n;
}

/* ---------------------------------------------------------------- GroupNorm */

/* Channel c's GroupNorm affine with its group's statistics:
 * GN(x) = (x − mean)·scale + shift.  One definition for the forward and for
 * the backward's recomputation of the pre-activation, which must give the
 * same floats. */
typedef struct gn_affine {
    float mean, scale, shift;
} gn_affine;

static inline gn_affine gn_channel(float mf, float rf, const float *weight, const float *bias, int c)
{
    return (gn_affine){mf, rf * (weight ? weight[c] : 1.0f), bias ? bias[c] : 0.0f};
}

static inline float gn_apply(gn_affine a, float x) { return (x - a.mean) * a.scale + a.shift; }

/* GroupNorm, optionally followed by SiLU in the same pass: out = SiLU(GN(x)).
 * With saved_mean/saved_rstd (a backward's recomputation) the statistics come
 * from there instead of two passes over x: the same floats, so the same
 * outputs. */
static void group_norm_apply(float *out, bool silu, float *mean, float *rstd, const float *saved_mean,
                             const float *saved_rstd, const float *x, const float *weight, const float *bias, int B,
                             int C, int HW, int G, float eps, const char *who)
{
    if (G <= 0 || C % G != 0)
        die("%s: %d channels do not split into %d groups", who, C, G);
    int Cg = C / G;
    size_t glen = (size_t)Cg * HW;
    if (glen == 0)
        return;
#pragma omp parallel for schedule(static) if ((long)B * C * HW >= PAR_MIN)
    for (int bg = 0; bg < B * G; bg++) {
        const float *xg = x + (size_t)bg * glen; /* group g of sample b is contiguous in NCHW */
        float *og = out + (size_t)bg * glen;
        float mf, rf;
        if (saved_mean) {
            mf = saved_mean[bg], rf = saved_rstd[bg];
        } else {
            double m, v;
            moments(xg, 1, glen, 0, &m, &v);
            mf = (float)m, rf = (float)(1.0 / sqrt(v + eps));
        }
        if (mean)
            mean[bg] = mf;
        if (rstd)
            rstd[bg] = rf;
        int c0 = (bg % G) * Cg;
        for (int j = 0; j < Cg; j++) {
            const gn_affine a = gn_channel(mf, rf, weight, bias, c0 + j);
            const float *xc = xg + (size_t)j * HW;
            float *oc = og + (size_t)j * HW;
            if (!silu) {
#pragma omp simd
                for (int i = 0; i < HW; i++)
                    oc[i] = gn_apply(a, xc[i]);
            } else {
#pragma omp simd
                for (int i = 0; i < HW; i++) {
                    float h = gn_apply(a, xc[i]);
                    oc[i] = h * fast_sigmoidf(h);
                }
            }
        }
    }
}

void group_norm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                        const float *bias, int B, int C, int HW, int G, float eps)
{
    group_norm_apply(out, false, mean, rstd, NULL, NULL, x, weight, bias, B, C, HW, G, eps,
                     "group_norm_forward");
}

void group_norm_silu_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                             const float *bias, int B, int C, int HW, int G, float eps)
{
    group_norm_apply(out, true, mean, rstd, NULL, NULL, x, weight, bias, B, C, HW, G, eps,
                     "group_norm_silu_forward");
}

void group_norm_silu_recompute(float *out, const float *x, const float *mean, const float *rstd, const float *weight,
                               const float *bias, int B, int C, int HW, int G)
{
    group_norm_apply(out, true, NULL, NULL, mean, rstd, x, weight, bias, B, C, HW, G, 0.0f,
                     "group_norm_silu_recompute");
}

/* One thread's scratch for group_norm_silu_backward: a group's gradient at
 * the GroupNorm output, kept in cache between the two passes that read it.
 * Grown as needed and kept for the thread's life (like gemm_avx512's
 * packing buffers). */
static _Thread_local thread_scratch silu_grad_buf;

static float *silu_grad_scratch(size_t n)
{
    return thread_scratch_reserve(&silu_grad_buf, n * sizeof(float), 64, "GroupNorm's backward scratch");
}

/* GroupNorm's backward; with `silu`, through the SiLU after it first (dout
 * is then the gradient at the SiLU's output, whose input GroupNorm(x) is
 * recomputed here from x, the statistics and weight/bias by gn_apply, as
 * group_norm_apply computes it in the forward: the same floats).
 * accumulate: dx += (the kernel convention), else dx = 0 + ... (bit-identical
 * to adding into a zeroed dx, without the zeroing pass).
 * Parallel over groups, samples in sequence inside: dweight/dbias of a
 * channel are then written by the one thread that owns its group.  (VAE
 * GroupNorms have G = 32 groups, enough work for the usual thread counts.) */
static void group_norm_backward_impl(float *dx, bool accumulate, float *dweight, float *dbias, const float *dout,
                                     bool silu, const float *x, const float *mean, const float *rstd,
                                     const float *weight, const float *bias, int B, int C, int HW, int G,
                                     const char *name)
{
    if (G <= 0 || C % G != 0)
        die("%s: %d channels do not split into %d groups", name, C, G);
    if (!dx && !dweight && !dbias)
        return;
    int Cg = C / G;
    size_t glen = (size_t)Cg * HW;
    if (glen == 0)
        return;
#pragma omp parallel for schedule(static) if ((long)B * C * HW >= PAR_MIN)
    for (int g = 0; g < G; g++) {
        int c0 = g * Cg;
        float *dpre = silu ? silu_grad_scratch(glen) : NULL;
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * G + g) * glen;
            const float *xg = x + off, *dyg = dout + off;
            float mf = mean[b * G + g], rf = rstd[b * G + g];
            if (silu) {
                /* silu_backward into a zeroed buffer, element by element, at
                 * the pre-activation GroupNorm(x) recomputed channel by channel */
                for (int j = 0; j < Cg; j++) {
                    const gn_affine a = gn_channel(mf, rf, weight, bias, c0 + j);
                    const float *xc = xg + (size_t)j * HW, *dyc = dyg + (size_t)j * HW;
                    float *dc = dpre + (size_t)j * HW;
#pragma omp simd
                    for (int i = 0; i < HW; i++)
                        dc[i] = 0.0f + silu_grad(dyc[i], gn_apply(a, xc[i]));
                }
                dyg = dpre;
            }
            /* Per channel: Σ dy and Σ dy·x̂; weighted by w they give the group
             * sums Σ dx̂ and Σ dx̂·x̂ that the dx formula needs. */
            double sum_dxhat = 0, sum_dxhat_xhat = 0;
            for (int j = 0; j < Cg; j++) {
                const float *xc = xg + (size_t)j * HW, *dyc = dyg + (size_t)j * HW;
                double s_dy = 0, s_dy_xc = 0;
#pragma omp simd reduction(+ : s_dy, s_dy_xc)
                for (int i = 0; i < HW; i++) {
                    s_dy += dyc[i];
                    s_dy_xc += (double)dyc[i] * (xc[i] - mf);
                }
                double s_dy_xhat = s_dy_xc * rf;
                double w = weight ? weight[c0 + j] : 1.0;
                sum_dxhat += w * s_dy;
                sum_dxhat_xhat += w * s_dy_xhat;
                if (dweight)
                    dweight[c0 + j] += (float)s_dy_xhat;
                if (dbias)
                    dbias[c0 + j] += (float)s_dy;
            }
            if (!dx)
                continue;
            float m1 = (float)(sum_dxhat / glen), m2 = (float)(sum_dxhat_xhat / glen);
            float *dxg = dx + off;
            for (int j = 0; j < Cg; j++) {
                float w = weight ? weight[c0 + j] : 1.0f;
                const float *xc = xg + (size_t)j * HW, *dyc = dyg + (size_t)j * HW;
                float *dxc = dxg + (size_t)j * HW;
                /* Two loops, not (accumulate ? dxc[i] : 0): gcc makes that a
                 * masked load, slow on AMD cores. */
                if (accumulate) {
#pragma omp simd
                    for (int i = 0; i < HW; i++) {
                        float xhat = (xc[i] - mf) * rf;
                        dxc[i] += rf * (dyc[i] * w - m1 - xhat * m2);
                    }
                } else {
#pragma omp simd
                    for (int i = 0; i < HW; i++) {
                        float xhat = (xc[i] - mf) * rf;
                        dxc[i] = 0.0f + rf * (dyc[i] * w - m1 - xhat * m2);
                    }
                }
            }
        }
    }
}

void group_norm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                         const float *mean, const float *rstd, const float *weight, int B, int C, int HW, int G)
{
    group_norm_backward_impl(dx, true, dweight, dbias, dout, false, x, mean, rstd, weight, NULL, B, C, HW, G,
                             "group_norm_backward");
}

void group_norm_silu_backward(float *dx, bool accumulate, float *dweight, float *dbias, const float *dout,
                              const float *x, const float *mean, const float *rstd, const float *weight,
                              const float *bias, int B, int C, int HW, int G)
{
    group_norm_backward_impl(dx, accumulate, dweight, dbias, dout, true, x, mean, rstd, weight, bias, B, C, HW, G,
                             "group_norm_silu_backward");
}

/* ---------------------------------------------------------------- LayerNorm */

void layer_norm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                        const float *bias, int N, int D, float eps)
{
    if (D <= 0)
        return;
#pragma omp parallel for schedule(static) if ((long)N * D >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float *orow = out + (size_t)n * D;
        double m, v;
        moments(xr, 1, (size_t)D, 0, &m, &v);
        float mf = (float)m, rf = (float)(1.0 / sqrt(v + eps));
        if (mean)
            mean[n] = mf;
        if (rstd)
            rstd[n] = rf;
        if (weight && bias) /* (the common cases without a pointer test per element: a masked load) */
            for (int d = 0; d < D; d++)
                orow[d] = (xr[d] - mf) * rf * weight[d] + bias[d];
        else if (weight || bias)
            for (int d = 0; d < D; d++)
                orow[d] = (xr[d] - mf) * rf * (weight ? weight[d] : 1.0f) + (bias ? bias[d] : 0.0f);
        else
            for (int d = 0; d < D; d++)
                orow[d] = (xr[d] - mf) * rf;
    }
}

/* dweight/dbias sum over rows: each thread owns a block of columns and walks
 * every row (rows are contiguous, so each visit reads LN_COLS floats in a
 * row), with double sums on the stack. */
enum { LN_COLS = 64 };

static void layer_norm_param_grads(float *dweight, float *dbias, const float *dout, const float *x,
                                   const float *mean, const float *rstd, int N, int D)
{
    int nblocks = (D + LN_COLS - 1) / LN_COLS;
#pragma omp parallel for schedule(static) if ((long)N * D >= PAR_MIN)
    for (int blk = 0; blk < nblocks; blk++) {
        int d0 = blk * LN_COLS;
        int cols = D - d0 < LN_COLS ? D - d0 : LN_COLS;
        double aw[LN_COLS] = {0}, ab[LN_COLS] = {0};
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * D + d0, *dyr = dout + (size_t)n * D + d0;
            float mf = mean[n], rf = rstd[n];
#pragma omp simd /* across columns: each sum keeps its order */
            for (int j = 0; j < cols; j++) {
                aw[j] += (double)dyr[j] * ((xr[j] - mf) * rf);
                ab[j] += dyr[j];
            }
        }
        for (int j = 0; j < cols; j++) {
            if (dweight)
                dweight[d0 + j] += (float)aw[j];
            if (dbias)
                dbias[d0 + j] += (float)ab[j];
        }
    }
}

/* One row of LayerNorm's dx (+=).  Inlined with weight either a real
 * pointer or a literal NULL, so that `weight ? weight[d] : 1` is decided
 * outside the loops (inside, gcc makes it a masked load: slow on AMD cores,
 * 3.4 % of SiT-B/2's training step). */
static inline __attribute__((always_inline)) void layer_norm_dx_row(float *dxr, const float *dyr, const float *xr,
                                                                   float mf, float rf, const float *weight, int D)
{
    double s1 = 0, s2 = 0; /* Σ dx̂, Σ dx̂·x̂ */
    for (int d = 0; d < D; d++) {
        float dxhat = dyr[d] * (weight ? weight[d] : 1.0f);
        s1 += dxhat;
        s2 += (double)dxhat * ((xr[d] - mf) * rf);
    }
    float m1 = (float)(s1 / D), m2 = (float)(s2 / D);
#pragma omp simd
    for (int d = 0; d < D; d++) {
        float dxhat = dyr[d] * (weight ? weight[d] : 1.0f);
        float xhat = (xr[d] - mf) * rf;
        dxr[d] += rf * (dxhat - m1 - xhat * m2);
    }
}

void layer_norm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                         const float *mean, const float *rstd, const float *weight, int N, int D)
{
    if (D <= 0 || N <= 0)
        return;
    if (dweight || dbias)
        layer_norm_param_grads(dweight, dbias, dout, x, mean, rstd, N, D);
    if (!dx)
        return;
#pragma omp parallel for schedule(static) if ((long)N * D >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *dyr = dout + (size_t)n * D;
        float *dxr = dx + (size_t)n * D;
        float mf = mean[n], rf = rstd[n];
        if (weight)
            layer_norm_dx_row(dxr, dyr, xr, mf, rf, weight, D);
        else /* SiT's norms: no affine; a literal NULL lets the loops drop the test */
            layer_norm_dx_row(dxr, dyr, xr, mf, rf, NULL, D);
    }
}

/* ---------------------------------------------------------------- BatchNorm */

void batch_norm_forward_channel(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                const float *x, const float *weight, const float *bias, double m, double v, double n,
                                float eps, float momentum, int c, int B, int C, int HW)
{
    size_t cstride = (size_t)C * HW;
    const float *xc = x + (size_t)c * HW;
    float mf = (float)m, rf = (float)(1.0 / sqrt(v + eps));
    if (mean)
        mean[c] = mf;
    if (rstd)
        rstd[c] = rf;
    if (running_mean)
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
    if (running_var)
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * v * n / (n - 1));
    if (!out) /* statistics only (batch_norm_running_update) */
        return;
    float scale = rf * (weight ? weight[c] : 1.0f), shift = bias ? bias[c] : 0.0f;
    for (int b = 0; b < B; b++) {
        const float *xp = xc + (size_t)b * cstride;
        float *op = out + (size_t)b * cstride + (size_t)c * HW;
#pragma omp simd
        for (int i = 0; i < HW; i++)
            op[i] = (xp[i] - mf) * scale + shift;
    }
}

void batch_norm_train_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                              const float *x, const float *weight, const float *bias, int B, int C, int HW,
                              float eps, float momentum)
{
    size_t n = (size_t)B * HW;
    if (n <= 1) /* torch refuses too: the unbiased variance needs two values */
        die("batch_norm_train_forward: need more than 1 value per channel in training (B=%d, HW=%d)", B, HW);
    size_t cstride = (size_t)C * HW;
#pragma omp parallel for schedule(static) if ((long)n * C >= PAR_MIN)
    for (int c = 0; c < C; c++) {
        double m, v;
        moments(x + (size_t)c * HW, B, (size_t)HW, cstride, &m, &v);
        batch_norm_forward_channel(out, mean, rstd, running_mean, running_var, x, weight, bias, m, v, (double)n, eps,
                                   momentum, c, B, C, HW);
    }
}

void batch_norm_running_update(float *running_mean, float *running_var, const float *x, int B, int C, int HW,
                               float momentum)
{
    batch_norm_train_forward(NULL, NULL, NULL, running_mean, running_var, x, NULL, NULL, B, C, HW, 0.0f, momentum);
}

void batch_norm_backward_channel(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                                 float mean, float rstd, float w, double s_dy, double s_dy_xc, double n, double share,
                                 int c, int B, int C, int HW)
{
    size_t cstride = (size_t)C * HW;
    double s_dy_xhat = s_dy_xc * rstd;
    if (dweight)
        dweight[c] += (float)(s_dy_xhat * share);
    if (dbias)
        dbias[c] += (float)(s_dy * share);
    if (!dx)
        return;
    /* mean(dx̂) and mean(dx̂·x̂), with dx̂ = w·dy */
    float m1 = (float)(w * s_dy / n), m2 = (float)(w * s_dy_xhat / n);
    for (int b = 0; b < B; b++) {
        const float *xp = x + (size_t)b * cstride + (size_t)c * HW;
        const float *dyp = dout + (size_t)b * cstride + (size_t)c * HW;
        float *dxp = dx + (size_t)b * cstride + (size_t)c * HW;
#pragma omp simd
        for (int i = 0; i < HW; i++) {
            float xhat = (xp[i] - mean) * rstd;
            dxp[i] += rstd * (dyp[i] * w - m1 - xhat * m2);
        }
    }
}

void batch_norm_channel_sums(double *s_dy, double *s_dy_xc, const float *dout, const float *x, float mean, int c, int B,
                             int C, int HW)
{
    size_t cstride = (size_t)C * HW;
    double a = 0, b2 = 0;
    for (int b = 0; b < B; b++) {
        const float *xp = x + (size_t)b * cstride + (size_t)c * HW;
        const float *dyp = dout + (size_t)b * cstride + (size_t)c * HW;
        for (int i = 0; i < HW; i++) {
            a += dyp[i];
            b2 += (double)dyp[i] * (xp[i] - mean);
        }
    }
    *s_dy = a, *s_dy_xc = b2;
}

void batch_norm_train_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                               const float *mean, const float *rstd, const float *weight, int B, int C, int HW)
{
    if (!dx && !dweight && !dbias)
        return;
    size_t n = (size_t)B * HW;
    if (n == 0)
        return;
#pragma omp parallel for schedule(static) if ((long)n * C >= PAR_MIN)
    for (int c = 0; c < C; c++) {
        double s_dy, s_dy_xc;
        batch_norm_channel_sums(&s_dy, &s_dy_xc, dout, x, mean[c], c, B, C, HW);
        batch_norm_backward_channel(dx, dweight, dbias, dout, x, mean[c], rstd[c], weight ? weight[c] : 1.0f, s_dy,
                                    s_dy_xc, (double)n, 1.0, c, B, C, HW);
    }
}

void batch_norm_eval_forward(float *out, const float *x, const float *running_mean, const float *running_var,
                             const float *weight, const float *bias, int B, int C, int HW, float eps)
{
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * HW >= PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float rf = (float)(1.0 / sqrt((double)running_var[c] + eps));
            float scale = rf * (weight ? weight[c] : 1.0f), shift = bias ? bias[c] : 0.0f, m = running_mean[c];
            size_t off = ((size_t)b * C + c) * HW;
#pragma omp simd
            for (int i = 0; i < HW; i++)
                out[off + i] = (x[off + i] - m) * scale + shift;
        }
}

void batch_norm_eval_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                              const float *running_mean, const float *running_var, const float *weight, int B,
                              int C, int HW, float eps)
{
    size_t cstride = (size_t)C * HW;
#pragma omp parallel for schedule(static) if ((long)B * C * HW >= PAR_MIN)
    for (int c = 0; c < C; c++) {
        float rf = (float)(1.0 / sqrt((double)running_var[c] + eps));
        float w = weight ? weight[c] : 1.0f, m = running_mean[c];
        double s_dy = 0, s_dy_xhat = 0;
        for (int b = 0; b < B; b++) {
            size_t off = (size_t)b * cstride + (size_t)c * HW;
            for (int i = 0; i < HW; i++) {
                float dy = dout[off + i];
                if (dx)
                    dx[off + i] += dy * w * rf;
                s_dy += dy;
                s_dy_xhat += (double)dy * ((x[off + i] - m) * rf);
            }
        }
        if (dweight)
            dweight[c] += (float)s_dy_xhat;
        if (dbias)
            dbias[c] += (float)s_dy;
    }
}
