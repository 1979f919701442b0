/* jsonl_lines.h — a JSON-lines file read one non-blank line at a time, for
 * the readers of metrics.jsonl (metrics_read) and of a comparison's
 * results.jsonl (results_read).
 *
 *   jsonl_reader r = jsonl_open(path);
 *   size_t len;
 *   for (char *line; (line = jsonl_next(&r, &len));)
 *       ... parse line (r.lineno is its 1-based number, for messages) ...
 *   jsonl_close(&r);
 *
 * A line holding a NUL byte, or a read error, dies naming the file (and the
 * line); blank lines are skipped. */
#ifndef REPAE_JSONL_LINES_H
#define REPAE_JSONL_LINES_H

#include <stddef.h>
#include <stdio.h>

typedef struct jsonl_reader {
    FILE *f;
    const char *path;
    char *line;
    size_t cap;
    long lineno;
} jsonl_reader;

jsonl_reader jsonl_open(const char *path);
/* The next non-blank line (valid until the next call) and its length, or
 * NULL at the end of the file. */
char *jsonl_next(jsonl_reader *r, size_t *len);
void jsonl_close(jsonl_reader *r);

#endif
