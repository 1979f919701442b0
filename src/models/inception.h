/* inception.h — the ADM evaluator's Inception-v3 feature network (spec §10.1),
 * forward only.
 *
 * The TF graph classify_image_graph_def.pb (2015-12-05) with the body of
 * pytorch-fid's "FID Inception": BasicConv2d = conv (no bias) + BatchNorm
 * (eps 1e-3) + ReLU; every InceptionA/C/E average pool ignores the padding
 * (count_include_pad=False); Mixed_7c's pool branch is a 3×3 MAX pool; a
 * global average pool ends the body.  Preprocessing is the graph's, not
 * pytorch-fid's:
 *
 *   uint8 images [B, H, W, 3] (NHWC, values 0..255)
 *     -> TF-1 legacy bilinear resize to 299×299 (align_corners=False and no
 *        half-pixel offset: src = dst·(in/out) in float32, neighbours
 *        floor(src) and ceil(src) clamped to the edge)
 *     -> (x − 128) / 128
 *     -> body, NCHW float32
 *   outputs (any may be NULL except pool3)
 *     pool3   [B, 2048]  pool_3:0, the FID features
 *     spatial [B, 2023]  mixed_6/conv:0 = Mixed_6d.branch1x1 (192 ch, 17×17),
 *                        first 7 channels, flattened H, W, C (C fastest): sFID
 *     logits  [B, 1008]  pool3 · fc.weightᵀ, NO bias (softmax/logits/MatMul): IS
 *
 * Weights: a safetensors file with pytorch-fid's state-dict names
 * (Conv2d_1a_3x3.conv.weight, Conv2d_1a_3x3.bn.{weight,bias,running_mean,
 * running_var}, Mixed_5b.branch1x1.conv.weight, ..., Mixed_7c.branch_pool.bn
 * .running_var, fc.weight [1008, 2048]).  pytorch-fid's
 * pt_inception-2015-12-05-6726825d.pth loads as it is (through weights_open):
 * its bn.num_batches_tracked and fc.bias are the only extra tensors allowed
 * and are ignored (tools/convert_inception.py drops the same; the logits have
 * no bias).  See docs/inception.md.
 *
 *   inception m;
 *   inception_build(&m, 1);
 *   float *params = param_alloc(&m.table);
 *   inception_load(&m, params, st);          // strict by name
 *   float *folded = inception_fold(&m, params);   // BN folded in; params may be freed now
 *   arena a = arena_create(inception_workspace_bytes(&m, B));
 *   inception_features(&m, folded, images, B, H, W, pool3, spatial, logits, &a);
 *
 * inception_fold returns a new buffer (the caller's, as every weights buffer:
 * models/params.h) laid out by m's folded offsets: every conv with its
 * BatchNorm folded in (w' = w·γ/√(var+eps), b' = β − mean·γ/√(var+eps)) and
 * fc.weight, which is all the forward reads.
 *
 * `width_div` divides every channel count of the body (pool3 then has
 * 2048/width_div entries; the 1008 classes and the 7 spatial channels stay):
 * tests use tiny networks with the same keys and structure; real weights need 1.
 * Threads: a batch of at least as many images as OpenMP threads is split
 * into one chunk of whole images per thread (single-threaded gemms inside, no
 * barriers inside the network); a smaller batch, or a call from inside a
 * parallel region, runs as one chunk with threaded gemms and loops.  Results
 * may differ in float rounding (not more) with the batch size and thread count.
 */
#ifndef REPAE_INCEPTION_H
#define REPAE_INCEPTION_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "io/safetensors.h"
#include "models/params.h"

#define INCEPTION_CONVS 94
#define INCEPTION_BLOCKS 11   /* Mixed_5b .. Mixed_7c */
#define INCEPTION_SIZE 299    /* network input, after the resize */
#define INCEPTION_CLASSES 1008
#define INCEPTION_SPATIAL_C 7
#define INCEPTION_SPATIAL_HW 17
#define INCEPTION_SPATIAL_DIM (INCEPTION_SPATIAL_HW * INCEPTION_SPATIAL_HW * INCEPTION_SPATIAL_C) /* 2023 */
#define INCEPTION_BN_EPS 1e-3

/* One BasicConv2d: the conv's geometry, its input size at a 299×299 network
 * input, and where its tensors live. */
typedef struct inception_conv {
    int c_in, c_out, kh, kw, stride, pad_h, pad_w;
    int H, W;                                    /* per-image input size */
    size_t weight, bn_weight, bn_bias, bn_mean, bn_var; /* offsets into the table buffer */
    size_t fweight, fbias;                       /* offsets into the folded buffer (inception_fold) */
} inception_conv;

typedef enum inception_block_kind { INC_A, INC_B, INC_C, INC_D, INC_E_AVG, INC_E_MAX } inception_block_kind;

typedef struct inception_block {
    inception_block_kind kind;
    int first_conv;       /* index of its first conv in m->conv (registration order) */
    int c_in, c_out, H, W; /* input channels/size; output channels */
} inception_block;

typedef struct inception {
    param_table table;
    int width_div;
    int dim;                  /* pool3 width: 2048 / width_div */
    int n_conv;
    inception_conv conv[INCEPTION_CONVS];
    inception_block block[INCEPTION_BLOCKS];
    size_t fc;                /* fc.weight [1008, dim] in the table */
    /* Layout of the folded buffer (inception_fold): conv weights/biases, then fc.weight. */
    size_t folded_floats, folded_fc;
} inception;

/* Registers every tensor (pytorch-fid state-dict order).  width_div must be
 * 1, 2, 4, 8 or 16.  Dies otherwise. */
void inception_build(inception *m, int width_div);
void inception_free(inception *m);

/* Strict by name except for pytorch-fid's *.bn.num_batches_tracked and
 * fc.bias (ignored): a missing, misshaped or unexpected tensor (AuxLogits.*,
 * a 1000-class fc) dies naming it. */
void inception_load(const inception *m, float *params, const safetensors *st);
/* The BN-folded weights (m->folded_floats floats, malloc'd: the caller frees
 * them) from a table buffer (after inception_load or param_init). */
float *inception_fold(const inception *m, const float *params);

/* Arena bytes inception_features needs for any batch of up to B images (any
 * input size) at the current omp_get_max_threads(). */
size_t inception_workspace_bytes(const inception *m, int B);

/* images [B, H, W, 3] uint8; pool3 [B, dim]; spatial [B, 2023] or NULL;
 * logits [B, 1008] or NULL.  Scratch comes from `a` and is released before
 * returning. */
void inception_features(const inception *m, const float *folded, const uint8_t *images, int B, int H, int W,
                        float *pool3, float *spatial, float *logits, arena *a);

/* ---- building blocks, exposed for tests ---- */

/* TF-1 legacy bilinear resize of uint8 NHWC [B, H, W, C] to float NCHW
 * [B, C, Ho, Wo], then out = (v − shift) · scale.  Float32 arithmetic in
 * TF's order: top = tl + (tr − tl)·xl, bottom = bl + (br − bl)·xl,
 * v = top + (bottom − top)·yl. */
void inception_resize_legacy(float *out, const uint8_t *in, int B, int H, int W, int C, int Ho, int Wo,
                             float shift, float scale);
/* 3×3 average pool, stride 1, padding 1, count_include_pad=False:
 * x, out [B, C, H, W]. */
void inception_avgpool3x3(float *out, const float *x, int B, int C, int H, int W);

#endif
