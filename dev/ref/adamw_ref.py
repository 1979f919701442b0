"""AdamW and gradient clipping fixture: torch.optim.AdamW (the reference's
optimiser) for a few steps on given gradients, with clip_grad_norm_ first.

Writes tests/fixtures/train/adamw.safetensors:
  p0.<k>       initial parameters (k = a, b)
  g<s>.<k>     the raw gradient fed at step s (before clipping)
  norm<s>      the pre-clip global norm returned by clip_grad_norm_ at step s
  p<s+1>.<k>   parameters after step s
  m.<k>, v.<k> the final exp_avg / exp_avg_sq
and tests/fixtures/train/adamw_wd.safetensors: the same with weight_decay 0.05
(train-encoder's default) and two gradient entries per tensor of 1e-8.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 7


def run(name, seed, weight_decay=0.0, tiny=False):
    """tiny: a few gradient entries of 1e-8, where eps decides the update."""
    torch.manual_seed(seed)
    shapes = {"a": (5, 3), "b": (4,)}
    params = {k: torch.nn.Parameter(torch.randn(s)) for k, s in shapes.items()}
    opt = torch.optim.AdamW(list(params.values()), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    out = {f"p0.{k}": p.detach().clone() for k, p in params.items()}
    steps = 4
    for s in range(steps):
        # Step 1 has a large gradient so the clip (max norm 1) is active; later ones are small.
        scale = 3.0 if s == 1 else 0.2
        for k, p in params.items():
            p.grad = torch.randn(p.shape) * scale
            if tiny:
                p.grad.view(-1)[:2] = 1e-8
            out[f"g{s}.{k}"] = p.grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        out[f"norm{s}"] = norm.reshape(1).float()
        opt.step()
        opt.zero_grad()
        for k, p in params.items():
            out[f"p{s + 1}.{k}"] = p.detach().clone()
    for k, p in params.items():
        st = opt.state[p]
        out[f"m.{k}"] = st["exp_avg"].clone()
        out[f"v.{k}"] = st["exp_avg_sq"].clone()
    save_fixture(name, out, __file__, seed, steps=steps, lr=1e-2, max_norm=1.0, weight_decay=weight_decay)


run("train/adamw", SEED)
# train-encoder's decoupled weight decay (0.05), and gradients small enough for eps to matter.
run("train/adamw_wd", SEED + 1, weight_decay=0.05, tiny=True)
