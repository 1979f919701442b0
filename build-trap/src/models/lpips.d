build-trap/src/models/lpips.o: src/models/lpips.c src/models/lpips.h \
 src/core/arena.h src/models/params.h src/io/safetensors.h \
 src/ops/conv2d.h src/core/error.h src/io/weights_file.h src/ops/act.h \
 src/ops/fast_exp.h src/ops/pool.h
src/models/lpips.h:
src/core/arena.h:
src/models/params.h:
src/io/safetensors.h:
src/ops/conv2d.h:
src/core/error.h:
src/io/weights_file.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/pool.h:
