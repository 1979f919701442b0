build-trap/src/ops/spatial_norm.o: src/ops/spatial_norm.c \
 src/ops/spatial_norm.h src/core/error.h
src/ops/spatial_norm.h:
src/core/error.h:
