#include "data/image_folder.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/progress.h"
#include "data/pil_resize.h"
#include "io/image.h"

typedef struct path_list {
    char **items;
    int n, cap;
} path_list;

/* The reference collects every file whose extension PIL recognises (any
 * case).  We decode PNG and JPEG (by content, so an .apng's first frame or
 * an .mpo's first picture too); a file of another kind PIL knows would be
 * one of the reference's images that we would skip, shifting every index
 * after it, so it is refused.  The list: Pillow 9.4's registered extensions. */
enum { NOT_AN_IMAGE, IMAGE_WE_READ, IMAGE_ONLY_PIL_READS };

static int image_kind(const char *name)
{
    static const char *ours[] = {".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo"};
    static const char *pil_only[] = {
        ".blp", ".bmp", ".bufr", ".bw",   ".cur",  ".dcx", ".dds",  ".dib", ".emf", ".eps", ".fit",  ".fits",
        ".flc", ".fli", ".fpx",  ".ftc",  ".ftu",  ".gbr", ".gif",  ".grib", ".h5", ".hdf", ".icb",  ".icns",
        ".ico", ".iim", ".im",   ".j2c",  ".j2k",  ".jp2", ".jpc",  ".jpf", ".jpx", ".mic", ".mpeg", ".mpg",
        ".msp", ".palm", ".pbm", ".pcd",  ".pcx",  ".pdf", ".pgm",  ".pnm", ".ppm", ".ps",  ".psd",  ".pxr",
        ".ras", ".rgb", ".rgba", ".sgi",  ".tga",  ".tif", ".tiff", ".vda", ".vst", ".webp", ".wmf", ".xbm",
        ".xpm"};
    const char *dot = strrchr(name, '.');
    if (!dot)
        return NOT_AN_IMAGE;
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (!strcasecmp(dot, ours[i]))
            return IMAGE_WE_READ;
    for (size_t i = 0; i < sizeof pil_only / sizeof pil_only[0]; i++)
        if (!strcasecmp(dot, pil_only[i]))
            return IMAGE_ONLY_PIL_READS;
    return NOT_AN_IMAGE;
}

static int has_image_ext(const char *name) { return image_kind(name) != NOT_AN_IMAGE; }

/* Directories already walked, by device and inode: a symlink that leads
 * back to an ancestor would otherwise repeat its images until the path
 * resolution limit (40 levels), and two links to one folder would count
 * its images twice. */
typedef struct dir_ids {
    dev_t *dev;
    ino_t *ino;
    char **path;
    int n, cap;
    int *slot; /* open-addressing hash of (dev, ino) → index + 1; hcap slots */
    size_t hcap;
} dir_ids;

static size_t dir_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

static void dir_ids_enter(dir_ids *v, const struct stat *sb, const char *root, const char *rel)
{
    if ((size_t)(v->n + 1) * 2 > v->hcap) { /* grow and rehash: load factor at most 1/2 */
        size_t hcap = v->hcap ? 2 * v->hcap : 256;
        int *slot = xcalloc(hcap, sizeof *slot);
        for (int i = 0; i < v->n; i++) {
            size_t k = dir_hash(v->dev[i], v->ino[i]) & (hcap - 1);
            while (slot[k])
                k = (k + 1) & (hcap - 1);
            slot[k] = i + 1;
        }
        free(v->slot);
        v->slot = slot, v->hcap = hcap;
    }
    size_t k = dir_hash(sb->st_dev, sb->st_ino) & (v->hcap - 1);
    for (; v->slot[k]; k = (k + 1) & (v->hcap - 1)) {
        int i = v->slot[k] - 1;
        if (v->dev[i] == sb->st_dev && v->ino[i] == sb->st_ino)
            die("'%s': the folder '%s' is the same as '%s' (a symbolic link loop or a second link to it): its "
                "images would be counted twice", root, rel[0] ? rel : ".", v->path[i][0] ? v->path[i] : ".");
    }
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->dev = xrealloc(v->dev, (size_t)v->cap * sizeof *v->dev);
        v->ino = xrealloc(v->ino, (size_t)v->cap * sizeof *v->ino);
        v->path = xrealloc(v->path, (size_t)v->cap * sizeof *v->path);
    }
    v->dev[v->n] = sb->st_dev, v->ino[v->n] = sb->st_ino, v->path[v->n] = xstrdup(rel);
    v->slot[k] = ++v->n;
}

static void walk(const char *root, const char *rel, path_list *out, dir_ids *seen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel) >= sizeof path)
        die("'%s': path '%s' is too long", root, rel);
    DIR *d = opendir(path);
    if (!d)
        die("cannot read folder '%s': %s", path, strerror(errno));
    struct stat dsb;
    if (fstat(dirfd(d), &dsb) != 0)
        die("cannot stat folder '%s': %s", path, strerror(errno));
    dir_ids_enter(seen, &dsb, root, rel);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096], full[8192];
        if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) >= sizeof sub)
            die("'%s': path '%s/%s' is too long", root, rel, e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat sb;
        if (stat(full, &sb) != 0) {
            if (has_image_ext(e->d_name) || errno == ELOOP)
                die("cannot read '%s': %s", full, strerror(errno)); /* a dangling link or a loop, not a skip */
            continue;
        }
        if (S_ISDIR(sb.st_mode))
            walk(root, sub, out, seen);
        else if (has_image_ext(e->d_name) && !S_ISREG(sb.st_mode))
            die("'%s' is named like an image but is not a regular file (a FIFO, socket or device)", full);
        else if (S_ISREG(sb.st_mode) && image_kind(e->d_name) == IMAGE_ONLY_PIL_READS)
            die("'%s': the reference (PIL) would read this file as an image, repae reads PNG and JPEG only: convert "
                "it or move it out of the folder (skipping it would shift every image index after it)", full);
        else if (S_ISREG(sb.st_mode) && has_image_ext(e->d_name)) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 256;
                out->items = xrealloc(out->items, (size_t)out->cap * sizeof(char *));
            }
            out->items[out->n++] = xstrdup(sub);
        }
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void adm_center_crop(uint8_t *out, const uint8_t *img, int C, int H, int W, int R)
{
    uint8_t *cur = xmalloc((size_t)C * H * W);
    memcpy(cur, img, (size_t)C * H * W);
    while ((H < W ? H : W) >= 2 * R) {
        int Ho = H / 2, Wo = W / 2;
        uint8_t *next = xmalloc((size_t)C * Ho * Wo);
        pil_resize_u8(next, cur, C, H, W, Ho, Wo, PIL_BOX);
        free(cur);
        cur = next, H = Ho, W = Wo;
    }
    double scale = (double)R / (H < W ? H : W);
    int Wn = (int)nearbyint(W * scale), Hn = (int)nearbyint(H * scale); /* ties to even, as Python's round */
    uint8_t *res = xmalloc((size_t)C * Hn * Wn);
    pil_resize_u8(res, cur, C, H, W, Hn, Wn, PIL_BICUBIC);
    int top = (Hn - R) / 2, left = (Wn - R) / 2;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < R; y++)
            memcpy(out + ((size_t)c * R + y) * R, res + ((size_t)c * Hn + top + y) * Wn + left, (size_t)R);
    free(res);
    free(cur);
}

/* dataset.json at the root (the reference's preprocessing.py, as EDM2's
 * dataset_tool): {"labels": [["<path relative to the root>", label], ...]}
 * gives the labels instead of the folder names; "labels": null leaves the
 * images unlabelled (one class here).  Otherwise every image needs its
 * label: the reference's training loader looks each one up.  Returns 0 if
 * there is no dataset.json; else fills labels[0..n_files) and the class
 * count (the largest label + 1). */
typedef struct path_label {
    const char *path;
    int label;
} path_label;

static int cmp_path_label(const void *a, const void *b)
{
    return strcmp(((const path_label *)a)->path, ((const path_label *)b)->path);
}

static int labels_from_dataset_json(const char *root, char **files, int n_files, int32_t *labels, int *num_classes)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/dataset.json", root);
    if (access(path, F_OK) != 0)
        return 0;
    size_t len;
    char *text = read_file_all(path, &len);
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *list = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "labels") : NULL;
    if (!list || !(cJSON_IsArray(list) || cJSON_IsNull(list)))
        die("'%s': not a dataset.json: expected {\"labels\": [[\"<relative path>\", <label>], ...]} (or null)",
            path);
    if (cJSON_IsNull(list)) {
        cJSON_Delete(doc);
        memset(labels, 0, (size_t)n_files * sizeof *labels);
        *num_classes = 1;
        return 1;
    }
    int n = cJSON_GetArraySize(list), k = 0, max_label = -1;
    path_label *table = xmalloc((size_t)(n ? n : 1) * sizeof *table);
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *name = cJSON_GetArrayItem(e, 0), *label = cJSON_GetArrayItem(e, 1);
        double v = cJSON_IsNumber(label) ? label->valuedouble : -1;
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(name) || !(v >= 0 && v < (1 << 30)) ||
            v != (int)v)
            die("'%s': labels entry %d is not [\"<relative path>\", <label>] with a whole label in [0, 2^30)", path,
                k);
        table[k++] = (path_label){name->valuestring, (int)v};
        max_label = (int)v > max_label ? (int)v : max_label;
    }
    qsort(table, (size_t)n, sizeof *table, cmp_path_label);
    for (int i = 1; i < n; i++)
        if (!strcmp(table[i].path, table[i - 1].path))
            die("'%s': '%s' is labelled twice", path, table[i].path);
    for (int i = 0; i < n_files; i++) {
        path_label key = {files[i], 0};
        const path_label *hit = n ? bsearch(&key, table, (size_t)n, sizeof *table, cmp_path_label) : NULL;
        if (!hit)
            die("'%s': the image '%s' has no label (the reference's loader needs one for every image)", path,
                files[i]);
        labels[i] = hit->label;
    }
    *num_classes = max_label + 1;
    free(table);
    cJSON_Delete(doc);
    return 1;
}

dataset dataset_image_folder(const char *root, int resolution, int channels, int max_images)
{
    if (resolution < 1 || resolution > 4096)
        die("image folder: resolution %d is out of range [1, 4096]", resolution);
    path_list files = {0};
    dir_ids seen = {0};
    walk(root, "", &files, &seen);
    for (int i = 0; i < seen.n; i++)
        free(seen.path[i]);
    free(seen.dev), free(seen.ino), free(seen.path), free(seen.slot);
    if (files.n == 0)
        die("'%s': no PNG or JPEG images found (.png, .jpg, .jpeg, .jpe, .jfif, .apng, .mpo)", root);
    qsort(files.items, (size_t)files.n, sizeof(char *), cmp_str);
    int32_t *json_labels = xmalloc((size_t)files.n * sizeof(int32_t));
    int json_classes = 0, from_json = labels_from_dataset_json(root, files.items, files.n, json_labels, &json_classes);
    /* Distinct top-level folders → labels. */
    char **tops = xmalloc((size_t)files.n * sizeof(char *));
    int n_tops = 0;
    for (int i = 0; i < files.n; i++) {
        const char *slash = strchr(files.items[i], '/');
        size_t len = slash ? (size_t)(slash - files.items[i]) : 0;
        if (!slash)
            continue;
        if (n_tops == 0 || strncmp(tops[n_tops - 1], files.items[i], len) != 0 || tops[n_tops - 1][len] != 0) {
            tops[n_tops] = xmalloc(len + 1);
            memcpy(tops[n_tops], files.items[i], len);
            tops[n_tops][len] = 0;
            n_tops++;
        }
    }
    /* Either every image sits in a class folder, or none does (one class).
     * A mix would silently put the loose files in class 0. */
    int loose = 0, first_loose = -1;
    for (int i = 0; i < files.n; i++)
        if (!strchr(files.items[i], '/') && loose++ == 0)
            first_loose = i;
    if (loose && n_tops > 0 && !from_json)
        die("'%s': %d image(s) lie directly in the folder (e.g. '%s') next to %d class folder(s): move them into a "
            "class folder (labels come from the top-level folders) or remove them",
            root, loose, files.items[first_loose], n_tops);
    dataset d = {0};
    /* Labels come from every file, so a class keeps its index; only the
     * first max_images are decoded. */
    d.n = max_images > 0 && max_images < files.n ? max_images : files.n;
    d.channels = channels, d.height = d.width = resolution;
    d.num_classes = from_json ? json_classes : n_tops > 1 ? n_tops : 1;
    d.source = xstrdup(root);
    size_t img = (size_t)channels * resolution * resolution;
    d.images = dataset_alloc_images((size_t)d.n, img, root, "use --max-images or a smaller --resolution");
    d.labels = xcalloc((size_t)d.n, sizeof(int32_t));
    int top = 0;
    for (int i = 0; i < d.n; i++) {
        if (from_json) {
            d.labels[i] = json_labels[i];
        } else if (n_tops > 1) {
            /* Paths are sorted, so their top-level folders come in order. */
            const char *slash = strchr(files.items[i], '/');
            size_t len = slash ? (size_t)(slash - files.items[i]) : 0;
            while (slash && top < n_tops - 1 &&
                   !(strlen(tops[top]) == len && !strncmp(tops[top], files.items[i], len)))
                top++;
            d.labels[i] = slash ? top : 0;
        }
    }
    /* Decoding and cropping, one image per thread at a time: each writes
     * its own slot, so the result does not depend on the thread count. */
    progress pb = progress_start("prepare", d.n, "img");
    long long done = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < d.n; i++) {
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", root, files.items[i]);
        image im = image_read(full, channels);
        adm_center_crop(d.images + (size_t)i * img, im.pixels, channels, im.height, im.width, resolution);
        image_free(&im);
#pragma omp critical(prepare_progress)
        progress_update(&pb, ++done, NULL);
    }
    progress_finish(&pb);
    for (int i = 0; i < files.n; i++)
        free(files.items[i]);
    for (int k = 0; k < n_tops; k++)
        free(tops[k]);
    free(files.items);
    free(tops);
    free(json_labels);
    return d;
}
