build-trap/src/ops/embed.o: src/ops/embed.c src/ops/embed.h
src/ops/embed.h:
