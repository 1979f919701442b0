/* PyTorch .pt/.pth (src/io/torch_file.c, zip_archive.c, pickle.c) through
 * weights_open, as every weights flag uses it: the zip and legacy
 * containers, the restricted unpickler, strided views; every tensor small
 * enough is read (F32 for float dtypes, I64 for the others), which also runs
 * the lazy CRC checks.  Seeds: the .pt files of tests/fixtures/io/ (both
 * formats, a checkpoint, malicious pickles). */
#include "common.h"
#include "io/safetensors.h"
#include "io/weights_file.h"

#include <stdlib.h>

static void parse(void *path)
{
    safetensors *st = weights_open(path);
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (t->numel > (1 << 18))
            continue; /* accepted but too big to read here; sizes are validated at open */
        void *buf = malloc((size_t)t->numel * 8 + 8);
        if (t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_F16 || t->dtype == ST_BF16)
            safetensors_read_f32(st, t, buf);
        else
            safetensors_read_i64(st, t, buf);
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
