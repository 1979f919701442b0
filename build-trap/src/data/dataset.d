build-trap/src/data/dataset.o: src/data/dataset.c src/data/dataset.h \
 src/core/error.h src/io/idx.h
src/data/dataset.h:
src/core/error.h:
src/io/idx.h:
