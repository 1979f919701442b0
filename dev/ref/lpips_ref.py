"""LPIPS (VGG16) fixture, written from spec §7.3 with a width divisor so the
random-weight network stays small (the structure and key names are the real
ones; real weights use width_div 1).

Writes tests/fixtures/models/lpips_tiny.safetensors: net.slice*.* and
lin*.model.1.weight (frozen weights), a and b [B,3,H,W] in [-1,1] (a = data,
b = reconstruction), dist [B] = LPIPS(a, b) per sample, and grad.b of
sum(dist * cot) with cot [B].
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
SLICE_ENDS = [4, 9, 16, 23, 30]  # torchvision feature indices ending each slice


class LPIPS(nn.Module):
    def __init__(self, width_div):
        super().__init__()
        layers, cin = [], 3
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = v // width_div
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=False)]
                cin = c
        self.net = nn.Module()
        start = 0
        widths = []
        for s, end in enumerate(SLICE_ENDS, 1):
            sl = nn.Sequential()
            for i in range(start, end):
                sl.add_module(str(i), layers[i])
            setattr(self.net, f"slice{s}", sl)
            widths.append([m for m in layers[start:end] if isinstance(m, nn.Conv2d)][-1].out_channels)
            start = end
        for k, c in enumerate(widths):
            lin = nn.Module()
            lin.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))
            setattr(self, f"lin{k}", lin)

    def forward(self, a, b):
        a = ((2 * a - 1) - SHIFT) / SCALE  # the reference's [-1,1] → 2x-1 quirk, then the scaling layer
        b = ((2 * b - 1) - SHIFT) / SCALE
        total = 0
        for k in range(5):
            sl = getattr(self.net, f"slice{k + 1}")
            a, b = sl(a), sl(b)
            na = a / (torch.sqrt((a * a).sum(1, keepdim=True)) + 1e-10)
            nb = b / (torch.sqrt((b * b).sum(1, keepdim=True)) + 1e-10)
            d = getattr(self, f"lin{k}").model((na - nb) ** 2)
            total = total + d.mean([2, 3], keepdim=True)
        return total.view(-1)


SEED = 5
torch.manual_seed(SEED)
torch.set_num_threads(1)
width_div = 16
m = LPIPS(width_div).eval()
with torch.no_grad():  # positive linear heads, as the trained ones are
    for k in range(5):
        w = getattr(m, f"lin{k}").model[1].weight
        w.uniform_(0.0, 0.2)
B, H, W = 2, 32, 32
a = torch.rand(B, 3, H, W) * 2 - 1
b = (a + 0.3 * torch.randn(B, 3, H, W)).clamp(-1.2, 1.2).requires_grad_(True)
dist = m(a, b)
cot = torch.randn(B)
dist.backward(cot)
out = {k: v.detach().clone() for k, v in m.state_dict().items()}
out.update({"a": a, "b": b.detach(), "dist": dist.detach(), "cot": cot, "grad.b": b.grad})
save_fixture("models/lpips_tiny", out, __file__, SEED, config=json.dumps({"width_div": width_div, "H": H, "W": W}))
