/* The latents-statistics module (src/train/latents_stats.c): the accepted
 * shapes ([C] and [1, C, 1, 1]), a write → read round trip, the checks that
 * name the file, tensor and channel, save_vae_weights.py's BN rule, and the
 * two estimates (over a dataset through a VAE, over a latent cache) against
 * the same posterior samples summed here image by image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
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

static void read257(void *path)
{
    float b[257], s[257];
    latents_stats_read(path, 257, b, s);
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
    const char *format = safetensors_meta(st, "format"), *source = safetensors_meta(st, "source");
    CHECK(format && !strcmp(format, LATENTS_STATS_FORMAT) && source && !strcmp(source, "test"),
          "written metadata: format '%s', source '%s'", format ? format : "(none)", source ? source : "(none)");
    safetensors_close(st);
    float eight[8] = {1, 1, 1, 1, 1, 1, 1, 1}; /* the 8 values of the two shapes below */
    expect_die("[2, 4, 1, 1]", read4, (void *)write_stats("nchw2", 4, (int64_t[]){2, 4, 1, 1}, eight, eight),
               "has shape [2, 4, 1, 1]; expected [4] or [1, 4, 1, 1]");
    expect_die("[1, 4, 1, 2]", read4, (void *)write_stats("nchw3", 4, (int64_t[]){1, 4, 1, 2}, eight, eight),
               "has shape [1, 4, 1, 2]");
    float neg0[4] = {-0.5f, 1.0f, 2.0f, 4.0f};
    expect_die("negative scale in channel 0", read4, (void *)write_stats("neg0", 1, (int64_t[]){4}, neg0, bias),
               "latents_scale[0] = -0.5 must be positive and finite");
    /* 256 channels are the most a file may hold; 257 are refused before it is opened. */
    float s256[256], b256[256], rs[257], rb[257];
    for (int c = 0; c < 256; c++)
        s256[c] = 1.0f + (float)c, b256[c] = -(float)c;
    latents_stats_read(write_stats("c256", 1, (int64_t[]){256}, s256, b256), 256, rb, rs);
    CHECK(!memcmp(rs, s256, sizeof s256) && !memcmp(rb, b256, sizeof b256), "a 256-channel file read wrong");
    expect_die("257 channels", read257, (void *)write_stats("c256b", 1, (int64_t[]){256}, s256, b256),
               "latents statistics for 257 channels are not supported (at most 256)");
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

/* ---- the estimates ---- */

/* mean and 1/std per channel of z = mean + std·ε, ε from `r` in (image, channel, position) order */
typedef struct moments {
    double s1[8], s2[8], m;
} moments;

static void moments_add(moments *mo, rng *r, const float *mean, const float *std, int C, int hw)
{
    for (int c = 0; c < C; c++)
        for (int k = 0; k < hw; k++) {
            double z = mean[c * hw + k] + std[c * hw + k] * rng_normal(r);
            mo->s1[c] += z, mo->s2[c] += z * z;
        }
    mo->m += hw;
}

static void moments_check(const char *what, const moments *mo, int C, const float *bias, const float *scale,
                          double rtol)
{
    for (int c = 0; c < C; c++) {
        double mu = mo->s1[c] / mo->m, var = mo->s2[c] / mo->m - mu * mu;
        double want_scale = 1.0 / sqrt(var > 1e-12 ? var : 1e-12);
        CHECK(fabs(bias[c] - mu) <= rtol * (fabs(mu) + 1e-3) && fabs(scale[c] - want_scale) <= rtol * want_scale,
              "%s: channel %d bias %.9g scale %.9g, want %.9g %.9g", what, c, (double)bias[c], (double)scale[c], mu,
              want_scale);
    }
}

typedef struct vae_case {
    vae v;
    float *w;
    dataset ds;
} vae_case;

static void vae_case_build(vae_case *k)
{
    vae_config vc = {.ch = 8, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4, .n_attn = 0,
                     .resolution = 16, .in_channels = 3, .out_ch = 3, .double_z = 1, .norm_groups = 4};
    vae_build(&k->v, &vc);
    k->w = param_alloc(&k->v.table);
    vae_init_weights(&k->v, k->w, 3);
    k->ds = (dataset){.n = 40, .channels = 3, .height = 16, .width = 16, .num_classes = 1};
    k->ds.images = xmalloc(40 * 3 * 256);
    rng r = rng_new(5, 6);
    for (int i = 0; i < 40 * 3 * 256; i++)
        k->ds.images[i] = (uint8_t)(rng_u32(&r) >> 24);
    k->ds.labels = xcalloc(40, sizeof(int32_t));
    k->ds.source = xstrdup("forty images");
}

static void vae_case_free(vae_case *k)
{
    dataset_free(&k->ds);
    vae_free(&k->v);
    free(k->w);
}

static void estimate_none(void *ctx)
{
    vae_case *k = ctx;
    float b[4], s[4];
    latents_stats_estimate_vae(&k->ds, &k->v, k->w, 0, b, s);
}

static void estimate_one(void *ctx)
{
    vae_case *k = ctx;
    float b[257], s[257];
    latents_stats_estimate_vae(&k->ds, &k->v, k->w, 1, b, s);
}

static void test_estimate_vae(void)
{
    vae_case k;
    vae_case_build(&k);
    /* 37 of 40 images (one batch of 32 and a short one of 5), all 40 when more are asked for, one batch
     * exactly, one image */
    const int uses[4] = {37, 100, 32, 1};
    for (int u = 0; u < 4; u++) {
        float bias[4], scale[4];
        latents_stats_estimate_vae(&k.ds, &k.v, k.w, uses[u], bias, scale);
        int n = uses[u] < k.ds.n ? uses[u] : k.ds.n;
        moments mo = {0};
        rng r = rng_new(0, 0x5747415453ull); /* the estimate's fixed stream */
        vae_plan plan = vae_plan_memory(&k.v, VAE_PASS_ENCODE, 1, 16, 16);
        arena ar = arena_create(plan.saved + plan.scratch);
        int h, w;
        vae_latent_size(&k.v, 16, 16, &h, &w);
        CHECK(h * w == 64, "a latent of %d×%d", h, w);
        float x[3 * 256], mean[4 * 64], std[4 * 64];
        for (int i = 0; i < n; i++) {
            for (int q = 0; q < 3 * 256; q++)
                x[q] = k.ds.images[(size_t)i * 3 * 256 + q] / 127.5f - 1.0f;
            arena_reset(&ar, 0);
            vae_encode(&k.v, k.w, x, mean, NULL, std, 1, 16, 16, &ar);
            moments_add(&mo, &r, mean, std, 4, 64);
        }
        arena_free(&ar);
        char what[64];
        snprintf(what, sizeof what, "VAE estimate over %d images", n);
        /* one image at a time here, batches there: the encoder's sums may differ in the last bits */
        moments_check(what, &mo, 4, bias, scale, 2e-5);
    }
    expect_die("no images", estimate_none, &k, "'forty images': no images to measure the latents statistics on");
    /* A VAE of 257 latent channels is refused before any image is encoded. */
    vae wide;
    vae_config vc = k.v.cfg;
    vc.z_channels = 257;
    vae_build(&wide, &vc);
    vae_case w257 = {.v = wide, .w = NULL, .ds = k.ds};
    expect_die("257 latent channels", estimate_one, &w257, "latents statistics for 257 channels are not supported");
    vae_free(&wide);
    vae_case_free(&k);
}

static void test_estimate_cache(void)
{
    /* 10,003 latents of 2 channels × 1×2: the estimate reads the first 10,000. */
    const int n = 10003, C = 2, hw = 2;
    latent_cache c = {.n = n, .C = C, .h = 1, .w = 2};
    c.mean = xmalloc((size_t)n * C * hw * sizeof(float));
    c.std = xmalloc((size_t)n * C * hw * sizeof(float));
    rng g = rng_new(7, 8);
    for (size_t i = 0; i < (size_t)n * C * hw; i++)
        c.mean[i] = 3.0f * rng_uniform(&g) - 1.0f, c.std[i] = 0.5f * rng_uniform(&g);
    float bias[2], scale[2];
    latents_stats_estimate_cache(&c, bias, scale);
    rng r = rng_new(0, 0x5354415453ull); /* the estimate's fixed stream: channel by channel */
    for (int ch = 0; ch < C; ch++) {
        moments mo = {0};
        for (int i = 0; i < 10000; i++)
            moments_add(&mo, &r, c.mean + ((size_t)i * C + ch) * hw, c.std + ((size_t)i * C + ch) * hw, 1, hw);
        char what[64];
        snprintf(what, sizeof what, "cache estimate, channel %d", ch);
        moments_check(what, &mo, 1, bias + ch, scale + ch, 1e-6);
    }
    /* Five latents, every sample the same per channel: the variance floor (1e-12) gives scale 1e6. */
    latent_cache flat = {.n = 5, .C = 2, .h = 1, .w = 2, .mean = c.mean, .std = c.std};
    for (int i = 0; i < 5 * 2 * 2; i++)
        c.mean[i] = (i / 2) % 2 ? -2.5f : 0.75f, c.std[i] = 0.0f;
    latents_stats_estimate_cache(&flat, bias, scale);
    CHECK(bias[0] == 0.75f && bias[1] == -2.5f && scale[0] == 1e6f && scale[1] == 1e6f,
          "constant latents: bias %g %g (want 0.75, -2.5), scale %g %g (want 1e6)", (double)bias[0], (double)bias[1],
          (double)scale[0], (double)scale[1]);
    free(c.mean), free(c.std);
}

int main(void)
{
    tmp = test_tmp_dir("lstats");
    RUN(test_shapes_and_round_trip);
    RUN(test_from_bn);
    RUN(test_estimate_vae);
    RUN(test_estimate_cache);
    return test_summary();
}
