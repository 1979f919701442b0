"""PyTorch reference for src/ops/cross_entropy.c: writes
tests/fixtures/ops/cross_entropy.safetensors.

F.cross_entropy(logits, labels) (reduction "mean") on three cases:
  * `a`: N=7, K=10 ordinary logits (N(0, 2²));
  * `big`: N=4, K=5 logits of ±80..200 (float32 exp would overflow without the
    max shift; one row is a near-one-hot softmax);
  * `tie`: N=3, K=4 rows with equal logits (uniform softmax, argmax ties).
Each case holds logits, labels, the loss, the upstream scalar `cot`, the
gradient grad.logits of loss·cot, and argmax-correct counts as `correct`.

Run with Debian's torch:  /usr/bin/python3 dev/ref/cross_entropy_ref.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 4321


def case(logits, labels, prefix, out):
    x = logits.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(x, labels)
    cot = torch.randn(())
    (loss * cot).backward()
    out[prefix + ".logits"] = logits
    out[prefix + ".labels"] = labels
    out[prefix + ".loss"] = loss.detach().reshape(1)
    out[prefix + ".cot"] = cot.reshape(1)
    out[prefix + ".grad.logits"] = x.grad
    out[prefix + ".correct"] = (logits.argmax(1) == labels).sum().reshape(1)


def main():
    torch.manual_seed(SEED)
    out = {}
    case(torch.randn(7, 10) * 2, torch.randint(0, 10, (7,)), "a", out)
    big = torch.tensor([[200.0, -80.0, 150.0, 120.0, 90.0],
                        [-80.0, -90.0, -100.0, -85.0, -120.0],
                        [100.0, 100.5, 99.0, 98.0, 120.0],
                        [180.0, 80.0, 80.0, 80.0, 80.0]])
    case(big, torch.tensor([2, 0, 4, 1]), "big", out)
    tie = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 2.0, 2.0, -1.0], [3.0, 3.0, 0.0, 0.0]])
    case(tie, torch.tensor([0, 2, 1]), "tie", out)
    save_fixture("ops/cross_entropy", out, __file__, SEED)


if __name__ == "__main__":
    main()
