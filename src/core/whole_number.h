/* whole_number.h — is a double read from a file a whole number in [lo, hi]?
 * The one test every reader applies before casting a JSON number to an
 * integer type: a cast of anything else (1e300, 2.5, inf, NaN) is undefined
 * behaviour or a silent truncation. */
#ifndef REPAE_WHOLE_NUMBER_H
#define REPAE_WHOLE_NUMBER_H

#include <math.h>
#include <stdbool.h>

static inline bool whole_number_in(double v, double lo, double hi)
{
    return v >= lo && v <= hi && v == floor(v); /* false for NaN and ±inf outside [lo, hi] */
}

#endif
