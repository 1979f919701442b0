#include "core/finite_check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Blocks of 4096: the vectorised OR says whether a block holds a bad value;
 * only then is it searched element by element. */
size_t finite_check_f32(const float *x, size_t n)
{
    const size_t block = 4096;
    for (size_t b0 = 0; b0 < n; b0 += block) {
        size_t len = n - b0 < block ? n - b0 : block;
        uint32_t bad = 0;
        for (size_t i = 0; i < len; i++) {
            uint32_t bits;
            memcpy(&bits, x + b0 + i, sizeof bits);
            bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (bad)
            for (size_t i = 0; i < len; i++)
                if (!isfinite(x[b0 + i]))
                    return b0 + i;
    }
    return n;
}
