/* metrics.jsonl as `repae plot` reads it, and (for one input in 64, the
 * PNG encoding being slow) the plot drawn from it. */
#include "common.h"
#include "io/metrics_read.h"
#include "io/plot.h"

#include <stdio.h>

static int draw;

static void parse(void *path)
{
    const char *keys[] = {"loss", "sit_loss", "vae_loss"};
    metrics_table t = metrics_read(path, "step", keys, 3);
    if (draw && t.n) {
        plot_series s[3];
        for (int k = 0; k < 3; k++)
            s[k] = (plot_series){keys[k], t.x, t.y[k], t.n};
        char out[128];
        snprintf(out, sizeof out, "%s/plot.png", fuzz_scratch_dir());
        plot_png(out, s, 3, "step", t.n % 3 == 0 ? "fd" : NULL, t.n % 2 == 0);
    }
    metrics_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    draw = size > 0 && data[size - 1] % 64 == 0;
    fuzz_run(parse, (void *)fuzz_write_input(data, size));
    return 0;
}
