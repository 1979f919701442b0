build-trap/src/ops/attention.o: src/ops/attention.c src/ops/attention.h \
 src/core/error.h src/ops/fast_exp.h src/ops/gemm.h
src/ops/attention.h:
src/core/error.h:
src/ops/fast_exp.h:
src/ops/gemm.h:
