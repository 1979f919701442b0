/* repae speedup — steps each run needs to reach the baseline's quality, from
 * a comparison's results.jsonl (scripts/reproduce.sh), as a markdown table,
 * a JSON summary and the per-run bands for `repae plot --bands`. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/options.h"
#include "eval/speedup.h"
#include "io/results_read.h"

static const char *usage =
    "usage: repae speedup RESULTS.jsonl [options]\n"
    "\n"
    "RESULTS.jsonl holds one line per run, seed, step and sample set:\n"
    "  {\"run\": \"repa-e\", \"seed\": 0, \"step\": 4800, \"set\": 0, \"metrics\": {\"fd\": 4.3, ...}}\n"
    "(\"metrics\" as `repae eval --json` writes it).  The metric is read as lower\n"
    "is better.  Thresholds are the baseline's mean curve (over its seeds) at\n"
    "--fractions of its last evaluated step; for every run and seed the first\n"
    "step at or below each threshold, linearly interpolated between evaluations;\n"
    "mean ± standard deviation over seeds, and the ratios of --ratios (A/B: how\n"
    "many times fewer steps B needs than A).  '≤' marks a threshold already met\n"
    "at the first evaluation, '≥' seeds that never met it (counted at their last\n"
    "step; 'not reached' when none did).  Then each run's final value, its noise (the mean |difference|\n"
    "between the main sample set and any other set drawn at the final\n"
    "checkpoint) and whether its difference to --reference exceeds the noise\n"
    "(more than 2x the larger noise and the seeds' min-max ranges apart).\n"
    "Then each run's mean over the baseline's span of steps (first to last\n"
    "evaluation): the area under each seed's curve divided by the span, a\n"
    "summary of the whole curve, with its seeds' range against --reference's.\n"
    "--by-step N adds the metric at every evaluated multiple of N (mean ± sd\n"
    "over seeds); --final-only prints the final table alone, for a metric where\n"
    "higher is better (precision, recall), whose 'steps to reach' would mean nothing.\n"
    "Ratio pairs naming a run that is not in the results are left out.";

#define MAX_FRACTIONS 16
#define MAX_RATIOS 16

typedef struct ratio_pair {
    int num, den;
    const char *text;
} ratio_pair;

static int parse_fractions(const char *list, double *out)
{
    int n = 0;
    char *copy = xstrdup(list);
    for (char *rest = copy, *tok; (tok = strsep(&rest, ",")) != NULL;) {
        char *end;
        double v = strtod(tok, &end);
        if (!*tok || *end || !(v > 0 && v <= 1))
            die("speedup --fractions '%s': '%s' is not a fraction in (0, 1]", list, tok);
        if (n == MAX_FRACTIONS)
            die("speedup --fractions: at most %d fractions", MAX_FRACTIONS);
        out[n++] = v;
    }
    free(copy);
    return n;
}

/* "a/b,c/d" into run indices; pairs naming an absent run are dropped. */
static int parse_ratios(const char *list, const speedup_summary *s, ratio_pair *out, char **storage)
{
    int n = 0;
    char *copy = *storage = xstrdup(list);
    if (!*copy)
        return 0;
    for (char *rest = copy, *tok; (tok = strsep(&rest, ",")) != NULL;) {
        char *slash = strchr(tok, '/');
        if (!slash || slash == tok || !slash[1] || strchr(slash + 1, '/'))
            die("speedup --ratios '%s': '%s' is not of the form RUN/RUN", list, tok);
        if (n == MAX_RATIOS)
            die("speedup --ratios: at most %d pairs", MAX_RATIOS);
        *slash = 0;
        int a = speedup_find_run(s, tok), b = speedup_find_run(s, slash + 1);
        *slash = '/';
        if (a >= 0 && b >= 0)
            out[n++] = (ratio_pair){a, b, tok};
    }
    return n;
}

static const char *bound_mark(speedup_bound b)
{
    return b == SPEEDUP_AT_MOST ? "≤ " : b == SPEEDUP_AT_LEAST ? "≥ " : b == SPEEDUP_UNKNOWN ? "~ " : "";
}

static void steps_cell(char *buf, size_t size, const speedup_steps *st, int n_seeds, double threshold)
{
    if (!isfinite(threshold) || n_seeds == 0) {
        snprintf(buf, size, "-");
        return;
    }
    if (st->reached == 0) {
        snprintf(buf, size, "not reached");
        return;
    }
    int k = snprintf(buf, size, "%s%.0f", bound_mark(st->bound), st->stats.mean);
    if (n_seeds > 1)
        k += snprintf(buf + k, size - (size_t)k, " ± %.0f", st->stats.sd);
    if (st->reached < n_seeds)
        snprintf(buf + k, size - (size_t)k, " (%d/%d reached)", st->reached, n_seeds);
}

static int by_double(const void *pa, const void *pb);

static void print_speedup_table(const speedup_summary *s, const char *metric, const ratio_pair *rp, int n_rp)
{
    const speedup_run *b = &s->runs[s->baseline];
    printf("## Steps to reach %s's %s (sample set %d; mean ± sd over seeds)\n\n", b->name, metric, s->set);
    printf("| threshold | %s |", metric);
    for (int k = 0; k < s->n_runs; k++)
        printf(" %s |", s->runs[k].name);
    for (int p = 0; p < n_rp; p++)
        printf(" %s |", rp[p].text);
    printf("\n|---|---:|");
    for (int k = 0; k < s->n_runs + n_rp; k++)
        printf("---:|");
    printf("\n");
    for (int i = 0; i < s->n_thresholds; i++) {
        const speedup_threshold *t = &s->thresholds[i];
        printf("| %s @ %g %% (step %.0f) | ", b->name, 100 * t->fraction, t->step);
        printf(isfinite(t->value) ? "%.3f |" : "before the first evaluation |", t->value);
        for (int k = 0; k < s->n_runs; k++) {
            char cell[96];
            steps_cell(cell, sizeof cell, &t->steps[k], s->runs[k].n_seeds, t->value);
            printf(" %s |", cell);
        }
        for (int p = 0; p < n_rp; p++) {
            speedup_ratio r = isfinite(t->value) ? speedup_ratio_of(&t->steps[rp[p].num], &t->steps[rp[p].den])
                                                 : (speedup_ratio){NAN, SPEEDUP_UNKNOWN};
            if (isfinite(r.value))
                printf(" %s%.2f× |", bound_mark(r.bound), r.value);
            else
                printf(" - |");
        }
        printf("\n");
    }
}

static const char *verdict_text(speedup_verdict v)
{
    static const char *const text[] = {"within noise", "seed ranges overlap", "noise not measured", "beyond noise"};
    return text[v];
}

/* " mean[ ± sd] | min-max |": a statistic over seeds as two table cells. */
static void print_stats_cells(const speedup_stats *st)
{
    printf(" %.3f", st->mean);
    if (st->n > 1)
        printf(" ± %.3f", st->sd);
    printf(" | %.3f-%.3f |", st->min, st->max);
}

static void print_final_table(const speedup_summary *s, const char *metric, int reference)
{
    printf("\n## Final %s (mean ± sd over seeds; noise: mean |set %d - other set| at the last checkpoint)\n\n",
           metric, s->set);
    printf("| run | seeds | step | %s | min-max | noise |", metric);
    if (reference >= 0)
        printf(" Δ vs %s | difference |", s->runs[reference].name);
    printf("\n|---|---:|---:|---:|---|---:|%s\n", reference >= 0 ? "---:|---|" : "");
    for (int k = 0; k < s->n_runs; k++) {
        const speedup_run *r = &s->runs[k];
        printf("| %s | %d | %.0f |", r->name, r->n_seeds, r->final_step);
        print_stats_cells(&r->final); /* final.n is the run's seed count */
        printf(r->n_noise ? " %.3f |" : " - |", r->noise);
        if (reference >= 0 && k != reference)
            printf(" %+.3f | %s |", r->final.mean - s->runs[reference].final.mean,
                   verdict_text(speedup_compare_finals(r, &s->runs[reference])));
        else if (reference >= 0)
            printf(" | |");
        printf("\n");
    }
}

/* Each run's mean of the metric over the baseline's span of steps (the area
 * under each seed's curve over the span's length), mean ± sd over the seeds
 * whose curves span it, and whether the seeds' ranges are apart from the
 * reference's. */
static void print_curve_mean_table(const speedup_summary *s, const char *metric, int reference)
{
    if (!(s->span_from < s->horizon))
        return;
    printf("\n## Mean %s over steps %.0f-%.0f (the area under each seed's curve / %.0f steps; mean ± sd over seeds)\n\n",
           metric, s->span_from, s->horizon, s->horizon - s->span_from);
    printf("| run | seeds | mean %s | min-max |", metric);
    if (reference >= 0)
        printf(" Δ vs %s | seed ranges |", s->runs[reference].name);
    printf("\n|---|---:|---:|---|%s\n", reference >= 0 ? "---:|---|" : "");
    for (int k = 0; k < s->n_runs; k++) {
        const speedup_run *r = &s->runs[k];
        const speedup_stats *c = &r->curve_mean;
        if (c->n == 0) {
            printf("| %s | 0/%d | not spanned | - |%s\n", r->name, r->n_seeds, reference >= 0 ? " - | - |" : "");
            continue;
        }
        printf("| %s | ", r->name);
        printf(c->n < r->n_seeds ? "%d/%d |" : "%d |", c->n, r->n_seeds);
        print_stats_cells(c);
        if (reference >= 0 && k != reference && s->runs[reference].curve_mean.n > 0)
            printf(" %+.3f | %s |", c->mean - s->runs[reference].curve_mean.mean,
                   speedup_curve_means_apart(r, &s->runs[reference]) ? "apart" : "overlap");
        else if (reference >= 0)
            printf(" | |");
        printf("\n");
    }
}

/* The metric at every evaluated step that is a multiple of `every` (and at
 * the last one): a row per run, mean ± sd over the seeds evaluated there
 * ("(k/n)" when only k of n seeds were), "-" where none was. */
static void print_by_step_table(const speedup_summary *s, const char *metric, double every)
{
    double steps[64];
    int n = 0;
    for (int k = 0; k < s->n_runs; k++)
        for (size_t i = 0; i < s->runs[k].n_band; i++) {
            double st = s->runs[k].band_step[i];
            bool last = st == s->horizon || st == s->runs[k].final_step;
            if (fmod(st, every) != 0 && !last)
                continue;
            int j = 0;
            while (j < n && steps[j] != st)
                j++;
            if (j == n) {
                if (n == 64)
                    die("speedup --by-step %g: more than 64 columns; take a larger step", every);
                steps[n++] = st;
            }
        }
    qsort(steps, n, sizeof *steps, by_double);
    printf("\n## %s by step (sample set %d; mean ± sd over seeds)\n\n| run |", metric, s->set);
    for (int j = 0; j < n; j++)
        printf(" %.0f |", steps[j]);
    printf("\n|---|");
    for (int j = 0; j < n; j++)
        printf("---:|");
    printf("\n");
    for (int k = 0; k < s->n_runs; k++) {
        const speedup_run *r = &s->runs[k];
        double *v = xmalloc((r->n_seeds > 0 ? r->n_seeds : 1) * sizeof *v); /* the seeds' values at one step */
        printf("| %s |", r->name);
        for (int j = 0; j < n; j++) {
            int m = 0;
            for (int i = 0; i < r->n_seeds; i++)
                for (size_t q = 0; q < r->seeds[i].n; q++)
                    if (r->seeds[i].step[q] == steps[j])
                        v[m++] = r->seeds[i].value[q];
            if (m == 0) {
                printf(" - |");
                continue;
            }
            speedup_stats st = speedup_stats_of(v, m);
            printf(" %.2f", st.mean);
            if (m > 1)
                printf(" ± %.2f", st.sd);
            if (m < r->n_seeds)
                printf(" (%d/%d)", m, r->n_seeds);
            printf(" |");
        }
        printf("\n");
        free(v);
    }
}

static cJSON *stats_json(const speedup_stats *st)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "n", st->n);
    cJSON_AddNumberToObject(j, "mean", st->mean);
    cJSON_AddNumberToObject(j, "sd", st->sd);
    cJSON_AddNumberToObject(j, "min", st->min);
    cJSON_AddNumberToObject(j, "max", st->max);
    return j;
}

static cJSON *threshold_json(const speedup_summary *s, const speedup_threshold *t, const ratio_pair *rp, int n_rp)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "fraction", t->fraction);
    cJSON_AddNumberToObject(j, "step", t->step);
    cJSON_AddNumberToObject(j, "value", t->value);
    cJSON *runs = cJSON_AddObjectToObject(j, "runs");
    for (int k = 0; k < s->n_runs && isfinite(t->value); k++) {
        cJSON *r = cJSON_AddObjectToObject(runs, s->runs[k].name);
        cJSON_AddItemToObject(r, "steps", stats_json(&t->steps[k].stats));
        cJSON_AddStringToObject(r, "bound", speedup_bound_name(t->steps[k].bound));
        cJSON_AddNumberToObject(r, "reached", t->steps[k].reached);
        cJSON *per = cJSON_AddArrayToObject(r, "per_seed");
        for (int i = 0; i < s->runs[k].n_seeds; i++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddNumberToObject(c, "seed", s->runs[k].seeds[i].seed);
            cJSON_AddNumberToObject(c, "step", t->crossings[k][i].step);
            cJSON_AddStringToObject(c, "bound", speedup_bound_name(t->crossings[k][i].bound));
            cJSON_AddItemToArray(per, c);
        }
    }
    cJSON *ratios = cJSON_AddObjectToObject(j, "ratios");
    for (int p = 0; p < n_rp && isfinite(t->value); p++) {
        speedup_ratio r = speedup_ratio_of(&t->steps[rp[p].num], &t->steps[rp[p].den]);
        cJSON *o = cJSON_AddObjectToObject(ratios, rp[p].text);
        cJSON_AddNumberToObject(o, "value", r.value);
        cJSON_AddStringToObject(o, "bound", speedup_bound_name(r.bound));
    }
    return j;
}

static void write_json(const char *path, const speedup_summary *s, const char *metric, const ratio_pair *rp,
                       int n_rp, int reference)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "metric", metric);
    cJSON_AddNumberToObject(j, "set", s->set);
    cJSON_AddStringToObject(j, "baseline", s->runs[s->baseline].name);
    cJSON_AddNumberToObject(j, "horizon", s->horizon);
    cJSON_AddNumberToObject(j, "span_from", s->span_from);
    cJSON *runs = cJSON_AddObjectToObject(j, "runs");
    for (int k = 0; k < s->n_runs; k++) {
        const speedup_run *r = &s->runs[k];
        cJSON *o = cJSON_AddObjectToObject(runs, r->name);
        cJSON *seeds = cJSON_AddArrayToObject(o, "seeds");
        for (int i = 0; i < r->n_seeds; i++)
            cJSON_AddItemToArray(seeds, cJSON_CreateNumber(r->seeds[i].seed));
        cJSON_AddNumberToObject(o, "final_step", r->final_step);
        cJSON_AddItemToObject(o, "final", stats_json(&r->final));
        cJSON_AddNumberToObject(o, "noise", r->noise);
        cJSON_AddNumberToObject(o, "noise_seeds", r->n_noise);
        cJSON_AddItemToObject(o, "curve_mean", stats_json(&r->curve_mean)); /* over [span_from, horizon] */
        if (reference >= 0 && k != reference)
            cJSON_AddStringToObject(o, "vs_reference", speedup_verdict_name(speedup_compare_finals(r, &s->runs[reference])));
    }
    cJSON *ts = cJSON_AddArrayToObject(j, "thresholds");
    for (int i = 0; i < s->n_thresholds; i++)
        cJSON_AddItemToArray(ts, threshold_json(s, &s->thresholds[i], rp, n_rp));
    char *text = cJSON_Print(j);
    atomic_file af = atomic_file_open(path);
    fprintf(af.fp, "%s\n", text);
    atomic_file_commit(&af);
    free(text);
    cJSON_Delete(j);
}

static int by_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* One line per step: each run's mean over seeds as RUN, and RUN_min, RUN_max
 * (null where a run has no evaluation at that step), for `repae plot --bands`. */
static void write_curves(const char *path, const speedup_summary *s)
{
    size_t total = 0;
    for (int k = 0; k < s->n_runs; k++)
        total += s->runs[k].n_band;
    double *steps = xmalloc((total ? total : 1) * sizeof *steps);
    size_t n = 0;
    for (int k = 0; k < s->n_runs; k++)
        for (size_t i = 0; i < s->runs[k].n_band; i++)
            steps[n++] = s->runs[k].band_step[i];
    qsort(steps, n, sizeof *steps, by_double);
    atomic_file af = atomic_file_open(path);
    char key[96];
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && steps[i] == steps[i - 1])
            continue;
        cJSON *line = cJSON_CreateObject();
        cJSON_AddNumberToObject(line, "step", steps[i]);
        for (int k = 0; k < s->n_runs; k++) {
            const speedup_run *r = &s->runs[k];
            size_t j = 0;
            while (j < r->n_band && r->band_step[j] != steps[i])
                j++;
            double mean = j < r->n_band ? r->band_mean[j] : NAN, lo = j < r->n_band ? r->band_min[j] : NAN,
                   hi = j < r->n_band ? r->band_max[j] : NAN;
            cJSON_AddNumberToObject(line, r->name, mean); /* NaN prints as null */
            snprintf(key, sizeof key, "%s_min", r->name);
            cJSON_AddNumberToObject(line, key, lo);
            snprintf(key, sizeof key, "%s_max", r->name);
            cJSON_AddNumberToObject(line, key, hi);
        }
        char *text = cJSON_PrintUnformatted(line);
        fprintf(af.fp, "%s\n", text);
        free(text);
        cJSON_Delete(line);
    }
    atomic_file_commit(&af);
    free(steps);
}

int cmd_speedup(int argc, char **argv)
{
    const char *metric, *baseline, *fractions_list, *ratios_list, *reference_name, *json_path, *curves_path;
    int set;
    bool final_only;
    double by_step;
    option_spec opts[] = {
        {"--metric", OPT_STRING, &metric, "fd", "the metric in \"metrics\" (lower is better)"},
        {"--baseline", OPT_STRING, &baseline, "vanilla", "the run whose mean curve gives the thresholds"},
        {"--fractions", OPT_STRING, &fractions_list, "0.5,0.75,1", "thresholds: the baseline at these fractions of its horizon"},
        {"--ratios", OPT_STRING, &ratios_list, "vanilla/repa-e,repa/repa-e", "step-count ratios A/B to tabulate"},
        {"--reference", OPT_STRING, &reference_name, "repa-e", "the run final values are compared with"},
        {"--set", OPT_INT, &set, "0", "the main sample set (curves and thresholds)", .min = 0, .max = RESULTS_MAX_SET},
        {"--json", OPT_STRING, &json_path, NULL, "write the summary as JSON here"},
        {"--curves", OPT_STRING, &curves_path, NULL, "write per-step mean/min/max per run as JSONL here (for plot --bands)"},
        {"--by-step", OPT_DOUBLE, &by_step, "0", "also a table of the metric at every evaluated multiple of this step (0: none)",
         .min = 0, .max = 1e15},
        {"--final-only", OPT_FLAG, &final_only, NULL,
         "print only the final table (for a metric where higher is better, e.g. precision)"},
    };
    int rest = options_parse("speedup", usage, opts, N_OPTS(opts), argc, argv);
    if (rest != 2)
        die("speedup: expected one RESULTS.jsonl argument (see 'repae speedup --help')");
    if (!*metric)
        die("speedup --metric: empty name");
    double fractions[MAX_FRACTIONS];
    int n_fractions = parse_fractions(fractions_list, fractions);

    eval_results r = results_read(argv[1], metric);
    if (r.n == 0)
        die("'%s': no results in the file", argv[1]);
    speedup_summary s = speedup_summarise(&r, set, baseline, fractions, n_fractions);
    ratio_pair rp[MAX_RATIOS];
    char *ratio_storage;
    int n_rp = parse_ratios(ratios_list, &s, rp, &ratio_storage);
    int reference = speedup_find_run(&s, reference_name);

    if (!final_only)
        print_speedup_table(&s, metric, rp, n_rp);
    print_final_table(&s, metric, reference);
    if (!final_only)
        print_curve_mean_table(&s, metric, reference);
    if (by_step > 0)
        print_by_step_table(&s, metric, by_step);
    if (json_path)
        write_json(json_path, &s, metric, rp, n_rp, reference);
    if (curves_path)
        write_curves(curves_path, &s);
    free(ratio_storage);
    speedup_summary_free(&s);
    results_free(&r);
    return 0;
}
