build-trap/src/ops/gemm_packed.o: src/ops/gemm_packed.c \
 src/ops/gemm_packed.h src/core/error.h src/ops/gemm_kernels.h
src/ops/gemm_packed.h:
src/core/error.h:
src/ops/gemm_kernels.h:
