/* repae forward — run one model on tensors from a file and write its outputs:
 * checks converted weights against another implementation (run the same
 * inputs through PyTorch and compare the two output files).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/model_files.h"
#include "core/arena.h"
#include "core/error.h"
#include "core/options.h"
#include "core/rng.h"
#include "diffusion/denoising_objective.h"
#include "io/safetensors.h"
#include "models/sit.h"
#include "ops/spatial_norm.h"
#include "models/vae.h"
#include "models/vae_diffusers.h"
#include "models/vit.h"
#include "io/weights_file.h"

static const char *usage =
    "usage: repae forward --model vae|sit|vit --weights W.safetensors --input IN.safetensors\n"
    "                     --output OUT.safetensors [options]\n"
    "\n"
    "Runs one model on the tensors of IN and writes its outputs to OUT (float32).\n"
    "The configuration comes from the weights' shapes and metadata; what shapes\n"
    "cannot tell (heads, encoder depth, ...) from the flags below.  Weights may sit\n"
    "under a key prefix (a REPA-E checkpoint: vae., ema., model.): found\n"
    "automatically, or given with --prefix.  Integer inputs (labels, masks) may be\n"
    "any integer dtype.  For --model vae, --weights may be a diffusers\n"
    "AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors).\n"
    "\n"
    "--model vae   in:  x [B, C, H, W] image in [-1, 1]; optional eps [B, Cz, h, w]\n"
    "              out: mean, logvar (clamped to [-30, 20]), std [B, Cz, h, w];\n"
    "                   recon = decode(mean) [B, C, H, W], or with eps:\n"
    "                   z = mean + std*eps and recon = decode(z)\n"
    "--model sit   velocity (eval, no BatchNorm), if `t` is given:\n"
    "              in:  x [N, C, H, W] normalised latent x_t, t [N], y [N] (label;\n"
    "                   num_classes = the null class)\n"
    "              out: v [N, C, H, W]\n"
    "              training forward (spec §5), if `zs` (or zs.0, zs.1, ...) is given:\n"
    "              in:  x [N, C, H, W] un-normalised latent, y [N], zs [N, T, z_dim];\n"
    "                   optional time_input [N] (any shape of N elements),\n"
    "                   noises [N, C, H, W], drop_mask [N] (1 = null label, train mode);\n"
    "                   what is not given is drawn from --seed\n"
    "                   (--spnorm-method zscore: iREPA's spatial normalisation of zs\n"
    "                   first; iREPA's conv projector is recognised from its keys)\n"
    "              out: zs_tilde.0 [N, T, z_dim] (.1 ...), proj_loss []; except in\n"
    "                   align mode: model_output [N, C, H, W], denoising_loss [N];\n"
    "                   always time_input [N], noises; train mode also the updated\n"
    "                   bn.running_mean, bn.running_var [C] (--sit-mode: train =\n"
    "                   batch statistics + label dropout, eval = the weights'\n"
    "                   running statistics, align = eval up to block encoder_depth)\n"
    "--model vit   in:  x [B, C, S, S] (preprocessed image; S = --img-size)\n"
    "              out: x_norm_clstoken [B, D], x_norm_patchtokens [B, (S/p)^2, D],\n"
    "                   x_norm_regtokens [B, R, D] (with registers), logits [B, K]\n"
    "                   (with a head)";

typedef struct fwd_options {
    const char *model, *weights, *input, *output, *prefix;
    int heads, encoder_depth, img_size, norm_groups;
    float cfg_prob;
    const char *sit_mode, *path_type, *weighting, *spnorm_method;
    float zscore_alpha;
    long long seed;
} fwd_options;

static int fwd_options_table(fwd_options *o, option_spec *opts)
{
    int n = 0;
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--model", OPT_CHOICE, &o->model, NULL, "which model", .choices = "vae|sit|vit");
    OPT("--weights", OPT_STRING, &o->weights, NULL, "weights (.safetensors or .pt/.pth, PyTorch state-dict keys)");
    OPT("--input", OPT_STRING, &o->input, NULL, "input tensors (safetensors, names above)");
    OPT("--output", OPT_STRING, &o->output, NULL, "where the outputs go (safetensors)");
    OPT("--prefix", OPT_STRING, &o->prefix, NULL, "key prefix of the model in --weights (default: found)");
    OPT("--heads", OPT_INT, &o->heads, "0", "attention heads (0: the file's metadata or the preset for the width)",
        .min = 0, .max = 256);
    OPT("--encoder-depth", OPT_INT, &o->encoder_depth, "0",
        "SiT: block the projectors read (0: the file's metadata, else min(8, depth))", .min = 0, .max = 256);
    OPT("--cfg-prob", OPT_FLOAT, &o->cfg_prob, "-1",
        "SiT: label dropout probability (-1: the file's metadata, else 0.1); 0 means no null-class row",
        .min = -1, .max = 1);
    OPT("--img-size", OPT_INT, &o->img_size, "0", "ViT: input size S (0: the size of x)", .min = 0, .max = 8192);
    OPT("--norm-groups", OPT_INT, &o->norm_groups, "0", "VAE: GroupNorm groups (0: metadata, else 32)", .min = 0,
        .max = 1024);
    OPT("--sit-mode", OPT_CHOICE, &o->sit_mode, "train", "SiT training forward mode", .choices = "train|eval|align");
    OPT("--path-type", OPT_CHOICE, &o->path_type, "linear", "SiT training forward: interpolant",
        .choices = PATH_TYPE_CHOICES);
    OPT("--weighting", OPT_CHOICE, &o->weighting, "uniform", "SiT training forward: time sampling (if drawn)",
        .choices = TIME_WEIGHTING_CHOICES);
    OPT("--spnorm-method", OPT_CHOICE, &o->spnorm_method, "none",
        "SiT training forward: zscore = iREPA's spatial normalisation of the given zs first (the projector type "
        "comes from the weights)", .choices = "none|zscore");
    OPT("--zscore-alpha", OPT_FLOAT, &o->zscore_alpha, "0.6", "iREPA spatial normalisation: mean-subtraction scale",
        .min = 0, .max = 10);
    OPT("--seed", OPT_INT64, &o->seed, "0", "seed for what the input does not give", .min = 0, .max = 9e18);
#undef OPT
    return n;
}

/* ---- inputs ---- */

static const st_tensor *need(const safetensors *in, const char *name, const char *what)
{
    const st_tensor *t = safetensors_find(in, name);
    if (!t)
        die("forward --input '%s': no tensor '%s' (%s)", in->path, name, what);
    return t;
}

static float *read_f32(const safetensors *in, const st_tensor *t)
{
    float *v = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    safetensors_read_f32(in, t, v);
    return v;
}

static void check_shape(const safetensors *in, const st_tensor *t, int ndim, const int64_t *want, const char *what)
{
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = want[d] < 0 || t->shape[d] == want[d];
    if (!ok) {
        char got[160], exp[160] = "[";
        for (int d = 0; d < ndim; d++) {
            char part[32];
            if (want[d] < 0)
                snprintf(part, sizeof part, "%s*", d ? ", " : "");
            else
                snprintf(part, sizeof part, "%s%lld", d ? ", " : "", (long long)want[d]);
            strncat(exp, part, sizeof exp - strlen(exp) - 2);
        }
        strcat(exp, "]");
        die("forward --input '%s': '%s' has shape %s, expected %s (%s)", in->path, t->name,
            st_shape_str(t->ndim, t->shape, got, sizeof got), exp, what);
    }
}

static int *read_ints(const safetensors *in, const st_tensor *t, int64_t n, const char *what)
{
    if (t->numel != n)
        die("forward --input '%s': '%s' has %lld elements, expected %lld (%s)", in->path, t->name,
            (long long)t->numel, (long long)n, what);
    int *v = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    if (t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
        float *f = read_f32(in, t);
        for (int64_t i = 0; i < n; i++) {
            if (f[i] != floorf(f[i]))
                die("forward --input '%s': '%s'[%lld] = %g is not an integer", in->path, t->name, (long long)i, f[i]);
            v[i] = (int)f[i];
        }
        free(f);
    } else {
        int64_t *w = xmalloc((size_t)(n ? n : 1) * sizeof(int64_t));
        safetensors_read_i64(in, t, w);
        for (int64_t i = 0; i < n; i++)
            v[i] = (int)w[i];
        free(w);
    }
    return v;
}

/* Outputs are kept alive until the writer saves. */
typedef struct outputs {
    st_writer *w;
    void *keep[32];
    char names[32][32];
    int n;
} outputs;

static void put(outputs *o, const char *name, int ndim, const int64_t *shape, float *data)
{
    if (o->n == 32)
        die("forward: too many outputs"); /* cannot happen: at most a dozen */
    st_writer_add_f32(o->w, name, ndim, shape, data);
    snprintf(o->names[o->n], sizeof o->names[0], "%s", name);
    o->keep[o->n++] = data;
}

static const char *auto_prefix(const safetensors *st, const char *marker, const char *const *cands, const char *what)
{
    const char *p = mf_find_prefix(st, marker, cands);
    if (!p)
        die("forward --weights '%s': no %s found (no '%s' at the top level or under the usual prefixes; "
            "give --prefix)", st->path, what, marker);
    return p;
}

/* ---- models ---- */

/* st NULL: --weights is a diffusers AutoencoderKL folder. */
static void run_vae(const fwd_options *o, const safetensors *st, const cJSON *j, const safetensors *in, outputs *out)
{
    vae m;
    float *mw;
    if (!st) {
        if (o->prefix)
            die("forward --weights '%s' is a diffusers folder: --prefix does not apply", o->weights);
        mw = mf_open_vae(&m, o->weights, o->norm_groups, PARAM_STRICT, NULL);
    } else {
        const char *cands[] = {"", "vae.", NULL};
        const char *prefix = o->prefix ? o->prefix : auto_prefix(st, "encoder.conv_in.weight", cands, "VAE");
        vae_config c;
        mf_vae_config(&c, st, prefix, j, o->norm_groups);
        vae_build(&m, &c);
        mw = param_alloc(&m.table);
        vae_load(&m, mw, st, prefix, PARAM_IGNORE_EXTRA);
    }
    const vae_config vc = m.cfg;
    const st_tensor *tx = need(in, "x", "the image [B, C, H, W] in [-1, 1]");
    check_shape(in, tx, 4, (int64_t[]){-1, vc.in_channels, -1, -1}, "the VAE's image");
    int B = (int)tx->shape[0], H = (int)tx->shape[2], W = (int)tx->shape[3], h, w;
    vae_latent_size(&m, H, W, &h, &w);
    int Cz = vc.z_channels;
    size_t nz = (size_t)B * Cz * h * w;
    float *x = read_f32(in, tx);
    float *mean = xmalloc(nz * sizeof(float)), *logvar = xmalloc(nz * sizeof(float)), *std = xmalloc(nz * sizeof(float));
    vae_plan pe = vae_plan_memory(&m, VAE_PASS_ENCODE, B, H, W), pd = vae_plan_memory(&m, VAE_PASS_DECODE, B, h, w);
    size_t need_bytes = pe.saved + pe.scratch > pd.saved + pd.scratch ? pe.saved + pe.scratch : pd.saved + pd.scratch;
    arena ar = arena_create(need_bytes);
    vae_encode(&m, mw, x, mean, logvar, std, B, H, W, &ar);
    arena_reset(&ar, 0);
    int64_t zs[4] = {B, Cz, h, w};
    put(out, "mean", 4, zs, mean);
    put(out, "logvar", 4, zs, logvar);
    put(out, "std", 4, zs, std);
    const float *dec_in = mean;
    const st_tensor *te = safetensors_find(in, "eps");
    if (te) {
        check_shape(in, te, 4, zs, "the posterior noise, the latent's shape");
        float *eps = read_f32(in, te), *z = xmalloc(nz * sizeof(float));
        for (size_t i = 0; i < nz; i++)
            z[i] = mean[i] + std[i] * eps[i];
        free(eps);
        put(out, "z", 4, zs, z);
        dec_in = z;
    }
    int Ho, Wo;
    vae_image_size(&m, h, w, &Ho, &Wo);
    float *recon = xmalloc((size_t)B * vc.out_ch * Ho * Wo * sizeof(float));
    vae_decode(&m, mw, dec_in, recon, B, h, w, &ar);
    put(out, "recon", 4, (int64_t[]){B, vc.out_ch, Ho, Wo}, recon);
    arena_free(&ar);
    free(x), free(mw);
    vae_free(&m);
    printf("vae: %d images %dx%dx%d -> latent %dx%dx%d%s\n", B, vc.in_channels, H, W, Cz, h, w,
           te ? " (sampled with eps)" : "");
}

/* The SiT in --weights, its configuration from the shapes and metadata with
 * the command line's --cfg-prob / --encoder-depth over the file's. */
static float *open_sit(sit *m, const fwd_options *o, const safetensors *st, const cJSON *j)
{
    const char *cands[] = {"", "ema.", "model.", NULL};
    const char *prefix = o->prefix ? o->prefix : auto_prefix(st, "x_embedder.proj.weight", cands, "SiT");
    cJSON *jj = j ? cJSON_Duplicate(j, 1) : cJSON_CreateObject();
    if (o->cfg_prob >= 0) {
        cJSON_DeleteItemFromObject(jj, "cfg_prob");
        cJSON_AddNumberToObject(jj, "cfg_prob", o->cfg_prob);
    }
    if (o->encoder_depth > 0) {
        cJSON_DeleteItemFromObject(jj, "encoder_depth");
        cJSON_AddNumberToObject(jj, "encoder_depth", o->encoder_depth);
    }
    sit_config sc;
    mf_sit_config(&sc, st, prefix, jj, o->heads, 0);
    cJSON_Delete(jj);
    if (o->encoder_depth > sc.depth)
        die("forward --encoder-depth %d: the SiT has only %d blocks", o->encoder_depth, sc.depth);
    sit_build(m, &sc);
    float *params = param_alloc(&m->table);
    sit_load(m, params, st, prefix, PARAM_IGNORE_EXTRA);
    return params;
}

/* The sampling velocity v = SiT(x, t, y). */
static void sit_velocity_pass(const sit *m, const float *params, const safetensors *in, const st_tensor *tt,
                              const float *x, const int *y, int N, outputs *out)
{
    if (tt->numel != N)
        die("forward --input '%s': 't' has %lld elements, expected %d", in->path, (long long)tt->numel, N);
    const size_t nx = (size_t)N * m->C * m->H * m->H;
    float *t = read_f32(in, tt), *v = xmalloc(nx * sizeof(float));
    arena ar = arena_create(sit_velocity_plan_bytes(m, N));
    sit_velocity(m, params, false, &ar, v, x, t, y, N);
    arena_free(&ar);
    put(out, "v", 4, (int64_t[]){N, m->C, m->H, m->H}, v);
    free(t);
    printf("sit: velocity of %d latents %dx%dx%d\n", N, m->C, m->H, m->H);
}

/* The training forward's optional inputs: REPA targets (iREPA's spatial
 * normalisation applied when asked), time_input, noises, drop_mask.  The
 * buffers read are returned in *zsb, *time_in, *noises, *drop for the caller
 * to free. */
static void read_training_inputs(denoising_inputs *ti, const fwd_options *o, const sit *m, const safetensors *in,
                                 int N, float **zsb, float **time_in, float **noises, int **drop)
{
    const sit_config *sc = &m->cfg;
    for (int e = 0; e < sc->n_encoders; e++) {
        char nm[32];
        snprintf(nm, sizeof nm, "zs.%d", e);
        const st_tensor *t = (e == 0 && safetensors_find(in, "zs")) ? safetensors_find(in, "zs")
                                                                    : need(in, nm, "a REPA target [N, T, z_dim]");
        check_shape(in, t, 3, (int64_t[]){N, m->T, sc->z_dims[e]}, "the encoder features for this projector");
        ti->zs[e] = zsb[e] = read_f32(in, t);
        if (!strcmp(o->spnorm_method, "zscore"))
            spatial_norm_forward(zsb[e], zsb[e], N, m->T, sc->z_dims[e], o->zscore_alpha, SPATIAL_NORM_EPS);
    }
    const st_tensor *t;
    if ((t = safetensors_find(in, "time_input"))) {
        if (t->numel != N)
            die("forward --input '%s': 'time_input' has %lld elements, expected %d", in->path, (long long)t->numel,
                N);
        ti->time_input = *time_in = read_f32(in, t);
    }
    if ((t = safetensors_find(in, "noises"))) {
        check_shape(in, t, 4, (int64_t[]){N, m->C, m->H, m->H}, "the interpolant's noise, the latent's shape");
        ti->noise = *noises = read_f32(in, t);
    }
    if ((t = safetensors_find(in, "drop_mask")))
        ti->force_drop = *drop = read_ints(in, t, N, "one dropout flag per sample");
}

/* A copy of n floats as a new output tensor. */
static void put_copy(outputs *out, const char *name, int ndim, const int64_t *shape, const float *src, size_t n)
{
    float *c = xmalloc(n * sizeof(float));
    memcpy(c, src, n * sizeof(float));
    put(out, name, ndim, shape, c);
}

/* The training forward of spec §5 (denoising objective) in --sit-mode. */
static void sit_training_pass(const fwd_options *o, const sit *m, float *params, const safetensors *in,
                              const float *x, const int *y, int N, outputs *out)
{
    const sit_config *sc = &m->cfg;
    const int C = m->C, T = m->T;
    const size_t nx = (size_t)N * C * m->H * m->H;
    const int64_t xs[4] = {N, C, m->H, m->H};
    denoising_opts to = {
        .train = !strcmp(o->sit_mode, "train"),
        .align_only = !strcmp(o->sit_mode, "align"),
        .path = path_type_parse(o->path_type),
        .weighting = time_weighting_parse(o->weighting),
    };
    rng r = rng_new((uint64_t)o->seed, 0x464F5257ull);
    denoising_inputs ti = {.z = x, .y = y, .rng = &r};
    float *zsb[SIT_MAX_ENCODERS] = {0}, *time_in = NULL, *noises = NULL;
    int *drop = NULL;
    read_training_inputs(&ti, o, m, in, N, zsb, &time_in, &noises, &drop);
    arena ar = arena_create(denoising_objective_plan_bytes(m, N, &to));
    denoising_pass a;
    denoising_objective_forward(&a, m, params, &ar, &to, &ti, N);
    for (int e = 0; e < sc->n_encoders; e++) {
        char nm[32];
        snprintf(nm, sizeof nm, "zs_tilde.%d", e);
        put_copy(out, nm, 3, (int64_t[]){N, T, sc->z_dims[e]}, a.zs_tilde[e], (size_t)N * T * sc->z_dims[e]);
    }
    put_copy(out, "proj_loss", 0, NULL, &a.proj_loss, 1);
    if (!to.align_only) {
        put_copy(out, "model_output", 4, xs, a.model_output, nx);
        put_copy(out, "denoising_loss", 1, (int64_t[]){N}, a.denoising_loss, (size_t)N);
    }
    put_copy(out, "time_input", 1, (int64_t[]){N}, a.time_input, (size_t)N);
    put_copy(out, "noises", 4, xs, a.noise, nx);
    if (to.train) {
        put_copy(out, "bn.running_mean", 1, (int64_t[]){C}, params + m->bn_mean, (size_t)C);
        put_copy(out, "bn.running_var", 1, (int64_t[]){C}, params + m->bn_var, (size_t)C);
    }
    arena_free(&ar);
    for (int e = 0; e < sc->n_encoders; e++)
        free(zsb[e]);
    free(time_in), free(noises), free(drop);
    printf("sit: %s-mode training forward of %d latents, proj_loss %.6g\n", o->sit_mode, N, a.proj_loss);
}

static void run_sit(const fwd_options *o, const safetensors *st, const cJSON *j, const safetensors *in,
                    outputs *out)
{
    sit m;
    float *params = open_sit(&m, o, st, j);
    const sit_config *sc = &m.cfg;
    const st_tensor *tt = safetensors_find(in, "t");
    const st_tensor *tz = safetensors_find(in, "zs") ? safetensors_find(in, "zs") : safetensors_find(in, "zs.0");
    if (!tt && !tz)
        die("forward --input '%s': give `t` (with x, y: the velocity) and/or `zs` (with x, y: the training "
            "forward); see 'repae forward --help'", in->path);
    const st_tensor *tx = need(in, "x", "the latent [N, C, H, W]");
    check_shape(in, tx, 4, (int64_t[]){-1, m.C, m.H, m.H}, "the SiT's latent");
    int N = (int)tx->shape[0];
    float *x = read_f32(in, tx);
    int *y = read_ints(in, need(in, "y", "the class labels [N]"), N, "one label per sample");
    int rows = sc->num_classes + (sc->class_dropout_prob > 0);
    for (int i = 0; i < N; i++)
        if (y[i] < 0 || y[i] >= rows)
            die("forward --input '%s': y[%d] = %d is outside [0, %d) (%d classes%s)", in->path, i, y[i], rows,
                sc->num_classes, rows > sc->num_classes ? " + the null class" : "");
    if (tt)
        sit_velocity_pass(&m, params, in, tt, x, y, N, out);
    if (tz) {
        if (sc->n_encoders == 0)
            die("forward: the SiT in '%s' has no projectors, so there is no REPA training forward", st->path);
        sit_training_pass(o, &m, params, in, x, y, N, out);
    }
    free(x), free(y), free(params);
    sit_free(&m);
}

static void run_vit(const fwd_options *o, const safetensors *st, const cJSON *j, const safetensors *in, outputs *out)
{
    const char *cands[] = {"", "enc.", "encoder.", NULL};
    const char *prefix = o->prefix ? o->prefix : auto_prefix(st, "patch_embed.proj.weight", cands, "ViT");
    const st_tensor *tx = need(in, "x", "the image [B, C, S, S]");
    if (tx->ndim != 4 || tx->shape[2] != tx->shape[3]) {
        char got[160];
        die("forward --input '%s': 'x' has shape %s, expected a square image [B, C, S, S]", in->path,
            st_shape_str(tx->ndim, tx->shape, got, sizeof got));
    }
    int S = o->img_size > 0 ? o->img_size : (int)tx->shape[2];
    vit_config vc = mf_vit_config(st, prefix, j, S, o->heads, 0);
    check_shape(in, tx, 4, (int64_t[]){-1, vc.in_chans, S, S}, "the ViT's input at --img-size");
    vit m;
    vit_build(&m, &vc);
    float *mw = param_alloc(&m.table);
    vit_load(&m, mw, st, prefix, PARAM_IGNORE_EXTRA);
    int B = (int)tx->shape[0], D = vc.embed_dim, R = vc.num_register_tokens;
    float *x = read_f32(in, tx);
    float *patch = xmalloc((size_t)B * m.npatch * D * sizeof(float)), *cls = xmalloc((size_t)B * D * sizeof(float));
    float *reg = R ? xmalloc((size_t)B * R * D * sizeof(float)) : NULL;
    float *logits = vc.num_classes ? xmalloc((size_t)B * vc.num_classes * sizeof(float)) : NULL;
    arena ar = arena_create(vit_plan_bytes(&m, B, false));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, B, false);
    vit_forward(&m, mw, &a, x, patch, cls, reg, logits);
    arena_free(&ar);
    put(out, "x_norm_clstoken", 2, (int64_t[]){B, D}, cls);
    put(out, "x_norm_patchtokens", 3, (int64_t[]){B, m.npatch, D}, patch);
    if (reg)
        put(out, "x_norm_regtokens", 3, (int64_t[]){B, R, D}, reg);
    if (logits)
        put(out, "logits", 2, (int64_t[]){B, vc.num_classes}, logits);
    printf("vit: %d images %dx%dx%d, width %d, depth %d, %d heads, %d patch tokens\n", B, vc.in_chans, S, S, D,
           vc.depth, vc.heads, m.npatch);
    free(x), free(mw);
    vit_free(&m);
}

int cmd_forward(int argc, char **argv)
{
    fwd_options o;
    option_spec opts[24];
    int n = fwd_options_table(&o, opts);
    int rest = options_parse("forward", usage, opts, n, argc, argv);
    if (rest > 1)
        die("forward: unexpected argument '%s' (see 'repae forward --help')", argv[1]);
    if (!o.model || !o.weights || !o.input || !o.output)
        die("forward: --model, --weights, --input and --output are required (see 'repae forward --help')");
    bool folder = !strcmp(o.model, "vae") && vae_diffusers_is_dir(o.weights);
    safetensors *st = folder ? NULL : weights_open(o.weights);
    safetensors *in = safetensors_open(o.input);
    cJSON *j = st ? mf_metadata_json(st) : NULL;
    outputs out = {.w = st_writer_new()};
    st_writer_set_metadata(out.w, "model", o.model);
    st_writer_set_metadata(out.w, "weights", o.weights);
    st_writer_set_metadata(out.w, "input", o.input);
    if (!strcmp(o.model, "vae"))
        run_vae(&o, st, j, in, &out);
    else if (!strcmp(o.model, "sit"))
        run_sit(&o, st, j, in, &out);
    else
        run_vit(&o, st, j, in, &out);
    st_writer_save(out.w, o.output);
    st_writer_free(out.w);
    printf("outputs (%s):", o.output);
    for (int i = 0; i < out.n; i++) {
        printf(" %s", out.names[i]);
        free(out.keep[i]);
    }
    printf("\n");
    cJSON_Delete(j);
    safetensors_close(in);
    if (st)
        safetensors_close(st);
    return 0;
}
