/* `repae speedup` and src/eval/speedup: synthetic FD curves whose crossings
 * are known in closed form (piecewise-linear, so interpolation is exact),
 * thresholds never reached, spreads over seeds, the bounds carried into
 * means and ratios, the sample-set noise verdicts, and bad result lines
 * refused naming the file and line. */
#include <math.h>
#include <unistd.h>

#include "core/error.h"
#include "eval/speedup.h"
#include "io/results_read.h"
#include "test.h"

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b ? b : "build");
    return path;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1, fabs(b)); }

/* Every one of rows[0..n) appears in out (the command's markdown). */
static void expect_rows(const char *out, const char *const *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK(strstr(out, rows[i]) != NULL, "row missing: %s\n--- output:\n%s", rows[i], out);
}
#define EXPECT_ROWS(out, rows) expect_rows(out, rows, sizeof rows / sizeof rows[0])

static void test_interpolate_and_first_crossing(void)
{
    const double step[] = {400, 800, 1200, 1600}, fd[] = {10, 8, 5, 4};
    CHECK(near(speedup_interpolate(step, fd, 4, 1000), 6.5), "interp 1000: %g", speedup_interpolate(step, fd, 4, 1000));
    CHECK(near(speedup_interpolate(step, fd, 4, 1600), 4), "interp at the end");
    CHECK(near(speedup_interpolate(step, fd, 4, 400), 10), "interp at the start");
    CHECK(isnan(speedup_interpolate(step, fd, 4, 300)) && isnan(speedup_interpolate(step, fd, 4, 1601)),
          "outside the curve is NaN");
    speedup_crossing c = speedup_first_crossing(step, fd, 4, 6);
    CHECK(c.bound == SPEEDUP_EXACT && near(c.step, 800 + 400 * 2.0 / 3.0), "crossing 6: %.12g (%s)", c.step,
          speedup_bound_name(c.bound));
    c = speedup_first_crossing(step, fd, 4, 8); /* met exactly at an evaluation */
    CHECK(c.bound == SPEEDUP_EXACT && c.step == 800, "crossing 8: %g", c.step);
    c = speedup_first_crossing(step, fd, 4, 10.5);
    CHECK(c.bound == SPEEDUP_AT_MOST && c.step == 400, "met at the first evaluation: %g %s", c.step,
          speedup_bound_name(c.bound));
    c = speedup_first_crossing(step, fd, 4, 3);
    CHECK(c.bound == SPEEDUP_AT_LEAST && c.step == 1600, "never met: %g %s", c.step, speedup_bound_name(c.bound));
    /* One evaluation: its value at its step, NaN elsewhere; no evaluation: NaN. */
    CHECK(speedup_interpolate(step + 1, fd + 1, 1, 800) == 8 && isnan(speedup_interpolate(step + 1, fd + 1, 1, 801)) &&
              isnan(speedup_interpolate(NULL, NULL, 0, 800)),
          "a curve of one or no evaluation");
    /* The first crossing counts even when the curve rises again. */
    const double bumpy[] = {10, 5, 9, 3};
    c = speedup_first_crossing(step, bumpy, 4, 7.5);
    CHECK(c.bound == SPEEDUP_EXACT && near(c.step, 400 + 400 * 0.5), "bumpy: %g", c.step);
}

/* The trapezoidal mean of a polyline over a span (exact for piecewise-linear
 * curves), interpolated at span ends between evaluations; NaN unless spanned. */
static void test_curve_mean(void)
{
    const double step[] = {0, 10, 20}, v[] = {4, 2, 2};
    CHECK(near(speedup_curve_mean(step, v, 3, 0, 20), 2.5), "mean over [0, 20]: %g",
          speedup_curve_mean(step, v, 3, 0, 20));
    CHECK(near(speedup_curve_mean(step, v, 3, 5, 20), 32.5 / 15), "mean over [5, 20]: %g",
          speedup_curve_mean(step, v, 3, 5, 20));
    CHECK(near(speedup_curve_mean(step, v, 3, 2, 8), 3.0), "mean over [2, 8] inside one segment: %g",
          speedup_curve_mean(step, v, 3, 2, 8));
    CHECK(isnan(speedup_curve_mean(step, v, 3, 0, 30)) && isnan(speedup_curve_mean(step, v, 3, -1, 20)),
          "a span the curve does not cover is NaN");
    CHECK(isnan(speedup_curve_mean(step, v, 3, 10, 10)) && isnan(speedup_curve_mean(step, v, 0, 0, 20)) &&
              isnan(speedup_curve_mean(NULL, NULL, 0, 0, 20)),
          "an empty span or curve is NaN");
    /* The same curve 100 steps later: the clipped ends are interpolated from their own segment's start. */
    const double later[] = {100, 110, 120};
    CHECK(near(speedup_curve_mean(later, v, 3, 105, 120), 32.5 / 15) &&
              near(speedup_curve_mean(later, v, 3, 102, 108), 3.0) &&
              near(speedup_curve_mean(later, v, 3, 100, 115), 8.0 / 3),
          "means of the shifted curve: %g %g %g", speedup_curve_mean(later, v, 3, 105, 120),
          speedup_curve_mean(later, v, 3, 102, 108), speedup_curve_mean(later, v, 3, 100, 115));
}

static void test_stats_spread(void)
{
    const double v[] = {1, 2, 3, 4};
    speedup_stats s = speedup_stats_of(v, 4);
    CHECK(s.n == 4 && near(s.mean, 2.5) && near(s.sd, sqrt(5.0 / 3.0)) && s.min == 1 && s.max == 4,
          "stats %g %g %g %g", s.mean, s.sd, s.min, s.max);
    s = speedup_stats_of(v + 2, 1);
    CHECK(s.mean == 3 && s.sd == 0 && s.min == 3 && s.max == 3, "one value: sd %g", s.sd);
    s = speedup_stats_of(NULL, 0);
    CHECK(s.n == 0 && isnan(s.mean) && isnan(s.sd) && isnan(s.min) && isnan(s.max), "no values: %g %g %g %g", s.mean,
          s.sd, s.min, s.max);
}

static speedup_steps steps_of(double a, speedup_bound ba, double b, speedup_bound bb)
{
    speedup_crossing c[2] = {{a, ba}, {b, bb}};
    return speedup_steps_of(c, 2);
}

static void test_bounds_in_means_and_ratios(void)
{
    speedup_steps exact = steps_of(1000, SPEEDUP_EXACT, 1400, SPEEDUP_EXACT);
    speedup_steps early = steps_of(400, SPEEDUP_AT_MOST, 600, SPEEDUP_EXACT);
    speedup_steps late = steps_of(4800, SPEEDUP_AT_LEAST, 4000, SPEEDUP_EXACT);
    speedup_steps never = steps_of(4800, SPEEDUP_AT_LEAST, 4800, SPEEDUP_AT_LEAST);
    speedup_steps mixed = steps_of(400, SPEEDUP_AT_MOST, 4800, SPEEDUP_AT_LEAST);
    CHECK(exact.bound == SPEEDUP_EXACT && exact.reached == 2 && exact.stats.mean == 1200, "exact");
    CHECK(early.bound == SPEEDUP_AT_MOST && early.reached == 2 && early.stats.mean == 500, "early");
    CHECK(late.bound == SPEEDUP_AT_LEAST && late.reached == 1 && late.stats.mean == 4400, "late");
    CHECK(never.bound == SPEEDUP_AT_LEAST && never.reached == 0, "never");
    CHECK(mixed.bound == SPEEDUP_UNKNOWN, "mixed: %s", speedup_bound_name(mixed.bound));
    speedup_ratio r = speedup_ratio_of(&exact, &exact);
    CHECK(r.bound == SPEEDUP_EXACT && r.value == 1, "exact/exact");
    r = speedup_ratio_of(&exact, &early);
    CHECK(r.bound == SPEEDUP_AT_LEAST && near(r.value, 2.4), "exact/early: %g %s", r.value, speedup_bound_name(r.bound));
    r = speedup_ratio_of(&late, &exact);
    CHECK(r.bound == SPEEDUP_AT_LEAST && near(r.value, 4400.0 / 1200), "late/exact: %s", speedup_bound_name(r.bound));
    r = speedup_ratio_of(&exact, &never);
    CHECK(r.bound == SPEEDUP_AT_MOST && near(r.value, 1200.0 / 4800), "exact/never: %s", speedup_bound_name(r.bound));
    r = speedup_ratio_of(&late, &never); /* both only bounded below: nothing to say */
    CHECK(r.bound == SPEEDUP_UNKNOWN && isnan(r.value), "late/never: %s", speedup_bound_name(r.bound));
    r = speedup_ratio_of(&mixed, &exact);
    CHECK(r.bound == SPEEDUP_UNKNOWN && isnan(r.value), "mixed/exact");
    /* A mean of step 0 has no ratio either way; half a step has one. */
    speedup_steps zero = steps_of(0, SPEEDUP_EXACT, 0, SPEEDUP_EXACT);
    speedup_steps half = steps_of(0.5, SPEEDUP_EXACT, 0.5, SPEEDUP_EXACT);
    r = speedup_ratio_of(&zero, &exact);
    CHECK(r.bound == SPEEDUP_UNKNOWN && isnan(r.value), "zero/exact: %g %s", r.value, speedup_bound_name(r.bound));
    r = speedup_ratio_of(&exact, &zero);
    CHECK(r.bound == SPEEDUP_UNKNOWN && isnan(r.value), "exact/zero: %g %s", r.value, speedup_bound_name(r.bound));
    r = speedup_ratio_of(&half, &exact);
    CHECK(r.bound == SPEEDUP_EXACT && near(r.value, 0.5 / 1200), "half/exact: %g", r.value);
}

/* Three seeds each:
 *   vanilla  seed s: fd = 20 - step/200 + (s - 1)             mean 20 - step/200
 *   repa-e   seed s: fd = max(16 - step/100, 2) + 0.5 (s - 1)
 *   naive    seed 0: fd = 30 (never reaches anything), one null point
 * at steps 400..2400; a second sample set at 2400 (vanilla +0.1, repa-e
 * 2.1/2.2/2.3), and a run with only a second set (left out). */
static const char *write_results(void)
{
    const char *path = test_tmp_path("results.jsonl");
    FILE *f = fopen(path, "w");
    for (int s = 0; s < 3; s++)
        for (int step = 400; step <= 2400; step += 400) {
            fprintf(f, "{\"run\": \"vanilla\", \"seed\": %d, \"step\": %d, \"metrics\": {\"fd\": %.17g}}\n", s, step,
                    20 - step / 200.0 + (s - 1));
            fprintf(f, "{\"run\": \"repa-e\", \"seed\": %d, \"step\": %d, \"set\": 0, \"metrics\": {\"fd\": %.17g, \"precision\": 0.5}}\n",
                    s, step, fmax(16 - step / 100.0, 2) + 0.5 * (s - 1));
        }
    for (int s = 0; s < 3; s++) {
        fprintf(f, "{\"run\": \"vanilla\", \"seed\": %d, \"step\": 2400, \"set\": 1, \"metrics\": {\"fd\": %.17g}}\n", s,
                20 - 12 + (s - 1) + 0.1);
        fprintf(f, "\n{\"run\": \"repa-e\", \"seed\": %d, \"step\": 2400, \"set\": 1, \"metrics\": {\"fd\": %.17g}}\n", s,
                2.1 + 0.1 * s);
    }
    for (int step = 400; step <= 2400; step += 400)
        fprintf(f, "{\"run\": \"naive\", \"seed\": 0, \"step\": %d, \"metrics\": {\"fd\": %s}}\n", step,
                step == 800 ? "null" : "30");
    fprintf(f, "{\"run\": \"other\", \"seed\": 0, \"step\": 400, \"set\": 1, \"metrics\": {\"fd\": 1}}\n");
    fclose(f);
    return path;
}

static void test_summary_known_crossings(void)
{
    const char *path = write_results();
    eval_results r = results_read(path, "fd");
    CHECK(r.n == 18 * 2 + 6 + 6 + 1 && r.n_runs == 4, "rows %zu runs %d", r.n, r.n_runs);
    const double fr[] = {0.5, 0.75, 1.0};
    speedup_summary s = speedup_summarise(&r, 0, "vanilla", fr, 3);
    CHECK(s.n_runs == 3 && s.baseline == 0 && s.horizon == 2400, "runs %d baseline %d horizon %g", s.n_runs,
          s.baseline, s.horizon);
    int v = speedup_find_run(&s, "vanilla"), e = speedup_find_run(&s, "repa-e"), nv = speedup_find_run(&s, "naive");
    CHECK(v == 0 && e == 1 && nv == 2 && speedup_find_run(&s, "other") < 0, "run order");
    if (s.n_runs != 3 || s.n_thresholds != 3) {
        speedup_summary_free(&s), results_free(&r);
        return;
    }
    /* Thresholds: the vanilla mean at 1200, 1800, 2400. */
    CHECK(near(s.thresholds[0].value, 14) && near(s.thresholds[1].value, 11) && near(s.thresholds[2].value, 8),
          "thresholds %g %g %g", s.thresholds[0].value, s.thresholds[1].value, s.thresholds[2].value);
    CHECK(s.thresholds[1].step == 1800, "threshold step %g", s.thresholds[1].step);
    /* 14: vanilla seeds at 1000, 1200, 1400; repa-e below at the first evaluation. */
    const speedup_steps *a = &s.thresholds[0].steps[v], *b = &s.thresholds[0].steps[e];
    CHECK(a->bound == SPEEDUP_EXACT && near(a->stats.mean, 1200) && near(a->stats.sd, 200) &&
              near(a->stats.min, 1000) && near(a->stats.max, 1400), "vanilla @14: %g ± %g", a->stats.mean, a->stats.sd);
    CHECK(b->bound == SPEEDUP_AT_MOST && b->stats.mean == 400 && b->reached == 3, "repa-e @14: %g %s", b->stats.mean,
          speedup_bound_name(b->bound));
    speedup_ratio ratio = speedup_ratio_of(a, b);
    CHECK(ratio.bound == SPEEDUP_AT_LEAST && near(ratio.value, 3), "ratio @14: %g", ratio.value);
    /* 11: vanilla 1600, 1800, 2000; repa-e 450, 500, 550. */
    a = &s.thresholds[1].steps[v], b = &s.thresholds[1].steps[e];
    CHECK(near(s.thresholds[1].crossings[e][0].step, 450) && near(s.thresholds[1].crossings[e][2].step, 550),
          "repa-e crossings @11: %g %g", s.thresholds[1].crossings[e][0].step, s.thresholds[1].crossings[e][2].step);
    CHECK(b->bound == SPEEDUP_EXACT && near(b->stats.mean, 500) && near(b->stats.sd, 50), "repa-e @11: %g ± %g",
          b->stats.mean, b->stats.sd);
    ratio = speedup_ratio_of(a, b);
    CHECK(ratio.bound == SPEEDUP_EXACT && near(ratio.value, 3.6), "ratio @11: %g", ratio.value);
    /* 8: vanilla 2200, 2400 (met exactly), never (seed 2 ends at 9); repa-e 750, 800, 850. */
    a = &s.thresholds[2].steps[v], b = &s.thresholds[2].steps[e];
    CHECK(a->bound == SPEEDUP_AT_LEAST && a->reached == 2 && near(a->stats.mean, 7000.0 / 3), "vanilla @8: %g %s %d",
          a->stats.mean, speedup_bound_name(a->bound), a->reached);
    CHECK(b->bound == SPEEDUP_EXACT && near(b->stats.mean, 800) && near(b->stats.sd, 50), "repa-e @8");
    ratio = speedup_ratio_of(a, b);
    CHECK(ratio.bound == SPEEDUP_AT_LEAST && near(ratio.value, 7000.0 / 3 / 800), "ratio @8: %g", ratio.value);
    /* naive never reaches any threshold; its null point is left out. */
    const speedup_steps *n = &s.thresholds[0].steps[nv];
    CHECK(n->reached == 0 && n->bound == SPEEDUP_AT_LEAST && s.runs[nv].seeds[0].n == 5, "naive: reached %d, %zu points",
          n->reached, s.runs[nv].seeds[0].n);
    /* Bands, finals and noise. */
    const speedup_run *re = &s.runs[e];
    CHECK(re->n_band == 6 && re->band_step[0] == 400 && near(re->band_mean[0], 12) && near(re->band_min[0], 11.5) &&
              near(re->band_max[0], 12.5) && re->band_count[0] == 3, "repa-e band at 400");
    CHECK(near(re->final.mean, 2) && near(re->final.min, 1.5) && near(re->final.max, 2.5) && re->final_step == 2400,
          "repa-e final %g", re->final.mean);
    CHECK(re->n_noise == 3 && near(re->noise, (0.6 + 0.2 + 0.2) / 3), "repa-e noise %g (%d)", re->noise, re->n_noise);
    CHECK(near(s.runs[v].noise, 0.1) && s.runs[nv].n_noise == 0 && isnan(s.runs[nv].noise), "noise vanilla %g",
          s.runs[v].noise);
    CHECK(speedup_compare_finals(&s.runs[v], re) == SPEEDUP_BEYOND_NOISE, "vanilla vs repa-e: %s",
          speedup_verdict_name(speedup_compare_finals(&s.runs[v], re)));
    /* Curve means over [400, 2400]: vanilla is linear, so the mean of its
     * ends, 13 + (seed − 1); repa-e's polyline (12, 8, 4, 2, 2, 2) has area
     * 9200 over 2000 steps, 4.6 + 0.5 (seed − 1); naive's null point is
     * bridged (30 throughout). */
    CHECK(s.span_from == 400, "span from %g", s.span_from);
    const speedup_stats *cv = &s.runs[v].curve_mean, *ce = &re->curve_mean, *cn = &s.runs[nv].curve_mean;
    CHECK(cv->n == 3 && near(cv->mean, 13) && near(cv->sd, 1) && near(cv->min, 12) && near(cv->max, 14),
          "vanilla curve mean %g ± %g (%d)", cv->mean, cv->sd, cv->n);
    CHECK(ce->n == 3 && near(ce->mean, 4.6) && near(ce->sd, 0.5) && near(ce->min, 4.1), "repa-e curve mean %g ± %g",
          ce->mean, ce->sd);
    CHECK(cn->n == 1 && near(cn->mean, 30), "naive curve mean %g (%d)", cn->mean, cn->n);
    CHECK(speedup_curve_means_apart(&s.runs[v], re) && speedup_curve_means_apart(re, &s.runs[v]),
          "vanilla's and repa-e's curve means are apart");
    speedup_summary_free(&s);
    results_free(&r);
}

static speedup_run final_run(double mean, double min, double max, double noise)
{
    return (speedup_run){.final = {.n = 3, .mean = mean, .min = min, .max = max}, .noise = noise,
                         .n_noise = isnan(noise) ? 0 : 3};
}

static void test_noise_verdicts(void)
{
    speedup_run a = final_run(5.0, 4.8, 5.2, 0.3), b = final_run(5.5, 5.3, 5.7, 0.2);
    CHECK(speedup_compare_finals(&a, &b) == SPEEDUP_WITHIN_NOISE, "0.5 <= 2 x 0.3");
    b = final_run(6.0, 5.1, 6.9, 0.1);
    CHECK(speedup_compare_finals(&a, &b) == SPEEDUP_SEEDS_OVERLAP, "ranges overlap");
    b = final_run(6.0, 5.9, 6.1, 0.1);
    CHECK(speedup_compare_finals(&a, &b) == SPEEDUP_BEYOND_NOISE, "beyond");
    a = final_run(5.0, 4.8, 5.2, NAN), b = final_run(6.0, 5.9, 6.1, NAN);
    CHECK(speedup_compare_finals(&a, &b) == SPEEDUP_NOISE_UNMEASURED, "unmeasured");
    /* The edges: a difference of exactly twice the noise, ranges that touch. */
    a = final_run(1.0, 0.5, 1.5, 0.25), b = final_run(1.5, 1.25, 1.75, 0.125);
    CHECK(speedup_compare_finals(&a, &b) == SPEEDUP_WITHIN_NOISE, "0.5 = 2 x 0.25");
    a = final_run(1.0, 0.5, 1.5, 0.125), b = final_run(2.0, 1.5, 2.5, 0.125);
    CHECK(speedup_compare_finals(&a, &b) == SPEEDUP_SEEDS_OVERLAP &&
              speedup_compare_finals(&b, &a) == SPEEDUP_SEEDS_OVERLAP,
          "ranges touching at 1.5");
    /* Curve means apart: not when either run has none, nor when they touch. */
    speedup_run c = {.curve_mean = {.n = 2, .min = 1, .max = 2}}, d = {.curve_mean = {.n = 2, .min = 3, .max = 4}},
                none = {.curve_mean = {.n = 0}};
    CHECK(speedup_curve_means_apart(&c, &d) && speedup_curve_means_apart(&d, &c), "[1, 2] and [3, 4] are apart");
    CHECK(!speedup_curve_means_apart(&c, &none) && !speedup_curve_means_apart(&none, &d), "a run without curve means");
    d.curve_mean.min = 2;
    CHECK(!speedup_curve_means_apart(&c, &d) && !speedup_curve_means_apart(&d, &c), "[1, 2] and [2, 4] touch");
}

static void summarise_fraction(void *fraction)
{
    eval_results r = results_read(test_tmp_path("noise.jsonl"), "fd");
    speedup_summarise(&r, 0, "a", (const double *)fraction, 1);
}

/* A seed's noise is its mean distance to every other sample set at its last
 * step, whichever line of the file those come on; the library refuses a
 * horizon fraction outside (0, 1] itself. */
static void test_noise_over_several_sets(void)
{
    const char *path = test_tmp_path("noise.jsonl");
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"run\": \"a\", \"seed\": 0, \"step\": 200, \"set\": 2, \"metrics\": {\"fd\": 3}}\n");
    fprintf(f, "{\"run\": \"a\", \"seed\": 0, \"step\": 100, \"metrics\": {\"fd\": 5}}\n");
    fprintf(f, "{\"run\": \"a\", \"seed\": 0, \"step\": 200, \"metrics\": {\"fd\": 4}}\n");
    fprintf(f, "{\"run\": \"a\", \"seed\": 0, \"step\": 200, \"set\": 1, \"metrics\": {\"fd\": 4.5}}\n");
    fprintf(f, "{\"run\": \"a\", \"seed\": 0, \"step\": 100, \"set\": 1, \"metrics\": {\"fd\": 9}}\n");
    fclose(f);
    eval_results r = results_read(path, "fd");
    const double fr[] = {1.0};
    speedup_summary s = speedup_summarise(&r, 0, "a", fr, 1);
    CHECK(s.n_runs == 1 && s.runs[0].n_seeds == 1 && near(s.runs[0].seeds[0].noise, 0.75) &&
              near(s.runs[0].noise, 0.75),
          "noise over sets 1 and 2 at step 200: %g, want (0.5 + 1) / 2", s.n_runs ? s.runs[0].seeds[0].noise : NAN);
    speedup_summary_free(&s);
    results_free(&r);
    const double zero = 0, above = 1.5;
    expect_die("fraction 0", summarise_fraction, (void *)&zero,
               "speedup: the fraction 0 of the horizon is not in (0, 1]");
    expect_die("fraction 1.5", summarise_fraction, (void *)&above, "the fraction 1.5 of the horizon is not in (0, 1]");
}

/* The command: the markdown rows, the JSON summary and the band curves. */
static void test_cli_table_and_files(void)
{
    const char *path = write_results(), *json = test_tmp_path("summary.json"), *curves = test_tmp_path("fd.jsonl");
    char cmd[1024], out[8192], err[1024];
    snprintf(cmd, sizeof cmd, "%s speedup %s --ratios vanilla/repa-e,naive/repa-e,vanilla/absent --json %s --curves %s",
             repae_bin(), path, json, curves);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "speedup: status %d: %s", rc, err);
    const char *rows[] = {
        "| threshold | fd | vanilla | repa-e | naive | vanilla/repa-e | naive/repa-e |",
        "| vanilla @ 50 % (step 1200) | 14.000 | 1200 ± 200 | ≤ 400 ± 0 | not reached | ≥ 3.00× | ≥ 6.00× |",
        "| vanilla @ 75 % (step 1800) | 11.000 | 1800 ± 200 | 500 ± 50 | not reached | 3.60× | ≥ 4.80× |",
        "| vanilla @ 100 % (step 2400) | 8.000 | ≥ 2333 ± 115 (2/3 reached) | 800 ± 50 | not reached | ≥ 2.92× | ≥ 3.00× |",
        "| vanilla | 3 | 2400 | 8.000 ± 1.000 | 7.000-9.000 | 0.100 | +6.000 | beyond noise |",
        "| naive | 1 | 2400 | 30.000 | 30.000-30.000 | - | +28.000 | beyond noise |",
        "## Mean fd over steps 400-2400 (the area under each seed's curve / 2000 steps; mean ± sd over seeds)",
        "| run | seeds | mean fd | min-max | Δ vs repa-e | seed ranges |",
        "| vanilla | 3 | 13.000 ± 1.000 | 12.000-14.000 | +8.400 | apart |",
        "| repa-e | 3 | 4.600 ± 0.500 | 4.100-5.100 | | |",
        "| naive | 1 | 30.000 | 30.000-30.000 | +25.400 | apart |",
    };
    EXPECT_ROWS(out, rows);
    CHECK(!strstr(out, "absent"), "a ratio naming an absent run is left out");
    size_t size;
    char *text = read_file_all(json, &size);
    CHECK(strstr(text, "\"horizon\":\t2400") && strstr(text, "\"vanilla/repa-e\"") && strstr(text, "\"at_least\"") &&
              strstr(text, "\"span_from\":\t400") && strstr(text, "\"curve_mean\":"),
          "summary JSON:\n%s", text);
    free(text);
    text = read_file_all(curves, &size);
    CHECK(strstr(text, "{\"step\":400,\"vanilla\":18,\"vanilla_min\":17,\"vanilla_max\":19,\"repa-e\":12,"
                       "\"repa-e_min\":11.5,\"repa-e_max\":12.5,\"naive\":30,\"naive_min\":30,\"naive_max\":30}\n") &&
              strstr(text, "\"naive\":null"), "curves:\n%s", text);
    free(text);
}

/* --by-step: the metric at every evaluated multiple of the step, mean ± sd
 * over seeds, "-" where a run has no value (naive's null at 800); and
 * --final-only for a metric where higher is better: no steps-to-reach table. */
static void test_cli_by_step_and_final_only(void)
{
    const char *path = write_results();
    char cmd[1024], out[8192], err[1024];
    snprintf(cmd, sizeof cmd, "%s speedup %s --by-step 800", repae_bin(), path);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "speedup --by-step: status %d: %s", rc, err);
    const char *rows[] = {
        "## fd by step (sample set 0; mean ± sd over seeds)",
        "| run | 800 | 1600 | 2400 |",
        "| vanilla | 16.00 ± 1.00 | 12.00 ± 1.00 | 8.00 ± 1.00 |",
        "| repa-e | 8.00 ± 0.50 | 2.00 ± 0.50 | 2.00 ± 0.50 |",
        "| naive | - | 30.00 | 30.00 |",
    };
    EXPECT_ROWS(out, rows);

    const char *pr = test_tmp_path("pr.jsonl");
    FILE *f = fopen(pr, "w");
    for (int s = 0; s < 2; s++)
        for (int step = 400; step <= 800; step += 400) {
            fprintf(f, "{\"run\": \"vanilla\", \"seed\": %d, \"step\": %d, \"metrics\": {\"precision\": %g}}\n", s,
                    step, 0.5 + 0.1 * s + step / 8000.0);
            fprintf(f, "{\"run\": \"repa-e\", \"seed\": %d, \"step\": %d, \"metrics\": {\"precision\": %g}}\n", s,
                    step, 0.65 + 0.1 * s);
        }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s speedup %s --metric precision --final-only", repae_bin(), pr);
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "speedup --final-only: status %d: %s", rc, err);
    CHECK(!strstr(out, "Steps to reach") && strstr(out, "## Final precision") &&
              strstr(out, "| vanilla | 2 | 800 | 0.650 ± 0.071 | 0.600-0.700 | - | -0.050 | seed ranges overlap |") &&
              !strstr(out, "by step"),
          "final-only output:\n%s", out);
}

/* A seed whose curve stops before the baseline's horizon is left out of its
 * run's curve mean ("1/2"); a run with no spanning seed says so; ranges that
 * overlap say so. */
static void test_cli_curve_mean_partial(void)
{
    const char *path = test_tmp_path("partial.jsonl");
    FILE *f = fopen(path, "w");
    for (int s = 0; s < 2; s++)
        for (int step = 400; step <= 1200; step += 400) {
            fprintf(f, "{\"run\": \"vanilla\", \"seed\": %d, \"step\": %d, \"metrics\": {\"fd\": %d}}\n", s, step, 10 + s);
            if (s == 0 || step < 1200)
                fprintf(f, "{\"run\": \"repa-e\", \"seed\": %d, \"step\": %d, \"metrics\": {\"fd\": %g}}\n", s, step,
                        10.5);
            if (step == 400)
                fprintf(f, "{\"run\": \"short\", \"seed\": %d, \"step\": %d, \"metrics\": {\"fd\": 3}}\n", s, step);
        }
    fclose(f);
    char cmd[1024], out[8192], err[1024];
    snprintf(cmd, sizeof cmd, "%s speedup %s", repae_bin(), path);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "speedup: status %d: %s", rc, err);
    const char *rows[] = {
        "| vanilla | 2 | 10.500 ± 0.707 | 10.000-11.000 | +0.000 | overlap |",
        "| repa-e | 1/2 | 10.500 | 10.500-10.500 | | |",
        "| short | 0/2 | not spanned | - | - | - |",
    };
    EXPECT_ROWS(out, rows);
}

/* A results file with one line, and what `repae speedup` must say about it. */
static void expect_refused(const char *name, const char *content, size_t len, const char *args, const char *want)
{
    const char *path = test_tmp_path(name);
    FILE *f = fopen(path, "wb");
    fwrite(content, 1, len, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s speedup %s %s", repae_bin(), path, args);
    expect_command_fails(cmd, want);
}
#define REFUSED(name, literal, args, want) expect_refused(name, literal, sizeof(literal) - 1, args, want)

#define GOOD "{\"run\": \"vanilla\", \"seed\": 0, \"step\": 400, \"metrics\": {\"fd\": 5}}\n"

static void test_bad_lines_refused(void)
{
    REFUSED("two.jsonl", GOOD GOOD "x\n", "", "two.jsonl': line 3 is not a JSON object");
    REFUSED("notobj.jsonl", GOOD "[1, 2]\n", "", "notobj.jsonl': line 2 is not a JSON object");
    REFUSED("trunc.jsonl", GOOD "{\"run\": \"vanilla\", \"se\n", "", "trunc.jsonl': line 2 is not a JSON object");
    REFUSED("junk.jsonl", GOOD "{\"run\": \"a\"} x\n", "", "junk.jsonl': line 2: unexpected text after the JSON object");
    REFUSED("nul.jsonl", GOOD "{\"run\": \"a\",\0}\n", "", "nul.jsonl': line 2 contains a NUL byte");
    REFUSED("norun.jsonl", "{\"seed\": 0, \"step\": 1, \"metrics\": {\"fd\": 1}}\n", "",
            "norun.jsonl': line 1: \"run\" must be a string");
    REFUSED("name.jsonl", "{\"run\": \"a|b\", \"seed\": 0, \"step\": 1, \"metrics\": {\"fd\": 1}}\n", "",
            "name.jsonl': line 1: the run name may only hold");
    REFUSED("empty_name.jsonl", "{\"run\": \"\", \"seed\": 0, \"step\": 1, \"metrics\": {\"fd\": 1}}\n", "",
            "the run name must have 1 to 64 characters");
    REFUSED("seed.jsonl", GOOD "{\"run\": \"a\", \"seed\": 1.5, \"step\": 1, \"metrics\": {\"fd\": 1}}\n", "",
            "seed.jsonl': line 2: \"seed\" must be an integer");
    REFUSED("step.jsonl", "{\"run\": \"a\", \"seed\": 0, \"step\": -400, \"metrics\": {\"fd\": 1}}\n", "",
            "step.jsonl': line 1: \"step\" must be an integer");
    REFUSED("nostep.jsonl", "{\"run\": \"a\", \"seed\": 0, \"metrics\": {\"fd\": 1}}\n", "",
            "nostep.jsonl': line 1: no \"step\"");
    REFUSED("bigstep.jsonl", "{\"run\": \"a\", \"seed\": 0, \"step\": 1e300, \"metrics\": {\"fd\": 1}}\n", "",
            "\"step\" must be an integer");
    REFUSED("set.jsonl", "{\"run\": \"a\", \"seed\": 0, \"step\": 1, \"set\": 1000, \"metrics\": {\"fd\": 1}}\n", "",
            "set.jsonl': line 1: \"set\" must be an integer between 0 and 999");
    REFUSED("metrics.jsonl", "{\"run\": \"a\", \"seed\": 0, \"step\": 1, \"metrics\": 5}\n", "",
            "metrics.jsonl': line 1: \"metrics\" must be an object");
    REFUSED("nofd.jsonl", "{\"run\": \"a\", \"seed\": 0, \"step\": 1, \"metrics\": {\"fid\": 1}}\n", "",
            "nofd.jsonl': line 1: no \"fd\" in \"metrics\"");
    REFUSED("strfd.jsonl", "{\"run\": \"a\", \"seed\": 0, \"step\": 1, \"metrics\": {\"fd\": \"5\"}}\n", "",
            "strfd.jsonl': line 1: \"fd\" must be a finite number or null");
    REFUSED("dup.jsonl", GOOD "\n{\"run\": \"vanilla\", \"seed\": 0, \"step\": 400, \"metrics\": {\"fd\": 6}}\n", "",
            "dup.jsonl': line 3: run 'vanilla', seed 0, set 0, step 400 is already on line 1");
    REFUSED("blank.jsonl", "\n  \n", "", "blank.jsonl': no results in the file");
    REFUSED("nobase.jsonl", "{\"run\": \"repa\", \"seed\": 0, \"step\": 1, \"metrics\": {\"fd\": 1}}\n", "",
            "the baseline run 'vanilla' has no evaluation in sample set 0");
    REFUSED("fr.jsonl", GOOD, "--fractions 0.5,1.5", "speedup --fractions '0.5,1.5': '1.5' is not a fraction");
    REFUSED("fr0.jsonl", GOOD, "--fractions 0.5,,1", "'' is not a fraction");
    REFUSED("ratio.jsonl", GOOD, "--ratios vanilla", "speedup --ratios 'vanilla': 'vanilla' is not of the form RUN/RUN");
    REFUSED("metric.jsonl", GOOD, "--metric precision", "metric.jsonl': line 1: no \"precision\" in \"metrics\"");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s speedup %s/missing.jsonl", repae_bin(), test_tmp_dir("speedup"));
    expect_command_fails(cmd, "missing.jsonl");
}

/* results_read's edges, directly: a file longer than its first allocation
 * (256 rows), a name of 64 characters and one of every allowed kind, step
 * 0 and set 999; refused: a name of 65 characters, a bad first character,
 * a 65th run. */
static const char *results_file(const char *name, int rows, int runs, const char *run_name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmp_dir("speedup"), name);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < rows; i++) {
        char run[80];
        if (run_name && i == rows - 1)
            snprintf(run, sizeof run, "%s", run_name);
        else
            snprintf(run, sizeof run, "r%d", i % runs);
        fprintf(f, "{\"run\": \"%s\", \"seed\": %d, \"step\": %d, \"set\": %d, \"metrics\": {\"fd\": %d.25}}\n", run,
                i % 7, i, i % 2 ? 999 : 0, i);
    }
    fclose(f);
    return path;
}

static void read_child(void *ctx)
{
    eval_results r = results_read((const char *)ctx, "fd");
    results_free(&r);
}

static void test_results_read_edges(void)
{
    const char *name64 = "a123456789b123456789c123456789d123456789e123456789f123456789._+-";
    const char *path = results_file("long.jsonl", 300, 3, name64);
    eval_results r = results_read(path, "fd");
    CHECK(r.n == 300 && r.n_runs == 4 && !strcmp(r.runs[3], name64), "n %zu, %d runs", r.n, r.n_runs);
    int bad = 0;
    for (size_t i = 0; i < r.n && !bad; i++) {
        const eval_result *e = &r.rows[i];
        bad = e->value != (double)i + 0.25 || e->step != (double)i || e->seed != (int)i % 7 ||
              e->set != (i % 2 ? 999 : 0) || e->line != (long)i + 1 || e->run != (i == 299 ? 3 : (int)i % 3);
        CHECK(!bad, "row %zu: run %d seed %d set %d step %g value %g line %ld", i, e->run, e->seed, e->set, e->step,
              e->value, e->line);
    }
    results_free(&r);
    CHECK(r.rows == NULL && r.n == 0 && r.n_runs == 0, "results_free left the table");

    char name65[70];
    snprintf(name65, sizeof name65, "%sx", name64);
    char err[512];
    struct {
        const char *file, *run, *message;
        int runs;
    } refused[] = {{"name65.jsonl", name65, "line 3: the run name must have 1 to 64 characters", 2},
                   {"first.jsonl", "/r", "line 3: the run name may only hold letters, digits and . _ + -", 2},
                   {"space.jsonl", " r", "the run name may only hold", 2},
                   {"runs.jsonl", NULL, "line 65: more than 64 runs", 65}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *p = results_file(refused[i].file, refused[i].runs == 65 ? 65 : 3, refused[i].runs, refused[i].run);
        int rc = run_in_child(read_child, (void *)p, err, sizeof err);
        CHECK(rc == 1 && strstr(err, refused[i].message), "%s: status %d, %s", refused[i].file, rc, err);
    }
    /* 64 runs are accepted */
    const char *p64 = results_file("runs64.jsonl", 64, 64, NULL);
    CHECK(run_in_child(read_child, (void *)p64, err, sizeof err) == 0, "64 runs refused: %s", err);
}

int main(void)
{
    test_tmp_dir("speedup");
    RUN(test_interpolate_and_first_crossing);
    RUN(test_curve_mean);
    RUN(test_stats_spread);
    RUN(test_bounds_in_means_and_ratios);
    RUN(test_summary_known_crossings);
    RUN(test_noise_verdicts);
    RUN(test_noise_over_several_sets);
    RUN(test_cli_table_and_files);
    RUN(test_cli_by_step_and_final_only);
    RUN(test_cli_curve_mean_partial);
    RUN(test_bad_lines_refused);
    RUN(test_results_read_edges);
    return test_summary();
}
