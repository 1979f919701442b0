#!/usr/bin/python3
"""PyTorch reference for the iREPA options (arXiv 2512.10794, code End2End-Diffusion/iREPA):
writes tests/fixtures/ops/spatial_norm.safetensors and
tests/fixtures/models/sit_tiny_irepa.safetensors.

What iREPA's code defines (read in ldm/utils.py, jit/spnorm.py, ldm/models/sit.py,
ldm/train.py, ldm/configs/irepa.yaml; restated here, not copied):
  * spatial normalisation (--spnorm-method zscore) of the encoder's patch tokens
    x [B, T, D] (x_norm_patchtokens only; no cls / register token takes part):
    per image and channel, over the T tokens,
        out = (x - alpha * mean_T(x)) / (std_T(x) + eps),  std unbiased (torch's default),
    eps = 1e-6 outside the square root, alpha = --zscore-alpha (0.6 in ldm/train.py,
    0.8 in jit/main_jit.py); applied under no_grad before the REPA cosine loss.
  * conv projector (--projection-layer-type conv): nn.Conv2d(D, z_dim, k, stride 1,
    padding k // 2) on the token grid; torch's default Conv2d init (initialize_weights
    only touches nn.Linear); keys projectors.<e>.projection_layer.{weight,bias}.

Fixtures:
  ops/spatial_norm    x [3, 16, 8] -> out for alpha 0.6 (out_a06) and 1.0 (out_a10)
  train/ldm_steps_irepa  ldm_step_ref.py's two golden train-ldm steps with the conv
    projector (k 3) and the targets spatially normalised (alpha 0.6)
  train/repae_steps_irepa  repae_step_ref.py's three golden REPA-E steps with the conv
    projector in both SiT passes and normalised targets (models other than the SiT
    and all step data are those of train/repae_steps)
  models/sit_tiny_irepa  a tiny SiT with the conv projector (k = 3): the REPA-E SiT
    training pass (train BN, linear path, L = mean(denoise) + 0.5 proj) with every
    gradient, and the VAE-alignment pass (eval BN, align-only, cosine path, frozen,
    L = proj_loss, grad of x), as models_ref.py's sit_tiny, whose helpers it reuses.

Usage: /usr/bin/python3 dev/ref/irepa_ref.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402
import ldm_step_ref  # noqa: E402
import models_ref as M  # noqa: E402
import repae_step_ref  # noqa: E402
from repae_ref import sit as S  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def spatial_zscore(x, alpha, eps=1e-6):
    """iREPA's spatial z-score over the token axis (dim 1) of [B, T, D]."""
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True)
    return (x - alpha * mean) / (std + eps)


def spatial_norm_fixture(seed=4001):
    g = torch.Generator().manual_seed(seed)
    B, T, D = 3, 16, 8
    # channel offsets and scales so that the mean subtraction and the division both matter
    x = torch.randn(B, T, D, generator=g) * torch.linspace(0.3, 3.0, D) + torch.linspace(-2.0, 5.0, D)
    xd = x.double()
    out06 = spatial_zscore(xd, 0.6).float()
    out10 = spatial_zscore(xd, 1.0).float()
    # sanity: alpha 1 gives zero mean and unit (unbiased) std per image and channel
    o = spatial_zscore(xd, 1.0)
    assert o.mean(dim=1).abs().max() < 1e-12 and (o.std(dim=1) - 1).abs().max() < 1e-5
    dev = (spatial_zscore(x, 0.6) - out06).abs().max().item() / out06.abs().max().item()
    path = save_fixture("ops/spatial_norm", {"x": x, "out_a06": out06, "out_a10": out10}, __file__, seed,
                        B=B, T=T, D=D, eps=1e-6, fp32_vs_fp64="%.2g" % dev)
    print("  wrote %s (fp32 vs fp64 %.1e)" % (os.path.relpath(path), dev))


IREPA_TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2,
                  num_heads=2, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10,
                  encoder_depth=1, projector_dim=64, z_dims=[16], bn_momentum=0.1,
                  projection_layer_type="conv", proj_kwargs_kernel_size=3)


def sit_tiny_irepa_fixture(seed=4101):
    torch.manual_seed(seed)
    model = S.SiT(**IREPA_TINY, path_type="linear")
    C, hw, Z, T = IREPA_TINY["in_channels"], IREPA_TINY["input_size"], 16, 16
    model.init_bn(torch.randn(1, C, 1, 1) * 0.5, 1.0 / torch.empty(1, C, 1, 1).uniform_(0.6, 1.6))
    assert "projectors.0.projection_layer.weight" in model.state_dict()
    assert model.projectors[0].projection_layer.weight.shape == (Z, 32, 3, 3)
    M.perturb_(model, skip=("pos_embed",))
    tensors = M.state_tensors(model)
    devs = {}

    # train: REPA-E SiT pass
    g = torch.Generator().manual_seed(seed + 2)
    N = 4
    rm, rv = model.bn.running_mean, model.bn.running_var
    ins = {"x": torch.randn(N, C, hw, hw, generator=g) * rv.sqrt().view(1, C, 1, 1) * 1.3
           + rm.view(1, C, 1, 1) + 0.2,
           "y": torch.tensor([3, 9, 0, 5]),
           "drop_mask": torch.tensor([0, 1, 0, 0]),
           "time_input": torch.rand(N, 1, 1, 1, generator=g),
           "noises": torch.randn(N, C, hw, hw, generator=g),
           "zs.0": spatial_zscore(torch.randn(N, T, Z, generator=g) + 0.5, 0.6)}

    def fn_train(m, i):
        m.train()
        o = m(i["x"], i["y"], [i["zs.0"]], time_input=i["time_input"], noises=i["noises"],
              drop_mask=i["drop_mask"], path_type="linear")
        loss = o["denoising_loss"].mean() + 0.5 * o["proj_loss"]
        return ({"zs_tilde.0": o["zs_tilde"][0], "model_output": o["model_output"],
                 "denoising_loss": o["denoising_loss"], "proj_loss": o["proj_loss"], "loss": loss,
                 "bn.running_mean": m.bn.running_mean, "bn.running_var": m.bn.running_var,
                 "bn.num_batches_tracked": m.bn.num_batches_tracked}, loss, {})
    _, o, gr, dev = M.both(model, ins, ["x"], fn_train)
    tensors.update(M.f32(ins, "train."))
    tensors.update(M.f32(o, "train."))
    tensors.update(M.f32(gr, "train.grad."))
    devs.update({"train." + k: v for k, v in dev.items()})

    # align: the REPA-E VAE-alignment pass through the frozen SiT and its conv projector
    g = torch.Generator().manual_seed(seed + 3)
    ins_c = {"x": torch.randn(N, C, hw, hw, generator=g) * rv.sqrt().view(1, C, 1, 1) + rm.view(1, C, 1, 1),
             "y": torch.tensor([1, 2, 8, 4]),
             "time_input": torch.rand(N, 1, 1, 1, generator=g),
             "noises": torch.randn(N, C, hw, hw, generator=g),
             # raw encoder features (zs_raw.0) and their spatial z-score (alpha 0.6), the target
             "zs_raw.0": torch.randn(N, T, Z, generator=g) * 0.7 + 0.4}
    ins_c["zs.0"] = spatial_zscore(ins_c["zs_raw.0"].double(), 0.6).float()

    def fn_align(m, i):
        m.eval()
        m.requires_grad_(False)
        o = m(i["x"], i["y"], [i["zs.0"]], time_input=i["time_input"], noises=i["noises"],
              align_only=True, path_type="cosine")
        return {"zs_tilde.0": o["zs_tilde"][0], "proj_loss": o["proj_loss"]}, o["proj_loss"], {}
    _, o, gr, dev = M.both(model, ins_c, ["x"], fn_align)
    assert set(gr) == {"x"}
    tensors.update(M.f32(ins_c, "align."))
    tensors.update(M.f32(o, "align."))
    tensors.update(M.f32(gr, "align.grad."))
    devs.update({"align." + k: v for k, v in dev.items()})

    config = dict(model.config, cases={
        "train": "train mode; forward(x, y, [zs.0], time_input, noises, drop_mask), linear path; "
                 "L = mean(denoising_loss) + 0.5*proj_loss; grads of all trainable params and x",
        "align": "eval mode, align_only, cosine path, params frozen; L = proj_loss; grad of x only; "
                 "zs.0 = spatial z-score (alpha 0.6) of zs_raw.0"})
    path = save_fixture("models/sit_tiny_irepa", tensors, __file__, seed,
                        config=json.dumps(config, sort_keys=True),
                        fp32_vs_fp64=json.dumps(devs, sort_keys=True),
                        description="SiT tiny with iREPA's conv projector (k 3): REPA-E SiT pass "
                                    "and VAE-alignment pass")
    big = max([v for v in devs.values() if not isinstance(v, str)] or [0.0])
    print("  wrote %s (%.0f kB, max fp32-vs-fp64 rel dev %.1e)"
          % (os.path.relpath(path), os.path.getsize(path) / 1024, big))
    M.verify_readback("sit_tiny_irepa")


if __name__ == "__main__":
    spatial_norm_fixture()
    sit_tiny_irepa_fixture()
    ldm_step_ref.golden("ldm_steps_irepa", dict(projection_layer_type="conv", proj_kwargs_kernel_size=3), 0.6,
                        script=__file__)
    print("  wrote tests/fixtures/train/ldm_steps_irepa.safetensors")
    repae_step_ref.golden("repae_steps_irepa", irepa=dict(
        sit_extra=dict(projection_layer_type="conv", proj_kwargs_kernel_size=3), zscore_alpha=0.6), script=__file__)
    print("  wrote tests/fixtures/train/repae_steps_irepa.safetensors")
