build-trap/src/ops/im2col_permute.o: src/ops/im2col_permute.c \
 src/ops/im2col_permute.h src/core/error.h src/ops/gemm_packed.h \
 src/ops/avx512_transpose.h
src/ops/im2col_permute.h:
src/core/error.h:
src/ops/gemm_packed.h:
src/ops/avx512_transpose.h:
