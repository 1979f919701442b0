build-trap/src/train/classifier_trainer.o: src/train/classifier_trainer.c \
 src/train/classifier_trainer.h src/core/arena.h \
 src/models/cnn_classifier.h src/io/safetensors.h src/models/params.h \
 src/ops/conv2d.h src/models/vit.h src/train/adamw.h src/core/error.h \
 src/core/dist.h src/core/rng.h src/models/encoder_preprocess.h \
 src/ops/cross_entropy.h
src/train/classifier_trainer.h:
src/core/arena.h:
src/models/cnn_classifier.h:
src/io/safetensors.h:
src/models/params.h:
src/ops/conv2d.h:
src/models/vit.h:
src/train/adamw.h:
src/core/error.h:
src/core/dist.h:
src/core/rng.h:
src/models/encoder_preprocess.h:
src/ops/cross_entropy.h:
