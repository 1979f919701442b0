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
    /* Backward holds V (K4), P (Co) and dV (K4) per tile and ξ. */
    long per_row = 9 * g.TX * (2 * g.K4 + g.Co);
    long rows = W4_CHUNK_FLOATS / (per_row > 0 ? per_row : 1);
    if (rows < 1)
        rows = 1;
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
    long per_row = 9 * g.TX * (2 * g.K4 + g.Co), rows = W4_CHUNK_FLOATS / (per_row > 0 ? per_row : 1);
    if (rows < 1)
        rows = 1;
    if (rows < g.RC)
        rows = g.RC;
    if (rows > g.R)
        rows = g.R;
    return (size_t)(2 * 9 * g.Co * g.K4 + rows * per_row);
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

/* V[ξ][q·Ci + c][t] = (Bᵀ d B)[ξ] for the chunk's tiles t (tile rows row0 ..). */
static void transform_input(float *V, const float *x, const w4_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, K4 = g->K4, TX = g->TX, T = nrows * TX, st = g->st;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++)
        for (int q = 0; q < 4; q++) {
            const long ka = (q >> 1) * 2 / st, kb = (q & 1) * 2 / st;
            float *v = V + (q * Ci + c) * T;
            for (long lr = 0; lr < nrows; lr++) {
                const long R = row0 + lr, b = R / g->TY, ty = R % g->TY;
                const float *xc = x + (b * Ci + c) * g->H * g->W;
                for (long tx = 0; tx < TX; tx++) {
                    float d[3][3];
                    for (int m = 0; m < 3; m++) {
                        long r = 2 * st * ty + ka - g->pt + st * m;
                        for (int n = 0; n < 3; n++) {
                            long col = 2 * st * tx + kb - g->pl + st * n;
                            d[m][n] = r < 0 || r >= g->H || col < 0 || col >= g->W ? 0.0f : xc[r * g->W + col];
                        }
                    }
                    float e[3][3];
                    for (int n = 0; n < 3; n++) { /* Bᵀ over the rows */
                        e[0][n] = d[0][n] - d[1][n];
                        e[1][n] = d[1][n];
                        e[2][n] = d[2][n] - d[1][n];
                    }
                    const long t = lr * TX + tx;
                    for (int i = 0; i < 3; i++) { /* ... and the columns */
                        v[(3 * i + 0) * K4 * T + t] = e[i][0] - e[i][1];
                        v[(3 * i + 1) * K4 * T + t] = e[i][1];
                        v[(3 * i + 2) * K4 * T + t] = e[i][2] - e[i][1];
                    }
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
            for (long tx = 0; tx < TX; tx++) {
                const long t = lr * TX + tx;
                float m[3][3], e[2][3];
                for (int xi = 0; xi < 9; xi++)
                    m[xi / 3][xi % 3] = M[(xi * Co + o) * T + t];
                for (int j = 0; j < 3; j++) {
                    e[0][j] = m[0][j] + m[1][j];
                    e[1][j] = m[1][j] + m[2][j];
                }
                for (int i = 0; i < 2; i++) {
                    long oh = 2 * ty + i;
                    if (oh >= g->Ho)
                        continue;
                    float y0 = e[i][0] + e[i][1], y1 = e[i][1] + e[i][2];
                    oc[oh * g->Wo + 2 * tx] = y0 + bv;
                    if (2 * tx + 1 < g->Wo)
                        oc[oh * g->Wo + 2 * tx + 1] = y1 + bv;
                }
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
            for (long tx = 0; tx < TX; tx++) {
                float y[2][2];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        long oh = 2 * ty + i, ow = 2 * tx + j;
                        y[i][j] = oh < g->Ho && ow < g->Wo ? dc[oh * g->Wo + ow] : 0.0f;
                    }
                float e[3][2] = {{y[0][0], y[0][1]}, {y[0][0] + y[1][0], y[0][1] + y[1][1]}, {y[1][0], y[1][1]}};
                const long t = lr * TX + tx;
                for (int i = 0; i < 3; i++) {
                    P[((3 * i + 0) * Co + o) * T + t] = e[i][0];
                    P[((3 * i + 1) * Co + o) * T + t] = e[i][0] + e[i][1];
                    P[((3 * i + 2) * Co + o) * T + t] = e[i][1];
                }
            }
        }
}

/* dx += B dV Bᵀ at each sub-kernel's input patch (patches overlap; a thread
 * owns a channel, and each element gets its terms in a fixed order). */
static void add_input_gradient(float *dx, const float *dV, const w4_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, K4 = g->K4, TX = g->TX, T = nrows * TX, st = g->st;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++)
        for (int q = 0; q < 4; q++) {
            const long ka = (q >> 1) * 2 / st, kb = (q & 1) * 2 / st;
            const float *v = dV + (q * Ci + c) * T;
            for (long lr = 0; lr < nrows; lr++) {
                const long R = row0 + lr, b = R / g->TY, ty = R % g->TY;
                float *xc = dx + (b * Ci + c) * g->H * g->W;
                for (long tx = 0; tx < TX; tx++) {
                    const long t = lr * TX + tx;
                    float u[3][3], e[3][3];
                    for (int xi = 0; xi < 9; xi++)
                        u[xi / 3][xi % 3] = v[xi * K4 * T + t];
                    for (int j = 0; j < 3; j++) { /* B over the rows */
                        e[0][j] = u[0][j];
                        e[1][j] = u[1][j] - u[0][j] - u[2][j];
                        e[2][j] = u[2][j];
                    }
                    for (int m = 0; m < 3; m++) {
                        long r = 2 * st * ty + ka - g->pt + st * m;
                        if (r < 0 || r >= g->H)
                            continue;
                        float d[3] = {e[m][0], e[m][1] - e[m][0] - e[m][2], e[m][2]}; /* ... and the columns */
                        for (int n = 0; n < 3; n++) {
                            long col = 2 * st * tx + kb - g->pl + st * n;
                            if (col >= 0 && col < g->W)
                                xc[r * g->W + col] += d[n];
                        }
                    }
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
#pragma omp parallel if (work > W4_PAR_MIN)
    transform_weights(U, weight, &g);
    for (long row0 = 0; row0 < g.R; row0 += g.RC) {
        const long nrows = g.R - row0 < g.RC ? g.R - row0 : g.RC, T = nrows * g.TX;
        float *M = V + 9 * g.K4 * T;
#pragma omp parallel if (work > W4_PAR_MIN)
        transform_input(V, x, &g, row0, nrows);
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
                transform_input(V, x, &g, row0, nrows);
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
            add_input_gradient(dx, dV, &g, row0, nrows);
        }
    }
    if (dweight) {
#pragma omp parallel if (work > W4_PAR_MIN)
        add_weight_gradient(dweight, dU, &g);
    }
}
