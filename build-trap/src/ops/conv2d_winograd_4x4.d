build-trap/src/ops/conv2d_winograd_4x4.o: src/ops/conv2d_winograd_4x4.c \
 src/ops/conv2d_winograd_4x4.h src/ops/conv2d.h src/ops/gemm.h
src/ops/conv2d_winograd_4x4.h:
src/ops/conv2d.h:
src/ops/gemm.h:
