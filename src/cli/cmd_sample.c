/* repae sample — class-conditional samples from a trained SiT (spec §9.3,
 * generate.py): PNGs, a grid and the ADM evaluator's .npz.
 *
 * Models (cli/model_files.h, mf_sample_models_open): a REPA-E checkpoint,
 * ours or the release's .pt, gives the EMA SiT (ema.*, or model.* with
 * --no-ema), the VAE (vae.*) and the latent statistics from that SiT's
 * BatchNorm buffers (scale = running_var^(-1/2), eps-free; bias =
 * running_mean); a release run's args.json configures it as generate.py.
 * An LDM-style run gives a SiT weights file plus --vae-ckpt and
 * --latents-stats.  Either may be overridden by those flags.
 *
 * Randomness: image i (its global index) draws its initial noise, its label
 * and its SDE noise from its own Philox stream (global seed, i), and the
 * networks always run on fixed chunks (--net-batch, --decode-batch; see
 * diffusion/sit_velocity.h), so the images do not depend on --batch-size,
 * bit for bit.  --noise replaces those draws by
 * tensors from a file, to replay a run or to compare with another
 * implementation step for step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/model_files.h"
#include "cli/train_setup.h"
#include "core/path.h"
#include "core/arena.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/finite_check.h"
#include "core/options.h"
#include "core/progress.h"
#include "core/rng.h"
#include "diffusion/sampler.h"
#include "diffusion/sit_velocity.h"
#include "io/image.h"
#include "io/labels.h"
#include "io/npz.h"
#include "io/safetensors.h"
#include "train/latents_stats.h"
#include "io/weights_file.h"
#include "models/vae_diffusers.h"

#define BALANCED_STREAM (0x42414C4Eull << 32) /* "BALN": the --balanced shuffle */

static const char *usage =
    "usage: repae sample --ckpt FILE [options]\n"
    "\n"
    "Samples images with the Euler/Heun ODE or the Euler-Maruyama SDE (spec §9),\n"
    "classifier-free guidance on [--guidance-low, --guidance-high], and decodes\n"
    "them with the VAE.  Defaults are generate.py's; the paper's numbers use\n"
    "--mode sde --num-steps 250 --cfg-scale 1.0 (no guidance).\n"
    "\n"
    "--ckpt is a REPA-E checkpoint (SiT, its EMA, VAE and latent statistics =\n"
    "the EMA SiT's BatchNorm running stats, eps-free), an LDM checkpoint of\n"
    "`repae train-ldm` (SiT only: the VAE is its run's --vae-ckpt, the statistics\n"
    "that VAE's -latents-stats file, as generate.py), or a SiT weights file (keys\n"
    "at the top level or under ema./model.) given with --vae-ckpt and\n"
    "--latents-stats.  --vae-ckpt and --latents-stats override either.\n"
    "The official release's checkpoints work the same way, configured as\n"
    "generate.py does: exps/NAME/checkpoints/0400000.pt reads exps/NAME/args.json\n"
    "(else the checkpoint's pickled args) for the model, encoder depth, label\n"
    "dropout and path type; an LDM-only run's VAE is args.json's vae_ckpt, tried\n"
    "as given and beside exps/, with its -latents-stats file.\n"
    "--vae-ckpt may be a diffusers AutoencoderKL folder; its latent statistics\n"
    "(latents_stats.safetensors, else config.json's factors) are then the\n"
    "default after a REPA-E checkpoint's own.\n"
    "\n"
    "Output, with DIR = <sample-dir>/<name> and <name> by default\n"
    "<exp>_<step>_cfg<w>-<low>-<high> (<exp>: the run folder above checkpoints/,\n"
    "<step>: the checkpoint's file name; a file elsewhere: its name):\n"
    "  DIR/%06d.png       image i (global index), unless --no-png\n"
    "  DIR.npz            arr_0: uint8 [N, H, W, 3] (NHWC, RGB), the ADM evaluator's\n"
    "                     input; grey images are replicated to 3 channels unless\n"
    "                     --no-rgb (then [N, H, W, 1])\n"
    "  DIR-grid.png       the first --grid images in a grid\n"
    "  DIR-labels.txt     the class of every image, one per line, in index order\n"
    "\n"
    "Reproducibility: image i draws its noise, label and SDE noise from its own\n"
    "random stream (--global-seed, i), and the networks always run on chunks of\n"
    "--net-batch / --decode-batch images, so --batch-size does not change the\n"
    "images (bit for bit, at the same chunk sizes and thread count).\n"
    "\n"
    "Labels: uniform random per image by default; --balanced gives every class\n"
    "N/classes images (the first N mod classes classes one more), listed in\n"
    "class order and then shuffled (Fisher-Yates) by a stream of --global-seed;\n"
    "--labels gives them explicitly.\n"
    "\n"
    "--noise FILE.safetensors supplies the randomness: `x` [N, C, h, w] float32,\n"
    "the initial noise (normalised latent space), and for the SDE `step_noise`\n"
    "[num_steps-1, N, C, h, w] float32, the noise of each stochastic step; an\n"
    "optional `y` [N] (integers) gives the labels unless --labels/--balanced do.";

typedef struct sample_options {
    const char *ckpt, *vae_ckpt, *latents_stats;
    int heads;
    bool use_ema, no_ema;
    const char *mode, *path_type;
    int num_steps;
    bool heun;
    double cfg_scale, guidance_low, guidance_high;
    int num_samples, batch_size, net_batch, decode_batch, grid;
    long long global_seed;
    bool balanced, no_png, rgb, no_rgb;
    const char *labels, *noise, *sample_dir, *name;
} sample_options;

static int sample_options_table(sample_options *o, option_spec *opts)
{
    int n = 0;
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--ckpt", OPT_STRING, &o->ckpt, NULL, "REPA-E / LDM checkpoint (ours or the release's exps/NAME/checkpoints/N.pt), or SiT weights");
    OPT("--vae-ckpt", OPT_STRING, &o->vae_ckpt, NULL, "VAE weights (default: the checkpoint's vae.*)");
    OPT("--latents-stats", OPT_STRING, &o->latents_stats, NULL,
        "latents_scale/latents_bias file (default: the SiT's BatchNorm running stats)");
    OPT("--heads", OPT_INT, &o->heads, "0", "SiT attention heads (0: from the checkpoint's options or the preset)",
        .min = 0, .max = 256);
    OPT("--use-ema", OPT_FLAG, &o->use_ema, "true", "sample with the EMA SiT (ema.*), as generate.py");
    OPT("--no-ema", OPT_FLAG, &o->no_ema, NULL, "sample with the training SiT (model.*) instead");
    OPT("--mode", OPT_CHOICE, &o->mode, "ode", "sampler", .choices = "ode|sde");
    OPT("--num-steps", OPT_INT, &o->num_steps, "50", "sampling steps", .min = 1, .max = 100000);
    OPT("--heun", OPT_FLAG, &o->heun, NULL, "ODE: Heun's second-order correction");
    OPT("--cfg-scale", OPT_DOUBLE, &o->cfg_scale, "1.5", "classifier-free guidance scale (<= 1: none)", .min = 0,
        .max = 100);
    OPT("--guidance-low", OPT_DOUBLE, &o->guidance_low, "0", "guidance only for t >= this", .min = 0, .max = 1);
    OPT("--guidance-high", OPT_DOUBLE, &o->guidance_high, "1", "guidance only for t <= this", .min = 0, .max = 1);
    OPT("--path-type", OPT_CHOICE, &o->path_type, "linear", "interpolant (the SDE's score)",
        .choices = PATH_TYPE_CHOICES);
    OPT("--num-samples", OPT_INT, &o->num_samples, "50000", "images to generate", .min = 1, .max = 100000000);
    OPT("--batch-size", OPT_INT, &o->batch_size, "32", "images per sampler batch (does not change the images)",
        .min = 1, .max = 65536);
    OPT("--net-batch", OPT_INT, &o->net_batch, "16",
        "the SiT always runs on exactly this many rows (CFG doubles the images), the last chunk padded",
        .min = 1, .max = 65536);
    OPT("--decode-batch", OPT_INT, &o->decode_batch, "4", "the VAE always decodes exactly this many images",
        .min = 1, .max = 65536);
    OPT("--global-seed", OPT_INT64, &o->global_seed, "0", "seed of the per-image random streams", .min = 0,
        .max = 9e18);
    OPT("--balanced", OPT_FLAG, &o->balanced, NULL, "the same number of images per class (see above)");
    OPT("--labels", OPT_STRING, &o->labels, NULL,
        "class labels: a comma-separated list or a text file of integers (sets N unless --num-samples)");
    OPT("--noise", OPT_STRING, &o->noise, NULL, "initial (and SDE step) noise from a safetensors file (see above)");
    OPT("--sample-dir", OPT_STRING, &o->sample_dir, "samples", "where the sample folder goes");
    OPT("--name", OPT_STRING, &o->name, NULL, "folder name (default <exp>_<step>_cfg<w>-<low>-<high>)");
    OPT("--no-png", OPT_FLAG, &o->no_png, NULL, "write the .npz only (no per-image PNGs, no grid unless --grid)");
    OPT("--grid", OPT_INT, &o->grid, "64", "images in DIR-grid.png (0: none)", .min = 0, .max = 100000);
    OPT("--rgb", OPT_FLAG, &o->rgb, NULL, "write grey images as RGB in the PNGs too");
    OPT("--no-rgb", OPT_FLAG, &o->no_rgb, NULL, "keep grey images 1-channel in the .npz");
#undef OPT
    return n;
}

/* Python's str(float): the shortest repr that round-trips, with ".0" for integers. */
static void py_float(char *buf, size_t size, double v)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, size, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eninf"))
        strncat(buf, ".0", size - strlen(buf) - 1);
}

/* <exp>_<step> from .../<exp>/checkpoints/<step>.safetensors, else the file's stem. */
static void run_name(const char *path, char *out, size_t size)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    char *file = slash ? slash + 1 : buf;
    char *dot = strrchr(file, '.');
    if (dot && dot != file)
        *dot = 0;
    if (slash) {
        *slash = 0;
        char *s2 = strrchr(buf, '/');
        const char *dir = s2 ? s2 + 1 : buf;
        if (!strcmp(dir, "checkpoints")) {
            if (s2) {
                *s2 = 0;
                char *s3 = strrchr(buf, '/');
                snprintf(out, size, "%.140s_%.140s", s3 ? s3 + 1 : buf, file);
                return;
            }
        }
    }
    snprintf(out, size, "%.280s", file);
}

/* Supplied SDE noise: step_noise [S-1, N, n] float32, mapped. */
typedef struct file_noise {
    const uint8_t *data;
    int64_t N;
    const int64_t *index;
} file_noise;

static void file_noise_fn(void *p, float *eps, int step, int B, size_t n)
{
    file_noise *f = p;
    for (int i = 0; i < B; i++)
        memcpy(eps + (size_t)i * n, f->data + (((size_t)step * f->N + f->index[i]) * n) * sizeof(float),
               n * sizeof(float));
}

/* Noise drives every sampler step: NaN/Inf or values no standard normal
 * produces (|x| > 1000, e.g. a file of 1e30) would only show up as NaN images
 * at the end. */
static void check_noise(const char *path, const char *name, const float *x, size_t n)
{
    size_t bad = finite_check_f32(x, n);
    if (bad < n)
        die("sample --noise '%s': '%s' holds %g at index %zu: noise must be finite", path, name, x[bad], bad);
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) > 1000.0f)
            die("sample --noise '%s': '%s' holds %g at index %zu: not plausible standard-normal noise (|x| > 1000)",
                path, name, x[i], i);
}

static const st_tensor *require_shape(const safetensors *st, const char *name, int ndim, const int64_t *shape,
                                      const char *what)
{
    const st_tensor *t = safetensors_find(st, name);
    char want[160], got[160];
    st_shape_str(ndim, shape, want, sizeof want);
    if (!t)
        die("sample --noise '%s': no tensor '%s' (%s, shape %s)", st->path, name, what, want);
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = t->shape[d] == shape[d];
    if (!ok)
        die("sample --noise '%s': '%s' has shape %s, expected %s (%s)", st->path, name,
            st_shape_str(t->ndim, t->shape, got, sizeof got), want, what);
    return t;
}

/* The labels and the randomness of a run: --labels / --balanced / random
 * labels, and --noise's initial noise, SDE step noise and labels. */
typedef struct sample_inputs {
    int N;
    int *labels; /* [N] */
    const char *label_source;
    safetensors *ns;  /* --noise, kept open: fnoise maps it */
    float *noise_x;   /* [N, C, h, h] from --noise, or NULL */
    file_noise fnoise;
} sample_inputs;

/* --noise FILE: x (sets N unless given), step_noise for the SDE, y. */
static void read_noise(sample_inputs *in, const sample_options *o, bool n_given, const sampler_config *cfg, int K,
                       int C, int h)
{
    size_t n = (size_t)C * h * h;
    int N = in->N;
    safetensors *ns = in->ns = safetensors_open(o->noise);
    const st_tensor *tx = safetensors_find(ns, "x");
    if (!tx)
        die("sample --noise '%s': no tensor 'x' (the initial noise, shape [N, %d, %d, %d])", o->noise, C, h, h);
    if (!n_given && !o->labels && tx->ndim == 4) {
        if (tx->shape[0] < 1 || tx->shape[0] > INT32_MAX)
            die("sample --noise '%s': 'x' holds %lld samples (at least 1 needed)", o->noise, (long long)tx->shape[0]);
        N = in->N = (int)tx->shape[0];
    }
    require_shape(ns, "x", 4, (int64_t[]){N, C, h, h}, "the initial noise");
    in->noise_x = xmalloc((size_t)N * n * sizeof(float));
    safetensors_read_f32(ns, tx, in->noise_x);
    check_noise(o->noise, "x", in->noise_x, (size_t)N * n);
    if (cfg->mode == SAMPLER_SDE && cfg->num_steps > 1) {
        const st_tensor *ts = require_shape(ns, "step_noise", 5, (int64_t[]){cfg->num_steps - 1, N, C, h, h},
                                            "the SDE's step noise");
        if (ts->dtype != ST_F32)
            die("sample --noise '%s': 'step_noise' must be F32 (it is %s)", o->noise, st_dtype_name(ts->dtype));
        in->fnoise.data = ns->data + ts->begin;
        in->fnoise.N = N;
        float *chunk = xmalloc(n * sizeof(float));
        for (size_t r = 0; r < (size_t)ts->numel / n; r++) { /* mapped, maybe unaligned: copy row by row */
            memcpy(chunk, in->fnoise.data + r * n * sizeof(float), n * sizeof(float));
            check_noise(o->noise, "step_noise", chunk, n);
        }
        free(chunk);
    }
    const st_tensor *ty = safetensors_find(ns, "y");
    if (ty && !o->labels && !o->balanced) {
        if (ty->numel != N)
            die("sample --noise '%s': 'y' has %lld labels, expected %d", o->noise, (long long)ty->numel, N);
        int64_t *y64 = xmalloc((size_t)N * sizeof(int64_t));
        safetensors_read_i64(ns, ty, y64);
        in->labels = xmalloc((size_t)N * sizeof(int));
        in->label_source = "from --noise";
        for (int i = 0; i < N; i++) {
            if (y64[i] < 0 || y64[i] >= K)
                die("sample --noise '%s': y[%d] = %lld is not a class of this SiT (0..%d)", o->noise, i,
                    (long long)y64[i], K - 1);
            in->labels[i] = (int)y64[i];
        }
        free(y64);
    }
}

static void sample_inputs_prepare(sample_inputs *in, const sample_options *o, bool n_given, const sampler_config *cfg,
                                  int K, int C, int h)
{
    memset(in, 0, sizeof *in);
    int N = in->N = o->num_samples, n_given_labels = 0;
    in->label_source = o->labels ? "given" : o->balanced ? "balanced" : "random";
    if (o->labels && o->balanced)
        die("sample: --labels and --balanced exclude each other");
    if (o->labels) {
        in->labels = labels_parse(o->labels, "sample --labels", &n_given_labels);
        if (!n_given)
            N = in->N = n_given_labels;
        else if (n_given_labels != N)
            die("sample: --labels gives %d labels but --num-samples is %d", n_given_labels, N);
        for (int i = 0; i < N; i++)
            if (in->labels[i] >= K)
                die("sample --labels: label %d (image %d) is not below the SiT's %d classes", in->labels[i], i, K);
    }
    if (o->noise) {
        read_noise(in, o, n_given, cfg, K, C, h);
        N = in->N;
    }
    if (o->balanced) {
        in->labels = xmalloc((size_t)N * sizeof(int));
        uint32_t *perm = xmalloc((size_t)N * sizeof(uint32_t));
        for (int c = 0, i = 0; c < K; c++)
            for (int k = 0; k < N / K + (c < N % K); k++)
                perm[i++] = (uint32_t)c;
        rng r = rng_new((uint64_t)o->global_seed, BALANCED_STREAM);
        rng_shuffle_u32(&r, perm, (size_t)N);
        for (int i = 0; i < N; i++)
            in->labels[i] = (int)perm[i];
        free(perm);
    } else if (!in->labels) {
        in->labels = xmalloc((size_t)N * sizeof(int));
        int64_t *all = xmalloc((size_t)N * sizeof(int64_t));
        for (int i = 0; i < N; i++)
            all[i] = i;
        sampler_random_labels(in->labels, N, K, (uint64_t)o->global_seed, all);
        free(all);
    }
}

/* generate.py's sampler from the flags, checked against the SiT. */
static sampler_config sample_sampler_config(const sample_options *o, const sit_config *sc)
{
    sampler_config cfg = sampler_config_default();
    cfg.mode = sampler_mode_parse(o->mode);
    cfg.heun = o->heun;
    cfg.num_steps = o->num_steps;
    cfg.cfg_scale = o->cfg_scale;
    if (o->guidance_low > o->guidance_high)
        die("sample: --guidance-low %g is above --guidance-high %g: the guidance interval [low, high] would be "
            "empty", o->guidance_low, o->guidance_high);
    cfg.guidance_low = o->guidance_low;
    cfg.guidance_high = o->guidance_high;
    cfg.path = path_type_parse(o->path_type);
    cfg.null_class = sc->num_classes;
    sampler_config_check(&cfg);
    if (cfg.cfg_scale > 1.0 && sc->class_dropout_prob <= 0)
        die("sample: --cfg-scale %g needs a SiT trained with label dropout (it has no null-class embedding); "
            "use --cfg-scale 1", cfg.cfg_scale);
    return cfg;
}

/* <sample-dir>/<name>, <name> = --name or generate.py's <exp>_<step>_cfg<w>-<low>-<high>. */
static void sample_dir_path(const sample_options *o, char *dir, size_t size)
{
    char name[512];
    if (o->name)
        path_format(name, sizeof name, "%s", o->name);
    else {
        char run[300], w[40], lo[40], hi[40];
        run_name(o->ckpt, run, sizeof run);
        py_float(w, sizeof w, o->cfg_scale);
        py_float(lo, sizeof lo, o->guidance_low);
        py_float(hi, sizeof hi, o->guidance_high);
        path_format(name, sizeof name, "%s_cfg%s-%s-%s", run, w, lo, hi);
    }
    path_format(dir, size, "%s/%s", o->sample_dir, name);
}

static void print_setup(const sample_options *o, const mf_sample_models *m, const sampler_config *cfg,
                        const sample_inputs *in, const char *dir)
{
    char buf[256];
    int C = m->s.C, h = m->s.H, H, W;
    vae_image_size(&m->v, h, h, &H, &W);
    printf("repae sample: %s\n", dir);
    printf("SiT: %s (%s, keys %s*, %.2f M parameters)\noptions: %s\n", sit_config_str(&m->sc, buf, sizeof buf),
           o->ckpt, m->sit_prefix, sit_param_count(&m->s, false) / 1e6, m->args_from);
    printf("VAE: %.2f M parameters (%s), latent %dx%dx%d -> image %dx%dx%d\nlatent statistics: %s\n",
           vae_param_count(&m->v) / 1e6, m->vae_from, C, h, h, m->v.cfg.out_ch, H, W, m->stats_from);
    printf("sampler: %s, %d steps%s, cfg %g on [%g, %g], %s path, %d NFE per image\n", sampler_mode_name(cfg->mode),
           cfg->num_steps, cfg->heun ? " (Heun)" : "", cfg->cfg_scale, cfg->guidance_low, cfg->guidance_high,
           path_type_name(cfg->path), sampler_nfe(cfg));
    printf("images: %d, %s labels, seed %lld%s\n", in->N, in->label_source, o->global_seed,
           o->noise ? ", noise from --noise" : "");
    fflush(stdout);
}

/* What rank 0 writes per image: its PNG, its place in the grid, its .npz row. */
typedef struct sample_out {
    const char *dir;
    bool pngs;
    int G, Co, Cpng, Cnpz, H, W, B;
    uint8_t *png, *hwc, *grid; /* [3, H, W], [B, H, W, Cnpz], [G, Cpng, H, W] */
    npz_writer *zw;
} sample_out;

/* Images r0 .. r0+rn-1 of a gathered round ([rn, Co, H, W] uint8). */
static void write_round(const sample_out *so, const uint8_t *round_u8, int r0, int rn)
{
    const size_t npix = (size_t)so->H * so->W;
    const int Co = so->Co, B = so->B;
    char path[1500];
    for (int i = 0; i < rn; i++) {
        const uint8_t *im = round_u8 + (size_t)i * Co * npix;
        for (int c = 0; c < so->Cpng; c++)
            memcpy(so->png + c * npix, im + (Co == 1 ? 0 : c) * npix, npix);
        if (so->pngs) {
            path_format(path, sizeof path, "%s/%06d.png", so->dir, r0 + i);
            image_write_png(path, so->png, so->Cpng, so->H, so->W);
        }
        if (r0 + i < so->G)
            memcpy(so->grid + (size_t)(r0 + i) * so->Cpng * npix, so->png, (size_t)so->Cpng * npix);
        uint8_t *out = so->hwc + (size_t)(i % B) * so->Cnpz * npix;
        for (size_t p = 0; p < npix; p++)
            for (int c = 0; c < so->Cnpz; c++)
                out[p * so->Cnpz + c] = im[(Co == 1 ? 0 : c) * npix + p];
        if (i % B == B - 1 || i == rn - 1)
            npz_writer_data(so->zw, so->hwc, (size_t)(i % B + 1) * so->Cnpz * npix);
    }
}

/* DIR-labels.txt (one class per line, index order), DIR-grid.png, and what was written. */
static void write_labels_grid(const sample_out *so, const int *labels, int N)
{
    char path[1500];
    path_format(path, sizeof path, "%s-labels.txt", so->dir);
    atomic_file af = atomic_file_open(path);
    for (int i = 0; i < N; i++)
        fprintf(af.fp, "%d\n", labels[i]);
    atomic_file_commit(&af);
    if (so->G) {
        path_format(path, sizeof path, "%s-grid.png", so->dir);
        image_grid_png(path, so->grid, so->G, so->Cpng, so->H, so->W, (int)ceil(sqrt((double)so->G)));
    }
    printf("npz: %s.npz (arr_0 uint8 [%d, %d, %d, %d])\nlabels: %s-labels.txt\n", so->dir, N, so->H, so->W, so->Cnpz,
           so->dir);
    if (so->G)
        printf("grid: %s-grid.png\n", so->dir);
    if (so->pngs)
        printf("images: %s/%06d.png ... %06d.png\n", so->dir, 0, N - 1);
}

/* Samples and decodes the N images in rounds of world × B (B = so->B):
 * every rank takes a contiguous chunk of B of each round; rank 0 gathers the
 * uint8 images in order and writes them (so: the npz, PNGs, grid, labels).
 * Images draw from their own streams, so the files equal a one-process run's
 * byte for byte. */
static void generate_images(sample_out *so, const sample_options *o, mf_sample_models *m, const sampler_config *cfg,
                            sample_inputs *in, int N)
{
    const int B = so->B, Co = so->Co, h = m->s.H;
    const size_t n = (size_t)m->s.C * h * h, npix = (size_t)so->H * so->W;
    float *x = xmalloc((size_t)B * n * sizeof(float));
    int64_t *index = xmalloc((size_t)B * sizeof(int64_t));
    float *img = xmalloc((size_t)B * Co * npix * sizeof(float));
    uint8_t *u8 = xmalloc((size_t)B * Co * npix);
    void *ws = xmalloc(sampler_workspace_bytes(cfg, B, n));
    arena net = arena_create(sit_velocity_arena_bytes(&m->s, cfg, B, o->net_batch));
    arena dec = arena_create(decode_latents_arena_bytes(&m->v, B, h, h, o->decode_batch));
    /* The weights are only sampled from from here on: packed once (sit.h).
     * (The latent statistics were read from them when the models opened.) */
    sit_velocity_ctx ctx = {&m->s, m->sp, &net, o->net_batch, sit_pack_for_sampling(&m->s, m->sp)};
    const int rank = dist_rank(), world = dist_world();
    const bool writer = rank == 0;
    uint8_t *round_u8 = writer ? xmalloc((size_t)world * B * Co * npix) : NULL;
    so->png = xmalloc((size_t)3 * npix), so->hwc = xmalloc((size_t)B * so->Cnpz * npix);
    so->grid = so->G ? xmalloc((size_t)so->G * so->Cpng * npix) : NULL;
    if (writer) {
        char path[1500];
        path_format(path, sizeof path, "%s.npz", so->dir);
        so->zw = npz_writer_open(path);
        npz_writer_begin(so->zw, "arr_0", NPZ_U8, 4, (int64_t[]){N, so->H, so->W, so->Cnpz});
    }
    progress pb = progress_start("sample", N, "img");
    pb.start_step = 0; /* rates count from the start, not from the first batch */
    for (int r0 = 0; r0 < N; r0 += world * B) {
        int64_t first;
        int nb = dist_round_chunk(r0, N, B, &first), b0 = (int)first;
        for (int i = 0; i < nb; i++)
            index[i] = b0 + i;
        if (nb > 0) {
            if (in->noise_x)
                memcpy(x, in->noise_x + (size_t)b0 * n, (size_t)nb * n * sizeof(float));
            else
                sampler_initial_noise(x, nb, n, (uint64_t)o->global_seed, index);
            sampler_noise sn = {.seed = (uint64_t)o->global_seed, .image_index = index};
            if (in->fnoise.data) {
                in->fnoise.index = index;
                sn.fn = file_noise_fn;
                sn.ctx = &in->fnoise;
            }
            sampler_run(cfg, sit_velocity_fn, &ctx, x, in->labels + b0, nb, n, &sn, ws);
            decode_latents(&m->v, m->vp, x, m->bias, m->scale, img, nb, h, h, o->decode_batch, &dec);
            if (image_from_model_range(u8, img, (size_t)nb * Co * npix))
                die("sample: images %d..%d decode to non-finite pixels (NaN/Inf): the SiT, the VAE or the latent "
                    "statistics (%s) produce them", b0, b0 + nb - 1, m->stats_from);
        }
        dist_gather_bytes(u8, (size_t)nb * Co * npix, writer ? round_u8 : NULL);
        if (!writer)
            continue;
        int rn = N - r0 < world * B ? N - r0 : world * B;
        write_round(so, round_u8, r0, rn);
        progress_update(&pb, r0 + rn, NULL);
    }
    free(round_u8);
    if (writer) {
        npz_writer_end(so->zw);
        npz_writer_close(so->zw);
        progress_finish(&pb);

        write_labels_grid(so, in->labels, N);
    } else
        progress_finish(&pb);
    arena_free(&net);
    arena_free(&dec);
    free(ws), free(x), free(index), free(img), free(u8), free(so->png), free(so->hwc), free(so->grid);
}

int cmd_sample(int argc, char **argv)
{
    sample_options o;
    option_spec opts[40];
    int nopt = sample_options_table(&o, opts);
    int rest = options_parse("sample", usage, opts, nopt, argc, argv);
    if (rest > 1)
        die("sample: unexpected argument '%s' (see 'repae sample --help')", argv[1]);
    if (!o.ckpt)
        die("sample: --ckpt is required (a REPA-E checkpoint or SiT weights; see 'repae sample --help')");
    bool ema = o.use_ema && !o.no_ema;

    /* ---- models ---- */
    mf_sample_models m;
    mf_sample_models_open(&m, o.ckpt, o.vae_ckpt, o.latents_stats, ema, o.heads);
    if (!options_given(opts, nopt, "--path-type")) { /* generate.py's own default unless the run says */
        const char *pt = mf_json_str(m.args, "path_type", NULL);
        path_type known;
        if (path_type_lookup(pt, &known))
            o.path_type = pt;
    }
    const sit_config sc = m.sc;
    int C = m.s.C, h = m.s.H;
    int H, W;
    vae_image_size(&m.v, h, h, &H, &W);
    int Co = m.v.cfg.out_ch;

    /* ---- sampler ---- */
    const sampler_config cfg = sample_sampler_config(&o, &sc);

    /* ---- labels and noise ---- */
    sample_inputs in;
    sample_inputs_prepare(&in, &o, options_given(opts, nopt, "--num-samples"), &cfg, sc.num_classes, C, h);
    const int N = in.N;

    /* ---- output ---- */
    char dir[1400];
    sample_dir_path(&o, dir, sizeof dir);
    bool pngs = !o.no_png;
    int G = o.grid < N ? o.grid : N;
    if (o.no_png && !options_given(opts, nopt, "--grid"))
        G = 0;
    if (dist_rank() == 0)
        make_dirs(pngs ? dir : o.sample_dir);
    int Cpng = (Co == 1 && o.rgb) ? 3 : Co;
    int Cnpz = (Co == 1 && !o.no_rgb) ? 3 : Co;

    print_setup(&o, &m, &cfg, &in, dir);

    int B = o.batch_size < N ? o.batch_size : N;
    sample_out so = {dir, pngs, G, Co, Cpng, Cnpz, H, W, B, NULL, NULL, NULL, NULL};
    generate_images(&so, &o, &m, &cfg, &in, N);

    free(in.labels), free(in.noise_x);
    if (in.ns)
        safetensors_close(in.ns);
    mf_sample_models_free(&m);
    return 0;
}
