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
    expect_command_fails(cmd, "'x' has shape [4, 16, 32]");
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
    RUN(test_bad_inputs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
