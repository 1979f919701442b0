#include "cli/train_setup.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/rng.h"
#include "diffusion/denoising_objective.h"
#include "models/encoder_preprocess.h"
#include "train/latents_stats.h"
#include "train/vae_trainer.h"
#include "io/weights_file.h"

int train_options_table(train_options *o, option_spec *opts, train_kind kind)
{
    (void)kind;
    int n = 0;
#define OPT(...)                                                                                                      \
    do {                                                                                                              \
        if (n >= TRAIN_MAX_OPTS)                                                                                      \
            die("internal: more than %d training options", TRAIN_MAX_OPTS);                                          \
        opts[n++] = (option_spec){__VA_ARGS__};                                                                       \
    } while (0)
    OPT("--data", OPT_STRING, &o->data, "fashion-mnist", "dataset: 'fashion-mnist' or a shard from 'repae prepare'");
    OPT("--data-split", OPT_CHOICE, &o->data_split, "train", "Fashion-MNIST split", .choices = "train|test");
    OPT("--image-size", OPT_INT, &o->image_size, "32", "Fashion-MNIST images are padded to this size", .min = 28,
        .max = 1024);
    OPT("--channels", OPT_INT, &o->channels, "1", "Fashion-MNIST channels (1, or 3 = replicated)", .min = 1, .max = 3);
    OPT("--max-images", OPT_INT, &o->max_images, "0", "use only the first N images (0 = all)", .min = 0, .max = 1e9);
    OPT("--model", OPT_STRING, &o->model, "custom",
        "SiT preset (SiT-S/2, SiT-B/2, SiT-L/2, SiT-XL/2, patch 1/2/4/8) or 'custom' (--sit-*)");
    OPT("--sit-depth", OPT_INT, &o->sit_depth, "6", "custom SiT: blocks", .min = 1, .max = 64);
    OPT("--sit-hidden", OPT_INT, &o->sit_hidden, "384", "custom SiT: width", .min = 8, .max = 8192);
    OPT("--sit-heads", OPT_INT, &o->sit_heads, "6", "custom SiT: attention heads", .min = 1, .max = 128);
    OPT("--sit-patch", OPT_INT, &o->sit_patch, "2", "custom SiT: patch size", .min = 1, .max = 16);
    OPT("--encoder-depth", OPT_INT, &o->encoder_depth, "2", "SiT block whose output the projector reads (1-based)",
        .min = 1, .max = 64);
    OPT("--projector-dim", OPT_INT, &o->projector_dim, "2048", "REPA projector width", .min = 1, .max = 16384);
    n += irepa_options_table(&o->irepa, opts + n);
    OPT("--qk-norm", OPT_FLAG, &o->qk_norm, NULL, "LayerNorm on queries and keys");
    OPT("--bn-momentum", OPT_FLOAT, &o->bn_momentum, "0.1", "latent BatchNorm momentum", .min = 0, .max = 1);
    OPT("--cfg-prob", OPT_FLOAT, &o->cfg_prob, "0.1", "label dropout probability (for CFG)", .min = 0, .max = 1);
    OPT("--vae", OPT_STRING, &o->vae, "custom", "VAE preset f8d4 | f16d32, or 'custom' (--vae-*)");
    OPT("--vae-ckpt", OPT_STRING, &o->vae_ckpt, NULL, "VAE weights (.safetensors, .pt/.pth, or a diffusers folder); configuration read from it");
    OPT("--vae-ch", OPT_INT, &o->vae_ch, "64", "custom VAE: base width", .min = 1, .max = 1024);
    OPT("--vae-ch-mult", OPT_STRING, &o->vae_ch_mult, "1,2,2", "custom VAE: width multipliers per level");
    OPT("--vae-z-channels", OPT_INT, &o->vae_z_channels, "4", "custom VAE: latent channels", .min = 1, .max = 256);
    OPT("--vae-num-res-blocks", OPT_INT, &o->vae_num_res_blocks, "1", "custom VAE: ResnetBlocks per level", .min = 1,
        .max = 8);
    OPT("--vae-norm-groups", OPT_INT, &o->vae_norm_groups, "32", "custom VAE: GroupNorm groups", .min = 1, .max = 256);
    OPT("--vae-attn-resolutions", OPT_STRING, &o->vae_attn_resolutions, "",
        "custom VAE: feature sizes with attention, e.g. '8' (empty: mid block only)");
    OPT("--latents-stats", OPT_STRING, &o->latents_stats, NULL,
        "latents statistics (latents_scale, latents_bias; e.g. the release's *-latents-stats.pt) for the SiT BatchNorm");
    OPT("--enc-type", OPT_STRING, &o->enc_type, "dinov2-vit-b", "representation encoder family (preprocessing)");
    OPT("--enc-ckpt", OPT_STRING, &o->enc_ckpt, NULL, "encoder weights (DINOv2 keys, e.g. the hub's dinov2_vitb14_pretrain.pth); none: no REPA");
    OPT("--enc-heads", OPT_INT, &o->enc_heads, "0", "encoder heads (0: from the width)", .min = 0, .max = 128);
    OPT("--enc-mean", OPT_FLOAT, &o->enc_mean, "0.5", "1-channel encoder input mean", .min = -10, .max = 10);
    OPT("--enc-std", OPT_FLOAT, &o->enc_std, "0.5", "1-channel encoder input std", .min = 1e-6, .max = 10);
    OPT("--disc-ckpt", OPT_STRING, &o->disc_ckpt, NULL, "discriminator weights (none: the reference's random init)");
    OPT("--disc-ndf", OPT_INT, &o->disc_ndf, "64", "discriminator base width", .min = 1, .max = 1024);
    OPT("--disc-layers", OPT_INT, &o->disc_layers, "3", "discriminator stride-2 layers", .min = 1, .max = 8);
    OPT("--no-disc", OPT_FLAG, &o->no_disc, NULL, "no GAN terms at all");
    OPT("--disc-start", OPT_INT64, &o->disc_start, "0", "GAN terms from this step on", .min = 0, .max = 1e12);
    OPT("--disc-weight", OPT_FLOAT, &o->disc_weight, "0.1", "GAN generator weight", .min = 0, .max = 100);
    OPT("--lpips-ckpt", OPT_STRING, &o->lpips_ckpt, NULL, "LPIPS weights (VGG16 + heads); none: no perceptual term");
    OPT("--lpips-vgg", OPT_STRING, &o->lpips_vgg, NULL,
        "torchvision's VGG16 (vgg16-397923af.pth) when --lpips-ckpt is LPIPS's heads-only vgg.pth");
    OPT("--perceptual-weight", OPT_FLOAT, &o->perceptual_weight, "1.0", "LPIPS weight", .min = 0, .max = 100);
    OPT("--kl-weight", OPT_FLOAT, &o->kl_weight, "1e-6", "KL weight", .min = 0, .max = 100);
    OPT("--lecam-weight", OPT_FLOAT, &o->lecam_weight, "0", "LeCam regulariser weight", .min = 0, .max = 100);
    OPT("--learning-rate", OPT_FLOAT, &o->learning_rate, "1e-4", "SiT AdamW learning rate", .min = 0, .max = 1);
    OPT("--vae-learning-rate", OPT_FLOAT, &o->vae_learning_rate, "1e-4", "VAE AdamW learning rate", .min = 0,
        .max = 1);
    OPT("--disc-learning-rate", OPT_FLOAT, &o->disc_learning_rate, "1e-4", "discriminator AdamW learning rate",
        .min = 0, .max = 1);
    OPT("--max-grad-norm", OPT_FLOAT, &o->max_grad_norm, "1.0", "per-module gradient clipping", .min = 0,
        .max = 1e9);
    OPT("--ema-decay", OPT_FLOAT, &o->ema_decay, "0.9999", "EMA decay of the SiT", .min = 0, .max = 1);
    OPT("--proj-coeff", OPT_FLOAT, &o->proj_coeff, "0.5", "REPA weight in the SiT update", .min = 0, .max = 100);
    OPT("--vae-align-proj-coeff", OPT_FLOAT, &o->vae_align_proj_coeff, "1.5", "REPA weight in the VAE update",
        .min = 0, .max = 100);
    OPT("--path-type", OPT_CHOICE, &o->path_type, "linear", "interpolant", .choices = PATH_TYPE_CHOICES);
    OPT("--weighting", OPT_CHOICE, &o->weighting, "uniform", "time sampling", .choices = TIME_WEIGHTING_CHOICES);
    OPT("--e2e-diffusion-loss", OPT_FLAG, &o->e2e_diffusion_loss, NULL,
        "let the diffusion loss reach the VAE (naive end-to-end training, the paper's negative result)");
    OPT("--batch-size", OPT_INT, &o->batch_size, "32", "global batch size", .min = 2, .max = 65536);
    OPT("--max-train-steps", OPT_INT64, &o->max_train_steps, "1000", "training steps", .min = 1, .max = 1e12);
    OPT("--checkpointing-steps", OPT_INT64, &o->checkpointing_steps, "500", "checkpoint every N steps", .min = 0,
        .max = 1e12);
    OPT("--sampling-steps", OPT_INT64, &o->sampling_steps, "500", "preview grid every N steps (and at step 1)",
        .min = 0, .max = 1e12);
    OPT("--preview-images", OPT_INT, &o->preview_images, "64", "images in a preview grid", .min = 1, .max = 1024);
    OPT("--seed", OPT_INT64, &o->seed, "0", "random seed", .min = 0, .max = 9e18);
    OPT("--output-dir", OPT_STRING, &o->output_dir, "exps", "where runs go");
    OPT("--exp-name", OPT_STRING, &o->exp_name, "repae-fmnist", "run name (a folder under --output-dir)");
    OPT("--resume-step", OPT_INT64, &o->resume_step, "0", "resume from this checkpoint step (-1: the latest)",
        .min = -1, .max = 1e12);
#undef OPT
    return n;
}

void train_check_flags(const char *command, const train_options *o)
{
    if (o->disc_ckpt && o->no_disc)
        die("%s: --disc-ckpt and --no-disc contradict each other", command);
    if (o->lpips_vgg && !o->lpips_ckpt)
        die("%s: --lpips-vgg '%s' is LPIPS's VGG16: it needs --lpips-ckpt (the LPIPS heads, vgg.pth)", command,
            o->lpips_vgg);
}

void train_setup_data(const train_options *o, train_data *d)
{
    memset(d, 0, sizeof *d);
    d->ds = dataset_open(o->data, o->data_split, o->image_size, o->channels, o->max_images);
}

void train_data_free(train_data *d) { dataset_free(&d->ds); }

int parse_int_list(const char *flag, const char *text, int *out, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v <= 0 || v > 1 << 20)
            die("%s: '%s' is not a comma-separated list of positive integers", flag, text);
        if (n == max)
            die("%s: at most %d values", flag, max);
        out[n++] = (int)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            die("%s: '%s' is not a comma-separated list of positive integers", flag, text);
    }
    return n;
}

static void load_latents_stats(const char *path, const sit *s, float *params)
{
    float scale[LATENTS_STATS_MAX_C], bias[LATENTS_STATS_MAX_C];
    if (s->C > LATENTS_STATS_MAX_C)
        die("latents statistics for %d channels are not supported", s->C);
    latents_stats_read(path, s->C, bias, scale);
    sit_set_latent_stats(s, params, bias, scale);
}

/* The reference takes the statistics from a file; for a VAE of our own we
 * measure them on up to 1024 training images. */
static void estimate_latents_stats(const train_data *d, const vae *v, const float *vae_params, const sit *s,
                                   float *params)
{
    float bias[256], scale[256];
    latents_stats_estimate_vae(&d->ds, v, vae_params, 1024, bias, scale);
    sit_set_latent_stats(s, params, bias, scale);
}

float *train_build_vae(const train_options *o, const train_data *d, vae *v)
{
    int C = d->ds.channels;
    if (o->vae_ckpt)
        return vae_from_file(v, o->vae_ckpt, "", PARAM_ALLOW_EXTRA);
    else {
        vae_config vc;
        if (strcmp(o->vae, "custom") != 0) {
            if (vae_preset(o->vae, &vc) != 0)
                die("--vae: unknown preset '%s' (f8d4, f16d32 or custom)", o->vae);
        } else {
            vae_preset("f8d4", &vc);
            vc.ch = o->vae_ch;
            vc.n_levels = parse_int_list("--vae-ch-mult", o->vae_ch_mult, vc.ch_mult, VAE_MAX_LEVELS);
            vc.z_channels = o->vae_z_channels;
            vc.num_res_blocks = o->vae_num_res_blocks;
            vc.norm_groups = o->vae_norm_groups;
            vc.n_attn = parse_int_list("--vae-attn-resolutions", o->vae_attn_resolutions, vc.attn_resolutions,
                                       VAE_MAX_ATTN);
            vc.resolution = d->ds.height;
        }
        vc.in_channels = vc.out_ch = C;
        vae_config_check(&vc);
        vae_build(v, &vc);
        float *params = param_alloc(&v->table);
        vae_init_weights(v, params, (uint64_t)o->seed + 1);
        return params;
    }
}

void train_build_loss_nets(const train_options *o, const train_data *d, train_models *m)
{
    int C = d->ds.channels;
    /* Discriminator */
    if (!o->no_disc) {
        disc_build(&m->disc, &(disc_config){C, o->disc_ndf, o->disc_layers});
        m->disc_params = param_alloc(&m->disc.table);
        if (o->disc_ckpt) {
            safetensors *st = weights_open(o->disc_ckpt);
            disc_load(&m->disc, m->disc_params, st, "", PARAM_STRICT);
            safetensors_close(st);
        } else
            disc_init_weights(&m->disc, m->disc_params, (uint64_t)o->seed + 3);
    }
    /* LPIPS */
    if (o->lpips_ckpt) {
        lpips_build(&m->lp, 1);
        m->lpips_params = param_alloc(&m->lp.table);
        lpips_load_files(&m->lp, m->lpips_params, o->lpips_ckpt, o->lpips_vgg);
    } /* --lpips-vgg alone was refused by train_check_flags */
}

void train_check_channels(const char *data, int C, const vae *v, const char *vae_file, const vit *enc,
                          const char *enc_file)
{
    if (C != 1 && C != 3)
        die("'%s': %d-channel images; repae trains on 1-channel (grey) or 3-channel (RGB) images", data, C);
    if (v && (v->cfg.in_channels != C || v->cfg.out_ch != C))
        die("the VAE (%s) is for %d-channel images (out %d), but the data '%s' has %d channels", vae_file,
            v->cfg.in_channels, v->cfg.out_ch, data, C);
    if (enc && enc->cfg.in_chans != C)
        die("--enc-ckpt '%s': an encoder for %d-channel images, but the data '%s' has %d channels", enc_file,
            enc->cfg.in_chans, data, C);
}

void train_setup_models(const train_options *o, const train_data *d, train_models *m, train_kind kind)
{
    (void)kind;
    memset(m, 0, sizeof *m);
    int C = d->ds.channels;
    encoder_preprocess_kind_for(o->enc_type); /* an unknown family is an error, also for grey images */
    m->vae_params = train_build_vae(o, d, &m->vae);
    int h, w;
    vae_latent_size(&m->vae, d->ds.height, d->ds.width, &h, &w);
    if (h != w)
        die("non-square latents (%d×%d) are not supported", h, w);
    /* Encoder */
    if (o->enc_ckpt) {
        m->vit_params = train_load_encoder(o->enc_ckpt, encoder_preprocess_kind_for(o->enc_type), C, d->ds.height,
                                           o->enc_heads, &m->vit);
        m->enc = true;
    }
    train_check_channels(d->ds.source, C, &m->vae, o->vae_ckpt ? o->vae_ckpt : "from the flags", m->enc ? &m->vit : NULL,
                         o->enc_ckpt);
    /* SiT */
    sit_config sc = train_sit_config(o, m->vae.cfg.z_channels, h, d->ds.num_classes, m->enc ? &m->vit : NULL);
    irepa_warn_unused(&o->irepa, "train", m->enc);
    sit_config_check(&sc);
    sit_build(&m->sit, &sc);
    m->sit_params = param_alloc(&m->sit.table);
    sit_init_weights(&m->sit, m->sit_params, (uint64_t)o->seed + 2);
    if (o->latents_stats)
        load_latents_stats(o->latents_stats, &m->sit, m->sit_params);
    else
        estimate_latents_stats(d, &m->vae, m->vae_params, &m->sit, m->sit_params);
    train_build_loss_nets(o, d, m);
}

void train_models_free(train_models *m)
{
    vae_free(&m->vae);
    free(m->vae_params);
    sit_free(&m->sit);
    free(m->sit_params);
    if (m->enc)
        vit_free(&m->vit);
    free(m->vit_params);
    if (m->disc_params) {
        disc_free(&m->disc);
        free(m->disc_params);
    }
    if (m->lpips_params) {
        lpips_free(&m->lp);
        free(m->lpips_params);
    }
}

void train_print_summary(const train_options *o, const train_data *d, const train_models *m)
{
    char buf[256];
    printf("data: %s, %d images %dx%dx%d, %d classes\n", d->ds.source, d->ds.n, d->ds.channels, d->ds.height,
           d->ds.width, d->ds.num_classes);
    printf("VAE: %.2f M parameters, latent %dx%dx%d\n", param_count(&m->vae.table, PARAM_TRAINABLE) / 1e6,
           m->sit.C, m->sit.H, m->sit.H);
    printf("SiT: %s (%.2f M parameters)\n", sit_config_str(&m->sit.cfg, buf, sizeof buf),
           sit_param_count(&m->sit, true) / 1e6);
    if (m->enc)
        printf("encoder: %s, %d px, width %d, depth %d, %d tokens\n", o->enc_ckpt, m->vit.cfg.img_size,
               m->vit.cfg.embed_dim, m->vit.cfg.depth, m->vit.npatch);
    if (m->disc_params)
        printf("discriminator: %.2f M parameters%s\n", param_count(&m->disc.table, PARAM_TRAINABLE) / 1e6,
               o->disc_ckpt ? "" : " (random init)");
}

uint16_t *param_save_as(st_writer *w, const param_table *t, const float *params, const char *skip_prefix, bool f16)
{
    uint16_t *half = f16 ? xmalloc(t->total * sizeof(uint16_t) + 1) : NULL;
    size_t skip = skip_prefix ? strlen(skip_prefix) : 0;
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        if (skip && !strncmp(e->name, skip_prefix, skip))
            continue;
        if (!f16) {
            st_writer_add_f32(w, e->name, e->ndim, e->shape, params + e->offset);
            continue;
        }
        for (size_t k = 0; k < e->numel; k++) {
            half[e->offset + k] = f32_to_f16(params[e->offset + k]);
            if (isfinite(params[e->offset + k]) && !isfinite(f16_to_f32(half[e->offset + k])))
                die("'%s' holds %g, which float16 cannot represent: save as f32", e->name, params[e->offset + k]);
        }
        st_writer_add(w, e->name, ST_F16, e->ndim, e->shape, half + e->offset);
    }
    return half;
}

int train_options_subset(train_options *o, option_spec *opts, const char *const *names, int n_names)
{
    option_spec all[TRAIN_MAX_OPTS];
    int n_all = train_options_table(o, all, TRAIN_KIND_REPAE), n = 0;
    for (int k = 0; k < n_names; k++) {
        int i = 0;
        while (i < n_all && strcmp(all[i].name, names[k]) != 0)
            i++;
        if (i == n_all)
            die("internal: no training option '%s'", names[k]);
        if (n >= TRAIN_MAX_OPTS)
            die("internal: more than %d training options", TRAIN_MAX_OPTS);
        opts[n++] = all[i];
    }
    return n;
}

void train_option_adjust(option_spec *opts, int n, const char *name, const char *default_value, const char *help)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(opts[i].name, name)) {
            if (default_value)
                opts[i].default_value = default_value;
            if (help)
                opts[i].help = help;
            return;
        }
    die("internal: no option '%s' to adjust", name);
}

sit_config train_sit_config(const train_options *o, int in_channels, int input_size, int num_classes,
                            const vit *enc)
{
    sit_config sc = sit_config_default();
    if (strcmp(o->model, "custom") != 0) {
        if (sit_config_preset(&sc, o->model) != 0)
            die("--model: unknown SiT preset '%s'", o->model);
    } else {
        sc.depth = o->sit_depth, sc.hidden = o->sit_hidden, sc.heads = o->sit_heads;
        sc.patch = o->sit_patch;
    }
    sc.in_channels = in_channels;
    sc.input_size = input_size;
    sc.num_classes = num_classes;
    sc.class_dropout_prob = o->cfg_prob;
    sc.encoder_depth = o->encoder_depth;
    sc.projector_dim = o->projector_dim;
    sc.qk_norm = o->qk_norm;
    sc.bn_momentum = o->bn_momentum;
    sc.n_encoders = enc ? 1 : 0;
    if (enc)
        sc.z_dims[0] = enc->cfg.embed_dim;
    irepa_apply_sit(&o->irepa, &sc);
    return sc;
}

float *train_load_encoder(const char *path, encoder_preprocess_kind kind, int C, int H, int heads, vit *enc)
{
    safetensors *st = weights_open(path);
    float *params = vit_from_checkpoint(enc, st, "", encoder_train_input_size(kind, C, H), heads, PARAM_ALLOW_EXTRA);
    safetensors_close(st);
    return params;
}

int train_local_batch(const char *command, int global_batch)
{
    int world = dist_world();
    if (global_batch % world)
        die("%s --batch-size %d: the global batch must divide evenly over the %d processes", command, global_batch,
            world);
    return global_batch / world;
}
