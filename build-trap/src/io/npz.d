build-trap/src/io/npz.o: src/io/npz.c src/io/npz.h src/core/error.h
src/io/npz.h:
src/core/error.h:
