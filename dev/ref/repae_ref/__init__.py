"""PyTorch reference models for repae (written from /work/shared/spec/repa-e.md):
AutoencoderKL (vae.py), SiT with REPA projectors and the REPA-E training forward
(sit.py), DINOv2 ViT (vit.py).  Plain torch.nn, torch 1.13."""
from .vae import AutoencoderKL, VAE_PRESETS, VAE_PARAM_COUNTS, vae_f8d4, vae_f16d32
from .sit import SiT, SIT_PRESETS, sit_preset, sincos_pos_embed_2d, timestep_embedding
from .vit import (DinoVisionTransformer, DINOV2_PRESETS, dinov2_preset,
                  resample_abs_pos_embed, aa_bicubic_weights)

__all__ = ["AutoencoderKL", "VAE_PRESETS", "VAE_PARAM_COUNTS", "vae_f8d4", "vae_f16d32",
           "SiT", "SIT_PRESETS", "sit_preset", "sincos_pos_embed_2d", "timestep_embedding",
           "DinoVisionTransformer", "DINOV2_PRESETS", "dinov2_preset",
           "resample_abs_pos_embed", "aa_bicubic_weights"]
