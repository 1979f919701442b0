"""PyTorch reference for src/ops/act.c: SiLU, GELU (tanh approximation and
exact erf), ReLU, LeakyReLU(0.2).

x mixes N(0, 3²) draws with edge values (exact zeros for the kinks, ±1e-3,
large magnitudes where exp/tanh saturate).  x and cot are float32; torch runs
in float64 on them, so out and grad.x are exact up to one float32 rounding.
One file per activation: tests/fixtures/ops/act_<name>.safetensors with x,
cot, out, grad.x (metadata `slope` for leaky_relu).
"""
import torch
import torch.nn.functional as F

from fixture_io import save_fixture

SEED = 4321

EDGES = [0.0, 0.0, -0.0, 1e-3, -1e-3, 0.5, -0.5, 4.0, -4.0, 10.0, -10.0, 20.0, -20.0, 40.0, -40.0, 90.0, -90.0]

ACTS = {
    "silu": (F.silu, {}),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), {}),
    "gelu_erf": (F.gelu, {}),
    "relu": (F.relu, {}),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), {"slope": 0.2}),
}


def main():
    gen = torch.Generator().manual_seed(SEED)
    for name, (fn, meta) in ACTS.items():
        x = torch.cat([torch.randn(495, generator=gen) * 3, torch.tensor(EDGES)])
        cot = torch.randn(x.numel(), generator=gen)
        xd = x.double().requires_grad_()
        out = fn(xd)
        out.backward(cot.double())
        t = {"x": x, "cot": cot, "out": out, "grad.x": xd.grad}
        print(save_fixture("ops/act_" + name, t, __file__, SEED, **meta))


if __name__ == "__main__":
    main()
