build-trap/src/models/vae_diffusers.o: src/models/vae_diffusers.c \
 src/models/vae_diffusers.h src/models/vae.h src/core/arena.h \
 src/core/rng.h src/io/safetensors.h src/models/params.h src/core/error.h
src/models/vae_diffusers.h:
src/models/vae.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
