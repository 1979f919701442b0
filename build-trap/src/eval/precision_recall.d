build-trap/src/eval/precision_recall.o: src/eval/precision_recall.c \
 src/eval/precision_recall.h src/core/error.h src/ops/gemm.h
src/eval/precision_recall.h:
src/core/error.h:
src/ops/gemm.h:
