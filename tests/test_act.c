/* Activations (src/ops/act.c): finite differences, PyTorch parity
 * (tests/fixtures/ops/act_*.safetensors from dev/ref/act_ref.py), in-place
 * forward, accumulation into din, and the threaded path against the serial one. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "ops/act.h"
#include "test.h"

typedef void (*fwd_fn)(float *out, const float *in, size_t n);
typedef void (*bwd_fn)(float *din, const float *dout, const float *in, size_t n);

/* LeakyReLU with the discriminator's slope, in the common signature. */
static void leaky02_forward(float *out, const float *in, size_t n) { leaky_relu_forward(out, in, n, 0.2f); }
static void leaky02_backward(float *din, const float *dout, const float *in, size_t n)
{
    leaky_relu_backward(din, dout, in, n, 0.2f);
}

static void gelu_tanh_backward_adding(float *din, const float *dout, const float *in, size_t n)
{
    gelu_tanh_backward(din, true, dout, in, n);
}

static const struct {
    const char *name;
    fwd_fn fwd;
    bwd_fn bwd;
} ACTS[] = {
    {"silu", silu_forward, silu_backward},
    {"gelu_tanh", gelu_tanh_forward, gelu_tanh_backward_adding},
    {"gelu_erf", gelu_erf_forward, gelu_erf_backward},
    {"relu", relu_forward, relu_backward},
    {"leaky_relu", leaky02_forward, leaky02_backward},
};
#define N_ACTS (sizeof ACTS / sizeof ACTS[0])

typedef struct {
    fwd_fn fwd;
    float *x, *out, *cot;
    size_t n;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    c->fwd(c->out, c->x, c->n);
    return dot_f64(c->out, c->cot, c->n);
}

static void test_act_finite_differences(void)
{
    const size_t n = 64;
    for (size_t a = 0; a < N_ACTS; a++) {
        float *x = alloc_uniform(n, -4.0f, 4.0f, 10 + a), *cot = alloc_normal(n, 1.0f, 20 + a);
        float *out = alloc_zeros(n), *din = alloc_zeros(n);
        /* Keep every x at least 0.05 from the ReLU kink, well beyond the step h. */
        for (size_t i = 0; i < n; i++)
            if (fabsf(x[i]) < 0.05f)
                x[i] = x[i] < 0 ? -0.05f - x[i] : 0.05f + x[i];
        ACTS[a].bwd(din, cot, x, n);
        act_ctx c = {ACTS[a].fwd, x, out, cot, n};
        char what[64];
        snprintf(what, sizeof what, "%s dx", ACTS[a].name);
        /* Elementwise, so a step in x[i] moves one output: the quotient's
         * rounding error is ~6e-8·|out|/2h ≈ 1.2e-5 and the truncation error
         * h²/6·|f'''| ≈ 2e-5 for h = 1e-2; 1e-3 of max|grad| leaves room yet
         * catches any wrong term (the GELU variants' derivatives differ by more). */
        fd_check(what, act_loss, &c, x, din, n, 1e-2, 0.0, 1e-3, 0);
        free(x), free(cot), free(out), free(din);
    }
}

static void test_act_matches_torch(void)
{
    for (size_t a = 0; a < N_ACTS; a++) {
        char name[64];
        snprintf(name, sizeof name, "ops/act_%s", ACTS[a].name);
        safetensors *st = fixture_open(name);
        size_t n;
        float *x = fixture_f32(st, "x", &n), *cot = fixture_f32(st, "cot", NULL);
        float *out = alloc_zeros(n), *din = alloc_zeros(n);
        ACTS[a].fwd(out, x, n);
        ACTS[a].bwd(din, cot, x, n);
        /* The fixture is float64 torch on the same float32 inputs, so this is
         * our own error: a few float roundings plus libm's expf/erfcf (a few
         * ulp); measured ≤ 1.3e-6 relative, allowed 1e-5 (other libms).  atol
         * covers results that underflow (x·σ(x) at x = −90 is −7e-38). */
        fixture_check(st, "out", out, n, 1e-7, 1e-5);
        /* In the GELU tails the derivative cdf + x·pdf → 0 by cancellation,
         * so tiny gradients carry ~1e-7 absolute error (measured ≤ 7e-7
         * absolute on gradients up to ~3·|cot|): atol 1e-6, rtol 1e-5. */
        fixture_check(st, "grad.x", din, n, 1e-6, 1e-5);
        free(x), free(cot), free(out), free(din);
        safetensors_close(st);
    }
}

static void test_act_kinks_follow_torch(void)
{
    /* relu'(0) = 0 and leaky_relu'(0) = slope, as torch's threshold_backward
     * and leaky_relu_backward; also checked by the fixtures' zeros. */
    float x[2] = {0.0f, -0.0f}, dout[2] = {1.0f, 1.0f}, d1[2] = {0, 0}, d2[2] = {0, 0};
    relu_backward(d1, dout, x, 2);
    leaky_relu_backward(d2, dout, x, 2, 0.2f);
    CHECK(d1[0] == 0.0f && d1[1] == 0.0f, "relu'(0) should be 0, got %g %g", d1[0], d1[1]);
    CHECK(d2[0] == 0.2f && d2[1] == 0.2f, "leaky_relu'(0) should be 0.2, got %g %g", d2[0], d2[1]);
    float nan_in = NAN, nan_out = 0;
    relu_forward(&nan_out, &nan_in, 1);
    CHECK(isnan(nan_out), "relu(NaN) should stay NaN as in torch, got %g", nan_out);
}

static void test_act_in_place_forward(void)
{
    const size_t n = 1000;
    for (size_t a = 0; a < N_ACTS; a++) {
        float *x = alloc_normal(n, 3.0f, 30 + a), *want = alloc_zeros(n);
        ACTS[a].fwd(want, x, n);
        ACTS[a].fwd(x, x, n);
        CHECK(memcmp(x, want, n * sizeof(float)) == 0, "%s: in-place forward differs from out-of-place",
              ACTS[a].name);
        free(x), free(want);
    }
}

static void test_act_backward_accumulates(void)
{
    /* din starts at a nonzero p; after backward it must be p + grad. */
    safetensors *st = fixture_open("ops/act_gelu_tanh");
    size_t n;
    float *x = fixture_f32(st, "x", &n), *cot = fixture_f32(st, "cot", NULL);
    float *p = alloc_normal(n, 1.0f, 40), *din = malloc(n * sizeof(float));
    memcpy(din, p, n * sizeof(float));
    gelu_tanh_backward(din, true, cot, x, n);
    for (size_t i = 0; i < n; i++)
        din[i] -= p[i]; /* exact up to one rounding of p + grad */
    fixture_check(st, "grad.x", din, n, 1e-6, 1e-5);
    free(x), free(cot), free(p), free(din);
    safetensors_close(st);
}

/* accumulate = false stores: into a buffer of NaNs it must give the bits of
 * adding into zeros, on the threaded and the serial path. */
static void test_gelu_tanh_backward_stores(void)
{
    const size_t sizes[] = {(1u << 17) + 3, 1000};
    for (size_t k = 0; k < 2; k++) {
        const size_t n = sizes[k];
        float *x = alloc_normal(n, 3.0f, 60), *dout = alloc_normal(n, 1.0f, 61);
        float *want = alloc_zeros(n), *got = xmalloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            got[i] = NAN;
        gelu_tanh_backward(want, true, dout, x, n);
        gelu_tanh_backward(got, false, dout, x, n);
        CHECK(memcmp(got, want, n * sizeof(float)) == 0, "n=%zu: stored gradient differs from added into zeros", n);
        free(x), free(dout), free(want), free(got);
    }
}

/* The exact GELU's Φ is our own vectorised erfc (act.c), so it is checked
 * densely against double precision, not only on the fixture's points:
 * 2^20 + 1 inputs over [−13, 13] (below −13.2 it flushes to 0).  The
 * reference starts from the same float arguments as act.c (a = |x|·(1/√2)
 * and −x²/2, each rounded to float), so the bound is the error of our
 * functions alone and can be tight: 8e-7 relative to the size of what is
 * summed (erfc measured ≤ 4.3e-7, then three roundings; the GELU and its
 * derivative measured ≤ 4.7e-7).  A wrong coefficient of P, the missing fma
 * correction of a² (up to 3.8e-6 relative at |x| = 13) or the wrong side of
 * the 1 − erfc/2 split fails it. */
static void test_gelu_erf_against_double(void)
{
    const size_t n = (1u << 20) + 1;
    float *x = xmalloc(n * sizeof(float)), *out = xmalloc(n * sizeof(float));
    float *ones = xmalloc(n * sizeof(float)), *din = alloc_zeros(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = -13.0f + 26.0f * (float)i / (float)(n - 1);
        ones[i] = 1.0f;
    }
    gelu_erf_forward(out, x, n);
    gelu_erf_backward(din, ones, x, n);
    const double tol = 8e-7;
    double worst_fwd = 0.0, worst_bwd = 0.0;
    size_t bad_fwd = 0, bad_bwd = 0;
    for (size_t i = 0; i < n; i++) {
        const float a = fabsf(x[i]) * 0.7071067811865476f, h = -0.5f * x[i] * x[i];
        const double xd = x[i], half_erfc = 0.5 * erfc((double)a);
        const double cdf = x[i] <= 0.0f ? half_erfc : 1.0 - half_erfc;
        const double xpdf = xd * exp((double)h) / sqrt(2.0 * M_PI);
        const double e_fwd = xd == 0.0 ? fabs(out[i]) : fabs(out[i] - xd * cdf) / fabs(xd * cdf);
        const double e_bwd = fabs(din[i] - (cdf + xpdf)) / (cdf + fabs(xpdf));
        worst_fwd = fmax(worst_fwd, e_fwd);
        worst_bwd = fmax(worst_bwd, e_bwd);
        bad_fwd += !(e_fwd <= tol);
        bad_bwd += !(e_bwd <= tol);
    }
    CHECK(bad_fwd == 0, "GELU(x): %zu of %zu values past %g relative (worst %.3g)", bad_fwd, n, tol, worst_fwd);
    CHECK(bad_bwd == 0, "GELU'(x): %zu of %zu values past %g relative (worst %.3g)", bad_bwd, n, tol, worst_bwd);
    if (getenv("TEST_VERBOSE"))
        printf("GELU erf: worst relative error %.3g forward, %.3g backward\n", worst_fwd, worst_bwd);
    /* The ends: ±inf as torch (inf, and NaN from −inf·0), NaN stays NaN. */
    float ends[3] = {INFINITY, -INFINITY, NAN}, got[3];
    gelu_erf_forward(got, ends, 3);
    CHECK(got[0] == INFINITY && isnan(got[1]) && isnan(got[2]), "GELU(inf, -inf, NaN) = %g %g %g", got[0], got[1],
          got[2]);
    free(x), free(out), free(ones), free(din);
}

static void test_act_threaded_matches_serial(void)
{
    /* Large n takes the OpenMP path; chunks of 1000 stay serial.  The
     * elementwise results must be bit-identical and cover every element. */
    const size_t n = (1u << 17) + 3, chunk = 1000;
    float *x = alloc_normal(n, 3.0f, 50), *dout = alloc_normal(n, 1.0f, 51);
    float *o1 = alloc_zeros(n), *o2 = alloc_zeros(n), *d1 = alloc_zeros(n), *d2 = alloc_zeros(n);
    for (size_t a = 0; a < N_ACTS; a++) {
        memset(d1, 0, n * sizeof(float));
        memset(d2, 0, n * sizeof(float));
        ACTS[a].fwd(o1, x, n);
        ACTS[a].bwd(d1, dout, x, n);
        for (size_t i = 0; i < n; i += chunk) {
            size_t m = n - i < chunk ? n - i : chunk;
            ACTS[a].fwd(o2 + i, x + i, m);
            ACTS[a].bwd(d2 + i, dout + i, x + i, m);
        }
        CHECK(memcmp(o1, o2, n * sizeof(float)) == 0, "%s: threaded forward differs from serial", ACTS[a].name);
        CHECK(memcmp(d1, d2, n * sizeof(float)) == 0, "%s: threaded backward differs from serial", ACTS[a].name);
    }
    free(x), free(dout), free(o1), free(o2), free(d1), free(d2);
}

int main(void)
{
    RUN(test_act_finite_differences);
    RUN(test_act_matches_torch);
    RUN(test_act_kinks_follow_torch);
    RUN(test_act_in_place_forward);
    RUN(test_act_backward_accumulates);
    RUN(test_gelu_tanh_backward_stores);
    RUN(test_act_threaded_matches_serial);
    RUN(test_gelu_erf_against_double);
    return test_summary();
}
