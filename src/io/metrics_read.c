#include "io/metrics_read.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "io/jsonl_lines.h"

/* Copies `line` into a fresh buffer with bare nan/inf tokens outside strings
 * (what printf's %g wrote for a NaN loss before repae wrote null) replaced
 * by null, so older metrics files still plot, with gaps.  Only whole tokens
 * in value position (after ':', ',' or '[') are touched. */
static char *legacy_tokens_to_null(const char *line, size_t len)
{
    static const char *const tokens[] = {"-nan", "nan", "-inf", "inf"};
    char *out = xmalloc(2 * len + 1), *o = out;
    bool in_string = false;
    char prev = 0; /* last non-space character outside strings */
    for (size_t i = 0; i < len;) {
        char c = line[i];
        if (in_string) {
            *o++ = c, i++;
            if (c == '\\' && i < len)
                *o++ = line[i++];
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (prev == ':' || prev == ',' || prev == '[') {
            bool replaced = false;
            for (size_t t = 0; t < sizeof tokens / sizeof tokens[0] && !replaced; t++) {
                size_t tl = strlen(tokens[t]);
                if (i + tl <= len && strncasecmp(line + i, tokens[t], tl) == 0 &&
                    (i + tl == len || !isalnum((unsigned char)line[i + tl]))) {
                    memcpy(o, "null", 4), o += 4, i += tl, prev = 'l', replaced = true;
                }
            }
            if (replaced)
                continue;
        }
        if (c == '"')
            in_string = true;
        if (!isspace((unsigned char)c))
            prev = c;
        *o++ = c, i++;
    }
    *o = 0;
    return out;
}

/* A scalar: number, null, or "nan"/"inf"/"-inf" as a string.  A missing
 * key is NaN too (evaluation scalars appear on some lines only). */
static double scalar_value(const cJSON *v, const char *path, long lineno, const char *key, int *is_number)
{
    *is_number = 0;
    if (!v || cJSON_IsNull(v))
        return NAN;
    if (cJSON_IsNumber(v)) {
        *is_number = 1;
        return v->valuedouble;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (!strcasecmp(s, "nan") || !strcasecmp(s, "-nan") || !strcasecmp(s, "inf") || !strcasecmp(s, "-inf") ||
            !strcasecmp(s, "infinity") || !strcasecmp(s, "-infinity"))
            return NAN;
    }
    die("'%s': line %ld: '%s' is not a number (a number, null or \"nan\" expected)", path, lineno, key);
}

static void parse_line(metrics_table *t, const char *const *keys, const char *x_key, const char *line, size_t len,
                       const char *path, long lineno)
{
    char *text = legacy_tokens_to_null(line, len);
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithOpts(text, &end, 0);
    if (!cJSON_IsObject(obj))
        die("'%s': line %ld is not a JSON object", path, lineno);
    for (const char *p = end; *p; p++)
        if (!isspace((unsigned char)*p))
            die("'%s': line %ld: unexpected text after the JSON object", path, lineno);
    size_t n = t->n;
    const cJSON *xv = cJSON_GetObjectItemCaseSensitive(obj, x_key);
    if (!xv) {
        t->x[n] = (double)n;
    } else {
        if (!cJSON_IsNumber(xv) || !isfinite(xv->valuedouble))
            die("'%s': line %ld: the x value '%s' is not a finite number", path, lineno, x_key);
        if (fabs(xv->valuedouble) > 9007199254740992.0)
            die("'%s': line %ld: '%s' = %g is beyond 2^53, where doubles no longer tell consecutive values apart",
                path, lineno, x_key, xv->valuedouble);
        t->x[n] = xv->valuedouble;
    }
    for (int k = 0; k < t->n_keys; k++) {
        int is_number;
        double v = scalar_value(cJSON_GetObjectItemCaseSensitive(obj, keys[k]), path, lineno, keys[k], &is_number);
        t->y[k][n] = isfinite(v) ? v : NAN;
        t->found[k] |= is_number;
    }
    t->n++;
    cJSON_Delete(obj);
    free(text);
}

metrics_table metrics_read(const char *path, const char *x_key, const char *const *keys, int n_keys)
{
    if (n_keys < 1 || n_keys > METRICS_MAX_KEYS)
        die("'%s': between 1 and %d scalars can be read, not %d", path, METRICS_MAX_KEYS, n_keys);
    metrics_table t = {.n_keys = n_keys};
    size_t cap = 1024;
    t.x = xmalloc(cap * sizeof(double));
    for (int k = 0; k < n_keys; k++)
        t.y[k] = xmalloc(cap * sizeof(double));
    jsonl_reader in = jsonl_open(path);
    size_t len;
    for (char *line; (line = jsonl_next(&in, &len));) {
        if (t.n == cap) {
            cap *= 2;
            t.x = xrealloc(t.x, cap * sizeof(double));
            for (int k = 0; k < n_keys; k++)
                t.y[k] = xrealloc(t.y[k], cap * sizeof(double));
        }
        parse_line(&t, keys, x_key, line, len, path, in.lineno);
    }
    jsonl_close(&in);
    return t;
}

void metrics_free(metrics_table *t)
{
    free(t->x);
    for (int k = 0; k < t->n_keys; k++)
        free(t->y[k]);
    memset(t, 0, sizeof *t);
}

void metrics_moving_average(double *y, size_t n, int window)
{
    if (n == 0)
        return;
    double *raw = xmalloc(n * sizeof(double)), acc = 0;
    memcpy(raw, y, n * sizeof(double));
    int cnt = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(raw[i]))
            acc += raw[i], cnt++;
        if (i >= (size_t)window && isfinite(raw[i - window]))
            acc -= raw[i - window], cnt--;
        y[i] = isfinite(raw[i]) && cnt > 0 ? acc / cnt : NAN;
    }
    free(raw);
}
