/* act.c — elementwise activations.
 *
 * The formulas are PyTorch's, rearranged where that avoids cancellation
 * (GELU tails, below), so results match torch's float64 answer to a few
 * float roundings everywhere, and its float32 answer to ~1e-7 absolute.
 *
 * No restrict qualifiers: forward must work in place (out == in), and each
 * element is read before it is written, so it does.  Threads only pay off
 * for large n; small calls stay on the calling thread.
 */
#include "ops/act.h"

#include <math.h>

#include "ops/fast_exp.h"

#define PAR_MIN (1L << 15)

/* √(2/π) and 1/√(2π) */
#define GELU_TANH_BETA 0.7978845608028654f
#define GELU_TANH_KAPPA 0.044715f
#define INV_SQRT_2PI 0.3989422804014327f
#define INV_SQRT_2 0.7071067811865476f

/* fast_expf clamps at e^88, so for x < −88 this gives ~6e-39 instead of 0: fine. */
#define sigmoidf fast_sigmoidf

void silu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] * sigmoidf(in[i]);
}

void silu_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] += silu_grad(dout[i], in[i]);
}

/* GELU-tanh through the identity 0.5(1 + tanh u) = σ(2u): x·σ(2u) keeps full
 * relative accuracy in the negative tail, where 1 + tanh u cancels in float
 * (PyTorch's float kernel loses it there; its float64 results agree with
 * ours).  With e = exp(−2|u|) ≤ 1 nothing overflows, and
 *   σ(2|u|) = 1/(1+e),  σ(−2|u|) = e/(1+e),  1 − tanh²u = 4·σ(2u)·σ(−2u). */
static inline void gelu_tanh_sigmoids(float x, float *s, float *s_neg)
{
    float u = GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x * x * x);
    float e = fast_expf(-2.0f * fabsf(u)); /* flushes to 0 below e^-87.3, where x·e is ~0 anyway */
    float hi = 1.0f / (1.0f + e), lo = e / (1.0f + e);
    *s = u >= 0.0f ? hi : lo;
    *s_neg = u >= 0.0f ? lo : hi;
}

void gelu_tanh_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float s, s_neg;
        gelu_tanh_sigmoids(in[i], &s, &s_neg);
        out[i] = in[i] * s;
    }
}

static inline float gelu_tanh_grad(float dout, float x)
{
    float s, s_neg;
    gelu_tanh_sigmoids(x, &s, &s_neg);
    float du = GELU_TANH_BETA * (1.0f + 3.0f * GELU_TANH_KAPPA * x * x);
    /* d/dx [x·0.5(1 + tanh u)] = 0.5(1 + tanh u) + 0.5x(1 − tanh²u)·u' */
    return dout * (s + 2.0f * x * s * s_neg * du);
}

void gelu_tanh_backward(float *din, bool accumulate, const float *dout, const float *in, size_t n)
{
    /* Two loops: a select on `accumulate` inside one kept gcc from vectorising it. */
    if (accumulate) {
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
        for (size_t i = 0; i < n; i++)
            din[i] += gelu_tanh_grad(dout[i], in[i]);
    } else {
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
        for (size_t i = 0; i < n; i++)
            din[i] = 0.0f + gelu_tanh_grad(dout[i], in[i]); /* 0 + g: the zeroed buffer's bits, -0 included */
    }
}

/* Φ(x) = 0.5·erfc(−x/√2), the standard normal CDF of the exact GELU,
 * written so that the compiler can vectorise it: glibc's erfcf is a call,
 * which kept the GELU loops scalar (~5 % of the full REPA-E step on a Zen 3,
 * BENCHMARKS.md, session 32).  For a = |x|/√2,
 *   erfc(a) = t·exp(−a² + P(t)),  t = 1/(1 + a/2),
 * P the degree-9 Chebyshev fit of Numerical Recipes' erfcc (1.2e-7 relative
 * for every a ≥ 0 in exact arithmetic).  a² = a2 + err exactly (fmaf), and
 * exp(−a²) is taken as exp(−a2)·exp(−err): rounding a² (up to ~86 before
 * the result flushes) would otherwise cost up to 4e-6 relative.  Measured
 * against double-precision erfc: ≤ 4.3e-7 relative for 0 ≤ a ≤ 9, where
 * glibc's erfcf gives ≤ 2.1e-7 (tests/test_act.c checks the bound).  Then
 * Φ = erfc(a)/2 for x ≤ 0 and 1 − erfc(a)/2 above, so the negative tail
 * keeps its relative accuracy (no 1 + erf that cancels).  Below FLT_MIN it
 * flushes to 0 (fast_expf), i.e. for x < −13.2.  a is capped at 10 (erfc is
 * 0 in float long before) so that x = ±inf gives no inf − inf; NaN stays
 * NaN. */
static inline float gelu_erf_cdf(float x)
{
    float a = fabsf(x) * INV_SQRT_2;
    a = a > 10.0f ? 10.0f : a;
    const float t = 1.0f / (1.0f + 0.5f * a);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float a2 = a * a, err = fmaf(a, a, -a2);
    const float half_erfc = 0.5f * t * fast_expf(-a2) * fast_expf(p - err);
    return x <= 0.0f ? half_erfc : 1.0f - half_erfc;
}

/* Exact GELU, x·Φ(x). */
void gelu_erf_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] * gelu_erf_cdf(in[i]);
}

/* d/dx x·Φ(x) = Φ(x) + x·φ(x). */
void gelu_erf_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = in[i];
        const float pdf = INV_SQRT_2PI * fast_expf(-0.5f * x * x);
        din[i] += dout[i] * (gelu_erf_cdf(x) + x * pdf);
    }
}

void relu_forward(float *out, const float *in, size_t n)
{
    /* "< 0 ? 0 : x" rather than fmaxf so a NaN input stays NaN, as in torch. */
#pragma omp parallel for schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

void relu_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        if (in[i] > 0.0f)
            din[i] += dout[i];
}

void leaky_relu_forward(float *out, const float *in, size_t n, float slope)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : in[i] * slope;
}

void leaky_relu_backward(float *din, const float *dout, const float *in, size_t n, float slope)
{
#pragma omp parallel for simd schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] += in[i] > 0.0f ? dout[i] : dout[i] * slope;
}
