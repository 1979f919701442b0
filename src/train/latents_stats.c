#include "train/latents_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/weights_file.h"
#include "models/vae_diffusers.h"

void latents_stats_read(const char *path, int C, float *bias, float *scale)
{
    if (C > LATENTS_STATS_MAX_C)
        die("latents statistics for %d channels are not supported (at most %d)", C, LATENTS_STATS_MAX_C);
    if (vae_diffusers_is_dir(path)) {
        vae_diffusers_latents_stats(path, C, bias, scale, NULL);
        return;
    }
    safetensors *st = weights_open(path);
    const char *names[2] = {"latents_scale", "latents_bias"};
    float *dst[2] = {scale, bias};
    for (int k = 0; k < 2; k++) {
        const st_tensor *t = safetensors_find(st, names[k]);
        if (!t)
            die("'%s': no tensor '%s' (a latents-stats file has latents_scale and latents_bias, shape [1, C, 1, 1])",
                path, names[k]);
        bool flat = t->ndim == 1 && t->shape[0] == C;
        bool nchw = t->ndim == 4 && t->shape[0] == 1 && t->shape[1] == C && t->shape[2] == 1 && t->shape[3] == 1;
        if (!flat && !nchw) {
            char buf[96];
            die("'%s': '%s' has shape %s; expected [%d] or [1, %d, 1, 1] (the SiT has %d latent channels)", path,
                names[k], st_shape_str(t->ndim, t->shape, buf, sizeof buf), C, C, C);
        }
        safetensors_read_f32(st, t, dst[k]);
    }
    for (int c = 0; c < C; c++) {
        if (!(scale[c] > 0) || !isfinite(scale[c]))
            die("'%s': latents_scale[%d] = %g must be positive and finite", path, c, scale[c]);
        if (!isfinite(bias[c]))
            die("'%s': latents_bias[%d] = %g must be finite", path, c, bias[c]);
    }
    safetensors_close(st);
}

void latents_stats_write(const char *path, const float *bias, const float *scale, int C, const char *source)
{
    int64_t shape[4] = {1, C, 1, 1};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "latents_scale", 4, shape, scale);
    st_writer_add_f32(w, "latents_bias", 4, shape, bias);
    st_writer_set_metadata(w, "format", LATENTS_STATS_FORMAT);
    st_writer_set_metadata(w, "source", source);
    st_writer_save(w, path);
    st_writer_free(w);
}

void latents_stats_from_bn(const float *running_mean, const float *running_var, int C, float *bias, float *scale,
                           const char *what)
{
    for (int c = 0; c < C; c++) {
        if (!(running_var[c] > 0) || !isfinite(running_var[c]) || !isfinite(running_mean[c]))
            die("%s: bn.running_var[%d] = %g, running_mean[%d] = %g: not usable statistics", what, c,
                running_var[c], c, running_mean[c]);
        bias[c] = running_mean[c];
        scale[c] = (float)(1.0 / sqrt((double)running_var[c])); /* eps ignored, as extract_latents_stats */
    }
}

void latents_stats_estimate_vae(const dataset *ds, const vae *v, const float *vae_params, int max_images, float *bias,
                                float *scale)
{
    int n = ds->n < max_images ? ds->n : max_images, B = 32, C = v->cfg.z_channels;
    int H = ds->height, W = ds->width, h, w;
    if (C > LATENTS_STATS_MAX_C)
        die("latents statistics for %d channels are not supported", C);
    if (n < 1)
        die("'%s': no images to measure the latents statistics on", ds->source);
    vae_latent_size(v, H, W, &h, &w);
    size_t img = (size_t)ds->channels * H * W, lat = (size_t)C * h * w;
    vae_plan plan = vae_plan_memory(v, VAE_PASS_ENCODE, B, H, W);
    arena ar = arena_create(plan.saved + plan.scratch);
    float *x = xmalloc(B * img * sizeof(float)), *mean = xmalloc(B * lat * sizeof(float)),
          *std = xmalloc(B * lat * sizeof(float));
    double s1[256] = {0}, s2[256] = {0};
    long long cnt = 0;
    rng r = rng_new(0, 0x5747415453ull);
    for (int i0 = 0; i0 < n; i0 += B) {
        int b_n = n - i0 < B ? n - i0 : B; /* the last batch may be short */
        for (size_t k = 0; k < b_n * img; k++)
            x[k] = ds->images[(size_t)i0 * img + k] / 127.5f - 1.0f;
        vae_encode(v, vae_params, x, mean, NULL, std, b_n, H, W, &ar);
        for (int b = 0; b < b_n; b++)
            for (int c = 0; c < C; c++)
                for (int k = 0; k < h * w; k++) {
                    size_t idx = (size_t)b * lat + (size_t)c * h * w + k;
                    double z = mean[idx] + std[idx] * rng_normal(&r);
                    s1[c] += z, s2[c] += z * z;
                }
        cnt += b_n;
    }
    double m = (double)cnt * h * w;
    for (int c = 0; c < C; c++) {
        double mu = s1[c] / m, var = s2[c] / m - mu * mu;
        bias[c] = (float)mu;
        scale[c] = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
    }
    arena_free(&ar);
    free(x), free(mean), free(std);
}

void latents_stats_estimate_cache(const latent_cache *c, float *bias, float *scale)
{
    int n = c->n < 10000 ? c->n : 10000, hw = c->h * c->w;
    rng r = rng_new(0, 0x5354415453ull);
    for (int ch = 0; ch < c->C; ch++) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hw; k++) {
                size_t idx = ((size_t)i * c->C + ch) * hw + k;
                double z = c->mean[idx] + c->std[idx] * rng_normal(&r);
                s1 += z, s2 += z * z;
            }
        double m = (double)n * hw, mu = s1 / m, var = s2 / m - mu * mu;
        bias[ch] = (float)mu;
        scale[ch] = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
    }
}
