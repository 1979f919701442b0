/* loader.h — shuffled, drop-last mini-batches over a dataset, resumable.
 *
 * Epoch e visits a permutation drawn from (seed, e) alone, so the loader's
 * whole state is (epoch, position): a checkpoint stores those two numbers and
 * a resumed run sees exactly the batches the uninterrupted one would have.
 * With world > 1, rank r takes every world-th index of the permutation
 * (DistributedSampler's split), so data parallelism needs no redesign.
 */
#ifndef REPAE_LOADER_H
#define REPAE_LOADER_H

#include <stdint.h>

#include "data/dataset.h"

typedef struct loader {
    const dataset *ds;
    int batch, rank, world;
    uint64_t seed;
    long long epoch;  /* current epoch (0-based) */
    int position;     /* next batch index within the epoch */
    int batches_per_epoch;
    int per_rank;     /* indices this rank sees per epoch */
    uint32_t *order;  /* this rank's indices for the current epoch */
} loader;

loader loader_create(const dataset *ds, int batch, uint64_t seed, int rank, int world);
/* Copies the next batch: images [B, C, H, W] uint8 and labels [B]. */
void loader_next(loader *l, uint8_t *images, int32_t *labels);
/* The dataset indices of the batch loader_next returned last ([batch]);
 * lets a caller fetch matching rows of a parallel array (cached latents). */
const uint32_t *loader_last_indices(const loader *l);
/* Jumps to (epoch, position), as saved in a checkpoint. */
void loader_seek(loader *l, long long epoch, int position);
void loader_free(loader *l);

#endif
