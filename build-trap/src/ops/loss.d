build-trap/src/ops/loss.o: src/ops/loss.c src/ops/loss.h
src/ops/loss.h:
