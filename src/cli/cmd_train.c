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
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "cli/train_setup.h"
#include "core/error.h"
#include "core/options.h"
#include "core/progress.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/preview.h"

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { stop_requested = sig; }

static const char *usage =
    "usage: repae train [options]\n"
    "\n"
    "End-to-end REPA-E training (spec §6.2): each step updates the VAE (with the\n"
    "REPA gradient through the frozen SiT), the discriminator, then the SiT.\n"
    "Defaults are the reference's, except the model sizes and the data, which\n"
    "default to the small Fashion-MNIST configuration.";

int cmd_train(int argc, char **argv)
{
    train_options o;
    option_spec opts[TRAIN_MAX_OPTS];
    int n = train_options_table(&o, opts, TRAIN_KIND_REPAE);
    options_parse("train", usage, opts, n, argc, argv);
    char *args_json = options_to_json(opts, n);

    train_models mdl;
    train_data data;
    train_setup_data(&o, &data);
    train_setup_models(&o, &data, &mdl, TRAIN_KIND_REPAE);

    run_paths rp;
    run_paths_make(&rp, o.output_dir, o.exp_name);
    const char *dir = rp.dir, *ckdir = rp.ckdir, *sdir = rp.sdir;
    char path[1300];

    repae_config rc = repae_config_default();
    rc.batch = o.batch_size;
    rc.learning_rate = o.learning_rate;
    rc.vae_learning_rate = o.vae_learning_rate;
    rc.disc_learning_rate = o.disc_learning_rate;
    rc.proj_coeff = mdl.enc ? o.proj_coeff : 0.0f;
    rc.vae_align_proj_coeff = mdl.enc ? o.vae_align_proj_coeff : 0.0f;
    rc.max_grad_norm = o.max_grad_norm;
    rc.ema_decay = o.ema_decay;
    rc.path = !strcmp(o.path_type, "cosine") ? SIT_PATH_COSINE : SIT_PATH_LINEAR;
    rc.weighting = !strcmp(o.weighting, "lognormal") ? SIT_WEIGHTING_LOGNORMAL : SIT_WEIGHTING_UNIFORM;
    rc.e2e_diffusion_loss = o.e2e_diffusion_loss;
    rc.disc_start = o.disc_start;
    rc.disc_weight = o.disc_weight;
    rc.kl_weight = o.kl_weight;
    rc.lecam_weight = o.lecam_weight;
    rc.perceptual_weight = mdl.lpips_params ? o.perceptual_weight : 0.0f;
    rc.seed = (uint64_t)o.seed;
    if (data.ds.channels == 1)
        for (int c = 0; c < 3; c++)
            rc.enc_mean[c] = o.enc_mean, rc.enc_std[c] = o.enc_std;

    repae_trainer t;
    repae_trainer_init(&t, &rc, &mdl.vae, &mdl.sit, mdl.sit_params, mdl.enc ? &mdl.vit : NULL,
                       mdl.disc_params ? &mdl.disc : NULL, mdl.disc_params, mdl.lpips_params ? &mdl.lp : NULL,
                       mdl.lpips_params, data.ds.height, data.ds.width, data.ds.channels);
    loader ld = loader_create(&data.ds, o.batch_size, (uint64_t)o.seed, 0, 1);

    if (o.resume_step) {
        resume_checkpoint_path("train", &rp, o.resume_step, path, sizeof path);
        long long epoch;
        int pos;
        checkpoint_load(&t, path, &epoch, &pos);
        loader_seek(&ld, epoch, pos);
        fprintf(stderr, "resumed from '%s' at step %lld\n", path, t.step);
    } else {
        write_args_json(&rp, args_json);
    }

    printf("repae train: %s\n", dir);
    train_print_summary(&o, &data, &mdl);
    options_print(stdout, opts, n);
    if (!mdl.enc)
        printf("note: no --enc-ckpt: REPA terms are off (proj coefficients 0)\n");
    if (!mdl.lpips_params)
        printf("note: no --lpips-ckpt: the perceptual (LPIPS) term is off\n");
    fflush(stdout);

    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *metrics = xfopen(path, o.resume_step ? "a" : "w");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    uint8_t *images = xmalloc((size_t)o.batch_size * data.ds.channels * data.ds.height * data.ds.width);
    int32_t *labels32 = xmalloc((size_t)o.batch_size * sizeof(int32_t));
    int *labels = xmalloc((size_t)o.batch_size * sizeof(int));
    preview_config pc = {o.preview_images, 50, 4.0f, (uint64_t)o.seed ^ 0x9e3779b97f4a7c15ull};
    uint8_t *grid = xmalloc((size_t)pc.n_images * data.ds.channels * data.ds.height * data.ds.width);
    const char *fault = getenv("REPAE_FAULT_NAN_STEP");
    long long fault_nan_step = fault ? atoll(fault) : 0;
    progress pb = progress_start("train", o.max_train_steps, "it");
    int exit_code = 0;
    while (t.step < o.max_train_steps) {
        loader_next(&ld, images, labels32);
        for (int i = 0; i < o.batch_size; i++)
            labels[i] = labels32[i];
        repae_logs logs;
        repae_step(&t, images, labels, NULL, &logs);
        /* Fault injection for the tests: REPAE_FAULT_NAN_STEP=N poisons
         * step N's SiT loss, so the NaN stop can be tested end to end. */
        if (fault_nan_step > 0 && t.step == fault_nan_step)
            logs.sit_loss = NAN;
        double v[REPAE_N_LOGS];
        repae_logs_values(&logs, v);
        fprintf(metrics, "{\"step\": %lld, \"epoch\": %lld", t.step, ld.epoch);
        int bad = -1;
        for (int k = 0; k < REPAE_N_LOGS; k++) {
            fprintf(metrics, ", \"%s\": %.8g", repae_log_names[k], v[k]);
            if (!isfinite(v[k]) && bad < 0)
                bad = k;
        }
        fputs("}\n", metrics);
        fflush(metrics);
        if (bad >= 0) {
            progress_finish(&pb);
            fprintf(stderr,
                    "repae: error: %s is %g at step %lld: training stopped; the last good checkpoint in '%s' is "
                    "intact (try a lower learning rate, or resume with --resume-step -1)\n",
                    repae_log_names[bad], v[bad], t.step, ckdir);
            exit_code = 1;
            break;
        }
        progress_update(&pb, t.step, "sit %.4f denoise %.4f proj %.4f vae %.4f d %.4f", logs.sit_loss,
                        logs.denoising_loss, logs.proj_loss, logs.vae_loss, logs.d_loss);
        bool last = t.step >= o.max_train_steps;
        if ((o.checkpointing_steps > 0 && t.step % o.checkpointing_steps == 0) || last || stop_requested) {
            snprintf(path, sizeof path, "%s/%07lld.safetensors", ckdir, t.step);
            checkpoint_save(&t, path, ld.epoch, ld.position, args_json);
        }
        if (t.step == 1 || (o.sampling_steps > 0 && t.step % o.sampling_steps == 0) || last) {
            snprintf(path, sizeof path, "%s/%07lld.png", sdir, t.step);
            preview_grid(&mdl.sit, mdl.sit_params, &mdl.vae, &pc, data.ds.height, data.ds.width, grid, path);
        }
        if (stop_requested) {
            progress_finish(&pb);
            fprintf(stderr, "repae: stopped by signal %d at step %lld; checkpoint saved in '%s'\n",
                    (int)stop_requested, t.step, ckdir);
            break;
        }
    }
    if (!stop_requested && exit_code == 0) {
        progress_finish(&pb);
        printf("samples: %s/%07lld.png\ncheckpoint: %s/%07lld.safetensors\nmetrics: %s/metrics.jsonl\n", sdir,
               t.step, ckdir, t.step, dir);
    }
    fclose(metrics);
    free(images), free(labels32), free(labels), free(grid), free(args_json);
    loader_free(&ld);
    repae_trainer_free(&t);
    train_models_free(&mdl);
    train_data_free(&data);
    return exit_code;
}
