/* The training-time preview grid (src/train/preview.c, spec §6.2 "Preview
 * sampling"): the images are the spec's recipe built from its public parts
 * (noise and labels from the run's seed, Euler ODE with the given steps and
 * CFG over the whole interval [0, 1], the null class after the last label,
 * the SiT's eps-free latent statistics, the VAE decode, (x+1)/2 clamped,
 * ×255 + 0.5); each setting matters; the PNG tiles them in ceil(sqrt(N))
 * columns; a diverged model's NaNs are drawn black and reported, never cast;
 * images of the wrong size are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/error.h"
#include "diffusion/sampler.h"
#include "diffusion/sit_velocity.h"
#include "io/image.h"
#include "sit_problem.h"
#include "test.h"
#include "tiny_vae.h"
#include "train/preview.h"

typedef struct models {
    sit s;
    vae v;
    float *sw, *vw;
    int H, W;
} models;

/* A SiT on 4×4 latents of 3 channels and the tiny VAE (3 output channels,
 * so that the grid is an RGB PNG), both with random weights and non-trivial
 * latent statistics. */
static models make_models(void)
{
    models m;
    sit_config c = sit_config_default();
    c.depth = 1, c.hidden = 32, c.heads = 2, c.patch = 2;
    c.in_channels = 3, c.input_size = 4;
    c.num_classes = 6, c.encoder_depth = 1, c.projector_dim = 16;
    c.n_encoders = 1, c.z_dims[0] = 8;
    sit_build(&m.s, &c);
    m.sw = param_alloc(&m.s.table);
    sit_test_randomize(&m.s, m.sw, 21, true);
    vae_config vc = tiny_vae_config();
    vc.out_ch = 3;
    vae_build(&m.v, &vc);
    m.vw = param_alloc(&m.v.table);
    vae_init_weights(&m.v, m.vw, 22);
    vae_image_size(&m.v, 4, 4, &m.H, &m.W);
    return m;
}

static void free_models(models *m)
{
    free(m->sw), free(m->vw);
    sit_free(&m->s);
    vae_free(&m->v);
}

/* The spec's recipe from the sampler, the velocity glue and the decoder. */
static void recipe(const models *m, const preview_config *pc, uint8_t *out)
{
    const int N = pc->n_images, C = m->s.C, h = m->s.H;
    const size_t n = (size_t)C * h * h, npix = (size_t)N * m->v.cfg.out_ch * m->H * m->W;
    sampler_config cfg = sampler_config_default();
    cfg.mode = SAMPLER_ODE, cfg.num_steps = pc->num_steps, cfg.cfg_scale = pc->cfg_scale;
    cfg.guidance_low = 0.0, cfg.guidance_high = 1.0, cfg.null_class = m->s.cfg.num_classes;
    float *x = xmalloc(N * n * sizeof(float)), *img = xmalloc(npix * sizeof(float));
    int *y = xmalloc(N * sizeof(int));
    sampler_initial_noise(x, N, n, pc->seed, NULL);
    sampler_random_labels(y, N, m->s.cfg.num_classes, pc->seed, NULL);
    void *ws = xmalloc(sampler_workspace_bytes(&cfg, N, n));
    arena ar = arena_create(sit_velocity_arena_bytes(&m->s, &cfg, N, 0));
    sit_velocity_ctx ctx = {&m->s, m->sw, &ar, 0, false};
    sampler_run(&cfg, sit_velocity_fn, &ctx, x, y, N, n, NULL, ws);
    float bias[3], scale[3];
    sit_get_latent_stats(&m->s, m->sw, bias, scale);
    arena dec = arena_create(decode_latents_arena_bytes(&m->v, N, h, h, 0));
    decode_latents(&m->v, m->vw, x, bias, scale, img, N, h, h, 0, &dec);
    for (size_t i = 0; i < npix; i++) {
        float u = fminf(fmaxf((img[i] + 1.0f) / 2.0f, 0.0f), 1.0f);
        out[i] = (uint8_t)(u * 255.0f + 0.5f);
    }
    arena_free(&dec);
    arena_free(&ar);
    free(ws), free(x), free(img), free(y);
}

static size_t n_bytes(const models *m, int N) { return (size_t)N * m->v.cfg.out_ch * m->H * m->W; }

static void test_preview_is_the_recipe(void)
{
    models m = make_models();
    const preview_config pc = {.n_images = 5, .num_steps = 3, .cfg_scale = 4.0f, .seed = 7};
    const size_t nb = n_bytes(&m, 5);
    uint8_t *got = xmalloc(nb), *want = xmalloc(nb), *other = xmalloc(nb);
    preview_grid(&m.s, m.sw, &m.v, m.vw, &pc, m.H, m.W, got, NULL);
    recipe(&m, &pc, want);
    CHECK(!memcmp(got, want, nb), "the preview must be the spec's recipe, byte for byte");
    int lo = 255, hi = 0;
    for (size_t i = 0; i < nb; i++)
        lo = got[i] < lo ? got[i] : lo, hi = got[i] > hi ? got[i] : hi;
    CHECK(hi - lo > 20, "the images must not be flat (%d..%d)", lo, hi);
    /* Each setting changes the images; the same settings give the same bytes. */
    const preview_config changed[] = {
        {.n_images = 5, .num_steps = 3, .cfg_scale = 4.0f, .seed = 8},
        {.n_images = 5, .num_steps = 4, .cfg_scale = 4.0f, .seed = 7},
        {.n_images = 5, .num_steps = 3, .cfg_scale = 1.0f, .seed = 7},
    };
    const char *what[] = {"seed", "steps", "CFG scale"};
    for (int k = 0; k < 3; k++) {
        preview_grid(&m.s, m.sw, &m.v, m.vw, &changed[k], m.H, m.W, other, NULL);
        recipe(&m, &changed[k], want);
        CHECK(memcmp(other, got, nb) != 0 && !memcmp(other, want, nb), "another %s: other images, the recipe's",
              what[k]);
    }
    preview_grid(&m.s, m.sw, &m.v, m.vw, &pc, m.H, m.W, other, NULL);
    CHECK(!memcmp(other, got, nb), "the same settings must give the same bytes");
    /* The first image of a preview of 5 is the first of a preview of 2. */
    preview_grid(&m.s, m.sw, &m.v, m.vw, &(preview_config){2, 3, 4.0f, 7}, m.H, m.W, other, NULL);
    CHECK(!memcmp(other, got, n_bytes(&m, 1)), "the first image must not depend on the number of images");
    /* The latent statistics are applied: other statistics, other images. */
    float bias[3] = {0.5f, -0.25f, 0.125f}, scale[3] = {2.0f, 0.5f, 1.5f};
    sit_set_latent_stats(&m.s, m.sw, bias, scale);
    preview_grid(&m.s, m.sw, &m.v, m.vw, &pc, m.H, m.W, other, NULL);
    recipe(&m, &pc, want);
    CHECK(memcmp(other, got, nb) != 0 && !memcmp(other, want, nb), "other latent statistics: other images");
    free(got), free(want), free(other);
    free_models(&m);
}

/* The grid: ceil(sqrt(N)) columns, a 2-pixel black border, image i at
 * row i / cols, column i % cols. */
static void test_preview_png_grid(void)
{
    models m = make_models();
    test_tmp_dir("preview");
    const int Ns[] = {5, 4, 1, 10};
    for (size_t k = 0; k < sizeof Ns / sizeof *Ns; k++) {
        const int N = Ns[k], cols = N == 5 ? 3 : N == 4 ? 2 : N == 1 ? 1 : 4, rows = (N + cols - 1) / cols;
        const preview_config pc = {.n_images = N, .num_steps = 2, .cfg_scale = 4.0f, .seed = 3};
        uint8_t *img = xmalloc(n_bytes(&m, N));
        const char *png = test_tmp_path("grid.png");
        preview_grid(&m.s, m.sw, &m.v, m.vw, &pc, m.H, m.W, img, png);
        image im = image_read(png, 0);
        const int GH = rows * (m.H + 2) + 2, GW = cols * (m.W + 2) + 2;
        CHECK(im.channels == 3 && im.height == GH && im.width == GW, "N %d: grid %d×%d×%d, want 3×%d×%d", N,
              im.channels, im.height, im.width, GH, GW);
        int same = im.channels == 3 && im.height == GH && im.width == GW, border = same;
        for (int i = 0; same && i < N; i++)
            for (int c = 0; c < 3; c++)
                for (int yy = 0; yy < m.H; yy++)
                    same &= !memcmp(im.pixels + ((size_t)c * GH + 2 + (i / cols) * (m.H + 2) + yy) * GW + 2 +
                                        (i % cols) * (m.W + 2),
                                    img + (((size_t)i * 3 + c) * m.H + yy) * m.W, (size_t)m.W);
        for (int x = 0; border && x < GW; x++)
            border &= im.pixels[x] == 0 && im.pixels[GW + x] == 0;
        CHECK(same && border, "N %d: each image in its cell (%d), the border black (%d)", N, same, border);
        image_free(&im);
        free(img);
    }
    free_models(&m);
}

static void diverged_preview(void *ctx)
{
    models *m = ctx;
    const preview_config pc = {.n_images = 2, .num_steps = 2, .cfg_scale = 4.0f, .seed = 3};
    uint8_t *img = xmalloc(n_bytes(m, 2));
    memset(img, 7, n_bytes(m, 2));
    preview_grid(&m->s, m->sw, &m->v, m->vw, &pc, m->H, m->W, img, test_tmp_path("nan.png"));
    /* channel 0 of each image is NaN: black */
    const size_t plane = (size_t)m->H * m->W;
    int ok = 1;
    for (size_t i = 0; i < n_bytes(m, 2); i++)
        if ((i / plane) % 3 == 0)
            ok &= img[i] == 0;
    if (!ok)
        _exit(2); /* _exit: no leak check at exit (the harness's children end that way) */
}

static void wrong_size(void *ctx)
{
    models *m = ctx;
    const preview_config pc = {.n_images = 1, .num_steps = 1, .cfg_scale = 1.0f, .seed = 3};
    uint8_t img[4096];
    preview_grid(&m->s, m->sw, &m->v, m->vw, &pc, m->H, m->W / 2, img, NULL);
}

/* A VAE whose first output channel decodes NaN: those values drawn black
 * and one warning naming the file and the count; a size other than the
 * VAE's is refused. */
static void test_preview_diverged_and_misuse(void)
{
    models m = make_models();
    test_tmp_dir("preview");
    const param_entry *b = param_find(&m.v.table, "decoder.conv_out.bias");
    m.vw[b->offset] = NAN;
    char err[1024];
    int status = run_in_child(diverged_preview, &m, err, sizeof err);
    const size_t per_channel = (size_t)2 * m.H * m.W;
    char want[256];
    snprintf(want, sizeof want, "nan.png: %zu of %zu decoded values are NaN or infinite (drawn black)", per_channel,
             3 * per_channel);
    CHECK(status == 0 && strstr(err, "repae: warning: preview ") && strstr(err, want) && count_of(err, "warning") == 1,
          "NaN preview: status %d, stderr '%s', want '%s'", status, err, want);
    m.vw[b->offset] = 0.0f;
    expect_die("a grid of the wrong width", wrong_size, &m, "preview: 8×4 images of a SiT with 3 latent channels");
    free_models(&m);
}

int main(void)
{
    RUN(test_preview_is_the_recipe);
    RUN(test_preview_png_grid);
    RUN(test_preview_diverged_and_misuse);
    return test_summary();
}
