build-trap/src/core/omp_spin.o: src/core/omp_spin.c src/core/omp_spin.h
src/core/omp_spin.h:
