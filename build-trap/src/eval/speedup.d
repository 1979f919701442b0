build-trap/src/eval/speedup.o: src/eval/speedup.c src/eval/speedup.h \
 src/io/results_read.h src/core/error.h
src/eval/speedup.h:
src/io/results_read.h:
src/core/error.h:
