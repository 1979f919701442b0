/* repae plot — loss curves from a run's metrics.jsonl as a PNG. */
#include <math.h>
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
    "step, as `repae train` writes) against the step, as a PNG.";

#define MAX_KEYS METRICS_MAX_KEYS

int cmd_plot(int argc, char **argv)
{
    const char *keys, *out, *x_key;
    int smooth;
    bool log_y;
    option_spec opts[] = {
        {"--keys", OPT_STRING, &keys, "sit_loss,denoising_loss,vae_loss,d_loss", "comma-separated scalars to plot"},
        {"--out", OPT_STRING, &out, "loss.png", "output PNG"},
        {"--x", OPT_STRING, &x_key, "step", "the x axis scalar"},
        {"--smooth", OPT_INT, &smooth, "1", "moving-average window in steps", .min = 1, .max = 100000},
        {"--log-y", OPT_FLAG, &log_y, NULL, "logarithmic y axis"},
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

    metrics_table t = metrics_read(path, x_key, names, n_keys);
    size_t n = t.n;
    double *x = t.x, **y = t.y;
    if (n == 0)
        die("'%s': no metrics in the file", path);
    for (int k = 0; k < n_keys; k++)
        if (!t.found[k])
            die("'%s': no scalar named '%s' (check --keys)", path, names[k]);
    plot_series s[MAX_KEYS];
    for (int k = 0; k < n_keys; k++) {
        if (smooth > 1) { /* trailing moving average over the finite values; a gap stays a gap */
            double *sm = xmalloc(n * sizeof(double)), acc = 0;
            int cnt = 0;
            for (size_t i = 0; i < n; i++) {
                if (isfinite(y[k][i]))
                    acc += y[k][i], cnt++;
                if (i >= (size_t)smooth && isfinite(y[k][i - smooth]))
                    acc -= y[k][i - smooth], cnt--;
                sm[i] = isfinite(y[k][i]) && cnt > 0 ? acc / cnt : NAN;
            }
            free(y[k]);
            y[k] = sm;
        }
        s[k] = (plot_series){names[k], x, y[k], n};
    }
    plot_png(out, s, n_keys, x_key, log_y);
    printf("%s\n", out);
    metrics_free(&t);
    free(list);
    return 0;
}
