#include "ops/conv2d_winograd.h"

#include <string.h>

#include "ops/gemm.h"
#include "ops/im2col_permute.h"

/* Floats of per-chunk buffers (transformed tiles) to aim for: 16 MB, so a
 * chunk's V/M/P stay in this machine's L3 between transform and GEMM while
 * the GEMMs still get hundreds of columns. */
#ifndef WINO_CHUNK_FLOATS
#define WINO_CHUNK_FLOATS ((long)4 << 20)
#endif
#define WINO_MIN_TILES 64L

/* Tile geometry: output m×m blocks (m = 2 or 4) from (m+2)×(m+2) input
 * tiles, nx = (m+2)² transformed elements ξ per tile; TY × TX tiles per
 * image, R = B·TY tile rows in the batch; chunks of RC whole tile rows
 * (Tc = RC·TX tiles). */
typedef struct wino_geom {
    long Ci, Co, H, W, Ho, Wo, TY, TX, R, RC, Tc, m, nx;
    int pt, pl;
} wino_geom;

/* AUTO takes F(4×4,3×3) on outputs of at least CONV2D_WINOGRAD_F4_MIN_OUT
 * in both directions, F(2×2,3×3) below (conv2d_winograd.h says why). */
int conv2d_winograd_tile(const conv2d_shape *s)
{
    if (s->algo == CONV2D_WINOGRAD_F4)
        return 4;
    if (s->algo == CONV2D_AUTO && conv2d_out_h(s) >= CONV2D_WINOGRAD_F4_MIN_OUT &&
        conv2d_out_w(s) >= CONV2D_WINOGRAD_F4_MIN_OUT)
        return 4;
    return 2;
}

#ifndef WINO_U_CHUNK_RATIO
#define WINO_U_CHUNK_RATIO 2
#endif

/* The most tile rows a chunk may hold: its buffers (backward keeps V (Ci),
 * P (Co) and dV (Ci) per tile) stay around WINO_CHUNK_FLOATS, or around
 * WINO_U_CHUNK_RATIO times U where that is more.  Why U: every chunk
 * streams all of U (and, backward, reads and writes all of dU) from memory,
 * 36 MiB each at 512 channels, where 16 MB of buffers hold only 64 tiles
 * (8 passes over U at 64×64, batch 2).  Sized from U, a wide layer's chunk
 * leaves L3 but is written and read back once, and U's traffic is at most
 * about half the chunk's own: 512 channels at 64×64, batch 2, forward +
 * backward 1.25–1.3× faster (BENCHMARKS.md, session 26).  Narrower layers
 * keep the 16 MB chunks (F(4×4,3×3) below ~240 channels, F(2×2,3×3) below
 * ~360).  dU sums over tiles chunk by chunk, so a layer that takes fewer
 * chunks gives weight gradients that differ in the last bits. */
static long max_chunk_rows(const wino_geom *g)
{
    long budget = WINO_CHUNK_FLOATS, u = g->nx * g->Co * g->Ci;
    if (WINO_U_CHUNK_RATIO * u > budget)
        budget = WINO_U_CHUNK_RATIO * u;
    long cap = budget / (g->nx * (2 * g->Ci + g->Co));
    if (cap < WINO_MIN_TILES)
        cap = WINO_MIN_TILES;
    return cap / g->TX > 0 ? cap / g->TX : 1;
}

static wino_geom make_geom(const conv2d_shape *s)
{
    wino_geom g;
    g.m = conv2d_winograd_tile(s);
    g.nx = (g.m + 2) * (g.m + 2);
    g.Ci = s->C_in;
    g.Co = s->C_out;
    g.H = s->H;
    g.W = s->W;
    g.Ho = conv2d_out_h(s);
    g.Wo = conv2d_out_w(s);
    g.TY = (g.Ho + g.m - 1) / g.m;
    g.TX = (g.Wo + g.m - 1) / g.m;
    g.R = (long)s->B * g.TY;
    g.pt = s->pad_top;
    g.pl = s->pad_left;
    long rows = max_chunk_rows(&g);
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
    long rows = max_chunk_rows(&g), max_rows = g.R < rows ? g.R : rows;
    if (max_rows < g.RC)
        max_rows = g.RC;
    /* U and dU, then the chunk buffers (forward uses V + M, backward V + P + dV). */
    long chunk = g.nx * max_rows * g.TX * (g.Ci + (g.Ci > g.Co ? g.Ci : g.Co) + g.Co);
    return (size_t)(2 * g.nx * g.Co * g.Ci + chunk);
}

/* ---- the three 1-D transforms, applied to columns then rows ---- */

/* The weight transforms work on WBLK input channels at once, laid out
 * [tap][channel], so that every line below is a vector operation across
 * channels; each channel gets the same arithmetic in the same order as a
 * one-tile-at-a-time version would (the scalar version left -O2 code with
 * scalar divisions: 1.3 % of a training step). */
#define WBLK 64

/* G g Gᵀ: 3×3 → 4×4, for n channels: k[tap][c] → u[ξ][c]. */
static void weight_tiles(float u[16][WBLK], const float k[9][WBLK], long n)
{
    float r[12][WBLK]; /* 4 rows × 3 */
    for (int j = 0; j < 3; j++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            r[0 + j][c] = k[j][c];
            r[3 + j][c] = 0.5f * (k[j][c] + k[3 + j][c] + k[6 + j][c]);
            r[6 + j][c] = 0.5f * (k[j][c] - k[3 + j][c] + k[6 + j][c]);
            r[9 + j][c] = k[6 + j][c];
        }
    }
    for (int i = 0; i < 4; i++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            float a0 = r[3 * i][c], a1 = r[3 * i + 1][c], a2 = r[3 * i + 2][c];
            u[4 * i + 0][c] = a0;
            u[4 * i + 1][c] = 0.5f * (a0 + a1 + a2);
            u[4 * i + 2][c] = 0.5f * (a0 - a1 + a2);
            u[4 * i + 3][c] = a2;
        }
    }
}

/* Its adjoint Gᵀ du G: 4×4 → 3×3. */
static void weight_tiles_adjoint(float k[9][WBLK], const float u[16][WBLK], long n)
{
    float e[12][WBLK]; /* 3 rows × 4 */
    for (int j = 0; j < 4; j++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            e[0 + j][c] = u[j][c] + 0.5f * (u[4 + j][c] + u[8 + j][c]);
            e[4 + j][c] = 0.5f * (u[4 + j][c] - u[8 + j][c]);
            e[8 + j][c] = 0.5f * (u[4 + j][c] + u[8 + j][c]) + u[12 + j][c];
        }
    }
    for (int i = 0; i < 3; i++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            float a0 = e[4 * i][c], a1 = e[4 * i + 1][c], a2 = e[4 * i + 2][c], a3 = e[4 * i + 3][c];
            k[3 * i + 0][c] = a0 + 0.5f * (a1 + a2);
            k[3 * i + 1][c] = 0.5f * (a1 - a2);
            k[3 * i + 2][c] = 0.5f * (a1 + a2) + a3;
        }
    }
}

/* F(4×4,3×3), points 0, -1, 1, ½, -2 and ∞ (Barabasz et al., "Error
 * analysis and improving the accuracy of Winograd convolution", 2020: 0.4×
 * the error of the usual 0, ±1, ±2, ∞ in dev/ref/winograd_error_model.py).  The
 * matrices (rows of Bᵀ scaled to integers, A's ½-column by 8, both
 * compensated in G):
 *   Bᵀ = [ 2 -3 -4  3  2  0 ]   G = [   1/2     0     0  ]   Aᵀ = [ 1  1  1  8  1  0 ]
 *        [ 0  2 -5  1  2  0 ]       [  -1/6   1/6  -1/6 ]        [ 0 -1  1  4 -2  0 ]
 *        [ 0 -2  1  5  2  0 ]       [   1/6   1/6   1/6 ]        [ 0  1  1  2  4  0 ]
 *        [ 0 -2 -1  2  1  0 ]       [ -2/15 -1/15 -1/30 ]        [ 0 -1  1  1 -8  1 ]
 *        [ 0  1 -2 -1  2  0 ]       [  1/30 -1/15  2/15 ]
 *        [ 0  2 -3 -4  3  2 ]       [     0     0   1/2 ] */

/* G g Gᵀ for F(4×4,3×3): 3×3 → 6×6, for n channels. */
static void weight_tiles_f4(float u[36][WBLK], const float k[9][WBLK], long n)
{
    float r[18][WBLK]; /* 6 rows × 3 */
    for (int j = 0; j < 3; j++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            float g0 = k[j][c], g1 = k[3 + j][c], g2 = k[6 + j][c];
            r[0 + j][c] = g0 / 2;
            r[3 + j][c] = (-g0 + g1 - g2) / 6;
            r[6 + j][c] = (g0 + g1 + g2) / 6;
            r[9 + j][c] = (-2 * g0 - g1 - g2 / 2) / 15;
            r[12 + j][c] = (g0 - 2 * g1 + 4 * g2) / 30;
            r[15 + j][c] = g2 / 2;
        }
    }
    for (int i = 0; i < 6; i++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            float a0 = r[3 * i][c], a1 = r[3 * i + 1][c], a2 = r[3 * i + 2][c];
            u[6 * i + 0][c] = a0 / 2;
            u[6 * i + 1][c] = (-a0 + a1 - a2) / 6;
            u[6 * i + 2][c] = (a0 + a1 + a2) / 6;
            u[6 * i + 3][c] = (-2 * a0 - a1 - a2 / 2) / 15;
            u[6 * i + 4][c] = (a0 - 2 * a1 + 4 * a2) / 30;
            u[6 * i + 5][c] = a2 / 2;
        }
    }
}

/* Its adjoint Gᵀ du G: 6×6 → 3×3. */
static void weight_tiles_adjoint_f4(float k[9][WBLK], const float u[36][WBLK], long n)
{
    float e[18][WBLK]; /* 3 rows × 6 */
    for (int j = 0; j < 6; j++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            float u0 = u[j][c], u1 = u[6 + j][c], u2 = u[12 + j][c], u3 = u[18 + j][c], u4 = u[24 + j][c],
                  u5 = u[30 + j][c];
            e[0 + j][c] = u0 / 2 - u1 / 6 + u2 / 6 - 2 * u3 / 15 + u4 / 30;
            e[6 + j][c] = u1 / 6 + u2 / 6 - u3 / 15 - u4 / 15;
            e[12 + j][c] = -u1 / 6 + u2 / 6 - u3 / 30 + 2 * u4 / 15 + u5 / 2;
        }
    }
    for (int i = 0; i < 3; i++) {
#pragma omp simd
        for (long c = 0; c < n; c++) {
            float a0 = e[6 * i][c], a1 = e[6 * i + 1][c], a2 = e[6 * i + 2][c], a3 = e[6 * i + 3][c],
                  a4 = e[6 * i + 4][c], a5 = e[6 * i + 5][c];
            k[3 * i + 0][c] = a0 / 2 - a1 / 6 + a2 / 6 - 2 * a3 / 15 + a4 / 30;
            k[3 * i + 1][c] = a1 / 6 + a2 / 6 - a3 / 15 - a4 / 15;
            k[3 * i + 2][c] = -a1 / 6 + a2 / 6 - a3 / 30 + 2 * a4 / 15 + a5 / 2;
        }
    }
}

/* ---- whole-tensor passes ---- */

/* U[ξ][o][c] from weight[o][c][3][3].  Blocks of WBLK input channels are
 * transformed into a local buffer first, so that U is written in runs of
 * WBLK floats rather than one float per ξ plane (a stride of Co·Ci floats:
 * 8.5 % of a one-thread 128-channel 8×8 convolution went there, 4 % after;
 * the convolution took 6 % less, and no difference showed at 32×32). */
static void transform_weights(float *U, const float *w, const wino_geom *g)
{
    const long Co = g->Co, Ci = g->Ci, nx = g->nx;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long c0 = 0; c0 < Ci; c0 += WBLK) {
            long len = Ci - c0 < WBLK ? Ci - c0 : WBLK;
            float k[9][WBLK], blk[36][WBLK];
            for (long c = 0; c < len; c++)
                for (int t = 0; t < 9; t++)
                    k[t][c] = w[(o * Ci + c0 + c) * 9 + t];
            if (g->m == 4)
                weight_tiles_f4(blk, k, len);
            else
                weight_tiles(blk, k, len);
            for (int xi = 0; xi < nx; xi++)
                memcpy(U + (xi * Co + o) * Ci + c0, blk[xi], (size_t)len * sizeof(float));
        }
}

static void add_weight_gradient(float *dw, const float *dU, const wino_geom *g)
{
    const long Co = g->Co, Ci = g->Ci, nx = g->nx;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++)
        for (long c0 = 0; c0 < Ci; c0 += WBLK) {
            long len = Ci - c0 < WBLK ? Ci - c0 : WBLK;
            float blk[36][WBLK], k[9][WBLK];
            for (int xi = 0; xi < nx; xi++)
                memcpy(blk[xi], dU + (xi * Co + o) * Ci + c0, (size_t)len * sizeof(float));
            if (g->m == 4)
                weight_tiles_adjoint_f4(k, blk, len);
            else
                weight_tiles_adjoint(k, blk, len);
            for (long c = 0; c < len; c++) {
                float *d = dw + (o * Ci + c0 + c) * 9;
                for (int t = 0; t < 9; t++)
                    d[t] += k[t][c];
            }
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

/* One row of a segment's tiles into its m+2 column families: family f of
 * tile n is buf[m·n + f], written to d[f·(m+2)·SEG + n].  Inlined with a
 * constant m, the family loop unrolls and one pass over buf writes every
 * family (a pass per family was slower, session 7). */
static inline __attribute__((always_inline)) void split_families(float *d, const float *buf, long pl, const int m)
{
#pragma omp simd
    for (long n = 0; n < pl; n++)
#pragma GCC unroll 6
        for (int f = 0; f < m + 2; f++)
            d[f * (m + 2) * SEG + n] = buf[m * n + f];
}

/* The first m columns of a row of tiles, interleaved back: acc[m·n + f] =
 * col[f·SEG + n] (the adjoint of split_families for the columns a tile owns
 * alone); inlined with a constant m like it. */
static inline __attribute__((always_inline)) void join_own_columns(float *acc, const float *col, long pl, const int m)
{
#pragma omp simd
    for (long n = 0; n < pl; n++)
#pragma GCC unroll 4
        for (int f = 0; f < m; f++)
            acc[m * n + f] = col[f * SEG + n];
}

/* Small images (a plane of at most 64 floats, at most 16 tiles): the
 * (m+2)² rows of gather_tiles' `in` for all of an image's tiles come
 * straight from the plane held in registers, one permute each
 * (im2col_permute.h), instead of (m+2)·TY padded row copies (libc
 * memcpy/memset calls of ten floats on 8×8 maps) and family splits.  The
 * same values: bit-identical.  idx[f·(m+2) + i][ty·TX + tx] is the plane
 * offset of row i, column f of tile (ty, tx); valid marks those inside
 * the image. */
typedef struct tile_gather {
    int on;
    uint8_t idx[36][16];
    uint16_t valid[36];
    /* Rows of at most 64 floats (16×16 and 32×32 maps), one tile row at a
     * time: family f of a tile row's input row i is a permutation of that
     * row, row_idx[f][tx] its offset in the row (row_valid: inside the
     * image), in place of the row copy and the strided family split
     * (~3 % of a 64-channel 32×32 F(4×4) convolution, one thread), with a
     * prefetch of the rows the next tile row adds. */
    int rows_on;
    uint8_t row_idx[6][16];
    uint16_t row_valid[6];
} tile_gather;

static void tile_gather_make(tile_gather *tg, const wino_geom *g)
{
    const int m = (int)g->m, side = m + 2;
    memset(tg, 0, sizeof *tg);
    tg->rows_on = g->W <= IM2COL_PERMUTE_PLANE_MAX && g->TX <= 16 && im2col_permute_applies((int)g->W, 1, 1);
    if (tg->rows_on)
        for (int f = 0; f < side; f++)
            for (int tx = 0; tx < g->TX; tx++) {
                long col = m * tx + f - g->pl;
                if (col >= 0 && col < g->W) {
                    tg->row_idx[f][tx] = (uint8_t)col;
                    tg->row_valid[f] |= (uint16_t)(1u << tx);
                }
            }
    tg->on = g->H * g->W <= IM2COL_PERMUTE_PLANE_MAX && g->TY * g->TX <= 16 &&
             im2col_permute_applies((int)(g->H * g->W), 1, 1);
    if (!tg->on)
        return;
    for (int ty = 0; ty < g->TY; ty++)
        for (int f = 0; f < side; f++)
            for (int i = 0; i < side; i++)
                for (int tx = 0; tx < g->TX; tx++) {
                    long r = m * ty - g->pt + i, col = m * tx + f - g->pl;
                    int lane = (int)(ty * g->TX + tx);
                    if (r >= 0 && r < g->H && col >= 0 && col < g->W) {
                        tg->idx[f * side + i][lane] = (uint8_t)(r * g->W + col);
                        tg->valid[f * side + i] |= (uint16_t)(1u << lane);
                    }
                }
}

/* Whether pieces p .. p+TY-1 are one whole image (tile rows 0 .. TY-1 of
 * it, every tile, side by side in the segment). */
static int whole_image_at(const wino_piece *pc, int p, int npc, long row0, const wino_geom *g)
{
    if (p + g->TY > npc || (row0 + pc[p].q) % g->TY != 0)
        return 0;
    for (int k = 0; k < g->TY; k++)
        if (pc[p + k].q != pc[p].q + k || pc[p + k].tx0 != 0 || pc[p + k].len != g->TX ||
            pc[p + k].off != pc[p].off + k * g->TX)
            return 0;
    return 1;
}

/* The segment's (m+2)×(m+2) input tiles of channel c (m = 2 or 4, tiles m
 * apart), in column families: in[(f·(m+2) + i)·SEG + n] is row i, column f
 * of the segment's tile n (zero outside the image).  buf holds m·SEG + 2. */
/* (always inlined: a call kept m from being a constant, 10 % on F(4×4) forwards) */
static inline __attribute__((always_inline)) void gather_tiles(float *in, float *buf, const float *x,
                                                               const wino_geom *g, long c, const wino_piece *pc,
                                                               int npc, long row0, int m, const tile_gather *tg)
{
    const int side = m + 2;
    for (int p = 0; p < npc; p++) {
        long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, n0 = pc[p].off, pl = pc[p].len;
        const float *xc = x + (b * g->Ci + c) * g->H * g->W;
        if (tg->on && whole_image_at(pc, p, npc, row0, g)) {
            /* the plane two images on: images are Ci planes apart, a stride
             * the hardware prefetchers did not follow (the plane's loads
             * were 85 % of this gather) */
            for (long k = 0; k < g->H * g->W; k += 16)
                __builtin_prefetch(xc + 2 * g->Ci * g->H * g->W + k);
            float *dst[36];
            for (int r = 0; r < side * side; r++)
                dst[r] = in + r * SEG + n0;
            permute_gather_rows(dst, side * side, xc, (int)(g->H * g->W), tg->idx, tg->valid, (int)(g->TY * g->TX));
            p += (int)g->TY - 1;
            continue;
        }
        if (tg->rows_on && pc[p].tx0 == 0 && pl == g->TX) {
            /* the m rows the next tile row adds (a plane is read in short runs) */
            for (long r = m * ty - g->pt + side; r < m * ty - g->pt + side + m; r++)
                if (r < g->H)
                    for (long k = 0; k < g->W; k += 16)
                        __builtin_prefetch(xc + r * g->W + k);
            for (int i = 0; i < side; i++) {
                long r = m * ty - g->pt + i;
                float *dst[6];
                for (int f = 0; f < side; f++)
                    dst[f] = in + (f * side + i) * SEG + n0;
                if (r < 0 || r >= g->H) {
                    for (int f = 0; f < side; f++)
                        memset(dst[f], 0, (size_t)pl * sizeof(float));
                    continue;
                }
                permute_gather_rows(dst, side, xc + r * g->W, (int)g->W, tg->row_idx, tg->row_valid, (int)pl);
            }
            continue;
        }
        for (int i = 0; i < side; i++) {
            load_padded(buf, xc, g, m * ty - g->pt + i, m * pc[p].tx0 - g->pl, m * pl + 2);
            float *d = in + i * SEG + n0; /* family f at d + f·side·SEG */
            if (m == 2)
                split_families(d, buf, pl, 2);
            else
                split_families(d, buf, pl, 4);
        }
    }
}

/* V[ξ][c][n] for the chunk's tile rows [row0, row0 + nrows). */
static void transform_input(float *V, const float *x, const wino_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, TX = g->TX, tc = nrows * TX;
    tile_gather tg;
    tile_gather_make(&tg, g);
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++) {
        float buf[2 * SEG + 2];
        /* input columns 4 families (even, odd, even', odd') × 4 rows, then Bᵀ over the rows */
        float in[4][4][SEG], t[4][4][SEG];
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            gather_tiles(&in[0][0][0], buf, x, g, c, pc, npc, row0, 2, &tg);
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

/* row[base + k] += acc[k] for k < width, where 0 <= base + k < W (the
 * overlap-added tile columns of one input row, cut at the padding). */
static inline void add_clipped(float *row, const float *acc, long base, long width, long W)
{
    long lo = base < 0 ? -base : 0, hi = base + width > W ? W - base : width;
#pragma omp simd
    for (long k = lo; k < hi; k++)
        row[base + k] += acc[k];
}

/* The adjoint: dx of channel c += the segment's tiles overlap-added, from
 * col[(i·(m+2) + f)·SEG + n] (row i, column f of tile n).  Tiles overlap by
 * 2 columns and 2 rows; a thread owns a channel, so they never race.  acc
 * holds m·SEG + 2. */
static inline void scatter_tiles(float *dx, const float *col, float *acc, const wino_geom *g, long c,
                                 const wino_piece *pc, int npc, long row0, int m)
{
    const int side = m + 2;
    for (int p = 0; p < npc; p++) {
        long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, n0 = pc[p].off, pl = pc[p].len;
        long base = m * pc[p].tx0 - g->pl;
        float *xc = dx + (b * g->Ci + c) * g->H * g->W;
        for (int i = 0; i < side; i++) {
            long r = m * ty - g->pt + i;
            if (r < 0 || r >= g->H)
                continue;
            const float *cr = col + i * side * SEG + n0; /* column f at cr + f·SEG */
            /* the first m columns of each tile are its own ... */
            if (m == 2)
                join_own_columns(acc, cr, pl, 2);
            else
                join_own_columns(acc, cr, pl, 4);
            acc[m * pl] = acc[m * pl + 1] = 0.0f;
            const float *ca = cr + m * SEG, *cb = ca + SEG; /* ... the last 2 overlap the next tile's */
#pragma omp simd
            for (long n = 0; n < pl; n++) {
                acc[m * n + m] += ca[n];
                acc[m * n + m + 1] += cb[n];
            }
            add_clipped(xc + r * g->W, acc, base, m * pl + 2, g->W);
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
            scatter_tiles(dx, &col[0][0][0], acc, g, c, pc, npc, row0, 2);
            t0 += len;
        }
    }
}

/* The segment's m×m output blocks between the image and m rows of lines
 * (line a at lines + a·stride holds output row m·ty + a of the segment's
 * tiles side by side), cut at the output's edge.  `plane` is output
 * channel o of image 0; image b's is plane + b·Co·Ho·Wo. */
static void store_blocks(float *plane, const float *lines, long stride, const wino_piece *pc, int npc, long row0,
                         const wino_geom *g)
{
    const long m = g->m, HWo = g->Ho * g->Wo;
    for (int p = 0; p < npc; p++) {
        long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, tx0 = pc[p].tx0, pl = pc[p].len;
        float *oc = plane + b * g->Co * HWo;
        long width = g->Wo - m * tx0 < m * pl ? g->Wo - m * tx0 : m * pl;
        for (long a = 0; a < m; a++) {
            long oh = m * ty + a;
            if (oh >= g->Ho)
                break;
            memcpy(oc + oh * g->Wo + m * tx0, lines + a * stride + m * pc[p].off, (size_t)width * sizeof(float));
        }
    }
}

/* Its inverse for the output gradient: lines from the image, 0 past the edge. */
static void load_blocks(float *lines, long stride, const float *plane, const wino_piece *pc, int npc, long row0,
                        const wino_geom *g)
{
    const long m = g->m, HWo = g->Ho * g->Wo;
    for (int p = 0; p < npc; p++) {
        long R = row0 + pc[p].q, b = R / g->TY, ty = R % g->TY, tx0 = pc[p].tx0, pl = pc[p].len;
        const float *dc = plane + b * g->Co * HWo;
        long width = g->Wo - m * tx0 < m * pl ? g->Wo - m * tx0 : m * pl;
        for (long a = 0; a < m; a++) {
            long oh = m * ty + a;
            float *l = lines + a * stride + m * pc[p].off;
            if (oh >= g->Ho) { /* a row past the bottom edge */
                memset(l, 0, (size_t)(m * pl) * sizeof(float));
                continue;
            }
            memcpy(l, dc + oh * g->Wo + m * tx0, (size_t)width * sizeof(float));
            if (width < m * pl) /* past the right edge */
                memset(l + width, 0, (size_t)(m * pl - width) * sizeof(float));
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
            store_blocks(out + o * HWo, &line[0][0], 2 * SEG, pc, npc, row0, g);
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
            load_blocks(&line[0][0], 2 * SEG, dout + o * HWo, pc, npc, row0, g);
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

/* ---- F(4×4,3×3) passes: as the F(2×2,3×3) ones above, with six input
 * column families (tile n's columns 0..5 are input columns 4n .. 4n+5) ---- */

/* Bᵀ on six vectors: o = Bᵀ d, lane by lane. */
static inline void bt6(float *const o[6], const float *const d[6], long len)
{
    const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
    for (long n = 0; n < len; n++) {
        o0[n] = 2 * d0[n] - 3 * d1[n] - 4 * d2[n] + 3 * d3[n] + 2 * d4[n];
        o1[n] = 2 * d1[n] - 5 * d2[n] + d3[n] + 2 * d4[n];
        o2[n] = -2 * d1[n] + d2[n] + 5 * d3[n] + 2 * d4[n];
        o3[n] = -2 * d1[n] - d2[n] + 2 * d3[n] + d4[n];
        o4[n] = d1[n] - 2 * d2[n] - d3[n] + 2 * d4[n];
        o5[n] = 2 * d1[n] - 3 * d2[n] - 4 * d3[n] + 3 * d4[n] + 2 * d5[n];
    }
}

/* Its adjoint: o = B v. */
static inline void b6(float *const o[6], const float *const v[6], long len)
{
    const float *v0 = v[0], *v1 = v[1], *v2 = v[2], *v3 = v[3], *v4 = v[4], *v5 = v[5];
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
    for (long n = 0; n < len; n++) {
        o0[n] = 2 * v0[n];
        o1[n] = -3 * v0[n] + 2 * v1[n] - 2 * v2[n] - 2 * v3[n] + v4[n] + 2 * v5[n];
        o2[n] = -4 * v0[n] - 5 * v1[n] + v2[n] - v3[n] - 2 * v4[n] - 3 * v5[n];
        o3[n] = 3 * v0[n] + v1[n] + 5 * v2[n] + 2 * v3[n] - v4[n] - 4 * v5[n];
        o4[n] = 2 * v0[n] + 2 * v1[n] + 2 * v2[n] + v3[n] + 2 * v4[n] + 3 * v5[n];
        o5[n] = 2 * v5[n];
    }
}

/* Aᵀ on six vectors: four outputs. */
static inline void at6(float *const o[4], const float *const m[6], long len)
{
    const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3];
#pragma omp simd
    for (long n = 0; n < len; n++) {
        o0[n] = m0[n] + m1[n] + m2[n] + 8 * m3[n] + m4[n];
        o1[n] = -m1[n] + m2[n] + 4 * m3[n] - 2 * m4[n];
        o2[n] = m1[n] + m2[n] + 2 * m3[n] + 4 * m4[n];
        o3[n] = -m1[n] + m2[n] + m3[n] - 8 * m4[n] + m5[n];
    }
}

/* Its adjoint: six outputs o = A y from four. */
static inline void a6(float *const o[6], const float *const y[4], long len)
{
    const float *y0 = y[0], *y1 = y[1], *y2 = y[2], *y3 = y[3];
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
    for (long n = 0; n < len; n++) {
        o0[n] = y0[n];
        o1[n] = y0[n] - y1[n] + y2[n] - y3[n];
        o2[n] = y0[n] + y1[n] + y2[n] + y3[n];
        o3[n] = 8 * y0[n] + 4 * y1[n] + 2 * y2[n] + y3[n];
        o4[n] = y0[n] - 2 * y1[n] + 4 * y2[n] - 8 * y3[n];
        o5[n] = y3[n];
    }
}

static void transform_input_f4(float *V, const float *x, const wino_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, TX = g->TX, tc = nrows * TX, xs = Ci * tc;
    tile_gather tg;
    tile_gather_make(&tg, g);
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++) {
        float buf[4 * SEG + 2];
        float in[6][6][SEG], t[6][6][SEG]; /* [column family f][row i], then [f][Bᵀ row k] */
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            gather_tiles(&in[0][0][0], buf, x, g, c, pc, npc, row0, 4, &tg);
            for (int f = 0; f < 6; f++) { /* Bᵀ over the rows of each column family */
                float *o[6] = {t[f][0], t[f][1], t[f][2], t[f][3], t[f][4], t[f][5]};
                const float *d[6] = {in[f][0], in[f][1], in[f][2], in[f][3], in[f][4], in[f][5]};
                bt6(o, d, len);
            }
            float *dst = V + c * tc + t0;
            for (int k = 0; k < 6; k++) { /* ... and B along the columns into ξ = 6k + j */
                float *o[6];
                for (int j = 0; j < 6; j++)
                    o[j] = dst + (6 * k + j) * xs;
                const float *d[6] = {t[0][k], t[1][k], t[2][k], t[3][k], t[4][k], t[5][k]};
                bt6(o, d, len);
            }
            t0 += len;
        }
    }
}

/* dx += overlap-add of B dV Bᵀ (tiles overlap by two columns and rows). */
static void add_input_gradient_f4(float *dx, const float *dV, const wino_geom *g, long row0, long nrows)
{
    const long Ci = g->Ci, TX = g->TX, tc = nrows * TX, xs = Ci * tc;
#pragma omp for schedule(static)
    for (long c = 0; c < Ci; c++) {
        float w[6][6][SEG], col[6][6][SEG], acc[4 * SEG + 2]; /* w[row i][ξ column j], col[row i][column f] */
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            const float *src = dV + c * tc + t0;
            for (int j = 0; j < 6; j++) { /* B over the rows of column j */
                float *o[6] = {w[0][j], w[1][j], w[2][j], w[3][j], w[4][j], w[5][j]};
                const float *v[6];
                for (int k = 0; k < 6; k++)
                    v[k] = src + (6 * k + j) * xs;
                b6(o, v, len);
            }
            for (int i = 0; i < 6; i++) { /* ... Bᵀ along the columns */
                float *o[6] = {col[i][0], col[i][1], col[i][2], col[i][3], col[i][4], col[i][5]};
                const float *v[6] = {w[i][0], w[i][1], w[i][2], w[i][3], w[i][4], w[i][5]};
                b6(o, v, len);
            }
            scatter_tiles(dx, &col[0][0][0], acc, g, c, pc, npc, row0, 4);
            t0 += len;
        }
    }
}

/* out 4×4 blocks = Aᵀ M A (+ bias), cut at the output's edge. */
static void transform_output_f4(float *out, const float *M, const float *bias, const wino_geom *g, long row0,
                                long nrows)
{
    const long Co = g->Co, TX = g->TX, tc = nrows * TX, HWo = g->Ho * g->Wo, xs = Co * tc;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++) {
        const float bv = bias ? bias[o] : 0.0f;
        float s[4][6][SEG], r[4][SEG], line[4][4 * SEG];
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            const float *src = M + o * tc + t0;
            for (int j = 0; j < 6; j++) { /* Aᵀ over the rows of column j */
                float *dst[4] = {s[0][j], s[1][j], s[2][j], s[3][j]};
                const float *m[6];
                for (int k = 0; k < 6; k++)
                    m[k] = src + (6 * k + j) * xs;
                at6(dst, m, len);
            }
            for (int a = 0; a < 4; a++) { /* ... and A along the columns */
                float *dst[4] = {r[0], r[1], r[2], r[3]};
                const float *m[6] = {s[a][0], s[a][1], s[a][2], s[a][3], s[a][4], s[a][5]};
                at6(dst, m, len);
                float *l = line[a];
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    l[4 * n] = r[0][n] + bv;
                    l[4 * n + 1] = r[1][n] + bv;
                    l[4 * n + 2] = r[2][n] + bv;
                    l[4 * n + 3] = r[3][n] + bv;
                }
            }
            store_blocks(out + o * HWo, &line[0][0], 4 * SEG, pc, npc, row0, g);
            t0 += len;
        }
    }
}

/* P[ξ][o][n] = A dY Aᵀ of each tile's 4×4 output gradient (0 past the edge). */
static void transform_output_gradient_f4(float *P, const float *dout, const wino_geom *g, long row0, long nrows)
{
    const long Co = g->Co, TX = g->TX, tc = nrows * TX, HWo = g->Ho * g->Wo, xs = Co * tc;
#pragma omp for schedule(static)
    for (long o = 0; o < Co; o++) {
        float line[4][4 * SEG], y[4][4][SEG], q[6][4][SEG]; /* y[row a][column b], q[A row k][column b] */
        wino_piece pc[SEG];
        int npc;
        for (long t0 = 0; t0 < tc;) {
            long len = segment_pieces(pc, &npc, t0, TX, nrows);
            load_blocks(&line[0][0], 4 * SEG, dout + o * HWo, pc, npc, row0, g);
            for (int a = 0; a < 4; a++) {
                const float *l = line[a];
#pragma omp simd
                for (long n = 0; n < len; n++) {
                    y[a][0][n] = l[4 * n];
                    y[a][1][n] = l[4 * n + 1];
                    y[a][2][n] = l[4 * n + 2];
                    y[a][3][n] = l[4 * n + 3];
                }
            }
            for (int b = 0; b < 4; b++) { /* A over the rows of column b */
                float *dst[6] = {q[0][b], q[1][b], q[2][b], q[3][b], q[4][b], q[5][b]};
                const float *yy[4] = {y[0][b], y[1][b], y[2][b], y[3][b]};
                a6(dst, yy, len);
            }
            float *base = P + o * tc + t0;
            for (int k = 0; k < 6; k++) { /* ... Aᵀ along the columns into ξ = 6k + j */
                float *dst[6];
                for (int j = 0; j < 6; j++)
                    dst[j] = base + (6 * k + j) * xs;
                const float *yy[4] = {q[k][0], q[k][1], q[k][2], q[k][3]};
                a6(dst, yy, len);
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
    const long Co = g.Co, Ci = g.Ci, nx = g.nx;
    float *U = workspace, *V = U + 2 * nx * Co * Ci;
#pragma omp parallel if ((Ci + Co) * g.Tc > WINO_PAR_MIN)
    {
        transform_weights(U, weight, &g);
        for (long r0 = 0; r0 < g.R; r0 += g.RC) {
            long nr = g.R - r0 < g.RC ? g.R - r0 : g.RC, tc = nr * g.TX;
            float *M = V + nx * Ci * tc;
            if (g.m == 4)
                transform_input_f4(V, x, &g, r0, nr);
            else
                transform_input(V, x, &g, r0, nr);
            /* One GEMM per ξ per thread: OpenBLAS stays single-threaded inside. */
#pragma omp for schedule(static)
            for (int xi = 0; xi < nx; xi++)
                gemm(false, false, (int)Co, (int)tc, (int)Ci, 1.0f, U + xi * Co * Ci, (int)Ci, V + xi * Ci * tc,
                     (int)tc, 0.0f, M + xi * Co * tc, (int)tc);
            if (g.m == 4)
                transform_output_f4(out, M, bias, &g, r0, nr);
            else
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
    const long Co = g.Co, Ci = g.Ci, nx = g.nx;
    float *U = workspace, *dU = U + nx * Co * Ci, *V = dU + nx * Co * Ci;
    if (dweight)
        memset(dU, 0, (size_t)(nx * Co * Ci) * sizeof(float));
#pragma omp parallel if ((Ci + Co) * g.Tc > WINO_PAR_MIN)
    {
        if (dx)
            transform_weights(U, weight, &g);
        for (long r0 = 0; r0 < g.R; r0 += g.RC) {
            long nr = g.R - r0 < g.RC ? g.R - r0 : g.RC, tc = nr * g.TX;
            float *P = V + nx * Ci * tc, *dV = P + nx * Co * tc;
            if (g.m == 4)
                transform_output_gradient_f4(P, dout, &g, r0, nr);
            else
                transform_output_gradient(P, dout, &g, r0, nr);
            if (dweight) {
                if (g.m == 4)
                    transform_input_f4(V, x, &g, r0, nr);
                else
                    transform_input(V, x, &g, r0, nr);
            }
#pragma omp for schedule(static)
            for (int xi = 0; xi < nx; xi++) {
                if (dweight)
                    gemm(false, true, (int)Co, (int)Ci, (int)tc, 1.0f, P + xi * Co * tc, (int)tc, V + xi * Ci * tc,
                         (int)tc, 1.0f, dU + xi * Co * Ci, (int)Ci);
                if (dx)
                    gemm(true, false, (int)Ci, (int)tc, (int)Co, 1.0f, U + xi * Co * Ci, (int)Ci, P + xi * Co * tc,
                         (int)tc, 0.0f, dV + xi * Ci * tc, (int)tc);
            }
            if (dx) {
                if (g.m == 4)
                    add_input_gradient_f4(dx, dV, &g, r0, nr);
                else
                    add_input_gradient(dx, dV, &g, r0, nr);
            }
        }
        if (dweight)
            add_weight_gradient(dweight, dU, &g);
    }
}
