build-trap/src/io/plot.o: src/io/plot.c src/io/plot.h src/core/error.h \
 src/io/image.h
src/io/plot.h:
src/core/error.h:
src/io/image.h:
