"""Attention parity fixtures for tests/test_attention.c (torch 1.13, CPU, fp32).

ops/attention      timm 1.0.11 Attention core (no qk-norm, no proj):
                   qkv [B,T,3D] -> reshape(B,T,3,NH,HD).permute(2,0,3,1,4),
                   attn = softmax(q @ k^T * HD^-0.5), out = (attn @ v).transpose(1,2).reshape(B,T,D)
                   with grad.qkv for the cotangent cot.
ops/attention_nh1  the VAE AttnBlock core (LDM/taming, spec 2.1) on NCHW q, k, v:
                   single head over L = H*W positions, scale C^-0.5; out NCHW.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 1234


def timm_attention(qkv, NH):
    B, T, D3 = qkv.shape
    D = D3 // 3
    HD = D // NH
    q, k, v = qkv.reshape(B, T, 3, NH, HD).permute(2, 0, 3, 1, 4).unbind(0)
    attn = (q * HD ** -0.5) @ k.transpose(-2, -1)
    attn = attn.softmax(dim=-1)
    x = attn @ v
    return x.transpose(1, 2).reshape(B, T, D), attn


def ldm_attention(q, k, v):
    b, c, h, w = q.shape
    q = q.reshape(b, c, h * w).permute(0, 2, 1)  # b,hw,c
    k = k.reshape(b, c, h * w)  # b,c,hw
    w_ = torch.bmm(q, k) * (int(c) ** (-0.5))
    w_ = torch.nn.functional.softmax(w_, dim=2)
    v = v.reshape(b, c, h * w)
    w_ = w_.permute(0, 2, 1)
    h_ = torch.bmm(v, w_)
    return h_.reshape(b, c, h, w), w_.permute(0, 2, 1)


def main():
    torch.manual_seed(SEED)
    B, T, NH, HD = 2, 7, 3, 8
    D = NH * HD
    qkv = torch.randn(B, T, 3 * D).requires_grad_(True)
    out, attn = timm_attention(qkv, NH)
    cot = torch.randn_like(out)
    (out * cot).sum().backward()
    save_fixture("ops/attention", {"qkv": qkv, "out": out, "attn": attn, "cot": cot, "grad.qkv": qkv.grad},
                 __file__, SEED, B=B, T=T, NH=NH, HD=HD)

    b, c, h, w = 2, 16, 3, 4
    q = torch.randn(b, c, h, w).requires_grad_(True)
    k = torch.randn(b, c, h, w).requires_grad_(True)
    v = torch.randn(b, c, h, w).requires_grad_(True)
    out, attn = ldm_attention(q, k, v)
    cot = torch.randn_like(out)
    (out * cot).sum().backward()
    save_fixture("ops/attention_nh1", {"q": q, "k": k, "v": v, "out": out, "attn": attn, "cot": cot,
                                       "grad.q": q.grad, "grad.k": k.grad, "grad.v": v.grad},
                 __file__, SEED, B=b, C=c, H=h, W=w)


if __name__ == "__main__":
    main()
