build-trap/src/ops/gemm_kernels_avx512.o: src/ops/gemm_kernels_avx512.c \
 src/ops/gemm_kernels.h src/ops/avx512_transpose.h
src/ops/gemm_kernels.h:
src/ops/avx512_transpose.h:
