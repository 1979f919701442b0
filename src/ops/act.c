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

/* Exact GELU with 0.5(1 + erf(x/√2)) = 0.5·erfc(−x/√2), which stays
 * accurate in the negative tail where 1 + erf cancels. */
void gelu_erf_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = 0.5f * in[i] * erfcf(-in[i] * INV_SQRT_2);
}

void gelu_erf_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float cdf = 0.5f * erfcf(-x * INV_SQRT_2);
        float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
        din[i] += dout[i] * (cdf + x * pdf);
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
