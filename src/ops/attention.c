#include "ops/attention.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#include "ops/fast_exp.h"
#include "ops/gemm.h"

/* softmax_exp: see ops/fast_exp.h (shared with the activations). */
#define softmax_exp fast_expf

/* Exposed for the test of its accuracy (not in the header: internal). */
float attention_softmax_exp_for_test(float x);
float attention_softmax_exp_for_test(float x) { return softmax_exp(x); }

/* In-place softmax of one row of n logits (already scaled). */
static void softmax_row(float *s, int n)
{
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < n; j++)
        m = s[j] > m ? s[j] : m;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        float e = softmax_exp(s[j] - m);
        s[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++)
        s[j] *= inv;
}

/* dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place over dP, one row. */
static void softmax_backward_row(float *dp, const float *p, int n)
{
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < n; j++)
        dot += dp[j] * p[j];
#pragma omp simd
    for (int j = 0; j < n; j++)
        dp[j] = p[j] * (dp[j] - dot);
}

/* Below these sizes a parallel region costs more than it saves (and on a
 * loaded machine spinning OpenMP threads cost far more): run serially. */
#define ATTN_PAR_MIN_MACS (1L << 17) /* B·NH·T·T·HD, for splitting the pairs over threads */
#define ATTN_PAR_MIN_TT (1L << 14)   /* T·T, for splitting one pair's softmax rows */

size_t attention_workspace_floats(int B, int T, int NH, int HD)
{
    (void)B, (void)NH, (void)HD;
    return (size_t)omp_get_max_threads() * (size_t)T * (size_t)T;
}

/* One (b, h) pair.  P is the T×T probability block (in probs or scratch).
 * `inner_par` parallelises the softmax rows (used when BLAS is multi-threaded
 * because there are fewer pairs than threads). */
static void attn_fwd_pair(float *out, float *P, const float *q, const float *k, const float *v, int ld, int b,
                          int h, int T, int NH, int HD, int inner_par)
{
    const int D = NH * HD;
    const size_t base = (size_t)b * T * ld + (size_t)h * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    gemm(false, true, T, T, HD, scale, q + base, ld, k + base, ld, 0.0f, P, T);
#pragma omp parallel for schedule(static) if (inner_par)
    for (int i = 0; i < T; i++)
        softmax_row(P + (size_t)i * T, T);
    gemm(false, false, T, HD, T, 1.0f, P, T, v + base, ld, 0.0f, out + (size_t)b * T * D + (size_t)h * HD, D);
}

void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v, int ld,
                       int B, int T, int NH, int HD, float *workspace)
{
    const int npairs = B * NH;
    const size_t TT = (size_t)T * T;
    const int nthreads = omp_get_max_threads();
    if (npairs >= nthreads && (long)npairs * (long)TT * HD >= ATTN_PAR_MIN_MACS) {
#pragma omp parallel for schedule(static)
        for (int bh = 0; bh < npairs; bh++) {
            float *P = probs ? probs + (size_t)bh * TT : workspace + (size_t)omp_get_thread_num() * TT;
            attn_fwd_pair(out, P, q, k, v, ld, bh / NH, bh % NH, T, NH, HD, 0);
        }
    } else {
        /* Few (or small) pairs: let BLAS and the softmax rows use the threads instead. */
        const int inner_par = (long)TT >= ATTN_PAR_MIN_TT;
        for (int bh = 0; bh < npairs; bh++) {
            float *P = probs ? probs + (size_t)bh * TT : workspace;
            attn_fwd_pair(out, P, q, k, v, ld, bh / NH, bh % NH, T, NH, HD, inner_par);
        }
    }
}

static void attn_bwd_pair(float *dq, float *dk, float *dv, float beta, int ld_d, const float *dout, const float *P,
                          const float *q, const float *k, const float *v, int ld, int b, int h, int T, int NH,
                          int HD, float *dP, int inner_par)
{
    const int D = NH * HD;
    const size_t base = (size_t)b * T * ld + (size_t)h * HD;
    const size_t dbase = (size_t)b * T * ld_d + (size_t)h * HD;
    const float *dO = dout + (size_t)b * T * D + (size_t)h * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    if (dv) /* dV (+)= Pᵀ dO */
        gemm(true, false, T, HD, T, 1.0f, P, T, dO, D, beta, dv + dbase, ld_d);
    if (!dq && !dk)
        return;
    /* dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place. */
    gemm(false, true, T, T, HD, 1.0f, dO, D, v + base, ld, 0.0f, dP, T);
#pragma omp parallel for schedule(static) if (inner_par)
    for (int i = 0; i < T; i++)
        softmax_backward_row(dP + (size_t)i * T, P + (size_t)i * T, T);
    if (dq) /* dQ (+)= scale · dS K */
        gemm(false, false, T, HD, T, scale, dP, T, k + base, ld, beta, dq + dbase, ld_d);
    if (dk) /* dK (+)= scale · dSᵀ Q */
        gemm(true, false, T, HD, T, scale, dP, T, q + base, ld, beta, dk + dbase, ld_d);
}

void attention_backward(float *dq, float *dk, float *dv, bool accumulate, int ld_d, const float *dout,
                        const float *probs, const float *q, const float *k, const float *v, int ld, int B, int T,
                        int NH, int HD, float *workspace)
{
    if (!dq && !dk && !dv)
        return;
    const int npairs = B * NH;
    const size_t TT = (size_t)T * T;
    const int nthreads = omp_get_max_threads();
    const float beta = accumulate ? 1.0f : 0.0f;
    if (npairs >= nthreads && (long)npairs * (long)TT * HD >= ATTN_PAR_MIN_MACS) {
#pragma omp parallel for schedule(static)
        for (int bh = 0; bh < npairs; bh++)
            attn_bwd_pair(dq, dk, dv, beta, ld_d, dout, probs + (size_t)bh * TT, q, k, v, ld, bh / NH, bh % NH, T,
                          NH, HD, workspace + (size_t)omp_get_thread_num() * TT, 0);
    } else {
        const int inner_par = (long)TT >= ATTN_PAR_MIN_TT;
        for (int bh = 0; bh < npairs; bh++)
            attn_bwd_pair(dq, dk, dv, beta, ld_d, dout, probs + (size_t)bh * TT, q, k, v, ld, bh / NH, bh % NH, T,
                          NH, HD, workspace, inner_par);
    }
}

/* ---- naive reference (tests only; probs must be non-NULL) ---- */

static double ref_logit(const float *q, const float *k, int ld, int b, int h, int i, int j, int T, int HD)
{
    const float *qi = q + ((size_t)b * T + i) * ld + (size_t)h * HD;
    const float *kj = k + ((size_t)b * T + j) * ld + (size_t)h * HD;
    double s = 0;
    for (int d = 0; d < HD; d++)
        s += (double)qi[d] * kj[d];
    return s / sqrt((double)HD);
}

void attention_forward_ref(float *out, float *probs, const float *q, const float *k, const float *v, int ld,
                           int B, int T, int NH, int HD)
{
    const int D = NH * HD;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *P = probs + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++) {
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++)
                    m = fmax(m, ref_logit(q, k, ld, b, h, i, j, T, HD));
                for (int j = 0; j < T; j++)
                    sum += exp(ref_logit(q, k, ld, b, h, i, j, T, HD) - m);
                for (int d = 0; d < HD; d++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += exp(ref_logit(q, k, ld, b, h, i, j, T, HD) - m) / sum *
                               v[((size_t)b * T + j) * ld + (size_t)h * HD + d];
                    out[((size_t)b * T + i) * D + (size_t)h * HD + d] = (float)acc;
                }
                for (int j = 0; j < T; j++)
                    P[(size_t)i * T + j] = (float)(exp(ref_logit(q, k, ld, b, h, i, j, T, HD) - m) / sum);
            }
        }
}

void attention_backward_ref(float *dq, float *dk, float *dv, int ld_d, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int ld, int B, int T, int NH, int HD)
{
    const int D = NH * HD;
    const double scale = 1.0 / sqrt((double)HD);
    double *dS = xmalloc((size_t)T * T * sizeof(double)); /* reference only: allocates */
#define DO(i, d) ((double)dout[((size_t)b * T + (i)) * D + (size_t)h * HD + (d)])
#define AT(x, l, i, d) x[((size_t)b * T + (i)) * (l) + (size_t)h * HD + (d)]
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *P = probs + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++) {
                double rs = 0;
                for (int j = 0; j < T; j++) {
                    double dp = 0;
                    for (int d = 0; d < HD; d++)
                        dp += DO(i, d) * AT(v, ld, j, d);
                    dS[(size_t)i * T + j] = dp;
                    rs += dp * P[(size_t)i * T + j];
                }
                for (int j = 0; j < T; j++)
                    dS[(size_t)i * T + j] = P[(size_t)i * T + j] * (dS[(size_t)i * T + j] - rs) * scale;
            }
            for (int i = 0; i < T; i++)
                for (int d = 0; d < HD; d++) {
                    double aq = 0, ak = 0, av = 0;
                    for (int j = 0; j < T; j++) {
                        aq += dS[(size_t)i * T + j] * AT(k, ld, j, d);
                        ak += dS[(size_t)j * T + i] * AT(q, ld, j, d);
                        av += (double)P[(size_t)j * T + i] * DO(j, d);
                    }
                    if (dq)
                        AT(dq, ld_d, i, d) += (float)aq;
                    if (dk)
                        AT(dk, ld_d, i, d) += (float)ak;
                    if (dv)
                        AT(dv, ld_d, i, d) += (float)av;
                }
        }
#undef DO
#undef AT
    free(dS);
}
