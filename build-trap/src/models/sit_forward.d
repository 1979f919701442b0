build-trap/src/models/sit_forward.o: src/models/sit_forward.c \
 src/core/dist.h src/core/rng.h src/core/error.h src/models/sit.h \
 src/core/arena.h src/io/safetensors.h src/models/params.h src/ops/act.h \
 src/ops/fast_exp.h src/ops/attention.h src/ops/conv2d.h src/ops/embed.h \
 src/ops/gemm.h src/ops/linear.h src/ops/modulate.h src/ops/norm.h \
 src/ops/sync_batch_norm.h
src/core/dist.h:
src/core/rng.h:
src/core/error.h:
src/models/sit.h:
src/core/arena.h:
src/io/safetensors.h:
src/models/params.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/attention.h:
src/ops/conv2d.h:
src/ops/embed.h:
src/ops/gemm.h:
src/ops/linear.h:
src/ops/modulate.h:
src/ops/norm.h:
src/ops/sync_batch_norm.h:
