/* The latents-statistics module (src/train/latents_stats.c): the accepted
 * shapes ([C] and [1, C, 1, 1]), a write → read round trip, the checks that
 * name the file, tensor and channel, and save_vae_weights.py's BN rule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "test.h"
#include "train/latents_stats.h"

static const char *tmp;

static const char *write_stats(const char *name, int ndim, const int64_t *shape, const float *scale,
                               const float *bias)
{
    static char path[8][160];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 160, "%s/%s.safetensors", tmp, name);
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "latents_scale", ndim, shape, scale);
    st_writer_add_f32(w, "latents_bias", ndim, shape, bias);
    st_writer_save(w, p);
    st_writer_free(w);
    return p;
}

static void read4(void *path)
{
    float b[4], s[4];
    latents_stats_read(path, 4, b, s);
}

static void test_shapes_and_round_trip(void)
{
    float scale[4] = {0.5f, 1.0f, 2.0f, 4.0f}, bias[4] = {-1.0f, 0.0f, 0.25f, 3.0f}, b[4], s[4];
    latents_stats_read(write_stats("flat", 1, (int64_t[]){4}, scale, bias), 4, b, s);
    CHECK(!memcmp(b, bias, sizeof b) && !memcmp(s, scale, sizeof s), "[C] file read wrong");
    char path[160];
    snprintf(path, sizeof path, "%s/written.safetensors", tmp);
    latents_stats_write(path, bias, scale, 4, "test");
    memset(b, 0, sizeof b), memset(s, 0, sizeof s);
    latents_stats_read(path, 4, b, s);
    CHECK(!memcmp(b, bias, sizeof b) && !memcmp(s, scale, sizeof s), "write -> read did not round-trip");
    safetensors *st = safetensors_open(path);
    const st_tensor *t = safetensors_find(st, "latents_scale");
    CHECK(t && t->ndim == 4 && t->shape[1] == 4 && t->shape[0] == 1, "written shape is not [1, C, 1, 1]");
    safetensors_close(st);
    expect_die("[C,1]", read4, (void *)write_stats("col", 2, (int64_t[]){4, 1}, scale, bias),
               "has shape [4, 1]; expected [4] or [1, 4, 1, 1]");
    expect_die("wrong C", read4, (void *)write_stats("three", 1, (int64_t[]){3}, scale, bias), "has shape [3]");
    float bad[4] = {0.5f, 0.0f, 2.0f, 4.0f};
    expect_die("zero scale", read4, (void *)write_stats("zero", 1, (int64_t[]){4}, bad, bias),
               "latents_scale[1] = 0 must be positive and finite");
    float nanb[4] = {0, 0, NAN, 0};
    expect_die("NaN bias", read4, (void *)write_stats("nan", 1, (int64_t[]){4}, scale, nanb),
               "latents_bias[2] = nan must be finite");
}

static void bn_zero_var(void *unused)
{
    float m[2] = {0, 1}, v[2] = {1, 0}, b[2], s[2];
    latents_stats_from_bn(m, v, 2, b, s, "ckpt");
}

static void test_from_bn(void)
{
    float m[3] = {0.5f, -2.0f, 0}, v[3] = {4.0f, 0.25f, 1.0f}, b[3], s[3];
    latents_stats_from_bn(m, v, 3, b, s, "x");
    CHECK(b[0] == 0.5f && b[1] == -2.0f && s[0] == 0.5f && s[1] == 2.0f && s[2] == 1.0f,
          "bias = running_mean, scale = running_var^-1/2 (eps ignored)");
    expect_die("zero variance", bn_zero_var, NULL, "ckpt: bn.running_var[1] = 0");
}

int main(void)
{
    tmp = test_tmp_dir("lstats");
    RUN(test_shapes_and_round_trip);
    RUN(test_from_bn);
    return test_summary();
}
