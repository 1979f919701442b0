build-trap/src/eval/image_metrics.o: src/eval/image_metrics.c \
 src/eval/image_metrics.h src/core/error.h
src/eval/image_metrics.h:
src/core/error.h:
