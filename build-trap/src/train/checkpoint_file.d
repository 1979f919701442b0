build-trap/src/train/checkpoint_file.o: src/train/checkpoint_file.c \
 src/train/checkpoint_file.h src/models/params.h src/io/safetensors.h \
 src/core/error.h
src/train/checkpoint_file.h:
src/models/params.h:
src/io/safetensors.h:
src/core/error.h:
