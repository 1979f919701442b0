/* cnn_classifier.h — a small VGG-style CNN classifier: the evaluation
 * network whose global-average-pooled penultimate features define our
 * Fréchet distance on small datasets (Fashion-MNIST), deliberately a
 * different architecture from the REPA target encoder (a ViT).
 *
 *   image [B,C,H,W]
 *   stage s (width w_s, s = 0 .. n_stages-1):
 *       conv1 3×3 pad 1 (no bias) -> GroupNorm(G) -> ReLU
 *       conv2 3×3 pad 1 (no bias) -> GroupNorm(G) -> ReLU
 *       2×2 max-pool (stride 2)                      H, W -> H/2, W/2 (floor)
 *   global average pool over the last stage's pixels -> features [B, w_last]
 *   head: Linear(w_last, K) -> logits [B, K]          (only when num_classes > 0)
 *
 * State-dict keys (dev/ref/repae_ref/cnn.py builds the same module):
 *   stages.<s>.conv1.weight [w_s, w_{s-1}, 3, 3]   (w_{-1} = C)
 *   stages.<s>.norm1.weight, stages.<s>.norm1.bias  [w_s]
 *   stages.<s>.conv2.weight [w_s, w_s, 3, 3]
 *   stages.<s>.norm2.weight, stages.<s>.norm2.bias  [w_s]
 *   head.weight [K, w_last], head.bias [K]
 * The convs have no bias: a GroupNorm follows each, which would remove it.
 * The GroupNorm group count cannot be read off the shapes, so files record
 * it in their metadata `config` JSON (cnn_config_to_json).
 *
 *   cnn_classifier m;
 *   cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 3, .widths = {32, 64, 128}, .groups = 8,
 *                               .num_classes = 10, .gn_eps = 1e-5f});
 *   float *w = param_alloc(&m.table);                   // the weights: the caller's (models/params.h)
 *   cnn_init_weights(&m, w, seed);
 *   arena ar = arena_create(cnn_plan_bytes(&m, B, H, W, true));
 *   cnn_acts a;
 *   cnn_acts_alloc(&a, &m, &ar, B, H, W, true);
 *   cnn_forward(&m, w, &a, img, features, logits);
 *   cnn_backward(&m, w, &a, grads, d_img, NULL, d_logits);   // ADDS into grads, d_img
 *
 * Inference mode (train = false) keeps nothing for a backward: every stage
 * runs through two shared scratch buffers.  All memory comes from the arena
 * sized by cnn_plan_bytes; nothing is allocated inside a forward/backward.
 */
#ifndef REPAE_CNN_CLASSIFIER_H
#define REPAE_CNN_CLASSIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "io/safetensors.h"
#include "models/params.h"
#include "ops/conv2d.h"

#define CNN_MAX_STAGES 6
#define CNN_FILE_FORMAT "repae-cnn-classifier" /* metadata `format` of a saved classifier */

typedef struct cnn_config {
    int in_chans;                /* C */
    int n_stages;                /* 1 .. CNN_MAX_STAGES */
    int widths[CNN_MAX_STAGES];  /* w_s; each divisible by groups */
    int groups;                  /* G, GroupNorm groups of every norm */
    int num_classes;             /* K > 0: head; 0: features only */
    float gn_eps;                /* 1e-5 (torch.nn.GroupNorm's default) */
} cnn_config;

typedef struct cnn_stage {
    int cin, cout;
    size_t conv1_w, norm1_w, norm1_b, conv2_w, norm2_w, norm2_b; /* offsets into params */
} cnn_stage;

typedef struct cnn_classifier {
    cnn_config cfg;
    int dim; /* feature width = widths[n_stages - 1] */
    param_table table; /* the weights are a separate buffer laid out by it (models/params.h) */
    cnn_stage stages[CNN_MAX_STAGES];
    size_t head_w, head_b;
} cnn_classifier;

/* What one stage keeps.  Train mode: every buffer its own; inference: c1/c2
 * and r1/r2 alias two scratch buffers, mean/rstd are NULL. */
typedef struct cnn_stage_acts {
    int H, W;                 /* the stage's input (= conv output) size */
    conv2d_shape conv1, conv2;
    float *c1, *c2;           /* [B,w,H,W] conv outputs (GroupNorm inputs) */
    float *r1, *r2;           /* [B,w,H,W] after GroupNorm + ReLU (conv2 / pool inputs) */
    float *mean1, *rstd1, *mean2, *rstd2; /* [B·G] */
    float *pool;              /* [B,w,H/2,W/2] the next stage's input */
} cnn_stage_acts;

typedef struct cnn_acts {
    int B, H, W;
    bool train;
    const float *img;         /* the forward's input, kept for the backward */
    cnn_stage_acts st[CNN_MAX_STAGES];
    float *features;          /* [B, dim] */
    float *workspace;         /* conv workspace (largest of the convs) */
    float *grad_a, *grad_b, *grad_p, *dfeat; /* train: backward scratch */
} cnn_acts;

/* ---- configuration ---- */

/* Dies naming the bad field (widths, groups, stages). */
void cnn_config_check(const cnn_config *c);
/* {"arch": "cnn", "in_chans": C, "widths": [..], "groups": G, "num_classes": K, "gn_eps": e}. */
const char *cnn_config_to_json(const cnn_config *c, char *buf, size_t size);
/* Shapes under `prefix` (stages.N.conv1.weight, head.weight) give the
 * widths, in_chans and num_classes; the metadata `config` JSON gives groups
 * and gn_eps (`groups` > 0 overrides).  Dies naming the file when there is no
 * CNN there or the groups are not recorded. */
cnn_config cnn_config_from_checkpoint(const safetensors *st, const char *prefix, int groups);
/* True if the file holds a CNN classifier under prefix (stages.0.conv1.weight). */
bool cnn_in_file(const safetensors *st, const char *prefix);

/* ---- model ---- */

void cnn_build(cnn_classifier *m, const cnn_config *cfg); /* the table only (no weight memory) */
void cnn_free(cnn_classifier *m);
/* PyTorch's defaults: conv/linear weights U(±1/sqrt(fan_in)), head bias
 * U(±1/sqrt(w_last)), GroupNorm weight 1, bias 0. */
void cnn_init_weights(const cnn_classifier *m, float *params, uint64_t seed);
/* Loads by name under prefix (shape mismatches and missing keys die). */
void cnn_load(const cnn_classifier *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
/* cnn_config_from_checkpoint + cnn_build + cnn_load into a new buffer, which
 * it returns (the caller frees it). */
float *cnn_from_checkpoint(cnn_classifier *m, const safetensors *st, const char *prefix, int groups,
                           param_load_mode mode);

/* ---- activations and passes ---- */

/* Arena bytes of cnn_acts_alloc(B, H, W, train), backward scratch included. */
size_t cnn_plan_bytes(const cnn_classifier *m, int B, int H, int W, bool train);
/* Dies if H or W is too small for the stages (each pool needs 2 pixels). */
void cnn_acts_alloc(cnn_acts *a, const cnn_classifier *m, arena *ar, int B, int H, int W, bool train);

/* img [B,C,H,W] (kept by pointer until the backward).  features [B, dim]
 * and logits [B, K] (needs num_classes > 0) may each be NULL. */
void cnn_forward(const cnn_classifier *m, const float *params, cnn_acts *a, const float *img, float *features,
                 float *logits);
/* Needs a train-mode forward in `a`.  d_features [B, dim] and d_logits [B, K]
 * (each may be NULL) are the cotangents; ADDS into grads (laid out like
 * params; NULL = frozen) and d_img [B,C,H,W] (NULL = not needed). */
void cnn_backward(const cnn_classifier *m, const float *params, const cnn_acts *a, float *grads, float *d_img,
                  const float *d_features, const float *d_logits);

#endif
