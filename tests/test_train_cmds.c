/* The training side-commands: `repae train-vae`, `repae train-encoder`,
 * `repae export-vae` (src/cli/cmd_*.c), and the VAE-only trainer under them.
 *
 *  - library: a vae_trainer step updates the VAE and the discriminator bit
 *    for bit as the REPA-E step does without an encoder (both run
 *    train/vae_loss.c; same posterior-noise stream), over steps with and
 *    without the GAN term;
 *  - train-vae: a few steps on 64 images with tiny models: checkpoints,
 *    metrics (with psnr/ssim on evaluation steps), reconstruction grids, the
 *    final vae.safetensors (loads, with its config), latents statistics
 *    [1,C,1,1] equal to latents_stats_estimate_vae of the final VAE, the
 *    discriminator; resume from a checkpoint is bit-identical to a straight
 *    run (metrics lines and final VAE bytes); SIGTERM saves a checkpoint and
 *    exits 0; a NaN stops with status 1 and writes no checkpoint; bad flags;
 *  - train-encoder: encoder.safetensors has DINOv2 keys and no head, its
 *    config and test accuracy in metadata, and `repae train --enc-ckpt`
 *    accepts it (16 encoder tokens = 16 SiT tokens); bad flags;
 *  - export-vae: from a `repae train` checkpoint, NAME.safetensors equals the
 *    checkpoint's vae.* (GroupNorm groups recovered from its args) and the
 *    statistics are ema.bn.running_var^(-1/2) / running_mean as [1,C,1,1];
 *    --format diffusers writes the same VAE as a diffusers folder, which
 *    `repae train --vae-ckpt` starts from; wrong inputs give clear errors.
 *
 * The commands run as $BUILD/repae (default build/repae), from the
 * repository root, in a mkdtemp directory removed at the end, with
 * OMP_NUM_THREADS=1 unless the environment sets it: these models are tiny,
 * and on a busy machine spinning OpenMP teams only add minutes (the harness
 * kills a command after 30 s).
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/dataset.h"
#include "io/image.h"
#include "models/vit.h"
#include "test.h"
#include "train/repae_step.h"
#include "train/latents_stats.h"
#include "train/vae_trainer.h"

static const char *tmp_dir; /* test_tmp_dir(): removed at exit */
#define tmp_path test_tmp_path
static char repae_bin[256];

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int have_repae(void)
{
    const char *b = getenv("BUILD");
    snprintf(repae_bin, sizeof repae_bin, "%s/repae", b && *b ? b : "build");
    if (access(repae_bin, X_OK) != 0) {
        CHECK(0, "%s not found or not executable: run the tests from the repository root after building it "
                 "(`make %s`)",
              repae_bin, repae_bin);
        return 0;
    }
    return 1;
}

/* Runs `repae <args>`; checks status 0 and returns it. */
static const char *omp_prefix(void) { return getenv("OMP_NUM_THREADS") ? "" : "OMP_NUM_THREADS=1 "; }

static int repae_ok(const char *what, const char *args, char *out, size_t out_size)
{
    char cmd[4096], err[8192];
    snprintf(cmd, sizeof cmd, "%s'%s' %s", omp_prefix(), repae_bin, args);
    int rc = run_command(cmd, out, out_size, err, sizeof err);
    CHECK(rc == 0, "%s: `%s` exited %d; stderr:\n%s", what, cmd, rc, err);
    return rc;
}

static void repae_fails(const char *args, const char *expected)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s'%s' %s", omp_prefix(), repae_bin, args);
    expect_command_fails(cmd, expected);
}

/* Checkpoint files (*.safetensors) in a directory. */
static int count_checkpoints(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".safetensors") != NULL && !strstr(e->d_name, ".tmp");
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    size_t n;
    if (!file_exists(path))
        return NULL;
    return read_file_all(path, &n);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Tiny models for every command: 32×32 Fashion-MNIST, 64 images. */
#define DATA "--max-images 64 --batch-size 8 --seed 3"
#define VAE_FLAGS "--vae-ch 8 --vae-norm-groups 4 --vae-ch-mult 1,2,2"
#define DISC_FLAGS "--disc-ndf 8 --disc-layers 2"
#define VAE_RUN DATA " " VAE_FLAGS " " DISC_FLAGS " --preview-images 16 --stats-images 64 --output-dir '%s'"

/* ---- the trainer against the REPA-E step ----------------------------------------- */

static void fill_images(uint8_t *img, size_t n, uint64_t seed)
{
    rng r = rng_new(seed, 1);
    for (size_t i = 0; i < n; i++)
        img[i] = (uint8_t)rng_below(&r, 256);
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_vae_trainer_matches_repae_step_without_encoder(void)
{
    enum { B = 4, H = 16, C = 3, STEPS = 3 };
    vae_config vc = {.ch = 8, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4, .n_attn = 0,
                     .resolution = 16, .in_channels = C, .out_ch = C, .double_z = 1, .norm_groups = 4};
    vae va, vb;
    vae_build(&va, &vc);
    vae_build(&vb, &vc);
    float *vpa = param_alloc(&va.table), *vpb = param_alloc(&vb.table);
    vae_init_weights(&va, vpa, 5);
    memcpy(vpb, vpa, va.table.total * sizeof(float));
    discriminator d;
    disc_build(&d, &(disc_config){C, 8, 2});
    float *dpa = param_alloc(&d.table), *dpb = param_alloc(&d.table);
    disc_init_weights(&d, dpa, 6);
    memcpy(dpb, dpa, d.table.total * sizeof(float));
    lpips lp;
    lpips_build(&lp, 16);
    float *lpp = param_alloc(&lp.table);
    lpips_init_weights(&lp, lpp, 7); /* a random VGG, heads 1/C */
    sit s;
    sit_config sc = sit_config_default();
    sc.depth = 1, sc.hidden = 16, sc.heads = 2, sc.patch = 2, sc.in_channels = 4, sc.input_size = 8;
    sc.num_classes = 10, sc.n_encoders = 0, sc.encoder_depth = 1, sc.projector_dim = 8;
    sit_build(&s, &sc);
    float *sp = param_alloc(&s.table);
    sit_init_weights(&s, sp, 8);

    repae_config rc = repae_config_default();
    rc.batch = B, rc.proj_coeff = rc.vae_align_proj_coeff = 0;
    rc.vae_learning_rate = rc.disc_learning_rate = 1e-3f;
    rc.disc_start = 1; /* step 0 without the GAN term, then with it */
    rc.seed = 11;
    repae_trainer rt;
    repae_trainer_init(&rt, &rc, &va, vpa, &s, sp, NULL, NULL, &d, dpa, &lp, lpp, H, H, C);

    vae_trainer_config tc = vae_trainer_config_default();
    tc.batch = B, tc.learning_rate = tc.disc_learning_rate = 1e-3f;
    tc.loss.disc_start = 1;
    tc.seed = 11;
    vae_trainer vt;
    vae_trainer_init(&vt, &tc, &vb, vpb, &d, dpb, &lp, lpp, H, H, C, 4);

    uint8_t images[B * C * H * H];
    int labels[B] = {1, 2, 3, 4};
    for (int step = 0; step < STEPS; step++) {
        fill_images(images, sizeof images, 100 + step);
        repae_logs rl;
        vae_train_logs vl;
        repae_step(&rt, images, labels, NULL, &rl);
        vae_trainer_step(&vt, images, NULL, &vl);
        CHECK(rl.vae_loss == vl.vae_loss && rl.reconstruction_loss == vl.loss.reconstruction_loss &&
                  rl.perceptual_loss == vl.loss.perceptual_loss && rl.kl_loss == vl.loss.kl_loss &&
                  rl.gan_loss == vl.loss.gan_loss && rl.weighted_gan_loss == vl.loss.weighted_gan_loss &&
                  rl.grad_norm_vae == vl.grad_norm_vae && rl.d_loss == vl.loss.d_loss &&
                  rl.grad_norm_disc == vl.loss.grad_norm_disc && rl.logits_real == vl.loss.logits_real &&
                  rl.logits_fake == vl.loss.logits_fake,
              "step %d: logs differ: vae_loss %.9g vs %.9g, d_loss %.9g vs %.9g, grad_norm_vae %.9g vs %.9g", step,
              rl.vae_loss, vl.vae_loss, rl.d_loss, vl.loss.d_loss, rl.grad_norm_vae, vl.grad_norm_vae);
        CHECK(vl.loss.discriminator_factor == (step >= 1 ? 1.0 : 0.0), "step %d: discriminator_factor %g", step,
              vl.loss.discriminator_factor);
        CHECK(rl.perceptual_loss > 0 && vl.loss.gan_loss != 0, "step %d: LPIPS (%g) and GAN (%g) terms should be live",
              step, rl.perceptual_loss, vl.loss.gan_loss);
    }
    CHECK(same_bits(vpa, vpb, va.table.total), "VAE parameters differ after %d steps", STEPS);
    CHECK(same_bits(dpa, dpb, d.table.total), "discriminator parameters (and BN statistics) differ");
    CHECK(same_bits(rt.opt_vae.m, vt.opt_vae.m, va.table.total) && rt.opt_vae.step == vt.opt_vae.step,
          "VAE AdamW moments differ");

    /* Evaluation: posterior mean, decoded; deterministic. */
    uint8_t r1[B * C * H * H], r2[B * C * H * H];
    CHECK(vae_trainer_reconstruct(&vt, images, B, r1) == 0 && vae_trainer_reconstruct(&vt, images, B, r2) == 0,
          "finite reconstructions");
    CHECK(!memcmp(r1, r2, sizeof r1), "reconstructions of the same images differ");
    /* A diverged decoder (conv_out's bias NaN in channel 0): those values are counted, drawn 0. */
    const param_entry *ob = param_find(&va.table, "decoder.conv_out.bias");
    float keep = vpb[ob->offset];
    vpb[ob->offset] = NAN;
    size_t bad = vae_trainer_reconstruct(&vt, images, B, r2);
    CHECK(bad == (size_t)B * H * H && r2[0] == 0, "a NaN channel: %zu non-finite values reported, want %d", bad,
          B * H * H);
    vpb[ob->offset] = keep;
    /* The plan is the larger pass's peak exactly, plus its 64 KiB margin. */
    CHECK(vt.ar.high_water + (1u << 16) == vt.ar.capacity, "arena plan %zu bytes for a peak of %zu", vt.ar.capacity,
          vt.ar.high_water);

    repae_trainer_free(&rt);
    vae_trainer_free(&vt);
    vae_free(&va), vae_free(&vb);
    free(vpa), free(vpb);
    disc_free(&d), lpips_free(&lp), sit_free(&s);
    free(dpa), free(dpb), free(lpp), free(sp);
}

/* The arena when evaluation is the larger pass (a batch of 2, evaluation
 * batches of 16): planned to its peak exactly; and the trainer's refusals. */
static void vae_trainer_misuse(void *ctx)
{
    const int *which = ctx;
    int in = which[0], out = which[1], C = which[2], with_lpips = which[3];
    vae_config vc = {.ch = 8, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4, .n_attn = 0,
                     .resolution = 16, .in_channels = in, .out_ch = out, .double_z = 1, .norm_groups = 4};
    vae v;
    vae_build(&v, &vc);
    float *vp = param_alloc(&v.table);
    lpips lp;
    lpips_build(&lp, 16);
    vae_trainer_config tc = vae_trainer_config_default();
    tc.batch = 2;
    vae_trainer t;
    vae_trainer_init(&t, &tc, &v, vp, NULL, NULL, with_lpips ? &lp : NULL, NULL, 16, 16, C, 4);
}

static void test_vae_trainer_eval_plan_and_refusals(void)
{
    enum { B = 2, E = 16, H = 16, C = 3 };
    vae_config vc = {.ch = 8, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4, .n_attn = 0,
                     .resolution = 16, .in_channels = C, .out_ch = C, .double_z = 1, .norm_groups = 4};
    vae v;
    vae_build(&v, &vc);
    float *vp = param_alloc(&v.table);
    vae_init_weights(&v, vp, 5);
    vae_trainer_config tc = vae_trainer_config_default();
    tc.batch = B, tc.loss.perceptual = 0, tc.loss.disc = 0;
    vae_trainer t;
    vae_trainer_init(&t, &tc, &v, vp, NULL, NULL, NULL, NULL, H, H, C, E);
    uint8_t images[E * C * H * H], recon[E * C * H * H];
    fill_images(images, sizeof images, 7);
    vae_train_logs logs;
    vae_trainer_step(&t, images, NULL, &logs);
    size_t after_step = t.ar.high_water;
    CHECK(vae_trainer_reconstruct(&t, images, E, recon) == 0, "finite reconstructions");
    CHECK(t.ar.high_water > after_step && t.ar.high_water + (1u << 16) == t.ar.capacity,
          "evaluation the larger pass: planned %zu bytes for a peak of %zu (the step's %zu)", t.ar.capacity,
          t.ar.high_water, after_step);
    /* A reconstruction is decode(posterior mean of encode(u / 127.5 − 1)) in the reference's uint8 rule. */
    {
        const size_t n_img = (size_t)E * C * H * H, n_lat = (size_t)E * 4 * t.h * t.w;
        float *x = xmalloc(n_img * sizeof(float)), *mean = xmalloc(n_lat * sizeof(float));
        float *dec = xmalloc(n_img * sizeof(float));
        uint8_t want[E * C * H * H];
        for (size_t i = 0; i < n_img; i++)
            x[i] = images[i] / 127.5f - 1.0f;
        arena ar = arena_create(t.ar.capacity);
        vae_encode(&v, vp, x, mean, NULL, NULL, E, H, H, &ar);
        arena_reset(&ar, 0);
        vae_decode(&v, vp, mean, dec, E, t.h, t.w, &ar);
        image_from_model_range(want, dec, n_img);
        CHECK(!memcmp(recon, want, sizeof want), "the reconstruction is not decode(mean(encode(x))) in uint8");
        arena_free(&ar);
        free(x), free(mean), free(dec);
    }
    vae_trainer_free(&t);
    vae_free(&v);
    free(vp);
    const int cases[3][4] = {{3, 3, 1, 0}, {3, 1, 3, 0}, {2, 2, 2, 1}};
    const char *want[3] = {"train-vae: the VAE takes 3-channel images and returns 3-channel ones; the data has 1",
                           "train-vae: the VAE takes 3-channel images and returns 1-channel ones; the data has 3",
                           "train-vae: LPIPS needs 1- or 3-channel images"};
    for (int i = 0; i < 3; i++)
        expect_die(want[i], vae_trainer_misuse, (void *)cases[i], want[i]);
}

/* ---- train-vae --------------------------------------------------------------------- */

static void test_train_vae_writes_everything(void)
{
    if (!have_repae())
        return;
    char args[2048], out[16384], path[600];
    snprintf(args, sizeof args,
             "train-vae " VAE_RUN " --exp-name full --max-train-steps 4 --checkpointing-steps 2 --sampling-steps 2",
             tmp_dir);
    if (repae_ok("train-vae", args, out, sizeof out))
        return;
    CHECK(strstr(out, "PSNR") && strstr(out, "held-out reconstruction"), "no PSNR report in the output:\n%s", out);
    const char *want[] = {"full/args.json", "full/metrics.jsonl", "full/checkpoints/0000002.safetensors",
                          "full/checkpoints/0000004.safetensors", "full/samples/0000001.png",
                          "full/samples/0000002.png", "full/samples/0000004.png", "full/vae.safetensors",
                          "full/vae-latents-stats.safetensors", "full/discriminator.safetensors"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(file_exists(tmp_path(want[i])), "train-vae did not write %s", want[i]);
    char *m = slurp(tmp_path("full/metrics.jsonl"));
    CHECK(m && count_lines(m) == 4, "metrics.jsonl should have 4 lines");
    const char *keys[] = {"\"reconstruction_loss\"", "\"perceptual_loss\"", "\"kl_loss\"", "\"gan_loss\"",
                          "\"weighted_gan_loss\"", "\"d_loss\"", "\"logits_real\"", "\"logits_fake\"",
                          "\"grad_norm_vae\"", "\"grad_norm_disc\"", "\"psnr\"", "\"ssim\""};
    for (size_t i = 0; m && i < sizeof keys / sizeof keys[0]; i++)
        CHECK(strstr(m, keys[i]) != NULL, "metrics.jsonl lacks %s", keys[i]);
    free(m);

    /* The final VAE loads with its configuration; its statistics are those
     * of its own posterior samples. */
    snprintf(path, sizeof path, "%s", tmp_path("full/vae.safetensors"));
    vae v;
    float *vw = vae_from_file(&v, path, "", PARAM_STRICT);
    CHECK(v.cfg.ch == 8 && v.cfg.norm_groups == 4 && v.cfg.n_levels == 3 && v.cfg.in_channels == 1 &&
              v.cfg.z_channels == 4,
          "vae.safetensors config: ch %d groups %d levels %d in %d z %d", v.cfg.ch, v.cfg.norm_groups,
          v.cfg.n_levels, v.cfg.in_channels, v.cfg.z_channels);
    safetensors *st = safetensors_open(tmp_path("full/vae-latents-stats.safetensors"));
    float scale[4], bias[4], want_s[4], want_b[4];
    int64_t shape[4] = {1, 4, 1, 1};
    safetensors_load_f32(st, "latents_scale", 4, shape, scale);
    safetensors_load_f32(st, "latents_bias", 4, shape, bias);
    safetensors_close(st);
    dataset ds = dataset_fashion_mnist(FASHION_MNIST_DIR, "train", 32, 1);
    dataset_truncate(&ds, 64);
    latents_stats_estimate_vae(&ds, &v, vw, 64, want_b, want_s);
    CHECK(same_bits(scale, want_s, 4) && same_bits(bias, want_b, 4), "latents statistics differ from the VAE's");
    for (int c = 0; c < 4; c++)
        CHECK(scale[c] > 0 && isfinite(scale[c]) && isfinite(bias[c]), "scale[%d] %g bias %g", c, scale[c], bias[c]);
    dataset_free(&ds);
    vae_free(&v);
    free(vw);

    discriminator d;
    disc_build(&d, &(disc_config){1, 8, 2});
    float *dp = param_alloc(&d.table);
    st = safetensors_open(tmp_path("full/discriminator.safetensors"));
    disc_load(&d, dp, st, "", PARAM_STRICT); /* what `repae train --disc-ckpt` does */
    safetensors_close(st);
    disc_free(&d);
    free(dp);
}

static void test_train_vae_resume_is_exact(void)
{
    if (!have_repae())
        return;
    char args[2048];
    /* 32 images in batches of 8: 6 steps cross an epoch boundary. */
    const char *common = " --max-images 32 --checkpointing-steps 3 --sampling-steps 3 --max-train-steps 6";
    snprintf(args, sizeof args, "train-vae " VAE_RUN " --exp-name straight%s", tmp_dir, common);
    if (repae_ok("straight run", args, NULL, 0))
        return;
    snprintf(args, sizeof args, "train-vae " VAE_RUN " --exp-name resumed --max-images 32 --checkpointing-steps 3 "
             "--sampling-steps 3 --max-train-steps 3", tmp_dir);
    repae_ok("first half", args, NULL, 0);
    snprintf(args, sizeof args, "train-vae " VAE_RUN " --exp-name resumed%s --resume-step -1", tmp_dir, common);
    char out[16384];
    repae_ok("resumed run", args, out, sizeof out);
    char *a = slurp(tmp_path("straight/metrics.jsonl")), *b = slurp(tmp_path("resumed/metrics.jsonl"));
    CHECK(a && b && count_lines(a) == 6 && !strcmp(a, b),
          "metrics of the resumed run (6 steps over two epochs) differ from the straight run:\n%s\nvs\n%s", a, b);
    free(a), free(b);
    size_t na, nb;
    a = read_file_all(tmp_path("straight/vae.safetensors"), &na);
    b = read_file_all(tmp_path("resumed/vae.safetensors"), &nb);
    CHECK(na == nb && !memcmp(a, b, na), "final VAE files differ");
    free(a), free(b);
    /* Resuming with another model size names the tensor and both shapes. */
    snprintf(args, sizeof args,
             "train-vae " DATA " --vae-ch 16 --vae-norm-groups 4 --vae-ch-mult 1,2,2 " DISC_FLAGS
             " --output-dir '%s' --exp-name resumed --resume-step 3",
             tmp_dir);
    repae_fails(args, "vae.encoder.conv_in.weight");
}

static void test_train_vae_sigterm_saves_a_checkpoint(void)
{
    if (!have_repae())
        return;
    char cmd[4096], err[8192];
    snprintf(cmd, sizeof cmd,
             "%s'%s' train-vae " VAE_RUN " --exp-name sig --max-train-steps 1000000 --checkpointing-steps 0 "
             ">/dev/null & pid=$!; i=0; while [ ! -s '%s/sig/metrics.jsonl' ] && [ $i -lt 600 ]; do sleep 0.05; "
             "i=$((i+1)); done; kill -TERM $pid; wait $pid",
             omp_prefix(), repae_bin, tmp_dir, tmp_dir);
    int rc = run_command(cmd, NULL, 0, err, sizeof err);
    CHECK(rc == 0 && strstr(err, "stopped by signal 15"), "SIGTERM: status %d, stderr:\n%s", rc, err);
    CHECK(count_checkpoints(tmp_path("sig/checkpoints")) == 1, "no checkpoint after SIGTERM");
}

static void test_train_vae_nan_stops_without_a_checkpoint(void)
{
    if (!have_repae())
        return;
    /* A VAE whose weights are finite (NaN weights are refused at load) but
     * overflow: conv_in's output is ±Inf, GroupNorm's Inf − Inf is NaN, and
     * the first loss is NaN. */
    vae_config vc;
    vae_preset("f8d4", &vc);
    vc.ch = 8, vc.norm_groups = 4, vc.n_levels = 2, vc.ch_mult[0] = 1, vc.ch_mult[1] = 2, vc.n_attn = 0;
    vc.in_channels = vc.out_ch = 1, vc.resolution = 32;
    vae v;
    vae_build(&v, &vc);
    float *vw = param_alloc(&v.table);
    vae_init_weights(&v, vw, 1);
    size_t w0 = param_find(&v.table, "encoder.conv_in.weight")->offset;
    for (int k = 0; k < 9; k++)
        vw[w0 + k] = 3e38f;
    char nan_path[600];
    snprintf(nan_path, sizeof nan_path, "%s", tmp_path("nan-vae.safetensors"));
    vae_save_file(&v, vw, nan_path, "");
    vae_free(&v);
    free(vw);
    char args[2048];
    snprintf(args, sizeof args,
             "train-vae " DATA " " DISC_FLAGS " --vae-ckpt '%s' --preview-images 8 --output-dir '%s' --exp-name nan "
             "--max-train-steps 3 --checkpointing-steps 1",
             nan_path, tmp_dir);
    repae_fails(args, "training stopped");
    CHECK(count_checkpoints(tmp_path("nan/checkpoints")) == 0, "a NaN step wrote a checkpoint");
    CHECK(!file_exists(tmp_path("nan/vae.safetensors")), "a NaN run wrote vae.safetensors");
}

/* On a shard (not Fashion-MNIST, whose other split is held out) the
 * held-out images are the shard's last --preview-images, taken out of the
 * training set: the grid's first row is those images, byte for byte.  A
 * shard too small for both is refused. */
static void test_train_vae_on_a_shard_holds_out_its_tail(void)
{
    if (!have_repae())
        return;
    char args[2048], out[16384], shard[600];
    snprintf(shard, sizeof shard, "%s", tmp_path("tail.shard"));
    snprintf(args, sizeof args, "prepare --data fashion-mnist --max-images 24 --output '%s'", shard);
    if (repae_ok("prepare", args, out, sizeof out))
        return;
    snprintf(args, sizeof args,
             "train-vae --data '%s' --batch-size 8 " VAE_FLAGS " " DISC_FLAGS " --preview-images 8 --stats-images 8 "
             "--max-train-steps 1 --checkpointing-steps 1 --output-dir '%s' --exp-name tail",
             shard, tmp_dir);
    if (repae_ok("train-vae on a shard", args, out, sizeof out))
        return;
    CHECK(strstr(out, "16 images 1x32x32; held out: held-out tail of the shard, 8 images") != NULL,
          "the split of a 24-image shard:\n%s", out);
    dataset d = dataset_read_shard(shard);
    image grid = image_read(tmp_path("tail/samples/0000001.png"), 0);
    const int H = 32, pad = 2;
    CHECK(grid.channels == 1 && grid.width == 8 * (H + pad) + pad, "grid %dx%dx%d", grid.channels, grid.height,
          grid.width);
    int bad = 0;
    if (grid.channels == 1 && grid.width == 8 * (H + pad) + pad && d.n == 24)
        for (int i = 0; i < 8; i++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < H; x++)
                    bad += grid.pixels[(size_t)(pad + y) * grid.width + pad + i * (H + pad) + x] !=
                           d.images[((size_t)(16 + i) * H + y) * H + x];
    CHECK(bad == 0, "the grid's first row is not the shard's last 8 images: %d pixels differ", bad);
    image_free(&grid);
    dataset_free(&d);
    snprintf(args, sizeof args,
             "train-vae --data '%s' --batch-size 8 " VAE_FLAGS " --no-disc --preview-images 17 --output-dir '%s' "
             "--exp-name small", shard, tmp_dir);
    repae_fails(args, "has 24 images: too few to hold out --preview-images 17 and still fill a batch of 8");
}

static void test_train_vae_bad_flags(void)
{
    if (!have_repae())
        return;
    char args[2048];
    repae_fails("train-vae --sit-depth 2", "unknown option '--sit-depth'");
    repae_fails("train-vae --vae-ch-mult 1,x", "--vae-ch-mult: '1,x' is not a comma-separated list");
    repae_fails("train-vae --batch-size 0", "--batch-size");
    repae_fails("train-vae --max-images 4 --batch-size 8", "cannot fill a batch of 8");
    repae_fails("train-vae --data /nonexistent/shard.bin", "/nonexistent/shard.bin");
    repae_fails("train-vae --no-disc --disc-ckpt d.safetensors", "--disc-ckpt and --no-disc");
    snprintf(args, sizeof args, "train-vae " VAE_RUN " --exp-name none --resume-step -1", tmp_dir);
    repae_fails(args, "no checkpoint in");
    snprintf(args, sizeof args, "train-vae " VAE_RUN " --exp-name none --resume-step 7", tmp_dir);
    repae_fails(args, "0000007.safetensors");
    char out[8192];
    snprintf(args, sizeof args, "train-vae --help");
    repae_ok("train-vae --help", args, out, sizeof out);
    CHECK(strstr(out, "usage: repae train-vae") && strstr(out, "--kl-weight") && !strstr(out, "--sit-depth"),
          "train-vae --help:\n%s", out);
}

/* ---- train-encoder ----------------------------------------------------------------- */

static void test_train_encoder_and_use_it(void)
{
    if (!have_repae())
        return;
    char args[2048], out[16384];
    snprintf(args, sizeof args,
             "train-encoder --max-images 64 --max-eval-images 40 --batch-size 16 --eval-batch 16 --embed-dim 24 "
             "--heads 2 --depth 2 --epochs 2 --warmup-steps 2 --hflip --output-dir '%s' --exp-name enc",
             tmp_dir);
    if (repae_ok("train-encoder", args, out, sizeof out))
        return;
    CHECK(strstr(out, "test accuracy:") != NULL, "no test accuracy in the output:\n%s", out);
    CHECK(strstr(out, "--enc-heads 2") != NULL, "no note about --enc-heads for a width without a default:\n%s", out);
    char *m = slurp(tmp_path("enc/metrics.jsonl"));
    CHECK(m && count_lines(m) == 8, "metrics: 2 epochs of 4 steps expected");
    CHECK(m && strstr(m, "\"test_accuracy\""), "metrics lack test_accuracy");
    free(m);
    const char *path = tmp_path("enc/encoder.safetensors");
    safetensors *st = safetensors_open(path);
    CHECK(!safetensors_find(st, "head.weight") && !safetensors_find(st, "head.bias"), "the head was saved");
    CHECK(safetensors_meta(st, "config") && safetensors_meta(st, "test_accuracy"), "metadata lacks config/accuracy");
    vit e;
    free(vit_from_checkpoint(&e, st, "", 0, 2, PARAM_STRICT));
    CHECK(e.cfg.patch == 8 && e.cfg.embed_dim == 24 && e.cfg.depth == 2 && e.cfg.in_chans == 1 && e.npatch == 16 &&
              e.cfg.layerscale && e.cfg.num_classes == 0,
          "encoder config: patch %d D %d depth %d in %d tokens %d", e.cfg.patch, e.cfg.embed_dim, e.cfg.depth,
          e.cfg.in_chans, e.npatch);
    vit_free(&e);
    safetensors_close(st);

    /* `repae train` takes it as the REPA target: 16 encoder tokens for 16
     * SiT tokens (32 px, VAE 8×8 latent, SiT patch 2). */
    snprintf(args, sizeof args,
             "train " DATA " " VAE_FLAGS " --no-disc --sit-depth 2 --sit-hidden 32 --sit-heads 2 --projector-dim 16 "
             "--encoder-depth 1 --enc-ckpt '%s' --enc-heads 2 --max-train-steps 1 --preview-images 4 "
             "--output-dir '%s' --exp-name repae-with-enc",
             path, tmp_dir);
    if (repae_ok("repae train --enc-ckpt <trained encoder>", args, NULL, 0) == 0) {
        char *mm = slurp(tmp_path("repae-with-enc/metrics.jsonl"));
        CHECK(mm && strstr(mm, "\"proj_loss\"") && !strstr(mm, "\"proj_loss\": 0,"),
              "repae train with the encoder: REPA loss not live:\n%s", mm);
        free(mm);
    }

    repae_fails("train-encoder --patch 5", "must be a multiple of the patch size");
    repae_fails("train-encoder --embed-dim 32 --heads 5", "divisible by the head count");
    repae_fails("train-encoder --img-size 16", "1-channel images are not resized");
    repae_fails("train-encoder --max-images 8 --batch-size 16", "cannot fill a batch of 16");
    repae_fails("train-encoder --eval-data /nonexistent/test.bin", "/nonexistent/test.bin");
    repae_fails("train-encoder --depth 0", "--depth");
    char hout[8192];
    repae_ok("train-encoder --help", "train-encoder --help", hout, sizeof hout);
    CHECK(strstr(hout, "--patch 8 (4x4 = 16 tokens)") != NULL, "--help should explain the token grid:\n%s", hout);
}

/* ---- export-vae -------------------------------------------------------------------- */

static void test_export_vae(void)
{
    if (!have_repae())
        return;
    char args[2048], ckpt[600], name[600], path[700];
    snprintf(args, sizeof args,
             "train " DATA " " VAE_FLAGS " " DISC_FLAGS " --sit-depth 1 --sit-hidden 32 --sit-heads 2 "
             "--projector-dim 16 --max-train-steps 2 --preview-images 4 --output-dir '%s' --exp-name e2e",
             tmp_dir);
    if (repae_ok("repae train (for a checkpoint)", args, NULL, 0))
        return;
    snprintf(ckpt, sizeof ckpt, "%s", tmp_path("e2e/checkpoints/0000002.safetensors"));
    snprintf(name, sizeof name, "%s", tmp_path("exported/e2e-vae"));
    mkdir(tmp_path("exported"), 0755);
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output '%s'", ckpt, name);
    char out[8192];
    if (repae_ok("export-vae", args, out, sizeof out))
        return;
    CHECK(strstr(out, "groups 4 from the run's --vae-norm-groups") != NULL, "export-vae output:\n%s", out);

    safetensors *ck = safetensors_open(ckpt);
    snprintf(path, sizeof path, "%s.safetensors", name);
    vae v;
    float *vw = vae_from_file(&v, path, "", PARAM_STRICT);
    CHECK(v.cfg.norm_groups == 4 && v.cfg.ch == 8 && v.cfg.z_channels == 4, "exported config: groups %d ch %d",
          v.cfg.norm_groups, v.cfg.ch);
    float *want = param_alloc(&v.table);
    param_load(&v.table, want, ck, "vae.", PARAM_IGNORE_EXTRA);
    CHECK(same_bits(vw, want, v.table.total), "exported VAE differs from the checkpoint's vae.*");
    free(want), free(vw);
    vae_free(&v);

    float rm[4], rv[4], scale[4], bias[4];
    safetensors_load_f32(ck, "ema.bn.running_mean", 1, (int64_t[]){4}, rm);
    safetensors_load_f32(ck, "ema.bn.running_var", 1, (int64_t[]){4}, rv);
    snprintf(path, sizeof path, "%s-latents-stats.safetensors", name);
    safetensors *st = safetensors_open(path);
    safetensors_load_f32(st, "latents_scale", 4, (int64_t[]){1, 4, 1, 1}, scale);
    safetensors_load_f32(st, "latents_bias", 4, (int64_t[]){1, 4, 1, 1}, bias);
    safetensors_close(st);
    for (int c = 0; c < 4; c++) {
        float s = (float)(1.0 / sqrt((double)rv[c]));
        CHECK(scale[c] == s && bias[c] == rm[c], "channel %d: scale %g (want %g = var^-1/2), bias %g (want %g)", c,
              scale[c], s, bias[c], rm[c]);
    }
    /* The statistics feed `repae train --latents-stats` (which checks [1,C,1,1]). */
    snprintf(path, sizeof path, "%s-discriminator.safetensors", name);
    CHECK(file_exists(path), "no %s", path);
    safetensors_close(ck);

    /* --format diffusers: the same VAE and statistics as a diffusers folder;
     * `repae train --vae-ckpt FOLDER` starts from it, and exporting that
     * run finds the GroupNorm groups in the folder's config.json. */
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --format diffusers --output '%s'", ckpt,
             tmp_path("exported/e2e-vae-diffusers"));
    if (repae_ok("export-vae --format diffusers", args, NULL, 0) == 0) {
        vae a, b;
        snprintf(path, sizeof path, "%s.safetensors", name);
        float *aw = vae_from_file(&a, path, "", PARAM_STRICT);
        float *bw = vae_from_file(&b, tmp_path("exported/e2e-vae-diffusers"), "", PARAM_STRICT);
        CHECK(a.table.total == b.table.total && same_bits(aw, bw, a.table.total),
              "the diffusers folder should hold the exported VAE bit for bit");
        vae_free(&a);
        vae_free(&b);
        free(aw), free(bw);
        snprintf(args, sizeof args,
                 "train " DATA " " DISC_FLAGS " --vae-ckpt '%s' --sit-depth 1 --sit-hidden 32 --sit-heads 2 "
                 "--projector-dim 16 --max-train-steps 1 --preview-images 4 --output-dir '%s' --exp-name fromdiff",
                 tmp_path("exported/e2e-vae-diffusers"), tmp_dir);
        if (repae_ok("repae train --vae-ckpt FOLDER", args, NULL, 0) == 0) {
            snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output '%s'",
                     tmp_path("fromdiff/checkpoints/0000001.safetensors"), tmp_path("exported/fromdiff"));
            char out2[8192];
            if (repae_ok("export-vae of a run started from a folder", args, out2, sizeof out2) == 0)
                CHECK(strstr(out2, "groups 4 from the run's --vae-ckpt folder") != NULL, "export-vae output:\n%s",
                      out2);
        }
    }

    /* A run started from a VAE file: its groups come from that file while it
     * is readable; once it is gone the export warns, assumes the presets' 32
     * (which 8 channels refuse) and takes --norm-groups. */
    snprintf(path, sizeof path, "%s", tmp_path("exported/start-vae.safetensors"));
    char copy[1500];
    snprintf(copy, sizeof copy, "cp '%s.safetensors' '%s'", name, path);
    CHECK(system(copy) == 0, "%s", copy);
    snprintf(args, sizeof args,
             "train " DATA " " DISC_FLAGS " --vae-ckpt '%s' --sit-depth 1 --sit-hidden 32 --sit-heads 2 "
             "--projector-dim 16 --max-train-steps 1 --preview-images 4 --output-dir '%s' --exp-name fromfile",
             path, tmp_dir);
    if (repae_ok("repae train --vae-ckpt FILE", args, NULL, 0) == 0) {
        char from_file[600], out3[8192];
        snprintf(from_file, sizeof from_file, "%s", tmp_path("fromfile/checkpoints/0000001.safetensors"));
        snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output '%s'", from_file,
                 tmp_path("exported/fromfile"));
        if (repae_ok("export-vae of a run started from a file", args, out3, sizeof out3) == 0)
            CHECK(strstr(out3, "groups 4 from the run's --vae-ckpt file") != NULL, "export-vae output:\n%s", out3);
        unlink(path);
        repae_fails(args, "not divisible");
        char cmd[4200], err[4096];
        snprintf(cmd, sizeof cmd, "%s'%s' %s", omp_prefix(), repae_bin, args);
        run_command(cmd, NULL, 0, err, sizeof err);
        CHECK(strstr(err, "which is not readable here; assuming 32 GroupNorm groups (give --norm-groups") != NULL,
              "export-vae without the run's --vae-ckpt file: %s", err);
        snprintf(args, sizeof args, "export-vae --checkpoint '%s' --norm-groups 4 --output '%s'", from_file,
                 tmp_path("exported/fromfile"));
        if (repae_ok("export-vae --norm-groups", args, out3, sizeof out3) == 0)
            CHECK(strstr(out3, "groups 4 from --norm-groups") != NULL, "export-vae output:\n%s", out3);
    }

    /* Wrong inputs. */
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --vae-ckpt '%s.safetensors' --output x", ckpt, name);
    repae_fails(args, "give --checkpoint or --vae-ckpt, not both");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --latents-stats s.safetensors --output x", ckpt);
    repae_fails(args, "--latents-stats goes with --vae-ckpt");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output x extra", ckpt);
    repae_fails(args, "unexpected argument 'extra'");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s'", ckpt);
    repae_fails(args, "--output is required");
    repae_fails("export-vae --output x", "--checkpoint is required");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output x", tmp_path("missing.safetensors"));
    repae_fails(args, "missing.safetensors");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s.safetensors' --output '%s'", name, tmp_path("x"));
    repae_fails(args, "not a repae training checkpoint");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output '%s'",
             tmp_path("full/checkpoints/0000002.safetensors"), tmp_path("x"));
    if (file_exists(tmp_path("full/checkpoints/0000002.safetensors")))
        repae_fails(args, "train-vae checkpoint");
    snprintf(args, sizeof args, "export-vae --checkpoint '%s' --output '%s' --norm-groups 3", ckpt, tmp_path("x"));
    repae_fails(args, "not divisible");
}

int main(void)
{
    tmp_dir = test_tmp_dir("train_cmds");
    RUN(test_vae_trainer_matches_repae_step_without_encoder);
    RUN(test_vae_trainer_eval_plan_and_refusals);
    RUN(test_train_vae_writes_everything);
    RUN(test_train_vae_resume_is_exact);
    RUN(test_train_vae_sigterm_saves_a_checkpoint);
    RUN(test_train_vae_nan_stops_without_a_checkpoint);
    RUN(test_train_vae_bad_flags);
    RUN(test_train_vae_on_a_shard_holds_out_its_tail);
    RUN(test_train_encoder_and_use_it);
    RUN(test_export_vae);
    return test_summary();
}
