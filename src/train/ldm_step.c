#include "train/ldm_step.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/encoder_preprocess.h"
#include "ops/spatial_norm.h"
#include "train/ema.h"

ldm_config ldm_config_default(void)
{
    ldm_config c = {0};
    c.batch = 256;
    c.learning_rate = 1e-4f;
    c.proj_coeff = 0.5f;
    c.cfg_prob = 0.1f;
    c.max_grad_norm = 1.0f;
    c.ema_decay = 0.9999f;
    c.path = PATH_LINEAR;
    c.weighting = TIME_WEIGHTING_UNIFORM;
    c.zscore_alpha = 0.6f;
    for (int i = 0; i < 3; i++)
        c.enc_mean[i] = 0.5f, c.enc_std[i] = 0.5f;
    return c;
}

void ldm_trainer_init(ldm_trainer *t, const ldm_config *cfg, sit *s, float *sit_params, vit *enc,
                      const float *enc_params, int C, int H, int W)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->sit = s, t->sit_params = sit_params, t->enc = enc, t->enc_params = enc_params;
    t->C = C, t->H = H, t->W = W;
    if (!enc && cfg->proj_coeff != 0)
        die("train-ldm: REPA needs an encoder (--enc-ckpt), or set --proj-coeff 0 (vanilla SiT)");
    if (enc) {
        if (s->cfg.n_encoders != 1 || s->cfg.z_dims[0] != enc->cfg.embed_dim || enc->npatch != s->T)
            die("train-ldm: the encoder (%d tokens × %d) does not match the SiT's projector (%d tokens × %d)",
                enc->npatch, enc->cfg.embed_dim, s->T, s->cfg.n_encoders ? s->cfg.z_dims[0] : 0);
        if (C == 1 && (enc->cfg.img_size != H || enc->cfg.in_chans != 1))
            die("train-ldm: a 1-channel encoder must take the %d×%d images as they are", H, W);
    }
    t->ema_params = param_alloc(&s->table);
    ema_update(&s->table, t->ema_params, sit_params, 0.0f);
    t->grads = param_alloc(&s->table);
    t->opt = adamw_create(&s->table, cfg->learning_rate);
    int B = cfg->batch;
    size_t lat = (size_t)B * s->C * s->H * s->H;
    denoising_opts o = {.train = false, .path = cfg->path, .weighting = cfg->weighting};
    /* Held for the whole step: z, the labels and the encoder's targets.  The
     * encoder's input and activations are released before the SiT runs (and
     * the 3-channel preprocessing's workspace before the encoder), so the
     * larger of the two phases counts; 64 KiB of margin. */
    size_t held = arena_round(lat * sizeof(float)) + arena_round((size_t)B * sizeof(int));
    size_t phase = denoising_objective_plan_bytes(s, B, &o);
    if (enc) {
        int S = enc->cfg.img_size;
        held += arena_round((size_t)B * enc->npatch * enc->cfg.embed_dim * sizeof(float));
        size_t pre = C == 3 ? encoder_preprocess_workspace_bytes(cfg->enc_pre, B, 3, H, W, S) : 0;
        size_t vit = vit_plan_bytes(enc, B, false);
        size_t enc_phase = arena_round((size_t)B * enc->cfg.in_chans * S * S * sizeof(float)) + (pre > vit ? pre : vit);
        if (enc_phase > phase)
            phase = enc_phase;
    }
    size_t bytes = held + phase + (1u << 16);
    if (dist_world() > 1) /* parallel_random's rows */
        bytes += 2 * arena_round(lat * sizeof(float)) + arena_round((size_t)B * sizeof(float)) +
                 arena_round((size_t)B * sizeof(int));
    t->ar = arena_create(bytes);
}

void ldm_trainer_free(ldm_trainer *t)
{
    arena_free(&t->ar);
    free(t->ema_params);
    free(t->grads);
    adamw_free(&t->opt);
}

/* This rank's rows of the randoms the one-process step would draw for the
 * global batch (world × batch): the loader gives rank r the global rows
 * j = r + world·k (k = 0..batch-1), and the streams are drawn in the order
 * ldm_step and denoising_objective_forward use.  The buffers live on the arena. */
static void parallel_random(ldm_trainer *t, ldm_step_random *out)
{
    const ldm_config *c = &t->cfg;
    const sit *s = t->sit;
    int B = c->batch, G = B * dist_world(), k;
    size_t chw = (size_t)s->C * s->H * s->H;
    arena *ar = &t->ar;
    float *eps = arena_floats(ar, (size_t)B * chw), *time = arena_floats(ar, (size_t)B);
    float *noise = arena_floats(ar, (size_t)B * chw);
    int *drop = arena_alloc(ar, (size_t)B * sizeof(int));
    rng zr = rng_new(c->seed, STREAM_LDM_Z + (uint64_t)t->step);
    rng dr = rng_new(c->seed, STREAM_LDM_DROP + (uint64_t)t->step);
    rng sr = rng_new(c->seed, STREAM_LDM_SIT + (uint64_t)t->step);
    dist_normal_rows(&zr, eps, B, chw);
    for (int j = 0; j < G; j++) {
        bool d = rng_uniform(&dr) < c->cfg_prob;
        float tj;
        denoising_draw_time(&tj, &sr, 1, c->weighting, c->path); /* one at a time: the same sequence as G at once */
        if (dist_own_row(j, &k))
            drop[k] = d, time[k] = tj;
    }
    dist_normal_rows(&sr, noise, B, chw); /* after the times, as denoising_objective_forward draws them */
    *out = (ldm_step_random){.time = time, .noise = noise, .eps_z = eps, .drop = drop};
}

void ldm_step(ldm_trainer *t, const uint8_t *images, const float *lat_mean, const float *lat_std, const int *labels,
              const ldm_step_random *given, ldm_logs *logs)
{
    const ldm_config *c = &t->cfg;
    static const ldm_step_random none;
    if (!given)
        given = &none;
    int B = c->batch;
    sit *s = t->sit;
    size_t lat = (size_t)B * s->C * s->H * s->H;
    arena *ar = &t->ar;
    arena_reset(ar, 0);
    memset(logs, 0, sizeof *logs);

    /* Over several processes each rank draws the whole global batch's
     * randoms and keeps its own rows, so a step equals the one-process step
     * on the same global batch (see parallel_random). */
    ldm_step_random par;
    if (dist_world() > 1 && given == &none) {
        parallel_random(t, &par);
        given = &par;
    }

    /* z = mean + std·ε from the cached moments. */
    float *z = arena_floats(ar, lat);
    rng zr = rng_new(c->seed, STREAM_LDM_Z + (uint64_t)t->step);
    for (size_t i = 0; i < lat; i++)
        z[i] = lat_mean[i] + lat_std[i] * (given->eps_z ? given->eps_z[i] : rng_normal(&zr));

    /* Label dropout, applied to the labels themselves: the SiT runs with its
     * BN in eval mode (fixed normalisation), where it uses labels as given. */
    int *y = arena_alloc(ar, (size_t)B * sizeof(int));
    rng dr = rng_new(c->seed, STREAM_LDM_DROP + (uint64_t)t->step);
    for (int i = 0; i < B; i++) {
        bool drop = given->drop ? given->drop[i] != 0 : rng_uniform(&dr) < c->cfg_prob;
        y[i] = drop ? s->cfg.num_classes : labels[i];
    }

    float *zs = NULL;
    if (t->enc) {
        const vit *e = t->enc;
        zs = arena_floats(ar, (size_t)B * e->npatch * e->cfg.embed_dim);
        size_t mark = arena_mark(ar);
        int S = e->cfg.img_size;
        float *in = arena_floats(ar, (size_t)B * e->cfg.in_chans * S * S);
        if (t->C == 3)
            encoder_preprocess(in, images, c->enc_pre, B, 3, t->H, t->W, S, ar);
        else
            encoder_normalize_u8(in, images, B, t->C, t->H * t->W, c->enc_mean, c->enc_std);
        vit_acts va;
        vit_acts_alloc(&va, e, ar, B, false);
        vit_forward(e, t->enc_params, &va, in, zs, NULL, NULL, NULL);
        if (c->spatial_norm)
            spatial_norm_forward(zs, zs, B, e->npatch, e->cfg.embed_dim, c->zscore_alpha, SPATIAL_NORM_EPS);
        arena_reset(ar, mark);
    }

    rng sr = rng_new(c->seed, STREAM_LDM_SIT + (uint64_t)t->step);
    denoising_opts o = {.train = false, .align_only = false, .path = c->path, .weighting = c->weighting};
    denoising_inputs in = {.z = z, .y = y, .time_input = given->time, .noise = given->noise, .rng = &sr};
    if (t->enc)
        in.zs[0] = zs;
    denoising_pass sa;
    denoising_objective_forward(&sa, s, t->sit_params, ar, &o, &in, B);
    double dl = 0;
    for (int n = 0; n < B; n++)
        dl += sa.denoising_loss[n];
    logs->denoising_loss = dl / B;
    logs->proj_loss = t->enc ? sa.proj_loss : 0.0;
    logs->loss = logs->denoising_loss + c->proj_coeff * logs->proj_loss;
    grad_zero(&s->table, t->grads);
    denoising_objective_backward(s, t->sit_params, &sa, ar, 1.0f, t->enc ? c->proj_coeff : 0.0f, t->grads, NULL);
    /* Data parallel: the mean of the ranks' gradients of their local means is
     * the gradient of the global batch's mean (equal local batches). */
    dist_allreduce_mean(t->grads, s->table.total);
    logs->grad_norm = grad_clip(&s->table, t->grads, c->max_grad_norm);
    adamw_step(&t->opt, t->sit_params, t->grads);
    ema_update(&s->table, t->ema_params, t->sit_params, c->ema_decay);
    t->step++;
}
