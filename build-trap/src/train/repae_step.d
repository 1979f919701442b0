build-trap/src/train/repae_step.o: src/train/repae_step.c \
 src/train/repae_step.h src/core/arena.h \
 src/diffusion/denoising_objective.h src/core/rng.h \
 src/diffusion/interpolant.h src/models/sit.h src/io/safetensors.h \
 src/models/params.h src/models/discriminator.h src/ops/conv2d.h \
 src/models/encoder_preprocess.h src/models/lpips.h src/models/vae.h \
 src/models/vit.h src/train/adamw.h src/core/error.h src/core/dist.h \
 src/ops/spatial_norm.h src/ops/loss.h src/train/ema.h \
 src/train/vae_loss.h
src/train/repae_step.h:
src/core/arena.h:
src/diffusion/denoising_objective.h:
src/core/rng.h:
src/diffusion/interpolant.h:
src/models/sit.h:
src/io/safetensors.h:
src/models/params.h:
src/models/discriminator.h:
src/ops/conv2d.h:
src/models/encoder_preprocess.h:
src/models/lpips.h:
src/models/vae.h:
src/models/vit.h:
src/train/adamw.h:
src/core/error.h:
src/core/dist.h:
src/ops/spatial_norm.h:
src/ops/loss.h:
src/train/ema.h:
src/train/vae_loss.h:
