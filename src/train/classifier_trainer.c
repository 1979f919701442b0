#include "train/classifier_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "models/encoder_preprocess.h"
#include "ops/cross_entropy.h"

#define STREAM_FLIP 0x464c495000000000ull /* "FLIP": the flips of step k */

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

/* Bytes of one model input batch [N, C, S, S] plus its preprocessing. */
static size_t input_bytes(const classifier_trainer *t, int N)
{
    int S = t->m->cfg.img_size;
    size_t b = arena_round((size_t)N * t->m->cfg.in_chans * S * S * sizeof(float));
    if (t->C == 3)
        b += encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, N, 3, t->H, t->W, S);
    return b;
}

static size_t plan_bytes(const classifier_trainer *t)
{
    int B = t->cfg.batch, E = t->eval_batch, K = t->m->cfg.num_classes;
    size_t train = vit_plan_bytes(t->m, B, true) + input_bytes(t, B) +
                   3 * arena_round((size_t)B * K * sizeof(float)) + arena_round((size_t)B * sizeof(int)) +
                   arena_round((size_t)B * t->C * t->H * t->W);
    size_t eval = vit_plan_bytes(t->m, E, false) + input_bytes(t, E) + arena_round((size_t)E * K * sizeof(float)) +
                  arena_round((size_t)E * sizeof(int));
    return (train > eval ? train : eval) + (1u << 16);
}

void classifier_trainer_init(classifier_trainer *t, const classifier_config *cfg, vit *m, int C, int H, int W,
                             int eval_batch)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->m = m;
    t->C = C, t->H = H, t->W = W, t->eval_batch = eval_batch;
    if (m->cfg.num_classes <= 0)
        die("classifier: the ViT has no classification head (num_classes 0)");
    if (m->cfg.in_chans != C)
        die("classifier: the ViT takes %d channels, the data has %d", m->cfg.in_chans, C);
    if (C != 1 && C != 3)
        die("classifier: images must have 1 or 3 channels, not %d", C);
    if (C == 1 && (m->cfg.img_size != H || H != W))
        die("classifier: a 1-channel ViT takes the %dx%d images as they are, but its img_size is %d", H, W,
            m->cfg.img_size);
    t->grads = param_alloc(&m->table);
    t->opt = adamw_create(&m->table, cfg->lr);
    t->opt.weight_decay = cfg->weight_decay;
    t->ar = arena_create(plan_bytes(t));
}

void classifier_trainer_free(classifier_trainer *t)
{
    arena_free(&t->ar);
    free(t->grads);
    adamw_free(&t->opt);
}

static float *prepare(classifier_trainer *t, const uint8_t *images, int N)
{
    int S = t->m->cfg.img_size;
    float *in = arena_floats(&t->ar, (size_t)N * t->m->cfg.in_chans * S * S);
    if (t->C == 3)
        encoder_preprocess(in, images, ENC_PRE_DINOV2, N, 3, t->H, t->W, S, &t->ar);
    else
        encoder_normalize_u8(in, images, N, 1, t->H * t->W, &t->cfg.mean, &t->cfg.std);
    return in;
}

void classifier_step(classifier_trainer *t, const uint8_t *images, const int32_t *labels32, classifier_logs *logs)
{
    const classifier_config *c = &t->cfg;
    int B = c->batch, K = t->m->cfg.num_classes, H = t->H, W = t->W;
    arena *ar = &t->ar;
    arena_reset(ar, 0);
    int *labels = arena_alloc(ar, (size_t)B * sizeof(int));
    for (int i = 0; i < B; i++)
        labels[i] = labels32[i];
    if (c->hflip) {
        size_t img = (size_t)t->C * H * W;
        uint8_t *flipped = arena_alloc(ar, (size_t)B * img);
        rng r = rng_new(c->seed, STREAM_FLIP + (uint64_t)t->step);
        for (int b = 0; b < B; b++) {
            const uint8_t *src = images + b * img;
            uint8_t *dst = flipped + b * img;
            if (rng_uniform(&r) < 0.5f)
                for (size_t row = 0; row < (size_t)t->C * H; row++)
                    for (int x = 0; x < W; x++)
                        dst[row * W + x] = src[row * W + (W - 1 - x)];
            else
                memcpy(dst, src, img);
        }
        images = flipped;
    }
    float *in = prepare(t, images, B);
    float *logits = arena_floats(ar, (size_t)B * K), *probs = arena_floats(ar, (size_t)B * K);
    float *dlogits = arena_zeros(ar, (size_t)B * K);
    vit_acts a;
    vit_acts_alloc(&a, t->m, ar, B, true);
    vit_forward(t->m, &a, in, NULL, NULL, NULL, logits);
    logs->loss = cross_entropy_forward(probs, logits, labels, B, K);
    logs->accuracy = (double)count_correct(logits, labels, B, K) / B;
    cross_entropy_backward(dlogits, 1.0f, probs, labels, B, K);
    grad_zero(&t->m->table, t->grads);
    vit_backward(t->m, &a, ar, t->grads, NULL, NULL, NULL, NULL, dlogits);
    logs->grad_norm = c->max_grad_norm > 0 ? grad_clip(&t->m->table, t->grads, c->max_grad_norm)
                                           : grad_global_norm(&t->m->table, t->grads);
    t->opt.lr = classifier_lr(c, t->step);
    logs->lr = t->opt.lr;
    adamw_step(&t->opt, t->m->params, t->grads);
    arena_reset(ar, 0);
    t->step++;
}

int classifier_evaluate(classifier_trainer *t, const uint8_t *images, const int32_t *labels, int n)
{
    int K = t->m->cfg.num_classes, correct = 0;
    size_t img = (size_t)t->C * t->H * t->W;
    for (int i0 = 0; i0 < n; i0 += t->eval_batch) {
        int b = n - i0 < t->eval_batch ? n - i0 : t->eval_batch;
        arena_reset(&t->ar, 0);
        int *lab = arena_alloc(&t->ar, (size_t)b * sizeof(int));
        for (int i = 0; i < b; i++)
            lab[i] = labels[i0 + i];
        float *in = prepare(t, images + (size_t)i0 * img, b);
        float *logits = arena_floats(&t->ar, (size_t)b * K);
        vit_acts a;
        vit_acts_alloc(&a, t->m, &t->ar, b, false);
        vit_forward(t->m, &a, in, NULL, NULL, NULL, logits);
        correct += count_correct(logits, lab, b, K);
    }
    arena_reset(&t->ar, 0);
    return correct;
}
