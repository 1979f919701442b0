/* Per-thread buffers that do not outlive their thread.  A `_Thread_local`
 * pointer is forgotten when its thread exits, so each thread keeps a short
 * list of what to release, run by a pthread key's destructor (which glibc
 * calls on a thread's exit while its TLS is still there). */
#include "core/thread_scratch.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/error.h"

/* What one thread can own: five today (the GEMM's two packing buffers,
 * GroupNorm's backward scratch, oneDNN's scratch and stream). */
#define MAX_EXIT_HOOKS 8

typedef struct {
    void (*fn)(void *);
    void *arg;
} exit_hook;

typedef struct {
    exit_hook hooks[MAX_EXIT_HOOKS];
    int n;
} exit_list;

static _Thread_local exit_list thread_exit_list;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void run_exit_list(void *p)
{
    exit_list *l = p;
    for (int i = l->n - 1; i >= 0; i--)
        l->hooks[i].fn(l->hooks[i].arg);
    l->n = 0;
}

static void make_exit_key(void)
{
    if (pthread_key_create(&exit_key, run_exit_list) != 0)
        die("thread scratch: pthread_key_create failed");
}

void thread_scratch_at_exit(void (*fn)(void *), void *arg)
{
    pthread_once(&exit_key_once, make_exit_key);
    exit_list *l = &thread_exit_list;
    if (l->n == MAX_EXIT_HOOKS)
        die("thread scratch: more than %d per-thread objects (raise MAX_EXIT_HOOKS)", MAX_EXIT_HOOKS);
    l->hooks[l->n++] = (exit_hook){fn, arg};
    /* A key's destructor runs only for a non-NULL value. */
    if (pthread_setspecific(exit_key, l) != 0)
        die("thread scratch: pthread_setspecific failed");
}

static void release(void *p)
{
    thread_scratch *s = p;
    free(s->data);
    s->data = NULL;
    s->bytes = 0;
}

void *thread_scratch_reserve(thread_scratch *s, size_t bytes, size_t align, const char *what)
{
    if (bytes <= s->bytes)
        return s->data;
    /* A buffer goes on its thread's exit list with its first allocation. */
    if (s->data)
        free(s->data);
    else
        thread_scratch_at_exit(release, s);
    s->data = NULL;
    s->bytes = 0;
    void *p = NULL;
    if (posix_memalign(&p, align, bytes) != 0)
        die("out of memory: %zu bytes for %s", bytes, what);
    s->data = p;
    s->bytes = bytes;
    return p;
}
