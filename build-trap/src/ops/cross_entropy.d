build-trap/src/ops/cross_entropy.o: src/ops/cross_entropy.c \
 src/ops/cross_entropy.h src/core/error.h
src/ops/cross_entropy.h:
src/core/error.h:
