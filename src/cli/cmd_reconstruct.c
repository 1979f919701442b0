/* repae reconstruct — how well a VAE reconstructs held-out images, and what
 * its latent space looks like.
 *
 * Every image x (uint8 → [-1, 1]) is encoded; z = the posterior mean (the
 * usual rFID protocol; --sample: z = mean + std·ε, ε from --seed) is decoded
 * and converted back to uint8 with the reference's truncating conversion.
 * Reported:
 *   PSNR  mean over images of 10·log10(255² / MSE) on the uint8 images (a
 *         perfect reconstruction counts as 100 dB, as `repae train-vae`);
 *   SSIM  mean over images (Gaussian window σ 1.5, skimage's setting);
 *   rFID  Fréchet distance between the feature statistics of the
 *         reconstructions and of the originals (any --feature-net; skipped
 *         without --weights);
 *   latents  per channel: mean and std of the posterior mean μ over all
 *         images and positions, the mean posterior std σ, and the std of a
 *         posterior sample z, √(var μ + mean σ²) — the spread a diffusion
 *         model sees (REPA-E's latent BatchNorm normalises by it).
 * The grid (--out-grid) shows row pairs: 8 originals above their reconstructions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/eval_setup.h"
#include "cli/model_files.h"
#include "core/arena.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/options.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "eval/feature_stats.h"
#include "eval/frechet.h"
#include "eval/image_metrics.h"
#include "io/image.h"
#include "models/vae.h"
#include "io/weights_file.h"

static const char *usage =
    "usage: repae reconstruct --vae-ckpt V.safetensors [options]\n"
    "\n"
    "Encodes images with the VAE (posterior mean; --sample: a posterior sample),\n"
    "decodes them and reports PSNR and SSIM (uint8 images, after the reference's\n"
    "truncating conversion), rFID (feature statistics of the reconstructions vs\n"
    "the originals; needs --weights) and the latent statistics: per-channel mean\n"
    "and std of the posterior mean, mean posterior std, std of a posterior sample.\n"
    "--vae-ckpt takes VAE weights, a `repae train` checkpoint or a `repae\n"
    "train-vae` checkpoint (the VAE under vae.), or a diffusers AutoencoderKL\n"
    "folder (config.json + diffusion_pytorch_model.safetensors).";

typedef struct recon_options {
    const char *vae_ckpt, *data, *data_split, *out_grid, *json;
    int vae_norm_groups, image_size, channels, max_images, batch_size, grid_images;
    bool sample;
    long long seed;
    fnet_options fn;
} recon_options;

#define RECON_MAX_OPTS (20 + FNET_MAX_OPTS)

static int recon_options_table(recon_options *o, option_spec *opts)
{
    int n = 0;
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--vae-ckpt", OPT_STRING, &o->vae_ckpt, NULL, "VAE weights, or a repae train / train-vae checkpoint");
    OPT("--vae-norm-groups", OPT_INT, &o->vae_norm_groups, "0", "VAE GroupNorm groups (0: from the file)", .min = 0,
        .max = 256);
    OPT("--data", OPT_STRING, &o->data, "fashion-mnist", "images: 'fashion-mnist' or a shard from 'repae prepare'");
    OPT("--data-split", OPT_CHOICE, &o->data_split, "test", "Fashion-MNIST split", .choices = "train|test");
    OPT("--image-size", OPT_INT, &o->image_size, "32", "Fashion-MNIST images are padded to this size", .min = 28,
        .max = 1024);
    OPT("--channels", OPT_INT, &o->channels, "0", "Fashion-MNIST channels (0: the VAE's input channels)", .min = 0,
        .max = 3);
    OPT("--max-images", OPT_INT, &o->max_images, "0", "use only the first N images (0 = all)", .min = 0, .max = 1e9);
    OPT("--batch-size", OPT_INT, &o->batch_size, "32", "images per VAE batch", .min = 1, .max = 4096);
    OPT("--sample", OPT_FLAG, &o->sample, NULL, "decode a posterior sample instead of the posterior mean");
    OPT("--seed", OPT_INT64, &o->seed, "0", "noise seed for --sample", .min = 0, .max = 9e18);
    OPT("--out-grid", OPT_STRING, &o->out_grid, NULL, "PNG of originals (rows) over their reconstructions");
    OPT("--grid-images", OPT_INT, &o->grid_images, "16", "images in the grid", .min = 1, .max = 1024);
    OPT("--json", OPT_STRING, &o->json, NULL, "append one JSON line with every metric to this file");
#undef OPT
    return fnet_options_table(&o->fn, opts, n);
}

static float *load_vae(const recon_options *o, vae *v, const char **prefix)
{
    return mf_open_vae(v, o->vae_ckpt, o->vae_norm_groups, PARAM_ALLOW_EXTRA, prefix);
}

/* [B, C, H, W] → [B, H, W, C] (the feature network's layout). */
static void to_nhwc(uint8_t *dst, const uint8_t *src, int B, int C, int H, int W)
{
    size_t HW = (size_t)H * W;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < HW; p++)
                dst[((size_t)b * HW + p) * C + c] = src[((size_t)b * C + c) * HW + p];
}

/* What a pass over the images accumulates. */
typedef struct recon_result {
    double sum_psnr, sum_ssim, fd;
    int n_perfect;
    double *s_mu, *s_mu2, *s_sd, *s_var; /* [Cz] sums of μ, μ², σ, σ² over images and positions */
    uint8_t *grid_rec;                   /* [G, C, H, W] the first G reconstructions */
    int G;
} recon_result;

/* Encodes, decodes and measures every image of ds (f: the feature network
 * for rFID, or NULL).  Under mpirun each round of world × batch images is
 * split in contiguous chunks, one per rank; every rank receives every
 * chunk's reconstructions, posterior moments and features and adds them up
 * in image order, so the results equal a one-process run's bit for bit. */
static void reconstruct_images(const recon_options *o, vae *v, const float *vw, const dataset *ds, feature_net *f,
                               recon_result *r)
{
    const int world = dist_world();
    int N = ds->n, C = ds->channels, H = ds->height, W = ds->width, B = o->batch_size;
    int h, w, Cz = v->cfg.z_channels;
    vae_latent_size(v, H, W, &h, &w);
    size_t img = (size_t)C * H * W, lat = (size_t)Cz * h * w, dim = f ? (size_t)f->dim : 0;
    vae_plan pe = vae_plan_memory(v, VAE_PASS_ENCODE, B, H, W), pd = vae_plan_memory(v, VAE_PASS_DECODE, B, h, w);
    size_t need = pe.saved + pe.scratch > pd.saved + pd.scratch ? pe.saved + pe.scratch : pd.saved + pd.scratch;
    arena ar = arena_create(need);
    float *x = xmalloc(B * img * sizeof(float)), *recon = xmalloc(B * img * sizeof(float));
    float *z = xmalloc(B * lat * sizeof(float));
    /* this rank's chunk, packed: floats mean, std [b, lat] and features [2, b, dim], then the
     * reconstructions [b, img] as bytes, padded to 16 bytes (the floats of the next chunk stay aligned) */
#define CHUNK_BYTES(b) ((((size_t)(b) * ((2 * lat + 2 * dim) * sizeof(float) + img)) + 15) & ~(size_t)15)
    uint8_t *mine = xmalloc(CHUNK_BYTES(B)), *all = xmalloc((size_t)world * CHUNK_BYTES(B));
    uint8_t *nhwc = f ? xmalloc(B * img) : NULL;
    feature_accum acc_orig, acc_rec;
    if (f) {
        feature_accum_init(&acc_orig, f->dim, 0);
        feature_accum_init(&acc_rec, f->dim, 0);
    }
    bool do_ssim = H >= SSIM_WIN && W >= SSIM_WIN;
    rng rg = rng_new((uint64_t)o->seed, 0x5245434f4eull);
    progress pb = progress_start("reconstruct", N, "img");
    pb.start_step = 0; /* the rate counts images from the start, not from the first batch's end */
    for (int r0 = 0; r0 < N; r0 += world * B) {
        int64_t first;
        int b = dist_round_chunk(r0, N, B, &first), i0 = (int)first;
        float *mean = (float *)mine, *std = mean + (size_t)b * lat, *feat = std + (size_t)b * lat;
        uint8_t *out = (uint8_t *)(feat + 2 * (size_t)b * dim);
        /* --sample: the draws of the whole round in image order, this chunk's kept */
        for (int c0 = r0; o->sample && c0 < N && c0 < r0 + world * B; c0 += B) {
            int cb = N - c0 < B ? N - c0 : B;
            for (size_t k = 0; k < (size_t)cb * lat; k++) {
                float e = rng_normal(&rg);
                if (c0 == i0)
                    z[k] = e;
            }
        }
        if (b > 0) {
            const uint8_t *orig = ds->images + (size_t)i0 * img;
            for (size_t k = 0; k < b * img; k++)
                x[k] = orig[k] / 127.5f - 1.0f;
            arena_reset(&ar, 0);
            vae_encode(v, vw, x, mean, NULL, std, b, H, W, &ar);
            for (size_t k = 0; k < b * lat; k++)
                z[k] = o->sample ? mean[k] + std[k] * z[k] : mean[k];
            arena_reset(&ar, 0);
            vae_decode(v, vw, z, recon, b, h, w, &ar);
            if (image_from_model_range(out, recon, b * img))
                die("reconstruct: the VAE '%s' decodes images %d..%d to non-finite pixels (NaN/Inf)", o->vae_ckpt,
                    i0, i0 + b - 1);
            if (f) {
                to_nhwc(nhwc, orig, b, C, H, W);
                feature_net_features(f, nhwc, b, H, W, C, feat, NULL, NULL);
                to_nhwc(nhwc, out, b, C, H, W);
                feature_net_features(f, nhwc, b, H, W, C, feat + (size_t)b * dim, NULL, NULL);
            }
        }
        dist_allgather_bytes(mine, CHUNK_BYTES(b), all);
        uint8_t *chunk = all;
        for (int c0 = r0; c0 < N && c0 < r0 + world * B; c0 += B) {
            int cb = N - c0 < B ? N - c0 : B;
            const uint8_t *orig = ds->images + (size_t)c0 * img;
            const float *cmean = (const float *)chunk, *cstd = cmean + (size_t)cb * lat;
            const float *cfeat = cstd + (size_t)cb * lat;
            const uint8_t *cout = (const uint8_t *)(cfeat + 2 * (size_t)cb * dim);
            for (int i = 0; i < cb; i++) {
                double p = psnr_u8(orig + i * img, cout + i * img, img);
                if (isfinite(p))
                    r->sum_psnr += p;
                else
                    r->sum_psnr += 100.0, r->n_perfect++;
                if (do_ssim)
                    r->sum_ssim += ssim_u8(orig + i * img, cout + i * img, C, H, W);
                for (int c = 0; c < Cz; c++)
                    for (int k = 0; k < h * w; k++) {
                        size_t idx = (size_t)i * lat + (size_t)c * h * w + k;
                        double m = cmean[idx], sd = cstd[idx];
                        r->s_mu[c] += m, r->s_mu2[c] += m * m, r->s_sd[c] += sd, r->s_var[c] += sd * sd;
                    }
            }
            if (c0 < r->G)
                memcpy(r->grid_rec + (size_t)c0 * img, cout, (size_t)(r->G - c0 < cb ? r->G - c0 : cb) * img);
            if (f) {
                feature_accum_add(&acc_orig, cfeat, cb);
                feature_accum_add(&acc_rec, cfeat + (size_t)cb * dim, cb);
            }
            chunk += CHUNK_BYTES(cb);
        }
        progress_update(&pb, r0 + world * B < N ? r0 + world * B : N, NULL);
    }
    progress_finish(&pb);
    r->fd = NAN;
    if (f) {
        feature_stats so, sr;
        feature_accum_finish(&acc_orig, FEATURE_MEAN_ADM_F32, &so);
        feature_accum_finish(&acc_rec, FEATURE_MEAN_ADM_F32, &sr);
        r->fd = frechet_distance(&sr, &so, NULL);
        feature_accum_free(&acc_orig), feature_accum_free(&acc_rec);
        feature_stats_free(&so), feature_stats_free(&sr);
    }
    free(x), free(recon), free(z), free(mine), free(all), free(nhwc);
    arena_free(&ar);
#undef CHUNK_BYTES
}

/* The latent statistics table; per channel into lm (mean μ), ls (std μ),
 * lp (mean σ), lz (std z), over M = N·h·w values each. */
static void print_latents(const recon_result *r, int Cz, int N, int h, int w, double *lm, double *ls, double *lp,
                          double *lz)
{
    char buf[32];
    double M = (double)N * h * w, a_mu = 0, a_mu2 = 0, a_sd = 0, a_var = 0;
    printf("\nlatents (posterior mean mu, posterior std sigma; over %d images x %dx%d positions):\n", N, h, w);
    printf("  %-8s %12s %12s %12s %12s\n", "channel", "mean(mu)", "std(mu)", "mean(sigma)", "std(z)");
    for (int c = 0; c <= Cz; c++) {
        double m1, m2, sd, var;
        if (c < Cz)
            m1 = r->s_mu[c] / M, m2 = r->s_mu2[c] / M, sd = r->s_sd[c] / M, var = r->s_var[c] / M;
        else
            m1 = a_mu / (M * Cz), m2 = a_mu2 / (M * Cz), sd = a_sd / (M * Cz), var = a_var / (M * Cz);
        double vmu = m2 - m1 * m1 > 0 ? m2 - m1 * m1 : 0, zstd = sqrt(vmu + var);
        if (c < Cz) {
            lm[c] = m1, ls[c] = sqrt(vmu), lp[c] = sd, lz[c] = zstd;
            a_mu += r->s_mu[c], a_mu2 += r->s_mu2[c], a_sd += r->s_sd[c], a_var += r->s_var[c];
            snprintf(buf, sizeof buf, "%d", c);
        } else
            snprintf(buf, sizeof buf, "all");
        printf("  %-8s %12.5f %12.5f %12.5f %12.5f\n", buf, m1, sqrt(vmu), sd, zstd);
    }
}

/* --out-grid: row pairs of 8 originals above their reconstructions. */
static void write_grid(const char *path, const dataset *ds, const recon_result *r)
{
    int G = r->G, C = ds->channels, H = ds->height, W = ds->width;
    size_t img = (size_t)C * H * W;
    int cols = G < 8 ? G : 8, rows = (G + cols - 1) / cols, k = 0;
    uint8_t *grid = xcalloc((size_t)rows * 2 * cols, img);
    for (int rr = 0; rr < rows; rr++)
        for (int which = 0; which < 2; which++)
            for (int cc = 0; cc < cols; cc++, k++) {
                int i = rr * cols + cc;
                if (i < G)
                    memcpy(grid + (size_t)k * img, (which ? r->grid_rec : ds->images) + (size_t)i * img, img);
            }
    image_grid_png(path, grid, rows * 2 * cols, C, H, W, cols);
    free(grid);
    printf("grid: %s (%d originals above their reconstructions)\n", path, G);
}

int cmd_reconstruct(int argc, char **argv)
{
    recon_options o;
    memset(&o, 0, sizeof o);
    option_spec opts[RECON_MAX_OPTS];
    int n_opts = recon_options_table(&o, opts);
    int rest = options_parse("reconstruct", usage, opts, n_opts, argc, argv);
    if (rest > 1)
        die("reconstruct: unexpected argument '%s'", argv[1]);
    if (!o.vae_ckpt)
        die("reconstruct: --vae-ckpt V.safetensors is required");
    double t0 = wall_seconds();

    vae v;
    const char *prefix;
    float *vw = load_vae(&o, &v, &prefix);
    int Cv = v.cfg.in_channels;
    dataset ds = dataset_open(o.data, o.data_split, o.image_size, o.channels ? o.channels : Cv, o.max_images);
    int N = ds.n, C = ds.channels, H = ds.height, W = ds.width;
    if (C != Cv || v.cfg.out_ch != C)
        die("reconstruct: the VAE '%s' takes %d-channel images and makes %d-channel ones, but '%s' has %d channels",
            o.vae_ckpt, Cv, v.cfg.out_ch, ds.source, C);
    if (N < 1)
        die("reconstruct: '%s' has no images", ds.source);
    bool do_fd = o.fn.weights || options_given(opts, n_opts, "--feature-net");
    feature_net f;
    if (do_fd) {
        if (N < 2)
            die("reconstruct: rFID needs at least 2 images");
        fnet_open(&o.fn, opts, n_opts, &f, o.batch_size);
    }
    int h, w, Cz = v.cfg.z_channels, Hd, Wd;
    vae_latent_size(&v, H, W, &h, &w);
    vae_image_size(&v, h, w, &Hd, &Wd);
    if (Hd != H || Wd != W)
        die("reconstruct: '%s' has %dx%d images, which this VAE (downsampling by %d) would reconstruct as %dx%d: "
            "use images whose sides are multiples of %d",
            ds.source, H, W, 1 << (v.cfg.n_levels - 1), Hd, Wd, 1 << (v.cfg.n_levels - 1));

    printf("repae reconstruct\n  VAE:  %s%s%s (%.2f M parameters, latent %dx%dx%d), z = %s\n", o.vae_ckpt,
           prefix[0] ? ", under " : "", prefix, vae_param_count(&v) / 1e6, Cz, h, w,
           o.sample ? "a posterior sample (--sample)" : "the posterior mean");
    printf("  data: %s, %d images %dx%dx%d\n", ds.source, N, C, H, W);
    if (do_fd)
        printf("  features: %s, %s\n", f.label, f.path);
    fflush(stdout);

    recon_result r = {.G = o.grid_images < N ? o.grid_images : N};
    r.s_mu = xcalloc(Cz, sizeof(double)), r.s_mu2 = xcalloc(Cz, sizeof(double));
    r.s_sd = xcalloc(Cz, sizeof(double)), r.s_var = xcalloc(Cz, sizeof(double));
    r.grid_rec = xmalloc((size_t)r.G * C * H * W);
    reconstruct_images(&o, &v, vw, &ds, do_fd ? &f : NULL, &r);

    bool do_ssim = H >= SSIM_WIN && W >= SSIM_WIN;
    double psnr = r.sum_psnr / N, ssim = do_ssim ? r.sum_ssim / N : NAN, fd = r.fd;
    char buf[256];
    printf("\n  %-28s %12s  %s\n", "metric", "value", "notes");
    snprintf(buf, sizeof buf, "dB, uint8, mean over %d images%s", N,
             r.n_perfect ? " (perfect ones count as 100 dB)" : "");
    printf("  %-28s %12.4f  %s\n", "PSNR", psnr, buf);
    if (do_ssim)
        printf("  %-28s %12.4f  %s\n", "SSIM", ssim, "Gaussian window 11, sigma 1.5");
    else
        printf("  %-28s %12s  %s\n", "SSIM", "n/a", "images smaller than the 11x11 window");
    char label[96], rlabel[112];
    if (do_fd) {
        fnet_fd_label(&f, label, sizeof label);
        snprintf(rlabel, sizeof rlabel, "r%s", label);
        printf("  %-28s %12.4f  reconstructions vs originals, %d images\n", rlabel, fd, N);
        if (N < f.dim)
            printf("note: %d images < %d feature dimensions: the Fréchet distance is biased upward; compare only "
                   "numbers from equally many images\n",
                   N, f.dim);
    } else
        printf("  %-28s %12s  %s\n", "rFID", "n/a", "no feature network (--weights)");
    double *lm = xmalloc(Cz * sizeof(double)), *ls = xmalloc(Cz * sizeof(double)), *lp = xmalloc(Cz * sizeof(double)),
           *lz = xmalloc(Cz * sizeof(double));
    print_latents(&r, Cz, N, h, w, lm, ls, lp, lz);
    printf("done in %.1f s\n", wall_seconds() - t0);

    if (o.out_grid && dist_rank() == 0)
        write_grid(o.out_grid, &ds, &r);
    if (o.json && dist_rank() == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "command", "reconstruct");
        cJSON_AddStringToObject(j, "vae", o.vae_ckpt);
        cJSON_AddStringToObject(j, "data", ds.source);
        cJSON_AddNumberToObject(j, "n_images", N);
        cJSON_AddStringToObject(j, "z", o.sample ? "sample" : "mean");
        cJSON_AddNumberToObject(j, "psnr", psnr);
        cJSON_AddNumberToObject(j, "ssim", ssim);
        if (do_fd) {
            cJSON_AddStringToObject(j, "feature_net", f.name);
            cJSON_AddNumberToObject(j, !strcmp(f.name, "inception") ? "rfid" : "rfd", fd);
        }
        cJSON_AddItemToObject(j, "latent_mean", cJSON_CreateDoubleArray(lm, Cz));
        cJSON_AddItemToObject(j, "latent_std", cJSON_CreateDoubleArray(ls, Cz));
        cJSON_AddItemToObject(j, "posterior_std", cJSON_CreateDoubleArray(lp, Cz));
        cJSON_AddItemToObject(j, "z_std", cJSON_CreateDoubleArray(lz, Cz));
        json_line_append(o.json, j);
    }

    free(lm), free(ls), free(lp), free(lz);
    free(r.s_mu), free(r.s_mu2), free(r.s_sd), free(r.s_var), free(r.grid_rec);
    if (do_fd)
        feature_net_free(&f);
    dataset_free(&ds);
    vae_free(&v);
    free(vw);
    return 0;
}
