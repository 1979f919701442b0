build-trap/src/train/checkpoint.o: src/train/checkpoint.c \
 src/train/checkpoint.h src/train/ldm_step.h src/core/arena.h \
 src/diffusion/denoising_objective.h src/core/rng.h \
 src/diffusion/interpolant.h src/models/sit.h src/io/safetensors.h \
 src/models/params.h src/models/encoder_preprocess.h src/models/vit.h \
 src/train/adamw.h src/train/repae_step.h src/models/discriminator.h \
 src/ops/conv2d.h src/models/lpips.h src/models/vae.h src/core/error.h \
 src/train/checkpoint_file.h
src/train/checkpoint.h:
src/train/ldm_step.h:
src/core/arena.h:
src/diffusion/denoising_objective.h:
src/core/rng.h:
src/diffusion/interpolant.h:
src/models/sit.h:
src/io/safetensors.h:
src/models/params.h:
src/models/encoder_preprocess.h:
src/models/vit.h:
src/train/adamw.h:
src/train/repae_step.h:
src/models/discriminator.h:
src/ops/conv2d.h:
src/models/lpips.h:
src/models/vae.h:
src/core/error.h:
src/train/checkpoint_file.h:
