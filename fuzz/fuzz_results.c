/* A comparison's results.jsonl as `repae speedup` reads it, then the
 * speed-up summary computed from whatever was accepted (baseline: the first
 * run, so that every accepted file gets summarised). */
#include "common.h"
#include "eval/speedup.h"
#include "io/results_read.h"

static void parse(void *path)
{
    eval_results r = results_read(path, "fd");
    if (r.n_runs > 0) {
        const double fractions[] = {0.5, 0.75, 1.0};
        speedup_summary s = speedup_summarise(&r, 0, r.runs[0], fractions, 3);
        speedup_summary_free(&s);
    }
    results_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
