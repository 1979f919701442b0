/* embed.h — SiT token plumbing: patchify / unpatchify, 2-D sin-cos position
 * embedding and the sinusoidal timestep embedding (spec §4.2).
 *
 * Patch embed = patchify + linear:  x [B,C,H,W] -> tokens [B,T,C·p·p] with
 * T = (H/p)·(W/p) in row-major grid order (token i·(W/p) + j for grid row i,
 * column j) and the inner index (c·p + a)·p + b for the pixel
 * (c, i·p + a, j·p + b) — the flattening of a conv weight [D,C,p,p], so the
 * conv with kernel = stride = p equals  tokens @ weight.view(D, C·p·p)ᵀ + bias.
 *
 * Unpatchify (final layer):  tokens [B,T,p·p·C] with inner index (a·p + b)·C + c
 * -> x [B,C,H,W] at pixel (c, i·p + a, j·p + b).  Note the different inner
 * order from patchify (channel last here, as in DiT's unpatchify).
 *
 * Both are permutations; the backwards ADD (+=) into their gradient buffer.
 * H and W must be multiples of p.
 */
#ifndef REPAE_EMBED_H
#define REPAE_EMBED_H

void patchify_forward(float *out, const float *x, int B, int C, int H, int W, int p);
void patchify_backward(float *dx, const float *dout, int B, int C, int H, int W, int p);

void unpatchify_forward(float *out, const float *tokens, int B, int C, int H, int W, int p);
void unpatchify_backward(float *dtokens, const float *dout, int B, int C, int H, int W, int p);

/* 2-D sin-cos position embedding (MAE / DiT get_2d_sincos_pos_embed), out
 * [G·G, D] for a G×G grid; token i·G + j (row i, column j).  With Q = D/4 and
 * ω_k = 10000^(−k/Q):  out[0:Q] = sin(j·ω), out[Q:2Q] = cos(j·ω),
 * out[2Q:3Q] = sin(i·ω), out[3Q:4Q] = cos(i·ω)  — the first half encodes the
 * COLUMN index.  Computed in double, stored as float.  D must be a multiple of 4. */
void pos_embed_2d_sincos(float *out, int D, int G);
/* Same for a gh×gw grid (gh rows, gw columns), out [gh·gw, D], token i·gw + j. */
void pos_embed_2d_sincos_hw(float *out, int D, int gh, int gw);

/* Sinusoidal timestep embedding (DiT/SiT TimestepEmbedder.timestep_embedding),
 * forward only:  half = dim/2,  f_k = exp(−ln(max_period)·k/half),
 * out[n, 0:half] = cos(t[n]·f), out[n, half:2·half] = sin(t[n]·f), and a zero
 * last column when dim is odd.  Computed in float like the PyTorch original.
 * SiT uses dim = 256, max_period = 10000 and the raw t in [0,1]. */
void timestep_embedding(float *out, const float *t, int N, int dim, float max_period);

#endif
