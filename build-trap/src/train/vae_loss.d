build-trap/src/train/vae_loss.o: src/train/vae_loss.c \
 src/train/vae_loss.h src/core/arena.h src/models/discriminator.h \
 src/models/params.h src/io/safetensors.h src/ops/conv2d.h \
 src/models/lpips.h src/train/adamw.h src/core/dist.h src/core/rng.h \
 src/core/error.h src/ops/loss.h
src/train/vae_loss.h:
src/core/arena.h:
src/models/discriminator.h:
src/models/params.h:
src/io/safetensors.h:
src/ops/conv2d.h:
src/models/lpips.h:
src/train/adamw.h:
src/core/dist.h:
src/core/rng.h:
src/core/error.h:
src/ops/loss.h:
