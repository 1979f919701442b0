/* thread_share.h — inside a parallel region, the calling thread's contiguous
 * share [k0, k1) of n independent items, split as schedule(static) splits
 * them (the first n mod threads threads take one more).  For elementwise
 * passes that want one `omp simd` loop per thread over a plain range
 * instead of an `omp for` whose body the compiler does not vectorise. */
#ifndef REPAE_THREAD_SHARE_H
#define REPAE_THREAD_SHARE_H

#include <omp.h>

static inline void thread_share(long n, long *k0, long *k1)
{
    const long nt = omp_get_num_threads(), t = omp_get_thread_num();
    const long q = n / nt, r = n % nt;
    *k0 = t * q + (t < r ? t : r);
    *k1 = *k0 + q + (t < r ? 1 : 0);
}

#endif
