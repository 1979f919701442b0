/* The bump allocator every planned workspace lives in (src/core/arena.c):
 * capacities and allocations rounded to 64-byte lines and aligned to them,
 * marks and resets, the high-water mark the plan tests read, zeroed
 * allocations, and the three ways to get it wrong dying with their numbers
 * (an allocation past the capacity, a reset past the top, a capacity the
 * machine cannot give). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "test.h"

static void test_rounding_marks_and_high_water(void)
{
    arena a = arena_create(100);
    CHECK(a.capacity == 128 && a.used == 0 && a.high_water == 0 && (uintptr_t)a.base % ARENA_ALIGN == 0,
          "arena of 100 bytes: capacity %zu, base %p", a.capacity, (void *)a.base);
    char *p = arena_alloc(&a, 1);
    size_t mark = arena_mark(&a);
    CHECK(p == a.base && mark == 64 && a.high_water == 64, "one byte takes one line: mark %zu", mark);
    float *z = arena_zeros(&a, 16);
    CHECK((char *)z == a.base + 64 && a.used == 128 && a.high_water == 128, "16 floats: used %zu", a.used);
    int zero = 1;
    for (int i = 0; i < 16; i++)
        zero &= z[i] == 0.0f;
    CHECK(zero, "arena_zeros did not zero");
    arena_reset(&a, mark);
    CHECK(a.used == 64 && a.high_water == 128, "after a reset: used %zu, high water %zu", a.used, a.high_water);
    memset(arena_floats(&a, 16), 0xff, 64); /* the line again, not zeroed this time */
    z = arena_zeros(&a, 0);
    CHECK(a.used == 128 && a.high_water == 128, "a zero-size allocation takes nothing: used %zu", a.used);
    arena_reset(&a, 0);
    CHECK(a.used == 0 && a.high_water == 128, "reset to the start");
    arena_free(&a);
    CHECK(a.base == NULL && a.capacity == 0, "freed");
    arena e = arena_create(0);
    CHECK(e.capacity == 0 && arena_mark(&e) == 0, "an empty arena");
    arena_free(&e);
}

static void past_capacity(void *ctx)
{
    (void)ctx;
    arena a = arena_create(128);
    arena_alloc(&a, 64);
    arena_alloc(&a, 65); /* 128 more */
}

static void reset_past_top(void *ctx)
{
    (void)ctx;
    arena a = arena_create(256);
    arena_alloc(&a, 64);
    arena_reset(&a, 192);
}

static void too_large(void *ctx)
{
    (void)ctx;
    arena_create((size_t)1 << 60);
}

static void test_misuse_dies(void)
{
    expect_die("past the capacity", past_capacity, NULL,
               "internal: workspace too small (64 bytes used of 128, 128 more requested)");
    expect_die("reset past the top", reset_past_top, NULL, "arena reset to a mark (192) past the current top (64)");
    /* Under AddressSanitizer a request this large aborts in its allocator instead of returning NULL. */
    if (!getenv("ASAN_OPTIONS"))
        expect_die("2^60 bytes", too_large, NULL, "out of memory creating a 1099511627776.0 MiB workspace");
}

int main(void)
{
    RUN(test_rounding_marks_and_high_water);
    RUN(test_misuse_dies);
    return test_summary();
}
