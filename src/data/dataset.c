#include "data/dataset.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/idx.h"

#define SHARD_MAGIC "REPAESHD"
#define SHARD_VERSION 1u

uint8_t *dataset_alloc_images(size_t n, size_t bytes_per_image, const char *source, const char *hint)
{
    /* Linux overcommits: a malloc larger than the machine may succeed and
     * the process die later, killed while filling it.  Compare first. */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double need = (double)n * (double)bytes_per_image, have = pages > 0 && page > 0 ? (double)pages * page : 0;
    if ((have > 0 && need > have) || (bytes_per_image && n > SIZE_MAX / bytes_per_image))
        die("'%s': %zu images of %zu bytes need %.1f GB, more than this machine's %.1f GB of memory (%s)", source, n,
            bytes_per_image, need / 1e9, have / 1e9, hint);
    uint8_t *p = calloc(n ? n : 1, bytes_per_image ? bytes_per_image : 1);
    if (!p)
        die("'%s': out of memory allocating %.1f GB for %zu images (%s)", source, need / 1e9, n, hint);
    return p;
}

dataset dataset_fashion_mnist(const char *dir, const char *split, int size, int channels)
{
    return dataset_fashion_mnist_first(dir, split, size, channels, 0);
}

dataset dataset_fashion_mnist_first(const char *dir, const char *split, int size, int channels, int max_images)
{
    const char *prefix;
    if (!strcmp(split, "train"))
        prefix = "train";
    else if (!strcmp(split, "test"))
        prefix = "t10k";
    else
        die("Fashion-MNIST split must be 'train' or 'test', not '%s'", split);
    if (size < 28 || size > 4096)
        die("Fashion-MNIST image size %d: must be at least 28 (images are padded, never cropped)", size);
    if (channels != 1 && channels != 3)
        die("Fashion-MNIST channels must be 1 or 3, not %d", channels);
    char ipath[1024], lpath[1024];
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    idx_array im = idx_read_u8(ipath), lb = idx_read_u8(lpath);
    if (im.ndim != 3 || im.dims[1] != 28 || im.dims[2] != 28)
        die("'%s': expected N×28×28 images", ipath);
    if (lb.ndim != 1 || lb.dims[0] != im.dims[0])
        die("'%s': expected %u labels to match '%s', found %u", lpath, im.dims[0], ipath, lb.dims[0]);

    dataset d = {0};
    d.n = (int)im.dims[0];
    if (max_images > 0 && max_images < d.n) /* before padding: 60,000 × 1024² would be 63 GB */
        d.n = max_images;
    d.channels = channels;
    d.height = d.width = size;
    d.num_classes = 10;
    d.source = xstrdup(ipath);
    d.images = dataset_alloc_images((size_t)d.n, (size_t)channels * size * size, ipath,
                                    "use --max-images or a smaller --image-size");
    d.labels = xmalloc((size_t)d.n * sizeof(int32_t));
    int off = (size - 28) / 2; /* centred zero padding: FMNIST backgrounds are 0 */
    for (int i = 0; i < d.n; i++) {
        for (int c = 0; c < channels; c++) {
            uint8_t *dst = d.images + ((size_t)i * channels + c) * size * size;
            for (int y = 0; y < 28; y++)
                memcpy(dst + (size_t)(y + off) * size + off, im.data + ((size_t)i * 28 + y) * 28, 28);
        }
        d.labels[i] = lb.data[i];
    }
    idx_free(&im);
    idx_free(&lb);
    dataset_validate(&d);
    return d;
}

static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }

dataset dataset_open(const char *name, const char *split, int size, int channels, int max_images)
{
    dataset d;
    if (!strcmp(name, "fashion-mnist"))
        d = dataset_fashion_mnist_first(FASHION_MNIST_DIR, split, size, channels, max_images);
    else
        d = dataset_read_shard(name);
    if (max_images > 0)
        dataset_truncate(&d, max_images);
    return d;
}

dataset dataset_read_shard(const char *path)
{
    FILE *f = xfopen(path, "rb");
    uint8_t h[32];
    if (fread(h, 1, 32, f) != 32)
        die("'%s': too short to be a repae shard (header is 32 bytes)", path);
    if (memcmp(h, SHARD_MAGIC, 8) != 0)
        die("'%s': not a repae shard (bad magic; write one with 'repae prepare')", path);
    uint32_t version = get_u32(h + 8);
    if (version != SHARD_VERSION)
        die("'%s': shard version %u is not supported (this repae reads version %u)", path, version, SHARD_VERSION);
    uint32_t n = get_u32(h + 12), c = get_u32(h + 16), hh = get_u32(h + 20), w = get_u32(h + 24),
             k = get_u32(h + 28);
    if (!n || !c || !hh || !w || c > 4 || hh > 8192 || w > 8192 || n > (1u << 27) || !k || k > 100000)
        die("'%s': implausible shard header (N=%u C=%u H=%u W=%u classes=%u)", path, n, c, hh, w, k);
    size_t pixels = (size_t)n * c * hh * w;
    /* The header decides the allocation: hold it to the file's real size
     * before trusting it (a 40-byte file must not ask for 2^50 bytes). */
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0)
        die("'%s': cannot stat: %s", path, strerror(errno));
    uint64_t want = 32 + (uint64_t)pixels + 4 * (uint64_t)n;
    if ((uint64_t)sb.st_size != want)
        die("'%s': the header declares %u images of %ux%ux%u (%llu bytes with the labels), but the file has %llu "
            "bytes: truncated or corrupt shard", path, n, c, hh, w, (unsigned long long)want,
            (unsigned long long)sb.st_size);
    dataset d = {0};
    d.n = (int)n, d.channels = (int)c, d.height = (int)hh, d.width = (int)w, d.num_classes = (int)k;
    d.source = xstrdup(path);
    d.images = xmalloc(pixels);
    d.labels = xmalloc((size_t)n * sizeof(int32_t));
    xfread(d.images, 1, pixels, f, path);
    uint8_t *lb = xmalloc((size_t)n * 4);
    xfread(lb, 4, n, f, path);
    for (uint32_t i = 0; i < n; i++)
        d.labels[i] = (int32_t)get_u32(lb + 4 * (size_t)i);
    free(lb);
    if (fgetc(f) != EOF)
        die("'%s': unexpected bytes after the labels (corrupt shard?)", path);
    fclose(f);
    dataset_validate(&d);
    return d;
}

void dataset_write_shard(const dataset *d, const char *path)
{
    uint8_t h[32];
    memcpy(h, SHARD_MAGIC, 8);
    put_u32(h + 8, SHARD_VERSION);
    put_u32(h + 12, (uint32_t)d->n);
    put_u32(h + 16, (uint32_t)d->channels);
    put_u32(h + 20, (uint32_t)d->height);
    put_u32(h + 24, (uint32_t)d->width);
    put_u32(h + 28, (uint32_t)d->num_classes);
    atomic_file af = atomic_file_open(path);
    xfwrite(h, 1, 32, af.fp, path);
    xfwrite(d->images, 1, (size_t)d->n * d->channels * d->height * d->width, af.fp, path);
    for (int i = 0; i < d->n; i++) {
        uint8_t b[4];
        put_u32(b, (uint32_t)d->labels[i]);
        xfwrite(b, 1, 4, af.fp, path);
    }
    atomic_file_commit(&af);
}

void dataset_truncate(dataset *d, int n)
{
    if (n > 0 && n < d->n)
        d->n = n;
}

void dataset_validate(const dataset *d)
{
    for (int i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= d->num_classes)
            die("'%s': label %d of image %d is out of range [0, %d)", d->source, d->labels[i], i, d->num_classes);
}

void dataset_free(dataset *d)
{
    free(d->images);
    free(d->labels);
    free(d->source);
    memset(d, 0, sizeof *d);
}
