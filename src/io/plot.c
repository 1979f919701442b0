#include "io/plot.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/image.h"

#define PW 800
#define PH 480
#define LEFT 70
#define RIGHT 20
#define TOP 20
#define BOTTOM 50

/* 5×7 glyphs, one byte per row, bit 4 = leftmost pixel. */
static const struct {
    char c;
    uint8_t rows[7];
} font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}}, {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
    {'g', {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}}, {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}}, {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01}}, {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}}, {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
    {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}}, {'\'', {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
};

static const uint8_t palette[][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                     {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};

typedef struct canvas {
    uint8_t *px; /* CHW, 3 channels */
} canvas;

static void put(canvas *cv, int x, int y, const uint8_t *rgb)
{
    if (x < 0 || y < 0 || x >= PW || y >= PH)
        return;
    for (int c = 0; c < 3; c++)
        cv->px[(size_t)c * PW * PH + (size_t)y * PW + x] = rgb[c];
}

/* Canvas coordinates far outside the image (a value the axis range cannot
 * resolve, or an infinite range) are clamped, so the int conversions below
 * stay defined; NaN draws nothing. */
static double clamp_coord(double v)
{
    return fmin(fmax(v, -4.0 * PW), 4.0 * PW);
}

/* Mixes `alpha` of rgb into the pixel: overlapping bands stay visible. */
static void blend(canvas *cv, int x, int y, const uint8_t *rgb, double alpha)
{
    if (x < 0 || y < 0 || x >= PW || y >= PH)
        return;
    for (int c = 0; c < 3; c++) {
        uint8_t *p = &cv->px[(size_t)c * PW * PH + (size_t)y * PW + x];
        *p = (uint8_t)lround(*p * (1 - alpha) + rgb[c] * alpha);
    }
}

static void line(canvas *cv, double x0, double y0, double x1, double y1, const uint8_t *rgb)
{
    if (isnan(x0) || isnan(y0) || isnan(x1) || isnan(y1))
        return;
    x0 = clamp_coord(x0), y0 = clamp_coord(y0), x1 = clamp_coord(x1), y1 = clamp_coord(y1);
    int steps = (int)(fmax(fabs(x1 - x0), fabs(y1 - y0)) * 2) + 1;
    for (int i = 0; i <= steps; i++) {
        double f = (double)i / steps;
        int x = (int)lround(x0 + f * (x1 - x0)), y = (int)lround(y0 + f * (y1 - y0));
        put(cv, x, y, rgb);
        put(cv, x, y + 1, rgb); /* 2-pixel-thick strokes read better */
    }
}

/* Upper case is drawn as lower case; a space is blank; a character the
 * font lacks is drawn as '?', so a label never loses a letter unseen. */
static int glyph(char ch)
{
    for (int g = 0; g < (int)(sizeof font / sizeof font[0]); g++)
        if (font[g].c == ch)
            return g;
    return -1;
}

static void text(canvas *cv, int x, int y, const char *s, const uint8_t *rgb)
{
    for (; *s; s++, x += 6) {
        char ch = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
        if (ch == ' ')
            continue;
        int g = glyph(ch) >= 0 ? glyph(ch) : glyph('?');
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (font[g].rows[r] & (0x10 >> b))
                    put(cv, x + b, y + r, rgb);
    }
}

/* Tick spacing for `range`; 0 when there is none to draw (an infinite
 * range).  Callers step by index, never by `v += step`: near 1e17 a step of
 * 2 is below the float spacing and such a loop never ends. */
static double nice_step(double range, int target)
{
    if (!isfinite(range) || range <= 0)
        return 0;
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, bool log_y)
{
    if (log_y)
        v = pow(10, v);
    double a = fabs(v), whole = round(v);
    if (v == 0)
        snprintf(buf, n, "0");
    else if (a >= 1e7 || a < 1e-3)
        snprintf(buf, n, "%.1e", v);
    else if (a >= 1e4 && fabs(v - whole) <= 1e-9 * a)
        snprintf(buf, n, "%.0f", whole); /* steps: "12000", where %.4g wrote "1.2e+04" */
    else
        snprintf(buf, n, "%.4g", v);
}

static double y_value(double y, bool log_y)
{
    return log_y ? (y > 0 ? log10(y) : NAN) : y;
}

/* The plot area: pixel columns x0..x1, rows y1 (top) .. y0 (bottom), and the
 * data ranges mapped onto it. */
typedef struct plot_area {
    int x0, x1, y0, y1;
    double xmin, xmax, ymin, ymax;
} plot_area;

static double area_x(const plot_area *a, double v) { return a->x0 + (v - a->xmin) / (a->xmax - a->xmin) * (a->x1 - a->x0); }
static double area_y(const plot_area *a, double v) { return a->y0 - (v - a->ymin) / (a->ymax - a->ymin) * (a->y0 - a->y1); }

/* A series' band: every pixel column between two consecutive finite points
 * is shaded between the linearly interpolated lower and upper values. */
static void draw_band(canvas *cv, const plot_area *a, const plot_series *s, const uint8_t *rgb, bool log_y)
{
    const double alpha = 0.2;
    int last_col = INT32_MIN;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = i + 1 < s->n ? i + 1 : i; /* a lone last point shades its own column */
        double xa = s->x[i], xb = s->x[j];
        double la = y_value(s->lower[i], log_y), ua = y_value(s->upper[i], log_y);
        double lb = y_value(s->lower[j], log_y), ub = y_value(s->upper[j], log_y);
        if (!isfinite(xa) || !isfinite(la) || !isfinite(ua))
            continue;
        if (!isfinite(xb) || !isfinite(lb) || !isfinite(ub) || !(xb > xa))
            xb = xa, lb = la, ub = ua;
        double ca = clamp_coord(area_x(a, xa)), cb = clamp_coord(area_x(a, xb));
        int from = (int)fmax(ceil(ca), a->x0), to = (int)fmin(floor(cb), a->x1);
        if (from > to && cb == ca && lround(ca) >= a->x0 && lround(ca) <= a->x1)
            from = to = (int)lround(ca);
        for (int cx = from > last_col ? from : last_col + 1; cx <= to; cx++) {
            double f = cb > ca ? (cx - ca) / (cb - ca) : 0;
            double lo = la + f * (lb - la), hi = ua + f * (ub - ua);
            int top = (int)fmax(lround(clamp_coord(area_y(a, fmax(lo, hi)))), a->y1);
            int bottom = (int)fmin(lround(clamp_coord(area_y(a, fmin(lo, hi)))), a->y0);
            for (int cy = top; cy <= bottom; cy++)
                blend(cv, cx, cy, rgb, alpha);
            last_col = cx;
        }
    }
}

void plot_png(const char *path, const plot_series *series, int n_series, const char *x_label, const char *y_label,
              bool log_y)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i];
            double ys[3] = {y_value(series[s].y[i], log_y), NAN, NAN};
            if (series[s].lower && series[s].upper)
                ys[1] = y_value(series[s].lower[i], log_y), ys[2] = y_value(series[s].upper[i], log_y);
            for (int k = 0; k < 3; k++) {
                if (!isfinite(x) || !isfinite(ys[k]))
                    continue;
                xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, ys[k]), ymax = fmax(ymax, ys[k]);
            }
        }
    if (!isfinite(xmin))
        xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    /* A flat axis gets a unit of room, or more where 1 is below the spacing
     * of doubles at that magnitude. */
    if (!(xmax > xmin))
        xmax = xmin + fmax(1, fabs(xmin) * 1e-6);
    if (!(ymax > ymin)) {
        double d = fmax(1, fabs(ymin) * 1e-6);
        ymax = ymin + d, ymin -= d;
    }
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad, ymax += pad;

    canvas cv = {xmalloc((size_t)3 * PW * PH)};
    memset(cv.px, 255, (size_t)3 * PW * PH);
    const uint8_t black[3] = {0, 0, 0}, grey[3] = {225, 225, 225};
    int x0 = LEFT, x1 = PW - RIGHT, y0 = PH - BOTTOM, y1 = TOP;
#define SX(v) (x0 + ((v) - xmin) / (xmax - xmin) * (x1 - x0))
#define SY(v) (y0 - ((v) - ymin) / (ymax - ymin) * (y0 - y1))
    char buf[32];
    double ys = nice_step(ymax - ymin, 6);
    for (int i = 0; ys > 0 && i < 40; i++) {
        double v = (ceil(ymin / ys) + i) * ys;
        if (!(v <= ymax))
            break;
        line(&cv, x0, SY(v), x1, SY(v), grey);
        fmt_tick(buf, sizeof buf, v, log_y);
        text(&cv, x0 - 6 - 6 * (int)strlen(buf), (int)clamp_coord(SY(v)) - 3, buf, black);
    }
    double xs = nice_step(xmax - xmin, 8);
    for (int i = 0; xs > 0 && i < 40; i++) {
        double v = (ceil(xmin / xs) + i) * xs;
        if (!(v <= xmax))
            break;
        line(&cv, SX(v), y0, SX(v), y1, grey);
        fmt_tick(buf, sizeof buf, v, false);
        text(&cv, (int)clamp_coord(SX(v)) - 3 * (int)strlen(buf), y0 + 8, buf, black);
    }
    line(&cv, x0, y0, x1, y0, black);
    line(&cv, x0, y0, x0, y1, black);
    text(&cv, (x0 + x1) / 2 - 3 * (int)strlen(x_label), y0 + 24, x_label, black);
    /* The y axis's name above its tick labels (the font has no rotation). */
    char ylab[96];
    if (y_label && *y_label)
        snprintf(ylab, sizeof ylab, "%.*s%s", PLOT_Y_LABEL_MAX, y_label, log_y ? " (log scale)" : "");
    else
        snprintf(ylab, sizeof ylab, "%s", log_y ? "log scale" : "");
    text(&cv, 4, y1 - 12, ylab, black);
    /* Bands under every curve, then the curves, then the legend on a white box above them. */
    plot_area area = {x0, x1, y0, y1, xmin, xmax, ymin, ymax};
    for (int s = 0; s < n_series; s++)
        if (series[s].lower && series[s].upper)
            draw_band(&cv, &area, &series[s], palette[s % 8], log_y);
    for (int s = 0; s < n_series; s++) {
        const uint8_t *col = palette[s % 8];
        bool have = false;
        double px = 0, py = 0;
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (log_y)
                y = y > 0 ? log10(y) : NAN;
            if (!isfinite(x) || !isfinite(y)) {
                have = false;
                continue;
            }
            double cx = SX(x), cy = SY(y);
            if (have)
                line(&cv, px, py, cx, cy, col);
            else
                line(&cv, cx, cy, cx, cy, col);
            px = cx, py = cy, have = true;
        }
    }
    /* The legend's box fits its longest label; one longer than the plot is
     * wide is cut there. */
    const uint8_t white[3] = {255, 255, 255};
    int longest = 1, fits = (x1 - x0 - 40) / 6;
    for (int s = 0; s < n_series; s++) {
        size_t len = strlen(series[s].label);
        longest = len > (size_t)longest ? (len < (size_t)fits ? (int)len : fits) : longest;
    }
    int lx = x1 - 10 - 20 - 6 * longest;
    for (int yy = y1 + 2; yy < y1 + 10 + 12 * n_series; yy++)
        for (int xx = lx - 4; xx < x1 - 2; xx++)
            put(&cv, xx, yy, white);
    for (int s = 0; s < n_series; s++) {
        int ly = y1 + 6 + 12 * s;
        for (int k = 0; k < 14; k++)
            line(&cv, lx + k, ly + 3, lx + k, ly + 4, palette[s % 8]);
        char cut[128];
        snprintf(cut, sizeof cut, "%.*s", longest, series[s].label);
        text(&cv, lx + 20, ly, cut, black);
    }
#undef SX
#undef SY
    image_write_png(path, cv.px, 3, PH, PW);
    free(cv.px);
}
