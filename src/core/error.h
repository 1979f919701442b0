/* error.h — fatal errors, checked allocation and checked file I/O.
 *
 * repae is a program, not a long-lived service: on bad input it prints one
 * clear message (what went wrong, which file or flag, and a hint) and exits
 * with status 1.  Every helper here reports the caller's file and line, so a
 * message from deep inside a loader still says where it came from.
 *
 *   float *w = xmalloc(n * sizeof *w);          // never returns NULL
 *   FILE *f = xfopen(path, "rb");               // "cannot open 'x': No such file"
 *   xfread(buf, 1, n, f, path);                 // "'x': truncated (wanted ...)"
 *   if (bad) die("'%s': header length %llu is past the end", path, len);
 */
#ifndef REPAE_ERROR_H
#define REPAE_ERROR_H

#include <stddef.h>
#include <stdio.h>

/* Prints "repae: error: <message>" and exits 1. */
#define die(...) die_at(__FILE__, __LINE__, __VA_ARGS__)
void die_at(const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Prints "repae: warning: <message>" and continues. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define xmalloc(n) xmalloc_at(__FILE__, __LINE__, (n))
#define xcalloc(n, s) xcalloc_at(__FILE__, __LINE__, (n), (s))
#define xrealloc(p, n) xrealloc_at(__FILE__, __LINE__, (p), (n))
#define xstrdup(s) xstrdup_at(__FILE__, __LINE__, (s))
void *xmalloc_at(const char *f, int l, size_t n);
void *xcalloc_at(const char *f, int l, size_t n, size_t size);
void *xrealloc_at(const char *f, int l, void *p, size_t n);
char *xstrdup_at(const char *f, int l, const char *s);

/* Checked stdio: the path is only used for the message.  Reading modes
 * refuse anything but a regular file (a FIFO would block forever, a
 * directory or a device is never a valid input); writing refuses an existing
 * FIFO, socket or directory. */
#define xfopen(path, mode) xfopen_at(__FILE__, __LINE__, (path), (mode))
#define xfread(p, size, n, fp, path) xfread_at(__FILE__, __LINE__, (p), (size), (n), (fp), (path))
#define xfwrite(p, size, n, fp, path) xfwrite_at(__FILE__, __LINE__, (p), (size), (n), (fp), (path))
#define xfclose(fp, path) xfclose_at(__FILE__, __LINE__, (fp), (path))
FILE *xfopen_at(const char *f, int l, const char *path, const char *mode);
/* The same check for readers that need a file descriptor (gzdopen, mmap):
 * an O_RDONLY | O_CLOEXEC descriptor of a regular file. */
#define xopen_read(path) xopen_read_at(__FILE__, __LINE__, (path))
int xopen_read_at(const char *f, int l, const char *path);
void xfread_at(const char *f, int l, void *p, size_t size, size_t n, FILE *fp, const char *path);
void xfwrite_at(const char *f, int l, const void *p, size_t size, size_t n, FILE *fp, const char *path);
void xfclose_at(const char *f, int l, FILE *fp, const char *path);

/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience);
 * *size_out gets the byte count.  Dies with the path on any error. */
char *read_file_all(const char *path, size_t *size_out);

/* Writes a file atomically: to "<path>.tmp", fsync, rename over path, fsync
 * the directory.  A crash leaves either the old file or the new one. */
typedef struct atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} atomic_file;
atomic_file atomic_file_open(const char *path);
void atomic_file_commit(atomic_file *af);

#ifdef REPAE_FUZZ
/* Fuzz builds only: when set, die() calls it with the message first; it must
 * not return (it longjmps back to the harness). */
extern void (*die_fuzz_handler)(const char *message);
#endif

#endif
