/* The samplers (spec §9) against dev/ref/sampler_ref.py, the time grids bit
 * for bit against torch.linspace, per-image noise streams (the same images
 * whatever the batch split), and the training interpolant (spec §5).
 *
 * The network is the reference script's toy,
 *   v = (0.5·t − 0.75)·x + b[y]·x/(1 + x²) + c[y, channel],
 * evaluated here with the same float32 operations in the same order. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "diffusion/interpolant.h"
#include "diffusion/sampler.h"
#include "test.h"

typedef struct toy {
    const float *b; /* [K+1] */
    const float *c; /* [K+1, C] */
    int B, C, HW;   /* B: the un-doubled batch, to count guided calls */
    int calls, guided_calls, max_rows;
} toy;

static void toy_velocity(void *ctx, float *v, const float *x, const float *t, const int *y, int rows)
{
    toy *m = ctx;
    m->calls++;
    if (rows == 2 * m->B)
        m->guided_calls++;
    if (rows > m->max_rows)
        m->max_rows = rows;
    for (int b = 0; b < rows; b++) {
        float a = 0.5f * t[b] - 0.75f;
        float bb = m->b[y[b]];
        for (int ch = 0; ch < m->C; ch++) {
            float cc = m->c[y[b] * m->C + ch];
            size_t o = ((size_t)b * m->C + ch) * m->HW;
            for (int i = 0; i < m->HW; i++) {
                float xv = x[o + i];
                float q = xv / (1.0f + xv * xv);
                float out = a * xv + bb * q;
                v[o + i] = out + cc;
            }
        }
    }
}

typedef struct fixed_noise {
    const float *noise; /* [S-1, B, n] */
    int steps_available;
} fixed_noise;

static void noise_from_fixture(void *ctx, float *eps, int step, int B, size_t n)
{
    fixed_noise *fn = ctx;
    if (step >= fn->steps_available)
        die("test: SDE step %d has no fixture noise", step);
    memcpy(eps, fn->noise + (size_t)step * B * n, (size_t)B * n * sizeof(float));
}

static int64_t meta_int(const safetensors *st, const char *key)
{
    const char *s = safetensors_meta(st, key);
    if (!s)
        die("fixture lacks metadata '%s'", key);
    return atoll(s);
}

static int64_t fixture_scalar_i64(const safetensors *st, const char *name)
{
    const st_tensor *t = safetensors_require(st, name);
    int64_t v[1];
    if (t->numel != 1)
        die("fixture tensor %s: expected one element", name);
    safetensors_read_i64(st, t, v);
    return v[0];
}

typedef struct sampler_case {
    const char *name;
    sampler_mode mode;
    int heun, steps;
    double w, low, high;
} sampler_case;

/* The same table as CASES in dev/ref/sampler_ref.py. */
static const sampler_case CASES[] = {
    {"euler.nocfg", SAMPLER_ODE, 0, 10, 1.0, 0.0, 1.0},  {"euler.cfg", SAMPLER_ODE, 0, 10, 2.5, 0.0, 1.0},
    {"euler.cfgint", SAMPLER_ODE, 0, 10, 2.5, 0.0, 0.65}, {"heun.nocfg", SAMPLER_ODE, 1, 10, 1.0, 0.0, 1.0},
    {"heun.cfg", SAMPLER_ODE, 1, 10, 2.5, 0.0, 1.0},      {"heun.cfgint", SAMPLER_ODE, 1, 10, 2.5, 0.0, 0.65},
    {"sde.nocfg", SAMPLER_SDE, 0, 12, 1.0, 0.0, 1.0},     {"sde.cfg", SAMPLER_SDE, 0, 12, 2.5, 0.0, 1.0},
    {"sde.cfgint", SAMPLER_SDE, 0, 12, 2.5, 0.0, 0.65},   {"euler20.cfgint", SAMPLER_ODE, 0, 20, 2.5, 0.0, 0.65},
    {"heun.cfglow", SAMPLER_ODE, 1, 10, 2.5, 0.3, 0.7},   {"sde.w09", SAMPLER_SDE, 0, 12, 0.9, 0.0, 1.0},
    {"sde1.cfg", SAMPLER_SDE, 0, 1, 2.5, 0.0, 1.0},       {"sde2.cfg", SAMPLER_SDE, 0, 2, 2.5, 0.0, 1.0},
};

static void test_time_grids_match_torch_linspace(void)
{
    safetensors *st = fixture_open("diffusion/sampler");
    const struct {
        sampler_mode mode;
        int steps;
    } grids[] = {{SAMPLER_ODE, 1},  {SAMPLER_ODE, 2},  {SAMPLER_ODE, 7},  {SAMPLER_ODE, 10}, {SAMPLER_ODE, 15},
                 {SAMPLER_ODE, 20}, {SAMPLER_ODE, 50}, {SAMPLER_SDE, 1},  {SAMPLER_SDE, 2},  {SAMPLER_SDE, 8},
                 {SAMPLER_SDE, 12}, {SAMPLER_SDE, 16}, {SAMPLER_SDE, 250}};
    for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
        sampler_config cfg = sampler_config_default();
        cfg.mode = grids[g].mode;
        cfg.num_steps = grids[g].steps;
        char name[64];
        snprintf(name, sizeof name, "grid.%s.%d", sampler_mode_name(cfg.mode), cfg.num_steps);
        const st_tensor *t = safetensors_require(st, name);
        CHECK(t->numel == cfg.num_steps + 1, "%s: %lld points, want %d", name, (long long)t->numel,
              cfg.num_steps + 1);
        if (t->numel != cfg.num_steps + 1)
            continue;
        int64_t *want = xmalloc((size_t)t->numel * sizeof(int64_t));
        double *got = xmalloc((size_t)t->numel * sizeof(double));
        safetensors_read_i64(st, t, want);
        sampler_time_grid(&cfg, got);
        int bad = -1;
        for (int i = 0; i <= cfg.num_steps && bad < 0; i++) {
            int64_t bits;
            memcpy(&bits, &got[i], sizeof bits);
            if (bits != want[i])
                bad = i;
        }
        if (bad >= 0) {
            double w;
            memcpy(&w, &want[bad], sizeof w);
            CHECK(0, "%s[%d]: got %.17g, torch %.17g (must be bit-identical)", name, bad, got[bad], w);
        }
        free(want);
        free(got);
    }
    safetensors_close(st);
}

/* Tolerance: the C toy runs the torch toy's float32 operations in the same
 * order (no FMA contraction under -std=c11), the float64 sampler arithmetic
 * follows samplers.py's order and the time grid is torch.linspace's bit for
 * bit, so on this machine every case comes out bit-identical (max abs error
 * 0; TEST_VERBOSE=1 prints it).  What may differ elsewhere: libm's cos/sin
 * in the cosine score, by an ulp.  An ulp-level change
 * in one network call grows at most by the guidance factor (2.5) and the
 * toy flow's Lipschitz bound over unit time (|∂v/∂x| ≲ 2, e² ≈ 7): about
 * 1e-6 at |x| ≈ 5.  1e-5 absolute + 1e-5 relative leaves that margin while
 * any formula, ordering or guided-step error moves results by 1e-2 or more
 * (a one-ulp grid change at a guidance bound moves them by 0.25). */
static void test_samplers_match_reference(void)
{
    safetensors *st = fixture_open("diffusion/sampler");
    const int B = (int)meta_int(st, "B"), C = (int)meta_int(st, "C"), H = (int)meta_int(st, "H"),
              W = (int)meta_int(st, "W"), K = (int)meta_int(st, "K"), S = (int)meta_int(st, "sde_steps");
    const size_t n = (size_t)C * H * W;
    float *b = fixture_f32(st, "coef.b", NULL);
    float *c = fixture_f32(st, "coef.c", NULL);
    float *x0 = fixture_f32(st, "x0", NULL);
    size_t noise_numel;
    float *noise = fixture_f32(st, "sde_noise", &noise_numel);
    CHECK(noise_numel == (size_t)(S - 1) * B * n, "sde_noise has %zu elements", noise_numel);
    if (B > 16)
        die("test: fixture batch %d > 16", B);
    int64_t y64[16];
    int y[16];
    safetensors_read_i64(st, safetensors_require(st, "y"), y64);
    for (int i = 0; i < B; i++)
        y[i] = (int)y64[i];
    float *x = xmalloc((size_t)B * n * sizeof(float));
    double worst = 0;

    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        for (int p = 0; p < 2; p++) {
            const sampler_case *sc = &CASES[k];
            sampler_config cfg = sampler_config_default();
            cfg.mode = sc->mode;
            cfg.heun = sc->heun;
            cfg.num_steps = sc->steps;
            cfg.cfg_scale = sc->w;
            cfg.guidance_low = sc->low;
            cfg.guidance_high = sc->high;
            cfg.path = p ? PATH_COSINE : PATH_LINEAR;
            cfg.null_class = K;
            char name[128];
            snprintf(name, sizeof name, "%s.%s", sc->name, path_type_name(cfg.path));

            toy m = {.b = b, .c = c, .B = B, .C = C, .HW = H * W};
            fixed_noise fn = {.noise = noise, .steps_available = S - 1};
            sampler_noise src = {.fn = noise_from_fixture, .ctx = &fn};
            void *ws = xmalloc(sampler_workspace_bytes(&cfg, B, n));
            memcpy(x, x0, (size_t)B * n * sizeof(float));
            int nfe = sampler_run(&cfg, toy_velocity, &m, x, y, B, n, &src, ws);
            free(ws);

            char key[160];
            snprintf(key, sizeof key, "%s.out", name);
            fixture_check(st, key, x, (size_t)B * n, 1e-5, 1e-5);
            size_t m_n;
            float *want = fixture_f32(st, key, &m_n);
            for (size_t i = 0; i < m_n; i++)
                worst = fmax(worst, fabs((double)x[i] - want[i]));
            free(want);
            snprintf(key, sizeof key, "%s.nfe", name);
            int64_t want_nfe = fixture_scalar_i64(st, key);
            CHECK(nfe == want_nfe && m.calls == want_nfe && sampler_nfe(&cfg) == want_nfe,
                  "%s: NFE returned %d, counted %d, predicted %d, reference %lld", name, nfe, m.calls,
                  sampler_nfe(&cfg), (long long)want_nfe);
            snprintf(key, sizeof key, "%s.guided_calls", name);
            int64_t want_guided = fixture_scalar_i64(st, key);
            CHECK(m.guided_calls == want_guided, "%s: %d guided (doubled-batch) calls, reference %lld", name,
                  m.guided_calls, (long long)want_guided);
            CHECK(m.max_rows == (want_guided ? 2 * B : B), "%s: largest network batch %d", name, m.max_rows);
        }
    }
    if (getenv("TEST_VERBOSE"))
        printf("       sampler outputs vs torch: max abs err %.3g over %zu cases\n", worst,
               2 * sizeof CASES / sizeof CASES[0]);
    free(b);
    free(c);
    free(x0);
    free(noise);
    free(x);
    safetensors_close(st);
}

/* Samples `count` images with global indices first..first+count-1. */
static void sample_range(const sampler_config *cfg, float *x, int *y, int first, int count, size_t n, uint64_t seed,
                         const float *b, const float *c, int C, int HW)
{
    int64_t index[64];
    for (int i = 0; i < count; i++)
        index[i] = first + i;
    sampler_initial_noise(x, count, n, seed, index);
    sampler_random_labels(y, count, 5, seed, index);
    toy m = {.b = b, .c = c, .B = count, .C = C, .HW = HW};
    sampler_noise src = {.seed = seed, .image_index = index};
    void *ws = xmalloc(sampler_workspace_bytes(cfg, count, n));
    sampler_run(cfg, toy_velocity, &m, x, y, count, n, &src, ws);
    free(ws);
}

static void test_same_images_whatever_the_batch_split(void)
{
    const int C = 3, H = 4, W = 4, N = 8;
    const size_t n = (size_t)C * H * W;
    const float b[6] = {0.3f, -0.5f, 0.8f, -0.1f, 0.6f, 0.0f};
    float c[18];
    for (int i = 0; i < 18; i++)
        c[i] = 0.05f * (float)(i % 7) - 0.15f;
    for (int mode = 0; mode < 3; mode++) {
        sampler_config cfg = sampler_config_default();
        cfg.mode = mode == 2 ? SAMPLER_SDE : SAMPLER_ODE;
        cfg.heun = mode == 1;
        cfg.num_steps = 16;
        cfg.cfg_scale = 2.0;
        cfg.guidance_high = 0.7;
        cfg.null_class = 5;
        float *one = xmalloc(N * n * sizeof(float)), *two = xmalloc(N * n * sizeof(float));
        float *other_seed = xmalloc(N * n * sizeof(float));
        int y1[8], y2[8], y3[8];
        sample_range(&cfg, one, y1, 0, 8, n, 77, b, c, C, H * W);
        sample_range(&cfg, two, y2, 0, 4, n, 77, b, c, C, H * W);
        sample_range(&cfg, two + 4 * n, y2 + 4, 4, 4, n, 77, b, c, C, H * W);
        sample_range(&cfg, other_seed, y3, 0, 8, n, 78, b, c, C, H * W);
        CHECK(memcmp(y1, y2, sizeof y1) == 0, "%s: labels depend on the batch split", sampler_mode_name(cfg.mode));
        CHECK(memcmp(one, two, N * n * sizeof(float)) == 0, "%s%s: one batch of 8 and two of 4 give different images",
              sampler_mode_name(cfg.mode), cfg.heun ? " heun" : "");
        CHECK(memcmp(one, other_seed, n * sizeof(float)) != 0, "%s: seeds 77 and 78 give the same first image",
              sampler_mode_name(cfg.mode));
        /* Image 5 sampled alone (batch of one, index 5) is image 5 of the batch. */
        float alone[48];
        int ya;
        sample_range(&cfg, alone, &ya, 5, 1, n, 77, b, c, C, H * W);
        CHECK(ya == y1[5] && memcmp(alone, one + 5 * n, n * sizeof(float)) == 0,
              "%s: image 5 alone differs from image 5 in the batch", sampler_mode_name(cfg.mode));
        free(one);
        free(two);
        free(other_seed);
    }
}

/* Noise streams: N(0,1) moments; distinct per image, per SDE step and from
 * the initial noise; labels cover the classes. */
static void test_noise_streams(void)
{
    const int B = 4;
    const size_t n = 20000;
    int64_t index[4] = {0, 1, 2, 1000000};
    float *x = xmalloc(B * n * sizeof(float)), *e0 = xmalloc(B * n * sizeof(float)),
          *e1 = xmalloc(B * n * sizeof(float));
    sampler_initial_noise(x, B, n, 5, index);
    sampler_step_noise(e0, 0, B, n, 5, index);
    sampler_step_noise(e1, 1, B, n, 5, index);
    const float *all[3] = {x, e0, e1};
    for (int k = 0; k < 3; k++) {
        double s = 0, s2 = 0;
        for (size_t i = 0; i < B * n; i++)
            s += all[k][i], s2 += (double)all[k][i] * all[k][i];
        double mean = s / (B * n), var = s2 / (B * n) - mean * mean;
        /* 80,000 draws: the standard error of the mean is 0.0035. */
        CHECK(fabs(mean) < 0.02 && fabs(var - 1) < 0.03, "noise %d: mean %g var %g", k, mean, var);
    }
    CHECK(memcmp(x, x + n, 64) != 0, "images 0 and 1 share their initial noise");
    CHECK(memcmp(x, e0, 64) != 0 && memcmp(e0, e1, 64) != 0 && memcmp(e0, e0 + n, 64) != 0,
          "step noises repeat the initial noise, another step's or another image's");

    int64_t many[400];
    for (int i = 0; i < 400; i++)
        many[i] = i;
    int ys[400], counts[50] = {0};
    sampler_random_labels(ys, 400, 50, 9, many);
    int in_range = 1;
    for (int i = 0; i < 400; i++) {
        in_range &= ys[i] >= 0 && ys[i] < 50;
        if (ys[i] >= 0 && ys[i] < 50)
            counts[ys[i]]++;
    }
    int empty = 0;
    for (int k = 0; k < 50; k++)
        empty += counts[k] == 0;
    CHECK(in_range, "labels out of [0, 50)");
    /* 400 draws over 50 classes: P(a class is empty) = (49/50)^400 = 3e-4. */
    CHECK(empty < 3, "labels: %d of 50 classes never drawn in 400 images", empty);
    free(x);
    free(e0);
    free(e1);
}

typedef struct stream_noise {
    uint64_t seed;
    const int64_t *index;
    int calls;
} stream_noise;

static void noise_via_callback(void *ctx, float *eps, int step, int B, size_t n)
{
    stream_noise *s = ctx;
    CHECK(step == s->calls, "SDE noise requested for step %d, expected %d", step, s->calls);
    s->calls++;
    sampler_step_noise(eps, step, B, n, s->seed, s->index);
}

/* The default SDE noise source is sampler_step_noise, one call per step but
 * the last (noiseless); zero noise gives another result. */
static void test_sde_default_noise_source(void)
{
    const int B = 2, C = 1, HW = 8;
    const size_t n = (size_t)C * HW;
    const float b[3] = {0.2f, -0.3f, 0.1f}, c[3] = {0.1f, -0.1f, 0.0f};
    sampler_config cfg = sampler_config_default();
    cfg.mode = SAMPLER_SDE;
    cfg.num_steps = 5;
    cfg.null_class = 2;
    int y[2] = {0, 1};
    float x0[16], a[16], via[16], z[16];
    int64_t idx[2] = {7, 3};
    sampler_initial_noise(x0, B, n, 3, idx);
    void *ws = xmalloc(sampler_workspace_bytes(&cfg, B, n));
    toy m = {.b = b, .c = c, .B = B, .C = C, .HW = HW};

    memcpy(a, x0, sizeof a);
    sampler_noise src = {.seed = 3, .image_index = idx};
    sampler_run(&cfg, toy_velocity, &m, a, y, B, n, &src, ws);

    stream_noise sn = {.seed = 3, .index = idx};
    sampler_noise cb = {.fn = noise_via_callback, .ctx = &sn};
    memcpy(via, x0, sizeof via);
    sampler_run(&cfg, toy_velocity, &m, via, y, B, n, &cb, ws);
    CHECK(sn.calls == cfg.num_steps - 1, "%d noise draws for %d SDE steps", sn.calls, cfg.num_steps);
    CHECK(memcmp(a, via, sizeof a) == 0, "default noise source differs from sampler_step_noise");

    float zeros[4 * 16] = {0};
    fixed_noise fz = {.noise = zeros, .steps_available = 4};
    sampler_noise zsrc = {.fn = noise_from_fixture, .ctx = &fz};
    memcpy(z, x0, sizeof z);
    sampler_run(&cfg, toy_velocity, &m, z, y, B, n, &zsrc, ws);
    CHECK(memcmp(a, z, sizeof a) != 0, "SDE with stream noise equals the noiseless run");

    /* The ODE needs no noise source. */
    cfg.mode = SAMPLER_ODE;
    memcpy(a, x0, sizeof a);
    int nfe = sampler_run(&cfg, toy_velocity, &m, a, y, B, n, NULL, ws);
    CHECK(nfe == 5, "ODE NFE %d", nfe);
    free(ws);
}

static void test_interpolant(void)
{
    safetensors *st = fixture_open("diffusion/interpolant");
    size_t nx, nt;
    float *x0 = fixture_f32(st, "x0", &nx), *eps = fixture_f32(st, "eps", NULL), *t = fixture_f32(st, "t", &nt);
    int B = (int)nt;
    size_t n = nx / nt;
    float *xt = xmalloc(nx * sizeof(float)), *vt = xmalloc(nx * sizeof(float));
    for (int p = 0; p < 2; p++) {
        path_type path = p ? PATH_COSINE : PATH_LINEAR;
        interpolant_forward(path, xt, vt, x0, eps, t, B, n);
        char key[64];
        /* Same float32 formula as torch; cosf/sinf may differ from torch's
         * by an ulp: 1e-6. */
        snprintf(key, sizeof key, "%s.xt", path_type_name(path));
        fixture_check(st, key, xt, nx, 1e-6, 1e-6);
        snprintf(key, sizeof key, "%s.vt", path_type_name(path));
        fixture_check(st, key, vt, nx, 1e-6, 1e-6);
        /* α', σ' are the derivatives of α, σ (central differences). */
        for (double tt = 0.05; tt < 1; tt += 0.1) {
            const double h = 1e-6;
            interp_coeffs k = interpolant_coeffs(path, tt), kp = interpolant_coeffs(path, tt + h),
                          km = interpolant_coeffs(path, tt - h);
            double da = (kp.alpha - km.alpha) / (2 * h), ds = (kp.sigma - km.sigma) / (2 * h);
            CHECK(fabs(da - k.d_alpha) < 1e-7 && fabs(ds - k.d_sigma) < 1e-7,
                  "%s t=%g: alpha' %g vs fd %g, sigma' %g vs fd %g", path_type_name(path), tt, k.d_alpha, da,
                  k.d_sigma, ds);
        }
        interp_coeffs k0 = interpolant_coeffs(path, 0), k1 = interpolant_coeffs(path, 1);
        CHECK(k0.alpha == 1 && k0.sigma == 0 && fabs(k1.alpha) < 1e-15 && k1.sigma == 1,
              "%s: endpoints alpha(0)=%g sigma(0)=%g alpha(1)=%g sigma(1)=%g", path_type_name(path), k0.alpha,
              k0.sigma, k1.alpha, k1.sigma);
    }
    free(x0);
    free(eps);
    free(t);
    free(xt);
    free(vt);
    safetensors_close(st);
}

static void test_defaults_and_parsing(void)
{
    sampler_config cfg = sampler_config_default();
    CHECK(cfg.mode == SAMPLER_ODE && cfg.num_steps == 50 && cfg.cfg_scale == 1.5 && cfg.guidance_low == 0 &&
              cfg.guidance_high == 1 && cfg.path == PATH_LINEAR && !cfg.heun && cfg.null_class == 1000,
          "defaults differ from generate.py's");
    CHECK(sampler_mode_parse("sde") == SAMPLER_SDE && sampler_mode_parse("ode") == SAMPLER_ODE, "mode names");
    CHECK(path_type_parse("cosine") == PATH_COSINE && path_type_parse("linear") == PATH_LINEAR, "path names");
    cfg.heun = 1;
    cfg.num_steps = 250;
    CHECK(sampler_nfe(&cfg) == 499, "Heun NFE %d", sampler_nfe(&cfg));
    CHECK(sampler_guided(&cfg, 1.0) && sampler_guided(&cfg, 0.0), "CFG 1.5 on [0,1] must guide at both ends");
    cfg.cfg_scale = 1.0;
    CHECK(!sampler_guided(&cfg, 0.5), "cfg_scale 1 must not guide");
}

static void die_bad_mode(void *ctx) { sampler_mode_parse(ctx); }
static void die_bad_path(void *ctx) { path_type_parse(ctx); }
static void die_bad_config(void *ctx) { sampler_config_check(ctx); }

static void test_bad_configuration_dies(void)
{
    expect_die("mode 'euler'", die_bad_mode, "euler", "unknown sampler mode 'euler'");
    expect_die("path 'vp'", die_bad_path, "vp", "unknown path type 'vp'");
    sampler_config cfg = sampler_config_default();
    cfg.num_steps = 0;
    expect_die("0 steps", die_bad_config, &cfg, "num_steps");
    cfg = sampler_config_default();
    cfg.mode = SAMPLER_SDE;
    cfg.heun = 1;
    expect_die("heun with sde", die_bad_config, &cfg, "Heun");
    /* Each guidance number alone non-finite; a null class only under guidance. */
    for (int k = 0; k < 3; k++) {
        cfg = sampler_config_default();
        double *v = k == 0 ? &cfg.cfg_scale : k == 1 ? &cfg.guidance_low : &cfg.guidance_high;
        *v = k == 1 ? -INFINITY : NAN;
        expect_die("a non-finite guidance number", die_bad_config, &cfg, "must be finite");
    }
    cfg = sampler_config_default();
    cfg.null_class = -1;
    expect_die("guidance without a null class", die_bad_config, &cfg, "null_class must be >= 0 under guidance");
    char err[512];
    cfg.cfg_scale = 1.0; /* no guidance: no null class needed */
    CHECK(run_in_child(die_bad_config, &cfg, err, sizeof err) == 0, "cfg_scale 1 without a null class: %s", err);
    cfg.cfg_scale = 1.5, cfg.null_class = 0; /* class 0 is a valid null class */
    CHECK(run_in_child(die_bad_config, &cfg, err, sizeof err) == 0, "null class 0: %s", err);
}

/* The streams are part of what a seed means: image i's noise and label come
 * from rng_new(seed, SAMPLER_STREAM + i) (sampler.h), so a run's images can
 * be reproduced one by one by index, by any later version.  These values
 * were written by this code (session 31) and must never change. */
static void test_noise_streams_pinned(void)
{
    int64_t idx[3] = {0, 1, 1000000};
    float x[12], e[12];
    int y[3];
    sampler_initial_noise(x, 3, 4, 5, idx);
    sampler_step_noise(e, 3, 3, 4, 5, idx);
    sampler_random_labels(y, 3, 1000, 5, idx);
    const float want_x[12] = {2.14562201f,   0.595507562f, -0.749492407f, -1.18295789f,
                              -0.184136674f, 1.7153796f,   0.17951192f,   0.305281818f,
                              -0.602475882f, -0.292667449f, 0.17051217f,  1.60043955f};
    const float want_e[12] = {2.32138276f, -0.397744209f, -0.52047354f, 0.0536885113f,
                              0.362302393f, 0.126305684f, 0.345551401f, 0.19942756f,
                              -2.55333185f, -0.261605173f, 1.00160265f, 1.25529027f};
    for (int i = 0; i < 12; i++) {
        CHECK(x[i] == want_x[i], "initial noise of image index %lld, element %d: %.9g, pinned %.9g",
              (long long)idx[i / 4], i % 4, x[i], want_x[i]);
        CHECK(e[i] == want_e[i], "step-3 noise of image index %lld, element %d: %.9g, pinned %.9g",
              (long long)idx[i / 4], i % 4, e[i], want_e[i]);
    }
    CHECK(y[0] == 887 && y[1] == 235 && y[2] == 492, "labels %d %d %d, pinned 887 235 492", y[0], y[1], y[2]);
    /* One class: every label is 0, and asking for it is not an error. */
    int one[3] = {-1, -1, -1};
    sampler_random_labels(one, 3, 1, 5, idx);
    CHECK(one[0] == 0 && one[1] == 0 && one[2] == 0, "one class: labels %d %d %d", one[0], one[1], one[2]);
}

/* What the network is handed: its input, output, times and labels are
 * separate 8-byte-aligned regions inside the workspace (a network that
 * writes its output before it has read all its input must not see its
 * input change), and the workspace the sampler asks for holds its float64
 * state, direction and Heun's predictor and second direction ([B, n] each),
 * the network's input and output ([2B, n] float each), the SDE noise
 * ([B, n]) and the times and labels of 2B rows. */
typedef struct strict_net {
    toy m;
    const char *ws;
    size_t ws_bytes, n;
    int calls_checked;
} strict_net;

static int inside(const strict_net *s, const void *p, size_t bytes)
{
    const char *c = p;
    return c >= s->ws && c + bytes <= s->ws + s->ws_bytes;
}

static int disjoint(const void *a, size_t na, const void *b, size_t nb)
{
    const char *x = a, *y = b;
    return x + na <= y || y + nb <= x;
}

static void strict_velocity(void *ctx, float *v, const float *x, const float *t, const int *y, int rows)
{
    strict_net *s = ctx;
    const size_t vb = (size_t)rows * s->n * sizeof(float), tb = (size_t)rows * sizeof(float),
                 yb = (size_t)rows * sizeof(int);
    int ok = inside(s, v, vb) && inside(s, x, vb) && inside(s, t, tb) && inside(s, y, yb);
    ok = ok && (uintptr_t)v % 8 == 0 && (uintptr_t)x % 8 == 0 && (uintptr_t)t % 8 == 0 && (uintptr_t)y % 8 == 0;
    ok = ok && disjoint(v, vb, x, vb) && disjoint(v, vb, t, tb) && disjoint(v, vb, y, yb) &&
         disjoint(x, vb, t, tb) && disjoint(x, vb, y, yb) && disjoint(t, tb, y, yb);
    CHECK(ok, "network call %d: its buffers are misaligned, overlap or leave the workspace", s->m.calls);
    s->calls_checked += ok;
    /* Output written first (a NaN canary), then computed. */
    for (size_t i = 0; i < (size_t)rows * s->n; i++)
        v[i] = NAN;
    toy_velocity(&s->m, v, x, t, y, rows);
}

static void test_workspace_contract(void)
{
    const int B = 3, C = 2, HW = 5;
    const size_t n = (size_t)C * HW, bn = (size_t)B * n;
    const float b[4] = {0.2f, -0.3f, 0.1f, 0.4f}, c[8] = {0.1f, -0.1f, 0.0f, 0.2f, -0.2f, 0.05f, 0.3f, -0.3f};
    int y[3] = {0, 2, 1};
    for (int mode = 0; mode < 2; mode++) {
        sampler_config cfg = sampler_config_default();
        cfg.mode = mode ? SAMPLER_SDE : SAMPLER_ODE;
        cfg.heun = !mode;
        cfg.num_steps = 6;
        cfg.cfg_scale = 2.0;
        cfg.null_class = 3;
        size_t bytes = sampler_workspace_bytes(&cfg, B, n);
        size_t least = bn * (4 * sizeof(double) + 2 * 2 * sizeof(float) + sizeof(float)) +
                       2 * (size_t)B * (sizeof(float) + sizeof(int));
        CHECK(bytes >= least, "%s: workspace of %zu bytes, its buffers need at least %zu", sampler_mode_name(cfg.mode),
              bytes, least);
        char *ws = xmalloc(bytes);
        float x0[30], plain[30], strict[30];
        int64_t idx[3] = {4, 5, 6};
        sampler_initial_noise(x0, B, n, 11, idx);
        sampler_noise src = {.seed = 11, .image_index = idx};
        toy m = {.b = b, .c = c, .B = B, .C = C, .HW = HW};
        memcpy(plain, x0, sizeof plain);
        float *big = xmalloc(bytes + 4096); /* the reference run: room to spare */
        sampler_run(&cfg, toy_velocity, &m, plain, y, B, n, &src, big);
        free(big);
        strict_net s = {.m = {.b = b, .c = c, .B = B, .C = C, .HW = HW}, .ws = ws, .ws_bytes = bytes, .n = n};
        memcpy(strict, x0, sizeof strict);
        int nfe = sampler_run(&cfg, strict_velocity, &s, strict, y, B, n, &src, ws);
        CHECK(s.calls_checked == nfe, "%s: %d of %d network calls had sound buffers", sampler_mode_name(cfg.mode),
              s.calls_checked, nfe);
        CHECK(memcmp(plain, strict, sizeof plain) == 0,
              "%s: a network that writes its output before reading its input changes the samples",
              sampler_mode_name(cfg.mode));
        free(ws);
    }
}

/* sampler_run checks what it is given, whoever built the configuration. */
static void run_bad(void *ctx)
{
    const int *which = ctx;
    sampler_config cfg = sampler_config_default();
    cfg.cfg_scale = 1.0;
    float x[8] = {0};
    int y[2] = {0, 0};
    int B = 2;
    size_t n = 4;
    if (*which == 0)
        cfg.num_steps = 0;
    else if (*which == 1)
        B = 0;
    else if (*which == 2)
        n = 0;
    else if (*which == 3)
        cfg.mode = SAMPLER_SDE, cfg.num_steps = 2;
    const float b[1] = {0}, c[1] = {0};
    toy m = {.b = b, .c = c, .B = 2, .C = 1, .HW = 4};
    void *ws = xmalloc(sampler_workspace_bytes(&cfg, 2, 4));
    sampler_run(&cfg, toy_velocity, &m, x, y, B, n, NULL, ws);
    free(ws);
}

static void test_run_refuses_bad_arguments(void)
{
    const int cases[4] = {0, 1, 2, 3};
    expect_die("sampler_run with 0 steps", run_bad, (void *)&cases[0], "num_steps must be at least 1");
    expect_die("sampler_run with B = 0", run_bad, (void *)&cases[1], "empty batch (B = 0, n = 4)");
    expect_die("sampler_run with n = 0", run_bad, (void *)&cases[2], "empty batch (B = 2, n = 0)");
    expect_die("a 2-step SDE without noise", run_bad, (void *)&cases[3], "the SDE sampler needs a noise source");
    /* One SDE step is the noiseless mean step: no noise source needed. */
    sampler_config cfg = sampler_config_default();
    cfg.mode = SAMPLER_SDE;
    cfg.num_steps = 1;
    cfg.cfg_scale = 1.0;
    const float b[1] = {0.5f}, c[1] = {0.25f};
    toy m = {.b = b, .c = c, .B = 1, .C = 1, .HW = 4};
    float x[4] = {1, -1, 0.5f, 2};
    int y[1] = {0};
    void *ws = xmalloc(sampler_workspace_bytes(&cfg, 1, 4));
    int nfe = sampler_run(&cfg, toy_velocity, &m, x, y, 1, 4, NULL, ws);
    CHECK(nfe == 1 && isfinite(x[0]), "one SDE step without a noise source: NFE %d, x[0] %g", nfe, x[0]);
    free(ws);
}

int main(void)
{
    RUN(test_time_grids_match_torch_linspace);
    RUN(test_samplers_match_reference);
    RUN(test_same_images_whatever_the_batch_split);
    RUN(test_noise_streams);
    RUN(test_noise_streams_pinned);
    RUN(test_workspace_contract);
    RUN(test_run_refuses_bad_arguments);
    RUN(test_sde_default_noise_source);
    RUN(test_interpolant);
    RUN(test_defaults_and_parsing);
    RUN(test_bad_configuration_dies);
    return test_summary();
}
