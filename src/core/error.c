#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Internal source locations help developers; users see them only with
 * REPAE_DEBUG set, so messages stay about their files and flags. */
static void print_location(const char *src_file, int src_line)
{
    if (getenv("REPAE_DEBUG"))
        fprintf(stderr, " [%s:%d]", src_file, src_line);
}

#ifdef REPAE_FUZZ
/* Fuzz builds only (fuzz/fuzz_common.c sets it): the handler gets the
 * message and longjmps back to the harness, so one process can run a
 * million inputs.  The product is compiled without REPAE_FUZZ and always
 * exits. */
void (*die_fuzz_handler)(const char *message);
#endif

void die_at(const char *src_file, int src_line, const char *fmt, ...)
{
    va_list ap;
#ifdef REPAE_FUZZ
    if (die_fuzz_handler) {
        char msg[1024];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        die_fuzz_handler(msg);
    }
#endif
    fflush(stdout);
    fputs("repae: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    print_location(src_file, src_line);
    fputc('\n', stderr);
    exit(1);
}

void warn(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("repae: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void *xmalloc_at(const char *f, int l, size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_at(f, l, "out of memory allocating %zu bytes (try a smaller batch or model)", n);
    return p;
}

void *xcalloc_at(const char *f, int l, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die_at(f, l, "out of memory allocating %zu x %zu bytes (try a smaller batch or model)", n, size);
    return p;
}

void *xrealloc_at(const char *f, int l, void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die_at(f, l, "out of memory reallocating to %zu bytes", n);
    return q;
}

char *xstrdup_at(const char *f, int l, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc_at(f, l, n);
    memcpy(p, s, n);
    return p;
}

/* What a non-regular file is, for the message. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" : S_ISSOCK(m) ? "a socket"
           : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : "not a regular file";
}

int xopen_read_at(const char *f, int l, const char *path)
{
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever
     * before fstat could tell what it is. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        die_at(f, l, "cannot open '%s' (for reading): %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        die_at(f, l, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        die_at(f, l, "'%s' is %s, not a regular file", path, file_kind(sb.st_mode));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        die_at(f, l, "'%s': cannot set blocking mode: %s", path, strerror(e));
    }
    return fd;
}

FILE *xfopen_at(const char *f, int l, const char *path, const char *mode)
{
    if (mode[0] == 'r') {
        int fd = xopen_read_at(f, l, path);
        FILE *fp = fdopen(fd, mode);
        if (!fp) {
            int e = errno;
            close(fd);
            die_at(f, l, "cannot open '%s' (for reading): %s", path, strerror(e));
        }
        return fp;
    }
    /* An output that exists must not block (FIFO, socket); /dev/null is fine. */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISCHR(sb.st_mode))
        die_at(f, l, "cannot open '%s' for writing: it is %s, not a regular file", path, file_kind(sb.st_mode));
    FILE *fp = fopen(path, mode);
    if (!fp)
        die_at(f, l, "cannot open '%s' (%s): %s", path,
               mode[0] == 'r' ? "for reading" : "for writing", strerror(errno));
    return fp;
}

void xfread_at(const char *f, int l, void *p, size_t size, size_t n, FILE *fp, const char *path)
{
    size_t got = fread(p, size, n, fp);
    if (got != n) {
        if (ferror(fp))
            die_at(f, l, "'%s': read error: %s", path, strerror(errno));
        die_at(f, l, "'%s': file is truncated (wanted %zu more bytes, got %zu)", path, size * n, size * got);
    }
}

void xfwrite_at(const char *f, int l, const void *p, size_t size, size_t n, FILE *fp, const char *path)
{
    if (!size || !n) /* an empty array may come as NULL, which fwrite must not see */
        return;
    if (fwrite(p, size, n, fp) != n)
        die_at(f, l, "'%s': write failed: %s (disk full?)", path, strerror(errno));
}

void xfclose_at(const char *f, int l, FILE *fp, const char *path)
{
    if (fclose(fp) != 0)
        die_at(f, l, "'%s': close failed: %s", path, strerror(errno));
}

char *read_file_all(const char *path, size_t *size_out)
{
    FILE *fp = xfopen(path, "rb");
    if (fseeko(fp, 0, SEEK_END) != 0)
        die("'%s': cannot seek: %s", path, strerror(errno));
    off_t size = ftello(fp);
    if (size < 0)
        die("'%s': cannot tell size: %s", path, strerror(errno));
    rewind(fp);
    char *buf = xmalloc((size_t)size + 1);
    xfread(buf, 1, (size_t)size, fp, path);
    buf[size] = 0;
    fclose(fp);
    *size_out = (size_t)size;
    return buf;
}

atomic_file atomic_file_open(const char *path)
{
    atomic_file af;
    af.path = xstrdup(path);
    af.tmp_path = xmalloc(strlen(path) + 5);
    sprintf(af.tmp_path, "%s.tmp", path);
    af.fp = xfopen(af.tmp_path, "wb");
    return af;
}

void atomic_file_commit(atomic_file *af)
{
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)
        die("'%s': cannot flush to disk: %s", af->tmp_path, strerror(errno));
    xfclose(af->fp, af->tmp_path);
    if (rename(af->tmp_path, af->path) != 0)
        die("cannot rename '%s' to '%s': %s", af->tmp_path, af->path, strerror(errno));
    /* The rename itself must reach the disk too. */
    char *dir_copy = xstrdup(af->path);
    int dfd = open(dirname(dir_copy), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir_copy);
    free(af->path);
    free(af->tmp_path);
    af->fp = NULL;
    af->path = af->tmp_path = NULL;
}
