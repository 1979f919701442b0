/* patchify / unpatchify (exact index maps, round trips, adjoint backwards,
 * finite differences, += accumulation), patch embed = patchify + matmul vs
 * torch conv2d, unpatchify vs DiT's einsum, 2-D sin-cos position embedding vs
 * the float64 MAE/DiT formula, timestep embedding vs DiT/SiT.
 *
 * Tolerances: the (un)patchify maps are permutations, so they must be exact
 * (bit-equal).  Patch embed sums K = C·p·p = 16 products: fp32 forward atol
 * 1e-5 / rtol 1e-5, gradients atol 1e-5 / rtol 1e-4.  Position embeddings
 * are float64 cast to float, equal up to a 1-ulp flip of the final rounding
 * (atol 2.5e-7 on values in [-1, 1]).  Timestep embeddings follow torch's
 * float32 arithmetic; sin/cos/exp of different libms differ by ~1 ulp, so
 * atol 1e-6 for args <= 1; for t up to 999 one ulp of the argument (6e-5)
 * shows through, so atol 1e-4 there (observed 3e-5). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/embed.h"
#include "ops/gemm.h"
#include "test.h"

static int meta_int(const safetensors *st, const char *key)
{
    const char *s = safetensors_meta(st, key);
    if (!s)
        die("fixture metadata '%s' missing", key);
    return atoi(s);
}

/* ---- exact index maps ---- */

static void test_patchify_index_map_exact(void)
{
    /* B·C·H·W = 36864 >= 2^15: takes the threaded path (EMBED_PAR_MIN in embed.c) */
    const int B = 2, C = 4, H = 64, W = 72, p = 2, gw = W / p, T = (H / p) * gw, K = C * p * p;
    const size_t n = (size_t)B * C * H * W;
    float *x = xmalloc(n * sizeof(float)), *tok = alloc_zeros(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)i; /* exact in float, so each value names its pixel */
    patchify_forward(tok, x, B, C, H, W, p);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < H / p; i++)
            for (int j = 0; j < gw; j++)
                for (int c = 0; c < C; c++)
                    for (int a = 0; a < p; a++)
                        for (int bb = 0; bb < p; bb++) {
                            size_t want = (((size_t)b * C + c) * H + i * p + a) * W + j * p + bb;
                            size_t at = ((size_t)b * T + i * gw + j) * K + (c * p + a) * p + bb;
                            bad += tok[at] != (float)want;
                        }
    CHECK(bad == 0, "patchify: %d of %zu entries at the wrong place", bad, n);
    free(x), free(tok);
}

static void test_unpatchify_index_map_exact(void)
{
    /* B·C·H·W = 36864 >= 2^15: takes the threaded path (EMBED_PAR_MIN in embed.c) */
    const int B = 2, C = 4, H = 64, W = 72, p = 2, gw = W / p, T = (H / p) * gw, K = C * p * p;
    const size_t n = (size_t)B * C * H * W;
    float *tok = xmalloc(n * sizeof(float)), *x = alloc_zeros(n);
    for (size_t i = 0; i < n; i++)
        tok[i] = (float)i;
    unpatchify_forward(x, tok, B, C, H, W, p);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < H / p; i++)
            for (int j = 0; j < gw; j++)
                for (int a = 0; a < p; a++)
                    for (int bb = 0; bb < p; bb++)
                        for (int c = 0; c < C; c++) {
                            size_t src = ((size_t)b * T + i * gw + j) * K + (a * p + bb) * C + c;
                            size_t at = (((size_t)b * C + c) * H + i * p + a) * W + j * p + bb;
                            bad += x[at] != (float)src;
                        }
    CHECK(bad == 0, "unpatchify: %d of %zu entries at the wrong place", bad, n);
    free(x), free(tok);
}

/* unpatchify ∘ (inner (c,a,b) -> (a,b,c) reorder) ∘ patchify = identity, and
 * with C = 1 the two inner orders coincide so unpatchify ∘ patchify = id. */
static void test_patchify_unpatchify_round_trip(void)
{
    const int B = 2, H = 12, W = 8;
    const int ps[2] = {2, 4}, Cs[2] = {1, 5};
    for (int ip = 0; ip < 2; ip++)
        for (int ic = 0; ic < 2; ic++) {
            const int p = ps[ip], C = Cs[ic], T = (H / p) * (W / p), K = C * p * p;
            const size_t n = (size_t)B * C * H * W;
            float *x = alloc_normal(n, 1.0f, 5 + ip * 2 + ic), *tok = alloc_zeros(n), *tok2 = alloc_zeros(n);
            float *y = alloc_zeros(n);
            patchify_forward(tok, x, B, C, H, W, p);
            for (size_t r = 0; r < (size_t)B * T; r++)
                for (int c = 0; c < C; c++)
                    for (int ab = 0; ab < p * p; ab++)
                        tok2[r * K + (size_t)ab * C + c] = tok[r * K + (size_t)c * p * p + ab];
            unpatchify_forward(y, C == 1 ? tok : tok2, B, C, H, W, p);
            CHECK(memcmp(x, y, n * sizeof(float)) == 0, "round trip p=%d C=%d not exact", p, C);
            free(x), free(tok), free(tok2), free(y);
        }
}

/* Backward of a permutation is its transpose: <P x, g> = <x, Pᵀ g> (exact in
 * double, since both sides sum the same products), and += into prefilled. */
static void test_patchify_backward_adjoint_and_accumulates(void)
{
    const int B = 2, C = 3, H = 4, W = 6, p = 2;
    const size_t n = (size_t)B * C * H * W;
    float *x = alloc_normal(n, 1.0f, 61), *g = alloc_normal(n, 1.0f, 62);
    float *px = alloc_zeros(n), *dx = alloc_zeros(n), *pre = alloc_normal(n, 1.0f, 63);
    float *pre0 = xmalloc(n * sizeof(float));
    memcpy(pre0, pre, n * sizeof(float));

    patchify_forward(px, x, B, C, H, W, p);
    patchify_backward(dx, g, B, C, H, W, p);
    double l = dot_f64(px, g, n), r = dot_f64(x, dx, n);
    CHECK(fabs(l - r) <= 1e-9 * fabs(l), "patchify adjoint: <Px,g> %.12g vs <x,P^T g> %.12g", l, r);
    patchify_backward(pre, g, B, C, H, W, p);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += pre[i] != pre0[i] + dx[i];
    CHECK(bad == 0, "patchify_backward does not add into a prefilled buffer (%d entries)", bad);

    memset(px, 0, n * sizeof(float)), memset(dx, 0, n * sizeof(float));
    memcpy(pre, pre0, n * sizeof(float));
    unpatchify_forward(px, x, B, C, H, W, p);
    unpatchify_backward(dx, g, B, C, H, W, p);
    l = dot_f64(px, g, n), r = dot_f64(x, dx, n);
    CHECK(fabs(l - r) <= 1e-9 * fabs(l), "unpatchify adjoint: %.12g vs %.12g", l, r);
    unpatchify_backward(pre, g, B, C, H, W, p);
    bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += pre[i] != pre0[i] + dx[i];
    CHECK(bad == 0, "unpatchify_backward does not add into a prefilled buffer (%d entries)", bad);
    free(x), free(g), free(px), free(dx), free(pre), free(pre0);
}

typedef struct {
    int unpatch, B, C, H, W, p;
    float *x, *out;
    const float *cot;
} perm_ctx;

static double perm_loss(void *v)
{
    perm_ctx *c = v;
    if (c->unpatch)
        unpatchify_forward(c->out, c->x, c->B, c->C, c->H, c->W, c->p);
    else
        patchify_forward(c->out, c->x, c->B, c->C, c->H, c->W, c->p);
    return dot_f64(c->out, c->cot, (size_t)c->B * c->C * c->H * c->W);
}

static void test_patchify_unpatchify_fd(void)
{
    const int B = 2, C = 3, H = 4, W = 6, p = 2;
    const size_t n = (size_t)B * C * H * W;
    for (int u = 0; u < 2; u++) {
        float *x = alloc_normal(n, 1.0f, 71 + u), *cot = alloc_normal(n, 1.0f, 73 + u), *out = alloc_zeros(n);
        float *g = alloc_zeros(n);
        perm_ctx c = {u, B, C, H, W, p, x, out, cot};
        if (u)
            unpatchify_backward(g, cot, B, C, H, W, p);
        else
            patchify_backward(g, cot, B, C, H, W, p);
        /* L is linear in x: the difference quotient has only rounding error
         * (~1e-7·|L|/h with |L| ~ 10, h = 1e-2). */
        fd_check(u ? "unpatchify d tokens" : "patchify dx", perm_loss, &c, x, g, n, 1e-2, 1e-4, 1e-4, 0);
        free(x), free(cot), free(out), free(g);
    }
}

/* ---- torch parity ---- */

/* conv2d(x, weight, bias, stride = p) = patchify(x) @ weight.view(D, K)ᵀ + bias. */
static void test_patch_embed_matches_torch_conv(void)
{
    safetensors *st = fixture_open("ops/patch_embed");
    const int B = meta_int(st, "B"), C = meta_int(st, "C"), H = meta_int(st, "H"), W = meta_int(st, "W");
    const int p = meta_int(st, "p"), D = meta_int(st, "D"), T = (H / p) * (W / p), K = C * p * p, M = B * T;
    size_t nx;
    float *x = fixture_f32(st, "x", &nx), *w = fixture_f32(st, "proj.weight", NULL);
    float *bias = fixture_f32(st, "proj.bias", NULL), *cot = fixture_f32(st, "cot", NULL);
    float *tok = alloc_zeros((size_t)M * K), *out = alloc_zeros((size_t)M * D);
    patchify_forward(tok, x, B, C, H, W, p);
    for (int r = 0; r < M; r++)
        memcpy(out + (size_t)r * D, bias, D * sizeof(float));
    gemm(false, true, M, D, K, 1.0f, tok, K, w, K, 1.0f, out, D);
    fixture_check(st, "out", out, (size_t)M * D, 1e-5, 1e-5);

    /* backward: dtok = cot @ W, dx = patchifyᵀ dtok, dW = cotᵀ tok, db = Σ cot */
    float *dtok = alloc_zeros((size_t)M * K), *dx = alloc_zeros(nx), *dw = alloc_zeros((size_t)D * K);
    float *db = alloc_zeros(D);
    gemm(false, false, M, K, D, 1.0f, cot, D, w, K, 0.0f, dtok, K);
    patchify_backward(dx, dtok, B, C, H, W, p);
    gemm(true, false, D, K, M, 1.0f, cot, D, tok, K, 0.0f, dw, K);
    for (int r = 0; r < M; r++)
        for (int d = 0; d < D; d++)
            db[d] += cot[(size_t)r * D + d];
    fixture_check(st, "grad.x", dx, nx, 1e-5, 1e-4);
    fixture_check(st, "grad.proj.weight", dw, (size_t)D * K, 1e-5, 1e-4);
    fixture_check(st, "grad.proj.bias", db, D, 1e-5, 1e-4);
    free(x), free(w), free(bias), free(cot), free(tok), free(out), free(dtok), free(dx), free(dw), free(db);
    safetensors_close(st);
}

static void test_unpatchify_matches_torch_einsum(void)
{
    safetensors *st = fixture_open("ops/unpatchify");
    const int B = meta_int(st, "B"), C = meta_int(st, "C"), H = meta_int(st, "H"), W = meta_int(st, "W");
    const int p = meta_int(st, "p");
    size_t n;
    float *tok = fixture_f32(st, "tokens", &n), *cot = fixture_f32(st, "cot", NULL);
    CHECK(n == (size_t)B * C * H * W, "fixture size");
    float *out = alloc_zeros(n), *dtok = alloc_zeros(n);
    unpatchify_forward(out, tok, B, C, H, W, p);
    fixture_check(st, "out", out, n, 0, 0); /* a permutation: exact */
    unpatchify_backward(dtok, cot, B, C, H, W, p);
    fixture_check(st, "grad.tokens", dtok, n, 0, 0);
    free(tok), free(cot), free(out), free(dtok);
    safetensors_close(st);
}

static void test_pos_embed_matches_mae_formula(void)
{
    safetensors *st = fixture_open("ops/pos_embed");
    const int D = meta_int(st, "D"), G = meta_int(st, "G");
    float *pe = alloc_zeros((size_t)G * G * D);
    pos_embed_2d_sincos(pe, D, G);
    fixture_check(st, "pos_embed", pe, (size_t)G * G * D, 2.5e-7, 0);
    /* first half = column index: token (row 0, col 1) has sin(1) at 0, token (row 1, col 0) at 2Q */
    const int Q = D / 4;
    CHECK(pe[(size_t)1 * D + 0] == (float)sin(1.0) && pe[(size_t)1 * D + 2 * Q] == 0.0f,
          "token (0,1): pe[0] %.9g pe[2Q] %.9g", pe[D], pe[D + 2 * Q]);
    CHECK(pe[(size_t)G * D + 0] == 0.0f && pe[(size_t)G * D + 2 * Q] == (float)sin(1.0),
          "token (1,0): pe[0] %.9g pe[2Q] %.9g", pe[(size_t)G * D], pe[(size_t)G * D + 2 * Q]);

    const int Dh = meta_int(st, "D_hw"), gh = meta_int(st, "gh"), gw = meta_int(st, "gw");
    float *pe_hw = alloc_zeros((size_t)gh * gw * Dh);
    pos_embed_2d_sincos_hw(pe_hw, Dh, gh, gw);
    fixture_check(st, "pos_embed_hw", pe_hw, (size_t)gh * gw * Dh, 2.5e-7, 0);

    /* SiT-XL size (D 1152, 16×16), every 37th token. */
    const int Ds = meta_int(st, "D_sit"), Gs = meta_int(st, "G_sit"), step = meta_int(st, "sit_row_step");
    float *pe_s = alloc_zeros((size_t)Gs * Gs * Ds);
    pos_embed_2d_sincos(pe_s, Ds, Gs);
    const int rows = (Gs * Gs + step - 1) / step;
    float *sel = xmalloc((size_t)rows * Ds * sizeof(float));
    for (int r = 0; r < rows; r++)
        memcpy(sel + (size_t)r * Ds, pe_s + (size_t)r * step * Ds, Ds * sizeof(float));
    fixture_check(st, "pos_embed_sit_rows", sel, (size_t)rows * Ds, 2.5e-7, 0);
    free(pe), free(pe_hw), free(pe_s), free(sel);
    safetensors_close(st);
}

static void test_timestep_embedding_matches_torch(void)
{
    safetensors *st = fixture_open("ops/timestep");
    size_t n;
    float *t = fixture_f32(st, "t", &n);
    float *emb = alloc_zeros(n * 256);
    timestep_embedding(emb, t, (int)n, 256, 10000.0f);
    fixture_check(st, "emb", emb, n * 256, 1e-6, 0);
    /* t = 0: cos half is 1, sin half is 0 (cos first) */
    CHECK(t[0] == 0.0f && emb[0] == 1.0f && emb[127] == 1.0f && emb[128] == 0.0f && emb[255] == 0.0f,
          "t=0 embedding should be [1...1, 0...0]");

    size_t nb;
    float *tb = fixture_f32(st, "t_big", &nb), *eb = alloc_zeros(nb * 256);
    timestep_embedding(eb, tb, (int)nb, 256, 10000.0f);
    fixture_check(st, "emb_big", eb, nb * 256, 1e-4, 0);

    size_t no;
    const int dodd = meta_int(st, "dim_odd");
    float *to = fixture_f32(st, "t_odd", &no), *eo = alloc_normal(no * dodd, 1.0f, 9); /* garbage first */
    timestep_embedding(eo, to, (int)no, dodd, (float)meta_int(st, "max_period_odd"));
    fixture_check(st, "emb_odd", eo, no * dodd, 1e-6, 0);
    for (size_t i = 0; i < no; i++)
        CHECK(eo[i * dodd + dodd - 1] == 0.0f, "odd dim: last column should be 0, got %g", eo[i * dodd + dodd - 1]);
    free(t), free(emb), free(tb), free(eb), free(to), free(eo);
    safetensors_close(st);
}

int main(void)
{
    RUN(test_patchify_index_map_exact);
    RUN(test_unpatchify_index_map_exact);
    RUN(test_patchify_unpatchify_round_trip);
    RUN(test_patchify_backward_adjoint_and_accumulates);
    RUN(test_patchify_unpatchify_fd);
    RUN(test_patch_embed_matches_torch_conv);
    RUN(test_unpatchify_matches_torch_einsum);
    RUN(test_pos_embed_matches_mae_formula);
    RUN(test_timestep_embedding_matches_torch);
    return test_summary();
}
