build-trap/src/diffusion/denoising_objective.o: \
 src/diffusion/denoising_objective.c src/diffusion/denoising_objective.h \
 src/core/arena.h src/core/rng.h src/diffusion/interpolant.h \
 src/models/sit.h src/io/safetensors.h src/models/params.h \
 src/core/error.h src/ops/loss.h
src/diffusion/denoising_objective.h:
src/core/arena.h:
src/core/rng.h:
src/diffusion/interpolant.h:
src/models/sit.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
src/ops/loss.h:
