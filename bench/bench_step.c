/* bench_step — one REPA-E training step (repae_step, spec §6.2) next to the
 * PyTorch loop of dev/ref/repae_step_ref.py (dev/ref/bench_torch_models.py
 * runs the same names).
 *
 * usage: bench_step --list
 *        bench_step NAME [TORCH_RESULTS]
 *
 * One benchmark per process (peak RSS = VmHWM at the end).  The small
 * configuration, batch 32 of random 32×32×3 uint8 images, 10 classes:
 *   VAE      ch 64, ch_mult 1,2,2, 1 ResnetBlock per level, z 4, attention
 *            in the mid blocks only (→ 4×8×8 latent)
 *   SiT      depth 6, width 384, 6 heads, patch 2 (16 tokens), encoder_depth 2,
 *            projector 2048 → 192
 *   encoder  DINOv2-style ViT at 32 px, patch 8 (16 tokens), width 192,
 *            depth 4, 3 heads (REPA targets; no resize, ImageNet mean/std)
 *   disc     PatchGAN ndf 64, n_layers 3
 *   no LPIPS
 * Names:
 *   repae_step_small_full_B32    encoder + GAN (every phase of the step)
 *   repae_step_small_plain_B32   no encoder, no GAN, no LPIPS: VAE L1+KL update,
 *                                SiT denoising update, EMA
 * One warm-up step, then the median of 5 (BENCH_REPS overrides).
 */
#include "bench_common.h"
#include "models/discriminator.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vit.h"
#include "train/repae_step.h"

#define B 32
#define IMG 32

typedef struct {
    repae_trainer t;
    uint8_t *images;
    int *labels;
} step_ctx;

static void run_step(void *p)
{
    step_ctx *c = p;
    repae_logs logs;
    repae_step(&c->t, c->images, c->labels, NULL, &logs);
}

static void bench_step(const char *name, bool full)
{
    /* VAE */
    vae_config vc;
    vae_preset("f8d4", &vc);
    vc.ch = 64, vc.n_levels = 3, vc.ch_mult[0] = 1, vc.ch_mult[1] = 2, vc.ch_mult[2] = 2;
    vc.num_res_blocks = 1, vc.z_channels = 4, vc.n_attn = 0, vc.resolution = IMG;
    vc.in_channels = vc.out_ch = 3, vc.norm_groups = 32;
    vae_config_check(&vc);
    vae v;
    vae_init(&v, &vc);
    vae_init_weights(&v, 1);
    /* encoder */
    vit enc;
    if (full) {
        vit_config ec = vit_preset("dinov2-vit-s", IMG);
        ec.patch = 8, ec.embed_dim = 192, ec.depth = 4, ec.heads = 3;
        vit_config_check(&ec);
        vit_build(&enc, &ec);
        vit_init_params(&enc, 2);
    }
    /* SiT */
    sit_config sc = sit_config_default();
    sc.depth = 6, sc.hidden = 384, sc.heads = 6, sc.patch = 2;
    sc.in_channels = 4, sc.input_size = IMG / 4, sc.num_classes = 10;
    sc.encoder_depth = 2, sc.projector_dim = 2048;
    sc.n_encoders = full ? 1 : 0, sc.z_dims[0] = 192;
    sit_config_check(&sc);
    sit s;
    sit_build(&s, &sc);
    float *sit_params = param_alloc(&s.table);
    sit_init_params(&s, sit_params, 3);
    /* discriminator */
    discriminator d;
    float *disc_params = NULL;
    if (full) {
        disc_build(&d, (disc_config){3, 64, 3});
        disc_params = param_alloc(&d.table);
        disc_init(&d, disc_params, 4);
    }
    repae_config rc = repae_config_default();
    rc.batch = B;
    rc.perceptual_weight = 0.0f;
    if (!full)
        rc.proj_coeff = rc.vae_align_proj_coeff = 0.0f;
    step_ctx c;
    repae_trainer_init(&c.t, &rc, &v, &s, sit_params, full ? &enc : NULL, full ? &d : NULL, disc_params, NULL, NULL,
                       IMG, IMG, 3);
    c.images = xmalloc((size_t)B * 3 * IMG * IMG);
    c.labels = xmalloc(B * sizeof(int));
    rng r = rng_new(5, 0);
    for (size_t i = 0; i < (size_t)B * 3 * IMG * IMG; i++)
        c.images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < B; i++)
        c.labels[i] = (int)rng_below(&r, 10);
    double ms = time_median(run_step, &c, bench_reps(5));
    char note[160];
    snprintf(note, sizeof note, "VAE %.2f M, SiT %.2f M params, arena %.0f MiB",
             param_count(&v.table, PARAM_TRAINABLE) / 1e6, sit_param_count(&s, full) / 1e6,
             c.t.ar.capacity / 1048576.0);
    bench_row(name, ms, peak_rss_kib(), note);
    repae_trainer_free(&c.t);
    free(c.images), free(c.labels), free(sit_params);
    sit_free(&s);
    vae_free(&v);
    if (full) {
        vit_free(&enc);
        disc_free(&d);
        free(disc_params);
    }
}

int main(int argc, char **argv)
{
    const char *names[] = {"repae_step_small_full_B32", "repae_step_small_plain_B32"};
    if (argc < 2 || !strcmp(argv[1], "--list")) {
        if (argc < 2)
            fprintf(stderr, "usage: bench_step --list | NAME [TORCH_RESULTS]\n");
        for (int i = 0; i < 2; i++)
            printf("%s\n", names[i]);
        return argc < 2;
    }
    if (argc > 2)
        load_torch(argv[2]);
    if (!strcmp(argv[1], names[0]))
        bench_step(argv[1], true);
    else if (!strcmp(argv[1], names[1]))
        bench_step(argv[1], false);
    else
        die("bench_step: unknown benchmark '%s' (see --list)", argv[1]);
    return 0;
}
