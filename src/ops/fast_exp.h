/* fast_exp.h — an expf the compiler can vectorise.
 *
 * glibc's expf is a function call, which keeps loops that need it (softmax,
 * SiLU, GELU) scalar; this inline version lets them run 8 lanes wide.
 */
#ifndef REPAE_FAST_EXP_H
#define REPAE_FAST_EXP_H

#include <stdint.h>
#include <string.h>

/* exp(x), written so the compiler can vectorise it (glibc's expf
 * is a call, which blocks `omp simd`).  Cephes expf: x = n·ln2 + r with
 * |r| <= ln2/2 (ln2 split in two for an exact n·ln2_hi), degree-6 polynomial
 * for e^r, then 2^n through the exponent bits.  Max relative error about
 * 2 ulp (checked against expf in tests/test_attention.c).  Inputs below
 * -87.3 (result below FLT_MIN) give 0, i.e. denormal results are flushed;
 * softmax only feeds it x - max <= 0, where such terms are negligible.
 * Inputs above 88 are clamped to 88 (sigmoid and softmax only need them to
 * be huge). */
static inline float fast_expf(float x)
{
    const float lo = -87.33654f, hi = 88.0f; /* above 88 it clamps (e^88 ≈ 1.7e38) */
    float xc = x > lo ? x : lo; /* NaN -> lo here, so the integer part stays in range */
    xc = xc < hi ? xc : hi;
    /* round to nearest with the 1.5·2^23 trick (floorf would block vectorisation) */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    y *= two_n;
    return x >= lo ? y : (x < lo ? 0.0f : x); /* the last case: NaN in, NaN out */
}

/* σ(x) = 1/(1+e^−x) with fast_expf: the SiLU's sigmoid (ops/act.c) and the
 * fused GroupNorm + SiLU (ops/norm.c) share it, so both give the same bits. */
static inline float fast_sigmoidf(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

#endif
