build-trap/src/train/latents_stats.o: src/train/latents_stats.c \
 src/train/latents_stats.h src/data/dataset.h src/data/latent_cache.h \
 src/models/vae.h src/core/arena.h src/core/rng.h src/io/safetensors.h \
 src/models/params.h src/core/error.h src/io/weights_file.h \
 src/models/vae_diffusers.h
src/train/latents_stats.h:
src/data/dataset.h:
src/data/latent_cache.h:
src/models/vae.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
src/io/weights_file.h:
src/models/vae_diffusers.h:
