build-trap/src/data/image_folder.o: src/data/image_folder.c \
 src/data/image_folder.h src/data/dataset.h src/core/error.h \
 src/core/progress.h src/io/image.h src/ops/resample.h
src/data/image_folder.h:
src/data/dataset.h:
src/core/error.h:
src/core/progress.h:
src/io/image.h:
src/ops/resample.h:
