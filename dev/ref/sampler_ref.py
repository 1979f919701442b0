"""Reference samplers for src/diffusion/sampler.c (spec §9) and the .npz
fixtures for src/io/npz.c.

Writes
  tests/fixtures/diffusion/sampler.safetensors
      coef.b [K+1], coef.c [K+1, C]   the toy velocity model's label tables
      x0 [B, C, H, W], y [B]          initial noise and labels
      sde_noise [S-1, B, C, H, W]     the noise of each SDE step (steps 0 … S-2)
      <case>.out [B, C, H, W]         final samples, <case>.nfe, <case>.guided_calls
      grid.<mode>.<N>                 time grids as int64 bit patterns of the float64 values
  tests/fixtures/diffusion/interpolant.safetensors
      x0, eps, t and <path>.xt, <path>.vt of the float32 training interpolant (spec §5)
  tests/fixtures/diffusion/numpy_written.npz      np.savez (stored members)
  tests/fixtures/diffusion/numpy_compressed.npz   np.savez_compressed (deflated members)
  tests/fixtures/diffusion/numpy_npy_v2_v3.npz    the same arrays as .npy format 2.0 / 3.0 members

The samplers below follow samplers.py of the reference as the spec describes
it: float64 state, the network evaluated in float32, CFG on [x; x] with labels
[y; null] iff cfg_scale > 1 and low <= t_cur <= high, the SDE's CFG applied to
the drift after the score conversion, the SDE's last step noiseless.  The SDE
noise is passed in (drawn as float32 here) instead of torch.randn_like, so the
C test can feed the same values.

The network is a toy that C can evaluate with the same float32 operations in
the same order:  v = (0.5·t − 0.75)·x + b[y]·x/(1 + x²) + c[y, channel].
It depends on the label, so guidance changes the result.

Run with Debian's torch:  /usr/bin/python3 dev/ref/sampler_ref.py
"""
import io
import os
import sys
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FIXTURE_DIR, save_fixture  # noqa: E402

SEED = 4321
B, C, H, W = 3, 2, 3, 4
K = 5  # classes; label K is the null class
SDE_STEPS = 12

torch.set_num_threads(1)


class Toy:
    def __init__(self, b, c):
        self.b, self.c = b, c
        self.calls = 0
        self.guided_calls = 0

    def __call__(self, x, t, y):
        assert x.dtype == torch.float32 and t.dtype == torch.float32
        self.calls += 1
        if x.shape[0] == 2 * B:
            self.guided_calls += 1
        a = (0.5 * t - 0.75).view(-1, 1, 1, 1)
        q = x / (1 + x * x)
        return a * x + self.b[y].view(-1, 1, 1, 1) * q + self.c[y][:, :, None, None]


def coeffs(path, t):
    if path == "linear":
        return 1 - t, t, -1.0, 1.0
    a = t * np.pi / 2
    return torch.cos(a), torch.sin(a), -np.pi / 2 * torch.sin(a), np.pi / 2 * torch.cos(a)


def score_from_velocity(v, x, t, path):
    """samplers.py get_score_from_velocity, t a float64 scalar tensor."""
    alpha, sigma, d_alpha, d_sigma = coeffs(path, t)
    if path == "linear":
        d_alpha = torch.ones_like(x) * -1
        d_sigma = torch.ones_like(x)
    r = alpha / d_alpha
    var = sigma ** 2 - r * d_sigma * sigma
    return (r * v - x) / var


def guided(cfg, t_cur):
    return cfg["w"] > 1.0 and cfg["low"] <= t_cur <= cfg["high"]


def net_eval(model, x, t_cur, y, g):
    """One network call in float32 on [x; x] / [y; null] if guided; returns float64 halves."""
    if g:
        xin = torch.cat([x, x])
        yin = torch.cat([y, torch.full_like(y, K)])
    else:
        xin, yin = x, y
    t = torch.ones(xin.shape[0], dtype=torch.float64) * t_cur
    out = model(xin.float(), t.float(), yin).double()
    return (out.chunk(2) if g else (out, None)), xin


def cfg_combine(c, u, w):
    return u + w * (c - u)


def ode_sampler(model, x0, y, cfg):
    N = cfg["steps"]
    ts = torch.linspace(1, 0, N + 1, dtype=torch.float64)
    x = x0.double()
    for i in range(N):
        t_cur, t_next = ts[i], ts[i + 1]
        g = guided(cfg, t_cur)
        (c, u), _ = net_eval(model, x, t_cur, y, g)
        d = cfg_combine(c, u, cfg["w"]) if g else c
        x_next = x + (t_next - t_cur) * d
        if cfg["heun"] and i < N - 1:
            (c2, u2), _ = net_eval(model, x_next, t_next, y, g)
            d2 = cfg_combine(c2, u2, cfg["w"]) if g else c2
            x_next = x + (t_next - t_cur) * (0.5 * d + 0.5 * d2)
        x = x_next
    return x


def sde_sampler(model, x0, y, cfg, noise):
    N = cfg["steps"]
    ts = torch.cat([torch.linspace(1.0, 0.04, N, dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)])
    x = x0.double()
    path = cfg["path"]

    def drift(x, t_cur):
        g = guided(cfg, t_cur)
        (c, u), _ = net_eval(model, x, t_cur, y, g)
        diffusion = 2 * t_cur
        dc = c - 0.5 * diffusion * score_from_velocity(c, x, t_cur, path)
        if not g:
            return dc
        du = u - 0.5 * diffusion * score_from_velocity(u, x, t_cur, path)
        return cfg_combine(dc, du, cfg["w"])

    for i in range(N - 1):
        t_cur, t_next = ts[i], ts[i + 1]
        dt = t_next - t_cur
        eps = noise[i].double()
        deps = eps * torch.sqrt(torch.abs(dt))
        d = drift(x, t_cur)
        x = x + d * dt + torch.sqrt(2 * t_cur) * deps
    t_cur, t_next = ts[N - 1], ts[N]
    d = drift(x, t_cur)
    return x + (t_next - t_cur) * d


# name, mode, heun, steps, w, low, high — crossed with the paths
CASES = []
for mode, heun, steps in (("euler", 0, 10), ("heun", 1, 10), ("sde", 0, SDE_STEPS)):
    for cname, w, low, high in (("nocfg", 1.0, 0.0, 1.0), ("cfg", 2.5, 0.0, 1.0), ("cfgint", 2.5, 0.0, 0.65)):
        CASES.append((f"{mode}.{cname}", mode, heun, steps, w, low, high))
# 20 Euler steps put a grid point at t = 0.65 (as torch.linspace rounds it): the
# inclusive interval test on that exact value; and w below 1 = no guidance.
CASES.append(("euler20.cfgint", "euler", 0, 20, 2.5, 0.0, 0.65))
CASES.append(("heun.cfglow", "heun", 1, 10, 2.5, 0.3, 0.7))
CASES.append(("sde.w09", "sde", 0, SDE_STEPS, 0.9, 0.0, 1.0))
CASES.append(("sde1.cfg", "sde", 0, 1, 2.5, 0.0, 1.0))
CASES.append(("sde2.cfg", "sde", 0, 2, 2.5, 0.0, 1.0))


def sampler_fixture():
    g = torch.Generator().manual_seed(SEED)
    b = (torch.rand(K + 1, generator=g) * 2 - 1).float()
    c = (torch.rand(K + 1, C, generator=g) - 0.5).float()
    x0 = torch.randn(B, C, H, W, generator=g)
    y = torch.tensor([1, 4, 0], dtype=torch.int64)
    noise = torch.randn(SDE_STEPS - 1, B, C, H, W, generator=g)
    out = {"coef.b": b, "coef.c": c, "x0": x0, "y": y, "sde_noise": noise}
    for name, mode, heun, steps, w, low, high in CASES:
        for path in ("linear", "cosine"):
            cfg = dict(steps=steps, heun=heun, w=w, low=low, high=high, path=path)
            model = Toy(b, c)
            if mode == "sde":
                x = sde_sampler(model, x0, y, cfg, noise)
                nfe = steps
            else:
                x = ode_sampler(model, x0, y, cfg)
                nfe = 2 * steps - 1 if heun else steps
            assert model.calls == nfe, (name, model.calls, nfe)
            key = f"{name}.{path}"
            out[key + ".out"] = x.float()
            out[key + ".nfe"] = torch.tensor([model.calls])
            out[key + ".guided_calls"] = torch.tensor([model.guided_calls])
    # 8 and 16 points: the vector body of torch's kernel ends exactly at the
    # last point (no scalar tail).
    for N in (1, 2, 7, 10, 15, 20, 50):
        out[f"grid.ode.{N}"] = torch.linspace(1, 0, N + 1, dtype=torch.float64).view(torch.int64)
    for N in (1, 2, 8, 12, 16, 250):
        ts = torch.cat([torch.linspace(1.0, 0.04, N, dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)])
        out[f"grid.sde.{N}"] = ts.view(torch.int64)
    save_fixture("diffusion/sampler", out, __file__, SEED, B=B, C=C, H=H, W=W, K=K, sde_steps=SDE_STEPS,
                 model="v = (0.5 t - 0.75) x + b[y] x/(1+x^2) + c[y,ch]")


def interpolant_fixture():
    g = torch.Generator().manual_seed(SEED + 1)
    N, n = 6, 10
    x0 = torch.randn(N, n, generator=g)
    eps = torch.randn(N, n, generator=g)
    t = torch.rand(N, generator=g)
    t[0], t[1] = 0.0, 1.0
    out = {"x0": x0, "eps": eps, "t": t}
    for path in ("linear", "cosine"):
        tt = t.view(-1, 1)
        if path == "linear":
            alpha, sigma, d_alpha, d_sigma = 1 - tt, tt, -1, 1
        else:
            alpha, sigma = torch.cos(tt * np.pi / 2), torch.sin(tt * np.pi / 2)
            d_alpha, d_sigma = -np.pi / 2 * torch.sin(tt * np.pi / 2), np.pi / 2 * torch.cos(tt * np.pi / 2)
        out[f"{path}.xt"] = alpha * x0 + sigma * eps
        out[f"{path}.vt"] = d_alpha * x0 + d_sigma * eps
    save_fixture("diffusion/interpolant", out, __file__, SEED + 1)


def npz_arrays():
    """The arrays of the numpy-written npz fixtures; test_npz.c rebuilds them."""
    arr_0 = ((np.arange(5 * 8 * 8 * 3) * 7 + 3) % 256).astype(np.uint8).reshape(5, 8, 8, 3)
    mu = (np.arange(4) / 3.0 - 0.5).astype(np.float64)
    sigma = (np.arange(6).reshape(2, 3) * 0.25 - 1).astype(np.float32)
    scalar = np.array(3.5, dtype=np.float64)
    return dict(arr_0=arr_0, mu=mu, sigma=sigma, scalar=scalar)


def _same_npz(path, arrays, compressed):
    if not os.path.exists(path):
        return False
    with zipfile.ZipFile(path) as zf:
        want = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        if any(i.compress_type != want for i in zf.infolist()):
            return False
    with np.load(path) as z:
        return sorted(z.files) == sorted(arrays) and all(
            z[k].dtype == v.dtype and np.array_equal(z[k], v) for k, v in arrays.items())


def npz_fixtures():
    d = os.path.join(FIXTURE_DIR, "diffusion")
    os.makedirs(d, exist_ok=True)
    arrays = npz_arrays()
    for name, save in (("numpy_written.npz", np.savez), ("numpy_compressed.npz", np.savez_compressed)):
        path = os.path.join(d, name)
        # zip entries carry the write time: keep an equivalent file rather
        # than churn it on every `make fixtures`.
        if not _same_npz(path, arrays, compressed=save is np.savez_compressed):
            save(path, **arrays)
    # .npy format versions 2.0 and 3.0 (numpy writes them for headers over
    # 64 KiB and for non-Latin-1 field names): the same arrays, written member
    # by member with a fixed zip date, so the file is the same on every run.
    with zipfile.ZipFile(os.path.join(d, "numpy_npy_v2_v3.npz"), "w", zipfile.ZIP_STORED) as zf:
        versions = {"arr_0": (2, 0), "mu": (3, 0), "sigma": (2, 0), "scalar": (1, 0)}
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v, version=versions[k])
            zf.writestr(zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    for name in ("numpy_written.npz", "numpy_compressed.npz", "numpy_npy_v2_v3.npz"):
        back = np.load(os.path.join(d, name))
        for k, v in arrays.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), (name, k)


if __name__ == "__main__":
    sampler_fixture()
    interpolant_fixture()
    npz_fixtures()
    print("wrote tests/fixtures/diffusion/{sampler,interpolant}.safetensors and numpy_{written,compressed}.npz")
