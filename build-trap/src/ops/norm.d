build-trap/src/ops/norm.o: src/ops/norm.c src/ops/norm.h src/core/error.h \
 src/ops/act.h src/ops/fast_exp.h
src/ops/norm.h:
src/core/error.h:
src/ops/act.h:
src/ops/fast_exp.h:
