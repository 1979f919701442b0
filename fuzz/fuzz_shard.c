/* repae's packed dataset shards (header, pixels, labels). */
#include "common.h"
#include "data/dataset.h"

static void parse(void *path)
{
    dataset d = dataset_read_shard(path);
    dataset_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
