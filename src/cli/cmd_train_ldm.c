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
#include "train/latents_stats.h"
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


/* What the run loop's callbacks need. */
typedef struct ldm_run {
    ldm_trainer t;
    loader ld;
    const latent_cache *lc;
    sit *s;
    float *sp;
    vae *v; /* NULL: no previews */
    const float *vp;
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
    preview_grid(r->s, r->sp, r->v, r->vp, &r->pc, r->H, r->W, r->grid, png);
}

/* train-ldm's flags: the shared training table's (same names, same JSON
 * keys in args.json), those that mean something here, in this order. */
static const char *const ldm_flags[] = {
    "--data", "--data-split", "--image-size", "--channels", "--vae-ckpt", "--latents-stats", "--model",
    "--sit-depth", "--sit-hidden", "--sit-heads", "--sit-patch", "--encoder-depth", "--projector-dim",
    "--projection-layer-type", "--proj-kwargs-kernel-size", "--spnorm-method", "--zscore-alpha", "--qk-norm",
    "--enc-type", "--enc-ckpt", "--enc-heads", "--enc-mean", "--enc-std", "--proj-coeff", "--cfg-prob",
    "--path-type", "--weighting", "--learning-rate", "--max-grad-norm", "--ema-decay", "--batch-size",
    "--max-train-steps", "--checkpointing-steps", "--sampling-steps", "--preview-images", "--seed", "--output-dir",
    "--exp-name", "--resume-step"};

static int ldm_options_table(train_options *o, option_spec *opts)
{
    opts[0] = (option_spec){"--latents", OPT_STRING, &o->latents, NULL, "latent cache from 'repae cache-latents'"};
    int n = 1 + train_options_subset(o, opts + 1, ldm_flags, (int)(sizeof ldm_flags / sizeof ldm_flags[0]));
    train_option_adjust(opts, n, "--data", NULL, "the images the cache was made from (encoder targets)");
    train_option_adjust(opts, n, "--vae-ckpt", NULL, "the frozen VAE, only for preview grids (none: no previews)");
    train_option_adjust(opts, n, "--latents-stats", NULL, "latents statistics file (none: measured on the cache)");
    train_option_adjust(opts, n, "--enc-ckpt", NULL, "REPA encoder (none: vanilla SiT)");
    train_option_adjust(opts, n, "--proj-coeff", NULL, "REPA weight (0: vanilla SiT)");
    train_option_adjust(opts, n, "--learning-rate", NULL, "AdamW learning rate");
    train_option_adjust(opts, n, "--sampling-steps", NULL, "preview every N steps (needs --vae-ckpt)");
    train_option_adjust(opts, n, "--exp-name", "ldm-fmnist", NULL);
    for (int i = 0; i < n; i++)
        if (!strcmp(opts[i].name, "--batch-size"))
            opts[i].min = 1; /* the BatchNorm is fixed here: one image per step is fine */
    return n;
}

int cmd_train_ldm(int argc, char **argv)
{
    train_options o;
    memset(&o, 0, sizeof o);
    o.bn_momentum = sit_config_default().bn_momentum; /* unused: the BatchNorm is fixed (eval) here */
    option_spec opts[TRAIN_MAX_OPTS];
    int n = ldm_options_table(&o, opts);
    if (options_parse("train-ldm", usage, opts, n, argc, argv) != 1)
        die("train-ldm: unexpected positional argument '%s'", argv[1]);
    if (!o.latents)
        die("train-ldm: --latents is required (write one with 'repae cache-latents')");
    char *args_json = options_to_json(opts, n);

    latent_cache lc = latent_cache_read(o.latents);
    train_data data;
    train_setup_data(&o, &data);
    if (data.ds.n < lc.n)
        die("train-ldm: '%s' has %d latents but '%s' only %d images", o.latents, lc.n, data.ds.source, data.ds.n);
    data.ds.n = lc.n;
    for (int i = 0; i < lc.n; i++)
        if (data.ds.labels[i] != lc.labels[i])
            die("train-ldm: image %d of '%s' has label %d but latent %d has %d: the cache was made from other "
                "images", i, data.ds.source, data.ds.labels[i], i, lc.labels[i]);

    vit enc;
    float *enc_w = NULL;
    bool have_enc = o.enc_ckpt && o.proj_coeff > 0;
    if (have_enc)
        enc_w = train_load_encoder(o.enc_ckpt, encoder_preprocess_kind_for(o.enc_type), data.ds.channels,
                                   data.ds.height, o.enc_heads, &enc);
    train_check_channels(data.ds.source, data.ds.channels, NULL, NULL, have_enc ? &enc : NULL, o.enc_ckpt);
    if (lc.h != lc.w)
        die("'%s': non-square latents are not supported", o.latents);
    sit_config sc = train_sit_config(&o, lc.C, lc.h, data.ds.num_classes, have_enc ? &enc : NULL);
    irepa_warn_unused(&o.irepa, "train-ldm", have_enc);
    sit_config_check(&sc);
    sit s;
    sit_build(&s, &sc);
    float *sp = param_alloc(&s.table);
    sit_init_weights(&s, sp, (uint64_t)o.seed + 2);
    float bias[256], scale[256];
    if (lc.C > 256)
        die("train-ldm: at most 256 latent channels");
    if (o.latents_stats)
        latents_stats_read(o.latents_stats, lc.C, bias, scale);
    else
        latents_stats_estimate_cache(&lc, bias, scale);
    sit_set_latent_stats(&s, sp, bias, scale);
    vae v;
    float *vw = o.vae_ckpt ? vae_from_file(&v, o.vae_ckpt, "", PARAM_ALLOW_EXTRA) : NULL;

    ldm_config lcfg = ldm_config_default();
    int B = train_local_batch("train-ldm", o.batch_size);
    lcfg.batch = B, lcfg.learning_rate = o.learning_rate;
    lcfg.proj_coeff = have_enc ? o.proj_coeff : 0.0f;
    lcfg.cfg_prob = o.cfg_prob, lcfg.max_grad_norm = o.max_grad_norm, lcfg.ema_decay = o.ema_decay;
    lcfg.path = path_type_parse(o.path_type);
    lcfg.weighting = time_weighting_parse(o.weighting);
    lcfg.seed = (uint64_t)o.seed;
    lcfg.enc_pre = encoder_preprocess_kind_for(o.enc_type);
    lcfg.spatial_norm = irepa_spatial_norm(&o.irepa), lcfg.zscore_alpha = o.irepa.zscore_alpha;
    for (int c = 0; c < 3; c++)
        lcfg.enc_mean[c] = o.enc_mean, lcfg.enc_std[c] = o.enc_std;
    run_dir rd;
    run_dir_open(&rd, "train-ldm", o.output_dir, o.exp_name, true);
    ldm_run r = {.lc = &lc, .s = &s, .sp = sp, .v = o.vae_ckpt ? &v : NULL, .vp = vw, .args_json = args_json,
                 .B = B, .H = data.ds.height, .W = data.ds.width, .lat = (size_t)lc.C * lc.h * lc.w};
    ldm_trainer_init(&r.t, &lcfg, &s, sp, have_enc ? &enc : NULL, enc_w, data.ds.channels, data.ds.height,
                     data.ds.width);
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
    free(enc_w);
    if (o.vae_ckpt)
        vae_free(&v);
    free(vw);
    latent_cache_free(&lc);
    train_data_free(&data);
    run_dir_close(&rd);
    return exit_code;
}
