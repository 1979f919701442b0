#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

arena arena_create(size_t capacity)
{
    arena a = {0};
    capacity = arena_round(capacity);
    if (capacity) {
        a.base = aligned_alloc(ARENA_ALIGN, capacity);
        if (!a.base)
            die("out of memory creating a %.1f MiB workspace (try a smaller batch)", capacity / 1048576.0);
    }
    a.capacity = capacity;
    return a;
}

void arena_free(arena *a)
{
    free(a->base);
    *a = (arena){0};
}

void *arena_alloc(arena *a, size_t bytes)
{
    size_t need = arena_round(bytes);
    if (need > a->capacity - a->used)
        die("internal: workspace too small (%zu bytes used of %zu, %zu more requested); "
            "the planning pass under-counted, please report this",
            a->used, a->capacity, need);
    void *p = a->base + a->used;
    a->used += need;
    if (a->used > a->high_water)
        a->high_water = a->used;
    return p;
}

float *arena_floats(arena *a, size_t n) { return arena_alloc(a, n * sizeof(float)); }

float *arena_zeros(arena *a, size_t n)
{
    float *p = arena_floats(a, n);
    memset(p, 0, n * sizeof(float));
    return p;
}

void arena_reset(arena *a, size_t mark)
{
    if (mark > a->used)
        die("internal: arena reset to a mark (%zu) past the current top (%zu)", mark, a->used);
    a->used = mark;
}
