build-trap/src/train/adamw.o: src/train/adamw.c src/train/adamw.h \
 src/models/params.h src/io/safetensors.h src/core/error.h \
 src/core/thread_share.h
src/train/adamw.h:
src/models/params.h:
src/io/safetensors.h:
src/core/error.h:
src/core/thread_share.h:
