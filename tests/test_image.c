/* PNG write/read round trip, grids, and the reference's float → uint8 rule. */
#include <math.h>
#include <unistd.h>
#include <zlib.h>

#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <jpeglib.h>

#include "core/error.h"
#include "data/image_folder.h"
#include "data/pil_resize.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "test.h"

static void test_png_round_trip(void)
{
    char path[] = "/tmp/repae_png_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    uint8_t px[3 * 5 * 7];
    for (int i = 0; i < 105; i++)
        px[i] = (uint8_t)(i * 37);
    image_write_png(path, px, 3, 5, 7);
    image im = image_read(path, 0);
    CHECK(im.channels == 3 && im.height == 5 && im.width == 7, "shape %d %d %d", im.channels, im.height, im.width);
    CHECK(!memcmp(im.pixels, px, sizeof px), "RGB PNG pixels differ after a round trip");
    image grey = image_read(path, 1);
    /* pixel 0: R=0, G=(35*37)&255, B=(70*37)&255 */
    int r = px[0], g = px[35], b = px[70];
    int want = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; /* Pillow's convert("L") */
    CHECK(grey.channels == 1 && grey.pixels[0] == want, "grey conversion %d, want %d", grey.pixels[0], want);
    image_free(&grey);
    image_free(&im);
    unlink(path);
}

/* A W×H JPEG of C (1 or 3) components at quality 100, flat colour per
 * channel `colour` with a bright square in the top-left 8×8 block. */
static void write_jpeg(const char *path, int C, int W, int H, const int *colour)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)W, c.image_height = (JDIMENSION)H, c.input_components = C;
    c.in_color_space = C == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[3 * 64];
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++)
                row[x * C + k] = (unsigned char)(x < 8 && y < 8 ? 250 : colour[k]);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* JPEG decoding (ImageNet's format): shape not transposed, channels planar
 * in R, G, B order, grey replicated or kept; values within JPEG's rounding. */
static void test_jpeg_read(void)
{
    char path[] = "/tmp/repae_jpg_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const int W = 40, H = 24, rgb[3] = {200, 100, 30}, grey[1] = {77};
    write_jpeg(path, 3, W, H, rgb);
    image im = image_read(path, 0);
    CHECK(im.channels == 3 && im.height == H && im.width == W, "RGB JPEG shape %d %d %d", im.channels, im.height,
          im.width);
    int worst = 0;
    for (int k = 0; k < 3 && im.channels == 3; k++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int want = x < 8 && y < 8 ? 250 : rgb[k], got = im.pixels[((size_t)k * H + y) * W + x];
                /* the square's edge rings a little; away from it, flat */
                if ((x > 11 || y > 11) && abs(got - want) > worst)
                    worst = abs(got - want);
            }
    CHECK(worst <= 3, "RGB JPEG pixels off by up to %d", worst);
    CHECK(im.channels == 3 && im.pixels[0] >= 245 && im.pixels[(size_t)H * W] >= 245, "the bright square at (0, 0)");
    image_free(&im);

    write_jpeg(path, 1, W, H, grey);
    im = image_read(path, 0);
    CHECK(im.channels == 1 && im.height == H && im.width == W, "grey JPEG shape %d %d %d", im.channels, im.height,
          im.width);
    CHECK(im.channels == 1 && abs(im.pixels[(size_t)(H - 1) * W + W - 1] - 77) <= 2, "grey JPEG value %d",
          im.pixels[(size_t)(H - 1) * W + W - 1]);
    image_free(&im);
    im = image_read(path, 3);
    CHECK(im.channels == 3 && !memcmp(im.pixels, im.pixels + (size_t)H * W, (size_t)H * W) &&
              !memcmp(im.pixels, im.pixels + 2 * (size_t)H * W, (size_t)H * W),
          "grey JPEG read as RGB: three equal planes");
    image_free(&im);
    unlink(path);
}

static void write_two_channels(void *unused)
{
    (void)unused;
    uint8_t px[8] = {0};
    image_write_png(test_tmp_path("two.png"), px, 2, 2, 2);
}

static void test_grid_layout(void)
{
    char path[] = "/tmp/repae_grid_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    uint8_t px[3 * 1 * 2 * 2];
    for (int i = 0; i < 12; i++)
        px[i] = (uint8_t)(10 + i);
    image_grid_png(path, px, 3, 1, 2, 2, 2); /* 2 columns, 2 rows, 2-pixel borders */
    image im = image_read(path, 0);
    CHECK(im.height == 2 * 4 + 2 && im.width == 2 * 4 + 2, "grid size %dx%d", im.height, im.width);
    CHECK(im.pixels[2 * im.width + 2] == 10 && im.pixels[2 * im.width + 6] == 14 && im.pixels[6 * im.width + 2] == 18,
          "images not at their grid cells");
    CHECK(im.pixels[0] == 0 && im.pixels[6 * im.width + 6] == 0, "borders and the empty cell must be black");
    image_free(&im);
    /* Colour, and every pixel: 3 RGB images of 2×3 in 2 columns; cols 0 means 1. */
    uint8_t rgb[3 * 3 * 2 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++)
        rgb[i] = (uint8_t)(1 + i);
    for (int cols = 0; cols <= 2; cols += 2) {
        int c_used = cols ? cols : 1, rows = (3 + c_used - 1) / c_used, GH = rows * 4 + 2, GW = c_used * 5 + 2;
        image_grid_png(path, rgb, 3, 3, 2, 3, cols);
        im = image_read(path, 0);
        CHECK(im.channels == 3 && im.height == GH && im.width == GW, "cols %d: grid %dx%dx%d", cols, im.channels,
              im.height, im.width);
        int bad = 0;
        for (int c = 0; c < 3 && im.height == GH && im.width == GW; c++)
            for (int y = 0; y < GH; y++)
                for (int x = 0; x < GW; x++) {
                    int cy = (y - 2) / 4, cx = (x - 2) / 5, iy = (y - 2) % 4, ix = (x - 2) % 5, n = cy * c_used + cx;
                    int inside = y >= 2 && x >= 2 && iy < 2 && ix < 3 && n < 3;
                    int want = inside ? rgb[((n * 3 + c) * 2 + iy) * 3 + ix] : 0;
                    bad += im.pixels[((size_t)c * GH + y) * GW + x] != want;
                }
        CHECK(bad == 0, "cols %d: %d grid pixels wrong", cols, bad);
        image_free(&im);
    }
    unlink(path);
    expect_die("a 2-channel PNG", write_two_channels, NULL, "internal: cannot write a 2-channel PNG to '");
}

static void test_model_range_truncates(void)
{
    float x[6] = {-1.0f, 1.0f, 0.0f, -2.0f, 3.0f, 0.999f};
    uint8_t u[6];
    image_from_model_range(u, x, 6);
    /* 255*(0+1)/2 = 127.5 → 127 (truncation, no +0.5); 0.999 → 254.87 → 254 */
    CHECK(u[0] == 0 && u[1] == 255 && u[2] == 127 && u[3] == 0 && u[4] == 255 && u[5] == 254,
          "got %d %d %d %d %d %d", u[0], u[1], u[2], u[3], u[4], u[5]);
}

/* Issue 12 item 5: NaN → uint8 is undefined behaviour and gave black
 * squares; non-finite inputs are now counted (written as 0) for the caller
 * to refuse. */
static void test_model_range_counts_non_finite(void)
{
    const float x[5] = {0.0f, NAN, INFINITY, -INFINITY, 1.0f};
    uint8_t u[5];
    size_t bad = image_from_model_range(u, x, 5);
    CHECK(bad == 3, "non-finite count %zu, want 3", bad);
    CHECK(u[0] == 127 && u[1] == 0 && u[2] == 0 && u[3] == 0 && u[4] == 255, "values %d %d %d %d %d", u[0], u[1],
          u[2], u[3], u[4]);
    CHECK(image_from_model_range(u, x, 1) == 0, "a finite input counted as bad");
}


/* The reference reads images with PIL (convert("RGB") / convert("L")) and
 * crops them with guided-diffusion's center_crop_arr: dev/ref/image_ref.py
 * wrote files of every kind an image folder holds and what PIL makes of
 * them.  Every value must be equal (JPEGs go through the same libjpeg). */
static int count_diff(const char *what, const uint8_t *chw, const safetensors *st, const char *name, int C, int H,
                      int W)
{
    const st_tensor *t = safetensors_find(st, name);
    if (!t) {
        CHECK(0, "%s: no '%s' in the fixture", what, name);
        return -1;
    }
    const uint8_t *hwc = safetensors_tensor_bytes(st, t);
    int64_t want_c = t->ndim == 3 ? t->shape[2] : 1;
    if (t->shape[0] != H || t->shape[1] != W || want_c != C) {
        CHECK(0, "%s: shape %dx%dx%d, PIL's %dx%dx%d", what, H, W, C, (int)t->shape[0], (int)t->shape[1], (int)want_c);
        return -1;
    }
    int bad = 0, worst = 0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H * W; i++) {
            int d = abs((int)chw[(size_t)c * H * W + i] - (int)hwc[(size_t)i * C + c]);
            bad += d != 0;
            worst = d > worst ? d : worst;
        }
    CHECK(bad == 0, "%s: %d of %d values differ from PIL's (by up to %d)", what, bad, C * H * W, worst);
    return bad;
}

/* A fixture's [H, W, 3] image as our [3, H, W] planes (malloc'd). */
static uint8_t *planes_of(const safetensors *st, const st_tensor *t)
{
    int H = (int)t->shape[0], W = (int)t->shape[1];
    const uint8_t *hwc = safetensors_tensor_bytes(st, t);
    uint8_t *chw = xmalloc((size_t)3 * H * W);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < H * W; p++)
            chw[(size_t)c * H * W + p] = hwc[(size_t)p * 3 + c];
    return chw;
}

/* The fixture's i-th tensor of a numbered family ("crop_src.3"), or NULL
 * after the last. */
static const st_tensor *numbered(const safetensors *st, const char *family, int i)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%d", family, i);
    return safetensors_find(st, name);
}

static void test_pil_parity(void)
{
    safetensors *st = safetensors_open("tests/fixtures/io/image_pil.safetensors");
    static const char *files[] = {"rgb420.jpg", "rgb444.jpg", "grey.jpg", "cmyk.jpg", "rgb.png",
                                  "rgba.png",   "grey.png",   "la.png",   "palette.png", "rgb16.png"};
    char path[256], name[128], what[160];
    int file_crops = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "tests/fixtures/io/images/%s", files[i]);
        image rgb = image_read(path, 3), grey = image_read(path, 1);
        snprintf(name, sizeof name, "rgb.%s", files[i]);
        snprintf(what, sizeof what, "%s as RGB", files[i]);
        count_diff(what, rgb.pixels, st, name, 3, rgb.height, rgb.width);
        snprintf(name, sizeof name, "l.%s", files[i]);
        snprintf(what, sizeof what, "%s as grey", files[i]);
        count_diff(what, grey.pixels, st, name, 1, grey.height, grey.width);
        for (int r = 16; r <= 32; r *= 2) {
            snprintf(name, sizeof name, "crop%d.%s", r, files[i]);
            if (!safetensors_find(st, name))
                continue;
            file_crops++;
            uint8_t *crop = xmalloc((size_t)3 * r * r);
            adm_center_crop(crop, rgb.pixels, 3, rgb.height, rgb.width, r);
            snprintf(what, sizeof what, "%s cropped to %d", files[i], r);
            count_diff(what, crop, st, name, 3, r, r);
            free(crop);
        }
        image_free(&rgb), image_free(&grey);
    }
    const st_tensor *src;
    int crops = 0, resizes = 0;
    for (int i = 0; (src = numbered(st, "crop_src", i)); i++, crops++) {
        int H = (int)src->shape[0], W = (int)src->shape[1];
        snprintf(name, sizeof name, "crop_out.%d", i);
        int R = (int)safetensors_require(st, name)->shape[0];
        uint8_t *chw = planes_of(st, src), *crop = xmalloc((size_t)3 * R * R);
        adm_center_crop(crop, chw, 3, H, W, R);
        snprintf(what, sizeof what, "a %dx%d image cropped to %d", H, W, R);
        count_diff(what, crop, st, name, 3, R, R);
        free(chw), free(crop);
    }
    for (int i = 0; (src = numbered(st, "resize_src", i)); i++, resizes++) {
        int H = (int)src->shape[0], W = (int)src->shape[1];
        pil_filter filter = PIL_BOX;
        snprintf(name, sizeof name, "resize_box.%d", i);
        const st_tensor *want = safetensors_find(st, name);
        if (!want) {
            filter = PIL_BICUBIC;
            snprintf(name, sizeof name, "resize_bicubic.%d", i);
            want = safetensors_require(st, name);
        }
        int Ho = (int)want->shape[0], Wo = (int)want->shape[1];
        uint8_t *chw = planes_of(st, src), *out = xmalloc((size_t)3 * Ho * Wo);
        pil_resize_u8(out, chw, 3, H, W, Ho, Wo, filter);
        snprintf(what, sizeof what, "%s resize %dx%d to %dx%d", filter == PIL_BOX ? "BOX" : "BICUBIC", H, W, Ho, Wo);
        count_diff(what, out, st, name, 3, Ho, Wo);
        free(chw), free(out);
    }
    CHECK(file_crops == 17 && crops == 5 && resizes == 8,
          "the fixture's %d crops of the files, %d of larger images and %d resizes (image_ref.py writes 17, 5 and 8)",
          file_crops, crops, resizes);
    safetensors_close(st);
}


/* A YCCK JPEG (Photoshop's usual CMYK), which the fixture's PIL cannot
 * write: libjpeg turns it into the stored CMYK bytes, and the RGB must be
 * PIL's conversion of those (ink = 255 - byte; R = (255 - K) - C(255 - K)/255
 * with Pillow's rounding), written out here independently. */
static void test_ycck_jpeg(void)
{
    char path[] = "/tmp/repae_ycck_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    enum { W = 24, H = 16 };
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&c, f);
    c.image_width = W, c.image_height = H, c.input_components = 4, c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[4 * W];
    for (int y = 0; y < H; y++) {
        for (int i = 0; i < 4 * W; i++)
            row[i] = (unsigned char)((i * 37 + y * 53) % 256);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);

    struct jpeg_decompress_struct d;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    f = fopen(path, "rb");
    jpeg_stdio_src(&d, f);
    jpeg_read_header(&d, TRUE);
    CHECK(d.jpeg_color_space == JCS_YCCK, "the file is not YCCK (%d)", (int)d.jpeg_color_space);
    d.out_color_space = JCS_CMYK;
    jpeg_start_decompress(&d);
    static unsigned char stored[H][4 * W];
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = stored[d.output_scanline];
        jpeg_read_scanlines(&d, &r, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    fclose(f);

    image im = image_read(path, 0);
    CHECK(im.channels == 3 && im.height == H && im.width == W, "YCCK JPEG shape %d %d %d", im.channels, im.height,
          im.width);
    int bad = 0;
    for (int y = 0; y < H && im.channels == 3; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < 3; k++) {
                int ink = 255 - stored[y][4 * x + k], nk = stored[y][4 * x + 3];
                int want = nk - (int)floor(ink * nk / 255.0 + 0.5); /* MULDIV255 rounds half up */
                bad += im.pixels[((size_t)k * H + y) * W + x] != (want < 0 ? 0 : want);
            }
    CHECK(bad == 0, "%d YCCK values differ from PIL's conversion", bad);
    image_free(&im);
    unlink(path);
}


/* ---- the decoders' messages and limits ---- */

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

static void put_be32(bytes *b, uint32_t v)
{
    b->p = xrealloc(b->p, b->n + 4);
    for (int i = 0; i < 4; i++)
        b->p[b->n++] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_raw(bytes *b, const void *d, size_t n)
{
    b->p = xrealloc(b->p, b->n + n);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

/* A PNG chunk; crc_delta != 0 spoils its CRC. */
static void png_chunk(bytes *b, const char *type, const void *data, uint32_t n, uint32_t crc_delta)
{
    put_be32(b, n);
    size_t at = b->n;
    put_raw(b, type, 4);
    put_raw(b, data, n);
    put_be32(b, (uint32_t)crc32(crc32(0, NULL, 0), b->p + at, (uInt)(n + 4)) + crc_delta);
}

/* An 8-bit RGB PNG of W×H grey pixels; `text_crc_delta` adds a tEXt chunk
 * with that CRC error, `idat_crc_delta` spoils the image data's CRC. */
static bytes png_file(uint32_t W, uint32_t H, uint32_t text_crc_delta, uint32_t idat_crc_delta)
{
    bytes b = {0};
    put_raw(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    for (int i = 0; i < 4; i++)
        ihdr[i] = (uint8_t)(W >> (24 - 8 * i)), ihdr[4 + i] = (uint8_t)(H >> (24 - 8 * i));
    ihdr[8] = 8, ihdr[9] = 2; /* 8 bits, RGB */
    png_chunk(&b, "IHDR", ihdr, 13, 0);
    if (text_crc_delta)
        png_chunk(&b, "tEXt", "Comment\0hello", 13, text_crc_delta);
    size_t raw_n = (W <= 64 && H <= 64) ? (size_t)H * (1 + 3 * W) : 1;
    uint8_t *raw = xcalloc(raw_n, 1), z[4096];
    for (size_t i = 0; i < raw_n; i++)
        raw[i] = i % (1 + 3 * W) ? 120 : 0;
    uLongf zn = sizeof z;
    compress(z, &zn, raw, raw_n);
    free(raw);
    png_chunk(&b, "IDAT", z, (uint32_t)zn, idat_crc_delta);
    png_chunk(&b, "IEND", "", 0, 0);
    return b;
}

static void read_image_job(void *path)
{
    image im = image_read(path, 0);
    fprintf(stderr, "read %dx%dx%d\n", im.channels, im.height, im.width);
    image_free(&im);
}

static void expect_read(const char *what, const char *path, const char *stderr_has)
{
    char err[2048] = "";
    int status = run_in_child(read_image_job, (void *)path, err, sizeof err);
    CHECK(status == 0 && strstr(err, "read ") && (!stderr_has || strstr(err, stderr_has)),
          "%s: status %d, stderr lacks '%s': %s", what, status, stderr_has ? stderr_has : "read", err);
}

static void test_decoder_messages_and_limits(void)
{
    bytes b = png_file(4, 3, 0, 0);
    expect_read("a hand-made PNG", test_write_tmp("ok.png", b.p, b.n), NULL);
    free(b.p);
    /* An ancillary chunk's CRC error is libpng's warning: passed on with the file's name. */
    b = png_file(4, 3, 1, 0);
    expect_read("a tEXt chunk with a bad CRC", test_write_tmp("text.png", b.p, b.n), "text.png': PNG: tEXt: CRC error");
    free(b.p);
    /* The image data's own CRC error too, as PIL reads such a file (zlib's checksum still guards the pixels). */
    b = png_file(4, 3, 0, 1);
    expect_read("the image data's CRC", test_write_tmp("idat.png", b.p, b.n), "idat.png': PNG: IDAT: CRC error");
    free(b.p);
    /* A file cut after its image data (no IEND) reads, as in PIL; cut inside the data, it is refused with
     * libpng's own words in ours; a spoilt data byte fails zlib's checksum. */
    b = png_file(4, 3, 0, 0);
    expect_read("a PNG without IEND", test_write_tmp("noiend.png", b.p, b.n - 12), NULL);
    expect_die("a PNG cut inside its data", read_image_job, (void *)test_write_tmp("cut.png", b.p, b.n - 16),
               "cut.png': corrupt or truncated PNG (");
    b.p[b.n - 12 - 8] ^= 0x55; /* the zlib stream's last byte (its Adler-32), the IDAT CRC left stale */
    expect_die("a spoilt data byte", read_image_job, (void *)test_write_tmp("spoilt.png", b.p, b.n),
               "spoilt.png': corrupt or truncated PNG (");
    free(b.p);
    /* Sizes: refused from the header, before any pixel is allocated; 65,536 wide passes the size check, and
     * then its one short row of data does not. */
    static const struct {
        const char *label, *name;
        uint32_t W, H;
        const char *problem;
    } sizes[] = {
        {"a PNG 65,537 wide", "wide.png", 65537, 1, "unsupported PNG (65537x1, 3 channels; at most 256 megapixels)"},
        {"a PNG of 2^28 + 2^14 pixels", "big.png", 16385, 16384, "unsupported PNG (16385x16384"},
        {"a PNG 65,536 wide, one byte of data", "wide2.png", 65536, 1, "wide2.png': corrupt or truncated PNG ("},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        b = png_file(sizes[i].W, sizes[i].H, 0, 0);
        expect_die(sizes[i].label, read_image_job, (void *)test_write_tmp(sizes[i].name, b.p, b.n), sizes[i].problem);
        free(b.p);
    }

    /* A JPEG with bytes between its data and the end marker: libjpeg's warning, once, with the file's name;
     * the image still reads. */
    const int grey[1] = {90};
    const char *p = test_tmp_path("extra.jpg");
    write_jpeg(p, 1, 16, 16, grey);
    size_t n;
    uint8_t *j = (uint8_t *)read_file_all(p, &n);
    CHECK(n > 4 && j[n - 2] == 0xFF && j[n - 1] == 0xD9, "the JPEG ends with its EOI marker");
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n; i++)
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC2)) {
            sof = i;
            break;
        }
    CHECK(sof > 0, "the JPEG has a frame header");
    /* 2 stray bytes before the frame header, 3 before the end marker: two warnings from libjpeg, one printed. */
    uint8_t *k = xmalloc(n + 5);
    memcpy(k, j, sof), memcpy(k + sof, "xy", 2), memcpy(k + sof + 2, j + sof, n - 2 - sof);
    memcpy(k + n, "abc", 3), memcpy(k + n + 3, j + n - 2, 2);
    char err[2048] = "";
    p = test_write_tmp("extra.jpg", k, n + 5);
    int status = run_in_child(read_image_job, (void *)p, err, sizeof err);
    const char *warning = "extra.jpg': JPEG: Corrupt JPEG data: 2 extraneous bytes before marker 0xc";
    const char *first = strstr(err, warning);
    CHECK(status == 0 && first && !strstr(first + strlen(warning), "JPEG:") && strstr(err, "read 1x16x16"),
          "a JPEG with stray bytes in two places: status %d, stderr %s", status, err);
    /* Stray bytes before the end marker alone: seen only when the decoder reads to the end. */
    memcpy(k, j, n - 2), memcpy(k + n - 2, "abc", 3), memcpy(k + n + 1, j + n - 2, 2);
    err[0] = 0;
    status = run_in_child(read_image_job, (void *)test_write_tmp("tail.jpg", k, n + 3), err, sizeof err);
    CHECK(status == 0 && strstr(err, "tail.jpg': JPEG: Corrupt JPEG data: 3 extraneous bytes before marker 0xd9"),
          "stray bytes before a JPEG's end marker: status %d, stderr %s", status, err);
    /* libjpeg's errors (not warnings) come back through our handler with the file's name. */
    memcpy(k, j, n);
    k[sof + 4] = 12; /* sample precision */
    expect_die("a 12-bit JPEG", read_image_job, (void *)test_write_tmp("p12.jpg", k, n),
               "p12.jpg': corrupt or truncated JPEG: Unsupported JPEG data precision 12");
    /* Its frame header claiming 16,385 × 16,385 pixels: refused before decoding. */
    memcpy(k, j, n);
    k[sof + 5] = 0x40, k[sof + 6] = 0x01, k[sof + 7] = 0x40, k[sof + 8] = 0x01; /* height, width = 16385 */
    expect_die("a JPEG of 16,385²", read_image_job, (void *)test_write_tmp("huge.jpg", k, n),
               "huge.jpg': unsupported JPEG (16385x16385, 1 components; at most 256 megapixels)");
    /* 16,384² is allowed: then its data run out. */
    k[sof + 5] = 0x40, k[sof + 6] = 0x00, k[sof + 7] = 0x40, k[sof + 8] = 0x00;
    expect_die("a JPEG of 16,384², its data of 16²", read_image_job, (void *)test_write_tmp("limit.jpg", k, n),
               "limit.jpg': corrupt or truncated JPEG");

    /* What the first bytes say: PNG's 8-byte signature, JPEG's 3 bytes, or neither. */
    static const struct {
        const char *name, *data;
        size_t n;
        const char *problem;
    } sniff[] = {
        {"png_sig_off.png", "XPNG\r\n\x1a\n\0\0\0\0", 12, "png_sig_off.png': not a PNG or JPEG file"},
        {"png7.png", "\x89PNG\r\n\x1a", 7, "png7.png': not a PNG or JPEG file"},
        {"soi3.jpg", "\xff\xd8\xff", 3, "soi3.jpg': corrupt or truncated JPEG"},
        {"soi2.jpg", "\xff\xd8", 2, "soi2.jpg': not a PNG or JPEG file"},
        {"text.jpg", "hello, not an image\n", 20, "text.jpg': not a PNG or JPEG file"},
        {"empty.png", "", 0, "empty.png': not a PNG or JPEG file"},
    };
    for (size_t i = 0; i < sizeof sniff / sizeof sniff[0]; i++)
        expect_die(sniff[i].name, read_image_job, (void *)test_write_tmp(sniff[i].name, sniff[i].data, sniff[i].n),
                   sniff[i].problem);
    free(j), free(k);
}

int main(void)
{
    RUN(test_png_round_trip);
    RUN(test_jpeg_read);
    RUN(test_pil_parity);
    RUN(test_ycck_jpeg);
    RUN(test_decoder_messages_and_limits);
    RUN(test_grid_layout);
    RUN(test_model_range_truncates);
    RUN(test_model_range_counts_non_finite);
    return test_summary();
}
