build-trap/src/train/ema.o: src/train/ema.c src/train/ema.h \
 src/models/params.h src/io/safetensors.h src/core/thread_share.h
src/train/ema.h:
src/models/params.h:
src/io/safetensors.h:
src/core/thread_share.h:
