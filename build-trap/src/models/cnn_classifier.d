build-trap/src/models/cnn_classifier.o: src/models/cnn_classifier.c \
 src/models/cnn_classifier.h src/core/arena.h src/io/safetensors.h \
 src/models/params.h src/ops/conv2d.h src/core/error.h src/ops/act.h \
 src/ops/fast_exp.h src/ops/linear.h src/ops/norm.h src/ops/pool.h
src/models/cnn_classifier.h:
src/core/arena.h:
src/io/safetensors.h:
src/models/params.h:
src/ops/conv2d.h:
src/core/error.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/linear.h:
src/ops/norm.h:
src/ops/pool.h:
