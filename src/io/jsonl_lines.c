#include "io/jsonl_lines.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/error.h"

jsonl_reader jsonl_open(const char *path)
{
    jsonl_reader r = {.f = xfopen(path, "r"), .path = path};
    return r;
}

char *jsonl_next(jsonl_reader *r, size_t *len)
{
    ssize_t n;
    while ((n = getline(&r->line, &r->cap, r->f)) > 0) {
        r->lineno++;
        if (memchr(r->line, 0, (size_t)n))
            die("'%s': line %ld contains a NUL byte (not a text file?)", r->path, r->lineno);
        bool blank = true;
        for (ssize_t i = 0; i < n && blank; i++)
            blank = isspace((unsigned char)r->line[i]);
        if (!blank) {
            *len = (size_t)n;
            return r->line;
        }
    }
    if (ferror(r->f))
        die("'%s': read error", r->path);
    return NULL;
}

void jsonl_close(jsonl_reader *r)
{
    free(r->line);
    fclose(r->f);
    memset(r, 0, sizeof *r);
}
