#include "train/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static void meta_ll(st_writer *w, const char *key, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    st_writer_set_metadata(w, key, buf);
}

static void meta_f(st_writer *w, const char *key, float v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", v); /* round-trips a float exactly */
    st_writer_set_metadata(w, key, buf);
}

void checkpoint_save(const repae_trainer *t, const char *path, long long epoch, int position, const char *args_json)
{
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", CHECKPOINT_FORMAT);
    meta_ll(w, "version", CHECKPOINT_VERSION);
    meta_ll(w, "step", t->step);
    meta_ll(w, "epoch", epoch);
    meta_ll(w, "position", position);
    meta_ll(w, "opt_step", t->opt_sit.step);
    meta_ll(w, "opt_vae_step", t->opt_vae.step);
    meta_ll(w, "opt_disc_step", t->disc ? t->opt_disc.step : 0);
    meta_f(w, "lecam_ema_real", t->lecam_ema_real);
    meta_f(w, "lecam_ema_fake", t->lecam_ema_fake);
    if (args_json)
        st_writer_set_metadata(w, "args", args_json);
    param_save(&t->sit->table, t->sit_params, w, "model.");
    param_save(&t->sit->table, t->ema_params, w, "ema.");
    param_save(&t->vae->table, t->vae->params, w, "vae.");
    param_save(&t->sit->table, t->opt_sit.m, w, "opt.m.model.");
    param_save(&t->sit->table, t->opt_sit.v, w, "opt.v.model.");
    param_save(&t->vae->table, t->opt_vae.m, w, "opt.m.vae.");
    param_save(&t->vae->table, t->opt_vae.v, w, "opt.v.vae.");
    if (t->disc) {
        param_save(&t->disc->table, t->disc_params, w, "disc.");
        param_save(&t->disc->table, t->opt_disc.m, w, "opt.m.disc.");
        param_save(&t->disc->table, t->opt_disc.v, w, "opt.v.disc.");
    }
    st_writer_save(w, path);
    st_writer_free(w);
}

static long long meta_ll_get(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    if (!v)
        die("'%s': not a repae checkpoint (metadata '%s' is missing)", st->path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end)
        die("'%s': metadata '%s' = '%s' is not an integer", st->path, key, v);
    return x;
}

static float meta_f_get(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    return v ? strtof(v, NULL) : 0.0f;
}

void checkpoint_load(repae_trainer *t, const char *path, long long *epoch, int *position)
{
    safetensors *st = safetensors_open(path);
    const char *fmt = safetensors_meta(st, "format");
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) != 0)
        die("'%s': not a repae training checkpoint (format is '%s')", path, fmt ? fmt : "missing");
    if (meta_ll_get(st, "version") != CHECKPOINT_VERSION)
        die("'%s': checkpoint version %lld is not supported", path, meta_ll_get(st, "version"));
    param_load(&t->sit->table, t->sit_params, st, "model.", PARAM_IGNORE_EXTRA);
    param_load(&t->sit->table, t->ema_params, st, "ema.", PARAM_IGNORE_EXTRA);
    param_load(&t->vae->table, t->vae->params, st, "vae.", PARAM_IGNORE_EXTRA);
    param_load(&t->sit->table, t->opt_sit.m, st, "opt.m.model.", PARAM_IGNORE_EXTRA);
    param_load(&t->sit->table, t->opt_sit.v, st, "opt.v.model.", PARAM_IGNORE_EXTRA);
    param_load(&t->vae->table, t->opt_vae.m, st, "opt.m.vae.", PARAM_IGNORE_EXTRA);
    param_load(&t->vae->table, t->opt_vae.v, st, "opt.v.vae.", PARAM_IGNORE_EXTRA);
    if (t->disc) {
        param_load(&t->disc->table, t->disc_params, st, "disc.", PARAM_IGNORE_EXTRA);
        param_load(&t->disc->table, t->opt_disc.m, st, "opt.m.disc.", PARAM_IGNORE_EXTRA);
        param_load(&t->disc->table, t->opt_disc.v, st, "opt.v.disc.", PARAM_IGNORE_EXTRA);
        t->opt_disc.step = meta_ll_get(st, "opt_disc_step");
    } else if (safetensors_find(st, "disc.main.0.weight"))
        die("'%s': the checkpoint has a discriminator but this run has none", path);
    t->step = meta_ll_get(st, "step");
    t->opt_sit.step = meta_ll_get(st, "opt_step");
    t->opt_vae.step = meta_ll_get(st, "opt_vae_step");
    t->lecam_ema_real = meta_f_get(st, "lecam_ema_real");
    t->lecam_ema_fake = meta_f_get(st, "lecam_ema_fake");
    *epoch = meta_ll_get(st, "epoch");
    *position = (int)meta_ll_get(st, "position");
    safetensors_close(st);
}

void ldm_checkpoint_save(const ldm_trainer *t, const char *path, long long epoch, int position, const char *args_json)
{
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", CHECKPOINT_FORMAT);
    st_writer_set_metadata(w, "kind", "ldm");
    meta_ll(w, "version", CHECKPOINT_VERSION);
    meta_ll(w, "step", t->step);
    meta_ll(w, "epoch", epoch);
    meta_ll(w, "position", position);
    meta_ll(w, "opt_step", t->opt.step);
    if (args_json)
        st_writer_set_metadata(w, "args", args_json);
    param_save(&t->sit->table, t->sit_params, w, "model.");
    param_save(&t->sit->table, t->ema_params, w, "ema.");
    param_save(&t->sit->table, t->opt.m, w, "opt.m.model.");
    param_save(&t->sit->table, t->opt.v, w, "opt.v.model.");
    st_writer_save(w, path);
    st_writer_free(w);
}

void ldm_checkpoint_load(ldm_trainer *t, const char *path, long long *epoch, int *position)
{
    safetensors *st = safetensors_open(path);
    const char *fmt = safetensors_meta(st, "format"), *kind = safetensors_meta(st, "kind");
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) != 0 || !kind || strcmp(kind, "ldm") != 0)
        die("'%s': not a repae train-ldm checkpoint", path);
    param_load(&t->sit->table, t->sit_params, st, "model.", PARAM_IGNORE_EXTRA);
    param_load(&t->sit->table, t->ema_params, st, "ema.", PARAM_IGNORE_EXTRA);
    param_load(&t->sit->table, t->opt.m, st, "opt.m.model.", PARAM_IGNORE_EXTRA);
    param_load(&t->sit->table, t->opt.v, st, "opt.v.model.", PARAM_IGNORE_EXTRA);
    t->step = meta_ll_get(st, "step");
    t->opt.step = meta_ll_get(st, "opt_step");
    *epoch = meta_ll_get(st, "epoch");
    *position = (int)meta_ll_get(st, "position");
    safetensors_close(st);
}
