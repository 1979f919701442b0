#include "models/lpips.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "io/weights_file.h"
#include "ops/act.h"
#include "ops/pool.h"

/* VGG16 "features": widths of the 13 convs, their torchvision indices, which
 * convs are preceded by a 2×2 max-pool, and which end a slice (a tap). */
static const int vgg_width[LPIPS_CONVS] = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};
static const int vgg_index[LPIPS_CONVS] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
static const int vgg_slice[LPIPS_CONVS] = {1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5};
static const int pool_before[LPIPS_CONVS] = {0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0};
static const int tap_after[LPIPS_CONVS] = {-1, 0, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4};
static const float lpips_shift[3] = {-0.030f, -0.088f, -0.188f};
static const float lpips_scale[3] = {0.458f, 0.448f, 0.450f};

void lpips_build(lpips *l, int width_div)
{
    if (width_div < 1 || 64 % width_div)
        die("lpips: width divisor %d must divide 64", width_div);
    memset(l, 0, sizeof *l);
    l->width_div = width_div;
    char name[PARAM_NAME_MAX];
    int cin = 3;
    for (int i = 0; i < LPIPS_CONVS; i++) {
        int c = vgg_width[i] / width_div;
        l->ch[i] = c;
        l->weight[i] = param_add_ex(&l->table, param_name(name, "net.slice%d.%d.weight", vgg_slice[i], vgg_index[i]),
                                    INIT_TORCH_DEFAULT, 0, PARAM_FROZEN, 4, (int64_t[]){c, cin, 3, 3});
        l->bias[i] = param_add_ex(&l->table, param_name(name, "net.slice%d.%d.bias", vgg_slice[i], vgg_index[i]),
                                  INIT_TORCH_BIAS, (float)(cin * 9), PARAM_FROZEN, 1, (int64_t[]){c});
        cin = c;
    }
    for (int i = 0, k = 0; i < LPIPS_CONVS; i++)
        if (tap_after[i] >= 0) {
            l->lin[k] = param_add_ex(&l->table, param_name(name, "lin%d.model.1.weight", k), INIT_CONSTANT,
                                     1.0f / l->ch[i], PARAM_FROZEN, 4, (int64_t[]){1, l->ch[i], 1, 1});
            k++;
        }
}

void lpips_free(lpips *l) { param_table_free(&l->table); }

void lpips_init_weights(const lpips *l, float *params, uint64_t seed) { param_init(&l->table, params, seed); }

void lpips_load(const lpips *l, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    param_load(&l->table, params, st, prefix, mode);
}

/* One table entry from the tensor `name` of st, its shape checked. */
static void load_as(float *params, const param_entry *e, const safetensors *st, const char *name,
                    const char *what)
{
    const st_tensor *t = safetensors_find(st, name);
    if (!t)
        die("'%s': no tensor '%s' (%s)", st->path, name, what);
    int ok = t->ndim == e->ndim;
    for (int d = 0; ok && d < e->ndim; d++)
        ok = t->shape[d] == e->shape[d];
    if (!ok) {
        char got[128], want[128];
        die("'%s': '%s' has shape %s, %s needs %s", st->path, name, st_shape_str(t->ndim, t->shape, got, sizeof got),
            what, st_shape_str(e->ndim, e->shape, want, sizeof want));
    }
    safetensors_read_f32(st, t, params + e->offset);
}

void lpips_load_files(const lpips *l, float *params, const char *path, const char *vgg_path)
{
    safetensors *st = weights_open(path);
    char name[PARAM_NAME_MAX];
    if (safetensors_find(st, "net.slice1.0.weight")) { /* a whole LPIPS state dict (ours, lpips', taming's) */
        if (vgg_path)
            die("'%s' already holds LPIPS's VGG16 (net.slice*); --lpips-vgg '%s' is not needed", path, vgg_path);
        lpips_load(l, params, st, "", PARAM_ALLOW_EXTRA);
        safetensors_close(st);
        return;
    }
    if (!safetensors_find(st, "lin0.model.1.weight"))
        die("'%s': not LPIPS weights (neither net.slice1.0.weight nor lin0.model.1.weight)", path);
    if (!vgg_path)
        die("'%s' holds only LPIPS's linear heads (lin0..lin4, the LPIPS vgg.pth): give torchvision's VGG16 "
            "(vgg16-397923af.pth) with --lpips-vgg, or one file with both (net.slice*, lin*)", path);
    /* The heads by their own names; the VGG16 from torchvision's
     * features.<i>.* (its classifier is not used): LPIPS's net.slice<k>.<i>
     * keeps torchvision's index i. */
    for (int k = 0; k < LPIPS_TAPS; k++) {
        param_name(name, "lin%d.model.1.weight", k);
        load_as(params, param_find(&l->table, name), st, name, "an LPIPS linear head");
    }
    safetensors_close(st);
    st = weights_open(vgg_path);
    if (!safetensors_find(st, "features.0.weight"))
        die("--lpips-vgg '%s': not torchvision's VGG16 (no features.0.weight)", vgg_path);
    char ours[PARAM_NAME_MAX];
    static const char *const kinds[2] = {"weight", "bias"};
    for (int i = 0; i < LPIPS_CONVS; i++)
        for (int w = 0; w < 2; w++) {
            snprintf(ours, sizeof ours, "net.slice%d.%d.%s", vgg_slice[i], vgg_index[i], kinds[w]);
            snprintf(name, sizeof name, "features.%d.%s", vgg_index[i], kinds[w]);
            load_as(params, param_find(&l->table, ours), st, name, "LPIPS's VGG16");
        }
    safetensors_close(st);
}

static void plan_shapes(const lpips *l, int B, int H, int W, conv2d_shape *shape)
{
    int cin = 3;
    for (int i = 0; i < LPIPS_CONVS; i++) {
        if (pool_before[i])
            H /= 2, W /= 2;
        if (H < 1 || W < 1)
            die("lpips: images are too small for VGG16's four 2×2 poolings (need at least 16×16)");
        shape[i] = conv2d_make(B, cin, H, W, l->ch[i], 3, 1, 1);
        cin = l->ch[i];
    }
}

size_t lpips_acts_bytes(const lpips *l, int B, int H, int W)
{
    conv2d_shape s[LPIPS_CONVS];
    plan_shapes(l, B, H, W, s);
    const size_t image = arena_round((size_t)B * 3 * H * W * sizeof(float));
    size_t taps = 0, b_pass = image, ws = 0, max_n = 0; /* b_pass: the scaled b and what its pass keeps */
    for (int i = 0; i < LPIPS_CONVS; i++) {
        size_t n_in = conv2d_x_numel(&s[i]), n_out = conv2d_out_numel(&s[i]);
        if (pool_before[i])
            b_pass += arena_round(n_in * sizeof(float));
        b_pass += arena_round(n_out * sizeof(float));
        if (tap_after[i] >= 0) /* na, nb, norm_b */
            taps += 2 * arena_round(n_out * sizeof(float)) + arena_round(n_out / l->ch[i] * sizeof(float));
        if (conv2d_workspace_floats(&s[i]) > ws)
            ws = conv2d_workspace_floats(&s[i]);
        if (n_in > max_n)
            max_n = n_in;
        if (n_out > max_n)
            max_n = n_out;
    }
    /* Held throughout: the workspace, two gradient buffers and the taps.  The
     * a pass (scaled a and two ping-pong buffers) is released before the b
     * pass starts, so only the larger of the two counts. */
    const size_t held = arena_round((ws ? ws : 1) * sizeof(float)) + 2 * arena_round(max_n * sizeof(float)) + taps;
    const size_t a_pass = image + 2 * arena_round(max_n * sizeof(float));
    return held + (a_pass > b_pass ? a_pass : b_pass);
}

/* (2x − 1 − shift[c]) / scale[c] for each of the 3 channels. */
static void scale_input(float *out, const float *x, int B, int HW)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++) {
            const float *src = x + ((size_t)b * 3 + c) * HW;
            float *dst = out + ((size_t)b * 3 + c) * HW;
            for (int i = 0; i < HW; i++)
                dst[i] = (2.0f * src[i] - 1.0f - lpips_shift[c]) / lpips_scale[c];
        }
}

/* The channel loops below walk blocks of LP_POS neighbouring positions at
 * once, so that every access is a contiguous row of a channel plane (one
 * position at a time strided by H·W through C planes, and ran scalar: 3 %
 * of a 256² training step).  Each position keeps its own sums, in the same
 * order over channels, so the results are the same bits. */
enum { LP_POS = 64 };

/* f / (||f||_c + 1e-10) per spatial position; norms saved when asked. */
static void normalize_channels(float *out, float *norms, const float *f, int B, int C, int HW)
{
    const int blocks = (HW + LP_POS - 1) / LP_POS;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int blk = 0; blk < blocks; blk++) {
            const int p0 = blk * LP_POS, len = HW - p0 < LP_POS ? HW - p0 : LP_POS;
            const float *src = f + (size_t)b * C * HW + p0;
            float *dst = out + (size_t)b * C * HW + p0;
            double ss[LP_POS] = {0};
            for (int c = 0; c < C; c++) {
                const float *row = src + (size_t)c * HW;
#pragma omp simd
                for (int j = 0; j < len; j++)
                    ss[j] += (double)row[j] * row[j];
            }
            float inv[LP_POS];
            for (int j = 0; j < len; j++) {
                float r = (float)sqrt(ss[j]);
                if (norms)
                    norms[(size_t)b * HW + p0 + j] = r;
                inv[j] = 1.0f / (r + 1e-10f);
            }
            for (int c = 0; c < C; c++) {
                const float *row = src + (size_t)c * HW;
                float *drow = dst + (size_t)c * HW;
#pragma omp simd
                for (int j = 0; j < len; j++)
                    drow[j] = row[j] * inv[j];
            }
        }
}

/* Runs VGG16 on `x` (already scaled).  With `s` the inputs and outputs of
 * every conv are kept (the b pass); without, two ping-pong buffers suffice.
 * `tap` receives the normalised features of each slice end. */
static void vgg_forward(const lpips *l, const float *params, const float *x, lpips_acts *s, bool keep, float **tap,
                        float **tap_norms, float *ping, float *pong, arena *ar)
{
    const float *in = x;
    for (int i = 0; i < LPIPS_CONVS; i++) {
        const conv2d_shape *sh = &s->shape[i];
        if (pool_before[i]) {
            float *pooled = keep ? arena_floats(ar, conv2d_x_numel(sh)) : (in == ping ? pong : ping);
            maxpool2x2_forward(pooled, in, sh->B, sh->C_in, sh->H * 2, sh->W * 2);
            in = pooled;
        }
        if (keep)
            s->conv_in[i] = (float *)in;
        size_t n = conv2d_out_numel(sh);
        float *out = keep ? arena_floats(ar, n) : (in == ping ? pong : ping);
        conv2d_forward(out, in, params + l->weight[i], params + l->bias[i], sh, s->workspace);
        relu_forward(out, out, n);
        if (keep)
            s->relu_out[i] = out;
        if (tap_after[i] >= 0) {
            int k = tap_after[i];
            normalize_channels(tap[k], tap_norms ? tap_norms[k] : NULL, out, sh->B, l->ch[i], sh->H * sh->W);
        }
        in = out;
    }
}

void lpips_forward(const lpips *l, const float *params, lpips_acts *s, float *dist, const float *a, const float *b,
                   int B, int H, int W, arena *ar)
{
    memset(s, 0, sizeof *s);
    s->B = B, s->H = H, s->W = W;
    plan_shapes(l, B, H, W, s->shape);
    size_t ws = 0, max_n = 0;
    for (int i = 0; i < LPIPS_CONVS; i++) {
        if (conv2d_workspace_floats(&s->shape[i]) > ws)
            ws = conv2d_workspace_floats(&s->shape[i]);
        if (conv2d_x_numel(&s->shape[i]) > max_n)
            max_n = conv2d_x_numel(&s->shape[i]);
        if (conv2d_out_numel(&s->shape[i]) > max_n)
            max_n = conv2d_out_numel(&s->shape[i]);
    }
    s->workspace = arena_floats(ar, ws ? ws : 1);
    s->grad_a = arena_floats(ar, max_n);
    s->grad_b = arena_floats(ar, max_n);
    for (int i = 0; i < LPIPS_CONVS; i++)
        if (tap_after[i] >= 0) {
            int k = tap_after[i];
            size_t n = conv2d_out_numel(&s->shape[i]);
            s->na[k] = arena_floats(ar, n);
            s->nb[k] = arena_floats(ar, n);
            s->norm_b[k] = arena_floats(ar, n / l->ch[i]);
        }
    /* a pass: nothing kept but its normalised taps. */
    size_t mark = arena_mark(ar);
    float *xa = arena_floats(ar, (size_t)B * 3 * H * W);
    float *ping = arena_floats(ar, max_n), *pong = arena_floats(ar, max_n);
    scale_input(xa, a, B, H * W);
    vgg_forward(l, params, xa, s, false, s->na, NULL, ping, pong, ar);
    arena_reset(ar, mark);
    /* b pass: keep everything for the backward. */
    float *xb = arena_floats(ar, (size_t)B * 3 * H * W);
    scale_input(xb, b, B, H * W);
    vgg_forward(l, params, xb, s, true, s->nb, s->norm_b, NULL, NULL, ar);

    for (int n = 0; n < B; n++)
        dist[n] = 0.0f;
    for (int i = 0; i < LPIPS_CONVS; i++) {
        if (tap_after[i] < 0)
            continue;
        int k = tap_after[i], C = l->ch[i], HW = s->shape[i].H * s->shape[i].W;
        const float *w = params + l->lin[k];
        for (int n = 0; n < B; n++) {
            double acc = 0;
            for (int c = 0; c < C; c++) {
                const float *pa = s->na[k] + ((size_t)n * C + c) * HW, *pb = s->nb[k] + ((size_t)n * C + c) * HW;
                double sc = 0;
                for (int p = 0; p < HW; p++) {
                    float d = pa[p] - pb[p];
                    sc += (double)d * d;
                }
                acc += w[c] * sc;
            }
            dist[n] += (float)(acc / HW);
        }
    }
}

void lpips_backward(const lpips *l, const float *params, const lpips_acts *s, const float *ddist, float *db)
{
    int B = s->B;
    float *dcur = s->grad_a, *dtmp = s->grad_b;
    /* Walk the convs backwards; dcur is the gradient of relu_out[i]. */
    for (int i = LPIPS_CONVS - 1; i >= 0; i--) {
        const conv2d_shape *sh = &s->shape[i];
        int C = l->ch[i], HW = sh->H * sh->W;
        size_t n = conv2d_out_numel(sh);
        if (i == LPIPS_CONVS - 1)
            memset(dcur, 0, n * sizeof(float));
        if (tap_after[i] >= 0) {
            int k = tap_after[i];
            const float *w = params + l->lin[k];
            /* d nb = −2 w_c (na − nb) ddist/HW, then through the normalisation:
             * df_c = (dn_c − n_c Σ_j dn_j n_j · r/(r+ε)) / (r + ε). */
            const int blocks = (HW + LP_POS - 1) / LP_POS;
#pragma omp parallel for collapse(2) schedule(static)
            for (int b = 0; b < B; b++)
                for (int blk = 0; blk < blocks; blk++) {
                    const int p0 = blk * LP_POS, len = HW - p0 < LP_POS ? HW - p0 : LP_POS;
                    const float g = ddist[b] / HW, *r = s->norm_b[k] + (size_t)b * HW + p0;
                    const float *na = s->na[k] + (size_t)b * C * HW + p0, *nb = s->nb[k] + (size_t)b * C * HW + p0;
                    float *d = dcur + (size_t)b * C * HW + p0;
                    double dot[LP_POS] = {0};
                    for (int c = 0; c < C; c++) {
                        const float *ra = na + (size_t)c * HW, *rb = nb + (size_t)c * HW, w2 = -2.0f * w[c];
#pragma omp simd
                        for (int j = 0; j < len; j++) {
                            float dn = w2 * (ra[j] - rb[j]) * g;
                            dot[j] += (double)dn * rb[j];
                        }
                    }
                    float inv[LP_POS], corr[LP_POS];
                    for (int j = 0; j < len; j++) {
                        inv[j] = 1.0f / (r[j] + 1e-10f);
                        corr[j] = (float)dot[j] * r[j] * inv[j];
                    }
                    for (int c = 0; c < C; c++) {
                        const float *ra = na + (size_t)c * HW, *rb = nb + (size_t)c * HW, w2 = -2.0f * w[c];
                        float *drow = d + (size_t)c * HW;
#pragma omp simd
                        for (int j = 0; j < len; j++) {
                            float dn = w2 * (ra[j] - rb[j]) * g;
                            drow[j] += (dn - rb[j] * corr[j]) * inv[j];
                        }
                    }
                }
        }
        /* Through the ReLU (its output decides the mask) and the conv. */
        float *dpre = dtmp;
        memset(dpre, 0, n * sizeof(float));
        relu_backward(dpre, dcur, s->relu_out[i], n);
        float *dinput;
        size_t n_in = conv2d_x_numel(sh);
        float *dx_scaled = NULL;
        if (i == 0) {
            dx_scaled = dcur; /* free now: reuse for d(scaled input) */
            memset(dx_scaled, 0, n_in * sizeof(float));
            dinput = dx_scaled;
        } else {
            dinput = dcur;
            memset(dinput, 0, n_in * sizeof(float));
        }
        conv2d_backward(dinput, NULL, NULL, dpre, s->conv_in[i], params + l->weight[i], sh, s->workspace);
        if (i > 0 && pool_before[i]) {
            /* dinput is w.r.t. the pooled tensor; route it to the pool's input. */
            const conv2d_shape *prev = &s->shape[i - 1];
            size_t n_prev = conv2d_out_numel(prev);
            memset(dtmp, 0, n_prev * sizeof(float));
            maxpool2x2_backward(dtmp, dinput, s->relu_out[i - 1], B, prev->C_out, prev->H, prev->W);
            float *t = dcur;
            dcur = dtmp;
            dtmp = t;
        }
        if (i == 0) {
            /* d x = d scaled · 2 / scale[c] */
            for (int b = 0; b < B; b++)
                for (int c = 0; c < 3; c++) {
                    const float *src = dx_scaled + ((size_t)b * 3 + c) * sh->H * sh->W;
                    float *dst = db + ((size_t)b * 3 + c) * sh->H * sh->W;
                    float f = 2.0f / lpips_scale[c];
                    for (int p = 0; p < sh->H * sh->W; p++)
                        dst[p] += src[p] * f;
                }
        }
    }
}
