#include "io/labels.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

int *labels_parse(const char *arg, const char *flag, int *count)
{
    char *text;
    int is_list = arg[0] != 0;
    for (const char *p = arg; *p; p++)
        if (!(*p == ',' || (*p >= '0' && *p <= '9') || *p == ' '))
            is_list = 0;
    if (is_list)
        text = xstrdup(arg);
    else {
        if (access(arg, F_OK) != 0)
            die("%s: '%s' is neither a comma-separated list of labels nor an existing file", flag, arg);
        size_t len;
        text = read_file_all(arg, &len); /* refuses a directory or FIFO, naming it */
        if (strlen(text) != len)
            die("%s: '%s' contains a NUL byte (not a text file of labels?)", flag, arg);
    }
    int n = 0, cap = 1024;
    int *v = xmalloc((size_t)cap * sizeof(int));
    char *p = text;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            p++;
        if (!*p)
            break;
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x >= 1 << 30)
            die("%s: '%.20s' in '%s' is not a non-negative integer below 2^30", flag, p, arg);
        if (n == cap)
            v = xrealloc(v, (size_t)(cap *= 2) * sizeof(int));
        v[n++] = (int)x;
        p = end;
    }
    free(text);
    if (n == 0)
        die("%s: no labels in '%s'", flag, arg);
    *count = n;
    return v;
}
