/* 2×2 max-pool: PyTorch parity (tests/fixtures/ops/maxpool2x2*.safetensors
 * from dev/ref/conv_ref.py, with ties), finite differences, tie and NaN rules,
 * += accumulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/pool.h"
#include "test.h"

static int meta_int(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    CHECK(v != NULL, "fixture metadata lacks '%s'", key);
    return v ? atoi(v) : -1;
}

/* Max-pool is a selection: forward is exact, and so is the gradient routing;
 * the only rounding is pre + g - pre in the accumulation check (|pre| ~ 1):
 * atol 1e-6. */
static void test_maxpool_matches_torch(void)
{
    const char *names[] = {"ops/maxpool2x2", "ops/maxpool2x2_odd"};
    for (int f = 0; f < 2; f++) {
        safetensors *st = fixture_open(names[f]);
        int B = meta_int(st, "B"), C = meta_int(st, "C"), H = meta_int(st, "H"), W = meta_int(st, "W");
        size_t nx, no;
        float *x = fixture_f32(st, "x", &nx), *cot = fixture_f32(st, "cot", &no);
        CHECK(nx == (size_t)B * C * H * W && no == (size_t)B * C * (H / 2) * (W / 2), "%s: sizes", names[f]);
        float *out = alloc_zeros(no);
        maxpool2x2_forward(out, x, B, C, H, W);
        fixture_check(st, "out", out, no, 0, 0);
        float *pre = alloc_normal(nx, 1.0f, 3), *dx = malloc(nx * sizeof *dx);
        memcpy(dx, pre, nx * sizeof *dx);
        maxpool2x2_backward(dx, cot, x, B, C, H, W);
        for (size_t i = 0; i < nx; i++)
            dx[i] -= pre[i];
        fixture_check(st, "grad.x", dx, nx, 1e-6, 0);
        free(x), free(cot), free(out), free(pre), free(dx);
        safetensors_close(st);
    }
}

typedef struct pool_ctx {
    int B, C, H, W;
    float *x, *out, *cot;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    maxpool2x2_forward(c->out, c->x, c->B, c->C, c->H, c->W);
    return dot_f64(c->out, c->cot, (size_t)c->B * c->C * (c->H / 2) * (c->W / 2));
}

/* Inputs are distinct multiples of 0.01 (a shuffled grid), so a step h = 1e-3
 * never changes which element is the max and L is exactly piecewise linear:
 * the difference quotient is exact up to float rounding (~1e-6). */
static void test_maxpool_finite_differences(void)
{
    const int shapes[][4] = {{2, 3, 6, 8}, {1, 2, 5, 7}};
    for (int k = 0; k < 2; k++) {
        pool_ctx c = {shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3], NULL, NULL, NULL};
        size_t nx = (size_t)c.B * c.C * c.H * c.W, no = (size_t)c.B * c.C * (c.H / 2) * (c.W / 2);
        c.x = malloc(nx * sizeof *c.x);
        rng r = rng_new(77, k);
        for (size_t i = 0; i < nx; i++)
            c.x[i] = 0.01f * ((float)i - (float)nx / 2);
        for (size_t i = nx - 1; i > 0; i--) {
            size_t j = rng_below(&r, (uint32_t)(i + 1));
            float t = c.x[i];
            c.x[i] = c.x[j];
            c.x[j] = t;
        }
        c.out = alloc_zeros(no);
        c.cot = alloc_normal(no, 1.0f, 9 + k);
        float *dx = alloc_zeros(nx);
        maxpool2x2_backward(dx, c.cot, c.x, c.B, c.C, c.H, c.W);
        fd_check("maxpool dx", pool_loss, &c, c.x, dx, nx, 1e-3, 1e-4, 1e-4, 0);
        free(c.x), free(c.out), free(c.cot), free(dx);
    }
}

/* Ties go to the first max in row-major window order; a NaN wins (PyTorch). */
static void test_maxpool_ties_and_nan(void)
{
    /* one 2x4 image: windows [1 3; 3 2] and [5 5; 5 5] */
    const float x[8] = {1, 3, 5, 5, 3, 2, 5, 5};
    float out[2], dx[8] = {0}, g[2] = {1, 10};
    maxpool2x2_forward(out, x, 1, 1, 2, 4);
    CHECK(out[0] == 3 && out[1] == 5, "out %g %g, want 3 5", out[0], out[1]);
    maxpool2x2_backward(dx, g, x, 1, 1, 2, 4);
    const float want[8] = {0, 1, 10, 0, 0, 0, 0, 0};
    CHECK(memcmp(dx, want, sizeof dx) == 0, "tie gradient: got %g %g %g %g / %g %g %g %g", dx[0], dx[1], dx[2],
          dx[3], dx[4], dx[5], dx[6], dx[7]);
    const float xn[4] = {1, NAN, 7, 2};
    float on, dn[4] = {0}, gn = 1;
    maxpool2x2_forward(&on, xn, 1, 1, 2, 2);
    maxpool2x2_backward(dn, &gn, xn, 1, 1, 2, 2);
    CHECK(isnan(on) && dn[1] == 1 && dn[2] == 0, "NaN window: out %g, grad to [1] %g, [2] %g", on, dn[1], dn[2]);
}

int main(void)
{
    RUN(test_maxpool_matches_torch);
    RUN(test_maxpool_finite_differences);
    RUN(test_maxpool_ties_and_nan);
    return test_summary();
}
