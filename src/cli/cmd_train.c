/* repae train — end-to-end REPA-E training (spec §6), the main job.
 *
 * Builds the VAE, SiT, representation encoder, discriminator and (optional)
 * LPIPS from flags and weight files, then runs repae_step in a loop with
 * checkpoints, JSON-lines metrics, preview grids, exact resume, a NaN stop
 * and a clean exit on SIGINT/SIGTERM.  Output layout:
 *   <output-dir>/<exp-name>/args.json
 *   <output-dir>/<exp-name>/metrics.jsonl       one line of every logged scalar per step
 *   <output-dir>/<exp-name>/checkpoints/%07d.safetensors
 *   <output-dir>/<exp-name>/samples/%07d.png     preview grids
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/train_setup.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/options.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/preview.h"
#include "train/run_loop.h"

/* What the run loop's callbacks need. */
typedef struct train_run {
    repae_trainer t;
    loader ld;
    train_models *mdl;
    const char *args_json;
    int B, C, H, W;
    uint8_t *images, *grid;
    int32_t *labels32;
    int *labels;
    preview_config pc;
    long long fault_nan_step;
    repae_logs last;
} train_run;

static long long run_step(void *ctx, double *logs)
{
    train_run *r = ctx;
    loader_next(&r->ld, r->images, r->labels32);
    for (int i = 0; i < r->B; i++)
        r->labels[i] = r->labels32[i];
    repae_step(&r->t, r->images, r->labels, NULL, &r->last);
    /* Fault injection for the tests: REPAE_FAULT_NAN_STEP=N poisons step N's
     * SiT loss, so the NaN stop can be tested end to end. */
    if (r->fault_nan_step > 0 && r->t.step == r->fault_nan_step)
        r->last.sit_loss = NAN;
    repae_logs_values(&r->last, logs);
    return r->t.step;
}

static void run_status(void *ctx, const double *logs, char *buf, size_t size)
{
    const repae_logs *l = &((train_run *)ctx)->last;
    snprintf(buf, size, "sit %.4f denoise %.4f proj %.4f vae %.4f d %.4f", l->sit_loss, l->denoising_loss,
             l->proj_loss, l->vae_loss, l->d_loss);
}

static void run_save(void *ctx, const char *path, long long epoch, long long position)
{
    train_run *r = ctx;
    checkpoint_save(&r->t, path, epoch, position, r->args_json);
}

static void run_load(void *ctx, const char *path, long long *epoch, long long *position)
{
    checkpoint_load(&((train_run *)ctx)->t, path, epoch, position);
}

static long long run_current_step(void *ctx) { return ((train_run *)ctx)->t.step; }

static void run_check_same(void *ctx)
{
    train_run *r = ctx;
    dist_check_same(r->mdl->sit_params, r->mdl->sit.table.total, "the SiT parameters");
    dist_check_same(r->t.ema_params, r->mdl->sit.table.total, "the SiT EMA parameters");
    dist_check_same(r->mdl->vae_params, r->mdl->vae.table.total, "the VAE parameters");
    if (r->mdl->disc_params)
        dist_check_same(r->mdl->disc_params, r->mdl->disc.table.total, "the discriminator parameters");
}

static void run_preview(void *ctx, long long step, const char *png, double *extras)
{
    train_run *r = ctx;
    preview_grid(&r->mdl->sit, r->mdl->sit_params, &r->mdl->vae, r->mdl->vae_params, &r->pc, r->H, r->W, r->grid, png);
}

static const char *usage =
    "usage: repae train [options]\n"
    "\n"
    "End-to-end REPA-E training (spec §6.2): each step updates the VAE (with the\n"
    "REPA gradient through the frozen SiT), the discriminator, then the SiT.\n"
    "Defaults are the reference's, except the model sizes and the data, which\n"
    "default to the small Fashion-MNIST configuration.\n"
    "\n"
    "iREPA (arXiv 2512.10794): --projection-layer-type conv --spnorm-method zscore,\n"
    "under iREPA's own flag names; the conv projector also serves the VAE's\n"
    "alignment pass, the normalised targets both passes.  (iREPA's LDM config\n"
    "also raises --proj-coeff to 1.0; set it if you want that too.)";

static repae_config repae_config_from(const train_options *o, const train_data *data, const train_models *mdl)
{
    repae_config rc = repae_config_default();
    rc.batch = train_local_batch("train", o->batch_size);
    rc.learning_rate = o->learning_rate;
    rc.vae_learning_rate = o->vae_learning_rate;
    rc.disc_learning_rate = o->disc_learning_rate;
    rc.proj_coeff = mdl->enc ? o->proj_coeff : 0.0f;
    rc.vae_align_proj_coeff = mdl->enc ? o->vae_align_proj_coeff : 0.0f;
    rc.max_grad_norm = o->max_grad_norm;
    rc.ema_decay = o->ema_decay;
    rc.path = path_type_parse(o->path_type);
    rc.weighting = time_weighting_parse(o->weighting);
    rc.e2e_diffusion_loss = o->e2e_diffusion_loss;
    rc.disc_start = o->disc_start;
    rc.disc_weight = o->disc_weight;
    rc.kl_weight = o->kl_weight;
    rc.lecam_weight = o->lecam_weight;
    rc.perceptual_weight = mdl->lpips_params ? o->perceptual_weight : 0.0f;
    rc.seed = (uint64_t)o->seed;
    rc.enc_pre = encoder_preprocess_kind_for(o->enc_type);
    rc.spatial_norm = irepa_spatial_norm(&o->irepa);
    rc.zscore_alpha = o->irepa.zscore_alpha;
    if (data->ds.channels == 1)
        for (int c = 0; c < 3; c++)
            rc.enc_mean[c] = o->enc_mean, rc.enc_std[c] = o->enc_std;
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_options o;
    option_spec opts[TRAIN_MAX_OPTS];
    int n = train_options_table(&o, opts, TRAIN_KIND_REPAE);
    if (options_parse("train", usage, opts, n, argc, argv) != 1)
        die("train: unexpected argument '%s' (every option starts with --)", argv[1]);
    train_check_flags("train", &o);
    char *args_json = options_to_json(opts, n);

    train_models mdl;
    train_data data;
    train_setup_data(&o, &data);
    train_setup_models(&o, &data, &mdl, TRAIN_KIND_REPAE);
    run_dir rd;
    run_dir_open(&rd, "train", o.output_dir, o.exp_name, true);

    train_run r = {.mdl = &mdl, .args_json = args_json, .C = data.ds.channels, .H = data.ds.height,
                   .W = data.ds.width};
    repae_config rc = repae_config_from(&o, &data, &mdl);
    r.B = rc.batch;
    repae_trainer_init(&r.t, &rc, &mdl.vae, mdl.vae_params, &mdl.sit, mdl.sit_params, mdl.enc ? &mdl.vit : NULL,
                       mdl.vit_params, mdl.disc_params ? &mdl.disc : NULL, mdl.disc_params,
                       mdl.lpips_params ? &mdl.lp : NULL, mdl.lpips_params, r.H, r.W, r.C);
    r.ld = loader_create(&data.ds, r.B, (uint64_t)o.seed, dist_rank(), dist_world());

    printf("repae train: %s\n", rd.dir);
    train_print_summary(&o, &data, &mdl);
    options_print(stdout, opts, n);
    if (!mdl.enc)
        printf("note: no --enc-ckpt: REPA terms are off (proj coefficients 0)\n");
    if (!mdl.lpips_params)
        printf("note: no --lpips-ckpt: the perceptual (LPIPS) term is off\n");
    fflush(stdout);

    size_t img = (size_t)r.C * r.H * r.W;
    r.images = xmalloc((size_t)r.B * img);
    r.labels32 = xmalloc((size_t)r.B * sizeof(int32_t));
    r.labels = xmalloc((size_t)r.B * sizeof(int));
    r.pc = (preview_config){o.preview_images, 50, 4.0f, (uint64_t)o.seed ^ 0x9e3779b97f4a7c15ull};
    r.grid = xmalloc((size_t)r.pc.n_images * img);
    const char *fault = getenv("REPAE_FAULT_NAN_STEP");
    r.fault_nan_step = fault ? atoll(fault) : 0;

    run_loop rl = {.command = "train", .dir = &rd, .data = &r.ld, .max_steps = o.max_train_steps,
                   .checkpoint_every = o.checkpointing_steps, .preview_every = o.sampling_steps,
                   .preview_first = true, .n_logs = REPAE_N_LOGS, .log_names = repae_log_names, .ctx = &r,
                   .step = run_step, .status = run_status, .save = run_save, .load = run_load,
                   .current_step = run_current_step, .preview = run_preview,
                   .check_same = run_check_same};
    int exit_code = run_loop_run(&rl, o.resume_step, args_json);
    if (!run_loop_stop_signal() && exit_code == 0)
        printf("samples: %s/%07lld.png\ncheckpoint: %s/%07lld.safetensors\nmetrics: %s/metrics.jsonl\n", rd.sdir,
               r.t.step, rd.ckdir, r.t.step, rd.dir);
    free(r.images), free(r.labels32), free(r.labels), free(r.grid), free(args_json);
    loader_free(&r.ld);
    repae_trainer_free(&r.t);
    train_models_free(&mdl);
    train_data_free(&data);
    run_dir_close(&rd);
    return exit_code;
}
