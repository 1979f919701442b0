/* repae plot — loss curves from a run's metrics.jsonl as a PNG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/options.h"
#include "io/metrics_read.h"
#include "io/plot.h"

static const char *usage =
    "usage: repae plot METRICS.jsonl [options]\n"
    "\n"
    "Plots the chosen scalars of a run's metrics.jsonl (one JSON object per\n"
    "step, as `repae train` writes) against the step, as a PNG.\n"
    "\n"
    "--bands: for every key K that has K_min and K_max on the lines too (as\n"
    "`repae speedup --curves` writes: the mean over seeds and its range), the\n"
    "range is shaded lightly in K's colour under the curves.";

#define MAX_KEYS METRICS_MAX_KEYS

/* The K_min and K_max columns of every key K (not found: found[k] = 0). */
static void read_bands(const char *path, const char *x_key, const char *const *names, int n_keys,
                       metrics_table *lo, metrics_table *hi)
{
    char *lo_names[MAX_KEYS], *hi_names[MAX_KEYS];
    for (int k = 0; k < n_keys; k++) {
        size_t len = strlen(names[k]) + 5;
        lo_names[k] = xmalloc(len), hi_names[k] = xmalloc(len);
        snprintf(lo_names[k], len, "%s_min", names[k]);
        snprintf(hi_names[k], len, "%s_max", names[k]);
    }
    *lo = metrics_read(path, x_key, (const char *const *)lo_names, n_keys);
    *hi = metrics_read(path, x_key, (const char *const *)hi_names, n_keys);
    for (int k = 0; k < n_keys; k++) {
        if (!lo->found[k] || !hi->found[k])
            warn("plot --bands: no %s and %s in '%s': '%s' is drawn without a band", lo_names[k], hi_names[k], path,
                 names[k]);
        free(lo_names[k]), free(hi_names[k]);
    }
}

int cmd_plot(int argc, char **argv)
{
    const char *keys, *out, *x_key, *y_label;
    int smooth;
    bool log_y, bands;
    option_spec opts[] = {
        {"--keys", OPT_STRING, &keys, "sit_loss,denoising_loss,vae_loss,d_loss", "comma-separated scalars to plot"},
        {"--out", OPT_STRING, &out, "loss.png", "output PNG"},
        {"--x", OPT_STRING, &x_key, "step", "the x axis scalar"},
        {"--y-label", OPT_STRING, &y_label, "", "name of the y axis, written above it (e.g. FD)"},
        {"--smooth", OPT_INT, &smooth, "1", "moving-average window in steps", .min = 1, .max = 100000},
        {"--log-y", OPT_FLAG, &log_y, NULL, "logarithmic y axis"},
        {"--bands", OPT_FLAG, &bands, NULL, "shade K_min..K_max under each key K (see above)"},
    };
    int rest = options_parse("plot", usage, opts, N_OPTS(opts), argc, argv);
    if (rest != 2)
        die("plot: expected one METRICS.jsonl argument (see 'repae plot --help')");
    const char *path = argv[1];

    const char *names[MAX_KEYS];
    int n_keys = 0;
    char *list = xstrdup(keys);
    /* strsep, not strtok: an empty name ("a,,b", "") is a mistake to report. */
    for (char *rest_list = list, *tok; (tok = strsep(&rest_list, ",")) != NULL;) {
        if (!*tok)
            die("plot --keys '%s': empty scalar name (give comma-separated names, e.g. sit_loss,vae_loss)", keys);
        if (n_keys == MAX_KEYS)
            die("plot --keys: at most %d scalars", MAX_KEYS);
        names[n_keys++] = tok;
    }
    if (!*x_key)
        die("plot --x: empty scalar name");
    if (strlen(y_label) > PLOT_Y_LABEL_MAX)
        die("plot --y-label: %zu characters; at most %d fit above the axis", strlen(y_label), PLOT_Y_LABEL_MAX);

    metrics_table t = metrics_read(path, x_key, names, n_keys);
    size_t n = t.n;
    double *x = t.x, **y = t.y;
    if (n == 0)
        die("'%s': no metrics in the file", path);
    for (int k = 0; k < n_keys; k++)
        if (!t.found[k])
            die("'%s': no scalar named '%s' (check --keys)", path, names[k]);
    metrics_table lo = {0}, hi = {0};
    if (bands)
        read_bands(path, x_key, names, n_keys, &lo, &hi);
    plot_series s[MAX_KEYS];
    for (int k = 0; k < n_keys; k++) {
        bool band = bands && lo.found[k] && hi.found[k];
        if (smooth > 1) {
            metrics_moving_average(y[k], n, smooth);
            if (band)
                metrics_moving_average(lo.y[k], n, smooth), metrics_moving_average(hi.y[k], n, smooth);
        }
        s[k] = (plot_series){names[k], x, y[k], n, band ? lo.y[k] : NULL, band ? hi.y[k] : NULL};
    }
    plot_png(out, s, n_keys, x_key, y_label, log_y);
    printf("%s\n", out);
    metrics_free(&t);
    if (bands)
        metrics_free(&lo), metrics_free(&hi);
    free(list);
    return 0;
}
