/* The latent cache (data/latent_cache.h, spec §6.4) against the VAE run
 * directly: every image scaled to [-1, 1] as x/127.5 − 1 and encoded, in
 * batches whose last one is short; labels and sizes kept; a VAE for another
 * channel count refused.  (test_ldm_cli runs `cache-latents` and
 * test_diffusers_vae compares two VAE files through it, but neither checked
 * its numbers against the encoder's.) */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "data/latent_cache.h"
#include "models/params.h"
#include "test.h"
#include "tiny_vae.h"

/* tests/tiny_vae.c's VAE, without attention, for C-channel images. */
static vae_config tiny_config(int channels)
{
    vae_config c = tiny_vae_config();
    c.n_attn = 0;
    c.in_channels = c.out_ch = channels;
    return c;
}

static dataset images(int n, int C, int S)
{
    dataset d = {0};
    d.n = n, d.channels = C, d.height = d.width = S, d.num_classes = 7;
    d.images = xmalloc((size_t)n * C * S * S);
    d.labels = xmalloc((size_t)n * sizeof(int32_t));
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)n * C * S * S; i++) {
        s = s * 1103515245u + 12345u;
        d.images[i] = (uint8_t)(s >> 24);
    }
    for (int i = 0; i < n; i++)
        d.labels[i] = (i * 3) % 7;
    d.source = xstrdup("test images");
    return d;
}

static void test_cache_is_the_encoder(void)
{
    const int N = 5, C = 3, S = 16;
    vae_config cfg = tiny_config(C);
    vae v;
    vae_build(&v, &cfg);
    float *w = param_alloc(&v.table);
    param_init(&v.table, w, 3);
    dataset d = images(N, C, S);
    const char *path = test_tmp_path("cache.safetensors");
    latent_cache_build(path, &v, w, &d, 2, "tiny VAE");
    latent_cache c = latent_cache_read(path);
    int h, wd;
    vae_latent_size(&v, S, S, &h, &wd);
    CHECK(c.n == N && c.C == 3 && c.h == h && c.w == wd, "cache of %d × %d × %d × %d, want %d × 3 × %d × %d", c.n, c.C,
          c.h, c.w, N, h, wd);
    const size_t img = (size_t)C * S * S, lat = (size_t)3 * h * wd;
    vae_plan plan = vae_plan_memory(&v, VAE_PASS_ENCODE, 1, S, S);
    arena ar = arena_create(plan.saved + plan.scratch);
    float *x = xmalloc(img * sizeof(float)), *mean = xmalloc(lat * sizeof(float)), *std = xmalloc(lat * sizeof(float));
    int same = 1, labels_ok = 1;
    for (int i = 0; i < N && c.n == N; i++) {
        for (size_t k = 0; k < img; k++)
            x[k] = d.images[(size_t)i * img + k] / 127.5f - 1.0f;
        vae_encode(&v, w, x, mean, NULL, std, 1, S, S, &ar);
        /* The encoder is per image: one image alone gives the batch's bits. */
        same &= !memcmp(mean, c.mean + (size_t)i * lat, lat * sizeof(float)) &&
                !memcmp(std, c.std + (size_t)i * lat, lat * sizeof(float));
        labels_ok &= c.labels[i] == d.labels[i];
    }
    CHECK(same, "the cache's mean and std differ from the VAE's on x/127.5 - 1, image by image");
    CHECK(labels_ok, "the cache's labels differ from the dataset's");
    free(x), free(mean), free(std);
    arena_free(&ar);
    latent_cache_free(&c);
    dataset_free(&d);
    free(w);
    vae_free(&v);
}

static void build_grey_with_rgb_vae(void *ctx)
{
    (void)ctx;
    vae_config cfg = tiny_config(3);
    vae v;
    vae_build(&v, &cfg);
    float *w = param_alloc(&v.table);
    dataset d = images(2, 1, 16);
    latent_cache_build(test_tmp_path("grey.safetensors"), &v, w, &d, 2, NULL);
}

static void test_channels_must_match(void)
{
    expect_die("grey images, an RGB VAE", build_grey_with_rgb_vae, NULL,
               "cache-latents: the VAE takes 3-channel images, 'test images' has 1");
}

/* A hand-made cache: N latents of 1×1×2, with one thing wrong at a time. */
typedef struct bad_cache {
    const char *name, *format, *want;
    int64_t mean_shape[4], std_shape[4], n_labels;
    int mean_ndim;
    int64_t label;
    float mean0, std0;
} bad_cache;

static void read_cache_child(void *ctx)
{
    const bad_cache *b = ctx;
    float mean[8] = {b->mean0, 0, 0, 0, 0, 0, 0, 0}, std[8] = {b->std0, 1, 1, 1, 1, 1, 1, 1};
    int64_t labels[4] = {b->label, 0, 0, 0};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "mean", b->mean_ndim, b->mean_shape, mean);
    st_writer_add_f32(w, "std", 4, b->std_shape, std);
    st_writer_add_i64(w, "labels", 1, (int64_t[]){b->n_labels}, labels);
    if (b->format)
        st_writer_set_metadata(w, "format", b->format);
    const char *path = test_tmp_path(b->name);
    st_writer_save(w, path);
    st_writer_free(w);
    latent_cache c = latent_cache_read(path);
    latent_cache_free(&c);
}

static void test_hostile_caches_refused(void)
{
    const char *F = "repae-latent-cache";
    const bad_cache ok = {"ok.safetensors", F, NULL, {4, 1, 1, 2}, {4, 1, 1, 2}, 4, 4, 3, 0.5f, 1};
    char err[512];
    CHECK(run_in_child(read_cache_child, (void *)&ok, err, sizeof err) == 0, "a sound cache must read: %s", err);
    /* The largest label an int holds, and a std of 0 (a latent without noise), are sound too. */
    bad_cache edge = ok;
    edge.label = INT32_MAX, edge.std0 = 0;
    CHECK(run_in_child(read_cache_child, &edge, err, sizeof err) == 0, "label 2^31 - 1 and std 0 must read: %s", err);
    bad_cache cases[11];
    for (int i = 0; i < 11; i++)
        cases[i] = ok;
    cases[0].format = NULL, cases[0].want = "not a latent cache written by 'repae cache-latents'";
    cases[1].format = "repae-checkpoint", cases[1].want = "not a latent cache";
    cases[2].mean_ndim = 3, cases[2].want = "mean, std and labels must be [N,C,h,w], [N,C,h,w] and [N]";
    cases[3].std_shape[3] = 1, cases[3].std_shape[2] = 2, cases[3].want = "must be [N,C,h,w], [N,C,h,w] and [N]";
    cases[4].n_labels = 3, cases[4].want = "must be [N,C,h,w], [N,C,h,w] and [N]";
    cases[5].mean_shape[0] = cases[5].std_shape[0] = 0, cases[5].n_labels = 0;
    cases[5].want = "mean has an empty or oversized dimension (0)";
    cases[6].label = -1, cases[6].want = "label -1 of latent 0 is not a class index";
    cases[7].label = (int64_t)INT32_MAX + 1, cases[7].want = "label 2147483648 of latent 0 is not a class index";
    cases[8].mean0 = NAN, cases[8].want = "latent 0 is not finite (mean nan, std 1)";
    cases[9].std0 = -1, cases[9].want = "latent 0 is not finite (mean 0.5, std -1)";
    cases[10].std0 = INFINITY, cases[10].want = "latent 0 is not finite (mean 0.5, std inf)";
    for (int i = 0; i < 11; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%d.safetensors", i);
        cases[i].name = name;
        expect_die(cases[i].want, read_cache_child, &cases[i], cases[i].want);
    }
}

int main(void)
{
    test_tmp_dir("latent_cache");
    RUN(test_cache_is_the_encoder);
    RUN(test_channels_must_match);
    RUN(test_hostile_caches_refused);
    return test_summary();
}
