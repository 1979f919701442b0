"""SiT with REPA projectors and the REPA-E training forward, written from spec §3-§5.

Plain torch.nn (no SDPA, no timm).  State-dict keys follow spec §4.4:
pos_embed (frozen, requires_grad False), x_embedder.proj, t_embedder.mlp.{0,2},
y_embedder.embedding_table, blocks.{i}.{attn.qkv, attn.q_norm, attn.k_norm, attn.proj,
mlp.fc1, mlp.fc2, adaLN_modulation.1}, projectors.{e}.{0,2,4},
final_layer.{linear, adaLN_modulation.1}, bn.{running_mean, running_var,
num_batches_tracked}.

Randomness can be supplied explicitly: time_input [N,1,1,1], noises [N,C,h,w] and
drop_mask [N] (1 = replace the label by the null class num_classes; used only in
train mode, exactly like DiT's force_drop_ids).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def sincos_pos_embed_2d(D, G):
    """[G*G, D] float64 numpy.  Token (row i, col j) = index i*G + j.  Q = D/4,
    w_k = 10000^(-k/Q): [sin(j w), cos(j w), sin(i w), cos(i w)] (first half = column)."""
    assert D % 4 == 0
    Q = D // 4
    omega = 1.0 / 10000 ** (np.arange(Q, dtype=np.float64) / Q)
    ii, jj = np.meshgrid(np.arange(G, dtype=np.float64), np.arange(G, dtype=np.float64), indexing="ij")
    i = ii.reshape(-1)[:, None] * omega[None]
    j = jj.reshape(-1)[:, None] * omega[None]
    return np.concatenate([np.sin(j), np.cos(j), np.sin(i), np.cos(i)], axis=1)


def timestep_embedding(t, dim=256, max_period=10000):
    """t raw in [0,1] (no x1000).  [cos(t f), sin(t f)], f_k = exp(-ln(max_period) k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    args = t[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class PatchEmbed(nn.Module):
    def __init__(self, p, C, D, device=None):
        super().__init__()
        self.proj = nn.Conv2d(C, D, kernel_size=p, stride=p, bias=True, device=device)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, T, D], row-major tokens


class TimestepEmbedder(nn.Module):
    def __init__(self, D, freq_dim=256, device=None):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, D, device=device), nn.SiLU(),
                                 nn.Linear(D, D, device=device))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.freq_dim))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, D, dropout_prob, device=None):
        super().__init__()
        use_cfg = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + int(use_cfg), D, device=device)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels, drop_mask=None):
        if drop_mask is None:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop = drop_mask.to(labels.device) == 1
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels, train, drop_mask=None):
        if train and self.dropout_prob > 0:
            labels = self.token_drop(labels, drop_mask)
        return self.embedding_table(labels)


class Attention(nn.Module):
    """timm 1.0.11 Attention: qkv out laid out [3][heads][head_dim]."""

    def __init__(self, D, heads, qk_norm=False, device=None):
        super().__init__()
        assert D % heads == 0
        self.heads, self.head_dim = heads, D // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(D, 3 * D, bias=True, device=device)
        self.qk_norm = qk_norm
        if qk_norm:
            self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-5, device=device)
            self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-5, device=device)
        self.proj = nn.Linear(D, D, device=device)

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]               # [B, H, T, hd]
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        a = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, T, D)
        return self.proj(o)


class Mlp(nn.Module):
    def __init__(self, D, hidden, device=None):
        super().__init__()
        self.fc1 = nn.Linear(D, hidden, device=device)
        self.fc2 = nn.Linear(hidden, D, device=device)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class SiTBlock(nn.Module):
    def __init__(self, D, heads, mlp_ratio=4.0, qk_norm=False, device=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6, device=device)
        self.attn = Attention(D, heads, qk_norm, device)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6, device=device)
        self.mlp = Mlp(D, int(D * mlp_ratio), device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D, device=device))

    def forward(self, x, c):
        sm, cm, gm, sp, cp, gp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, cm))
        x = x + gp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sp, cp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, D, p, C, device=None):
        super().__init__()
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6, device=device)
        self.linear = nn.Linear(D, p * p * C, device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D, device=device))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def build_projector(D, projector_dim, z_dim, device=None):
    return nn.Sequential(nn.Linear(D, projector_dim, device=device), nn.SiLU(),
                         nn.Linear(projector_dim, projector_dim, device=device), nn.SiLU(),
                         nn.Linear(projector_dim, z_dim, device=device))


class ConvProjector(nn.Module):
    """iREPA's projector (End2End-Diffusion/iREPA, ldm/models/sit.py, ProjectionLayer with
    projection_layer_type="conv"): one nn.Conv2d(D, z_dim, k, stride 1, padding k//2) on
    the token grid.  [N,T,D] -> reshape(N,G,G,D).permute(0,3,1,2) -> conv ->
    permute(0,2,3,1).reshape(N,T,z_dim).  The conv is stored as `projection_layer`, so
    the state-dict keys are projectors.<e>.projection_layer.{weight,bias}."""

    def __init__(self, D, z_dim, kernel_size, device=None):
        super().__init__()
        self.projection_layer = nn.Conv2d(D, z_dim, kernel_size=kernel_size, stride=1,
                                          padding=kernel_size // 2, device=device)

    def forward(self, x):
        N, T, D = x.shape
        G = math.isqrt(T)
        assert G * G == T
        y = self.projection_layer(x.reshape(N, G, G, D).permute(0, 3, 1, 2).contiguous())
        return y.permute(0, 2, 3, 1).contiguous().reshape(N, T, -1)


def interpolant(t, path_type):
    """(alpha, sigma, d_alpha, d_sigma); t = 0 data, t = 1 noise."""
    if path_type == "linear":
        return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)
    if path_type == "cosine":
        h = math.pi / 2
        return torch.cos(t * h), torch.sin(t * h), -h * torch.sin(t * h), h * torch.cos(t * h)
    raise ValueError(path_type)


class SiT(nn.Module):
    def __init__(self, *, input_size=32, patch_size=2, in_channels=4, hidden_size=1152,
                 decoder_hidden_size=None, depth=28, num_heads=16, mlp_ratio=4.0,
                 class_dropout_prob=0.1, num_classes=1000, encoder_depth=8,
                 projector_dim=2048, z_dims=(768,), qk_norm=False, bn_momentum=0.1,
                 path_type="linear", weighting="uniform", device=None, init=True,
                 projection_layer_type="mlp", proj_kwargs_kernel_size=3):
        super().__init__()
        D = hidden_size
        if decoder_hidden_size is None:
            decoder_hidden_size = D
        # The release's SiT-S presets use decoder_hidden_size 768 != 384 (broken); here
        # the final layer reads the block output, so it must equal the hidden size.
        assert decoder_hidden_size == D, "decoder_hidden_size must equal hidden_size"
        assert input_size % patch_size == 0 and 1 <= encoder_depth <= depth
        self.config = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                           hidden_size=D, decoder_hidden_size=decoder_hidden_size, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio,
                           class_dropout_prob=class_dropout_prob, num_classes=num_classes,
                           encoder_depth=encoder_depth, projector_dim=projector_dim,
                           z_dims=list(z_dims), qk_norm=qk_norm, bn_momentum=bn_momentum,
                           bn_eps=1e-4, path_type=path_type, weighting=weighting)
        if projection_layer_type != "mlp":  # iREPA's option names; absent = REPA's MLP
            self.config.update(projection_layer_type=projection_layer_type,
                               proj_kwargs_kernel_size=proj_kwargs_kernel_size)
        assert projection_layer_type in ("mlp", "conv")
        self.projection_layer_type = projection_layer_type
        self.in_channels = self.out_channels = in_channels
        self.patch_size, self.num_heads = patch_size, num_heads
        self.num_classes, self.encoder_depth = num_classes, encoder_depth
        self.path_type, self.weighting = path_type, weighting
        self.grid = input_size // patch_size
        T = self.grid ** 2

        self.x_embedder = PatchEmbed(patch_size, in_channels, D, device)
        self.t_embedder = TimestepEmbedder(D, device=device)
        self.y_embedder = LabelEmbedder(num_classes, D, class_dropout_prob, device)
        self.pos_embed = nn.Parameter(torch.zeros(1, T, D, device=device), requires_grad=False)
        self.blocks = nn.ModuleList([SiTBlock(D, num_heads, mlp_ratio, qk_norm, device)
                                     for _ in range(depth)])
        if projection_layer_type == "conv":
            self.projectors = nn.ModuleList([ConvProjector(D, z, proj_kwargs_kernel_size, device)
                                             for z in z_dims])
        else:
            self.projectors = nn.ModuleList([build_projector(D, projector_dim, z, device)
                                             for z in z_dims])
        self.final_layer = FinalLayer(decoder_hidden_size, patch_size, in_channels, device)
        self.bn = nn.BatchNorm2d(in_channels, eps=1e-4, momentum=bn_momentum, affine=False,
                                 track_running_stats=True, device=device)
        if init and (device is None or torch.device(device).type != "meta"):
            self.initialize_weights()

    # ------------------------------------------------------------------ spec §4.3
    def initialize_weights(self):
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_basic)
        pe = sincos_pos_embed_2d(self.pos_embed.shape[-1], self.grid)
        self.pos_embed.data.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for b in self.blocks:
            nn.init.zeros_(b.adaLN_modulation[-1].weight)
            nn.init.zeros_(b.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        self.bn.reset_running_stats()

    def init_bn(self, latents_bias, latents_scale):
        """running_mean = bias, running_var = (1/scale)^2 (values squeezed to [C])."""
        self.bn.running_mean.copy_(latents_bias.reshape(-1))
        self.bn.running_var.copy_((1.0 / latents_scale.reshape(-1)) ** 2)

    def extract_latents_stats(self):
        """(latents_scale, latents_bias) shaped [1,C,1,1]; eps ignored (spec §3)."""
        C = self.in_channels
        return (self.bn.running_var.rsqrt().reshape(1, C, 1, 1),
                self.bn.running_mean.reshape(1, C, 1, 1))

    # ------------------------------------------------------------------ pieces
    def unpatchify(self, x):
        """[N, T, p*p*C] -> [N, C, G*p, G*p]; token vector index (a*p + b)*C + c."""
        N, p, C, G = x.shape[0], self.patch_size, self.out_channels, self.grid
        x = x.reshape(N, G, G, p, p, C)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(N, C, G * p, G * p)

    def _embed(self, x, t, y, train, drop_mask):
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, train, drop_mask)
        return h, c

    def run_network(self, x, t, y, *, train=False, drop_mask=None, align_only=False):
        """x [N,C,h,w] (normalised space), t [N], y [N] -> (zs_tilde list, output or None)."""
        N = x.shape[0]
        h, c = self._embed(x, t, y, train, drop_mask)
        zs_tilde = None
        for i, blk in enumerate(self.blocks):
            h = blk(h, c)
            if i + 1 == self.encoder_depth:
                T, D = h.shape[1], h.shape[2]
                if self.projection_layer_type == "conv":
                    zs_tilde = [proj(h) for proj in self.projectors]
                else:
                    zs_tilde = [proj(h.reshape(-1, D)).reshape(N, T, -1) for proj in self.projectors]
                if align_only:
                    return zs_tilde, None  # final layer skipped (its output is unused)
        return zs_tilde, self.unpatchify(self.final_layer(h, c))

    def inference(self, x, t, y):
        """Sampling network: no BN, labels as given, no dropout."""
        return self.run_network(x, t, y, train=False)[1]

    # ------------------------------------------------------------------ spec §5
    def forward(self, x, y, zs, time_input=None, noises=None, align_only=False,
                drop_mask=None, path_type=None, weighting=None):
        """x: un-normalised latent [N,C,h,w]; zs: list of targets [N,T,z_dim].
        Train/eval behaviour (BN stats, label dropout) follows self.training.
        Returns dict zs_tilde, model_output, denoising_loss [N] (None if align_only),
        proj_loss (scalar), time_input [N,1,1,1], noises."""
        path_type = path_type or self.path_type
        weighting = weighting or self.weighting
        xn = self.bn(x)
        N = xn.shape[0]
        if time_input is None:
            if weighting == "uniform":
                time_input = torch.rand(N, 1, 1, 1, device=x.device, dtype=x.dtype)
            elif weighting == "lognormal":
                sigma = torch.randn(N, 1, 1, 1, device=x.device, dtype=x.dtype).exp()
                time_input = sigma / (1 + sigma) if path_type == "linear" else 2 / math.pi * torch.atan(sigma)
            else:
                raise ValueError(weighting)
        time_input = time_input.to(device=x.device, dtype=x.dtype)
        if noises is None:
            noises = torch.randn_like(xn)
        noises = noises.to(device=x.device, dtype=x.dtype)
        a, s, da, ds = interpolant(time_input, path_type)
        x_t = a * xn + s * noises
        target = da * xn + ds * noises
        zs_tilde, out = self.run_network(x_t, time_input.flatten(), y, train=self.training,
                                         drop_mask=drop_mask, align_only=align_only)
        denoising_loss = None
        if not align_only:
            denoising_loss = ((out - target) ** 2).mean(dim=(1, 2, 3))
        proj_loss = 0.0
        for z, zt in zip(zs, zs_tilde):
            zt_n = F.normalize(zt, dim=-1, eps=1e-12)
            z_n = F.normalize(z, dim=-1, eps=1e-12)
            proj_loss = proj_loss + (-(z_n * zt_n).sum(dim=-1)).mean(dim=-1).sum()
        proj_loss = proj_loss / (len(zs) * N)
        return dict(zs_tilde=zs_tilde, model_output=out, denoising_loss=denoising_loss,
                    proj_loss=proj_loss, time_input=time_input, noises=noises)


# ----------------------------------------------------------------------------- presets
SIT_ARCH = {  # depth, hidden, heads
    "S": (12, 384, 6),    # fixed: the release's SiT-S leaves decoder_hidden_size = 768 (broken)
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}


def sit_preset(name, **kw):
    """name like 'SiT-XL/2'; other SiT kwargs (input_size, in_channels, z_dims, ...) pass through."""
    arch, p = name.replace("SiT-", "").split("/")
    depth, D, H = SIT_ARCH[arch]
    return SiT(depth=depth, hidden_size=D, decoder_hidden_size=D, num_heads=H,
               patch_size=int(p), **kw)


SIT_PRESETS = {f"SiT-{a}/{p}": (lambda a=a, p=p, **kw: sit_preset(f"SiT-{a}/{p}", **kw))
               for a in SIT_ARCH for p in (1, 2, 4, 8)}

# spec §4.1 (SiT incl. frozen pos_embed, excluding projectors; projector for z_dim 768)
SIT_PARAM_COUNTS = {("SiT-XL/2", 4, 32): 675_111_184, ("SiT-XL/1", 32, 16): 675_148_064}
PROJECTOR_PARAM_COUNT_768 = 8_131_328
