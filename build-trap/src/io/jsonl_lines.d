build-trap/src/io/jsonl_lines.o: src/io/jsonl_lines.c \
 src/io/jsonl_lines.h src/core/error.h
src/io/jsonl_lines.h:
src/core/error.h:
