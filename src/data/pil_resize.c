#include "data/pil_resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* 8 bits of result and 2 of headroom (weights can be negative, or sum past
 * 1 before clipping): 22 fractional bits in a 32-bit sum. */
#define PRECISION_BITS 22

static double box_weight(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double bicubic_weight(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* One pass's weights: for each of n_out outputs, the first input it reads,
 * how many, and ksize integer weights. */
typedef struct taps {
    int ksize;
    int *first, *count;
    int32_t *weight;
} taps;

static taps make_taps(int n_in, int n_out, pil_filter filter)
{
    double scale = (double)n_in / n_out, filterscale = scale < 1.0 ? 1.0 : scale, inv = 1.0 / filterscale;
    double support = (filter == PIL_BOX ? 0.5 : 2.0) * filterscale;
    taps t;
    t.ksize = (int)ceil(support) * 2 + 1;
    t.first = xmalloc((size_t)n_out * sizeof(int));
    t.count = xmalloc((size_t)n_out * sizeof(int));
    t.weight = xcalloc((size_t)n_out * t.ksize, sizeof(int32_t));
    double *w = xmalloc((size_t)t.ksize * sizeof(double));
    for (int o = 0; o < n_out; o++) {
        double center = (o + 0.5) * scale, sum = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5); /* truncation, as Pillow */
        lo = lo < 0 ? 0 : lo;
        hi = hi > n_in ? n_in : hi;
        int n = hi - lo;
        for (int k = 0; k < n; k++) {
            double x = (k + lo - center + 0.5) * inv; /* times the reciprocal, as Pillow: BOX's edges are exact */
            w[k] = filter == PIL_BOX ? box_weight(x) : bicubic_weight(x);
            sum += w[k];
        }
        for (int k = 0; k < n; k++) {
            double v = sum != 0.0 ? w[k] / sum : w[k];
            v *= 1 << PRECISION_BITS;
            t.weight[(size_t)o * t.ksize + k] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        t.first[o] = lo;
        t.count[o] = n;
    }
    free(w);
    return t;
}

static void free_taps(taps *t) { free(t->first), free(t->count), free(t->weight); }

static uint8_t clip8(int32_t sum)
{
    int32_t v = sum >> PRECISION_BITS; /* an arithmetic shift: floor */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* For each of `lines` lines (in_line / out_line bytes apart), its n_out
 * outputs (out_step apart) from the inputs the taps name (in_step apart). */
static void resample_pass(uint8_t *out, const uint8_t *in, int lines, const taps *t, int n_out,
                          size_t in_line, size_t in_step, size_t out_line, size_t out_step)
{
    for (int l = 0; l < lines; l++)
        for (int o = 0; o < n_out; o++) {
            const int32_t *w = t->weight + (size_t)o * t->ksize;
            const uint8_t *src = in + (size_t)l * in_line + (size_t)t->first[o] * in_step;
            int32_t sum = 1 << (PRECISION_BITS - 1);
            for (int k = 0; k < t->count[o]; k++)
                sum += (int32_t)src[(size_t)k * in_step] * w[k];
            out[(size_t)l * out_line + (size_t)o * out_step] = clip8(sum);
        }
}

void pil_resize_u8(uint8_t *out, const uint8_t *in, int C, int H, int W, int Ho, int Wo, pil_filter filter)
{
    if (Ho == H && Wo == W) {
        memcpy(out, in, (size_t)C * H * W);
        return;
    }
    uint8_t *mid = NULL;
    const uint8_t *src = in;
    if (Wo != W) { /* rows first, rounded to 8 bits, as Pillow's horizontal pass */
        taps t = make_taps(W, Wo, filter);
        uint8_t *dst = Ho != H ? (mid = xmalloc((size_t)C * H * Wo)) : out;
        resample_pass(dst, in, C * H, &t, Wo, (size_t)W, 1, (size_t)Wo, 1);
        free_taps(&t);
        src = dst;
    }
    if (Ho != H) { /* then columns: each plane's H rows of Wo into Ho rows */
        taps t = make_taps(H, Ho, filter);
        for (int c = 0; c < C; c++)
            for (int x = 0; x < Wo; x++)
                resample_pass(out + (size_t)c * Ho * Wo + x, src + (size_t)c * H * Wo + x, 1, &t, Ho, 0, (size_t)Wo, 0,
                              (size_t)Wo);
        free_taps(&t);
    }
    free(mid);
}
