build-trap/src/core/options.o: src/core/options.c src/core/options.h \
 src/core/error.h
src/core/options.h:
src/core/error.h:
