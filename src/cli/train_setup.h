/* train_setup.h — what the training commands share: one option table
 * (flag names follow the reference's train_repae.py), the dataset, and the
 * models built from flags and weight files. */
#ifndef REPAE_TRAIN_SETUP_H
#define REPAE_TRAIN_SETUP_H

#include <stdbool.h>

#include "core/options.h"
#include "data/dataset.h"
#include "models/discriminator.h"
#include "models/encoder_preprocess.h"
#include "models/lpips.h"
#include "cli/irepa_options.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vit.h"

#define TRAIN_MAX_OPTS 96

typedef enum train_kind { TRAIN_KIND_REPAE } train_kind;

typedef struct train_options {
    const char *latents; /* train-ldm: the latent cache */
    /* data */
    const char *data; /* "fashion-mnist" or a shard written by `repae prepare` */
    const char *data_split;
    int image_size, channels, max_images;
    /* SiT */
    const char *model;
    int sit_depth, sit_hidden, sit_heads, sit_patch, encoder_depth, projector_dim;
    bool qk_norm;
    float bn_momentum, cfg_prob;
    irepa_options irepa; /* iREPA's conv projector and spatial normalisation */
    /* VAE */
    const char *vae, *vae_ckpt, *vae_ch_mult, *vae_attn_resolutions, *latents_stats;
    int vae_ch, vae_z_channels, vae_num_res_blocks, vae_norm_groups;
    /* encoder */
    const char *enc_type, *enc_ckpt;
    int enc_heads;
    float enc_mean, enc_std;
    /* discriminator / LPIPS */
    const char *disc_ckpt, *lpips_ckpt, *lpips_vgg;
    int disc_ndf, disc_layers;
    bool no_disc;
    long long disc_start;
    float disc_weight, perceptual_weight, kl_weight, lecam_weight;
    /* optimisation */
    float learning_rate, vae_learning_rate, disc_learning_rate, max_grad_norm, ema_decay;
    float proj_coeff, vae_align_proj_coeff;
    const char *path_type, *weighting;
    bool e2e_diffusion_loss;
    int batch_size, preview_images;
    long long max_train_steps, checkpointing_steps, sampling_steps, seed, resume_step;
    const char *output_dir, *exp_name;
} train_options;

typedef struct train_data {
    dataset ds;
} train_data;

/* Every model with its weights buffer (models/params.h: the buffers are
 * ours, the model structs only describe them). */
typedef struct train_models {
    vae vae;
    float *vae_params;
    sit sit;
    float *sit_params;
    bool enc;
    vit vit;
    float *vit_params;
    discriminator disc;
    float *disc_params; /* NULL: no discriminator */
    lpips lp;
    float *lpips_params; /* NULL: no LPIPS */
} train_models;

/* Fills opts (pointing into *o; at most TRAIN_MAX_OPTS) and returns their count. */
int train_options_table(train_options *o, option_spec *opts, train_kind kind);
/* The entries of the shared table named in `names`, in that order (a command
 * that uses only some of them: train-vae, train-ldm); dies on a name the
 * table lacks.  Returns the count; opts has room for TRAIN_MAX_OPTS. */
int train_options_subset(train_options *o, option_spec *opts, const char *const *names, int n_names);
/* Changes an entry's default and help (NULL: keep) in a table from the above. */
void train_option_adjust(option_spec *opts, int n, const char *name, const char *default_value, const char *help);
/* The SiT the flags describe (--model preset or the custom --sit-*), for
 * latents of in_channels × input_size² and num_classes classes, with a
 * projector for the encoder (NULL: none). */
sit_config train_sit_config(const train_options *o, int in_channels, int input_size, int num_classes,
                            const vit *enc);
/* The REPA encoder of --enc-ckpt for C-channel H×H images (input size from
 * encoder_train_input_size for its preprocessing family); returns its new
 * weights buffer (the caller frees it). */
float *train_load_encoder(const char *path, encoder_preprocess_kind kind, int C, int H, int heads, vit *enc);
/* The flag combinations train and train-vae refuse, checked before any data
 * is read: --disc-ckpt with --no-disc, --lpips-vgg without --lpips-ckpt.
 * `command` names the command in the message. */
void train_check_flags(const char *command, const train_options *o);
void train_setup_data(const train_options *o, train_data *d);
void train_data_free(train_data *d);
/* Builds/loads every model; sets the SiT's latent BatchNorm from
 * --latents-stats or, failing that, from the VAE's posterior samples of up
 * to 1024 training images (per-channel mean and 1/std). */
void train_setup_models(const train_options *o, const train_data *d, train_models *m, train_kind kind);
void train_models_free(train_models *m);
/* The pieces of train_setup_models that the VAE-only trainer shares: the VAE
 * (from --vae-ckpt, a preset or the --vae-* flags, weights from --seed + 1),
 * and the loss networks (discriminator unless --no-disc, from --disc-ckpt or
 * --seed + 3; LPIPS from --lpips-ckpt) into m->disc / m->lp.  train_build_vae
 * returns the VAE's new weights buffer (the caller frees it). */
float *train_build_vae(const train_options *o, const train_data *d, vae *v);
void train_build_loss_nets(const train_options *o, const train_data *d, train_models *m);
/* Data, VAE and encoder agree on the image channels (1 or 3); dies naming
 * the file that does not.  v or enc may be NULL. */
void train_check_channels(const char *data, int C, const vae *v, const char *vae_file, const vit *enc,
                          const char *enc_file);
void train_print_summary(const train_options *o, const train_data *d, const train_models *m);

/* Adds a model's tensors to a writer as float32 (pointing into params) or,
 * with f16, as float16 (round to nearest even; a value out of float16's range
 * dies naming the tensor) in a malloc'd buffer that is returned and must stay
 * alive until the writer is saved (NULL for float32).  Names starting with
 * skip_prefix (NULL: none) are left out.  Readers widen F16 back to float32. */
uint16_t *param_save_as(st_writer *w, const param_table *t, const float *params, const char *skip_prefix, bool f16);

/* --batch-size is the global batch (as in the reference): this process's
 * share under mpirun; dies naming `command` if it does not divide evenly. */
int train_local_batch(const char *command, int global_batch);

/* "1,2,2" → {1,2,2}; dies naming the flag on malformed input.  Returns the count. */
int parse_int_list(const char *flag, const char *text, int *out, int max);

#endif
