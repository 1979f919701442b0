build-trap/src/core/arena.o: src/core/arena.c src/core/arena.h \
 src/core/error.h
src/core/arena.h:
src/core/error.h:
