/* repae plot — loss curves from a run's metrics.jsonl as a PNG. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/options.h"
#include "io/plot.h"

static const char *usage =
    "usage: repae plot METRICS.jsonl [options]\n"
    "\n"
    "Plots the chosen scalars of a run's metrics.jsonl (one JSON object per\n"
    "step, as `repae train` writes) against the step, as a PNG.";

#define MAX_KEYS 8

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

    char *names[MAX_KEYS];
    int n_keys = 0;
    char *list = xstrdup(keys);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
        if (n_keys < MAX_KEYS)
            names[n_keys++] = tok;
        else
            die("plot --keys: at most %d scalars", MAX_KEYS);

    FILE *f = xfopen(path, "r");
    size_t cap = 1024, n = 0;
    double *x = xmalloc(cap * sizeof(double)), *y[MAX_KEYS];
    for (int k = 0; k < n_keys; k++)
        y[k] = xmalloc(cap * sizeof(double));
    char *line = NULL;
    size_t line_cap = 0;
    long lineno = 0;
    bool found[MAX_KEYS] = {0};
    while (getline(&line, &line_cap, f) > 0) {
        lineno++;
        if (line[0] == '\n')
            continue;
        cJSON *obj = cJSON_Parse(line);
        if (!cJSON_IsObject(obj))
            die("'%s': line %ld is not a JSON object", path, lineno);
        if (n == cap) {
            cap *= 2;
            x = xrealloc(x, cap * sizeof(double));
            for (int k = 0; k < n_keys; k++)
                y[k] = xrealloc(y[k], cap * sizeof(double));
        }
        const cJSON *xv = cJSON_GetObjectItemCaseSensitive(obj, x_key);
        x[n] = cJSON_IsNumber(xv) ? xv->valuedouble : (double)n;
        for (int k = 0; k < n_keys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, names[k]);
            y[k][n] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            found[k] |= cJSON_IsNumber(v);
        }
        n++;
        cJSON_Delete(obj);
    }
    free(line);
    fclose(f);
    if (n == 0)
        die("'%s': no metrics in the file", path);
    for (int k = 0; k < n_keys; k++)
        if (!found[k])
            die("'%s': no scalar named '%s' (check --keys)", path, names[k]);
    plot_series s[MAX_KEYS];
    for (int k = 0; k < n_keys; k++) {
        if (smooth > 1) { /* trailing moving average */
            double *sm = xmalloc(n * sizeof(double)), acc = 0;
            int cnt = 0;
            for (size_t i = 0; i < n; i++) {
                acc += y[k][i], cnt++;
                if (cnt > smooth)
                    acc -= y[k][i - smooth], cnt--;
                sm[i] = acc / cnt;
            }
            free(y[k]);
            y[k] = sm;
        }
        s[k] = (plot_series){names[k], x, y[k], n};
    }
    plot_png(out, s, n_keys, x_key, log_y);
    printf("%s\n", out);
    for (int k = 0; k < n_keys; k++)
        free(y[k]);
    free(x);
    free(list);
    return 0;
}
