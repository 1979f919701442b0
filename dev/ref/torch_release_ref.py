"""Fixtures in the layouts of the official REPA-E release and the external weights (spec §12), at tiny sizes,
written by torch 1.13 exactly as the real files are (torch.save of plain state dicts / dicts).

Writes tests/fixtures/io/release/:
  repae_args.json      the args.json that train_repae.py writes beside checkpoints/ for the run of
                       ../pt_checkpoint.pt (json.dump(vars(args))), so the test can build
                       exps/<name>/{args.json, checkpoints/0000002.pt} from the two files;
  ldm_ckpt.pt          a train_ldm_only.py checkpoint (spec §6.4): model, ema, opt (AdamW after one step),
                       args (argparse.Namespace, vae_ckpt naming pretrained/pt_vae/pt_vae.pt), steps; no vae;
  ldm_args.json        its args.json;
  pt_vae.pt            a save_vae_weights.py-style VAE file (spec §6.5): the bare VAE state dict.  Widths are
                       multiples of 32 because a bare state dict does not record GroupNorm groups and the real
                       files use 32 (ch 32, one level, so it stays small);
  pt_vae-latents-stats.pt           {latents_bias, latents_scale} [1, 4, 1, 1] (save_vae_weights.py's rule
                                    from ldm_ckpt's EMA BatchNorm);
  pt_vae-discriminator-ckpt.pt      a bare NLayerDiscriminator state dict (ndf 4, 1 layer);
  dinov2_tiny_pretrain.pth          a DINOv2 hub state dict (torch.hub facebookresearch/dinov2's key names:
                                    cls_token, pos_embed, mask_token [1, D], patch_embed.proj, blocks.N.{norm1,
                                    attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm),
                                    width 8, depth 1, 2 heads, a 4x4 patch grid (56 px) that the loader resamples;
  dinov2_tiny_reg4_pretrain.pth     the same with register_tokens [1, 4, D] (the _reg4 hub files);
  pt_inception_fid_layout.pth       pytorch-fid's pt_inception-2015-12-05-6726825d.pth layout: its key names
                                    and order (94 BasicConv2d units: conv.weight, bn.{weight, bias, running_mean,
                                    running_var, num_batches_tracked}; fc.weight, fc.bias), at the tests'
                                    1/16 width (fc.weight [1008, 128]) and in float16 to stay ~450 kB (the real
                                    file is float32 at full width: 95 MB); random values, a loader test;
  lpips_vgg_heads_div64.pth         the LPIPS vgg.pth layout (lin0..lin4.model.1.weight [1, C_k, 1, 1] only), in
                                    torch's legacy (non-zip) format like the older LPIPS files, at 1/64 width;
  vgg16_div64.pth                   torchvision's vgg16-397923af.pth layout (features.<i>.{weight, bias} for the 13
                                    convs, classifier.{0,3,6}.{weight, bias}), at 1/64 width (classifier shrunk).
"""
import argparse
import json
import math
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FIXTURE_DIR  # noqa: E402
from repae_ref.sit import SiT  # noqa: E402
from repae_ref.vae import AutoencoderKL  # noqa: E402
from repae_ref.vae_loss import NLayerDiscriminator  # noqa: E402

SEED = 12
OUT = os.path.join(FIXTURE_DIR, "io", "release")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(SEED)


def path(name):
    return os.path.join(OUT, name)


# ---- args.json of the pt_checkpoint.pt run (written by torch_file_ref.py) --------
ck = torch.load(os.path.join(FIXTURE_DIR, "io", "pt_checkpoint.pt"), map_location="cpu")
assert isinstance(ck["args"], argparse.Namespace)
with open(path("repae_args.json"), "w") as f:
    json.dump(vars(ck["args"]), f, indent=4)

# ---- the release's VAE triple ------------------------------------------------------
VAE = dict(ch=32, ch_mult=[1], num_res_blocks=1, z_channels=4, attn_resolutions=[], resolution=16,
           in_channels=3, out_ch=3, norm_groups=32)
vae = AutoencoderKL(**VAE)
with torch.no_grad():  # not the default init: every tensor matters
    for p in vae.parameters():
        p.add_(torch.randn_like(p) * 0.02)
torch.save(vae.state_dict(), path("pt_vae.pt"))
disc = NLayerDiscriminator(input_nc=3, ndf=4, n_layers=1)
with torch.no_grad():
    for name, b in disc.named_buffers():
        if name.endswith("running_var"):
            b.copy_(torch.rand_like(b) + 0.5)
        elif name.endswith("running_mean"):
            b.copy_(torch.randn_like(b) * 0.1)
torch.save(disc.state_dict(), path("pt_vae-discriminator-ckpt.pt"))

# ---- a train_ldm_only.py checkpoint on that VAE's latents ----------------------------
SIT = dict(input_size=16, patch_size=2, in_channels=4, hidden_size=16, depth=1, num_heads=2, mlp_ratio=2.0,
           class_dropout_prob=0.1, num_classes=4, encoder_depth=1, projector_dim=16, z_dims=[8],
           qk_norm=False, bn_momentum=0.1)
sit = SiT(**SIT)
with torch.no_grad():
    sit.init_bn(torch.randn(4) * 0.3, torch.rand(4) + 0.5)
    for name, p in sit.named_parameters():  # the zero-initialised final layer would sample a constant
        if "final_layer" in name or "adaLN" in name:
            p.copy_(torch.randn_like(p) * 0.1)
ema = SiT(**SIT)
ema.load_state_dict(sit.state_dict())
opt = torch.optim.AdamW(sit.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
sum((p ** 2).sum() for p in sit.parameters() if p.requires_grad).backward()
opt.step()
with torch.no_grad():
    for pe, pm in zip(ema.parameters(), sit.parameters()):
        pe.mul_(0.5).add_(pm, alpha=0.5)
parser = argparse.ArgumentParser()  # train_ldm_only.py's loading-relevant options (spec §12.3), plus our
parser.add_argument("--model", default="custom")  # tiny SiT's heads: no preset has width 16
parser.add_argument("--sit-heads", type=int, default=2)
parser.add_argument("--vae", default="f8d4")
parser.add_argument("--vae-ckpt", default="pretrained/pt_vae/pt_vae.pt")
parser.add_argument("--vae-latents-name", default="pt_vae")
parser.add_argument("--encoder-depth", type=int, default=1)
parser.add_argument("--cfg-prob", type=float, default=0.1)
parser.add_argument("--qk-norm", action="store_true")
parser.add_argument("--num-classes", type=int, default=4)
parser.add_argument("--resolution", type=int, default=16)
parser.add_argument("--enc-type", default="dinov2-vit-b")
parser.add_argument("--path-type", default="linear")
parser.add_argument("--proj-coeff", type=float, default=0.5)
args = parser.parse_args([])
torch.save({"model": sit.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args,
            "steps": 4000000}, path("ldm_ckpt.pt"))
with open(path("ldm_args.json"), "w") as f:
    json.dump(vars(args), f, indent=4)
bn = ema.state_dict()
torch.save({"latents_bias": bn["bn.running_mean"].clone().view(1, 4, 1, 1),
            "latents_scale": bn["bn.running_var"].pow(-0.5).view(1, 4, 1, 1)}, path("pt_vae-latents-stats.pt"))


# ---- DINOv2 hub state dicts -----------------------------------------------------------
def dinov2_hub(D=8, depth=1, grid=4, regs=0):
    sd = OrderedDict()
    sd["cls_token"] = torch.randn(1, 1, D) * 0.5
    sd["pos_embed"] = torch.randn(1, 1 + grid * grid, D) * 0.5
    if regs:
        sd["register_tokens"] = torch.randn(1, regs, D) * 0.5
    sd["mask_token"] = torch.zeros(1, D)
    sd["patch_embed.proj.weight"] = torch.randn(D, 3, 14, 14) / math.sqrt(3 * 14 * 14)
    sd["patch_embed.proj.bias"] = torch.randn(D) * 0.1
    for i in range(depth):
        b = f"blocks.{i}."
        for n, (o, k) in {"attn.qkv": (3 * D, D), "attn.proj": (D, D), "mlp.fc1": (4 * D, D),
                          "mlp.fc2": (D, 4 * D)}.items():
            if n == "mlp.fc1":  # the hub's order: norm1, attn, ls1, norm2, mlp, ls2
                sd[b + "norm2.weight"] = 1 + torch.randn(D) * 0.1
                sd[b + "norm2.bias"] = torch.randn(D) * 0.1
            if n == "attn.qkv":
                sd[b + "norm1.weight"] = 1 + torch.randn(D) * 0.1
                sd[b + "norm1.bias"] = torch.randn(D) * 0.1
            sd[b + n + ".weight"] = torch.randn(o, k) / math.sqrt(k)
            sd[b + n + ".bias"] = torch.randn(o) * 0.1
            if n == "attn.proj":
                sd[b + "ls1.gamma"] = torch.rand(D) * 0.5
        sd[b + "ls2.gamma"] = torch.rand(D) * 0.5
    sd["norm.weight"] = 1 + torch.randn(D) * 0.1
    sd["norm.bias"] = torch.randn(D) * 0.1
    return sd


torch.save(dinov2_hub(), path("dinov2_tiny_pretrain.pth"))
torch.save(dinov2_hub(regs=4), path("dinov2_tiny_reg4_pretrain.pth"))


# ---- pytorch-fid's Inception state dict (key layout only) ------------------------------
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "tools"))
from convert_inception import expected_keys  # noqa: E402  (the key list and shapes, in table order)

DIV = 16  # the tests' reduced width (inception_build(&m, 16)): every body channel / 16, the 1008 classes stay
gen = torch.Generator().manual_seed(SEED + 1)
fid = OrderedDict()
for name, shape in expected_keys():
    if name == "fc.weight":
        shape = (1008, 2048 // DIV)
    else:
        shape = tuple(n if (i == 1 and n == 3) or i >= 2 else n // DIV for i, n in enumerate(shape))
    t = torch.randn(shape, generator=gen) * 0.1
    if name.endswith("running_var"):
        t = torch.rand(shape, generator=gen) + 0.5
    fid[name] = t.half()
    if name.endswith(".bn.running_var"):
        fid[name[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
fid["fc.bias"] = (torch.randn(1008, generator=gen) * 0.1).half()
torch.save(fid, path("pt_inception_fid_layout.pth"))



# ---- LPIPS heads + torchvision VGG16 (1/64 width) ------------------------------------------
VGG_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG_WIDTH = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
vgg = OrderedDict()
cin = 3
for i, w in zip(VGG_INDEX, VGG_WIDTH):
    vgg[f"features.{i}.weight"] = torch.randn(w // 64, cin, 3, 3, generator=gen) * 0.3
    vgg[f"features.{i}.bias"] = torch.randn(w // 64, generator=gen) * 0.1
    cin = w // 64
for i, (o, k) in zip((0, 3, 6), ((16, 8 * 7 * 7), (16, 16), (10, 16))):
    vgg[f"classifier.{i}.weight"] = torch.randn(o, k, generator=gen) * 0.1
    vgg[f"classifier.{i}.bias"] = torch.randn(o, generator=gen) * 0.1
torch.save(vgg, path("vgg16_div64.pth"))
heads = OrderedDict()
for k, c in enumerate((64, 128, 256, 512, 512)):
    heads[f"lin{k}.model.1.weight"] = torch.rand(1, c // 64, 1, 1, generator=gen)
torch.save(heads, path("lpips_vgg_heads_div64.pth"), _use_new_zipfile_serialization=False)

total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
print(f"wrote {len(os.listdir(OUT))} files to {OUT}, {total} bytes")
