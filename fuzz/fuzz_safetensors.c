/* safetensors: header JSON, offsets, dtypes, metadata; every tensor is read
 * as float32 (the F16/BF16/F64/I64 conversions) when small enough. */
#include "common.h"
#include "io/safetensors.h"

#include <stdlib.h>

static void parse(void *path)
{
    safetensors *st = safetensors_open(path);
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        safetensors_find(st, t->name);
        if (t->numel > (1 << 18))
            continue;
        float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        safetensors_read_f32(st, t, buf);
        free(buf);
    }
    for (int i = 0; i < st->n_meta; i++)
        safetensors_meta(st, st->meta[i].key);
    safetensors_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
