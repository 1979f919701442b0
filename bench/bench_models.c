/* bench_models — whole-model timings next to PyTorch (dev/ref/bench_torch_models.py
 * runs the same names on the reference modules of dev/ref/repae_ref/).
 *
 * usage: bench_models --list
 *        bench_models NAME [TORCH_RESULTS]
 *
 * One benchmark per process, so that the peak RSS printed (VmHWM at the
 * end) belongs to that benchmark alone.  Names:
 *
 *   sit_b2_train_B4          SiT-B/2 on a 4×32×32 latent, batch 4, training
 *                            forward of spec §5 in train mode (BN batch stats,
 *                            label dropout), full depth, one projector (2048
 *                            wide, z_dim 768, encoder_depth 4); loss =
 *                            mean(denoise) + 0.5·proj, backward into every
 *                            trainable parameter (gradients zeroed each time).
 *   vae_f8d4_train_256_B1    SD-VAE f8d4 at 256×256, batch 1: forward, L1
 *                            reconstruction loss, backward into every parameter.
 *   sample_sit_b2_ode50_cfg_B<n>
 *                            SiT-B/2 (no projectors) sampling n latents of
 *                            4×32×32: 50 Euler ODE steps, CFG 1.5 on every
 *                            step (the network sees 2n rows), sampler_run.
 *                            Time per run of n images; the note gives images/s.
 *                            n from BENCH_SAMPLE_BATCH (default 1).
 *
 *   host_steadiness_gemm_x60 a control, not a model: 60 identical GEMMs
 *                            1024×768 · (3072×768)ᵀ (SiT-B/2's fc1 forward)
 *                            per timed run, ~0.8 s here like a step row, 5
 *                            timed runs.  The work cannot vary (no
 *                            allocation, no data-dependent branch), so its
 *                            spread is the host's own: the floor under the
 *                            spread of every model and step row in that run.
 *
 * Repetitions: one warm-up, then the median of a few runs (BENCH_REPS
 * overrides).  The sampler's warm-up is one network call, not a whole run.
 */
#include "core/omp_spin.h"
#include "bench_common.h"
#include "core/arena.h"
#include "diffusion/denoising_objective.h"
#include "diffusion/sampler.h"
#include "models/sit.h"
#include "models/vae.h"
#include "ops/loss.h"

/* ---- the host's steadiness: the control workload (bench_common.h) ---- */

static void bench_steadiness(const char *name)
{
    control_work w = control_work_new();
    double ms = time_median(control_work_run, &w, bench_reps(5));
    char note[128];
    snprintf(note, sizeof note, "control: %d GEMMs %dx%dx%d per run, %.0f GFLOP/s", CONTROL_GEMMS, CONTROL_M,
             CONTROL_N, CONTROL_K, 2.0 * CONTROL_M * CONTROL_N * CONTROL_K * CONTROL_GEMMS / (ms * 1e6));
    bench_row(name, ms, -1, note);
    control_work_free(&w);
}

/* ---- SiT-B/2 training forward + backward ---- */

typedef struct {
    sit m;
    float *w, *grads;
    arena ar;
    denoising_opts opts;
    denoising_inputs in;
    rng r;
    int N;
} sit_train_ctx;

static void run_sit_train(void *p)
{
    sit_train_ctx *c = p;
    arena_reset(&c->ar, 0);
    memset(c->grads, 0, c->m.table.total * sizeof(float));
    denoising_pass a;
    denoising_objective_forward(&a, &c->m, c->w, &c->ar, &c->opts, &c->in, c->N);
    denoising_objective_backward(&c->m, c->w, &a, &c->ar, 1.0f, 0.5f, c->grads, NULL);
}

static void bench_sit_train(const char *name, int N)
{
    sit_train_ctx c = {0};
    sit_config cfg = sit_config_default();
    sit_config_preset(&cfg, "SiT-B/2");
    cfg.in_channels = 4, cfg.input_size = 32, cfg.num_classes = 1000;
    cfg.encoder_depth = 4, cfg.projector_dim = 2048, cfg.n_encoders = 1, cfg.z_dims[0] = 768;
    sit_build(&c.m, &cfg);
    c.w = param_alloc(&c.m.table);
    c.grads = param_alloc(&c.m.table);
    sit_init_weights(&c.m, c.w, 1);
    c.N = N;
    c.opts = (denoising_opts){.train = true, .align_only = false, .path = PATH_LINEAR,
                              .weighting = TIME_WEIGHTING_UNIFORM};
    c.ar = arena_create(denoising_objective_plan_bytes(&c.m, N, &c.opts));
    float *z = bench_randn((size_t)N * 4 * 32 * 32, 11);
    float *zs = bench_randn((size_t)N * c.m.T * 768, 12);
    int *y = xmalloc(N * sizeof(int));
    c.r = rng_new(13, 0);
    for (int i = 0; i < N; i++)
        y[i] = (int)rng_below(&c.r, 1000);
    c.in = (denoising_inputs){.z = z, .y = y, .zs = {zs}, .rng = &c.r};
    double ms = time_median(run_sit_train, &c, bench_reps(3));
    char note[128];
    snprintf(note, sizeof note, "%.1f M params", sit_param_count(&c.m, true) / 1e6);
    bench_row(name, ms, peak_rss_kib(), note);
    arena_free(&c.ar);
    free(z), free(zs), free(y), free(c.w), free(c.grads);
    sit_free(&c.m);
}

/* ---- VAE f8d4 forward + L1 backward ---- */

typedef struct {
    vae m;
    float *w;
    vae_acts a;
    arena ar;
    float *x, *d_recon, *grads;
    rng r;
    int B, H;
} vae_ctx;

static void run_vae(void *p)
{
    vae_ctx *c = p;
    size_t n = (size_t)c->B * 3 * c->H * c->H;
    arena_reset(&c->ar, 0);
    memset(c->grads, 0, c->m.table.total * sizeof(float));
    vae_forward(&c->m, c->w, &c->a, c->x, NULL, &c->r, c->B, c->H, c->H, &c->ar);
    volatile float loss = l1_mean_forward(c->a.recon, c->x, n);
    (void)loss;
    memset(c->d_recon, 0, n * sizeof(float));
    l1_mean_backward(c->d_recon, NULL, 1.0f, c->a.recon, c->x, n);
    vae_backward(&c->m, c->w, &c->a, c->d_recon, NULL, NULL, NULL, c->grads, NULL, &c->ar);
}

static void bench_vae_train(const char *name, int B, int H)
{
    vae_ctx c = {0};
    vae_config vc;
    vae_preset("f8d4", &vc);
    vae_build(&c.m, &vc);
    c.w = param_alloc(&c.m.table);
    vae_init_weights(&c.m, c.w, 1);
    vae_plan p = vae_plan_memory(&c.m, VAE_PASS_TRAIN, B, H, H);
    c.ar = arena_create(p.saved + p.scratch);
    c.B = B, c.H = H;
    size_t n = (size_t)B * 3 * H * H;
    c.x = xmalloc(n * sizeof(float));
    c.r = rng_new(21, 0);
    rng_uniform_fill(&c.r, c.x, n);
    for (size_t i = 0; i < n; i++)
        c.x[i] = 2 * c.x[i] - 1;
    c.d_recon = xmalloc(n * sizeof(float));
    c.grads = param_alloc(&c.m.table);
    double ms = time_median(run_vae, &c, bench_reps(3));
    char note[128];
    snprintf(note, sizeof note, "%.1f M params, arena %.0f MiB", param_count(&c.m.table, PARAM_TRAINABLE) / 1e6,
             (p.saved + p.scratch) / 1048576.0);
    bench_row(name, ms, peak_rss_kib(), note);
    arena_free(&c.ar);
    free(c.x), free(c.d_recon), free(c.grads), free(c.w);
    vae_free(&c.m);
}

/* ---- SiT-B/2 sampling: Euler ODE, CFG ---- */

typedef struct {
    const sit *s;
    const float *params;
    arena *ar;
    bool packed;
} velocity_ctx;

static void sit_velocity_cb(void *p, float *v, const float *x, const float *t, const int *y, int B)
{
    velocity_ctx *c = p;
    sit_velocity(c->s, c->params, c->packed, c->ar, v, x, t, y, B);
}

typedef struct {
    sampler_config cfg;
    velocity_ctx vc;
    float *x;
    int *y;
    void *ws;
    int B;
    size_t n;
} sample_ctx;

static void run_sample(void *p)
{
    sample_ctx *c = p;
    sampler_initial_noise(c->x, c->B, c->n, 7, NULL);
    sampler_run(&c->cfg, sit_velocity_cb, &c->vc, c->x, c->y, c->B, c->n, NULL, c->ws);
}

static void bench_sample(const char *name, int B)
{
    sample_ctx c = {0};
    sit m;
    sit_config cfg = sit_config_default();
    sit_config_preset(&cfg, "SiT-B/2");
    cfg.in_channels = 4, cfg.input_size = 32, cfg.num_classes = 1000, cfg.n_encoders = 0;
    sit_build(&m, &cfg);
    float *w = param_alloc(&m.table);
    sit_init_weights(&m, w, 1);
    c.cfg = sampler_config_default(); /* ODE, 50 Euler steps, CFG 1.5 on [0, 1], null class 1000 */
    c.B = B, c.n = (size_t)4 * 32 * 32;
    arena ar = arena_create(sit_velocity_plan_bytes(&m, 2 * B));
    /* as `repae sample` runs it: the weights packed once (sit.h) */
    c.vc = (velocity_ctx){&m, w, &ar, sit_pack_for_sampling(&m, w)};
    c.x = xmalloc((size_t)B * c.n * sizeof(float));
    c.y = xmalloc(B * sizeof(int));
    sampler_random_labels(c.y, B, 1000, 7, NULL);
    c.ws = xmalloc(sampler_workspace_bytes(&c.cfg, B, c.n));
    /* warm-up: one guided network call (2B rows) */
    float *x2 = xcalloc(2 * B * c.n, sizeof(float)), *v2 = xmalloc(2 * B * c.n * sizeof(float));
    float *t2 = xmalloc(2 * B * sizeof(float));
    int *y2 = xmalloc(2 * B * sizeof(int));
    for (int i = 0; i < 2 * B; i++)
        t2[i] = 0.5f, y2[i] = i < B ? c.y[i] : 1000;
    sit_velocity_cb(&c.vc, v2, x2, t2, y2, 2 * B);
    int reps = bench_reps(1);
    reps = reps > 64 ? 64 : reps;
    double t[64];
    perf_control("enable");
    cpu_snap c0 = cpu_snap_now();
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        run_sample(&c);
        t[i] = now_ms() - t0;
    }
    bench_others = cpu_others_frac(c0, cpu_snap_now());
    perf_control("disable");
    double ms = median_of(t, reps);
    double tms = torch_ms_of(name);
    char note[160];
    if (isnan(tms))
        snprintf(note, sizeof note, "img/s ours %.4f (%d NFE of %d rows)", B / (ms / 1e3), sampler_nfe(&c.cfg),
                 2 * B);
    else
        snprintf(note, sizeof note, "img/s ours %.4f, torch %.4f (%d NFE of %d rows)", B / (ms / 1e3),
                 B / (tms / 1e3), sampler_nfe(&c.cfg), 2 * B);
    bench_row(name, ms, peak_rss_kib(), note);
    arena_free(&ar);
    free(c.x), free(c.y), free(c.ws), free(x2), free(v2), free(t2), free(y2), free(w);
    sit_free(&m);
}

static int sample_batch(void)
{
    const char *s = getenv("BENCH_SAMPLE_BATCH");
    int b = s && *s ? atoi(s) : 1;
    return b < 1 ? 1 : b;
}

int main(int argc, char **argv)
{
    omp_spin_default(argv);
    char sample_name[64];
    snprintf(sample_name, sizeof sample_name, "sample_sit_b2_ode50_cfg_B%d", sample_batch());
    const char *names[] = {"host_steadiness_gemm_x60", "sit_b2_train_B4", "vae_f8d4_train_256_B1", sample_name};
    if (argc < 2 || !strcmp(argv[1], "--list")) {
        if (argc < 2)
            fprintf(stderr, "usage: bench_models --list | NAME [TORCH_RESULTS]\n");
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            printf("%s\n", names[i]);
        return argc < 2;
    }
    if (argc > 2)
        load_torch(argv[2]);
    const char *name = argv[1];
    if (!strcmp(name, names[0]))
        bench_steadiness(name);
    else if (!strcmp(name, names[1]))
        bench_sit_train(name, 4);
    else if (!strcmp(name, names[2]))
        bench_vae_train(name, 1, 256);
    else if (!strcmp(name, names[3]))
        bench_sample(name, sample_batch());
    else
        die("bench_models: unknown benchmark '%s' (see --list)", name);
    return 0;
}
