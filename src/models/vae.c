/* vae.c — AutoencoderKL: configuration, parameter table, load/save.
 * The forward/backward passes live in vae_run.c. */
#include "models/vae.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/whole_number.h"
#include "io/weights_file.h"
#include "models/vae_diffusers.h"

/* ------------------------------------------------------------------ configuration */

static const vae_config PRESET_F8D4 = {
    .ch = 128, .n_levels = 4, .ch_mult = {1, 2, 4, 4}, .num_res_blocks = 2, .z_channels = 4,
    .n_attn = 1, .attn_resolutions = {16}, .resolution = 256, .in_channels = 3, .out_ch = 3,
    .double_z = 1, .norm_groups = 32,
};

static const vae_config PRESET_F16D32 = {
    .ch = 128, .n_levels = 5, .ch_mult = {1, 1, 2, 2, 4}, .num_res_blocks = 2, .z_channels = 32,
    .n_attn = 1, .attn_resolutions = {16}, .resolution = 256, .in_channels = 3, .out_ch = 3,
    .double_z = 1, .norm_groups = 32,
};

int vae_preset(const char *name, vae_config *cfg)
{
    if (strcmp(name, "f8d4") == 0)
        *cfg = PRESET_F8D4;
    else if (strcmp(name, "f16d32") == 0)
        *cfg = PRESET_F16D32;
    else
        return -1;
    return 0;
}

void vae_config_check(const vae_config *c)
{
    /* At least one res block per level: without them the encoder never
     * widens, and a level whose width grows would feed its input to a layer
     * expecting more channels (diffusers' layers_per_block is >= 1 too). */
    if (c->ch <= 0 || c->n_levels < 1 || c->n_levels > VAE_MAX_LEVELS || c->num_res_blocks < 1 ||
        c->z_channels <= 0 || c->in_channels <= 0 || c->out_ch <= 0 || c->n_attn < 0 || c->n_attn > VAE_MAX_ATTN ||
        c->resolution <= 0 || c->norm_groups <= 0)
        die("VAE configuration out of range (ch %d, %d levels, %d res blocks, z %d, in %d, out %d, %d attention "
            "resolutions, resolution %d, %d groups)",
            c->ch, c->n_levels, c->num_res_blocks, c->z_channels, c->in_channels, c->out_ch, c->n_attn,
            c->resolution, c->norm_groups);
    if (!c->double_z)
        die("VAE configuration: double_z = false is not an AutoencoderKL (the posterior needs mean and logvar)");
    /* Bounds far above any released VAE (SD: widths up to 512, z 4 to 32),
     * so that widths, their products and the parameter count cannot
     * overflow whatever a file's metadata says. */
    if (c->ch > VAE_MAX_WIDTH || c->z_channels > VAE_MAX_Z || c->in_channels > VAE_MAX_IMAGE_CHANNELS ||
        c->out_ch > VAE_MAX_IMAGE_CHANNELS || c->num_res_blocks > VAE_MAX_RES_BLOCKS ||
        c->resolution > VAE_MAX_RESOLUTION)
        die("VAE configuration too large (ch %d, z %d, in %d, out %d, %d res blocks, resolution %d; at most %d, %d, "
            "%d, %d, %d, %d)",
            c->ch, c->z_channels, c->in_channels, c->out_ch, c->num_res_blocks, c->resolution, VAE_MAX_WIDTH,
            VAE_MAX_Z, VAE_MAX_IMAGE_CHANNELS, VAE_MAX_IMAGE_CHANNELS, VAE_MAX_RES_BLOCKS, VAE_MAX_RESOLUTION);
    if (c->ch % c->norm_groups)
        die("VAE configuration: ch %d is not divisible by %d GroupNorm groups", c->ch, c->norm_groups);
    for (int l = 0; l < c->n_levels; l++) {
        long long width = (long long)c->ch * c->ch_mult[l];
        if (c->ch_mult[l] <= 0 || width > VAE_MAX_WIDTH)
            die("VAE configuration: level %d width %d×%d is not in [1, %d]", l, c->ch, c->ch_mult[l], VAE_MAX_WIDTH);
        if (width % c->norm_groups)
            die("VAE configuration: level %d width %d×%d is not a positive multiple of %d GroupNorm groups", l,
                c->ch, c->ch_mult[l], c->norm_groups);
    }
}

/* A JSON number that is an int: finite, whole, in int's range (a cast of
 * anything else is undefined behaviour). */
static int json_number_int(const cJSON *j, int *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    if (!whole_number_in(j->valuedouble, INT_MIN, INT_MAX))
        return -1;
    *out = (int)j->valuedouble;
    return 0;
}

static int json_int(const cJSON *o, const char *key, int *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j)
        return 0;
    if (cJSON_IsBool(j)) {
        *out = cJSON_IsTrue(j);
        return 0;
    }
    return json_number_int(j, out);
}

static int json_int_list(const cJSON *o, const char *key, int *out, int *n, int max)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j)
        return 0;
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) > max)
        return -1;
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (json_number_int(e, &out[k++]) != 0)
            return -1;
    }
    *n = k;
    return 0;
}

int vae_config_from_json(const char *json, vae_config *cfg)
{
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return -1;
    }
    vae_config c = PRESET_F8D4;
    int embed_dim = -1;
    int err = json_int(o, "ch", &c.ch) | json_int_list(o, "ch_mult", c.ch_mult, &c.n_levels, VAE_MAX_LEVELS) |
              json_int(o, "num_res_blocks", &c.num_res_blocks) | json_int(o, "z_channels", &c.z_channels) |
              json_int(o, "embed_dim", &embed_dim) |
              json_int_list(o, "attn_resolutions", c.attn_resolutions, &c.n_attn, VAE_MAX_ATTN) |
              json_int(o, "resolution", &c.resolution) | json_int(o, "in_channels", &c.in_channels) |
              json_int(o, "out_ch", &c.out_ch) | json_int(o, "double_z", &c.double_z) |
              json_int(o, "norm_groups", &c.norm_groups);
    int use_q = 1, use_pq = 1;
    err |= json_int(o, "use_quant_conv", &use_q) | json_int(o, "use_post_quant_conv", &use_pq);
    c.no_quant_conv = !use_q;
    c.no_post_quant_conv = !use_pq;
    cJSON_Delete(o);
    if (err || (embed_dim >= 0 && embed_dim != c.z_channels))
        return -1;
    *cfg = c;
    return 0;
}

const char *vae_config_to_json(const vae_config *c, char *buf, size_t size)
{
    char mult[128] = "", attn[128] = "";
    size_t k = 0;
    for (int l = 0; l < c->n_levels; l++)
        k += (size_t)snprintf(mult + k, sizeof mult - k, "%s%d", l ? ", " : "", c->ch_mult[l]);
    k = 0;
    for (int i = 0; i < c->n_attn; i++)
        k += (size_t)snprintf(attn + k, sizeof attn - k, "%s%d", i ? ", " : "", c->attn_resolutions[i]);
    snprintf(buf, size,
             "{\"ch\": %d, \"ch_mult\": [%s], \"num_res_blocks\": %d, \"z_channels\": %d, \"embed_dim\": %d, "
             "\"attn_resolutions\": [%s], \"resolution\": %d, \"in_channels\": %d, \"out_ch\": %d, "
             "\"norm_groups\": %d, \"double_z\": %s%s%s}",
             c->ch, mult, c->num_res_blocks, c->z_channels, c->z_channels, attn, c->resolution, c->in_channels,
             c->out_ch, c->norm_groups, c->double_z ? "true" : "false",
             /* only when absent, so that the JSON of a CompVis VAE stays as it was */
             c->no_quant_conv ? ", \"use_quant_conv\": false" : "",
             c->no_post_quant_conv ? ", \"use_post_quant_conv\": false" : "");
    return buf;
}

static const st_tensor *find_pf(const safetensors *st, const char *prefix, const char *fmt, int a, int b)
{
    char name[PARAM_NAME_MAX], key[PARAM_NAME_MAX + 64];
    snprintf(name, sizeof name, fmt, a, b);
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return safetensors_find(st, key);
}

int vae_config_detect(const safetensors *st, const char *prefix, vae_config *cfg)
{
    const char *meta = safetensors_meta(st, "config");
    if (meta && prefix[0] == '\0' && vae_config_from_json(meta, cfg) == 0)
        return 0;
    vae_config c = PRESET_F8D4;
    const st_tensor *t = find_pf(st, prefix, "encoder.conv_in.weight", 0, 0);
    if (!t || t->ndim != 4)
        return -1;
    c.ch = (int)t->shape[0];
    c.in_channels = (int)t->shape[1];
    c.n_levels = 0;
    for (int l = 0; l < VAE_MAX_LEVELS; l++) {
        t = find_pf(st, prefix, "encoder.down.%d.block.0.conv1.weight", l, 0);
        if (!t)
            break;
        if (t->ndim != 4 || t->shape[0] % c.ch)
            return -1;
        c.ch_mult[l] = (int)(t->shape[0] / c.ch);
        c.n_levels = l + 1;
    }
    if (c.n_levels == 0)
        return -1;
    c.num_res_blocks = 0;
    while (find_pf(st, prefix, "encoder.down.0.block.%d.conv1.weight", c.num_res_blocks, 0))
        c.num_res_blocks++;
    /* z from quant_conv [2Z, 2Z, 1, 1]; a VAE without it (Flux / SD3.5) has
     * the moments straight from encoder.conv_out [2Z, ch_last, 3, 3]. */
    t = find_pf(st, prefix, "quant_conv.weight", 0, 0);
    c.no_quant_conv = t == NULL;
    if (!t)
        t = find_pf(st, prefix, "encoder.conv_out.weight", 0, 0);
    if (!t || t->ndim != 4 || t->shape[0] % 2 || t->shape[0] < 2)
        return -1;
    c.z_channels = (int)(t->shape[0] / 2);
    c.no_post_quant_conv = find_pf(st, prefix, "post_quant_conv.weight", 0, 0) == NULL;
    t = find_pf(st, prefix, "decoder.conv_out.weight", 0, 0);
    if (!t || t->ndim != 4)
        return -1;
    c.out_ch = (int)t->shape[0];
    c.resolution = 256;
    c.n_attn = 0;
    for (int l = 0; l < c.n_levels; l++) {
        int enc = find_pf(st, prefix, "encoder.down.%d.attn.0.norm.weight", l, 0) != NULL;
        int dec = find_pf(st, prefix, "decoder.up.%d.attn.0.norm.weight", l, 0) != NULL;
        if (enc != dec) {
            warn("'%s': attention at level %d in the %s only; not an AutoencoderKL layout", st->path, l,
                 enc ? "encoder" : "decoder");
            return -1;
        }
        if (enc && c.n_attn < VAE_MAX_ATTN)
            c.attn_resolutions[c.n_attn++] = c.resolution >> l;
    }
    /* Without attention outside mid, name a resolution below every level
     * (16 for f8d4), so that the detected config equals the preset. */
    if (c.n_attn == 0) {
        c.n_attn = 1;
        c.attn_resolutions[0] = c.resolution >> c.n_levels;
    }
    *cfg = c;
    return 0;
}

/* ------------------------------------------------------------------ parameter table */

static vae_conv reg_conv(param_table *t, const char *prefix, const char *name, int c_in, int c_out, int k)
{
    char buf[PARAM_NAME_MAX];
    vae_conv c = {.c_in = c_in, .c_out = c_out, .k = k};
    c.w = param_add_ex(t, param_name(buf, "%s%s.weight", prefix, name), INIT_TORCH_DEFAULT, 0.0f, PARAM_TRAINABLE, 4,
                       (int64_t[]){c_out, c_in, k, k});
    c.b = param_add_ex(t, param_name(buf, "%s%s.bias", prefix, name), INIT_TORCH_BIAS, (float)(c_in * k * k),
                       PARAM_TRAINABLE, 1, (int64_t[]){c_out});
    return c;
}

static vae_norm reg_norm(param_table *t, const char *prefix, const char *name, int c)
{
    char buf[PARAM_NAME_MAX];
    vae_norm n = {.c = c};
    n.w = param_add(t, param_name(buf, "%s%s.weight", prefix, name), INIT_ONE, 1, (int64_t[]){c});
    n.b = param_add(t, param_name(buf, "%s%s.bias", prefix, name), INIT_ZERO, 1, (int64_t[]){c});
    return n;
}

/* Registration order = the ResnetBlock's module order: norm1, conv1, norm2, conv2, nin_shortcut. */
static vae_resblock reg_resblock(param_table *t, const char *prefix, int c_in, int c_out)
{
    vae_resblock r = {.c_in = c_in, .c_out = c_out, .has_nin = c_in != c_out};
    r.norm1 = reg_norm(t, prefix, "norm1", c_in);
    r.conv1 = reg_conv(t, prefix, "conv1", c_in, c_out, 3);
    r.norm2 = reg_norm(t, prefix, "norm2", c_out);
    r.conv2 = reg_conv(t, prefix, "conv2", c_out, c_out, 3);
    if (r.has_nin)
        r.nin_shortcut = reg_conv(t, prefix, "nin_shortcut", c_in, c_out, 1);
    return r;
}

static vae_attnblock reg_attn(param_table *t, const char *prefix, int c)
{
    vae_attnblock a = {.c = c};
    a.norm = reg_norm(t, prefix, "norm", c);
    a.q = reg_conv(t, prefix, "q", c, c, 1);
    a.k = reg_conv(t, prefix, "k", c, c, 1);
    a.v = reg_conv(t, prefix, "v", c, c, 1);
    a.proj_out = reg_conv(t, prefix, "proj_out", c, c, 1);
    return a;
}

typedef struct layer_list {
    int n, cap;
    vae_layer *v;
} layer_list;

static vae_layer *push(layer_list *l, vae_layer_kind kind, int c_in, int c_out, const char *fmt, int a, int b)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof(vae_layer));
    }
    vae_layer *L = &l->v[l->n++];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->c_in = c_in;
    L->c_out = c_out;
    snprintf(L->name, sizeof L->name, fmt, a, b);
    return L;
}

static int has_attn(const vae_config *c, int curr_res)
{
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == curr_res)
            return 1;
    return 0;
}

void vae_build(vae *m, const vae_config *cfg)
{
    vae_config_check(cfg);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const vae_config *c = &m->cfg;
    param_table *t = &m->table;
    const int L = c->n_levels, nrb = c->num_res_blocks, ch = c->ch, Z = c->z_channels;
    char pre[PARAM_NAME_MAX];
    layer_list enc = {0}, dec = {0};
    /* Per-level temporaries: module registration order (blocks, then
     * attentions, then the resampler) differs from execution order
     * (block, attention, block, attention, ...). */
    vae_resblock *rb = xcalloc((size_t)nrb + 1, sizeof *rb);
    vae_attnblock *ab = xcalloc((size_t)nrb + 1, sizeof *ab);

    /* ---- encoder ---- */
    vae_layer *ly = push(&enc, VAE_LAYER_CONV, c->in_channels, ch, "encoder.conv_in", 0, 0);
    ly->conv = reg_conv(t, "encoder.", "conv_in", c->in_channels, ch, 3);
    int curr_res = c->resolution, block_in = ch;
    for (int l = 0; l < L; l++) {
        block_in = ch * (l == 0 ? 1 : c->ch_mult[l - 1]);
        int block_out = ch * c->ch_mult[l], att = has_attn(c, curr_res);
        for (int b = 0; b < nrb; b++) {
            rb[b] = reg_resblock(t, param_name(pre, "encoder.down.%d.block.%d.", l, b), block_in, block_out);
            block_in = block_out;
        }
        for (int b = 0; att && b < nrb; b++)
            ab[b] = reg_attn(t, param_name(pre, "encoder.down.%d.attn.%d.", l, b), block_in);
        for (int b = 0; b < nrb; b++) {
            ly = push(&enc, VAE_LAYER_RES, rb[b].c_in, rb[b].c_out, "encoder.down.%d.block.%d", l, b);
            ly->res = rb[b];
            if (att) {
                ly = push(&enc, VAE_LAYER_ATTN, block_in, block_in, "encoder.down.%d.attn.%d", l, b);
                ly->attn = ab[b];
            }
        }
        if (l != L - 1) {
            ly = push(&enc, VAE_LAYER_DOWN, block_in, block_in, "encoder.down.%d.downsample", l, 0);
            ly->conv = reg_conv(t, param_name(pre, "encoder.down.%d.downsample.", l), "conv", block_in, block_in, 3);
            curr_res /= 2;
        }
    }
    ly = push(&enc, VAE_LAYER_RES, block_in, block_in, "encoder.mid.block_1", 0, 0);
    ly->res = reg_resblock(t, "encoder.mid.block_1.", block_in, block_in);
    ly = push(&enc, VAE_LAYER_ATTN, block_in, block_in, "encoder.mid.attn_1", 0, 0);
    ly->attn = reg_attn(t, "encoder.mid.attn_1.", block_in);
    ly = push(&enc, VAE_LAYER_RES, block_in, block_in, "encoder.mid.block_2", 0, 0);
    ly->res = reg_resblock(t, "encoder.mid.block_2.", block_in, block_in);
    ly = push(&enc, VAE_LAYER_HEAD, block_in, 2 * Z, "encoder.norm_out+conv_out", 0, 0);
    ly->norm = reg_norm(t, "encoder.", "norm_out", block_in);
    ly->conv = reg_conv(t, "encoder.", "conv_out", block_in, 2 * Z, 3);

    /* ---- decoder ---- */
    block_in = ch * c->ch_mult[L - 1];
    curr_res = c->resolution >> (L - 1);
    int level_in[VAE_MAX_LEVELS], level_attn[VAE_MAX_LEVELS];
    for (int l = L - 1, bi = block_in, cr = curr_res; l >= 0; l--) {
        level_in[l] = bi;
        level_attn[l] = has_attn(c, cr);
        bi = ch * c->ch_mult[l];
        if (l != 0)
            cr *= 2;
    }
    ly = push(&dec, VAE_LAYER_CONV, Z, block_in, "decoder.conv_in", 0, 0);
    ly->conv = reg_conv(t, "decoder.", "conv_in", Z, block_in, 3);
    ly = push(&dec, VAE_LAYER_RES, block_in, block_in, "decoder.mid.block_1", 0, 0);
    ly->res = reg_resblock(t, "decoder.mid.block_1.", block_in, block_in);
    ly = push(&dec, VAE_LAYER_ATTN, block_in, block_in, "decoder.mid.attn_1", 0, 0);
    ly->attn = reg_attn(t, "decoder.mid.attn_1.", block_in);
    ly = push(&dec, VAE_LAYER_RES, block_in, block_in, "decoder.mid.block_2", 0, 0);
    ly->res = reg_resblock(t, "decoder.mid.block_2.", block_in, block_in);
    /* up[l] is registered in index order 0..L-1 but runs from L-1 down to 0. */
    vae_resblock *up_rb = xcalloc((size_t)L * (nrb + 1), sizeof *up_rb);
    vae_attnblock *up_ab = xcalloc((size_t)L * (nrb + 1), sizeof *up_ab);
    vae_conv up_conv[VAE_MAX_LEVELS] = {{0}};
    for (int l = 0; l < L; l++) {
        int bo = ch * c->ch_mult[l];
        for (int b = 0; b <= nrb; b++)
            up_rb[l * (nrb + 1) + b] =
                reg_resblock(t, param_name(pre, "decoder.up.%d.block.%d.", l, b), b == 0 ? level_in[l] : bo, bo);
        for (int b = 0; level_attn[l] && b <= nrb; b++)
            up_ab[l * (nrb + 1) + b] = reg_attn(t, param_name(pre, "decoder.up.%d.attn.%d.", l, b), bo);
        if (l != 0)
            up_conv[l] = reg_conv(t, param_name(pre, "decoder.up.%d.upsample.", l), "conv", bo, bo, 3);
    }
    for (int l = L - 1; l >= 0; l--) {
        int bo = ch * c->ch_mult[l];
        for (int b = 0; b <= nrb; b++) {
            const vae_resblock *r = &up_rb[l * (nrb + 1) + b];
            ly = push(&dec, VAE_LAYER_RES, r->c_in, r->c_out, "decoder.up.%d.block.%d", l, b);
            ly->res = *r;
            if (level_attn[l]) {
                ly = push(&dec, VAE_LAYER_ATTN, bo, bo, "decoder.up.%d.attn.%d", l, b);
                ly->attn = up_ab[l * (nrb + 1) + b];
            }
        }
        if (l != 0) {
            ly = push(&dec, VAE_LAYER_UP, bo, bo, "decoder.up.%d.upsample", l, 0);
            ly->conv = up_conv[l];
        }
    }
    int last = ch * c->ch_mult[0];
    ly = push(&dec, VAE_LAYER_HEAD, last, c->out_ch, "decoder.norm_out+conv_out", 0, 0);
    ly->norm = reg_norm(t, "decoder.", "norm_out", last);
    ly->conv = reg_conv(t, "decoder.", "conv_out", last, c->out_ch, 3);

    /* ---- wrapper convs (registered after encoder and decoder) ----
     * Without them (Flux / SD3.5) the layer lists simply end at the encoder's
     * conv_out and start at the decoder's conv_in: an identity, no copy. */
    if (!c->no_quant_conv) {
        ly = push(&enc, VAE_LAYER_CONV, 2 * Z, 2 * Z, "quant_conv", 0, 0);
        ly->conv = reg_conv(t, "", "quant_conv", 2 * Z, 2 * Z, 1);
    }
    if (!c->no_post_quant_conv) {
        vae_conv pq = reg_conv(t, "", "post_quant_conv", Z, Z, 1);
        ly = push(&dec, VAE_LAYER_CONV, Z, Z, "post_quant_conv", 0, 0);
        ly->conv = pq;
        /* post_quant_conv runs first: rotate it to the front. */
        vae_layer first = dec.v[dec.n - 1];
        memmove(dec.v + 1, dec.v, (size_t)(dec.n - 1) * sizeof(vae_layer));
        dec.v[0] = first;
    }

    free(rb);
    free(ab);
    free(up_rb);
    free(up_ab);
    m->enc = enc.v;
    m->n_enc = enc.n;
    m->dec = dec.v;
    m->n_dec = dec.n;
}

void vae_free(vae *m)
{
    param_table_free(&m->table);
    free(m->enc);
    free(m->dec);
    memset(m, 0, sizeof *m);
}

void vae_init_weights(const vae *m, float *params, uint64_t seed) { param_init(&m->table, params, seed); }

size_t vae_param_count(const vae *m) { return param_count_all(&m->table); }

void vae_load(const vae *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    param_load(&m->table, params, st, prefix, mode);
}

float *vae_from_file(vae *m, const char *path, const char *prefix, param_load_mode mode)
{
    /* A diffusers folder holds exactly one VAE and is always loaded strictly:
     * its configuration comes from config.json, not from the keys, so an
     * unexpected key means the two disagree. */
    if (prefix[0] == '\0' && vae_diffusers_is_dir(path))
        return vae_diffusers_load(m, path);
    safetensors *st = weights_open(path);
    vae_config cfg;
    if (vae_config_detect(st, prefix, &cfg) != 0)
        die("'%s': no AutoencoderKL weights found under prefix '%s' (expected %sencoder.conv_in.weight, "
            "%squant_conv.weight, ...)",
            path, prefix, prefix, prefix);
    vae_build(m, &cfg);
    float *params = param_alloc(&m->table);
    vae_load(m, params, st, prefix, mode);
    safetensors_close(st);
    return params;
}

void vae_save(const vae *m, const float *params, st_writer *w, const char *prefix)
{
    param_save(&m->table, params, w, prefix);
    if (prefix[0] == '\0') {
        char json[1024];
        st_writer_set_metadata(w, "config", vae_config_to_json(&m->cfg, json, sizeof json));
    }
}

void vae_save_file(const vae *m, const float *params, const char *path, const char *prefix)
{
    st_writer *w = st_writer_new();
    vae_save(m, params, w, prefix);
    st_writer_set_metadata(w, "format", "repae-vae");
    st_writer_save(w, path);
    st_writer_free(w);
}

void vae_latent_size(const vae *m, int H, int W, int *h, int *w)
{
    for (int l = 0; l + 1 < m->cfg.n_levels; l++) {
        H = (H + 1 - 3) / 2 + 1;
        W = (W + 1 - 3) / 2 + 1;
    }
    *h = H;
    *w = W;
}

void vae_image_size(const vae *m, int h, int w, int *H, int *W)
{
    *H = h << (m->cfg.n_levels - 1);
    *W = w << (m->cfg.n_levels - 1);
}

void vae_check_data_channels(const vae *m, int C, const char *who)
{
    if (C != m->cfg.in_channels || C != m->cfg.out_ch)
        die("%s: the VAE takes %d-channel images and returns %d-channel ones; the data has %d", who,
            m->cfg.in_channels, m->cfg.out_ch, C);
}
