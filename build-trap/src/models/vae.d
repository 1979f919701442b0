build-trap/src/models/vae.o: src/models/vae.c src/models/vae.h \
 src/core/arena.h src/core/rng.h src/io/safetensors.h src/models/params.h \
 src/core/error.h src/io/weights_file.h src/models/vae_diffusers.h
src/models/vae.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
src/io/weights_file.h:
src/models/vae_diffusers.h:
