build-trap/src/ops/act.o: src/ops/act.c src/ops/act.h src/ops/fast_exp.h
src/ops/act.h:
src/ops/fast_exp.h:
