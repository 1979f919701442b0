build-trap/src/ops/conv2d_dnnl.o: src/ops/conv2d_dnnl.c \
 src/ops/conv2d_dnnl.h src/ops/conv2d.h src/core/error.h
src/ops/conv2d_dnnl.h:
src/ops/conv2d.h:
src/core/error.h:
