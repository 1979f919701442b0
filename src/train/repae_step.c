#include "train/repae_step.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/dist.h"
#include "core/rng.h"
#include "models/encoder_preprocess.h"
#include "ops/spatial_norm.h"
#include "ops/loss.h"
#include "train/ema.h"
#include "train/vae_loss.h"

/* RNG streams of one step: (seed, stream base + step). */
#define STREAM_VAE_EPS 0x56414500000000ull  /* "VAE" */
#define STREAM_SIT 0x53495400000000ull      /* "SIT": t, ε, label dropout */

const char *const repae_log_names[REPAE_N_LOGS] = {
    "sit_loss", "denoising_loss", "proj_loss", "grad_norm_sit", "vae_loss", "reconstruction_loss",
    "perceptual_loss", "kl_loss", "weighted_gan_loss", "discriminator_factor", "gan_loss", "d_weight",
    "grad_norm_vae", "vae_align_loss", "d_loss", "grad_norm_disc", "logits_real", "logits_fake", "lecam_loss"};

void repae_logs_values(const repae_logs *l, double *o)
{
    double v[REPAE_N_LOGS] = {l->sit_loss, l->denoising_loss, l->proj_loss, l->grad_norm_sit, l->vae_loss,
                              l->reconstruction_loss, l->perceptual_loss, l->kl_loss, l->weighted_gan_loss,
                              l->discriminator_factor, l->gan_loss, l->d_weight, l->grad_norm_vae,
                              l->vae_align_loss, l->d_loss, l->grad_norm_disc, l->logits_real, l->logits_fake,
                              l->lecam_loss};
    memcpy(o, v, sizeof v);
}

repae_config repae_config_default(void)
{
    repae_config c = {0};
    c.batch = 256;
    c.learning_rate = c.vae_learning_rate = c.disc_learning_rate = 1e-4f;
    c.proj_coeff = 0.5f;
    c.vae_align_proj_coeff = 1.5f;
    c.reconstruction_weight = 1.0f;
    c.perceptual_weight = 1.0f;
    c.kl_weight = 1e-6f;
    c.disc_weight = 0.1f;
    c.disc_factor = 1.0f;
    c.disc_start = 0;
    c.lecam_weight = 0.0f;
    c.max_grad_norm = 1.0f;
    c.ema_decay = 0.9999f;
    c.path = PATH_LINEAR;
    c.weighting = TIME_WEIGHTING_UNIFORM;
    c.train_pos_embed = true;
    c.zscore_alpha = 0.6f;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c.enc_mean, mean, sizeof mean);
    memcpy(c.enc_std, std, sizeof std);
    return c;
}

/* The VAE loss module of this trainer (spec §7), as a view of its fields. */
static vae_loss loss_of(const repae_trainer *t)
{
    const repae_config *c = &t->cfg;
    vae_loss L = {.w = {.reconstruction = c->reconstruction_weight, .perceptual = c->perceptual_weight,
                        .kl = c->kl_weight, .disc = c->disc_weight, .disc_factor = c->disc_factor,
                        .disc_start = c->disc_start, .lecam = c->lecam_weight},
                  .disc = t->disc, .disc_params = t->disc_params, .lp = t->lp, .lpips_params = t->lpips_params,
                  .B = c->batch, .C = t->C, .H = t->H, .W = t->W};
    return L;
}

static void copy_loss_logs(repae_logs *r, const vae_loss_logs *l)
{
    r->reconstruction_loss = l->reconstruction_loss;
    r->perceptual_loss = l->perceptual_loss;
    r->kl_loss = l->kl_loss;
    r->gan_loss = l->gan_loss;
    r->weighted_gan_loss = l->weighted_gan_loss;
    r->discriminator_factor = l->discriminator_factor;
    r->d_weight = l->d_weight;
    r->d_loss = l->d_loss;
    r->grad_norm_disc = l->grad_norm_disc;
    r->logits_real = l->logits_real;
    r->logits_fake = l->logits_fake;
    r->lecam_loss = l->lecam_loss;
}

/* Arena bytes of one step: persistent per-step buffers plus the largest phase. */
static size_t plan_bytes(const repae_trainer *t)
{
    const repae_config *c = &t->cfg;
    int B = c->batch;
    size_t img = (size_t)B * t->C * t->H * t->W, lat = (size_t)B * t->sit->C * t->h * t->w;
    size_t fixed = 0;
    fixed += 4 * arena_round(img * sizeof(float));   /* x, d_recon, recon copy for D, enc input */
    fixed += 6 * arena_round(lat * sizeof(float));   /* z, d_z, d_mean, d_logvar, time/noise copies */
    fixed += arena_round((size_t)B * sizeof(float)) * 4;
    if (t->enc)
        fixed += arena_round((size_t)B * t->enc->npatch * t->enc->cfg.embed_dim * sizeof(float));
    size_t enc_phase = 0;
    if (t->enc)
        enc_phase = vit_plan_bytes(t->enc, B, false) + arena_round((size_t)B * 3 * t->enc->cfg.img_size *
                                                                   t->enc->cfg.img_size * sizeof(float)) +
                    encoder_preprocess_workspace_bytes(c->enc_pre, B, 3, t->H, t->W, t->enc->cfg.img_size) +
                    arena_round((size_t)B * t->enc->cfg.embed_dim * sizeof(float));
    vae_plan vp = vae_plan_memory(t->vae, VAE_PASS_TRAIN, B, t->H, t->W);
    denoising_opts align = {.train = false, .align_only = !c->e2e_diffusion_loss, .path = c->path,
                            .weighting = c->weighting};
    denoising_opts full = {.train = true, .align_only = false, .path = c->path, .weighting = c->weighting};
    vae_loss L = loss_of(t);
    size_t loss_phase = vae_loss_plan_bytes(&L);
    size_t sit_align = denoising_objective_plan_bytes(t->sit, B, &align);
    size_t vae_phase = vp.saved + vae_loss_fake_pass_bytes(&L) +
                       (vp.scratch > loss_phase + sit_align ? vp.scratch : loss_phase + sit_align);
    size_t sit_phase = denoising_objective_plan_bytes(t->sit, B, &full);
    size_t peak = enc_phase;
    if (vae_phase > peak)
        peak = vae_phase;
    if (sit_phase > peak)
        peak = sit_phase;
    if (dist_world() > 1) /* parallel_random's rows: eps, time, noise, drop */
        fixed += 2 * arena_round(lat * sizeof(float)) + 2 * arena_round((size_t)B * sizeof(float));
    return fixed + peak + (1u << 16);
}

void repae_trainer_init(repae_trainer *t, const repae_config *cfg, vae *v, float *vae_params, sit *s,
                        float *sit_params, vit *enc, const float *enc_params, discriminator *d, float *disc_params,
                        lpips *lp, float *lpips_params, int H, int W, int C)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->vae = v, t->sit = s, t->enc = enc, t->disc = d, t->lp = lp;
    t->vae_params = vae_params, t->sit_params = sit_params, t->enc_params = enc_params;
    t->disc_params = disc_params, t->lpips_params = lpips_params;
    t->H = H, t->W = W, t->C = C;
    vae_check_data_channels(v, C, "train");
    vae_latent_size(v, H, W, &t->h, &t->w);
    if (s->C != v->cfg.z_channels || s->H != t->h)
        die("train: the SiT expects a %d×%d×%d latent, the VAE makes %d×%d×%d", s->C, s->H, s->H, v->cfg.z_channels,
            t->h, t->w);
    if (enc) {
        if (s->cfg.n_encoders != 1 || s->cfg.z_dims[0] != enc->cfg.embed_dim)
            die("train: the SiT projector targets %d features, the encoder gives %d",
                s->cfg.n_encoders ? s->cfg.z_dims[0] : 0, enc->cfg.embed_dim);
        if (enc->npatch != s->T)
            die("train: the encoder has %d patch tokens, the SiT %d; REPA matches them one to one", enc->npatch,
                s->T);
        if (C == 1 && (enc->cfg.img_size != H || enc->cfg.in_chans != 1))
            die("train: a 1-channel encoder must take the %d×%d images as they are (it takes %d px, %d channels)",
                H, W, enc->cfg.img_size, enc->cfg.in_chans);
    } else if (cfg->proj_coeff != 0 || (cfg->vae_align_proj_coeff != 0 && !cfg->e2e_diffusion_loss))
        die("train: REPA needs an encoder (--enc-ckpt), or set --proj-coeff 0 --vae-align-proj-coeff 0");
    if (lp && C != 1 && C != 3)
        die("train: LPIPS needs 1- or 3-channel images");
    /* The release re-enables requires_grad on every SiT parameter before the
     * SiT update, pos_embed included, so AdamW trains it. */
    if (cfg->train_pos_embed)
        for (int i = 0; i < s->table.n; i++)
            if (!strcmp(s->table.entries[i].name, "pos_embed"))
                s->table.entries[i].kind = PARAM_TRAINABLE;
    t->ema_params = param_alloc(&s->table);
    ema_update(&s->table, t->ema_params, sit_params, 0.0f);
    t->vae_grads = param_alloc(&v->table);
    t->sit_grads = param_alloc(&s->table);
    t->opt_vae = adamw_create(&v->table, cfg->vae_learning_rate);
    t->opt_sit = adamw_create(&s->table, cfg->learning_rate);
    if (d) {
        t->disc_grads = param_alloc(&d->table);
        t->opt_disc = adamw_create(&d->table, cfg->disc_learning_rate);
    }
    t->ar = arena_create(plan_bytes(t));
}

void repae_trainer_free(repae_trainer *t)
{
    arena_free(&t->ar);
    free(t->ema_params), free(t->vae_grads), free(t->sit_grads), free(t->disc_grads);
    adamw_free(&t->opt_vae);
    adamw_free(&t->opt_sit);
    if (t->disc)
        adamw_free(&t->opt_disc);
}

/* This rank's rows of the randoms the one-process step would draw for the
 * global batch (world × batch): the loader gives rank r the global rows
 * j = r + world·k, and the streams are drawn in the order repae_step, the
 * VAE and the SiT use (posterior ε; then t, ε, label dropout).  The buffers
 * live on the arena. */
static void parallel_random(repae_trainer *t, repae_step_random *out)
{
    const repae_config *c = &t->cfg;
    int B = c->batch, G = B * dist_world(), k;
    size_t chw = (size_t)t->sit->C * t->h * t->w;
    arena *ar = &t->ar;
    float *eps = arena_floats(ar, (size_t)B * chw), *noise = arena_floats(ar, (size_t)B * chw);
    float *time = arena_floats(ar, (size_t)B);
    int *drop = arena_alloc(ar, (size_t)B * sizeof(int));
    rng vae_rng = rng_new(c->seed, STREAM_VAE_EPS + (uint64_t)t->step);
    rng sit_rng = rng_new(c->seed, STREAM_SIT + (uint64_t)t->step);
    dist_normal_rows(&vae_rng, eps, B, chw);
    for (int j = 0; j < G; j++) {
        float tj;
        denoising_draw_time(&tj, &sit_rng, 1, c->weighting, c->path); /* one at a time: the same sequence */
        if (dist_own_row(j, &k))
            time[k] = tj;
    }
    dist_normal_rows(&sit_rng, noise, B, chw);
    float p = t->sit->cfg.class_dropout_prob;
    for (int j = 0; j < G; j++) {
        int d = p > 0 && rng_uniform(&sit_rng) < p;
        if (dist_own_row(j, &k))
            drop[k] = d;
    }
    *out = (repae_step_random){.eps = eps, .time = time, .noise = noise, .drop = drop};
}

void repae_step(repae_trainer *t, const uint8_t *images, const int *labels, const repae_step_random *given,
                repae_logs *logs)
{
    const repae_config *c = &t->cfg;
    repae_step_random none = {0};
    if (!given)
        given = &none;
    int B = c->batch, C = t->C, HW = t->H * t->W;
    size_t n_img = (size_t)B * C * HW, n_lat = (size_t)B * t->sit->C * t->h * t->w;
    arena *ar = &t->ar;
    arena_reset(ar, 0);
    memset(logs, 0, sizeof *logs);
    rng vae_rng = rng_new(c->seed, STREAM_VAE_EPS + (uint64_t)t->step);
    rng sit_rng = rng_new(c->seed, STREAM_SIT + (uint64_t)t->step);
    /* Over several processes every rank takes its rows of the global batch's
     * draws, so a step equals the one-process step on the global batch. */
    repae_step_random par;
    if (dist_world() > 1 && !given->eps && !given->time && !given->noise && !given->drop) {
        parallel_random(t, &par);
        given = &par;
    }

    /* Step-long buffers. */
    float *x = arena_floats(ar, n_img);
    float *d_recon = arena_zeros(ar, n_img);
    float *z = arena_floats(ar, n_lat), *d_z = arena_zeros(ar, n_lat);
    float *d_mean = arena_zeros(ar, n_lat), *d_logvar = arena_zeros(ar, n_lat);
    float *time = arena_floats(ar, (size_t)B), *noise = arena_floats(ar, n_lat);
    float *zs = NULL;

    /* 1. Encoder targets (frozen, no grad). */
    if (t->enc) {
        const vit *e = t->enc;
        zs = arena_floats(ar, (size_t)B * e->npatch * e->cfg.embed_dim);
        size_t mark = arena_mark(ar);
        int S = e->cfg.img_size;
        float *in = arena_floats(ar, (size_t)B * e->cfg.in_chans * S * S);
        if (C == 3)
            encoder_preprocess(in, images, c->enc_pre, B, 3, t->H, t->W, S, ar);
        else
            encoder_normalize_u8(in, images, B, C, HW, c->enc_mean, c->enc_std);
        vit_acts va;
        vit_acts_alloc(&va, e, ar, B, false);
        vit_forward(e, t->enc_params, &va, in, zs, NULL, NULL, NULL);
        if (c->spatial_norm)
            spatial_norm_forward(zs, zs, B, e->npatch, e->cfg.embed_dim, c->zscore_alpha, SPATIAL_NORM_EPS);
        arena_reset(ar, mark);
    }

    /* 3. VAE forward (activations stay on the arena until the VAE backward). */
    for (size_t i = 0; i < n_img; i++)
        x[i] = images[i] / 127.5f - 1.0f;
    size_t vae_mark = arena_mark(ar);
    vae_acts vacts = {0}, *va = &vacts; /* pointers into the arena */
    vae_forward(t->vae, t->vae_params, va, x, given->eps, &vae_rng, B, t->H, t->W, ar);
    memcpy(z, va->z, n_lat * sizeof(float));
    const float *recon = va->recon;

    /* 5. Generator loss (spec §7.1). */
    vae_loss L = loss_of(t);
    vae_loss_logs ll;
    vae_loss_fake_pass fake; /* D(recon), kept on the arena for step 8 */
    logs->vae_loss = vae_generator_loss(&L, t->step, x, recon, va->mean, va->logvar, t->sit->C * t->h * t->w,
                                        d_recon, d_mean, d_logvar, ar, &ll, &fake);

    /* 6. The VAE pass through the frozen, eval-mode SiT (skipped when it
     * would carry no gradient: no encoder and no naive-E2E diffusion loss;
     * the SiT pass then draws t and ε itself). */
    bool vae_sit_pass = t->enc || c->e2e_diffusion_loss;
    if (vae_sit_pass) {
        size_t mark = arena_mark(ar);
        denoising_opts o = {.train = false, .align_only = !c->e2e_diffusion_loss, .path = c->path,
                            .weighting = c->weighting};
        denoising_inputs in = {.z = z, .y = labels, .time_input = given->time, .noise = given->noise,
                               .rng = &sit_rng};
        if (t->enc)
            in.zs[0] = zs;
        denoising_pass sa;
        denoising_objective_forward(&sa, t->sit, t->sit_params, ar, &o, &in, B);
        memcpy(time, sa.time_input, (size_t)B * sizeof(float));
        memcpy(noise, sa.noise, n_lat * sizeof(float));
        float w_d = c->e2e_diffusion_loss ? 1.0f : 0.0f;
        logs->vae_align_loss = t->enc ? sa.proj_loss : 0.0;
        double extra = c->vae_align_proj_coeff * logs->vae_align_loss;
        if (c->e2e_diffusion_loss) {
            double dl = 0;
            for (int n = 0; n < B; n++)
                dl += sa.denoising_loss[n];
            extra += dl / B;
        }
        logs->vae_loss += extra;
        denoising_objective_backward(t->sit, t->sit_params, &sa, ar, w_d, t->enc ? c->vae_align_proj_coeff : 0.0f, NULL, d_z);
        arena_reset(ar, mark);
    }

    /* 7. VAE update. */
    grad_zero(&t->vae->table, t->vae_grads);
    vae_backward(t->vae, t->vae_params, va, d_recon, d_z, d_mean, d_logvar, t->vae_grads, NULL, ar);
    dist_allreduce_mean(t->vae_grads, t->vae->table.total); /* data parallel: the global batch's gradient */
    logs->grad_norm_vae = grad_clip(&t->vae->table, t->vae_grads, c->max_grad_norm);
    adamw_step(&t->opt_vae, t->vae_params, t->vae_grads);

    /* 8. Discriminator update on x and the pre-update reconstruction. */
    vae_discriminator_step(&L, t->step, x, recon, t->disc_grads, &t->opt_disc, c->max_grad_norm, &t->lecam_ema_real,
                           &t->lecam_ema_fake, ar, &ll, &fake);
    copy_loss_logs(logs, &ll);
    arena_reset(ar, vae_mark); /* the VAE activations are no longer needed */

    /* 10-11. SiT update: same z (pre-update, detached), same t and ε. */
    {
        denoising_opts o = {.train = true, .align_only = false, .path = c->path, .weighting = c->weighting};
        denoising_inputs in = {.z = z, .y = labels, .time_input = vae_sit_pass ? time : given->time,
                               .noise = vae_sit_pass ? noise : given->noise, .force_drop = given->drop,
                               .rng = &sit_rng};
        if (t->enc)
            in.zs[0] = zs;
        denoising_pass sa;
        denoising_objective_forward(&sa, t->sit, t->sit_params, ar, &o, &in, B);
        double dl = 0;
        for (int n = 0; n < B; n++)
            dl += sa.denoising_loss[n];
        logs->denoising_loss = dl / B;
        logs->proj_loss = t->enc ? sa.proj_loss : 0.0;
        logs->sit_loss = logs->denoising_loss + c->proj_coeff * logs->proj_loss;
        grad_zero(&t->sit->table, t->sit_grads);
        denoising_objective_backward(t->sit, t->sit_params, &sa, ar, 1.0f, t->enc ? c->proj_coeff : 0.0f, t->sit_grads, NULL);
        dist_allreduce_mean(t->sit_grads, t->sit->table.total);
        logs->grad_norm_sit = grad_clip(&t->sit->table, t->sit_grads, c->max_grad_norm);
        adamw_step(&t->opt_sit, t->sit_params, t->sit_grads);
    }

    /* 12. EMA (parameters and BN buffers). */
    ema_update(&t->sit->table, t->ema_params, t->sit_params, c->ema_decay);
    t->step++;
}
