#include "data/latent_cache.h"

#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/safetensors.h"

void latent_cache_build(const char *path, const vae *v, const float *vae_params, const dataset *d, int batch,
                        const char *vae_source)
{
    if (d->channels != v->cfg.in_channels)
        die("cache-latents: the VAE takes %d-channel images, '%s' has %d", v->cfg.in_channels, d->source,
            d->channels);
    int H = d->height, W = d->width, h, w, C = v->cfg.z_channels;
    vae_latent_size(v, H, W, &h, &w);
    size_t img = (size_t)d->channels * H * W, lat = (size_t)C * h * w;
    float *mean = xmalloc((size_t)d->n * lat * sizeof(float)), *std = xmalloc((size_t)d->n * lat * sizeof(float));
    int64_t *labels = xmalloc((size_t)d->n * sizeof(int64_t));
    vae_plan plan = vae_plan_memory(v, VAE_PASS_ENCODE, batch, H, W);
    arena ar = arena_create(plan.saved + plan.scratch);
    float *x = xmalloc((size_t)batch * img * sizeof(float));
    /* Over several processes each round of world × batch images is split in
     * contiguous chunks, one per rank, gathered on rank 0 (the encoder is
     * per image, so the cache equals a one-process cache byte for byte). */
    const int rank = dist_rank(), world = dist_world();
    float *part = world > 1 ? xmalloc(2 * (size_t)batch * lat * sizeof(float)) : NULL;
    progress pb = progress_start("cache-latents", d->n, "img");
    for (int r0 = 0; r0 < d->n; r0 += world * batch) {
        int64_t first;
        int B = dist_round_chunk(r0, d->n, batch, &first), i0 = (int)first;
        for (size_t k = 0; k < (size_t)B * img; k++)
            x[k] = d->images[(size_t)i0 * img + k] / 127.5f - 1.0f;
        if (world == 1) {
            vae_encode(v, vae_params, x, mean + (size_t)i0 * lat, NULL, std + (size_t)i0 * lat, B, H, W, &ar);
        } else {
            float *pm = part, *ps = part + (size_t)batch * lat;
            if (B > 0)
                vae_encode(v, vae_params, x, pm, NULL, ps, B, H, W, &ar);
            dist_gather_bytes(pm, (size_t)B * lat * sizeof(float), rank == 0 ? mean + (size_t)r0 * lat : NULL);
            dist_gather_bytes(ps, (size_t)B * lat * sizeof(float), rank == 0 ? std + (size_t)r0 * lat : NULL);
        }
        int rn = d->n - r0 < world * batch ? d->n - r0 : world * batch;
        for (int b = 0; b < rn; b++)
            labels[r0 + b] = d->labels[r0 + b];
        progress_update(&pb, r0 + rn, NULL);
    }
    free(part);
    progress_finish(&pb);
    if (rank != 0) { /* rank 0 writes the cache */
        arena_free(&ar);
        free(x), free(mean), free(std), free(labels);
        return;
    }
    st_writer *wr = st_writer_new();
    int64_t shape[4] = {d->n, C, h, w};
    st_writer_add_f32(wr, "mean", 4, shape, mean);
    st_writer_add_f32(wr, "std", 4, shape, std);
    st_writer_add_i64(wr, "labels", 1, (int64_t[]){d->n}, labels);
    st_writer_set_metadata(wr, "format", "repae-latent-cache");
    st_writer_set_metadata(wr, "vae", vae_source ? vae_source : "");
    st_writer_set_metadata(wr, "source", d->source);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", d->num_classes);
    st_writer_set_metadata(wr, "num_classes", buf);
    st_writer_save(wr, path);
    st_writer_free(wr);
    arena_free(&ar);
    free(x), free(mean), free(std), free(labels);
}

latent_cache latent_cache_read(const char *path)
{
    safetensors *st = safetensors_open(path);
    const char *fmt = safetensors_meta(st, "format");
    if (!fmt || strcmp(fmt, "repae-latent-cache") != 0)
        die("'%s': not a latent cache written by 'repae cache-latents'", path);
    const st_tensor *m = safetensors_require(st, "mean"), *s = safetensors_require(st, "std"),
                    *l = safetensors_require(st, "labels");
    if (m->ndim != 4 || s->ndim != 4 || memcmp(m->shape, s->shape, 4 * sizeof(int64_t)) != 0 || l->ndim != 1 ||
        l->shape[0] != m->shape[0])
        die("'%s': mean, std and labels must be [N,C,h,w], [N,C,h,w] and [N]", path);
    for (int k = 0; k < 4; k++)
        if (m->shape[k] < 1 || m->shape[k] > INT32_MAX)
            die("'%s': mean has an empty or oversized dimension (%lld)", path, (long long)m->shape[k]);
    latent_cache c = {(int)m->shape[0], (int)m->shape[1], (int)m->shape[2], (int)m->shape[3], NULL, NULL, NULL};
    c.mean = xmalloc((size_t)m->numel * sizeof(float));
    c.std = xmalloc((size_t)s->numel * sizeof(float));
    safetensors_read_f32(st, m, c.mean);
    safetensors_read_f32(st, s, c.std);
    int64_t *lab = xmalloc((size_t)c.n * sizeof(int64_t));
    safetensors_read_i64(st, l, lab);
    c.labels = xmalloc((size_t)c.n * sizeof(int32_t));
    for (int i = 0; i < c.n; i++) {
        if (lab[i] < 0 || lab[i] > INT32_MAX)
            die("'%s': label %lld of latent %d is not a class index", path, (long long)lab[i], i);
        c.labels[i] = (int32_t)lab[i];
    }
    free(lab);
    for (size_t i = 0; i < (size_t)m->numel; i++)
        if (!isfinite(c.mean[i]) || !(c.std[i] >= 0) || !isfinite(c.std[i]))
            die("'%s': latent %zu is not finite (mean %g, std %g)", path, i, c.mean[i], c.std[i]);
    safetensors_close(st);
    return c;
}

void latent_cache_free(latent_cache *c)
{
    free(c->mean), free(c->std), free(c->labels);
    memset(c, 0, sizeof *c);
}
