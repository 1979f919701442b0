"""AutoencoderKL (LDM/taming style KL autoencoder) written from spec §2.

Plain torch.nn, no fused kernels.  State-dict keys follow spec §2.5 exactly:
encoder.down.{l}.block.{b}, encoder.down.{l}.attn.{b}, encoder.down.{l}.downsample.conv,
encoder.mid.{block_1,attn_1,block_2}, decoder.up.{l}.block.{b} (num_res_blocks+1 per
level), decoder.up.{l}.upsample.conv, quant_conv, post_quant_conv.

Configurable (all keyword arguments of AutoencoderKL):
  ch, ch_mult, num_res_blocks, z_channels (= embed_dim = C), attn_resolutions,
  resolution (nominal; only decides where attention blocks sit), in_channels, out_ch,
  norm_groups (GroupNorm groups; 32 in every real preset), use_quant_conv /
  use_post_quant_conv (False: the Flux / SD3.5 layout without the 1x1 convs, the
  moments come straight from encoder.conv_out and z goes straight into
  decoder.conv_in), device ("meta" to build without allocating, for parameter counting).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

GN_EPS = 1e-6
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def Normalize(c, groups=32, device=None):
    return nn.GroupNorm(num_groups=groups, num_channels=c, eps=GN_EPS, affine=True, device=device)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels, groups=32, device=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = Normalize(in_channels, groups, device)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, device=device)
        self.norm2 = Normalize(out_channels, groups, device)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, device=device)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0, device=device)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))  # dropout = 0
        skip = self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over the H*W positions."""

    def __init__(self, c, groups=32, device=None):
        super().__init__()
        self.norm = Normalize(c, groups, device)
        self.q = nn.Conv2d(c, c, 1, device=device)
        self.k = nn.Conv2d(c, c, 1, device=device)
        self.v = nn.Conv2d(c, c, 1, device=device)
        self.proj_out = nn.Conv2d(c, c, 1, device=device)

    def forward(self, x):
        hn = self.norm(x)
        q, k, v = self.q(hn), self.k(hn), self.v(hn)
        b, c, h, w = q.shape
        q = q.reshape(b, c, h * w)                      # [b, c, L]
        k = k.reshape(b, c, h * w)
        v = v.reshape(b, c, h * w)
        a = torch.bmm(q.transpose(1, 2), k) * (c ** -0.5)  # [b, L(i), L(j)]
        a = torch.softmax(a, dim=2)
        out = torch.bmm(v, a.transpose(1, 2))           # out[c,i] = sum_j A[i,j] v[c,j]
        return x + self.proj_out(out.reshape(b, c, h, w))


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then 3x3 conv stride 2 padding 0."""

    def __init__(self, c, device=None):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0, device=device)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv stride 1 padding 1."""

    def __init__(self, c, device=None):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, device=device)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels,
                 resolution, z_channels, double_z=True, groups=32, device=None):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1, device=device)
        curr_res = resolution
        in_ch_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for l in range(self.num_resolutions):
            block = nn.ModuleList()
            attn = nn.ModuleList()
            block_in = ch * in_ch_mult[l]
            block_out = ch * ch_mult[l]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out, groups, device))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in, groups, device))
            down = nn.Module()
            down.block = block
            down.attn = attn
            if l != self.num_resolutions - 1:
                down.downsample = Downsample(block_in, device)
                curr_res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, groups, device)
        self.mid.attn_1 = AttnBlock(block_in, groups, device)
        self.mid.block_2 = ResnetBlock(block_in, block_in, groups, device)
        self.norm_out = Normalize(block_in, groups, device)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, 1, 1,
                                  device=device)

    def forward(self, x):
        h = self.conv_in(x)
        for l in range(self.num_resolutions):
            for b in range(self.num_res_blocks):
                h = self.down[l].block[b](h)
                if len(self.down[l].attn) > 0:
                    h = self.down[l].attn[b](h)
            if l != self.num_resolutions - 1:
                h = self.down[l].downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, *, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions,
                 resolution, z_channels, groups=32, device=None):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1, device=device)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, groups, device)
        self.mid.attn_1 = AttnBlock(block_in, groups, device)
        self.mid.block_2 = ResnetBlock(block_in, block_in, groups, device)
        ups = []
        for l in reversed(range(self.num_resolutions)):
            block = nn.ModuleList()
            attn = nn.ModuleList()
            block_out = ch * ch_mult[l]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out, groups, device))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in, groups, device))
            up = nn.Module()
            up.block = block
            up.attn = attn
            if l != 0:
                up.upsample = Upsample(block_in, device)
                curr_res *= 2
            ups.insert(0, up)  # up[l] is resolution level l
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(block_in, groups, device)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1, device=device)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for l in reversed(range(self.num_resolutions)):
            for b in range(self.num_res_blocks + 1):
                h = self.up[l].block[b](h)
                if len(self.up[l].attn) > 0:
                    h = self.up[l].attn[b](h)
            if l != 0:
                h = self.up[l].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))  # no tanh / clamp


class DiagonalGaussian:
    """Posterior from the 2C moment channels: mean = first C, logvar = clamp(last C)."""

    def __init__(self, moments):
        self.moments = moments
        self.mean, logvar_raw = torch.chunk(moments, 2, dim=1)
        self.logvar = torch.clamp(logvar_raw, LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, eps=None):
        if eps is None:
            eps = torch.randn_like(self.mean)
        return self.mean + self.std * eps

    def mode(self):
        return self.mean

    def kl(self):
        return 0.5 * torch.sum(self.mean ** 2 + self.var - 1.0 - self.logvar, dim=[1, 2, 3])


class AutoencoderKL(nn.Module):
    def __init__(self, *, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4,
                 attn_resolutions=(16,), resolution=256, in_channels=3, out_ch=3,
                 norm_groups=32, use_quant_conv=True, use_post_quant_conv=True, device=None):
        super().__init__()
        self.config = dict(ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks,
                           z_channels=z_channels, embed_dim=z_channels,
                           attn_resolutions=list(attn_resolutions), resolution=resolution,
                           in_channels=in_channels, out_ch=out_ch, norm_groups=norm_groups,
                           double_z=True, dropout=0.0, resamp_with_conv=True)
        # recorded only when off, so that the CompVis fixtures' configs stay as they were
        if not use_quant_conv:
            self.config["use_quant_conv"] = False
        if not use_post_quant_conv:
            self.config["use_post_quant_conv"] = False
        self.z_channels = z_channels
        self.encoder = Encoder(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
                               attn_resolutions=attn_resolutions, in_channels=in_channels,
                               resolution=resolution, z_channels=z_channels, groups=norm_groups,
                               device=device)
        self.decoder = Decoder(ch=ch, out_ch=out_ch, ch_mult=ch_mult,
                               num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                               resolution=resolution, z_channels=z_channels, groups=norm_groups,
                               device=device)
        if use_quant_conv:
            self.quant_conv = nn.Conv2d(2 * z_channels, 2 * z_channels, 1, device=device)
        if use_post_quant_conv:
            self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1, device=device)
        self.use_quant_conv, self.use_post_quant_conv = use_quant_conv, use_post_quant_conv

    def encode(self, x):
        h = self.encoder(x)
        return DiagonalGaussian(self.quant_conv(h) if self.use_quant_conv else h)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z) if self.use_post_quant_conv else z)

    def forward(self, x, eps=None, return_recon=True):
        """Returns (posterior, z, recon); z = posterior.sample(eps) (eps ~ N(0,I) if None)."""
        posterior = self.encode(x)
        z = posterior.sample(eps)
        recon = self.decode(z) if return_recon else None
        return posterior, z, recon


# ----------------------------------------------------------------------------- presets
VAE_PRESETS = {
    # SD-VAE: 4x32x32 latent for 256^2, 83,653,863 parameters
    "f8d4": dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4,
                 attn_resolutions=(16,), resolution=256, in_channels=3, out_ch=3),
    # IN-VAE / VA-VAE: 32x16x16 latent for 256^2, 69,836,067 parameters
    "f16d32": dict(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32,
                   attn_resolutions=(16,), resolution=256, in_channels=3, out_ch=3),
}
VAE_PARAM_COUNTS = {"f8d4": 83_653_863, "f16d32": 69_836_067}


def vae_f8d4(**kw):
    return AutoencoderKL(**{**VAE_PRESETS["f8d4"], **kw})


def vae_f16d32(**kw):
    return AutoencoderKL(**{**VAE_PRESETS["f16d32"], **kw})
