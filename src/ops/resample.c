#include "ops/resample.h"

#include <math.h>
#include <stdbool.h>

#include "core/error.h"

/* Below this many output elements an OpenMP region costs more than it saves. */
#define RS_PAR_MIN 16384L
/* Per-axis taps of the bicubic filters: 4 without antialiasing; with it,
 * 2·ceil(2·in/out) + 1 (a downscale by more than ~60 is refused). */
#define RS_MAX_TAPS 256
/* Entries of the column (x) weight table kept on the stack. */
#define RS_XTABLE 4096

void upsample_nearest2x_forward(float *out, const float *x, int B, int C, int H, int W)
{
    const long planes = (long)B * C, W2 = 2L * W;
#pragma omp parallel for schedule(static) if (planes * H * W > RS_PAR_MIN)
    for (long p = 0; p < planes; p++)
        for (int h = 0; h < H; h++) {
            const float *xr = x + (p * H + h) * W;
            float *o0 = out + (p * 2 * H + 2 * h) * W2, *o1 = o0 + W2;
#pragma omp simd
            for (int w = 0; w < W; w++) {
                float v = xr[w];
                o0[2 * w] = v;
                o0[2 * w + 1] = v;
                o1[2 * w] = v;
                o1[2 * w + 1] = v;
            }
        }
}

void upsample_nearest2x_backward(float *dx, const float *dout, int B, int C, int H, int W)
{
    if (!dx)
        return;
    const long planes = (long)B * C, W2 = 2L * W;
#pragma omp parallel for schedule(static) if (planes * H * W > RS_PAR_MIN)
    for (long p = 0; p < planes; p++)
        for (int h = 0; h < H; h++) {
            float *dr = dx + (p * H + h) * W;
            const float *g0 = dout + (p * 2 * H + 2 * h) * W2, *g1 = g0 + W2;
#pragma omp simd
            for (int w = 0; w < W; w++)
                dr[w] += (g0[2 * w] + g0[2 * w + 1]) + (g1[2 * w] + g1[2 * w + 1]);
        }
}

/* ---- bicubic ----
 * The float/double mix below follows PyTorch's CPU kernels so that the
 * weights round the same way.  For the non-antialiased filter this was fitted
 * against torch 1.13's actual weights (impulse responses): the scale in/out is
 * a float, the source coordinate scale·(i + 0.5) − 0.5 and its fractional part
 * are formed in double, then t is rounded to float and the cubic polynomials
 * are evaluated in float with fused multiply-adds; this reproduces torch's
 * weights to 1 ulp (without FMA: 4 ulp; with a float coordinate: 10 ulp). */

static float cubic_conv1(float x, float A) { return fmaf(fmaf(A + 2, x, -(A + 3)) * x, x, 1.0f); }
static float cubic_conv2(float x, float A) { return fmaf(fmaf(fmaf(A, x, -5 * A), x, 8 * A), x, -4 * A); }

/* Non-antialiased: 4 taps, a = -0.75, indices clamped. */
static void cubic_axis(int i, int in, int out, int *idx, float *w)
{
    const float A = -0.75f;
    float scale = (float)in / (float)out;
    double real = scale * (i + 0.5) - 0.5;
    long index = (long)floor(real);
    if (index > in - 1)
        index = in - 1;
    float t = (float)(real - (double)index);
    t = fminf(fmaxf(t, 0.0f), 1.0f);
    float t2 = 1.0f - t;
    w[0] = cubic_conv2(t + 1.0f, A);
    w[1] = cubic_conv1(t, A);
    w[2] = cubic_conv1(t2, A);
    w[3] = cubic_conv2(t2 + 1.0f, A);
    for (int k = 0; k < 4; k++) {
        long j = index - 1 + k;
        idx[k] = (int)(j < 0 ? 0 : j > in - 1 ? in - 1 : j);
    }
}

/* PIL's bicubic filter, a = -0.5 (PyTorch's aa_filter, computed in double). */
static float aa_cubic(float xf)
{
    const double a = -0.5;
    double x = xf < 0 ? -xf : xf;
    if (x < 1.0)
        return (float)(((a + 2.0) * x - (a + 3.0)) * x * x + 1);
    if (x < 2.0)
        return (float)((((x - 5) * x + 8) * x - 4) * a);
    return 0.0f;
}

static float aa_support(int in, int out)
{
    float scale = (float)in / (float)out;
    return scale >= 1.0f ? (float)(4 * 0.5 * scale) : (float)(4 * 0.5);
}

static int aa_taps(int in, int out) { return (int)ceilf(aa_support(in, out)) * 2 + 1; }

/* Antialiased: a window of up to `taps` inputs, weights normalised to sum 1;
 * unused taps get weight 0 and a valid index. */
static void aa_axis(int i, int in, int out, int taps, int *idx, float *w)
{
    float scale = (float)in / (float)out;
    float support = aa_support(in, out);
    float center = (float)(scale * (i + 0.5));
    float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;
    long xmin = (long)(center - support + 0.5);
    if (xmin < 0)
        xmin = 0;
    long xmax = (long)(center + support + 0.5);
    if (xmax > in)
        xmax = in;
    int xsize = (int)(xmax - xmin);
    float total = 0.0f;
    int j = 0;
    for (; j < xsize && j < taps; j++) {
        w[j] = aa_cubic((float)(((float)(j + xmin) - center + 0.5) * invscale));
        total += w[j];
        idx[j] = (int)(xmin + j);
    }
    for (j = 0; j < xsize && j < taps; j++)
        if (total != 0.0f)
            w[j] /= total;
    for (; j < taps; j++) {
        w[j] = 0.0f;
        idx[j] = (int)xmin;
    }
}

static void axis_weights(bool aa, int i, int in, int out, int taps, int *idx, float *w)
{
    if (aa)
        aa_axis(i, in, out, taps, idx, w);
    else
        cubic_axis(i, in, out, idx, w);
}

static void bicubic_generic(float *out, const float *x, int B, int C, int H, int W, int H_out, int W_out, bool aa)
{
    if (H <= 0 || W <= 0 || H_out <= 0 || W_out <= 0)
        die("bicubic resize: bad sizes %dx%d -> %dx%d", H, W, H_out, W_out);
    const int ty = aa ? aa_taps(H, H_out) : 4, tx = aa ? aa_taps(W, W_out) : 4;
    if (ty > RS_MAX_TAPS || tx > RS_MAX_TAPS)
        die("antialiased bicubic resize %dx%d -> %dx%d: downscale factor too large (more than %d taps)", H, W,
            H_out, W_out, RS_MAX_TAPS);
    const long planes = (long)B * C;
    int xi[RS_XTABLE];
    float xw[RS_XTABLE];
    const int block = RS_XTABLE / tx;
    for (int x0 = 0; x0 < W_out; x0 += block) {
        const int x1 = x0 + block < W_out ? x0 + block : W_out;
        for (int ox = x0; ox < x1; ox++)
            axis_weights(aa, ox, W, W_out, tx, xi + (ox - x0) * tx, xw + (ox - x0) * tx);
#pragma omp parallel for schedule(static) if (planes * H_out * (x1 - x0) > RS_PAR_MIN)
        for (long p = 0; p < planes; p++) {
            const float *xp = x + p * H * W;
            float *op = out + p * H_out * W_out;
            int yi[RS_MAX_TAPS];
            float yw[RS_MAX_TAPS];
            for (int oy = 0; oy < H_out; oy++) {
                axis_weights(aa, oy, H, H_out, ty, yi, yw);
                for (int ox = x0; ox < x1; ox++) {
                    const int *ix = xi + (ox - x0) * tx;
                    const float *wx = xw + (ox - x0) * tx;
                    float acc = 0.0f;
                    for (int i = 0; i < ty; i++) {
                        const float *row = xp + (long)yi[i] * W;
                        float inner = 0.0f;
                        for (int j = 0; j < tx; j++)
                            inner += row[ix[j]] * wx[j];
                        acc += inner * yw[i];
                    }
                    op[(long)oy * W_out + ox] = acc;
                }
            }
        }
    }
}

void bicubic_resize_forward(float *out, const float *x, int B, int C, int H, int W, int H_out, int W_out)
{
    bicubic_generic(out, x, B, C, H, W, H_out, W_out, false);
}

void bicubic_resize_antialias_forward(float *out, const float *x, int B, int C, int H, int W, int H_out,
                                      int W_out)
{
    bicubic_generic(out, x, B, C, H, W, H_out, W_out, true);
}
