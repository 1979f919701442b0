/* finite_check_f32 (src/core/finite_check.c), the scan by which loaders
 * refuse weights, noise or statistics that hold NaN or ±inf: the index of
 * the first non-finite value, or n.  Bad values at the edges of its
 * 4096-float blocks, several of them, values that are finite however
 * extreme (±0, subnormals, ±FLT_MAX), NaNs of every sign and payload, and a
 * bad value just past the n it is given. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/finite_check.h"
#include "test.h"

enum { BLOCK = 4096, LEN = 3 * BLOCK + 17 };

static float bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void test_all_finite(void)
{
    float *x = alloc_normal(LEN, 1.0f, 1);
    CHECK(finite_check_f32(x, 0) == 0, "no values: n");
    CHECK(finite_check_f32(x, LEN) == LEN, "normal values: n");
    const float extreme[] = {0.0f, -0.0f, FLT_MAX, -FLT_MAX, FLT_MIN, bits_to_float(1), bits_to_float(0x807fffffu),
                             bits_to_float(0x7f7fffffu)};
    for (size_t k = 0; k < sizeof extreme / sizeof extreme[0]; k++)
        x[k * 1000] = extreme[k];
    CHECK(finite_check_f32(x, LEN) == LEN, "±0, subnormals and ±FLT_MAX are finite");
    free(x);
}

static void test_first_bad_value(void)
{
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY, bits_to_float(0x7f800001u), bits_to_float(0xffc00123u)};
    const size_t at[] = {0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 5, LEN - 1};
    float *x = alloc_normal(LEN, 1.0f, 2);
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
        for (size_t p = 0; p < sizeof at / sizeof at[0]; p++) {
            float keep = x[at[p]];
            x[at[p]] = bad[b];
            size_t got = finite_check_f32(x, LEN);
            CHECK(got == at[p], "bad value %zu at %zu: reported at %zu", b, at[p], got);
            x[at[p]] = keep;
        }
    /* two bad values: the first, in the same block and in different ones */
    x[BLOCK + 9] = NAN, x[BLOCK + 3] = INFINITY;
    CHECK(finite_check_f32(x, LEN) == BLOCK + 3, "two in one block: the first");
    x[2 * BLOCK + 5] = -INFINITY;
    CHECK(finite_check_f32(x, LEN) == BLOCK + 3, "two blocks: the first");
    x[BLOCK + 9] = x[BLOCK + 3] = 0.5f;
    CHECK(finite_check_f32(x, LEN) == 2 * BLOCK + 5, "the remaining one");
    /* past n: not looked at, at n, in a part block and after whole blocks */
    CHECK(finite_check_f32(x, 2 * BLOCK + 5) == 2 * BLOCK + 5, "a bad value at n is not counted");
    CHECK(finite_check_f32(x, 2 * BLOCK + 1) == 2 * BLOCK + 1, "a bad value 4 past n is not counted");
    CHECK(finite_check_f32(x, 2 * BLOCK) == 2 * BLOCK, "a bad value past whole blocks is not counted");
    free(x);
}

int main(void)
{
    RUN(test_all_finite);
    RUN(test_first_bad_value);
    return test_summary();
}
