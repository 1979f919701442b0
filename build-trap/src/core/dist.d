build-trap/src/core/dist.o: src/core/dist.c src/core/dist.h \
 src/core/rng.h src/core/error.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h
src/core/dist.h:
src/core/rng.h:
src/core/error.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h:
