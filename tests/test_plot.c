/* Loss-curve PNGs: the file is written, has the plot's size, and the series
 * colours appear where the data says; non-finite points are skipped. */
#include <math.h>
#include <unistd.h>

#include "io/image.h"
#include "io/metrics_read.h"
#include "io/plot.h"
#include "test.h"

static char tmpdir[64];

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b ? b : "build");
    return path;
}

/* tmpdir/name, written with `len` bytes of `text` when text is non-NULL. */
static const char *tmp_file(const char *name, const char *text, size_t len)
{
    static char bufs[8][256];
    static int k;
    char *p = bufs[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    if (text) {
        FILE *f = fopen(p, "wb");
        fwrite(text, 1, len, f);
        fclose(f);
    }
    return p;
}
#define TMP_TEXT(name, literal) tmp_file(name, literal, sizeof(literal) - 1)

/* `repae plot ARGS` must fail with `want` in its message. */
static void plot_fails(const char *args, const char *want)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s plot %s --out %s/out.png", repae_bin(), args, tmpdir);
    expect_command_fails(cmd, want);
}

static int count_colour(const image *im, int r, int g, int b)
{
    size_t hw = (size_t)im->height * im->width;
    int n = 0;
    for (size_t i = 0; i < hw; i++)
        n += im->pixels[i] == r && im->pixels[hw + i] == g && im->pixels[2 * hw + i] == b;
    return n;
}

/* Black pixels above the plot area's top-left corner, where the y label goes. */
static int black_in_corner(const image *im)
{
    size_t hw = (size_t)im->height * im->width;
    int n = 0;
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 64; x++) {
            size_t i = (size_t)y * im->width + x;
            n += im->pixels[i] == 0 && im->pixels[hw + i] == 0 && im->pixels[2 * hw + i] == 0;
        }
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
    plot_png(path, s, 2, "step", NULL, false);
    image im = image_read(path, 0);
    CHECK(im.channels == 3 && im.width == 800 && im.height == 480, "plot is %dx%dx%d", im.channels, im.width,
          im.height);
    int blue = count_colour(&im, 31, 119, 180), orange = count_colour(&im, 255, 127, 14);
    /* Each series draws a 2-pixel line across ~700 px plus its legend swatch. */
    CHECK(blue > 700 && orange > 600, "series pixels: blue %d orange %d", blue, orange);
    CHECK(black_in_corner(&im) == 0, "no y label drawn without one: %d black pixels", black_in_corner(&im));
    image_free(&im);
    plot_png(path, s, 1, "step", NULL, true); /* log scale must not fail */
    plot_png(path, s, 2, "step", "FD", false);
    im = image_read(path, 0);
    /* "fd" in the 5×7 font: 11 pixels of "f", 16 of "d". */
    CHECK(black_in_corner(&im) == 27, "y label 'FD' above the axis: %d black pixels", black_in_corner(&im));
    image_free(&im);
    unlink(path);
}

/* Bands: shaded in a light tint of the series colour (20 % over white)
 * between lower and upper, under the curve; a plot without bands has none of
 * that tint; non-finite band points leave a gap; the axis range covers the
 * band. */
static void test_plot_bands(void)
{
    const char *path = tmp_file("band.png", NULL, 0);
    double x[20], y[20], lo[20], hi[20];
    for (int i = 0; i < 20; i++)
        x[i] = 100 * i, y[i] = 10 - 0.3 * i, lo[i] = y[i] - 1, hi[i] = i == 7 ? NAN : y[i] + 1;
    plot_series s = {"fd", x, y, 20, lo, hi};
    plot_png(path, &s, 1, "step", NULL, false);
    image im = image_read(path, 0);
    CHECK(im.channels == 3 && im.width == 800 && im.height == 480, "banded plot is %dx%dx%d", im.channels, im.width,
          im.height);
    int tint = count_colour(&im, 210, 228, 240), blue = count_colour(&im, 31, 119, 180);
    /* The band spans ~700 columns, about 2/12.6 of ~410 rows high, minus the
     * gap around point 7 and the curve drawn over it. */
    CHECK(tint > 20000 && blue > 700, "band pixels %d, curve pixels %d", tint, blue);
    image_free(&im);
    plot_series plain = {"fd", x, y, 20};
    plot_png(path, &plain, 1, "step", NULL, false);
    im = image_read(path, 0);
    CHECK(count_colour(&im, 210, 228, 240) == 0, "no band drawn without lower/upper");
    image_free(&im);
    plot_png(path, &s, 1, "step", NULL, true); /* log scale with a band */
    double all_nan[20];
    for (int i = 0; i < 20; i++)
        all_nan[i] = NAN;
    plot_series gap = {"fd", x, y, 20, all_nan, all_nan};
    plot_png(path, &gap, 1, "step", NULL, false);
}

/* `repae plot --bands` on what `repae speedup --curves` writes: K, K_min, K_max
 * (null where a run has no point); a key without them is drawn plain, with a warning. */
static void test_plot_cli_bands(void)
{
    const char *m = TMP_TEXT("curves.jsonl",
                             "{\"step\":400,\"a\":10,\"a_min\":9,\"a_max\":11,\"b\":8,\"b_min\":7.5,\"b_max\":8.5,\"c\":5}\n"
                             "{\"step\":800,\"a\":7,\"a_min\":6,\"a_max\":8,\"b\":null,\"b_min\":null,\"b_max\":null,\"c\":4}\n"
                             "{\"step\":1200,\"a\":5,\"a_min\":4.5,\"a_max\":5.5,\"b\":4,\"b_min\":3,\"b_max\":5,\"c\":3}\n");
    char cmd[1024], err[1024];
    snprintf(cmd, sizeof cmd, "%s plot %s --keys a,b,c --bands --out %s/bands.png", repae_bin(), m, tmpdir);
    int rc = run_command(cmd, NULL, 0, err, sizeof err);
    CHECK(rc == 0, "plot --bands: status %d: %s", rc, err);
    CHECK(strstr(err, "no c_min and c_max") != NULL, "warning for the key without a band: %s", err);
    image im = image_read(tmp_file("bands.png", NULL, 0), 0);
    CHECK(im.width == 800 && im.height == 480 && count_colour(&im, 210, 228, 240) > 1000, "band of a drawn");
    image_free(&im);
}

/* Catalogue item 1: x values near 1e17 have a float spacing of 16, so a tick
 * loop `v += 2` never ended.  The plot itself must finish for any finite
 * input (a 10 s alarm turns a hang into a failure). */
typedef struct { double x0, x1, y0, y1; } plot_range;
static void plot_range_child(void *ctx)
{
    const plot_range *r = ctx;
    alarm(10);
    double x[2] = {r->x0, r->x1}, y[2] = {r->y0, r->y1};
    plot_series s = {"loss", x, y, 2};
    plot_png(tmp_file("range.png", NULL, 0), &s, 1, "step", NULL, false);
    double lo[2] = {fmin(y[0], y[1]), -INFINITY}, hi[2] = {fmax(y[0], y[1]), r->y1};
    plot_series banded = {"loss", x, y, 2, lo, hi}; /* and with a band over the same ranges */
    plot_png(tmp_file("range.png", NULL, 0), &banded, 1, "step", NULL, false);
}

static void test_plot_extreme_ranges_finish(void)
{
    const plot_range cases[] = {
        {1e17, 1e17 + 16, 0.5, 0.25},    /* the reported hang */
        {0, 1, 1e17, 1e17 + 16},         /* the same on the y axis */
        {1e17, 1e17, 1e17, 1e17},        /* flat axes at a magnitude where +1 is lost */
        {-1e308, 1e308, -1e308, 1e308},  /* a range that overflows to inf */
        {0, 1e-300, 5e-324, 1e-323},     /* subnormal ranges */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[1024];
        int rc = run_in_child(plot_range_child, (void *)&cases[i], err, sizeof err);
        CHECK(rc == 0, "plot of range case %zu: status %d (%s)", i, rc, err);
    }
}

/* The same file through the command: steps beyond 2^53 are refused naming
 * the file and the key (doubles cannot hold such step counts exactly). */
static void test_plot_cli_huge_steps_refused(void)
{
    const char *m = TMP_TEXT("huge.jsonl", "{\"step\": 1e17, \"sit_loss\": 0.5}\n"
                                           "{\"step\": 100000000000000016, \"sit_loss\": 0.25}\n");
    char args[512];
    snprintf(args, sizeof args, "%s --keys sit_loss", m);
    plot_fails(args, "huge.jsonl': line 1: 'step' = 1e+17 is beyond 2^53");
}

/* Catalogue item 7 (read side): null, "nan" and the bare nan older runs
 * wrote are gaps, not errors; the curve continues after them. */
static void test_metrics_nan_values_are_gaps(void)
{
    const char *m = TMP_TEXT("gaps.jsonl", "{\"step\": 1, \"loss\": 0.5, \"other\": 1}\n"
                                           "{\"step\": 2, \"loss\": null}\n"
                                           "\n"
                                           "{\"step\": 3, \"loss\": \"nan\"}\n"
                                           "{\"step\": 4, \"loss\": nan, \"note\": \"x: nan\"}\n"
                                           "{\"step\": 5, \"loss\": -nan}\n"
                                           "{\"step\": 6,\"loss\":inf}\n"
                                           "{\"step\": 7, \"loss\": 0.25}\n");
    const char *keys[] = {"loss", "other"};
    metrics_table t = metrics_read(m, "step", keys, 2);
    CHECK(t.n == 7, "rows %zu, want 7", t.n);
    CHECK(t.found[0] && t.found[1], "found %d %d", t.found[0], t.found[1]);
    if (t.n == 7) {
        CHECK(t.y[0][0] == 0.5 && t.y[0][6] == 0.25 && t.x[6] == 7, "ends: %g %g x %g", t.y[0][0], t.y[0][6],
              t.x[6]);
        for (int i = 1; i < 6; i++)
            CHECK(isnan(t.y[0][i]), "row %d: %g, want a gap", i, t.y[0][i]);
        CHECK(t.y[1][0] == 1 && isnan(t.y[1][1]), "other: %g %g", t.y[1][0], t.y[1][1]);
    }
    metrics_free(&t);
    char cmd[1024], err[1024];
    snprintf(cmd, sizeof cmd, "%s plot %s --keys loss --smooth 3 --out %s/gaps.png", repae_bin(), m, tmpdir);
    int rc = run_command(cmd, NULL, 0, err, sizeof err);
    CHECK(rc == 0, "plot with gaps: status %d: %s", rc, err);
}

/* Catalogue item 15: junk after the object, a NUL byte, a non-number value
 * and an empty --keys are errors naming the file (or flag) and line. */
static void test_metrics_bad_lines_refused(void)
{
    char args[512];
    const char *junk = TMP_TEXT("junk.jsonl", "{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2, \"loss\": 0.4} xyz\n");
    snprintf(args, sizeof args, "%s --keys loss", junk);
    plot_fails(args, "junk.jsonl': line 2: unexpected text after the JSON object");
    const char *two = TMP_TEXT("two.jsonl", "{\"step\": 1, \"loss\": 0.5}{\"step\": 2}\n");
    snprintf(args, sizeof args, "%s --keys loss", two);
    plot_fails(args, "two.jsonl': line 1: unexpected text");
    /* a y label longer than fits above the axis */
    const char *ok = TMP_TEXT("ok.jsonl", "{\"step\": 1, \"loss\": 0.5}\n");
    snprintf(args, sizeof args, "%s --keys loss --y-label %081d", ok, 0);
    plot_fails(args, "plot --y-label: 81 characters; at most 80 fit above the axis");
    const char *nul = TMP_TEXT("nul.jsonl", "{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2,\0 \"loss\": 0.4}\n");
    snprintf(args, sizeof args, "%s --keys loss", nul);
    plot_fails(args, "nul.jsonl': line 2 contains a NUL byte");
    const char *str = TMP_TEXT("str.jsonl", "{\"step\": 1, \"loss\": \"abc\"}\n");
    snprintf(args, sizeof args, "%s --keys loss", str);
    plot_fails(args, "str.jsonl': line 1: 'loss' is not a number");
    const char *xnull = TMP_TEXT("xnull.jsonl", "{\"step\": null, \"loss\": 1}\n");
    snprintf(args, sizeof args, "%s --keys loss", xnull);
    plot_fails(args, "xnull.jsonl': line 1: the x value 'step' is not a finite number");
    const char *good = TMP_TEXT("good.jsonl", "{\"step\": 1, \"loss\": 0.5}\n");
    snprintf(args, sizeof args, "%s --keys ''", good);
    plot_fails(args, "plot --keys '': empty scalar name");
    snprintf(args, sizeof args, "%s --keys loss,,loss", good);
    plot_fails(args, "empty scalar name");
}

/* metrics_read's edges: a file longer than its first allocation (1024
 * rows, twice over), a key whose name holds ":nan" (inside a string the
 * legacy tokens are left alone), "Infinity" as a string (a gap), an x of
 * exactly 2^53 (still exact), and the number of keys read, 1 to 8. */
typedef struct {
    const char *path;
    int n_keys;
} read_keys_case;

static void read_keys_child(void *ctx)
{
    static const char *keys[9] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    const read_keys_case *c = ctx;
    metrics_table t = metrics_read(c->path, "step", keys, c->n_keys);
    metrics_free(&t);
}

static void test_metrics_read_edges(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/long.jsonl", tmpdir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 3000; i++)
        fprintf(f, "{\"step\": %d, \"loss\": %d.5, \"a:nan\": %d}\n", 10 * i, i, -i);
    fclose(f);
    const char *keys[] = {"loss", "a:nan"};
    metrics_table t = metrics_read(path, "step", keys, 2);
    CHECK(t.n == 3000, "rows %zu, want 3000", t.n);
    if (t.n == 3000)
        for (int i = 0; i < 3000; i += 1)
            if (t.x[i] != 10.0 * i || t.y[0][i] != i + 0.5 || t.y[1][i] != -i) {
                CHECK(0, "row %d: x %g loss %g a:nan %g", i, t.x[i], t.y[0][i], t.y[1][i]);
                break;
            }
    metrics_free(&t);
    CHECK(t.x == NULL && t.n == 0 && t.n_keys == 0, "metrics_free left the table");

    const char *m = TMP_TEXT("edges.jsonl", "{\"step\": 9007199254740992, \"loss\": \"Infinity\", \"k\\\": nan\": 3}\n"
                                            "{\"step\": 1, \"loss\": \"-infinity\", \"k\\\": nan\": 4}\n");
    const char *k2[] = {"loss", "k\": nan"};
    t = metrics_read(m, "step", k2, 2);
    CHECK(t.n == 2 && t.x[0] == 9007199254740992.0 && isnan(t.y[0][0]) && isnan(t.y[0][1]) && t.y[1][0] == 3 &&
              t.y[1][1] == 4,
          "edges: n %zu x %g loss %g %g k %g %g", t.n, t.x[0], t.y[0][0], t.y[0][1], t.y[1][0], t.y[1][1]);
    metrics_free(&t);

    for (int n = 0; n <= 9; n++) {
        read_keys_case c = {m, n};
        char err[512];
        int rc = run_in_child(read_keys_child, &c, err, sizeof err);
        if (n >= 1 && n <= METRICS_MAX_KEYS)
            CHECK(rc == 0, "%d keys refused: %s", n, err);
        else
            CHECK(rc == 1 && strstr(err, "between 1 and 8 scalars can be read"), "%d keys: status %d, %s", n, rc,
                  err);
    }
}

/* ---- reviewed images ----------------------------------------------------------------
 * Five plots compared pixel for pixel with PNGs in tests/fixtures/io/plot/,
 * each looked at when it was written (session 38): the grid and its tick
 * values, "%.4g" and "%.1e" labels, the log scale's labels as powers, bands
 * under the curves, gaps at NaN, a flat series, a lone point, eight colours
 * and a ninth that reuses the first, the legend box, every glyph of the font
 * and '?' for a character it lacks.
 * Both axes flat, a first label longer than the plot (cut), upper case.
 * The counts above say a plot has its parts; these say each part is where it
 * was.  A deliberate change to the drawing: look at the new image the
 * failure names, then copy it over the fixture
 * (REPAE_PLOT_WRITE_FIXTURES=1 build/tests/test_plot writes all five). */
typedef struct {
    const char *name, *x_label, *y_label;
    bool log_y;
    int n_series;
    plot_series s[9];
} golden_plot;

static void golden_compare(const golden_plot *g)
{
    char want_path[256], got_path[256];
    snprintf(want_path, sizeof want_path, "tests/fixtures/io/plot/%s.png", g->name);
    snprintf(got_path, sizeof got_path, "%s/golden_%s.png", tmpdir, g->name);
    if (getenv("REPAE_PLOT_WRITE_FIXTURES")) {
        plot_png(want_path, g->s, g->n_series, g->x_label, g->y_label, g->log_y);
        printf("   wrote %s\n", want_path);
        return;
    }
    plot_png(got_path, g->s, g->n_series, g->x_label, g->y_label, g->log_y);
    image got = image_read(got_path, 0), want = image_read(want_path, 0);
    CHECK(got.channels == 3 && got.width == 800 && got.height == 480, "%s: %dx%dx%d", g->name, got.channels,
          got.width, got.height);
    CHECK(want.channels == 3 && want.width == 800 && want.height == 480, "%s: the fixture is %dx%dx%d", want_path,
          want.channels, want.width, want.height);
    if (got.channels == want.channels && got.width == want.width && got.height == want.height) {
        size_t hw = (size_t)got.width * got.height, differ = 0, first = 0;
        for (size_t i = 0; i < hw; i++) {
            bool d = false;
            for (int c = 0; c < 3; c++)
                d |= got.pixels[c * hw + i] != want.pixels[c * hw + i];
            if (d && differ++ == 0)
                first = i;
        }
        CHECK(differ == 0, "%s: %zu pixels differ from %s, the first at x %zu y %zu (the new image: %s)", g->name,
              differ, want_path, first % (size_t)got.width, first / (size_t)got.width, got_path);
        if (differ == 0)
            unlink(got_path);
    }
    image_free(&got), image_free(&want);
}

static void test_plot_images_as_reviewed(void)
{
    enum { N = 60 };
    static double x[N], decay[N], noisy[N], lo[N], hi[N], big[N], tiny[N], tiny_lo[N], tiny_hi[N], neg_x[N], flat[N], lone_x[1], lone_y[1];
    static double lines[8][N];
    for (int i = 0; i < N; i++) {
        x[i] = 250.0 * i;
        decay[i] = 1.9 * exp(-i / 12.0) + 0.1;
        noisy[i] = i == 17 || i == 18 ? NAN : decay[i] + 0.15 * sin(i * 1.7);
        lo[i] = decay[i] * 0.8, hi[i] = i == 40 ? NAN : decay[i] * 1.25;
        big[i] = 1.2e5 + 9e4 * sin(i / 9.0);
        tiny[i] = 1e-4 * pow(1e6, (double)i / (N - 1)); /* 1e-4 .. 1e2: six decades */
        tiny_lo[i] = tiny[i] / 2, tiny_hi[i] = i >= 30 && i < 34 ? NAN : tiny[i] * 3;
        neg_x[i] = -30 + i;
        flat[i] = 2e5;
        for (int s = 0; s < 8; s++)
            lines[s][i] = s + 0.5 * cos(i / 7.0 + s);
    }
    lone_x[0] = 5, lone_y[0] = 1.5e5;
    static const double flat_x[3] = {3, 3, 3}, flat_y[3] = {5, 5, 5}; /* both axes flat */
    const golden_plot plots[] = {
        {"linear", "step", "loss", false, 2, {{"decay", x, decay, N, lo, hi}, {"noisy (gaps)", x, noisy, N}}},
        {"log_band", "step", "fid", true, 2, {{"tiny", x, tiny, N, tiny_lo, tiny_hi}, {"decay", x, decay, N}}},
        {"big_values", "epoch", "0123456789.-_+()abcdefghijklmnopqrstuvwxyz/:,=%'?", false, 3,
         {{"big", neg_x, big, N}, {"flat", neg_x, flat, N}, {"lone", lone_x, lone_y, 1}}},
        {"flat_long_label", "Zeta", "AZ az", false, 2,
         {{"AZ the first label is the longest, longer than the plot is wide: the legend box stops at the plot's "
           "width and the label is cut there",
           flat_x, flat_y, 3},
          {"z", flat_x, flat_y, 3}}},
        {"nine_series", "STEP", NULL, false, 9,
         {{"s0", x, lines[0], N}, {"s1", x, lines[1], N}, {"s2", x, lines[2], N}, {"s3", x, lines[3], N},
          {"s4", x, lines[4], N}, {"s5", x, lines[5], N}, {"s6", x, lines[6], N}, {"s7", x, lines[7], N},
          {"s8 = s0's colour, ~ is ?", x, decay, N}}},
    };
    for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++)
        golden_compare(&plots[i]);
}

/* --smooth's trailing moving average, against sums written out by hand:
 * the window's finite values only, a gap stays a gap, a window longer than
 * the series, window 1 is the identity. */
static void test_moving_average(void)
{
    double y[7] = {1, 2, NAN, 4, 8, INFINITY, 16};
    metrics_moving_average(y, 7, 3);
    const double want[7] = {1, 1.5, NAN, 3, 6, NAN, 12}; /* (1), (1+2), gap, (2+4), (4+8), gap, (8+16) */
    for (int i = 0; i < 7; i++)
        CHECK(isnan(want[i]) ? isnan(y[i]) : fabs(y[i] - want[i]) < 1e-12, "window 3: y[%d] = %g, want %g", i, y[i],
              want[i]);
    double z[5] = {3, 5, 7, 9, 11};
    metrics_moving_average(z, 5, 10);
    const double running[5] = {3, 4, 5, 6, 7};
    for (int i = 0; i < 5; i++)
        CHECK(fabs(z[i] - running[i]) < 1e-12, "window 10 over 5 values: z[%d] = %g, want %g", i, z[i], running[i]);
    double w[4] = {0.25, NAN, -3, 1e300};
    metrics_moving_average(w, 4, 1);
    CHECK(w[0] == 0.25 && isnan(w[1]) && w[2] == -3 && w[3] == 1e300, "window 1 changed the values");
    metrics_moving_average(NULL, 0, 5); /* nothing to average */
}

/* The command's edges: a one-line file plots; a y label of exactly 80
 * characters fits; the output's path is printed; --bands warns for each key
 * that lacks K_min or K_max (a key with only one of them too), and one
 * without a band has none drawn. */
static void test_plot_cli_edges(void)
{
    const char *one = TMP_TEXT("one.jsonl", "{\"step\": 3, \"loss\": 0.5}\n");
    char cmd[1024], out[1024], err[2048];
    snprintf(cmd, sizeof cmd, "%s plot %s --keys loss --y-label %080d --smooth 5 --out %s/one.png", repae_bin(), one,
             0, tmpdir);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    char want[600];
    snprintf(want, sizeof want, "%s/one.png\n", tmpdir);
    CHECK(rc == 0 && !strcmp(out, want), "one line, an 80-character y label: status %d, stdout '%s', stderr %s", rc,
          out, err);
    const char *m = TMP_TEXT("half.jsonl", "{\"step\": 1, \"a\": 5, \"a_min\": 4, \"a_max\": 6, \"b\": 3, \"b_min\": 2}\n"
                                           "{\"step\": 2, \"a\": 4, \"a_min\": 3, \"a_max\": 5, \"b\": 2, \"b_min\": 1}\n");
    snprintf(cmd, sizeof cmd, "%s plot %s --keys b,a --bands --out %s/half.png", repae_bin(), m, tmpdir);
    rc = run_command(cmd, NULL, 0, err, sizeof err);
    CHECK(rc == 0 && strstr(err, "no b_min and b_max") && !strstr(err, "no a_min"),
          "--bands with b_min alone: status %d, stderr %s", rc, err);
    image im = image_read(tmp_file("half.png", NULL, 0), 0);
    /* b, the first series, has no band (its tint would be blue's); a, the second, has orange's: 20 % of
     * 255,127,14 over white */
    CHECK(count_colour(&im, 255, 229, 207) > 1000 && count_colour(&im, 210, 228, 240) == 0,
          "bands: a's %d pixels, b's %d", count_colour(&im, 255, 229, 207), count_colour(&im, 210, 228, 240));
    image_free(&im);
    /* a key that is not in the file, first or not */
    snprintf(cmd, sizeof cmd, "%s plot %s --keys nosuch,a --out %s/x.png", repae_bin(), m, tmpdir);
    expect_command_fails(cmd, "half.jsonl': no scalar named 'nosuch' (check --keys)");
    /* --smooth changes what is drawn; --smooth 1 does not */
    const char *zig = TMP_TEXT("zig.jsonl", "{\"step\": 1, \"l\": 1}\n{\"step\": 2, \"l\": 3}\n"
                                            "{\"step\": 3, \"l\": 1}\n{\"step\": 4, \"l\": 3}\n"
                                            "{\"step\": 5, \"l\": 1}\n{\"step\": 6, \"l\": 3}\n");
    const char *outs[3] = {"zig0.png", "zig1.png", "zig3.png"};
    const char *flags[3] = {"", "--smooth 1", "--smooth 3"};
    image zim[3];
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "%s plot %s --keys l %s --out %s/%s", repae_bin(), zig, flags[k], tmpdir, outs[k]);
        rc = run_command(cmd, NULL, 0, err, sizeof err);
        CHECK(rc == 0, "plot %s: status %d: %s", flags[k], rc, err);
        zim[k] = image_read(tmp_file(outs[k], NULL, 0), 0);
    }
    size_t bytes = (size_t)3 * 800 * 480;
    CHECK(!memcmp(zim[0].pixels, zim[1].pixels, bytes) && memcmp(zim[0].pixels, zim[2].pixels, bytes),
          "--smooth 1 must draw the raw curve and --smooth 3 another");
    for (int k = 0; k < 3; k++)
        image_free(&zim[k]);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repae_plot_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    RUN(test_plot_draws_series);
    RUN(test_plot_bands);
    RUN(test_plot_cli_bands);
    RUN(test_plot_extreme_ranges_finish);
    RUN(test_plot_cli_huge_steps_refused);
    RUN(test_metrics_nan_values_are_gaps);
    RUN(test_metrics_bad_lines_refused);
    RUN(test_metrics_read_edges);
    RUN(test_plot_images_as_reviewed);
    RUN(test_moving_average);
    RUN(test_plot_cli_edges);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        return 1;
    return test_summary();
}
