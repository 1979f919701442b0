/* Evaluation statistics: feature statistics, FID, IS, precision/recall,
 * PSNR/SSIM.  Parity fixtures come from dev/ref/metrics_ref.py (numpy/scipy
 * re-implementation of the ADM evaluator), written as float64 where the
 * reference is double precision. */
#include "test.h"

#include <inttypes.h>
#include <math.h>

#include "core/error.h"
#include "eval/feature_stats.h"
#include "eval/frechet.h"
#include "eval/image_metrics.h"
#include "eval/inception_score.h"
#include "eval/precision_recall.h"

/* ---- helpers ---- */

/* Fixture tensor as doubles (F64 read exactly, other types through f32). */
static double *fx_f64(const safetensors *st, const char *name, size_t *numel)
{
    const st_tensor *t = safetensors_require(st, name);
    double *x = xmalloc((size_t)t->numel * sizeof(double));
    if (t->dtype == ST_F64) {
        memcpy(x, st->data + t->begin, (size_t)t->numel * sizeof(double));
    } else {
        float *f = fixture_f32(st, name, NULL);
        for (int64_t i = 0; i < t->numel; i++)
            x[i] = f[i];
        free(f);
    }
    if (numel)
        *numel = (size_t)t->numel;
    return x;
}

static double fx_scalar(const safetensors *st, const char *name)
{
    double *x = fx_f64(st, name, NULL);
    double v = x[0];
    free(x);
    return v;
}

static int64_t fx_rows(const safetensors *st, const char *name)
{
    return safetensors_require(st, name)->shape[0];
}

static double rel_err(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-300); }

static double max_abs_diff(const double *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static double max_abs(const double *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static void verbose(const char *fmt, double a, double b)
{
    if (getenv("TEST_VERBOSE"))
        printf(fmt, a, b);
}

/* Two-pass double mean and covariance (the textbook formula np.cov uses). */
static void two_pass_stats(const float *x, int64_t N, int D, double *mu, double *sigma)
{
    for (int j = 0; j < D; j++) {
        double s = 0;
        for (int64_t i = 0; i < N; i++)
            s += x[(size_t)i * D + j];
        mu[j] = s / (double)N;
    }
    for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) {
            double s = 0;
            for (int64_t i = 0; i < N; i++)
                s += ((double)x[(size_t)i * D + a] - mu[a]) * ((double)x[(size_t)i * D + b] - mu[b]);
            sigma[(size_t)a * D + b] = s / (double)(N - 1);
        }
}

/* ---- float16 rounding ---- */

static void test_f16_round_matches_numpy(void)
{
    safetensors *st = fixture_open("eval/pr");
    size_t n;
    float *x = fixture_f32(st, "f16.x", &n);
    float *y = fixture_f32(st, "f16.y", NULL);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        float r = pr_f16_round(x[i]);
        /* Bit-exact, signed zeros and infinities included. */
        if (memcmp(&r, &y[i], 4) != 0 && !bad++)
            first = i;
    }
    CHECK(bad == 0, "%zu of %zu float16 roundings differ from numpy; first x=%.9g got %.9g want %.9g", bad, n,
          x[first], pr_f16_round(x[first]), y[first]);
    free(x);
    free(y);
    safetensors_close(st);

    /* And against the compiler's _Float16 conversion over random bit patterns. */
    rng r = rng_new(16, 0);
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t b = rng_u32(&r);
        float v;
        memcpy(&v, &b, 4);
        if (isnan(v))
            continue;
        float want = (float)(_Float16)v, got = pr_f16_round(v);
        if (memcmp(&got, &want, 4) != 0 && !bad++)
            CHECK(0, "f16 round of %.9g: got %.9g, _Float16 gives %.9g", v, got, want);
    }
    CHECK(bad == 0, "%zu random floats round differently from _Float16", bad);
}

/* ---- feature statistics ---- */

static const char *fid_cases[] = {"rand", "sing", "const", "shift"};

static void test_stats_match_numpy(void)
{
    safetensors *st = fixture_open("eval/fid");
    for (int c = 0; c < 4; c++) {
        char name[64];
        const char *cs = fid_cases[c];
        for (int which = 1; which <= 2; which++) {
            snprintf(name, sizeof name, "%s.x%d", cs, which);
            const st_tensor *t = safetensors_require(st, name);
            int64_t N = t->shape[0];
            int D = (int)t->shape[1];
            float *x = fixture_f32(st, name, NULL);
            feature_stats adm, f64;
            feature_stats_compute(&adm, x, N, D, FEATURE_MEAN_ADM_F32);
            feature_stats_compute(&f64, x, N, D, FEATURE_MEAN_F64);
            snprintf(name, sizeof name, "%s.mu%d", cs, which);
            double *mu = fx_f64(st, name, NULL);
            /* numpy's float32 mean is a sequential float32 sum: reproduced bit for bit. */
            CHECK(max_abs_diff(adm.mu, mu, (size_t)D) == 0, "%s: ADM float32 mean differs from numpy by %.3g", name,
                  max_abs_diff(adm.mu, mu, (size_t)D));
            if (which == 1) {
                snprintf(name, sizeof name, "%s.mu1_f64", cs);
                double *m64 = fx_f64(st, name, NULL);
                double e = max_abs_diff(f64.mu, m64, (size_t)D);
                /* Double accumulation of ≤ 400 float values: a few ulps. */
                CHECK(e <= 1e-13 * fmax(1, max_abs(m64, (size_t)D)), "%s: double mean off by %.3g", name, e);
                verbose("       stats mean f64 max abs err %.3g of max |mu| %.3g\n", e, max_abs(m64, (size_t)D));
                free(m64);
            }
            snprintf(name, sizeof name, "%s.sigma%d", cs, which);
            double *sg = fx_f64(st, name, NULL);
            double e = max_abs_diff(adm.sigma, sg, (size_t)D * D), scale = max_abs(sg, (size_t)D * D);
            /* np.cov is two-pass double; Chan's merge agrees to rounding (~1e-15 relative). */
            CHECK(e <= 1e-13 * scale, "%s: covariance off by %.3g (max |Σ| %.3g)", name, e, scale);
            verbose("       stats sigma max abs err %.3g of max |sigma| %.3g\n", e, scale);
            CHECK(max_abs_diff(adm.sigma, f64.sigma, (size_t)D * D) == 0, "%s: Σ depends on the mean mode", name);
            free(mu);
            free(sg);
            free(x);
            feature_stats_free(&adm);
            feature_stats_free(&f64);
        }
    }
    safetensors_close(st);
}

/* Statistics accumulated in buffers of buffer_rows, fed in batches, against
 * the two-pass double-precision ones. */
static void check_against_two_pass(const char *what, const float *x, int64_t N, int D, int buffer_rows, int batch)
{
    double *mu = xmalloc((size_t)D * sizeof(double)), *sigma = xmalloc((size_t)D * D * sizeof(double));
    two_pass_stats(x, N, D, mu, sigma);
    feature_accum a;
    feature_accum_init(&a, D, buffer_rows);
    for (int64_t i = 0; i < N; i += batch)
        feature_accum_add(&a, x + (size_t)i * D, N - i < batch ? N - i : batch);
    feature_stats s;
    feature_accum_finish(&a, FEATURE_MEAN_F64, &s);
    double em = max_abs_diff(s.mu, mu, (size_t)D), es = max_abs_diff(s.sigma, sigma, (size_t)D * D);
    CHECK(s.n == N && s.dim == D, "%s: n %" PRId64 " dim %d", what, s.n, s.dim);
    CHECK(em <= 1e-12 * fmax(1, max_abs(mu, (size_t)D)) && es <= 1e-12 * fmax(1, max_abs(sigma, (size_t)D * D)),
          "%s: mean off by %.3g, covariance by %.3g", what, em, es);
    feature_stats_free(&s);
    feature_accum_free(&a);
    free(mu), free(sigma);
}

static void test_stats_incremental_equals_one_shot(void)
{
    const int64_t N = 1000;
    const int D = 37;
    float *x = alloc_normal((size_t)N * D, 2.0f, 7);
    for (size_t i = 0; i < (size_t)N * D; i++)
        x[i] += 50.0f + (float)(i % D); /* large mean: the naive Σxxᵀ − Nμμᵀ would lose digits */
    double *mu = xmalloc(D * sizeof(double)), *sigma = xmalloc((size_t)D * D * sizeof(double));
    two_pass_stats(x, N, D, mu, sigma);

    feature_stats one, adm_one;
    feature_stats_compute(&one, x, N, D, FEATURE_MEAN_F64);
    feature_stats_compute(&adm_one, x, N, D, FEATURE_MEAN_ADM_F32);
    const int batches[] = {1, 7, 64, 333, 1000};
    for (int b = 0; b < 5; b++) {
        feature_accum a;
        feature_accum_init(&a, D, 0);
        for (int64_t i = 0; i < N; i += batches[b]) {
            int64_t B = N - i < batches[b] ? N - i : batches[b];
            feature_accum_add(&a, x + (size_t)i * D, B);
        }
        feature_stats s, sa;
        feature_accum_finish(&a, FEATURE_MEAN_F64, &s);
        feature_accum_finish(&a, FEATURE_MEAN_ADM_F32, &sa);
        /* Buffer boundaries fall every buffer_rows rows, whatever the batching: bit-identical. */
        CHECK(s.n == N && memcmp(s.mu, one.mu, D * sizeof(double)) == 0 &&
                  memcmp(s.sigma, one.sigma, (size_t)D * D * sizeof(double)) == 0,
              "batches of %d: statistics differ from one shot", batches[b]);
        CHECK(memcmp(sa.mu, adm_one.mu, D * sizeof(double)) == 0, "batches of %d: ADM mean differs", batches[b]);
        feature_stats_free(&s);
        feature_stats_free(&sa);
        feature_accum_free(&a);
    }
    /* Many small merges against two-pass double.  Mean ~ 80, Σ ~ 4 (so the
     * helper's floor of 1 does not loosen it): rounding of double sums of
     * 1000 terms, ≤ 1e-12 relative. */
    check_against_two_pass("13-row buffers, batches of 5", x, N, D, 13, 5);
    double e1 = max_abs_diff(one.sigma, sigma, (size_t)D * D);
    CHECK(e1 <= 1e-12 * max_abs(sigma, (size_t)D * D), "one-shot covariance off by %.3g", e1);

    /* Save/load round trip (F64, exact), with and without spatial stats. */
    const char *path = "build/test_metrics_stats.safetensors";
    feature_stats_save(path, &one, &adm_one);
    feature_stats l, ls;
    feature_stats_load(path, "mu", "sigma", &l);
    feature_stats_load(path, "mu_s", "sigma_s", &ls);
    CHECK(l.dim == D && l.n == N && memcmp(l.mu, one.mu, D * sizeof(double)) == 0 &&
              memcmp(l.sigma, one.sigma, (size_t)D * D * sizeof(double)) == 0,
          "saved statistics do not load back exactly");
    CHECK(ls.dim == D && ls.n == N && memcmp(ls.mu, adm_one.mu, D * sizeof(double)) == 0,
          "saved spatial statistics do not load back exactly");
    safetensors *saved = safetensors_open(path);
    const char *format = safetensors_meta(saved, "format"), *version = safetensors_meta(saved, "version");
    CHECK(format && !strcmp(format, "repae-feature-stats") && version && !strcmp(version, "1"),
          "a statistics file says what it is: format '%s' version '%s'", format ? format : "(none)",
          version ? version : "(none)");
    safetensors_close(saved);
    feature_stats_free(&l);
    feature_stats_free(&ls);
    remove(path);

    feature_stats_free(&one);
    feature_stats_free(&adm_one);
    free(mu);
    free(sigma);
    free(x);
}

/* The buffer's edges, each against the two-pass statistics: a buffer of
 * one row (every merge a rank-1 correction onto n = 1, 2, ...), a last
 * flush of a single row, two rows (the fewest the unbiased covariance
 * takes), one dimension; rows are merged exactly when the buffer fills. */
static void test_stats_buffer_edges(void)
{
    const int D = 5;
    float *x = alloc_normal(40 * D, 3.0f, 11);
    for (int i = 0; i < 40 * D; i++)
        x[i] += 10.0f * (float)(i % D);
    check_against_two_pass("one-row buffer", x, 40, D, 1, 3);
    check_against_two_pass("last flush of one row", x, 10, D, 3, 4);
    check_against_two_pass("two rows", x, 2, D, 0, 2);
    check_against_two_pass("one dimension", x, 40, 1, 7, 5);
    float two[2] = {1.0f, 4.0f}; /* var of {1, 4}: 4.5 */
    feature_stats s;
    feature_stats_compute(&s, two, 2, 1, FEATURE_MEAN_F64);
    CHECK(s.mu[0] == 2.5 && s.sigma[0] == 4.5, "two values: mean %g variance %g", s.mu[0], s.sigma[0]);
    feature_stats_free(&s);

    feature_accum a;
    feature_accum_init(&a, D, 0);
    CHECK(a.buffer_rows == FEATURE_ACCUM_DEFAULT_ROWS, "buffer_rows 0 gave %d rows", a.buffer_rows);
    feature_accum_free(&a);
    feature_accum_init(&a, D, 4);
    CHECK(a.buffer_rows == 4, "buffer_rows 4 gave %d", a.buffer_rows);
    feature_accum_add(&a, x, 3);
    CHECK(a.n == 0 && a.buffered == 3, "3 rows into a 4-row buffer: %" PRId64 " merged, %d buffered", a.n,
          a.buffered);
    feature_accum_add(&a, x + 3 * D, 2);
    CHECK(a.n == 4 && a.buffered == 1, "5 rows: %" PRId64 " merged, %d buffered", a.n, a.buffered);
    feature_accum_free(&a);
    feature_accum_init(&a, D, 1);
    CHECK(a.buffer_rows == 1, "buffer_rows 1 gave %d", a.buffer_rows);
    feature_accum_free(&a);
    free(x);
}

typedef struct {
    int dim;
    int64_t rows;
    int bad_row, bad_col;
    float bad;
} stats_case;

static void stats_of_case(void *ctx)
{
    const stats_case *c = ctx;
    float *x = alloc_normal((size_t)(c->rows > 0 ? c->rows : 1) * (c->dim > 0 ? c->dim : 1), 1.0f, 12);
    if (c->bad_row >= 0)
        x[(size_t)c->bad_row * c->dim + c->bad_col] = c->bad;
    feature_stats s;
    feature_stats_compute(&s, x, c->rows, c->dim, FEATURE_MEAN_F64);
}

static void test_stats_refuse_bad_input(void)
{
    stats_case zero_dim = {0, 4, -1, 0, 0}, one_row = {3, 1, -1, 0, 0};
    expect_die("dimension 0", stats_of_case, &zero_dim, "dimension 0 must be positive");
    expect_die("one row", stats_of_case, &one_row, "1 feature vector(s); the unbiased covariance needs at least 2");
    stats_case nan_first = {3, 4, 0, 0, NAN}, inf_last = {3, 4, 3, 2, INFINITY};
    expect_die("NaN in feature 0", stats_of_case, &nan_first, "feature 0 of row 0 of a batch is nan");
    expect_die("inf in the last feature", stats_of_case, &inf_last, "feature 2 of row 3 of a batch is inf");
}

/* Statistics handed over as arrays (an ADM .npz's) are copied. */
static void test_stats_from_arrays(void)
{
    double mu[3] = {1, -2, 3}, sigma[9] = {2, 0.5, 0, 0.5, 3, 0.25, 0, 0.25, 4};
    feature_stats s;
    feature_stats_from_arrays(&s, 3, mu, sigma, 77);
    CHECK(s.dim == 3 && s.n == 77 && memcmp(s.mu, mu, sizeof mu) == 0 && memcmp(s.sigma, sigma, sizeof sigma) == 0,
          "feature_stats_from_arrays did not copy the arrays");
    mu[0] = 9; /* a copy, not the caller's array */
    CHECK(s.mu[0] == 1 && s.mu != mu && s.sigma != sigma, "feature_stats_from_arrays kept the caller's arrays");
    feature_stats_free(&s);
    CHECK(s.mu == NULL && s.sigma == NULL && s.dim == 0, "feature_stats_free left the pointers");
}

/* The checks on reference statistics (feature_stats_check), each at its
 * edge: what a real covariance may be (a zero or small variance, rounding
 * asymmetry, a singular matrix, an eigenvalue a little below zero) passes,
 * and what it may not be dies naming the entry. */
typedef struct {
    int dim;
    double mu[3], sigma[9];
} check_case;

static void run_check(void *ctx)
{
    check_case *c = ctx;
    feature_stats s = {c->dim, 0, c->mu, c->sigma};
    feature_stats_check(&s, "ref.safetensors", "mu", "sigma");
}

static void test_stats_check_edges(void)
{
    /* accepted */
    const check_case good[] = {
        {3, {0, 0, 0}, {0, 0, 0, 0, 1, 0, 0, 0, 2}},                          /* a constant feature */
        {3, {0, 0, 0}, {0.5, 0, 0, 0, 0.5, 0, 0, 0, 0.5}},                   /* variances below 1 */
        {3, {0, 0, 0}, {1000, 0, 1000, 0, 1, 0, 1000.0001, 0, 1000.0001}},   /* asymmetry 5e-8 relative, singular */
        {3, {0, 0, 0}, {1, 1, 0, 1, 1, 0, 0, 0, 1}},                          /* singular: eigenvalue 0 */
        {2, {0, 0}, {500, 500.0005, 500.0005, 500}},                          /* eigenvalue -5e-4 of 1000 */
        {2, {0, 0}, {0, 0, 0, 0}},                                            /* every feature constant */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        check_case c = good[i];
        char err[512];
        int rc = run_in_child(run_check, &c, err, sizeof err);
        CHECK(rc == 0, "valid statistics %zu refused (%d): %s", i, rc, err);
    }
    /* refused */
    check_case nan_mu = {3, {NAN, 0, 0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}};
    expect_die("NaN mean", run_check, &nan_mu, "'ref.safetensors': mu[0] is nan");
    check_case inf_sigma = {3, {0, 0, 0}, {INFINITY, 0, 0, 0, 1, 0, 0, 0, 1}};
    expect_die("inf covariance", run_check, &inf_sigma, "sigma[0, 0] is inf");
    check_case nan_last = {3, {0, 0, 0}, {1, 0, 0, 0, 1, 0, 0, 0, NAN}};
    expect_die("NaN last entry", run_check, &nan_last, "sigma[2, 2] is nan");
    check_case neg = {3, {0, 0, 0}, {1, 0, 0, 0, -2, 0, 0, 0, 1}};
    expect_die("negative variance", run_check, &neg, "sigma[1, 1] = -2 is a negative variance");
    check_case asym = {3, {0, 0, 0}, {1, 0, 0.5, 0, 1, 0, 0.25, 0, 1}};
    expect_die("asymmetric far from the diagonal", run_check, &asym, "sigma is not symmetric ([0, 2] = 0.5");
    check_case asym_big = {2, {0, 0}, {1000, 1000.01, 1000, 1000}};
    expect_die("asymmetric by 5e-6 relative", run_check, &asym_big, "not symmetric");
    check_case not_psd = {2, {0, 0}, {500, 500.1, 500.1, 500}};
    expect_die("eigenvalue -0.1 of 1000", run_check, &not_psd, "not positive semidefinite");
    check_case small_not_psd = {2, {0, 0}, {0.0005, 0.00050001, 0.00050001, 0.0005}};
    expect_die("eigenvalue -1e-8 of 1e-3", run_check, &small_not_psd, "not positive semidefinite");
}

typedef struct {
    const char *path, *mu, *sigma;
} load_args;

static void load_named(void *ctx)
{
    const load_args *a = ctx;
    feature_stats s;
    feature_stats_load(a->path, a->mu, a->sigma, &s);
}

/* Loading: single-precision statistics are widened; other dtypes and shapes
 * die naming the file; `n` comes from the metadata of its own set (n for
 * mu, n_s for mu_s) and is 0 for any other pair of names. */
static void test_stats_load_variants(void)
{
    const char *path = "build/test_metrics_stats_f32.safetensors";
    const float mu[2] = {1.5f, -0.25f}, sigma[4] = {2.0f, 0.5f, 0.5f, 1.0f};
    const int32_t ints[2] = {1, 2};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "mu", 1, (int64_t[]){2}, mu);
    st_writer_add_f32(w, "sigma", 2, (int64_t[]){2, 2}, sigma);
    st_writer_add_f32(w, "mu_ref", 1, (int64_t[]){2}, mu);
    st_writer_add_f32(w, "mu_s", 1, (int64_t[]){2}, mu);
    st_writer_add(w, "mu_int", ST_I32, 1, (int64_t[]){2}, ints);
    st_writer_add_f32(w, "mu_2d", 2, (int64_t[]){1, 2}, mu);
    st_writer_add_f32(w, "mu_square", 2, (int64_t[]){2, 2}, sigma); /* 2-D, as many rows as sigma */
    st_writer_add_f32(w, "mu_empty", 1, (int64_t[]){0}, mu);
    st_writer_add_f32(w, "sigma_empty", 2, (int64_t[]){0, 0}, sigma);
    const float asym[4] = {2.0f, 0.5f, 0.25f, 1.0f};
    st_writer_add_f32(w, "sigma_asym", 2, (int64_t[]){2, 2}, asym);
    st_writer_set_metadata(w, "n", "50");
    st_writer_set_metadata(w, "n_s", "60");
    st_writer_save(w, path);
    st_writer_free(w);
    feature_stats s;
    feature_stats_load(path, "mu", "sigma", &s);
    CHECK(s.dim == 2 && s.n == 50 && s.mu[0] == 1.5 && s.mu[1] == -0.25 && s.sigma[0] == 2 && s.sigma[1] == 0.5 &&
              s.sigma[2] == 0.5 && s.sigma[3] == 1,
          "F32 statistics loaded as dim %d n %" PRId64 " mu %g %g sigma %g %g %g %g", s.dim, s.n, s.mu[0], s.mu[1],
          s.sigma[0], s.sigma[1], s.sigma[2], s.sigma[3]);
    feature_stats_free(&s);
    feature_stats_load(path, "mu_s", "sigma", &s);
    CHECK(s.n == 60, "mu_s read n = %" PRId64 ", not n_s = 60", s.n);
    feature_stats_free(&s);
    s.n = 12345;
    feature_stats_load(path, "mu_ref", "sigma", &s);
    CHECK(s.n == 0, "mu_ref read n = %" PRId64 ": only mu and mu_s have a count", s.n);
    feature_stats_free(&s);
    struct {
        const char *mu, *expect;
    } bad[] = {{"mu_int", "tensor 'mu_int' has dtype I32; feature statistics must be floating point"},
               {"mu_2d", "'mu_2d' [1, 2] and 'sigma' [2, 2] are not a [D] mean and a [D, D] covariance"},
               {"mu_square", "'mu_square' [2, 2] and 'sigma' [2, 2] are not a [D] mean"},
               {"mu_empty", "'mu_empty' [0] and 'sigma_empty' [0, 0] are not a [D] mean"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        load_args args = {path, bad[i].mu, strcmp(bad[i].mu, "mu_empty") ? "sigma" : "sigma_empty"};
        expect_die(bad[i].mu, load_named, &args, bad[i].expect);
    }
    /* What is loaded is checked as a covariance (feature_stats_check). */
    expect_die("an asymmetric covariance", load_named, &(load_args){path, "mu", "sigma_asym"},
               "sigma_asym is not symmetric ([0, 1] = 0.5, [1, 0] = 0.25)");
    remove(path);
}

/* ---- FID ---- */

static void test_fid_matches_scipy(void)
{
    safetensors *st = fixture_open("eval/fid");
    for (int c = 0; c < 4; c++) {
        const char *cs = fid_cases[c];
        char n1[64], n2[64], s1n[64], s2n[64], key[64];
        snprintf(n1, sizeof n1, "%s.mu1", cs);
        snprintf(n2, sizeof n2, "%s.mu2", cs);
        snprintf(s1n, sizeof s1n, "%s.sigma1", cs);
        snprintf(s2n, sizeof s2n, "%s.sigma2", cs);
        size_t D;
        double *mu1 = fx_f64(st, n1, &D), *mu2 = fx_f64(st, n2, NULL);
        double *s1 = fx_f64(st, s1n, NULL), *s2 = fx_f64(st, s2n, NULL);
        frechet_info info;
        double fid = frechet_distance_ex((int)D, mu1, s1, mu2, s2, 0.0, &info);
        snprintf(key, sizeof key, "%s.trace_sqrt", cs);
        double want_tr = fx_scalar(st, key);
        snprintf(key, sizeof key, "%s.fid_f64mean", cs);
        double want = fx_scalar(st, key);
        snprintf(key, sizeof key, "%s.fid", cs);
        double want_adm = fx_scalar(st, key);
        double tr_tol = (c == 1 || c == 2) ? 1e-7 : 1e-11;
        /* tr sqrtm: the issue asks for 1e-6 relative.  Well-conditioned cases agree to ~1e-14;
         * singular ones (rank < D) to ~1e-8, where scipy's Schur sqrtm leaves ~1e-8 complex
         * noise per zero eigenvalue that the ADM code then drops with .real. */
        CHECK(rel_err(info.trace_sqrt, want_tr) <= tr_tol, "%s: tr sqrtm %.15g, scipy %.15g (rel %.3g)", cs,
              info.trace_sqrt, want_tr, rel_err(info.trace_sqrt, want_tr));
        /* FID subtracts O(tr Σ) terms, so its error is measured against tr Σ1 + tr Σ2. */
        double scale = info.trace1 + info.trace2;
        CHECK(fabs(fid - want) <= 2 * tr_tol * scale, "%s: FID %.15g, scipy %.15g", cs, fid, want);
        /* ADM's float32 ‖μ1 − μ2‖² adds ~1e-7 relative of the mean term. */
        CHECK(fabs(fid - want_adm) <= 2 * tr_tol * scale + 1e-6 * info.mean_term, "%s: FID %.15g, ADM %.15g", cs,
              fid, want_adm);
        CHECK(info.offset == 0, "%s: the offset retry was taken", cs);
        if (getenv("TEST_VERBOSE"))
            printf("       fid %-6s %.12g scipy %.12g: FID abs err %.3g, tr sqrtm rel err %.3g, min eig %.3g\n", cs,
                   fid, want, fabs(fid - want), rel_err(info.trace_sqrt, want_tr), info.min_eig);

        /* The ADM 1e-6·I retry path, forced. */
        double fo = frechet_distance_ex((int)D, mu1, s1, mu2, s2, FRECHET_ADM_EPS, &info);
        snprintf(key, sizeof key, "%s.fid_offset", cs);
        double want_o = fx_scalar(st, key);
        snprintf(key, sizeof key, "%s.trace_sqrt_offset", cs);
        double want_tro = fx_scalar(st, key);
        CHECK(rel_err(info.trace_sqrt, want_tro) <= 1e-9, "%s: offset tr sqrtm %.15g, scipy %.15g", cs,
              info.trace_sqrt, want_tro);
        CHECK(fabs(fo - want_o) <= 2e-9 * scale, "%s: offset FID %.15g, scipy %.15g", cs, fo, want_o);
        if (getenv("TEST_VERBOSE"))
            printf("       fid %-6s offset 1e-6: %.12g scipy %.12g (abs err %.3g)\n", cs, fo, want_o,
                   fabs(fo - want_o));

        /* End to end from the features (ADM float32 mean). */
        snprintf(key, sizeof key, "%s.x1", cs);
        float *x1 = fixture_f32(st, key, NULL);
        int64_t N1 = fx_rows(st, key);
        snprintf(key, sizeof key, "%s.x2", cs);
        float *x2 = fixture_f32(st, key, NULL);
        int64_t N2 = fx_rows(st, key);
        feature_stats a, b;
        feature_stats_compute(&a, x1, N1, (int)D, FEATURE_MEAN_ADM_F32);
        feature_stats_compute(&b, x2, N2, (int)D, FEATURE_MEAN_ADM_F32);
        double fe = frechet_distance(&a, &b, NULL);
        CHECK(fabs(fe - want) <= 2 * tr_tol * scale, "%s: FID from features %.15g, scipy %.15g", cs, fe, want);
        feature_stats_free(&a);
        feature_stats_free(&b);
        free(x1);
        free(x2);
        free(mu1);
        free(mu2);
        free(s1);
        free(s2);
    }
    safetensors_close(st);
}

/* Random statistics: Σ = L Lᵀ / D + δ I from normal L (rank-deficient if δ = 0 and r < D). */
static void random_cov(double *sigma, int D, int r, double delta, uint64_t seed)
{
    float *L = alloc_normal((size_t)D * r, 1.0f, seed);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int k = 0; k < r; k++)
                s += (double)L[(size_t)i * r + k] * L[(size_t)j * r + k];
            sigma[(size_t)i * D + j] = s / D + (i == j ? delta : 0);
        }
    free(L);
}

static void test_fid_invariants(void)
{
    const int D = 96;
    double *s1 = xmalloc((size_t)D * D * sizeof(double)), *s2 = xmalloc((size_t)D * D * sizeof(double));
    double *s3 = xmalloc((size_t)D * D * sizeof(double));
    double mu1[96], mu2[96], mu1t[96], mu2t[96];
    float *m = alloc_normal(2 * D, 1.0f, 3);
    for (int i = 0; i < D; i++) {
        mu1[i] = m[i];
        mu2[i] = m[D + i];
        mu1t[i] = mu1[i] + 3.25 * (i % 5);
        mu2t[i] = mu2[i] + 3.25 * (i % 5);
    }
    free(m);
    random_cov(s1, D, D, 0.01, 11);
    random_cov(s2, D, 40, 0.0, 12); /* rank 40 of 96 */
    frechet_info i1, i2;
    double tr1 = 0;
    for (int i = 0; i < D; i++)
        tr1 += s1[(size_t)i * D + i];

    /* FID(a, a) = 0: tr sqrtm(Σ²) = tr Σ exactly in exact arithmetic. */
    double faa = frechet_distance_ex(D, mu1, s1, mu1, s1, 0, &i1);
    CHECK(fabs(faa) <= 1e-10 * tr1, "FID(a, a) = %.3g (tr Σ %.3g)", faa, tr1);
    double fss = frechet_distance_ex(D, mu2, s2, mu2, s2, 0, &i1);
    CHECK(fabs(fss) <= 1e-7 * i1.trace1, "FID(a, a) singular = %.3g (tr Σ %.3g)", fss, i1.trace1);
    verbose("       FID(a,a) = %.3g, singular %.3g\n", faa, fss);

    /* Symmetry (different algebra on each side: Σ1 is factorised, Σ2 multiplied). */
    double fab = frechet_distance_ex(D, mu1, s1, mu2, s2, 0, &i1);
    double fba = frechet_distance_ex(D, mu2, s2, mu1, s1, 0, &i2);
    CHECK(fabs(fab - fba) <= 1e-9 * (i1.trace1 + i1.trace2), "FID not symmetric: %.15g vs %.15g", fab, fba);
    verbose("       symmetry |FID(a,b) - FID(b,a)| = %.3g (FID %.6g)\n", fabs(fab - fba), fab);

    /* Translating both means leaves FID unchanged. */
    double ft = frechet_distance_ex(D, mu1t, s1, mu2t, s2, 0, NULL);
    CHECK(fabs(ft - fab) <= 1e-10 * fab, "translated FID %.15g vs %.15g", ft, fab);

    /* Mean-only difference: FID = ‖μ1 − μ2‖². */
    double fm = frechet_distance_ex(D, mu1, s1, mu2, s1, 0, &i1);
    CHECK(fabs(fm - i1.mean_term) <= 1e-10 * tr1, "mean-only FID %.15g vs ‖δ‖² %.15g", fm, i1.mean_term);

    /* Σ2 = c²Σ1: tr sqrtm(Σ1Σ2) = c·tr Σ1, FID = ‖δ‖² + (1 − c)² tr Σ1 — also for singular Σ1. */
    const double cc = 1.7;
    for (int sing = 0; sing < 2; sing++) {
        const double *base = sing ? s2 : s1;
        double tr = 0;
        for (size_t i = 0; i < (size_t)D * D; i++)
            s3[i] = cc * cc * base[i];
        for (int i = 0; i < D; i++)
            tr += base[(size_t)i * D + i];
        double f = frechet_distance_ex(D, mu1, base, mu2, s3, 0, &i1);
        double want = i1.mean_term + (1 - cc) * (1 - cc) * tr;
        CHECK(fabs(f - want) <= (sing ? 1e-7 : 1e-10) * (1 + cc * cc) * tr, "scaled (%s): FID %.15g, want %.15g",
              sing ? "singular" : "regular", f, want);
        verbose("       scaled covariance FID err %.3g (singular=%.0f)\n", fabs(f - want), sing);
    }

    /* Non-finite input: the ADM retry (offset 1e-6) is taken and NaN comes out. */
    double saved = s1[5];
    s1[5] = NAN;
    double fn = frechet_distance_ex(D, mu1, s1, mu2, s2, 0, &i1);
    CHECK(isnan(fn) && i1.offset == FRECHET_ADM_EPS, "NaN covariance: FID %g, offset %g", fn, i1.offset);
    s1[5] = saved;
    free(s1);
    free(s2);
    free(s3);
}

/* trace_sqrtm_product on matrices whose answer is known in closed form:
 * diagonal ones (with the offset 0 and 1), Σ1 = Σ2 (the trace of Σ), and
 * non-finite input, refused before LAPACK sees it. */
static void test_trace_sqrtm_closed_forms(void)
{
    const double s1[9] = {1, 0, 0, 0, 4, 0, 0, 0, 9}, s2[9] = {25, 0, 0, 0, 16, 0, 0, 0, 1};
    double lo1, lo;
    double t = trace_sqrtm_product(3, s1, s2, 0, &lo1, &lo);
    /* sqrt(1·25) + sqrt(4·16) + sqrt(9·1); smallest eigenvalues 1 (Σ1) and 9 (Σ1Σ2). */
    CHECK(fabs(t - 16) < 1e-12 && fabs(lo1 - 1) < 1e-12 && fabs(lo - 9) < 1e-12,
          "diagonal: trace %.15g (want 16), min eigenvalues %.15g (1), %.15g (9)", t, lo1, lo);
    t = trace_sqrtm_product(3, s1, s2, 1, &lo1, &lo);
    double want = sqrt(2.0 * 26) + sqrt(5.0 * 17) + sqrt(10.0 * 2);
    CHECK(fabs(t - want) < 1e-12 && fabs(lo1 - 2) < 1e-12 && fabs(lo - 20) < 1e-12,
          "diagonal, offset 1: trace %.15g (want %.15g), min eigenvalues %.15g (2), %.15g (20)", t, want, lo1, lo);
    const double sym[4] = {2, 1, 1, 2}; /* eigenvalues 1 and 3 */
    t = trace_sqrtm_product(2, sym, sym, 0, &lo1, &lo);
    CHECK(fabs(t - 4) < 1e-12 && fabs(lo1 - 1) < 1e-12 && fabs(lo - 1) < 1e-12,
          "Σ1 = Σ2: trace %.15g (want tr Σ = 4), min eigenvalues %.15g, %.15g (1, 1)", t, lo1, lo);
    /* The same through frechet_distance_ex, and what it reports. */
    const double mu1[3] = {1, 2, 3}, mu2[3] = {1, 0, 3};
    frechet_info info;
    double f = frechet_distance_ex(3, mu1, s1, mu2, s2, 1, &info);
    CHECK(info.mean_term == 4 && info.trace1 == 14 && info.trace2 == 42 && fabs(info.trace_sqrt - want) < 1e-12 &&
              fabs(info.min_eig1 - 2) < 1e-12 && fabs(info.min_eig - 20) < 1e-12 && info.offset == 1 &&
              fabs(f - (4 + 14 + 42 - 2 * want)) < 1e-11,
          "FID %.15g: mean term %g (4), traces %g (14) %g (42) %.15g (%.15g), eigenvalues %g (2) %g (20), offset %g",
          f, info.mean_term, info.trace1, info.trace2, info.trace_sqrt, want, info.min_eig1, info.min_eig,
          info.offset);
    /* One dimension: (m1 − m2)² + s1 + s2 − 2·sqrt(s1·s2). */
    const double a = 2.25, b = 0.25, m1 = 0.5, m2 = -1;
    f = frechet_distance_ex(1, &m1, &a, &m2, &b, 0, NULL);
    CHECK(fabs(f - (2.25 + 2.25 + 0.25 - 2 * 0.75)) < 1e-14, "1-D FID %.17g, want 3.25", f);
    double bad[9];
    memcpy(bad, s2, sizeof bad);
    bad[8] = INFINITY;
    t = trace_sqrtm_product(3, s1, bad, 0, &lo1, &lo);
    CHECK(isnan(t) && isnan(lo1) && isnan(lo), "an infinite last element of Σ2: trace %g, eigenvalues %g %g", t, lo1,
          lo);
}

typedef struct nonpsd_ctx {
    int D;
} nonpsd_ctx;

static void fid_not_psd(void *vctx)
{
    int D = ((nonpsd_ctx *)vctx)->D;
    double *s1 = xcalloc((size_t)D * D, sizeof(double)), *s2 = xcalloc((size_t)D * D, sizeof(double));
    double *mu = xcalloc((size_t)D, sizeof(double));
    for (int i = 0; i < D; i++) {
        s1[(size_t)i * D + i] = 1;
        s2[(size_t)i * D + i] = i == 2 ? -0.5 : 1; /* one negative eigenvalue */
    }
    frechet_distance_ex(D, mu, s1, mu, s2, 0, NULL);
}

static void fid_of_nothing(void *ctx)
{
    const double x = 1;
    frechet_distance_ex(0, &x, &x, &x, &x, 0, NULL);
}

static void test_fid_imaginary_component_dies(void)
{
    expect_die("FID of dimension 0", fid_of_nothing, NULL, "Frechet distance: dimension 0 must be positive");
    nonpsd_ctx c = {8};
    expect_die("FID of a non-PSD covariance", fid_not_psd, &c, "imaginary component");
}

/* ---- Inception Score ---- */

/* Degenerate but valid: one image per split, or one class, gives exactly 1
 * (every KL term is 0); no images, no classes or splits of 0 are refused. */
typedef struct is_bad {
    int64_t N, split;
    int C;
} is_bad;

static void is_child(void *ctx)
{
    const is_bad *b = ctx;
    const float logits[4] = {0.5f, -1, 2, 0};
    inception_score_logits(logits, b->N, b->C, b->split, NULL);
}

static void test_inception_score_edges(void)
{
    const float logits[6] = {0.5f, -1, 2, 0, 3, -2};
    double one = inception_score_logits(logits, 3, 2, 1, NULL);
    double one_class = inception_score_logits(logits, 6, 1, 5000, NULL);
    CHECK(one == 1 && one_class == 1, "splits of one image: IS %.17g; one class: %.17g (both exactly 1)", one,
          one_class);
    is_bad cases[3] = {{2, 0, 2}, {0, 10, 2}, {2, 10, 0}};
    expect_die("splits of 0", is_child, &cases[0], "inception score: split size 0 must be positive");
    expect_die("no images", is_child, &cases[1], "inception score: 0 samples of 2 classes");
    expect_die("no classes", is_child, &cases[2], "inception score: 2 samples of 0 classes");
}

static void test_inception_score_matches_numpy(void)
{
    safetensors *st = fixture_open("eval/is");
    size_t n;
    float *la = fixture_f32(st, "a.logits", &n);
    const st_tensor *ta = safetensors_require(st, "a.logits");
    int64_t N = ta->shape[0];
    int C = (int)ta->shape[1];
    double splits[3];
    CHECK(inception_score_num_splits(N, 150) == 3, "400 samples in splits of 150 make 3 splits");
    double is = inception_score_logits(la, N, C, 150, splits);
    double want = fx_scalar(st, "a.is"), want_adm = fx_scalar(st, "a.is_adm");
    double *ws = fx_f64(st, "a.splits", NULL);
    /* Double vs double: summation order only. */
    CHECK(rel_err(is, want) <= 1e-12, "IS %.15g, numpy f64 %.15g", is, want);
    for (int s = 0; s < 3; s++)
        CHECK(rel_err(splits[s], ws[s]) <= 1e-12, "split %d: %.15g vs %.15g", s, splits[s], ws[s]);
    /* The evaluator's float32 pipeline: ~1e-7 relative, 1e-5 leaves room. */
    CHECK(rel_err(is, want_adm) <= 1e-5, "IS %.15g, ADM float32 %.15g", is, want_adm);
    verbose("       IS a: rel err vs f64 %.3g, vs ADM float32 %.3g\n", rel_err(is, want), rel_err(is, want_adm));
    free(ws);
    free(la);

    float *lb = fixture_f32(st, "b.logits", NULL);
    float *pb = fixture_f32(st, "b.probs", NULL);
    const st_tensor *tb = safetensors_require(st, "b.logits");
    N = tb->shape[0];
    C = (int)tb->shape[1];
    is = inception_score_logits(lb, N, C, IS_SPLIT_SIZE, NULL);
    want = fx_scalar(st, "b.is");
    want_adm = fx_scalar(st, "b.is_adm");
    CHECK(rel_err(is, want) <= 1e-12, "IS b %.15g, numpy f64 %.15g", is, want);
    CHECK(rel_err(is, want_adm) <= 1e-5, "IS b %.15g, ADM float32 %.15g", is, want_adm);
    double isp = inception_score_probs(pb, N, C, IS_SPLIT_SIZE, NULL);
    double wantp = fx_scalar(st, "b.is_probs");
    CHECK(rel_err(isp, wantp) <= 1e-12, "IS from probs %.15g, numpy %.15g", isp, wantp);
    verbose("       IS b: rel err vs f64 %.3g, from probs %.3g\n", rel_err(is, want), rel_err(isp, wantp));
    free(lb);
    free(pb);
    safetensors_close(st);
}

static void test_inception_score_limits(void)
{
    /* Uniform predictions: IS = 1.  N confident predictions of N distinct classes: IS = N. */
    const int N = 50, C = 1008;
    float *l = alloc_zeros((size_t)N * C);
    double is = inception_score_logits(l, N, C, IS_SPLIT_SIZE, NULL);
    CHECK(fabs(is - 1) <= 1e-12, "uniform logits: IS %.15g", is);
    for (int i = 0; i < N; i++)
        l[(size_t)i * C + 3 * i] = 200.0f; /* p = 1 to double precision, the rest exp(−200) */
    is = inception_score_logits(l, N, C, IS_SPLIT_SIZE, NULL);
    CHECK(fabs(is - N) <= 1e-9 * N, "one-hot logits: IS %.15g, want %d", is, N);
    /* Two splits of 25: each has 25 classes. */
    is = inception_score_logits(l, N, C, 25, NULL);
    CHECK(fabs(is - 25) <= 1e-9 * 25, "one-hot logits, splits of 25: IS %.15g", is);
    /* Probabilities with exact zeros: 0·log 0 = 0, not NaN. */
    float *p = alloc_zeros((size_t)N * C);
    for (int i = 0; i < N; i++)
        p[(size_t)i * C + 3 * i] = 1.0f;
    is = inception_score_probs(p, N, C, IS_SPLIT_SIZE, NULL);
    CHECK(fabs(is - N) <= 1e-9 * N, "one-hot probabilities: IS %.15g, want %d", is, N);
    free(l);
    free(p);
}

/* ---- precision / recall ---- */

static const char *pr_cases[] = {"ties", "wide", "rand", "fallback"};

static void test_pr_matches_numpy(void)
{
    safetensors *st = fixture_open("eval/pr");
    for (int c = 0; c < 4; c++) {
        const char *cs = pr_cases[c];
        char key[64];
        snprintf(key, sizeof key, "%s.ref", cs);
        const st_tensor *tr = safetensors_require(st, key);
        int64_t nr = tr->shape[0];
        int D = (int)tr->shape[1];
        float *ref = fixture_f32(st, key, NULL);
        snprintf(key, sizeof key, "%s.samp", cs);
        int64_t ns = fx_rows(st, key);
        float *samp = fixture_f32(st, key, NULL);
        snprintf(key, sizeof key, "%s.block", cs);
        int64_t block = (int64_t)fx_scalar(st, key);
        snprintf(key, sizeof key, "%s.counts", cs);
        double *cnt = fx_f64(st, key, NULL);

        for (int fp16 = 1; fp16 >= 0; fp16--) {
            /* tile_rows changes only the memory layout, never the result: 0 (auto, one tile per
             * block here), 1 and 7 (a block's fallback found after some tiles were consumed). */
            const int64_t tiles[] = {0, 1, 7};
            for (int ti = 0; ti < 3; ti++) {
                pr_opts o = {.k = 3, .row_block = block, .col_block = block, .fp16 = fp16, .tile_rows = tiles[ti]};
                float *rr = xmalloc((size_t)nr * 4), *rs = xmalloc((size_t)ns * 4);
                pr_counts counts = {0, 0};
                pr_manifold_radii(rr, ref, nr, D, &o, &counts);
                pr_manifold_radii(rs, samp, ns, D, &o, &counts);
                double p, r;
                pr_evaluate(&p, &r, ref, rr, nr, samp, rs, ns, D, &o, &counts);
                const char *sfx = fp16 ? "" : "_fp32";
                char what[96];
                /* Integer-valued cases are exact in both implementations: radii bit-identical.  The
                 * float case rounds fp32 sums (ours: sgemm order, numpy: double) to fp16, which could
                 * differ by an fp16 ulp near a rounding boundary; with these data it does not, so the
                 * fp16 check is exact too (relax to one fp16 ulp if new data hits a boundary).  In
                 * fp32 the float case differs by the summation order of u·v over 64 terms: a few fp32
                 * ulps (observed 2.3e-7 relative), hence rtol 1e-6 there. */
                double rtol = (!fp16 && strcmp(cs, "rand") == 0) ? 1e-6 : 0;
                snprintf(key, sizeof key, "%s.radii_ref%s", cs, sfx);
                snprintf(what, sizeof what, "%s radii ref%s tile %lld", cs, sfx, (long long)tiles[ti]);
                if (!fixture_check(st, key, rr, (size_t)nr, 0, rtol))
                    CHECK(0, "%s", what);
                snprintf(key, sizeof key, "%s.radii_samp%s", cs, sfx);
                snprintf(what, sizeof what, "%s radii samp%s tile %lld", cs, sfx, (long long)tiles[ti]);
                if (!fixture_check(st, key, rs, (size_t)ns, 0, rtol))
                    CHECK(0, "%s", what);
                snprintf(key, sizeof key, "%s.pr%s", cs, sfx);
                double *want = fx_f64(st, key, NULL);
                CHECK(p == want[0] && r == want[1], "%s%s tile %lld: precision %.6g recall %.6g, numpy %.6g %.6g", cs,
                      sfx, (long long)tiles[ti], p, r, want[0], want[1]);
                if (fp16)
                    CHECK(counts.blocks == (int64_t)cnt[0] && counts.fp32_blocks == (int64_t)cnt[1],
                          "%s: %lld blocks, %lld in fp32; numpy %g, %g", cs, (long long)counts.blocks,
                          (long long)counts.fp32_blocks, cnt[0], cnt[1]);
                if (getenv("TEST_VERBOSE") && ti == 0)
                    printf("       P/R %-8s%-5s P %.6g R %.6g (numpy %.6g %.6g), %lld blocks, %lld fp32\n", cs, sfx, p,
                           r, want[0], want[1], (long long)counts.blocks, (long long)counts.fp32_blocks);
                free(want);
                free(rr);
                free(rs);
            }
        }
        /* precision_recall() = radii + evaluate. */
        pr_opts o = {.k = 3, .row_block = block, .col_block = block, .fp16 = 1};
        double p, r;
        precision_recall(&p, &r, ref, nr, samp, ns, D, &o, NULL);
        snprintf(key, sizeof key, "%s.pr", cs);
        double *want = fx_f64(st, key, NULL);
        CHECK(p == want[0] && r == want[1], "%s: precision_recall %.6g %.6g, numpy %.6g %.6g", cs, p, r, want[0],
              want[1]);
        free(want);
        free(cnt);
        free(ref);
        free(samp);
    }
    safetensors_close(st);
}

/* Each option alone out of range is refused; k = 1 and k = 63 with one
 * more point than k are accepted. */
typedef struct pr_bad {
    pr_opts o;
    int64_t n;
} pr_bad;

static void pr_radii_child(void *ctx)
{
    const pr_bad *b = ctx;
    float x[70 * 2], r[70];
    for (int i = 0; i < 140; i++)
        x[i] = (float)(i * 7 % 13);
    pr_manifold_radii(r, x, b->n, 2, &b->o, NULL);
}

static void test_pr_options_refused(void)
{
    const struct {
        int field;
        int64_t value;
        const char *want;
    } cases[] = {
        {0, 0, "bad options k=0"},          {1, 0, "row_block=0"},
        {2, 0, "col_block=0"},              {3, -1, "tile_rows=-1"},
        {2, INT32_MAX / 2 + 1, "column block 1073741824 is too large"},
        {0, 64, "k = 64 is too large (at most 63)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pr_bad b = {pr_opts_adm(), 70};
        if (cases[i].field == 0)
            b.o.k = (int)cases[i].value;
        else if (cases[i].field == 1)
            b.o.row_block = cases[i].value;
        else if (cases[i].field == 2)
            b.o.col_block = cases[i].value;
        else
            b.o.tile_rows = cases[i].value;
        expect_die(cases[i].want, pr_radii_child, &b, cases[i].want);
    }
    pr_bad b = {pr_opts_adm(), 3};
    expect_die("3 points for k = 3", pr_radii_child, &b, "3 points cannot have a 3-th nearest neighbour");
    char err[256];
    const int ks[2] = {1, 63};
    for (int i = 0; i < 2; i++) {
        pr_bad ok = {pr_opts_adm(), ks[i] + 1};
        ok.o.k = ks[i];
        CHECK(run_in_child(pr_radii_child, &ok, err, sizeof err) == 0, "k = %d with %d points: %s", ks[i], ks[i] + 1,
              err);
    }
}

static void test_pr_distance_block(void)
{
    /* fp32 path against exact double distances; fp16 path within fp16 rounding. */
    const int nu = 9, nv = 13, D = 50;
    float *U = alloc_normal((size_t)nu * D, 1.0f, 21), *V = alloc_normal((size_t)nv * D, 1.0f, 22);
    float *d16 = xmalloc((size_t)nu * nv * 4), *d32 = xmalloc((size_t)nu * nv * 4);
    CHECK(pr_distance_block(d16, U, nu, V, nv, D, 1) == 1, "a normal block should stay in fp16");
    CHECK(pr_distance_block(d32, U, nu, V, nv, D, 0) == 0, "fp16 = 0 must compute in fp32");
    double e16 = 0, e32 = 0;
    for (int i = 0; i < nu; i++)
        for (int j = 0; j < nv; j++) {
            double s = 0;
            for (int k = 0; k < D; k++) {
                double t = (double)U[i * D + k] - V[j * D + k];
                s += t * t;
            }
            e16 = fmax(e16, fabs(d16[i * nv + j] - s) / s);
            e32 = fmax(e32, fabs(d32[i * nv + j] - s) / s);
            CHECK(d16[i * nv + j] == pr_f16_round(d16[i * nv + j]), "fp16 distance not an fp16 value");
        }
    /* ‖u‖² + ‖v‖² ≈ 100, d ≈ 100: cancellation-free, so fp32 ~1e-6, fp16 ~ a few 2^-11. */
    CHECK(e32 <= 1e-5, "fp32 distances: rel err %.3g", e32);
    CHECK(e16 <= 1e-2, "fp16 distances: rel err %.3g", e16);
    /* One overflowing row sends the whole block to fp32. */
    for (int k = 0; k < D; k++)
        U[4 * D + k] *= 100.0f;
    CHECK(pr_distance_block(d16, U, nu, V, nv, D, 1) == 0, "an fp16 overflow must fall back to fp32");
    pr_distance_block(d32, U, nu, V, nv, D, 0);
    CHECK(memcmp(d16, d32, (size_t)nu * nv * 4) == 0, "the fallback block is the fp32 block");
    /* ‖u‖² = 40000 for two different rows: fp16 2·u·v overflows to +inf, −inf → max → 0. */
    float W[2 * 16];
    for (int k = 0; k < 16; k++)
        W[k] = W[16 + k] = 50.0f;
    W[16] = 49.0f;
    float dw[4];
    CHECK(pr_distance_block(dw, W, 2, W, 2, 16, 1) == 1 && dw[1] == 0 && dw[2] == 0,
          "ADM's silent fp16 zero: got %g %g (want 0 0)", dw[1], dw[2]);
    free(U);
    free(V);
    free(d16);
    free(d32);
}

/* ---- PSNR / SSIM ---- */

static void test_psnr_ssim_match_skimage(void)
{
    safetensors *st = fixture_open("eval/image");
    const char *cases[] = {"u8", "small"};
    for (int c = 0; c < 2; c++) {
        char key[64];
        snprintf(key, sizeof key, "%s.a", cases[c]);
        const st_tensor *t = safetensors_require(st, key);
        int C = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
        size_t n = (size_t)C * H * W;
        uint8_t *a = xmalloc(n), *b = xmalloc(n);
        memcpy(a, st->data + t->begin, n);
        snprintf(key, sizeof key, "%s.b", cases[c]);
        memcpy(b, st->data + safetensors_require(st, key)->begin, n);
        double ps = psnr_u8(a, b, n), ss = ssim_u8(a, b, C, H, W);
        snprintf(key, sizeof key, "%s.psnr", cases[c]);
        double wp = fx_scalar(st, key);
        snprintf(key, sizeof key, "%s.ssim", cases[c]);
        double ws = fx_scalar(st, key);
        /* Both in double; the filters sum in different orders (scipy: axis 0 first). */
        CHECK(rel_err(ps, wp) <= 1e-12, "%s PSNR %.15g, skimage formula %.15g", cases[c], ps, wp);
        CHECK(fabs(ss - ws) <= 1e-10, "%s SSIM %.15g, skimage formula %.15g", cases[c], ss, ws);
        verbose("       u8 PSNR rel err %.3g, SSIM abs err %.3g\n", rel_err(ps, wp), fabs(ss - ws));
        CHECK(isinf(psnr_u8(a, a, n)) && fabs(ssim_u8(a, a, C, H, W) - 1) <= 1e-12,
              "identical images: PSNR inf, SSIM 1");
        free(a);
        free(b);
    }
    const st_tensor *t = safetensors_require(st, "f32.a");
    int C = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
    size_t n = (size_t)C * H * W;
    float *a = fixture_f32(st, "f32.a", NULL), *b = fixture_f32(st, "f32.b", NULL);
    double ps = psnr_f32(a, b, n, 2.0), ss = ssim_f32(a, b, C, H, W, 2.0);
    CHECK(rel_err(ps, fx_scalar(st, "f32.psnr")) <= 1e-12, "f32 PSNR %.15g vs %.15g", ps, fx_scalar(st, "f32.psnr"));
    CHECK(fabs(ss - fx_scalar(st, "f32.ssim")) <= 1e-10, "f32 SSIM %.15g vs %.15g", ss, fx_scalar(st, "f32.ssim"));
    verbose("       f32 PSNR rel err %.3g, SSIM abs err %.3g\n", rel_err(ps, fx_scalar(st, "f32.psnr")),
            fabs(ss - fx_scalar(st, "f32.ssim")));
    free(a);
    free(b);
    safetensors_close(st);
}

static void ssim_too_small(void *ctx)
{
    uint8_t a[3 * 10 * 12] = {0};
    ssim_u8(a, a, 3, 10, 12);
}

static void ssim_f32_too_small(void *ctx)
{
    float a[12 * 11] = {0};
    ssim_f32(a, a, 1, 12, 10, 2.0);
}

static void test_ssim_rejects_small_images(void)
{
    expect_die("SSIM of a 10x12 image", ssim_too_small, NULL, "smaller than the 11x11 window");
    expect_die("SSIM of a float 12x10 image", ssim_f32_too_small, NULL, "a 1x12x10 image is smaller than the 11x11");
}

int main(void)
{
    RUN(test_f16_round_matches_numpy);
    RUN(test_stats_match_numpy);
    RUN(test_stats_incremental_equals_one_shot);
    RUN(test_stats_buffer_edges);
    RUN(test_stats_refuse_bad_input);
    RUN(test_stats_from_arrays);
    RUN(test_stats_check_edges);
    RUN(test_stats_load_variants);
    RUN(test_fid_matches_scipy);
    RUN(test_fid_invariants);
    RUN(test_fid_imaginary_component_dies);
    RUN(test_trace_sqrtm_closed_forms);
    RUN(test_inception_score_matches_numpy);
    RUN(test_inception_score_limits);
    RUN(test_inception_score_edges);
    RUN(test_pr_matches_numpy);
    RUN(test_pr_distance_block);
    RUN(test_pr_options_refused);
    RUN(test_psnr_ssim_match_skimage);
    RUN(test_ssim_rejects_small_images);
    return test_summary();
}
