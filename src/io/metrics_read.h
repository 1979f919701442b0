/* metrics_read.h — reads a run's metrics.jsonl (one JSON object per line)
 * into columns, for `repae plot`.
 *
 *   const char *keys[] = {"sit_loss", "vae_loss"};
 *   metrics_table t = metrics_read("run/metrics.jsonl", "step", keys, 2);
 *   // t.x[i], t.y[k][i] for i < t.n; a missing or non-finite value is NaN
 *   metrics_free(&t);
 *
 * Each non-empty line must be exactly one JSON object (nothing after it, no
 * NUL byte).  A scalar may be a number, null, or a string "nan"/"inf"/"-inf"
 * (either of the last two reads as NaN: a gap in the plot); files written
 * before repae wrote null hold bare `nan`/`inf` tokens, which read as null
 * too.  The x value must be a finite number of magnitude at most 2^53 (beyond
 * it doubles no longer tell consecutive steps apart); a line without it gets
 * its line index.  Anything else dies naming the file, the line and the key. */
#ifndef REPAE_METRICS_READ_H
#define REPAE_METRICS_READ_H

#include <stddef.h>

#define METRICS_MAX_KEYS 8

typedef struct metrics_table {
    size_t n;                       /* rows (non-empty lines) */
    int n_keys;
    double *x;                      /* [n] */
    double *y[METRICS_MAX_KEYS];    /* [n_keys][n] */
    int found[METRICS_MAX_KEYS];    /* 1 if key k had a number on some line */
} metrics_table;

metrics_table metrics_read(const char *path, const char *x_key, const char *const *keys, int n_keys);
void metrics_free(metrics_table *t);

/* `repae plot --smooth`: y[i] becomes the mean of the finite values among
 * y[i - window + 1 .. i] (a trailing moving average); a non-finite y[i]
 * stays a gap.  window 1 leaves y as it is. */
void metrics_moving_average(double *y, size_t n, int window);

#endif
