/* plot.h — line plots as PNG, no dependencies beyond libpng.
 *
 * For loss curves of training runs: a few series over a shared x axis, drawn
 * with a light grid, tick labels and a legend in a built-in 5×7 pixel font.
 *
 *   plot_series s[2] = {{"sit_loss", xs, ys, n}, {"vae_loss", xs, ys2, n}};
 *   plot_png("loss.png", s, 2, "step", "loss", false);
 *
 * A series may carry a band (lower, upper: e.g. the min and max over seeds),
 * shaded lightly in its colour under all the curves; NULL for none.
 */
#ifndef REPAE_PLOT_H
#define REPAE_PLOT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct plot_series {
    const char *label;
    const double *x, *y;
    size_t n;
    const double *lower, *upper; /* optional band [n], both or neither; non-finite points leave a gap */
} plot_series;

/* Non-finite points are skipped.  log_y plots log10(y) (y > 0 only).
 * y_label (NULL or "" for none) is written above the y axis, cut at
 * PLOT_Y_LABEL_MAX characters. */
#define PLOT_Y_LABEL_MAX 80
void plot_png(const char *path, const plot_series *series, int n_series, const char *x_label, const char *y_label,
              bool log_y);

#endif
