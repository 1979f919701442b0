build-trap/src/data/latent_cache.o: src/data/latent_cache.c \
 src/data/latent_cache.h src/data/dataset.h src/models/vae.h \
 src/core/arena.h src/core/rng.h src/io/safetensors.h src/models/params.h \
 src/core/dist.h src/core/error.h src/core/progress.h
src/data/latent_cache.h:
src/data/dataset.h:
src/models/vae.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/core/dist.h:
src/core/error.h:
src/core/progress.h:
