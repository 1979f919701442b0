/* classifier_trainer.h — supervised training of a classifier (cross-entropy,
 * AdamW): a DINOv2-family ViT with a linear head on x_norm_clstoken, to make
 * a small REPA target encoder where no pretrained DINOv2 can be had
 * (Fashion-MNIST), or the CNN classifier of models/cnn_classifier.h, our
 * evaluation network.
 *
 * Input: uint8 images [B,C,H,W].  ViT, 1 channel: (u/255 − mean)/std with
 * the configured mean/std (what `repae train --enc-mean/--enc-std` feeds the
 * encoder); ViT, 3 channels: the DINOv2 preprocessing (ImageNet mean/std,
 * bicubic resize to the ViT's img_size), as `repae train` does.  CNN: every
 * channel (u/255 − mean)/std, at the images' own size.
 *
 * Augmentation (training steps only), drawn from streams keyed by (seed,
 * step) so a run is reproducible: random horizontal flips (probability ½),
 * then random translations by up to crop_pad pixels each way with zero fill
 * (a random crop of the image padded by crop_pad, as torchvision's
 * RandomCrop(size, padding=crop_pad)).
 *
 * Learning rate of step k (0-based): linear warm-up over warmup_steps, then
 * cosine decay to 0 at total_steps:
 *   lr_k = lr·(k + 1)/(warmup + 1)                              (k < warmup)
 *   lr_k = lr·½(1 + cos(π·(k − warmup)/(total − warmup)))       (k ≥ warmup)
 * Weight decay is AdamW's decoupled decay on every trained tensor.
 *
 *   classifier_trainer t;
 *   classifier_trainer_init(&t, &cfg, &vit, w, C, H, W, 256);  // or classifier_trainer_init_cnn(&t, &cfg, &cnn, w, ..)
 *   classifier_step(&t, images, labels, &logs);
 *   int correct = classifier_evaluate(&t, test_images, test_labels, n);
 *
 * One arena sized at init holds the training step and an evaluation batch.
 */
#ifndef REPAE_CLASSIFIER_TRAINER_H
#define REPAE_CLASSIFIER_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "models/cnn_classifier.h"
#include "models/vit.h"
#include "train/adamw.h"

typedef struct classifier_config {
    int batch;
    float lr, weight_decay, max_grad_norm; /* max_grad_norm 0: no clipping */
    long long warmup_steps, total_steps;
    bool hflip;
    int crop_pad;    /* random translation of up to crop_pad px (0: none) */
    float mean, std; /* input normalisation (ViT: 1-channel only; CNN: every channel) */
    uint64_t seed;
} classifier_config;

typedef enum classifier_arch { CLASSIFIER_VIT, CLASSIFIER_CNN } classifier_arch;

typedef struct classifier_trainer {
    classifier_config cfg;
    classifier_arch arch;
    vit *m;               /* CLASSIFIER_VIT, with num_classes > 0 */
    cnn_classifier *cnn;  /* CLASSIFIER_CNN, with num_classes > 0 */
    const param_table *table; /* the model's */
    float *params;            /* the caller's weights buffer, trained in place */
    int num_classes;
    float *grads;
    adamw opt;
    long long step;
    int C, H, W, eval_batch;
    arena ar;
} classifier_trainer;

typedef struct classifier_logs {
    double loss, accuracy, grad_norm, lr;
} classifier_logs;

float classifier_lr(const classifier_config *c, long long step);
void classifier_trainer_init(classifier_trainer *t, const classifier_config *cfg, vit *m, float *params, int C, int H,
                             int W, int eval_batch);
void classifier_trainer_init_cnn(classifier_trainer *t, const classifier_config *cfg, cnn_classifier *m,
                                 float *params, int C, int H, int W, int eval_batch);
void classifier_trainer_free(classifier_trainer *t);
void classifier_step(classifier_trainer *t, const uint8_t *images, const int32_t *labels, classifier_logs *logs);
/* Top-1 correct predictions over n images (batches of eval_batch, no flips). */
int classifier_evaluate(classifier_trainer *t, const uint8_t *images, const int32_t *labels, int n);

#endif
