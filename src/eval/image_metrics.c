#include "eval/image_metrics.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

double psnr_u8(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return 10.0 * log10(255.0 * 255.0 / (s / (double)n));
}

double psnr_f32(const float *a, const float *b, size_t n, double data_range)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return 10.0 * log10(data_range * data_range / (s / (double)n));
}

/* Mean SSIM of one plane given as doubles. */
static double ssim_plane(const double *x, const double *y, int H, int W, double R)
{
    enum { K = SSIM_WIN, RAD = SSIM_WIN / 2 };
    double w[K], ws = 0;
    for (int i = 0; i < K; i++) {
        double t = i - RAD;
        w[i] = exp(-t * t / (2 * SSIM_SIGMA * SSIM_SIGMA));
        ws += w[i];
    }
    for (int i = 0; i < K; i++)
        w[i] /= ws;
    const int HO = H - K + 1, WO = W - K + 1;
    /* Horizontal pass on the five maps x, y, x², y², xy, then vertical. */
    double *h = xmalloc((size_t)5 * H * WO * sizeof(double));
    for (int r = 0; r < H; r++)
        for (int c = 0; c < WO; c++) {
            double s[5] = {0, 0, 0, 0, 0};
            for (int k = 0; k < K; k++) {
                double a = x[(size_t)r * W + c + k], b = y[(size_t)r * W + c + k];
                s[0] += w[k] * a;
                s[1] += w[k] * b;
                s[2] += w[k] * (a * a);
                s[3] += w[k] * (b * b);
                s[4] += w[k] * (a * b);
            }
            for (int m = 0; m < 5; m++)
                h[((size_t)m * H + r) * WO + c] = s[m];
        }
    const double C1 = (SSIM_K1 * R) * (SSIM_K1 * R), C2 = (SSIM_K2 * R) * (SSIM_K2 * R);
    double total = 0;
    for (int r = 0; r < HO; r++)
        for (int c = 0; c < WO; c++) {
            double s[5] = {0, 0, 0, 0, 0};
            for (int k = 0; k < K; k++)
                for (int m = 0; m < 5; m++)
                    s[m] += w[k] * h[((size_t)m * H + r + k) * WO + c];
            double ux = s[0], uy = s[1];
            double vx = s[2] - ux * ux, vy = s[3] - uy * uy, vxy = s[4] - ux * uy;
            double num = (2 * ux * uy + C1) * (2 * vxy + C2);
            double den = (ux * ux + uy * uy + C1) * (vx + vy + C2);
            total += num / den;
        }
    free(h);
    return total / ((double)HO * WO);
}

static void check_size(int C, int H, int W)
{
    if (C < 1 || H < SSIM_WIN || W < SSIM_WIN)
        die("SSIM: a %dx%dx%d image is smaller than the %dx%d window", C, H, W, SSIM_WIN, SSIM_WIN);
}

/* Mean SSIM over the C planes of a pair of images given as bytes (a8, b8)
 * or as floats (af, bf), each plane widened to double. */
static double ssim_planes(const uint8_t *a8, const uint8_t *b8, const float *af, const float *bf, int C, int H,
                          int W, double data_range)
{
    check_size(C, H, W);
    size_t n = (size_t)H * W;
    double *x = xmalloc(2 * n * sizeof(double)), *y = x + n;
    double total = 0;
    for (int c = 0; c < C; c++) {
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)c * n + i;
            x[i] = a8 ? a8[k] : af[k];
            y[i] = b8 ? b8[k] : bf[k];
        }
        total += ssim_plane(x, y, H, W, data_range);
    }
    free(x);
    return total / C;
}

double ssim_u8(const uint8_t *a, const uint8_t *b, int C, int H, int W)
{
    return ssim_planes(a, b, NULL, NULL, C, H, W, 255.0);
}

double ssim_f32(const float *a, const float *b, int C, int H, int W, double data_range)
{
    return ssim_planes(NULL, NULL, a, b, C, H, W, data_range);
}
