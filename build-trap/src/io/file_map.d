build-trap/src/io/file_map.o: src/io/file_map.c src/io/file_map.h \
 src/core/error.h
src/io/file_map.h:
src/core/error.h:
