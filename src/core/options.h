/* options.h — one table of command-line options drives parsing, defaults,
 * validation, --help and the printed configuration, so they cannot drift.
 *
 *   static float proj_coeff; static int steps; static const char *out;
 *   static const option_spec opts[] = {
 *       {"--proj-coeff", OPT_FLOAT, &proj_coeff, "0.5", "REPA loss weight for the SiT update", .min = 0, .max = 100},
 *       {"--max-train-steps", OPT_INT, &steps, "1000", "number of steps", .min = 1, .max = 1e9},
 *       {"--path-type", OPT_CHOICE, &path, "linear", "interpolant", .choices = "linear|cosine"},
 *       {"--output-dir", OPT_STRING, &out, "out", "where checkpoints go"},
 *       {"--heun", OPT_FLAG, &heun, NULL, "Heun's second-order correction"},
 *   };
 *   int rest = options_parse("train", usage, opts, N_OPTS(opts), argc, argv);
 *
 * Values may be written "--name value" or "--name=value".  An unknown option,
 * a missing or malformed value, or one outside [min, max] exits with a
 * message naming the option.  `--help` prints the table and exits 0.
 * Positional arguments are moved to argv[1..rest) in order.
 */
#ifndef REPAE_OPTIONS_H
#define REPAE_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

typedef enum option_type {
    OPT_INT,    /* int */
    OPT_INT64,  /* long long */
    OPT_FLOAT,  /* float */
    OPT_DOUBLE, /* double */
    OPT_STRING, /* const char * (points into argv or the default) */
    OPT_CHOICE, /* const char *, one of .choices ("a|b|c") */
    OPT_FLAG,   /* bool, no value; default false */
} option_type;

typedef struct option_spec {
    const char *name; /* with the leading "--" */
    option_type type;
    void *target;
    const char *default_value; /* as text; NULL = no default (string NULL / 0) */
    const char *help;
    const char *choices; /* OPT_CHOICE: "a|b|c" */
    double min, max;     /* numeric range; both 0 = unchecked */
} option_spec;

#define N_OPTS(a) ((int)(sizeof(a) / sizeof((a)[0])))

int options_parse(const char *command, const char *usage, const option_spec *opts, int n, int argc, char **argv);
void options_help(FILE *out, const char *command, const char *usage, const option_spec *opts, int n);
/* Prints "name = value" for every option (the resolved configuration). */
void options_print(FILE *out, const option_spec *opts, int n);
/* The resolved options as a JSON object {"name": value, ...} (malloc'd),
 * names without the leading "--" and with '-' as '_' like the reference's
 * args.json. */
char *options_to_json(const option_spec *opts, int n);
/* True if the user gave this option explicitly on the command line. */
bool options_given(const option_spec *opts, int n, const char *name);

#endif
