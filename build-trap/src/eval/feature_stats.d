build-trap/src/eval/feature_stats.o: src/eval/feature_stats.c \
 src/eval/feature_stats.h src/io/safetensors.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 src/core/error.h
src/eval/feature_stats.h:
src/io/safetensors.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
src/core/error.h:
