"""Reference evaluation statistics (ADM suite) and their test fixtures.

A numpy/scipy re-implementation of the formulas in openai/guided-diffusion
evaluations/evaluator.py, written from the spec (section 10.2) and that file:
  * FIDStatistics.frechet_distance (scipy sqrtm, 1e-6 retry, imaginary check),
  * Evaluator.compute_statistics (np.mean in float32, np.cov in float64),
  * Evaluator.compute_inception_score (float32 softmax and float32 numpy),
  * ManifoldEstimator / DistanceBlock (fp16 distances with a per-block fp32
    fallback, k = 3 radii by np.partition, <= comparisons),
plus PSNR and SSIM the way skimage.metrics computes them (skimage is not
installed here, so its algorithm is spelled out with scipy.ndimage).

Writes tests/fixtures/eval/{fid,is,pr,image}.safetensors (about 0.5 MB in
all).  Needs only numpy and scipy (Debian's /usr/bin/python3); deterministic.
Run: /usr/bin/python3 dev/ref/metrics_ref.py
"""
import json
import os
import struct
import sys

import numpy as np
import scipy
from scipy import linalg, ndimage

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "eval")
SEED = 20250611


# ---------------------------------------------------------------- file output
def write_safetensors(path, tensors, metadata):
    """Like fixture_io.write_safetensors, but numpy-only and keeping float64
    (the FID references need double precision)."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64",
                 np.dtype(np.uint8): "U8"}[a.dtype]
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def save(name, tensors, **meta):
    m = {"script": os.path.basename(__file__), "seed": SEED, "numpy": np.__version__, "scipy": scipy.__version__}
    m.update(meta)
    path = os.path.join(OUT_DIR, name + ".safetensors")  # name: fid, is, pr, image
    write_safetensors(path, tensors, m)
    print("wrote", os.path.relpath(path, REPO), f"({os.path.getsize(path)} bytes)")


def f64(x):
    return np.array([x], dtype=np.float64).reshape(1)


# ---------------------------------------------------------------- FID (ADM)
def compute_statistics(acts):
    """Evaluator.compute_statistics: float32 mean (numpy sums axis 0 row by
    row in float32), float64 unbiased covariance."""
    return np.mean(acts, axis=0), np.cov(acts, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6, force_offset=False, f64_mean=False):
    """FIDStatistics.frechet_distance.  force_offset takes the 1e-6 retry path
    directly; f64_mean computes ||mu1 - mu2||^2 in float64 (ADM: in the mus'
    dtype, float32 for computed statistics).  Returns (fid, tr sqrtm, offset used)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if f64_mean:
        mu1, mu2 = mu1.astype(np.float64), mu2.astype(np.float64)
    diff = mu1 - mu2
    used = False
    covmean = None
    if not force_offset:
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if force_offset or not np.isfinite(covmean).all():
        used = True
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component {}".format(np.max(np.abs(covmean.imag))))
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean), float(tr_covmean), used


def eig_trace_sqrt(s1, s2):
    """Our formula (frechet.c) in numpy, for the record."""
    w, V = np.linalg.eigh(s1)
    A = V * np.sqrt(np.clip(w, 0, None))
    ev = np.linalg.eigvalsh(A.T @ s2 @ A)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def fid_fixture(rng):
    t = {}
    cases = []

    def add(name, x1, x2, check_rel=None):
        x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
        mu1, s1 = compute_statistics(x1)
        mu2, s2 = compute_statistics(x2)
        assert mu1.dtype == np.float32 and s1.dtype == np.float64
        fid, trs, used = frechet_distance(mu1, s1, mu2, s2)
        fid64, _, _ = frechet_distance(mu1, s1, mu2, s2, f64_mean=True)
        fid_off, trs_off, _ = frechet_distance(mu1, s1, mu2, s2, force_offset=True, f64_mean=True)
        ours = eig_trace_sqrt(s1, s2)
        print(f"  fid {name}: N={len(x1)},{len(x2)} D={x1.shape[1]} fid={fid:.10g} tr sqrtm={trs:.12g} "
              f"(eig {ours:.12g}, rel {abs(ours - trs) / trs:.2g}) retry={used} offset fid={fid_off:.10g}")
        if check_rel is not None:
            assert abs(ours - trs) <= check_rel * trs, (name, ours, trs)
        t.update({f"{name}.x1": x1, f"{name}.x2": x2, f"{name}.mu1": mu1, f"{name}.mu2": mu2,
                  f"{name}.mu1_f64": np.mean(x1.astype(np.float64), axis=0),
                  f"{name}.sigma1": s1, f"{name}.sigma2": s2,
                  f"{name}.fid": f64(fid), f"{name}.fid_f64mean": f64(fid64), f"{name}.trace_sqrt": f64(trs),
                  f"{name}.fid_offset": f64(fid_off), f"{name}.trace_sqrt_offset": f64(trs_off)})
        cases.append(name)

    D = 64
    L1 = rng.standard_normal((D, D)) / np.sqrt(D)
    L2 = L1 + 0.3 * rng.standard_normal((D, D)) / np.sqrt(D)
    # Well conditioned: correlated Gaussians, different means and covariances.
    add("rand", rng.standard_normal((300, D)) @ L1 + 0.5, rng.standard_normal((400, D)) @ L2 + 0.6, 1e-9)
    # Fewer samples than dimensions: both covariances singular (rank 39 and 49).
    add("sing", rng.standard_normal((40, D)) @ L1, 1.3 * rng.standard_normal((50, D)) @ L1 + 0.2, 1e-6)
    # Constant and duplicated features (exact zero rows/columns in Σ) and N < D.
    a = rng.standard_normal((30, D)) @ L1
    b = 1.2 * rng.standard_normal((120, D)) @ L2 + 0.1
    a[:, :3] = 0
    b[:, :3] = 0.5
    a[:, 5] = a[:, 6]
    add("const", a, b, 1e-6)
    # Same features shifted: covariances equal up to float32 rounding of x + delta.
    x = rng.standard_normal((200, D)) @ L1 + 1.0
    add("shift", x, x + rng.uniform(-0.5, 0.5, D).astype(np.float32), 1e-9)
    save("fid", t, cases=",".join(cases), dim=D)


# ---------------------------------------------------------------- IS (ADM)
def softmax_f32(logits):
    """TF's float32 softmax."""
    z = logits.astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def inception_score_adm(preds, split_size=5000):
    """Evaluator.compute_inception_score after the softmax (float32 numpy)."""
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def inception_score_f64(logits=None, probs=None, split_size=5000):
    """The same in float64 from logits (log-softmax) or from probabilities."""
    if logits is not None:
        z = logits.astype(np.float64)
        logp = z - (z.max(1, keepdims=True) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)))
        p = np.exp(logp)
    else:
        p = probs.astype(np.float64)
        with np.errstate(divide="ignore"):
            logp = np.log(p)
    scores = []
    for i in range(0, len(p), split_size):
        pp, lp = p[i:i + split_size], logp[i:i + split_size]
        logbar = np.log(pp.mean(0))
        kl = np.where(pp > 0, pp * (lp - logbar[None, :]), 0.0).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), np.array(scores, dtype=np.float64)


def is_fixture(rng):
    t = {}
    # A: 400 samples, 100 classes, splits of 150 (the last one has 100 rows).
    la = (3.0 * rng.standard_normal((400, 100))).astype(np.float32)
    adm = inception_score_adm(softmax_f32(la), 150)
    ref, splits = inception_score_f64(logits=la, split_size=150)
    print(f"  IS A: adm {adm:.9g} f64 {ref:.12g} splits {splits}")
    t.update({"a.logits": la, "a.is": f64(ref), "a.is_adm": f64(adm), "a.splits": splits})
    # B: 64 samples, the real 1008 classes, peaked rows, one (partial) ADM split of 5000.
    lb = (8.0 * rng.standard_normal((64, 1008))).astype(np.float32)
    lb[np.arange(64), rng.integers(0, 1008, 64)] += 30.0
    pb = softmax_f32(lb)
    adm = inception_score_adm(pb)
    ref, _ = inception_score_f64(logits=lb)
    refp, _ = inception_score_f64(probs=pb)
    print(f"  IS B: adm {adm:.9g} f64 {ref:.12g} from probs {refp:.12g}")
    assert np.isfinite(adm)
    t.update({"b.logits": lb, "b.probs": pb, "b.is": f64(ref), "b.is_adm": f64(adm), "b.is_probs": f64(refp)})
    save("is", t)


# ---------------------------------------------------------------- P/R (ADM)
class Counter:
    blocks = 0
    fp32_blocks = 0


def pairwise_distances(U, V, counter, fp16=True):
    """DistanceBlock.pairwise_distances: fp16 first, fp32 if any value of the
    block is non-finite.  fp16 ops: cast, square (rounded), sum (fp32 accum,
    here float64 then rounded), matmul (fp32 accum), 2*mm, -, +, max(., 0)."""
    counter.blocks += 1
    with np.errstate(over="ignore", invalid="ignore"):
        if fp16:
            U16, V16 = U.astype(np.float16), V.astype(np.float16)
            nu = np.square(U16).astype(np.float64).sum(1).astype(np.float32).astype(np.float16)
            nv = np.square(V16).astype(np.float64).sum(1).astype(np.float32).astype(np.float16)
            mm = (U16.astype(np.float64) @ V16.astype(np.float64).T).astype(np.float32).astype(np.float16)
            d = np.maximum((nu[:, None] - np.float16(2) * mm) + nv[None, :], np.float16(0))
            if np.isfinite(d).all():
                return d.astype(np.float32)
            counter.fp32_blocks += 1
        nu = np.square(U).astype(np.float64).sum(1).astype(np.float32)
        nv = np.square(V).astype(np.float64).sum(1).astype(np.float32)
        mm = (U.astype(np.float64) @ V.astype(np.float64).T).astype(np.float32)
        return np.maximum((nu[:, None] - np.float32(2) * mm) + nv[None, :], np.float32(0))


def manifold_radii(features, counter, row_batch, col_batch, k=3, fp16=True):
    """ManifoldEstimator.manifold_radii with nhood_sizes=(k,)."""
    n = len(features)
    radii = np.zeros([n], dtype=np.float32)
    distance_batch = np.zeros([row_batch, n], dtype=np.float32)
    seq = np.arange(k + 1, dtype=np.int32)
    for b1 in range(0, n, row_batch):
        e1 = min(b1 + row_batch, n)
        for b2 in range(0, n, col_batch):
            e2 = min(b2 + col_batch, n)
            distance_batch[0:e1 - b1, b2:e2] = pairwise_distances(features[b1:e1], features[b2:e2], counter, fp16)
        radii[b1:e1] = np.partition(distance_batch[0:e1 - b1, :], seq, axis=1)[:, k]
    return radii


def evaluate_pr(f1, r1, f2, r2, counter, row_batch, col_batch, fp16=True, strict=False):
    """ManifoldEstimator.evaluate_pr + DistanceBlock.less_thans; returns
    (precision, recall).  strict=True uses < instead of <= (a check that the
    fixture distinguishes them)."""
    s1 = np.zeros(len(f1), dtype=bool)
    s2 = np.zeros(len(f2), dtype=bool)
    cmp = np.less if strict else np.less_equal
    for b1 in range(0, len(f1), row_batch):
        e1 = b1 + row_batch
        for b2 in range(0, len(f2), col_batch):
            e2 = b2 + col_batch
            d = pairwise_distances(f1[b1:e1], f2[b2:e2], counter, fp16)
            s1[b1:e1] |= cmp(d, r2[b2:e2][None, :]).any(axis=1)
            s2[b2:e2] |= cmp(d, r1[b1:e1][:, None]).any(axis=0)
    return float(s2.mean()), float(s1.mean())


def pr_case(t, name, ref, samp, block, require_lt_differs=False, require_fp32_differs=False):
    ref, samp = ref.astype(np.float32), samp.astype(np.float32)
    c = Counter()
    rr = manifold_radii(ref, c, block, block)
    rs = manifold_radii(samp, c, block, block)
    p, r = evaluate_pr(ref, rr, samp, rs, c, block, block)
    lt = evaluate_pr(ref, rr, samp, rs, Counter(), block, block, strict=True)
    c32 = Counter()
    rr32 = manifold_radii(ref, c32, block, block, fp16=False)
    rs32 = manifold_radii(samp, c32, block, block, fp16=False)
    p32, r32 = evaluate_pr(ref, rr32, samp, rs32, c32, block, block, fp16=False)
    print(f"  P/R {name}: P={p:.6g} R={r:.6g} (strict < : {lt[0]:.6g} {lt[1]:.6g}; fp32 only: {p32:.6g} {r32:.6g}) "
          f"blocks {c.blocks}, fp32 fallbacks {c.fp32_blocks}; fp16 radii != fp32 radii: "
          f"{int((rr != rr32).sum()) + int((rs != rs32).sum())}")
    if require_lt_differs:
        assert lt != (p, r), f"{name}: ties do not matter in this case"
    if require_fp32_differs:
        assert (rr != rr32).any(), f"{name}: fp16 rounding does not show in the radii"
    t.update({f"{name}.ref": ref, f"{name}.samp": samp, f"{name}.radii_ref": rr, f"{name}.radii_samp": rs,
              f"{name}.radii_ref_fp32": rr32, f"{name}.radii_samp_fp32": rs32,
              f"{name}.pr": np.array([p, r], dtype=np.float64), f"{name}.pr_fp32": np.array([p32, r32]),
              f"{name}.counts": np.array([c.blocks, c.fp32_blocks], dtype=np.int64),
              f"{name}.block": np.array([block], dtype=np.int64)})


def pr_fixture(rng):
    t = {}
    # Small integers: every fp32 sum is exact, so the fp16 emulation is exact
    # too, and distances tie all the time (<= vs < matters).
    pr_case(t, "ties", rng.integers(-2, 3, (150, 16)), rng.integers(-2, 3, (130, 16)) + (rng.random((130, 16)) < 0.2),
            block=64, require_lt_differs=True)
    # Larger integers: distances above 2048 where fp16 spacing is >= 2, still exact in fp32.
    pr_case(t, "wide", rng.integers(-25, 26, (150, 16)), rng.integers(-22, 23, (140, 16)) + 3,
            block=48, require_fp32_differs=True)
    # Generic floats (fp16 rounding of fp32 sums in both implementations).
    pr_case(t, "rand", rng.standard_normal((300, 64)), 1.1 * rng.standard_normal((250, 64)) + 0.1, block=128)
    # Per-block fp32 fallback: a few rows whose fp16 norm overflows (16·240² > 65504),
    # and two distinct rows with ||u||² = 40000, whose fp16 2·u·v overflows to +inf:
    # a finite distance 0 in fp16 (no fallback), as in the evaluator.
    ref = rng.integers(-3, 4, (120, 16)).astype(np.float32)
    samp = rng.integers(-3, 4, (100, 16)).astype(np.float32) + 1
    ref[40:44] *= 80
    ref[44:46] = 80 * np.sign(ref[44:46] + 0.5)
    samp[70:73] *= 80
    ref[2] = 50.0
    ref[3] = 50.0
    ref[3, 0] = 49.0
    with np.errstate(over="ignore"):
        d16 = pairwise_distances(ref[2:4], ref[2:4], Counter())
        d32 = pairwise_distances(ref[2:4], ref[2:4], Counter(), fp16=False)
    assert (d16 == 0).all() and d32[0, 1] == 1.0, (d16, d32)
    pr_case(t, "fallback", ref, samp, block=32)
    # float16 rounding edge cases: ties, subnormals, overflow threshold.
    edge = np.array([0.0, -0.0, 1.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -11 + 2 ** -24, 2048.0 + 1.0,
                     2048.0 + 3.0, 65504.0, 65519.0, 65519.996, 65520.0, -65520.0, 1e6, 2 ** -14, 2 ** -14 * 0.999,
                     2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -25, 1e-10, -1e-10, np.inf, -np.inf],
                    dtype=np.float32)
    rand = np.concatenate([rng.standard_normal(2000) * 10.0 ** rng.integers(-8, 6, 2000),
                           rng.uniform(-70000, 70000, 200)]).astype(np.float32)
    x = np.concatenate([edge, rand])
    with np.errstate(over="ignore"):
        t["f16.x"] = x
        t["f16.y"] = x.astype(np.float16).astype(np.float32)
    save("pr", t, cases="ties,wide,rand,fallback", k=3)


# ---------------------------------------------------------------- PSNR / SSIM
def psnr(a, b, data_range):
    """skimage.metrics.peak_signal_noise_ratio."""
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(data_range ** 2 / err)


def ssim(a, b, data_range):
    """skimage.metrics.structural_similarity(a, b, channel_axis=0,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range), written out (skimage 0.19-0.22)."""
    sigma, truncate = 1.5, 3.5
    win_size = 2 * int(truncate * sigma + 0.5) + 1
    pad = (win_size - 1) // 2
    vals = []
    for c in range(a.shape[0]):
        x, y = a[c].astype(np.float64), b[c].astype(np.float64)
        f = lambda im: ndimage.gaussian_filter(im, sigma=sigma, truncate=truncate)  # mode="reflect"
        ux, uy, uxx, uyy, uxy = f(x), f(y), f(x * x), f(y * y), f(x * y)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        S = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux ** 2 + uy ** 2 + C1) * (vx + vy + C2))
        vals.append(S[pad:-pad, pad:-pad].mean(dtype=np.float64))
    return float(np.mean(vals))


def ssim_valid(a, b, data_range):
    """pytorch-msssim's formulation (11-tap Gaussian, no padding), float64:
    must equal ssim() above."""
    coords = np.arange(11, dtype=np.float64) - 5
    g = np.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()

    def filt(im):
        h = np.stack([np.convolve(r, g[::-1], mode="valid") for r in im])
        return np.stack([np.convolve(col, g[::-1], mode="valid") for col in h.T]).T

    vals = []
    for c in range(a.shape[0]):
        x, y = a[c].astype(np.float64), b[c].astype(np.float64)
        ux, uy = filt(x), filt(y)
        vx, vy, vxy = filt(x * x) - ux ** 2, filt(y * y) - uy ** 2, filt(x * y) - ux * uy
        C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        vals.append((((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux ** 2 + uy ** 2 + C1) * (vx + vy + C2))).mean())
    return float(np.mean(vals))


def image_fixture(rng):
    t = {}
    # uint8, 3 channels, smooth image plus noise (SSIM well inside (0, 1)).
    yy, xx = np.mgrid[0:32, 0:40]
    base = np.stack([128 + 100 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0) for c in range(3)])
    a8 = np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)
    b8 = np.clip(a8.astype(np.float64) + rng.normal(0, 12, a8.shape), 0, 255).astype(np.uint8)
    # float in [-1, 1] (model range), reconstruction not clamped.
    af = rng.uniform(-1, 1, (3, 24, 20)).astype(np.float32)
    af = ndimage.uniform_filter(af, size=(1, 3, 3)).astype(np.float32)
    bf = (af + rng.normal(0, 0.1, af.shape)).astype(np.float32)
    # Smallest legal size, one channel.
    as1 = rng.integers(0, 256, (1, 11, 11)).astype(np.uint8)
    bs1 = rng.integers(0, 256, (1, 11, 11)).astype(np.uint8)
    vals = {
        "u8.psnr": psnr(a8, b8, 255.0), "u8.ssim": ssim(a8, b8, 255.0),
        "f32.psnr": psnr(af, bf, 2.0), "f32.ssim": ssim(af, bf, 2.0),
        "small.psnr": psnr(as1, bs1, 255.0), "small.ssim": ssim(as1, bs1, 255.0),
    }
    for a, b, r, key in ((a8, b8, 255.0, "u8"), (af, bf, 2.0, "f32"), (as1, bs1, 255.0, "small")):
        v = ssim_valid(a, b, r)
        assert abs(v - vals[key + ".ssim"]) < 1e-12, (key, v, vals[key + ".ssim"])
    for k, v in vals.items():
        print(f"  {k} = {v:.12g}")
    t.update({"u8.a": a8, "u8.b": b8, "f32.a": af, "f32.b": bf, "small.a": as1, "small.b": bs1})
    t.update({k: f64(v) for k, v in vals.items()})
    save("image", t)


def main():
    which = set(sys.argv[1:]) or {"fid", "is", "pr", "image"}
    # One generator per fixture, so regenerating one leaves the others unchanged.
    if "fid" in which:
        fid_fixture(np.random.default_rng(SEED + 1))
    if "is" in which:
        is_fixture(np.random.default_rng(SEED + 2))
    if "pr" in which:
        pr_fixture(np.random.default_rng(SEED + 3))
    if "image" in which:
        image_fixture(np.random.default_rng(SEED + 4))


if __name__ == "__main__":
    main()
