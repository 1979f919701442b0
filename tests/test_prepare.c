/* Image folders with the ADM centre crop, labels from top-level folders,
 * and `repae prepare` writing shards and ADM npz batches. */
#include <dirent.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "io/image.h"
#include "io/npz.h"
#include "test.h"

static void test_center_crop_identity_and_halving(void)
{
    uint8_t img[3 * 4 * 4], out[3 * 4 * 4];
    for (int i = 0; i < 48; i++)
        img[i] = (uint8_t)(i * 5);
    adm_center_crop(out, img, 3, 4, 4, 4);
    CHECK(!memcmp(img, out, sizeof img), "an R×R image must pass through unchanged");
    /* 8×8 made of 2×2 constant blocks: the halving box filter recovers the blocks exactly. */
    uint8_t big[8 * 8], small[4 * 4], want[16];
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            big[y * 8 + x] = (uint8_t)(10 * (y / 2) + x / 2 + 3);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            want[y * 4 + x] = (uint8_t)(10 * y + x + 3);
    adm_center_crop(small, big, 1, 8, 8, 4);
    CHECK(!memcmp(small, want, 16), "halving 2×2 blocks gave %d %d %d ... instead of %d %d %d", small[0], small[1],
          small[2], want[0], want[1], want[2]);
    /* A wide image keeps its centre: 4 rows × 12 columns, R = 4 → columns 4..7. */
    uint8_t wide[4 * 12], crop[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 12; x++)
            wide[y * 12 + x] = (uint8_t)(x * 20);
    adm_center_crop(crop, wide, 1, 4, 12, 4);
    CHECK(crop[0] == 80 && crop[3] == 140, "centre crop took columns starting at %d", crop[0] / 20);
}

static void test_folder_labels_and_prepare(void)
{
    char root[] = "/tmp/repae_folder_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    char path[512];
    const char *classes[2] = {"n002", "n001"};
    uint8_t px[3 * 6 * 6];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", root, classes[k]);
        mkdir(path, 0755);
        for (int j = 0; j < 2; j++) {
            memset(px, 40 * (k + 1) + j, sizeof px);
            snprintf(path, sizeof path, "%s/%s/img%d.png", root, classes[k], j);
            image_write_png(path, px, 3, 6, 6);
        }
    }
    snprintf(path, sizeof path, "%s/n001/notes.txt", root);
    FILE *f = fopen(path, "w");
    fputs("not an image", f);
    fclose(f);
    dataset d = dataset_image_folder(root, 4, 3, 0);
    CHECK(d.n == 4 && d.num_classes == 2, "found %d images in %d classes", d.n, d.num_classes);
    /* Sorted paths: n001/img0, n001/img1, n002/img0, n002/img1 → labels 0 0 1 1. */
    CHECK(d.labels[0] == 0 && d.labels[1] == 0 && d.labels[2] == 1 && d.labels[3] == 1, "labels %d %d %d %d",
          d.labels[0], d.labels[1], d.labels[2], d.labels[3]);
    CHECK(d.images[0] == 80 && d.images[2 * 48] == 40, "images not in sorted order (%d, %d)", d.images[0],
          d.images[2 * 48]);
    dataset_free(&d);

    char cmd[1024], out[2048], err[2048];
    const char *b = getenv("BUILD");
    snprintf(cmd, sizeof cmd, "%s/repae prepare --data %s --resolution 4 --channels 3 --output %s/s.shard --npz %s/r.npz",
             b ? b : "build", root, root, root);
    CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "prepare failed: %s", err);
    snprintf(path, sizeof path, "%s/s.shard", root);
    dataset s = dataset_read_shard(path);
    CHECK(s.n == 4 && s.height == 4 && s.num_classes == 2, "shard %d images %d px %d classes", s.n, s.height,
          s.num_classes);
    dataset_free(&s);
    snprintf(path, sizeof path, "%s/r.npz", root);
    npz_file *z = npz_open(path);
    const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
    CHECK(e->ndim == 4 && e->shape[0] == 4 && e->shape[1] == 4 && e->shape[3] == 3, "npz shape wrong");
    npz_close(z);
    snprintf(cmd, sizeof cmd, "%s/repae prepare --data %s/nothing-here --output %s/x", b ? b : "build", root, root);
    expect_command_fails(cmd, "nothing-here");
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0, "cleanup");
}


/* dataset.json (the reference's preprocessing.py: it supplies the labels
 * when present), and files PIL would read that we cannot: refused, since
 * skipping one would shift every index after it. */
static const char *label_root;

static void write_text_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", label_root, rel);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static int folder_resolution = 4;

/* Opens label_root at folder_resolution (in a child, for the refusals). */
static void open_folder(void *unused)
{
    (void)unused;
    dataset d = dataset_image_folder(label_root, folder_resolution, 3, 0);
    dataset_free(&d);
}

static void test_dataset_json_and_pil_only_files(void)
{
    char root[] = "/tmp/repae_dsjson_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    label_root = root;
    char path[512];
    uint8_t px[3 * 6 * 6];
    const char *rel[4] = {"a/x.png", "a/y.png", "b/z.png", "loose.png"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", root, k ? "b" : "a");
        mkdir(path, 0755);
    }
    for (int i = 0; i < 4; i++) {
        memset(px, 10 * (i + 1), sizeof px);
        snprintf(path, sizeof path, "%s/%s", root, rel[i]);
        image_write_png(path, px, 3, 6, 6);
    }
    /* Labels from the file, not the folders; a loose image is fine then. */
    write_text_file("dataset.json", "{\"labels\": [[\"b/z.png\", 7], [\"a/x.png\", 3], [\"loose.png\", 0], "
                                    "[\"a/y.png\", 3], [\"gone.png\", 9]]}");
    dataset d = dataset_image_folder(root, 4, 3, 0);
    /* sorted: a/x, a/y, b/z, loose */
    CHECK(d.n == 4 && d.num_classes == 10, "%d images, %d classes (want 4, 10: the largest label listed + 1)", d.n,
          d.num_classes);
    CHECK(d.labels[0] == 3 && d.labels[1] == 3 && d.labels[2] == 7 && d.labels[3] == 0, "labels %d %d %d %d",
          d.labels[0], d.labels[1], d.labels[2], d.labels[3]);
    dataset_free(&d);
    write_text_file("dataset.json", "{\"labels\": null}");
    d = dataset_image_folder(root, 4, 3, 2);
    CHECK(d.n == 2 && d.num_classes == 1 && d.labels[0] == 0 && d.labels[1] == 0, "null labels: %d classes",
          d.num_classes);
    dataset_free(&d);

    static const struct {
        const char *json, *problem;
    } bad[] = {
        {"{\"labels\": [[\"a/x.png\", 1], [\"a/y.png\", 1], [\"b/z.png\", 2]]}",
         "the image 'loose.png' has no label"},
        {"{\"labels\": [[\"a/x.png\", 1], [\"a/x.png\", 2]]}", "'a/x.png' is labelled twice"},
        {"{\"labels\": [[\"a/x.png\", -1]]}", "labels entry 0 is not"},
        {"{\"labels\": [[\"a/x.png\", 1.5]]}", "labels entry 0 is not"},
        {"{\"labels\": [[\"a/x.png\", 1073741824]]}", "labels entry 0 is not"},
        {"{\"labels\": [[\"a/x.png\", 1], [\"a/y.png\"]]}", "labels entry 1 is not"},
        {"{\"labels\": [[\"a/x.png\", 1, 2]]}", "labels entry 0 is not"},
        {"{\"labels\": [[5, 1]]}", "labels entry 0 is not"},
        {"{\"labels\": [\"a/x.png\"]}", "labels entry 0 is not"},
        {"{\"labels\": {}}", "not a dataset.json"},
        {"{\"names\": []}", "not a dataset.json"},
        {"[1, 2]", "not a dataset.json"},
        {"{\"labels\": [", "not a dataset.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text_file("dataset.json", bad[i].json);
        expect_die(bad[i].json, open_folder, NULL, bad[i].problem);
    }
    snprintf(path, sizeof path, "%s/dataset.json", root);
    unlink(path);
    /* Without dataset.json, the loose image is refused next to class folders. */
    expect_die("a loose image beside class folders", open_folder, NULL, "lie directly in the folder");
    snprintf(path, sizeof path, "%s/loose.png", root);
    unlink(path);
    /* .jpe / .JFIF are JPEG names PIL collects: so do we (read by content). */
    snprintf(path, sizeof path, "%s/b/w.JFIF", root);
    image_write_png(path, px, 3, 6, 6);
    d = dataset_image_folder(root, 4, 3, 0);
    CHECK(d.n == 4 && d.num_classes == 2, "a .JFIF file collected: %d images", d.n);
    dataset_free(&d);
    write_text_file("a/notes.txt", "not an image");
    write_text_file("b/pic.GIF", "GIF89a");
    expect_die("a GIF", open_folder, NULL, "b/pic.GIF': the reference (PIL) would read this file as an image");
    snprintf(path, sizeof path, "rm -rf %s", root);
    CHECK(system(path) == 0, "cleanup");
}


/* Decoding runs on every thread, each image into its own slot: two threads
 * give the bytes one does (images of several sizes, some halved). */
static void test_parallel_decode_same_bytes(void)
{
    char root[] = "/tmp/repae_par_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    char path[512];
    for (int i = 0; i < 12; i++) {
        int H = 9 + 5 * i, W = 40 - 2 * i;
        uint8_t *px = malloc((size_t)3 * H * W);
        for (int k = 0; k < 3 * H * W; k++)
            px[k] = (uint8_t)((k * 131 + i * 17) % 251);
        snprintf(path, sizeof path, "%s/img%02d.png", root, i);
        image_write_png(path, px, 3, H, W);
        free(px);
    }
    omp_set_num_threads(1);
    dataset one = dataset_image_folder(root, 8, 3, 0);
    omp_set_num_threads(2);
    dataset two = dataset_image_folder(root, 8, 3, 0);
    omp_set_num_threads(1);
    CHECK(one.n == 12 && two.n == 12 && !memcmp(one.images, two.images, (size_t)12 * 3 * 8 * 8),
          "two threads decoded other bytes than one");
    dataset_free(&one), dataset_free(&two);
    snprintf(path, sizeof path, "rm -rf %s", root);
    CHECK(system(path) == 0, "cleanup");
}

/* The folder walk at scale: 300 class folders (the table of folders seen
 * grows twice and its probes collide), each a class in sorted order, then a
 * link deep inside back to the root (refused, naming both folders), and a
 * second link to one folder (refused too).  One image alone is a dataset;
 * resolutions 1 and 4096 are the range's edges. */
static void test_folder_walk_at_scale(void)
{
    static char root[] = "/tmp/repae_walk_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    label_root = root;
    char path[512];
    uint8_t px[3 * 4 * 4];
    for (int k = 0; k < 300; k++) {
        snprintf(path, sizeof path, "%s/c%03d", root, 299 - k); /* created out of order */
        CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
        memset(px, (299 - k) % 251, sizeof px);
        snprintf(path, sizeof path, "%s/c%03d/a.png", root, 299 - k);
        image_write_png(path, px, 3, 4, 4);
    }
    dataset d = dataset_image_folder(root, 4, 3, 0);
    CHECK(d.n == 300 && d.num_classes == 300, "%d images in %d classes", d.n, d.num_classes);
    int wrong = 0;
    for (int i = 0; i < d.n; i++)
        wrong += d.labels[i] != i || d.images[(size_t)i * 48] != i % 251;
    CHECK(wrong == 0, "%d images out of order or mislabelled", wrong);
    dataset_free(&d);

    /* the loop goes into the folder the walk reads last, after the table has
     * grown: the root, entered first, must have survived the rehashing */
    char err[1024], target[512], last[256] = "";
    DIR *dir = opendir(root);
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.')
            snprintf(last, sizeof last, "%s", e->d_name);
    closedir(dir);
    snprintf(path, sizeof path, "%s/%s/loop", root, last);
    CHECK(symlink("../", path) == 0, "symlink");
    int rc = run_in_child(open_folder, NULL, err, sizeof err);
    char want[300];
    snprintf(want, sizeof want, "the folder '%s/loop' is the same as '.'", last);
    CHECK(rc == 1 && strstr(err, want), "a loop to the root: %d %s", rc, err);
    unlink(path);
    /* a dangling link not named like an image is skipped; one named like an
     * image, and a link to itself, are refused */
    snprintf(path, sizeof path, "%s/c010/notes.txt", root);
    CHECK(symlink("missing-target", path) == 0, "symlink");
    d = dataset_image_folder(root, 4, 3, 0);
    CHECK(d.n == 300, "a dangling notes.txt changed the count to %d", d.n);
    dataset_free(&d);
    unlink(path);
    snprintf(path, sizeof path, "%s/c010/b.png", root);
    CHECK(symlink("missing-target", path) == 0, "symlink");
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "c010/b.png': No such file or directory"), "a dangling image: %d %s", rc, err);
    unlink(path);
    snprintf(path, sizeof path, "%s/c010/self", root);
    CHECK(symlink("self", path) == 0, "symlink");
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "c010/self': Too many levels of symbolic links"), "a link to itself: %d %s", rc,
          err);
    unlink(path);
    /* the first of the extensions only PIL reads */
    snprintf(path, sizeof path, "%s/c010/z.BLP", root);
    fclose(fopen(path, "w"));
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "c010/z.BLP': the reference (PIL) would read this file"), "a .blp: %d %s", rc, err);
    unlink(path);
    snprintf(path, sizeof path, "%s/c299/again", root);
    snprintf(target, sizeof target, "%s/c007", root);
    CHECK(symlink(target, path) == 0, "symlink");
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "the folder 'c299/again' is the same as 'c007'"), "a second link: %d %s", rc, err);
    unlink(path);

    /* one image, no class folder */
    static char one[] = "/tmp/repae_one_XXXXXX";
    CHECK(mkdtemp(one) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/only.jpg.png", one);
    memset(px, 77, sizeof px);
    image_write_png(path, px, 3, 4, 4);
    d = dataset_image_folder(one, 1, 3, 0);
    CHECK(d.n == 1 && d.num_classes == 1 && d.labels[0] == 0 && d.height == 1 && d.images[0] == 77,
          "one image: n %d classes %d pixel %d", d.n, d.num_classes, d.images[0]);
    dataset_free(&d);
    label_root = one;
    folder_resolution = 0;
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "image folder: resolution 0 is out of range [1, 4096]"), "resolution 0: %s", err);
    folder_resolution = 4097;
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "resolution 4097 is out of range"), "resolution 4097: %s", err);
    folder_resolution = 4096;
    rc = run_in_child(open_folder, NULL, err, sizeof err);
    CHECK(rc == 0, "resolution 4096 refused: %s", err);
    folder_resolution = 4;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", root, one);
    CHECK(system(cmd) == 0, "cleanup");
}

/* `repae prepare --npz` is the folder's images in NHWC, pixel for pixel:
 * colour as it is, grey repeated into 3 channels, or kept as 1 with
 * --no-rgb; the shard beside it holds the same images as the dataset. */
static void test_prepare_npz_pixels(void)
{
    char root[] = "/tmp/repae_npz_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    char path[512], cmd[1024], err[2048];
    snprintf(path, sizeof path, "%s/cls", root);
    mkdir(path, 0755);
    uint8_t px[3 * 5 * 7];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 3 * 5 * 7; i++)
            px[i] = (uint8_t)(i * 7 + k * 31 + (i / 35) * 50); /* every channel, row and column different */
        snprintf(path, sizeof path, "%s/cls/img%d.png", root, k);
        image_write_png(path, px, 3, 5, 7);
    }
    const char *b = getenv("BUILD");
    const struct {
        int channels;
        bool no_rgb;
        int npz_channels;
    } modes[] = {{3, false, 3}, {1, false, 3}, {1, true, 1}};
    for (int m = 0; m < 3; m++) {
        snprintf(cmd, sizeof cmd, "%s/repae prepare --data %s --resolution 4 --channels %d%s --output %s/s.shard "
                 "--npz %s/r.npz", b ? b : "build", root, modes[m].channels, modes[m].no_rgb ? " --no-rgb" : "",
                 root, root);
        char out[1024];
        CHECK(run_command(cmd, out, sizeof out, err, sizeof err) == 0, "prepare (mode %d) failed: %s", m, err);
        char want_line[600];
        snprintf(want_line, sizeof want_line, "%s/s.shard: 3 images %dx4x4, 1 classes", root, modes[m].channels);
        CHECK(strstr(out, want_line) != NULL, "mode %d: the shard's line is missing: %s", m, out);
        snprintf(want_line, sizeof want_line, "%s/r.npz: arr_0 uint8 [3, 4, 4, %d]", root, modes[m].npz_channels);
        CHECK(strstr(out, want_line) != NULL, "mode %d: the npz's line is missing: %s", m, out);
        dataset d = dataset_image_folder(root, 4, modes[m].channels, 0);
        snprintf(path, sizeof path, "%s/s.shard", root);
        dataset s = dataset_read_shard(path);
        CHECK(s.n == 3 && s.channels == d.channels && !memcmp(s.images, d.images, (size_t)3 * d.channels * 16),
              "mode %d: the shard's images differ from the folder's", m);
        dataset_free(&s);
        snprintf(path, sizeof path, "%s/r.npz", root);
        npz_file *z = npz_open(path);
        const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
        const int C = modes[m].npz_channels;
        CHECK(e->ndim == 4 && e->shape[0] == 3 && e->shape[1] == 4 && e->shape[2] == 4 && e->shape[3] == C,
              "mode %d: npz shape [%lld, %lld, %lld, %lld]", m, (long long)e->shape[0], (long long)e->shape[1],
              (long long)e->shape[2], (long long)e->shape[3]);
        if (e->nbytes == (size_t)3 * 16 * C) {
            uint8_t *nhwc = xmalloc(e->nbytes);
            npz_read(z, e, nhwc);
            int bad = 0;
            for (int i = 0; i < 3; i++)
                for (int p = 0; p < 16; p++)
                    for (int c = 0; c < C; c++)
                        bad += nhwc[(i * 16 + p) * C + c] !=
                               d.images[(i * d.channels + (d.channels == 1 ? 0 : c)) * 16 + p];
            CHECK(bad == 0, "mode %d: %d npz values differ from the folder's images", m, bad);
            free(nhwc);
        }
        npz_close(z);
        dataset_free(&d);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void)
{
    setenv("OMP_NUM_THREADS", "1", 1);
    RUN(test_center_crop_identity_and_halving);
    RUN(test_folder_walk_at_scale);
    RUN(test_folder_labels_and_prepare);
    RUN(test_prepare_npz_pixels);
    RUN(test_dataset_json_and_pil_only_files);
    RUN(test_parallel_decode_same_bytes);
    return test_summary();
}
