/* `repae forward` end to end: the fixtures' inputs (tests/fixtures/models,
 * dev/ref/README.md) go into an input file under the command's tensor names,
 * the command runs on the fixture's weights (the fixture file itself: its
 * extra tensors are ignored), and its outputs must match the PyTorch
 * outputs stored beside them, within the models' parity tolerances
 * (test_vae.c / test_sit.c / test_vit.c).  Bad inputs fail naming the
 * problem. */
#include <math.h>
#include <unistd.h>

#include "test.h"

#define FIX "tests/fixtures/models/"

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b ? b : "build");
    return path;
}

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Writes `path` with fixture tensors renamed: pairs {new name, fixture name}. */
static void write_input(const char *path, const char *fixture, const char *const (*pairs)[2], int n)
{
    char fpath[256];
    snprintf(fpath, sizeof fpath, FIX "%s.safetensors", fixture);
    safetensors *st = safetensors_open(fpath);
    st_writer *w = st_writer_new();
    for (int i = 0; i < n; i++) {
        const st_tensor *t = safetensors_require(st, pairs[i][1]);
        st_writer_add(w, pairs[i][0], t->dtype, t->ndim, t->shape, st->data + t->begin);
    }
    st_writer_save(w, path);
    st_writer_free(w);
    safetensors_close(st);
}

static int run_forward(const char *args, char *err, size_t err_size)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "%s forward %s", repae_bin(), args);
    int rc = run_command(cmd, out, sizeof out, err, err_size);
    CHECK(rc == 0, "`%s` failed (%d): %s", cmd, rc, err);
    return rc;
}

/* max |got − want| <= rel · max|want| + floor for an output against the fixture. */
static void compare(const char *out_path, const char *out_name, const char *fixture, const char *fix_name,
                    double rel, double floor_)
{
    char fpath[256];
    snprintf(fpath, sizeof fpath, FIX "%s.safetensors", fixture);
    safetensors *o = safetensors_open(out_path), *f = safetensors_open(fpath);
    const st_tensor *to = safetensors_find(o, out_name);
    CHECK(to != NULL, "%s: no output '%s'", out_path, out_name);
    if (to) {
        size_t n;
        float *want = fixture_f32(f, fix_name, &n);
        CHECK((size_t)to->numel == n, "%s: %lld elements, the fixture's %s has %zu", out_name, (long long)to->numel,
              fix_name, n);
        if ((size_t)to->numel == n) {
            float *got = malloc(n * sizeof(float));
            safetensors_read_f32(o, to, got);
            double wmax = 0;
            for (size_t i = 0; i < n; i++)
                wmax = fmax(wmax, fabs(want[i]));
            char what[256];
            snprintf(what, sizeof what, "forward %s vs %s:%s", out_name, fixture, fix_name);
            check_close(what, got, want, n, rel * wmax + floor_, 0.0);
            free(got);
        }
        free(want);
    }
    safetensors_close(o);
    safetensors_close(f);
}

static void test_vae_matches_fixture(void)
{
    const char *const in[][2] = {{"x", "x"}, {"eps", "eps"}};
    write_input(tmp("vae_in.safetensors"), "vae_tiny_f8", in, 2);
    char args[1024], err[4096];
    snprintf(args, sizeof args, "--model vae --weights " FIX "vae_tiny_f8.safetensors --input %s --output %s",
             tmp("vae_in.safetensors"), tmp("vae_out.safetensors"));
    if (run_forward(args, err, sizeof err))
        return;
    /* The fixture's recon is decode(z): with eps given the command decodes z too. */
    const char *names[] = {"mean", "logvar", "z", "recon"};
    for (int i = 0; i < 4; i++)
        compare(tmp("vae_out.safetensors"), names[i], "vae_tiny_f8", names[i], 1e-5, 1e-6);
    /* Without eps: recon = decode(mean), which differs from the fixture's decode(z). */
    const char *const in2[][2] = {{"x", "x"}};
    write_input(tmp("vae_in2.safetensors"), "vae_tiny_f8", in2, 1);
    snprintf(args, sizeof args, "--model vae --weights " FIX "vae_tiny_f8.safetensors --input %s --output %s",
             tmp("vae_in2.safetensors"), tmp("vae_out2.safetensors"));
    if (run_forward(args, err, sizeof err))
        return;
    compare(tmp("vae_out2.safetensors"), "mean", "vae_tiny_f8", "mean", 1e-5, 1e-6);
    safetensors *o = safetensors_open(tmp("vae_out2.safetensors"));
    CHECK(safetensors_find(o, "recon") && !safetensors_find(o, "z"), "without eps: recon but no z expected");
    safetensors_close(o);
}

static void test_sit_matches_fixture(void)
{
    char args[1024], err[4096];
    const char *const infer[][2] = {{"x", "infer.x"}, {"t", "infer.t"}, {"y", "infer.y"}};
    write_input(tmp("sit_infer.safetensors"), "sit_tiny", infer, 3);
    snprintf(args, sizeof args, "--model sit --weights " FIX "sit_tiny.safetensors --input %s --output %s",
             tmp("sit_infer.safetensors"), tmp("sit_infer_out.safetensors"));
    if (!run_forward(args, err, sizeof err))
        compare(tmp("sit_infer_out.safetensors"), "v", "sit_tiny", "infer.out", 5e-6, 0);

    const char *const train[][2] = {{"x", "train.x"},         {"y", "train.y"},
                                    {"drop_mask", "train.drop_mask"}, {"time_input", "train.time_input"},
                                    {"noises", "train.noises"}, {"zs.0", "train.zs.0"}};
    write_input(tmp("sit_train.safetensors"), "sit_tiny", train, 6);
    snprintf(args, sizeof args,
             "--model sit --sit-mode train --weights " FIX "sit_tiny.safetensors --input %s --output %s",
             tmp("sit_train.safetensors"), tmp("sit_train_out.safetensors"));
    if (!run_forward(args, err, sizeof err)) {
        const char *names[] = {"zs_tilde.0", "model_output", "denoising_loss", "proj_loss"};
        for (int i = 0; i < 4; i++) {
            char fix[64];
            snprintf(fix, sizeof fix, "train.%s", names[i]);
            compare(tmp("sit_train_out.safetensors"), names[i], "sit_tiny", fix, 5e-6, 0);
        }
        compare(tmp("sit_train_out.safetensors"), "bn.running_mean", "sit_tiny", "train.bn.running_mean", 0, 1e-6);
        compare(tmp("sit_train_out.safetensors"), "bn.running_var", "sit_tiny", "train.bn.running_var", 0, 1e-6);
    }

    const char *const align[][2] = {{"x", "align.x"},
                                    {"y", "align.y"},
                                    {"time_input", "align.time_input"},
                                    {"noises", "align.noises"},
                                    {"zs", "align.zs.0"}};
    write_input(tmp("sit_align.safetensors"), "sit_tiny", align, 5);
    snprintf(args, sizeof args,
             "--model sit --sit-mode align --path-type cosine --weights " FIX
             "sit_tiny.safetensors --input %s --output %s",
             tmp("sit_align.safetensors"), tmp("sit_align_out.safetensors"));
    if (!run_forward(args, err, sizeof err)) {
        compare(tmp("sit_align_out.safetensors"), "zs_tilde.0", "sit_tiny", "align.zs_tilde.0", 5e-6, 0);
        compare(tmp("sit_align_out.safetensors"), "proj_loss", "sit_tiny", "align.proj_loss", 5e-6, 0);
        safetensors *o = safetensors_open(tmp("sit_align_out.safetensors"));
        CHECK(!safetensors_find(o, "model_output"), "align mode runs no final layer: no model_output expected");
        safetensors_close(o);
    }
}

static void test_vit_matches_fixture(void)
{
    const char *fixtures[] = {"vit_tiny", "vit_tiny_reg"};
    for (int k = 0; k < 2; k++) {
        const char *const in[][2] = {{"x", "x"}};
        write_input(tmp("vit_in.safetensors"), fixtures[k], in, 1);
        char args[1024], err[4096];
        snprintf(args, sizeof args, "--model vit --weights " FIX "%s.safetensors --input %s --output %s",
                 fixtures[k], tmp("vit_in.safetensors"), tmp("vit_out.safetensors"));
        if (run_forward(args, err, sizeof err))
            continue;
        /* test_vit.c: atol 1e-5 + rtol 1e-5 on O(1) outputs; here 1e-5 of the max + 1e-5. */
        compare(tmp("vit_out.safetensors"), "x_norm_clstoken", fixtures[k], "x_norm_clstoken", 1e-5, 1e-5);
        compare(tmp("vit_out.safetensors"), "x_norm_patchtokens", fixtures[k], "x_norm_patchtokens", 1e-5, 1e-5);
        if (k == 1)
            compare(tmp("vit_out.safetensors"), "x_norm_regtokens", fixtures[k], "x_norm_regtokens", 1e-5, 1e-5);
    }
}

/* An output tensor of the command as floats (NULL if absent); *n its count. */
static float *output_f32(const char *path, const char *name, size_t *n)
{
    safetensors *o = safetensors_open(path);
    const st_tensor *t = safetensors_find(o, name);
    float *v = NULL;
    *n = 0;
    if (t) {
        *n = (size_t)t->numel;
        v = malloc((*n ? *n : 1) * sizeof(float));
        safetensors_read_f32(o, t, v);
    }
    safetensors_close(o);
    return v;
}

/* Runs `repae forward ARGS`; its status, stdout in out. */
static int forward_out(const char *args, char *out, size_t out_size, char *err, size_t err_size)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s forward %s", repae_bin(), args);
    return run_command(cmd, out, out_size, err, err_size);
}

/* The VAE's other outputs: std = exp(logvar / 2), z = mean + std · eps, and
 * the list of outputs printed in the order written. */
static void test_vae_std_and_outputs_listed(void)
{
    const char *const in[][2] = {{"x", "x"}, {"eps", "eps"}};
    write_input(tmp("vae_in3.safetensors"), "vae_tiny_f8", in, 2);
    char args[1024], out[4096], err[4096];
    snprintf(args, sizeof args, "--model vae --weights " FIX "vae_tiny_f8.safetensors --input %s --output %s",
             tmp("vae_in3.safetensors"), tmp("vae_out3.safetensors"));
    int rc = forward_out(args, out, sizeof out, err, sizeof err);
    char want[512];
    snprintf(want, sizeof want, "outputs (%s): mean logvar std z recon\n", tmp("vae_out3.safetensors"));
    CHECK(rc == 0 && strstr(out, want) && strstr(out, "vae: 2 images 3x16x16 -> latent 4x8x8 (sampled with eps)"),
          "status %d, stdout: %s%s", rc, out, err);
    safetensors *o = safetensors_open(tmp("vae_out3.safetensors"));
    const char *mm = safetensors_meta(o, "model"), *mw = safetensors_meta(o, "weights");
    const char *mi = safetensors_meta(o, "input");
    CHECK(mm && !strcmp(mm, "vae") && mw && !strcmp(mw, FIX "vae_tiny_f8.safetensors") && mi &&
              !strcmp(mi, tmp("vae_in3.safetensors")),
          "the output's metadata: model %s, weights %s, input %s", mm ? mm : "-", mw ? mw : "-", mi ? mi : "-");
    safetensors_close(o);
    size_t n1, n2, n3, n4;
    float *mean = output_f32(tmp("vae_out3.safetensors"), "mean", &n1);
    float *logvar = output_f32(tmp("vae_out3.safetensors"), "logvar", &n2);
    float *std = output_f32(tmp("vae_out3.safetensors"), "std", &n3);
    float *z = output_f32(tmp("vae_out3.safetensors"), "z", &n4);
    CHECK(n1 == 512 && n2 == 512 && n3 == 512 && n4 == 512, "sizes %zu %zu %zu %zu", n1, n2, n3, n4);
    if (n1 == 512 && n2 == 512 && n3 == 512 && n4 == 512) {
        safetensors *f = safetensors_open(FIX "vae_tiny_f8.safetensors");
        size_t ne;
        float *eps = fixture_f32(f, "eps", &ne), want_std[512], want_z[512];
        for (int i = 0; i < 512; i++)
            want_std[i] = expf(0.5f * logvar[i]), want_z[i] = mean[i] + want_std[i] * eps[i];
        check_close("std = exp(logvar / 2)", std, want_std, 512, 0, 1e-6);
        check_close("z = mean + std * eps", z, want_z, 512, 1e-6, 1e-6);
        free(eps);
        safetensors_close(f);
    }
    free(mean), free(logvar), free(std), free(z);
}

/* A SiT file without metadata: heads are not guessed (the command asks for
 * --heads); with --heads and --encoder-depth it is the fixture's model.
 * --encoder-depth moves the projectors' block; past the depth it is refused.
 * --cfg-prob 0 leaves no null-class row; labels may be integer floats. */
static void test_sit_flags(void)
{
    safetensors *fix = safetensors_open(FIX "sit_tiny.safetensors");
    st_writer *w = st_writer_new();
    for (int i = 0; i < fix->n_tensors; i++) {
        const st_tensor *t = &fix->tensors[i];
        st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, fix->data + t->begin);
    }
    st_writer_save(w, tmp("sit_bare.safetensors"));
    st_writer_free(w);
    safetensors_close(fix);
    const char *const infer[][2] = {{"x", "infer.x"}, {"t", "infer.t"}, {"y", "infer.y"}};
    write_input(tmp("sit_infer2.safetensors"), "sit_tiny", infer, 3);
    char cmd[2048], args[1024], err[4096];
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights %s --input %s --output %s", repae_bin(),
             tmp("sit_bare.safetensors"), tmp("sit_infer2.safetensors"), tmp("bare_out.safetensors"));
    expect_command_fails(cmd, "--heads");
    snprintf(args, sizeof args, "--model sit --heads 4 --weights %s --input %s --output %s",
             tmp("sit_bare.safetensors"), tmp("sit_infer2.safetensors"), tmp("bare_out.safetensors"));
    if (!run_forward(args, err, sizeof err))
        compare(tmp("bare_out.safetensors"), "v", "sit_tiny", "infer.out", 5e-6, 0);

    /* the training forward's projector output at encoder depth 2 (the fixture's), 3 and 1 */
    const char *const train[][2] = {{"x", "train.x"},         {"y", "train.y"},
                                    {"drop_mask", "train.drop_mask"}, {"time_input", "train.time_input"},
                                    {"noises", "train.noises"}, {"zs.0", "train.zs.0"}};
    write_input(tmp("sit_train2.safetensors"), "sit_tiny", train, 6);
    float *zt[3] = {0};
    size_t nz[3] = {0};
    for (int d = 1; d <= 3; d++) {
        char outp[64];
        snprintf(outp, sizeof outp, "enc_depth_%d.safetensors", d);
        snprintf(args, sizeof args, "--model sit --encoder-depth %d --weights " FIX "sit_tiny.safetensors --input %s "
                 "--output %s", d, tmp("sit_train2.safetensors"), tmp(outp));
        if (!run_forward(args, err, sizeof err))
            zt[d - 1] = output_f32(tmp(outp), "zs_tilde.0", &nz[d - 1]);
    }
    if (zt[0] && zt[1] && zt[2] && nz[0] == nz[1] && nz[1] == nz[2]) {
        compare(tmp("enc_depth_2.safetensors"), "zs_tilde.0", "sit_tiny", "train.zs_tilde.0", 5e-6, 0);
        CHECK(memcmp(zt[0], zt[1], nz[0] * sizeof(float)) && memcmp(zt[2], zt[1], nz[0] * sizeof(float)),
              "--encoder-depth 1 and 3 must read other blocks than 2");
    }
    for (int d = 0; d < 3; d++)
        free(zt[d]);
    snprintf(cmd, sizeof cmd, "%s forward --model sit --encoder-depth 4 --weights " FIX "sit_tiny.safetensors "
             "--input %s --output %s", repae_bin(), tmp("sit_train2.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "forward --encoder-depth 4: the SiT has only 3 blocks");

    /* labels: the null class (10) is a row of the file's 11 with its cfg_prob 0.1; with --cfg-prob 0 the 11
     * rows are 11 classes; floats that are integers read as labels, others are refused */
    safetensors *f = safetensors_open(FIX "sit_tiny.safetensors");
    size_t nx, nt;
    float *x = fixture_f32(f, "infer.x", &nx), *t = fixture_f32(f, "infer.t", &nt);
    const st_tensor *tx = safetensors_require(f, "infer.x");
    const int N = (int)tx->shape[0];
    float y_null[16], y_past[16], y_half[16];
    for (int i = 0; i < N && i < 16; i++)
        y_null[i] = 10, y_past[i] = i == 0 ? 11 : 1, y_half[i] = i == N - 1 ? 2.5f : 1;
    const char *names[3] = {"y_null.safetensors", "y_past.safetensors", "y_half.safetensors"};
    const float *ys[3] = {y_null, y_past, y_half};
    for (int k = 0; k < 3; k++) {
        st_writer *wi = st_writer_new();
        st_writer_add_f32(wi, "x", tx->ndim, tx->shape, x);
        st_writer_add_f32(wi, "t", 1, (int64_t[]){N}, t);
        st_writer_add_f32(wi, "y", 1, (int64_t[]){N}, ys[k]);
        st_writer_save(wi, tmp(names[k]));
        st_writer_free(wi);
    }
    snprintf(args, sizeof args, "--model sit --weights " FIX "sit_tiny.safetensors --input %s --output %s",
             tmp("y_null.safetensors"), tmp("null_out.safetensors"));
    char out[4096], line[96];
    int rc = forward_out(args, out, sizeof out, err, sizeof err);
    snprintf(line, sizeof line, "sit: velocity of %d latents 4x8x8\n", N);
    CHECK(rc == 0 && strstr(out, line), "the null class as a label: status %d: %s%s", rc, out, err);
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights " FIX "sit_tiny.safetensors --input %s --output %s",
             repae_bin(), tmp("y_past.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "y[0] = 11 is outside [0, 11) (10 classes + the null class)");
    snprintf(cmd, sizeof cmd, "%s forward --model sit --cfg-prob 0 --weights " FIX "sit_tiny.safetensors --input %s "
             "--output %s", repae_bin(), tmp("y_past.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "y[0] = 11 is outside [0, 11) (11 classes)");
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights " FIX "sit_tiny.safetensors --input %s --output %s",
             repae_bin(), tmp("y_half.safetensors"), tmp("bad_out.safetensors"));
    char want[160];
    snprintf(want, sizeof want, "'y'[%d] = 2.5 is not an integer", N - 1);
    expect_command_fails(cmd, want);
    free(x), free(t);
    safetensors_close(f);
}

/* --seed draws what the input leaves out (time and noise): the same seed
 * the same draws, another seed others. */
static void test_sit_seed(void)
{
    const char *const train[][2] = {{"x", "train.x"}, {"y", "train.y"}, {"zs.0", "train.zs.0"}};
    write_input(tmp("sit_seed_in.safetensors"), "sit_tiny", train, 3);
    float *noise[3];
    size_t n[3];
    const int seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        char args[1024], err[4096], outp[64];
        snprintf(outp, sizeof outp, "seed_%d.safetensors", k);
        snprintf(args, sizeof args, "--model sit --seed %d --weights " FIX "sit_tiny.safetensors --input %s "
                 "--output %s", seeds[k], tmp("sit_seed_in.safetensors"), tmp(outp));
        char out[4096];
        int rc = forward_out(args, out, sizeof out, err, sizeof err);
        CHECK(rc == 0 && strstr(out, "sit: train-mode training forward of "), "--seed %d: status %d: %s%s", seeds[k],
              rc, out, err);
        noise[k] = rc ? NULL : output_f32(tmp(outp), "noises", &n[k]);
        CHECK(rc || (noise[k] && n[k] > 0), "--seed %d: no 'noises' output", seeds[k]);
    }
    if (noise[0] && noise[1] && noise[2] && n[0] == n[1] && n[1] == n[2])
        CHECK(!memcmp(noise[0], noise[1], n[0] * sizeof(float)) && memcmp(noise[0], noise[2], n[0] * sizeof(float)),
              "--seed 5 twice must draw the same noise, --seed 6 another");
    for (int k = 0; k < 3; k++)
        free(noise[k]);
}

/* --img-size: the ViT's input size; an x of another size is refused with
 * the shape expected. */
static void test_vit_img_size(void)
{
    const char *const in[][2] = {{"x", "x"}};
    write_input(tmp("vit_in2.safetensors"), "vit_tiny", in, 1);
    safetensors *f = safetensors_open(tmp("vit_in2.safetensors"));
    const st_tensor *tx = safetensors_require(f, "x");
    const int S = (int)tx->shape[2], C = (int)tx->shape[1];
    safetensors_close(f);
    char args[1024], cmd[2048], err[4096];
    snprintf(args, sizeof args,
             "--model vit --img-size %d --weights " FIX "vit_tiny.safetensors --input %s --output %s", S,
             tmp("vit_in2.safetensors"), tmp("vit_out2.safetensors"));
    if (!run_forward(args, err, sizeof err))
        compare(tmp("vit_out2.safetensors"), "x_norm_clstoken", "vit_tiny", "x_norm_clstoken", 1e-5, 1e-5);
    snprintf(cmd, sizeof cmd, "%s forward --model vit --img-size %d --weights " FIX "vit_tiny.safetensors --input %s "
             "--output %s", repae_bin(), S / 2, tmp("vit_in2.safetensors"), tmp("bad_out.safetensors"));
    char want[200];
    snprintf(want, sizeof want, "expected [*, %d, %d, %d] (the ViT's input at --img-size)", C, S / 2, S / 2);
    expect_command_fails(cmd, want);
    /* a non-square image */
    float *wx = calloc((size_t)2 * C * S * (S + 2), sizeof(float));
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 4, (int64_t[]){2, C, S, S + 2}, wx);
    st_writer_save(w, tmp("vit_wide.safetensors"));
    st_writer_free(w);
    free(wx);
    snprintf(cmd, sizeof cmd, "%s forward --model vit --weights " FIX "vit_tiny.safetensors --input %s --output %s",
             repae_bin(), tmp("vit_wide.safetensors"), tmp("bad_out.safetensors"));
    snprintf(want, sizeof want, "'x' has shape [2, %d, %d, %d], expected a square image [B, C, S, S]", C, S, S + 2);
    expect_command_fails(cmd, want);
}

static void test_bad_inputs(void)
{
    char cmd[1024];
    const char *vae_w = FIX "vae_tiny_f8.safetensors";
    /* a missing tensor */
    const char *const only_eps[][2] = {{"eps", "eps"}};
    write_input(tmp("no_x.safetensors"), "vae_tiny_f8", only_eps, 1);
    snprintf(cmd, sizeof cmd, "%s forward --model vae --weights %s --input %s --output %s", repae_bin(), vae_w,
             tmp("no_x.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "no tensor 'x'");
    /* the SiT needs t or zs */
    const char *const sit_x[][2] = {{"x", "infer.x"}, {"y", "infer.y"}};
    write_input(tmp("sit_no_t.safetensors"), "sit_tiny", sit_x, 2);
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights " FIX "sit_tiny.safetensors --input %s --output %s",
             repae_bin(), tmp("sit_no_t.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "give `t`");
    /* a wrongly shaped input */
    const char *const wrong[][2] = {{"x", "train.zs.0"}};
    write_input(tmp("wrong_x.safetensors"), "sit_tiny", wrong, 1);
    snprintf(cmd, sizeof cmd, "%s forward --model vae --weights %s --input %s --output %s", repae_bin(), vae_w,
             tmp("wrong_x.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "'x' has shape [4, 16, 32], expected [*, 3, *, *] (the VAE's image)");
    /* a posterior noise of the wrong shape: the whole shape expected */
    const char *const bad_eps[][2] = {{"x", "x"}, {"eps", "cot.recon"}};
    write_input(tmp("bad_eps.safetensors"), "vae_tiny_f8", bad_eps, 2);
    snprintf(cmd, sizeof cmd, "%s forward --model vae --weights %s --input %s --output %s", repae_bin(), vae_w,
             tmp("bad_eps.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "'eps' has shape [2, 3, 16, 16], expected [2, 4, 8, 8] (the posterior noise");
    /* ... or of another batch only */
    float eps3[3 * 4 * 8 * 8] = {0};
    safetensors *xin = safetensors_open(tmp("bad_eps.safetensors"));
    const st_tensor *xt = safetensors_require(xin, "x");
    st_writer *we = st_writer_new();
    st_writer_add(we, "x", xt->dtype, xt->ndim, xt->shape, xin->data + xt->begin);
    st_writer_add_f32(we, "eps", 4, (int64_t[]){3, 4, 8, 8}, eps3);
    st_writer_save(we, tmp("bad_eps3.safetensors"));
    st_writer_free(we);
    safetensors_close(xin);
    snprintf(cmd, sizeof cmd, "%s forward --model vae --weights %s --input %s --output %s", repae_bin(), vae_w,
             tmp("bad_eps3.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "'eps' has shape [3, 4, 8, 8], expected [2, 4, 8, 8]");
    snprintf(cmd, sizeof cmd, "%s forward --weights %s --input %s --output %s", repae_bin(), vae_w,
             tmp("vae_in.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "forward: --model, --weights, --input and --output are required");
    /* a model that is not in the file, an unknown model, missing flags */
    snprintf(cmd, sizeof cmd, "%s forward --model sit --weights %s --input %s --output %s", repae_bin(), vae_w,
             tmp("vae_in.safetensors"), tmp("bad_out.safetensors"));
    expect_command_fails(cmd, "no SiT found");
    snprintf(cmd, sizeof cmd, "%s forward --model unet --weights %s --input x --output y", repae_bin(), vae_w);
    expect_command_fails(cmd, "--model: 'unet' is not one of vae|sit|vit");
    snprintf(cmd, sizeof cmd, "%s forward --model vae --weights %s", repae_bin(), vae_w);
    expect_command_fails(cmd, "--input and --output are required");
    CHECK(access(tmp("bad_out.safetensors"), F_OK) != 0, "a failed forward must not write its output");
    /* --help documents the tensor names */
    char out[8192], err[1024];
    snprintf(cmd, sizeof cmd, "%s forward --help", repae_bin());
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "x_norm_patchtokens") && strstr(out, "denoising_loss") && strstr(out, "logvar"),
          "forward --help should name the tensors (status %d):\n%s", rc, out);
}

int main(void)
{
    setenv("OMP_NUM_THREADS", "1", 1);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repae_forward_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_vae_matches_fixture);
    RUN(test_sit_matches_fixture);
    RUN(test_vit_matches_fixture);
    RUN(test_vae_std_and_outputs_listed);
    RUN(test_sit_flags);
    RUN(test_sit_seed);
    RUN(test_vit_img_size);
    RUN(test_bad_inputs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
