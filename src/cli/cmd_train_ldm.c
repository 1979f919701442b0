/* repae train-ldm — traditional latent diffusion on cached latents (spec
 * §6.4): a SiT trained with a frozen VAE, with REPA (--proj-coeff > 0 and an
 * encoder) or without (vanilla SiT).  Output layout as `repae train`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/model_files.h"
#include "cli/train_setup.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/options.h"
#include "data/latent_cache.h"
#include "data/loader.h"
#include "io/weights_file.h"
#include "train/checkpoint.h"
#include "train/ldm_step.h"
#include "train/preview.h"
#include "train/run_loop.h"

static const char *usage =
    "usage: repae train-ldm --latents LATENTS.safetensors [options]\n"
    "\n"
    "Trains a SiT on latents cached by `repae cache-latents` with the VAE\n"
    "frozen: z = mean + std·ε afresh each step, the latent BatchNorm fixed to\n"
    "the latents statistics (from --latents-stats, else measured on the cache),\n"
    "L = mean(denoise) + proj_coeff·REPA.  --proj-coeff 0 (or no --enc-ckpt)\n"
    "trains a vanilla SiT.  The images (--data, the same order as the cache)\n"
    "are only read for the encoder's targets.\n"
    "\n"
    "iREPA (arXiv 2512.10794): --projection-layer-type conv --spnorm-method zscore,\n"
    "under iREPA's own flag names (its configs/irepa.yaml also sets --proj-coeff 1.0).";

typedef struct ldm_options {
    const char *latents, *data, *split, *vae_ckpt, *latents_stats, *enc_ckpt, *model, *path_type, *weighting;
    const char *output_dir, *exp_name;
    int image_size, channels, sit_depth, sit_hidden, sit_heads, sit_patch, encoder_depth, projector_dim;
    int batch_size, preview_images, enc_heads;
    float learning_rate, proj_coeff, cfg_prob, max_grad_norm, ema_decay, enc_mean, enc_std;
    bool qk_norm;
    irepa_options irepa;
    long long max_train_steps, checkpointing_steps, sampling_steps, seed, resume_step;
} ldm_options;

/* Bias = mean and scale = 1/std of posterior samples z = mean + std·ε over
 * the cache (up to 10k latents), per channel. */
static void cache_stats(const latent_cache *c, float *bias, float *scale)
{
    int n = c->n < 10000 ? c->n : 10000, hw = c->h * c->w;
    rng r = rng_new(0, 0x5354415453ull);
    for (int ch = 0; ch < c->C; ch++) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) {
                size_t idx = ((size_t)i * c->C + ch) * hw + k;
                double z = c->mean[idx] + c->std[idx] * rng_normal(&r);
                s1 += z, s2 += z * z;
            }
        double m = (double)n * hw, mu = s1 / m, var = s2 / m - mu * mu;
        bias[ch] = (float)mu;
        scale[ch] = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
    }
}

/* What the run loop's callbacks need. */
typedef struct ldm_run {
    ldm_trainer t;
    loader ld;
    const latent_cache *lc;
    sit *s;
    float *sp;
    vae *v; /* NULL: no previews */
    const char *args_json;
    int B, H, W;
    size_t lat;
    uint8_t *images, *grid;
    int32_t *labels32;
    int *labels;
    float *mean, *stdv;
    preview_config pc;
    ldm_logs last;
} ldm_run;

static const char *const ldm_log_names[] = {"loss", "denoising_loss", "proj_loss", "grad_norm"};

static long long run_step(void *ctx, double *logs)
{
    ldm_run *r = ctx;
    loader_next(&r->ld, r->images, r->labels32);
    const uint32_t *idx = loader_last_indices(&r->ld);
    for (int i = 0; i < r->B; i++) {
        r->labels[i] = r->labels32[i];
        memcpy(r->mean + i * r->lat, r->lc->mean + (size_t)idx[i] * r->lat, r->lat * sizeof(float));
        memcpy(r->stdv + i * r->lat, r->lc->std + (size_t)idx[i] * r->lat, r->lat * sizeof(float));
    }
    ldm_step(&r->t, r->images, r->mean, r->stdv, r->labels, NULL, &r->last);
    logs[0] = r->last.loss, logs[1] = r->last.denoising_loss, logs[2] = r->last.proj_loss;
    logs[3] = r->last.grad_norm;
    return r->t.step;
}

static void run_status(void *ctx, const double *logs, char *buf, size_t size)
{
    snprintf(buf, size, "loss %.4f denoise %.4f proj %.4f", logs[0], logs[1], logs[2]);
}

static void run_save(void *ctx, const char *path, long long epoch, long long position)
{
    ldm_run *r = ctx;
    ldm_checkpoint_save(&r->t, path, epoch, position, r->args_json);
}

static void run_load(void *ctx, const char *path, long long *epoch, long long *position)
{
    ldm_checkpoint_load(&((ldm_run *)ctx)->t, path, epoch, position);
}

static long long run_current_step(void *ctx) { return ((ldm_run *)ctx)->t.step; }

static void run_check_same(void *ctx)
{
    ldm_run *r = ctx;
    dist_check_same(r->sp, r->s->table.total, "the SiT parameters");
    dist_check_same(r->t.ema_params, r->s->table.total, "the SiT EMA parameters");
}

static void run_preview(void *ctx, long long step, const char *png, double *extras)
{
    ldm_run *r = ctx;
    preview_grid(r->s, r->sp, r->v, &r->pc, r->H, r->W, r->grid, png);
}

int cmd_train_ldm(int argc, char **argv)
{
    ldm_options o;
    option_spec opts[] = {
        {"--latents", OPT_STRING, &o.latents, NULL, "latent cache from 'repae cache-latents'"},
        {"--data", OPT_STRING, &o.data, "fashion-mnist", "the images the cache was made from (encoder targets)"},
        {"--data-split", OPT_CHOICE, &o.split, "train", "Fashion-MNIST split", .choices = "train|test"},
        {"--image-size", OPT_INT, &o.image_size, "32", "Fashion-MNIST padding size", .min = 28, .max = 1024},
        {"--channels", OPT_INT, &o.channels, "1", "Fashion-MNIST channels", .min = 1, .max = 3},
        {"--vae-ckpt", OPT_STRING, &o.vae_ckpt, NULL, "the frozen VAE, only for preview grids (none: no previews)"},
        {"--latents-stats", OPT_STRING, &o.latents_stats, NULL, "latents statistics file (none: measured on the cache)"},
        {"--model", OPT_STRING, &o.model, "custom", "SiT preset (SiT-B/2, ...) or 'custom' (--sit-*)"},
        {"--sit-depth", OPT_INT, &o.sit_depth, "6", "custom SiT: blocks", .min = 1, .max = 64},
        {"--sit-hidden", OPT_INT, &o.sit_hidden, "384", "custom SiT: width", .min = 8, .max = 8192},
        {"--sit-heads", OPT_INT, &o.sit_heads, "6", "custom SiT: heads", .min = 1, .max = 128},
        {"--sit-patch", OPT_INT, &o.sit_patch, "2", "custom SiT: patch size", .min = 1, .max = 16},
        {"--encoder-depth", OPT_INT, &o.encoder_depth, "2", "block the projector reads (1-based)", .min = 1, .max = 64},
        {"--projector-dim", OPT_INT, &o.projector_dim, "2048", "REPA projector width", .min = 1, .max = 16384},
        IREPA_OPTION_SPECS(o.irepa),
        {"--qk-norm", OPT_FLAG, &o.qk_norm, NULL, "LayerNorm on queries and keys"},
        {"--enc-ckpt", OPT_STRING, &o.enc_ckpt, NULL, "REPA encoder (none: vanilla SiT)"},
        {"--enc-heads", OPT_INT, &o.enc_heads, "0", "encoder heads (0: from the width)", .min = 0, .max = 128},
        {"--enc-mean", OPT_FLOAT, &o.enc_mean, "0.5", "1-channel encoder input mean", .min = -10, .max = 10},
        {"--enc-std", OPT_FLOAT, &o.enc_std, "0.5", "1-channel encoder input std", .min = 1e-6, .max = 10},
        {"--proj-coeff", OPT_FLOAT, &o.proj_coeff, "0.5", "REPA weight (0: vanilla SiT)", .min = 0, .max = 100},
        {"--cfg-prob", OPT_FLOAT, &o.cfg_prob, "0.1", "label dropout probability", .min = 0, .max = 1},
        {"--path-type", OPT_CHOICE, &o.path_type, "linear", "interpolant", .choices = "linear|cosine"},
        {"--weighting", OPT_CHOICE, &o.weighting, "uniform", "time sampling", .choices = "uniform|lognormal"},
        {"--learning-rate", OPT_FLOAT, &o.learning_rate, "1e-4", "AdamW learning rate", .min = 0, .max = 1},
        {"--max-grad-norm", OPT_FLOAT, &o.max_grad_norm, "1.0", "gradient clipping", .min = 0, .max = 1e9},
        {"--ema-decay", OPT_FLOAT, &o.ema_decay, "0.9999", "EMA decay", .min = 0, .max = 1},
        {"--batch-size", OPT_INT, &o.batch_size, "32", "batch size", .min = 1, .max = 65536},
        {"--max-train-steps", OPT_INT64, &o.max_train_steps, "1000", "training steps", .min = 1, .max = 1e12},
        {"--checkpointing-steps", OPT_INT64, &o.checkpointing_steps, "500", "checkpoint every N steps", .min = 0,
         .max = 1e12},
        {"--sampling-steps", OPT_INT64, &o.sampling_steps, "500", "preview every N steps (needs --vae-ckpt)",
         .min = 0, .max = 1e12},
        {"--preview-images", OPT_INT, &o.preview_images, "64", "images per preview grid", .min = 1, .max = 1024},
        {"--seed", OPT_INT64, &o.seed, "0", "random seed", .min = 0, .max = 9e18},
        {"--output-dir", OPT_STRING, &o.output_dir, "exps", "where runs go"},
        {"--exp-name", OPT_STRING, &o.exp_name, "ldm-fmnist", "run name"},
        {"--resume-step", OPT_INT64, &o.resume_step, "0", "resume from this checkpoint (-1: the latest)", .min = -1,
         .max = 1e12},
    };
    int n = N_OPTS(opts);
    if (options_parse("train-ldm", usage, opts, n, argc, argv) != 1)
        die("train-ldm: unexpected positional argument '%s'", argv[1]);
    if (!o.latents)
        die("train-ldm: --latents is required (write one with 'repae cache-latents')");
    char *args_json = options_to_json(opts, n);

    latent_cache lc = latent_cache_read(o.latents);
    train_options to = {.data = o.data, .data_split = o.split, .image_size = o.image_size, .channels = o.channels};
    train_data data;
    train_setup_data(&to, &data);
    if (data.ds.n < lc.n)
        die("train-ldm: '%s' has %d latents but '%s' only %d images", o.latents, lc.n, data.ds.source, data.ds.n);
    data.ds.n = lc.n;
    for (int i = 0; i < lc.n; i++)
        if (data.ds.labels[i] != lc.labels[i])
            die("train-ldm: image %d of '%s' has label %d but latent %d has %d: the cache was made from other "
                "images", i, data.ds.source, data.ds.labels[i], i, lc.labels[i]);

    vit enc;
    bool have_enc = o.enc_ckpt && o.proj_coeff > 0;
    if (have_enc) {
        safetensors *st = weights_open(o.enc_ckpt);
        int size = data.ds.channels == 3 ? 224 * data.ds.height / 256 : data.ds.height;
        if (size < 14)
            size = data.ds.height;
        vit_from_checkpoint(&enc, st, "", size, o.enc_heads, PARAM_ALLOW_EXTRA);
        safetensors_close(st);
    }
    train_check_channels(data.ds.source, data.ds.channels, NULL, NULL, have_enc ? &enc : NULL, o.enc_ckpt);
    sit_config sc = sit_config_default();
    if (strcmp(o.model, "custom") != 0) {
        if (sit_config_preset(&sc, o.model) != 0)
            die("--model: unknown SiT preset '%s'", o.model);
    } else
        sc.depth = o.sit_depth, sc.hidden = o.sit_hidden, sc.heads = o.sit_heads, sc.patch = o.sit_patch;
    if (lc.h != lc.w)
        die("'%s': non-square latents are not supported", o.latents);
    sc.in_channels = lc.C, sc.input_size = lc.h, sc.num_classes = data.ds.num_classes;
    sc.class_dropout_prob = o.cfg_prob, sc.encoder_depth = o.encoder_depth, sc.projector_dim = o.projector_dim;
    sc.qk_norm = o.qk_norm, sc.n_encoders = have_enc ? 1 : 0;
    if (have_enc)
        sc.z_dims[0] = enc.cfg.embed_dim;
    irepa_apply_sit(&o.irepa, &sc);
    irepa_warn_unused(&o.irepa, "train-ldm", have_enc);
    sit_config_check(&sc);
    sit s;
    sit_build(&s, &sc);
    float *sp = param_alloc(&s.table);
    sit_init_params(&s, sp, (uint64_t)o.seed + 2);
    float bias[256], scale[256];
    if (lc.C > 256)
        die("train-ldm: at most 256 latent channels");
    if (o.latents_stats)
        mf_load_latents_stats(o.latents_stats, lc.C, bias, scale);
    else
        cache_stats(&lc, bias, scale);
    sit_set_latent_stats(&s, sp, bias, scale);
    vae v;
    if (o.vae_ckpt)
        vae_init_from_file(&v, o.vae_ckpt, "", PARAM_ALLOW_EXTRA);

    ldm_config lcfg = ldm_config_default();
    int B = train_local_batch("train-ldm", o.batch_size);
    lcfg.batch = B, lcfg.learning_rate = o.learning_rate;
    lcfg.proj_coeff = have_enc ? o.proj_coeff : 0.0f;
    lcfg.cfg_prob = o.cfg_prob, lcfg.max_grad_norm = o.max_grad_norm, lcfg.ema_decay = o.ema_decay;
    lcfg.path = !strcmp(o.path_type, "cosine") ? SIT_PATH_COSINE : SIT_PATH_LINEAR;
    lcfg.weighting = !strcmp(o.weighting, "lognormal") ? SIT_WEIGHTING_LOGNORMAL : SIT_WEIGHTING_UNIFORM;
    lcfg.seed = (uint64_t)o.seed;
    lcfg.spatial_norm = irepa_spatial_norm(&o.irepa), lcfg.zscore_alpha = o.irepa.zscore_alpha;
    for (int c = 0; c < 3; c++)
        lcfg.enc_mean[c] = o.enc_mean, lcfg.enc_std[c] = o.enc_std;
    run_dir rd;
    run_dir_open(&rd, "train-ldm", o.output_dir, o.exp_name, true);
    ldm_run r = {.lc = &lc, .s = &s, .sp = sp, .v = o.vae_ckpt ? &v : NULL, .args_json = args_json,
                 .B = B, .H = data.ds.height, .W = data.ds.width, .lat = (size_t)lc.C * lc.h * lc.w};
    ldm_trainer_init(&r.t, &lcfg, &s, sp, have_enc ? &enc : NULL, data.ds.channels, data.ds.height, data.ds.width);
    r.ld = loader_create(&data.ds, B, (uint64_t)o.seed, dist_rank(), dist_world());

    char buf[256];
    printf("repae train-ldm: %s\nlatents: %s, %d × %d×%d×%d\nSiT: %s (%.2f M parameters)\n%s\n", rd.dir, o.latents,
           lc.n, lc.C, lc.h, lc.w, sit_config_str(&sc, buf, sizeof buf), sit_param_count(&s, true) / 1e6,
           have_enc ? "REPA: on" : "REPA: off (vanilla SiT)");
    options_print(stdout, opts, n);
    fflush(stdout);

    size_t img = (size_t)data.ds.channels * data.ds.height * data.ds.width;
    r.images = xmalloc((size_t)B * img);
    r.labels32 = xmalloc((size_t)B * sizeof(int32_t));
    r.labels = xmalloc((size_t)B * sizeof(int));
    r.mean = xmalloc((size_t)B * r.lat * sizeof(float)), r.stdv = xmalloc((size_t)B * r.lat * sizeof(float));
    r.pc = (preview_config){o.preview_images, 50, 4.0f, (uint64_t)o.seed ^ 0x9e3779b97f4a7c15ull};
    r.grid = xmalloc((size_t)r.pc.n_images * img);

    run_loop rl = {.command = "train-ldm", .dir = &rd, .data = &r.ld, .max_steps = o.max_train_steps,
                   .checkpoint_every = o.checkpointing_steps, .preview_every = o.sampling_steps,
                   .preview_first = true, .n_logs = 4, .log_names = ldm_log_names, .ctx = &r, .step = run_step,
                   .status = run_status, .save = run_save, .load = run_load, .current_step = run_current_step,
                   .preview = o.vae_ckpt ? run_preview : NULL, .check_same = run_check_same};
    int exit_code = run_loop_run(&rl, o.resume_step, args_json);
    free(r.images), free(r.labels32), free(r.labels), free(r.mean), free(r.stdv), free(r.grid), free(args_json);
    loader_free(&r.ld);
    ldm_trainer_free(&r.t);
    free(sp);
    sit_free(&s);
    if (have_enc)
        vit_free(&enc);
    if (o.vae_ckpt)
        vae_free(&v);
    latent_cache_free(&lc);
    train_data_free(&data);
    run_dir_close(&rd);
    return exit_code;
}
