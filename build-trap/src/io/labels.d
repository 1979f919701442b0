build-trap/src/io/labels.o: src/io/labels.c src/io/labels.h \
 src/core/error.h
src/io/labels.h:
src/core/error.h:
