/* PatchGAN discriminator: parameter count, train-mode forward, running
 * statistics and full backward against dev/ref/disc_ref.py, and finite
 * differences through the train-mode BatchNorms. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "models/discriminator.h"
#include "models/lpips.h"
#include "train/vae_loss.h"
#include "param_check.h"
#include "test.h"

static void test_disc_parameter_count(void)
{
    discriminator d;
    disc_build(&d, &(disc_config){3, 64, 3});
    /* spec §7.4: 2,765,633 trainable parameters (running stats are buffers) */
    CHECK(param_count(&d.table, PARAM_TRAINABLE) == 2765633, "trainable parameters %zu, spec says 2,765,633",
          param_count(&d.table, PARAM_TRAINABLE));
    CHECK(param_find(&d.table, "main.11.bias") && param_find(&d.table, "main.9.running_var") &&
              !param_find(&d.table, "main.2.bias"),
          "key names differ from the reference");
    CHECK(disc_logits_h(&d, 256) == 30, "logits for 256 px should be 30x30, got %d", disc_logits_h(&d, 256));
    disc_free(&d);
}

typedef struct {
    discriminator *d;
    float *params, *x, *cot, *logits;
    int B;
    arena *a;
} disc_ctx;

static double disc_loss(void *p)
{
    disc_ctx *c = p;
    size_t mark = arena_mark(c->a);
    /* Running stats move on every forward; they don't affect train-mode outputs. */
    disc_acts s;
    disc_forward(c->d, c->params, &s, c->logits, c->x, c->B, 32, 32, c->a);
    arena_reset(c->a, mark);
    return dot_f64(c->logits, c->cot, (size_t)c->B * 4);
}

static bool same_floats(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof(float)); }

static void test_disc_matches_torch(void)
{
    safetensors *st = fixture_open("models/disc_tiny");
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 3});
    float *params = param_alloc(&d.table), *grads = param_alloc(&d.table);
    disc_load(&d, params, st, "", PARAM_IGNORE_EXTRA);
    int B = 3;
    float *x = fixture_f32(st, "x", NULL), *cot = fixture_f32(st, "cot", NULL);
    float *logits = alloc_zeros((size_t)B * 4), *dx = alloc_zeros((size_t)B * 3 * 32 * 32);
    arena a = arena_create(2 * disc_acts_bytes(&d, B, 32, 32)); /* saved acts + one for the FD forwards */
    disc_acts s;
    disc_forward(&d, params, &s, logits, x, B, 32, 32, &a);
    CHECK(a.high_water == disc_acts_bytes(&d, B, 32, 32), "plan %zu bytes, the forward used %zu",
          disc_acts_bytes(&d, B, 32, 32), a.high_water);
    /* Four conv layers of fp32 sums over ≤ 512 terms: ~1e-6 relative. */
    fixture_check(st, "logits", logits, (size_t)B * 4, 1e-5, 1e-4);
    check_params_against_fixture(st, &d.table, params, "after.", PARAM_BUFFER, 1e-6, 1e-5);
    disc_backward(&d, params, &s, cot, grads, dx);
    /* Gradients pass back through three train-mode BNs: ~1e-5 relative. */
    check_params_against_fixture(st, &d.table, grads, "grad.", PARAM_TRAINABLE, 1e-5, 1e-3);
    fixture_check(st, "grad.x", dx, (size_t)B * 3 * 32 * 32, 1e-6, 1e-3);

    /* Finite differences w.r.t. the input along a random direction, with the
     * batch statistics recomputed at every evaluation (train-mode BN). */
    disc_ctx c = {&d, params, x, cot, logits, B, &a};
    fd_check_direction("disc d/dx", disc_loss, &c, x, dx, (size_t)B * 3 * 32 * 32, 1e-2, 2e-3, 5);
    size_t w8 = param_find(&d.table, "main.8.weight")->offset;
    /* Small steps: a LeakyReLU kink within ±h would bias the quotient. */
    fd_check("disc d/d main.8.weight", disc_loss, &c, params + w8, grads + w8, 64 * 32 * 16, 1e-3, 1e-4, 5e-3, 40);

    /* Frozen discriminator (the generator loss): only dx, and it accumulates. */
    float *dx2 = alloc_zeros((size_t)B * 3 * 32 * 32);
    for (size_t i = 0; i < (size_t)B * 3 * 32 * 32; i++)
        dx2[i] = 1.0f;
    arena_reset(&a, 0);
    disc_forward(&d, params, &s, logits, x, B, 32, 32, &a);
    disc_backward(&d, params, &s, cot, NULL, dx2);
    for (size_t i = 0; i < (size_t)B * 3 * 32 * 32; i++)
        dx2[i] -= 1.0f;
    check_close("frozen dx accumulates", dx2, dx, (size_t)B * 3 * 32 * 32, 1e-6, 1e-4);

    /* The workspace has room for every conv's (none, at these shapes), and
     * each gradient buffer for the largest output. */
    size_t ws = 0, max_n = 0;
    for (int i = 0; i < d.n_convs; i++) {
        ws = conv2d_workspace_floats(&s.shape[i]) > ws ? conv2d_workspace_floats(&s.shape[i]) : ws;
        max_n = conv2d_out_numel(&s.shape[i]) > max_n ? conv2d_out_numel(&s.shape[i]) : max_n;
    }
    CHECK(s.grad_a >= s.workspace + ws && s.grad_b >= s.grad_a + max_n && s.conv_out[0] >= s.grad_b + max_n,
          "workspace %zu floats at %p, grad_a %zu at %p, grad_b at %p, conv_out[0] at %p", ws, (void *)s.workspace,
          max_n, (void *)s.grad_a, (void *)s.grad_b, (void *)s.conv_out[0]);

    /* Saved and loaded back: the same parameters and buffers. */
    st_writer *w = st_writer_new();
    disc_save(&d, params, w, "disc.");
    test_tmp_dir("disc");
    const char *saved = test_tmp_path("disc.safetensors");
    st_writer_save(w, saved);
    st_writer_free(w);
    safetensors *back = safetensors_open(saved);
    float *reloaded = param_alloc(&d.table);
    disc_load(&d, reloaded, back, "disc.", PARAM_STRICT);
    CHECK(same_floats(reloaded, params, d.table.total), "disc_save then disc_load changed the parameters");
    safetensors_close(back);
    free(reloaded);

    arena_free(&a);
    free(params), free(grads), free(x), free(cot), free(logits), free(dx), free(dx2);
    disc_free(&d);
    safetensors_close(st);
}

static void build_disc(void *ctx)
{
    discriminator d;
    disc_build(&d, ctx);
}

static void disc_plan_of_size(void *ctx)
{
    const int *hw = ctx;
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 3});
    disc_acts_bytes(&d, 1, hw[0], hw[1]);
}

/* Configurations refused and the edges allowed; the smallest image a
 * 3-layer PatchGAN takes (24 pixels: 12, 6, 3, 2, then one logit), each
 * direction on its own; the biases' init bound from 16·C_in (4×4 kernels). */
static void test_disc_configurations(void)
{
    const disc_config bad[] = {{0, 8, 3}, {3, 0, 3}, {3, 8, 0}, {3, 8, DISC_MAX_CONVS - 1}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char what[64];
        snprintf(what, sizeof what, "in %d, ndf %d, layers %d", bad[k].in_channels, bad[k].ndf, bad[k].n_layers);
        char want[96];
        snprintf(want, sizeof want, "unsupported configuration (%s)", what);
        expect_die(what, build_disc, (void *)&bad[k], want);
    }
    discriminator d;
    disc_build(&d, &(disc_config){1, 1, DISC_MAX_CONVS - 2});
    CHECK(d.n_convs == DISC_MAX_CONVS && d.convs[0].cin == 1 && d.convs[DISC_MAX_CONVS - 1].cout == 1,
          "the largest depth, one channel in: %d convs", d.n_convs);
    disc_free(&d);

    disc_build(&d, &(disc_config){3, 8, 3});
    CHECK(disc_logits_h(&d, 24) == 1 && disc_logits_w(&d, 25) == 1 && disc_logits_h(&d, 32) == 2,
          "logits for 24, 25, 32 pixels: %d %d %d", disc_logits_h(&d, 24), disc_logits_w(&d, 25),
          disc_logits_h(&d, 32));
    const param_entry *b0 = param_find(&d.table, "main.0.bias"), *b11 = param_find(&d.table, "main.11.bias");
    CHECK(b0 && b0->init_arg == 3 * 16 && b11 && b11->init_arg == 64 * 16, "bias fan-ins %g and %g, want 48, 1024",
          b0 ? b0->init_arg : 0, b11 ? b11->init_arg : 0);
    disc_free(&d);
    char err[512];
    CHECK(run_in_child(disc_plan_of_size, (int[]){24, 24}, err, sizeof err) == 0, "24x24: %s", err);
    expect_die("23x24", disc_plan_of_size, (int[]){23, 24}, "a 3-layer PatchGAN needs larger images (layer 4 has no");
    expect_die("24x23", disc_plan_of_size, (int[]){24, 23}, "a 3-layer PatchGAN needs larger images (layer 4 has no");
}

/* Forward x, forward y, forward x again (the reference's D(recon), D(x),
 * D(recon)) against forward x, forward y, replay of the first pass: the
 * same parameters and running statistics bit for bit, and the kept pass
 * serves the same backward as the second forward's. */
static void test_disc_replay_matches_second_forward(void)
{
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 3});
    const int B = 3;
    size_t np = d.table.total, nx = (size_t)B * 3 * 32 * 32, nl = (size_t)B * 4;
    float *P = param_alloc(&d.table), *Q = param_alloc(&d.table);
    disc_init_weights(&d, P, 7);
    memcpy(Q, P, np * sizeof(float));
    float *x = alloc_normal(nx, 1.0f, 8), *y = alloc_normal(nx, 1.0f, 9), *cot = alloc_normal(nl, 1.0f, 10);
    float *l1 = alloc_zeros(nl), *l2 = alloc_zeros(nl), *l3 = alloc_zeros(nl), *lk = alloc_zeros(nl);
    arena a = arena_create(3 * disc_acts_bytes(&d, B, 32, 32)), b = arena_create(2 * disc_acts_bytes(&d, B, 32, 32));
    disc_acts s1, s2, s3, sk, sy;
    disc_forward(&d, P, &s1, l1, x, B, 32, 32, &a);
    disc_forward(&d, P, &s2, l2, y, B, 32, 32, &a);
    disc_forward(&d, P, &s3, l3, x, B, 32, 32, &a);
    disc_forward(&d, Q, &sk, lk, x, B, 32, 32, &b);
    disc_forward(&d, Q, &sy, l2, y, B, 32, 32, &b);
    CHECK(!same_floats(P, Q, np), "the reference's third forward moved nothing: the test cannot fail");
    disc_replay_running_stats(&d, Q, &sk);
    CHECK(same_floats(P, Q, np), "parameters / running statistics after the replay differ from a second forward");
    CHECK(same_floats(l1, l3, nl) && same_floats(l3, lk, nl), "the same input gave different logits");
    float *g1 = alloc_zeros(np), *g2 = alloc_zeros(np), *dx1 = alloc_zeros(nx), *dx2 = alloc_zeros(nx);
    disc_backward(&d, P, &s3, cot, g1, dx1);
    disc_backward(&d, Q, &sk, cot, g2, dx2);
    CHECK(same_floats(g1, g2, np) && same_floats(dx1, dx2, nx), "the kept pass's backward differs");
    arena_free(&a), arena_free(&b);
    free(P), free(Q), free(x), free(y), free(cot), free(l1), free(l2), free(l3), free(lk);
    free(g1), free(g2), free(dx1), free(dx2);
    disc_free(&d);
}

/* The generator loss and the discriminator update with the D(recon) pass
 * kept and reused, against the same two calls with three forwards: the
 * same gradient into recon, logs, parameters after AdamW, gradients and
 * LeCam EMAs, bit for bit (LeCam on, so the reused logits feed it too). */
static void test_vae_loss_kept_fake_pass_is_exact(void)
{
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 3});
    const int B = 3, M = 4 * 8 * 8;
    size_t np = d.table.total, nx = (size_t)B * 3 * 32 * 32;
    float *x = alloc_uniform(nx, -1.0f, 1.0f, 11), *recon = alloc_uniform(nx, -1.0f, 1.0f, 12);
    float *mean = alloc_normal((size_t)B * M, 1.0f, 13), *logvar = alloc_normal((size_t)B * M, 0.5f, 14);
    float *params[2], *grads[2], *d_recon[2], ema[2][2];
    vae_loss_logs logs[2];
    for (int k = 0; k < 2; k++) {
        params[k] = param_alloc(&d.table), grads[k] = param_alloc(&d.table), d_recon[k] = alloc_zeros(nx);
        disc_init_weights(&d, params[k], 15);
        ema[k][0] = 0.3f, ema[k][1] = -0.2f;
        vae_loss L = {.w = {.reconstruction = 1.0f, .kl = 1e-6f, .disc = 0.1f, .disc_factor = 1.0f, .lecam = 0.01f},
                      .disc = &d, .disc_params = params[k], .B = B, .C = 3, .H = 32, .W = 32};
        arena ar = arena_create(vae_loss_plan_bytes(&L) + vae_loss_fake_pass_bytes(&L));
        adamw opt = adamw_create(&d.table, 1e-3f);
        float *d_mean = alloc_zeros((size_t)B * M), *d_logvar = alloc_zeros((size_t)B * M);
        vae_loss_fake_pass fake;
        memset(&logs[k], 0, sizeof logs[k]);
        vae_generator_loss(&L, 5, x, recon, mean, logvar, M, d_recon[k], d_mean, d_logvar, &ar, &logs[k],
                           k ? &fake : NULL);
        CHECK(!k || fake.kept, "the generator loss did not keep its D(recon) pass");
        vae_discriminator_step(&L, 5, x, recon, grads[k], &opt, 1.0, &ema[k][0], &ema[k][1], &ar, &logs[k],
                               k ? &fake : NULL);
        adamw_free(&opt);
        arena_free(&ar);
        free(d_mean), free(d_logvar);
    }
    CHECK(same_floats(d_recon[0], d_recon[1], nx), "gradient into recon differs");
    CHECK(same_floats(params[0], params[1], np) && same_floats(grads[0], grads[1], np),
          "discriminator parameters / gradients differ");
    CHECK(ema[0][0] == ema[1][0] && ema[0][1] == ema[1][1], "LeCam EMAs differ");
    CHECK(logs[0].gan_loss == logs[1].gan_loss && logs[0].d_loss == logs[1].d_loss &&
              logs[0].logits_fake == logs[1].logits_fake && logs[0].lecam_loss == logs[1].lecam_loss &&
              logs[0].grad_norm_disc == logs[1].grad_norm_disc && logs[0].lecam_loss != 0,
          "logs differ (gan %g/%g, d %g/%g)", logs[0].gan_loss, logs[1].gan_loss, logs[0].d_loss, logs[1].d_loss);
    for (int k = 0; k < 2; k++)
        free(params[k]), free(grads[k]), free(d_recon[k]);
    free(x), free(recon), free(mean), free(logvar);
    disc_free(&d);
}

/* vae_loss_plan_bytes is what the loss's phases take at their peak, byte
 * for byte: with LPIPS alone (its pass), with the discriminator alone (its
 * update: D(x) and D(recon) kept for the backward), with both (the larger),
 * and a 1-channel image replicated for LPIPS.  The kept D(recon) pass is
 * vae_loss_fake_pass_bytes more.  Without a discriminator the GAN factor is
 * 0 whatever the step. */
static void test_vae_loss_plan_is_exact(void)
{
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 3});
    lpips l;
    lpips_build(&l, 16);
    float *dp = param_alloc(&d.table), *lp = param_alloc(&l.table), *grads = param_alloc(&d.table);
    disc_init_weights(&d, dp, 21);
    lpips_init_weights(&l, lp, 22);
    const int B = 2, M = 4 * 8 * 8;
    for (int variant = 0; variant < 4; variant++) {
        const bool with_lp = variant != 1, with_disc = variant >= 1 && variant != 3;
        const int C = variant == 3 ? 1 : 3;
        size_t nx = (size_t)B * C * 64 * 64; /* 64²: the logits take more than one 64-byte arena line */
        float *x = alloc_uniform(nx, -1.0f, 1.0f, 31), *recon = alloc_uniform(nx, -1.0f, 1.0f, 32);
        float *mean = alloc_normal((size_t)B * M, 1.0f, 33), *logvar = alloc_normal((size_t)B * M, 0.5f, 34);
        float *d_recon = alloc_zeros(nx), *d_mean = alloc_zeros((size_t)B * M), *d_logvar = alloc_zeros((size_t)B * M);
        vae_loss L = {.w = {.reconstruction = 1.0f, .perceptual = 1.0f, .kl = 1e-6f, .disc = 0.1f, .disc_factor = 0.5f,
                            .lecam = 0.01f},
                      .disc = with_disc ? &d : NULL, .disc_params = with_disc ? dp : NULL, .lp = with_lp ? &l : NULL,
                      .lpips_params = with_lp ? lp : NULL, .B = B, .C = C, .H = 64, .W = 64};
        size_t plan = vae_loss_plan_bytes(&L);
        arena ar = arena_create(plan);
        adamw opt = adamw_create(&d.table, 1e-3f);
        float ema_real = 0, ema_fake = 0;
        vae_loss_logs logs;
        memset(&logs, 0x7f, sizeof logs); /* every log the loss owns must be written */
        vae_loss_fake_pass none = {.kept = true};
        vae_generator_loss(&L, 5, x, recon, mean, logvar, M, d_recon, d_mean, d_logvar, &ar, &logs,
                           with_disc ? NULL : &none);
        size_t generator_peak = ar.high_water;
        CHECK(with_lp ? logs.perceptual_loss > 0 : logs.perceptual_loss == 0, "variant %d: perceptual loss %g",
              variant, logs.perceptual_loss);
        CHECK(with_disc ? logs.weighted_gan_loss == (double)(L.w.disc * 0.5f) * logs.gan_loss
                        : logs.gan_loss == 0 && logs.weighted_gan_loss == 0 && !none.kept,
              "variant %d: GAN %g, weighted %g (factor 0.5), kept %d", variant, logs.gan_loss, logs.weighted_gan_loss,
              (int)none.kept);
        vae_discriminator_step(&L, 5, x, recon, grads, &opt, 1.0, &ema_real, &ema_fake, &ar, &logs, NULL);
        CHECK(ar.high_water == plan && ar.used == 0, "variant %d: plan of %zu bytes for a peak of %zu (generator %zu)",
              variant, plan, ar.high_water, generator_peak);
        CHECK(with_disc || (logs.discriminator_factor == 0 && vae_loss_factor(&L, 1000000) == 0),
              "variant %d: a GAN factor without a discriminator", variant);
        arena_free(&ar);
        if (with_disc) {
            /* the kept pass: the plan and the fake pass's bytes, to the byte */
            size_t fake_bytes = vae_loss_fake_pass_bytes(&L);
            ar = arena_create(plan + fake_bytes);
            vae_loss_fake_pass fake;
            vae_generator_loss(&L, 5, x, recon, mean, logvar, M, d_recon, d_mean, d_logvar, &ar, &logs, &fake);
            CHECK(fake.kept && ar.used == fake_bytes, "variant %d: the kept pass holds %zu bytes, planned %zu",
                  variant, ar.used, fake_bytes);
            vae_discriminator_step(&L, 5, x, recon, grads, &opt, 1.0, &ema_real, &ema_fake, &ar, &logs, &fake);
            CHECK(ar.high_water <= plan + fake_bytes, "variant %d: kept pass peak %zu over %zu", variant,
                  ar.high_water, plan + fake_bytes);
            arena_free(&ar);
        } else {
            CHECK(vae_loss_fake_pass_bytes(&L) == 0, "no discriminator, no kept pass");
        }
        if (variant == 0) { /* a perceptual weight of 0 does not run LPIPS at all */
            L.w.perceptual = 0;
            ar = arena_create(plan);
            vae_generator_loss(&L, 5, x, recon, mean, logvar, M, d_recon, d_mean, d_logvar, &ar, &logs, NULL);
            CHECK(ar.high_water == 0 && logs.perceptual_loss == 0, "LPIPS ran at weight 0 (%zu bytes)", ar.high_water);
            arena_free(&ar);
        }
        adamw_free(&opt);
        free(x), free(recon), free(mean), free(logvar), free(d_recon), free(d_mean), free(d_logvar);
    }
    free(dp), free(lp), free(grads);
    lpips_free(&l);
    disc_free(&d);
}

/* The GAN and LeCam terms at their weights: the generator's GAN gradient
 * scales with disc_weight × disc_factor (nothing before disc_start), and
 * the discriminator step adds lecam × its LeCam loss, with the gradient to
 * match, from disc_start on, updating the EMAs only then; a kept D(recon)
 * pass is refused for another reconstruction. */
typedef struct gan_case {
    discriminator d;
    float *p0, *p, *grads, *x, *recon, *other;
    const float *dir; /* NULL, or parameters start at p0 + eps * dir */
    float eps;
    int B, M;
    size_t np, nx;
} gan_case;

static void gan_case_build(gan_case *g)
{
    memset(g, 0, sizeof *g);
    disc_build(&g->d, &(disc_config){3, 8, 3});
    g->B = 2, g->M = 4 * 8 * 8;
    g->np = g->d.table.total, g->nx = (size_t)g->B * 3 * 32 * 32;
    g->p0 = param_alloc(&g->d.table), g->p = param_alloc(&g->d.table), g->grads = param_alloc(&g->d.table);
    disc_init_weights(&g->d, g->p0, 51);
    g->x = alloc_uniform(g->nx, -1.0f, 1.0f, 52), g->recon = alloc_uniform(g->nx, -1.0f, 1.0f, 53);
    g->other = alloc_uniform(g->nx, -1.0f, 1.0f, 54);
}

static void gan_case_free(gan_case *g)
{
    free(g->p0), free(g->p), free(g->grads), free(g->x), free(g->recon), free(g->other);
    disc_free(&g->d);
}

static vae_loss gan_loss_of(gan_case *g, float factor, float lecam)
{
    memcpy(g->p, g->p0, g->np * sizeof(float)); /* each run from the same parameters and running stats */
    if (g->dir) /* or moved along a direction, for a finite difference */
        for (size_t i = 0; i < g->np; i++)
            g->p[i] += g->eps * g->dir[i];
    return (vae_loss){.w = {.disc = 0.1f, .disc_factor = factor, .lecam = lecam, .disc_start = 5}, .disc = &g->d,
                      .disc_params = g->p, .B = g->B, .C = 3, .H = 32, .W = 32};
}

/* The generator's gradient into recon from the GAN term alone. */
static void gan_gradient(gan_case *g, float factor, long long step, float *d_recon)
{
    vae_loss L = gan_loss_of(g, factor, 0);
    float *mean = alloc_zeros((size_t)g->B * g->M), *logvar = alloc_zeros((size_t)g->B * g->M);
    float *dm = alloc_zeros((size_t)g->B * g->M), *dl = alloc_zeros((size_t)g->B * g->M);
    arena ar = arena_create(vae_loss_plan_bytes(&L));
    vae_loss_logs logs;
    vae_generator_loss(&L, step, g->x, g->recon, mean, logvar, g->M, d_recon, dm, dl, &ar, &logs, NULL);
    arena_free(&ar);
    free(mean), free(logvar), free(dm), free(dl);
}

/* One discriminator step; returns its logs, the gradients in g->grads. */
static vae_loss_logs lecam_step(gan_case *g, float lecam, long long step, float *ema)
{
    vae_loss L = gan_loss_of(g, 0.5f, lecam);
    arena ar = arena_create(vae_loss_plan_bytes(&L));
    adamw opt = adamw_create(&g->d.table, 1e-3f);
    vae_loss_logs logs;
    ema[0] = 0.3f, ema[1] = -0.2f;
    vae_discriminator_step(&L, step, g->x, g->recon, g->grads, &opt, 1e9, &ema[0], &ema[1], &ar, &logs, NULL);
    adamw_free(&opt);
    arena_free(&ar);
    return logs;
}

static void kept_for_another_recon(void *ctx)
{
    gan_case *g = ctx;
    vae_loss L = gan_loss_of(g, 1.0f, 0);
    arena ar = arena_create(vae_loss_plan_bytes(&L) + vae_loss_fake_pass_bytes(&L));
    float *mean = alloc_zeros((size_t)g->B * g->M), *logvar = alloc_zeros((size_t)g->B * g->M);
    float *dm = alloc_zeros((size_t)g->B * g->M), *dl = alloc_zeros((size_t)g->B * g->M), *dr = alloc_zeros(g->nx);
    vae_loss_logs logs;
    vae_loss_fake_pass fake;
    vae_generator_loss(&L, 5, g->x, g->recon, mean, logvar, g->M, dr, dm, dl, &ar, &logs, &fake);
    adamw opt = adamw_create(&g->d.table, 1e-3f);
    float er = 0, ef = 0;
    vae_discriminator_step(&L, 5, g->x, g->other, g->grads, &opt, 1.0, &er, &ef, &ar, &logs, &fake);
}

static void test_vae_loss_gan_and_lecam_terms(void)
{
    gan_case g;
    gan_case_build(&g);
    float *half = alloc_zeros(g.nx), *full = alloc_zeros(g.nx), *early = alloc_zeros(g.nx);
    gan_gradient(&g, 0.5f, 5, half);
    gan_gradient(&g, 1.0f, 5, full);
    gan_gradient(&g, 1.0f, 4, early);
    int exact = 1, any = 0, none_early = 1;
    for (size_t i = 0; i < g.nx; i++) {
        exact &= full[i] == 2 * half[i];
        any |= full[i] != 0;
        none_early &= early[i] == 0;
    }
    CHECK(exact && any, "the GAN gradient at factor 1 is not twice that at 0.5");
    CHECK(none_early, "a GAN gradient before disc_start");
    free(half), free(full), free(early);

    /* LeCam weights 0, 0.01 and 0.02 at factor 0.5 from the same state. */
    float ema[3][2], *grads[3];
    vae_loss_logs logs[3];
    const float weights[3] = {0, 0.01f, 0.02f};
    for (int k = 0; k < 3; k++) {
        logs[k] = lecam_step(&g, weights[k], 5, ema[k]);
        grads[k] = alloc_zeros(g.np);
        memcpy(grads[k], g.grads, g.np * sizeof(float));
    }
    CHECK(logs[0].lecam_loss == 0 && ema[0][0] == 0.3f && ema[0][1] == -0.2f, "LeCam off: loss %g, EMAs %g %g",
          logs[0].lecam_loss, (double)ema[0][0], (double)ema[0][1]);
    CHECK(logs[1].lecam_loss > 0 && logs[1].lecam_loss == logs[2].lecam_loss && ema[1][0] != 0.3f &&
              ema[1][0] == ema[2][0] && ema[1][1] == ema[2][1],
          "LeCam on at disc_start: losses %g %g, EMAs %g %g", logs[1].lecam_loss, logs[2].lecam_loss,
          (double)ema[1][0], (double)ema[1][1]);
    for (int k = 1; k < 3; k++) {
        double want = 0.5 * (double)weights[k] * logs[k].lecam_loss, got = logs[k].d_loss - logs[0].d_loss;
        CHECK(fabs(got - want) <= 1e-6 * fabs(logs[0].d_loss) + 1e-9, "d_loss with LeCam %g: +%.9g, want +%.9g",
              (double)weights[k], got, want);
    }
    double worst = 0, scale = 0;
    for (size_t i = 0; i < g.np; i++) {
        double one = (double)grads[1][i] - grads[0][i], two = (double)grads[2][i] - grads[0][i];
        worst = fmax(worst, fabs(two - 2 * one));
        scale = fmax(scale, fabs(one));
    }
    CHECK(scale > 0 && worst <= 1e-3 * scale, "LeCam gradients: doubling the weight moves them by %g (x2 of %g)",
          worst, scale);
    /* Their size: along v = (LeCam on) − (off), the change of d_loss's LeCam part is v·v per unit step. */
    float *v = alloc_zeros(g.np);
    double vv = 0;
    for (size_t i = 0; i < g.np; i++)
        v[i] = grads[1][i] - grads[0][i], vv += (double)v[i] * v[i];
    double slope[2];
    g.dir = v;
    for (int k = 0; k < 2; k++) {
        double d[2];
        for (int side = 0; side < 2; side++) {
            g.eps = (side ? 1.0f : -1.0f) * 1e-2f / (float)sqrt(vv);
            d[side] = lecam_step(&g, weights[k], 5, ema[k]).d_loss;
        }
        slope[k] = (d[1] - d[0]) / (2e-2 / sqrt(vv));
    }
    g.dir = NULL;
    double got = (slope[1] - slope[0]) / vv;
    CHECK(fabs(got - 1) <= 0.05, "LeCam gradient's size: finite differences give %.4f of v·v", got);
    printf("       LeCam gradient along its own direction: %.5f of v·v by finite differences\n", got);
    free(v);
    vae_loss_logs before = lecam_step(&g, 0.01f, 4, ema[0]);
    CHECK(before.lecam_loss == 0 && ema[0][0] == 0.3f, "LeCam before disc_start: %g", before.lecam_loss);
    for (int k = 0; k < 3; k++)
        free(grads[k]);
    expect_die("a kept pass for another reconstruction", kept_for_another_recon, &g,
               "the kept D(recon) pass ran on another reconstruction");
    gan_case_free(&g);
}

/* A 1-channel image goes through LPIPS as its 3-channel replica, and its
 * gradient is the replica's three channels summed. */
static void test_vae_loss_grey_images_as_rgb(void)
{
    lpips l;
    lpips_build(&l, 16);
    float *lp = param_alloc(&l.table);
    lpips_init_weights(&l, lp, 41);
    const int B = 2, HW = 32 * 32, M = 4 * 8 * 8;
    float *x1 = alloc_uniform((size_t)B * HW, -1.0f, 1.0f, 42), *r1 = alloc_uniform((size_t)B * HW, -1.0f, 1.0f, 43);
    float *x3 = alloc_zeros((size_t)B * 3 * HW), *r3 = alloc_zeros((size_t)B * 3 * HW);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < HW; i++)
                x3[((size_t)b * 3 + c) * HW + i] = x1[(size_t)b * HW + i],
                          r3[((size_t)b * 3 + c) * HW + i] = r1[(size_t)b * HW + i];
    float *mean = alloc_normal((size_t)B * M, 1.0f, 44), *logvar = alloc_normal((size_t)B * M, 0.5f, 45);
    float *dm = alloc_zeros((size_t)B * M), *dl = alloc_zeros((size_t)B * M);
    float *g1 = alloc_zeros((size_t)B * HW), *g3 = alloc_zeros((size_t)B * 3 * HW);
    vae_loss_logs logs1, logs3;
    for (int C = 1; C <= 3; C += 2) {
        vae_loss L = {.w = {.perceptual = 1.0f}, .lp = &l, .lpips_params = lp, .B = B, .C = C, .H = 32, .W = 32};
        arena ar = arena_create(vae_loss_plan_bytes(&L));
        vae_generator_loss(&L, 0, C == 1 ? x1 : x3, C == 1 ? r1 : r3, mean, logvar, M, C == 1 ? g1 : g3, dm, dl, &ar,
                           C == 1 ? &logs1 : &logs3, NULL);
        arena_free(&ar);
    }
    CHECK(logs1.perceptual_loss == logs3.perceptual_loss && logs1.perceptual_loss > 0,
          "grey LPIPS %.9g vs its RGB replica %.9g", logs1.perceptual_loss, logs3.perceptual_loss);
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < HW; i++) {
            const float *g = g3 + (size_t)b * 3 * HW + i;
            float sum = g[0] + g[HW] + g[2 * HW];
            worst = fmax(worst, fabs((double)g1[(size_t)b * HW + i] - sum));
        }
    CHECK(worst == 0, "grey gradient vs the replica's channel sum: %g apart", worst);
    free(x1), free(r1), free(x3), free(r3), free(mean), free(logvar), free(dm), free(dl), free(g1), free(g3), free(lp);
    lpips_free(&l);
}

int main(void)
{
    RUN(test_disc_parameter_count);
    RUN(test_disc_matches_torch);
    RUN(test_disc_replay_matches_second_forward);
    RUN(test_disc_configurations);
    RUN(test_vae_loss_kept_fake_pass_is_exact);
    RUN(test_vae_loss_plan_is_exact);
    RUN(test_vae_loss_grey_images_as_rgb);
    RUN(test_vae_loss_gan_and_lecam_terms);
    return test_summary();
}
