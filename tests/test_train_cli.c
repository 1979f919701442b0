/* `repae train` end to end at a tiny size: an interrupted-and-resumed run
 * logs exactly the same losses as a straight one; a NaN stops training with
 * a clear message and leaves the last checkpoint loadable; bad flags and
 * files fail with messages that name them. */
#include <unistd.h>

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
    snprintf(cmd, sizeof cmd, "%s/nan/checkpoints/0000002.safetensors", tmpdir);
    CHECK(access(cmd, R_OK) == 0, "the last good checkpoint (step 2) is missing");
    snprintf(cmd, sizeof cmd, "%s/nan/checkpoints/0000003.safetensors", tmpdir);
    CHECK(access(cmd, R_OK) != 0, "no checkpoint may be written for the NaN step");
    snprintf(cmd, sizeof cmd, "%s inspect %s/nan/checkpoints/0000002.safetensors", repae_bin(), tmpdir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0 && strstr(out, "ema.pos_embed"),
          "the last checkpoint does not load: %s", err);
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
}

int main(void)
{
    /* Tiny models: one thread is fastest and immune to a busy machine. */
    setenv("OMP_NUM_THREADS", "1", 1);
    setup_tmp();
    RUN(test_resume_is_bit_identical);
    RUN(test_nan_stops_with_checkpoint_intact);
    RUN(test_bad_flags_and_files);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
