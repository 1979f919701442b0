#include "train/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "train/checkpoint_file.h"

/* One description of the REPA-E checkpoint serves save and load.  Without a
 * discriminator opt_disc_step is stored as 0 (into *dummy on load). */
static ckpt_layout repae_layout(repae_trainer *t, long long *epoch, long long *position, long long *dummy)
{
    ckpt_layout l = ckpt_layout_new(CHECKPOINT_FORMAT, NULL, CHECKPOINT_VERSION);
    ckpt_add_run_counters(&l, &t->step, epoch, position);
    ckpt_add_counter(&l, "opt_step", &t->opt_sit.step, 0, CKPT_MAX_STEP);
    ckpt_add_counter(&l, "opt_vae_step", &t->opt_vae.step, 0, CKPT_MAX_STEP);
    ckpt_add_counter(&l, "opt_disc_step", t->disc ? &t->opt_disc.step : dummy, 0, CKPT_MAX_STEP);
    ckpt_add_scalar(&l, "lecam_ema_real", &t->lecam_ema_real);
    ckpt_add_scalar(&l, "lecam_ema_fake", &t->lecam_ema_fake);
    ckpt_add_tensors(&l, "model.", &t->sit->table, t->sit_params);
    ckpt_add_tensors(&l, "ema.", &t->sit->table, t->ema_params);
    ckpt_add_tensors(&l, "vae.", &t->vae->table, t->vae_params);
    ckpt_add_tensors(&l, "opt.m.model.", &t->sit->table, t->opt_sit.m);
    ckpt_add_tensors(&l, "opt.v.model.", &t->sit->table, t->opt_sit.v);
    ckpt_add_tensors(&l, "opt.m.vae.", &t->vae->table, t->opt_vae.m);
    ckpt_add_tensors(&l, "opt.v.vae.", &t->vae->table, t->opt_vae.v);
    if (t->disc) {
        ckpt_add_tensors(&l, "disc.", &t->disc->table, t->disc_params);
        ckpt_add_tensors(&l, "opt.m.disc.", &t->disc->table, t->opt_disc.m);
        ckpt_add_tensors(&l, "opt.v.disc.", &t->disc->table, t->opt_disc.v);
    }
    return l;
}

void checkpoint_save(const repae_trainer *t, const char *path, long long epoch, long long position,
                     const char *args_json)
{
    long long zero = 0;
    /* The layout takes writable pointers because load uses the same one; save only reads. */
    ckpt_layout l = repae_layout((repae_trainer *)t, &epoch, &position, &zero);
    ckpt_save(&l, path, args_json);
}

void checkpoint_load(repae_trainer *t, const char *path, long long *epoch, long long *position)
{
    safetensors *st = safetensors_open(path);
    if (!t->disc && safetensors_find(st, "disc.main.0.weight"))
        die("'%s': the checkpoint has a discriminator but this run has none", path);
    if (t->disc && !safetensors_find(st, "disc.main.0.weight"))
        die("'%s': the checkpoint has no discriminator but this run has one (add --no-disc)", path);
    long long dummy;
    ckpt_layout l = repae_layout(t, epoch, position, &dummy);
    ckpt_load_st(&l, st);
    safetensors_close(st);
}

static ckpt_layout ldm_layout(ldm_trainer *t, long long *epoch, long long *position)
{
    ckpt_layout l = ckpt_layout_new(CHECKPOINT_FORMAT, "ldm", CHECKPOINT_VERSION);
    ckpt_add_run_counters(&l, &t->step, epoch, position);
    ckpt_add_counter(&l, "opt_step", &t->opt.step, 0, CKPT_MAX_STEP);
    ckpt_add_tensors(&l, "model.", &t->sit->table, t->sit_params);
    ckpt_add_tensors(&l, "ema.", &t->sit->table, t->ema_params);
    ckpt_add_tensors(&l, "opt.m.model.", &t->sit->table, t->opt.m);
    ckpt_add_tensors(&l, "opt.v.model.", &t->sit->table, t->opt.v);
    return l;
}

void ldm_checkpoint_save(const ldm_trainer *t, const char *path, long long epoch, long long position,
                         const char *args_json)
{
    ckpt_layout l = ldm_layout((ldm_trainer *)t, &epoch, &position);
    ckpt_save(&l, path, args_json);
}

void ldm_checkpoint_load(ldm_trainer *t, const char *path, long long *epoch, long long *position)
{
    ckpt_layout l = ldm_layout(t, epoch, position);
    ckpt_load(&l, path);
}
