/* PNG and JPEG decoding through image_read (libpng/libjpeg with our error
 * handling), then the ADM centre crop the image-folder loader applies. */
#include "common.h"
#include "data/image_folder.h"
#include "io/image.h"

#include <stdlib.h>

static void parse(void *path)
{
    image im = image_read(path, 0);
    uint8_t out[3 * 8 * 8];
    adm_center_crop(out, im.pixels, im.channels, im.height, im.width, 8);
    image_free(&im);
    im = image_read(path, 3);
    image_free(&im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
