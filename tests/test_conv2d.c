/* conv2d: PyTorch parity (tests/fixtures/ops/conv2d_*.safetensors from
 * dev/ref/conv_ref.py), finite differences for dx, dweight and dbias in every
 * configuration the models use, the tuned im2col/gemm path against the naive
 * double-precision reference on shapes that exercise its panelling (several
 * panels per image, several images per panel), and the backward conventions
 * (+= into gradients, NULL = not needed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/error.h"
#include "ops/conv2d.h"
#include "ops/conv2d_dnnl.h"
#include "ops/conv2d_winograd.h"
#include "ops/conv2d_winograd_4x4.h"
#include "test.h"

typedef struct conv_case {
    const char *name;
    int B, C_in, H, W, C_out, k, stride, pt, pl, pb, pr, bias;
} conv_case;

/* Same configurations as dev/ref/conv_ref.py (there with the model layers they stand for). */
static const conv_case CASES[] = {
    {"conv2d_3x3", 2, 5, 9, 7, 6, 3, 1, 1, 1, 1, 1, 1},
    {"conv2d_3x3_s2_down", 2, 4, 10, 10, 5, 3, 2, 0, 0, 1, 1, 1},
    {"conv2d_1x1", 2, 6, 5, 4, 3, 1, 1, 0, 0, 0, 0, 1},
    {"conv2d_1x1_nobias", 2, 7, 4, 5, 1, 1, 1, 0, 0, 0, 0, 0},
    {"conv2d_4x4_s2", 2, 3, 12, 12, 5, 4, 2, 1, 1, 1, 1, 1},
    {"conv2d_4x4_s2_nobias", 2, 4, 9, 8, 3, 4, 2, 1, 1, 1, 1, 0},
    {"conv2d_4x4_s1_nobias", 2, 4, 7, 7, 3, 4, 1, 1, 1, 1, 1, 0},
    {"conv2d_4x4_s1", 2, 3, 6, 8, 2, 4, 1, 1, 1, 1, 1, 1},
    {"conv2d_patch2", 2, 4, 8, 8, 6, 2, 2, 0, 0, 0, 0, 1},
    {"conv2d_patch14", 2, 3, 28, 28, 4, 14, 14, 0, 0, 0, 0, 1},
    {"conv2d_3x3_wide", 3, 16, 7, 9, 24, 3, 1, 1, 1, 1, 1, 1},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* Every case runs with each algorithm that applies to it (Winograd only to
 * 3×3 stride-1 and 4×4 stride-1/2 kernels; forcing it elsewhere would
 * silently test im2col; oneDNN takes them all). */
static const conv2d_algo ALGOS[] = {CONV2D_IM2COL, CONV2D_WINOGRAD, CONV2D_WINOGRAD_F4, CONV2D_DNNL};
static const char *ALGO_NAMES[] = {"im2col", "winograd", "winograd_f4", "dnnl"};
#define N_ALGOS 4

static int algo_applies(conv2d_algo a, const conv2d_shape *s)
{
    if (a == CONV2D_DNNL)
        return conv2d_dnnl_applies(s);
    if (a == CONV2D_WINOGRAD_F4)
        return conv2d_winograd_applies(s);
    return a != CONV2D_WINOGRAD || conv2d_winograd_applies(s) || conv2d_winograd_4x4_applies(s);
}

static conv2d_shape case_shape(const conv_case *c)
{
    return conv2d_make_pad(c->B, c->C_in, c->H, c->W, c->C_out, c->k, c->stride, c->pt, c->pl, c->pb, c->pr);
}

static float *alloc_ws(const conv2d_shape *s) { return alloc_zeros(conv2d_workspace_floats(s) + 1); }

/* fixture tensor `name` against got, labelled with the case name. */
static void check_fixture(const safetensors *st, const char *casename, const char *name, const float *got, size_t n,
                          double atol, double rtol)
{
    size_t m;
    float *want = fixture_f32(st, name, &m);
    char what[160];
    snprintf(what, sizeof what, "%s %s vs torch", casename, name);
    CHECK(m == n, "%s: fixture has %zu elements, computed %zu", what, m, n);
    if (m == n)
        check_close(what, got, want, n, atol, rtol);
    free(want);
}

static int meta_int(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    CHECK(v != NULL, "fixture metadata lacks '%s'", key);
    return v ? atoi(v) : -1;
}

/* Forward and backward against the float64 PyTorch result.  The gradient
 * buffers start with random values, so the comparison also proves that
 * backward adds (+=) rather than overwrites.
 * Tolerances: the reference is exact (float64) rounded to float32; our
 * float32 gemm accumulates K = C_in·k·k (forward, dx) or B·H_out·W_out
 * (dweight, dbias) products of O(1) terms, error ~ sqrt(K)·6e-8·|term|, i.e.
 * below 1e-5 for these sizes.  Forward: atol 1e-5 + rtol 1e-5; gradients
 * (larger sums, plus the pre-filled value): atol 1e-4 + rtol 1e-4. */
static void test_conv2d_matches_torch(void)
{
    for (size_t run = 0; run < N_CASES * N_ALGOS; run++) {
        const conv_case *c = &CASES[run / N_ALGOS];
        char fx[96], name[128];
        snprintf(fx, sizeof fx, "ops/%s", c->name);
        safetensors *st = fixture_open(fx);
        conv2d_shape s = conv2d_make_pad(meta_int(st, "B"), meta_int(st, "C_in"), meta_int(st, "H"),
                                         meta_int(st, "W"), meta_int(st, "C_out"), meta_int(st, "k"),
                                         meta_int(st, "stride"), meta_int(st, "pad_top"), meta_int(st, "pad_left"),
                                         meta_int(st, "pad_bottom"), meta_int(st, "pad_right"));
        s.algo = ALGOS[run % N_ALGOS];
        if (!algo_applies(s.algo, &s)) {
            safetensors_close(st);
            continue;
        }
        snprintf(name, sizeof name, "%s (%s)", c->name, ALGO_NAMES[run % N_ALGOS]);
        int has_bias = meta_int(st, "has_bias");
        CHECK(has_bias == c->bias, "%s: has_bias %d in fixture, %d in test table", c->name, has_bias, c->bias);
        size_t nx, nw, no, nb = 0;
        float *x = fixture_f32(st, "x", &nx);
        float *w = fixture_f32(st, "weight", &nw);
        float *b = has_bias ? fixture_f32(st, "bias", &nb) : NULL;
        float *cot = fixture_f32(st, "cot", &no);
        CHECK(nx == conv2d_x_numel(&s) && nw == conv2d_weight_numel(&s) && no == conv2d_out_numel(&s),
              "%s: fixture sizes do not match the shape", c->name);
        float *ws = alloc_ws(&s);
        float *out = alloc_zeros(no);
        conv2d_forward(out, x, w, b, &s, ws);
        check_fixture(st, name, "out", out, no, 1e-5, 1e-5);

        float *pre_x = alloc_normal(nx, 1.0f, 11), *pre_w = alloc_normal(nw, 1.0f, 12),
              *pre_b = alloc_normal(nb + 1, 1.0f, 13);
        float *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw), *db = malloc((nb + 1) * sizeof *db);
        memcpy(dx, pre_x, nx * sizeof *dx);
        memcpy(dw, pre_w, nw * sizeof *dw);
        memcpy(db, pre_b, (nb + 1) * sizeof *db);
        conv2d_backward(dx, dw, has_bias ? db : NULL, cot, x, w, &s, ws);
        /* Compare dgrad - pre with the fixture gradient (the subtraction is exact enough: |pre| ~ 1). */
        for (size_t i = 0; i < nx; i++)
            dx[i] -= pre_x[i];
        for (size_t i = 0; i < nw; i++)
            dw[i] -= pre_w[i];
        for (size_t i = 0; i < nb; i++)
            db[i] -= pre_b[i];
        check_fixture(st, name, "grad.x", dx, nx, 1e-4, 1e-4);
        check_fixture(st, name, "grad.weight", dw, nw, 1e-4, 1e-4);
        if (has_bias)
            check_fixture(st, name, "grad.bias", db, nb, 1e-4, 1e-4);
        free(x), free(w), free(b), free(cot), free(ws), free(out), free(pre_x), free(pre_w), free(pre_b);
        free(dx), free(dw), free(db);
        safetensors_close(st);
    }
}

/* ---- finite differences ---- */

typedef struct fd_ctx {
    conv2d_shape s;
    float *x, *w, *b, *out, *cot, *ws;
} fd_ctx;

static double conv_loss(void *p)
{
    fd_ctx *c = p;
    conv2d_forward(c->out, c->x, c->w, c->b, &c->s, c->ws);
    return dot_f64(c->out, c->cot, conv2d_out_numel(&c->s));
}

/* L = Σ out·cot is linear in each of x, weight, bias, so central differences
 * are exact up to float32 rounding of `out` (~sqrt(n_out)·6e-8·|out| in L,
 * divided by 2h = 2e-2: ~1e-4 at most here).  Tolerance 2e-3 of max|grad|;
 * a wrong index or a missing tap is off by O(max|grad|). */
/* Elements per tensor checked (a random subset when larger): every element of
 * the small cases, 600 of the 16-channel one (each probe is two forwards). */
#define FD_MAX_ELEMS 600
static void test_conv2d_finite_differences(void)
{
    for (size_t run = 0; run < N_CASES * N_ALGOS; run++) {
        size_t ci = run / N_ALGOS;
        const conv_case *cc = &CASES[ci];
        fd_ctx c = {.s = case_shape(cc)};
        c.s.algo = ALGOS[run % N_ALGOS];
        if (!algo_applies(c.s.algo, &c.s))
            continue;
        size_t nx = conv2d_x_numel(&c.s), nw = conv2d_weight_numel(&c.s), no = conv2d_out_numel(&c.s);
        c.x = alloc_normal(nx, 1.0f, 100 + ci);
        c.w = alloc_normal(nw, 0.3f, 200 + ci);
        c.b = cc->bias ? alloc_normal(c.s.C_out, 1.0f, 300 + ci) : NULL;
        c.cot = alloc_normal(no, 1.0f, 400 + ci);
        c.out = alloc_zeros(no);
        c.ws = alloc_ws(&c.s);
        float *dx = alloc_zeros(nx), *dw = alloc_zeros(nw), *db = alloc_zeros(c.s.C_out);
        conv2d_backward(dx, dw, c.b ? db : NULL, c.cot, c.x, c.w, &c.s, c.ws);
        char what[128];
        snprintf(what, sizeof what, "%s (%s) dx", cc->name, ALGO_NAMES[run % N_ALGOS]);
        fd_check(what, conv_loss, &c, c.x, dx, nx, 1e-2, 0.0, 2e-3, FD_MAX_ELEMS);
        snprintf(what, sizeof what, "%s (%s) dweight", cc->name, ALGO_NAMES[run % N_ALGOS]);
        fd_check(what, conv_loss, &c, c.w, dw, nw, 1e-2, 0.0, 2e-3, FD_MAX_ELEMS);
        if (c.b) {
            snprintf(what, sizeof what, "%s (%s) dbias", cc->name, ALGO_NAMES[run % N_ALGOS]);
            fd_check(what, conv_loss, &c, c.b, db, c.s.C_out, 1e-2, 0.0, 2e-3, 0);
        }
        free(c.x), free(c.w), free(c.b), free(c.cot), free(c.out), free(c.ws), free(dx), free(dw), free(db);
    }
}

/* ---- tuned path against the naive reference on bigger shapes ---- */

static double max_magnitude(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* scaled = 0: the tolerances below, element by element.  scaled = 1 (for
 * F(4×4,3×3)): every element within 1e-5 of its tensor's largest magnitude
 * (plus the same rtol), the bound test_diffusers_vae uses.  F(4×4,3×3)
 * amplifies the GEMMs' float32 rounding by its transform constants (up to 8):
 * at 128 channels its worst output error is ~2e-5 on outputs up to ~5,
 * above the element-wise atol 1e-5 that F(2×2,3×3) meets with 10× room;
 * measured in BENCHMARKS.md (session 6). */
static void compare_with_ref_scaled(const char *name, conv2d_shape s, int has_bias, int scaled)
{
    size_t nx = conv2d_x_numel(&s), nw = conv2d_weight_numel(&s), no = conv2d_out_numel(&s);
    float *x = alloc_normal(nx, 1.0f, 1), *w = alloc_normal(nw, 1.0f / sqrtf(s.C_in * s.kh * s.kw), 2);
    float *b = has_bias ? alloc_normal(s.C_out, 1.0f, 3) : NULL;
    float *cot = alloc_normal(no, 1.0f, 4), *ws = alloc_ws(&s);
    float *out = alloc_zeros(no), *out_ref = alloc_zeros(no);
    float *dx = alloc_zeros(nx), *dw = alloc_zeros(nw), *db = alloc_zeros(s.C_out);
    float *dx_ref = alloc_zeros(nx), *dw_ref = alloc_zeros(nw), *db_ref = alloc_zeros(s.C_out);
    conv2d_forward(out, x, w, b, &s, ws);
    conv2d_forward_ref(out_ref, x, w, b, &s);
    conv2d_backward(dx, dw, db, cot, x, w, &s, ws);
    conv2d_backward_ref(dx_ref, dw_ref, db_ref, cot, x, w, &s);
    char what[128];
    /* Forward/dx: float32 sums of K <= 576 unit-scale terms (error ~1e-6).
     * dweight/dbias: sums over B·H_out·W_out (up to ~2e4) products, values up
     * to ~150: relative 1e-5 plus atol 1e-3 covers sqrt(n)·6e-8·|term| sums. */
    double a_out = scaled ? 1e-5 * max_magnitude(out_ref, no) : 1e-5;
    double a_dx = scaled ? 1e-5 * max_magnitude(dx_ref, nx) : 1e-5;
    double a_dw = scaled ? 1e-5 * max_magnitude(dw_ref, nw) : 1e-3;
    snprintf(what, sizeof what, "%s out vs ref", name);
    check_close(what, out, out_ref, no, a_out, 1e-5);
    snprintf(what, sizeof what, "%s dx vs ref", name);
    check_close(what, dx, dx_ref, nx, a_dx, 1e-5);
    snprintf(what, sizeof what, "%s dweight vs ref", name);
    check_close(what, dw, dw_ref, nw, a_dw, 1e-5);
    snprintf(what, sizeof what, "%s dbias vs ref", name);
    check_close(what, db, db_ref, s.C_out, 1e-3, 1e-5);
    free(x), free(w), free(b), free(cot), free(ws), free(out), free(out_ref);
    free(dx), free(dw), free(db), free(dx_ref), free(dw_ref), free(db_ref);
}

static void compare_with_ref(const char *name, conv2d_shape s, int has_bias)
{
    compare_with_ref_scaled(name, s, has_bias, 0);
}

/* AUTO gives 4×4 kernels to oneDNN (tested on its own below): these cases
 * are about the im2col path's panels, so they ask for it. */
static conv2d_shape im2col(conv2d_shape s)
{
    s.algo = CONV2D_IM2COL;
    return s;
}

static void test_conv2d_panels_match_reference(void)
{
    /* Several panels per image; panel boundaries fall mid-row (63·63 outputs in 2 panels). */
    compare_with_ref("3x3 s2 down, 64ch 127x127", conv2d_make_pad(2, 64, 127, 127, 4, 3, 2, 0, 0, 1, 1), 1);
    compare_with_ref("3x3, 64ch 64x64", conv2d_make(1, 64, 64, 64, 3, 3, 1, 1), 1);
    /* Several whole images per panel, in more than one (uneven) group. */
    compare_with_ref("3x3, B=21 64ch 16x16", conv2d_make(21, 64, 16, 16, 5, 3, 1, 1), 1);
    compare_with_ref("4x4 s2 p1, B=7", im2col(conv2d_make(7, 8, 12, 12, 6, 4, 2, 1)), 0);
    compare_with_ref("patch 2, B=9", conv2d_make(9, 4, 16, 16, 12, 2, 2, 0), 1);
    compare_with_ref("1x1, B=3", conv2d_make(3, 16, 20, 20, 8, 1, 1, 0), 1);
    /* Strides over 2 take im2col's and col2im's general loops (outputs too
     * large for a tap table: kh·kw·Ho·Wo over 4096). */
    compare_with_ref("3x3 s3 p1, B=2 72x71", conv2d_make(2, 3, 72, 71, 5, 3, 3, 1), 1);
    compare_with_ref("patch 4 (stride 4), B=2 72x72", im2col(conv2d_make(2, 4, 72, 72, 6, 4, 4, 0)), 1);
    /* One output channel (the PatchGAN's last layer): dx without the column
     * buffer when the tap table fits (images grouped, or one 16×16 output
     * per panel), through gemm + col2im when it does not (20×20 output). */
    compare_with_ref("4x4 s1 -> 1 channel, B=6 3x3 out", im2col(conv2d_make(6, 32, 4, 4, 1, 4, 1, 1)), 1);
    compare_with_ref("4x4 s1 -> 1 channel, B=2 16x16 out", im2col(conv2d_make(2, 8, 17, 17, 1, 4, 1, 1)), 1);
    compare_with_ref("4x4 s2 -> 1 channel, B=2 20x20 out", im2col(conv2d_make(2, 4, 40, 40, 1, 4, 2, 1)), 0);
}

static conv2d_shape winograd(conv2d_shape s)
{
    s.algo = CONV2D_WINOGRAD;
    return s;
}

/* Winograd F(2x2,3x3) against the direct reference: odd sizes (half tiles at
 * the right/bottom edge), padding 0, 1, 2 and asymmetric, one channel, many
 * chunks of tile rows (a chunk ends mid-image), and the
 * VAE's channel counts. */
static void test_conv2d_winograd_matches_reference(void)
{
    compare_with_ref("winograd 3x3, odd 9x7, B=3", winograd(conv2d_make(3, 5, 9, 7, 6, 3, 1, 1)), 1);
    compare_with_ref("winograd 3x3 pad 0", winograd(conv2d_make(2, 4, 8, 11, 3, 3, 1, 0)), 1);
    compare_with_ref("winograd 3x3 pad 2", winograd(conv2d_make(2, 4, 6, 5, 3, 3, 1, 2)), 0);
    compare_with_ref("winograd 3x3 pad (0,1,2,1)", winograd(conv2d_make_pad(2, 3, 7, 8, 4, 3, 1, 0, 1, 2, 1)), 1);
    compare_with_ref("winograd 3x3 1 channel, 1x1 image", winograd(conv2d_make(2, 1, 1, 1, 2, 3, 1, 1)), 1);
    /* Small images gathered whole by register permutes (conv2d_winograd.c's
     * tile_gather): 8×8 and 4×4 maps; 6×8 has 3 tile rows of 4 tiles, so
     * images straddle the 16-row segments and some take the row-copy path. */
    compare_with_ref("winograd 3x3 8x8 whole images, 64ch B=6", winograd(conv2d_make(6, 64, 8, 8, 16, 3, 1, 1)), 1);
    compare_with_ref("winograd 3x3 4x4 whole images, B=5", winograd(conv2d_make(5, 32, 4, 4, 8, 3, 1, 1)), 1);
    compare_with_ref("winograd 3x3 6x8 images across segments, B=7", winograd(conv2d_make(7, 8, 6, 8, 4, 3, 1, 1)), 1);
    /* Segments of SEG = 64 tiles: several whole tile rows each with a partial
     * last one (5 tiles per row: 12 rows, 12, then 11), and rows wider than a
     * segment (130 tiles per row: 64 + 64 + 2). */
    compare_with_ref("winograd 3x3 10x10, B=7 (rows grouped)", winograd(conv2d_make(7, 3, 10, 10, 4, 3, 1, 1)), 1);
    compare_with_ref("winograd 3x3 3x260 (rows split)", winograd(conv2d_make(1, 5, 3, 260, 4, 3, 1, 1)), 1);
    /* 5·32 tile rows of 32 tiles; chunks of 80 rows: the boundary falls in image 2. */
    compare_with_ref("winograd 3x3 two chunks, 32ch 64x64 B=5", winograd(conv2d_make(5, 32, 64, 64, 4, 3, 1, 1)), 1);
    compare_with_ref("winograd 3x3 128->3 (VAE conv_out)", winograd(conv2d_make(2, 128, 16, 16, 3, 3, 1, 1)), 1);
    /* F(2×2,2×2) for 4×4 kernels: the PatchGAN's layers (stride 2 pad 1,
     * stride 1 pad 1), odd outputs (half tiles), asymmetric padding, one
     * channel, several chunks. */
    compare_with_ref("winograd 4x4 s2 p1 16x16", winograd(conv2d_make(3, 8, 16, 16, 12, 4, 2, 1)), 1);
    compare_with_ref("winograd 4x4 s1 p1 4x4 -> 3x3", winograd(conv2d_make(4, 16, 4, 4, 8, 4, 1, 1)), 1);
    compare_with_ref("winograd 4x4 s1 p1 -> 1 channel", winograd(conv2d_make(2, 8, 5, 5, 1, 4, 1, 1)), 1);
    compare_with_ref("winograd 4x4 s2 odd 11x9", winograd(conv2d_make(2, 5, 11, 9, 4, 4, 2, 1)), 0);
    compare_with_ref("winograd 4x4 s1 pad (0,1,2,1)", winograd(conv2d_make_pad(2, 3, 7, 8, 4, 4, 1, 0, 1, 2, 1)), 1);
    compare_with_ref("winograd 4x4 s2 1 channel 1x1 out", winograd(conv2d_make(2, 1, 2, 2, 2, 4, 2, 1)), 1);
    compare_with_ref("winograd 4x4 s2 two chunks, 128->16 64x64", winograd(conv2d_make(3, 128, 64, 64, 16, 4, 2, 1)), 1);
}

static void compare_f4(const char *name, conv2d_shape s, int has_bias)
{
    s.algo = CONV2D_WINOGRAD_F4;
    compare_with_ref_scaled(name, s, has_bias, 1);
}

/* Winograd F(4x4,3x3), the same kinds of cases: outputs that are not a
 * multiple of 4 (1 to 3 columns/rows of the last tiles cut), padding 0, 1,
 * 2 and asymmetric, one channel, segments grouping and splitting tile rows,
 * several chunks, and the small step's VAE shapes (8×8, 16×16 and 32×32 maps,
 * B = 32), with tolerances scaled to each tensor's largest magnitude (see
 * compare_with_ref_scaled). */
static void test_conv2d_winograd_f4_matches_reference(void)
{
    compare_f4("winograd_f4 3x3, odd 9x7, B=3", (conv2d_make(3, 5, 9, 7, 6, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 10x11 pad 0", (conv2d_make(2, 4, 10, 11, 3, 3, 1, 0)), 1);
    compare_f4("winograd_f4 3x3 pad 2", (conv2d_make(2, 4, 6, 5, 3, 3, 1, 2)), 0);
    compare_f4("winograd_f4 3x3 pad (0,1,2,1)", (conv2d_make_pad(2, 3, 7, 8, 4, 3, 1, 0, 1, 2, 1)), 1);
    compare_f4("winograd_f4 3x3 1 channel, 1x1 image", (conv2d_make(2, 1, 1, 1, 2, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 6x6 out 2x2 image", (conv2d_make(3, 2, 2, 2, 3, 3, 1, 2)), 1);
    /* 3 tiles per row: segments of 21 whole rows; 260 columns: 65 tiles, a
     * segment of 64 then one of 1. */
    compare_f4("winograd_f4 3x3 10x10, B=9 (rows grouped)", (conv2d_make(9, 3, 10, 10, 4, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 3x260 (rows split)", (conv2d_make(1, 5, 3, 260, 4, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 two chunks, 64ch 64x64 B=5", (conv2d_make(5, 64, 64, 64, 8, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 small step 64ch 32x32 B=32", (conv2d_make(32, 64, 32, 32, 64, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 small step 128ch 16x16 B=32", (conv2d_make(32, 128, 16, 16, 128, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 small step 128ch 8x8 B=32", (conv2d_make(32, 128, 8, 8, 128, 3, 1, 1)), 1);
    compare_f4("winograd_f4 3x3 128->3 (VAE conv_out)", (conv2d_make(2, 128, 16, 16, 3, 3, 1, 1)), 1);
}

/* Gradients add up (a second backward doubles them) and NULL gradients are
 * skipped without changing the others. */
static void test_conv2d_backward_accumulates_and_null(void)
{
    const conv2d_shape shapes[] = {
        conv2d_make(3, 4, 6, 6, 5, 3, 1, 1),            /* im2col, whole-image panels */
        conv2d_make(3, 16, 7, 6, 5, 3, 1, 1),           /* Winograd */
        conv2d_make(2, 4, 6, 6, 5, 1, 1, 0),            /* 1x1 direct gemm */
        conv2d_make_pad(2, 3, 8, 8, 2, 3, 2, 0, 0, 1, 1), /* im2col (strided 3x3) */
        conv2d_make(3, 6, 8, 8, 5, 4, 2, 1),              /* oneDNN (4x4) */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const conv2d_shape *s = &shapes[k];
        size_t nx = conv2d_x_numel(s), nw = conv2d_weight_numel(s), no = conv2d_out_numel(s);
        float *x = alloc_normal(nx, 1.0f, 5), *w = alloc_normal(nw, 0.3f, 6), *cot = alloc_normal(no, 1.0f, 7);
        float *ws = alloc_ws(s);
        float *dx = alloc_zeros(nx), *dw = alloc_zeros(nw), *db = alloc_zeros(s->C_out);
        float *dx2 = alloc_zeros(nx), *dw2 = alloc_zeros(nw), *db2 = alloc_zeros(s->C_out);
        conv2d_backward(dx, dw, db, cot, x, w, s, ws);
        conv2d_backward(dx2, dw2, db2, cot, x, w, s, ws);
        conv2d_backward(dx2, dw2, db2, cot, x, w, s, ws);
        for (size_t i = 0; i < nx; i++)
            dx[i] *= 2;
        for (size_t i = 0; i < nw; i++)
            dw[i] *= 2;
        for (int i = 0; i < s->C_out; i++)
            db[i] *= 2;
        /* 2·g vs g + g: equal up to one rounding. */
        check_close("twice-accumulated dx", dx2, dx, nx, 1e-6, 1e-6);
        check_close("twice-accumulated dweight", dw2, dw, nw, 1e-6, 1e-6);
        check_close("twice-accumulated dbias", db2, db, s->C_out, 1e-6, 1e-6);

        /* Only dx, then only dweight, then only dbias: each equals its part of the full call. */
        float *gx = alloc_zeros(nx), *gw = alloc_zeros(nw), *gb = alloc_zeros(s->C_out);
        conv2d_backward(gx, NULL, NULL, cot, x, w, s, ws);
        conv2d_backward(NULL, gw, NULL, cot, x, w, s, ws);
        conv2d_backward(NULL, NULL, gb, cot, x, w, s, ws);
        conv2d_backward(NULL, NULL, NULL, cot, x, w, s, ws);
        for (size_t i = 0; i < nx; i++)
            gx[i] *= 2;
        for (size_t i = 0; i < nw; i++)
            gw[i] *= 2;
        for (int i = 0; i < s->C_out; i++)
            gb[i] *= 2;
        check_close("dx alone", gx, dx, nx, 1e-6, 1e-6);
        check_close("dweight alone", gw, dw, nw, 1e-6, 1e-6);
        check_close("dbias alone", gb, db, s->C_out, 1e-6, 1e-6);
        free(x), free(w), free(cot), free(ws), free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2);
        free(gx), free(gw), free(gb);
    }
}

/* Shapes as in the models: output sizes and workspace bounds. */
static void test_conv2d_shapes(void)
{
    conv2d_shape down = conv2d_make_pad(1, 128, 256, 256, 128, 3, 2, 0, 0, 1, 1);
    CHECK(conv2d_out_h(&down) == 128 && conv2d_out_w(&down) == 128, "Downsample 256 -> %dx%d, want 128",
          conv2d_out_h(&down), conv2d_out_w(&down));
    conv2d_shape d8 = conv2d_make(1, 256, 32, 32, 512, 4, 1, 1);
    CHECK(conv2d_out_h(&d8) == 31, "PatchGAN main.8: 32 -> %d, want 31", conv2d_out_h(&d8));
    conv2d_shape d0 = conv2d_make(1, 3, 256, 256, 64, 4, 2, 1);
    CHECK(conv2d_out_h(&d0) == 128, "PatchGAN main.0: 256 -> %d, want 128", conv2d_out_h(&d0));
    conv2d_shape pe = conv2d_make(1, 3, 224, 224, 768, 14, 14, 0);
    CHECK(conv2d_out_h(&pe) == 16 && conv2d_out_w(&pe) == 16, "DINOv2 patch embed: 224 -> %d", conv2d_out_h(&pe));
    conv2d_shape one = conv2d_make(8, 512, 32, 32, 512, 1, 1, 0);
    CHECK(conv2d_workspace_floats(&one) == 0, "1x1 conv should need no workspace, got %zu",
          conv2d_workspace_floats(&one));
    /* The workspace stays bounded whatever the image size (a full-resolution
     * VAE conv would need 1152·65536 floats per image for whole-image im2col). */
    conv2d_shape big = conv2d_make(8, 128, 256, 256, 128, 3, 1, 1);
    conv2d_shape big_im2col = big;
    big_im2col.algo = CONV2D_IM2COL;
    CHECK(conv2d_workspace_floats(&big_im2col) <= ((size_t)4 << 20), "im2col workspace for a 256x256x128 conv: %zu floats",
          conv2d_workspace_floats(&big_im2col));
    /* Winograd: transformed weights and their gradient (2·16·128·128) plus
     * ~4M floats of tile chunks. */
    CHECK(conv2d_workspace_floats(&big) <= ((size_t)5 << 20), "Winograd workspace for a 256x256x128 conv: %zu floats",
          conv2d_workspace_floats(&big));
    /* F(4×4,3×3) (AUTO on 32×32): 2·36·512·512 transformed weights and
     * their gradient, plus the chunks. */
    conv2d_shape wide = conv2d_make(1, 512, 32, 32, 512, 3, 1, 1);
    CHECK(conv2d_workspace_floats(&wide) <= ((size_t)22 << 20), "Winograd workspace for a 32x32x512 conv: %zu floats",
          conv2d_workspace_floats(&wide));
    /* Wide layers' chunks hold about twice U (2·36·512·512 floats), and stay
     * that size however large the image: U, dU and the chunk buffers. */
    const size_t u512 = (size_t)36 * 512 * 512;
    conv2d_shape wide_big = conv2d_make(8, 512, 256, 256, 512, 3, 1, 1);
    CHECK(conv2d_workspace_floats(&wide_big) <= 2 * u512 + 2 * u512 + u512 / 4,
          "Winograd workspace for a 256x256x512 conv, batch 8: %zu floats", conv2d_workspace_floats(&wide_big));
    conv2d_shape wide_64 = conv2d_make(2, 512, 64, 64, 512, 3, 1, 1);
    CHECK(conv2d_workspace_floats(&wide_64) >= 2 * u512 + u512,
          "a 64x64x512 conv, batch 2, should take chunks of at least U (twice U, split equally): %zu floats",
          conv2d_workspace_floats(&wide_64));
}

/* oneDNN against the direct reference: the PatchGAN's layers (4×4 stride 2
 * and 1, down to one output channel), the VAE's downsampling (3×3 stride 2,
 * padding right and bottom only), odd sizes, one input channel, B = 1, 1×1
 * and 2×2 kernels, and rectangular kernels (Inception's 1×7). */
static void test_conv2d_dnnl_matches_reference(void)
{
    conv2d_shape r = conv2d_make(2, 6, 9, 11, 5, 1, 1, 0);
    r.kh = 1, r.kw = 7, r.pad_left = r.pad_right = 3;
    const struct { const char *name; conv2d_shape s; int bias; } cases[] = {
        {"dnnl 4x4 s2 p1 3->64 32x32, B=4", conv2d_make(4, 3, 32, 32, 64, 4, 2, 1), 1},
        {"dnnl 4x4 s2 p1 64->128 16x16, B=3", conv2d_make(3, 64, 16, 16, 128, 4, 2, 1), 0},
        {"dnnl 4x4 s1 p1 -> 3x3 out", conv2d_make(4, 32, 4, 4, 24, 4, 1, 1), 0},
        {"dnnl 4x4 s1 p1 -> 1 channel", conv2d_make(2, 40, 5, 5, 1, 4, 1, 1), 1},
        {"dnnl 4x4 s2 odd 11x9", conv2d_make(2, 5, 11, 9, 4, 4, 2, 1), 0},
        {"dnnl 3x3 s2 down (0,0,1,1) 64ch 33x33", conv2d_make_pad(2, 64, 33, 33, 16, 3, 2, 0, 0, 1, 1), 1},
        {"dnnl 3x3 s2 down (0,0,1,1) B=1 3ch 16x16", conv2d_make_pad(1, 3, 16, 16, 8, 3, 2, 0, 0, 1, 1), 1},
        {"dnnl 3x3 s1 pad (0,1,2,1)", conv2d_make_pad(2, 3, 7, 8, 4, 3, 1, 0, 1, 2, 1), 1},
        {"dnnl 3x3 1 channel, 1x1 image", conv2d_make(2, 1, 1, 1, 2, 3, 1, 1), 1},
        {"dnnl 1x1, B=3", conv2d_make(3, 16, 20, 20, 8, 1, 1, 0), 1},
        {"dnnl patch 2, B=9", conv2d_make(9, 4, 16, 16, 12, 2, 2, 0), 0},
        {"dnnl 1x7 pad (0,3)", r, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conv2d_shape s = cases[i].s;
        s.algo = CONV2D_DNNL;
        compare_with_ref(cases[i].name, s, cases[i].bias);
    }
}

/* Which algorithm AUTO takes (conv2d.c: wants_dnnl): oneDNN for 4×4 kernels,
 * im2col for strided 3×3 ones, F(2×2,3×3) for 3×3 stride-1 ones on small
 * maps (bit for bit the forced algorithm's results); and oneDNN is safe to call
 * from several threads at once (Inception runs one image per thread): each
 * thread's results equal a call on its own. */
static void run_conv(const conv2d_shape *s, const float *x, const float *w, const float *b, const float *dy, float *out,
                     float *dx, float *dw)
{
    float *ws = xmalloc((conv2d_workspace_floats(s) + 1) * sizeof(float));
    conv2d_forward(out, x, w, b, s, ws);
    memset(dx, 0, conv2d_x_numel(s) * sizeof(float));
    memset(dw, 0, conv2d_weight_numel(s) * sizeof(float));
    conv2d_backward(dx, dw, NULL, dy, x, w, s, ws);
    free(ws);
}

static void test_conv2d_dnnl_auto_policy_and_threads(void)
{
    const struct { conv2d_shape s; conv2d_algo same_as; const char *what; } cases[] = {
        {conv2d_make(4, 16, 16, 16, 32, 4, 2, 1), CONV2D_DNNL, "4x4 s2 (PatchGAN)"},
        {conv2d_make(4, 32, 4, 4, 16, 4, 1, 1), CONV2D_DNNL, "4x4 s1 (PatchGAN)"},
        /* the PatchGAN's wide layers take im2col + gemm on every host */
        {conv2d_make(2, 128, 4, 4, 128, 4, 1, 1), CONV2D_IM2COL, "4x4 s1 128->128 (wide PatchGAN)"},
        {conv2d_make_pad(2, 16, 16, 16, 16, 3, 2, 0, 0, 1, 1), CONV2D_IM2COL, "3x3 s2 (VAE downsample)"},
        {conv2d_make(4, 16, 8, 8, 16, 3, 1, 1), CONV2D_WINOGRAD, "3x3 s1 8x8"},
        {conv2d_make(2, 16, 12, 12, 8, 5, 1, 2), CONV2D_IM2COL, "5x5 s1"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        conv2d_shape a = cases[k].s, f = cases[k].s;
        f.algo = cases[k].same_as;
        size_t nx = conv2d_x_numel(&a), nw = conv2d_weight_numel(&a), no = conv2d_out_numel(&a);
        float *x = alloc_normal(nx, 1.0f, 21), *w = alloc_normal(nw, 0.2f, 22), *b = alloc_normal(a.C_out, 1.0f, 23),
              *dy = alloc_normal(no, 1.0f, 24);
        float *o1 = alloc_zeros(no), *o2 = alloc_zeros(no), *dx1 = alloc_zeros(nx), *dx2 = alloc_zeros(nx),
              *dw1 = alloc_zeros(nw), *dw2 = alloc_zeros(nw);
        run_conv(&a, x, w, b, dy, o1, dx1, dw1);
        run_conv(&f, x, w, b, dy, o2, dx2, dw2);
        CHECK(memcmp(o1, o2, no * sizeof(float)) == 0 && memcmp(dx1, dx2, nx * sizeof(float)) == 0 &&
                  memcmp(dw1, dw2, nw * sizeof(float)) == 0,
              "%s: AUTO differs from the algorithm it should take (%d)", cases[k].what, (int)cases[k].same_as);
        free(x), free(w), free(b), free(dy), free(o1), free(o2), free(dx1), free(dx2), free(dw1), free(dw2);
    }

    /* Six independent problems of two shapes, run by 3 threads at once. */
    enum { N = 6 };
    conv2d_shape shapes[2] = {conv2d_make(2, 16, 16, 16, 32, 4, 2, 1), conv2d_make(2, 8, 5, 5, 8, 4, 1, 1)};
    float *x[N], *w[N], *dy[N], *out[N], *dx[N], *dw[N], *out1[N], *dx1[N], *dw1[N];
    for (int i = 0; i < N; i++) {
        const conv2d_shape *s = &shapes[i % 2];
        size_t nx = conv2d_x_numel(s), nw = conv2d_weight_numel(s), no = conv2d_out_numel(s);
        x[i] = alloc_normal(nx, 1.0f, 30 + i), w[i] = alloc_normal(nw, 0.2f, 40 + i), dy[i] = alloc_normal(no, 1.0f, 50 + i);
        out[i] = alloc_zeros(no), dx[i] = alloc_zeros(nx), dw[i] = alloc_zeros(nw);
        out1[i] = alloc_zeros(no), dx1[i] = alloc_zeros(nx), dw1[i] = alloc_zeros(nw);
        run_conv(s, x[i], w[i], NULL, dy[i], out1[i], dx1[i], dw1[i]);
    }
#pragma omp parallel for num_threads(3) schedule(static, 1)
    for (int i = 0; i < N; i++)
        run_conv(&shapes[i % 2], x[i], w[i], NULL, dy[i], out[i], dx[i], dw[i]);
    for (int i = 0; i < N; i++) {
        const conv2d_shape *s = &shapes[i % 2];
        char what[64];
        snprintf(what, sizeof what, "threaded problem %d out", i);
        check_close(what, out[i], out1[i], conv2d_out_numel(s), 1e-6, 1e-6);
        snprintf(what, sizeof what, "threaded problem %d dx", i);
        check_close(what, dx[i], dx1[i], conv2d_x_numel(s), 1e-6, 1e-6);
        snprintf(what, sizeof what, "threaded problem %d dweight", i);
        check_close(what, dw[i], dw1[i], conv2d_weight_numel(s), 1e-5, 1e-5);
        free(x[i]), free(w[i]), free(dy[i]), free(out[i]), free(dx[i]), free(dw[i]), free(out1[i]), free(dx1[i]),
            free(dw1[i]);
    }
}

/* AUTO's tile choice (conv2d_winograd.h): F(4×4,3×3) from 16×16 outputs
 * in both directions, F(2×2,3×3) below and whenever CONV2D_WINOGRAD forces
 * it; and on 16×16 maps the F(4×4,3×3) results of an image do not depend on
 * how many images share the batch (MPI ranks split batches and must agree
 * with one process): image 0's output and input gradient at B = 1, 2, 5. */
static void test_conv2d_auto_tile_and_batch_independence(void)
{
    conv2d_shape s16 = conv2d_make(2, 8, 16, 16, 8, 3, 1, 1), s15 = conv2d_make(2, 8, 16, 15, 8, 3, 1, 1),
                 s8 = conv2d_make(2, 8, 8, 8, 8, 3, 1, 1), s32 = conv2d_make(2, 8, 34, 34, 8, 3, 1, 0);
    CHECK(conv2d_winograd_tile(&s16) == 4, "AUTO 16x16 takes tile %d", conv2d_winograd_tile(&s16));
    CHECK(conv2d_winograd_tile(&s32) == 4, "AUTO 34x34 pad 0 (32x32 out) takes tile %d", conv2d_winograd_tile(&s32));
    CHECK(conv2d_winograd_tile(&s15) == 2, "AUTO 16x15 takes tile %d", conv2d_winograd_tile(&s15));
    CHECK(conv2d_winograd_tile(&s8) == 2, "AUTO 8x8 takes tile %d", conv2d_winograd_tile(&s8));
    s16.algo = CONV2D_WINOGRAD;
    CHECK(conv2d_winograd_tile(&s16) == 2, "forced CONV2D_WINOGRAD 16x16 takes tile %d", conv2d_winograd_tile(&s16));

    const int C = 128, H = 16, batches[] = {1, 2, 5};
    size_t per = (size_t)C * H * H;
    float *out0 = xmalloc(per * sizeof(float)), *dx0 = xmalloc(per * sizeof(float));
    for (int bi = 0; bi < 3; bi++) {
        conv2d_shape s = conv2d_make(batches[bi], C, H, H, C, 3, 1, 1);
        size_t n = (size_t)batches[bi] * per, nw = conv2d_weight_numel(&s);
        float *x = xmalloc(n * sizeof(float)), *dy = xmalloc(n * sizeof(float)), *out = xmalloc(n * sizeof(float)),
              *dx = xcalloc(n, sizeof(float)), *w = xmalloc(nw * sizeof(float)),
              *ws = xmalloc((conv2d_workspace_floats(&s) + 1) * sizeof(float));
        rng r = rng_new(7, 0); /* image i gets the same values whatever the batch */
        for (size_t i = 0; i < n; i++)
            x[i] = rng_normal(&r), dy[i] = rng_normal(&r);
        rng rw = rng_new(8, 0);
        for (size_t i = 0; i < nw; i++)
            w[i] = 0.03f * rng_normal(&rw);
        conv2d_forward(out, x, w, NULL, &s, ws);
        conv2d_backward(dx, NULL, NULL, dy, x, w, &s, ws);
        if (bi == 0)
            memcpy(out0, out, per * sizeof(float)), memcpy(dx0, dx, per * sizeof(float));
        else {
            CHECK(memcmp(out, out0, per * sizeof(float)) == 0, "F(4x4,3x3) image 0 output differs at B=%d from B=1",
                  batches[bi]);
            CHECK(memcmp(dx, dx0, per * sizeof(float)) == 0, "F(4x4,3x3) image 0 dx differs at B=%d from B=1",
                  batches[bi]);
        }
        free(x), free(dy), free(out), free(dx), free(w), free(ws);
    }
    free(out0), free(dx0);
}

/* A workspace planned for the largest batch must serve every smaller one:
 * conv2d_workspace_floats never decreases with B.  Winograd's equal chunks
 * once made it decrease (8 images of 32×32 in two chunks of 64 tile rows, 5
 * in one of 80), and `repae reconstruct` with the CNN feature network died
 * on the short last batch. */
static void test_workspace_monotonic_in_batch(void)
{
    /* 256 and 512 channels: chunks sized from U (conv2d_winograd.c) */
    const int chans[] = {8, 24, 48, 96, 128, 256, 512}, sizes[] = {8, 16, 32, 64, 96};
    for (size_t ci = 0; ci < sizeof chans / sizeof chans[0]; ci++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (int k = 1; k <= 4; k += 2) {
                size_t prev = 0;
                for (int B = 1; B <= 32; B++) {
                    conv2d_shape s = conv2d_make(B, chans[ci], sizes[si], sizes[si], chans[ci], k, 1, k / 2);
                    size_t w = conv2d_workspace_floats(&s);
                    if (w < prev) {
                        CHECK(0, "workspace %zu floats at B=%d < %zu at B=%d (C %d, %dx%d, k %d)", w, B, prev, B - 1,
                              chans[ci], sizes[si], sizes[si], k);
                        return;
                    }
                    prev = w;
                }
            }
}

int main(void)
{
    RUN(test_conv2d_shapes);
    RUN(test_conv2d_matches_torch);
    RUN(test_conv2d_finite_differences);
    RUN(test_conv2d_panels_match_reference);
    RUN(test_conv2d_winograd_matches_reference);
    RUN(test_conv2d_winograd_f4_matches_reference);
    RUN(test_conv2d_dnnl_matches_reference);
    RUN(test_conv2d_dnnl_auto_policy_and_threads);
    RUN(test_conv2d_backward_accumulates_and_null);
    RUN(test_workspace_monotonic_in_batch);
    RUN(test_conv2d_auto_tile_and_batch_independence);
    return test_summary();
}
