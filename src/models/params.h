/* params.h — a model's parameter table: the single source of names, shapes,
 * offsets and initialisation rules.
 *
 * A model registers every tensor once, in state-dict order, while it is
 * built from its configuration:
 *
 *   param_table t = {0};
 *   m->conv_in_w = param_add(&t, "encoder.conv_in.weight", INIT_TORCH_CONV, 4, (int64_t[]){128, 3, 3, 3});
 *   m->conv_in_b = param_add(&t, "encoder.conv_in.bias", INIT_TORCH_CONV_BIAS, 1, (int64_t[]){128});
 *   ...
 *   float *params = param_alloc(&t);           // one contiguous buffer
 *   param_init(&t, params, seed);              // reference initialisation
 *   param_load(&t, params, st, PARAM_STRICT);  // or by name from safetensors
 *
 * param_add returns the tensor's offset (in floats) into the contiguous
 * buffer, so the same offsets address the parameters, their gradients and
 * the AdamW moments, and an EMA or an all-reduce is a single loop.
 * Loading, saving, counting and the parity tests all walk this table, so
 * the lists can never drift apart.
 *
 * Ownership (every model: vae, vit, cnn_classifier, discriminator, lpips,
 * inception, sit).  A model struct is its configuration, its parameter table
 * and what is derived from them (offsets, layer lists); it never owns
 * parameter memory.  Weights, EMA copies, gradients and AdamW moments are
 * plain buffers of table.total floats laid out by the table, owned by
 * whoever allocates them (param_alloc(&m.table), free()), and every function
 * that reads or writes weights takes that buffer explicitly.  Every model
 * has the same lifecycle:
 *
 *   X_build(m, cfg)                            table and structure, no weights
 *   X_init_weights(m, params, seed)            from-scratch initialisation
 *   X_load(m, params, st, prefix, mode)        by name from an open safetensors
 *   X_save(m, params, w, prefix)               onto a writer
 *   X_free(m)                                  the table and structure
 *
 * (plus X_load_file / X_save_file / X_from_checkpoint conveniences where a
 * model has them).  Activations are not part of the model either: they are
 * carved from an arena the caller sized with the model's plan function.
 */
#ifndef REPAE_PARAMS_H
#define REPAE_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

#define PARAM_MAX_DIMS 4
#define PARAM_NAME_MAX 128

typedef enum param_init_rule {
    INIT_ZERO,
    INIT_ONE,
    INIT_XAVIER_UNIFORM,   /* U(±sqrt(6/(fan_in+fan_out))), fan_in = prod(shape[1:]) */
    INIT_NORMAL,           /* N(0, arg²) */
    INIT_NORMAL_ONE,       /* N(1, arg²) (the discriminator's BN weights) */
    INIT_TORCH_DEFAULT,    /* PyTorch's Linear/Conv default: weight U(±1/sqrt(fan_in)) (kaiming a=√5) */
    INIT_TORCH_BIAS,       /* PyTorch's default bias: U(±1/sqrt(fan_in)), fan_in = arg */
    INIT_CONSTANT,         /* arg */
    INIT_EXTERNAL,         /* filled by the model itself (pos_embed, BN stats, ...) */
} param_init_rule;

typedef enum param_kind {
    PARAM_TRAINABLE, /* gets gradients, AdamW updates it */
    PARAM_FROZEN,    /* in the state dict, never trained (pos_embed) */
    PARAM_BUFFER,    /* running statistics: in the state dict, updated by the forward */
} param_kind;

typedef struct param_entry {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t offset; /* in floats */
    size_t numel;
    param_init_rule init;
    float init_arg;
    param_kind kind;
} param_entry;

typedef struct param_table {
    int n, cap;
    param_entry *entries;
    size_t total; /* floats */
} param_table;

typedef enum param_load_mode {
    PARAM_STRICT,        /* every table entry present, no extra tensors */
    PARAM_ALLOW_EXTRA,   /* extra tensors in the file are listed once and ignored (the reference loads its VAE with strict=False) */
    PARAM_IGNORE_EXTRA,  /* extra tensors are silently ignored (test fixtures, checkpoints holding several models) */
} param_load_mode;

/* Registers a tensor; returns its offset in floats.  Names must be unique. */
size_t param_add(param_table *t, const char *name, param_init_rule init, int ndim, const int64_t *shape);
/* The same with an init argument and a kind. */
size_t param_add_ex(param_table *t, const char *name, param_init_rule init, float init_arg, param_kind kind, int ndim,
                    const int64_t *shape);
/* printf-style name helper: param_name(buf, "blocks.%d.attn.qkv.weight", i). Returns buf. */
const char *param_name(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void param_table_free(param_table *t);
const param_entry *param_find(const param_table *t, const char *name);
size_t param_count(const param_table *t, param_kind kind); /* elements of one kind */
size_t param_count_all(const param_table *t);              /* every entry */

float *param_alloc(const param_table *t); /* zero-filled, 64-byte aligned */
/* Applies each entry's init rule (INIT_EXTERNAL entries are left alone). */
void param_init(const param_table *t, float *params, uint64_t seed);
/* Binds every entry by name; a missing tensor or a shape mismatch dies naming
 * the key, the file and both shapes.  `prefix` is prepended to every name
 * when looking it up (e.g. "ema." or ""). */
void param_load(const param_table *t, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
/* Adds every entry to a writer (pointing into params; keep params alive until saved). */
void param_save(const param_table *t, const float *params, st_writer *w, const char *prefix);

#endif
