#include "train/vae_trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/rng.h"
#include "train/checkpoint_file.h"
#include "io/image.h"

#define STREAM_VAE_EPS 0x56414500000000ull /* "VAE": the posterior noise of step k */

const char *const vae_train_log_names[VAE_TRAIN_N_LOGS] = {
    "vae_loss", "reconstruction_loss", "perceptual_loss", "kl_loss", "gan_loss", "weighted_gan_loss",
    "discriminator_factor", "d_weight", "grad_norm_vae", "d_loss", "grad_norm_disc", "logits_real", "logits_fake",
    "lecam_loss"};

void vae_train_logs_values(const vae_train_logs *l, double *o)
{
    const vae_loss_logs *s = &l->loss;
    double v[VAE_TRAIN_N_LOGS] = {l->vae_loss, s->reconstruction_loss, s->perceptual_loss, s->kl_loss, s->gan_loss,
                                  s->weighted_gan_loss, s->discriminator_factor, s->d_weight, l->grad_norm_vae,
                                  s->d_loss, s->grad_norm_disc, s->logits_real, s->logits_fake, s->lecam_loss};
    memcpy(o, v, sizeof v);
}

vae_trainer_config vae_trainer_config_default(void)
{
    vae_trainer_config c = {0};
    c.batch = 32;
    c.learning_rate = c.disc_learning_rate = 1e-4f;
    c.max_grad_norm = 1.0f;
    c.loss = (vae_loss_weights){.reconstruction = 1.0f, .perceptual = 1.0f, .kl = 1e-6f, .disc = 0.1f,
                                .disc_factor = 1.0f, .disc_start = 0, .lecam = 0.0f};
    return c;
}

/* Arena bytes: the training step, or an evaluation batch, whichever is larger. */
static size_t plan_bytes(const vae_trainer *t)
{
    int B = t->cfg.batch, E = t->eval_batch;
    size_t img = (size_t)t->C * t->H * t->W, lat = (size_t)t->vae->cfg.z_channels * t->h * t->w;
    vae_plan vp = vae_plan_memory(t->vae, VAE_PASS_TRAIN, B, t->H, t->W);
    size_t loss = vae_loss_plan_bytes(&t->loss);
    size_t train = 2 * arena_round(B * img * sizeof(float)) + 2 * arena_round(B * lat * sizeof(float)) + vp.saved +
                   vae_loss_fake_pass_bytes(&t->loss) + (vp.scratch > loss ? vp.scratch : loss);
    if (dist_world() > 1) /* this rank's rows of the global batch's posterior noise */
        train += arena_round(B * lat * sizeof(float));
    size_t eval = 0;
    if (E > 0) {
        vae_plan pe = vae_plan_memory(t->vae, VAE_PASS_ENCODE, E, t->H, t->W);
        vae_plan pd = vae_plan_memory(t->vae, VAE_PASS_DECODE, E, t->h, t->w);
        size_t enc = pe.saved + pe.scratch, dec = pd.saved + pd.scratch;
        eval = 2 * arena_round(E * img * sizeof(float)) + arena_round(E * lat * sizeof(float)) +
               (enc > dec ? enc : dec);
    }
    return (train > eval ? train : eval) + (1u << 16);
}

void vae_trainer_init(vae_trainer *t, const vae_trainer_config *cfg, vae *v, float *vae_params, discriminator *d,
                      float *disc_params, lpips *lp, const float *lpips_params, int H, int W, int C, int eval_batch)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->vae = v;
    t->vae_params = vae_params;
    t->H = H, t->W = W, t->C = C, t->eval_batch = eval_batch;
    vae_check_data_channels(v, C, "train-vae");
    if (lp && C != 1 && C != 3)
        die("train-vae: LPIPS needs 1- or 3-channel images");
    vae_latent_size(v, H, W, &t->h, &t->w);
    t->loss = (vae_loss){.w = cfg->loss, .disc = d, .disc_params = disc_params, .lp = lp,
                         .lpips_params = lpips_params, .B = cfg->batch, .C = C, .H = H, .W = W};
    t->vae_grads = param_alloc(&v->table);
    t->opt_vae = adamw_create(&v->table, cfg->learning_rate);
    if (d) {
        t->disc_grads = param_alloc(&d->table);
        t->opt_disc = adamw_create(&d->table, cfg->disc_learning_rate);
    }
    t->ar = arena_create(plan_bytes(t));
}

void vae_trainer_free(vae_trainer *t)
{
    arena_free(&t->ar);
    free(t->vae_grads), free(t->disc_grads);
    adamw_free(&t->opt_vae);
    if (t->loss.disc)
        adamw_free(&t->opt_disc);
}

void vae_trainer_step(vae_trainer *t, const uint8_t *images, const float *eps, vae_train_logs *logs)
{
    const vae_trainer_config *c = &t->cfg;
    int B = c->batch;
    size_t n_img = (size_t)B * t->C * t->H * t->W, n_lat = (size_t)B * t->vae->cfg.z_channels * t->h * t->w;
    arena *ar = &t->ar;
    arena_reset(ar, 0);
    memset(logs, 0, sizeof *logs);
    rng vae_rng = rng_new(c->seed, STREAM_VAE_EPS + (uint64_t)t->step);
    /* Over several processes: this rank's rows j = rank + world·k of the
     * global batch's posterior noise, so a step equals the one-process step
     * on the global batch. */
    if (dist_world() > 1 && !eps) {
        float *mine = arena_floats(ar, n_lat);
        dist_normal_rows(&vae_rng, mine, B, n_lat / (size_t)B);
        eps = mine;
    }

    float *x = arena_floats(ar, n_img), *d_recon = arena_zeros(ar, n_img);
    float *d_mean = arena_zeros(ar, n_lat), *d_logvar = arena_zeros(ar, n_lat);
    for (size_t i = 0; i < n_img; i++)
        x[i] = images[i] / 127.5f - 1.0f;
    vae_acts vacts = {0}, *va = &vacts; /* pointers into the arena */
    vae_forward(t->vae, t->vae_params, va, x, eps, &vae_rng, B, t->H, t->W, ar);

    vae_loss_fake_pass fake; /* D(recon), kept on the arena for the discriminator update */
    logs->vae_loss = vae_generator_loss(&t->loss, t->step, x, va->recon, va->mean, va->logvar,
                                        t->vae->cfg.z_channels * t->h * t->w, d_recon, d_mean, d_logvar, ar,
                                        &logs->loss, &fake);
    grad_zero(&t->vae->table, t->vae_grads);
    vae_backward(t->vae, t->vae_params, va, d_recon, NULL, d_mean, d_logvar, t->vae_grads, NULL, ar);
    dist_allreduce_mean(t->vae_grads, t->vae->table.total); /* data parallel: the global batch's gradient */
    logs->grad_norm_vae = grad_clip(&t->vae->table, t->vae_grads, c->max_grad_norm);
    adamw_step(&t->opt_vae, t->vae_params, t->vae_grads);

    /* The reconstruction of the pre-update VAE is still on the arena. */
    vae_discriminator_step(&t->loss, t->step, x, va->recon, t->disc_grads, &t->opt_disc, c->max_grad_norm,
                           &t->lecam_ema_real, &t->lecam_ema_fake, ar, &logs->loss, &fake);
    arena_reset(ar, 0);
    t->step++;
}

size_t vae_trainer_reconstruct(vae_trainer *t, const uint8_t *images, int n, uint8_t *out)
{
    if (n < 1 || n > t->eval_batch)
        die("vae_trainer_reconstruct: %d images, the plan is for 1..%d", n, t->eval_batch);
    size_t n_img = (size_t)n * t->C * t->H * t->W, n_lat = (size_t)n * t->vae->cfg.z_channels * t->h * t->w;
    arena *ar = &t->ar;
    arena_reset(ar, 0);
    float *x = arena_floats(ar, n_img), *recon = arena_floats(ar, n_img), *mean = arena_floats(ar, n_lat);
    for (size_t i = 0; i < n_img; i++)
        x[i] = images[i] / 127.5f - 1.0f;
    vae_encode(t->vae, t->vae_params, x, mean, NULL, NULL, n, t->H, t->W, ar);
    vae_decode(t->vae, t->vae_params, mean, recon, n, t->h, t->w, ar);
    size_t bad = image_from_model_range(out, recon, n_img);
    arena_reset(ar, 0);
    return bad;
}

/* ---- checkpoint ---- */

/* One description of the checkpoint serves save and load; without a
 * discriminator opt_disc_step is stored as 0 (into *dummy on load). */
static ckpt_layout vae_layout(vae_trainer *t, long long *epoch, long long *position, long long *dummy,
                              const char *config_json)
{
    const discriminator *d = t->loss.disc;
    ckpt_layout l = ckpt_layout_new(VAE_CHECKPOINT_FORMAT, NULL, VAE_CHECKPOINT_VERSION);
    ckpt_add_run_counters(&l, &t->step, epoch, position);
    ckpt_add_counter(&l, "opt_vae_step", &t->opt_vae.step, 0, CKPT_MAX_STEP);
    ckpt_add_counter(&l, "opt_disc_step", d ? &t->opt_disc.step : dummy, 0, CKPT_MAX_STEP);
    ckpt_add_scalar(&l, "lecam_ema_real", &t->lecam_ema_real);
    ckpt_add_scalar(&l, "lecam_ema_fake", &t->lecam_ema_fake);
    ckpt_add_text(&l, "vae_config", config_json);
    ckpt_add_tensors(&l, "vae.", &t->vae->table, t->vae_params);
    ckpt_add_tensors(&l, "opt.m.vae.", &t->vae->table, t->opt_vae.m);
    ckpt_add_tensors(&l, "opt.v.vae.", &t->vae->table, t->opt_vae.v);
    if (d) {
        ckpt_add_tensors(&l, "disc.", &d->table, t->loss.disc_params);
        ckpt_add_tensors(&l, "opt.m.disc.", &d->table, t->opt_disc.m);
        ckpt_add_tensors(&l, "opt.v.disc.", &d->table, t->opt_disc.v);
    }
    return l;
}

void vae_trainer_save(const vae_trainer *t, const char *path, long long epoch, long long position,
                      const char *args_json)
{
    char json[1024];
    long long zero = 0;
    /* The layout takes writable pointers because load uses the same one; save only reads. */
    ckpt_layout l = vae_layout((vae_trainer *)t, &epoch, &position, &zero,
                               vae_config_to_json(&t->vae->cfg, json, sizeof json));
    ckpt_save(&l, path, args_json);
}

void vae_trainer_load(vae_trainer *t, const char *path, long long *epoch, long long *position)
{
    safetensors *st = safetensors_open(path);
    const char *fmt = safetensors_meta(st, "format");
    if (!fmt || strcmp(fmt, VAE_CHECKPOINT_FORMAT) != 0)
        die("'%s': not a repae train-vae checkpoint (format is '%s')", path, fmt ? fmt : "missing");
    const discriminator *d = t->loss.disc;
    if (d && !safetensors_find(st, "disc.main.0.weight"))
        die("'%s': the checkpoint has no discriminator but this run has one (add --no-disc)", path);
    if (!d && safetensors_find(st, "disc.main.0.weight"))
        die("'%s': the checkpoint has a discriminator but this run has none (--no-disc)", path);
    long long dummy;
    ckpt_layout l = vae_layout(t, epoch, position, &dummy, "");
    ckpt_load_st(&l, st);
    safetensors_close(st);
}


