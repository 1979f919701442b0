"""Writes the seeds of the model_config fuzz harness (fuzz/fuzz_model_config.c),
fuzz/corpus/model_config/seed_*: the first byte picks the reader, the rest is
the file.  Tiny models of the reference modules (dev/ref/repae_ref/), so the
key names and shapes are the real ones, stored as F16 to stay small; the
diffusers config.json of the io fixtures; a VAE config JSON.  Deterministic.

    /usr/bin/python3 dev/ref/model_config_seeds_ref.py      (make fixtures runs it)
"""
import io
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_seeds_ref import put, safetensors  # noqa: E402
from repae_ref.cnn import CNNClassifier  # noqa: E402
from repae_ref.sit import SiT  # noqa: E402
from repae_ref.vae import AutoencoderKL  # noqa: E402
from repae_ref.vit import DinoVisionTransformer  # noqa: E402

TARGET = "model_config"
# the harness's first byte, modulo 6 (bit 7: the SiT's or ViT's heads from its width, else 1)
DIFFUSERS_CONFIG, VAE_JSON, DETECT_VAE, DETECT_SIT, DETECT_VIT, DETECT_CNN = range(6)


def f16_file(model, config):
    tensors = [(k, "F16", tuple(v.shape), v.detach().to(torch.float16).numpy().astype("<f2").tobytes())
               if v.dtype.is_floating_point else
               (k, "I64", tuple(v.shape), v.detach().to(torch.int64).numpy().astype("<i8").tobytes())
               for k, v in model.state_dict().items()]
    return safetensors(tensors, {"config": json.dumps(config, sort_keys=True)})


def torch_file(model):
    b = io.BytesIO()
    torch.save({k: v.to(torch.float16) for k, v in model.state_dict().items()}, b)
    return b.getvalue()


def main():
    torch.manual_seed(0)
    vae = AutoencoderKL(ch=4, ch_mult=(1,), num_res_blocks=1, z_channels=1, attn_resolutions=(), resolution=8,
                        in_channels=1, out_ch=1, norm_groups=2)
    put(TARGET, "vae", bytes([DETECT_VAE]) + f16_file(vae, vae.config))
    put(TARGET, "vae_json", bytes([VAE_JSON]) + json.dumps(vae.config).encode())

    sit = SiT(input_size=4, patch_size=2, in_channels=1, hidden_size=8, depth=1, num_heads=2, num_classes=2,
              encoder_depth=1, projector_dim=8, z_dims=(4,))
    put(TARGET, "sit", bytes([DETECT_SIT]) + f16_file(sit, sit.config))
    put(TARGET, "sit_heads_from_width", bytes([0x80 | DETECT_SIT]) + f16_file(sit, sit.config))
    put(TARGET, "sit.pt", bytes([DETECT_SIT]) + torch_file(sit))

    vit = DinoVisionTransformer(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2,
                                num_register_tokens=1)
    put(TARGET, "vit", bytes([DETECT_VIT]) + f16_file(vit, vit.config))

    cnn = CNNClassifier(in_chans=1, widths=(4,), groups=2, num_classes=2)
    put(TARGET, "cnn", bytes([DETECT_CNN]) + f16_file(cnn, {"arch": "cnn", "in_chans": 1, "widths": [4],
                                                            "groups": 2, "num_classes": 2, "gn_eps": 1e-5}))

    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "io")
    for name in ("diffusers_vae_tiny", "diffusers_vae_tiny_oldattn", "diffusers_vae_tiny_z16"):
        with open(os.path.join(fixtures, name, "config.json"), "rb") as f:
            put(TARGET, name + "_config", bytes([DIFFUSERS_CONFIG]) + f.read())


if __name__ == "__main__":
    main()
