#ifndef REPAE_THREAD_SCRATCH_H
#define REPAE_THREAD_SCRATCH_H

#include <stddef.h>

/* A buffer owned by one thread, grown to the largest request it has seen and
 * kept for the thread's life (the GEMM's packing buffers, oneDNN's scratch,
 * GroupNorm's backward).  Declare it `static _Thread_local thread_scratch`.
 * When the thread exits (an OpenMP team that shrinks, a nested team's
 * workers) its buffers are freed; the main thread's go with the process.
 * Contents are not kept across a grow. */
typedef struct thread_scratch {
    void *data;
    size_t bytes;
} thread_scratch;

/* At least `bytes` bytes aligned to `align` (a power of two, at least
 * sizeof(void *)); dies naming `what` when memory runs out. */
void *thread_scratch_reserve(thread_scratch *s, size_t bytes, size_t align, const char *what);

/* Runs fn(arg) when the calling thread exits (not at process exit), for
 * per-thread objects other than buffers (oneDNN's streams). */
void thread_scratch_at_exit(void (*fn)(void *), void *arg);

#endif
