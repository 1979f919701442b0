/* PNG write/read round trip, grids, and the reference's float → uint8 rule. */
#include <math.h>
#include <unistd.h>

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
    RUN(test_grid_layout);
    RUN(test_model_range_truncates);
    RUN(test_model_range_counts_non_finite);
    return test_summary();
}
