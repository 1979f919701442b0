/* repae eval — the ADM evaluation suite (spec §10) between a sample batch
 * and a reference batch: FID, sFID, Inception Score, precision and recall.
 *
 * As guided-diffusion's evaluations/evaluator.py:
 *  * every image of both .npz files (arr_0, uint8 [N, H, W, 3]) goes through
 *    the feature network (Inception: the graph's own resize and scaling);
 *  * FID / sFID use the reference's stored mu, sigma (mu_s, sigma_s) when the
 *    .npz has them, else statistics of its images; --ref-stats (a file from
 *    --save-stats) takes precedence over both;
 *  * IS from the samples' 1008 logits, splits of 5000;
 *  * precision / recall (k = 3, fp16 distances in 10,000-blocks) between
 *    the reference images' pool features and all samples' pool features.
 * Any other feature network (--feature-net vit or cnn) stands in for Inception: the
 * Fréchet distance is then "FD (<net> features)", not FID, and the metrics
 * that need Inception's logits or spatial features are skipped.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/eval_setup.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/options.h"
#include "core/progress.h"
#include "eval/feature_stats.h"
#include "eval/frechet.h"
#include "eval/inception_score.h"
#include "eval/precision_recall.h"
#include "io/npz.h"

static const char *usage =
    "usage: repae eval --samples S.npz --ref R.npz --weights NET [options]\n"
    "\n"
    "FID, sFID, Inception Score and precision/recall exactly as the ADM evaluator\n"
    "computes them (spec §10), between a sample batch and a reference batch\n"
    "(.npz, arr_0 uint8 [N, H, W, 3]; `repae sample` writes one).  FID/sFID use\n"
    "the reference's stored mu/sigma (mu_s/sigma_s) when present, else its images;\n"
    "P/R use its first --pr-ref-images images.  --save-stats keeps the samples'\n"
    "statistics, so a reference set embedded once can be reused with --ref-stats.\n"
    "With --feature-net vit a ViT of ours replaces Inception (FD in its feature\n"
    "space; no sFID, no IS); with --feature-net cnn our CNN classifier from\n"
    "`repae train-encoder --arch cnn` does (FD in its global-average-pooled\n"
    "features, e.g. --weights weights/fmnist-evalnet-cnn.safetensors on\n"
    "Fashion-MNIST).  Inception weights: pytorch-fid's\n"
    "pt_inception-2015-12-05-6726825d.pth as it is, or tools/convert_inception.py's\n"
    "safetensors copy (docs/evaluation.md).";

typedef struct eval_options {
    const char *samples, *ref, *ref_stats, *save_stats, *json;
    int batch_size, pr_ref_images;
    bool allow_size_mismatch;
    fnet_options fn;
} eval_options;

#define EVAL_MAX_OPTS (16 + FNET_MAX_OPTS)

static int eval_options_table(eval_options *o, option_spec *opts)
{
    int n = 0;
#define OPT(...) opts[n++] = (option_spec){__VA_ARGS__}
    OPT("--samples", OPT_STRING, &o->samples, NULL, "sample batch (.npz, arr_0 uint8 [N, H, W, 3])");
    OPT("--ref", OPT_STRING, &o->ref, NULL, "reference batch (.npz: arr_0, optionally mu, sigma, mu_s, sigma_s)");
    OPT("--ref-stats", OPT_STRING, &o->ref_stats, NULL,
        "reference statistics from an earlier --save-stats (used for FID/sFID instead of --ref's)");
    OPT("--save-stats", OPT_STRING, &o->save_stats, NULL,
        "write the samples' statistics (mu, sigma, mu_s, sigma_s, n) to this safetensors file");
    OPT("--json", OPT_STRING, &o->json, NULL, "append one JSON line with every metric to this file");
    OPT("--batch-size", OPT_INT, &o->batch_size, "64", "images per feature-network batch", .min = 1, .max = 4096);
    OPT("--pr-ref-images", OPT_INT, &o->pr_ref_images, "10000",
        "precision/recall against the reference's first N images (0: skip P/R)", .min = 0, .max = 1e9);
    OPT("--allow-size-mismatch", OPT_FLAG, &o->allow_size_mismatch, NULL,
        "accept samples and reference of different image sizes (the feature network resizes both)");
#undef OPT
    return fnet_options_table(&o->fn, opts, n);
}

/* arr_0 of an .npz, read in batches of rows without holding it (stored
 * members), or once as a whole (deflated members: np.savez_compressed). */
typedef struct npz_images {
    const char *path;
    npz_file *z;
    const npz_entry *e;
    int64_t n;
    int H, W, C;
    uint8_t *all;
} npz_images;

static void images_open(npz_images *im, const char *path, const char *flag)
{
    memset(im, 0, sizeof *im);
    im->path = path;
    im->z = npz_open(path);
    im->e = npz_require(im->z, "arr_0", NPZ_U8);
    const npz_entry *e = im->e;
    if (e->ndim != 4 || (e->shape[3] != 1 && e->shape[3] != 3) || e->shape[1] < 1 || e->shape[2] < 1 ||
        e->shape[1] > 65536 || e->shape[2] > 65536) {
        char s[128] = "";
        size_t len = 0;
        for (int i = 0; i < e->ndim; i++)
            len += (size_t)snprintf(s + len, sizeof s - len, "%s%lld", i ? ", " : "", (long long)e->shape[i]);
        die("%s '%s': arr_0 has shape [%s]; image batches are uint8 [N, H, W, 3] (or [N, H, W, 1])", flag, path, s);
    }
    im->n = e->shape[0];
    im->H = (int)e->shape[1], im->W = (int)e->shape[2], im->C = (int)e->shape[3];
    if (im->n < 2)
        die("%s '%s': %lld image(s); statistics need at least 2", flag, path, (long long)im->n);
}

static void images_read(npz_images *im, int64_t first, int64_t count, uint8_t *dst)
{
    size_t img = (size_t)im->H * im->W * im->C;
    if (im->e->method == 0) {
        npz_read_rows(im->z, im->e, first, count, dst);
        return;
    }
    if (!im->all) {
        im->all = xmalloc(im->e->nbytes);
        npz_read(im->z, im->e, im->all);
    }
    memcpy(dst, im->all + (size_t)first * img, (size_t)count * img);
}

static void images_close(npz_images *im)
{
    if (im->z)
        npz_close(im->z);
    free(im->all);
    memset(im, 0, sizeof *im);
}

/* What one pass over a batch of images produces (each part optional). */
typedef struct embed_out {
    feature_accum *pool, *spatial; /* statistics of all n images */
    float *keep;                   /* [n_keep, dim] pool features of the first n_keep images */
    int64_t n_keep;
    float *logits;                 /* [n, 1008] */
} embed_out;

/* Under mpirun each round of world × batch images is split in contiguous
 * chunks, one per rank, and every rank receives every chunk's features and
 * adds them in image order: the statistics are those of one process, bit
 * for bit, and every rank can finish the metrics (rank 0 alone prints and
 * writes). */
static void embed(feature_net *f, npz_images *im, int64_t n, int batch, const char *label, embed_out *o)
{
    const int world = dist_world();
    size_t img = (size_t)im->H * im->W * im->C, np = (size_t)f->dim, ns = o->spatial ? (size_t)f->spatial_dim : 0;
    size_t nl = o->logits ? (size_t)f->n_logits : 0, per = np + ns + nl; /* floats per image */
    uint8_t *x = xmalloc((size_t)batch * img);
    float *mine = xmalloc((size_t)batch * per * sizeof(float)), *all = xmalloc((size_t)world * batch * per * sizeof(float));
    progress pb = progress_start(label, n, "img");
    pb.start_step = 0; /* the rate counts images from the start, not from the first batch's end */
    for (int64_t r0 = 0; r0 < n; r0 += (int64_t)world * batch) {
        int64_t i0;
        int b = dist_round_chunk(r0, n, batch, &i0);
        if (b > 0) {
            images_read(im, i0, b, x);
            feature_net_features(f, x, b, im->H, im->W, im->C, mine, ns ? mine + (size_t)b * np : NULL,
                                 nl ? mine + (size_t)b * (np + ns) : NULL);
        }
        dist_allgather_bytes(mine, (size_t)b * per * sizeof(float), all);
        /* each chunk: [b, dim] pool, [b, spatial_dim], [b, n_logits], in rank order */
        float *chunk = all;
        for (int64_t c0 = r0; c0 < n && c0 < r0 + (int64_t)world * batch; c0 += batch) {
            int cb = n - c0 < batch ? (int)(n - c0) : batch;
            const float *pool = chunk, *sp = chunk + (size_t)cb * np, *lg = chunk + (size_t)cb * (np + ns);
            if (o->pool)
                feature_accum_add(o->pool, pool, cb);
            if (o->spatial)
                feature_accum_add(o->spatial, sp, cb);
            if (nl)
                memcpy(o->logits + (size_t)c0 * nl, lg, (size_t)cb * nl * sizeof(float));
            if (o->keep && c0 < o->n_keep) {
                int64_t k = o->n_keep - c0 < cb ? o->n_keep - c0 : cb;
                memcpy(o->keep + (size_t)c0 * np, pool, (size_t)k * np * sizeof(float));
            }
            chunk += (size_t)cb * per;
        }
        progress_update(&pb, r0 + (int64_t)world * batch < n ? r0 + (int64_t)world * batch : n, NULL);
    }
    progress_finish(&pb);
    free(x), free(mine), free(all);
}

/* Reference statistics stored in an ADM .npz (mu, sigma / mu_s, sigma_s). */
static int npz_stats(npz_file *z, const char *mu_name, const char *sigma_name, int dim, feature_stats *out)
{
    const npz_entry *em = npz_find(z, mu_name), *es = npz_find(z, sigma_name);
    if (!em || !es)
        return 0;
    if (em->ndim != 1 || es->ndim != 2 || es->shape[0] != em->shape[0] || es->shape[1] != em->shape[0])
        die("'%s': '%s' and '%s' are not a [D] mean and a [D, D] covariance", z->path, mu_name, sigma_name);
    if (em->shape[0] != dim)
        return -1;
    double *mu = npz_load_f64(z->path, mu_name, NULL, NULL);
    double *sigma = npz_load_f64(z->path, sigma_name, NULL, NULL);
    feature_stats_from_arrays(out, dim, mu, sigma, 0);
    free(mu), free(sigma);
    feature_stats_check(out, z->path, mu_name, sigma_name);
    return 1;
}

static void accum_finish(feature_accum *a, feature_stats *s)
{
    /* the evaluator's own numbers: numpy's float32 mean, float64 covariance */
    feature_accum_finish(a, FEATURE_MEAN_ADM_F32, s);
    feature_accum_free(a);
}

static void print_row(const char *name, double v, const char *note)
{
    if (isnan(v))
        printf("  %-28s %12s  %s\n", name, "n/a", note);
    else
        printf("  %-28s %12.4f  %s\n", name, v, note);
}

/* Everything the report and the JSON line say. */
typedef struct eval_metrics {
    double fd, sfd, is, prec, rec;
    int64_t n_pr;
    bool do_pr, has_spatial, have_sp, has_logits, have_ref;
    const char *pool_from, *sp_from;
    pr_counts prc;
} eval_metrics;

static void print_metrics(const feature_net *f, const npz_images *S, const eval_metrics *m)
{
    char label[96], note[512];
    fnet_fd_label(f, label, sizeof label);
    printf("\n  %-28s %12s  %s\n", "metric", "value", "notes");
    snprintf(note, sizeof note, "vs %s", m->pool_from ? m->pool_from : "?");
    print_row(label, m->fd, note);
    if (m->has_spatial) {
        if (m->have_sp)
            snprintf(note, sizeof note, "vs %s", m->sp_from);
        else
            snprintf(note, sizeof note, "no reference spatial statistics (mu_s/sigma_s) and no --ref images");
        print_row(!strcmp(f->name, "inception") ? "sFID" : "sFD (spatial)", m->sfd, note);
    } else
        print_row("sFID", NAN, "Inception only (mixed_6/conv features)");
    snprintf(note, sizeof note, "%lld split(s) of up to %d", (long long)inception_score_num_splits(S->n, IS_SPLIT_SIZE),
             IS_SPLIT_SIZE);
    print_row("Inception Score", m->is, m->has_logits ? note : "needs Inception's logits");
    if (m->do_pr)
        snprintf(note, sizeof note, "k = 3, %lld reference images, %lld samples%s", (long long)m->n_pr,
                 (long long)S->n, m->prc.fp32_blocks ? " (some blocks in fp32)" : "");
    else
        snprintf(note, sizeof note, "%s",
                 !m->have_ref ? "needs reference images (--ref)"
                 : S->n <= 3  ? "needs at least 4 samples"
                              : "needs at least 4 reference images (--pr-ref-images)");
    print_row("Precision", m->prec, note);
    print_row("Recall", m->rec, m->do_pr ? "" : note);
    if (S->n < f->dim)
        printf("note: %lld samples < %d feature dimensions: the covariance is singular and the Fréchet distance is "
               "biased upward; compare only numbers from equally many images\n",
               (long long)S->n, f->dim);
    if (f->kind == FNET_INCEPTION && strcmp(f->name, "inception") != 0)
        printf("note: a reduced-width Inception (test network): these are not FID/IS numbers\n");
}

/* --json: one line with every metric, appended. */
static void write_json(const eval_options *o, const feature_net *f, const npz_images *S, const eval_metrics *m)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "command", "eval");
    cJSON_AddStringToObject(j, "samples", S->path);
    if (o->ref)
        cJSON_AddStringToObject(j, "ref", o->ref);
    if (o->ref_stats)
        cJSON_AddStringToObject(j, "ref_stats", o->ref_stats);
    cJSON_AddStringToObject(j, "feature_net", f->name);
    cJSON_AddStringToObject(j, "weights", f->path);
    cJSON_AddNumberToObject(j, "n_samples", (double)S->n);
    cJSON_AddNumberToObject(j, !strcmp(f->name, "inception") ? "fid" : "fd", m->fd);
    if (m->has_spatial)
        cJSON_AddNumberToObject(j, !strcmp(f->name, "inception") ? "sfid" : "sfd", m->sfd);
    if (m->has_logits)
        cJSON_AddNumberToObject(j, "inception_score", m->is);
    if (m->do_pr) {
        cJSON_AddNumberToObject(j, "precision", m->prec);
        cJSON_AddNumberToObject(j, "recall", m->rec);
        cJSON_AddNumberToObject(j, "n_ref_pr", (double)m->n_pr);
    }
    json_line_append(o->json, j);
}

/* The reference side: its Fréchet statistics (pooled and spatial) and where
 * they came from, and its features kept for precision/recall. */
typedef struct reference_side {
    feature_stats pool, sp;
    bool have_pool, have_sp;
    const char *pool_from, *sp_from;
    char note[64];
    bool pool_from_images, sp_from_images; /* no stored statistics: computed from --ref's images */
    int64_t n_pr;                          /* reference images for precision/recall */
    bool do_pr;
    float *keep;                           /* [n_pr, dim] their features */
} reference_side;

/* Reference statistics given as such: --ref-stats, else stored in the npz
 * (Inception features only).  Decides what the reference pass computes. */
static void reference_stats_given(reference_side *r, const eval_options *o, const feature_net *f,
                                  const npz_images *R, int64_t n_samples)
{
    bool has_spatial = f->spatial_dim > 0;
    if (o->ref_stats) {
        r->have_sp = eval_stats_load(o->ref_stats, f, &r->pool, has_spatial ? &r->sp : NULL);
        r->have_pool = true;
        r->pool_from = r->sp_from = o->ref_stats;
    } else if (o->ref && f->kind == FNET_INCEPTION) {
        int k = npz_stats(R->z, "mu", "sigma", f->dim, &r->pool);
        if (k < 0)
            warn("'%s': its stored mu has another dimension than the %s features (%d); using its images", R->path,
                 f->label, f->dim);
        r->have_pool = k > 0;
        r->pool_from = "the reference's stored mu/sigma";
        if (r->have_pool) {
            r->have_sp = npz_stats(R->z, "mu_s", "sigma_s", f->spatial_dim, &r->sp) > 0;
            r->sp_from = "the reference's stored mu_s/sigma_s";
        }
    }
    r->pool_from_images = o->ref && !r->have_pool;
    r->sp_from_images = o->ref && has_spatial && !r->have_sp;
    r->n_pr = o->ref ? (R->n < o->pr_ref_images ? R->n : o->pr_ref_images) : 0;
    r->do_pr = r->n_pr > 3 && n_samples > 3; /* k = 3 neighbours need 4 points in each set */
}

/* The reference pass: the statistics not given, and the features for
 * precision/recall. */
static void reference_pass(reference_side *r, feature_net *f, npz_images *R, int batch)
{
    if (!r->pool_from_images && !r->sp_from_images && !r->do_pr)
        return;
    feature_accum pool_acc, sp_acc;
    embed_out eo = {0};
    if (r->pool_from_images)
        feature_accum_init(&pool_acc, f->dim, 0), eo.pool = &pool_acc;
    if (r->sp_from_images)
        feature_accum_init(&sp_acc, f->spatial_dim, 0), eo.spatial = &sp_acc;
    if (r->do_pr)
        r->keep = xmalloc((size_t)r->n_pr * f->dim * sizeof(float)), eo.keep = r->keep, eo.n_keep = r->n_pr;
    int64_t n = r->pool_from_images || r->sp_from_images ? R->n : r->n_pr;
    embed(f, R, n, batch, "reference", &eo);
    if (r->pool_from_images) {
        accum_finish(&pool_acc, &r->pool);
        r->have_pool = true;
        snprintf(r->note, sizeof r->note, "the reference's %lld images", (long long)R->n);
        r->pool_from = r->note;
    }
    if (r->sp_from_images) {
        accum_finish(&sp_acc, &r->sp);
        r->have_sp = true;
        r->sp_from = "the reference's images";
    }
}

/* The samples' side: statistics, features for precision/recall, logits. */
typedef struct sample_side {
    feature_stats pool, sp;
    float *keep;   /* [S.n, dim] (precision/recall only) */
    float *logits; /* [S.n, n_logits] (a network with logits only) */
} sample_side;

static void sample_pass(sample_side *s, feature_net *f, npz_images *S, int batch, bool do_pr)
{
    bool has_spatial = f->spatial_dim > 0, has_logits = f->n_logits > 0;
    feature_accum pool_acc, sp_acc;
    feature_accum_init(&pool_acc, f->dim, 0);
    if (has_spatial)
        feature_accum_init(&sp_acc, f->spatial_dim, 0);
    s->keep = do_pr ? xmalloc((size_t)S->n * f->dim * sizeof(float)) : NULL;
    s->logits = has_logits ? xmalloc((size_t)S->n * f->n_logits * sizeof(float)) : NULL;
    embed_out eo = {&pool_acc, has_spatial ? &sp_acc : NULL, s->keep, do_pr ? S->n : 0, s->logits};
    embed(f, S, S->n, batch, "samples", &eo);
    accum_finish(&pool_acc, &s->pool);
    if (has_spatial)
        accum_finish(&sp_acc, &s->sp);
}

/* FD, sFD, IS and precision/recall from the two sides. */
static eval_metrics compute_metrics(const feature_net *f, const npz_images *S, const reference_side *r,
                                    const sample_side *s, bool has_ref)
{
    bool has_spatial = f->spatial_dim > 0, has_logits = f->n_logits > 0;
    double fd = NAN, sfd = NAN, is = NAN, prec = NAN, rec = NAN;
    if (r->have_pool)
        fd = frechet_distance(&s->pool, &r->pool, NULL);
    if (has_spatial && r->have_sp)
        sfd = frechet_distance(&s->sp, &r->sp, NULL);
    /* Checked inputs are finite; a non-finite distance is an overflow, and
     * printing "n/a" with exit 0 would pass for a result. */
    if ((r->have_pool && !isfinite(fd)) || (has_spatial && r->have_sp && !isfinite(sfd)))
        die("eval: the Frechet distance is not finite (FD %g, sFD %g): the statistics (%s) are too large for "
            "double precision", fd, sfd, r->pool_from ? r->pool_from : "?");
    if (has_logits)
        is = inception_score_logits(s->logits, S->n, f->n_logits, IS_SPLIT_SIZE, NULL);
    pr_counts prc = {0};
    if (r->do_pr) {
        pr_opts po = pr_opts_adm();
        precision_recall(&prec, &rec, r->keep, r->n_pr, s->keep, S->n, f->dim, &po, &prc);
    }
    eval_metrics m = {fd,       sfd,        is,         prec,      rec, r->n_pr, r->do_pr, has_spatial, r->have_sp,
                      has_logits, has_ref, r->pool_from, r->sp_from, prc};
    return m;
}

int cmd_eval(int argc, char **argv)
{
    eval_options o;
    memset(&o, 0, sizeof o);
    option_spec opts[EVAL_MAX_OPTS];
    int n_opts = eval_options_table(&o, opts);
    int rest = options_parse("eval", usage, opts, n_opts, argc, argv);
    if (rest > 1)
        die("eval: unexpected argument '%s'", argv[1]);
    if (!o.samples)
        die("eval: --samples S.npz is required");
    if (!o.ref && !o.ref_stats)
        die("eval: give the reference: --ref R.npz (images, maybe statistics) and/or --ref-stats STATS.safetensors");
    double t0 = wall_seconds();

    npz_images S, R = {0};
    images_open(&S, o.samples, "--samples");
    if (o.ref) {
        images_open(&R, o.ref, "--ref");
        if ((S.H != R.H || S.W != R.W) && !o.allow_size_mismatch)
            die("eval: samples '%s' are %dx%d but the reference '%s' is %dx%d (pass --allow-size-mismatch to let "
                "the feature network resize both)",
                S.path, S.H, S.W, R.path, R.H, R.W);
    }
    feature_net f;
    fnet_open(&o.fn, opts, n_opts, &f, o.batch_size);
    bool has_spatial = f.spatial_dim > 0;

    /* Reference statistics: --ref-stats, else stored in the npz, else from its images. */
    reference_side ref = {0};
    reference_stats_given(&ref, &o, &f, &R, S.n);

    printf("repae eval\n  samples:   %s (%lld images %dx%dx%d)\n", S.path, (long long)S.n, S.H, S.W, S.C);
    if (o.ref)
        printf("  reference: %s (%lld images %dx%dx%d)\n", R.path, (long long)R.n, R.H, R.W, R.C);
    if (o.ref_stats)
        printf("  reference statistics: %s (n = %lld)\n", o.ref_stats, (long long)ref.pool.n);
    printf("  features:  %s, %s\n", f.label, f.path);
    fflush(stdout);

    reference_pass(&ref, &f, &R, o.batch_size);
    sample_side smp = {0};
    sample_pass(&smp, &f, &S, o.batch_size, ref.do_pr);
    eval_metrics m = compute_metrics(&f, &S, &ref, &smp, o.ref != NULL);
    print_metrics(&f, &S, &m);
    printf("done in %.1f s\n", wall_seconds() - t0);
    if (o.save_stats && dist_rank() == 0) {
        eval_stats_save(o.save_stats, &f, &smp.pool, has_spatial ? &smp.sp : NULL, S.H, S.W, S.C, S.path);
        printf("statistics: %s\n", o.save_stats);
    }
    if (o.json && dist_rank() == 0)
        write_json(&o, &f, &S, &m);

    feature_stats_free(&smp.pool);
    feature_stats_free(&ref.pool);
    if (has_spatial)
        feature_stats_free(&smp.sp);
    if (ref.have_sp)
        feature_stats_free(&ref.sp);
    free(smp.keep), free(ref.keep), free(smp.logits);
    feature_net_free(&f);
    images_close(&S);
    images_close(&R);
    return 0;
}
