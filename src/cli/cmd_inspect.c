/* repae inspect — what is in a weights, fixture or checkpoint file, and what
 * a model preset consists of.
 *
 *   repae inspect FILE.safetensors     tensors, metadata, recognised models
 *   repae inspect --arch sit-xl/2      a preset's parameter table and count
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/model_files.h"
#include "core/error.h"
#include "core/options.h"
#include "io/safetensors.h"
#include "models/cnn_classifier.h"
#include "models/discriminator.h"
#include "models/params.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vae_diffusers.h"
#include "models/vit.h"
#include "io/weights_file.h"

static const char *help =
    "usage: repae inspect FILE [--heads N]\n"
    "       repae inspect --arch NAME [options]\n"
    "\n"
    "FILE: safetensors, or a PyTorch .pt/.pth (zip or legacy format, recognised by\n"
    "content; read without Python: nested dicts become dotted names, non-tensor\n"
    "values such as a pickled argparse.Namespace `args` become metadata, and the\n"
    "pickle's globals are listed).\n"
    "With a FILE: lists every tensor (name, dtype, shape, element count), the total\n"
    "number of elements and the file's __metadata__ entries, then the models it\n"
    "recognises by their keys, at the top level or under a prefix (model., ema.,\n"
    "vae., disc., ...): a VAE (encoder.conv_in.weight), a SiT\n"
    "(x_embedder.proj.weight), a DINOv2 ViT (patch_embed.proj.weight + cls_token),\n"
    "a PatchGAN discriminator (main.0.weight), our CNN classifier\n"
    "(stages.0.conv1.weight); for each its configuration (read\n"
    "from the shapes and the metadata), its parameter count and whether every\n"
    "key of that configuration is present with the right shape.  A REPA-E\n"
    "checkpoint (metadata format repae-checkpoint) is named as such; optimiser\n"
    "moments (opt.*) and gradients (*grad.*) are not listed as models.\n"
    "\n"
    "With --arch NAME: the preset's parameter table (state-dict key, shape,\n"
    "elements; frozen entries and buffers marked), one per line, and the total,\n"
    "without any weights file.  Parameter counts are torch's parameters()\n"
    "(trainable + frozen, e.g. the SiT's pos_embed), buffers separately.  Names:\n"
    "  sit-{s,b,l,xl}/{1,2,4,8}     SiT (latent --in-channels x --input-size², --num-classes,\n"
    "                               one REPA projector to --z-dim, 0 = none)\n"
    "  vae-f8d4, vae-f16d32         AutoencoderKL presets (SD-VAE; IN-VAE / VA-VAE)\n"
    "  dinov2-vit-{s,b,l,g}[-reg]   DINOv2 ViT/14 (pos_embed at --img-size, default the\n"
    "                               checkpoint's 518; REPA-E runs it at 224); -g has the\n"
    "                               SwiGLU FFN (mlp.w12/w3, hidden 4096)\n"
    "  disc                         PatchGAN discriminator (ndf 64, 3 layers)\n"
    "  cnn                          the CNN classifier of `train-encoder --arch cnn` (widths\n"
    "                               32,64,128, 8 groups, 10 classes)";

typedef struct inspect_options {
    const char *arch;
    int heads, in_channels, input_size, num_classes, z_dim, projector_dim, img_size;
    bool qk_norm;
} inspect_options;

static int inspect_options_table(inspect_options *o, option_spec *opts)
{
    int n = 0;
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--arch", OPT_STRING, &o->arch, NULL, "print a preset's parameter table instead of a file's contents");
    OPT("--heads", OPT_INT, &o->heads, "0", "attention heads where the file does not say (0: guess)", .min = 0,
        .max = 256);
    OPT("--in-channels", OPT_INT, &o->in_channels, "0",
        "--arch: input channels (0: the preset's; SiT 4, VAE/ViT/disc 3)", .min = 0, .max = 1024);
    OPT("--input-size", OPT_INT, &o->input_size, "32", "--arch sit: latent size", .min = 1, .max = 4096);
    OPT("--num-classes", OPT_INT, &o->num_classes, "1000", "--arch sit: classes (+1 null-class row)", .min = 1,
        .max = 1000000);
    OPT("--z-dim", OPT_INT, &o->z_dim, "768", "--arch sit: REPA target width (0: no projector)", .min = 0,
        .max = 65536);
    OPT("--projector-dim", OPT_INT, &o->projector_dim, "2048", "--arch sit: projector width", .min = 1, .max = 65536);
    OPT("--qk-norm", OPT_FLAG, &o->qk_norm, NULL, "--arch sit: with q/k LayerNorms");
    OPT("--img-size", OPT_INT, &o->img_size, "518", "--arch dinov2-*: image size (pos_embed grid)", .min = 1,
        .max = 8192);
#undef OPT
    return n;
}

/* ------------------------------------------------------------------ tables */

static void print_table(const param_table *t)
{
    size_t width = 4;
    for (int i = 0; i < t->n; i++)
        if (strlen(t->entries[i].name) > width)
            width = strlen(t->entries[i].name);
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        char shape[160];
        printf("  %-*s  %-22s %12zu%s\n", (int)width, e->name, st_shape_str(e->ndim, e->shape, shape, sizeof shape),
               e->numel, e->kind == PARAM_FROZEN ? "  frozen" : e->kind == PARAM_BUFFER ? "  buffer" : "");
    }
}

/* "1234567" -> "1,234,567" */
static const char *commas(size_t v, char *buf)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%zu", v);
    int len = (int)strlen(tmp), j = 0;
    for (int i = 0; i < len; i++) {
        buf[j++] = tmp[i];
        if ((len - i - 1) % 3 == 0 && i < len - 1)
            buf[j++] = ',';
    }
    buf[j] = 0;
    return buf;
}

static void print_counts(const param_table *t)
{
    char a[40], b[40], c[40];
    size_t tr = param_count(t, PARAM_TRAINABLE), fr = param_count(t, PARAM_FROZEN), bu = param_count(t, PARAM_BUFFER);
    printf("parameters: %zu (%s; trainable %s, frozen %s)\nbuffers: %zu elements\n", tr + fr, commas(tr + fr, a),
           commas(tr, b), commas(fr, c), bu);
}

static int arch_inspect(const inspect_options *o)
{
    char name[64], buf[512];
    snprintf(name, sizeof name, "%s", o->arch);
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (!strncmp(name, "sit-", 4)) {
        sit_config c = sit_config_default();
        char preset[64];
        snprintf(preset, sizeof preset, "SiT-%s", name + 4);
        for (char *p = preset + 4; *p && *p != '/'; p++)
            *p = (char)toupper((unsigned char)*p);
        if (sit_config_preset(&c, preset) != 0)
            die("inspect --arch: unknown SiT preset '%s' (sit-s, sit-b, sit-l, sit-xl with /1, /2, /4 or /8)",
                o->arch);
        c.in_channels = o->in_channels ? o->in_channels : 4;
        c.input_size = o->input_size;
        c.num_classes = o->num_classes;
        c.qk_norm = o->qk_norm;
        c.projector_dim = o->projector_dim;
        c.n_encoders = o->z_dim > 0;
        c.z_dims[0] = o->z_dim;
        if (c.encoder_depth > c.depth)
            c.encoder_depth = c.depth;
        sit_config_check(&c);
        sit m;
        sit_build(&m, &c); /* the table only: no weight memory */
        printf("%s: %s\n", preset, sit_config_str(&c, buf, sizeof buf));
        print_table(&m.table);
        char a[40], b[40], d[40];
        size_t all = sit_param_count(&m, true), proj = sit_projector_param_count(&m);
        printf("parameters: %zu (%s = SiT %s + projectors %s)\n", all, commas(all, a), commas(all - proj, b),
               commas(proj, d));
        printf("trainable: %zu\nbuffers: %zu elements\n", param_count(&m.table, PARAM_TRAINABLE),
               param_count(&m.table, PARAM_BUFFER));
        sit_free(&m);
    } else if (!strncmp(name, "vae-", 4)) {
        vae_config c;
        if (vae_preset(name + 4, &c) != 0)
            die("inspect --arch: unknown VAE preset '%s' (vae-f8d4, vae-f16d32)", o->arch);
        if (o->in_channels)
            c.in_channels = c.out_ch = o->in_channels;
        vae_config_check(&c);
        vae m;
        vae_build(&m, &c);
        printf("%s: %s\n", name, vae_config_to_json(&c, buf, sizeof buf));
        print_table(&m.table);
        print_counts(&m.table);
        vae_free(&m);
    } else if (!strncmp(name, "dinov2-", 7)) {
        vit_config c = vit_preset(name, o->img_size);
        if (o->in_channels)
            c.in_chans = o->in_channels;
        c.layerscale_init = 1.0f;
        vit m;
        vit_build(&m, &c);
        printf("%s: img_size %d patch %d width %d depth %d heads %d registers %d ffn %s %d (%d patch tokens)\n",
               name, c.img_size, c.patch, c.embed_dim, c.depth, c.heads, c.num_register_tokens,
               c.ffn == VIT_FFN_SWIGLU ? "swiglu" : "mlp", m.hidden, m.npatch);
        print_table(&m.table);
        print_counts(&m.table);
        vit_free(&m);
    } else if (!strcmp(name, "disc")) {
        discriminator d;
        disc_build(&d, &(disc_config){o->in_channels ? o->in_channels : 3, 64, 3});
        printf("disc: PatchGAN in %d, ndf 64, 3 layers\n", d.cfg.in_channels);
        print_table(&d.table);
        print_counts(&d.table);
        disc_free(&d);
    } else if (!strcmp(name, "cnn")) {
        cnn_classifier m;
        cnn_build(&m, &(cnn_config){.in_chans = o->in_channels ? o->in_channels : 1, .n_stages = 3,
                                          .widths = {32, 64, 128}, .groups = 8, .num_classes = 10, .gn_eps = 1e-5f});
        printf("cnn: %s\n", cnn_config_to_json(&m.cfg, buf, sizeof buf));
        print_table(&m.table);
        print_counts(&m.table);
        cnn_free(&m);
    } else
        die("inspect --arch: unknown architecture '%s' (sit-xl/2 and the other sit-{s,b,l,xl}/{1,2,4,8}, vae-f8d4, "
            "vae-f16d32, dinov2-vit-{s,b,l,g}[-reg], disc, cnn)", o->arch);
    return 0;
}

/* ------------------------------------------------------------------ a file's models */

/* Counts table entries missing from the file or of another shape; names the first. */
static void check_keys(const param_table *t, const safetensors *st, const char *prefix, const char *skip)
{
    int missing = 0, wrong = 0;
    char first[PARAM_NAME_MAX + 128] = "", key[PARAM_NAME_MAX + 64];
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        if (skip && !strcmp(e->name, skip))
            continue;
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        const st_tensor *s = safetensors_find(st, key);
        int ok = s && s->numel == (int64_t)e->numel && s->ndim == e->ndim;
        for (int d = 0; ok && d < e->ndim; d++)
            ok = s->shape[d] == e->shape[d];
        if (!s)
            missing++;
        else if (!ok)
            wrong++;
        if ((!s || !ok) && !first[0])
            snprintf(first, sizeof first, " (first: %s%s)", key, s ? " has another shape" : "");
    }
    if (!missing && !wrong)
        printf("    all %d keys present with the expected shapes\n", t->n);
    else
        printf("    %d keys missing, %d of another shape%s\n", missing, wrong, first);
}

/* The SiT's BatchNorm running statistics = the latents' (mean, 1/scale²). */
static void print_latent_stats(const safetensors *st, const char *prefix, int C)
{
    char key[320];
    snprintf(key, sizeof key, "%sbn.running_mean", prefix);
    const st_tensor *rm = safetensors_find(st, key);
    snprintf(key, sizeof key, "%sbn.running_var", prefix);
    const st_tensor *rv = safetensors_find(st, key);
    if (!rm || !rv || rm->numel != C || rv->numel != C || C > 4096)
        return;
    float mean[4096], var[4096];
    safetensors_read_f32(st, rm, mean);
    safetensors_read_f32(st, rv, var);
    printf("    latent BatchNorm running_mean");
    for (int c = 0; c < C && c < 8; c++)
        printf(" %.4g", mean[c]);
    printf("%s, running_var", C > 8 ? " ..." : "");
    for (int c = 0; c < C && c < 8; c++)
        printf(" %.4g", var[c]);
    printf("%s\n", C > 8 ? " ..." : "");
}

static void describe_model(const safetensors *st, const cJSON *j, const char *kind, const char *prefix, int heads)
{
    char buf[512], a[40], b[40];
    printf("  %s at '%s':\n", kind, prefix);
    if (!strcmp(kind, "VAE")) {
        vae_config c;
        if (vae_config_detect(st, prefix, &c) != 0) {
            printf("    incomplete AutoencoderKL keys\n");
            return;
        }
        vae_config tmp;
        mf_vae_config(&tmp, st, prefix, j, 0);
        c = tmp;
        vae m;
        vae_build(&m, &c);
        printf("    %s\n    %s parameters\n", vae_config_to_json(&c, buf, sizeof buf), commas(vae_param_count(&m), a));
        check_keys(&m.table, st, prefix, NULL);
        vae_free(&m);
    } else if (!strcmp(kind, "SiT")) {
        sit_config c;
        int guessed = mf_sit_config(&c, st, prefix, j, heads, 1);
        sit m;
        sit_build(&m, &c);
        printf("    %s%s\n", sit_config_str(&c, buf, sizeof buf),
               guessed ? " (heads not recorded in the file: a guess; --heads to set)" : "");
        const char *spn = mf_json_str(j, "spnorm_method", NULL); /* iREPA's target option, from args */
        if (spn && !strcmp(spn, "zscore"))
            printf("    REPA targets: iREPA spatial normalisation (zscore, alpha %g)\n",
                   mf_json_num(j, "zscore_alpha", 0.6));
        size_t all = sit_param_count(&m, true), proj = sit_projector_param_count(&m);
        printf("    %s parameters (SiT %s + projectors %s)\n", commas(all, a), commas(all - proj, b),
               commas(proj, buf));
        check_keys(&m.table, st, prefix, NULL);
        print_latent_stats(st, prefix, c.in_channels);
        sit_free(&m);
    } else if (!strcmp(kind, "ViT")) {
        vit_config c = mf_vit_config(st, prefix, j, 0, heads, 1);
        vit m;
        vit_build(&m, &c);
        printf("    img_size %d patch %d in %d width %d depth %d heads %d registers %d ffn %s %d%s\n", c.img_size,
               c.patch, c.in_chans, c.embed_dim, c.depth, c.heads, c.num_register_tokens,
               c.ffn == VIT_FFN_SWIGLU ? "swiglu" : "mlp", m.hidden, c.layerscale ? " layerscale" : "");
        size_t n = param_count(&m.table, PARAM_TRAINABLE) + param_count(&m.table, PARAM_FROZEN);
        printf("    %s parameters (pos_embed at the file's grid)\n", commas(n, a));
        check_keys(&m.table, st, prefix, NULL);
        vit_free(&m);
    } else if (!strcmp(kind, "CNN classifier")) {
        /* The group count only comes from the metadata; the count of parameters does not depend on it. */
        int recorded = mf_json_num(j, "groups", 0) > 0;
        cnn_config c = cnn_config_from_checkpoint(st, prefix, recorded ? 0 : 1);
        cnn_classifier m;
        cnn_build(&m, &c);
        printf("    %s%s\n", cnn_config_to_json(&c, buf, sizeof buf),
               recorded ? "" : " (GroupNorm groups not recorded in the file)");
        const char *acc = safetensors_meta(st, "test_accuracy");
        printf("    %s parameters, %d-dim pooled features%s%s\n", commas(param_count(&m.table, PARAM_TRAINABLE), a),
               m.dim, acc ? ", test accuracy " : "", acc ? acc : "");
        check_keys(&m.table, st, prefix, NULL);
        cnn_free(&m);
    } else {
        snprintf(buf, sizeof buf, "%smain.0.weight", prefix);
        const st_tensor *w0 = safetensors_find(st, buf);
        int convs = 0;
        for (int k = 0; k < 64; k++) {
            snprintf(buf, sizeof buf, "%smain.%d.weight", prefix, k);
            const st_tensor *t = safetensors_find(st, buf);
            if (t && t->ndim == 4)
                convs++;
        }
        if (!w0 || w0->ndim != 4 || convs < 3 || convs > DISC_MAX_CONVS) {
            printf("    not a PatchGAN layout\n");
            return;
        }
        discriminator d;
        disc_build(&d, &(disc_config){(int)w0->shape[1], (int)w0->shape[0], convs - 2});
        printf("    in %d, ndf %d, %d layers\n    %s parameters, %zu buffer elements\n", d.cfg.in_channels, d.cfg.ndf,
               d.cfg.n_layers, commas(param_count(&d.table, PARAM_TRAINABLE), a), param_count(&d.table, PARAM_BUFFER));
        check_keys(&d.table, st, prefix, NULL);
        disc_free(&d);
    }
}

static void list_models(const safetensors *st, int heads)
{
    static const struct {
        const char *marker, *kind, *also;
    } kinds[] = {
        {"encoder.conv_in.weight", "VAE", NULL},
        {"x_embedder.proj.weight", "SiT", NULL},
        {"patch_embed.proj.weight", "ViT", "cls_token"},
        {"main.0.weight", "discriminator", NULL},
        {"stages.0.conv1.weight", "CNN classifier", NULL},
    };
    cJSON *j = mf_metadata_json(st);
    int found = 0;
    if (mf_is_checkpoint(st)) {
        const char *step = safetensors_meta(st, "step");
        printf("REPA-E checkpoint: step %s (model.* SiT, ema.* its EMA, vae.*, disc.*, opt.* AdamW moments)\n",
               step ? step : "?");
    }
    for (int k = 0; k < (int)(sizeof kinds / sizeof kinds[0]); k++)
        for (int i = 0; i < st->n_tensors; i++) {
            const char *name = st->tensors[i].name;
            size_t ln = strlen(name), lm = strlen(kinds[k].marker);
            if (ln < lm || strcmp(name + ln - lm, kinds[k].marker) != 0)
                continue;
            char prefix[256];
            size_t lp = ln - lm;
            if (lp >= sizeof prefix || (lp > 0 && name[lp - 1] != '.'))
                continue;
            memcpy(prefix, name, lp);
            prefix[lp] = 0;
            if (!strncmp(prefix, "opt.", 4) || strstr(prefix, "grad.") || strstr(prefix, "cot."))
                continue;
            /* "encoder.conv_in.weight" also ends "...decoder.conv_in"? no; but a VAE inside a VAE prefix
             * would not be one: require the sibling key where the layout has one. */
            if (kinds[k].also) {
                char key[320];
                snprintf(key, sizeof key, "%s%s", prefix, kinds[k].also);
                if (!safetensors_find(st, key))
                    continue;
            }
            if (!found++)
                printf("models:\n");
            describe_model(st, j, kinds[k].kind, prefix, heads);
        }
    if (!found)
        printf("models: none recognised (VAE, SiT, DINOv2 ViT, discriminator, CNN classifier)\n");
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ entry */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* A diffusers AutoencoderKL folder: the configuration config.json gives, and
 * whether every tensor maps onto it (the load dies naming any that does not). */
static int inspect_diffusers_folder(const char *path)
{
    char buf[1024], a[40];
    vae m;
    float *params = vae_diffusers_load(&m, path); /* only checked: every tensor must map */
    int C = m.cfg.z_channels;
    float *bias = xmalloc((size_t)C * sizeof(float)), *scale = xmalloc((size_t)C * sizeof(float));
    const char *src;
    vae_diffusers_latents_stats(path, C, bias, scale, &src);
    printf("%s: diffusers AutoencoderKL folder (%s + %s)\n", path, VAE_DIFFUSERS_CONFIG, VAE_DIFFUSERS_WEIGHTS);
    printf("  VAE: %s\n  %s parameters; every tensor maps onto the CompVis names\n",
           vae_config_to_json(&m.cfg, buf, sizeof buf), commas(vae_param_count(&m), a));
    printf("  latent statistics from %s:", src);
    for (int c = 0; c < C && c < 8; c++)
        printf(" (%.4g, %.4g)", bias[c], scale[c]);
    printf("%s  [(bias, scale) per channel]\n", C > 8 ? " ..." : "");
    free(bias);
    free(scale);
    free(params);
    vae_free(&m);
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    inspect_options o;
    option_spec opts[16];
    int nopt = inspect_options_table(&o, opts);
    /* Unknown options keep the historical message (tests match it). */
    for (int a = 1; a < argc; a++) {
        if (strncmp(argv[a], "--", 2) != 0 || !strcmp(argv[a], "--help"))
            continue;
        size_t len = strchr(argv[a], '=') ? (size_t)(strchr(argv[a], '=') - argv[a]) : strlen(argv[a]);
        int known = 0;
        for (int i = 0; i < nopt; i++)
            known |= strlen(opts[i].name) == len && !strncmp(opts[i].name, argv[a], len);
        if (!known) {
            fprintf(stderr, "%s\n\n", help);
            die("inspect: unknown option '%s': expected exactly one FILE argument, got option %s", argv[a], argv[a]);
        }
    }
    int rest = options_parse("inspect", help, opts, nopt, argc, argv);
    if (o.arch) {
        if (rest > 1)
            die("inspect --arch: no FILE argument expected (got '%s')", argv[1]);
        return arch_inspect(&o);
    }
    if (rest != 2) {
        fprintf(stderr, "%s\n\n", help);
        die("inspect: expected exactly one FILE argument%s", rest > 2 ? " (got several)" : "");
    }
    const char *path = argv[1];
    if (vae_diffusers_is_dir(path))
        return inspect_diffusers_folder(path);
    safetensors *st = weights_open(path);
    /* Sorted by name reads better than by offset (qsort: files with 100,000 tensors exist). */
    int n = st->n_tensors;
    const st_tensor **order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = &st->tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_name);
    int64_t total = 0;
    size_t width = 4;
    for (int i = 0; i < n; i++)
        if (strlen(order[i]->name) > width)
            width = strlen(order[i]->name);
    printf("%s: %d tensors\n", path, n);
    if (strcmp(st->format, "safetensors") != 0)
        printf("format: %s%s%s\n", st->format, st->globals ? "; pickle globals: " : "",
               st->globals ? st->globals : "");
    for (int i = 0; i < n; i++) {
        char shape[160];
        printf("  %-*s  %-4s  %-20s  %" PRId64 "\n", (int)width, order[i]->name, st_dtype_name(order[i]->dtype),
               st_shape_str(order[i]->ndim, order[i]->shape, shape, sizeof shape), order[i]->numel);
        total += order[i]->numel;
    }
    printf("total: %" PRId64 " elements (%.2f M)\n", total, total / 1e6);
    if (st->n_meta) {
        printf("metadata:\n");
        for (int i = 0; i < st->n_meta; i++)
            printf("  %s = %s\n", st->meta[i].key, st->meta[i].value);
    }
    free(order);
    fflush(stdout);
    list_models(st, o.heads);
    safetensors_close(st);
    return 0;
}
