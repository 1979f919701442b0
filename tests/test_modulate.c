/* adaLN modulate and gated residual: finite differences for dx, dshift,
 * dscale, dh, dgate (with shift/scale/gate read out of a [B,6D] adaLN buffer,
 * ld = 6D, and gradients into a [B,6D] d-buffer), += accumulation, in-place
 * forward, and PyTorch parity.
 *
 * Tolerances: forward is one fused multiply-add per element (atol/rtol 1e-6);
 * the shift/scale/gate gradients are sums over T tokens (double accumulation
 * here, float in torch): atol 1e-5 / rtol 1e-5.  Finite differences: L is
 * at most quadratic in any one input, so the central difference is exact up
 * to rounding (~1e-7·|L|/h ≈ 1e-4 for |L| ~ 100, h = 1e-2): atol 2e-4 +
 * rtol 1e-4·max|grad|.  The FD sizes are below MOD_PAR_MIN (serial); the
 * threaded path is checked against the serial one, bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/error.h"
#include "ops/modulate.h"
#include "test.h"

static int meta_int(const safetensors *st, const char *key)
{
    const char *s = safetensors_meta(st, key);
    if (!s)
        die("fixture metadata '%s' missing", key);
    return atoi(s);
}

/* Offsets of the six adaLN chunks in c6 [B,6D]. */
enum { SHIFT_MSA, SCALE_MSA, GATE_MSA, SHIFT_MLP, SCALE_MLP, GATE_MLP };

typedef struct {
    int B, T, D;
    float *x, *h, *resid, *c6; /* inputs */
    float *mod, *res;          /* outputs */
    const float *cot_mod, *cot_res;
} mod_ctx;

/* L = <modulate(x, shift_mlp, scale_mlp), cot_mod> + <resid + gate_msa ⊙ h, cot_res> */
static double mod_loss(void *v)
{
    mod_ctx *c = v;
    const int B = c->B, T = c->T, D = c->D;
    const size_t n = (size_t)B * T * D;
    modulate_forward(c->mod, c->x, c->c6 + SHIFT_MLP * D, c->c6 + SCALE_MLP * D, 6 * D, B, T, D);
    memcpy(c->res, c->resid, n * sizeof(float));
    gated_residual_forward(c->res, c->h, c->c6 + GATE_MSA * D, 6 * D, B, T, D);
    return dot_f64(c->mod, c->cot_mod, n) + dot_f64(c->res, c->cot_res, n);
}

/* Gradients of mod_loss: dx, dh, dc6 (resid's gradient is cot_res itself). */
static void mod_grads(const mod_ctx *c, float *dx, float *dh, float *dc6)
{
    const int B = c->B, T = c->T, D = c->D;
    modulate_backward(dx, true, dc6 + SHIFT_MLP * D, dc6 + SCALE_MLP * D, 6 * D, c->cot_mod, c->x,
                      c->c6 + SCALE_MLP * D, 6 * D, B, T, D);
    gated_residual_backward(dh, true, dc6 + GATE_MSA * D, 6 * D, c->cot_res, c->h, c->c6 + GATE_MSA * D, 6 * D, B, T,
                            D);
}

static void test_modulate_fd(void)
{
    const int B = 3, T = 7, D = 150; /* D > 128: two column blocks in the backward reductions */
    const size_t n = (size_t)B * T * D, nc = (size_t)B * 6 * D;
    mod_ctx c = {B, T, D, alloc_normal(n, 1.0f, 1), alloc_normal(n, 1.0f, 2), alloc_normal(n, 1.0f, 3),
                 alloc_normal(nc, 0.5f, 4), alloc_zeros(n), alloc_zeros(n), alloc_normal(n, 1.0f, 5),
                 alloc_normal(n, 1.0f, 6)};
    float *dx = alloc_zeros(n), *dh = alloc_zeros(n), *dc6 = alloc_zeros(nc);
    mod_grads(&c, dx, dh, dc6);
    fd_check("modulate dx", mod_loss, &c, c.x, dx, n, 1e-2, 2e-4, 1e-4, 400);
    fd_check("gated residual dh", mod_loss, &c, c.h, dh, n, 1e-2, 2e-4, 1e-4, 400);
    /* all of c6: shift_mlp, scale_mlp, gate_msa entries, and the zero gradient of the unused chunks */
    fd_check("d c6 (dshift, dscale, dgate)", mod_loss, &c, c.c6, dc6, nc, 1e-2, 2e-4, 1e-4, 0);
    double used = 0, unused = 0;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < 6 * D; d++) {
            int chunk = d / D;
            double a = fabs(dc6[(size_t)b * 6 * D + d]);
            if (chunk == SHIFT_MLP || chunk == SCALE_MLP || chunk == GATE_MSA)
                used += a;
            else
                unused += a;
        }
    CHECK(used > 1.0 && unused == 0.0, "d c6: used chunks |g| %g (want > 0), unused %g (want 0)", used, unused);
    free(c.x), free(c.h), free(c.resid), free(c.c6), free(c.mod), free(c.res), free((void *)c.cot_mod),
        free((void *)c.cot_res), free(dx), free(dh), free(dc6);
}

/* Backward adds into prefilled buffers; NULL pointers skip; forward in place. */
static void test_modulate_accumulates_null_inplace(void)
{
    const int B = 2, T = 5, D = 40;
    const size_t n = (size_t)B * T * D, nc = (size_t)B * 6 * D;
    mod_ctx c = {B, T, D, alloc_normal(n, 1.0f, 11), alloc_normal(n, 1.0f, 12), alloc_normal(n, 1.0f, 13),
                 alloc_normal(nc, 0.5f, 14), alloc_zeros(n), alloc_zeros(n), alloc_normal(n, 1.0f, 15),
                 alloc_normal(n, 1.0f, 16)};
    mod_loss(&c);
    float *dx0 = alloc_zeros(n), *dh0 = alloc_zeros(n), *dc0 = alloc_zeros(nc);
    mod_grads(&c, dx0, dh0, dc0);
    float *dx = alloc_normal(n, 2.0f, 17), *dh = alloc_normal(n, 2.0f, 18), *dc = alloc_normal(nc, 2.0f, 19);
    float *want_x = xmalloc(n * sizeof(float)), *want_h = xmalloc(n * sizeof(float));
    float *want_c = xmalloc(nc * sizeof(float));
    for (size_t i = 0; i < n; i++)
        want_x[i] = dx[i] + dx0[i], want_h[i] = dh[i] + dh0[i];
    for (size_t i = 0; i < nc; i++)
        want_c[i] = dc[i] + dc0[i];
    mod_grads(&c, dx, dh, dc);
    check_close("dx accumulates", dx, want_x, n, 0, 0);
    check_close("dh accumulates", dh, want_h, n, 0, 0);
    check_close("d c6 accumulates", dc, want_c, nc, 0, 0);

    /* NULL gradients: only the requested ones change. */
    float *g = alloc_zeros(nc), *gx = alloc_zeros(n);
    modulate_backward(NULL, true, NULL, g + SCALE_MLP * D, 6 * D, c.cot_mod, c.x, c.c6 + SCALE_MLP * D, 6 * D, B, T, D);
    gated_residual_backward(NULL, true, g + GATE_MSA * D, 6 * D, c.cot_res, c.h, c.c6 + GATE_MSA * D, 6 * D, B, T, D);
    modulate_backward(gx, true, NULL, NULL, 6 * D, c.cot_mod, c.x, c.c6 + SCALE_MLP * D, 6 * D, B, T, D);
    for (int b = 0; b < B; b++) /* expected: dc0 without its shift chunk */
        for (int d = 0; d < D; d++)
            dc0[(size_t)b * 6 * D + SHIFT_MLP * D + d] = 0.0f;
    check_close("dscale, dgate alone (dshift NULL)", g, dc0, nc, 0, 0);
    check_close("dx alone", gx, dx0, n, 0, 0);

    /* in place: out == x */
    float *xi = xmalloc(n * sizeof(float));
    memcpy(xi, c.x, n * sizeof(float));
    modulate_forward(xi, xi, c.c6 + SHIFT_MLP * D, c.c6 + SCALE_MLP * D, 6 * D, B, T, D);
    CHECK(memcmp(xi, c.mod, n * sizeof(float)) == 0, "in-place modulate differs");
    free(c.x), free(c.h), free(c.resid), free(c.c6), free(c.mod), free(c.res), free((void *)c.cot_mod),
        free((void *)c.cot_res), free(dx0), free(dh0), free(dc0), free(dx), free(dh), free(dc), free(want_x),
        free(want_h), free(want_c), free(g), free(gx), free(xi);
}

/* accumulate = false stores dx / dh (NaNs here) with the bits of adding into
 * zeros; the adaLN chunks' sums still add.  Sizes on both sides of the
 * threading threshold. */
static void test_modulate_backward_stores(void)
{
    const int shapes[2][3] = {{2, 5, 40}, {4, 64, 160}};
    for (int s = 0; s < 2; s++) {
        const int B = shapes[s][0], T = shapes[s][1], D = shapes[s][2];
        const size_t n = (size_t)B * T * D, nc = (size_t)B * 6 * D;
        float *x = alloc_normal(n, 1.0f, 21), *h = alloc_normal(n, 1.0f, 22), *c6 = alloc_normal(nc, 0.5f, 23);
        float *cot = alloc_normal(n, 1.0f, 24);
        float *want_x = alloc_zeros(n), *want_h = alloc_zeros(n), *want_c = alloc_normal(nc, 1.0f, 25);
        float *got_x = xmalloc(n * sizeof(float)), *got_h = xmalloc(n * sizeof(float));
        float *got_c = xmalloc(nc * sizeof(float));
        for (size_t i = 0; i < n; i++)
            got_x[i] = got_h[i] = NAN;
        memcpy(got_c, want_c, nc * sizeof(float));
        for (int store = 0; store < 2; store++) {
            float *dx = store ? got_x : want_x, *dh = store ? got_h : want_h, *dc = store ? got_c : want_c;
            modulate_backward(dx, !store, dc + SHIFT_MLP * D, dc + SCALE_MLP * D, 6 * D, cot, x, c6 + SCALE_MLP * D,
                              6 * D, B, T, D);
            gated_residual_backward(dh, !store, dc + GATE_MSA * D, 6 * D, cot, h, c6 + GATE_MSA * D, 6 * D, B, T, D);
        }
        CHECK(memcmp(got_x, want_x, n * sizeof(float)) == 0, "D=%d: stored modulate dx differs from added", D);
        CHECK(memcmp(got_h, want_h, n * sizeof(float)) == 0, "D=%d: stored gated residual dh differs from added", D);
        CHECK(memcmp(got_c, want_c, nc * sizeof(float)) == 0, "D=%d: adaLN chunk sums must still add", D);
        free(x), free(h), free(c6), free(cot), free(want_x), free(want_h), free(want_c), free(got_x), free(got_h),
            free(got_c);
    }
}

/* Above MOD_PAR_MIN (B·T·D >= 2^15) the kernels split (b, column block) over
 * threads; the result must not depend on the thread count (no shared sums). */
static void test_modulate_threaded_matches_serial(void)
{
    const int B = 4, T = 64, D = 150;
    const size_t n = (size_t)B * T * D, nc = (size_t)B * 6 * D;
    mod_ctx c = {B, T, D, alloc_normal(n, 1.0f, 51), alloc_normal(n, 1.0f, 52), alloc_normal(n, 1.0f, 53),
                 alloc_normal(nc, 0.5f, 54), alloc_zeros(n), alloc_zeros(n), alloc_normal(n, 1.0f, 55),
                 alloc_normal(n, 1.0f, 56)};
    float *out[2][2], *g[2][3];
    const int saved = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(r == 0 ? 1 : (saved > 1 ? saved : 2));
        mod_loss(&c);
        out[r][0] = xmalloc(n * sizeof(float)), out[r][1] = xmalloc(n * sizeof(float));
        memcpy(out[r][0], c.mod, n * sizeof(float)), memcpy(out[r][1], c.res, n * sizeof(float));
        g[r][0] = alloc_zeros(n), g[r][1] = alloc_zeros(n), g[r][2] = alloc_zeros(nc);
        mod_grads(&c, g[r][0], g[r][1], g[r][2]);
    }
    omp_set_num_threads(saved);
    check_close("modulate out threaded vs serial", out[1][0], out[0][0], n, 0, 0);
    check_close("gated residual threaded vs serial", out[1][1], out[0][1], n, 0, 0);
    check_close("dx threaded vs serial", g[1][0], g[0][0], n, 0, 0);
    check_close("dh threaded vs serial", g[1][1], g[0][1], n, 0, 0);
    check_close("d c6 threaded vs serial", g[1][2], g[0][2], nc, 0, 0);
    for (int r = 0; r < 2; r++)
        free(out[r][0]), free(out[r][1]), free(g[r][0]), free(g[r][1]), free(g[r][2]);
    free(c.x), free(c.h), free(c.resid), free(c.c6), free(c.mod), free(c.res), free((void *)c.cot_mod),
        free((void *)c.cot_res);
}

static void test_modulate_matches_torch(void)
{
    safetensors *st = fixture_open("ops/modulate");
    const int B = meta_int(st, "B"), T = meta_int(st, "T"), D = meta_int(st, "D");
    const size_t n = (size_t)B * T * D, nc = (size_t)B * 6 * D;
    mod_ctx c = {B, T, D, fixture_f32(st, "x", NULL), fixture_f32(st, "h", NULL), fixture_f32(st, "resid", NULL),
                 fixture_f32(st, "c6", NULL), alloc_zeros(n), alloc_zeros(n), fixture_f32(st, "cot.mod", NULL),
                 fixture_f32(st, "cot.res", NULL)};
    mod_loss(&c);
    fixture_check(st, "mod", c.mod, n, 1e-6, 1e-6);
    fixture_check(st, "res", c.res, n, 1e-6, 1e-6);
    float *dx = alloc_zeros(n), *dh = alloc_zeros(n), *dc6 = alloc_zeros(nc);
    mod_grads(&c, dx, dh, dc6);
    fixture_check(st, "grad.x", dx, n, 1e-6, 1e-6);
    fixture_check(st, "grad.h", dh, n, 1e-6, 1e-6);
    fixture_check(st, "grad.c6", dc6, nc, 1e-5, 1e-5);
    fixture_check(st, "grad.resid", c.cot_res, n, 0, 0); /* identity path: the caller keeps dx */
    free(c.x), free(c.h), free(c.resid), free(c.c6), free(c.mod), free(c.res), free((void *)c.cot_mod),
        free((void *)c.cot_res), free(dx), free(dh), free(dc6);
    safetensors_close(st);
}

int main(void)
{
    RUN(test_modulate_fd);
    RUN(test_modulate_accumulates_null_inplace);
    RUN(test_modulate_backward_stores);
    RUN(test_modulate_threaded_matches_serial);
    RUN(test_modulate_matches_torch);
    return test_summary();
}
