#include "eval/feature_stats.h"

#include <cblas.h>
#include <inttypes.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/safetensors.h"

void feature_accum_init(feature_accum *a, int dim, int buffer_rows)
{
    if (dim <= 0)
        die("feature statistics: dimension %d must be positive", dim);
    if (buffer_rows <= 0)
        buffer_rows = FEATURE_ACCUM_DEFAULT_ROWS;
    size_t D = (size_t)dim;
    a->dim = dim;
    a->n = 0;
    a->mean = xcalloc(D, sizeof(double));
    a->m2 = xcalloc(D * D, sizeof(double));
    a->sum_f32 = xcalloc(D, sizeof(float));
    a->buffer_rows = buffer_rows;
    a->buffered = 0;
    a->buf = xmalloc((size_t)buffer_rows * D * sizeof(float));
    a->work = xmalloc((size_t)buffer_rows * D * sizeof(double));
}

void feature_accum_free(feature_accum *a)
{
    free(a->mean);
    free(a->m2);
    free(a->sum_f32);
    free(a->buf);
    free(a->work);
    memset(a, 0, sizeof *a);
}

/* Chan, Golub & LeVeque's pairwise merge of the buffered rows:
 *   M2 += Σ_b (x_b − m_b)(x_b − m_b)ᵀ + δδᵀ · n·B/(n+B),   δ = m_b − mean. */
static void accum_flush(feature_accum *a)
{
    const int B = a->buffered, D = a->dim;
    if (B == 0)
        return;
    double *mb = xcalloc((size_t)D, sizeof(double));
    for (int i = 0; i < B; i++) {
        const float *x = a->buf + (size_t)i * D;
        for (int j = 0; j < D; j++)
            mb[j] += x[j];
    }
    for (int j = 0; j < D; j++)
        mb[j] /= B;
#pragma omp parallel for schedule(static) if ((int64_t)B * D > 65536)
    for (int i = 0; i < B; i++) {
        const float *x = a->buf + (size_t)i * D;
        double *w = a->work + (size_t)i * D;
        for (int j = 0; j < D; j++)
            w[j] = (double)x[j] - mb[j];
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, B, 1.0, a->work, D, 1.0, a->m2, D);
    const double n0 = (double)a->n, nb = (double)B, n1 = n0 + nb;
    for (int j = 0; j < D; j++)
        mb[j] -= a->mean[j]; /* δ */
    if (a->n > 0)
        cblas_dsyr(CblasRowMajor, CblasUpper, D, n0 * nb / n1, mb, 1, a->m2, D);
    for (int j = 0; j < D; j++)
        a->mean[j] += mb[j] * (nb / n1);
    a->n += B;
    a->buffered = 0;
    free(mb);
}

void feature_accum_add(feature_accum *a, const float *x, int64_t B)
{
    const int D = a->dim;
    for (int64_t i = 0; i < B; i++) {
        const float *row = x + (size_t)i * D;
        for (int j = 0; j < D; j++)
            if (!isfinite(row[j]))
                die("feature statistics: feature %d of row %" PRId64 " of a batch is %g (non-finite features "
                    "would make the covariance meaningless)", j, i, (double)row[j]);
        /* numpy's np.mean(axis=0) on float32: row after row, in float32. */
        for (int j = 0; j < D; j++)
            a->sum_f32[j] += row[j];
        memcpy(a->buf + (size_t)a->buffered * D, row, (size_t)D * sizeof(float));
        if (++a->buffered == a->buffer_rows)
            accum_flush(a);
    }
}

void feature_accum_finish(feature_accum *a, feature_mean_mode mode, feature_stats *out)
{
    accum_flush(a);
    const int D = a->dim;
    if (a->n < 2)
        die("feature statistics: %" PRId64 " feature vector(s); the unbiased covariance needs at least 2", a->n);
    out->dim = D;
    out->n = a->n;
    out->mu = xmalloc((size_t)D * sizeof(double));
    out->sigma = xmalloc((size_t)D * D * sizeof(double));
    for (int j = 0; j < D; j++)
        out->mu[j] = mode == FEATURE_MEAN_ADM_F32 ? (double)(a->sum_f32[j] / (float)a->n) : a->mean[j];
    const double s = 1.0 / (double)(a->n - 1);
#pragma omp parallel for schedule(static) if ((int64_t)D * D > 65536)
    for (int i = 0; i < D; i++)
        for (int j = i; j < D; j++) {
            double v = a->m2[(size_t)i * D + j] * s;
            out->sigma[(size_t)i * D + j] = v;
            out->sigma[(size_t)j * D + i] = v;
        }
}

void feature_stats_compute(feature_stats *out, const float *x, int64_t N, int D, feature_mean_mode mode)
{
    feature_accum a;
    feature_accum_init(&a, D, 0);
    feature_accum_add(&a, x, N);
    feature_accum_finish(&a, mode, out);
    feature_accum_free(&a);
}

void feature_stats_from_arrays(feature_stats *out, int dim, const double *mu, const double *sigma, int64_t n)
{
    size_t D = (size_t)dim;
    out->dim = dim;
    out->n = n;
    out->mu = xmalloc(D * sizeof(double));
    out->sigma = xmalloc(D * D * sizeof(double));
    memcpy(out->mu, mu, D * sizeof(double));
    memcpy(out->sigma, sigma, D * D * sizeof(double));
}

void feature_stats_free(feature_stats *s)
{
    free(s->mu);
    free(s->sigma);
    memset(s, 0, sizeof *s);
}

void feature_stats_write(st_writer *w, const feature_stats *pool, const feature_stats *spatial)
{
    const feature_stats *sets[2] = {pool, spatial};
    const char *names[2][3] = {{"mu", "sigma", "n"}, {"mu_s", "sigma_s", "n_s"}};
    char num[32];
    for (int k = 0; k < 2; k++) {
        const feature_stats *s = sets[k];
        if (!s)
            continue;
        int64_t d = s->dim;
        st_writer_add(w, names[k][0], ST_F64, 1, (int64_t[]){d}, s->mu);
        st_writer_add(w, names[k][1], ST_F64, 2, (int64_t[]){d, d}, s->sigma);
        snprintf(num, sizeof num, "%" PRId64, s->n);
        st_writer_set_metadata(w, names[k][2], num);
    }
    st_writer_set_metadata(w, "format", "repae-feature-stats");
    st_writer_set_metadata(w, "version", "1");
}

void feature_stats_save(const char *path, const feature_stats *pool, const feature_stats *spatial)
{
    st_writer *w = st_writer_new();
    feature_stats_write(w, pool, spatial);
    st_writer_save(w, path);
    st_writer_free(w);
}

static void read_f64(const safetensors *st, const st_tensor *t, double *dst)
{
    if (t->dtype == ST_F64) {
        memcpy(dst, st->data + t->begin, (size_t)t->numel * sizeof(double));
        return;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        die("'%s': tensor '%s' has dtype %s; feature statistics must be floating point", st->path, t->name,
            st_dtype_name(t->dtype));
    float *tmp = xmalloc((size_t)t->numel * sizeof(float));
    safetensors_read_f32(st, t, tmp);
    for (int64_t i = 0; i < t->numel; i++)
        dst[i] = tmp[i];
    free(tmp);
}

void feature_stats_load(const char *path, const char *mu_name, const char *sigma_name, feature_stats *out)
{
    safetensors *st = safetensors_open(path);
    const st_tensor *tm = safetensors_require(st, mu_name);
    const st_tensor *ts = safetensors_require(st, sigma_name);
    char b1[64], b2[64];
    if (tm->ndim != 1 || ts->ndim != 2 || ts->shape[0] != tm->shape[0] || ts->shape[1] != tm->shape[0] ||
        tm->shape[0] <= 0 || tm->shape[0] > INT32_MAX)
        die("'%s': '%s' %s and '%s' %s are not a [D] mean and a [D, D] covariance", path, mu_name,
            st_shape_str(tm->ndim, tm->shape, b1, sizeof b1), sigma_name,
            st_shape_str(ts->ndim, ts->shape, b2, sizeof b2));
    int D = (int)tm->shape[0];
    out->dim = D;
    out->mu = xmalloc((size_t)D * sizeof(double));
    out->sigma = xmalloc((size_t)D * D * sizeof(double));
    read_f64(st, tm, out->mu);
    read_f64(st, ts, out->sigma);
    out->n = 0;
    char key[128];
    snprintf(key, sizeof key, "%s", strcmp(mu_name, "mu_s") == 0 ? "n_s" : "n");
    const char *nv = safetensors_meta(st, key);
    if (nv && strcmp(mu_name, "mu") != 0 && strcmp(mu_name, "mu_s") != 0)
        nv = NULL;
    if (nv)
        out->n = strtoll(nv, NULL, 10);
    safetensors_close(st);
    feature_stats_check(out, path, mu_name, sigma_name);
}

void feature_stats_check(const feature_stats *s, const char *path, const char *mu_name, const char *sigma_name)
{
    const size_t D = (size_t)s->dim;
    for (size_t i = 0; i < D; i++)
        if (!isfinite(s->mu[i]))
            die("'%s': %s[%zu] is %g: reference statistics must be finite", path, mu_name, i, s->mu[i]);
    for (size_t i = 0; i < D * D; i++)
        if (!isfinite(s->sigma[i]))
            die("'%s': %s[%zu, %zu] is %g: reference statistics must be finite", path, sigma_name, i / D, i % D,
                s->sigma[i]);
    for (size_t i = 0; i < D; i++) {
        if (s->sigma[i * D + i] < 0)
            die("'%s': %s[%zu, %zu] = %g is a negative variance: not a covariance matrix", path, sigma_name, i, i,
                s->sigma[i * D + i]);
        for (size_t j = i + 1; j < D; j++) {
            double a = s->sigma[i * D + j], b = s->sigma[j * D + i];
            if (fabs(a - b) > 1e-6 * (fabs(a) + fabs(b)) + 1e-300)
                die("'%s': %s is not symmetric ([%zu, %zu] = %g, [%zu, %zu] = %g): not a covariance matrix", path,
                    sigma_name, i, j, a, j, i, b);
        }
    }
    /* Positive semidefinite up to rounding: the smallest eigenvalue may be
     * a little negative (a covariance of fewer rows than dimensions is
     * singular), not by more than 1e-6 of the largest. */
    double *A = xmalloc(D * D * sizeof(double)), *w = xmalloc(D * sizeof(double));
    memcpy(A, s->sigma, D * D * sizeof(double));
    int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)D, A, (lapack_int)D, w);
    double lo = w[0], hi = w[D - 1];
    free(A), free(w);
    if (info != 0)
        die("'%s': the eigenvalues of %s did not converge (LAPACK info %d)", path, sigma_name, (int)info);
    if (lo < -1e-6 * fmax(hi, 0) - 1e-12)
        die("'%s': %s is not positive semidefinite (smallest eigenvalue %g, largest %g): not a covariance matrix",
            path, sigma_name, lo, hi);
}
