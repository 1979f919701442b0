/* Linear layer (src/ops/linear.c): finite differences, PyTorch parity
 * (tests/fixtures/ops/linear*.safetensors from dev/ref/linear_ref.py),
 * accumulation, NULL gradients, the threaded bias gradient, sizes of one,
 * and the prepacked weights of sampling (on the CPUs that have them). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "ops/gemm_packed.h"
#include "ops/linear.h"
#include "test.h"

typedef struct {
    float *x, *w, *b, *out, *cot;
    int N, IN, OUT;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    linear_forward(c->out, c->x, c->w, c->b, c->N, c->IN, c->OUT);
    return dot_f64(c->out, c->cot, (size_t)c->N * c->OUT);
}

static lin_ctx lin_new(int N, int IN, int OUT, int with_bias, uint64_t seed)
{
    lin_ctx c = {alloc_normal((size_t)N * IN, 1.0f, seed), alloc_normal((size_t)OUT * IN, 0.5f, seed + 1),
                 with_bias ? alloc_normal(OUT, 1.0f, seed + 2) : NULL, alloc_zeros((size_t)N * OUT),
                 alloc_normal((size_t)N * OUT, 1.0f, seed + 3), N, IN, OUT};
    return c;
}

static void lin_free(lin_ctx *c) { free(c->x), free(c->w), free(c->b), free(c->out), free(c->cot); }

static void test_linear_finite_differences(void)
{
    lin_ctx c = lin_new(3, 5, 4, 1, 100);
    float *dx = alloc_zeros(15), *dw = alloc_zeros(20), *db = alloc_zeros(4);
    linear_backward(dx, true, dw, db, c.cot, c.x, c.w, c.N, c.IN, c.OUT);
    /* L is linear in each argument, so central differences have no
     * truncation error; only float rounding of out (~1e-7·|L|/2h ≈ 1e-5). */
    fd_check("linear dx", lin_loss, &c, c.x, dx, 15, 1e-2, 0.0, 1e-3, 0);
    fd_check("linear dweight", lin_loss, &c, c.w, dw, 20, 1e-2, 0.0, 1e-3, 0);
    fd_check("linear dbias", lin_loss, &c, c.b, db, 4, 1e-2, 0.0, 1e-3, 0);
    free(dx), free(dw), free(db);
    lin_free(&c);
}

static void test_linear_finite_differences_large(void)
{
    int N = 64, IN = 96, OUT = 80;
    lin_ctx c = lin_new(N, IN, OUT, 1, 200);
    float *dx = alloc_zeros((size_t)N * IN), *dw = alloc_zeros((size_t)OUT * IN), *db = alloc_zeros(OUT);
    linear_backward(dx, true, dw, db, c.cot, c.x, c.w, N, IN, OUT);
    /* One random direction each; |L| ~ 70 so rounding in L ~ 1e-5 over 2h = 2e-2. */
    fd_check_direction("linear dx (dir)", lin_loss, &c, c.x, dx, (size_t)N * IN, 1e-2, 1e-3, 1);
    fd_check_direction("linear dweight (dir)", lin_loss, &c, c.w, dw, (size_t)OUT * IN, 1e-2, 1e-3, 2);
    fd_check_direction("linear dbias (dir)", lin_loss, &c, c.b, db, OUT, 1e-2, 1e-3, 3);
    free(dx), free(dw), free(db);
    lin_free(&c);
}

/* Runs the fixture case; `prefill` starts every gradient buffer at a random
 * nonzero value and subtracts it afterwards, which only works if backward adds. */
static void check_fixture(const char *name, int prefill)
{
    safetensors *st = fixture_open(name);
    const st_tensor *tx = safetensors_require(st, "x"), *tw = safetensors_require(st, "weight");
    int N = (int)tx->shape[0], IN = (int)tx->shape[1], OUT = (int)tw->shape[0];
    int has_bias = safetensors_find(st, "bias") != NULL;
    size_t nx = (size_t)N * IN, nw = (size_t)OUT * IN, no = (size_t)N * OUT;
    float *x = fixture_f32(st, "x", NULL), *w = fixture_f32(st, "weight", NULL);
    float *b = has_bias ? fixture_f32(st, "bias", NULL) : NULL, *cot = fixture_f32(st, "cot", NULL);
    float *out = alloc_zeros(no);
    float *dx = prefill ? alloc_normal(nx, 1.0f, 1) : alloc_zeros(nx);
    float *dw = prefill ? alloc_normal(nw, 1.0f, 2) : alloc_zeros(nw);
    float *db = prefill ? alloc_normal(OUT, 1.0f, 3) : alloc_zeros(OUT);
    float *px = alloc_zeros(nx), *pw = alloc_zeros(nw), *pb = alloc_zeros(OUT);
    memcpy(px, dx, nx * sizeof(float)), memcpy(pw, dw, nw * sizeof(float)), memcpy(pb, db, OUT * sizeof(float));

    linear_forward(out, x, w, b, N, IN, OUT);
    linear_backward(dx, true, dw, has_bias ? db : NULL, cot, x, w, N, IN, OUT);
    for (size_t i = 0; i < nx; i++) dx[i] -= px[i];
    for (size_t i = 0; i < nw; i++) dw[i] -= pw[i];
    for (int i = 0; i < OUT; i++) db[i] -= pb[i];

    /* The fixture is float64 torch on the same float32 values.  Our fp32
     * dot products of length K (IN, OUT or N ≤ 48) of O(1) terms carry
     * ~√K·6e-8 ≈ 5e-7 absolute error on O(1) results: atol 1e-5 covers
     * values near zero, rtol 1e-5 the rest (measured max abs ~1e-6). */
    fixture_check(st, "out", out, no, 1e-5, 1e-5);
    fixture_check(st, "grad.x", dx, nx, 1e-5, 1e-5);
    fixture_check(st, "grad.weight", dw, nw, 1e-5, 1e-5);
    if (has_bias)
        fixture_check(st, "grad.bias", db, OUT, 1e-5, 1e-5);
    else
        for (int i = 0; i < OUT; i++)
            CHECK(db[i] == 0.0f, "dbias buffer touched although NULL was passed");
    free(x), free(w), free(b), free(cot), free(out), free(dx), free(dw), free(db), free(px), free(pw), free(pb);
    safetensors_close(st);
}

static void test_linear_matches_torch(void) { check_fixture("ops/linear", 0); }
static void test_linear_nobias_matches_torch(void) { check_fixture("ops/linear_nobias", 0); }
static void test_linear_backward_accumulates(void) { check_fixture("ops/linear", 1); }

static void test_linear_null_gradients(void)
{
    /* Each gradient alone must equal the one computed with all three. */
    int N = 9, IN = 13, OUT = 11;
    lin_ctx c = lin_new(N, IN, OUT, 1, 300);
    size_t nx = (size_t)N * IN, nw = (size_t)OUT * IN;
    float *dx = alloc_zeros(nx), *dw = alloc_zeros(nw), *db = alloc_zeros(OUT);
    float *dx1 = alloc_zeros(nx), *dw1 = alloc_zeros(nw), *db1 = alloc_zeros(OUT);
    linear_backward(dx, true, dw, db, c.cot, c.x, c.w, N, IN, OUT);
    linear_backward(dx1, true, NULL, NULL, c.cot, c.x, c.w, N, IN, OUT);
    linear_backward(NULL, true, dw1, NULL, c.cot, c.x, c.w, N, IN, OUT);
    linear_backward(NULL, true, NULL, db1, c.cot, c.x, c.w, N, IN, OUT);
    linear_backward(NULL, true, NULL, NULL, c.cot, c.x, c.w, N, IN, OUT);
    CHECK(memcmp(dx, dx1, nx * sizeof(float)) == 0, "dx alone differs");
    CHECK(memcmp(dw, dw1, nw * sizeof(float)) == 0, "dweight alone differs");
    CHECK(memcmp(db, db1, OUT * sizeof(float)) == 0, "dbias alone differs");
    /* a frozen layer with no input gradient: NULL weight pointers */
    linear_backward(NULL, true, NULL, NULL, c.cot, NULL, NULL, N, IN, OUT);
    free(dx), free(dw), free(db), free(dx1), free(dw1), free(db1);
    lin_free(&c);
}

/* accumulate = false stores dinp (a buffer of NaNs here) with the bits of
 * adding into zeros, while dweight and dbias still add; with OUT = 0 the
 * stored input gradient is zero. */
static void test_linear_backward_stores_input_gradient(void)
{
    int N = 37, IN = 29, OUT = 23;
    lin_ctx c = lin_new(N, IN, OUT, 1, 500);
    size_t nx = (size_t)N * IN, nw = (size_t)OUT * IN;
    float *dx0 = alloc_zeros(nx), *dw0 = alloc_normal(nw, 1.0f, 501), *db0 = alloc_normal(OUT, 1.0f, 502);
    float *dx1 = xmalloc(nx * sizeof(float)), *dw1 = xmalloc(nw * sizeof(float)), *db1 = xmalloc(OUT * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        dx1[i] = NAN;
    memcpy(dw1, dw0, nw * sizeof(float)), memcpy(db1, db0, OUT * sizeof(float));
    linear_backward(dx0, true, dw0, db0, c.cot, c.x, c.w, N, IN, OUT);
    linear_backward(dx1, false, dw1, db1, c.cot, c.x, c.w, N, IN, OUT);
    CHECK(memcmp(dx0, dx1, nx * sizeof(float)) == 0, "stored dx differs from dx added into zeros");
    CHECK(memcmp(dw0, dw1, nw * sizeof(float)) == 0, "dweight must still add");
    CHECK(memcmp(db0, db1, OUT * sizeof(float)) == 0, "dbias must still add");
    for (size_t i = 0; i < nx; i++)
        dx1[i] = NAN;
    linear_backward(dx1, false, NULL, NULL, c.cot, c.x, c.w, N, IN, 0);
    int zeros = 1;
    for (size_t i = 0; i < nx; i++)
        zeros &= dx1[i] == 0.0f;
    CHECK(zeros, "OUT = 0: the stored input gradient must be zero");
    free(dx0), free(dw0), free(db0), free(dx1), free(dw1), free(db1);
    lin_free(&c);
}

/* out, dinp, dweight and dbias in double, from zero (the reference for the
 * odd sizes below). */
static void linear_reference(double *out, double *dx, double *dw, double *db, const float *x, const float *w,
                             const float *b, const float *dy, int N, int IN, int OUT)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < IN; i++)
                s += (double)x[(size_t)n * IN + i] * w[(size_t)o * IN + i];
            out[(size_t)n * OUT + o] = s;
        }
    for (size_t i = 0; i < (size_t)N * IN; i++)
        dx[i] = 0;
    for (size_t i = 0; i < (size_t)OUT * IN; i++)
        dw[i] = 0;
    for (int o = 0; o < OUT; o++)
        db[o] = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double g = dy[(size_t)n * OUT + o];
            db[o] += g;
            for (int i = 0; i < IN; i++) {
                dx[(size_t)n * IN + i] += g * w[(size_t)o * IN + i];
                dw[(size_t)o * IN + i] += g * x[(size_t)n * IN + i];
            }
        }
}

static void test_linear_large_matches_double(void)
{
    /* N·OUT above the threading threshold and OUT not a multiple of the
     * 64-column blocks of the bias gradient: every column must be summed. */
    int N = 300, IN = 20, OUT = 230;
    lin_ctx c = lin_new(N, IN, OUT, 1, 400);
    size_t no = (size_t)N * OUT, nx = (size_t)N * IN, nw = (size_t)OUT * IN;
    float *db = alloc_zeros(OUT), *want_db = alloc_zeros(OUT), *want_out = alloc_zeros(no);
    double *out = xmalloc(no * sizeof(double)), *dx = xmalloc(nx * sizeof(double));
    double *dw = xmalloc(nw * sizeof(double)), *dbd = xmalloc(OUT * sizeof(double));
    linear_forward(c.out, c.x, c.w, c.b, N, IN, OUT);
    linear_backward(NULL, true, NULL, db, c.cot, c.x, c.w, N, IN, OUT);
    linear_reference(out, dx, dw, dbd, c.x, c.w, c.b, c.cot, N, IN, OUT);
    for (int o = 0; o < OUT; o++)
        want_db[o] = (float)dbd[o];
    for (size_t i = 0; i < no; i++)
        want_out[i] = (float)out[i];
    /* dbias is summed in double: one final rounding.  out: √20·6e-8·|terms|. */
    check_close("dbias vs double", db, want_db, OUT, 1e-6, 1e-6);
    check_close("out vs double", c.out, want_out, no, 1e-5, 1e-5);
    free(db), free(want_db), free(want_out), free(out), free(dx), free(dw), free(dbd);
    lin_free(&c);
}

static void check_against(const char *what, const float *got, const double *want, size_t n)
{
    float *w = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        w[i] = (float)want[i];
    check_close(what, got, w, n, 1e-5, 1e-5);
    free(w);
}

/* One input feature, one output feature, one row: every loop bound at 1. */
static void test_linear_sizes_of_one(void)
{
    const int shapes[3][3] = {{3, 1, 4}, {3, 4, 1}, {1, 5, 3}}; /* N, IN, OUT */
    for (int k = 0; k < 3; k++) {
        int N = shapes[k][0], IN = shapes[k][1], OUT = shapes[k][2];
        lin_ctx c = lin_new(N, IN, OUT, 1, 600 + 10 * k);
        size_t nx = (size_t)N * IN, nw = (size_t)OUT * IN, no = (size_t)N * OUT;
        double *out = xmalloc(no * sizeof(double)), *dx = xmalloc(nx * sizeof(double));
        double *dw = xmalloc(nw * sizeof(double)), *db = xmalloc(OUT * sizeof(double));
        linear_reference(out, dx, dw, db, c.x, c.w, c.b, c.cot, N, IN, OUT);
        float *gx = alloc_zeros(nx), *gw = alloc_zeros(nw), *gb = alloc_zeros(OUT);
        linear_forward(c.out, c.x, c.w, c.b, N, IN, OUT);
        linear_backward(gx, true, gw, gb, c.cot, c.x, c.w, N, IN, OUT);
        char what[96];
        snprintf(what, sizeof what, "N %d IN %d OUT %d: out", N, IN, OUT);
        check_against(what, c.out, out, no);
        snprintf(what, sizeof what, "N %d IN %d OUT %d: dinp", N, IN, OUT);
        check_against(what, gx, dx, nx);
        snprintf(what, sizeof what, "N %d IN %d OUT %d: dweight", N, IN, OUT);
        check_against(what, gw, dw, nw);
        snprintf(what, sizeof what, "N %d IN %d OUT %d: dbias", N, IN, OUT);
        check_against(what, gb, db, OUT);
        free(out), free(dx), free(dw), free(db), free(gx), free(gw), free(gb);
        lin_free(&c);
    }
}

static void prepack_unpackable(void *arg)
{
    float *w = arg;
    linear_prepack_weight(w, 8, gemm_prepacked_width() + 1);
}

static void prepack_misaligned(void *arg)
{
    float *w = arg;
    linear_prepack_weight(w + 1, 8, gemm_prepacked_width());
}

/* Sampling's weights, packed once in place: which shapes may be packed, the
 * refusals, and the product with and without a bias against double sums
 * (one row, several, none). */
static void test_linear_prepacked_weights(void)
{
    const int width = gemm_prepacked_width();
    if (width == 0) {
        CHECK(!linear_weight_prepackable(8, 16), "no kernels of ours: nothing is prepackable");
        printf("     (no GEMM kernels of ours on this CPU: weights are never prepacked)\n");
        return;
    }
    CHECK(linear_weight_prepackable(5, width) && linear_weight_prepackable(5, 3 * width),
          "whole panels of %d columns are prepackable", width);
    CHECK(!linear_weight_prepackable(5, width + 1) && !linear_weight_prepackable(5, width - 1),
          "a part panel is not prepackable");
    CHECK(!linear_weight_prepackable(0, width) && !linear_weight_prepackable(5, 0), "empty weights are not");
    float *w8 = aligned_alloc(64, 64 * 8 * sizeof(float) * 2);
    expect_die("a part panel", prepack_unpackable, w8, "cannot be packed on this CPU");
    expect_die("a weight off 64 bytes", prepack_misaligned, w8, "the weight must be 64-byte aligned");
    free(w8);

    const int IN = 37, OUT = 2 * width, N = 5;
    lin_ctx c = lin_new(N, IN, OUT, 1, 700);
    float *packed = aligned_alloc(64, (size_t)OUT * IN * sizeof(float));
    memcpy(packed, c.w, (size_t)OUT * IN * sizeof(float));
    linear_prepack_weight(packed, IN, OUT);
    size_t no = (size_t)N * OUT, nx = (size_t)N * IN, nw = (size_t)OUT * IN;
    double *out = xmalloc(no * sizeof(double)), *dx = xmalloc(nx * sizeof(double));
    double *dw = xmalloc(nw * sizeof(double)), *db = xmalloc(OUT * sizeof(double));
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        const float *b = with_bias ? c.b : NULL;
        linear_reference(out, dx, dw, db, c.x, c.w, b, c.cot, N, IN, OUT);
        for (size_t i = 0; i < no; i++)
            c.out[i] = NAN;
        linear_forward_prepacked(c.out, c.x, packed, b, N, IN, OUT);
        check_against(with_bias ? "prepacked, bias" : "prepacked, no bias", c.out, out, no);
        linear_forward_prepacked(c.out, c.x + IN, packed, b, 1, IN, OUT); /* one row: row 1 */
        check_against("prepacked, one row", c.out, out + OUT, OUT);
    }
    c.out[0] = 42.0f;
    linear_forward_prepacked(c.out, c.x, packed, c.b, 0, IN, OUT);
    CHECK(c.out[0] == 42.0f, "no rows: nothing written");
    free(out), free(dx), free(dw), free(db), free(packed);
    lin_free(&c);
}

int main(void)
{
    RUN(test_linear_finite_differences);
    RUN(test_linear_finite_differences_large);
    RUN(test_linear_matches_torch);
    RUN(test_linear_nobias_matches_torch);
    RUN(test_linear_backward_accumulates);
    RUN(test_linear_null_gradients);
    RUN(test_linear_backward_stores_input_gradient);
    RUN(test_linear_large_matches_double);
    RUN(test_linear_sizes_of_one);
    RUN(test_linear_prepacked_weights);
    return test_summary();
}
