/* Loss-curve PNGs: the file is written, has the plot's size, and the series
 * colours appear where the data says; non-finite points are skipped. */
#include <math.h>
#include <unistd.h>

#include "io/image.h"
#include "io/plot.h"
#include "test.h"

static int count_colour(const image *im, int r, int g, int b)
{
    size_t hw = (size_t)im->height * im->width;
    int n = 0;
    for (size_t i = 0; i < hw; i++)
        n += im->pixels[i] == r && im->pixels[hw + i] == g && im->pixels[2 * hw + i] == b;
    return n;
}

static void test_plot_draws_series(void)
{
    char path[] = "/tmp/repae_plot_XXXXXX";
    close(mkstemp(path));
    double x[50], a[50], b[50];
    for (int i = 0; i < 50; i++)
        x[i] = i, a[i] = exp(-i / 10.0), b[i] = i == 20 ? NAN : 0.5;
    plot_series s[2] = {{"first", x, a, 50}, {"second", x, b, 50}};
    plot_png(path, s, 2, "step", false);
    image im = image_read(path, 0);
    CHECK(im.channels == 3 && im.width == 800 && im.height == 480, "plot is %dx%dx%d", im.channels, im.width,
          im.height);
    int blue = count_colour(&im, 31, 119, 180), orange = count_colour(&im, 255, 127, 14);
    /* Each series draws a 2-pixel line across ~700 px plus its legend swatch. */
    CHECK(blue > 700 && orange > 600, "series pixels: blue %d orange %d", blue, orange);
    image_free(&im);
    plot_png(path, s, 1, "step", true); /* log scale must not fail */
    unlink(path);
}

int main(void)
{
    RUN(test_plot_draws_series);
    return test_summary();
}
