#include "cli/model_files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/vae_diffusers.h"
#include "train/checkpoint.h"
#include "io/weights_file.h"

const char *mf_find_prefix(const safetensors *st, const char *marker, const char *const *candidates)
{
    char key[512];
    for (int i = 0; candidates[i]; i++) {
        snprintf(key, sizeof key, "%s%s", candidates[i], marker);
        if (safetensors_find(st, key))
            return candidates[i];
    }
    return NULL;
}

int mf_is_checkpoint(const safetensors *st)
{
    const char *fmt = safetensors_meta(st, "format");
    return fmt && !strcmp(fmt, CHECKPOINT_FORMAT);
}

cJSON *mf_metadata_json(const safetensors *st)
{
    const char *keys[] = {"args", "config"};
    for (int i = 0; i < 2; i++) {
        const char *v = safetensors_meta(st, keys[i]);
        cJSON *j = v ? cJSON_Parse(v) : NULL;
        if (j && cJSON_IsObject(j))
            return j;
        cJSON_Delete(j);
    }
    return NULL;
}

double mf_json_num(const cJSON *j, const char *key, double def)
{
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? 1 : 0;
    return def;
}

const char *mf_json_str(const cJSON *j, const char *key, const char *def)
{
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : def;
}

int mf_sit_heads(const cJSON *j, int hidden, int heads)
{
    if (heads > 0)
        return heads;
    const char *model = mf_json_str(j, "model", NULL);
    if (model && !strcmp(model, "custom")) {
        int h = (int)mf_json_num(j, "sit_heads", 0);
        if (h > 0 && hidden % h == 0)
            return h;
    } else if (model) {
        sit_config c = sit_config_default();
        if (sit_config_preset(&c, model) == 0 && c.hidden == hidden)
            return c.heads;
    }
    int h = (int)mf_json_num(j, "num_heads", 0);
    if (h > 0 && hidden % h == 0)
        return h;
    return sit_heads_for_hidden(hidden);
}

static int guess_heads(int width)
{
    for (int h = width / 64 > 1 ? width / 64 : 1; h > 1; h--)
        if (width % h == 0)
            return h;
    return 1;
}

int mf_sit_config(sit_config *cfg, const safetensors *st, const char *prefix, const cJSON *j, int heads, int guess)
{
    char key[512];
    snprintf(key, sizeof key, "%spos_embed", prefix);
    const st_tensor *pe = safetensors_find(st, key);
    if (!pe || pe->ndim != 3)
        die("'%s': no SiT under prefix '%s' (no %s [1, T, D])", st->path, prefix, key);
    int hidden = (int)pe->shape[2], guessed = 0;
    heads = mf_sit_heads(j, hidden, heads);
    if (heads <= 0) {
        if (!guess)
            die("'%s': the SiT's width %d matches no preset and the file does not record its attention heads; "
                "pass --heads", st->path, hidden);
        heads = guess_heads(hidden);
        guessed = 1;
    }
    *cfg = sit_config_default();
    cfg->class_dropout_prob = (float)mf_json_num(j, "cfg_prob", mf_json_num(j, "class_dropout_prob", 0.1));
    cfg->encoder_depth = 1;
    sit_config_from_weights(cfg, st, prefix, heads);
    int ed = (int)mf_json_num(j, "encoder_depth", 0);
    cfg->encoder_depth = ed >= 1 && ed <= cfg->depth ? ed : (cfg->depth < 8 ? cfg->depth : 8);
    cfg->bn_momentum = (float)mf_json_num(j, "bn_momentum", cfg->bn_momentum);
    sit_config_check(cfg);
    return guessed;
}

void mf_vae_config(vae_config *cfg, const safetensors *st, const char *prefix, const cJSON *j, int norm_groups)
{
    if (vae_config_detect(st, prefix, cfg) != 0)
        die("'%s': no AutoencoderKL weights under prefix '%s' (expected %sencoder.conv_in.weight, "
            "%squant_conv.weight, ...)", st->path, prefix, prefix, prefix);
    int g = norm_groups;
    if (g <= 0) {
        const char *preset = mf_json_str(j, "vae", NULL);
        const cJSON *ck = j ? cJSON_GetObjectItemCaseSensitive(j, "vae_ckpt") : NULL;
        if (preset && !strcmp(preset, "custom") && !cJSON_IsString(ck))
            g = (int)mf_json_num(j, "vae_norm_groups", 0); /* a checkpoint of a custom-VAE run */
        else if (!preset)
            g = (int)mf_json_num(j, "norm_groups", 0); /* a converted file's config */
    }
    if (g > 0)
        cfg->norm_groups = g;
    vae_config_check(cfg);
}

const char *mf_open_vae(vae *v, const char *path, int norm_groups, param_load_mode top_mode)
{
    if (vae_diffusers_is_dir(path)) {
        vae_diffusers_load(v, path);
        if (norm_groups > 0 && norm_groups != v->cfg.norm_groups)
            die("'%s': config.json says norm_num_groups %d, which --vae-norm-groups %d contradicts", path,
                v->cfg.norm_groups, norm_groups);
        return "";
    }
    static const char *const pre[] = {"", "vae.", NULL};
    safetensors *st = weights_open(path);
    const char *prefix = mf_find_prefix(st, "encoder.conv_in.weight", pre);
    if (!prefix)
        die("'%s': no VAE encoder in this file (no encoder.conv_in.weight at the top level or under vae.); a diffusers "
            "VAE is a folder with config.json", path);
    cJSON *j = mf_metadata_json(st);
    vae_config cfg;
    mf_vae_config(&cfg, st, prefix, j, norm_groups);
    cJSON_Delete(j);
    vae_init(v, &cfg);
    vae_load_st(v, st, prefix, prefix[0] ? PARAM_IGNORE_EXTRA : top_mode);
    safetensors_close(st);
    return prefix;
}

vit_config mf_vit_config(const safetensors *st, const char *prefix, const cJSON *j, int img_size, int heads,
                         int guess)
{
    char key[512];
    snprintf(key, sizeof key, "%scls_token", prefix);
    const st_tensor *t = safetensors_find(st, key);
    if (!t || t->ndim != 3)
        die("'%s': no DINOv2 ViT under prefix '%s' (no %s [1, 1, D])", st->path, prefix, key);
    int width = (int)t->shape[2];
    if (heads <= 0) {
        int h = (int)mf_json_num(j, "num_heads", 0);
        heads = h > 0 && width % h == 0 ? h : vit_heads_for_width(width);
    }
    if (heads <= 0 && guess)
        heads = guess_heads(width);
    return vit_config_from_checkpoint(st, prefix, img_size, heads);
}
