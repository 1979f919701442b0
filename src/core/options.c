#include "core/options.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#include <cjson/cJSON.h>

/* Which options were given explicitly (by address of their spec). */
#define MAX_GIVEN 256
static const option_spec *given[MAX_GIVEN];
static int n_given;

static void set_value(const char *command, const option_spec *o, const char *text)
{
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_INT:
    case OPT_INT64: {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            die("%s %s: '%s' is not an integer", command, o->name, text);
        if ((o->min || o->max) && (v < o->min || v > o->max))
            die("%s %s: %lld is out of range [%g, %g]", command, o->name, v, o->min, o->max);
        if (o->type == OPT_INT) {
            if (v < -2147483647LL || v > 2147483647LL)
                die("%s %s: %lld does not fit in an int", command, o->name, v);
            *(int *)o->target = (int)v;
        } else
            *(long long *)o->target = v;
        break;
    }
    case OPT_FLOAT:
    case OPT_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v))
            die("%s %s: '%s' is not a finite number", command, o->name, text);
        if ((o->min || o->max) && (v < o->min || v > o->max))
            die("%s %s: %g is out of range [%g, %g]", command, o->name, v, o->min, o->max);
        if (o->type == OPT_FLOAT)
            *(float *)o->target = (float)v;
        else
            *(double *)o->target = v;
        break;
    }
    case OPT_STRING: *(const char **)o->target = text; break;
    case OPT_CHOICE: {
        size_t len = strlen(text);
        const char *c = o->choices;
        int ok = 0;
        while (c && *c) {
            const char *bar = strchr(c, '|');
            size_t clen = bar ? (size_t)(bar - c) : strlen(c);
            if (clen == len && !strncmp(c, text, len))
                ok = 1;
            c = bar ? bar + 1 : NULL;
        }
        if (!ok)
            die("%s %s: '%s' is not one of %s", command, o->name, text, o->choices);
        *(const char **)o->target = text;
        break;
    }
    case OPT_FLAG:
        if (!strcmp(text, "true") || !strcmp(text, "1"))
            *(bool *)o->target = true;
        else if (!strcmp(text, "false") || !strcmp(text, "0"))
            *(bool *)o->target = false;
        else
            die("%s %s: '%s' is not true/false", command, o->name, text);
        break;
    }
}

int options_parse(const char *command, const char *usage, const option_spec *opts, int n, int argc, char **argv)
{
    n_given = 0;
    for (int i = 0; i < n; i++) {
        if (opts[i].type == OPT_FLAG)
            *(bool *)opts[i].target = opts[i].default_value && !strcmp(opts[i].default_value, "true");
        else if (opts[i].default_value)
            set_value(command, &opts[i], opts[i].default_value);
        else if (opts[i].type == OPT_STRING || opts[i].type == OPT_CHOICE)
            *(const char **)opts[i].target = NULL;
    }
    int rest = 1;
    for (int a = 1; a < argc; a++) {
        char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            options_help(stdout, command, usage, opts, n);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2]) {
            argv[rest++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const option_spec *o = NULL;
        for (int i = 0; i < n; i++)
            if (strlen(opts[i].name) == name_len && !strncmp(opts[i].name, arg, name_len))
                o = &opts[i];
        if (!o)
            die("%s: unknown option '%.*s' (see 'repae %s --help')", command, (int)name_len, arg, command);
        if (n_given < MAX_GIVEN)
            given[n_given++] = o;
        if (o->type == OPT_FLAG) {
            if (eq)
                set_value(command, o, eq + 1);
            else
                *(bool *)o->target = true;
            continue;
        }
        const char *value = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!value)
            die("%s %s: missing value", command, o->name);
        set_value(command, o, value);
    }
    return rest;
}

static const char *type_hint(const option_spec *o)
{
    switch (o->type) {
    case OPT_INT: case OPT_INT64: return "N";
    case OPT_FLOAT: case OPT_DOUBLE: return "X";
    case OPT_STRING: return "S";
    case OPT_CHOICE: return o->choices;
    case OPT_FLAG: return "";
    }
    return "";
}

void options_help(FILE *out, const char *command, const char *usage, const option_spec *opts, int n)
{
    fprintf(out, "%s\n\noptions:\n", usage);
    for (int i = 0; i < n; i++) {
        char left[96];
        snprintf(left, sizeof left, "%s %s", opts[i].name, type_hint(&opts[i]));
        fprintf(out, "  %-34s %s", left, opts[i].help);
        if (opts[i].default_value && opts[i].type != OPT_FLAG)
            fprintf(out, " (default %s)", opts[i].default_value);
        fputc('\n', out);
    }
    fprintf(out, "  %-34s %s\n", "--help", "show this help");
    (void)command;
}

void options_print(FILE *out, const option_spec *opts, int n)
{
    for (int i = 0; i < n; i++) {
        const option_spec *o = &opts[i];
        fprintf(out, "  %-28s = ", o->name + 2);
        switch (o->type) {
        case OPT_INT: fprintf(out, "%d", *(int *)o->target); break;
        case OPT_INT64: fprintf(out, "%lld", *(long long *)o->target); break;
        case OPT_FLOAT: fprintf(out, "%g", *(float *)o->target); break;
        case OPT_DOUBLE: fprintf(out, "%g", *(double *)o->target); break;
        case OPT_STRING:
        case OPT_CHOICE: {
            const char *s = *(const char **)o->target;
            fprintf(out, "%s", s ? s : "(none)");
            break;
        }
        case OPT_FLAG: fprintf(out, "%s", *(bool *)o->target ? "true" : "false"); break;
        }
        fputc('\n', out);
    }
}

bool options_given(const option_spec *opts, int n, const char *name)
{
    (void)opts, (void)n;
    for (int i = 0; i < n_given; i++)
        if (!strcmp(given[i]->name, name))
            return true;
    return false;
}

char *options_to_json(const option_spec *opts, int n)
{
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        const option_spec *o = &opts[i];
        char key[96];
        snprintf(key, sizeof key, "%s", o->name + 2);
        for (char *c = key; *c; c++)
            if (*c == '-')
                *c = '_';
        switch (o->type) {
        case OPT_INT: cJSON_AddNumberToObject(root, key, *(int *)o->target); break;
        case OPT_INT64: cJSON_AddNumberToObject(root, key, (double)*(long long *)o->target); break;
        case OPT_FLOAT: cJSON_AddNumberToObject(root, key, *(float *)o->target); break;
        case OPT_DOUBLE: cJSON_AddNumberToObject(root, key, *(double *)o->target); break;
        case OPT_STRING:
        case OPT_CHOICE: {
            const char *s = *(const char **)o->target;
            if (s)
                cJSON_AddStringToObject(root, key, s);
            else
                cJSON_AddNullToObject(root, key);
            break;
        }
        case OPT_FLAG: cJSON_AddBoolToObject(root, key, *(bool *)o->target); break;
        }
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}
