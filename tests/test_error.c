/* Fatal errors, checked allocation and checked file I/O (src/core/error.c):
 * the exact words of die() and warn() (and the source location only with
 * REPAE_DEBUG), out-of-memory messages, the readers' refusal of anything but
 * a regular file (a FIFO without a writer must not hang), the writers'
 * refusals, truncated reads, read_file_all, and atomic_file's
 * write-then-rename. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "test.h"

static void die_plain(void *arg)
{
    (void)arg;
    die("bad flag --%s: %d", "x", 42);
}

static void die_debug(void *arg)
{
    (void)arg;
    setenv("REPAE_DEBUG", "1", 1);
    die("with a location");
}

static void warn_only(void *arg)
{
    (void)arg;
    warn("careful %d", 7);
}

static void test_messages(void)
{
    char err[512];
    int rc = run_in_child(die_plain, NULL, err, sizeof err);
    CHECK(rc == 1 && !strcmp(err, "repae: error: bad flag --x: 42\n"), "die: status %d, stderr '%s'", rc, err);
    rc = run_in_child(die_debug, NULL, err, sizeof err);
    CHECK(rc == 1 && !strncmp(err, "repae: error: with a location [", 31) && strstr(err, "test_error.c:") &&
              err[strlen(err) - 2] == ']' && err[strlen(err) - 1] == '\n',
          "die with REPAE_DEBUG: status %d, stderr '%s'", rc, err);
    rc = run_in_child(warn_only, NULL, err, sizeof err);
    CHECK(rc == 0 && !strcmp(err, "repae: warning: careful 7\n"), "warn: status %d, stderr '%s'", rc, err);
}

static void malloc_huge(void *arg) { (void)arg, free(xmalloc(SIZE_MAX)); }
static void calloc_huge(void *arg) { (void)arg, free(xcalloc(SIZE_MAX / 2, 4)); }
static void realloc_huge(void *arg) { (void)arg, free(xrealloc(NULL, SIZE_MAX)); }

static void test_allocation(void)
{
    char *s = xstrdup("weights.pt");
    CHECK(!strcmp(s, "weights.pt"), "xstrdup copied '%s'", s);
    free(s);
    void *p = xmalloc(0), *q = xcalloc(0, 0), *r = xrealloc(NULL, 0); /* zero bytes: a pointer, not NULL */
    CHECK(p && q && r, "zero-byte allocations returned NULL");
    free(p), free(q), free(r);
    /* Under AddressSanitizer a request this large aborts in its allocator instead of returning NULL. */
    if (getenv("ASAN_OPTIONS"))
        return;
    expect_die("xmalloc(SIZE_MAX)", malloc_huge, NULL,
               "out of memory allocating 18446744073709551615 bytes (try a smaller batch or model)");
    expect_die("xcalloc(SIZE_MAX / 2, 4)", calloc_huge, NULL,
               "out of memory allocating 9223372036854775807 x 4 bytes (try a smaller batch or model)");
    expect_die("xrealloc(NULL, SIZE_MAX)", realloc_huge, NULL,
               "out of memory reallocating to 18446744073709551615 bytes");
}

static void open_for_reading(void *arg) { fclose(xfopen((const char *)arg, "rb")); }
static void open_fd_for_reading(void *arg) { close(xopen_read((const char *)arg)); }
static void open_for_writing(void *arg) { fclose(xfopen((const char *)arg, "wb")); }

static void read_eight(void *arg)
{
    const char *path = arg;
    char buf[8];
    FILE *fp = xfopen(path, "rb");
    xfread(buf, 1, 8, fp, path);
    fclose(fp);
}

static void test_files(void)
{
    const char *dir = test_tmp_dir("error");
    const char *missing = test_tmp_path("missing.bin"), *fifo = test_tmp_path("pipe");
    char want[512];
    snprintf(want, sizeof want, "cannot open '%s' (for reading): No such file or directory", missing);
    expect_die("a missing file", open_for_reading, (void *)missing, want);
    expect_die("a missing file by descriptor", open_fd_for_reading, (void *)missing, want);
    snprintf(want, sizeof want, "'%s' is a directory, not a regular file", dir);
    expect_die("a directory", open_for_reading, (void *)dir, want);
    expect_die("a directory by descriptor", open_fd_for_reading, (void *)dir, want);
    expect_die("a character device", open_for_reading, "/dev/null",
               "'/dev/null' is a character device, not a regular file");
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    snprintf(want, sizeof want, "'%s' is a FIFO (named pipe), not a regular file", fifo);
    expect_die("a FIFO without a writer (must not hang)", open_for_reading, (void *)fifo, want);
    snprintf(want, sizeof want, "cannot open '%s' for writing: it is a FIFO (named pipe), not a regular file", fifo);
    expect_die("writing into a FIFO", open_for_writing, (void *)fifo, want);
    snprintf(want, sizeof want, "cannot open '%s' for writing: it is a directory, not a regular file", dir);
    expect_die("writing onto a directory", open_for_writing, (void *)dir, want);
    CHECK(run_in_child(open_for_writing, "/dev/null", NULL, 0) == 0, "writing to /dev/null is allowed");
    const char *in_missing_dir = test_tmp_path("no/such/dir.bin");
    snprintf(want, sizeof want, "cannot open '%s' (for writing): No such file or directory", in_missing_dir);
    expect_die("writing in a missing folder", open_for_writing, (void *)in_missing_dir, want);

    const char *three = test_write_tmp("three.bin", "abc", 3);
    snprintf(want, sizeof want, "'%s': file is truncated (wanted 8 more bytes, got 3)", three);
    expect_die("a short read", read_eight, (void *)three, want);
    size_t n = 99;
    char *all = read_file_all(three, &n);
    CHECK(n == 3 && !memcmp(all, "abc", 4), "read_file_all: %zu bytes '%s'", n, all);
    free(all);
    all = read_file_all(test_write_tmp("empty.bin", "", 0), &n);
    CHECK(n == 0 && all[0] == 0, "read_file_all of an empty file: %zu bytes", n);
    free(all);
    FILE *fp = xfopen(test_tmp_path("nothing.bin"), "wb");
    xfwrite(NULL, 4, 0, fp, "nothing.bin"); /* an empty array may come as NULL */
    xfwrite(NULL, 0, 4, fp, "nothing.bin");
    xfclose(fp, "nothing.bin");
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* The new bytes go to "<path>.tmp"; the old file stays whole until the
 * commit renames the temporary over it. */
static void test_atomic_file(void)
{
    const char *path = test_write_tmp("model.safetensors", "old!", 4);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    atomic_file af = atomic_file_open(path);
    CHECK(!strcmp(af.path, path) && !strcmp(af.tmp_path, tmp), "paths '%s' '%s'", af.path, af.tmp_path);
    xfwrite("new contents", 1, 12, af.fp, af.tmp_path);
    CHECK(file_size(path) == 4 && file_size(tmp) >= 0, "before the commit: the old file (%ld bytes) and a temporary",
          file_size(path));
    atomic_file_commit(&af);
    CHECK(af.fp == NULL && af.path == NULL && af.tmp_path == NULL, "commit releases the handle");
    CHECK(file_size(tmp) == -1, "the temporary is gone after the commit");
    size_t n;
    char *got = read_file_all(path, &n);
    CHECK(n == 12 && !memcmp(got, "new contents", 12), "after the commit: %zu bytes", n);
    free(got);
}

/* /dev/full takes the bytes into stdio's buffer and fails when they reach
 * it: a write larger than the buffer fails in xfwrite, a small one when
 * xfclose flushes it. */
static void write_to_full(void *arg)
{
    (void)arg;
    static char big[1 << 17];
    FILE *fp = xfopen("/dev/full", "wb");
    xfwrite(big, 1, sizeof big, fp, "/dev/full");
}

static void close_on_full(void *arg)
{
    (void)arg;
    FILE *fp = xfopen("/dev/full", "wb");
    xfwrite("abc", 1, 3, fp, "/dev/full");
    xfclose(fp, "/dev/full");
}

/* atomic_file over a folder: the temporary is written, the rename fails. */
static void commit_onto_folder(void *arg)
{
    atomic_file af = atomic_file_open((const char *)arg);
    xfwrite("x", 1, 1, af.fp, af.tmp_path);
    atomic_file_commit(&af);
}

static void test_write_failures(void)
{
    struct stat sb;
    if (stat("/dev/full", &sb) != 0 || !S_ISCHR(sb.st_mode)) {
        printf("     (no /dev/full here: the full-disk messages are not checked)\n");
    } else {
        expect_die("a write to a full disk", write_to_full, NULL,
                   "'/dev/full': write failed: No space left on device (disk full?)");
        expect_die("a close that flushes to a full disk", close_on_full, NULL,
                   "'/dev/full': close failed: No space left on device");
    }
    const char *folder = test_tmp_path("folder");
    CHECK(mkdir(folder, 0700) == 0 && mkdir(test_tmp_path("folder/inside"), 0700) == 0, "mkdir %s", folder);
    char want[512];
    snprintf(want, sizeof want, "cannot rename '%s.tmp' to '%s': ", folder, folder);
    expect_die("a commit onto a folder", commit_onto_folder, (void *)folder, want);
}

int main(void)
{
    RUN(test_messages);
    RUN(test_allocation);
    RUN(test_files);
    RUN(test_atomic_file);
    RUN(test_write_failures);
    return test_summary();
}
