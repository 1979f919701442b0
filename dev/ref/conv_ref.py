"""Fixtures for src/ops/conv2d.c and src/ops/pool.c (tests/test_conv2d.c, tests/test_pool.c).

Writes tests/fixtures/ops/conv2d_<case>.safetensors for every convolution
configuration the models use, and ops/maxpool2x2*.safetensors.

Convolutions are computed in float64 (so the fixture is the exact answer up
to the final rounding to float32, and the C test's tolerance only has to
cover the C side's float32 accumulation), with torch.nn.functional.conv2d and
autograd.  Asymmetric padding (the VAE Downsample) is F.pad(x, (0, 1, 0, 1))
followed by an unpadded conv, exactly as the reference model does it.

Tensors: x, weight, bias (when the conv has one), out, cot (random output
cotangent), grad.x, grad.weight, grad.bias = gradients of sum(out * cot).
Metadata: B, C_in, H, W, C_out, k, stride, pad_top, pad_left, pad_bottom,
pad_right, has_bias.

Run: /usr/bin/python3 dev/ref/conv_ref.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 1234

# name: (B, C_in, H, W, C_out, k, stride, (pad_top, pad_left, pad_bottom, pad_right), bias)
CASES = {
    # VAE ResnetBlock / conv_in / conv_out / Upsample conv, LPIPS VGG convs
    "conv2d_3x3": (2, 5, 9, 7, 6, 3, 1, (1, 1, 1, 1), True),
    # VAE Downsample: pad right 1 and bottom 1 only, 3x3 stride 2 pad 0
    "conv2d_3x3_s2_down": (2, 4, 10, 10, 5, 3, 2, (0, 0, 1, 1), True),
    # VAE nin_shortcut, quant_conv, attention q/k/v/proj_out
    "conv2d_1x1": (2, 6, 5, 4, 3, 1, 1, (0, 0, 0, 0), True),
    # LPIPS lin layers: 1x1, C -> 1, no bias
    "conv2d_1x1_nobias": (2, 7, 4, 5, 1, 1, 1, (0, 0, 0, 0), False),
    # PatchGAN main.0 (bias) and main.2/5 (no bias): 4x4 stride 2 pad 1
    "conv2d_4x4_s2": (2, 3, 12, 12, 5, 4, 2, (1, 1, 1, 1), True),
    "conv2d_4x4_s2_nobias": (2, 4, 9, 8, 3, 4, 2, (1, 1, 1, 1), False),
    # PatchGAN main.8 (no bias) and main.11 (bias): 4x4 stride 1 pad 1
    "conv2d_4x4_s1_nobias": (2, 4, 7, 7, 3, 4, 1, (1, 1, 1, 1), False),
    "conv2d_4x4_s1": (2, 3, 6, 8, 2, 4, 1, (1, 1, 1, 1), True),
    # SiT x_embedder: kernel = stride = p = 2
    "conv2d_patch2": (2, 4, 8, 8, 6, 2, 2, (0, 0, 0, 0), True),
    # DINOv2 patch_embed analog: kernel = stride = 14 (forward under no-grad there)
    "conv2d_patch14": (2, 3, 28, 28, 4, 14, 14, (0, 0, 0, 0), True),
}


def conv_case(name, B, C_in, H, W, C_out, k, stride, pad, has_bias, gen):
    pt, pl, pb, pr = pad
    x = torch.randn(B, C_in, H, W, generator=gen, dtype=torch.float64)
    fan_in = C_in * k * k
    weight = torch.randn(C_out, C_in, k, k, generator=gen, dtype=torch.float64) / fan_in ** 0.5
    bias = torch.randn(C_out, generator=gen, dtype=torch.float64) if has_bias else None
    # Round the inputs to float32 first so that the C side sees exactly these values.
    x, weight = x.float().double().requires_grad_(), weight.float().double().requires_grad_()
    if bias is not None:
        bias = bias.float().double().requires_grad_()
    out = F.conv2d(F.pad(x, (pl, pr, pt, pb)), weight, bias, stride=stride)
    cot = torch.randn(out.shape, generator=gen, dtype=torch.float64).float().double()
    (out * cot).sum().backward()
    t = {"x": x, "weight": weight}
    if bias is not None:
        t["bias"] = bias
    t.update({"out": out, "cot": cot, "grad.x": x.grad, "grad.weight": weight.grad})
    if bias is not None:
        t["grad.bias"] = bias.grad
    path = save_fixture("ops/" + name, t, __file__, SEED, B=B, C_in=C_in, H=H, W=W, C_out=C_out, k=k,
                        stride=stride, pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr,
                        has_bias=int(has_bias))
    print(f"{path}: out {list(out.shape)}, {os.path.getsize(path)} bytes")


def maxpool_case(name, B, C, H, W, gen):
    # Small integers so that windows have ties (PyTorch sends the gradient to the first max).
    x = torch.randint(-3, 4, (B, C, H, W), generator=gen).float().requires_grad_()
    out = F.max_pool2d(x, 2, 2)
    cot = torch.randn(out.shape, generator=gen)
    (out * cot).sum().backward()
    path = save_fixture("ops/" + name, {"x": x, "out": out, "cot": cot, "grad.x": x.grad}, __file__, SEED,
                        B=B, C=C, H=H, W=W)
    print(f"{path}: out {list(out.shape)}, {os.path.getsize(path)} bytes")


def main():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    for name, (B, C_in, H, W, C_out, k, stride, pad, has_bias) in CASES.items():
        conv_case(name, B, C_in, H, W, C_out, k, stride, pad, has_bias, gen)
    maxpool_case("maxpool2x2", 2, 3, 8, 10, gen)
    maxpool_case("maxpool2x2_odd", 2, 2, 7, 9, gen)
    # Added later, with its own generator so the cases above keep their values:
    # a 3x3 conv wide enough (C_in >= 8) for conv2d's automatic Winograd path.
    conv_case("conv2d_3x3_wide", 3, 16, 7, 9, 24, 3, 1, (1, 1, 1, 1), True, torch.Generator().manual_seed(SEED + 1))


if __name__ == "__main__":
    main()
