build-trap/src/io/idx.o: src/io/idx.c src/io/idx.h src/core/error.h
src/io/idx.h:
src/core/error.h:
