/* Crash safety of the training commands (issue 12):
 *  - SIGKILL at random moments of `train`, `train-ldm` and `train-vae`
 *    (checkpoints every step, so many kills land inside a checkpoint write):
 *    after each kill the latest checkpoint loads (the run resumes from it, or
 *    starts afresh when none was written yet), and the run that is killed
 *    and resumed over and over ends with the same tensors, counters and
 *    metrics.jsonl as an uninterrupted run, bit for bit;
 *  - a full disk (a small tmpfs): a clear error, and the checkpoints written
 *    before it stay intact;
 *  - a read-only run folder: a clear error before training (not as root,
 *    where permission bits do not apply).
 * REPAE_CRASH_KILLS sets the kills per command (default 20; 5 under the
 * sanitizers, which `make test-asan` announces with ASAN_OPTIONS).
 */
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "test.h"

static const char *tmp;
static char bin[256];

#define TINY_SIT "--sit-depth 2 --sit-hidden 32 --sit-heads 2 --projector-dim 32 --encoder-depth 1"
#define STEPS 6

/* Every tensor and the counters of two checkpoints are equal, bit for bit. */
static int same_checkpoint(const char *a_path, const char *b_path, char *why, size_t why_size)
{
    safetensors *a = safetensors_open(a_path), *b = safetensors_open(b_path);
    int ok = a->n_tensors == b->n_tensors;
    if (!ok)
        snprintf(why, why_size, "%d vs %d tensors", a->n_tensors, b->n_tensors);
    for (int i = 0; ok && i < a->n_tensors; i++) {
        const st_tensor *ta = &a->tensors[i], *tb = safetensors_find(b, ta->name);
        size_t n = ta->end - ta->begin;
        if (!tb || tb->end - tb->begin != n || memcmp(a->data + ta->begin, b->data + tb->begin, n) != 0) {
            snprintf(why, why_size, "tensor '%s' differs", ta->name);
            ok = 0;
        }
    }
    const char *keys[] = {"step", "epoch", "position", "opt_step", "opt_vae_step", "opt_disc_step"};
    for (int k = 0; ok && k < 6; k++) {
        const char *x = safetensors_meta(a, keys[k]), *y = safetensors_meta(b, keys[k]);
        if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0)) {
            snprintf(why, why_size, "metadata '%s' differs (%s vs %s)", keys[k], x ? x : "-", y ? y : "-");
            ok = 0;
        }
    }
    safetensors_close(a), safetensors_close(b);
    return ok;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = xmalloc((size_t)n + 1);
    s[fread(s, 1, (size_t)n, f)] = 0;
    fclose(f);
    return s;
}

/* Runs `args` (with --exp-name name --output-dir tmp) in a child; if kill_ms
 * >= 0, SIGKILLs it after that many milliseconds.  Returns the exit status,
 * or -9 if it was killed. */
static int run_killed(const char *args, const char *name, bool resume, int kill_ms)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s %s --output-dir %s --exp-name %s%s >/dev/null 2>&1", bin, args, tmp, name,
             resume ? " --resume-step -1" : "");
    pid_t pid = fork();
    if (pid == 0) {
        setenv("OMP_NUM_THREADS", "1", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (kill_ms >= 0) {
        struct timespec ts = {kill_ms / 1000, (long)(kill_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int has_checkpoint(const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/%s/checkpoints/*.safetensors >/dev/null 2>&1", tmp, name);
    return system(cmd) == 0;
}

static void kill_and_resume(const char *what, const char *args, const char *ref_name, const char *name, int kills,
                            uint64_t seed)
{
    char path_a[512], path_b[512], why[256];
    /* the uninterrupted run, and how long it takes */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = run_killed(args, ref_name, false, -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(rc == 0, "%s: the uninterrupted run failed (%d)", what, rc);
    int run_ms = (int)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    rng r = rng_new(seed, 0x4b494c4cull);
    int killed = 0, rounds = 0;
    for (int k = 0; k < kills; k++) {
        /* a fresh run each time, killed at a random moment, then resumed to the end */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s/%s", tmp, name);
        if (system(cmd) != 0)
            CHECK(0, "rm failed");
        int ms = (int)(rng_uniform(&r) * run_ms);
        rc = run_killed(args, name, false, ms);
        killed += rc == -SIGKILL;
        /* kill the resumed run once more, half of the time */
        if (rng_uniform(&r) < 0.5f) {
            rc = run_killed(args, name, has_checkpoint(name), (int)(rng_uniform(&r) * run_ms));
            killed += rc == -SIGKILL;
        }
        rc = run_killed(args, name, has_checkpoint(name), -1);
        rounds++;
        CHECK(rc == 0, "%s: kill %d at %d ms: the resumed run failed with status %d", what, k, ms, rc);
        if (rc != 0)
            return;
        snprintf(path_a, sizeof path_a, "%s/%s/checkpoints/%07d.safetensors", tmp, ref_name, STEPS);
        snprintf(path_b, sizeof path_b, "%s/%s/checkpoints/%07d.safetensors", tmp, name, STEPS);
        int same = same_checkpoint(path_a, path_b, why, sizeof why);
        CHECK(same, "%s: kill %d at %d ms: the final checkpoint differs from the uninterrupted run's: %s", what, k,
              ms, why);
        if (!same)
            return;
        snprintf(path_a, sizeof path_a, "%s/%s/metrics.jsonl", tmp, ref_name);
        snprintf(path_b, sizeof path_b, "%s/%s/metrics.jsonl", tmp, name);
        char *a = slurp(path_a), *b = slurp(path_b);
        same = a && b && !strcmp(a, b);
        free(a), free(b);
        CHECK(same, "%s: kill %d at %d ms: metrics.jsonl differs from the uninterrupted run's", what, k, ms);
        if (!same)
            return;
    }
    printf("   %s: %d runs killed at random moments (%d SIGKILLs landed), each resumed to a bit-identical end "
           "(uninterrupted run %d ms)\n",
           what, rounds, killed, run_ms);
}

static int kills(void)
{
    const char *k = getenv("REPAE_CRASH_KILLS");
    if (k && atoi(k) > 0)
        return atoi(k);
    return getenv("ASAN_OPTIONS") ? 5 : 20; /* the sanitizer build is ~5x slower: fewer kills there */
}

static const char *train_args(void)
{
    return "train --max-images 32 --batch-size 8 " TINY_SIT " --vae-ch 32 --disc-ndf 8 --preview-images 2 "
           "--sampling-steps 0 --checkpointing-steps 1 --max-train-steps 6";
}

static void test_train_killed(void) { kill_and_resume("train", train_args(), "t-ref", "t-kill", kills(), 1); }

static void test_train_vae_killed(void)
{
    kill_and_resume("train-vae",
                    "train-vae --max-images 48 --batch-size 8 --vae-ch 8 --vae-norm-groups 4 --vae-ch-mult 1,2,2 "
                    "--disc-ndf 8 --disc-layers 2 --preview-images 8 --stats-images 16 --sampling-steps 0 "
                    "--checkpointing-steps 1 --max-train-steps 6",
                    "v-ref", "v-kill", kills(), 2);
}

static void test_train_ldm_killed(void)
{
    char cmd[1024], out[4096], err[8192];
    /* a VAE and a latent cache to train on */
    snprintf(cmd, sizeof cmd, "%s export-vae --checkpoint %s/t-ref/checkpoints/0000006.safetensors --output %s/vae",
             bin, tmp, tmp);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "export-vae: %s", err);
    snprintf(cmd, sizeof cmd, "%s cache-latents --vae-ckpt %s/vae.safetensors --output %s/lat.safetensors "
             "--max-images 32", bin, tmp, tmp);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "cache-latents: %s", err);
    char args[1024];
    snprintf(args, sizeof args, "train-ldm --latents %s/lat.safetensors " TINY_SIT " --batch-size 8 "
             "--sampling-steps 0 --checkpointing-steps 1 --max-train-steps 6", tmp);
    kill_and_resume("train-ldm", args, "l-ref", "l-kill", kills(), 3);
}

/* A 40 MB tmpfs: the first three checkpoints (12.9 MB each) fit, the fourth does not. */
static void test_full_disk(void)
{
    char mnt[128], cmd[1024], out[4096], err[8192];
    snprintf(mnt, sizeof mnt, "%s/small", tmp);
    mkdir(mnt, 0755);
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=40m tmpfs %s 2>/dev/null", mnt);
    if (system(cmd) != 0) {
        printf("   full disk: cannot mount a tmpfs here (not root, or no privilege): not tested\n");
        return;
    }
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 %s train --max-images 32 --batch-size 8 " TINY_SIT " --vae-ch 32 --disc-ndf 8 "
             "--preview-images 2 --sampling-steps 0 --checkpointing-steps 1 --max-train-steps 50 --output-dir %s "
             "--exp-name full",
             bin, mnt);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "repae: error:") && (strstr(err, "No space left") || strstr(err, "disk full")),
          "a full disk must stop training with a clear error (status %d): %s", rc, err);
    /* every checkpoint that is there loads */
    snprintf(cmd, sizeof cmd, "for f in %s/full/checkpoints/*.safetensors; do %s inspect \"$f\" >/dev/null || exit 1; "
             "done; ls %s/full/checkpoints/*.safetensors >/dev/null",
             mnt, bin, mnt);
    CHECK(system(cmd) == 0, "a checkpoint written before the disk filled does not load");
    snprintf(cmd, sizeof cmd, "umount %s", mnt);
    if (system(cmd) != 0)
        fprintf(stderr, "could not unmount %s\n", mnt);
}

static void test_read_only_folder(void)
{
    if (geteuid() == 0) {
        printf("   read-only folder: running as root, where permission bits do not apply: not tested\n");
        return;
    }
    char dir[256], cmd[1024];
    snprintf(dir, sizeof dir, "%s/ro", tmp);
    mkdir(dir, 0555);
    snprintf(cmd, sizeof cmd, "%s %s --output-dir %s --exp-name x", bin, train_args(), dir);
    expect_command_fails(cmd, "cannot");
}

int main(void)
{
    const char *b = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/repae", b && *b ? b : "build");
    tmp = test_tmp_dir("crash");
    RUN(test_train_killed);
    RUN(test_train_vae_killed);
    RUN(test_train_ldm_killed);
    RUN(test_full_disk);
    RUN(test_read_only_folder);
    return test_summary();
}
