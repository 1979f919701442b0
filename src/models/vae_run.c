/* vae_run.c — AutoencoderKL forward and backward passes and their memory plan.
 *
 * Every pass is written once and runs in two modes: for real, taking memory
 * from an arena, or as a planning run that only counts the bytes it would
 * take (vae_plan_memory), so the plan cannot drift from the passes.  Each
 * layer function therefore takes all of its memory first and returns before
 * touching any data in a planning run.
 *
 * Memory discipline (a stack): in a saving forward each layer first takes the
 * activations it keeps (its output, conv1 output, statistics, ...), then
 * scratch on top, which it releases before returning.  The backward takes two
 * ping-pong gradient buffers above the saved activations and, per layer, a
 * few scratch slots for recomputed GroupNorm/SiLU outputs and their
 * gradients, released after the layer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vae.h"
#include "ops/act.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/gemm.h"
#include "ops/norm.h"
#include "ops/resample.h"

/* ------------------------------------------------------------------ memory */

typedef struct vae_mem {
    arena *a;    /* NULL: planning run */
    size_t used; /* planning run: bytes in use */
    size_t peak; /* planning run: largest `used` */
    vae_layer_saved *plan_records[2]; /* planning run: encoder/decoder records (heap, freed by vae_plan_memory) */
} vae_mem;

static size_t mem_mark(const vae_mem *m) { return m->a ? arena_mark(m->a) : m->used; }

static void mem_reset(vae_mem *m, size_t mark)
{
    if (m->a)
        arena_reset(m->a, mark);
    else
        m->used = mark;
}

static float *mem_floats(vae_mem *m, size_t n)
{
    if (m->a)
        return arena_floats(m->a, n);
    m->used += arena_round(n * sizeof(float));
    if (m->used > m->peak)
        m->peak = m->used;
    return NULL;
}

/* The per-layer records of a training forward (which: 0 encoder, 1 decoder),
 * zeroed, from the arena like the activations they point to.  A planning run
 * counts their bytes but keeps them on the heap: the planning passes read
 * the sizes recorded in them. */
static vae_layer_saved *mem_records(vae_mem *m, int n, int which)
{
    size_t bytes = (size_t)n * sizeof(vae_layer_saved);
    if (m->a) {
        vae_layer_saved *s = arena_alloc(m->a, bytes);
        memset(s, 0, bytes);
        return s;
    }
    m->used += arena_round(bytes);
    if (m->used > m->peak)
        m->peak = m->used;
    free(m->plan_records[which]);
    return m->plan_records[which] = xcalloc((size_t)n, sizeof(vae_layer_saved));
}

typedef struct vae_run {
    const float *P; /* parameters */
    float *G;       /* parameter gradients, or NULL (frozen) */
    vae_mem *mem;
    int plan;       /* planning run: allocate, compute nothing */
    int save;       /* forward keeps activations for a backward */
    int B, groups;
} vae_run;

#define PW(r, o) ((r)->P + (o))
#define GW(r, o) ((r)->G ? (r)->G + (o) : NULL)

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static void zero(float *x, size_t n)
{
    if (x)
        memset(x, 0, n * sizeof(float));
}

static void add_into(float *y, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= (1u << 15))
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

static conv2d_shape conv_shape(const vae_conv *c, int B, int H, int W)
{
    return conv2d_make(B, c->c_in, H, W, c->c_out, c->k, 1, c->k / 2);
}

/* Downsample: zero-pad right and bottom by one, 3×3 stride 2, no other padding. */
static conv2d_shape down_shape(const vae_conv *c, int B, int H, int W)
{
    return conv2d_make_pad(B, c->c_in, H, W, c->c_out, 3, 2, 0, 0, 1, 1);
}

static void layer_out_size(const vae_layer *L, int H, int W, int *Ho, int *Wo)
{
    *Ho = H;
    *Wo = W;
    if (L->kind == VAE_LAYER_DOWN) {
        conv2d_shape s = down_shape(&L->conv, 1, H, W);
        *Ho = conv2d_out_h(&s);
        *Wo = conv2d_out_w(&s);
    } else if (L->kind == VAE_LAYER_UP) {
        *Ho = 2 * H;
        *Wo = 2 * W;
    }
}

/* Largest B·C·H·W over the outputs of a layer list (the ping-pong size). */
static size_t max_act(const vae_layer *ly, int n, int B, int H, int W)
{
    size_t m = 0;
    for (int i = 0; i < n; i++) {
        int Ho, Wo;
        layer_out_size(&ly[i], H, W, &Ho, &Wo);
        m = zmax(m, zmax((size_t)B * ly[i].c_in * H * W, (size_t)B * ly[i].c_out * Ho * Wo));
        H = Ho;
        W = Wo;
    }
    return m;
}

/* bias [C] added to every position of x [B, C, L] */
static void add_bias_cl(float *x, const float *bias, int B, int C, size_t L)
{
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * C * L >= (1u << 15))
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float *p = x + ((size_t)b * C + c) * L, v = bias[c];
            for (size_t l = 0; l < L; l++)
                p[l] += v;
        }
}

/* db[c] += Σ_{b,l} d[b, c, l] */
static void bias_grad_cl(float *db, const float *d, int B, int C, size_t L)
{
#pragma omp parallel for schedule(static) if ((size_t)B * C * L >= (1u << 15))
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int b = 0; b < B; b++) {
            const float *p = d + ((size_t)b * C + c) * L;
            for (size_t l = 0; l < L; l++)
                s += p[l];
        }
        db[c] += (float)s;
    }
}

/* ------------------------------------------------------------------ ResnetBlock */

static void vae_resblock_forward(vae_run *r, const vae_resblock *rb, vae_resblock_saved *s, float *out,
                                 const float *x, int H, int W)
{
    const int B = r->B, G = r->groups;
    const size_t HW = (size_t)H * W, n_in = (size_t)B * rb->c_in * HW, n_out = (size_t)B * rb->c_out * HW;
    conv2d_shape s1 = conv_shape(&rb->conv1, B, H, W), s2 = conv_shape(&rb->conv2, B, H, W),
                 sn = conv_shape(&rb->nin_shortcut, B, H, W);
    float *h1 = NULL, *m1 = NULL, *r1 = NULL, *m2 = NULL, *r2 = NULL;
    if (r->save) {
        h1 = s->h1 = mem_floats(r->mem, n_out);
        m1 = s->mean1 = mem_floats(r->mem, (size_t)B * G);
        r1 = s->rstd1 = mem_floats(r->mem, (size_t)B * G);
        m2 = s->mean2 = mem_floats(r->mem, (size_t)B * G);
        r2 = s->rstd2 = mem_floats(r->mem, (size_t)B * G);
    }
    size_t mark = mem_mark(r->mem);
    if (!r->save)
        h1 = mem_floats(r->mem, n_out);
    float *a = mem_floats(r->mem, zmax(n_in, n_out));
    size_t wsn = zmax(conv2d_workspace_floats(&s1), conv2d_workspace_floats(&s2));
    if (rb->has_nin)
        wsn = zmax(wsn, conv2d_workspace_floats(&sn));
    float *ws = mem_floats(r->mem, wsn);
    if (!r->plan) {
        group_norm_silu_forward(a, m1, r1, x, PW(r, rb->norm1.w), PW(r, rb->norm1.b), B, rb->c_in, (int)HW, G,
                                VAE_GN_EPS);
        conv2d_forward(h1, a, PW(r, rb->conv1.w), PW(r, rb->conv1.b), &s1, ws);
        group_norm_silu_forward(a, m2, r2, h1, PW(r, rb->norm2.w), PW(r, rb->norm2.b), B, rb->c_out, (int)HW, G,
                                VAE_GN_EPS);
        conv2d_forward(out, a, PW(r, rb->conv2.w), PW(r, rb->conv2.b), &s2, ws);
        if (rb->has_nin) {
            conv2d_forward(a, x, PW(r, rb->nin_shortcut.w), PW(r, rb->nin_shortcut.b), &sn, ws);
            add_into(out, a, n_out);
        } else {
            add_into(out, x, n_out);
        }
    }
    mem_reset(r->mem, mark);
}

/* dx [B, c_in, H, W] (+=, may be NULL), dy [B, c_out, H, W]. */
static void vae_resblock_backward(vae_run *r, const vae_resblock *rb, const vae_resblock_saved *s, float *dx,
                                  const float *dy, const float *x, int H, int W)
{
    if (!dx && !r->G)
        return;
    const int B = r->B, G = r->groups, Ci = rb->c_in, Co = rb->c_out;
    const size_t HW = (size_t)H * W, n_in = (size_t)B * Ci * HW, n_out = (size_t)B * Co * HW;
    conv2d_shape s1 = conv_shape(&rb->conv1, B, H, W), s2 = conv_shape(&rb->conv2, B, H, W),
                 sn = conv_shape(&rb->nin_shortcut, B, H, W);
    size_t mark = mem_mark(r->mem), nmax = zmax(n_in, n_out);
    /* Three slots: the conv1 side keeps d(conv1 out) [c_out] in S3 while
     * S1, S2 hold the recomputed swish output and d(swish out). */
    float *S1 = mem_floats(r->mem, nmax), *S2 = mem_floats(r->mem, nmax), *S3 = mem_floats(r->mem, n_out);
    size_t wsn = zmax(conv2d_workspace_floats(&s1), conv2d_workspace_floats(&s2));
    if (rb->has_nin)
        wsn = zmax(wsn, conv2d_workspace_floats(&sn));
    float *ws = mem_floats(r->mem, wsn);
    if (r->plan) {
        mem_reset(r->mem, mark);
        return;
    }
    /* conv2 ∘ swish ∘ norm2 */
    group_norm_silu_recompute(S1, s->h1, s->mean2, s->rstd2, PW(r, rb->norm2.w), PW(r, rb->norm2.b), B, Co, (int)HW,
                              G);
    zero(S2, n_out);
    conv2d_backward(S2, GW(r, rb->conv2.w), GW(r, rb->conv2.b), dy, S1, PW(r, rb->conv2.w), &s2, ws);
    group_norm_silu_backward(S3, false, GW(r, rb->norm2.w), GW(r, rb->norm2.b), S2, s->h1, s->mean2, s->rstd2,
                             PW(r, rb->norm2.w), PW(r, rb->norm2.b), B, Co, (int)HW, G);
    /* conv1 ∘ swish ∘ norm1 */
    group_norm_silu_recompute(S1, x, s->mean1, s->rstd1, PW(r, rb->norm1.w), PW(r, rb->norm1.b), B, Ci, (int)HW, G);
    zero(S2, n_in);
    conv2d_backward(S2, GW(r, rb->conv1.w), GW(r, rb->conv1.b), S3, S1, PW(r, rb->conv1.w), &s1, ws);
    group_norm_silu_backward(dx, true, GW(r, rb->norm1.w), GW(r, rb->norm1.b), S2, x, s->mean1, s->rstd1,
                             PW(r, rb->norm1.w), PW(r, rb->norm1.b), B, Ci, (int)HW, G);
    /* skip */
    if (rb->has_nin)
        conv2d_backward(dx, GW(r, rb->nin_shortcut.w), GW(r, rb->nin_shortcut.b), dy, x, PW(r, rb->nin_shortcut.w),
                        &sn, ws);
    else if (dx)
        add_into(dx, dy, n_out);
    mem_reset(r->mem, mark);
}

/* ------------------------------------------------------------------ AttnBlock */

/* q, k, v = 1×1 convs of hn [B, C, L], written token-major into qkv [B, L, 3C]. */
static void attn_qkv(const vae_run *r, const vae_attnblock *ab, float *qkv, const float *hn, int L)
{
    const int B = r->B, C = ab->c;
    const vae_conv *cv[3] = {&ab->q, &ab->k, &ab->v};
    /* One GEMM per (image, projection), the images spread over the threads
     * when every thread gets one, else each GEMM threaded. */
    for (int j = 0; j < 3; j++)
        gemm_strided_batch(B, true, true, L, C, C, 1.0f, hn, (long)C * L, L, PW(r, cv[j]->w), 0, C, 0.0f,
                           qkv + (size_t)j * C, (long)L * 3 * C, 3 * C);
    const float *bq = PW(r, ab->q.b), *bk = PW(r, ab->k.b), *bv = PW(r, ab->v.b);
#pragma omp parallel for schedule(static) if ((size_t)B * L * C >= (1u << 14))
    for (size_t t = 0; t < (size_t)B * L; t++) {
        float *row = qkv + t * 3 * C;
        for (int o = 0; o < C; o++) {
            row[o] += bq[o];
            row[C + o] += bk[o];
            row[2 * C + o] += bv[o];
        }
    }
}

static void vae_attnblock_forward(vae_run *r, const vae_attnblock *ab, vae_attnblock_saved *s, float *out,
                                  const float *x, int H, int W)
{
    const int B = r->B, G = r->groups, C = ab->c, L = H * W;
    const size_t n = (size_t)B * C * L;
    float *mean = NULL, *rstd = NULL, *qkv = NULL, *probs = NULL, *att = NULL;
    if (r->save) {
        mean = s->mean = mem_floats(r->mem, (size_t)B * G);
        rstd = s->rstd = mem_floats(r->mem, (size_t)B * G);
        qkv = s->qkv = mem_floats(r->mem, (size_t)B * L * 3 * C);
        probs = s->probs = mem_floats(r->mem, (size_t)B * L * L);
        att = s->att = mem_floats(r->mem, (size_t)B * L * C);
    }
    size_t mark = mem_mark(r->mem);
    if (!r->save) {
        qkv = mem_floats(r->mem, (size_t)B * L * 3 * C);
        att = mem_floats(r->mem, (size_t)B * L * C);
    }
    float *hn = mem_floats(r->mem, n);
    float *ws = mem_floats(r->mem, attention_workspace_floats(B, L, 1, C));
    if (!r->plan) {
        group_norm_forward(hn, mean, rstd, x, PW(r, ab->norm.w), PW(r, ab->norm.b), B, C, L, G, VAE_GN_EPS);
        attn_qkv(r, ab, qkv, hn, L);
        /* NH = 1, HD = C: the op's HD^-1/2 scale is the block's C^-1/2. */
        attention_forward(att, probs, qkv, qkv + C, qkv + 2 * C, 3 * C, B, L, 1, C, ws);
        memcpy(out, x, n * sizeof(float));
        gemm_strided_batch(B, false, true, C, L, C, 1.0f, PW(r, ab->proj_out.w), 0, C, att, (long)L * C, C, 1.0f,
                           out, (long)C * L, L);
        add_bias_cl(out, PW(r, ab->proj_out.b), B, C, (size_t)L);
    }
    mem_reset(r->mem, mark);
}

static void vae_attnblock_backward(vae_run *r, const vae_attnblock *ab, const vae_attnblock_saved *s, float *dx,
                                   const float *dy, const float *x, int H, int W)
{
    if (!dx && !r->G)
        return;
    const int B = r->B, G = r->groups, C = ab->c, L = H * W;
    const size_t n = (size_t)B * C * L;
    size_t mark = mem_mark(r->mem);
    float *d_att = mem_floats(r->mem, (size_t)B * L * C);
    float *d_qkv = mem_floats(r->mem, (size_t)B * L * 3 * C);
    float *hn = mem_floats(r->mem, n);
    float *d_hn = mem_floats(r->mem, n);
    float *ws = mem_floats(r->mem, attention_workspace_floats(B, L, 1, C));
    if (r->plan) {
        mem_reset(r->mem, mark);
        return;
    }
    if (dx)
        add_into(dx, dy, n); /* residual */
    /* proj_out */
    /* Weight gradients accumulate image by image in order (serial loops);
     * the per-image input gradients are independent (parallel loops). */
    float *dWp = GW(r, ab->proj_out.w);
    if (dWp)
        for (int b = 0; b < B; b++)
            gemm(false, false, C, C, L, 1.0f, dy + (size_t)b * C * L, L, s->att + (size_t)b * L * C, C, 1.0f, dWp, C);
    gemm_strided_batch(B, true, false, L, C, C, 1.0f, dy, (long)C * L, L, PW(r, ab->proj_out.w), 0, C, 0.0f, d_att,
                       (long)L * C, C);
    if (r->G)
        bias_grad_cl(GW(r, ab->proj_out.b), dy, B, C, (size_t)L);
    /* attention */
    attention_backward(d_qkv, d_qkv + C, d_qkv + 2 * C, false, 3 * C, d_att, s->probs, s->qkv, s->qkv + C,
                       s->qkv + 2 * C, 3 * C, B, L, 1, C, ws);
    /* q, k, v (1×1 convs of hn) */
    group_norm_forward(hn, NULL, NULL, x, PW(r, ab->norm.w), PW(r, ab->norm.b), B, C, L, G, VAE_GN_EPS);
    zero(d_hn, n);
    const vae_conv *cv[3] = {&ab->q, &ab->k, &ab->v};
    for (int j = 0; j < 3; j++) {
        float *dW = GW(r, cv[j]->w), *db = GW(r, cv[j]->b);
        if (dW) /* dW[o,c] += Σ_l d[l,o] hn[c,l] */
            for (int b = 0; b < B; b++)
                gemm(true, true, C, C, L, 1.0f, d_qkv + (size_t)b * L * 3 * C + (size_t)j * C, 3 * C,
                     hn + (size_t)b * C * L, L, 1.0f, dW, C);
        /* d_hn[c,l] += Σ_o W[o,c] d[l,o] */
        gemm_strided_batch(B, true, true, C, L, C, 1.0f, PW(r, cv[j]->w), 0, C, d_qkv + (size_t)j * C,
                           (long)L * 3 * C, 3 * C, 1.0f, d_hn, (long)C * L, L);
        if (db) {
#pragma omp parallel for schedule(static) if ((size_t)B * L * C >= (1u << 14))
            for (int o = 0; o < C; o++) {
                double acc = 0;
                for (size_t t = 0; t < (size_t)B * L; t++)
                    acc += d_qkv[t * 3 * C + (size_t)j * C + o];
                db[o] += (float)acc;
            }
        }
    }
    group_norm_backward(dx, GW(r, ab->norm.w), GW(r, ab->norm.b), d_hn, x, s->mean, s->rstd, PW(r, ab->norm.w), B, C,
                        L, G);
    mem_reset(r->mem, mark);
}

/* ------------------------------------------------------------------ other layers */

/* norm_out, swish, conv_out */
static void head_forward(vae_run *r, const vae_layer *ly, vae_layer_saved *s, float *out, const float *x, int H,
                         int W)
{
    const int B = r->B, G = r->groups, C = ly->c_in;
    const size_t HW = (size_t)H * W, n = (size_t)B * C * HW;
    conv2d_shape cs = conv_shape(&ly->conv, B, H, W);
    float *mean = NULL, *rstd = NULL;
    if (r->save) {
        mean = s->mean = mem_floats(r->mem, (size_t)B * G);
        rstd = s->rstd = mem_floats(r->mem, (size_t)B * G);
    }
    size_t mark = mem_mark(r->mem);
    float *a = mem_floats(r->mem, n);
    float *ws = mem_floats(r->mem, conv2d_workspace_floats(&cs));
    if (!r->plan) {
        group_norm_silu_forward(a, mean, rstd, x, PW(r, ly->norm.w), PW(r, ly->norm.b), B, C, (int)HW, G, VAE_GN_EPS);
        conv2d_forward(out, a, PW(r, ly->conv.w), PW(r, ly->conv.b), &cs, ws);
    }
    mem_reset(r->mem, mark);
}

static void head_backward(vae_run *r, const vae_layer *ly, const vae_layer_saved *s, float *dx, const float *dy,
                          const float *x, int H, int W)
{
    if (!dx && !r->G)
        return;
    const int B = r->B, G = r->groups, C = ly->c_in;
    const size_t HW = (size_t)H * W, n = (size_t)B * C * HW;
    conv2d_shape cs = conv_shape(&ly->conv, B, H, W);
    size_t mark = mem_mark(r->mem);
    float *S1 = mem_floats(r->mem, n), *S2 = mem_floats(r->mem, n);
    float *ws = mem_floats(r->mem, conv2d_workspace_floats(&cs));
    if (r->plan) {
        mem_reset(r->mem, mark);
        return;
    }
    group_norm_silu_recompute(S1, x, s->mean, s->rstd, PW(r, ly->norm.w), PW(r, ly->norm.b), B, C, (int)HW, G);
    zero(S2, n);
    conv2d_backward(S2, GW(r, ly->conv.w), GW(r, ly->conv.b), dy, S1, PW(r, ly->conv.w), &cs, ws);
    group_norm_silu_backward(dx, true, GW(r, ly->norm.w), GW(r, ly->norm.b), S2, x, s->mean, s->rstd,
                             PW(r, ly->norm.w), PW(r, ly->norm.b), B, C, (int)HW, G);
    mem_reset(r->mem, mark);
}

static void conv_layer_forward(vae_run *r, const vae_layer *ly, float *out, const float *x, int H, int W)
{
    const int B = r->B;
    size_t mark = mem_mark(r->mem);
    if (ly->kind == VAE_LAYER_UP) {
        /* The nearest-×2 image is scratch: the backward recomputes it. */
        conv2d_shape cs = conv_shape(&ly->conv, B, 2 * H, 2 * W);
        float *up = mem_floats(r->mem, (size_t)B * ly->c_in * 4 * H * W);
        float *ws = mem_floats(r->mem, conv2d_workspace_floats(&cs));
        if (!r->plan) {
            upsample_nearest2x_forward(up, x, B, ly->c_in, H, W);
            conv2d_forward(out, up, PW(r, ly->conv.w), PW(r, ly->conv.b), &cs, ws);
        }
    } else {
        conv2d_shape cs = ly->kind == VAE_LAYER_DOWN ? down_shape(&ly->conv, B, H, W) : conv_shape(&ly->conv, B, H, W);
        float *ws = mem_floats(r->mem, conv2d_workspace_floats(&cs));
        if (!r->plan)
            conv2d_forward(out, x, PW(r, ly->conv.w), PW(r, ly->conv.b), &cs, ws);
    }
    mem_reset(r->mem, mark);
}

static void conv_layer_backward(vae_run *r, const vae_layer *ly, float *dx, const float *dy, const float *x, int H,
                                int W)
{
    if (!dx && !r->G)
        return;
    const int B = r->B;
    size_t mark = mem_mark(r->mem);
    if (ly->kind == VAE_LAYER_UP) {
        conv2d_shape cs = conv_shape(&ly->conv, B, 2 * H, 2 * W);
        size_t nu = (size_t)B * ly->c_in * 4 * H * W;
        /* A planning run has no dx buffers (its pointers are all NULL) but
         * must count d_up as if dx were wanted. */
        float *up = mem_floats(r->mem, nu), *d_up = dx || r->plan ? mem_floats(r->mem, nu) : NULL;
        float *ws = mem_floats(r->mem, conv2d_workspace_floats(&cs));
        if (!r->plan) {
            upsample_nearest2x_forward(up, x, B, ly->c_in, H, W);
            zero(d_up, nu);
            conv2d_backward(d_up, GW(r, ly->conv.w), GW(r, ly->conv.b), dy, up, PW(r, ly->conv.w), &cs, ws);
            if (dx)
                upsample_nearest2x_backward(dx, d_up, B, ly->c_in, H, W);
        }
    } else {
        conv2d_shape cs = ly->kind == VAE_LAYER_DOWN ? down_shape(&ly->conv, B, H, W) : conv_shape(&ly->conv, B, H, W);
        float *ws = mem_floats(r->mem, conv2d_workspace_floats(&cs));
        if (!r->plan)
            conv2d_backward(dx, GW(r, ly->conv.w), GW(r, ly->conv.b), dy, x, PW(r, ly->conv.w), &cs, ws);
    }
    mem_reset(r->mem, mark);
}

/* ------------------------------------------------------------------ layer sequences */

static void layer_forward(vae_run *r, const vae_layer *ly, vae_layer_saved *s, float *out, const float *x, int H,
                          int W)
{
    switch (ly->kind) {
    case VAE_LAYER_RES: vae_resblock_forward(r, &ly->res, &s->res, out, x, H, W); break;
    case VAE_LAYER_ATTN: vae_attnblock_forward(r, &ly->attn, &s->attn, out, x, H, W); break;
    case VAE_LAYER_HEAD: head_forward(r, ly, s, out, x, H, W); break;
    case VAE_LAYER_CONV:
    case VAE_LAYER_DOWN:
    case VAE_LAYER_UP: conv_layer_forward(r, ly, out, x, H, W); break;
    }
}

static void layer_backward(vae_run *r, const vae_layer *ly, const vae_layer_saved *s, float *dx, const float *dy)
{
    switch (ly->kind) {
    case VAE_LAYER_RES: vae_resblock_backward(r, &ly->res, &s->res, dx, dy, s->x, s->H, s->W); break;
    case VAE_LAYER_ATTN: vae_attnblock_backward(r, &ly->attn, &s->attn, dx, dy, s->x, s->H, s->W); break;
    case VAE_LAYER_HEAD: head_backward(r, ly, s, dx, dy, s->x, s->H, s->W); break;
    case VAE_LAYER_CONV:
    case VAE_LAYER_DOWN:
    case VAE_LAYER_UP: conv_layer_backward(r, ly, dx, dy, s->x, s->H, s->W); break;
    }
}

/* Runs layers[0..n) on x [B, c_in, H, W].  Saving: every output is kept (it
 * is the next layer's input) and recorded in sv.  Not saving: outputs
 * alternate between the two ping-pong buffers pp, and the last goes to
 * final_out.  Returns the output (and its size in *Ho, *Wo). */
static float *seq_forward(vae_run *r, const vae_layer *ly, int n, vae_layer_saved *sv, const float *x, int H, int W,
                          float *final_out, float *const *pp, int *Ho, int *Wo)
{
    const float *cur = x;
    float *out = NULL;
    for (int i = 0; i < n; i++) {
        int h2, w2;
        layer_out_size(&ly[i], H, W, &h2, &w2);
        vae_layer_saved tmp = {0}, *s = r->save ? &sv[i] : &tmp;
        if (r->save)
            out = mem_floats(r->mem, (size_t)r->B * ly[i].c_out * h2 * w2);
        else
            out = i == n - 1 ? final_out : pp[i & 1];
        s->H = H;
        s->W = W;
        s->x = cur;
        s->out = out;
        layer_forward(r, &ly[i], s, out, cur, H, W);
        cur = out;
        H = h2;
        W = w2;
    }
    *Ho = H;
    *Wo = W;
    return out;
}

/* Backward through layers[0..n): dy_last is d(output of the last layer);
 * dx_first (+=, may be NULL) receives d(input of the first). */
static void seq_backward(vae_run *r, const vae_layer *ly, int n, const vae_layer_saved *sv, const float *dy_last,
                         float *dx_first, float *const *pp)
{
    const float *dy = dy_last;
    for (int i = n - 1; i >= 0; i--) {
        float *dx = dx_first;
        if (i > 0) {
            dx = pp[i & 1];
            if (!r->plan)
                zero(dx, (size_t)r->B * ly[i].c_in * sv[i].H * sv[i].W);
        }
        layer_backward(r, &ly[i], &sv[i], dx, dy);
        dy = dx;
    }
}

/* ------------------------------------------------------------------ posterior */

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* moments [B, 2C, hw] -> mean, logvar (clamped), std [B, C, hw]; each may be NULL. */
static void posterior_split(const float *mom, float *mean, float *logvar, float *std, int B, int C, size_t hw)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *pm = mom + ((size_t)b * 2 * C + c) * hw, *pl = pm + (size_t)C * hw;
            size_t o = ((size_t)b * C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                float lv = clampf(pl[i], VAE_LOGVAR_MIN, VAE_LOGVAR_MAX);
                if (mean)
                    mean[o + i] = pm[i];
                if (logvar)
                    logvar[o + i] = lv;
                if (std)
                    std[o + i] = expf(0.5f * lv);
            }
        }
}

/* d_mom [B, 2C, hw] = (d mean, d raw logvar) from d_z (through z = mean +
 * std·eps), d_mean and d_logvar; zero where the clamp was active (torch's
 * clamp passes the gradient for lo <= x <= hi). */
static void posterior_backward(float *d_mom, const float *d_z, const float *d_mean, const float *d_logvar,
                               const float *mom, const float *std, const float *eps, int B, int C, size_t hw)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *raw = mom + ((size_t)b * 2 * C + C + c) * hw;
            float *dm = d_mom + ((size_t)b * 2 * C + c) * hw, *dl = dm + (size_t)C * hw;
            size_t o = ((size_t)b * C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                float gm = 0, gl = 0;
                if (d_z) {
                    gm = d_z[o + i];
                    gl = d_z[o + i] * eps[o + i] * std[o + i] * 0.5f; /* d std = dz·eps; d logvar = d std·std/2 */
                }
                if (d_mean)
                    gm += d_mean[o + i];
                if (d_logvar)
                    gl += d_logvar[o + i];
                dm[i] = gm;
                dl[i] = (raw[i] >= VAE_LOGVAR_MIN && raw[i] <= VAE_LOGVAR_MAX) ? gl : 0.0f;
            }
        }
}

/* ------------------------------------------------------------------ passes */

static vae_run make_run(const vae *m, const float *params, vae_mem *mem, float *grads, int save, int B)
{
    return (vae_run){.P = params, .G = grads, .mem = mem, .plan = mem->a == NULL, .save = save, .B = B,
                     .groups = m->cfg.norm_groups};
}

static void encoder_forward_impl(const vae *m, const float *params, vae_acts *a, const float *x, const float *eps,
                                 rng *rg, int B, int H, int W, vae_mem *mem)
{
    if (B <= 0 || H <= 0 || W <= 0)
        die("vae_encoder_forward: bad input size %d×%d×%d", B, H, W);
    vae_run r = make_run(m, params, mem, NULL, 1, B);
    const int C = m->cfg.z_channels;
    int h, w;
    a->B = B;
    a->H = H;
    a->W = W;
    a->x = x;
    a->enc = mem_records(mem, m->n_enc, 0);
    a->moments = seq_forward(&r, m->enc, m->n_enc, a->enc, x, H, W, NULL, NULL, &h, &w);
    a->h = h;
    a->w = w;
    size_t nz = (size_t)B * C * h * w;
    a->mean = mem_floats(mem, nz);
    a->logvar = mem_floats(mem, nz);
    a->std = mem_floats(mem, nz);
    a->eps = mem_floats(mem, nz);
    a->z = mem_floats(mem, nz);
    if (!r.plan) {
        posterior_split(a->moments, a->mean, a->logvar, a->std, B, C, (size_t)h * w);
        if (eps)
            memcpy(a->eps, eps, nz * sizeof(float));
        else if (rg)
            rng_normal_fill(rg, a->eps, nz);
        else
            die("vae_encoder_forward: needs eps or an rng to sample z");
        for (size_t i = 0; i < nz; i++)
            a->z[i] = a->mean[i] + a->std[i] * a->eps[i];
    }
    a->have_enc = 1;
}

static void decoder_forward_impl(const vae *m, const float *params, vae_acts *a, const float *z, int B, int h, int w,
                                 vae_mem *mem)
{
    if (B <= 0 || h <= 0 || w <= 0)
        die("vae_decoder_forward: bad latent size %d×%d×%d", B, h, w);
    vae_run r = make_run(m, params, mem, NULL, 1, B);
    int H, W;
    a->B = B;
    a->h = h;
    a->w = w;
    a->z_in = z;
    a->dec = mem_records(mem, m->n_dec, 1);
    a->recon = seq_forward(&r, m->dec, m->n_dec, a->dec, z, h, w, NULL, NULL, &H, &W);
    a->H = H;
    a->W = W;
    a->have_dec = 1;
}

static void decoder_backward_impl(const vae *m, const float *params, const vae_acts *a, const float *d_recon,
                                  float *grads, float *d_z, vae_mem *mem)
{
    if (!d_recon || (!grads && !d_z))
        return;
    if (!a->have_dec)
        die("vae_decoder_backward: no decoder forward to go back through");
    vae_run r = make_run(m, params, mem, grads, 0, a->B);
    size_t mark = mem_mark(mem), np = max_act(m->dec, m->n_dec, a->B, a->h, a->w);
    float *pp[2] = {mem_floats(mem, np), mem_floats(mem, np)};
    seq_backward(&r, m->dec, m->n_dec, a->dec, d_recon, d_z, pp);
    mem_reset(mem, mark);
}

static void encoder_backward_impl(const vae *m, const float *params, const vae_acts *a, const float *d_z,
                                  const float *d_mean, const float *d_logvar, float *grads, float *d_x, vae_mem *mem)
{
    if ((!grads && !d_x) || (!d_z && !d_mean && !d_logvar))
        return;
    if (!a->have_enc)
        die("vae_encoder_backward: no encoder forward to go back through");
    vae_run r = make_run(m, params, mem, grads, 0, a->B);
    const int C = m->cfg.z_channels;
    size_t mark = mem_mark(mem), np = max_act(m->enc, m->n_enc, a->B, a->H, a->W);
    float *d_mom = mem_floats(mem, (size_t)a->B * 2 * C * a->h * a->w);
    float *pp[2] = {mem_floats(mem, np), mem_floats(mem, np)};
    if (!r.plan)
        posterior_backward(d_mom, d_z, d_mean, d_logvar, a->moments, a->std, a->eps, a->B, C, (size_t)a->h * a->w);
    seq_backward(&r, m->enc, m->n_enc, a->enc, d_mom, d_x, pp);
    mem_reset(mem, mark);
}

static void backward_impl(const vae *m, const float *params, const vae_acts *a, const float *d_recon, const float *d_z,
                          const float *d_mean, const float *d_logvar, float *grads, float *d_x, vae_mem *mem)
{
    if (!grads && !d_x)
        return;
    size_t mark = mem_mark(mem), nz = (size_t)a->B * m->cfg.z_channels * a->h * a->w;
    /* The REPA path's d_z and the decoder's gradient into z add here. */
    float *dz = mem_floats(mem, nz);
    if (mem->a) {
        if (d_z)
            memcpy(dz, d_z, nz * sizeof(float));
        else
            zero(dz, nz);
    }
    decoder_backward_impl(m, params, a, d_recon, grads, dz, mem);
    encoder_backward_impl(m, params, a, dz, d_mean, d_logvar, grads, d_x, mem);
    mem_reset(mem, mark);
}

static void encode_impl(const vae *m, const float *params, const float *x, float *mean, float *logvar, float *std,
                        int B, int H, int W, vae_mem *mem)
{
    if (B <= 0 || H <= 0 || W <= 0)
        die("vae_encode: bad input size %d×%d×%d", B, H, W);
    vae_run r = make_run(m, params, mem, NULL, 0, B);
    int h, w;
    vae_latent_size(m, H, W, &h, &w);
    size_t mark = mem_mark(mem), np = max_act(m->enc, m->n_enc, B, H, W);
    float *mom = mem_floats(mem, (size_t)B * 2 * m->cfg.z_channels * h * w);
    float *pp[2] = {mem_floats(mem, np), mem_floats(mem, np)};
    seq_forward(&r, m->enc, m->n_enc, NULL, x, H, W, mom, pp, &h, &w);
    if (!r.plan)
        posterior_split(mom, mean, logvar, std, B, m->cfg.z_channels, (size_t)h * w);
    mem_reset(mem, mark);
}

static void decode_impl(const vae *m, const float *params, const float *z, float *recon, int B, int h, int w,
                        vae_mem *mem)
{
    if (B <= 0 || h <= 0 || w <= 0)
        die("vae_decode: bad latent size %d×%d×%d", B, h, w);
    vae_run r = make_run(m, params, mem, NULL, 0, B);
    int H, W;
    size_t mark = mem_mark(mem), np = max_act(m->dec, m->n_dec, B, h, w);
    float *pp[2] = {mem_floats(mem, np), mem_floats(mem, np)};
    seq_forward(&r, m->dec, m->n_dec, NULL, z, h, w, recon, pp, &H, &W);
    mem_reset(mem, mark);
}

/* ------------------------------------------------------------------ public entry points */

void vae_encoder_forward(const vae *m, const float *params, vae_acts *a, const float *x, const float *eps, rng *r,
                         int B, int H, int W, arena *ar)
{
    vae_mem mem = {.a = ar};
    a->have_enc = a->have_dec = 0;
    encoder_forward_impl(m, params, a, x, eps, r, B, H, W, &mem);
}

void vae_decoder_forward(const vae *m, const float *params, vae_acts *a, const float *z, int B, int h, int w, arena *ar)
{
    vae_mem mem = {.a = ar};
    a->have_dec = 0;
    decoder_forward_impl(m, params, a, z, B, h, w, &mem);
}

void vae_forward(const vae *m, const float *params, vae_acts *a, const float *x, const float *eps, rng *r, int B, int H,
                 int W, arena *ar)
{
    vae_mem mem = {.a = ar};
    a->have_enc = a->have_dec = 0;
    encoder_forward_impl(m, params, a, x, eps, r, B, H, W, &mem);
    decoder_forward_impl(m, params, a, a->z, B, a->h, a->w, &mem);
}

void vae_decoder_backward(const vae *m, const float *params, const vae_acts *a, const float *d_recon, float *grads,
                          float *d_z, arena *ar)
{
    vae_mem mem = {.a = ar};
    decoder_backward_impl(m, params, a, d_recon, grads, d_z, &mem);
}

void vae_encoder_backward(const vae *m, const float *params, const vae_acts *a, const float *d_z, const float *d_mean,
                          const float *d_logvar, float *grads, float *d_x, arena *ar)
{
    vae_mem mem = {.a = ar};
    encoder_backward_impl(m, params, a, d_z, d_mean, d_logvar, grads, d_x, &mem);
}

void vae_backward(const vae *m, const float *params, const vae_acts *a, const float *d_recon, const float *d_z,
                  const float *d_mean, const float *d_logvar, float *grads, float *d_x, arena *ar)
{
    vae_mem mem = {.a = ar};
    backward_impl(m, params, a, d_recon, d_z, d_mean, d_logvar, grads, d_x, &mem);
}

void vae_encode(const vae *m, const float *params, const float *x, float *mean, float *logvar, float *std, int B, int H,
                int W, arena *ar)
{
    vae_mem mem = {.a = ar};
    encode_impl(m, params, x, mean, logvar, std, B, H, W, &mem);
}

void vae_decode(const vae *m, const float *params, const float *z, float *recon, int B, int h, int w, arena *ar)
{
    vae_mem mem = {.a = ar};
    decode_impl(m, params, z, recon, B, h, w, &mem);
}

vae_plan vae_plan_memory(const vae *m, vae_pass pass, int B, int H, int W)
{
    vae_acts a = {0};
    vae_mem mem = {0};
    vae_plan p = {0};
    /* A planning run never reads or writes through these: they only say
     * "this gradient is wanted". */
    static float want;
    float *g = &want;
    switch (pass) {
    case VAE_PASS_ENCODE: encode_impl(m, NULL, NULL, g, g, g, B, H, W, &mem); break;
    case VAE_PASS_DECODE: decode_impl(m, NULL, NULL, g, B, H, W, &mem); break;
    case VAE_PASS_TRAIN:
        encoder_forward_impl(m, NULL, &a, NULL, g, NULL, B, H, W, &mem);
        decoder_forward_impl(m, NULL, &a, a.z, B, a.h, a.w, &mem);
        p.saved = mem.used;
        backward_impl(m, NULL, &a, g, g, g, g, g, g, &mem);
        break;
    case VAE_PASS_TRAIN_ENCODER:
        encoder_forward_impl(m, NULL, &a, NULL, g, NULL, B, H, W, &mem);
        p.saved = mem.used;
        encoder_backward_impl(m, NULL, &a, g, g, g, g, g, &mem);
        break;
    case VAE_PASS_TRAIN_DECODER:
        decoder_forward_impl(m, NULL, &a, NULL, B, H, W, &mem);
        p.saved = mem.used;
        decoder_backward_impl(m, NULL, &a, g, g, g, &mem);
        break;
    }
    p.scratch = mem.peak - p.saved;
    free(mem.plan_records[0]);
    free(mem.plan_records[1]);
    return p;
}
