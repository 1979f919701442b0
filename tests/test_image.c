/* PNG write/read round trip, grids, and the reference's float → uint8 rule. */
#include <math.h>
#include <unistd.h>

#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <jpeglib.h>

#include "io/image.h"
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
    int want = (r * 299 + g * 587 + b * 114 + 500) / 1000;
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
    unlink(path);
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

int main(void)
{
    RUN(test_png_round_trip);
    RUN(test_jpeg_read);
    RUN(test_grid_layout);
    RUN(test_model_range_truncates);
    RUN(test_model_range_counts_non_finite);
    return test_summary();
}
