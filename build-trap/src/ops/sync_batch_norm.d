build-trap/src/ops/sync_batch_norm.o: src/ops/sync_batch_norm.c \
 src/ops/sync_batch_norm.h src/core/dist.h src/core/rng.h \
 src/core/error.h src/ops/norm.h
src/ops/sync_batch_norm.h:
src/core/dist.h:
src/core/rng.h:
src/core/error.h:
src/ops/norm.h:
