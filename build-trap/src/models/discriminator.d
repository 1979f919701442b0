build-trap/src/models/discriminator.o: src/models/discriminator.c \
 src/models/discriminator.h src/core/arena.h src/models/params.h \
 src/io/safetensors.h src/ops/conv2d.h src/core/error.h src/ops/act.h \
 src/ops/fast_exp.h src/ops/norm.h
src/models/discriminator.h:
src/core/arena.h:
src/models/params.h:
src/io/safetensors.h:
src/ops/conv2d.h:
src/core/error.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/norm.h:
