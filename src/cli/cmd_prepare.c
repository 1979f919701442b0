/* repae prepare — pack a dataset once into a shard (and/or an ADM .npz), so
 * training never decodes images in its loop and evaluation has a reference
 * batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/options.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "io/npz.h"

static const char *usage =
    "usage: repae prepare --data fashion-mnist|FOLDER [--output OUT.shard] [--npz OUT.npz] [options]\n"
    "\n"
    "Fashion-MNIST (Debian's dataset-fashion-mnist) is padded to --resolution.\n"
    "A folder (one sub-folder per class, PNG/JPEG, found recursively and sorted\n"
    "by path) gets the reference's ADM centre crop at --resolution (spec §1.1).\n"
    "--output writes a repae shard for `repae train --data`; --npz writes the\n"
    "images as an ADM batch (arr_0, uint8 NHWC; grey images as 3 channels unless\n"
    "--no-rgb) to use as `repae eval --ref`.";

int cmd_prepare(int argc, char **argv)
{
    const char *data, *split, *output, *npz;
    int resolution, channels, max_images;
    bool no_rgb;
    option_spec opts[] = {
        {"--data", OPT_STRING, &data, NULL, "'fashion-mnist' or an image folder"},
        {"--data-split", OPT_CHOICE, &split, "train", "Fashion-MNIST split", .choices = "train|test"},
        {"--resolution", OPT_INT, &resolution, "32", "output size (pad for Fashion-MNIST, ADM crop for folders)",
         .min = 1, .max = 4096},
        {"--channels", OPT_INT, &channels, "1", "1 (grey) or 3 (RGB)", .min = 1, .max = 3},
        {"--max-images", OPT_INT, &max_images, "0", "only the first N images (0 = all)", .min = 0, .max = 1e9},
        {"--output", OPT_STRING, &output, NULL, "the shard to write"},
        {"--npz", OPT_STRING, &npz, NULL, "an ADM .npz batch to write"},
        {"--no-rgb", OPT_FLAG, &no_rgb, NULL, "keep grey images 1-channel in the .npz"},
    };
    if (options_parse("prepare", usage, opts, N_OPTS(opts), argc, argv) != 1)
        die("prepare: unexpected argument '%s'", argv[1]);
    if (!data)
        die("prepare: --data is required (see --help)");
    if (!output && !npz)
        die("prepare: give --output and/or --npz");
    if (channels == 2)
        die("prepare --channels: 1 or 3");
    dataset d = !strcmp(data, "fashion-mnist")
                    ? dataset_fashion_mnist_first(FASHION_MNIST_DIR, split, resolution, channels, max_images)
                    : dataset_image_folder(data, resolution, channels, max_images);
    if (output) {
        dataset_write_shard(&d, output);
        printf("%s: %d images %dx%dx%d, %d classes\n", output, d.n, d.channels, d.height, d.width, d.num_classes);
    }
    if (npz) {
        int C = (d.channels == 1 && !no_rgb) ? 3 : d.channels, R = d.height;
        size_t hw = (size_t)R * R, img = (size_t)C * hw;
        uint8_t *nhwc = xmalloc((size_t)d.n * img);
        for (int i = 0; i < d.n; i++)
            for (size_t p = 0; p < hw; p++)
                for (int c = 0; c < C; c++)
                    nhwc[(size_t)i * img + p * C + c] =
                        d.images[((size_t)i * d.channels + (d.channels == 1 ? 0 : c)) * hw + p];
        npz_save(npz, "arr_0", NPZ_U8, 4, (int64_t[]){d.n, R, R, C}, nhwc);
        free(nhwc);
        printf("%s: arr_0 uint8 [%d, %d, %d, %d]\n", npz, d.n, R, R, C);
    }
    dataset_free(&d);
    return 0;
}
