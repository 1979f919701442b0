/* bench_ops — kernel timings next to PyTorch on the same shapes.
 *
 * usage: bench_ops [TORCH_RESULTS]
 * TORCH_RESULTS holds lines "name milliseconds" written by
 * dev/ref/bench_torch.py in the same `make bench` run; the table then shows
 * the ratio torch_ms / our_ms (above 1 = we are faster).  The kernels run
 * in one process, so no per-kernel peak RSS is given.
 * This is a benchmark, not a test: it never fails on speed.
 */
#include "core/omp_spin.h"
#include "bench_common.h"
#include "ops/act.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/gemm.h"
#include "ops/norm.h"

static float *randn(size_t n, uint64_t seed) { return bench_randn(n, seed); }

/* One table row; the note gives both sides' GFLOP/s when the FLOPs are known. */
static void report(const char *name, double ms, double gflop)
{
    char note[128] = "";
    if (gflop > 0) {
        double t = torch_ms_of(name);
        if (isnan(t))
            snprintf(note, sizeof note, "GFLOP/s ours %.1f", gflop / (ms / 1e3));
        else
            snprintf(note, sizeof note, "GFLOP/s ours %.1f, torch %.1f", gflop / (ms / 1e3), gflop / (t / 1e3));
    }
    bench_row(name, ms, -1, note);
}

/* ---- gemm ---- */
typedef struct { int M, N, K; float *A, *B, *C; } gemm_ctx;
static void run_gemm(void *p)
{
    gemm_ctx *c = p;
    gemm(false, true, c->M, c->N, c->K, 1.0f, c->A, c->K, c->B, c->K, 0.0f, c->C, c->N);
}

static void bench_gemm(int M, int N, int K)
{
    gemm_ctx c = {M, N, K, randn((size_t)M * K, 1), randn((size_t)N * K, 2), xmalloc((size_t)M * N * 4)};
    char name[64];
    snprintf(name, sizeof name, "gemm_%dx%dx%d", M, N, K);
    report(name, time_median(run_gemm, &c, bench_reps(9)), 2.0 * M * N * K / 1e9);
    free(c.A), free(c.B), free(c.C);
}

/* ---- conv2d 3x3 ---- */
typedef struct { conv2d_shape s; float *x, *w, *b, *out, *dout, *dx, *dw, *db, *ws; } conv_ctx;
static void run_conv(void *p)
{
    conv_ctx *c = p;
    conv2d_forward(c->out, c->x, c->w, c->b, &c->s, c->ws);
    conv2d_backward(c->dx, c->dw, c->db, c->dout, c->x, c->w, &c->s, c->ws);
}

/* algo: CONV2D_AUTO (the row torch is compared with: Winograd for these
 * shapes, F(4×4,3×3) from 16×16, F(2×2,3×3) below), CONV2D_IM2COL (an
 * extra row, name suffixed "_im2col", to show what the Winograd path gains),
 * CONV2D_WINOGRAD (suffixed "_f2x2": F(2×2,3×3) where AUTO takes F(4×4,3×3)),
 * CONV2D_WINOGRAD_F4 (suffixed "_f4x4": F(4×4,3×3) where AUTO does not) or
 * CONV2D_DNNL (suffixed "_dnnl": oneDNN, head to head with our kernels). */
static void bench_conv3x3(int B, int C, int H, conv2d_algo algo)
{
    conv_ctx c;
    c.s = conv2d_make(B, C, H, H, C, 3, 1, 1);
    c.s.algo = algo;
    size_t nx = (size_t)B * C * H * H, nw = (size_t)C * C * 9;
    c.x = randn(nx, 3), c.w = randn(nw, 4), c.b = randn(C, 5), c.dout = randn(nx, 6);
    c.out = xmalloc(nx * 4), c.dx = xcalloc(nx, 4), c.dw = xcalloc(nw, 4), c.db = xcalloc(C, 4);
    c.ws = xmalloc((conv2d_workspace_floats(&c.s) + 1) * sizeof(float));
    char name[64];
    snprintf(name, sizeof name, "conv3x3_fwd_bwd_B%d_C%d_%d%s", B, C, H,
             algo == CONV2D_IM2COL        ? "_im2col"
             : algo == CONV2D_WINOGRAD    ? "_f2x2"
             : algo == CONV2D_WINOGRAD_F4 ? "_f4x4"
             : algo == CONV2D_DNNL        ? "_dnnl"
                                          : "");
    /* Direct-convolution FLOPs (forward 1 gemm, backward 2 of the same size),
     * whatever the algorithm does: GFLOP/s are comparable across rows. */
    report(name, time_median(run_conv, &c, bench_reps(5)), 3 * 2.0 * B * C * C * 9.0 * H * H / 1e9);
    free(c.x), free(c.w), free(c.b), free(c.dout), free(c.out), free(c.dx), free(c.dw), free(c.db), free(c.ws);
}

/* The PatchGAN discriminator's convolutions (4×4, pad 1; stride 2 down to
 * 4×4 maps, then stride 1): the small REPA-E step's ndf 64, n_layers 3 at
 * batch 32 on 32×32 images.  Forward + backward (dx, dweight, dbias). */
/* algo: CONV2D_AUTO (the row torch is compared with: oneDNN since session
 * 8), CONV2D_IM2COL (suffixed "_im2col": our im2col + gemm, AUTO's choice
 * before) or CONV2D_WINOGRAD (suffixed "_winograd": F(2×2,2×2), which AUTO
 * does not pick while it is slower). */
static void bench_conv4x4(int B, int C_in, int C_out, int H, int stride, conv2d_algo algo)
{
    conv_ctx c;
    c.s = conv2d_make(B, C_in, H, H, C_out, 4, stride, 1);
    c.s.algo = algo;
    size_t nx = conv2d_x_numel(&c.s), nw = conv2d_weight_numel(&c.s), no = conv2d_out_numel(&c.s);
    c.x = randn(nx, 13), c.w = randn(nw, 14), c.b = randn(C_out, 15), c.dout = randn(no, 16);
    c.out = xmalloc(no * 4), c.dx = xcalloc(nx, 4), c.dw = xcalloc(nw, 4), c.db = xcalloc(C_out, 4);
    c.ws = xmalloc((conv2d_workspace_floats(&c.s) + 1) * sizeof(float));
    char name[64];
    snprintf(name, sizeof name, "conv4x4s%d_fwd_bwd_B%d_C%dto%d_%d%s", stride, B, C_in, C_out, H,
             algo == CONV2D_WINOGRAD ? "_winograd" : algo == CONV2D_IM2COL ? "_im2col" : "");
    report(name, time_median(run_conv, &c, bench_reps(7)), 3 * conv2d_flops(&c.s) / 1e9);
    free(c.x), free(c.w), free(c.b), free(c.dout), free(c.out), free(c.dx), free(c.dw), free(c.db), free(c.ws);
}

/* ---- GroupNorm + SiLU ---- */
typedef struct { int B, C, HW; float *x, *w, *b, *h, *y, *mean, *rstd, *dy, *dh, *dx, *dw, *db; } gn_ctx;
static void run_gn(void *p)
{
    gn_ctx *c = p;
    size_t n = (size_t)c->B * c->C * c->HW;
    group_norm_forward(c->h, c->mean, c->rstd, c->x, c->w, c->b, c->B, c->C, c->HW, 32, 1e-6f);
    silu_forward(c->y, c->h, n);
    memset(c->dh, 0, n * 4);
    silu_backward(c->dh, c->dy, c->h, n);
    group_norm_backward(c->dx, c->dw, c->db, c->dh, c->x, c->mean, c->rstd, c->w, c->B, c->C, c->HW, 32);
}

static void bench_groupnorm_silu(int B, int C, int H)
{
    size_t n = (size_t)B * C * H * H;
    gn_ctx c = {B, C, H * H, randn(n, 7), randn(C, 8), randn(C, 9), xmalloc(n * 4), xmalloc(n * 4),
                xmalloc(B * 32 * 4), xmalloc(B * 32 * 4), randn(n, 10), xmalloc(n * 4), xcalloc(n, 4),
                xcalloc(C, 4), xcalloc(C, 4)};
    char name[64];
    snprintf(name, sizeof name, "groupnorm_silu_fwd_bwd_B%d_C%d_%d", B, C, H);
    report(name, time_median(run_gn, &c, bench_reps(9)), 0);
    free(c.x), free(c.w), free(c.b), free(c.h), free(c.y), free(c.mean), free(c.rstd), free(c.dy), free(c.dh),
        free(c.dx), free(c.dw), free(c.db);
}

/* ---- attention ---- */
typedef struct { int B, T, NH, HD; float *qkv, *out, *probs, *dout, *dqkv, *ws; } attn_ctx;
static void run_attn(void *p)
{
    attn_ctx *c = p;
    int D = c->NH * c->HD;
    attention_forward(c->out, c->probs, c->qkv, c->qkv + D, c->qkv + 2 * D, 3 * D, c->B, c->T, c->NH, c->HD, c->ws);
    attention_backward(c->dqkv, c->dqkv + D, c->dqkv + 2 * D, true, 3 * D, c->dout, c->probs, c->qkv, c->qkv + D,
                       c->qkv + 2 * D, 3 * D, c->B, c->T, c->NH, c->HD, c->ws);
}

static void bench_attention(int B, int T, int NH, int HD)
{
    int D = NH * HD;
    size_t nqkv = (size_t)B * T * 3 * D, no = (size_t)B * T * D;
    attn_ctx c = {B, T, NH, HD, randn(nqkv, 11), xmalloc(no * 4), xmalloc((size_t)B * NH * T * T * 4),
                  randn(no, 12), xcalloc(nqkv, 4), xmalloc(attention_workspace_floats(B, T, NH, HD) * 4 + 64)};
    char name[64];
    snprintf(name, sizeof name, "attention_fwd_bwd_B%d_T%d_D%d_H%d", B, T, D, NH);
    /* fwd: QK^T and PV; bwd: dP, dV, dQ, dK: 6 gemms of 2*T*T*HD per head */
    report(name, time_median(run_attn, &c, bench_reps(7)), 6 * 2.0 * B * NH * (double)T * T * HD / 1e9);
    free(c.qkv), free(c.out), free(c.probs), free(c.dout), free(c.dqkv), free(c.ws);
}

int main(int argc, char **argv)
{
    omp_spin_default(argv);
    if (argc > 1)
        load_torch(argv[1]);
    fprintf(stderr, "bench_ops: repae kernels, %d OpenMP threads%s\n", omp_get_max_threads(),
            argc > 1 ? "" : " (no torch results)");
    bench_gemm(1024, 1024, 1024);
    bench_gemm(1024, 3072, 768);
    bench_conv3x3(4, 128, 64, CONV2D_AUTO);
    bench_conv3x3(4, 128, 64, CONV2D_IM2COL);
    bench_conv3x3(4, 128, 64, CONV2D_WINOGRAD);
    bench_conv3x3(4, 128, 64, CONV2D_DNNL);
    /* The small REPA-E step's VAE: 32x32 and 8x8 maps at batch 32. */
    bench_conv3x3(32, 64, 32, CONV2D_AUTO);
    bench_conv3x3(32, 64, 32, CONV2D_IM2COL);
    bench_conv3x3(32, 64, 32, CONV2D_WINOGRAD);
    bench_conv3x3(32, 64, 32, CONV2D_DNNL);
    bench_conv3x3(32, 128, 8, CONV2D_AUTO);
    bench_conv3x3(32, 128, 8, CONV2D_IM2COL);
    bench_conv3x3(32, 128, 8, CONV2D_WINOGRAD_F4);
    bench_conv3x3(32, 128, 8, CONV2D_DNNL);
    bench_conv4x4(32, 3, 64, 32, 2, CONV2D_AUTO);
    bench_conv4x4(32, 3, 64, 32, 2, CONV2D_IM2COL);
    bench_conv4x4(32, 64, 128, 16, 2, CONV2D_AUTO);
    bench_conv4x4(32, 64, 128, 16, 2, CONV2D_IM2COL);
    bench_conv4x4(32, 64, 128, 16, 2, CONV2D_WINOGRAD);
    bench_conv4x4(32, 128, 256, 8, 2, CONV2D_AUTO);
    bench_conv4x4(32, 128, 256, 8, 2, CONV2D_IM2COL);
    bench_conv4x4(32, 128, 256, 8, 2, CONV2D_WINOGRAD);
    bench_conv4x4(32, 256, 512, 4, 1, CONV2D_AUTO);
    bench_conv4x4(32, 256, 512, 4, 1, CONV2D_IM2COL);
    bench_conv4x4(32, 256, 512, 4, 1, CONV2D_WINOGRAD);
    bench_conv4x4(32, 512, 1, 3, 1, CONV2D_AUTO);
    bench_conv4x4(32, 512, 1, 3, 1, CONV2D_IM2COL);
    bench_groupnorm_silu(4, 128, 64);
    bench_attention(4, 256, 12, 64);
    return 0;
}
