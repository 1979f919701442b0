build-trap/bench/bench_models.o: bench/bench_models.c src/core/omp_spin.h \
 bench/bench_common.h src/core/error.h src/core/rng.h src/ops/gemm.h \
 src/core/arena.h src/diffusion/denoising_objective.h \
 src/diffusion/interpolant.h src/models/sit.h src/io/safetensors.h \
 src/models/params.h src/diffusion/sampler.h src/models/vae.h \
 src/ops/loss.h
src/core/omp_spin.h:
bench/bench_common.h:
src/core/error.h:
src/core/rng.h:
src/ops/gemm.h:
src/core/arena.h:
src/diffusion/denoising_objective.h:
src/diffusion/interpolant.h:
src/models/sit.h:
src/io/safetensors.h:
src/models/params.h:
src/diffusion/sampler.h:
src/models/vae.h:
src/ops/loss.h:
