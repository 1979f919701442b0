/* arena.h — a bump allocator for activations and scratch space.
 *
 * A model computes how many bytes one step needs from its shapes alone
 * (a "planning pass"), the arena is created once with that capacity, and the
 * training loop then only bumps and resets pointers: nothing is malloc'd
 * inside a step.  Running out of space is a bug in the plan and dies loudly.
 *
 *   arena a = arena_create(bytes);
 *   size_t m = arena_mark(&a);
 *   float *h = arena_floats(&a, B * C * H * W);
 *   ...
 *   arena_reset(&a, m);          // free everything allocated since the mark
 */
#ifndef REPAE_ARENA_H
#define REPAE_ARENA_H

#include <stddef.h>

#define ARENA_ALIGN 64 /* cache line, and enough for AVX-512 loads */

typedef struct arena {
    char *base;
    size_t capacity;
    size_t used;
    size_t high_water; /* largest `used` seen: what a plan must cover */
} arena;

arena arena_create(size_t capacity);
void arena_free(arena *a);
void *arena_alloc(arena *a, size_t bytes);
float *arena_floats(arena *a, size_t n);              /* uninitialised */
float *arena_zeros(arena *a, size_t n);               /* zero-filled */
static inline size_t arena_mark(const arena *a) { return a->used; }
void arena_reset(arena *a, size_t mark);

/* Bytes an allocation of `bytes` takes in the arena, for planning passes. */
static inline size_t arena_round(size_t bytes)
{
    return (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

#endif
