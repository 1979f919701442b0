build-trap/src/eval/feature_net.o: src/eval/feature_net.c \
 src/eval/feature_net.h src/core/arena.h src/models/cnn_classifier.h \
 src/io/safetensors.h src/models/params.h src/ops/conv2d.h \
 src/models/inception.h src/models/vit.h src/core/error.h \
 src/models/encoder_preprocess.h src/ops/resample.h src/io/weights_file.h
src/eval/feature_net.h:
src/core/arena.h:
src/models/cnn_classifier.h:
src/io/safetensors.h:
src/models/params.h:
src/ops/conv2d.h:
src/models/inception.h:
src/models/vit.h:
src/core/error.h:
src/models/encoder_preprocess.h:
src/ops/resample.h:
src/io/weights_file.h:
