"""PatchGAN discriminator fixture (spec §7.4), written from the spec.

NLayerDiscriminator(input_nc, ndf, n_layers) with BatchNorm2d (affine, eps 1e-5,
momentum 0.1), run in TRAIN mode as REPA-E does (batch statistics, running
stats updated).  Writes tests/fixtures/models/disc_tiny.safetensors:
  main.* (state dict BEFORE the forward), x, logits, cot, grad.x,
  grad.<param key> for every trainable parameter, and after.<buffer key> for
  the running statistics after the forward.
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402
from repae_ref.vae_loss import NLayerDiscriminator  # noqa: E402


SEED = 11
torch.manual_seed(SEED)
torch.set_num_threads(1)
cfg = {"in_channels": 3, "ndf": 8, "n_layers": 3}
d = NLayerDiscriminator(cfg["in_channels"], cfg["ndf"], cfg["n_layers"]).train()
with torch.no_grad():  # non-trivial BN affine and running stats
    for m in d.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.normal_(1.0, 0.3)
            m.bias.normal_(0.0, 0.3)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
out = {k: v.clone() for k, v in d.state_dict().items()}
x = torch.randn(3, cfg["in_channels"], 32, 32, requires_grad=True)
logits = d(x)
cot = torch.randn_like(logits)
logits.backward(cot)
out.update({"x": x.detach(), "logits": logits.detach(), "cot": cot, "grad.x": x.grad})
for k, p in d.named_parameters():
    out["grad." + k] = p.grad
for k, v in d.state_dict().items():
    if "running" in k or "num_batches" in k:
        out["after." + k] = v.clone()
save_fixture("models/disc_tiny", out, __file__, SEED, config=json.dumps(cfg))
