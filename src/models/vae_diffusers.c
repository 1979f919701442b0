/* vae_diffusers.c — diffusers AutoencoderKL folders (see vae_diffusers.h for
 * the name map and the latent-statistics rules). */
#include "models/vae_diffusers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/whole_number.h"
#include "io/safetensors.h"

/* config.json files of real VAEs are about 1 kB; anything near this is not one. */
#define CONFIG_MAX_BYTES (1u << 20)
#define DIFFUSERS_VERSION "0.31.0" /* the first release with every field we write (use_quant_conv, ...) */

static void join(char *out, size_t size, const char *dir, const char *file)
{
    size_t n = strlen(dir);
    if ((size_t)snprintf(out, size, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file) >= size)
        die("'%s': path too long", dir);
}

int vae_diffusers_is_folder(const char *path)
{
    struct stat sb;
    char cfg[4096];
    if (!path || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return 0;
    if (strlen(path) + sizeof VAE_DIFFUSERS_CONFIG + 2 > sizeof cfg)
        return 0;
    join(cfg, sizeof cfg, path, VAE_DIFFUSERS_CONFIG);
    return access(cfg, F_OK) == 0;
}

int vae_diffusers_is_dir(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ------------------------------------------------------------------ names */

static int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return 0;
    *rest = s + n;
    return 1;
}

/* A ResnetBlock's leaf: norm1/conv1/norm2/conv2 keep their names. */
static int res_leaf(const char *leaf, char *out, size_t size)
{
    const char *r;
    if (starts(leaf, "nin_shortcut.", &r))
        return snprintf(out, size, "conv_shortcut.%s", r) >= (int)size ? -1 : 0;
    if (starts(leaf, "norm1.", &r) || starts(leaf, "conv1.", &r) || starts(leaf, "norm2.", &r) ||
        starts(leaf, "conv2.", &r))
        return snprintf(out, size, "%s", leaf) >= (int)size ? -1 : 0;
    return -1;
}

static int attn_leaf(const char *leaf, int old, char *out, size_t size, int *linear)
{
    static const char *const ours[] = {"q.", "k.", "v.", "proj_out."};
    static const char *const now[] = {"to_q.", "to_k.", "to_v.", "to_out.0."};
    static const char *const before[] = {"query.", "key.", "value.", "proj_attn."};
    const char *r;
    if (starts(leaf, "norm.", &r))
        return snprintf(out, size, "group_norm.%s", r) >= (int)size ? -1 : 0;
    for (int i = 0; i < 4; i++)
        if (starts(leaf, ours[i], &r)) {
            if (linear)
                *linear = strcmp(r, "weight") == 0;
            return snprintf(out, size, "%s%s", old ? before[i] : now[i], r) >= (int)size ? -1 : 0;
        }
    return -1;
}

int vae_diffusers_name(const vae_config *cfg, const char *cv, int old_attn, char *out, size_t size, int *linear)
{
    const int L = cfg->n_levels;
    char leaf[PARAM_NAME_MAX];
    const char *p, *side;
    int l, b, n = 0;
    if (linear)
        *linear = 0;
    if (!strcmp(cv, "quant_conv.weight") || !strcmp(cv, "quant_conv.bias") || !strcmp(cv, "post_quant_conv.weight") ||
        !strcmp(cv, "post_quant_conv.bias"))
        return snprintf(out, size, "%s", cv) >= (int)size ? -1 : 0;
    if (starts(cv, "encoder.", &p))
        side = "encoder";
    else if (starts(cv, "decoder.", &p))
        side = "decoder";
    else
        return -1;
    const int enc = side[0] == 'e';
    const char *r;
    int rc = -1;
    if (starts(p, "conv_in.", &r) || starts(p, "conv_out.", &r))
        rc = snprintf(out, size, "%s.%s", side, p) >= (int)size ? -1 : 0;
    else if (starts(p, "norm_out.", &r))
        rc = snprintf(out, size, "%s.conv_norm_out.%s", side, r) >= (int)size ? -1 : 0;
    else if (starts(p, "mid.block_1.", &r) || starts(p, "mid.block_2.", &r)) {
        if (res_leaf(r, leaf, sizeof leaf) == 0)
            rc = snprintf(out, size, "%s.mid_block.resnets.%d.%s", side, p[10] == '1' ? 0 : 1, leaf) >= (int)size
                     ? -1
                     : 0;
    } else if (starts(p, "mid.attn_1.", &r)) {
        if (attn_leaf(r, old_attn, leaf, sizeof leaf, linear) == 0)
            rc = snprintf(out, size, "%s.mid_block.attentions.0.%s", side, leaf) >= (int)size ? -1 : 0;
    } else if (enc && sscanf(p, "down.%d.block.%d.%n", &l, &b, &n) == 2 && n > 0) {
        if (l >= 0 && l < L && res_leaf(p + n, leaf, sizeof leaf) == 0)
            rc = snprintf(out, size, "encoder.down_blocks.%d.resnets.%d.%s", l, b, leaf) >= (int)size ? -1 : 0;
    } else if (enc && (n = 0, sscanf(p, "down.%d.attn.%d.%n", &l, &b, &n) == 2) && n > 0) {
        if (l >= 0 && l < L && attn_leaf(p + n, old_attn, leaf, sizeof leaf, linear) == 0)
            rc = snprintf(out, size, "encoder.down_blocks.%d.attentions.%d.%s", l, b, leaf) >= (int)size ? -1 : 0;
    } else if (enc && (n = 0, sscanf(p, "down.%d.downsample.%n", &l, &n) == 1) && n > 0) {
        if (l >= 0 && l < L && starts(p + n, "conv.", &r))
            rc = snprintf(out, size, "encoder.down_blocks.%d.downsamplers.0.conv.%s", l, r) >= (int)size ? -1 : 0;
    } else if (!enc && (n = 0, sscanf(p, "up.%d.block.%d.%n", &l, &b, &n) == 2) && n > 0) {
        /* diffusers' up_blocks run in execution order: up_blocks.0 is our up.{L-1}. */
        if (l >= 0 && l < L && res_leaf(p + n, leaf, sizeof leaf) == 0)
            rc = snprintf(out, size, "decoder.up_blocks.%d.resnets.%d.%s", L - 1 - l, b, leaf) >= (int)size ? -1 : 0;
    } else if (!enc && (n = 0, sscanf(p, "up.%d.attn.%d.%n", &l, &b, &n) == 2) && n > 0) {
        if (l >= 0 && l < L && attn_leaf(p + n, old_attn, leaf, sizeof leaf, linear) == 0)
            rc = snprintf(out, size, "decoder.up_blocks.%d.attentions.%d.%s", L - 1 - l, b, leaf) >= (int)size ? -1
                                                                                                              : 0;
    } else if (!enc && (n = 0, sscanf(p, "up.%d.upsample.%n", &l, &n) == 1) && n > 0) {
        if (l >= 0 && l < L && starts(p + n, "conv.", &r))
            rc = snprintf(out, size, "decoder.up_blocks.%d.upsamplers.0.conv.%s", L - 1 - l, r) >= (int)size ? -1 : 0;
    }
    return rc;
}

/* ------------------------------------------------------------------ config.json */

typedef struct dv_config {
    vae_config cfg;
    double scaling, shift;
    float *lmean, *lstd; /* [z] or NULL */
} dv_config;

static const char *json_type(const cJSON *j)
{
    return cJSON_IsNull(j) ? "null" : cJSON_IsBool(j) ? "a boolean" : cJSON_IsNumber(j) ? "a number"
         : cJSON_IsString(j) ? "a string" : cJSON_IsArray(j) ? "a list" : "an object";
}

static int get_int(const cJSON *o, const char *path, const char *key, int def, int lo, int hi)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j)
        return def;
    if (!cJSON_IsNumber(j) || !whole_number_in(j->valuedouble, lo, hi))
        die("'%s': field \"%s\" must be an integer in [%d, %d] (it is %s%s)", path, key, lo, hi, json_type(j),
            cJSON_IsNumber(j) ? " out of range or fractional" : "");
    return (int)j->valuedouble;
}

static int get_bool(const cJSON *o, const char *path, const char *key, int def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j)
        return def;
    if (!cJSON_IsBool(j))
        die("'%s': field \"%s\" must be true or false (it is %s)", path, key, json_type(j));
    return cJSON_IsTrue(j);
}

/* A finite number; *present = 0 when absent or null (if null_ok). */
static double get_num(const cJSON *o, const char *path, const char *key, double def, int null_ok, int *present)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    *present = 0;
    if (!j || (null_ok && cJSON_IsNull(j)))
        return def;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
        die("'%s': field \"%s\" must be a finite number%s (it is %s)", path, key, null_ok ? " or null" : "",
            json_type(j));
    *present = 1;
    return j->valuedouble;
}

/* A list of n finite numbers, or NULL when absent / null. */
static float *get_floats(const cJSON *o, const char *path, const char *key, int n, int positive)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j))
        return NULL;
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != n)
        die("'%s': field \"%s\" must be null or a list of latent_channels = %d numbers (it is %s of %d)", path, key,
            n, json_type(j), cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 1);
    float *v = xmalloc((size_t)n * sizeof(float));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || (positive && !(e->valuedouble > 0)) ||
            fabs(e->valuedouble) > 3.0e38)
            die("'%s': field \"%s\"[%d] must be a finite%s number", path, key, i, positive ? " positive" : "");
        v[i++] = (float)e->valuedouble;
    }
    return v;
}

/* A list of block type names; attn[i] = 1 for the Attn variant.  Returns its length. */
static int get_block_types(const cJSON *o, const char *path, const char *key, const char *plain, const char *with_attn,
                           int *attn)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j) { /* diffusers' default: one plain block */
        attn[0] = 0;
        return 1;
    }
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) < 1 || cJSON_GetArraySize(j) > VAE_MAX_LEVELS)
        die("'%s': field \"%s\" must be a list of 1 to %d block type names (it is %s)", path, key, VAE_MAX_LEVELS,
            json_type(j));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, plain))
            attn[i] = 0;
        else if (cJSON_IsString(e) && !strcmp(e->valuestring, with_attn))
            attn[i] = 1;
        else
            die("'%s': field \"%s\"[%d] is %s%s%s: an AutoencoderKL has \"%s\" or \"%s\" here", path, key, i,
                cJSON_IsString(e) ? "\"" : "", cJSON_IsString(e) ? e->valuestring : json_type(e),
                cJSON_IsString(e) ? "\"" : "", plain, with_attn);
        i++;
    }
    return i;
}

static const char *const KNOWN_FIELDS[] = {
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "act_fn", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor", "shift_factor", "latents_mean",
    "latents_std", "force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention", NULL,
};

/* Absent fields take diffusers' defaults (AutoencoderKL.__init__), as
 * from_pretrained does. */
static void parse_config(const char *dir, dv_config *d)
{
    char path[4096];
    join(path, sizeof path, dir, VAE_DIFFUSERS_CONFIG);
    struct stat sb;
    if (stat(path, &sb) != 0)
        die("'%s' is not a diffusers AutoencoderKL folder: no %s in it", dir, VAE_DIFFUSERS_CONFIG);
    if (!S_ISREG(sb.st_mode) || (size_t)sb.st_size > CONFIG_MAX_BYTES)
        die("'%s': not a regular file of at most %u bytes", path, CONFIG_MAX_BYTES);
    size_t n;
    char *text = read_file_all(path, &n);
    if (strlen(text) != n)
        die("'%s': contains a NUL byte; not a JSON config", path);
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        die("'%s': not a JSON object", path);
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "_class_name");
    if (cls && (!cJSON_IsString(cls) || strcmp(cls->valuestring, "AutoencoderKL") != 0))
        die("'%s': field \"_class_name\" is %s%s%s; only \"AutoencoderKL\" folders can be read", path,
            cJSON_IsString(cls) ? "\"" : "", cJSON_IsString(cls) ? cls->valuestring : json_type(cls),
            cJSON_IsString(cls) ? "\"" : "");
    const cJSON *e;
    cJSON_ArrayForEach(e, o)
    {
        int known = e->string[0] == '_';
        for (int i = 0; !known && KNOWN_FIELDS[i]; i++)
            known = !strcmp(e->string, KNOWN_FIELDS[i]);
        if (!known)
            warn("'%s': ignoring field \"%s\" (not an AutoencoderKL option)", path, e->string);
    }

    memset(d, 0, sizeof *d);
    vae_config *c = &d->cfg;
    c->double_z = 1;
    c->in_channels = get_int(o, path, "in_channels", 3, 1, 64);
    c->out_ch = get_int(o, path, "out_channels", 3, 1, 64);
    c->num_res_blocks = get_int(o, path, "layers_per_block", 1, 1, 64);
    c->z_channels = get_int(o, path, "latent_channels", 4, 1, 4096);
    c->norm_groups = get_int(o, path, "norm_num_groups", 32, 1, 4096);
    c->no_quant_conv = !get_bool(o, path, "use_quant_conv", 1);
    c->no_post_quant_conv = !get_bool(o, path, "use_post_quant_conv", 1);
    if (!get_bool(o, path, "mid_block_add_attention", 1))
        die("'%s': field \"mid_block_add_attention\" is false; repae's AutoencoderKL always has the mid-block "
            "attention", path);
    get_bool(o, path, "force_upcast", 1); /* a precision hint for diffusers pipelines: we run in fp32 */
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "act_fn");
    if (act && !(cJSON_IsString(act) && (!strcmp(act->valuestring, "silu") || !strcmp(act->valuestring, "swish"))))
        die("'%s': field \"act_fn\" is %s%s%s; the AutoencoderKL here uses \"silu\" (swish) only", path,
            cJSON_IsString(act) ? "\"" : "", cJSON_IsString(act) ? act->valuestring : json_type(act),
            cJSON_IsString(act) ? "\"" : "");
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(o, "sample_size");
    if (ss && !cJSON_IsNumber(ss) && !cJSON_IsArray(ss))
        die("'%s': field \"sample_size\" must be a number or a list (it is %s)", path, json_type(ss));

    /* block_out_channels = ch · ch_mult */
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(o, "block_out_channels");
    int widths[VAE_MAX_LEVELS] = {64}, L = 1;
    if (boc) {
        if (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) < 1 || cJSON_GetArraySize(boc) > VAE_MAX_LEVELS)
            die("'%s': field \"block_out_channels\" must be a list of 1 to %d widths (it is %s)", path,
                VAE_MAX_LEVELS, json_type(boc));
        L = 0;
        cJSON_ArrayForEach(e, boc)
        {
            if (!cJSON_IsNumber(e) || !whole_number_in(e->valuedouble, 1, 65536))
                die("'%s': field \"block_out_channels\"[%d] must be an integer in [1, 65536]", path, L);
            widths[L++] = (int)e->valuedouble;
        }
    }
    int down_attn[VAE_MAX_LEVELS], up_attn[VAE_MAX_LEVELS];
    int nd = get_block_types(o, path, "down_block_types", "DownEncoderBlock2D", "AttnDownEncoderBlock2D", down_attn);
    int nu = get_block_types(o, path, "up_block_types", "UpDecoderBlock2D", "AttnUpDecoderBlock2D", up_attn);
    if (nd != L || nu != L)
        die("'%s': fields \"down_block_types\" (%d), \"up_block_types\" (%d) and \"block_out_channels\" (%d) must "
            "have the same length", path, nd, nu, L);
    c->n_levels = L;
    c->ch = widths[0];
    for (int l = 0; l < L; l++) {
        if (widths[l] % c->ch)
            die("'%s': field \"block_out_channels\"[%d] = %d is not a multiple of block_out_channels[0] = %d "
                "(repae's AutoencoderKL has widths ch·ch_mult)", path, l, widths[l], c->ch);
        if (widths[l] % c->norm_groups)
            die("'%s': field \"block_out_channels\"[%d] = %d is not divisible by norm_num_groups = %d", path, l,
                widths[l], c->norm_groups);
        c->ch_mult[l] = widths[l] / c->ch;
        /* up_blocks.{i} is level L-1-i */
        if (up_attn[L - 1 - l] != down_attn[l])
            die("'%s': field \"up_block_types\"[%d] %s attention but \"down_block_types\"[%d] %s: repae's "
                "AutoencoderKL has attention at the same levels in encoder and decoder", path, L - 1 - l,
                up_attn[L - 1 - l] ? "has" : "has no", l, down_attn[l] ? "has" : "has not");
    }
    /* Attention placement by nominal resolution, as vae_config_detect does
     * (so both readings of one VAE give the same configuration). */
    c->resolution = 256;
    c->n_attn = 0;
    for (int l = 0; l < L; l++)
        if (down_attn[l])
            c->attn_resolutions[c->n_attn++] = c->resolution >> l;
    if (c->n_attn == 0)
        c->attn_resolutions[c->n_attn++] = c->resolution >> L;

    int present;
    d->scaling = get_num(o, path, "scaling_factor", VAE_DIFFUSERS_DEFAULT_SCALING, 0, &present);
    if (!(d->scaling > 0))
        die("'%s': field \"scaling_factor\" = %g must be positive", path, d->scaling);
    d->shift = get_num(o, path, "shift_factor", 0.0, 1, &present);
    d->lmean = get_floats(o, path, "latents_mean", c->z_channels, 0);
    d->lstd = get_floats(o, path, "latents_std", c->z_channels, 1);
    if (!d->lmean != !d->lstd)
        die("'%s': field \"%s\" is given without \"%s\" (diffusers uses them as a pair)", path,
            d->lmean ? "latents_mean" : "latents_std", d->lmean ? "latents_std" : "latents_mean");
    cJSON_Delete(o);
    vae_config_check(c);
}

void vae_diffusers_read_config(const char *dir, vae_config *cfg)
{
    dv_config d;
    parse_config(dir, &d);
    free(d.lmean);
    free(d.lstd);
    *cfg = d.cfg;
}

/* ------------------------------------------------------------------ load */

/* Which attention naming the file uses: 0 = to_q/to_k/to_v/to_out.0, 1 = query/key/value/proj_attn. */
static int attn_naming(const safetensors *st)
{
    int now = 0, old = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *s = st->tensors[i].name;
        now |= strstr(s, ".to_q.") || strstr(s, ".to_out.0.");
        old |= strstr(s, ".query.") || strstr(s, ".proj_attn.");
    }
    if (now && old)
        die("'%s': mixes diffusers' attention names to_q/to_out.0 with the older query/proj_attn", st->path);
    return old;
}

float *vae_diffusers_load(vae *m, const char *dir)
{
    vae_config cfg;
    vae_diffusers_read_config(dir, &cfg);
    char path[4096];
    join(path, sizeof path, dir, VAE_DIFFUSERS_WEIGHTS);
    if (access(path, F_OK) != 0) /* hub repositories often hold only the fp16 variant */
        join(path, sizeof path, dir, VAE_DIFFUSERS_WEIGHTS_FP16);
    if (access(path, F_OK) != 0)
        die("'%s': no %s (or %s) beside %s (a sharded or .bin diffusers VAE is not supported)", dir,
            VAE_DIFFUSERS_WEIGHTS, VAE_DIFFUSERS_WEIGHTS_FP16, VAE_DIFFUSERS_CONFIG);
    safetensors *st = safetensors_open(path);
    int old = attn_naming(st);
    /* A config.json that describes far more parameters than the file holds
     * is refused before the (possibly huge) parameter buffer is allocated;
     * a few missing tensors pass this and are named below. */
    vae_build(m, &cfg);
    size_t need = vae_param_count(m);
    uint64_t have = 0;
    for (int i = 0; i < st->n_tensors; i++)
        have += (uint64_t)st->tensors[i].numel;
    if (need > 2 * have + (1u << 20))
        die("'%s': config.json describes an AutoencoderKL of %zu parameters but '%s' holds %llu values", dir, need,
            path, (unsigned long long)have);
    float *params = param_alloc(&m->table);
    char *used = xcalloc((size_t)st->n_tensors + 1, 1);
    char dn[PARAM_NAME_MAX + 32], a[96], b[96];
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        int linear;
        if (vae_diffusers_name(&m->cfg, e->name, old, dn, sizeof dn, &linear) != 0)
            die("internal: no diffusers name for VAE parameter '%s'", e->name);
        const st_tensor *t = safetensors_find(st, dn);
        if (!t)
            die("'%s': missing tensor '%s' (our %s), which the AutoencoderKL of config.json has", path, dn,
                e->name);
        int ndim = linear ? 2 : e->ndim;
        int ok = t->ndim == ndim;
        for (int k = 0; ok && k < ndim; k++)
            ok = t->shape[k] == e->shape[k];
        if (!ok)
            die("'%s': tensor '%s' (our %s) has shape %s; config.json needs %s", path, dn, e->name,
                st_shape_str(t->ndim, t->shape, a, sizeof a), st_shape_str(ndim, e->shape, b, sizeof b));
        safetensors_read_f32(st, t, params + e->offset);
        used[t - st->tensors] = 1;
    }
    for (int i = 0; i < st->n_tensors; i++)
        if (!used[i])
            die("'%s': unexpected tensor '%s': not part of the AutoencoderKL that config.json describes "
                "(check layers_per_block, block_out_channels, the block types, use_quant_conv)", path,
                st->tensors[i].name);
    free(used);
    safetensors_close(st);
    return params;
}

/* ------------------------------------------------------------------ latent statistics */

static void check_stats(const char *what, int C, const float *bias, const float *scale)
{
    for (int c = 0; c < C; c++)
        if (!(scale[c] > 0) || !isfinite(scale[c]) || !isfinite(bias[c]))
            die("%s: channel %d: scale %g, bias %g (the scale must be positive and finite)", what, c, scale[c],
                bias[c]);
}

void vae_diffusers_latents_stats(const char *dir, int C, float *bias, float *scale, const char **source)
{
    dv_config d;
    parse_config(dir, &d);
    if (d.cfg.z_channels != C)
        die("'%s': latent_channels is %d, wanted %d", dir, d.cfg.z_channels, C);
    char path[4096];
    join(path, sizeof path, dir, VAE_DIFFUSERS_STATS);
    const char *from;
    if (access(path, F_OK) == 0) {
        safetensors *st = safetensors_open(path);
        const char *names[2] = {"latents_scale", "latents_bias"};
        float *dst[2] = {scale, bias};
        for (int k = 0; k < 2; k++) {
            const st_tensor *t = safetensors_find(st, names[k]);
            if (!t || t->numel != C)
                die("'%s': %s '%s' (want %d values, shape [1, %d, 1, 1])", path, t ? "wrong size of" : "no tensor",
                    names[k], C, C);
            safetensors_read_f32(st, t, dst[k]);
        }
        safetensors_close(st);
        from = VAE_DIFFUSERS_STATS " (per channel)";
        check_stats(path, C, bias, scale);
    } else if (d.lmean) {
        for (int c = 0; c < C; c++) {
            bias[c] = d.lmean[c];
            scale[c] = (float)(d.scaling / (double)d.lstd[c]);
        }
        from = "config.json latents_mean / latents_std with scaling_factor";
        join(path, sizeof path, dir, VAE_DIFFUSERS_CONFIG);
        check_stats(path, C, bias, scale);
    } else {
        for (int c = 0; c < C; c++) {
            bias[c] = (float)d.shift;
            scale[c] = (float)d.scaling;
        }
        from = "config.json scaling_factor / shift_factor";
        join(path, sizeof path, dir, VAE_DIFFUSERS_CONFIG);
        check_stats(path, C, bias, scale);
    }
    if (source)
        *source = from;
    free(d.lmean);
    free(d.lstd);
}

/* ------------------------------------------------------------------ save */

static void make_dir(const char *dir)
{
    struct stat sb;
    if (mkdir(dir, 0755) == 0)
        return;
    if (errno != EEXIST)
        die("cannot create directory '%s': %s", dir, strerror(errno));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        die("'%s' exists and is not a directory", dir);
}

static cJSON *int_list(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static int level_has_attn(const vae_config *c, int l)
{
    int res = c->resolution >> l;
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == res)
            return 1;
    return 0;
}

/* config.json in diffusers' own layout (keys sorted, as save_pretrained writes them). */
static char *config_text(const vae_config *c, const float *bias, const float *scale)
{
    const int L = c->n_levels, C = c->z_channels;
    int widths[VAE_MAX_LEVELS];
    cJSON *o = cJSON_CreateObject(), *down = cJSON_CreateArray(), *up = cJSON_CreateArray();
    for (int l = 0; l < L; l++) {
        widths[l] = c->ch * c->ch_mult[l];
        cJSON_AddItemToArray(down,
                             cJSON_CreateString(level_has_attn(c, l) ? "AttnDownEncoderBlock2D" : "DownEncoderBlock2D"));
        cJSON_AddItemToArray(up, cJSON_CreateString(level_has_attn(c, L - 1 - l) ? "AttnUpDecoderBlock2D"
                                                                                 : "UpDecoderBlock2D"));
    }
    /* Scalars: the pooled statistics of all channels (shift = mean of the
     * channel means, scaling = 1/std of the mixture); per channel:
     * latents_mean = bias, latents_std = scaling / scale, so that
     * (z - mean)·scaling/std = (z - bias)·scale. */
    double scaling = VAE_DIFFUSERS_DEFAULT_SCALING, shift = 0;
    cJSON *lmean = NULL, *lstd = NULL;
    if (bias && scale) {
        double mu = 0, var = 0;
        for (int k = 0; k < C; k++)
            mu += bias[k];
        mu /= C;
        for (int k = 0; k < C; k++) {
            double sd = 1.0 / scale[k];
            var += sd * sd + (bias[k] - mu) * (bias[k] - mu);
        }
        scaling = 1.0 / sqrt(var / C);
        shift = mu;
        lmean = cJSON_CreateArray();
        lstd = cJSON_CreateArray();
        for (int k = 0; k < C; k++) {
            cJSON_AddItemToArray(lmean, cJSON_CreateNumber(bias[k]));
            cJSON_AddItemToArray(lstd, cJSON_CreateNumber(scaling / scale[k]));
        }
    }
    cJSON_AddStringToObject(o, "_class_name", "AutoencoderKL");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddItemToObject(o, "block_out_channels", int_list(widths, L));
    cJSON_AddItemToObject(o, "down_block_types", down);
    cJSON_AddBoolToObject(o, "force_upcast", 1);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "latent_channels", C);
    cJSON_AddItemToObject(o, "latents_mean", lmean ? lmean : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "latents_std", lstd ? lstd : cJSON_CreateNull());
    cJSON_AddNumberToObject(o, "layers_per_block", c->num_res_blocks);
    cJSON_AddBoolToObject(o, "mid_block_add_attention", 1);
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_groups);
    cJSON_AddNumberToObject(o, "out_channels", c->out_ch);
    cJSON_AddNumberToObject(o, "sample_size", c->resolution);
    cJSON_AddNumberToObject(o, "scaling_factor", scaling);
    if (bias && scale)
        cJSON_AddNumberToObject(o, "shift_factor", shift);
    else
        cJSON_AddNullToObject(o, "shift_factor");
    cJSON_AddItemToObject(o, "up_block_types", up);
    cJSON_AddBoolToObject(o, "use_post_quant_conv", !c->no_post_quant_conv);
    cJSON_AddBoolToObject(o, "use_quant_conv", !c->no_quant_conv);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        die("out of memory printing config.json");
    return text;
}

void vae_diffusers_save(const vae *m, const float *params, const char *dir, const float *bias, const float *scale)
{
    const vae_config *c = &m->cfg;
    if (bias && scale)
        check_stats("vae_diffusers_save", c->z_channels, bias, scale);
    make_dir(dir);
    char path[4096], dn[PARAM_NAME_MAX + 32];

    /* An older config.json would mark a half-written folder as complete. */
    join(path, sizeof path, dir, VAE_DIFFUSERS_CONFIG);
    if (unlink(path) != 0 && errno != ENOENT)
        die("cannot remove '%s': %s", path, strerror(errno));

    st_writer *w = st_writer_new();
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        int linear;
        if (vae_diffusers_name(c, e->name, 0, dn, sizeof dn, &linear) != 0)
            die("internal: no diffusers name for VAE parameter '%s'", e->name);
        st_writer_add_f32(w, dn, linear ? 2 : e->ndim, e->shape, params + e->offset);
    }
    /* what safetensors.torch.save_file writes for save_pretrained */
    st_writer_set_metadata(w, "format", "pt");
    join(path, sizeof path, dir, VAE_DIFFUSERS_WEIGHTS);
    st_writer_save(w, path);
    st_writer_free(w);

    join(path, sizeof path, dir, VAE_DIFFUSERS_STATS);
    if (bias && scale) {
        int64_t shape[4] = {1, c->z_channels, 1, 1};
        st_writer *s = st_writer_new();
        st_writer_add_f32(s, "latents_scale", 4, shape, scale);
        st_writer_add_f32(s, "latents_bias", 4, shape, bias);
        st_writer_set_metadata(s, "format", "repae-latents-stats");
        st_writer_save(s, path);
        st_writer_free(s);
    } else if (unlink(path) != 0 && errno != ENOENT) {
        die("cannot remove the old '%s': %s", path, strerror(errno));
    }

    char *text = config_text(c, bias, scale);
    join(path, sizeof path, dir, VAE_DIFFUSERS_CONFIG);
    atomic_file af = atomic_file_open(path);
    xfwrite(text, 1, strlen(text), af.fp, path);
    xfwrite("\n", 1, 1, af.fp, path);
    atomic_file_commit(&af);
    free(text);
}
