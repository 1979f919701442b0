build-trap/src/train/preview.o: src/train/preview.c src/train/preview.h \
 src/models/sit.h src/core/arena.h src/core/rng.h src/io/safetensors.h \
 src/models/params.h src/models/vae.h src/core/error.h \
 src/diffusion/sampler.h src/diffusion/interpolant.h \
 src/diffusion/sit_velocity.h src/io/image.h
src/train/preview.h:
src/models/sit.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/models/vae.h:
src/core/error.h:
src/diffusion/sampler.h:
src/diffusion/interpolant.h:
src/diffusion/sit_velocity.h:
src/io/image.h:
