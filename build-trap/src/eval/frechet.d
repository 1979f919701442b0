build-trap/src/eval/frechet.o: src/eval/frechet.c src/eval/frechet.h \
 src/eval/feature_stats.h src/io/safetensors.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 src/core/error.h
src/eval/frechet.h:
src/eval/feature_stats.h:
src/io/safetensors.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
src/core/error.h:
