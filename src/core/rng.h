/* rng.h — seedable, counter-based random numbers (Philox-4x32-10).
 *
 * A generator is a key (from the seed and a stream id) plus a 64-bit counter,
 * so its whole state is a small plain struct that a checkpoint can store, and
 * independent streams (data shuffling, timesteps, noise, label dropout, one
 * per sampled image) never overlap.  Not bit-compatible with torch's CPU
 * generator: fixtures that need torch's draws pass them in explicitly.
 *
 *   rng r = rng_new(seed, RNG_STREAM_NOISE);
 *   float u = rng_uniform(&r);          // [0, 1)
 *   rng_normal_fill(&r, eps, n);        // N(0, 1)
 */
#ifndef REPAE_RNG_H
#define REPAE_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rng {
    uint64_t key;     /* derived from (seed, stream) */
    uint64_t counter; /* number of 128-bit blocks drawn */
    uint32_t buf[4];  /* the current block */
    uint32_t buf_pos; /* next unused word in buf (4 = empty) */
    uint32_t has_spare;
    float spare; /* second Box-Muller value */
} rng;

rng rng_new(uint64_t seed, uint64_t stream);
uint32_t rng_u32(rng *r);
uint64_t rng_u64(rng *r);
float rng_uniform(rng *r);                       /* [0,1), 24 random bits */
double rng_uniform_double(rng *r);               /* [0,1), 53 random bits */
float rng_normal(rng *r);                        /* N(0,1), Box-Muller in double */
uint32_t rng_below(rng *r, uint32_t n);          /* uniform in [0, n), unbiased */
void rng_uniform_fill(rng *r, float *x, size_t n);
void rng_normal_fill(rng *r, float *x, size_t n);
void rng_shuffle_u32(rng *r, uint32_t *v, size_t n); /* Fisher-Yates */

#endif
