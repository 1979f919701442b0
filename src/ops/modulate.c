#include "ops/modulate.h"

#include <stddef.h>

/* Column blocks for the backward reductions over tokens: threads split the
 * (sample, column block) pairs, so the Σ_t sums need no atomics. */
#define MOD_DBLK 128
/* Tensors smaller than this (B·T·D floats) run serially: a parallel region
 * would cost more than the work. */
#define MOD_PAR_MIN (1L << 15)

void modulate_forward(float *out, const float *x, const float *shift, const float *scale, int ld, int B, int T,
                      int D)
{
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * D >= MOD_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *sh = shift + (size_t)b * ld, *sc = scale + (size_t)b * ld;
            const float *xr = x + ((size_t)b * T + t) * D;
            float *o = out + ((size_t)b * T + t) * D;
#pragma omp simd
            for (int d = 0; d < D; d++)
                o[d] = xr[d] * (1.0f + sc[d]) + sh[d];
        }
}

void modulate_backward(float *dx, bool accumulate, float *dshift, float *dscale, int ld_d, const float *dout,
                       const float *x, const float *scale, int ld, int B, int T, int D)
{
    const int nblk = (D + MOD_DBLK - 1) / MOD_DBLK;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * D >= MOD_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int blk = 0; blk < nblk; blk++) {
            const int d0 = blk * MOD_DBLK, n = D - d0 < MOD_DBLK ? D - d0 : MOD_DBLK;
            const float *sc = scale + (size_t)b * ld + d0;
            double ssh[MOD_DBLK], ssc[MOD_DBLK];
            for (int d = 0; d < n; d++)
                ssh[d] = ssc[d] = 0.0;
            for (int t = 0; t < T; t++) {
                const size_t row = ((size_t)b * T + t) * D + d0;
                const float *g = dout + row, *xr = x + row;
                if (dx) {
                    float *dxr = dx + row;
                    if (accumulate)
#pragma omp simd
                        for (int d = 0; d < n; d++)
                            dxr[d] += g[d] * (1.0f + sc[d]);
                    else /* 0 + …: the bits of adding into a zeroed buffer, -0 included */
#pragma omp simd
                        for (int d = 0; d < n; d++)
                            dxr[d] = 0.0f + g[d] * (1.0f + sc[d]);
                }
#pragma omp simd
                for (int d = 0; d < n; d++) {
                    ssh[d] += g[d];
                    ssc[d] += (double)g[d] * xr[d];
                }
            }
            if (dshift)
                for (int d = 0; d < n; d++)
                    dshift[(size_t)b * ld_d + d0 + d] += (float)ssh[d];
            if (dscale)
                for (int d = 0; d < n; d++)
                    dscale[(size_t)b * ld_d + d0 + d] += (float)ssc[d];
        }
}

void gated_residual_forward(float *x, const float *h, const float *gate, int ld, int B, int T, int D)
{
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * D >= MOD_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *g = gate + (size_t)b * ld;
            const float *hr = h + ((size_t)b * T + t) * D;
            float *xr = x + ((size_t)b * T + t) * D;
#pragma omp simd
            for (int d = 0; d < D; d++)
                xr[d] += g[d] * hr[d];
        }
}

void gated_residual_backward(float *dh, bool accumulate, float *dgate, int ld_d, const float *dx, const float *h,
                             const float *gate, int ld, int B, int T, int D)
{
    const int nblk = (D + MOD_DBLK - 1) / MOD_DBLK;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * D >= MOD_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int blk = 0; blk < nblk; blk++) {
            const int d0 = blk * MOD_DBLK, n = D - d0 < MOD_DBLK ? D - d0 : MOD_DBLK;
            const float *g = gate + (size_t)b * ld + d0;
            double sg[MOD_DBLK];
            for (int d = 0; d < n; d++)
                sg[d] = 0.0;
            for (int t = 0; t < T; t++) {
                const size_t row = ((size_t)b * T + t) * D + d0;
                const float *dxr = dx + row, *hr = h + row;
                if (dh) {
                    float *dhr = dh + row;
                    if (accumulate)
#pragma omp simd
                        for (int d = 0; d < n; d++)
                            dhr[d] += dxr[d] * g[d];
                    else /* 0 + …: as into a zeroed buffer, -0 included */
#pragma omp simd
                        for (int d = 0; d < n; d++)
                            dhr[d] = 0.0f + dxr[d] * g[d];
                }
                if (dgate) {
#pragma omp simd
                    for (int d = 0; d < n; d++)
                        sg[d] += (double)dxr[d] * hr[d];
                }
            }
            if (dgate)
                for (int d = 0; d < n; d++)
                    dgate[(size_t)b * ld_d + d0 + d] += (float)sg[d];
        }
}
