build-trap/src/models/vit.o: src/models/vit.c src/models/vit.h \
 src/core/arena.h src/io/safetensors.h src/models/params.h \
 src/core/error.h src/ops/act.h src/ops/fast_exp.h src/ops/attention.h \
 src/ops/embed.h src/ops/linear.h src/ops/norm.h src/ops/resample.h
src/models/vit.h:
src/core/arena.h:
src/io/safetensors.h:
src/models/params.h:
src/core/error.h:
src/ops/act.h:
src/ops/fast_exp.h:
src/ops/attention.h:
src/ops/embed.h:
src/ops/linear.h:
src/ops/norm.h:
src/ops/resample.h:
