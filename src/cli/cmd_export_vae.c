/* repae export-vae — the reference's save_vae_weights.py (spec §6.5): from a
 * REPA-E training checkpoint write the end-to-end-tuned VAE and the latents
 * statistics its SiT was trained with, for LDM training or sampling:
 *
 *   NAME.safetensors                 vae.* of the checkpoint, with the config (metadata `config`)
 *   NAME-latents-stats.safetensors   latents_scale = ema.bn.running_var^(−1/2) (no eps),
 *                                    latents_bias  = ema.bn.running_mean, both [1,C,1,1]
 *   NAME-discriminator.safetensors   disc.* (when the checkpoint has one)
 *
 * or, with --format diffusers, the folder NAME/ that diffusers'
 * AutoencoderKL.from_pretrained loads (models/vae_diffusers.h: config.json,
 * diffusion_pytorch_model.safetensors, and our latents_stats.safetensors).
 * --vae-ckpt instead of --checkpoint converts a VAE on its own (weights file
 * or diffusers folder; statistics from --latents-stats, or the folder's).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/commands.h"
#include "cli/train_setup.h"
#include "core/error.h"
#include "core/path.h"
#include "core/options.h"
#include "cli/model_files.h"
#include "models/vae.h"
#include "models/vae_diffusers.h"
#include "train/checkpoint.h"
#include "train/vae_trainer.h"
#include "io/weights_file.h"
#include "train/latents_stats.h"

static const char *usage =
    "usage: repae export-vae --checkpoint CKPT --output NAME [options]\n"
    "       repae export-vae --vae-ckpt VAE [--latents-stats S] --output NAME [options]\n"
    "\n"
    "Writes the VAE of a `repae train` (REPA-E) checkpoint as NAME.safetensors\n"
    "(with its configuration) and NAME-latents-stats.safetensors: latents_scale =\n"
    "running_var^(-1/2) (eps ignored) and latents_bias = running_mean of the EMA\n"
    "model's latent BatchNorm, shaped [1,C,1,1] (spec §3, §6.5); plus\n"
    "NAME-discriminator.safetensors when the checkpoint has a discriminator.\n"
    "The GroupNorm group count is not visible in tensor shapes: it is read from\n"
    "the checkpoint's metadata (its args), or given with --norm-groups.\n"
    "\n"
    "--format diffusers writes the folder NAME/ for diffusers'\n"
    "AutoencoderKL.from_pretrained: config.json, diffusion_pytorch_model.safetensors\n"
    "and latents_stats.safetensors (the per-channel statistics, which repae\n"
    "prefers).  diffusers scales latents by scalars, so config.json gets the\n"
    "pooled statistics of all channels as shift_factor / scaling_factor and the\n"
    "per-channel ones as latents_mean / latents_std (see README, diffusers VAEs).\n"
    "--vae-ckpt converts a VAE on its own (a weights file or a diffusers folder)\n"
    "with the statistics of --latents-stats (a folder's own by default).";

/* GroupNorm groups of the checkpoint's VAE: from a `vae_config` entry, else
 * from the run's args (the --vae-ckpt file's config, or --vae-norm-groups
 * for a custom VAE), else 32 (the presets).  *from says which. */
static int norm_groups_of(const safetensors *st, const char **from)
{
    vae_config c;
    const char *meta = safetensors_meta(st, "vae_config");
    if (meta && vae_config_from_json(meta, &c) == 0) {
        *from = "checkpoint metadata vae_config";
        return c.norm_groups;
    }
    const char *args = safetensors_meta(st, "args");
    cJSON *a = args ? cJSON_Parse(args) : NULL;
    int groups = 32;
    *from = "default (preset VAE)";
    if (a) {
        const cJSON *ck = cJSON_GetObjectItemCaseSensitive(a, "vae_ckpt");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(a, "vae");
        const cJSON *ng = cJSON_GetObjectItemCaseSensitive(a, "vae_norm_groups");
        if (cJSON_IsString(ck) && vae_diffusers_is_folder(ck->valuestring)) {
            vae_diffusers_read_config(ck->valuestring, &c);
            groups = c.norm_groups;
            *from = "the run's --vae-ckpt folder (config.json)";
        } else if (cJSON_IsString(ck) && access(ck->valuestring, R_OK) == 0) {
            safetensors *src = weights_open(ck->valuestring);
            if (vae_config_detect(src, "", &c) == 0) {
                groups = c.norm_groups;
                *from = "the run's --vae-ckpt file";
            }
            safetensors_close(src);
        } else if (cJSON_IsString(ck)) {
            warn("'%s': the run started from --vae-ckpt '%s', which is not readable here; assuming %d GroupNorm "
                 "groups (give --norm-groups if that is wrong)",
                 st->path, ck->valuestring, groups);
        } else if (cJSON_IsString(kind) && !strcmp(kind->valuestring, "custom") && cJSON_IsNumber(ng)) {
            groups = ng->valueint;
            *from = "the run's --vae-norm-groups";
        }
        cJSON_Delete(a);
    }
    return groups;
}

/* Copies every "disc.*" tensor, prefix stripped; returns how many. */
static int write_discriminator(const safetensors *st, const char *path)
{
    st_writer *w = st_writer_new();
    float **bufs = xcalloc((size_t)st->n_tensors, sizeof *bufs);
    int n = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (strncmp(t->name, "disc.", 5) != 0)
            continue;
        bufs[n] = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        safetensors_read_f32(st, t, bufs[n]);
        st_writer_add_f32(w, t->name + 5, t->ndim, t->shape, bufs[n]);
        n++;
    }
    if (n) {
        st_writer_set_metadata(w, "format", "repae-discriminator");
        st_writer_save(w, path);
    }
    st_writer_free(w);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    return n;
}

/* The VAE (returns its weights, malloc'd) and its statistics from a REPA-E
 * checkpoint (bias/scale: C floats, malloc'd). */
static float *from_checkpoint(const char *ckpt, int norm_groups, vae *m, float **bias_out, float **scale_out)
{
    safetensors *st = weights_open(ckpt);
    const char *fmt = safetensors_meta(st, "format");
    if (fmt && !strcmp(fmt, VAE_CHECKPOINT_FORMAT))
        die("export-vae: '%s' is a train-vae checkpoint: it has no latent BatchNorm; train-vae itself writes "
            "vae.safetensors and vae-latents-stats.safetensors at the end of its run (export those with "
            "--vae-ckpt and --latents-stats)",
            ckpt);
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) != 0)
        die("export-vae: '%s' is not a repae training checkpoint (format '%s', expected '%s'; a VAE on its own "
            "goes with --vae-ckpt)", ckpt, fmt ? fmt : "missing", CHECKPOINT_FORMAT);
    vae_config cfg;
    if (vae_config_detect(st, "vae.", &cfg) != 0)
        die("export-vae: '%s' holds no VAE (no vae.encoder.conv_in.weight / vae.quant_conv.weight)", ckpt);
    const char *from = "--norm-groups";
    cfg.norm_groups = norm_groups ? norm_groups : norm_groups_of(st, &from);
    vae_config_check(&cfg);
    vae_build(m, &cfg);
    float *params = param_alloc(&m->table);
    vae_load(m, params, st, "vae.", PARAM_IGNORE_EXTRA);
    printf("vae: %s (GroupNorm groups %d from %s)\n", ckpt, cfg.norm_groups, from);

    int C = cfg.z_channels;
    int64_t shape[1] = {C};
    float *mean = xmalloc((size_t)C * sizeof(float)), *var = xmalloc((size_t)C * sizeof(float));
    float *bias = xmalloc((size_t)C * sizeof(float)), *scale = xmalloc((size_t)C * sizeof(float));
    if (!safetensors_find(st, "ema.bn.running_mean") || !safetensors_find(st, "ema.bn.running_var"))
        die("export-vae: '%s' has no ema.bn.running_mean / ema.bn.running_var (the EMA SiT's latent BatchNorm)",
            ckpt);
    safetensors_load_f32(st, "ema.bn.running_mean", 1, shape, mean);
    safetensors_load_f32(st, "ema.bn.running_var", 1, shape, var);
    char what[1200];
    snprintf(what, sizeof what, "export-vae: '%s': the EMA's", ckpt);
    latents_stats_from_bn(mean, var, C, bias, scale, what);
    free(mean), free(var);
    safetensors_close(st);
    *bias_out = bias;
    *scale_out = scale;
    return params;
}

/* A VAE on its own (returns its weights, malloc'd); statistics from
 * --latents-stats, else a diffusers folder's own, else none (NULL). */
static float *from_vae(const char *path, const char *stats, int norm_groups, vae *m, float **bias_out,
                       float **scale_out)
{
    float *params = mf_open_vae(m, path, norm_groups, PARAM_ALLOW_EXTRA, NULL); /* as the reference loads a VAE */
    printf("vae: %s\n", path);
    int C = m->cfg.z_channels;
    *bias_out = *scale_out = NULL;
    if (!stats && vae_diffusers_is_folder(path))
        stats = path;
    if (stats) {
        *bias_out = xmalloc((size_t)C * sizeof(float));
        *scale_out = xmalloc((size_t)C * sizeof(float));
        latents_stats_read(stats, C, *bias_out, *scale_out);
    }
    return params;
}

int cmd_export_vae(int argc, char **argv)
{
    const char *ckpt, *vae_ckpt, *stats, *output, *format;
    int norm_groups;
    option_spec opts[] = {
        {"--checkpoint", OPT_STRING, &ckpt, NULL, "a `repae train` checkpoint (checkpoints/NNNNNNN.safetensors)"},
        {"--vae-ckpt", OPT_STRING, &vae_ckpt, NULL, "or a VAE on its own: weights file or diffusers folder"},
        {"--latents-stats", OPT_STRING, &stats, NULL, "with --vae-ckpt: its latents statistics file"},
        {"--output", OPT_STRING, &output, NULL,
         "output name: NAME.safetensors + NAME-latents-stats.safetensors, or the folder NAME/ (diffusers)"},
        {"--format", OPT_CHOICE, &format, "safetensors", "what to write", .choices = "safetensors|diffusers"},
        {"--norm-groups", OPT_INT, &norm_groups, "0", "VAE GroupNorm groups (0: from the checkpoint's metadata)",
         .min = 0, .max = 1024},
    };
    int rest = options_parse("export-vae", usage, opts, N_OPTS(opts), argc, argv);
    if (rest > 1)
        die("export-vae: unexpected argument '%s' (use --checkpoint and --output)", argv[1]);
    if (!ckpt && !vae_ckpt)
        die("export-vae: --checkpoint is required (or --vae-ckpt for a VAE on its own; see 'repae export-vae "
            "--help')");
    if (ckpt && vae_ckpt)
        die("export-vae: give --checkpoint or --vae-ckpt, not both");
    if (stats && !vae_ckpt)
        die("export-vae: --latents-stats goes with --vae-ckpt (a checkpoint has its own statistics)");
    if (!output || !*output)
        die("export-vae: --output is required (see 'repae export-vae --help')");

    vae m;
    float *bias = NULL, *scale = NULL;
    float *mw = ckpt ? from_checkpoint(ckpt, norm_groups, &m, &bias, &scale)
                     : from_vae(vae_ckpt, stats, norm_groups, &m, &bias, &scale);
    int C = m.cfg.z_channels;
    printf("  %.3f M parameters, z %d, GroupNorm groups %d%s\n", param_count(&m.table, PARAM_TRAINABLE) / 1e6, C,
           m.cfg.norm_groups, m.cfg.no_quant_conv ? ", no quant_conv" : "");

    char path[2048];
    if (!strcmp(format, "diffusers")) {
        vae_diffusers_save(&m, mw, output, bias, scale);
        printf("diffusers AutoencoderKL folder: %s/ (config.json, %s%s)\n", output, VAE_DIFFUSERS_WEIGHTS,
               bias ? ", " VAE_DIFFUSERS_STATS : "");
        if (!bias)
            printf("  no latent statistics: scaling_factor is diffusers' default %g\n",
                   VAE_DIFFUSERS_DEFAULT_SCALING);
        else if (C > 1)
            printf("  config.json: per-channel latents_mean / latents_std, and as scalars the pooled "
                   "shift_factor / scaling_factor (pipelines that read only those lose the per-channel part)\n");
    } else {
        path_format(path, sizeof path, "%s.safetensors", output);
        vae_save_file(&m, mw, path, "");
        printf("vae: %s\n", path);
        if (bias) {
            path_format(path, sizeof path, "%s-latents-stats.safetensors", output);
            latents_stats_write(path, bias, scale, C, ckpt ? ckpt : vae_ckpt);
            printf("latents statistics: %s\n", path);
        }
    }
    for (int c = 0; bias && c < C; c++)
        printf("  channel %d: bias %.6g scale %.6g\n", c, bias[c], scale[c]);
    if (ckpt && strcmp(format, "diffusers") != 0) {
        safetensors *st = weights_open(ckpt);
        path_format(path, sizeof path, "%s-discriminator.safetensors", output);
        if (write_discriminator(st, path))
            printf("discriminator: %s\n", path);
        safetensors_close(st);
    }
    free(bias), free(scale), free(mw);
    vae_free(&m);
    return 0;
}
