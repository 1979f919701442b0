#include "ops/conv2d.h"

#include <string.h>

#include "ops/conv2d_dnnl.h"
#include "ops/conv2d_winograd.h"
#include "ops/conv2d_winograd_4x4.h"
#include "ops/gemm.h"
#include "ops/im2col_permute.h"

/* Target size (floats) of the im2col column buffer for one panel.  8 MB keeps
 * the columns in this machine's L3 while the gemm packs them, and gives
 * gemms with thousands of columns.  A panel never has fewer than
 * CONV_MIN_COLS columns, even when C_in·kh·kw is huge. */
#ifndef CONV_COLS_TARGET
#define CONV_COLS_TARGET ((long)2 << 20)
#endif
#define CONV_MIN_COLS 256L
/* Below this much work an OpenMP region costs more than it saves. */
#define CONV_PAR_MIN 32768L

conv2d_shape conv2d_make_pad(int B, int C_in, int H, int W, int C_out, int k, int stride, int pad_top,
                             int pad_left, int pad_bottom, int pad_right)
{
    conv2d_shape s = {B, C_in, H, W, C_out, k, k, stride, pad_top, pad_left, pad_bottom, pad_right};
    return s;
}

conv2d_shape conv2d_make(int B, int C_in, int H, int W, int C_out, int k, int stride, int pad)
{
    return conv2d_make_pad(B, C_in, H, W, C_out, k, stride, pad, pad, pad, pad);
}

int conv2d_out_h(const conv2d_shape *s) { return (s->H + s->pad_top + s->pad_bottom - s->kh) / s->stride + 1; }
int conv2d_out_w(const conv2d_shape *s) { return (s->W + s->pad_left + s->pad_right - s->kw) / s->stride + 1; }
size_t conv2d_x_numel(const conv2d_shape *s) { return (size_t)s->B * s->C_in * s->H * s->W; }
size_t conv2d_weight_numel(const conv2d_shape *s) { return (size_t)s->C_out * s->C_in * s->kh * s->kw; }
size_t conv2d_out_numel(const conv2d_shape *s)
{
    return (size_t)s->B * s->C_out * conv2d_out_h(s) * conv2d_out_w(s);
}
double conv2d_flops(const conv2d_shape *s)
{
    return 2.0 * s->B * s->C_out * (double)conv2d_out_h(s) * conv2d_out_w(s) * s->C_in * s->kh * s->kw;
}

static int use_winograd(const conv2d_shape *s)
{
    if (s->algo == CONV2D_IM2COL || !conv2d_winograd_applies(s))
        return 0;
    return s->algo == CONV2D_WINOGRAD || s->algo == CONV2D_WINOGRAD_F4 || s->C_in >= CONV2D_WINOGRAD_MIN_CIN;
}

/* oneDNN for the PatchGAN's 4×4 kernels, where it beat im2col + gemm head
 * to head (BENCHMARKS.md, session 8: 1.2–2.8× per layer).  It is faster on
 * strided 3×3 kernels (2×) and on 3×3 maps under 16×16 too, but there its
 * other summation order moves decoder weight gradients of the golden
 * REPA-E steps past their tolerance against PyTorch (strided 3×3: in the
 * sanitizer build; small maps: in both, as F(4×4,3×3) did), so those keep
 * im2col and F(2×2,3×3).
 * im2col + gemm wins back the layers with 128 channels and more in and out
 * (the PatchGAN's last two wide ones), whichever kernel gemm() runs: with
 * our AVX-512 one 1.1–1.2× over oneDNN (BENCHMARKS.md, session 11), with
 * OpenBLAS's AVX-512 one 1.25× on 256→512 and a tie on 128→256 (session 15);
 * oneDNN keeps the others. */
static int wants_dnnl(const conv2d_shape *s)
{
    if (s->algo == CONV2D_DNNL)
        return 1;
    if (s->algo != CONV2D_AUTO || s->kh != 4 || s->kw != 4)
        return 0;
    return !(s->C_in >= 128 && s->C_out >= 128);
}

/* F(2×2,2×2) for 4×4 kernels only when forced: it beats im2col + gemm on
 * 8×8 outputs only, and loses on the PatchGAN's 4×4 and 3×3 ones
 * (bench_ops' "_winograd" rows, BENCHMARKS.md, sessions 5 and 6). */
static int use_winograd_4x4(const conv2d_shape *s)
{
    return s->algo == CONV2D_WINOGRAD && conv2d_winograd_4x4_applies(s);
}

static int is_direct_1x1(const conv2d_shape *s)
{
    return s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad_top == 0 && s->pad_left == 0 &&
           s->pad_bottom == 0 && s->pad_right == 0;
}

/* How the output positions are cut into panels:  G images per panel (G > 1:
 * whole images, staged), or G = 1 with slices of Nc positions of one image. */
typedef struct conv_plan {
    long K, HWo, Nc;
    int Ho, Wo, G;
} conv_plan;

static conv_plan make_plan(const conv2d_shape *s)
{
    conv_plan p;
    p.Ho = conv2d_out_h(s);
    p.Wo = conv2d_out_w(s);
    p.HWo = (long)p.Ho * p.Wo;
    p.K = (long)s->C_in * s->kh * s->kw;
    long cap = CONV_COLS_TARGET / (p.K > 0 ? p.K : 1);
    if (cap < CONV_MIN_COLS)
        cap = CONV_MIN_COLS;
    /* Equal-sized panels: a short last panel makes a slow gemm. */
    if (p.HWo >= cap || s->B <= 1) {
        long n = (p.HWo + cap - 1) / cap;
        p.G = 1;
        p.Nc = (p.HWo + n - 1) / n;
    } else {
        long g = cap / p.HWo, n = (s->B + g - 1) / g;
        p.G = (int)((s->B + n - 1) / n);
        p.Nc = p.G * p.HWo;
    }
    return p;
}

size_t conv2d_workspace_floats(const conv2d_shape *s)
{
    if (wants_dnnl(s) && conv2d_dnnl_applies(s))
        return 0;
    if (use_winograd(s))
        return conv2d_winograd_workspace_floats(s);
    if (use_winograd_4x4(s))
        return conv2d_winograd_4x4_workspace_floats(s);
    if (is_direct_1x1(s))
        return 0;
    conv_plan p = make_plan(s);
    size_t n = (size_t)p.K * p.Nc;
    if (p.G > 1)
        n += (size_t)s->C_out * p.Nc;
    return n;
}

/* Output columns ow whose input column ow·stride − pad_left + kj is inside
 * [0, W): the range [*lo, *hi). */
static void valid_range(int k, int pad, int stride, int in, int out, int *lo, int *hi)
{
    int a = pad - k; /* ow·stride >= a */
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = in - 1 + pad - k; /* ow·stride <= b */
    int h = b < 0 ? 0 : b / stride + 1;
    if (l > out)
        l = out;
    if (h > out)
        h = out;
    if (h < l)
        h = l;
    *lo = l;
    *hi = h;
}

/* One row r = (c, ki, kj) of the column matrix, output positions [n0, n1) of
 * one image, written to dst[0 .. n1-n0). */
static void im2col_row(float *dst, const float *x_img, const conv2d_shape *s, int Wo, long n0, long n1, long r)
{
    const int kk = s->kh * s->kw;
    const int c = (int)(r / kk), ki = (int)(r % kk) / s->kw, kj = (int)(r % kk) % s->kw;
    const int st = s->stride, H = s->H, W = s->W;
    int lo, hi;
    valid_range(kj, s->pad_left, st, W, Wo, &lo, &hi);
    const float *xc = x_img + (long)c * H * W;
    for (long oh = n0 / Wo; oh * Wo < n1; oh++) {
        long rb = oh * Wo;
        int a = (int)(n0 > rb ? n0 - rb : 0);
        int b = (int)(n1 - rb < Wo ? n1 - rb : Wo);
        float *d = dst + (rb + a - n0);
        int ih = (int)oh * st - s->pad_top + ki;
        if (ih < 0 || ih >= H) {
            memset(d, 0, (size_t)(b - a) * sizeof(float));
            continue;
        }
        const float *xr = xc + (long)ih * W - s->pad_left + kj; /* xr[ow·st] is the tap */
        int ow = a;
        for (; ow < b && ow < lo; ow++)
            *d++ = 0.0f;
        int e = b < hi ? b : hi;
        if (st == 1) {
            if (e > ow) {
                memcpy(d, xr + ow, (size_t)(e - ow) * sizeof(float));
                d += e - ow;
                ow = e;
            }
        } else if (st == 2) {
            int n = e > ow ? e - ow : 0;
            const float *xs = xr + 2L * ow;
#pragma omp simd
            for (int q = 0; q < n; q++)
                d[q] = xs[2 * q];
            d += n;
            ow += n;
        } else {
            for (; ow < e; ow++)
                *d++ = xr[(long)ow * st];
        }
        for (; ow < b; ow++)
            *d++ = 0.0f;
    }
}

/* Small maps: whole-image panels look every tap up in a table made once
 * per call, tap_src[t·HWo + n] = the offset in a channel plane that output
 * position n reads through tap t = ki·kw + kj, or −1 in the padding.  The
 * per-row bookkeeping of im2col_row (ranges, padding tests) dominates on
 * 16×16 and smaller maps; the table takes it out of the loops.  The columns
 * hold the same values either way. */
#define CONV_TAP_TABLE_MAX 4096

static int tap_table_fits(const conv2d_shape *s, const conv_plan *p, long n0, long n1)
{
    return n0 == 0 && n1 == p->HWo && (long)s->kh * s->kw * p->HWo <= CONV_TAP_TABLE_MAX;
}

static void make_tap_table(int *tap_src, const conv2d_shape *s, const conv_plan *p)
{
    for (int ki = 0; ki < s->kh; ki++)
        for (int kj = 0; kj < s->kw; kj++)
            for (int oh = 0; oh < p->Ho; oh++)
                for (int ow = 0; ow < p->Wo; ow++) {
                    int ih = oh * s->stride - s->pad_top + ki, iw = ow * s->stride - s->pad_left + kj;
                    *tap_src++ = ih < 0 || ih >= s->H || iw < 0 || iw >= s->W ? -1 : ih * s->W + iw;
                }
}

/* The kh·kw column rows of channel plane xc (channel c), all output positions of one image. */
static void im2col_taps(float *cols, long ldc, const float *xc, const int *tap_src, int kk, long HWo, int c)
{
    for (int t = 0; t < kk; t++) {
        float *d = cols + ((long)c * kk + t) * ldc;
        const int *ix = tap_src + t * HWo;
#pragma omp simd
        for (long n = 0; n < HWo; n++)
            d[n] = ix[n] < 0 ? 0.0f : xc[ix[n]];
    }
}

/* dx channel plane += its column rows: each element receives its terms in
 * tap order, as in col2im_channel. */
static void col2im_taps(float *dxc, const float *cols, long ldc, const int *tap_src, int kk, long HWo, int c)
{
    for (int t = 0; t < kk; t++) {
        const float *src = cols + ((long)c * kk + t) * ldc;
        const int *ix = tap_src + t * HWo;
        for (long n = 0; n < HWo; n++)
            if (ix[n] >= 0)
                dxc[ix[n]] += src[n];
    }
}

/* im2col_permute's plan for whole-image panels of this shape, where it
 * applies (planes of at most 64 floats on an AVX-512 CPU); 0 elsewhere. */
static int permute_plan(im2col_permute_plan *pp, const conv2d_shape *s, const conv_plan *p)
{
    const int plane = s->H * s->W, kk = s->kh * s->kw;
    if (!tap_table_fits(s, p, 0, p->HWo) || !im2col_permute_applies(plane, kk, p->HWo))
        return 0;
    int tap_src[CONV_TAP_TABLE_MAX];
    make_tap_table(tap_src, s, p);
    im2col_permute_make(pp, tap_src, kk, p->HWo, plane);
    return 1;
}

/* cols[r·ldc + (n − n0) + g·HWo] for g in [0, G) images starting at x. */
static void im2col(float *cols, long ldc, const float *x, int G, const conv2d_shape *s, const conv_plan *p,
                   long n0, long n1)
{
    const long K = p->K, img = (long)s->C_in * s->H * s->W, plane = (long)s->H * s->W;
    long work = (long)G * K * (n1 - n0);
    im2col_permute_plan pp;
    if (tap_table_fits(s, p, n0, n1) && permute_plan(&pp, s, p)) {
#pragma omp parallel for collapse(2) schedule(static) if (work > CONV_PAR_MIN)
        for (int c = 0; c < s->C_in; c++)
            for (int g = 0; g < G; g++)
                im2col_permute_channel(cols + g * p->HWo, ldc, x + g * img + c * plane, c, &pp);
        return;
    }
    if (tap_table_fits(s, p, n0, n1)) {
        int tap_src[CONV_TAP_TABLE_MAX];
        make_tap_table(tap_src, s, p);
#pragma omp parallel for collapse(2) schedule(static) if (work > CONV_PAR_MIN)
        for (int c = 0; c < s->C_in; c++)
            for (int g = 0; g < G; g++)
                im2col_taps(cols + g * p->HWo, ldc, x + g * img + c * plane, tap_src, s->kh * s->kw, p->HWo, c);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if (work > CONV_PAR_MIN)
    for (int g = 0; g < G; g++)
        for (long r = 0; r < K; r++)
            im2col_row(cols + r * ldc + g * p->HWo, x + g * img, s, p->Wo, n0, n1, r);
}

/* The columns of G whole images transposed, colsT[(g·HWo + n)·K + r], where
 * im2col_permute has a transposed form for the shape (planes of at most 64
 * floats, at most 16 taps and 16 output positions: the PatchGAN's 8×8 and
 * smaller maps); returns 0 (nothing written) elsewhere.  The weight
 * gradient then multiplies by them untransposed: the 8×8 → 4×4 layer's
 * dweight ~0.6 ms faster, one thread (Zen 5), than transposing cols while
 * packing.  Our gemm sums each element in k order either way. */
static int im2col_transposed(float *colsT, const float *x, int G, const conv2d_shape *s, const conv_plan *p)
{
    const long K = p->K, img = (long)s->C_in * s->H * s->W, plane = (long)s->H * s->W;
    im2col_permute_plan pp;
    if (!im2col_permute_transposed_applies(s->kh * s->kw, p->HWo) || !permute_plan(&pp, s, p))
        return 0;
#pragma omp parallel for collapse(2) schedule(static) if ((long)G * K * p->HWo > CONV_PAR_MIN)
    for (int g = 0; g < G; g++)
        for (int c = 0; c < s->C_in; c++)
            im2col_permute_channel_transposed(colsT + g * p->HWo * K, K, x + g * img + c * plane, c, &pp);
    return 1;
}

/* dx_img[c] += the column rows of channel c, output positions [n0, n1). */
static void col2im_channel(float *dxc, const float *cols, long ldc, const conv2d_shape *s, int Wo, long n0,
                           long n1, int c)
{
    const int kk = s->kh * s->kw, st = s->stride, H = s->H, W = s->W;
    for (int ki = 0; ki < s->kh; ki++)
        for (int kj = 0; kj < s->kw; kj++) {
            const float *src = cols + ((long)c * kk + ki * s->kw + kj) * ldc;
            int lo, hi;
            valid_range(kj, s->pad_left, st, W, Wo, &lo, &hi);
            for (long oh = n0 / Wo; oh * Wo < n1; oh++) {
                long rb = oh * Wo;
                int ih = (int)oh * st - s->pad_top + ki;
                if (ih < 0 || ih >= H)
                    continue;
                int a = (int)(n0 > rb ? n0 - rb : 0);
                int b = (int)(n1 - rb < Wo ? n1 - rb : Wo);
                if (a < lo)
                    a = lo;
                if (b > hi)
                    b = hi;
                const float *sr = src + (rb - n0);
                float *dr = dxc + (long)ih * W - s->pad_left + kj;
                if (st == 1) {
#pragma omp simd
                    for (int ow = a; ow < b; ow++)
                        dr[ow] += sr[ow];
                } else if (st == 2) {
#pragma omp simd
                    for (int ow = a; ow < b; ow++)
                        dr[2 * ow] += sr[ow];
                } else {
                    for (int ow = a; ow < b; ow++)
                        dr[(long)ow * st] += sr[ow];
                }
            }
        }
}

static void col2im(float *dx, const float *cols, long ldc, int G, const conv2d_shape *s, const conv_plan *p,
                   long n0, long n1)
{
    const long img = (long)s->C_in * s->H * s->W, plane = (long)s->H * s->W;
    long work = (long)G * p->K * (n1 - n0);
    if (tap_table_fits(s, p, n0, n1)) {
        int tap_src[CONV_TAP_TABLE_MAX];
        make_tap_table(tap_src, s, p);
#pragma omp parallel for collapse(2) schedule(static) if (work > CONV_PAR_MIN)
        for (int c = 0; c < s->C_in; c++)
            for (int g = 0; g < G; g++)
                col2im_taps(dx + g * img + c * plane, cols + g * p->HWo, ldc, tap_src, s->kh * s->kw, p->HWo, c);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if (work > CONV_PAR_MIN)
    for (int g = 0; g < G; g++)
        for (int c = 0; c < s->C_in; c++)
            col2im_channel(dx + g * img + c * plane, cols + g * p->HWo, ldc, s, p->Wo, n0, n1, c);
}

/* dx += col2im(wᵀ · dout) for a layer with one output channel (the
 * PatchGAN's last), without the column buffer.  With C_out = 1 the product
 * has one term, so every column entry is the rounded w[k]·dout[n] whether
 * gemm or this loop makes it (a one-term sum has no order), and each dx
 * element receives its terms in col2im_taps' order: bit for bit the gemm +
 * col2im path, minus a K × N buffer written, zeroed and read back. */
static int col2im_rank1_applies(const conv2d_shape *s, const conv_plan *p)
{
    return s->C_out == 1 && tap_table_fits(s, p, 0, p->HWo);
}

static void col2im_rank1(float *dx, const float *weight, const float *dout, int G, const conv2d_shape *s,
                         const conv_plan *p)
{
    const long img = (long)s->C_in * s->H * s->W, plane = (long)s->H * s->W, HWo = p->HWo;
    const int kk = s->kh * s->kw;
    int tap_src[CONV_TAP_TABLE_MAX];
    make_tap_table(tap_src, s, p);
#pragma omp parallel for collapse(2) schedule(static) if ((long)G * p->K * HWo > CONV_PAR_MIN)
    for (int c = 0; c < s->C_in; c++)
        for (int g = 0; g < G; g++) {
            float *dxc = dx + g * img + c * plane;
            const float *dy = dout + g * HWo;
            for (int t = 0; t < kk; t++) {
                const float w = weight[(long)c * kk + t];
                const int *ix = tap_src + t * HWo;
                for (long n = 0; n < HWo; n++)
                    if (ix[n] >= 0)
                        dxc[ix[n]] += w * dy[n];
            }
        }
}

/* out[b][o][:] = bias[o] (or 0) for `nimg` images. */
static void fill_bias(float *out, const float *bias, int nimg, int C_out, long HWo)
{
    long work = (long)nimg * C_out * HWo;
#pragma omp parallel for collapse(2) schedule(static) if (work > CONV_PAR_MIN)
    for (int b = 0; b < nimg; b++)
        for (int o = 0; o < C_out; o++) {
            float *d = out + ((long)b * C_out + o) * HWo;
            float v = bias ? bias[o] : 0.0f;
#pragma omp simd
            for (long n = 0; n < HWo; n++)
                d[n] = v;
        }
}

void conv2d_forward(float *out, const float *x, const float *weight, const float *bias, const conv2d_shape *s,
                    float *workspace)
{
    const conv_plan p = make_plan(s);
    const long K = p.K, HWo = p.HWo, C_out = s->C_out;
    const long ximg = (long)s->C_in * s->H * s->W, oimg = C_out * HWo;
    if (wants_dnnl(s) && conv2d_dnnl_forward(out, x, weight, bias, s))
        return;
    if (use_winograd(s)) {
        conv2d_winograd_forward(out, x, weight, bias, s, workspace);
        return;
    }
    if (use_winograd_4x4(s)) {
        conv2d_winograd_4x4_forward(out, x, weight, bias, s, workspace);
        return;
    }
    if (is_direct_1x1(s)) {
        fill_bias(out, bias, s->B, s->C_out, HWo);
        gemm_strided_batch(s->B, false, false, s->C_out, (int)HWo, s->C_in, 1.0f, weight, 0, s->C_in, x, ximg,
                           (int)HWo, 1.0f, out, oimg, (int)HWo);
        return;
    }
    float *cols = workspace;
    if (p.G == 1) {
        fill_bias(out, bias, s->B, s->C_out, HWo);
        for (int b = 0; b < s->B; b++)
            for (long n0 = 0; n0 < HWo; n0 += p.Nc) {
                long nc = HWo - n0 < p.Nc ? HWo - n0 : p.Nc;
                im2col(cols, nc, x + b * ximg, 1, s, &p, n0, n0 + nc);
                gemm(false, false, s->C_out, (int)nc, (int)K, 1.0f, weight, (int)K, cols, (int)nc, 1.0f,
                     out + b * oimg + n0, (int)HWo);
            }
        return;
    }
    float *stage = workspace + K * p.Nc;
    for (int b0 = 0; b0 < s->B; b0 += p.G) {
        int G = s->B - b0 < p.G ? s->B - b0 : p.G;
        long N = G * HWo;
        im2col(cols, N, x + b0 * ximg, G, s, &p, 0, HWo);
        gemm(false, false, s->C_out, (int)N, (int)K, 1.0f, weight, (int)K, cols, (int)N, 0.0f, stage, (int)N);
        float *ob = out + b0 * oimg;
#pragma omp parallel for collapse(2) schedule(static) if (G * oimg > CONV_PAR_MIN)
        for (int g = 0; g < G; g++)
            for (long o = 0; o < C_out; o++) {
                const float *sr = stage + o * N + g * HWo;
                float *d = ob + g * oimg + o * HWo;
                float v = bias ? bias[o] : 0.0f;
#pragma omp simd
                for (long n = 0; n < HWo; n++)
                    d[n] = sr[n] + v;
            }
    }
}

void conv2d_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                     const float *weight, const conv2d_shape *s, float *workspace)
{
    const conv_plan p = make_plan(s);
    const long K = p.K, HWo = p.HWo, C_out = s->C_out;
    const long ximg = (long)s->C_in * s->H * s->W, oimg = C_out * HWo;
    if (dbias) {
#pragma omp parallel for schedule(static) if ((long)s->B * oimg > CONV_PAR_MIN)
        for (long o = 0; o < C_out; o++) {
            double acc = 0.0;
            for (int b = 0; b < s->B; b++) {
                const float *d = dout + b * oimg + o * HWo;
                double part = 0.0;
#pragma omp simd reduction(+ : part)
                for (long n = 0; n < HWo; n++)
                    part += d[n];
                acc += part;
            }
            dbias[o] += (float)acc;
        }
    }
    if (!dx && !dweight)
        return;
    if (wants_dnnl(s) && conv2d_dnnl_backward(dx, dweight, dout, x, weight, s))
        return;
    if (use_winograd(s)) {
        conv2d_winograd_backward(dx, dweight, dout, x, weight, s, workspace);
        return;
    }
    if (use_winograd_4x4(s)) {
        conv2d_winograd_4x4_backward(dx, dweight, dout, x, weight, s, workspace);
        return;
    }
    if (is_direct_1x1(s)) {
        /* dweight accumulates image by image in order; dx per image in parallel. */
        if (dweight)
            for (int b = 0; b < s->B; b++)
                gemm(false, true, s->C_out, s->C_in, (int)HWo, 1.0f, dout + b * oimg, (int)HWo, x + b * ximg,
                     (int)HWo, 1.0f, dweight, s->C_in);
        if (dx)
            gemm_strided_batch(s->B, true, false, s->C_in, (int)HWo, s->C_out, 1.0f, weight, 0, s->C_in, dout, oimg,
                               (int)HWo, 1.0f, dx, ximg, (int)HWo);
        return;
    }
    float *cols = workspace;
    if (p.G == 1) {
        for (int b = 0; b < s->B; b++)
            for (long n0 = 0; n0 < HWo; n0 += p.Nc) {
                long nc = HWo - n0 < p.Nc ? HWo - n0 : p.Nc;
                const float *dc = dout + b * oimg + n0;
                if (dweight) {
                    im2col(cols, nc, x + b * ximg, 1, s, &p, n0, n0 + nc);
                    gemm(false, true, s->C_out, (int)K, (int)nc, 1.0f, dc, (int)HWo, cols, (int)nc, 1.0f, dweight,
                         (int)K);
                }
                if (dx && nc == HWo && col2im_rank1_applies(s, &p)) {
                    col2im_rank1(dx + b * ximg, weight, dc, 1, s, &p);
                } else if (dx) {
                    gemm(true, false, (int)K, (int)nc, s->C_out, 1.0f, weight, (int)K, dc, (int)HWo, 0.0f, cols,
                         (int)nc);
                    col2im(dx + b * ximg, cols, nc, 1, s, &p, n0, n0 + nc);
                }
            }
        return;
    }
    float *stage = workspace + K * p.Nc;
    for (int b0 = 0; b0 < s->B; b0 += p.G) {
        int G = s->B - b0 < p.G ? s->B - b0 : p.G;
        long N = G * HWo;
        const float *db = dout + b0 * oimg;
#pragma omp parallel for collapse(2) schedule(static) if (G * oimg > CONV_PAR_MIN)
        for (int g = 0; g < G; g++)
            for (long o = 0; o < C_out; o++)
                memcpy(stage + o * N + g * HWo, db + g * oimg + o * HWo, (size_t)HWo * sizeof(float));
        if (dweight && im2col_transposed(cols, x + b0 * ximg, G, s, &p)) {
            gemm(false, false, s->C_out, (int)K, (int)N, 1.0f, stage, (int)N, cols, (int)K, 1.0f, dweight, (int)K);
        } else if (dweight) {
            im2col(cols, N, x + b0 * ximg, G, s, &p, 0, HWo);
            gemm(false, true, s->C_out, (int)K, (int)N, 1.0f, stage, (int)N, cols, (int)N, 1.0f, dweight, (int)K);
        }
        if (dx && col2im_rank1_applies(s, &p)) {
            col2im_rank1(dx + b0 * ximg, weight, db, G, s, &p); /* (one channel: dout is stage's layout) */
        } else if (dx) {
            gemm(true, false, (int)K, (int)N, s->C_out, 1.0f, weight, (int)K, stage, (int)N, 0.0f, cols, (int)N);
            col2im(dx + b0 * ximg, cols, N, G, s, &p, 0, HWo);
        }
    }
}

/* ---- naive reference (tests) ---- */

void conv2d_forward_ref(float *out, const float *x, const float *weight, const float *bias, const conv2d_shape *s)
{
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    for (int b = 0; b < s->B; b++)
        for (int o = 0; o < s->C_out; o++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int c = 0; c < s->C_in; c++)
                        for (int ki = 0; ki < s->kh; ki++)
                            for (int kj = 0; kj < s->kw; kj++) {
                                int ih = oh * s->stride - s->pad_top + ki, iw = ow * s->stride - s->pad_left + kj;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
                                    continue;
                                acc += (double)x[(((long)b * s->C_in + c) * s->H + ih) * s->W + iw] *
                                       weight[(((long)o * s->C_in + c) * s->kh + ki) * s->kw + kj];
                            }
                    out[(((long)b * s->C_out + o) * Ho + oh) * Wo + ow] = (float)acc;
                }
}

void conv2d_backward_ref(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                         const float *weight, const conv2d_shape *s)
{
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    if (dbias)
        for (int o = 0; o < s->C_out; o++) {
            double acc = 0;
            for (int b = 0; b < s->B; b++)
                for (long n = 0; n < (long)Ho * Wo; n++)
                    acc += dout[((long)b * s->C_out + o) * Ho * Wo + n];
            dbias[o] += (float)acc;
        }
    if (dweight)
        for (int o = 0; o < s->C_out; o++)
            for (int c = 0; c < s->C_in; c++)
                for (int ki = 0; ki < s->kh; ki++)
                    for (int kj = 0; kj < s->kw; kj++) {
                        double acc = 0;
                        for (int b = 0; b < s->B; b++)
                            for (int oh = 0; oh < Ho; oh++)
                                for (int ow = 0; ow < Wo; ow++) {
                                    int ih = oh * s->stride - s->pad_top + ki,
                                        iw = ow * s->stride - s->pad_left + kj;
                                    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
                                        continue;
                                    acc += (double)dout[(((long)b * s->C_out + o) * Ho + oh) * Wo + ow] *
                                           x[(((long)b * s->C_in + c) * s->H + ih) * s->W + iw];
                                }
                        dweight[(((long)o * s->C_in + c) * s->kh + ki) * s->kw + kj] += (float)acc;
                    }
    if (dx)
        for (int b = 0; b < s->B; b++)
            for (int c = 0; c < s->C_in; c++)
                for (int ih = 0; ih < s->H; ih++)
                    for (int iw = 0; iw < s->W; iw++) {
                        double acc = 0;
                        for (int o = 0; o < s->C_out; o++)
                            for (int ki = 0; ki < s->kh; ki++)
                                for (int kj = 0; kj < s->kw; kj++) {
                                    int th = ih + s->pad_top - ki, tw = iw + s->pad_left - kj;
                                    if (th < 0 || tw < 0 || th % s->stride || tw % s->stride)
                                        continue;
                                    int oh = th / s->stride, ow = tw / s->stride;
                                    if (oh >= Ho || ow >= Wo)
                                        continue;
                                    acc += (double)dout[(((long)b * s->C_out + o) * Ho + oh) * Wo + ow] *
                                           weight[(((long)o * s->C_in + c) * s->kh + ki) * s->kw + kj];
                                }
                        dx[(((long)b * s->C_in + c) * s->H + ih) * s->W + iw] += (float)acc;
                    }
}
