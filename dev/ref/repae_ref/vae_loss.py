"""The VAE regularisation loss of REPA-E (spec §7): PatchGAN discriminator,
LPIPS (VGG16, with a width divisor for small random-weight tests), and the
generator / discriminator losses exactly as the reference computes them
(including the [-1,1] -> 2x-1 LPIPS input quirk)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*seq)

    def forward(self, x):
        return self.main(x)


LPIPS_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
LPIPS_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
SLICE_ENDS = [4, 9, 16, 23, 30]  # torchvision feature indices ending each slice


class LPIPS(nn.Module):
    def __init__(self, width_div=1):
        super().__init__()
        layers, cin = [], 3
        for v in VGG_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = v // width_div
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=False)]
                cin = c
        self.net = nn.Module()
        start, widths = 0, []
        for s, end in enumerate(SLICE_ENDS, 1):
            sl = nn.Sequential()
            for i in range(start, end):
                sl.add_module(str(i), layers[i])
            setattr(self.net, f"slice{s}", sl)
            widths.append([m for m in layers[start:end] if isinstance(m, nn.Conv2d)][-1].out_channels)
            start = end
        for k, c in enumerate(widths):
            lin = nn.Module()
            lin.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))
            setattr(self, f"lin{k}", lin)

    def forward(self, a, b):
        """Per-sample distance [N]; a, b in [-1, 1] (mapped by 2x-1 again: the reference's quirk)."""
        sh, sc = LPIPS_SHIFT.to(a.dtype), LPIPS_SCALE.to(a.dtype)
        a = ((2 * a - 1) - sh) / sc
        b = ((2 * b - 1) - sh) / sc
        total = 0
        for k in range(5):
            sl = getattr(self.net, f"slice{k + 1}")
            a, b = sl(a), sl(b)
            na = a / (torch.sqrt((a * a).sum(1, keepdim=True)) + 1e-10)
            nb = b / (torch.sqrt((b * b).sum(1, keepdim=True)) + 1e-10)
            d = getattr(self, f"lin{k}").model((na - nb) ** 2)
            total = total + d.mean([2, 3], keepdim=True)
        return total.view(-1)


def generator_loss(x, recon, mean, logvar, disc, lpips=None, kl_weight=1e-6, disc_weight=0.1, disc_factor=1.0):
    """Spec §7.1.  Returns (total, dict of the logged terms, already weighted)."""
    rec = (x - recon).abs().mean()
    if lpips is not None:
        xl, rl = (x, recon) if x.shape[1] == 3 else (x.repeat(1, 3, 1, 1), recon.repeat(1, 3, 1, 1))
        perc = lpips(xl, rl).mean()
    else:
        perc = torch.zeros((), dtype=x.dtype)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
    for p in disc.parameters():
        p.requires_grad_(False)
    logits_fake = disc(recon)
    for p in disc.parameters():
        p.requires_grad_(True)
    gan = -logits_fake.mean()
    total = rec + perc + kl_weight * kl + disc_weight * disc_factor * gan
    return total, {"reconstruction_loss": rec, "perceptual_loss": perc, "kl_loss": kl_weight * kl,
                   "weighted_gan_loss": disc_weight * disc_factor * gan, "gan_loss": gan}


def discriminator_loss(x, recon, disc, disc_factor=1.0):
    """Spec §7.2: two separate train-mode passes, hinge loss."""
    logits_real = disc(x.detach())
    logits_fake = disc(recon.detach())
    d = disc_factor * 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    return d, {"logits_real": logits_real.mean(), "logits_fake": logits_fake.mean()}
