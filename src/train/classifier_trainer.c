#include "train/classifier_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/dist.h"
#include "core/rng.h"
#include "models/encoder_preprocess.h"
#include "ops/cross_entropy.h"

#define STREAM_FLIP 0x464c495000000000ull /* "FLIP": the flips of step k */
#define STREAM_CROP 0x43524f5000000000ull /* "CROP": the translations of step k */

float classifier_lr(const classifier_config *c, long long step)
{
    if (step < c->warmup_steps)
        return c->lr * (float)(step + 1) / (float)(c->warmup_steps + 1);
    long long span = c->total_steps - c->warmup_steps;
    if (span <= 0)
        return c->lr;
    double p = (double)(step - c->warmup_steps) / (double)span;
    if (p > 1)
        p = 1;
    return (float)(c->lr * 0.5 * (1.0 + cos(M_PI * p)));
}

/* Floats of one model input batch of N images. */
static size_t input_floats(const classifier_trainer *t, int N)
{
    if (t->arch == CLASSIFIER_CNN)
        return (size_t)N * t->C * t->H * t->W;
    int S = t->m->cfg.img_size;
    return (size_t)N * t->m->cfg.in_chans * S * S;
}

/* Bytes of the preprocessing's scratch for N images: given back before the
 * model runs, so it shares its room with what comes after the input. */
static size_t preprocess_bytes(const classifier_trainer *t, int N)
{
    if (t->arch == CLASSIFIER_VIT && t->C == 3)
        return encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, N, 3, t->H, t->W, t->m->cfg.img_size);
    return 0;
}

static size_t model_bytes(const classifier_trainer *t, int N, bool train)
{
    if (t->arch == CLASSIFIER_CNN)
        return cnn_plan_bytes(t->cnn, N, t->H, t->W, train);
    return vit_plan_bytes(t->m, N, train);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* The arena's peak, in the order the passes take from it: labels, the
 * augmented images, the model input (and the preprocessing's scratch, then
 * in its place) logits, probabilities, their gradient and the model. */
static size_t plan_bytes(const classifier_trainer *t)
{
    int B = t->cfg.batch, E = t->eval_batch, K = t->num_classes;
    size_t img = (size_t)t->C * t->H * t->W;
    size_t train = arena_round((size_t)B * sizeof(int)) + arena_round((size_t)B * img) +
                   (t->cfg.crop_pad > 0 ? arena_round((size_t)B * img) + 2 * arena_round((size_t)B * sizeof(int)) : 0) +
                   arena_round(input_floats(t, B) * sizeof(float)) +
                   max_size(preprocess_bytes(t, B),
                            3 * arena_round((size_t)B * K * sizeof(float)) + model_bytes(t, B, true));
    size_t eval = arena_round((size_t)E * sizeof(int)) + arena_round(input_floats(t, E) * sizeof(float)) +
                  max_size(preprocess_bytes(t, E),
                           arena_round((size_t)E * K * sizeof(float)) + model_bytes(t, E, false));
    return max_size(train, eval) + (1u << 16);
}

static void trainer_common_init(classifier_trainer *t, const classifier_config *cfg, int C, int H, int W,
                                int eval_batch)
{
    t->cfg = *cfg;
    t->C = C, t->H = H, t->W = W, t->eval_batch = eval_batch;
    if (cfg->crop_pad < 0 || cfg->crop_pad >= H || cfg->crop_pad >= W)
        die("classifier: a random crop padding of %d px for %dx%d images", cfg->crop_pad, H, W);
    t->grads = param_alloc(t->table);
    t->opt = adamw_create(t->table, cfg->lr);
    t->opt.weight_decay = cfg->weight_decay;
    t->ar = arena_create(plan_bytes(t));
}

void classifier_trainer_init(classifier_trainer *t, const classifier_config *cfg, vit *m, float *params, int C, int H,
                             int W, int eval_batch)
{
    memset(t, 0, sizeof *t);
    t->arch = CLASSIFIER_VIT;
    t->m = m;
    t->table = &m->table;
    t->params = params;
    t->num_classes = m->cfg.num_classes;
    if (m->cfg.num_classes <= 0)
        die("classifier: the ViT has no classification head (num_classes 0)");
    if (m->cfg.in_chans != C)
        die("classifier: the ViT takes %d channels, the data has %d", m->cfg.in_chans, C);
    if (C != 1 && C != 3)
        die("classifier: images must have 1 or 3 channels, not %d", C);
    if (C == 1 && (m->cfg.img_size != H || H != W))
        die("classifier: a 1-channel ViT takes the %dx%d images as they are, but its img_size is %d", H, W,
            m->cfg.img_size);
    trainer_common_init(t, cfg, C, H, W, eval_batch);
}

void classifier_trainer_init_cnn(classifier_trainer *t, const classifier_config *cfg, cnn_classifier *m,
                                 float *params, int C, int H, int W, int eval_batch)
{
    memset(t, 0, sizeof *t);
    t->arch = CLASSIFIER_CNN;
    t->cnn = m;
    t->table = &m->table;
    t->params = params;
    t->num_classes = m->cfg.num_classes;
    if (m->cfg.num_classes <= 0)
        die("classifier: the CNN has no classification head (num_classes 0)");
    if (m->cfg.in_chans != C)
        die("classifier: the CNN takes %d channels, the data has %d", m->cfg.in_chans, C);
    trainer_common_init(t, cfg, C, H, W, eval_batch);
}

void classifier_trainer_free(classifier_trainer *t)
{
    arena_free(&t->ar);
    free(t->grads);
    adamw_free(&t->opt);
}

static float *prepare(classifier_trainer *t, const uint8_t *images, int N)
{
    float *in = arena_floats(&t->ar, input_floats(t, N));
    if (t->arch == CLASSIFIER_CNN) {
        float mean[4096], std[4096];
        for (int c = 0; c < t->C && c < 4096; c++)
            mean[c] = t->cfg.mean, std[c] = t->cfg.std;
        encoder_normalize_u8(in, images, N, t->C, t->H * t->W, mean, std);
    } else if (t->C == 3)
        encoder_preprocess(in, images, ENC_PRE_DINOV2, N, 3, t->H, t->W, t->m->cfg.img_size, &t->ar);
    else
        encoder_normalize_u8(in, images, N, 1, t->H * t->W, &t->cfg.mean, &t->cfg.std);
    return in;
}

/* Translation of image b by (dy[b], dx[b]), zero fill: the crop at
 * (P + dy, P + dx) of the image padded by P on every side. */
static void shift_images(uint8_t *dst, const uint8_t *src, int B, int C, int H, int W, const int *dy, const int *dx)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const uint8_t *s = src + ((size_t)b * C + c) * H * W;
            uint8_t *d = dst + ((size_t)b * C + c) * H * W;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int sy = y + dy[b], sx = x + dx[b];
                    d[y * W + x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? s[sy * W + sx] : 0;
                }
        }
}

void classifier_step(classifier_trainer *t, const uint8_t *images, const int32_t *labels32, classifier_logs *logs)
{
    const classifier_config *c = &t->cfg;
    int B = c->batch, K = t->num_classes, H = t->H, W = t->W;
    arena *ar = &t->ar;
    arena_reset(ar, 0);
    int *labels = arena_alloc(ar, (size_t)B * sizeof(int));
    for (int i = 0; i < B; i++)
        labels[i] = labels32[i];
    size_t img = (size_t)t->C * H * W;
    /* the flips and crops of the global batch, this rank's rows kept (dist_own_row) */
    int G = B * dist_world(), k;
    if (c->hflip) {
        uint8_t *flipped = arena_alloc(ar, (size_t)B * img);
        rng r = rng_new(c->seed, STREAM_FLIP + (uint64_t)t->step);
        for (int j = 0; j < G; j++) {
            bool flip = rng_uniform(&r) < 0.5f;
            if (!dist_own_row(j, &k))
                continue;
            const uint8_t *src = images + k * img;
            uint8_t *dst = flipped + k * img;
            if (flip)
                for (size_t row = 0; row < (size_t)t->C * H; row++)
                    for (int x = 0; x < W; x++)
                        dst[row * W + x] = src[row * W + (W - 1 - x)];
            else
                memcpy(dst, src, img);
        }
        images = flipped;
    }
    if (c->crop_pad > 0) {
        uint8_t *cropped = arena_alloc(ar, (size_t)B * img);
        int *dy = arena_alloc(ar, (size_t)B * sizeof(int)), *dx = arena_alloc(ar, (size_t)B * sizeof(int));
        rng r = rng_new(c->seed, STREAM_CROP + (uint64_t)t->step);
        uint32_t span = (uint32_t)(2 * c->crop_pad + 1);
        for (int j = 0; j < G; j++) {
            int y = (int)rng_below(&r, span) - c->crop_pad, x = (int)rng_below(&r, span) - c->crop_pad;
            if (dist_own_row(j, &k))
                dy[k] = y, dx[k] = x;
        }
        shift_images(cropped, images, B, t->C, H, W, dy, dx);
        images = cropped;
    }
    float *in = prepare(t, images, B);
    float *logits = arena_floats(ar, (size_t)B * K), *probs = arena_floats(ar, (size_t)B * K);
    float *dlogits = arena_zeros(ar, (size_t)B * K);
    vit_acts a;
    cnn_acts ca;
    if (t->arch == CLASSIFIER_CNN) {
        cnn_acts_alloc(&ca, t->cnn, ar, B, H, W, true);
        cnn_forward(t->cnn, t->params, &ca, in, NULL, logits);
    } else {
        vit_acts_alloc(&a, t->m, ar, B, true);
        vit_forward(t->m, t->params, &a, in, NULL, NULL, NULL, logits);
    }
    logs->loss = cross_entropy_forward(probs, logits, labels, B, K);
    logs->accuracy = (double)count_correct(logits, labels, B, K) / B;
    cross_entropy_backward(dlogits, 1.0f, probs, labels, B, K);
    grad_zero(t->table, t->grads);
    if (t->arch == CLASSIFIER_CNN)
        cnn_backward(t->cnn, t->params, &ca, t->grads, NULL, NULL, dlogits);
    else
        vit_backward(t->m, t->params, &a, ar, t->grads, NULL, NULL, NULL, NULL, dlogits);
    dist_allreduce_mean(t->grads, t->table->total); /* data parallel: the global batch's gradient */
    logs->grad_norm = c->max_grad_norm > 0 ? grad_clip(t->table, t->grads, c->max_grad_norm)
                                           : grad_global_norm(t->table, t->grads);
    t->opt.lr = classifier_lr(c, t->step);
    logs->lr = t->opt.lr;
    adamw_step(&t->opt, t->params, t->grads);
    arena_reset(ar, 0);
    t->step++;
}

int classifier_evaluate(classifier_trainer *t, const uint8_t *images, const int32_t *labels, int n)
{
    int K = t->num_classes, correct = 0;
    size_t img = (size_t)t->C * t->H * t->W;
    for (int i0 = 0; i0 < n; i0 += t->eval_batch) {
        int b = n - i0 < t->eval_batch ? n - i0 : t->eval_batch;
        arena_reset(&t->ar, 0);
        int *lab = arena_alloc(&t->ar, (size_t)b * sizeof(int));
        for (int i = 0; i < b; i++)
            lab[i] = labels[i0 + i];
        float *in = prepare(t, images + (size_t)i0 * img, b);
        float *logits = arena_floats(&t->ar, (size_t)b * K);
        if (t->arch == CLASSIFIER_CNN) {
            cnn_acts a;
            cnn_acts_alloc(&a, t->cnn, &t->ar, b, t->H, t->W, false);
            cnn_forward(t->cnn, t->params, &a, in, NULL, logits);
        } else {
            vit_acts a;
            vit_acts_alloc(&a, t->m, &t->ar, b, false);
            vit_forward(t->m, t->params, &a, in, NULL, NULL, NULL, logits);
        }
        correct += count_correct(logits, lab, b, K);
    }
    arena_reset(&t->ar, 0);
    return correct;
}
