build-trap/src/core/finite_check.o: src/core/finite_check.c \
 src/core/finite_check.h
src/core/finite_check.h:
