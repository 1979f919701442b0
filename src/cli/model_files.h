/* model_files.h — finding and configuring models in weights files, shared by
 * `repae sample`, `repae forward` and `repae inspect`.
 *
 * A safetensors file may hold one model at the top level (a converted
 * state dict, a fixture) or several under key prefixes (our REPA-E
 * checkpoint: model. ema. vae. disc., see train/checkpoint.h).  Shapes give
 * most of a configuration; what they cannot (attention heads, the SiT's
 * encoder depth and label dropout, the VAE's GroupNorm groups) comes from the
 * file's metadata: a checkpoint's `args` (the run's options, as args.json)
 * or a fixture's / converted file's `config` JSON.
 */
#ifndef REPAE_MODEL_FILES_H
#define REPAE_MODEL_FILES_H

#include <cjson/cJSON.h>

#include "io/safetensors.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vit.h"

/* The first of `candidates` (NULL-terminated) under which `marker` exists,
 * or NULL. */
const char *mf_find_prefix(const safetensors *st, const char *marker, const char *const *candidates);

/* True if the file's metadata says it is a REPA-E training checkpoint. */
int mf_is_checkpoint(const safetensors *st);

/* The file's options: metadata `args` (checkpoints) or `config` (fixtures,
 * converted weights), parsed; NULL if neither is JSON.  cJSON_Delete it. */
cJSON *mf_metadata_json(const safetensors *st);
/* Numbers/strings from that JSON with defaults (j may be NULL); mf_json_int
 * gives def also for a number that is not a whole number in int's range. */
double mf_json_num(const cJSON *j, const char *key, double def);
int mf_json_int(const cJSON *j, const char *key, int def);
const char *mf_json_str(const cJSON *j, const char *key, const char *def);

/* The attention heads a SiT of this width was built with: `heads` if > 0,
 * else the run's options (sit_heads for a custom model, else its preset
 * `model`), else the JSON's num_heads, else the preset for the width;
 * 0 if none of these says. */
int mf_sit_heads(const cJSON *j, int hidden, int heads);

/* Fills a SiT configuration from the weights under `prefix` and the JSON
 * (cfg_prob / class_dropout_prob, encoder_depth).  heads: as mf_sit_heads;
 * if still unknown and `guess` is set, the largest divisor of the width
 * up to width/64 (only the count of parameters is meaningful then),
 * otherwise it dies asking for --heads.  Returns 1 if heads were guessed. */
int mf_sit_config(sit_config *cfg, const safetensors *st, const char *prefix, const cJSON *j, int heads, int guess);

/* VAE configuration from the shapes under `prefix`; the GroupNorm group
 * count from `norm_groups` if > 0, else the JSON (vae_norm_groups /
 * norm_groups), else vae_config_detect's.  Dies if there is no VAE there. */
void mf_vae_config(vae_config *cfg, const safetensors *st, const char *prefix, const cJSON *j, int norm_groups);

/* Builds and loads the VAE that a --vae-ckpt names, for every command: a
 * diffusers AutoencoderKL folder (a directory with config.json, read by
 * models/vae_diffusers.h), or a weights file with the VAE at the top level
 * (loaded with `top_mode`) or under vae. (a training checkpoint; extra
 * tensors ignored), configured as mf_vae_config does.  Returns the new
 * weights buffer (the caller frees it) and, when `prefix` is not NULL, the
 * prefix the VAE was found under ("" for a folder).  Dies naming the path. */
float *mf_open_vae(vae *v, const char *path, int norm_groups, param_load_mode top_mode, const char **prefix);

/* ViT configuration (vit_config_from_checkpoint); heads from `heads`, the
 * JSON's num_heads, the DINOv2 width table, or (guess) 1. */
vit_config mf_vit_config(const safetensors *st, const char *prefix, const cJSON *j, int img_size, int heads,
                         int guess);

/* ---- the models of `repae sample` (generate.py's rules, spec §9.3) ----
 *
 * --ckpt may be
 *   - our REPA-E or LDM checkpoint (train/checkpoint.h): options from its
 *     metadata;
 *   - a checkpoint of the official scripts (train_repae.py, train_ldm_only.py:
 *     a torch.save dict with ema/model/args/steps, read by weights_open): the
 *     options from args.json beside checkpoints/ (exps/NAME/args.json, as
 *     generate.py), else the pickled argparse.Namespace `args`;
 *   - a bare SiT state dict (keys at the top level or under ema./model.).
 * The SiT is ema.* (model.* with ema = false); heads, encoder depth, label
 * dropout and BatchNorm momentum come from the options, the rest from shapes.
 * The VAE is --vae-ckpt, else the file's vae.* (a REPA-E checkpoint), else
 * the run's vae_ckpt option (an LDM-only run; a relative path is tried as
 * given and then beside the exps/ folder that holds the run).  The latent
 * statistics are --latents-stats; for a file with vae.* the SiT's BatchNorm
 * (save_vae_weights.py's rule); otherwise the run's latents_stats option, the
 * VAE's "-latents-stats" sidecar (generate.py), a diffusers folder's own, and
 * for our LDM checkpoints at last the BatchNorm that init_bn set. */
typedef struct mf_sample_models {
    cJSON *args;            /* the run's options, or NULL */
    char args_from[1100];   /* where they came from, for the log */
    const char *sit_prefix; /* "ema.", "model." or "" */
    sit_config sc;
    sit s;
    float *sp;
    vae v;
    float *vp;
    char vae_from[1100];
    float *bias, *scale; /* [C] */
    char stats_from[1200];
} mf_sample_models;

void mf_sample_models_open(mf_sample_models *m, const char *ckpt, const char *vae_ckpt, const char *latents_stats,
                           int ema, int heads);
void mf_sample_models_free(mf_sample_models *m);

/* The options of the run that wrote `path`: our checkpoints' metadata; else
 * <run>/args.json when the file is <run>/checkpoints/<step>.<ext>; else the
 * file's metadata `args`/`config` (mf_metadata_json).  NULL if none; `from`
 * says which.  A malformed args.json dies naming it. */
cJSON *mf_run_args(const safetensors *st, const char *path, char *from, size_t size);


#endif
