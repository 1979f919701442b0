build-trap/src/ops/linear.o: src/ops/linear.c src/ops/linear.h \
 src/ops/gemm.h
src/ops/linear.h:
src/ops/gemm.h:
