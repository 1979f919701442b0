/* The latent cache (data/latent_cache.h, spec §6.4) against the VAE run
 * directly: every image scaled to [-1, 1] as x/127.5 − 1 and encoded, in
 * batches whose last one is short; labels and sizes kept; a VAE for another
 * channel count refused.  (test_ldm_cli runs `cache-latents` and
 * test_diffusers_vae compares two VAE files through it, but neither checked
 * its numbers against the encoder's.) */
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

int main(void)
{
    test_tmp_dir("latent_cache");
    RUN(test_cache_is_the_encoder);
    RUN(test_channels_must_match);
    return test_summary();
}
