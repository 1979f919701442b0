/* feature_stats.h — mean and covariance of feature vectors (FID / sFID inputs).
 *
 * The ADM evaluator (guided-diffusion evaluations/evaluator.py) computes
 *     mu    = np.mean(acts, axis=0)            float32 acts -> float32 result
 *     sigma = np.cov(acts, rowvar=False)       in float64, unbiased (N - 1)
 * numpy reduces axis 0 of a C-contiguous float32 array row by row, so its mu
 * is a *sequential float32 sum* divided (in float32) by N.  We accumulate in
 * double instead; the ADM float32 mean is kept alongside, bit-exact, for
 * whoever wants the evaluator's exact number (FEATURE_MEAN_ADM_F32).  The
 * difference is ~1e-7 relative in mu and far below FID's sampling noise.
 *
 * The covariance is accumulated in double by Chan et al.'s pairwise update:
 * rows are buffered, each full buffer is centred on its own mean and added
 * with dsyrk, and the buffer mean is merged with a rank-1 correction.  That
 * is as accurate as numpy's two-pass np.cov and never needs the data twice.
 * The result depends only on the rows and their order, not on how the caller
 * batched them (buffer boundaries fall every `buffer_rows` rows).
 *
 *   feature_accum acc;
 *   feature_accum_init(&acc, 2048, 0);            // 0: default buffer
 *   for (each batch) feature_accum_add(&acc, feats, B);   // feats [B, D] float
 *   feature_stats st;
 *   feature_accum_finish(&acc, FEATURE_MEAN_F64, &st);
 *   feature_accum_free(&acc);
 *   feature_stats_save("stats.safetensors", &st, NULL);   // mu, sigma (F64)
 *   feature_stats_free(&st);
 *
 * Reference statistics from an ADM npz (mu, sigma, mu_s, sigma_s) are read by
 * the npz reader elsewhere and handed over with feature_stats_from_arrays().
 */
#ifndef REPAE_FEATURE_STATS_H
#define REPAE_FEATURE_STATS_H

#include <stdint.h>

#include "io/safetensors.h"

typedef enum feature_mean_mode {
    FEATURE_MEAN_F64 = 0,     /* double accumulation (default) */
    FEATURE_MEAN_ADM_F32 = 1, /* numpy's float32 sequential sum / N, bit-exact */
} feature_mean_mode;

typedef struct feature_stats {
    int dim;       /* D */
    int64_t n;     /* number of feature vectors (0 when loaded from arrays without a count) */
    double *mu;    /* [D] */
    double *sigma; /* [D, D] symmetric, unbiased (divided by N - 1) */
} feature_stats;

typedef struct feature_accum {
    int dim;
    int64_t n;          /* rows merged so far (excluding the buffer) */
    double *mean;       /* [D] running mean of merged rows */
    double *m2;         /* [D, D] sum of centred outer products; upper triangle valid */
    float *sum_f32;     /* [D] numpy-style sequential float32 sum of all rows added */
    float *buf;         /* [buffer_rows, D] rows not yet merged */
    int buffer_rows, buffered;
    double *work;       /* [buffer_rows, D] centred buffer in double */
} feature_accum;

#define FEATURE_ACCUM_DEFAULT_ROWS 1024

/* buffer_rows <= 0 selects FEATURE_ACCUM_DEFAULT_ROWS (tests use small ones). */
void feature_accum_init(feature_accum *a, int dim, int buffer_rows);
/* x: [B, D] float, row-major.  Non-finite features die (they would poison Σ). */
void feature_accum_add(feature_accum *a, const float *x, int64_t B);
/* Merges the buffer and writes the statistics (out is allocated here; free
 * with feature_stats_free).  Needs at least 2 rows.  More rows may be added
 * afterwards and finish called again. */
void feature_accum_finish(feature_accum *a, feature_mean_mode mode, feature_stats *out);
void feature_accum_free(feature_accum *a);

/* One shot over x [N, D]; identical to adding the rows in any batching. */
void feature_stats_compute(feature_stats *out, const float *x, int64_t N, int D, feature_mean_mode mode);

/* Copies caller arrays (e.g. an ADM reference npz).  n may be 0 (unknown). */
void feature_stats_from_arrays(feature_stats *out, int dim, const double *mu, const double *sigma, int64_t n);
void feature_stats_free(feature_stats *s);

/* safetensors file with "mu" [D], "sigma" [D,D] (F64) and, when spatial is
 * not NULL, "mu_s", "sigma_s" — the ADM npz names.  Metadata: format
 * "repae-feature-stats", version "1", n (and n_s).  Written atomically. */
/* Adds the statistics (mu, sigma[, mu_s, sigma_s] as F64, n in the metadata)
 * to a writer; feature_stats_save writes them as a file of their own. */
void feature_stats_write(st_writer *w, const feature_stats *pool, const feature_stats *spatial);
void feature_stats_save(const char *path, const feature_stats *pool, const feature_stats *spatial);
/* Reads tensors mu_name [D] and sigma_name [D,D] (F64, F32, F16 or BF16);
 * dies naming the file on a missing tensor or inconsistent shapes.  n comes
 * from the metadata ("n" for "mu", "n_s" for "mu_s") or is 0. */
void feature_stats_load(const char *path, const char *mu_name, const char *sigma_name, feature_stats *out);
/* Statistics from a file must be finite, with a symmetric positive
 * semidefinite sigma (an eigenvalue pass, O(D³) once); otherwise FID would be
 * NaN, Inf or "imaginary" with no hint of which file is wrong.  Dies naming
 * path, the tensor and the entry.  feature_stats_load calls it. */
void feature_stats_check(const feature_stats *s, const char *path, const char *mu_name, const char *sigma_name);

#endif
