/* Nearest ×2 upsampling (forward, backward: parity, finite differences, +=)
 * and the two bicubic resizers (PyTorch parity on down/up/mixed resizes and
 * DINOv2's 37×37 → 16×16 antialiased position-table resample, antialiased
 * scales between 1 and 2, outputs wider than one block of the column-weight
 * table; invariants; sizes refused).
 * Fixtures: tests/fixtures/ops/ (upsample_nearest2x, bicubic_*), from dev/ref/resample_ref.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/resample.h"
#include "test.h"

static int meta_int(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    CHECK(v != NULL, "fixture metadata lacks '%s'", key);
    return v ? atoi(v) : -1;
}

/* Forward is a copy (exact); backward sums four values (same order as
 * PyTorch up to float reassociation: ~2 ulp of |4·cot|) plus pre - pre:
 * atol 2e-6, rtol 1e-6. */
static void test_upsample_nearest_matches_torch(void)
{
    safetensors *st = fixture_open("ops/upsample_nearest2x");
    size_t nx, no;
    float *x = fixture_f32(st, "x", &nx), *cot = fixture_f32(st, "cot", &no);
    int H = meta_int(st, "H"), W = meta_int(st, "W");
    const st_tensor *t = safetensors_require(st, "x");
    int B = (int)t->shape[0], C = (int)t->shape[1];
    CHECK(no == 4 * nx && nx == (size_t)B * C * H * W, "fixture sizes");
    float *out = alloc_zeros(no);
    upsample_nearest2x_forward(out, x, B, C, H, W);
    fixture_check(st, "out", out, no, 0, 0);
    float *pre = alloc_normal(nx, 1.0f, 5), *dx = malloc(nx * sizeof *dx);
    memcpy(dx, pre, nx * sizeof *dx);
    upsample_nearest2x_backward(dx, cot, B, C, H, W);
    for (size_t i = 0; i < nx; i++)
        dx[i] -= pre[i];
    fixture_check(st, "grad.x", dx, nx, 2e-6, 1e-6);
    free(x), free(cot), free(out), free(pre), free(dx);
    safetensors_close(st);
}

typedef struct up_ctx {
    int B, C, H, W;
    float *x, *out, *cot;
} up_ctx;

static double up_loss(void *p)
{
    up_ctx *c = p;
    upsample_nearest2x_forward(c->out, c->x, c->B, c->C, c->H, c->W);
    return dot_f64(c->out, c->cot, (size_t)4 * c->B * c->C * c->H * c->W);
}

/* Linear in x: central differences exact up to float rounding of L (~1e-6/h). */
static void test_upsample_nearest_finite_differences(void)
{
    up_ctx c = {2, 3, 4, 5, NULL, NULL, NULL};
    size_t nx = (size_t)c.B * c.C * c.H * c.W;
    c.x = alloc_normal(nx, 1.0f, 1);
    c.out = alloc_zeros(4 * nx);
    c.cot = alloc_normal(4 * nx, 1.0f, 2);
    float *dx = alloc_zeros(nx);
    upsample_nearest2x_backward(dx, c.cot, c.B, c.C, c.H, c.W);
    fd_check("upsample nearest dx", up_loss, &c, c.x, dx, nx, 1e-2, 0, 1e-3, 0);
    free(c.x), free(c.out), free(c.cot), free(dx);
}

/* Bicubic weights are computed in float32 the way PyTorch computes them; the
 * remaining difference is summation rounding: ~16 (or ~100 for the
 * antialiased 37->16 window) products of O(1) values, a few ulp.  Values are
 * N(0,1): atol 2e-6, rtol 1e-5. */
static void test_bicubic_matches_torch(void)
{
    const char *names[] = {"ops/bicubic_down", "ops/bicubic_up", "ops/bicubic_mixed", "ops/bicubic_aa_pos_embed",
                           "ops/bicubic_aa_up", "ops/bicubic_aa_down_mild", "ops/bicubic_wide",
                           "ops/bicubic_aa_wide"};
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        safetensors *st = fixture_open(names[f]);
        int H = meta_int(st, "H"), W = meta_int(st, "W"), Ho = meta_int(st, "H_out"), Wo = meta_int(st, "W_out");
        int aa = meta_int(st, "antialias");
        const st_tensor *t = safetensors_require(st, "x");
        int B = (int)t->shape[0], C = (int)t->shape[1];
        size_t nx, no = (size_t)B * C * Ho * Wo;
        float *x = fixture_f32(st, "x", &nx);
        float *out = alloc_zeros(no);
        if (aa)
            bicubic_resize_antialias_forward(out, x, B, C, H, W, Ho, Wo);
        else
            bicubic_resize_forward(out, x, B, C, H, W, Ho, Wo);
        size_t m;
        float *want = fixture_f32(st, "out", &m);
        char what[128];
        snprintf(what, sizeof what, "%s vs torch", names[f]);
        CHECK(m == no, "%s: %zu elements, want %zu", what, no, m);
        if (m == no)
            check_close(what, out, want, no, 2e-6, 1e-5);
        free(x), free(out), free(want);
        safetensors_close(st);
    }
}

/* Weights sum to 1 (a constant image stays constant) and a same-size resize
 * is the identity, for both filters. */
static void test_bicubic_invariants(void)
{
    const int H = 13, W = 11;
    float *x = alloc_normal((size_t)2 * H * W, 1.0f, 3), *out = alloc_zeros((size_t)2 * H * W);
    bicubic_resize_forward(out, x, 1, 2, H, W, H, W);
    check_close("bicubic same size = identity", out, x, (size_t)2 * H * W, 0, 0);
    bicubic_resize_antialias_forward(out, x, 1, 2, H, W, H, W);
    check_close("antialiased bicubic same size = identity", out, x, (size_t)2 * H * W, 1e-6, 1e-6);
    float *c = malloc((size_t)37 * 37 * sizeof *c), *oc = alloc_zeros((size_t)40 * 40), ones[40 * 40];
    for (int i = 0; i < 37 * 37; i++)
        c[i] = 0.75f;
    for (int i = 0; i < 40 * 40; i++)
        ones[i] = 0.75f;
    const int sizes[][2] = {{16, 16}, {40, 23}, {5, 37}};
    for (int k = 0; k < 3; k++) {
        int n = sizes[k][0] * sizes[k][1];
        bicubic_resize_forward(oc, c, 1, 1, 37, 37, sizes[k][0], sizes[k][1]);
        check_close("bicubic keeps a constant", oc, ones, (size_t)n, 1e-6, 1e-6);
        bicubic_resize_antialias_forward(oc, c, 1, 1, 37, 37, sizes[k][0], sizes[k][1]);
        check_close("antialiased bicubic keeps a constant", oc, ones, (size_t)n, 1e-6, 1e-6);
    }
    free(x), free(out), free(c), free(oc);
}

/* Sizes that are not positive, and antialiased downscales whose window would
 * pass 256 taps on either axis (2·ceil(2·in/out) + 1: in/out = 63 gives 253,
 * 64 gives 257), are refused by name; 63 → 1 is still accepted. */
typedef struct {
    int aa, H, W, H_out, W_out;
} resize_case;

static void resize_with(void *arg)
{
    const resize_case *r = arg;
    static float x[64 * 64], out[64 * 64];
    if (r->aa)
        bicubic_resize_antialias_forward(out, x, 1, 1, r->H, r->W, r->H_out, r->W_out);
    else
        bicubic_resize_forward(out, x, 1, 1, r->H, r->W, r->H_out, r->W_out);
}

static void test_bicubic_refuses_bad_sizes(void)
{
    const resize_case bad[] = {{0, 0, 4, 2, 2}, {0, 4, 0, 2, 2}, {1, 4, 4, 0, 2}, {1, 4, 4, 2, -1}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char want[96];
        snprintf(want, sizeof want, "bicubic resize: bad sizes %dx%d -> %dx%d", bad[k].H, bad[k].W, bad[k].H_out,
                 bad[k].W_out);
        expect_die("non-positive size", resize_with, (void *)&bad[k], want);
    }
    const resize_case too_far[] = {{1, 64, 2, 1, 2}, {1, 2, 64, 2, 1}};
    for (int k = 0; k < 2; k++)
        expect_die("a 64x antialiased downscale", resize_with, (void *)&too_far[k],
                   "downscale factor too large (more than 256 taps)");
    /* 63 → 1 on both axes: one output, the normalised window's weighted mean
     * of a constant is that constant. */
    float c[63 * 63], o = 0.0f, one = 0.5f;
    for (int i = 0; i < 63 * 63; i++)
        c[i] = 0.5f;
    bicubic_resize_antialias_forward(&o, c, 1, 1, 63, 63, 1, 1);
    check_close("antialiased 63x63 -> 1x1 of a constant", &o, &one, 1, 1e-6, 1e-6);
}

int main(void)
{
    RUN(test_upsample_nearest_matches_torch);
    RUN(test_upsample_nearest_finite_differences);
    RUN(test_bicubic_matches_torch);
    RUN(test_bicubic_invariants);
    RUN(test_bicubic_refuses_bad_sizes);
    return test_summary();
}
