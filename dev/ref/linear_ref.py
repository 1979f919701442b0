"""PyTorch reference for src/ops/linear.c: F.linear with and without bias.

Inputs and parameters are drawn in float32 with a fixed seed; torch then runs
forward and backward in float64 on those same values, so the stored out and
grad.* are the exact answers (rounded once to float32) and the C test measures
only its own error.  Writes tests/fixtures/ops/linear.safetensors and
ops/linear_nobias.safetensors with x, weight, [bias], cot, out, grad.x,
grad.weight, [grad.bias]; the sizes are the tensor shapes.
"""
import torch
import torch.nn.functional as F

from fixture_io import save_fixture

SEED = 1234


def case(name, N, IN, OUT, with_bias, gen):
    x = torch.randn(N, IN, generator=gen)
    weight = torch.randn(OUT, IN, generator=gen) / IN ** 0.5
    bias = torch.randn(OUT, generator=gen) if with_bias else None
    cot = torch.randn(N, OUT, generator=gen)

    xd = x.double().requires_grad_()
    wd = weight.double().requires_grad_()
    bd = bias.double().requires_grad_() if with_bias else None
    out = F.linear(xd, wd, bd)
    out.backward(cot.double())

    t = {"x": x, "weight": weight}
    if with_bias:
        t["bias"] = bias
    t.update({"cot": cot, "out": out, "grad.x": xd.grad, "grad.weight": wd.grad})
    if with_bias:
        t["grad.bias"] = bd.grad
    print(save_fixture(name, t, __file__, SEED, N=N, IN=IN, OUT=OUT))


def main():
    gen = torch.Generator().manual_seed(SEED)
    case("ops/linear", 24, 40, 48, True, gen)
    case("ops/linear_nobias", 7, 33, 17, False, gen)


if __name__ == "__main__":
    main()
