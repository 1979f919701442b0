build-trap/src/io/weights_file.o: src/io/weights_file.c \
 src/io/weights_file.h src/io/safetensors.h src/core/error.h \
 src/io/file_map.h src/io/torch_file.h
src/io/weights_file.h:
src/io/safetensors.h:
src/core/error.h:
src/io/file_map.h:
src/io/torch_file.h:
