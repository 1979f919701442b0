/* feature_net.c — see feature_net.h. */
#include "eval/feature_net.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/encoder_preprocess.h"
#include "ops/resample.h"
#include "io/weights_file.h"

void feature_net_open_inception(feature_net *f, const char *path, int max_batch)
{
    memset(f, 0, sizeof *f);
    f->kind = FNET_INCEPTION;
    f->path = path;
    f->max_batch = max_batch;
    safetensors *st = weights_open(path);
    const st_tensor *t = safetensors_find(st, "Conv2d_1a_3x3.conv.weight");
    if (!t)
        die("'%s': not Inception-v3 weights (no Conv2d_1a_3x3.conv.weight); use pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth (or its tools/convert_inception.py copy; docs/inception.md)",
            path);
    int wd = t->ndim == 4 && t->shape[0] > 0 && 32 % t->shape[0] == 0 ? 32 / (int)t->shape[0] : 0;
    if (wd != 1 && wd != 2 && wd != 4 && wd != 8 && wd != 16)
        die("'%s': Conv2d_1a_3x3.conv.weight has %lld filters; Inception-v3 has 32 (or 32 / 2, 4, 8, 16 for a "
            "reduced test network)",
            path, (long long)t->shape[0]);
    inception_build(&f->inc, wd);
    float *params = param_alloc(&f->inc.table);
    inception_load(&f->inc, params, st);
    f->weights = inception_fold(&f->inc, params);
    free(params); /* the forward reads only the folded copy */
    safetensors_close(st);
    f->dim = f->inc.dim;
    f->spatial_dim = INCEPTION_SPATIAL_DIM;
    f->n_logits = INCEPTION_CLASSES;
    if (wd == 1) {
        snprintf(f->name, sizeof f->name, "inception");
        snprintf(f->label, sizeof f->label, "Inception-v3 pool_3");
    } else {
        snprintf(f->name, sizeof f->name, "inception/%d", wd);
        snprintf(f->label, sizeof f->label, "Inception-v3 at 1/%d width (a test network)", wd);
    }
    f->ar = arena_create(inception_workspace_bytes(&f->inc, max_batch));
}

/* A number from the file's metadata (a plain string like "0.5"), or NaN. */
static float meta_float(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    if (!v)
        return NAN;
    char *end;
    float x = strtof(v, &end);
    return end != v && *end == 0 ? x : NAN;
}

/* Heads recorded by `repae train-encoder` (metadata config {"heads": ..}). */
static int meta_heads(const safetensors *st, int width)
{
    const char *cfg = safetensors_meta(st, "config");
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    int h = 0;
    const char *keys[2] = {"heads", "num_heads"};
    for (int k = 0; k < 2 && !h; k++) {
        const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, keys[k]) : NULL;
        if (cJSON_IsNumber(v) && v->valueint > 0 && width % v->valueint == 0)
            h = v->valueint;
    }
    cJSON_Delete(j);
    return h;
}

void feature_net_open_vit(feature_net *f, const char *path, feature_net_layer layer, int heads, float enc_mean,
                          float enc_std, int max_batch)
{
    memset(f, 0, sizeof *f);
    f->kind = FNET_VIT;
    f->path = path;
    f->layer = layer;
    f->max_batch = max_batch;
    safetensors *st = weights_open(path);
    const st_tensor *cls = safetensors_find(st, "cls_token");
    if (!cls && cnn_in_file(st, ""))
        die("'%s': a CNN classifier (from `repae train-encoder --arch cnn`), not a ViT: use --feature-net cnn", path);
    if (!cls || cls->ndim != 3)
        die("'%s': not a DINOv2-family ViT (no cls_token [1, 1, D]); --feature-net vit takes an encoder from "
            "`repae train-encoder` or converted DINOv2 weights",
            path);
    int width = (int)cls->shape[2];
    if (heads <= 0)
        heads = meta_heads(st, width);
    if (heads <= 0)
        heads = vit_heads_for_width(width);
    if (heads <= 0)
        die("'%s': the ViT's width %d matches no DINOv2 preset and the file does not record its heads; pass "
            "--enc-heads",
            path, width);
    f->weights = vit_from_checkpoint(&f->v, st, "", 0, heads, PARAM_ALLOW_EXTRA);
    f->enc_mean = isnan(enc_mean) ? meta_float(st, "enc_mean") : enc_mean;
    f->enc_std = isnan(enc_std) ? meta_float(st, "enc_std") : enc_std;
    if (isnan(f->enc_mean))
        f->enc_mean = 0.5f;
    if (isnan(f->enc_std) || !(f->enc_std > 0))
        f->enc_std = 0.5f;
    safetensors_close(st);
    if (f->v.cfg.in_chans != 1 && f->v.cfg.in_chans != 3)
        die("'%s': the ViT takes %d-channel images; feature networks take 1 or 3", path, f->v.cfg.in_chans);
    f->dim = f->v.cfg.embed_dim;
    snprintf(f->name, sizeof f->name, "vit-%s", layer == FNET_VIT_CLS ? "cls" : "mean-patch");
    snprintf(f->label, sizeof f->label, "ViT %s (D %d, %d px, %d ch)",
             layer == FNET_VIT_CLS ? "cls token" : "mean patch token", f->dim, f->v.cfg.img_size, f->v.cfg.in_chans);
}

void feature_net_open_cnn(feature_net *f, const char *path, float enc_mean, float enc_std, int max_batch)
{
    memset(f, 0, sizeof *f);
    f->kind = FNET_CNN;
    f->path = path;
    f->max_batch = max_batch;
    safetensors *st = weights_open(path);
    if (!cnn_in_file(st, "")) {
        if (safetensors_find(st, "cls_token"))
            die("'%s': a ViT encoder, not a CNN classifier: use --feature-net vit (--feature-net cnn takes a file "
                "from `repae train-encoder --arch cnn`)",
                path);
        die("'%s': not a CNN classifier (no stages.0.conv1.weight); --feature-net cnn takes a file from "
            "`repae train-encoder --arch cnn`",
            path);
    }
    f->weights = cnn_from_checkpoint(&f->cnn, st, "", 0, PARAM_ALLOW_EXTRA);
    f->enc_mean = isnan(enc_mean) ? meta_float(st, "enc_mean") : enc_mean;
    f->enc_std = isnan(enc_std) ? meta_float(st, "enc_std") : enc_std;
    if (isnan(f->enc_mean))
        f->enc_mean = 0.5f;
    if (isnan(f->enc_std) || !(f->enc_std > 0))
        f->enc_std = 0.5f;
    float size = meta_float(st, "img_size");
    f->cnn_size = size >= 1 && size <= 65536 ? (int)size : 0;
    safetensors_close(st);
    f->dim = f->cnn.dim;
    snprintf(f->name, sizeof f->name, "cnn");
    snprintf(f->label, sizeof f->label, "CNN pooled features (D %d, %d stages, %d ch)", f->dim, f->cnn.cfg.n_stages,
             f->cnn.cfg.in_chans);
}

void feature_net_free(feature_net *f)
{
    if (f->kind == FNET_INCEPTION)
        inception_free(&f->inc);
    else if (f->kind == FNET_CNN)
        cnn_free(&f->cnn);
    else
        vit_free(&f->v);
    arena_free(&f->ar);
    free(f->rgb);
    free(f->weights);
    memset(f, 0, sizeof *f);
}

/* Arena bytes of one ViT batch of B images H×W (C channels). */
static size_t vit_bytes(const feature_net *f, int B, int H, int W)
{
    const vit *m = &f->v;
    int S = m->cfg.img_size, Cv = m->cfg.in_chans;
    size_t b = vit_plan_bytes(m, B, false);
    b += arena_round((size_t)B * Cv * S * S * sizeof(float));              /* model input */
    b += arena_round((size_t)B * 3 * H * W);                               /* NCHW uint8 */
    b += arena_round((size_t)B * H * W * sizeof(float));                   /* 1-channel normalised */
    b += encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, B, 3, H, W, S); /* 3-channel resize */
    b += arena_round((size_t)B * m->npatch * m->cfg.embed_dim * sizeof(float));
    return b + 4 * ARENA_ALIGN;
}

/* Makes sure f->ar holds `need` bytes, then empties it. */
static arena *reserve_arena(feature_net *f, size_t need)
{
    if (f->ar.capacity < need) {
        arena_free(&f->ar);
        f->ar = arena_create(need);
    }
    arena_reset(&f->ar, 0);
    return &f->ar;
}

/* uint8 NHWC images (C = 1 or 3) → float NCHW with Cm channels, each value
 * (u/255 − mean)/std.  Cm = 1: grey = mean of the channels (exactly the grey
 * value when it was replicated); C = 1: the grey value in every channel. */
static void normalise_u8(float *dst, const uint8_t *images, int B, size_t HW, int C, int Cm, float mean, float std)
{
    for (int b = 0; b < B; b++)
        for (size_t p = 0; p < HW; p++) {
            const uint8_t *px = images + ((size_t)b * HW + p) * C;
            for (int c = 0; c < Cm; c++) {
                float v;
                if (Cm == 1) {
                    v = 0;
                    for (int k = 0; k < C; k++)
                        v += (float)px[k];
                    v = C == 1 ? v : v / (float)C;
                } else
                    v = (float)px[C == 1 ? 0 : c];
                dst[((size_t)b * Cm + c) * HW + p] = (v / 255.0f - mean) / std;
            }
        }
}

static void vit_features(feature_net *f, const uint8_t *images, int B, int H, int W, int C, float *pool)
{
    const vit *m = &f->v;
    int S = m->cfg.img_size, Cv = m->cfg.in_chans, D = m->cfg.embed_dim, G2 = m->npatch;
    arena *ar = reserve_arena(f, vit_bytes(f, f->max_batch, H, W));
    const size_t HW = (size_t)H * W;
    float *in = arena_floats(ar, (size_t)B * Cv * S * S);
    if (Cv == 1) {
        float *g = arena_floats(ar, (size_t)B * HW);
        normalise_u8(g, images, B, HW, C, 1, f->enc_mean, f->enc_std);
        if (H == S && W == S)
            memcpy(in, g, (size_t)B * HW * sizeof(float));
        else
            bicubic_resize_forward(in, g, B, 1, H, W, S, S);
    } else {
        uint8_t *nchw = arena_alloc(ar, (size_t)B * 3 * HW);
        for (int b = 0; b < B; b++)
            for (int c = 0; c < 3; c++)
                for (size_t p = 0; p < HW; p++)
                    nchw[((size_t)b * 3 + c) * HW + p] = images[((size_t)b * HW + p) * C + (C == 1 ? 0 : c)];
        encoder_preprocess(in, nchw, ENC_PRE_DINOV2, B, 3, H, W, S, ar);
    }
    vit_acts a;
    vit_acts_alloc(&a, m, ar, B, false);
    if (f->layer == FNET_VIT_CLS)
        vit_forward(m, f->weights, &a, in, NULL, pool, NULL, NULL);
    else {
        float *patch = arena_floats(ar, (size_t)B * G2 * D);
        vit_forward(m, f->weights, &a, in, patch, NULL, NULL, NULL);
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) {
                double s = 0;
                for (int t = 0; t < G2; t++)
                    s += patch[((size_t)b * G2 + t) * D + d];
                pool[(size_t)b * D + d] = (float)(s / G2);
            }
    }
    arena_reset(ar, 0);
}

/* Arena bytes of one CNN batch of B images H×W at the network's size S×S. */
static size_t cnn_bytes(const feature_net *f, int B, int H, int W, int Ho, int Wo)
{
    int Cm = f->cnn.cfg.in_chans;
    size_t b = cnn_plan_bytes(&f->cnn, B, Ho, Wo, false);
    b += arena_round((size_t)B * Cm * H * W * sizeof(float));   /* normalised, NCHW */
    b += arena_round((size_t)B * Cm * Ho * Wo * sizeof(float)); /* resized */
    return b + 4 * ARENA_ALIGN;
}

static void cnn_features(feature_net *f, const uint8_t *images, int B, int H, int W, int C, float *pool)
{
    const int Cm = f->cnn.cfg.in_chans;
    const int Ho = f->cnn_size > 0 ? f->cnn_size : H, Wo = f->cnn_size > 0 ? f->cnn_size : W;
    if (Cm != 1 && C != 1 && C != Cm)
        die("feature network %s takes %d-channel images; these have %d", f->name, Cm, C);
    arena *ar = reserve_arena(f, cnn_bytes(f, f->max_batch, H, W, Ho, Wo));
    const size_t HW = (size_t)H * W;
    float *g = arena_floats(ar, (size_t)B * Cm * HW);
    normalise_u8(g, images, B, HW, C, Cm, f->enc_mean, f->enc_std);
    float *in = g;
    if (Ho != H || Wo != W) {
        in = arena_floats(ar, (size_t)B * Cm * Ho * Wo);
        bicubic_resize_forward(in, g, B, Cm, H, W, Ho, Wo);
    }
    cnn_acts a;
    cnn_acts_alloc(&a, &f->cnn, ar, B, Ho, Wo, false);
    cnn_forward(&f->cnn, f->weights, &a, in, pool, NULL);
    arena_reset(ar, 0);
}

void feature_net_features(feature_net *f, const uint8_t *images, int B, int H, int W, int C, float *pool,
                          float *spatial, float *logits)
{
    if (B < 1 || B > f->max_batch)
        die("feature network: batch of %d images (1..%d)", B, f->max_batch);
    if (C != 1 && C != 3)
        die("feature network: %d-channel images (1 or 3 are supported)", C);
    if ((spatial && !f->spatial_dim) || (logits && !f->n_logits))
        die("feature network %s has no %s output", f->name, spatial ? "spatial" : "logits");
    if (f->kind == FNET_VIT) {
        vit_features(f, images, B, H, W, C, pool);
        return;
    }
    if (f->kind == FNET_CNN) {
        cnn_features(f, images, B, H, W, C, pool);
        return;
    }
    const uint8_t *rgb = images;
    if (C == 1) {
        size_t n = (size_t)B * H * W;
        if (f->rgb_bytes < 3 * n) {
            free(f->rgb);
            f->rgb = xmalloc(3 * n);
            f->rgb_bytes = 3 * n;
        }
        for (size_t p = 0; p < n; p++)
            f->rgb[3 * p] = f->rgb[3 * p + 1] = f->rgb[3 * p + 2] = images[p];
        rgb = f->rgb;
    }
    inception_features(&f->inc, f->weights, rgb, B, H, W, pool, spatial, logits, &f->ar);
}
