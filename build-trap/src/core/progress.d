build-trap/src/core/progress.o: src/core/progress.c src/core/progress.h \
 src/core/dist.h src/core/rng.h
src/core/progress.h:
src/core/dist.h:
src/core/rng.h:
