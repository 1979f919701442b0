/* The CNN evaluation network end to end, at tiny sizes:
 *   train-encoder --arch cnn: a few steps on 64 Fashion-MNIST images with
 *     flips and random crops; classifier.safetensors keeps the head and the
 *     metadata a loader needs (format, arch, config with groups, widths,
 *     enc_mean/enc_std, img_size, test accuracy); the run is reproducible
 *     (same bytes twice) and the crops change it; --evaluate on the saved
 *     file repeats the run's last test accuracy;
 *   eval --feature-net cnn: identical sets give FD 0, different ones FD > 0,
 *     replicated-RGB copies of grey images give the grey images' features,
 *     28×28 samples are resized to the network's 32 px;
 *     reconstruct --feature-net cnn reports an rFD; inspect recognises it;
 *   bad input: wrong --arch, a ViT file given as cnn and the reverse, flags
 *     of the other architecture, widths the groups do not divide, too many
 *     stages, a missing --weights — each fails naming the flag or file.
 * Commands run as $BUILD/repae from the repository root with
 * OMP_NUM_THREADS=1 unless set (tiny models), in a mkdtemp directory. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <unistd.h>

#include "core/error.h"
#include "io/npz.h"
#include "models/cnn_classifier.h"
#include "models/vit.h"
#include "test.h"

static char tmpdir[64];
static char out[1 << 16], err[1 << 16];

static const char *tmp(const char *name)
{
    static char bufs[16][256];
    static int k;
    char *p = bufs[k++ % 16];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b && *b ? b : "build");
    return path;
}

/* Runs `repae <args>`; returns the exit status (output in out / err). */
static int repae(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int repae(const char *fmt, ...)
{
    char args[3072], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s%s %s", getenv("OMP_NUM_THREADS") ? "" : "OMP_NUM_THREADS=1 ", repae_bin(), args);
    return run_command(cmd, out, sizeof out, err, sizeof err);
}

static void fails(const char *args, const char *expected)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s%s %s", getenv("OMP_NUM_THREADS") ? "" : "OMP_NUM_THREADS=1 ", repae_bin(), args);
    expect_command_fails(cmd, expected);
}

static char *slurp(const char *path)
{
    size_t n;
    return access(path, R_OK) == 0 ? read_file_all(path, &n) : NULL;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    if (access(a, R_OK) || access(b, R_OK))
        return 0;
    char *x = read_file_all(a, &na), *y = read_file_all(b, &nb);
    int same = na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

/* The last JSON line of a file, parsed. */
static cJSON *last_json(const char *path)
{
    char *s = slurp(path);
    if (!s)
        return NULL;
    char *last = s, *p;
    while ((p = strchr(last, '\n')) && p[1])
        last = p + 1;
    cJSON *j = cJSON_Parse(last);
    free(s);
    return j;
}

static double jnum(const cJSON *j, const char *key)
{
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

#define TRAIN_FLAGS                                                                                                   \
    "train-encoder --arch cnn --cnn-widths 8,16 --cnn-groups 4 --max-images 64 --max-eval-images 40 "                \
    "--batch-size 16 --eval-batch 16 --epochs 2 --warmup-steps 2 --learning-rate 3e-3 --hflip"

static const char *cnn_file, *vit_file;
static char cnn_file_buf[256], vit_file_buf[256];

static void test_train_cnn(void)
{
    int rc = repae(TRAIN_FLAGS " --crop-pad 2 --output-dir %s --exp-name cnn", tmpdir);
    CHECK(rc == 0, "train-encoder --arch cnn exited %d:\n%s", rc, err);
    if (rc)
        return;
    CHECK(strstr(out, "CNN: {\"arch\": \"cnn\", \"in_chans\": 1, \"widths\": [8, 16], \"groups\": 4") &&
              strstr(out, "test accuracy:") && strstr(out, "classifier.safetensors"),
          "train-encoder --arch cnn output:\n%s", out);
    char *m = slurp(tmp("cnn/metrics.jsonl"));
    int lines = 0;
    for (char *p = m; p && *p; p++)
        lines += *p == '\n';
    CHECK(lines == 8 && strstr(m, "\"test_accuracy\""), "metrics: 2 epochs of 4 steps with test accuracy, got %d lines",
          lines);
    free(m);
    CHECK(access(tmp("cnn/encoder.safetensors"), F_OK) != 0, "--arch cnn wrote an encoder.safetensors");
    snprintf(cnn_file_buf, sizeof cnn_file_buf, "%s", tmp("cnn/classifier.safetensors"));
    cnn_file = cnn_file_buf;
    safetensors *st = safetensors_open(cnn_file);
    const char *fmt = safetensors_meta(st, "format"), *arch = safetensors_meta(st, "arch");
    const char *acc = safetensors_meta(st, "test_accuracy"), *img = safetensors_meta(st, "img_size");
    const char *widths = safetensors_meta(st, "widths");
    CHECK(fmt && !strcmp(fmt, CNN_FILE_FORMAT) && arch && !strcmp(arch, "cnn") && acc && img && !strcmp(img, "32") &&
              widths && !strcmp(widths, "8,16") && safetensors_meta(st, "enc_mean") && safetensors_meta(st, "enc_std"),
          "classifier metadata: format %s arch %s widths %s img_size %s accuracy %s", fmt, arch, widths, img, acc);
    CHECK(safetensors_find(st, "head.weight") && safetensors_find(st, "head.bias"), "the head was not saved");
    cnn_classifier c;
    free(cnn_from_checkpoint(&c, st, "", 0, PARAM_STRICT));
    CHECK(c.cfg.n_stages == 2 && c.cfg.widths[1] == 16 && c.cfg.groups == 4 && c.cfg.num_classes == 10 && c.dim == 16,
          "saved configuration: %d stages, groups %d, classes %d", c.cfg.n_stages, c.cfg.groups, c.cfg.num_classes);
    cnn_free(&c);

    /* --evaluate on the saved float32 file gives the run's last test accuracy. */
    char want[64];
    snprintf(want, sizeof want, "test accuracy: %.4f", acc ? atof(acc) : -1.0);
    safetensors_close(st);
    rc = repae("train-encoder --arch cnn --evaluate %s --max-eval-images 40 --eval-batch 16", cnn_file);
    CHECK(rc == 0 && strstr(out, want), "--evaluate: want '%s', got (exit %d):\n%s%s", want, rc, out, err);

    /* Same seed, same bytes; the crops are part of what is drawn. */
    rc = repae(TRAIN_FLAGS " --crop-pad 2 --output-dir %s --exp-name cnn-again", tmpdir);
    CHECK(rc == 0 && same_file(cnn_file, tmp("cnn-again/classifier.safetensors")),
          "a second identical run gave another classifier (exit %d)", rc);
    rc = repae(TRAIN_FLAGS " --output-dir %s --exp-name cnn-nocrop", tmpdir);
    CHECK(rc == 0 && !same_file(cnn_file, tmp("cnn-nocrop/classifier.safetensors")),
          "--crop-pad 2 did not change the run (exit %d)", rc);

    rc = repae("inspect %s", cnn_file);
    CHECK(rc == 0 && strstr(out, "CNN classifier at ''") && strstr(out, "all 14 keys present"),
          "inspect does not recognise the classifier:\n%s", out);
}

/* Random grey images [N, 32, 32, C] with values in [0, levels) (C = 3: the
 * grey value replicated). */
static void write_images(const char *path, int N, int C, int levels, uint64_t seed)
{
    size_t n = (size_t)N * 32 * 32;
    uint8_t *g = malloc(n), *x = malloc(n * C);
    rng r = rng_new(seed, 7);
    for (size_t i = 0; i < n; i++)
        g[i] = (uint8_t)rng_below(&r, (uint32_t)levels);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            x[i * C + c] = g[i];
    npz_save(path, "arr_0", NPZ_U8, 4, (int64_t[]){N, 32, 32, C}, x);
    free(g), free(x);
}

static void test_eval_with_cnn(void)
{
    if (!cnn_file)
        return;
    write_images(tmp("a.npz"), 40, 1, 256, 1);
    write_images(tmp("a3.npz"), 40, 3, 256, 1);
    write_images(tmp("b.npz"), 40, 1, 64, 2); /* darker */
    int rc = repae("eval --samples %s --ref %s --feature-net cnn --weights %s --batch-size 16 --json %s", tmp("a.npz"),
                   tmp("a.npz"), cnn_file, tmp("same.jsonl"));
    cJSON *j = last_json(tmp("same.jsonl"));
    CHECK(rc == 0 && strstr(out, "FD (cnn features)") && strstr(out, "CNN pooled features (D 16"),
          "eval --feature-net cnn (exit %d):\n%s%s", rc, out, err);
    CHECK(fabs(jnum(j, "fd")) < 1e-3, "identical sets: FD %g, want 0", jnum(j, "fd"));
    cJSON_Delete(j);
    rc = repae("eval --samples %s --ref %s --feature-net cnn --weights %s --batch-size 16 --json %s", tmp("a3.npz"),
               tmp("a.npz"), cnn_file, tmp("rgb.jsonl"));
    j = last_json(tmp("rgb.jsonl"));
    CHECK(rc == 0 && fabs(jnum(j, "fd")) < 1e-3, "replicated RGB vs grey: FD %g (exit %d), want 0", jnum(j, "fd"), rc);
    cJSON_Delete(j);
    rc = repae("eval --samples %s --ref %s --feature-net cnn --weights %s --batch-size 16 --json %s", tmp("b.npz"),
               tmp("a.npz"), cnn_file, tmp("diff.jsonl"));
    j = last_json(tmp("diff.jsonl"));
    CHECK(rc == 0 && jnum(j, "fd") > 1e-3, "different sets: FD %g (exit %d), want > 0", jnum(j, "fd"), rc);
    cJSON_Delete(j);

    /* 28×28 images are resized to the network's 32 px (the file's img_size). */
    size_t n28 = 40 * 28 * 28;
    uint8_t *x28 = malloc(n28);
    for (size_t i = 0; i < n28; i++)
        x28[i] = (uint8_t)(i * 7919 % 251);
    npz_save(tmp("s28.npz"), "arr_0", NPZ_U8, 4, (int64_t[]){40, 28, 28, 1}, x28);
    free(x28);
    rc = repae("eval --samples %s --ref %s --allow-size-mismatch --feature-net cnn --weights %s --batch-size 16 "
               "--json %s",
               tmp("s28.npz"), tmp("a.npz"), cnn_file, tmp("s28.jsonl"));
    j = last_json(tmp("s28.jsonl"));
    CHECK(rc == 0 && isfinite(jnum(j, "fd")) && jnum(j, "fd") > 0, "28x28 samples: FD %g (exit %d):\n%s", jnum(j, "fd"),
          rc, err);
    cJSON_Delete(j);

    rc = repae("reconstruct --vae-ckpt weights/fmnist-vae.safetensors --data-split test --max-images 24 "
               "--batch-size 12 --feature-net cnn --weights %s --json %s",
               cnn_file, tmp("recon.jsonl"));
    j = last_json(tmp("recon.jsonl"));
    CHECK(rc == 0 && jnum(j, "rfd") > 0 && strstr(out, "rFD (cnn features)"), "reconstruct --feature-net cnn: rFD %g "
          "(exit %d):\n%s%s", jnum(j, "rfd"), rc, out, err);
    cJSON_Delete(j);
}

/* A tiny ViT file (what `repae train-encoder` writes, without a head). */
static void write_vit(const char *path)
{
    vit_config c = {.img_size = 32, .patch = 8, .in_chans = 1, .embed_dim = 16, .depth = 1, .heads = 2,
                    .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    vit m;
    vit_build(&m, &c);
    float *mw = param_alloc(&m.table);
    vit_init_weights(&m, mw, 3);
    st_writer *w = st_writer_new();
    vit_save(&m, mw, w, "");
    st_writer_set_metadata(w, "config", "{\"heads\": 2}");
    st_writer_save(w, path);
    st_writer_free(w);
    vit_free(&m);
    free(mw);
}

static void test_bad_input(void)
{
    snprintf(vit_file_buf, sizeof vit_file_buf, "%s", tmp("vit.safetensors"));
    vit_file = vit_file_buf;
    write_vit(vit_file);
    char args[1024];
    fails("train-encoder --arch resnet", "--arch");
    fails("train-encoder --arch cnn --patch 4", "--patch is a ViT flag");
    fails("train-encoder --cnn-widths 8,16", "--cnn-widths needs --arch cnn");
    fails("train-encoder --arch cnn --cnn-widths 8,12 --cnn-groups 8", "--cnn-groups 8");
    fails("train-encoder --arch cnn --cnn-widths 8,x", "--cnn-widths");
    fails("train-encoder --arch cnn --cnn-widths 8,8,8,8,8,8 --cnn-groups 4 --max-images 64 --batch-size 16",
          "at most 5 stages");
    fails("train-encoder --arch cnn --crop-pad 40 --max-images 64 --batch-size 16", "--crop-pad 40");
    fails("train-encoder --arch cnn --evaluate /nonexistent/evalnet.safetensors", "/nonexistent/evalnet.safetensors");
    snprintf(args, sizeof args, "train-encoder --arch cnn --evaluate %s --max-eval-images 16", vit_file);
    fails(args, "a ViT encoder file");
    write_images(tmp("c.npz"), 8, 1, 256, 3);
    snprintf(args, sizeof args, "eval --samples %s --ref %s --feature-net cnn --weights %s", tmp("c.npz"),
             tmp("c.npz"), vit_file);
    fails(args, "a ViT encoder, not a CNN classifier: use --feature-net vit");
    snprintf(args, sizeof args, "eval --samples %s --ref %s --feature-net cnn", tmp("c.npz"), tmp("c.npz"));
    fails(args, "--feature-net cnn needs --weights");
    snprintf(args, sizeof args, "eval --samples %s --ref %s --feature-net cnn --weights weights/fmnist-vae.safetensors",
             tmp("c.npz"), tmp("c.npz"));
    fails(args, "not a CNN classifier");
    if (cnn_file) {
        snprintf(args, sizeof args, "eval --samples %s --ref %s --feature-net vit --weights %s", tmp("c.npz"),
                 tmp("c.npz"), cnn_file);
        fails(args, "not a ViT: use --feature-net cnn");
    }
    int rc = repae("train-encoder --help");
    CHECK(rc == 0 && strstr(out, "--arch") && strstr(out, "--cnn-widths") && strstr(out, "--crop-pad"),
          "train-encoder --help:\n%s", out);
    rc = repae("eval --help");
    CHECK(rc == 0 && strstr(out, "inception|vit|cnn") && strstr(out, "--feature-net cnn"), "eval --help:\n%s", out);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repae-cnn-cli-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("cannot create a temporary directory: %s", tmpdir);
    if (access(repae_bin(), X_OK) != 0) {
        CHECK(0, "%s not found: build it first (make)", repae_bin());
        return test_summary();
    }
    RUN(test_train_cnn);
    RUN(test_eval_with_cnn);
    RUN(test_bad_input);
    int rc = test_summary();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (!getenv("KEEP_TMP") && system(cmd) != 0)
        warn("could not remove %s", tmpdir);
    return rc;
}
