#include "train/preview.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "diffusion/sampler.h"
#include "diffusion/sit_velocity.h"
#include "io/image.h"

void preview_grid(const sit *s, const float *params, const vae *v, const float *vae_params, const preview_config *pc,
                  int H, int W, uint8_t *images_out, const char *path)
{
    int N = pc->n_images, C = s->C, h = s->H, Hv, Wv;
    vae_image_size(v, h, h, &Hv, &Wv);
    if (H != Hv || W != Wv || v->cfg.z_channels != C)
        die("preview: %d×%d images of a SiT with %d latent channels asked for; the VAE decodes %d channels to %d×%d",
            H, W, C, v->cfg.z_channels, Hv, Wv);
    size_t n = (size_t)C * h * h;
    sampler_config cfg = sampler_config_default();
    cfg.mode = SAMPLER_ODE;
    cfg.num_steps = pc->num_steps;
    cfg.cfg_scale = pc->cfg_scale;
    cfg.guidance_low = 0.0;
    cfg.guidance_high = 1.0;
    cfg.null_class = s->cfg.num_classes;
    float *x = xmalloc((size_t)N * n * sizeof(float));
    int *y = xmalloc((size_t)N * sizeof(int));
    sampler_initial_noise(x, N, n, pc->seed, NULL);
    sampler_random_labels(y, N, s->cfg.num_classes, pc->seed, NULL);
    void *ws = xmalloc(sampler_workspace_bytes(&cfg, N, n));
    arena ar = arena_create(sit_velocity_arena_bytes(s, &cfg, N, 0));
    sit_velocity_ctx ctx = {s, params, &ar, 0};
    sampler_run(&cfg, sit_velocity_fn, &ctx, x, y, N, n, NULL, ws);
    arena_free(&ar);
    free(ws);

    /* Denormalise with the eps-free statistics and decode. */
    float *bias = xmalloc((size_t)C * sizeof(float)), *scale = xmalloc((size_t)C * sizeof(float));
    sit_get_latent_stats(s, params, bias, scale);
    arena dec = arena_create(decode_latents_arena_bytes(v, N, h, h, 0));
    int Cout = v->cfg.out_ch;
    float *img = xmalloc((size_t)N * Cout * H * W * sizeof(float));
    decode_latents(v, vae_params, x, bias, scale, img, N, h, h, 0, &dec);
    arena_free(&dec);
    /* The preview maps (x+1)/2 clamped to [0,1], ×255 + 0.5 (rounded).  A
     * NaN or ±Inf (a diverged model) is drawn black and reported: its cast
     * to uint8 would be undefined. */
    size_t total = (size_t)N * Cout * H * W, bad = 0;
    for (size_t i = 0; i < total; i++) {
        float u = (img[i] + 1.0f) / 2.0f;
        if (!isfinite(u))
            u = 0, bad++;
        u = u < 0 ? 0 : (u > 1 ? 1 : u);
        images_out[i] = (uint8_t)(u * 255.0f + 0.5f);
    }
    if (bad)
        warn("preview%s%s: %zu of %zu decoded values are NaN or infinite (drawn black): the model has diverged",
             path ? " " : "", path ? path : "", bad, total);
    if (path) {
        int cols = (int)ceil(sqrt((double)N));
        image_grid_png(path, images_out, N, Cout, H, W, cols);
    }
    free(img);
    free(bias);
    free(scale);
    free(x);
    free(y);
}
