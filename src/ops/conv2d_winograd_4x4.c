#include "ops/conv2d_winograd_4x4.h"

#include <string.h>

#include "ops/gemm.h"

/* Floats of per-chunk buffers to aim for (as conv2d_winograd.c). */
#define W4_CHUNK_FLOATS ((long)4 << 20)
/* Below this much work an OpenMP region costs more than it saves. */
#define W4_PAR_MIN 32768L

/* Geometry.  Output 2×2 tiles, TY × TX per image, R = B·TY tile rows,
 * chunks of RC tile rows.  The 4×4 kernel is four 2×2 sub-kernels q = 2a + b
 * (a, b in {0, 1}): sub-kernel q's tap (i, j) is the kernel's tap
 * (st·i + ka, st·j + kb) with ka = a·2/st, and the input patch of output tile
 * (ty, tx) for it is the 3×3 grid of rows 2·st·ty + ka − pt + st·m and columns
 * 2·st·tx + kb − pl + st·n (m, n = 0..2).  Stride 1: four shifted 2×2 kernels;
 * stride 2: the four input phases, each with its 2×2 kernel. */
typedef struct w4_geom {
    long Ci, Co, K4, H, W, Ho, Wo, TY, TX, R, RC;
    int st, pt, pl;
} w4_geom;

/* Floats a chunk holds per tile row: backward keeps V (K4), P (Co) and dV
 * (K4) per tile and ξ. */
static long floats_per_row(const w4_geom *g) { return 9 * g->TX * (2 * g->K4 + g->Co); }

/* The most tile rows whose buffers stay around W4_CHUNK_FLOATS (at least 1). */
static long max_chunk_rows(const w4_geom *g)
{
    long per_row = floats_per_row(g), rows = W4_CHUNK_FLOATS / (per_row > 0 ? per_row : 1);
    return rows < 1 ? 1 : rows;
}

static w4_geom make_geom(const conv2d_shape *s)
{
    w4_geom g;
    g.Ci = s->C_in;
    g.Co = s->C_out;
    g.K4 = 4 * g.Ci;
    g.H = s->H;
    g.W = s->W;
    g.Ho = conv2d_out_h(s);
    g.Wo = conv2d_out_w(s);
    g.TY = (g.Ho + 1) / 2;
    g.TX = (g.Wo + 1) / 2;
    g.R = (long)s->B * g.TY;
    g.st = s->stride;
    g.pt = s->pad_top;
    g.pl = s->pad_left;
    long rows = max_chunk_rows(&g);
    long n = (g.R + rows - 1) / rows; /* equal chunks */
    g.RC = n > 0 ? (g.R + n - 1) / n : 1;
    return g;
}

int conv2d_winograd_4x4_applies(const conv2d_shape *s)
{
    return s->kh == 4 && s->kw == 4 && (s->stride == 1 || s->stride == 2) && conv2d_out_h(s) > 0 &&
           conv2d_out_w(s) > 0;
}

size_t conv2d_winograd_4x4_workspace_floats(const conv2d_shape *s)
{
    w4_geom g = make_geom(s);
    /* The most rows a chunk can have for any batch up to s->B (see conv2d_winograd.c). */
    long rows = max_chunk_rows(&g);
    if (rows < g.RC)
        rows = g.RC;
    if (rows > g.R)
        rows = g.R;
    return (size_t)(2 * 9 * g.Co * g.K4 + rows * floats_per_row(&g));
}

/* ---- the 1-D transforms of F(2, 2) (points 0, 1, ∞) ----
 *   Bᵀ d = (d0 − d1, d1, d2 − d1)     G g = (g0, g0 + g1, g1)     Aᵀ m = (m0 + m1, m1 + m2)
 * and their adjoints B v = (v0, v1 − v0 − v2, v2), A y = (y0, y0 + y1, y1),
 * Gᵀ u = (u0 + u1, u1 + u2).  y0 = d0 g0 + d1 g1, y1 = d1 g0 + d2 g1. */

/* U[ξ][o][q·Ci + c] = (G g_q Gᵀ)[ξ] for every output o, input c and sub-kernel q. */
static void transform_weights(float *U, const float *w, const w4_geom *g)
{
    const long Co = g->Co, Ci = g->Ci, K4 = g->K4;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long c = 0; c < Ci; c++) {
            const float *k = w + (o * Ci + c) * 16;
            for (int q = 0; q < 4; q++) {
                int ka = (q >> 1) * 2 / g->st, kb = (q & 1) * 2 / g->st;
                float k00 = k[ka * 4 + kb], k01 = k[ka * 4 + kb + g->st];
                float k10 = k[(ka + g->st) * 4 + kb], k11 = k[(ka + g->st) * 4 + kb + g->st];
                float r[3][2] = {{k00, k01}, {k00 + k10, k01 + k11}, {k10, k11}}; /* G over the rows */
                for (int i = 0; i < 3; i++) {
                    float u[3] = {r[i][0], r[i][0] + r[i][1], r[i][1]}; /* ... and the columns */
                    for (int j = 0; j < 3; j++)
                        U[((3 * i + j) * Co + o) * K4 + q * Ci + c] = u[j];
                }
            }
        }
}

/* dweight += Gᵀ dU_q G at each sub-kernel's taps. */
static void add_weight_gradient(float *dw, const float *dU, const w4_geom *g)
{
    const long Co = g->Co, Ci = g->Ci, K4 = g->K4;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long c = 0; c < Ci; c++) {
            float *k = dw + (o * Ci + c) * 16;
            for (int q = 0; q < 4; q++) {
                float u[3][3], e[2][3];
                for (int xi = 0; xi < 9; xi++)
                    u[xi / 3][xi % 3] = dU[(xi * Co + o) * K4 + q * Ci + c];
                for (int j = 0; j < 3; j++) { /* Gᵀ over the rows */
                    e[0][j] = u[0][j] + u[1][j];
                    e[1][j] = u[1][j] + u[2][j];
                }
                int ka = (q >> 1) * 2 / g->st, kb = (q & 1) * 2 / g->st;
                for (int i = 0; i < 2; i++) {
                    float *row = k + (ka + g->st * i) * 4 + kb;
                    row[0] += e[i][0] + e[i][1];
                    row[g->st] += e[i][1] + e[i][2];
                }
            }
        }
}

/* The passes below walk a tile row in segments of up to SEG tiles, with the
 * tile index i along SIMD lanes: a 3×3 patch entry (m, n) of tile tx0 + i
 * is column 2·st·i + st·n of a zero-padded copy of its input row. */
#define SEG 64
#define ROW_MAX (4 * SEG + 1)

/* Small maps (few tiles per row) gather through a table of tap offsets:
 * tab[(q·9 + 3m + n)·TT + j] = the input plane offset of patch entry (m, n)
 * of sub-kernel q for tile j = ty·TX + tx of an image, or −1 in the padding. */
#define TAB_MAX 8192
static int use_table(const w4_geom *g) { return 36 * g->TY * g->TX <= TAB_MAX && g->TX < 16; }

static void make_table(int *tab, const w4_geom *g)
{
    const long TT = g->TY * g->TX, st = g->st;
    for (int q = 0; q < 4; q++) {
        const long ka = (q >> 1) * 2 / st, kb = (q & 1) * 2 / st;
        for (int mn = 0; mn < 9; mn++)
            for (long j = 0; j < TT; j++) {
                long ty = j / g->TX, tx = j % g->TX;
                long r = 2 * st * ty + ka - g->pt + st * (mn / 3), col = 2 * st * tx + kb - g->pl + st * (mn % 3);
                tab[(q * 9 + mn) * TT + j] = r < 0 || r >= g->H || col < 0 || col >= g->W ? -1 : (int)(r * g->W + col);
            }
    }
}


/* Chunk tile t (tile rows from row0) lies in image *b at table index *j0 =
 * ty·TX + tx; returns how many of the next `left` tiles stay in that image. */
static inline long image_run(const w4_geom *g, long row0, long t, long left, long *b, long *j0)
{
    const long R = row0 + t / g->TX, TT = g->TY * g->TX;
    *b = R / g->TY;
    *j0 = (R % g->TY) * g->TX + t % g->TX;
    return TT - *j0 < left ? TT - *j0 : left;
}

/* d[m][n][k + i] = patch entry (m, n) of tiles tx .. tx+run-1 of one tile
 * row, from input rows row_m = row0 + st·m (zero outside the image). */
static inline void gather_patches(float d[3][3][SEG], long k, const float *xc, const w4_geom *g, long row0,
                                  long col0, long run)
{
    const long st = g->st, width = 2 * st * run + 1;
    for (int m = 0; m < 3; m++) {
        const long r = row0 + st * m;
        float buf[ROW_MAX];
        for (long j = 0; j < width; j++) {
            const long col = col0 + j;
            buf[j] = r < 0 || r >= g->H || col < 0 || col >= g->W ? 0.0f : xc[r * g->W + col];
        }
        if (st == 1) /* (constant strides, so the gathers vectorise) */
            for (int n = 0; n < 3; n++) {
#pragma omp simd
                for (long i = 0; i < run; i++)
                    d[m][n][k + i] = buf[2 * i + n];
            }
        else
            for (int n = 0; n < 3; n++) {
#pragma omp simd
                for (long i = 0; i < run; i++)
                    d[m][n][k + i] = buf[4 * i + 2 * n];
            }
    }
}

/* V[ξ][q·Ci + c][t] = (Bᵀ d B)[ξ] for the chunk's tiles t (tile rows row0 ..),
 * SEG tiles at a time along the SIMD lanes (a segment may span tile rows:
 * small maps have only 2–4 tiles per row). */
static void transform_input(float *V, const float *x, const int *tab, const w4_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, K4 = g->K4, TX = g->TX, T = nrows * TX, st = g->st, xs = K4 * T, TT = g->TY * TX;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++)
        for (int q = 0; q < 4; q++) {
            const long ka = (q >> 1) * 2 / st, kb = (q & 1) * 2 / st;
            float *v = V + (q * Ci + c) * T;
            for (long t0 = 0; t0 < T; t0 += SEG) {
                const long len = T - t0 < SEG ? T - t0 : SEG;
                float d[3][3][SEG];
                for (long k = 0; k < len && tab;) { /* small maps: one image's tiles at a time, by table */
                    long b, j0, run = image_run(g, row0, t0 + k, len - k, &b, &j0);
                    const float *xb = x + (b * Ci + c) * g->H * g->W;
                    for (int mn = 0; mn < 9; mn++) {
                        const int *ix = tab + (q * 9 + mn) * TT + j0;
                        float *dm = &d[mn / 3][mn % 3][k];
#pragma omp simd
                        for (long i = 0; i < run; i++)
                            dm[i] = ix[i] < 0 ? 0.0f : xb[ix[i]];
                    }
                    k += run;
                }
                for (long k = 0; k < len && !tab;) { /* else one tile row's tiles at a time */
                    const long t = t0 + k, lr = t / TX, tx = t % TX, run = TX - tx < len - k ? TX - tx : len - k;
                    const long R = row0 + lr, b = R / g->TY, ty = R % g->TY;
                    gather_patches(d, k, x + (b * Ci + c) * g->H * g->W, g, 2 * st * ty + ka - g->pt,
                                   2 * st * tx + kb - g->pl, run);
                    k += run;
                }
                float *dst = v + t0;
#pragma omp simd
                for (long i = 0; i < len; i++) {
                    /* Bᵀ over the rows ... */
                    float a0 = d[0][0][i] - d[1][0][i], a1 = d[0][1][i] - d[1][1][i], a2 = d[0][2][i] - d[1][2][i];
                    float b0 = d[1][0][i], b1 = d[1][1][i], b2 = d[1][2][i];
                    float c0 = d[2][0][i] - d[1][0][i], c1 = d[2][1][i] - d[1][1][i], c2 = d[2][2][i] - d[1][2][i];
                    dst[0 * xs + i] = a0 - a1; /* ... and the columns */
                    dst[1 * xs + i] = a1;
                    dst[2 * xs + i] = a2 - a1;
                    dst[3 * xs + i] = b0 - b1;
                    dst[4 * xs + i] = b1;
                    dst[5 * xs + i] = b2 - b1;
                    dst[6 * xs + i] = c0 - c1;
                    dst[7 * xs + i] = c1;
                    dst[8 * xs + i] = c2 - c1;
                }
            }
        }
}

/* out 2×2 blocks = Aᵀ M A (+ bias), cut at the output's edge. */
static void transform_output(float *out, const float *M, const float *bias, const w4_geom *g, long row0,
                             long nrows)
{
    const long Co = g->Co, TX = g->TX, T = nrows * TX;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++) {
        const float bv = bias ? bias[o] : 0.0f;
        for (long lr = 0; lr < nrows; lr++) {
            const long R = row0 + lr, b = R / g->TY, ty = R % g->TY;
            float *oc = out + (b * Co + o) * g->Ho * g->Wo;
            for (long tx0 = 0; tx0 < TX; tx0 += SEG) {
                const long len = TX - tx0 < SEG ? TX - tx0 : SEG, t0 = lr * TX + tx0;
                float line[2][2 * SEG];
                const float *m0 = M + o * T + t0;
                const long xs = Co * T;
#pragma omp simd
                for (long i = 0; i < len; i++) {
                    const float m00 = m0[0 * xs + i], m01 = m0[1 * xs + i], m02 = m0[2 * xs + i];
                    const float m10 = m0[3 * xs + i], m11 = m0[4 * xs + i], m12 = m0[5 * xs + i];
                    const float m20 = m0[6 * xs + i], m21 = m0[7 * xs + i], m22 = m0[8 * xs + i];
                    const float e0 = m00 + m10, e1 = m01 + m11, e2 = m02 + m12; /* Aᵀ over the rows ... */
                    const float f0 = m10 + m20, f1 = m11 + m21, f2 = m12 + m22;
                    line[0][2 * i] = e0 + e1 + bv; /* ... and the columns */
                    line[0][2 * i + 1] = e1 + e2 + bv;
                    line[1][2 * i] = f0 + f1 + bv;
                    line[1][2 * i + 1] = f1 + f2 + bv;
                }
                long width = g->Wo - 2 * tx0 < 2 * len ? g->Wo - 2 * tx0 : 2 * len;
                for (int a = 0; a < 2; a++)
                    if (2 * ty + a < g->Ho)
                        memcpy(oc + (2 * ty + a) * g->Wo + 2 * tx0, line[a], (size_t)width * sizeof(float));
            }
        }
    }
}

/* P[ξ][o][t] = (A dY Aᵀ)[ξ], dY the tile's 2×2 output gradient (0 past the edge). */
static void transform_output_gradient(float *P, const float *dout, const w4_geom *g, long row0, long nrows)
{
    const long Co = g->Co, TX = g->TX, T = nrows * TX;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long lr = 0; lr < nrows; lr++) {
            const long R = row0 + lr, b = R / g->TY, ty = R % g->TY;
            const float *dc = dout + (b * Co + o) * g->Ho * g->Wo;
            for (long tx0 = 0; tx0 < TX; tx0 += SEG) {
                const long len = TX - tx0 < SEG ? TX - tx0 : SEG, t0 = lr * TX + tx0;
                float line[2][2 * SEG];
                long width = g->Wo - 2 * tx0 < 2 * len ? g->Wo - 2 * tx0 : 2 * len;
                for (int a = 0; a < 2; a++) {
                    if (2 * ty + a < g->Ho)
                        memcpy(line[a], dc + (2 * ty + a) * g->Wo + 2 * tx0, (size_t)width * sizeof(float));
                    else /* (width ≥ 1: tx0 < TX = ⌈Wo/2⌉) */
                        memset(line[a], 0, (size_t)width * sizeof(float));
                    if (width < 2 * len)
                        memset(line[a] + width, 0, (size_t)(2 * len - width) * sizeof(float));
                }
                float *p0 = P + o * T + t0;
                const long xs = Co * T;
#pragma omp simd
                for (long i = 0; i < len; i++) {
                    const float y00 = line[0][2 * i], y01 = line[0][2 * i + 1];
                    const float y10 = line[1][2 * i], y11 = line[1][2 * i + 1];
                    const float s0 = y00 + y10, s1 = y01 + y11; /* A over the rows ... */
                    p0[0 * xs + i] = y00; /* ... and the columns */
                    p0[1 * xs + i] = y00 + y01;
                    p0[2 * xs + i] = y01;
                    p0[3 * xs + i] = s0;
                    p0[4 * xs + i] = s0 + s1;
                    p0[5 * xs + i] = s1;
                    p0[6 * xs + i] = y10;
                    p0[7 * xs + i] = y10 + y11;
                    p0[8 * xs + i] = y11;
                }
            }
        }
}

/* dx += B dV Bᵀ at each sub-kernel's input patch, SEG tiles at a time.
 * Patches overlap; a thread owns a channel, and each element gets its terms
 * in a fixed order (sub-kernel, tile, patch row m, patch column n). */
static void add_input_gradient(float *dx, const float *dV, const int *tab, const w4_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, K4 = g->K4, TX = g->TX, T = nrows * TX, st = g->st, xs = K4 * T, TT = g->TY * TX;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++)
        for (int q = 0; q < 4; q++) {
            const long ka = (q >> 1) * 2 / st, kb = (q & 1) * 2 / st;
            const float *v = dV + (q * Ci + c) * T;
            for (long t0 = 0; t0 < T; t0 += SEG) {
                const long len = T - t0 < SEG ? T - t0 : SEG;
                const float *u0 = v + t0;
                float dd[3][3][SEG];
#pragma omp simd
                for (long i = 0; i < len; i++) {
                    const float u00 = u0[0 * xs + i], u01 = u0[1 * xs + i], u02 = u0[2 * xs + i];
                    const float u10 = u0[3 * xs + i], u11 = u0[4 * xs + i], u12 = u0[5 * xs + i];
                    const float u20 = u0[6 * xs + i], u21 = u0[7 * xs + i], u22 = u0[8 * xs + i];
                    /* B over the rows ... */
                    const float e10 = u10 - u00 - u20, e11 = u11 - u01 - u21, e12 = u12 - u02 - u22;
                    dd[0][0][i] = u00; /* ... and the columns */
                    dd[0][1][i] = u01 - u00 - u02;
                    dd[0][2][i] = u02;
                    dd[1][0][i] = e10;
                    dd[1][1][i] = e11 - e10 - e12;
                    dd[1][2][i] = e12;
                    dd[2][0][i] = u20;
                    dd[2][1][i] = u21 - u20 - u22;
                    dd[2][2][i] = u22;
                }
                for (long k = 0; k < len && tab;) { /* small maps: one image's tiles at a time, by table */
                    long b, j0, run = image_run(g, row0, t0 + k, len - k, &b, &j0);
                    float *xb = dx + (b * Ci + c) * g->H * g->W;
                    for (int mn = 0; mn < 9; mn++) { /* (one patch entry's taps never collide) */
                        const int *ix = tab + (q * 9 + mn) * TT + j0;
                        const float *dm = &dd[mn / 3][mn % 3][k];
#pragma omp simd
                        for (long i = 0; i < run; i++)
                            if (ix[i] >= 0)
                                xb[ix[i]] += dm[i];
                    }
                    k += run;
                }
                for (long k = 0; k < len && !tab;) { /* else overlap-add each tile row's piece into its input rows */
                    const long t = t0 + k, lr = t / TX, tx = t % TX, run = TX - tx < len - k ? TX - tx : len - k;
                    const long R = row0 + lr, b = R / g->TY, ty = R % g->TY;
                    const long base = 2 * st * tx + kb - g->pl, width = 2 * st * run + 1;
                    float *xc = dx + (b * Ci + c) * g->H * g->W;
                    for (int m = 0; m < 3; m++) {
                        const long r = 2 * st * ty + ka - g->pt + st * m;
                        if (r < 0 || r >= g->H)
                            continue;
                        float acc[ROW_MAX];
                        memset(acc, 0, (size_t)width * sizeof(float));
                        if (st == 1)
                            for (int n = 0; n < 3; n++) {
#pragma omp simd
                                for (long i = 0; i < run; i++)
                                    acc[2 * i + n] += dd[m][n][k + i];
                            }
                        else
                            for (int n = 0; n < 3; n++) {
#pragma omp simd
                                for (long i = 0; i < run; i++)
                                    acc[4 * i + 2 * n] += dd[m][n][k + i];
                            }
                        long lo = base < 0 ? -base : 0, hi = g->W - base < width ? g->W - base : width;
                        float *row = xc + r * g->W + base;
                        for (long j = lo; j < hi; j++)
                            row[j] += acc[j];
                    }
                    k += run;
                }
            }
        }
}

void conv2d_winograd_4x4_forward(float *out, const float *x, const float *weight, const float *bias,
                                 const conv2d_shape *s, float *workspace)
{
    const w4_geom g = make_geom(s);
    float *U = workspace, *V = U + 2 * 9 * g.Co * g.K4;
    const long work = (long)s->B * g.Ci * g.H * g.W;
    int table[TAB_MAX], *tab = use_table(&g) ? table : NULL;
    if (tab)
        make_table(tab, &g);
#pragma omp parallel if (work > W4_PAR_MIN)
    transform_weights(U, weight, &g);
    for (long row0 = 0; row0 < g.R; row0 += g.RC) {
        const long nrows = g.R - row0 < g.RC ? g.R - row0 : g.RC, T = nrows * g.TX;
        float *M = V + 9 * g.K4 * T;
#pragma omp parallel if (work > W4_PAR_MIN)
        transform_input(V, x, tab, &g, row0, nrows);
        for (int xi = 0; xi < 9; xi++)
            gemm(false, false, (int)g.Co, (int)T, (int)g.K4, 1.0f, U + xi * g.Co * g.K4, (int)g.K4,
                 V + xi * g.K4 * T, (int)T, 0.0f, M + xi * g.Co * T, (int)T);
#pragma omp parallel if (work > W4_PAR_MIN)
        transform_output(out, M, bias, &g, row0, nrows);
    }
}

void conv2d_winograd_4x4_backward(float *dx, float *dweight, const float *dout, const float *x,
                                  const float *weight, const conv2d_shape *s, float *workspace)
{
    if (!dx && !dweight)
        return;
    const w4_geom g = make_geom(s);
    float *U = workspace, *dU = U + 9 * g.Co * g.K4, *V = dU + 9 * g.Co * g.K4;
    const long work = (long)s->B * g.Ci * g.H * g.W;
    int table[TAB_MAX], *tab = use_table(&g) ? table : NULL;
    if (tab)
        make_table(tab, &g);
#pragma omp parallel if (work > W4_PAR_MIN)
    transform_weights(U, weight, &g);
    if (dweight)
        memset(dU, 0, (size_t)(9 * g.Co * g.K4) * sizeof(float));
    for (long row0 = 0; row0 < g.R; row0 += g.RC) {
        const long nrows = g.R - row0 < g.RC ? g.R - row0 : g.RC, T = nrows * g.TX;
        float *P = V + 9 * g.K4 * T, *dV = P + 9 * g.Co * T;
#pragma omp parallel if (work > W4_PAR_MIN)
        {
            if (dweight)
                transform_input(V, x, tab, &g, row0, nrows);
            transform_output_gradient(P, dout, &g, row0, nrows);
        }
        for (int xi = 0; xi < 9; xi++) {
            if (dweight)
                gemm(false, true, (int)g.Co, (int)g.K4, (int)T, 1.0f, P + xi * g.Co * T, (int)T, V + xi * g.K4 * T,
                     (int)T, 1.0f, dU + xi * g.Co * g.K4, (int)g.K4);
            if (dx)
                gemm(true, false, (int)g.K4, (int)T, (int)g.Co, 1.0f, U + xi * g.Co * g.K4, (int)g.K4,
                     P + xi * g.Co * T, (int)T, 0.0f, dV + xi * g.K4 * T, (int)T);
        }
        if (dx) {
#pragma omp parallel if (work > W4_PAR_MIN)
            add_input_gradient(dx, dV, tab, &g, row0, nrows);
        }
    }
    if (dweight) {
#pragma omp parallel if (work > W4_PAR_MIN)
        add_weight_gradient(dweight, dU, &g);
    }
}
