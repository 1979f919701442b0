/* Multi-head softmax attention: the BLAS kernel against the naive double
 * reference, finite differences for dq/dk/dv (packed qkv with ld = 3D and
 * separate buffers), += accumulation, and PyTorch parity (timm Attention
 * core; the VAE's single-head AttnBlock core).
 *
 * Tolerances: outputs and probabilities are O(1) fp32 values from short dot
 * products (HD, T <= 64 terms), so rounding is ~1e-7; forward checks use
 * atol 1e-5 / rtol 1e-5 and gradients atol 1e-5 / rtol 1e-4 (a few more
 * roundings along the chain).  Finite differences: central, h = 1e-2 in
 * float, accumulated in double; the error is rounding in L (~1e-7·|L|/h ≈ 1e-4
 * for |L| ~ 10) plus O(h²) truncation (observed worst ~6e-5), so
 * atol 1e-4 + rtol 5e-4·max|grad| (a wrong index or a missing term moves
 * entries by O(max|grad|)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/attention.h"
#include "test.h"

float attention_softmax_exp_for_test(float x); /* internal, in attention.c */

/* ---- helpers ---- */

typedef struct {
    int B, T, NH, HD, ld;
    const float *q, *k, *v; /* may point into one packed buffer */
    const float *cot;       /* [B,T,D] */
    float *out, *probs, *ws;
} attn_ctx;

static double attn_loss(void *p)
{
    attn_ctx *c = p;
    attention_forward(c->out, c->probs, c->q, c->k, c->v, c->ld, c->B, c->T, c->NH, c->HD, c->ws);
    return dot_f64(c->out, c->cot, (size_t)c->B * c->T * c->NH * c->HD);
}

static float *alloc_ws(int B, int T, int NH, int HD)
{
    return xmalloc((attention_workspace_floats(B, T, NH, HD) + 1) * sizeof(float));
}

/* ---- tests ---- */

static void test_softmax_exp_accuracy(void)
{
    /* vs double exp: relative error within 3 float ulps (2^-23 ≈ 1.19e-7) on the softmax domain [-87, 0]. */
    double worst = 0;
    float worst_x = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f * (float)i / 2000000.0f;
        double want = exp((double)x);
        double rel = fabs(attention_softmax_exp_for_test(x) - want) / want;
        if (rel > worst)
            worst = rel, worst_x = x;
    }
    CHECK(worst < 3 * 1.19e-7, "softmax_exp max rel err %.3g at x=%.9g", worst, worst_x);
    CHECK(attention_softmax_exp_for_test(0.0f) == 1.0f, "exp(0) = %.9g", attention_softmax_exp_for_test(0.0f));
    CHECK(attention_softmax_exp_for_test(-100.0f) == 0.0f, "exp(-100) should flush to 0");
    CHECK(attention_softmax_exp_for_test(-INFINITY) == 0.0f, "exp(-inf) should be 0");
    CHECK(isnan(attention_softmax_exp_for_test(NAN)), "exp(NaN) should be NaN");
    double r5 = fabs(attention_softmax_exp_for_test(5.0f) - exp(5.0)) / exp(5.0);
    CHECK(r5 < 3e-7, "exp(5) rel err %.3g", r5);
}

/* Kernel vs naive reference: packed qkv (ld = 3D), gradients into a packed
 * dqkv (ld_d = 3D) pre-filled with nonzero values (+= semantics). */
static void check_vs_ref(int B, int T, int NH, int HD, uint64_t seed)
{
    const int D = NH * HD, ld = 3 * D;
    const size_t nqkv = (size_t)B * T * ld, nout = (size_t)B * T * D, np = (size_t)B * NH * T * T;
    float *qkv = alloc_normal(nqkv, 1.0f, seed);
    float *cot = alloc_normal(nout, 1.0f, seed + 1);
    float *out = alloc_zeros(nout), *out_ref = alloc_zeros(nout), *out_np = alloc_zeros(nout);
    float *P = alloc_zeros(np), *P_ref = alloc_zeros(np);
    float *ws = alloc_ws(B, T, NH, HD);
    attention_forward(out, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    attention_forward_ref(out_ref, P_ref, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD);
    char what[128];
    snprintf(what, sizeof what, "out B%d T%d NH%d HD%d", B, T, NH, HD);
    check_close(what, out, out_ref, nout, 1e-5, 1e-5);
    snprintf(what, sizeof what, "probs B%d T%d NH%d HD%d", B, T, NH, HD);
    check_close(what, P, P_ref, np, 1e-6, 1e-5);
    /* probs = NULL: the workspace holds them; same output bit for bit. */
    attention_forward(out_np, NULL, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    CHECK(memcmp(out, out_np, nout * sizeof(float)) == 0, "forward with probs=NULL differs");

    float *g = alloc_normal(nqkv, 1.0f, seed + 2), *g_ref = xmalloc(nqkv * sizeof(float));
    memcpy(g_ref, g, nqkv * sizeof(float));
    attention_backward(g, g + D, g + 2 * D, true, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    attention_backward_ref(g_ref, g_ref + D, g_ref + 2 * D, ld, cot, P_ref, qkv, qkv + D, qkv + 2 * D, ld, B, T,
                           NH, HD);
    snprintf(what, sizeof what, "dqkv (prefilled) B%d T%d NH%d HD%d", B, T, NH, HD);
    check_close(what, g, g_ref, nqkv, 1e-5, 1e-4);
    free(qkv), free(cot), free(out), free(out_ref), free(out_np), free(P), free(P_ref), free(ws), free(g),
        free(g_ref);
}

/* Large logits (|q·k|/√HD up to ~100): the softmax must subtract the row's
 * maximum before exp, or exp overflows; the reference works in double. */
static void test_attention_large_logits(void)
{
    const int B = 1, T = 24, NH = 2, HD = 8, D = NH * HD, ld = 3 * D;
    const size_t nqkv = (size_t)B * T * ld, nout = (size_t)B * T * D, np = (size_t)B * NH * T * T;
    float *qkv = alloc_normal(nqkv, 6.0f, 31);
    float *out = alloc_zeros(nout), *out_ref = alloc_zeros(nout), *P = alloc_zeros(np), *P_ref = alloc_zeros(np);
    float *ws = alloc_ws(B, T, NH, HD);
    attention_forward(out, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    attention_forward_ref(out_ref, P_ref, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD);
    check_close("large logits: out", out, out_ref, nout, 1e-4, 1e-5);
    check_close("large logits: probs", P, P_ref, np, 1e-6, 1e-5);
    free(qkv), free(out), free(out_ref), free(P), free(P_ref), free(ws);
}

static void test_attention_matches_reference(void)
{
    /* The kernel picks its threading by size (see ATTN_PAR_MIN_* in attention.c): */
    check_vs_ref(2, 13, 3, 8, 11);   /* tiny: serial */
    check_vs_ref(1, 160, 1, 16, 12); /* B·NH = 1, T·T >= 2^14: serial pairs, threaded BLAS and softmax rows */
    check_vs_ref(2, 64, 4, 32, 13);  /* B·NH = 8, 2^20 MACs: pairs split over threads */
}

static void test_attention_fd_packed(void)
{
    const int B = 2, T = 5, NH = 2, HD = 4, D = NH * HD, ld = 3 * D;
    const size_t nqkv = (size_t)B * T * ld, nout = (size_t)B * T * D;
    float *qkv = alloc_normal(nqkv, 1.0f, 21), *cot = alloc_normal(nout, 1.0f, 22);
    float *out = alloc_zeros(nout), *P = alloc_zeros((size_t)B * NH * T * T), *ws = alloc_ws(B, T, NH, HD);
    attn_ctx c = {B, T, NH, HD, ld, qkv, qkv + D, qkv + 2 * D, cot, out, P, ws};
    attn_loss(&c);
    float *g = alloc_zeros(nqkv);
    attention_backward(g, g + D, g + 2 * D, true, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    fd_check("attention dqkv (packed, ld=3D)", attn_loss, &c, qkv, g, nqkv, 1e-2, 1e-4, 5e-4, 0);
    free(qkv), free(cot), free(out), free(P), free(ws), free(g);
}

/* Separate q, k, v [B,T,D] (ld = D) with gradients into a packed dqkv
 * (ld_d = 3D), one gradient at a time with the others NULL. */
static void test_attention_fd_separate(void)
{
    const int B = 2, T = 6, NH = 3, HD = 4, D = NH * HD;
    const size_t n = (size_t)B * T * D;
    float *q = alloc_normal(n, 1.0f, 31), *k = alloc_normal(n, 1.0f, 32), *v = alloc_normal(n, 1.0f, 33);
    float *cot = alloc_normal(n, 1.0f, 34);
    float *out = alloc_zeros(n), *P = alloc_zeros((size_t)B * NH * T * T), *ws = alloc_ws(B, T, NH, HD);
    attn_ctx c = {B, T, NH, HD, D, q, k, v, cot, out, P, ws};
    attn_loss(&c);
    float *g = alloc_zeros(3 * n); /* packed [B,T,3D] */
    attention_backward(g, g + D, g + 2 * D, true, 3 * D, cot, P, q, k, v, D, B, T, NH, HD, ws);
    /* unpack into separate gradients */
    float *gs[3];
    for (int s = 0; s < 3; s++) {
        gs[s] = xmalloc(n * sizeof(float));
        for (size_t r = 0; r < (size_t)B * T; r++)
            memcpy(gs[s] + r * D, g + r * 3 * D + (size_t)s * D, D * sizeof(float));
    }
    fd_check("attention dq (separate, ld=D)", attn_loss, &c, q, gs[0], n, 1e-2, 1e-4, 5e-4, 0);
    fd_check("attention dk (separate, ld=D)", attn_loss, &c, k, gs[1], n, 1e-2, 1e-4, 5e-4, 0);
    fd_check("attention dv (separate, ld=D)", attn_loss, &c, v, gs[2], n, 1e-2, 1e-4, 5e-4, 0);
    fd_check_direction("attention dq direction", attn_loss, &c, q, gs[0], n, 1e-2, 5e-4, 35);

    /* NULL gradients: each alone must equal its slice of the full result
     * (fd_check left P at a perturbed input: recompute it first). */
    attn_loss(&c);
    const char *names[3] = {"dq alone", "dk alone", "dv alone"};
    for (int s = 0; s < 3; s++) {
        float *one = alloc_zeros(n);
        attention_backward(s == 0 ? one : NULL, s == 1 ? one : NULL, s == 2 ? one : NULL, true, D, cot, P, q, k, v, D,
                           B, T, NH, HD, ws);
        check_close(names[s], one, gs[s], n, 0, 0);
        free(one);
    }
    for (int s = 0; s < 3; s++)
        free(gs[s]);
    free(q), free(k), free(v), free(cot), free(out), free(P), free(ws), free(g);
}

/* Backward adds: grad(prefilled G0) == G0 + grad(zeros), elementwise. */
static void test_attention_backward_accumulates(void)
{
    const int B = 3, T = 9, NH = 2, HD = 8, D = NH * HD, ld = 3 * D;
    const size_t nqkv = (size_t)B * T * ld, nout = (size_t)B * T * D;
    float *qkv = alloc_normal(nqkv, 1.0f, 41), *cot = alloc_normal(nout, 1.0f, 42);
    float *out = alloc_zeros(nout), *P = alloc_zeros((size_t)B * NH * T * T), *ws = alloc_ws(B, T, NH, HD);
    attention_forward(out, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    float *g0 = alloc_zeros(nqkv), *g1 = alloc_normal(nqkv, 3.0f, 43), *want = xmalloc(nqkv * sizeof(float));
    attention_backward(g0, g0 + D, g0 + 2 * D, true, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    for (size_t i = 0; i < nqkv; i++)
        want[i] = g1[i] + g0[i];
    attention_backward(g1, g1 + D, g1 + 2 * D, true, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    /* gemm with beta = 1 rounds g1 + x once more than our sum: 1 ulp of |g1| ~ 3 */
    check_close("dqkv accumulates into prefilled", g1, want, nqkv, 1e-6, 1e-6);
    double nz = 0;
    for (size_t i = 0; i < nqkv; i++)
        nz += fabs(g0[i]);
    CHECK(nz > 1.0, "gradient is (nearly) zero, test would be vacuous: %g", nz);
    free(qkv), free(cot), free(out), free(P), free(ws), free(g0), free(g1), free(want);
}

/* accumulate = false stores into dq/dk/dv (NaNs here) the bits of adding into
 * zeros, on the path that splits (sample, head) pairs over threads and on
 * the serial one (one pair). */
static void test_attention_backward_stores(void)
{
    const int shapes[2][4] = {{3, 40, 4, 32}, {1, 9, 1, 8}}; /* B, T, NH, HD */
    for (int s = 0; s < 2; s++) {
        const int B = shapes[s][0], T = shapes[s][1], NH = shapes[s][2], HD = shapes[s][3], D = NH * HD, ld = 3 * D;
        const size_t nqkv = (size_t)B * T * ld, nout = (size_t)B * T * D;
        float *qkv = alloc_normal(nqkv, 1.0f, 44), *cot = alloc_normal(nout, 1.0f, 45);
        float *out = alloc_zeros(nout), *P = alloc_zeros((size_t)B * NH * T * T), *ws = alloc_ws(B, T, NH, HD);
        attention_forward(out, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
        float *want = alloc_zeros(nqkv), *got = xmalloc(nqkv * sizeof(float));
        for (size_t i = 0; i < nqkv; i++)
            got[i] = NAN;
        attention_backward(want, want + D, want + 2 * D, true, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD,
                           ws);
        attention_backward(got, got + D, got + 2 * D, false, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD,
                           ws);
        CHECK(memcmp(got, want, nqkv * sizeof(float)) == 0, "B=%d T=%d NH=%d: stored dqkv differs from added", B, T,
              NH);
        free(qkv), free(cot), free(out), free(P), free(ws), free(want), free(got);
    }
}

static int meta_int(const safetensors *st, const char *key)
{
    const char *s = safetensors_meta(st, key);
    if (!s)
        die("fixture metadata '%s' missing", key);
    return atoi(s);
}

static void test_attention_matches_torch_timm(void)
{
    safetensors *st = fixture_open("ops/attention");
    const int B = meta_int(st, "B"), T = meta_int(st, "T"), NH = meta_int(st, "NH"), HD = meta_int(st, "HD");
    const int D = NH * HD, ld = 3 * D;
    size_t nqkv, ncot;
    float *qkv = fixture_f32(st, "qkv", &nqkv), *cot = fixture_f32(st, "cot", &ncot);
    CHECK(nqkv == (size_t)B * T * ld && ncot == (size_t)B * T * D, "fixture sizes");
    float *out = alloc_zeros(ncot), *P = alloc_zeros((size_t)B * NH * T * T), *ws = alloc_ws(B, T, NH, HD);
    attention_forward(out, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    fixture_check(st, "out", out, ncot, 1e-5, 1e-5);
    fixture_check(st, "attn", P, (size_t)B * NH * T * T, 1e-6, 1e-5);
    float *g = alloc_zeros(nqkv);
    attention_backward(g, g + D, g + 2 * D, true, ld, cot, P, qkv, qkv + D, qkv + 2 * D, ld, B, T, NH, HD, ws);
    fixture_check(st, "grad.qkv", g, nqkv, 1e-5, 1e-4);
    free(qkv), free(cot), free(out), free(P), free(ws), free(g);
    safetensors_close(st);
}

/* [B,C,L] <-> [B,L,C] */
static void transpose_bcl(float *dst, const float *src, int B, int R, int S)
{
    for (int b = 0; b < B; b++)
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++)
                dst[((size_t)b * S + s) * R + r] = src[((size_t)b * R + r) * S + s];
}

/* The VAE AttnBlock core: NCHW q, k, v transposed to [B, L, C], NH = 1. */
static void test_attention_matches_torch_vae_single_head(void)
{
    safetensors *st = fixture_open("ops/attention_nh1");
    const int B = meta_int(st, "B"), C = meta_int(st, "C"), L = meta_int(st, "H") * meta_int(st, "W");
    const size_t n = (size_t)B * C * L;
    const char *in_names[3] = {"q", "k", "v"};
    float *in[3], *in_t[3], *g_t[3];
    for (int s = 0; s < 3; s++) {
        size_t m;
        in[s] = fixture_f32(st, in_names[s], &m);
        CHECK(m == n, "fixture size %s", in_names[s]);
        in_t[s] = xmalloc(n * sizeof(float));
        transpose_bcl(in_t[s], in[s], B, C, L);
        g_t[s] = alloc_zeros(n);
    }
    float *cot = fixture_f32(st, "cot", NULL), *cot_t = xmalloc(n * sizeof(float));
    transpose_bcl(cot_t, cot, B, C, L);
    float *out_t = alloc_zeros(n), *out = alloc_zeros(n), *P = alloc_zeros((size_t)B * L * L);
    float *ws = alloc_ws(B, L, 1, C);
    attention_forward(out_t, P, in_t[0], in_t[1], in_t[2], C, B, L, 1, C, ws);
    transpose_bcl(out, out_t, B, L, C);
    fixture_check(st, "out", out, n, 1e-5, 1e-5);
    fixture_check(st, "attn", P, (size_t)B * L * L, 1e-6, 1e-5);
    attention_backward(g_t[0], g_t[1], g_t[2], true, C, cot_t, P, in_t[0], in_t[1], in_t[2], C, B, L, 1, C, ws);
    const char *g_names[3] = {"grad.q", "grad.k", "grad.v"};
    for (int s = 0; s < 3; s++) {
        transpose_bcl(in[s], g_t[s], B, L, C); /* reuse in[s] as the NCHW gradient */
        fixture_check(st, g_names[s], in[s], n, 1e-5, 1e-4);
        free(in[s]), free(in_t[s]), free(g_t[s]);
    }
    free(cot), free(cot_t), free(out_t), free(out), free(P), free(ws);
    safetensors_close(st);
}

int main(void)
{
    RUN(test_softmax_exp_accuracy);
    RUN(test_attention_matches_reference);
    RUN(test_attention_large_logits);
    RUN(test_attention_fd_packed);
    RUN(test_attention_fd_separate);
    RUN(test_attention_backward_accumulates);
    RUN(test_attention_backward_stores);
    RUN(test_attention_matches_torch_timm);
    RUN(test_attention_matches_torch_vae_single_head);
    return test_summary();
}
