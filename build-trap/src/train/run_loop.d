build-trap/src/train/run_loop.o: src/train/run_loop.c \
 src/train/run_loop.h src/data/loader.h src/data/dataset.h \
 src/train/run_dir.h src/core/dist.h src/core/rng.h src/core/error.h \
 src/core/progress.h
src/train/run_loop.h:
src/data/loader.h:
src/data/dataset.h:
src/train/run_dir.h:
src/core/dist.h:
src/core/rng.h:
src/core/error.h:
src/core/progress.h:
