build-trap/src/io/pickle.o: src/io/pickle.c src/io/pickle.h \
 src/core/error.h src/core/utf8.h
src/io/pickle.h:
src/core/error.h:
src/core/utf8.h:
