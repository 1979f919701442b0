/* Data parallelism over MPI (src/core/dist.c), run with `mpirun -np 2`:
 *  - SyncBatchNorm forward and backward on two ranks equal BatchNorm on the
 *    concatenated batch (this program relaunches itself under mpirun);
 *  - `train-ldm`, `train-vae` (no discriminator) and `train` (REPA-E with an
 *    encoder, no discriminator) on 2
 *    ranks at global batch 8 equal 1 process at batch 8: every logged value
 *    per step and the final parameters;
 *  - `sample`, `cache-latents`, `eval` and `reconstruct` on 2 ranks write
 *    byte-identical files (images, latents, statistics, metrics, grids) to 1
 *    process;
 *  - an indivisible global batch, and a command that cannot run in parallel,
 *    are clear errors; a killed rank brings the job down within seconds with
 *    a non-zero status, and the last checkpoint still loads.
 *
 * Tolerances: both runs see the same samples and the same random draws (each
 * rank takes its rows of the global batch's draws), so they differ only in
 * the order of fp32 reductions: the gradient of the mean over 8 samples is
 * summed as 2 × 4 then averaged instead of 8 at once (relative rounding
 * ~1e-7 per step).  AdamW's update is bounded by the learning rate per step,
 * and near-zero gradients can flip its sign-like first updates, so after S
 * steps a parameter can differ by at most 2·lr·S; logged losses agree to
 * 1e-5 relative (measured: 4e-7 for train, 3e-8 for train-ldm).
 *
 * Without MPI in the build (make MPI=0) or without mpirun, the tests say so
 * and pass: the one-process program is then all there is.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dist.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "ops/norm.h"
#include "ops/sync_batch_norm.h"
#include "test.h"

static const char *tmp;
static char bin[256];
static const char *mpirun = "mpirun --oversubscribe -np 2";

#define tmp_path test_tmp_path

/* ---- the rank side: SyncBatchNorm against BatchNorm on the whole batch ---------------- */

static void sync_bn_rank_matches_whole_batch(void)
{
    const int B = 3, C = 4, HW = 5, world = dist_world(), rank = dist_rank(), G = B * world;
    size_t n = (size_t)G * C * HW, local = (size_t)B * C * HW;
    float *x = alloc_normal(n, 1.5f, 11), *dy = alloc_normal(n, 1.0f, 12);
    for (size_t i = 0; i < n; i++)
        x[i] += 0.3f;
    float *out = alloc_zeros(n), *dx = alloc_zeros(n), mean[4], rstd[4], rm[4] = {0}, rv[4] = {1, 1, 1, 1};
    float w[4] = {1.5f, -0.5f, 2.0f, 0.7f}, bias[4] = {0.1f, 0.2f, -0.3f, 0.0f}, dw[4] = {0}, db[4] = {0};
    batch_norm_train_forward(out, mean, rstd, rm, rv, x, w, bias, G, C, HW, 1e-4f, 0.1f);
    batch_norm_train_backward(dx, dw, db, dy, x, mean, rstd, w, G, C, HW);
    const float *xs = x + (size_t)rank * local, *dys = dy + (size_t)rank * local;
    float *o2 = alloc_zeros(local), *dx2 = alloc_zeros(local), m2[4], r2[4], rm2[4] = {0}, rv2[4] = {1, 1, 1, 1};
    float dw2[4] = {0}, db2[4] = {0};
    sync_batch_norm_train_forward(o2, m2, r2, rm2, rv2, xs, w, bias, B, C, HW, 1e-4f, 0.1f);
    sync_batch_norm_train_backward(dx2, dw2, db2, dys, xs, m2, r2, w, B, C, HW);
    dist_allreduce_sum(dw2, 4); /* each rank holds 1/world of the weight gradients */
    dist_allreduce_sum(db2, 4);
    /* Double accumulation both ways: agreement to float rounding. */
    check_close("sync BN out", o2, out + (size_t)rank * local, local, 1e-6, 1e-6);
    check_close("sync BN mean", m2, mean, 4, 1e-6, 1e-6);
    check_close("sync BN rstd", r2, rstd, 4, 1e-6, 1e-6);
    check_close("sync BN running_mean", rm2, rm, 4, 1e-6, 1e-6);
    check_close("sync BN running_var", rv2, rv, 4, 1e-6, 1e-6);
    check_close("sync BN dx", dx2, dx + (size_t)rank * local, local, 1e-5, 1e-5);
    check_close("sync BN dweight", dw2, dw, 4, 1e-5, 1e-5);
    check_close("sync BN dbias", db2, db, 4, 1e-5, 1e-5);
    CHECK(world == 2, "expected 2 ranks, got %d", world);
    free(x), free(dy), free(out), free(dx), free(o2), free(dx2);
}

static int sync_bn_rank(void)
{
    RUN(sync_bn_rank_matches_whole_batch);
    return test_summary();
}

/* dist_check_same on 64 floats that rank 1 changes in one byte (argv: "first", "last") or
 * not at all ("none"): a difference anywhere must stop both ranks. */
static int check_same_rank(const char *where)
{
    float x[64];
    for (int i = 0; i < 64; i++)
        x[i] = 0.25f * (float)i - 3.0f;
    unsigned char *bytes = (unsigned char *)x;
    if (dist_rank() == 1 && !strcmp(where, "first"))
        bytes[0] ^= 1;
    if (dist_rank() == 1 && !strcmp(where, "last"))
        bytes[sizeof x - 1] ^= 0x80;
    dist_check_same(x, 64, "the test's floats");
    printf("rank %d: the same\n", dist_rank());
    return 0;
}

/* The collectives in chunks of 5 elements (real buffers reach the default
 * 2^28 only past 1 GiB: a SiT-XL's gradients do): lengths 0, 5, 10 and 23
 * (whole chunks and a tail), each element's result exact. */
static void chunked_collectives_are_whole(void)
{
    const int rank = dist_rank();
    dist_set_chunk(5);
    const size_t lengths[4] = {0, 5, 10, 23};
    for (int k = 0; k < 4; k++) {
        size_t n = lengths[k];
        float f[23], mean[23];
        double d[23], mx[23];
        unsigned char bytes[23];
        for (size_t i = 0; i < n; i++) {
            f[i] = mean[i] = (float)(i + 100 * rank);
            d[i] = 0.5 * (double)i + 1000.0 * rank;
            mx[i] = rank == (int)(i % 2) ? 7.0 * (double)i : -1.0; /* the max is on alternate ranks */
            bytes[i] = (unsigned char)(rank == 1 ? 200 + i : 0);
        }
        dist_allreduce_sum(f, n);
        dist_allreduce_mean(mean, n);
        dist_allreduce_sum_f64(d, n);
        dist_allreduce_max_f64(mx, n);
        dist_broadcast(bytes, n, 1);
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += f[i] != (float)(2 * i + 100) || mean[i] != (float)i + 50.0f || d[i] != (double)i + 1000.0 ||
                   mx[i] != 7.0 * (double)i || bytes[i] != 200 + i;
        CHECK(bad == 0, "%zu elements in chunks of 5: %d wrong", n, bad);
    }
    dist_set_chunk((size_t)1 << 28);
}

static int chunks_rank(void)
{
    RUN(chunked_collectives_are_whole);
    return test_summary();
}

/* Rank 1 dies (die(): exit status 1) while rank 0 waits in an all-reduce
 * for it: the job must end, not hang. */
static int die_rank(void)
{
    if (dist_rank() == 1)
        die("rank 1 stops on purpose");
    float x[4] = {1, 2, 3, 4};
    dist_allreduce_sum(x, 4);
    return 0;
}

/* ---- the driver side ------------------------------------------------------------------ */

static int sh(const char *cmd, char *err, size_t err_size)
{
    static char out[1 << 16];
    return run_command(cmd, out, sizeof out, err, err_size);
}

static void test_sync_batch_norm(void)
{
    char cmd[512], err[8192];
    snprintf(cmd, sizeof cmd, "%s build/tests/test_mpi --rank-sync-bn 2>&1", mpirun);
    const char *b = getenv("BUILD");
    if (b && *b)
        snprintf(cmd, sizeof cmd, "%s %s/tests/test_mpi --rank-sync-bn 2>&1", mpirun, b);
    static char out[1 << 16];
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    /* rank 0's report (the other rank's stdout is silenced); its status is mpirun's */
    CHECK(rc == 0 && strstr(out, "\n1 passed, 0 failed"), "SyncBatchNorm on 2 ranks (status %d):\n%s%s", rc, out,
          err);
}

/* Compares two metrics.jsonl files value by value; returns the max relative difference. */
static double metrics_diff(const char *a_path, const char *b_path, int *lines)
{
    size_t na, nb;
    char *a = read_file_all(a_path, &na), *b = read_file_all(b_path, &nb);
    double worst = 0;
    *lines = 0;
    char *pa = a, *pb = b;
    while (*pa && *pb) {
        (*lines)++;
        char *ea = strchr(pa, '\n'), *eb = strchr(pb, '\n');
        if (!ea || !eb)
            break;
        /* walk the numbers of both lines in step */
        char *qa = pa, *qb = pb;
        while (qa < ea && qb < eb) {
            char *ca = strchr(qa, ':'), *cb = strchr(qb, ':');
            if (!ca || !cb || ca > ea || cb > eb)
                break;
            double x = strtod(ca + 1, NULL), y = strtod(cb + 1, NULL);
            /* SSIM of a barely trained reconstruction is near 0, and one
             * uint8 pixel that rounds the other way (parameters that differ
             * by ~1e-6 after an all-reduce) moves it by ~2e-6: compared
             * absolutely, like a value of magnitude 1. */
            bool ssim = ca - qa >= 6 && !strncmp(ca - 6, "\"ssim\"", 6);
            double d = fabs(x - y) / fmax(ssim ? 1.0 : 1e-6, fabs(x));
            bool timing = ca - qa >= 7 && !strncmp(ca - 7, "\"cpu_s\"", 7); /* CPU seconds differ, of course */
            if (d > worst && !timing)
                worst = d;
            qa = ca + 1, qb = cb + 1;
        }
        pa = ea + 1, pb = eb + 1;
    }
    if (*pa || *pb)
        worst = INFINITY; /* different line counts */
    free(a), free(b);
    return worst;
}

/* Max |a - b| over the tensors with this prefix of two checkpoints; *rms (if
 * not NULL) gets the root mean square of a - b over the same elements. */
static double checkpoint_diff(const char *a_path, const char *b_path, const char *prefix, double *rms)
{
    safetensors *a = safetensors_open(a_path), *b = safetensors_open(b_path);
    double worst = 0, sum_sq = 0;
    int64_t count = 0;
    size_t plen = strlen(prefix);
    for (int i = 0; i < a->n_tensors; i++) {
        const st_tensor *ta = &a->tensors[i];
        if (strncmp(ta->name, prefix, plen) != 0)
            continue;
        const st_tensor *tb = safetensors_find(b, ta->name);
        if (!tb || tb->numel != ta->numel) {
            worst = sum_sq = INFINITY;
            break;
        }
        float *x = xmalloc((size_t)ta->numel * sizeof(float)), *y = xmalloc((size_t)ta->numel * sizeof(float));
        safetensors_read_f32(a, ta, x);
        safetensors_read_f32(b, tb, y);
        for (int64_t k = 0; k < ta->numel; k++) {
            double d = fabs((double)x[k] - y[k]);
            worst = d > worst ? d : worst;
            sum_sq += d * d;
        }
        count += ta->numel;
        free(x), free(y);
    }
    safetensors_close(a), safetensors_close(b);
    if (rms)
        *rms = count ? sqrt(sum_sq / (double)count) : (sum_sq > 0 ? INFINITY : 0);
    return worst;
}

#define TINY "--max-images 64 --batch-size 8 --sit-depth 2 --sit-hidden 32 --sit-heads 2 --vae-ch 32 " \
             "--projector-dim 32 --encoder-depth 1 --sampling-steps 0 --preview-images 2 --checkpointing-steps 3 " \
             "--max-train-steps 6"

static void compare_runs(const char *what, const char *one, const char *two, int steps, double lr)
{
    int lines;
    double d = metrics_diff(tmp_path(one), tmp_path(two), &lines);
    CHECK(lines == steps && d < 1e-5, "%s: logged values of 2 ranks vs 1 process differ by %.3g (relative; %d lines)",
          what, d, lines);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s", tmp_path(one));
    snprintf(b, sizeof b, "%s", tmp_path(two));
    strcpy(strrchr(a, '/') + 1, "checkpoints/0000006.safetensors");
    strcpy(strrchr(b, '/') + 1, "checkpoints/0000006.safetensors");
    const char *prefixes[] = {"model.", "ema.", "vae."};
    for (int i = 0; i < 3; i++) {
        double rms, p = checkpoint_diff(a, b, prefixes[i], &rms);
        /* Adam moves a parameter by up to ~lr a step whatever its gradient, so
         * one near-zero gradient summed in another order may move by a good
         * part of lr (the VAE's worst was 1.7e-5 at lr 1e-4): the max gets
         * Adam's own bound, the rms a tight one.  Gradients summed instead of
         * averaged over the ranks gave the SiT an rms of 1.5e-5; a correct run
         * gives at most 6e-8. */
        CHECK(p <= 2 * lr * steps, "%s: final %s parameters differ by %.3g (bound 2·lr·steps = %.3g)", what,
              prefixes[i], p, 2 * lr * steps);
        CHECK(rms <= lr / 100, "%s: final %s parameters differ by %.3g rms (bound lr/100 = %.3g)", what,
              prefixes[i], rms, lr / 100);
        printf("   %s: %s* max |Δ| %.3g, rms %.3g\n", what, prefixes[i], p, rms);
    }
    printf("   %s: logged values max relative difference %.3g\n", what, d);
}

static void test_train_two_ranks_equal_one(void)
{
    char cmd[2048], err[8192];
    /* an encoder for REPA (tiny, untrained: it only has to give targets) */
    snprintf(cmd, sizeof cmd,
             "%s train-encoder --max-images 32 --max-eval-images 16 --batch-size 16 --eval-batch 16 --embed-dim 24 "
             "--heads 2 --depth 1 --epochs 1 --patch 8 --output-dir %s --exp-name enc",
             bin, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "train-encoder failed: %s", err);
    const char *common = TINY " --no-disc --enc-heads 2 --learning-rate 1e-4 --vae-learning-rate 1e-4";
    snprintf(cmd, sizeof cmd, "%s train %s --enc-ckpt %s/enc/encoder.safetensors --output-dir %s --exp-name one", bin,
             common, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "1-process train failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s %s train %s --enc-ckpt %s/enc/encoder.safetensors --output-dir %s --exp-name two",
             mpirun, bin, common, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank train failed: %s", err);
    compare_runs("train", "one/metrics.jsonl", "two/metrics.jsonl", 6, 1e-4);
}

static void test_train_vae_two_ranks_equal_one(void)
{
    char cmd[2048], err[8192];
    const char *v = "train-vae --max-images 64 --batch-size 8 --vae-ch 8 --vae-norm-groups 4 --vae-ch-mult 1,2,2 "
                    "--no-disc --preview-images 8 --stats-images 16 --sampling-steps 0 --checkpointing-steps 3 "
                    "--max-train-steps 6 --vae-learning-rate 1e-4";
    snprintf(cmd, sizeof cmd, "%s %s --output-dir %s --exp-name vae1", bin, v, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "1-process train-vae failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s %s %s --output-dir %s --exp-name vae2", mpirun, bin, v, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank train-vae failed: %s", err);
    compare_runs("train-vae", "vae1/metrics.jsonl", "vae2/metrics.jsonl", 6, 1e-4);
}

/* With a discriminator the ranks keep their own BatchNorm statistics within
 * a step and continue from rank 0's after it (the reference's DDP
 * broadcast_buffers), so the ranks' parameters stay identical: the check at
 * each checkpoint passes and the run ends. */
static void test_train_vae_with_discriminator_two_ranks(void)
{
    char cmd[2048], err[8192];
    const char *v = "train-vae --max-images 64 --batch-size 8 --vae-ch 8 --vae-norm-groups 4 --vae-ch-mult 1,2,2 "
                    "--disc-ndf 8 --disc-layers 2 --preview-images 8 --stats-images 16 --sampling-steps 0 "
                    "--checkpointing-steps 2 --max-train-steps 4 --vae-learning-rate 1e-4";
    snprintf(cmd, sizeof cmd, "%s %s %s --output-dir %s --exp-name vaed2", mpirun, bin, v, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank train-vae with a discriminator failed: %s", err);
    CHECK(access(test_tmp_path("vaed2/checkpoints/0000004.safetensors"), F_OK) == 0,
          "2-rank train-vae with a discriminator wrote no final checkpoint");
}

static void test_train_encoder_two_ranks_equal_one(void)
{
    char cmd[2048], err[8192];
    const char *e = "train-encoder --max-images 64 --max-eval-images 16 --batch-size 16 --eval-batch 8 --embed-dim 24 "
                    "--heads 2 --depth 1 --patch 8 --epochs 2 --warmup-steps 1 --hflip --crop-pad 2";
    snprintf(cmd, sizeof cmd, "%s %s --output-dir %s --exp-name enc1", bin, e, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "1-process train-encoder failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s %s %s --output-dir %s --exp-name enc2", mpirun, bin, e, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank train-encoder failed: %s", err);
    int lines;
    double d = metrics_diff(test_tmp_path("enc1/metrics.jsonl"), test_tmp_path("enc2/metrics.jsonl"), &lines);
    CHECK(lines == 8 && d < 1e-5, "train-encoder: 2 ranks vs 1 process differ by %.3g (relative; %d lines)", d, lines);
    double rms, p = checkpoint_diff(test_tmp_path("enc1/encoder.safetensors"),
                                    test_tmp_path("enc2/encoder.safetensors"), "", &rms);
    CHECK(p <= 2 * 1e-3 * 8 && rms <= 1e-3 / 100, "train-encoder: final parameters differ by %.3g (rms %.3g)", p, rms);
    printf("   train-encoder: logged values max relative difference %.3g, parameters max |Δ| %.3g, rms %.3g\n", d, p,
           rms);
}

static void test_train_ldm_and_sample(void)
{
    char cmd[2048], err[8192];
    snprintf(cmd, sizeof cmd, "%s export-vae --checkpoint %s/one/checkpoints/0000006.safetensors --output %s/vae", bin,
             tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "export-vae failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s cache-latents --vae-ckpt %s/vae.safetensors --output %s/lat.safetensors "
             "--max-images 48", bin, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "cache-latents failed: %s", err);
    /* 48 latents in batches of 5 over 2 ranks: rounds of 10, the last one 5 + 3 */
    snprintf(cmd, sizeof cmd, "%s %s cache-latents --vae-ckpt %s/vae.safetensors --output %s/lat2.safetensors "
             "--max-images 48 --batch-size 5 && cmp %s/lat.safetensors %s/lat2.safetensors",
             mpirun, bin, tmp, tmp, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "cache-latents on 2 ranks differs from 1 process: %s", err);
    char ldm[1024];
    snprintf(ldm, sizeof ldm, "train-ldm --latents %s/lat.safetensors --sit-depth 2 --sit-hidden 32 --sit-heads 2 "
             "--projector-dim 32 --encoder-depth 1 --batch-size 8 --sampling-steps 0 --checkpointing-steps 3 "
             "--max-train-steps 6 --enc-ckpt %s/enc/encoder.safetensors --enc-heads 2 --output-dir %s", tmp, tmp, tmp);
    snprintf(cmd, sizeof cmd, "%s %s --exp-name ldm1", bin, ldm);
    CHECK(sh(cmd, err, sizeof err) == 0, "1-process train-ldm failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s %s %s --exp-name ldm2", mpirun, bin, ldm);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank train-ldm failed: %s", err);
    compare_runs("train-ldm", "ldm1/metrics.jsonl", "ldm2/metrics.jsonl", 6, 1e-4);

    /* sampling: 11 images in batches of 3 (rounds of 6 split 3 + 3; the last round 3 + 2) */
    const char *s = "sample --num-samples 11 --batch-size 3 --num-steps 4 --mode sde --no-ema";
    snprintf(cmd, sizeof cmd, "%s %s --ckpt %s/one/checkpoints/0000006.safetensors --sample-dir %s/s1", bin, s, tmp,
             tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "1-process sample failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s %s %s --ckpt %s/one/checkpoints/0000006.safetensors --sample-dir %s/s2", mpirun, bin,
             s, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank sample failed: %s", err);
    snprintf(cmd, sizeof cmd, "cd %s/s1 && find . -type f | sort | xargs cat | cksum > ../s1.sum && cd ../s2 && "
             "find . -type f | sort | xargs cat | cksum > ../s2.sum && cmp ../s1.sum ../s2.sum && "
             "test $(find . -name '*.png' | wc -l) -ge 11",
             tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank samples differ from 1-process samples (PNGs, npz, labels): %s", err);

    /* eval: the 11 samples against themselves in the CNN's features (batches of 2: rounds 2 + 2, the last 1 + 0) */
    const char *e = "eval --feature-net cnn --weights weights/fmnist-evalnet-cnn.safetensors --batch-size 2";
    snprintf(cmd, sizeof cmd, "%s %s --samples %s/s1/*.npz --ref %s/s1/*.npz --save-stats %s/e1.safetensors "
             "--json %s/e1.jsonl && %s %s %s --samples %s/s1/*.npz --ref %s/s1/*.npz --save-stats %s/e2.safetensors "
             "--json %s/e2.jsonl && cmp %s/e1.safetensors %s/e2.safetensors && cmp %s/e1.jsonl %s/e2.jsonl",
             bin, e, tmp, tmp, tmp, tmp, mpirun, bin, e, tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "eval on 2 ranks differs from 1 process (statistics or metrics): %s", err);

    /* reconstruct: 45 images in batches of 8 (rounds of 16; the last 8 + 5), posterior samples, rFD, a grid */
    const char *r = "reconstruct --vae-ckpt weights/fmnist-vae.safetensors --max-images 45 --batch-size 8 --sample "
                    "--seed 3 --grid-images 20 --feature-net cnn --weights weights/fmnist-evalnet-cnn.safetensors";
    snprintf(cmd, sizeof cmd, "%s %s --out-grid %s/r1.png --json %s/r1.jsonl && %s %s %s --out-grid %s/r2.png "
             "--json %s/r2.jsonl && cmp %s/r1.png %s/r2.png && cmp %s/r1.jsonl %s/r2.jsonl",
             bin, r, tmp, tmp, mpirun, bin, r, tmp, tmp, tmp, tmp, tmp, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "reconstruct on 2 ranks differs from 1 process (metrics or grid): %s", err);
}

/* Resuming: on the same number of ranks the resumed run equals the straight
 * one bit for bit; on one process it continues the same run (the loader
 * position counts global batches), equal up to fp32 reduction order. */
static void test_resume_across_world_sizes(void)
{
    char cmd[8192], err[8192], why[64] = "";
    const char *t = "train-ldm --latents %s/lat.safetensors --sit-depth 2 --sit-hidden 32 --sit-heads 2 "
                    "--projector-dim 32 --encoder-depth 1 --batch-size 8 --sampling-steps 0 --checkpointing-steps 3 "
                    "--output-dir %s";
    char base[1024];
    snprintf(base, sizeof base, t, tmp, tmp);
    snprintf(cmd, sizeof cmd, "%s %s %s --exp-name r-straight --max-train-steps 6", mpirun, bin, base);
    CHECK(sh(cmd, err, sizeof err) == 0, "2-rank straight run failed: %s", err);
    snprintf(cmd, sizeof cmd, "%s %s %s --exp-name r-half --max-train-steps 3 && cp -r %s/r-half %s/r-one && "
             "%s %s %s --exp-name r-half --max-train-steps 6 --resume-step -1 && "
             "%s %s --exp-name r-one --max-train-steps 6 --resume-step -1",
             mpirun, bin, base, tmp, tmp, mpirun, bin, base, bin, base);
    CHECK(sh(cmd, err, sizeof err) == 0, "resumed runs failed: %s", err);
    size_t na, nb;
    char *a = read_file_all(test_tmp_path("r-straight/metrics.jsonl"), &na);
    char *b = read_file_all(test_tmp_path("r-half/metrics.jsonl"), &nb);
    CHECK(na == nb && !memcmp(a, b, na), "2 ranks: the resumed run's metrics differ from the straight run's");
    free(a), free(b);
    double p = checkpoint_diff(test_tmp_path("r-straight/checkpoints/0000006.safetensors"),
                               test_tmp_path("r-half/checkpoints/0000006.safetensors"), "", NULL);
    CHECK(p == 0, "2 ranks: the resumed run's parameters differ from the straight run's by %.3g", p);
    int lines;
    double d = metrics_diff(test_tmp_path("r-straight/metrics.jsonl"), test_tmp_path("r-one/metrics.jsonl"), &lines);
    double rms;
    p = checkpoint_diff(test_tmp_path("r-straight/checkpoints/0000006.safetensors"),
                        test_tmp_path("r-one/checkpoints/0000006.safetensors"), "", &rms);
    snprintf(why, sizeof why, "%.3g / %.3g (rms %.3g)", d, p, rms);
    CHECK(lines == 6 && d < 1e-5 && p <= 2 * 1e-4 * 6 && rms <= 1e-4 / 100,
          "a 2-rank checkpoint resumed on 1 process: logged values / parameters differ by %s", why);
    printf("   resume: 2 ranks bit-identical; 2 ranks -> 1 process: logged values %.3g, parameters %.3g (rms %.3g)\n",
           d, p, rms);
}

/* This program under mpirun in one of its rank modes; its status, stdout and stderr. */
static int rank_mode(const char *args, char *out, size_t out_size, char *err, size_t err_size)
{
    char cmd[512];
    const char *b = getenv("BUILD");
    snprintf(cmd, sizeof cmd, "timeout 60 %s %s/tests/test_mpi %s", mpirun, b && *b ? b : "build", args);
    return run_command(cmd, out, out_size, err, err_size);
}

static void test_check_same_stops_diverged_ranks(void)
{
    static char out[1 << 14], err[1 << 14];
    int rc = rank_mode("--rank-check-same none", out, sizeof out, err, sizeof err);
    /* one report, rank 0's: the other ranks' stdout is silenced */
    CHECK(rc == 0 && strstr(out, "rank 0: the same") && !strstr(out, "rank 1"), "identical floats: status %d: %s%s",
          rc, out, err);
    const char *where[2] = {"first", "last"};
    for (int k = 0; k < 2; k++) {
        char args[64];
        snprintf(args, sizeof args, "--rank-check-same %s", where[k]);
        rc = rank_mode(args, out, sizeof out, err, sizeof err);
        CHECK(rc != 0 && rc != 124 && !strstr(out, "the same") &&
                  strstr(err, "the test's floats differ between the 2 processes (rank 1: differs from rank 0)"),
              "the %s byte changed on rank 1: status %d: %s%s", where[k], rc, out, err);
    }
}

static void test_chunked_collectives(void)
{
    static char out[1 << 14], err[1 << 14];
    int rc = rank_mode("--rank-chunks", out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "\n1 passed, 0 failed"), "collectives in chunks (status %d):\n%s%s", rc, out, err);
}

static void test_one_rank_dying_ends_the_job(void)
{
    static char out[1 << 14], err[1 << 14];
    int rc = rank_mode("--rank-die", out, sizeof out, err, sizeof err);
    CHECK(rc != 0 && rc != 124 && strstr(err, "rank 1 stops on purpose"),
          "rank 1 died while rank 0 waited: status %d (124: the job hung): %s", rc, err);
}

static void test_failures(void)
{
    char cmd[2048], err[8192];
    snprintf(cmd, sizeof cmd, "%s %s train " TINY " --batch-size 7 --output-dir %s --exp-name odd", mpirun, bin, tmp);
    int rc = sh(cmd, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "--batch-size 7: the global batch must divide evenly over the 2 processes"),
          "indivisible batch (status %d): %s", rc, err);
    snprintf(cmd, sizeof cmd, "%s %s prepare --data fashion-mnist --output x", mpirun, bin);
    rc = sh(cmd, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "'prepare' does not run over several processes yet"),
          "a one-process command under mpirun (status %d): %s", rc, err);
    /* Kill one rank after the first checkpoints: everything ends, non-zero, within seconds.  Whatever
     * happens, nothing of the job may outlive the test (a guard kills mpirun after 60 s, and the
     * ranks are killed at the end; the ^[^ ]*repae anchor keeps pkill off this shell and mpirun). */
    snprintf(cmd, sizeof cmd,
             "%s %s train " TINY " --checkpointing-steps 1 --max-train-steps 100000 --output-dir %s --exp-name killed "
             ">/dev/null 2>&1 & job=$!; i=0; "
             "while [ ! -e %s/killed/checkpoints/0000002.safetensors ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); "
             "done; pkill -9 -n -f '^[^ ]*repae train .*exp-name killed'; t0=$(date +%%s); "
             "( sleep 60; kill -9 $job 2>/dev/null ) & guard=$!; wait $job; rc=$?; t1=$(date +%%s); kill $guard 2>/dev/null; "
             "pkill -9 -f '^[^ ]*repae train .*exp-name killed' 2>/dev/null; "
             "echo \"status $rc after $((t1-t0)) s\" >&2; [ $rc -ne 0 ] && [ $((t1-t0)) -le 20 ]",
             mpirun, bin, tmp, tmp);
    rc = sh(cmd, err, sizeof err);
    CHECK(rc == 0, "killing one rank must end the job with a non-zero status within 20 s: %s", err);
    snprintf(cmd, sizeof cmd, "%s inspect %s/killed/checkpoints/0000002.safetensors", bin, tmp);
    CHECK(sh(cmd, err, sizeof err) == 0, "the checkpoint before the kill does not load: %s", err);
}

int main(int argc, char **argv)
{
    dist_init(&argc, &argv);
    if (argc > 1 && !strcmp(argv[1], "--rank-sync-bn"))
        return sync_bn_rank();
    if (argc > 2 && !strcmp(argv[1], "--rank-check-same"))
        return check_same_rank(argv[2]);
    if (argc > 1 && !strcmp(argv[1], "--rank-chunks"))
        return chunks_rank();
    if (argc > 1 && !strcmp(argv[1], "--rank-die"))
        return die_rank();
    if (!dist_available() || system("command -v mpirun >/dev/null 2>&1") != 0) {
        printf("   MPI is not in this build or mpirun is missing: nothing to test (the one-process program "
               "is tested by the other programs)\n");
        return test_summary();
    }
    /* Open MPI refuses root unless told; CI runs as root. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    if (!getenv("OMP_NUM_THREADS"))
        setenv("OMP_NUM_THREADS", "1", 1);
    /* make test-asan checks the ranks for leaks too.  Open MPI's plugins are
     * built without frame pointers, so the fast unwinder records their
     * allocations with one frame, often misnamed, which tests/lsan.supp
     * cannot match: the ranks take whole stacks (slower mallocs, here only). */
    const char *asan = getenv("ASAN_OPTIONS");
    if (asan && strstr(asan, "detect_leaks=1")) {
        static char opts[512];
        snprintf(opts, sizeof opts, "%s:fast_unwind_on_malloc=0", asan);
        setenv("ASAN_OPTIONS", opts, 1);
    }
    const char *b = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/repae", b && *b ? b : "build");
    tmp = test_tmp_dir("mpi");
    RUN(test_sync_batch_norm);
    RUN(test_check_same_stops_diverged_ranks);
    RUN(test_one_rank_dying_ends_the_job);
    RUN(test_chunked_collectives);
    RUN(test_train_two_ranks_equal_one);
    RUN(test_train_vae_two_ranks_equal_one);
    RUN(test_train_vae_with_discriminator_two_ranks);
    RUN(test_train_encoder_two_ranks_equal_one);
    RUN(test_train_ldm_and_sample);
    RUN(test_resume_across_world_sizes);
    RUN(test_failures);
    return test_summary();
}
