build-trap/src/eval/inception_score.o: src/eval/inception_score.c \
 src/eval/inception_score.h src/core/error.h
src/eval/inception_score.h:
src/core/error.h:
