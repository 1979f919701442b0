build-trap/src/ops/resample.o: src/ops/resample.c src/ops/resample.h \
 src/core/error.h
src/ops/resample.h:
src/core/error.h:
