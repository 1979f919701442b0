/* The sampling glue (src/diffusion/sit_velocity.c): chunked SiT velocities
 * and chunked VAE decoding give every image the bits it gets alone, in
 * arenas of exactly the planned size; the last, partial chunk is padded;
 * denormalisation is x / scale + bias.  `repae sample` and the training
 * previews rely on these (a sample must not change with the batch size). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/sit_velocity.h"
#include "sit_problem.h"
#include "test.h"
#include "tiny_vae.h"

static sit_config tiny_sit(void)
{
    sit_config c = sit_config_default();
    c.depth = 2, c.hidden = 32, c.heads = 2, c.patch = 2;
    c.in_channels = 3, c.input_size = 8;
    c.num_classes = 10, c.encoder_depth = 1, c.projector_dim = 16;
    c.n_encoders = 1, c.z_dims[0] = 8;
    return c;
}

/* Velocities of rows [first, first + B) of (x, t, y) through
 * sit_velocity_fn with `chunk`, in an arena of exactly the planned size. */
static void velocities(const sit *m, const float *w, int chunk, const float *x, const float *t, const int *y,
                       int first, int B, float *v)
{
    const size_t n = (size_t)m->C * m->H * m->H;
    const sampler_config cfg = {.cfg_scale = 1.0};
    arena ar = arena_create(sit_velocity_arena_bytes(m, &cfg, B, chunk));
    sit_velocity_ctx ctx = {m, w, &ar, chunk, false};
    sit_velocity_fn(&ctx, v, x + first * n, t + first, y + first, B);
    CHECK(ar.used == 0, "the arena is given back (%zu bytes still used)", ar.used);
    /* Exactly planned: all of it is used when a partial chunk is padded. */
    if (chunk == 0 || B % chunk)
        CHECK(ar.high_water == ar.capacity, "chunk %d, %d rows: planned %zu bytes, used %zu", chunk, B, ar.capacity,
              ar.high_water);
    arena_free(&ar);
}

static void test_chunked_velocity_is_per_image(void)
{
    sit m;
    sit_config c = tiny_sit();
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_test_randomize(&m, w, 3, true);
    enum { B = 7 };
    const size_t n = (size_t)m.C * m.H * m.H;
    float *x = alloc_normal(B * n, 1.0f, 4), t[B], *v = alloc_zeros(B * n), *one = alloc_zeros(n);
    int y[B];
    for (int i = 0; i < B; i++)
        t[i] = 0.1f + 0.12f * i, y[i] = (3 * i) % 11; /* 10 is the null class */
    const int chunks[] = {3, 1, 7, 9};
    for (size_t k = 0; k < sizeof chunks / sizeof *chunks; k++) {
        velocities(&m, w, chunks[k], x, t, y, 0, B, v);
        int same = 1, finite = 1;
        for (int i = 0; i < B; i++) {
            velocities(&m, w, chunks[k], x, t, y, i, 1, one);
            same &= !memcmp(one, v + i * n, n * sizeof(float));
        }
        for (size_t i = 0; i < B * n; i++)
            finite &= isfinite(v[i]) && v[i] != 0.0f;
        CHECK(same && finite, "chunk %d: each of %d images gets the bits it gets alone (finite %d)", chunks[k], B,
              finite);
    }
    /* Without chunks the whole batch runs at once: the same values to rounding. */
    float *whole = alloc_zeros(B * n);
    velocities(&m, w, 0, x, t, y, 0, B, whole);
    check_close("no chunks against chunks of 3", whole, v, B * n, 1e-5, 1e-4);
    /* With guidance the planned arena holds a doubled batch. */
    const sampler_config guided = {.cfg_scale = 4.0};
    CHECK(sit_velocity_arena_bytes(&m, &guided, B, 0) == sit_velocity_plan_bytes(&m, 2 * B) &&
              sit_velocity_arena_bytes(&m, &(sampler_config){.cfg_scale = 1.0}, B, 0) == sit_velocity_plan_bytes(&m, B),
          "unchunked plans: doubled under guidance only");
    free(x), free(v), free(one), free(whole), free(w);
    sit_free(&m);
}

/* Decoding `N` latents from `first` with `chunk` (exactly planned arena). */
static void decode(const vae *v, const float *w, int chunk, const float *z, int first, int N, float *img)
{
    const int h = 4;
    const size_t nz = (size_t)v->cfg.z_channels * h * h;
    float *x = alloc_zeros(N * nz);
    memcpy(x, z + first * nz, N * nz * sizeof(float));
    arena ar = arena_create(decode_latents_arena_bytes(v, N, h, h, chunk));
    decode_latents(v, w, x, NULL, NULL, img, N, h, h, chunk, &ar);
    CHECK(ar.used == 0, "the decode arena is given back (%zu bytes still used)", ar.used);
    if (chunk == 0 || N % chunk)
        CHECK(ar.high_water == ar.capacity, "decode chunk %d, %d images: planned %zu bytes, used %zu", chunk, N,
              ar.capacity, ar.high_water);
    arena_free(&ar);
    free(x);
}

static void test_chunked_decode_is_per_image(void)
{
    vae v;
    vae_config c = tiny_vae_config();
    vae_build(&v, &c);
    float *w = param_alloc(&v.table);
    vae_init_weights(&v, w, 5);
    enum { N = 5 };
    int H, W;
    vae_image_size(&v, 4, 4, &H, &W);
    const size_t nz = (size_t)c.z_channels * 16, ni = (size_t)c.out_ch * H * W;
    float *z = alloc_normal(N * nz, 1.0f, 6), *img = alloc_zeros(N * ni), *one = alloc_zeros(ni);
    int same = 1;
    for (int chunk = 1; chunk <= 3; chunk++) { /* the last chunk of 3 pads 2 images */
        decode(&v, w, chunk, z, 0, N, img);
        for (int i = 0; i < N; i++) {
            decode(&v, w, chunk, z, i, 1, one);
            same &= !memcmp(one, img + i * ni, ni * sizeof(float));
        }
    }
    CHECK(same && H == 8 && W == 8, "chunks of 1, 2, 3: each of %d images decodes to the bits it gets alone (%dx%d)",
          N, H, W);
    float *whole = alloc_zeros(N * ni);
    decode(&v, w, 0, z, 0, N, whole);
    check_close("no chunks against chunks of 2", whole, img, N * ni, 1e-5, 1e-4);

    /* Normalised latents: denormalised first, then the same decode. */
    const float bias[3] = {0.5f, -1.0f, 2.0f}, scale[3] = {0.25f, 2.0f, 1.5f};
    float *normed = alloc_zeros(N * nz), *img2 = alloc_zeros(N * ni);
    for (int i = 0; i < N; i++)
        for (int ch = 0; ch < 3; ch++)
            for (int k = 0; k < 16; k++) {
                size_t at = (size_t)i * nz + ch * 16 + k;
                normed[at] = (z[at] - bias[ch]) * scale[ch];
            }
    float *back = alloc_zeros(N * nz);
    memcpy(back, normed, N * nz * sizeof(float));
    latents_denormalize(back, N, 3, 16, bias, scale);
    int exact = 1;
    for (size_t i = 0; i < N * nz; i++)
        exact &= back[i] == normed[i] / scale[(i / 16) % 3] + bias[(i / 16) % 3];
    check_close("denormalised latents", back, z, N * nz, 1e-6, 1e-6);
    CHECK(exact, "latents_denormalize computes x / scale + bias");
    arena ar = arena_create(decode_latents_arena_bytes(&v, N, 4, 4, 2));
    decode_latents(&v, w, normed, bias, scale, img2, N, 4, 4, 2, &ar);
    CHECK(!memcmp(normed, back, N * nz * sizeof(float)), "decode_latents denormalises in place");
    arena_reset(&ar, 0);
    decode_latents(&v, w, back, NULL, NULL, img, N, 4, 4, 2, &ar);
    CHECK(!memcmp(img, img2, N * ni * sizeof(float)), "a denormalised decode is the decode of the latents");
    arena_free(&ar);
    free(z), free(img), free(one), free(whole), free(normed), free(img2), free(back), free(w);
    vae_free(&v);
}

int main(void)
{
    RUN(test_chunked_velocity_is_per_image);
    RUN(test_chunked_decode_is_per_image);
    return test_summary();
}
