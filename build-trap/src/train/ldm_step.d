build-trap/src/train/ldm_step.o: src/train/ldm_step.c \
 src/train/ldm_step.h src/core/arena.h \
 src/diffusion/denoising_objective.h src/core/rng.h \
 src/diffusion/interpolant.h src/models/sit.h src/io/safetensors.h \
 src/models/params.h src/models/encoder_preprocess.h src/models/vit.h \
 src/train/adamw.h src/core/dist.h src/core/error.h \
 src/ops/spatial_norm.h src/train/ema.h
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
src/core/dist.h:
src/core/error.h:
src/ops/spatial_norm.h:
src/train/ema.h:
