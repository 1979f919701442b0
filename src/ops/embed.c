#include "ops/embed.h"

#include <math.h>
#include <stddef.h>

/* Index of pixel (b, c, i·p + a, j·p + bb) in x [B,C,H,W]. */
static inline size_t pix(int b, int c, int y, int x, int C, int H, int W)
{
    return (((size_t)b * C + c) * H + y) * W + x;
}

/* The loops walk the image row by row (contiguous reads/writes on the image
 * side); rows (b, c, y) are independent, so they are split over threads,
 * unless the tensor is too small for a parallel region to pay off. */
#define EMBED_PAR_MIN (1L << 15)

void patchify_forward(float *out, const float *x, int B, int C, int H, int W, int p)
{
    const int gw = W / p, T = (H / p) * gw, K = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * H * W >= EMBED_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++) {
                const int i = y / p, a = y % p;
                const float *src = x + pix(b, c, y, 0, C, H, W);
                for (int j = 0; j < gw; j++) {
                    float *dst = out + ((size_t)b * T + (size_t)i * gw + j) * K + ((size_t)c * p + a) * p;
                    for (int bb = 0; bb < p; bb++)
                        dst[bb] = src[j * p + bb];
                }
            }
}

void patchify_backward(float *dx, const float *dout, int B, int C, int H, int W, int p)
{
    if (!dx)
        return;
    const int gw = W / p, T = (H / p) * gw, K = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * H * W >= EMBED_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++) {
                const int i = y / p, a = y % p;
                float *dst = dx + pix(b, c, y, 0, C, H, W);
                for (int j = 0; j < gw; j++) {
                    const float *src = dout + ((size_t)b * T + (size_t)i * gw + j) * K + ((size_t)c * p + a) * p;
                    for (int bb = 0; bb < p; bb++)
                        dst[j * p + bb] += src[bb];
                }
            }
}

void unpatchify_forward(float *out, const float *tokens, int B, int C, int H, int W, int p)
{
    const int gw = W / p, T = (H / p) * gw, K = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * H * W >= EMBED_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++) {
                const int i = y / p, a = y % p;
                float *dst = out + pix(b, c, y, 0, C, H, W);
                for (int j = 0; j < gw; j++) {
                    const float *src = tokens + ((size_t)b * T + (size_t)i * gw + j) * K + (size_t)a * p * C + c;
                    for (int bb = 0; bb < p; bb++)
                        dst[j * p + bb] = src[(size_t)bb * C];
                }
            }
}

void unpatchify_backward(float *dtokens, const float *dout, int B, int C, int H, int W, int p)
{
    if (!dtokens)
        return;
    const int gw = W / p, T = (H / p) * gw, K = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * H * W >= EMBED_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++) {
                const int i = y / p, a = y % p;
                const float *src = dout + pix(b, c, y, 0, C, H, W);
                for (int j = 0; j < gw; j++) {
                    float *dst = dtokens + ((size_t)b * T + (size_t)i * gw + j) * K + (size_t)a * p * C + c;
                    for (int bb = 0; bb < p; bb++)
                        dst[(size_t)bb * C] += src[j * p + bb];
                }
            }
}

void pos_embed_2d_sincos_hw(float *out, int D, int gh, int gw)
{
    const int Q = D / 4;
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float *o = out + ((size_t)i * gw + j) * D;
            for (int k = 0; k < Q; k++) {
                /* numpy: omega = 1 / 10000 ** (k / Q), all float64 */
                const double omega = 1.0 / pow(10000.0, (double)k / (double)Q);
                const double aj = (double)j * omega, ai = (double)i * omega;
                o[k] = (float)sin(aj);
                o[Q + k] = (float)cos(aj);
                o[2 * Q + k] = (float)sin(ai);
                o[3 * Q + k] = (float)cos(ai);
            }
        }
}

void pos_embed_2d_sincos(float *out, int D, int G) { pos_embed_2d_sincos_hw(out, D, G, G); }

void timestep_embedding(float *out, const float *t, int N, int dim, float max_period)
{
    const int half = dim / 2;
    /* As torch does it in float32: -math.log(max_period) * arange(half) / half, exp. */
    const float neg_log = (float)(-log((double)max_period));
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * dim;
        for (int k = 0; k < half; k++) {
            const float f = expf(neg_log * (float)k / (float)half);
            const float arg = t[n] * f;
            o[k] = cosf(arg);
            o[half + k] = sinf(arg);
        }
        if (dim % 2)
            o[dim - 1] = 0.0f;
    }
}
