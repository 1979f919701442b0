build-trap/src/ops/gemm.o: src/ops/gemm.c src/ops/gemm.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 src/ops/gemm_packed.h
src/ops/gemm.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
src/ops/gemm_packed.h:
