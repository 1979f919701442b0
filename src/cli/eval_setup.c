#include "cli/eval_setup.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/weights_file.h"

int fnet_options_table(fnet_options *o, option_spec *opts, int n)
{
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--feature-net", OPT_CHOICE, &o->feature_net, "inception",
        "feature network: the ADM Inception-v3, a ViT of ours, or our CNN classifier (train-encoder --arch cnn; "
        "FD in its pooled features)",
        .choices = "inception|vit|cnn");
    OPT("--weights", OPT_STRING, &o->weights, NULL,
        "feature network weights (Inception: pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or "
        "tools/convert_inception.py's copy; vit/cnn: from repae train-encoder)");
    OPT("--layer", OPT_CHOICE, &o->layer, "cls", "ViT features: final-norm cls token or mean of the patch tokens",
        .choices = "cls|mean-patch");
    OPT("--enc-heads", OPT_INT, &o->enc_heads, "0", "ViT attention heads (0: from the file or the width)", .min = 0,
        .max = 128);
    OPT("--enc-mean", OPT_FLOAT, &o->enc_mean, NULL,
        "1-channel ViT / CNN input mean (default: the weights' enc_mean metadata, else 0.5)", .min = -10, .max = 10);
    OPT("--enc-std", OPT_FLOAT, &o->enc_std, NULL,
        "1-channel ViT / CNN input std (default: the weights' enc_std metadata, else 0.5)", .min = 1e-6, .max = 10);
#undef OPT
    return n;
}

void fnet_open(const fnet_options *o, const option_spec *opts, int n_opts, feature_net *f, int max_batch)
{
    bool vit = !strcmp(o->feature_net, "vit"), cnn = !strcmp(o->feature_net, "cnn");
    if (!o->weights) {
        if (vit)
            die("--feature-net vit needs --weights ENCODER.safetensors (e.g. from `repae train-encoder`)");
        if (cnn)
            die("--feature-net cnn needs --weights CLASSIFIER.safetensors (from `repae train-encoder --arch cnn`, "
                "e.g. weights/fmnist-evalnet-cnn.safetensors)");
        die("--feature-net inception needs --weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth as it "
            "is, or its safetensors copy from tools/convert_inception.py (docs/evaluation.md)");
    }
    float mean = options_given(opts, n_opts, "--enc-mean") ? o->enc_mean : NAN;
    float std = options_given(opts, n_opts, "--enc-std") ? o->enc_std : NAN;
    if (cnn) {
        if (options_given(opts, n_opts, "--layer") || options_given(opts, n_opts, "--enc-heads"))
            warn("--layer and --enc-heads apply to --feature-net vit only; ignored");
        feature_net_open_cnn(f, o->weights, mean, std, max_batch);
    } else if (vit)
        feature_net_open_vit(f, o->weights, !strcmp(o->layer, "cls") ? FNET_VIT_CLS : FNET_VIT_MEAN_PATCH,
                             o->enc_heads, mean, std, max_batch);
    else {
        if (options_given(opts, n_opts, "--layer"))
            warn("--layer applies to --feature-net vit only; ignored");
        feature_net_open_inception(f, o->weights, max_batch);
    }
}

const char *fnet_fd_label(const feature_net *f, char *buf, size_t size)
{
    if (!strcmp(f->name, "inception"))
        snprintf(buf, size, "FID");
    else
        snprintf(buf, size, "FD (%s features)", f->name);
    return buf;
}

void eval_stats_save(const char *path, const feature_net *f, const feature_stats *pool, const feature_stats *spatial,
                     int H, int W, int C, const char *source)
{
    st_writer *w = st_writer_new();
    feature_stats_write(w, pool, spatial);
    char buf[64];
    st_writer_set_metadata(w, "feature_net", f->name);
    snprintf(buf, sizeof buf, "%dx%dx%d", H, W, C);
    st_writer_set_metadata(w, "image_size", buf);
    if (source)
        st_writer_set_metadata(w, "source", source);
    st_writer_save(w, path);
    st_writer_free(w);
}

int eval_stats_load(const char *path, const feature_net *f, feature_stats *pool, feature_stats *spatial)
{
    safetensors *st = weights_open(path);
    const char *net = safetensors_meta(st, "feature_net");
    if (net && strcmp(net, f->name) != 0)
        die("'%s': these statistics are of feature network '%s', but this evaluation uses '%s'", path, net, f->name);
    int has_spatial = safetensors_find(st, "mu_s") != NULL;
    safetensors_close(st);
    feature_stats_load(path, "mu", "sigma", pool);
    if (pool->dim != f->dim)
        die("'%s': mu has %d entries, but the %s features have %d", path, pool->dim, f->label, f->dim);
    if (!spatial || !has_spatial)
        return 0;
    feature_stats_load(path, "mu_s", "sigma_s", spatial);
    if (spatial->dim != f->spatial_dim)
        die("'%s': mu_s has %d entries, but the spatial features have %d", path, spatial->dim, f->spatial_dim);
    return 1;
}

void json_line_append(const char *path, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    FILE *fp = xfopen(path, "a");
    fprintf(fp, "%s\n", s);
    xfclose(fp, path);
    free(s);
    cJSON_Delete(j);
}
