build-trap/src/diffusion/sit_velocity.o: src/diffusion/sit_velocity.c \
 src/diffusion/sit_velocity.h src/core/arena.h src/diffusion/sampler.h \
 src/diffusion/interpolant.h src/models/sit.h src/core/rng.h \
 src/io/safetensors.h src/models/params.h src/models/vae.h
src/diffusion/sit_velocity.h:
src/core/arena.h:
src/diffusion/sampler.h:
src/diffusion/interpolant.h:
src/models/sit.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/models/vae.h:
