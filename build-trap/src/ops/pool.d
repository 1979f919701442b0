build-trap/src/ops/pool.o: src/ops/pool.c src/ops/pool.h
src/ops/pool.h:
