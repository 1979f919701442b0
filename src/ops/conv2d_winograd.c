#include "ops/conv2d_winograd.h"

#include <string.h>

#include "ops/gemm.h"

/* Floats of per-chunk buffers (transformed tiles) to aim for: 16 MB, so a
 * chunk's V/M/P stay in this machine's L3 between transform and GEMM while
 * the GEMMs still get hundreds of columns. */
#ifndef WINO_CHUNK_FLOATS
#define WINO_CHUNK_FLOATS ((long)4 << 20)
#endif
#define WINO_MIN_TILES 64L

/* Tile geometry: output 2×2 blocks, TY × TX per image, R = B·TY tile rows
 * in the batch; chunks of RC whole tile rows (Tc = RC·TX tiles). */
typedef struct wino_geom {
    long Ci, Co, H, W, Ho, Wo, TY, TX, R, RC, Tc;
    int pt, pl;
} wino_geom;

static wino_geom make_geom(const conv2d_shape *s)
{
    wino_geom g;
    g.Ci = s->C_in;
    g.Co = s->C_out;
    g.H = s->H;
    g.W = s->W;
    g.Ho = conv2d_out_h(s);
    g.Wo = conv2d_out_w(s);
    g.TY = (g.Ho + 1) / 2;
    g.TX = (g.Wo + 1) / 2;
    g.R = (long)s->B * g.TY;
    g.pt = s->pad_top;
    g.pl = s->pad_left;
    /* Backward holds V (Ci), P (Co) and dV (Ci) for a chunk at once. */
    long per_tile = 16 * (2 * g.Ci + g.Co);
    long cap = WINO_CHUNK_FLOATS / per_tile;
    if (cap < WINO_MIN_TILES)
        cap = WINO_MIN_TILES;
    long rows = cap / g.TX > 0 ? cap / g.TX : 1;
    long n = (g.R + rows - 1) / rows; /* equal chunks */
    g.RC = n > 0 ? (g.R + n - 1) / n : 1;
    g.Tc = g.RC * g.TX;
    return g;
}

int conv2d_winograd_applies(const conv2d_shape *s)
{
    return s->kh == 3 && s->kw == 3 && s->stride == 1 && conv2d_out_h(s) > 0 && conv2d_out_w(s) > 0;
}

size_t conv2d_winograd_workspace_floats(const conv2d_shape *s)
{
    wino_geom g = make_geom(s);
    /* The chunk is sized for the most tile rows any batch up to s->B can
     * give: equal chunks make RC non-monotonic in B (8 images may split in
     * two chunks of 64 rows where 5 take one of 80), and a workspace planned
     * for the largest batch must serve every smaller one. */
    long per_tile = 16 * (2 * g.Ci + g.Co), cap = WINO_CHUNK_FLOATS / per_tile;
    if (cap < WINO_MIN_TILES)
        cap = WINO_MIN_TILES;
    long rows = cap / g.TX > 0 ? cap / g.TX : 1, max_rows = g.R < rows ? g.R : rows;
    if (max_rows < g.RC)
        max_rows = g.RC;
    /* U and dU, then the chunk buffers (forward uses V + M, backward V + P + dV). */
    long chunk = 16 * max_rows * g.TX * (g.Ci + (g.Ci > g.Co ? g.Ci : g.Co) + g.Co);
    return (size_t)(2 * 16 * g.Co * g.Ci + chunk);
}

/* ---- the three 1-D transforms, applied to columns then rows ---- */

/* G g Gᵀ: 3×3 → 4×4. */
static inline void weight_tile(float u[16], const float k[9])
{
    float r[12]; /* 4 rows × 3 */
    for (int j = 0; j < 3; j++) {
        r[0 + j] = k[j];
        r[3 + j] = 0.5f * (k[j] + k[3 + j] + k[6 + j]);
        r[6 + j] = 0.5f * (k[j] - k[3 + j] + k[6 + j]);
        r[9 + j] = k[6 + j];
    }
    for (int i = 0; i < 4; i++) {
        const float *a = r + 3 * i;
        u[4 * i + 0] = a[0];
        u[4 * i + 1] = 0.5f * (a[0] + a[1] + a[2]);
        u[4 * i + 2] = 0.5f * (a[0] - a[1] + a[2]);
        u[4 * i + 3] = a[2];
    }
}

/* Its adjoint Gᵀ du G: 4×4 → 3×3. */
static inline void weight_tile_adjoint(float k[9], const float u[16])
{
    float e[12]; /* 3 rows × 4 */
    for (int j = 0; j < 4; j++) {
        e[0 + j] = u[j] + 0.5f * (u[4 + j] + u[8 + j]);
        e[4 + j] = 0.5f * (u[4 + j] - u[8 + j]);
        e[8 + j] = 0.5f * (u[4 + j] + u[8 + j]) + u[12 + j];
    }
    for (int i = 0; i < 3; i++) {
        const float *a = e + 4 * i;
        k[3 * i + 0] = a[0] + 0.5f * (a[1] + a[2]);
        k[3 * i + 1] = 0.5f * (a[1] - a[2]);
        k[3 * i + 2] = 0.5f * (a[1] + a[2]) + a[3];
    }
}

/* ---- whole-tensor passes ---- */

/* U[ξ][o][c] from weight[o][c][3][3]. */
static void transform_weights(float *U, const float *w, const wino_geom *g)
{
    const long Co = g->Co, Ci = g->Ci;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long c = 0; c < Ci; c++) {
            float u[16];
            weight_tile(u, w + (o * Ci + c) * 9);
            for (int xi = 0; xi < 16; xi++)
                U[(xi * Co + o) * Ci + c] = u[xi];
        }
}

static void add_weight_gradient(float *dw, const float *dU, const wino_geom *g)
{
    const long Co = g->Co, Ci = g->Ci;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long c = 0; c < Ci; c++) {
            float u[16], k[9];
            for (int xi = 0; xi < 16; xi++)
                u[xi] = dU[(xi * Co + o) * Ci + c];
            weight_tile_adjoint(k, u);
            float *d = dw + (o * Ci + c) * 9;
            for (int i = 0; i < 9; i++)
                d[i] += k[i];
        }
}

/* The passes below walk a channel's tiles in segments of up to SEG tiles,
 * with the tile index n running along SIMD lanes.  A segment is a run of
 * consecutive tiles of the chunk (tile t = q·TX + tx): part of one tile row
 * when TX > SEG, else as many whole tile rows as fit, so that small maps
 * (8×8: 4 tiles per row) still fill the vectors.  Tiles overlap by two
 * columns; splitting the input columns into even and odd ones turns every
 * transform into whole-vector adds (tile n's columns 0..3 are even[n],
 * odd[n], even'[n], odd'[n], where the primed ones start one tile later).
 * Every tile gets the same arithmetic in the same order whatever the
 * segmentation, so results do not depend on it. */
#define SEG 64

/* One tile row's share of a segment: lanes off .. off+len-1 hold tiles
 * tx0 .. tx0+len-1 of tile row q. */
typedef struct wino_piece {
    long q, tx0, len, off;
} wino_piece;

/* The pieces of the segment that starts at chunk tile t0; returns the
 * segment's length in tiles. */
static long segment_pieces(wino_piece *pc, int *npc, long t0, long TX, long nrows)
{
    long q = t0 / TX, tx0 = t0 % TX;
    if (tx0 != 0 || TX > SEG) {
        long len = TX - tx0 < SEG ? TX - tx0 : SEG;
        pc[0] = (wino_piece){q, tx0, len, 0};
        *npc = 1;
        return len;
    }
    long rows = SEG / TX;
    if (rows > nrows - q)
        rows = nrows - q;
    for (long i = 0; i < rows; i++)
        pc[i] = (wino_piece){q + i, 0, TX, i * TX};
    *npc = (int)rows;
    return rows * TX;
}

/* Input columns base .. base+width-1 of row r (zero outside the image). */
static inline void load_padded(float *buf, const float *xc, const wino_geom *g, long r, long base, long width)
{
    long lo = base < 0 ? -base : 0, hi = g->W - base < width ? g->W - base : width;
    if (r < 0 || r >= g->H || hi <= lo) {
        memset(buf, 0, (size_t)width * sizeof(float));
        return;
    }
    if (lo > 0)
        memset(buf, 0, (size_t)lo * sizeof(float));
    memcpy(buf + lo, xc + r * g->W + base + lo, (size_t)(hi - lo) * sizeof(float));
    if (hi < width)
        memset(buf + hi, 0, (size_t)(width - hi) * sizeof(float));
}

/* Bᵀ over the rows of one input column family: t[k] from d[0..3]. */
static inline void input_rows(float t[4][SEG], float d[4][SEG], long len)
{
#pragma omp simd
    for (long n = 0; n < len; n++) {
        t[0][n] = d[0][n] - d[2][n];
        t[1][n] = d[1][n] + d[2][n];
        t[2][n] = d[2][n] - d[1][n];
        t[3][n] = d[1][n] - d[3][n];
    }
}

/* V[ξ][c][n] for the chunk's tile rows [row0, row0 + nrows). */
static void transform_input(float *V, const float *x, const wino_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, TX = g->TX, tc = nrows * TX;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++) {
        float buf[2 * SEG + 2];
        /* input columns 4 families (even, odd, even', odd') × 4 rows, then Bᵀ over the rows */
        float in[4][4][SEG], t[4][4][SEG];
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            for (int p = 0; p < npc; p++) {
                long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, n0 = pc[p].off, pl = pc[p].len;
                const float *xc = x + (b * Ci + c) * g->H * g->W;
                for (int i = 0; i < 4; i++) {
                    load_padded(buf, xc, g, 2 * ty - g->pt + i, 2 * pc[p].tx0 - g->pl, 2 * pl + 2);
#pragma omp simd
                    for (long n = 0; n < pl; n++) {
                        in[0][i][n0 + n] = buf[2 * n];
                        in[1][i][n0 + n] = buf[2 * n + 1];
                        in[2][i][n0 + n] = buf[2 * n + 2];
                        in[3][i][n0 + n] = buf[2 * n + 3];
                    }
                }
            }
            for (int f = 0; f < 4; f++)
                input_rows(t[f], in[f], len);
            float *dst = V + c * tc + t0;
            const long xs = Ci * tc; /* stride between ξ planes */
            for (int k = 0; k < 4; k++) {
                float *d0 = dst + (4 * k) * xs, *d1 = d0 + xs, *d2 = d1 + xs, *d3 = d2 + xs;
                const float *E = t[0][k], *O = t[1][k], *E1 = t[2][k], *O1 = t[3][k];
#pragma omp simd
                for (long n = 0; n < len; n++) { /* ... and B along the columns */
                    d0[n] = E[n] - E1[n];
                    d1[n] = O[n] + E1[n];
                    d2[n] = E1[n] - O[n];
                    d3[n] = O[n] - O1[n];
                }
            }
            t0 += len;
        }
    }
}

/* dx += overlap-add of B dV Bᵀ over the chunk's tiles (a thread owns a
 * channel, so overlapping tiles never race). */
static void add_input_gradient(float *dx, const float *dV, const wino_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, TX = g->TX, tc = nrows * TX;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++) {
        float w[16][SEG], col[4][4][SEG], acc[2 * SEG + 2];
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            const float *src = dV + c * tc + t0;
            const long xs = Ci * tc;
            for (int j = 0; j < 4; j++) { /* B over the rows (i) of column j */
                const float *v0 = src + j * xs, *v1 = v0 + 4 * xs, *v2 = v1 + 4 * xs, *v3 = v2 + 4 * xs;
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    w[0 + j][n] = v0[n];
                    w[4 + j][n] = v1[n] - v2[n] + v3[n];
                    w[8 + j][n] = -v0[n] + v1[n] + v2[n];
                    w[12 + j][n] = -v3[n];
                }
            }
            for (int k = 0; k < 4; k++) { /* ... Bᵀ along the columns: tile n's four input columns */
                const float *a0 = w[4 * k], *a1 = w[4 * k + 1], *a2 = w[4 * k + 2], *a3 = w[4 * k + 3];
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    col[k][0][n] = a0[n];
                    col[k][1][n] = a1[n] - a2[n] + a3[n];
                    col[k][2][n] = -a0[n] + a1[n] + a2[n];
                    col[k][3][n] = -a3[n];
                }
            }
            for (int p = 0; p < npc; p++) { /* overlap-add each tile row's tiles into its input rows */
                long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, n0 = pc[p].off, pl = pc[p].len;
                long base = 2 * pc[p].tx0 - g->pl;
                float *xc = dx + (b * Ci + c) * g->H * g->W;
                for (int k = 0; k < 4; k++) {
                    long r = 2 * ty - g->pt + k;
                    if (r < 0 || r >= g->H)
                        continue;
                    const float *c0 = col[k][0] + n0, *c1 = col[k][1] + n0, *c2 = col[k][2] + n0,
                                *c3 = col[k][3] + n0;
                    memset(acc, 0, (size_t)(2 * pl + 2) * sizeof(float));
#pragma omp simd
                    for (long n = 0; n < pl; n++) {
                        acc[2 * n] += c0[n];
                        acc[2 * n + 1] += c1[n];
                    }
#pragma omp simd
                    for (long n = 0; n < pl; n++) {
                        acc[2 * n + 2] += c2[n];
                        acc[2 * n + 3] += c3[n];
                    }
                    float *row = xc + r * g->W;
                    long lo = base < 0 ? -base : 0, hi = 2 * pl + 2;
                    if (base + hi > g->W)
                        hi = g->W - base;
                    for (long k2 = lo; k2 < hi; k2++)
                        row[base + k2] += acc[k2];
                }
            }
            t0 += len;
        }
    }
}

/* out[b][o] 2×2 blocks = Aᵀ M A (+ bias), cut at the output's edge. */
static void transform_output(float *out, const float *M, const float *bias, const wino_geom *g, long row0,
                             long nrows)
{
    const long Co = g->Co, TX = g->TX, tc = nrows * TX, HWo = g->Ho * g->Wo;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++) {
        const float bv = bias ? bias[o] : 0.0f;
        float s[8][SEG], line[2][2 * SEG];
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            const float *src = M + o * tc + t0;
            const long xs = Co * tc;
            for (int j = 0; j < 4; j++) { /* Aᵀ over the rows of column j */
                const float *m0 = src + j * xs, *m1 = m0 + 4 * xs, *m2 = m1 + 4 * xs, *m3 = m2 + 4 * xs;
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    s[j][n] = m0[n] + m1[n] + m2[n];
                    s[4 + j][n] = m1[n] - m2[n] - m3[n];
                }
            }
            for (int a = 0; a < 2; a++) { /* ... and A along the columns */
                const float *r0 = s[4 * a], *r1 = s[4 * a + 1], *r2 = s[4 * a + 2], *r3 = s[4 * a + 3];
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    line[a][2 * n] = r0[n] + r1[n] + r2[n] + bv;
                    line[a][2 * n + 1] = r1[n] - r2[n] - r3[n] + bv;
                }
            }
            for (int p = 0; p < npc; p++) {
                long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, tx0 = pc[p].tx0, pl = pc[p].len;
                float *oc = out + (b * Co + o) * HWo;
                long width = g->Wo - 2 * tx0 < 2 * pl ? g->Wo - 2 * tx0 : 2 * pl;
                for (int a = 0; a < 2; a++) {
                    long oh = 2 * ty + a;
                    if (oh >= g->Ho)
                        break;
                    memcpy(oc + oh * g->Wo + 2 * tx0, line[a] + 2 * pc[p].off, (size_t)width * sizeof(float));
                }
            }
            t0 += len;
        }
    }
}

/* P[ξ][o][n] = A dY Aᵀ of each tile's 2×2 output gradient (0 past the edge). */
static void transform_output_gradient(float *P, const float *dout, const wino_geom *g, long row0, long nrows)
{
    const long Co = g->Co, TX = g->TX, tc = nrows * TX, HWo = g->Ho * g->Wo;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++) {
        float line[2][2 * SEG], qa[4][SEG], qb[4][SEG];
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            for (int p = 0; p < npc; p++) {
                long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, tx0 = pc[p].tx0, pl = pc[p].len;
                const float *dc = dout + (b * Co + o) * HWo;
                long width = g->Wo - 2 * tx0 < 2 * pl ? g->Wo - 2 * tx0 : 2 * pl;
                for (int a = 0; a < 2; a++) {
                    long oh = 2 * ty + a;
                    float *l = line[a] + 2 * pc[p].off;
                    memset(l, 0, (size_t)(2 * pl) * sizeof(float));
                    if (oh < g->Ho)
                        memcpy(l, dc + oh * g->Wo + 2 * tx0, (size_t)width * sizeof(float));
                }
            }
            /* A over the rows: q_i = (dy_0· , dy_1·) combined; columns b = even/odd */
#pragma omp simd
            for (long n = 0; n < len; n++) {
                float y00 = line[0][2 * n], y01 = line[0][2 * n + 1];
                float y10 = line[1][2 * n], y11 = line[1][2 * n + 1];
                qa[0][n] = y00, qb[0][n] = y01;
                qa[1][n] = y00 + y10, qb[1][n] = y01 + y11;
                qa[2][n] = y00 - y10, qb[2][n] = y01 - y11;
                qa[3][n] = -y10, qb[3][n] = -y11;
            }
            float *dst = P + o * tc + t0;
            const long xs = Co * tc;
            for (int i = 0; i < 4; i++) { /* ... Aᵀ along the columns */
                float *p0 = dst + (4 * i) * xs, *p1 = p0 + xs, *p2 = p1 + xs, *p3 = p2 + xs;
                const float *A = qa[i], *B = qb[i];
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    p0[n] = A[n];
                    p1[n] = A[n] + B[n];
                    p2[n] = A[n] - B[n];
                    p3[n] = -B[n];
                }
            }
            t0 += len;
        }
    }
}

/* Below this many floats of work (channels × tiles) one conv runs on one
 * thread: the barriers would cost more than they save. */
#define WINO_PAR_MIN 2048L

/* The passes above are worksharing loops (`omp for`): each convolution runs
 * in ONE parallel region, the passes and the 16 GEMMs separated by barriers
 * only (a region per pass and chunk woke the threads 5 times per chunk). */
void conv2d_winograd_forward(float *out, const float *x, const float *weight, const float *bias,
                             const conv2d_shape *s, float *workspace)
{
    const wino_geom g = make_geom(s);
    const long Co = g.Co, Ci = g.Ci;
    float *U = workspace, *V = U + 2 * 16 * Co * Ci;
#pragma omp parallel if ((Ci + Co) * g.Tc > WINO_PAR_MIN)
    {
        transform_weights(U, weight, &g);
        for (long r0 = 0; r0 < g.R; r0 += g.RC) {
            long nr = g.R - r0 < g.RC ? g.R - r0 : g.RC, tc = nr * g.TX;
            float *M = V + 16 * Ci * tc;
            transform_input(V, x, &g, r0, nr);
            /* One GEMM per ξ per thread: OpenBLAS stays single-threaded inside. */
#pragma omp for schedule(static)
            for (int xi = 0; xi < 16; xi++)
                gemm(false, false, (int)Co, (int)tc, (int)Ci, 1.0f, U + xi * Co * Ci, (int)Ci, V + xi * Ci * tc,
                     (int)tc, 0.0f, M + xi * Co * tc, (int)tc);
            transform_output(out, M, bias, &g, r0, nr);
        }
    }
}

void conv2d_winograd_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                              const conv2d_shape *s, float *workspace)
{
    if (!dx && !dweight)
        return;
    const wino_geom g = make_geom(s);
    const long Co = g.Co, Ci = g.Ci;
    float *U = workspace, *dU = U + 16 * Co * Ci, *V = dU + 16 * Co * Ci;
    if (dweight)
        memset(dU, 0, (size_t)(16 * Co * Ci) * sizeof(float));
#pragma omp parallel if ((Ci + Co) * g.Tc > WINO_PAR_MIN)
    {
        if (dx)
            transform_weights(U, weight, &g);
        for (long r0 = 0; r0 < g.R; r0 += g.RC) {
            long nr = g.R - r0 < g.RC ? g.R - r0 : g.RC, tc = nr * g.TX;
            float *P = V + 16 * Ci * tc, *dV = P + 16 * Co * tc;
            transform_output_gradient(P, dout, &g, r0, nr);
            if (dweight)
                transform_input(V, x, &g, r0, nr);
#pragma omp for schedule(static)
            for (int xi = 0; xi < 16; xi++) {
                if (dweight)
                    gemm(false, true, (int)Co, (int)Ci, (int)tc, 1.0f, P + xi * Co * tc, (int)tc, V + xi * Ci * tc,
                         (int)tc, 1.0f, dU + xi * Co * Ci, (int)Ci);
                if (dx)
                    gemm(true, false, (int)Ci, (int)tc, (int)Co, 1.0f, U + xi * Co * Ci, (int)Ci, P + xi * Co * tc,
                         (int)tc, 0.0f, dV + xi * Ci * tc, (int)tc);
            }
            if (dx)
                add_input_gradient(dx, dV, &g, r0, nr);
        }
        if (dweight)
            add_weight_gradient(dweight, dU, &g);
    }
}
