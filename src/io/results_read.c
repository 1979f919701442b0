#include "io/results_read.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/whole_number.h"
#include "io/jsonl_lines.h"

#define MAX_RUN_NAME 64

/* A JSON number that is an integer in [lo, hi]. */
static double integer_field(const cJSON *obj, const char *key, double lo, double hi, const char *path, long lineno)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        die("'%s': line %ld: no \"%s\"", path, lineno, key);
    if (!cJSON_IsNumber(v) || !whole_number_in(v->valuedouble, lo, hi))
        die("'%s': line %ld: \"%s\" must be an integer between %.0f and %.0f", path, lineno, key, lo, hi);
    return v->valuedouble;
}

/* The run's index, adding the name on first sight.  Names end up in
 * markdown tables and plot legends, so only a plain alphabet is accepted. */
static int run_index(eval_results *r, const cJSON *obj, const char *path, long lineno)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "run");
    if (!cJSON_IsString(v))
        die("'%s': line %ld: \"run\" must be a string (the run's name)", path, lineno);
    const char *name = v->valuestring;
    size_t len = strlen(name);
    if (len == 0 || len > MAX_RUN_NAME)
        die("'%s': line %ld: the run name must have 1 to %d characters", path, lineno, MAX_RUN_NAME);
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._+-", name[i]))
            die("'%s': line %ld: the run name may only hold letters, digits and . _ + -", path, lineno);
    for (int k = 0; k < r->n_runs; k++)
        if (!strcmp(r->runs[k], name))
            return k;
    if (r->n_runs == RESULTS_MAX_RUNS)
        die("'%s': line %ld: more than %d runs", path, lineno, RESULTS_MAX_RUNS);
    r->runs[r->n_runs] = xstrdup(name);
    return r->n_runs++;
}

static eval_result parse_line(eval_results *r, const char *line, const char *metric, const char *path, long lineno)
{
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithOpts(line, &end, 0);
    if (!cJSON_IsObject(obj))
        die("'%s': line %ld is not a JSON object", path, lineno);
    for (const char *p = end; *p; p++)
        if (!isspace((unsigned char)*p))
            die("'%s': line %ld: unexpected text after the JSON object", path, lineno);
    eval_result e = {.line = lineno};
    e.run = run_index(r, obj, path, lineno);
    e.seed = (int)integer_field(obj, "seed", 0, 2147483647.0, path, lineno);
    e.step = integer_field(obj, "step", 0, 9007199254740992.0, path, lineno);
    e.set = cJSON_GetObjectItemCaseSensitive(obj, "set")
                ? (int)integer_field(obj, "set", 0, RESULTS_MAX_SET, path, lineno)
                : 0;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "metrics");
    if (!cJSON_IsObject(m))
        die("'%s': line %ld: \"metrics\" must be an object (what `repae eval --json` writes)", path, lineno);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, metric);
    if (!v)
        die("'%s': line %ld: no \"%s\" in \"metrics\"", path, lineno, metric);
    if (cJSON_IsNull(v))
        e.value = NAN;
    else if (cJSON_IsNumber(v) && isfinite(v->valuedouble))
        e.value = v->valuedouble;
    else
        die("'%s': line %ld: \"%s\" must be a finite number or null", path, lineno, metric);
    cJSON_Delete(obj);
    return e;
}

static int same_point(const eval_result *a, const eval_result *b)
{
    return a->run == b->run && a->seed == b->seed && a->set == b->set && a->step == b->step;
}

static int by_point(const void *pa, const void *pb)
{
    const eval_result *a = *(const eval_result *const *)pa, *b = *(const eval_result *const *)pb;
    if (a->run != b->run)
        return a->run < b->run ? -1 : 1;
    if (a->seed != b->seed)
        return a->seed < b->seed ? -1 : 1;
    if (a->set != b->set)
        return a->set < b->set ? -1 : 1;
    if (a->step != b->step)
        return a->step < b->step ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

/* Two lines for one point mean two evaluations were mixed up: refuse rather
 * than pick one. */
static void refuse_duplicates(const eval_results *r, const char *path)
{
    if (r->n < 2)
        return;
    const eval_result **order = xmalloc(r->n * sizeof *order);
    for (size_t i = 0; i < r->n; i++)
        order[i] = &r->rows[i];
    qsort(order, r->n, sizeof *order, by_point);
    for (size_t i = 1; i < r->n; i++)
        if (same_point(order[i - 1], order[i]))
            die("'%s': line %ld: run '%s', seed %d, set %d, step %.0f is already on line %ld", path, order[i]->line,
                r->runs[order[i]->run], order[i]->seed, order[i]->set, order[i]->step, order[i - 1]->line);
    free(order);
}

eval_results results_read(const char *path, const char *metric)
{
    eval_results r = {0};
    size_t cap = 256;
    r.rows = xmalloc(cap * sizeof *r.rows);
    jsonl_reader in = jsonl_open(path);
    size_t len;
    for (char *line; (line = jsonl_next(&in, &len));) {
        if (r.n == cap)
            r.rows = xrealloc(r.rows, (cap *= 2) * sizeof *r.rows);
        r.rows[r.n++] = parse_line(&r, line, metric, path, in.lineno);
    }
    jsonl_close(&in);
    refuse_duplicates(&r, path);
    return r;
}

void results_free(eval_results *r)
{
    free(r->rows);
    for (int k = 0; k < r->n_runs; k++)
        free(r->runs[k]);
    memset(r, 0, sizeof *r);
}
