build-trap/src/train/vae_trainer.o: src/train/vae_trainer.c \
 src/train/vae_trainer.h src/core/arena.h src/data/dataset.h \
 src/models/discriminator.h src/models/params.h src/io/safetensors.h \
 src/ops/conv2d.h src/models/lpips.h src/models/vae.h src/core/rng.h \
 src/train/adamw.h src/train/vae_loss.h src/core/dist.h src/core/error.h \
 src/train/checkpoint_file.h src/io/image.h
src/train/vae_trainer.h:
src/core/arena.h:
src/data/dataset.h:
src/models/discriminator.h:
src/models/params.h:
src/io/safetensors.h:
src/ops/conv2d.h:
src/models/lpips.h:
src/models/vae.h:
src/core/rng.h:
src/train/adamw.h:
src/train/vae_loss.h:
src/core/dist.h:
src/core/error.h:
src/train/checkpoint_file.h:
src/io/image.h:
