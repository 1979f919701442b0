#include "diffusion/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/rng.h"

/* "SAMP" in the high word; the image index in the low bits.  rng_new mixes
 * (seed, stream), so neighbouring images get unrelated keys. */
#define SAMPLER_STREAM (0x53414D50ull << 32)
/* Counter ranges inside an image's stream: 2^32 Philox blocks (2^33
 * normals) each, far more than one image ever needs. */
#define SLOT_INIT 0
#define SLOT_LABEL 1
#define SLOT_SDE(step) (2 + (uint64_t)(step))

static rng image_rng(uint64_t seed, const int64_t *image_index, int b, uint64_t slot)
{
    uint64_t index = image_index ? (uint64_t)image_index[b] : (uint64_t)b;
    rng r = rng_new(seed, SAMPLER_STREAM + index);
    r.counter = slot << 32;
    return r;
}

sampler_config sampler_config_default(void)
{
    return (sampler_config){.mode = SAMPLER_ODE,
                            .heun = 0,
                            .num_steps = 50,
                            .cfg_scale = 1.5,
                            .guidance_low = 0.0,
                            .guidance_high = 1.0,
                            .path = PATH_LINEAR,
                            .null_class = 1000};
}

sampler_mode sampler_mode_parse(const char *name)
{
    if (name && strcmp(name, "ode") == 0)
        return SAMPLER_ODE;
    if (name && strcmp(name, "sde") == 0)
        return SAMPLER_SDE;
    die("unknown sampler mode '%s' (expected 'ode' or 'sde')", name ? name : "(null)");
}

const char *sampler_mode_name(sampler_mode m) { return m == SAMPLER_SDE ? "sde" : "ode"; }

void sampler_config_check(const sampler_config *cfg)
{
    if (cfg->mode != SAMPLER_ODE && cfg->mode != SAMPLER_SDE)
        die("sampler: bad mode %d", (int)cfg->mode);
    if (cfg->path != PATH_LINEAR && cfg->path != PATH_COSINE)
        die("sampler: bad path type %d", (int)cfg->path);
    if (cfg->num_steps < 1)
        die("sampler: num_steps must be at least 1, got %d", cfg->num_steps);
    if (cfg->heun && cfg->mode == SAMPLER_SDE)
        die("sampler: Heun applies to the ODE sampler only (mode sde)");
    if (!isfinite(cfg->cfg_scale) || !isfinite(cfg->guidance_low) || !isfinite(cfg->guidance_high))
        die("sampler: cfg_scale %g, guidance interval [%g, %g] must be finite", cfg->cfg_scale, cfg->guidance_low,
            cfg->guidance_high);
    if (cfg->cfg_scale > 1 && cfg->null_class < 0)
        die("sampler: null_class must be >= 0 under guidance, got %d", cfg->null_class);
}

/* torch.linspace(start, end, steps, dtype=float64) bit for bit, as torch
 * 1.13's CPU kernel computes it with its AVX2 dispatch (the default on x86;
 * AVX-512 is opt-in there): the first half counts up from start, the second
 * down from end, each base value with an FMA; the body goes in pairs of
 * 4-wide vectors whose lanes are base + j·step (j·step rounded first), the
 * tail of fewer than 8 elements is scalar.  The grid points matter beyond
 * the last ulp only where one equals a guidance bound (t = 0.65 with 20
 * steps), but then the inclusive test must see the reference's value;
 * tests/test_sampler.c compares against torch.linspace. */
static double linspace_at(double start, double end, double step, int steps, int idx)
{
    return idx < steps / 2 ? fma(step, (double)idx, start) : fma(-step, (double)(steps - idx - 1), end);
}

static void linspace(double *out, double start, double end, int steps)
{
    if (steps == 1) {
        out[0] = start;
        return;
    }
    const int V = 4;
    double step = (end - start) / (steps - 1);
    int i = 0;
    for (; i <= steps - 2 * V; i += 2 * V)
        for (int k = i; k < i + 2 * V; k += V) {
            double base = linspace_at(start, end, step, steps, k);
            out[k] = base;
            for (int j = 1; j < V; j++) {
                double js = (double)j * step;
                out[k + j] = base + js;
            }
        }
    for (; i < steps; i++)
        out[i] = linspace_at(start, end, step, steps, i);
}

void sampler_time_grid(const sampler_config *cfg, double *t)
{
    if (cfg->mode == SAMPLER_SDE) {
        linspace(t, 1.0, 0.04, cfg->num_steps);
        t[cfg->num_steps] = 0.0;
    } else {
        linspace(t, 1.0, 0.0, cfg->num_steps + 1);
    }
}

int sampler_guided(const sampler_config *cfg, double t_cur)
{
    return cfg->cfg_scale > 1 && t_cur <= cfg->guidance_high && t_cur >= cfg->guidance_low;
}

int sampler_nfe(const sampler_config *cfg)
{
    return cfg->mode == SAMPLER_ODE && cfg->heun ? 2 * cfg->num_steps - 1 : cfg->num_steps;
}

void sampler_initial_noise(float *x, int B, size_t n, uint64_t seed, const int64_t *image_index)
{
#pragma omp parallel for if (B > 1)
    for (int b = 0; b < B; b++) {
        rng r = image_rng(seed, image_index, b, SLOT_INIT);
        rng_normal_fill(&r, x + (size_t)b * n, n);
    }
}

void sampler_random_labels(int *y, int B, int num_classes, uint64_t seed, const int64_t *image_index)
{
    if (num_classes < 1)
        die("sampler_random_labels: num_classes must be positive, got %d", num_classes);
    for (int b = 0; b < B; b++) {
        rng r = image_rng(seed, image_index, b, SLOT_LABEL);
        y[b] = (int)rng_below(&r, (uint32_t)num_classes);
    }
}

void sampler_step_noise(float *eps, int step, int B, size_t n, uint64_t seed, const int64_t *image_index)
{
#pragma omp parallel for if (B > 1)
    for (int b = 0; b < B; b++) {
        rng r = image_rng(seed, image_index, b, SLOT_SDE(step));
        rng_normal_fill(&r, eps + (size_t)b * n, n);
    }
}

/* ---- workspace ---- */

typedef struct workspace {
    double *x;   /* [B, n] state */
    double *d;   /* [B, n] guided direction of the step */
    double *x2;  /* [B, n] Heun predictor */
    double *d2;  /* [B, n] Heun's second direction */
    float *xin;  /* [2B, n] network input */
    float *vout; /* [2B, n] network output */
    float *eps;  /* [B, n] SDE noise */
    float *tin;  /* [2B] */
    int *yin;    /* [2B] */
} workspace;

static size_t carve(char *base, size_t *used, size_t bytes, void **out)
{
    if (out)
        *out = base + *used;
    *used += arena_round(bytes);
    return *used;
}

static size_t layout(workspace *w, char *base, int B, size_t n)
{
    size_t used = 0, bn = (size_t)B * n;
    void *p[9];
    carve(base, &used, bn * sizeof(double), &p[0]);
    carve(base, &used, bn * sizeof(double), &p[1]);
    carve(base, &used, bn * sizeof(double), &p[2]);
    carve(base, &used, bn * sizeof(double), &p[3]);
    carve(base, &used, 2 * bn * sizeof(float), &p[4]);
    carve(base, &used, 2 * bn * sizeof(float), &p[5]);
    carve(base, &used, bn * sizeof(float), &p[6]);
    carve(base, &used, 2 * (size_t)B * sizeof(float), &p[7]);
    carve(base, &used, 2 * (size_t)B * sizeof(int), &p[8]);
    if (w)
        *w = (workspace){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]};
    return used;
}

size_t sampler_workspace_bytes(const sampler_config *cfg, int B, size_t n)
{
    (void)cfg;
    return layout(NULL, NULL, B, n);
}

/* ---- one network evaluation ---- */

typedef struct run {
    const sampler_config *cfg;
    velocity_fn f;
    void *ctx;
    const int *y;
    int B;
    size_t n;
    workspace w;
    int nfe;
} run;

/* d = the (guided) direction at (x, t): the velocity for the ODE, the drift
 * v − ½·g²·s for the SDE.  guided: evaluate [x; x] with [y; null]. */
static void direction(run *R, double *d, const double *x, double t, int guided)
{
    const sampler_config *cfg = R->cfg;
    const size_t bn = (size_t)R->B * R->n;
    const int rows = guided ? 2 * R->B : R->B;
    workspace *w = &R->w;

#pragma omp parallel for if (bn > 65536)
    for (size_t i = 0; i < bn; i++)
        w->xin[i] = (float)x[i];
    if (guided)
        memcpy(w->xin + bn, w->xin, bn * sizeof(float));
    for (int b = 0; b < rows; b++) {
        w->tin[b] = (float)t;
        w->yin[b] = b < R->B ? R->y[b] : cfg->null_class;
    }
    R->f(R->ctx, w->vout, w->xin, w->tin, w->yin, rows);
    R->nfe++;

    const float *vc = w->vout, *vu = w->vout + bn;
    const double scale = cfg->cfg_scale;
    if (cfg->mode == SAMPLER_ODE) {
#pragma omp parallel for if (bn > 65536)
        for (size_t i = 0; i < bn; i++)
            d[i] = guided ? (double)vu[i] + scale * ((double)vc[i] - (double)vu[i]) : (double)vc[i];
        return;
    }
    /* Score from velocity, in the reference's order of operations:
     * r = α/α', var = σ² − (r·σ')·σ, s = (r·v − x)/var, d = v − (½·g²)·s with
     * g² = 2t. */
    interp_coeffs k = interpolant_coeffs(cfg->path, t);
    const double r = k.alpha / k.d_alpha;
    const double var = k.sigma * k.sigma - r * k.d_sigma * k.sigma;
    const double half_g2 = 0.5 * (2 * t);
#pragma omp parallel for if (bn > 65536)
    for (size_t i = 0; i < bn; i++) {
        double v = vc[i];
        double dc = v - half_g2 * ((r * v - x[i]) / var);
        if (guided) {
            double u = vu[i];
            double du = u - half_g2 * ((r * u - x[i]) / var);
            dc = du + scale * (dc - du);
        }
        d[i] = dc;
    }
}

static void ode(run *R, const double *tg)
{
    const sampler_config *cfg = R->cfg;
    const size_t bn = (size_t)R->B * R->n;
    workspace *w = &R->w;
    for (int i = 0; i < cfg->num_steps; i++) {
        double t_cur = tg[i], t_next = tg[i + 1], dt = t_next - t_cur;
        int guided = sampler_guided(cfg, t_cur);
        direction(R, w->d, w->x, t_cur, guided);
        if (cfg->heun && i < cfg->num_steps - 1) {
#pragma omp parallel for if (bn > 65536)
            for (size_t j = 0; j < bn; j++)
                w->x2[j] = w->x[j] + dt * w->d[j];
            direction(R, w->d2, w->x2, t_next, guided);
#pragma omp parallel for if (bn > 65536)
            for (size_t j = 0; j < bn; j++)
                w->x[j] = w->x[j] + dt * (0.5 * w->d[j] + 0.5 * w->d2[j]);
        } else {
#pragma omp parallel for if (bn > 65536)
            for (size_t j = 0; j < bn; j++)
                w->x[j] = w->x[j] + dt * w->d[j];
        }
    }
}

static void sde_noise(run *R, const sampler_noise *noise, int step)
{
    if (noise->fn)
        noise->fn(noise->ctx, R->w.eps, step, R->B, R->n);
    else
        sampler_step_noise(R->w.eps, step, R->B, R->n, noise->seed, noise->image_index);
}

static void sde(run *R, const double *tg, const sampler_noise *noise)
{
    const sampler_config *cfg = R->cfg;
    const size_t bn = (size_t)R->B * R->n;
    const int N = cfg->num_steps;
    workspace *w = &R->w;
    for (int i = 0; i < N; i++) {
        double t_cur = tg[i], t_next = tg[i + 1], dt = t_next - t_cur;
        int last = i == N - 1;
        if (!last)
            sde_noise(R, noise, i);
        direction(R, w->d, w->x, t_cur, sampler_guided(cfg, t_cur));
        if (last) { /* 0.04 → 0: the mean, no noise */
#pragma omp parallel for if (bn > 65536)
            for (size_t j = 0; j < bn; j++)
                w->x[j] = w->x[j] + dt * w->d[j];
        } else {
            const double sqrt_g2 = sqrt(2 * t_cur), sqrt_dt = sqrt(fabs(dt));
#pragma omp parallel for if (bn > 65536)
            for (size_t j = 0; j < bn; j++)
                w->x[j] = w->x[j] + w->d[j] * dt + sqrt_g2 * ((double)w->eps[j] * sqrt_dt);
        }
    }
}

int sampler_run(const sampler_config *cfg, velocity_fn f, void *ctx, float *x, const int *y, int B, size_t n,
                const sampler_noise *noise, void *workspace_mem)
{
    sampler_config_check(cfg);
    if (B < 1 || n < 1)
        die("sampler_run: empty batch (B = %d, n = %zu)", B, n);
    if (cfg->mode == SAMPLER_SDE && cfg->num_steps > 1 && !noise)
        die("sampler_run: the SDE sampler needs a noise source");
    if (!workspace_mem)
        die("sampler_run: no workspace (allocate sampler_workspace_bytes())");
    run R = {.cfg = cfg, .f = f, .ctx = ctx, .y = y, .B = B, .n = n};
    layout(&R.w, workspace_mem, B, n);

    double *tg = xmalloc((size_t)(cfg->num_steps + 1) * sizeof(double));
    sampler_time_grid(cfg, tg);
    const size_t bn = (size_t)B * n;
    for (size_t i = 0; i < bn; i++)
        R.w.x[i] = x[i];
    if (cfg->mode == SAMPLER_SDE)
        sde(&R, tg, noise);
    else
        ode(&R, tg);
    for (size_t i = 0; i < bn; i++)
        x[i] = (float)R.w.x[i];
    free(tg);
    return R.nfe;
}
