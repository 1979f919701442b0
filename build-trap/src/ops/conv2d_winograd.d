build-trap/src/ops/conv2d_winograd.o: src/ops/conv2d_winograd.c \
 src/ops/conv2d_winograd.h src/ops/conv2d.h src/ops/gemm.h \
 src/ops/im2col_permute.h
src/ops/conv2d_winograd.h:
src/ops/conv2d.h:
src/ops/gemm.h:
src/ops/im2col_permute.h:
