/* sit_forward.c — SiT forward and backward (spec §3, §4.2): the latent
 * BatchNorm, the network (x_t, t, y) -> v̂ with its projectors, and the
 * sampling forward.  The training objective is diffusion/denoising_objective.c.
 *
 * Layout of one network pass in the arena:
 *   [ sit_acts: everything the backward needs ][ backward scratch ]
 * Both parts are carved by one function each, which the planning pass runs
 * with a NULL arena to count the bytes, so plan and use cannot drift apart.
 *
 * The residual stream of a block is x_in -> x_mid -> x_out; its gradient
 * flows backwards through ONE buffer dx: the gated residuals are identities
 * on the stream, so the branch gradients (LayerNorm backwards) just add into
 * dx in place.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/error.h"
#include "models/sit.h"
#include "ops/act.h"
#include "ops/attention.h"
#include "ops/conv2d.h"
#include "ops/embed.h"
#include "ops/gemm.h"
#include "ops/gemm_packed.h"
#include "ops/linear.h"
#include "ops/modulate.h"
#include "ops/norm.h"
#include "ops/sync_batch_norm.h"

/* ---- carving: the same code plans (a == NULL) and allocates ---- */

typedef struct carver {
    arena *a;
    size_t bytes;
} carver;

static void *cv_bytes(carver *c, size_t bytes)
{
    c->bytes += arena_round(bytes ? bytes : 1);
    return c->a ? arena_alloc(c->a, bytes ? bytes : 1) : NULL;
}

static float *cv(carver *c, size_t n) { return cv_bytes(c, n * sizeof(float)); }

static inline size_t szmul(size_t a, size_t b) { return a * b; }

/* Block activations.  `save` = training (everything kept per block);
 * otherwise (inference) one set is reused by every block. */
static void carve_block(sit_block_acts *b, const sit *m, int N, bool save, carver *c)
{
    const size_t NT = (size_t)N * m->T, D = m->D;
    memset(b, 0, sizeof *b);
    b->c6 = cv(c, szmul(N, 6 * D));
    b->ln1_mean = cv(c, NT), b->ln1_rstd = cv(c, NT);
    b->mod1 = cv(c, NT * D);
    b->qkv = cv(c, NT * 3 * D);
    b->qkv_n = b->qkv;
    if (m->cfg.qk_norm) {
        b->qkv_n = cv(c, NT * 3 * D);
        b->q_mean = cv(c, NT * m->NH), b->q_rstd = cv(c, NT * m->NH);
        b->k_mean = cv(c, NT * m->NH), b->k_rstd = cv(c, NT * m->NH);
    }
    b->probs = save ? cv(c, szmul(szmul(N, m->NH), szmul(m->T, m->T))) : NULL;
    b->attn = cv(c, NT * D);
    b->attn_proj = cv(c, NT * D);
    b->x_mid = cv(c, NT * D);
    b->ln2_mean = cv(c, NT), b->ln2_rstd = cv(c, NT);
    b->mod2 = cv(c, NT * D);
    b->fc1 = cv(c, NT * m->H4);
    b->act = save ? cv(c, NT * m->H4) : b->fc1; /* GELU in place when nothing is kept */
    b->fc2 = cv(c, NT * D);
    b->x_out = save ? cv(c, NT * D) : NULL;
}

static int blocks_run(const sit *m, const sit_net_opts *o)
{
    return o->align_only ? m->cfg.encoder_depth : m->cfg.depth;
}

static bool conv_projector(const sit *m) { return m->cfg.projector_type == SIT_PROJECTOR_CONV; }

/* iREPA's conv projector e on the G×G token grid: stride 1, padding k/2. */
static conv2d_shape proj_conv_shape(const sit *m, int e, int N)
{
    int k = m->cfg.projector_kernel;
    return conv2d_make(N, m->D, m->G, m->G, m->cfg.z_dims[e], k, 1, k / 2);
}

static int max_z_dim(const sit *m)
{
    int zmax = 1;
    for (int e = 0; e < m->cfg.n_encoders; e++)
        zmax = m->cfg.z_dims[e] > zmax ? m->cfg.z_dims[e] : zmax;
    return zmax;
}

static void carve_acts(sit_acts *a, const sit *m, int N, const sit_net_opts *o, carver *c)
{
    const size_t NT = (size_t)N * m->T, D = m->D, CHW = (size_t)m->C * m->H * m->H;
    memset(a, 0, sizeof *a);
    a->N = N;
    a->opts = *o;
    a->n_blocks = blocks_run(m, o);
    a->labels = cv_bytes(c, (size_t)N * sizeof(int));
    a->patches = cv(c, NT * m->PC);
    a->x0 = cv(c, NT * D);
    a->t_freq = cv(c, (size_t)N * SIT_FREQ_DIM);
    a->t_h = cv(c, N * D), a->t_hs = cv(c, N * D);
    a->c = cv(c, N * D), a->silu_c = cv(c, N * D);
    a->blocks = cv_bytes(c, (size_t)a->n_blocks * sizeof(sit_block_acts));
    for (int i = 0; i < a->n_blocks; i++) {
        sit_block_acts tmp, *b = a->blocks ? &a->blocks[i] : &tmp;
        carve_block(b, m, N, true, c);
        b->x_in = i == 0 ? a->x0 : (a->blocks ? a->blocks[i - 1].x_out : NULL);
    }
    const int n_proj = m->cfg.n_encoders;
    for (int e = 0; e < n_proj && conv_projector(m); e++) {
        a->proj[e].grid = cv(c, NT * D);
        a->proj[e].out = cv(c, NT * m->cfg.z_dims[e]);
        a->zs_tilde[e] = a->proj[e].out;
    }
    if (n_proj && conv_projector(m)) {
        size_t ws = 0;
        for (int e = 0; e < n_proj; e++) {
            conv2d_shape cs = proj_conv_shape(m, e, N);
            size_t w = conv2d_workspace_floats(&cs);
            ws = w > ws ? w : ws;
        }
        a->conv_ws = cv(c, ws);
        a->conv_out = cv(c, NT * max_z_dim(m));
    }
    for (int e = 0; e < (conv_projector(m) ? 0 : n_proj); e++) {
        const size_t P = m->cfg.projector_dim;
        a->proj[e].h0 = cv(c, NT * P), a->proj[e].s0 = cv(c, NT * P);
        a->proj[e].h2 = cv(c, NT * P), a->proj[e].s2 = cv(c, NT * P);
        a->proj[e].out = cv(c, NT * m->cfg.z_dims[e]);
        a->zs_tilde[e] = a->proj[e].out;
    }
    if (!o->align_only) {
        a->c2 = cv(c, N * 2 * D);
        a->lnf_mean = cv(c, NT), a->lnf_rstd = cv(c, NT);
        a->modf = cv(c, NT * D);
        a->out_tokens = cv(c, NT * m->PC);
        a->model_output = cv(c, N * CHW);
    }
    a->attn_ws = cv(c, attention_workspace_floats(N, m->T, m->NH, m->HD));
}

/* Backward scratch (everything zeroed right before use, since ops add). */
typedef struct sit_bwd_scratch {
    float *dx, *dh, *dmod, *dln, *xhat; /* [N,T,D] */
    float *dh4a, *dh4b;                 /* [N,T,H4] */
    float *dqkv, *dqkv_raw;             /* [N,T,3D] (raw: qk_norm only) */
    float *dc6;                         /* [N,6D] */
    float *d_silu_c, *dc, *d_ths, *d_th; /* [N,D] */
    float *dpa, *dpb;                   /* [N,T,projector_dim] */
    float *dc2;                         /* [N,2D] */
    float *dtok;                        /* [N,T,p²C] (final-layer tokens, then patch vectors) */
} sit_bwd_scratch;

static void carve_bwd(sit_bwd_scratch *s, const sit *m, int N, carver *c)
{
    const size_t NT = (size_t)N * m->T, D = m->D;
    memset(s, 0, sizeof *s);
    s->dx = cv(c, NT * D), s->dh = cv(c, NT * D), s->dmod = cv(c, NT * D), s->dln = cv(c, NT * D);
    s->xhat = cv(c, NT * D);
    s->dh4a = cv(c, NT * m->H4), s->dh4b = cv(c, NT * m->H4);
    s->dqkv = cv(c, NT * 3 * D);
    s->dqkv_raw = m->cfg.qk_norm ? cv(c, NT * 3 * D) : s->dqkv;
    s->dc6 = cv(c, N * 6 * D);
    s->d_silu_c = cv(c, N * D), s->dc = cv(c, N * D), s->d_ths = cv(c, N * D), s->d_th = cv(c, N * D);
    if (m->cfg.n_encoders) {
        /* the conv projector uses dpa for its output-grid gradient [N,z,G,G]
         * and dpb for its input-grid gradient [N,D,G,G] */
        const int zmax = max_z_dim(m);
        size_t pw = (size_t)m->cfg.projector_dim;
        if (conv_projector(m))
            pw = (size_t)(zmax > (int)D ? zmax : (int)D);
        s->dpa = cv(c, NT * pw), s->dpb = cv(c, NT * pw);
    }
    s->dc2 = cv(c, N * 2 * D);
    s->dtok = cv(c, NT * m->PC);
}

size_t sit_net_plan_bytes(const sit *m, int N, const sit_net_opts *opts)
{
    carver ca = {NULL, 0}, cb = {NULL, 0};
    sit_acts a;
    sit_bwd_scratch s;
    carve_acts(&a, m, N, opts, &ca);
    carve_bwd(&s, m, N, &cb);
    return ca.bytes + cb.bytes;
}

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

/* y = x Wᵀ + b, W as sit_pack_for_sampling left it when `packed`: every
 * weight it could pack, it did (the same predicate decides both). */
static void lin(bool packed, float *out, const float *inp, const float *weight, const float *bias, int N, int IN,
                int OUT)
{
    if (packed && linear_weight_prepackable(IN, OUT))
        linear_forward_prepacked(out, inp, weight, bias, N, IN, OUT);
    else
        linear_forward(out, inp, weight, bias, N, IN, OUT);
}

/* ---- pieces ---- */

/* x0[n,t,:] = patches[n,t,:] · Wᵀ + b + pos_embed[t]: seed with bias + pos,
 * then one gemm with beta = 1. */
static void patch_embed_forward(const sit *m, const float *P, bool packed, float *x0, float *patches, const float *xt,
                                int N)
{
    const int D = m->D, T = m->T;
    patchify_forward(patches, xt, N, m->C, m->H, m->H, m->p);
    const float *b = P + m->x_b, *pos = P + m->pos_embed;
#pragma omp parallel for collapse(2) schedule(static) if ((long)N * T * D >= (1L << 15))
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++) {
            float *row = x0 + ((size_t)n * T + t) * D;
            const float *pr = pos + (size_t)t * D;
            for (int d = 0; d < D; d++)
                row[d] = b[d] + pr[d];
        }
    if (packed && linear_weight_prepackable(m->PC, D))
        gemm_prepacked(false, N * T, D, m->PC, 1.0f, patches, m->PC, P + m->x_w, 1.0f, x0, D);
    else
        gemm(false, true, N * T, D, m->PC, 1.0f, patches, m->PC, P + m->x_w, m->PC, 1.0f, x0, D);
}

/* c = t_embedder(t) + y_embedder(labels), silu_c = SiLU(c). */
static void cond_forward(const sit *m, const float *P, bool packed, float *t_freq, float *t_h, float *t_hs, float *c,
                         float *silu_c, const float *t, const int *labels, int N)
{
    const int D = m->D;
    timestep_embedding(t_freq, t, N, SIT_FREQ_DIM, 10000.0f);
    lin(packed, t_h, t_freq, P + m->t0_w, P + m->t0_b, N, SIT_FREQ_DIM, D);
    silu_forward(t_hs, t_h, (size_t)N * D);
    lin(packed, c, t_hs, P + m->t2_w, P + m->t2_b, N, D, D);
    for (int n = 0; n < N; n++) {
        const float *row = P + m->y_table + (size_t)labels[n] * D;
        for (int d = 0; d < D; d++)
            c[(size_t)n * D + d] += row[d];
    }
    silu_forward(silu_c, c, (size_t)N * D);
}

/* qk-norm: LayerNorm(HD, affine) on each head of q and k; v copied. */
static void qk_norm_forward(const sit *m, const float *P, const sit_block_offsets *o, sit_block_acts *a, int NT)
{
    const int D = m->D, NH = m->NH, HD = m->HD;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < NT; r++) {
        const float *src = a->qkv + (size_t)r * 3 * D;
        float *dst = a->qkv_n + (size_t)r * 3 * D;
        layer_norm_forward(dst, a->q_mean + (size_t)r * NH, a->q_rstd + (size_t)r * NH, src, P + o->q_norm_w,
                           P + o->q_norm_b, NH, HD, SIT_QK_NORM_EPS);
        layer_norm_forward(dst + D, a->k_mean + (size_t)r * NH, a->k_rstd + (size_t)r * NH, src + D,
                           P + o->k_norm_w, P + o->k_norm_b, NH, HD, SIT_QK_NORM_EPS);
        memcpy(dst + 2 * D, src + 2 * D, (size_t)D * sizeof(float));
    }
}

static void qk_norm_backward(const sit *m, const float *P, const sit_block_offsets *o, const sit_block_acts *a,
                             float *dqkv_raw, const float *dqkv, float *dP, int NT)
{
    const int D = m->D, NH = m->NH, HD = m->HD;
    zero(dqkv_raw, (size_t)NT * 3 * D);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < NT; r++) {
        const size_t off = (size_t)r * 3 * D;
        layer_norm_backward(dqkv_raw + off, NULL, NULL, dqkv + off, a->qkv + off, a->q_mean + (size_t)r * NH,
                            a->q_rstd + (size_t)r * NH, P + o->q_norm_w, NH, HD);
        layer_norm_backward(dqkv_raw + off + D, NULL, NULL, dqkv + off + D, a->qkv + off + D,
                            a->k_mean + (size_t)r * NH, a->k_rstd + (size_t)r * NH, P + o->k_norm_w, NH, HD);
        for (int d = 0; d < D; d++)
            dqkv_raw[off + 2 * D + d] += dqkv[off + 2 * D + d];
    }
    if (dP) /* weight/bias sums over every (token, head) row: serial over tokens, so no races */
        for (int r = 0; r < NT; r++) {
            const size_t off = (size_t)r * 3 * D;
            layer_norm_backward(NULL, dP + o->q_norm_w, dP + o->q_norm_b, dqkv + off, a->qkv + off,
                                a->q_mean + (size_t)r * NH, a->q_rstd + (size_t)r * NH, P + o->q_norm_w, NH, HD);
            layer_norm_backward(NULL, dP + o->k_norm_w, dP + o->k_norm_b, dqkv + off + D, a->qkv + off + D,
                                a->k_mean + (size_t)r * NH, a->k_rstd + (size_t)r * NH, P + o->k_norm_w, NH, HD);
        }
}

/* One SiTBlock: a->x_in -> a->x_out (spec §4.2). */
static void sit_block_forward(const sit *m, const float *P, bool packed, int i, sit_block_acts *a,
                              const float *silu_c, int N, float *attn_ws)
{
    const sit_block_offsets *o = &m->blocks[i];
    const int D = m->D, T = m->T, NT = N * T, H4 = m->H4, D6 = 6 * D;
    const size_t ND = (size_t)NT * D;
    lin(packed, a->c6, silu_c, P + o->ada_w, P + o->ada_b, N, D, D6);
    const float *c6 = a->c6;
    /* attention branch */
    layer_norm_forward(a->mod1, a->ln1_mean, a->ln1_rstd, a->x_in, NULL, NULL, NT, D, SIT_LN_EPS);
    modulate_forward(a->mod1, a->mod1, c6, c6 + D, D6, N, T, D);
    lin(packed, a->qkv, a->mod1, P + o->qkv_w, P + o->qkv_b, NT, D, 3 * D);
    if (m->cfg.qk_norm)
        qk_norm_forward(m, P, o, a, NT);
    const float *q = a->qkv_n;
    attention_forward(a->attn, a->probs, q, q + D, q + 2 * D, 3 * D, N, T, m->NH, m->HD, attn_ws);
    lin(packed, a->attn_proj, a->attn, P + o->proj_w, P + o->proj_b, NT, D, D);
    memcpy(a->x_mid, a->x_in, ND * sizeof(float));
    gated_residual_forward(a->x_mid, a->attn_proj, c6 + 2 * D, D6, N, T, D);
    /* MLP branch */
    layer_norm_forward(a->mod2, a->ln2_mean, a->ln2_rstd, a->x_mid, NULL, NULL, NT, D, SIT_LN_EPS);
    modulate_forward(a->mod2, a->mod2, c6 + 3 * D, c6 + 4 * D, D6, N, T, D);
    lin(packed, a->fc1, a->mod2, P + o->fc1_w, P + o->fc1_b, NT, D, H4);
    gelu_tanh_forward(a->act, a->fc1, (size_t)NT * H4);
    lin(packed, a->fc2, a->act, P + o->fc2_w, P + o->fc2_b, NT, H4, D);
    memcpy(a->x_out, a->x_mid, ND * sizeof(float));
    gated_residual_forward(a->x_out, a->fc2, c6 + 5 * D, D6, N, T, D);
}

/* x̂ = (x − mean)·rstd per row: the LayerNorm output, recomputed for the
 * modulate backward instead of being kept. */
static void ln_recompute(float *xhat, const float *x, const float *mean, const float *rstd, int rows, int D)
{
#pragma omp parallel for schedule(static) if ((long)rows * D >= (1L << 15))
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D;
        float *o = xhat + (size_t)r * D;
        const float mf = mean[r], rf = rstd[r];
        for (int d = 0; d < D; d++)
            o[d] = (xr[d] - mf) * rf;
    }
}

#define GP(off) (dP ? dP + (off) : NULL)

/* dx: in = gradient w.r.t. a->x_out, out = gradient w.r.t. a->x_in.
 * dP == NULL: frozen block, no parameter gradient and no adaLN path. */
static void sit_block_backward(const sit *m, const float *P, int i, const sit_block_acts *a, const float *silu_c,
                               sit_bwd_scratch *s, float *dx, float *dP, float *d_silu_c, float *attn_ws, int N)
{
    const sit_block_offsets *o = &m->blocks[i];
    const int D = m->D, T = m->T, NT = N * T, H4 = m->H4, D6 = 6 * D;
    const float *c6 = a->c6;
    float *dc6 = dP ? s->dc6 : NULL;
    if (dc6)
        zero(dc6, (size_t)N * D6);

    /* MLP branch: x_out = x_mid + gate_mlp ⊙ fc2(gelu(fc1(modulate(norm2(x_mid))))) */
    gated_residual_backward(s->dh, false, dc6 ? dc6 + 5 * D : NULL, D6, dx, a->fc2, c6 + 5 * D, D6, N, T, D);
    linear_backward(s->dh4a, false, GP(o->fc2_w), GP(o->fc2_b), s->dh, a->act, P + o->fc2_w, NT, H4, D);
    gelu_tanh_backward(s->dh4b, false, s->dh4a, a->fc1, (size_t)NT * H4);
    linear_backward(s->dmod, false, GP(o->fc1_w), GP(o->fc1_b), s->dh4b, a->mod2, P + o->fc1_w, NT, D, H4);
    /* modulate_backward reads x for dscale; without parameter gradients any
     * valid buffer will do (its sums are discarded), so skip the recompute. */
    const float *xh2 = a->mod2;
    if (dP) {
        ln_recompute(s->xhat, a->x_mid, a->ln2_mean, a->ln2_rstd, NT, D);
        xh2 = s->xhat;
    }
    modulate_backward(s->dln, false, dc6 ? dc6 + 3 * D : NULL, dc6 ? dc6 + 4 * D : NULL, D6, s->dmod, xh2, c6 + 4 * D,
                      D6, N, T, D);
    layer_norm_backward(dx, NULL, NULL, s->dln, a->x_mid, a->ln2_mean, a->ln2_rstd, NULL, NT, D);

    /* attention branch: x_mid = x_in + gate_msa ⊙ proj(attn(qkv(modulate(norm1(x_in))))) */
    gated_residual_backward(s->dh, false, dc6 ? dc6 + 2 * D : NULL, D6, dx, a->attn_proj, c6 + 2 * D, D6, N, T, D);
    linear_backward(s->dmod, false, GP(o->proj_w), GP(o->proj_b), s->dh, a->attn, P + o->proj_w, NT, D, D);
    const float *q = a->qkv_n;
    attention_backward(s->dqkv, s->dqkv + D, s->dqkv + 2 * D, false, 3 * D, s->dmod, a->probs, q, q + D, q + 2 * D,
                       3 * D, N, T, m->NH, m->HD, attn_ws);
    if (m->cfg.qk_norm)
        qk_norm_backward(m, P, o, a, s->dqkv_raw, s->dqkv, dP, NT);
    linear_backward(s->dh, false, GP(o->qkv_w), GP(o->qkv_b), s->dqkv_raw, a->mod1, P + o->qkv_w, NT, D, 3 * D);
    const float *xh1 = a->mod1;
    if (dP) {
        ln_recompute(s->xhat, a->x_in, a->ln1_mean, a->ln1_rstd, NT, D);
        xh1 = s->xhat;
    }
    modulate_backward(s->dln, false, dc6 ? dc6 : NULL, dc6 ? dc6 + D : NULL, D6, s->dh, xh1, c6 + D, D6, N, T, D);
    layer_norm_backward(dx, NULL, NULL, s->dln, a->x_in, a->ln1_mean, a->ln1_rstd, NULL, NT, D);

    if (dP)
        linear_backward(d_silu_c, true, dP + o->ada_w, dP + o->ada_b, dc6, silu_c, P + o->ada_w, N, D, D6);
}

/* dst[n, j, i] (+)= src[n, i, j] for n < N, i < R, j < K: tokens [N,T,D]
 * <-> grid [N,D,T] (T = G·G row-major, which is iREPA's reshape(B,H,W,D)
 * then permute(0,3,1,2)). */
static void batched_transpose(float *dst, const float *src, int N, int R, int K, bool accumulate)
{
#pragma omp parallel for collapse(2) schedule(static) if ((long)N * R * K >= (1L << 15))
    for (int n = 0; n < N; n++)
        for (int j = 0; j < K; j++) {
            float *d = dst + ((size_t)n * K + j) * R;
            const float *sp = src + (size_t)n * R * K + j;
            if (accumulate)
                for (int i = 0; i < R; i++)
                    d[i] += sp[(size_t)i * K];
            else
                for (int i = 0; i < R; i++)
                    d[i] = sp[(size_t)i * K];
        }
}

/* iREPA conv projector e: tokens -> grid -> Conv2d -> grid -> tokens. */
static void conv_projector_forward(const sit *m, const float *P, int e, sit_projector_acts *pa, const float *h, int N,
                                   float *conv_out, float *ws)
{
    const sit_projector_offsets *o = &m->proj[e];
    conv2d_shape cs = proj_conv_shape(m, e, N);
    batched_transpose(pa->grid, h, N, m->T, m->D, false);
    conv2d_forward(conv_out, pa->grid, P + o->conv_w, P + o->conv_b, &cs, ws);
    batched_transpose(pa->out, conv_out, N, m->cfg.z_dims[e], m->T, false);
}

/* Projector e on h [N,T,D]: Linear, SiLU, Linear, SiLU, Linear. */
static void projector_forward(const sit *m, const float *P, int e, sit_projector_acts *pa, const float *h, int NT)
{
    const sit_projector_offsets *o = &m->proj[e];
    const int D = m->D, Pd = m->cfg.projector_dim, Z = m->cfg.z_dims[e];
    linear_forward(pa->h0, h, P + o->w0, P + o->b0, NT, D, Pd);
    silu_forward(pa->s0, pa->h0, (size_t)NT * Pd);
    linear_forward(pa->h2, pa->s0, P + o->w2, P + o->b2, NT, Pd, Pd);
    silu_forward(pa->s2, pa->h2, (size_t)NT * Pd);
    linear_forward(pa->out, pa->s2, P + o->w4, P + o->b4, NT, Pd, Z);
}

/* Adds the gradient of Σ dzt ⊙ projector_e(h) (dzt [N,T,z_dims[e]]) into dx
 * (w.r.t. h) and dP. */
static void projector_backward(const sit *m, const float *P, int e, const sit_projector_acts *pa, const float *h,
                               const float *dzt, sit_bwd_scratch *s, float *dx, float *dP, int N, float *conv_ws)
{
    const sit_projector_offsets *o = &m->proj[e];
    const int D = m->D, Pd = m->cfg.projector_dim, Z = m->cfg.z_dims[e], T = m->T, NT = N * T;
    if (conv_projector(m)) {
        conv2d_shape cs = proj_conv_shape(m, e, N);
        batched_transpose(s->dpa, dzt, N, T, Z, false); /* d grid_out [N,Z,G,G] */
        zero(s->dpb, (size_t)NT * D);
        conv2d_backward(s->dpb, GP(o->conv_w), GP(o->conv_b), s->dpa, pa->grid, P + o->conv_w, &cs, conv_ws);
        batched_transpose(dx, s->dpb, N, D, T, true); /* back to tokens, added into the stream */
        return;
    }
    linear_backward(s->dpa, false, GP(o->w4), GP(o->b4), dzt, pa->s2, P + o->w4, NT, Pd, Z);
    zero(s->dpb, (size_t)NT * Pd);
    silu_backward(s->dpb, s->dpa, pa->h2, (size_t)NT * Pd);
    linear_backward(s->dpa, false, GP(o->w2), GP(o->b2), s->dpb, pa->s0, P + o->w2, NT, Pd, Pd);
    zero(s->dpb, (size_t)NT * Pd);
    silu_backward(s->dpb, s->dpa, pa->h0, (size_t)NT * Pd);
    linear_backward(dx, true, GP(o->w0), GP(o->b0), s->dpb, h, P + o->w0, NT, D, Pd);
}

/* FinalLayer: out_tokens = linear(modulate(norm_final(x), shift, scale)). */
static void final_forward(const sit *m, const float *P, bool packed, float *c2, float *lnf_mean, float *lnf_rstd,
                          float *modf, float *out_tokens, const float *x, const float *silu_c, int N)
{
    const int D = m->D, T = m->T, NT = N * T;
    lin(packed, c2, silu_c, P + m->final_ada_w, P + m->final_ada_b, N, D, 2 * D);
    layer_norm_forward(modf, lnf_mean, lnf_rstd, x, NULL, NULL, NT, D, SIT_LN_EPS);
    modulate_forward(modf, modf, c2, c2 + D, 2 * D, N, T, D);
    lin(packed, out_tokens, modf, P + m->final_w, P + m->final_b, NT, D, m->PC);
}

/* ---- the latent BatchNorm ---- */

void sit_latent_norm_forward(const sit *m, float *params, float *xn, float *batch_mean, float *batch_rstd,
                             const float *z, int N, bool train)
{
    const sit_config *cfg = &m->cfg;
    float *P = params;
    const int C = m->C, HW = m->H * m->H;
    if (train) {
        /* under data parallelism the reference's SyncBatchNorm: global-batch statistics */
        if (dist_world() > 1)
            sync_batch_norm_train_forward(xn, batch_mean, batch_rstd, P + m->bn_mean, P + m->bn_var, z, NULL, NULL,
                                          N, C, HW, cfg->bn_eps, cfg->bn_momentum);
        else
            batch_norm_train_forward(xn, batch_mean, batch_rstd, P + m->bn_mean, P + m->bn_var, z, NULL, NULL, N, C,
                                     HW, cfg->bn_eps, cfg->bn_momentum);
        P[m->bn_count] += 1.0f;
    } else {
        batch_norm_eval_forward(xn, z, P + m->bn_mean, P + m->bn_var, NULL, NULL, N, C, HW, cfg->bn_eps);
    }
}

void sit_latent_norm_backward(const sit *m, const float *params, float *dz, const float *dxn, const float *z,
                              const float *batch_mean, const float *batch_rstd, int N, bool train)
{
    const int C = m->C, HW = m->H * m->H;
    if (train)
        (dist_world() > 1 ? sync_batch_norm_train_backward : batch_norm_train_backward)(
            dz, NULL, NULL, dxn, z, batch_mean, batch_rstd, NULL, N, C, HW);
    else
        batch_norm_eval_backward(dz, NULL, NULL, dxn, z, params + m->bn_mean, params + m->bn_var, NULL, N, C, HW,
                                 m->cfg.bn_eps);
}

/* ---- the network ---- */

/* Labels after dropout (spec §4.2): in train mode each label is replaced by
 * the null class with probability class_dropout_prob (one uniform draw per
 * sample), or where the given mask says so. */
static void drop_labels(int *labels, const sit *m, const sit_net_opts *o, const sit_net_inputs *in, int N)
{
    const sit_config *cfg = &m->cfg;
    const int null_class = cfg->num_classes;
    for (int n = 0; n < N; n++) {
        int y = in->y[n];
        if (y < 0 || y > cfg->num_classes || (y == null_class && cfg->class_dropout_prob <= 0))
            die("sit_net_forward: label %d of sample %d is outside [0, %d)", y, n,
                cfg->num_classes + (cfg->class_dropout_prob > 0));
        bool drop = false;
        if (o->train && cfg->class_dropout_prob > 0)
            drop = in->force_drop ? in->force_drop[n] == 1 : rng_uniform(in->rng) < cfg->class_dropout_prob;
        labels[n] = drop ? null_class : y;
    }
}

void sit_net_forward(sit_acts *a, const sit *m, const float *params, arena *ar, const sit_net_opts *opts,
                     const sit_net_inputs *in, int N)
{
    const sit_config *cfg = &m->cfg;
    if (N < 1 || !in->x_t || !in->t || !in->y)
        die("sit_net_forward: needs N >= 1, x_t, t and labels");
    if (opts->align_only && cfg->n_encoders == 0)
        die("sit_net_forward: align-only mode needs at least one projector");
    if (opts->train && !in->force_drop && cfg->class_dropout_prob > 0 && !in->rng)
        die("sit_net_forward: label dropout must be drawn but no rng was given");
    carver c = {ar, 0};
    carve_acts(a, m, N, opts, &c);
    drop_labels(a->labels, m, opts, in, N);
    const float *P = params;
    const int NT = N * m->T;
    patch_embed_forward(m, P, false, a->x0, a->patches, in->x_t, N);
    cond_forward(m, P, false, a->t_freq, a->t_h, a->t_hs, a->c, a->silu_c, in->t, a->labels, N);
    for (int i = 0; i < a->n_blocks; i++) {
        sit_block_forward(m, P, false, i, &a->blocks[i], a->silu_c, N, a->attn_ws);
        if (i + 1 == cfg->encoder_depth)
            for (int e = 0; e < cfg->n_encoders; e++) {
                if (conv_projector(m))
                    conv_projector_forward(m, P, e, &a->proj[e], a->blocks[i].x_out, N, a->conv_out, a->conv_ws);
                else
                    projector_forward(m, P, e, &a->proj[e], a->blocks[i].x_out, NT);
            }
    }
    if (opts->align_only)
        return;
    final_forward(m, P, false, a->c2, a->lnf_mean, a->lnf_rstd, a->modf, a->out_tokens, a->blocks[a->n_blocks - 1].x_out,
                  a->silu_c, N);
    unpatchify_forward(a->model_output, a->out_tokens, N, m->C, m->H, m->H, m->p);
}

void sit_net_backward(const sit *m, const float *params, const sit_acts *a, arena *ar, const float *d_out,
                      const float *const *d_zs_tilde, float *dparams, float *dx_t)
{
    const sit_config *cfg = &m->cfg;
    const float *P = params;
    float *dP = dparams;
    const int N = a->N, C = m->C, D = m->D, T = m->T, NT = N * T;
    const size_t ND = (size_t)NT * D;
    if (d_out && a->opts.align_only)
        die("sit_net_backward: an align-only pass has no model_output to take a gradient of");
    if (!dP && !dx_t)
        return;
    size_t mark = arena_mark(ar);
    carver c = {ar, 0};
    sit_bwd_scratch s;
    carve_bwd(&s, m, N, &c);
    float *dx = s.dx;
    zero(dx, ND);
    if (dP)
        zero(s.d_silu_c, (size_t)N * D);

    /* final layer */
    if (d_out) {
        zero(s.dtok, (size_t)NT * m->PC);
        unpatchify_backward(s.dtok, d_out, N, C, m->H, m->H, m->p);
        linear_backward(s.dmod, false, GP(m->final_w), GP(m->final_b), s.dtok, a->modf, P + m->final_w, NT, D, m->PC);
        const float *xlast = a->blocks[a->n_blocks - 1].x_out;
        const float *xh = a->modf;
        if (dP) {
            ln_recompute(s.xhat, xlast, a->lnf_mean, a->lnf_rstd, NT, D);
            xh = s.xhat;
            zero(s.dc2, (size_t)N * 2 * D);
        }
        modulate_backward(s.dln, false, dP ? s.dc2 : NULL, dP ? s.dc2 + D : NULL, 2 * D, s.dmod, xh, a->c2 + D, 2 * D,
                          N, T, D);
        layer_norm_backward(dx, NULL, NULL, s.dln, xlast, a->lnf_mean, a->lnf_rstd, NULL, NT, D);
        if (dP)
            linear_backward(s.d_silu_c, true, dP + m->final_ada_w, dP + m->final_ada_b, s.dc2, a->silu_c,
                            P + m->final_ada_w, N, D, 2 * D);
    }

    for (int i = a->n_blocks - 1; i >= 0; i--) {
        if (i + 1 == cfg->encoder_depth && d_zs_tilde)
            for (int e = 0; e < cfg->n_encoders; e++)
                projector_backward(m, P, e, &a->proj[e], a->blocks[i].x_out, d_zs_tilde[e], &s, dx, dP, N,
                                   a->conv_ws);
        sit_block_backward(m, P, i, &a->blocks[i], a->silu_c, &s, dx, dP, s.d_silu_c, a->attn_ws, N);
    }

    /* patch embed.  pos_embed is frozen, except when a trainer marks it
     * trainable (the release's REPA-E loop re-enables its grad). */
    if (dP && param_find(&m->table, "pos_embed")->kind == PARAM_TRAINABLE)
        for (int n = 0; n < N; n++)
            for (size_t k = 0; k < (size_t)m->T * D; k++)
                dP[m->pos_embed + k] += dx[(size_t)n * m->T * D + k];
    linear_backward(dx_t ? s.dtok : NULL, false, GP(m->x_w), GP(m->x_b), dx, a->patches, P + m->x_w, NT, m->PC, D);

    /* conditioning: c = t_embedder(t) + table[labels] */
    if (dP) {
        zero(s.dc, (size_t)N * D);
        silu_backward(s.dc, s.d_silu_c, a->c, (size_t)N * D);
        float *dtab = dP + m->y_table;
        for (int n = 0; n < N; n++)
            for (int d = 0; d < D; d++)
                dtab[(size_t)a->labels[n] * D + d] += s.dc[(size_t)n * D + d];
        zero(s.d_ths, (size_t)N * D);
        linear_backward(s.d_ths, true, dP + m->t2_w, dP + m->t2_b, s.dc, a->t_hs, P + m->t2_w, N, D, D);
        zero(s.d_th, (size_t)N * D);
        silu_backward(s.d_th, s.d_ths, a->t_h, (size_t)N * D);
        linear_backward(NULL, true, dP + m->t0_w, dP + m->t0_b, s.d_th, a->t_freq, P + m->t0_w, N, SIT_FREQ_DIM, D);
    }

    if (dx_t)
        patchify_backward(dx_t, s.dtok, N, C, m->H, m->H, m->p);
    arena_reset(ar, mark);
}

/* ---- sampling ---- */

typedef struct sit_infer_bufs {
    float *patches, *xa, *xb, *t_freq, *t_h, *t_hs, *c, *silu_c;
    sit_block_acts blk;
    float *c2, *lnf_mean, *lnf_rstd, *modf, *out_tokens, *attn_ws;
} sit_infer_bufs;

static void carve_infer(sit_infer_bufs *b, const sit *m, int N, carver *c)
{
    const size_t NT = (size_t)N * m->T, D = m->D;
    b->patches = cv(c, NT * m->PC);
    b->xa = cv(c, NT * D), b->xb = cv(c, NT * D);
    b->t_freq = cv(c, (size_t)N * SIT_FREQ_DIM);
    b->t_h = cv(c, N * D), b->t_hs = cv(c, N * D), b->c = cv(c, N * D), b->silu_c = cv(c, N * D);
    carve_block(&b->blk, m, N, false, c);
    b->c2 = cv(c, N * 2 * D);
    b->lnf_mean = cv(c, NT), b->lnf_rstd = cv(c, NT);
    b->modf = cv(c, NT * D);
    b->out_tokens = cv(c, NT * m->PC);
    b->attn_ws = cv(c, attention_workspace_floats(N, m->T, m->NH, m->HD));
}

size_t sit_velocity_plan_bytes(const sit *m, int N)
{
    carver c = {NULL, 0};
    sit_infer_bufs b;
    carve_infer(&b, m, N, &c);
    return c.bytes;
}

/* Every weight that sit_velocity multiplies through lin() or the patch
 * embed, where linear_weight_prepackable says so (the blocks' adaLN, qkv,
 * proj, fc1, fc2, the timestep MLP, the final adaLN and linear). */
bool sit_pack_for_sampling(const sit *m, float *params)
{
    if (!gemm_outside_regions_uses_own_kernel() || gemm_prepacked_width() == 0)
        return false;
    const int D = m->D, H4 = m->H4;
#define PACK(off, IN, OUT)                                                                                         \
    do {                                                                                                           \
        if (linear_weight_prepackable(IN, OUT))                                                                    \
            linear_prepack_weight(params + (off), IN, OUT);                                                        \
    } while (0)
    PACK(m->x_w, m->PC, D);
    PACK(m->t0_w, SIT_FREQ_DIM, D);
    PACK(m->t2_w, D, D);
    for (int i = 0; i < m->cfg.depth; i++) {
        const sit_block_offsets *o = &m->blocks[i];
        PACK(o->ada_w, D, 6 * D);
        PACK(o->qkv_w, D, 3 * D);
        PACK(o->proj_w, D, D);
        PACK(o->fc1_w, D, H4);
        PACK(o->fc2_w, H4, D);
    }
    PACK(m->final_ada_w, D, 2 * D);
    PACK(m->final_w, D, m->PC);
#undef PACK
    return true;
}

void sit_velocity(const sit *m, const float *params, bool packed, arena *ar, float *v, const float *x_t,
                  const float *t, const int *y, int N)
{
    const int rows = m->cfg.num_classes + (m->cfg.class_dropout_prob > 0);
    for (int n = 0; n < N; n++)
        if (y[n] < 0 || y[n] >= rows)
            die("sit_velocity: label %d of sample %d is outside [0, %d)", y[n], n, rows);
    size_t mark = arena_mark(ar);
    carver c = {ar, 0};
    sit_infer_bufs b;
    carve_infer(&b, m, N, &c);
    patch_embed_forward(m, params, packed, b.xa, b.patches, x_t, N);
    cond_forward(m, params, packed, b.t_freq, b.t_h, b.t_hs, b.c, b.silu_c, t, y, N);
    float *x = b.xa, *other = b.xb;
    for (int i = 0; i < m->cfg.depth; i++) {
        b.blk.x_in = x;
        b.blk.x_out = other;
        sit_block_forward(m, params, packed, i, &b.blk, b.silu_c, N, b.attn_ws);
        other = x;
        x = b.blk.x_out;
    }
    final_forward(m, params, packed, b.c2, b.lnf_mean, b.lnf_rstd, b.modf, b.out_tokens, x, b.silu_c, N);
    unpatchify_forward(v, b.out_tokens, N, m->C, m->H, m->H, m->p);
    arena_reset(ar, mark);
}
