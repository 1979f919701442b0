/* The option table: defaults, both value spellings, flags, positional
 * arguments, and the printed configuration. */
#include "core/options.h"
#include "test.h"

static int steps;
static float coeff;
static const char *path_type, *out_dir;
static bool heun;
static const option_spec opts[] = {
    {"--max-train-steps", OPT_INT, &steps, "1000", "number of steps", .min = 1, .max = 1e9},
    {"--proj-coeff", OPT_FLOAT, &coeff, "0.5", "REPA weight", .min = 0, .max = 100},
    {"--path-type", OPT_CHOICE, &path_type, "linear", "interpolant", .choices = "linear|cosine"},
    {"--output-dir", OPT_STRING, &out_dir, NULL, "where outputs go"},
    {"--heun", OPT_FLAG, &heun, NULL, "Heun correction"},
};

static void test_options_defaults(void)
{
    char *argv[] = {"train", NULL};
    int rest = options_parse("train", "usage", opts, N_OPTS(opts), 1, argv);
    CHECK(rest == 1, "no positional arguments expected, rest=%d", rest);
    CHECK(steps == 1000 && coeff == 0.5f && !strcmp(path_type, "linear") && out_dir == NULL && !heun,
          "defaults not applied: %d %g %s %p %d", steps, coeff, path_type, (void *)out_dir, heun);
    CHECK(!options_given(opts, N_OPTS(opts), "--proj-coeff"), "nothing was given");
}

static void test_options_values_and_positionals(void)
{
    char *argv[] = {"train", "--max-train-steps", "7", "data.bin", "--proj-coeff=1.5", "--path-type", "cosine",
                    "--heun", "--output-dir", "o", "more"};
    int rest = options_parse("train", "usage", opts, N_OPTS(opts), 11, argv);
    CHECK(steps == 7 && coeff == 1.5f && !strcmp(path_type, "cosine") && heun && !strcmp(out_dir, "o"),
          "parsed values wrong: %d %g %s %d %s", steps, coeff, path_type, heun, out_dir);
    CHECK(rest == 3 && !strcmp(argv[1], "data.bin") && !strcmp(argv[2], "more"), "positionals wrong (rest=%d)", rest);
    CHECK(options_given(opts, N_OPTS(opts), "--proj-coeff"), "--proj-coeff was given");
}

static void test_options_print(void)
{
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    options_print(f, opts, N_OPTS(opts));
    fclose(f);
    CHECK(strstr(buf, "proj-coeff") && strstr(buf, "= 1.5") && strstr(buf, "= cosine"), "printed config:\n%s", buf);
}

int main(void)
{
    RUN(test_options_defaults);
    RUN(test_options_values_and_positionals);
    RUN(test_options_print);
    return test_summary();
}
