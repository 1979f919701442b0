#include "train/checkpoint_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

ckpt_layout ckpt_layout_new(const char *format, const char *kind, long long version)
{
    ckpt_layout l;
    memset(&l, 0, sizeof l);
    l.format = format, l.kind = kind, l.version = version;
    return l;
}

static void check_room(int n, const char *what)
{
    if (n >= CKPT_MAX_ROWS)
        die("internal: a checkpoint layout holds at most %d %s", CKPT_MAX_ROWS, what);
}

void ckpt_add_tensors(ckpt_layout *l, const char *prefix, const param_table *t, float *buffer)
{
    check_room(l->n_rows, "tensor rows");
    l->rows[l->n_rows++] = (ckpt_tensors){prefix, t, buffer};
}

void ckpt_add_counter(ckpt_layout *l, const char *key, long long *value, long long min, long long max)
{
    check_room(l->n_counters, "counters");
    l->counters[l->n_counters++] = (ckpt_counter){key, value, min, max};
}

void ckpt_add_scalar(ckpt_layout *l, const char *key, float *value)
{
    check_room(l->n_scalars, "scalars");
    l->scalars[l->n_scalars++] = (ckpt_scalar){key, value};
}

void ckpt_add_text(ckpt_layout *l, const char *key, const char *value)
{
    check_room(l->n_texts, "texts");
    l->texts[l->n_texts++] = (ckpt_text){key, value};
}

void ckpt_add_run_counters(ckpt_layout *l, long long *step, long long *epoch, long long *position)
{
    ckpt_add_counter(l, "step", step, 0, CKPT_MAX_STEP);
    ckpt_add_counter(l, "epoch", epoch, 0, CKPT_MAX_STEP);
    ckpt_add_counter(l, "position", position, 0, INT32_MAX);
}

void ckpt_save(const ckpt_layout *l, const char *path, const char *args_json)
{
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", l->format);
    if (l->kind)
        st_writer_set_metadata(w, "kind", l->kind);
    st_writer_set_metadata_ll(w, "version", l->version);
    for (int i = 0; i < l->n_counters; i++)
        st_writer_set_metadata_ll(w, l->counters[i].key, *l->counters[i].value);
    for (int i = 0; i < l->n_scalars; i++)
        st_writer_set_metadata_f32(w, l->scalars[i].key, *l->scalars[i].value);
    for (int i = 0; i < l->n_texts; i++)
        st_writer_set_metadata(w, l->texts[i].key, l->texts[i].value);
    if (args_json)
        st_writer_set_metadata(w, "args", args_json);
    for (int i = 0; i < l->n_rows; i++)
        param_save(l->rows[i].table, l->rows[i].buffer, w, l->rows[i].prefix);
    st_writer_save(w, path);
    st_writer_free(w);
}

/* The row whose prefix + key names this tensor, or -1. */
static int claiming_row(const ckpt_layout *l, const char *name)
{
    for (int i = 0; i < l->n_rows; i++) {
        size_t n = strlen(l->rows[i].prefix);
        if (!strncmp(name, l->rows[i].prefix, n) && param_find(l->rows[i].table, name + n))
            return i;
    }
    return -1;
}

static long long read_counter(const safetensors *st, const ckpt_counter *c)
{
    const char *v = safetensors_meta(st, c->key);
    if (!v)
        die("'%s': checkpoint metadata '%s' is missing", st->path, c->key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno == ERANGE)
        die("'%s': checkpoint metadata '%s' = '%s' is not an integer", st->path, c->key, v);
    if (x < c->min || x > c->max)
        die("'%s': checkpoint metadata '%s' = %lld is out of range [%lld, %lld]; the file is damaged or not "
            "from this program",
            st->path, c->key, x, c->min, c->max);
    return x;
}

/* A float counter written by st_writer_set_metadata_f32; absent reads as 0
 * (checkpoints from before the LeCam EMAs were stored). */
static float read_scalar(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    if (!v)
        return 0.0f;
    char *end;
    float x = strtof(v, &end);
    if (end == v || *end || !isfinite(x))
        die("'%s': checkpoint metadata '%s' = '%s' is not a finite number", st->path, key, v);
    return x;
}

void ckpt_load_st(const ckpt_layout *l, const safetensors *st)
{
    const char *fmt = safetensors_meta(st, "format"), *kind = safetensors_meta(st, "kind");
    if (!fmt || strcmp(fmt, l->format) != 0)
        die("'%s': not a %s file (format is '%s')", st->path, l->format, fmt ? fmt : "missing");
    if ((l->kind || kind) && (!l->kind || !kind || strcmp(l->kind, kind) != 0))
        die("'%s': a '%s' checkpoint, expected '%s'", st->path, kind ? kind : "repae", l->kind ? l->kind : "repae");
    long long version = read_counter(st, &(ckpt_counter){"version", NULL, 0, CKPT_MAX_STEP});
    if (version != l->version)
        die("'%s': %s version %lld is not supported (this program reads version %lld)", st->path, l->format, version,
            l->version);
    /* Metadata first: a bad counter must not leave half-loaded models. */
    long long values[CKPT_MAX_ROWS];
    for (int i = 0; i < l->n_counters; i++)
        values[i] = read_counter(st, &l->counters[i]);
    for (int i = 0; i < st->n_tensors; i++)
        if (claiming_row(l, st->tensors[i].name) < 0)
            die("'%s': unexpected tensor '%s' (shape %s): no model of this run has it (different flags, or a "
                "damaged file?)",
                st->path, st->tensors[i].name,
                st_shape_str(st->tensors[i].ndim, st->tensors[i].shape, (char[160]){0}, 160));
    for (int i = 0; i < l->n_rows; i++)
        param_load(l->rows[i].table, l->rows[i].buffer, st, l->rows[i].prefix, PARAM_IGNORE_EXTRA);
    for (int i = 0; i < l->n_counters; i++)
        *l->counters[i].value = values[i];
    for (int i = 0; i < l->n_scalars; i++)
        *l->scalars[i].value = read_scalar(st, l->scalars[i].key);
}

void ckpt_load(const ckpt_layout *l, const char *path)
{
    safetensors *st = safetensors_open(path);
    ckpt_load_st(l, st);
    safetensors_close(st);
}
