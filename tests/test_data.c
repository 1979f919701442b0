/* Datasets and the loader: Fashion-MNIST from Debian's package, shard round
 * trip, epoch permutations, exact resume, and the per-rank split. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "test.h"

static void test_fashion_mnist_padded(void)
{
    if (access(FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
        CHECK(0, "Fashion-MNIST is missing: install Debian's dataset-fashion-mnist (scripts/setup.sh does)");
        return;
    }
    dataset d = dataset_fashion_mnist(FASHION_MNIST_DIR, "test", 32, 1);
    CHECK(d.n == 10000 && d.channels == 1 && d.height == 32 && d.width == 32, "shape %d %d %d %d", d.n, d.channels,
          d.height, d.width);
    int counts[10] = {0};
    for (int i = 0; i < d.n; i++)
        counts[d.labels[i]]++;
    for (int k = 0; k < 10; k++)
        CHECK(counts[k] == 1000, "class %d has %d test images, expected 1000", k, counts[k]);
    long border = 0, inside = 0;
    for (int i = 0; i < 100; i++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                int v = d.images[(size_t)i * 1024 + y * 32 + x];
                if (y < 2 || y >= 30 || x < 2 || x >= 30)
                    border += v;
                else
                    inside += v;
            }
    CHECK(border == 0, "the 2-pixel padding must be zero, sum %ld", border);
    CHECK(inside > 100 * 784 * 30, "images look empty (mean %.1f)", inside / (100.0 * 784));
    dataset rgb = dataset_fashion_mnist(FASHION_MNIST_DIR, "test", 32, 3);
    CHECK(!memcmp(rgb.images, d.images, 1024) && !memcmp(rgb.images + 2048, d.images, 1024),
          "3-channel images must replicate the grey channel");
    dataset_free(&rgb);
    dataset_free(&d);
}

static dataset tiny_dataset(int n)
{
    dataset d = {0};
    d.n = n, d.channels = 1, d.height = 2, d.width = 3, d.num_classes = 5;
    d.images = malloc((size_t)n * 6);
    d.labels = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 6; k++)
            d.images[i * 6 + k] = (uint8_t)(i + k);
        d.labels[i] = i % 5;
    }
    d.source = strdup("tiny");
    return d;
}

static void test_shard_round_trip(void)
{
    char dir[] = "/tmp/repae_shard_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/s.shard", dir);
    dataset d = tiny_dataset(17);
    dataset_write_shard(&d, path);
    dataset e = dataset_read_shard(path);
    CHECK(e.n == 17 && e.channels == 1 && e.height == 2 && e.width == 3 && e.num_classes == 5, "shard header");
    CHECK(!memcmp(e.images, d.images, 17 * 6) && !memcmp(e.labels, d.labels, 17 * 4), "shard contents differ");
    dataset_free(&d);
    dataset_free(&e);
    unlink(path);
    rmdir(dir);
}

/* dataset_open: a shard by its path, Fashion-MNIST by name, each cut to
 * --max-images (0: all). */
static void test_dataset_open(void)
{
    char path[] = "/tmp/repae_open_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    dataset d = tiny_dataset(7);
    dataset_write_shard(&d, path);
    dataset_free(&d);
    dataset all = dataset_open(path, "train", 0, 0, 0), three = dataset_open(path, "train", 0, 0, 3),
            one = dataset_open(path, "train", 0, 0, 1);
    CHECK(all.n == 7 && three.n == 3 && one.n == 1 && !memcmp(all.images, three.images, 3 * 6) &&
              three.labels[2] == 2,
          "a shard of 7: %d images, with --max-images 3: %d, 1: %d", all.n, three.n, one.n);
    dataset_free(&all);
    dataset_free(&one);
    dataset_free(&three);
    unlink(path);
    dataset f = dataset_open("fashion-mnist", "test", 32, 1, 5);
    CHECK(f.n == 5 && f.height == 32 && f.num_classes == 10, "fashion-mnist cut to 5: %d images of %d", f.n,
          f.height);
    dataset_free(&f);
}

static void test_loader_epochs_and_resume(void)
{
    dataset d = tiny_dataset(23); /* 23 images, batch 4: 5 batches, 3 dropped */
    loader l = loader_create(&d, 4, 99, 0, 1);
    CHECK(l.batches_per_epoch == 5, "batches per epoch %d", l.batches_per_epoch);
    uint8_t img[4 * 6];
    int32_t lab[4];
    int seen[23] = {0};
    uint8_t first_epoch[5][4];
    for (int b = 0; b < 5; b++) {
        loader_next(&l, img, lab);
        for (int k = 0; k < 4; k++) {
            int idx = img[k * 6]; /* image i starts with byte i */
            seen[idx]++;
            first_epoch[b][k] = (uint8_t)idx;
            CHECK(lab[k] == idx % 5, "label does not follow its image");
        }
    }
    int distinct = 0;
    for (int i = 0; i < 23; i++) {
        CHECK(seen[i] <= 1, "image %d seen twice in one epoch", i);
        distinct += seen[i];
    }
    CHECK(distinct == 20, "one epoch should visit 20 distinct images, got %d", distinct);
    /* Epoch 2 is a different permutation. */
    loader_next(&l, img, lab);
    CHECK(l.epoch == 1, "loader should have moved to epoch 1");
    int same = 1;
    for (int k = 0; k < 4; k++)
        same &= img[k * 6] == first_epoch[0][k];
    CHECK(!same, "epoch 1 repeated epoch 0's order");
    /* Resume: a fresh loader seeked to (1, 1) continues like the original. */
    uint8_t img2[4 * 6];
    loader m = loader_create(&d, 4, 99, 0, 1);
    loader_seek(&m, 1, 1);
    loader_next(&l, img, lab);
    loader_next(&m, img2, lab);
    CHECK(!memcmp(img, img2, sizeof img), "resumed loader gives a different batch");
    loader_free(&l);
    loader_free(&m);
    dataset_free(&d);
}

static void test_loader_ranks_disjoint(void)
{
    dataset d = tiny_dataset(24);
    loader a = loader_create(&d, 3, 5, 0, 2), b = loader_create(&d, 3, 5, 1, 2);
    int owner[24] = {0};
    for (int i = 0; i < a.per_rank; i++)
        owner[a.order[i]] |= 1;
    for (int i = 0; i < b.per_rank; i++)
        owner[b.order[i]] |= 2;
    int both = 0, covered = 0;
    for (int i = 0; i < 24; i++)
        both += owner[i] == 3, covered += owner[i] != 0;
    CHECK(both == 0 && covered == 24, "ranks must split the epoch: %d shared, %d covered", both, covered);
    loader_free(&a);
    loader_free(&b);
    dataset_free(&d);
}

/* ---- bad data: each a clear error naming the file ---- */

static char bad_path[256];

static void read_bad_shard(void *ctx)
{
    (void)ctx;
    dataset d = dataset_read_shard(bad_path);
    dataset_free(&d);
}

static void loader_too_small(void *ctx)
{
    dataset *d = ctx;
    loader l = loader_create(d, 64, 0, 0, 1);
    loader_free(&l);
}

static void read_bad_image(void *ctx)
{
    (void)ctx;
    dataset d = dataset_fashion_mnist(bad_path, "train", 32, 1);
    dataset_free(&d);
}

typedef struct loader_case {
    int n, batch, rank, world;
    long long seek_epoch;
    int seek_position;
    int last_indices; /* ask for the last batch's indices before any batch */
} loader_case;

static void run_loader_case(void *ctx)
{
    const loader_case *c = ctx;
    dataset d = tiny_dataset(c->n);
    loader l = loader_create(&d, c->batch, 1, c->rank, c->world);
    if (c->last_indices)
        loader_last_indices(&l);
    loader_seek(&l, c->seek_epoch, c->seek_position);
}

/* The loader's refusals and edges: ranks outside the world, a batch of 0,
 * fewer images per process than one batch, resume points outside an epoch
 * (its end is allowed: the next batch starts the next epoch), the last
 * batch's indices before any batch; the permutation of (seed, epoch)
 * pinned, and the indices loader_last_indices gives. */
static void test_loader_refusals_and_edges(void)
{
    const struct {
        loader_case c;
        const char *message;
    } bad[] = {
        {{8, 2, 0, 0, 0, 0, 0}, "data loader: rank 0 is not in [0, world=0)"},
        {{8, 2, -1, 2, 0, 0, 0}, "data loader: rank -1 is not in [0, world=2)"},
        {{8, 2, 2, 2, 0, 0, 0}, "data loader: rank 2 is not in [0, world=2)"},
        {{8, 0, 0, 1, 0, 0, 0}, "batch size must be positive, got 0"},
        {{3, 4, 0, 1, 0, 0, 0}, "'tiny': 3 images (3 per process) are fewer than one batch of 4"},
        {{5, 3, 1, 2, 0, 0, 0}, "'tiny': 5 images (2 per process) are fewer than one batch of 3"},
        {{8, 2, 0, 1, -1, 0, 0}, "cannot resume at epoch -1 batch 0 (4 batches per epoch)"},
        {{8, 2, 0, 1, 0, -1, 0}, "cannot resume at epoch 0 batch -1 (4 batches per epoch)"},
        {{8, 2, 0, 1, 3, 5, 0}, "cannot resume at epoch 3 batch 5 (4 batches per epoch)"},
        {{8, 2, 0, 1, 0, 0, 1}, "loader_last_indices before the first batch of an epoch"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        expect_die(bad[k].message, run_loader_case, (void *)&bad[k].c, bad[k].message);
    char err[512];
    CHECK(run_in_child(run_loader_case, &(loader_case){4, 4, 0, 1, 2, 1, 0}, err, sizeof err) == 0,
          "one batch of all the images, resumed at the end of epoch 2: %s", err);
    CHECK(run_in_child(run_loader_case, &(loader_case){6, 3, 1, 2, 0, 0, 0}, err, sizeof err) == 0,
          "rank 1 of 2 with exactly one batch: %s", err);
    CHECK(run_in_child(run_loader_case, &(loader_case){2, 1, 0, 1, 0, 0, 0}, err, sizeof err) == 0,
          "batches of one: %s", err);

    /* The permutations of seed 99 (a resumed run depends on them). */
    dataset d = tiny_dataset(23);
    loader l = loader_create(&d, 4, 99, 0, 1);
    const uint32_t epoch0[23] = {19, 11, 12, 16, 1, 22, 17, 9, 2, 18, 3, 4, 8, 14, 15, 21, 13, 20, 0, 6, 7, 5, 10};
    const uint32_t epoch1[23] = {11, 3, 6, 13, 18, 7, 5, 8, 19, 21, 14, 12, 9, 10, 4, 22, 17, 15, 20, 16, 0, 1, 2};
    CHECK(l.per_rank == 23 && !memcmp(l.order, epoch0, sizeof epoch0), "epoch 0's permutation of seed 99");
    /* The end of epoch 0 is a resume point: the next batch is epoch 1's first. */
    loader_seek(&l, 0, l.batches_per_epoch);
    uint8_t img[4 * 6];
    int32_t lab[4];
    loader_next(&l, img, lab);
    CHECK(l.epoch == 1 && l.position == 1 && !memcmp(l.order, epoch1, sizeof epoch1),
          "epoch 1's permutation of seed 99, after resuming at the end of epoch 0");
    CHECK(loader_last_indices(&l)[0] == 11, "after the first batch: index %u", loader_last_indices(&l)[0]);
    loader_next(&l, img, lab);
    const uint32_t *last = loader_last_indices(&l);
    CHECK(last[0] == 18 && last[1] == 7 && last[2] == 5 && last[3] == 8 && img[0] == 18 && img[18] == 8,
          "the second batch's indices %u %u %u %u, its images %d .. %d", last[0], last[1], last[2], last[3], img[0],
          img[18]);
    loader_free(&l);
    CHECK(!l.order, "loader_free forgets its order");
    dataset_free(&d);
}

static void test_bad_data_errors(void)
{
    char dir[] = "/tmp/repae_baddata_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    dataset d = tiny_dataset(10);
    snprintf(bad_path, sizeof bad_path, "%s/good.shard", dir);
    dataset_write_shard(&d, bad_path);
    /* Truncated shard: cut the labels short. */
    size_t size;
    char *bytes = read_file_all(bad_path, &size);
    snprintf(bad_path, sizeof bad_path, "%s/truncated.shard", dir);
    FILE *f = fopen(bad_path, "wb");
    fwrite(bytes, 1, size - 7, f);
    fclose(f);
    expect_die("truncated shard", read_bad_shard, NULL, "truncated.shard': the header declares 10 images");
    /* Label out of range: the last label says 99 for a 5-class shard. */
    snprintf(bad_path, sizeof bad_path, "%s/label.shard", dir);
    bytes[size - 4] = 99;
    f = fopen(bad_path, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    expect_die("label out of range", read_bad_shard, NULL, "label.shard': label 99 of image 9 is out of range");
    /* Not a shard at all. */
    snprintf(bad_path, sizeof bad_path, "%s/text.shard", dir);
    f = fopen(bad_path, "wb");
    fputs("hello, this is not a shard at all, just some text", f);
    fclose(f);
    expect_die("bad magic", read_bad_shard, NULL, "not a repae shard");
    /* A dataset smaller than one batch. */
    expect_die("dataset smaller than a batch", loader_too_small, &d, "fewer than one batch of 64");
    /* A corrupt (truncated) Fashion-MNIST image file. */
    snprintf(bad_path, sizeof bad_path, "%s/train-images-idx3-ubyte.gz", dir);
    f = fopen(bad_path, "wb");
    fputs("\x1f\x8b garbage", f);
    fclose(f);
    snprintf(bad_path, sizeof bad_path, "%s", dir);
    expect_die("corrupt image file", read_bad_image, NULL, "train-images-idx3-ubyte.gz");
    free(bytes);
    dataset_free(&d);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* Fashion-MNIST's files are checked for what they must hold (N×28×28
 * images, N labels of 0-9), and the size, channel and split flags alone;
 * the smallest size, 28, is the images as they are. */
static void write_idx_gz(const char *path, const uint32_t *dims, int ndim, const uint8_t *data, size_t n)
{
    uint8_t head[4 + 16] = {0, 0, 8, (uint8_t)ndim};
    for (int i = 0; i < ndim; i++)
        for (int b = 0; b < 4; b++)
            head[4 + 4 * i + b] = (uint8_t)(dims[i] >> (24 - 8 * b));
    gzFile g = gzopen(path, "wb");
    CHECK(g && gzwrite(g, head, 4 + 4 * ndim) == 4 + 4 * ndim && (n == 0 || gzwrite(g, data, (unsigned)n) == (int)n) &&
              gzclose(g) == Z_OK,
          "writing %s", path);
}

typedef struct fmnist_case {
    const char *dir, *split;
    int size, channels;
} fmnist_case;

static void read_fmnist(void *ctx)
{
    const fmnist_case *c = ctx;
    dataset d = dataset_fashion_mnist(c->dir, c->split, c->size, c->channels);
    dataset_free(&d);
}

static void test_fashion_mnist_files_checked(void)
{
    char dir[] = "/tmp/repae_fmnist_XXXXXX", images[128], labels[128];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    uint8_t pix[3 * 28 * 28], lab[3] = {3, 7, 9};
    for (size_t i = 0; i < sizeof pix; i++)
        pix[i] = (uint8_t)(1 + i % 251);
    const uint32_t good[3] = {2, 28, 28}, one[1] = {2};
    write_idx_gz(images, good, 3, pix, 2 * 784);
    write_idx_gz(labels, one, 1, lab, 2);
    dataset d = dataset_fashion_mnist(dir, "test", 28, 1);
    CHECK(d.n == 2 && d.height == 28 && !memcmp(d.images, pix, 2 * 784) && d.labels[0] == 3 && d.labels[1] == 7,
          "size 28: the images as they are (n %d, size %d)", d.n, d.height);
    dataset_free(&d);
    d = dataset_fashion_mnist(dir, "test", 30, 1);
    CHECK(d.images[0] == 0 && d.images[31] == pix[0] && d.images[30 + 28] == pix[27] && d.images[30 + 29] == 0,
          "size 30: one pixel of zero padding on each side");
    dataset_free(&d);
    d = dataset_fashion_mnist_first(dir, "test", 28, 1, 1);
    CHECK(d.n == 1, "max_images 1 gave %d images", d.n);
    dataset_free(&d);

    fmnist_case c = {dir, "test", 28, 1};
    c.size = 27;
    expect_die("size 27", read_fmnist, &c, "Fashion-MNIST image size 27: must be at least 28");
    c.size = 28, c.channels = 2;
    expect_die("2 channels", read_fmnist, &c, "Fashion-MNIST channels must be 1 or 3, not 2");
    c.channels = 1, c.split = "val";
    expect_die("split val", read_fmnist, &c, "Fashion-MNIST split must be 'train' or 'test', not 'val'");
    c.split = "test";

    const struct {
        uint32_t dims[3];
        int ndim;
    } bad_images[] = {{{2, 27, 28}, 3}, {{2, 28, 27}, 3}, {{2, 784}, 2}, {{2, 28, 28 * 28}, 3}};
    for (size_t i = 0; i < sizeof bad_images / sizeof bad_images[0]; i++) {
        size_t n = 1;
        for (int k = 0; k < bad_images[i].ndim; k++)
            n *= bad_images[i].dims[k];
        uint8_t *z = calloc(n, 1);
        write_idx_gz(images, bad_images[i].dims, bad_images[i].ndim, z, n);
        free(z);
        expect_die("images not N×28×28", read_fmnist, &c, "t10k-images-idx3-ubyte.gz': expected N×28×28 images");
    }
    write_idx_gz(images, good, 3, pix, 2 * 784);
    const uint32_t three[1] = {3}, two_by_one[2] = {2, 1};
    write_idx_gz(labels, three, 1, lab, 3);
    expect_die("3 labels for 2 images", read_fmnist, &c, "expected 2 labels to match");
    write_idx_gz(labels, two_by_one, 2, lab, 2);
    expect_die("labels of 2 dimensions", read_fmnist, &c, "expected 2 labels to match");
    const uint8_t ten[2] = {3, 10};
    write_idx_gz(labels, one, 1, ten, 2);
    expect_die("a label of 10", read_fmnist, &c,
               "t10k-images-idx3-ubyte.gz': label 10 of image 1 is out of range [0, 10)");
    const uint8_t first[2] = {10, 3};
    write_idx_gz(labels, one, 1, first, 2);
    expect_die("the first label 10", read_fmnist, &c, "label 10 of image 0 is out of range [0, 10)");

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void)
{
    RUN(test_fashion_mnist_padded);
    RUN(test_fashion_mnist_files_checked);
    RUN(test_shard_round_trip);
    RUN(test_dataset_open);
    RUN(test_loader_epochs_and_resume);
    RUN(test_loader_ranks_disjoint);
    RUN(test_loader_refusals_and_edges);
    RUN(test_bad_data_errors);
    return test_summary();
}
