/* repae inspect FILE.safetensors — what is in a weights or fixture file. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "io/safetensors.h"

static const char *help =
    "usage: repae inspect FILE.safetensors\n"
    "\n"
    "Lists every tensor (name, dtype, shape, element count), the total number\n"
    "of elements, and the file's __metadata__ entries.\n";

int cmd_inspect(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(help, stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fputs(help, stderr);
        die("inspect: expected exactly one FILE argument%s%s", argc > 1 && argv[1][0] == '-' ? ", got option " : "",
            argc > 1 && argv[1][0] == '-' ? argv[1] : "");
    }
    safetensors *st = safetensors_open(argv[1]);
    /* Sorted by name reads better than by offset. */
    int n = st->n_tensors;
    const st_tensor **order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = &st->tensors[i];
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(order[j - 1]->name, order[j]->name) > 0; j--) {
            const st_tensor *t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int64_t total = 0;
    size_t width = 4;
    for (int i = 0; i < n; i++)
        if (strlen(order[i]->name) > width)
            width = strlen(order[i]->name);
    printf("%s: %d tensors\n", argv[1], n);
    for (int i = 0; i < n; i++) {
        char shape[160];
        printf("  %-*s  %-4s  %-20s  %" PRId64 "\n", (int)width, order[i]->name, st_dtype_name(order[i]->dtype),
               st_shape_str(order[i]->ndim, order[i]->shape, shape, sizeof shape), order[i]->numel);
        total += order[i]->numel;
    }
    printf("total: %" PRId64 " elements (%.2f M)\n", total, total / 1e6);
    if (st->n_meta) {
        printf("metadata:\n");
        for (int i = 0; i < st->n_meta; i++)
            printf("  %s = %s\n", st->meta[i].key, st->meta[i].value);
    }
    free(order);
    safetensors_close(st);
    return 0;
}
