/* results_read.h — the evaluation results of a comparison, one JSON line per
 * run, seed, step and sample set (what scripts/reproduce.sh writes), for
 * `repae speedup`.
 *
 *   {"run": "repa-e", "seed": 1, "step": 4800, "set": 0, "metrics": {"fd": 4.3, ...}}
 *
 *   eval_results r = results_read("out/reproduce/results.jsonl", "fd");
 *   // r.rows[i]: run index into r.runs (order of first appearance), seed, set, step, value
 *   results_free(&r);
 *
 * Every byte is treated as hostile.  Each non-empty line must be exactly one
 * JSON object (no NUL byte, nothing after it) with: "run" a name of 1-64
 * characters from [A-Za-z0-9._+-]; "seed" an integer in [0, 2^31); "step" an
 * integer in [0, 2^53]; "set" (optional, default 0) an integer in [0, 999];
 * "metrics" an object whose `metric` is a finite number or null (null: the
 * evaluation produced no value, e.g. diverged samples; the point is left
 * out).  Other keys are ignored.  A second line for the same run, seed, set
 * and step is an error too.  Errors die naming the file and the line. */
#ifndef REPAE_RESULTS_READ_H
#define REPAE_RESULTS_READ_H

#include <stddef.h>

#define RESULTS_MAX_RUNS 64
#define RESULTS_MAX_SET 999

typedef struct eval_result {
    int run;      /* index into eval_results.runs */
    int seed, set;
    double step;
    double value; /* NaN for null */
    long line;    /* 1-based line number, for messages */
} eval_result;

typedef struct eval_results {
    size_t n;
    eval_result *rows; /* in file order */
    int n_runs;
    char *runs[RESULTS_MAX_RUNS];
} eval_results;

eval_results results_read(const char *path, const char *metric);
void results_free(eval_results *r);

#endif
