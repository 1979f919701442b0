/* Latent caches (safetensors with mean, std, labels) as train-ldm reads them. */
#include "common.h"
#include "data/latent_cache.h"

static void parse(void *path)
{
    latent_cache c = latent_cache_read(path);
    latent_cache_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
