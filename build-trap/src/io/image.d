build-trap/src/io/image.o: src/io/image.c src/io/image.h src/core/error.h
src/io/image.h:
src/core/error.h:
