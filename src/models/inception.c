#include "models/inception.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/act.h"
#include "ops/conv2d.h"
#include "ops/gemm.h"

/* Which tensor is mixed_6/conv:0, the sFID features.  The spec (§10.1) marks
 * it [unverified] whether the graph's `mixed_6/conv:0` is taken after the
 * ReLU or before it (conv + BN only).  Post-ReLU is the most plausible reading
 * (in this graph `<scope>/conv:0` names the unit's output, which the next unit
 * consumes): 1 = post-ReLU, 0 = pre-activation.  Keep in sync with
 * SPATIAL_POST_RELU in dev/ref/inception_ref.py; confirm against the .pb. */
#define INCEPTION_SPATIAL_POST_RELU 1

/* Below this many elements an OpenMP region costs more than it saves. */
#define INC_PAR_MIN 16384L

/* Conv indices inside each block, in registration (= state-dict) order. */
enum { A_1X1, A_5X5_1, A_5X5_2, A_DBL_1, A_DBL_2, A_DBL_3, A_POOL, A_N };
enum { B_3X3, B_DBL_1, B_DBL_2, B_DBL_3, B_N };
enum { C_1X1, C_7_1, C_7_2, C_7_3, C_DBL_1, C_DBL_2, C_DBL_3, C_DBL_4, C_DBL_5, C_POOL, C_N };
enum { D_3_1, D_3_2, D_7_1, D_7_2, D_7_3, D_7_4, D_N };
enum { E_1X1, E_3_1, E_3_2A, E_3_2B, E_DBL_1, E_DBL_2, E_DBL_3A, E_DBL_3B, E_POOL, E_N };
enum { STEM_1A, STEM_2A, STEM_2B, STEM_3B, STEM_4A, STEM_N };

/* The block whose 1×1 branch is mixed_6/conv (TF mixed_6 = Mixed_6d). */
#define SPATIAL_BLOCK 6

static int conv_out(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }
static int pool_out(int n) { return (n - 3) / 2 + 1; } /* 3×3, stride 2, no padding */

/* ------------------------------------------------------------------ build */

static int add_conv(inception *m, const char *prefix, int cin, int cout, int kh, int kw, int stride, int ph,
                    int pw, int H, int W)
{
    if (m->n_conv >= INCEPTION_CONVS)
        die("internal: inception has more than %d convs", INCEPTION_CONVS);
    inception_conv *c = &m->conv[m->n_conv];
    *c = (inception_conv){.c_in = cin, .c_out = cout, .kh = kh, .kw = kw, .stride = stride, .pad_h = ph,
                          .pad_w = pw, .H = H, .W = W};
    char name[PARAM_NAME_MAX];
    /* Random networks (benchmarks, tests) get He-normal convs and identity BNs,
     * so that activations stay O(1) through the 94 layers. */
    float he = sqrtf(2.0f / (float)(cin * kh * kw));
    c->weight = param_add_ex(&m->table, param_name(name, "%s.conv.weight", prefix), INIT_NORMAL, he, PARAM_FROZEN,
                             4, (int64_t[]){cout, cin, kh, kw});
    c->bn_weight = param_add_ex(&m->table, param_name(name, "%s.bn.weight", prefix), INIT_ONE, 0, PARAM_FROZEN, 1,
                                (int64_t[]){cout});
    c->bn_bias = param_add_ex(&m->table, param_name(name, "%s.bn.bias", prefix), INIT_ZERO, 0, PARAM_FROZEN, 1,
                              (int64_t[]){cout});
    c->bn_mean = param_add_ex(&m->table, param_name(name, "%s.bn.running_mean", prefix), INIT_ZERO, 0,
                              PARAM_BUFFER, 1, (int64_t[]){cout});
    c->bn_var = param_add_ex(&m->table, param_name(name, "%s.bn.running_var", prefix), INIT_ONE, 0, PARAM_BUFFER,
                             1, (int64_t[]){cout});
    return m->n_conv++;
}

typedef struct block_builder {
    inception *m;
    const char *name;
} block_builder;

static void bconv(block_builder *bb, const char *branch, int cin, int cout, int kh, int kw, int stride, int ph,
                  int pw, int H, int W)
{
    char prefix[PARAM_NAME_MAX];
    snprintf(prefix, sizeof prefix, "%s.%s", bb->name, branch);
    add_conv(bb->m, prefix, cin, cout, kh, kw, stride, ph, pw, H, W);
}

/* Adds one Mixed block (input c_in × H × W); returns its output channels. */
static int build_block(inception *m, int bi, const char *name, inception_block_kind kind, int cin, int H, int W,
                       int arg)
{
    const int d = m->width_div;
    block_builder bb = {m, name};
    inception_block *b = &m->block[bi];
    b->kind = kind;
    b->first_conv = m->n_conv;
    b->c_in = cin;
    b->H = H;
    b->W = W;
    switch (kind) {
    case INC_A: /* arg = pool_features */
        bconv(&bb, "branch1x1", cin, 64 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch5x5_1", cin, 48 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch5x5_2", 48 / d, 64 / d, 5, 5, 1, 2, 2, H, W);
        bconv(&bb, "branch3x3dbl_1", cin, 64 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch3x3dbl_2", 64 / d, 96 / d, 3, 3, 1, 1, 1, H, W);
        bconv(&bb, "branch3x3dbl_3", 96 / d, 96 / d, 3, 3, 1, 1, 1, H, W);
        bconv(&bb, "branch_pool", cin, arg / d, 1, 1, 1, 0, 0, H, W);
        b->c_out = (64 + 64 + 96 + arg) / d;
        break;
    case INC_B:
        bconv(&bb, "branch3x3", cin, 384 / d, 3, 3, 2, 0, 0, H, W);
        bconv(&bb, "branch3x3dbl_1", cin, 64 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch3x3dbl_2", 64 / d, 96 / d, 3, 3, 1, 1, 1, H, W);
        bconv(&bb, "branch3x3dbl_3", 96 / d, 96 / d, 3, 3, 2, 0, 0, H, W);
        b->c_out = 384 / d + 96 / d + cin;
        break;
    case INC_C: { /* arg = channels_7x7 */
        int c7 = arg / d;
        bconv(&bb, "branch1x1", cin, 192 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch7x7_1", cin, c7, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3, H, W);
        bconv(&bb, "branch7x7_3", c7, 192 / d, 7, 1, 1, 3, 0, H, W);
        bconv(&bb, "branch7x7dbl_1", cin, c7, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0, H, W);
        bconv(&bb, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3, H, W);
        bconv(&bb, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0, H, W);
        bconv(&bb, "branch7x7dbl_5", c7, 192 / d, 1, 7, 1, 0, 3, H, W);
        bconv(&bb, "branch_pool", cin, 192 / d, 1, 1, 1, 0, 0, H, W);
        b->c_out = 4 * (192 / d);
        break;
    }
    case INC_D:
        bconv(&bb, "branch3x3_1", cin, 192 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch3x3_2", 192 / d, 320 / d, 3, 3, 2, 0, 0, H, W);
        bconv(&bb, "branch7x7x3_1", cin, 192 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch7x7x3_2", 192 / d, 192 / d, 1, 7, 1, 0, 3, H, W);
        bconv(&bb, "branch7x7x3_3", 192 / d, 192 / d, 7, 1, 1, 3, 0, H, W);
        bconv(&bb, "branch7x7x3_4", 192 / d, 192 / d, 3, 3, 2, 0, 0, H, W);
        b->c_out = 320 / d + 192 / d + cin;
        break;
    case INC_E_AVG:
    case INC_E_MAX:
        bconv(&bb, "branch1x1", cin, 320 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch3x3_1", cin, 384 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch3x3_2a", 384 / d, 384 / d, 1, 3, 1, 0, 1, H, W);
        bconv(&bb, "branch3x3_2b", 384 / d, 384 / d, 3, 1, 1, 1, 0, H, W);
        bconv(&bb, "branch3x3dbl_1", cin, 448 / d, 1, 1, 1, 0, 0, H, W);
        bconv(&bb, "branch3x3dbl_2", 448 / d, 384 / d, 3, 3, 1, 1, 1, H, W);
        bconv(&bb, "branch3x3dbl_3a", 384 / d, 384 / d, 1, 3, 1, 0, 1, H, W);
        bconv(&bb, "branch3x3dbl_3b", 384 / d, 384 / d, 3, 1, 1, 1, 0, H, W);
        bconv(&bb, "branch_pool", cin, 192 / d, 1, 1, 1, 0, 0, H, W);
        b->c_out = (320 + 768 + 768 + 192) / d;
        break;
    }
    return b->c_out;
}

/* Spatial size after a block: B and D reduce with stride 2. */
static void block_out_hw(const inception_block *b, int *H, int *W)
{
    if (b->kind == INC_B || b->kind == INC_D) {
        *H = pool_out(b->H);
        *W = pool_out(b->W);
    } else {
        *H = b->H;
        *W = b->W;
    }
}

void inception_build(inception *m, int width_div)
{
    if (width_div != 1 && width_div != 2 && width_div != 4 && width_div != 8 && width_div != 16)
        die("inception: width divisor %d must be 1, 2, 4, 8 or 16 (the real network needs 1)", width_div);
    memset(m, 0, sizeof *m);
    const int d = width_div;
    m->width_div = d;
    int H = INCEPTION_SIZE, W = INCEPTION_SIZE;
    /* Stem: 299 -> 149 -> 147 -> 147 -> pool 73 -> 73 -> 71 -> pool 35. */
    add_conv(m, "Conv2d_1a_3x3", 3, 32 / d, 3, 3, 2, 0, 0, H, W);
    H = conv_out(H, 3, 2, 0), W = conv_out(W, 3, 2, 0);
    add_conv(m, "Conv2d_2a_3x3", 32 / d, 32 / d, 3, 3, 1, 0, 0, H, W);
    H = conv_out(H, 3, 1, 0), W = conv_out(W, 3, 1, 0);
    add_conv(m, "Conv2d_2b_3x3", 32 / d, 64 / d, 3, 3, 1, 1, 1, H, W);
    H = pool_out(H), W = pool_out(W);
    add_conv(m, "Conv2d_3b_1x1", 64 / d, 80 / d, 1, 1, 1, 0, 0, H, W);
    add_conv(m, "Conv2d_4a_3x3", 80 / d, 192 / d, 3, 3, 1, 0, 0, H, W);
    H = conv_out(H, 3, 1, 0), W = conv_out(W, 3, 1, 0);
    H = pool_out(H), W = pool_out(W);

    static const struct {
        const char *name;
        inception_block_kind kind;
        int arg;
    } blocks[INCEPTION_BLOCKS] = {
        {"Mixed_5b", INC_A, 32},  {"Mixed_5c", INC_A, 64},  {"Mixed_5d", INC_A, 64},  {"Mixed_6a", INC_B, 0},
        {"Mixed_6b", INC_C, 128}, {"Mixed_6c", INC_C, 160}, {"Mixed_6d", INC_C, 160}, {"Mixed_6e", INC_C, 192},
        {"Mixed_7a", INC_D, 0},   {"Mixed_7b", INC_E_AVG, 0}, {"Mixed_7c", INC_E_MAX, 0},
    };
    int c = 192 / d;
    for (int i = 0; i < INCEPTION_BLOCKS; i++) {
        c = build_block(m, i, blocks[i].name, blocks[i].kind, c, H, W, blocks[i].arg);
        block_out_hw(&m->block[i], &H, &W);
    }
    if (m->n_conv != INCEPTION_CONVS || c != 2048 / d || H != 8 || W != 8)
        die("internal: inception built %d convs, %d channels at %dx%d", m->n_conv, c, H, W);
    m->dim = c;
    m->fc = param_add_ex(&m->table, "fc.weight", INIT_NORMAL, 1.0f / sqrtf((float)c), PARAM_FROZEN, 2,
                         (int64_t[]){INCEPTION_CLASSES, c});
    /* The layout of the BN-folded buffer (inception_fold). */
    size_t n = 0;
    for (int i = 0; i < m->n_conv; i++) {
        inception_conv *cv = &m->conv[i];
        size_t K = (size_t)cv->c_in * cv->kh * cv->kw;
        cv->fweight = n;
        n += (K * cv->c_out + 15) / 16 * 16;
        cv->fbias = n;
        n += ((size_t)cv->c_out + 15) / 16 * 16;
    }
    m->folded_fc = n;
    m->folded_floats = n + (size_t)INCEPTION_CLASSES * m->dim;
}

void inception_free(inception *m)
{
    param_table_free(&m->table);
    memset(m, 0, sizeof *m);
}

float *inception_fold(const inception *m, const float *params)
{
    float *folded = xmalloc(m->folded_floats * sizeof(float));
    for (int i = 0; i < m->n_conv; i++) {
        const inception_conv *c = &m->conv[i];
        size_t K = (size_t)c->c_in * c->kh * c->kw;
        const float *w = params + c->weight, *g = params + c->bn_weight, *beta = params + c->bn_bias,
                    *mean = params + c->bn_mean, *var = params + c->bn_var;
        float *fw = folded + c->fweight, *fb = folded + c->fbias;
        for (int o = 0; o < c->c_out; o++) {
            double s = (double)g[o] / sqrt((double)var[o] + INCEPTION_BN_EPS);
            for (size_t k = 0; k < K; k++)
                fw[o * K + k] = (float)(w[o * K + k] * s);
            fb[o] = (float)(beta[o] - mean[o] * s);
        }
    }
    memcpy(folded + m->folded_fc, params + m->fc, (size_t)INCEPTION_CLASSES * m->dim * sizeof(float));
    return folded;
}

/* pytorch-fid's pt_inception-2015-12-05-6726825d.pth (a torchvision
 * Inception3 state dict) names every tensor as our table does and holds two
 * more kinds, which tools/convert_inception.py drops and so do we:
 * <unit>.bn.num_batches_tracked (a training counter) and fc.bias (the ADM
 * evaluator's logits are pool3 · Wᵀ with no bias, spec §10.1).  Anything
 * else is not this network: AuxLogits.* or a 1000-class fc are torchvision's
 * ImageNet Inception, which computes different features. */
static int pytorch_fid_extra(const char *name)
{
    size_t n = strlen(name);
    const char *nbt = ".bn.num_batches_tracked";
    return !strcmp(name, "fc.bias") || (n > strlen(nbt) && !strcmp(name + n - strlen(nbt), nbt));
}

void inception_load(const inception *m, float *params, const safetensors *st)
{
    const st_tensor *fc = safetensors_find(st, "fc.weight");
    if (fc && fc->ndim == 2 && fc->shape[0] != INCEPTION_CLASSES)
        die("'%s': fc.weight has %lld classes, the FID Inception has %d: these are not pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth weights (torchvision's ImageNet Inception-v3 has 1000 classes and "
            "computes different features)", st->path, (long long)fc->shape[0], INCEPTION_CLASSES);
    int extra = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        if (param_find(&m->table, name))
            continue;
        if (!pytorch_fid_extra(name))
            die("'%s': unexpected tensor '%s' for the FID Inception-v3 (pytorch-fid's state dict or "
                "tools/convert_inception.py's file)%s", st->path, name,
                !strncmp(name, "AuxLogits.", 10) ? ": AuxLogits belong to torchvision's ImageNet Inception-v3, "
                                                    "a different network" : "");
        extra++;
    }
    param_load(&m->table, params, st, "", extra ? PARAM_IGNORE_EXTRA : PARAM_STRICT); /* extras screened above */
}

/* ------------------------------------------------------------------ pieces */

void inception_resize_legacy(float *out, const uint8_t *in, int B, int H, int W, int C, int Ho, int Wo,
                             float shift, float scale)
{
    /* TF-1 ResizeBilinear, align_corners=False, half_pixel_centers=False:
     * scale = in/out in float32, src = dst·scale in float32, lower = floor(src),
     * upper = min(ceil(src), in−1) (= floor+1 clamped whenever lerp ≠ 0). */
    const float sy = (float)H / (float)Ho, sx = (float)W / (float)Wo;
    const long plane = (long)Ho * Wo;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * plane > INC_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++) {
            const float fy = (float)oy * sy, fy0 = floorf(fy), yl = fy - fy0;
            int y0 = (int)fy0, y1 = (int)ceilf(fy);
            if (y0 > H - 1)
                y0 = H - 1;
            if (y1 > H - 1)
                y1 = H - 1;
            const uint8_t *r0 = in + ((size_t)b * H + y0) * W * C, *r1 = in + ((size_t)b * H + y1) * W * C;
            float *o = out + (size_t)b * C * plane + (long)oy * Wo;
            for (int ox = 0; ox < Wo; ox++) {
                const float fx = (float)ox * sx, fx0 = floorf(fx), xl = fx - fx0;
                int x0 = (int)fx0, x1 = (int)ceilf(fx);
                if (x0 > W - 1)
                    x0 = W - 1;
                if (x1 > W - 1)
                    x1 = W - 1;
                for (int c = 0; c < C; c++) {
                    const float tl = r0[x0 * C + c], tr = r0[x1 * C + c], bl = r1[x0 * C + c], br = r1[x1 * C + c];
                    const float top = tl + (tr - tl) * xl, bottom = bl + (br - bl) * xl;
                    const float v = top + (bottom - top) * yl;
                    o[c * plane + ox] = (v - shift) * scale;
                }
            }
        }
}

void inception_avgpool3x3(float *out, const float *x, int B, int C, int H, int W)
{
    const long planes = (long)B * C, HW = (long)H * W;
#pragma omp parallel for schedule(static) if (planes * HW > INC_PAR_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * HW;
        float *op = out + p * HW;
        for (int h = 0; h < H; h++) {
            const int h0 = h > 0 ? h - 1 : 0, h1 = h < H - 1 ? h + 1 : H - 1;
            for (int w = 0; w < W; w++) {
                const int w0 = w > 0 ? w - 1 : 0, w1 = w < W - 1 ? w + 1 : W - 1;
                float s = 0.0f;
                for (int i = h0; i <= h1; i++)
                    for (int j = w0; j <= w1; j++)
                        s += xp[(long)i * W + j];
                /* count_include_pad=False: divide by the window's in-image size. */
                op[(long)h * W + w] = s / (float)((h1 - h0 + 1) * (w1 - w0 + 1));
            }
        }
    }
}

/* 3×3 max pool, stride 2, no padding: x [B, C, H, W] -> out image b, channel
 * c at out + b·out_bstride + c·Ho·Wo (so it can write into a concat slice). */
static void maxpool3x3s2(float *out, long out_bstride, const float *x, int B, int C, int H, int W)
{
    const int Ho = pool_out(H), Wo = pool_out(W);
    const long HW = (long)H * W, HWo = (long)Ho * Wo;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * HWo > INC_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *xp = x + ((long)b * C + c) * HW;
            float *op = out + b * out_bstride + c * HWo;
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const float *r = xp + (long)(2 * oh) * W + 2 * ow;
                    float mx = r[0];
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++)
                            if (r[(long)i * W + j] > mx)
                                mx = r[(long)i * W + j];
                    op[(long)oh * Wo + ow] = mx;
                }
        }
}

/* 3×3 max pool, stride 1, padding 1 (padding never wins, as -inf): Mixed_7c. */
static void maxpool3x3s1(float *out, const float *x, int B, int C, int H, int W)
{
    const long planes = (long)B * C, HW = (long)H * W;
#pragma omp parallel for schedule(static) if (planes * HW > INC_PAR_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * HW;
        float *op = out + p * HW;
        for (int h = 0; h < H; h++) {
            const int h0 = h > 0 ? h - 1 : 0, h1 = h < H - 1 ? h + 1 : H - 1;
            for (int w = 0; w < W; w++) {
                const int w0 = w > 0 ? w - 1 : 0, w1 = w < W - 1 ? w + 1 : W - 1;
                float mx = xp[(long)h0 * W + w0];
                for (int i = h0; i <= h1; i++)
                    for (int j = w0; j <= w1; j++)
                        if (xp[(long)i * W + j] > mx)
                            mx = xp[(long)i * W + j];
                op[(long)h * W + w] = mx;
            }
        }
    }
}

/* ------------------------------------------------------------------ forward */

typedef struct run {
    const inception *m;
    const float *folded; /* inception_fold's buffer */
    int B;
    float *ws;       /* conv2d workspace */
    float *t1, *t2;  /* branch temporaries inside a block */
} run;

static conv2d_shape shape_of(const inception_conv *c, int B)
{
    return (conv2d_shape){B, c->c_in, c->H, c->W, c->c_out, c->kh, c->kw, c->stride,
                          c->pad_h, c->pad_w, c->pad_h, c->pad_w};
}

/* out = conv(in) with the folded BN; then ReLU unless relu == 0. */
static void conv_bn(const run *r, int i, float *out, const float *in, int relu)
{
    const inception_conv *c = &r->m->conv[i];
    conv2d_shape s = shape_of(c, r->B);
    conv2d_forward(out, in, r->folded + c->fweight, r->folded + c->fbias, &s, r->ws);
    if (relu)
        relu_forward(out, out, conv2d_out_numel(&s));
}

/* Concatenation: src [B, C, HW] -> dst [B, Ctot, HW] at channels [*c0, *c0 + C). */
static void put(const run *r, float *dst, int Ctot, int *c0, const float *src, int C, long HW)
{
    const size_t n = (size_t)C * HW;
#pragma omp parallel for schedule(static) if ((long)(r->B * n) > INC_PAR_MIN)
    for (int b = 0; b < r->B; b++)
        memcpy(dst + ((size_t)b * Ctot + *c0) * HW, src + (size_t)b * n, n * sizeof(float));
    *c0 += C;
}

/* spatial[b][(h·17 + w)·7 + c] = f[b][c][h][w], c < 7 (H, W, C order). */
static void take_spatial(float *spatial, const float *f, int B, int C)
{
    const int HW = INCEPTION_SPATIAL_HW * INCEPTION_SPATIAL_HW;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++)
            for (int c = 0; c < INCEPTION_SPATIAL_C; c++)
                spatial[(size_t)b * INCEPTION_SPATIAL_DIM + (size_t)p * INCEPTION_SPATIAL_C + c] =
                    f[((size_t)b * C + c) * HW + p];
}

static void forward_block(const run *r, const inception_block *bk, float *out, const float *x, float *spatial)
{
    const inception_conv *cv = r->m->conv + bk->first_conv;
    const int k = bk->first_conv, B = r->B, C = bk->c_out;
    float *t1 = r->t1, *t2 = r->t2;
    int Ho, Wo, c0 = 0;
    block_out_hw(bk, &Ho, &Wo);
    const long HW = (long)bk->H * bk->W, HWo = (long)Ho * Wo;
    switch (bk->kind) {
    case INC_A:
        conv_bn(r, k + A_1X1, t1, x, 1);
        put(r, out, C, &c0, t1, cv[A_1X1].c_out, HW);
        conv_bn(r, k + A_5X5_1, t1, x, 1);
        conv_bn(r, k + A_5X5_2, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[A_5X5_2].c_out, HW);
        conv_bn(r, k + A_DBL_1, t1, x, 1);
        conv_bn(r, k + A_DBL_2, t2, t1, 1);
        conv_bn(r, k + A_DBL_3, t1, t2, 1);
        put(r, out, C, &c0, t1, cv[A_DBL_3].c_out, HW);
        inception_avgpool3x3(t1, x, B, bk->c_in, bk->H, bk->W);
        conv_bn(r, k + A_POOL, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[A_POOL].c_out, HW);
        break;
    case INC_B:
        conv_bn(r, k + B_3X3, t1, x, 1);
        put(r, out, C, &c0, t1, cv[B_3X3].c_out, HWo);
        conv_bn(r, k + B_DBL_1, t1, x, 1);
        conv_bn(r, k + B_DBL_2, t2, t1, 1);
        conv_bn(r, k + B_DBL_3, t1, t2, 1);
        put(r, out, C, &c0, t1, cv[B_DBL_3].c_out, HWo);
        maxpool3x3s2(out + c0 * HWo, C * HWo, x, B, bk->c_in, bk->H, bk->W);
        c0 += bk->c_in;
        break;
    case INC_C:
        conv_bn(r, k + C_1X1, t1, x, 0);
        if (spatial && !INCEPTION_SPATIAL_POST_RELU)
            take_spatial(spatial, t1, B, cv[C_1X1].c_out);
        relu_forward(t1, t1, (size_t)B * cv[C_1X1].c_out * HW);
        if (spatial && INCEPTION_SPATIAL_POST_RELU)
            take_spatial(spatial, t1, B, cv[C_1X1].c_out);
        put(r, out, C, &c0, t1, cv[C_1X1].c_out, HW);
        conv_bn(r, k + C_7_1, t1, x, 1);
        conv_bn(r, k + C_7_2, t2, t1, 1);
        conv_bn(r, k + C_7_3, t1, t2, 1);
        put(r, out, C, &c0, t1, cv[C_7_3].c_out, HW);
        conv_bn(r, k + C_DBL_1, t1, x, 1);
        conv_bn(r, k + C_DBL_2, t2, t1, 1);
        conv_bn(r, k + C_DBL_3, t1, t2, 1);
        conv_bn(r, k + C_DBL_4, t2, t1, 1);
        conv_bn(r, k + C_DBL_5, t1, t2, 1);
        put(r, out, C, &c0, t1, cv[C_DBL_5].c_out, HW);
        inception_avgpool3x3(t1, x, B, bk->c_in, bk->H, bk->W);
        conv_bn(r, k + C_POOL, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[C_POOL].c_out, HW);
        break;
    case INC_D:
        conv_bn(r, k + D_3_1, t1, x, 1);
        conv_bn(r, k + D_3_2, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[D_3_2].c_out, HWo);
        conv_bn(r, k + D_7_1, t1, x, 1);
        conv_bn(r, k + D_7_2, t2, t1, 1);
        conv_bn(r, k + D_7_3, t1, t2, 1);
        conv_bn(r, k + D_7_4, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[D_7_4].c_out, HWo);
        maxpool3x3s2(out + c0 * HWo, C * HWo, x, B, bk->c_in, bk->H, bk->W);
        c0 += bk->c_in;
        break;
    case INC_E_AVG:
    case INC_E_MAX:
        conv_bn(r, k + E_1X1, t1, x, 1);
        put(r, out, C, &c0, t1, cv[E_1X1].c_out, HW);
        conv_bn(r, k + E_3_1, t1, x, 1);
        conv_bn(r, k + E_3_2A, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[E_3_2A].c_out, HW);
        conv_bn(r, k + E_3_2B, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[E_3_2B].c_out, HW);
        conv_bn(r, k + E_DBL_1, t1, x, 1);
        conv_bn(r, k + E_DBL_2, t2, t1, 1);
        conv_bn(r, k + E_DBL_3A, t1, t2, 1);
        put(r, out, C, &c0, t1, cv[E_DBL_3A].c_out, HW);
        conv_bn(r, k + E_DBL_3B, t1, t2, 1);
        put(r, out, C, &c0, t1, cv[E_DBL_3B].c_out, HW);
        /* Mixed_7c max-pools here (the graph's quirk, pytorch-fid FIDInceptionE_2). */
        if (bk->kind == INC_E_MAX)
            maxpool3x3s1(t1, x, B, bk->c_in, bk->H, bk->W);
        else
            inception_avgpool3x3(t1, x, B, bk->c_in, bk->H, bk->W);
        conv_bn(r, k + E_POOL, t2, t1, 1);
        put(r, out, C, &c0, t2, cv[E_POOL].c_out, HW);
        break;
    }
    if (c0 != C)
        die("internal: inception block filled %d of %d channels", c0, C);
}

/* Per-image float counts: the largest activation (ping/pong buffers) and the
 * largest tensor inside a Mixed block (branch temporaries). */
static void plan_sizes(const inception *m, size_t *act, size_t *tmp)
{
    size_t a = (size_t)3 * INCEPTION_SIZE * INCEPTION_SIZE, t = 0;
    for (int i = 0; i < m->n_conv; i++) {
        const inception_conv *c = &m->conv[i];
        conv2d_shape s = shape_of(c, 1);
        size_t in = conv2d_x_numel(&s), out = conv2d_out_numel(&s);
        if (in > a)
            a = in;
        if (out > a)
            a = out;
        if (i >= STEM_N) {
            if (in > t)
                t = in;
            if (out > t)
                t = out;
        }
    }
    for (int i = 0; i < INCEPTION_BLOCKS; i++) {
        int H, W;
        block_out_hw(&m->block[i], &H, &W);
        size_t n = (size_t)m->block[i].c_out * H * W;
        if (n > a)
            a = n;
    }
    *act = a;
    *tmp = t;
}

/* conv2d workspace for a batch of exactly n. */
static size_t conv_ws_at(const inception *m, int n)
{
    size_t ws = 1;
    for (int i = 0; i < m->n_conv; i++) {
        conv2d_shape s = shape_of(&m->conv[i], n);
        size_t k = conv2d_workspace_floats(&s);
        if (k > ws)
            ws = k;
    }
    return ws;
}

/* The same covering every batch size up to n (conv2d's panel plan does not
 * grow monotonically with the batch, and a chunk may be short). */
static size_t conv_ws_floats(const inception *m, int n)
{
    size_t ws = 1;
    for (int b = 1; b <= n; b++) {
        size_t k = conv_ws_at(m, b);
        if (k > ws)
            ws = k;
    }
    return ws;
}

/* The buffers one chunk of n images runs in. */
typedef struct chunk_bufs {
    float *X, *Y, *t1, *t2, *ws;
} chunk_bufs;

/* Bytes of a chunk of n images whose conv workspace is ws floats. */
static size_t chunk_bytes(const inception *m, int n, size_t ws)
{
    size_t act, tmp;
    plan_sizes(m, &act, &tmp);
    return 2 * arena_round((size_t)n * act * sizeof(float)) + 2 * arena_round((size_t)n * tmp * sizeof(float)) +
           arena_round(ws * sizeof(float));
}

static chunk_bufs chunk_alloc(const inception *m, int n, arena *a)
{
    size_t act, tmp;
    plan_sizes(m, &act, &tmp);
    chunk_bufs c;
    c.X = arena_floats(a, (size_t)n * act);
    c.Y = arena_floats(a, (size_t)n * act);
    c.t1 = arena_floats(a, (size_t)n * tmp);
    c.t2 = arena_floats(a, (size_t)n * tmp);
    c.ws = arena_floats(a, conv_ws_floats(m, n));
    return c;
}

/* How a batch is split: `chunks` chunks of up to `per` images, one per thread.
 * Whole images per thread (single-threaded BLAS inside, no barriers inside the
 * network) scales better than threading each of the ~100 small gemms, and is
 * far less hurt by a busy machine.  Batches smaller than the thread count, and
 * calls from inside a parallel region, run as one chunk with threaded gemms. */
static void split_batch(int B, int threads, int *chunks, int *per)
{
    if (threads <= 1 || B < threads) {
        *chunks = 1;
        *per = B;
        return;
    }
    *per = (B + threads - 1) / threads;
    *chunks = (B + *per - 1) / *per;
}

static int thread_count(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

size_t inception_workspace_bytes(const inception *m, int B)
{
    if (B < 1)
        B = 1;
    /* ws_upto[n] = conv workspace covering every batch up to n (as chunk_alloc). */
    size_t *ws_upto = xmalloc(((size_t)B + 1) * sizeof(size_t));
    ws_upto[0] = 1;
    for (int n = 1; n <= B; n++) {
        size_t k = conv_ws_at(m, n);
        ws_upto[n] = k > ws_upto[n - 1] ? k : ws_upto[n - 1];
    }
    /* Cover every batch up to B, so that a short last batch fits the same
     * arena, and both splits (a call from inside a parallel region runs as one
     * chunk). */
    size_t best = chunk_bytes(m, B, ws_upto[B]);
    const int T = omp_get_max_threads();
    for (int b = 1; b <= B; b++) {
        int chunks, per;
        split_batch(b, T, &chunks, &per);
        size_t n = (size_t)chunks * chunk_bytes(m, per, ws_upto[per]);
        if (n > best)
            best = n;
    }
    free(ws_upto);
    return best;
}

/* The whole network on n images: pool3 [n, dim], spatial [n, 2023] or NULL. */
static void forward_chunk(const inception *m, const float *folded, const chunk_bufs *cb, const uint8_t *images, int n,
                          int H, int W, float *pool3, float *spatial)
{
    float *X = cb->X, *Y = cb->Y;
    run r = {m, folded, n, cb->ws, cb->t1, cb->t2};
    inception_resize_legacy(X, images, n, H, W, 3, INCEPTION_SIZE, INCEPTION_SIZE, 128.0f, 1.0f / 128.0f);
    const inception_conv *cv = m->conv;
    conv_bn(&r, STEM_1A, Y, X, 1);
    conv_bn(&r, STEM_2A, X, Y, 1);
    conv_bn(&r, STEM_2B, Y, X, 1);
    maxpool3x3s2(X, (long)cv[STEM_2B].c_out * pool_out(cv[STEM_2B].H) * pool_out(cv[STEM_2B].W), Y, n,
                 cv[STEM_2B].c_out, cv[STEM_2B].H, cv[STEM_2B].W);
    conv_bn(&r, STEM_3B, Y, X, 1);
    conv_bn(&r, STEM_4A, X, Y, 1);
    {
        conv2d_shape s = shape_of(&cv[STEM_4A], n);
        int h4 = conv2d_out_h(&s), w4 = conv2d_out_w(&s);
        maxpool3x3s2(Y, (long)s.C_out * pool_out(h4) * pool_out(w4), X, n, s.C_out, h4, w4);
    }
    float *in = Y, *out = X;
    for (int i = 0; i < INCEPTION_BLOCKS; i++) {
        forward_block(&r, &m->block[i], out, in, i == SPATIAL_BLOCK ? spatial : NULL);
        float *t = in;
        in = out;
        out = t;
    }
    /* Global average pool over the final 8×8. */
    int Hf, Wf;
    block_out_hw(&m->block[INCEPTION_BLOCKS - 1], &Hf, &Wf);
    const long HW = (long)Hf * Wf, P = (long)n * m->dim;
#pragma omp parallel for schedule(static) if (P * HW > INC_PAR_MIN)
    for (long p = 0; p < P; p++) {
        const float *src = in + p * HW;
        double s = 0.0;
        for (long i = 0; i < HW; i++)
            s += src[i];
        pool3[p] = (float)(s / (double)HW);
    }
}

void inception_features(const inception *m, const float *folded, const uint8_t *images, int B, int H, int W,
                        float *pool3, float *spatial, float *logits, arena *a)
{
    if (!folded)
        die("inception: weights not loaded (pass inception_fold's buffer, after inception_load or param_init)");
    if (B < 1 || H < 1 || W < 1)
        die("inception: bad batch %d of %dx%d images", B, H, W);
    const size_t mark = arena_mark(a);
    int chunks, per;
    split_batch(B, thread_count(), &chunks, &per);
    if (chunks == 1) {
        chunk_bufs cb = chunk_alloc(m, B, a);
        forward_chunk(m, folded, &cb, images, B, H, W, pool3, spatial);
    } else {
        chunk_bufs cb[chunks];
        for (int c = 0; c < chunks; c++)
            cb[c] = chunk_alloc(m, per, a);
        const size_t img = (size_t)H * W * 3;
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
        for (int c = 0; c < chunks; c++) {
            int b0 = c * per, n = B - b0 < per ? B - b0 : per;
            forward_chunk(m, folded, &cb[c], images + b0 * img, n, H, W, pool3 + (size_t)b0 * m->dim,
                          spatial ? spatial + (size_t)b0 * INCEPTION_SPATIAL_DIM : NULL);
        }
    }
    if (logits)
        gemm(false, true, B, INCEPTION_CLASSES, m->dim, 1.0f, pool3, m->dim, folded + m->folded_fc, m->dim, 0.0f,
             logits, INCEPTION_CLASSES);
    arena_reset(a, mark);
}
