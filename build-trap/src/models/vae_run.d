build-trap/src/models/vae_run.o: src/models/vae_run.c src/core/error.h \
 src/models/vae.h src/core/arena.h src/core/rng.h src/io/safetensors.h \
 src/models/params.h src/ops/act.h src/ops/fast_exp.h src/ops/attention.h \
 src/ops/conv2d.h src/ops/gemm.h src/ops/norm.h src/ops/resample.h
src/core/error.h:
src/models/vae.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/attention.h:
src/ops/conv2d.h:
src/ops/gemm.h:
src/ops/norm.h:
src/ops/resample.h:
