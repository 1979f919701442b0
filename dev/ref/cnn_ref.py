"""CNN classifier fixture (src/models/cnn_classifier.h, dev/ref/repae_ref/cnn.py).

A tiny configuration (1 channel, widths 8,16 with 4 GroupNorm groups, 5 classes,
16x16 inputs, batch 3), with every parameter perturbed away from its init so that
the GroupNorm affines matter.  Writes tests/fixtures/models/cnn_tiny.safetensors:
  stages.* and head.* (the state dict), x [3,1,16,16], labels [3],
  features [3,16], logits [3,5], loss (cross-entropy of the logits, mean),
  cot.features [3,16] (a random cotangent of the features; the scalar whose
  gradients are stored is  loss + sum(features * cot.features)),
  grad.x and grad.<key> for every parameter.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402
from repae_ref.cnn import CNNClassifier  # noqa: E402

SEED = 23
torch.manual_seed(SEED)
torch.set_num_threads(1)
cfg = {"arch": "cnn", "in_chans": 1, "widths": [8, 16], "groups": 4, "num_classes": 5, "gn_eps": 1e-5}
m = CNNClassifier(cfg["in_chans"], cfg["widths"], cfg["groups"], cfg["num_classes"], cfg["gn_eps"])
with torch.no_grad():
    for k, p in m.named_parameters():
        if "norm" in k and k.endswith("weight"):
            p.normal_(1.0, 0.3)
        elif "norm" in k or k == "head.bias":
            p.normal_(0.0, 0.3)
out = {k: v.clone() for k, v in m.state_dict().items()}
B = 3
x = torch.randn(B, cfg["in_chans"], 16, 16, requires_grad=True)
labels = torch.tensor([1, 4, 0])
features, logits = m(x)
loss = F.cross_entropy(logits, labels)
cot = torch.randn_like(features)
(loss + (features * cot).sum()).backward()
out.update({"x": x.detach(), "labels": labels, "features": features.detach(), "logits": logits.detach(),
            "loss": loss.detach().reshape(1), "cot.features": cot, "grad.x": x.grad})
for k, p in m.named_parameters():
    out["grad." + k] = p.grad
# The parameter count of the default evaluation network (widths 32,64,128), for the C table.
n_default = sum(p.numel() for p in CNNClassifier(1, (32, 64, 128), 8, 10).parameters())
path = save_fixture("models/cnn_tiny", out, __file__, SEED, config=json.dumps(cfg),
                    param_count_32_64_128=n_default)
print(path, os.path.getsize(path), "bytes")
