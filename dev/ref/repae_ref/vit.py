"""DINOv2 ViT (facebookresearch/dinov2 models/vision_transformer.py, hub backbones with
block_chunks=0), written from spec §8.1 and the DINOv2 code.

State-dict keys: cls_token [1,1,D], pos_embed [1,1+G*G,D], register_tokens [1,R,D]
(only when R > 0), mask_token [1,D] (unused at inference), patch_embed.proj.{weight,bias},
blocks.{i}.norm1, blocks.{i}.attn.qkv, blocks.{i}.attn.proj, blocks.{i}.ls1.gamma,
blocks.{i}.norm2, blocks.{i}.mlp.fc1/fc2 (ffn "mlp", exact-erf GELU) or
blocks.{i}.mlp.w12/w3 (ffn "swiglufused", ViT-g), blocks.{i}.ls2.gamma, norm.

Token sequence: [cls, reg_1..reg_R, patch tokens row-major].  pos_embed is added to
[cls, patches] BEFORE the registers are inserted (registers get no position).
Outputs (forward_features): x_norm_clstoken [N,D], x_norm_regtokens [N,R,D],
x_norm_patchtokens [N,G*G,D], x_prenorm [N,1+R+G*G,D].
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def resample_abs_pos_embed(posemb, new_size, num_prefix_tokens=1, antialias=True):
    """timm 1.0.11 resample_abs_pos_embed: keep the prefix entries, bicubic (antialiased
    by default) resize of the square patch grid, computed in float32, row-major."""
    n_pos = posemb.shape[1]
    if new_size[0] * new_size[1] + num_prefix_tokens == n_pos and new_size[0] == new_size[1]:
        return posemb
    hw = int(math.sqrt(n_pos - num_prefix_tokens))
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    D = grid.shape[-1]
    dt = grid.dtype
    g = grid.float().reshape(1, hw, hw, D).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=tuple(new_size), mode="bicubic", antialias=antialias)
    g = g.permute(0, 2, 3, 1).reshape(1, -1, D).to(dt)
    return torch.cat([prefix, g], dim=1)


def aa_bicubic_weights(n_in, n_out, a=-0.5):
    """Spec §8.1 window formula (float64): [n_out, n_in] matrix of the antialiased
    bicubic resize used by resample_abs_pos_embed (for downsampling, n_in > n_out)."""
    s = n_in / n_out
    sup = 2.0 * s if s > 1 else 2.0
    inv = 1.0 / s if s > 1 else 1.0

    def W(x):
        x = abs(x)
        if x < 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return (((x - 5) * x + 8) * x - 4) * a
        return 0.0
    M = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        c = s * (i + 0.5)
        lo = max(int(math.floor(c - sup + 0.5)), 0)
        hi = min(int(math.floor(c + sup + 0.5)), n_in)
        w = [W((j + 0.5 - c) * inv) for j in range(lo, hi)]
        tot = sum(w)
        for j, wj in zip(range(lo, hi), w):
            M[i, j] = wj / tot
    return M


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, D, device=None):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, D, kernel_size=patch_size, stride=patch_size, device=device)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, D, heads, device=None):
        super().__init__()
        self.heads, self.head_dim = heads, D // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(D, 3 * D, bias=True, device=device)
        self.proj = nn.Linear(D, D, bias=True, device=device)

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, T, D))


class LayerScale(nn.Module):
    def __init__(self, D, init_values=1.0, device=None):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(D, device=device))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, D, hidden, device=None):
        super().__init__()
        self.fc1 = nn.Linear(D, hidden, device=device)
        self.fc2 = nn.Linear(hidden, D, device=device)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact erf GELU


class SwiGLUFFNFused(nn.Module):
    """DINOv2 SwiGLUFFNFused: hidden = (int(hidden*2/3) + 7)//8*8; w12 -> chunk(x1,x2),
    silu(x1)*x2 -> w3.  (xformers' SwiGLU uses the same w12/w3 names and math.)"""

    def __init__(self, D, hidden, device=None):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.hidden = hidden
        self.w12 = nn.Linear(D, 2 * hidden, device=device)
        self.w3 = nn.Linear(hidden, D, device=device)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    def __init__(self, D, heads, mlp_ratio=4.0, init_values=1.0, ffn_layer="mlp", device=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-6, device=device)
        self.attn = Attention(D, heads, device)
        self.ls1 = LayerScale(D, init_values, device) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(D, eps=1e-6, device=device)
        hidden = int(D * mlp_ratio)
        if ffn_layer == "mlp":
            self.mlp = Mlp(D, hidden, device)
        elif ffn_layer in ("swiglufused", "swiglu"):
            self.mlp = SwiGLUFFNFused(D, hidden, device)
        else:
            raise ValueError(ffn_layer)
        self.ls2 = LayerScale(D, init_values, device) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x


class DinoVisionTransformer(nn.Module):
    def __init__(self, *, img_size=518, patch_size=14, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, init_values=1.0, ffn_layer="mlp",
                 num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1,
                 device=None):
        super().__init__()
        D = embed_dim
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                           embed_dim=D, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                           init_values=init_values, ffn_layer=ffn_layer,
                           num_register_tokens=num_register_tokens,
                           interpolate_antialias=interpolate_antialias,
                           interpolate_offset=interpolate_offset, ln_eps=1e-6)
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, D, device)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D, device=device))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, D, device=device))
        self.register_tokens = (nn.Parameter(torch.zeros(1, num_register_tokens, D, device=device))
                                if num_register_tokens else None)
        self.blocks = nn.ModuleList([Block(D, num_heads, mlp_ratio, init_values, ffn_layer, device)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(D, eps=1e-6, device=device)
        self.mask_token = nn.Parameter(torch.zeros(1, D, device=device))

    def resample_pos_embed_(self, grid):
        """What REPA-E does once at load: pos_embed <- resample_abs_pos_embed(pos_embed, [g,g])."""
        with torch.no_grad():
            new = resample_abs_pos_embed(self.pos_embed.data, [grid, grid])
        self.pos_embed = nn.Parameter(new)

    def interpolate_pos_encoding(self, x, w, h):
        """DINOv2's run-time interpolation; a no-op when the table already matches."""
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls, patch = pos[:, 0], pos[:, 1:]
        D = x.shape[-1]
        w0, h0 = w // self.patch_size, h // self.patch_size
        M = int(math.sqrt(N))
        kw = {}
        if self.interpolate_offset:
            kw["scale_factor"] = (float(w0 + self.interpolate_offset) / M,
                                  float(h0 + self.interpolate_offset) / M)
        else:
            kw["size"] = (w0, h0)
        patch = F.interpolate(patch.reshape(1, M, M, D).permute(0, 3, 1, 2), mode="bicubic",
                              antialias=self.interpolate_antialias, **kw)
        assert (w0, h0) == tuple(patch.shape[-2:])
        patch = patch.permute(0, 2, 3, 1).reshape(1, -1, D)
        return torch.cat((cls.unsqueeze(0), patch), dim=1).to(x.dtype)

    def prepare_tokens(self, x):
        B, _, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return x

    def forward_features(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        xn = self.norm(x)
        R = self.num_register_tokens
        return {"x_norm_clstoken": xn[:, 0], "x_norm_regtokens": xn[:, 1:R + 1],
                "x_norm_patchtokens": xn[:, R + 1:], "x_prenorm": x}


# ----------------------------------------------------------------------------- presets
# hub: img_size 518, patch 14, init_values 1.0, block_chunks 0; ViT-g uses SwiGLUFFNFused
# (hidden (int(6144*2/3)+7)//8*8 = 4096).  The _reg variants add 4 registers and use
# interpolate_antialias=True, interpolate_offset=0.0 (only matters when the run-time
# grid differs from the stored table, which never happens after the load-time resample).
DINOV2_ARCH = {  # embed_dim, depth, heads, ffn
    "s": (384, 12, 6, "mlp"),
    "b": (768, 12, 12, "mlp"),
    "l": (1024, 24, 16, "mlp"),
    "g": (1536, 40, 24, "swiglufused"),
}


def dinov2_preset(arch, reg=False, **kw):
    D, depth, H, ffn = DINOV2_ARCH[arch]
    args = dict(img_size=518, patch_size=14, embed_dim=D, depth=depth, num_heads=H,
                mlp_ratio=4.0, init_values=1.0, ffn_layer=ffn)
    if reg:
        args.update(num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0)
    args.update(kw)
    return DinoVisionTransformer(**args)


DINOV2_PRESETS = {}
for _a in DINOV2_ARCH:
    DINOV2_PRESETS[f"dinov2-vit-{_a}"] = (lambda a=_a, **kw: dinov2_preset(a, **kw))
    DINOV2_PRESETS[f"dinov2-vit-{_a}-reg"] = (lambda a=_a, **kw: dinov2_preset(a, reg=True, **kw))
