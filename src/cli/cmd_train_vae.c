/* repae train-vae — pre-train a VAE from scratch with the regularisation
 * loss alone (spec §7: L1 + LPIPS + KL + PatchGAN hinge), the starting point
 * for REPA-E when no pretrained SD-VAE can be had.
 *
 * Same flags as `repae train` where they apply (the option table of
 * cli/train_setup.c, filtered), same models, same loss code.  Output layout:
 *   <output-dir>/<exp-name>/args.json
 *   <output-dir>/<exp-name>/metrics.jsonl      one line per step (+ psnr, ssim on evaluation steps)
 *   <output-dir>/<exp-name>/checkpoints/%07d.safetensors
 *   <output-dir>/<exp-name>/samples/%07d.png   held-out originals above their reconstructions
 *   <output-dir>/<exp-name>/vae.safetensors               at the end: the VAE (+ config)
 *   <output-dir>/<exp-name>/vae-latents-stats.safetensors  latents_scale / latents_bias [1,C,1,1]
 *   <output-dir>/<exp-name>/discriminator.safetensors     (for `repae train --disc-ckpt`)
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
#include "eval/image_metrics.h"
#include "io/image.h"
#include "train/latents_stats.h"
#include "train/run_loop.h"
#include "train/vae_trainer.h"

static const char *usage =
    "usage: repae train-vae [options]\n"
    "\n"
    "Pre-trains a VAE (AutoencoderKL) from scratch with the REPA-E regularisation\n"
    "loss alone (spec §7): L1 + LPIPS (with --lpips-ckpt) + kl-weight·KL +\n"
    "disc-weight·hinge GAN against a PatchGAN kept in train mode; the\n"
    "discriminator is updated with the hinge loss after each VAE update.  AdamW,\n"
    "constant learning rates, per-module clipping, as `repae train`.\n"
    "\n"
    "Every --sampling-steps (and at step 1 and the end) the held-out images\n"
    "(--preview-images of them: the other Fashion-MNIST split, or the last images\n"
    "of a shard, which are then not trained on) are reconstructed through the\n"
    "posterior mean: a PNG grid (originals above reconstructions) and their mean\n"
    "PSNR/SSIM (uint8, range 255) in metrics.jsonl.  At the end the VAE is written\n"
    "as <dir>/vae.safetensors with <dir>/vae-latents-stats.safetensors (per-channel\n"
    "mean and 1/std of posterior samples of up to --stats-images training images),\n"
    "ready for `repae train --vae-ckpt ... --latents-stats ...`.";

/* The flags of `repae train` that mean something here. */
static const char *const vae_flags[] = {
    "--data", "--data-split", "--image-size", "--channels", "--max-images", "--vae", "--vae-ckpt", "--vae-ch",
    "--vae-ch-mult", "--vae-z-channels", "--vae-num-res-blocks", "--vae-norm-groups", "--vae-attn-resolutions",
    "--disc-ckpt", "--disc-ndf", "--disc-layers", "--no-disc", "--disc-start", "--disc-weight", "--lpips-ckpt",
    "--lpips-vgg", "--perceptual-weight", "--kl-weight", "--lecam-weight", "--vae-learning-rate",
    "--disc-learning-rate",
    "--max-grad-norm", "--batch-size", "--max-train-steps", "--checkpointing-steps", "--sampling-steps",
    "--preview-images", "--seed", "--output-dir", "--exp-name", "--resume-step"};

static int vae_options_table(train_options *o, option_spec *opts, int *stats_images, const char **save_dtype)
{
    int n = train_options_subset(o, opts, vae_flags, (int)(sizeof vae_flags / sizeof vae_flags[0]));
    train_option_adjust(opts, n, "--exp-name", "vae-fmnist", NULL);
    train_option_adjust(opts, n, "--preview-images", NULL, "held-out images reconstructed for the grid and PSNR/SSIM");
    train_option_adjust(opts, n, "--sampling-steps", NULL, "reconstruction grid and PSNR every N steps (and at step 1)");
    opts[n++] = (option_spec){"--stats-images", OPT_INT, stats_images, "10000",
                              "training images the final latents statistics are measured on", .min = 1,
                              .max = 1e9};
    opts[n++] = (option_spec){"--save-dtype", OPT_CHOICE, save_dtype, "f32",
                              "dtype of the final vae.safetensors (f16 halves the file; loads as float32)",
                              .choices = "f32|f16"};
    return n;
}

/* The held-out images: the other Fashion-MNIST split, or the tail of a shard
 * (removed from the training set). */
static dataset held_out_images(const train_options *o, train_data *data, int n)
{
    dataset h;
    if (!strcmp(o->data, "fashion-mnist")) {
        return dataset_open(o->data, !strcmp(o->data_split, "train") ? "test" : "train", o->image_size, o->channels,
                            n);
    }
    dataset *d = &data->ds;
    if (d->n < n + o->batch_size)
        die("train-vae: '%s' has %d images: too few to hold out --preview-images %d and still fill a batch of %d",
            d->source, d->n, n, o->batch_size);
    size_t img = (size_t)d->channels * d->height * d->width;
    h = (dataset){.n = n, .channels = d->channels, .height = d->height, .width = d->width,
                  .num_classes = d->num_classes};
    h.images = xmalloc((size_t)n * img);
    h.labels = xmalloc((size_t)n * sizeof(int32_t));
    memcpy(h.images, d->images + (size_t)(d->n - n) * img, (size_t)n * img);
    memcpy(h.labels, d->labels + (d->n - n), (size_t)n * sizeof(int32_t));
    h.source = xstrdup("held-out tail of the shard");
    dataset_truncate(d, d->n - n);
    return h;
}

/* Reconstructs the held-out images, writes the grid (row pairs: 8 originals
 * above their 8 reconstructions) and returns the mean PSNR and SSIM. */
static void evaluate(vae_trainer *t, const dataset *h, uint8_t *recon, uint8_t *grid, const char *png, double *psnr,
                     double *ssim)
{
    int n = h->n, C = h->channels, H = h->height, W = h->width, cols = 8;
    size_t img = (size_t)C * H * W;
    size_t bad = 0;
    for (int i0 = 0; i0 < n; i0 += t->eval_batch) {
        int b = n - i0 < t->eval_batch ? n - i0 : t->eval_batch;
        bad += vae_trainer_reconstruct(t, h->images + (size_t)i0 * img, b, recon + (size_t)i0 * img);
    }
    double sp = 0, ss = 0;
    for (int i = 0; i < n; i++) {
        double p = psnr_u8(h->images + i * img, recon + i * img, img);
        sp += isfinite(p) ? p : 100.0; /* a perfect image counts as 100 dB, not +inf */
        ss += ssim_u8(h->images + i * img, recon + i * img, C, H, W);
    }
    *psnr = sp / n, *ssim = ss / n;
    if (bad) { /* black pixels would be scored as a (bad) reconstruction: log null instead */
        warn("train-vae: %zu of %zu reconstructed values of the held-out images are NaN or infinite (the VAE has "
             "diverged): psnr and ssim are logged as null",
             bad, (size_t)n * img);
        *psnr = *ssim = NAN;
    }
    int rows = (n + cols - 1) / cols, k = 0;
    memset(grid, 0, (size_t)rows * 2 * cols * img);
    for (int r = 0; r < rows; r++)
        for (int which = 0; which < 2; which++)
            for (int c = 0; c < cols; c++, k++) {
                int i = r * cols + c;
                if (i < n)
                    memcpy(grid + (size_t)k * img, (which ? recon : h->images) + (size_t)i * img, img);
            }
    image_grid_png(png, grid, rows * 2 * cols, C, H, W, cols);
}

/* vae.safetensors: the VAE's keys and its config, as `vae_save` writes them,
 * optionally in float16. */
static void save_final_vae(const vae *v, const float *params, const char *path, bool f16, long long step,
                           double psnr)
{
    char json[1024], buf[64];
    st_writer *w = st_writer_new();
    uint16_t *half = param_save_as(w, &v->table, params, NULL, f16);
    st_writer_set_metadata(w, "format", "repae-vae");
    st_writer_set_metadata(w, "config", vae_config_to_json(&v->cfg, json, sizeof json));
    snprintf(buf, sizeof buf, "%lld", step);
    st_writer_set_metadata(w, "step", buf);
    snprintf(buf, sizeof buf, "%.4f", psnr);
    st_writer_set_metadata(w, "held_out_psnr", buf);
    st_writer_set_metadata(w, "trained_by", "repae train-vae");
    st_writer_save(w, path);
    st_writer_free(w);
    free(half);
}

/* What the run loop's callbacks need. */
typedef struct vae_run {
    vae_trainer t;
    loader ld;
    const dataset *held;
    const char *args_json;
    float kl_weight;
    uint8_t *images, *recon, *grid;
    int32_t *labels;
    double psnr, ssim;
    vae_train_logs last;
} vae_run;

static const char *const vae_extra_names[] = {"psnr", "ssim"};

static long long run_step(void *ctx, double *logs)
{
    vae_run *r = ctx;
    loader_next(&r->ld, r->images, r->labels);
    vae_trainer_step(&r->t, r->images, NULL, &r->last);
    vae_train_logs_values(&r->last, logs);
    return r->t.step;
}

static void run_status(void *ctx, const double *logs, char *buf, size_t size)
{
    vae_run *r = ctx;
    const vae_loss_logs *l = &r->last.loss;
    snprintf(buf, size, "rec %.4f kl %.1f gan %.3f d %.4f psnr %.2f", l->reconstruction_loss,
             l->kl_loss / (r->kl_weight > 0 ? r->kl_weight : 1), l->gan_loss, l->d_loss, r->psnr);
}

static void run_save(void *ctx, const char *path, long long epoch, long long position)
{
    vae_run *r = ctx;
    vae_trainer_save(&r->t, path, epoch, position, r->args_json);
}

static void run_load(void *ctx, const char *path, long long *epoch, long long *position)
{
    vae_trainer_load(&((vae_run *)ctx)->t, path, epoch, position);
}

static long long run_current_step(void *ctx) { return ((vae_run *)ctx)->t.step; }

static void run_check_same(void *ctx)
{
    vae_run *r = ctx;
    dist_check_same(r->t.vae_params, r->t.vae->table.total, "the VAE parameters");
    if (r->t.loss.disc)
        dist_check_same(r->t.loss.disc_params, r->t.loss.disc->table.total, "the discriminator parameters");
}

static void run_preview(void *ctx, long long step, const char *png, double *extras)
{
    vae_run *r = ctx;
    evaluate(&r->t, r->held, r->recon, r->grid, png, &r->psnr, &r->ssim);
    extras[0] = r->psnr, extras[1] = r->ssim;
}

/* At the end of a run: vae.safetensors, its latents statistics and the
 * discriminator, and a summary. */
static void write_final_files(const train_options *o, const run_dir *rd, vae_run *r, const train_data *data,
                              const train_models *nets, int stats_images, const char *save_dtype)
{
    const vae *v = r->t.vae;
    if (isnan(r->psnr)) {
        char *png = run_dir_preview(rd, r->t.step);
        evaluate(&r->t, r->held, r->recon, r->grid, png, &r->psnr, &r->ssim);
        free(png);
    }
    char *path = run_dir_file(rd, "vae.safetensors");
    save_final_vae(v, r->t.vae_params, path, !strcmp(save_dtype, "f16"), r->t.step, r->psnr);
    char *stats_path = run_dir_file(rd, "vae-latents-stats.safetensors");
    float bias[256], scale[256];
    latents_stats_estimate_vae(&data->ds, v, r->t.vae_params, stats_images, bias, scale);
    char source[128];
    snprintf(source, sizeof source, "posterior samples of %d training images",
             data->ds.n < stats_images ? data->ds.n : stats_images);
    latents_stats_write(stats_path, bias, scale, v->cfg.z_channels, source);
    if (nets->disc_params) {
        char *dpath = run_dir_file(rd, "discriminator.safetensors");
        st_writer *dw = st_writer_new();
        disc_save(&nets->disc, nets->disc_params, dw, "");
        st_writer_set_metadata(dw, "format", "repae-discriminator");
        st_writer_save(dw, dpath);
        st_writer_free(dw);
        free(dpath);
    }
    printf("held-out reconstruction (%d images, posterior mean): PSNR %.2f dB, SSIM %.4f\n", r->held->n, r->psnr,
           r->ssim);
    printf("latents statistics:");
    for (int c = 0; c < v->cfg.z_channels; c++)
        printf(" [%d] mean %.4f std %.4f", c, bias[c], 1.0 / scale[c]);
    printf("\nvae: %s\nlatents statistics: %s\ncheckpoint: %s/%07lld.safetensors\nmetrics: %s/metrics.jsonl\n",
           path, stats_path, rd->ckdir, r->t.step, rd->dir);
    free(path), free(stats_path);
}

int cmd_train_vae(int argc, char **argv)
{
    train_options o;
    int stats_images;
    const char *save_dtype;
    option_spec opts[TRAIN_MAX_OPTS];
    int n = vae_options_table(&o, opts, &stats_images, &save_dtype);
    if (options_parse("train-vae", usage, opts, n, argc, argv) != 1)
        die("train-vae: unexpected argument '%s' (every option starts with --)", argv[1]);
    char *args_json = options_to_json(opts, n);
    train_check_flags("train-vae", &o);

    train_data data;
    train_setup_data(&o, &data);
    dataset held = held_out_images(&o, &data, o.preview_images);
    if (data.ds.n < o.batch_size)
        die("train-vae: %d training images cannot fill a batch of %d (--max-images / --batch-size)", data.ds.n,
            o.batch_size);
    vae v;
    train_models nets;
    memset(&nets, 0, sizeof nets);
    float *vw = train_build_vae(&o, &data, &v);
    train_check_channels(data.ds.source, data.ds.channels, &v, o.vae_ckpt ? o.vae_ckpt : "from the flags", NULL, NULL);
    train_build_loss_nets(&o, &data, &nets);
    int H = data.ds.height, W = data.ds.width, C = data.ds.channels;

    run_dir rd;
    run_dir_open(&rd, "train-vae", o.output_dir, o.exp_name, true);
    vae_trainer_config tc = vae_trainer_config_default();
    tc.batch = train_local_batch("train-vae", o.batch_size);
    tc.learning_rate = o.vae_learning_rate;
    tc.disc_learning_rate = o.disc_learning_rate;
    tc.max_grad_norm = o.max_grad_norm;
    tc.loss.kl = o.kl_weight;
    tc.loss.disc = o.disc_weight;
    tc.loss.disc_start = o.disc_start;
    tc.loss.lecam = o.lecam_weight;
    tc.loss.perceptual = nets.lpips_params ? o.perceptual_weight : 0.0f;
    tc.seed = (uint64_t)o.seed;
    int eval_batch = held.n < 64 ? held.n : 64;
    vae_run r = {.held = &held, .args_json = args_json, .kl_weight = o.kl_weight, .psnr = NAN, .ssim = NAN};
    vae_trainer_init(&r.t, &tc, &v, vw, nets.disc_params ? &nets.disc : NULL, nets.disc_params,
                     nets.lpips_params ? &nets.lp : NULL, nets.lpips_params, H, W, C, eval_batch);
    r.ld = loader_create(&data.ds, tc.batch, (uint64_t)o.seed, dist_rank(), dist_world());

    int h, w;
    vae_latent_size(&v, H, W, &h, &w);
    printf("repae train-vae: %s\n", rd.dir);
    printf("data: %s, %d images %dx%dx%d; held out: %s, %d images\n", data.ds.source, data.ds.n, C, H, W,
           held.source, held.n);
    printf("VAE: %.3f M parameters, latent %dx%dx%d\n", param_count(&v.table, PARAM_TRAINABLE) / 1e6,
           v.cfg.z_channels, h, w);
    if (nets.disc_params)
        printf("discriminator: %.3f M parameters%s\n", param_count(&nets.disc.table, PARAM_TRAINABLE) / 1e6,
               o.disc_ckpt ? "" : " (random init)");
    options_print(stdout, opts, n);
    if (!nets.lpips_params)
        printf("note: no --lpips-ckpt: the perceptual (LPIPS) term is off\n");
    fflush(stdout);

    size_t img = (size_t)C * H * W;
    r.images = xmalloc((size_t)tc.batch * img);
    r.labels = xmalloc((size_t)tc.batch * sizeof(int32_t));
    r.recon = xmalloc((size_t)held.n * img);
    r.grid = xmalloc((size_t)((held.n + 7) / 8) * 16 * img);
    run_loop rl = {.command = "train-vae", .dir = &rd, .data = &r.ld, .max_steps = o.max_train_steps,
                   .checkpoint_every = o.checkpointing_steps, .preview_every = o.sampling_steps,
                   .preview_first = true, .n_logs = VAE_TRAIN_N_LOGS, .log_names = vae_train_log_names,
                   .n_extras = 2, .extra_names = vae_extra_names, .ctx = &r, .step = run_step, .status = run_status,
                   .save = run_save, .load = run_load, .current_step = run_current_step, .preview = run_preview,
                   .check_same = run_check_same};
    int exit_code = run_loop_run(&rl, o.resume_step, args_json);
    if (!run_loop_stop_signal() && exit_code == 0 && dist_rank() == 0)
        write_final_files(&o, &rd, &r, &data, &nets, stats_images, save_dtype);
    free(r.images), free(r.labels), free(r.recon), free(r.grid), free(args_json);
    loader_free(&r.ld);
    vae_trainer_free(&r.t);
    vae_free(&v);
    free(vw);
    if (nets.disc_params)
        disc_free(&nets.disc), free(nets.disc_params);
    if (nets.lpips_params)
        lpips_free(&nets.lp), free(nets.lpips_params);
    dataset_free(&held);
    train_data_free(&data);
    run_dir_close(&rd);
    return exit_code;
}
