/* `repae train` end to end at a tiny size: an interrupted-and-resumed run
 * logs exactly the same losses as a straight one; a NaN stops training with
 * a clear message and leaves the last checkpoint loadable; bad flags and
 * files fail with messages that name them. */
#include <unistd.h>

#include "core/error.h"
#include "data/dataset.h"
#include "test.h"

#define TINY "--max-images 64 --batch-size 8 --sit-depth 2 --sit-hidden 32 --sit-heads 2 --vae-ch 32 " \
             "--projector-dim 32 --encoder-depth 1 --disc-ndf 8 --sampling-steps 0 --preview-images 2 " \
             "--checkpointing-steps 2"

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b ? b : "build");
    return path;
}

static char tmpdir[64];

static void setup_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repae_train_XXXXXX");
    if (!mkdtemp(tmpdir))
        CHECK(0, "mkdtemp failed");
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static int run(const char *args, char *err, size_t err_size)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "%s train " TINY " --output-dir %s %s", repae_bin(), tmpdir, args);
    return run_command(cmd, out, sizeof out, err, err_size);
}

static void test_resume_is_bit_identical(void)
{
    char err[8192], path[256];
    int rc = run("--exp-name straight --max-train-steps 4", err, sizeof err);
    CHECK(rc == 0, "straight run failed (%d): %s", rc, err);
    rc = run("--exp-name resumed --max-train-steps 2", err, sizeof err);
    CHECK(rc == 0, "first half failed (%d): %s", rc, err);
    rc = run("--exp-name resumed --max-train-steps 4 --resume-step 2", err, sizeof err);
    CHECK(rc == 0 && strstr(err, "resumed from"), "resume failed (%d): %s", rc, err);
    snprintf(path, sizeof path, "%s/straight/metrics.jsonl", tmpdir);
    char *a = read_text(path);
    snprintf(path, sizeof path, "%s/resumed/metrics.jsonl", tmpdir);
    char *b = read_text(path);
    CHECK(a && b && strlen(a) > 100, "metrics files missing");
    if (a && b)
        CHECK(!strcmp(a, b), "resumed run's losses differ from the straight run's:\n%s\nvs\n%s", a, b);
    free(a), free(b);
}

static void test_nan_stops_with_checkpoint_intact(void)
{
    char err[8192], cmd[512];
    static char out[1 << 17];
    setenv("REPAE_FAULT_NAN_STEP", "3", 1);
    int rc = run("--exp-name nan --max-train-steps 5", err, sizeof err);
    unsetenv("REPAE_FAULT_NAN_STEP");
    CHECK(rc == 1, "a NaN must stop training with status 1, got %d", rc);
    CHECK(strstr(err, "sit_loss") && strstr(err, "step 3") && strstr(err, "intact"),
          "the message should name the loss, the step and the checkpoint: %s", err);
    snprintf(cmd, sizeof cmd, "%s/nan/metrics.jsonl", tmpdir);
    char *m = read_text(cmd);
    CHECK(m && strstr(m, "\"sit_loss\": null") && !strstr(m, "nan"),
          "a NaN must be written as JSON null in metrics.jsonl:\n%s", m ? m : "(missing)");
    free(m);
    snprintf(cmd, sizeof cmd, "%s/nan/checkpoints/0000002.safetensors", tmpdir);
    CHECK(access(cmd, R_OK) == 0, "the last good checkpoint (step 2) is missing");
    snprintf(cmd, sizeof cmd, "%s/nan/checkpoints/0000003.safetensors", tmpdir);
    CHECK(access(cmd, R_OK) != 0, "no checkpoint may be written for the NaN step");
    snprintf(cmd, sizeof cmd, "%s inspect %s/nan/checkpoints/0000002.safetensors", repae_bin(), tmpdir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0 && strstr(out, "ema.pos_embed"),
          "the last checkpoint does not load: %s", err);
}

/* After a crash the checkpoint is older than metrics.jsonl: the resumed run
 * must not log the lost steps twice. */
static void test_resume_after_crash_has_no_duplicate_steps(void)
{
    char err[8192], path[512];
    int rc = run("--exp-name crash --max-train-steps 4", err, sizeof err);
    CHECK(rc == 0, "run failed (%d): %s", rc, err);
    snprintf(path, sizeof path, "%s/crash/checkpoints/0000004.safetensors", tmpdir);
    unlink(path); /* as if killed between step 2's checkpoint and step 4's */
    snprintf(path, sizeof path, "%s/crash/checkpoints/0000003.safetensors.tmp", tmpdir);
    FILE *f = fopen(path, "wb");
    fputs("half-written", f);
    fclose(f);
    rc = run("--exp-name crash --max-train-steps 4 --resume-step -1", err, sizeof err);
    CHECK(rc == 0 && strstr(err, "at step 2"), "resume failed (%d): %s", rc, err);
    CHECK(access(path, F_OK) != 0, "the stale .tmp file was not removed");
    snprintf(path, sizeof path, "%s/straight/metrics.jsonl", tmpdir);
    char *a = read_text(path);
    snprintf(path, sizeof path, "%s/crash/metrics.jsonl", tmpdir);
    char *b = read_text(path);
    CHECK(a && b && !strcmp(a, b), "metrics after the crash and resume differ from the straight run:\n%s\nvs\n%s",
          a ? a : "", b ? b : "");
    free(a), free(b);
}

/* A checkpoint whose counters disagree with its name or the data is refused. */
static void test_resume_checks_the_checkpoint(void)
{
    char err[8192], cmd[1024];
    int rc = run("--exp-name renamed --max-images 16 --max-train-steps 3", err, sizeof err);
    CHECK(rc == 0, "run failed (%d): %s", rc, err);
    snprintf(cmd, sizeof cmd, "mv %s/renamed/checkpoints/0000003.safetensors %s/renamed/checkpoints/0000009.safetensors",
             tmpdir, tmpdir);
    CHECK(system(cmd) == 0, "mv failed");
    snprintf(cmd, sizeof cmd, "%s train " TINY " --output-dir %s --exp-name renamed --resume-step -1", repae_bin(),
             tmpdir);
    expect_command_fails(cmd, "the checkpoint says step 3 but its file name says 9");
    snprintf(cmd, sizeof cmd, "mv %s/renamed/checkpoints/0000009.safetensors %s/renamed/checkpoints/0000003.safetensors",
             tmpdir, tmpdir);
    CHECK(system(cmd) == 0, "mv failed");
    /* Written at 2 batches per epoch (epoch 1, batch 1 = step 3), resumed at 8. */
    snprintf(cmd, sizeof cmd, "%s train " TINY " --output-dir %s --exp-name renamed --resume-step -1", repae_bin(),
             tmpdir);
    expect_command_fails(cmd, "written for other data or another --batch-size");
}

static void test_bad_flags_and_files(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s train --no-such-flag 1", repae_bin());
    expect_command_fails(cmd, "unknown option '--no-such-flag'");
    snprintf(cmd, sizeof cmd, "%s train --batch-size many", repae_bin());
    expect_command_fails(cmd, "--batch-size: 'many' is not an integer");
    snprintf(cmd, sizeof cmd, "%s train --path-type squiggly", repae_bin());
    expect_command_fails(cmd, "--path-type: 'squiggly' is not one of linear|cosine");
    snprintf(cmd, sizeof cmd, "%s train --data /nonexistent/shard.bin", repae_bin());
    expect_command_fails(cmd, "/nonexistent/shard.bin");
    snprintf(cmd, sizeof cmd, "%s train " TINY " --vae-ckpt /nonexistent/vae.safetensors", repae_bin());
    expect_command_fails(cmd, "/nonexistent/vae.safetensors");
    snprintf(cmd, sizeof cmd, "%s train " TINY " --output-dir %s --exp-name none --resume-step 7", repae_bin(), tmpdir);
    expect_command_fails(cmd, "0000007.safetensors");
    snprintf(cmd, sizeof cmd, "%s train " TINY " extra_arg", repae_bin());
    expect_command_fails(cmd, "unexpected argument 'extra_arg'");
    snprintf(cmd, sizeof cmd, "%s train " TINY " -batch-size 4", repae_bin());
    expect_command_fails(cmd, "unexpected argument '-batch-size'");
    snprintf(cmd, sizeof cmd, "%s train " TINY " --no-disc --disc-ckpt d.safetensors", repae_bin());
    expect_command_fails(cmd, "--disc-ckpt and --no-disc contradict");
    snprintf(cmd, sizeof cmd, "%s train " TINY " --enc-type dinov3-vit-b", repae_bin());
    expect_command_fails(cmd, "encoder 'dinov3-vit-b': unknown family");
    snprintf(cmd, sizeof cmd, "%s train " TINY " --output-dir ''", repae_bin());
    expect_command_fails(cmd, "--output-dir: empty");
    /* A 3-channel encoder (ViT-S, random) on 1-channel data; a 1-channel run on 3-channel data with its VAE. */
    snprintf(cmd, sizeof cmd, "%s train " TINY " --channels 3 --max-train-steps 1 --output-dir %s --exp-name rgb",
             repae_bin(), tmpdir);
    char out[4096], err[8192];
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "3-channel run failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s export-vae --checkpoint %s/rgb/checkpoints/0000001.safetensors --output %s/rgbvae",
             repae_bin(), tmpdir, tmpdir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "export-vae failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s train " TINY " --vae-ckpt %s/rgbvae.safetensors --output-dir %s --exp-name grey",
             repae_bin(), tmpdir, tmpdir);
    expect_command_fails(cmd, "is for 3-channel images (out 3), but the data");
}

/* Data with 2 or 4 channels (a shard can hold any count) is refused before
 * training: it used to be read past a 3-element normalisation array. */
static void test_channel_counts_checked(void)
{
    for (int C = 2; C <= 4; C += 2) {
        dataset d = {.n = 16, .channels = C, .height = 32, .width = 32, .num_classes = 10};
        d.images = xcalloc((size_t)16 * C * 32 * 32, 1);
        d.labels = xcalloc(16, sizeof(int32_t));
        d.source = xstrdup("test");
        char path[256], cmd[1024], want[128];
        snprintf(path, sizeof path, "%s/c%d.shard", tmpdir, C);
        dataset_write_shard(&d, path);
        dataset_free(&d);
        snprintf(cmd, sizeof cmd, "%s train " TINY " --data %s --output-dir %s --exp-name c%d", repae_bin(), path,
                 tmpdir, C);
        snprintf(want, sizeof want, "%d-channel images; repae trains on 1-channel (grey) or 3-channel", C);
        expect_command_fails(cmd, want);
    }
}

/* Two runs on one folder: the second dies naming the folder and the first's pid. */
static void test_one_writer_per_run_folder(void)
{
    char cmd[2048], err[8192], out[4096];
    snprintf(cmd, sizeof cmd,
             "%s train " TINY " --output-dir %s --exp-name busy --max-train-steps 100000 >/dev/null 2>&1 & pid=$!; "
             "i=0; while [ ! -s '%s/busy/metrics.jsonl' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
             "%s train " TINY " --output-dir %s --exp-name busy --max-train-steps 1; rc=$?; kill $pid; wait $pid; "
             "exit $rc",
             repae_bin(), tmpdir, tmpdir, repae_bin(), tmpdir);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "is in use by another repae process (pid") && strstr(err, "/busy'"),
          "the second writer should fail naming the folder (status %d): %s", rc, err);
}

int main(void)
{
    /* Tiny models: one thread is fastest and immune to a busy machine. */
    setenv("OMP_NUM_THREADS", "1", 1);
    setup_tmp();
    RUN(test_resume_is_bit_identical);
    RUN(test_nan_stops_with_checkpoint_intact);
    RUN(test_resume_after_crash_has_no_duplicate_steps);
    RUN(test_resume_checks_the_checkpoint);
    RUN(test_bad_flags_and_files);
    RUN(test_one_writer_per_run_folder);
    RUN(test_channel_counts_checked);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
