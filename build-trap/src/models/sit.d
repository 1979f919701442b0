build-trap/src/models/sit.o: src/models/sit.c src/models/sit.h \
 src/core/arena.h src/core/rng.h src/io/safetensors.h src/models/params.h \
 src/core/error.h src/ops/embed.h
src/models/sit.h:
src/core/arena.h:
src/core/rng.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
src/ops/embed.h:
