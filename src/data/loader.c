#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

#define RNG_STREAM_SHUFFLE 0x53485546ull /* "SHUF" */

static void make_order(loader *l)
{
    int n = l->ds->n;
    uint32_t *perm = xmalloc((size_t)n * sizeof(uint32_t));
    for (int i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    rng r = rng_new(l->seed, RNG_STREAM_SHUFFLE + ((uint64_t)l->epoch << 32));
    rng_shuffle_u32(&r, perm, (size_t)n);
    for (int i = 0; i < l->per_rank; i++)
        l->order[i] = perm[(size_t)i * l->world + l->rank];
    free(perm);
}

loader loader_create(const dataset *ds, int batch, uint64_t seed, int rank, int world)
{
    if (world < 1 || rank < 0 || rank >= world)
        die("data loader: rank %d is not in [0, world=%d)", rank, world);
    if (batch < 1)
        die("data loader: batch size must be positive, got %d", batch);
    loader l = {0};
    l.ds = ds;
    l.batch = batch;
    l.rank = rank;
    l.world = world;
    l.seed = seed;
    l.per_rank = ds->n / world;
    l.batches_per_epoch = l.per_rank / batch;
    if (l.batches_per_epoch < 1)
        die("'%s': %d images (%d per process) are fewer than one batch of %d", ds->source, ds->n, l.per_rank, batch);
    l.order = xmalloc((size_t)l.per_rank * sizeof(uint32_t));
    make_order(&l);
    return l;
}

void loader_seek(loader *l, long long epoch, int position)
{
    if (epoch < 0 || position < 0 || position > l->batches_per_epoch)
        die("data loader: cannot resume at epoch %lld batch %d (%d batches per epoch)", epoch, position,
            l->batches_per_epoch);
    l->epoch = epoch;
    l->position = position;
    make_order(l);
}

void loader_next(loader *l, uint8_t *images, int32_t *labels)
{
    if (l->position >= l->batches_per_epoch) {
        l->epoch++;
        l->position = 0;
        make_order(l);
    }
    const dataset *d = l->ds;
    size_t img = (size_t)d->channels * d->height * d->width;
    for (int b = 0; b < l->batch; b++) {
        uint32_t idx = l->order[(size_t)l->position * l->batch + b];
        memcpy(images + b * img, d->images + idx * img, img);
        labels[b] = d->labels[idx];
    }
    l->position++;
}

void loader_free(loader *l)
{
    free(l->order);
    l->order = NULL;
}

const uint32_t *loader_last_indices(const loader *l)
{
    if (l->position < 1)
        die("internal: loader_last_indices before the first batch of an epoch");
    return l->order + (size_t)(l->position - 1) * l->batch;
}
