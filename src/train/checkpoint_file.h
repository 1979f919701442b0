/* checkpoint_file.h — a training checkpoint described as a table, so saving
 * and loading are one loop each and can never list different tensors.
 *
 * A layout has rows {prefix, parameter table, buffer} (model., ema., vae.,
 * opt.m.model., ...), integer counters with their valid ranges (step,
 * epoch, position, optimiser steps) and float scalars (LeCam EMAs):
 *
 *   ckpt_layout l = ckpt_layout_new("repae-checkpoint", NULL, 1);
 *   ckpt_add_tensors(&l, "model.", &sit->table, sit_params);
 *   ckpt_add_counter(&l, "step", &t->step, 0, CKPT_MAX_STEP);
 *   ckpt_save(&l, path, args_json);        // atomic
 *   ckpt_load(&l, path);                   // strict
 *
 * Loading is strict: the format, kind and version must match; every row's
 * tensors must be present with their shapes; a tensor no row claims is an
 * error naming it (a stray or misspelt key is never dropped silently); every
 * counter must be an integer inside its range.
 */
#ifndef REPAE_CHECKPOINT_FILE_H
#define REPAE_CHECKPOINT_FILE_H

#include "models/params.h"

#define CKPT_MAX_ROWS 16
#define CKPT_MAX_STEP 1000000000000000LL /* 1e15: far past any run, far below overflow */

typedef struct ckpt_tensors {
    const char *prefix;
    const param_table *table;
    float *buffer;
} ckpt_tensors;

typedef struct ckpt_counter {
    const char *key;
    long long *value;
    long long min, max;
} ckpt_counter;

typedef struct ckpt_scalar {
    const char *key;
    float *value;
} ckpt_scalar;

typedef struct ckpt_text {
    const char *key, *value; /* saved only: descriptive metadata (a configuration as JSON) */
} ckpt_text;

typedef struct ckpt_layout {
    const char *format, *kind; /* kind: NULL, or a sub-kind that must match ("ldm") */
    long long version;
    int n_rows, n_counters, n_scalars, n_texts;
    ckpt_tensors rows[CKPT_MAX_ROWS];
    ckpt_counter counters[CKPT_MAX_ROWS];
    ckpt_scalar scalars[CKPT_MAX_ROWS];
    ckpt_text texts[CKPT_MAX_ROWS];
} ckpt_layout;

ckpt_layout ckpt_layout_new(const char *format, const char *kind, long long version);
/* Each add dies if the layout is full (CKPT_MAX_ROWS of a kind). */
void ckpt_add_tensors(ckpt_layout *l, const char *prefix, const param_table *t, float *buffer);
void ckpt_add_counter(ckpt_layout *l, const char *key, long long *value, long long min, long long max);
void ckpt_add_scalar(ckpt_layout *l, const char *key, float *value);
void ckpt_add_text(ckpt_layout *l, const char *key, const char *value);
/* The counters every training checkpoint has: step, epoch and position (the
 * data loader's), with their ranges. */
void ckpt_add_run_counters(ckpt_layout *l, long long *step, long long *epoch, long long *position);

/* Metadata in the order format, kind, version, counters, scalars, texts,
 * args; then the rows' tensors in order. */
void ckpt_save(const ckpt_layout *l, const char *path, const char *args_json);
void ckpt_load(const ckpt_layout *l, const char *path);
/* The same on an open file. */
void ckpt_load_st(const ckpt_layout *l, const safetensors *st);

#endif
