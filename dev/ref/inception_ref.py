#!/usr/bin/python3
"""Reference for src/models/inception.c: the ADM evaluator's Inception-v3 (spec §10.1).

A plain-torch re-implementation (no torchvision) of pytorch-fid's "FID Inception"
(torchvision's Inception3 skeleton with the FIDInceptionA/C/E_1/E_2 patches), plus the
TF graph's own preprocessing, which is NOT pytorch-fid's:

  uint8/float NHWC in [0, 255]
    -> TF-1 legacy bilinear resize to 299x299 (align_corners=False, no half-pixel
       offset: src = dst * (in/out) in float32, neighbours floor and ceil clamped
       to the edge, lerp = src - floor(src))
    -> (x - 128) / 128
    -> Inception body (BasicConv2d = conv (no bias) + BN(eps 1e-3) + ReLU)
  outputs
    pool3   [B, 2048]  global average pool after Mixed_7c               (pool_3:0)
    spatial [B, 2023]  Mixed_6d.branch1x1 output, first 7 channels,
                       flattened H, W, C (C fastest)                    (mixed_6/conv:0)
    logits  [B, 1008]  pool3 @ fc.weight^T, no bias                     (softmax/logits/MatMul)

`width_div` divides every channel count of the body (the 1008 classes stay), so that
the parity fixture stays small; the real network uses width_div = 1.  Key names are
the torchvision / pytorch-fid state-dict names (Conv2d_1a_3x3.conv.weight,
Mixed_5b.branch1x1.bn.running_var, ..., fc.weight).

Writes tests/fixtures/eval/inception_random.safetensors:
  * the state dict of a width_div = WIDTH_DIV network with random weights and
    BN statistics, WITHOUT bn.num_batches_tracked and WITHOUT fc.bias (the C
    table has neither: the IS logits never add the bias);
  * images  uint8 [2, H, W, 3] (non-square on purpose, so H/W swaps show);
  * resized float32 [2, 3, 8, 8]: the top-left 8x8 corner of the preprocessed
    network input ((resize - 128)/128), and resized_mean [2, 3] its full mean;
  * pool3 [2, 2048/div], spatial [2, 2023], logits [2, 1008];
  * metadata: width_div, spatial_post_relu, params_full (the C table's element
    count at width_div = 1) and torch_params_full (nn.Parameters of pytorch-fid's
    fid_inception_v3(): includes fc.bias, excludes the BN running statistics),
    fp32_vs_fp64 (max |f32 - f64| / max |f64| per output, a tolerance guide).

Outputs are computed in float64 from the float32 weights and the uint8 images (the
resize sample positions in float32, as TF computes them), then rounded once to float32.

Run: /usr/bin/python3 dev/ref/inception_ref.py
     /usr/bin/python3 dev/ref/inception_ref.py --full-width-check DIR   (see full_width_check)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

SEED = 20151205
WIDTH_DIV = 8
IMG_H, IMG_W = 48, 64
# mixed_6/conv:0 is taken after the ReLU. [unverified]: the spec (§10.1) could not
# confirm whether the graph tensor is pre- or post-activation; keep in sync with
# INCEPTION_SPATIAL_POST_RELU in src/models/inception.c.
SPATIAL_POST_RELU = True
SPATIAL_CHANNELS = 7
NUM_CLASSES = 1008

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# ============================================================================ network
class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.pre_relu = None

    def forward(self, x):
        y = self.bn(self.conv(x))
        self.pre_relu = y
        return F.relu(y)


def avg3(x):
    # TF's average pool ignores the padded zeros (pytorch-fid's FID patch).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):  # FIDInceptionA
    def __init__(self, cin, pool_features, d):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64 // d, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48 // d, 1)
        self.branch5x5_2 = BasicConv2d(48 // d, 64 // d, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64 // d, 1)
        self.branch3x3dbl_2 = BasicConv2d(64 // d, 96 // d, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // d, 96 // d, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features // d, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(avg3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):  # torchvision InceptionB (Mixed_6a), unpatched
    def __init__(self, cin, d):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384 // d, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64 // d, 1)
        self.branch3x3dbl_2 = BasicConv2d(64 // d, 96 // d, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // d, 96 // d, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):  # FIDInceptionC
    def __init__(self, cin, c7, d):
        super().__init__()
        c7 //= d
        self.branch1x1 = BasicConv2d(cin, 192 // d, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192 // d, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192 // d, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192 // d, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(avg3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):  # torchvision InceptionD (Mixed_7a), unpatched
    def __init__(self, cin, d):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192 // d, 1)
        self.branch3x3_2 = BasicConv2d(192 // d, 320 // d, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192 // d, 1)
        self.branch7x7x3_2 = BasicConv2d(192 // d, 192 // d, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192 // d, 192 // d, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192 // d, 192 // d, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):  # FIDInceptionE_1 (avg pool) / FIDInceptionE_2 (max pool)
    def __init__(self, cin, d, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320 // d, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384 // d, 1)
        self.branch3x3_2a = BasicConv2d(384 // d, 384 // d, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384 // d, 384 // d, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448 // d, 1)
        self.branch3x3dbl_2 = BasicConv2d(448 // d, 384 // d, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384 // d, 384 // d, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384 // d, 384 // d, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192 // d, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:  # Mixed_7c: the FID graph max-pools here (pytorch-fid FIDInceptionE_2)
            bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            bp = avg3(x)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInception(nn.Module):
    def __init__(self, width_div=1):
        super().__init__()
        d = width_div
        assert 192 % d == 0 and 192 // d >= SPATIAL_CHANNELS and 16 % d == 0
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32 // d, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32 // d, 32 // d, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32 // d, 64 // d, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64 // d, 80 // d, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80 // d, 192 // d, 3)
        self.Mixed_5b = InceptionA(192 // d, 32, d)
        self.Mixed_5c = InceptionA(256 // d, 64, d)
        self.Mixed_5d = InceptionA(288 // d, 64, d)
        self.Mixed_6a = InceptionB(288 // d, d)
        self.Mixed_6b = InceptionC(768 // d, 128, d)
        self.Mixed_6c = InceptionC(768 // d, 160, d)
        self.Mixed_6d = InceptionC(768 // d, 160, d)
        self.Mixed_6e = InceptionC(768 // d, 192, d)
        self.Mixed_7a = InceptionD(768 // d, d)
        self.Mixed_7b = InceptionE(1280 // d, d, max_pool=False)
        self.Mixed_7c = InceptionE(2048 // d, d, max_pool=True)
        self.fc = nn.Linear(2048 // d, NUM_CLASSES)

    def forward(self, x):
        """x: [B, 3, 299, 299] already preprocessed.  Returns pool3, spatial, logits."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6c(self.Mixed_6b(x))
        x = self.Mixed_6d(x)
        m = self.Mixed_6d.branch1x1
        sp = F.relu(m.pre_relu) if SPATIAL_POST_RELU else m.pre_relu
        x = self.Mixed_6e(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        pool3 = x.mean(dim=(2, 3))
        # [B, C, 17, 17] -> first 7 channels -> [B, 17, 17, 7] -> [B, 2023]
        spatial = sp[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        logits = pool3 @ self.fc.weight.t()  # no bias (softmax/logits/MatMul)
        return pool3, spatial, logits


# ============================================================================ preprocessing
def legacy_resize_weights(n_in, n_out):
    """TF-1 ResizeBilinear, align_corners=False, half_pixel_centers=False:
    scale = float32(in)/float32(out); src = float32(i) * scale (float32);
    lower = floor(src), upper = min(ceil(src), in-1), lerp = src - floor(src)."""
    scale = torch.tensor(float(n_in), dtype=torch.float32) / torch.tensor(float(n_out), dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    lo_f = torch.floor(src)
    lo = lo_f.long().clamp(0, n_in - 1)
    hi = torch.ceil(src).long().clamp(max=n_in - 1)
    lerp = (src - lo_f).double()
    return lo, hi, lerp


def legacy_resize(img, out_h=299, out_w=299):
    """img: float64 [B, H, W, C] -> [B, out_h, out_w, C]."""
    B, H, W, C = img.shape
    ylo, yhi, yl = legacy_resize_weights(H, out_h)
    xlo, xhi, xl = legacy_resize_weights(W, out_w)
    tl = img[:, ylo][:, :, xlo]
    tr = img[:, ylo][:, :, xhi]
    bl = img[:, yhi][:, :, xlo]
    br = img[:, yhi][:, :, xhi]
    xl = xl.view(1, 1, -1, 1)
    yl = yl.view(1, -1, 1, 1)
    top = tl + (tr - tl) * xl
    bot = bl + (br - bl) * xl
    return top + (bot - top) * yl


def preprocess(images_u8):
    """uint8 [B, H, W, 3] -> float64 [B, 3, 299, 299], the graph's (resize - 128) / 128."""
    x = legacy_resize(images_u8.double())
    return ((x - 128.0) / 128.0).permute(0, 3, 1, 2).contiguous()


def check_resize_formula():
    """3x3 -> 7x7 against positions written out by hand: scale = 3/7, so rows
    0..6 sample 0, 3/7, 6/7, 9/7, 12/7, 15/7, 18/7 with upper neighbour clamped to 2."""
    img = torch.arange(9, dtype=torch.float64).view(1, 3, 3, 1) * 10  # value = 30*r + 10*c
    out = legacy_resize(img, 7, 7)[0, :, :, 0]
    pos = [i * 3 / 7 for i in range(7)]

    def f(p):  # 1-D legacy interpolation of v(k) = k on 3 samples, edge-clamped
        lo = int(p)
        hi = min(lo + 1, 2)
        return lo + (hi - lo) * (p - lo)

    want = torch.tensor([[30 * f(py) + 10 * f(px) for px in pos] for py in pos], dtype=torch.float64)
    assert (out - want).abs().max() < 1e-5, (out, want)


# ============================================================================ weights
def randomize_(model, images_pre):
    """Random conv weights (He normal) and BN parameters; running statistics are the
    batch statistics of the fixture inputs, perturbed, so every layer stays O(1)
    and is not exactly normalised."""
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.momentum = 1.0  # running stats := this batch's stats
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight.shape[1] ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
        model.train()
        model(images_pre.float())
        model.eval()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
                std = m.running_var.sqrt()
                m.running_mean.add_(0.2 * std * torch.randn(std.shape, generator=g))
                m.running_var.mul_(0.7 + 0.7 * torch.rand(std.shape, generator=g))


def c_table_state(model):
    """The C parameter table: the state dict without num_batches_tracked and fc.bias."""
    return {k: v for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked") and k != "fc.bias"}


def make_images(gen, h, w):
    """Smooth-ish images with some hard edges, noise and the extremes 0 and 255."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = torch.stack([128 + 100 * torch.sin(xx / 5.0 + c) * torch.cos(yy / 7.0 - c) for c in range(3)], -1)
    images = torch.stack([base, 255 - base.flip(1)]) + 30 * torch.randn(2, h, w, 3, generator=gen)
    images[0, :4, :4] = 0
    images[1, -4:, -4:] = 255
    return images.round().clamp(0, 255).to(torch.uint8)


def full_width_check(outdir):
    """Writes a FULL-width random network as a pytorch-fid style state dict
    (<outdir>/pt_inception_random.pth, with num_batches_tracked and fc.bias, as the
    real file has) and <outdir>/expected.safetensors (images [2, 64, 80, 3] uint8,
    pool3, spatial, logits in float64 -> float32).  Convert the .pth with
    tools/convert_inception.py to <outdir>/inception.safetensors and run
    REPAE_INCEPTION_CHECK_DIR=<outdir> ./build/tests/test_inception: this checks
    the converter and the full-width structure end to end (95 MB, not committed)."""
    os.makedirs(outdir, exist_ok=True)
    g = torch.Generator().manual_seed(SEED + 2)
    images = make_images(g, 64, 80)
    x = preprocess(images)
    torch.manual_seed(SEED + 2)
    model = FIDInception(1)
    randomize_(model, x)
    model.eval()
    torch.save(model.state_dict(), os.path.join(outdir, "pt_inception_random.pth"))
    with torch.no_grad():
        ref = model.double()(x)
    from fixture_io import write_safetensors
    t = {"images": images}
    t.update({n: r.float() for n, r in zip(["pool3", "spatial", "logits"], ref)})
    write_safetensors(os.path.join(outdir, "expected.safetensors"), t,
                      {"script": os.path.basename(__file__), "seed": SEED + 2, "width_div": 1,
                       "spatial_post_relu": int(SPATIAL_POST_RELU)})
    print(f"wrote {outdir}/pt_inception_random.pth and expected.safetensors")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--full-width-check":
        full_width_check(sys.argv[2])
        return
    check_resize_formula()
    full = FIDInception(1)
    torch_params_full = sum(p.numel() for p in full.parameters())
    params_full = sum(v.numel() for v in c_table_state(full).values())
    n_convs = sum(1 for m in full.modules() if isinstance(m, nn.Conv2d))
    assert n_convs == 94, n_convs
    print(f"full width: {torch_params_full} nn.Parameters (incl. fc.bias), "
          f"{params_full} floats in the C table (+BN stats, -fc.bias), {n_convs} convs")

    images = make_images(torch.Generator().manual_seed(SEED), IMG_H, IMG_W)
    x = preprocess(images)

    torch.manual_seed(SEED)
    model = FIDInception(WIDTH_DIV)
    randomize_(model, x)
    model.eval()

    with torch.no_grad():
        ref = [t.clone() for t in model.double()(x)]
        model.float()
        f32 = model(preprocess(images).float())
    names = ["pool3", "spatial", "logits"]
    dev = {n: float((a.double() - b).abs().max() / b.abs().max()) for n, a, b in zip(names, f32, ref)}
    for n, r in zip(names, ref):
        print(f"{n}: {list(r.shape)}  max|.| {r.abs().max():.4g}  mean|.| {r.abs().mean():.4g}  "
              f"frac>0 {(r > 0).double().mean():.3f}  fp32 dev {dev[n]:.2e}")

    tensors = {k: v.float() for k, v in c_table_state(model).items()}
    tensors["images"] = images
    tensors["resized"] = x[:, :, :8, :8]
    tensors["resized_mean"] = x.mean(dim=(2, 3))
    for n, r in zip(names, ref):
        tensors[n] = r
    path = save_fixture("eval/inception_random", tensors, __file__, SEED, width_div=WIDTH_DIV,
                        spatial_post_relu=int(SPATIAL_POST_RELU), params_full=params_full,
                        torch_params_full=torch_params_full, height=IMG_H, width=IMG_W,
                        fp32_vs_fp64=" ".join(f"{n}={v:.2e}" for n, v in dev.items()))
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
