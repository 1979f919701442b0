"""PyTorch reference for src/ops/norm.c: GroupNorm, LayerNorm and BatchNorm2d
(train and eval), each with and without affine parameters.

Inputs and parameters are float32 draws with a fixed seed (with channel
offsets, so a norm that forgot to subtract the mean would show); torch then
runs forward and backward in float64 on those values, so every stored output
and gradient is exact up to one float32 rounding.  Files
tests/fixtures/ops/<case>.safetensors hold x [B,C,H,W] or [N,D], weight/bias
(affine cases), running_mean/running_var (BatchNorm, values before the call),
cot, out, grad.x, grad.weight, grad.bias, and for train-mode BatchNorm the
updated stats as new.running_mean / new.running_var.  Metadata: eps, and G or
momentum where they apply.
"""
import torch
import torch.nn.functional as F

from fixture_io import save_fixture

SEED = 2024


def rand_x(shape, gen):
    # per-channel (dim 1) offsets and scales, like real activations
    C = shape[1]
    off = torch.randn(C, generator=gen) * 2
    sc = torch.rand(C, generator=gen) * 2 + 0.5
    view = [1, C] + [1] * (len(shape) - 2)
    return torch.randn(*shape, generator=gen) * sc.view(view) + off.view(view)


def affine_params(n, gen):
    return 1 + 0.5 * torch.randn(n, generator=gen), 0.5 * torch.randn(n, generator=gen)


def run(fn, x, params, cot):
    """fn(x, *params) in float64; returns out and grads for x and params."""
    xd = x.double().requires_grad_()
    pd = [p.double().requires_grad_() if p is not None else None for p in params]
    out = fn(xd, *pd)
    out.backward(cot.double())
    return out, xd.grad, [p.grad if p is not None else None for p in pd]


def save(name, x, weight, bias, extra_in, cot, out, gx, gparams, extra_out, **meta):
    t = {"x": x}
    if weight is not None:
        t["weight"], t["bias"] = weight, bias
    t.update(extra_in)
    t.update({"cot": cot, "out": out, "grad.x": gx})
    if weight is not None:
        t["grad.weight"], t["grad.bias"] = gparams
    t.update(extra_out)
    print(save_fixture(name, t, __file__, SEED, **meta))


def group_norm(name, B, C, H, W, G, affine, gen, eps=1e-6):
    x = rand_x((B, C, H, W), gen)
    weight, bias = affine_params(C, gen) if affine else (None, None)
    cot = torch.randn(B, C, H, W, generator=gen)
    out, gx, gp = run(lambda x, w, b: F.group_norm(x, G, w, b, eps), x, [weight, bias], cot)
    save(name, x, weight, bias, {}, cot, out, gx, gp, {}, G=G, eps=eps)


def layer_norm(name, N, D, affine, eps, gen):
    # each row (token) gets its own offset and scale
    x = torch.randn(N, D, generator=gen) * (torch.rand(N, 1, generator=gen) + 0.5) + torch.randn(N, 1, generator=gen) * 2
    weight, bias = affine_params(D, gen) if affine else (None, None)
    cot = torch.randn(N, D, generator=gen)
    out, gx, gp = run(lambda x, w, b: F.layer_norm(x, (D,), w, b, eps), x, [weight, bias], cot)
    save(name, x, weight, bias, {}, cot, out, gx, gp, {}, eps=eps)


def batch_norm(name, B, C, H, W, affine, training, eps, gen, momentum=0.1):
    x = rand_x((B, C, H, W), gen)
    weight, bias = affine_params(C, gen) if affine else (None, None)
    rm = torch.randn(C, generator=gen) * 0.5
    rv = torch.rand(C, generator=gen) + 0.5
    cot = torch.randn(B, C, H, W, generator=gen)
    rmd, rvd = rm.double(), rv.double()  # updated in place by the train-mode call
    out, gx, gp = run(lambda x, w, b: F.batch_norm(x, rmd, rvd, w, b, training, momentum, eps), x,
                      [weight, bias], cot)
    extra_out = {"new.running_mean": rmd, "new.running_var": rvd} if training else {}
    meta = {"eps": eps, "momentum": momentum} if training else {"eps": eps}
    save(name, x, weight, bias, {"running_mean": rm, "running_var": rv}, cot, out, gx, gp, extra_out, **meta)


def main():
    gen = torch.Generator().manual_seed(SEED)
    # VAE Normalize(c): 32 groups of 2 channels, eps 1e-6, affine
    group_norm("ops/group_norm", 2, 64, 5, 5, 32, True, gen)
    # 4 channels per group, odd spatial size, no affine
    group_norm("ops/group_norm_g4_noaffine", 3, 16, 7, 5, 4, False, gen)
    # SiT norm1/norm2/norm_final: no affine, eps 1e-6; qk-norm: affine, eps 1e-5
    layer_norm("ops/layer_norm", 12, 64, False, 1e-6, gen)
    layer_norm("ops/layer_norm_affine", 10, 48, True, 1e-5, gen)
    # PatchGAN: affine, eps 1e-5; SiT latents: no affine, eps 1e-4
    batch_norm("ops/batch_norm_train_affine", 4, 8, 6, 6, True, True, 1e-5, gen)
    batch_norm("ops/batch_norm_train", 4, 4, 8, 8, False, True, 1e-4, gen)
    batch_norm("ops/batch_norm_eval_affine", 3, 8, 5, 5, True, False, 1e-5, gen)
    batch_norm("ops/batch_norm_eval", 4, 4, 8, 8, False, False, 1e-4, gen)


if __name__ == "__main__":
    main()
