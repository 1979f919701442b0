/* Option parsing: the input is split on NUL bytes into argv and parsed
 * against a table with every option type, as each subcommand does; then
 * options_to_json (args.json) and options_print run on the result. */
#include "common.h"
#include "core/options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *in;
static size_t in_size;

static void parse(void *unused)
{
    (void)unused;
    char *text = malloc(in_size + 1);
    memcpy(text, in, in_size);
    text[in_size] = 0;
    char *argv[65] = {"fuzz"};
    int argc = 1;
    for (size_t i = 0; i <= in_size && argc < 64;) {
        argv[argc++] = text + i;
        i += strlen(text + i) + 1;
    }
    int i_val;
    long long ll_val;
    double d_val;
    const char *s_val, *c_val;
    bool f_val;
    option_spec opts[] = {
        {"--int", OPT_INT, &i_val, "3", "an int", .min = -5, .max = 1000},
        {"--big", OPT_INT64, &ll_val, "0", "an int64", .min = 0, .max = 9e18},
        {"--real", OPT_DOUBLE, &d_val, "0.5", "a double", .min = 0, .max = 1},
        {"--name", OPT_STRING, &s_val, NULL, "a string"},
        {"--mode", OPT_CHOICE, &c_val, "ode", "a choice", .choices = "ode|sde"},
        {"--flag", OPT_FLAG, &f_val, NULL, "a flag"},
    };
    FILE *devnull = fopen("/dev/null", "w");
    options_parse("fuzz", "usage: fuzz", opts, N_OPTS(opts), argc, argv);
    char *json = options_to_json(opts, N_OPTS(opts));
    free(json);
    options_print(devnull, opts, N_OPTS(opts));
    options_given(opts, N_OPTS(opts), "--int");
    fclose(devnull);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in = data, in_size = size;
    fuzz_run(parse, NULL);
    return 0;
}
