/* `repae sample` and `repae inspect` end to end, on a REPA-E checkpoint that
 * `repae train` writes at a tiny size (2 steps): the images do not depend on
 * the batch size; ODE, Heun and SDE run; the .npz is what the ADM evaluator
 * reads (arr_0 uint8 [N, H, W, 3]); --balanced and --labels give the right
 * labels; --noise reproduces a run exactly; the LDM-style inputs (SiT file +
 * VAE file + latents-stats file) give the same images as the checkpoint;
 * `inspect --arch` counts match dev/ref's param_counts.json; bad inputs fail
 * with messages that name them. */
#include <math.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "diffusion/sampler.h"
#include "io/npz.h"
#include "test.h"

#define TINY "--max-images 64 --batch-size 8 --sit-depth 2 --sit-hidden 32 --sit-heads 2 --vae-ch 32 " \
             "--projector-dim 32 --encoder-depth 1 --disc-ndf 8 --sampling-steps 0 --preview-images 2 " \
             "--checkpointing-steps 2"
#define SAMPLE "--num-steps 4"

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b ? b : "build");
    return path;
}

static char tmpdir[64], ckpt[256];
static int have_ckpt;

static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len)
        len = 0;
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = read_file(a, &na), *y = read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

/* `repae sample --ckpt <ckpt> --sample-dir <tmp> --name <name> ARGS`; stdout/stderr into the buffers. */
static char out_buf[1 << 15], err_buf[1 << 15];
static int sample(const char *name, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --name %s " SAMPLE " %s", repae_bin(), ckpt, tmpdir,
             name, args);
    int rc = run_command(cmd, out_buf, sizeof out_buf, err_buf, sizeof err_buf);
    CHECK(rc == 0, "`%s` failed (%d): %s", cmd, rc, err_buf);
    return rc == 0;
}

static const char *npz_of(const char *name)
{
    static char p[2][512];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s.npz", tmpdir, name);
    return p[k];
}

static int read_labels(const char *name, int *labels, int max)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s-labels.txt", tmpdir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0;
    while (n < max && fscanf(f, "%d", &labels[n]) == 1)
        n++;
    fclose(f);
    return n;
}

static void setup_checkpoint(void)
{
    char cmd[2048], out[4096], err[8192];
    /* A high learning rate and a fast EMA, so that two steps move the EMA SiT
     * off its initialisation (zero final layer: zero velocity). */
    snprintf(cmd, sizeof cmd,
             "%s train " TINY " --max-train-steps 2 --learning-rate 2e-2 --ema-decay 0.5 --output-dir %s "
             "--exp-name tiny",
             repae_bin(), tmpdir);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    snprintf(ckpt, sizeof ckpt, "%s/tiny/checkpoints/0000002.safetensors", tmpdir);
    have_ckpt = rc == 0 && access(ckpt, R_OK) == 0;
    CHECK(have_ckpt, "could not make the tiny checkpoint (%d): %s", rc, err);
}

static void test_batch_size_does_not_change_images(void)
{
    if (!have_ckpt)
        return;
    if (!sample("b4", "--num-samples 6 --batch-size 4 --grid 4") || !sample("b6", "--num-samples 6 --batch-size 6") ||
        !sample("b1", "--num-samples 6 --batch-size 1 --mode sde --no-png") ||
        !sample("b5", "--num-samples 6 --batch-size 5 --mode sde --no-png"))
        return;
    CHECK(same_file(npz_of("b1"), npz_of("b5")), "SDE: batch 1 and batch 5 give different .npz files");
    CHECK(same_file(npz_of("b4"), npz_of("b6")), "batch 4 and batch 6 give different .npz files");
    CHECK(same_file(tmp("b4-labels.txt"), tmp("b6-labels.txt")), "batch 4 and 6 give different labels");
    CHECK(same_file(tmp("b4/000005.png"), tmp("b6/000005.png")), "image 5 differs between batch sizes");
    CHECK(access(tmp("b4-grid.png"), R_OK) == 0 && access(tmp("b4/000000.png"), R_OK) == 0 &&
              access(tmp("b4/000006.png"), F_OK) != 0,
          "expected b4/000000..000005.png and b4-grid.png");
    CHECK(strstr(err_buf, "img/s") && strstr(err_buf, "ETA"), "no progress with images/s and ETA: %s", err_buf);
    /* A different seed gives different images. */
    if (sample("seed1", "--num-samples 6 --global-seed 1 --no-png"))
        CHECK(!same_file(npz_of("b4"), npz_of("seed1")), "--global-seed 1 gives the images of seed 0");
    CHECK(access(tmp("seed1"), F_OK) != 0 && access(tmp("seed1-grid.png"), F_OK) != 0,
          "--no-png must write neither PNGs nor the grid");
}

static void test_npz_is_adm_layout(void)
{
    if (!have_ckpt || !sample("adm", "--num-samples 5 --batch-size 3"))
        return;
    npz_file *z = npz_open(npz_of("adm"));
    CHECK(z->n_entries == 1, "the .npz should hold arr_0 only, has %d arrays", z->n_entries);
    const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
    CHECK(e->ndim == 4 && e->shape[0] == 5 && e->shape[1] == 32 && e->shape[2] == 32 && e->shape[3] == 3,
          "arr_0 should be [5, 32, 32, 3]");
    uint8_t *px = malloc(e->nbytes);
    npz_read(z, e, px);
    int grey = 1, lo = 255, hi = 0;
    for (size_t i = 0; i < e->nbytes; i += 3) {
        grey &= px[i] == px[i + 1] && px[i] == px[i + 2];
        lo = px[i] < lo ? px[i] : lo;
        hi = px[i] > hi ? px[i] : hi;
    }
    CHECK(grey, "Fashion-MNIST samples should be grey replicated to RGB");
    CHECK(hi > lo, "all pixels equal (%d): not images", lo);
    free(px);
    npz_close(z);
    /* --no-rgb keeps one channel, and the pixels are the same. */
    if (!sample("adm1", "--num-samples 5 --batch-size 5 --no-rgb --no-png"))
        return;
    z = npz_open(npz_of("adm1"));
    e = npz_require(z, "arr_0", NPZ_U8);
    CHECK(e->ndim == 4 && e->shape[3] == 1, "--no-rgb: arr_0 should be [5, 32, 32, 1]");
    npz_close(z);
    /* The default folder name follows generate.py: <exp>_<step>_cfg<w>-<low>-<high>. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --num-samples 2 --num-steps 2 --no-png "
             "--cfg-scale 4 --guidance-high 0.7", repae_bin(), ckpt, tmpdir);
    int rc = run_command(cmd, out_buf, sizeof out_buf, err_buf, sizeof err_buf);
    CHECK(rc == 0 && access(tmp("tiny_0000002_cfg4.0-0.0-0.7.npz"), R_OK) == 0,
          "default name: expected tiny_0000002_cfg4.0-0.0-0.7.npz (%d): %s%s", rc, out_buf, err_buf);
}

static void test_modes_run_and_differ(void)
{
    if (!have_ckpt)
        return;
    int ok = sample("ode", "--num-samples 3 --no-png");
    /* Two updates of an EMA with decay 0.5 leave 25 % of the initialisation in it. */
    CHECK(!ok || strstr(err_buf, "warning: the EMA (decay 0.5) has had 2 updates, so 25%"),
          "sampling a 2-step EMA of decay 0.5 should warn: %s", err_buf);
    ok = ok && sample("heun", "--num-samples 3 --no-png --heun") &&
         sample("sde", "--num-samples 3 --no-png --mode sde") &&
         sample("sde_cos", "--num-samples 3 --no-png --mode sde --path-type cosine --cfg-scale 1") &&
         sample("noema", "--num-samples 3 --no-png --no-ema");
    if (!ok)
        return;
    CHECK(!strstr(err_buf, "warning: the EMA"), "--no-ema must not warn about the EMA: %s", err_buf);
    CHECK(strstr(out_buf, "keys model.*"), "--no-ema should sample with model.*: %s", out_buf);
    CHECK(!same_file(npz_of("ode"), npz_of("sde")), "ODE and SDE gave the same images");
    CHECK(!same_file(npz_of("ode"), npz_of("heun")), "Heun did not change the images");
    CHECK(!same_file(npz_of("ode"), npz_of("noema")), "--no-ema did not change the images");
    CHECK(same_file(tmp("ode-labels.txt"), tmp("sde-labels.txt")), "labels should depend on the seed only");
}

static void test_labels(void)
{
    if (!have_ckpt)
        return;
    int lab[64], n, count[10];
    if (sample("bal", "--num-samples 20 --balanced --no-png --batch-size 7")) {
        n = read_labels("bal", lab, 64);
        CHECK(n == 20, "expected 20 labels, read %d", n);
        memset(count, 0, sizeof count);
        int sorted = 1;
        for (int i = 0; i < n; i++) {
            count[lab[i] >= 0 && lab[i] < 10 ? lab[i] : 0]++;
            sorted &= i == 0 || lab[i] >= lab[i - 1];
        }
        for (int c = 0; c < 10; c++)
            CHECK(count[c] == 2, "--balanced: class %d has %d images, expected 2", c, count[c]);
        CHECK(!sorted, "--balanced labels should be shuffled");
    }
    if (sample("bal25", "--num-samples 25 --balanced --no-png")) {
        n = read_labels("bal25", lab, 64);
        memset(count, 0, sizeof count);
        for (int i = 0; i < n; i++)
            count[lab[i] >= 0 && lab[i] < 10 ? lab[i] : 0]++;
        for (int c = 0; c < 10; c++)
            CHECK(count[c] == (c < 5 ? 3 : 2), "--balanced 25: class %d has %d images", c, count[c]);
    }
    if (sample("given", "--labels 3,1,4 --no-png")) {
        n = read_labels("given", lab, 64);
        CHECK(n == 3 && lab[0] == 3 && lab[1] == 1 && lab[2] == 4, "--labels 3,1,4: read %d labels", n);
        npz_file *z = npz_open(npz_of("given"));
        CHECK(npz_require(z, "arr_0", NPZ_U8)->shape[0] == 3, "--labels sets N = 3");
        npz_close(z);
    }
    FILE *f = fopen(tmp("labels.txt"), "w");
    fprintf(f, "7\n7\n2\n");
    fclose(f);
    char args[600];
    snprintf(args, sizeof args, "--labels %s --no-png", tmp("labels.txt"));
    if (sample("fromfile", args)) {
        n = read_labels("fromfile", lab, 64);
        CHECK(n == 3 && lab[0] == 7 && lab[2] == 2, "--labels FILE: read %d labels", n);
    }
}

/* The run's own randomness written to a file: with it, another seed must
 * reproduce the run byte for byte (SDE: initial noise, step noise, labels). */
static void test_noise_file_reproduces(void)
{
    if (!have_ckpt)
        return;
    const int N = 3, S = 4, C = 4, h = 8;
    const size_t n = (size_t)C * h * h;
    const uint64_t seed = 5;
    if (!sample("seed5", "--num-samples 3 --mode sde --global-seed 5 --no-png"))
        return;
    int64_t idx[3] = {0, 1, 2}, y64[3];
    float *x = malloc(N * n * sizeof(float)), *steps = malloc((size_t)(S - 1) * N * n * sizeof(float));
    int y[3];
    sampler_initial_noise(x, N, n, seed, idx);
    sampler_random_labels(y, N, 10, seed, idx);
    for (int s = 0; s < S - 1; s++)
        sampler_step_noise(steps + (size_t)s * N * n, s, N, n, seed, idx);
    for (int i = 0; i < N; i++)
        y64[i] = y[i];
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 4, (int64_t[]){N, C, h, h}, x);
    st_writer_add_f32(w, "step_noise", 5, (int64_t[]){S - 1, N, C, h, h}, steps);
    st_writer_add_i64(w, "y", 1, (int64_t[]){N}, y64);
    st_writer_save(w, tmp("noise.safetensors"));
    st_writer_free(w);
    w = st_writer_new();
    st_writer_add_f32(w, "x", 4, (int64_t[]){N, C, h, h}, x);
    st_writer_save(w, tmp("noise_x_only.safetensors"));
    st_writer_free(w);
    char args[600];
    snprintf(args, sizeof args, "--mode sde --global-seed 99 --no-png --batch-size 2 --noise %s",
             tmp("noise.safetensors"));
    if (sample("replay", args)) {
        CHECK(same_file(npz_of("seed5"), npz_of("replay")), "--noise did not reproduce the seed-5 run");
        CHECK(same_file(tmp("seed5-labels.txt"), tmp("replay-labels.txt")), "--noise's y were not used");
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --mode sde " SAMPLE " --noise %s", repae_bin(),
             ckpt, tmpdir, tmp("noise_x_only.safetensors"));
    expect_command_fails(cmd, "no tensor 'step_noise'");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --num-samples 5 " SAMPLE " --noise %s",
             repae_bin(), ckpt, tmpdir, tmp("noise_x_only.safetensors"));
    expect_command_fails(cmd, "'x' has shape [3, 4, 8, 8], expected [5, 4, 8, 8]");
    /* no x; SDE step noise in float64; labels too few, or not a class */
    double *steps64 = malloc((size_t)(S - 1) * N * n * sizeof(double));
    for (size_t i = 0; i < (size_t)(S - 1) * N * n; i++)
        steps64[i] = steps[i];
    int64_t y_few[2] = {1, 2}, y_past[3] = {1, 10, 2};
    const struct {
        const char *file, *mode, *want;
        int with_x, steps_f64, n_y;
        const int64_t *y;
    } bad[] = {
        {"noise_no_x.safetensors", "ode",
         "noise_no_x.safetensors': no tensor 'x' (the initial noise, shape [N, 4, 8, 8])", 0, 0, 3, y64},
        {"noise_f64.safetensors", "sde", "'step_noise' must be F32 (it is F64)", 1, 1, 3, y64},
        {"noise_y2.safetensors", "ode", "'y' has 2 labels, expected 3", 1, 0, 2, y_few},
        {"noise_y10.safetensors", "ode", "y[1] = 10 is not a class of this SiT (0..9)", 1, 0, 3, y_past},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w = st_writer_new();
        if (bad[k].with_x)
            st_writer_add_f32(w, "x", 4, (int64_t[]){N, C, h, h}, x);
        if (bad[k].steps_f64)
            st_writer_add(w, "step_noise", ST_F64, 5, (int64_t[]){S - 1, N, C, h, h}, steps64);
        st_writer_add_i64(w, "y", 1, (int64_t[]){bad[k].n_y}, bad[k].y);
        st_writer_save(w, tmp(bad[k].file));
        st_writer_free(w);
        snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --no-png --mode %s " SAMPLE " --noise %s",
                 repae_bin(), ckpt, tmpdir, bad[k].mode, tmp(bad[k].file));
        expect_command_fails(cmd, bad[k].want);
    }
    free(steps64);
    free(x), free(steps);
}

/* The checkpoint split into what an LDM-only run has: SiT weights, a VAE
 * file and its latents-stats file (scale = var^-1/2 of the EMA BatchNorm). */
static void test_ldm_style_inputs_match_checkpoint(void)
{
    if (!have_ckpt)
        return;
    safetensors *st = safetensors_open(ckpt);
    st_writer *ws = st_writer_new(), *wv = st_writer_new(), *wl = st_writer_new();
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (!strncmp(t->name, "ema.", 4))
            st_writer_add(ws, t->name + 4, t->dtype, t->ndim, t->shape, st->data + t->begin);
        else if (!strncmp(t->name, "vae.", 4))
            st_writer_add(wv, t->name + 4, t->dtype, t->ndim, t->shape, st->data + t->begin);
    }
    float mean[4], var[4], scale[4];
    safetensors_load_f32(st, "ema.bn.running_mean", 1, (int64_t[]){4}, mean);
    safetensors_load_f32(st, "ema.bn.running_var", 1, (int64_t[]){4}, var);
    for (int c = 0; c < 4; c++)
        scale[c] = (float)(1.0 / sqrt((double)var[c]));
    st_writer_add_f32(wl, "latents_scale", 4, (int64_t[]){1, 4, 1, 1}, scale);
    st_writer_add_f32(wl, "latents_bias", 4, (int64_t[]){1, 4, 1, 1}, mean);
    st_writer_save(ws, tmp("sit.safetensors"));
    st_writer_save(wv, tmp("vae.safetensors"));
    st_writer_save(wl, tmp("stats.safetensors"));
    st_writer_free(ws), st_writer_free(wv), st_writer_free(wl);
    safetensors_close(st);

    char cmd[4096], out[4096], err[4096];
    snprintf(cmd, sizeof cmd,
             "%s sample --ckpt %s --vae-ckpt %s --latents-stats %s --heads 2 --sample-dir %s --name ldm " SAMPLE
             " --num-samples 4 --no-png",
             repae_bin(), tmp("sit.safetensors"), tmp("vae.safetensors"), tmp("stats.safetensors"), tmpdir);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "LDM-style sampling failed (%d): %s", rc, err);
    if (rc == 0 && sample("ckpt4", "--num-samples 4 --no-png"))
        CHECK(same_file(npz_of("ldm"), npz_of("ckpt4")), "SiT + VAE + stats files differ from the checkpoint");
    /* Without the heads (width 32 is no preset), the VAE or the statistics, clear errors. */
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --vae-ckpt %s --latents-stats %s --sample-dir %s " SAMPLE,
             repae_bin(), tmp("sit.safetensors"), tmp("vae.safetensors"), tmp("stats.safetensors"), tmpdir);
    expect_command_fails(cmd, "pass --heads");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --heads 2 --sample-dir %s " SAMPLE, repae_bin(),
             tmp("sit.safetensors"), tmpdir);
    expect_command_fails(cmd, "--vae-ckpt");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --heads 2 --vae-ckpt %s --sample-dir %s " SAMPLE, repae_bin(),
             tmp("sit.safetensors"), tmp("vae.safetensors"), tmpdir);
    expect_command_fails(cmd, "--latents-stats");
    /* The VAE's -latents-stats file next to it is found, as generate.py does. */
    snprintf(cmd, sizeof cmd, "cp %s %s", tmp("stats.safetensors"), tmp("vae-latents-stats.safetensors"));
    CHECK(system(cmd) == 0, "cp failed");
    snprintf(cmd, sizeof cmd,
             "%s sample --ckpt %s --vae-ckpt %s --heads 2 --sample-dir %s --name ldm2 " SAMPLE
             " --num-samples 4 --no-png",
             repae_bin(), tmp("sit.safetensors"), tmp("vae.safetensors"), tmpdir);
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "vae-latents-stats.safetensors"), "VAE-side stats not used (%d): %s%s", rc, out,
          err);
    CHECK(same_file(npz_of("ldm"), npz_of("ldm2")), "the -latents-stats file next to the VAE gave other images");
}

static void test_sample_bad_flags(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s sample --num-samples 2", repae_bin());
    expect_command_fails(cmd, "--ckpt is required");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt /nonexistent/ckpt.safetensors", repae_bin());
    expect_command_fails(cmd, "/nonexistent/ckpt.safetensors");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --mode euler", repae_bin(), ckpt);
    expect_command_fails(cmd, "--mode: 'euler' is not one of ode|sde");
    if (!have_ckpt)
        return;
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --labels 1,12", repae_bin(), ckpt, tmpdir);
    expect_command_fails(cmd, "label 12 (image 1) is not below the SiT's 10 classes");
    {
        /* a --sample-dir longer than the output paths' buffers: refused, never truncated to another path */
        char longdir[1601], big[4096];
        memset(longdir, 'x', 1600);
        longdir[1600] = 0;
        snprintf(big, sizeof big, "%s sample --ckpt %s --num-samples 2 --num-steps 2 --sample-dir %s/%s", repae_bin(),
                 ckpt, tmpdir, longdir);
        expect_command_fails(big, "path too long");
    }
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --labels 1,2 --num-samples 3", repae_bin(), ckpt,
             tmpdir);
    expect_command_fails(cmd, "--labels gives 2 labels but --num-samples is 3");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --labels 1,2 --balanced", repae_bin(), ckpt,
             tmpdir);
    expect_command_fails(cmd, "exclude each other");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --labels /nonexistent/labels.txt", repae_bin(),
             ckpt, tmpdir);
    expect_command_fails(cmd, "/nonexistent/labels.txt");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --mode sde --heun", repae_bin(), ckpt, tmpdir);
    expect_command_fails(cmd, "Heun applies to the ODE sampler only");
}

/* Copies the checkpoint to `name` with one float of tensor `key` set to v. */
static const char *ckpt_with(const char *name, const char *key, int64_t index, float v)
{
    safetensors *st = safetensors_open(ckpt);
    st_writer *w = st_writer_new();
    float *buf = NULL;
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        const void *data = st->data + t->begin;
        if (!strcmp(t->name, key)) {
            buf = malloc(t->end - t->begin);
            memcpy(buf, data, t->end - t->begin);
            buf[index] = v;
            data = buf;
        }
        st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, data);
    }
    for (int i = 0; i < st->n_meta; i++)
        st_writer_set_metadata(w, st->meta[i].key, st->meta[i].value);
    const char *path = tmp(name);
    st_writer_save(w, path);
    st_writer_free(w);
    free(buf);
    safetensors_close(st);
    return path;
}

/* Issue 12 items 5, 10, 15: impossible numbers in what sample loads, and
 * flags that contradict each other, are refused naming the file or flag
 * (before: black or NaN images, an empty .npz, exit 0). */
static void test_sample_bad_numbers(void)
{
    if (!have_ckpt)
        return;
    char cmd[4096];
    const int C = 4, h = 8;
    const size_t n = (size_t)C * h * h;
    float *x = calloc(3 * n, sizeof(float));
    const struct { const char *file; int N; float v; const char *want; } noise[] = {
        {"noise_nan.safetensors", 3, NAN, "noise_nan.safetensors': 'x' holds nan at index 5: noise must be finite"},
        {"noise_inf.safetensors", 3, -INFINITY, "'x' holds -inf at index 5"},
        {"noise_big.safetensors", 3, 1e30f, "'x' holds 1e+30 at index 5: not plausible standard-normal noise"},
        {"noise_empty.safetensors", 0, 0, "noise_empty.safetensors': 'x' holds 0 samples (at least 1 needed)"},
    };
    for (size_t k = 0; k < sizeof noise / sizeof noise[0]; k++) {
        if (noise[k].N)
            x[5] = noise[k].v;
        st_writer *w = st_writer_new();
        st_writer_add_f32(w, "x", 4, (int64_t[]){noise[k].N, C, h, h}, x);
        st_writer_save(w, tmp(noise[k].file));
        st_writer_free(w);
        snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --no-png " SAMPLE " --noise %s", repae_bin(),
                 ckpt, tmpdir, tmp(noise[k].file));
        expect_command_fails(cmd, noise[k].want);
    }
    /* SDE step noise is checked too. */
    x[5] = 0;
    float *steps = calloc(3 * 3 * n, sizeof(float));
    steps[2 * 3 * n + 7] = NAN;
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 4, (int64_t[]){3, C, h, h}, x);
    st_writer_add_f32(w, "step_noise", 5, (int64_t[]){3, 3, C, h, h}, steps);
    st_writer_save(w, tmp("noise_steps.safetensors"));
    st_writer_free(w);
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --no-png --mode sde " SAMPLE " --noise %s",
             repae_bin(), ckpt, tmpdir, tmp("noise_steps.safetensors"));
    expect_command_fails(cmd, "'step_noise' holds nan at index 7");
    free(x), free(steps);

    /* Weights: NaN/Inf anywhere, a negative BatchNorm variance, a zero one
     * (its eps-free latents scale would be infinite). */
    const struct { const char *file, *key; int64_t index; float v; const char *want; } bad[] = {
        {"nan_w.safetensors", "ema.final_layer.linear.weight", 3, NAN,
         "nan_w.safetensors': tensor 'ema.final_layer.linear.weight' holds nan at index 3: the weights are not finite"},
        {"inf_vae.safetensors", "vae.decoder.conv_out.bias", 0, INFINITY,
         "tensor 'vae.decoder.conv_out.bias' holds inf at index 0"},
        {"neg_var.safetensors", "ema.bn.running_var", 1, -0.5f,
         "tensor 'ema.bn.running_var' holds -0.5 at index 1: a BatchNorm running variance cannot be negative"},
        {"zero_var.safetensors", "ema.bn.running_var", 2, 0.0f,
         "ema.bn.running_var[2] is 0, so the latents scale 1/sqrt(running_var) is infinite"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *p = ckpt_with(bad[k].file, bad[k].key, bad[k].index, bad[k].v);
        snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --no-png " SAMPLE " --num-samples 2",
                 repae_bin(), p, tmpdir);
        expect_command_fails(cmd, bad[k].want);
    }

    /* An Inf latents_bias was blamed on latents_scale. */
    float scale[4] = {1, 1, 1, 1}, bias[4] = {0, INFINITY, 0, 0};
    w = st_writer_new();
    st_writer_add_f32(w, "latents_scale", 4, (int64_t[]){1, 4, 1, 1}, scale);
    st_writer_add_f32(w, "latents_bias", 4, (int64_t[]){1, 4, 1, 1}, bias);
    st_writer_save(w, tmp("inf_bias.safetensors"));
    st_writer_free(w);
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --latents-stats %s --sample-dir %s --no-png " SAMPLE, repae_bin(),
             ckpt, tmp("inf_bias.safetensors"), tmpdir);
    expect_command_fails(cmd, "inf_bias.safetensors': latents_bias[1] = inf must be finite");

    /* --labels: a directory, a NUL byte; an empty guidance interval. */
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --labels %s", repae_bin(), ckpt, tmpdir, tmpdir);
    expect_command_fails(cmd, "is a directory, not a regular file");
    FILE *f = fopen(tmp("labels_nul.txt"), "wb");
    fwrite("1 2\0 3\n", 1, 7, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --labels %s", repae_bin(), ckpt, tmpdir,
             tmp("labels_nul.txt"));
    expect_command_fails(cmd, "labels_nul.txt' contains a NUL byte");
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s --cfg-scale 1.5 --guidance-low 0.8 "
             "--guidance-high 0.2", repae_bin(), ckpt, tmpdir);
    expect_command_fails(cmd, "--guidance-low 0.8 is above --guidance-high 0.2");
}

/* ---- inspect ---- */

static long long parse_params(const char *out)
{
    const char *p = strstr(out, "\nparameters: ");
    return p ? atoll(p + 13) : -1;
}

static void test_inspect_arch_counts(void)
{
    size_t len;
    char *json = (char *)read_file("tests/fixtures/models/param_counts.json", &len);
    CHECK(json != NULL, "tests/fixtures/models/param_counts.json is missing");
    if (!json)
        return;
    cJSON *ref = cJSON_Parse(json);
    static const struct {
        const char *json_name, *args;
    } cases[] = {
        {"sit-xl/2", "sit-xl/2"},
        {"sit-xl/1", "SiT-XL/1 --in-channels 32 --input-size 16"},
        {"sit-b/2", "sit-b/2"},
        {"vae-f8d4", "vae-f8d4"},
        {"vae-f16d32", "vae-f16d32"},
        {"dinov2-vit-b/14", "dinov2-vit-b"},
    };
    static char out[1 << 20];
    char err[4096], cmd[512];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(cmd, sizeof cmd, "%s inspect --arch %s", repae_bin(), cases[k].args);
        int rc = run_command(cmd, out, sizeof out, err, sizeof err);
        CHECK(rc == 0, "`%s` failed (%d): %s", cmd, rc, err);
        const cJSON *e = cJSON_GetObjectItem(ref, cases[k].json_name);
        long long want = (long long)cJSON_GetObjectItem(e, "num_params")->valuedouble, got = parse_params(out);
        CHECK(got == want, "%s: %lld parameters, param_counts.json says %lld", cases[k].args, got, want);
        /* Every state-dict key with its shape, one per line. */
        const cJSON *params = cJSON_GetObjectItem(e, "params"), *p;
        int missing = 0;
        cJSON_ArrayForEach(p, params)
        {
            char line[400], shape[200] = "[";
            const cJSON *d;
            int first = 1;
            cJSON_ArrayForEach(d, p)
            {
                char num[32];
                snprintf(num, sizeof num, "%s%d", first ? "" : ", ", d->valueint);
                strcat(shape, num);
                first = 0;
            }
            strcat(shape, "]");
            /* pos_embed of the DINOv2 checkpoint layout is at 518: the default --img-size. */
            snprintf(line, sizeof line, "  %s ", p->string);
            const char *at = strstr(out, line);
            const char *eol = at ? strchr(at, '\n') : NULL;
            char row[600] = "";
            if (at && eol && (size_t)(eol - at) < sizeof row)
                memcpy(row, at, (size_t)(eol - at)), row[eol - at] = 0;
            if (!at || !strstr(row, shape)) {
                if (missing++ < 3)
                    CHECK(0, "%s: no line '%s %s' in the table", cases[k].args, p->string, shape);
            }
        }
        CHECK(missing == 0, "%s: %d keys missing or of another shape", cases[k].args, missing);
        if (!strcmp(cases[k].json_name, "sit-xl/2"))
            CHECK(strstr(out, "675,111,184") && strstr(out, "8,131,328"), "sit-xl/2: SiT + projector split:\n%.300s",
                  strstr(out, "parameters:") ? strstr(out, "parameters:") : out);
    }
    cJSON_Delete(ref);
    free(json);
    snprintf(cmd, sizeof cmd, "%s inspect --arch disc", repae_bin());
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0 && parse_params(out) == 2765633,
          "disc: expected 2,765,633 parameters (spec §12.1: 11.1 MB of fp32)");
    /* --in-channels 1: one input (and, for the VAE, output) channel fewer twice over: the VAE's conv_in
     * [128, C, 3, 3] and conv_out [C, 128, 3, 3] + bias lose 2·1152 + 2·1152 + 2 = 4610, the ViT's
     * patch embedding [384, C, 14, 14] loses 2·384·196 = 150528 */
    const char *pairs[2][2] = {{"vae-f8d4", "4610"}, {"dinov2-vit-s", "150528"}};
    for (int k = 0; k < 2; k++) {
        long long n3, n1;
        snprintf(cmd, sizeof cmd, "%s inspect --arch %s", repae_bin(), pairs[k][0]);
        n3 = run_command(cmd, out, sizeof out, err, sizeof err) == 0 ? parse_params(out) : -1;
        snprintf(cmd, sizeof cmd, "%s inspect --arch %s --in-channels 1", repae_bin(), pairs[k][0]);
        n1 = run_command(cmd, out, sizeof out, err, sizeof err) == 0 ? parse_params(out) : -1;
        CHECK(n3 > 0 && n3 - n1 == atoll(pairs[k][1]), "%s: %lld parameters at 3 channels, %lld at 1 (want %s fewer)",
              pairs[k][0], n3, n1, pairs[k][1]);
    }
    /* the CNN: bias-free 3x3 convs 1→32→32, 32→64→64, 64→128→128 (288 + 9216 + 18432 + 36864 + 73728 +
     * 147456 = 285984), a GroupNorm weight and bias after each (2·(32+32+64+64+128+128) =
     * 896), the head 128·10 + 10 = 1290: 288170 */
    snprintf(cmd, sizeof cmd, "%s inspect --arch cnn", repae_bin());
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0 && parse_params(out) == 288170 &&
              strstr(out, "\"in_chans\": 1, \"widths\": [32, 64, 128]"),
          "cnn: expected 288,170 parameters:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s inspect --arch vae-f9", repae_bin());
    expect_command_fails(cmd, "unknown VAE preset 'vae-f9' (vae-f8d4, vae-f16d32)");
    snprintf(cmd, sizeof cmd, "%s inspect --arch unet-xl", repae_bin());
    expect_command_fails(cmd, "unknown architecture 'unet-xl'");
    snprintf(cmd, sizeof cmd, "%s inspect --arch sit-xxl/2", repae_bin());
    expect_command_fails(cmd, "unknown SiT preset 'sit-xxl/2'");
}

static void test_inspect_recognises_models(void)
{
    static char out[1 << 20];
    char err[4096], cmd[600];
    if (have_ckpt) {
        snprintf(cmd, sizeof cmd, "%s inspect %s", repae_bin(), ckpt);
        int rc = run_command(cmd, out, sizeof out, err, sizeof err);
        const char *models = strstr(out, "\nmodels:");
        CHECK(rc == 0 && models, "inspect of the checkpoint failed (%d): %s", rc, err);
        if (models) {
            const char *want[] = {"REPA-E checkpoint: step 2", "VAE at 'vae.'", "SiT at 'model.'", "SiT at 'ema.'",
                                  "discriminator at 'disc.'", "heads 2", "in 1, ndf 8, 3 layers",
                                  "all 35 keys present"};
            for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
                CHECK(strstr(out, want[i]), "inspect of the checkpoint lacks \"%s\":\n%s", want[i], models);
            CHECK(!strstr(models, "opt."), "optimiser moments are not models:\n%s", models);
        }
    }
    const char *fix[][2] = {{"sit_tiny", "SiT at '':"},
                            {"vit_tiny_reg", "registers 2"},
                            {"vae_tiny_attn", "\"norm_groups\": 8"},
                            {"disc_tiny", "discriminator at '':"}};
    for (int k = 0; k < 4; k++) {
        snprintf(cmd, sizeof cmd, "%s inspect tests/fixtures/models/%s.safetensors", repae_bin(), fix[k][0]);
        int rc = run_command(cmd, out, sizeof out, err, sizeof err);
        const char *models = strstr(out, "\nmodels:");
        CHECK(rc == 0 && models && strstr(models, fix[k][1]) && strstr(models, "keys present with the expected"),
              "inspect %s: expected \"%s\" with every key present (%d):\n%s", fix[k][0], fix[k][1], rc,
              models ? models : err);
        CHECK(models && !strstr(models, "grad."), "inspect %s: gradients listed as a model", fix[k][0]);
    }
}

/* Models whose keys are not all there: the count of missing keys and of
 * keys of another shape, the first named; a VAE or PatchGAN too incomplete
 * to detect is said to be so. */
static void test_inspect_incomplete_models(void)
{
    static char out[1 << 20];
    char err[4096], cmd[900], path[600];
    safetensors *fix = safetensors_open("tests/fixtures/models/sit_tiny.safetensors");
    st_writer *w = st_writer_new();
    for (int i = 0; i < fix->n_tensors; i++) {
        const st_tensor *t = &fix->tensors[i];
        if (!strcmp(t->name, "blocks.1.mlp.fc2.bias"))
            continue;
        if (!strcmp(t->name, "blocks.0.attn.proj.bias"))
            st_writer_add(w, t->name, t->dtype, 2, (int64_t[]){2, t->shape[0] / 2}, fix->data + t->begin);
        else
            st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, fix->data + t->begin);
    }
    snprintf(path, sizeof path, "%s/sit_incomplete.safetensors", tmpdir);
    st_writer_save(w, path);
    st_writer_free(w);
    safetensors_close(fix);
    snprintf(cmd, sizeof cmd, "%s inspect %s", repae_bin(), path);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "SiT at '':") &&
              strstr(out, "1 keys missing, 1 of another shape (first: blocks.0.attn.proj.bias has another shape)"),
          "inspect of a SiT with a key missing and one reshaped (%d):\n%s%s", rc, out, err);
    /* a VAE's first conv alone, a PatchGAN's first layer alone */
    float zeros[8 * 3 * 4 * 4] = {0};
    const char *names[2] = {"encoder.conv_in.weight", "main.0.weight"};
    const char *want[2] = {"incomplete AutoencoderKL keys", "not a PatchGAN layout"};
    const int64_t shapes[2][4] = {{8, 3, 3, 3}, {8, 3, 4, 4}};
    for (int k = 0; k < 2; k++) {
        w = st_writer_new();
        st_writer_add_f32(w, names[k], 4, shapes[k], zeros);
        snprintf(path, sizeof path, "%s/partial%d.safetensors", tmpdir, k);
        st_writer_save(w, path);
        st_writer_free(w);
        snprintf(cmd, sizeof cmd, "%s inspect %s", repae_bin(), path);
        rc = run_command(cmd, out, sizeof out, err, sizeof err);
        CHECK(rc == 0 && strstr(out, want[k]), "inspect of %s alone: expected \"%s\" (%d):\n%s%s", names[k], want[k],
              rc, out, err);
    }
}

int main(void)
{
    /* Tiny models: one thread is fastest and immune to a busy machine. */
    setenv("OMP_NUM_THREADS", "1", 1);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repae_sample_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    setup_checkpoint();
    RUN(test_batch_size_does_not_change_images);
    RUN(test_npz_is_adm_layout);
    RUN(test_modes_run_and_differ);
    RUN(test_labels);
    RUN(test_noise_file_reproduces);
    RUN(test_ldm_style_inputs_match_checkpoint);
    RUN(test_sample_bad_flags);
    RUN(test_sample_bad_numbers);
    RUN(test_inspect_arch_counts);
    RUN(test_inspect_recognises_models);
    RUN(test_inspect_incomplete_models);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
