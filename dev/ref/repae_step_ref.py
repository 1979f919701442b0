"""Golden REPA-E training steps (spec §6.2), tiny models, all randomness given.

Mirrors the release's train_repae.py step order exactly:
  encoder targets (no grad) -> VAE forward -> SiT frozen + eval ->
  generator loss + 1.5 * alignment proj loss -> VAE backward, clip, AdamW ->
  discriminator hinge loss on the pre-update recon -> clip, AdamW ->
  SiT unfrozen + train -> SiT pass on z.detach() with the same t and noise ->
  mean(denoise) + 0.5 proj -> clip, AdamW -> EMA.
Note the release's requires_grad(model, True) re-enables grad on EVERY SiT
parameter, pos_embed included, so pos_embed is trained by the SiT optimiser
from the first step on (a quirk we reproduce; spec §4.2 calls it fixed).

Writes tests/fixtures/train/repae_steps.safetensors:
  init.vae.*, init.sit.*, init.disc.*  initial states; enc.* the frozen encoder;
  lpips.* the frozen LPIPS; step<s>.images (U8 [B,3,16,16]), step<s>.labels,
  step<s>.eps, step<s>.time [B], step<s>.noise, step<s>.drop_mask;
  step<s>.<logged scalar> (1-element tensors, the reference's log names);
  step0.grad.{vae,sit,disc}.* the clipped gradients of the first step;
  final.vae.*, final.sit.*, final.ema.*, final.disc.*.

golden(irepa=...) runs the same steps with iREPA's conv projector and spatially
normalised targets for irepa_ref.py (train/repae_steps_irepa): every other model
and all step data are identical to repae_steps (the conv SiT is drawn from a
forked generator, its non-projector weights copied), so that fixture holds only
init.sit.*, the step scalars, step0.grad.sit.*, final.sit.*, final.ema.*.

golden("repae_steps_e2e", e2e=True) writes train/repae_steps_e2e: the same
steps with `--e2e-diffusion-loss` (the frozen SiT's mean denoising loss, eval
mode, added to the VAE's loss); it holds the step scalars, step0.grad.vae.*
and final.vae.*, the rest being repae_steps'.
"""
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402
from repae_ref.sit import SiT  # noqa: E402
from repae_ref.vae import AutoencoderKL  # noqa: E402
from repae_ref.vae_loss import LPIPS, NLayerDiscriminator, discriminator_loss, generator_loss  # noqa: E402
from repae_ref.vit import DinoVisionTransformer  # noqa: E402

SEED = 21
STEPS = 3
B = 4
CFG = {
    "vae": dict(ch=16, ch_mult=[1, 2], num_res_blocks=1, z_channels=4, attn_resolutions=[], resolution=16,
                in_channels=3, out_ch=3, norm_groups=8),
    "sit": dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, mlp_ratio=4.0,
                class_dropout_prob=0.1, num_classes=10, encoder_depth=1, projector_dim=32, z_dims=[24],
                qk_norm=False, bn_momentum=0.1),
    "enc": dict(img_size=16, patch_size=4, in_chans=3, embed_dim=24, depth=1, num_heads=2, mlp_ratio=4.0,
                init_values=1.0),
    "disc": dict(input_nc=3, ndf=8, n_layers=2),
    "lpips_width_div": 16,
    "lr": 1e-4, "vae_lr": 1e-4, "disc_lr": 1e-4, "max_grad_norm": 1.0, "ema_decay": 0.9,
    "proj_coeff": 0.5, "vae_align_proj_coeff": 1.5, "kl_weight": 1e-6, "disc_weight": 0.1,
    "path_type": "linear", "batch": B, "steps": STEPS,
    "encoder_mean": [0.485, 0.456, 0.406], "encoder_std": [0.229, 0.224, 0.225],
}

def set_requires_grad(model, flag):
    for p in model.parameters():  # the release's utils.requires_grad: every parameter
        p.requires_grad = flag


def golden(name="repae_steps", irepa=None, script=__file__, e2e=False):
    """irepa: None, or dict(sit_extra=SiT kwargs of the conv projector, zscore_alpha=...).
    e2e: the VAE update also takes the diffusion loss (`--e2e-diffusion-loss`,
    the paper's naive end-to-end baseline): the frozen SiT's full pass in eval
    mode on the same t and noise, its mean denoising loss added to vae_loss."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    vae = AutoencoderKL(**CFG["vae"])
    sit = SiT(**CFG["sit"])
    enc = DinoVisionTransformer(**CFG["enc"]).eval()
    disc = NLayerDiscriminator(**CFG["disc"]).train()
    lpips = LPIPS(CFG["lpips_width_div"]).eval()
    with torch.no_grad():
        for p in enc.parameters():  # a non-trivial frozen encoder
            p.normal_(0, 0.2)
        enc.norm.weight.add_(1.0)
        for k in range(5):
            getattr(lpips, f"lin{k}").model[1].weight.uniform_(0.0, 0.2)
        sit.init_bn(torch.randn(4) * 0.3, torch.rand(4) + 0.5)
    for p in list(enc.parameters()) + list(lpips.parameters()):
        p.requires_grad_(False)
    ema = SiT(**CFG["sit"])
    ema.load_state_dict(sit.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    if irepa:
        with torch.random.fork_rng():
            torch.manual_seed(SEED + 1000)
            sit_i = SiT(**dict(CFG["sit"], **irepa["sit_extra"]))
        shared = {k: v for k, v in sit.state_dict().items() if not k.startswith("projectors.")}
        missing, unexpected = sit_i.load_state_dict(shared, strict=False)
        assert not unexpected and all(k.startswith("projectors.") for k in missing), (missing, unexpected)
        sit = sit_i
        ema = copy.deepcopy(sit)
        for p in ema.parameters():
            p.requires_grad_(False)

    out = {}
    for prefix, m in (("init.vae.", vae), ("init.sit.", sit), ("init.disc.", disc), ("enc.", enc), ("lpips.", lpips)):
        for k, v in m.state_dict().items():
            out[prefix + k] = v.clone()

    opt_sit = torch.optim.AdamW(sit.parameters(), lr=CFG["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    opt_vae = torch.optim.AdamW(vae.parameters(), lr=CFG["vae_lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    opt_disc = torch.optim.AdamW(disc.parameters(), lr=CFG["disc_lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    mean = torch.tensor(CFG["encoder_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(CFG["encoder_std"]).view(1, 3, 1, 1)


    for s in range(STEPS):
        images = torch.randint(0, 256, (B, 3, 16, 16), dtype=torch.uint8)
        labels = torch.randint(0, 10, (B,))
        eps = torch.randn(B, 4, 8, 8)
        time = torch.rand(B)
        noise = torch.randn(B, 4, 8, 8)
        drop = (torch.rand(B) < 0.3).long()
        out.update({f"step{s}.images": images, f"step{s}.labels": labels, f"step{s}.eps": eps, f"step{s}.time": time,
                    f"step{s}.noise": noise, f"step{s}.drop_mask": drop})
        with torch.no_grad():
            zs = [enc.forward_features(((images.float() / 255) - mean) / std)["x_norm_patchtokens"]]
            if irepa:  # iREPA's spatial z-score (ldm/utils.py): per image and channel over the tokens
                f = zs[0]
                zs = [(f - irepa["zscore_alpha"] * f.mean(dim=1, keepdim=True)) / (f.std(dim=1, keepdim=True) + 1e-6)]
        vae.train()
        sit.train()
        x = images.float() / 127.5 - 1
        posterior, z, recon = vae(x, eps=eps)
        set_requires_grad(sit, False)
        sit.eval()
        vae_loss, logs = generator_loss(x, recon, posterior.mean, posterior.logvar, disc, lpips,
                                        kl_weight=CFG["kl_weight"], disc_weight=CFG["disc_weight"])
        out_a = sit(z, labels, zs, time_input=time.view(B, 1, 1, 1), noises=noise, align_only=not e2e)
        vae_loss = vae_loss + CFG["vae_align_proj_coeff"] * out_a["proj_loss"]
        if e2e:
            vae_loss = vae_loss + out_a["denoising_loss"].mean()
        opt_vae.zero_grad(set_to_none=True)
        vae_loss.backward()
        gn_vae = torch.nn.utils.clip_grad_norm_(vae.parameters(), CFG["max_grad_norm"])
        if s == 0:  # the clipped gradients of the first step, before AdamW amplifies differences
            for k, p in vae.named_parameters():
                out["step0.grad.vae." + k] = p.grad.clone()
        opt_vae.step()
        d_loss, dlogs = discriminator_loss(x, recon, disc)
        opt_disc.zero_grad(set_to_none=True)
        d_loss.backward()
        gn_disc = torch.nn.utils.clip_grad_norm_(disc.parameters(), CFG["max_grad_norm"])
        if s == 0:
            for k, p in disc.named_parameters():
                out["step0.grad.disc." + k] = p.grad.clone()
        opt_disc.step()
        set_requires_grad(sit, True)
        sit.train()
        out_s = sit(z.detach(), labels, zs, time_input=out_a["time_input"], noises=out_a["noises"], drop_mask=drop)
        sit_loss = out_s["denoising_loss"].mean() + CFG["proj_coeff"] * out_s["proj_loss"]
        opt_sit.zero_grad(set_to_none=True)
        sit_loss.backward()
        gn_sit = torch.nn.utils.clip_grad_norm_(sit.parameters(), CFG["max_grad_norm"])
        if s == 0:
            for k, p in sit.named_parameters():
                out["step0.grad.sit." + k] = p.grad.clone()
        opt_sit.step()
        with torch.no_grad():  # EMA over parameters and floating buffers; counters copied
            ema_state, state = ema.state_dict(), sit.state_dict()
            for k, v in state.items():
                if v.dtype.is_floating_point:
                    ema_state[k].mul_(CFG["ema_decay"]).add_(v, alpha=1 - CFG["ema_decay"])
                else:
                    ema_state[k].copy_(v)
        scalars = {"sit_loss": sit_loss, "denoising_loss": out_s["denoising_loss"].mean(), "proj_loss": out_s["proj_loss"],
                   "grad_norm_sit": gn_sit, "vae_loss": vae_loss, "grad_norm_vae": gn_vae,
                   "vae_align_loss": out_a["proj_loss"], "d_loss": d_loss, "grad_norm_disc": gn_disc}
        scalars.update(logs)
        scalars.update(dlogs)
        for k, v in scalars.items():
            out[f"step{s}.{k}"] = torch.as_tensor(v).detach().reshape(1).float()
        print(f"step {s}: " + " ".join(f"{k}={float(v):.5f}" for k, v in scalars.items()))

    for prefix, m in (("final.vae.", vae), ("final.sit.", sit), ("final.ema.", ema), ("final.disc.", disc)):
        for k, v in m.state_dict().items():
            out[prefix + k] = v.clone()
    if e2e:  # the VAE side; everything else is train/repae_steps' (same seed, same draws)
        keep = ("step0.grad.vae.", "final.vae.")
        out = {k: v for k, v in out.items()
               if k.startswith(keep) or (k.startswith("step") and "." in k and k.split(".", 1)[1] in scalars)}
        save_fixture("train/" + name, out, script, SEED,
                     config=json.dumps(dict(CFG, e2e_diffusion_loss=True, shared_with="train/repae_steps")))
    elif irepa:
        keep = ("init.sit.", "step0.grad.sit.", "final.sit.", "final.ema.")
        out = {k: v for k, v in out.items()
               if k.startswith(keep) or (k.startswith("step") and "." in k and k.split(".", 1)[1] in scalars)}
        cfg = dict(CFG, sit=dict(CFG["sit"], **irepa["sit_extra"]), spnorm_method="zscore",
                   zscore_alpha=irepa["zscore_alpha"], shared_with="train/repae_steps")
        save_fixture("train/" + name, out, script, SEED, config=json.dumps(cfg))
    else:
        save_fixture("train/" + name, out, script, SEED, config=json.dumps(CFG))


if __name__ == "__main__":
    golden()
    golden("repae_steps_e2e", e2e=True)
