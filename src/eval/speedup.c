#include "eval/speedup.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const char *speedup_bound_name(speedup_bound b)
{
    static const char *const names[] = {"exact", "at_most", "at_least", "unknown"};
    return names[b];
}

const char *speedup_verdict_name(speedup_verdict v)
{
    static const char *const names[] = {"within_noise", "seeds_overlap", "noise_unmeasured", "beyond_noise"};
    return names[v];
}

double speedup_interpolate(const double *x, const double *y, size_t n, double at)
{
    if (n == 0 || !(at >= x[0]) || !(at <= x[n - 1]))
        return NAN;
    for (size_t i = 0; i + 1 < n; i++)
        if (at <= x[i + 1]) {
            if (at == x[i + 1])
                return y[i + 1];
            return y[i] + (at - x[i]) / (x[i + 1] - x[i]) * (y[i + 1] - y[i]);
        }
    return y[n - 1]; /* n == 1 and at == x[0] */
}

double speedup_curve_mean(const double *step, const double *value, size_t n, double from, double to)
{
    if (n == 0 || !(from < to) || !(step[0] <= from) || !(step[n - 1] >= to))
        return NAN;
    double area = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        double a = fmax(step[i], from), b = fmin(step[i + 1], to);
        if (!(a < b))
            continue;
        /* the segment's line at the clipped ends, as speedup_interpolate draws it */
        double dx = step[i + 1] - step[i], dy = value[i + 1] - value[i];
        double ya = a == step[i] ? value[i] : value[i] + (a - step[i]) / dx * dy;
        double yb = b == step[i + 1] ? value[i + 1] : value[i] + (b - step[i]) / dx * dy;
        area += 0.5 * (ya + yb) * (b - a);
    }
    return area / (to - from);
}

speedup_crossing speedup_first_crossing(const double *step, const double *value, size_t n, double threshold)
{
    for (size_t i = 0; i < n; i++) {
        if (!(value[i] <= threshold))
            continue;
        if (i == 0) /* below already at the first evaluation: somewhere before it */
            return (speedup_crossing){step[0], SPEEDUP_AT_MOST};
        double f = (value[i - 1] - threshold) / (value[i - 1] - value[i]);
        return (speedup_crossing){step[i - 1] + f * (step[i] - step[i - 1]), SPEEDUP_EXACT};
    }
    return (speedup_crossing){n ? step[n - 1] : NAN, SPEEDUP_AT_LEAST};
}

speedup_stats speedup_stats_of(const double *v, int n)
{
    speedup_stats s = {.n = n, .mean = NAN, .sd = NAN, .min = NAN, .max = NAN};
    if (n <= 0)
        return s;
    double sum = 0;
    s.min = INFINITY, s.max = -INFINITY;
    for (int i = 0; i < n; i++)
        sum += v[i], s.min = fmin(s.min, v[i]), s.max = fmax(s.max, v[i]);
    s.mean = sum / n;
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
    return s;
}

speedup_steps speedup_steps_of(const speedup_crossing *c, int n)
{
    speedup_steps r = {.bound = SPEEDUP_EXACT};
    double *v = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    int at_most = 0, at_least = 0;
    for (int i = 0; i < n; i++) {
        v[i] = c[i].step;
        at_most += c[i].bound == SPEEDUP_AT_MOST;
        at_least += c[i].bound == SPEEDUP_AT_LEAST;
    }
    r.stats = speedup_stats_of(v, n);
    r.reached = n - at_least;
    r.bound = at_most && at_least ? SPEEDUP_UNKNOWN
              : at_least          ? SPEEDUP_AT_LEAST
              : at_most           ? SPEEDUP_AT_MOST
                                  : SPEEDUP_EXACT;
    free(v);
    return r;
}

speedup_ratio speedup_ratio_of(const speedup_steps *num, const speedup_steps *den)
{
    speedup_bound a = num->bound, b = den->bound;
    speedup_ratio r = {NAN, SPEEDUP_UNKNOWN};
    if (!(num->stats.mean > 0) || !(den->stats.mean > 0) || a == SPEEDUP_UNKNOWN || b == SPEEDUP_UNKNOWN)
        return r;
    /* A larger numerator or a smaller denominator makes the ratio larger. */
    bool up = a == SPEEDUP_AT_LEAST || b == SPEEDUP_AT_MOST, down = a == SPEEDUP_AT_MOST || b == SPEEDUP_AT_LEAST;
    if (up && down)
        return r;
    r.value = num->stats.mean / den->stats.mean;
    r.bound = up ? SPEEDUP_AT_LEAST : down ? SPEEDUP_AT_MOST : SPEEDUP_EXACT;
    return r;
}

speedup_verdict speedup_compare_finals(const speedup_run *a, const speedup_run *b)
{
    double noise = fmax(a->n_noise ? a->noise : 0, b->n_noise ? b->noise : 0);
    double diff = fabs(a->final.mean - b->final.mean);
    if (diff <= 2 * noise)
        return SPEEDUP_WITHIN_NOISE;
    if (a->final.min <= b->final.max && b->final.min <= a->final.max)
        return SPEEDUP_SEEDS_OVERLAP;
    if (!a->n_noise && !b->n_noise)
        return SPEEDUP_NOISE_UNMEASURED;
    return SPEEDUP_BEYOND_NOISE;
}

int speedup_curve_means_apart(const speedup_run *a, const speedup_run *b)
{
    if (a->curve_mean.n == 0 || b->curve_mean.n == 0)
        return 0;
    return a->curve_mean.max < b->curve_mean.min || b->curve_mean.max < a->curve_mean.min;
}

static int by_seed_then_step(const void *pa, const void *pb)
{
    const eval_result *a = *(const eval_result *const *)pa, *b = *(const eval_result *const *)pb;
    if (a->seed != b->seed)
        return a->seed < b->seed ? -1 : 1;
    return a->step < b->step ? -1 : a->step > b->step;
}

static int by_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* The mean |main − other set| at the seed's last step; NaN without another set there. */
static double seed_noise(const eval_results *r, int run, int set, const speedup_seed_curve *c)
{
    double last = c->step[c->n - 1], sum = 0;
    int n = 0;
    for (size_t i = 0; i < r->n; i++) {
        const eval_result *e = &r->rows[i];
        if (e->run == run && e->seed == c->seed && e->set != set && e->step == last && isfinite(e->value))
            sum += fabs(c->value[c->n - 1] - e->value), n++;
    }
    return n ? sum / n : NAN;
}

/* mean/min/max over the seeds at every step any of them was evaluated at. */
static void run_band(speedup_run *run)
{
    size_t total = 0;
    for (int s = 0; s < run->n_seeds; s++)
        total += run->seeds[s].n;
    double *steps = xmalloc(total * sizeof *steps);
    size_t k = 0;
    for (int s = 0; s < run->n_seeds; s++)
        for (size_t i = 0; i < run->seeds[s].n; i++)
            steps[k++] = run->seeds[s].step[i];
    qsort(steps, total, sizeof *steps, by_double);
    size_t n = 0;
    for (size_t i = 0; i < total; i++)
        if (n == 0 || steps[i] != steps[n - 1])
            steps[n++] = steps[i];
    run->n_band = n;
    run->band_step = steps;
    run->band_mean = xmalloc(n * sizeof(double));
    run->band_min = xmalloc(n * sizeof(double));
    run->band_max = xmalloc(n * sizeof(double));
    run->band_count = xmalloc(n * sizeof(int));
    double *v = xmalloc((size_t)run->n_seeds * sizeof *v);
    for (size_t j = 0; j < n; j++) {
        int m = 0;
        for (int s = 0; s < run->n_seeds; s++)
            for (size_t i = 0; i < run->seeds[s].n; i++)
                if (run->seeds[s].step[i] == steps[j])
                    v[m++] = run->seeds[s].value[i];
        speedup_stats st = speedup_stats_of(v, m);
        run->band_mean[j] = st.mean, run->band_min[j] = st.min, run->band_max[j] = st.max, run->band_count[j] = m;
    }
    free(v);
}

/* One run's curves in the main set (NaN values left out), its band, final
 * values and noise.  Returns 0 when the run has no point in the main set. */
static int build_run(const eval_results *r, int run, int set, speedup_run *out)
{
    memset(out, 0, sizeof *out);
    out->name = r->runs[run];
    const eval_result **pts = xmalloc((r->n ? r->n : 1) * sizeof *pts);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->rows[i].run == run && r->rows[i].set == set && isfinite(r->rows[i].value))
            pts[n++] = &r->rows[i];
    if (n == 0) {
        free(pts);
        return 0;
    }
    qsort(pts, n, sizeof *pts, by_seed_then_step);
    out->seeds = xcalloc(n, sizeof *out->seeds);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && pts[j]->seed == pts[i]->seed)
            j++;
        speedup_seed_curve *c = &out->seeds[out->n_seeds++];
        c->seed = pts[i]->seed;
        c->n = j - i;
        c->step = xmalloc(c->n * sizeof(double));
        c->value = xmalloc(c->n * sizeof(double));
        for (size_t k = i; k < j; k++)
            c->step[k - i] = pts[k]->step, c->value[k - i] = pts[k]->value;
        c->noise = seed_noise(r, run, set, c);
        i = j;
    }
    free(pts);
    double *finals = xmalloc((size_t)out->n_seeds * sizeof *finals), noise_sum = 0;
    out->final_step = -INFINITY;
    for (int s = 0; s < out->n_seeds; s++) {
        const speedup_seed_curve *c = &out->seeds[s];
        finals[s] = c->value[c->n - 1];
        out->final_step = fmax(out->final_step, c->step[c->n - 1]);
        if (isfinite(c->noise))
            noise_sum += c->noise, out->n_noise++;
    }
    out->final = speedup_stats_of(finals, out->n_seeds);
    out->noise = out->n_noise ? noise_sum / out->n_noise : NAN;
    free(finals);
    run_band(out);
    return 1;
}

/* The curve means of the seeds whose curves span [from, to]. */
static void run_curve_mean(speedup_run *run, double from, double to)
{
    double *v = xmalloc((size_t)(run->n_seeds ? run->n_seeds : 1) * sizeof *v);
    int m = 0;
    for (int j = 0; j < run->n_seeds; j++) {
        double c = speedup_curve_mean(run->seeds[j].step, run->seeds[j].value, run->seeds[j].n, from, to);
        if (isfinite(c))
            v[m++] = c;
    }
    run->curve_mean = speedup_stats_of(v, m);
    free(v);
}

int speedup_find_run(const speedup_summary *s, const char *name)
{
    for (int k = 0; k < s->n_runs; k++)
        if (!strcmp(s->runs[k].name, name))
            return k;
    return -1;
}

static void threshold_crossings(speedup_summary *s, speedup_threshold *t)
{
    t->crossings = xcalloc((size_t)s->n_runs, sizeof *t->crossings);
    t->steps = xcalloc((size_t)s->n_runs, sizeof *t->steps);
    for (int k = 0; k < s->n_runs; k++) {
        const speedup_run *run = &s->runs[k];
        t->crossings[k] = xcalloc((size_t)run->n_seeds, sizeof **t->crossings);
        if (!isfinite(t->value))
            continue;
        for (int j = 0; j < run->n_seeds; j++)
            t->crossings[k][j] = speedup_first_crossing(run->seeds[j].step, run->seeds[j].value, run->seeds[j].n,
                                                        t->value);
        t->steps[k] = speedup_steps_of(t->crossings[k], run->n_seeds);
    }
}

speedup_summary speedup_summarise(const eval_results *r, int set, const char *baseline, const double *fractions,
                                  int n_fractions)
{
    speedup_summary s = {.set = set};
    s.runs = xcalloc((size_t)(r->n_runs ? r->n_runs : 1), sizeof *s.runs);
    for (int k = 0; k < r->n_runs; k++)
        s.n_runs += build_run(r, k, set, &s.runs[s.n_runs]);
    s.baseline = speedup_find_run(&s, baseline);
    if (s.baseline < 0)
        die("speedup: the baseline run '%s' has no evaluation in sample set %d", baseline, set);
    const speedup_run *b = &s.runs[s.baseline];
    s.horizon = b->band_step[b->n_band - 1];
    s.span_from = b->band_step[0];
    for (int k = 0; k < s.n_runs; k++)
        run_curve_mean(&s.runs[k], s.span_from, s.horizon);
    s.n_thresholds = n_fractions;
    s.thresholds = xcalloc((size_t)(n_fractions ? n_fractions : 1), sizeof *s.thresholds);
    for (int i = 0; i < n_fractions; i++) {
        if (!(fractions[i] > 0 && fractions[i] <= 1))
            die("speedup: the fraction %g of the horizon is not in (0, 1]", fractions[i]);
        speedup_threshold *t = &s.thresholds[i];
        t->fraction = fractions[i];
        t->step = fractions[i] * s.horizon;
        t->value = speedup_interpolate(b->band_step, b->band_mean, b->n_band, t->step);
        threshold_crossings(&s, t);
    }
    return s;
}

void speedup_summary_free(speedup_summary *s)
{
    for (int i = 0; i < s->n_thresholds; i++) {
        for (int k = 0; k < s->n_runs; k++)
            free(s->thresholds[i].crossings[k]);
        free(s->thresholds[i].crossings);
        free(s->thresholds[i].steps);
    }
    free(s->thresholds);
    for (int k = 0; k < s->n_runs; k++) {
        speedup_run *run = &s->runs[k];
        for (int j = 0; j < run->n_seeds; j++)
            free(run->seeds[j].step), free(run->seeds[j].value);
        free(run->seeds);
        free(run->band_step), free(run->band_mean), free(run->band_min), free(run->band_max), free(run->band_count);
    }
    free(s->runs);
    memset(s, 0, sizeof *s);
}
