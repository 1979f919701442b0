/* dataset.h — labelled uint8 image datasets held in memory.
 *
 * Every source (Fashion-MNIST IDX files, image folders, our packed shards)
 * becomes the same thing: N images [N, C, H, W] uint8 and N labels.  Small
 * datasets for a CPU fit in memory; `repae prepare` packs a larger image
 * folder once into a shard so training never decodes JPEG in the loop.
 *
 * Shard file (little-endian): "REPAESHD", u32 version (1), u32 N, C, H, W,
 * u32 num_classes, then N·C·H·W pixels, then N int32 labels.
 */
#ifndef REPAE_DATASET_H
#define REPAE_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct dataset {
    int n, channels, height, width;
    int num_classes;
    uint8_t *images; /* [N, C, H, W] */
    int32_t *labels; /* [N], in [0, num_classes) */
    char *source;    /* path or description, for messages */
} dataset;

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Fashion-MNIST split "train" (60k) or "test" (10k) from `dir`, zero-padded
 * from 28×28 to size×size (size >= 28), replicated to `channels` (1 or 3). */
dataset dataset_fashion_mnist(const char *dir, const char *split, int size, int channels);
/* The same, keeping only the first max_images (> 0) before padding. */
dataset dataset_fashion_mnist_first(const char *dir, const char *split, int size, int channels, int max_images);
/* Zeroed storage for n images of bytes_per_image; dies naming `source` and
 * suggesting `hint` when it exceeds the machine's memory. */
uint8_t *dataset_alloc_images(size_t n, size_t bytes_per_image, const char *source, const char *hint);
dataset dataset_read_shard(const char *path);
/* What a --data flag names: "fashion-mnist" (the given split, padded to
 * size, replicated to channels) or a shard from `repae prepare`; at most
 * max_images (0: all), applied before padding. */
dataset dataset_open(const char *name, const char *split, int size, int channels, int max_images);
void dataset_write_shard(const dataset *d, const char *path); /* atomic */
/* Keeps the first n images (tests, quick runs). */
void dataset_truncate(dataset *d, int n);
/* Checks labels are in range; dies naming the source and the first bad index. */
void dataset_validate(const dataset *d);
void dataset_free(dataset *d);

#endif
