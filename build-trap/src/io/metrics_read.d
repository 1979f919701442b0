build-trap/src/io/metrics_read.o: src/io/metrics_read.c \
 src/io/metrics_read.h src/core/error.h src/io/jsonl_lines.h
src/io/metrics_read.h:
src/core/error.h:
src/io/jsonl_lines.h:
