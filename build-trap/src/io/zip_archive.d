build-trap/src/io/zip_archive.o: src/io/zip_archive.c \
 src/io/zip_archive.h src/core/error.h src/core/utf8.h
src/io/zip_archive.h:
src/core/error.h:
src/core/utf8.h:
