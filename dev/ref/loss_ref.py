"""PyTorch reference for src/ops/loss.c: writes tests/fixtures/ops/loss_*.safetensors.

Each fixture holds the inputs, the upstream gradient `cot` (a scalar, or [N]
for the per-sample MSE), the loss value `loss` and the gradient of
sum(loss * cot) for every input as grad.<input>.  The formulas follow the
REPA-E reference code (spec §2.4, §5, §7):
  * denoising loss   mean_flat((model_output - target) ** 2)             (models/sit.py)
  * REPA projection  -mean_t <F.normalize(z_tilde_j), F.normalize(z_j)>,
                     summed over samples and encoders, / (E * N)          (models/sit.py)
  * L1               F.l1_loss(inputs, reconstructions)                    (loss/losses.py)
  * KL               0.5 * sum_{c,h,w}(mean^2 + var - 1 - logvar), sum over batch / N
  * hinge            0.5 * (mean relu(1 - real) + mean relu(1 + fake)),  -mean(fake)
  * LeCam           compute_lecam_loss(mean(real), mean(fake), ema_real, ema_fake)
                     then ema <- ema * 0.999 + mean * (1 - 0.999)         (loss/losses.py)

Run with Debian's torch:  /usr/bin/python3 dev/ref/loss_ref.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 1234


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def mean_flat(x):
    return torch.mean(x, dim=list(range(1, len(x.size()))))


def grads(loss, cot, inputs):
    (loss * cot).sum().backward()
    return {"grad." + k: v.grad for k, v in inputs.items()}


def mse_fixture():
    N, C, H, W = 3, 4, 3, 5
    pred = leaf(torch.randn(N, C, H, W))
    target = leaf(torch.randn(N, C, H, W))
    cot = torch.randn(N)
    loss = mean_flat((pred - target) ** 2)
    g = grads(loss, cot, {"pred": pred, "target": target})
    save_fixture("ops/loss_mse", {"pred": pred, "target": target, "cot": cot, "loss": loss, **g},
                 __file__, SEED, N=N, M=C * H * W)


def l1_fixture():
    shape = (2, 3, 4, 5)
    a = torch.randn(shape)
    b = torch.randn(shape)
    # Ties: equal values (sign(0) = 0 in the gradient), including exact zeros.
    flat_a, flat_b = a.view(-1), b.view(-1)
    for i in (0, 7, 19, 64, 100):
        flat_b[i] = flat_a[i]
    flat_a[33] = flat_b[33] = 0.0
    a, b = leaf(a), leaf(b)
    cot = torch.tensor(0.7)
    loss = F.l1_loss(a, b, reduction="mean")
    g = grads(loss, cot, {"a": a, "b": b})
    save_fixture("ops/loss_l1", {"a": a, "b": b, "cot": cot, "loss": loss, **g}, __file__, SEED,
                 n=a.numel(), ties="0,7,19,33,64,100")


def repa_loss(zs_tilde, zs):
    """models/sit.py, REPA projection loss (F.normalize default eps 1e-12)."""
    proj_loss = 0.0
    bsz = zs[0].shape[0]
    for z, z_tilde in zip(zs, zs_tilde):
        for z_j, z_tilde_j in zip(z, z_tilde):
            z_tilde_j = F.normalize(z_tilde_j, dim=-1)
            z_j = F.normalize(z_j, dim=-1)
            proj_loss = proj_loss + mean_flat(-(z_j * z_tilde_j).sum(dim=-1))
    return proj_loss / (len(zs) * bsz)


def repa_fixture():
    # Two encoders with different feature sizes: the C side calls the loss
    # once per encoder with dloss / E and averages the forwards.
    N, T, dims = 3, 4, (6, 5)
    tensors, inputs = {}, {}
    zs_tilde, zs = [], []
    for e, D in enumerate(dims):
        zt = leaf(torch.randn(N, T, D) * 2.0)
        z = leaf(torch.randn(N, T, D) + 0.3)
        zs_tilde.append(zt)
        zs.append(z)
        inputs[f"zs_tilde.{e}"] = zt
        inputs[f"zs.{e}"] = z
    cot = torch.tensor(1.3)
    loss = repa_loss(zs_tilde, zs)
    g = grads(loss, cot, inputs)
    save_fixture("ops/loss_repa", {**inputs, "cot": cot, "loss": loss, **g}, __file__, SEED,
                 N=N, T=T, E=len(dims), Dz="6,5")


def repa_clamp_fixture():
    # Rows whose norm is below the 1e-12 clamp: F.normalize divides them by
    # 1e-12 and passes no gradient through the norm.
    N, T, D = 2, 3, 8
    zt = torch.randn(N, T, D)
    z = torch.randn(N, T, D)
    zt[0, 1] = torch.randn(D) * 1e-14   # tiny but nonzero: norm ~3e-14
    zt[1, 2] = 0.0                      # exactly zero
    z[1, 0] = torch.randn(D) * 2e-14    # tiny target
    zt[0, 2] = 0.0                      # both zero in one row
    z[0, 2] = 0.0
    zt[1, 1] = torch.randn(D) * 1e-10   # small but above the clamp
    zt, z = leaf(zt), leaf(z)
    cot = torch.tensor(0.9)
    loss = repa_loss([zt], [z])
    g = grads(loss, cot, {"zs_tilde": zt, "zs": z})
    save_fixture("ops/loss_repa_clamp", {"zs_tilde": zt, "zs": z, "cot": cot, "loss": loss, **g}, __file__, SEED,
                 N=N, T=T, Dz=D, clamped_rows="zs_tilde[0,1],zs_tilde[1,2],zs[1,0],both[0,2]")


def kl_fixture():
    N, C, H, W = 3, 4, 2, 3
    mean = leaf(torch.randn(N, C, H, W))
    logvar = leaf(torch.rand(N, C, H, W) * 5.0 - 3.0)
    cot = torch.tensor(-0.6)
    var = torch.exp(logvar)
    kl = 0.5 * torch.sum(torch.pow(mean, 2) + var - 1.0 - logvar, dim=[1, 2, 3])
    loss = torch.sum(kl) / kl.shape[0]
    g = grads(loss, cot, {"mean": mean, "logvar": logvar})
    save_fixture("ops/loss_kl", {"mean": mean, "logvar": logvar, "cot": cot, "loss": loss, **g}, __file__, SEED,
                 N=N, M=C * H * W)


def hinge_fixture():
    real = torch.randn(2, 1, 4, 4) * 1.5
    fake = torch.randn(3, 1, 4, 4) * 1.5
    # Exactly at the kinks: relu'(0) = 0 in torch.
    real.view(-1)[[3, 11]] = 1.0
    fake.view(-1)[[0, 20, 47]] = -1.0
    real, fake = leaf(real), leaf(fake)
    cot = torch.tensor(1.7)
    loss = 0.5 * (torch.mean(F.relu(1.0 - real)) + torch.mean(F.relu(1.0 + fake)))
    g = grads(loss, cot, {"logits_real": real, "logits_fake": fake})
    save_fixture("ops/loss_hinge_d", {"logits_real": real, "logits_fake": fake, "cot": cot, "loss": loss, **g},
                 __file__, SEED, n_real=real.numel(), n_fake=fake.numel())

    fake = leaf(torch.randn(2, 1, 5, 5))
    cot = torch.tensor(0.8)
    loss = -torch.mean(fake)
    g = grads(loss, cot, {"logits_fake": fake})
    save_fixture("ops/loss_hinge_g", {"logits_fake": fake, "cot": cot, "loss": loss, **g}, __file__, SEED,
                 n=fake.numel())


def compute_lecam_loss(logits_real_mean, logits_fake_mean, ema_logits_real_mean, ema_logits_fake_mean):
    """loss/losses.py (from TiTok / bytedance 1d-tokenizer)."""
    lecam_loss = torch.mean(torch.pow(F.relu(logits_real_mean - ema_logits_fake_mean), 2))
    lecam_loss += torch.mean(torch.pow(F.relu(ema_logits_real_mean - logits_fake_mean), 2))
    return lecam_loss


def lecam_fixture(name, real_shift, fake_shift, ema_real, ema_fake):
    decay = 0.999
    real = leaf(torch.randn(2, 1, 3, 3) + real_shift)
    fake = leaf(torch.randn(3, 1, 3, 3) + fake_shift)
    ema_r = torch.tensor([ema_real])
    ema_f = torch.tensor([ema_fake])
    cot = torch.tensor(1.1)
    loss = compute_lecam_loss(torch.mean(real), torch.mean(fake), ema_r, ema_f)
    g = grads(loss, cot, {"logits_real": real, "logits_fake": fake})
    ema_r_next = ema_r * decay + torch.mean(real).detach() * (1 - decay)
    ema_f_next = ema_f * decay + torch.mean(fake).detach() * (1 - decay)
    save_fixture(name, {"logits_real": real, "logits_fake": fake, "ema_real": ema_r, "ema_fake": ema_f, "cot": cot,
                        "loss": loss, **g, "ema_real_next": ema_r_next, "ema_fake_next": ema_f_next},
                 __file__, SEED, n_real=real.numel(), n_fake=fake.numel(), decay=decay)


def main():
    torch.manual_seed(SEED)
    mse_fixture()
    l1_fixture()
    repa_fixture()
    repa_clamp_fixture()
    kl_fixture()
    hinge_fixture()
    # Both terms active; then only the real term (ema_real below mean(fake)).
    lecam_fixture("ops/loss_lecam", real_shift=1.0, fake_shift=-1.0, ema_real=0.8, ema_fake=-0.7)
    lecam_fixture("ops/loss_lecam_half", real_shift=0.5, fake_shift=2.0, ema_real=-0.3, ema_fake=-0.2)
    # Only the fake term (mean(real) below ema_fake), and it below 1: a zero
    # gradient for real, and a hinge that a threshold of 1 would get wrong.
    lecam_fixture("ops/loss_lecam_real_off", real_shift=-2.0, fake_shift=0.4, ema_real=1.0, ema_fake=0.5)
    print("wrote tests/fixtures/ops/loss_*.safetensors")


if __name__ == "__main__":
    main()
