/* iREPA's options through the program: `repae train` and `repae train-ldm`
 * with --projection-layer-type conv --spnorm-method zscore for 2 steps,
 * their exact resume, the options in args.json and in the checkpoints,
 * `inspect` naming the conv projector, `sample` and `forward --model sit`
 * from such a checkpoint, that each option changes the REPA loss, and the
 * errors for bad values. */
#include <math.h>
#include <unistd.h>

#include "test.h"

static char dir[64], bin[256];

#define TINY                                                                                                  \
    "--max-images 64 --batch-size 8 --sit-depth 2 --sit-hidden 32 --sit-heads 2 --vae-ch 32 --projector-dim " \
    "32 --encoder-depth 1 --no-disc --sampling-steps 0 --preview-images 2 --checkpointing-steps 1 --enc-heads 2"
#define IREPA "--projection-layer-type conv --spnorm-method zscore"

static int sh(const char *cmd, char *out, size_t nout, char *err, size_t nerr)
{
    static char o[16384];
    if (!out)
        out = o, nout = sizeof o;
    return run_command(cmd, out, nout, err, nerr);
}

static char *slurp(const char *fmt)
{
    char path[512];
    snprintf(path, sizeof path, fmt, dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

/* True if the JSON text has "key": <value> (any whitespace after the colon). */
static int has_kv(const char *json, const char *key, const char *value)
{
    char k[128];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = json ? strstr(json, k) : NULL;
    if (!p)
        return 0;
    p += strlen(k);
    while (*p == ' ' || *p == '\t')
        p++;
    return strncmp(p, value, strlen(value)) == 0;
}

/* The first "proj_loss" value in a metrics.jsonl text (NAN if none). */
static double first_proj_loss(const char *m)
{
    const char *p = m ? strstr(m, "\"proj_loss\":") : NULL;
    return p ? atof(p + strlen("\"proj_loss\":")) : NAN;
}

static int train(const char *name, const char *extra, char *err, size_t n)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s train " TINY " --enc-ckpt %s/enc/encoder.safetensors --output-dir %s --exp-name %s %s",
             bin, dir, dir, name, extra);
    return sh(cmd, NULL, 0, err, n);
}

static void test_train_resume_inspect_sample(void)
{
    char cmd[2048], err[8192], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s train-encoder --max-images 32 --max-eval-images 16 --batch-size 16 --eval-batch 16 --embed-dim 24 "
             "--heads 2 --depth 1 --epochs 1 --patch 8 --output-dir %s --exp-name enc",
             bin, dir);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "train-encoder failed: %s", err);

    CHECK(train("straight", IREPA " --max-train-steps 2", err, sizeof err) == 0, "iREPA train failed: %s", err);
    CHECK(train("resumed", IREPA " --max-train-steps 1", err, sizeof err) == 0, "first half failed: %s", err);
    CHECK(train("resumed", IREPA " --max-train-steps 2 --resume-step 1", err, sizeof err) == 0 &&
              strstr(err, "resumed from"),
          "resume failed: %s", err);
    char *a = slurp("%s/straight/metrics.jsonl"), *b = slurp("%s/resumed/metrics.jsonl");
    CHECK(a && b && strcmp(a, b) == 0, "a resumed iREPA run logged different values:\n%s\nvs\n%s", a, b);
    char *args = slurp("%s/straight/args.json");
    CHECK(has_kv(args, "projection_layer_type", "\"conv\"") && has_kv(args, "spnorm_method", "\"zscore\"") &&
              has_kv(args, "proj_kwargs_kernel_size", "3") && has_kv(args, "zscore_alpha", "0.6"),
          "args.json lacks the iREPA options:\n%s", args);

    /* each option changes the REPA loss of the first step (same seed otherwise) */
    CHECK(train("mlp", "--max-train-steps 1", err, sizeof err) == 0, "REPA-E train failed: %s", err);
    CHECK(train("convonly", "--projection-layer-type conv --max-train-steps 1", err, sizeof err) == 0,
          "conv train failed: %s", err);
    char *m = slurp("%s/mlp/metrics.jsonl"), *c = slurp("%s/convonly/metrics.jsonl");
    double pm = first_proj_loss(m), pc = first_proj_loss(c), pi = first_proj_loss(a);
    CHECK(isfinite(pm) && isfinite(pc) && isfinite(pi) && pm != pc && pc != pi && pi != 0,
          "proj_loss: mlp %g, conv %g, conv+zscore %g", pm, pc, pi);
    char *margs = slurp("%s/mlp/args.json");
    CHECK(has_kv(margs, "projection_layer_type", "\"mlp\"") && has_kv(margs, "spnorm_method", "\"none\""),
          "defaults recorded in args.json");

    /* the checkpoint: its args, inspect, sample, forward */
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%s/straight/checkpoints/0000002.safetensors", dir);
    snprintf(cmd, sizeof cmd, "%s inspect %s | grep -v '^  [a-z]*[.]'", bin, ckpt);
    CHECK(sh(cmd, out, sizeof out, err, sizeof err) == 0 && strstr(out, "projector conv kernel 3"),
          "inspect does not show the conv projector:\n%s\n%s", out, err);
    CHECK(strstr(out, "spnorm_method") != NULL || strstr(out, "zscore") != NULL,
          "inspect does not show the recorded spnorm option:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s sample --ckpt %s --sample-dir %s/samples --num-samples 2 --num-steps 2 --no-png",
             bin, ckpt, dir);
    CHECK(sh(cmd, out, sizeof out, err, sizeof err) == 0, "sample from an iREPA checkpoint failed: %s", err);
    snprintf(cmd, sizeof cmd, "ls %s/samples/*.npz >/dev/null", dir);
    CHECK(system(cmd) == 0, "sample wrote no npz");
    free(a), free(b), free(args), free(m), free(c), free(margs);
}

static void test_train_ldm(void)
{
    char cmd[2048], err[8192];
    snprintf(cmd, sizeof cmd, "%s export-vae --checkpoint %s/straight/checkpoints/0000002.safetensors --output %s/vae",
             bin, dir, dir);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "export-vae failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s cache-latents --vae-ckpt %s/vae.safetensors --output %s/lat.safetensors "
             "--max-images 48", bin, dir, dir);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "cache-latents failed: %s", err);
    char ldm[1024];
    snprintf(ldm, sizeof ldm,
             "%s train-ldm --latents %s/lat.safetensors --sit-depth 2 --sit-hidden 32 --sit-heads 2 --encoder-depth 1 "
             "--batch-size 8 --sampling-steps 0 --checkpointing-steps 1 --enc-ckpt %s/enc/encoder.safetensors "
             "--enc-heads 2 --output-dir %s " IREPA " --proj-kwargs-kernel-size 5",
             bin, dir, dir, dir);
    snprintf(cmd, sizeof cmd, "%s --exp-name ldm1 --max-train-steps 2", ldm);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "iREPA train-ldm failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s --exp-name ldm2 --max-train-steps 1", ldm);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "train-ldm (first half) failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s --exp-name ldm2 --max-train-steps 2 --resume-step -1", ldm);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0 && strstr(err, "resumed"), "train-ldm resume failed: %s", err);
    snprintf(cmd, sizeof cmd, "cmp -s %s/ldm1/metrics.jsonl %s/ldm2/metrics.jsonl", dir, dir);
    CHECK(system(cmd) == 0, "a resumed iREPA train-ldm run logged different values");
    char *args = slurp("%s/ldm1/args.json");
    CHECK(has_kv(args, "projection_layer_type", "\"conv\"") && has_kv(args, "proj_kwargs_kernel_size", "5"),
          "train-ldm args.json lacks the iREPA options:\n%s", args);
    free(args);
    char out[16384];
    snprintf(cmd, sizeof cmd, "%s inspect %s/ldm1/checkpoints/0000002.safetensors | grep -v '^  [a-z]*[.]'", bin, dir);
    CHECK(sh(cmd, out, sizeof out, err, sizeof err) == 0 && strstr(out, "projector conv kernel 5"),
          "inspect of an LDM checkpoint does not show the conv projector:\n%s\n%s", out, err);
}

/* `forward --model sit` on the PyTorch fixture's conv-projector SiT (its
 * config metadata gives heads and encoder_depth): the alignment pass with the
 * raw encoder features and --spnorm-method zscore gives the fixture's
 * zs_tilde and proj_loss, i.e. iREPA's target normalisation and projector
 * end to end. */
static void test_forward_torch_fixture(void)
{
    safetensors *fx = fixture_open("models/sit_tiny_irepa");
    size_t nx, nz, nt, ne, ny;
    float *x = fixture_f32(fx, "align.x", &nx), *raw = fixture_f32(fx, "align.zs_raw.0", &nz);
    float *t = fixture_f32(fx, "align.time_input", &nt), *eps = fixture_f32(fx, "align.noises", &ne);
    float *yf = fixture_f32(fx, "align.y", &ny);
    int64_t y[4];
    for (int i = 0; i < 4; i++)
        y[i] = (int64_t)yf[i];
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 4, (const int64_t[]){4, 4, 8, 8}, x);
    st_writer_add_i64(w, "y", 1, (const int64_t[]){4}, y);
    st_writer_add_f32(w, "zs", 3, (const int64_t[]){4, 16, 16}, raw);
    st_writer_add_f32(w, "time_input", 1, (const int64_t[]){4}, t);
    st_writer_add_f32(w, "noises", 4, (const int64_t[]){4, 4, 8, 8}, eps);
    char in[256], outp[256], cmd[2048], err[8192];
    snprintf(in, sizeof in, "%s/fwd_in.safetensors", dir);
    snprintf(outp, sizeof outp, "%s/fwd_out.safetensors", dir);
    st_writer_save(w, in);
    st_writer_free(w);
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights tests/fixtures/models/sit_tiny_irepa.safetensors "
             "--input %s --output %s --sit-mode align --path-type cosine --spnorm-method zscore --zscore-alpha 0.6",
             bin, in, outp);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "forward on the iREPA fixture failed: %s", err);
    safetensors *o = safetensors_open(outp);
    size_t n;
    float *zt = fixture_f32(o, "zs_tilde.0", &n), *pl = fixture_f32(o, "proj_loss", NULL);
    fixture_check(fx, "align.zs_tilde.0", zt, n, 1e-5, 1e-4);
    fixture_check(fx, "align.proj_loss", pl, 1, 1e-6, 1e-4);
    /* without the normalisation the loss differs: the option is live */
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights tests/fixtures/models/sit_tiny_irepa.safetensors "
             "--input %s --output %s.raw --sit-mode align --path-type cosine", bin, in, outp);
    CHECK(sh(cmd, NULL, 0, err, sizeof err) == 0, "forward without spnorm failed: %s", err);
    char rawp[300];
    snprintf(rawp, sizeof rawp, "%s.raw", outp);
    safetensors *o2 = safetensors_open(rawp);
    float *pl2 = fixture_f32(o2, "proj_loss", NULL);
    CHECK(fabsf(pl2[0] - pl[0]) > 1e-4f, "spnorm on/off: proj_loss %g vs %g", pl[0], pl2[0]);
    safetensors_close(o), safetensors_close(o2), safetensors_close(fx);
    free(x), free(raw), free(t), free(eps), free(yf), free(zt), free(pl), free(pl2);
}

static void test_bad_values(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s train --projection-layer-type linear", bin);
    expect_command_fails(cmd, "--projection-layer-type");
    snprintf(cmd, sizeof cmd, "%s train --projection-layer-type conv --proj-kwargs-kernel-size 4 --max-images 8", bin);
    expect_command_fails(cmd, "must be odd");
    snprintf(cmd, sizeof cmd, "%s train --proj-kwargs-kernel-size 9", bin);
    expect_command_fails(cmd, "--proj-kwargs-kernel-size");
    snprintf(cmd, sizeof cmd, "%s train-ldm --spnorm-method l2", bin);
    expect_command_fails(cmd, "--spnorm-method");
    snprintf(cmd, sizeof cmd, "%s train --zscore-alpha -1", bin);
    expect_command_fails(cmd, "--zscore-alpha");
}

int main(void)
{
    setenv("OMP_NUM_THREADS", "1", 1);
    const char *b = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/repae", b ? b : "build");
    snprintf(dir, sizeof dir, "/tmp/repae_irepa_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN(test_train_resume_inspect_sample);
    RUN(test_train_ldm);
    RUN(test_forward_torch_fixture);
    RUN(test_bad_values);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
