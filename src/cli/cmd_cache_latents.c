/* repae cache-latents — encode a dataset once with a frozen VAE (spec §6.4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/train_setup.h"
#include "core/error.h"
#include "core/options.h"
#include "data/latent_cache.h"

static const char *usage =
    "usage: repae cache-latents --vae-ckpt VAE.safetensors --output LATENTS.safetensors [options]\n"
    "\n"
    "Encodes every image with the frozen VAE and stores its posterior mean and\n"
    "std (and the labels), so that `repae train-ldm` trains a SiT without\n"
    "running the encoder.  The VAE is loaded strictly, as cache_latents.py does.";

int cmd_cache_latents(int argc, char **argv)
{
    const char *vae_ckpt, *output, *data, *split;
    int batch, image_size, channels, max_images;
    option_spec opts[] = {
        {"--vae-ckpt", OPT_STRING, &vae_ckpt, NULL, "the VAE (.safetensors, .pt/.pth or a diffusers folder; configuration read from it)"},
        {"--output", OPT_STRING, &output, NULL, "the latent cache to write"},
        {"--data", OPT_STRING, &data, "fashion-mnist", "'fashion-mnist' or a shard from 'repae prepare'"},
        {"--data-split", OPT_CHOICE, &split, "train", "Fashion-MNIST split", .choices = "train|test"},
        {"--image-size", OPT_INT, &image_size, "32", "Fashion-MNIST images are padded to this size", .min = 28,
         .max = 1024},
        {"--channels", OPT_INT, &channels, "1", "Fashion-MNIST channels (1 or 3)", .min = 1, .max = 3},
        {"--max-images", OPT_INT, &max_images, "0", "only the first N images (0 = all)", .min = 0, .max = 1e9},
        {"--batch-size", OPT_INT, &batch, "128", "images per encoder batch", .min = 1, .max = 65536},
    };
    int rest = options_parse("cache-latents", usage, opts, N_OPTS(opts), argc, argv);
    if (rest != 1)
        die("cache-latents: unexpected argument '%s'", argv[1]);
    if (!vae_ckpt || !output)
        die("cache-latents: --vae-ckpt and --output are required (see --help)");
    train_options o = {.data = data, .data_split = split, .image_size = image_size, .channels = channels,
                       .max_images = max_images};
    train_data d;
    train_setup_data(&o, &d);
    vae v;
    float *vw = vae_from_file(&v, vae_ckpt, "", PARAM_STRICT);
    latent_cache_build(output, &v, vw, &d.ds, batch, vae_ckpt);
    printf("%s: %d latents\n", output, d.ds.n);
    vae_free(&v);
    free(vw);
    train_data_free(&d);
    return 0;
}
