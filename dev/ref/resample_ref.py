"""Fixtures for src/ops/resample.c (tests/test_resample.c).

  ops/upsample_nearest2x          F.interpolate(scale_factor=2, mode="nearest"): x, out, cot, grad.x
  ops/bicubic_down                F.interpolate(mode="bicubic", align_corners=False, antialias=False),
                                  32x32 -> 28x28 (the 256 -> 224 ratio of the encoder preprocessing)
  ops/bicubic_up                  same, 12x10 -> 20x17 (up in both axes, non-square)
  ops/bicubic_mixed               same, 11x16 -> 15x9 (up in H, down in W)
  ops/bicubic_aa_pos_embed        F.interpolate(mode="bicubic", antialias=True, align_corners=False),
                                  [1, 6, 37, 37] -> 16x16: DINOv2's position-table resample (timm
                                  resample_abs_pos_embed), on 6 of the 768 channels
  ops/bicubic_aa_up               antialias=True while upsampling, 8x9 -> 13x12 (support stays 2)
  ops/bicubic_aa_down_mild        antialias=True, 13x11 -> 9x7: scales 1.44 and 1.57, between 1 and 2,
                                  where the support (2·scale) and the kernel's stretch differ from both
                                  the upsampling case and the pos-embed one
  ops/bicubic_wide                antialias=False, 3x300 -> 2x1100: wider than one block of the C code's
                                  column-weight table (4096 entries / 4 taps = 1024 columns)
  ops/bicubic_aa_wide             antialias=True, 3x200 -> 2x900: 5 taps, blocks of 819 columns

The bicubic resizes run in float32 on purpose: PyTorch computes their weights
in float32, and that rounding is what the C code reproduces.
Metadata: H, W, H_out, W_out.

Run: /usr/bin/python3 dev/ref/resample_ref.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 4321


def report(path, out):
    print(f"{path}: out {list(out.shape)}, {os.path.getsize(path)} bytes")


def main():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    x = torch.randn(2, 3, 5, 6, generator=gen).requires_grad_()
    out = F.interpolate(x, scale_factor=2, mode="nearest")
    cot = torch.randn(out.shape, generator=gen)
    (out * cot).sum().backward()
    report(save_fixture("ops/upsample_nearest2x", {"x": x, "out": out, "cot": cot, "grad.x": x.grad}, __file__,
                        SEED, H=5, W=6, H_out=10, W_out=12), out)

    for name, shape, size, aa in [
        ("bicubic_down", (2, 3, 32, 32), (28, 28), False),
        ("bicubic_up", (1, 2, 12, 10), (20, 17), False),
        ("bicubic_mixed", (1, 2, 11, 16), (15, 9), False),
        ("bicubic_aa_pos_embed", (1, 6, 37, 37), (16, 16), True),
        ("bicubic_aa_up", (1, 2, 8, 9), (13, 12), True),
        ("bicubic_aa_down_mild", (1, 2, 13, 11), (9, 7), True),
        ("bicubic_wide", (1, 1, 3, 300), (2, 1100), False),
        ("bicubic_aa_wide", (1, 1, 3, 200), (2, 900), True),
    ]:
        x = torch.randn(*shape, generator=gen)
        out = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=aa)
        report(save_fixture("ops/" + name, {"x": x, "out": out}, __file__, SEED, H=shape[2], W=shape[3],
                            H_out=size[0], W_out=size[1], antialias=int(aa)), out)


if __name__ == "__main__":
    main()
