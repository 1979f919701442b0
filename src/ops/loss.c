#include "ops/loss.h"

#include <math.h>

/* Deterministic parallel sums: the index range is cut into a fixed number of
 * chunks (independent of the thread count), each chunk is summed in order in
 * double, and the chunk sums are added in order.  Small ranges stay serial. */
#define LOSS_CHUNKS 64
#define LOSS_PAR_MIN ((size_t)1 << 15)

static inline size_t chunk_lo(int c, size_t n) { return n * (size_t)c / LOSS_CHUNKS; }

static double sum_chunks(const double *part)
{
    double s = 0;
    for (int c = 0; c < LOSS_CHUNKS; c++)
        s += part[c];
    return s;
}

double mean_f64(const float *x, size_t n)
{
    double part[LOSS_CHUNKS];
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (int c = 0; c < LOSS_CHUNKS; c++) {
        double s = 0;
        for (size_t i = chunk_lo(c, n); i < chunk_lo(c + 1, n); i++)
            s += x[i];
        part[c] = s;
    }
    return sum_chunks(part) / (double)n;
}

/* ---- per-sample MSE (denoising loss) ---------------------------------- */

void mse_per_sample_forward(float *loss, const float *pred, const float *target, int N, int M)
{
#pragma omp parallel for schedule(static) if ((size_t)N * M >= LOSS_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *p = pred + (size_t)n * M, *t = target + (size_t)n * M;
        double s = 0;
        for (int m = 0; m < M; m++) {
            double d = (double)p[m] - t[m];
            s += d * d;
        }
        loss[n] = (float)(s / M);
    }
}

void mse_per_sample_backward(float *dpred, float *dtarget, const float *dloss, const float *pred,
                             const float *target, int N, int M)
{
    if (!dpred && !dtarget)
        return;
#pragma omp parallel for schedule(static) if ((size_t)N * M >= LOSS_PAR_MIN)
    for (int n = 0; n < N; n++) {
        size_t off = (size_t)n * M;
        double k = 2.0 * dloss[n] / M;
        for (int m = 0; m < M; m++) {
            float g = (float)(k * ((double)pred[off + m] - target[off + m]));
            if (dpred)
                dpred[off + m] += g;
            if (dtarget)
                dtarget[off + m] -= g;
        }
    }
}

/* ---- L1 ------------------------------------------------------------------ */

float l1_mean_forward(const float *a, const float *b, size_t n)
{
    double part[LOSS_CHUNKS];
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (int c = 0; c < LOSS_CHUNKS; c++) {
        double s = 0;
        for (size_t i = chunk_lo(c, n); i < chunk_lo(c + 1, n); i++)
            s += fabs((double)a[i] - b[i]);
        part[c] = s;
    }
    return (float)(sum_chunks(part) / (double)n);
}

void l1_mean_backward(float *da, float *db, float dloss, const float *a, const float *b, size_t n)
{
    if (!da && !db)
        return;
    float k = (float)((double)dloss / (double)n);
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        /* a - b == 0 in float exactly when a == b, so the comparison gives
         * torch's sgn(a - b) with sgn(0) = 0. */
        float g = a[i] > b[i] ? k : a[i] < b[i] ? -k : 0.0f;
        if (da)
            da[i] += g;
        if (db)
            db[i] -= g;
    }
}

/* ---- REPA cosine loss ----------------------------------------------------- */

static inline void row_stats(const float *a, const float *b, int D, double *dot, double *na2, double *nb2)
{
    double d = 0, x = 0, y = 0;
    for (int k = 0; k < D; k++) {
        d += (double)a[k] * b[k];
        x += (double)a[k] * a[k];
        y += (double)b[k] * b[k];
    }
    *dot = d, *na2 = x, *nb2 = y;
}

float repa_cosine_loss_forward(const float *zs_tilde, const float *zs, int N, int T, int Dz)
{
    size_t rows = (size_t)N * T;
    double part[LOSS_CHUNKS];
#pragma omp parallel for schedule(static) if (rows * Dz >= LOSS_PAR_MIN)
    for (int c = 0; c < LOSS_CHUNKS; c++) {
        double s = 0;
        for (size_t r = chunk_lo(c, rows); r < chunk_lo(c + 1, rows); r++) {
            double dot, na2, nb2;
            row_stats(zs_tilde + r * Dz, zs + r * Dz, Dz, &dot, &na2, &nb2);
            s += dot / (fmax(sqrt(na2), REPA_NORM_EPS) * fmax(sqrt(nb2), REPA_NORM_EPS));
        }
        part[c] = s;
    }
    return (float)(-sum_chunks(part) / (double)rows);
}

void repa_cosine_loss_backward(float *dzs_tilde, float *dzs, float dloss, const float *zs_tilde, const float *zs,
                               int N, int T, int Dz)
{
    if (!dzs_tilde && !dzs)
        return;
    size_t rows = (size_t)N * T;
    double g = -(double)dloss / (double)rows;
#pragma omp parallel for schedule(static) if (rows * Dz >= LOSS_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *a = zs_tilde + r * Dz, *b = zs + r * Dz;
        double dot, na2, nb2;
        row_stats(a, b, Dz, &dot, &na2, &nb2);
        double na = sqrt(na2), nb = sqrt(nb2);
        double da_ = fmax(na, REPA_NORM_EPS), db_ = fmax(nb, REPA_NORM_EPS);
        double cos = dot / (da_ * db_);
        /* d cos / da = (b̂ - cos â) / ‖a‖ when ‖a‖ >= eps; in the clamp branch
         * (‖a‖ < eps) the denominator is the constant eps: d cos / da = b̂ / eps.
         * (torch's clamp_min passes the gradient where norm >= eps.) */
        int a_free = na >= REPA_NORM_EPS, b_free = nb >= REPA_NORM_EPS;
        if (dzs_tilde) {
            float *d = dzs_tilde + r * Dz;
            for (int k = 0; k < Dz; k++) {
                double bh = b[k] / db_, ah = a[k] / da_;
                double dc = a_free ? (bh - cos * ah) / na : bh / REPA_NORM_EPS;
                d[k] += (float)(g * dc);
            }
        }
        if (dzs) {
            float *d = dzs + r * Dz;
            for (int k = 0; k < Dz; k++) {
                double bh = b[k] / db_, ah = a[k] / da_;
                double dc = b_free ? (ah - cos * bh) / nb : ah / REPA_NORM_EPS;
                d[k] += (float)(g * dc);
            }
        }
    }
}

/* ---- KL of a diagonal Gaussian ----------------------------------------- */

float kl_diag_gaussian_forward(const float *mean, const float *logvar, int N, int M)
{
    size_t n = (size_t)N * M;
    double part[LOSS_CHUNKS];
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (int c = 0; c < LOSS_CHUNKS; c++) {
        double s = 0;
        for (size_t i = chunk_lo(c, n); i < chunk_lo(c + 1, n); i++) {
            double m = mean[i], lv = logvar[i];
            s += m * m + exp(lv) - 1.0 - lv;
        }
        part[c] = s;
    }
    return (float)(0.5 * sum_chunks(part) / N);
}

void kl_diag_gaussian_backward(float *dmean, float *dlogvar, float dloss, const float *mean, const float *logvar, int N,
                               int M)
{
    size_t n = (size_t)N * M;
    double k = (double)dloss / N;
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        if (dmean)
            dmean[i] += (float)(k * mean[i]);
        if (dlogvar)
            dlogvar[i] += (float)(k * 0.5 * (exp((double)logvar[i]) - 1.0));
    }
}

/* ---- GAN losses ------------------------------------------------------------ */

static double hinge_sum(const float *x, size_t n, double sign)
{
    /* Σ relu(1 + sign * x) */
    double part[LOSS_CHUNKS];
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (int c = 0; c < LOSS_CHUNKS; c++) {
        double s = 0;
        for (size_t i = chunk_lo(c, n); i < chunk_lo(c + 1, n); i++) {
            double v = 1.0 + sign * x[i];
            s += v > 0 ? v : 0;
        }
        part[c] = s;
    }
    return sum_chunks(part);
}

float hinge_d_loss_forward(const float *logits_real, size_t n_real, const float *logits_fake, size_t n_fake)
{
    return (float)(0.5 * (hinge_sum(logits_real, n_real, -1.0) / (double)n_real +
                          hinge_sum(logits_fake, n_fake, 1.0) / (double)n_fake));
}

void hinge_d_loss_backward(float *dreal, float *dfake, float dloss, const float *logits_real, size_t n_real,
                           const float *logits_fake, size_t n_fake)
{
    /* relu'(0) = 0 as in torch: real == 1 and fake == -1 get no gradient. */
    if (dreal) {
        float k = (float)(-0.5 * dloss / (double)n_real);
#pragma omp parallel for schedule(static) if (n_real >= LOSS_PAR_MIN)
        for (size_t i = 0; i < n_real; i++)
            if (logits_real[i] < 1.0f)
                dreal[i] += k;
    }
    if (dfake) {
        float k = (float)(0.5 * dloss / (double)n_fake);
#pragma omp parallel for schedule(static) if (n_fake >= LOSS_PAR_MIN)
        for (size_t i = 0; i < n_fake; i++)
            if (logits_fake[i] > -1.0f)
                dfake[i] += k;
    }
}

float hinge_g_loss_forward(const float *logits_fake, size_t n) { return (float)-mean_f64(logits_fake, n); }

void hinge_g_loss_backward(float *dfake, float dloss, size_t n)
{
    if (!dfake)
        return;
    float k = (float)(-(double)dloss / (double)n);
#pragma omp parallel for schedule(static) if (n >= LOSS_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dfake[i] += k;
}

/* LeCam, reference form (TiTok compute_lecam_loss on the logits means; the
 * REPA-E loss/losses.py passes torch.mean(logits_real), torch.mean(logits_fake)
 * and the EMA buffers, and updates the EMAs afterwards with decay 0.999). */
float lecam_forward(const float *logits_real, size_t n_real, const float *logits_fake, size_t n_fake, float ema_real,
                    float ema_fake)
{
    double a = mean_f64(logits_real, n_real) - ema_fake;
    double b = ema_real - mean_f64(logits_fake, n_fake);
    a = a > 0 ? a : 0;
    b = b > 0 ? b : 0;
    return (float)(a * a + b * b);
}

void lecam_backward(float *dreal, float *dfake, float dloss, const float *logits_real, size_t n_real,
                    const float *logits_fake, size_t n_fake, float ema_real, float ema_fake)
{
    if (dreal) {
        double a = mean_f64(logits_real, n_real) - ema_fake;
        if (a > 0) {
            float k = (float)(2.0 * a * dloss / (double)n_real);
            for (size_t i = 0; i < n_real; i++)
                dreal[i] += k;
        }
    }
    if (dfake) {
        double b = ema_real - mean_f64(logits_fake, n_fake);
        if (b > 0) {
            float k = (float)(-2.0 * b * dloss / (double)n_fake);
            for (size_t i = 0; i < n_fake; i++)
                dfake[i] += k;
        }
    }
}

void lecam_ema_update(float *ema_real, float *ema_fake, const float *logits_real, size_t n_real,
                      const float *logits_fake, size_t n_fake, double decay)
{
    /* As torch does float32 tensor * python float: both factors rounded to float. */
    float mr = (float)mean_f64(logits_real, n_real), mf = (float)mean_f64(logits_fake, n_fake);
    float keep = (float)decay, take = (float)(1.0 - decay);
    *ema_real = *ema_real * keep + mr * take;
    *ema_fake = *ema_fake * keep + mf * take;
}
