#include "train/ema.h"

#include "core/thread_share.h"

#include <omp.h>
#include <stdbool.h>
#include <string.h>

static int is_counter(const char *name)
{
    size_t n = strlen(name), s = strlen("num_batches_tracked");
    return n >= s && !strcmp(name + n - s, "num_batches_tracked");
}

static inline void ema_range(float *a, const float *p, long k0, long k1, float keep, float take)
{
#pragma omp simd
    for (long k = k0; k < k1; k++)
        a[k] = keep * a[k] + take * p[k];
}

/* One parallel region for the whole table; a large tensor is shared out
 * among the threads (nowait: the tensors are independent), a small one is
 * done by one thread. */
void ema_update(const param_table *t, float *ema, const float *params, float decay)
{
#pragma omp parallel
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        float *a = ema + e->offset;
        const float *p = params + e->offset;
        long n = (long)e->numel;
        const bool copy = decay == 0.0f || is_counter(e->name);
        const float keep = decay, take = 1.0f - decay;
        if (copy || n <= 65536) {
            if (omp_get_thread_num() != i % omp_get_num_threads())
                continue;
            if (copy)
                memcpy(a, p, (size_t)n * sizeof(float));
            else
                ema_range(a, p, 0, n, keep, take);
            continue;
        }
        long k0, k1;
        thread_share(n, &k0, &k1);
        ema_range(a, p, k0, k1, keep, take);
    }
}
