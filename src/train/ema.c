#include "train/ema.h"

#include <string.h>

static int is_counter(const char *name)
{
    size_t n = strlen(name), s = strlen("num_batches_tracked");
    return n >= s && !strcmp(name + n - s, "num_batches_tracked");
}

void ema_update(const param_table *t, float *ema, const float *params, float decay)
{
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        float *a = ema + e->offset;
        const float *p = params + e->offset;
        long n = (long)e->numel;
        if (decay == 0.0f || is_counter(e->name)) {
            memcpy(a, p, (size_t)n * sizeof(float));
            continue;
        }
        float keep = decay, take = 1.0f - decay;
#pragma omp parallel for if (n > 65536) schedule(static)
        for (long k = 0; k < n; k++)
            a[k] = keep * a[k] + take * p[k];
    }
}
