build-trap/src/models/inception.o: src/models/inception.c \
 src/models/inception.h src/core/arena.h src/io/safetensors.h \
 src/models/params.h src/core/error.h src/ops/act.h src/ops/fast_exp.h \
 src/ops/conv2d.h src/ops/gemm.h
src/models/inception.h:
src/core/arena.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/conv2d.h:
src/ops/gemm.h:
