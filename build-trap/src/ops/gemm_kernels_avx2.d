build-trap/src/ops/gemm_kernels_avx2.o: src/ops/gemm_kernels_avx2.c \
 src/ops/gemm_kernels.h
src/ops/gemm_kernels.h:
