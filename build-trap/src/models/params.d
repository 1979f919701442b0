build-trap/src/models/params.o: src/models/params.c src/models/params.h \
 src/io/safetensors.h src/core/arena.h src/core/error.h \
 src/core/finite_check.h src/core/rng.h
src/models/params.h:
src/io/safetensors.h:
src/core/arena.h:
src/core/error.h:
src/core/finite_check.h:
src/core/rng.h:
