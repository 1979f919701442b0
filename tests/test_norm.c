/* GroupNorm, LayerNorm, BatchNorm (src/ops/norm.c): finite differences of
 * every gradient, PyTorch parity (tests/fixtures/ops/{group,layer,batch}_norm*
 * from dev/ref/norm_ref.py, including the updated running stats), accumulation,
 * NULL gradients, in-place forward, and statistics that survive a large
 * offset (a one-pass float variance would not). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/act.h"
#include "ops/norm.h"
#include "ops/sync_batch_norm.h"
#include "test.h"

typedef enum { GN, LN, BN_TRAIN, BN_EVAL } norm_kind;
static const char *KIND_NAME[] = {"group_norm", "layer_norm", "batch_norm_train", "batch_norm_eval"};

/* One normalisation call with its buffers.  GN/BN use x [B,C,HW]; LN uses
 * x [N,D] with N = B, D = C, HW = 1.  upd_rm/upd_rv are the running stats a
 * train-mode BatchNorm updates (NULL in gradient checks, which call forward
 * many times); rm/rv are the stats an eval-mode BatchNorm reads. */
typedef struct {
    norm_kind k;
    int B, C, HW, G;
    float eps, momentum;
    float *x, *w, *b, *rm, *rv, *upd_rm, *upd_rv;
    float *out, *mean, *rstd, *cot;
    size_t n, np; /* elements of x; of weight/bias */
} norm_ctx;

static void norm_forward(norm_ctx *c, float *out)
{
    switch (c->k) {
    case GN: group_norm_forward(out, c->mean, c->rstd, c->x, c->w, c->b, c->B, c->C, c->HW, c->G, c->eps); break;
    case LN: layer_norm_forward(out, c->mean, c->rstd, c->x, c->w, c->b, c->B, c->C, c->eps); break;
    case BN_TRAIN:
        batch_norm_train_forward(out, c->mean, c->rstd, c->upd_rm, c->upd_rv, c->x, c->w, c->b, c->B, c->C, c->HW,
                                 c->eps, c->momentum);
        break;
    case BN_EVAL: batch_norm_eval_forward(out, c->x, c->rm, c->rv, c->w, c->b, c->B, c->C, c->HW, c->eps); break;
    }
}

static void norm_backward(const norm_ctx *c, float *dx, float *dw, float *db, const float *dout)
{
    switch (c->k) {
    case GN: group_norm_backward(dx, dw, db, dout, c->x, c->mean, c->rstd, c->w, c->B, c->C, c->HW, c->G); break;
    case LN: layer_norm_backward(dx, dw, db, dout, c->x, c->mean, c->rstd, c->w, c->B, c->C); break;
    case BN_TRAIN:
        batch_norm_train_backward(dx, dw, db, dout, c->x, c->mean, c->rstd, c->w, c->B, c->C, c->HW);
        break;
    case BN_EVAL:
        batch_norm_eval_backward(dx, dw, db, dout, c->x, c->rm, c->rv, c->w, c->B, c->C, c->HW, c->eps);
        break;
    }
}

static double norm_loss(void *p)
{
    norm_ctx *c = p;
    norm_forward(c, c->out);
    return dot_f64(c->out, c->cot, c->n);
}

static size_t n_stats(const norm_ctx *c) { return (size_t)(c->k == GN ? c->B * c->G : c->k == LN ? c->B : c->C); }

/* Random case: x gets per-channel (per-row for LN) offsets and scales so a
 * missing mean subtraction or variance would show. */
static norm_ctx norm_new(norm_kind k, int B, int C, int HW, int G, int affine, uint64_t seed)
{
    norm_ctx c = {k, B, C, HW, G, k == BN_TRAIN ? 1e-5f : 1e-6f, 0.1f};
    c.n = (size_t)B * C * HW;
    c.np = (size_t)C;
    c.x = alloc_normal(c.n, 1.0f, seed);
    float *off = alloc_normal(k == LN ? B : C, 2.0f, seed + 1), *sc = alloc_uniform(k == LN ? B : C, 0.5f, 2.5f, seed + 2);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++)
            for (int i = 0; i < HW; i++) {
                int j = k == LN ? b : ch;
                float *v = &c.x[((size_t)b * C + ch) * HW + i];
                *v = *v * sc[j] + off[j];
            }
    free(off), free(sc);
    if (affine) {
        c.w = alloc_normal(c.np, 0.5f, seed + 3);
        for (size_t i = 0; i < c.np; i++)
            c.w[i] += 1.0f;
        c.b = alloc_normal(c.np, 0.5f, seed + 4);
    }
    c.rm = alloc_normal(C, 0.5f, seed + 5);
    c.rv = alloc_uniform(C, 0.5f, 1.5f, seed + 6);
    c.out = alloc_zeros(c.n);
    c.cot = alloc_normal(c.n, 1.0f, seed + 7);
    c.mean = alloc_zeros(n_stats(&c));
    c.rstd = alloc_zeros(n_stats(&c));
    return c;
}

static void norm_free(norm_ctx *c)
{
    free(c->x), free(c->w), free(c->b), free(c->rm), free(c->rv), free(c->upd_rm), free(c->upd_rv);
    free(c->out), free(c->mean), free(c->rstd), free(c->cot);
}

/* Gradients by backward (into zeroed buffers) against finite differences of
 * L = Σ out·cot: every element for small cases (direction = 0), one random
 * direction per tensor for large ones. */
static void fd_case(norm_kind k, int B, int C, int HW, int G, int affine, int direction, uint64_t seed)
{
    norm_ctx c = norm_new(k, B, C, HW, G, affine, seed);
    float *dx = alloc_zeros(c.n), *dw = alloc_zeros(c.np), *db = alloc_zeros(c.np);
    norm_forward(&c, c.out);
    norm_backward(&c, dx, affine ? dw : NULL, affine ? db : NULL, c.cot);
    char what[128];
    const char *names[3] = {"dx", "dweight", "dbias"};
    float *params[3] = {c.x, c.w, c.b}, *grads[3] = {dx, dw, db};
    size_t sizes[3] = {c.n, c.np, c.np};
    for (int t = 0; t < (affine ? 3 : 1); t++) {
        snprintf(what, sizeof what, "%s B%d C%d HW%d G%d %s", KIND_NAME[k], B, C, HW, G, names[t]);
        /* Outputs are O(1), so float rounding in L is ~1e-7·√n absolute, over
         * 2h = 1e-2: ≲1e-4 for these sizes; the truncation error h²/6·L'''
         * is ~1e-5 for unit-scale sets.  A missing term in the backward
         * (e.g. the mean(dx̂·x̂) one) is an O(1) error. */
        if (direction)
            fd_check_direction(what, norm_loss, &c, params[t], grads[t], sizes[t], 1e-2, 2e-3, seed + 10 + t);
        else
            fd_check(what, norm_loss, &c, params[t], grads[t], sizes[t], 5e-3, 0.0, 2e-3, 0);
    }
    free(dx), free(dw), free(db);
    norm_free(&c);
}

static void test_group_norm_finite_differences(void)
{
    fd_case(GN, 2, 6, 5, 3, 1, 0, 100); /* 2 channels per group */
    fd_case(GN, 2, 6, 5, 6, 1, 0, 110); /* G = C: one channel per group */
    fd_case(GN, 2, 6, 5, 1, 1, 0, 120); /* G = 1: whole sample */
    fd_case(GN, 3, 8, 4, 2, 0, 0, 130); /* no affine */
    /* VAE shape, above the threading threshold */
    fd_case(GN, 2, 64, 16 * 16, 32, 1, 1, 140);
}

static void test_layer_norm_finite_differences(void)
{
    fd_case(LN, 3, 7, 1, 0, 1, 0, 200);
    fd_case(LN, 4, 5, 1, 0, 0, 0, 210);
    /* threaded, D not a multiple of the 64-column blocks of dweight */
    fd_case(LN, 200, 200, 1, 0, 1, 1, 220);
}

static void test_batch_norm_train_finite_differences(void)
{
    fd_case(BN_TRAIN, 3, 4, 5, 0, 1, 0, 300);
    fd_case(BN_TRAIN, 2, 3, 4, 0, 0, 0, 310);
    fd_case(BN_TRAIN, 8, 8, 32 * 32, 0, 1, 1, 320);
}

static void test_batch_norm_eval_finite_differences(void)
{
    fd_case(BN_EVAL, 3, 4, 5, 0, 1, 0, 400);
    fd_case(BN_EVAL, 2, 3, 4, 0, 0, 0, 410);
    fd_case(BN_EVAL, 8, 8, 32 * 32, 0, 1, 1, 420);
}

/* ---- PyTorch parity ---- */

static double meta_num(const safetensors *st, const char *key)
{
    const char *s = safetensors_meta(st, key);
    CHECK(s != NULL, "fixture metadata '%s' missing", key);
    return s ? strtod(s, NULL) : 0;
}

/* Loads a fixture into a norm_ctx, runs forward and backward, compares with
 * torch.  prefill: gradient buffers start at random nonzero values that are
 * subtracted afterwards, which only gives the fixture's values if backward
 * adds with +=. */
static void fixture_case(const char *name, norm_kind k, int prefill)
{
    safetensors *st = fixture_open(name);
    const st_tensor *tx = safetensors_require(st, "x");
    norm_ctx c = {k};
    if (k == LN) {
        c.B = (int)tx->shape[0], c.C = (int)tx->shape[1], c.HW = 1;
    } else {
        c.B = (int)tx->shape[0], c.C = (int)tx->shape[1], c.HW = (int)(tx->shape[2] * tx->shape[3]);
    }
    c.eps = (float)meta_num(st, "eps");
    if (k == GN)
        c.G = (int)meta_num(st, "G");
    if (k == BN_TRAIN)
        c.momentum = (float)meta_num(st, "momentum");
    c.n = (size_t)tx->numel;
    c.np = (size_t)c.C;
    c.x = fixture_f32(st, "x", NULL);
    c.cot = fixture_f32(st, "cot", NULL);
    int affine = safetensors_find(st, "weight") != NULL;
    if (affine) {
        c.w = fixture_f32(st, "weight", NULL);
        c.b = fixture_f32(st, "bias", NULL);
    }
    if (k == BN_EVAL) {
        c.rm = fixture_f32(st, "running_mean", NULL);
        c.rv = fixture_f32(st, "running_var", NULL);
    }
    if (k == BN_TRAIN) {
        c.upd_rm = fixture_f32(st, "running_mean", NULL);
        c.upd_rv = fixture_f32(st, "running_var", NULL);
    }
    c.out = alloc_zeros(c.n);
    c.mean = alloc_zeros(n_stats(&c));
    c.rstd = alloc_zeros(n_stats(&c));

    norm_forward(&c, c.out);
    /* Reference: float64 torch on the same float32 values, so the error is
     * ours.  Forward: float (x − μ)·rstd·w + b with μ, rstd from double sums,
     * a few roundings of O(1) values (measured ≲ 1e-6 abs). */
    fixture_check(st, "out", c.out, c.n, 1e-5, 1e-5);
    if (k == BN_TRAIN) {
        /* computed in double, rounded once */
        fixture_check(st, "new.running_mean", c.upd_rm, c.np, 1e-6, 1e-6);
        fixture_check(st, "new.running_var", c.upd_rv, c.np, 1e-6, 1e-6);
    }

    float *dx = prefill ? alloc_normal(c.n, 1.0f, 1) : alloc_zeros(c.n);
    float *dw = prefill ? alloc_normal(c.np, 1.0f, 2) : alloc_zeros(c.np);
    float *db = prefill ? alloc_normal(c.np, 1.0f, 3) : alloc_zeros(c.np);
    float *px = alloc_zeros(c.n), *pw = alloc_zeros(c.np), *pb = alloc_zeros(c.np);
    memcpy(px, dx, c.n * sizeof(float)), memcpy(pw, dw, c.np * sizeof(float)), memcpy(pb, db, c.np * sizeof(float));
    norm_backward(&c, dx, affine ? dw : NULL, affine ? db : NULL, c.cot);
    for (size_t i = 0; i < c.n; i++) dx[i] -= px[i];
    for (size_t i = 0; i < c.np; i++) dw[i] -= pw[i], db[i] -= pb[i];
    /* Gradients: dx is rstd·(dx̂ − mean − x̂·mean) with cancellation between
     * O(1) terms, and dweight/dbias are sums over up to B·HW = 256 products:
     * float rounding gives ~1e-6 absolute on O(1)…O(10) values; atol 1e-5,
     * rtol 1e-4. */
    fixture_check(st, "grad.x", dx, c.n, 1e-5, 1e-4);
    if (affine) {
        fixture_check(st, "grad.weight", dw, c.np, 1e-5, 1e-4);
        fixture_check(st, "grad.bias", db, c.np, 1e-5, 1e-4);
    }
    free(dx), free(dw), free(db), free(px), free(pw), free(pb);
    norm_free(&c);
    safetensors_close(st);
}

static void test_group_norm_matches_torch(void)
{
    fixture_case("ops/group_norm", GN, 0);             /* G = 32, C = 64, affine, eps 1e-6 */
    fixture_case("ops/group_norm_g4_noaffine", GN, 0); /* G = C/4, no affine */
}

static void test_layer_norm_matches_torch(void)
{
    fixture_case("ops/layer_norm", LN, 0);        /* SiT: no affine, eps 1e-6 */
    fixture_case("ops/layer_norm_affine", LN, 0); /* qk-norm: affine, eps 1e-5 */
}

static void test_batch_norm_matches_torch(void)
{
    fixture_case("ops/batch_norm_train_affine", BN_TRAIN, 0); /* PatchGAN */
    fixture_case("ops/batch_norm_train", BN_TRAIN, 0);        /* SiT latents */
    fixture_case("ops/batch_norm_eval_affine", BN_EVAL, 0);
    fixture_case("ops/batch_norm_eval", BN_EVAL, 0);
}

static void test_norm_backward_accumulates(void)
{
    fixture_case("ops/group_norm", GN, 1);
    fixture_case("ops/layer_norm_affine", LN, 1);
    fixture_case("ops/batch_norm_train_affine", BN_TRAIN, 1);
    fixture_case("ops/batch_norm_eval_affine", BN_EVAL, 1);
}

/* ---- NULL gradients, in place, accuracy ---- */

static void null_case(norm_kind k, int B, int C, int HW, int G)
{
    norm_ctx c = norm_new(k, B, C, HW, G, 1, 500 + k);
    float *dx = alloc_zeros(c.n), *dw = alloc_zeros(c.np), *db = alloc_zeros(c.np);
    float *dx1 = alloc_zeros(c.n), *dw1 = alloc_zeros(c.np), *db1 = alloc_zeros(c.np);
    norm_forward(&c, c.out);
    norm_backward(&c, dx, dw, db, c.cot);
    norm_backward(&c, dx1, NULL, NULL, c.cot);
    norm_backward(&c, NULL, dw1, NULL, c.cot);
    norm_backward(&c, NULL, NULL, db1, c.cot);
    norm_backward(&c, NULL, NULL, NULL, c.cot);
    CHECK(memcmp(dx, dx1, c.n * sizeof(float)) == 0, "%s: dx alone differs", KIND_NAME[k]);
    CHECK(memcmp(dw, dw1, c.np * sizeof(float)) == 0, "%s: dweight alone differs", KIND_NAME[k]);
    CHECK(memcmp(db, db1, c.np * sizeof(float)) == 0, "%s: dbias alone differs", KIND_NAME[k]);
    free(dx), free(dw), free(db), free(dx1), free(dw1), free(db1);
    norm_free(&c);
}

static void test_norm_null_gradients(void)
{
    null_case(GN, 2, 8, 9, 4);
    null_case(LN, 5, 70, 1, 0);
    null_case(BN_TRAIN, 3, 4, 9, 0);
    null_case(BN_EVAL, 3, 4, 9, 0);
    /* forward without saved statistics (inference) gives the same output */
    norm_ctx c = norm_new(GN, 2, 8, 9, 4, 1, 550);
    float *out2 = alloc_zeros(c.n);
    norm_forward(&c, c.out);
    free(c.mean), free(c.rstd);
    c.mean = c.rstd = NULL;
    norm_forward(&c, out2);
    CHECK(memcmp(c.out, out2, c.n * sizeof(float)) == 0, "group_norm without saved stats differs");
    free(out2);
    norm_free(&c);
}

static void test_norm_in_place_forward(void)
{
    for (int k = GN; k <= BN_EVAL; k++) {
        norm_ctx c = norm_new(k, 3, 8, k == LN ? 1 : 10, 4, 1, 600 + k); /* LN: x [3, 8] */
        norm_forward(&c, c.out);
        norm_forward(&c, c.x); /* out == x */
        CHECK(memcmp(c.out, c.x, c.n * sizeof(float)) == 0, "%s: in-place forward differs", KIND_NAME[k]);
        norm_free(&c);
    }
}

/* The fused GroupNorm + SiLU gives exactly the bits of the two ops run one
 * after the other (the VAE's results must not change when it fuses them),
 * with and without the statistics, in place, and on a size large
 * enough for the parallel path. */
static void test_group_norm_silu_fused_is_exact(void)
{
    const int B = 4, C = 32, HW = 300, G = 8;
    const size_t n = (size_t)B * C * HW;
    float *x = xmalloc(n * sizeof(float)), *w = xmalloc(C * sizeof(float)), *b = xmalloc(C * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = 3.0f * sinf(0.37f * (float)i) + 0.5f;
    for (int c = 0; c < C; c++)
        w[c] = 0.5f + 0.03f * c, b[c] = 0.1f * (c % 5) - 0.2f;
    float *pre_ref = xmalloc(n * sizeof(float)), *out_ref = xmalloc(n * sizeof(float));
    float *out = xmalloc(n * sizeof(float));
    float m_ref[32], r_ref[32], m[32], r[32];
    group_norm_forward(pre_ref, m_ref, r_ref, x, w, b, B, C, HW, G, 1e-6f);
    silu_forward(out_ref, pre_ref, n);
    group_norm_silu_forward(out, m, r, x, w, b, B, C, HW, G, 1e-6f);
    CHECK(memcmp(out, out_ref, n * sizeof(float)) == 0, "fused GroupNorm+SiLU output differs from the two ops");
    CHECK(memcmp(m, m_ref, sizeof m) == 0 && memcmp(r, r_ref, sizeof r) == 0, "fused GroupNorm+SiLU statistics differ");
    memcpy(out, x, n * sizeof(float));
    group_norm_silu_forward(out, NULL, NULL, out, w, b, B, C, HW, G, 1e-6f); /* in place */
    CHECK(memcmp(out, out_ref, n * sizeof(float)) == 0, "in-place fused GroupNorm+SiLU differs");
    free(x), free(w), free(b), free(pre_ref), free(out_ref), free(out);
}

/* The fused SiLU + GroupNorm backward gives exactly the bits of
 * silu_backward into a zeroed buffer followed by group_norm_backward (the
 * VAE's gradients must not change when it fuses them): adding into a dx
 * that holds values, storing into one that holds NaN, with and without the
 * affine weights and with only the parameter gradients; on a size large
 * enough for the parallel path and with groups of different lengths. */
static void test_group_norm_silu_backward_fused_is_exact(void)
{
    const int shapes[2][4] = {{4, 32, 300, 8}, {3, 64, 70, 32}}; /* B, C, HW, G */
    for (int sh = 0; sh < 2; sh++) {
        const int B = shapes[sh][0], C = shapes[sh][1], HW = shapes[sh][2], G = shapes[sh][3];
        const size_t n = (size_t)B * C * HW;
        float *x = xmalloc(n * sizeof(float)), *dy = xmalloc(n * sizeof(float)), *pre = xmalloc(n * sizeof(float));
        float *w = xmalloc(C * sizeof(float)), *b = xmalloc(C * sizeof(float));
        for (size_t i = 0; i < n; i++)
            x[i] = 3.0f * sinf(0.37f * (float)i) + 0.5f, dy[i] = cosf(0.11f * (float)i) - 0.2f;
        for (int c = 0; c < C; c++)
            w[c] = 0.5f + 0.03f * c, b[c] = 0.1f * (c % 5) - 0.2f;
        float *mean = xmalloc((size_t)B * G * sizeof(float)), *rstd = xmalloc((size_t)B * G * sizeof(float));
        float *out = xmalloc(n * sizeof(float));
        float *dsilu = xmalloc(n * sizeof(float)), *dx_ref = xmalloc(n * sizeof(float));
        float *dx = xmalloc(n * sizeof(float));
        for (int affine = 0; affine < 2; affine++) {
            const float *wp = affine ? w : NULL, *bp = affine ? b : NULL;
            /* the reference: the unfused ops, silu_backward at GroupNorm(x) */
            group_norm_silu_forward(out, mean, rstd, x, wp, bp, B, C, HW, G, 1e-6f);
            group_norm_forward(pre, NULL, NULL, x, wp, bp, B, C, HW, G, 1e-6f);
            memset(dsilu, 0, n * sizeof(float));
            silu_backward(dsilu, dy, pre, n);
            /* the recomputation from the saved statistics gives the forward's output */
            float *again = xmalloc(n * sizeof(float));
            group_norm_silu_recompute(again, x, mean, rstd, wp, bp, B, C, HW, G);
            CHECK(memcmp(again, out, n * sizeof(float)) == 0,
                  "GroupNorm+SiLU recomputed from saved statistics differs");
            free(again);
            float dw_ref[64] = {0}, db_ref[64] = {0}, dw[64] = {0}, db[64] = {0};
            for (size_t i = 0; i < n; i++)
                dx_ref[i] = dx[i] = 0.25f * sinf(0.05f * (float)i);
            group_norm_backward(dx_ref, dw_ref, db_ref, dsilu, x, mean, rstd, wp, B, C, HW, G);
            group_norm_silu_backward(dx, true, dw, db, dy, x, mean, rstd, wp, bp, B, C, HW, G);
            CHECK(memcmp(dx, dx_ref, n * sizeof(float)) == 0, "fused SiLU+GroupNorm backward: dx (adding) differs");
            CHECK(memcmp(dw, dw_ref, sizeof dw) == 0 && memcmp(db, db_ref, sizeof db) == 0,
                  "fused SiLU+GroupNorm backward: dweight/dbias differ");
            for (size_t i = 0; i < n; i++)
                dx_ref[i] = 0.0f, dx[i] = NAN;
            group_norm_backward(dx_ref, NULL, NULL, dsilu, x, mean, rstd, wp, B, C, HW, G);
            group_norm_silu_backward(dx, false, NULL, NULL, dy, x, mean, rstd, wp, bp, B, C, HW, G);
            CHECK(memcmp(dx, dx_ref, n * sizeof(float)) == 0, "fused SiLU+GroupNorm backward: dx (storing) differs");
            float dw2[64] = {0}, db2[64] = {0};
            group_norm_silu_backward(NULL, false, dw2, db2, dy, x, mean, rstd, wp, bp, B, C, HW, G);
            CHECK(memcmp(dw2, dw_ref, sizeof dw2) == 0 && memcmp(db2, db_ref, sizeof db2) == 0,
                  "fused SiLU+GroupNorm backward without dx: dweight/dbias differ");
        }
        free(x), free(dy), free(pre), free(w), free(b), free(mean), free(rstd), free(out), free(dsilu), free(dx_ref),
            free(dx);
    }
}

/* Double-precision reference: x̂ over sets of n_chunks runs of len floats,
 * stride apart (same layout rule as norm.c). */
static void ref_normalise(float *out, const float *x, int nchunks, size_t len, size_t stride, double eps)
{
    double s = 0, ss = 0;
    for (int k = 0; k < nchunks; k++)
        for (size_t i = 0; i < len; i++)
            s += x[k * stride + i];
    double n = (double)nchunks * len, m = s / n;
    for (int k = 0; k < nchunks; k++)
        for (size_t i = 0; i < len; i++)
            ss += (x[k * stride + i] - m) * (x[k * stride + i] - m);
    double r = 1.0 / sqrt(ss / n + eps);
    for (int k = 0; k < nchunks; k++)
        for (size_t i = 0; i < len; i++)
            out[k * stride + i] = (float)((x[k * stride + i] - m) * r);
}

static void test_norm_large_offset_statistics(void)
{
    /* Sets of 4096…16384 values with mean 100 and std 1: Σx² in float (or
     * E[x²] − E[x]² in float) would be off by far more than 1e-3 in the
     * variance.  Against a double reference the only error left is the
     * float mean (ulp(100)/2 ≈ 4e-6) in x − μ, hence atol 1e-5. */
    int B = 2, C = 64, HW = 4096, G = 32;
    size_t n = (size_t)B * C * HW;
    float *x = alloc_normal(n, 1.0f, 700), *out = alloc_zeros(n), *want = alloc_zeros(n);
    for (size_t i = 0; i < n; i++)
        x[i] += 100.0f;
    size_t glen = (size_t)(C / G) * HW;
    group_norm_forward(out, NULL, NULL, x, NULL, NULL, B, C, HW, G, 1e-6f);
    for (int bg = 0; bg < B * G; bg++)
        ref_normalise(want + bg * glen, x + bg * glen, 1, glen, 0, 1e-6);
    check_close("group_norm offset 100", out, want, n, 1e-5, 1e-5);

    layer_norm_forward(out, NULL, NULL, x, NULL, NULL, (int)(n / 4096), 4096, 1e-6f);
    for (size_t r = 0; r < n / 4096; r++)
        ref_normalise(want + r * 4096, x + r * 4096, 1, 4096, 0, 1e-6);
    check_close("layer_norm offset 100", out, want, n, 1e-5, 1e-5);

    batch_norm_train_forward(out, NULL, NULL, NULL, NULL, x, NULL, NULL, B, C, HW, 1e-4f, 0.1f);
    for (int ch = 0; ch < C; ch++)
        ref_normalise(want + (size_t)ch * HW, x + (size_t)ch * HW, B, HW, (size_t)C * HW, 1e-4);
    check_close("batch_norm offset 100", out, want, n, 1e-5, 1e-5);
    free(x), free(out), free(want);
}

static void test_batch_norm_running_stats_momentum(void)
{
    /* Hand-checkable case: one channel, values {0, 2} in a batch of 2:
     * μ = 1, biased σ² = 1, unbiased 2.  From (0, 1) with momentum 0.1:
     * running_mean = 0.1, running_var = 0.9 + 0.2 = 1.1; output ±1/√(1+eps). */
    float x[2] = {0.0f, 2.0f}, out[2], mean, rstd, rm = 0.0f, rv = 1.0f;
    batch_norm_train_forward(out, &mean, &rstd, &rm, &rv, x, NULL, NULL, 2, 1, 1, 1e-4f, 0.1f);
    CHECK(fabsf(rm - 0.1f) < 1e-7f && fabsf(rv - 1.1f) < 1e-6f, "running stats %g %g, want 0.1 1.1", rm, rv);
    CHECK(mean == 1.0f && fabsf(out[1] - 1.0f / sqrtf(1.0001f)) < 1e-6f && fabsf(out[0] + out[1]) < 1e-7f,
          "mean %g out %g %g", mean, out[0], out[1]);
}

/* batch_norm_running_update leaves the very floats the train forward leaves
 * in the running statistics: serial (2 channels) and threaded (16 channels of
 * 4096 values each, past the threading threshold) sizes. */
static void test_batch_norm_running_update_matches_forward(void)
{
    const int shapes[2][3] = {{3, 2, 5}, {4, 16, 1024}}; /* B, C, HW */
    for (int k = 0; k < 2; k++) {
        int B = shapes[k][0], C = shapes[k][1], HW = shapes[k][2];
        size_t n = (size_t)B * C * HW;
        float *x = alloc_normal(n, 3.0f, 40 + k), *out = alloc_zeros(n);
        float *rm1 = alloc_normal((size_t)C, 1.0f, 50 + k), *rv1 = alloc_zeros((size_t)C);
        float *rm2 = alloc_zeros((size_t)C), *rv2 = alloc_zeros((size_t)C);
        for (int c = 0; c < C; c++)
            x[(size_t)c * HW] += 7.0f, rv1[c] = 0.5f + (float)c;
        memcpy(rm2, rm1, (size_t)C * sizeof(float));
        memcpy(rv2, rv1, (size_t)C * sizeof(float));
        for (int rep = 0; rep < 2; rep++) { /* twice: from the stats the first call moved */
            batch_norm_train_forward(out, NULL, NULL, rm1, rv1, x, NULL, NULL, B, C, HW, 1e-5f, 0.1f);
            batch_norm_running_update(rm2, rv2, x, B, C, HW, 0.1f);
        }
        CHECK(!memcmp(rm1, rm2, (size_t)C * sizeof(float)) && !memcmp(rv1, rv2, (size_t)C * sizeof(float)),
              "running stats differ from the forward's (C = %d)", C);
        free(x), free(out), free(rm1), free(rv1), free(rm2), free(rv2);
    }
}

/* A GroupNorm whose channels do not split into G groups (or G = 0) is
 * refused by name, in the forwards and in the backward. */
typedef struct {
    int which, C, G;
} gn_groups_case;

static void gn_with_groups(void *arg)
{
    const gn_groups_case *g = arg;
    float x[12] = {0}, out[12], d[12];
    if (g->which == 0)
        group_norm_forward(out, NULL, NULL, x, NULL, NULL, 1, g->C, 1, g->G, 1e-6f);
    else if (g->which == 1)
        group_norm_silu_forward(out, NULL, NULL, x, NULL, NULL, 1, g->C, 1, g->G, 1e-6f);
    else
        group_norm_backward(d, NULL, NULL, x, x, x, x, NULL, 1, g->C, 1, g->G);
}

static void test_group_norm_refuses_bad_groups(void)
{
    static const char *who[3] = {"group_norm_forward", "group_norm_silu_forward", "group_norm_backward"};
    for (int w = 0; w < 3; w++) {
        char want[128];
        gn_groups_case zero = {w, 12, 0}, uneven = {w, 12, 5};
        snprintf(want, sizeof want, "%s: 12 channels do not split into 0 groups", who[w]);
        expect_die(who[w], gn_with_groups, &zero, want);
        snprintf(want, sizeof want, "%s: 12 channels do not split into 5 groups", who[w]);
        expect_die(who[w], gn_with_groups, &uneven, want);
    }
}

/* Groups with no spread: one value per group (C = G, HW = 1), and groups of
 * one repeated value.  Then x − mean is 0, the variance 0 and rstd exactly
 * 1/sqrt(eps): every output is the channel's bias. */
static void test_group_norm_groups_without_spread(void)
{
    const float eps = 1e-6f, want_rstd = (float)(1.0 / sqrt((double)eps));
    const int shapes[2][3] = {{4, 1, 4}, {8, 5, 2}}; /* C, HW, G */
    for (int k = 0; k < 2; k++) {
        int B = 2, C = shapes[k][0], HW = shapes[k][1], G = shapes[k][2], Cg = C / G;
        size_t n = (size_t)B * C * HW;
        float *x = alloc_zeros(n), *out = alloc_zeros(n), *w = alloc_normal((size_t)C, 1.0f, 800 + k);
        float *b = alloc_normal((size_t)C, 1.0f, 810 + k), mean[16], rstd[16];
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(1 + i / ((size_t)Cg * HW)); /* group bg holds bg + 1 */
        group_norm_forward(out, mean, rstd, x, w, b, B, C, HW, G, eps);
        for (int bg = 0; bg < B * G; bg++)
            CHECK(mean[bg] == (float)(bg + 1) && rstd[bg] == want_rstd, "C %d HW %d group %d: mean %g rstd %g", C,
                  HW, bg, mean[bg], rstd[bg]);
        for (size_t i = 0; i < n; i++)
            CHECK(out[i] == b[(i / HW) % C], "C %d HW %d: out[%zu] %g, want the bias %g", C, HW, i, out[i],
                  b[(i / HW) % C]);
        /* The backward: x̂ = 0, so dx = rstd·(dy·w − mean(dy·w)) (exactly 0
         * for one value per group), dweight = 0 and dbias = Σ dy. */
        float *dy = alloc_normal(n, 1.0f, 820 + k), *dx = alloc_zeros(n);
        float *dw = alloc_zeros((size_t)C), *db = alloc_zeros((size_t)C);
        group_norm_backward(dx, dw, db, dy, x, mean, rstd, w, B, C, HW, G);
        for (int ch = 0; ch < C; ch++) {
            double sum = 0;
            for (int bb = 0; bb < B; bb++)
                for (int i = 0; i < HW; i++)
                    sum += dy[((size_t)bb * C + ch) * HW + i];
            CHECK(dw[ch] == 0.0f && fabsf(db[ch] - (float)sum) <= 1e-6f, "C %d HW %d channel %d: dweight %g, dbias %g "
                  "want 0, %g", C, HW, ch, dw[ch], db[ch], sum);
        }
        if (HW == 1 && C == G)
            for (size_t i = 0; i < n; i++)
                CHECK(dx[i] == 0.0f, "one value per group: dx[%zu] = %g, want 0", i, dx[i]);
        free(dy), free(dx), free(dw), free(db);
        free(x), free(out), free(w), free(b);
    }
}

/* LayerNorm edge cases: rows of one value (out = bias, rstd = 1/sqrt(eps));
 * rows of no values (nothing written); weight alone or bias alone, which
 * take their own loop, give the bits of the full affine with a neutral
 * other half; a backward of one row gives that row's dx of a larger call
 * and dbias = dy. */
static void test_layer_norm_edge_cases(void)
{
    const float eps = 1e-6f, want_rstd = (float)(1.0 / sqrt((double)eps));
    float x1[3] = {4.0f, -2.0f, 0.5f}, w1[1] = {1.5f}, b1[1] = {-0.25f}, out1[3], mean1[3], rstd1[3];
    layer_norm_forward(out1, mean1, rstd1, x1, w1, b1, 3, 1, eps);
    for (int r = 0; r < 3; r++)
        CHECK(out1[r] == b1[0] && mean1[r] == x1[r] && rstd1[r] == want_rstd, "D = 1 row %d: out %g mean %g rstd %g",
              r, out1[r], mean1[r], rstd1[r]);
    float sentinel[2] = {7.0f, 7.0f};
    layer_norm_forward(out1, sentinel, sentinel + 1, x1, NULL, NULL, 1, 0, eps);
    CHECK(sentinel[0] == 7.0f && sentinel[1] == 7.0f, "D = 0 wrote its statistics: %g %g", sentinel[0], sentinel[1]);

    const int N = 3, D = 70;
    const size_t n = (size_t)N * D;
    float *x = alloc_normal(n, 2.0f, 900), *w = alloc_normal(D, 1.0f, 901), *b = alloc_normal(D, 1.0f, 902);
    float *ones = alloc_zeros(D), *zeros = alloc_zeros(D), *got = alloc_zeros(n), *want = alloc_zeros(n);
    float mean[3], rstd[3];
    for (int d = 0; d < D; d++)
        ones[d] = 1.0f;
    layer_norm_forward(got, NULL, NULL, x, w, NULL, N, D, eps);
    layer_norm_forward(want, NULL, NULL, x, w, zeros, N, D, eps);
    CHECK(memcmp(got, want, n * sizeof(float)) == 0, "layer_norm with weight alone differs from bias = 0");
    layer_norm_forward(got, NULL, NULL, x, NULL, b, N, D, eps);
    layer_norm_forward(want, mean, rstd, x, ones, b, N, D, eps);
    CHECK(memcmp(got, want, n * sizeof(float)) == 0, "layer_norm with bias alone differs from weight = 1");

    float *dy = alloc_normal(n, 1.0f, 903), *dx_all = alloc_zeros(n), *dx_one = alloc_zeros(D);
    float *dw = alloc_zeros(D), *db = alloc_zeros(D), *dw_all = alloc_zeros(D), *db_all = alloc_zeros(D);
    layer_norm_backward(dx_all, dw_all, db_all, dy, x, mean, rstd, w, N, D);
    layer_norm_backward(dx_one, dw, db, dy, x, mean, rstd, w, 1, D);
    CHECK(memcmp(dx_one, dx_all, D * sizeof(float)) == 0, "layer_norm backward of one row differs from its row");
    CHECK(memcmp(db, dy, D * sizeof(float)) == 0, "layer_norm backward of one row: dbias is not dy");
    free(x), free(w), free(b), free(ones), free(zeros), free(got), free(want);
    free(dy), free(dx_all), free(dx_one), free(dw), free(db), free(dw_all), free(db_all);
}

/* A train-mode BatchNorm (or SyncBatchNorm, ctx non-NULL) of one value per
 * channel has no unbiased variance: refused with the sizes, as torch
 * refuses it. */
static void bn_one_value(void *sync)
{
    float x[3] = {1, 2, 3}, out[3];
    (sync ? sync_batch_norm_train_forward : batch_norm_train_forward)(out, NULL, NULL, NULL, NULL, x, NULL, NULL, 1,
                                                                       3, 1, 1e-5f, 0.1f);
}

static void test_batch_norm_refuses_one_value(void)
{
    expect_die("BatchNorm of 1 value per channel", bn_one_value, NULL,
               "batch_norm_train_forward: need more than 1 value per channel in training (B=1, HW=1)");
    expect_die("SyncBatchNorm of 1 value per channel in 1 process", bn_one_value, "sync",
               "sync_batch_norm_train_forward: need more than 1 value per channel in training (B=1, HW=1, 1 "
               "processes)");
}

/* In one process SyncBatchNorm is BatchNorm: the statistics, the running
 * update and every gradient of the same batch (both sum in double). */
static void test_sync_batch_norm_one_process_is_batch_norm(void)
{
    const int B = 3, C = 4, HW = 5;
    const size_t n = (size_t)B * C * HW;
    float *x = alloc_normal(n, 1.5f, 81), *dy = alloc_normal(n, 1.0f, 82);
    for (size_t i = 0; i < n; i++)
        x[i] += 0.3f;
    float w[4] = {1.5f, -0.5f, 2.0f, 0.7f}, bias[4] = {0.1f, 0.2f, -0.3f, 0.0f};
    float *out[2], *dx[2], mean[2][4], rstd[2][4], rm[2][4] = {{0}}, rv[2][4] = {{1, 1, 1, 1}, {1, 1, 1, 1}};
    float dw[2][4] = {{0}}, db[2][4] = {{0}};
    for (int k = 0; k < 2; k++)
        out[k] = alloc_zeros(n), dx[k] = alloc_zeros(n);
    batch_norm_train_forward(out[0], mean[0], rstd[0], rm[0], rv[0], x, w, bias, B, C, HW, 1e-4f, 0.1f);
    batch_norm_train_backward(dx[0], dw[0], db[0], dy, x, mean[0], rstd[0], w, B, C, HW);
    sync_batch_norm_train_forward(out[1], mean[1], rstd[1], rm[1], rv[1], x, w, bias, B, C, HW, 1e-4f, 0.1f);
    sync_batch_norm_train_backward(dx[1], dw[1], db[1], dy, x, mean[1], rstd[1], w, B, C, HW);
    check_close("sync BN out", out[1], out[0], n, 1e-6, 1e-6);
    check_close("sync BN mean", mean[1], mean[0], 4, 1e-6, 1e-6);
    check_close("sync BN rstd", rstd[1], rstd[0], 4, 1e-6, 1e-6);
    check_close("sync BN running_mean", rm[1], rm[0], 4, 1e-6, 1e-6);
    check_close("sync BN running_var", rv[1], rv[0], 4, 1e-6, 1e-6);
    check_close("sync BN dx", dx[1], dx[0], n, 1e-5, 1e-5);
    check_close("sync BN dweight", dw[1], dw[0], 4, 1e-5, 1e-5);
    check_close("sync BN dbias", db[1], db[0], 4, 1e-5, 1e-5);
    /* the weight gradient alone (dx NULL); no affine weight, as the SiT's latent BatchNorm: its dx */
    float dw_only[4] = {0};
    sync_batch_norm_train_backward(NULL, dw_only, NULL, dy, x, mean[1], rstd[1], w, B, C, HW);
    check_close("sync BN dweight without dx", dw_only, dw[0], 4, 1e-5, 1e-5);
    for (int k = 0; k < 2; k++)
        memset(dx[k], 0, n * sizeof(float));
    batch_norm_train_backward(dx[0], NULL, NULL, dy, x, mean[0], rstd[0], NULL, B, C, HW);
    sync_batch_norm_train_backward(dx[1], NULL, NULL, dy, x, mean[1], rstd[1], NULL, B, C, HW);
    check_close("sync BN dx without an affine weight", dx[1], dx[0], n, 1e-5, 1e-5);
    /* nothing asked for: nothing written, nothing read */
    sync_batch_norm_train_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, B, C, HW);
    for (int k = 0; k < 2; k++)
        free(out[k]), free(dx[k]);
    free(x), free(dy);
}

int main(void)
{
    RUN(test_group_norm_finite_differences);
    RUN(test_layer_norm_finite_differences);
    RUN(test_batch_norm_train_finite_differences);
    RUN(test_batch_norm_eval_finite_differences);
    RUN(test_group_norm_matches_torch);
    RUN(test_layer_norm_matches_torch);
    RUN(test_batch_norm_matches_torch);
    RUN(test_norm_backward_accumulates);
    RUN(test_norm_null_gradients);
    RUN(test_norm_in_place_forward);
    RUN(test_group_norm_silu_fused_is_exact);
    RUN(test_group_norm_silu_backward_fused_is_exact);
    RUN(test_norm_large_offset_statistics);
    RUN(test_batch_norm_running_stats_momentum);
    RUN(test_batch_norm_running_update_matches_forward);
    RUN(test_group_norm_refuses_bad_groups);
    RUN(test_group_norm_groups_without_spread);
    RUN(test_layer_norm_edge_cases);
    RUN(test_batch_norm_refuses_one_value);
    RUN(test_sync_batch_norm_one_process_is_batch_norm);
    return test_summary();
}
