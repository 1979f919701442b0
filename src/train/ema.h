/* ema.h — exponential moving average of a model (the reference's EMA SiT).
 *
 * Every float entry of the table (trainable, frozen, and running statistics)
 * is averaged: ema ← decay·ema + (1−decay)·θ.  Entries named
 * "*num_batches_tracked" are counters and are copied instead, as PyTorch
 * copies integer buffers.  decay = 0 makes an exact copy (initialisation).
 */
#ifndef REPAE_EMA_H
#define REPAE_EMA_H

#include "models/params.h"

void ema_update(const param_table *t, float *ema, const float *params, float decay);

#endif
