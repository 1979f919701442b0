build-trap/src/train/run_dir.o: src/train/run_dir.c src/train/run_dir.h \
 src/core/dist.h src/core/rng.h src/core/error.h src/core/path.h
src/train/run_dir.h:
src/core/dist.h:
src/core/rng.h:
src/core/error.h:
src/core/path.h:
