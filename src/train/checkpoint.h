/* checkpoint.h — a REPA-E training checkpoint, one safetensors file.
 *
 * Tensors (each model under its PyTorch state-dict keys, with a prefix):
 *   model.*  SiT (with bn.* buffers)      ema.*   its EMA
 *   vae.*    VAE                          disc.*  discriminator
 *   opt.{m,v}.model.*, opt.{m,v}.vae.*, opt.{m,v}.disc.*   AdamW moments
 * Metadata: format "repae-checkpoint", version, step, epoch, position (data
 * loader), the three optimisers' step counts, the LeCam EMAs, and `args`
 * (the run's options as JSON) so a run can say how it was made.
 *
 * Written to <path>.tmp, fsynced and renamed, so a crash leaves either the
 * previous checkpoint or the new one.  Both formats are layouts of
 * train/checkpoint_file.h: loading checks every tensor by name and shape
 * against the models built from the command line (resuming with different
 * flags fails with the key and both shapes), refuses tensors no model has,
 * and range-checks every counter.
 */
#ifndef REPAE_CHECKPOINT_H
#define REPAE_CHECKPOINT_H

#include "train/ldm_step.h"
#include "train/repae_step.h"

#define CHECKPOINT_FORMAT "repae-checkpoint"
#define CHECKPOINT_VERSION 1

void checkpoint_save(const repae_trainer *t, const char *path, long long epoch, long long position,
                     const char *args_json);
/* Restores models, EMA, optimisers and counters; returns the loader position. */
void checkpoint_load(repae_trainer *t, const char *path, long long *epoch, long long *position);

/* The LDM-only checkpoint (train_ldm_only.py keeps model, ema, opt, args,
 * steps): model.*, ema.*, opt.{m,v}.model.*, the same metadata. */
void ldm_checkpoint_save(const ldm_trainer *t, const char *path, long long epoch, long long position,
                         const char *args_json);
void ldm_checkpoint_load(ldm_trainer *t, const char *path, long long *epoch, long long *position);

#endif
