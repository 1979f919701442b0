#include "train/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void checkpoint_save(const repae_trainer *t, const char *path, long long epoch, int position, const char *args_json)
{
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", CHECKPOINT_FORMAT);
    st_writer_set_metadata_ll(w, "version", CHECKPOINT_VERSION);
    st_writer_set_metadata_ll(w, "step", t->step);
    st_writer_set_metadata_ll(w, "epoch", epoch);
    st_writer_set_metadata_ll(w, "position", position);
    st_writer_set_metadata_ll(w, "opt_step", t->opt_sit.step);
    st_writer_set_metadata_ll(w, "opt_vae_step", t->opt_vae.step);
    st_writer_set_metadata_ll(w, "opt_disc_step", t->disc ? t->opt_disc.step : 0);
    st_writer_set_metadata_f32(w, "lecam_ema_real", t->lecam_ema_real);
    st_writer_set_metadata_f32(w, "lecam_ema_fake", t->lecam_ema_fake);
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

void checkpoint_load(repae_trainer *t, const char *path, long long *epoch, int *position)
{
    safetensors *st = safetensors_open(path);
    const char *fmt = safetensors_meta(st, "format");
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) != 0)
        die("'%s': not a repae training checkpoint (format is '%s')", path, fmt ? fmt : "missing");
    if (safetensors_meta_ll(st, "version") != CHECKPOINT_VERSION)
        die("'%s': checkpoint version %lld is not supported", path, safetensors_meta_ll(st, "version"));
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
        t->opt_disc.step = safetensors_meta_ll(st, "opt_disc_step");
    } else if (safetensors_find(st, "disc.main.0.weight"))
        die("'%s': the checkpoint has a discriminator but this run has none", path);
    t->step = safetensors_meta_ll(st, "step");
    t->opt_sit.step = safetensors_meta_ll(st, "opt_step");
    t->opt_vae.step = safetensors_meta_ll(st, "opt_vae_step");
    t->lecam_ema_real = safetensors_meta_f32(st, "lecam_ema_real", 0.0f);
    t->lecam_ema_fake = safetensors_meta_f32(st, "lecam_ema_fake", 0.0f);
    *epoch = safetensors_meta_ll(st, "epoch");
    *position = (int)safetensors_meta_ll(st, "position");
    safetensors_close(st);
}

void ldm_checkpoint_save(const ldm_trainer *t, const char *path, long long epoch, int position, const char *args_json)
{
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", CHECKPOINT_FORMAT);
    st_writer_set_metadata(w, "kind", "ldm");
    st_writer_set_metadata_ll(w, "version", CHECKPOINT_VERSION);
    st_writer_set_metadata_ll(w, "step", t->step);
    st_writer_set_metadata_ll(w, "epoch", epoch);
    st_writer_set_metadata_ll(w, "position", position);
    st_writer_set_metadata_ll(w, "opt_step", t->opt.step);
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
    t->step = safetensors_meta_ll(st, "step");
    t->opt.step = safetensors_meta_ll(st, "opt_step");
    *epoch = safetensors_meta_ll(st, "epoch");
    *position = (int)safetensors_meta_ll(st, "position");
    safetensors_close(st);
}
