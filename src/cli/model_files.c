#include "cli/model_files.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/path.h"
#include "core/whole_number.h"
#include "train/latents_stats.h"
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

int mf_json_int(const cJSON *j, const char *key, int def)
{
    double v = mf_json_num(j, key, def);
    /* a file's junk (1e300, 2.5, inf) is no count: casting it would be undefined */
    return whole_number_in(v, INT_MIN, INT_MAX) ? (int)v : def;
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
        int h = mf_json_int(j, "sit_heads", 0);
        if (h > 0 && hidden % h == 0)
            return h;
    } else if (model) {
        sit_config c = sit_config_default();
        if (sit_config_preset(&c, model) == 0 && c.hidden == hidden)
            return c.heads;
    }
    int h = mf_json_int(j, "num_heads", 0);
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
    int ed = mf_json_int(j, "encoder_depth", 0);
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
            g = mf_json_int(j, "vae_norm_groups", 0); /* a checkpoint of a custom-VAE run */
        else if (!preset)
            g = mf_json_int(j, "norm_groups", 0); /* a converted file's config */
    }
    if (g > 0)
        cfg->norm_groups = g;
    vae_config_check(cfg);
}

float *mf_open_vae(vae *v, const char *path, int norm_groups, param_load_mode top_mode, const char **prefix_out)
{
    if (vae_diffusers_is_dir(path)) {
        float *params = vae_diffusers_load(v, path);
        if (norm_groups > 0 && norm_groups != v->cfg.norm_groups)
            die("'%s': config.json says norm_num_groups %d, which --vae-norm-groups %d contradicts", path,
                v->cfg.norm_groups, norm_groups);
        if (prefix_out)
            *prefix_out = "";
        return params;
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
    vae_build(v, &cfg);
    float *params = param_alloc(&v->table);
    vae_load(v, params, st, prefix, prefix[0] ? PARAM_IGNORE_EXTRA : top_mode);
    safetensors_close(st);
    if (prefix_out)
        *prefix_out = prefix;
    return params;
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
        int h = mf_json_int(j, "num_heads", 0);
        heads = h > 0 && width % h == 0 ? h : vit_heads_for_width(width);
    }
    if (heads <= 0 && guess)
        heads = guess_heads(width);
    return vit_config_from_checkpoint(st, prefix, img_size, heads);
}

/* ---- the models of `repae sample` ---------------------------------------------- */

/* <run> when path is <run>/checkpoints/<file> ("." for checkpoints/<file>). */
static int run_dir_of(const char *path, char *out, size_t size)
{
    char buf[1100];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return 0;
    char *slash = strrchr(buf, '/');
    if (!slash)
        return 0;
    *slash = 0;
    char *s2 = strrchr(buf, '/');
    if (strcmp(s2 ? s2 + 1 : buf, "checkpoints") != 0)
        return 0;
    if (s2)
        *s2 = 0;
    snprintf(out, size, "%s", s2 ? (buf[0] ? buf : "/") : ".");
    return 1;
}

cJSON *mf_run_args(const safetensors *st, const char *path, char *from, size_t size)
{
    char run[1100], json_path[1200];
    if (!mf_is_checkpoint(st) && run_dir_of(path, run, sizeof run)) {
        snprintf(json_path, sizeof json_path, "%s/args.json", run);
        if (access(json_path, F_OK) == 0) {
            size_t n;
            char *text = read_file_all(json_path, &n);
            if (n > (1u << 24))
                die("'%s': %zu bytes is too large for a run's options", json_path, n);
            cJSON *j = cJSON_ParseWithLength(text, n);
            free(text);
            if (!j || !cJSON_IsObject(j))
                die("'%s' (the options of the run of '%s'): not a JSON object", json_path, path);
            snprintf(from, size, "%s", json_path);
            return j;
        }
    }
    cJSON *j = mf_metadata_json(st);
    snprintf(from, size, "%s", j ? "the file's own options (metadata args/config)" : "none (shapes and defaults)");
    return j;
}

/* A file a run's options name: as given (relative to the working directory,
 * as the reference scripts ran), else relative to the folder that holds the
 * run's folder (exps/.. in the release layout), else to the run folder. */
static int run_file(const char *given, const char *ckpt, char *out, size_t size)
{
    snprintf(out, size, "%s", given);
    if (access(out, R_OK) == 0)
        return 1;
    char run[1100];
    if (given[0] == '/' || !run_dir_of(ckpt, run, sizeof run))
        return 0;
    if (snprintf(out, size, "%s/../../%s", run, given) < (int)size && access(out, R_OK) == 0)
        return 1;
    if (snprintf(out, size, "%s/%s", run, given) < (int)size && access(out, R_OK) == 0)
        return 1;
    snprintf(out, size, "%s", given);
    return 0;
}

/* A checkpoint dict of the official scripts: no SiT at the top level, one
 * under ema./model., and the dict's `args` or `steps`. */
static int is_official_checkpoint(const safetensors *st)
{
    static const char *const pre[] = {"ema.", "model.", NULL};
    return !mf_is_checkpoint(st) && !safetensors_find(st, "x_embedder.proj.weight") &&
           mf_find_prefix(st, "x_embedder.proj.weight", pre) &&
           (safetensors_meta(st, "args") || safetensors_meta(st, "steps"));
}

static void sample_sit(mf_sample_models *m, const safetensors *st, const char *ckpt, int ema, int heads)
{
    bool train_ckpt = mf_is_checkpoint(st) || is_official_checkpoint(st);
    if (train_ckpt) {
        m->sit_prefix = ema ? "ema." : "model.";
        char key[64];
        snprintf(key, sizeof key, "%sx_embedder.proj.weight", m->sit_prefix);
        if (!safetensors_find(st, key))
            die("sample: '%s' is a training checkpoint without %s* (%s)%s", ckpt, m->sit_prefix,
                ema ? "the EMA SiT" : "the training SiT", ema ? "; --no-ema samples model.*" : "");
    } else {
        static const char *const order_ema[] = {"", "ema.", "model.", NULL}, *const order_model[] = {"", "model.", "ema.", NULL};
        m->sit_prefix = mf_find_prefix(st, "x_embedder.proj.weight", ema ? order_ema : order_model);
        if (!m->sit_prefix)
            die("sample: '%s' holds no SiT (no x_embedder.proj.weight, at the top level or under ema./model.)", ckpt);
    }
    /* An EMA that has seen few updates for its decay is still partly the
     * random initialisation (decay^steps of it) and samples badly: say so. */
    const char *step = safetensors_meta(st, "step") ? "step" : "steps";
    if (train_ckpt && ema && safetensors_meta(st, step)) {
        double decay = mf_json_num(m->args, "ema_decay", -1.0);
        long long steps = safetensors_meta_ll(st, step);
        double left = decay > 0 && decay < 1 && steps >= 0 ? pow(decay, (double)steps) : 0.0;
        if (left > 0.01)
            fprintf(stderr,
                    "sample: warning: the EMA (decay %g) has had %lld updates, so %.0f%% of it is still the "
                    "initial weights and its samples can be formless; --no-ema samples the training weights\n",
                    decay, steps, 100.0 * left);
    }
    mf_sit_config(&m->sc, st, m->sit_prefix, m->args, heads, 0);
    sit_build(&m->s, &m->sc);
    m->sp = param_alloc(&m->s.table);
    sit_load(&m->s, m->sp, st, m->sit_prefix, PARAM_IGNORE_EXTRA);
}

/* The VAE; returns 1 if it is the file's own vae.*. */
static int sample_vae(mf_sample_models *m, const safetensors *st, const char *ckpt, const char *vae_ckpt)
{
    static const char *const pre_ckpt[] = {"vae.", NULL};
    int has_vae = mf_find_prefix(st, "encoder.conv_in.weight", pre_ckpt) != NULL;
    if (vae_ckpt)
        snprintf(m->vae_from, sizeof m->vae_from, "%s", vae_ckpt);
    else if (!has_vae) {
        const char *named = mf_json_str(m->args, "vae_ckpt", NULL);
        if (!named)
            die("sample: '%s' has no VAE (vae.*) and its run's options (%s) name none: give it with --vae-ckpt "
                "(and its --latents-stats)", ckpt, m->args_from);
        if (!run_file(named, ckpt, m->vae_from, sizeof m->vae_from))
            die("sample: '%s' is an LDM-only checkpoint (no vae entry); its run's VAE is vae_ckpt '%s' (%s), which "
                "cannot be read here nor beside the run's folder: give the VAE with --vae-ckpt and its statistics "
                "with --latents-stats", ckpt, named, m->args_from);
    }
    if (m->vae_from[0]) {
        m->vp = mf_open_vae(&m->v, m->vae_from, 0, PARAM_IGNORE_EXTRA, NULL);
    } else {
        vae_config vc;
        mf_vae_config(&vc, st, "vae.", m->args, 0);
        vae_build(&m->v, &vc);
        m->vp = param_alloc(&m->v.table);
        vae_load(&m->v, m->vp, st, "vae.", PARAM_IGNORE_EXTRA);
        snprintf(m->vae_from, sizeof m->vae_from, "%s (vae.*)", ckpt);
    }
    if (m->v.cfg.z_channels != m->s.C)
        die("sample: the VAE (%s) has %d latent channels but the SiT expects %d", m->vae_from, m->v.cfg.z_channels,
            m->s.C);
    return has_vae && !vae_ckpt;
}

/* generate.py's statistics file of an LDM-only run: the VAE's
 * "<stem>-latents-stats<ext>" (.pt as released, or our .safetensors), or a
 * diffusers folder (its latents_stats.safetensors or config.json). */
static int stats_sidecar(const char *vae_path, char *out, size_t size)
{
    if (vae_diffusers_is_folder(vae_path)) {
        snprintf(out, size, "%s", vae_path);
        return 1;
    }
    char stem[1100];
    snprintf(stem, sizeof stem, "%s", vae_path);
    char *dot = strrchr(stem, '.'), *slash = strrchr(stem, '/');
    const char *ext = "";
    if (dot && (!slash || dot > slash)) {
        ext = vae_path + (dot - stem);
        *dot = 0;
    }
    const char *exts[] = {ext, ".pt", ".safetensors", ".pth"};
    for (int i = 0; i < 4; i++) {
        if (snprintf(out, size, "%s-latents-stats%s", stem, exts[i]) < (int)size && exts[i][0] &&
            access(out, R_OK) == 0)
            return 1;
    }
    return 0;
}

static void sample_stats(mf_sample_models *m, const safetensors *st, const char *ckpt, const char *latents_stats,
                         int own_vae)
{
    int C = m->s.C;
    m->bias = xmalloc((size_t)C * sizeof(float));
    m->scale = xmalloc((size_t)C * sizeof(float));
    char path[1100] = "";
    if (latents_stats)
        path_format(path, sizeof path, "%s", latents_stats);
    else if (!own_vae) {
        const char *ls = mf_json_str(m->args, "latents_stats", NULL);
        if (!(ls && run_file(ls, ckpt, path, sizeof path)) && !stats_sidecar(m->vae_from, path, sizeof path))
            path[0] = 0;
    }
    if (path[0]) {
        latents_stats_read(path, C, m->bias, m->scale);
        snprintf(m->stats_from, sizeof m->stats_from, "%s", path);
        return;
    }
    /* A REPA-E checkpoint (its own vae.*), or our LDM checkpoint whose
     * BatchNorm init_bn set from the statistics. */
    if (!own_vae && !mf_is_checkpoint(st))
        die("sample: no latent statistics for '%s': %s; give them with --latents-stats (the VAE's "
            "-latents-stats file)", ckpt,
            is_official_checkpoint(st) ? "an LDM-only checkpoint takes them from its VAE's -latents-stats file, "
                                         "which is not beside the VAE"
                                       : "a bare SiT file does not hold them");
    float *mean = m->sp + m->s.bn_mean, *var = m->sp + m->s.bn_var;
    for (int c = 0; c < C; c++)
        if (var[c] == 0) /* the reference's eps-free 1/sqrt would be infinite */
            die("sample: '%s': %sbn.running_var[%d] is 0, so the latents scale 1/sqrt(running_var) is infinite", ckpt,
                m->sit_prefix, c);
    char what[1200];
    snprintf(what, sizeof what, "sample: '%s': %sbn.running_var", ckpt, m->sit_prefix);
    latents_stats_from_bn(mean, var, C, m->bias, m->scale, what);
    snprintf(m->stats_from, sizeof m->stats_from, "the SiT's BatchNorm (%sbn.running_mean/var)", m->sit_prefix);
}

void mf_sample_models_open(mf_sample_models *m, const char *ckpt, const char *vae_ckpt, const char *latents_stats,
                           int ema, int heads)
{
    memset(m, 0, sizeof *m);
    safetensors *st = weights_open(ckpt);
    m->args = mf_run_args(st, ckpt, m->args_from, sizeof m->args_from);
    sample_sit(m, st, ckpt, ema, heads);
    int own_vae = sample_vae(m, st, ckpt, vae_ckpt);
    sample_stats(m, st, ckpt, latents_stats, own_vae);
    safetensors_close(st);
}

void mf_sample_models_free(mf_sample_models *m)
{
    vae_free(&m->v);
    sit_free(&m->s);
    free(m->sp), free(m->vp), free(m->bias), free(m->scale);
    cJSON_Delete(m->args);
    memset(m, 0, sizeof *m);
}
