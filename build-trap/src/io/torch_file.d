build-trap/src/io/torch_file.o: src/io/torch_file.c src/io/torch_file.h \
 src/io/file_map.h src/io/safetensors.h src/core/error.h src/core/utf8.h \
 src/io/pickle.h src/io/zip_archive.h
src/io/torch_file.h:
src/io/file_map.h:
src/io/safetensors.h:
src/core/error.h:
src/core/utf8.h:
src/io/pickle.h:
src/io/zip_archive.h:
