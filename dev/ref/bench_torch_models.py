"""PyTorch 1.13 side of bench/bench_models.c and bench/bench_step.c.

usage: bench_torch_models.py NAME [THREADS]

Runs ONE benchmark (so that the peak RSS belongs to it alone) on the
reference modules of dev/ref/repae_ref/ and prints one line
    "NAME milliseconds peak_rss_kib others_percent spread_percent"
(median of the timed runs after one warm-up; peak RSS from
resource.getrusage(RUSAGE_SELF).ru_maxrss at the end, which includes the
torch import; others_percent: the share of all cores' time that OTHER
processes used during the timed runs, a disturbance indicator; spread_percent:
(slowest - fastest) / median of the timed runs, -1 for a single run).  Same shapes, same math and the same repetitions as the C
side (BENCH_REPS overrides; the sampler's warm-up is one network call).
Run by `make bench` with 2 threads and OMP_WAIT_POLICY=PASSIVE.

Names:
  host_steadiness_gemm_x60       a control: 60 identical matmuls 1024x768 @ (3072x768)^T per timed
                                 run, 5 runs; its spread is the host's own
  sit_b2_train_B4                SiT-B/2, 4x32x32 latent, batch 4, spec §5 training forward in
                                 train mode, projector 2048 -> 768 after block 4,
                                 loss mean(denoise) + 0.5 proj, backward to all params
  vae_f8d4_train_256_B1          SD-VAE f8d4, 256x256, batch 1, L1 loss, backward to all params
  sample_sit_b2_ode50_cfg_B<n>   SiT-B/2 (no projectors), 50 Euler ODE steps, CFG 1.5 on every
                                 step, float64 state as samplers.py, no_grad
  repae_step_small_full_B32      one REPA-E step (repae_step_ref.py's loop) on the small config:
                                 VAE ch 64 ch_mult 1,2,2 z 4 on 32x32x3, SiT depth 6 width 384
                                 6 heads patch 2 encoder_depth 2 projector 2048, ViT encoder patch 8
                                 width 192 depth 4 (REPA targets), PatchGAN ndf 64 n_layers 3, no LPIPS
  repae_step_small_plain_B32     the same without encoder / GAN / LPIPS: VAE L1+KL update, SiT
                                 denoising update, EMA
  repae_step_sitb2_256_B2        (not in make bench; make bench-paper) one REPA-E step at the paper's
                                 scale: batch 2 of 256x256x3, SD-VAE f8d4, SiT-B/2 encoder_depth 4
                                 projector 2048 -> 768, DINOv2-B/14 at 224 (bicubic resize), PatchGAN
                                 ndf 64 n_layers 3, LPIPS (VGG16, weight 1); median of 3
  phases                         (not in make bench) the full small step's parts, one line each, as
                                 bench/bench_step --phases
  profile NAME                   (not in make bench; bench/profile.sh) NAME's iteration under
                                 torch.profiler: self CPU ms per iteration by op class, one
                                 "class ms" line each (after one warm-up, mean of 3 iterations)
"""
import copy
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repae_ref.sit import SiT, interpolant, sit_preset  # noqa: E402
from repae_ref.vae import AutoencoderKL, vae_f8d4  # noqa: E402
from repae_ref.vae_loss import LPIPS, NLayerDiscriminator, discriminator_loss, generator_loss  # noqa: E402
from repae_ref.vit import DinoVisionTransformer, dinov2_preset  # noqa: E402


def reps(default):
    r = os.environ.get("BENCH_REPS", "")
    return max(1, int(r)) if r else default


def _cpu_snap():
    """(wall s, busy ticks of all cores, this process's ticks) from /proc (None if unreadable)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        with open("/proc/self/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return time.perf_counter(), busy, int(rest[11]) + int(rest[12])  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


def _others_percent(a, b):
    """Share (%) of all cores' time between snapshots a and b used by OTHER processes, -1 if unknown."""
    if a is None or b is None or b[0] <= a[0]:
        return -1.0
    hz, ncpu = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_NPROCESSORS_ONLN")
    return max(0.0, 100.0 * ((b[1] - a[1]) - (b[2] - a[2])) / (hz * ncpu * (b[0] - a[0])))


OTHERS = [-1.0]  # others' CPU share during the latest timed runs
SPREAD = [-1.0]  # (slowest - fastest) / median of the latest timed runs, percent


def median_ms(fn, n, warmup=None):
    (warmup or fn)()
    ts = []
    c0 = _cpu_snap()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    OTHERS[0] = _others_percent(c0, _cpu_snap())
    ts.sort()
    SPREAD[0] = 100.0 * (ts[-1] - ts[0]) / ts[len(ts) // 2] if len(ts) > 1 else -1.0
    return ts[n // 2]


# ----------------------------------------------------------------------------- the host's steadiness
def bench_steadiness(gemms=60):
    a, b = torch.randn(1024, 768), torch.randn(3072, 768)
    out = torch.empty(1024, 3072)

    def run():
        for _ in range(gemms):
            torch.mm(a, b.t(), out=out)

    return median_ms(run, reps(5))


# ----------------------------------------------------------------------------- SiT-B/2 train
def bench_sit_train(N):
    sit = sit_preset("SiT-B/2", input_size=32, in_channels=4, num_classes=1000, encoder_depth=4,
                     projector_dim=2048, z_dims=[768]).train()
    z = torch.randn(N, 4, 32, 32)
    zs = [torch.randn(N, sit.grid ** 2, 768)]
    y = torch.randint(0, 1000, (N,))

    def run():
        out = sit(z, y, zs)
        loss = out["denoising_loss"].mean() + 0.5 * out["proj_loss"]
        loss.backward()
        for p in sit.parameters():
            p.grad = None

    return median_ms(run, reps(3))


# ----------------------------------------------------------------------------- VAE f8d4 train
def bench_vae_train(B, H):
    vae = vae_f8d4().train()
    x = torch.rand(B, 3, H, H) * 2 - 1

    def run():
        _, _, recon = vae(x)
        loss = (x - recon).abs().mean()
        loss.backward()
        for p in vae.parameters():
            p.grad = None

    return median_ms(run, reps(3))


# ----------------------------------------------------------------------------- sampling
def bench_sample(B, steps=50, cfg_scale=1.5, null=1000):
    sit = sit_preset("SiT-B/2", input_size=32, in_channels=4, num_classes=1000, z_dims=[]).eval()
    y = torch.randint(0, 1000, (B,))
    yin = torch.cat([y, torch.full_like(y, null)])

    def run():
        # samplers.py's Euler ODE with CFG on [0, 1]: float64 state, float32 network
        ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
        x = torch.randn(B, 4, 32, 32, dtype=torch.float64)
        with torch.no_grad():
            for i in range(steps):
                t_cur, t_next = ts[i], ts[i + 1]
                xin = torch.cat([x, x])
                t = torch.ones(2 * B, dtype=torch.float64) * t_cur
                out = sit.inference(xin.float(), t.float(), yin).double()
                c, u = out.chunk(2)
                x = x + (t_next - t_cur) * (u + cfg_scale * (c - u))
        return x

    def warm():
        with torch.no_grad():
            sit.inference(torch.zeros(2 * B, 4, 32, 32), torch.full((2 * B,), 0.5), yin)

    return median_ms(run, reps(1), warmup=warm)


# ----------------------------------------------------------------------------- REPA-E step
SMALL = {
    "vae": dict(ch=64, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=4, attn_resolutions=[], resolution=32,
                in_channels=3, out_ch=3),
    "sit": dict(input_size=8, patch_size=2, in_channels=4, hidden_size=384, depth=6, num_heads=6, mlp_ratio=4.0,
                class_dropout_prob=0.1, num_classes=10, encoder_depth=2, projector_dim=2048),
    "enc": dict(img_size=32, patch_size=8, in_chans=3, embed_dim=192, depth=4, num_heads=3, mlp_ratio=4.0,
                init_values=1e-5),
    "disc": dict(input_nc=3, ndf=64, n_layers=3),
}


def set_requires_grad(model, flag):
    for p in model.parameters():
        p.requires_grad = flag


def sit_losses(sit, x, y, zs, time_input=None, noises=None, align_only=False):
    """SiT.forward (spec §5), except that no encoder (zs == []) gives proj_loss 0
    instead of the reference's division by len(zs) = 0."""
    if zs:
        return sit(x, y, zs, time_input=time_input, noises=noises, align_only=align_only)
    xn = sit.bn(x)
    N = xn.shape[0]
    if time_input is None:
        time_input = torch.rand(N, 1, 1, 1)
    if noises is None:
        noises = torch.randn_like(xn)
    a, s, da, ds = interpolant(time_input, "linear")
    x_t = a * xn + s * noises
    target = da * xn + ds * noises
    _, out = sit.run_network(x_t, time_input.flatten(), y, train=sit.training, align_only=align_only)
    return dict(denoising_loss=((out - target) ** 2).mean(dim=(1, 2, 3)), proj_loss=0.0, time_input=time_input,
                noises=noises)


def bench_repae_step(B, full):
    torch.manual_seed(0)
    vae = AutoencoderKL(**SMALL["vae"])
    sit = SiT(z_dims=[192] if full else [], **SMALL["sit"])
    ema = SiT(z_dims=[192] if full else [], **SMALL["sit"])
    ema.load_state_dict(sit.state_dict())
    enc = DinoVisionTransformer(**SMALL["enc"]) if full else None
    disc = NLayerDiscriminator(**SMALL["disc"]) if full else None
    images = torch.randint(0, 256, (B, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (B,))
    return median_ms(repae_step_fn(vae, sit, ema, enc, disc, None, images, labels, enc_size=None), reps(5))


def bench_repae_step_paper(B):
    """The paper's scale with SiT-B/2 (bench_step.c's repae_step_sitb2_256_B2): 256x256 RGB, SD-VAE f8d4,
    SiT-B/2 (encoder_depth 4, projector 2048 -> 768), DINOv2-B/14 at 224 (the reference's preprocess_raw_image:
    ImageNet mean/std, then bicubic resize), PatchGAN ndf 64 n_layers 3, LPIPS (VGG16) with weight 1."""
    torch.manual_seed(0)
    vae = vae_f8d4()
    sit = sit_preset("SiT-B/2", input_size=32, in_channels=4, num_classes=1000, encoder_depth=4,
                     projector_dim=2048, z_dims=[768])
    enc = dinov2_preset("b", img_size=224)
    disc = NLayerDiscriminator(3, 64, 3)
    lpips = LPIPS(1)
    images = torch.randint(0, 256, (B, 3, 256, 256), dtype=torch.uint8)
    labels = torch.randint(0, 1000, (B,))
    return median_ms(repae_step_fn(vae, sit, copy.deepcopy(sit), enc, disc, lpips, images, labels, enc_size=224),
                     reps(3))


def repae_step_fn(vae, sit, ema, enc, disc, lpips, images, labels, enc_size):
    """One REPA-E step (repae_step_ref.py's loop) as a closure; ema: a copy of sit.  No enc/disc: the plain
    step (L1 + KL, no alignment pass, no GAN); enc_size: the encoder's input size (None: the images' own)."""
    full = enc is not None
    set_requires_grad(ema, False)
    if full:
        enc.eval()
        set_requires_grad(enc, False)
        disc.train()
    if lpips is not None:
        lpips.eval()
        set_requires_grad(lpips, False)
    opt_sit = torch.optim.AdamW(sit.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    opt_vae = torch.optim.AdamW(vae.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    opt_disc = (torch.optim.AdamW(disc.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
                if full else None)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ema_decay = 0.9999

    def step():
        zs = []
        if full:
            with torch.no_grad():
                enc_in = ((images.float() / 255) - mean) / std
                if enc_size is not None:
                    enc_in = F.interpolate(enc_in, size=(enc_size, enc_size), mode="bicubic", align_corners=False)
                zs = [enc.forward_features(enc_in)["x_norm_patchtokens"]]
        vae.train()
        sit.train()
        x = images.float() / 127.5 - 1
        posterior, z, recon = vae(x)
        set_requires_grad(sit, False)
        sit.eval()
        if full:
            vae_loss, _ = generator_loss(x, recon, posterior.mean, posterior.logvar, disc, lpips, kl_weight=1e-6,
                                         disc_weight=0.1)
            out_a = sit(z, labels, zs, align_only=True)
            vae_loss = vae_loss + 1.5 * out_a["proj_loss"]
            time_input, noises = out_a["time_input"], out_a["noises"]
        else:  # L1 + KL only; no alignment pass (it would carry no gradient)
            kl = 0.5 * (posterior.mean ** 2 + posterior.logvar.exp() - 1 - posterior.logvar).sum(dim=(1, 2, 3)).mean()
            vae_loss = (x - recon).abs().mean() + 1e-6 * kl
            time_input, noises = None, None
        opt_vae.zero_grad(set_to_none=True)
        vae_loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt_vae.step()
        if full:
            d_loss, _ = discriminator_loss(x, recon, disc)
            opt_disc.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), 1.0)
            opt_disc.step()
        set_requires_grad(sit, True)
        sit.train()
        out_s = sit_losses(sit, z.detach(), labels, zs, time_input=time_input, noises=noises)
        sit_loss = out_s["denoising_loss"].mean() + 0.5 * out_s["proj_loss"]
        opt_sit.zero_grad(set_to_none=True)
        sit_loss.backward()
        torch.nn.utils.clip_grad_norm_(sit.parameters(), 1.0)
        opt_sit.step()
        with torch.no_grad():
            ema_state, state = ema.state_dict(), sit.state_dict()
            for k, v in state.items():
                if v.dtype.is_floating_point:
                    ema_state[k].mul_(ema_decay).add_(v, alpha=1 - ema_decay)
                else:
                    ema_state[k].copy_(v)

    return step


def bench_phases(B=32):
    """The parts of the full small step, timed separately (as bench_step --phases); prints one line each."""
    torch.manual_seed(0)
    vae = AutoencoderKL(**SMALL["vae"]).train()
    sit = SiT(z_dims=[192], **SMALL["sit"])
    ema = SiT(z_dims=[192], **SMALL["sit"])
    set_requires_grad(ema, False)
    enc = DinoVisionTransformer(**SMALL["enc"]).eval()
    set_requires_grad(enc, False)
    disc = NLayerDiscriminator(**SMALL["disc"]).train()
    images = torch.randint(0, 256, (B, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (B,))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = images.float() / 127.5 - 1
    enc_in = ((images.float() / 255) - mean) / std
    zs = [torch.randn(B, 16, 192)]
    z = torch.randn(B, 4, 8, 8)
    recon = (0.9 * x).requires_grad_(True)

    def encoder():
        with torch.no_grad():
            enc.forward_features(enc_in)["x_norm_patchtokens"]

    def vae_fb():
        _, _, r = vae(x)
        (x - r).abs().mean().backward()
        for p in vae.parameters():
            p.grad = None

    def sit_align():
        set_requires_grad(sit, False)
        sit.eval()
        zz = z.clone().requires_grad_(True)
        out = sit(zz, labels, zs, align_only=True)
        (1.5 * out["proj_loss"]).backward()

    def sit_train():
        set_requires_grad(sit, True)
        sit.train()
        out = sit(z, labels, zs)
        (out["denoising_loss"].mean() + 0.5 * out["proj_loss"]).backward()
        for p in sit.parameters():
            p.grad = None

    def disc_3():
        set_requires_grad(disc, False)
        (-disc(recon).mean()).backward()
        recon.grad = None
        set_requires_grad(disc, True)
        d_loss, _ = discriminator_loss(x, recon, disc)
        d_loss.backward()
        for p in disc.parameters():
            p.grad = None

    opts = [torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
            for m in (vae, disc, sit)]
    set_requires_grad(sit, True)

    def optim():
        for m, o in zip((vae, disc, sit), opts):
            for p in m.parameters():
                if p.grad is None:
                    p.grad = torch.randn_like(p) * 1e-3
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            o.step()
        with torch.no_grad():
            ema_state, state = ema.state_dict(), sit.state_dict()
            for k, v in state.items():
                if v.dtype.is_floating_point:
                    ema_state[k].mul_(0.9999).add_(v, alpha=1 - 0.9999)
                else:
                    ema_state[k].copy_(v)

    for name, fn in (("phase_encoder_fwd", encoder), ("phase_vae_fwd_bwd", vae_fb),
                     ("phase_sit_align_fwd_bwd", sit_align), ("phase_sit_train_fwd_bwd", sit_train),
                     ("phase_disc_passes", disc_3), ("phase_clip_adamw_ema", optim)):
        ms = median_ms(fn, reps(5))
        print(f"{name} {ms:.4f} -1 {OTHERS[0]:.1f} {SPREAD[0]:.1f}", flush=True)


# Op classes for the profile table (bench/profile.sh puts ours in the same ones).
TORCH_OP_CLASSES = [
    ("convolution", ("conv", "mkldnn_convolution")),
    ("gemm (linear, matmul)", ("addmm", "aten::mm", "bmm", "matmul", "linear", "aten::dot")),
    ("normalisation", ("norm",)),
    ("activations", ("silu", "gelu", "relu", "leaky", "sigmoid", "tanh")),
    ("attention softmax", ("softmax",)),
    ("optimizer + EMA", ("adamw", "addcdiv", "addcmul", "lerp", "sqrt", "foreach", "clip", "norm_")),
    ("memory (copy, fill, cat)", ("copy_", "fill_", "zero_", "empty", "clone", "cat", "contiguous", "to", "pad")),
]


def op_class(key):
    k = key.lower()
    for name, needles in TORCH_OP_CLASSES:
        if any(n in k for n in needles):
            return name
    return "other"


def profile_ms(fn, n, warmup=None):
    """Replaces median_ms under `profile NAME`: one warm-up, then 3 iterations under the profiler."""
    from torch.profiler import ProfilerActivity, profile
    (warmup or fn)()
    iters = 3
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            fn()
    wall = (time.perf_counter() - t0) * 1e3 / iters
    by_class = {}
    for e in prof.key_averages():
        c = op_class(e.key)
        by_class[c] = by_class.get(c, 0.0) + e.self_cpu_time_total / 1e3 / iters
    for c, ms in sorted(by_class.items(), key=lambda kv: -kv[1]):
        print(f"{c}\t{ms:.1f}")
    print(f"wall (under the profiler)\t{wall:.1f}")
    return wall


def main():
    if sys.argv[1] == "profile":  # bench/profile.sh: NAME's iteration by op class
        global median_ms
        median_ms = profile_ms
        del sys.argv[1]
    name = sys.argv[1]
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    torch.manual_seed(0)
    if name == "phases":  # not part of make bench: the full small step's parts (bench_step --phases)
        bench_phases()
        return
    if name == "host_steadiness_gemm_x60":
        ms = bench_steadiness()
    elif name == "sit_b2_train_B4":
        ms = bench_sit_train(4)
    elif name == "vae_f8d4_train_256_B1":
        ms = bench_vae_train(1, 256)
    elif name.startswith("sample_sit_b2_ode50_cfg_B"):
        ms = bench_sample(int(name.rsplit("B", 1)[1]))
    elif name == "repae_step_small_full_B32":
        ms = bench_repae_step(32, True)
    elif name == "repae_step_small_plain_B32":
        ms = bench_repae_step(32, False)
    elif name == "repae_step_sitb2_256_B2":
        ms = bench_repae_step_paper(2)
    else:
        sys.exit(f"bench_torch_models.py: unknown benchmark '{name}'")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"{name} {ms:.4f} {rss} {OTHERS[0]:.1f} {SPREAD[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
