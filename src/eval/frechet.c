#include "eval/frechet.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

double trace_sqrtm_product(int D, const double *sigma1, const double *sigma2, double offset, double *min_eig1,
                           double *min_eig)
{
    const size_t n = (size_t)D;
    double *A = xmalloc(n * n * sizeof(double));
    double *B = xmalloc(n * n * sizeof(double));
    double *w = xmalloc(n * sizeof(double));
    double result = NAN, lo1 = NAN, lo = NAN;
    int finite = 1;
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(sigma1[i]) || !isfinite(sigma2[i]))
            finite = 0;
    if (!finite)
        goto done;

    /* Σ1 + εI = V diag(w) Vᵀ; LAPACK returns V in the columns of A. */
    memcpy(A, sigma1, n * n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        A[i * n + i] += offset;
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', D, A, D, w) != 0)
        goto done;
    lo1 = w[0];
    for (size_t j = 0; j < n; j++)
        w[j] = sqrt(w[j] > 0 ? w[j] : 0);
#pragma omp parallel for schedule(static) if (n * n > 65536)
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            A[i * n + j] *= w[j]; /* A = V·diag(√w) */

    /* B = (Σ2 + εI)·A, then M = Aᵀ·B: the symmetric PSD matrix whose eigenvalues are those of Σ1Σ2. */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, D, D, 1.0, sigma2, D, A, D, 0.0, B, D);
    if (offset != 0)
        for (size_t i = 0; i < n * n; i++)
            B[i] += offset * A[i];
    double *M = xmalloc(n * n * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, D, D, 1.0, A, D, B, D, 0.0, M, D);
    /* Symmetric in exact arithmetic; average the two rounded halves. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            M[i * n + j] = 0.5 * (M[i * n + j] + M[j * n + i]);
    int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', D, M, D, w);
    free(M);
    if (info != 0)
        goto done;
    lo = w[0];
    double tr = 0;
    for (size_t j = 0; j < n; j++)
        tr += sqrt(w[j] > 0 ? w[j] : 0);
    result = tr;
done:
    if (min_eig1)
        *min_eig1 = lo1;
    if (min_eig)
        *min_eig = lo;
    free(A);
    free(B);
    free(w);
    return result;
}

double frechet_distance_ex(int D, const double *mu1, const double *sigma1, const double *mu2,
                           const double *sigma2, double offset, frechet_info *info)
{
    if (D <= 0)
        die("Frechet distance: dimension %d must be positive", D);
    const size_t n = (size_t)D;
    double mean_term = 0, tr1 = 0, tr2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = mu1[i] - mu2[i];
        mean_term += d * d;
        tr1 += sigma1[i * n + i];
        tr2 += sigma2[i * n + i];
    }
    double lo1, lo;
    double trs = trace_sqrtm_product(D, sigma1, sigma2, offset, &lo1, &lo);
    if (!isfinite(trs) && offset == 0) {
        warn("fid calculation produces singular product; adding %g to diagonal of cov estimates", FRECHET_ADM_EPS);
        offset = FRECHET_ADM_EPS;
        trs = trace_sqrtm_product(D, sigma1, sigma2, offset, &lo1, &lo);
    }
    /* ADM: np.allclose(diag(covmean).imag, 0, atol=1e-3) or raise. */
    if (isfinite(lo) && lo < 0 && sqrt(-lo) > FRECHET_ADM_IMAG_ATOL)
        die("Frechet distance: imaginary component %g (the covariances are not positive semidefinite: smallest "
            "eigenvalue of S1·Σ2·S1 is %g)", sqrt(-lo), lo);
    if (info) {
        info->mean_term = mean_term;
        info->trace1 = tr1;
        info->trace2 = tr2;
        info->trace_sqrt = trs;
        info->min_eig1 = lo1;
        info->min_eig = lo;
        info->offset = offset;
    }
    return mean_term + tr1 + tr2 - 2 * trs;
}

double frechet_distance(const feature_stats *a, const feature_stats *b, frechet_info *info)
{
    if (a->dim != b->dim)
        die("Frechet distance: statistics of dimension %d and %d", a->dim, b->dim);
    return frechet_distance_ex(a->dim, a->mu, a->sigma, b->mu, b->sigma, 0.0, info);
}
