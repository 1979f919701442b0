#!/usr/bin/python3
"""Writes the model-level parity fixtures tests/fixtures/models/*.safetensors and
tests/fixtures/models/param_counts.json (see dev/ref/README.md for the contract).

Every fixture holds the module's full state dict (float32, int64 for
num_batches_tracked) under its exact keys, the inputs under plain names, the outputs,
cotangents `cot.<output>`, and gradients `grad.<param key>` / `grad.<input>`.  Fixtures
with several cases of one parameter set prefix the case tensors with `<case>.`.

Reference values are computed in float64 from the float32 parameters/inputs (so the
stored numbers are the exact answer rounded once to float32); the same computation is
also run in float32 and the per-tensor deviation max|f32 - f64| / max|f64| is recorded
in the metadata entry `fp32_vs_fp64` as a guide for tolerances.

Usage: /usr/bin/python3 dev/ref/models_ref.py [name ...]   (no name = everything)
"""
import copy
import json
import math
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FIXTURE_DIR, read_safetensors, save_fixture  # noqa: E402
from repae_ref import vae as V  # noqa: E402
from repae_ref import sit as S  # noqa: E402
from repae_ref import vit as T  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
SCRIPT = __file__


# ============================================================================ helpers
def perturb_(model, std_w=0.5, std_b=0.1, std_emb=0.3, std_norm=0.1, std_tok=0.5, skip=()):
    """Adds noise to EVERY trainable parameter (so adaLN-Zero / zero-init paths are live):
    Linear/Conv weight += N(0, (std_w/sqrt(fan_in))^2), bias += N(0, std_b^2);
    Embedding += N(0, std_emb^2); GroupNorm/LayerNorm weight, bias += N(0, std_norm^2);
    any other parameter (tokens, pos tables, LayerScale gamma) += N(0, std_tok^2) if it
    has >= 2 dims, else N(0, std_norm^2).  Parameters named in `skip` are untouched."""
    done = set()
    with torch.no_grad():
        for mname, m in model.named_modules():
            pre = mname + "." if mname else ""
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.add_(torch.randn_like(m.weight) * (std_w / math.sqrt(fan_in)))
                done.add(pre + "weight")
                if m.bias is not None:
                    m.bias.add_(torch.randn_like(m.bias) * std_b)
                    done.add(pre + "bias")
            elif isinstance(m, torch.nn.Embedding):
                m.weight.add_(torch.randn_like(m.weight) * std_emb)
                done.add(pre + "weight")
            elif isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.add_(torch.randn_like(m.weight) * std_norm)
                m.bias.add_(torch.randn_like(m.bias) * std_norm)
                done.update([pre + "weight", pre + "bias"])
        for n, p in model.named_parameters():
            if n in done or n in skip or not p.requires_grad:
                continue
            p.add_(torch.randn_like(p) * (std_tok if p.dim() >= 2 else std_norm))
            done.add(n)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in done]
    assert not missing, missing


def state_tensors(model, rename=None):
    """Full state dict (params + buffers) in state-dict order, detached copies."""
    out = {}
    for k, v in model.state_dict().items():
        out[(rename or {}).get(k, k)] = v.detach().clone()
    return out


def run_case(model, dtype, inputs, grad_inputs, fn):
    """Deep-copies `model` to `dtype`, runs fn(m, ins) -> (outs, loss, retained) and
    backpropagates loss.  Returns (model copy, outs, grads) where grads holds one entry
    per trainable parameter (zeros if unused), per name in grad_inputs and per
    retained intermediate."""
    m = copy.deepcopy(model).to(dtype)
    ins = {}
    for k, v in inputs.items():
        v = v.detach().clone()
        if v.is_floating_point():
            v = v.to(dtype)
        if k in grad_inputs:
            v.requires_grad_(True)
        ins[k] = v
    outs, loss, retained = fn(m, ins)
    grads = {}
    if loss is not None:
        loss.backward()
        for n, p in m.named_parameters():
            if p.requires_grad:
                grads[n] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        for k in grad_inputs:
            grads[k] = ins[k].grad.detach().clone()
        for k, t in retained.items():
            grads[k] = t.grad.detach().clone()
    outs = {k: (v.detach().clone() if torch.is_tensor(v) else torch.tensor(v)) for k, v in outs.items()}
    return m, outs, grads


def both(model, inputs, grad_inputs, fn):
    """float64 reference + float32 deviation report."""
    m64, o64, g64 = run_case(model, torch.float64, inputs, grad_inputs, fn)
    m32, o32, g32 = run_case(model, torch.float32, inputs, grad_inputs, fn)
    dev = {}
    for k in list(g64):
        # mathematically zero gradients (e.g. attention key biases: softmax is invariant
        # to a per-query shift) come out as ~1e-16 rounding noise: store exact zeros and
        # report the float32 run's absolute value instead of a relative deviation.
        if g64[k].is_floating_point() and 0 < g64[k].abs().max().item() < 1e-12:
            g64[k] = torch.zeros_like(g64[k])
    for tag, a, b in (("", o32, o64), ("grad.", g32, g64)):
        for k in b:
            if not b[k].is_floating_point():
                continue
            den = b[k].abs().max().item()
            num = (a[k].double() - b[k]).abs().max().item()
            dev[tag + k] = float("%.2g" % (num / den)) if den > 0 else "abs %.2g" % num
    return m64, o64, g64, dev


def cot_loss(outs, cots):
    """L = sum_k sum(cot.k * outs[k]) over the names in cots."""
    return sum((cots[k] * outs[k]).sum() for k in cots)


def f32(d, prefix=""):
    return {prefix + k: v.float() if v.is_floating_point() else v for k, v in d.items()}


def write(name, tensors, seed, config, dev, description, **meta):
    path = save_fixture("models/" + name, tensors, SCRIPT, seed,
                        config=json.dumps(config, sort_keys=True),
                        fp32_vs_fp64=json.dumps(dev, sort_keys=True),
                        description=description, **meta)
    big = max([v for v in dev.values() if not isinstance(v, str)] or [0.0])
    print("  wrote %s (%.0f kB, %d tensors, max fp32-vs-fp64 rel dev %.1e)"
          % (os.path.relpath(path), os.path.getsize(path) / 1024, len(tensors), big))
    return path


# ============================================================================ VAE
def expected_vae_keys(ch, ch_mult, nrb, attn_resolutions, resolution):
    """Key set written out from the spec §2.5 patterns (independent of vae.py)."""
    L = len(ch_mult)
    keys = []

    def conv(p):
        keys.extend([p + ".weight", p + ".bias"])

    def res(p, cin, cout):
        for s in ("norm1", "conv1", "norm2", "conv2"):
            conv(p + "." + s)
        if cin != cout:
            conv(p + ".nin_shortcut")

    def attn(p):
        for s in ("norm", "q", "k", "v", "proj_out"):
            conv(p + "." + s)
    conv("encoder.conv_in")
    cin = ch
    for l in range(L):
        r = resolution // 2 ** l
        for b in range(nrb):
            res("encoder.down.%d.block.%d" % (l, b), cin, ch * ch_mult[l])
            cin = ch * ch_mult[l]
            if r in attn_resolutions:
                attn("encoder.down.%d.attn.%d" % (l, b))
        if l < L - 1:
            conv("encoder.down.%d.downsample.conv" % l)
    for pre in ("encoder", "decoder"):
        res(pre + ".mid.block_1", cin, cin)
        attn(pre + ".mid.attn_1")
        res(pre + ".mid.block_2", cin, cin)
    conv("encoder.norm_out")
    conv("encoder.conv_out")
    conv("decoder.conv_in")
    for l in reversed(range(L)):
        r = resolution // 2 ** l
        for b in range(nrb + 1):
            res("decoder.up.%d.block.%d" % (l, b), cin, ch * ch_mult[l])
            cin = ch * ch_mult[l]
            if r in attn_resolutions:
                attn("decoder.up.%d.attn.%d" % (l, b))
        if l > 0:
            conv("decoder.up.%d.upsample.conv" % l)
    conv("decoder.norm_out")
    conv("decoder.conv_out")
    conv("quant_conv")
    conv("post_quant_conv")
    return keys


def check_vae_presets():
    for name, cfg in V.VAE_PRESETS.items():
        m = V.AutoencoderKL(**cfg, device="meta")
        n = sum(p.numel() for p in m.parameters())
        assert n == V.VAE_PARAM_COUNTS[name], (name, n)
        exp = expected_vae_keys(cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"],
                                cfg["attn_resolutions"], cfg["resolution"])
        got = list(m.state_dict().keys())
        assert sorted(exp) == sorted(got), (name, set(exp) ^ set(got))
        attn = sorted({k.rsplit(".attn.", 1)[0] + ".attn." + k.split(".attn.")[1].split(".")[0]
                       for k in got if ".attn." in k})
        if name == "f8d4":
            assert attn == [], attn
        else:
            assert attn == ["decoder.up.4.attn.%d" % b for b in range(3)] + \
                ["encoder.down.4.attn.%d" % b for b in range(2)], attn
        # latent / output sizes for 256^2 (meta tensors propagate shapes only)
        post = m.encode(torch.empty(1, 3, 256, 256, device="meta"))
        lat = {"f8d4": (1, 4, 32, 32), "f16d32": (1, 32, 16, 16)}[name]
        assert tuple(post.mean.shape) == lat and tuple(post.moments.shape) == (1, 2 * lat[1]) + lat[2:]
        assert tuple(m.decode(post.mean).shape) == (1, 3, 256, 256)
    # AttnBlock against an independent formulation (single-head MHA over positions)
    torch.manual_seed(0)
    blk = V.AttnBlock(32, groups=8).double()
    x = torch.randn(2, 32, 3, 5, dtype=torch.float64)
    hn = blk.norm(x).flatten(2).transpose(1, 2)
    q, k, v = (torch.nn.functional.linear(hn, c.weight[:, :, 0, 0], c.bias) for c in (blk.q, blk.k, blk.v))
    o = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(32), -1) @ v
    ref = x + blk.proj_out(o.transpose(1, 2).reshape(2, 32, 3, 5))
    assert torch.allclose(blk(x), ref, atol=1e-12)
    # Downsample pads right/bottom only
    ds = V.Downsample(2).double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), ds.conv.weight,
                                     ds.conv.bias, stride=2)
    assert ds(x).shape == (1, 2, 3, 3) and torch.allclose(ds(x), ref)
    print("  VAE presets: parameter counts, §2.5 key sets, latent shapes, AttnBlock OK")


def vae_fixture(name, seed, cfg, x_channels, batch, clamp_channels, description):
    torch.manual_seed(seed)
    model = V.AutoencoderKL(**cfg)
    exp = expected_vae_keys(cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"],
                            cfg["attn_resolutions"], cfg["resolution"])
    assert list(model.state_dict().keys()) == exp or sorted(model.state_dict().keys()) == sorted(exp)
    perturb_(model)
    C = cfg["z_channels"]
    R = cfg["resolution"]
    f = 2 ** (len(cfg["ch_mult"]) - 1)
    x = (torch.rand(batch, x_channels, R, R) * 2 - 1)
    eps = torch.randn(batch, C, R // f, R // f)
    clamp_info = {}
    if clamp_channels:
        # Shift quant_conv.bias of the logvar channels so that the [-30, 20] clamp is
        # active on part of them: latent channel 0 partly below -30, channel 1 partly
        # above 20 (its eps is scaled by 1e-4 so that z = mean + std*eps stays O(1)).
        with torch.no_grad():
            raw = model.double().encode(x.double()).moments[:, C:].float()
            model.float()
            lo = torch.quantile(raw[:, 0].flatten(), 0.3).item()
            hi = torch.quantile(raw[:, 1].flatten(), 0.8).item()
            model.quant_conv.bias[C + 0] += float(np.float32(-30.0 - lo))
            model.quant_conv.bias[C + 1] += float(np.float32(20.0 - hi))
        eps[:, 1] *= 1e-4

    def fn(m, ins):
        post = m.encode(ins["x"])
        post.moments.retain_grad()
        z = post.sample(ins["eps"])
        z.retain_grad()
        recon = m.decode(z)
        outs = {"moments": post.moments, "mean": post.mean, "logvar": post.logvar, "z": z,
                "recon": recon}
        cots = {k: ins["cot." + k] for k in ("recon", "z", "mean", "logvar")}
        return outs, cot_loss(outs, cots), {"z": z, "moments": post.moments}

    # cotangents need output shapes: do a dry forward
    with torch.no_grad():
        post = model.encode(x)
        rec = model.decode(post.sample(eps))
    cots = {"cot.recon": torch.randn_like(rec), "cot.z": torch.randn_like(post.mean),
            "cot.mean": torch.randn_like(post.mean), "cot.logvar": torch.randn_like(post.mean)}
    inputs = {"x": x, "eps": eps, **cots}
    _, outs, grads, dev = both(model, inputs, ["x"], fn)
    if clamp_channels:
        raw = outs["moments"][:, C:]
        n_lo = int((raw < -30).sum())
        n_hi = int((raw > 20).sum())
        assert n_lo > 0 and n_hi > 0, (n_lo, n_hi)
        gm = grads["moments"][:, C:]
        assert (gm[raw < -30] == 0).all() and (gm[raw > 20] == 0).all()
        assert (gm[(raw > -30) & (raw < 20)] != 0).float().mean() > 0.99
        clamp_info = {"clamped_below": n_lo, "clamped_above": n_hi, "total": raw.numel()}
    tensors = state_tensors(model)
    tensors.update(f32(inputs))
    tensors.update(f32(outs))
    tensors.update(f32(grads, "grad."))
    config = dict(model.config, batch=batch, input_channels=x_channels, logvar_clamp=[-30, 20],
                  latent_shape=list(outs["mean"].shape), clamp=clamp_info,
                  loss="L = sum(cot.recon*recon) + sum(cot.z*z) + sum(cot.mean*mean) + "
                       "sum(cot.logvar*logvar)")
    write(name, tensors, seed, config, dev, description)


# ============================================================================ SiT
def check_sit_pieces():
    # pos-embed: the spec formula, element by element (Q = D/4, first half = column)
    D, G = 16, 3
    pe = S.sincos_pos_embed_2d(D, G)
    Q = D // 4
    for i in range(G):
        for j in range(G):
            for k in range(Q):
                w = 10000.0 ** (-k / Q)
                row = pe[i * G + j]
                assert abs(row[k] - math.sin(j * w)) < 1e-12
                assert abs(row[Q + k] - math.cos(j * w)) < 1e-12
                assert abs(row[2 * Q + k] - math.sin(i * w)) < 1e-12
                assert abs(row[3 * Q + k] - math.cos(i * w)) < 1e-12
    # timestep embedding: cos first, raw t
    t = torch.tensor([0.0, 0.37, 1.0], dtype=torch.float64)
    e = S.timestep_embedding(t, 256)
    fk = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float64) / 128)
    assert torch.allclose(e[:, :128], torch.cos(t[:, None] * fk)) and \
        torch.allclose(e[:, 128:], torch.sin(t[:, None] * fk))
    # unpatchify index order (a, b, c)
    m = S.SiT(input_size=8, patch_size=2, in_channels=3, hidden_size=16, depth=1, num_heads=2,
              num_classes=4, encoder_depth=1, projector_dim=8, z_dims=[4])
    tok = torch.randn(2, 16, 2 * 2 * 3)
    img = m.unpatchify(tok)
    for n in range(2):
        for i in range(4):
            for j in range(4):
                for a in range(2):
                    for b in range(2):
                        for c in range(3):
                            assert img[n, c, i * 2 + a, j * 2 + b] == tok[n, i * 4 + j, (a * 2 + b) * 3 + c]
    # GELU tanh approximation, and the timm qkv layout [3][heads][head_dim] against
    # torch's MultiheadAttention (whose packed in_proj uses the same layout)
    z = torch.linspace(-6, 6, 101, dtype=torch.float64)
    assert torch.allclose(S.gelu_tanh(z), torch.nn.functional.gelu(z, approximate="tanh"))
    torch.manual_seed(0)
    for att in (S.Attention(24, 3).double(), T.Attention(24, 3).double()):
        mha = torch.nn.MultiheadAttention(24, 3, batch_first=True).double()
        with torch.no_grad():
            mha.in_proj_weight.copy_(att.qkv.weight)
            mha.in_proj_bias.copy_(att.qkv.bias)
            mha.out_proj.weight.copy_(att.proj.weight)
            mha.out_proj.bias.copy_(att.proj.bias)
        x = torch.randn(2, 7, 24, dtype=torch.float64)
        assert torch.allclose(att(x), mha(x, x, x, need_weights=False)[0], atol=1e-12)
    # presets: parameter counts of spec §4.1
    for (name, C, hw), cnt in S.SIT_PARAM_COUNTS.items():
        s = S.sit_preset(name, input_size=hw, in_channels=C, device="meta")
        n_sit = sum(p.numel() for k, p in s.named_parameters() if not k.startswith("projectors"))
        n_proj = sum(p.numel() for k, p in s.named_parameters() if k.startswith("projectors"))
        assert n_sit == cnt and n_proj == S.PROJECTOR_PARAM_COUNT_768, (name, n_sit, n_proj)
        assert s.pos_embed.shape == (1, 256, 1152)
    print("  SiT/ViT: pos-embed formula, timestep embedding, unpatchify order, GELU, qkv "
          "layout vs nn.MultiheadAttention, XL counts OK")


SIT_TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=3,
                num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10,
                encoder_depth=2, projector_dim=64, z_dims=[32], bn_momentum=0.1)


def make_tiny_sit(seed, qk_norm):
    torch.manual_seed(seed)
    model = S.SiT(**SIT_TINY, qk_norm=qk_norm, path_type="linear")
    C, hw = SIT_TINY["in_channels"], SIT_TINY["input_size"]
    # BN as after init_bn from a latents-stats file
    model.init_bn(torch.randn(1, C, 1, 1) * 0.5, 1.0 / torch.empty(1, C, 1, 1).uniform_(0.6, 1.6))
    # true §4.3 init => output exactly zero
    pe = torch.from_numpy(S.sincos_pos_embed_2d(64, 4)).float()[None]
    assert torch.equal(model.pos_embed.data, pe)
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, C, hw, hw)
        assert model.inference(x, torch.rand(2), torch.tensor([1, 10])).abs().max() == 0
        out = model(x, torch.tensor([1, 2]), [torch.randn(2, 16, 32)])
        assert out["model_output"].abs().max() == 0 and out["zs_tilde"][0].shape == (2, 16, 32)
    perturb_(model, skip=("pos_embed",))
    assert torch.equal(model.pos_embed.data, pe) and not model.pos_embed.requires_grad
    return model


def sit_train_case(model, seed, prefix):
    """(b)/(d): train mode (BN batch stats + running-stat update, label dropout via
    drop_mask), linear path, L = mean(denoising_loss) + 0.5*proj_loss."""
    g = torch.Generator().manual_seed(seed)
    N, C, hw = 4, SIT_TINY["in_channels"], SIT_TINY["input_size"]
    rm, rv = model.bn.running_mean, model.bn.running_var
    x = torch.randn(N, C, hw, hw, generator=g) * rv.sqrt().view(1, C, 1, 1) * 1.3 + rm.view(1, C, 1, 1) + 0.2
    inputs = {"x": x,
              "y": torch.tensor([3, 9, 0, 5]),
              "drop_mask": torch.tensor([0, 1, 0, 0]),
              "time_input": torch.rand(N, 1, 1, 1, generator=g),
              "noises": torch.randn(N, C, hw, hw, generator=g),
              "zs.0": torch.randn(N, 16, 32, generator=g)}

    def fn(m, ins):
        m.train()
        o = m(ins["x"], ins["y"], [ins["zs.0"]], time_input=ins["time_input"],
              noises=ins["noises"], drop_mask=ins["drop_mask"], path_type="linear")
        loss = o["denoising_loss"].mean() + 0.5 * o["proj_loss"]
        a, s, _, _ = S.interpolant(ins["time_input"], "linear")
        with torch.no_grad():
            xn = torch.nn.functional.batch_norm(ins["x"], None, None, training=True, eps=1e-4)
        outs = {"zs_tilde.0": o["zs_tilde"][0], "model_output": o["model_output"],
                "denoising_loss": o["denoising_loss"], "proj_loss": o["proj_loss"], "loss": loss,
                "x_t": a * xn + s * ins["noises"],
                "y_dropped": torch.where(ins["drop_mask"] == 1, torch.full_like(ins["y"], 10), ins["y"]),
                "bn.running_mean": m.bn.running_mean, "bn.running_var": m.bn.running_var,
                "bn.num_batches_tracked": m.bn.num_batches_tracked}
        return outs, loss, {}
    _, outs, grads, dev = both(model, inputs, ["x"], fn)
    # running-stat update by the spec formula
    xb = inputs["x"].double()
    mu = xb.mean(dim=(0, 2, 3))
    var_u = xb.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(outs["bn.running_mean"], 0.9 * rm.double() + 0.1 * mu)
    assert torch.allclose(outs["bn.running_var"], 0.9 * rv.double() + 0.1 * var_u)
    assert outs["bn.num_batches_tracked"].item() == 1
    t = f32(inputs, prefix)
    t.update(f32(outs, prefix))
    t.update(f32(grads, prefix + "grad."))
    return t, {prefix + k: v for k, v in dev.items()}


def sit_tiny_fixture(seed=2001):
    model = make_tiny_sit(seed, qk_norm=False)
    tensors = state_tensors(model)
    devs = {}
    N, C, hw = 3, SIT_TINY["in_channels"], SIT_TINY["input_size"]

    # (a) inference velocity
    g = torch.Generator().manual_seed(seed + 1)
    ins_a = {"x": torch.randn(N, C, hw, hw, generator=g),
             "t": torch.rand(N, generator=g),
             "y": torch.tensor([3, 7, 10])}
    ins_a["cot.out"] = torch.randn(N, C, hw, hw, generator=g)

    def fn_a(m, ins):
        m.eval()
        out = m.inference(ins["x"], ins["t"], ins["y"])
        return {"out": out}, (ins["cot.out"] * out).sum(), {}
    _, o, gr, dev = both(model, ins_a, ["x"], fn_a)
    tensors.update(f32(ins_a, "infer."))
    tensors.update(f32(o, "infer."))
    tensors.update(f32(gr, "infer.grad."))
    devs.update({"infer." + k: v for k, v in dev.items()})

    # (b) training forward, train mode, linear path
    t, dev = sit_train_case(model, seed + 2, "train.")
    tensors.update(t)
    devs.update(dev)

    # (c) VAE-alignment pass: eval BN (running stats of the state dict), align_only,
    # cosine path, SiT frozen, gradient of proj_loss w.r.t. the input latent only
    g = torch.Generator().manual_seed(seed + 3)
    N = 4
    rm, rv = model.bn.running_mean, model.bn.running_var
    ins_c = {"x": torch.randn(N, C, hw, hw, generator=g) * rv.sqrt().view(1, C, 1, 1) + rm.view(1, C, 1, 1),
             "y": torch.tensor([1, 2, 8, 4]),
             "time_input": torch.rand(N, 1, 1, 1, generator=g),
             "noises": torch.randn(N, C, hw, hw, generator=g),
             "zs.0": torch.randn(N, 16, 32, generator=g)}

    def fn_c(m, ins):
        m.eval()
        m.requires_grad_(False)
        o = m(ins["x"], ins["y"], [ins["zs.0"]], time_input=ins["time_input"],
              noises=ins["noises"], align_only=True, path_type="cosine")
        assert o["model_output"] is None and o["denoising_loss"] is None
        return {"zs_tilde.0": o["zs_tilde"][0], "proj_loss": o["proj_loss"]}, o["proj_loss"], {}
    mc, o, gr, dev = both(model, ins_c, ["x"], fn_c)
    assert set(gr) == {"x"}
    assert torch.equal(mc.bn.running_mean, rm.double())  # eval mode: no update
    tensors.update(f32(ins_c, "align."))
    tensors.update(f32(o, "align."))
    tensors.update(f32(gr, "align.grad."))
    devs.update({"align." + k: v for k, v in dev.items()})

    config = dict(model.config, cases={
        "infer": "eval; out = inference(x, t, y) (no BN); L = sum(cot.out*out); grads of all "
                 "trainable params (projectors: zero, unused) and x",
        "train": "train mode; forward(x, y, [zs.0], time_input, noises, drop_mask), linear path; "
                 "L = mean(denoising_loss) + 0.5*proj_loss; grads of all trainable params and x "
                 "(x through train-mode BN); bn.* = running stats after the update",
        "align": "eval mode (BN with the state-dict running stats, no dropout), align_only, "
                 "cosine path, params frozen; L = proj_loss; grad of x only"})
    write("sit_tiny", tensors, seed, config, devs,
          "SiT tiny: inference velocity, REPA-E SiT training pass, VAE-alignment pass")


def sit_tiny_qknorm_fixture(seed=2101):
    model = make_tiny_sit(seed, qk_norm=True)
    assert "blocks.0.attn.q_norm.weight" in model.state_dict()
    tensors = state_tensors(model)
    t, dev = sit_train_case(model, seed + 2, "train.")
    tensors.update(t)
    config = dict(model.config, cases={
        "train": "as sit_tiny 'train' with qk_norm=True (LayerNorm(head_dim, eps 1e-5, affine) "
                 "on each head's q and k before the scale)"})
    write("sit_tiny_qknorm", tensors, seed, config, dev, "SiT tiny with qk-norm: training pass")


# ============================================================================ ViT
VIT_TINY = dict(img_size=24, patch_size=4, in_chans=3, embed_dim=48, depth=2, num_heads=3,
                mlp_ratio=4.0, init_values=1.0, ffn_layer="mlp")
# ViT-g's FFN (SwiGLUFFNFused) at ViT-g's mlp_ratio 4, kept under 100 kB: hidden
# int(16*4)=64 -> (int(64*2/3)+7)//8*8 = 48, so the rounding up to a multiple of 8
# (42 -> 48) is exercised; w12 [96,16], w3 [16,48].
VIT_TINY_SWIGLU = dict(VIT_TINY, embed_dim=16, num_heads=2, ffn_layer="swiglufused")


def vit_fixture(name, seed, num_reg, arch=VIT_TINY):
    torch.manual_seed(seed)
    D = arch["embed_dim"]
    reg_kw = dict(interpolate_antialias=True, interpolate_offset=0.0) if num_reg else {}
    model = T.DinoVisionTransformer(**arch, num_register_tokens=num_reg, **reg_kw)
    perturb_(model)
    with torch.no_grad():  # LayerScale gammas spread over [0.3, 1.3]
        for b in model.blocks:
            b.ls1.gamma.uniform_(0.3, 1.3)
            b.ls2.gamma.uniform_(0.3, 1.3)
    tensors = state_tensors(model)                 # pos_embed = checkpoint table (6x6 grid)
    pos_ckpt = model.pos_embed.detach().clone()
    model.resample_pos_embed_(4)                   # load-time resample to the 4x4 input grid
    pos_rs = model.pos_embed.detach().clone()
    assert pos_rs.shape == (1, 17, D) and torch.equal(pos_rs[:, 0], pos_ckpt[:, 0])
    M = T.aa_bicubic_weights(6, 4)
    grid = pos_ckpt[0, 1:].double().reshape(6, 6, D)
    ref = torch.einsum("ia,jb,abd->ijd", M, M, grid).reshape(16, D)
    assert (ref - pos_rs[0, 1:].double()).abs().max() < 1e-5
    tensors["pos_embed_resampled"] = pos_rs
    g = torch.Generator().manual_seed(seed + 1)
    N = 2
    inputs = {"x": torch.randn(N, 3, 16, 16, generator=g)}
    outs_names = ["x_norm_clstoken", "x_norm_patchtokens"] + (["x_norm_regtokens"] if num_reg else [])
    shapes = {"x_norm_clstoken": (N, D), "x_norm_patchtokens": (N, 16, D),
              "x_norm_regtokens": (N, num_reg, D)}
    for k in outs_names:
        inputs["cot." + k] = torch.randn(*shapes[k], generator=g)

    def fn(m, ins):
        m.eval()
        f = m.forward_features(ins["x"])
        outs = {k: f[k] for k in outs_names}
        loss = cot_loss(outs, {k: ins["cot." + k] for k in outs_names})
        outs["x_prenorm"] = f["x_prenorm"]
        return outs, loss, {}
    _, outs, grads, dev = both(model, inputs, ["x"], fn)
    assert outs["x_prenorm"].shape == (N, 1 + num_reg + 16, D)
    grads["pos_embed_resampled"] = grads.pop("pos_embed")
    assert grads["mask_token"].abs().max() == 0
    tensors.update(f32(inputs))
    tensors.update(f32(outs))
    tensors.update(f32(grads, "grad."))
    config = dict(model.config, pos_grid_checkpoint=6, pos_grid=4, input_size=16, batch=N,
                  loss="L = " + " + ".join("sum(cot.%s*%s)" % (k, k) for k in outs_names),
                  note="pos_embed = checkpoint table [1,1+6*6,D]; pos_embed_resampled = "
                       "resample_abs_pos_embed(pos_embed, [4,4]) (float32, antialiased bicubic); "
                       "grad.pos_embed_resampled is the gradient of the table actually used")
    dev["grad.pos_embed_resampled"] = dev.pop("grad.pos_embed")
    if arch["ffn_layer"] == "mlp":
        description = "DINOv2 ViT tiny (%d register tokens): forward_features and backward" % num_reg
    else:
        description = ("DINOv2 ViT tiny with ViT-g's SwiGLUFFNFused FFN (hidden %d), %d register tokens: "
                       "forward_features and backward" % (model.blocks[0].mlp.hidden, num_reg))
        config["ffn_hidden"] = model.blocks[0].mlp.hidden
    write(name, tensors, seed, config, dev, description)


# ============================================================================ read-back
def _read(name):
    path = os.path.join(FIXTURE_DIR, "models", name + ".safetensors")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    return read_safetensors(path), json.loads(meta["config"])


def _close(a, b, what, tol):
    err = (a.double() - b.double()).abs().max().item()
    scale = b.abs().max().item()
    if scale == 0:  # exact-zero reference (unused parameter, key bias): absolute check
        assert err < 1e-5, "%s: abs err %.2e" % (what, err)
    else:
        assert err <= tol * scale, "%s: rel err %.2e" % (what, err / scale)


def _load(model, t, rename=None):
    sd = {}
    for k in model.state_dict():
        sd[k] = t[(rename or {}).get(k, k)]
    model.load_state_dict(sd, strict=True)


def verify_readback(name):
    """Rebuilds the model from the file alone (config + state dict + inputs), reruns it in
    float32 and compares with the stored values: the fixture is self-contained."""
    t, cfg = _read(name)
    if name.startswith("vae"):
        keys = ("ch", "ch_mult", "num_res_blocks", "z_channels", "attn_resolutions",
                "resolution", "in_channels", "out_ch", "norm_groups")
        m = V.AutoencoderKL(**{k: cfg[k] for k in keys})
        _load(m, t)
        x = t["x"].clone().requires_grad_(True)
        post = m.encode(x)
        z = post.sample(t["eps"])
        rec = m.decode(z)
        outs = {"mean": post.mean, "logvar": post.logvar, "z": z, "recon": rec}
        sum((t["cot." + k] * v).sum() for k, v in outs.items()).backward()
        checks = [(outs[k], t[k], k) for k in outs] + [(x.grad, t["grad.x"], "grad.x")]
        checks += [(p.grad, t["grad." + k], "grad." + k) for k, p in m.named_parameters()]
    elif name.startswith("sit"):
        keys = [k for k in cfg if k not in ("cases", "bn_eps")]
        checks = []
        for case in cfg["cases"]:
            m = S.SiT(**{k: cfg[k] for k in keys})
            _load(m, t)
            c = {k[len(case) + 1:]: v for k, v in t.items() if k.startswith(case + ".")}
            x = c["x"].clone().requires_grad_(True)
            if case == "infer":
                m.eval()
                out = m.inference(x, c["t"], c["y"])
                (c["cot.out"] * out).sum().backward()
                checks.append((out, c["out"], case + ".out"))
            else:
                m.train(case == "train")
                if case == "align":
                    m.requires_grad_(False)
                o = m(x, c["y"], [c["zs.0"]], time_input=c["time_input"], noises=c["noises"],
                      drop_mask=c.get("drop_mask"), align_only=(case == "align"),
                      path_type="linear" if case == "train" else "cosine")
                loss = o["proj_loss"] if case == "align" else \
                    o["denoising_loss"].mean() + 0.5 * o["proj_loss"]
                loss.backward()
                checks += [(o["zs_tilde"][0], c["zs_tilde.0"], case + ".zs_tilde.0"),
                           (o["proj_loss"], c["proj_loss"], case + ".proj_loss")]
                if case == "train":
                    checks += [(o["model_output"], c["model_output"], "train.model_output"),
                               (o["denoising_loss"], c["denoising_loss"], "train.denoising_loss"),
                               (m.bn.running_mean, c["bn.running_mean"], "train.bn.running_mean"),
                               (m.bn.running_var, c["bn.running_var"], "train.bn.running_var")]
                    assert m.bn.num_batches_tracked.item() == c["bn.num_batches_tracked"].item()
            checks.append((x.grad, c["grad.x"], case + ".grad.x"))
            checks += [(p.grad, c["grad." + k], case + ".grad." + k)
                       for k, p in m.named_parameters() if p.requires_grad]
    else:
        keys = [k for k in VIT_TINY] + ["num_register_tokens", "interpolate_antialias",
                                        "interpolate_offset"]
        m = T.DinoVisionTransformer(**{k: cfg[k] for k in keys})
        _load(m, t)
        m.resample_pos_embed_(cfg["pos_grid"])
        m.eval()
        x = t["x"].clone().requires_grad_(True)
        f = m.forward_features(x)
        names = [k for k in ("x_norm_clstoken", "x_norm_patchtokens", "x_norm_regtokens")
                 if "cot." + k in t]
        sum((t["cot." + k] * f[k]).sum() for k in names).backward()
        checks = [(m.pos_embed, t["pos_embed_resampled"], "pos_embed_resampled")]
        checks += [(f[k], t[k], k) for k in names] + [(x.grad, t["grad.x"], "grad.x")]
        checks += [(p.grad, t["grad." + ("pos_embed_resampled" if k == "pos_embed" else k)],
                    "grad." + k) for k, p in m.named_parameters()]
    for a, b, what in checks:
        _close(torch.zeros_like(b) if a is None else a.detach(), b, what, 1e-4)
    print("  read-back of %s: %d comparisons within 1e-4 (float32 rerun)" % (name, len(checks)))


# ============================================================================ counts
def param_counts():
    entries = {}

    def add(name, m, cfg, extra=None):
        params = {k: list(p.shape) for k, p in m.named_parameters()}
        sd = m.state_dict()
        buffers = {k: list(v.shape) for k, v in sd.items() if k not in params}
        e = {"config": cfg, "num_params": sum(p.numel() for p in m.parameters())}
        e.update(extra or {})
        e["params"] = params
        e["buffers"] = buffers
        entries[name] = e
        return e

    for key, preset in (("vae-f8d4", "f8d4"), ("vae-f16d32", "f16d32")):
        m = V.AutoencoderKL(**V.VAE_PRESETS[preset], device="meta")
        e = add(key, m, m.config)
        assert e["num_params"] == V.VAE_PARAM_COUNTS[preset]
    for key, name, C, hw in (("sit-xl/2", "SiT-XL/2", 4, 32), ("sit-xl/1", "SiT-XL/1", 32, 16),
                             ("sit-b/2", "SiT-B/2", 4, 32)):
        m = S.sit_preset(name, input_size=hw, in_channels=C, z_dims=[768], device="meta")
        n_proj = sum(p.numel() for k, p in m.named_parameters() if k.startswith("projectors"))
        n_all = sum(p.numel() for p in m.parameters())
        n_train = sum(p.numel() for p in m.parameters() if p.requires_grad)
        e = add(key, m, m.config, {"num_params_sit": n_all - n_proj, "num_params_projectors": n_proj,
                                   "num_params_trainable": n_train,
                                   "note": "num_params includes the frozen pos_embed and projectors"})
        if (name, C, hw) in S.SIT_PARAM_COUNTS:
            assert e["num_params_sit"] == S.SIT_PARAM_COUNTS[(name, C, hw)]
            assert n_proj == S.PROJECTOR_PARAM_COUNT_768
    m = T.dinov2_preset("b", device="meta")
    add("dinov2-vit-b/14", m, m.config,
        {"note": "checkpoint layout (pos_embed for 518/14 = 37x37 + cls); REPA-E resamples "
                 "pos_embed to [1,1+16*16,768] at load"})
    # counts only for the other DINOv2 variants (ViT-g: SwiGLUFFNFused hidden 4096)
    others = {}
    for a in ("s", "b", "l", "g"):
        for reg in (False, True):
            m = T.dinov2_preset(a, reg=reg, device="meta")
            others["dinov2-vit-%s/14%s" % (a, "-reg" if reg else "")] = \
                sum(p.numel() for p in m.parameters())
    g = T.dinov2_preset("g", device="meta")
    assert tuple(g.blocks[0].mlp.w12.weight.shape) == (8192, 1536)
    assert tuple(g.blocks[0].mlp.w3.weight.shape) == (1536, 4096)
    e = add("dinov2-vit-g/14", g, g.config,
            {"note": "checkpoint layout (pos_embed 37x37 + cls); SwiGLUFFNFused: hidden "
                     "(int(6144*2/3)+7)//8*8 = 4096, mlp.w12 [8192,1536], mlp.w3 [1536,4096]"})
    assert e["num_params"] == others["dinov2-vit-g/14"] == 1136480768
    entries["dinov2_counts"] = others
    path = os.path.join(FIXTURE_DIR, "models", "param_counts.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    text = json.dumps(entries, indent=1)
    text = re.sub(r"\[\s*([-\d.,\s]*?)\s*\]", lambda mo: "[" + re.sub(r"\s+", "", mo.group(1)).replace(",", ", ") + "]", text)
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
    print("  wrote %s (%.0f kB)" % (os.path.relpath(path), os.path.getsize(path) / 1024))


# ============================================================================ main
VAE_TINY_F8 = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, attn_resolutions=(),
                   resolution=16, in_channels=3, out_ch=3, norm_groups=8)
VAE_TINY_ATTN = dict(ch=16, ch_mult=(1, 1, 2), num_res_blocks=2, z_channels=8,
                     attn_resolutions=(4,), resolution=16, in_channels=1, out_ch=1, norm_groups=8)

FIXTURES = {
    "vae_tiny_f8": lambda: vae_fixture(
        "vae_tiny_f8", 1001, VAE_TINY_F8, 3, 2, True,
        "AutoencoderKL tiny f8d4-style (no attention outside mid): encode/sample/decode + backward; "
        "logvar clamp active on latent channels 0 (below -30) and 1 (above 20)"),
    "vae_tiny_attn": lambda: vae_fixture(
        "vae_tiny_attn", 1101, VAE_TINY_ATTN, 1, 2, False,
        "AutoencoderKL tiny f16d32-style (attention at level 2 in encoder and decoder), "
        "1-channel input: encode/sample/decode + backward"),
    "sit_tiny": sit_tiny_fixture,
    "sit_tiny_qknorm": sit_tiny_qknorm_fixture,
    "vit_tiny": lambda: vit_fixture("vit_tiny", 3001, 0),
    "vit_tiny_reg": lambda: vit_fixture("vit_tiny_reg", 3101, 2),
    "vit_tiny_swiglu": lambda: vit_fixture("vit_tiny_swiglu", 3201, 0, VIT_TINY_SWIGLU),
    "param_counts": param_counts,
}


def main(argv):
    names = argv or list(FIXTURES)
    print("models_ref.py: sanity checks")
    check_vae_presets()
    check_sit_pieces()
    for n in names:
        print("== " + n)
        FIXTURES[n]()
        if n != "param_counts":
            verify_readback(n)


if __name__ == "__main__":
    main(sys.argv[1:])
