build-trap/src/diffusion/interpolant.o: src/diffusion/interpolant.c \
 src/diffusion/interpolant.h src/core/error.h
src/diffusion/interpolant.h:
src/core/error.h:
