build-trap/src/data/loader.o: src/data/loader.c src/data/loader.h \
 src/data/dataset.h src/core/error.h src/core/rng.h
src/data/loader.h:
src/data/dataset.h:
src/core/error.h:
src/core/rng.h:
