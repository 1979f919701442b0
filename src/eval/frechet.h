/* frechet.h — Fréchet distance between two Gaussians (FID, sFID).
 *
 *   FID = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 · tr sqrtm(Σ1 Σ2)
 *
 * The ADM evaluator (FIDStatistics.frechet_distance) takes scipy's general
 * sqrtm of the non-symmetric product Σ1Σ2 (Schur form), retries with 1e-6·I
 * added to both covariances when that is non-finite, drops the imaginary part
 * when every diagonal imaginary part is within 1e-3 of zero and raises
 * otherwise.  Only the trace of the square root enters, and
 *
 *   tr sqrtm(Σ1 Σ2) = Σ_i sqrt(λ_i(A ᵀ Σ2 A)),   A = V·diag(sqrt(w)),  Σ1 = V diag(w) Vᵀ,
 *
 * because Σ1Σ2 is similar to S1 Σ2 S1 (S1 = Σ1^½ = V√w Vᵀ) and S1Σ2S1 = V(AᵀΣ2A)Vᵀ.
 * We compute exactly that in double with LAPACK (dsyevd twice, dgemm twice):
 * AᵀΣ2A is symmetric positive semidefinite, so its eigenvalues are real and
 * the result is finite and real even for singular covariances (fewer samples
 * than dimensions, constant features).  Eigenvalues of Σ1 and of AᵀΣ2A that
 * come out slightly negative from rounding are clamped to 0.
 *
 * Agreement with scipy (tests/test_metrics.c, fixtures from dev/ref/metrics_ref.py):
 *  * well-conditioned: the trace agrees to ~4e-15 relative;
 *  * singular (N < D, constant or duplicated features): scipy 1.10's sqrtm
 *    still returns a finite value there and ours matches it to ~1e-8
 *    relative: scipy's Schur square root turns the zero eigenvalues into
 *    ~1e-8 complex noise that the ADM code then drops with .real;
 *  * where scipy's sqrtm does go non-finite the evaluator retries with
 *    offset 1e-6; our result without offset is then the offset-free limit,
 *    and frechet_distance_ex(..., offset = 1e-6, ...) reproduces the retry
 *    (it matches scipy's offset result to ~1e-11 relative).  The offset
 *    itself moves FID by O(√1e-6) per missing rank: 0.007 and 0.036 in the
 *    two singular 64-d test cases, ~1e-4 in the regular ones.
 * The only non-finite outcome is from non-finite inputs; then, as in ADM, the
 * computation is retried with the 1e-6 offset, and NaN is returned if that
 * is still non-finite.  The ADM "imaginary component" error has an exact
 * analogue: a negative eigenvalue −ν of AᵀΣ2A contributes i·√ν to the trace;
 * if √ν > 1e-3 (possible only for inputs that are not covariance matrices)
 * we die with the evaluator's message.
 */
#ifndef REPAE_FRECHET_H
#define REPAE_FRECHET_H

#include "eval/feature_stats.h"

#define FRECHET_ADM_EPS 1e-6
#define FRECHET_ADM_IMAG_ATOL 1e-3

typedef struct frechet_info {
    double mean_term;   /* ‖μ1 − μ2‖² */
    double trace1;      /* tr Σ1 */
    double trace2;      /* tr Σ2 */
    double trace_sqrt;  /* tr sqrtm((Σ1 + εI)(Σ2 + εI)) */
    double min_eig1;    /* smallest eigenvalue of Σ1 + εI before clamping */
    double min_eig;     /* smallest eigenvalue of AᵀΣ2A before clamping */
    double offset;      /* ε actually used (0, or 1e-6 after a non-finite retry) */
} frechet_info;

/* FID between two statistics of equal dimension (dies otherwise).  info may be NULL. */
double frechet_distance(const feature_stats *a, const feature_stats *b, frechet_info *info);

/* The same on raw arrays: mu [D], sigma [D, D] symmetric (only the upper
 * triangle of sigma1 and the full sigma2 are read).  offset ε ≥ 0 is added
 * to both diagonals for the square-root term only, as the ADM retry does. */
double frechet_distance_ex(int D, const double *mu1, const double *sigma1, const double *mu2,
                           const double *sigma2, double offset, frechet_info *info);

/* tr sqrtm((Σ1 + εI)(Σ2 + εI)); min_eig1 / min_eig (may be NULL) get the
 * smallest unclamped eigenvalues as in frechet_info.  Returns NaN when the
 * inputs are non-finite or LAPACK fails. */
double trace_sqrtm_product(int D, const double *sigma1, const double *sigma2, double offset, double *min_eig1,
                           double *min_eig);

#endif
