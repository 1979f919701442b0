/* Golden train-ldm steps against dev/ref/ldm_step_ref.py: the SiT on cached
 * latents with its BatchNorm forced to eval (fixed normalisation, running
 * stats untouched), label dropout, REPA from a 1-channel encoder: logged
 * losses, the first step's clipped gradients, final parameters and EMA. */
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "param_check.h"
#include "test.h"
#include "train/ema.h"
#include "train/ldm_step.h"

#define B 4

static void test_ldm_steps_match_torch(void)
{
    safetensors *st = fixture_open("train/ldm_steps");
    sit_config sc = sit_config_default();
    sc.depth = 2, sc.hidden = 32, sc.heads = 2, sc.patch = 2, sc.in_channels = 4, sc.input_size = 8;
    sc.num_classes = 10, sc.encoder_depth = 1, sc.projector_dim = 32, sc.n_encoders = 1, sc.z_dims[0] = 24;
    sit s;
    sit_build(&s, &sc);
    float *sp = param_alloc(&s.table);
    sit_load(&s, sp, st, "init.sit.", PARAM_IGNORE_EXTRA);
    vit e;
    vit_config ec = {.img_size = 16, .patch = 4, .in_chans = 1, .embed_dim = 24, .depth = 1, .heads = 2,
                     .mlp_ratio = 4.0f, .layerscale = true, .layerscale_init = 1.0f, .ln_eps = 1e-6f};
    vit_build(&e, &ec);
    float *ew = param_alloc(&e.table);
    vit_load(&e, ew, st, "enc.", PARAM_IGNORE_EXTRA);
    ldm_config cfg = ldm_config_default();
    cfg.batch = B;
    cfg.ema_decay = 0.9f;
    ldm_trainer t;
    ldm_trainer_init(&t, &cfg, &s, sp, &e, ew, 1, 16, 16);
    for (int step = 0; step < 2; step++) {
        float *imf = golden_step_tensor(st, step, "images"), *lab = golden_step_tensor(st, step, "labels"), *drop = golden_step_tensor(st, step, "drop_mask");
        uint8_t images[B * 16 * 16];
        for (int i = 0; i < B * 256; i++)
            images[i] = (uint8_t)imf[i];
        int labels[B], drops[B];
        for (int i = 0; i < B; i++)
            labels[i] = (int)lab[i], drops[i] = (int)drop[i];
        float *mean = golden_step_tensor(st, step, "mean"), *stdv = golden_step_tensor(st, step, "std"), *eps = golden_step_tensor(st, step, "eps_z"),
              *time = golden_step_tensor(st, step, "time"), *noise = golden_step_tensor(st, step, "noise");
        ldm_step_random given = {eps, time, noise, drops};
        ldm_logs logs;
        ldm_step(&t, images, mean, stdv, labels, &given, &logs);
        const char *names[4] = {"loss", "denoising_loss", "proj_loss", "grad_norm"};
        double got[4] = {logs.loss, logs.denoising_loss, logs.proj_loss, logs.grad_norm};
        for (int k = 0; k < 4; k++) {
            float *want = golden_step_tensor(st, step, names[k]);
            /* fp32 sums over a few thousand terms: ~1e-5 relative. */
            CHECK(fabs(got[k] - want[0]) <= 1e-6 + 1e-4 * fabs(want[0]), "step%d.%s: %.8g vs torch %.8g", step,
                  names[k], got[k], want[0]);
            free(want);
        }
        if (step == 0)
            check_params_against_fixture(st, &s.table, t.grads, "step0.grad.", PARAM_TRAINABLE, 2e-7, 2e-3);
        free(imf), free(lab), free(drop), free(mean), free(stdv), free(eps), free(time), free(noise);
    }
    /* Two AdamW steps of lr 1e-4 (elements move ≤ 2e-4); running stats fixed. */
    check_params_against_fixture(st, &s.table, sp, "final.sit.", -1, 2e-5, 1e-4);
    check_params_against_fixture(st, &s.table, t.ema_params, "final.ema.", -1, 2e-5, 1e-4);
    ldm_trainer_free(&t);
    free(sp), free(ew);
    sit_free(&s);
    vit_free(&e);
    safetensors_close(st);
}

/* The reference's defaults (train_ldm_only.py; spec §6.4). */
static void test_ldm_defaults(void)
{
    ldm_config c = ldm_config_default();
    CHECK(c.batch == 256 && c.learning_rate == 1e-4f && c.proj_coeff == 0.5f && c.cfg_prob == 0.1f &&
              c.max_grad_norm == 1.0f && c.ema_decay == 0.9999f && c.path == PATH_LINEAR &&
              c.weighting == TIME_WEIGHTING_UNIFORM && !c.spatial_norm && c.zscore_alpha == 0.6f && c.seed == 0,
          "ldm defaults");
    for (int i = 0; i < 3; i++)
        CHECK(c.enc_mean[i] == 0.5f && c.enc_std[i] == 0.5f, "encoder normalisation of channel %d", i);
}

typedef struct tiny_ldm {
    sit s;
    vit e;
    float *sp, *ew;
} tiny_ldm;

/* The golden steps' shapes: a 4×8×8 latent in 16 tokens, a 16-patch encoder of 24 features on 16×16 grey images. */
static void tiny_ldm_build(tiny_ldm *m, int z_dim, int enc_img, int enc_chans)
{
    sit_config sc = sit_config_default();
    sc.depth = 2, sc.hidden = 32, sc.heads = 2, sc.patch = 2, sc.in_channels = 4, sc.input_size = 8;
    sc.num_classes = 10, sc.encoder_depth = 1, sc.projector_dim = 32, sc.n_encoders = z_dim ? 1 : 0;
    sc.z_dims[0] = z_dim; /* 0: a vanilla SiT, no projector */
    sit_build(&m->s, &sc);
    m->sp = param_alloc(&m->s.table);
    sit_init_weights(&m->s, m->sp, 7);
    vit_config ec = {.img_size = enc_img, .patch = enc_img / 4, .in_chans = enc_chans, .embed_dim = 24, .depth = 1,
                     .heads = 2, .mlp_ratio = 4.0f, .layerscale = true, .layerscale_init = 1.0f, .ln_eps = 1e-6f};
    vit_build(&m->e, &ec);
    m->ew = param_alloc(&m->e.table);
    vit_init_weights(&m->e, m->ew, 8);
}

static void tiny_ldm_free(tiny_ldm *m)
{
    sit_free(&m->s);
    vit_free(&m->e);
    free(m->sp), free(m->ew);
}

typedef struct init_case {
    int z_dim, enc_img, enc_chans, C;
    bool with_enc;
    float proj;
} init_case;

static void init_child(void *ctx)
{
    const init_case *k = ctx;
    tiny_ldm m;
    tiny_ldm_build(&m, k->z_dim, k->enc_img, k->enc_chans);
    ldm_config cfg = ldm_config_default();
    cfg.batch = 2, cfg.proj_coeff = k->proj;
    ldm_trainer t;
    ldm_trainer_init(&t, &cfg, &m.s, m.sp, k->with_enc ? &m.e : NULL, m.ew, k->C, 16, 16);
}

static void test_ldm_init_refusals(void)
{
    init_case no_enc = {24, 16, 1, 1, false, 0.5f};
    expect_die("REPA without an encoder", init_child, &no_enc, "train-ldm: REPA needs an encoder (--enc-ckpt)");
    init_case features = {32, 16, 1, 1, true, 0.5f};
    expect_die("encoder features", init_child, &features,
               "the encoder (16 tokens × 24) does not match the SiT's projector (16 tokens × 32)");
    init_case vanilla_sit = {0, 16, 1, 1, true, 0.5f};
    expect_die("an encoder for a SiT without a projector", init_child, &vanilla_sit,
               "does not match the SiT's projector (16 tokens × 0)");
    init_case tokens = {24, 20, 1, 1, true, 0.5f}; /* 20 px in 5-px patches: still 16 tokens */
    expect_die("a 1-channel encoder of another size", init_child, &tokens,
               "a 1-channel encoder must take the 16×16 images as they are");
    init_case rgb = {24, 16, 3, 1, true, 0.5f};
    expect_die("a 3-channel encoder on grey images", init_child, &rgb, "a 1-channel encoder must take");
    char err[4096];
    init_case vanilla = {0, 16, 1, 1, false, 0.0f}, rgb_images = {24, 16, 3, 3, true, 0.5f};
    CHECK(run_in_child(init_child, &vanilla, err, sizeof err) == 0, "a vanilla SiT without an encoder: %s", err);
    CHECK(run_in_child(init_child, &rgb_images, err, sizeof err) == 0, "a 3-channel encoder on RGB images: %s", err);
}

/* The step's own randoms are the documented streams of its step count (a
 * second trainer given exactly those draws ends bit-identical, two steps
 * on); its arena plan is its peak plus the fixed 64 KiB margin, also where
 * the encoder's phase is the larger (a 128-px encoder); the EMA moves at
 * the configured decay; the targets depend on the images. */
static void test_ldm_own_randoms_and_plan(void)
{
    const int NB = 3;
    /* no encoder; grey images; RGB images preprocessed for a 16-px and for a 128-px encoder */
    for (int variant = 0; variant < 4; variant++) {
        const int with_enc = variant > 0, C = variant >= 2 ? 3 : 1, enc_img = variant == 3 ? 128 : 16;
        tiny_ldm ma, mb;
        tiny_ldm_build(&ma, with_enc ? 24 : 0, enc_img, C);
        tiny_ldm_build(&mb, with_enc ? 24 : 0, enc_img, C);
        ldm_config cfg = ldm_config_default();
        cfg.batch = NB, cfg.seed = 11, cfg.cfg_prob = 0.4f, cfg.proj_coeff = with_enc ? 0.5f : 0.0f;
        cfg.ema_decay = 0.75f;
        float *ema_want = param_alloc(&ma.s.table);
        memcpy(ema_want, ma.sp, ma.s.table.total * sizeof(float));
        ldm_trainer a, b;
        ldm_trainer_init(&a, &cfg, &ma.s, ma.sp, with_enc ? &ma.e : NULL, ma.ew, C, 16, 16);
        ldm_trainer_init(&b, &cfg, &mb.s, mb.sp, with_enc ? &mb.e : NULL, mb.ew, C, 16, 16);
        const size_t chw = 4 * 8 * 8, lat = (size_t)NB * chw;
        float *mean = alloc_normal(lat, 1.0f, 12), *stdv = alloc_uniform(lat, 0.1f, 0.5f, 13);
        uint8_t images[3 * 3 * 256];
        for (int i = 0; i < 3 * 3 * 256; i++)
            images[i] = (uint8_t)(i * 37 % 251);
        const int labels[3] = {1, 5, 9};
        float eps[3 * 256], time[3], noise[3 * 256];
        int drop[3], dropped = 0;
        for (long long k = 0; k < 2; k++) {
            rng zr = rng_new(cfg.seed, STREAM_LDM_Z + (uint64_t)k);
            rng dr = rng_new(cfg.seed, STREAM_LDM_DROP + (uint64_t)k);
            rng sr = rng_new(cfg.seed, STREAM_LDM_SIT + (uint64_t)k);
            for (size_t i = 0; i < lat; i++)
                eps[i] = rng_normal(&zr);
            for (int i = 0; i < NB; i++)
                drop[i] = rng_uniform(&dr) < cfg.cfg_prob, dropped += drop[i];
            denoising_draw_time(time, &sr, NB, cfg.weighting, cfg.path); /* the times, then the noise */
            rng_normal_fill(&sr, noise, lat);
            ldm_step_random given = {.eps_z = eps, .time = time, .noise = noise, .drop = drop};
            ldm_logs la, lb;
            ldm_step(&a, images, mean, stdv, labels, NULL, &la);
            ldm_step(&b, images, mean, stdv, labels, &given, &lb);
            ema_update(&ma.s.table, ema_want, ma.sp, 0.75f);
            CHECK(!memcmp(a.ema_params, ema_want, ma.s.table.total * sizeof(float)),
                  "variant %d, step %lld: the EMA did not move at decay 0.75", variant, k);
            CHECK(la.loss == lb.loss && la.denoising_loss == lb.denoising_loss && la.proj_loss == lb.proj_loss &&
                      la.grad_norm == lb.grad_norm,
                  "variant %d, step %lld: own randoms' loss %.9g, the streams' %.9g", variant, k, la.loss, lb.loss);
            CHECK(!memcmp(ma.sp, mb.sp, ma.s.table.total * sizeof(float)) &&
                      !memcmp(a.ema_params, b.ema_params, ma.s.table.total * sizeof(float)),
                  "variant %d, step %lld: parameters differ", variant, k);
        }
        CHECK(a.ar.high_water + (1u << 16) == a.ar.capacity, "variant %d: arena plan of %zu bytes for a peak of %zu",
              variant, a.ar.capacity, a.ar.high_water);
        if (variant == 1)
            CHECK(dropped > 0 && dropped < 6, "%d of 6 labels dropped at p = 0.4: the test should see both", dropped);
        if (with_enc) { /* other images, the same step otherwise: other targets, another REPA loss */
            uint8_t other[3 * 3 * 256];
            for (int i = 0; i < 3 * 3 * 256; i++)
                other[i] = (uint8_t)(255 - images[i]);
            ldm_logs la, lb;
            ldm_trainer_free(&b);
            memcpy(mb.sp, ma.sp, ma.s.table.total * sizeof(float));
            ldm_trainer_init(&b, &cfg, &mb.s, mb.sp, &mb.e, mb.ew, C, 16, 16);
            b.step = a.step;
            ldm_step(&a, images, mean, stdv, labels, NULL, &la);
            ldm_step(&b, other, mean, stdv, labels, NULL, &lb);
            CHECK(la.denoising_loss == lb.denoising_loss && la.proj_loss != lb.proj_loss,
                  "variant %d: other images gave REPA loss %.9g (was %.9g), denoising %.9g (was %.9g)", variant,
                  lb.proj_loss, la.proj_loss, lb.denoising_loss, la.denoising_loss);
        }
        free(ema_want);
        ldm_trainer_free(&a), ldm_trainer_free(&b);
        tiny_ldm_free(&ma), tiny_ldm_free(&mb);
        free(mean), free(stdv);
    }
}

int main(void)
{
    RUN(test_ldm_steps_match_torch);
    RUN(test_ldm_defaults);
    RUN(test_ldm_init_refusals);
    RUN(test_ldm_own_randoms_and_plan);
    return test_summary();
}
