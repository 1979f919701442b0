/* The classifier trainer (src/train/classifier_trainer.c), what its header
 * promises, checked in one process:
 *
 *  - the learning rate: linear warm-up, cosine to 0 at total_steps, held
 *    there; a schedule without a span keeps lr;
 *  - the augmentation: a step with flips and crops is, to the bit, the plain
 *    step on images flipped (probability ½, one uniform per image of the
 *    global batch on the stream "FLIP" + step) and then translated by
 *    (dy, dx) in [−P, P]² with zero fill (two draws per image on "CROP" +
 *    step); the streams move with the step;
 *  - the input: CNN (u/255 − mean)/std per channel; 1-channel ViT the same;
 *    the loss logged is the cross-entropy of those logits, the accuracy the
 *    share the logits get right; lr and weight decay reach AdamW;
 *  - evaluation counts the same in batches of any size and changes nothing;
 *  - each bad setting refused in words.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/encoder_preprocess.h"
#include "ops/cross_entropy.h"
#include "test.h"
#include "train/classifier_trainer.h"

enum { B = 6, C = 2, H = 8, W = 8, K = 3 };
#define IMG ((size_t)C * H * W)

static cnn_config small_cnn(void)
{
    return (cnn_config){.in_chans = C, .n_stages = 2, .widths = {4, 8}, .groups = 2, .num_classes = K,
                        .gn_eps = 1e-5f};
}

static classifier_config plain_config(void)
{
    return (classifier_config){.batch = B, .lr = 1e-2f, .weight_decay = 0.05f, .max_grad_norm = 1.0f,
                               .warmup_steps = 2, .total_steps = 10, .mean = 0.25f, .std = 0.5f, .seed = 17};
}

/* ---- the learning rate ---- */

static void test_learning_rate_schedule(void)
{
    classifier_config c = {.lr = 2.0f, .warmup_steps = 3, .total_steps = 11};
    const struct {
        long long step;
        double want;
    } T[] = {
        {0, 2.0 * 1 / 4}, {1, 2.0 * 2 / 4}, {2, 2.0 * 3 / 4}, {3, 2.0}, {5, 1.0 + cos(M_PI * 2 / 8)},
        {7, 1.0}, {10, 1.0 + cos(M_PI * 7 / 8)}, {11, 0.0}, {40, 0.0},
    };
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        float got = classifier_lr(&c, T[i].step);
        CHECK(fabs(got - T[i].want) <= 1e-6, "step %lld: lr %.8g, want %.8g", T[i].step, got, T[i].want);
    }
    c.warmup_steps = 3, c.total_steps = 4; /* a span of one step: lr, then 0 */
    CHECK(classifier_lr(&c, 3) == 2.0f && classifier_lr(&c, 4) == 0.0f && classifier_lr(&c, 5) == 0.0f,
          "a cosine over one step: %g, %g", classifier_lr(&c, 3), classifier_lr(&c, 4));
    c.warmup_steps = 0, c.total_steps = 0;
    CHECK(classifier_lr(&c, 0) == 2.0f && classifier_lr(&c, 100) == 2.0f, "no schedule: lr throughout");
    c.warmup_steps = 4, c.total_steps = 4;
    CHECK(classifier_lr(&c, 3) == 2.0f * 4 / 5 && classifier_lr(&c, 4) == 2.0f && classifier_lr(&c, 9) == 2.0f,
          "warm-up over all steps: lr after it (%g, %g)", classifier_lr(&c, 3), classifier_lr(&c, 4));
}

/* ---- the augmentation ---- */

typedef struct run {
    cnn_classifier m;
    float *w;
    classifier_trainer t;
} run;

static void run_start(run *r, const classifier_config *cfg)
{
    cnn_config mc = small_cnn();
    cnn_build(&r->m, &mc);
    r->w = param_alloc(&r->m.table);
    cnn_init_weights(&r->m, r->w, 5);
    classifier_trainer_init_cnn(&r->t, cfg, &r->m, r->w, C, H, W, 4);
}

static void run_end(run *r)
{
    classifier_trainer_free(&r->t);
    cnn_free(&r->m);
    free(r->w);
}

/* The header's augmentation, written out: flips, then translations. */
static void augment(uint8_t *out, const uint8_t *in, const classifier_config *c, long long step)
{
    memcpy(out, in, B * IMG);
    if (c->hflip) {
        rng r = rng_new(c->seed, 0x464c495000000000ull + (uint64_t)step); /* "FLIP" */
        for (int b = 0; b < B; b++)
            if (rng_uniform(&r) < 0.5f)
                for (int row = 0; row < C * H; row++)
                    for (int x = 0; x < W; x++)
                        out[b * IMG + row * W + x] = in[b * IMG + row * W + W - 1 - x];
    }
    if (c->crop_pad > 0) {
        uint8_t flipped[B * IMG];
        memcpy(flipped, out, sizeof flipped);
        rng r = rng_new(c->seed, 0x43524f5000000000ull + (uint64_t)step); /* "CROP" */
        for (int b = 0; b < B; b++) {
            int dy = (int)rng_below(&r, 2 * c->crop_pad + 1) - c->crop_pad;
            int dx = (int)rng_below(&r, 2 * c->crop_pad + 1) - c->crop_pad;
            /* the crop at (P + dy, P + dx) of the image padded by P */
            for (int ch = 0; ch < C; ch++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int sy = y + dy, sx = x + dx;
                        out[b * IMG + (ch * H + y) * W + x] =
                            sy >= 0 && sy < H && sx >= 0 && sx < W ? flipped[b * IMG + (ch * H + sy) * W + sx] : 0;
                    }
        }
    }
}

static void test_augmentation_is_the_documented_one(void)
{
    uint8_t images[3][B * IMG], aug[B * IMG];
    int32_t labels[B];
    rng r = rng_new(3, 0);
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < B * IMG; i++)
            images[s][i] = (uint8_t)rng_below(&r, 256);
    for (int b = 0; b < B; b++)
        labels[b] = b % K;
    const struct {
        bool hflip;
        int crop_pad;
    } settings[] = {{true, 0}, {false, 1}, {false, 2}, {true, 3}, {true, 7}};
    for (size_t k = 0; k < sizeof settings / sizeof *settings; k++) {
        classifier_config with = plain_config(), without = plain_config();
        with.hflip = settings[k].hflip, with.crop_pad = settings[k].crop_pad;
        run a, p;
        run_start(&a, &with);
        run_start(&p, &without);
        int same = 1, changed = 0;
        for (long long step = 0; step < 3; step++) {
            classifier_logs la, lp;
            classifier_step(&a.t, images[step], labels, &la);
            augment(aug, images[step], &with, step);
            changed |= memcmp(aug, images[step], sizeof aug) != 0;
            classifier_step(&p.t, aug, labels, &lp);
            same &= la.loss == lp.loss && la.grad_norm == lp.grad_norm &&
                    !memcmp(a.w, p.w, a.m.table.total * sizeof(float));
        }
        CHECK(same && changed, "flip %d, crop %d: 3 steps must equal the plain steps on the augmented images "
              "(same %d, the augmentation changed them %d)", with.hflip, with.crop_pad, same, changed);
        run_end(&a), run_end(&p);
    }
    /* The draws depend on the step: two steps on the same images see different flips. */
    classifier_config f = plain_config();
    f.hflip = true;
    uint8_t a0[B * IMG], a1[B * IMG];
    augment(a0, images[0], &f, 0);
    augment(a1, images[0], &f, 1);
    CHECK(memcmp(a0, a1, sizeof a0) != 0, "steps 0 and 1 must flip differently");
}

/* ---- inputs, logs, the optimiser ---- */

/* n random bytes of images; labels (both types) b·stride mod K; returns the
 * generator, to draw more. */
static rng random_batch(uint8_t *images, size_t n, int32_t *labels, int *lab, uint64_t seed, int stride)
{
    rng r = rng_new(seed, 0);
    for (size_t i = 0; i < n; i++)
        images[i] = (uint8_t)rng_below(&r, 256);
    for (int b = 0; b < B; b++)
        lab[b] = labels[b] = (b * stride) % K;
    return r;
}

/* The global norm of d(mean cross-entropy)/dw at the run's current weights. */
static double expected_grad_norm(const run *r, const uint8_t *images, const int *lab, const classifier_config *cfg)
{
    float in[B * IMG], logits[B * K], probs[B * K], dlogits[B * K] = {0};
    for (size_t i = 0; i < B * IMG; i++)
        in[i] = ((float)images[i] / 255.0f - cfg->mean) / cfg->std;
    arena ar = arena_create(cnn_plan_bytes(&r->m, B, H, W, true) + (1u << 16));
    cnn_acts acts;
    cnn_acts_alloc(&acts, &r->m, &ar, B, H, W, true);
    cnn_forward(&r->m, r->w, &acts, in, NULL, logits);
    cross_entropy_forward(probs, logits, lab, B, K);
    cross_entropy_backward(dlogits, 1.0f, probs, lab, B, K);
    float *g = param_alloc(&r->m.table);
    cnn_backward(&r->m, r->w, &acts, g, NULL, NULL, dlogits);
    double n = grad_global_norm(&r->m.table, g);
    free(g);
    arena_free(&ar);
    return n;
}

static void test_step_inputs_and_logs(void)
{
    uint8_t images[B * IMG];
    int32_t labels[B];
    int lab[B];
    random_batch(images, sizeof images, labels, lab, 8, 2);
    classifier_config cfg = plain_config();
    run a;
    run_start(&a, &cfg);
    /* the logits of (u/255 − mean)/std, before the step */
    float in[B * IMG], logits[B * K], probs[B * K];
    for (size_t i = 0; i < sizeof images; i++)
        in[i] = ((float)images[i] / 255.0f - cfg.mean) / cfg.std;
    arena ar = arena_create(cnn_plan_bytes(&a.m, B, H, W, false) + (1u << 16));
    cnn_acts acts;
    cnn_acts_alloc(&acts, &a.m, &ar, B, H, W, false);
    cnn_forward(&a.m, a.w, &acts, in, NULL, logits);
    arena_free(&ar);
    double loss = cross_entropy_forward(probs, logits, lab, B, K);
    double acc = (double)count_correct(logits, lab, B, K) / B;
    classifier_logs l;
    double want_norm = expected_grad_norm(&a, images, lab, &cfg);
    classifier_step(&a.t, images, labels, &l);
    CHECK(fabs(l.loss - loss) <= 1e-6 * fabs(loss) && l.accuracy == acc,
          "step 0: loss %.8g accuracy %g, want %.8g and %g from (u/255 - mean)/std", l.loss, l.accuracy, loss, acc);
    CHECK(l.lr == classifier_lr(&cfg, 0) && a.t.opt.lr == (float)l.lr && a.t.opt.weight_decay == cfg.weight_decay &&
              a.t.step == 1 && a.t.opt.step == 1,
          "lr %g (want %g), weight decay %g, steps %lld/%lld", l.lr, classifier_lr(&cfg, 0), a.t.opt.weight_decay,
          a.t.step, (long long)a.t.opt.step);
    CHECK(l.grad_norm == want_norm, "grad norm %.9g, want %.9g: d(mean cross-entropy) through the CNN", l.grad_norm,
          want_norm);
    /* Step 1's gradient is its own (not added to step 0's). */
    want_norm = expected_grad_norm(&a, images, lab, &cfg);
    classifier_step(&a.t, images, labels, &l);
    CHECK(l.lr == classifier_lr(&cfg, 1) && l.lr != classifier_lr(&cfg, 0), "step 1: lr %g", l.lr);
    CHECK(l.grad_norm == want_norm, "step 1: grad norm %.9g, want %.9g", l.grad_norm, want_norm);
    run_end(&a);

    /* No clipping (max_grad_norm 0): the norm is still logged; with clipping the update is smaller. */
    classifier_config nc = plain_config(), tight = plain_config();
    nc.max_grad_norm = 0;
    tight.max_grad_norm = 1e-3f;
    run u, t;
    run_start(&u, &nc);
    run_start(&t, &tight);
    classifier_logs lu, lt;
    classifier_step(&u.t, images, labels, &lu);
    classifier_step(&t.t, images, labels, &lt);
    CHECK(lu.grad_norm == lt.grad_norm && lu.grad_norm > 1e-3, "both log the unclipped norm (%g, %g)", lu.grad_norm,
          lt.grad_norm);
    classifier_config huge = plain_config();
    huge.max_grad_norm = 1e30f;
    run h;
    run_start(&h, &huge);
    classifier_logs lh;
    classifier_step(&h.t, images, labels, &lh);
    CHECK(!memcmp(u.w, h.w, u.m.table.total * sizeof(float)) && memcmp(u.w, t.w, u.m.table.total * sizeof(float)),
          "max_grad_norm 0 updates as an unreachable bound does, and unlike a tight one");
    run_end(&u), run_end(&t), run_end(&h);
}

/* A 1-channel ViT takes (u/255 − mean)/std at the images' own size, an RGB
 * one the DINOv2 preprocessing. */
static void test_vit_one_channel_input(void)
{
    vit_config vc = {.img_size = 8, .patch = 4, .in_chans = 1, .embed_dim = 16, .depth = 1, .heads = 2,
                     .mlp_ratio = 2.0f, .num_classes = K, .ln_eps = 1e-6f};
    vit m;
    vit_build(&m, &vc);
    float *w = param_alloc(&m.table);
    vit_init_weights(&m, w, 4);
    classifier_config cfg = plain_config();
    cfg.mean = 0.3f, cfg.std = 0.2f;
    classifier_trainer t;
    classifier_trainer_init(&t, &cfg, &m, w, 1, 8, 8, 4);
    uint8_t images[B * 64];
    int32_t labels[B];
    int lab[B];
    rng r = random_batch(images, sizeof images, labels, lab, 9, 1);
    float in[B * 64], logits[B * K], probs[B * K];
    for (size_t i = 0; i < sizeof images; i++)
        in[i] = ((float)images[i] / 255.0f - cfg.mean) / cfg.std;
    arena ar = arena_create(vit_plan_bytes(&m, B, false) + (1u << 16));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, B, false);
    vit_forward(&m, w, &a, in, NULL, NULL, NULL, logits);
    arena_free(&ar);
    double loss = cross_entropy_forward(probs, logits, lab, B, K);
    classifier_logs l;
    classifier_step(&t, images, labels, &l);
    CHECK(fabs(l.loss - loss) <= 1e-6 * fabs(loss), "ViT step 0: loss %.8g, want %.8g", l.loss, loss);
    /* Evaluation runs the same input through the trained weights. */
    ar = arena_create(vit_plan_bytes(&m, B, false) + (1u << 16));
    vit_acts_alloc(&a, &m, &ar, B, false);
    vit_forward(&m, w, &a, in, NULL, NULL, NULL, logits);
    arena_free(&ar);
    for (int b = 0; b < B; b++) { /* labels right for the first half only */
        int best = 0;
        for (int k = 1; k < K; k++)
            best = logits[b * K + k] > logits[b * K + best] ? k : best;
        labels[b] = b < B / 2 ? best : (best + 1) % K;
    }
    CHECK(classifier_evaluate(&t, images, labels, B) == B / 2, "ViT evaluation: %d right, want %d",
          classifier_evaluate(&t, images, labels, B), B / 2);
    classifier_trainer_free(&t);
    vit_free(&m);
    free(w);

    /* 3 channels: the DINOv2 preprocessing (ImageNet statistics, bicubic to img_size). */
    vc.in_chans = 3, vc.img_size = 12;
    vit_build(&m, &vc);
    w = param_alloc(&m.table);
    vit_init_weights(&m, w, 4);
    classifier_trainer_init(&t, &cfg, &m, w, 3, 8, 8, 4);
    uint8_t rgb[B * 3 * 64];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)rng_below(&r, 256);
    float in3[B * 3 * 144], logits3[B * K], probs3[B * K];
    arena ar3 = arena_create(vit_plan_bytes(&m, B, false) +
                             encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, B, 3, 8, 8, 12) + (1u << 16));
    encoder_preprocess(in3, rgb, ENC_PRE_DINOV2, B, 3, 8, 8, 12, &ar3);
    vit_acts a3;
    vit_acts_alloc(&a3, &m, &ar3, B, false);
    vit_forward(&m, w, &a3, in3, NULL, NULL, NULL, logits3);
    arena_free(&ar3);
    loss = cross_entropy_forward(probs3, logits3, lab, B, K);
    for (int b = 0; b < B; b++)
        labels[b] = lab[b];
    classifier_step(&t, rgb, labels, &l);
    CHECK(fabs(l.loss - loss) <= 1e-6 * fabs(loss), "RGB ViT step 0: loss %.8g, want %.8g (DINOv2 preprocessing)",
          l.loss, loss);
    classifier_trainer_free(&t);
    vit_free(&m);
    free(w);
}

/* The arena is planned to the byte: the larger of a step with flips and
 * crops and an evaluation batch, plus its 64 KiB margin — CNN and ViT
 * (3 channels: the DINOv2 preprocessing's workspace included). */
static void test_arena_plan_is_exact(void)
{
    enum { N = 40 };
    static uint8_t images[N * 3 * H * W];
    int32_t labels[N];
    rng r = rng_new(14, 0);
    for (size_t i = 0; i < sizeof images; i++)
        images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < N; i++)
        labels[i] = i % K;
    classifier_config cfg = plain_config();
    cfg.hflip = true;
    for (int vit_arch = 0; vit_arch < 2; vit_arch++)
        for (int k = 0; k < 4; k++) {
            /* crops of 0, 1 and 2 px with a small evaluation batch; one large one */
            const int eval_batch = k < 3 ? 2 : N;
            cfg.crop_pad = k < 3 ? k : 2;
            cnn_classifier cm;
            vit vm;
            float *w;
            classifier_trainer t;
            if (vit_arch) {
                vit_config vc = {.img_size = 14, .patch = 7, .in_chans = 3, .embed_dim = 16, .depth = 1, .heads = 2,
                                 .mlp_ratio = 2.0f, .num_classes = K, .ln_eps = 1e-6f};
                vit_build(&vm, &vc);
                w = param_alloc(&vm.table);
                vit_init_weights(&vm, w, 4);
                classifier_trainer_init(&t, &cfg, &vm, w, 3, H, W, eval_batch);
            } else {
                cnn_config mc = small_cnn();
                mc.in_chans = 3;
                cnn_build(&cm, &mc);
                w = param_alloc(&cm.table);
                cnn_init_weights(&cm, w, 4);
                classifier_trainer_init_cnn(&t, &cfg, &cm, w, 3, H, W, eval_batch);
            }
            classifier_logs l;
            classifier_step(&t, images, labels, &l);
            int correct = classifier_evaluate(&t, images, labels, N);
            CHECK(correct >= 0 && correct <= N && t.ar.high_water + (1u << 16) == t.ar.capacity,
                  "%s, crops of %d px, evaluation batches of %d: planned %zu bytes for a peak of %zu (+ 65536)",
                  vit_arch ? "ViT" : "CNN", cfg.crop_pad, eval_batch, t.ar.capacity, t.ar.high_water);
            classifier_trainer_free(&t);
            free(w);
            if (vit_arch)
                vit_free(&vm);
            else
                cnn_free(&cm);
        }
}

/* ---- evaluation ---- */

static void test_evaluate_any_batch(void)
{
    enum { N = 11 };
    uint8_t images[N * IMG];
    int32_t labels[N];
    /* images unlike each other: channel 0 bright on the left or right, channel 1 at the top or
     * bottom, each in its own strength */
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int on = c == 0 ? (x < W / 2) == (i % 2) : (y < H / 2) == (i / 2 % 2);
                    images[i * IMG + (c * H + y) * W + x] = (uint8_t)(on ? 40 + 20 * i : 0);
                }
    cnn_config mc = small_cnn();
    cnn_classifier m;
    cnn_build(&m, &mc);
    float *w = param_alloc(&m.table);
    /* Weights under which the images get different classes: random GroupNorm
     * affines too (at init every image pools to much the same features), and
     * a head bias that takes off the images' mean features (what varies from
     * image to image is small beside the channels' common levels). */
    fill_normal(w, m.table.total, 1.0f, 6);
    {
        float in[N * IMG], feat[N * 8], logits[N * K];
        for (size_t i = 0; i < N * IMG; i++)
            in[i] = ((float)images[i] / 255.0f - 0.25f) / 0.5f;
        arena ar = arena_create(cnn_plan_bytes(&m, N, H, W, false) + (1u << 16));
        cnn_acts a;
        cnn_acts_alloc(&a, &m, &ar, N, H, W, false);
        cnn_forward(&m, w, &a, in, feat, logits);
        arena_free(&ar);
        for (int k = 0; k < K; k++) {
            double b = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < 8; j++)
                    b -= w[m.head_w + k * 8 + j] * feat[i * 8 + j] / N;
            w[m.head_b + k] = (float)b;
        }
    }
    float *before = xmalloc(m.table.total * sizeof(float));
    memcpy(before, w, m.table.total * sizeof(float));
    classifier_config cfg = plain_config();
    /* Each image's class, one image at a time (the one label it is right for);
     * then labels right for the even images only. */
    classifier_trainer one;
    classifier_trainer_init_cnn(&one, &cfg, &m, w, C, H, W, 1);
    int pred[N], classes_seen = 0, want = 0;
    for (int i = 0; i < N; i++) {
        pred[i] = -1;
        for (int32_t k = 0; k < K; k++)
            if (classifier_evaluate(&one, images + i * IMG, &k, 1))
                pred[i] = k;
        classes_seen |= 1 << pred[i];
        labels[i] = i % 2 ? (pred[i] + 1) % K : pred[i];
        want += i % 2 == 0;
    }
    classifier_trainer_free(&one);
    CHECK(classes_seen != 1 && classes_seen != 2 && classes_seen != 4, "the images must get different classes (%#x)",
          classes_seen);
    const int batches[] = {4, 11, 32};
    for (size_t k = 0; k < sizeof batches / sizeof *batches; k++) {
        classifier_trainer t;
        classifier_trainer_init_cnn(&t, &cfg, &m, w, C, H, W, batches[k]);
        int got = classifier_evaluate(&t, images, labels, N);
        CHECK(got == want, "batches of %d: %d correct, want %d", batches[k], got, want);
        CHECK(classifier_evaluate(&t, images, labels, 0) == 0, "no images: none correct");
        classifier_trainer_free(&t);
    }
    CHECK(!memcmp(before, w, m.table.total * sizeof(float)), "evaluation must not change the weights");
    free(before);
    free(w);
    cnn_free(&m);
}

/* ---- refusals ---- */

typedef struct bad_init {
    const char *what;
    int arch_vit, num_classes, in_chans, img_size, crop_pad, C, H, W;
    const char *message;
} bad_init;

static void init_child(void *ctx)
{
    const bad_init *b = ctx;
    classifier_config cfg = plain_config();
    cfg.crop_pad = b->crop_pad;
    classifier_trainer t;
    if (b->arch_vit) {
        vit_config vc = {.img_size = b->img_size, .patch = 4, .in_chans = b->in_chans, .embed_dim = 16, .depth = 1,
                         .heads = 2, .mlp_ratio = 2.0f, .num_classes = b->num_classes, .ln_eps = 1e-6f};
        vit m;
        vit_build(&m, &vc);
        float *w = param_alloc(&m.table);
        classifier_trainer_init(&t, &cfg, &m, w, b->C, b->H, b->W, 4);
    } else {
        cnn_config mc = small_cnn();
        mc.num_classes = b->num_classes, mc.in_chans = b->in_chans;
        cnn_classifier m;
        cnn_build(&m, &mc);
        float *w = param_alloc(&m.table);
        classifier_trainer_init_cnn(&t, &cfg, &m, w, b->C, b->H, b->W, 4);
    }
}

static void test_bad_settings(void)
{
    static const bad_init T[] = {
        {"CNN without a head", 0, 0, 2, 0, 0, 2, 8, 8, "classifier: the CNN has no classification head (num_classes 0)"},
        {"CNN of 3 channels, data of 2", 0, K, 3, 0, 0, 2, 8, 8, "the CNN takes 3 channels, the data has 2"},
        {"crop padding -1", 0, K, 2, 0, -1, 2, 8, 8, "a random crop padding of -1 px for 8x8 images"},
        {"crop padding of the height", 0, K, 2, 0, 6, 2, 6, 8, "a random crop padding of 6 px for 6x8 images"},
        {"crop padding of the width", 0, K, 2, 0, 6, 2, 8, 6, "a random crop padding of 6 px for 8x6 images"},
        {"ViT without a head", 1, 0, 1, 8, 0, 1, 8, 8, "classifier: the ViT has no classification head (num_classes 0)"},
        {"ViT of 1 channel, data of 3", 1, K, 1, 8, 0, 3, 8, 8, "the ViT takes 1 channels, the data has 3"},
        {"ViT of 2 channels", 1, K, 2, 8, 0, 2, 8, 8, "images must have 1 or 3 channels, not 2"},
        {"1-channel ViT of another size", 1, K, 1, 8, 0, 1, 12, 12, "takes the 12x12 images as they are, but its "
                                                                    "img_size is 8"},
        {"1-channel ViT, images not square", 1, K, 1, 8, 0, 1, 8, 12, "takes the 8x12 images"},
    };
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        expect_die(T[i].what, init_child, (void *)&T[i], T[i].message);
    /* the edges that pass: a padding one below each side, one class */
    const bad_init ok[] = {{"padding 7 of 8x8", 0, K, 2, 0, 7, 2, 8, 8, NULL},
                           {"a CNN of one class", 0, 1, 2, 0, 0, 2, 8, 8, NULL},
                           {"a ViT of one class", 1, 1, 1, 8, 0, 1, 8, 8, NULL}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char err[512];
        CHECK(run_in_child(init_child, (void *)&ok[i], err, sizeof err) == 0, "%s: refused: %s", ok[i].what, err);
    }
}

int main(void)
{
    RUN(test_learning_rate_schedule);
    RUN(test_augmentation_is_the_documented_one);
    RUN(test_step_inputs_and_logs);
    RUN(test_vit_one_channel_input);
    RUN(test_evaluate_any_batch);
    RUN(test_arena_plan_is_exact);
    RUN(test_bad_settings);
    return test_summary();
}
