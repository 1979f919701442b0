build-trap/src/ops/modulate.o: src/ops/modulate.c src/ops/modulate.h
src/ops/modulate.h:
