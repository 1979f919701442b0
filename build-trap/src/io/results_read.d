build-trap/src/io/results_read.o: src/io/results_read.c \
 src/io/results_read.h src/core/error.h src/io/jsonl_lines.h
src/io/results_read.h:
src/core/error.h:
src/io/jsonl_lines.h:
