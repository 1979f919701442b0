#!/usr/bin/python3
"""Writes diffusers-layout AutoencoderKL folders for tests/test_diffusers_vae.c:

  tests/fixtures/io/diffusers_vae_tiny/          current attention names (to_q/to_k/to_v/to_out.0),
                                                 scaling_factor only (shift_factor null)
  tests/fixtures/io/diffusers_vae_tiny_oldattn/  older names (query/key/value/proj_attn), attention
                                                 at one level (Attn*Block2D types), latents_mean/std
  tests/fixtures/io/diffusers_vae_tiny_z16/      the Flux / SD3.5 layout: z = 16, no quant_conv or
                                                 post_quant_conv, shift_factor + scaling_factor
  each {config.json, diffusion_pytorch_model.safetensors}, and beside each folder
  <name>_ref.safetensors: the same weights in CompVis names (with the `config` metadata of
  repae_ref), an input x, the encoder's mean / logvar of x, a latent zin and decode(zin),
  and the per-channel latent statistics (latents_bias / latents_scale) the folder stands for.

diffusers is not installable here, so the diffusers state dict is built by walking the
module layout of diffusers' AutoencoderKL (models/autoencoders/vae.py Encoder/Decoder,
unet_2d_blocks DownEncoderBlock2D / UpDecoderBlock2D / UNetMidBlock2D, attention_processor
Attention) over the reference model's modules -- written on its own, not from the C map:

  Encoder: conv_in, down_blocks[i] (i = resolution level, DownEncoderBlock2D: resnets[j],
           attentions[j] for the Attn variant, downsamplers[0].conv but on the last level),
           mid_block (resnets[0], attentions[0], resnets[1]), conv_norm_out, conv_out
  Decoder: conv_in, mid_block, up_blocks[i] in EXECUTION order (i = 0 is the lowest
           resolution), each with layers_per_block + 1 resnets and upsamplers[0].conv but on
           the last, conv_norm_out, conv_out
  ResnetBlock2D: norm1, conv1, norm2, conv2, conv_shortcut (when in != out)
  Attention (single head in the VAE): group_norm, to_q, to_k, to_v, to_out[0] -- nn.Linear
           [C, C]; files saved before diffusers 0.14 use query, key, value, proj_attn.
  AutoencoderKL: quant_conv, post_quant_conv (absent when use_(post_)quant_conv is false).

Reference values are computed in float64 from the float32 parameters.
Usage: /usr/bin/python3 dev/ref/diffusers_vae_ref.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FIXTURE_DIR, write_safetensors  # noqa: E402
from models_ref import perturb_  # noqa: E402
from repae_ref import vae as V  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
SCRIPT = os.path.basename(__file__)
OUT = os.path.join(FIXTURE_DIR, "io")


def diffusers_state_dict(model, old_attn):
    sd = {}

    def conv(name, m):
        sd[name + ".weight"] = m.weight.detach().clone()
        sd[name + ".bias"] = m.bias.detach().clone()

    def resnet(name, rb):
        conv(name + ".norm1", rb.norm1)
        conv(name + ".conv1", rb.conv1)
        conv(name + ".norm2", rb.norm2)
        conv(name + ".conv2", rb.conv2)
        if rb.in_channels != rb.out_channels:
            conv(name + ".conv_shortcut", rb.nin_shortcut)

    def attention(name, ab):
        conv(name + ".group_norm", ab.norm)
        names = ("query", "key", "value", "proj_attn") if old_attn else ("to_q", "to_k", "to_v", "to_out.0")
        for src, dst in zip((ab.q, ab.k, ab.v, ab.proj_out), names):
            c_out, c_in = src.weight.shape[:2]
            sd[name + "." + dst + ".weight"] = src.weight.detach().reshape(c_out, c_in).clone()  # a Linear
            sd[name + "." + dst + ".bias"] = src.bias.detach().clone()

    def mid(name, m):
        resnet(name + ".resnets.0", m.block_1)
        attention(name + ".attentions.0", m.attn_1)
        resnet(name + ".resnets.1", m.block_2)

    enc, dec = model.encoder, model.decoder
    conv("encoder.conv_in", enc.conv_in)
    for i, level in enumerate(enc.down):
        for j, rb in enumerate(level.block):
            resnet("encoder.down_blocks.%d.resnets.%d" % (i, j), rb)
        for j, ab in enumerate(level.attn):
            attention("encoder.down_blocks.%d.attentions.%d" % (i, j), ab)
        if hasattr(level, "downsample"):
            conv("encoder.down_blocks.%d.downsamplers.0.conv" % i, level.downsample.conv)
    mid("encoder.mid_block", enc.mid)
    conv("encoder.conv_norm_out", enc.norm_out)
    conv("encoder.conv_out", enc.conv_out)

    conv("decoder.conv_in", dec.conv_in)
    mid("decoder.mid_block", dec.mid)
    n = len(dec.up)
    for i in range(n):  # execution order: the reference's up[n-1] runs first
        level = dec.up[n - 1 - i]
        for j, rb in enumerate(level.block):
            resnet("decoder.up_blocks.%d.resnets.%d" % (i, j), rb)
        for j, ab in enumerate(level.attn):
            attention("decoder.up_blocks.%d.attentions.%d" % (i, j), ab)
        if hasattr(level, "upsample"):
            conv("decoder.up_blocks.%d.upsamplers.0.conv" % i, level.upsample.conv)
    conv("decoder.conv_norm_out", dec.norm_out)
    conv("decoder.conv_out", dec.conv_out)
    if model.use_quant_conv:
        conv("quant_conv", model.quant_conv)
    if model.use_post_quant_conv:
        conv("post_quant_conv", model.post_quant_conv)
    return sd


def diffusers_config(cfg, attn_levels, extra):
    n = len(cfg["ch_mult"])
    widths = [cfg["ch"] * m for m in cfg["ch_mult"]]
    c = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.31.0",
        "act_fn": "silu",
        "block_out_channels": widths,
        "down_block_types": ["AttnDownEncoderBlock2D" if l in attn_levels else "DownEncoderBlock2D"
                             for l in range(n)],
        "force_upcast": True,
        "in_channels": cfg["in_channels"],
        "latent_channels": cfg["z_channels"],
        "latents_mean": None,
        "latents_std": None,
        "layers_per_block": cfg["num_res_blocks"],
        "mid_block_add_attention": True,
        "norm_num_groups": cfg["norm_groups"],
        "out_channels": cfg["out_ch"],
        "sample_size": cfg["resolution"],
        "scaling_factor": 0.18215,
        "shift_factor": None,
        # up_blocks in execution order: up_block_types[i] is level n-1-i
        "up_block_types": ["AttnUpDecoderBlock2D" if n - 1 - i in attn_levels else "UpDecoderBlock2D"
                           for i in range(n)],
        "use_post_quant_conv": cfg.get("use_post_quant_conv", True),
        "use_quant_conv": cfg.get("use_quant_conv", True),
    }
    c.update(extra)
    return c


def per_channel_stats(c, C):
    """What the folder means for the SiT's (z - bias) * scale, by diffusers' pipelines' formulas."""
    s = c["scaling_factor"]
    if c["latents_mean"] is not None:  # (z - latents_mean) * scaling_factor / latents_std
        bias = torch.tensor(c["latents_mean"], dtype=torch.float64)
        scale = s / torch.tensor(c["latents_std"], dtype=torch.float64)
    else:  # (z - shift_factor) * scaling_factor
        bias = torch.full((C,), c["shift_factor"] or 0.0, dtype=torch.float64)
        scale = torch.full((C,), s, dtype=torch.float64)
    return bias.float().reshape(1, C, 1, 1), scale.float().reshape(1, C, 1, 1)


def write_case(name, seed, cfg, attn_levels, old_attn, extra, x_channels):
    torch.manual_seed(seed)
    model = V.AutoencoderKL(**cfg)
    perturb_(model)
    C, R = cfg["z_channels"], cfg["resolution"]
    f = 2 ** (len(cfg["ch_mult"]) - 1)
    x = torch.rand(2, x_channels, R, R) * 2 - 1
    zin = torch.randn(2, C, R // f, R // f)
    m64 = V.AutoencoderKL(**cfg).double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    with torch.no_grad():
        post = m64.encode(x.double())
        recon = m64.decode(zin.double())

    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    sd = diffusers_state_dict(model, old_attn)
    assert sum(v.numel() for v in sd.values()) == sum(v.numel() for v in model.state_dict().values())
    # safetensors.torch.save_file (what save_pretrained uses) writes the names sorted
    write_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"),
                      {k: sd[k] for k in sorted(sd)}, {"format": "pt"})
    conf = diffusers_config(cfg, attn_levels, extra)
    tmp = os.path.join(folder, "config.json.tmp")
    with open(tmp, "w") as fp:
        fp.write(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, os.path.join(folder, "config.json"))

    bias, scale = per_channel_stats(conf, C)
    ref = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ref.update({"x": x, "mean": post.mean.float(), "logvar": post.logvar.float(), "zin": zin,
                "recon": recon.float(), "latents_bias": bias, "latents_scale": scale})
    write_safetensors(os.path.join(OUT, name + "_ref.safetensors"), ref,
                      {"script": SCRIPT, "seed": seed, "torch": torch.__version__,
                       "config": json.dumps(model.config, sort_keys=True),
                       "description": "CompVis-named weights and reference outputs of the folder " + name})
    print("  wrote %s/ (%d tensors) and %s_ref.safetensors" % (os.path.relpath(folder), len(sd), name))


def main():
    tiny = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, attn_resolutions=(),
                resolution=16, in_channels=3, out_ch=3, norm_groups=4)
    write_case("diffusers_vae_tiny", 5001, tiny, (), False, {}, 3)
    # attention at level 2 (resolution 4 of 16), as IN-VAE has at its lowest level
    attn = dict(ch=8, ch_mult=(1, 1, 2), num_res_blocks=2, z_channels=8, attn_resolutions=(4,),
                resolution=16, in_channels=1, out_ch=1, norm_groups=4)
    stats = {"latents_mean": [0.25 * k - 1.0 for k in range(8)],
             "latents_std": [0.5 + 0.125 * k for k in range(8)], "scaling_factor": 0.5}
    write_case("diffusers_vae_tiny_oldattn", 5101, attn, (2,), True, stats, 1)
    z16 = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=16, attn_resolutions=(),
               resolution=16, in_channels=3, out_ch=3, norm_groups=4, use_quant_conv=False,
               use_post_quant_conv=False)
    # Flux.1's VAE factors
    write_case("diffusers_vae_tiny_z16", 5201, z16, (), False,
               {"scaling_factor": 0.3611, "shift_factor": 0.1159}, 3)


if __name__ == "__main__":
    main()
