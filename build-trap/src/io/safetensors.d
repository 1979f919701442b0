build-trap/src/io/safetensors.o: src/io/safetensors.c \
 src/io/safetensors.h src/core/error.h src/core/utf8.h src/io/file_map.h
src/io/safetensors.h:
src/core/error.h:
src/core/utf8.h:
src/io/file_map.h:
