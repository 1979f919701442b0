/* Per-thread scratch buffers (src/core/thread_scratch.c): grown, aligned,
 * kept while large enough, and released when their thread exits.  (Under
 * make test-asan, LeakSanitizer also sees any buffer a thread leaves.) */
#include <pthread.h>
#include <stdint.h>

#include "core/thread_scratch.h"
#include "test.h"

static _Thread_local thread_scratch buf;

static void test_reserve_grows_and_keeps(void)
{
    char *a = thread_scratch_reserve(&buf, 100, 64, "test");
    CHECK(a && (uintptr_t)a % 64 == 0 && buf.bytes == 100, "first reserve: %p, %zu bytes", (void *)a, buf.bytes);
    memset(a, 1, 100);
    char *b = thread_scratch_reserve(&buf, 60, 64, "test");
    CHECK(b == a && buf.bytes == 100, "a smaller request must reuse the buffer");
    b = thread_scratch_reserve(&buf, 100, 64, "test");
    CHECK(b == a && buf.bytes == 100 && b[99] == 1, "a request of the same size must reuse the buffer, contents kept");
    char *c = thread_scratch_reserve(&buf, 1 << 20, 256, "test");
    CHECK(c && (uintptr_t)c % 256 == 0 && buf.bytes == (1u << 20), "grown: %p, %zu bytes", (void *)c, buf.bytes);
    memset(c, 2, 1 << 20);
}

static int hooks_ran;
static void *data_at_exit = (void *)1;
static size_t bytes_at_exit = 1;

static void mark(void *arg) { *(int *)arg += 1; }

/* Registered before the buffer, so it runs after the buffer's release
 * (newest first) and sees what the release left, in the thread's TLS. */
static void record(void *arg)
{
    (void)arg;
    data_at_exit = buf.data;
    bytes_at_exit = buf.bytes;
    hooks_ran++;
}

static void *worker(void *arg)
{
    (void)arg;
    thread_scratch_at_exit(record, NULL);
    thread_scratch_reserve(&buf, 4096, 64, "test");
    thread_scratch_reserve(&buf, 8192, 64, "test");
    thread_scratch_at_exit(mark, &hooks_ran);
    return NULL;
}

static void test_released_at_thread_exit(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0 && pthread_join(t, NULL) == 0, "thread");
    CHECK(hooks_ran == 2, "the exit hooks ran %d times, expected 2", hooks_ran);
    CHECK(data_at_exit == NULL && bytes_at_exit == 0, "the worker's buffer was not released (%p, %zu bytes)",
          data_at_exit, bytes_at_exit);
    /* The main thread's buffer is its own, untouched by the worker's exit. */
    CHECK(buf.data && buf.bytes == (1u << 20), "the main thread's buffer changed");
}

static void *many_hooks(void *arg)
{
    for (int i = 0; i < 9; i++)
        thread_scratch_at_exit(mark, arg);
    return NULL;
}

static void run_many_hooks(void *ctx)
{
    int n = 0;
    pthread_t t;
    (void)ctx;
    if (pthread_create(&t, NULL, many_hooks, &n) == 0)
        pthread_join(t, NULL);
}

static void test_too_many_hooks_dies(void)
{
    expect_die("nine exit hooks", run_many_hooks, NULL, "more than 8 per-thread objects");
}

int main(void)
{
    RUN(test_reserve_grows_and_keeps);
    RUN(test_released_at_thread_exit);
    RUN(test_too_many_hooks_dies);
    return test_summary();
}
