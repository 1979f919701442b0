/* speedup.h — how many training steps each run needs to reach a quality the
 * baseline reaches, the form of REPA-E's "17× faster than REPA" (issue 15).
 *
 * From evaluation curves (a metric, lower is better, e.g. FD, against the
 * training step; several seeds per run):
 *   - per run, a band over its seeds: mean, min and max at every step;
 *   - thresholds from the baseline's mean curve at fractions of its horizon
 *     (its last evaluated step), linearly interpolated between evaluations;
 *   - per run and seed, the first step at which the curve reaches each
 *     threshold, linearly interpolated between the evaluation before and the
 *     first one at or below it; mean ± sample standard deviation over seeds;
 *   - ratios of those step counts between runs (baseline / reference);
 *   - the final value of every run with its noise: the mean |difference|
 *     between the main sample set and other sample sets drawn at the final
 *     checkpoint, and whether differences between runs exceed it.
 *
 * A step count is a bound when the curve does not cross between two
 * evaluations: reached at the first evaluation → "at most" that step; never
 * reached → "at least" the last evaluated step.  Means and ratios carry the
 * bounds along (SPEEDUP_UNKNOWN when they point both ways).
 *
 *   eval_results r = results_read("results.jsonl", "fd");
 *   double fr[] = {0.5, 0.75, 1.0};
 *   speedup_summary s = speedup_summarise(&r, 0, "vanilla", fr, 3);
 *   ... s.thresholds[t].steps[run], speedup_ratio_of(&..steps[a], &..steps[b]) ...
 *   speedup_summary_free(&s);
 */
#ifndef REPAE_SPEEDUP_H
#define REPAE_SPEEDUP_H

#include <stddef.h>

#include "io/results_read.h"

typedef enum speedup_bound {
    SPEEDUP_EXACT,
    SPEEDUP_AT_MOST,  /* the true value is at most this */
    SPEEDUP_AT_LEAST, /* the true value is at least this */
    SPEEDUP_UNKNOWN,  /* bounds both ways were combined: no statement */
} speedup_bound;

const char *speedup_bound_name(speedup_bound b); /* "exact", "at_most", "at_least", "unknown" */

/* y at `at` on the polyline (x[i], y[i]), x strictly increasing; NaN outside
 * [x[0], x[n-1]]. */
double speedup_interpolate(const double *x, const double *y, size_t n, double at);

typedef struct speedup_crossing {
    double step;
    speedup_bound bound;
} speedup_crossing;

/* The first step at which value <= threshold (steps strictly increasing). */
speedup_crossing speedup_first_crossing(const double *step, const double *value, size_t n, double threshold);

/* The polyline's mean over [from, to] (from < to): its trapezoidal area
 * there divided by to − from, the linear interpolation of speedup_interpolate
 * between evaluations.  NaN unless the curve spans [from, to].  A summary of
 * a whole training curve (lower is better for FD: fewer steps spent at a
 * high value), less noisy than one threshold crossing. */
double speedup_curve_mean(const double *step, const double *value, size_t n, double from, double to);

typedef struct speedup_stats {
    int n;
    double mean, sd, min, max; /* sd: sample standard deviation (n - 1), 0 for one value */
} speedup_stats;

speedup_stats speedup_stats_of(const double *v, int n);

/* The crossings of one run's seeds together. */
typedef struct speedup_steps {
    speedup_stats stats; /* over every seed, a bound counted at its bound */
    speedup_bound bound;
    int reached;         /* seeds whose curve reached the threshold */
} speedup_steps;

speedup_steps speedup_steps_of(const speedup_crossing *c, int n);

typedef struct speedup_ratio {
    double value; /* NaN when nothing can be said */
    speedup_bound bound;
} speedup_ratio;

/* num's mean step count over den's: how many times fewer steps den needs. */
speedup_ratio speedup_ratio_of(const speedup_steps *num, const speedup_steps *den);

typedef struct speedup_seed_curve {
    int seed;
    size_t n;
    double *step, *value; /* the main sample set, steps increasing */
    double noise;         /* mean |value - other set's value| at the last step; NaN if no other set there */
} speedup_seed_curve;

typedef struct speedup_run {
    const char *name;
    int n_seeds;
    speedup_seed_curve *seeds; /* seeds increasing */
    size_t n_band;             /* the union of the seeds' steps */
    double *band_step, *band_mean, *band_min, *band_max;
    int *band_count;           /* seeds evaluated at that step */
    speedup_stats final;       /* every seed's value at its last step */
    double final_step;         /* the largest last step */
    double noise;              /* mean of the seeds' noise; NaN if none measured */
    int n_noise;
    speedup_stats curve_mean;  /* speedup_curve_mean over the summary's span, over the seeds that span it */
} speedup_run;

typedef enum speedup_verdict {
    SPEEDUP_WITHIN_NOISE,  /* |difference of the means| <= 2 × the larger noise */
    SPEEDUP_SEEDS_OVERLAP, /* larger, but the seeds' min-max ranges overlap */
    SPEEDUP_NOISE_UNMEASURED, /* ranges apart, no second sample set to measure the noise */
    SPEEDUP_BEYOND_NOISE,  /* larger than 2 × the noise, and the ranges apart */
} speedup_verdict;

const char *speedup_verdict_name(speedup_verdict v);
speedup_verdict speedup_compare_finals(const speedup_run *a, const speedup_run *b);
/* 1 when the seeds' min–max ranges of the two runs' curve means are apart. */
int speedup_curve_means_apart(const speedup_run *a, const speedup_run *b);

typedef struct speedup_threshold {
    double fraction, step; /* step = fraction × horizon */
    double value;          /* the baseline's mean curve there; NaN before its first evaluation */
    speedup_crossing **crossings; /* [run][seed] */
    speedup_steps *steps;  /* [run] */
} speedup_threshold;

typedef struct speedup_summary {
    int set;
    int n_runs;
    speedup_run *runs; /* in the order of the results (runs without the main set are left out) */
    int baseline;
    double horizon;    /* the baseline's last evaluated step */
    double span_from;  /* the baseline's first evaluated step: curve means cover [span_from, horizon] */
    int n_thresholds;
    speedup_threshold *thresholds;
} speedup_summary;

/* `set` is the main sample set (curves, thresholds); every other set only
 * measures the noise at the final steps.  Dies when the baseline has no
 * curve in `set`, or a fraction is outside (0, 1]. */
speedup_summary speedup_summarise(const eval_results *r, int set, const char *baseline, const double *fractions,
                                  int n_fractions);
void speedup_summary_free(speedup_summary *s);
/* Index of the run called name, or -1. */
int speedup_find_run(const speedup_summary *s, const char *name);

#endif
