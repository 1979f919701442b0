build-trap/src/models/encoder_preprocess.o: \
 src/models/encoder_preprocess.c src/models/encoder_preprocess.h \
 src/core/arena.h src/core/error.h src/ops/resample.h
src/models/encoder_preprocess.h:
src/core/arena.h:
src/core/error.h:
src/ops/resample.h:
