/* The LDM pipeline through the program: a VAE exported from a tiny REPA-E
 * checkpoint, cache-latents, train-ldm (vanilla), its exact resume, and the
 * errors for a missing or mismatched cache. */
#include <unistd.h>

#include "test.h"

static char dir[64], bin[256];

static int sh(const char *fmt, const char *extra, char *err, size_t n)
{
    char cmd[4096], out[4096];
    snprintf(cmd, sizeof cmd, fmt, bin, dir, extra ? extra : "");
    return run_command(cmd, out, sizeof out, err, n);
}

#define SIT "--sit-depth 2 --sit-hidden 32 --sit-heads 2 --projector-dim 32 --encoder-depth 1 --batch-size 8 " \
            "--sampling-steps 0 --checkpointing-steps 2"

static void test_cache_and_train_ldm(void)
{
    char err[8192];
    int rc = sh("%s train --max-images 64 --vae-ch 32 --disc-ndf 8 --max-train-steps 1 --preview-images 2 " SIT
                " --output-dir %s/e%s", NULL, err, sizeof err);
    CHECK(rc == 0, "tiny REPA-E run failed: %s", err);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "%s export-vae --checkpoint %s/e/repae-fmnist/checkpoints/0000001.safetensors "
             "--output %s/vae", bin, dir, dir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "export-vae failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s cache-latents --vae-ckpt %s/vae.safetensors --output %s/lat.safetensors "
             "--max-images 48", bin, dir, dir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0 && strstr(out, "48 latents"),
          "cache-latents failed: %s", err);
    const char *ldm = "%s train-ldm --latents %s/lat.safetensors " SIT " --output-dir %s";
    char fmt[1024];
    snprintf(fmt, sizeof fmt, "%s%s", ldm, "/e --exp-name straight --max-train-steps 4");
    snprintf(cmd, sizeof cmd, fmt, bin, dir, dir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "train-ldm failed: %s", err);
    snprintf(fmt, sizeof fmt, "%s%s", ldm, "/e --exp-name resumed --max-train-steps 2");
    snprintf(cmd, sizeof cmd, fmt, bin, dir, dir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "train-ldm (first half) failed: %s", err);
    snprintf(fmt, sizeof fmt, "%s%s", ldm, "/e --exp-name resumed --max-train-steps 4 --resume-step -1");
    snprintf(cmd, sizeof cmd, fmt, bin, dir, dir);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0 && strstr(err, "resumed"),
          "train-ldm resume failed: %s", err);
    snprintf(cmd, sizeof cmd, "cmp -s %s/e/straight/metrics.jsonl %s/e/resumed/metrics.jsonl", dir, dir);
    CHECK(system(cmd) == 0, "a resumed train-ldm run logged different losses");
    /* A cache made from other images is refused. */
    snprintf(cmd, sizeof cmd, "%s train-ldm --latents %s/lat.safetensors --data-split test " SIT, bin, dir);
    expect_command_fails(cmd, "the cache was made from other images");
    snprintf(cmd, sizeof cmd, "%s train-ldm --latents %s/vae.safetensors", bin, dir);
    expect_command_fails(cmd, "not a latent cache");
    snprintf(cmd, sizeof cmd, "%s train-ldm", bin);
    expect_command_fails(cmd, "--latents is required");
}

int main(void)
{
    setenv("OMP_NUM_THREADS", "1", 1);
    const char *b = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/repae", b ? b : "build");
    snprintf(dir, sizeof dir, "/tmp/repae_ldm_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN(test_cache_and_train_ldm);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
