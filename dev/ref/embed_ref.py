"""Embedding / modulation parity fixtures for tests/test_embed.c and tests/test_modulate.c
(torch 1.13, CPU, fp32; position embeddings in float64 numpy as MAE/DiT do).

ops/patch_embed   x_embedder: conv k = stride = p, then flatten(2).transpose(1, 2) (row-major tokens)
ops/unpatchify    DiT/SiT unpatchify: reshape(N,h,w,p,p,c), einsum('nhwpqc->nchpwq')
ops/pos_embed     get_2d_sincos_pos_embed (MAE/DiT), grid = meshgrid(grid_w, grid_h), emb_h from grid[0]
ops/timestep      TimestepEmbedder.timestep_embedding (cos first, f_k = exp(-ln(max_period) k / half))
ops/modulate      modulate(x, shift, scale) = x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1) and the
                  gated residual resid + gate.unsqueeze(1) * h, with the six-way adaLN chunk of c6 [B, 6D]
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 4321


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.
    omega = 1. / 10000 ** omega
    pos = pos.reshape(-1)
    out = np.einsum('m,d->md', pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, gh, gw):
    grid_h = np.arange(gh, dtype=np.float32)
    grid_w = np.arange(gw, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, gh, gw])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def main():
    torch.manual_seed(SEED)

    # Patch embed (non-square image to pin the row-major token order).
    B, C, H, W, p, D = 2, 4, 8, 6, 2, 16
    x = torch.randn(B, C, H, W).requires_grad_(True)
    weight = (0.3 * torch.randn(D, C, p, p)).requires_grad_(True)
    bias = (0.1 * torch.randn(D)).requires_grad_(True)
    out = F.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)
    cot = torch.randn_like(out)
    (out * cot).sum().backward()
    save_fixture("ops/patch_embed", {"x": x, "proj.weight": weight, "proj.bias": bias, "out": out, "cot": cot,
                                     "grad.x": x.grad, "grad.proj.weight": weight.grad,
                                     "grad.proj.bias": bias.grad},
                 __file__, SEED, B=B, C=C, H=H, W=W, p=p, D=D)

    # Unpatchify (non-square grid h=3, w=4).
    N, c, h, w, p = 2, 3, 3, 4, 2
    tokens = torch.randn(N, h * w, p * p * c).requires_grad_(True)
    xx = tokens.reshape(N, h, w, p, p, c)
    xx = torch.einsum('nhwpqc->nchpwq', xx)
    out = xx.reshape(N, c, h * p, w * p)
    cot = torch.randn_like(out)
    (out * cot).sum().backward()
    save_fixture("ops/unpatchify", {"tokens": tokens, "out": out, "cot": cot, "grad.tokens": tokens.grad},
                 __file__, SEED, B=N, C=c, H=h * p, W=w * p, p=p)

    # 2-D sin-cos position embeddings (float64 -> float32).
    pe = torch.from_numpy(get_2d_sincos_pos_embed(64, 8, 8)).float()
    pe_hw = torch.from_numpy(get_2d_sincos_pos_embed(32, 3, 5)).float()
    pe_sit = torch.from_numpy(get_2d_sincos_pos_embed(1152, 16, 16)).float()[::37].contiguous()
    save_fixture("ops/pos_embed", {"pos_embed": pe, "pos_embed_hw": pe_hw, "pos_embed_sit_rows": pe_sit},
                 __file__, SEED, D=64, G=8, D_hw=32, gh=3, gw=5, D_sit=1152, G_sit=16, sit_row_step=37)

    # Timestep embeddings.
    t = torch.cat([torch.tensor([0.0, 1.0, 0.5]), torch.rand(5)])
    t_big = torch.tensor([3.7, 10.0, 250.0, 999.0])
    t_odd = torch.rand(3)
    save_fixture("ops/timestep", {"t": t, "emb": timestep_embedding(t, 256),
                                  "t_big": t_big, "emb_big": timestep_embedding(t_big, 256),
                                  "t_odd": t_odd, "emb_odd": timestep_embedding(t_odd, 33, max_period=100)},
                 __file__, SEED, dim=256, dim_odd=33, max_period_odd=100)

    # adaLN modulate + gated residual.
    B, T, D = 2, 5, 8
    c6 = torch.randn(B, 6 * D).requires_grad_(True)
    x = torch.randn(B, T, D).requires_grad_(True)
    h = torch.randn(B, T, D).requires_grad_(True)
    resid = torch.randn(B, T, D).requires_grad_(True)
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = c6.chunk(6, dim=1)
    mod = x * (1 + scale_mlp.unsqueeze(1)) + shift_mlp.unsqueeze(1)
    res = resid + gate_msa.unsqueeze(1) * h
    cot_mod, cot_res = torch.randn_like(mod), torch.randn_like(res)
    ((mod * cot_mod).sum() + (res * cot_res).sum()).backward()
    save_fixture("ops/modulate", {"c6": c6, "x": x, "h": h, "resid": resid, "mod": mod, "res": res,
                                  "cot.mod": cot_mod, "cot.res": cot_res, "grad.c6": c6.grad, "grad.x": x.grad,
                                  "grad.h": h.grad, "grad.resid": resid.grad},
                 __file__, SEED, B=B, T=T, D=D,
                 note="mod uses (shift_mlp, scale_mlp) = chunks 3, 4; res uses gate_msa = chunk 2")


if __name__ == "__main__":
    main()
