/* vit.c — DINOv2-family ViT: table, load/save, forward, backward (see vit.h). */
#include "models/vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/act.h"
#include "ops/attention.h"
#include "ops/embed.h"
#include "ops/fast_exp.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/resample.h"

/* ------------------------------------------------------------------ config */

int vit_heads_for_width(int embed_dim)
{
    switch (embed_dim) {
    case 192: return 3;
    case 384: return 6;
    case 768: return 12;
    case 1024: return 16;
    case 1536: return 24;
    default: return 0;
    }
}

vit_config vit_preset(const char *name, int img_size)
{
    vit_config c = {
        .img_size = img_size, .patch = 14, .in_chans = 3, .mlp_ratio = 4.0f, .num_register_tokens = 0,
        .layerscale = true, .layerscale_init = 1e-5f, .num_classes = 0, .ln_eps = 1e-6f,
    };
    char base[64];
    snprintf(base, sizeof base, "%s", name);
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, "-reg") == 0) {
        base[n - 4] = 0;
        c.num_register_tokens = 4;
    }
    if (strcmp(base, "dinov2-vit-s") == 0) {
        c.embed_dim = 384, c.depth = 12, c.heads = 6;
    } else if (strcmp(base, "dinov2-vit-b") == 0) {
        c.embed_dim = 768, c.depth = 12, c.heads = 12;
    } else if (strcmp(base, "dinov2-vit-l") == 0) {
        c.embed_dim = 1024, c.depth = 24, c.heads = 16;
    } else if (strcmp(base, "dinov2-vit-g") == 0) {
        c.embed_dim = 1536, c.depth = 40, c.heads = 24, c.ffn = VIT_FFN_SWIGLU; /* H = 4096 */
    } else {
        die("unknown ViT preset '%s' (known: dinov2-vit-s, dinov2-vit-b, dinov2-vit-l, dinov2-vit-g, each "
            "optionally with -reg for 4 register tokens)", name);
    }
    return c;
}

int vit_ffn_hidden(const vit_config *c)
{
    if (c->ffn_hidden > 0)
        return c->ffn_hidden;
    int h = (int)(c->embed_dim * c->mlp_ratio);
    if (c->ffn != VIT_FFN_SWIGLU)
        return h;
    /* SwiGLUFFNFused: (int(hidden * 2 / 3) + 7) // 8 * 8, the division in double as Python's. */
    return ((int)((double)h * 2 / 3) + 7) / 8 * 8;
}

void vit_config_check(const vit_config *c)
{
    if (c->patch <= 0 || c->img_size <= 0 || c->img_size % c->patch != 0)
        die("ViT: img_size %d is not a positive multiple of the patch size %d", c->img_size, c->patch);
    if (c->in_chans <= 0)
        die("ViT: in_chans %d must be positive", c->in_chans);
    if (c->embed_dim <= 0 || c->heads <= 0 || c->embed_dim % c->heads != 0)
        die("ViT: embed_dim %d is not a positive multiple of heads %d", c->embed_dim, c->heads);
    if (c->depth <= 0)
        die("ViT: depth %d must be positive", c->depth);
    if (c->ffn != VIT_FFN_MLP && c->ffn != VIT_FFN_SWIGLU)
        die("ViT: unknown FFN kind %d", (int)c->ffn);
    if (c->ffn_hidden < 0)
        die("ViT: ffn_hidden %d must be positive (or 0: from mlp_ratio)", c->ffn_hidden);
    if (c->ffn_hidden == 0 && (!(c->mlp_ratio > 0) || vit_ffn_hidden(c) <= 0))
        die("ViT: mlp_ratio %g gives no FFN width", (double)c->mlp_ratio);
    if (c->num_register_tokens < 0 || c->num_classes < 0)
        die("ViT: negative register or class count");
    if (!(c->ln_eps > 0))
        die("ViT: ln_eps must be positive");
}

static const st_tensor *find_pref(const safetensors *st, const char *prefix, const char *name)
{
    char key[PARAM_NAME_MAX + 64];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return safetensors_find(st, key);
}

static const st_tensor *require_pref(const safetensors *st, const char *prefix, const char *name)
{
    const st_tensor *t = find_pref(st, prefix, name);
    if (!t)
        die("'%s': no tensor '%s%s'; is this a DINOv2-style ViT checkpoint (and the right key prefix)?", st->path,
            prefix, name);
    return t;
}

vit_config vit_config_from_checkpoint(const safetensors *st, const char *prefix, int img_size, int heads)
{
    vit_config c = {.mlp_ratio = 4.0f, .layerscale_init = 1e-5f, .ln_eps = 1e-6f};
    char buf[160];
    const st_tensor *t = require_pref(st, prefix, "cls_token");
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[1] != 1)
        die("'%s': %scls_token has shape %s, expected [1, 1, D]", st->path, prefix,
            st_shape_str(t->ndim, t->shape, buf, sizeof buf));
    c.embed_dim = (int)t->shape[2];
    t = require_pref(st, prefix, "patch_embed.proj.weight");
    if (t->ndim != 4 || t->shape[0] != c.embed_dim || t->shape[2] != t->shape[3])
        die("'%s': %spatch_embed.proj.weight has shape %s, expected [%d, C, p, p]", st->path, prefix,
            st_shape_str(t->ndim, t->shape, buf, sizeof buf), c.embed_dim);
    c.in_chans = (int)t->shape[1];
    c.patch = (int)t->shape[2];
    t = require_pref(st, prefix, "pos_embed");
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != c.embed_dim)
        die("'%s': %spos_embed has shape %s, expected [1, 1+G², %d]", st->path, prefix,
            st_shape_str(t->ndim, t->shape, buf, sizeof buf), c.embed_dim);
    int g = (int)lround(sqrt((double)(t->shape[1] - 1)));
    if ((int64_t)g * g != t->shape[1] - 1)
        die("'%s': %spos_embed has %lld patch entries, not a square grid", st->path, prefix,
            (long long)(t->shape[1] - 1));
    c.img_size = img_size > 0 ? img_size : g * c.patch;
    if (find_pref(st, prefix, "blocks.0.0.norm1.weight"))
        die("'%s': chunked block keys (blocks.<chunk>.<i>.*, block_chunks > 0) are not supported; "
            "re-save the model with block_chunks=0 (the torch.hub layout)", st->path);
    for (c.depth = 0;; c.depth++) {
        snprintf(buf, sizeof buf, "blocks.%d.norm1.weight", c.depth);
        if (!find_pref(st, prefix, buf))
            break;
    }
    if (c.depth == 0)
        die("'%s': no blocks.0.norm1.weight under prefix '%s'", st->path, prefix);
    if (find_pref(st, prefix, "blocks.0.mlp.w12.weight") || find_pref(st, prefix, "blocks.0.mlp.w3.weight")) {
        /* SwiGLUFFNFused (ViT-g): w12 is [2H, D].  H is taken as stored
         * (ffn_hidden), since DINOv2's rounding rule cannot be inverted
         * uniquely; mlp_ratio is then only informative: DINOv2's 4 where that
         * gives H (ViT-g), else 1.5·H/D, which undoes the 2/3. */
        t = require_pref(st, prefix, "blocks.0.mlp.w12.weight");
        if (t->ndim != 2 || t->shape[1] != c.embed_dim || t->shape[0] < 2 || t->shape[0] % 2)
            die("'%s': %sblocks.0.mlp.w12.weight has shape %s, expected [2H, %d]", st->path, prefix,
                st_shape_str(t->ndim, t->shape, buf, sizeof buf), c.embed_dim);
        c.ffn = VIT_FFN_SWIGLU;
        c.ffn_hidden = (int)(t->shape[0] / 2);
        vit_config four = {.embed_dim = c.embed_dim, .mlp_ratio = 4.0f, .ffn = VIT_FFN_SWIGLU};
        c.mlp_ratio = vit_ffn_hidden(&four) == c.ffn_hidden ? 4.0f : 1.5f * (float)c.ffn_hidden / (float)c.embed_dim;
    } else {
        t = require_pref(st, prefix, "blocks.0.mlp.fc1.weight");
        if (t->ndim != 2 || t->shape[1] != c.embed_dim)
            die("'%s': %sblocks.0.mlp.fc1.weight has shape %s, expected [H, %d]", st->path, prefix,
                st_shape_str(t->ndim, t->shape, buf, sizeof buf), c.embed_dim);
        c.mlp_ratio = (float)t->shape[0] / (float)c.embed_dim;
        if ((int)(c.embed_dim * c.mlp_ratio) != t->shape[0])
            die("'%s': MLP width %lld is not representable as embed_dim·mlp_ratio", st->path,
                (long long)t->shape[0]);
    }
    c.layerscale = find_pref(st, prefix, "blocks.0.ls1.gamma") != NULL;
    t = find_pref(st, prefix, "register_tokens");
    if (t) {
        if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != c.embed_dim)
            die("'%s': %sregister_tokens has shape %s, expected [1, R, %d]", st->path, prefix,
                st_shape_str(t->ndim, t->shape, buf, sizeof buf), c.embed_dim);
        c.num_register_tokens = (int)t->shape[1];
    }
    t = find_pref(st, prefix, "head.weight");
    if (t) {
        if (t->ndim != 2 || t->shape[1] != c.embed_dim)
            die("'%s': %shead.weight has shape %s, expected [K, %d]", st->path, prefix,
                st_shape_str(t->ndim, t->shape, buf, sizeof buf), c.embed_dim);
        c.num_classes = (int)t->shape[0];
    }
    c.heads = heads > 0 ? heads : vit_heads_for_width(c.embed_dim);
    if (c.heads == 0)
        die("'%s': no default head count for width %d (known widths 192, 384, 768, 1024, 1536); pass it explicitly",
            st->path, c.embed_dim);
    vit_config_check(&c);
    return c;
}

/* ------------------------------------------------------------------- model */

void vit_build(vit *m, const vit_config *cfg)
{
    vit_config_check(cfg);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const vit_config *c = &m->cfg;
    const int64_t D = c->embed_dim;
    m->grid = c->img_size / c->patch;
    m->npatch = m->grid * m->grid;
    m->ntok = 1 + c->num_register_tokens + m->npatch;
    m->hidden = vit_ffn_hidden(c);
    m->ffn1 = c->ffn == VIT_FFN_SWIGLU ? 2 * m->hidden : m->hidden;
    const int64_t Hd = m->hidden, H1 = m->ffn1, K = c->patch;
    const bool swiglu = c->ffn == VIT_FFN_SWIGLU;
    param_table *t = &m->table;
    char n[PARAM_NAME_MAX];

    /* In the order of DINOv2's state_dict(): parameters in registration order
     * (cls_token, pos_embed, register_tokens, mask_token, then modules). */
    m->cls_token = param_add_ex(t, "cls_token", INIT_NORMAL, 1e-6f, PARAM_TRAINABLE, 3, (int64_t[]){1, 1, D});
    m->pos_embed = param_add_ex(t, "pos_embed", INIT_NORMAL, 0.02f, PARAM_TRAINABLE, 3,
                                (int64_t[]){1, 1 + m->npatch, D});
    if (c->num_register_tokens > 0)
        m->register_tokens = param_add_ex(t, "register_tokens", INIT_NORMAL, 1e-6f, PARAM_TRAINABLE, 3,
                                          (int64_t[]){1, c->num_register_tokens, D});
    m->mask_token = param_add_ex(t, "mask_token", INIT_ZERO, 0, PARAM_FROZEN, 2, (int64_t[]){1, D});
    m->patch_w = param_add(t, "patch_embed.proj.weight", INIT_TORCH_DEFAULT, 4, (int64_t[]){D, c->in_chans, K, K});
    m->patch_b = param_add_ex(t, "patch_embed.proj.bias", INIT_TORCH_BIAS, (float)(c->in_chans * K * K),
                              PARAM_TRAINABLE, 1, (int64_t[]){D});
    m->blocks = xcalloc((size_t)c->depth, sizeof(vit_block));
    for (int i = 0; i < c->depth; i++) {
        vit_block *b = &m->blocks[i];
        b->norm1_w = param_add(t, param_name(n, "blocks.%d.norm1.weight", i), INIT_ONE, 1, (int64_t[]){D});
        b->norm1_b = param_add(t, param_name(n, "blocks.%d.norm1.bias", i), INIT_ZERO, 1, (int64_t[]){D});
        b->qkv_w = param_add(t, param_name(n, "blocks.%d.attn.qkv.weight", i), INIT_NORMAL, 2, (int64_t[]){3 * D, D});
        b->qkv_b = param_add(t, param_name(n, "blocks.%d.attn.qkv.bias", i), INIT_ZERO, 1, (int64_t[]){3 * D});
        b->proj_w = param_add(t, param_name(n, "blocks.%d.attn.proj.weight", i), INIT_NORMAL, 2, (int64_t[]){D, D});
        b->proj_b = param_add(t, param_name(n, "blocks.%d.attn.proj.bias", i), INIT_ZERO, 1, (int64_t[]){D});
        if (c->layerscale)
            b->ls1 = param_add_ex(t, param_name(n, "blocks.%d.ls1.gamma", i), INIT_CONSTANT, c->layerscale_init,
                                  PARAM_TRAINABLE, 1, (int64_t[]){D});
        b->norm2_w = param_add(t, param_name(n, "blocks.%d.norm2.weight", i), INIT_ONE, 1, (int64_t[]){D});
        b->norm2_b = param_add(t, param_name(n, "blocks.%d.norm2.bias", i), INIT_ZERO, 1, (int64_t[]){D});
        const char *l1 = swiglu ? "w12" : "fc1", *l2 = swiglu ? "w3" : "fc2";
        b->ffn1_w = param_add(t, param_name(n, "blocks.%d.mlp.%s.weight", i, l1), INIT_NORMAL, 2, (int64_t[]){H1, D});
        b->ffn1_b = param_add(t, param_name(n, "blocks.%d.mlp.%s.bias", i, l1), INIT_ZERO, 1, (int64_t[]){H1});
        b->ffn2_w = param_add(t, param_name(n, "blocks.%d.mlp.%s.weight", i, l2), INIT_NORMAL, 2, (int64_t[]){D, Hd});
        b->ffn2_b = param_add(t, param_name(n, "blocks.%d.mlp.%s.bias", i, l2), INIT_ZERO, 1, (int64_t[]){D});
        if (c->layerscale)
            b->ls2 = param_add_ex(t, param_name(n, "blocks.%d.ls2.gamma", i), INIT_CONSTANT, c->layerscale_init,
                                  PARAM_TRAINABLE, 1, (int64_t[]){D});
    }
    m->norm_w = param_add(t, "norm.weight", INIT_ONE, 1, (int64_t[]){D});
    m->norm_b = param_add(t, "norm.bias", INIT_ZERO, 1, (int64_t[]){D});
    if (c->num_classes > 0) {
        m->head_w = param_add(t, "head.weight", INIT_NORMAL, 2, (int64_t[]){c->num_classes, D});
        m->head_b = param_add(t, "head.bias", INIT_ZERO, 1, (int64_t[]){c->num_classes});
    }
}

void vit_free(vit *m)
{
    free(m->blocks);
    param_table_free(&m->table);
    memset(m, 0, sizeof *m);
}

void vit_init_weights(const vit *m, float *params, uint64_t seed) { param_init(&m->table, params, seed); }

size_t vit_pos_resample_workspace_floats(int D, int g_in, int g_out)
{
    return (size_t)D * g_in * g_in + (size_t)D * g_out * g_out;
}

void vit_resample_pos_embed(float *out, const float *in, int D, int n_prefix, int g_in, int g_out,
                            float *workspace)
{
    memcpy(out, in, (size_t)n_prefix * D * sizeof(float));
    const float *src = in + (size_t)n_prefix * D;
    float *dst = out + (size_t)n_prefix * D;
    if (g_in == g_out) {
        memcpy(dst, src, (size_t)g_in * g_in * D * sizeof(float));
        return;
    }
    /* [g², D] token-major -> [1, D, g, g] channel-major, resize, and back. */
    const size_t n_in = (size_t)g_in * g_in, n_out = (size_t)g_out * g_out;
    float *chw_in = workspace, *chw_out = workspace + (size_t)D * n_in;
    for (size_t s = 0; s < n_in; s++)
        for (int d = 0; d < D; d++)
            chw_in[(size_t)d * n_in + s] = src[s * D + d];
    bicubic_resize_antialias_forward(chw_out, chw_in, 1, D, g_in, g_in, g_out, g_out);
    for (size_t s = 0; s < n_out; s++)
        for (int d = 0; d < D; d++)
            dst[s * D + d] = chw_out[(size_t)d * n_out + s];
}

void vit_load(const vit *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    const param_table *t = &m->table;
    const int D = m->cfg.embed_dim;
    char key[PARAM_NAME_MAX + 64], buf[160];
    size_t plen = strlen(prefix);
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        const st_tensor *s = safetensors_find(st, key);
        if (!s)
            die("'%s': missing tensor '%s' (expected shape %s); is this the right model/configuration?", st->path, key,
                st_shape_str(e->ndim, e->shape, buf, sizeof buf));
        if (e->offset != m->pos_embed || (s->ndim == 3 && s->shape[1] == e->shape[1])) {
            safetensors_load_f32(st, key, e->ndim, e->shape, params + e->offset);
            continue;
        }
        /* pos_embed at another grid: resample once, keeping the cls entry. */
        int g_in = s->ndim == 3 ? (int)lround(sqrt((double)(s->shape[1] - 1))) : 0;
        if (s->ndim != 3 || s->shape[0] != 1 || s->shape[2] != D || g_in < 1 ||
            (int64_t)g_in * g_in != s->shape[1] - 1)
            die("'%s': '%s' has shape %s; expected [1, 1+G², %d] with a square grid G (the model wants %s)", st->path,
                key, st_shape_str(s->ndim, s->shape, buf, sizeof buf), D,
                st_shape_str(e->ndim, e->shape, (char[160]){0}, 160));
        float *tmp = xmalloc((size_t)s->numel * sizeof(float));
        safetensors_read_f32(st, s, tmp);
        float *ws = xmalloc(vit_pos_resample_workspace_floats(D, g_in, m->grid) * sizeof(float));
        vit_resample_pos_embed(params + e->offset, tmp, D, 1, g_in, m->grid, ws);
        free(ws);
        free(tmp);
    }
    int extra = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        if (strncmp(name, prefix, plen) != 0 || param_find(t, name + plen) || mode == PARAM_IGNORE_EXTRA)
            continue;
        if (mode == PARAM_STRICT)
            die("'%s': unexpected tensor '%s' (shape %s) that this ViT does not have; wrong configuration?", st->path,
                name, st_shape_str(st->tensors[i].ndim, st->tensors[i].shape, buf, sizeof buf));
        if (extra++ < 5)
            warn("'%s': ignoring extra tensor '%s'", st->path, name);
    }
    if (extra > 5)
        warn("'%s': ignored %d extra tensors in all", st->path, extra);
}

float *vit_from_checkpoint(vit *m, const safetensors *st, const char *prefix, int img_size, int heads,
                           param_load_mode mode)
{
    vit_config c = vit_config_from_checkpoint(st, prefix, img_size, heads);
    vit_build(m, &c);
    float *params = param_alloc(&m->table);
    vit_load(m, params, st, prefix, mode);
    return params;
}

void vit_save(const vit *m, const float *params, st_writer *w, const char *prefix)
{
    param_save(&m->table, params, w, prefix);
}

/* ------------------------------------------------------------- activations */

/* One code path for planning (ar == NULL: count bytes) and carving. */
typedef struct planner {
    arena *ar;
    size_t bytes;
} planner;

static void *take_bytes(planner *p, size_t bytes)
{
    if (p->ar)
        return arena_alloc(p->ar, bytes);
    p->bytes += arena_round(bytes);
    return NULL;
}

static float *take(planner *p, size_t n) { return take_bytes(p, n * sizeof(float)); }

static void acts_carve(vit_acts *a, const vit *m, planner *p, int B, bool train)
{
    const vit_config *c = &m->cfg;
    const size_t D = (size_t)c->embed_dim, N = (size_t)B * m->ntok, T = (size_t)m->ntok, Hd = (size_t)m->hidden;
    const size_t H1 = (size_t)m->ffn1, cpp = (size_t)c->in_chans * c->patch * c->patch;
    memset(a, 0, sizeof *a);
    a->B = B;
    a->train = train;
    a->tok_in = take(p, (size_t)B * m->npatch * cpp);
    a->x = take(p, (train ? (size_t)c->depth + 1 : 1) * N * D);
    a->xn = take(p, N * D);
    a->mean_f = train ? take(p, N) : NULL;
    a->rstd_f = train ? take(p, N) : NULL;
    a->cls = take(p, (size_t)B * D);
    a->attn_ws = take(p, attention_workspace_floats(B, m->ntok, c->heads, c->embed_dim / c->heads));
    a->blocks = take_bytes(p, (size_t)c->depth * sizeof(vit_block_acts));
    if (train) {
        float *hg = take(p, N * Hd); /* activation output: shared scratch, recomputed in the backward */
        for (int l = 0; l < c->depth; l++) {
            vit_block_acts s = {
                .ln1 = take(p, N * D), .mean1 = take(p, N), .rstd1 = take(p, N), .qkv = take(p, N * 3 * D),
                .probs = take(p, (size_t)B * c->heads * T * T), .att = take(p, N * D), .ao = take(p, N * D),
                .xmid = take(p, N * D), .ln2 = take(p, N * D), .mean2 = take(p, N), .rstd2 = take(p, N),
                .h = take(p, N * H1), .hg = hg, .mo = take(p, N * D),
            };
            if (a->blocks)
                a->blocks[l] = s;
        }
    } else {
        /* Inference: one set of scratch for all blocks, residual stream in place. */
        float *ln = take(p, N * D), *qkv = take(p, N * 3 * D), *att = take(p, N * D), *br = take(p, N * D),
              *h = take(p, N * H1);
        /* GELU runs in place; the SwiGLU gate halves the width, so it gets its own buffer. */
        float *hg = c->ffn == VIT_FFN_SWIGLU ? take(p, N * Hd) : h;
        if (a->blocks)
            for (int l = 0; l < c->depth; l++)
                a->blocks[l] = (vit_block_acts){
                    .ln1 = ln, .qkv = qkv, .att = att, .ao = br, .xmid = a->x, .ln2 = ln, .h = h, .hg = hg, .mo = br,
                };
    }
}

/* Scratch the backward takes (and gives back) on top of the activations. */
static void block_scratch_carve(const vit *m, planner *p, int B, float **dbr, float **hg, float **dhg, float **dln,
                                float **datt, float **dqkv)
{
    const size_t D = (size_t)m->cfg.embed_dim, N = (size_t)B * m->ntok, Hd = (size_t)m->hidden;
    *dbr = take(p, N * D);
    *hg = take(p, N * (size_t)m->ffn1); /* later d h, which is ffn1 wide */
    *dhg = take(p, N * Hd);
    *dln = take(p, N * D);
    *datt = take(p, N * D);
    *dqkv = take(p, N * 3 * D);
}

static size_t backward_scratch_bytes(const vit *m, int B)
{
    const vit_config *c = &m->cfg;
    const size_t D = (size_t)c->embed_dim, N = (size_t)B * m->ntok;
    const size_t cpp = (size_t)c->in_chans * c->patch * c->patch, np = (size_t)B * m->npatch;
    planner held = {0}, block = {0}, tail = {0};
    float *f;
    take(&held, N * D);          /* dxn */
    take(&held, (size_t)B * D);  /* dcls (head) */
    take(&held, N * D);          /* dx */
    /* each block's scratch is given back before the next block, and the
     * last before the patch embedding's: the peak is the larger phase */
    block_scratch_carve(m, &block, B, &f, &f, &f, &f, &f, &f);
    take(&tail, np * D);         /* dpe */
    take(&tail, np * cpp);       /* dtok (when the image gradient is asked for) */
    return held.bytes + (block.bytes > tail.bytes ? block.bytes : tail.bytes);
}

size_t vit_plan_bytes(const vit *m, int B, bool train)
{
    planner p = {0};
    vit_acts a;
    acts_carve(&a, m, &p, B, train);
    return p.bytes + (train ? backward_scratch_bytes(m, B) : 0);
}

void vit_acts_alloc(vit_acts *a, const vit *m, arena *ar, int B, bool train)
{
    planner p = {.ar = ar};
    acts_carve(a, m, &p, B, train);
}

/* ------------------------------------------------------------ small kernels */

/* out[n,d] = a[n,d] + g[d]·br[n,d]  (g NULL = 1); out may alias a. */
static void residual_add(float *out, const float *a, const float *br, const float *g, size_t N, int D)
{
#pragma omp parallel for schedule(static) if (N * D >= (1u << 16))
    for (size_t n = 0; n < N; n++) {
        float *o = out + n * D;
        const float *x = a + n * D, *y = br + n * D;
        if (g)
            for (int d = 0; d < D; d++)
                o[d] = x[d] + g[d] * y[d];
        else
            for (int d = 0; d < D; d++)
                o[d] = x[d] + y[d];
    }
}

enum { COLS = 64 };

/* dg[d] += Σ_n dy[n,d]·br[n,d] (double sums, columns split over threads). */
static void scale_grad(float *dg, const float *dy, const float *br, size_t N, int D)
{
    int nblk = (D + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) if (N * D >= (1u << 16))
    for (int blk = 0; blk < nblk; blk++) {
        int d0 = blk * COLS, nc = D - d0 < COLS ? D - d0 : COLS;
        double acc[COLS] = {0};
        for (size_t n = 0; n < N; n++) {
            const float *a = dy + n * D + d0, *b = br + n * D + d0;
            for (int j = 0; j < nc; j++)
                acc[j] += (double)a[j] * b[j];
        }
        for (int j = 0; j < nc; j++)
            dg[d0 + j] += (float)acc[j];
    }
}

/* out[n,d] = dy[n,d]·g[d] */
static void scale_rows(float *out, const float *dy, const float *g, size_t N, int D)
{
#pragma omp parallel for schedule(static) if (N * D >= (1u << 16))
    for (size_t n = 0; n < N; n++)
        for (int d = 0; d < D; d++)
            out[n * D + d] = dy[n * D + d] * g[d];
}

/* SwiGLU gate of DINOv2's SwiGLUFFN, between w12 and w3: in [N, 2H] holds
 * u₁ = in[n, :H] and u₂ = in[n, H:] (torch's chunk(2, dim=-1)), out [N, H] =
 * SiLU(u₁)·u₂.  Not ops/act's silu_*: the gate reads two strided halves and
 * its backward needs SiLU(u₁) and SiLU'(u₁) at once; the formulas are the
 * same (x·σ(x), σ through fast_expf), so both FFN kinds round alike. */
static void swiglu_forward(float *out, const float *in, size_t N, int H)
{
#pragma omp parallel for schedule(static) if (N * H >= (1u << 15))
    for (size_t n = 0; n < N; n++) {
        const float *u1 = in + n * 2 * H, *u2 = u1 + H;
        float *o = out + n * H;
#pragma omp simd
        for (int j = 0; j < H; j++) {
            float s = 1.0f / (1.0f + fast_expf(-u1[j]));
            o[j] = u1[j] * s * u2[j];
        }
    }
}

/* din [N, 2H] += d/d[u₁ | u₂] of Σ dout·SiLU(u₁)·u₂:
 *   d u₁ = dout·u₂·σ(u₁)(1 + u₁(1 − σ(u₁))),  d u₂ = dout·SiLU(u₁). */
static void swiglu_backward(float *din, const float *dout, const float *in, size_t N, int H)
{
#pragma omp parallel for schedule(static) if (N * H >= (1u << 15))
    for (size_t n = 0; n < N; n++) {
        const float *u1 = in + n * 2 * H, *u2 = u1 + H, *g = dout + n * H;
        float *d1 = din + n * 2 * H, *d2 = d1 + H;
#pragma omp simd
        for (int j = 0; j < H; j++) {
            float x = u1[j], s = 1.0f / (1.0f + fast_expf(-x));
            d1[j] += g[j] * u2[j] * (s * (1.0f + x * (1.0f - s)));
            d2[j] += g[j] * (x * s);
        }
    }
}

/* hg = act(h): GELU (Mlp) or the SwiGLU gate. */
static void ffn_act_forward(const vit *m, float *hg, const float *h, size_t N)
{
    if (m->cfg.ffn == VIT_FFN_SWIGLU)
        swiglu_forward(hg, h, N, m->hidden);
    else
        gelu_erf_forward(hg, h, N * (size_t)m->hidden);
}

/* dh [N, ffn1] += act'(h)ᵀ dhg */
static void ffn_act_backward(const vit *m, float *dh, const float *dhg, const float *h, size_t N)
{
    if (m->cfg.ffn == VIT_FFN_SWIGLU)
        swiglu_backward(dh, dhg, h, N, m->hidden);
    else
        gelu_erf_backward(dh, dhg, h, N * (size_t)m->hidden);
}

/* ------------------------------------------------------------------ blocks */

void vit_block_forward(const vit *m, const float *params, int l, vit_block_acts *a, float *x_out, const float *x_in,
                       int B, float *attn_ws)
{
    const vit_config *c = &m->cfg;
    const vit_block *k = &m->blocks[l];
    const float *P = params;
    const int D = c->embed_dim, T = m->ntok, N = B * T, Hd = m->hidden, NH = c->heads;
    layer_norm_forward(a->ln1, a->mean1, a->rstd1, x_in, P + k->norm1_w, P + k->norm1_b, N, D, c->ln_eps);
    linear_forward(a->qkv, a->ln1, P + k->qkv_w, P + k->qkv_b, N, D, 3 * D);
    attention_forward(a->att, a->probs, a->qkv, a->qkv + D, a->qkv + 2 * D, 3 * D, B, T, NH, D / NH, attn_ws);
    linear_forward(a->ao, a->att, P + k->proj_w, P + k->proj_b, N, D, D);
    residual_add(a->xmid, x_in, a->ao, c->layerscale ? P + k->ls1 : NULL, (size_t)N, D);
    layer_norm_forward(a->ln2, a->mean2, a->rstd2, a->xmid, P + k->norm2_w, P + k->norm2_b, N, D, c->ln_eps);
    linear_forward(a->h, a->ln2, P + k->ffn1_w, P + k->ffn1_b, N, D, m->ffn1);
    ffn_act_forward(m, a->hg, a->h, (size_t)N);
    linear_forward(a->mo, a->hg, P + k->ffn2_w, P + k->ffn2_b, N, Hd, D);
    residual_add(x_out, a->xmid, a->mo, c->layerscale ? P + k->ls2 : NULL, (size_t)N, D);
}

#define GRAD(off) (grads ? grads + (off) : NULL)

void vit_block_backward(const vit *m, const float *params, int l, const vit_block_acts *a, float *grads, float *dx,
                        const float *x_in, int B, arena *ar, float *attn_ws)
{
    const vit_config *c = &m->cfg;
    const vit_block *k = &m->blocks[l];
    const float *P = params;
    const int D = c->embed_dim, T = m->ntok, N = B * T, Hd = m->hidden, NH = c->heads;
    const size_t NH1 = (size_t)N * m->ffn1;
    if (!a->probs)
        die("internal: vit_block_backward needs activations from a train-mode forward");
    size_t mark = arena_mark(ar);
    planner p = {.ar = ar};
    float *dbr, *hg, *dhg, *dln, *datt, *dqkv;
    block_scratch_carve(m, &p, B, &dbr, &hg, &dhg, &dln, &datt, &dqkv);

    /* FFN branch: x_out = xmid + g2 ⊙ ffn2(act(ffn1(norm2(xmid)))) */
    const float *dmo = dx;
    if (c->layerscale) {
        if (grads)
            scale_grad(grads + k->ls2, dx, a->mo, (size_t)N, D);
        scale_rows(dbr, dx, P + k->ls2, (size_t)N, D);
        dmo = dbr;
    }
    ffn_act_forward(m, hg, a->h, (size_t)N);
    linear_backward(dhg, false, GRAD(k->ffn2_w), GRAD(k->ffn2_b), dmo, hg, P + k->ffn2_w, N, Hd, D);
    float *dh = hg; /* the activation output is no longer needed (hg was carved ffn1 wide for this) */
    memset(dh, 0, NH1 * sizeof(float));
    ffn_act_backward(m, dh, dhg, a->h, (size_t)N);
    linear_backward(dln, false, GRAD(k->ffn1_w), GRAD(k->ffn1_b), dh, a->ln2, P + k->ffn1_w, N, D, m->ffn1);
    layer_norm_backward(dx, GRAD(k->norm2_w), GRAD(k->norm2_b), dln, a->xmid, a->mean2, a->rstd2, P + k->norm2_w,
                        N, D);

    /* Attention branch: xmid = x_in + g1 ⊙ proj(attn(qkv(norm1(x_in)))) */
    const float *dao = dx;
    if (c->layerscale) {
        if (grads)
            scale_grad(grads + k->ls1, dx, a->ao, (size_t)N, D);
        scale_rows(dbr, dx, P + k->ls1, (size_t)N, D);
        dao = dbr;
    }
    linear_backward(datt, false, GRAD(k->proj_w), GRAD(k->proj_b), dao, a->att, P + k->proj_w, N, D, D);
    attention_backward(dqkv, dqkv + D, dqkv + 2 * D, false, 3 * D, datt, a->probs, a->qkv, a->qkv + D, a->qkv + 2 * D,
                       3 * D, B, T, NH, D / NH, attn_ws);
    linear_backward(dln, false, GRAD(k->qkv_w), GRAD(k->qkv_b), dqkv, a->ln1, P + k->qkv_w, N, D, 3 * D);
    layer_norm_backward(dx, GRAD(k->norm1_w), GRAD(k->norm1_b), dln, x_in, a->mean1, a->rstd1, P + k->norm1_w, N,
                        D);
    arena_reset(ar, mark);
}

/* ------------------------------------------------------------------- model */

void vit_forward(const vit *m, const float *params, vit_acts *a, const float *img, float *patch, float *cls, float *reg,
                 float *logits)
{
    const vit_config *c = &m->cfg;
    const float *P = params;
    const int B = a->B, D = c->embed_dim, T = m->ntok, R = c->num_register_tokens, G2 = m->npatch;
    const int cpp = c->in_chans * c->patch * c->patch;
    const size_t ND = (size_t)B * T * D;

    /* Patch embedding (the conv as patchify + linear) into xn as scratch. */
    patchify_forward(a->tok_in, img, B, c->in_chans, c->img_size, c->img_size, c->patch);
    linear_forward(a->xn, a->tok_in, P + m->patch_w, P + m->patch_b, B * G2, cpp, D);

    /* [cls + pos₀, registers (no position), patches + pos₁..] */
    const float *pos = P + m->pos_embed, *clsp = P + m->cls_token, *regp = P + m->register_tokens;
    float *x0 = a->x;
#pragma omp parallel for collapse(2) schedule(static) if (ND >= (1u << 16))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = x0 + ((size_t)b * T + t) * D;
            if (t == 0)
                for (int d = 0; d < D; d++)
                    o[d] = clsp[d] + pos[d];
            else if (t <= R)
                memcpy(o, regp + (size_t)(t - 1) * D, (size_t)D * sizeof(float));
            else {
                const float *pe = a->xn + ((size_t)b * G2 + (t - 1 - R)) * D, *ps = pos + (size_t)(t - R) * D;
                for (int d = 0; d < D; d++)
                    o[d] = pe[d] + ps[d];
            }
        }

    for (int l = 0; l < c->depth; l++) {
        float *xi = a->train ? a->x + (size_t)l * ND : a->x;
        float *xo = a->train ? a->x + (size_t)(l + 1) * ND : a->x;
        vit_block_forward(m, params, l, &a->blocks[l], xo, xi, B, a->attn_ws);
    }
    const float *xl = a->train ? a->x + (size_t)c->depth * ND : a->x;
    layer_norm_forward(a->xn, a->mean_f, a->rstd_f, xl, P + m->norm_w, P + m->norm_b, B * T, D, c->ln_eps);

    for (int b = 0; b < B; b++) {
        const float *xb = a->xn + (size_t)b * T * D;
        memcpy(a->cls + (size_t)b * D, xb, (size_t)D * sizeof(float));
        if (cls)
            memcpy(cls + (size_t)b * D, xb, (size_t)D * sizeof(float));
        if (reg && R)
            memcpy(reg + (size_t)b * R * D, xb + D, (size_t)R * D * sizeof(float));
        if (patch)
            memcpy(patch + (size_t)b * G2 * D, xb + (size_t)(1 + R) * D, (size_t)G2 * D * sizeof(float));
    }
    if (logits) {
        if (c->num_classes <= 0)
            die("internal: vit_forward asked for logits but the model has no classification head");
        linear_forward(logits, a->cls, P + m->head_w, P + m->head_b, B, D, c->num_classes);
    }
}

void vit_backward(const vit *m, const float *params, const vit_acts *a, arena *ar, float *grads, float *d_img,
                  const float *d_patch, const float *d_cls, const float *d_reg, const float *d_logits)
{
    const vit_config *c = &m->cfg;
    const float *P = params;
    const int B = a->B, D = c->embed_dim, T = m->ntok, R = c->num_register_tokens, G2 = m->npatch, N = B * T;
    const int cpp = c->in_chans * c->patch * c->patch;
    const size_t ND = (size_t)N * D;
    if (!a->train)
        die("internal: vit_backward needs a train-mode forward (vit_acts_alloc(..., train = true))");
    if (!grads && !d_img)
        return;
    if (d_logits && c->num_classes <= 0)
        die("internal: vit_backward got d_logits but the model has no classification head");
    size_t mark = arena_mark(ar);

    /* Cotangent of the final norm output, gathered from the output slices. */
    float *dxn = arena_zeros(ar, ND);
    float *dcls = arena_zeros(ar, (size_t)B * D);
    if (d_cls)
        memcpy(dcls, d_cls, (size_t)B * D * sizeof(float));
    if (d_logits)
        linear_backward(dcls, true, GRAD(m->head_w), GRAD(m->head_b), d_logits, a->cls, P + m->head_w, B, D,
                        c->num_classes);
    for (int b = 0; b < B; b++) {
        float *db = dxn + (size_t)b * T * D;
        memcpy(db, dcls + (size_t)b * D, (size_t)D * sizeof(float));
        if (d_reg && R)
            memcpy(db + D, d_reg + (size_t)b * R * D, (size_t)R * D * sizeof(float));
        if (d_patch)
            memcpy(db + (size_t)(1 + R) * D, d_patch + (size_t)b * G2 * D, (size_t)G2 * D * sizeof(float));
    }
    float *dx = arena_zeros(ar, ND);
    layer_norm_backward(dx, GRAD(m->norm_w), GRAD(m->norm_b), dxn, a->x + (size_t)c->depth * ND, a->mean_f,
                        a->rstd_f, P + m->norm_w, N, D);

    for (int l = c->depth - 1; l >= 0; l--)
        vit_block_backward(m, params, l, &a->blocks[l], grads, dx, a->x + (size_t)l * ND, B, ar, a->attn_ws);

    /* Token assembly: cls and pos₀ get token 0, registers tokens 1..R, pos₁.. and the patch embedding the rest. */
    if (grads) {
        float *dclsp = grads + m->cls_token, *dpos = grads + m->pos_embed;
        float *dregp = R ? grads + m->register_tokens : NULL;
#pragma omp parallel for schedule(static) if (ND >= (1u << 16))
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                double s = 0;
                for (int b = 0; b < B; b++)
                    s += dx[((size_t)b * T + t) * D + d];
                if (t == 0) {
                    dclsp[d] += (float)s;
                    dpos[d] += (float)s;
                } else if (t <= R) {
                    dregp[(size_t)(t - 1) * D + d] += (float)s;
                } else {
                    dpos[(size_t)(t - R) * D + d] += (float)s;
                }
            }
    }
    float *dpe = arena_floats(ar, (size_t)B * G2 * D);
    for (int b = 0; b < B; b++)
        memcpy(dpe + (size_t)b * G2 * D, dx + ((size_t)b * T + 1 + R) * D, (size_t)G2 * D * sizeof(float));
    float *dtok = d_img ? arena_zeros(ar, (size_t)B * G2 * cpp) : NULL;
    linear_backward(dtok, true, GRAD(m->patch_w), GRAD(m->patch_b), dpe, a->tok_in, P + m->patch_w, B * G2, cpp, D);
    if (d_img)
        patchify_backward(d_img, dtok, B, c->in_chans, c->img_size, c->img_size, c->patch);
    arena_reset(ar, mark);
}
