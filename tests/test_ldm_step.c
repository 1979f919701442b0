/* Golden train-ldm steps against dev/ref/ldm_step_ref.py: the SiT on cached
 * latents with its BatchNorm forced to eval (fixed normalisation, running
 * stats untouched), label dropout, REPA from a 1-channel encoder: logged
 * losses, the first step's clipped gradients, final parameters and EMA. */
#include <math.h>

#include "param_check.h"
#include "test.h"
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

int main(void)
{
    RUN(test_ldm_steps_match_torch);
    return test_summary();
}
