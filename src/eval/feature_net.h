/* feature_net.h — the network whose features FID, sFID, IS and P/R are
 * computed in: the ADM Inception-v3 (models/inception.h), one of our ViTs
 * (models/vit.h) or our CNN classifier (models/cnn_classifier.h), behind one
 * call that takes the evaluator's images.
 *
 *   feature_net f;
 *   feature_net_open_inception(&f, "inception.safetensors", 64);
 *   // or feature_net_open_vit(&f, "encoder.safetensors", FNET_VIT_CLS, 0, NAN, NAN, 64);
 *   feature_net_features(&f, images, B, H, W, C, pool, spatial, logits);
 *   feature_net_free(&f);
 *
 * Images are uint8 NHWC [B, H, W, C] with C = 1 or 3 (an ADM sample batch's
 * layout; grey images may come 1-channel or replicated to 3).
 *
 * Inception: the graph's own preprocessing (inception_features): legacy TF
 * resize to 299, (x − 128)/128.  1-channel images are replicated to RGB.
 * pool = pool_3 [B, dim], spatial = mixed_6/conv first 7 channels [B, 2023],
 * logits [B, 1008].  The width divisor (1 for the real network; tests use
 * 8 or 16) is read off the weights (Conv2d_1a_3x3 has 32 / width_div filters).
 *
 * ViT (a DINOv2-family checkpoint; a classification head may be present and
 * is ignored): pool = the final-norm cls token (FNET_VIT_CLS) or the mean of
 * the final-norm patch tokens (FNET_VIT_MEAN_PATCH), [B, D]; no spatial
 * features and no logits.  Preprocessing is the one the encoder was trained
 * with (train/classifier_trainer.h):
 *   1-channel ViT: grey = channel mean (exact for replicated grey),
 *                  (grey/255 − mean)/std, then a bicubic resize to the ViT's
 *                  img_size if the images are another size;
 *   3-channel ViT: 1-channel images replicated, then the DINOv2
 *                  preprocessing (ImageNet mean/std, bicubic resize to img_size).
 * mean/std default (NaN) to the file's metadata enc_mean/enc_std (written by
 * `repae train-encoder`), else 0.5/0.5.  Heads: `heads` if > 0, else the
 * metadata config JSON's "heads"/"num_heads", else the DINOv2 width table;
 * unknown widths die asking for them.
 *
 * CNN (`repae train-encoder --arch cnn`; its head, if any, is ignored):
 * pool = the global average of the last stage's pooled map [B, w_last]; no
 * spatial features, no logits.  Preprocessing as it was trained:
 *   1-channel CNN: grey = channel mean, (grey/255 − mean)/std;
 *   C-channel CNN: 1-channel images replicated, each channel (u/255 − mean)/std;
 * then a bicubic resize to the training size (metadata img_size) if the
 * images are another size.  mean/std as for the ViT.
 */
#ifndef REPAE_FEATURE_NET_H
#define REPAE_FEATURE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "models/cnn_classifier.h"
#include "models/inception.h"
#include "models/vit.h"

typedef enum feature_net_kind { FNET_INCEPTION, FNET_VIT, FNET_CNN } feature_net_kind;
typedef enum feature_net_layer { FNET_VIT_CLS, FNET_VIT_MEAN_PATCH } feature_net_layer;

typedef struct feature_net {
    feature_net_kind kind;
    char name[64];       /* "inception", "inception/8", "vit-cls", "vit-mean-patch", "cnn": stored with statistics */
    char label[96];      /* for messages: "Inception-v3 (pool_3)", "ViT cls token (D 192)", "CNN pooled features (D 128)" */
    const char *path;    /* the weights file */
    int dim;             /* pool features */
    int spatial_dim;     /* 2023 for Inception, 0 if none */
    int n_logits;        /* 1008 for Inception, 0 if none */
    int max_batch;
    /* Inception */
    inception inc;
    /* ViT */
    vit v;
    feature_net_layer layer;
    /* CNN */
    cnn_classifier cnn;
    int cnn_size;        /* the image size it was trained at (images of another size are resized) */
    /* ViT and CNN */
    float *weights;      /* the weights buffer (ours): Inception's BN-folded copy, the ViT's or the CNN's */
    float enc_mean, enc_std;
    /* scratch */
    arena ar;
    uint8_t *rgb;        /* 1-channel images replicated to 3 */
    size_t rgb_bytes;
} feature_net;

void feature_net_open_inception(feature_net *f, const char *path, int max_batch);
void feature_net_open_vit(feature_net *f, const char *path, feature_net_layer layer, int heads, float enc_mean,
                          float enc_std, int max_batch);
/* Dies naming the file if it holds no CNN classifier (a ViT file says so). */
void feature_net_open_cnn(feature_net *f, const char *path, float enc_mean, float enc_std, int max_batch);
void feature_net_free(feature_net *f);

/* images [B, H, W, C] uint8 (B <= max_batch, C 1 or 3).  pool [B, dim];
 * spatial [B, spatial_dim] and logits [B, n_logits] may be NULL (and must
 * be when the network has none). */
void feature_net_features(feature_net *f, const uint8_t *images, int B, int H, int W, int C, float *pool,
                          float *spatial, float *logits);

#endif
