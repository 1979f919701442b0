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
from repae_ref.vae_loss import LPIPS  # noqa: E402

SEED = 5
torch.manual_seed(SEED)
torch.set_num_threads(1)
width_div = 16
m = LPIPS(width_div).eval()
with torch.no_grad():  # positive linear heads, as the trained ones are
    for k in range(5):
        w = getattr(m, f"lin{k}").model[1].weight
        w.uniform_(0.0, 0.2)
B = 2


def run_case(H, W):
    """a (data), b (reconstruction), LPIPS(a, b) and its gradient w.r.t. b."""
    a = torch.rand(B, 3, H, W) * 2 - 1
    b = (a + 0.3 * torch.randn(B, 3, H, W)).clamp(-1.2, 1.2).requires_grad_(True)
    dist = m(a, b)
    cot = torch.randn(B)
    dist.backward(cot)
    return {"a": a, "b": b.detach(), "dist": dist.detach(), "cot": cot, "grad.b": b.grad}


out = {k: v.detach().clone() for k, v in m.state_dict().items()}
out.update(run_case(32, 32))
save_fixture("models/lpips_tiny", out, __file__, SEED, config=json.dumps({"width_div": width_div, "H": 32, "W": 32}))

# A second case at 40x24: the tap maps of 20x12 (240 positions), 10x6 (60)
# and 5x3 (15) end in a partial block of the C code's 64-position channel
# loops, which 32x32's powers of two never do.  Same network (its weights
# are in lpips_tiny, not written again), own inputs.
torch.manual_seed(SEED + 1)
save_fixture("models/lpips_tiny_40x24", run_case(40, 24), __file__, SEED + 1,
             config=json.dumps({"width_div": width_div, "H": 40, "W": 24}))
