#include "diffusion/sit_velocity.h"

#include <string.h>

static size_t row_floats(const sit *s) { return (size_t)s->C * s->H * s->H; }

void sit_velocity_fn(void *p, float *v, const float *x, const float *t, const int *y, int B)
{
    sit_velocity_ctx *c = p;
    const int K = c->chunk;
    if (K <= 0) {
        sit_velocity(c->s, c->params, c->packed, c->ar, v, x, t, y, B);
        return;
    }
    const size_t n = row_floats(c->s);
    for (int r0 = 0; r0 < B; r0 += K) {
        int nr = B - r0 < K ? B - r0 : K;
        if (nr == K) {
            sit_velocity(c->s, c->params, c->packed, c->ar, v + (size_t)r0 * n, x + (size_t)r0 * n, t + r0, y + r0, K);
            continue;
        }
        /* The last, partial chunk: pad with copies of its last row. */
        size_t mark = arena_mark(c->ar);
        float *px = arena_floats(c->ar, (size_t)K * n), *pv = arena_floats(c->ar, (size_t)K * n);
        float *pt = arena_floats(c->ar, (size_t)K);
        int *py = arena_alloc(c->ar, (size_t)K * sizeof(int));
        for (int i = 0; i < K; i++) {
            int src = r0 + (i < nr ? i : nr - 1);
            memcpy(px + (size_t)i * n, x + (size_t)src * n, n * sizeof(float));
            pt[i] = t[src];
            py[i] = y[src];
        }
        sit_velocity(c->s, c->params, c->packed, c->ar, pv, px, pt, py, K);
        memcpy(v + (size_t)r0 * n, pv, (size_t)nr * n * sizeof(float));
        arena_reset(c->ar, mark);
    }
}

size_t sit_velocity_arena_bytes(const sit *s, const sampler_config *cfg, int B, int chunk)
{
    if (chunk <= 0)
        return sit_velocity_plan_bytes(s, cfg->cfg_scale > 1.0 ? 2 * B : B);
    const size_t n = row_floats(s);
    return 2 * arena_round((size_t)chunk * n * sizeof(float)) + 2 * arena_round((size_t)chunk * sizeof(float)) +
           sit_velocity_plan_bytes(s, chunk);
}

void latents_denormalize(float *x, int N, int C, size_t hw, const float *bias, const float *scale)
{
    for (int b = 0; b < N; b++)
        for (int c = 0; c < C; c++) {
            float *z = x + ((size_t)b * C + c) * hw;
            for (size_t i = 0; i < hw; i++)
                z[i] = z[i] / scale[c] + bias[c];
        }
}

size_t decode_latents_arena_bytes(const vae *v, int N, int h, int w, int chunk)
{
    int B = chunk > 0 ? chunk : N, H, W;
    vae_plan plan = vae_plan_memory(v, VAE_PASS_DECODE, B, h, w);
    size_t bytes = plan.saved + plan.scratch;
    if (chunk > 0) {
        vae_image_size(v, h, w, &H, &W);
        bytes += arena_round((size_t)B * v->cfg.z_channels * h * w * sizeof(float)) +
                 arena_round((size_t)B * v->cfg.out_ch * H * W * sizeof(float));
    }
    return bytes;
}

void decode_latents(const vae *v, const float *vae_params, float *x, const float *bias, const float *scale, float *img,
                    int N, int h, int w, int chunk, arena *ar)
{
    if (bias && scale)
        latents_denormalize(x, N, v->cfg.z_channels, (size_t)h * w, bias, scale);
    size_t mark = arena_mark(ar);
    if (chunk <= 0) {
        vae_decode(v, vae_params, x, img, N, h, w, ar);
        arena_reset(ar, mark);
        return;
    }
    int H, W;
    vae_image_size(v, h, w, &H, &W);
    const size_t nz = (size_t)v->cfg.z_channels * h * w, ni = (size_t)v->cfg.out_ch * H * W;
    for (int b0 = 0; b0 < N; b0 += chunk) {
        int nb = N - b0 < chunk ? N - b0 : chunk;
        if (nb == chunk) {
            vae_decode(v, vae_params, x + (size_t)b0 * nz, img + (size_t)b0 * ni, chunk, h, w, ar);
            arena_reset(ar, mark);
            continue;
        }
        float *pz = arena_floats(ar, (size_t)chunk * nz), *pi = arena_floats(ar, (size_t)chunk * ni);
        for (int i = 0; i < chunk; i++)
            memcpy(pz + (size_t)i * nz, x + (size_t)(b0 + (i < nb ? i : nb - 1)) * nz, nz * sizeof(float));
        vae_decode(v, vae_params, pz, pi, chunk, h, w, ar);
        memcpy(img + (size_t)b0 * ni, pi, (size_t)nb * ni * sizeof(float));
        arena_reset(ar, mark);
    }
}
