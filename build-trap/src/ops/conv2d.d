build-trap/src/ops/conv2d.o: src/ops/conv2d.c src/ops/conv2d.h \
 src/ops/conv2d_dnnl.h src/ops/conv2d_winograd.h \
 src/ops/conv2d_winograd_4x4.h src/ops/gemm.h src/ops/im2col_permute.h
src/ops/conv2d.h:
src/ops/conv2d_dnnl.h:
src/ops/conv2d_winograd.h:
src/ops/conv2d_winograd_4x4.h:
src/ops/gemm.h:
src/ops/im2col_permute.h:
