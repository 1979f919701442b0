build-trap/src/core/path.o: src/core/path.c src/core/path.h \
 src/core/error.h
src/core/path.h:
src/core/error.h:
