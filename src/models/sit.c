/* sit.c — SiT configuration, parameter table, initialisation, load/save.
 * The forward/backward passes are in sit_forward.c. */
#include "models/sit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/embed.h"

sit_config sit_config_default(void)
{
    sit_config c = {0};
    c.depth = 28, c.hidden = 1152, c.heads = 16, c.patch = 2;
    c.in_channels = 4, c.input_size = 32;
    c.num_classes = 1000, c.class_dropout_prob = 0.1f;
    c.encoder_depth = 8, c.projector_dim = 2048;
    c.projector_type = SIT_PROJECTOR_MLP, c.projector_kernel = 3;
    c.n_encoders = 1, c.z_dims[0] = 768;
    c.qk_norm = false, c.mlp_ratio = 4.0f;
    c.bn_momentum = 0.1f, c.bn_eps = 1e-4f;
    return c;
}

static const struct {
    const char *size;
    int depth, hidden, heads;
} sit_sizes[] = {
    {"S", 12, 384, 6}, /* the release's S preset has decoder_hidden_size 768 != 384 and is broken */
    {"B", 12, 768, 12},
    {"L", 24, 1024, 16},
    {"XL", 28, 1152, 16},
};

int sit_config_preset(sit_config *cfg, const char *name)
{
    char size[8];
    int p;
    char tail;
    if (sscanf(name, "SiT-%7[A-Z]/%d%c", size, &p, &tail) != 2)
        return -1;
    if (p != 1 && p != 2 && p != 4 && p != 8)
        return -1;
    for (size_t i = 0; i < sizeof sit_sizes / sizeof sit_sizes[0]; i++)
        if (strcmp(sit_sizes[i].size, size) == 0) {
            cfg->depth = sit_sizes[i].depth;
            cfg->hidden = sit_sizes[i].hidden;
            cfg->heads = sit_sizes[i].heads;
            cfg->patch = p;
            return 0;
        }
    return -1;
}

int sit_heads_for_hidden(int hidden)
{
    for (size_t i = 0; i < sizeof sit_sizes / sizeof sit_sizes[0]; i++)
        if (sit_sizes[i].hidden == hidden)
            return sit_sizes[i].heads;
    return 0;
}

static int mlp_hidden_of(const sit_config *c) { return (int)((float)c->hidden * c->mlp_ratio); }

void sit_config_check(const sit_config *c)
{
    if (c->depth < 1 || c->hidden < 4 || c->heads < 1 || c->patch < 1 || c->in_channels < 1 || c->input_size < 1)
        die("SiT config: depth %d, hidden %d, heads %d, patch %d, channels %d, input %d must all be positive", c->depth,
            c->hidden, c->heads, c->patch, c->in_channels, c->input_size);
    if (c->hidden % c->heads)
        die("SiT config: hidden size %d is not a multiple of the %d heads", c->hidden, c->heads);
    if (c->hidden % 4)
        die("SiT config: hidden size %d must be a multiple of 4 (2-D sin-cos position embedding)", c->hidden);
    if (c->input_size % c->patch)
        die("SiT config: input size %d is not a multiple of the patch size %d", c->input_size, c->patch);
    if (c->num_classes < 1)
        die("SiT config: num_classes %d must be positive", c->num_classes);
    if (c->class_dropout_prob < 0 || c->class_dropout_prob >= 1)
        die("SiT config: class dropout probability %g is outside [0, 1)", c->class_dropout_prob);
    if (c->n_encoders < 0 || c->n_encoders > SIT_MAX_ENCODERS)
        die("SiT config: %d encoders (at most %d)", c->n_encoders, SIT_MAX_ENCODERS);
    if (c->n_encoders > 0) {
        if (c->encoder_depth < 1 || c->encoder_depth > c->depth)
            die("SiT config: encoder_depth %d is outside [1, depth = %d]", c->encoder_depth, c->depth);
        if (c->projector_dim < 1)
            die("SiT config: projector_dim %d must be positive", c->projector_dim);
        for (int e = 0; e < c->n_encoders; e++)
            if (c->z_dims[e] < 1)
                die("SiT config: z_dims[%d] = %d must be positive", e, c->z_dims[e]);
        if (c->projector_type != SIT_PROJECTOR_MLP && c->projector_type != SIT_PROJECTOR_CONV)
            die("SiT config: unknown projector type %d", (int)c->projector_type);
        /* padding k/2 keeps the grid size only for odd k (iREPA offers 1, 3, 5, 7) */
        if (c->projector_type == SIT_PROJECTOR_CONV &&
            (c->projector_kernel < 1 || c->projector_kernel > 31 || c->projector_kernel % 2 == 0))
            die("SiT config: conv projector kernel %d must be odd and in [1, 31]", c->projector_kernel);
    }
    if (mlp_hidden_of(c) < 1)
        die("SiT config: mlp_ratio %g gives an empty MLP", c->mlp_ratio);
    if (!(c->bn_eps > 0) || c->bn_momentum < 0 || c->bn_momentum > 1)
        die("SiT config: BN eps %g must be > 0 and momentum %g in [0, 1]", c->bn_eps, c->bn_momentum);
}

const char *sit_config_str(const sit_config *c, char *buf, size_t n)
{
    /* The MLP line stays as it always was; the conv projector names itself
     * (its projector_dim is unused). */
    char proj[48];
    if (c->n_encoders && c->projector_type == SIT_PROJECTOR_CONV)
        snprintf(proj, sizeof proj, "conv kernel %d", c->projector_kernel);
    else
        snprintf(proj, sizeof proj, "%d", c->projector_dim);
    int k = snprintf(buf, n,
                     "depth %d hidden %d heads %d patch %d C %d input %d classes %d dropout %g encoder_depth %d "
                     "projector %s z_dims",
                     c->depth, c->hidden, c->heads, c->patch, c->in_channels, c->input_size, c->num_classes,
                     c->class_dropout_prob, c->encoder_depth, proj);
    for (int e = 0; e < c->n_encoders && k > 0 && (size_t)k < n; e++)
        k += snprintf(buf + k, n - k, "%s%d", e ? "," : " ", c->z_dims[e]);
    if (k > 0 && (size_t)k < n)
        snprintf(buf + k, n - k, "%s qk_norm %d mlp_ratio %g bn_momentum %g bn_eps %g",
                 c->n_encoders ? "" : " none", (int)c->qk_norm, c->mlp_ratio, c->bn_momentum, c->bn_eps);
    return buf;
}

/* ---- parameter table (spec §4.4, in state-dict order) ---- */

static size_t add(param_table *t, param_init_rule init, float arg, param_kind kind, int ndim, const int64_t *shape,
                  const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static size_t add(param_table *t, param_init_rule init, float arg, param_kind kind, int ndim, const int64_t *shape,
                  const char *fmt, ...)
{
    char name[PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return param_add_ex(t, name, init, arg, kind, ndim, shape);
}

#define TR PARAM_TRAINABLE
#define SH(...) (const int64_t[]){__VA_ARGS__}

/* Linear layer "<name>.weight" [out,in] Xavier-uniform, "<name>.bias" zero. */
static void add_linear(param_table *t, size_t *w, size_t *b, int out, int in, param_init_rule winit, param_init_rule binit,
                       float warg, const char *name)
{
    *w = add(t, winit, warg, TR, 2, SH(out, in), "%s.weight", name);
    *b = add(t, binit, 0.0f, TR, 1, SH(out), "%s.bias", name);
}

void sit_build(sit *m, const sit_config *cfg)
{
    sit_config_check(cfg);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const int D = cfg->hidden;
    m->D = D, m->NH = cfg->heads, m->HD = D / cfg->heads, m->H4 = mlp_hidden_of(cfg);
    m->p = cfg->patch, m->C = cfg->in_channels, m->H = cfg->input_size;
    m->G = m->H / m->p, m->T = m->G * m->G, m->PC = m->C * m->p * m->p;
    param_table *t = &m->table;
    char nm[PARAM_NAME_MAX];

    m->pos_embed = add(t, INIT_EXTERNAL, 0, PARAM_FROZEN, 3, SH(1, m->T, D), "pos_embed");
    /* Xavier on the [D, C·p·p] view, which param_init's conv fan-out rule would not give: in sit_init_weights. */
    m->x_w = add(t, INIT_EXTERNAL, 0, TR, 4, SH(D, m->C, m->p, m->p), "x_embedder.proj.weight");
    m->x_b = add(t, INIT_ZERO, 0, TR, 1, SH(D), "x_embedder.proj.bias");
    add_linear(t, &m->t0_w, &m->t0_b, D, SIT_FREQ_DIM, INIT_NORMAL, INIT_ZERO, 0.02f, "t_embedder.mlp.0");
    add_linear(t, &m->t2_w, &m->t2_b, D, D, INIT_NORMAL, INIT_ZERO, 0.02f, "t_embedder.mlp.2");
    int rows = cfg->num_classes + (cfg->class_dropout_prob > 0);
    m->y_table = add(t, INIT_NORMAL, 0.02f, TR, 2, SH(rows, D), "y_embedder.embedding_table.weight");

    m->blocks = xcalloc((size_t)cfg->depth, sizeof *m->blocks);
    for (int i = 0; i < cfg->depth; i++) {
        sit_block_offsets *o = &m->blocks[i];
        add_linear(t, &o->qkv_w, &o->qkv_b, 3 * D, D, INIT_XAVIER_UNIFORM, INIT_ZERO, 0,
                   param_name(nm, "blocks.%d.attn.qkv", i));
        if (cfg->qk_norm) {
            /* timm's qk-norm LayerNorm(head_dim) keeps torch's default affine init (1, 0). */
            o->q_norm_w = add(t, INIT_ONE, 0, TR, 1, SH(m->HD), "blocks.%d.attn.q_norm.weight", i);
            o->q_norm_b = add(t, INIT_ZERO, 0, TR, 1, SH(m->HD), "blocks.%d.attn.q_norm.bias", i);
            o->k_norm_w = add(t, INIT_ONE, 0, TR, 1, SH(m->HD), "blocks.%d.attn.k_norm.weight", i);
            o->k_norm_b = add(t, INIT_ZERO, 0, TR, 1, SH(m->HD), "blocks.%d.attn.k_norm.bias", i);
        }
        add_linear(t, &o->proj_w, &o->proj_b, D, D, INIT_XAVIER_UNIFORM, INIT_ZERO, 0,
                   param_name(nm, "blocks.%d.attn.proj", i));
        add_linear(t, &o->fc1_w, &o->fc1_b, m->H4, D, INIT_XAVIER_UNIFORM, INIT_ZERO, 0,
                   param_name(nm, "blocks.%d.mlp.fc1", i));
        add_linear(t, &o->fc2_w, &o->fc2_b, D, m->H4, INIT_XAVIER_UNIFORM, INIT_ZERO, 0,
                   param_name(nm, "blocks.%d.mlp.fc2", i));
        add_linear(t, &o->ada_w, &o->ada_b, 6 * D, D, INIT_ZERO, INIT_ZERO, 0,
                   param_name(nm, "blocks.%d.adaLN_modulation.1", i));
    }
    for (int e = 0; e < cfg->n_encoders; e++) {
        sit_projector_offsets *o = &m->proj[e];
        if (cfg->projector_type == SIT_PROJECTOR_CONV) {
            /* iREPA's initialize_weights only re-initialises nn.Linear, so the
             * conv keeps torch's Conv2d default: U(±1/sqrt(fan_in)) for weight
             * and bias, fan_in = D·k·k. */
            int k = cfg->projector_kernel, Z = cfg->z_dims[e];
            o->conv_w = add(t, INIT_TORCH_DEFAULT, 0, TR, 4, SH(Z, D, k, k), "projectors.%d.projection_layer.weight", e);
            o->conv_b = add(t, INIT_TORCH_BIAS, (float)D * k * k, TR, 1, SH(Z), "projectors.%d.projection_layer.bias", e);
            continue;
        }
        int P = cfg->projector_dim;
        add_linear(t, &o->w0, &o->b0, P, D, INIT_XAVIER_UNIFORM, INIT_ZERO, 0, param_name(nm, "projectors.%d.0", e));
        add_linear(t, &o->w2, &o->b2, P, P, INIT_XAVIER_UNIFORM, INIT_ZERO, 0, param_name(nm, "projectors.%d.2", e));
        add_linear(t, &o->w4, &o->b4, cfg->z_dims[e], P, INIT_XAVIER_UNIFORM, INIT_ZERO, 0,
                   param_name(nm, "projectors.%d.4", e));
    }
    add_linear(t, &m->final_w, &m->final_b, m->PC, D, INIT_ZERO, INIT_ZERO, 0, "final_layer.linear");
    add_linear(t, &m->final_ada_w, &m->final_ada_b, 2 * D, D, INIT_ZERO, INIT_ZERO, 0,
               "final_layer.adaLN_modulation.1");
    m->bn_mean = add(t, INIT_ZERO, 0, PARAM_BUFFER, 1, SH(m->C), "bn.running_mean");
    m->bn_var = add(t, INIT_ONE, 0, PARAM_BUFFER, 1, SH(m->C), "bn.running_var");
    m->bn_count = add(t, INIT_ZERO, 0, PARAM_BUFFER, 0, SH(0), "bn.num_batches_tracked");
}

void sit_free(sit *m)
{
    param_table_free(&m->table);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

void sit_init_weights(const sit *m, float *params, uint64_t seed)
{
    param_init(&m->table, params, seed);
    pos_embed_2d_sincos(params + m->pos_embed, m->D, m->G);
    /* x_embedder: Xavier-uniform on the [D, C·p·p] view (fan_in C·p·p, fan_out D). */
    rng r = rng_new(seed, 0x517e0001u);
    double a = sqrt(6.0 / (double)(m->PC + m->D));
    float *w = params + m->x_w;
    for (size_t k = 0; k < (size_t)m->D * m->PC; k++)
        w[k] = (float)((2.0 * rng_uniform(&r) - 1.0) * a);
}

void sit_set_latent_stats(const sit *m, float *params, const float *bias, const float *scale)
{
    for (int c = 0; c < m->C; c++) {
        if (!(scale[c] != 0) || !isfinite(scale[c]))
            die("latent statistics: scale[%d] = %g cannot be inverted", c, scale[c]);
        params[m->bn_mean + c] = bias[c];
        params[m->bn_var + c] = (float)(1.0 / ((double)scale[c] * scale[c]));
    }
}

void sit_get_latent_stats(const sit *m, const float *params, float *bias, float *scale)
{
    for (int c = 0; c < m->C; c++) {
        bias[c] = params[m->bn_mean + c];
        scale[c] = (float)(1.0 / sqrt((double)params[m->bn_var + c])); /* eps ignored, as the reference */
    }
}

size_t sit_projector_param_count(const sit *m)
{
    size_t n = 0;
    for (int i = 0; i < m->table.n; i++)
        if (strncmp(m->table.entries[i].name, "projectors.", 11) == 0)
            n += m->table.entries[i].numel;
    return n;
}

size_t sit_param_count(const sit *m, bool with_projectors)
{
    size_t n = param_count(&m->table, PARAM_TRAINABLE) + param_count(&m->table, PARAM_FROZEN);
    return with_projectors ? n : n - sit_projector_param_count(m);
}

void sit_load(const sit *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    param_load(&m->table, params, st, prefix ? prefix : "", mode);
}

void sit_save(const sit *m, const float *params, st_writer *w, const char *prefix)
{
    param_save(&m->table, params, w, prefix ? prefix : "");
}

void sit_save_file(const sit *m, const float *params, const char *path)
{
    st_writer *w = st_writer_new();
    sit_save(m, params, w, "");
    char buf[512];
    st_writer_set_metadata(w, "format", "repae-sit");
    st_writer_set_metadata(w, "sit_config", sit_config_str(&m->cfg, buf, sizeof buf));
    st_writer_save(w, path);
    st_writer_free(w);
}

/* ---- configuration from a weights file ---- */

static const st_tensor *find_key(const safetensors *st, const char *prefix, const char *name)
{
    char key[PARAM_NAME_MAX + 64];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return safetensors_find(st, key);
}

static const st_tensor *require_key(const safetensors *st, const char *prefix, const char *name, int ndim)
{
    const st_tensor *t = find_key(st, prefix, name);
    if (!t)
        die("'%s': no tensor '%s%s': not a SiT state dict (or the wrong key prefix)", st->path, prefix, name);
    if (t->ndim != ndim)
        die("'%s': tensor '%s%s' has %d dimensions, expected %d", st->path, prefix, name, t->ndim, ndim);
    return t;
}

void sit_config_from_weights(sit_config *cfg, const safetensors *st, const char *prefix, int heads)
{
    if (!prefix)
        prefix = "";
    char nm[PARAM_NAME_MAX];
    const st_tensor *pe = require_key(st, prefix, "pos_embed", 3);
    const st_tensor *xw = require_key(st, prefix, "x_embedder.proj.weight", 4);
    const st_tensor *yt = require_key(st, prefix, "y_embedder.embedding_table.weight", 2);
    int D = (int)pe->shape[2], T = (int)pe->shape[1];
    int G = (int)lround(sqrt((double)T));
    if (G * G != T)
        die("'%s': pos_embed has %d tokens, not a square grid", st->path, T);
    if (xw->shape[2] != xw->shape[3] || xw->shape[0] != D)
        die("'%s': x_embedder.proj.weight has an unexpected shape", st->path);
    cfg->hidden = D;
    cfg->patch = (int)xw->shape[2];
    cfg->in_channels = (int)xw->shape[1];
    cfg->input_size = G * cfg->patch;
    int depth = 0;
    while (find_key(st, prefix, param_name(nm, "blocks.%d.attn.qkv.weight", depth)))
        depth++;
    if (depth == 0)
        die("'%s': no SiT blocks (blocks.0.attn.qkv.weight) under prefix '%s'", st->path, prefix);
    cfg->depth = depth;
    const st_tensor *fc1 = require_key(st, prefix, "blocks.0.mlp.fc1.weight", 2);
    cfg->mlp_ratio = (float)fc1->shape[0] / (float)D;
    cfg->qk_norm = find_key(st, prefix, "blocks.0.attn.q_norm.weight") != NULL;
    /* The table has a null-class row exactly when class dropout is on; a file
     * cannot tell 1001 rows with dropout from 1001 classes without: assume the
     * reference's convention (dropout on) unless the configuration says 0. */
    if (cfg->class_dropout_prob > 0)
        cfg->num_classes = (int)yt->shape[0] - 1;
    else
        cfg->num_classes = (int)yt->shape[0];
    int E = 0;
    cfg->projector_type = SIT_PROJECTOR_MLP;
    while (E < SIT_MAX_ENCODERS && find_key(st, prefix, param_name(nm, "projectors.%d.projection_layer.weight", E))) {
        const st_tensor *w = require_key(st, prefix, nm, 4);
        if (w->shape[1] != D || w->shape[2] != w->shape[3] || w->shape[2] % 2 == 0 || w->shape[2] > 31)
            die("'%s': '%s%s' has shape [%lld, %lld, %lld, %lld]; a conv projector is [z_dim, %d, k, k] with odd k",
                st->path, prefix, nm, (long long)w->shape[0], (long long)w->shape[1], (long long)w->shape[2],
                (long long)w->shape[3], D);
        cfg->projector_type = SIT_PROJECTOR_CONV;
        cfg->projector_kernel = (int)w->shape[2];
        cfg->z_dims[E] = (int)w->shape[0];
        E++;
    }
    while (E < SIT_MAX_ENCODERS && cfg->projector_type == SIT_PROJECTOR_MLP &&
           find_key(st, prefix, param_name(nm, "projectors.%d.0.weight", E))) {
        const st_tensor *w0 = require_key(st, prefix, nm, 2);
        const st_tensor *w4 = require_key(st, prefix, param_name(nm, "projectors.%d.4.weight", E), 2);
        cfg->projector_dim = (int)w0->shape[0];
        cfg->z_dims[E] = (int)w4->shape[0];
        E++;
    }
    cfg->n_encoders = E;
    if (heads > 0)
        cfg->heads = heads;
    else if ((cfg->heads = sit_heads_for_hidden(D)) == 0)
        die("'%s': hidden size %d matches no SiT preset, so the head count is unknown; give it explicitly", st->path,
            D);
    sit_config_check(cfg);
}
