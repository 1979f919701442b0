/* Losses (src/ops/loss.c): PyTorch parity (tests/fixtures/ops/loss_*.safetensors,
 * written by dev/ref/loss_ref.py), finite differences for every gradient,
 * += accumulation and NULL gradients, and the chunked parallel sums against
 * plain serial sums on inputs large enough to take the OpenMP path.
 *
 * Tolerances.
 *  - vs torch: torch sums in float32 (pairwise/vectorised order), we sum in
 *    double, so forwards differ by torch's float rounding, ~1e-7 * sqrt(n)
 *    relative for these sizes; gradients are elementwise formulas evaluated
 *    in float (torch) vs double rounded once (ours): a few ulp.  We allow
 *    rtol 1e-5 plus atol 1e-6 * max|want| (for entries near zero produced by
 *    cancellation, e.g. b̂ - cos·â in the REPA gradient).
 *  - finite differences: the losses return float, so L = loss · cot carries
 *    a rounding error of ~6e-8 |L|, and a central difference with step h has
 *    an error of about 6e-8 |L| / h plus the O(h²) curvature term.  With
 *    h = 1e-3 and |L| ~ 1 that is ~1e-4 absolute; the gradients of mean
 *    losses over n elements are ~1/n, so each check states atol in absolute
 *    terms and rtol relative to max|grad|.  Piecewise-linear losses (L1,
 *    hinge) are tested with every input at least 5h from a kink, where the
 *    central difference is exact up to rounding.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/loss.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------------- */

static int meta_int(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    CHECK(v != NULL, "fixture metadata '%s' missing", key);
    return v ? atoi(v) : 0;
}

static float fixture_scalar(const safetensors *st, const char *name)
{
    size_t n;
    float *x = fixture_f32(st, name, &n);
    CHECK(n == 1, "%s: expected one element, got %zu", name, n);
    float v = x[0];
    free(x);
    return v;
}

/* got vs the fixture tensor: |got - want| <= rel * max|want| * 0.1 + rel * |want|. */
static void check_fx(const safetensors *st, const char *name, const float *got, size_t n, double rel)
{
    size_t m;
    float *want = fixture_f32(st, name, &m);
    if (m != n) {
        CHECK(0, "%s: fixture has %zu elements, computed %zu", name, m, n);
        free(want);
        return;
    }
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(want[i]));
    char what[160];
    snprintf(what, sizeof what, "%s vs torch", name);
    check_close(what, got, want, n, 0.1 * rel * mx, rel);
    free(want);
}

static void check_scalar_fx(const safetensors *st, const char *name, float got, double rel)
{
    check_fx(st, name, &got, 1, rel);
}

/* Pushes every element of x at least `gap` away from the kink at `kink`
 * (kink relative to partner[i] if partner is non-NULL). */
static void avoid_kink(float *x, const float *partner, size_t n, float kink, float gap)
{
    for (size_t i = 0; i < n; i++) {
        float k = partner ? partner[i] : kink;
        float d = x[i] - k;
        if (fabsf(d) < gap)
            x[i] = k + (d >= 0 ? gap : -gap);
    }
}

#define TOL_TORCH 1e-5

/* ---- MSE per sample --------------------------------------------------------- */

static void test_mse_matches_torch(void)
{
    safetensors *st = fixture_open("ops/loss_mse");
    int N = meta_int(st, "N"), M = meta_int(st, "M");
    size_t n = (size_t)N * M;
    float *pred = fixture_f32(st, "pred", NULL), *target = fixture_f32(st, "target", NULL);
    float *cot = fixture_f32(st, "cot", NULL);
    float *loss = alloc_zeros(N), *dp = alloc_zeros(n), *dt = alloc_zeros(n);
    mse_per_sample_forward(loss, pred, target, N, M);
    check_fx(st, "loss", loss, N, TOL_TORCH);
    mse_per_sample_backward(dp, dt, cot, pred, target, N, M);
    check_fx(st, "grad.pred", dp, n, TOL_TORCH);
    check_fx(st, "grad.target", dt, n, TOL_TORCH);
    free(pred), free(target), free(cot), free(loss), free(dp), free(dt);
    safetensors_close(st);
}

typedef struct {
    float *a, *b, *cot, *out;
    int N, M;
} mse_ctx;

static double mse_L(void *p)
{
    mse_ctx *c = p;
    mse_per_sample_forward(c->out, c->a, c->b, c->N, c->M);
    return dot_f64(c->out, c->cot, c->N);
}

static void test_mse_finite_differences(void)
{
    int N = 3, M = 37;
    size_t n = (size_t)N * M;
    mse_ctx c = {alloc_normal(n, 1, 1), alloc_normal(n, 1, 2), alloc_normal(N, 1, 3), alloc_zeros(N), N, M};
    float *da = alloc_zeros(n), *db = alloc_zeros(n);
    mse_per_sample_backward(da, db, c.cot, c.a, c.b, N, M);
    /* |L| ~ 3, grads ~ 2/M ~ 0.05: rounding error 6e-8 * 3 / 2e-3 ~ 1e-4 -> atol 3e-4;
     * the loss is quadratic so the central difference has no truncation error. */
    fd_check("mse dpred", mse_L, &c, c.a, da, n, 1e-3, 3e-4, 1e-3, 0);
    fd_check("mse dtarget", mse_L, &c, c.b, db, n, 1e-3, 3e-4, 1e-3, 0);
    free(c.a), free(c.b), free(c.cot), free(c.out), free(da), free(db);
}

/* ---- L1 ----------------------------------------------------------------------- */

static void test_l1_matches_torch_with_ties(void)
{
    safetensors *st = fixture_open("ops/loss_l1");
    size_t n = (size_t)meta_int(st, "n");
    float *a = fixture_f32(st, "a", NULL), *b = fixture_f32(st, "b", NULL);
    float cot = fixture_scalar(st, "cot");
    check_scalar_fx(st, "loss", l1_mean_forward(a, b, n), TOL_TORCH);
    float *da = alloc_zeros(n), *db = alloc_zeros(n);
    l1_mean_backward(da, db, cot, a, b, n);
    check_fx(st, "grad.a", da, n, TOL_TORCH);
    check_fx(st, "grad.b", db, n, TOL_TORCH);
    /* The tie positions must give exactly zero (sign(0) = 0), not ±1/n. */
    const int ties[] = {0, 7, 19, 33, 64, 100};
    for (size_t k = 0; k < sizeof ties / sizeof ties[0]; k++) {
        CHECK(a[ties[k]] == b[ties[k]], "fixture tie %d is not a tie", ties[k]);
        CHECK(da[ties[k]] == 0 && db[ties[k]] == 0, "L1 gradient at tie %d should be 0, got %g %g", ties[k],
              da[ties[k]], db[ties[k]]);
    }
    free(a), free(b), free(da), free(db);
    safetensors_close(st);
}

typedef struct {
    float *a, *b;
    size_t n;
    float cot;
} l1_ctx;

static double l1_L(void *p)
{
    l1_ctx *c = p;
    return (double)l1_mean_forward(c->a, c->b, c->n) * c->cot;
}

static void test_l1_finite_differences(void)
{
    size_t n = 50;
    l1_ctx c = {alloc_normal(n, 1, 4), alloc_normal(n, 1, 5), n, 0.9f};
    avoid_kink(c.a, c.b, n, 0, 0.05f); /* >= 5h from a == b */
    float *da = alloc_zeros(n), *db = alloc_zeros(n);
    l1_mean_backward(da, db, c.cot, c.a, c.b, n);
    /* |L| ~ 1, grads 0.018; rounding 6e-8 / 2e-2 ~ 3e-6. */
    fd_check("l1 da", l1_L, &c, c.a, da, n, 1e-2, 2e-5, 1e-3, 0);
    fd_check("l1 db", l1_L, &c, c.b, db, n, 1e-2, 2e-5, 1e-3, 0);
    free(c.a), free(c.b), free(da), free(db);
}

/* ---- REPA cosine loss ----------------------------------------------------- */

static void test_repa_matches_torch_two_encoders(void)
{
    safetensors *st = fixture_open("ops/loss_repa");
    int N = meta_int(st, "N"), T = meta_int(st, "T"), E = meta_int(st, "E");
    const int dims[2] = {6, 5};
    CHECK(E == 2, "fixture should have 2 encoders, has %d", E);
    float cot = fixture_scalar(st, "cot");
    double total = 0;
    for (int e = 0; e < 2; e++) {
        char nt[64], nz[64], gt[64], gz[64];
        snprintf(nt, sizeof nt, "zs_tilde.%d", e);
        snprintf(nz, sizeof nz, "zs.%d", e);
        snprintf(gt, sizeof gt, "grad.zs_tilde.%d", e);
        snprintf(gz, sizeof gz, "grad.zs.%d", e);
        size_t n;
        float *zt = fixture_f32(st, nt, &n), *z = fixture_f32(st, nz, NULL);
        CHECK(n == (size_t)N * T * dims[e], "%s has %zu elements", nt, n);
        total += repa_cosine_loss_forward(zt, z, N, T, dims[e]);
        float *dzt = alloc_zeros(n), *dz = alloc_zeros(n);
        repa_cosine_loss_backward(dzt, dz, cot / E, zt, z, N, T, dims[e]);
        check_fx(st, gt, dzt, n, TOL_TORCH);
        check_fx(st, gz, dz, n, TOL_TORCH);
        free(zt), free(z), free(dzt), free(dz);
    }
    check_scalar_fx(st, "loss", (float)(total / E), TOL_TORCH);
    safetensors_close(st);
}

static void test_repa_clamp_branch_matches_torch(void)
{
    safetensors *st = fixture_open("ops/loss_repa_clamp");
    int N = meta_int(st, "N"), T = meta_int(st, "T"), D = meta_int(st, "Dz");
    size_t n = (size_t)N * T * D;
    float *zt = fixture_f32(st, "zs_tilde", NULL), *z = fixture_f32(st, "zs", NULL);
    float cot = fixture_scalar(st, "cot");
    check_scalar_fx(st, "loss", repa_cosine_loss_forward(zt, z, N, T, D), TOL_TORCH);
    float *dzt = alloc_zeros(n), *dz = alloc_zeros(n);
    repa_cosine_loss_backward(dzt, dz, cot, zt, z, N, T, D);
    /* The clamped rows have gradients ~1e10 next to O(0.1) ones: compare row by row
     * so the normal rows are not swamped by the clamped rows' scale. */
    float *want_t = fixture_f32(st, "grad.zs_tilde", NULL), *want_z = fixture_f32(st, "grad.zs", NULL);
    for (int r = 0; r < N * T; r++) {
        char what[96];
        double mt = 0, mz = 0;
        for (int k = 0; k < D; k++)
            mt = fmax(mt, fabs(want_t[r * D + k])), mz = fmax(mz, fabs(want_z[r * D + k]));
        snprintf(what, sizeof what, "grad.zs_tilde row %d vs torch", r);
        check_close(what, dzt + r * D, want_t + r * D, D, 1e-6 * mt, TOL_TORCH);
        snprintf(what, sizeof what, "grad.zs row %d vs torch", r);
        check_close(what, dz + r * D, want_z + r * D, D, 1e-6 * mz, TOL_TORCH);
    }
    /* Closed form in the clamp branch: d/da = -cot/(N T) * b̂ / 1e-12. */
    {
        int r = 0 * T + 1; /* zs_tilde[0,1] has norm ~3e-14 */
        double nb = 0;
        for (int k = 0; k < D; k++)
            nb += (double)z[r * D + k] * z[r * D + k];
        nb = sqrt(nb);
        float want[64];
        for (int k = 0; k < D; k++)
            want[k] = (float)(-(double)cot / (N * T) * (z[r * D + k] / nb) / 1e-12);
        check_close("clamp branch closed form", dzt + r * D, want, D, 0, 1e-6);
    }
    /* Both zero (row [0,2]): cos = 0 and no gradient. */
    for (int k = 0; k < D; k++)
        CHECK(dzt[2 * D + k] == 0 && dz[2 * D + k] == 0, "all-zero row should get zero gradient");
    free(zt), free(z), free(dzt), free(dz), free(want_t), free(want_z);
    safetensors_close(st);
}

typedef struct {
    float *zt, *z;
    int N, T, D;
    float cot;
} repa_ctx;

static double repa_L(void *p)
{
    repa_ctx *c = p;
    return (double)repa_cosine_loss_forward(c->zt, c->z, c->N, c->T, c->D) * c->cot;
}

static void test_repa_finite_differences(void)
{
    int N = 2, T = 3, D = 7;
    size_t n = (size_t)N * T * D;
    repa_ctx c = {alloc_normal(n, 1.0f, 6), alloc_normal(n, 0.7f, 7), N, T, D, -1.2f};
    for (size_t i = 0; i < n; i++)
        c.z[i] += 0.2f; /* some correlation structure, nonzero means */
    float *dzt = alloc_zeros(n), *dz = alloc_zeros(n);
    repa_cosine_loss_backward(dzt, dz, c.cot, c.zt, c.z, N, T, D);
    /* |L| <= 1.2, grads ~ 1/(N T ‖x‖) ~ 0.1; rounding 6e-8 * 1.2 / 2e-3 ~ 4e-5;
     * curvature h² |f'''| ~ 1e-6 * 0.2. */
    fd_check("repa dzs_tilde", repa_L, &c, c.zt, dzt, n, 1e-3, 1e-4, 1e-3, 0);
    fd_check("repa dzs", repa_L, &c, c.z, dz, n, 1e-3, 1e-4, 1e-3, 0);
    /* Scale invariance: cos(k a, b) = cos(a, b) so the gradient is orthogonal to a. */
    for (int r = 0; r < N * T; r++) {
        double s = dot_f64(dzt + r * D, c.zt + r * D, D);
        CHECK(fabs(s) < 1e-6, "REPA gradient row %d not orthogonal to its input (%g)", r, s);
    }
    free(c.zt), free(c.z), free(dzt), free(dz);
}

/* ---- KL ------------------------------------------------------------------------ */

static void test_kl_matches_torch(void)
{
    safetensors *st = fixture_open("ops/loss_kl");
    int N = meta_int(st, "N"), M = meta_int(st, "M");
    size_t n = (size_t)N * M;
    float *mean = fixture_f32(st, "mean", NULL), *logvar = fixture_f32(st, "logvar", NULL);
    float cot = fixture_scalar(st, "cot");
    check_scalar_fx(st, "loss", kl_diag_gaussian_forward(mean, logvar, N, M), TOL_TORCH);
    float *dm = alloc_zeros(n), *dl = alloc_zeros(n);
    kl_diag_gaussian_backward(dm, dl, cot, mean, logvar, N, M);
    check_fx(st, "grad.mean", dm, n, TOL_TORCH);
    check_fx(st, "grad.logvar", dl, n, TOL_TORCH);
    free(mean), free(logvar), free(dm), free(dl);
    safetensors_close(st);
}

typedef struct {
    float *m, *lv;
    int N, M;
    float cot;
} kl_ctx;

static double kl_L(void *p)
{
    kl_ctx *c = p;
    return (double)kl_diag_gaussian_forward(c->m, c->lv, c->N, c->M) * c->cot;
}

static void test_kl_finite_differences(void)
{
    int N = 2, M = 20;
    size_t n = (size_t)N * M;
    kl_ctx c = {alloc_normal(n, 1, 8), alloc_uniform(n, -2.5f, 1.5f, 9), N, M, 0.8f};
    float *dm = alloc_zeros(n), *dl = alloc_zeros(n);
    kl_diag_gaussian_backward(dm, dl, c.cot, c.m, c.lv, N, M);
    /* |L| ~ 10, grads ~ 0.4..2: rounding 6e-8 * 10 / 2e-3 ~ 3e-4; exp curvature
     * h²/6 e^1.5 ~ 1e-6. */
    fd_check("kl dmean", kl_L, &c, c.m, dm, n, 1e-3, 1e-3, 1e-3, 0);
    fd_check("kl dlogvar", kl_L, &c, c.lv, dl, n, 1e-3, 1e-3, 1e-3, 0);
    free(c.m), free(c.lv), free(dm), free(dl);
}

/* ---- hinge ------------------------------------------------------------------ */

static void test_hinge_d_matches_torch_with_kinks(void)
{
    safetensors *st = fixture_open("ops/loss_hinge_d");
    size_t nr = (size_t)meta_int(st, "n_real"), nf = (size_t)meta_int(st, "n_fake");
    float *r = fixture_f32(st, "logits_real", NULL), *f = fixture_f32(st, "logits_fake", NULL);
    float cot = fixture_scalar(st, "cot");
    check_scalar_fx(st, "loss", hinge_d_loss_forward(r, nr, f, nf), TOL_TORCH);
    float *dr = alloc_zeros(nr), *df = alloc_zeros(nf);
    hinge_d_loss_backward(dr, df, cot, r, nr, f, nf);
    check_fx(st, "grad.logits_real", dr, nr, TOL_TORCH);
    check_fx(st, "grad.logits_fake", df, nf, TOL_TORCH);
    CHECK(r[3] == 1.0f && dr[3] == 0 && r[11] == 1.0f && dr[11] == 0, "real == 1 should get zero gradient");
    CHECK(f[0] == -1.0f && df[0] == 0 && f[47] == -1.0f && df[47] == 0, "fake == -1 should get zero gradient");
    free(r), free(f), free(dr), free(df);
    safetensors_close(st);
}

typedef struct {
    float *r, *f;
    size_t nr, nf;
    float cot, ema_r, ema_f;
} gan_ctx;

static double hinge_d_L(void *p)
{
    gan_ctx *c = p;
    return (double)hinge_d_loss_forward(c->r, c->nr, c->f, c->nf) * c->cot;
}

static double hinge_g_L(void *p)
{
    gan_ctx *c = p;
    return (double)hinge_g_loss_forward(c->f, c->nf) * c->cot;
}

static double lecam_L(void *p)
{
    gan_ctx *c = p;
    return (double)lecam_forward(c->r, c->nr, c->f, c->nf, c->ema_r, c->ema_f) * c->cot;
}

static void test_hinge_finite_differences(void)
{
    size_t nr = 30, nf = 45;
    gan_ctx c = {alloc_normal(nr, 1.5f, 10), alloc_normal(nf, 1.5f, 11), nr, nf, 1.3f, 0, 0};
    avoid_kink(c.r, NULL, nr, 1.0f, 0.05f);
    avoid_kink(c.f, NULL, nf, -1.0f, 0.05f);
    float *dr = alloc_zeros(nr), *df = alloc_zeros(nf);
    hinge_d_loss_backward(dr, df, c.cot, c.r, nr, c.f, nf);
    /* Piecewise linear and >= 5h from the kinks: exact up to the float rounding of
     * L (~1): 6e-8 / 2e-2 ~ 3e-6; grads ~ 0.5 * 1.3 / 30 ~ 0.02. */
    fd_check("hinge_d dreal", hinge_d_L, &c, c.r, dr, nr, 1e-2, 2e-5, 1e-3, 0);
    fd_check("hinge_d dfake", hinge_d_L, &c, c.f, df, nf, 1e-2, 2e-5, 1e-3, 0);
    float *dg = alloc_zeros(nf);
    hinge_g_loss_backward(dg, c.cot, nf);
    fd_check("hinge_g dfake", hinge_g_L, &c, c.f, dg, nf, 1e-2, 2e-5, 1e-3, 0);
    free(c.r), free(c.f), free(dr), free(df), free(dg);
}

static void test_hinge_g_matches_torch(void)
{
    safetensors *st = fixture_open("ops/loss_hinge_g");
    size_t n = (size_t)meta_int(st, "n");
    float *f = fixture_f32(st, "logits_fake", NULL);
    float cot = fixture_scalar(st, "cot");
    check_scalar_fx(st, "loss", hinge_g_loss_forward(f, n), TOL_TORCH);
    float *df = alloc_zeros(n);
    hinge_g_loss_backward(df, cot, n);
    check_fx(st, "grad.logits_fake", df, n, TOL_TORCH);
    free(f), free(df);
    safetensors_close(st);
}

/* ---- LeCam ------------------------------------------------------------------ */

static void lecam_case(const char *name)
{
    safetensors *st = fixture_open(name);
    size_t nr = (size_t)meta_int(st, "n_real"), nf = (size_t)meta_int(st, "n_fake");
    float *r = fixture_f32(st, "logits_real", NULL), *f = fixture_f32(st, "logits_fake", NULL);
    float cot = fixture_scalar(st, "cot");
    float er = fixture_scalar(st, "ema_real"), ef = fixture_scalar(st, "ema_fake");
    check_scalar_fx(st, "loss", lecam_forward(r, nr, f, nf, er, ef), TOL_TORCH);
    float *dr = alloc_zeros(nr), *df = alloc_zeros(nf);
    lecam_backward(dr, df, cot, r, nr, f, nf, er, ef);
    check_fx(st, "grad.logits_real", dr, nr, TOL_TORCH);
    check_fx(st, "grad.logits_fake", df, nf, TOL_TORCH);
    lecam_ema_update(&er, &ef, r, nr, f, nf, LECAM_EMA_DECAY);
    check_scalar_fx(st, "ema_real_next", er, 1e-6);
    check_scalar_fx(st, "ema_fake_next", ef, 1e-6);
    free(r), free(f), free(dr), free(df);
    safetensors_close(st);
}

static void test_lecam_matches_torch(void)
{
    lecam_case("ops/loss_lecam");      /* both terms active */
    lecam_case("ops/loss_lecam_half"); /* fake term inactive: zero gradient for fake */
    lecam_case("ops/loss_lecam_real_off"); /* real term inactive: zero gradient for real */
}

static void test_lecam_finite_differences(void)
{
    size_t nr = 12, nf = 18;
    gan_ctx c = {alloc_normal(nr, 1, 12), alloc_normal(nf, 1, 13), nr, nf, 0.9f, 0.6f, -0.5f};
    for (size_t i = 0; i < nr; i++)
        c.r[i] += 1.0f; /* mean(real) - ema_fake ~ 1.5 > 0 */
    for (size_t i = 0; i < nf; i++)
        c.f[i] -= 1.0f; /* ema_real - mean(fake) ~ 1.6 > 0 */
    float *dr = alloc_zeros(nr), *df = alloc_zeros(nf);
    lecam_backward(dr, df, c.cot, c.r, nr, c.f, nf, c.ema_r, c.ema_f);
    /* |L| ~ 5, grads ~ 2*1.5*0.9/12 ~ 0.2: rounding 6e-8 * 5 / 2e-3 ~ 2e-4; quadratic. */
    fd_check("lecam dreal", lecam_L, &c, c.r, dr, nr, 1e-3, 5e-4, 1e-3, 0);
    fd_check("lecam dfake", lecam_L, &c, c.f, df, nf, 1e-3, 5e-4, 1e-3, 0);
    free(c.r), free(c.f), free(dr), free(df);
}

/* ---- += accumulation and NULL gradients ------------------------------------ */

/* Runs `bw` into zeroed buffers and into buffers pre-filled with `pre`; the
 * second result minus `pre` must equal the first. */
static void check_accumulates(const char *what, const float *fresh, const float *acc, const float *pre, size_t n)
{
    float *diff = alloc_zeros(n);
    for (size_t i = 0; i < n; i++)
        diff[i] = acc[i] - pre[i];
    /* pre ~ N(0,1): one float rounding of pre + g, ~6e-8 absolute. */
    check_close(what, diff, fresh, n, 1e-6, 1e-5);
    int all_zero = 1;
    for (size_t i = 0; i < n; i++)
        all_zero &= fresh[i] == 0;
    CHECK(!all_zero, "%s: the fresh gradient is all zero (test would prove nothing)", what);
    free(diff);
}

static void test_backward_accumulates_and_accepts_null(void)
{
    int N = 3, M = 16;
    size_t n = (size_t)N * M;
    float *a = alloc_normal(n, 1, 20), *b = alloc_normal(n, 1, 21), *cotN = alloc_normal(N, 1, 22);
    float *pre_a = alloc_normal(n, 1, 23), *pre_b = alloc_normal(n, 1, 24);
    float *ga = alloc_zeros(n), *gb = alloc_zeros(n), *ha = alloc_zeros(n), *hb = alloc_zeros(n);
    float *only = alloc_zeros(n);

#define ACC_CASE(label, CALL_G, CALL_H, CALL_ONLY_A)                                                              \
    do {                                                                                                           \
        memset(ga, 0, n * sizeof(float)), memset(gb, 0, n * sizeof(float)), memset(only, 0, n * sizeof(float));   \
        memcpy(ha, pre_a, n * sizeof(float)), memcpy(hb, pre_b, n * sizeof(float));                                \
        CALL_G;                                                                                                    \
        CALL_H;                                                                                                    \
        CALL_ONLY_A;                                                                                               \
        check_accumulates(label " (first grad)", ga, ha, pre_a, n);                                               \
        check_accumulates(label " (second grad)", gb, hb, pre_b, n);                                              \
        check_close(label " with the other gradient NULL", only, ga, n, 0, 0);                                     \
    } while (0)

    ACC_CASE("mse", mse_per_sample_backward(ga, gb, cotN, a, b, N, M), mse_per_sample_backward(ha, hb, cotN, a, b, N, M),
             mse_per_sample_backward(only, NULL, cotN, a, b, N, M));
    ACC_CASE("l1", l1_mean_backward(ga, gb, 0.7f, a, b, n), l1_mean_backward(ha, hb, 0.7f, a, b, n),
             l1_mean_backward(only, NULL, 0.7f, a, b, n));
    ACC_CASE("repa", repa_cosine_loss_backward(ga, gb, 1.1f, a, b, N, 4, 4),
             repa_cosine_loss_backward(ha, hb, 1.1f, a, b, N, 4, 4),
             repa_cosine_loss_backward(only, NULL, 1.1f, a, b, N, 4, 4));
    ACC_CASE("kl", kl_diag_gaussian_backward(ga, gb, 0.6f, a, b, N, M),
             kl_diag_gaussian_backward(ha, hb, 0.6f, a, b, N, M),
             kl_diag_gaussian_backward(only, NULL, 0.6f, a, b, N, M));
    ACC_CASE("hinge_d", hinge_d_loss_backward(ga, gb, 1.4f, a, n, b, n), hinge_d_loss_backward(ha, hb, 1.4f, a, n, b, n),
             hinge_d_loss_backward(only, NULL, 1.4f, a, n, b, n));
    /* LeCam with both terms active: shift the EMAs so both relus are positive. */
    ACC_CASE("lecam", lecam_backward(ga, gb, 1.2f, a, n, b, n, 2.0f, -2.0f),
             lecam_backward(ha, hb, 1.2f, a, n, b, n, 2.0f, -2.0f),
             lecam_backward(only, NULL, 1.2f, a, n, b, n, 2.0f, -2.0f));
#undef ACC_CASE
    {
        memset(ga, 0, n * sizeof(float));
        memcpy(ha, pre_a, n * sizeof(float));
        hinge_g_loss_backward(ga, 0.5f, n);
        hinge_g_loss_backward(ha, 0.5f, n);
        check_accumulates("hinge_g", ga, ha, pre_a, n);
    }
    /* Both NULL must be a no-op (and not crash). */
    mse_per_sample_backward(NULL, NULL, cotN, a, b, N, M);
    l1_mean_backward(NULL, NULL, 1, a, b, n);
    repa_cosine_loss_backward(NULL, NULL, 1, a, b, N, 4, 4);
    kl_diag_gaussian_backward(NULL, NULL, 1, a, b, N, M);
    hinge_d_loss_backward(NULL, NULL, 1, a, n, b, n);
    hinge_g_loss_backward(NULL, 1, n);
    lecam_backward(NULL, NULL, 1, a, n, b, n, 0, 0);
    free(a), free(b), free(cotN), free(pre_a), free(pre_b), free(ga), free(gb), free(ha), free(hb), free(only);
}

/* ---- large inputs: the chunked OpenMP sums against plain serial sums ------- */

static void test_large_inputs_match_serial_sums(void)
{
    int N = 5, M = 20011; /* odd sizes: chunk boundaries fall mid-sample */
    size_t n = (size_t)N * M;
    float *a = alloc_normal(n, 1, 30), *b = alloc_normal(n, 1, 31);
    double s_l1 = 0, s_kl = 0, s_cos = 0, s_hinge = 0, s_mean = 0;
    for (size_t i = 0; i < n; i++) {
        s_l1 += fabs((double)a[i] - b[i]);
        s_kl += (double)a[i] * a[i] + exp((double)b[i]) - 1 - b[i];
        s_hinge += fmax(0, 1 - (double)a[i]);
        s_mean += a[i];
    }
    int NR = 1000, T = 9, D = 11; /* the first NR*T*D = 99000 elements as [NR, T, D] */
    for (int r = 0; r < NR * T; r++) {
        double d = 0, x = 0, y = 0;
        for (int k = 0; k < D; k++) {
            d += (double)a[r * D + k] * b[r * D + k];
            x += (double)a[r * D + k] * a[r * D + k];
            y += (double)b[r * D + k] * b[r * D + k];
        }
        s_cos += d / (sqrt(x) * sqrt(y));
    }
    float got[5] = {l1_mean_forward(a, b, n), kl_diag_gaussian_forward(a, b, N, M),
                    repa_cosine_loss_forward(a, b, NR, T, D), hinge_d_loss_forward(a, n, a, 0) /* nan */,
                    hinge_g_loss_forward(a, n)};
    float want[5] = {(float)(s_l1 / n), (float)(0.5 * s_kl / N), (float)(-s_cos / (NR * T)), 0,
                     (float)(-s_mean / n)};
    CHECK(isnan(got[3]), "hinge_d with an empty fake set should be NaN like torch.mean of nothing, got %g", got[3]);
    float *minus3 = alloc_zeros(n);
    for (size_t i = 0; i < n; i++)
        minus3[i] = -3.0f; /* relu(1 + fake) = 0: isolates the real half */
    got[3] = hinge_d_loss_forward(a, n, minus3, n);
    free(minus3);
    want[3] = (float)(0.5 * s_hinge / n);
    check_close("large-input losses vs serial double sums", got, want, 5, 1e-7, 1e-6);
    float *loss = alloc_zeros(N);
    mse_per_sample_forward(loss, a, b, N, M);
    for (int s = 0; s < N; s++) {
        double q = 0;
        for (int m = 0; m < M; m++) {
            double d = (double)a[(size_t)s * M + m] - b[(size_t)s * M + m];
            q += d * d;
        }
        CHECK(fabs(loss[s] - q / M) <= 1e-6 * q / M, "mse sample %d: %g vs %g", s, loss[s], q / M);
    }
    free(a), free(b), free(loss);
}

int main(void)
{
    RUN(test_mse_matches_torch);
    RUN(test_mse_finite_differences);
    RUN(test_l1_matches_torch_with_ties);
    RUN(test_l1_finite_differences);
    RUN(test_repa_matches_torch_two_encoders);
    RUN(test_repa_clamp_branch_matches_torch);
    RUN(test_repa_finite_differences);
    RUN(test_kl_matches_torch);
    RUN(test_kl_finite_differences);
    RUN(test_hinge_d_matches_torch_with_kinks);
    RUN(test_hinge_g_matches_torch);
    RUN(test_hinge_finite_differences);
    RUN(test_lecam_matches_torch);
    RUN(test_lecam_finite_differences);
    RUN(test_backward_accumulates_and_accepts_null);
    RUN(test_large_inputs_match_serial_sums);
    return test_summary();
}
