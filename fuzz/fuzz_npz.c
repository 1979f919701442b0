/* npz/npy: the zip structure (ZIP64, deflate), .npy headers, whole-array
 * and row reads with CRC checks. */
#include "common.h"
#include "io/npz.h"

#include <stdlib.h>

static void parse(void *path)
{
    npz_file *z = npz_open(path);
    for (int i = 0; i < z->n_entries; i++) {
        const npz_entry *e = &z->entries[i];
        if (e->dtype == NPZ_OTHER || e->fortran_order || e->nbytes > (1u << 20))
            continue;
        void *buf = malloc(e->nbytes ? e->nbytes : 1);
        npz_read(z, e, buf);
        if (e->method == 0 && e->ndim >= 1 && e->shape[0] > 0)
            npz_read_rows(z, e, e->shape[0] - 1, 1, buf);
        free(buf);
    }
    npz_close(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
