/* path.h — file-system paths as heap strings (no fixed-size buffers, so a
 * long --output-dir is never silently truncated) and `mkdir -p`.
 *
 *   char *p = path_printf("%s/%07lld.safetensors", dir, step);   // free(p)
 *   make_dirs("exps/run/checkpoints");
 */
#ifndef REPAE_PATH_H
#define REPAE_PATH_H

#include <stddef.h>

/* malloc'd printf; dies if out of memory. */
char *path_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* snprintf into a fixed buffer, dying (with the start of the path) when it
 * does not fit: a truncated path would name another file. */
void path_format(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* mkdir -p; dies naming the path. */
void make_dirs(const char *path);

#endif
