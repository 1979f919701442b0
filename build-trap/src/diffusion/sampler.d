build-trap/src/diffusion/sampler.o: src/diffusion/sampler.c \
 src/diffusion/sampler.h src/diffusion/interpolant.h src/core/arena.h \
 src/core/error.h src/core/rng.h
src/diffusion/sampler.h:
src/diffusion/interpolant.h:
src/core/arena.h:
src/core/error.h:
src/core/rng.h:
