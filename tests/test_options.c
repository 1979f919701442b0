/* The option table: defaults, both value spellings, flags, positional
 * arguments, every refusal with its message, --help, and the printed and
 * JSON configurations. */
#include "core/options.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

static int steps;
static float coeff;
static const char *path_type, *out_dir;
static bool heun;
static int steps, seed, workers;
static long long images;
static double lr;
static bool ema_on;
static const option_spec opts[] = {
    {"--max-train-steps", OPT_INT, &steps, "1000", "number of steps", .min = 1, .max = 1e9},
    {"--proj-coeff", OPT_FLOAT, &coeff, "0.5", "REPA weight", .min = 0, .max = 100},
    {"--path-type", OPT_CHOICE, &path_type, "linear", "interpolant", .choices = "linear|cosine"},
    {"--output-dir", OPT_STRING, &out_dir, NULL, "where outputs go"},
    {"--heun", OPT_FLAG, &heun, NULL, "Heun correction"},
    {"--seed", OPT_INT, &seed, "0", "seed (no range)"},
    {"--max-images", OPT_INT64, &images, "-1", "images (no range)"},
    {"--lr", OPT_DOUBLE, &lr, "1e-4", "learning rate", .min = 0, .max = 1},
    {"--workers", OPT_INT, &workers, "2", "one bound zero", .min = 0, .max = 8},
    {"--ema", OPT_FLAG, &ema_on, "true", "a flag on by default"},
};

static void test_options_defaults(void)
{
    char *argv[] = {"train", NULL};
    int rest = options_parse("train", "usage", opts, N_OPTS(opts), 1, argv);
    CHECK(rest == 1, "no positional arguments expected, rest=%d", rest);
    CHECK(steps == 1000 && coeff == 0.5f && !strcmp(path_type, "linear") && out_dir == NULL && !heun,
          "defaults not applied: %d %g %s %p %d", steps, coeff, path_type, (void *)out_dir, heun);
    CHECK(seed == 0 && images == -1 && lr == 1e-4 && workers == 2 && ema_on, "defaults not applied: %d %lld %g %d %d",
          seed, images, lr, workers, ema_on);
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
    char *argv[] = {"train", "--proj-coeff=1.5", "--path-type", "cosine", "--max-images", "5000000000", "--lr",
                    "0.25", "--ema=false"};
    options_parse("train", "usage", opts, N_OPTS(opts), 9, argv);
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    options_print(f, opts, N_OPTS(opts));
    fclose(f);
    CHECK(strstr(buf, "proj-coeff") && strstr(buf, "= 1.5") && strstr(buf, "= cosine"), "printed config:\n%s", buf);
    CHECK(!strncmp(buf, "  max-train-steps              = 1000\n", 38), "the first option is not printed first:\n%s",
          buf);
    CHECK(strstr(buf, "max-images                   = 5000000000\n") && strstr(buf, "lr                           = 0.25\n") &&
              strstr(buf, "output-dir                   = (none)\n") && strstr(buf, "ema                          = false\n") &&
              strstr(buf, "heun                         = false\n") && strstr(buf, "seed                         = 0\n"),
          "printed config:\n%s", buf);
    char *json = options_to_json(opts, N_OPTS(opts));
    const char *want[] = {"\"max_train_steps\":\t1000", "\"proj_coeff\":\t1.5", "\"path_type\":\t\"cosine\"",
                          "\"output_dir\":\tnull", "\"heun\":\tfalse", "\"max_images\":\t5000000000",
                          "\"lr\":\t0.25", "\"ema\":\tfalse"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(json, want[i]), "options_to_json lacks %s:\n%s", want[i], json);
    free(json);
}

/* A parse in a child process: the refusals exit. */
typedef struct {
    int argc;
    char *argv[6];
} parse_case;

static void parse_child(void *ctx)
{
    parse_case *c = ctx;
    options_parse("train", "usage: repae train [options]", opts, N_OPTS(opts), c->argc, c->argv);
}

static void test_options_refusals(void)
{
    static const struct {
        const char *arg, *value, *message;
    } bad[] = {
        {"--max-train-steps", "12x", "train --max-train-steps: '12x' is not an integer"},
        {"--max-train-steps", "", "train --max-train-steps: '' is not an integer"},
        {"--max-train-steps", "99999999999999999999", "is not an integer"}, /* ERANGE */
        {"--max-train-steps", "0", "train --max-train-steps: 0 is out of range [1, 1e+09]"},
        {"--max-train-steps", "1000000001", "1000000001 is out of range [1, 1e+09]"},
        {"--workers", "9", "train --workers: 9 is out of range [0, 8]"},
        {"--workers", "-1", "train --workers: -1 is out of range [0, 8]"},
        {"--seed", "2147483648", "train --seed: 2147483648 does not fit in an int"},
        {"--seed", "-2147483648", "train --seed: -2147483648 does not fit in an int"},
        {"--proj-coeff", "abc", "train --proj-coeff: 'abc' is not a finite number"},
        {"--proj-coeff", "1.5x", "'1.5x' is not a finite number"},
        {"--proj-coeff", "inf", "'inf' is not a finite number"},
        {"--proj-coeff", "nan", "'nan' is not a finite number"},
        {"--proj-coeff", "1e999", "'1e999' is not a finite number"},
        {"--proj-coeff", "", "train --proj-coeff: '' is not a finite number"},
        {"--proj-coeff", "100.5", "train --proj-coeff: 100.5 is out of range [0, 100]"},
        {"--lr", "-0.001", "train --lr: -0.001 is out of range [0, 1]"},
        {"--path-type", "cos", "train --path-type: 'cos' is not one of linear|cosine"},
        {"--path-type", "linear|cosine", "'linear|cosine' is not one of linear|cosine"},
        {"--path-type", "", "'' is not one of linear|cosine"},
        {"--heun=yes", NULL, "train --heun: 'yes' is not true/false"},
        {"--heu", NULL, "train: unknown option '--heu' (see 'repae train --help')"},
        {"--heun-x=1", NULL, "unknown option '--heun-x'"},
        {"--output-dir", NULL, "train --output-dir: missing value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parse_case c = {2, {"train", (char *)bad[i].arg}};
        if (bad[i].value)
            c.argv[c.argc++] = (char *)bad[i].value;
        char what[128];
        snprintf(what, sizeof what, "%s %s", bad[i].arg, bad[i].value ? bad[i].value : "");
        expect_die(what, parse_child, &c, bad[i].message);
    }
}

/* Edges that must parse: each bound of a range, a range with one bound 0,
 * the int limits, every spelling of a flag, '=' inside a value, a value
 * that looks like an option, "--" and "-x" as positional arguments. */
static void test_options_accepted_edges(void)
{
    errno = ERANGE; /* left over from an earlier call: not this value's error */
    char *a1[] = {"train", "--max-train-steps", "1", "--workers", "0", "--proj-coeff", "100", "--lr=0",
                  "--seed", "-2147483647", "--max-images", "-9000000000", "--heun=1", "--ema=0"};
    options_parse("train", "usage", opts, N_OPTS(opts), 14, a1);
    CHECK(steps == 1 && workers == 0 && coeff == 100.0f && lr == 0.0 && seed == -2147483647 &&
              images == -9000000000LL && heun && !ema_on,
          "lower edges: %d %d %g %g %d %lld %d %d", steps, workers, coeff, lr, seed, images, heun, ema_on);
    char *a2[] = {"train", "--max-train-steps=1000000000", "--workers=8", "--seed=2147483647", "--heun=false",
                  "--ema=true", "--output-dir=a=b", "--", "-x"};
    int rest = options_parse("train", "usage", opts, N_OPTS(opts), 9, a2);
    CHECK(steps == 1000000000 && workers == 8 && seed == 2147483647 && !heun && ema_on && !strcmp(out_dir, "a=b"),
          "upper edges: %d %d %d %d %d %s", steps, workers, seed, heun, ema_on, out_dir);
    CHECK(rest == 3 && !strcmp(a2[1], "--") && !strcmp(a2[2], "-x"), "'--' and '-x' are positional (rest %d)", rest);
    char *a3[] = {"train", "--output-dir", "--heun"}; /* a value may start with -- */
    options_parse("train", "usage", opts, N_OPTS(opts), 3, a3);
    CHECK(!strcmp(out_dir, "--heun") && !heun, "--output-dir took '%s', heun %d", out_dir, heun);
    /* each parse starts afresh: defaults again, nothing given from before */
    char *a4[] = {"train", "--heun"};
    options_parse("train", "usage", opts, N_OPTS(opts), 2, a4);
    CHECK(steps == 1000 && out_dir == NULL && heun && ema_on, "a second parse kept the first one's values");
    CHECK(options_given(opts, N_OPTS(opts), "--heun") && !options_given(opts, N_OPTS(opts), "--output-dir"),
          "options_given remembers an earlier parse");
}

/* Exits 0 only if the parse itself exits (as --help and -h must); what it
 * prints goes to build/test_options_help.txt. */
static void help_child(void *ctx)
{
    if (!freopen("build/test_options_help.txt", "w", stdout))
        exit(4);
    char *argv[] = {"train", "--seed", "3", (char *)ctx};
    options_parse("train", "usage: repae train [options]", opts, N_OPTS(opts), 4, argv);
    exit(3);
}

static void test_options_help(void)
{
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    options_help(f, "train", "usage: repae train [options]", opts, N_OPTS(opts));
    fclose(f);
    const char *want[] = {"usage: repae train [options]\n\noptions:\n",
                          "  --max-train-steps N                number of steps (default 1000)\n",
                          "  --path-type linear|cosine          interpolant (default linear)\n",
                          "  --output-dir S                     where outputs go\n",
                          "  --heun                             Heun correction\n",
                          "  --ema                              a flag on by default\n",
                          "  --lr X                             learning rate (default 1e-4)\n",
                          "  --help                             show this help\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(buf, want[i]), "help lacks \"%s\":\n%s", want[i], buf);
    char err[256];
    const char *flags[] = {"--help", "-h"};
    for (int i = 0; i < 2; i++) {
        remove("build/test_options_help.txt");
        CHECK(run_in_child(help_child, (void *)flags[i], err, sizeof err) == 0, "%s did not exit 0: %s", flags[i], err);
        char printed[4096] = {0};
        FILE *h = fopen("build/test_options_help.txt", "r");
        size_t got = h ? fread(printed, 1, sizeof printed - 1, h) : 0;
        if (h)
            fclose(h);
        CHECK(got > 0 && !strcmp(printed, buf), "%s printed %zu bytes, not the help:\n%s", flags[i], got, printed);
    }
    remove("build/test_options_help.txt");
}

int main(void)
{
    RUN(test_options_defaults);
    RUN(test_options_values_and_positionals);
    RUN(test_options_print);
    RUN(test_options_refusals);
    RUN(test_options_accepted_edges);
    RUN(test_options_help);
    return test_summary();
}
