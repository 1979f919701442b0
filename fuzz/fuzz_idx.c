/* IDX (MNIST format), plain or gzipped. */
#include "common.h"
#include "io/idx.h"

static void parse(void *path)
{
    idx_array a = idx_read_u8(path);
    idx_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
