"""Golden train-ldm steps (spec §6.4, train_ldm_only.py): SiT on cached
latents with its BatchNorm forced to eval, REPA on, all randomness given.

Writes tests/fixtures/train/ldm_steps.safetensors: init.sit.*, enc.* (frozen
encoder), step<s>.{images U8, labels, mean, std, eps_z, time, noise,
drop_mask}, step<s>.{loss, denoising_loss, proj_loss, grad_norm},
step0.grad.* (clipped gradients of the first step), final.sit.*, final.ema.*.

golden() is also called by irepa_ref.py for the same steps with iREPA's conv
projector and spatially normalised targets (train/ldm_steps_irepa).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402
from repae_ref.sit import SiT  # noqa: E402
from repae_ref.vit import DinoVisionTransformer  # noqa: E402

SEED = 31
STEPS = 2
B = 4
CFG = {
    "sit": dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, mlp_ratio=4.0,
                class_dropout_prob=0.1, num_classes=10, encoder_depth=1, projector_dim=32, z_dims=[24],
                qk_norm=False, bn_momentum=0.1),
    "enc": dict(img_size=16, patch_size=4, in_chans=1, embed_dim=24, depth=1, num_heads=2, mlp_ratio=4.0,
                init_values=1.0),
    "lr": 1e-4, "max_grad_norm": 1.0, "ema_decay": 0.9, "proj_coeff": 0.5, "path_type": "linear", "batch": B,
    "steps": STEPS, "enc_mean": 0.5, "enc_std": 0.5,
}


def spatial_zscore(x, alpha, eps=1e-6):
    """iREPA's spatial normalisation (ldm/utils.py): per image and channel over the tokens."""
    return (x - alpha * x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + eps)


def golden(name="ldm_steps", sit_extra=None, zscore_alpha=None, script=__file__):
    """Writes train/<name>; sit_extra: more SiT kwargs (iREPA's projector); zscore_alpha:
    None = raw targets, else iREPA's spatial z-score with this alpha."""
    cfg = dict(CFG, sit=dict(CFG["sit"], **(sit_extra or {})))
    if zscore_alpha is not None:
        cfg["spnorm_method"], cfg["zscore_alpha"] = "zscore", zscore_alpha
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    sit = SiT(**cfg["sit"])
    with torch.no_grad():  # perturb the zero-initialised parts so every path carries a signal
        for p in sit.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.02)
        sit.init_bn(torch.randn(4) * 0.3, torch.rand(4) + 0.5)
    enc = DinoVisionTransformer(**CFG["enc"]).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.2)
        enc.norm.weight.add_(1.0)
    for p in enc.parameters():
        p.requires_grad_(False)
    ema = SiT(**cfg["sit"])
    ema.load_state_dict(sit.state_dict())
    out = {}
    for prefix, m in (("init.sit.", sit), ("enc.", enc)):
        for k, v in m.state_dict().items():
            out[prefix + k] = v.clone()
    opt = torch.optim.AdamW([p for p in sit.parameters() if p.requires_grad], lr=CFG["lr"], betas=(0.9, 0.999),
                            eps=1e-8, weight_decay=0)
    for s in range(STEPS):
        images = torch.randint(0, 256, (B, 1, 16, 16), dtype=torch.uint8)
        labels = torch.randint(0, 10, (B,))
        mean, std = torch.randn(B, 4, 8, 8), torch.rand(B, 4, 8, 8) * 0.5 + 0.05
        eps_z, time, noise = torch.randn(B, 4, 8, 8), torch.rand(B), torch.randn(B, 4, 8, 8)
        drop = (torch.rand(B) < 0.3).long()
        out.update({f"step{s}.images": images, f"step{s}.labels": labels, f"step{s}.mean": mean, f"step{s}.std": std,
                    f"step{s}.eps_z": eps_z, f"step{s}.time": time, f"step{s}.noise": noise, f"step{s}.drop_mask": drop})
        with torch.no_grad():
            zs = [enc.forward_features((images.float() / 255 - 0.5) / 0.5)["x_norm_patchtokens"]]
            if zscore_alpha is not None:
                zs = [spatial_zscore(zs[0], zscore_alpha)]
        sit.train()
        sit.bn.eval()  # train_ldm_only.py: fixed latent normalisation
        z = mean + std * eps_z
        o = sit(z, labels, zs, time_input=time.view(B, 1, 1, 1), noises=noise, drop_mask=drop)
        loss = o["denoising_loss"].mean() + CFG["proj_coeff"] * o["proj_loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_([p for p in sit.parameters() if p.requires_grad], CFG["max_grad_norm"])
        if s == 0:
            for k, p in sit.named_parameters():
                if p.requires_grad:
                    out["step0.grad." + k] = p.grad.clone()
        opt.step()
        with torch.no_grad():
            es, st = ema.state_dict(), sit.state_dict()
            for k, v in st.items():
                if v.dtype.is_floating_point:
                    es[k].mul_(CFG["ema_decay"]).add_(v, alpha=1 - CFG["ema_decay"])
                else:
                    es[k].copy_(v)
        for k, v in {"loss": loss, "denoising_loss": o["denoising_loss"].mean(), "proj_loss": o["proj_loss"],
                     "grad_norm": gn}.items():
            out[f"step{s}.{k}"] = torch.as_tensor(v).detach().reshape(1).float()
    for prefix, m in (("final.sit.", sit), ("final.ema.", ema)):
        for k, v in m.state_dict().items():
            out[prefix + k] = v.clone()
    save_fixture("train/" + name, out, script, SEED, config=json.dumps(cfg))


if __name__ == "__main__":
    golden()
