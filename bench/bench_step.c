/* bench_step — one REPA-E training step (repae_step, spec §6.2) next to the
 * PyTorch loop of dev/ref/repae_step_ref.py (dev/ref/bench_torch_models.py
 * runs the same names).
 *
 * usage: bench_step --list | --list-extra
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
 *
 * Not in --list but in --list-extra (so not in `make bench`: torch needs
 * 70-95 s per step there; `make bench-paper` runs it):
 *   repae_step_sitb2_256_B2      one REPA-E step at the paper's scale with
 *                                SiT-B/2: batch 2 of random 256×256×3 uint8
 *                                images, 1000 classes; SD-VAE f8d4 (latent
 *                                4×32×32), SiT-B/2 (encoder_depth 4,
 *                                projector 2048 → 768), DINOv2-B/14 at 224
 *                                (bicubic resize, the reference's
 *                                preprocessing), PatchGAN ndf 64 n_layers 3,
 *                                LPIPS (VGG16, full width, weight 1); random
 *                                weights of the right shapes (no pretrained
 *                                file is needed for a timing).  One warm-up,
 *                                median of 3.
 *
 * bench_step --phases [TORCH_RESULTS] times the parts of the full step
 * separately (not part of `make bench`; the torch side is
 * `bench_torch_models.py phases`): encoder forward, VAE forward+backward
 * (L1), the alignment pass through the frozen SiT into dz, the SiT training
 * forward+backward, the discriminator passes (ours reuse one forward, as the
 * step does), and clipping + AdamW of the three models + EMA.
 * BENCH_PHASE=phase_... runs that one alone (for `perf record`).
 */
#include "core/omp_spin.h"
#include "bench_common.h"
#include "diffusion/denoising_objective.h"
#include "models/discriminator.h"
#include "models/lpips.h"
#include "models/encoder_preprocess.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vit.h"
#include "ops/loss.h"
#include "train/adamw.h"
#include "train/ema.h"
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

/* The small configuration's models (see the top of the file). */
typedef struct {
    vae v;
    float *vae_params;
    vit enc;
    float *enc_params;
    sit s;
    float *sit_params;
    discriminator d;
    float *disc_params;
    bool full;
} small_models;

static void build_small(small_models *m, bool full)
{
    m->full = full;
    /* VAE */
    vae_config vc;
    vae_preset("f8d4", &vc);
    vc.ch = 64, vc.n_levels = 3, vc.ch_mult[0] = 1, vc.ch_mult[1] = 2, vc.ch_mult[2] = 2;
    vc.num_res_blocks = 1, vc.z_channels = 4, vc.n_attn = 0, vc.resolution = IMG;
    vc.in_channels = vc.out_ch = 3, vc.norm_groups = 32;
    vae_config_check(&vc);
    vae_build(&m->v, &vc);
    m->vae_params = param_alloc(&m->v.table);
    vae_init_weights(&m->v, m->vae_params, 1);
    /* encoder */
    if (full) {
        vit_config ec = vit_preset("dinov2-vit-s", IMG);
        ec.patch = 8, ec.embed_dim = 192, ec.depth = 4, ec.heads = 3;
        vit_config_check(&ec);
        vit_build(&m->enc, &ec);
        m->enc_params = param_alloc(&m->enc.table);
        vit_init_weights(&m->enc, m->enc_params, 2);
    }
    /* SiT */
    sit_config sc = sit_config_default();
    sc.depth = 6, sc.hidden = 384, sc.heads = 6, sc.patch = 2;
    sc.in_channels = 4, sc.input_size = IMG / 4, sc.num_classes = 10;
    sc.encoder_depth = 2, sc.projector_dim = 2048;
    sc.n_encoders = full ? 1 : 0, sc.z_dims[0] = 192;
    sit_config_check(&sc);
    sit_build(&m->s, &sc);
    m->sit_params = param_alloc(&m->s.table);
    sit_init_weights(&m->s, m->sit_params, 3);
    /* discriminator */
    m->disc_params = NULL;
    if (full) {
        disc_build(&m->d, &(disc_config){3, 64, 3});
        m->disc_params = param_alloc(&m->d.table);
        disc_init_weights(&m->d, m->disc_params, 4);
    }
}

static void free_small(small_models *m)
{
    free(m->sit_params);
    sit_free(&m->s);
    vae_free(&m->v);
    free(m->vae_params);
    if (m->full) {
        vit_free(&m->enc);
        free(m->enc_params);
        disc_free(&m->d);
        free(m->disc_params);
    }
}

/* n images of `pixels` uint8 values each, and their labels below `classes`. */
static void random_batch(uint8_t *images, int *labels, int n, size_t pixels, int classes)
{
    rng r = rng_new(5, 0);
    for (size_t i = 0; i < (size_t)n * pixels; i++)
        images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < n; i++)
        labels[i] = (int)rng_below(&r, (uint32_t)classes);
}

/* Times c's step (reps after one warm-up), prints the row, frees the
 * trainer and the batch. */
static void time_step_row(const char *name, step_ctx *c, int reps, const vae *v, const sit *s, bool projectors)
{
    double ms = time_median(run_step, c, bench_reps(reps));
    char note[160];
    snprintf(note, sizeof note, "VAE %.2f M, SiT %.2f M params, arena %.0f MiB",
             param_count(&v->table, PARAM_TRAINABLE) / 1e6, sit_param_count(s, projectors) / 1e6,
             c->t.ar.capacity / 1048576.0);
    bench_row(name, ms, peak_rss_kib(), note);
    repae_trainer_free(&c->t);
    free(c->images), free(c->labels);
}

/* ---- the paper's scale ---- */

enum { PAPER_B = 2, PAPER_IMG = 256, PAPER_CLASSES = 1000 };

typedef struct {
    vae v;
    vit enc;
    sit s;
    discriminator d;
    lpips lp;
    float *vae_params, *enc_params, *sit_params, *disc_params, *lpips_params;
} paper_models;

static void build_paper(paper_models *m)
{
    vae_config vc;
    vae_preset("f8d4", &vc);
    vc.resolution = PAPER_IMG;
    vae_config_check(&vc);
    vae_build(&m->v, &vc);
    m->vae_params = param_alloc(&m->v.table);
    vae_init_weights(&m->v, m->vae_params, 1);
    vit_config ec = vit_preset("dinov2-vit-b", encoder_input_size(ENC_PRE_DINOV2, PAPER_IMG));
    vit_config_check(&ec);
    vit_build(&m->enc, &ec);
    m->enc_params = param_alloc(&m->enc.table);
    vit_init_weights(&m->enc, m->enc_params, 2);
    sit_config sc = sit_config_default();
    sit_config_preset(&sc, "SiT-B/2");
    sc.in_channels = 4, sc.input_size = PAPER_IMG / 8, sc.num_classes = PAPER_CLASSES;
    sc.encoder_depth = 4, sc.projector_dim = 2048, sc.n_encoders = 1, sc.z_dims[0] = ec.embed_dim;
    sit_config_check(&sc);
    sit_build(&m->s, &sc);
    m->sit_params = param_alloc(&m->s.table);
    sit_init_weights(&m->s, m->sit_params, 3);
    disc_build(&m->d, &(disc_config){3, 64, 3});
    m->disc_params = param_alloc(&m->d.table);
    disc_init_weights(&m->d, m->disc_params, 4);
    lpips_build(&m->lp, 1);
    m->lpips_params = param_alloc(&m->lp.table);
    lpips_init_weights(&m->lp, m->lpips_params, 5);
}

static void free_paper(paper_models *m)
{
    vae_free(&m->v), vit_free(&m->enc), sit_free(&m->s), disc_free(&m->d), lpips_free(&m->lp);
    free(m->vae_params), free(m->enc_params), free(m->sit_params), free(m->disc_params), free(m->lpips_params);
}

static void bench_step_paper(const char *name)
{
    paper_models m;
    build_paper(&m);
    repae_config rc = repae_config_default();
    rc.batch = PAPER_B;
    rc.enc_pre = ENC_PRE_DINOV2;
    step_ctx c;
    repae_trainer_init(&c.t, &rc, &m.v, m.vae_params, &m.s, m.sit_params, &m.enc, m.enc_params, &m.d, m.disc_params,
                       &m.lp, m.lpips_params, PAPER_IMG, PAPER_IMG, 3);
    const size_t pixels = (size_t)3 * PAPER_IMG * PAPER_IMG;
    c.images = xmalloc(PAPER_B * pixels);
    c.labels = xmalloc(PAPER_B * sizeof(int));
    random_batch(c.images, c.labels, PAPER_B, pixels, PAPER_CLASSES);
    time_step_row(name, &c, 3, &m.v, &m.s, true);
    free_paper(&m);
}

static void bench_step(const char *name, bool full)
{
    small_models m;
    build_small(&m, full);
    repae_config rc = repae_config_default();
    rc.batch = B;
    rc.perceptual_weight = 0.0f;
    if (!full)
        rc.proj_coeff = rc.vae_align_proj_coeff = 0.0f;
    step_ctx c;
    repae_trainer_init(&c.t, &rc, &m.v, m.vae_params, &m.s, m.sit_params, full ? &m.enc : NULL,
                       full ? m.enc_params : NULL, full ? &m.d : NULL, m.disc_params, NULL, NULL, IMG, IMG, 3);
    c.images = xmalloc((size_t)B * 3 * IMG * IMG);
    c.labels = xmalloc(B * sizeof(int));
    random_batch(c.images, c.labels, B, (size_t)3 * IMG * IMG, 10);
    time_step_row(name, &c, 5, &m.v, &m.s, full);
    free_small(&m);
}

/* ---- the step's parts, timed separately ---- */

typedef struct {
    small_models *m;
    arena ar;
    float *x, *enc_in, *zs, *z, *d_recon, *d_z, *logits, *dlogits, *recon;
    float *vae_grads, *sit_grads, *disc_grads, *ema;
    int *labels;
    vae_acts va;
    rng r;
    adamw ov, os, od;
} phase_ctx;

static void ph_encoder(void *p)
{
    phase_ctx *c = p;
    arena_reset(&c->ar, 0);
    vit_acts a;
    vit_acts_alloc(&a, &c->m->enc, &c->ar, B, false);
    vit_forward(&c->m->enc, c->m->enc_params, &a, c->enc_in, c->zs, NULL, NULL, NULL);
}

static void ph_vae(void *p)
{
    phase_ctx *c = p;
    size_t n = (size_t)B * 3 * IMG * IMG;
    arena_reset(&c->ar, 0);
    grad_zero(&c->m->v.table, c->vae_grads);
    vae_forward(&c->m->v, c->m->vae_params, &c->va, c->x, NULL, &c->r, B, IMG, IMG, &c->ar);
    memset(c->d_recon, 0, n * sizeof(float));
    l1_mean_backward(c->d_recon, NULL, 1.0f, c->va.recon, c->x, n);
    vae_backward(&c->m->v, c->m->vae_params, &c->va, c->d_recon, NULL, NULL, NULL, c->vae_grads, NULL, &c->ar);
}

static void ph_sit(phase_ctx *c, bool align)
{
    arena_reset(&c->ar, 0);
    denoising_opts o = {.train = !align, .align_only = align};
    denoising_inputs in = {.z = c->z, .y = c->labels, .zs = {c->zs}, .rng = &c->r};
    denoising_pass a;
    if (!align)
        grad_zero(&c->m->s.table, c->sit_grads);
    denoising_objective_forward(&a, &c->m->s, c->m->sit_params, &c->ar, &o, &in, B);
    if (align)
        denoising_objective_backward(&c->m->s, c->m->sit_params, &a, &c->ar, 0.0f, 1.5f, NULL, c->d_z);
    else
        denoising_objective_backward(&c->m->s, c->m->sit_params, &a, &c->ar, 1.0f, 0.5f, c->sit_grads, NULL);
}
static void ph_sit_align(void *p) { ph_sit(p, true); }
static void ph_sit_train(void *p) { ph_sit(p, false); }

/* The GAN work of one step: D(recon) backward into recon only (generator
 * term), then D(x) and D(recon) backward into D's parameters (D step).  As
 * in repae_step, the D step reuses the generator term's D(recon) pass and
 * replays its running-statistics update (two forwards; torch's side runs
 * three). */
static void ph_disc(void *p)
{
    phase_ctx *c = p;
    discriminator *d = &c->m->d;
    float *w = c->m->disc_params;
    size_t nl = (size_t)B * disc_logits_h(d, IMG) * disc_logits_w(d, IMG);
    for (size_t i = 0; i < nl; i++)
        c->dlogits[i] = -1.0f / (float)nl;
    memset(c->d_recon, 0, (size_t)B * 3 * IMG * IMG * sizeof(float));
    arena_reset(&c->ar, 0);
    disc_acts fake, real;
    disc_forward(d, w, &fake, c->logits, c->recon, B, IMG, IMG, &c->ar);
    disc_backward(d, w, &fake, c->dlogits, NULL, c->d_recon);
    grad_zero(&d->table, c->disc_grads);
    disc_forward(d, w, &real, c->logits, c->x, B, IMG, IMG, &c->ar);
    disc_replay_running_stats(d, w, &fake);
    disc_backward(d, w, &real, c->dlogits, c->disc_grads, NULL);
    disc_backward(d, w, &fake, c->dlogits, c->disc_grads, NULL);
}

static void ph_optim(void *p)
{
    phase_ctx *c = p;
    small_models *m = c->m;
    grad_clip(&m->v.table, c->vae_grads, 1.0);
    adamw_step(&c->ov, m->vae_params, c->vae_grads);
    grad_clip(&m->d.table, c->disc_grads, 1.0);
    adamw_step(&c->od, m->disc_params, c->disc_grads);
    grad_clip(&m->s.table, c->sit_grads, 1.0);
    adamw_step(&c->os, m->sit_params, c->sit_grads);
    ema_update(&m->s.table, c->ema, m->sit_params, 0.9999f);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static void bench_phases(void)
{
    small_models m;
    build_small(&m, true);
    phase_ctx c = {.m = &m};
    size_t n = (size_t)B * 3 * IMG * IMG, nz = (size_t)B * 4 * (IMG / 4) * (IMG / 4);
    denoising_opts full = {.train = true}, align = {.align_only = true};
    vae_plan vp = vae_plan_memory(&m.v, VAE_PASS_TRAIN, B, IMG, IMG);
    size_t bytes = vp.saved + vp.scratch;
    bytes = max_sz(bytes, denoising_objective_plan_bytes(&m.s, B, &full));
    bytes = max_sz(bytes, denoising_objective_plan_bytes(&m.s, B, &align));
    bytes = max_sz(bytes, vit_plan_bytes(&m.enc, B, false));
    bytes = max_sz(bytes, 2 * disc_acts_bytes(&m.d, B, IMG, IMG)); /* fake and real passes */
    c.ar = arena_create(bytes + (1u << 20));
    c.r = rng_new(9, 0);
    uint8_t *u8 = xmalloc(n);
    c.labels = xmalloc(B * sizeof(int));
    random_batch(u8, c.labels, B, (size_t)3 * IMG * IMG, 10);
    c.x = xmalloc(n * sizeof(float)), c.enc_in = xmalloc(n * sizeof(float)), c.recon = xmalloc(n * sizeof(float));
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (size_t i = 0; i < n; i++)
        c.x[i] = u8[i] / 127.5f - 1.0f, c.recon[i] = 0.9f * c.x[i];
    encoder_normalize_u8(c.enc_in, u8, B, 3, IMG * IMG, mean, std);
    c.zs = bench_randn((size_t)B * m.s.T * 192, 31);
    c.z = bench_randn(nz, 32);
    c.d_recon = xmalloc(n * sizeof(float)), c.d_z = xcalloc(nz, sizeof(float));
    size_t nl = (size_t)B * disc_logits_h(&m.d, IMG) * disc_logits_w(&m.d, IMG);
    c.logits = xmalloc(nl * sizeof(float)), c.dlogits = xmalloc(nl * sizeof(float));
    c.vae_grads = param_alloc(&m.v.table), c.sit_grads = param_alloc(&m.s.table);
    c.disc_grads = param_alloc(&m.d.table), c.ema = param_alloc(&m.s.table);
    memcpy(c.ema, m.sit_params, m.s.table.total * sizeof(float));
    c.ov = adamw_create(&m.v.table, 1e-4f), c.os = adamw_create(&m.s.table, 1e-4f);
    c.od = adamw_create(&m.d.table, 1e-4f);
    struct {
        const char *name;
        void (*fn)(void *);
    } ph[] = {{"phase_encoder_fwd", ph_encoder},         {"phase_vae_fwd_bwd", ph_vae},
              {"phase_sit_align_fwd_bwd", ph_sit_align}, {"phase_sit_train_fwd_bwd", ph_sit_train},
              {"phase_disc_passes", ph_disc},         {"phase_clip_adamw_ema", ph_optim}};
    const char *only = getenv("BENCH_PHASE"); /* one phase alone, for a profile of it */
    for (size_t i = 0; i < sizeof ph / sizeof ph[0]; i++)
        if (!only || !strcmp(only, ph[i].name))
            bench_row(ph[i].name, time_median(ph[i].fn, &c, bench_reps(5)), -1, NULL);
    adamw_free(&c.ov), adamw_free(&c.os), adamw_free(&c.od);
    arena_free(&c.ar);
    free(u8), free(c.labels), free(c.x), free(c.enc_in), free(c.recon), free(c.zs), free(c.z), free(c.d_recon);
    free(c.d_z), free(c.logits), free(c.dlogits), free(c.vae_grads), free(c.sit_grads), free(c.disc_grads);
    free(c.ema);
    free_small(&m);
}

int main(int argc, char **argv)
{
    omp_spin_default(argv);
    const char *names[] = {"repae_step_small_full_B32", "repae_step_small_plain_B32"};
    const char *paper_name = "repae_step_sitb2_256_B2"; /* --list-extra: outside `make bench` */
    if (argc == 2 && !strcmp(argv[1], "--list-extra")) {
        printf("%s\n", paper_name);
        return 0;
    }
    if (argc < 2 || !strcmp(argv[1], "--list")) {
        if (argc < 2)
            fprintf(stderr, "usage: bench_step --list | --list-extra | NAME [TORCH_RESULTS] | --phases [TORCH_RESULTS]\n");
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            printf("%s\n", names[i]);
        return argc < 2;
    }
    if (argc > 2)
        load_torch(argv[2]);
    if (!strcmp(argv[1], "--phases")) {
        bench_phases();
        return 0;
    }
    if (!strcmp(argv[1], names[0]))
        bench_step(argv[1], true);
    else if (!strcmp(argv[1], names[1]))
        bench_step(argv[1], false);
    else if (!strcmp(argv[1], paper_name))
        bench_step_paper(argv[1]);
    else
        die("bench_step: unknown benchmark '%s' (see --list and --list-extra)", argv[1]);
    return 0;
}
